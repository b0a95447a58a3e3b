/*
 * parser: HTTP/1.x request framing over http-parser, with no sockets.
 *
 * The connection feeds bytes as they arrive; the parser fills a struct
 * httpd_req and reports MORE (need more bytes), DONE (a request is
 * complete) or ERROR (answer err_status and close). It stops after each
 * complete request, so bytes of a pipelined next request stay unconsumed
 * until the caller has taken the current one: requests come out one at a
 * time. Unit tests and the fuzzer drive this file directly.
 *
 * Division of labour. http-parser parses the head (request line and
 * headers); its on_headers_complete returns 1 ("no body") and the message
 * callback pauses it, so it never sees body bytes. The body is read here:
 * Content-Length bytes are copied straight into one buffer allocated from
 * the declared length; chunked bodies go through a small strict decoder
 * (chunk-size lines, extensions ignored, CRLF exactly where RFC 9112 puts
 * it, trailers checked and dropped) whose per-byte loop only ever sees
 * chunk metadata; the data is memcpy'd. So body bytes are copied exactly
 * once, from the input buffer to the request.
 *
 * Why not let http-parser read bodies: Debian builds 2.9.4 with
 * HTTP_PARSER_STRICT=0, which skips the checks behind STRICT_CHECK(): it
 * accepts "abcXY" in place of "abc\r\n" after chunk data, any byte in
 * place of the LF ending the headers or a chunk-size line, "HTXP/1.1" as
 * the version, and spaces inside header names. Each is a request-smuggling
 * hazard behind a proxy that reads the bytes differently. This file closes
 * them: its own body decoder, a check of the request line's version token
 * (scanned with memchr before http-parser runs), a check that the head ends
 * in LF, and a token check on header names. It also refuses what http-parser
 * lets through in any mode: obsolete line folding, whitespace before a
 * colon, a Transfer-Encoding other than exactly "chunked" (repeated, or
 * "gzip, chunked"), HTTP versions other than 1.x, and URLs that cannot be
 * split into path and query. http-parser itself refuses duplicate
 * Content-Length, Content-Length with Transfer-Encoding, bad Content-Length
 * values, control characters, and malformed request lines.
 *
 * Memory: the URL and the header names and values are appended to one
 * buffer (req->head), NUL-separated, with an array of offsets.
 *
 * Limits are enforced before memory is spent: http-parser is never handed
 * more than max_header_bytes before the head is complete (431), a
 * Content-Length above max_body_bytes is refused at the end of the head
 * (413), before any body byte is read, a chunk is refused as soon as its
 * size line announces too much, and trailers count against the header
 * limit.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_int.h"
#include "util/timeutil.h"

/* First allocation for a chunked body; doubled as it grows. */
#define CHUNKED_BODY_MIN (16 * 1024)
/* Longest chunk extension accepted on one chunk-size line. */
#define CHUNK_EXT_MAX 4096

static int on_url(http_parser *hp, const char *at, size_t len);
static int on_header_field(http_parser *hp, const char *at, size_t len);
static int on_header_value(http_parser *hp, const char *at, size_t len);
static int on_headers_complete(http_parser *hp);
static int on_message_complete(http_parser *hp);

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* RFC 9110 tchar. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,  ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1,  ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,  ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,  ['d'] = 1, ['e'] = 1,
    ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1,  ['l'] = 1, ['m'] = 1,
    ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1,  ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static int fail(struct httpd_parser *p, int status, const char *code, const char *fmt, ...)
    ST_PRINTF(4, 5);

/* Records the error to answer; returns -1 for http-parser callbacks. */
static int fail(struct httpd_parser *p, int status, const char *code, const char *fmt, ...)
{
    va_list ap;

    if (p->err_status)
        return -1;
    p->err_status = status;
    p->err_code = code;
    va_start(ap, fmt);
    vsnprintf(p->err_msg, sizeof(p->err_msg), fmt, ap);
    va_end(ap);
    return -1;
}

