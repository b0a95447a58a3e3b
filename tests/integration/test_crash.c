/*
 * Crash test: kill -9 during concurrent ingest, restart on the same data
 * directory, and prove that nothing acknowledged was lost and nothing
 * unacknowledged is half there.
 *
 * Three client threads ingest small NDJSON batches (1 to 8 records) with
 * ids no other batch uses, each with an Idempotency-Key of its own, over
 * keep-alive connections. Every batch ends in one of three states: acked
 * (200 and a version), unknown (sent, and the server died before
 * answering), or unexpected (any other answer from a live server, which
 * fails the test, except 503 not_ready: the server's memory is full, the
 * batch was refused and must be absent). The main thread sleeps a random time (drand48 with a
 * fixed seed), SIGKILLs the server, restarts it on the same data dir and
 * publishes the new port; the threads reconnect by themselves.
 *
 * After each restart, before the clients go on, it checks that
 * GET .../version is at least the highest version acked before the kill,
 * and reads back every batch that ended since the previous check:
 *
 *   acked    every record is there, with record_version = the batch's
 *            version (ids are never rewritten);
 *   unknown  either all of its records or none, and all at one version
 *            (atomic batches); then the batch is sent again with its
 *            Idempotency-Key: a batch that is there must be answered with
 *            its version and Idempotent-Replayed, one that is not must
 *            commit now and be read back.
 *
 * At the end every acked batch is read again (its first and last record,
 * or all of them in the short mode), so records also survive the later
 * crashes, and the server must stop cleanly on SIGTERM.
 *
 * A second case (below, "storage") kills the server while flushes,
 * compactions and checkpoints run, with upserts checked against a model
 * of every key and the data dir checked for leftovers.
 *
 * Short by default (4 kills, well under 30 s). The environment makes it
 * longer, for scripts/crash_test.sh: STRATA_CRASH_KILLS (number of kills),
 * STRATA_CRASH_SECONDS (stop killing after this long; 0: no limit),
 * STRATA_CRASH_SEED (the random seed), STRATA_CRASH_THREADS (1 to 8),
 * STRATA_CRASH_PACE_MS (a pause after each batch, to bound the data a
 * long run writes and reads back; 0 by default), and for the second case
 * STRATA_CRASH_STORAGE_KILLS (its number of kills, 4 by default). Each
 * case is a Check test case of its own ("crash", "storage"), so
 * CK_RUN_CASE picks one.
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

#define MAX_THREADS 8
#define MAX_BATCH   8
#define TENANT      "crash"
#define RECS        "/v1/tenants/" TENANT "/tables/events/records"

enum bstate {
    B_ACKED,      /* 200 with a version */
    B_UNKNOWN,    /* no answer: the server died */
    B_REFUSED,    /* 503 not_ready: memory full, nothing written */
    B_UNEXPECTED, /* another answer from a live server */
};

struct batch {
    int seq;           /* per thread, from 0 */
    int size;          /* records, 1..MAX_BATCH */
    enum bstate state; /* how it ended */
    long long version; /* B_ACKED: the answer's version */
    int status;        /* B_UNEXPECTED: the HTTP status */
};

struct client {
    pthread_t tid;
    int idx;               /* thread number */
    pthread_mutex_t mu;    /* guards batches and n */
    struct batch *batches; /* ended batches, in order */
    size_t n;              /* how many */
    size_t cap;            /* allocated */
    size_t checked;        /* batches already checked after a restart (main thread) */
};

static struct {
    pthread_mutex_t mu;     /* guards port and epoch */
    int port;               /* ingest port, or -1 while the server is down */
    int epoch;              /* bumped at each restart */
    const char *token;      /* the write key */
    long pace_ms;           /* pause between a thread's batches */
    atomic_bool stop;       /* the clients end */
    atomic_llong max_acked; /* highest acked version */
} shared = {.mu = PTHREAD_MUTEX_INITIALIZER, .port = -1};

static long env_long(const char *name, long def, long lo, long hi)
{
    const char *v = getenv(name);
    char *end;
    long x;

    if (!v || !*v)
        return def;
    x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi) {
        fprintf(stderr, "test_crash: %s=%s is not a number from %ld to %ld\n", name, v, lo, hi);
        exit(2);
    }
    return x;
}

/* The id of record i of batch seq of thread t: unique over the run. */
static long long rec_id(int t, int seq, int i)
{
    return ((long long)t * 100000000LL + seq) * MAX_BATCH + i;
}

static size_t batch_body(char *buf, size_t cap, int t, const struct batch *b)
{
    size_t n = 0;

    for (int i = 0; i < b->size; i++)
        n += (size_t)snprintf(buf + n, cap - n,
                              "{\"id\": %lld, \"ts\": %d, \"who\": \"t%d-b%d-r%d\"}\n",
                              rec_id(t, b->seq, i), b->seq, t, b->seq, i);
    return n;
}

static void batch_key_header(char *buf, size_t cap, int t, int seq)
{
    snprintf(buf, cap, API_NDJSON "Idempotency-Key: crash-t%d-b%d\r\n", t, seq);
}

static void client_record(struct client *c, const struct batch *b)
{
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->batches = realloc(c->batches, c->cap * sizeof(*c->batches));
        if (!c->batches)
            abort();
    }
    c->batches[c->n++] = *b;
    pthread_mutex_unlock(&c->mu);
}

static bool has_code(const struct hresp *r, const char *code)
{
    const char *got = json_string_value(api_get(r, "error.code"));

    return got && !strcmp(got, code);
}

