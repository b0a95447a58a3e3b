/*
 * request: struct httpd_req, its memory and its accessors.
 *
 * A request keeps everything it points to in a few buffers that live as
 * long as it does: "head" holds the URL and the header names and values
 * (NUL-separated, written by the parser), "body" the de-chunked body, and
 * an arena (a first block inline in the struct, more blocks malloc'd on
 * demand) holds decoded parameters, query arguments and whatever handlers
 * ask for with httpd_req_alloc(). The connection reuses a finished request
 * for the next one, so a keep-alive connection serving small requests
 * allocates nothing per request once warm.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_int.h"

/* Blocks beyond the inline one, and the largest head buffer kept on reuse. */
#define ARENA_BLOCK_MIN 4096
#define HEAD_KEEP_MAX   (64 * 1024)
#define HDRS_KEEP_MAX   256
#define RESP_HDRS_KEEP  4096

static void arena_init(struct httpd_req *req)
{
    req->inline_block.next = NULL;
    req->inline_block.size = HTTPD_REQ_INLINE_ARENA;
    req->inline_block.used = 0;
    req->inline_block.data = req->inline_data;
    req->arena = &req->inline_block;
}

static void arena_release(struct httpd_req *req)
{
    struct arena_block *b = req->arena;

    while (b) {
        struct arena_block *next = b->next;

        if (b != &req->inline_block)
            free(b);
        b = next;
    }
    arena_init(req);
}

char *httpd__pool_get(struct httpd_bufpool *pool, size_t want, size_t *cap)
{
    size_t best = SIZE_MAX;
    char *buf;

    if (pool && pool->inflight_max &&
        want > pool->inflight_max - ST_MIN(pool->inflight, pool->inflight_max)) {
        *cap = 0;
        return NULL;
    }

    if (pool && want >= HTTPD_POOL_MIN / 2) {
        /* The smallest kept buffer that fits, if not wastefully big. */
        for (size_t i = 0; i < pool->n; i++) {
            size_t c = pool->ent[i].cap;

            if (c >= want && c / 4 <= want && (best == SIZE_MAX || c < pool->ent[best].cap))
                best = i;
        }
        if (best != SIZE_MAX) {
            buf = pool->ent[best].buf;
            *cap = pool->ent[best].cap;
            pool->bytes -= *cap;
            pool->ent[best] = pool->ent[--pool->n];
            pool->inflight += *cap;
            return buf;
        }
    }
    buf = malloc(want);
    *cap = buf ? want : 0;
    if (pool)
        pool->inflight += *cap;
    return buf;
}

char *httpd__pool_grow(struct httpd_bufpool *pool, char *buf, size_t *cap, size_t want)
{
    char *nb;

    if (pool && pool->inflight_max &&
        want - *cap > pool->inflight_max - ST_MIN(pool->inflight, pool->inflight_max))
        return NULL;
    nb = realloc(buf, want);
    if (!nb)
        return NULL;
    if (pool)
        pool->inflight += want - *cap;
    *cap = want;
    return nb;
}

void httpd__pool_put(struct httpd_bufpool *pool, char *buf, size_t cap)
{
    if (!buf)
        return;
    if (pool)
        pool->inflight -= ST_MIN(cap, pool->inflight);
    if (!pool || cap < HTTPD_POOL_MIN || pool->n == HTTPD_POOL_SLOTS ||
        pool->bytes + cap > HTTPD_POOL_MAX_BYTES) {
        free(buf);
        return;
    }
    pool->ent[pool->n].buf = buf;
    pool->ent[pool->n].cap = cap;
    pool->n++;
    pool->bytes += cap;
}

void httpd__pool_release(struct httpd_bufpool *pool)
{
    for (size_t i = 0; i < pool->n; i++)
        free(pool->ent[i].buf);
    pool->n = 0;
    pool->bytes = 0;
}

static void body_release(struct httpd_req *req)
{
    httpd__pool_put(req->pool, req->body, req->body_alloc);
    req->body = NULL;
    req->body_alloc = 0;
    req->body_len = 0;
}

struct httpd_req *httpd__req_new(void)
{
    struct httpd_req *req = xcalloc(1, sizeof(*req));

    strbuf_init(&req->head, 0);
    strbuf_init(&req->resp_hdrs, 0);
    arena_init(req);
    req->peer = "";
    return req;
}

void httpd__req_free(struct httpd_req *req)
{
    if (!req)
        return;
    arena_release(req);
    body_release(req);
    strbuf_release(&req->head);
    strbuf_release(&req->resp_hdrs);
    free(req->hdrs);
    free(req);
}

