/*
 * strata-loadgen: an HTTP/1.1 load generator for strata's benchmarks.
 *
 * This file is the front end: it parses the command line into workloads
 * (a request source from lg_source.h plus connection settings), hands them
 * to the engine (lg_engine.h), and reports the merged results as text or
 * as one JSON object. The command line may describe several workloads
 * that run at the same time, separated by `--and`; options before the
 * first `--and` that concern the whole run (duration, warmup, timeout,
 * threads, json) may appear in any segment.
 *
 * Usage is documented in docs/bench.md and by --help.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lg_engine.h"
#include "lg_source.h"
#include "util/common.h"
#include "util/strbuf.h"

#define DEFAULT_CONNECTIONS 10
#define DEFAULT_DURATION_NS (10 * 1000000000ull)
#define DEFAULT_TIMEOUT_NS  (10 * 1000000000ull)
#define MAX_CONNECTIONS     100000
#define MAX_PIPELINE        4096
#define MAX_THREADS         256

enum exit_code {
    EXIT_OK = 0,     /* the run completed (errors are in the report) */
    EXIT_FAILED = 1, /* the run could not start or gave up */
    EXIT_USAGE = 2,  /* bad command line */
};

enum body_kind {
    BODY_FILE,
    BODY_DIR,
    BODY_LIST,
};

struct body_spec {
    enum body_kind kind; /* what arg names */
    const char *arg;     /* file, directory or list file */
};

/* One workload as the command line gives it. */
struct wl_args {
    const char *name;         /* --name */
    const char *url;          /* --url or the positional argument */
    const char *host;         /* --host */
    const char *port;         /* --port */
    const char *path;         /* --path */
    const char *path_list;    /* --path-list */
    const char *method;       /* -X, or GET / POST by whether there are bodies */
    const char **headers;     /* -H values */
    size_t nheaders;          /* how many */
    struct body_spec *bodies; /* body options in order */
    size_t nbodies;           /* how many */
    unsigned connections;     /* -c */
    unsigned pipeline;        /* --pipeline */
    double rate;              /* --rate */
    uint64_t limit;           /* -n */
    int expect_status;        /* --expect-status */
    uint32_t records;         /* --records-per-request, or LG_RECORDS_LINES */
    bool has_records;         /* --records-per-request was given */
};

/* Options for the whole run. */
struct run_args {
    struct lg_run_opts opts; /* engine options */
    bool duration_set;       /* -d was given */
    bool json;               /* --json */
};

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PATH,
    OPT_PATH_LIST,
    OPT_BODY_FILE,
    OPT_BODIES_DIR,
    OPT_BODY_LIST,
    OPT_PIPELINE,
    OPT_WARMUP,
    OPT_RATE,
    OPT_EXPECT,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_RECORDS,
    OPT_NAME,
};

static const struct option long_opts[] = {
    {"url", required_argument, NULL, 'u'},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"path", required_argument, NULL, OPT_PATH},
    {"path-list", required_argument, NULL, OPT_PATH_LIST},
    {"method", required_argument, NULL, 'X'},
    {"header", required_argument, NULL, 'H'},
    {"body-file", required_argument, NULL, OPT_BODY_FILE},
    {"bodies-dir", required_argument, NULL, OPT_BODIES_DIR},
    {"body-list", required_argument, NULL, OPT_BODY_LIST},
    {"connections", required_argument, NULL, 'c'},
    {"pipeline", required_argument, NULL, OPT_PIPELINE},
    {"duration", required_argument, NULL, 'd'},
    {"requests", required_argument, NULL, 'n'},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"rate", required_argument, NULL, OPT_RATE},
    {"expect-status", required_argument, NULL, OPT_EXPECT},
    {"json", no_argument, NULL, OPT_JSON},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"records-per-request", required_argument, NULL, OPT_RECORDS},
    {"threads", required_argument, NULL, 't'},
    {"name", required_argument, NULL, OPT_NAME},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char usage_text[] =
    "usage: strata-loadgen [options] [URL] [--and [options] [URL]]...\n"
    "\n"
    "Target (per workload):\n"
    "  -u, --url URL             http://host[:port]/path (or give URL as the argument)\n"
    "      --host H --port P --path /p   the same in parts (127.0.0.1, 8080, /)\n"
    "      --path-list FILE      request targets listed in FILE (one /path?query a line),\n"
    "                            round-robin, instead of the URL's path\n"
    "  -X, --method M            request method (GET, or POST when bodies are given)\n"
    "  -H, --header 'N: v'       extra request header (repeatable)\n"
    "      --body-file FILE      body of every request\n"
    "      --bodies-dir DIR      every file of DIR (sorted by name), sent round-robin\n"
    "      --body-list FILE      files listed in FILE (one path a line), round-robin\n"
    "      --records-per-request N|lines   records per body, for records/s\n"
    "                            ('lines' counts the non-empty lines of each body)\n"
    "      --name NAME           label in the report\n"
    "Load (per workload):\n"
    "  -c, --connections N       keep-alive connections (default 10)\n"
    "      --pipeline N          requests in flight per connection (default 1)\n"
    "      --rate R              open loop: R requests/s in total (default: closed loop)\n"
    "  -n, --requests N          stop after N measured requests\n"
    "      --expect-status CODE  count other statuses as errors (default: any 2xx)\n"
    "Run (global):\n"
    "  -d, --duration T          measured time (default 10s unless every workload has -n)\n"
    "      --warmup T            unmeasured time before (default 0)\n"
    "      --timeout T           per request and per connect (default 10s)\n"
    "  -t, --threads N           event-loop threads (default 1)\n"
    "      --json                print the results as one JSON object\n"
    "      --and                 start another workload that runs at the same time\n"
    "Times take a unit: 10, 10s, 250ms, 2m. Sizes: MB = 10^6 bytes.\n";

