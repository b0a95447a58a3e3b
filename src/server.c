/*
 * The server process: builds the configuration, opens the two listeners
 * on one libevent loop, wires the API routes, writes the ready file and
 * runs until a signal stops it.
 *
 * Start-up order: configuration (defaults < file < environment < flags),
 * logging, the data directory and the admin token, the metrics registry,
 * the HTTP layer and its routes, both listeners, readiness (the ready file
 * is written only once both listeners accept), then signals and the loop.
 *
 * Signals are handled on the loop thread through libevent signal events,
 * never in a signal handler:
 *   SIGTERM, SIGINT  graceful stop: the HTTP layer stops accepting, closes
 *                    idle connections and lets requests in progress finish
 *                    up to server.shutdown_timeout; a second signal stops
 *                    at once. The process then exits 0.
 *   SIGHUP           re-reads the file and the environment and applies the
 *                    reloadable keys (limits, timeouts, log level, ...). A
 *                    bad file keeps the running configuration.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "api/api.h"
#include "strata_version.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/strbuf.h"
#include "util/timeutil.h"

extern char **environ;

static void warn_unknown_env(const char *name)
{
    log_warn("config unknown environment variable=%s", name);
}

enum st_status server_load_config(const struct server_opts *opts, struct config *cfg,
                                  struct err *err)
{
    enum st_status rc;

    config_init(cfg);
    if (opts->config_path) {
        rc = config_load_file(cfg, opts->config_path, err);
        if (rc)
            return rc;
    }
    rc = config_apply_env(cfg, environ, warn_unknown_env, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < opts->noverrides; i++) {
        rc = config_set(cfg, opts->overrides[i].key, opts->overrides[i].value, err);
        if (rc)
            return rc;
    }
    return ST_OK;
}

double server_uptime_s(const struct server *srv)
{
    return (double)(time_mono_ns() - srv->start_mono_ns) / 1e9;
}

static void httpd_limits_from_config(const struct config *cfg, struct httpd_limits *lim)
{
    httpd_limits_default(lim);
    lim->max_header_bytes = cfg->limits.max_header_bytes;
    lim->max_body_bytes = cfg->limits.max_body_bytes;
    lim->max_inflight_body_bytes =
        (size_t)ST_MAX(cfg->limits.max_inflight_body_bytes, cfg->limits.max_body_bytes);
    lim->max_connections = cfg->server.max_connections;
    lim->header_timeout_ms = cfg->server.header_timeout_ms;
    lim->body_timeout_ms = cfg->server.body_timeout_ms;
    lim->idle_timeout_ms = cfg->server.idle_timeout_ms;
    lim->write_timeout_ms = cfg->server.write_timeout_ms;
}

/* Applies the settings that logging and HTTP read from the config. */
static void apply_runtime_settings(struct server *srv)
{
    struct httpd_limits lim;

    log_set_level((enum log_level)srv->cfg.log.level);
    if (!log_set_access_file(srv->cfg.log.access_log))
        log_error("log cannot open access log path='%s' errno=%d", srv->cfg.log.access_log, errno);
    if (srv->http) {
        httpd_limits_from_config(&srv->cfg, &lim);
        httpd_set_limits(srv->http, &lim);
    }
}

/* mkdir -p with mode for the missing parts. */
static enum st_status make_dirs(const char *path, mode_t mode, struct err *err)
{
    char tmp[CONFIG_PATH_MAX];
    struct stat st;

    if (!st_strlcpy(tmp, path, sizeof(tmp)))
        return err_set(err, ST_EINVAL, "data directory path too long: '%s'", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return err_set_errno(err, ST_EIO, errno, "cannot create directory '%s'", tmp);
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return err_set_errno(err, ST_EIO, errno, "cannot create directory '%s'", tmp);
    if (stat(tmp, &st) < 0)
        return err_set_errno(err, ST_EIO, errno, "cannot stat '%s'", tmp);
    if (!S_ISDIR(st.st_mode))
        return err_set(err, ST_EINVAL, "data directory '%s' is not a directory", tmp);
    return ST_OK;
}

/* Writes the ready file through a temporary file and rename(2). */
static enum st_status write_ready_file(const struct server *srv, const char *path, struct err *err)
{
    struct strbuf tmp = STRBUF_INIT;
    struct strbuf body = STRBUF_INIT;
    enum st_status rc = ST_OK;
    int fd;

