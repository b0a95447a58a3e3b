/*
 * Segments, compaction and checkpoints on the real binary (the engine's
 * own unit tests, tests/unit/test_engine.c, cover the algorithms; this
 * suite checks what a client and an operator see):
 *
 *   - 60 000 records through 1 MiB memtables (flushed by the workers,
 *     503s retried), then updates of some keys, an admin compaction, a
 *     SIGTERM restart: point reads, count and sum queries and as_of reads
 *     of the overwritten values give the same answers before and after,
 *     and /v1/admin/status counts the stored rows exactly;
 *   - an admin checkpoint trims the WAL to one file, and the data it
 *     removed from the WAL reads back from segments after kill -9;
 *   - one flipped byte in a segment's first data block: reads of that
 *     data answer 500 data_corrupt (never wrong data), the server stays
 *     up, other tables and fresh writes are unaffected, and the damage is
 *     counted in /metrics and logged with the file name;
 *   - with mvcc.history_retention 0 a compaction drops overwritten
 *     versions at once (as_of them: 409 snapshot_too_old), except those
 *     a held snapshot still sees;
 *   - a start removes what a crash leaves behind (*.tmp files anywhere in
 *     the data dir, segment files the manifest does not list) before it
 *     is ready;
 *   - small writes share a 1 MiB memtable instead of freezing one each.
 *
 * Kills in the middle of flushes and compactions are in test_crash.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "util/strbuf.h"

#define TENANT  "store"
#define SLOW_MS 60000 /* admin jobs and big bodies, also under sanitizers */

static const char kv_def[] = "{\"name\": \"%s\", \"fields\": ["
                             "{\"name\": \"id\", \"type\": \"int64\"},"
                             "{\"name\": \"val\", \"type\": \"int64\"},"
                             "{\"name\": \"pad\", \"type\": \"string\"}"
                             "], \"primary_key\": [\"id\"]}";

/* ---- helpers ------------------------------------------------------------ */

/* The value generation gen gives record id: distinct per (id, gen). */
static long long val_of(long long id, int gen)
{
    return id * 7 + (long long)gen * 1000003LL;
}

/* Appends records [from, to) of generation gen as NDJSON (about 100 bytes each). */
static void add_records(struct strbuf *sb, long long from, long long to, int gen)
{
    for (long long id = from; id < to; id++) {
        char fill[64];
        int n = 30 + (int)((id * 13 + gen) % 29);

        memset(fill, 'a' + (int)((id + gen) % 26), (size_t)n);
        fill[n] = '\0';
        strbuf_addf(sb, "{\"id\": %lld, \"val\": %lld, \"pad\": \"r%lld-g%d-%s\"}\n", id,
                    val_of(id, gen), id, gen, fill);
    }
}

static void make_table(const struct srv *s, const char *name)
{
    char def[512];

    snprintf(def, sizeof(def), kv_def, name);
    api_create_table(s, TENANT, NULL, def);
}

/* One request with a long deadline (admin jobs, big bodies); fails the test without an answer. */
static void slow_request(int port, const char *method, const char *path, const char *token,
                         const char *headers, const void *body, size_t len, struct hresp *r)
{
    struct hconn *c = hc_open(port);
    enum hread rc = api_send(c, method, path, token, headers, body, len, SLOW_MS, r);

    hc_close(c);
    ck_assert_msg(rc == HREAD_OK, "%s %s: no answer (hread %d)", method, path, (int)rc);
}

static int retries_503; /* 503 answers retried by ingest() */

/*
 * Ingests body into table, retrying while the server answers 503 with
 * Retry-After (frozen memtables waiting for their flush); returns the
 * commit version.
 */
static long long ingest(const struct srv *s, const char *table, const struct strbuf *body)
{
    char path[160];
    long long deadline = harness_now_ms() + SLOW_MS;

    snprintf(path, sizeof(path), "/v1/tenants/" TENANT "/tables/%s/records", table);
    for (;;) {
        struct hresp r;
        long long v;

        slow_request(s->ingest_port, "POST", path, s->token, API_NDJSON, body->buf, body->len, &r);
        if (r.status == 503) {
            ck_assert_msg(hresp_header_has(&r, "Retry-After", ""), "503 without Retry-After: %s",
                          r.body);
            ck_assert_msg(harness_now_ms() < deadline, "still 503 after %d ms: %s", SLOW_MS,
                          r.body);
            hresp_free(&r);
            retries_503++;
            harness_sleep_ms(20);
            continue;
        }
        api_expect(&r, 200);
        v = api_int(&r, "version");
        hresp_free(&r);
        return v;
    }
}