/* A client thread: no assertions here, every outcome is recorded. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    struct hconn *conn = NULL;
    int conn_epoch = -1;
    int seq = 0;
    char body[MAX_BATCH * 96];
    char hdr[160];

    while (!atomic_load(&shared.stop)) {
        struct batch b;
        struct hresp r;
        enum hread rc;
        size_t len;
        int port, epoch;

        pthread_mutex_lock(&shared.mu);
        port = shared.port;
        epoch = shared.epoch;
        pthread_mutex_unlock(&shared.mu);
        if (conn && conn_epoch != epoch) {
            hc_close(conn);
            conn = NULL;
        }
        if (port <= 0) {
            harness_sleep_ms(2);
            continue;
        }
        if (!conn) {
            conn = hc_try_open(port);
            conn_epoch = epoch;
            if (!conn) {
                harness_sleep_ms(2);
                continue;
            }
        }

        memset(&b, 0, sizeof(b));
        b.seq = seq++;
        b.size = 1 + (int)((b.seq * 7 + c->idx) % MAX_BATCH);
        len = batch_body(body, sizeof(body), c->idx, &b);
        batch_key_header(hdr, sizeof(hdr), c->idx, b.seq);
        rc = api_send(conn, "POST", RECS, shared.token, hdr, body, len, 5000, &r);
        if (rc == HREAD_OK && r.status == 200 && json_is_integer(api_get(&r, "version"))) {
            long long v = (long long)json_integer_value(api_get(&r, "version"));
            long long m = atomic_load(&shared.max_acked);

            b.state = B_ACKED;
            b.version = v;
            while (v > m && !atomic_compare_exchange_weak(&shared.max_acked, &m, v))
                ;
        } else if (rc == HREAD_OK && r.status == 503 && has_code(&r, "not_ready")) {
            b.state = B_REFUSED;
            b.status = r.status;
        } else if (rc == HREAD_OK) {
            b.state = B_UNEXPECTED;
            b.status = r.status;
        } else {
            b.state = B_UNKNOWN;
        }
        if (rc == HREAD_OK)
            hresp_free(&r);
        if (rc != HREAD_OK || b.state != B_ACKED) {
            hc_close(conn);
            conn = NULL;
        }
        client_record(c, &b);
        if (shared.pace_ms > 0)
            harness_sleep_ms(shared.pace_ms);
    }
    hc_close(conn);
    return NULL;
}

/* ---- checks (main thread) ------------------------------------------------ */

/* GET one record on the keep-alive connection *q (reopened as needed). */
static int get_rec(const struct srv *s, struct hconn **q, long long id, struct hresp *r)
{
    char path[160];

    snprintf(path, sizeof(path), "/v1/tenants/" TENANT "/tables/events/records/%lld", id);
    for (int attempt = 0;; attempt++) {
        enum hread rc;

        if (!*q)
            *q = hc_open(s->query_port);
        rc = api_send(*q, "GET", path, s->token, NULL, NULL, 0, 5000, r);
        if (rc == HREAD_OK)
            return r->status;
        hc_close(*q);
        *q = NULL;
        ck_assert_msg(attempt < 2, "GET %s: no answer (hread %d)", path, (int)rc);
    }
}

/*
 * Reads records [from, to) of batch b of thread t; returns how many are
 * there; *rv gets their record_version (all must share it).
 */
static int read_batch(const struct srv *s, struct hconn **q, int t, const struct batch *b, int from,
                      int to, long long *rv)
{
    int found = 0;

    *rv = 0;
    for (int i = from; i < to; i++) {
        struct hresp r;
        int st = get_rec(s, q, rec_id(t, b->seq, i), &r);

        if (st == 200) {
            char want[64];
            long long v = api_int(&r, "record_version");
            const char *who = json_string_value(api_get(&r, "record.who"));

            snprintf(want, sizeof(want), "t%d-b%d-r%d", t, b->seq, i);
            ck_assert_msg(who && !strcmp(who, want), "record %lld: who '%s', want '%s'",
                          rec_id(t, b->seq, i), who ? who : "(none)", want);
            ck_assert_msg(*rv == 0 || *rv == v,
                          "batch t%d-b%d is split over versions %lld and %lld", t, b->seq, *rv, v);
            *rv = v;
            found++;
        } else {
            ck_assert_msg(st == 404, "record %lld: status %d %s", rec_id(t, b->seq, i), st, r.body);
        }
        hresp_free(&r);
    }
    return found;
}

/* Sends an unknown batch again with its Idempotency-Key; checks the answer. */
static void resend(const struct srv *s, int t, const struct batch *b, bool was_there, long long rv)
{
    char body[MAX_BATCH * 96];
    char hdr[160];
    struct hresp r;
    size_t len = batch_body(body, sizeof(body), t, b);

    batch_key_header(hdr, sizeof(hdr), t, b->seq);
    api_request(s->ingest_port, "POST", RECS, s->token, hdr, body, len, &r);
    api_expect(&r, 200);
    if (was_there) {
        ck_assert_msg(hresp_header_has(&r, "Idempotent-Replayed", "true"),
                      "batch t%d-b%d committed before the crash but not replayed: %s", t, b->seq,
                      r.body);
        ck_assert_int_eq(api_int(&r, "version"), rv);
    } else {
        ck_assert_msg(!hresp_header_has(&r, "Idempotent-Replayed", "true"),
                      "batch t%d-b%d is not there, yet its key was replayed: %s", t, b->seq,
                      r.body);
    }
    ck_assert_int_eq(api_int(&r, "accepted"), b->size);
    hresp_free(&r);
}

struct tally {
    long acked;
    long refused;
    long unknown_none;
    long unknown_all;
    long records;
};

