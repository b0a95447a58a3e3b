/*
 * Tests of the HTTP server (src/http/httpd.c, conn.c) over real sockets.
 *
 * Each test starts an event_base and an httpd listening on 127.0.0.1 port
 * 0, and runs the loop on a second thread. The test thread is the client:
 * plain blocking sockets, with responses read by http-parser in response
 * mode. Anything that touches the server (counters, finishing a request
 * that a handler left open, shutdown) runs on the loop thread through
 * on_loop(), which passes a function over a pipe and waits for it; so the
 * two threads never touch the same data unsynchronised. Limits are set in
 * milliseconds and small buffers, so timeouts and backpressure show up fast.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <http_parser.h>

#include "http/http_int.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/timeutil.h"

/* ------------------------------------------------------------------ */
/* The server side, on the loop thread */

struct srv {
    struct event_base *base;
    httpd *h;
    struct metrics *m;
    int port[HTTPD_NLISTENERS];
    pthread_t thread;
    int ctl[2];
    struct event *ctl_ev;
    sem_t done;
};

/* What the handlers saw; read and written on the loop thread only. */
struct stats {
    int aborts;
    int stream_blocked;
    int stream_drains;
    int streams_done;
    int shutdown_done;
    struct httpd_req *hang_req;
    bool reply_in_abort;
};

static struct srv S;
static struct stats G;

typedef void (*loop_fn)(void *arg);

struct call {
    loop_fn fn;
    void *arg;
};

static void ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    struct call c;

    ST_UNUSED(what);
    ST_UNUSED(arg);
    if (read(fd, &c, sizeof(c)) != (ssize_t)sizeof(c))
        return;
    c.fn(c.arg);
    sem_post(&S.done);
}

/* Runs fn(arg) on the loop thread and waits for it. */
static void on_loop(loop_fn fn, void *arg)
{
    struct call c = {fn, arg};

    ck_assert_int_eq(write(S.ctl[1], &c, sizeof(c)), (ssize_t)sizeof(c));
    while (sem_wait(&S.done) && errno == EINTR)
        ;
}

static void *loop_main(void *arg)
{
    ST_UNUSED(arg);
    event_base_dispatch(S.base);
    return NULL;
}

static void h_hello(struct httpd_req *req, void *arg)
{
    ST_UNUSED(arg);
    httpd_resp_header(req, "X-Test", "yes");
    httpd_reply(req, 200, "text/plain", "hello", 5);
}

static void h_echo(struct httpd_req *req, void *arg)
{
    size_t n;
    const char *b = httpd_req_body(req, &n);
    char len[32];

    ST_UNUSED(arg);
    snprintf(len, sizeof(len), "%zu", n);
    httpd_resp_header(req, "X-Len", len);
    httpd_reply(req, 200, "application/octet-stream", b, n);
}

struct delayed {
    struct httpd_req *req;
    struct event *ev;
    char body[16];
};

static void delay_fire(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *d = arg;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    httpd_reply(d->req, 200, "text/plain", d->body, strlen(d->body));
    event_free(d->ev);
    free(d);
}

/* Answers after {ms} milliseconds, from a timer. */
static void h_delay(struct httpd_req *req, void *arg)
{
    const char *ms = httpd_req_param(req, "ms");
    struct delayed *d;
    struct timeval tv;
    long v = atol(ms);

    ST_UNUSED(arg);
    if (v == 0) {
        httpd_reply(req, 200, "text/plain", ms, strlen(ms));
        return;
    }
    d = xcalloc(1, sizeof(*d));
    d->req = req;
    st_strlcpy(d->body, ms, sizeof(d->body));
    d->ev = evtimer_new(S.base, delay_fire, d);
    tv.tv_sec = v / 1000;
    tv.tv_usec = (v % 1000) * 1000;
    evtimer_add(d->ev, &tv);
}

struct streamer {
    struct httpd_req *req;
    size_t left;
    size_t pos;
    bool aborted;
};

static void pump(struct streamer *st)
{
    unsigned char chunk[8192];

    while (st->left) {
        size_t n = ST_MIN(sizeof(chunk), st->left);

        for (size_t i = 0; i < n; i++)
            chunk[i] = (unsigned char)((st->pos + i) * 7);
        st->left -= n;
        st->pos += n;
        if (!httpd_stream_write(st->req, chunk, n)) {
            G.stream_blocked++;
            if (st->left)
                return; /* the drain callback resumes */
        }
    }
    httpd_stream_end(st->req);
    G.streams_done++;
    free(st);
}

static void stream_drain(void *arg)
{
    G.stream_drains++;
    pump(arg);
}

static void stream_abort(void *arg)
{
    struct streamer *st = arg;

    G.aborts++;
    httpd_stream_end(st->req);
    free(st);
}

/* Streams {kb} KiB of a known pattern, chunked, minding backpressure. */
static void h_stream(struct httpd_req *req, void *arg)
{
    struct streamer *st = xcalloc(1, sizeof(*st));

    ST_UNUSED(arg);
    st->req = req;
    st->left = (size_t)atol(httpd_req_param(req, "kb")) * 1024;
    httpd_stream_begin(req, 200, "application/octet-stream");
    httpd_stream_on_drain(req, stream_drain, st);
    httpd_req_on_abort(req, stream_abort, st);
    pump(st);
}

