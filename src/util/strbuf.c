/*
 * Growable NUL-terminated buffers (see strbuf.h).
 */
#include "util/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char strbuf_slopbuf[1];

void strbuf_init(struct strbuf *sb, size_t hint)
{
    sb->buf = strbuf_slopbuf;
    sb->len = 0;
    sb->alloc = 0;
    if (hint)
        strbuf_grow(sb, hint);
}

void strbuf_release(struct strbuf *sb)
{
    if (sb->alloc)
        free(sb->buf);
    strbuf_init(sb, 0);
}

void strbuf_reset(struct strbuf *sb)
{
    strbuf_setlen(sb, 0);
}

void strbuf_grow(struct strbuf *sb, size_t extra)
{
    size_t need;

    if (extra > SIZE_MAX - sb->len - 1)
        ST_BUG("strbuf size overflow");
    need = sb->len + extra + 1;
    if (need <= sb->alloc)
        return;
    if (!sb->alloc)
        sb->buf = NULL;
    sb->alloc = sb->alloc ? sb->alloc : 64;
    while (sb->alloc < need)
        sb->alloc = sb->alloc < SIZE_MAX / 2 ? sb->alloc * 2 : need;
    sb->buf = xrealloc(sb->buf, sb->alloc);
    if (!sb->len)
        sb->buf[0] = '\0';
}

char *strbuf_detach(struct strbuf *sb, size_t *len)
{
    char *res;

    strbuf_grow(sb, 0);
    if (!sb->alloc) {
        res = xmalloc(1);
        res[0] = '\0';
    } else {
        res = sb->buf;
    }
    if (len)
        *len = sb->len;
    strbuf_init(sb, 0);
    return res;
}

void strbuf_setlen(struct strbuf *sb, size_t len)
{
    st_assert(len <= sb->len || (!sb->alloc && !len));
    sb->len = len;
    if (sb->alloc)
        sb->buf[len] = '\0';
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
    if (!len)
        return;
    strbuf_grow(sb, len);
    memcpy(sb->buf + sb->len, data, len);
    sb->len += len;
    sb->buf[sb->len] = '\0';
}

void strbuf_addstr(struct strbuf *sb, const char *s)
{
    strbuf_add(sb, s, strlen(s));
}

void strbuf_addch(struct strbuf *sb, char c)
{
    strbuf_grow(sb, 1);
    sb->buf[sb->len++] = c;
    sb->buf[sb->len] = '\0';
}

void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
    va_list cp;
    int n;

    strbuf_grow(sb, 64);
    va_copy(cp, ap);
    n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, cp);
    va_end(cp);
    if (n < 0)
        ST_BUG("vsnprintf failed for format '%s'", fmt);
    if ((size_t)n >= sb->alloc - sb->len) {
        strbuf_grow(sb, (size_t)n);
        n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
    }
    sb->len += (size_t)n;
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    strbuf_vaddf(sb, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void strbuf_add_json_str(struct strbuf *sb, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    strbuf_grow(sb, len + 2);
    strbuf_addch(sb, '"');
    while (i < len) {
        unsigned char c = p[i];
        size_t n;

        if (c == '"' || c == '\\') {
            strbuf_addch(sb, '\\');
            strbuf_addch(sb, (char)c);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n':
                strbuf_add(sb, "\\n", 2);
                break;
            case '\r':
                strbuf_add(sb, "\\r", 2);
                break;
            case '\t':
                strbuf_add(sb, "\\t", 2);
                break;
            case '\b':
                strbuf_add(sb, "\\b", 2);
                break;
            case '\f':
                strbuf_add(sb, "\\f", 2);
                break;
            default: {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                strbuf_add(sb, esc, 6);
            }
            }
            i++;
        } else if ((n = utf8_seq_len(p + i, len - i)) > 0) {
            strbuf_add(sb, p + i, n);
            i += n;
        } else {
            strbuf_add(sb, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    strbuf_addch(sb, '"');
}
