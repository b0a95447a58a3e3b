/*
 * Unit tests for src/http/parser.c: request framing with no sockets.
 *
 * Each case feeds bytes (whole, and for some requests split at every byte
 * offset) and checks the parsed request or the error status: methods,
 * paths and query arguments, headers, Content-Length and chunked bodies,
 * pipelining, every ambiguous-framing case, and the header and body limits.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

static struct httpd_limits lim;

static void setup(void)
{
    httpd_limits_default(&lim);
    lim.max_header_bytes = 1024;
    lim.max_body_bytes = 4096;
}

/* Feeds data in pieces of at most step bytes; returns the final rc. */
struct result {
    enum httpd_parse_rc rc;
    size_t consumed;
    struct httpd_req *req; /* on DONE */
    int status;            /* on ERROR */
    char code[64];
    char msg[128];
};

static struct result parse_steps(struct httpd_parser *p, const char *data, size_t len, size_t step)
{
    struct result r;
    size_t off = 0;

    memset(&r, 0, sizeof(r));
    r.rc = HTTPD_PARSE_MORE;
    while (off < len) {
        size_t n = ST_MIN(step, len - off);
        size_t got = httpd__parser_feed(p, data + off, n, &r.rc);

        off += got;
        if (r.rc != HTTPD_PARSE_MORE)
            break;
        ck_assert_uint_eq(got, n);
    }
    r.consumed = off;
    if (r.rc == HTTPD_PARSE_DONE)
        r.req = httpd__parser_take(p);
    if (r.rc == HTTPD_PARSE_ERROR) {
        r.status = p->err_status;
        st_strlcpy(r.code, p->err_code, sizeof(r.code));
        st_strlcpy(r.msg, p->err_msg, sizeof(r.msg));
    }
    return r;
}

/* Parses one buffer with a fresh parser, in one piece. */
static struct result parse1(struct httpd_parser *p, const char *data)
{
    httpd__parser_init(p, &lim);
    return parse_steps(p, data, strlen(data), strlen(data) + 1);
}

/* The error status a fresh parser gives data, fed whole and byte by byte. */
static int error_status(const char *data)
{
    struct httpd_parser p;
    struct result r1;
    struct result r2;

    r1 = parse1(&p, data);
    httpd__req_free(r1.req);
    httpd__parser_release(&p);
    httpd__parser_init(&p, &lim);
    r2 = parse_steps(&p, data, strlen(data), 1);
    httpd__req_free(r2.req);
    httpd__parser_release(&p);
    ck_assert_int_eq(r1.rc, r2.rc);
    ck_assert_int_eq(r1.status, r2.status);
    if (r1.rc != HTTPD_PARSE_ERROR)
        return 0;
    return r1.status;
}

START_TEST(test_simple_get)
{
    struct httpd_parser p;
    struct result r = parse1(&p, "GET /v1/t/x?a=1&b=two%20words&c=x+y&d HTTP/1.1\r\n"
                                 "Host: example\r\n"
                                 "X-Thing: first  \r\n"
                                 "x-thing: second\r\n"
                                 "X-Empty:\r\n"
                                 "\r\n");

    ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
    ck_assert_uint_eq(httpd_req_method(r.req), HTTPD_M_GET);
    ck_assert_str_eq(httpd_req_method_name(r.req), "GET");
    ck_assert_str_eq(httpd_req_path(r.req), "/v1/t/x");
    ck_assert_str_eq(httpd_req_query_arg(r.req, "a"), "1");
    ck_assert_str_eq(httpd_req_query_arg(r.req, "b"), "two words");
    ck_assert_str_eq(httpd_req_query_arg(r.req, "c"), "x y");
    ck_assert_str_eq(httpd_req_query_arg(r.req, "d"), "");
    ck_assert_ptr_null(httpd_req_query_arg(r.req, "e"));
    ck_assert_str_eq(httpd_req_header(r.req, "host"), "example");
    ck_assert_str_eq(httpd_req_header(r.req, "X-THING"), "first");
    ck_assert_str_eq(httpd_req_header(r.req, "x-empty"), "");
    ck_assert_ptr_null(httpd_req_header(r.req, "x-missing"));
    ck_assert(r.req->keep_alive);
    ck_assert(!r.req->expect_continue);
    {
        size_t n = 99;

        httpd_req_body(r.req, &n);
        ck_assert_uint_eq(n, 0);
    }
    httpd__req_free(r.req);
    httpd__parser_release(&p);
}
END_TEST