    strbuf_addf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    strbuf_addstr(&body, "{\"ingest\": ");
    strbuf_add_json_str(&body, srv->bound[HTTPD_INGEST], strlen(srv->bound[HTTPD_INGEST]));
    strbuf_addstr(&body, ", \"query\": ");
    strbuf_add_json_str(&body, srv->bound[HTTPD_QUERY], strlen(srv->bound[HTTPD_QUERY]));
    strbuf_addf(&body, ", \"pid\": %ld}\n", (long)getpid());

    fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot create ready file '%s'", tmp.buf);
        goto out;
    }
    if (write(fd, body.buf, body.len) != (ssize_t)body.len) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot write ready file '%s'", tmp.buf);
        close(fd);
        unlink(tmp.buf);
        goto out;
    }
    close(fd);
    if (rename(tmp.buf, path) < 0) {
        rc = err_set_errno(err, ST_EIO, errno, "cannot rename ready file to '%s'", path);
        unlink(tmp.buf);
    }
out:
    strbuf_release(&tmp);
    strbuf_release(&body);
    return rc;
}

/*
 * systemd readiness notification (Type=notify): one datagram to the unix
 * socket named by $NOTIFY_SOCKET ("@" for the abstract namespace). The
 * protocol is this small, so no libsystemd dependency.
 */
static void sd_notify_state(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len;
    int fd;

    if (!path || (path[0] != '/' && path[0] != '@'))
        return;
    len = strlen(path);
    if (len >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        log_warn("systemd notify failed state='%s' errno=%d", state, errno);
    close(fd);
}

/*
 * Completions from other threads (the WAL writer) reach the loop here: a
 * mutex-protected FIFO of (fn, arg), and one libevent event made active
 * when the FIFO goes from empty to non-empty. The loop takes the whole
 * list under the lock and runs it unlocked.
 */
struct server_post {
    struct server_post *next;
    void (*fn)(void *arg);
    void *arg;
};

static void post_to_loop(void *ctx, void (*fn)(void *arg), void *arg)
{
    struct server *srv = ctx;
    struct server_post *p = xmalloc(sizeof(*p));
    bool wake;

    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&srv->post_lock);
    wake = !srv->post_head;
    if (srv->post_tail)
        srv->post_tail->next = p;
    else
        srv->post_head = p;
    srv->post_tail = p;
    pthread_mutex_unlock(&srv->post_lock);
    if (wake)
        event_active(srv->post_ev, EV_READ, 0);
}

static void on_posted(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct server_post *list;

    ST_UNUSED(fd);
    ST_UNUSED(what);
    pthread_mutex_lock(&srv->post_lock);
    list = srv->post_head;
    srv->post_head = srv->post_tail = NULL;
    pthread_mutex_unlock(&srv->post_lock);
    while (list) {
        struct server_post *next = list->next;

        list->fn(list->arg);
        free(list);
        list = next;
    }
}

static enum st_status open_engine(struct server *srv, engine **out, struct err *err)
{
    struct engine_opts eo;

    memset(&eo, 0, sizeof(eo));
    eo.data_dir = srv->cfg.storage.data_dir;
    eo.sync = srv->cfg.storage.sync == CONFIG_SYNC_ALWAYS     ? ENGINE_SYNC_ALWAYS
              : srv->cfg.storage.sync == CONFIG_SYNC_INTERVAL ? ENGINE_SYNC_INTERVAL
                                                              : ENGINE_SYNC_NEVER;
    eo.sync_interval_ms = (uint32_t)srv->cfg.storage.sync_interval_ms;
    eo.memtable_size = srv->cfg.storage.memtable_size;
    eo.idempotency_window_ms = srv->cfg.ingest.idempotency_window_ms;
    eo.idempotency_max_keys = srv->cfg.ingest.idempotency_max_keys;
    eo.max_frozen = srv->cfg.storage.max_frozen_memtables;
    eo.truncate_corrupt_wal = srv->cfg.storage.truncate_corrupt_wal;
    eo.wal_file_size = srv->cfg.storage.wal_file_size;
    eo.max_tenants = srv->cfg.limits.max_tenants;
    eo.max_tables_per_tenant = srv->cfg.limits.max_tables_per_tenant;
    eo.max_keys_per_tenant = srv->cfg.limits.max_keys_per_tenant;
    eo.max_schema_versions = srv->cfg.limits.max_schema_versions;
    eo.max_body_bytes = srv->cfg.limits.max_body_bytes;
    eo.history_retention_ms = srv->cfg.mvcc.history_retention_ms;
    eo.job_threads = srv->cfg.jobs.threads;
    eo.flush_interval_ms = (uint32_t)srv->cfg.jobs.flush_interval_ms;
    eo.compact_interval_ms = (uint32_t)srv->cfg.jobs.compaction_interval_ms;
    eo.checkpoint_interval_ms = (uint32_t)srv->cfg.jobs.checkpoint_interval_ms;
    eo.compact_fanout = srv->cfg.compaction.fanout;
    eo.compact_base_bytes = srv->cfg.compaction.base_size;
    eo.compact_max_segments = srv->cfg.compaction.max_segments;
    eo.metrics = srv->metrics;
    eo.post = post_to_loop;
    eo.post_ctx = srv;
    return engine_open(&eo, out, err);
}

