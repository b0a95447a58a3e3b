/*
 * The strata-loadgen engine (see lg_engine.h for what a run is).
 *
 * DESIGN
 *
 * Each thread is a worker with its own event_base; nothing on it is shared
 * with other workers except the workloads' two atomic counters (request
 * numbers for the source, and claims against a request limit) and the
 * engine's stop flag. A worker holds one `struct wload` per workload: its
 * share of the connections, and its own lg_stats that the main thread
 * merges after joining.
 *
 * A connection is a bufferevent on a non-blocking TCP socket with
 * TCP_NODELAY, plus an http_parser for responses and a ring of the
 * requests in flight (at most `pipeline`), so memory per connection is
 * fixed: responses are parsed straight out of the input buffer's chunks
 * and drained, and the output buffer never holds more than `pipeline`
 * requests (large bodies by reference, see lg_source.c).
 *
 * Closed loop (rate 0): every connection keeps `pipeline` requests in
 * flight, sending the next as each response completes. Latency runs from
 * writing the request to the end of its response.
 *
 * Open loop (rate R): request i of a worker is due at t0 + i / R_w, where
 * R_w is the worker's share of R (by its share of the connections). A
 * precise timer wakes the worker at the next due time and every due
 * request goes to a connection with a free pipeline slot; when none is
 * free the request waits, and its latency still runs from its due time,
 * so a stalled server shows up in the percentiles instead of slowing the
 * generator down (no coordinated omission, as in wrk2).
 *
 * Measurement: a request counts when it was sent (or, open loop, due) at
 * or after the end of warmup and its response completes before the end.
 * Requests in flight at the end are dropped uncounted.
 *
 * Failures never stop a run: a failed connect is counted and retried with
 * exponential backoff (10 ms to 1 s); a close, reset, timeout or parse
 * error is counted against the requests in flight and the connection is
 * opened again. A worker gives up only when nothing has connected or
 * answered for the whole timeout while connects are failing.
 */
#include "lg_engine.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <http_parser.h>

#include "util/common.h"
#include "util/timeutil.h"

#define TICK_NS          (50 * 1000 * 1000ull) /* timeout and stop-flag checks */
#define BACKOFF_MIN_NS   (10 * 1000 * 1000ull)
#define BACKOFF_MAX_NS   (1000 * 1000 * 1000ull)
#define MAX_SINGLE_READ  (256 * 1024)
#define MAX_SINGLE_WRITE (4 * 1024 * 1024)
#define PEEK_CHUNKS      16

/* Run-wide state; read-only during the run except the atomics. */
struct engine {
    const struct lg_run_opts *opts; /* the options */
    uint64_t t0;                    /* start of the run */
    uint64_t warm_end;              /* end of warmup: t0 + warmup */
    uint64_t end;                   /* end of the run, or UINT64_MAX */
    atomic_bool stop;               /* set on SIGINT/SIGTERM */
    atomic_uint running;            /* workers not finished */
};

/* One request in flight. */
struct inflight {
    uint64_t start;   /* latency reference: sent (closed loop) or due (open loop) */
    uint64_t sent;    /* when written, for the timeout */
    size_t body_len;  /* request body bytes */
    uint32_t records; /* records in the body */
    bool measured;    /* counts in the results */
    bool head_only;   /* response has no body */
};

enum conn_state {
    CONN_DOWN,       /* not connected, nothing scheduled (stopping) */
    CONN_WAIT,       /* backing off before the next attempt */
    CONN_CONNECTING, /* connect in progress */
    CONN_OPEN,       /* ready for requests */
};

/* Why a connection is dropped, for counting the requests it had in flight. */
enum drop_reason {
    DROP_CLOSED,  /* server closed or reset */
    DROP_TIMEOUT, /* the oldest request ran out of time */
    DROP_PARSE,   /* the response could not be parsed */
};

struct worker;
struct wload;

