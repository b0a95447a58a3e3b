/*
 * Integration tests of strata's HTTP/1.1 behaviour over real sockets: the
 * health, metrics and admin endpoints, routing errors (404, 405,
 * wrong_listener), authentication, keep-alive, pipelining, chunked bodies,
 * Expect: 100-continue, rejection of ambiguous framing, the size limits
 * (431, 413), the timeouts (header, body, idle) and the connection limit.
 * Every test starts its own server with small limits set through the
 * environment (harness.h) and stops it expecting exit code 0, so a test
 * also fails if the server crashed on what it was sent.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#ifndef STRATA_EXPECTED_VERSION
#error "meson passes -DSTRATA_EXPECTED_VERSION"
#endif

/* Sanitizers keep freed memory in quarantine: no memory-growth checks there. */
#ifdef HARNESS_SANITIZED
#define SANITIZED true
#else
#define SANITIZED false
#endif

#define GET_HEALTH "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"

static void start(struct srv *s, const char *const *env)
{
    struct srv_opts o = {.env = env};

    srv_start(s, &o);
}

/* Reads one response on c (3 s); fails the test if there is none. */
static void read_ok(struct hconn *c, struct hresp *r)
{
    enum hread rc = hc_read(c, r, 3000, false);

    ck_assert_msg(rc == HREAD_OK, "no response (hread %d), %zu bytes buffered: %.200s", (int)rc,
                  c->len, c->buf);
}

/* Sends raw bytes on a new connection and reads one response. */
static struct hconn *exchange(int port, const char *raw, struct hresp *r)
{
    struct hconn *c = hc_open(port);

    ck_assert(hc_sendstr(c, raw));
    read_ok(c, r);
    return c;
}

/* The body is a JSON error of any code (for statuses whose code is free). */
static void assert_json_error_shape(const struct hresp *r)
{
    json_t *err = json_object_get(r->json, "error");

    ck_assert_msg(json_is_string(json_object_get(err, "code")), "not a JSON error: %s\n%s", r->head,
                  r->body);
    ck_assert_msg(json_is_string(json_object_get(err, "message")), "error without message: %s",
                  r->body);
}