/* POST an admin job (compact, checkpoint); expects 200 "done"; caller frees *r. */
static void admin_job(const struct srv *s, const char *path, const char *body, struct hresp *r)
{
    slow_request(s->query_port, "POST", path, s->token, NULL, body, body ? strlen(body) : 0, r);
    api_expect(r, 200);
    ck_assert_str_eq(json_string_value(api_get(r, "status")), "done");
}

/* An integer member of /v1/admin/status "storage". */
static long long storage_stat(const struct srv *s, const char *name)
{
    char path[96];
    struct hresp r;
    long long v;

    api_req(s->query_port, "GET", "/v1/admin/status", s->token, NULL, NULL, &r);
    api_expect(&r, 200);
    snprintf(path, sizeof(path), "storage.%s", name);
    v = api_int(&r, path);
    hresp_free(&r);
    return v;
}

/* The value of an unlabelled series in /metrics (-1 when absent). */
static double metric_value(const struct srv *s, const char *name)
{
    struct hresp r;
    size_t n = strlen(name);
    double v = -1;

    http_get(s->query_port, "/metrics", NULL, &r);
    api_expect(&r, 200);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, name, n) && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    }
    hresp_free(&r);
    return v;
}

/* Polls the server log for up to timeout_ms until needle appears at least n times. */
static bool log_count_wait(const struct srv *s, const char *needle, int n, long timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        char *log = srv_log(s);
        int found = 0;

        for (const char *p = strstr(log, needle); p; p = strstr(p + 1, needle))
            found++;
        free(log);
        if (found >= n)
            return true;
        if (harness_now_ms() > deadline)
            return false;
        harness_sleep_ms(20);
    }
}

/* Point read of id; asserts 200 with val and the pad of generation gen. */
static void expect_record(const struct srv *s, const char *table, long long id, long long as_of,
                          int gen)
{
    char key[32], want_pad[48];
    struct hresp r;
    int st;
    const char *pad;

    snprintf(key, sizeof(key), "%lld", id);
    st = api_get_record(s, TENANT, table, key, NULL, as_of, &r);
    ck_assert_msg(st == 200, "%s/%lld as_of %lld: %d %s", table, id, as_of, st, r.body);
    ck_assert_int_eq(api_int(&r, "record.id"), id);
    ck_assert_msg(api_int(&r, "record.val") == val_of(id, gen),
                  "%s/%lld as_of %lld: val %lld, want generation %d (%lld)", table, id, as_of,
                  api_int(&r, "record.val"), gen, val_of(id, gen));
    snprintf(want_pad, sizeof(want_pad), "r%lld-g%d-", id, gen);
    pad = json_string_value(api_get(&r, "record.pad"));
    ck_assert_msg(pad && !strncmp(pad, want_pad, strlen(want_pad)), "%s/%lld: pad '%s'", table, id,
                  pad ? pad : "(none)");
    hresp_free(&r);
}

/* count and sum(val) of table (at as_of when > 0) through POST .../query. */
static void count_sum(const struct srv *s, const char *table, long long as_of, long long *count,
                      long long *sum)
{
    char body[512];
    struct hresp r;
    json_t *row;

    if (as_of > 0)
        snprintf(body, sizeof(body),
                 "{\"table\": \"%s\", \"as_of\": %lld, \"aggregates\": [{\"fn\": \"count\", "
                 "\"as\": \"n\"}, {\"fn\": \"sum\", \"field\": \"val\", \"as\": \"s\"}]}",
                 table, as_of);
    else
        snprintf(body, sizeof(body),
                 "{\"table\": \"%s\", \"aggregates\": [{\"fn\": \"count\", \"as\": \"n\"}, "
                 "{\"fn\": \"sum\", \"field\": \"val\", \"as\": \"s\"}]}",
                 table);
    slow_request(s->query_port, "POST", "/v1/tenants/" TENANT "/query", s->token, NULL, body,
                 strlen(body), &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "rows")), 1);
    row = json_array_get(api_get(&r, "rows"), 0);
    ck_assert_msg(json_is_integer(json_object_get(row, "n")), "count: %s", r.body);
    *count = (long long)json_integer_value(json_object_get(row, "n"));
    *sum = json_is_integer(json_object_get(row, "s"))
               ? (long long)json_integer_value(json_object_get(row, "s"))
               : -1;
    hresp_free(&r);
}