/* Checks the batches of every client that ended since the last call. */
static void check_new(const struct srv *s, struct client *cl, int nthreads, struct tally *ty)
{
    struct hconn *q = NULL;

    for (int t = 0; t < nthreads; t++) {
        struct client *c = &cl[t];
        size_t n;

        pthread_mutex_lock(&c->mu);
        n = c->n;
        pthread_mutex_unlock(&c->mu);
        for (size_t i = c->checked; i < n; i++) {
            struct batch b;
            long long rv;
            int found;

            pthread_mutex_lock(&c->mu);
            b = c->batches[i];
            pthread_mutex_unlock(&c->mu);
            ck_assert_msg(b.state != B_UNEXPECTED, "batch t%d-b%d: a live server answered %d", t,
                          b.seq, b.status);
            found = read_batch(s, &q, t, &b, 0, b.size, &rv);
            ty->records += found;
            if (b.state == B_REFUSED) {
                ck_assert_msg(found == 0, "refused batch t%d-b%d: %d of %d records", t, b.seq,
                              found, b.size);
                ty->refused++;
                continue;
            }
            if (b.state == B_ACKED) {
                ck_assert_msg(found == b.size,
                              "acked batch t%d-b%d (version %lld): %d of %d records", t, b.seq,
                              b.version, found, b.size);
                ck_assert_msg(rv == b.version, "acked batch t%d-b%d: version %lld, read %lld", t,
                              b.seq, b.version, rv);
                ty->acked++;
                continue;
            }
            ck_assert_msg(found == 0 || found == b.size,
                          "unacknowledged batch t%d-b%d is half there: %d of %d records", t, b.seq,
                          found, b.size);
            if (found)
                ty->unknown_all++;
            else
                ty->unknown_none++;
            resend(s, t, &b, found > 0, rv);
            ck_assert_int_eq(read_batch(s, &q, t, &b, 0, b.size, &rv), b.size);
        }
        c->checked = n;
    }
    hc_close(q);
}

/* Reads every acked batch again (all records, or the first and last). */
static void check_all_acked(const struct srv *s, struct client *cl, int nthreads, bool full)
{
    struct hconn *q = NULL;

    for (int t = 0; t < nthreads; t++) {
        for (size_t i = 0; i < cl[t].n; i++) {
            const struct batch *b = &cl[t].batches[i];
            long long rv;

            if (b->state != B_ACKED)
                continue;
            if (full || b->size <= 2) {
                ck_assert_int_eq(read_batch(s, &q, t, b, 0, b->size, &rv), b->size);
            } else {
                ck_assert_int_eq(read_batch(s, &q, t, b, 0, 1, &rv), 1);
                ck_assert_int_eq(read_batch(s, &q, t, b, b->size - 1, b->size, &rv), 1);
            }
            ck_assert_int_eq(rv, b->version);
        }
    }
    hc_close(q);
}

static void publish(int port)
{
    pthread_mutex_lock(&shared.mu);
    shared.port = port;
    shared.epoch++;
    pthread_mutex_unlock(&shared.mu);
}

START_TEST(test_kill_during_ingest)
{
    long kills = env_long("STRATA_CRASH_KILLS", 4, 1, 1000000);
    long seconds = env_long("STRATA_CRASH_SECONDS", 0, 0, 86400 * 7);
    long seed = env_long("STRATA_CRASH_SEED", 20261124, 0, 0x7fffffffL);
    int nthreads = (int)env_long("STRATA_CRASH_THREADS", 3, 1, MAX_THREADS);
    long pace = env_long("STRATA_CRASH_PACE_MS", 0, 0, 10000);
    struct client cl[MAX_THREADS];
    struct srv s[2];
    struct tally ty = {0};
    char data_dir[HARNESS_PATH_MAX];
    struct srv_opts o = {.data_dir = data_dir};
    long long start = harness_now_ms();
    int cur = 0;
    long done = 0;
    char *tok;

    srand48(seed);
    srv_start(&s[0], NULL);
    snprintf(data_dir, sizeof(data_dir), "%s", s[0].data_dir);
    api_create_tenant(&s[0], TENANT);
    tok = api_make_key(&s[0], TENANT, "[\"read\", \"write\", \"manage\"]", NULL);
    api_create_table(&s[0], TENANT, tok,
                     "{\"name\": \"events\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, "
                     "{\"name\": \"ts\", \"type\": \"timestamp\"}, {\"name\": \"who\", \"type\": "
                     "\"string\"}], \"primary_key\": [\"id\"]}");
    shared.token = tok;
    shared.pace_ms = pace;
    atomic_store(&shared.stop, false);
    atomic_store(&shared.max_acked, 0);

    memset(cl, 0, sizeof(cl));
    for (int t = 0; t < nthreads; t++) {
        cl[t].idx = t;
        pthread_mutex_init(&cl[t].mu, NULL);
        ck_assert_int_eq(pthread_create(&cl[t].tid, NULL, client_main, &cl[t]), 0);
    }
    publish(s[0].ingest_port);

    for (done = 0; done < kills; done++) {
        long long acked_before;
        long long v;

        if (seconds > 0 && harness_now_ms() - start > seconds * 1000)
            break;
        /* Let the clients run a random while (more than one group commit). */
        harness_sleep_ms(40 + (long)(drand48() * 400));
        srv_kill(&s[cur]);
        publish(-1);
        acked_before = atomic_load(&shared.max_acked);
        cur = 1 - cur;
        srv_start(&s[cur], &o);

        v = api_version(&s[cur], TENANT, NULL);
        ck_assert_msg(v >= acked_before, "kill %ld: version %lld after restart, %lld was acked",
                      done + 1, v, acked_before);
        check_new(&s[cur], cl, nthreads, &ty);
        publish(s[cur].ingest_port);
    }

    /* A last stretch of writes, then the clients stop. */
    harness_sleep_ms(150);
    atomic_store(&shared.stop, true);
    for (int t = 0; t < nthreads; t++)
        pthread_join(cl[t].tid, NULL);
    check_new(&s[cur], cl, nthreads, &ty);
    check_all_acked(&s[cur], cl, nthreads, kills <= 10);
    ck_assert_int_ge(api_version(&s[cur], TENANT, NULL), atomic_load(&shared.max_acked));
    fprintf(stderr,
            "test_crash: seed %ld, %ld kills, %d threads, pace %ld ms, %.1f s: %ld batches "
            "acked, %ld unacknowledged and absent, %ld unacknowledged and complete, %ld "
            "refused (503 not_ready), %ld records read\n",
            seed, done, nthreads, pace, (double)(harness_now_ms() - start) / 1000.0, ty.acked,
            ty.unknown_none, ty.unknown_all, ty.refused, ty.records);
    /* The run must have exercised something. */
    ck_assert_int_gt(ty.acked, (long)done);
    srv_stop(&s[cur], 10000);
    for (int t = 0; t < nthreads; t++) {
        free(cl[t].batches);
        pthread_mutex_destroy(&cl[t].mu);
    }
    free(tok);
}
END_TEST