struct conn {
    struct wload *wl;          /* the workload it serves */
    struct bufferevent *bev;   /* NULL unless connecting or open */
    struct event *retry;       /* backoff timer */
    http_parser parser;        /* response parser */
    enum conn_state state;     /* see enum conn_state */
    struct inflight *q;        /* ring of pipeline requests in flight */
    unsigned qhead;            /* index of the oldest */
    unsigned qlen;             /* how many */
    uint64_t since;            /* start of the connect attempt */
    uint64_t answered;         /* responses on the current connection */
    uint64_t resp_body;        /* body bytes of the response being parsed */
    unsigned failures;         /* consecutive attempts that got no response */
    unsigned connect_failures; /* consecutive failed connects */
    bool opened_before;        /* the next open is a reconnect */
    bool close_after;          /* the server ends the connection after this response */
};

/* One workload on one worker. */
struct wload {
    struct lg_workload *w; /* the workload */
    struct worker *wk;     /* the worker */
    struct conn *conns;    /* this worker's share of the connections */
    unsigned nconns;       /* how many */
    double rate;           /* open loop: this worker's requests/s, else 0 */
    uint64_t rate_sent;    /* open loop: requests sent (index of the next due) */
    struct event *rate_ev; /* open loop: wakes at the next due time */
    unsigned rr;           /* open loop: where the search for a free slot starts */
    bool exhausted;        /* the limit is reached: send nothing more */
    struct lg_stats stats; /* this worker's results */
};

struct worker {
    struct engine *eng;      /* the run */
    struct event_base *base; /* this thread's loop */
    struct wload *wl;        /* one per workload */
    size_t nwl;              /* how many */
    struct event *tick;      /* periodic checks */
    struct event *end_ev;    /* end of the run */
    uint64_t now;            /* time of the current read callback */
    uint64_t last_progress;  /* last connect or response */
    uint64_t inflight;       /* requests in flight on all connections */
    uint64_t stopped_at;     /* when the worker stopped */
    bool stopping;           /* no more requests, loop is ending */
    bool failed;             /* gave up: nothing could connect */
    bool any_exhausted;      /* some workload reached its limit */
    bool ever_connected;     /* some connection opened */
    pthread_t tid;           /* its thread */
};

static void conn_start(struct conn *c);
static void wl_dispatch(struct wload *wl, uint64_t now);

/* ------------------------------------------------------------------ stats */

void lg_stats_init(struct lg_stats *s)
{
    memset(s, 0, sizeof(*s));
    lg_hist_init(&s->latency);
}

void lg_stats_merge(struct lg_stats *dst, const struct lg_stats *src)
{
    unsigned i;

    dst->requests += src->requests;
    dst->ok += src->ok;
    dst->records += src->records;
    dst->sent_body += src->sent_body;
    dst->recv_body += src->recv_body;
    dst->err_connect += src->err_connect;
    dst->err_timeout += src->err_timeout;
    dst->err_status += src->err_status;
    dst->err_parse += src->err_parse;
    dst->err_closed += src->err_closed;
    dst->reconnects += src->reconnects;
    dst->backlog += src->backlog;
    for (i = 0; i < LG_STATUS_SLOTS; i++)
        dst->status[i] += src->status[i];
    lg_hist_merge(&dst->latency, &src->latency);
}

uint64_t lg_stats_errors(const struct lg_stats *s)
{
    return s->err_connect + s->err_timeout + s->err_status + s->err_parse + s->err_closed;
}

static bool in_window(const struct engine *eng, uint64_t now)
{
    return now >= eng->warm_end && now <= eng->end;
}

/* ----------------------------------------------------------------- worker */

static void worker_stop(struct worker *wk, uint64_t at)
{
    size_t i;

    if (wk->stopping)
        return;
    wk->stopping = true;
    wk->stopped_at = ST_MIN(at, wk->eng->end);
    for (i = 0; i < wk->nwl; i++) {
        struct wload *wl = &wk->wl[i];
        const struct engine *eng = wk->eng;
        uint64_t due;
        uint64_t first;

        if (wl->rate <= 0 || wl->exhausted || wk->stopped_at < eng->warm_end)
            continue;
        /* Requests due in the measured window but never sent. */
        due = (uint64_t)((double)(wk->stopped_at - eng->t0) * wl->rate / 1e9) + 1;
        first = (uint64_t)((double)(eng->warm_end - eng->t0) * wl->rate / 1e9);
        first = ST_MAX(first, wl->rate_sent);
        if (due > first)
            wl->stats.backlog += due - first;
    }
    event_base_loopbreak(wk->base);
}