void httpd__parser_init(struct httpd_parser *p, const struct httpd_limits *lim)
{
    memset(p, 0, sizeof(*p));
    p->limsrc = lim;
    p->lim = *lim;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
}

void httpd__parser_release(struct httpd_parser *p)
{
    httpd__req_free(p->req);
    httpd__req_free(p->spare);
    p->req = NULL;
    p->spare = NULL;
}

void httpd__parser_recycle(struct httpd_parser *p, struct httpd_req *req)
{
    if (p->spare) {
        httpd__req_free(req);
        return;
    }
    httpd__req_reset(req);
    p->spare = req;
}

static void begin_request(struct httpd_parser *p)
{
    struct httpd_req *req = p->spare;

    if (req)
        p->spare = NULL;
    else
        req = httpd__req_new();
    p->req = req;
    p->lim = *p->limsrc;
    p->head_bytes = 0;
    p->started = true;
    p->headers_done = false;
    p->done = false;
    p->head_complete = false;
    p->val_at_end = false;
    p->line_done = false;
    p->line_len = 0;
    p->tail_len = 0;
    p->trailer_bytes = 0;
    p->bstate = HB_NONE;
    p->remaining = 0;
    p->last_cb = CB_NONE;
    p->val_next = NULL;
    p->n_cl = 0;
    p->n_te = 0;
    req->start_ns = time_mono_ns();
}

struct httpd_req *httpd__parser_take(struct httpd_parser *p)
{
    struct httpd_req *req = p->req;

    st_assert(p->done && req);
    p->req = NULL;
    p->done = false;
    p->started = false;
    p->headers_done = false;
    return req;
}

/* ------------------------------------------------------------------ */
/* Callbacks */

/* Ends the header value being collected: trims trailing OWS, adds a NUL. */
static void finish_value(struct httpd_req *req)
{
    struct httpd_hdr *h = &req->hdrs[req->nhdrs - 1];
    size_t len = req->head.len;

    while (len > h->val_off && (req->head.buf[len - 1] == ' ' || req->head.buf[len - 1] == '\t'))
        len--;
    strbuf_setlen(&req->head, len);
    h->val_len = (uint32_t)(len - h->val_off);
    strbuf_addch(&req->head, '\0');
}

/* Ends the URL, the first thing in head. */
static void finish_url(struct httpd_req *req)
{
    if (req->nhdrs == 0 && req->url_len == 0) {
        req->url_len = req->head.len;
        strbuf_addch(&req->head, '\0');
    }
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct httpd_parser *p = hp->data;

    strbuf_add(&p->req->head, at, len);
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    struct httpd_parser *p = hp->data;
    struct httpd_req *req = p->req;

    for (size_t i = 0; i < len; i++) {
        if (!tchar[(unsigned char)at[i]])
            return fail(p, 400, "bad_request", "invalid character in header name");
    }
    if (p->last_cb != CB_FIELD) {
        struct httpd_hdr *h;

        if (p->last_cb == CB_VALUE)
            finish_value(req);
        else
            finish_url(req);
        if (req->nhdrs == req->hdrs_alloc) {
            req->hdrs_alloc = req->hdrs_alloc ? req->hdrs_alloc * 2 : 16;
            req->hdrs = realloc_array(req->hdrs, req->hdrs_alloc, sizeof(*req->hdrs));
        }
        h = &req->hdrs[req->nhdrs++];
        memset(h, 0, sizeof(*h));
        h->name_off = (uint32_t)req->head.len;
    }
    strbuf_add(&req->head, at, len);
    p->last_cb = CB_FIELD;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    struct httpd_parser *p = hp->data;
    struct httpd_req *req = p->req;

    if (p->last_cb == CB_FIELD) {
        struct httpd_hdr *h = &req->hdrs[req->nhdrs - 1];

        h->name_len = (uint32_t)(req->head.len - h->name_off);
        strbuf_addch(&req->head, '\0');
        h->val_off = (uint32_t)req->head.len;
    } else if (p->last_cb == CB_VALUE && at != p->val_next) {
        /*
         * The value continues, but not right after its previous piece:
         * http-parser skipped a CRLF and whitespace, an obs-fold.
         */
        return fail(p, 400, "bad_request", "obsolete line folding in header");
    } else if (p->last_cb == CB_NONE) {
        return fail(p, 400, "bad_request", "header value without a name");
    }
    strbuf_add(&req->head, at, len);
    p->val_next = at + len;
    p->last_cb = CB_VALUE;
    return 0;
}

