/*
 * Transactions over HTTP (src/api/txn.c, engine_txn()) on the real
 * binary: commits with conditions (exists true and false, version_le),
 * first-committer-wins against read_version with the conflicting keys
 * listed, delete ops, composite keys of every key type, the 400s that
 * name the JSON path of a bad key or body part, 422 with the op's index,
 * 404 for unknown tenants and tables, 413 over API_TXN_MAX_ITEMS, the
 * authentication rules, and atomicity: a refused transaction changes
 * neither a record nor the version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define TXN_PATH "/v1/tenants/acme/txn"

static void req(int port, const char *method, const char *path, const char *token, const char *body,
                struct hresp *r)
{
    http_request(port, method, path, token, body, r);
}

static void expect_status(const struct hresp *r, int status)
{
    ck_assert_msg(r->status == status, "expected %d, got %d: %s", status, r->status,
                  r->body ? r->body : "");
}

/* A key of tenant with the given scopes; caller frees. */
static char *make_key(struct srv *s, const char *tenant, const char *scopes_json)
{
    struct hresp r;
    char path[128], body[128];
    char *tok;

    snprintf(path, sizeof(path), "/v1/tenants/%s/keys", tenant);
    snprintf(body, sizeof(body), "{\"scopes\": %s}", scopes_json);
    req(s->query_port, "POST", path, s->token, body, &r);
    expect_status(&r, 201);
    tok = strdup(json_string_value(json_object_get(r.json, "token")));
    ck_assert_ptr_nonnull(tok);
    hresp_free(&r);
    return tok;
}

static void admin_post(struct srv *s, const char *path, const char *body)
{
    struct hresp r;

    req(s->query_port, "POST", path, s->token, body, &r);
    expect_status(&r, 201);
    hresp_free(&r);
}

/* Tenant acme with tables accounts (id), holds (id) and pairs (composite key). */
static void setup(struct srv *s)
{
    srv_start(s, NULL);
    admin_post(s, "/v1/tenants", "{\"name\": \"acme\"}");
    admin_post(s, "/v1/tenants/acme/tables",
               "{\"name\": \"accounts\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, "
               "{\"name\": \"balance\", \"type\": \"int64\"}, {\"name\": \"meta\", \"type\": "
               "\"json\", \"nullable\": true}], \"primary_key\": [\"id\"]}");
    admin_post(s, "/v1/tenants/acme/tables",
               "{\"name\": \"holds\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, "
               "{\"name\": \"amount\", \"type\": \"float64\"}], \"primary_key\": [\"id\"]}");
    admin_post(s, "/v1/tenants/acme/tables",
               "{\"name\": \"pairs\", \"fields\": [{\"name\": \"region\", \"type\": \"string\"}, "
               "{\"name\": \"day\", \"type\": \"timestamp\"}, {\"name\": \"score\", \"type\": "
               "\"float64\"}, {\"name\": \"ok\", \"type\": \"bool\"}, {\"name\": \"n\", \"type\": "
               "\"int64\"}], \"primary_key\": [\"region\", \"day\", \"score\", \"ok\"]}");
}

/* POST body to acme's txn endpoint with the admin token. */
static void txn(struct srv *s, const char *body, struct hresp *r)
{
    req(s->ingest_port, "POST", TXN_PATH, s->token, body, r);
}

/* Commits body; returns the version. */
static long long txn_ok(struct srv *s, const char *body)
{
    struct hresp r;
    long long v;

    txn(s, body, &r);
    expect_status(&r, 200);
    v = json_integer_value(json_object_get(r.json, "version"));
    ck_assert_int_gt(v, 0);
    ck_assert_uint_eq(json_object_size(r.json), 1);
    hresp_free(&r);
    return v;
}

