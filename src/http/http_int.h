/*
 * Internals of the HTTP layer, shared by its .c files and its unit tests
 * and fuzzer. Nothing outside src/http/ and its tests includes this.
 *
 *   parser.c   request framing over http-parser; bytes in, requests out;
 *              no sockets, so unit tests and the fuzzer drive it directly
 *   request.c  struct httpd_req: its arena, accessors, reuse
 *   router.c   the route table, path matching, percent-decoding
 *   reply.c    st_status -> HTTP status table, reason phrases, JSON errors
 *   httpd.c    listeners, accept, connection limits, shutdown, metrics
 *   conn.c     one connection: reading, timers, responses, streaming
 */
#ifndef ST_HTTP_HTTP_INT_H
#define ST_HTTP_HTTP_INT_H

#include <http_parser.h>

#include "http/httpd.h"
#include "util/strbuf.h"

struct conn;
struct route;

/* ------------------------------------------------------------------ */
/* request.c */

/* A request header as offsets into req->head while it is being parsed. */
struct httpd_hdr {
    uint32_t name_off; /* offset of the NUL-terminated name in head */
    uint32_t name_len; /* its length */
    uint32_t val_off;  /* offset of the NUL-terminated value in head */
    uint32_t val_len;  /* its length, trailing whitespace removed */
};

/* A matched route parameter; value and segments are decoded, in the arena. */
struct httpd_param {
    const char *name;        /* the pattern's name, owned by the route */
    const char *value;       /* decoded; a star parameter's segments joined by '/' */
    const char *const *segs; /* star parameter: decoded segments, else NULL */
    size_t nsegs;            /* number of segs */
};

/* One block of a request's arena; the first is inline in the request. */
struct arena_block {
    struct arena_block *next; /* another block, or NULL */
    size_t size;              /* bytes at data */
    size_t used;              /* bytes handed out */
    char *data;               /* 16-byte aligned memory */
};

#define HTTPD_REQ_INLINE_ARENA 1024

enum req_state {
    REQ_PARSING = 0, /* owned by the parser */
    REQ_HANDLING,    /* given to a handler, no response started */
    REQ_STREAMING,   /* httpd_stream_begin() called */
    REQ_DONE,        /* response finished; about to be freed or reused */
};

struct httpd_req {
    /* Filled by the parser. */
    unsigned method;         /* one HTTPD_M_* */
    const char *method_name; /* static string */
    unsigned short http_major;
    unsigned short http_minor;
    bool keep_alive;      /* http_should_keep_alive() at end of message */
    bool upgrade;         /* the client asked for a protocol upgrade */
    bool expect_continue; /* "Expect: 100-continue" */
    bool chunked;         /* the body came chunked */
    struct strbuf head;   /* URL then header names and values, NUL-separated */
    size_t url_len;       /* bytes of the URL at the start of head */
    struct httpd_hdr *hdrs;
    size_t nhdrs;
    size_t hdrs_alloc;
    const char *path;  /* NUL-terminated, without the query */
    const char *query; /* raw query string after '?', or NULL */
    char *body;        /* malloc'd, not NUL-terminated; NULL when empty */
    size_t body_len;
    size_t body_alloc;
    struct httpd_bufpool *pool; /* where body goes back to, or NULL */
    uint64_t start_ns;          /* time_mono_ns() at the first byte of the request */
    size_t wire_bytes;          /* request bytes read from the connection */

    /* Routing. */
    const struct route *route; /* NULL when unmatched */
    struct httpd_param *params;
    size_t nparams;

    /* The connection, or NULL once aborted or when parsed without one. */
    struct conn *conn;
    enum httpd_listener listener;
    const char *peer; /* the connection's, or "" */

    /* Response. */
    enum req_state state;
    bool aborted;         /* the connection went away first */
    bool head_only;       /* HEAD: send headers, no body */
    bool stream_raw;      /* HTTP/1.0 stream: no chunking, close at the end */
    bool stream_blocked;  /* stream_write() returned false; drain pending */
    bool has_retry_after; /* the handler added a Retry-After header */
    bool has_content_type;
    int status;
    struct strbuf resp_hdrs; /* "Name: value\r\n" added by the handler */
    uint64_t resp_bytes;     /* bytes of the response queued */
    httpd_cb_fn abort_fn;
    void *abort_arg;
    httpd_cb_fn drain_fn;
    void *drain_arg;

