/*
 * Tenant isolation on the real binary: who may call what, and whose data
 * each caller sees.
 *
 * The matrix walks every tenant-scoped endpoint of the catalog, ingest,
 * deletes, point reads and the version, and for each sends: no token, a
 * token nobody issued, a forged token with a real key id, another
 * tenant's key, a key on a tenant that does not exist, a key without the
 * needed scope (all 401 or 403, and none of them may change anything:
 * the server's version stays put), then the key with just the needed
 * scope, which succeeds. Then the admin-only endpoints with a tenant key,
 * key revocation (at once, also on an open keep-alive connection), key
 * listings without tokens, data isolation between two tenants with the
 * same table and keys, a table or tenant deleted and re-created under the
 * same name, and the contract's 400/404/409 answers for names.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define SCOPE_R 1
#define SCOPE_W 2
#define SCOPE_M 4

static const char flights[] = "{\"name\": \"flights\", \"fields\": ["
                              "{\"name\": \"id\", \"type\": \"int64\"},"
                              "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                              "{\"name\": \"origin\", \"type\": \"string\"},"
                              "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true}"
                              "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

/* The version the admin sees for tenant: any committed change moves it. */
static long long version_of(const struct srv *s, const char *tenant)
{
    return api_version(s, tenant, NULL);
}

/* dst = pattern with every '@' replaced by value; asserts that it fits. */
static void fill(char *dst, size_t n, const char *pattern, const char *value)
{
    size_t len = 0;
    size_t vlen = strlen(value);

    for (const char *p = pattern; *p; p++) {
        if (*p == '@') {
            ck_assert_uint_lt(len + vlen, n);
            memcpy(dst + len, value, vlen);
            len += vlen;
        } else {
            ck_assert_uint_lt(len + 1, n);
            dst[len++] = *p;
        }
    }
    dst[len] = '\0';
}

/* One tenant-scoped endpoint; '@' in the path stands for the tenant. */
struct endpoint {
    const char *name;
    bool on_ingest;     /* served by the ingest listener */
    const char *method; /* HTTP method */
    const char *path;   /* '@' for the tenant */
    const char *body;   /* NULL for none */
    unsigned scope;     /* the one scope it needs */
    int ok;             /* the status with a key of that scope */
};

/*
 * In order: each success leaves what the next one needs (the table t2,
 * its record 7), and the last one removes the table again.
 */
static const struct endpoint endpoints[] = {
    {"create table", false, "POST", "/v1/tenants/@/tables",
     "{\"name\": \"t2\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, "
     "{\"name\": \"v\", \"type\": \"string\"}], \"primary_key\": [\"id\"]}",
     SCOPE_M, 201},
    {"list tables", false, "GET", "/v1/tenants/@/tables", NULL, SCOPE_R, 200},
    {"get table", false, "GET", "/v1/tenants/@/tables/t2", NULL, SCOPE_R, 200},
    {"change schema", false, "PUT", "/v1/tenants/@/tables/t2/schema",
     "{\"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": \"v\", \"type\": "
     "\"string\"}, {\"name\": \"note\", \"type\": \"string\", \"nullable\": true}]}",
     SCOPE_M, 200},
    {"ingest", true, "POST", "/v1/tenants/@/tables/t2/records", "{\"id\": 7, \"v\": \"seven\"}\n",
     SCOPE_W, 200},
    {"point read", false, "GET", "/v1/tenants/@/tables/t2/records/7", NULL, SCOPE_R, 200},
    {"version", false, "GET", "/v1/tenants/@/version", NULL, SCOPE_R, 200},
    {"delete record", true, "DELETE", "/v1/tenants/@/tables/t2/records/7", NULL, SCOPE_W, 200},
    {"delete table", false, "DELETE", "/v1/tenants/@/tables/t2", NULL, SCOPE_M, 204},
};

