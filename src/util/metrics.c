/*
 * The metrics registry and its Prometheus text exposition (format 0.0.4).
 *
 * DESIGN
 *
 * A registry (struct metrics) holds families (struct metric) in an array
 * kept sorted by name, so declaring looks a name up by binary search and
 * formatting walks families in name order. A family owns its series in an
 * open-addressing hash table keyed by a 64-bit FNV-1a hash of the label
 * values.
 *
 * Values are C11 atomics updated with relaxed ordering and no lock:
 * counters and gauges keep the bit pattern of a double in an atomic
 * uint64 and add with a compare-and-swap loop, so integral counts stay
 * exact up to 2^53 under any interleaving; histograms keep one atomic
 * count per bucket (not cumulative) and the sum as double bits. The total
 * count of a histogram is the sum of its bucket counts, so _count always
 * equals the +Inf bucket in the output even while observations race the
 * scrape.
 *
 * SERIES TABLE AND LOCK RULES
 *
 * The registry mutex (recursive, so a collector may create series) guards
 * the family array, the collectors, and every insertion into a series
 * table. Lookups take no lock: a table is an array of atomic pointers in
 * which a slot only ever goes from NULL to a series (published with a
 * release store), and a series is immutable apart from its atomic values.
 * When a table passes 3/4 full the writer builds one twice the size and
 * publishes it; the old table stays allocated (on the family's retired
 * list) until metrics_free(), because readers may still be probing it. A
 * reader that misses in a stale table retries under the mutex, so it
 * never creates a duplicate. Series are never freed before metrics_free(),
 * which is what lets hot paths keep series pointers forever.
 *
 * OUTPUT
 *
 * Each family prints "# HELP" (when help is not empty), "# TYPE" and its
 * series sorted by label values, so output is deterministic. Label values
 * are escaped once, when the series is created, into the text that goes
 * between the braces. Numbers print as integers when integral and below
 * 1e15, otherwise with the fewest digits (15 to 17) that read back to the
 * same double; infinities and NaN print as +Inf, -Inf and NaN.
 */
#include "util/metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util/strbuf.h"

/* Most labels a family may have; keeps the varargs path free of VLAs. */
#define METRICS_MAX_LABELS 16
/* Slots in a new series table; a power of two. */
#define TABLE_INITIAL_CAP 8

