/*
 * The strata-loadgen engine: keep-alive HTTP/1.1 connections on libevent
 * bufferevents, responses parsed with http-parser, latencies in lg_hist.
 *
 * A run drives one or more workloads at once (say, NDJSON ingest on four
 * connections and point reads at a fixed rate on eight), each with its own
 * request source, connections and results, so "query latency under
 * concurrent ingest" is two workloads in one run. Each of opts->threads
 * threads owns an event_base and a share of every workload's connections
 * (connection i goes to thread i % threads); results are merged when the
 * threads finish.
 */
#ifndef ST_BENCH_LG_ENGINE_H
#define ST_BENCH_LG_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lg_hist.h"
#include "lg_source.h"

/* Status codes are counted one by one from 100 to 599; others go to slot 0. */
#define LG_STATUS_SLOTS 600

/* Results of one workload (per thread while running, merged at the end). */
struct lg_stats {
    uint64_t requests;                /* responses received */
    uint64_t ok;                      /* of those, with the expected status */
    uint64_t records;                 /* records in requests answered ok */
    uint64_t sent_body;               /* request body bytes of answered requests */
    uint64_t recv_body;               /* response body bytes */
    uint64_t err_connect;             /* failed connection attempts */
    uint64_t err_timeout;             /* requests unanswered after the timeout */
    uint64_t err_status;              /* responses with another status */
    uint64_t err_parse;               /* malformed or unexpected responses */
    uint64_t err_closed;              /* requests lost when the server closed or reset */
    uint64_t reconnects;              /* connections opened again after one closed */
    uint64_t backlog;                 /* rate mode: requests due but not sent at the end */
    uint64_t status[LG_STATUS_SLOTS]; /* responses per status code */
    struct lg_hist latency;           /* ns from (intended) send to full response */
};

/* Empties s. */
void lg_stats_init(struct lg_stats *s);
/* Adds src into dst. */
void lg_stats_merge(struct lg_stats *dst, const struct lg_stats *src);
/* Errors of every kind. */
uint64_t lg_stats_errors(const struct lg_stats *s);

/*
 * One stream of requests. The caller fills the first block and keeps the
 * struct alive during lg_engine_run(); the engine fills `stats`.
 */
struct lg_workload {
    char *name;                   /* label in reports (owned) */
    struct lg_source *src;        /* what to send (owned) */
    struct sockaddr_storage addr; /* where to connect */
    socklen_t addrlen;            /* its length */
    unsigned connections;         /* keep-alive connections, >= 1 */
    unsigned pipeline;            /* requests in flight per connection, >= 1 */
    double rate;                  /* open loop at this many requests/s; 0 = closed loop */
    uint64_t limit;               /* measured requests to send; 0 = until the end */
    int expect_status;            /* the good status; 0 = any 2xx */

    /* Engine state shared by the threads. */
    atomic_uint_fast64_t seq;     /* next request number for the source */
    atomic_uint_fast64_t claimed; /* measured requests claimed against limit */

    /* Results. */
    struct lg_stats stats; /* merged over threads */
};

struct lg_run_opts {
    unsigned threads;     /* event loops, >= 1 */
    uint64_t warmup_ns;   /* requests sent earlier are not measured */
    uint64_t duration_ns; /* measured time after warmup; 0 = until every limit is met */
    uint64_t timeout_ns;  /* per request and per connection attempt */
};

struct lg_run_result {
    uint64_t elapsed_ns; /* measured time: from the end of warmup to the end */
    bool interrupted;    /* stopped early by SIGINT or SIGTERM */
    bool failed;         /* gave up: nothing could connect for the timeout */
};

/*
 * Runs the workloads until duration_ns after warmup, until every workload
 * reached its limit, until SIGINT/SIGTERM, or until no connection could be
 * opened for timeout_ns. A run needs a duration or a limit on every
 * workload. Blocks SIGINT, SIGTERM and ignores SIGPIPE for the process.
 */
enum st_status lg_engine_run(struct lg_workload *const *w, size_t n, const struct lg_run_opts *opts,
                             struct lg_run_result *res, struct err *err);

#endif