static void expect_count_sum(const struct srv *s, const char *table, long long as_of,
                             long long count, long long sum)
{
    long long n, sm;

    count_sum(s, table, as_of, &n, &sm);
    ck_assert_msg(n == count && sm == sum, "%s as_of %lld: count %lld sum %lld, want %lld %lld",
                  table, as_of, n, sm, count, sum);
}

/* Files in dir whose names end in suffix; with first != NULL, the smallest name goes there. */
static int count_files(const char *dir, const char *suffix, char *first, size_t first_cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t sl = strlen(suffix);
    int n = 0;

    ck_assert_msg(d != NULL, "opendir '%s': %s", dir, strerror(errno));
    if (first)
        first[0] = '\0';
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);

        if (l <= sl || strcmp(de->d_name + l - sl, suffix) != 0)
            continue;
        n++;
        if (first && (!first[0] || strcmp(de->d_name, first) < 0))
            snprintf(first, first_cap, "%s", de->d_name);
    }
    closedir(d);
    return n;
}

static void restart(struct srv *old, struct srv *next, const struct srv_opts *base, bool kill9)
{
    struct srv_opts o = *base;

    o.data_dir = old->data_dir;
    if (kill9)
        srv_kill(old);
    else
        srv_stop(old, 20000);
    srv_start(next, &o);
}

/* ---- a. segments survive a restart -------------------------------------- */

#define A_RECORDS 60000
#define A_BATCH   2000
#define A_UPDATED 3000 /* ids [0, A_UPDATED) get generation 1 */

/* Everything test_segments_restart checks, run before and after the restart. */
static void check_all(const struct srv *s, long long v_first, long long v_before_update)
{
    long long sum_now = 0, sum_first = 0, sum_old = 0;

    for (long long id = 0; id < A_RECORDS; id++) {
        sum_now += val_of(id, id < A_UPDATED ? 1 : 0);
        sum_old += val_of(id, 0);
        if (id < A_BATCH)
            sum_first += val_of(id, 0);
    }
    expect_count_sum(s, "kv", 0, A_RECORDS, sum_now);
    expect_count_sum(s, "kv", v_first, A_BATCH, sum_first);
    expect_count_sum(s, "kv", v_before_update, A_RECORDS, sum_old);
    for (long long id = 0; id < A_RECORDS; id += 1499)
        expect_record(s, "kv", id, 0, id < A_UPDATED ? 1 : 0);
    expect_record(s, "kv", A_RECORDS - 1, 0, 0);
    expect_record(s, "kv", A_UPDATED - 1, 0, 1);
    expect_record(s, "kv", A_UPDATED, 0, 0);
    /* Overwritten values at older versions. */
    expect_record(s, "kv", 0, v_first, 0);
    expect_record(s, "kv", 1234, v_first, 0);
    expect_record(s, "kv", A_UPDATED - 1, v_before_update, 0);
    expect_record(s, "kv", 2, v_before_update, 0);
    /* Not written yet at v_first. */
    {
        struct hresp r;

        ck_assert_int_eq(api_get_record(s, TENANT, "kv", "59999", NULL, v_first, &r), 404);
        hresp_free(&r);
    }
}

