/*
 * Unit tests for src/engine/catalog.c: every op applied live and replayed
 * from its encoding gives the same state (compared through the
 * checkpoint JSON), validation errors and their messages, ops that no
 * longer apply, corrupt op bytes, snapshot reference counting, API-key
 * authentication, table-definition parsing (types, defaults, keys, time
 * field, retention), the GET form, checkpoint save/load (also through the
 * fault-injecting fs), internal ids that are never reused, and lookups.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/catalog.h"
#include "engine/fs.h"

/* ------------------------------------------------------------------ */
/* Helpers: a catalog plus the log of every op it applied. */

#define LOG_MAX 256

struct harness {
    struct catalog *cat;
    uint64_t version;      /* last commit version used */
    char *log[LOG_MAX];    /* encoded ops, in order */
    size_t len[LOG_MAX];   /* their lengths */
    uint64_t ver[LOG_MAX]; /* their commit versions */
    size_t n;              /* ops logged */
};

static void h_init(struct harness *h)
{
    memset(h, 0, sizeof(*h));
    h->cat = catalog_new();
}

static void h_release(struct harness *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->log[i]);
    catalog_free(h->cat);
}

/*
 * The live path: check against the current snapshot, encode, "log",
 * apply. Releases op. Returns the check's status (and err) or apply's.
 */
static enum st_status h_run(struct harness *h, struct catalog_op *op, struct err *err)
{
    struct catalog_snap *snap = catalog_acquire(h->cat);
    struct strbuf sb = STRBUF_INIT;
    enum st_status rc = catalog_check_op(snap, op, err);

    catalog_release(snap);
    if (rc == ST_OK) {
        catalog_op_encode(op, &sb);
        ck_assert_uint_lt(h->n, LOG_MAX);
        h->ver[h->n] = ++h->version;
        h->log[h->n] = strbuf_detach(&sb, &h->len[h->n]);
        rc = catalog_apply(h->cat, h->log[h->n], h->len[h->n], h->ver[h->n], err);
        h->n++;
    }
    catalog_op_release(op);
    return rc;
}

/* h_run() that must succeed. */
static void h_ok(struct harness *h, struct catalog_op *op)
{
    struct err err;
    enum st_status rc;

    err_clear(&err);
    rc = h_run(h, op, &err);
    ck_assert_msg(rc == ST_OK, "op failed: %s", err.msg);
}

static char *snap_text(const struct catalog_snap *snap)
{
    json_t *o = catalog_snap_to_json(snap);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

    json_decref(o);
    ck_assert_ptr_nonnull(s);
    return s;
}

static char *cat_text(struct catalog *cat)
{
    struct catalog_snap *snap = catalog_acquire(cat);
    char *s = snap_text(snap);

    catalog_release(snap);
    return s;
}

static struct catalog_table_def *def_of(const char *text)
{
    struct catalog_table_def *def;
    struct err err;
    enum st_status rc = catalog_table_def_parse_text(text, strlen(text), &def, &err);

    ck_assert_msg(rc == ST_OK, "definition refused: %s", err.msg);
    return def;
}

static void create_tenant(struct harness *h, const char *name)
{
    struct catalog_op op;

    catalog_op_create_tenant(&op, name);
    h_ok(h, &op);
}

static void create_table(struct harness *h, const char *tenant, const char *def)
{
    struct catalog_op op;

    catalog_op_create_table(&op, tenant, def_of(def));
    h_ok(h, &op);
}

static void add_version(struct harness *h, const char *tenant, const char *table,
                        const char *fields)
{
    json_t *j = json_loads(fields, 0, NULL);
    struct catalog_op op;
    struct field *f;
    uint32_t n;
    struct err err;

    ck_assert_ptr_nonnull(j);
    ck_assert_msg(catalog_fields_parse(j, &f, &n, &err) == ST_OK, "%s", err.msg);
    json_decref(j);
    catalog_op_add_schema_version(&op, tenant, table, f, n);
    h_ok(h, &op);
}

static uint64_t table_id(struct catalog *cat, const char *tenant, const char *table)
{
    struct catalog_snap *snap = catalog_acquire(cat);
    const struct catalog_table *tb =
        catalog_find_table(snap, tenant, strlen(tenant), table, strlen(table));
    uint64_t id = tb ? catalog_table_id(tb) : 0;

    catalog_release(snap);
    return id;
}

static const char flights[] =
    "{\"name\": \"flights\", \"fields\": ["
    "{\"name\": \"id\", \"type\": \"int64\"},"
    "{\"name\": \"ts\", \"type\": \"timestamp\"},"
    "{\"name\": \"origin\", \"type\": \"string\", \"default\": \"SFO\"},"
    "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true},"
    "{\"name\": \"distance\", \"type\": \"float64\", \"default\": 0},"
    "{\"name\": \"late\", \"type\": \"bool\", \"default\": false},"
    "{\"name\": \"seen\", \"type\": \"timestamp\", \"default\": \"2001-02-03T04:05:06.789+01:00\"},"
    "{\"name\": \"extra\", \"type\": \"json\", \"default\": {\"a\": [1, 2.5, \"x\\n\"], \"b\": "
    "null}}"
    "], \"primary_key\": [\"id\"], \"time_field\": \"ts\", \"retention\": \"90d\"}";

static const char events[] = "{\"name\": \"events\", \"fields\": ["
                             "{\"name\": \"tenant_id\", \"type\": \"string\"},"
                             "{\"name\": \"seq\", \"type\": \"int64\"},"
                             "{\"name\": \"body\", \"type\": \"json\", \"nullable\": true}"
                             "], \"primary_key\": [\"tenant_id\", \"seq\"]}";

