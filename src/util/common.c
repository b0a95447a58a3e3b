/*
 * Assertions and allocation helpers (see common.h).
 */
#include "util/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void st__panic(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "BUG at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

static void *check_alloc(void *p, size_t n)
{
    if (ST_UNLIKELY(!p && n))
        ST_BUG("out of memory allocating %zu bytes", n);
    return p;
}

void *xmalloc(size_t n)
{
    return check_alloc(malloc(n ? n : 1), n ? n : 1);
}

void *xcalloc(size_t nmemb, size_t size)
{
    return calloc_array(nmemb, size);
}

void *xrealloc(void *p, size_t n)
{
    return check_alloc(realloc(p, n ? n : 1), n ? n : 1);
}

char *xstrdup(const char *s)
{
    return check_alloc(strdup(s), 1);
}

char *xstrndup(const char *s, size_t n)
{
    return check_alloc(strndup(s, n), 1);
}

void *calloc_array(size_t nmemb, size_t size)
{
    if (size && nmemb > SIZE_MAX / size)
        ST_BUG("array size overflow: %zu * %zu", nmemb, size);
    if (!nmemb || !size)
        nmemb = size = 1;
    return check_alloc(calloc(nmemb, size), nmemb * size);
}

void *realloc_array(void *p, size_t nmemb, size_t size)
{
    if (size && nmemb > SIZE_MAX / size)
        ST_BUG("array size overflow: %zu * %zu", nmemb, size);
    return xrealloc(p, nmemb * size);
}

bool st_parse_hex(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return false;
    }
    *out = v;
    return true;
}

bool st_strlcpy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);

    if (!n)
        return len == 0;
    if (len >= n) {
        memcpy(dst, src, n - 1);
        dst[n - 1] = '\0';
        return false;
    }
    memcpy(dst, src, len + 1);
    return true;
}
