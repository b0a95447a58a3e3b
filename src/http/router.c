/*
 * router: the route table and path matching.
 *
 * A pattern is split once, at registration, into segments: literals,
 * "{name}" (one non-empty segment) and a trailing "{name*}" (one or more
 * non-empty segments). A request path is split into raw segments once per
 * request; routes are then tried in the order added, comparing raw
 * segments, so nothing is decoded until a route has matched. Only the
 * winner's parameters are percent-decoded, into the request's arena; an
 * invalid escape (or an escaped NUL) there, or anywhere in the query
 * string, is a 400.
 *
 * When nothing matches, the answer says why: 405 with the methods of the
 * routes whose pattern did match on this listener, else 404 wrong_listener
 * naming the listener that serves the path, else 404 not_found.
 */
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

/* Paths with more segments than this use the arena for the split. */
#define STACK_SEGS 32

struct seg {
    const char *s;
    size_t len;
};

void httpd__router_init(struct router *r)
{
    memset(r, 0, sizeof(*r));
}

void httpd__router_release(struct router *r)
{
    for (size_t i = 0; i < r->nroutes; i++) {
        struct route *rt = r->routes[i];

        for (size_t j = 0; j < rt->nsegs; j++)
            free(rt->segs[j].text);
        free(rt->segs);
        free(rt->pattern);
        free(rt->name);
        free(rt);
    }
    free(r->routes);
    memset(r, 0, sizeof(*r));
}

struct route *httpd__router_add(struct router *r, unsigned listeners, unsigned methods,
                                const char *pattern, const char *name, httpd_handler_fn fn,
                                void *arg)
{
    struct route *rt = xcalloc(1, sizeof(*rt));
    const char *s = pattern;

    if (pattern[0] != '/')
        ST_BUG("route pattern '%s' does not start with '/'", pattern);
    if (!listeners || !methods || !fn)
        ST_BUG("route '%s' needs listeners, methods and a handler", pattern);
    rt->listeners = listeners;
    rt->methods = methods;
    rt->pattern = xstrdup(pattern);
    rt->name = xstrdup(name ? name : pattern);
    rt->fn = fn;
    rt->arg = arg;

    while (*s == '/' && s[1]) {
        const char *start = s + 1;
        const char *end = strchr(start, '/');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        struct route_seg *seg;

        rt->segs = realloc_array(rt->segs, rt->nsegs + 1, sizeof(*rt->segs));
        seg = &rt->segs[rt->nsegs++];
        memset(seg, 0, sizeof(*seg));
        if (len == 0)
            ST_BUG("route pattern '%s' has an empty segment", pattern);
        if (start[0] == '{') {
            if (len < 3 || start[len - 1] != '}')
                ST_BUG("route pattern '%s' has a bad parameter", pattern);
            seg->param = true;
            seg->text = xstrndup(start + 1, len - 2);
            seg->len = len - 2;
            if (seg->text[seg->len - 1] == '*') {
                seg->star = true;
                seg->text[--seg->len] = '\0';
                if (end || seg->len == 0)
                    ST_BUG("route pattern '%s': {name*} must be the last segment", pattern);
            }
        } else {
            if (memchr(start, '{', len) || memchr(start, '}', len))
                ST_BUG("route pattern '%s' has a bad segment", pattern);
            seg->text = xstrndup(start, len);
            seg->len = len;
        }
        s = start + len;
    }
    if (*s && strcmp(pattern, "/"))
        ST_BUG("route pattern '%s' ends with '/'", pattern);

    if (r->nroutes == r->alloc) {
        r->alloc = r->alloc ? r->alloc * 2 : 16;
        r->routes = realloc_array(r->routes, r->alloc, sizeof(*r->routes));
    }
    rt->index = r->nroutes;
    r->routes[r->nroutes++] = rt;
    return rt;
}

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

long httpd__pct_decode(char *dst, const char *src, size_t len, bool plus)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];

        if (c == '%') {
            int hi;
            int lo;

            if (len - i < 3)
                return -1;
            hi = hexval((unsigned char)src[i + 1]);
            lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus) {
            dst[o++] = ' ';
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return (long)o;
}

/* Checks every escape of the query string (NULL is fine). */
static bool query_valid(const char *q)
{
    for (; q && *q; q++) {
        if (*q == '%') {
            if (hexval((unsigned char)q[1]) < 0 || hexval((unsigned char)q[2]) < 0 ||
                (q[1] == '0' && q[2] == '0'))
                return false;
            q += 2;
        }
    }
    return true;
}

void httpd__methods_str(struct strbuf *sb, unsigned mask)
{
    static const struct {
        unsigned flag;
        const char *name;
    } names[] = {
        {HTTPD_M_GET, "GET"},         {HTTPD_M_HEAD, "HEAD"},     {HTTPD_M_POST, "POST"},
        {HTTPD_M_PUT, "PUT"},         {HTTPD_M_DELETE, "DELETE"}, {HTTPD_M_PATCH, "PATCH"},
        {HTTPD_M_OPTIONS, "OPTIONS"},
    };
    bool first = true;

    if (mask & HTTPD_M_GET)
        mask |= HTTPD_M_HEAD;
    for (size_t i = 0; i < ST_ARRAY_SIZE(names); i++) {
        if (!(mask & names[i].flag))
            continue;
        if (!first)
            strbuf_addstr(sb, ", ");
        strbuf_addstr(sb, names[i].name);
        first = false;
    }
}