/* Stops the worker once every workload reached its limit and nothing is in flight. */
static void worker_check_done(struct worker *wk, uint64_t now)
{
    size_t i;

    if (!wk->any_exhausted || wk->inflight > 0 || wk->stopping)
        return;
    for (i = 0; i < wk->nwl; i++)
        if (wk->wl[i].nconns > 0 && !wk->wl[i].exhausted)
            return;
    worker_stop(wk, now);
}

/* ------------------------------------------------------------ connections */

static struct inflight *conn_front(struct conn *c)
{
    return &c->q[c->qhead];
}

static void conn_pop(struct conn *c)
{
    st_assert(c->qlen > 0);
    c->qhead = (c->qhead + 1) % c->wl->w->pipeline;
    c->qlen--;
    c->wl->wk->inflight--;
}

/* Sends one request whose latency runs from start; false when the limit is reached. */
static bool conn_issue(struct conn *c, uint64_t start, uint64_t now)
{
    struct wload *wl = c->wl;
    struct lg_workload *w = wl->w;
    struct lg_req_info info = {0};
    struct inflight *f;
    bool measured = start >= wl->wk->eng->warm_end;
    uint64_t seq;

    if (wl->exhausted || wl->wk->stopping)
        return false;
    if (measured && w->limit && atomic_fetch_add(&w->claimed, 1) >= w->limit) {
        wl->exhausted = true;
        wl->wk->any_exhausted = true;
        return false;
    }
    seq = atomic_fetch_add(&w->seq, 1);
    w->src->ops->emit(w->src, seq, bufferevent_get_output(c->bev), &info);
    f = &c->q[(c->qhead + c->qlen) % w->pipeline];
    f->start = start;
    f->sent = now;
    f->body_len = info.body_len;
    f->records = info.records;
    f->measured = measured;
    f->head_only = info.head_only;
    c->qlen++;
    wl->wk->inflight++;
    return true;
}

/* Closed loop: tops the pipeline up. */
static void conn_fill(struct conn *c, uint64_t now)
{
    while (c->state == CONN_OPEN && c->qlen < c->wl->w->pipeline)
        if (!conn_issue(c, now, now))
            break;
}

/* After a connect or a response: send what the loop mode wants. */
static void conn_feed(struct conn *c, uint64_t now)
{
    if (c->wl->rate > 0)
        wl_dispatch(c->wl, now);
    else
        conn_fill(c, now);
}

static void conn_schedule_retry(struct conn *c)
{
    uint64_t ns = BACKOFF_MIN_NS;
    struct timeval tv;
    unsigned i;

    for (i = 1; i < c->failures && ns < BACKOFF_MAX_NS; i++)
        ns *= 2;
    ns = ST_MIN(ns, BACKOFF_MAX_NS);
    tv.tv_sec = (time_t)(ns / 1000000000u);
    tv.tv_usec = (suseconds_t)(ns % 1000000000u / 1000u);
    c->state = CONN_WAIT;
    evtimer_add(c->retry, &tv);
}

static void conn_free_bev(struct conn *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
}

static void conn_connect_failed(struct conn *c, uint64_t now)
{
    if (in_window(c->wl->wk->eng, now))
        c->wl->stats.err_connect++;
    conn_free_bev(c);
    c->failures++;
    c->connect_failures++;
    if (c->wl->wk->stopping)
        c->state = CONN_DOWN;
    else
        conn_schedule_retry(c);
}