/* Sum of every sample of metric name in a Prometheus text body; -1 if none. */
static double metric_sum(const char *text, const char *name)
{
    size_t n = strlen(name);
    double sum = -1;
    const char *p = text;

    while (p && *p) {
        const char *eol = strchr(p, '\n');

        if (strncmp(p, name, n) == 0 && (p[n] == '{' || p[n] == ' ')) {
            const char *v = p[n] == '{' ? strchr(p, '}') : p + n;

            if (v && (!eol || v < eol)) {
                if (*v == '}')
                    v++;
                sum = (sum < 0 ? 0 : sum) + strtod(v, NULL);
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return sum;
}

/* True if a sample line of metric name contains both label fragments. */
static bool has_sample(const char *text, const char *name, const char *a, const char *b)
{
    size_t n = strlen(name);
    const char *p = text;

    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];

        if (len < sizeof(line) && strncmp(p, name, n) == 0 && p[n] == '{') {
            memcpy(line, p, len);
            line[len] = '\0';
            if (strstr(line, a) && strstr(line, b))
                return true;
        }
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

/* The server's resident set in KiB, from /proc. */
static long rss_kib(pid_t pid)
{
    char path[64];
    char *status;
    const char *v;
    long kib;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    status = harness_read_file(path, NULL);
    ck_assert_ptr_nonnull(status);
    v = strstr(status, "VmRSS:");
    ck_assert_ptr_nonnull(v);
    kib = strtol(v + 6, NULL, 10);
    free(status);
    return kib;
}

/* ---- endpoints ---------------------------------------------------------- */

START_TEST(test_health_endpoints)
{
    static const char *paths[] = {"/health", "/health/live", "/health/ready", "/health?probe=1"};
    struct srv s;
    struct hresp r;

    start(&s, NULL);
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        http_get(s.ingest_port, paths[i], NULL, &r);
        ck_assert_health_ok(&r);
        hresp_free(&r);
        http_get(s.query_port, paths[i], NULL, &r);
        ck_assert_health_ok(&r);
        hresp_free(&r);
    }
    /* HEAD is answered by the GET route, without a body. */
    http_request(s.query_port, "HEAD", "/health", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

/*
 * Runs `promtool check metrics` (Debian's prometheus package) on text and
 * requires it to accept it, lint included. Skipped when promtool is not
 * installed; scripts/deps.sh --test installs it.
 */
static void check_with_promtool(const char *text)
{
    char dir[4096];
    char path[4200];
    char cmd[8600];
    int rc;

    if (system("command -v promtool >/dev/null 2>&1") != 0)
        return;
    harness_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/metrics.txt", dir);
    harness_write_file(path, text);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
    rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof(cmd), "%s.out", path);
        ck_abort_msg("promtool refused /metrics (rc %d):\n%s", rc,
                     harness_read_file(cmd, NULL));
    }
}

START_TEST(test_metrics_text)
{
    struct srv s;
    struct hresp r;
    int ports[2];

    start(&s, NULL);
    ports[0] = s.ingest_port;
    ports[1] = s.query_port;
    for (int i = 0; i < 2; i++) {
        http_get(ports[i], "/health", NULL, &r);
        hresp_free(&r);
        http_get(ports[i], "/metrics", NULL, &r);
        ck_assert_int_eq(r.status, 200);
        ck_assert_msg(hresp_header_has(&r, "Content-Type", "text/plain"), "%s", r.head);
        ck_assert_msg(hresp_header_has(&r, "Content-Type", "version=0.0.4"), "%s", r.head);
        ck_assert_msg(strstr(r.body, "# TYPE strata_http_requests_total counter"), "%.300s",
                      r.body);
        ck_assert_msg(metric_sum(r.body, "strata_http_requests_total") >= 1,
                      "requests not counted:\n%s", r.body);
        ck_assert_msg(metric_sum(r.body, "process_resident_memory_bytes") > 0, "no RSS:\n%s",
                      r.body);
        ck_assert_msg(metric_sum(r.body, "strata_http_connections_open") >= 1,
                      "open connections not counted:\n%s", r.body);
        hresp_free(&r);
    }
    /* Requests are counted per listener, route and status. */
    http_get(s.ingest_port, "/no-such-thing", NULL, &r);
    hresp_free(&r);
    http_get(s.query_port, "/metrics", NULL, &r);
    ck_assert_msg(
        has_sample(r.body, "strata_http_requests_total", "listener=\"ingest\"", "\"404\""),
        "no requests_total sample for the ingest 404:\n%s", r.body);
    ck_assert_msg(has_sample(r.body, "strata_http_requests_total", "listener=\"query\"", "\"200\""),
                  "no requests_total sample for the query 200s:\n%s", r.body);
    check_with_promtool(r.body);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_connections_gauge)
{
    struct srv s;
    struct hconn *idle[3];
    struct hresp r;
    double open_now;
    long long deadline;

    start(&s, NULL);
    for (int i = 0; i < 3; i++) {
        idle[i] = exchange(s.query_port, GET_HEALTH, &r);
        hresp_free(&r);
    }
    http_get(s.query_port, "/metrics", NULL, &r);
    open_now = metric_sum(r.body, "strata_http_connections_open");
    ck_assert_msg(open_now >= 4, "connections_open %g with 4 open", open_now);
    hresp_free(&r);
    for (int i = 0; i < 3; i++)
        hc_close(idle[i]);
    deadline = harness_now_ms() + 2000;
    do {
        harness_sleep_ms(20);
        http_get(s.query_port, "/metrics", NULL, &r);
        open_now = metric_sum(r.body, "strata_http_connections_open");
        hresp_free(&r);
    } while (open_now > 1 && harness_now_ms() < deadline);
    ck_assert_msg(open_now == 1, "connections_open %g after closing all but one", open_now);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_admin_status)
{
    struct srv s;
    struct hresp r;
    const char *key;
    json_t *v;
    bool has_uptime = false;
    bool has_connections = false;

    start(&s, NULL);
    http_get(s.query_port, "/v1/admin/status", s.token, &r);
    ck_assert_msg(r.status == 200, "%s\n%s", r.head, r.body);
    ck_assert_msg(hresp_header_has(&r, "Content-Type", "application/json"), "%s", r.head);
    ck_assert_ptr_nonnull(r.json);
    ck_assert_str_eq(json_string_value(json_object_get(r.json, "version")),
                     STRATA_EXPECTED_VERSION);
    json_object_foreach(r.json, key, v)
    {
        has_uptime |= strncmp(key, "uptime", 6) == 0 && json_is_number(v);
        has_connections |= strstr(key, "connections") != NULL;
    }
    ck_assert_msg(has_uptime && has_connections, "status lacks uptime or connections: %s", r.body);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_admin_auth_failures)
{
    static const char *bad_auth[] = {
        "",                                                   /* no header */
        "Authorization: Bearer wrong-token\r\n",              /* unknown token */
        "Authorization: Bearer \r\n",                         /* empty token */
        "Authorization: Basic YWRtaW46YWRtaW4=\r\n",          /* other scheme */
        "Authorization: Bearer " HARNESS_ADMIN_TOKEN "x\r\n", /* token plus a byte */
    };
    struct srv s;
    struct hresp r;
    char req[512];

    start(&s, NULL);
    for (size_t i = 0; i < sizeof(bad_auth) / sizeof(bad_auth[0]); i++) {
        struct hconn *c;

        snprintf(req, sizeof(req), "GET /v1/admin/status HTTP/1.1\r\nHost: x\r\n%s\r\n",
                 bad_auth[i]);
        c = exchange(s.query_port, req, &r);
        ck_assert_error(&r, 401, "unauthenticated");
        ck_assert_msg(hresp_header_has(&r, "WWW-Authenticate", "Bearer"),
                      "401 without WWW-Authenticate: Bearer (RFC 9110 11.6.1)\n%s", r.head);
        hresp_free(&r);
        hc_close(c);
    }
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_wrong_listener)
{
    struct srv s;
    struct hresp r;
    const char *msg;

    start(&s, NULL);
    http_get(s.ingest_port, "/v1/admin/status", s.token, &r);
    ck_assert_error(&r, 404, "wrong_listener");
    msg = json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
    ck_assert_msg(strstr(msg, "query"), "message does not name the query listener: %s", msg);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_not_found)
{
    struct srv s;
    struct hresp r;

    start(&s, NULL);
    http_get(s.ingest_port, "/nope", NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    http_get(s.query_port, "/health/nope", NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    http_get(s.query_port, "/v1/admin/nope", s.token, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_method_not_allowed)
{
    struct srv s;
    struct hresp r;

    start(&s, NULL);
    http_request(s.ingest_port, "POST", "/health", NULL, "", &r);
    ck_assert_msg(r.status == 405, "POST /health: %d", r.status);
    ck_assert_msg(hresp_header_has(&r, "Allow", "GET"), "405 without Allow: GET\n%s", r.head);
    assert_json_error_shape(&r);
    hresp_free(&r);
    http_request(s.query_port, "DELETE", "/metrics", NULL, NULL, &r);
    ck_assert_msg(r.status == 405, "DELETE /metrics: %d", r.status);
    ck_assert_msg(hresp_header_has(&r, "Allow", "GET"), "405 without Allow: GET\n%s", r.head);
    assert_json_error_shape(&r);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

/* ---- connection handling ------------------------------------------------ */

START_TEST(test_keepalive)
{
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, NULL);
    c = hc_open(s.query_port);
    for (int i = 0; i < 5; i++) {
        ck_assert(hc_sendstr(c, i % 2 ? "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" : GET_HEALTH));
        read_ok(c, &r);
        ck_assert_int_eq(r.status, i % 2 ? 404 : 200);
        ck_assert_msg(!hresp_header_has(&r, "Connection", "close"), "%s", r.head);
        hresp_free(&r);
    }
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_pipelining_in_order)
{
    static const int want[] = {200, 404, 200, 405, 405, 200};
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, NULL);
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, GET_HEALTH
                         "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
                         "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
                         "GET /nope\r\n"
                         "POST /health/ready HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n3\r\nabc\r\n0\r\n\r\n"
                         "GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        read_ok(c, &r);
        ck_assert_msg(r.status == want[i], "response %zu: %d, want %d\n%s", i, r.status, want[i],
                      r.head);
        hresp_free(&r);
    }
    read_ok(c, &r); /* GET /metrics */
    ck_assert_int_eq(r.status, 200);
    ck_assert(strstr(r.body, "strata_http_requests_total"));
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_pipelining_many)
{
    struct srv s;
    struct hconn *c;
    struct hresp r;
    char *burst;
    size_t one = strlen(GET_HEALTH);
    const int n = 200;

    start(&s, NULL);
    burst = malloc(one * (size_t)n + 1);
    ck_assert_ptr_nonnull(burst);
    for (int i = 0; i < n; i++)
        memcpy(burst + one * (size_t)i, GET_HEALTH, one);
    burst[one * (size_t)n] = '\0';
    c = hc_open(s.query_port);
    ck_assert(hc_send(c, burst, one * (size_t)n));
    for (int i = 0; i < n; i++) {
        read_ok(c, &r);
        ck_assert_health_ok(&r);
        hresp_free(&r);
    }
    free(burst);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_http10_and_connection_close)
{
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, NULL);
    c = exchange(s.query_port, "GET /health HTTP/1.0\r\n\r\n", &r);
    ck_assert_health_ok(&r);
    ck_assert_msg(strncmp(r.head, "HTTP/1.", 7) == 0, "%s", r.head);
    hresp_free(&r);
    ck_assert_msg(hc_wait_closed(c, 2000), "HTTP/1.0 connection left open");
    hc_close(c);

    /* Nothing after a Connection: close request is answered, even if pipelined. */
    c = exchange(s.query_port,
                 "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" GET_HEALTH, &r);
    ck_assert_health_ok(&r);
    ck_assert_msg(hresp_header_has(&r, "Connection", "close"), "%s", r.head);
    hresp_free(&r);
    ck_assert_msg(hc_wait_closed(c, 2000), "Connection: close ignored");
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_abrupt_clients)
{
    struct srv s;
    struct hresp r;

    start(&s, NULL);
    for (int i = 0; i < 5; i++) {
        struct hconn *c = hc_open(i % 2 ? s.ingest_port : s.query_port);
        struct linger lg = {1, 0};

        switch (i) {
        case 0: /* half a request line */
            hc_sendstr(c, "GET /hea");
            break;
        case 1: /* headers of a body that never comes */
            hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab");
            break;
        case 2: /* a request whose response is never read */
            hc_sendstr(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" GET_HEALTH GET_HEALTH);
            break;
        case 3: /* reset instead of close */
            hc_sendstr(c, GET_HEALTH);
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            break;
        default: /* half-close after a request: the response must still come */
            hc_sendstr(c, GET_HEALTH);
            shutdown(c->fd, SHUT_WR);
            read_ok(c, &r);
            ck_assert_health_ok(&r);
            hresp_free(&r);
            break;
        }
        hc_close(c);
    }
    harness_sleep_ms(50);
    http_get(s.query_port, "/health", NULL, &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

/* Many clients at once, each with a request in flight. */
START_TEST(test_many_connections)
{
    enum { N = 100 };
    struct hconn *c[N];
    struct srv s;
    struct hresp r;

    start(&s, NULL);
    for (int i = 0; i < N; i++)
        c[i] = hc_open(i % 2 ? s.ingest_port : s.query_port);
    for (int i = 0; i < N; i++)
        ck_assert(hc_sendstr(c[i], GET_HEALTH));
    for (int i = N - 1; i >= 0; i--) {
        read_ok(c[i], &r);
        ck_assert_health_ok(&r);
        hresp_free(&r);
        hc_close(c[i]);
    }
    srv_stop(&s, 5000);
}
END_TEST

/*
 * A client that pipelines requests and never reads: the server stops
 * producing output it cannot send (memory stays bounded) and closes the
 * connection at the write timeout.
 */
START_TEST(test_stalled_reader)
{
    const char *env[] = {"STRATA_SERVER_WRITE_TIMEOUT=300ms", NULL};
    const char *one = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    enum { N = 3000 }; /* ~10 KB of metrics each: ~30 MB if all were buffered */
    size_t len = strlen(one);
    struct srv s;
    struct hconn *c;
    struct hresp r;
    char *burst;
    long before;
    long after;
    int answered = 0;

    start(&s, env);
    before = rss_kib(s.pid);
    c = hc_open(s.query_port);
    burst = malloc(len * N);
    ck_assert_ptr_nonnull(burst);
    for (int i = 0; i < N; i++)
        memcpy(burst + len * (size_t)i, one, len);
    ck_assert(hc_send(c, burst, len * N));
    free(burst);
    harness_sleep_ms(1000);
    after = rss_kib(s.pid);
    ck_assert_msg(SANITIZED || after - before < 16 * 1024, "server RSS grew from %ld to %ld KiB",
                  before, after);

    /* Now read: some responses, then the close of the timed-out connection. */
    for (;;) {
        enum hread rc = hc_read(c, &r, 3000, false);

        if (rc != HREAD_OK) {
            ck_assert_msg(rc == HREAD_CLOSED || rc == HREAD_MALFORMED,
                          "stalled connection not closed (hread %d after %d responses)", (int)rc,
                          answered);
            break;
        }
        answered++;
        hresp_free(&r);
    }
    ck_assert_msg(answered < N, "all %d responses were delivered after the write timeout", N);
    hc_close(c);
    http_get(s.query_port, "/health", NULL, &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

/* RFC 9112 3.2: an HTTP/1.1 request without Host is 400. */
START_TEST(test_host_header_required)
{
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, NULL);
    c = exchange(s.query_port, "GET /health HTTP/1.1\r\n\r\n", &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    hc_close(c);
    /* HTTP/1.0 needs none. */
    c = exchange(s.query_port, "GET /health HTTP/1.0\r\n\r\n", &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

/* RFC 9112 3.2.2: a server must accept the absolute form of the target. */
START_TEST(test_absolute_form_target)
{
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, NULL);
    c = exchange(s.query_port, "GET http://127.0.0.1/health HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

/* ---- request bodies ----------------------------------------------------- */

START_TEST(test_chunked_request_body)
{
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, NULL);
    c = hc_open(s.ingest_port);
    /* Chunk extensions and a trailer are legal and must be consumed. */
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5;ext=1\r\nhello\r\nA\r\n world 123\r\n0\r\nX-Trailer: t\r\n\r\n"));
    read_ok(c, &r);
    ck_assert_msg(r.status == 405, "%s", r.head);
    hresp_free(&r);
    /* Sent in pieces, split inside the size line and the data. */
    ck_assert(
        hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1"));
    harness_sleep_ms(30);
    ck_assert(hc_sendstr(c, "0\r\n0123456"));
    harness_sleep_ms(30);
    ck_assert(hc_sendstr(c, "789abcdef\r\n0\r\n\r\n"));
    read_ok(c, &r);
    ck_assert_msg(r.status == 405, "%s", r.head);
    hresp_free(&r);
    /* The connection is still in sync. */
    ck_assert(hc_sendstr(c, GET_HEALTH));
    read_ok(c, &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_chunked_body_over_limit)
{
    const char *env[] = {"STRATA_LIMITS_MAX_BODY_BYTES=1KiB", NULL};
    char chunk[800];
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, env);
    memset(chunk, 'x', sizeof(chunk));
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "320\r\n"));
    hc_send(c, chunk, sizeof(chunk));
    hc_sendstr(c, "\r\n320\r\n");
    hc_send(c, chunk, sizeof(chunk));
    hc_sendstr(c, "\r\n0\r\n\r\n");
    read_ok(c, &r);
    ck_assert_error(&r, 413, "payload_too_large");
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_expect_100_continue)
{
    const char *env[] = {"STRATA_LIMITS_MAX_BODY_BYTES=1KiB", NULL};
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, env);
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                            "Expect: 100-continue\r\n\r\n"));
    read_ok(c, &r);
    ck_assert_msg(r.status == 100, "want 100 Continue before the body, got %d", r.status);
    hresp_free(&r);
    ck_assert(hc_sendstr(c, "hello"));
    read_ok(c, &r);
    ck_assert_int_eq(r.status, 405);
    hresp_free(&r);

    /* Over the limit: the final 413 comes instead of 100, without the body. */
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                            "Expect: 100-continue\r\n\r\n"));
    read_ok(c, &r);
    ck_assert_error(&r, 413, "payload_too_large");
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_body_limit_from_content_length)
{
    const char *env[] = {"STRATA_LIMITS_MAX_BODY_BYTES=2KB", NULL};
    char body[2000];
    struct srv s;
    struct hconn *c;
    struct hresp r;
    long long t0;

    start(&s, env);
    /* A huge Content-Length is refused at once, without waiting for the body. */
    c = hc_open(s.ingest_port);
    ck_assert(
        hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"));
    t0 = harness_now_ms();
    ck_assert_int_eq(hc_read(c, &r, 1000, false), HREAD_OK);
    ck_assert_error(&r, 413, "payload_too_large");
    ck_assert_int_lt(harness_now_ms() - t0, 1000);
    hresp_free(&r);
    ck_assert_msg(hc_wait_closed(c, 2000), "connection not closed after 413");
    hc_close(c);

    /* 2KB is 2000 bytes: exactly 2000 is read (then 405), 2001 is refused. */
    memset(body, 'b', sizeof(body));
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"));
    ck_assert(hc_send(c, body, sizeof(body)));
    read_ok(c, &r);
    ck_assert_int_eq(r.status, 405);
    hresp_free(&r);
    hc_close(c);
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 2001\r\n\r\n"));
    read_ok(c, &r);
    ck_assert_error(&r, 413, "payload_too_large");
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

/* ---- malformed requests ------------------------------------------------- */

START_TEST(test_ambiguous_framing)
{
    static const char *cases[] = {
        /* two Content-Length values */
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
        "hello!",
        /* Content-Length with Transfer-Encoding */
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        /* Transfer-Encoding before Content-Length */
        "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        /* a chunk size that is not hex */
        "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "zz\r\nhello\r\n0\r\n\r\n",
        /* whitespace before the colon */
        "GET /health HTTP/1.1\r\nHost : x\r\n\r\n",
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello",
        /* a negative and a list Content-Length */
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
        /* two Host headers (RFC 9112 3.2) */
        "GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        /* a header line without a colon */
        "GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    };
    struct srv s;
    struct hresp r;

    start(&s, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hconn *c = hc_open(s.ingest_port);
        enum hread rc;

        ck_assert(hc_sendstr(c, cases[i]));
        rc = hc_read(c, &r, 3000, false);
        ck_assert_msg(rc == HREAD_OK, "case %zu: no response (%d)", i, (int)rc);
        ck_assert_msg(r.status == 400, "case %zu: status %d, want 400\n%s", i, r.status, r.head);
        ck_assert_error(&r, 400, "bad_request");
        hresp_free(&r);
        ck_assert_msg(hc_wait_closed(c, 2000), "case %zu: connection left open after 400", i);
        hc_close(c);
    }
    http_get(s.ingest_port, "/health", NULL, &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

/* An unknown method or transfer coding is 501 (RFC 9110 9.1, RFC 9112 6.1), then close. */
START_TEST(test_not_implemented)
{
    static const char *cases[] = {
        "HELLO THERE\r\n\r\n",
        "BREW /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    };
    struct srv s;
    struct hresp r;

    start(&s, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct hconn *c = exchange(s.ingest_port, cases[i], &r);

        ck_assert_msg(r.status == 501 || r.status == 400, "case %zu: status %d\n%s", i, r.status,
                      r.head);
        assert_json_error_shape(&r);
        hresp_free(&r);
        ck_assert_msg(hc_wait_closed(c, 2000), "case %zu: connection left open", i);
        hc_close(c);
    }
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_headers_too_large)
{
    const char *env[] = {"STRATA_LIMITS_MAX_HEADER_BYTES=1KiB", NULL};
    char big[4200];
    char many[2200];
    size_t n = 0;
    struct srv s;
    struct hconn *c;
    struct hresp r;

    start(&s, env);
    /* Well under the limit. */
    c = exchange(
        s.query_port,
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: "
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    hc_close(c);

    /* One big header. */
    n = (size_t)snprintf(big, sizeof(big), "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 4000);
    memcpy(big + n + 4000, "\r\n\r\n", 5);
    c = exchange(s.query_port, big, &r);
    ck_assert_error(&r, 431, "headers_too_large");
    hresp_free(&r);
    ck_assert_msg(hc_wait_closed(c, 2000), "connection left open after 431");
    hc_close(c);

    /* Many small ones. */
    n = (size_t)snprintf(many, sizeof(many), "GET /health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; n + 40 < sizeof(many); i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-H%d: %020d\r\n", i, i);
    snprintf(many + n, sizeof(many) - n, "\r\n");
    c = exchange(s.ingest_port, many, &r);
    ck_assert_error(&r, 431, "headers_too_large");
    hresp_free(&r);
    hc_close(c);

    /* A long URL counts too. */
    n = (size_t)snprintf(big, sizeof(big), "GET /health?");
    memset(big + n, 'q', 3000);
    snprintf(big + n + 3000, sizeof(big) - n - 3000, " HTTP/1.1\r\nHost: x\r\n\r\n");
    c = exchange(s.ingest_port, big, &r);
    ck_assert_msg(r.status == 431 || r.status == 414, "long URL: %d", r.status);
    hresp_free(&r);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

/* ---- timeouts ----------------------------------------------------------- */

/*
 * Waits for the server to end a connection: a 408 (then close) or a plain
 * close. Returns the milliseconds since t0.
 */
static long wait_timed_out(struct hconn *c, long long t0, long limit_ms)
{
    struct hresp r;
    enum hread rc = hc_read(c, &r, limit_ms, false);

    ck_assert_msg(rc == HREAD_OK || rc == HREAD_CLOSED, "connection not ended within %ld ms (%d)",
                  limit_ms, (int)rc);
    if (rc == HREAD_OK) {
        ck_assert_msg(r.status == 408, "status %d, want 408\n%s", r.status, r.head);
        assert_json_error_shape(&r);
        hresp_free(&r);
        ck_assert(hc_wait_closed(c, 1000));
    }
    return (long)(harness_now_ms() - t0);
}

START_TEST(test_header_timeout_trickle)
{
    const char *env[] = {"STRATA_SERVER_HEADER_TIMEOUT=500ms", "STRATA_SERVER_IDLE_TIMEOUT=5s",
                         NULL};
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    struct srv s;
    struct hconn *c;
    long long t0;
    long elapsed = -1;

    start(&s, env);
    c = hc_open(s.query_port);
    t0 = harness_now_ms();
    /* One byte every 100 ms: each byte arrives well inside any per-read timer. */
    for (size_t i = 0; req[i] && harness_now_ms() - t0 < 3000; i++) {
        struct hresp r;
        enum hread rc;

        if (!hc_send(c, req + i, 1))
            break;
        rc = hc_read(c, &r, 100, false);
        if (rc == HREAD_OK) {
            ck_assert_msg(r.status == 408, "status %d, want 408\n%s", r.status, r.head);
            assert_json_error_shape(&r);
            hresp_free(&r);
            break;
        }
        if (rc == HREAD_CLOSED)
            break;
        ck_assert_int_eq(rc, HREAD_TIMEOUT);
    }
    elapsed = (long)(harness_now_ms() - t0);
    ck_assert_msg(elapsed >= 400 && elapsed < 1500,
                  "trickling client ended after %ld ms with a 500 ms header timeout", elapsed);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_body_timeout)
{
    const char *env[] = {"STRATA_SERVER_BODY_TIMEOUT=400ms", NULL};
    struct srv s;
    struct hconn *c;
    long long t0;
    long elapsed;

    start(&s, env);
    c = hc_open(s.ingest_port);
    ck_assert(hc_sendstr(c, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"));
    t0 = harness_now_ms();
    elapsed = wait_timed_out(c, t0, 2000);
    ck_assert_msg(elapsed >= 300, "body timeout after %ld ms, want ~400", elapsed);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_idle_timeout)
{
    const char *env[] = {"STRATA_SERVER_IDLE_TIMEOUT=300ms", NULL};
    struct srv s;
    struct hconn *c;
    struct hresp r;
    long long t0;
    long elapsed;

    start(&s, env);
    /* A busy connection is not idle: requests every 100 ms for 900 ms. */
    c = hc_open(s.query_port);
    for (int i = 0; i < 9; i++) {
        ck_assert(hc_sendstr(c, GET_HEALTH));
        read_ok(c, &r);
        ck_assert_health_ok(&r);
        hresp_free(&r);
        harness_sleep_ms(100);
    }
    /* Then it idles and is closed. */
    t0 = harness_now_ms();
    ck_assert_msg(hc_wait_closed(c, 2000), "idle connection still open after 2 s");
    elapsed = (long)(harness_now_ms() - t0);
    ck_assert_msg(elapsed >= 150, "idle connection closed after %ld ms, want ~300", elapsed);
    hc_close(c);

    srv_stop(&s, 5000);
}
END_TEST

/* A connection that never sends a byte is closed (by the idle or header timer). */
START_TEST(test_silent_connection_closed)
{
    const char *env[] = {"STRATA_SERVER_IDLE_TIMEOUT=400ms", "STRATA_SERVER_HEADER_TIMEOUT=400ms",
                         NULL};
    struct srv s;
    struct hconn *c;
    long long t0;

    start(&s, env);
    c = hc_open(s.ingest_port);
    t0 = harness_now_ms();
    wait_timed_out(c, t0, 2000);
    hc_close(c);
    srv_stop(&s, 5000);
}
END_TEST

/* ---- connection limit --------------------------------------------------- */

START_TEST(test_max_connections)
{
    const char *env[] = {"STRATA_SERVER_MAX_CONNECTIONS=2", NULL};
    struct srv s;
    struct hconn *a;
    struct hconn *b;
    struct hconn *extra;
    struct hresp r;
    enum hread rc;
    long long deadline;

    start(&s, env);
    a = exchange(s.ingest_port, GET_HEALTH, &r);
    hresp_free(&r);
    b = exchange(s.query_port, GET_HEALTH, &r);
    hresp_free(&r);

    /*
     * The third gets 503 (or at least a close) and nothing else. It sends
     * its request only if the server has not answered on accept, so that
     * the answer cannot be lost to a reset.
     */
    extra = hc_open(s.query_port);
    rc = hc_read(extra, &r, 300, false);
    if (rc == HREAD_TIMEOUT) {
        hc_sendstr(extra, GET_HEALTH);
        rc = hc_read(extra, &r, 2000, false);
    }
    ck_assert_msg(rc == HREAD_OK || rc == HREAD_CLOSED, "excess connection: hread %d", (int)rc);
    if (rc == HREAD_OK) {
        ck_assert_msg(r.status == 503, "excess connection got %d\n%s", r.status, r.head);
        assert_json_error_shape(&r);
        hresp_free(&r);
        ck_assert(hc_wait_closed(extra, 2000));
    }
    hc_close(extra);

    /* The accepted ones still work. */
    for (int i = 0; i < 2; i++) {
        struct hconn *c = i ? b : a;

        ck_assert(hc_sendstr(c, GET_HEALTH));
        read_ok(c, &r);
        ck_assert_health_ok(&r);
        hresp_free(&r);
    }

    /* Closing one makes room. */
    hc_close(a);
    deadline = harness_now_ms() + 2000;
    for (;;) {
        harness_sleep_ms(20);
        extra = hc_open(s.ingest_port);
        hc_sendstr(extra, GET_HEALTH);
        rc = hc_read(extra, &r, 2000, false);
        hc_close(extra);
        if (rc == HREAD_OK && r.status == 200)
            break;
        if (rc == HREAD_OK)
            hresp_free(&r);
        ck_assert_msg(harness_now_ms() < deadline, "no room after closing a connection");
    }
    hresp_free(&r);
    hc_close(b);
    srv_stop(&s, 5000);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc;

    tc = harness_tcase("endpoints", 30);
    tcase_add_test(tc, test_health_endpoints);
    tcase_add_test(tc, test_metrics_text);
    tcase_add_test(tc, test_connections_gauge);
    tcase_add_test(tc, test_admin_status);
    tcase_add_test(tc, test_admin_auth_failures);
    tcase_add_test(tc, test_wrong_listener);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_method_not_allowed);
    suite_add_tcase(s, tc);

    tc = harness_tcase("connections", 30);
    tcase_add_test(tc, test_keepalive);
    tcase_add_test(tc, test_pipelining_in_order);
    tcase_add_test(tc, test_pipelining_many);
    tcase_add_test(tc, test_http10_and_connection_close);
    tcase_add_test(tc, test_abrupt_clients);
    tcase_add_test(tc, test_max_connections);
    tcase_add_test(tc, test_many_connections);
    tcase_add_test(tc, test_stalled_reader);
    tcase_add_test(tc, test_host_header_required);
    tcase_add_test(tc, test_absolute_form_target);
    suite_add_tcase(s, tc);

    tc = harness_tcase("bodies", 30);
    tcase_add_test(tc, test_chunked_request_body);
    tcase_add_test(tc, test_chunked_body_over_limit);
    tcase_add_test(tc, test_expect_100_continue);
    tcase_add_test(tc, test_body_limit_from_content_length);
    suite_add_tcase(s, tc);

    tc = harness_tcase("malformed", 30);
    tcase_add_test(tc, test_ambiguous_framing);
    tcase_add_test(tc, test_not_implemented);
    tcase_add_test(tc, test_headers_too_large);
    suite_add_tcase(s, tc);

    tc = harness_tcase("timeouts", 30);
    tcase_add_test(tc, test_header_timeout_trickle);
    tcase_add_test(tc, test_body_timeout);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_silent_connection_closed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    harness_init();
    return harness_run(http_suite());
}