void httpd__req_reset(struct httpd_req *req)
{
    struct strbuf head = req->head;
    struct strbuf resp_hdrs = req->resp_hdrs;
    struct httpd_hdr *hdrs = req->hdrs;
    size_t hdrs_alloc = req->hdrs_alloc;

    arena_release(req);
    body_release(req);
    if (head.alloc > HEAD_KEEP_MAX)
        strbuf_release(&head);
    strbuf_reset(&head);
    if (resp_hdrs.alloc > RESP_HDRS_KEEP)
        strbuf_release(&resp_hdrs);
    strbuf_reset(&resp_hdrs);
    if (hdrs_alloc > HDRS_KEEP_MAX) {
        free(hdrs);
        hdrs = NULL;
        hdrs_alloc = 0;
    }

    memset(req, 0, offsetof(struct httpd_req, inline_block));
    req->head = head;
    req->resp_hdrs = resp_hdrs;
    req->hdrs = hdrs;
    req->hdrs_alloc = hdrs_alloc;
    req->peer = "";
    arena_init(req);
}

void *httpd_req_alloc(struct httpd_req *req, size_t n)
{
    struct arena_block *b = req->arena;
    size_t need = (n + 15) & ~(size_t)15;
    size_t size;
    void *p;

    if (need < n)
        ST_BUG("httpd_req_alloc size overflow");
    if (b->size - b->used >= need) {
        p = b->data + b->used;
        b->used += need;
        return p;
    }
    size = ST_MAX(need, (size_t)ARENA_BLOCK_MIN);
    if (size > SIZE_MAX - sizeof(*b))
        ST_BUG("httpd_req_alloc size overflow");
    /* sizeof(*b) is 32: the data after it stays 16-byte aligned. */
    b = xmalloc(sizeof(*b) + size);
    b->data = (char *)(b + 1);
    b->size = size;
    b->used = need;
    /*
     * A block bigger than the default goes behind the current one, so the
     * space left in the current block is not wasted.
     */
    if (size > ARENA_BLOCK_MIN && req->arena->size - req->arena->used > 64) {
        b->next = req->arena->next;
        req->arena->next = b;
    } else {
        b->next = req->arena;
        req->arena = b;
    }
    return b->data;
}

enum httpd_listener httpd_req_listener(const struct httpd_req *req)
{
    return req->listener;
}

unsigned httpd_req_method(const struct httpd_req *req)
{
    return req->method;
}

const char *httpd_req_method_name(const struct httpd_req *req)
{
    return req->method_name;
}

const char *httpd_req_path(const struct httpd_req *req)
{
    return req->path;
}

static const struct httpd_param *find_param(const struct httpd_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++) {
        if (!strcmp(req->params[i].name, name))
            return &req->params[i];
    }
    return NULL;
}

const char *httpd_req_param(const struct httpd_req *req, const char *name)
{
    const struct httpd_param *p = find_param(req, name);

    return p ? p->value : NULL;
}

const char *const *httpd_req_param_segments(const struct httpd_req *req, const char *name,
                                            size_t *n)
{
    const struct httpd_param *p = find_param(req, name);

    if (!p || !p->segs) {
        *n = 0;
        return NULL;
    }
    *n = p->nsegs;
    return p->segs;
}

const char *httpd_req_query_arg(const struct httpd_req *req, const char *name)
{
    const char *q = req->query;
    size_t namelen = strlen(name);

    while (q && *q) {
        const char *amp = strchr(q, '&');
        const char *end = amp ? amp : q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));
        const char *kend = eq ? eq : end;
        size_t klen = (size_t)(kend - q);
        char kbuf[128];
        char *key = kbuf;
        long dl;

        /* A decoded key is never longer than its encoding. */
        if (klen >= namelen && klen > 0) {
            if (klen >= sizeof(kbuf))
                key = httpd_req_alloc((struct httpd_req *)req, klen + 1);
            dl = httpd__pct_decode(key, q, klen, true);
            if (dl == (long)namelen && !memcmp(key, name, namelen)) {
                const char *v = eq ? eq + 1 : end;
                size_t vlen = (size_t)(end - v);
                char *val = httpd_req_alloc((struct httpd_req *)req, vlen + 1);

                if (httpd__pct_decode(val, v, vlen, true) < 0)
                    return NULL;
                return val;
            }
        }
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *httpd__req_header_n(const struct httpd_req *req, const char *name, size_t len)
{
    for (size_t i = 0; i < req->nhdrs; i++) {
        const struct httpd_hdr *h = &req->hdrs[i];

        if (h->name_len == len && !strncasecmp(req->head.buf + h->name_off, name, len))
            return req->head.buf + h->val_off;
    }
    return NULL;
}

const char *httpd_req_header(const struct httpd_req *req, const char *name)
{
    return httpd__req_header_n(req, name, strlen(name));
}

const char *httpd_req_body(const struct httpd_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

const char *httpd_req_peer(const struct httpd_req *req)
{
    return req->peer;
}

const char *httpd_listener_name(enum httpd_listener which)
{
    switch (which) {
    case HTTPD_INGEST:
        return "ingest";
    case HTTPD_QUERY:
        return "query";
    default:
        return "unknown";
    }
}

bool httpd_req_is_aborted(const struct httpd_req *req)
{
    return req->aborted;
}
