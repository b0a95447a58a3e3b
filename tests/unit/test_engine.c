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
    o.memtable_size = 8u << 20;
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
    suite_add_tcase(s, real);

    tcase_add_checked_fixture(fault, setup_fault, teardown_fault);
    tcase_set_timeout(fault, 30);
    tcase_add_test(fault, test_wal_failure_is_sticky_and_loses_nothing_acknowledged);
    tcase_add_test(fault, test_crash_keeps_acknowledged_writes);
    suite_add_tcase(s, fault);

    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
