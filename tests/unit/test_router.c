/*
 * Unit tests for src/http/router.c (patterns, parameters, percent-decoding,
 * 404 / 405 + Allow / wrong_listener) and for the status table and JSON
 * error body of src/http/reply.c.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

static int calls;

static void handler(struct httpd_req *req, void *arg)
{
    ST_UNUSED(req);
    ST_UNUSED(arg);
    calls++;
}

static struct router r;

static void setup(void)
{
    httpd__router_init(&r);
    httpd__router_add(&r, HTTPD_ON_BOTH, HTTPD_M_GET, "/health", "health", handler, NULL);
    httpd__router_add(&r, HTTPD_ON_INGEST, HTTPD_M_POST, "/v1/{tenant}/tables/{table}/ingest",
                      "ingest", handler, NULL);
    httpd__router_add(&r, HTTPD_ON_QUERY, HTTPD_M_GET | HTTPD_M_DELETE,
                      "/v1/{tenant}/tables/{table}", "table", handler, NULL);
    httpd__router_add(&r, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/{tenant}/kv/{key*}", "kv", handler,
                      NULL);
    httpd__router_add(&r, HTTPD_ON_QUERY, HTTPD_M_GET, "/", "root", handler, NULL);
    httpd__router_add(&r, HTTPD_ON_QUERY, HTTPD_M_PUT, "/v1/{tenant}/tables/special", "special",
                      handler, NULL);
}

static void teardown(void)
{
    httpd__router_release(&r);
}

/* A request as the parser would leave it. */
static struct httpd_req *mkreq(enum httpd_listener l, unsigned method, const char *path,
                               const char *query)
{
    struct httpd_req *req = httpd__req_new();
    char *p = httpd_req_alloc(req, strlen(path) + 1);

    strcpy(p, path);
    req->path = p;
    if (query) {
        char *q = httpd_req_alloc(req, strlen(query) + 1);

        strcpy(q, query);
        req->query = q;
    }
    req->listener = l;
    req->method = method;
    req->method_name = "X";
    return req;
}

static enum router_rc match(enum httpd_listener l, unsigned method, const char *path,
                            struct httpd_req **out)
{
    struct httpd_req *req = mkreq(l, method, path, NULL);
    enum httpd_listener other;
    unsigned allow;
    enum router_rc rc = httpd__router_match(&r, req, &allow, &other);

    if (out)
        *out = req;
    else
        httpd__req_free(req);
    return rc;
}

START_TEST(test_literal_and_params)
{
    struct httpd_req *req;

    ck_assert_int_eq(match(HTTPD_INGEST, HTTPD_M_GET, "/health", &req), ROUTER_MATCH);
    ck_assert_str_eq(req->route->name, "health");
    ck_assert_uint_eq(req->nparams, 0);
    httpd__req_free(req);

    ck_assert_int_eq(match(HTTPD_INGEST, HTTPD_M_POST, "/v1/acme/tables/logs/ingest", &req),
                     ROUTER_MATCH);
    ck_assert_str_eq(req->route->name, "ingest");
    ck_assert_str_eq(httpd_req_param(req, "tenant"), "acme");
    ck_assert_str_eq(httpd_req_param(req, "table"), "logs");
    ck_assert_ptr_null(httpd_req_param(req, "nope"));
    httpd__req_free(req);

    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/", &req), ROUTER_MATCH);
    ck_assert_str_eq(req->route->name, "root");
    httpd__req_free(req);
}
END_TEST

START_TEST(test_percent_decoding)
{
    struct httpd_req *req;

    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/a%20b/tables/t%2Fx", &req), ROUTER_MATCH);
    ck_assert_str_eq(httpd_req_param(req, "tenant"), "a b");
    ck_assert_str_eq(httpd_req_param(req, "table"), "t/x");
    httpd__req_free(req);

    /* '+' is not a space in a path. */
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/a+b/tables/%c3%A9", &req), ROUTER_MATCH);
    ck_assert_str_eq(httpd_req_param(req, "tenant"), "a+b");
    ck_assert_str_eq(httpd_req_param(req, "table"), "\xc3\xa9");
    httpd__req_free(req);

    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/a%2/tables/t", NULL), ROUTER_BAD_REQUEST);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/a%zz/tables/t", NULL),
                     ROUTER_BAD_REQUEST);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/a/tables/t%", NULL), ROUTER_BAD_REQUEST);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/a%00b/tables/t", NULL),
                     ROUTER_BAD_REQUEST);
}
END_TEST

