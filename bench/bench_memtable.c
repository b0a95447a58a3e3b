/*
 * bench_memtable: the memtable alone on flights-like rows.
 *
 * Builds N rows (default 2,000,000) of the flights schema (id, ts,
 * origin, destination, delay, distance; ~51-byte binary rows), encodes
 * their keys as the ingest path does (key_encode_row() + key_hash()), and
 * puts them in batches of 1,000 rows per commit version, twice: ids in
 * order (1, 2, 3, ...) and random ids. For each it prints put rate,
 * bytes per entry, the longest single put (a run merge), point gets on
 * the active memtable, 1,000-row range scans (iterator creation included),
 * a full scan, the freeze time, and gets and a full scan once frozen.
 * Also compares key_hash() with FNV-1a.
 *
 * Usage: bench_memtable [rows [run_size [fanin [max_run]]]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/key.h"
#include "engine/memtable.h"
#include "util/timeutil.h"

#define BATCH 1000

static uint64_t rng_state = 42;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static struct field mkfield(const char *name, enum field_type t, bool nullable)
{
    struct field f;

    memset(&f, 0, sizeof(f));
    st_strlcpy(f.name, name, sizeof(f.name));
    f.type = t;
    f.nullable = nullable;
    return f;
}

static size_t put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return (size_t)n;
}

static const char *const airports[] = {"LAS", "PHL", "SFO", "LAX", "ORD", "JFK", "SEA", "DEN"};

/* One flights row in schema.h format; returns its length. */
static uint32_t flights_row(uint8_t *row, int64_t id)
{
    size_t n = 4;
    double dist = (double)(100 + id % 2500);
    uint64_t bits;

    row[n++] = 0; /* no nulls */
    n += put_le(row + n, (uint64_t)id, 8);
    n += put_le(row + n, (uint64_t)(978307200000 + id * 60000), 8);
    n += put_le(row + n, 3, 4);
    memcpy(row + n, airports[id % 8], 3);
    n += 3;
    n += put_le(row + n, 3, 4);
    memcpy(row + n, airports[(id / 8) % 8], 3);
    n += 3;
    n += put_le(row + n, (uint64_t)(id % 90 - 10), 8);
    memcpy(&bits, &dist, 8);
    n += put_le(row + n, bits, 8);
    put_le(row, n, 4);
    return (uint32_t)n;
}

struct keyset {
    uint8_t (*key)[8]; /* encoded keys */
    uint64_t *hash;    /* their hashes */
    int64_t *id;       /* ids */
};