/* The balance of account id, or -1 when there is no such record. */
static long long balance(struct srv *s, int id, long long *record_version)
{
    struct hresp r;
    char path[128];
    long long b;

    snprintf(path, sizeof(path), "/v1/tenants/acme/tables/accounts/records/%d", id);
    req(s->query_port, "GET", path, s->token, NULL, &r);
    if (r.status == 404) {
        ck_assert_error(&r, 404, "not_found");
        hresp_free(&r);
        return -1;
    }
    expect_status(&r, 200);
    b = json_integer_value(json_object_get(json_object_get(r.json, "record"), "balance"));
    if (record_version)
        *record_version = json_integer_value(json_object_get(r.json, "record_version"));
    hresp_free(&r);
    return b;
}

static long long version_now(struct srv *s)
{
    struct hresp r;
    long long v;

    req(s->query_port, "GET", "/v1/tenants/acme/version", s->token, NULL, &r);
    expect_status(&r, 200);
    v = json_integer_value(json_object_get(r.json, "version"));
    hresp_free(&r);
    return v;
}

static json_t *details(const struct hresp *r)
{
    return json_object_get(json_object_get(r->json, "error"), "details");
}

/* Asserts detail i of a 409: table, key (JSON text), reason and index member. */
static void expect_conflict(const struct hresp *r, size_t i, const char *table, const char *key,
                            const char *reason, const char *which, long long index)
{
    json_t *d = json_array_get(details(r), i);
    json_t *want = json_loads(key, 0, NULL);

    ck_assert_msg(d != NULL, "no detail %zu in %s", i, r->body);
    ck_assert_str_eq(json_string_value(json_object_get(d, "table")), table);
    ck_assert_msg(json_equal(json_object_get(d, "key"), want), "detail %zu key: %s", i, r->body);
    ck_assert_str_eq(json_string_value(json_object_get(d, "reason")), reason);
    ck_assert_int_eq(json_integer_value(json_object_get(d, which)), index);
    json_decref(want);
}

/* Asserts a 400 whose message contains text. */
static void expect_400(struct srv *s, const char *body, const char *code, const char *text)
{
    struct hresp r;
    const char *msg;

    txn(s, body, &r);
    ck_assert_error(&r, 400, code);
    msg = json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
    ck_assert_msg(strstr(msg, text), "message '%s' lacks '%s'", msg, text);
    hresp_free(&r);
}