/* ==== kills during flush, compaction and checkpoint ======================= */

/*
 * The second case runs the server with 1 MiB memtables (4 MiB after
 * every second restart), tiny compaction tiers (base_size 64KiB, fanout
 * 2, max_segments 4), 50 ms job intervals and mvcc.history_retention 0,
 * so flushes, compactions (which drop overwritten versions at once) and
 * checkpoints (which delete WAL files) run all the time, and kills land
 * in the middle of them.
 *
 * Each client thread owns S_KEYS keys of one of two tables and upserts
 * them over and over: a batch is a run of up to S_MAX_BATCH neighbouring
 * keys (wrapping around), every record carrying the batch's tag (unique
 * over the run) in "b" and a pad derived from key and tag. After an
 * answerless request a thread sends nothing more until the next restart,
 * so its unknown batch is always its last. The main thread keeps the
 * model of what is committed: per key, the tag and version of the last
 * acknowledged write. Before each kill it sometimes asks for a checkpoint
 * or a compaction (?wait=false) and kills 0 to 30 ms later.
 *
 * After each restart, with the clients held back, it checks:
 *   - the version is at least the highest acked one;
 *   - each unknown batch is all there (same tag and record_version on
 *     every key; it then joins the model) or not at all (every key keeps
 *     its modelled value);
 *   - a full scan of each table (POST .../query) gives exactly the
 *     modelled keys, each with its modelled tag and pad; point reads of a
 *     sample also give the modelled record_version;
 *   - junk the test plants before each restart (an unlisted segment
 *     file, a segment, a WAL file and MANIFEST named *.tmp) is gone once
 *     the server is ready;
 *   - the data dir holds no *.tmp file and exactly as many segments/ *.seg
 *     files as /v1/admin/status counts: what the killed flush or
 *     compaction left was removed too; polled for a moment, since the
 *     restarted workers may be writing a file right then.
 *
 * STRATA_CRASH_STORAGE_KILLS sets its number of kills (default 4); the
 * seed, seconds, threads and pace variables apply as to the first case.
 */

#define S_KEYS      3000 /* keys per thread */
#define S_MAX_BATCH 200
#define S_TABLES    2
#define S_TAG_BASE  100000000LL

/* Every second server gets 4 MiB memtables, which hold many batches each. */
static const char *const storage_env[2][10] = {
    {"STRATA_STORAGE_MEMTABLE_SIZE=1MiB", "STRATA_COMPACTION_BASE_SIZE=64KiB",
     "STRATA_COMPACTION_FANOUT=2", "STRATA_COMPACTION_MAX_SEGMENTS=4",
     "STRATA_JOBS_FLUSH_INTERVAL=50ms", "STRATA_JOBS_COMPACTION_INTERVAL=50ms",
     "STRATA_JOBS_CHECKPOINT_INTERVAL=100ms", "STRATA_MVCC_HISTORY_RETENTION=0", NULL},
    {"STRATA_STORAGE_MEMTABLE_SIZE=4MiB", "STRATA_COMPACTION_BASE_SIZE=64KiB",
     "STRATA_COMPACTION_FANOUT=2", "STRATA_COMPACTION_MAX_SEGMENTS=4",
     "STRATA_JOBS_FLUSH_INTERVAL=50ms", "STRATA_JOBS_COMPACTION_INTERVAL=50ms",
     "STRATA_JOBS_CHECKPOINT_INTERVAL=100ms", "STRATA_MVCC_HISTORY_RETENTION=0", NULL},
};

struct sbatch {
    long long tag;     /* "b" of its records: (thread + 1) * S_TAG_BASE + seq */
    int first;         /* first key (index in the thread's key space) */
    int size;          /* keys first, first + 1, ... modulo S_KEYS */
    enum bstate state; /* how it ended */
    long long version; /* B_ACKED: the answer's version */
    int status;        /* B_UNEXPECTED: the HTTP status */
};

struct sclient {
    pthread_t tid;
    int idx;                /* thread number */
    unsigned short rng[3];  /* nrand48 state for the batch shapes */
    pthread_mutex_t mu;     /* guards batches and n */
    struct sbatch *batches; /* ended batches, in order */
    size_t n;               /* how many */
    size_t cap;             /* allocated */
    size_t checked;         /* batches already applied to the model (main thread) */
    long long *tag;         /* model, per key: tag of the last committed write, 0: none */
    long long *ver;         /* model, per key: its commit version */
};

struct stally {
    long acked;
    long refused;
    long unknown_none;
    long unknown_all;
    long rows_scanned;
    long kills_with_tmp; /* kills that left a *.tmp file behind */
    long flushes;        /* logged by the killed servers */
    long compactions;
    long checkpoint_kills;
    long compact_kills;
};

static const char *s_table(int t)
{
    return t % S_TABLES ? "s1" : "s0";
}

static long long s_id(int t, int k)
{
    return (long long)t * S_KEYS + k;
}

/* The pad of key id written by the batch with tag: 40 to 119 bytes, checkable. */
static void s_pad(char *buf, size_t cap, long long id, long long tag)
{
    int n = snprintf(buf, cap, "k%lld-b%lld-", id, tag);
    int fill = 40 + (int)((id * 7 + tag) % 80);

    for (int i = 0; i < fill && (size_t)n + 1 < cap; i++)
        buf[n++] = (char)('a' + (id + tag + i / 8) % 26);
    buf[n] = '\0';
}