/* Closes the connection, counts its requests in flight, and opens it again. */
static void conn_drop(struct conn *c, enum drop_reason why, uint64_t now)
{
    struct wload *wl = c->wl;
    struct worker *wk = wl->wk;
    bool counted = in_window(wk->eng, now);

    /* A response with no request in flight is a parse error too. */
    if (why == DROP_PARSE && c->qlen == 0 && counted)
        wl->stats.err_parse++;
    while (c->qlen > 0) {
        if (conn_front(c)->measured && counted) {
            if (why == DROP_TIMEOUT)
                wl->stats.err_timeout++;
            else if (why == DROP_PARSE)
                wl->stats.err_parse++;
            else
                wl->stats.err_closed++;
        }
        /* Only the response that failed to parse is a parse error. */
        if (why == DROP_PARSE)
            why = DROP_CLOSED;
        conn_pop(c);
    }
    conn_free_bev(c);
    if (wk->stopping) {
        c->state = CONN_DOWN;
    } else if (c->answered == 0) {
        /* Closed before any answer: back off, or a dead server spins us. */
        c->failures++;
        conn_schedule_retry(c);
    } else {
        conn_start(c);
    }
    if (wl->rate > 0)
        wl_dispatch(wl, now);
    worker_check_done(wk, now);
}

/* http-parser callbacks: parser->data is the connection. */

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;

    c->resp_body = 0;
    /* A response nobody asked for. */
    return c->qlen == 0 ? -1 : 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;

    if (c->qlen > 0 && conn_front(c)->head_only)
        return 1; /* tells http-parser that no body follows */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    ST_UNUSED(at);
    c->resp_body += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct wload *wl = c->wl;
    struct worker *wk = wl->wk;
    struct lg_stats *st = &wl->stats;
    struct inflight *f;
    unsigned status = p->status_code;
    uint64_t now = wk->now;
    bool ok;

    if (status >= 100 && status < 200 && status != 101)
        return 0; /* interim response: the real one follows */
    if (c->qlen == 0)
        return -1;
    f = conn_front(c);
    if (f->measured && now <= wk->eng->end) {
        st->requests++;
        st->status[status < LG_STATUS_SLOTS ? status : 0]++;
        ok = wl->w->expect_status ? (int)status == wl->w->expect_status
                                  : status >= 200 && status < 300;
        if (ok) {
            st->ok++;
            st->records += f->records;
        } else {
            st->err_status++;
        }
        st->sent_body += f->body_len;
        st->recv_body += c->resp_body;
        lg_hist_record(&st->latency, now - f->start);
    }
    conn_pop(c);
    c->answered++;
    c->failures = 0;
    wk->last_progress = now;
    if (!http_should_keep_alive(p)) {
        c->close_after = true;
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct worker *wk = c->wl->wk;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[PEEK_CHUNKS];
    bool broken = false;
    uint64_t now = time_mono_ns();

    wk->now = now;
    while (!broken && !c->close_after && evbuffer_get_length(in) > 0) {
        int n = evbuffer_peek(in, -1, NULL, v, PEEK_CHUNKS);
        size_t used = 0;
        int i;

        for (i = 0; i < ST_MIN(n, PEEK_CHUNKS); i++) {
            size_t got =
                http_parser_execute(&c->parser, &parser_settings, v[i].iov_base, v[i].iov_len);

            used += got;
            if (c->close_after)
                break;
            if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || got != v[i].iov_len) {
                broken = true;
                break;
            }
        }
        evbuffer_drain(in, used);
    }
    if (c->close_after)
        conn_drop(c, DROP_CLOSED, now);
    else if (broken)
        conn_drop(c, DROP_PARSE, now);
    else
        conn_feed(c, now);
    worker_check_done(wk, now);
}

static void conn_opened(struct conn *c, uint64_t now)
{
    struct wload *wl = c->wl;

    if (c->opened_before && in_window(wl->wk->eng, now))
        wl->stats.reconnects++;
    c->opened_before = true;
    c->state = CONN_OPEN;
    c->answered = 0;
    c->connect_failures = 0;
    wl->wk->last_progress = now;
    wl->wk->ever_connected = true;
    conn_feed(c, now);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    uint64_t now = time_mono_ns();

    ST_UNUSED(bev);
    if (what & BEV_EVENT_CONNECTED) {
        conn_opened(c, now);
        worker_check_done(c->wl->wk, now);
        return;
    }
    if (c->state == CONN_CONNECTING) {
        conn_connect_failed(c, now);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !c->close_after) {
        /* A response delimited by the end of the connection completes here. */
        c->wl->wk->now = now;
        http_parser_execute(&c->parser, &parser_settings, NULL, 0);
    }
    conn_drop(c, DROP_CLOSED, now);
}