START_TEST(test_segments_restart)
{
    static const char *const env[] = {"STRATA_STORAGE_MEMTABLE_SIZE=1MiB", NULL};
    struct srv_opts o = {.env = env};
    struct srv s1, s2;
    struct strbuf body = STRBUF_INIT;
    long long v_first = 0, v_before_update = 0, v_last;
    struct hresp r;

    srv_start(&s1, &o);
    api_create_tenant(&s1, TENANT);
    make_table(&s1, "kv");
    for (long long from = 0; from < A_RECORDS; from += A_BATCH) {
        long long v;

        strbuf_reset(&body);
        add_records(&body, from, from + A_BATCH, 0);
        v = ingest(&s1, "kv", &body);
        if (!v_first)
            v_first = v;
        v_before_update = v;
    }
    strbuf_reset(&body);
    add_records(&body, 0, A_UPDATED, 1);
    v_last = ingest(&s1, "kv", &body);
    ck_assert_int_gt(v_last, v_before_update);

    /*
     * Several memtables were flushed on their own (about 6 MB of records,
     * 1 MiB memtables, at most 4 frozen at once).
     */
    ck_assert_msg(log_count_wait(&s1, "engine flushed memtable", 3, 5000),
                  "fewer than 3 flushes logged");
    ck_assert_int_ge(storage_stat(&s1, "segments"), 1);
    check_all(&s1, v_first, v_before_update);

    admin_job(&s1, "/v1/admin/compact", NULL, &r);
    ck_assert_int_ge(api_int(&r, "segments_removed"), 1);
    ck_assert_int_eq(api_int(&r, "segments_written"), 1);
    ck_assert_int_eq(api_int(&r, "versions_dropped"), 0); /* history_retention: 1h */
    hresp_free(&r);
    /* One table compacted whole: one segment with every version of every key. */
    ck_assert_int_eq(storage_stat(&s1, "segments"), 1);
    ck_assert_int_eq(storage_stat(&s1, "rows_stored"), A_RECORDS + A_UPDATED);
    ck_assert_int_ge(storage_stat(&s1, "flushed_version"), v_last);
    ck_assert_int_gt(storage_stat(&s1, "segment_bytes"), 0);
    ck_assert_int_le(storage_stat(&s1, "oldest_readable_version"), v_first);
    check_all(&s1, v_first, v_before_update);

    restart(&s1, &s2, &o, false);
    ck_assert_int_eq(api_version(&s2, TENANT, NULL), v_last);
    ck_assert_int_eq(storage_stat(&s2, "segments"), 1);
    ck_assert_int_eq(storage_stat(&s2, "rows_stored"), A_RECORDS + A_UPDATED);
    check_all(&s2, v_first, v_before_update);
    /* Writes go on above every old version. */
    strbuf_reset(&body);
    add_records(&body, 5, 6, 2);
    ck_assert_int_gt(ingest(&s2, "kv", &body), v_last);
    expect_record(&s2, "kv", 5, 0, 2);
    expect_record(&s2, "kv", 5, v_last, 1);
    expect_record(&s2, "kv", 5, v_first, 0);
    srv_stop(&s2, 20000);
    if (retries_503)
        fprintf(stderr, "test_storage: %d ingest retries after 503\n", retries_503);
    strbuf_release(&body);
}
END_TEST

/*
 * Small writes share a memtable: with memtable_size 1MiB (the smallest
 * allowed), three batches of ten records (about 3 KB) must not freeze
 * anything. memtable_bytes() counts the memtable's first 1 MiB arena
 * chunk (MEMTABLE_DEFAULT_ARENA_CHUNK) in full, so today every write
 * freezes its memtable and becomes a segment of its own.
 */
