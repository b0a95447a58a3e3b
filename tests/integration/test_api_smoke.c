/*
 * A first smoke test of the data API over HTTP (src/api/catalog.c,
 * records.c, auth.c) on the real binary: the authentication rules
 * (401, 403 for another tenant whether or not it exists, scopes, admin
 * endpoints), the catalog round trip, ingest (atomic 422 with details,
 * partial, gzip, invalid JSON, 415, Idempotency-Key replay), point reads
 * (types, as_of, 404), deletes, the version endpoint and a schema change
 * refused with one reason per field, then accepted and read back. The
 * fuller integration suites come with their own files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* One request with extra header lines ("Name: value\r\n"...), on a fresh connection. */
static void request(int port, const char *method, const char *path, const char *token,
                    const char *headers, const char *body, size_t body_len, struct hresp *r)
{
    struct hconn *c = hc_open(port);
    char head[4096];
    int n;

    n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: x\r\n%s%s%s%s", method, path,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
                 headers ? headers : "");
    ck_assert_int_lt(n, (int)sizeof(head) - 64);
    if (body)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", body_len);
    snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    ck_assert(hc_sendstr(c, head));
    if (body)
        ck_assert(hc_send(c, body, body_len));
    ck_assert_int_eq(hc_read(c, r, 3000, false), HREAD_OK);
    hc_close(c);
}

static void req(int port, const char *method, const char *path, const char *token,
                const char *headers, const char *body, struct hresp *r)
{
    request(port, method, path, token, headers, body, body ? strlen(body) : 0, r);
}

static void expect_status(const struct hresp *r, int status)
{
    ck_assert_msg(r->status == status, "expected %d, got %d: %s", status, r->status, r->body);
}

/* A tenant "acme" with a key of the given scopes; returns the token (caller frees). */
static char *make_key(struct srv *s, const char *tenant, const char *scopes_json)
{
    struct hresp r;
    char path[128], body[128];
    char *tok;

    snprintf(path, sizeof(path), "/v1/tenants/%s/keys", tenant);
    snprintf(body, sizeof(body), "{\"scopes\": %s}", scopes_json);
    req(s->query_port, "POST", path, s->token, NULL, body, &r);
    expect_status(&r, 201);
    tok = strdup(json_string_value(json_object_get(r.json, "token")));
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_eq(strncmp(tok, "sk_", 3), 0);
    hresp_free(&r);
    return tok;
}