/* Replies {kb} KiB in one go (write timeout test). */
static void h_big(struct httpd_req *req, void *arg)
{
    struct strbuf sb = STRBUF_INIT;
    size_t n = (size_t)atol(httpd_req_param(req, "kb")) * 1024;
    char *z = xmalloc(n);

    memset(z, 'z', n);
    strbuf_add(&sb, z, n);
    free(z);
    ST_UNUSED(arg);
    httpd_reply_strbuf(req, 200, "application/octet-stream", &sb);
}

static void hang_abort(void *arg)
{
    ST_UNUSED(arg);
    G.aborts++;
    if (G.reply_in_abort) {
        httpd_reply(G.hang_req, 200, "text/plain", "late", 4);
        G.hang_req = NULL;
    }
}

/* Never answers by itself; the test finishes it with finish_hang(). */
static void h_hang(struct httpd_req *req, void *arg)
{
    ST_UNUSED(arg);
    G.hang_req = req;
    httpd_req_on_abort(req, hang_abort, NULL);
}

static void h_busy(struct httpd_req *req, void *arg)
{
    ST_UNUSED(arg);
    httpd_reply_status(req, ST_EBUSY, NULL);
}

static void h_query_only(struct httpd_req *req, void *arg)
{
    ST_UNUSED(arg);
    httpd_reply(req, 200, "text/plain", "q", 1);
}