START_TEST(test_methods)
{
    static const struct {
        const char *name;
        unsigned flag;
    } m[] = {
        {"GET", HTTPD_M_GET},         {"HEAD", HTTPD_M_HEAD},      {"POST", HTTPD_M_POST},
        {"PUT", HTTPD_M_PUT},         {"DELETE", HTTPD_M_DELETE},  {"PATCH", HTTPD_M_PATCH},
        {"OPTIONS", HTTPD_M_OPTIONS}, {"PROPFIND", HTTPD_M_OTHER},
    };

    for (size_t i = 0; i < ST_ARRAY_SIZE(m); i++) {
        struct httpd_parser p;
        char buf[128];
        struct result r;

        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: t\r\n\r\n", m[i].name);
        r = parse1(&p, buf);
        ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
        ck_assert_uint_eq(r.req->method, m[i].flag);
        ck_assert_str_eq(r.req->method_name, m[i].name);
        httpd__req_free(r.req);
        httpd__parser_release(&p);
    }
    /* An unknown upper-case token is an unimplemented method; garbage is not. */
    ck_assert_int_eq(error_status("FOO / HTTP/1.1\r\nHost: t\r\n\r\n"), 501);
    ck_assert_int_eq(error_status("GEX / HTTP/1.1\r\nHost: t\r\n\r\n"), 501);
    ck_assert_int_eq(error_status("get / HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
    ck_assert_int_eq(error_status("\x01\x02 / HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
}
END_TEST

START_TEST(test_content_length_body)
{
    static const char req[] =
        "POST /ingest HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world";
    struct httpd_parser p;

    for (size_t step = 1; step <= sizeof(req); step++) {
        struct result r;
        size_t n;
        const char *b;

        httpd__parser_init(&p, &lim);
        r = parse_steps(&p, req, sizeof(req) - 1, step);
        ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
        ck_assert_uint_eq(r.consumed, sizeof(req) - 1);
        b = httpd_req_body(r.req, &n);
        ck_assert_uint_eq(n, 11);
        ck_assert(!memcmp(b, "hello world", 11));
        ck_assert(!r.req->chunked);
        httpd__req_free(r.req);
        httpd__parser_release(&p);
    }
}
END_TEST

START_TEST(test_chunked_body)
{
    static const char req[] = "POST /x HTTP/1.1\r\nHost: t\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "\r\n"
                              "5;name=value\r\nhello\r\n"
                              "1\r\n \r\n"
                              "A \r\n0123456789\r\n"
                              "0\r\n"
                              "X-Trailer: yes\r\n"
                              "\r\n";

    for (size_t step = 1; step <= sizeof(req); step++) {
        struct httpd_parser p;
        struct result r;
        size_t n;
        const char *b;

        httpd__parser_init(&p, &lim);
        r = parse_steps(&p, req, sizeof(req) - 1, step);
        ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
        ck_assert_uint_eq(r.consumed, sizeof(req) - 1);
        b = httpd_req_body(r.req, &n);
        ck_assert_uint_eq(n, 16);
        ck_assert(!memcmp(b, "hello 0123456789", 16));
        ck_assert(r.req->chunked);
        /* Trailers are not headers. */
        ck_assert_ptr_null(httpd_req_header(r.req, "X-Trailer"));
        httpd__req_free(r.req);
        httpd__parser_release(&p);
    }
}
END_TEST

START_TEST(test_split_every_offset)
{
    static const char *const reqs[] = {
        "GET /a/b?x=%41 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Long: aaaaaaaaaaaa\r\n\r\n",
        "PUT /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    };

    for (size_t i = 0; i < ST_ARRAY_SIZE(reqs); i++) {
        size_t len = strlen(reqs[i]);

        for (size_t cut = 1; cut < len; cut++) {
            struct httpd_parser p;
            enum httpd_parse_rc rc;
            struct httpd_req *req;
            size_t got;

            httpd__parser_init(&p, &lim);
            got = httpd__parser_feed(&p, reqs[i], cut, &rc);
            ck_assert_int_eq(rc, HTTPD_PARSE_MORE);
            ck_assert_uint_eq(got, cut);
            got = httpd__parser_feed(&p, reqs[i] + cut, len - cut, &rc);
            ck_assert_int_eq(rc, HTTPD_PARSE_DONE);
            ck_assert_uint_eq(got, len - cut);
            req = httpd__parser_take(&p);
            if (i == 0) {
                ck_assert_str_eq(req->path, "/a/b");
                ck_assert_str_eq(httpd_req_query_arg(req, "x"), "A");
                ck_assert_str_eq(httpd_req_header(req, "accept"), "*/*");
                ck_assert_str_eq(httpd_req_header(req, "x-long"), "aaaaaaaaaaaa");
                ck_assert_uint_eq(req->nhdrs, 3);
            } else {
                size_t n;

                ck_assert(req->expect_continue);
                ck_assert(!memcmp(httpd_req_body(req, &n), "abc", 3));
                ck_assert_uint_eq(n, 3);
            }
            httpd__req_free(req);
            httpd__parser_release(&p);
        }
    }
}
END_TEST

START_TEST(test_pipelined)
{
    static const char data[] = "GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
                               "POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi"
                               "\r\n" /* stray CRLF between requests is allowed */
                               "GET /three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                               "GET /four";
    static const char *const paths[] = {"/one", "/two", "/three"};
    struct httpd_parser p;
    size_t off = 0;
    size_t len = sizeof(data) - 1;

    httpd__parser_init(&p, &lim);
    for (size_t i = 0; i < 3; i++) {
        enum httpd_parse_rc rc;
        struct httpd_req *req;
        size_t got = httpd__parser_feed(&p, data + off, len - off, &rc);

        ck_assert_int_eq(rc, HTTPD_PARSE_DONE);
        off += got;
        req = httpd__parser_take(&p);
        ck_assert_str_eq(req->path, paths[i]);
        ck_assert(req->keep_alive == (i != 2));
        httpd__parser_recycle(&p, req);
    }
    {
        enum httpd_parse_rc rc;
        size_t got = httpd__parser_feed(&p, data + off, len - off, &rc);

        ck_assert_int_eq(rc, HTTPD_PARSE_MORE);
        ck_assert_uint_eq(got, len - off);
    }
    httpd__parser_release(&p);
}
END_TEST

START_TEST(test_keep_alive_rules)
{
    static const struct {
        const char *req;
        bool keep;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: t\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
    };

    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        struct httpd_parser p;
        struct result r = parse1(&p, cases[i].req);

        ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
        ck_assert_int_eq(r.req->keep_alive, cases[i].keep);
        httpd__req_free(r.req);
        httpd__parser_release(&p);
    }
}
END_TEST

START_TEST(test_absolute_form_and_fragment)
{
    struct httpd_parser p;
    struct result r = parse1(&p, "GET http://example.com:80/p/q?z=9 HTTP/1.1\r\nHost: t\r\n\r\n");

    ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
    ck_assert_str_eq(r.req->path, "/p/q");
    ck_assert_str_eq(httpd_req_query_arg(r.req, "z"), "9");
    httpd__req_free(r.req);
    httpd__parser_release(&p);

    r = parse1(&p, "GET /frag?x=1#top HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
    ck_assert_str_eq(r.req->path, "/frag");
    ck_assert_str_eq(httpd_req_query_arg(r.req, "x"), "1");
    httpd__req_free(r.req);
    httpd__parser_release(&p);
}
END_TEST

/* Bodies in flight share one budget: past it a body gets 503 from its headers. */
START_TEST(test_inflight_body_budget)
{
    static const char req600[] = "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 600\r\n\r\n";
    static const char chunked[] =
        "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "258\r\n";
    struct httpd_bufpool pool;
    struct httpd_parser p1, p2, p3;
    char body[600];
    struct result r1, r2, r3;

    memset(&pool, 0, sizeof(pool));
    pool.inflight_max = 1000;
    memset(body, 'x', sizeof(body));

    httpd__parser_init(&p1, &lim);
    p1.pool = &pool;
    r1 = parse_steps(&p1, req600, strlen(req600), strlen(req600));
    ck_assert_int_ne(r1.rc, HTTPD_PARSE_ERROR);
    ck_assert_uint_eq(pool.inflight, 600);

    /* A second 600-byte body does not fit while the first is held. */
    httpd__parser_init(&p2, &lim);
    p2.pool = &pool;
    r2 = parse_steps(&p2, req600, strlen(req600), strlen(req600));
    ck_assert_int_eq(r2.rc, HTTPD_PARSE_ERROR);
    ck_assert_int_eq(p2.err_status, 503);
    httpd__req_free(r2.req);
    httpd__parser_release(&p2);

    /* Nor does a chunked body growing past it. */
    httpd__parser_init(&p3, &lim);
    p3.pool = &pool;
    r3 = parse_steps(&p3, chunked, strlen(chunked), strlen(chunked));
    if (r3.rc != HTTPD_PARSE_ERROR) {
        httpd__req_free(r3.req);
        r3 = parse_steps(&p3, body, sizeof(body), sizeof(body));
    }
    ck_assert_int_eq(r3.rc, HTTPD_PARSE_ERROR);
    ck_assert_int_eq(p3.err_status, 503);
    httpd__req_free(r3.req);
    httpd__parser_release(&p3);

    /* Once the first body is freed, the budget is back. */
    httpd__req_free(r1.req);
    httpd__parser_release(&p1);
    ck_assert_uint_eq(pool.inflight, 0);
    httpd__parser_init(&p2, &lim);
    p2.pool = &pool;
    r2 = parse_steps(&p2, req600, strlen(req600), strlen(req600));
    ck_assert_int_ne(r2.rc, HTTPD_PARSE_ERROR);
    httpd__req_free(r2.req);
    httpd__parser_release(&p2);
    httpd__pool_release(&pool);
}
END_TEST

/* RFC 9112 3.2: HTTP/1.1 needs exactly one Host; HTTP/1.0 at most one. */
START_TEST(test_host_header_rules)
{
    struct httpd_parser p;
    struct result r;

    ck_assert_int_eq(error_status("GET / HTTP/1.1\r\n\r\n"), 400);
    ck_assert_int_eq(error_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    ck_assert_int_eq(error_status("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    r = parse1(&p, "GET / HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
    httpd__req_free(r.req);
    httpd__parser_release(&p);
}
END_TEST

START_TEST(test_ambiguous_framing)
{
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        /* Two Content-Length headers, equal or not. */
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
        /* Content-Length with Transfer-Encoding, both orders. */
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nabc\r\n0\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
         "3\r\nabc\r\n0\r\n\r\n",
         400},
        /* Transfer codings other than chunked. */
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, "
         "chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         501},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "chunked\r\n\r\n"
         "0\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", 400},
        /* Malformed chunks. */
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
         "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
         413},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\nabc\r\n0\r\n\r\n",
         400},
        /* What http-parser, built without HTTP_PARSER_STRICT, lets through. */
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\rXabc\r\n0\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\rX",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
         "chunked\r\n\r\n3;a=\x01\r\nabc\r\n0\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer: "
         "x\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\x01\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: t\r\nA: b\r\n\rX", 400},
        {"GET / HTXP/1.1\r\n\r\n", 400},
        {"GET / H/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
         400},
        /* Bad Content-Length values. */
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1 2\r\n\r\nab", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\na", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1,1\r\n\r\na", 400},
        {"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
        /* Header syntax. */
        {"GET / HTTP/1.1\r\nHost: t\r\nHost : x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: t\r\nHost\t: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: t\r\nHo st: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: t\r\n Host: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: t\r\n: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\x01"
         "b\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", 400},
        /* Request line. */
        {"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\n\r\n", 400},
        {"GET / HTTX/1.1\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET\r\n\r\n", 400},
        {"GET /\x7f HTTP/1.1\r\nHost: t\r\n\r\n", 400},
    };

    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        int st = error_status(cases[i].req);

        if (st != cases[i].status)
            ck_abort_msg("case %zu: got %d, want %d", i, st, cases[i].status);
    }
}
END_TEST

START_TEST(test_fold_split_everywhere)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n two\r\n\r\n";
    size_t len = sizeof(req) - 1;

    for (size_t cut = 1; cut < len; cut++) {
        struct httpd_parser p;
        enum httpd_parse_rc rc;

        httpd__parser_init(&p, &lim);
        httpd__parser_feed(&p, req, cut, &rc);
        if (rc == HTTPD_PARSE_MORE)
            httpd__parser_feed(&p, req + cut, len - cut, &rc);
        ck_assert_int_eq(rc, HTTPD_PARSE_ERROR);
        ck_assert_int_eq(p.err_status, 400);
        httpd__parser_release(&p);
    }
}
END_TEST

START_TEST(test_header_limit)
{
    struct httpd_parser p;
    struct strbuf sb = STRBUF_INIT;
    struct result r;
    size_t base;

    /* Exactly at the limit is fine; one byte more is 431. */
    strbuf_addstr(&sb, "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ");
    base = sb.len + 4; /* "\r\n\r\n" */
    while (sb.len < lim.max_header_bytes - 4)
        strbuf_addch(&sb, 'a');
    strbuf_addstr(&sb, "\r\n\r\n");
    ck_assert_uint_eq(sb.len, lim.max_header_bytes);
    ck_assert(base < sb.len);
    r = parse1(&p, sb.buf);
    ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
    httpd__req_free(r.req);
    httpd__parser_release(&p);

    strbuf_reset(&sb);
    strbuf_addstr(&sb, "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ");
    while (sb.len < lim.max_header_bytes - 3)
        strbuf_addch(&sb, 'a');
    strbuf_addstr(&sb, "\r\n\r\n");
    ck_assert_int_eq(error_status(sb.buf), 431);

    /* The limit holds however the bytes arrive, and never reads past it. */
    httpd__parser_init(&p, &lim);
    r = parse_steps(&p, sb.buf, sb.len, 7);
    ck_assert_int_eq(r.rc, HTTPD_PARSE_ERROR);
    ck_assert_int_eq(r.status, 431);
    ck_assert_str_eq(r.code, "headers_too_large");
    ck_assert_uint_le(r.consumed, lim.max_header_bytes);
    httpd__parser_release(&p);

    /* Endless blank lines before a request count too. */
    strbuf_reset(&sb);
    while (sb.len < 2 * lim.max_header_bytes)
        strbuf_addstr(&sb, "\r\n");
    ck_assert_int_eq(error_status(sb.buf), 431);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_body_limit_content_length)
{
    struct httpd_parser p;
    enum httpd_parse_rc rc;
    char buf[128];
    size_t len;

    /* Refused at the end of the headers, with no body byte sent. */
    len = (size_t)snprintf(buf, sizeof(buf),
                           "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
                           lim.max_body_bytes + 1);
    httpd__parser_init(&p, &lim);
    httpd__parser_feed(&p, buf, len, &rc);
    ck_assert_int_eq(rc, HTTPD_PARSE_ERROR);
    ck_assert_int_eq(p.err_status, 413);
    ck_assert_str_eq(p.err_code, "payload_too_large");
    ck_assert_ptr_null(p.req->body);
    httpd__parser_release(&p);

    /* At the limit is fine. */
    {
        struct strbuf sb = STRBUF_INIT;
        struct result r;

        strbuf_addf(&sb, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n",
                    lim.max_body_bytes);
        for (size_t i = 0; i < lim.max_body_bytes; i++)
            strbuf_addch(&sb, 'b');
        r = parse1(&p, sb.buf);
        ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
        ck_assert_uint_eq(r.req->body_len, lim.max_body_bytes);
        httpd__req_free(r.req);
        httpd__parser_release(&p);
        strbuf_release(&sb);
    }
}
END_TEST

START_TEST(test_body_limit_chunked)
{
    struct strbuf sb = STRBUF_INIT;
    struct httpd_parser p;
    enum httpd_parse_rc rc;

    /* A chunk header that announces too much is refused before its data. */
    strbuf_addf(&sb, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n",
                lim.max_body_bytes + 1);
    httpd__parser_init(&p, &lim);
    httpd__parser_feed(&p, sb.buf, sb.len, &rc);
    ck_assert_int_eq(rc, HTTPD_PARSE_ERROR);
    ck_assert_int_eq(p.err_status, 413);
    httpd__parser_release(&p);

    /* Many small chunks growing past the limit. */
    strbuf_reset(&sb);
    strbuf_addstr(&sb, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t total = 0; total <= lim.max_body_bytes; total += 100) {
        strbuf_addstr(&sb, "64\r\n");
        for (int i = 0; i < 100; i++)
            strbuf_addch(&sb, 'c');
        strbuf_addstr(&sb, "\r\n");
    }
    strbuf_addstr(&sb, "0\r\n\r\n");
    ck_assert_int_eq(error_status(sb.buf), 413);

    /* Trailers are bounded like headers. */
    strbuf_reset(&sb);
    strbuf_addstr(&sb,
                  "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ");
    while (sb.len < 2 * lim.max_header_bytes)
        strbuf_addch(&sb, 't');
    strbuf_addstr(&sb, "\r\n\r\n");
    ck_assert_int_eq(error_status(sb.buf), 431);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_limits_change_between_requests)
{
    static const char two[] = "GET /a HTTP/1.1\r\nHost: t\r\nX: 1234567890\r\n\r\n"
                              "GET /b HTTP/1.1\r\nHost: t\r\nX: 1234567890\r\n\r\n";
    struct httpd_parser p;
    enum httpd_parse_rc rc;
    size_t got;

    httpd__parser_init(&p, &lim);
    got = httpd__parser_feed(&p, two, sizeof(two) - 1, &rc);
    ck_assert_int_eq(rc, HTTPD_PARSE_DONE);
    httpd__parser_recycle(&p, httpd__parser_take(&p));
    lim.max_header_bytes = 20;
    httpd__parser_feed(&p, two + got, sizeof(two) - 1 - got, &rc);
    ck_assert_int_eq(rc, HTTPD_PARSE_ERROR);
    ck_assert_int_eq(p.err_status, 431);
    httpd__parser_release(&p);
}
END_TEST

START_TEST(test_expect_and_upgrade)
{
    struct httpd_parser p;
    struct result r;

    r = parse1(&p,
               "POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx");
    ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
    ck_assert(r.req->expect_continue);
    httpd__req_free(r.req);
    httpd__parser_release(&p);

    r = parse1(&p,
               "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    ck_assert_int_eq(r.rc, HTTPD_PARSE_DONE);
    ck_assert(r.req->upgrade);
    httpd__req_free(r.req);
    httpd__parser_release(&p);
}
END_TEST

START_TEST(test_error_is_sticky)
{
    struct httpd_parser p;
    enum httpd_parse_rc rc;
    size_t got;

    httpd__parser_init(&p, &lim);
    httpd__parser_feed(&p, "BAD\x01", 4, &rc);
    ck_assert_int_eq(rc, HTTPD_PARSE_ERROR);
    got = httpd__parser_feed(&p, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 18, &rc);
    ck_assert_int_eq(rc, HTTPD_PARSE_ERROR);
    ck_assert_uint_eq(got, 0);
    httpd__parser_release(&p);
}
END_TEST

START_TEST(test_req_alloc_and_reuse)
{
    struct httpd_req *req = httpd__req_new();
    char *small = httpd_req_alloc(req, 10);
    char *big = httpd_req_alloc(req, 100000);
    char *again;

    ck_assert_ptr_nonnull(small);
    ck_assert_ptr_nonnull(big);
    ck_assert_uint_eq((uintptr_t)small % 16, 0);
    ck_assert_uint_eq((uintptr_t)big % 16, 0);
    memset(big, 1, 100000);
    for (int i = 0; i < 100; i++) {
        again = httpd_req_alloc(req, 100);
        memset(again, 2, 100);
        ck_assert_uint_eq((uintptr_t)again % 16, 0);
    }
    httpd__req_reset(req);
    again = httpd_req_alloc(req, 10);
    ck_assert_ptr_eq(again, small);
    httpd__req_free(req);
}
END_TEST

static Suite *parser_suite(void)
{
    Suite *s = suite_create("http_parser");
    TCase *tc = tcase_create("parser");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_simple_get);
    tcase_add_test(tc, test_methods);
    tcase_add_test(tc, test_content_length_body);
    tcase_add_test(tc, test_chunked_body);
    tcase_add_test(tc, test_split_every_offset);
    tcase_add_test(tc, test_pipelined);
    tcase_add_test(tc, test_keep_alive_rules);
    tcase_add_test(tc, test_absolute_form_and_fragment);
    tcase_add_test(tc, test_ambiguous_framing);
    tcase_add_test(tc, test_host_header_rules);
    tcase_add_test(tc, test_inflight_body_budget);
    tcase_add_test(tc, test_fold_split_everywhere);
    tcase_add_test(tc, test_header_limit);
    tcase_add_test(tc, test_body_limit_content_length);
    tcase_add_test(tc, test_body_limit_chunked);
    tcase_add_test(tc, test_limits_change_between_requests);
    tcase_add_test(tc, test_expect_and_upgrade);
    tcase_add_test(tc, test_error_is_sticky);
    tcase_add_test(tc, test_req_alloc_and_reuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parser_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