static size_t s_body(char *buf, size_t cap, int t, const struct sbatch *b)
{
    size_t n = 0;

    for (int i = 0; i < b->size; i++) {
        long long id = s_id(t, (b->first + i) % S_KEYS);
        char pad[160];

        s_pad(pad, sizeof(pad), id, b->tag);
        n += (size_t)snprintf(buf + n, cap - n, "{\"id\": %lld, \"b\": %lld, \"pad\": \"%s\"}\n",
                              id, b->tag, pad);
    }
    return n;
}

static void sclient_record(struct sclient *c, const struct sbatch *b)
{
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->batches = realloc(c->batches, c->cap * sizeof(*c->batches));
        if (!c->batches)
            abort();
    }
    c->batches[c->n++] = *b;
    pthread_mutex_unlock(&c->mu);
}

/* A client thread of the storage case: no assertions, every outcome is recorded. */
static void *sclient_main(void *arg)
{
    struct sclient *c = arg;
    struct hconn *conn = NULL;
    int conn_epoch = -1, blocked_epoch = -1;
    long long seq = 0;
    size_t cap = (size_t)S_MAX_BATCH * 200;
    char *body = malloc(cap);
    char path[128];

    if (!body)
        abort();
    snprintf(path, sizeof(path), "/v1/tenants/" TENANT "/tables/%s/records", s_table(c->idx));
    while (!atomic_load(&shared.stop)) {
        struct sbatch b;
        struct hresp r;
        enum hread rc;
        size_t len;
        int port, epoch;

        pthread_mutex_lock(&shared.mu);
        port = shared.port;
        epoch = shared.epoch;
        pthread_mutex_unlock(&shared.mu);
        if (conn && conn_epoch != epoch) {
            hc_close(conn);
            conn = NULL;
        }
        if (port <= 0 || epoch == blocked_epoch) {
            harness_sleep_ms(2);
            continue;
        }
        if (!conn) {
            conn = hc_try_open(port);
            conn_epoch = epoch;
            if (!conn) {
                harness_sleep_ms(2);
                continue;
            }
            /* A restarted server may have been given the old port: it must not see writes yet. */
            pthread_mutex_lock(&shared.mu);
            port = shared.epoch == epoch ? port : -1;
            pthread_mutex_unlock(&shared.mu);
            if (port < 0)
                continue;
        }

        memset(&b, 0, sizeof(b));
        b.tag = (c->idx + 1) * S_TAG_BASE + seq++;
        b.first = (int)(nrand48(c->rng) % S_KEYS);
        b.size = 1 + (int)(nrand48(c->rng) % S_MAX_BATCH);
        len = s_body(body, cap, c->idx, &b);
        rc = api_send(conn, "POST", path, shared.token, API_NDJSON, body, len, 10000, &r);
        if (rc == HREAD_OK && r.status == 200 && json_is_integer(api_get(&r, "version"))) {
            long long v = (long long)json_integer_value(api_get(&r, "version"));
            long long m = atomic_load(&shared.max_acked);

            b.state = B_ACKED;
            b.version = v;
            while (v > m && !atomic_compare_exchange_weak(&shared.max_acked, &m, v))
                ;
        } else if (rc == HREAD_OK && r.status == 503 && has_code(&r, "not_ready")) {
            b.state = B_REFUSED; /* frozen memtables full: wait for the flush */
            b.status = r.status;
        } else if (rc == HREAD_OK) {
            b.state = B_UNEXPECTED;
            b.status = r.status;
        } else {
            b.state = B_UNKNOWN;
            blocked_epoch = epoch; /* nothing more until the restart */
        }
        if (rc == HREAD_OK)
            hresp_free(&r);
        if (rc != HREAD_OK || b.state != B_ACKED) {
            hc_close(conn);
            conn = NULL;
        }
        sclient_record(c, &b);
        if (b.state == B_REFUSED)
            harness_sleep_ms(5);
        if (shared.pace_ms > 0)
            harness_sleep_ms(shared.pace_ms);
    }
    hc_close(conn);
    free(body);
    return NULL;
}

/* Point read of key k of thread t: status; *tag and *ver from a 200. */
static int s_read(const struct srv *s, struct hconn **q, int t, int k, long long *tag,
                  long long *ver)
{
    char path[160];
    struct hresp r;
    int st;

    snprintf(path, sizeof(path), "/v1/tenants/" TENANT "/tables/%s/records/%lld", s_table(t),
             s_id(t, k));
    for (int attempt = 0;; attempt++) {
        enum hread rc;

        if (!*q)
            *q = hc_open(s->query_port);
        rc = api_send(*q, "GET", path, s->token, NULL, NULL, 0, 10000, &r);
        if (rc == HREAD_OK)
            break;
        hc_close(*q);
        *q = NULL;
        ck_assert_msg(attempt < 2, "GET %s: no answer (hread %d)", path, (int)rc);
    }
    st = r.status;
    *tag = *ver = 0;
    if (st == 200) {
        char want[160];
        const char *pad = json_string_value(api_get(&r, "record.pad"));

        *tag = api_int(&r, "record.b");
        *ver = api_int(&r, "record_version");
        s_pad(want, sizeof(want), s_id(t, k), *tag);
        ck_assert_msg(pad && !strcmp(pad, want), "%s: pad '%s', want '%s'", path,
                      pad ? pad : "(none)", want);
    } else {
        ck_assert_msg(st == 404, "%s: status %d %s", path, st, r.body);
    }
    hresp_free(&r);
    return st;
}