START_TEST(test_small_writes_share_a_memtable)
{
    static const char *const env[] = {"STRATA_STORAGE_MEMTABLE_SIZE=1MiB", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct strbuf body = STRBUF_INIT;

    srv_start(&s, &o);
    api_create_tenant(&s, TENANT);
    make_table(&s, "kv");
    for (int b = 0; b < 3; b++) {
        strbuf_reset(&body);
        add_records(&body, b * 10, b * 10 + 10, 0);
        ingest(&s, "kv", &body);
    }
    /* A freeze is synchronous with the write: it shows as a second memtable or a flush. */
    ck_assert_msg(storage_stat(&s, "memtables") == 1 && storage_stat(&s, "flushed_version") == 0,
                  "30 small records froze memtables: %lld memtables, %lld bytes, flushed version "
                  "%lld, %lld segments",
                  storage_stat(&s, "memtables"), storage_stat(&s, "memtable_bytes"),
                  storage_stat(&s, "flushed_version"), storage_stat(&s, "segments"));
    srv_stop(&s, 20000);
    strbuf_release(&body);
}
END_TEST

/* ---- b. a checkpoint trims the WAL -------------------------------------- */

#define B_BATCHES 3
#define B_PER     23      /* records per batch */
#define B_PAD     1000000 /* bytes of each record's pad: 3 x 23 MB > one 64 MiB WAL file */

START_TEST(test_checkpoint_trims_wal)
{
    /* Memtables large enough that nothing is flushed before the checkpoint. */
    static const char *const env[] = {"STRATA_STORAGE_MEMTABLE_SIZE=256MiB", NULL};
    struct srv_opts o = {.env = env};
    struct srv s1, s2;
    struct strbuf body = STRBUF_INIT;
    char wal[HARNESS_PATH_MAX + 8];
    char *pad = malloc(B_PAD + 1);
    struct hresp r;
    long long v = 0, n, sum, want_sum = 0;
    int files;

    ck_assert_ptr_nonnull(pad);
    srv_start(&s1, &o);
    snprintf(wal, sizeof(wal), "%s/wal", s1.data_dir);
    api_create_tenant(&s1, TENANT);
    make_table(&s1, "big");
    for (int b = 0; b < B_BATCHES; b++) {
        strbuf_reset(&body);
        for (int i = 0; i < B_PER; i++) {
            long long id = b * B_PER + i;

            memset(pad, 'a' + (int)(id % 26), B_PAD);
            pad[B_PAD] = '\0';
            strbuf_addf(&body, "{\"id\": %lld, \"val\": %lld, \"pad\": \"%s\"}\n", id,
                        val_of(id, 0), pad);
            want_sum += val_of(id, 0);
        }
        v = ingest(&s1, "big", &body);
    }
    files = count_files(wal, ".log", NULL, 0);
    ck_assert_msg(files >= 2, "%d WAL files before the checkpoint; the test needs more", files);
    ck_assert_int_eq(storage_stat(&s1, "segments"), 0);

    admin_job(&s1, "/v1/admin/checkpoint", NULL, &r);
    ck_assert_int_eq(api_int(&r, "wal_files_removed"), files - 1);
    hresp_free(&r);
    ck_assert_int_eq(count_files(wal, ".log", NULL, 0), 1);
    ck_assert_int_eq(count_files(wal, ".tmp", NULL, 0), 0);
    ck_assert_int_ge(storage_stat(&s1, "flushed_version"), v);
    ck_assert_int_ge(storage_stat(&s1, "segments"), 1);
    ck_assert_int_eq(storage_stat(&s1, "rows_stored"), B_BATCHES * B_PER);

    /* What left the WAL is in segments: it survives kill -9. */
    restart(&s1, &s2, &o, true);
    ck_assert_int_eq(api_version(&s2, TENANT, NULL), v);
    count_sum(&s2, "big", 0, &n, &sum);
    ck_assert_int_eq(n, B_BATCHES * B_PER);
    ck_assert_int_eq(sum, want_sum);
    ck_assert_int_eq(api_get_record(&s2, TENANT, "big", "0", NULL, 0, &r), 200);
    ck_assert_uint_eq(strlen(json_string_value(api_get(&r, "record.pad"))), B_PAD);
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s2, TENANT, "big", "68", NULL, 0, &r), 200);
    ck_assert_int_eq(api_int(&r, "record.val"), val_of(68, 0));
    ck_assert_int_eq(json_string_value(api_get(&r, "record.pad"))[B_PAD - 1], 'a' + 68 % 26);
    hresp_free(&r);
    srv_stop(&s2, 20000);
    free(pad);
    strbuf_release(&body);
}
END_TEST

/* ---- c. a damaged segment ----------------------------------------------- */

#define C_RECORDS 2000 /* one block (at most 4096 entries, 256 KiB) */