/* Sends ep for tenant with token and returns the answer in *r. */
static void call(const struct srv *s, const struct endpoint *ep, const char *tenant,
                 const char *token, const char *headers, struct hresp *r)
{
    char path[256];

    fill(path, sizeof(path), ep->path, tenant);
    api_req(ep->on_ingest ? s->ingest_port : s->query_port, ep->method, path, token,
            ep->body ? API_NDJSON : headers, ep->body, r);
}

/* Asserts an error answer, naming the endpoint and the case on failure. */
static void expect_error(const struct hresp *r, int status, const char *code,
                         const struct endpoint *ep, const char *what)
{
    const char *got = json_string_value(api_get(r, "error.code"));

    ck_assert_msg(r->status == status && got && !strcmp(got, code),
                  "%s with %s: got %d %s, want %d %s\n%s", ep->name, what, r->status,
                  got ? got : "(no code)", status, code, r->body ? r->body : "");
    ck_assert_error(r, status, code);
}

START_TEST(test_endpoint_matrix)
{
    struct srv s;
    struct hresp r;
    char id_r[17];
    char *k_r, *k_w, *k_m, *k_rw, *k_rm, *k_wm, *other;
    char forged[128];
    char wrong_admin[64];

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    api_create_tenant(&s, "globex");
    k_r = api_make_key(&s, "acme", "[\"read\"]", id_r);
    k_w = api_make_key(&s, "acme", "[\"write\"]", NULL);
    k_m = api_make_key(&s, "acme", "[\"manage\"]", NULL);
    k_rw = api_make_key(&s, "acme", "[\"read\", \"write\"]", NULL);
    k_rm = api_make_key(&s, "acme", "[\"read\", \"manage\"]", NULL);
    k_wm = api_make_key(&s, "acme", "[\"write\", \"manage\"]", NULL);
    other = api_make_key(&s, "globex", "[\"read\", \"write\", \"manage\"]", NULL);
    /* A real key id with a secret nobody was given. */
    snprintf(forged, sizeof(forged), "sk_%s_%064d", id_r, 0);
    /* The admin token with its last character changed. */
    snprintf(wrong_admin, sizeof(wrong_admin), "%s", HARNESS_ADMIN_TOKEN);
    wrong_admin[strlen(wrong_admin) - 1] ^= 1;

    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        const struct endpoint *ep = &endpoints[i];
        const char *right = ep->scope == SCOPE_R ? k_r : ep->scope == SCOPE_W ? k_w : k_m;
        const char *lacking = ep->scope == SCOPE_R ? k_wm : ep->scope == SCOPE_W ? k_rm : k_rw;
        long long before = version_of(&s, "acme");
        long long before_other = version_of(&s, "globex");

        call(&s, ep, "acme", NULL, NULL, &r);
        expect_error(&r, 401, "unauthenticated", ep, "no token");
        ck_assert(hresp_header_has(&r, "WWW-Authenticate", "Bearer"));
        hresp_free(&r);
        call(&s, ep, "acme", NULL, "Authorization: Basic YWRtaW46YWRtaW4=\r\n", &r);
        expect_error(&r, 401, "unauthenticated", ep, "basic auth");
        hresp_free(&r);
        call(&s, ep, "acme", "sk_0123456789abcdef_nope", NULL, &r);
        expect_error(&r, 401, "unauthenticated", ep, "an unknown token");
        hresp_free(&r);
        call(&s, ep, "acme", forged, NULL, &r);
        expect_error(&r, 401, "unauthenticated", ep, "a forged secret");
        hresp_free(&r);
        call(&s, ep, "acme", wrong_admin, NULL, &r);
        expect_error(&r, 401, "unauthenticated", ep, "a wrong admin token");
        hresp_free(&r);
        call(&s, ep, "acme", other, NULL, &r);
        expect_error(&r, 403, "forbidden", ep, "another tenant's key");
        hresp_free(&r);
        call(&s, ep, "nosuch", right, NULL, &r);
        expect_error(&r, 403, "forbidden", ep, "a key on a tenant that does not exist");
        hresp_free(&r);
        call(&s, ep, "globex", right, NULL, &r);
        expect_error(&r, 403, "forbidden", ep, "a key on another tenant");
        hresp_free(&r);
        call(&s, ep, "acme", lacking, NULL, &r);
        expect_error(&r, 403, "forbidden", ep, "a key without the scope");
        hresp_free(&r);

        /* Nothing above may have changed anything. */
        ck_assert_msg(version_of(&s, "acme") == before, "%s: a refused request wrote", ep->name);
        ck_assert_int_eq(version_of(&s, "globex"), before_other);

        call(&s, ep, "acme", right, NULL, &r);
        ck_assert_msg(r.status == ep->ok, "%s with the right key: %d, want %d: %s", ep->name,
                      r.status, ep->ok, r.body);
        hresp_free(&r);
    }

    /* The successful calls did their work: t2 came and went. */
    api_req(s.query_port, "GET", "/v1/tenants/acme/tables/t2", k_r, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants/globex/tables", other, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "tables")), 0);
    hresp_free(&r);

    free(k_r);
    free(k_w);
    free(k_m);
    free(k_rw);
    free(k_rm);
    free(k_wm);
    free(other);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_admin_endpoints_refuse_keys)
{
    static const struct {
        const char *method;
        const char *path;
        const char *body;
    } admin[] = {
        {"POST", "/v1/tenants", "{\"name\": \"evil\"}"},
        {"GET", "/v1/tenants", NULL},
        {"DELETE", "/v1/tenants/acme", NULL},
        {"POST", "/v1/tenants/acme/keys", "{\"scopes\": [\"read\"]}"},
        {"GET", "/v1/tenants/acme/keys", NULL},
        {"DELETE", "/v1/tenants/acme/keys/@", NULL},
        {"PUT", "/v1/tenants/acme/quotas", "{\"max_records_per_sec\": 1}"},
        {"GET", "/v1/admin/status", NULL},
        {"DELETE", "/v1/tenants/nosuch", NULL},
        {"GET", "/v1/tenants/Not%20A%20Name/keys", NULL},
    };
    struct srv s;
    struct hresp r;
    char id[17];
    char *all;
    long long before;

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    all = api_make_key(&s, "acme", "[\"read\", \"write\", \"manage\"]", id);
    api_create_table(&s, "acme", all, flights);
    before = version_of(&s, "acme");

    for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++) {
        char path[128];

        fill(path, sizeof(path), admin[i].path, id);
        api_req(s.query_port, admin[i].method, path, all, NULL, admin[i].body, &r);
        ck_assert_msg(r.status == 403, "%s %s with a tenant key: %d %s", admin[i].method, path,
                      r.status, r.body);
        ck_assert_error(&r, 403, "forbidden");
        hresp_free(&r);
        api_req(s.query_port, admin[i].method, path, NULL, NULL, admin[i].body, &r);
        ck_assert_error(&r, 401, "unauthenticated");
        hresp_free(&r);
    }
    ck_assert_int_eq(version_of(&s, "acme"), before);

    /* The key was not revoked, the tenant not deleted, no tenant created. */
    api_req(s.query_port, "GET", "/v1/tenants/acme/tables", all, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "tables")), 1);
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants", s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "tenants")), 1);
    hresp_free(&r);
    free(all);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_revoke_and_list_keys)
{
    static const char rec2[] = "{\"id\": 2, \"ts\": 0, \"origin\": \"SFO\"}\n";
    static const char rec3[] = "{\"id\": 3, \"ts\": 0, \"origin\": \"SEA\"}\n";
    struct srv s;
    struct hresp r;
    struct hconn *q, *in;
    char id_a[17], id_b[17], id_g[17];
    char path[128];
    char *a, *b, *g;
    char *log;

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    api_create_tenant(&s, "globex");
    a = api_make_key(&s, "acme", "[\"read\", \"write\", \"manage\"]", id_a);
    b = api_make_key(&s, "acme", "[\"read\"]", id_b);
    g = api_make_key(&s, "globex", "[\"read\"]", id_g);
    api_create_table(&s, "acme", a, flights);
    api_ingest(&s, "acme", "flights", a, "{\"id\": 1, \"ts\": 0, \"origin\": \"LAS\"}\n");

    /* The listing: ids and scopes, never a token or its secret. */
    api_req(s.query_port, "GET", "/v1/tenants/acme/keys", s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    {
        json_t *keys = api_get(&r, "keys");
        size_t i;
        json_t *k;
        bool seen_a = false, seen_b = false;

        ck_assert_uint_eq(json_array_size(keys), 2);
        json_array_foreach(keys, i, k)
        {
            const char *kid = json_string_value(json_object_get(k, "id"));

            ck_assert_ptr_nonnull(kid);
            ck_assert_ptr_null(json_object_get(k, "token"));
            ck_assert(json_is_array(json_object_get(k, "scopes")));
            seen_a |= !strcmp(kid, id_a);
            seen_b |= !strcmp(kid, id_b);
        }
        ck_assert(seen_a && seen_b);
    }
    ck_assert_ptr_null(strstr(r.body, a));
    ck_assert_ptr_null(strstr(r.body, a + 20)); /* the secret part */
    ck_assert_ptr_null(strstr(r.body, b + 20));
    ck_assert_ptr_null(strstr(r.body, "sk_"));
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants", s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_ptr_null(strstr(r.body, a + 20));
    ck_assert_ptr_null(strstr(r.body, "sk_"));
    hresp_free(&r);

    /* Keep-alive connections opened, and used, before the revocation. */
    q = hc_open(s.query_port);
    in = hc_open(s.ingest_port);
    ck_assert_int_eq(
        api_send(q, "GET", "/v1/tenants/acme/tables/flights/records/1", b, NULL, NULL, 0, 3000, &r),
        HREAD_OK);
    api_expect(&r, 200);
    hresp_free(&r);

    /* Another tenant's key id is not found under acme, and stays valid. */
    fill(path, sizeof(path), "/v1/tenants/acme/keys/@", id_g);
    api_req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants/globex/tables", g, NULL, NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);

    /* Revoke b: 401 at once, on the open connection too; a still works. */
    fill(path, sizeof(path), "/v1/tenants/acme/keys/@", id_b);
    api_req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    ck_assert_int_eq(
        api_send(q, "GET", "/v1/tenants/acme/tables/flights/records/1", b, NULL, NULL, 0, 3000, &r),
        HREAD_OK);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants/acme/version", b, NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    api_req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);

    /* Revoke a, with a request of it on the ingest connection before and after. */
    ck_assert_int_eq(api_send(in, "POST", "/v1/tenants/acme/tables/flights/records", a, API_NDJSON,
                              rec2, strlen(rec2), 3000, &r),
                     HREAD_OK);
    api_expect(&r, 200);
    hresp_free(&r);
    fill(path, sizeof(path), "/v1/tenants/acme/keys/@", id_a);
    api_req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    ck_assert_int_eq(api_send(in, "POST", "/v1/tenants/acme/tables/flights/records", a, API_NDJSON,
                              rec3, strlen(rec3), 3000, &r),
                     HREAD_OK);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "acme", "flights", "3", NULL, 0, &r), 404);
    hresp_free(&r);
    hc_close(q);
    hc_close(in);

    api_req(s.query_port, "GET", "/v1/tenants/acme/keys", s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "keys")), 0);
    hresp_free(&r);

    /* No token, nor its secret, ever reaches the server log. */
    srv_stop(&s, 5000);
    log = srv_log(&s);
    ck_assert_ptr_null(strstr(log, a + 20));
    ck_assert_ptr_null(strstr(log, b + 20));
    ck_assert_ptr_null(strstr(log, g + 20));
    ck_assert_ptr_null(strstr(log, HARNESS_ADMIN_TOKEN));
    free(log);
    free(a);
    free(b);
    free(g);
}
END_TEST