/* The result of recovery, posted from its thread to the loop. */
static void on_recovered(void *arg)
{
    struct server *srv = arg;
    struct err err;

    err_clear(&err);
    pthread_join(srv->recovery, NULL);
    srv->recovery_started = false;
    if (srv->recovery_rc) {
        log_error("start-up failed: cannot open the data directory: %s", srv->recovery_err.msg);
        srv->exit_code = 1;
        event_base_loopbreak(srv->base);
        return;
    }
    srv->engine = srv->recovered;
    if (srv->state == SERVER_STOPPING)
        return;
    srv->state = SERVER_READY;
    if (srv->opts.ready_file && write_ready_file(srv, srv->opts.ready_file, &err)) {
        log_error("start-up failed: %s", err.msg);
        srv->exit_code = 1;
        event_base_loopbreak(srv->base);
        return;
    }
    log_info("ready");
    sd_notify_state("READY=1");
}

/*
 * Test hook: STRATA_TEST_RECOVERY_DELAY_MS makes recovery last at least
 * that long, so tests can watch the server while it recovers.
 */
static void test_recovery_delay(void)
{
    const char *v = getenv("STRATA_TEST_RECOVERY_DELAY_MS");
    long ms = v ? strtol(v, NULL, 10) : 0;

    if (ms > 0 && ms <= 60000) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

        log_warn("test hook: recovery delayed by %ld ms", ms);
        nanosleep(&ts, NULL);
    }
}

static void *recovery_main(void *arg)
{
    struct server *srv = arg;

    test_recovery_delay();
    err_clear(&srv->recovery_err);
    srv->recovery_rc = open_engine(srv, &srv->recovered, &srv->recovery_err);
    post_to_loop(srv, on_recovered, srv);
    return NULL;
}

static void on_drained(void *arg)
{
    struct server *srv = arg;

    log_info("http drained, stopping");
    event_base_loopexit(srv->base, NULL);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;

    ST_UNUSED(what);
    if (srv->state == SERVER_STOPPING) {
        log_warn("signal=%s again, stopping now", sig == SIGINT ? "SIGINT" : "SIGTERM");
        event_base_loopbreak(srv->base);
        return;
    }
    log_info("signal=%s graceful stop deadline_ms=%llu", sig == SIGINT ? "SIGINT" : "SIGTERM",
             (unsigned long long)srv->cfg.server.shutdown_timeout_ms);
    srv->state = SERVER_STOPPING;
    sd_notify_state("STOPPING=1");
    httpd_shutdown(srv->http, srv->cfg.server.shutdown_timeout_ms, on_drained, srv);
}

static void on_hup_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    struct config fresh;
    struct err err;
    int changed;

    ST_UNUSED(sig);
    ST_UNUSED(what);
    err_clear(&err);
    sd_notify_state("RELOADING=1");
    if (server_load_config(&srv->opts, &fresh, &err)) {
        log_error("config reload failed, keeping the running configuration: %s", err.msg);
    } else {
        changed = config_apply_reloadable(&srv->cfg, &fresh);
        apply_runtime_settings(srv);
        log_info("config reloaded changed=%d", changed);
    }
    sd_notify_state("READY=1");
}

static enum st_status open_listeners(struct server *srv, struct err *err)
{
    const char *addr[HTTPD_NLISTENERS] = {
        [HTTPD_INGEST] = srv->cfg.server.ingest_listen,
        [HTTPD_QUERY] = srv->cfg.server.query_listen,
    };
    enum st_status rc;

    for (int i = 0; i < HTTPD_NLISTENERS; i++) {
        rc = httpd_listen(srv->http, (enum httpd_listener)i, addr[i], srv->bound[i],
                          sizeof(srv->bound[i]), err);
        if (rc)
            return rc;
        log_info("listening %s=%s", httpd_listener_name((enum httpd_listener)i), srv->bound[i]);
    }
    return ST_OK;
}