/* --------------------------------------------------------- option values */

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!*s || *s == '-')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "10", "10s", "250ms", "2m", "1.5" (seconds) into nanoseconds. */
static bool parse_time(const char *s, uint64_t *ns)
{
    char *end;
    double v;
    double scale = 1e9;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !(v >= 0.0))
        return false;
    if (strcmp(end, "ms") == 0)
        scale = 1e6;
    else if (strcmp(end, "us") == 0)
        scale = 1e3;
    else if (strcmp(end, "m") == 0)
        scale = 60e9;
    else if (strcmp(end, "h") == 0)
        scale = 3600e9;
    else if (*end && strcmp(end, "s") != 0)
        return false;
    if (v * scale > 1e18)
        return false;
    *ns = (uint64_t)(v * scale);
    return true;
}

static bool bad_value(const char *opt, const char *val)
{
    fprintf(stderr, "strata-loadgen: bad value '%s' for %s\n", val, opt);
    return false;
}

static void wl_args_init(struct wl_args *a)
{
    memset(a, 0, sizeof(*a));
    a->connections = DEFAULT_CONNECTIONS;
    a->pipeline = 1;
}

static void wl_args_release(struct wl_args *a)
{
    free(a->headers);
    free(a->bodies);
}

static void add_body_spec(struct wl_args *a, enum body_kind kind, const char *arg)
{
    a->bodies = realloc_array(a->bodies, a->nbodies + 1, sizeof(*a->bodies));
    a->bodies[a->nbodies].kind = kind;
    a->bodies[a->nbodies].arg = arg;
    a->nbodies++;
}

/* Options for the whole run; false on a bad value. */
static bool parse_run_opt(int ch, const char *arg, struct run_args *r)
{
    uint64_t v;

    switch (ch) {
    case 'd':
        if (!parse_time(arg, &r->opts.duration_ns) || r->opts.duration_ns == 0)
            return bad_value("--duration", arg);
        r->duration_set = true;
        return true;
    case OPT_WARMUP:
        return parse_time(arg, &r->opts.warmup_ns) || bad_value("--warmup", arg);
    case OPT_TIMEOUT:
        if (!parse_time(arg, &r->opts.timeout_ns) || r->opts.timeout_ns < 1000000)
            return bad_value("--timeout", arg);
        return true;
    case 't':
        if (!parse_u64(arg, 1, MAX_THREADS, &v))
            return bad_value("--threads", arg);
        r->opts.threads = (unsigned)v;
        return true;
    case OPT_JSON:
        r->json = true;
        return true;
    default:
        ST_BUG("not a run option: %d", ch);
    }
}