static void conn_start(struct conn *c)
{
    struct lg_workload *w = c->wl->w;
    struct worker *wk = c->wl->wk;
    uint64_t now = time_mono_ns();
    int one = 1;
    int fd;

    st_assert(c->bev == NULL && c->qlen == 0);
    c->since = now;
    c->close_after = false;
    c->answered = 0;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    fd = socket(w->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_connect_failed(c, now);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->bev = bufferevent_socket_new(wk->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        conn_connect_failed(c, now);
        return;
    }
    bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
    bufferevent_set_max_single_read(c->bev, MAX_SINGLE_READ);
    bufferevent_set_max_single_write(c->bev, MAX_SINGLE_WRITE);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_CONNECTING;
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&w->addr, (int)w->addrlen) < 0)
        conn_connect_failed(c, now);
}

static void conn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    if (!c->wl->wk->stopping)
        conn_start(c);
}

/* -------------------------------------------------------------- open loop */

static uint64_t rate_due_time(const struct wload *wl, uint64_t i)
{
    return wl->wk->eng->t0 + (uint64_t)((double)i * 1e9 / wl->rate);
}

/* A connection of wl with a free pipeline slot, or NULL. */
static struct conn *wl_free_conn(struct wload *wl)
{
    unsigned i;

    for (i = 0; i < wl->nconns; i++) {
        struct conn *c = &wl->conns[(wl->rr + i) % wl->nconns];

        if (c->state == CONN_OPEN && c->qlen < wl->w->pipeline) {
            wl->rr = (wl->rr + i + 1) % wl->nconns;
            return c;
        }
    }
    return NULL;
}

/* Sends every request that is due and has a free slot; arms the timer for the next. */
static void wl_dispatch(struct wload *wl, uint64_t now)
{
    uint64_t next;
    struct timeval tv;

    if (wl->exhausted || wl->wk->stopping)
        return;
    for (;;) {
        struct conn *c;

        next = rate_due_time(wl, wl->rate_sent);
        if (next > now)
            break;
        c = wl_free_conn(wl);
        if (!c)
            return; /* backlog: the next response or connect calls us again */
        if (!conn_issue(c, next, now))
            return;
        wl->rate_sent++;
    }
    tv.tv_sec = (time_t)((next - now) / 1000000000u);
    tv.tv_usec = (suseconds_t)((next - now) % 1000000000u / 1000u);
    evtimer_add(wl->rate_ev, &tv);
}

static void rate_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wload *wl = arg;
    struct worker *wk = wl->wk;
    uint64_t now = time_mono_ns();

    ST_UNUSED(fd);
    ST_UNUSED(what);
    wl_dispatch(wl, now);
    worker_check_done(wk, now);
}

/* ----------------------------------------------------------------- timers */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *wk = arg;
    const struct engine *eng = wk->eng;
    uint64_t timeout = eng->opts->timeout_ns;
    uint64_t now = time_mono_ns();
    bool failing = false;
    size_t i;
    unsigned j;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    if (atomic_load(&wk->eng->stop)) {
        worker_stop(wk, now);
        return;
    }
    for (i = 0; i < wk->nwl; i++) {
        struct wload *wl = &wk->wl[i];

        for (j = 0; j < wl->nconns && !wk->stopping; j++) {
            struct conn *c = &wl->conns[j];

            if (c->state == CONN_CONNECTING && now - c->since > timeout)
                conn_connect_failed(c, now);
            else if (c->state == CONN_OPEN && c->qlen > 0 && now - conn_front(c)->sent > timeout)
                conn_drop(c, DROP_TIMEOUT, now);
            if (c->connect_failures > 0)
                failing = true;
        }
    }
    /*
     * Give up when connects keep failing and either nothing ever connected
     * (a wrong address) or there is no duration to end the run (a request
     * limit that can never be met). A server that accepts and then hangs
     * is measured, as timeouts, until the end.
     */
    if (failing && now - wk->last_progress > timeout && !wk->stopping &&
        (!wk->ever_connected || eng->end == UINT64_MAX)) {
        wk->failed = true;
        worker_stop(wk, now);
    }
}