/* A script that uses every op, including names reused after deletion. */
static void run_script(struct harness *h)
{
    uint8_t hash[CATALOG_HASH_BYTES];
    char token[CATALOG_TOKEN_LEN + 1], id[CATALOG_KEY_ID_LEN + 1];
    struct catalog_quotas q = {50000, 10737418240ull};
    struct catalog_op op;

    create_tenant(h, "acme");
    create_tenant(h, "globex");
    create_tenant(h, "0-initech_x");
    catalog_key_generate(token, id, hash);
    catalog_op_create_key(&op, "acme", id, hash, CATALOG_SCOPE_READ | CATALOG_SCOPE_WRITE);
    h_ok(h, &op);
    catalog_key_generate(token, id, hash);
    catalog_op_create_key(&op, "acme", id, hash, CATALOG_SCOPE_ALL);
    h_ok(h, &op);
    catalog_op_revoke_key(&op, "acme", id);
    h_ok(h, &op);
    catalog_key_generate(token, id, hash);
    catalog_op_create_key(&op, "globex", id, hash, CATALOG_SCOPE_MANAGE);
    h_ok(h, &op);
    catalog_op_set_quotas(&op, "acme", &q);
    h_ok(h, &op);
    create_table(h, "acme", flights);
    create_table(h, "acme", events);
    create_table(h, "globex", events);
    add_version(h, "acme", "flights",
                "[{\"name\": \"id\", \"type\": \"int64\"},"
                "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                "{\"name\": \"origin\", \"type\": \"string\", \"nullable\": true},"
                "{\"name\": \"delay\", \"type\": \"float64\", \"nullable\": true},"
                "{\"name\": \"gate\", \"type\": \"string\", \"default\": \"A1\"},"
                "{\"name\": \"meta\", \"type\": \"json\", \"default\": null}]");
    add_version(h, "acme", "flights",
                "[{\"name\": \"id\", \"type\": \"int64\"},"
                "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                "{\"name\": \"when\", \"type\": \"timestamp\", \"default\": -1}]");
    catalog_op_delete_table(&op, "acme", "events");
    h_ok(h, &op);
    create_table(h, "acme", events);
    catalog_op_delete_tenant(&op, "0-initech_x");
    h_ok(h, &op);
    create_tenant(h, "0-initech_x");
    create_table(h, "0-initech_x", events);
}

/* ------------------------------------------------------------------ */
/* Apply and replay. */

START_TEST(test_replay_identical)
{
    struct harness h;
    struct catalog *re = catalog_new();
    char *live, *replayed, *again;
    struct err err;

    h_init(&h);
    run_script(&h);
    live = cat_text(h.cat);
    for (size_t i = 0; i < h.n; i++)
        ck_assert_msg(catalog_apply(re, h.log[i], h.len[i], h.ver[i], &err) == ST_OK, "op %zu: %s",
                      i, err.msg);
    replayed = cat_text(re);
    ck_assert_str_eq(live, replayed);

    /* Replaying an overlapping log again changes nothing. */
    for (size_t i = 0; i < h.n; i++)
        ck_assert_int_eq(catalog_apply(re, h.log[i], h.len[i], h.ver[i], &err), ST_OK);
    again = cat_text(re);
    ck_assert_str_eq(live, again);

    free(live);
    free(replayed);
    free(again);
    catalog_free(re);
    h_release(&h);
}
END_TEST

/* Each op's encoding is a fixed point: decode, encode gives the same bytes. */
START_TEST(test_encoding_canonical)
{
    struct harness h;

    h_init(&h);
    run_script(&h);
    for (size_t i = 0; i < h.n; i++) {
        struct catalog_op op;
        struct strbuf sb = STRBUF_INIT;
        struct err err;

        ck_assert_msg(catalog_op_decode(h.log[i], h.len[i], &op, &err) == ST_OK, "%s", err.msg);
        catalog_op_encode(&op, &sb);
        ck_assert_str_eq(sb.buf, h.log[i]);
        strbuf_release(&sb);
        catalog_op_release(&op);
    }
    /* Spot-check the documented format. */
    ck_assert_str_eq(h.log[0], "{\"op\":\"create_tenant\",\"tenant\":\"acme\",\"v\":1}");
    h_release(&h);
}
END_TEST

/* A checkpoint taken midway plus the rest of the log gives the same state. */
START_TEST(test_checkpoint_then_replay)
{
    struct harness h;
    struct fs *fs = fs_fault_new();
    struct catalog *base = catalog_new(), *loaded;
    char *live, *replayed;
    size_t half;
    struct catalog_snap *snap;
    struct err err;

    h_init(&h);
    run_script(&h);
    half = h.n / 2;
    for (size_t i = 0; i < half; i++)
        ck_assert_int_eq(catalog_apply(base, h.log[i], h.len[i], h.ver[i], &err), ST_OK);
    snap = catalog_acquire(base);
    ck_assert_uint_eq(catalog_snap_version(snap), h.ver[half - 1]);
    ck_assert_int_eq(catalog_save(snap, fs, "catalog.json", &err), ST_OK);
    catalog_release(snap);
    ck_assert_int_eq(catalog_load(fs, "catalog.json", &loaded, &err), ST_OK);
    /* The WAL holds every op; those the checkpoint reflects are skipped. */
    for (size_t i = 0; i < h.n; i++)
        ck_assert_msg(catalog_apply(loaded, h.log[i], h.len[i], h.ver[i], &err) == ST_OK,
                      "op %zu: %s", i, err.msg);
    live = cat_text(h.cat);
    replayed = cat_text(loaded);
    ck_assert_str_eq(live, replayed);
    free(live);
    free(replayed);
    catalog_free(loaded);
    catalog_free(base);
    fs_fault_free(fs);
    h_release(&h);
}
END_TEST

/* An op checked against an old snapshot that no longer applies. */
START_TEST(test_stale_op)
{
    struct catalog *cat = catalog_new();
    struct catalog_snap *old;
    struct catalog_op op;
    struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
    char *before, *after;
    struct err err;

    old = catalog_acquire(cat);
    catalog_op_create_tenant(&op, "acme");
    ck_assert_int_eq(catalog_check_op(old, &op, &err), ST_OK);
    catalog_op_encode(&op, &a);
    catalog_op_encode(&op, &b);
    catalog_op_release(&op);
    catalog_release(old);

    ck_assert_int_eq(catalog_apply(cat, a.buf, a.len, 1, &err), ST_OK);
    before = cat_text(cat);
    ck_assert_int_eq(catalog_apply(cat, b.buf, b.len, 2, &err), ST_EEXIST);
    ck_assert_str_eq(err.msg, "tenant 'acme' already exists");
    after = cat_text(cat);
    ck_assert_str_eq(before, after);
    old = catalog_acquire(cat);
    ck_assert_uint_eq(catalog_snap_version(old), 1);
    catalog_release(old);

    free(before);
    free(after);
    strbuf_release(&a);
    strbuf_release(&b);
    catalog_free(cat);
}
END_TEST

START_TEST(test_corrupt_ops)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{\"op\":\"create_tenant\",\"tenant\":\"acme\"}",
        "{\"op\":\"create_tenant\",\"tenant\":\"acme\",\"v\":2}",
        "{\"op\":\"drop_everything\",\"tenant\":\"acme\",\"v\":1}",
        "{\"op\":\"create_tenant\",\"v\":1}",
        "{\"op\":\"create_tenant\",\"tenant\":7,\"v\":1}",
        "{\"op\":\"create_key\",\"tenant\":\"acme\",\"id\":\"0123456789abcdef\",\"v\":1}",
        "{\"hash\":\"00\",\"id\":\"0123456789abcdef\",\"op\":\"create_key\",\"scopes\":[\"read\"],"
        "\"tenant\":\"acme\",\"v\":1}",
        "{\"op\":\"set_quotas\",\"tenant\":\"acme\",\"max_records_per_sec\":-1,"
        "\"max_storage_bytes\":0,\"v\":1}",
        "{\"def\":{\"name\":\"t\"},\"op\":\"create_table\",\"tenant\":\"acme\",\"v\":1}",
        "{\"op\":\"delete_table\",\"tenant\":\"acme\",\"v\":1}",
        "{\"op\":\"create_tenant\",\"tenant\":\"acme\",\"tenant\":\"b\",\"v\":1}",
    };
    struct catalog *cat = catalog_new();
    char *before = cat_text(cat), *after;
    struct err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(catalog_apply(cat, bad[i], strlen(bad[i]), i + 1, &err) == ST_ECORRUPT,
                      "accepted '%s'", bad[i]);
    after = cat_text(cat);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    catalog_free(cat);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Validation. */

static void expect(struct harness *h, struct catalog_op *op, enum st_status st, const char *msg)
{
    struct err err;
    size_t n = h->n;

    err_clear(&err);
    ck_assert_int_eq(h_run(h, op, &err), st);
    ck_assert_str_eq(err.msg, msg);
    ck_assert_uint_eq(h->n, n); /* nothing was logged */
}

START_TEST(test_validation)
{
    struct harness h;
    struct catalog_op op;
    uint8_t hash[CATALOG_HASH_BYTES] = {0};
    struct catalog_quotas q = {(uint64_t)INT64_MAX + 1, 0};
    json_t *j;
    struct field *f;
    uint32_t n;
    struct err err;

    h_init(&h);
    create_tenant(&h, "acme");
    create_tenant(&h, "globex");
    create_table(&h, "acme", flights);

    catalog_op_create_tenant(&op, "Acme");
    expect(&h, &op, ST_EINVAL, "invalid tenant name 'Acme' (expected [a-z0-9][a-z0-9_-]{0,62})");
    catalog_op_create_tenant(&op, "");
    expect(&h, &op, ST_EINVAL, "invalid tenant name '' (expected [a-z0-9][a-z0-9_-]{0,62})");
    catalog_op_create_tenant(&op, "_x");
    expect(&h, &op, ST_EINVAL, "invalid tenant name '_x' (expected [a-z0-9][a-z0-9_-]{0,62})");
    catalog_op_create_tenant(&op, "acme");
    expect(&h, &op, ST_EEXIST, "tenant 'acme' already exists");
    catalog_op_delete_tenant(&op, "nobody");
    expect(&h, &op, ST_ENOTFOUND, "tenant 'nobody' does not exist");

    catalog_op_create_key(&op, "acme", "0123456789ABCDEF", hash, CATALOG_SCOPE_READ);
    expect(&h, &op, ST_EINVAL, "invalid key id '0123456789ABCDEF' (expected 16 hex digits)");
    catalog_op_create_key(&op, "acme", "0123", hash, CATALOG_SCOPE_READ);
    expect(&h, &op, ST_EINVAL, "invalid key id '0123' (expected 16 hex digits)");
    catalog_op_create_key(&op, "acme", "0123456789abcdef", hash, 0);
    expect(&h, &op, ST_EINVAL, "a key needs one or more scopes of read, write, manage");
    catalog_op_create_key(&op, "acme", "0123456789abcdef", hash, 1u << 5);
    expect(&h, &op, ST_EINVAL, "a key needs one or more scopes of read, write, manage");
    catalog_op_create_key(&op, "nobody", "0123456789abcdef", hash, CATALOG_SCOPE_READ);
    expect(&h, &op, ST_ENOTFOUND, "tenant 'nobody' does not exist");
    catalog_op_create_key(&op, "acme", "0123456789abcdef", hash, CATALOG_SCOPE_READ);
    h_ok(&h, &op);
    /* Key ids are unique across tenants. */
    catalog_op_create_key(&op, "globex", "0123456789abcdef", hash, CATALOG_SCOPE_READ);
    expect(&h, &op, ST_EEXIST, "key '0123456789abcdef' already exists");
    /* A key of another tenant is not found. */
    catalog_op_revoke_key(&op, "globex", "0123456789abcdef");
    expect(&h, &op, ST_ENOTFOUND, "key '0123456789abcdef' does not exist in tenant 'globex'");
    catalog_op_revoke_key(&op, "acme", "zz");
    expect(&h, &op, ST_ENOTFOUND, "key 'zz' does not exist in tenant 'acme'");

    catalog_op_set_quotas(&op, "acme", &q);
    expect(&h, &op, ST_EINVAL, "quotas must be at most 9223372036854775807");
    catalog_op_set_quotas(&op, "nobody", &(struct catalog_quotas){1, 1});
    expect(&h, &op, ST_ENOTFOUND, "tenant 'nobody' does not exist");

    catalog_op_create_table(&op, "acme", def_of(flights));
    expect(&h, &op, ST_EEXIST, "table 'flights' already exists in tenant 'acme'");
    catalog_op_create_table(&op, "nobody", def_of(flights));
    expect(&h, &op, ST_ENOTFOUND, "tenant 'nobody' does not exist");
    catalog_op_delete_table(&op, "acme", "trains");
    expect(&h, &op, ST_ENOTFOUND, "table 'trains' does not exist in tenant 'acme'");
    catalog_op_delete_table(&op, "globex", "flights");
    expect(&h, &op, ST_ENOTFOUND, "table 'flights' does not exist in tenant 'globex'");
    catalog_op_delete_table(&op, "acme", "Flights");
    expect(&h, &op, ST_EINVAL, "invalid table name 'Flights' (expected [a-z0-9][a-z0-9_-]{0,62})");

    /* A new schema version must keep the key fields. */
    j = json_loads("[{\"name\": \"ts\", \"type\": \"timestamp\"}]", 0, NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
    json_decref(j);
    catalog_op_add_schema_version(&op, "acme", "flights", f, n);
    expect(&h, &op, ST_EINVAL, "primary key field 'id' does not exist");
    j = json_loads(
        "[{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": \"id\", \"type\": \"int64\"}]", 0,
        NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
    json_decref(j);
    catalog_op_add_schema_version(&op, "acme", "flights", f, n);
    expect(&h, &op, ST_EINVAL, "duplicate field 'id'");
    j = json_loads("[{\"name\": \"id\", \"type\": \"int64\"}]", 0, NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
    json_decref(j);
    catalog_op_add_schema_version(&op, "acme", "flights", f, n);
    expect(&h, &op, ST_EINVAL, "time field 'ts' is not a timestamp field");
    j = json_loads("[{\"name\": \"id\", \"type\": \"int64\"}]", 0, NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
    json_decref(j);
    catalog_op_add_schema_version(&op, "acme", "nope", f, n);
    expect(&h, &op, ST_ENOTFOUND, "table 'nope' does not exist in tenant 'acme'");

    /* Field lists are checked when parsed. */
    j = json_loads("{\"name\": \"id\"}", 0, NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_EINVAL);
    ck_assert_str_eq(err.msg, "'fields' must be a non-empty array of field objects");
    json_decref(j);
    h_release(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Snapshots and reference counting. */

START_TEST(test_refcount)
{
    struct harness h;
    struct catalog_snap *old, *cur;
    const struct catalog_table *tb;
    const struct schema *s;
    struct catalog_op op;

    h_init(&h);
    create_tenant(&h, "acme");
    create_table(&h, "acme", flights);
    old = catalog_acquire(h.cat);
    tb = catalog_find_table(old, "acme", 4, "flights", 7);
    ck_assert_ptr_nonnull(tb);
    s = catalog_table_schema(tb);

    /* Changes after the acquire are invisible to the old snapshot. */
    add_version(&h, "acme", "flights",
                "[{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": \"ts\", \"type\": "
                "\"timestamp\"}]");
    catalog_op_delete_table(&op, "acme", "flights");
    h_ok(&h, &op);
    catalog_op_delete_tenant(&op, "acme");
    h_ok(&h, &op);
    create_tenant(&h, "globex");

    cur = catalog_acquire(h.cat);
    ck_assert_ptr_null(catalog_find_tenant(cur, "acme", 4));
    ck_assert_ptr_nonnull(catalog_find_tenant(cur, "globex", 6));
    ck_assert_uint_eq(catalog_snap_version(cur), 6);
    catalog_release(cur);

    ck_assert_uint_eq(catalog_snap_version(old), 2);
    ck_assert_ptr_null(catalog_find_tenant(old, "globex", 6));
    ck_assert_ptr_eq(catalog_find_table(old, "acme", 4, "flights", 7), tb);
    ck_assert_uint_eq(catalog_table_schema(tb)->version, 1);
    ck_assert_uint_eq(s->nfields, 8);
    ck_assert_str_eq(s->fields[2].name, "origin");
    ck_assert_uint_eq(catalog_ntenants(old), 1);

    /* The old snapshot outlives the catalog itself. */
    h_release(&h);
    ck_assert_str_eq(catalog_tenant_name(catalog_tenant_at(old, 0)), "acme");
    ck_assert_str_eq(s->fields[2].def.u.s.ptr, "SFO");
    catalog_release(old);
}
END_TEST

/* A snapshot shares the entries that did not change. */
START_TEST(test_sharing)
{
    struct harness h;
    struct catalog_snap *a, *b;

    h_init(&h);
    create_tenant(&h, "acme");
    create_tenant(&h, "globex");
    create_table(&h, "acme", flights);
    create_table(&h, "acme", events);
    a = catalog_acquire(h.cat);
    create_table(&h, "globex", events);
    add_version(&h, "acme", "events",
                "[{\"name\": \"tenant_id\", \"type\": \"string\"}, {\"name\": \"seq\", \"type\": "
                "\"int64\"}]");
    b = catalog_acquire(h.cat);
    ck_assert_ptr_ne(catalog_find_tenant(a, "globex", 6), catalog_find_tenant(b, "globex", 6));
    ck_assert_ptr_eq(catalog_find_table(a, "acme", 4, "flights", 7),
                     catalog_find_table(b, "acme", 4, "flights", 7));
    ck_assert_ptr_ne(catalog_find_table(a, "acme", 4, "events", 6),
                     catalog_find_table(b, "acme", 4, "events", 6));
    ck_assert_ptr_eq(
        catalog_table_schema_version(catalog_find_table(a, "acme", 4, "events", 6), 1),
        catalog_table_schema_version(catalog_find_table(b, "acme", 4, "events", 6), 1));
    ck_assert_ptr_null(
        catalog_table_schema_version(catalog_find_table(a, "acme", 4, "events", 6), 2));
    ck_assert_uint_eq(catalog_table_schema_commit(catalog_find_table(b, "acme", 4, "events", 6), 2),
                      6);
    catalog_release(a);
    catalog_release(b);
    h_release(&h);
}
END_TEST

struct reader_arg {
    struct catalog *cat;
    int rounds;
    uint64_t seen_max;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;

    for (int i = 0; i < a->rounds; i++) {
        struct catalog_snap *snap = catalog_acquire(a->cat);
        uint64_t v = catalog_snap_version(snap);

        /* Every snapshot is consistent: version v has exactly v tenants. */
        ck_assert_uint_eq(catalog_ntenants(snap), v);
        ck_assert_uint_ge(v, a->seen_max);
        a->seen_max = v;
        catalog_release(snap);
    }
    return NULL;
}

START_TEST(test_concurrent_readers)
{
    struct harness h;
    struct reader_arg arg;
    pthread_t th;
    char name[16];

    h_init(&h);
    arg = (struct reader_arg){h.cat, 20000, 0};
    ck_assert_int_eq(pthread_create(&th, NULL, reader, &arg), 0);
    for (int i = 0; i < 150; i++) {
        snprintf(name, sizeof(name), "t%03d", i);
        create_tenant(&h, name);
    }
    pthread_join(th, NULL);
    h_release(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* API keys. */

START_TEST(test_token_format)
{
    char token[CATALOG_TOKEN_LEN + 1], id[CATALOG_KEY_ID_LEN + 1];
    char token2[CATALOG_TOKEN_LEN + 1], id2[CATALOG_KEY_ID_LEN + 1];
    uint8_t hash[CATALOG_HASH_BYTES], h2[CATALOG_HASH_BYTES];
    static const uint8_t abc[CATALOG_HASH_BYTES] = {
        0xbd, 0xdd, 0x81, 0x3c, 0x63, 0x42, 0x39, 0x72, 0x31, 0x71, 0xef,
        0x3f, 0xee, 0x98, 0x57, 0x9b, 0x94, 0x96, 0x4e, 0x3b, 0xb1, 0xcb,
        0x3e, 0x42, 0x72, 0x62, 0xc8, 0xc0, 0x68, 0xd5, 0x23, 0x19,
    };

    catalog_key_generate(token, id, hash);
    catalog_key_generate(token2, id2, h2);
    ck_assert_uint_eq(strlen(token), CATALOG_TOKEN_LEN);
    ck_assert_uint_eq(strlen(id), CATALOG_KEY_ID_LEN);
    ck_assert(!strncmp(token, "sk_", 3));
    ck_assert(!strncmp(token + 3, id, CATALOG_KEY_ID_LEN));
    ck_assert_int_eq(token[19], '_');
    ck_assert_uint_eq(strspn(token + 20, "0123456789abcdef"), 64);
    ck_assert_str_ne(token, token2);
    ck_assert_str_ne(id, id2);
    /* The stored hash is BLAKE2b-256 of the whole token. */
    catalog_token_hash(token, strlen(token), h2);
    ck_assert_mem_eq(hash, h2, CATALOG_HASH_BYTES);
    catalog_token_hash("abc", 3, h2);
    ck_assert_mem_eq(h2, abc, CATALOG_HASH_BYTES);
}
END_TEST

START_TEST(test_authenticate)
{
    struct harness h;
    char ta[CATALOG_TOKEN_LEN + 1], ida[CATALOG_KEY_ID_LEN + 1];
    char tb[CATALOG_TOKEN_LEN + 1], idb[CATALOG_KEY_ID_LEN + 1];
    char bad[CATALOG_TOKEN_LEN + 8];
    uint8_t ha[CATALOG_HASH_BYTES], hb[CATALOG_HASH_BYTES];
    const struct catalog_tenant *t;
    struct catalog_key_info info;
    struct catalog_snap *snap;
    struct catalog_op op;
    unsigned scopes;
    struct err err;

    h_init(&h);
    create_tenant(&h, "acme");
    create_tenant(&h, "globex");
    catalog_key_generate(ta, ida, ha);
    catalog_op_create_key(&op, "acme", ida, ha, CATALOG_SCOPE_READ | CATALOG_SCOPE_WRITE);
    h_ok(&h, &op);
    catalog_key_generate(tb, idb, hb);
    catalog_op_create_key(&op, "globex", idb, hb, CATALOG_SCOPE_MANAGE);
    h_ok(&h, &op);

    snap = catalog_acquire(h.cat);
    /* Good tokens: each names its own tenant, never another. */
    ck_assert_int_eq(catalog_key_authenticate(snap, ta, strlen(ta), &t, &scopes, &err), ST_OK);
    ck_assert_str_eq(catalog_tenant_name(t), "acme");
    ck_assert_uint_eq(scopes, CATALOG_SCOPE_READ | CATALOG_SCOPE_WRITE);
    ck_assert_int_eq(catalog_key_authenticate(snap, tb, strlen(tb), &t, &scopes, &err), ST_OK);
    ck_assert_str_eq(catalog_tenant_name(t), "globex");
    ck_assert_uint_eq(scopes, CATALOG_SCOPE_MANAGE);

    /* Listing shows ids and scopes. */
    t = catalog_find_tenant(snap, "acme", 4);
    ck_assert_uint_eq(catalog_tenant_nkeys(t), 1);
    catalog_tenant_key(t, 0, &info);
    ck_assert_str_eq(info.id, ida);
    ck_assert_uint_eq(info.scopes, CATALOG_SCOPE_READ | CATALOG_SCOPE_WRITE);
    ck_assert_uint_eq(info.created_version, 3);

    /* Wrong secret. */
    strcpy(bad, ta);
    bad[CATALOG_TOKEN_LEN - 1] = bad[CATALOG_TOKEN_LEN - 1] == '0' ? '1' : '0';
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    ck_assert_ptr_null(t);
    ck_assert_uint_eq(scopes, 0);
    ck_assert(!strncmp(err.msg, "wrong secret for key '", 22));
    /* Another tenant's key id with this secret. */
    memcpy(bad + 3, idb, CATALOG_KEY_ID_LEN);
    strcpy(bad + 19, ta + 19);
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    /* Malformed tokens. */
    {
        static const char *const malformed[] = {
            "",
            "sk_",
            "Bearer x",
            "sk_0123456789abcdef_",
        };

        for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
            ck_assert_int_eq(catalog_key_authenticate(snap, malformed[i], strlen(malformed[i]), &t,
                                                      &scopes, &err),
                             ST_EPERM);
            ck_assert_str_eq(err.msg, "malformed token");
        }
    }
    strcpy(bad, ta);
    bad[0] = 'S'; /* prefix */
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    ck_assert_str_eq(err.msg, "malformed token");
    strcpy(bad, ta);
    bad[19] = '-'; /* separator */
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    strcpy(bad, ta);
    bad[5] = 'G'; /* not hex in the id */
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    ck_assert_str_eq(err.msg, "malformed token");
    strcpy(bad, ta);
    bad[40] = 'A'; /* upper-case secret */
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    strcpy(bad, ta);
    strcat(bad, "0"); /* too long */
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    ck_assert_int_eq(catalog_key_authenticate(snap, ta, strlen(ta) - 1, &t, &scopes, &err),
                     ST_EPERM);
    /* An unknown key id. */
    strcpy(bad, ta);
    bad[3] = bad[3] == 'a' ? 'b' : 'a';
    ck_assert_int_eq(catalog_key_authenticate(snap, bad, strlen(bad), &t, &scopes, &err), ST_EPERM);
    ck_assert(!strncmp(err.msg, "unknown or revoked key", 22));
    catalog_release(snap);

    /* Revoked keys fail at once; the other tenant's key still works. */
    catalog_op_revoke_key(&op, "acme", ida);
    h_ok(&h, &op);
    snap = catalog_acquire(h.cat);
    ck_assert_int_eq(catalog_key_authenticate(snap, ta, strlen(ta), &t, &scopes, &err), ST_EPERM);
    ck_assert(!strncmp(err.msg, "unknown or revoked key", 22));
    ck_assert_int_eq(catalog_key_authenticate(snap, tb, strlen(tb), &t, &scopes, &err), ST_OK);
    catalog_release(snap);

    /* Deleting a tenant deletes its keys. */
    catalog_op_delete_tenant(&op, "globex");
    h_ok(&h, &op);
    create_tenant(&h, "globex");
    snap = catalog_acquire(h.cat);
    ck_assert_int_eq(catalog_key_authenticate(snap, tb, strlen(tb), &t, &scopes, &err), ST_EPERM);
    ck_assert_uint_eq(catalog_tenant_nkeys(catalog_find_tenant(snap, "globex", 6)), 0);
    catalog_release(snap);
    h_release(&h);
}
END_TEST

START_TEST(test_scopes)
{
    unsigned f;

    ck_assert(catalog_scope_parse("read", &f) && f == CATALOG_SCOPE_READ);
    ck_assert(catalog_scope_parse("write", &f) && f == CATALOG_SCOPE_WRITE);
    ck_assert(catalog_scope_parse("manage", &f) && f == CATALOG_SCOPE_MANAGE);
    ck_assert(!catalog_scope_parse("admin", &f));
    ck_assert(!catalog_scope_parse("Read", &f));
    ck_assert_str_eq(catalog_scope_name(CATALOG_SCOPE_MANAGE), "manage");
    ck_assert_ptr_null(catalog_scope_name(CATALOG_SCOPE_READ | CATALOG_SCOPE_WRITE));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Table definitions. */

START_TEST(test_def_types_and_defaults)
{
    struct catalog_table_def *def = def_of(flights);
    const struct schema *s = def->schema;
    const struct field *f = s->fields;

    ck_assert_str_eq(def->name, "flights");
    ck_assert_uint_eq(s->version, 1);
    ck_assert_uint_eq(s->nfields, 8);
    ck_assert_uint_eq(s->npk, 1);
    ck_assert_uint_eq(s->pk[0], 0);
    ck_assert_int_eq(s->time_field, 1);
    ck_assert_str_eq(def->retention, "90d");
    ck_assert_uint_eq(def->retention_ms, 90ull * 86400 * 1000);

    ck_assert_int_eq(f[0].type, FIELD_INT64);
    ck_assert(f[0].is_pk && !f[0].nullable && !f[0].has_default);
    ck_assert_int_eq(f[1].type, FIELD_TIMESTAMP);
    ck_assert_int_eq(f[2].type, FIELD_STRING);
    ck_assert(f[2].has_default);
    ck_assert_uint_eq(f[2].def.u.s.len, 3);
    ck_assert(!memcmp(f[2].def.u.s.ptr, "SFO", 3));
    ck_assert_int_eq(f[3].type, FIELD_INT64);
    ck_assert(f[3].nullable && !f[3].has_default);
    ck_assert_int_eq(f[4].type, FIELD_FLOAT64);
    ck_assert(f[4].has_default && f[4].def.u.f == 0.0);
    ck_assert_int_eq(f[5].type, FIELD_BOOL);
    ck_assert(f[5].has_default && !f[5].def.u.b);
    ck_assert_int_eq(f[6].type, FIELD_TIMESTAMP);
    /* 2001-02-03T03:05:06.789Z */
    ck_assert_int_eq(f[6].def.u.i, 981169506789ll);
    ck_assert_int_eq(f[7].type, FIELD_JSON);
    ck_assert_str_eq(f[7].def.u.s.ptr, "{\"a\":[1,2.5,\"x\\n\"],\"b\":null}");
    catalog_table_def_free(def);

    /* Composite keys keep their order; epoch ms, negative and float defaults. */
    def = def_of("{\"name\": \"m\", \"fields\": ["
                 "{\"name\": \"b\", \"type\": \"string\"},"
                 "{\"name\": \"a\", \"type\": \"bool\"},"
                 "{\"name\": \"t\", \"type\": \"timestamp\", \"default\": -86400001},"
                 "{\"name\": \"f\", \"type\": \"float64\", \"default\": -1.5e-3},"
                 "{\"name\": \"i\", \"type\": \"int64\", \"default\": -9223372036854775808},"
                 "{\"name\": \"j\", \"type\": \"json\", \"default\": 0.1},"
                 "{\"name\": \"k\", \"type\": \"json\", \"default\": null},"
                 "{\"name\": \"n\", \"type\": \"json\", \"nullable\": true, \"default\": null},"
                 "{\"name\": \"s\", \"type\": \"string\", \"nullable\": true, \"default\": null},"
                 "{\"name\": \"u\", \"type\": \"string\", \"default\": \"\\u00e9\\t\"}"
                 "], \"primary_key\": [\"a\", \"b\"], \"time_field\": null}");
    s = def->schema;
    f = s->fields;
    ck_assert_uint_eq(s->npk, 2);
    ck_assert_uint_eq(s->pk[0], 1);
    ck_assert_uint_eq(s->pk[1], 0);
    ck_assert_int_eq(s->time_field, -1);
    ck_assert_str_eq(def->retention, "");
    ck_assert_int_eq(f[2].def.u.i, -86400001);
    ck_assert(f[3].def.u.f == -1.5e-3);
    ck_assert_int_eq(f[4].def.u.i, INT64_MIN);
    ck_assert_str_eq(f[5].def.u.s.ptr, "0.1");
    ck_assert(f[6].has_default);
    ck_assert_str_eq(f[6].def.u.s.ptr, "null");
    ck_assert(!f[7].has_default);
    ck_assert(!f[8].has_default);
    ck_assert_str_eq(f[9].def.u.s.ptr, "\xc3\xa9\t");
    catalog_table_def_free(def);
}
END_TEST

START_TEST(test_def_errors)
{
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        {"[1]", "a table definition must be a JSON object"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"], \"colour\": 1}",
         "unknown key 'colour' in the table definition"},
        {"{\"fields\": [], \"primary_key\": []}", "the table definition needs a 'name' string"},
        {"{\"name\": \"T\", \"fields\": [], \"primary_key\": []}",
         "invalid table name 'T' (expected [a-z0-9][a-z0-9_-]{0,62})"},
        {"{\"name\": \"t\", \"primary_key\": [\"id\"]}", "the table definition needs 'fields'"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}]}",
         "the table definition needs 'primary_key'"},
        {"{\"name\": \"t\", \"fields\": [], \"primary_key\": [\"id\"]}",
         "'fields' must be a non-empty array of field objects"},
        {"{\"name\": \"t\", \"fields\": [3], \"primary_key\": [\"id\"]}",
         "field 0: must be an object"},
        {"{\"name\": \"t\", \"fields\": [{\"type\": \"int64\"}], \"primary_key\": [\"id\"]}",
         "field 0: 'name' must be a string"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"9x\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"]}",
         "field 0: invalid name '9x' (expected [A-Za-z_][A-Za-z0-9_]{0,62})"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int\"}], "
         "\"primary_key\": [\"id\"]}",
         "field 'id': unknown type 'int' (expected int64, float64, bool, string, timestamp or "
         "json)"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\"}], \"primary_key\": [\"id\"]}",
         "field 'id': 'type' must be a string"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\", \"nullabel\": "
         "true}], \"primary_key\": [\"id\"]}",
         "field 'id': unknown key 'nullabel'"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\", \"nullable\": "
         "1}], \"primary_key\": [\"id\"]}",
         "field 'id': 'nullable' must be true or false"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"delay\", \"type\": \"int64\", \"default\": "
         "1.5}], \"primary_key\": [\"id\"]}",
         "field 'delay': default must be an int64"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"delay\", \"type\": \"int64\", \"default\": "
         "\"1\"}], \"primary_key\": [\"id\"]}",
         "field 'delay': default must be an int64"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"d\", \"type\": \"float64\", \"default\": "
         "true}], \"primary_key\": [\"id\"]}",
         "field 'd': default must be a float64"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"b\", \"type\": \"bool\", \"default\": 0}], "
         "\"primary_key\": [\"id\"]}",
         "field 'b': default must be a bool"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"s\", \"type\": \"string\", \"default\": 1}], "
         "\"primary_key\": [\"id\"]}",
         "field 's': default must be a string"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"ts\", \"type\": \"timestamp\", \"default\": "
         "\"2001-02-30T00:00:00Z\"}], \"primary_key\": [\"id\"]}",
         "field 'ts': default must be a timestamp (RFC 3339 string or epoch milliseconds)"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"ts\", \"type\": \"timestamp\", \"default\": "
         "1.5}], \"primary_key\": [\"id\"]}",
         "field 'ts': default must be a timestamp (RFC 3339 string or epoch milliseconds)"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"ts\", \"type\": \"timestamp\", \"default\": "
         "\"2001-02-03T04:05:06\"}], \"primary_key\": [\"id\"]}",
         "field 'ts': default must be a timestamp (RFC 3339 string or epoch milliseconds)"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"s\", \"type\": \"string\", \"default\": "
         "null}], \"primary_key\": [\"id\"]}",
         "field 's': default is null but the field is not nullable"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": []}",
         "'primary_key' must be a non-empty array of field names"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": \"id\"}",
         "'primary_key' must be a non-empty array of field names"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"key\"]}",
         "primary_key: no field named 'key'"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\", \"id\"]}",
         "primary_key: field 'id' appears twice"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\", \"nullable\": "
         "true}], \"primary_key\": [\"id\"]}",
         "primary_key: field 'id' is nullable; key fields are required"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\", \"default\": "
         "1}], \"primary_key\": [\"id\"]}",
         "primary_key: field 'id' has a default; key fields are required"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"json\"}], "
         "\"primary_key\": [\"id\"]}",
         "primary_key: field 'id' is json, which cannot be part of a key"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [1]}",
         "primary_key: entry 0 is not a string"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, "
         "{\"name\": \"id\", \"type\": \"string\"}], \"primary_key\": [\"id\"]}",
         "duplicate field 'id'"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"], \"time_field\": \"id\"}",
         "time_field: field 'id' is int64, not a timestamp"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"], \"time_field\": \"ts\"}",
         "time_field: no field named 'ts'"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"], \"time_field\": 1}",
         "'time_field' must be a field name"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"], \"retention\": \"90d\"}",
         "retention needs a time_field"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": "
         "\"ts\", \"type\": \"timestamp\"}], \"primary_key\": [\"id\"], \"time_field\": \"ts\", "
         "\"retention\": \"90 days\"}",
         "retention: invalid duration '90 days' (expected a number with ms, s, m, h or d, such as "
         "\"90d\")"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": "
         "\"ts\", \"type\": \"timestamp\"}], \"primary_key\": [\"id\"], \"time_field\": \"ts\", "
         "\"retention\": 90}",
         "'retention' must be a duration string such as \"90d\""},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": "
         "\"ts\", \"type\": \"timestamp\"}], \"primary_key\": [\"id\"], \"time_field\": \"ts\", "
         "\"retention\": \"0d\"}",
         "retention: '0d' is not longer than zero"},
        {"{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"], \"name\": \"u\"}",
         "invalid JSON at line 1 column 88: duplicate object key near '\"name\"'"},
        {"{\"name\": \"t\",",
         "invalid JSON at line 1 column 13: string or '}' expected near end of file"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct catalog_table_def *def = (void *)1;
        struct err err;

        err_clear(&err);
        ck_assert_msg(catalog_table_def_parse_text(cases[i].json, strlen(cases[i].json), &def,
                                                   &err) == ST_EINVAL,
                      "case %zu accepted", i);
        ck_assert_ptr_null(def);
        ck_assert_msg(!strcmp(err.msg, cases[i].msg), "case %zu: got \"%s\", want \"%s\"", i,
                      err.msg, cases[i].msg);
    }
}
END_TEST

/* Lengths of a field list at the limits. */
START_TEST(test_def_limits)
{
    struct strbuf sb = STRBUF_INIT;
    struct catalog_table_def *def;
    struct err err;

    strbuf_addstr(&sb, "{\"name\": \"t\", \"primary_key\": [\"f0\"], \"fields\": [");
    for (int i = 0; i < SCHEMA_MAX_FIELDS; i++)
        strbuf_addf(&sb, "%s{\"name\": \"f%d\", \"type\": \"int64\"}", i ? "," : "", i);
    strbuf_addstr(&sb, "]}");
    ck_assert_int_eq(catalog_table_def_parse_text(sb.buf, sb.len, &def, &err), ST_OK);
    ck_assert_uint_eq(def->schema->nfields, SCHEMA_MAX_FIELDS);
    catalog_table_def_free(def);
    strbuf_setlen(&sb, sb.len - 2);
    strbuf_addstr(&sb, ",{\"name\": \"extra\", \"type\": \"int64\"}]}");
    ck_assert_int_eq(catalog_table_def_parse_text(sb.buf, sb.len, &def, &err), ST_EINVAL);
    ck_assert_str_eq(err.msg, "a table has at most 1024 fields, not 1025");
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_table_to_json)
{
    struct harness h;
    struct catalog_snap *snap;
    json_t *o;
    char *text;

    h_init(&h);
    create_tenant(&h, "acme");
    create_table(&h, "acme", flights);
    add_version(&h, "acme", "flights",
                "[{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": \"ts\", \"type\": "
                "\"timestamp\"}, {\"name\": \"old\", \"type\": \"timestamp\", \"default\": "
                "-62167219200001}]");
    snap = catalog_acquire(h.cat);
    o = catalog_table_to_json(catalog_find_table(snap, "acme", 4, "flights", 7));
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    ck_assert_str_eq(
        text,
        "{\"fields\":[{\"name\":\"id\",\"nullable\":false,\"type\":\"int64\"},"
        "{\"name\":\"ts\",\"nullable\":false,\"type\":\"timestamp\"},"
        "{\"default\":-62167219200001,\"name\":\"old\",\"nullable\":false,\"type\":\"timestamp\"}],"
        "\"name\":\"flights\",\"primary_key\":[\"id\"],\"retention\":\"90d\",\"schema_version\":2,"
        "\"schema_versions\":[{\"fields\":["
        "{\"name\":\"id\",\"nullable\":false,\"type\":\"int64\"},"
        "{\"name\":\"ts\",\"nullable\":false,\"type\":\"timestamp\"},"
        "{\"default\":\"SFO\",\"name\":\"origin\",\"nullable\":false,\"type\":\"string\"},"
        "{\"name\":\"delay\",\"nullable\":true,\"type\":\"int64\"},"
        "{\"default\":0.0,\"name\":\"distance\",\"nullable\":false,\"type\":\"float64\"},"
        "{\"default\":false,\"name\":\"late\",\"nullable\":false,\"type\":\"bool\"},"
        "{\"default\":\"2001-02-03T03:05:06.789Z\",\"name\":\"seen\",\"nullable\":false,"
        "\"type\":\"timestamp\"},"
        "{\"default\":{\"a\":[1,2.5,\"x\\n\"],\"b\":null},\"name\":\"extra\",\"nullable\":false,"
        "\"type\":\"json\"}],\"version\":1},"
        "{\"fields\":[{\"name\":\"id\",\"nullable\":false,\"type\":\"int64\"},"
        "{\"name\":\"ts\",\"nullable\":false,\"type\":\"timestamp\"},"
        "{\"default\":-62167219200001,\"name\":\"old\",\"nullable\":false,\"type\":\"timestamp\"}],"
        "\"version\":2}],\"time_field\":\"ts\"}");
    free(text);
    json_decref(o);

    /* The GET form parses back as a definition (after dropping the version keys). */
    o = catalog_table_to_json(catalog_find_table(snap, "acme", 4, "flights", 7));
    json_object_del(o, "schema_version");
    json_object_del(o, "schema_versions");
    {
        struct catalog_table_def *def;
        struct err err;

        ck_assert_int_eq(catalog_table_def_parse(o, &def, &err), ST_OK);
        ck_assert_uint_eq(def->schema->nfields, 3);
        ck_assert_int_eq(def->schema->fields[2].def.u.i, -62167219200001ll);
        catalog_table_def_free(def);
    }
    json_decref(o);
    catalog_release(snap);
    h_release(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Checkpoints. */

START_TEST(test_save_load_posix)
{
    char dir[] = "/tmp/test_catalog_XXXXXX";
    char path[64], tmp[80];
    struct harness h;
    struct catalog *loaded;
    struct catalog_snap *snap;
    char *a, *b;
    FILE *fp;
    struct err err;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/catalog.json", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    ck_assert_int_eq(catalog_load(NULL, path, &loaded, &err), ST_ENOTFOUND);
    ck_assert_ptr_null(loaded);

    h_init(&h);
    run_script(&h);
    snap = catalog_acquire(h.cat);
    ck_assert_int_eq(catalog_save(snap, NULL, path, &err), ST_OK);
    catalog_release(snap);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    ck_assert_int_eq(catalog_load(NULL, path, &loaded, &err), ST_OK);
    a = cat_text(h.cat);
    b = cat_text(loaded);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    catalog_free(loaded);

    /* Not JSON, and JSON that is not a checkpoint. */
    fp = fopen(path, "w");
    fputs("{\"format\":\"strata-catalog\",\"v\":1,", fp);
    fclose(fp);
    ck_assert_int_eq(catalog_load(NULL, path, &loaded, &err), ST_ECORRUPT);
    fp = fopen(path, "w");
    fputs("{\"format\":\"strata-catalog\",\"v\":2,\"version\":1,\"next_tenant_id\":1,"
          "\"next_table_id\":1,\"tenants\":[]}",
          fp);
    fclose(fp);
    ck_assert_int_eq(catalog_load(NULL, path, &loaded, &err), ST_ECORRUPT);
    unlink(path);
    ck_assert_int_eq(rmdir(dir), 0);
    h_release(&h);
}
END_TEST

/* Checkpoints that break the catalog's invariants are refused. */
START_TEST(test_load_invariants)
{
    static const char *const bad[] = {
        /* duplicate tenant name */
        "{\"format\":\"strata-catalog\",\"v\":1,\"version\":3,\"next_tenant_id\":3,"
        "\"next_table_id\":1,\"tenants\":["
        "{\"name\":\"a\",\"id\":1,\"created_version\":1,\"quotas\":{\"max_records_per_sec\":0,"
        "\"max_storage_bytes\":0},\"keys\":[],\"tables\":[]},"
        "{\"name\":\"a\",\"id\":2,\"created_version\":2,\"quotas\":{\"max_records_per_sec\":0,"
        "\"max_storage_bytes\":0},\"keys\":[],\"tables\":[]}]}",
        /* tenant id not below next_tenant_id */
        "{\"format\":\"strata-catalog\",\"v\":1,\"version\":3,\"next_tenant_id\":1,"
        "\"next_table_id\":1,\"tenants\":["
        "{\"name\":\"a\",\"id\":1,\"created_version\":1,\"quotas\":{\"max_records_per_sec\":0,"
        "\"max_storage_bytes\":0},\"keys\":[],\"tables\":[]}]}",
        /* duplicate key id across tenants */
        "{\"format\":\"strata-catalog\",\"v\":1,\"version\":3,\"next_tenant_id\":3,"
        "\"next_table_id\":1,\"tenants\":["
        "{\"name\":\"a\",\"id\":1,\"created_version\":1,\"quotas\":{\"max_records_per_sec\":0,"
        "\"max_storage_bytes\":0},\"keys\":[{\"id\":\"0000000000000001\",\"hash\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"scopes\":"
        "[\"read\"],\"created_version\":1}],\"tables\":[]},"
        "{\"name\":\"b\",\"id\":2,\"created_version\":2,\"quotas\":{\"max_records_per_sec\":0,"
        "\"max_storage_bytes\":0},\"keys\":[{\"id\":\"0000000000000001\",\"hash\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"scopes\":"
        "[\"read\"],\"created_version\":1}],\"tables\":[]}]}",
        /* duplicate table id, and a table whose key field is missing */
        "{\"format\":\"strata-catalog\",\"v\":1,\"version\":3,\"next_tenant_id\":2,"
        "\"next_table_id\":5,\"tenants\":["
        "{\"name\":\"a\",\"id\":1,\"created_version\":1,\"quotas\":{\"max_records_per_sec\":0,"
        "\"max_storage_bytes\":0},\"keys\":[],\"tables\":["
        "{\"name\":\"x\",\"id\":4,\"created_version\":2,\"primary_key\":[\"id\"],\"versions\":"
        "[{\"version\":1,\"commit_version\":2,\"fields\":[{\"name\":\"id\",\"type\":\"int64\","
        "\"nullable\":false}]}]},"
        "{\"name\":\"y\",\"id\":4,\"created_version\":3,\"primary_key\":[\"id\"],\"versions\":"
        "[{\"version\":1,\"commit_version\":3,\"fields\":[{\"name\":\"id\",\"type\":\"int64\","
        "\"nullable\":false}]}]}]}]}",
        "{\"format\":\"strata-catalog\",\"v\":1,\"version\":3,\"next_tenant_id\":2,"
        "\"next_table_id\":5,\"tenants\":["
        "{\"name\":\"a\",\"id\":1,\"created_version\":1,\"quotas\":{\"max_records_per_sec\":0,"
        "\"max_storage_bytes\":0},\"keys\":[],\"tables\":["
        "{\"name\":\"x\",\"id\":4,\"created_version\":2,\"primary_key\":[\"key\"],\"versions\":"
        "[{\"version\":1,\"commit_version\":2,\"fields\":[{\"name\":\"id\",\"type\":\"int64\","
        "\"nullable\":false}]}]}]}]}",
    };
    struct fs *fs = fs_fault_new();
    struct catalog *cat;
    struct err err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fs_fault_set_file(fs, "c.json", bad[i], strlen(bad[i]));
        ck_assert_msg(catalog_load(fs, "c.json", &cat, &err) == ST_ECORRUPT, "case %zu loaded", i);
    }
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_save_faults)
{
    struct fs *fs = fs_fault_new();
    struct harness h;
    struct catalog_snap *v1, *v2;
    struct catalog *loaded;
    char *t1, *t2, *got;
    struct err err;

    ck_assert_int_eq(fs->mkdir(fs, "d", 0755), 0);
    h_init(&h);
    create_tenant(&h, "acme");
    v1 = catalog_acquire(h.cat);
    ck_assert_int_eq(catalog_save(v1, fs, "d/catalog.json", &err), ST_OK);
    create_table(&h, "acme", flights);
    v2 = catalog_acquire(h.cat);
    t1 = snap_text(v1);
    t2 = snap_text(v2);

    /* A failed write or fsync leaves the old checkpoint and no temp file. */
    fs_fault_fail_nth(fs, FS_OP_WRITE, 1, ENOSPC, false);
    ck_assert_int_eq(catalog_save(v2, fs, "d/catalog.json", &err), ST_EIO);
    fs_fault_fail_nth(fs, FS_OP_FSYNC, 1, EIO, false);
    ck_assert_int_eq(catalog_save(v2, fs, "d/catalog.json", &err), ST_EIO);
    fs_fault_clear(fs);
    ck_assert_ptr_null(fs_fault_get_file(fs, "d/catalog.json.tmp", NULL));
    ck_assert_int_eq(catalog_load(fs, "d/catalog.json", &loaded, &err), ST_OK);
    got = cat_text(loaded);
    ck_assert_str_eq(got, t1);
    free(got);
    catalog_free(loaded);

    /* A crash right after a successful save keeps the new checkpoint. */
    ck_assert_int_eq(catalog_save(v2, fs, "d/catalog.json", &err), ST_OK);
    fs_fault_crash(fs, FS_CRASH_DROP_UNSYNCED, 1);
    ck_assert_int_eq(catalog_load(fs, "d/catalog.json", &loaded, &err), ST_OK);
    got = cat_text(loaded);
    ck_assert_str_eq(got, t2);
    free(got);
    catalog_free(loaded);

    /* A crash at any step of a save leaves the old or the new file, whole. */
    for (uint64_t nth = 1; nth <= 8; nth++) {
        ck_assert_int_eq(catalog_save(v1, fs, "d/catalog.json", &err), ST_OK);
        fs_fault_fail_nth(fs, FS_OP_ANY, nth, EIO, true);
        catalog_save(v2, fs, "d/catalog.json", &err);
        fs_fault_clear(fs);
        fs_fault_crash(fs, FS_CRASH_TORN, nth);
        ck_assert_int_eq(catalog_load(fs, "d/catalog.json", &loaded, &err), ST_OK);
        got = cat_text(loaded);
        ck_assert_msg(!strcmp(got, t1) || !strcmp(got, t2), "step %" PRIu64 ": %s", nth, got);
        free(got);
        catalog_free(loaded);
    }

    free(t1);
    free(t2);
    catalog_release(v1);
    catalog_release(v2);
    h_release(&h);
    fs_fault_free(fs);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Ids and lookups. */

START_TEST(test_ids_never_reused)
{
    struct harness h;
    struct catalog_op op;
    struct catalog_snap *snap;
    struct catalog *loaded;
    struct fs *fs = fs_fault_new();
    uint64_t first, second, third, tenant1, tenant2;
    struct err err;

    h_init(&h);
    create_tenant(&h, "acme");
    create_table(&h, "acme", flights);
    first = table_id(h.cat, "acme", "flights");
    snap = catalog_acquire(h.cat);
    tenant1 = catalog_tenant_id(catalog_find_tenant(snap, "acme", 4));
    catalog_release(snap);

    catalog_op_delete_table(&op, "acme", "flights");
    h_ok(&h, &op);
    ck_assert_uint_eq(table_id(h.cat, "acme", "flights"), 0);
    create_table(&h, "acme", flights);
    second = table_id(h.cat, "acme", "flights");
    ck_assert_uint_gt(second, first);

    snap = catalog_acquire(h.cat);
    ck_assert_ptr_null(catalog_find_table_by_id(snap, first));
    ck_assert_str_eq(catalog_table_name(catalog_find_table_by_id(snap, second)), "flights");
    ck_assert_str_eq(catalog_table_tenant(catalog_find_table_by_id(snap, second)), "acme");
    ck_assert_uint_eq(catalog_table_tenant_id(catalog_find_table_by_id(snap, second)), tenant1);
    /* The counters survive a checkpoint. */
    ck_assert_int_eq(catalog_save(snap, fs, "c.json", &err), ST_OK);
    catalog_release(snap);
    catalog_free(h.cat);
    ck_assert_int_eq(catalog_load(fs, "c.json", &loaded, &err), ST_OK);
    h.cat = loaded;

    catalog_op_delete_tenant(&op, "acme");
    h_ok(&h, &op);
    create_tenant(&h, "acme");
    create_table(&h, "acme", flights);
    third = table_id(h.cat, "acme", "flights");
    ck_assert_uint_gt(third, second);
    snap = catalog_acquire(h.cat);
    tenant2 = catalog_tenant_id(catalog_find_tenant(snap, "acme", 4));
    ck_assert_uint_gt(tenant2, tenant1);
    ck_assert_ptr_null(catalog_find_table_by_id(snap, second));
    catalog_release(snap);
    h_release(&h);
    fs_fault_free(fs);
}
END_TEST

START_TEST(test_lookups)
{
    struct harness h;
    struct catalog_snap *snap;
    char name[32], table[32];

    h_init(&h);
    /* Created out of order; lookups and listings are by name. */
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "t%02d", (i * 17) % 40);
        create_tenant(&h, name);
        for (int j = 0; j < 5; j++) {
            char def[256];

            snprintf(table, sizeof(table), "tb%d", (j * 3) % 5);
            snprintf(def, sizeof(def),
                     "{\"name\": \"%s\", \"fields\": [{\"name\": \"id\", \"type\": "
                     "\"int64\"}], \"primary_key\": [\"id\"]}",
                     table);
            create_table(&h, name, def);
        }
    }
    snap = catalog_acquire(h.cat);
    ck_assert_uint_eq(catalog_ntenants(snap), 40);
    for (uint32_t i = 0; i < 40; i++) {
        const struct catalog_tenant *t = catalog_tenant_at(snap, i);

        snprintf(name, sizeof(name), "t%02u", i);
        ck_assert_str_eq(catalog_tenant_name(t), name);
        ck_assert_ptr_eq(catalog_find_tenant(snap, name, strlen(name)), t);
        ck_assert_uint_eq(catalog_tenant_ntables(t), 5);
        for (uint32_t j = 0; j < 5; j++) {
            const struct catalog_table *tb = catalog_tenant_table(t, j);

            snprintf(table, sizeof(table), "tb%u", j);
            ck_assert_str_eq(catalog_table_name(tb), table);
            ck_assert_ptr_eq(catalog_find_table(snap, name, strlen(name), table, strlen(table)),
                             tb);
            ck_assert_ptr_eq(catalog_find_table_by_id(snap, catalog_table_id(tb)), tb);
            ck_assert_uint_eq(catalog_table_schema(tb)->version, 1);
        }
    }
    /* Slices that are not NUL-terminated, prefixes and near misses. */
    ck_assert_ptr_nonnull(catalog_find_tenant(snap, "t05/tables", 3));
    ck_assert_ptr_null(catalog_find_tenant(snap, "t0", 2));
    ck_assert_ptr_null(catalog_find_tenant(snap, "t050", 4));
    ck_assert_ptr_null(catalog_find_tenant(snap, "", 0));
    ck_assert_ptr_nonnull(catalog_find_table(snap, "t39", 3, "tb4xyz", 3));
    ck_assert_ptr_null(catalog_find_table(snap, "t39", 3, "tb5", 3));
    ck_assert_ptr_null(catalog_find_table(snap, "t40", 3, "tb4", 3));
    ck_assert_ptr_null(catalog_find_table_by_id(snap, 0));
    ck_assert_ptr_null(catalog_find_table_by_id(snap, 201));
    catalog_release(snap);
    h_release(&h);
}
END_TEST

START_TEST(test_quotas)
{
    struct harness h;
    struct catalog_snap *snap;
    struct catalog_quotas q = {50000, 10737418240ull}, got;
    struct catalog_op op;

    h_init(&h);
    create_tenant(&h, "acme");
    snap = catalog_acquire(h.cat);
    got = catalog_tenant_quotas(catalog_find_tenant(snap, "acme", 4));
    ck_assert_uint_eq(got.max_records_per_sec, 0);
    ck_assert_uint_eq(got.max_storage_bytes, 0);
    catalog_release(snap);
    catalog_op_set_quotas(&op, "acme", &q);
    h_ok(&h, &op);
    snap = catalog_acquire(h.cat);
    got = catalog_tenant_quotas(catalog_find_tenant(snap, "acme", 4));
    ck_assert_uint_eq(got.max_records_per_sec, 50000);
    ck_assert_uint_eq(got.max_storage_bytes, 10737418240ull);
    catalog_release(snap);
    h_release(&h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Schema evolution: catalog_schema_compat() and its use in the check. */

static const char evolving[] = "{\"name\": \"ev\", \"fields\": ["
                               "{\"name\": \"id\", \"type\": \"int64\"},"
                               "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                               "{\"name\": \"name\", \"type\": \"string\"},"
                               "{\"name\": \"n\", \"type\": \"int64\", \"nullable\": true},"
                               "{\"name\": \"d\", \"type\": \"float64\", \"default\": 1.5},"
                               "{\"name\": \"cnt\", \"type\": \"int64\"},"
                               "{\"name\": \"tag\", \"type\": \"string\", \"default\": \"x\"},"
                               "{\"name\": \"b\", \"type\": \"bool\", \"nullable\": true}"
                               "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

static void compat_collect(void *arg, const char *field, const char *reason)
{
    struct strbuf *sb = arg;

    strbuf_addf(sb, "%s%s: %s", sb->len ? "; " : "", field, reason);
}

/* The reasons catalog_schema_compat() gives for the field list text. */
static char *compat_reasons(const struct schema *old, const char *fields_text, uint32_t *count)
{
    json_t *j = json_loads(fields_text, 0, NULL);
    struct strbuf sb = STRBUF_INIT;
    struct field *f;
    uint32_t n, c;
    struct err err;

    ck_assert_ptr_nonnull(j);
    ck_assert_msg(catalog_fields_parse(j, &f, &n, &err) == ST_OK, "%s", err.msg);
    json_decref(j);
    c = catalog_schema_compat(old, f, n, compat_collect, &sb);
    ck_assert_uint_eq(catalog_schema_compat(old, f, n, NULL, NULL), c);
    catalog_fields_free(f, n);
    if (count)
        *count = c;
    return strbuf_detach(&sb, NULL);
}

static void expect_compat(const struct schema *old, const char *fields_text, const char *want)
{
    uint32_t c;
    char *got = compat_reasons(old, fields_text, &c);

    ck_assert_str_eq(got, want);
    ck_assert_uint_eq(c == 0, want[0] == '\0');
    free(got);
}

START_TEST(test_schema_compat_rules)
{
    struct catalog_table_def *def = def_of(evolving);
    const struct schema *old = def->schema;

    /* Everything the contract accepts, at once; removing b is fine too. */
    expect_compat(old,
                  "[{\"name\": \"ts\", \"type\": \"timestamp\"},"
                  "{\"name\": \"id\", \"type\": \"int64\"},"
                  "{\"name\": \"name\", \"type\": \"string\", \"nullable\": true},"
                  "{\"name\": \"n\", \"type\": \"int64\", \"nullable\": true, \"default\": 7},"
                  "{\"name\": \"d\", \"type\": \"float64\", \"default\": 2.5},"
                  "{\"name\": \"cnt\", \"type\": \"float64\"},"
                  "{\"name\": \"tag\", \"type\": \"string\", \"default\": \"y\"},"
                  "{\"name\": \"extra\", \"type\": \"json\", \"nullable\": true},"
                  "{\"name\": \"z\", \"type\": \"bool\", \"default\": true}]",
                  "");
    /* A required field may gain a default; a nullable one may lose its default. */
    expect_compat(old,
                  "[{\"name\": \"id\", \"type\": \"int64\"},"
                  "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                  "{\"name\": \"name\", \"type\": \"string\", \"default\": \"\"},"
                  "{\"name\": \"n\", \"type\": \"int64\", \"nullable\": true},"
                  "{\"name\": \"d\", \"type\": \"float64\", \"nullable\": true},"
                  "{\"name\": \"cnt\", \"type\": \"int64\"},"
                  "{\"name\": \"tag\", \"type\": \"string\", \"nullable\": true}]",
                  "");

    /* One reason per offending field: old fields in order, then new ones. */
    expect_compat(old,
                  "[{\"name\": \"id\", \"type\": \"float64\"},"
                  "{\"name\": \"name\", \"type\": \"int64\"},"
                  "{\"name\": \"n\", \"type\": \"int64\"},"
                  "{\"name\": \"d\", \"type\": \"int64\", \"default\": 1},"
                  "{\"name\": \"cnt\", \"type\": \"string\", \"nullable\": true},"
                  "{\"name\": \"tag\", \"type\": \"string\"},"
                  "{\"name\": \"b\", \"type\": \"bool\", \"nullable\": true},"
                  "{\"name\": \"req\", \"type\": \"int64\"},"
                  "{\"name\": \"ok\", \"type\": \"int64\", \"nullable\": true}]",
                  "id: primary-key field cannot change type from int64 to float64; "
                  "ts: the time field cannot be removed; "
                  "name: type cannot change from string to int64 (only int64 to float64); "
                  "n: a nullable field cannot become required (non-nullable); "
                  "d: type cannot change from float64 to int64 (only int64 to float64); "
                  "cnt: type cannot change from int64 to string (only int64 to float64); "
                  "tag: removing the default would make the field required; "
                  "req: a new field must be nullable or have a default");

    /* Primary-key fields stay as they are. */
    expect_compat(old,
                  "[{\"name\": \"ts\", \"type\": \"timestamp\"},"
                  "{\"name\": \"name\", \"type\": \"string\"},"
                  "{\"name\": \"cnt\", \"type\": \"int64\"}]",
                  "id: primary-key field cannot be removed");
    expect_compat(old,
                  "[{\"name\": \"id\", \"type\": \"int64\", \"nullable\": true},"
                  "{\"name\": \"ts\", \"type\": \"timestamp\"}]",
                  "id: primary-key field cannot become nullable");
    expect_compat(old,
                  "[{\"name\": \"id\", \"type\": \"int64\", \"default\": 3},"
                  "{\"name\": \"ts\", \"type\": \"timestamp\"}]",
                  "id: primary-key field cannot have a default");
    /* The time field cannot be retyped either. */
    expect_compat(old,
                  "[{\"name\": \"id\", \"type\": \"int64\"},"
                  "{\"name\": \"ts\", \"type\": \"int64\"}]",
                  "ts: type cannot change from timestamp to int64 (only int64 to float64)");
    /* A duplicated new field is reported once (schema_new() refuses the duplicate). */
    expect_compat(old,
                  "[{\"name\": \"id\", \"type\": \"int64\"},"
                  "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                  "{\"name\": \"q\", \"type\": \"int64\"},"
                  "{\"name\": \"q\", \"type\": \"int64\", \"nullable\": true}]",
                  "q: a new field must be nullable or have a default");
    catalog_table_def_free(def);
}
END_TEST

/* catalog_check_op() refuses incompatible versions, and apply (replay) does too. */
START_TEST(test_schema_compat_check)
{
    struct harness h;
    struct catalog_op op;
    struct catalog_snap *snap;
    struct field *f;
    uint32_t n;
    struct err err;
    json_t *j;

    h_init(&h);
    create_tenant(&h, "acme");
    create_table(&h, "acme", evolving);

    j = json_loads("[{\"name\": \"id\", \"type\": \"int64\"},"
                   "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                   "{\"name\": \"name\", \"type\": \"string\"},"
                   "{\"name\": \"n\", \"type\": \"int64\"},"
                   "{\"name\": \"cnt\", \"type\": \"int64\"}]",
                   0, NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
    json_decref(j);
    catalog_op_add_schema_version(&op, "acme", "ev", f, n);
    expect(&h, &op, ST_EINVAL,
           "incompatible schema change: field 'n': a nullable field cannot become required "
           "(non-nullable)");

    j = json_loads("[{\"name\": \"id\", \"type\": \"int64\"},"
                   "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                   "{\"name\": \"name\", \"type\": \"bool\"},"
                   "{\"name\": \"cnt\", \"type\": \"int64\"},"
                   "{\"name\": \"new1\", \"type\": \"int64\"},"
                   "{\"name\": \"new2\", \"type\": \"int64\"}]",
                   0, NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
    json_decref(j);
    catalog_op_add_schema_version(&op, "acme", "ev", f, n);
    expect(&h, &op, ST_EINVAL,
           "incompatible schema change: field 'name': type cannot change from string to bool "
           "(only int64 to float64) (and 2 more)");

    /* Structural errors of schema_new() come first. */
    j = json_loads("[{\"name\": \"ts\", \"type\": \"timestamp\"}]", 0, NULL);
    ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
    json_decref(j);
    catalog_op_add_schema_version(&op, "acme", "ev", f, n);
    expect(&h, &op, ST_EINVAL, "primary key field 'id' does not exist");

    /* An incompatible op logged anyway (by an older server, say) is refused by apply. */
    {
        struct catalog_op bad;
        struct strbuf sb = STRBUF_INIT;

        j = json_loads("[{\"name\": \"id\", \"type\": \"int64\"},"
                       "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                       "{\"name\": \"name\", \"type\": \"string\"},"
                       "{\"name\": \"cnt\", \"type\": \"int64\"},"
                       "{\"name\": \"req\", \"type\": \"int64\"}]",
                       0, NULL);
        ck_assert_int_eq(catalog_fields_parse(j, &f, &n, &err), ST_OK);
        json_decref(j);
        catalog_op_add_schema_version(&bad, "acme", "ev", f, n);
        catalog_op_encode(&bad, &sb);
        catalog_op_release(&bad);
        err_clear(&err);
        ck_assert_int_eq(catalog_apply(h.cat, sb.buf, sb.len, 100, &err), ST_EINVAL);
        ck_assert_str_eq(err.msg, "incompatible schema change: field 'req': a new field must be "
                                  "nullable or have a default");
        strbuf_release(&sb);
    }

    /* A compatible version applies and becomes the newest. */
    add_version(&h, "acme", "ev",
                "[{\"name\": \"id\", \"type\": \"int64\"},"
                "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                "{\"name\": \"name\", \"type\": \"string\", \"nullable\": true},"
                "{\"name\": \"cnt\", \"type\": \"float64\"},"
                "{\"name\": \"req\", \"type\": \"int64\", \"default\": 0}]");
    snap = catalog_acquire(h.cat);
    {
        const struct schema *s = catalog_table_schema(catalog_find_table(snap, "acme", 4, "ev", 2));

        ck_assert_uint_eq(s->version, 2);
        ck_assert_uint_eq(s->nfields, 5);
        ck_assert_int_eq(s->fields[3].type, FIELD_FLOAT64);
    }
    catalog_release(snap);
    h_release(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("catalog");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_replay_identical);
    tcase_add_test(tc, test_encoding_canonical);
    tcase_add_test(tc, test_checkpoint_then_replay);
    tcase_add_test(tc, test_stale_op);
    tcase_add_test(tc, test_corrupt_ops);
    tcase_add_test(tc, test_validation);
    tcase_add_test(tc, test_refcount);
    tcase_add_test(tc, test_sharing);
    tcase_add_test(tc, test_concurrent_readers);
    tcase_add_test(tc, test_token_format);
    tcase_add_test(tc, test_authenticate);
    tcase_add_test(tc, test_scopes);
    tcase_add_test(tc, test_def_types_and_defaults);
    tcase_add_test(tc, test_def_errors);
    tcase_add_test(tc, test_def_limits);
    tcase_add_test(tc, test_table_to_json);
    tcase_add_test(tc, test_save_load_posix);
    tcase_add_test(tc, test_load_invariants);
    tcase_add_test(tc, test_save_faults);
    tcase_add_test(tc, test_ids_never_reused);
    tcase_add_test(tc, test_lookups);
    tcase_add_test(tc, test_quotas);
    tcase_add_test(tc, test_schema_compat_rules);
    tcase_add_test(tc, test_schema_compat_check);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