unsigned httpd__method_flag(enum http_method m)
{
    switch (m) {
    case HTTP_GET:
        return HTTPD_M_GET;
    case HTTP_HEAD:
        return HTTPD_M_HEAD;
    case HTTP_POST:
        return HTTPD_M_POST;
    case HTTP_PUT:
        return HTTPD_M_PUT;
    case HTTP_DELETE:
        return HTTPD_M_DELETE;
    case HTTP_PATCH:
        return HTTPD_M_PATCH;
    case HTTP_OPTIONS:
        return HTTPD_M_OPTIONS;
    default:
        return HTTPD_M_OTHER;
    }
}

/* Whether the pattern of rt matches the raw segments. */
static bool pattern_matches(const struct route *rt, const struct seg *segs, size_t nsegs)
{
    size_t i;

    for (i = 0; i < rt->nsegs; i++) {
        const struct route_seg *ps = &rt->segs[i];

        if (ps->star) {
            if (i >= nsegs)
                return false;
            for (size_t j = i; j < nsegs; j++) {
                if (segs[j].len == 0)
                    return false;
            }
            return true;
        }
        if (i >= nsegs)
            return false;
        if (ps->param) {
            if (segs[i].len == 0)
                return false;
        } else if (ps->len != segs[i].len || memcmp(ps->text, segs[i].s, ps->len)) {
            return false;
        }
    }
    return i == nsegs;
}

/* Decodes the parameters of the matched route into req's arena. */
static bool bind_params(struct httpd_req *req, const struct route *rt, const struct seg *segs,
                        size_t nsegs)
{
    size_t np = 0;

    for (size_t i = 0; i < rt->nsegs; i++)
        np += rt->segs[i].param;
    req->params = np ? httpd_req_alloc(req, np * sizeof(*req->params)) : NULL;
    req->nparams = 0;
    for (size_t i = 0; i < rt->nsegs; i++) {
        const struct route_seg *ps = &rt->segs[i];
        struct httpd_param *prm;

        if (!ps->param)
            continue;
        prm = &req->params[req->nparams++];
        prm->name = ps->text;
        prm->segs = NULL;
        prm->nsegs = 0;
        if (!ps->star) {
            char *v = httpd_req_alloc(req, segs[i].len + 1);

            if (httpd__pct_decode(v, segs[i].s, segs[i].len, false) < 0)
                return false;
            prm->value = v;
        } else {
            size_t n = nsegs - i;
            const char **out = httpd_req_alloc(req, n * sizeof(*out));
            size_t total = 0;
            char *joined;
            size_t o = 0;

            for (size_t j = 0; j < n; j++) {
                char *v = httpd_req_alloc(req, segs[i + j].len + 1);
                long dl = httpd__pct_decode(v, segs[i + j].s, segs[i + j].len, false);

                if (dl < 0)
                    return false;
                out[j] = v;
                total += (size_t)dl + 1;
            }
            joined = httpd_req_alloc(req, total);
            for (size_t j = 0; j < n; j++) {
                size_t l = strlen(out[j]);

                memcpy(joined + o, out[j], l);
                o += l;
                joined[o++] = j + 1 < n ? '/' : '\0';
            }
            prm->value = joined;
            prm->segs = out;
            prm->nsegs = n;
        }
    }
    return true;
}

enum router_rc httpd__router_match(const struct router *r, struct httpd_req *req, unsigned *allow,
                                   enum httpd_listener *other)
{
    struct seg stack_segs[STACK_SEGS];
    struct seg *segs = stack_segs;
    size_t nsegs = 0;
    size_t cap = STACK_SEGS;
    const char *s = req->path;
    unsigned method = req->method;
    unsigned want = req->listener < HTTPD_NLISTENERS ? 1u << req->listener : 0;
    unsigned other_mask = 0;

    *allow = 0;
    *other = req->listener;
    req->route = NULL;
    if (!s || s[0] != '/')
        return ROUTER_NOT_FOUND;
    if (!query_valid(req->query))
        return ROUTER_BAD_REQUEST;

    /* "/" has no segments; "/a/" has "a" and "". */
    if (!strcmp(s, "/"))
        s++;
    while (s[0] == '/') {
        const char *start = s + 1;
        const char *end = strchr(start, '/');
        size_t len = end ? (size_t)(end - start) : strlen(start);

        if (nsegs == cap) {
            struct seg *ns = httpd_req_alloc(req, 2 * cap * sizeof(*ns));

            memcpy(ns, segs, nsegs * sizeof(*ns));
            segs = ns;
            cap *= 2;
        }
        segs[nsegs].s = start;
        segs[nsegs].len = len;
        nsegs++;
        s = start + len;
    }

    for (size_t i = 0; i < r->nroutes; i++) {
        const struct route *rt = r->routes[i];
        unsigned methods = rt->methods;

        if (!pattern_matches(rt, segs, nsegs))
            continue;
        if (!(rt->listeners & want)) {
            other_mask |= rt->listeners;
            continue;
        }
        if (methods & HTTPD_M_GET)
            methods |= HTTPD_M_HEAD;
        if (!(methods & method) || method == HTTPD_M_OTHER) {
            *allow |= methods;
            continue;
        }
        if (!bind_params(req, rt, segs, nsegs))
            return ROUTER_BAD_REQUEST;
        req->route = rt;
        return ROUTER_MATCH;
    }
    if (*allow)
        return ROUTER_BAD_METHOD;
    if (other_mask) {
        for (unsigned l = 0; l < HTTPD_NLISTENERS; l++) {
            if (other_mask & (1u << l)) {
                *other = (enum httpd_listener)l;
                break;
            }
        }
        return ROUTER_WRONG_LISTENER;
    }
    return ROUTER_NOT_FOUND;
}
