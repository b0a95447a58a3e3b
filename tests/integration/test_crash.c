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
 * Short by default (4 kills, well under 30 s). The environment makes it
 * longer, for scripts/crash_test.sh: STRATA_CRASH_KILLS (number of kills),
 * STRATA_CRASH_SECONDS (stop killing after this long; 0: no limit),
 * STRATA_CRASH_SEED (the random seed), STRATA_CRASH_THREADS (1 to 8),
 * STRATA_CRASH_PACE_MS (a pause after each batch, to bound the data a
 * long run writes and reads back; 0 by default).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(void)
{
    long kills = env_long("STRATA_CRASH_KILLS", 4, 1, 1000000);
    long seconds = env_long("STRATA_CRASH_SECONDS", 0, 0, 86400 * 7);
    Suite *s = suite_create("crash");
    /* About 1 s per kill at worst, and the final read-back. */
    double timeout = 30.0 + (double)kills * 1.5;
    TCase *tc;

    if (seconds > 0 && timeout > 60.0 + (double)seconds * 2)
        timeout = 60.0 + (double)seconds * 2;
    tc = harness_tcase("crash", timeout);
    harness_init();
    tcase_add_test(tc, test_kill_during_ingest);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