/* The table id in a segment file's header (offset 16, little-endian). */
static uint64_t segment_table_id(const char *path)
{
    unsigned char h[32];
    int fd = open(path, O_RDONLY);
    uint64_t id = 0;

    ck_assert_msg(fd >= 0, "open '%s': %s", path, strerror(errno));
    ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    close(fd);
    ck_assert_msg(!memcmp(h, "STRATASG", 8), "'%s' is not a segment", path);
    for (int i = 7; i >= 0; i--)
        id = id << 8 | h[16 + i];
    return id;
}

/* XORs the byte at off in path with 0xff. */
static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;

    ck_assert_msg(fd >= 0, "open '%s': %s", path, strerror(errno));
    ck_assert_int_eq(pread(fd, &b, 1, off), 1);
    b ^= 0xff;
    ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
    ck_assert_int_eq(fsync(fd), 0);
    close(fd);
}

START_TEST(test_corrupt_segment)
{
    struct srv_opts o = {0};
    struct srv s1, s2;
    struct strbuf body = STRBUF_INIT;
    char segdir[HARNESS_PATH_MAX + 16], victim[HARNESS_PATH_MAX + 16 + 320];
    char names[2][256];
    struct hresp r;
    long long sum_b = 0;
    uint64_t tid[2];
    DIR *d;
    struct dirent *de;
    int nseg = 0;

    srv_start(&s1, &o);
    api_create_tenant(&s1, TENANT);
    make_table(&s1, "a");
    make_table(&s1, "b");
    add_records(&body, 0, C_RECORDS, 0);
    ingest(&s1, "a", &body);
    ingest(&s1, "b", &body);
    for (long long id = 0; id < C_RECORDS; id++)
        sum_b += val_of(id, 0);
    admin_job(&s1, "/v1/admin/checkpoint", NULL, &r);
    hresp_free(&r);
    ck_assert_int_eq(storage_stat(&s1, "segments"), 2);
    srv_stop(&s1, 20000);

    /* The segment of table a: created first, so the smaller table id. */
    snprintf(segdir, sizeof(segdir), "%s/segments", s1.data_dir);
    d = opendir(segdir);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);

        if (l < 5 || strcmp(de->d_name + l - 4, ".seg") != 0)
            continue;
        ck_assert_int_lt(nseg, 2);
        snprintf(names[nseg], sizeof(names[nseg]), "%s", de->d_name);
        snprintf(victim, sizeof(victim), "%s/%s", segdir, de->d_name);
        tid[nseg++] = segment_table_id(victim);
    }
    closedir(d);
    ck_assert_int_eq(nseg, 2);
    ck_assert_uint_ne(tid[0], tid[1]);
    snprintf(victim, sizeof(victim), "%s/%s", segdir, names[tid[0] < tid[1] ? 0 : 1]);
    /* Blocks start at offset 32; the first is kilobytes long. */
    flip_byte(victim, 100);

    o.data_dir = s1.data_dir;
    srv_start(&s2, &o);
    ck_assert_double_eq(metric_value(&s2, "strata_segment_corruptions_total"), 0);

    /* Damaged bytes are never data: an error with a JSON body. */
    ck_assert_int_eq(api_get_record(&s2, TENANT, "a", "0", NULL, 0, &r), 500);
    ck_assert_error(&r, 500, "data_corrupt");
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s2, TENANT, "a", "1999", NULL, 0, &r), 500);
    ck_assert_error(&r, 500, "data_corrupt");
    hresp_free(&r);
    api_req(s2.query_port, "POST", "/v1/tenants/" TENANT "/query", s2.token, NULL,
            "{\"table\": \"a\", \"aggregates\": [{\"fn\": \"count\", \"as\": \"n\"}]}", &r);
    ck_assert_error(&r, 500, "data_corrupt");
    hresp_free(&r);

    /* The server is up, says where the damage is, and counts it. */
    http_get(s2.query_port, "/health/live", NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);
    ck_assert_msg(srv_log_wait(&s2, strrchr(victim, '/') + 1, 2000),
                  "the log does not name the damaged file %s", victim);
    ck_assert_msg(metric_value(&s2, "strata_segment_corruptions_total") >= 1,
                  "strata_segment_corruptions_total %g",
                  metric_value(&s2, "strata_segment_corruptions_total"));

    /* Another table reads as before, points and scans. */
    expect_record(&s2, "b", 0, 0, 0);
    expect_record(&s2, "b", 1777, 0, 0);
    expect_record(&s2, "b", 1999, 0, 0);
    expect_record(&s2, "b", C_RECORDS - 1, 0, 0);
    expect_count_sum(&s2, "b", 0, C_RECORDS, sum_b);

    /* Table a takes writes, and keys outside the damaged segment read. */
    strbuf_reset(&body);
    add_records(&body, 1000000, 1000001, 3);
    ingest(&s2, "a", &body);
    expect_record(&s2, "a", 1000000, 0, 3);
    http_get(s2.ingest_port, "/health/live", NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);
    srv_stop(&s2, 20000);
    strbuf_release(&body);
}
END_TEST