const double metrics_default_buckets[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t metrics_default_nbuckets = ST_ARRAY_SIZE(metrics_default_buckets);

struct metric_series {
    struct metric *family;  /* the family this series belongs to */
    uint64_t hash;          /* hash of the label values */
    char **values;          /* nlabels raw label values, for lookup and sort */
    char *labels;           /* escaped `a="x",b="y"`, "" without labels */
    _Atomic uint64_t value; /* counter or gauge: bits of a double */
    _Atomic uint64_t sum;   /* histogram: bits of the double sum */
    _Atomic uint64_t *hist; /* histogram: nbuckets + 1 counts, +Inf last */
};

struct series_table {
    size_t cap;                             /* slots; a power of two */
    struct series_table *retired;           /* older tables kept for readers */
    _Atomic(struct metric_series *) slot[]; /* NULL or a series, never reset */
};

struct metric {
    struct metrics *reg;                  /* owning registry */
    char *name;                           /* validated family name */
    char *help;                           /* help text as given, "" if none */
    enum metric_type type;                /* counter, gauge or histogram */
    size_t nlabels;                       /* number of label names */
    char **labels;                        /* label names, in declaration order */
    double *buckets;                      /* histogram upper bounds, no +Inf */
    size_t nbuckets;                      /* entries in buckets */
    _Atomic(struct series_table *) table; /* current series table */
    size_t nseries;                       /* series in table; under reg->lock */
};

struct collector {
    metrics_collector_fn fn; /* called at the start of each scrape */
    void *arg;               /* passed to fn */
};

struct process_state;

struct metrics {
    pthread_mutex_t lock;         /* recursive; see "lock rules" above */
    struct metric **families;     /* sorted by name */
    size_t nfamilies;             /* entries in families */
    size_t families_alloc;        /* capacity of families */
    struct collector *collectors; /* in registration order */
    size_t ncollectors;           /* entries in collectors */
    size_t collectors_alloc;      /* capacity of collectors */
    bool formatting;              /* inside metrics_format(); catches reentry */
    struct process_state *proc;   /* process collector state, or NULL */
};

/* --- Double bits in atomics --------------------------------------------- */

static uint64_t dbl_to_bits(double v)
{
    uint64_t u;

    memcpy(&u, &v, sizeof(u));
    return u;
}

static double bits_to_dbl(uint64_t u)
{
    double v;

    memcpy(&v, &u, sizeof(v));
    return v;
}

static void atomic_dbl_add(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(a, &old, dbl_to_bits(bits_to_dbl(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

static double atomic_dbl_load(const _Atomic uint64_t *a)
{
    /* C11 takes a non-const pointer for atomic_load; the load writes nothing. */
    return bits_to_dbl(atomic_load_explicit((_Atomic uint64_t *)a, memory_order_relaxed));
}

/* --- Locking -------------------------------------------------------------- */

static void reg_lock(struct metrics *m)
{
    if (pthread_mutex_lock(&m->lock))
        ST_BUG("metrics: pthread_mutex_lock failed");
}

static void reg_unlock(struct metrics *m)
{
    if (pthread_mutex_unlock(&m->lock))
        ST_BUG("metrics: pthread_mutex_unlock failed");
}

/* --- Registry ------------------------------------------------------------- */

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    pthread_mutexattr_t attr;

    if (pthread_mutexattr_init(&attr) ||
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE) ||
        pthread_mutex_init(&m->lock, &attr))
        ST_BUG("metrics: cannot initialise the registry mutex");
    pthread_mutexattr_destroy(&attr);
    return m;
}

static void series_free(struct metric_series *s)
{
    size_t i;

    for (i = 0; i < s->family->nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->labels);
    free(s->hist);
    free(s);
}

static void family_free(struct metric *f)
{
    struct series_table *t = atomic_load_explicit(&f->table, memory_order_relaxed);
    struct series_table *next;
    size_t i;

    for (i = 0; i < t->cap; i++) {
        struct metric_series *s = atomic_load_explicit(&t->slot[i], memory_order_relaxed);

        if (s)
            series_free(s);
    }
    for (; t; t = next) {
        next = t->retired;
        free(t);
    }
    for (i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->labels);
    free(f->buckets);
    free(f->name);
    free(f->help);
    free(f);
}

void metrics_free(struct metrics *m)
{
    size_t i;

    if (!m)
        return;
    for (i = 0; i < m->nfamilies; i++)
        family_free(m->families[i]);
    free(m->families);
    free(m->collectors);
    free(m->proc);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* --- Validation ----------------------------------------------------------- */

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool metric_name_is_valid(const char *name)
{
    const char *p;

    if (!is_alpha_(name[0]) && name[0] != ':')
        return false;
    for (p = name + 1; *p; p++)
        if (!is_alpha_(*p) && !is_digit(*p) && *p != ':')
            return false;
    return true;
}

static bool label_name_is_valid(const char *name, size_t len)
{
    size_t i;

    if (!len || !is_alpha_(name[0]))
        return false;
    if (len >= 2 && name[0] == '_' && name[1] == '_')
        return false;
    for (i = 1; i < len; i++)
        if (!is_alpha_(name[i]) && !is_digit(name[i]))
            return false;
    return true;
}

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
 * bytes there are not one: overlong forms, surrogates and code points past
 * U+10FFFF are all rejected.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len;
    size_t i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static bool utf8_is_valid(const char *s)
{
    size_t n = strlen(s);
    size_t i = 0;

    while (i < n) {
        size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);

        if (!l)
            return false;
        i += l;
    }
    return true;
}

/* A copy of s with each byte that is not part of valid UTF-8 as U+FFFD. */
static char *utf8_sanitize(const char *s)
{
    struct strbuf sb = STRBUF_INIT;
    size_t n = strlen(s);
    size_t i = 0;

    while (i < n) {
        size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);

        if (l) {
            strbuf_add(&sb, s + i, l);
            i += l;
        } else {
            strbuf_addstr(&sb, "\xef\xbf\xbd");
            i++;
        }
    }
    return strbuf_detach(&sb, NULL);
}

/* --- Families ------------------------------------------------------------- */

static const char *type_name(enum metric_type type)
{
    switch (type) {
    case METRIC_COUNTER:
        return "counter";
    case METRIC_GAUGE:
        return "gauge";
    case METRIC_HISTOGRAM:
        return "histogram";
    }
    ST_BUG("metrics: bad metric type %d", (int)type);
}

/*
 * Splits "a, b,c" into label names; every name must be valid, distinct,
 * and not "le" for a histogram. NULL and "" mean no labels.
 */
static size_t parse_labels(const char *family, const char *spec, enum metric_type type,
                           char ***out /* OUT: */)
{
    char **names = NULL;
    size_t n = 0;
    const char *p = spec;

    *out = NULL;
    if (!spec || !*spec)
        return 0;
    names = calloc_array(METRICS_MAX_LABELS, sizeof(*names));
    for (;;) {
        const char *start;
        size_t len;
        size_t i;

        while (*p == ' ')
            p++;
        start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        len = (size_t)(p - start);
        while (*p == ' ')
            p++;
        if (!label_name_is_valid(start, len))
            ST_BUG("metrics: invalid label name '%.*s' in '%s' of '%s'", (int)len, start, spec,
                   family);
        if (type == METRIC_HISTOGRAM && len == 2 && !memcmp(start, "le", 2))
            ST_BUG("metrics: histogram '%s' may not have a label named 'le'", family);
        for (i = 0; i < n; i++)
            if (strlen(names[i]) == len && !memcmp(names[i], start, len))
                ST_BUG("metrics: duplicate label '%s' in '%s'", names[i], family);
        if (n == METRICS_MAX_LABELS)
            ST_BUG("metrics: '%s' has more than %d labels", family, METRICS_MAX_LABELS);
        names[n++] = xstrndup(start, len);
        if (!*p)
            break;
        if (*p != ',')
            ST_BUG("metrics: bad label list '%s' of '%s'", spec, family);
        p++;
    }
    *out = names;
    return n;
}

/*
 * Checks histogram bounds: finite (a trailing +Inf is dropped, as the +Inf
 * bucket is implicit) and strictly increasing. Returns a copy.
 */
static double *copy_buckets(const char *family, const double *buckets, size_t n,
                            size_t *nout /* OUT: */)
{
    double *copy;
    size_t i;

    if (!buckets) {
        buckets = metrics_default_buckets;
        n = metrics_default_nbuckets;
    }
    if (n && isinf(buckets[n - 1]) && buckets[n - 1] > 0)
        n--;
    for (i = 0; i < n; i++) {
        if (!isfinite(buckets[i]))
            ST_BUG("metrics: bucket %zu of '%s' is not finite", i, family);
        if (i && !(buckets[i] > buckets[i - 1]))
            ST_BUG("metrics: buckets of '%s' are not increasing at %zu", family, i);
    }
    copy = calloc_array(n ? n : 1, sizeof(*copy));
    if (n)
        memcpy(copy, buckets, n * sizeof(*copy));
    *nout = n;
    return copy;
}

static struct series_table *table_new(size_t cap)
{
    struct series_table *t;
    size_t i;

    t = xcalloc(1, sizeof(*t) + cap * sizeof(t->slot[0]));
    t->cap = cap;
    for (i = 0; i < cap; i++)
        atomic_init(&t->slot[i], NULL);
    return t;
}

/* Index in m->families where name is or would be inserted. */
static size_t family_index(struct metrics *m, const char *name, bool *found /* OUT: */)
{
    size_t lo = 0;
    size_t hi = m->nfamilies;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->families[mid]->name, name);

        if (!c) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static struct metric *family_find(struct metrics *m, const char *name)
{
    bool found;
    size_t i = family_index(m, name, &found);

    return found ? m->families[i] : NULL;
}

/*
 * A histogram "h" also writes h_bucket, h_sum and h_count; no other family
 * may use those names, in either order of declaration.
 */
static void check_name_clash(struct metrics *m, const char *name, enum metric_type type)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t len = strlen(name);
    size_t i;

    for (i = 0; i < ST_ARRAY_SIZE(suffixes); i++) {
        size_t sl = strlen(suffixes[i]);
        struct metric *other;
        char *base;

        if (type == METRIC_HISTOGRAM) {
            char *derived = xmalloc(len + sl + 1);

            memcpy(derived, name, len);
            memcpy(derived + len, suffixes[i], sl + 1);
            other = family_find(m, derived);
            free(derived);
            if (other)
                ST_BUG("metrics: histogram '%s' clashes with family '%s'", name, other->name);
        }
        if (len <= sl || strcmp(name + len - sl, suffixes[i]))
            continue;
        base = xstrndup(name, len - sl);
        other = family_find(m, base);
        free(base);
        if (other && other->type == METRIC_HISTOGRAM)
            ST_BUG("metrics: family '%s' clashes with histogram '%s'", name, other->name);
    }
}

static bool same_labels(const struct metric *f, char **labels, size_t nlabels)
{
    size_t i;

    if (f->nlabels != nlabels)
        return false;
    for (i = 0; i < nlabels; i++)
        if (strcmp(f->labels[i], labels[i]))
            return false;
    return true;
}

static void free_labels(char **labels, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(labels[i]);
    free(labels);
}

static struct metric_series *series_lookup_locked(struct metric *f, const char *const *values,
                                                  size_t n);

static struct metric *declare(struct metrics *m, enum metric_type type, const char *name,
                              const char *help, const char *labelspec, const double *buckets,
                              size_t nbuckets)
{
    struct metric *f;
    char **labels;
    size_t nlabels;
    double *bounds = NULL;
    size_t nbounds = 0;
    bool found;
    size_t at;

    if (!name || !metric_name_is_valid(name))
        ST_BUG("metrics: invalid metric name '%s'", name ? name : "(null)");
    if (!help)
        help = "";
    nlabels = parse_labels(name, labelspec, type, &labels);
    if (type == METRIC_HISTOGRAM)
        bounds = copy_buckets(name, buckets, nbuckets, &nbounds);

    reg_lock(m);
    at = family_index(m, name, &found);
    if (found) {
        f = m->families[at];
        if (f->type != type || !same_labels(f, labels, nlabels) || strcmp(f->help, help) ||
            f->nbuckets != nbounds ||
            (nbounds && memcmp(f->buckets, bounds, nbounds * sizeof(*bounds))))
            ST_BUG("metrics: '%s' declared again with a different type, help, labels or "
                   "buckets",
                   name);
        reg_unlock(m);
        free_labels(labels, nlabels);
        free(bounds);
        return f;
    }
    check_name_clash(m, name, type);

    f = xcalloc(1, sizeof(*f));
    f->reg = m;
    f->name = xstrdup(name);
    f->help = xstrdup(help);
    f->type = type;
    f->nlabels = nlabels;
    f->labels = labels;
    f->buckets = bounds;
    f->nbuckets = nbounds;
    atomic_init(&f->table, table_new(TABLE_INITIAL_CAP));

    if (m->nfamilies == m->families_alloc) {
        m->families_alloc = m->families_alloc ? 2 * m->families_alloc : 16;
        m->families = realloc_array(m->families, m->families_alloc, sizeof(*m->families));
    }
    memmove(m->families + at + 1, m->families + at, (m->nfamilies - at) * sizeof(*m->families));
    m->families[at] = f;
    m->nfamilies++;

    /* A family without labels shows its one series, at 0, from the start. */
    if (!nlabels)
        series_lookup_locked(f, NULL, 0);
    reg_unlock(m);
    return f;
}

struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
                               const char *labels)
{
    return declare(m, METRIC_COUNTER, name, help, labels, NULL, 0);
}

struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
                             const char *labels)
{
    return declare(m, METRIC_GAUGE, name, help, labels, NULL, 0);
}

struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                 const char *labels, const double *buckets, size_t nbuckets)
{
    return declare(m, METRIC_HISTOGRAM, name, help, labels, buckets, nbuckets);
}

/* --- Series --------------------------------------------------------------- */

/* FNV-1a over the values, each followed by its NUL as a separator. */
static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    size_t i;

    for (i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)values[i];

        do {
            h ^= *p;
            h *= 1099511628211ULL;
        } while (*p++);
    }
    return h;
}

static bool series_matches(const struct metric_series *s, uint64_t h, const char *const *values,
                           size_t n)
{
    size_t i;

    if (s->hash != h)
        return false;
    for (i = 0; i < n; i++)
        if (strcmp(s->values[i], values[i]))
            return false;
    return true;
}

/* Probes t without a lock; see "series table and lock rules" above. */
static struct metric_series *table_find(struct series_table *t, uint64_t h,
                                        const char *const *values, size_t n)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)h & mask;

    for (;;) {
        struct metric_series *s = atomic_load_explicit(&t->slot[i], memory_order_acquire);

        if (!s)
            return NULL;
        if (series_matches(s, h, values, n))
            return s;
        i = (i + 1) & mask;
    }
}