/* The origin of the record with key in tenant's flights, or NULL for 404 (caller frees). */
static char *origin_of(const struct srv *s, const char *tenant, const char *key, const char *token,
                       long long as_of)
{
    struct hresp r;
    char *o = NULL;
    int st = api_get_record(s, tenant, "flights", key, token, as_of, &r);

    if (st == 200)
        o = strdup(json_string_value(api_get(&r, "record.origin")));
    else
        ck_assert_msg(st == 404, "GET %s/%s: %d %s", tenant, key, st, r.body);
    hresp_free(&r);
    return o;
}

static void expect_origin(const struct srv *s, const char *tenant, const char *key,
                          const char *token, long long as_of, const char *want)
{
    char *got = origin_of(s, tenant, key, token, as_of);

    if (!want)
        ck_assert_msg(got == NULL, "%s/%s: '%s', want no record", tenant, key, got);
    else
        ck_assert_msg(got && !strcmp(got, want), "%s/%s: '%s', want '%s'", tenant, key,
                      got ? got : "(none)", want);
    free(got);
}

START_TEST(test_data_isolation)
{
    struct srv s;
    struct hresp r;
    char *a, *b;
    long long va, vb;

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    api_create_tenant(&s, "globex");
    a = api_make_key(&s, "acme", "[\"read\", \"write\", \"manage\"]", NULL);
    b = api_make_key(&s, "globex", "[\"read\", \"write\", \"manage\"]", NULL);
    api_create_table(&s, "acme", a, flights);
    api_create_table(&s, "globex", b, flights);
    va = api_ingest(&s, "acme", "flights", a,
                    "{\"id\": 1, \"ts\": 0, \"origin\": \"acme-1\"}\n"
                    "{\"id\": 2, \"ts\": 0, \"origin\": \"acme-2\"}\n");
    vb = api_ingest(&s, "globex", "flights", b,
                    "{\"id\": 1, \"ts\": 0, \"origin\": \"globex-1\"}\n"
                    "{\"id\": 3, \"ts\": 0, \"origin\": \"globex-3\"}\n");
    ck_assert_int_gt(vb, va);

    /* Each sees its own rows under the same table name and keys. */
    expect_origin(&s, "acme", "1", a, 0, "acme-1");
    expect_origin(&s, "acme", "2", a, 0, "acme-2");
    expect_origin(&s, "acme", "3", a, 0, NULL);
    expect_origin(&s, "globex", "1", b, 0, "globex-1");
    expect_origin(&s, "globex", "2", b, 0, NULL);
    expect_origin(&s, "globex", "3", b, 0, "globex-3");
    /* At any version: as_of does not open another tenant's rows. */
    expect_origin(&s, "acme", "3", a, vb, NULL);
    expect_origin(&s, "globex", "2", b, vb, NULL);

    /* B's key on A's data: 403, for every read and write. */
    ck_assert_int_eq(api_get_record(&s, "acme", "flights", "1", b, 0, &r), 403);
    hresp_free(&r);
    api_req(s.ingest_port, "DELETE", "/v1/tenants/acme/tables/flights/records/1", b, NULL, NULL,
            &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    api_req(s.ingest_port, "POST", "/v1/tenants/acme/tables/flights/records", b, API_NDJSON,
            "{\"id\": 1, \"ts\": 0, \"origin\": \"stolen\"}\n", &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);

    /* A delete in one tenant leaves the other's same key alone. */
    api_req(s.ingest_port, "DELETE", "/v1/tenants/globex/tables/flights/records/1", b, NULL, NULL,
            &r);
    api_expect(&r, 200);
    hresp_free(&r);
    expect_origin(&s, "globex", "1", b, 0, NULL);
    expect_origin(&s, "acme", "1", a, 0, "acme-1");

    /* An upsert in A does not touch B's row with the same key. */
    api_ingest(&s, "acme", "flights", a, "{\"id\": 3, \"ts\": 0, \"origin\": \"acme-3\"}\n");
    expect_origin(&s, "acme", "3", a, 0, "acme-3");
    expect_origin(&s, "globex", "3", b, 0, "globex-3");

    /* Tables are listed per tenant. */
    api_create_table(&s, "acme", a,
                     "{\"name\": \"only_acme\", \"fields\": [{\"name\": \"id\", \"type\": "
                     "\"int64\"}], \"primary_key\": [\"id\"]}");
    api_req(s.query_port, "GET", "/v1/tenants/globex/tables", b, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "tables")), 1);
    ck_assert_ptr_null(strstr(r.body, "only_acme"));
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants/globex/tables/only_acme", b, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    free(a);
    free(b);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_recreated_table_and_tenant)
{
    struct srv s;
    struct hresp r;
    char *a, *b;
    long long v_old;

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    api_create_tenant(&s, "globex");
    a = api_make_key(&s, "acme", "[\"read\", \"write\", \"manage\"]", NULL);
    b = api_make_key(&s, "globex", "[\"read\", \"write\", \"manage\"]", NULL);
    api_create_table(&s, "acme", a, flights);
    api_create_table(&s, "globex", b, flights);
    v_old = api_ingest(&s, "acme", "flights", a,
                       "{\"id\": 1, \"ts\": 0, \"origin\": \"old-1\"}\n"
                       "{\"id\": 2, \"ts\": 0, \"origin\": \"old-2\"}\n");
    api_ingest(&s, "globex", "flights", b, "{\"id\": 1, \"ts\": 0, \"origin\": \"globex-1\"}\n");

    /* Delete the table: reads of it are 404, then re-create it. */
    api_req(s.query_port, "DELETE", "/v1/tenants/acme/tables/flights", a, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "acme", "flights", "1", a, 0, &r), 404);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    api_req(s.ingest_port, "POST", "/v1/tenants/acme/tables/flights/records", a, API_NDJSON,
            "{\"id\": 9, \"ts\": 0, \"origin\": \"x\"}\n", &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    api_create_table(&s, "acme", a, flights);

    /* The new table is empty, now and as of the old rows' version. */
    expect_origin(&s, "acme", "1", a, 0, NULL);
    expect_origin(&s, "acme", "2", a, 0, NULL);
    ck_assert_int_ne(api_get_record(&s, "acme", "flights", "1", a, v_old, &r), 200);
    hresp_free(&r);
    api_ingest(&s, "acme", "flights", a, "{\"id\": 1, \"ts\": 0, \"origin\": \"new-1\"}\n");
    expect_origin(&s, "acme", "1", a, 0, "new-1");
    expect_origin(&s, "acme", "2", a, 0, NULL);
    /* The other tenant's table of the same name was never touched. */
    expect_origin(&s, "globex", "1", b, 0, "globex-1");

    /* Delete the tenant: its keys die with it; a new acme starts empty. */
    api_req(s.query_port, "DELETE", "/v1/tenants/acme", s.token, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants/acme/tables", a, NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    api_create_tenant(&s, "acme");
    api_req(s.query_port, "GET", "/v1/tenants/acme/tables", a, NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants/acme/tables", s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "tables")), 0);
    hresp_free(&r);
    api_req(s.query_port, "GET", "/v1/tenants/acme/keys", s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "keys")), 0);
    hresp_free(&r);
    api_create_table(&s, "acme", NULL, flights);
    expect_origin(&s, "acme", "1", NULL, 0, NULL);
    expect_origin(&s, "acme", "2", NULL, 0, NULL);
    expect_origin(&s, "globex", "1", b, 0, "globex-1");
    free(a);
    free(b);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_bad_names)
{
    static const char *const bad[] = {
        "Acme",
        "-acme",
        "_acme",
        "acme!",
        "a b",
        "",
        "acme.corp",
        "\\u00e9t\\u00e9",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 64 */
    };
    static const char *const bad_paths[][2] = {
        {"GET", "/v1/tenants/Acme/tables"},
        {"GET", "/v1/tenants/acme/tables/Flights"},
        {"GET", "/v1/tenants/acme/tables/-x/records/1"},
        {"GET", "/v1/tenants/ACME/version"},
        {"DELETE", "/v1/tenants/ACME"},
        {"GET", "/v1/tenants/a%20b/keys"},
        {"DELETE", "/v1/tenants/acme/tables/_x"},
    };
    struct srv s;
    struct hresp r;
    char *k;
    long long before;

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    k = api_make_key(&s, "acme", "[\"read\", \"write\", \"manage\"]", NULL);
    before = version_of(&s, "acme");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[256];

        snprintf(body, sizeof(body), "{\"name\": \"%s\"}", bad[i]);
        api_req(s.query_port, "POST", "/v1/tenants", s.token, NULL, body, &r);
        ck_assert_msg(r.status == 400, "tenant name '%s': %d %s", bad[i], r.status, r.body);
        ck_assert_error(&r, 400, "bad_request");
        hresp_free(&r);
        snprintf(body, sizeof(body),
                 "{\"name\": \"%s\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
                 "\"primary_key\": [\"id\"]}",
                 bad[i]);
        api_req(s.query_port, "POST", "/v1/tenants/acme/tables", k, NULL, body, &r);
        ck_assert_msg(r.status == 400, "table name '%s': %d %s", bad[i], r.status, r.body);
        ck_assert_error(&r, 400, "bad_request");
        hresp_free(&r);
    }
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        api_req(s.query_port, bad_paths[i][0], bad_paths[i][1], s.token, NULL, NULL, &r);
        ck_assert_msg(r.status == 400, "%s %s: %d %s", bad_paths[i][0], bad_paths[i][1], r.status,
                      r.body);
        ck_assert_error(&r, 400, "bad_request");
        hresp_free(&r);
    }
    api_req(s.ingest_port, "POST", "/v1/tenants/acme/tables/Bad/records", s.token, API_NDJSON,
            "{\"id\": 1}\n", &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    api_req(s.ingest_port, "DELETE", "/v1/tenants/acme/tables/Bad/records/1", k, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    /* A key gets 403 for a bad tenant name: it is another tenant's path. */
    api_req(s.query_port, "GET", "/v1/tenants/Acme/tables", k, NULL, NULL, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    ck_assert_int_eq(version_of(&s, "acme"), before);

    /* The edges of the pattern are accepted. */
    api_create_tenant(&s, "0-_");
    api_create_tenant(&s,
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"); /* 63 */
    api_create_table(&s, "acme", k,
                     "{\"name\": \"9_t-\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
                     "\"primary_key\": [\"id\"]}");
    api_req(s.query_port, "GET", "/v1/tenants/acme/tables/9_t-", k, NULL, NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_not_found_and_conflicts)
{
    static const char *const admin_404[][3] = {
        {"GET", "/v1/tenants/nosuch/tables", NULL},
        {"POST", "/v1/tenants/nosuch/tables",
         "{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
         "\"primary_key\": [\"id\"]}"},
        {"GET", "/v1/tenants/nosuch/keys", NULL},
        {"POST", "/v1/tenants/nosuch/keys", "{\"scopes\": [\"read\"]}"},
        {"DELETE", "/v1/tenants/nosuch", NULL},
        {"PUT", "/v1/tenants/nosuch/quotas", "{\"max_records_per_sec\": 5}"},
        {"GET", "/v1/tenants/nosuch/version", NULL},
        {"GET", "/v1/tenants/nosuch/tables/flights/records/1", NULL},
        {"GET", "/v1/tenants/acme/tables/nosuch", NULL},
        {"PUT", "/v1/tenants/acme/tables/nosuch/schema",
         "{\"fields\": [{\"name\": \"id\", \"type\": \"int64\"}]}"},
        {"DELETE", "/v1/tenants/acme/tables/nosuch", NULL},
        {"GET", "/v1/tenants/acme/tables/nosuch/records/1", NULL},
        {"GET", "/v1/tenants/acme/tables/flights/records/404", NULL},
        {"DELETE", "/v1/tenants/acme/keys/0123456789abcdef", NULL},
    };
    static const char *const ingest_404[][2] = {
        {"POST", "/v1/tenants/nosuch/tables/flights/records"},
        {"POST", "/v1/tenants/acme/tables/nosuch/records"},
        {"DELETE", "/v1/tenants/nosuch/tables/flights/records/1"},
        {"DELETE", "/v1/tenants/acme/tables/nosuch/records/1"},
    };
    struct srv s;
    struct hresp r;
    char *k;
    long long before;

    srv_start(&s, NULL);
    api_create_tenant(&s, "acme");
    k = api_make_key(&s, "acme", "[\"read\", \"write\", \"manage\"]", NULL);
    api_create_table(&s, "acme", k, flights);
    before = version_of(&s, "acme");
    for (size_t i = 0; i < sizeof(admin_404) / sizeof(admin_404[0]); i++) {
        api_req(s.query_port, admin_404[i][0], admin_404[i][1], s.token, NULL, admin_404[i][2], &r);
        ck_assert_msg(r.status == 404, "%s %s: %d %s", admin_404[i][0], admin_404[i][1], r.status,
                      r.body);
        ck_assert_error(&r, 404, "not_found");
        hresp_free(&r);
    }
    for (size_t i = 0; i < sizeof(ingest_404) / sizeof(ingest_404[0]); i++) {
        api_req(s.ingest_port, ingest_404[i][0], ingest_404[i][1], s.token,
                !strcmp(ingest_404[i][0], "POST") ? API_NDJSON : NULL,
                !strcmp(ingest_404[i][0], "POST") ? "{\"id\": 1, \"ts\": 0, \"origin\": \"x\"}\n"
                                                  : NULL,
                &r);
        ck_assert_msg(r.status == 404, "%s %s: %d %s", ingest_404[i][0], ingest_404[i][1], r.status,
                      r.body);
        ck_assert_error(&r, 404, "not_found");
        hresp_free(&r);
    }
    /* A key of its own tenant gets 404 for a missing table, too. */
    api_req(s.query_port, "GET", "/v1/tenants/acme/tables/nosuch/records/1", k, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    ck_assert_int_eq(version_of(&s, "acme"), before);

    /* 409 already_exists for a tenant or table name in use. */
    api_req(s.query_port, "POST", "/v1/tenants", s.token, NULL, "{\"name\": \"acme\"}", &r);
    ck_assert_error(&r, 409, "already_exists");
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/tenants/acme/tables", k, NULL, flights, &r);
    ck_assert_error(&r, 409, "already_exists");
    hresp_free(&r);
    ck_assert_int_eq(version_of(&s, "acme"), before);
    /* The same table name in another tenant is no conflict. */
    api_create_tenant(&s, "globex");
    api_create_table(&s, "globex", NULL, flights);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tenants");
    TCase *tc = harness_tcase("tenants", 30);

    harness_init();
    tcase_add_test(tc, test_endpoint_matrix);
    tcase_add_test(tc, test_admin_endpoints_refuse_keys);
    tcase_add_test(tc, test_revoke_and_list_keys);
    tcase_add_test(tc, test_data_isolation);
    tcase_add_test(tc, test_recreated_table_and_tenant);
    tcase_add_test(tc, test_bad_names);
    tcase_add_test(tc, test_not_found_and_conflicts);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