static void srv_start_m(const struct httpd_limits *lim, bool metrics)
{
    char bound[64];
    struct err err;

    memset(&G, 0, sizeof(G));
    S.base = event_base_new();
    ck_assert_ptr_nonnull(S.base);
    S.m = metrics ? metrics_new() : NULL;
    S.h = httpd_new(S.base, S.m, lim);
    httpd_route(S.h, HTTPD_ON_BOTH, HTTPD_M_GET, "/hello", "hello", h_hello, NULL);
    httpd_route(S.h, HTTPD_ON_BOTH, HTTPD_M_POST | HTTPD_M_PUT, "/echo", "echo", h_echo, NULL);
    httpd_route(S.h, HTTPD_ON_BOTH, HTTPD_M_GET, "/delay/{ms}", "delay", h_delay, NULL);
    httpd_route(S.h, HTTPD_ON_BOTH, HTTPD_M_GET, "/stream/{kb}", "stream", h_stream, NULL);
    httpd_route(S.h, HTTPD_ON_BOTH, HTTPD_M_GET, "/big/{kb}", "big", h_big, NULL);
    httpd_route(S.h, HTTPD_ON_BOTH, HTTPD_M_GET, "/hang", "hang", h_hang, NULL);
    httpd_route(S.h, HTTPD_ON_BOTH, HTTPD_M_GET, "/busy", "busy", h_busy, NULL);
    httpd_route(S.h, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/q", "q", h_query_only, NULL);
    for (int l = 0; l < HTTPD_NLISTENERS; l++) {
        ck_assert_int_eq(
            httpd_listen(S.h, (enum httpd_listener)l, "127.0.0.1:0", bound, sizeof(bound), &err),
            ST_OK);
        S.port[l] = atoi(strrchr(bound, ':') + 1);
        ck_assert_int_gt(S.port[l], 0);
    }
    ck_assert_int_eq(pipe(S.ctl), 0);
    sem_init(&S.done, 0, 0);
    S.ctl_ev = event_new(S.base, S.ctl[0], EV_READ | EV_PERSIST, ctl_cb, NULL);
    event_add(S.ctl_ev, NULL);
    ck_assert_int_eq(pthread_create(&S.thread, NULL, loop_main, NULL), 0);
}

static void srv_start(const struct httpd_limits *lim)
{
    srv_start_m(lim, false);
}

static void do_break(void *arg)
{
    ST_UNUSED(arg);
    event_base_loopbreak(S.base);
}

static void srv_stop(void)
{
    on_loop(do_break, NULL);
    pthread_join(S.thread, NULL);
    httpd_free(S.h);
    event_free(S.ctl_ev);
    event_base_free(S.base);
    metrics_free(S.m);
    close(S.ctl[0]);
    close(S.ctl[1]);
    sem_destroy(&S.done);
}

static void get_stats(void *arg)
{
    struct stats *out = arg;

    *out = G;
}

static struct stats stats(void)
{
    struct stats st;

    on_loop(get_stats, &st);
    return st;
}

static void get_open(void *arg)
{
    *(unsigned *)arg = httpd_open_connections(S.h);
}

static unsigned open_conns(void)
{
    unsigned n;

    on_loop(get_open, &n);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* Polls until open_conns() == n, for at most ms. */
static bool wait_open(unsigned n, long ms)
{
    for (long t = 0; t < ms; t += 10) {
        if (open_conns() == n)
            return true;
        sleep_ms(10);
    }
    return open_conns() == n;
}

static double ms_since(uint64_t t0)
{
    return (double)(time_mono_ns() - t0) / 1e6;
}

/* ------------------------------------------------------------------ */
/* The client side, on the test thread */

struct resp {
    int status;
    struct strbuf hdrs; /* "\nname: value" lines, names lower-cased */
    struct strbuf body;
    bool complete;
    int last; /* 0, 1 field, 2 value */
};

struct cli {
    int fd;
    http_parser hp;
    char buf[1 << 16];
    size_t len;
    bool head; /* the response being read answers a HEAD */
    struct resp *cur;
    bool eof;
};

static int r_field(http_parser *hp, const char *at, size_t n)
{
    struct cli *c = hp->data;

    if (c->cur->last != 1)
        strbuf_addch(&c->cur->hdrs, '\n');
    for (size_t i = 0; i < n; i++)
        strbuf_addch(&c->cur->hdrs, (char)(at[i] | (at[i] >= 'A' && at[i] <= 'Z' ? 0x20 : 0)));
    c->cur->last = 1;
    return 0;
}

static int r_value(http_parser *hp, const char *at, size_t n)
{
    struct cli *c = hp->data;

    if (c->cur->last == 1)
        strbuf_addstr(&c->cur->hdrs, ": ");
    strbuf_add(&c->cur->hdrs, at, n);
    c->cur->last = 2;
    return 0;
}

static int r_headers(http_parser *hp)
{
    struct cli *c = hp->data;

    c->cur->status = (int)hp->status_code;
    strbuf_addch(&c->cur->hdrs, '\n');
    return c->head && hp->status_code >= 200 ? 1 : 0;
}

static int r_body(http_parser *hp, const char *at, size_t n)
{
    struct cli *c = hp->data;

    strbuf_add(&c->cur->body, at, n);
    return 0;
}

static int r_done(http_parser *hp)
{
    struct cli *c = hp->data;

    c->cur->complete = true;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings rsettings = {
    .on_header_field = r_field,
    .on_header_value = r_value,
    .on_headers_complete = r_headers,
    .on_body = r_body,
    .on_message_complete = r_done,
};

static void cli_init(struct cli *c, int fd)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    http_parser_init(&c->hp, HTTP_RESPONSE);
    c->hp.data = c;
}

/* A blocking socket to port with a 5 s receive timeout; rcvbuf 0 = default. */
static int connect_port(int port, int rcvbuf)
{
    struct sockaddr_in sin;
    struct timeval tv = {5, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
        close(fd);
        return -1;
    }
    return fd;
}

static void cli_open(struct cli *c, enum httpd_listener l)
{
    int fd = connect_port(S.port[l], 0);

    ck_assert_int_ge(fd, 0);
    cli_init(c, fd);
}

static void cli_close(struct cli *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void cli_sendn(struct cli *c, const void *data, size_t n)
{
    const char *p = data;

    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

        ck_assert_int_gt(w, 0);
        p += w;
        n -= (size_t)w;
    }
}

static void cli_send(struct cli *c, const char *s)
{
    cli_sendn(c, s, strlen(s));
}

static void cli_send_fd(int fd, const char *s)
{
    ck_assert_int_eq(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void resp_init(struct resp *r)
{
    memset(r, 0, sizeof(*r));
    strbuf_init(&r->hdrs, 0);
    strbuf_init(&r->body, 0);
}

static void resp_release(struct resp *r)
{
    strbuf_release(&r->hdrs);
    strbuf_release(&r->body);
}

/* Reads one response; false on EOF or error before it is complete. */
static bool cli_read(struct cli *c, struct resp *r)
{
    resp_init(r);
    c->cur = r;
    for (;;) {
        if (c->len) {
            size_t n = http_parser_execute(&c->hp, &rsettings, c->buf, c->len);
            enum http_errno e = HTTP_PARSER_ERRNO(&c->hp);

            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            if (r->complete) {
                http_parser_pause(&c->hp, 0);
                return true;
            }
            if (e != HPE_OK)
                ck_abort_msg("bad response: %s", http_errno_name(e));
        }
        {
            ssize_t got = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);

            if (got <= 0) {
                c->eof = true;
                http_parser_execute(&c->hp, &rsettings, NULL, 0);
                return r->complete;
            }
            c->len += (size_t)got;
        }
    }
}

/* Value of a response header (lower-case name), or NULL; static buffer. */
static const char *hdr(const struct resp *r, const char *name)
{
    static char out[512];
    char key[128];
    const char *p;
    const char *end;

    snprintf(key, sizeof(key), "\n%s: ", name);
    p = strstr(r->hdrs.buf, key);
    if (!p)
        return NULL;
    p += strlen(key);
    end = strchr(p, '\n');
    snprintf(out, sizeof(out), "%.*s", (int)(end - p), p);
    return out;
}

/* 1 when the server closed the connection within ms (no data first), 0 on timeout, -1 on data. */
static int cli_wait_eof(struct cli *c, long ms)
{
    struct pollfd pfd = {c->fd, POLLIN, 0};
    char b[256];
    ssize_t n;

    if (c->len)
        return -1;
    if (poll(&pfd, 1, (int)ms) <= 0)
        return 0;
    n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
        return 1;
    return n > 0 ? -1 : 0;
}

/* Sends a request and reads its response, asserting the status. */
static void roundtrip(struct cli *c, const char *req, int status, struct resp *r)
{
    cli_send(c, req);
    ck_assert(cli_read(c, r));
    ck_assert_int_eq(r->status, status);
}

/* An error body has the contract's shape with this code. */
static void check_error_body(const struct resp *r, const char *code)
{
    char want[128];

    snprintf(want, sizeof(want), "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    ck_assert_msg(!strncmp(r->body.buf, want, strlen(want)), "body %s", r->body.buf);
    ck_assert(r->body.len > 2 && !strcmp(r->body.buf + r->body.len - 3, "\"}}"));
    ck_assert_str_eq(hdr(r, "content-type"), "application/json");
}

static struct httpd_limits lim;

static void setup(void)
{
    httpd_limits_default(&lim);
    lim.header_timeout_ms = 5000;
    lim.body_timeout_ms = 5000;
    lim.idle_timeout_ms = 5000;
    lim.write_timeout_ms = 5000;
    log_set_level(ST_LOG_WARN);
}

/* ------------------------------------------------------------------ */
/* Tests */

START_TEST(test_keep_alive)
{
    struct cli c;
    struct resp r;

    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    for (int i = 0; i < 3; i++) {
        roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 200, &r);
        ck_assert_str_eq(r.body.buf, "hello");
        ck_assert_str_eq(hdr(&r, "content-length"), "5");
        ck_assert_str_eq(hdr(&r, "content-type"), "text/plain");
        ck_assert_str_eq(hdr(&r, "x-test"), "yes");
        ck_assert_ptr_nonnull(hdr(&r, "date"));
        ck_assert_ptr_null(hdr(&r, "connection"));
        resp_release(&r);
    }
    ck_assert_uint_eq(open_conns(), 1);

    /* Connection: close is honoured. */
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 200, &r);
    ck_assert_str_eq(hdr(&r, "connection"), "close");
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    resp_release(&r);
    cli_close(&c);
    ck_assert(wait_open(0, 2000));
    srv_stop();
}
END_TEST

START_TEST(test_http10)
{
    struct cli c;
    struct resp r;

    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "GET /hello HTTP/1.0\r\n\r\n", 200, &r);
    ck_assert_str_eq(hdr(&r, "connection"), "close");
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    resp_release(&r);
    cli_close(&c);

    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, &r);
    ck_assert_str_eq(hdr(&r, "connection"), "keep-alive");
    resp_release(&r);
    roundtrip(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, &r);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_pipelining_order)
{
    static const char *const want[] = {"80", "hello", "20", "xyz", "0", "hello"};
    struct cli c;
    struct resp r;

    srv_start(&lim);
    cli_open(&c, HTTPD_QUERY);
    /* Slow and fast, sync and async handlers, in one write. */
    cli_send(&c, "GET /delay/80 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /delay/20 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"
                 "GET /delay/0 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for (size_t i = 0; i < ST_ARRAY_SIZE(want); i++) {
        ck_assert(cli_read(&c, &r));
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(r.body.buf, want[i]);
        resp_release(&r);
    }
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_chunked_request)
{
    struct cli c;
    struct resp r;

    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    sleep_ms(20);
    cli_send(&c, "5;ext=1\r\nhello\r\n");
    sleep_ms(20);
    cli_send(&c, "6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.buf, "hello world");
    ck_assert_str_eq(hdr(&r, "x-len"), "11");
    resp_release(&r);
    /* The connection is still usable. */
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_expect_continue)
{
    struct cli c;
    struct resp r;

    lim.max_body_bytes = 1024;
    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    cli_send(&c, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 100);
    resp_release(&r);
    cli_send(&c, "abcde");
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.buf, "abcde");
    resp_release(&r);

    /* Over the limit: the final answer straight away, no 100, then close. */
    cli_send(&c, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n");
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 413);
    check_error_body(&r, "payload_too_large");
    ck_assert_str_eq(hdr(&r, "connection"), "close");
    resp_release(&r);
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_header_limit)
{
    struct strbuf sb = STRBUF_INIT;
    struct cli c;
    struct resp r;

    lim.max_header_bytes = 512;
    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    strbuf_addstr(&sb, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
    for (int i = 0; i < 1000; i++)
        strbuf_addch(&sb, 'a');
    strbuf_addstr(&sb, "\r\n\r\n");
    roundtrip(&c, sb.buf, 431, &r);
    check_error_body(&r, "headers_too_large");
    ck_assert_str_eq(hdr(&r, "connection"), "close");
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    resp_release(&r);
    cli_close(&c);
    strbuf_release(&sb);
    srv_stop();
}
END_TEST

START_TEST(test_body_limit_before_body)
{
    struct cli c;
    struct resp r;

    lim.max_body_bytes = 1024;
    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    /* No body byte is sent: the answer comes from the headers alone. */
    roundtrip(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n", 413, &r);
    check_error_body(&r, "payload_too_large");
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    resp_release(&r);
    cli_close(&c);

    /* Chunked, growing past the limit. */
    cli_open(&c, HTTPD_INGEST);
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        char chunk[600];

        memset(chunk, 'q', sizeof(chunk));
        cli_send(&c, "258\r\n");
        cli_sendn(&c, chunk, sizeof(chunk));
        cli_send(&c, "\r\n");
    }
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 413);
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_header_timeout_slowloris)
{
    static const char req[] =
        "GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    struct cli c;
    struct resp r;
    uint64_t t0;
    double ms;
    size_t i;

    lim.header_timeout_ms = 300;
    lim.idle_timeout_ms = 5000;
    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    t0 = time_mono_ns();
    /* One byte every 20 ms: never idle, but never done in time. */
    for (i = 0; i < sizeof(req) - 1; i++) {
        struct pollfd pfd = {c.fd, POLLIN, 0};

        cli_sendn(&c, req + i, 1);
        if (poll(&pfd, 1, 20) > 0)
            break;
    }
    ck_assert_uint_lt(i, sizeof(req) - 1);
    ck_assert(cli_read(&c, &r));
    ms = ms_since(t0);
    ck_assert_int_eq(r.status, 408);
    check_error_body(&r, "request_timeout");
    ck_assert_msg(ms >= 250 && ms < 1500, "408 after %.0f ms", ms);
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_body_timeout)
{
    struct cli c;
    struct resp r;
    uint64_t t0;
    double ms;
    int i;

    lim.body_timeout_ms = 300;
    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    cli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    t0 = time_mono_ns();
    for (i = 0; i < 100; i++) {
        struct pollfd pfd = {c.fd, POLLIN, 0};

        cli_send(&c, "b");
        if (poll(&pfd, 1, 20) > 0)
            break;
    }
    ck_assert_int_lt(i, 100);
    ck_assert(cli_read(&c, &r));
    ms = ms_since(t0);
    ck_assert_int_eq(r.status, 408);
    ck_assert_msg(ms >= 250 && ms < 1500, "408 after %.0f ms", ms);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_idle_timeout)
{
    struct cli c;
    struct resp r;
    uint64_t t0;
    double ms;

    lim.idle_timeout_ms = 200;
    srv_start(&lim);
    /* A connection that never sends: closed without a response. */
    cli_open(&c, HTTPD_INGEST);
    t0 = time_mono_ns();
    ck_assert_int_eq(cli_wait_eof(&c, 3000), 1);
    ms = ms_since(t0);
    ck_assert_msg(ms >= 150 && ms < 1500, "closed after %.0f ms", ms);
    cli_close(&c);

    /* And a keep-alive connection after a request. */
    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    ck_assert_int_eq(cli_wait_eof(&c, 3000), 1);
    cli_close(&c);
    ck_assert(wait_open(0, 2000));
    srv_stop();
}
END_TEST