/* Stores s in the first free slot of its probe sequence. */
static void table_put(struct series_table *t, struct metric_series *s)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)s->hash & mask;

    while (atomic_load_explicit(&t->slot[i], memory_order_relaxed))
        i = (i + 1) & mask;
    atomic_store_explicit(&t->slot[i], s, memory_order_release);
}

/* Appends `"value"` with backslash, double quote and newline escaped. */
static void add_label_value(struct strbuf *sb, const char *v)
{
    strbuf_addch(sb, '"');
    for (; *v; v++) {
        if (*v == '\\')
            strbuf_addstr(sb, "\\\\");
        else if (*v == '"')
            strbuf_addstr(sb, "\\\"");
        else if (*v == '\n')
            strbuf_addstr(sb, "\\n");
        else
            strbuf_addch(sb, *v);
    }
    strbuf_addch(sb, '"');
}

static struct metric_series *series_new(struct metric *f, uint64_t h, const char *const *values)
{
    struct metric_series *s = xcalloc(1, sizeof(*s));
    struct strbuf sb = STRBUF_INIT;
    size_t i;

    s->family = f;
    s->hash = h;
    s->values = calloc_array(f->nlabels ? f->nlabels : 1, sizeof(*s->values));
    for (i = 0; i < f->nlabels; i++) {
        s->values[i] = xstrdup(values[i]);
        if (i)
            strbuf_addch(&sb, ',');
        strbuf_addstr(&sb, f->labels[i]);
        strbuf_addch(&sb, '=');
        add_label_value(&sb, values[i]);
    }
    s->labels = strbuf_detach(&sb, NULL);
    atomic_init(&s->value, dbl_to_bits(0.0));
    atomic_init(&s->sum, dbl_to_bits(0.0));
    if (f->type == METRIC_HISTOGRAM) {
        s->hist = calloc_array(f->nbuckets + 1, sizeof(*s->hist));
        for (i = 0; i <= f->nbuckets; i++)
            atomic_init(&s->hist[i], 0);
    }
    return s;
}