static void add_signal(struct server *srv, struct event **ev, int sig, event_callback_fn fn)
{
    *ev = evsignal_new(srv->base, sig, fn, srv);
    if (!*ev || evsignal_add(*ev, NULL) < 0)
        ST_BUG("cannot install handler for signal %d", sig);
}

static void server_free(struct server *srv)
{
    if (srv->sig_term)
        event_free(srv->sig_term);
    if (srv->sig_int)
        event_free(srv->sig_int);
    if (srv->sig_hup)
        event_free(srv->sig_hup);
    if (srv->recovery_started) {
        /* Stopped during recovery: let it finish, then close what it opened. */
        pthread_join(srv->recovery, NULL);
        if (srv->recovery_rc == ST_OK)
            srv->engine = srv->recovered;
    }
    if (srv->engine) {
        struct err err;

        err_clear(&err);
        if (engine_close(srv->engine, &err))
            log_error("engine close failed: %s", err.msg);
        else
            log_info("engine closed");
    }
    /* Completions posted after the loop stopped: the engine answered them. */
    while (srv->post_head) {
        struct server_post *next = srv->post_head->next;

        free(srv->post_head);
        srv->post_head = next;
    }
    if (srv->post_ev)
        event_free(srv->post_ev);
    pthread_mutex_destroy(&srv->post_lock);
    if (srv->http)
        httpd_free(srv->http);
    if (srv->metrics)
        metrics_free(srv->metrics);
    if (srv->base)
        event_base_free(srv->base);
    log_set_access_file(NULL);
    free(srv);
}

int server_run(const struct server_opts *opts, const struct config *cfg)
{
    struct server *srv = xcalloc(1, sizeof(*srv));
    struct httpd_limits lim;
    struct err err;
    int code = 1;

    pthread_mutex_init(&srv->post_lock, NULL);
    err_clear(&err);
    srv->opts = *opts;
    srv->cfg = *cfg;
    srv->start_mono_ns = time_mono_ns();
    srv->start_wall_ms = time_wall_ms();
    apply_runtime_settings(srv);
    log_info("starting version=%s pid=%ld data_dir='%s'", STRATA_VERSION, (long)getpid(),
             srv->cfg.storage.data_dir);

    signal(SIGPIPE, SIG_IGN);
    if (evthread_use_pthreads() < 0)
        ST_BUG("libevent has no pthreads support");
    srv->base = event_base_new();
    if (!srv->base) {
        log_error("cannot create the event loop");
        goto out;
    }

    if (make_dirs(srv->cfg.storage.data_dir, 0750, &err) || api_auth_init(srv, &err)) {
        log_error("start-up failed: %s", err.msg);
        goto out;
    }

    srv->metrics = metrics_new();
    metrics_register_process(srv->metrics);
    metric_set(
        metric_series_get(metrics_gauge(srv->metrics, "strata_build_info",
                                        "Build information; the value is always 1.", "version"),
                          STRATA_VERSION),
        1);

    httpd_limits_from_config(&srv->cfg, &lim);
    srv->post_ev = event_new(srv->base, -1, EV_READ | EV_PERSIST, on_posted, srv);
    if (!srv->post_ev || event_add(srv->post_ev, NULL) < 0)
        ST_BUG("cannot create the completion event");
    srv->http = httpd_new(srv->base, srv->metrics, &lim);
    api_register(srv);
    if (open_listeners(srv, &err)) {
        log_error("start-up failed: %s", err.msg);
        goto out;
    }
    /*
     * Signals before readiness: whoever sees the ready file may signal at
     * once, and must get the graceful stop, not the default action.
     */
    add_signal(srv, &srv->sig_term, SIGTERM, on_stop_signal);
    add_signal(srv, &srv->sig_int, SIGINT, on_stop_signal);
    add_signal(srv, &srv->sig_hup, SIGHUP, on_hup_signal);
    /*
     * Recovery (WAL replay) runs on a thread while the loop serves:
     * /health/live answers and /health/ready says 503 "recovering" until
     * on_recovered() makes the server ready and writes the ready file.
     */
    if (pthread_create(&srv->recovery, NULL, recovery_main, srv) != 0)
        ST_BUG("cannot start the recovery thread");
    srv->recovery_started = true;

    event_base_dispatch(srv->base);
    log_info("stopped uptime_s=%.1f", server_uptime_s(srv));
    code = srv->exit_code;
out:
    server_free(srv);
    return code;
}
