/*
 * bench_segment: segment files (src/engine/segment.c) on generated data.
 *
 * Two data sets, generated deterministically in key order:
 *   flights  ~104-byte NDJSON records, as bench/gen_ndjson.py writes them:
 *            {"id":1,"ts":"2001-01-01T00:01:00Z","origin":"LAS",
 *             "destination":"PHL","delay":33,"distance":2176}
 *            key id, time field ts (one minute apart), 30 airports,
 *            delay ~ exponential(25) - 10, distance uniform 100..4000
 *   logs     ~240-byte log events: tenant (5), ts (ms, 1-3 ms apart), host
 *            (60), service (12), level (info/warn/error/debug), latency_ms
 *            (float64, 3 decimals, log-normal), bytes, and a message from 16
 *            templates with ids, paths, status codes and a 64-bit hex trace id
 *            in it; key (ts, host)
 *
 * For each it prints the NDJSON bytes the records would take, the bytes of
 * the segment file (on the real file system, fsynced), their ratio (the
 * target is <= 0.20), the write cost per record, then a full scan, a
 * time-range scan (with blocks read and skipped) and random point reads,
 * with the default settings; then the ratio under other block sizes, LZ4 HC,
 * and floats stored raw instead of shuffled.
 *
 * Usage: bench_segment [records [dir]]   (default 1000000, $TMPDIR or /tmp)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/colenc.h"
#include "engine/key.h"
#include "engine/segment.h"
#include "util/timeutil.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double unif(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* Natural log without libm (bench links only the engine): ln x = 2 atanh((x-1)/(x+1)). */
static double ln(double x)
{
    int e = 0;
    double y;
    double y2;
    double sum = 0;
    double term;

    while (x > 2) {
        x /= 2;
        e++;
    }
    while (x < 1) {
        x *= 2;
        e--;
    }
    y = (x - 1) / (x + 1);
    y2 = y * y;
    term = y;
    for (int k = 1; k < 40; k += 2) {
        sum += term / k;
        term *= y2;
    }
    return 2 * sum + e * 0.6931471805599453;
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

static void put_le(struct strbuf *sb, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        strbuf_addch(sb, (char)(v >> (8 * i)));
}

/* A row of non-null values (schema.h format). */
static void build_row(const struct schema *s, const struct value *v, struct strbuf *out)
{
    uint64_t bits;

    strbuf_reset(out);
    put_le(out, 0, 4);
    for (uint32_t i = 0; i < (s->nfields + 7) / 8; i++)
        strbuf_addch(out, 0);
    for (uint32_t i = 0; i < s->nfields; i++) {
        switch (s->fields[i].type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            put_le(out, (uint64_t)v[i].u.i, 8);
            break;
        case FIELD_FLOAT64:
            memcpy(&bits, &v[i].u.f, 8);
            put_le(out, bits, 8);
            break;
        case FIELD_BOOL:
            strbuf_addch(out, v[i].u.b);
            break;
        default:
            put_le(out, v[i].u.s.len, 4);
            strbuf_add(out, v[i].u.s.ptr, v[i].u.s.len);
            break;
        }
    }
    for (int i = 0; i < 4; i++)
        out->buf[i] = (char)(out->len >> (8 * i));
}

static void fmt_ts(int64_t ms, bool with_ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    if (with_ms)
        snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    else
        snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ------------------------------------------------------------------ */
/* Data sets */

static const char *const airports[] = {
    "ATL", "BOS", "BWI", "CLT", "DCA", "DEN", "DFW", "DTW", "EWR", "FLL",
    "HNL", "IAD", "IAH", "JFK", "LAS", "LAX", "LGA", "MCO", "MDW", "MIA",
    "MSP", "ORD", "PDX", "PHL", "PHX", "SAN", "SEA", "SFO", "SLC", "TPA",
};

struct gen {
    const char *name;
    struct schema *s;
    /* Makes record i (in key order) into vals; returns its NDJSON length. */
    size_t (*make)(struct gen *g, uint64_t i, struct value *vals);
    char sbuf[4][320]; /* string values of the current record */
    int64_t ts;        /* logs: time of the previous record */
};

static struct schema *flights_schema(void)
{
    struct field f[6];
    const char *pk[] = {"id"};
    struct schema *s;
    struct err err;

    f[0] = mkfield("id", FIELD_INT64, false);
    f[1] = mkfield("ts", FIELD_TIMESTAMP, false);
    f[2] = mkfield("origin", FIELD_STRING, false);
    f[3] = mkfield("destination", FIELD_STRING, false);
    f[4] = mkfield("delay", FIELD_INT64, false);
    f[5] = mkfield("distance", FIELD_INT64, false);
    if (schema_new(1, f, 6, pk, 1, "ts", &s, &err))
        abort();
    return s;
}

static size_t flights_make(struct gen *g, uint64_t i, struct value *v)
{
    int64_t id = (int64_t)i + 1;
    int o = (int)(rnd() % 30);
    int d = (int)(rnd() % 29);
    int64_t delay = (int64_t)(-ln(1 - unif()) * 25.0) - 10;
    int64_t dist = 100 + (int64_t)(rnd() % 3901);
    char ts[96];

    if (d >= o)
        d++;
    v[0] = (struct value){.type = FIELD_INT64, .u.i = id};
    v[1] = (struct value){.type = FIELD_TIMESTAMP, .u.i = INT64_C(978307200000) + id * 60000};
    v[2] = (struct value){.type = FIELD_STRING, .u.s = {airports[o], 3}};
    v[3] = (struct value){.type = FIELD_STRING, .u.s = {airports[d], 3}};
    v[4] = (struct value){.type = FIELD_INT64, .u.i = delay};
    v[5] = (struct value){.type = FIELD_INT64, .u.i = dist};
    fmt_ts(v[1].u.i, false, ts, sizeof(ts));
    return (size_t)snprintf(g->sbuf[0], sizeof(g->sbuf[0]),
                            "{\"id\":%" PRId64 ",\"ts\":\"%s\",\"origin\":\"%s\","
                            "\"destination\":\"%s\",\"delay\":%" PRId64 ",\"distance\":%" PRId64
                            "}\n",
                            id, ts, airports[o], airports[d], delay, dist);
}

static struct schema *logs_schema(void)
{
    struct field f[8];
    const char *pk[] = {"ts", "host"};
    struct schema *s;
    struct err err;

    f[0] = mkfield("tenant", FIELD_STRING, false);
    f[1] = mkfield("ts", FIELD_TIMESTAMP, false);
    f[2] = mkfield("host", FIELD_STRING, false);
    f[3] = mkfield("service", FIELD_STRING, false);
    f[4] = mkfield("level", FIELD_STRING, false);
    f[5] = mkfield("latency_ms", FIELD_FLOAT64, false);
    f[6] = mkfield("bytes", FIELD_INT64, false);
    f[7] = mkfield("message", FIELD_STRING, false);
    if (schema_new(1, f, 8, pk, 2, "ts", &s, &err))
        abort();
    return s;
}

static const char *const tenants[] = {"acme", "globex", "initech", "umbrella", "hooli"};
static const char *const services[] = {"checkout", "cart",    "search",  "auth",
                                       "payments", "catalog", "gateway", "profile",
                                       "billing",  "notify",  "reports", "inventory"};
static const char *const paths[] = {"/api/v1/orders", "/api/v1/cart",  "/api/v1/search",
                                    "/api/v1/users",  "/api/v1/items", "/healthz"};

static size_t logs_make(struct gen *g, uint64_t i, struct value *v)
{
    uint64_t r = rnd() % 100;
    const char *level = r < 80 ? "info" : r < 92 ? "warn" : r < 97 ? "error" : "debug";
    int svc = (int)(rnd() % 12);
    double lat = (double)(int64_t)(1000.0 * 4.0 * (1.0 + -ln(1 - unif()) * 3.0)) / 1000.0;
    int64_t bytes = 200 + (int64_t)(-ln(1 - unif()) * 4000.0);
    uint64_t trace = rnd();
    unsigned id = (unsigned)(rnd() % 100000);
    int status = (r < 85) ? 200 : (r < 92) ? 404 : (r < 97) ? 500 : 302;
    char *msg = g->sbuf[1];
    char ts[96];
    char latbuf[32];

    ST_UNUSED(i);
    g->ts += 1 + (int64_t)(rnd() % 3);
    snprintf(g->sbuf[0], sizeof(g->sbuf[0]), "web-%02d", (int)(rnd() % 60));
    switch (rnd() % 16) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
        snprintf(msg, 320, "request completed method=%s path=%s/%u status=%d trace_id=%016" PRIx64,
                 (rnd() % 4) ? "GET" : "POST", paths[rnd() % 6], id, status, trace);
        break;
    case 6:
    case 7:
        snprintf(msg, 320, "cache miss key=%s:%u ttl=%ds trace_id=%016" PRIx64, services[svc], id,
                 (int)(rnd() % 4) * 300, trace);
        break;
    case 8:
        snprintf(msg, 320,
                 "upstream timeout after %dms host=%s-%d.internal retry=%d trace_id=%016" PRIx64,
                 (int)(rnd() % 5 + 1) * 1000, services[rnd() % 12], (int)(rnd() % 8),
                 (int)(rnd() % 3), trace);
        break;
    case 9:
        snprintf(msg, 320,
                 "user login succeeded user_id=u-%u method=password mfa=%s trace_id=%016" PRIx64,
                 id, (rnd() % 3) ? "true" : "false", trace);
        break;
    case 10:
        snprintf(
            msg, 320,
            "payment authorized order_id=o-%u amount=%u.%02u currency=USD trace_id=%016" PRIx64, id,
            (unsigned)(rnd() % 500), (unsigned)(rnd() % 100), trace);
        break;
    case 11:
        snprintf(msg, 320, "slow query table=%s rows=%u duration_ms=%u trace_id=%016" PRIx64,
                 services[svc], (unsigned)(rnd() % 10000), (unsigned)(rnd() % 3000), trace);
        break;
    case 12:
        snprintf(msg, 320, "connection pool exhausted pool=%s-db active=%d waiting=%d",
                 services[svc], 50, (int)(rnd() % 20));
        break;
    case 13:
        snprintf(msg, 320, "health check ok");
        break;
    case 14:
        snprintf(msg, 320, "rate limit exceeded tenant=%s limit=%d window=60s trace_id=%016" PRIx64,
                 tenants[rnd() % 5], (int)(rnd() % 4 + 1) * 1000, trace);
        break;
    default:
        snprintf(msg, 320, "job finished job=%s-export-%u items=%u elapsed=%ums", services[svc],
                 id % 1000, (unsigned)(rnd() % 50000), (unsigned)(rnd() % 90000));
        break;
    }
    v[0] = (struct value){.type = FIELD_STRING, .u.s = {tenants[rnd() % 5], 0}};
    v[0].u.s.len = (uint32_t)strlen(v[0].u.s.ptr);
    v[1] = (struct value){.type = FIELD_TIMESTAMP, .u.i = g->ts};
    v[2] = (struct value){.type = FIELD_STRING, .u.s = {g->sbuf[0], (uint32_t)strlen(g->sbuf[0])}};
    v[3] = (struct value){.type = FIELD_STRING,
                          .u.s = {services[svc], (uint32_t)strlen(services[svc])}};
    v[4] = (struct value){.type = FIELD_STRING, .u.s = {level, (uint32_t)strlen(level)}};
    v[5] = (struct value){.type = FIELD_FLOAT64, .u.f = lat};
    v[6] = (struct value){.type = FIELD_INT64, .u.i = bytes};
    v[7] = (struct value){.type = FIELD_STRING, .u.s = {msg, (uint32_t)strlen(msg)}};
    fmt_ts(g->ts, true, ts, sizeof(ts));
    /* JSON numbers as a client would print them: %.17g is what strata emits; %g is typical. */
    snprintf(latbuf, sizeof(latbuf), "%.3f", lat);
    return (size_t)snprintf(g->sbuf[2], sizeof(g->sbuf[2]),
                            "{\"tenant\":\"%s\",\"ts\":\"%s\",\"host\":\"%s\",\"service\":\"%s\","
                            "\"level\":\"%s\",\"latency_ms\":%s,\"bytes\":%" PRId64
                            ",\"message\":\"",
                            v[0].u.s.ptr, ts, g->sbuf[0], services[svc], level, latbuf, bytes) +
           strlen(msg) + 3;
}

/* ------------------------------------------------------------------ */

struct result {
    uint64_t ndjson; /* NDJSON bytes */
    uint64_t file;   /* segment bytes */
    uint64_t blocks; /* data blocks */
    double write_ns; /* per record, fsync included */
};

static void reset_gen(struct gen *g)
{
    rng_state = 12345;
    g->ts = INT64_C(1795494937000); /* 2026-11-24 */
}

static struct result write_set(struct gen *g, const char *path, uint64_t n,
                               const struct segment_writer_opts *o, struct strbuf *keys)
{
    struct segment_writer *w;
    struct segment_info info;
    struct strbuf row = STRBUF_INIT;
    struct value v[8];
    struct err err;
    struct result res = {0};
    uint8_t key[128];
    uint64_t t0;
    uint64_t gen_ns = 0;

    reset_gen(g);
    if (segment_writer_new(fs_posix(), path, g->s, 1, o, &w, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    t0 = time_mono_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t g0 = time_mono_ns();
        size_t klen;

        res.ndjson += g->make(g, i, v);
        build_row(g->s, v, &row);
        klen = key_encode_row(g->s, row.buf, key, sizeof(key));
        if (keys && i % 97 == 0) {
            strbuf_addch(keys, (char)klen);
            strbuf_add(keys, key, klen);
        }
        gen_ns += time_mono_ns() - g0;
        if (segment_writer_add(w, key, klen, 1 + i / 1000, false, row.buf, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
    }
    if (segment_writer_finish(w, &info, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    res.write_ns = (double)(time_mono_ns() - t0 - gen_ns) / (double)n;
    res.file = info.file_bytes;
    res.blocks = info.blocks;
    strbuf_release(&row);
    return res;
}

/* Average microseconds of a point read over (up to 2000) keys. */
static double get_us(struct segment *seg, const struct strbuf *keys)
{
    struct strbuf buf = STRBUF_INIT;
    struct segment_rec rec;
    struct err err;
    uint64_t t = time_mono_ns();
    int gets = 0;

    for (size_t off = 0; off < keys->len && gets < 2000; gets++) {
        size_t kl = (uint8_t)keys->buf[off];

        if (segment_get(seg, keys->buf + off + 1, kl, UINT64_MAX, &rec, &buf, &err) != ST_OK) {
            fprintf(stderr, "get failed: %s\n", err.msg);
            exit(1);
        }
        off += 1 + kl;
    }
    strbuf_release(&buf);
    return (double)(time_mono_ns() - t) / 1e3 / (gets ? gets : 1);
}

static void read_bench(const char *path, uint64_t n, const struct strbuf *keys, int64_t t0,
                       int64_t t1)
{
    struct segment *seg;
    struct segment_iter *it;
    struct segment_iter_stats st;
    struct segment_range r = {.has_time = true, .time_lo = t0, .time_hi = t1};
    struct segment_rec rec;
    struct err err;
    uint64_t t;
    uint64_t got = 0;

    if (segment_open(fs_posix(), path, &seg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    t = time_mono_ns();
    it = segment_iter_new(seg, NULL, UINT64_MAX, 0);
    while (segment_iter_next(it, &rec))
        got++;
    segment_iter_free(it);
    printf("  full scan          %.1f ns/record (%" PRIu64 " records, rows rebuilt)\n",
           (double)(time_mono_ns() - t) / (double)n, got);
    t = time_mono_ns();
    got = 0;
    it = segment_iter_new(seg, &r, UINT64_MAX, 0);
    while (segment_iter_next(it, &rec))
        got++;
    segment_iter_get_stats(it, &st);
    segment_iter_free(it);
    printf("  time-range scan    %" PRIu64 " rows in %.2f ms: blocks read %" PRIu64
           ", skipped by time %" PRIu64 "\n",
           got, (double)(time_mono_ns() - t) / 1e6, st.blocks_read, st.blocks_skipped_time);
    printf("  point get          %.1f us each (one block read and decoded per get)\n",
           get_us(seg, keys));
    segment_unref(seg);
}

static void run(struct gen *g, const char *dir, uint64_t n)
{
    char path[512];
    struct strbuf keys = STRBUF_INIT;
    struct result res;
    struct {
        const char *what;
        struct segment_writer_opts o;
        int force_float;
    } variants[] = {
        {"blocks of 64 KiB", {.block_bytes = 64 * 1024}, -1},
        {"blocks of 1024 rows", {.block_rows = 1024}, -1},
        {"blocks of 1 MiB, 16384 rows", {.block_bytes = 1 << 20, .block_rows = 16384}, -1},
        {"LZ4 HC level 9", {.lz4_hc_level = 9}, -1},
        {"floats shuffled, not decimal", {0}, COLENC_FLOAT_SHUFFLE},
        {"floats raw, not decimal", {0}, COLENC_FLOAT_RAW},
    };

    snprintf(path, sizeof(path), "%s/bench-segment-%s.seg", dir, g->name);
    res = write_set(g, path, n, NULL, &keys);
    printf("%s: %" PRIu64 " records, %.1f NDJSON bytes/record\n", g->name, n,
           (double)res.ndjson / (double)n);
    printf("  segment            %" PRIu64 " bytes, %.2f bytes/record, %" PRIu64 " blocks\n",
           res.file, (double)res.file / (double)n, res.blocks);
    printf("  bytes on disk / NDJSON bytes = %.4f\n", (double)res.file / (double)res.ndjson);
    printf("  write              %.0f ns/record (encode, LZ4, write, fsync)\n", res.write_ns);
    if (g->s->time_field >= 0) {
        int64_t t0 = g->make == flights_make ? INT64_C(978307200000) + (int64_t)n / 2 * 60000
                                             : INT64_C(1795494937000) + (int64_t)n * 3 / 4;

        read_bench(path, n, &keys, t0, t0 + (g->make == flights_make ? 60 * 60000 : 1000));
    }
    for (size_t i = 0; i < ST_ARRAY_SIZE(variants); i++) {
        struct segment *seg;
        struct err err;

        colenc_test_force_float(variants[i].force_float);
        res = write_set(g, path, n, &variants[i].o, NULL);
        colenc_test_force_float(-1);
        if (segment_open(fs_posix(), path, &seg, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        printf("  %-30s ratio %.4f, write %.0f ns/record, get %.1f us\n", variants[i].what,
               (double)res.file / (double)res.ndjson, res.write_ns, get_us(seg, &keys));
        segment_unref(seg);
    }
    unlink(path);
    strbuf_release(&keys);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    const char *dir = argc > 2 ? argv[2] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    struct gen flights = {.name = "flights", .make = flights_make};
    struct gen logs = {.name = "logs", .make = logs_make};

    if (!n)
        n = 1;
    flights.s = flights_schema();
    logs.s = logs_schema();
    run(&flights, dir, n);
    run(&logs, dir, n);
    schema_free(flights.s);
    schema_free(logs.s);
    return 0;
}
