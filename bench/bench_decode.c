/*
 * Micro-benchmark of the ingest decoder (src/engine/decode.c).
 *
 * Generates N flights-like NDJSON records (~104 bytes each, the shape of
 * notes/limits.md) in memory, decodes them in batches of B records with
 * decode_batch() against the flights schema, and prints records/s and
 * MB/s of NDJSON for the best of R rounds. One thread, no I/O.
 *
 *   bench_decode [-n records] [-b batch] [-r rounds] [-a]   (-a: JSON array form)
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/decode.h"
#include "engine/schema.h"
#include "util/strbuf.h"
#include "util/timeutil.h"

static struct schema *flights_schema(void)
{
    static const char *const pk[] = {"id"};
    struct field f[6];
    struct schema *s;
    struct err err;
    const char *names[] = {"id", "ts", "origin", "destination", "delay", "distance"};
    enum field_type types[] = {FIELD_INT64,  FIELD_TIMESTAMP, FIELD_STRING,
                               FIELD_STRING, FIELD_INT64,     FIELD_FLOAT64};

    memset(f, 0, sizeof(f));
    for (int i = 0; i < 6; i++) {
        st_strlcpy(f[i].name, names[i], sizeof(f[i].name));
        f[i].type = types[i];
    }
    f[4].nullable = true;
    if (schema_new(1, f, 6, pk, 1, "ts", &s, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        exit(1);
    }
    return s;
}

/* Appends one flights record for record number i. */
static void add_record(struct strbuf *sb, uint64_t i, bool array, bool first)
{
    static const char *const airports[] = {"LAS", "PHL", "SFO", "LAX", "ORD", "ATL", "DEN", "JFK"};
    uint64_t x = i * 0x9e3779b97f4a7c15ull;
    unsigned day = (unsigned)(i / 2880) % 28 + 1;
    unsigned min = (unsigned)(i % 1440);

    if (array)
        strbuf_addstr(sb, first ? "[" : ",");
    strbuf_addf(sb,
                "{\"id\":%llu,\"ts\":\"2001-01-%02uT%02u:%02u:00Z\",\"origin\":\"%s\","
                "\"destination\":\"%s\",\"delay\":%d,\"distance\":%u}\n",
                (unsigned long long)i + 1, day, min / 60, min % 60, airports[(x >> 20) % 8],
                airports[(x >> 30) % 8], (int)((x >> 40) % 200) - 30,
                (unsigned)((x >> 50) % 2500) + 100);
}

int main(int argc, char **argv)
{
    size_t n = 2000000, batch = 10000;
    int rounds = 5;
    bool array = false;
    struct schema *s = flights_schema();
    struct strbuf *bodies;
    size_t nbatches, total_bytes = 0;
    struct decode_opts o;
    struct decode_result res;
    struct err err;
    double best = 1e30;
    int c;

    while ((c = getopt(argc, argv, "n:b:r:a")) != -1) {
        switch (c) {
        case 'n':
            n = strtoull(optarg, NULL, 10);
            break;
        case 'b':
            batch = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'a':
            array = true;
            break;
        default:
            fprintf(stderr, "usage: bench_decode [-n records] [-b batch] [-r rounds] [-a]\n");
            return 2;
        }
    }
    if (!batch || !n || rounds < 1)
        return 2;
    nbatches = (n + batch - 1) / batch;
    bodies = calloc_array(nbatches, sizeof(*bodies));
    for (size_t b = 0; b < nbatches; b++) {
        strbuf_init(&bodies[b], batch * 110);
        for (size_t i = b * batch; i < n && i < (b + 1) * batch; i++)
            add_record(&bodies[b], i, array, i == b * batch);
        if (array)
            strbuf_addstr(&bodies[b], "]\n");
        total_bytes += bodies[b].len;
    }

    decode_opts_init(&o);
    o.format = array ? DECODE_JSON_ARRAY : DECODE_NDJSON;
    decode_result_init(&res);
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = time_mono_ns();
        size_t rows = 0;
        double secs;

        for (size_t b = 0; b < nbatches; b++) {
            if (decode_batch(s, bodies[b].buf, bodies[b].len, &o, &res, &err) || res.rejected) {
                fprintf(stderr, "bench_decode: batch %zu: %s %s\n", b, err.msg,
                        res.ndetails ? res.details[0].reason : "");
                return 1;
            }
            rows += res.nrows;
        }
        secs = (double)(time_mono_ns() - t0) / 1e9;
        if (rows != n) {
            fprintf(stderr, "bench_decode: %zu rows, expected %zu\n", rows, n);
            return 1;
        }
        if (secs < best)
            best = secs;
    }
    printf("bench_decode: %s, %zu records of %.1f bytes, batches of %zu, best of %d: "
           "%.2f M records/s, %.0f MB/s\n",
           array ? "json array" : "ndjson", n, (double)total_bytes / (double)n, batch, rounds,
           (double)n / best / 1e6, (double)total_bytes / best / 1e6);

    decode_result_release(&res);
    for (size_t b = 0; b < nbatches; b++)
        strbuf_release(&bodies[b]);
    free(bodies);
    schema_free(s);
    return 0;
}
