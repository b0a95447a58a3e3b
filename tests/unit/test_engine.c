/*
 * Unit tests for the engine facade: catalog changes, ingest, deletes,
 * point reads on snapshots, idempotency, recovery after close and after a
 * crash, and the read-only state after a WAL failure.
 *
 * There is no event loop: engine completions are posted to a queue that
 * the test pumps by hand until the answer it waits for has come.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "engine/engine.h"
#include "engine/fs.h"
#include "engine/query.h"
#include "util/timeutil.h"

/* ---- a hand-pumped completion queue ---- */

struct post {
    struct post *next;
    void (*fn)(void *);
    void *arg;
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct post *q_head;
static struct post *q_tail;

static void test_post(void *ctx, void (*fn)(void *), void *arg)
{
    struct post *p = malloc(sizeof(*p));

    (void)ctx;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&q_lock);
    if (q_tail)
        q_tail->next = p;
    else
        q_head = p;
    q_tail = p;
    pthread_mutex_unlock(&q_lock);
}

/* Runs posted callbacks until *flag is set (5 s at most). */
static void pump_until(const bool *flag)
{
    uint64_t deadline = time_mono_ns() + 5000000000ull;

    while (!*flag) {
        struct post *p;

        pthread_mutex_lock(&q_lock);
        p = q_head;
        if (p) {
            q_head = p->next;
            if (!q_head)
                q_tail = NULL;
        }
        pthread_mutex_unlock(&q_lock);
        if (p) {
            p->fn(p->arg);
            free(p);
            continue;
        }
        ck_assert_msg(time_mono_ns() < deadline, "no completion within 5 s");
        usleep(200);
    }
}

static void drop_posts(void)
{
    pthread_mutex_lock(&q_lock);
    while (q_head) {
        struct post *p = q_head;

        q_head = p->next;
        free(p);
    }
    q_tail = NULL;
    pthread_mutex_unlock(&q_lock);
}

/* ---- answers ---- */

struct answer {
    bool done;
    struct engine_result r;
    struct engine_ingest_result ir;
    uint32_t ndetails;
    char detail0[256];
};

static void on_done(void *arg, const struct engine_result *r)
{
    struct answer *a = arg;

    a->r = *r;
    a->done = true;
}

static void on_ingest(void *arg, const struct engine_ingest_result *r)
{
    struct answer *a = arg;

    a->ir = *r;
    a->r = r->r;
    a->ndetails = r->ndetails;
    if (r->ndetails)
        snprintf(a->detail0, sizeof(a->detail0), "%llu:%s:%s",
                 (unsigned long long)r->details[0].index, r->details[0].field,
                 r->details[0].reason);
    a->ir.details = NULL;
    a->done = true;
}

/* ---- fixtures ---- */

static char dir[256];
static struct fs *tfs;      /* the fault fs, or NULL for the real one */
static uint64_t idem_max;   /* ingest.idempotency_max_keys, 0 for the default */
static uint32_t max_tables; /* limits.max_tables_per_tenant, 0 for none */
static uint64_t mt_size;    /* storage.memtable_size, 0 for 8 MiB */
static uint64_t retention;  /* mvcc.history_retention in ms */

static engine *open_engine(void)
{
    struct engine_opts o;
    struct err err;
    engine *e = NULL;
    enum st_status rc;

    memset(&o, 0, sizeof(o));
    o.data_dir = dir;
    o.fs = tfs;
    o.sync = ENGINE_SYNC_ALWAYS;
    o.memtable_size = mt_size ? mt_size : 8u << 20;
    o.wal_file_size = mt_size ? 256u << 10 : 0;
    o.history_retention_ms = retention;
    o.manual_jobs = true; /* no timers: flush and compaction only on demand */
    o.idempotency_window_ms = 60000;
    o.idempotency_max_keys = idem_max;
    o.max_tenants = 2;
    o.max_keys_per_tenant = 1;
    o.max_schema_versions = 2;
    o.max_tables_per_tenant = max_tables;
    o.max_body_bytes = 1u << 20;
    o.post = test_post;
    err_clear(&err);
    rc = engine_open(&o, &e, &err);
    ck_assert_msg(rc == ST_OK, "engine_open: %s", err.msg);
    return e;
}

static void close_engine(engine *e)
{
    struct err err;

    err_clear(&err);
    engine_close(e, &err);
    drop_posts();
}