/* Finds or creates a series; the caller holds the registry mutex. */
static struct metric_series *series_lookup_locked(struct metric *f, const char *const *values,
                                                  size_t n)
{
    struct series_table *t = atomic_load_explicit(&f->table, memory_order_relaxed);
    uint64_t h = hash_values(values, n);
    struct metric_series *s = table_find(t, h, values, n);

    if (s)
        return s;
    if ((f->nseries + 1) * 4 > t->cap * 3) {
        struct series_table *bigger = table_new(t->cap * 2);
        size_t i;

        for (i = 0; i < t->cap; i++) {
            struct metric_series *old = atomic_load_explicit(&t->slot[i], memory_order_relaxed);

            if (old)
                table_put(bigger, old);
        }
        bigger->retired = t;
        atomic_store_explicit(&f->table, bigger, memory_order_release);
        t = bigger;
    }
    s = series_new(f, h, values);
    table_put(t, s);
    f->nseries++;
    return s;
}

struct metric_series *metric_series_getv(struct metric *f, const char *const *values,
                                         size_t nvalues)
{
    const char *clean[METRICS_MAX_LABELS] = {NULL};
    char *fixed[METRICS_MAX_LABELS] = {NULL};
    struct metric_series *s;
    size_t i;

    if (nvalues != f->nlabels)
        ST_BUG("metrics: '%s' has %zu labels but got %zu values", f->name, f->nlabels, nvalues);
    for (i = 0; i < nvalues; i++) {
        if (!values[i])
            ST_BUG("metrics: NULL value for label '%s' of '%s'", f->labels[i], f->name);
        clean[i] = values[i];
        if (!utf8_is_valid(values[i]))
            clean[i] = fixed[i] = utf8_sanitize(values[i]);
    }
    s = table_find(atomic_load_explicit(&f->table, memory_order_acquire),
                   hash_values(clean, nvalues), clean, nvalues);
    if (!s) {
        reg_lock(f->reg);
        s = series_lookup_locked(f, clean, nvalues);
        reg_unlock(f->reg);
    }
    for (i = 0; i < nvalues; i++)
        free(fixed[i]);
    return s;
}

struct metric_series *metric__series_get(struct metric *f, ...)
{
    const char *values[METRICS_MAX_LABELS];
    const char *extra;
    va_list ap;
    size_t i;