/* Splits the URL into a NUL-terminated path and the raw query. */
static int split_url(struct httpd_parser *p, struct httpd_req *req)
{
    char *url = req->head.buf;
    size_t len = req->url_len;
    char *q;

    if (len == 0)
        return fail(p, 400, "bad_request", "empty request target");
    if (url[0] == '/' || (len == 1 && url[0] == '*')) {
        char *hash = memchr(url, '#', len);

        if (hash) {
            *hash = '\0';
            len = (size_t)(hash - url);
        }
        q = memchr(url, '?', len);
        if (q) {
            *q = '\0';
            req->query = q + 1;
        }
        req->path = url;
        return 0;
    }
    if (p->hp.method == HTTP_CONNECT) {
        req->path = url;
        return 0;
    }
    /* Absolute form: take the path and query out of it. */
    {
        struct http_parser_url u;
        char *path;
        char *query;

        http_parser_url_init(&u);
        if (http_parser_parse_url(url, len, 0, &u))
            return fail(p, 400, "bad_request", "invalid request target");
        if (u.field_set & (1 << UF_PATH)) {
            path = httpd_req_alloc(req, u.field_data[UF_PATH].len + 1u);
            memcpy(path, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
            path[u.field_data[UF_PATH].len] = '\0';
        } else {
            path = httpd_req_alloc(req, 2);
            memcpy(path, "/", 2);
        }
        req->path = path;
        if (u.field_set & (1 << UF_QUERY)) {
            query = httpd_req_alloc(req, u.field_data[UF_QUERY].len + 1u);
            memcpy(query, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
            query[u.field_data[UF_QUERY].len] = '\0';
            req->query = query;
        }
    }
    return 0;
}

static bool name_is(const struct httpd_req *req, const struct httpd_hdr *h, const char *name,
                    size_t len)
{
    return h->name_len == len && !strncasecmp(req->head.buf + h->name_off, name, len);
}

#define NAME_IS(req, h, lit) name_is(req, h, lit, sizeof(lit) - 1)

/* Checks the headers http-parser accepted; notes Expect and the framing. */
static int check_headers(struct httpd_parser *p, struct httpd_req *req)
{
    const char *te = NULL;
    unsigned n_host = 0;

    for (size_t i = 0; i < req->nhdrs; i++) {
        const struct httpd_hdr *h = &req->hdrs[i];
        const char *val = req->head.buf + h->val_off;

        if (h->name_len == 0)
            return fail(p, 400, "bad_request", "empty header name");
        if (NAME_IS(req, h, "content-length")) {
            p->n_cl++;
        } else if (NAME_IS(req, h, "transfer-encoding")) {
            p->n_te++;
            te = val;
        } else if (NAME_IS(req, h, "expect")) {
            if (!strcasecmp(val, "100-continue"))
                req->expect_continue = true;
        } else if (NAME_IS(req, h, "host")) {
            n_host++;
        }
    }
    if (p->n_cl > 1)
        return fail(p, 400, "bad_request", "more than one Content-Length header");
    if (p->n_te > 1)
        return fail(p, 400, "bad_request", "more than one Transfer-Encoding header");
    if (te && p->n_cl)
        return fail(p, 400, "bad_request", "both Content-Length and Transfer-Encoding");
    if (te && strcasecmp(te, "chunked")) {
        size_t n = strlen(te);

        /* RFC 9112 6.3: chunked not last is a framing error, else unsupported. */
        if (n > 7 && !strcasecmp(te + n - 7, "chunked") && (te[n - 8] == ',' || te[n - 8] == ' '))
            return fail(p, 501, "not_implemented", "transfer coding other than chunked");
        return fail(p, 400, "bad_request", "transfer coding chunked must be last");
    }
    /* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host header. */
    if (req->http_minor >= 1 && n_host != 1)
        return fail(p, 400, "bad_request",
                    n_host ? "more than one Host header" : "missing Host header");
    if (req->http_minor == 0 && n_host > 1)
        return fail(p, 400, "bad_request", "more than one Host header");
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct httpd_parser *p = hp->data;
    struct httpd_req *req = p->req;

    if (p->last_cb == CB_VALUE)
        finish_value(req);
    else if (p->last_cb == CB_FIELD)
        return fail(p, 400, "bad_request", "header without a value");
    else
        finish_url(req);
    p->last_cb = CB_NONE;
    p->headers_done = true;

    req->method = httpd__method_flag((enum http_method)hp->method);
    req->method_name = http_method_str((enum http_method)hp->method);
    req->http_major = hp->http_major;
    req->http_minor = hp->http_minor;
    if (hp->http_major != 1)
        return fail(p, 505, "http_version_not_supported", "HTTP/%u.%u is not supported",
                    hp->http_major, hp->http_minor);
    if (check_headers(p, req) || split_url(p, req))
        return -1;

    if (hp->flags & F_CHUNKED) {
        req->chunked = true;
        p->bstate = HB_CHUNK_SIZE;
        p->chunk_size = 0;
        p->chunk_digits = 0;
        p->line_len = 0;
    } else if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > 0) {
        if (hp->content_length > p->lim.max_body_bytes)
            return fail(p, 413, "payload_too_large",
                        "request body of %llu bytes is over the limit of %zu bytes",
                        (unsigned long long)hp->content_length, p->lim.max_body_bytes);
        req->pool = p->pool;
        req->body = httpd__pool_get(p->pool, (size_t)hp->content_length, &req->body_alloc);
        if (!req->body)
            return fail(p, 503, "overloaded",
                        "no room for a %llu-byte body: request bodies in flight are at their "
                        "limit; retry later",
                        (unsigned long long)hp->content_length);
        p->bstate = HB_LENGTH;
        p->remaining = hp->content_length;
    }
    /* "No body" to http-parser: the body is read by body_feed(). */
    return 1;
}

/* Makes room for len more body bytes, within the limit. */
static int body_reserve(struct httpd_parser *p, struct httpd_req *req, uint64_t len)
{
    size_t want;
    char *nb;

    if (len > p->lim.max_body_bytes || req->body_len > p->lim.max_body_bytes - len)
        return fail(p, 413, "payload_too_large", "request body over the limit of %zu bytes",
                    p->lim.max_body_bytes);
    if (req->body_alloc - req->body_len >= len)
        return 0;
    want = req->body_alloc ? req->body_alloc : CHUNKED_BODY_MIN;
    while (want - req->body_len < len)
        want = want <= SIZE_MAX / 2 ? want * 2 : SIZE_MAX;
    want = ST_MIN(want, p->lim.max_body_bytes);
    if (!req->body) {
        req->pool = p->pool;
        nb = httpd__pool_get(p->pool, want, &req->body_alloc);
    } else {
        nb = httpd__pool_grow(req->pool, req->body, &req->body_alloc, want);
    }
    if (!nb)
        return fail(p, 503, "overloaded",
                    "no room for a %zu-byte body: request bodies in flight are at their "
                    "limit; retry later",
                    want);
    req->body = nb;
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct httpd_parser *p = hp->data;
    struct httpd_req *req = p->req;

    req->keep_alive = http_should_keep_alive(hp) != 0;
    req->upgrade = hp->upgrade != 0;
    p->head_complete = true;
    http_parser_pause(hp, 1);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The body */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* One byte of a trailer line; trailers are checked, counted and dropped. */
static bool trailer_byte(struct httpd_parser *p, unsigned char c)
{
    if (++p->trailer_bytes > p->lim.max_header_bytes) {
        fail(p, 431, "headers_too_large", "request trailers over %zu bytes",
             p->lim.max_header_bytes);
        return false;
    }
    switch (p->bstate) {
    case HB_TRAILER_NAME:
        if (c == ':' && p->line_len > 0)
            p->bstate = HB_TRAILER_VALUE;
        else if (tchar[c])
            p->line_len++;
        else
            goto bad;
        return true;
    case HB_TRAILER_VALUE:
        if (c == '\r')
            p->bstate = HB_TRAILER_LF;
        else if (is_ctl(c))
            goto bad;
        return true;
    case HB_TRAILER_LF:
        if (c != '\n')
            goto bad;
        p->bstate = HB_TRAILER_START;
        return true;
    default:
        ST_BUG("not in a trailer");
    }
bad:
    fail(p, 400, "bad_request", "invalid chunked trailer");
    return false;
}

/*
 * Reads body bytes; returns how many were consumed. Sets p->done at the
 * end of the body, or an error (p->err_status).
 */
static size_t body_feed(struct httpd_parser *p, const char *data, size_t n)
{
    struct httpd_req *req = p->req;
    size_t i = 0;

    while (i < n && !p->done && !p->err_status) {
        unsigned char c = (unsigned char)data[i];
        int v;

        switch (p->bstate) {
        case HB_LENGTH:
        case HB_CHUNK_DATA: {
            size_t take = (size_t)ST_MIN((uint64_t)(n - i), p->remaining);

            memcpy(req->body + req->body_len, data + i, take);
            req->body_len += take;
            p->remaining -= take;
            i += take;
            if (!p->remaining) {
                if (p->bstate == HB_LENGTH) {
                    p->bstate = HB_NONE;
                    p->done = true;
                } else {
                    p->bstate = HB_CHUNK_DATA_CR;
                }
            }
            continue;
        }
        case HB_CHUNK_SIZE:
            v = hexval(c);
            if (v >= 0) {
                if (p->chunk_size > (UINT64_MAX - 15) / 16) {
                    fail(p, 413, "payload_too_large", "request body over the limit of %zu bytes",
                         p->lim.max_body_bytes);
                    return i;
                }
                p->chunk_size = p->chunk_size * 16 + (unsigned)v;
                p->chunk_digits++;
                /* Too big is too big, however many digits follow. */
                if (p->chunk_size > p->lim.max_body_bytes - req->body_len) {
                    fail(p, 413, "payload_too_large", "request body over the limit of %zu bytes",
                         p->lim.max_body_bytes);
                    return i;
                }
            } else if (p->chunk_digits == 0) {
                fail(p, 400, "bad_request", "invalid chunk size");
                return i;
            } else if (c == ';' || c == ' ' || c == '\t') {
                p->bstate = HB_CHUNK_EXT;
                p->line_len = 0;
            } else if (c == '\r') {
                p->bstate = HB_CHUNK_SIZE_LF;
            } else {
                fail(p, 400, "bad_request", "invalid chunk size");
                return i;
            }
            break;
        case HB_CHUNK_EXT:
            if (c == '\r') {
                p->bstate = HB_CHUNK_SIZE_LF;
            } else if (is_ctl(c) || ++p->line_len > CHUNK_EXT_MAX) {
                fail(p, 400, "bad_request", "invalid chunk extension");
                return i;
            }
            break;
        case HB_CHUNK_SIZE_LF:
            if (c != '\n') {
                fail(p, 400, "bad_request", "invalid chunk size line");
                return i;
            }
            if (p->chunk_size == 0) {
                p->bstate = HB_TRAILER_START;
            } else {
                if (body_reserve(p, req, p->chunk_size))
                    return i;
                p->remaining = p->chunk_size;
                p->bstate = HB_CHUNK_DATA;
            }
            break;
        case HB_CHUNK_DATA_CR:
            if (c != '\r') {
                fail(p, 400, "bad_request", "chunk data not followed by CRLF");
                return i;
            }
            p->bstate = HB_CHUNK_DATA_LF;
            break;
        case HB_CHUNK_DATA_LF:
            if (c != '\n') {
                fail(p, 400, "bad_request", "chunk data not followed by CRLF");
                return i;
            }
            p->bstate = HB_CHUNK_SIZE;
            p->chunk_size = 0;
            p->chunk_digits = 0;
            break;
        case HB_TRAILER_START:
            if (c == '\r') {
                p->bstate = HB_END_LF;
                break;
            }
            p->bstate = HB_TRAILER_NAME;
            p->line_len = 0;
            if (!trailer_byte(p, c))
                return i;
            break;
        case HB_TRAILER_NAME:
        case HB_TRAILER_VALUE:
        case HB_TRAILER_LF:
            if (!trailer_byte(p, c))
                return i;
            break;
        case HB_END_LF:
            if (c != '\n') {
                fail(p, 400, "bad_request", "invalid end of chunked body");
                return i;
            }
            p->bstate = HB_NONE;
            p->done = true;
            break;
        case HB_NONE:
            ST_BUG("body_feed without a body");
        }
        i++;
    }
    return i;
}

/* ------------------------------------------------------------------ */
/* Feeding */

/* Whether the end of a request line (tail holds its last bytes) is " HTTP/d.d". */
static bool version_ok(const char *tail, size_t len)
{
    const char *sp;
    const char *v;
    const char *end = tail + len;
    bool digits = false;

    if (len && tail[len - 1] == '\r')
        end--;
    sp = NULL;
    for (const char *q = tail; q < end; q++) {
        if (*q == ' ')
            sp = q;
    }
    if (!sp)
        return false;
    v = sp + 1;
    if (end - v < 8 || memcmp(v, "HTTP/", 5))
        return false;
    v += 5;
    while (v < end && *v >= '0' && *v <= '9') {
        v++;
        digits = true;
    }
    if (!digits || v >= end || *v != '.')
        return false;
    v++;
    digits = false;
    while (v < end && *v >= '0' && *v <= '9') {
        v++;
        digits = true;
    }
    return digits && v == end;
}

/*
 * Follows the request line through the bytes about to be parsed and checks
 * its version token when its LF arrives (http-parser, not built strict,
 * checks only the 'H'). Blank lines before a request are skipped, as
 * http-parser does. Returns the offset of the LF ending a bad request
 * line, or SIZE_MAX.
 */
static size_t scan_request_line(struct httpd_parser *p, const char *data, size_t n)
{
    size_t i = 0;

    while (i < n && !p->line_done) {
        const char *lf = memchr(data + i, '\n', n - i);
        size_t end = lf ? (size_t)(lf - data) : n;
        size_t take = end - i;

        /* Keep the last bytes of the line. */
        if (take >= sizeof(p->tail)) {
            memcpy(p->tail, data + end - sizeof(p->tail), sizeof(p->tail));
            p->tail_len = sizeof(p->tail);
        } else {
            size_t keep = ST_MIN(p->tail_len, sizeof(p->tail) - take);

            memmove(p->tail, p->tail + p->tail_len - keep, keep);
            memcpy(p->tail + keep, data + i, take);
            p->tail_len = keep + take;
        }
        p->line_len += take;
        if (!lf)
            break;
        i = end + 1;
        if (p->line_len == 0 || (p->line_len == 1 && p->tail[0] == '\r')) {
            p->line_len = 0;
            p->tail_len = 0;
            continue;
        }
        p->line_done = true;
        if (!version_ok(p->tail, p->tail_len))
            return end;
    }
    return SIZE_MAX;
}

static void fail_from_errno(struct httpd_parser *p, enum http_errno e, const char *at, size_t avail)
{
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        fail(p, 431, "headers_too_large", "request headers over the limit");
        break;
    case HPE_INVALID_METHOD:
        /* An upper-case token is a method we do not know; else garbage. */
        if (avail && at[0] >= 'A' && at[0] <= 'Z')
            fail(p, 501, "not_implemented", "unknown request method");
        else
            fail(p, 400, "bad_request", "invalid request method");
        break;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        fail(p, 400, "bad_request", "ambiguous message framing: %s", http_errno_description(e));
        break;
    case HPE_INVALID_TRANSFER_ENCODING:
        fail(p, 400, "bad_request", "transfer coding chunked must be last");
        break;
    default:
        fail(p, 400, "bad_request", "invalid request: %s", http_errno_description(e));
        break;
    }
}

/* Runs http-parser over one slice; tracks where a header value may go on. */
static size_t exec(struct httpd_parser *p, const char *data, size_t n)
{
    size_t got;

    if (p->last_cb == CB_VALUE)
        p->val_next = p->val_at_end ? data : NULL;
    got = http_parser_execute(&p->hp, &settings, data, n);
    p->val_at_end = p->last_cb == CB_VALUE && p->val_next == data + n;
    return got;
}

/* Feeds head bytes to http-parser. Returns bytes consumed; false in *ok on error. */
static size_t head_feed(struct httpd_parser *p, const char *data, size_t len, bool *ok)
{
    size_t room =
        p->lim.max_header_bytes > p->head_bytes ? p->lim.max_header_bytes - p->head_bytes : 0;
    size_t n = ST_MIN(len, room);
    size_t bad_line = SIZE_MAX;
    size_t got;
    enum http_errno e;

    *ok = false;
    if (n == 0) {
        fail(p, 431, "headers_too_large", "request headers over %zu bytes",
             p->lim.max_header_bytes);
        return 0;
    }
    if (!p->line_done)
        bad_line = scan_request_line(p, data, n);
    got = exec(p, data, n);
    p->head_bytes += got;
    e = HTTP_PARSER_ERRNO(&p->hp);
    /*
     * A bad version token is reported unless http-parser failed on a byte
     * before the line's end; so where reads end never changes the answer.
     */
    if (bad_line != SIZE_MAX && (e == HPE_OK || e == HPE_PAUSED || got > bad_line)) {
        p->err_status = 0;
        fail(p, 400, "bad_request", "invalid HTTP version in request line");
        return got;
    }
    if (e == HPE_PAUSED && p->head_complete) {
        http_parser_pause(&p->hp, 0);
        /* Not strict, http-parser takes any byte as the final LF. */
        if (got == 0 || data[got - 1] != '\n') {
            fail(p, 400, "bad_request", "invalid end of request headers");
            return got;
        }
        *ok = true;
        return got;
    }
    if (e != HPE_OK) {
        if (!p->err_status)
            fail_from_errno(p, e, data + got, len - got);
        return got;
    }
    if (got < n) {
        fail(p, 400, "bad_request", "invalid request");
        return got;
    }
    if (p->head_bytes >= p->lim.max_header_bytes) {
        fail(p, 431, "headers_too_large", "request headers over %zu bytes",
             p->lim.max_header_bytes);
        return got;
    }
    *ok = true;
    return got;
}

size_t httpd__parser_feed(struct httpd_parser *p, const char *data, size_t len,
                          enum httpd_parse_rc *rc)
{
    size_t off = 0;

    *rc = HTTPD_PARSE_MORE;
    if (p->failed) {
        *rc = HTTPD_PARSE_ERROR;
        return 0;
    }
    st_assert(!p->done);
    if (len == 0)
        return 0;
    if (!p->req)
        begin_request(p);
    while (off < len) {
        size_t got;

        if (!p->head_complete) {
            bool ok;

            got = head_feed(p, data + off, len - off, &ok);
            off += got;
            p->req->wire_bytes += got;
            if (!ok)
                goto failed;
            if (p->head_complete && p->bstate == HB_NONE)
                p->done = true;
        } else {
            got = body_feed(p, data + off, len - off);
            off += got;
            p->req->wire_bytes += got;
            if (p->err_status)
                goto failed;
        }
        if (p->done) {
            *rc = HTTPD_PARSE_DONE;
            return off;
        }
    }
    return off;

failed:
    p->failed = true;
    *rc = HTTPD_PARSE_ERROR;
    return off;
}