/* Options of one workload; false on a bad value. */
static bool parse_wl_opt(int ch, const char *arg, struct wl_args *a)
{
    uint64_t v;
    char *end;

    switch (ch) {
    case 'u':
        a->url = arg;
        return true;
    case OPT_HOST:
        a->host = arg;
        return true;
    case OPT_PORT:
        a->port = arg;
        return true;
    case OPT_PATH:
        a->path = arg;
        return true;
    case OPT_PATH_LIST:
        a->path_list = arg;
        return true;
    case 'X':
        a->method = arg;
        return true;
    case 'H':
        a->headers = realloc_array(a->headers, a->nheaders + 1, sizeof(*a->headers));
        a->headers[a->nheaders++] = arg;
        return true;
    case OPT_BODY_FILE:
        add_body_spec(a, BODY_FILE, arg);
        return true;
    case OPT_BODIES_DIR:
        add_body_spec(a, BODY_DIR, arg);
        return true;
    case OPT_BODY_LIST:
        add_body_spec(a, BODY_LIST, arg);
        return true;
    case 'c':
        if (!parse_u64(arg, 1, MAX_CONNECTIONS, &v))
            return bad_value("--connections", arg);
        a->connections = (unsigned)v;
        return true;
    case OPT_PIPELINE:
        if (!parse_u64(arg, 1, MAX_PIPELINE, &v))
            return bad_value("--pipeline", arg);
        a->pipeline = (unsigned)v;
        return true;
    case 'n':
        return parse_u64(arg, 1, UINT64_MAX, &a->limit) || bad_value("--requests", arg);
    case OPT_RATE:
        errno = 0;
        a->rate = strtod(arg, &end);
        if (errno || end == arg || *end || !(a->rate > 0.0) || a->rate > 1e9)
            return bad_value("--rate", arg);
        return true;
    case OPT_EXPECT:
        if (!parse_u64(arg, 100, 599, &v))
            return bad_value("--expect-status", arg);
        a->expect_status = (int)v;
        return true;
    case OPT_RECORDS:
        a->has_records = true;
        if (strcmp(arg, "lines") == 0) {
            a->records = LG_RECORDS_LINES;
            return true;
        }
        if (!parse_u64(arg, 0, UINT32_MAX - 1, &v))
            return bad_value("--records-per-request", arg);
        a->records = (uint32_t)v;
        return true;
    case OPT_NAME:
        a->name = arg;
        return true;
    default:
        ST_BUG("not a workload option: %d", ch);
    }
}

/*
 * Parses one segment of the command line (argv[0] is a program name).
 * Returns EXIT_OK, EXIT_USAGE, or -1 after --help.
 */