/* Decides an unknown batch from what the restarted server has: all or nothing. */
static void s_resolve_unknown(const struct srv *s, struct hconn **q, struct sclient *c,
                              const struct sbatch *b, struct stally *ty)
{
    long long rv = 0;
    int found = 0;

    for (int i = 0; i < b->size; i++) {
        int k = (b->first + i) % S_KEYS;
        long long tag, ver;

        s_read(s, q, c->idx, k, &tag, &ver);
        if (tag == b->tag) {
            ck_assert_msg(rv == 0 || rv == ver,
                          "unacknowledged batch %lld is split over versions %lld and %lld", b->tag,
                          rv, ver);
            rv = ver;
            found++;
        } else {
            ck_assert_msg(tag == c->tag[k],
                          "key %lld: tag %lld, want %lld (or %lld from the unacknowledged batch)",
                          s_id(c->idx, k), tag, c->tag[k], b->tag);
        }
    }
    ck_assert_msg(found == 0 || found == b->size,
                  "unacknowledged batch %lld is half there: %d of %d records", b->tag, found,
                  b->size);
    if (!found) {
        ty->unknown_none++;
        return;
    }
    ty->unknown_all++;
    for (int i = 0; i < b->size; i++) {
        c->tag[(b->first + i) % S_KEYS] = b->tag;
        c->ver[(b->first + i) % S_KEYS] = rv;
    }
}

/* Applies the batches that ended since the last check to the model. */
static void s_apply(const struct srv *s, struct sclient *cl, int nthreads, struct stally *ty)
{
    struct hconn *q = NULL;

    for (int t = 0; t < nthreads; t++) {
        struct sclient *c = &cl[t];
        size_t n;

        pthread_mutex_lock(&c->mu);
        n = c->n;
        pthread_mutex_unlock(&c->mu);
        for (size_t i = c->checked; i < n; i++) {
            struct sbatch b;

            pthread_mutex_lock(&c->mu);
            b = c->batches[i];
            pthread_mutex_unlock(&c->mu);
            ck_assert_msg(b.state != B_UNEXPECTED, "batch %lld: a live server answered %d", b.tag,
                          b.status);
            if (b.state == B_REFUSED) {
                ty->refused++;
            } else if (b.state == B_ACKED) {
                for (int j = 0; j < b.size; j++) {
                    c->tag[(b.first + j) % S_KEYS] = b.tag;
                    c->ver[(b.first + j) % S_KEYS] = b.version;
                }
                ty->acked++;
            } else {
                ck_assert_msg(i == n - 1, "thread %d sent batch %lld after one with no answer", t,
                              c->batches[i + 1].tag);
                s_resolve_unknown(s, &q, c, &b, ty);
            }
        }
        c->checked = n;
    }
    hc_close(q);
}

/* Scans both tables whole and compares them with the model; point-reads a sample. */
static void s_compare(const struct srv *s, struct sclient *cl, int nthreads, struct stally *ty)
{
    struct hconn *q = NULL;

    for (int tb = 0; tb < S_TABLES && tb < nthreads; tb++) {
        char body[256];
        struct hresp r;
        struct hconn *c = hc_open(s->query_port);
        enum hread rc;
        json_t *rows, *row;
        size_t i;
        long want = 0;

        snprintf(body, sizeof(body),
                 "{\"table\": \"%s\", \"select\": [\"id\", \"b\", \"pad\"], \"limit\": %d}",
                 s_table(tb), S_KEYS * MAX_THREADS);
        rc = api_send(c, "POST", "/v1/tenants/" TENANT "/query", s->token, NULL, body, strlen(body),
                      30000, &r);
        hc_close(c);
        ck_assert_msg(rc == HREAD_OK, "query %s: no answer (hread %d)", s_table(tb), (int)rc);
        api_expect(&r, 200);
        ck_assert_msg(json_is_null(api_get(&r, "next_cursor")), "scan of %s was cut: %.200s",
                      s_table(tb), r.body);
        rows = api_get(&r, "rows");
        json_array_foreach(rows, i, row)
        {
            long long id = (long long)json_integer_value(json_object_get(row, "id"));
            long long tag = (long long)json_integer_value(json_object_get(row, "b"));
            const char *pad = json_string_value(json_object_get(row, "pad"));
            int t = (int)(id / S_KEYS), k = (int)(id % S_KEYS);
            char want_pad[160];

            ck_assert_msg(id >= 0 && t < nthreads && t % S_TABLES == tb, "%s: stray row %lld",
                          s_table(tb), id);
            ck_assert_msg(tag == cl[t].tag[k],
                          "%s: key %lld has tag %lld (version unknown), want %lld (version %lld)",
                          s_table(tb), id, tag, cl[t].tag[k], cl[t].ver[k]);
            s_pad(want_pad, sizeof(want_pad), id, tag);
            ck_assert_msg(pad && !strcmp(pad, want_pad), "%s: key %lld: pad '%s', want '%s'",
                          s_table(tb), id, pad ? pad : "(none)", want_pad);
        }
        for (int t = tb; t < nthreads; t += S_TABLES)
            for (int k = 0; k < S_KEYS; k++)
                want += cl[t].tag[k] != 0;
        ck_assert_msg((long)json_array_size(rows) == want, "%s: %zu rows, the model has %ld",
                      s_table(tb), json_array_size(rows), want);
        ty->rows_scanned += want;
        hresp_free(&r);
    }
    /* Versions, through point reads of a sample. */
    for (int t = 0; t < nthreads; t++) {
        for (int j = 0; j < 25; j++) {
            int k = (int)(drand48() * S_KEYS);
            long long tag, ver;
            int st = s_read(s, &q, t, k, &tag, &ver);

            ck_assert_msg(st == (cl[t].tag[k] ? 200 : 404), "key %lld: %d", s_id(t, k), st);
            ck_assert_msg(tag == cl[t].tag[k] && ver == cl[t].ver[k],
                          "key %lld: tag %lld version %lld, want %lld version %lld", s_id(t, k),
                          tag, ver, cl[t].tag[k], cl[t].ver[k]);
        }
    }
    hc_close(q);
}