/* ---- leftovers of a crash are removed at start ------------------------- */

/*
 * What a kill during a flush, compaction or checkpoint leaves in the data
 * dir: files still named *.tmp (a segment, MANIFEST, a WAL file, and the
 * catalog and idempotency files that checkpoint() writes with
 * fs_write_atomic()), and segment files the manifest does not list (a
 * segment written but never added, or one a compaction removed from the
 * manifest but had not unlinked yet; here a copy of a live one, which
 * must not be read twice). A restart must remove all of them before it
 * is ready; the workers write nothing meanwhile (default intervals).
 */
START_TEST(test_start_removes_leftovers)
{
    static const char *const leftovers[] = {"segments/00000000dead0000.seg",
                                            "segments/00000000dead0001.seg",
                                            "segments/00000000beef0000.seg.tmp",
                                            "MANIFEST.tmp",
                                            "wal/wal-00000000cafe0000.tmp",
                                            "catalog.json.tmp",
                                            "idempotency.tmp"};
    struct srv_opts o = {0};
    struct srv s1, s2;
    struct strbuf body = STRBUF_INIT, left = STRBUF_INIT;
    char segdir[HARNESS_PATH_MAX + 16], live[HARNESS_PATH_MAX + 96], p[HARNESS_PATH_MAX + 64];
    char first[64];
    char *bytes;
    size_t len;
    long long sum = 0;
    struct hresp r;

    srv_start(&s1, &o);
    api_create_tenant(&s1, TENANT);
    make_table(&s1, "kv");
    add_records(&body, 0, 100, 0);
    ingest(&s1, "kv", &body);
    for (long long id = 0; id < 100; id++)
        sum += val_of(id, 0);
    admin_job(&s1, "/v1/admin/checkpoint", NULL, &r);
    hresp_free(&r);
    srv_stop(&s1, 20000);

    snprintf(segdir, sizeof(segdir), "%s/segments", s1.data_dir);
    ck_assert_int_eq(count_files(segdir, ".seg", first, sizeof(first)), 1);
    snprintf(live, sizeof(live), "%s/%s", segdir, first);
    bytes = harness_read_file(live, &len);
    ck_assert_ptr_nonnull(bytes);
    for (size_t i = 0; i < sizeof(leftovers) / sizeof(leftovers[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", s1.data_dir, leftovers[i]);
        if (i == 1) {
            FILE *f = fopen(p, "wb");

            ck_assert_ptr_nonnull(f);
            ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
            ck_assert_int_eq(fclose(f), 0);
        } else {
            harness_write_file(p, "left by a crash\n");
        }
    }
    free(bytes);

    o.data_dir = s1.data_dir;
    srv_start(&s2, &o);
    for (size_t i = 0; i < sizeof(leftovers) / sizeof(leftovers[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", s2.data_dir, leftovers[i]);
        if (access(p, F_OK) == 0)
            strbuf_addf(&left, " %s", leftovers[i]);
    }
    ck_assert_msg(left.len == 0, "still there once the server is ready:%s", left.buf);
    ck_assert_int_eq(count_files(segdir, ".seg", NULL, 0), 1);
    ck_assert_int_eq(storage_stat(&s2, "segments"), 1);
    expect_count_sum(&s2, "kv", 0, 100, sum);
    srv_stop(&s2, 20000);
    strbuf_release(&body);
    strbuf_release(&left);
}
END_TEST

/* ---- d. history_retention 0 --------------------------------------------- */

START_TEST(test_history_retention_zero)
{
    static const char *const env[] = {"STRATA_MVCC_HISTORY_RETENTION=0", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct strbuf body = STRBUF_INIT;
    char path[160];
    struct hresp r;
    long long v1, v2, v3, snap_v;
    char *snap_id;

    srv_start(&s, &o);
    api_create_tenant(&s, TENANT);
    make_table(&s, "kv");
    add_records(&body, 0, 100, 0);
    v1 = ingest(&s, "kv", &body);

    /* A held snapshot at v1. */
    api_req(s.query_port, "POST", "/v1/tenants/" TENANT "/snapshots", s.token, NULL,
            "{\"ttl\": \"10m\"}", &r);
    api_expect(&r, 201);
    snap_v = api_int(&r, "version");
    ck_assert_int_eq(snap_v, v1);
    snap_id = strdup(json_string_value(api_get(&r, "id")));
    hresp_free(&r);

    strbuf_reset(&body);
    add_records(&body, 0, 100, 1);
    v2 = ingest(&s, "kv", &body);
    strbuf_reset(&body);
    add_records(&body, 0, 50, 2);
    v3 = ingest(&s, "kv", &body);

    /* Nothing compacted yet: every version reads. */
    expect_record(&s, "kv", 7, v1, 0);
    expect_record(&s, "kv", 7, v2, 1);
    expect_record(&s, "kv", 7, 0, 2);

    /* The snapshot pins v1 and everything newer. */
    admin_job(&s, "/v1/admin/compact", NULL, &r);
    ck_assert_int_eq(api_int(&r, "versions_dropped"), 0);
    hresp_free(&r);
    ck_assert_int_eq(storage_stat(&s, "rows_stored"), 250);
    expect_record(&s, "kv", 7, v1, 0);
    expect_record(&s, "kv", 7, v2, 1);
    expect_record(&s, "kv", 77, v1, 0);
    expect_record(&s, "kv", 77, v3, 1);
    expect_record(&s, "kv", 7, 0, 2);
    ck_assert_int_le(storage_stat(&s, "oldest_readable_version"), v1);

    /* Without the snapshot the next compaction drops everything overwritten. */
    snprintf(path, sizeof(path), "/v1/tenants/" TENANT "/snapshots/%s", snap_id);
    api_req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    admin_job(&s, "/v1/admin/compact", NULL, &r);
    /* Keys 0..49: v1 and v2 are shadowed by v3; keys 50..99: v1 by v2. */
    ck_assert_int_eq(api_int(&r, "versions_dropped"), 150);
    hresp_free(&r);
    ck_assert_int_ge(storage_stat(&s, "oldest_readable_version"), v3);
    ck_assert_int_eq(storage_stat(&s, "rows_stored"), 100);

    ck_assert_int_eq(api_get_record(&s, TENANT, "kv", "7", NULL, v1, &r), 409);
    ck_assert_error(&r, 409, "snapshot_too_old");
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, TENANT, "kv", "77", NULL, v2, &r), 409);
    ck_assert_error(&r, 409, "snapshot_too_old");
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/tenants/" TENANT "/query", s.token, NULL,
            "{\"table\": \"kv\", \"as_of\": 1, \"aggregates\": [{\"fn\": \"count\"}]}", &r);
    ck_assert_error(&r, 409, "snapshot_too_old");
    hresp_free(&r);
    /* The newest versions stay. */
    expect_record(&s, "kv", 7, 0, 2);
    expect_record(&s, "kv", 77, 0, 1);
    expect_record(&s, "kv", 77, v3, 1);
    srv_stop(&s, 20000);
    free(snap_id);
    strbuf_release(&body);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("storage");
    TCase *tc = harness_tcase("storage", 90);

    harness_init();
    tcase_add_test(tc, test_segments_restart);
    tcase_add_test(tc, test_small_writes_share_a_memtable);
    tcase_add_test(tc, test_checkpoint_trims_wal);
    tcase_add_test(tc, test_corrupt_segment);
    tcase_add_test(tc, test_start_removes_leftovers);
    tcase_add_test(tc, test_history_retention_zero);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
