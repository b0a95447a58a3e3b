/*
 * conn: one HTTP connection on a libevent bufferevent.
 *
 * STATES
 *
 *   IDLE      waiting for the first byte of a request (idle timer)
 *   READING   a request is arriving (header, then body deadline)
 *   HANDLING  a complete request is with its handler (no timer; the write
 *             timeout covers a client that stops reading the response)
 *   CLOSING   the last response is queued; waiting for it to drain
 *   LINGER    write side shut down; reading and discarding until the
 *             peer closes or a short timer fires, so a client still
 *             sending (a refused body, say) reads our answer instead of
 *             a reset
 *
 * One request at a time: the parser pauses after each request, and bytes
 * of pipelined requests stay in the input buffer until the response to
 * the current one is queued; then parsing resumes (at once when the
 * handler answered synchronously, through the "kick" event when it
 * answered later). While a handler runs, reading continues only up to a
 * high watermark, so the peer closing is noticed (the request is aborted)
 * but a pipelining client cannot make us buffer much. Parsing also waits
 * while the output buffer is above the stream high-water mark, so a client
 * that pipelines but does not read cannot grow our output without bound.
 *
 * Deadlines are one timer per connection, rearmed as the state changes:
 * header_timeout runs from the first byte of a request to the end of its
 * headers and body_timeout from there to the end of the body, whatever
 * trickles in meanwhile (libevent's own read timeouts only measure
 * inactivity, which a slowloris client defeats). Expiry answers 408 and
 * closes; idle_timeout closes silently. write_timeout is libevent's write
 * timeout, which is what we want: no progress draining the output.
 *
 * A request in a handler belongs to the handler until it calls a reply
 * function. If the connection dies first, the request is detached
 * (req->conn = NULL, aborted), its abort callback runs once, and the
 * eventual reply frees it without writing.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "http/http_int.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/timeutil.h"

/* Largest read or write per system call. */
#define IO_CHUNK (256 * 1024)
/* Input kept while a handler runs, beyond the header limit. */
#define HANDLING_INPUT_SLACK (64 * 1024)

enum conn_state {
    C_IDLE,
    C_READING,
    C_HANDLING,
    C_CLOSING,
    C_LINGER,
};

enum timer_kind {
    T_NONE,
    T_IDLE,
    T_HEADER,
    T_BODY,
    T_LINGER,
};

struct conn {
    httpd *h;
    struct conn *prev; /* in h->conns */
    struct conn *next;
    struct bufferevent *bev;
    evutil_socket_t fd;
    enum httpd_listener listener;
    enum conn_state state;
    enum timer_kind timer_kind;
    struct event *timer;
    struct event *kick; /* deferred: resume parsing, or run a stream's drain */
    struct httpd_parser parser;
    struct httpd_req *req; /* the request with a handler, or NULL */
    bool in_process;       /* conn_process() is on the stack */
    bool want_free;        /* close was asked for while in_process */
    bool close_after;      /* close once the current response is queued */
    bool headers_seen;     /* the current request's headers were acted on */
    bool read_paused;      /* reading stopped while a handler runs */
    unsigned lim_gen;      /* h->lim_gen when the write timeout was set */
    uint64_t nrequests;
    char peer[64];
};

static void conn_process(struct conn *c);
static void conn_start_close(struct conn *c);
static void conn_free(struct conn *c);

struct conn *httpd__conn_next(const struct conn *c)
{
    return c->next;
}

static struct evbuffer *output(struct conn *c)
{
    return bufferevent_get_output(c->bev);
}

static size_t high_water(const struct conn *c)
{
    return c->h->lim.stream_high_water ? c->h->lim.stream_high_water : 1;
}

/* ------------------------------------------------------------------ */
/* Timers */

static void timer_set(struct conn *c, enum timer_kind kind)
{
    httpd *h = c->h;
    const struct timeval *tv = NULL;

    switch (kind) {
    case T_NONE:
        break;
    case T_IDLE:
        tv = h->ct_idle;
        break;
    case T_HEADER:
        tv = h->ct_header;
        break;
    case T_BODY:
        tv = h->ct_body;
        break;
    case T_LINGER:
        tv = h->ct_linger;
        break;
    }
    c->timer_kind = kind;
    if (tv)
        event_add(c->timer, tv);
    else
        event_del(c->timer);
}

/* ------------------------------------------------------------------ */
/* Writing responses */

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/*
 * Queues the status line and headers. body_len is the Content-Length, or
 * (size_t)-1 for a chunked or close-delimited stream.
 */