    /* Arena. */
    struct arena_block *arena;       /* current block */
    struct arena_block inline_block; /* describes inline_data */
    _Alignas(16) char inline_data[HTTPD_REQ_INLINE_ARENA];
};

/*
 * A small cache of large body buffers shared by one server's connections
 * (loop thread only), so a stream of big requests reuses memory that is
 * already mapped instead of mapping and faulting in fresh pages for every
 * body. A NULL pool means plain malloc() and free().
 */
#define HTTPD_POOL_SLOTS     16
#define HTTPD_POOL_MIN       (64 * 1024)        /* smaller buffers are not kept */
#define HTTPD_POOL_MAX_BYTES (32 * 1024 * 1024) /* most bytes kept at once */

struct httpd_bufpool {
    struct {
        char *buf;
        size_t cap;
    } ent[HTTPD_POOL_SLOTS];
    size_t n;            /* entries in use */
    size_t bytes;        /* sum of their cap */
    size_t inflight;     /* capacity of bodies handed out, not yet put back */
    size_t inflight_max; /* limits.max_inflight_body_bytes; 0: no limit */
};

/*
 * A buffer of at least want bytes (*cap says how many), or NULL when
 * memory or the in-flight budget (inflight_max) is exhausted.
 */
char *httpd__pool_get(struct httpd_bufpool *pool, size_t want, size_t *cap);
/*
 * Grows buf (from httpd__pool_get(), cap bytes) to want bytes within the
 * budget; NULL (buf untouched) when it cannot.
 */
char *httpd__pool_grow(struct httpd_bufpool *pool, char *buf, size_t *cap, size_t want);
/* Takes back a buffer from httpd__pool_get() (keeps or frees it). */
void httpd__pool_put(struct httpd_bufpool *pool, char *buf, size_t cap);
void httpd__pool_release(struct httpd_bufpool *pool);

/* A new, empty request. Caller frees with httpd__req_free(). */
struct httpd_req *httpd__req_new(void);
void httpd__req_free(struct httpd_req *req);
/* Empties req for reuse, keeping small allocations. */
void httpd__req_reset(struct httpd_req *req);
/* Looks up a header by name of len bytes, case-insensitively. */
const char *httpd__req_header_n(const struct httpd_req *req, const char *name, size_t len);

/* ------------------------------------------------------------------ */
/* parser.c */

enum httpd_parse_rc {
    HTTPD_PARSE_MORE = 0, /* all bytes consumed, the request is not complete */
    HTTPD_PARSE_DONE,     /* a request is complete: take it */
    HTTPD_PARSE_ERROR,    /* answer p->err_status and close */
};

/* Where the parser is in a request's body (parser.c). */
enum httpd_body_state {
    HB_NONE = 0,      /* no body, or not there yet */
    HB_LENGTH,        /* Content-Length bytes */
    HB_CHUNK_SIZE,    /* chunk-size hex digits */
    HB_CHUNK_EXT,     /* chunk extensions, ignored */
    HB_CHUNK_SIZE_LF, /* LF ending the chunk-size line */
    HB_CHUNK_DATA,    /* chunk data */
    HB_CHUNK_DATA_CR, /* CR after chunk data */
    HB_CHUNK_DATA_LF, /* LF after chunk data */
    HB_TRAILER_START, /* a trailer line or the final CRLF */
    HB_TRAILER_NAME,
    HB_TRAILER_VALUE,
    HB_TRAILER_LF,
    HB_END_LF, /* LF of the final CRLF */
};

