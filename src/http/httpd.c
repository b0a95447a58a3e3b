/*
 * httpd: the server object: listeners, accepting, limits, shutdown and
 * the HTTP metrics. Connections themselves live in conn.c.
 *
 * Accepting. Each listener is an evconnlistener. A connection beyond
 * max_connections gets a canned 503 ("overloaded") written straight to the
 * fresh socket and is closed at once, so the refusal costs no bufferevent
 * and never delays the accepted connections. When accept() fails for lack
 * of file descriptors (EMFILE, ENFILE), the pending connection stays in
 * the kernel's backlog and the listener would fire again at once; so the
 * listeners are disabled for ACCEPT_PAUSE_MS and re-enabled by a timer,
 * with one warning per burst rather than one per attempt.
 *
 * Shutdown closes the listeners and idle connections, lets requests in
 * progress finish with "Connection: close", and calls the done callback
 * (from the loop, never from inside httpd_shutdown()) once the last
 * connection is gone or at the deadline, after force-closing the rest.
 *
 * Metrics: series are looked up once and cached: per listener at start,
 * per route and listener for the duration histogram, and requests_total in
 * a small hash keyed by (route, listener, method, code). Unmatched
 * requests count under route="unmatched" and unknown methods under
 * method="OTHER", so label cardinality stays bounded.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "http/http_int.h"
#include "util/log.h"
#include "util/metrics.h"

#define ACCEPT_PAUSE_MS 100
#define LISTEN_BACKLOG  1024
#define LINGER_MS       1000

void httpd_limits_default(struct httpd_limits *lim)
{
    lim->max_header_bytes = 16 * 1024;
    lim->max_body_bytes = 64 * 1024 * 1024;
    lim->max_connections = 1000;
    lim->header_timeout_ms = 10 * 1000;
    lim->body_timeout_ms = 60 * 1000;
    lim->idle_timeout_ms = 60 * 1000;
    lim->write_timeout_ms = 60 * 1000;
    lim->stream_high_water = 1024 * 1024;
    lim->max_inflight_body_bytes = 1024u * 1024 * 1024;
}

static struct timeval ms_to_tv(uint64_t ms)
{
    struct timeval tv;

    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return tv;
}

/* A common timeout for ms (O(1) to add), or NULL for "no timeout". */
static const struct timeval *common_timeout(httpd *h, struct timeval *tv, uint64_t ms)
{
    const struct timeval *ct;

    *tv = ms_to_tv(ms);
    if (!ms)
        return NULL;
    ct = event_base_init_common_timeout(h->base, tv);
    return ct ? ct : tv;
}

static void setup_timeouts(httpd *h)
{
    h->ct_header = common_timeout(h, &h->tv_header, h->lim.header_timeout_ms);
    h->ct_body = common_timeout(h, &h->tv_body, h->lim.body_timeout_ms);
    h->ct_idle = common_timeout(h, &h->tv_idle, h->lim.idle_timeout_ms);
    h->ct_linger = common_timeout(h, &h->tv_linger, LINGER_MS);
    h->tv_write = ms_to_tv(h->lim.write_timeout_ms);
}

/* ------------------------------------------------------------------ */
/* Metrics */