/* Files in dir ending in suffix. */
static int s_count(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t sl = strlen(suffix);
    int n = 0;

    if (!d)
        return 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);

        n += l > sl && !strcmp(de->d_name + l - sl, suffix);
    }
    closedir(d);
    return n;
}

/* *.tmp files in the data dir and its segments/ and wal/. */
static int s_tmp_files(const char *data_dir)
{
    char p[HARNESS_PATH_MAX + 16];
    int n = s_count(data_dir, ".tmp");

    snprintf(p, sizeof(p), "%s/segments", data_dir);
    n += s_count(p, ".tmp");
    snprintf(p, sizeof(p), "%s/wal", data_dir);
    return n + s_count(p, ".tmp");
}

/*
 * Leaves what a kill in the middle of a write may leave, whatever the
 * kill hit: an unlisted segment file, a segment, a manifest and a WAL
 * file still named *.tmp. Junk bytes: the server must remove them unread.
 */
#define S_NPLANTED 3 /* files s_planted_path() names */

/* The path of planted file i of kill n (names no server ever uses). */
static void s_planted_path(char *p, size_t cap, const char *data_dir, size_t i, long n)
{
    char name[64];

    switch (i) {
    case 0:
        snprintf(name, sizeof(name), "segments/00000000dead%04lx.seg", (unsigned long)n & 0xffff);
        break;
    case 1:
        snprintf(name, sizeof(name), "segments/00000000beef%04lx.seg.tmp",
                 (unsigned long)n & 0xffff);
        break;
    default:
        snprintf(name, sizeof(name), "wal/wal-00000000cafe%04lx.tmp", (unsigned long)n & 0xffff);
        break;
    }
    snprintf(p, cap, "%s/%s", data_dir, name);
}

/*
 * Leaves what a kill in the middle of a write may leave, whatever the
 * kill hit: an unlisted segment file, and a segment, a WAL file and a
 * manifest still named *.tmp. Junk bytes: the server must remove them
 * unread.
 */
static void s_plant_leftovers(const char *data_dir, long n)
{
    char p[HARNESS_PATH_MAX + 96];

    for (size_t i = 0; i < S_NPLANTED; i++) {
        s_planted_path(p, sizeof(p), data_dir, i, n);
        harness_write_file(p, "junk left by a crash\n");
    }
    snprintf(p, sizeof(p), "%s/MANIFEST.tmp", data_dir);
    harness_write_file(p, "junk left by a crash\n");
}

/* Right after a restart: the planted files are gone (the workers never write these names). */
static void s_check_planted(const char *data_dir, long n)
{
    char p[HARNESS_PATH_MAX + 96];

    for (size_t i = 0; i < S_NPLANTED; i++) {
        s_planted_path(p, sizeof(p), data_dir, i, n);
        ck_assert_msg(access(p, F_OK) != 0, "'%s' is still there after the restart", p);
    }
}

static long long s_status_segments(const struct srv *s)
{
    struct hresp r;
    long long v;

    api_req(s->query_port, "GET", "/v1/admin/status", s->token, NULL, NULL, &r);
    api_expect(&r, 200);
    v = api_int(&r, "storage.segments");
    hresp_free(&r);
    return v;
}

/*
 * No *.tmp and no unlisted segment file: what a kill left behind was
 * removed at start. The workers run meanwhile, so a moment of both is
 * enough (a leftover never goes away by itself).
 */
static void s_check_dir(const struct srv *s)
{
    char segdir[HARNESS_PATH_MAX + 16];
    long long deadline = harness_now_ms() + 10000;
    int tmp, files;
    long long listed;

    snprintf(segdir, sizeof(segdir), "%s/segments", s->data_dir);
    for (;;) {
        tmp = s_tmp_files(s->data_dir);
        files = s_count(segdir, ".seg");
        listed = s_status_segments(s);
        if (!tmp && files == listed && files == s_count(segdir, ".seg"))
            return;
        ck_assert_msg(harness_now_ms() < deadline,
                      "data dir %s: %d *.tmp files, %d segment files, %lld segments listed",
                      s->data_dir, tmp, files, listed);
        harness_sleep_ms(10);
    }
}

static int log_count(const struct srv *s, const char *needle)
{
    char *log = srv_log(s);
    int n = 0;

    for (const char *p = strstr(log, needle); p; p = strstr(p + 1, needle))
        n++;
    free(log);
    return n;
}

