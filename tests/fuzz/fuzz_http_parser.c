/*
 * Fuzz target for the HTTP request parser (src/http/parser.c) and the
 * router and request accessors it feeds.
 *
 * The input (after its first byte) is parsed twice: in one feed, and in
 * feeds of 1..15 bytes as the first byte says; the two must produce the
 * same requests and the same error, since where reads happen to end must
 * not change what is parsed. Each complete request is routed against a
 * small table and every accessor is called; then the parser goes on with
 * the pipelined rest, as a connection would, until an error or the end.
 * Also checked: the parser never consumes more than it is given, bodies
 * stay within the (small) limit, and errors carry a status and code the
 * server knows how to send.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void noop(struct httpd_req *req, void *arg)
{
    (void)req;
    (void)arg;
}

static struct router *router(void)
{
    static struct router r;
    static bool ready;

    if (!ready) {
        httpd__router_init(&r);
        httpd__router_add(&r, HTTPD_ON_BOTH, HTTPD_M_GET, "/health", "health", noop, NULL);
        httpd__router_add(&r, HTTPD_ON_INGEST, HTTPD_M_POST, "/v1/{tenant}/tables/{table}/ingest",
                          "ingest", noop, NULL);
        httpd__router_add(&r, HTTPD_ON_QUERY, HTTPD_M_GET | HTTPD_M_DELETE,
                          "/v1/{tenant}/tables/{table}", "table", noop, NULL);
        httpd__router_add(&r, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/{tenant}/kv/{key*}", "kv", noop,
                          NULL);
        httpd__router_add(&r, HTTPD_ON_QUERY, HTTPD_M_GET, "/", "root", noop, NULL);
        ready = true;
    }
    return &r;
}

static void exercise(struct httpd_req *req, const struct httpd_limits *lim)
{
    static const char *const names[] = {"host", "content-length", "transfer-encoding",
                                        "x-a",  "expect",         "connection"};
    enum httpd_listener other;
    volatile size_t sink = 0;
    unsigned allow;
    size_t n;
    const char *b = httpd_req_body(req, &n);

    if (n > lim->max_body_bytes)
        abort();
    if (n)
        sink += (unsigned char)b[0] + (unsigned char)b[n - 1];
    sink += strlen(httpd_req_path(req)) + strlen(httpd_req_method_name(req));
    for (size_t i = 0; i < ST_ARRAY_SIZE(names); i++) {
        const char *v = httpd_req_header(req, names[i]);

        if (v)
            sink += strlen(v);
    }
    for (size_t i = 0; i < req->nhdrs; i++)
        sink += strlen(req->head.buf + req->hdrs[i].name_off);
    for (unsigned l = 0; l < HTTPD_NLISTENERS; l++) {
        req->listener = (enum httpd_listener)l;
        if (httpd__router_match(router(), req, &allow, &other) == ROUTER_MATCH) {
            const char *const *segs;
            const char *v;
            size_t ns;

            for (size_t i = 0; i < req->nparams; i++)
                sink += strlen(httpd_req_param(req, req->params[i].name));
            segs = httpd_req_param_segments(req, "key", &ns);
            for (size_t i = 0; i < ns; i++)
                sink += strlen(segs[i]);
            v = httpd_req_query_arg(req, "a");
            if (v)
                sink += strlen(v);
            v = httpd_req_query_arg(req, "b+c");
            if (v)
                sink += strlen(v);
        }
    }
    (void)sink;
}

/*
 * Parses the whole input in feeds of at most step bytes, appending what
 * came out (each request's method, path, header count and body; the final
 * error) to out.
 */
static void run(const uint8_t *data, size_t size, size_t step, struct strbuf *out)
{
    struct httpd_limits lim;
    struct httpd_parser p;
    size_t off = 0;

    httpd_limits_default(&lim);
    lim.max_header_bytes = 512;
    lim.max_body_bytes = 4096;
    httpd__parser_init(&p, &lim);
    while (off < size) {
        size_t n = ST_MIN(step, size - off);
        enum httpd_parse_rc rc;
        size_t got = httpd__parser_feed(&p, (const char *)data + off, n, &rc);

        if (got > n)
            abort();
        off += got;
        if (rc == HTTPD_PARSE_ERROR) {
            if (p.err_status < 400 || p.err_status > 599 || !p.err_code || !p.err_msg[0])
                abort();
            strbuf_addf(out, "error %d %s\n", p.err_status, p.err_code);
            break;
        }
        if (rc == HTTPD_PARSE_DONE) {
            struct httpd_req *req = httpd__parser_take(&p);
            size_t blen;
            const char *body = httpd_req_body(req, &blen);

            strbuf_addf(out, "req %s %s %zu %d %d ", req->method_name, req->path, req->nhdrs,
                        req->keep_alive, req->expect_continue);
            strbuf_add(out, body, blen);
            strbuf_addch(out, '\n');
            exercise(req, &lim);
            httpd__parser_recycle(&p, req);
        } else if (got != n) {
            abort();
        }
    }
    httpd__parser_release(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct strbuf whole = STRBUF_INIT;
    struct strbuf split = STRBUF_INIT;
    size_t step;

    if (size < 1)
        return 0;
    step = data[0] & 0x0f;
    if (step == 0)
        step = 1;
    data++;
    size--;
    /* Where the reads end must not change what is parsed. */
    run(data, size, SIZE_MAX, &whole);
    run(data, size, step, &split);
    if (whole.len != split.len || memcmp(whole.buf, split.buf, whole.len))
        abort();
    strbuf_release(&whole);
    strbuf_release(&split);
    return 0;
}