static void setup_real(void)
{
    strcpy(dir, "/tmp/strata-test-engine-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    tfs = NULL;
}

static void teardown_real(void)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void setup_fault(void)
{
    strcpy(dir, "/data");
    tfs = fs_fault_new();
    ck_assert_int_eq(tfs->mkdir(tfs, dir, 0755), 0);
}

static void teardown_fault(void)
{
    fs_fault_free(tfs);
    tfs = NULL;
}

static enum st_status change(engine *e, struct catalog_op *op, uint64_t *version)
{
    struct answer a = {0};

    engine_catalog_change(e, op, on_done, &a);
    pump_until(&a.done);
    if (version)
        *version = a.r.version;
    return a.r.st;
}

static const char flights_def[] =
    "{\"name\": \"flights\", \"fields\": ["
    "{\"name\": \"id\", \"type\": \"int64\"},"
    "{\"name\": \"ts\", \"type\": \"timestamp\"},"
    "{\"name\": \"origin\", \"type\": \"string\"},"
    "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true},"
    "{\"name\": \"distance\", \"type\": \"float64\", \"default\": 0}],"
    "\"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

static void make_flights(engine *e)
{
    struct catalog_op op;
    struct catalog_table_def *def;
    struct err err;

    catalog_op_init(&op);
    catalog_op_create_tenant(&op, "acme");
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    err_clear(&err);
    ck_assert_int_eq(catalog_table_def_parse_text(flights_def, strlen(flights_def), &def, &err),
                     ST_OK);
    catalog_op_init(&op);
    catalog_op_create_table(&op, "acme", def);
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
}

static struct answer ingest(engine *e, const char *body, bool partial, const char *idem)
{
    struct engine_ingest_opts o = {DECODE_NDJSON, partial, idem};
    struct answer a = {0};

    engine_ingest(e, "acme", "flights", body, strlen(body), &o, on_ingest, &a);
    pump_until(&a.done);
    return a;
}

static enum st_status get(engine *e, const char *id, uint64_t as_of, int64_t *delay,
                          uint64_t *record_version)
{
    const char *key[1] = {id};
    struct engine_record rec;
    struct err err;
    enum st_status rc;

    err_clear(&err);
    rc = engine_get(e, "acme", "flights", key, 1, as_of, &rec, &err);
    if (rc)
        return rc;
    if (delay) {
        struct value v;

        schema_row_get(rec.schema, rec.row, 3, &v);
        *delay = v.is_null ? -1 : v.u.i;
    }
    if (record_version)
        *record_version = rec.record_version;
    engine_record_release(&rec);
    return ST_OK;
}

static const char three[] =
    "{\"id\":1,\"ts\":\"2001-01-01T00:01:00Z\",\"origin\":\"LAS\",\"delay\":33}\n"
    "{\"id\":2,\"ts\":\"2001-01-01T00:02:00Z\",\"origin\":\"SFO\",\"delay\":null}\n"
    "{\"id\":3,\"ts\":978307380000,\"origin\":\"LAX\",\"delay\":-4,\"distance\":12.5}\n";

/* ---- tests ---- */

START_TEST(test_catalog_ingest_get_delete_restart)
{
    engine *e = open_engine();
    struct answer a;
    struct answer d = {0};
    const char *key2[1] = {"2"};
    int64_t delay;
    uint64_t v_ingest, rv;

    make_flights(e);
    a = ingest(e, three, false, NULL);
    ck_assert_int_eq(a.r.st, ST_OK);
    ck_assert_uint_eq(a.ir.accepted, 3);
    ck_assert_uint_eq(a.ir.rejected, 0);
    v_ingest = a.r.version;
    ck_assert_uint_eq(v_ingest, 3); /* tenant, table, ingest */
    ck_assert_uint_eq(engine_version(e), v_ingest);

    ck_assert_int_eq(get(e, "1", 0, &delay, &rv), ST_OK);
    ck_assert_int_eq(delay, 33);
    ck_assert_uint_eq(rv, v_ingest);
    ck_assert_int_eq(get(e, "2", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, -1);
    ck_assert_int_eq(get(e, "4", 0, NULL, NULL), ST_ENOTFOUND);
    ck_assert_int_eq(get(e, "x", 0, NULL, NULL), ST_EINVAL);

    engine_delete(e, "acme", "flights", key2, 1, on_done, &d);
    pump_until(&d.done);
    ck_assert_int_eq(d.r.st, ST_OK);
    ck_assert_uint_eq(d.r.version, v_ingest + 1);
    ck_assert_int_eq(get(e, "2", 0, NULL, NULL), ST_ENOTFOUND);
    /* The old snapshot still sees it. */
    ck_assert_int_eq(get(e, "2", v_ingest, NULL, NULL), ST_OK);
    /* A snapshot from before the ingest sees nothing. */
    ck_assert_int_eq(get(e, "1", v_ingest - 1, NULL, NULL), ST_ENOTFOUND);

    /* An upsert replaces the value at a new version. */
    a = ingest(e, "{\"id\":1,\"ts\":0,\"origin\":\"LAS\",\"delay\":7}", false, NULL);
    ck_assert_int_eq(a.r.st, ST_OK);
    ck_assert_int_eq(get(e, "1", 0, &delay, &rv), ST_OK);
    ck_assert_int_eq(delay, 7);
    ck_assert_uint_eq(rv, a.r.version);
    ck_assert_int_eq(get(e, "1", v_ingest, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 33);

    close_engine(e);
    e = open_engine();
    ck_assert_uint_eq(engine_version(e), a.r.version);
    ck_assert_int_eq(get(e, "1", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 7);
    ck_assert_int_eq(get(e, "2", 0, NULL, NULL), ST_ENOTFOUND);
    ck_assert_int_eq(get(e, "3", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, -4);
    close_engine(e);
}
END_TEST

START_TEST(test_catalog_changes_are_serialised)
{
    engine *e = open_engine();
    struct catalog_op op1, op2;
    struct answer a1 = {0}, a2 = {0};

    catalog_op_init(&op1);
    catalog_op_create_tenant(&op1, "dup");
    catalog_op_init(&op2);
    catalog_op_create_tenant(&op2, "dup");
    engine_catalog_change(e, &op1, on_done, &a1);
    engine_catalog_change(e, &op2, on_done, &a2);
    pump_until(&a1.done);
    pump_until(&a2.done);
    ck_assert_int_eq(a1.r.st, ST_OK);
    ck_assert_int_eq(a2.r.st, ST_EEXIST);
    close_engine(e);
}
END_TEST

START_TEST(test_unknown_tenant_and_table)
{
    engine *e = open_engine();
    struct engine_ingest_opts o = {DECODE_NDJSON, false, NULL};
    struct answer a = {0};

    engine_ingest(e, "nobody", "flights", "{}", 2, &o, on_ingest, &a);
    pump_until(&a.done);
    ck_assert_int_eq(a.r.st, ST_ENOTFOUND);
    make_flights(e);
    memset(&a, 0, sizeof(a));
    engine_ingest(e, "acme", "nothing", "{}", 2, &o, on_ingest, &a);
    pump_until(&a.done);
    ck_assert_int_eq(a.r.st, ST_ENOTFOUND);
    close_engine(e);
}
END_TEST

START_TEST(test_atomic_and_partial)
{
    engine *e = open_engine();
    const char *bad = "{\"id\":10,\"ts\":0,\"origin\":\"A\"}\n"
                      "{\"id\":11,\"ts\":0,\"origin\":5}\n"
                      "{\"id\":12,\"ts\":0,\"origin\":\"C\"}\n";
    struct answer a;
    uint64_t before;

    make_flights(e);
    before = engine_version(e);
    a = ingest(e, bad, false, NULL);
    ck_assert_int_eq(a.r.st, ST_EINVAL);
    ck_assert_uint_eq(a.ir.rejected, 1);
    ck_assert_uint_eq(a.ndetails, 1);
    ck_assert_str_eq(a.detail0, "1:origin:expected string, got integer");
    ck_assert_uint_eq(engine_version(e), before);
    ck_assert_int_eq(get(e, "10", 0, NULL, NULL), ST_ENOTFOUND);

    a = ingest(e, bad, true, NULL);
    ck_assert_int_eq(a.r.st, ST_OK);
    ck_assert_uint_eq(a.ir.accepted, 2);
    ck_assert_uint_eq(a.ir.rejected, 1);
    ck_assert_int_eq(get(e, "10", 0, NULL, NULL), ST_OK);
    ck_assert_int_eq(get(e, "11", 0, NULL, NULL), ST_ENOTFOUND);
    ck_assert_int_eq(get(e, "12", 0, NULL, NULL), ST_OK);

    /* Not JSON at all: a request-level error with a position. */
    a = ingest(e, "{\"id\":1,", false, NULL);
    ck_assert_int_eq(a.r.st, ST_EINVAL);
    close_engine(e);
}
END_TEST

START_TEST(test_idempotency_survives_restart)
{
    engine *e = open_engine();
    struct answer a, b;

    make_flights(e);
    a = ingest(e, three, false, "req-1");
    ck_assert_int_eq(a.r.st, ST_OK);
    ck_assert(!a.ir.replayed);
    b = ingest(e, "{\"id\":1,\"ts\":0,\"origin\":\"X\",\"delay\":99}", false, "req-1");
    ck_assert_int_eq(b.r.st, ST_OK);
    ck_assert(b.ir.replayed);
    ck_assert_uint_eq(b.r.version, a.r.version);
    ck_assert_uint_eq(b.ir.accepted, 3);
    /* Nothing was written by the retry. */
    ck_assert_uint_eq(engine_version(e), a.r.version);

    close_engine(e);
    e = open_engine();
    b = ingest(e, three, false, "req-1");
    ck_assert(b.ir.replayed);
    ck_assert_uint_eq(b.r.version, a.r.version);
    /* Another key is a new request. */
    b = ingest(e, three, false, "req-2");
    ck_assert(!b.ir.replayed);
    ck_assert_uint_gt(b.r.version, a.r.version);
    close_engine(e);
}
END_TEST

/* Past ingest.idempotency_max_keys the oldest keys are forgotten first. */
START_TEST(test_idempotency_keys_are_bounded)
{
    engine *e;
    struct answer a, b;

    idem_max = 2;
    e = open_engine();
    make_flights(e);
    a = ingest(e, three, false, "k-a");
    ingest(e, three, false, "k-b");
    ingest(e, three, false, "k-c");
    b = ingest(e, three, false, "k-c");
    ck_assert(b.ir.replayed);
    b = ingest(e, three, false, "k-a");
    ck_assert(!b.ir.replayed);
    ck_assert_uint_gt(b.r.version, a.r.version);
    close_engine(e);
    idem_max = 0;
}
END_TEST

/* The ingest-rate quota: a bucket of one second of records per tenant. */
START_TEST(test_rate_quota)
{
    engine *e = open_engine();
    struct catalog_quotas q = {1000, 0};
    struct catalog_op op;
    struct strbuf big = STRBUF_INIT;
    struct answer a;

    make_flights(e);
    catalog_op_init(&op);
    catalog_op_set_quotas(&op, "acme", &q);
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    /* 1500 records: more than the bucket, allowed when it is full; it is then in debt. */
    for (int i = 0; i < 1500; i++)
        strbuf_addf(&big, "{\"id\":%d,\"ts\":0,\"origin\":\"Q\"}\n", 1000 + i);
    a = ingest(e, big.buf, false, NULL);
    ck_assert_int_eq(a.r.st, ST_OK);
    a = ingest(e, three, false, NULL);
    ck_assert_int_eq(a.r.st, ST_EBUSY);
    ck_assert_uint_ge(a.ir.retry_after_s, 1);
    ck_assert_int_eq(get(e, "1", 0, NULL, NULL), ST_ENOTFOUND);
    /* The debt of 500 records is paid back in half a second. */
    usleep(600000);
    a = ingest(e, three, false, NULL);
    ck_assert_int_eq(a.r.st, ST_OK);
    strbuf_release(&big);
    close_engine(e);
}
END_TEST

/* Count limits: creates past them get ST_EQUOTA and change nothing. */
START_TEST(test_catalog_count_limits)
{
    engine *e;
    struct catalog_op op;
    struct catalog_table_def *def;
    uint8_t hash[CATALOG_HASH_BYTES] = {0};
    struct err err;
    uint64_t before;

    max_tables = 1;
    e = open_engine();
    make_flights(e); /* tenant 1 of 2, table 1 of 1 */
    err_clear(&err);
    ck_assert_int_eq(catalog_table_def_parse_text(flights_def, strlen(flights_def), &def, &err),
                     ST_OK);
    st_strlcpy(def->name, "second", sizeof(def->name));
    catalog_op_init(&op);
    catalog_op_create_table(&op, "acme", def);
    before = engine_version(e);
    ck_assert_int_eq(change(e, &op, NULL), ST_EQUOTA);
    ck_assert_uint_eq(engine_version(e), before);

    catalog_op_init(&op);
    catalog_op_create_key(&op, "acme", "0000000000000001", hash, CATALOG_SCOPE_READ);
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    catalog_op_init(&op);
    catalog_op_create_key(&op, "acme", "0000000000000002", hash, CATALOG_SCOPE_READ);
    ck_assert_int_eq(change(e, &op, NULL), ST_EQUOTA);

    /* Version 2 of flights is allowed, version 3 is not. */
    {
        static const char fields[] =
            "[{\"name\": \"id\", \"type\": \"int64\"},"
            "{\"name\": \"ts\", \"type\": \"timestamp\"},"
            "{\"name\": \"origin\", \"type\": \"string\"},"
            "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true},"
            "{\"name\": \"distance\", \"type\": \"float64\", \"default\": 0},"
            "{\"name\": \"extra%d\", \"type\": \"bool\", \"nullable\": true}]";

        for (int v = 2; v <= 3; v++) {
            char text[sizeof(fields) + 8];
            json_t *j;
            struct field *f;
            uint32_t nf;

            snprintf(text, sizeof(text), fields, v);
            j = json_loads(text, 0, NULL);
            ck_assert_ptr_nonnull(j);
            ck_assert_int_eq(catalog_fields_parse(j, &f, &nf, &err), ST_OK);
            json_decref(j);
            catalog_op_init(&op);
            catalog_op_add_schema_version(&op, "acme", "flights", f, nf);
            ck_assert_int_eq(change(e, &op, NULL), v == 2 ? ST_OK : ST_EQUOTA);
        }
    }

    catalog_op_init(&op);
    catalog_op_create_tenant(&op, "two");
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    catalog_op_init(&op);
    catalog_op_create_tenant(&op, "three");
    ck_assert_int_eq(change(e, &op, NULL), ST_EQUOTA);
    close_engine(e);
    max_tables = 0;
}
END_TEST

START_TEST(test_composite_and_string_keys)
{
    engine *e = open_engine();
    static const char def[] = "{\"name\": \"kv\", \"fields\": ["
                              "{\"name\": \"k\", \"type\": \"string\"},"
                              "{\"name\": \"n\", \"type\": \"int64\"},"
                              "{\"name\": \"v\", \"type\": \"json\", \"nullable\": true}],"
                              "\"primary_key\": [\"k\", \"n\"]}";
    const char *key_ok[2] = {"a/b c", "-5"};
    const char *key_short[1] = {"a/b c"};
    struct catalog_table_def *tdef;
    struct catalog_op op;
    struct engine_ingest_opts o = {DECODE_JSON_ARRAY, false, NULL};
    struct engine_record rec;
    struct answer a = {0};
    struct err err;
    const char *body = "[{\"k\":\"a/b c\",\"n\":-5,\"v\":{\"x\":[1,2]}}]";

    make_flights(e);
    err_clear(&err);
    ck_assert_int_eq(catalog_table_def_parse_text(def, strlen(def), &tdef, &err), ST_OK);
    catalog_op_init(&op);
    catalog_op_create_table(&op, "acme", tdef);
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    engine_ingest(e, "acme", "kv", body, strlen(body), &o, on_ingest, &a);
    pump_until(&a.done);
    ck_assert_int_eq(a.r.st, ST_OK);
    ck_assert_int_eq(engine_get(e, "acme", "kv", key_ok, 2, 0, &rec, &err), ST_OK);
    engine_record_release(&rec);
    ck_assert_int_eq(engine_get(e, "acme", "kv", key_short, 1, 0, &rec, &err), ST_EINVAL);
    close_engine(e);
}
END_TEST

struct txn_answer {
    bool done;
    struct engine_result r;
    size_t nconflicts;
    bool first_is_cond;
    size_t first_index;
    uint32_t ndetails;
    uint64_t detail_index;
};

static void on_txn(void *arg, const struct engine_txn_result *res)
{
    struct txn_answer *a = arg;

    a->r = res->r;
    a->nconflicts = res->nconflicts;
    if (res->nconflicts) {
        a->first_is_cond = res->conflicts[0].is_cond;
        a->first_index = res->conflicts[0].index;
    }
    a->ndetails = res->ndetails;
    if (res->ndetails)
        a->detail_index = res->details[0].index;
    a->done = true;
}

static struct txn_answer run_txn(engine *e, const struct engine_txn *t)
{
    struct txn_answer a = {0};

    engine_txn(e, "acme", t, on_txn, &a);
    pump_until(&a.done);
    return a;
}

START_TEST(test_txn_commits_atomically_with_conditions)
{
    engine *e = open_engine();
    const char *k1[1] = {"1"};
    const char *k5[1] = {"5"};
    const char *k77[1] = {"77"};
    const char *rec5 = "{\"id\":5,\"ts\":0,\"origin\":\"TXN\",\"delay\":1}";
    const char *bad = "{\"id\":6,\"ts\":0,\"origin\":6}";
    struct engine_txn_cond conds[1];
    struct engine_txn_op ops[2];
    struct engine_txn t;
    struct txn_answer a;
    struct answer in;
    uint64_t v, before;

    make_flights(e);
    in = ingest(e, three, false, NULL);
    ck_assert_int_eq(in.r.st, ST_OK);

    memset(conds, 0, sizeof(conds));
    conds[0].k = (struct engine_txn_key){"flights", k1, 1};
    conds[0].exists = 1;
    memset(ops, 0, sizeof(ops));
    ops[0].op = ENGINE_TXN_UPSERT;
    ops[0].k.table = "flights";
    ops[0].record = rec5;
    ops[0].record_len = strlen(rec5);
    ops[1].op = ENGINE_TXN_DELETE;
    ops[1].k = (struct engine_txn_key){"flights", k1, 1};
    memset(&t, 0, sizeof(t));
    t.conds = conds;
    t.nconds = 1;
    t.ops = ops;
    t.nops = 2;
    t.has_read_version = true;
    t.read_version = in.r.version;
    a = run_txn(e, &t);
    ck_assert_int_eq(a.r.st, ST_OK);
    v = a.r.version;
    ck_assert_uint_eq(v, in.r.version + 1);
    ck_assert_int_eq(get(e, "5", 0, NULL, NULL), ST_OK);
    ck_assert_int_eq(get(e, "1", 0, NULL, NULL), ST_ENOTFOUND);

    /* The same transaction again: id 1 no longer exists, and id 5 was
     * written after read_version. Nothing is written. */
    before = engine_version(e);
    a = run_txn(e, &t);
    ck_assert_int_eq(a.r.st, ST_ECONFLICT);
    ck_assert_uint_eq(a.nconflicts, 3);
    ck_assert(a.first_is_cond);
    ck_assert_uint_eq(a.first_index, 0);
    ck_assert_uint_eq(engine_version(e), before);

    /* version_le on a record written at v fails below v, holds at v. */
    conds[0].k = (struct engine_txn_key){"flights", k5, 1};
    conds[0].exists = -1;
    conds[0].has_version_le = true;
    conds[0].version_le = v - 1;
    t.nops = 0;
    t.has_read_version = false;
    a = run_txn(e, &t);
    ck_assert_int_eq(a.r.st, ST_ECONFLICT);
    conds[0].version_le = v;
    a = run_txn(e, &t);
    ck_assert_int_eq(a.r.st, ST_OK);

    /* exists: false on a missing key holds. */
    conds[0].k = (struct engine_txn_key){"flights", k77, 1};
    conds[0].exists = 0;
    conds[0].has_version_le = false;
    a = run_txn(e, &t);
    ck_assert_int_eq(a.r.st, ST_OK);

    /* A bad record fails the whole transaction with its op index. */
    ops[1].op = ENGINE_TXN_UPSERT;
    ops[1].k.table = "flights";
    ops[1].record = bad;
    ops[1].record_len = strlen(bad);
    t.nconds = 0;
    t.nops = 2;
    before = engine_version(e);
    a = run_txn(e, &t);
    ck_assert_int_eq(a.r.st, ST_EINVAL);
    ck_assert_uint_eq(a.ndetails, 1);
    ck_assert_uint_eq(a.detail_index, 1);
    ck_assert_uint_eq(engine_version(e), before);

    /* An unknown table is 404. */
    ops[1].k.table = "nope";
    a = run_txn(e, &t);
    ck_assert_int_eq(a.r.st, ST_ENOTFOUND);

    /* Transactions replay after a restart. */
    close_engine(e);
    e = open_engine();
    ck_assert_int_eq(get(e, "5", 0, NULL, NULL), ST_OK);
    ck_assert_int_eq(get(e, "1", 0, NULL, NULL), ST_ENOTFOUND);
    ck_assert_int_eq(get(e, "1", in.r.version, NULL, NULL), ST_OK);
    close_engine(e);
}
END_TEST

/* A failed fsync: nothing more is acknowledged, and after a crash every
 * acknowledged record is there and the failed batch is not. */
struct job_answer {
    bool done;
    struct engine_job_result r;
};

static void on_job(void *arg, const struct engine_job_result *r)
{
    struct job_answer *a = arg;

    a->r = *r;
    a->done = true;
}

START_TEST(test_wal_failure_is_sticky_and_loses_nothing_acknowledged)
{
    engine *e = open_engine();
    struct answer a, b;
    struct err err;

    make_flights(e);
    a = ingest(e, three, false, NULL);
    ck_assert_int_eq(a.r.st, ST_OK);

    fs_fault_fail_nth(tfs, FS_OP_DATASYNC, 1, EIO, true);
    b = ingest(e, "{\"id\":50,\"ts\":0,\"origin\":\"Z\"}", false, NULL);
    ck_assert_int_eq(b.r.st, ST_EIO);
    err_clear(&err);
    ck_assert_int_eq(engine_health(e, &err), ST_EIO);
    /* Reads go on; the failed batch is not visible. */
    ck_assert_int_eq(get(e, "1", 0, NULL, NULL), ST_OK);
    ck_assert_int_eq(get(e, "50", 0, NULL, NULL), ST_ENOTFOUND);
    /* Later writes fail at once. */
    b = ingest(e, "{\"id\":51,\"ts\":0,\"origin\":\"Z\"}", false, NULL);
    ck_assert_int_eq(b.r.st, ST_EIO);
    /* The failed batch is in the memtable: no flush may make it a segment. */
    {
        struct job_answer j = {0};

        engine_checkpoint(e, on_job, &j);
        pump_until(&j.done);
        ck_assert_int_eq(j.r.st, ST_EAGAIN);
        ck_assert_uint_eq(j.r.segments_written, 0);
    }

    close_engine(e);
    fs_fault_crash(tfs, FS_CRASH_DROP_UNSYNCED, 1);
    fs_fault_clear(tfs);
    e = open_engine();
    ck_assert_int_eq(engine_health(e, NULL), ST_OK);
    ck_assert_int_eq(get(e, "1", 0, NULL, NULL), ST_OK);
    ck_assert_int_eq(get(e, "3", 0, NULL, NULL), ST_OK);
    ck_assert_int_eq(get(e, "50", 0, NULL, NULL), ST_ENOTFOUND);
    ck_assert_int_eq(get(e, "51", 0, NULL, NULL), ST_ENOTFOUND);
    close_engine(e);
}
END_TEST

/* A crash (unsynced bytes dropped) after acknowledged writes loses none. */
START_TEST(test_crash_keeps_acknowledged_writes)
{
    engine *e = open_engine();
    char body[128];
    uint64_t last = 0;

    make_flights(e);
    for (int i = 0; i < 50; i++) {
        struct answer a;

        snprintf(body, sizeof(body), "{\"id\":%d,\"ts\":%d,\"origin\":\"O%d\",\"delay\":%d}", i, i,
                 i, i * 2);
        a = ingest(e, body, false, NULL);
        ck_assert_int_eq(a.r.st, ST_OK);
        last = a.r.version;
    }
    /* No close: the process dies here. */
    fs_fault_crash(tfs, FS_CRASH_DROP_UNSYNCED, 7);
    drop_posts();
    /* The dead engine's memory is leaked on purpose, as in a crash;
     * only its WAL writer must stop touching the fs. */
    {
        struct err err;

        err_clear(&err);
        engine_close(e, &err);
    }
    fs_fault_crash(tfs, FS_CRASH_DROP_UNSYNCED, 7);
    e = open_engine();
    ck_assert_uint_eq(engine_version(e), last);
    for (int i = 0; i < 50; i++) {
        char id[16];
        int64_t delay;

        snprintf(id, sizeof(id), "%d", i);
        ck_assert_int_eq(get(e, id, 0, &delay, NULL), ST_OK);
        ck_assert_int_eq(delay, i * 2);
    }
    close_engine(e);
}
END_TEST

/* ---- segments: flush, compaction, checkpoint ---- */

static struct engine_job_result checkpoint_now(engine *e)
{
    struct job_answer a = {0};

    engine_checkpoint(e, on_job, &a);
    pump_until(&a.done);
    ck_assert_msg(a.r.st == ST_OK, "checkpoint: %s", a.r.err.msg);
    return a.r;
}

static struct engine_job_result compact_now(engine *e, const char *tenant, const char *table)
{
    struct job_answer a = {0};

    engine_compact(e, tenant, table, on_job, &a);
    pump_until(&a.done);
    return a.r;
}

/* Ingests ids [from, to) with delay = id * mult, in batches of 200. */
static uint64_t ingest_range(engine *e, int from, int to, int mult)
{
    struct strbuf b = STRBUF_INIT;
    uint64_t v = 0;

    for (int i = from; i < to;) {
        struct answer a;

        strbuf_reset(&b);
        for (int n = 0; n < 200 && i < to; n++, i++)
            strbuf_addf(&b,
                        "{\"id\":%d,\"ts\":%lld,\"origin\":\"ORIGIN%d\",\"delay\":%d,"
                        "\"distance\":%d.5}\n",
                        i, 978307200000LL + i * 60000LL, i % 7, i * mult, i);
        /* Backpressure: while the flush catches up, writes get ST_EAGAIN. */
        for (int tries = 0; (a = ingest(e, b.buf, false, NULL)).r.st == ST_EAGAIN; tries++) {
            ck_assert_int_lt(tries, 5000);
            usleep(1000);
        }
        ck_assert_msg(a.r.st == ST_OK, "ingest: %s", a.r.err.msg);
        v = a.r.version;
    }
    strbuf_release(&b);
    return v;
}

/* Scans the whole table (optionally a time range): rows and the sum of ids. */
static uint64_t scan_count(engine *e, uint64_t as_of, const struct query_time_range *tr,
                           int64_t *sum_ids, struct engine_scan_stats *stats)
{
    struct engine_scan_opts o;
    struct engine_scan *sc;
    struct query_source src;
    const void *row;
    const struct schema *sch;
    struct err err;
    uint64_t n = 0;
    int64_t prev = -1, sum = 0;

    memset(&o, 0, sizeof(o));
    o.as_of = as_of;
    o.time = tr;
    err_clear(&err);
    ck_assert_msg(engine_scan_open(e, "acme", "flights", &o, &sc, &err) == ST_OK, "scan: %s",
                  err.msg);
    engine_scan_source(sc, &src);
    while (src.next(src.ctx, &row, &sch)) {
        struct value v;

        schema_row_get(sch, row, 0, &v);
        ck_assert_int_gt(v.u.i, prev); /* key order, each key once */
        prev = v.u.i;
        sum += v.u.i;
        n++;
    }
    ck_assert_int_eq(src.status(src.ctx, &err), ST_OK);
    if (stats)
        engine_scan_get_stats(sc, stats);
    engine_scan_close(sc);
    if (sum_ids)
        *sum_ids = sum;
    return n;
}

static size_t count_files(const char *sub, const char *suffix)
{
    char cmd[512];
    FILE *f;
    size_t n = 0;
    char line[512];

    snprintf(cmd, sizeof(cmd), "ls '%s/%s' 2>/dev/null", dir, sub);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f)) {
        size_t l = strlen(line);

        if (l && line[l - 1] == '\n')
            line[--l] = '\0';
        if (l >= strlen(suffix) && !strcmp(line + l - strlen(suffix), suffix))
            n++;
    }
    pclose(f);
    return n;
}

START_TEST(test_flush_reads_from_segments_and_restart)
{
    engine *e;
    struct engine_storage_stats st;
    int64_t delay, sum;
    uint64_t v1, v2;

    mt_size = 64u << 10;
    retention = 3600000; /* an hour of history stays readable */
    e = open_engine();
    make_flights(e);
    v1 = ingest_range(e, 0, 3000, 2);
    checkpoint_now(e);
    /* Flushed data leaves the WAL: only the newest file stays. */
    ck_assert_uint_eq(count_files("wal", ".log"), 1);
    engine_storage_stats(e, &st);
    ck_assert_uint_gt(st.segments, 1);
    ck_assert_uint_eq(st.rows_stored, 3000);
    ck_assert_uint_ge(st.flushed_version, v1);
    ck_assert(count_files("segments", ".seg") == st.segments);
    /* Point reads and scans now come from segments. */
    ck_assert_int_eq(get(e, "0", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 0);
    ck_assert_int_eq(get(e, "2999", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 5998);
    ck_assert_int_eq(get(e, "3000", 0, NULL, NULL), ST_ENOTFOUND);
    ck_assert_uint_eq(scan_count(e, 0, NULL, &sum, NULL), 3000);
    ck_assert_int_eq(sum, 2999LL * 3000 / 2);

    /* Newer versions in memory shadow the segments; old snapshots still see the old ones. */
    v2 = ingest_range(e, 1000, 1100, 3);
    ck_assert_int_eq(get(e, "1050", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 3150);
    ck_assert_int_eq(get(e, "1050", v1, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 2100);
    ck_assert_uint_eq(scan_count(e, 0, NULL, NULL, NULL), 3000);
    ck_assert_uint_eq(scan_count(e, v1, NULL, NULL, NULL), 3000);

    close_engine(e);
    e = open_engine();
    ck_assert_uint_eq(engine_version(e), v2);
    ck_assert_int_eq(get(e, "1050", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 3150);
    ck_assert_int_eq(get(e, "10", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 20);
    ck_assert_uint_eq(scan_count(e, 0, NULL, &sum, NULL), 3000);
    ck_assert_int_eq(sum, 2999LL * 3000 / 2);
    close_engine(e);
    mt_size = 0;
    retention = 0;
}
END_TEST

START_TEST(test_compaction_keeps_what_snapshots_need)
{
    engine *e;
    struct engine_snapshot snap;
    struct engine_storage_stats before, after;
    struct engine_job_result r;
    struct answer d = {0};
    const char *key5[1] = {"5"};
    struct err err;
    int64_t delay;
    uint64_t v1, v2;

    mt_size = 64u << 10;
    retention = 0; /* only held snapshots keep history */
    e = open_engine();
    make_flights(e);
    v1 = ingest_range(e, 0, 2000, 1);
    checkpoint_now(e);
    err_clear(&err);
    ck_assert_int_eq(engine_snapshot_hold(e, "acme", 60000, &snap, &err), ST_OK);
    ck_assert_uint_eq(snap.version, v1);
    v2 = ingest_range(e, 0, 2000, 5);
    checkpoint_now(e); /* room for the delete */
    engine_delete(e, "acme", "flights", key5, 1, on_done, &d);
    pump_until(&d.done);
    ck_assert_int_eq(d.r.st, ST_OK);
    checkpoint_now(e);
    engine_storage_stats(e, &before);
    ck_assert_uint_eq(before.rows_stored, 4001);

    r = compact_now(e, "acme", "flights");
    ck_assert_msg(r.st == ST_OK, "compact: %s", r.err.msg);
    engine_storage_stats(e, &after);
    ck_assert_uint_eq(after.segments, 1);
    /* Both versions stay for the held snapshot; nothing older existed. */
    ck_assert_uint_eq(after.rows_stored, 4001);
    ck_assert_int_eq(get(e, "7", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 35);
    ck_assert_int_eq(get(e, "7", snap.version, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 7);
    ck_assert_int_eq(get(e, "5", 0, NULL, NULL), ST_ENOTFOUND);
    ck_assert_int_eq(get(e, "5", snap.version, &delay, NULL), ST_OK);
    ck_assert_uint_eq(scan_count(e, 0, NULL, NULL, NULL), 1999);
    ck_assert_uint_eq(scan_count(e, snap.version, NULL, NULL, NULL), 2000);

    /* Released: the next compaction drops the history and the tombstone. */
    ck_assert_int_eq(engine_snapshot_release(e, "acme", snap.id, &err), ST_OK);
    ck_assert_int_eq(engine_snapshot_release(e, "acme", snap.id, &err), ST_ENOTFOUND);
    r = compact_now(e, NULL, NULL);
    ck_assert_msg(r.st == ST_OK, "compact: %s", r.err.msg);
    /* 1999 old versions, and key 5's tombstone with the two rows it hid. */
    ck_assert_uint_eq(r.versions_dropped, 2002);
    engine_storage_stats(e, &after);
    ck_assert_uint_eq(after.rows_stored, 1999);
    ck_assert_int_eq(get(e, "7", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 35);
    ck_assert_int_eq(get(e, "7", v1, NULL, NULL), ST_ECONFLICT); /* snapshot too old */
    ck_assert_uint_eq(count_files("segments", ".seg"), 1);

    close_engine(e);
    e = open_engine();
    ck_assert_uint_eq(engine_version(e), d.r.version);
    ck_assert_int_eq(get(e, "7", v2, NULL, NULL), ST_ECONFLICT);
    ck_assert_uint_eq(scan_count(e, 0, NULL, NULL, NULL), 1999);
    ck_assert_int_eq(compact_now(e, "acme", "nope").st, ST_ENOTFOUND);
    ck_assert_int_eq(compact_now(e, "nope", NULL).st, ST_ENOTFOUND);
    close_engine(e);
    mt_size = 0;
    retention = 0;
}
END_TEST

START_TEST(test_time_range_scan_does_not_resurrect_old_versions)
{
    engine *e;
    struct query_time_range tr;
    struct engine_scan_stats st;
    int64_t sum;

    mt_size = 64u << 10;
    e = open_engine();
    make_flights(e);
    /* ids 0..1999 at minutes 0..1999 of 2001-01-01 */
    ingest_range(e, 0, 2000, 1);
    checkpoint_now(e);
    /* id 10 moves far into the future, in a newer segment. */
    ck_assert_int_eq(
        ingest(e, "{\"id\":10,\"ts\":\"2030-01-01T00:00:00Z\",\"origin\":\"X\"}", false, NULL).r.st,
        ST_OK);
    checkpoint_now(e);
    memset(&tr, 0, sizeof(tr));
    tr.bounded = true;
    tr.lo = 978307200000LL;
    tr.hi = 978307200000LL + 20 * 60000LL; /* minutes 0..20 */
    /* The scan may yield rows outside the range, but never id 10's old version. */
    scan_count(e, 0, &tr, &sum, &st);
    ck_assert_uint_ge(st.segments_skipped, 1);
    {
        struct engine_scan_opts o;
        struct engine_scan *sc;
        struct query_source src;
        const void *row;
        const struct schema *sch;
        struct err err;

        memset(&o, 0, sizeof(o));
        o.time = &tr;
        ck_assert_int_eq(engine_scan_open(e, "acme", "flights", &o, &sc, &err), ST_OK);
        engine_scan_source(sc, &src);
        while (src.next(src.ctx, &row, &sch)) {
            struct value id, ts;

            schema_row_get(sch, row, 0, &id);
            schema_row_get(sch, row, 1, &ts);
            ck_assert_msg(id.u.i != 10 || ts.u.i > tr.hi, "old version of id 10 came back");
        }
        engine_scan_close(sc);
    }
    /* The same with the newer version in the memtable, which the scan skips by time. */
    ck_assert_int_eq(
        ingest(e, "{\"id\":11,\"ts\":\"2030-01-01T00:00:00Z\",\"origin\":\"X\"}", false, NULL).r.st,
        ST_OK);
    {
        struct engine_scan_opts o;
        struct engine_scan *sc;
        struct query_source src;
        const void *row;
        const struct schema *sch;
        struct engine_scan_stats st2;
        struct err err;
        int seen = 0;

        memset(&o, 0, sizeof(o));
        o.time = &tr;
        ck_assert_int_eq(engine_scan_open(e, "acme", "flights", &o, &sc, &err), ST_OK);
        engine_scan_source(sc, &src);
        while (src.next(src.ctx, &row, &sch)) {
            struct value id;

            schema_row_get(sch, row, 0, &id);
            ck_assert_msg(id.u.i != 11, "old version of id 11 came back");
            seen += id.u.i == 12;
        }
        engine_scan_get_stats(sc, &st2);
        ck_assert_uint_ge(st2.memtables_skipped, 1);
        ck_assert_int_eq(seen, 1); /* other keys still come from the segments */
        engine_scan_close(sc);
    }
    close_engine(e);
    mt_size = 0;
}
END_TEST

START_TEST(test_idempotency_survives_wal_trim)
{
    engine *e;
    struct answer a, b;

    mt_size = 64u << 10;
    e = open_engine();
    make_flights(e);
    a = ingest(e, three, false, "key-1");
    ck_assert_int_eq(a.r.st, ST_OK);
    ingest_range(e, 100, 3000, 1);
    checkpoint_now(e);
    /* The WAL file of the keyed write is gone: only the newest file stays. */
    ck_assert_uint_eq(count_files("wal", ".log"), 1);
    close_engine(e);
    e = open_engine();
    b = ingest(e, three, false, "key-1");
    ck_assert_int_eq(b.r.st, ST_OK);
    ck_assert(b.ir.replayed);
    ck_assert_uint_eq(b.r.version, a.r.version);
    close_engine(e);
    mt_size = 0;
}
END_TEST

START_TEST(test_deleted_table_segments_go_away)
{
    engine *e;
    struct catalog_op op;
    struct engine_storage_stats st;

    mt_size = 64u << 10;
    e = open_engine();
    make_flights(e);
    ingest_range(e, 0, 1000, 1);
    checkpoint_now(e);
    engine_storage_stats(e, &st);
    ck_assert_uint_gt(st.segments, 0);
    catalog_op_init(&op);
    catalog_op_delete_table(&op, "acme", "flights");
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    ck_assert_int_eq(compact_now(e, NULL, NULL).st, ST_OK);
    engine_storage_stats(e, &st);
    ck_assert_uint_eq(st.segments, 0);
    ck_assert_uint_eq(count_files("segments", ".seg"), 0);
    close_engine(e);
    mt_size = 0;
}
END_TEST

START_TEST(test_corrupt_segment_block_is_an_error)
{
    engine *e;
    char cmd[600];
    int64_t delay;
    struct engine_scan *sc;
    struct query_source src;
    const void *row;
    const struct schema *sch;
    struct err err;
    enum st_status rc;

    mt_size = 64u << 10;
    e = open_engine();
    make_flights(e);
    ingest_range(e, 0, 500, 1);
    checkpoint_now(e);
    close_engine(e);
    /* Flip a byte early in every segment: inside the first data block. */
    snprintf(cmd, sizeof(cmd),
             "for f in '%s'/segments/*.seg; do printf '\\377' | dd of=\"$f\" bs=1 seek=100 "
             "conv=notrunc status=none; done",
             dir);
    ck_assert_int_eq(system(cmd), 0);
    e = open_engine();
    rc = get(e, "1", 0, &delay, NULL);
    ck_assert_int_eq(rc, ST_ECORRUPT);
    err_clear(&err);
    ck_assert_int_eq(engine_scan_open(e, "acme", "flights", NULL, &sc, &err), ST_OK);
    engine_scan_source(sc, &src);
    while (src.next(src.ctx, &row, &sch))
        ;
    ck_assert_int_eq(src.status(src.ctx, &err), ST_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(err.msg, ".seg"));
    engine_scan_close(sc);
    close_engine(e);
    mt_size = 0;
}
END_TEST

START_TEST(test_storage_quota)
{
    engine *e;
    struct catalog_op op;
    struct catalog_quotas q = {0, 100};
    struct answer a;

    mt_size = 64u << 10;
    e = open_engine();
    make_flights(e);
    catalog_op_init(&op);
    catalog_op_set_quotas(&op, "acme", &q);
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    /* Under the quota until the data reaches segments. */
    ingest_range(e, 0, 500, 1);
    checkpoint_now(e);
    a = ingest(e, three, false, NULL);
    ck_assert_int_eq(a.r.st, ST_EQUOTA);
    ck_assert_ptr_nonnull(strstr(a.r.err.msg, "storage quota of 100 bytes"));
    /* A larger quota lets writes in again. */
    q.max_storage_bytes = 1u << 30;
    catalog_op_init(&op);
    catalog_op_set_quotas(&op, "acme", &q);
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    ck_assert_int_eq(ingest(e, three, false, NULL).r.st, ST_OK);
    close_engine(e);
    /* After a restart the usage comes from the manifest. */
    q.max_storage_bytes = 100;
    e = open_engine();
    catalog_op_init(&op);
    catalog_op_set_quotas(&op, "acme", &q);
    ck_assert_int_eq(change(e, &op, NULL), ST_OK);
    ck_assert_int_eq(ingest(e, three, false, NULL).r.st, ST_EQUOTA);
    close_engine(e);
    mt_size = 0;
}
END_TEST

/* A full disk during a flush or a compaction loses nothing and leaves no file behind. */
START_TEST(test_disk_full_during_flush_and_compaction)
{
    engine *e;
    struct engine_job_result r;
    struct engine_storage_stats st;
    struct job_answer j = {0};
    int64_t delay;

    mt_size = 64u << 10;
    e = open_engine();
    make_flights(e);
    ingest_range(e, 0, 600, 3);
    checkpoint_now(e);
    ingest_range(e, 600, 1200, 3);

    /* Every write fails: the flush of the checkpoint fails, the rows stay readable. */
    fs_fault_fail_nth(tfs, FS_OP_WRITE, 1, ENOSPC, true);
    engine_checkpoint(e, on_job, &j);
    pump_until(&j.done);
    ck_assert_int_ne(j.r.st, ST_OK);
    r = compact_now(e, "acme", "flights");
    ck_assert_int_ne(r.st, ST_OK);
    ck_assert_int_eq(get(e, "5", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 15);
    ck_assert_int_eq(get(e, "1100", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 3300);
    ck_assert_uint_eq(scan_count(e, 0, NULL, NULL, NULL), 1200);

    /* Space again: both succeed, and nothing was lost or doubled. */
    fs_fault_clear(tfs);
    checkpoint_now(e);
    r = compact_now(e, "acme", "flights");
    ck_assert_msg(r.st == ST_OK, "compact: %s", r.err.msg);
    engine_storage_stats(e, &st);
    ck_assert_uint_eq(st.segments, 1);
    ck_assert_uint_eq(st.rows_stored, 1200);
    close_engine(e);
    e = open_engine();
    ck_assert_uint_eq(scan_count(e, 0, NULL, NULL, NULL), 1200);
    ck_assert_int_eq(get(e, "1100", 0, &delay, NULL), ST_OK);
    ck_assert_int_eq(delay, 3300);
    close_engine(e);
    mt_size = 0;
}
END_TEST

/* A backup that cannot be written fails cleanly; the next one works and the engine goes on. */
START_TEST(test_backup_failure_and_retry)
{
    engine *e;
    struct job_answer a = {0}, b = {0};

    mt_size = 64u << 10;
    e = open_engine();
    make_flights(e);
    ingest_range(e, 0, 400, 1);
    checkpoint_now(e);
    ck_assert_int_eq(tfs->mkdir(tfs, "/backups", 0755), 0);

    fs_fault_fail_nth(tfs, FS_OP_WRITE, 1, ENOSPC, true);
    engine_backup(e, "/backups/one", on_job, &a);
    pump_until(&a.done);
    ck_assert_int_eq(a.r.st, ST_EIO);
    ck_assert_ptr_nonnull(strstr(a.r.err.msg, "/backups/one"));
    fs_fault_clear(tfs);

    engine_backup(e, "/backups/two", on_job, &b);
    pump_until(&b.done);
    ck_assert_msg(b.r.st == ST_OK, "backup: %s", b.r.err.msg);
    ck_assert_uint_ge(b.r.files_copied, 4);
    memset(&a, 0, sizeof(a));
    engine_backup(e, "/backups/two", on_job, &a);
    pump_until(&a.done);
    ck_assert_int_eq(a.r.st, ST_EEXIST);
    memset(&a, 0, sizeof(a));
    engine_backup(e, "relative", on_job, &a);
    pump_until(&a.done);
    ck_assert_int_eq(a.r.st, ST_EINVAL);
    /* The failed backup left no hold on the WAL: writes and checkpoints go on. */
    ingest_range(e, 400, 800, 1);
    checkpoint_now(e);
    close_engine(e);

    /* The good copy opens as a data directory of its own. */
    strcpy(dir, "/backups/two");
    e = open_engine();
    ck_assert_uint_eq(scan_count(e, 0, NULL, NULL, NULL), 400);
    close_engine(e);
    strcpy(dir, "/data");
    mt_size = 0;
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine");
    TCase *real = tcase_create("real_fs");
    TCase *fault = tcase_create("fault_fs");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(real, setup_real, teardown_real);
    tcase_set_timeout(real, 30);
    tcase_add_test(real, test_catalog_ingest_get_delete_restart);
    tcase_add_test(real, test_catalog_changes_are_serialised);
    tcase_add_test(real, test_unknown_tenant_and_table);
    tcase_add_test(real, test_atomic_and_partial);
    tcase_add_test(real, test_idempotency_survives_restart);
    tcase_add_test(real, test_idempotency_keys_are_bounded);
    tcase_add_test(real, test_rate_quota);
    tcase_add_test(real, test_catalog_count_limits);
    tcase_add_test(real, test_composite_and_string_keys);
    tcase_add_test(real, test_txn_commits_atomically_with_conditions);
    tcase_add_test(real, test_flush_reads_from_segments_and_restart);
    tcase_add_test(real, test_compaction_keeps_what_snapshots_need);
    tcase_add_test(real, test_time_range_scan_does_not_resurrect_old_versions);
    tcase_add_test(real, test_idempotency_survives_wal_trim);
    tcase_add_test(real, test_deleted_table_segments_go_away);
    tcase_add_test(real, test_corrupt_segment_block_is_an_error);
    tcase_add_test(real, test_storage_quota);
    suite_add_tcase(s, real);

    tcase_add_checked_fixture(fault, setup_fault, teardown_fault);
    tcase_set_timeout(fault, 30);
    tcase_add_test(fault, test_wal_failure_is_sticky_and_loses_nothing_acknowledged);
    tcase_add_test(fault, test_crash_keeps_acknowledged_writes);
    tcase_add_test(fault, test_disk_full_during_flush_and_compaction);
    tcase_add_test(fault, test_backup_failure_and_retry);
    suite_add_tcase(s, fault);

    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