START_TEST(test_conditions)
{
    struct srv s;
    struct hresp r;
    long long v1, v2, rv;

    setup(&s);
    /* exists false on a missing key: commits. */
    v1 = txn_ok(&s, "{\"conditions\": [{\"table\": \"accounts\", \"key\": {\"id\": 7}, \"exists\": "
                    "false}], \"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": "
                    "{\"id\": 7, \"balance\": 100}}]}");
    ck_assert_int_eq(balance(&s, 7, &rv), 100);
    ck_assert_int_eq(rv, v1);

    /* exists true and version_le at the version read: commits two records at one version. */
    {
        char body[512];

        snprintf(body, sizeof(body),
                 "{\"conditions\": [{\"table\": \"accounts\", \"key\": {\"id\": 7}, \"exists\": "
                 "true, \"version_le\": %lld}], \"ops\": [{\"op\": \"upsert\", \"table\": "
                 "\"accounts\", \"record\": {\"id\": 7, \"balance\": 90}}, {\"op\": \"upsert\", "
                 "\"table\": \"holds\", \"record\": {\"id\": 1, \"amount\": 10}}]}",
                 v1);
        v2 = txn_ok(&s, body);
        ck_assert_int_gt(v2, v1);
        ck_assert_int_eq(balance(&s, 7, &rv), 90);
        ck_assert_int_eq(rv, v2);

        /* The same version_le again fails: 7 was written at v2 > v1. */
        txn(&s, body, &r);
        ck_assert_error(&r, 409, "conflict");
        ck_assert_uint_eq(json_array_size(details(&r)), 1);
        expect_conflict(&r, 0, "accounts", "{\"id\": 7}", "condition failed", "condition", 0);
        hresp_free(&r);
    }

    /* exists false on a present key, exists true on a missing one: both listed. */
    txn(&s,
        "{\"conditions\": [{\"table\": \"holds\", \"key\": {\"id\": 2}, \"exists\": false}, "
        "{\"table\": \"accounts\", \"key\": {\"id\": 7}, \"exists\": false}, {\"table\": "
        "\"accounts\", \"key\": {\"id\": 99}, \"exists\": true}], \"ops\": [{\"op\": \"upsert\", "
        "\"table\": \"accounts\", \"record\": {\"id\": 7, \"balance\": 0}}]}",
        &r);
    ck_assert_error(&r, 409, "conflict");
    ck_assert_uint_eq(json_array_size(details(&r)), 2);
    expect_conflict(&r, 0, "accounts", "{\"id\": 7}", "condition failed", "condition", 1);
    expect_conflict(&r, 1, "accounts", "{\"id\": 99}", "condition failed", "condition", 2);
    hresp_free(&r);
    ck_assert_int_eq(balance(&s, 7, NULL), 90);

    /* A missing record counts as version 0 for version_le; a deleted one has its tombstone's. */
    txn_ok(&s, "{\"conditions\": [{\"table\": \"accounts\", \"key\": {\"id\": 50}, \"version_le\": "
               "0}], \"ops\": [{\"op\": \"delete\", \"table\": \"holds\", \"key\": {\"id\": 1}}]}");
    txn(&s,
        "{\"conditions\": [{\"table\": \"holds\", \"key\": {\"id\": 1}, \"version_le\": 0}], "
        "\"ops\": [{\"op\": \"delete\", \"table\": \"holds\", \"key\": {\"id\": 1}}]}",
        &r);
    ck_assert_error(&r, 409, "conflict");
    expect_conflict(&r, 0, "holds", "{\"id\": 1}", "condition failed", "condition", 0);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_read_version)
{
    struct srv s;
    struct hresp r;
    char body[512];
    long long v1, v2;

    setup(&s);
    v1 = txn_ok(&s, "{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": "
                    "7, \"balance\": 100}}, {\"op\": \"upsert\", \"table\": \"accounts\", "
                    "\"record\": {\"id\": 8, \"balance\": 5}}]}");
    /* Someone else writes 7 after the client read at v1 (through ingest). */
    req(s.ingest_port, "POST", "/v1/tenants/acme/tables/accounts/records", s.token,
        "{\"id\": 7, \"balance\": 1}", &r);
    expect_status(&r, 200);
    v2 = json_integer_value(json_object_get(r.json, "version"));
    ck_assert_int_gt(v2, v1);
    hresp_free(&r);

    /* The write of 7 and the delete of 8 at read_version v1: only 7 conflicts. */
    snprintf(body, sizeof(body),
             "{\"read_version\": %lld, \"ops\": [{\"op\": \"upsert\", \"table\": \"holds\", "
             "\"record\": {\"id\": 3, \"amount\": 1.5}}, {\"op\": \"upsert\", \"table\": "
             "\"accounts\", \"record\": {\"balance\": 90, \"id\": 7}}, {\"op\": \"delete\", "
             "\"table\": \"accounts\", \"key\": {\"id\": 8}}]}",
             v1);
    txn(&s, body, &r);
    ck_assert_error(&r, 409, "conflict");
    ck_assert_uint_eq(json_array_size(details(&r)), 1);
    expect_conflict(&r, 0, "accounts", "{\"id\": 7}", "written after read_version", "op", 1);
    hresp_free(&r);
    /* Nothing was written. */
    ck_assert_int_eq(balance(&s, 7, NULL), 1);
    ck_assert_int_eq(balance(&s, 8, NULL), 5);
    ck_assert_int_eq(version_now(&s), v2);

    /* A delete of a key written after read_version conflicts too, echoing its key. */
    snprintf(body, sizeof(body),
             "{\"read_version\": %lld, \"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", "
             "\"key\": {\"id\": 7}}]}",
             v1);
    txn(&s, body, &r);
    ck_assert_error(&r, 409, "conflict");
    expect_conflict(&r, 0, "accounts", "{\"id\": 7}", "written after read_version", "op", 0);
    hresp_free(&r);

    /* Reading again at v2 (or newer) commits. */
    snprintf(body, sizeof(body),
             "{\"read_version\": %lld, \"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", "
             "\"record\": {\"id\": 7, \"balance\": 90}}, {\"op\": \"delete\", \"table\": "
             "\"accounts\", \"key\": {\"id\": 8}}]}",
             v2);
    ck_assert_int_gt(txn_ok(&s, body), v2);
    ck_assert_int_eq(balance(&s, 7, NULL), 90);
    ck_assert_int_eq(balance(&s, 8, NULL), -1);

    /* Keys nobody wrote since read_version do not conflict; a read_version from the future is 400.
     */
    snprintf(body, sizeof(body),
             "{\"read_version\": %lld, \"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", "
             "\"record\": {\"id\": 9, \"balance\": 9}}]}",
             v1);
    txn_ok(&s, body);
    expect_400(&s,
               "{\"read_version\": 1000000, \"ops\": [{\"op\": \"delete\", \"table\": "
               "\"accounts\", \"key\": {\"id\": 9}}]}",
               "bad_request", "newer than the newest version");
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_delete_composite)
{
    static const char rec[] =
        "/v1/tenants/acme/tables/pairs/records/eu/2024-01-02T00:00:00Z/0.1/true";
    struct srv s;
    struct hresp r;

    setup(&s);
    txn_ok(&s, "{\"ops\": [{\"op\": \"upsert\", \"table\": \"pairs\", \"record\": {\"region\": "
               "\"eu\", \"day\": \"2024-01-02T00:00:00Z\", \"score\": 0.1, \"ok\": true, \"n\": "
               "1}}, {\"op\": \"upsert\", \"table\": \"pairs\", \"record\": {\"region\": \"eu\", "
               "\"day\": 0, \"score\": 2, \"ok\": false, \"n\": 2}}]}");
    req(s.query_port, "GET", rec, s.token, NULL, &r);
    expect_status(&r, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r.json, "record"), "n")),
                     1);
    hresp_free(&r);

    /* Every key type, fields in any order, timestamps as RFC 3339 or epoch ms. */
    txn(&s,
        "{\"conditions\": [{\"table\": \"pairs\", \"key\": {\"ok\": true, \"score\": 0.1, "
        "\"day\": 1704153600000, \"region\": \"eu\"}, \"exists\": false}], \"ops\": [{\"op\": "
        "\"delete\", \"table\": \"pairs\", \"key\": {\"region\": \"eu\", \"day\": "
        "\"2024-01-02T01:00:00+01:00\", \"score\": 0.1, \"ok\": true}}]}",
        &r);
    ck_assert_error(&r, 409, "conflict");
    expect_conflict(&r, 0, "pairs",
                    "{\"ok\": true, \"score\": 0.1, \"day\": 1704153600000, \"region\": \"eu\"}",
                    "condition failed", "condition", 0);
    hresp_free(&r);
    txn_ok(&s, "{\"conditions\": [{\"table\": \"pairs\", \"key\": {\"ok\": true, \"score\": 0.1, "
               "\"day\": 1704153600000, \"region\": \"eu\"}, \"exists\": true}, {\"table\": "
               "\"pairs\", \"key\": {\"region\": \"eu\", \"day\": \"1970-01-01T00:00:00Z\", "
               "\"score\": 2.0, \"ok\": false}, \"exists\": true}], \"ops\": [{\"op\": \"delete\", "
               "\"table\": \"pairs\", \"key\": {\"region\": \"eu\", \"day\": "
               "\"2024-01-02T01:00:00+01:00\", \"score\": 0.1, \"ok\": true}}]}");
    req(s.query_port, "GET", rec, s.token, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/pairs/records/eu/0/2/false", s.token, NULL,
        &r);
    expect_status(&r, 200);
    hresp_free(&r);

    /* Deletes and upserts across tables in one commit; deleting a missing key is fine. */
    txn_ok(&s, "{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": 1, "
               "\"balance\": 1}}, {\"op\": \"upsert\", \"table\": \"holds\", \"record\": {\"id\": "
               "1, \"amount\": 0.5}}]}");
    txn_ok(&s, "{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1}}, "
               "{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 404}}, {\"op\": "
               "\"upsert\", \"table\": \"holds\", \"record\": {\"id\": 1, \"amount\": 0.25}}]}");
    ck_assert_int_eq(balance(&s, 1, NULL), -1);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/holds/records/1", s.token, NULL, &r);
    expect_status(&r, 200);
    ck_assert(json_real_value(json_object_get(json_object_get(r.json, "record"), "amount")) ==
              0.25);
    hresp_free(&r);

    /* A json field keeps the shortest form of its numbers. */
    txn_ok(&s, "{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": 2, "
               "\"balance\": 2, \"meta\": {\"x\": 0.1, \"y\": [1, \"a\\nb\", null]}}}]}");
    req(s.query_port, "GET", "/v1/tenants/acme/tables/accounts/records/2", s.token, NULL, &r);
    expect_status(&r, 200);
    ck_assert_msg(strstr(r.body, "\"meta\":{\"x\":0.1,\"y\":[1,\"a\\nb\",null]}"), "%s", r.body);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_bad_requests)
{
    static const char *const bad_keys[][2] = {
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": \"7\"}}]}",
         "ops[0].key.id: expected int64, got string"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 7.5}}]}",
         "ops[0].key.id: expected int64, got float"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": null}}]}",
         "ops[0].key.id: expected int64, got null"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1, \"x\": "
         "1}}]}",
         "ops[0].key.x: not a primary-key field"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"balance\": 1}}]}",
         "ops[0].key.balance: not a primary-key field"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": [7]}]}",
         "ops[0].key: expected an object"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\"}]}",
         "ops[0].key: expected an object"},
        {"{\"conditions\": [{\"table\": \"accounts\", \"key\": {\"id\": 1}, \"exists\": true}, "
         "{\"table\": \"pairs\", \"key\": {\"region\": \"eu\", \"day\": 0, \"score\": 1}, "
         "\"exists\": true}], \"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": "
         "{\"id\": 1}}]}",
         "conditions[1].key.ok: missing primary-key field"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1}}, {\"op\": "
         "\"delete\", \"table\": \"pairs\", \"key\": {\"region\": \"eu\", \"day\": \"yesterday\", "
         "\"score\": 1, \"ok\": true}}]}",
         "ops[1].key.day: invalid timestamp 'yesterday'"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"pairs\", \"key\": {\"region\": \"eu\", "
         "\"day\": 0, \"score\": \"1\", \"ok\": true}}]}",
         "ops[0].key.score: expected float64, got string"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"pairs\", \"key\": {\"region\": 1, "
         "\"day\": 0, \"score\": 1, \"ok\": true}}]}",
         "ops[0].key.region: expected string, got integer"},
        {"{\"ops\": [{\"op\": \"delete\", \"table\": \"pairs\", \"key\": {\"region\": \"eu\", "
         "\"day\": 0, \"score\": 1, \"ok\": 1}}]}",
         "ops[0].key.ok: expected bool, got integer"},
    };
    static const char *const bad_bodies[][2] = {
        {"[]", "must be a JSON object"},
        {"{}", "ops: expected an array of at least one op"},
        {"{\"ops\": []}", "ops: expected an array of at least one op"},
        {"{\"ops\": {}}", "ops: expected an array"},
        {"{\"ops\": [1]}", "ops[0]: expected an object"},
        {"{\"ops\": [{\"op\": \"merge\", \"table\": \"accounts\"}]}", "ops[0].op"},
        {"{\"ops\": [{\"table\": \"accounts\"}]}", "ops[0].op"},
        {"{\"opz\": []}", "opz: unknown member"},
        {"{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": 1, "
         "\"balance\": 1}, \"key\": {\"id\": 1}}]}",
         "ops[0].key: unknown member"},
        {"{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": [1]}]}",
         "ops[0].record: expected an object, got array"},
        {"{\"ops\": [{\"op\": \"upsert\", \"table\": 7, \"record\": {}}]}",
         "ops[0].table: expected a table name"},
        {"{\"ops\": [{\"op\": \"upsert\", \"table\": \"Bad Name\", \"record\": {}}]}",
         "ops[0].table: invalid table name"},
        {"{\"read_version\": -1, \"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": "
         "{\"id\": 1}}]}",
         "read_version: expected a version"},
        {"{\"read_version\": \"1\", \"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", "
         "\"key\": {\"id\": 1}}]}",
         "read_version: expected a version"},
        {"{\"conditions\": {}, \"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": "
         "{\"id\": 1}}]}",
         "conditions: expected an array"},
        {"{\"conditions\": [{\"table\": \"accounts\", \"key\": {\"id\": 1}}], \"ops\": [{\"op\": "
         "\"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1}}]}",
         "conditions[0]: a condition needs"},
        {"{\"conditions\": [{\"table\": \"accounts\", \"key\": {\"id\": 1}, \"exists\": 1}], "
         "\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1}}]}",
         "conditions[0].exists: expected true or false"},
        {"{\"conditions\": [{\"table\": \"accounts\", \"key\": {\"id\": 1}, \"version_le\": 1.5}], "
         "\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1}}]}",
         "conditions[0].version_le: expected a version"},
    };
    struct srv s;
    struct hresp r;
    long long v;

    setup(&s);
    v = version_now(&s);
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
        expect_400(&s, bad_keys[i][0], "bad_request", bad_keys[i][1]);
    for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++)
        expect_400(&s, bad_bodies[i][0], "bad_request", bad_bodies[i][1]);
    expect_400(&s, "{\"ops\": [", "invalid_json", "line 1");
    expect_400(&s, "{\"ops\": [], \"ops\": []}", "invalid_json", "duplicate");

    /* 422 names the op by its index; nothing is written. */
    txn(&s,
        "{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": 1, "
        "\"balance\": 1}}, {\"op\": \"delete\", \"table\": \"holds\", \"key\": {\"id\": 1}}, "
        "{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": 2, \"balance\": "
        "\"x\"}}, {\"op\": \"upsert\", \"table\": \"holds\", \"record\": {\"id\": 3}}]}",
        &r);
    ck_assert_error(&r, 422, "validation_failed");
    {
        json_t *d = details(&r);

        ck_assert_uint_eq(json_array_size(d), 2);
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(d, 0), "index")), 2);
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 0), "field")),
                         "balance");
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 0), "reason")),
                         "expected int64, got string");
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(d, 1), "index")), 3);
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 1), "reason")),
                         "missing required field");
        ck_assert_int_eq(
            json_integer_value(json_object_get(json_object_get(r.json, "error"), "rejected")), 2);
    }
    hresp_free(&r);

    /* Unknown tables (in ops and in conditions) and tenants: 404 naming them. */
    txn(&s,
        "{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": 1, "
        "\"balance\": 1}}, {\"op\": \"delete\", \"table\": \"nope\", \"key\": {\"id\": 1}}]}",
        &r);
    ck_assert_error(&r, 404, "not_found");
    ck_assert_ptr_nonnull(strstr(r.body, "ops[1].table: no table 'nope'"));
    hresp_free(&r);
    txn(&s,
        "{\"conditions\": [{\"table\": \"nope\", \"key\": {\"id\": 1}, \"exists\": true}], "
        "\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1}}]}",
        &r);
    ck_assert_error(&r, 404, "not_found");
    ck_assert_ptr_nonnull(strstr(r.body, "conditions[0].table"));
    hresp_free(&r);
    req(s.ingest_port, "POST", "/v1/tenants/nobody/txn", s.token,
        "{\"ops\": [{\"op\": \"delete\", \"table\": \"accounts\", \"key\": {\"id\": 1}}]}", &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);

    /* Over API_TXN_MAX_ITEMS (10000) ops and conditions: 413 before any lookup. */
    {
        static const char op[] = "{\"op\":\"delete\",\"table\":\"nope\",\"key\":{\"id\":1}},";
        size_t n = 10001, len = strlen(op);
        char *body = malloc(16 + n * len);

        ck_assert_ptr_nonnull(body);
        strcpy(body, "{\"ops\":[");
        for (size_t i = 0; i < n; i++)
            memcpy(body + 8 + i * len, op, len);
        strcpy(body + 8 + n * len - 1, "]}");
        txn(&s, body, &r);
        ck_assert_error(&r, 413, "payload_too_large");
        hresp_free(&r);
        free(body);
    }

    /* The query listener points at the ingest one. */
    req(s.query_port, "POST", TXN_PATH, s.token, "{}", &r);
    ck_assert_error(&r, 404, "wrong_listener");
    ck_assert_ptr_nonnull(strstr(r.body, "ingest"));
    hresp_free(&r);

    /* None of that wrote anything. */
    ck_assert_int_eq(version_now(&s), v);
    ck_assert_int_eq(balance(&s, 1, NULL), -1);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_auth)
{
    static const char body[] =
        "{\"ops\": [{\"op\": \"upsert\", \"table\": \"accounts\", \"record\": {\"id\": 1, "
        "\"balance\": 1}}]}";
    struct srv s;
    struct hresp r;
    char *rw, *ro, *other;

    setup(&s);
    admin_post(&s, "/v1/tenants", "{\"name\": \"globex\"}");
    rw = make_key(&s, "acme", "[\"write\"]");
    ro = make_key(&s, "acme", "[\"read\"]");
    other = make_key(&s, "globex", "[\"read\", \"write\", \"manage\"]");

    req(s.ingest_port, "POST", TXN_PATH, NULL, body, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    req(s.ingest_port, "POST", TXN_PATH, "sk_nope", body, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    /* Another tenant's key, a read-only key: 403, also for a tenant that does not exist. */
    req(s.ingest_port, "POST", TXN_PATH, other, body, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.ingest_port, "POST", TXN_PATH, ro, body, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.ingest_port, "POST", "/v1/tenants/nobody/txn", rw, body, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    /* Auth comes before the body is looked at. */
    req(s.ingest_port, "POST", TXN_PATH, other, "not json", &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    ck_assert_int_eq(balance(&s, 1, NULL), -1);

    /* globex cannot reach acme's tables through its own path either. */
    req(s.ingest_port, "POST", "/v1/tenants/globex/txn", other, body, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);

    req(s.ingest_port, "POST", TXN_PATH, rw, body, &r);
    expect_status(&r, 200);
    hresp_free(&r);
    ck_assert_int_eq(balance(&s, 1, NULL), 1);
    free(rw);
    free(ro);
    free(other);
    srv_stop(&s, 5000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("txn");
    TCase *tc = harness_tcase("txn", 30);

    harness_init();
    tcase_add_test(tc, test_conditions);
    tcase_add_test(tc, test_read_version);
    tcase_add_test(tc, test_delete_composite);
    tcase_add_test(tc, test_bad_requests);
    tcase_add_test(tc, test_auth);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
