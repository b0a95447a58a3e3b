/*
 * The metrics registry, exposed in Prometheus text format 0.0.4.
 *
 * A family (struct metric) has a name, help text, a type and a fixed list
 * of label names; each combination of label values is a series. Series are
 * created on first use and live as long as the registry, so hot paths look
 * a series up once and keep the pointer. Updates are lock-free atomics and
 * may come from any thread; creating a series and formatting take the
 * registry's mutex.
 *
 * Collectors are callbacks run at scrape time, under the registry mutex,
 * to refresh gauges that are cheaper to read than to track (process RSS,
 * open fds, CPU, open connections). A collector should only set values of
 * series; it may also look up or create series (the mutex is recursive),
 * but it must not call metrics_format().
 *
 * Families are declared at start-up by the module that owns them; the HTTP
 * layer declares its request counters and histograms, the engine its WAL
 * and memtable figures, and so on.
 */
#ifndef ST_UTIL_METRICS_H
#define ST_UTIL_METRICS_H

#include "util/common.h"

struct strbuf;
struct metrics;
struct metric;
struct metric_series;

enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
};

/* Caller frees with metrics_free(). */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/*
 * Declares a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]* (counters
 * should end in _total); labels is a comma-separated list of label names
 * ("listener,route,code") or NULL. Declaring the same name twice with the
 * same type and labels returns the existing family; anything else is a bug.
 * For histograms, buckets are the upper bounds in increasing order (the
 * +Inf bucket is implicit); NULL uses metrics_default_buckets.
 */
struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
                               const char *labels);
struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
                             const char *labels);
struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                 const char *labels, const double *buckets, size_t nbuckets);

/* Latency buckets in seconds, 100 us to 10 s. */
extern const double metrics_default_buckets[];
extern const size_t metrics_default_nbuckets;

/*
 * Finds or creates the series for the given label values, one per label
 * name, in order. Values are copied and escaped when formatted. A family
 * without labels has one series: call with no values. Thread-safe.
 *
 * metric_series_get() is a macro that appends a NULL sentinel, so passing
 * the wrong number of values (or a NULL value) is caught as a bug instead
 * of reading past the arguments. Call metric__series_get() directly only
 * with the NULL terminator. Finding an existing series takes no lock; only
 * creating one takes the registry mutex. Values that are not valid UTF-8
 * have the bad bytes replaced by U+FFFD (Prometheus requires UTF-8).
 */
struct metric_series *metric__series_get(struct metric *f, ...);
#define metric_series_get(...) metric__series_get(__VA_ARGS__, (const char *)NULL)
/* The same with an array of nvalues values. */
struct metric_series *metric_series_getv(struct metric *f, const char *const *values,
                                         size_t nvalues);

/*
 * Counters: add a non-negative amount (a negative or NaN one is a bug).
 * These also work on gauges. Any update of the wrong type is a bug.
 */
void metric_inc(struct metric_series *s);
void metric_add(struct metric_series *s, double v);
/* Gauges: set, or add a possibly negative amount. */
void metric_set(struct metric_series *s, double v);
void metric_gauge_add(struct metric_series *s, double v);
/* Histograms: record one observation. */
void metric_observe(struct metric_series *s, double v);
/*
 * Counters: sets the value outright, for a collector that mirrors a
 * monotonic count kept elsewhere (CPU seconds from /proc). v must be >= 0.
 */
void metric_counter_set(struct metric_series *s, double v);
/* Current value of a counter or gauge (tests, /v1/admin/status). */
double metric_value(const struct metric_series *s);
/* Histograms: number and sum of the observations so far. */
uint64_t metric_histogram_count(const struct metric_series *s);
double metric_histogram_sum(const struct metric_series *s);

typedef void (*metrics_collector_fn)(struct metrics *m, void *arg);
/* Registers fn to run at the start of every metrics_format(). */
void metrics_add_collector(struct metrics *m, metrics_collector_fn fn, void *arg);

/*
 * Declares the process_* families (resident memory, virtual memory, open
 * fds, max fds, CPU seconds, start time) and a collector that reads them
 * from /proc/self.
 */
void metrics_register_process(struct metrics *m);

/* Appends the whole registry in text format 0.0.4 to out. */
void metrics_format(struct metrics *m, struct strbuf *out);

#endif
