/*
 * httpd: the HTTP/1.1 server of strata, on libevent bufferevents and
 * http-parser.
 *
 * One httpd serves two listeners (ingest and query) from one event loop
 * thread, which owns every connection. Handlers run on that thread; they
 * must not block. A handler answers a request either at once or later
 * (after a WAL fsync, say), always from the loop thread, by calling exactly
 * one of httpd_reply*() or httpd_stream_begin() ... httpd_stream_end().
 *
 * Requests on one connection are handled one at a time, in order: the next
 * pipelined request is parsed only after the current response is queued,
 * so responses are strictly in request order and a pipelining client can
 * not make the server buffer more than one request.
 *
 * Limits (struct httpd_limits) are enforced before any memory is spent:
 * header bytes (431), body bytes (413, refused from Content-Length before
 * the body is read), a whole-request deadline for headers and one for the
 * body (408 and close, so a client trickling bytes cannot hold a
 * connection), keep-alive idle time, a write deadline for clients that stop
 * reading, and the number of open connections (the excess get 503 and are
 * closed without harming the others). Ambiguous framing (RFC 9112: two
 * Content-Length values, Content-Length with Transfer-Encoding, bad chunk
 * sizes, whitespace before a colon) gets 400 and the connection closed.
 *
 * Every response and error body uses the contract's JSON error shape
 *   {"error": {"code": "...", "message": "..."}}
 * and the route table answers 404 not_found, 405 with Allow, and 404
 * wrong_listener naming the listener that serves the path.
 */
#ifndef ST_HTTP_HTTPD_H
#define ST_HTTP_HTTPD_H

#include <stdarg.h>

#include "util/status.h"

struct event_base;
struct metrics;
struct strbuf;

typedef struct httpd httpd;
struct httpd_req;

enum httpd_listener { HTTPD_INGEST = 0, HTTPD_QUERY = 1, HTTPD_NLISTENERS };

#define HTTPD_ON_INGEST (1u << HTTPD_INGEST)
#define HTTPD_ON_QUERY  (1u << HTTPD_QUERY)
#define HTTPD_ON_BOTH   (HTTPD_ON_INGEST | HTTPD_ON_QUERY)

/* Method flags, for route registration and httpd_req_method(). */
enum httpd_method_flags {
    HTTPD_M_GET = 1 << 0,
    HTTPD_M_HEAD = 1 << 1,
    HTTPD_M_POST = 1 << 2,
    HTTPD_M_PUT = 1 << 3,
    HTTPD_M_DELETE = 1 << 4,
    HTTPD_M_PATCH = 1 << 5,
    HTTPD_M_OPTIONS = 1 << 6,
    HTTPD_M_OTHER = 1 << 7, /* any other method: never routed */
};

struct httpd_limits {
    size_t max_header_bytes;        /* request line + headers: 431 beyond */
    size_t max_body_bytes;          /* decoded body bytes: 413 beyond */
    unsigned max_connections;       /* open at once over both listeners */
    uint64_t header_timeout_ms;     /* first byte to end of headers: 408 */
    uint64_t body_timeout_ms;       /* end of headers to end of body: 408 */
    uint64_t idle_timeout_ms;       /* keep-alive wait for a request: close */
    uint64_t write_timeout_ms;      /* no output drained for this long: close */
    size_t max_inflight_body_bytes; /* request bodies held at once over all
                                     * connections: 503 beyond; 0: no limit */
    size_t stream_high_water;       /* buffered output that pauses a stream */
};

/* The defaults: 16 KiB headers, 64 MiB bodies, 1000 connections, ... */
void httpd_limits_default(struct httpd_limits *lim);

typedef void (*httpd_handler_fn)(struct httpd_req *req, void *arg);
typedef void (*httpd_cb_fn)(void *arg);

/*
 * Creates a server on base. Request metrics go to m (may be NULL).
 * Caller frees with httpd_free(), after the loop has stopped.
 */
httpd *httpd_new(struct event_base *base, struct metrics *m, const struct httpd_limits *lim);
void httpd_free(httpd *h);

/* Replaces the limits; open connections see them from their next request. */
void httpd_set_limits(httpd *h, const struct httpd_limits *lim);

/*
 * Binds and listens on hostport ("0.0.0.0:8080", "127.0.0.1:0",
 * "[::1]:8081") for listener which. Port 0 picks a free port. The address
 * actually bound is written to bound (as "host:port", boundlen bytes).
 */
enum st_status httpd_listen(httpd *h, enum httpd_listener which, const char *hostport, char *bound,
                            size_t boundlen, struct err *err);

/*
 * Adds a route. listeners is a mask of HTTPD_ON_*; methods a mask of
 * HTTPD_M_* (HEAD is answered by GET routes, without the body). pattern is
 * a path of literal segments and parameters: "{tenant}" matches one
 * non-empty segment; "{key*}", only as the last segment, matches one or
 * more segments (read them with httpd_req_param_segments()). name labels
 * the route in metrics and logs ("ingest", "health"). Routes are tried in
 * the order added; the first whose pattern matches wins.
 */