static void end_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *wk = arg;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    worker_stop(wk, wk->eng->end);
}

static struct timeval ns_to_tv(uint64_t ns)
{
    struct timeval tv;

    tv.tv_sec = (time_t)(ns / 1000000000u);
    tv.tv_usec = (suseconds_t)(ns % 1000000000u / 1000u);
    return tv;
}

/* ---------------------------------------------------------------- threads */

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct engine *eng = wk->eng;
    struct timeval tv;
    uint64_t now;
    unsigned nconns = 0;
    size_t i;
    unsigned j;

    tv = ns_to_tv(TICK_NS);
    event_add(wk->tick, &tv);
    now = time_mono_ns();
    if (eng->end != UINT64_MAX) {
        tv = ns_to_tv(eng->end > now ? eng->end - now : 0);
        event_add(wk->end_ev, &tv);
    }
    for (i = 0; i < wk->nwl; i++) {
        for (j = 0; j < wk->wl[i].nconns; j++)
            conn_start(&wk->wl[i].conns[j]);
        nconns += wk->wl[i].nconns;
    }
    /* A worker with no connections (more threads than connections) has nothing to do. */
    if (nconns > 0)
        event_base_dispatch(wk->base);
    if (!wk->stopping)
        worker_stop(wk, time_mono_ns());
    atomic_fetch_sub(&eng->running, 1);
    return NULL;
}

static void worker_init(struct worker *wk, struct engine *eng, struct lg_workload *const *w,
                        size_t n, unsigned index)
{
    const struct lg_run_opts *opts = eng->opts;
    struct event_config *cfg;
    size_t i;
    unsigned j;

    memset(wk, 0, sizeof(*wk));
    wk->eng = eng;
    wk->last_progress = eng->t0;
    cfg = event_config_new();
    if (!cfg)
        ST_BUG("cannot allocate an event_config");
    /* Open-loop timers need better than epoll's millisecond timeouts. */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_PRECISE_TIMER);
    wk->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!wk->base)
        ST_BUG("cannot create an event_base");
    wk->tick = event_new(wk->base, -1, EV_PERSIST, tick_cb, wk);
    wk->end_ev = evtimer_new(wk->base, end_cb, wk);
    wk->nwl = n;
    wk->wl = calloc_array(n, sizeof(*wk->wl));
    for (i = 0; i < n; i++) {
        struct wload *wl = &wk->wl[i];

        wl->w = w[i];
        wl->wk = wk;
        lg_stats_init(&wl->stats);
        /* Connection k goes to worker k % threads. */
        wl->nconns =
            w[i]->connections / opts->threads + (index < w[i]->connections % opts->threads ? 1 : 0);
        wl->conns = calloc_array(ST_MAX(wl->nconns, 1u), sizeof(*wl->conns));
        for (j = 0; j < wl->nconns; j++) {
            struct conn *c = &wl->conns[j];

            c->wl = wl;
            c->q = calloc_array(w[i]->pipeline, sizeof(*c->q));
            c->retry = evtimer_new(wk->base, conn_retry_cb, c);
        }
        if (w[i]->rate > 0 && wl->nconns > 0) {
            wl->rate = w[i]->rate * wl->nconns / w[i]->connections;
            wl->rate_ev = evtimer_new(wk->base, rate_cb, wl);
        }
        if (!wk->tick || !wk->end_ev || (wl->rate > 0 && !wl->rate_ev))
            ST_BUG("cannot allocate an event");
        for (j = 0; j < wl->nconns; j++)
            if (!wl->conns[j].retry)
                ST_BUG("cannot allocate an event");
    }
}

static void worker_release(struct worker *wk)
{
    size_t i;
    unsigned j;

    for (i = 0; i < wk->nwl; i++) {
        struct wload *wl = &wk->wl[i];

        for (j = 0; j < wl->nconns; j++) {
            conn_free_bev(&wl->conns[j]);
            event_free(wl->conns[j].retry);
            free(wl->conns[j].q);
        }
        free(wl->conns);
        if (wl->rate_ev)
            event_free(wl->rate_ev);
    }
    free(wk->wl);
    event_free(wk->tick);
    event_free(wk->end_ev);
    event_base_free(wk->base);
}