START_TEST(test_pct_decode_function)
{
    char out[32];

    ck_assert_int_eq(httpd__pct_decode(out, "a%41+b", 6, true), 4);
    ck_assert_str_eq(out, "aA b");
    ck_assert_int_eq(httpd__pct_decode(out, "a%41+b", 6, false), 4);
    ck_assert_str_eq(out, "aA+b");
    ck_assert_int_eq(httpd__pct_decode(out, "%", 1, false), -1);
    ck_assert_int_eq(httpd__pct_decode(out, "%4", 2, false), -1);
    ck_assert_int_eq(httpd__pct_decode(out, "%4g", 3, false), -1);
    ck_assert_int_eq(httpd__pct_decode(out, "%00", 3, false), -1);
    ck_assert_int_eq(httpd__pct_decode(out, "", 0, false), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_query_validation)
{
    struct httpd_req *req = mkreq(HTTPD_QUERY, HTTPD_M_GET, "/health", "a=%zz");
    enum httpd_listener other;
    unsigned allow;

    ck_assert_int_eq(httpd__router_match(&r, req, &allow, &other), ROUTER_BAD_REQUEST);
    httpd__req_free(req);

    req = mkreq(HTTPD_QUERY, HTTPD_M_GET, "/health", "a=%41%42&%62=%2b+c&flag");
    ck_assert_int_eq(httpd__router_match(&r, req, &allow, &other), ROUTER_MATCH);
    ck_assert_str_eq(httpd_req_query_arg(req, "a"), "AB");
    ck_assert_str_eq(httpd_req_query_arg(req, "b"), "+ c");
    ck_assert_str_eq(httpd_req_query_arg(req, "flag"), "");
    ck_assert_ptr_null(httpd_req_query_arg(req, "c"));
    httpd__req_free(req);
}
END_TEST

START_TEST(test_star_param)
{
    struct httpd_req *req;
    const char *const *segs;
    size_t n;

    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/acme/kv/a/b%2Fc/d", &req), ROUTER_MATCH);
    ck_assert_str_eq(req->route->name, "kv");
    segs = httpd_req_param_segments(req, "key", &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(segs[0], "a");
    ck_assert_str_eq(segs[1], "b/c");
    ck_assert_str_eq(segs[2], "d");
    ck_assert_str_eq(httpd_req_param(req, "key"), "a/b/c/d");
    ck_assert_ptr_null(httpd_req_param_segments(req, "tenant", &n));
    ck_assert_uint_eq(n, 0);
    httpd__req_free(req);

    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/acme/kv/one", &req), ROUTER_MATCH);
    segs = httpd_req_param_segments(req, "key", &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(segs[0], "one");
    httpd__req_free(req);

    /* One or more non-empty segments. */
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/acme/kv", NULL), ROUTER_NOT_FOUND);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/acme/kv/", NULL), ROUTER_NOT_FOUND);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/acme/kv/a//b", NULL), ROUTER_NOT_FOUND);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/acme/kv/a/%zz", NULL),
                     ROUTER_BAD_REQUEST);
}
END_TEST

START_TEST(test_not_found)
{
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/nope", NULL), ROUTER_NOT_FOUND);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/health/", NULL), ROUTER_NOT_FOUND);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/healthz", NULL), ROUTER_NOT_FOUND);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "//v1/a/tables/b", NULL), ROUTER_NOT_FOUND);
    /* Parameters never match an empty segment. */
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1//tables/b", NULL), ROUTER_NOT_FOUND);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "*", NULL), ROUTER_NOT_FOUND);
}
END_TEST

START_TEST(test_method_not_allowed)
{
    struct httpd_req *req = mkreq(HTTPD_QUERY, HTTPD_M_POST, "/v1/a/tables/b", NULL);
    enum httpd_listener other;
    struct strbuf sb = STRBUF_INIT;
    unsigned allow;

    ck_assert_int_eq(httpd__router_match(&r, req, &allow, &other), ROUTER_BAD_METHOD);
    ck_assert_uint_eq(allow, HTTPD_M_GET | HTTPD_M_HEAD | HTTPD_M_DELETE);
    httpd__methods_str(&sb, allow);
    ck_assert_str_eq(sb.buf, "GET, HEAD, DELETE");
    httpd__req_free(req);

    /* An unknown method on a known path is 405 too. */
    req = mkreq(HTTPD_QUERY, HTTPD_M_OTHER, "/health", NULL);
    ck_assert_int_eq(httpd__router_match(&r, req, &allow, &other), ROUTER_BAD_METHOD);
    ck_assert_uint_eq(allow, HTTPD_M_GET | HTTPD_M_HEAD);
    httpd__req_free(req);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_head_uses_get_routes)
{
    struct httpd_req *req;

    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_HEAD, "/v1/a/tables/b", &req), ROUTER_MATCH);
    ck_assert_str_eq(req->route->name, "table");
    httpd__req_free(req);
    ck_assert_int_eq(match(HTTPD_INGEST, HTTPD_M_HEAD, "/v1/a/tables/b/ingest", NULL),
                     ROUTER_BAD_METHOD);
}
END_TEST

