/*
 * The server: everything one `strata serve` process owns, built by main and
 * passed down explicitly (no hidden globals; nginx's cycle). The loop
 * thread owns it; other threads only reach the parts documented as
 * thread-safe (the metrics registry).
 */
#ifndef ST_SERVER_H
#define ST_SERVER_H

#include "engine/engine.h"
#include <pthread.h>

#include "http/httpd.h"
#include "util/config.h"

struct event;
struct event_base;
struct metrics;
struct server_post;

#define SERVER_MAX_OVERRIDES 32

/* A command-line flag that overrides a config key, kept for SIGHUP. */
struct server_override {
    const char *key;   /* "storage.data_dir" */
    const char *value; /* borrowed from argv */
};

struct server_opts {
    const char *config_path; /* --config, or NULL */
    const char *ready_file;  /* --ready-file, or NULL */
    struct server_override overrides[SERVER_MAX_OVERRIDES]; /* flags */
    size_t noverrides;
};

enum server_state {
    SERVER_STARTING = 0, /* listeners not open or recovery not done */
    SERVER_READY,        /* serving reads and writes */
    SERVER_STOPPING,     /* draining after SIGTERM/SIGINT */
};

struct server {
    struct server_opts opts;                      /* how it was started */
    struct config cfg;                            /* live, changed only by SIGHUP */
    struct event_base *base;                      /* the one loop */
    httpd *http;                                  /* both listeners */
    engine *engine;                               /* storage; NULL until opened */
    struct metrics *metrics;                      /* registry, thread-safe */
    enum server_state state;                      /* readiness for /health */
    char admin_token[CONFIG_TOKEN_MAX];           /* bearer token for admin calls */
    char bound[HTTPD_NLISTENERS][CONFIG_ADDR_MAX]; /* addresses actually bound */
    uint64_t start_mono_ns;                       /* for uptime */
    int64_t start_wall_ms;                        /* for status */
    struct event *sig_term;                       /* SIGTERM */
    struct event *sig_int;                        /* SIGINT */
    struct event *sig_hup;                        /* SIGHUP */
    struct event *post_ev;                        /* runs posted completions */
    struct server_post *post_head;                /* posted, guarded by post_lock */
    struct server_post *post_tail;
    pthread_mutex_t post_lock;                    /* guards post_head/post_tail */
    int exit_code;                                /* what serve returns */
    pthread_t recovery;                           /* runs engine_open() */
    bool recovery_started;                        /* recovery not yet joined */
    enum st_status recovery_rc;                   /* its result ... */
    struct err recovery_err;                      /* ... and error */
    engine *recovered;                            /* ... and engine */
};

/*
 * Builds the configuration from defaults, the file, the environment and
 * the flags of opts, in that order. Returns ST_EINVAL with a message
 * naming the key on any bad value.
 */
enum st_status server_load_config(const struct server_opts *opts, struct config *cfg,
                                  struct err *err);

/*
 * Runs the server until it is stopped by a signal. Returns the process
 * exit code: 0 after a graceful stop, 1 when start-up fails.
 */
int server_run(const struct server_opts *opts, const struct config *cfg);

/* Seconds since start, for status answers. */
double server_uptime_s(const struct server *srv);

#endif
