/*
 * Small things every module uses: assertions, allocation that dies on
 * failure, array allocation with overflow checks, and a few macros.
 *
 * Small allocations abort on failure (h2o's h2o_mem_alloc): a process that
 * cannot get 64 bytes cannot do anything useful. Sizes chosen by a client
 * (request bodies) never go through these; they are checked against limits
 * and return ST_ENOMEM instead.
 */
#ifndef ST_UTIL_COMMON_H
#define ST_UTIL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define ST_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ST_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define ST_MAX(a, b)     ((a) > (b) ? (a) : (b))
#define ST_UNUSED(x)     ((void)(x))

#if defined(__GNUC__)
#define ST_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define ST_NORETURN          __attribute__((noreturn))
#define ST_LIKELY(x)         __builtin_expect(!!(x), 1)
#define ST_UNLIKELY(x)       __builtin_expect(!!(x), 0)
#else
#define ST_PRINTF(fmt, args)
#define ST_NORETURN
#define ST_LIKELY(x)   (x)
#define ST_UNLIKELY(x) (x)
#endif

/* Prints file, line and message to stderr and aborts. */
ST_NORETURN void st__panic(const char *file, int line, const char *fmt, ...) ST_PRINTF(3, 4);

/* A bug: never a consequence of input. Always compiled in. */
#define ST_BUG(...) st__panic(__FILE__, __LINE__, __VA_ARGS__)
#define st_assert(cond)                                                                            \
    do {                                                                                           \
        if (ST_UNLIKELY(!(cond)))                                                                  \
            st__panic(__FILE__, __LINE__, "assertion failed: %s", #cond);                          \
    } while (0)

/* Allocation that aborts on failure. Free with free(). */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* calloc of nmemb * size with an overflow check; aborts on failure. */
void *calloc_array(size_t nmemb, size_t size);
/* realloc of nmemb * size with an overflow check; aborts on failure. */
void *realloc_array(void *p, size_t nmemb, size_t size);

/*
 * Copies src into dst of size n, always NUL-terminating when n > 0.
 * Returns false when src did not fit (dst then holds a truncated copy).
 */
bool st_strlcpy(char *dst, const char *src, size_t n);

/*
 * Parses exactly n lowercase hex digits at s (n <= 16: the file-name
 * numbers of the WAL and the segments) into *out; false on any other byte.
 */
bool st_parse_hex(const char *s, size_t n, uint64_t *out);

#endif