static enum st_status check_workloads(struct lg_workload *const *w, size_t n,
                                      const struct lg_run_opts *opts, struct err *err)
{
    size_t i;

    if (n == 0)
        return err_set(err, ST_EINVAL, "no workload");
    if (opts->threads < 1)
        return err_set(err, ST_EINVAL, "threads must be at least 1");
    if (opts->timeout_ns == 0)
        return err_set(err, ST_EINVAL, "timeout must be positive");
    for (i = 0; i < n; i++) {
        if (w[i]->connections < 1 || w[i]->pipeline < 1)
            return err_set(err, ST_EINVAL, "workload '%s': connections and pipeline must be >= 1",
                           w[i]->name);
        if (!w[i]->src || w[i]->addrlen == 0)
            return err_set(err, ST_EINVAL, "workload '%s': no source or address", w[i]->name);
        if (opts->duration_ns == 0 && w[i]->limit == 0)
            return err_set(err, ST_EINVAL,
                           "workload '%s' has no request limit and the run no duration",
                           w[i]->name);
    }
    return ST_OK;
}

/*
 * Waits for the workers, turning SIGINT/SIGTERM into the stop flag. The
 * signals are blocked in every thread, so only sigtimedwait() sees them.
 */
static bool wait_workers(struct engine *eng, const sigset_t *sigs)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
    bool interrupted = false;

    while (atomic_load(&eng->running) > 0) {
        if (sigtimedwait(sigs, NULL, &ts) > 0) {
            interrupted = true;
            atomic_store(&eng->stop, true);
        }
    }
    return interrupted;
}

enum st_status lg_engine_run(struct lg_workload *const *w, size_t n, const struct lg_run_opts *opts,
                             struct lg_run_result *res, struct err *err)
{
    struct engine eng;
    struct worker *wks;
    sigset_t sigs;
    sigset_t old;
    uint64_t last = 0;
    unsigned started = 0;
    unsigned t;
    size_t i;
    enum st_status rc;

    memset(res, 0, sizeof(*res));
    rc = check_workloads(w, n, opts, err);
    if (rc)
        return rc;
    for (i = 0; i < n; i++) {
        atomic_store(&w[i]->seq, 0);
        atomic_store(&w[i]->claimed, 0);
        lg_stats_init(&w[i]->stats);
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);

    memset(&eng, 0, sizeof(eng));
    eng.opts = opts;
    eng.t0 = time_mono_ns();
    eng.warm_end = eng.t0 + opts->warmup_ns;
    eng.end = opts->duration_ns ? eng.warm_end + opts->duration_ns : UINT64_MAX;
    atomic_store(&eng.stop, false);
    atomic_store(&eng.running, opts->threads);

    wks = calloc_array(opts->threads, sizeof(*wks));
    for (t = 0; t < opts->threads; t++)
        worker_init(&wks[t], &eng, w, n, t);
    for (t = 0; t < opts->threads; t++) {
        int e = pthread_create(&wks[t].tid, NULL, worker_main, &wks[t]);

        if (e) {
            rc = err_set_errno(err, ST_EIO, e, "cannot start thread %u", t);
            atomic_store(&eng.stop, true);
            atomic_fetch_sub(&eng.running, opts->threads - t);
            break;
        }
        started++;
    }
    res->interrupted = wait_workers(&eng, &sigs);
    for (t = 0; t < started; t++)
        pthread_join(wks[t].tid, NULL);

    for (t = 0; t < opts->threads; t++) {
        if (t < started) {
            last = ST_MAX(last, wks[t].stopped_at);
            res->failed |= wks[t].failed;
            for (i = 0; i < n; i++)
                lg_stats_merge(&w[i]->stats, &wks[t].wl[i].stats);
        }
        worker_release(&wks[t]);
    }
    free(wks);
    res->elapsed_ns = last > eng.warm_end ? last - eng.warm_end : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