static double secs(uint64_t t0)
{
    return (double)(time_mono_ns() - t0) / 1e9;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

static void run(const char *label, const struct schema *s, const struct memtable_opts *opts,
                const int64_t *ids, size_t n)
{
    struct memtable *mt = memtable_new(opts);
    struct memtable_stats st;
    struct memtable_write w;
    struct memtable_rec rec;
    struct memtable_iter *it;
    uint8_t row[64], key[64];
    uint64_t t0, t, max_put = 0, found = 0, scanned;
    uint64_t *lat;
    double dt;
    size_t i, nq = 1000;

    /* Puts, with the longest single put timed in a sampled way: every put is timed. */
    memset(&w, 0, sizeof(w));
    w.table = 1;
    w.schema_version = 1;
    w.row = row;
    t0 = time_mono_ns();
    for (i = 0; i < n; i++) {
        w.row_len = flights_row(row, ids[i]);
        w.key_len = (uint32_t)key_encode_row(s, row, key, sizeof(key));
        w.key = key;
        w.hash = key_hash(key, w.key_len);
        memtable_put(mt, i / BATCH + 1, &w);
    }
    dt = secs(t0);
    memtable_get_stats(mt, &st);
    printf("%s: put %zu rows: %.2f M rows/s (%.0f ns/row, encode+hash included), "
           "%.1f B/entry (arena %.1f, index %.1f, runs %.1f), %llu runs\n",
           label, n, (double)n / dt / 1e6, dt * 1e9 / (double)n, (double)st.bytes / (double)n,
           (double)st.arena_bytes / (double)n, (double)st.index_bytes / (double)n,
           (double)st.order_bytes / (double)n, (unsigned long long)st.runs);
    memtable_unref(mt);

    /* Again, timing each put to find the longest pause. */
    mt = memtable_new(opts);
    for (i = 0; i < n; i++) {
        w.row_len = flights_row(row, ids[i]);
        w.key_len = (uint32_t)key_encode_row(s, row, key, sizeof(key));
        w.key = key;
        w.hash = key_hash(key, w.key_len);
        t0 = time_mono_ns();
        memtable_put(mt, i / BATCH + 1, &w);
        t = time_mono_ns() - t0;
        if (t > max_put)
            max_put = t;
    }
    printf("%s: longest single put %.2f ms\n", label, (double)max_put / 1e6);

    /* Point gets of existing keys in random order, active memtable. */
    t0 = time_mono_ns();
    for (i = 0; i < n; i++) {
        int64_t id = ids[rnd() % n];
        struct value v = {.type = FIELD_INT64};
        size_t kl;

        v.u.i = id;
        kl = key_encode(&v, 1, key, sizeof(key));
        found += memtable_get(mt, 1, key, kl, key_hash(key, kl), UINT64_MAX, &rec);
    }
    dt = secs(t0);
    printf("%s: get (active): %.2f M/s, %llu found\n", label, (double)n / dt / 1e6,
           (unsigned long long)found);

    /* 1,000-row range scans from random start keys. */
    lat = calloc(nq, sizeof(*lat));
    for (i = 0; i < nq; i++) {
        struct value v = {.type = FIELD_INT64};
        struct memtable_range r;
        size_t kl, k = 0;

        v.u.i = ids[rnd() % n];
        kl = key_encode(&v, 1, key, sizeof(key));
        memset(&r, 0, sizeof(r));
        r.lo = key;
        r.lo_len = kl;
        t0 = time_mono_ns();
        it = memtable_iter_new(mt, 1, &r, UINT64_MAX, 0);
        while (k < 1000 && memtable_iter_next(it, &rec))
            k++;
        memtable_iter_free(it);
        lat[i] = time_mono_ns() - t0;
    }
    qsort(lat, nq, sizeof(*lat), cmp_u64);
    printf("%s: 1000-row range scan (active): p50 %.1f us, p99 %.1f us\n", label,
           (double)lat[nq / 2] / 1e3, (double)lat[nq * 99 / 100] / 1e3);

    /* Full scan, active. */
    t0 = time_mono_ns();
    it = memtable_iter_new(mt, 1, NULL, UINT64_MAX, 0);
    for (scanned = 0; memtable_iter_next(it, &rec);)
        scanned++;
    memtable_iter_free(it);
    dt = secs(t0);
    printf("%s: full scan (active): %llu rows, %.1f M rows/s\n", label, (unsigned long long)scanned,
           (double)scanned / dt / 1e6);

    t0 = time_mono_ns();
    memtable_freeze(mt);
    printf("%s: freeze: %.1f ms\n", label, secs(t0) * 1e3);

    t0 = time_mono_ns();
    for (i = 0, found = 0; i < n; i++) {
        struct value v = {.type = FIELD_INT64};
        size_t kl;

        v.u.i = ids[rnd() % n];
        kl = key_encode(&v, 1, key, sizeof(key));
        found += memtable_get(mt, 1, key, kl, key_hash(key, kl), UINT64_MAX, &rec);
    }
    dt = secs(t0);
    printf("%s: get (frozen): %.2f M/s\n", label, (double)n / dt / 1e6);

    for (i = 0; i < nq; i++) {
        struct value v = {.type = FIELD_INT64};
        struct memtable_range r;
        size_t kl, k = 0;

        v.u.i = ids[rnd() % n];
        kl = key_encode(&v, 1, key, sizeof(key));
        memset(&r, 0, sizeof(r));
        r.lo = key;
        r.lo_len = kl;
        t0 = time_mono_ns();
        it = memtable_iter_new(mt, 1, &r, UINT64_MAX, 0);
        while (k < 1000 && memtable_iter_next(it, &rec))
            k++;
        memtable_iter_free(it);
        lat[i] = time_mono_ns() - t0;
    }
    qsort(lat, nq, sizeof(*lat), cmp_u64);
    printf("%s: 1000-row range scan (frozen): p50 %.1f us, p99 %.1f us\n", label,
           (double)lat[nq / 2] / 1e3, (double)lat[nq * 99 / 100] / 1e3);
    free(lat);

    t0 = time_mono_ns();
    it = memtable_iter_new(mt, 1, NULL, UINT64_MAX, 0);
    for (scanned = 0; memtable_iter_next(it, &rec);)
        scanned++;
    memtable_iter_free(it);
    dt = secs(t0);
    printf("%s: full scan (frozen): %.1f M rows/s\n", label, (double)scanned / dt / 1e6);
    memtable_unref(mt);
}

static uint64_t fnv1a(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    return h;
}

static void bench_hash(void)
{
    static const size_t lens[] = {8, 24, 64};
    uint8_t buf[64];
    const size_t n = 20000000;

    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rnd();
    for (size_t l = 0; l < ST_ARRAY_SIZE(lens); l++) {
        volatile uint64_t sink = 0;
        uint64_t t0 = time_mono_ns();
        double a, b;

        for (size_t i = 0; i < n; i++) {
            buf[0] = (uint8_t)i;
            sink += key_hash(buf, lens[l]);
        }
        a = secs(t0) * 1e9 / (double)n;
        t0 = time_mono_ns();
        for (size_t i = 0; i < n; i++) {
            buf[0] = (uint8_t)i;
            sink += fnv1a(buf, lens[l]);
        }
        b = secs(t0) * 1e9 / (double)n;
        printf("hash %2zu-byte key: key_hash %.1f ns, FNV-1a %.1f ns\n", lens[l], a, b);
        (void)sink;
    }
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    struct memtable_opts o = {0};
    struct field f[6] = {
        mkfield("id", FIELD_INT64, false),      mkfield("ts", FIELD_TIMESTAMP, false),
        mkfield("origin", FIELD_STRING, false), mkfield("destination", FIELD_STRING, false),
        mkfield("delay", FIELD_INT64, true),    mkfield("distance", FIELD_FLOAT64, false),
    };
    const char *pk[] = {"id"};
    struct schema *s;
    struct err err;
    int64_t *ids;

    if (argc > 2)
        o.run_size = (uint32_t)atoi(argv[2]);
    if (argc > 3)
        o.fanin = (uint32_t)atoi(argv[3]);
    if (argc > 4)
        o.max_run = (uint32_t)atoi(argv[4]);
    if (schema_new(1, f, 6, pk, 1, "ts", &s, &err)) {
        fprintf(stderr, "bench_memtable: %s\n", err.msg);
        return 1;
    }
    bench_hash();
    ids = calloc(n, sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        ids[i] = (int64_t)i + 1;
    run("sequential ids", s, &o, ids, n);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int64_t)(rnd() >> 1);
    run("random ids", s, &o, ids, n);
    free(ids);
    schema_free(s);
    return 0;
}