static void write_head(struct conn *c, struct httpd_req *req, int status, const char *ctype,
                       size_t body_len)
{
    struct evbuffer *out = output(c);
    char buf[512];
    size_t n = 0;
    int w;

    w = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, httpd__reason(status),
                 httpd__date(c->h));
    n += (size_t)w;
    if (body_len == (size_t)-1) {
        if (!req->stream_raw)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Transfer-Encoding: chunked\r\n");
    } else if (status_has_body(status)) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Content-Length: %zu\r\n", body_len);
    }
    if (c->close_after)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Connection: close\r\n");
    else if (req->http_minor == 0)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Connection: keep-alive\r\n");
    evbuffer_add(out, buf, n);
    if (ctype && *ctype) {
        evbuffer_add(out, "Content-Type: ", 14);
        evbuffer_add(out, ctype, strlen(ctype));
        evbuffer_add(out, "\r\n", 2);
        n += strlen(ctype) + 16;
    }
    if (req->resp_hdrs.len) {
        evbuffer_add(out, req->resp_hdrs.buf, req->resp_hdrs.len);
        n += req->resp_hdrs.len;
    }
    evbuffer_add(out, "\r\n", 2);
    req->resp_bytes += n + 2;
}

/* The request may be answered: not finished, not streaming. */
static void check_answerable(const struct httpd_req *req)
{
    if (req->state == REQ_DONE)
        ST_BUG("request answered twice");
    if (req->state == REQ_STREAMING)
        ST_BUG("request answered while streaming");
}

void httpd_resp_header(struct httpd_req *req, const char *name, const char *value)
{
    size_t start;

    if (req->state != REQ_HANDLING && req->state != REQ_PARSING)
        ST_BUG("response header added after the response started");
    if (!strcasecmp(name, "Content-Length") || !strcasecmp(name, "Transfer-Encoding") ||
        !strcasecmp(name, "Date") || !strcasecmp(name, "Connection")) {
        log_warn("http response header ignored name=%s", name);
        return;
    }
    if (!strcasecmp(name, "Retry-After"))
        req->has_retry_after = true;
    start = req->resp_hdrs.len;
    strbuf_addstr(&req->resp_hdrs, name);
    strbuf_addstr(&req->resp_hdrs, ": ");
    strbuf_addstr(&req->resp_hdrs, value);
    /* No response splitting: control characters become spaces. */
    for (size_t i = start; i < req->resp_hdrs.len; i++) {
        unsigned char ch = (unsigned char)req->resp_hdrs.buf[i];

        if (ch < 0x20 && ch != '\t')
            req->resp_hdrs.buf[i] = ' ';
    }
    strbuf_addstr(&req->resp_hdrs, "\r\n");
}

/* An aborted request is freed by whatever finishes it. */
static bool finish_aborted(struct httpd_req *req)
{
    if (!req->aborted)
        return false;
    req->state = REQ_DONE;
    httpd__req_free(req);
    return true;
}

void httpd_reply(struct httpd_req *req, int status, const char *content_type, const void *body,
                 size_t len)
{
    struct conn *c = req->conn;

    check_answerable(req);
    if (finish_aborted(req))
        return;
    req->status = status;
    if (!status_has_body(status))
        len = 0;
    write_head(c, req, status, content_type, len);
    if (len && !req->head_only) {
        evbuffer_add(output(c), body, len);
        req->resp_bytes += len;
    }
    httpd__req_finish(req);
}

static void free_cb(const void *data, size_t len, void *arg)
{
    ST_UNUSED(len);
    ST_UNUSED(arg);
    free((void *)data);
}

void httpd_reply_strbuf(struct httpd_req *req, int status, const char *content_type,
                        struct strbuf *body)
{
    struct conn *c = req->conn;
    size_t len = body->len;

    check_answerable(req);
    if (finish_aborted(req)) {
        strbuf_release(body);
        return;
    }
    req->status = status;
    if (!status_has_body(status))
        len = 0;
    write_head(c, req, status, content_type, len);
    if (len && !req->head_only) {
        if (len < 4096 || !body->alloc) {
            evbuffer_add(output(c), body->buf, len);
            strbuf_release(body);
        } else {
            char *buf = strbuf_detach(body, NULL);

            if (evbuffer_add_reference(output(c), buf, len, free_cb, NULL))
                free(buf);
        }
        req->resp_bytes += len;
    } else {
        strbuf_release(body);
    }
    httpd__req_finish(req);
}