START_TEST(test_wrong_listener)
{
    struct httpd_req *req = mkreq(HTTPD_INGEST, HTTPD_M_GET, "/v1/a/tables/b", NULL);
    enum httpd_listener other;
    unsigned allow;

    ck_assert_int_eq(httpd__router_match(&r, req, &allow, &other), ROUTER_WRONG_LISTENER);
    ck_assert_int_eq(other, HTTPD_QUERY);
    httpd__req_free(req);

    req = mkreq(HTTPD_QUERY, HTTPD_M_POST, "/v1/a/tables/b/ingest", NULL);
    ck_assert_int_eq(httpd__router_match(&r, req, &allow, &other), ROUTER_WRONG_LISTENER);
    ck_assert_int_eq(other, HTTPD_INGEST);
    httpd__req_free(req);
}
END_TEST

START_TEST(test_first_route_wins)
{
    struct httpd_req *req;

    /* "/v1/{tenant}/tables/{table}" was added before ".../special". */
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, "/v1/a/tables/special", &req), ROUTER_MATCH);
    ck_assert_str_eq(req->route->name, "table");
    httpd__req_free(req);
    /* Where the first does not allow the method, a later one still can. */
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_PUT, "/v1/a/tables/special", &req), ROUTER_MATCH);
    ck_assert_str_eq(req->route->name, "special");
    httpd__req_free(req);
}
END_TEST

START_TEST(test_many_segments)
{
    struct strbuf sb = STRBUF_INIT;
    struct httpd_req *req;
    size_t n;

    strbuf_addstr(&sb, "/v1/t/kv");
    for (int i = 0; i < 100; i++)
        strbuf_addf(&sb, "/s%d", i);
    ck_assert_int_eq(match(HTTPD_QUERY, HTTPD_M_GET, sb.buf, &req), ROUTER_MATCH);
    httpd_req_param_segments(req, "key", &n);
    ck_assert_uint_eq(n, 100);
    ck_assert_str_eq(httpd_req_param_segments(req, "key", &n)[99], "s99");
    httpd__req_free(req);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_status_table)
{
    static const struct {
        enum st_status st;
        int http;
        const char *code;
    } want[] = {
        {ST_ENOTFOUND, 404, "not_found"}, {ST_EEXIST, 409, "already_exists"},
        {ST_ECONFLICT, 409, "conflict"},  {ST_EINVAL, 400, "bad_request"},
        {ST_EPERM, 403, "forbidden"},     {ST_ETOOLARGE, 413, "payload_too_large"},
        {ST_EAGAIN, 503, "not_ready"},    {ST_EIO, 503, "read_only"},
        {ST_ESHUTDOWN, 503, "not_ready"}, {ST_EBUSY, 503, "busy"},
        {ST_ENOMEM, 503, "overloaded"},   {ST_ECORRUPT, 500, "data_corrupt"},
    };

    for (size_t i = 0; i < ST_ARRAY_SIZE(want); i++) {
        const char *code = NULL;

        ck_assert_int_eq(httpd_status_http(want[i].st, &code), want[i].http);
        ck_assert_str_eq(code, want[i].code);
    }
    ck_assert_int_eq(httpd_status_http((enum st_status)999, NULL), 500);
    ck_assert_str_eq(httpd__reason(431), "Request Header Fields Too Large");
    ck_assert_str_eq(httpd__reason(799), "Unknown");
}
END_TEST

START_TEST(test_error_body)
{
    struct strbuf sb = STRBUF_INIT;

    httpd__error_body(&sb, "bad_request", "quote \" and\nnewline", 19);
    ck_assert_str_eq(sb.buf, "{\"error\":{\"code\":\"bad_request\","
                             "\"message\":\"quote \\\" and\\nnewline\"}}");
    strbuf_reset(&sb);
    httpd__error_body(&sb, "x", "\xff", 1);
    ck_assert_str_eq(sb.buf, "{\"error\":{\"code\":\"x\",\"message\":\"\xef\xbf\xbd\"}}");
    strbuf_release(&sb);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("router");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_literal_and_params);
    tcase_add_test(tc, test_percent_decoding);
    tcase_add_test(tc, test_pct_decode_function);
    tcase_add_test(tc, test_query_validation);
    tcase_add_test(tc, test_star_param);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_method_not_allowed);
    tcase_add_test(tc, test_head_uses_get_routes);
    tcase_add_test(tc, test_wrong_listener);
    tcase_add_test(tc, test_first_route_wins);
    tcase_add_test(tc, test_many_segments);
    tcase_add_test(tc, test_status_table);
    tcase_add_test(tc, test_error_body);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(router_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
