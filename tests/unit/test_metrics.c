/*
 * Unit tests for the metrics registry (src/util/metrics.c): the exact text
 * of each metric type with and without labels, escaping, number spelling,
 * histogram buckets, re-declaration, the bugs that must abort, exact sums
 * under concurrent updates, the process collector, and (when promtool is
 * installed) that Prometheus's own checker accepts the output.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/metrics.h"
#include "util/strbuf.h"

/* Formats m into a fresh string; the caller frees it. */
static char *format(struct metrics *m)
{
    struct strbuf sb = STRBUF_INIT;

    metrics_format(m, &sb);
    return strbuf_detach(&sb, NULL);
}

/* The value on the line that starts with prefix (name and labels plus ' '). */
static double line_value(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    const char *p = text;

    while (p && *p) {
        if (!strncmp(p, prefix, n))
            return strtod(p + n, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    ck_abort_msg("no line starting with '%s' in:\n%s", prefix, text);
    return 0;
}

static size_t count_substr(const char *text, const char *needle)
{
    size_t n = 0;

    while ((text = strstr(text, needle))) {
        n++;
        text += strlen(needle);
    }
    return n;
}

START_TEST(test_counter_no_labels)
{
    struct metrics *m = metrics_new();
    struct metric *f = metrics_counter(m, "st_requests_total", "Requests served.", NULL);
    struct metric_series *s = metric_series_get(f);
    char *out;

    out = format(m);
    ck_assert_str_eq(out, "# HELP st_requests_total Requests served.\n"
                          "# TYPE st_requests_total counter\n"
                          "st_requests_total 0\n");
    free(out);

    metric_inc(s);
    metric_inc(s);
    metric_add(s, 3);
    ck_assert(metric_value(s) == 5.0);
    ck_assert_ptr_eq(metric_series_getv(f, NULL, 0), s);
    out = format(m);
    ck_assert_str_eq(out, "# HELP st_requests_total Requests served.\n"
                          "# TYPE st_requests_total counter\n"
                          "st_requests_total 5\n");
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_counter_labels_sorted)
{
    struct metrics *m = metrics_new();
    struct metric *f =
        metrics_counter(m, "http_requests_total", "HTTP requests.", "listener, route,code");
    struct metric_series *a = metric_series_get(f, "query", "/v1/x", "200");
    struct metric_series *b = metric_series_get(f, "ingest", "/v1/y", "404");
    const char *vals[] = {"query", "/v1/x", "200"};
    char *out;

    metric_inc(a);
    metric_inc(a);
    metric_inc(b);
    ck_assert_ptr_eq(metric_series_get(f, "query", "/v1/x", "200"), a);
    ck_assert_ptr_eq(metric_series_getv(f, vals, 3), a);
    ck_assert_ptr_ne(metric_series_get(f, "query", "/v1/x", "201"), a);
    out = format(m);
    ck_assert_str_eq(out,
                     "# HELP http_requests_total HTTP requests.\n"
                     "# TYPE http_requests_total counter\n"
                     "http_requests_total{listener=\"ingest\",route=\"/v1/y\",code=\"404\"} 1\n"
                     "http_requests_total{listener=\"query\",route=\"/v1/x\",code=\"200\"} 2\n"
                     "http_requests_total{listener=\"query\",route=\"/v1/x\",code=\"201\"} 0\n");
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_escaping)
{
    struct metrics *m = metrics_new();
    struct metric *f =
        metrics_gauge(m, "esc", "Line one\nline two with back\\slash and \"quotes\".", "v");
    char *out;

    metric_set(metric_series_get(f, "a\\b\"c\nd"), 1);
    out = format(m);
    ck_assert_str_eq(out, "# HELP esc Line one\\nline two with back\\\\slash and \"quotes\".\n"
                          "# TYPE esc gauge\n"
                          "esc{v=\"a\\\\b\\\"c\\nd\"} 1\n");
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_invalid_utf8_label)
{
    struct metrics *m = metrics_new();
    struct metric *f = metrics_counter(m, "u_total", "U.", "tenant");
    struct metric_series *bad = metric_series_get(f, "x\xffy");
    char *out;

    /* The bad byte becomes U+FFFD, so both spellings are one series. */
    ck_assert_ptr_eq(metric_series_get(f, "x\xef\xbf\xbdy"), bad);
    ck_assert_ptr_ne(metric_series_get(f, "x\xc3\xa9y"), bad);
    out = format(m);
    ck_assert_ptr_nonnull(strstr(out, "u_total{tenant=\"x\xef\xbf\xbdy\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(out, "u_total{tenant=\"x\xc3\xa9y\"} 0\n"));
    ck_assert_ptr_null(strstr(out, "\xff"));
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_gauge_values)
{
    static const struct {
        const char *label;
        double v;
        const char *text;
    } cases[] = {
        {"a", -2.5, "-2.5"},
        {"b", 0.1, "0.1"},
        {"c", 1e20, "1e+20"},
        {"d", NAN, "NaN"},
        {"e", INFINITY, "+Inf"},
        {"f", -INFINITY, "-Inf"},
        {"g", 123456789012.0, "123456789012"},
        {"h", 1e-05, "1e-05"},
        {"i", -0.0, "0"},
        {"j", 1.0 / 3.0, "0.3333333333333333"},
        {"k", -7, "-7"},
        {"l", 0.1 + 0.2, "0.30000000000000004"},
    };
    struct metrics *m = metrics_new();
    struct metric *f = metrics_gauge(m, "g", "", "k");
    struct metric_series *s;
    char *out;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        metric_set(metric_series_get(f, cases[i].label), cases[i].v);
    out = format(m);
    /* No help text: no HELP line. */
    ck_assert_ptr_null(strstr(out, "# HELP"));
    ck_assert(!strncmp(out, "# TYPE g gauge\n", 15));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char line[128];

        snprintf(line, sizeof(line), "\ng{k=\"%s\"} %s\n", cases[i].label, cases[i].text);
        ck_assert_msg(strstr(out, line), "missing %s in:\n%s", line + 1, out);
    }
    free(out);

    s = metric_series_get(f, "a");
    metric_set(s, 10);
    metric_gauge_add(s, -3.5);
    metric_inc(s);
    ck_assert(metric_value(s) == 7.5);
    metrics_free(m);
}
END_TEST

START_TEST(test_histogram)
{
    static const double bounds[] = {0.125, 1, 8};
    struct metrics *m = metrics_new();
    struct metric *f = metrics_histogram(m, "lat_seconds", "Latency.", NULL, bounds, 3);
    struct metric *g = metrics_histogram(m, "op_seconds", "Op latency.", "op", bounds, 3);
    struct metric_series *s = metric_series_get(f);
    char *out;

    metric_observe(s, 0.0625);
    metric_observe(s, 0.125); /* a bound is inclusive */
    metric_observe(s, 0.5);
    metric_observe(s, 4);
    metric_observe(s, 64);
    ck_assert_uint_eq(metric_histogram_count(s), 5);
    ck_assert(metric_histogram_sum(s) == 68.6875);
    metric_observe(metric_series_get(g, "put"), 2);
    metric_series_get(g, "get");
    out = format(m);
    ck_assert_str_eq(out, "# HELP lat_seconds Latency.\n"
                          "# TYPE lat_seconds histogram\n"
                          "lat_seconds_bucket{le=\"0.125\"} 2\n"
                          "lat_seconds_bucket{le=\"1\"} 3\n"
                          "lat_seconds_bucket{le=\"8\"} 4\n"
                          "lat_seconds_bucket{le=\"+Inf\"} 5\n"
                          "lat_seconds_sum 68.6875\n"
                          "lat_seconds_count 5\n"
                          "# HELP op_seconds Op latency.\n"
                          "# TYPE op_seconds histogram\n"
                          "op_seconds_bucket{op=\"get\",le=\"0.125\"} 0\n"
                          "op_seconds_bucket{op=\"get\",le=\"1\"} 0\n"
                          "op_seconds_bucket{op=\"get\",le=\"8\"} 0\n"
                          "op_seconds_bucket{op=\"get\",le=\"+Inf\"} 0\n"
                          "op_seconds_sum{op=\"get\"} 0\n"
                          "op_seconds_count{op=\"get\"} 0\n"
                          "op_seconds_bucket{op=\"put\",le=\"0.125\"} 0\n"
                          "op_seconds_bucket{op=\"put\",le=\"1\"} 0\n"
                          "op_seconds_bucket{op=\"put\",le=\"8\"} 1\n"
                          "op_seconds_bucket{op=\"put\",le=\"+Inf\"} 1\n"
                          "op_seconds_sum{op=\"put\"} 2\n"
                          "op_seconds_count{op=\"put\"} 1\n");
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_histogram_default_buckets)
{
    static const char *const les[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                      "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                      "1",      "2.5",     "5",      "10",    "+Inf"};
    static const double with_inf[] = {1, INFINITY};
    struct metrics *m = metrics_new();
    struct metric *f = metrics_histogram(m, "d_seconds", "D.", NULL, NULL, 0);
    struct metric *g = metrics_histogram(m, "i_seconds", "I.", NULL, with_inf, 2);
    char *out;
    size_t i;

    ck_assert_uint_eq(metrics_default_nbuckets, 16);
    metric_observe(metric_series_get(f), 0.003);
    metric_observe(metric_series_get(f), 100);
    metric_observe(metric_series_get(g), 0.5);
    out = format(m);
    for (i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
        char line[128];

        snprintf(line, sizeof(line), "d_seconds_bucket{le=\"%s\"} %d\n", les[i],
                 i < 5    ? 0
                 : i < 16 ? 1
                          : 2);
        ck_assert_msg(strstr(out, line), "missing %s in:\n%s", line, out);
    }
    ck_assert_uint_eq(count_substr(out, "d_seconds_bucket"), 17);
    /* An explicit trailing +Inf is the implicit one: it appears once. */
    ck_assert_uint_eq(count_substr(out, "i_seconds_bucket"), 2);
    ck_assert_ptr_nonnull(strstr(out, "i_seconds_bucket{le=\"1\"} 1\n"
                                      "i_seconds_bucket{le=\"+Inf\"} 1\n"));
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_redeclare_and_order)
{
    struct metrics *m = metrics_new();
    struct metric *z = metrics_gauge(m, "zeta", "Z.", NULL);
    struct metric *c = metrics_counter(m, "alpha_total", "A.", "x,y");
    struct metric *h = metrics_histogram(m, "mid_seconds", "M.", "x", NULL, 0);
    char *out;

    ck_assert_ptr_eq(metrics_gauge(m, "zeta", "Z.", NULL), z);
    ck_assert_ptr_eq(metrics_counter(m, "alpha_total", "A.", "x, y"), c);
    ck_assert_ptr_eq(metrics_histogram(m, "mid_seconds", "M.", "x", metrics_default_buckets,
                                       metrics_default_nbuckets),
                     h);
    metric_set(metric_series_get(z), 2);
    out = format(m);
    /* Sorted by name; a labelled family with no series has no samples. */
    ck_assert_str_eq(out, "# HELP alpha_total A.\n"
                          "# TYPE alpha_total counter\n"
                          "# HELP mid_seconds M.\n"
                          "# TYPE mid_seconds histogram\n"
                          "# HELP zeta Z.\n"
                          "# TYPE zeta gauge\n"
                          "zeta 2\n");
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_many_series)
{
    struct metrics *m = metrics_new();
    struct metric *f = metrics_counter(m, "many_total", "Many.", "a,b");
    struct metric_series *s[1000];
    char *out;
    const char *p;
    int i;

    for (i = 0; i < 1000; i++) {
        char a[16];

        snprintf(a, sizeof(a), "v%04d", i);
        s[i] = metric_series_get(f, a, "b");
        metric_add(s[i], i);
    }
    for (i = 0; i < 1000; i++) {
        char a[16];

        snprintf(a, sizeof(a), "v%04d", i);
        ck_assert_ptr_eq(metric_series_get(f, a, "b"), s[i]);
        ck_assert(metric_value(s[i]) == i);
    }
    out = format(m);
    ck_assert_uint_eq(count_substr(out, "\nmany_total{"), 1000);
    p = out;
    for (i = 0; i < 1000; i++) {
        char line[64];

        snprintf(line, sizeof(line), "many_total{a=\"v%04d\",b=\"b\"} %d\n", i, i);
        p = strstr(p, line);
        ck_assert_msg(p, "missing or out of order: %s", line);
    }
    free(out);
    metrics_free(m);
}
END_TEST

/* --- Concurrency ---------------------------------------------------------- */

#define THREADS    4
#define ITERATIONS 20000
#define SHARED     300

struct worker {
    struct metric *labelled;      /* family the workers share series of */
    struct metric_series *total;  /* one counter all workers increment */
    struct metric_series *hist;   /* one histogram all workers observe */
    struct metric_series *gauge;  /* one gauge all workers add to */
    struct metric_series **found; /* OUT: the series each name resolved to */
};

static void *work(void *arg)
{
    struct worker *w = arg;
    int i;

    for (i = 0; i < ITERATIONS; i++) {
        metric_inc(w->total);
        metric_observe(w->hist, 0.5);
        metric_gauge_add(w->gauge, 0.25);
        if (i < SHARED) {
            char name[16];

            snprintf(name, sizeof(name), "k%d", i);
            w->found[i] = metric_series_get(w->labelled, name);
            metric_inc(w->found[i]);
        }
    }
    return NULL;
}

static void *scrape(void *arg)
{
    struct metrics *m = arg;
    int i;

    for (i = 0; i < 20; i++)
        free(format(m));
    return NULL;
}

START_TEST(test_concurrent_updates)
{
    struct metrics *m = metrics_new();
    struct metric_series *found[THREADS][SHARED];
    struct worker w[THREADS];
    pthread_t tid[THREADS];
    pthread_t scraper;
    struct metric *labelled = metrics_counter(m, "shared_total", "S.", "k");
    struct metric_series *total = metric_series_get(metrics_counter(m, "t_total", "T.", NULL));
    struct metric_series *hist =
        metric_series_get(metrics_histogram(m, "h_seconds", "H.", NULL, NULL, 0));
    struct metric_series *gauge = metric_series_get(metrics_gauge(m, "g", "G.", NULL));
    char *out;
    int i;
    int t;

    for (t = 0; t < THREADS; t++) {
        w[t] = (struct worker){labelled, total, hist, gauge, found[t]};
        ck_assert_int_eq(pthread_create(&tid[t], NULL, work, &w[t]), 0);
    }
    ck_assert_int_eq(pthread_create(&scraper, NULL, scrape, m), 0);
    for (t = 0; t < THREADS; t++)
        pthread_join(tid[t], NULL);
    pthread_join(scraper, NULL);

    ck_assert(metric_value(total) == THREADS * ITERATIONS);
    ck_assert_uint_eq(metric_histogram_count(hist), THREADS * ITERATIONS);
    ck_assert(metric_histogram_sum(hist) == THREADS * ITERATIONS * 0.5);
    ck_assert(metric_value(gauge) == THREADS * ITERATIONS * 0.25);
    for (i = 0; i < SHARED; i++) {
        for (t = 1; t < THREADS; t++)
            ck_assert_ptr_eq(found[t][i], found[0][i]);
        ck_assert(metric_value(found[0][i]) == THREADS);
    }
    out = format(m);
    ck_assert_uint_eq(count_substr(out, "\nshared_total{"), SHARED);
    ck_assert(line_value(out, "t_total ") == THREADS * ITERATIONS);
    ck_assert(line_value(out, "h_seconds_bucket{le=\"0.5\"} ") == THREADS * ITERATIONS);
    ck_assert(line_value(out, "h_seconds_bucket{le=\"0.25\"} ") == 0);
    free(out);
    metrics_free(m);
}
END_TEST

/* --- Collectors ----------------------------------------------------------- */

struct collect_state {
    struct metric *f; /* labelled gauge the collector fills */
    int calls;        /* times the collector ran */
};

static void collect(struct metrics *m, void *arg)
{
    struct collect_state *cs = arg;

    (void)m;
    cs->calls++;
    /* Creating a series from a collector must not deadlock. */
    metric_set(metric_series_get(cs->f, cs->calls == 1 ? "first" : "later"), cs->calls);
}

START_TEST(test_collector)
{
    struct metrics *m = metrics_new();
    struct collect_state cs = {metrics_gauge(m, "conns", "Open connections.", "when"), 0};
    char *out;

    metrics_add_collector(m, collect, &cs);
    out = format(m);
    ck_assert_int_eq(cs.calls, 1);
    ck_assert(line_value(out, "conns{when=\"first\"} ") == 1);
    free(out);
    out = format(m);
    ck_assert_int_eq(cs.calls, 2);
    ck_assert(line_value(out, "conns{when=\"first\"} ") == 1);
    ck_assert(line_value(out, "conns{when=\"later\"} ") == 2);
    free(out);
    metrics_free(m);
}
END_TEST

START_TEST(test_process_collector)
{
    struct metrics *m = metrics_new();
    char *out;
    double fds;
    double start;
    int extra[3];
    int i;

    metrics_register_process(m);
    metrics_register_process(m); /* idempotent */
    out = format(m);
    ck_assert_uint_eq(count_substr(out, "# TYPE process_open_fds gauge\n"), 1);
    ck_assert_ptr_nonnull(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
    ck_assert(line_value(out, "process_resident_memory_bytes ") > 0);
    ck_assert(line_value(out, "process_virtual_memory_bytes ") >=
              line_value(out, "process_resident_memory_bytes "));
    fds = line_value(out, "process_open_fds ");
    ck_assert(fds >= 1);
    ck_assert(line_value(out, "process_max_fds ") >= fds);
    ck_assert(line_value(out, "process_cpu_seconds_total ") >= 0);
    start = line_value(out, "process_start_time_seconds ");
    ck_assert_msg(start > (double)time(NULL) - 3600 && start <= (double)time(NULL) + 2,
                  "start time %f", start);
    free(out);

    for (i = 0; i < 3; i++)
        ck_assert_int_ge(extra[i] = dup(0), 0);
    out = format(m);
    ck_assert(line_value(out, "process_open_fds ") == fds + 3);
    free(out);
    for (i = 0; i < 3; i++)
        close(extra[i]);
    metrics_free(m);
}
END_TEST

/* --- promtool ------------------------------------------------------------- */

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096];

    while (path && *path) {
        size_t n = strcspn(path, ":");

        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
        if (n && !access(buf, X_OK))
            return true;
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

START_TEST(test_promtool_accepts_output)
{
    static const double bounds[] = {0.001, 0.5, 2};
    struct metrics *m;
    struct metric *f;
    char path[] = "/tmp/st_metrics_XXXXXX";
    char cmd[256];
    char *out;
    FILE *fp;
    int fd;
    int rc;

    if (!on_path("promtool")) {
        fprintf(stderr, "promtool not on PATH: skipping the promtool check\n");
        return;
    }
    m = metrics_new();
    metrics_register_process(m);
    f = metrics_counter(m, "st_http_requests_total", "Requests by listener, route and code.",
                        "listener,route,code");
    metric_inc(metric_series_get(f, "query", "/v1/tables/{t}", "200"));
    metric_add(metric_series_get(f, "ingest", "a\\b\"c\nd", "500"), 1e6);
    f = metrics_gauge(m, "st_odd_values", "Help with a back\\slash\nand a newline.", "kind");
    metric_set(metric_series_get(f, "nan"), NAN);
    metric_set(metric_series_get(f, "inf"), INFINITY);
    metric_set(metric_series_get(f, "ninf"), -INFINITY);
    metric_set(metric_series_get(f, "third"), 1.0 / 3.0);
    metric_set(metric_series_get(f, "big"), 1e300);
    metric_set(metric_series_get(f, "bad utf8 \xff"), 1);
    f = metrics_histogram(m, "st_request_duration_seconds", "Request latency.", "route", NULL, 0);
    metric_observe(metric_series_get(f, "/a"), 0.003);
    metric_observe(metric_series_get(f, "/a"), 20);
    metric_series_get(f, "/b");
    f = metrics_histogram(m, "st_fsync_duration_seconds", "WAL fsync latency.", NULL, bounds, 3);
    metric_observe(metric_series_get(f), 0.01);
    metrics_gauge(m, "st_empty_family", "A labelled family with no series yet.", "x");
    out = format(m);

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fp = fdopen(fd, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(out, 1, strlen(out), fp), strlen(out));
    ck_assert_int_eq(fclose(fp), 0);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 1>&2", path);
    rc = system(cmd);
    unlink(path);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc))
        fprintf(stderr, "promtool rejected this:\n%s", out);
    ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "promtool check metrics failed (%d)", rc);
    free(out);
    metrics_free(m);
}
END_TEST

/* --- Bugs abort ----------------------------------------------------------- */

START_TEST(test_bug_bad_name)
{
    metrics_counter(metrics_new(), "1abc", "", NULL);
}
END_TEST

START_TEST(test_bug_bad_name_dash)
{
    metrics_gauge(metrics_new(), "a-b", "", NULL);
}
END_TEST

START_TEST(test_bug_reserved_label)
{
    metrics_gauge(metrics_new(), "ok", "", "a,__b");
}
END_TEST

START_TEST(test_bug_bad_label)
{
    metrics_gauge(metrics_new(), "ok", "", "a b");
}
END_TEST

START_TEST(test_bug_duplicate_label)
{
    metrics_gauge(metrics_new(), "ok", "", "a,b,a");
}
END_TEST

START_TEST(test_bug_le_label)
{
    metrics_histogram(metrics_new(), "ok", "", "le", NULL, 0);
}
END_TEST

START_TEST(test_bug_buckets_not_increasing)
{
    static const double b[] = {1, 1};

    metrics_histogram(metrics_new(), "ok", "", NULL, b, 2);
}
END_TEST

START_TEST(test_bug_redeclare_type)
{
    struct metrics *m = metrics_new();

    metrics_counter(m, "x_total", "", NULL);
    metrics_gauge(m, "x_total", "", NULL);
}
END_TEST

START_TEST(test_bug_redeclare_labels)
{
    struct metrics *m = metrics_new();

    metrics_counter(m, "x_total", "", "a");
    metrics_counter(m, "x_total", "", "a,b");
}
END_TEST

START_TEST(test_bug_histogram_clash)
{
    struct metrics *m = metrics_new();

    metrics_histogram(m, "h", "", NULL, NULL, 0);
    metrics_counter(m, "h_count", "", NULL);
}
END_TEST

START_TEST(test_bug_too_few_values)
{
    struct metric *f = metrics_counter(metrics_new(), "x_total", "", "a,b");

    metric_series_get(f, "1");
}
END_TEST

START_TEST(test_bug_too_many_values)
{
    struct metric *f = metrics_counter(metrics_new(), "x_total", "", "a");

    metric_series_get(f, "1", "2");
}
END_TEST

START_TEST(test_bug_getv_count)
{
    struct metric *f = metrics_counter(metrics_new(), "x_total", "", "a");
    const char *v[] = {"1", "2"};

    metric_series_getv(f, v, 2);
}
END_TEST

START_TEST(test_bug_negative_counter)
{
    struct metric *f = metrics_counter(metrics_new(), "x_total", "", NULL);

    metric_add(metric_series_get(f), -1);
}
END_TEST

START_TEST(test_bug_observe_counter)
{
    struct metric *f = metrics_counter(metrics_new(), "x_total", "", NULL);

    metric_observe(metric_series_get(f), 1);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("format");
    TCase *conc = tcase_create("concurrency");
    TCase *proc = tcase_create("process");
    TCase *bugs = tcase_create("bugs");

    tcase_add_test(tc, test_counter_no_labels);
    tcase_add_test(tc, test_counter_labels_sorted);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_invalid_utf8_label);
    tcase_add_test(tc, test_gauge_values);
    tcase_add_test(tc, test_histogram);
    tcase_add_test(tc, test_histogram_default_buckets);
    tcase_add_test(tc, test_redeclare_and_order);
    tcase_add_test(tc, test_many_series);
    tcase_add_test(tc, test_collector);
    suite_add_tcase(s, tc);

    tcase_add_test(conc, test_concurrent_updates);
    tcase_set_timeout(conc, 30);
    suite_add_tcase(s, conc);

    tcase_add_test(proc, test_process_collector);
    tcase_add_test(proc, test_promtool_accepts_output);
    tcase_set_timeout(proc, 30);
    suite_add_tcase(s, proc);

    tcase_add_test_raise_signal(bugs, test_bug_bad_name, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_bad_name_dash, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_reserved_label, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_bad_label, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_duplicate_label, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_le_label, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_buckets_not_increasing, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_redeclare_type, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_redeclare_labels, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_histogram_clash, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_too_few_values, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_too_many_values, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_getv_count, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_negative_counter, SIGABRT);
    tcase_add_test_raise_signal(bugs, test_bug_observe_counter, SIGABRT);
    suite_add_tcase(s, bugs);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