void httpd_route(httpd *h, unsigned listeners, unsigned methods, const char *pattern,
                 const char *name, httpd_handler_fn fn, void *arg);

/*
 * Graceful stop: closes the listeners, closes idle keep-alive connections,
 * lets requests in progress finish (their responses carry
 * "Connection: close"), then calls done(arg) when no connection is left,
 * or when deadline_ms has passed, after closing what remains (requests
 * still with a handler get their abort callback). done runs from the
 * loop, never from inside httpd_shutdown(); a second call does nothing.
 */
void httpd_shutdown(httpd *h, uint64_t deadline_ms, httpd_cb_fn done, void *arg);

/* Open connections over both listeners. */
unsigned httpd_open_connections(const httpd *h);

/*
 * Requests. Every pointer returned stays valid until the response is
 * finished (httpd_reply*() or httpd_stream_end() returned).
 */
enum httpd_listener httpd_req_listener(const struct httpd_req *req);
const char *httpd_listener_name(enum httpd_listener which);
/* One of HTTPD_M_*. */
unsigned httpd_req_method(const struct httpd_req *req);
const char *httpd_req_method_name(const struct httpd_req *req);
/* The path without the query string, as sent (not percent-decoded). */
const char *httpd_req_path(const struct httpd_req *req);
/* A path parameter of the route, percent-decoded; NULL if absent. */
const char *httpd_req_param(const struct httpd_req *req, const char *name);
/*
 * For a "{name*}" parameter: the decoded segments and their count.
 * Returns NULL (and *n = 0) if absent.
 */
const char *const *httpd_req_param_segments(const struct httpd_req *req, const char *name,
                                            size_t *n);
/* A query-string argument, percent-decoded ('+' is a space); NULL if absent. */
const char *httpd_req_query_arg(const struct httpd_req *req, const char *name);
/* A request header by case-insensitive name (first occurrence), or NULL. */
const char *httpd_req_header(const struct httpd_req *req, const char *name);
/* The whole body, de-chunked (Content-Encoding is not undone). */
const char *httpd_req_body(const struct httpd_req *req, size_t *len);
/* The peer address, "ip:port". */
const char *httpd_req_peer(const struct httpd_req *req);
/* Memory that is freed with the request. Aborts on allocation failure. */
void *httpd_req_alloc(struct httpd_req *req, size_t n);

/*
 * Adds a response header before the response starts. name and value are
 * copied. Content-Length, Transfer-Encoding, Date and Connection are the
 * server's own.
 */
void httpd_resp_header(struct httpd_req *req, const char *name, const char *value);

/* Sends a whole response; body is copied. */
void httpd_reply(struct httpd_req *req, int status, const char *content_type, const void *body,
                 size_t len);
/* Sends a whole response, taking body's buffer (body is left empty). */
void httpd_reply_strbuf(struct httpd_req *req, int status, const char *content_type,
                        struct strbuf *body);
/*
 * Sends {"error": {"code": code, "message": <formatted>}} with status.
 * 503 and 429 answers also get "Retry-After: 1" unless a Retry-After
 * header was already added.
 */
void httpd_reply_error(struct httpd_req *req, int status, const char *code, const char *fmt, ...)
    ST_PRINTF(4, 5);
/*
 * Sends an error for an engine status, mapped by the one table in
 * reply.c; the message is err->msg, or status_str() when err is NULL.
 */
void httpd_reply_status(struct httpd_req *req, enum st_status st, const struct err *err);
/* The HTTP status and error code that reply.c maps st to. */
int httpd_status_http(enum st_status st, const char **code);

/*
 * Streaming responses (chunked transfer encoding). stream_write() copies
 * data and returns false once the buffered output is above the high-water
 * mark: the producer should stop and wait for the drain callback, which
 * runs once the output has drained below half the high-water mark. The
 * drain callback stays registered and runs once after each write that
 * returned false. stream_write() also returns false, for good, once the
 * request is aborted: no drain follows, the abort callback does. HTTP/1.0
 * clients get the body unchunked and the connection closed at its end;
 * HEAD requests get the headers only.
 */
void httpd_stream_begin(struct httpd_req *req, int status, const char *content_type);
bool httpd_stream_write(struct httpd_req *req, const void *data, size_t len);
void httpd_stream_on_drain(struct httpd_req *req, httpd_cb_fn fn, void *arg);
void httpd_stream_end(struct httpd_req *req);

/*
 * The client went away (or the server's shutdown deadline passed) before
 * the response finished: fn(arg) runs once, on the loop thread. The
 * request stays allocated until the handler finishes it with a reply or
 * stream_end, which then write nothing (fn may do so itself). Registered
 * on a request already aborted, fn runs at once. A client that closes its
 * sending side while its request is being handled counts as gone, as does
 * one that stops reading for write_timeout_ms.
 */
void httpd_req_on_abort(struct httpd_req *req, httpd_cb_fn fn, void *arg);
bool httpd_req_is_aborted(const struct httpd_req *req);

#endif