/* ------------------------------------------------------------------ */
/* Streaming */

void httpd_stream_begin(struct httpd_req *req, int status, const char *content_type)
{
    struct conn *c = req->conn;

    check_answerable(req);
    req->state = REQ_STREAMING;
    req->status = status;
    if (req->aborted)
        return;
    if (req->http_minor == 0) {
        /* HTTP/1.0 has no chunked coding: the body ends with the connection. */
        req->stream_raw = true;
        c->close_after = true;
    }
    write_head(c, req, status, content_type, (size_t)-1);
}

bool httpd_stream_write(struct httpd_req *req, const void *data, size_t len)
{
    struct conn *c = req->conn;
    struct evbuffer *out;
    char hdr[24];
    int n;

    if (req->aborted)
        return false;
    if (req->state != REQ_STREAMING)
        ST_BUG("httpd_stream_write outside a stream");
    out = output(c);
    if (len && !req->head_only) {
        if (req->stream_raw) {
            evbuffer_add(out, data, len);
            req->resp_bytes += len;
        } else {
            n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
            evbuffer_add(out, hdr, (size_t)n);
            evbuffer_add(out, data, len);
            evbuffer_add(out, "\r\n", 2);
            req->resp_bytes += len + (size_t)n + 2;
        }
    }
    if (evbuffer_get_length(out) > high_water(c)) {
        req->stream_blocked = true;
        return false;
    }
    return true;
}

void httpd_stream_on_drain(struct httpd_req *req, httpd_cb_fn fn, void *arg)
{
    struct conn *c = req->conn;

    req->drain_fn = fn;
    req->drain_arg = arg;
    if (!req->aborted && req->stream_blocked && evbuffer_get_length(output(c)) <= high_water(c) / 2)
        event_active(c->kick, EV_TIMEOUT, 0);
}

void httpd_stream_end(struct httpd_req *req)
{
    struct conn *c = req->conn;

    if (req->state != REQ_STREAMING)
        ST_BUG("httpd_stream_end outside a stream");
    if (finish_aborted(req))
        return;
    if (!req->head_only && !req->stream_raw) {
        evbuffer_add(output(c), "0\r\n\r\n", 5);
        req->resp_bytes += 5;
    }
    httpd__req_finish(req);
}

/* Runs the drain callback when a blocked stream's output is low enough. */
static void maybe_drain(struct conn *c)
{
    struct httpd_req *req = c->req;

    if (!req || req->state != REQ_STREAMING || !req->stream_blocked || !req->drain_fn)
        return;
    if (evbuffer_get_length(output(c)) > high_water(c) / 2)
        return;
    req->stream_blocked = false;
    req->drain_fn(req->drain_arg);
}

/* ------------------------------------------------------------------ */
/* Abort */

void httpd_req_on_abort(struct httpd_req *req, httpd_cb_fn fn, void *arg)
{
    if (req->aborted) {
        /* Too late to wait for it: it happened. */
        fn(arg);
        return;
    }
    req->abort_fn = fn;
    req->abort_arg = arg;
}

/* Detaches c's request and tells its handler. */
static void abort_req(struct conn *c, const char *reason)
{
    struct httpd_req *req = c->req;
    httpd_cb_fn fn;

    if (!req)
        return;
    c->req = NULL;
    req->conn = NULL;
    req->aborted = true;
    /* It may outlive the server: its body goes back to free(), not the pool. */
    req->pool = NULL;
    httpd__count_request(c->h, c->listener, req->route, req->method, 499,
                         (double)(time_mono_ns() - req->start_ns) / 1e9);
    log_debug("http request aborted peer=%s method=%s path=%s reason=%s", c->peer, req->method_name,
              req->path, reason);
    fn = req->abort_fn;
    req->abort_fn = NULL;
    /* Last: fn may answer, which frees req. */
    if (fn)
        fn(req->abort_arg);
}

/* ------------------------------------------------------------------ */
/* Finishing a response */