    va_start(ap, f);
    for (i = 0; i < f->nlabels; i++) {
        values[i] = va_arg(ap, const char *);
        if (!values[i])
            ST_BUG("metrics: '%s' has %zu labels but got %zu values (or a NULL value)", f->name,
                   f->nlabels, i);
    }
    extra = va_arg(ap, const char *);
    va_end(ap);
    if (extra)
        ST_BUG("metrics: '%s' has %zu labels but got more values", f->name, f->nlabels);
    return metric_series_getv(f, values, f->nlabels);
}

/* --- Updates -------------------------------------------------------------- */

static void check_type(const struct metric_series *s, bool ok, const char *op)
{
    if (ST_UNLIKELY(!ok))
        ST_BUG("metrics: %s on %s '%s'", op, type_name(s->family->type), s->family->name);
}

void metric_inc(struct metric_series *s)
{
    metric_add(s, 1.0);
}

void metric_add(struct metric_series *s, double v)
{
    check_type(s, s->family->type != METRIC_HISTOGRAM, "metric_add");
    if (ST_UNLIKELY(s->family->type == METRIC_COUNTER && !(v >= 0)))
        ST_BUG("metrics: counter '%s' cannot add %g", s->family->name, v);
    atomic_dbl_add(&s->value, v);
}

void metric_set(struct metric_series *s, double v)
{
    check_type(s, s->family->type == METRIC_GAUGE, "metric_set");
    atomic_store_explicit(&s->value, dbl_to_bits(v), memory_order_relaxed);
}

void metric_counter_set(struct metric_series *s, double v)
{
    check_type(s, s->family->type == METRIC_COUNTER, "metric_counter_set");
    if (ST_UNLIKELY(!(v >= 0)))
        ST_BUG("metrics: counter '%s' cannot be set to %g", s->family->name, v);
    atomic_store_explicit(&s->value, dbl_to_bits(v), memory_order_relaxed);
}

void metric_gauge_add(struct metric_series *s, double v)
{
    check_type(s, s->family->type == METRIC_GAUGE, "metric_gauge_add");
    atomic_dbl_add(&s->value, v);
}

void metric_observe(struct metric_series *s, double v)
{
    const struct metric *f = s->family;
    size_t lo = 0;
    size_t hi = f->nbuckets;

    check_type(s, f->type == METRIC_HISTOGRAM, "metric_observe");
    /* First bucket whose bound is >= v; NaN lands in +Inf. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (v <= f->buckets[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->hist[lo], 1, memory_order_relaxed);
    atomic_dbl_add(&s->sum, v);
}

double metric_value(const struct metric_series *s)
{
    check_type(s, s->family->type != METRIC_HISTOGRAM, "metric_value");
    return atomic_dbl_load(&s->value);
}

uint64_t metric_histogram_count(const struct metric_series *s)
{
    uint64_t n = 0;
    size_t i;

    check_type(s, s->family->type == METRIC_HISTOGRAM, "metric_histogram_count");
    for (i = 0; i <= s->family->nbuckets; i++)
        n += atomic_load_explicit(&s->hist[i], memory_order_relaxed);
    return n;
}

double metric_histogram_sum(const struct metric_series *s)
{
    check_type(s, s->family->type == METRIC_HISTOGRAM, "metric_histogram_sum");
    return atomic_dbl_load(&s->sum);
}

/* --- Collectors ----------------------------------------------------------- */

void metrics_add_collector(struct metrics *m, metrics_collector_fn fn, void *arg)
{
    reg_lock(m);
    if (m->ncollectors == m->collectors_alloc) {
        m->collectors_alloc = m->collectors_alloc ? 2 * m->collectors_alloc : 4;
        m->collectors = realloc_array(m->collectors, m->collectors_alloc, sizeof(*m->collectors));
    }
    m->collectors[m->ncollectors].fn = fn;
    m->collectors[m->ncollectors].arg = arg;
    m->ncollectors++;
    reg_unlock(m);
}

/* --- Process metrics ------------------------------------------------------ */

struct process_state {
    struct metric_series *rss;     /* process_resident_memory_bytes */
    struct metric_series *vsize;   /* process_virtual_memory_bytes */
    struct metric_series *fds;     /* process_open_fds */
    struct metric_series *max_fds; /* process_max_fds */
    struct metric_series *cpu;     /* process_cpu_seconds_total */
    double ticks;                  /* sysconf(_SC_CLK_TCK) */
    double page_size;              /* sysconf(_SC_PAGESIZE) */
};

/* The fields of /proc/self/stat this module uses. */
struct proc_stat {
    unsigned long long utime;     /* field 14, clock ticks */
    unsigned long long stime;     /* field 15, clock ticks */
    unsigned long long starttime; /* field 22, ticks after boot */
    unsigned long long vsize;     /* field 23, bytes */
    long long rss;                /* field 24, pages */
};

static bool read_proc_stat(struct proc_stat *st /* OUT: */)
{
    char buf[1024];
    const char *p;
    FILE *fp = fopen("/proc/self/stat", "r");
    size_t n;

    if (!fp)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* comm (field 2) may hold spaces and parentheses: skip to the last ')'. */
    p = strrchr(buf, ')');
    if (!p)
        return false;
    return sscanf(p + 1,
                  " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d"
                  " %llu %llu %lld",
                  &st->utime, &st->stime, &st->starttime, &st->vsize, &st->rss) == 5;
}

/* Boot time in seconds since the epoch, from the btime line of /proc/stat. */
static bool read_boot_time(double *btime /* OUT: */)
{
    char line[256];
    FILE *fp = fopen("/proc/stat", "r");
    bool ok = false;

    if (!fp)
        return false;
    while (fgets(line, sizeof(line), fp)) {
        unsigned long long v;

        if (sscanf(line, "btime %llu", &v) == 1) {
            *btime = (double)v;
            ok = true;
            break;
        }
    }
    fclose(fp);
    return ok;
}

/* Entries in /proc/self/fd, not counting the one reading the directory. */
static bool count_open_fds(double *n /* OUT: */)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    char self[32];
    double count = 0;

    if (!d)
        return false;
    snprintf(self, sizeof(self), "%d", dirfd(d));
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, self))
            continue;
        count++;
    }
    closedir(d);
    *n = count;
    return true;
}