struct httpd_parser {
    http_parser hp;
    const struct httpd_limits *limsrc; /* read at the start of each request */
    struct httpd_limits lim;           /* the current request's limits */
    struct httpd_req *req;             /* being parsed, or NULL between requests */
    struct httpd_req *spare;           /* a finished request kept for reuse */
    struct httpd_bufpool *pool;        /* for bodies; may be NULL */
    size_t head_bytes;                 /* request line and header bytes fed */
    size_t trailer_bytes;              /* chunked trailer bytes seen */
    bool started;                      /* bytes of a request were seen */
    bool headers_done;                 /* the current request's headers are complete */
    bool head_complete;                /* http-parser reached the end of the head */
    bool done;                         /* a complete request waits to be taken */
    bool failed;                       /* an error was reported; feed no more */
    bool val_at_end;                   /* last header value callback ended the buffer */
    bool line_done;                    /* the request line was checked */
    enum { CB_NONE, CB_FIELD, CB_VALUE } last_cb;
    enum httpd_body_state bstate;
    uint64_t remaining;  /* body or chunk bytes still to come */
    uint64_t chunk_size; /* the chunk size being read */
    unsigned chunk_digits;
    size_t line_len; /* bytes of the current request or chunk line */
    char tail[24];   /* the last bytes of the request line */
    size_t tail_len;
    const char *val_next; /* where a continued header value must resume */
    unsigned n_cl;        /* Content-Length headers seen */
    unsigned n_te;        /* Transfer-Encoding headers seen */
    int err_status;       /* HTTP status to answer on HTTPD_PARSE_ERROR */
    const char *err_code; /* its JSON error code */
    char err_msg[128];    /* its message */
};

/*
 * Prepares p. lim is borrowed and read at the start of every request, so
 * a change shows from the next request.
 */
void httpd__parser_init(struct httpd_parser *p, const struct httpd_limits *lim);
/* Frees what p holds, including a request not yet taken. */
void httpd__parser_release(struct httpd_parser *p);
/*
 * Parses up to len bytes. Returns the bytes consumed and sets *rc: MORE
 * when all were consumed without completing a request; DONE when a request
 * ended at the returned offset (take it before feeding again); ERROR when
 * the input is refused (p->err_status, err_code, err_msg say why).
 */
size_t httpd__parser_feed(struct httpd_parser *p, const char *data, size_t len,
                          enum httpd_parse_rc *rc);
/* After DONE: the complete request, which the caller now owns. */
struct httpd_req *httpd__parser_take(struct httpd_parser *p);
/* Gives a finished request back for reuse (or frees it). */
void httpd__parser_recycle(struct httpd_parser *p, struct httpd_req *req);
/* The request being parsed (headers are readable once headers_done). */
static inline struct httpd_req *httpd__parser_current(struct httpd_parser *p)
{
    return p->req;
}

/* ------------------------------------------------------------------ */
/* router.c */

struct route_seg {
    char *text; /* literal text, or the parameter's name */
    size_t len; /* length of text */
    bool param; /* "{name}" */
    bool star;  /* "{name*}", last segment only */
};

struct route {
    unsigned listeners; /* HTTPD_ON_* */
    unsigned methods;   /* HTTPD_M_* */
    char *pattern;
    char *name;
    httpd_handler_fn fn;
    void *arg;
    struct route_seg *segs;
    size_t nsegs;
    size_t index; /* position in the table, for per-route caches */
};

struct router {
    struct route **routes;
    size_t nroutes;
    size_t alloc;
};

enum router_rc {
    ROUTER_MATCH = 0,
    ROUTER_NOT_FOUND,      /* 404 not_found */
    ROUTER_BAD_METHOD,     /* 405, *allow holds the methods */
    ROUTER_WRONG_LISTENER, /* 404 wrong_listener, *other names the listener */
    ROUTER_BAD_REQUEST,    /* 400: a bad percent-escape in the path or query */
};

void httpd__router_init(struct router *r);
void httpd__router_release(struct router *r);
/* Adds a route; a malformed pattern is a bug (ST_BUG). */
struct route *httpd__router_add(struct router *r, unsigned listeners, unsigned methods,
                                const char *pattern, const char *name, httpd_handler_fn fn,
                                void *arg);
/*
 * Matches req (its listener, method and path) and on ROUTER_MATCH sets
 * req->route and req->params. OUT: *allow (methods, for 405), *other (the
 * listener that serves the path, for wrong_listener).
 */
enum router_rc httpd__router_match(const struct router *r, struct httpd_req *req, unsigned *allow,
                                   enum httpd_listener *other);
/*
 * Percent-decodes src (len bytes) into dst (room for len + 1 bytes), '+'
 * as a space when plus is set. Returns the decoded length, or -1 on a bad
 * escape or an escaped NUL.
 */