static const char *method_label(unsigned method)
{
    switch (method) {
    case HTTPD_M_GET:
        return "GET";
    case HTTPD_M_HEAD:
        return "HEAD";
    case HTTPD_M_POST:
        return "POST";
    case HTTPD_M_PUT:
        return "PUT";
    case HTTPD_M_DELETE:
        return "DELETE";
    case HTTPD_M_PATCH:
        return "PATCH";
    case HTTPD_M_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

static void setup_metrics(httpd *h)
{
    struct metric *open;
    struct metric *accepted;
    struct metric *refused;
    struct metric *reqb;
    struct metric *respb;

    if (!h->m)
        return;
    h->f_requests = metrics_counter(h->m, "strata_http_requests_total",
                                    "HTTP responses by listener, route, method and status code",
                                    "listener,route,method,code");
    h->f_duration = metrics_histogram(h->m, "strata_http_request_duration_seconds",
                                      "Time from the first byte of a request to its response "
                                      "being queued",
                                      "listener,route", NULL, 0);
    open = metrics_gauge(h->m, "strata_http_connections_open", "Open HTTP connections", "listener");
    accepted = metrics_counter(h->m, "strata_http_connections_accepted_total",
                               "HTTP connections accepted", "listener");
    refused = metrics_counter(h->m, "strata_http_connections_refused_total",
                              "HTTP connections refused (max_connections) or not accepted "
                              "for lack of file descriptors (fd_limit)",
                              "listener,reason");
    reqb = metrics_counter(h->m, "strata_http_request_bytes_total", "Bytes of HTTP requests read",
                           "listener");
    respb = metrics_counter(h->m, "strata_http_response_bytes_total",
                            "Bytes of HTTP responses queued", "listener");
    for (unsigned l = 0; l < HTTPD_NLISTENERS; l++) {
        const char *name = httpd_listener_name((enum httpd_listener)l);
        struct httpd_lmetrics *lm = &h->lm[l];

        lm->conn_open = metric_series_get(open, name);
        lm->accepted = metric_series_get(accepted, name);
        lm->refused_max = metric_series_get(refused, name, "max_connections");
        lm->refused_fd = metric_series_get(refused, name, "fd_limit");
        lm->req_bytes = metric_series_get(reqb, name);
        lm->resp_bytes = metric_series_get(respb, name);
        lm->dur_unmatched = metric_series_get(h->f_duration, name, "unmatched");
    }
}

static struct metric_series *duration_series(httpd *h, enum httpd_listener l,
                                             const struct route *rt)
{
    size_t idx;

    if (!rt)
        return h->lm[l].dur_unmatched;
    idx = rt->index * HTTPD_NLISTENERS + l;
    if (idx >= h->route_dur_len) {
        size_t n = (h->router.nroutes + 1) * HTTPD_NLISTENERS;

        h->route_dur = realloc_array(h->route_dur, n, sizeof(*h->route_dur));
        memset(h->route_dur + h->route_dur_len, 0, (n - h->route_dur_len) * sizeof(*h->route_dur));
        h->route_dur_len = n;
    }
    if (!h->route_dur[idx])
        h->route_dur[idx] = metric_series_get(h->f_duration, httpd_listener_name(l), rt->name);
    return h->route_dur[idx];
}

static struct metric_series *requests_series(httpd *h, enum httpd_listener l,
                                             const struct route *rt, unsigned method, int status)
{
    unsigned mbit = (unsigned)__builtin_ctz(method ? method : HTTPD_M_OTHER);
    uint32_t key;
    uint32_t slot;
    char code[12];

    if (status < 0 || status > 999)
        status = 999;
    key = ((uint32_t)(rt ? rt->index + 1 : 0) << 16) | ((uint32_t)l << 14) | (mbit << 10) |
          (uint32_t)status;
    key |= 0x80000000u; /* never 0 */
    slot = (key * 2654435761u) >> 23;
    for (unsigned probe = 0; probe < 8; probe++) {
        struct httpd_rcache_ent *e = &h->rcache[(slot + probe) % HTTPD_RCACHE_SIZE];

        if (e->key == key)
            return e->s;
        if (!e->key) {
            snprintf(code, sizeof(code), "%d", status);
            e->s = metric_series_get(h->f_requests, httpd_listener_name(l),
                                     rt ? rt->name : "unmatched", method_label(method), code);
            e->key = key;
            return e->s;
        }
    }
    /* The neighbourhood is full: look it up without caching. */
    snprintf(code, sizeof(code), "%d", status);
    return metric_series_get(h->f_requests, httpd_listener_name(l), rt ? rt->name : "unmatched",
                             method_label(method), code);
}

void httpd__count_request(httpd *h, enum httpd_listener l, const struct route *rt, unsigned method,
                          int status, double seconds)
{
    if (!h->m)
        return;
    metric_inc(requests_series(h, l, rt, method, status));
    metric_observe(duration_series(h, l, rt), seconds);
}

/* ------------------------------------------------------------------ */
/* Date */

const char *httpd__date(httpd *h)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct timeval tv;
    struct tm tm;

    event_base_gettimeofday_cached(h->base, &tv);
    if (tv.tv_sec != h->date_sec || !h->date[0]) {
        h->date_sec = tv.tv_sec;
        gmtime_r(&h->date_sec, &tm);
        snprintf(h->date, sizeof(h->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
    }
    return h->date;
}

/* ------------------------------------------------------------------ */
/* Accepting */

/* Answers 503 overloaded on a fresh socket and closes it. */
static void refuse(httpd *h, enum httpd_listener which, evutil_socket_t fd)
{
    static const char body[] =
        "{\"error\":{\"code\":\"overloaded\",\"message\":\"too many open connections\"}}";
    char buf[512];
    char junk[4096];
    int n;

    n = snprintf(buf, sizeof(buf),
                 "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\nRetry-After: 1\r\n"
                 "Connection: close\r\n\r\n%s",
                 httpd__date(h), sizeof(body) - 1, body);
    if (send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("http refuse send failed error=%s", strerror(errno));
    /* Read what already arrived, so close() sends FIN rather than RST. */
    while (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    shutdown(fd, SHUT_WR);
    evutil_closesocket(fd);
    if (h->lm[which].refused_max)
        metric_inc(h->lm[which].refused_max);
    log_debug("http conn refused listener=%s reason=max_connections open=%u",
              httpd_listener_name(which), h->nconns);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct httpd_listen_slot *slot = arg;
    httpd *h = slot->h;

    ST_UNUSED(lev);
    h->fd_limit_logged = false;
    if (h->shutting_down) {
        evutil_closesocket(fd);
        return;
    }
    if (h->nconns >= h->lim.max_connections) {
        refuse(h, slot->which, fd);
        return;
    }
    h->nconns++;
    if (h->lm[slot->which].conn_open) {
        metric_gauge_add(h->lm[slot->which].conn_open, 1);
        metric_inc(h->lm[slot->which].accepted);
    }
    httpd__conn_new(h, slot->which, fd, sa, salen);
}

static void set_listening(httpd *h, bool on)
{
    for (unsigned l = 0; l < HTTPD_NLISTENERS; l++) {
        if (!h->listeners[l].lev)
            continue;
        if (on)
            evconnlistener_enable(h->listeners[l].lev);
        else
            evconnlistener_disable(h->listeners[l].lev);
    }
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
    struct httpd_listen_slot *slot = arg;
    httpd *h = slot->h;
    int e = EVUTIL_SOCKET_ERROR();
    struct timeval tv = ms_to_tv(ACCEPT_PAUSE_MS);

    ST_UNUSED(lev);
    if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
        log_warn("http accept failed listener=%s error=%s", httpd_listener_name(slot->which),
                 strerror(e));
        return;
    }
    h->accept_fd_errors++;
    if (h->lm[slot->which].refused_fd)
        metric_inc(h->lm[slot->which].refused_fd);
    if (!h->fd_limit_logged) {
        log_warn("http accept paused listener=%s reason=fd_limit error=%s open=%u pause_ms=%d",
                 httpd_listener_name(slot->which), strerror(e), h->nconns, ACCEPT_PAUSE_MS);
        h->fd_limit_logged = true;
    }
    set_listening(h, false);
    h->accept_paused = true;
    evtimer_add(h->accept_retry, &tv);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    httpd *h = arg;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    h->accept_paused = false;
    if (!h->shutting_down)
        set_listening(h, true);
}

void httpd__conn_gone(httpd *h, enum httpd_listener l)
{
    st_assert(h->nconns > 0);
    h->nconns--;
    if (h->lm[l].conn_open)
        metric_gauge_add(h->lm[l].conn_open, -1);
    if (h->shutting_down && h->nconns == 0)
        event_active(h->done_ev, EV_TIMEOUT, 0);
}

/* Splits "host:port", "[v6]:port" or ":port" (host is "" for any). */
static bool split_hostport(const char *hp, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    size_t hl;

    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');

        if (!close || close[1] != ':')
            return false;
        hl = (size_t)(close - hp - 1);
        if (hl >= hostlen)
            return false;
        memcpy(host, hp + 1, hl);
        host[hl] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon)
            return false;
        hl = (size_t)(colon - hp);
        if (hl >= hostlen)
            return false;
        memcpy(host, hp, hl);
        host[hl] = '\0';
    }
    if (!colon[1] || !st_strlcpy(port, colon + 1, portlen))
        return false;
    for (const char *p = port; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
    }
    return true;
}

static void format_addr(char *buf, size_t len, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

        evutil_inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

        evutil_inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
    }
}

enum st_status httpd_listen(httpd *h, enum httpd_listener which, const char *hostport, char *bound,
                            size_t boundlen, struct err *err)
{
    struct httpd_listen_slot *slot;
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char host[256];
    char port[16];
    char addr[INET6_ADDRSTRLEN + 16];
    int rc;
    int e;

    if ((unsigned)which >= HTTPD_NLISTENERS)
        return err_set(err, ST_EINVAL, "unknown listener %d", (int)which);
    slot = &h->listeners[which];
    if (slot->lev)
        return err_set(err, ST_EEXIST, "listener %s is already listening",
                       httpd_listener_name(which));
    if (h->shutting_down)
        return err_set(err, ST_ESHUTDOWN, "server is shutting down");
    if (!split_hostport(hostport, host, sizeof(host), port, sizeof(port)))
        return err_set(err, ST_EINVAL, "invalid listen address '%s'", hostport);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, &res);
    if (rc)
        return err_set(err, ST_EINVAL, "cannot resolve listen address '%s': %s", hostport,
                       gai_strerror(rc));

    slot->h = h;
    slot->which = which;
    slot->lev = evconnlistener_new_bind(
        h->base, accept_cb, slot, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        LISTEN_BACKLOG, res->ai_addr, (int)res->ai_addrlen);
    e = errno;
    freeaddrinfo(res);
    if (!slot->lev)
        return err_set_errno(err, ST_EIO, e, "cannot listen on '%s'", hostport);
    evconnlistener_set_error_cb(slot->lev, accept_error_cb);
    if (h->accept_paused)
        evconnlistener_disable(slot->lev);

    if (getsockname(evconnlistener_get_fd(slot->lev), (struct sockaddr *)&ss, &sslen) == 0)
        format_addr(addr, sizeof(addr), (const struct sockaddr *)&ss);
    else
        st_strlcpy(addr, hostport, sizeof(addr));
    if (bound && boundlen)
        st_strlcpy(bound, addr, boundlen);
    log_debug("http listening listener=%s addr=%s", httpd_listener_name(which), addr);
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Shutdown */

static void close_listeners(httpd *h)
{
    for (unsigned l = 0; l < HTTPD_NLISTENERS; l++) {
        if (h->listeners[l].lev) {
            evconnlistener_free(h->listeners[l].lev);
            h->listeners[l].lev = NULL;
        }
    }
    event_del(h->accept_retry);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    httpd *h = arg;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    if (h->done_called)
        return;
    h->done_called = true;
    event_del(h->shutdown_deadline);
    log_info("http shutdown complete");
    if (h->done_fn)
        h->done_fn(h->done_arg);
}

static void close_all(httpd *h, const char *reason)
{
    struct conn *c;

    /* From the head each time: an abort callback may close others. */
    while ((c = h->conns)) {
        httpd__conn_close(c, reason);
        if (h->conns == c)
            break; /* in its own callback; it goes when that returns */
    }
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    httpd *h = arg;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    log_warn("http shutdown deadline passed open=%u", h->nconns);
    close_all(h, "shutdown_deadline");
    event_active(h->done_ev, EV_TIMEOUT, 0);
}

void httpd_shutdown(httpd *h, uint64_t deadline_ms, httpd_cb_fn done, void *arg)
{
    struct timeval tv = ms_to_tv(deadline_ms);
    struct conn *c;

    if (h->shutting_down)
        return;
    h->shutting_down = true;
    h->done_fn = done;
    h->done_arg = arg;
    close_listeners(h);
    log_info("http shutdown open=%u deadline_ms=%llu", h->nconns, (unsigned long long)deadline_ms);
    c = h->conns;
    while (c) {
        struct conn *next = httpd__conn_next(c);

        httpd__conn_drain(c);
        c = next;
    }
    if (h->nconns == 0)
        event_active(h->done_ev, EV_TIMEOUT, 0);
    else
        evtimer_add(h->shutdown_deadline, &tv);
}

unsigned httpd_open_connections(const httpd *h)
{
    return h->nconns;
}

/* ------------------------------------------------------------------ */
/* Life cycle */

httpd *httpd_new(struct event_base *base, struct metrics *m, const struct httpd_limits *lim)
{
    httpd *h = xcalloc(1, sizeof(*h));

    h->base = base;
    h->m = m;
    if (lim)
        h->lim = *lim;
    else
        httpd_limits_default(&h->lim);
    h->pool.inflight_max = h->lim.max_inflight_body_bytes;
    httpd__router_init(&h->router);
    h->accept_retry = evtimer_new(base, accept_retry_cb, h);
    h->shutdown_deadline = evtimer_new(base, deadline_cb, h);
    h->done_ev = event_new(base, -1, 0, done_cb, h);
    if (!h->accept_retry || !h->shutdown_deadline || !h->done_ev)
        ST_BUG("cannot allocate httpd events");
    setup_timeouts(h);
    setup_metrics(h);
    return h;
}

void httpd_free(httpd *h)
{
    if (!h)
        return;
    close_listeners(h);
    close_all(h, "server_freed");
    event_free(h->accept_retry);
    event_free(h->shutdown_deadline);
    event_free(h->done_ev);
    httpd__router_release(&h->router);
    httpd__pool_release(&h->pool);
    free(h->route_dur);
    free(h);
}

void httpd_set_limits(httpd *h, const struct httpd_limits *lim)
{
    h->lim = *lim;
    h->pool.inflight_max = lim->max_inflight_body_bytes;
    h->lim_gen++;
    setup_timeouts(h);
}

void httpd_route(httpd *h, unsigned listeners, unsigned methods, const char *pattern,
                 const char *name, httpd_handler_fn fn, void *arg)
{
    httpd__router_add(&h->router, listeners, methods, pattern, name, fn, arg);
}