static void process_collect(struct metrics *m, void *arg)
{
    struct process_state *ps = arg;
    struct proc_stat st;
    struct rlimit rl;
    double fds;

    ST_UNUSED(m);
    if (read_proc_stat(&st)) {
        metric_set(ps->rss, (double)st.rss * ps->page_size);
        metric_set(ps->vsize, (double)st.vsize);
        metric_counter_set(ps->cpu, (double)(st.utime + st.stime) / ps->ticks);
    }
    if (count_open_fds(&fds))
        metric_set(ps->fds, fds);
    if (!getrlimit(RLIMIT_NOFILE, &rl))
        metric_set(ps->max_fds, rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

void metrics_register_process(struct metrics *m)
{
    struct process_state *ps;
    struct metric_series *start;
    struct proc_stat st;
    double btime;
    long v;

    reg_lock(m);
    if (m->proc) {
        reg_unlock(m);
        return;
    }
    ps = xcalloc(1, sizeof(*ps));
    v = sysconf(_SC_CLK_TCK);
    ps->ticks = v > 0 ? (double)v : 100.0;
    v = sysconf(_SC_PAGESIZE);
    ps->page_size = v > 0 ? (double)v : 4096.0;
    ps->rss = metric_series_get(
        metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL));
    ps->vsize = metric_series_get(
        metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL));
    ps->fds = metric_series_get(
        metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", NULL));
    ps->max_fds = metric_series_get(
        metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.", NULL));
    ps->cpu = metric_series_get(metrics_counter(
        m, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", NULL));
    start = metric_series_get(
        metrics_gauge(m, "process_start_time_seconds",
                      "Start time of the process since unix epoch in seconds.", NULL));
    /* The start time never changes: compute it once. */
    if (read_proc_stat(&st) && read_boot_time(&btime))
        metric_set(start, btime + (double)st.starttime / ps->ticks);
    m->proc = ps;
    metrics_add_collector(m, process_collect, ps);
    reg_unlock(m);
}

/* --- Formatting ----------------------------------------------------------- */

/*
 * Appends v as Prometheus reads it: integers without exponent or decimals,
 * other numbers in the fewest digits that read back exactly.
 */
static void add_value(struct strbuf *sb, double v)
{
    char buf[40];
    int prec;

    if (isnan(v)) {
        strbuf_addstr(sb, "NaN");
        return;
    }
    if (isinf(v)) {
        strbuf_addstr(sb, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        strbuf_addf(sb, "%lld", (long long)v);
        return;
    }
    for (prec = 15; prec < 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    strbuf_addf(sb, "%.*g", prec, v);
}

/* Appends help text with backslash and newline escaped. */
static void add_help(struct strbuf *sb, const char *help)
{
    for (; *help; help++) {
        if (*help == '\\')
            strbuf_addstr(sb, "\\\\");
        else if (*help == '\n')
            strbuf_addstr(sb, "\\n");
        else
            strbuf_addch(sb, *help);
    }
}

static int compare_series(const void *a, const void *b)
{
    const struct metric_series *x = *(const struct metric_series *const *)a;
    const struct metric_series *y = *(const struct metric_series *const *)b;
    size_t i;

    for (i = 0; i < x->family->nlabels; i++) {
        int c = strcmp(x->values[i], y->values[i]);

        if (c)
            return c;
    }
    return 0;
}

/* Appends `name` + suffix + `{labels}` (omitted when empty) + ' '. */
static void add_series_name(struct strbuf *sb, const char *name, const char *suffix,
                            const char *labels, const char *extra)
{
    strbuf_addstr(sb, name);
    strbuf_addstr(sb, suffix);
    if (*labels || extra) {
        strbuf_addch(sb, '{');
        strbuf_addstr(sb, labels);
        if (extra) {
            if (*labels)
                strbuf_addch(sb, ',');
            strbuf_addstr(sb, extra);
        }
        strbuf_addch(sb, '}');
    }
    strbuf_addch(sb, ' ');
}

static void format_histogram(struct strbuf *sb, const struct metric *f,
                             const struct metric_series *s)
{
    struct strbuf le = STRBUF_INIT;
    uint64_t cum = 0;
    size_t i;

    for (i = 0; i <= f->nbuckets; i++) {
        cum += atomic_load_explicit(&s->hist[i], memory_order_relaxed);
        strbuf_reset(&le);
        strbuf_addstr(&le, "le=\"");
        add_value(&le, i < f->nbuckets ? f->buckets[i] : INFINITY);
        strbuf_addch(&le, '"');
        add_series_name(sb, f->name, "_bucket", s->labels, le.buf);
        strbuf_addf(sb, "%llu\n", (unsigned long long)cum);
    }
    strbuf_release(&le);
    add_series_name(sb, f->name, "_sum", s->labels, NULL);
    add_value(sb, atomic_dbl_load(&s->sum));
    strbuf_addch(sb, '\n');
    add_series_name(sb, f->name, "_count", s->labels, NULL);
    strbuf_addf(sb, "%llu\n", (unsigned long long)cum);
}

static void format_family(struct strbuf *sb, struct metric *f)
{
    struct series_table *t = atomic_load_explicit(&f->table, memory_order_relaxed);
    struct metric_series **all;
    size_t n = 0;
    size_t i;

    if (*f->help) {
        strbuf_addf(sb, "# HELP %s ", f->name);
        add_help(sb, f->help);
        strbuf_addch(sb, '\n');
    }
    strbuf_addf(sb, "# TYPE %s %s\n", f->name, type_name(f->type));

    all = calloc_array(f->nseries ? f->nseries : 1, sizeof(*all));
    for (i = 0; i < t->cap; i++) {
        struct metric_series *s = atomic_load_explicit(&t->slot[i], memory_order_relaxed);

        if (s)
            all[n++] = s;
    }
    st_assert(n == f->nseries);
    qsort(all, n, sizeof(*all), compare_series);
    for (i = 0; i < n; i++) {
        if (f->type == METRIC_HISTOGRAM) {
            format_histogram(sb, f, all[i]);
            continue;
        }
        add_series_name(sb, f->name, "", all[i]->labels, NULL);
        add_value(sb, atomic_dbl_load(&all[i]->value));
        strbuf_addch(sb, '\n');
    }
    free(all);
}

void metrics_format(struct metrics *m, struct strbuf *out)
{
    size_t i;

    reg_lock(m);
    if (m->formatting)
        ST_BUG("metrics: metrics_format() called from a collector");
    m->formatting = true;
    for (i = 0; i < m->ncollectors; i++)
        m->collectors[i].fn(m, m->collectors[i].arg);
    for (i = 0; i < m->nfamilies; i++)
        format_family(out, m->families[i]);
    m->formatting = false;
    reg_unlock(m);
}