static int parse_segment(int argc, char **argv, struct wl_args *a, struct run_args *r)
{
    int ch;

    optind = 0; /* glibc: full reinitialisation for each segment */
    while ((ch = getopt_long(argc, argv, "u:X:H:c:d:n:t:h", long_opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            fputs(usage_text, stdout);
            return -1;
        case 'd':
        case 't':
        case OPT_WARMUP:
        case OPT_TIMEOUT:
        case OPT_JSON:
            if (!parse_run_opt(ch, optarg, r))
                return EXIT_USAGE;
            break;
        case '?':
            fputs(usage_text, stderr);
            return EXIT_USAGE;
        default:
            if (!parse_wl_opt(ch, optarg, a))
                return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        if (argc - optind > 1 || a->url) {
            fprintf(stderr, "strata-loadgen: unexpected argument '%s'\n", argv[optind]);
            return EXIT_USAGE;
        }
        a->url = argv[optind];
    }
    return EXIT_OK;
}

/* ------------------------------------------------------- building workloads */

static enum st_status resolve(struct lg_workload *w, const struct lg_target *t, struct err *err)
{
    struct addrinfo hints;
    struct addrinfo *res;
    int e;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    e = getaddrinfo(t->host, t->port, &hints, &res);
    if (e)
        return err_set(err, ST_EINVAL, "cannot resolve '%s': %s", t->host, gai_strerror(e));
    memcpy(&w->addr, res->ai_addr, res->ai_addrlen);
    w->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return ST_OK;
}

static enum st_status load_bodies(const struct wl_args *a, struct lg_bodies *b, struct err *err)
{
    uint32_t records = a->has_records ? a->records : 0;
    enum st_status rc = ST_OK;
    size_t i;

    for (i = 0; i < a->nbodies && rc == ST_OK; i++) {
        const struct body_spec *s = &a->bodies[i];

        if (s->kind == BODY_FILE)
            rc = lg_bodies_add_file(b, s->arg, records, err);
        else if (s->kind == BODY_DIR)
            rc = lg_bodies_add_dir(b, s->arg, records, err);
        else
            rc = lg_bodies_add_list(b, s->arg, records, err);
    }
    return rc;
}

/* Turns parsed arguments into a workload; caller frees with workload_free(). */
static enum st_status workload_build(struct lg_workload **out, const struct wl_args *a,
                                     size_t index, struct err *err)
{
    struct lg_workload *w;
    struct lg_target t;
    struct lg_bodies b = {0};
    struct lg_paths paths = {0};
    const char *method;
    enum st_status rc;

    if (!a->url && !a->host && !a->port && !a->path)
        return err_set(err, ST_EINVAL, "workload %zu: no URL (see --help)", index);
    if (a->url && (a->host || a->port || a->path))
        return err_set(err, ST_EINVAL, "give either --url or --host/--port/--path");
    rc = a->url ? lg_target_parse_url(&t, a->url, err)
                : lg_target_set(&t, a->host, a->port, a->path, err);
    if (rc)
        return rc;
    rc = load_bodies(a, &b, err);
    if (rc == ST_OK && a->path_list)
        rc = lg_paths_add_list(&paths, a->path_list, err);
    if (rc)
        goto out_release_bodies;
    w = xcalloc(1, sizeof(*w));
    rc = resolve(w, &t, err);
    if (rc)
        goto out_free_w;
    method = a->method ? a->method : b.n ? "POST" : "GET";
    rc = lg_source_new_template(&w->src, method, &t, a->headers, a->nheaders, &b, &paths, err);
    if (rc)
        goto out_free_w;
    if (a->name) {
        w->name = xstrdup(a->name);
    } else {
        struct strbuf sb = STRBUF_INIT;

        strbuf_addf(&sb, "w%zu", index);
        w->name = strbuf_detach(&sb, NULL);
    }
    w->connections = a->connections;
    w->pipeline = a->pipeline;
    w->rate = a->rate;
    w->limit = a->limit;
    w->expect_status = a->expect_status;
    *out = w;
    lg_target_release(&t);
    return ST_OK;

out_free_w:
    free(w);
out_release_bodies:
    lg_paths_release(&paths);
    lg_bodies_release(&b);
    lg_target_release(&t);
    return rc;
}

static void workload_free(struct lg_workload *w)
{
    if (!w)
        return;
    lg_source_free(w->src);
    free(w->name);
    free(w);
}

/* ---------------------------------------------------------------- report */

static double per_sec(uint64_t n, double secs)
{
    return secs > 0 ? (double)n / secs : 0.0;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static const double pcts[] = {50.0, 90.0, 99.0, 99.9};
static const char *const pct_names[] = {"p50", "p90", "p99", "p99.9"};
static const char *const pct_keys[] = {"p50", "p90", "p99", "p999"};

static void report_text_one(const struct lg_workload *w, const struct wl_args *a, double secs)
{
    const struct lg_stats *s = &w->stats;
    const struct lg_hist *h = &s->latency;
    unsigned i;

    printf("[%s] %s %s  %u connection%s, pipeline %u, ", w->name, w->src->method, w->src->url,
           w->connections, w->connections == 1 ? "" : "s", w->pipeline);
    if (w->rate > 0)
        printf("open loop at %.1f req/s\n", w->rate);
    else
        printf("closed loop\n");
    printf("  requests    %" PRIu64 "  %.1f req/s  (ok %" PRIu64 ")\n", s->requests,
           per_sec(s->requests, secs), s->ok);
    if (a->has_records)
        printf("  records     %" PRIu64 "  %.1f rec/s\n", s->records, per_sec(s->records, secs));
    printf("  errors      %" PRIu64 "  (connect %" PRIu64 ", timeout %" PRIu64 ", status %" PRIu64
           ", parse %" PRIu64 ", closed %" PRIu64 ")\n",
           lg_stats_errors(s), s->err_connect, s->err_timeout, s->err_status, s->err_parse,
           s->err_closed);
    printf("  reconnects  %" PRIu64 "\n", s->reconnects);
    if (w->rate > 0)
        printf("  backlog     %" PRIu64 " requests due but not sent at the end\n", s->backlog);
    printf("  body sent   %.2f MB/s  (%.1f MB)\n", per_sec(s->sent_body, secs) / 1e6,
           (double)s->sent_body / 1e6);
    printf("  body recv   %.2f MB/s  (%.1f MB)\n", per_sec(s->recv_body, secs) / 1e6,
           (double)s->recv_body / 1e6);
    printf("  latency ms ");
    for (i = 0; i < ST_ARRAY_SIZE(pcts); i++)
        printf(" %s %.3f", pct_names[i], ms(lg_hist_percentile(h, pcts[i])));
    printf("  max %.3f  mean %.3f\n", ms(h->count ? h->max : 0), lg_hist_mean(h) / 1e6);
    printf("  status     ");
    for (i = 1; i < LG_STATUS_SLOTS; i++)
        if (s->status[i])
            printf(" %u: %" PRIu64, i, s->status[i]);
    if (s->status[0])
        printf(" other: %" PRIu64, s->status[0]);
    printf("%s\n", s->requests ? "" : " none");
}

static void json_num(struct strbuf *sb, const char *key, double v)
{
    if (!isfinite(v))
        v = 0;
    strbuf_addf(sb, "\"%s\": %.4f, ", key, v);
}

static void json_u64(struct strbuf *sb, const char *key, uint64_t v)
{
    strbuf_addf(sb, "\"%s\": %" PRIu64 ", ", key, v);
}

static void json_str(struct strbuf *sb, const char *key, const char *v)
{
    strbuf_addf(sb, "\"%s\": ", key);
    strbuf_add_json_str(sb, v, strlen(v));
    strbuf_addstr(sb, ", ");
}

/* Drops the ", " after the last member. */
static void json_close(struct strbuf *sb, char c)
{
    if (sb->len >= 2 && sb->buf[sb->len - 2] == ',')
        strbuf_setlen(sb, sb->len - 2);
    strbuf_addch(sb, c);
}

static void report_json_one(struct strbuf *sb, const struct lg_workload *w, const struct wl_args *a,
                            double secs)
{
    const struct lg_stats *s = &w->stats;
    const struct lg_hist *h = &s->latency;
    unsigned i;

    strbuf_addch(sb, '{');
    json_str(sb, "name", w->name);
    json_str(sb, "method", w->src->method);
    json_str(sb, "url", w->src->url);
    json_u64(sb, "connections", w->connections);
    json_u64(sb, "pipeline", w->pipeline);
    json_num(sb, "rate", w->rate);
    json_u64(sb, "requests", s->requests);
    json_u64(sb, "ok", s->ok);
    json_num(sb, "requests_per_s", per_sec(s->requests, secs));
    if (a->has_records) {
        json_u64(sb, "records", s->records);
        json_num(sb, "records_per_s", per_sec(s->records, secs));
    }
    json_u64(sb, "errors", lg_stats_errors(s));
    strbuf_addf(sb,
                "\"error_kinds\": {\"connect\": %" PRIu64 ", \"timeout\": %" PRIu64
                ", \"status\": %" PRIu64 ", \"parse\": %" PRIu64 ", \"closed\": %" PRIu64 "}, ",
                s->err_connect, s->err_timeout, s->err_status, s->err_parse, s->err_closed);
    json_u64(sb, "reconnects", s->reconnects);
    json_u64(sb, "backlog", s->backlog);
    json_u64(sb, "sent_body_bytes", s->sent_body);
    json_num(sb, "sent_mb_per_s", per_sec(s->sent_body, secs) / 1e6);
    json_u64(sb, "recv_body_bytes", s->recv_body);
    json_num(sb, "recv_mb_per_s", per_sec(s->recv_body, secs) / 1e6);
    strbuf_addstr(sb, "\"latency_ms\": {");
    json_num(sb, "min", ms(h->count ? h->min : 0));
    json_num(sb, "mean", lg_hist_mean(h) / 1e6);
    for (i = 0; i < ST_ARRAY_SIZE(pcts); i++)
        json_num(sb, pct_keys[i], ms(lg_hist_percentile(h, pcts[i])));
    json_num(sb, "max", ms(h->count ? h->max : 0));
    json_close(sb, '}');
    strbuf_addstr(sb, ", \"status\": {");
    for (i = 1; i < LG_STATUS_SLOTS; i++)
        if (s->status[i])
            strbuf_addf(sb, "\"%u\": %" PRIu64 ", ", i, s->status[i]);
    if (s->status[0])
        strbuf_addf(sb, "\"other\": %" PRIu64 ", ", s->status[0]);
    json_close(sb, '}');
    strbuf_addch(sb, '}');
}

static void report(struct lg_workload *const *w, const struct wl_args *a, size_t n,
                   const struct run_args *r, const struct lg_run_result *res)
{
    double secs = (double)res->elapsed_ns / 1e9;
    size_t i;

    if (r->json) {
        struct strbuf sb = STRBUF_INIT;

        strbuf_addch(&sb, '{');
        json_str(&sb, "tool", "strata-loadgen");
        json_u64(&sb, "threads", r->opts.threads);
        json_num(&sb, "duration_s", secs);
        json_num(&sb, "warmup_s", (double)r->opts.warmup_ns / 1e9);
        strbuf_addf(&sb, "\"interrupted\": %s, ", res->interrupted ? "true" : "false");
        strbuf_addf(&sb, "\"failed\": %s, ", res->failed ? "true" : "false");
        strbuf_addstr(&sb, "\"workloads\": [");
        for (i = 0; i < n; i++) {
            if (i)
                strbuf_addstr(&sb, ", ");
            report_json_one(&sb, w[i], &a[i], secs);
        }
        strbuf_addstr(&sb, "]}\n");
        fwrite(sb.buf, 1, sb.len, stdout);
        strbuf_release(&sb);
        return;
    }
    printf("strata-loadgen: %u thread%s, %.2f s measured after %.2f s warmup%s\n", r->opts.threads,
           r->opts.threads == 1 ? "" : "s", secs, (double)r->opts.warmup_ns / 1e9,
           res->interrupted ? " (interrupted)" : "");
    for (i = 0; i < n; i++)
        report_text_one(w[i], &a[i], secs);
}

/* ------------------------------------------------------------------ main */

/* Splits argv at each "--and" and parses the pieces into a (OUT). */
static int parse_args(int argc, char **argv, struct wl_args **out, size_t *nout, struct run_args *r)
{
    struct wl_args *a = NULL;
    size_t n = 0;
    int begin = 1;
    int i;
    int rc = EXIT_OK;

    for (i = 1; i <= argc && rc == EXIT_OK; i++) {
        char **seg;
        int segc;

        if (i < argc && strcmp(argv[i], "--and") != 0)
            continue;
        segc = i - begin + 1;
        seg = calloc_array((size_t)segc + 1, sizeof(*seg));
        seg[0] = argv[0];
        memcpy(seg + 1, argv + begin, (size_t)(segc - 1) * sizeof(*seg));
        a = realloc_array(a, n + 1, sizeof(*a));
        wl_args_init(&a[n]);
        n++;
        rc = parse_segment(segc, seg, &a[n - 1], r);
        free(seg);
        begin = i + 1;
    }
    *out = a;
    *nout = n;
    return rc;
}

int main(int argc, char **argv)
{
    struct run_args r;
    struct wl_args *a = NULL;
    struct lg_workload **w = NULL;
    struct lg_run_result res;
    struct err err;
    bool all_limited = true;
    size_t n = 0;
    size_t i;
    int rc;

    memset(&r, 0, sizeof(r));
    r.opts.threads = 1;
    r.opts.timeout_ns = DEFAULT_TIMEOUT_NS;
    rc = parse_args(argc, argv, &a, &n, &r);
    if (rc != EXIT_OK) {
        rc = rc < 0 ? EXIT_OK : rc;
        goto out_free_args;
    }
    for (i = 0; i < n; i++)
        all_limited &= a[i].limit > 0;
    if (!r.duration_set && !all_limited)
        r.opts.duration_ns = DEFAULT_DURATION_NS;

    w = calloc_array(n, sizeof(*w));
    for (i = 0; i < n; i++) {
        if (workload_build(&w[i], &a[i], i, &err) != ST_OK) {
            fprintf(stderr, "strata-loadgen: %s\n", err.msg);
            rc = EXIT_USAGE;
            goto out_free_workloads;
        }
    }
    if (lg_engine_run(w, n, &r.opts, &res, &err) != ST_OK) {
        fprintf(stderr, "strata-loadgen: %s\n", err.msg);
        rc = EXIT_FAILED;
        goto out_free_workloads;
    }
    if (res.failed) {
        fprintf(stderr, "strata-loadgen: gave up: nothing connected or answered for the timeout\n");
        rc = EXIT_FAILED;
    }
    report(w, a, n, &r, &res);

out_free_workloads:
    for (i = 0; i < n && w; i++)
        workload_free(w[i]);
    free(w);
out_free_args:
    for (i = 0; i < n; i++)
        wl_args_release(&a[i]);
    free(a);
    return rc;
}
