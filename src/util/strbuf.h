/*
 * A growable byte buffer that is always NUL-terminated (git's strbuf).
 *
 * Initialise with STRBUF_INIT or strbuf_init(); release with
 * strbuf_release(). Growth aborts on allocation failure, so strbufs are for
 * sizes the server controls (responses, log lines, metrics text); bytes
 * whose size a client chooses are checked against a limit first.
 */
#ifndef ST_UTIL_STRBUF_H
#define ST_UTIL_STRBUF_H

#include <stdarg.h>

#include "util/common.h"

struct strbuf {
    char *buf;    /* the bytes, NUL-terminated; never NULL */
    size_t len;   /* bytes used, not counting the NUL */
    size_t alloc; /* bytes allocated, 0 while buf is the empty slot */
};

extern char strbuf_slopbuf[];
#define STRBUF_INIT                                                                                \
    {                                                                                              \
        .buf = strbuf_slopbuf, .len = 0, .alloc = 0                                                \
    }

void strbuf_init(struct strbuf *sb, size_t hint);
/* Frees the buffer and leaves sb empty and reusable. */
void strbuf_release(struct strbuf *sb);
/* Empties sb, keeping its allocation. */
void strbuf_reset(struct strbuf *sb);
/* Makes room for extra more bytes. */
void strbuf_grow(struct strbuf *sb, size_t extra);
/* Takes the buffer out of sb; the caller frees it with free(). */
char *strbuf_detach(struct strbuf *sb, size_t *len);

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) ST_PRINTF(2, 3);
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) ST_PRINTF(2, 0);
/*
 * Appends s (len bytes) as a JSON string literal with its quotes, escaping
 * '"', '\\' and control characters. Bytes that are not valid UTF-8 become
 * U+FFFD, so the output is always valid JSON.
 */
void strbuf_add_json_str(struct strbuf *sb, const char *s, size_t len);
/* Sets the length to len (<= current length), keeping the NUL. */
void strbuf_setlen(struct strbuf *sb, size_t len);

#endif