START_TEST(test_write_timeout)
{
    struct cli c;
    int fd;

    lim.write_timeout_ms = 200;
    srv_start(&lim);
    fd = connect_port(S.port[HTTPD_QUERY], 4096);
    ck_assert_int_ge(fd, 0);
    cli_init(&c, fd);
    /* 16 MiB that the client never reads. */
    cli_send(&c, "GET /big/16384 HTTP/1.1\r\nHost: t\r\n\r\n");
    ck_assert(wait_open(1, 1000));
    ck_assert(wait_open(0, 3000));
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_idle_timer_spares_slow_download)
{
    const size_t total = 16 * 1024 * 1024;
    char buf[65536];
    size_t got = 0;
    uint64_t t0;
    int fd;

    lim.idle_timeout_ms = 100;
    srv_start(&lim);
    fd = connect_port(S.port[HTTPD_QUERY], 4096);
    ck_assert_int_ge(fd, 0);
    cli_send_fd(fd, "GET /big/16384 HTTP/1.1\r\nHost: t\r\n\r\n");
    /* Read 16 MiB (more than the kernel buffers) slower than the idle timeout. */
    t0 = time_mono_ns();
    sleep_ms(150);
    while (got < total) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);

        ck_assert_msg(n > 0, "connection closed after %zu bytes", got);
        got += (size_t)n;
        if (got % (1024 * 1024) < (size_t)n)
            sleep_ms(20);
    }
    ck_assert(ms_since(t0) > 300);
    close(fd);
    srv_stop();
}
END_TEST