static const char flights[] = "{\"name\": \"flights\", \"fields\": ["
                              "{\"name\": \"id\", \"type\": \"int64\"},"
                              "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                              "{\"name\": \"origin\", \"type\": \"string\"},"
                              "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true},"
                              "{\"name\": \"distance\", \"type\": \"float64\", \"default\": 0}"
                              "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

START_TEST(test_auth_rules)
{
    struct srv s;
    struct hresp r;
    char *rw, *ro;

    srv_start(&s, NULL);
    req(s.query_port, "POST", "/v1/tenants", s.token, NULL, "{\"name\": \"acme\"}", &r);
    expect_status(&r, 201);
    hresp_free(&r);
    req(s.query_port, "POST", "/v1/tenants", s.token, NULL, "{\"name\": \"globex\"}", &r);
    expect_status(&r, 201);
    hresp_free(&r);
    rw = make_key(&s, "acme", "[\"read\", \"write\"]");
    ro = make_key(&s, "acme", "[\"read\"]");

    /* No token, an unknown token: 401 with WWW-Authenticate. */
    req(s.query_port, "GET", "/v1/tenants/acme/tables", NULL, NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    ck_assert(hresp_header_has(&r, "WWW-Authenticate", "Bearer"));
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables", "sk_nope", NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);

    /* Another tenant: 403 whether it exists or not, and even with a bad name. */
    req(s.query_port, "GET", "/v1/tenants/globex/tables", rw, NULL, NULL, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/nosuch/tables", rw, NULL, NULL, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/Bad%20Name/tables", rw, NULL, NULL, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    /* The admin gets 404 and 400 for those. */
    req(s.query_port, "GET", "/v1/tenants/nosuch/tables", s.token, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/Bad%20Name/tables", s.token, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);

    /* Scopes, and admin endpoints. */
    req(s.query_port, "POST", "/v1/tenants/acme/tables", rw, NULL, flights, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.ingest_port, "POST", "/v1/tenants/acme/tables/flights/records", ro, NULL, "{}", &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables", ro, NULL, NULL, &r);
    expect_status(&r, 200);
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants", rw, NULL, NULL, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/admin/status", rw, NULL, NULL, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    req(s.query_port, "POST", "/v1/tenants/acme/keys", rw, NULL, "{\"scopes\": [\"read\"]}", &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);

    /* A revoked key is unknown at once; deleting the tenant drops its keys. */
    req(s.query_port, "GET", "/v1/tenants/acme/keys", s.token, NULL, NULL, &r);
    expect_status(&r, 200);
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "keys")), 2);
    ck_assert_ptr_null(strstr(r.body, "sk_"));
    hresp_free(&r);
    {
        char path[128];

        snprintf(path, sizeof(path), "/v1/tenants/acme/keys/%.16s", ro + 3);
        req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
        expect_status(&r, 204);
        hresp_free(&r);
    }
    req(s.query_port, "GET", "/v1/tenants/acme/tables", ro, NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    req(s.query_port, "DELETE", "/v1/tenants/acme", s.token, NULL, NULL, &r);
    expect_status(&r, 204);
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables", rw, NULL, NULL, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    free(rw);
    free(ro);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_write_read_flow)
{
    static const char nd[] = "Content-Type: application/x-ndjson\r\n";
    static const char recs[] = "/v1/tenants/acme/tables/flights/records";
    struct srv s;
    struct hresp r;
    json_t *rec;
    char *tok;
    long long v1;

    srv_start(&s, NULL);
    req(s.query_port, "POST", "/v1/tenants", s.token, NULL, "{\"name\": \"acme\"}", &r);
    expect_status(&r, 201);
    hresp_free(&r);
    tok = make_key(&s, "acme", "[\"read\", \"write\", \"manage\"]");
    req(s.query_port, "POST", "/v1/tenants/acme/tables", tok, NULL, flights, &r);
    expect_status(&r, 201);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "schema_version")), 1);
    hresp_free(&r);
    req(s.query_port, "POST", "/v1/tenants/acme/tables", tok, NULL, flights, &r);
    ck_assert_error(&r, 409, "already_exists");
    hresp_free(&r);

    /* Atomic: one bad record refuses all, with details and "rejected". */
    req(s.ingest_port, "POST", recs, tok, nd,
        "{\"id\": 1, \"ts\": \"2001-01-01T00:01:00Z\", \"origin\": \"LAS\"}\n"
        "{\"id\": 2, \"ts\": 0, \"origin\": \"SFO\", \"delay\": \"late\"}\n",
        &r);
    ck_assert_error(&r, 422, "validation_failed");
    {
        json_t *e = json_object_get(r.json, "error");
        json_t *d = json_array_get(json_object_get(e, "details"), 0);

        ck_assert_int_eq(json_integer_value(json_object_get(e, "rejected")), 1);
        ck_assert_int_eq(json_integer_value(json_object_get(d, "index")), 1);
        ck_assert_str_eq(json_string_value(json_object_get(d, "field")), "delay");
        ck_assert_str_eq(json_string_value(json_object_get(d, "reason")),
                         "expected int64, got string");
    }
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/flights/records/1", tok, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);

    /* Committed, then read back with every type formatted. */
    req(s.ingest_port, "POST", recs, tok, nd,
        "{\"id\": 1, \"ts\": \"2001-01-01T00:01:00Z\", \"origin\": \"LAS\", \"distance\": 0.1}\n"
        "{\"id\": 2, \"ts\": -1, \"origin\": \"S\\u00e9\", \"delay\": 3}\n",
        &r);
    expect_status(&r, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "accepted")), 2);
    v1 = json_integer_value(json_object_get(r.json, "version"));
    ck_assert_int_gt(v1, 0);
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/flights/records/1", tok, NULL, NULL, &r);
    expect_status(&r, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"record\":{\"id\":1,\"ts\":\"2001-01-01T00:01:00.000Z\","
                                         "\"origin\":\"LAS\",\"delay\":null,\"distance\":0.1}"));
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "record_version")), v1);
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/flights/records/2", tok, NULL, NULL, &r);
    expect_status(&r, 200);
    rec = json_object_get(r.json, "record");
    ck_assert_str_eq(json_string_value(json_object_get(rec, "ts")), "1969-12-31T23:59:59.999Z");
    ck_assert_str_eq(json_string_value(json_object_get(rec, "origin")), "S\xc3\xa9");
    hresp_free(&r);

    /* Partial mode, a JSON array with a syntax error, 415s. */
    req(s.ingest_port, "POST", "/v1/tenants/acme/tables/flights/records?mode=partial", tok, nd,
        "{\"id\": 3, \"ts\": 0, \"origin\": \"A\"}\nnot json\n", &r);
    expect_status(&r, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "accepted")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "rejected")), 1);
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "details")), 1);
    hresp_free(&r);
    req(s.ingest_port, "POST", recs, tok, "Content-Type: application/json; charset=utf-8\r\n",
        "[{\"id\": 4, \"ts\": 0, \"origin\": \"A\"},\n {\"id\": x}]", &r);
    ck_assert_error(&r, 400, "invalid_json");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r.json, "error"), "line")),
                     2);
    hresp_free(&r);
    req(s.ingest_port, "POST", recs, tok, "Content-Type: text/csv\r\n", "id\n1\n", &r);
    ck_assert_error(&r, 415, "unsupported_media_type");
    hresp_free(&r);
    req(s.ingest_port, "POST", recs, tok, "Content-Encoding: br\r\n", "x", &r);
    ck_assert_error(&r, 415, "unsupported_media_type");
    hresp_free(&r);
    req(s.ingest_port, "POST", recs, tok, "Content-Encoding: gzip\r\n", "not gzip", &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    {
        /* gzip of {"id":5,"ts":0,"origin":"Z"}\n */
        static const unsigned char gz[] = {
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0xca,
            0x4c, 0x51, 0xb2, 0x32, 0xd5, 0x51, 0x2a, 0x29, 0x56, 0xb2, 0x32, 0xd0, 0x51,
            0xca, 0x2f, 0xca, 0x4c, 0xcf, 0xcc, 0x53, 0xb2, 0x52, 0x8a, 0x52, 0xaa, 0xe5,
            0x02, 0x00, 0x1b, 0xa8, 0xcf, 0x9a, 0x1d, 0x00, 0x00, 0x00};

        request(s.ingest_port, "POST", recs, tok, "Content-Encoding: gzip\r\n", (const char *)gz,
                sizeof(gz), &r);
        expect_status(&r, 200);
        hresp_free(&r);
        req(s.query_port, "GET", "/v1/tenants/acme/tables/flights/records/5", tok, NULL, NULL, &r);
        expect_status(&r, 200);
        hresp_free(&r);
    }

    /* Idempotency-Key: the same answer again, nothing written again. */
    req(s.ingest_port, "POST", recs, tok, "Idempotency-Key: once\r\n",
        "{\"id\": 6, \"ts\": 0, \"origin\": \"I\"}", &r);
    expect_status(&r, 200);
    v1 = json_integer_value(json_object_get(r.json, "version"));
    hresp_free(&r);
    req(s.ingest_port, "POST", recs, tok, "Idempotency-Key: once\r\n",
        "{\"id\": 6, \"ts\": 0, \"origin\": \"I\"}", &r);
    expect_status(&r, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "version")), v1);
    ck_assert(hresp_header_has(&r, "Idempotent-Replayed", "true"));
    hresp_free(&r);

    /* as_of, deletes, the version. */
    req(s.ingest_port, "DELETE", "/v1/tenants/acme/tables/flights/records/6", tok, NULL, NULL, &r);
    expect_status(&r, 200);
    ck_assert_int_gt(json_integer_value(json_object_get(r.json, "version")), v1);
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/flights/records/6", tok, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    {
        char path[128];

        snprintf(path, sizeof(path), "/v1/tenants/acme/tables/flights/records/6?as_of=%lld", v1);
        req(s.query_port, "GET", path, tok, NULL, NULL, &r);
        expect_status(&r, 200);
        ck_assert_int_eq(json_integer_value(json_object_get(r.json, "version")), v1);
        hresp_free(&r);
    }
    req(s.query_port, "GET", "/v1/tenants/acme/tables/flights/records/6?as_of=x", tok, NULL, NULL,
        &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/version", tok, NULL, NULL, &r);
    expect_status(&r, 200);
    ck_assert_int_gt(json_integer_value(json_object_get(r.json, "version")), v1);
    hresp_free(&r);
    req(s.ingest_port, "GET", "/v1/tenants/acme/tables/flights/records/1", tok, NULL, NULL, &r);
    ck_assert_error(&r, 404, "wrong_listener");
    hresp_free(&r);
    free(tok);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_schema_change)
{
    static const char path[] = "/v1/tenants/acme/tables/flights/schema";
    struct srv s;
    struct hresp r;
    json_t *d;

    srv_start(&s, NULL);
    req(s.query_port, "POST", "/v1/tenants", s.token, NULL, "{\"name\": \"acme\"}", &r);
    hresp_free(&r);
    req(s.query_port, "POST", "/v1/tenants/acme/tables", s.token, NULL, flights, &r);
    expect_status(&r, 201);
    hresp_free(&r);
    req(s.ingest_port, "POST", "/v1/tenants/acme/tables/flights/records", s.token, NULL,
        "{\"id\": 1, \"ts\": 0, \"origin\": \"LAS\", \"delay\": 7}", &r);
    expect_status(&r, 200);
    hresp_free(&r);

    req(s.query_port, "PUT", path, s.token, NULL,
        "{\"fields\": [{\"name\": \"id\", \"type\": \"string\"}, {\"name\": \"ts\", \"type\": "
        "\"timestamp\"}, {\"name\": \"origin\", \"type\": \"string\"}, {\"name\": \"delay\", "
        "\"type\": \"int64\"}, {\"name\": \"gate\", \"type\": \"string\"}]}",
        &r);
    ck_assert_error(&r, 422, "incompatible_schema");
    d = json_object_get(json_object_get(r.json, "error"), "details");
    ck_assert_uint_eq(json_array_size(d), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 0), "field")), "id");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 1), "field")), "delay");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 2), "field")), "gate");
    hresp_free(&r);

    req(s.query_port, "PUT", path, s.token, NULL,
        "{\"fields\": [{\"name\": \"id\", \"type\": \"int64\"}, {\"name\": \"ts\", \"type\": "
        "\"timestamp\"}, {\"name\": \"origin\", \"type\": \"string\", \"nullable\": true}, "
        "{\"name\": \"delay\", \"type\": \"float64\", \"nullable\": true}, {\"name\": \"gate\", "
        "\"type\": \"string\", \"default\": \"A1\"}]}",
        &r);
    expect_status(&r, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r.json, "schema_version")), 2);
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/flights/records/1", s.token, NULL, NULL, &r);
    expect_status(&r, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"record\":{\"id\":1,\"ts\":\"1970-01-01T00:00:00.000Z\","
                                         "\"origin\":\"LAS\",\"delay\":7.0,\"gate\":\"A1\"}"));
    hresp_free(&r);
    req(s.query_port, "GET", "/v1/tenants/acme/tables/flights", s.token, NULL, NULL, &r);
    expect_status(&r, 200);
    ck_assert_uint_eq(json_array_size(json_object_get(r.json, "schema_versions")), 2);
    hresp_free(&r);
    srv_stop(&s, 5000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api_smoke");
    TCase *tc = harness_tcase("api", 30);

    harness_init();
    tcase_add_test(tc, test_auth_rules);
    tcase_add_test(tc, test_write_read_flow);
    tcase_add_test(tc, test_schema_change);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