START_TEST(test_kill_during_storage_jobs)
{
    long kills = env_long("STRATA_CRASH_STORAGE_KILLS", 4, 1, 1000000);
    long seconds = env_long("STRATA_CRASH_SECONDS", 0, 0, 86400 * 7);
    long seed = env_long("STRATA_CRASH_SEED", 20261124, 0, 0x7fffffffL);
    int nthreads = (int)env_long("STRATA_CRASH_THREADS", 3, 1, MAX_THREADS);
    long pace = env_long("STRATA_CRASH_PACE_MS", 0, 0, 10000);
    struct sclient cl[MAX_THREADS];
    struct srv s[2];
    struct stally ty = {0};
    char data_dir[HARNESS_PATH_MAX];
    struct srv_opts o = {.env = storage_env[0]};
    long long start = harness_now_ms();
    int cur = 0;
    long done;
    char *tok;
    char def[512];

    srand48(seed + 1);
    srv_start(&s[0], &o);
    snprintf(data_dir, sizeof(data_dir), "%s", s[0].data_dir);
    o.data_dir = data_dir;
    api_create_tenant(&s[0], TENANT);
    tok = api_make_key(&s[0], TENANT, "[\"read\", \"write\", \"manage\"]", NULL);
    for (int tb = 0; tb < S_TABLES; tb++) {
        snprintf(def, sizeof(def),
                 "{\"name\": \"%s\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, "
                 "{\"name\": \"b\", \"type\": \"int64\"}, {\"name\": \"pad\", \"type\": "
                 "\"string\"}], \"primary_key\": [\"id\"]}",
                 s_table(tb));
        api_create_table(&s[0], TENANT, tok, def);
    }
    shared.token = tok;
    shared.pace_ms = pace;
    atomic_store(&shared.stop, false);
    atomic_store(&shared.max_acked, 0);

    memset(cl, 0, sizeof(cl));
    for (int t = 0; t < nthreads; t++) {
        cl[t].idx = t;
        cl[t].rng[0] = (unsigned short)seed;
        cl[t].rng[1] = (unsigned short)(seed >> 16);
        cl[t].rng[2] = (unsigned short)(t + 1);
        cl[t].tag = calloc(S_KEYS, sizeof(*cl[t].tag));
        cl[t].ver = calloc(S_KEYS, sizeof(*cl[t].ver));
        ck_assert(cl[t].tag && cl[t].ver);
        pthread_mutex_init(&cl[t].mu, NULL);
        ck_assert_int_eq(pthread_create(&cl[t].tid, NULL, sclient_main, &cl[t]), 0);
    }
    publish(s[0].ingest_port);

    for (done = 0; done < kills; done++) {
        double mode = drand48();
        long long acked_before, v;
        struct hresp r;

        if (seconds > 0 && harness_now_ms() - start > seconds * 1000)
            break;
        harness_sleep_ms(60 + (long)(drand48() * 300));
        /* Sometimes a checkpoint or a whole compaction, killed while it runs. */
        if (mode < 0.6) {
            const char *job =
                mode < 0.3 ? "/v1/admin/checkpoint?wait=false" : "/v1/admin/compact?wait=false";

            api_req(s[cur].query_port, "POST", job, s[cur].token, NULL, NULL, &r);
            api_expect(&r, 202);
            hresp_free(&r);
            if (mode < 0.3)
                ty.checkpoint_kills++;
            else
                ty.compact_kills++;
            harness_sleep_ms((long)(drand48() * 30));
        }
        srv_kill(&s[cur]);
        publish(-1);
        acked_before = atomic_load(&shared.max_acked);
        ty.flushes += log_count(&s[cur], "engine flushed memtable");
        ty.compactions += log_count(&s[cur], "engine compacted");
        ty.kills_with_tmp += s_tmp_files(data_dir) > 0;
        s_plant_leftovers(data_dir, done);
        cur = 1 - cur;
        o.env = storage_env[(done + 1) % 2];
        srv_start(&s[cur], &o);
        s_check_planted(data_dir, done);

        v = api_version(&s[cur], TENANT, NULL);
        ck_assert_msg(v >= acked_before, "kill %ld: version %lld after restart, %lld was acked",
                      done + 1, v, acked_before);
        s_check_dir(&s[cur]);
        s_apply(&s[cur], cl, nthreads, &ty);
        s_compare(&s[cur], cl, nthreads, &ty);
        publish(s[cur].ingest_port);
    }

    harness_sleep_ms(150);
    atomic_store(&shared.stop, true);
    for (int t = 0; t < nthreads; t++)
        pthread_join(cl[t].tid, NULL);
    s_apply(&s[cur], cl, nthreads, &ty);
    s_compare(&s[cur], cl, nthreads, &ty);
    s_check_dir(&s[cur]);
    ck_assert_int_ge(api_version(&s[cur], TENANT, NULL), atomic_load(&shared.max_acked));
    fprintf(stderr,
            "test_crash: storage jobs: seed %ld, %ld kills (%ld after a checkpoint request, "
            "%ld after a compaction request), %d threads, %.1f s: %ld batches acked, %ld "
            "unacknowledged and absent, %ld unacknowledged and complete, %ld refused; %ld "
            "flushes and %ld compactions logged before the kills, %ld kills left *.tmp files; "
            "%ld rows compared\n",
            seed, done, ty.checkpoint_kills, ty.compact_kills, nthreads,
            (double)(harness_now_ms() - start) / 1000.0, ty.acked, ty.unknown_none, ty.unknown_all,
            ty.refused, ty.flushes, ty.compactions, ty.kills_with_tmp, ty.rows_scanned);
    /* The run must have exercised what it is about. */
    ck_assert_int_gt(ty.acked, (long)done);
    ck_assert_int_gt(ty.flushes, 0);
    ck_assert_int_gt(ty.compactions, 0);
    srv_stop(&s[cur], 20000);
    for (int t = 0; t < nthreads; t++) {
        free(cl[t].batches);
        free(cl[t].tag);
        free(cl[t].ver);
        pthread_mutex_destroy(&cl[t].mu);
    }
    free(tok);
}
END_TEST

int main(void)
{
    long kills = env_long("STRATA_CRASH_KILLS", 4, 1, 1000000);
    long skills = env_long("STRATA_CRASH_STORAGE_KILLS", 4, 1, 1000000);
    long seconds = env_long("STRATA_CRASH_SECONDS", 0, 0, 86400 * 7);
    Suite *s = suite_create("crash");
    /* About 1 s per kill at worst, and the final read-back. */
    double timeout = 30.0 + (double)kills * 1.5;
    /* The storage case checks more per kill: about 3 s at worst. */
    double stimeout = 60.0 + (double)skills * 3.0;
    TCase *tc, *ts;

    if (seconds > 0 && timeout > 60.0 + (double)seconds * 2)
        timeout = 60.0 + (double)seconds * 2;
    if (seconds > 0 && stimeout > 90.0 + (double)seconds * 2)
        stimeout = 90.0 + (double)seconds * 2;
    tc = harness_tcase("crash", timeout);
    ts = harness_tcase("storage", stimeout);
    harness_init();
    tcase_add_test(tc, test_kill_during_ingest);
    tcase_add_test(ts, test_kill_during_storage_jobs);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, ts);
    return harness_run(s);
}