long httpd__pct_decode(char *dst, const char *src, size_t len, bool plus);
/* Writes the methods of mask as "GET, HEAD, POST" into sb. */
void httpd__methods_str(struct strbuf *sb, unsigned mask);
/* HTTPD_M_* for a method name from http-parser. */
unsigned httpd__method_flag(enum http_method m);

/* ------------------------------------------------------------------ */
/* reply.c */

/* The reason phrase of an HTTP status ("Not Found"), or "Unknown". */
const char *httpd__reason(int status);
/* Appends {"error":{"code":code,"message":msg}} to sb. */
void httpd__error_body(struct strbuf *sb, const char *code, const char *msg, size_t msglen);

/* ------------------------------------------------------------------ */
/* conn.c and httpd.c */

#include <sys/socket.h>
#include <sys/time.h>

struct event;
struct bufferevent;
struct evconnlistener;
struct metric;
struct metric_series;

struct httpd_listen_slot {
    httpd *h;
    enum httpd_listener which;
    struct evconnlistener *lev; /* NULL when not listening */
};

/* Per-listener metric series, looked up once. */
struct httpd_lmetrics {
    struct metric_series *conn_open;
    struct metric_series *accepted;
    struct metric_series *refused_max;
    struct metric_series *refused_fd;
    struct metric_series *req_bytes;
    struct metric_series *resp_bytes;
    struct metric_series *dur_unmatched;
};

/* A small cache of requests_total series by (route, listener, method, code). */
#define HTTPD_RCACHE_SIZE 512
struct httpd_rcache_ent {
    uint32_t key; /* 0 when empty */
    struct metric_series *s;
};

struct httpd {
    struct event_base *base;
    struct metrics *m;
    struct httpd_limits lim;
    unsigned lim_gen; /* bumped by httpd_set_limits() */
    struct httpd_bufpool pool;
    struct router router;
    struct httpd_listen_slot listeners[HTTPD_NLISTENERS];

    /* Connections, newest first. */
    struct conn *conns;
    unsigned nconns;

    /* Accept back-off on EMFILE/ENFILE. */
    struct event *accept_retry;
    bool accept_paused;
    bool fd_limit_logged;
    unsigned long accept_fd_errors; /* accept() failures for lack of fds */

    /* Timeouts, as libevent common timeouts when the base has room. */
    struct timeval tv_header;
    struct timeval tv_body;
    struct timeval tv_idle;
    struct timeval tv_write;
    struct timeval tv_linger;
    const struct timeval *ct_header;
    const struct timeval *ct_body;
    const struct timeval *ct_idle;
    const struct timeval *ct_linger;

    /* Graceful shutdown. */
    bool shutting_down;
    bool done_called;
    struct event *shutdown_deadline;
    struct event *done_ev;
    httpd_cb_fn done_fn;
    void *done_arg;

    /* The Date header, formatted once a second. */
    time_t date_sec;
    char date[40];

    /* Metrics (all NULL when m is NULL). */
    struct metric *f_requests;
    struct metric *f_duration;
    struct httpd_lmetrics lm[HTTPD_NLISTENERS];
    struct metric_series **route_dur; /* [route index * HTTPD_NLISTENERS + listener] */
    size_t route_dur_len;
    struct httpd_rcache_ent rcache[HTTPD_RCACHE_SIZE];
};

/* httpd.c: the Date header value for now. */
const char *httpd__date(httpd *h);
/* httpd.c: counts a response in requests_total and the duration histogram. */
void httpd__count_request(httpd *h, enum httpd_listener l, const struct route *rt, unsigned method,
                          int status, double seconds);
/* httpd.c: a connection on listener l went away (after unlinking it). */
void httpd__conn_gone(httpd *h, enum httpd_listener l);

/* conn.c: takes an accepted socket (the caller counted it in nconns). */
void httpd__conn_new(httpd *h, enum httpd_listener which, int fd, const struct sockaddr *sa,
                     int salen);
/* conn.c: closes c now; requests in a handler are aborted. */
void httpd__conn_close(struct conn *c, const char *reason);
/* conn.c: for shutdown: close if idle, else close after the current response. */
void httpd__conn_drain(struct conn *c);
/* conn.c: the next connection in h->conns. */
struct conn *httpd__conn_next(const struct conn *c);

/* Finishes req's response (metrics, access log, next request). */
void httpd__req_finish(struct httpd_req *req);

#endif