static void access_log(struct conn *c, struct httpd_req *req, double ms)
{
    char ts[40];
    struct tm tm;
    int64_t now = time_wall_ms();
    time_t sec = (time_t)(now / 1000);

    gmtime_r(&sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    log_access("ts=%s.%03dZ peer=%s listener=%s method=%s path=%s status=%d bytes=%llu "
               "duration_ms=%.3f route=%s",
               ts, (int)(now % 1000), c->peer, httpd_listener_name(c->listener),
               req->method_name ? req->method_name : "-", req->path ? req->path : "-", req->status,
               (unsigned long long)req->resp_bytes, ms,
               req->route ? req->route->name : "unmatched");
}

/* Metrics and the access log for a response that is queued. */
static void account(struct conn *c, struct httpd_req *req)
{
    httpd *h = c->h;
    double secs = (double)(time_mono_ns() - req->start_ns) / 1e9;

    httpd__count_request(h, c->listener, req->route, req->method, req->status, secs);
    if (h->lm[c->listener].resp_bytes)
        metric_add(h->lm[c->listener].resp_bytes, (double)req->resp_bytes);
    if (log_access_enabled())
        access_log(c, req, secs * 1e3);
}

void httpd__req_finish(struct httpd_req *req)
{
    struct conn *c = req->conn;

    account(c, req);
    req->state = REQ_DONE;
    c->req = NULL;
    c->nrequests++;
    httpd__parser_recycle(&c->parser, req);
    if (c->close_after) {
        conn_start_close(c);
        return;
    }
    if (c->read_paused) {
        c->read_paused = false;
        bufferevent_enable(c->bev, EV_READ);
    }
    c->state = C_IDLE;
    timer_set(c, T_IDLE);
    if (!c->in_process && evbuffer_get_length(bufferevent_get_input(c->bev)))
        event_active(c->kick, EV_TIMEOUT, 0);
}

/*
 * Answers an error found before any handler (parse errors, timeouts) and
 * closes. The request being parsed, if any, supplies the method and path
 * for the access log.
 */
static void conn_error(struct conn *c, int status, const char *code, const char *msg)
{
    struct httpd_req *req = httpd__parser_current(&c->parser);
    struct strbuf body = STRBUF_INIT;
    bool own = false;

    if (!req) {
        req = httpd__req_new();
        req->start_ns = time_mono_ns();
        own = true;
    }
    if (!c->parser.headers_done) {
        req->method = HTTPD_M_OTHER;
        req->method_name = NULL;
        req->path = NULL;
    }
    timer_set(c, T_NONE);
    c->close_after = true;
    c->state = C_HANDLING;
    req->state = REQ_HANDLING;
    req->conn = c;
    req->route = NULL;
    req->http_minor = 1;
    req->head_only = false;
    strbuf_reset(&req->resp_hdrs);
    if (status == 503 || status == 429)
        httpd_resp_header(req, "Retry-After", "1");
    httpd__error_body(&body, code, msg, strlen(msg));
    req->status = status;
    write_head(c, req, status, "application/json", body.len);
    evbuffer_add(output(c), body.buf, body.len);
    req->resp_bytes += body.len;
    strbuf_release(&body);
    account(c, req);
    req->state = REQ_DONE;
    if (own)
        httpd__req_free(req);
    conn_start_close(c);
}

/* ------------------------------------------------------------------ */
/* Reading requests */

/* Feeds buffered input to the parser; drains what it consumed. */
static enum httpd_parse_rc feed_input(struct conn *c, struct evbuffer *in)
{
    enum httpd_parse_rc rc = HTTPD_PARSE_MORE;
    size_t total = 0;

    while (rc == HTTPD_PARSE_MORE && evbuffer_get_length(in)) {
        struct evbuffer_iovec v[8];
        int n = evbuffer_peek(in, -1, NULL, v, 8);
        size_t used = 0;

        if (n <= 0)
            break;
        for (int i = 0; i < ST_MIN(n, 8) && rc == HTTPD_PARSE_MORE; i++)
            used += httpd__parser_feed(&c->parser, v[i].iov_base, v[i].iov_len, &rc);
        evbuffer_drain(in, used);
        total += used;
    }
    if (c->h->lm[c->listener].req_bytes && total)
        metric_add(c->h->lm[c->listener].req_bytes, (double)total);
    return rc;
}

/* Once the headers are in: body deadline, and 100 Continue if asked. */
static void headers_seen(struct conn *c)
{
    struct httpd_req *req = httpd__parser_current(&c->parser);

    if (c->headers_seen || !req || !c->parser.headers_done)
        return;
    c->headers_seen = true;
    timer_set(c, T_BODY);
    if (req->expect_continue && req->http_minor >= 1 && req->body_len == 0)
        evbuffer_add(output(c), "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

static void route_and_handle(struct conn *c, struct httpd_req *req)
{
    enum httpd_listener other;
    unsigned allow;
    struct strbuf sb = STRBUF_INIT;

    switch (httpd__router_match(&c->h->router, req, &allow, &other)) {
    case ROUTER_MATCH:
        req->route->fn(req, req->route->arg);
        return;
    case ROUTER_NOT_FOUND:
        httpd_reply_error(req, 404, "not_found", "no endpoint '%s'", req->path);
        return;
    case ROUTER_BAD_METHOD:
        httpd__methods_str(&sb, allow);
        httpd_resp_header(req, "Allow", sb.buf);
        strbuf_release(&sb);
        httpd_reply_error(req, 405, "method_not_allowed", "method %s is not allowed for '%s'",
                          req->method_name, req->path);
        return;
    case ROUTER_WRONG_LISTENER:
        httpd_reply_error(req, 404, "wrong_listener", "'%s' is served by the %s listener",
                          req->path, httpd_listener_name(other));
        return;
    case ROUTER_BAD_REQUEST:
        httpd_reply_error(req, 400, "bad_request", "invalid percent-escape in the request target");
        return;
    }
}

/* Applies limits that live in the bufferevent (after httpd_set_limits()). */
static void apply_limits(struct conn *c)
{
    struct timeval tv = c->h->tv_write;

    c->lim_gen = c->h->lim_gen;
    bufferevent_setwatermark(c->bev, EV_WRITE, high_water(c) / 2, 0);
    bufferevent_set_timeouts(c->bev, NULL, tv.tv_sec || tv.tv_usec ? &tv : NULL);
}

static void dispatch(struct conn *c, struct httpd_req *req)
{
    httpd *h = c->h;

    timer_set(c, T_NONE);
    c->state = C_HANDLING;
    c->req = req;
    req->conn = c;
    req->listener = c->listener;
    req->peer = c->peer;
    req->state = REQ_HANDLING;
    req->head_only = req->method == HTTPD_M_HEAD;
    if (h->shutting_down || !req->keep_alive || req->upgrade)
        c->close_after = true;
    if (c->lim_gen != h->lim_gen)
        apply_limits(c);
    route_and_handle(c, req);
}

/*
 * While a handler runs, reading goes on (so a peer that closes is noticed
 * and the request aborted) until a bounded amount is buffered.
 */
static void check_handling_input(struct conn *c)
{
    size_t bound = c->h->lim.max_header_bytes + HANDLING_INPUT_SLACK;

    if (!c->read_paused && evbuffer_get_length(bufferevent_get_input(c->bev)) > bound) {
        c->read_paused = true;
        bufferevent_disable(c->bev, EV_READ);
    }
}

static void conn_process(struct conn *c)
{
    if (c->state == C_HANDLING) {
        check_handling_input(c);
        return;
    }
    if (c->in_process)
        return;
    c->in_process = true;
    for (;;) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        enum httpd_parse_rc rc;
        struct httpd_req *req;

        if (c->state == C_LINGER) {
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
        if (c->state != C_IDLE && c->state != C_READING)
            break;
        if (!evbuffer_get_length(in))
            break;
        /* A pipelining client that does not read waits for its output to drain. */
        if (c->state == C_IDLE && evbuffer_get_length(output(c)) > high_water(c))
            break;
        if (c->state == C_IDLE) {
            c->state = C_READING;
            c->headers_seen = false;
            timer_set(c, T_HEADER);
        }
        rc = feed_input(c, in);
        if (rc == HTTPD_PARSE_MORE) {
            headers_seen(c);
            break;
        }
        if (rc == HTTPD_PARSE_ERROR) {
            log_debug("http bad request peer=%s status=%d reason=%s", c->peer, c->parser.err_status,
                      c->parser.err_code);
            conn_error(c, c->parser.err_status, c->parser.err_code, c->parser.err_msg);
            break;
        }
        req = httpd__parser_take(&c->parser);
        dispatch(c, req);
    }
    c->in_process = false;
    if (c->want_free)
        conn_free(c);
}

/* ------------------------------------------------------------------ */
/* Closing */

static void conn_free(struct conn *c)
{
    if (c->in_process) {
        c->want_free = true;
        return;
    }
    abort_req(c, "closed");
    event_free(c->timer);
    event_free(c->kick);
    bufferevent_free(c->bev);
    httpd__parser_release(&c->parser);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    httpd__conn_gone(c->h, c->listener);
    free(c);
}

void httpd__conn_close(struct conn *c, const char *reason)
{
    log_debug("http conn closed peer=%s listener=%s requests=%llu reason=%s", c->peer,
              httpd_listener_name(c->listener), (unsigned long long)c->nrequests, reason);
    abort_req(c, reason);
    conn_free(c);
}

/* Shuts our side and discards input until the peer closes. */
static void conn_linger(struct conn *c)
{
    c->state = C_LINGER;
    shutdown(c->fd, SHUT_WR);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    timer_set(c, T_LINGER);
}

static void conn_start_close(struct conn *c)
{
    c->state = C_CLOSING;
    timer_set(c, T_NONE);
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(output(c)) == 0)
        conn_linger(c);
    else
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

void httpd__conn_drain(struct conn *c)
{
    c->close_after = true;
    if (c->state == C_IDLE) {
        if (evbuffer_get_length(output(c)) == 0)
            httpd__conn_close(c, "shutdown");
        else
            conn_start_close(c);
    }
}

/* ------------------------------------------------------------------ */
/* Callbacks */

static void read_cb(struct bufferevent *bev, void *arg)
{
    ST_UNUSED(bev);
    conn_process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    ST_UNUSED(bev);
    switch (c->state) {
    case C_CLOSING:
        if (evbuffer_get_length(output(c)) == 0)
            conn_linger(c);
        break;
    case C_HANDLING:
        maybe_drain(c);
        break;
    case C_IDLE:
        if (evbuffer_get_length(bufferevent_get_input(c->bev)))
            conn_process(c);
        break;
    default:
        break;
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    int e = EVUTIL_SOCKET_ERROR();

    ST_UNUSED(bev);
    if (what & BEV_EVENT_TIMEOUT) {
        httpd__conn_close(c, "write_timeout");
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        if (c->state == C_LINGER) {
            conn_free(c);
            return;
        }
        log_debug("http conn error peer=%s error=%s", c->peer, evutil_socket_error_to_string(e));
        httpd__conn_close(c, c->req ? "client_abort" : "io_error");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        switch (c->state) {
        case C_IDLE:
            if (evbuffer_get_length(output(c)))
                conn_start_close(c);
            else
                httpd__conn_close(c, "peer_closed");
            break;
        case C_READING:
            httpd__conn_close(c, "peer_closed_mid_request");
            break;
        case C_HANDLING:
            httpd__conn_close(c, "client_abort");
            break;
        case C_CLOSING:
            break;
        case C_LINGER:
            conn_free(c);
            break;
        }
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    char msg[96];

    ST_UNUSED(fd);
    ST_UNUSED(what);
    switch (c->timer_kind) {
    case T_NONE:
        break;
    case T_IDLE:
        /* Idle means nothing to send either; a slow reader meets write_timeout. */
        if (evbuffer_get_length(output(c))) {
            timer_set(c, T_IDLE);
            break;
        }
        c->timer_kind = T_NONE;
        httpd__conn_close(c, "idle_timeout");
        break;
    case T_HEADER:
    case T_BODY:
        log_debug("http conn timeout peer=%s reason=%s", c->peer,
                  c->timer_kind == T_HEADER ? "header_timeout" : "body_timeout");
        snprintf(msg, sizeof(msg), "request %s not received in time",
                 c->timer_kind == T_HEADER ? "headers" : "body");
        c->timer_kind = T_NONE;
        conn_error(c, 408, "request_timeout", msg);
        break;
    case T_LINGER:
        c->timer_kind = T_NONE;
        conn_free(c);
        break;
    }
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    if (c->state == C_HANDLING)
        maybe_drain(c);
    else
        conn_process(c);
}

/* ------------------------------------------------------------------ */
/* Accepting */

static void format_peer(char *buf, size_t len, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
    } else {
        snprintf(buf, len, "unix");
    }
}

void httpd__conn_new(httpd *h, enum httpd_listener which, int fd, const struct sockaddr *sa,
                     int salen)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    int one = 1;

    ST_UNUSED(salen);
    c->h = h;
    c->fd = fd;
    c->listener = which;
    c->state = C_IDLE;
    format_peer(c->peer, sizeof(c->peer), sa);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    httpd__parser_init(&c->parser, &h->lim);
    c->parser.pool = &h->pool;

    c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(h->base, timer_cb, c);
    c->kick = event_new(h->base, -1, 0, kick_cb, c);
    if (!c->bev || !c->timer || !c->kick)
        ST_BUG("cannot allocate a connection's events");
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_set_max_single_read(c->bev, IO_CHUNK);
    bufferevent_set_max_single_write(c->bev, IO_CHUNK);
    apply_limits(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);

    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    timer_set(c, T_IDLE);
    log_debug("http conn accepted peer=%s listener=%s", c->peer, httpd_listener_name(which));
}