START_TEST(test_max_connections)
{
    struct cli a;
    struct cli b;
    struct cli c;
    struct resp r;

    lim.max_connections = 2;
    srv_start_m(&lim, true);
    cli_open(&a, HTTPD_INGEST);
    cli_open(&b, HTTPD_QUERY);
    roundtrip(&a, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    roundtrip(&b, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);

    /* The third gets a short 503 and is closed. */
    cli_open(&c, HTTPD_INGEST);
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 503);
    check_error_body(&r, "overloaded");
    ck_assert_str_eq(hdr(&r, "retry-after"), "1");
    ck_assert_str_eq(hdr(&r, "connection"), "close");
    resp_release(&r);
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    cli_close(&c);

    /* The accepted ones are unharmed. */
    roundtrip(&a, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    roundtrip(&b, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    ck_assert_uint_eq(open_conns(), 2);

    /* A slot freed is a slot usable. */
    cli_close(&a);
    ck_assert(wait_open(1, 2000));
    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    cli_close(&c);
    cli_close(&b);
    srv_stop();
}
END_TEST

START_TEST(test_streaming_backpressure)
{
    const size_t total = 4 * 1024 * 1024;
    struct cli c;
    struct resp r;
    struct stats st;
    int fd;

    lim.stream_high_water = 64 * 1024;
    srv_start(&lim);
    fd = connect_port(S.port[HTTPD_QUERY], 16384);
    ck_assert_int_ge(fd, 0);
    cli_init(&c, fd);
    cli_send(&c, "GET /stream/4096 HTTP/1.1\r\nHost: t\r\n\r\n");
    /* Read slowly at first, so the server has to wait for us. */
    sleep_ms(100);
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(hdr(&r, "transfer-encoding"), "chunked");
    ck_assert_ptr_null(hdr(&r, "content-length"));
    ck_assert_uint_eq(r.body.len, total);
    for (size_t i = 0; i < total; i++) {
        if ((unsigned char)r.body.buf[i] != (unsigned char)(i * 7))
            ck_abort_msg("stream byte %zu is wrong", i);
    }
    resp_release(&r);
    st = stats();
    ck_assert_int_ge(st.stream_blocked, 1);
    ck_assert_int_ge(st.stream_drains, 1);
    ck_assert_int_eq(st.streams_done, 1);
    /* Keep-alive survives a stream. */
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_stream_abort)
{
    struct cli c;
    int fd;
    struct stats st;

    lim.stream_high_water = 16 * 1024;
    srv_start(&lim);
    fd = connect_port(S.port[HTTPD_QUERY], 4096);
    ck_assert_int_ge(fd, 0);
    cli_init(&c, fd);
    cli_send(&c, "GET /stream/65536 HTTP/1.1\r\nHost: t\r\n\r\n");
    sleep_ms(50);
    cli_close(&c);
    for (int i = 0; i < 200 && stats().aborts == 0; i++)
        sleep_ms(10);
    st = stats();
    ck_assert_int_eq(st.aborts, 1);
    ck_assert_int_eq(st.streams_done, 0);
    ck_assert(wait_open(0, 2000));
    srv_stop();
}
END_TEST

static void finish_hang(void *arg)
{
    ST_UNUSED(arg);
    if (G.hang_req) {
        httpd_reply(G.hang_req, 200, "text/plain", "late", 4);
        G.hang_req = NULL;
    }
}

static void set_reply_in_abort(void *arg)
{
    G.reply_in_abort = *(bool *)arg;
}

START_TEST(test_abort_callback)
{
    struct cli c;
    bool yes = true;

    srv_start(&lim);
    /* Aborted, then finished later by the handler: nothing written, no leak. */
    cli_open(&c, HTTPD_QUERY);
    cli_send(&c, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !stats().hang_req; i++)
        sleep_ms(10);
    ck_assert_ptr_nonnull(stats().hang_req);
    cli_close(&c);
    for (int i = 0; i < 200 && stats().aborts == 0; i++)
        sleep_ms(10);
    ck_assert_int_eq(stats().aborts, 1);
    ck_assert(wait_open(0, 2000));
    on_loop(finish_hang, NULL);

    /* Finished from inside the abort callback. */
    on_loop(set_reply_in_abort, &yes);
    cli_open(&c, HTTPD_QUERY);
    cli_send(&c, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !stats().hang_req; i++)
        sleep_ms(10);
    cli_close(&c);
    for (int i = 0; i < 200 && stats().aborts < 2; i++)
        sleep_ms(10);
    ck_assert_int_eq(stats().aborts, 2);
    ck_assert_ptr_null(stats().hang_req);
    srv_stop();
}
END_TEST

static void shutdown_done(void *arg)
{
    ST_UNUSED(arg);
    G.shutdown_done++;
}

static void start_shutdown(void *arg)
{
    httpd_shutdown(S.h, *(uint64_t *)arg, shutdown_done, NULL);
}

START_TEST(test_graceful_shutdown)
{
    struct cli idle;
    struct cli busy;
    struct resp r;
    uint64_t deadline = 5000;

    srv_start(&lim);
    cli_open(&idle, HTTPD_INGEST);
    roundtrip(&idle, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    cli_open(&busy, HTTPD_QUERY);
    cli_send(&busy, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !stats().hang_req; i++)
        sleep_ms(10);
    ck_assert_ptr_nonnull(stats().hang_req);

    on_loop(start_shutdown, &deadline);
    /* Idle connections go at once; the listeners are closed. */
    ck_assert_int_eq(cli_wait_eof(&idle, 2000), 1);
    cli_close(&idle);
    ck_assert_int_lt(connect_port(S.port[HTTPD_INGEST], 0), 0);
    ck_assert_int_eq(stats().shutdown_done, 0);

    /* The request in progress finishes, with Connection: close. */
    on_loop(finish_hang, NULL);
    ck_assert(cli_read(&busy, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.buf, "late");
    ck_assert_str_eq(hdr(&r, "connection"), "close");
    resp_release(&r);
    ck_assert_int_eq(cli_wait_eof(&busy, 2000), 1);
    cli_close(&busy);
    for (int i = 0; i < 200 && !stats().shutdown_done; i++)
        sleep_ms(10);
    ck_assert_int_eq(stats().shutdown_done, 1);
    ck_assert_int_eq(stats().aborts, 0);
    srv_stop();
}
END_TEST

START_TEST(test_shutdown_deadline)
{
    struct cli busy;
    uint64_t deadline = 200;
    uint64_t t0;
    double ms;

    srv_start(&lim);
    cli_open(&busy, HTTPD_QUERY);
    cli_send(&busy, "GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < 100 && !stats().hang_req; i++)
        sleep_ms(10);
    t0 = time_mono_ns();
    on_loop(start_shutdown, &deadline);
    for (int i = 0; i < 300 && !stats().shutdown_done; i++)
        sleep_ms(10);
    ms = ms_since(t0);
    ck_assert_int_eq(stats().shutdown_done, 1);
    ck_assert_msg(ms >= 150 && ms < 2000, "done after %.0f ms", ms);
    ck_assert_int_eq(stats().aborts, 1);
    ck_assert_int_eq(cli_wait_eof(&busy, 2000), 1);
    cli_close(&busy);
    on_loop(finish_hang, NULL);
    srv_stop();
}
END_TEST

START_TEST(test_head)
{
    struct cli c;
    struct resp r;

    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    c.head = true;
    roundtrip(&c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    ck_assert_str_eq(hdr(&r, "content-length"), "5");
    ck_assert_uint_eq(r.body.len, 0);
    resp_release(&r);
    c.head = false;
    /* Had a body been sent, this would read it as the next response. */
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    ck_assert_str_eq(r.body.buf, "hello");
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_error_answers)
{
    struct cli c;
    struct resp r;

    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404, &r);
    check_error_body(&r, "not_found");
    resp_release(&r);
    roundtrip(&c, "DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n", 405, &r);
    check_error_body(&r, "method_not_allowed");
    ck_assert_str_eq(hdr(&r, "allow"), "GET, HEAD");
    resp_release(&r);
    roundtrip(&c, "GET /v1/q HTTP/1.1\r\nHost: t\r\n\r\n", 404, &r);
    check_error_body(&r, "wrong_listener");
    ck_assert_ptr_nonnull(strstr(r.body.buf, "served by the query listener"));
    resp_release(&r);
    roundtrip(&c, "GET /busy HTTP/1.1\r\nHost: t\r\n\r\n", 503, &r);
    check_error_body(&r, "busy");
    ck_assert_str_eq(hdr(&r, "retry-after"), "1");
    resp_release(&r);
    roundtrip(&c, "GET /hello?x=%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400, &r);
    check_error_body(&r, "bad_request");
    resp_release(&r);
    /* Still alive after routing errors. */
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    cli_close(&c);

    /* Framing errors close the connection. */
    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c,
              "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
              "3\r\nabc\r\n0\r\n\r\n",
              400, &r);
    check_error_body(&r, "bad_request");
    ck_assert_str_eq(hdr(&r, "connection"), "close");
    resp_release(&r);
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    cli_close(&c);

    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "FOO /hello HTTP/1.1\r\nHost: t\r\n\r\n", 501, &r);
    check_error_body(&r, "not_implemented");
    resp_release(&r);
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_pipelined_error_after_good)
{
    struct cli c;
    struct resp r;

    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    cli_send(&c, "GET /delay/30 HTTP/1.1\r\nHost: t\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n");
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.buf, "30");
    resp_release(&r);
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 400);
    resp_release(&r);
    ck_assert_int_eq(cli_wait_eof(&c, 2000), 1);
    cli_close(&c);
    srv_stop();
}
END_TEST

static void format_metrics(void *arg)
{
    metrics_format(S.m, arg);
}

START_TEST(test_metrics)
{
    struct strbuf sb = STRBUF_INIT;
    struct cli c;
    struct resp r;

    srv_start_m(&lim, true);
    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    roundtrip(&c, "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", 404, &r);
    resp_release(&r);
    on_loop(format_metrics, &sb);
    ck_assert_msg(strstr(sb.buf, "strata_http_requests_total{listener=\"ingest\",route=\"hello\","
                                 "method=\"GET\",code=\"200\"} 2"),
                  "%s", sb.buf);
    ck_assert(strstr(sb.buf, "strata_http_requests_total{listener=\"ingest\",route=\"unmatched\","
                             "method=\"GET\",code=\"404\"} 1"));
    ck_assert(strstr(sb.buf, "strata_http_connections_open{listener=\"ingest\"} 1"));
    ck_assert(strstr(sb.buf, "strata_http_connections_accepted_total{listener=\"ingest\"} 1"));
    ck_assert(strstr(sb.buf, "strata_http_request_duration_seconds_count{listener=\"ingest\","
                             "route=\"hello\"} 2"));
    ck_assert(strstr(sb.buf, "strata_http_request_bytes_total{listener=\"ingest\"} 98"));
    ck_assert(strstr(sb.buf, "strata_http_response_bytes_total{listener=\"ingest\"}"));
    cli_close(&c);
    strbuf_release(&sb);
    srv_stop();
}
END_TEST

START_TEST(test_access_log)
{
    char path[] = "/tmp/strata-access-XXXXXX";
    int fd = mkstemp(path);
    char buf[4096];
    ssize_t n;
    struct cli c;
    struct resp r;

    ck_assert_int_ge(fd, 0);
    ck_assert(log_set_access_file(path));
    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    roundtrip(&c, "GET /hello?secret=1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, &r);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
    log_set_access_file(NULL);
    n = read(fd, buf, sizeof(buf) - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_msg(strstr(buf, "peer=127.0.0.1:"), "%s", buf);
    ck_assert(strstr(buf, "ts=20"));
    ck_assert(strstr(buf, " listener=ingest method=GET path=/hello status=200 bytes="));
    ck_assert(strstr(buf, " duration_ms="));
    ck_assert(strstr(buf, " route=hello\n"));
    ck_assert_ptr_null(strstr(buf, "secret"));
    close(fd);
    unlink(path);
}
END_TEST

static void get_fd_errors(void *arg)
{
    *(unsigned long *)arg = S.h->accept_fd_errors;
}

START_TEST(test_accept_emfile_backoff)
{
    struct rlimit rl;
    int fillers[256];
    int nf = 0;
    struct cli c;
    struct resp r;
    unsigned long errs;
    int fd;

    /* valgrind keeps descriptors of its own near the limit: no EMFILE to provoke. */
    if (getenv("STRATA_UNDER_VALGRIND"))
        return;

    srv_start(&lim);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    /* Use up every descriptor under a low limit; the client socket exists. */
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = (rlim_t)fd + 40;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    while (nf < (int)ST_ARRAY_SIZE(fillers)) {
        int d = dup(0);

        if (d < 0)
            break;
        fillers[nf++] = d;
    }
    ck_assert_int_eq(errno, EMFILE);
    {
        struct sockaddr_in sin;
        struct timeval tv = {5, 0};

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)S.port[HTTPD_INGEST]);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    }
    cli_init(&c, fd);
    cli_send(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    /* accept() fails; the listener backs off instead of spinning. */
    sleep_ms(350);
    on_loop(get_fd_errors, &errs);
    ck_assert_uint_ge(errs, 1);
    ck_assert_uint_le(errs, 8);
    /* Descriptors come back: the waiting connection is served. */
    while (nf)
        close(fillers[--nf]);
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 200);
    resp_release(&r);
    cli_close(&c);
    srv_stop();
}
END_TEST

START_TEST(test_large_body)
{
    const size_t n = 8 * 1024 * 1024;
    struct strbuf sb = STRBUF_INIT;
    char *body = xmalloc(n);
    struct cli c;
    struct resp r;

    for (size_t i = 0; i < n; i++)
        body[i] = (char)(i * 13);
    srv_start(&lim);
    cli_open(&c, HTTPD_INGEST);
    strbuf_addf(&sb, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", n);
    cli_send(&c, sb.buf);
    cli_sendn(&c, body, n);
    ck_assert(cli_read(&c, &r));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body.len, n);
    ck_assert(!memcmp(r.body.buf, body, n));
    resp_release(&r);
    cli_close(&c);
    strbuf_release(&sb);
    free(body);
    srv_stop();
}
END_TEST

static Suite *httpd_suite(void)
{
    Suite *s = suite_create("httpd");
    TCase *tc = tcase_create("httpd");

    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_keep_alive);
    tcase_add_test(tc, test_http10);
    tcase_add_test(tc, test_pipelining_order);
    tcase_add_test(tc, test_chunked_request);
    tcase_add_test(tc, test_expect_continue);
    tcase_add_test(tc, test_header_limit);
    tcase_add_test(tc, test_body_limit_before_body);
    tcase_add_test(tc, test_header_timeout_slowloris);
    tcase_add_test(tc, test_body_timeout);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_write_timeout);
    tcase_add_test(tc, test_idle_timer_spares_slow_download);
    tcase_add_test(tc, test_max_connections);
    tcase_add_test(tc, test_streaming_backpressure);
    tcase_add_test(tc, test_stream_abort);
    tcase_add_test(tc, test_abort_callback);
    tcase_add_test(tc, test_graceful_shutdown);
    tcase_add_test(tc, test_shutdown_deadline);
    tcase_add_test(tc, test_head);
    tcase_add_test(tc, test_error_answers);
    tcase_add_test(tc, test_pipelined_error_after_good);
    tcase_add_test(tc, test_metrics);
    tcase_add_test(tc, test_access_log);
    tcase_add_test(tc, test_accept_emfile_backoff);
    tcase_add_test(tc, test_large_body);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(httpd_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
