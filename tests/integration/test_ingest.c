/*
 * The ingest contract on the real binary: every 4xx of POST .../records,
 * what each request writes (checked by reading it back), and the
 * versions.
 *
 *   400  invalid JSON in an array body, with line, column and byte;
 *        bad ?mode=, an Idempotency-Key over 256 bytes, a corrupt gzip
 *   413  a Content-Length or chunk over limits.max_body_bytes (16 KiB
 *        here), and a gzip body that inflates beyond it
 *   415  unknown Content-Type, charset or Content-Encoding
 *   422  validation_failed: one detail per bad record (index, field,
 *        reason), at most 100, "rejected" the total; nothing written
 *
 * and the successes: partial mode, the later record winning within one
 * request, gzip (one member and several), JSON array bodies,
 * Idempotency-Key replays that write nothing (per tenant), versions that
 * only grow, as_of reads of old values, deletes (also on a composite,
 * URL-encoded key).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define RECS "/v1/tenants/acme/tables/flights/records"

static const char flights[] = "{\"name\": \"flights\", \"fields\": ["
                              "{\"name\": \"id\", \"type\": \"int64\"},"
                              "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                              "{\"name\": \"origin\", \"type\": \"string\"},"
                              "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true}"
                              "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

static const char *const small_limit[] = {"STRATA_LIMITS_MAX_BODY_BYTES=16KiB", NULL};

/* A server with tenant acme, table flights and a read/write key (caller frees). */
static char *setup(struct srv *s, const struct srv_opts *opts)
{
    char *k;

    srv_start(s, opts);
    api_create_tenant(s, "acme");
    k = api_make_key(s, "acme", "[\"read\", \"write\", \"manage\"]", NULL);
    api_create_table(s, "acme", k, flights);
    return k;
}

/* The origin of acme/flights/key, or NULL when there is no such record (caller frees). */
static char *origin(const struct srv *s, const char *key, long long as_of, long long *rv)
{
    struct hresp r;
    char *o = NULL;
    int st = api_get_record(s, "acme", "flights", key, NULL, as_of, &r);

    if (st == 200) {
        o = strdup(json_string_value(api_get(&r, "record.origin")));
        if (rv)
            *rv = api_int(&r, "record_version");
    } else {
        ck_assert_msg(st == 404, "GET %s: %d %s", key, st, r.body);
        ck_assert_error(&r, 404, "not_found");
    }
    hresp_free(&r);
    return o;
}

#define expect_origin(s, key, as_of, want) expect_origin_at((s), (key), (as_of), (want), __LINE__)
static void expect_origin_at(const struct srv *s, const char *key, long long as_of,
                             const char *want, int line)
{
    char *got = origin(s, key, as_of, NULL);

    if (!want)
        ck_assert_msg(!got, "line %d: record %s is '%s', want none", line, key, got);
    else
        ck_assert_msg(got && !strcmp(got, want), "line %d: record %s is '%s', want '%s'", line, key,
                      got ? got : "(none)", want);
    free(got);
}

/* The detail i of an error answer (or of a partial answer when partial). */
static json_t *detail(const struct hresp *r, size_t i, bool partial)
{
    return json_array_get(api_get(r, partial ? "details" : "error.details"), i);
}

static void expect_detail(const struct hresp *r, size_t i, bool partial, long long index,
                          const char *field, const char *reason_prefix)
{
    json_t *d = detail(r, i, partial);
    json_t *f = json_object_get(d, "field");
    const char *reason = json_string_value(json_object_get(d, "reason"));

    ck_assert_msg(d != NULL, "no detail %zu in %s", i, r->body);
    ck_assert_int_eq(json_integer_value(json_object_get(d, "index")), index);
    if (field)
        ck_assert_msg(json_is_string(f) && !strcmp(json_string_value(f), field),
                      "detail %zu: field %s, want %s", i, json_string_value(f), field);
    else
        ck_assert_msg(json_is_null(f), "detail %zu: field should be null: %s", i, r->body);
    ck_assert_msg(reason && !strncmp(reason, reason_prefix, strlen(reason_prefix)),
                  "detail %zu: reason '%s', want '%s...'", i, reason ? reason : "(none)",
                  reason_prefix);
}

START_TEST(test_invalid_json_position)
{
    /* Line 3, column 11, is the '"' of "ts" after a missing comma. */
    static const char body[] = "[{\"id\": 1, \"ts\": 0, \"origin\": \"A\"},\n"
                               " {\"id\": 2, \"ts\": 0, \"origin\": \"B\"},\n"
                               " {\"id\": 3 \"ts\": 0}]";
    static const char aj[] = "Content-Type: application/json\r\n";
    static const char cut[] = "[{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}";
    /* The second ',' of line 2 is its byte 18. */
    static const char nd1[] = "{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}\n";
    static const char nd2[] = "{\"id\": 2, \"ts\": 0,, }\n";
    char nd[128];
    char reason[64];
    struct srv s;
    struct hresp r;
    long long before;
    const char *line3 = strstr(body, " {\"id\": 3");
    char *k = setup(&s, NULL);

    before = api_version(&s, "acme", NULL);
    api_req(s.ingest_port, "POST", RECS, k, aj, body, &r);
    ck_assert_error(&r, 400, "invalid_json");
    ck_assert_int_eq(api_int(&r, "error.line"), 3);
    ck_assert_int_eq(api_int(&r, "error.column"), 11);
    ck_assert_int_eq(api_int(&r, "error.offset"), (long long)(line3 - body) + 10);
    ck_assert_ptr_nonnull(strstr(json_string_value(api_get(&r, "error.message")), "line 3"));
    hresp_free(&r);

    /* A trailing comma; not an array; two arrays. */
    api_req(s.ingest_port, "POST", RECS, k, aj, "[{\"id\": 1, \"ts\": 0, \"origin\": \"A\"},]", &r);
    ck_assert_error(&r, 400, "invalid_json");
    ck_assert_int_eq(api_int(&r, "error.column"), 36); /* the "]" */
    hresp_free(&r);
    api_req(s.ingest_port, "POST", RECS, k, aj, "{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}", &r);
    ck_assert_error(&r, 400, "invalid_json");
    ck_assert_int_eq(api_int(&r, "error.offset"), 0);
    hresp_free(&r);
    api_req(s.ingest_port, "POST", RECS, k, aj, "[]\n[]", &r);
    ck_assert_error(&r, 400, "invalid_json");
    ck_assert_int_eq(api_int(&r, "error.line"), 2);
    hresp_free(&r);

    /*
     * NDJSON: a line that is not JSON fails that record only, so the
     * request is refused record by record, the position in the reason.
     */
    snprintf(nd, sizeof(nd), "%s%s", nd1, nd2);
    snprintf(reason, sizeof(reason), "invalid JSON at byte %zu", strlen(nd1) + 18);
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON, nd, &r);
    ck_assert_error(&r, 422, "validation_failed");
    ck_assert_int_eq(api_int(&r, "error.rejected"), 1);
    expect_detail(&r, 0, false, 1, NULL, reason);
    hresp_free(&r);
    ck_assert_int_eq(api_version(&s, "acme", NULL), before);
    expect_origin(&s, "1", 0, NULL);

    /*
     * At the end of the body the position is the end, not one past it
     * (the decoder reads a copy with a '\n' appended).
     */
    api_req(s.ingest_port, "POST", RECS, k, aj, cut, &r);
    ck_assert_error(&r, 400, "invalid_json");
    ck_assert_int_eq(api_int(&r, "error.offset"), (long long)strlen(cut));
    ck_assert_int_eq(api_int(&r, "error.line"), 1);
    ck_assert_int_eq(api_int(&r, "error.column"), (long long)strlen(cut) + 1);
    hresp_free(&r);
    api_req(s.ingest_port, "POST", RECS, k, aj, "", &r);
    ck_assert_error(&r, 400, "invalid_json");
    ck_assert_int_eq(api_int(&r, "error.offset"), 0);
    ck_assert_int_eq(api_int(&r, "error.line"), 1);
    ck_assert_int_eq(api_int(&r, "error.column"), 1);
    hresp_free(&r);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_too_large)
{
    struct srv_opts o = {.env = small_limit};
    struct srv s;
    struct hresp r;
    struct hconn *c;
    struct strbuf_like {
        char *p;
        size_t n;
    } big = {NULL, 0};
    unsigned char *gz;
    size_t gzlen;
    char head[512];
    char *k = setup(&s, &o);
    long long before = api_version(&s, "acme", NULL);

    /* Content-Length over the limit: refused from the head alone. */
    c = hc_open(s.ingest_port);
    snprintf(head, sizeof(head),
             "POST " RECS " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" API_NDJSON
             "Content-Length: 16385\r\n\r\n",
             k);
    ck_assert(hc_sendstr(c, head));
    ck_assert_int_eq(hc_read(c, &r, 3000, false), HREAD_OK);
    ck_assert_error(&r, 413, "payload_too_large");
    hresp_free(&r);
    hc_close(c);

    /* A chunk over the limit. */
    c = hc_open(s.ingest_port);
    snprintf(head, sizeof(head),
             "POST " RECS " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" API_NDJSON
             "Transfer-Encoding: chunked\r\n\r\n4001\r\n",
             k);
    ck_assert(hc_sendstr(c, head));
    ck_assert_int_eq(hc_read(c, &r, 3000, false), HREAD_OK);
    ck_assert_error(&r, 413, "payload_too_large");
    hresp_free(&r);
    hc_close(c);

    /* Records just under the limit are fine. */
    big.p = malloc(32768);
    ck_assert_ptr_nonnull(big.p);
    for (int i = 0; big.n < 16000; i++)
        big.n += (size_t)sprintf(big.p + big.n,
                                 "{\"id\": %d, \"ts\": 0, \"origin\": \"xxxxxxxxxxxxxxxxxxxx\"}\n",
                                 1000 + i);
    api_request(s.ingest_port, "POST", RECS, k, API_NDJSON, big.p, big.n, &r);
    api_expect(&r, 200);
    hresp_free(&r);

    /* A gzip body of a few hundred bytes that inflates beyond 16 KiB. */
    while (big.n < 20000)
        big.n += (size_t)sprintf(big.p + big.n,
                                 "{\"id\": %zu, \"ts\": 0, \"origin\": \"xxxxxxxxxxxxxxxxxxxx\"}\n",
                                 5000 + big.n);
    gz = api_gzip(big.p, big.n, &gzlen);
    ck_assert_uint_lt(gzlen, 16384);
    before = api_version(&s, "acme", NULL);
    api_request(s.ingest_port, "POST", RECS, k, API_NDJSON "Content-Encoding: gzip\r\n", gz, gzlen,
                &r);
    ck_assert_error(&r, 413, "payload_too_large");
    hresp_free(&r);
    ck_assert_int_eq(api_version(&s, "acme", NULL), before);
    free(gz);
    free(big.p);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_media_types)
{
    static const char *const refused[] = {
        "Content-Type: text/csv\r\n",
        "Content-Type: application/xml\r\n",
        "Content-Type: application/json; charset=iso-8859-1\r\n",
        "Content-Type: multipart/form-data; boundary=x\r\n",
        "Content-Encoding: br\r\n",
        "Content-Encoding: deflate\r\n",
        "Content-Encoding: gzip, gzip\r\n",
        "Content-Encoding: compress\r\n",
    };
    static const char *const accepted[] = {
        "",
        "Content-Type: application/x-ndjson\r\n",
        "Content-Type: application/x-ndjson; charset=utf-8\r\n",
        "Content-Type: APPLICATION/X-NDJSON\r\n",
        "Content-Encoding: identity\r\n",
    };
    struct srv s;
    struct hresp r;
    char *k = setup(&s, NULL);
    long long before = api_version(&s, "acme", NULL);

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        api_req(s.ingest_port, "POST", RECS, k, refused[i],
                "{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}\n", &r);
        ck_assert_msg(r.status == 415, "%s-> %d %s", refused[i], r.status, r.body);
        ck_assert_error(&r, 415, "unsupported_media_type");
        hresp_free(&r);
    }
    ck_assert_int_eq(api_version(&s, "acme", NULL), before);
    expect_origin(&s, "1", 0, NULL);
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        char body[128];

        snprintf(body, sizeof(body), "{\"id\": %zu, \"ts\": 0, \"origin\": \"m%zu\"}\n", 10 + i, i);
        api_req(s.ingest_port, "POST", RECS, k, accepted[i], body, &r);
        ck_assert_msg(r.status == 200, "'%s' -> %d %s", accepted[i], r.status, r.body);
        hresp_free(&r);
    }
    expect_origin(&s, "14", 0, "m4");

    /* A corrupt gzip body, a bad mode: 400. */
    api_req(s.ingest_port, "POST", RECS, k, "Content-Encoding: gzip\r\n", "\x1f\x8b not gzip", &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    api_req(s.ingest_port, "POST", RECS "?mode=lenient", k, API_NDJSON,
            "{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}\n", &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    expect_origin(&s, "1", 0, NULL);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_validation_details)
{
    struct srv s;
    struct hresp r;
    char *body = malloc(64 * 1024);
    size_t n = 0;
    char *k = setup(&s, NULL);
    long long before = api_version(&s, "acme", NULL);
    json_t *details;

    ck_assert_ptr_nonnull(body);
    /* Six kinds of bad records, then 144 more of one kind, one good record at 150. */
    n += (size_t)sprintf(body + n, "{\"id\": 0, \"ts\": 0}\n");
    n += (size_t)sprintf(body + n, "{\"id\": 1, \"ts\": 0, \"origin\": \"A\", \"gate\": 7}\n");
    n += (size_t)sprintf(body + n, "[1, 2]\n");
    n += (size_t)sprintf(body + n, "{\"id\": 3, \"ts\": \"yesterday\", \"origin\": \"A\"}\n");
    n += (size_t)sprintf(body + n, "{\"id\": null, \"ts\": 0, \"origin\": \"A\"}\n");
    n += (size_t)sprintf(body + n, "{\"id\": 5, \"ts\": 0, \"origin\": \"A\", \"delay\": 1.5}\n");
    for (int i = 6; i < 150; i++)
        n += (size_t)sprintf(body + n, "{\"id\": %d, \"ts\": 0, \"origin\": %d}\n", i, i);
    n += (size_t)sprintf(body + n, "{\"id\": 150, \"ts\": 0, \"origin\": \"good\"}\n");

    api_request(s.ingest_port, "POST", RECS, k, API_NDJSON, body, n, &r);
    ck_assert_error(&r, 422, "validation_failed");
    ck_assert_int_eq(api_int(&r, "error.rejected"), 150);
    details = api_get(&r, "error.details");
    ck_assert_uint_eq(json_array_size(details), 100);
    expect_detail(&r, 0, false, 0, "origin", "missing required field");
    expect_detail(&r, 1, false, 1, "gate", "unknown field 'gate'");
    expect_detail(&r, 2, false, 2, NULL, "record is not a JSON object");
    expect_detail(&r, 3, false, 3, "ts", "invalid timestamp 'yesterday'");
    expect_detail(&r, 4, false, 4, "id", "");
    expect_detail(&r, 5, false, 5, "delay", "expected int64, got float");
    for (size_t i = 6; i < 100; i++)
        expect_detail(&r, i, false, (long long)i, "origin", "expected string, got ");
    hresp_free(&r);

    /* Atomic: the good record was not written, nothing was. */
    ck_assert_int_eq(api_version(&s, "acme", NULL), before);
    expect_origin(&s, "150", 0, NULL);
    expect_origin(&s, "1", 0, NULL);

    /* One bad record among good ones refuses them all too. */
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON,
            "{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}\n"
            "{\"id\": 2, \"ts\": 0, \"origin\": \"B\"}\n"
            "{\"id\": 3, \"ts\": 0, \"origin\": \"C\", \"delay\": \"late\"}\n",
            &r);
    ck_assert_error(&r, 422, "validation_failed");
    ck_assert_int_eq(api_int(&r, "error.rejected"), 1);
    ck_assert_uint_eq(json_array_size(api_get(&r, "error.details")), 1);
    expect_detail(&r, 0, false, 2, "delay", "expected int64, got string");
    hresp_free(&r);
    expect_origin(&s, "1", 0, NULL);
    expect_origin(&s, "2", 0, NULL);
    ck_assert_int_eq(api_version(&s, "acme", NULL), before);
    free(body);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

/* Past limits.max_tables_per_tenant / max_keys_per_tenant: 507 quota_exceeded. */
START_TEST(test_catalog_count_limits)
{
    static const char *const env[] = {"STRATA_LIMITS_MAX_TABLES_PER_TENANT=1",
                                      "STRATA_LIMITS_MAX_KEYS_PER_TENANT=1", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hresp r;
    char *k = setup(&s, &o);
    long long before = api_version(&s, "acme", k);

    api_req(s.query_port, "POST", "/v1/tenants/acme/tables", k,
            "Content-Type: application/json\r\n",
            "{\"name\": \"second\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"}], "
            "\"primary_key\": [\"id\"]}",
            &r);
    ck_assert_error(&r, 507, "quota_exceeded");
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/tenants/acme/keys", s.token, NULL,
            "{\"scopes\": [\"read\"]}", &r);
    ck_assert_error(&r, 507, "quota_exceeded");
    hresp_free(&r);
    ck_assert_int_eq(api_version(&s, "acme", k), before);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

/* A tenant over max_records_per_sec gets 429 rate_limited with Retry-After. */
START_TEST(test_rate_quota)
{
    struct srv s;
    struct hresp r;
    char *k = setup(&s, NULL);
    const char *two = "{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}\n"
                      "{\"id\": 2, \"ts\": 0, \"origin\": \"B\"}\n";
    long long before;
    char *ra;

    api_req(s.query_port, "PUT", "/v1/tenants/acme/quotas", s.token, NULL,
            "{\"max_records_per_sec\": 2}", &r);
    api_expect(&r, 200);
    hresp_free(&r);
    /* One second of quota passes, the next batch at once does not. */
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON, two, &r);
    api_expect(&r, 200);
    hresp_free(&r);
    before = api_version(&s, "acme", k);
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON, two, &r);
    ck_assert_error(&r, 429, "rate_limited");
    ra = hresp_header(&r, "Retry-After");
    ck_assert_ptr_nonnull(ra);
    ck_assert_int_ge(atoi(ra), 1);
    free(ra);
    hresp_free(&r);
    ck_assert_int_eq(api_version(&s, "acme", k), before);
    /* Lifting the quota lets it through. */
    api_req(s.query_port, "PUT", "/v1/tenants/acme/quotas", s.token, NULL,
            "{\"max_records_per_sec\": 0}", &r);
    api_expect(&r, 200);
    hresp_free(&r);
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON, two, &r);
    api_expect(&r, 200);
    hresp_free(&r);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_partial_mode)
{
    struct srv s;
    struct hresp r;
    char *body = malloc(64 * 1024);
    size_t n = 0;
    long long v, rv = 0;
    char *k = setup(&s, NULL);
    char *o;

    ck_assert_ptr_nonnull(body);
    api_req(s.ingest_port, "POST", RECS "?mode=partial", k, API_NDJSON,
            "{\"id\": 1, \"ts\": 0, \"origin\": \"A\"}\n"
            "{\"id\": 2, \"ts\": 0}\n"
            "{\"id\": 3, \"ts\": 0, \"origin\": \"C\"}\n"
            "not json\n"
            "{\"id\": 5, \"ts\": 0, \"origin\": \"E\", \"delay\": 5}\n",
            &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "accepted"), 3);
    ck_assert_int_eq(api_int(&r, "rejected"), 2);
    ck_assert_uint_eq(json_array_size(api_get(&r, "details")), 2);
    expect_detail(&r, 0, true, 1, "origin", "missing required field");
    expect_detail(&r, 1, true, 3, NULL, "invalid JSON");
    v = api_int(&r, "version");
    hresp_free(&r);
    o = origin(&s, "1", 0, &rv);
    ck_assert_str_eq(o, "A");
    ck_assert_int_eq(rv, v);
    free(o);
    expect_origin(&s, "3", 0, "C");
    expect_origin(&s, "5", 0, "E");
    expect_origin(&s, "2", 0, NULL);

    /* 120 bad and 30 good: 100 details, every count exact. */
    for (int i = 0; i < 150; i++) {
        if (i % 5 == 0)
            n += (size_t)sprintf(body + n, "{\"id\": %d, \"ts\": 0, \"origin\": \"p%d\"}\n",
                                 100 + i, i);
        else
            n += (size_t)sprintf(body + n, "{\"id\": %d, \"ts\": 0, \"origin\": false}\n", 100 + i);
    }
    api_request(s.ingest_port, "POST", RECS "?mode=partial", k, API_NDJSON, body, n, &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "accepted"), 30);
    ck_assert_int_eq(api_int(&r, "rejected"), 120);
    ck_assert_uint_eq(json_array_size(api_get(&r, "details")), 100);
    expect_detail(&r, 0, true, 1, "origin", "expected string, got ");
    expect_detail(&r, 99, true, 124, "origin", "expected string, got ");
    ck_assert_int_gt(api_int(&r, "version"), v);
    hresp_free(&r);
    expect_origin(&s, "100", 0, "p0");
    expect_origin(&s, "245", 0, "p145");
    expect_origin(&s, "101", 0, NULL);

    /* The later valid record wins over an earlier one; a bad later one does not. */
    api_req(s.ingest_port, "POST", RECS "?mode=partial", k, API_NDJSON,
            "{\"id\": 7, \"ts\": 0, \"origin\": \"first\"}\n"
            "{\"id\": 7, \"ts\": 0, \"origin\": 7}\n",
            &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "accepted"), 1);
    hresp_free(&r);
    expect_origin(&s, "7", 0, "first");

    /* mode=atomic is the default, by name too. */
    api_req(s.ingest_port, "POST", RECS "?mode=atomic", k, API_NDJSON,
            "{\"id\": 8, \"ts\": 0, \"origin\": \"A\"}\n{\"id\": 9}\n", &r);
    ck_assert_error(&r, 422, "validation_failed");
    hresp_free(&r);
    expect_origin(&s, "8", 0, NULL);
    free(body);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_later_key_wins_and_arrays)
{
    static const char aj[] = "Content-Type: application/json\r\n";
    struct srv s;
    struct hresp r;
    long long v, rv = 0;
    char *k = setup(&s, NULL);
    char *o;

    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON,
            "{\"id\": 1, \"ts\": 0, \"origin\": \"a\"}\n"
            "{\"id\": 2, \"ts\": 0, \"origin\": \"x\"}\n"
            "{\"id\": 1, \"ts\": 0, \"origin\": \"b\"}\n"
            "{\"id\": 1, \"ts\": 0, \"origin\": \"c\", \"delay\": 3}\n",
            &r);
    api_expect(&r, 200);
    v = api_int(&r, "version");
    hresp_free(&r);
    o = origin(&s, "1", 0, &rv);
    ck_assert_str_eq(o, "c");
    ck_assert_int_eq(rv, v);
    free(o);
    expect_origin(&s, "2", 0, "x");

    /* A JSON array body, with a charset, the same rule inside. */
    api_req(s.ingest_port, "POST", RECS, k, "Content-Type: application/json; charset=UTF-8\r\n",
            "[{\"id\": 3, \"ts\": 0, \"origin\": \"p\"},\n"
            " {\"id\": 4, \"ts\": \"2024-02-29T12:00:00Z\", \"origin\": \"q\"},\n"
            " {\"id\": 3, \"ts\": 0, \"origin\": \"r\"}]",
            &r);
    api_expect(&r, 200);
    ck_assert_int_gt(api_int(&r, "version"), v);
    hresp_free(&r);
    expect_origin(&s, "3", 0, "r");
    expect_origin(&s, "4", 0, "q");

    /* An array with a bad record: 422 with its index, nothing written. */
    api_req(s.ingest_port, "POST", RECS, k, aj,
            "[{\"id\": 5, \"ts\": 0, \"origin\": \"s\"}, {\"id\": 6, \"ts\": 0, \"origin\": []}]",
            &r);
    ck_assert_error(&r, 422, "validation_failed");
    expect_detail(&r, 0, false, 1, "origin", "expected string, got array");
    hresp_free(&r);
    expect_origin(&s, "5", 0, NULL);

    /* An empty array writes nothing and fails nothing. */
    v = api_version(&s, "acme", NULL);
    api_req(s.ingest_port, "POST", RECS, k, aj, "[]", &r);
    ck_assert_msg(r.status == 200 || r.status == 422, "empty array: %d %s", r.status, r.body);
    if (r.status == 200)
        ck_assert_int_eq(api_int(&r, "accepted"), 0);
    hresp_free(&r);
    expect_origin(&s, "5", 0, NULL);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_gzip)
{
    struct srv s;
    struct hresp r;
    char *plain = malloc(64 * 1024);
    unsigned char *gz1, *gz2, *both;
    size_t n = 0, half, len1, len2;
    char *k = setup(&s, NULL);

    ck_assert_ptr_nonnull(plain);
    for (int i = 0; i < 200; i++)
        n += (size_t)sprintf(plain + n, "{\"id\": %d, \"ts\": %d, \"origin\": \"g%d\"}\n", i,
                             i * 1000, i);
    gz1 = api_gzip(plain, n, &len1);
    api_request(s.ingest_port, "POST", RECS, k, API_NDJSON "Content-Encoding: gzip\r\n", gz1, len1,
                &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "accepted"), 200);
    hresp_free(&r);
    free(gz1);
    expect_origin(&s, "0", 0, "g0");
    expect_origin(&s, "199", 0, "g199");

    /* Two gzip members back to back, split mid-record, as gunzip reads them. */
    n = 0;
    for (int i = 0; i < 10; i++)
        n += (size_t)sprintf(plain + n, "{\"id\": %d, \"ts\": 0, \"origin\": \"m%d\"}\n", 1000 + i,
                             i);
    half = n / 2 + 3;
    gz1 = api_gzip(plain, half, &len1);
    gz2 = api_gzip(plain + half, n - half, &len2);
    both = malloc(len1 + len2);
    ck_assert_ptr_nonnull(both);
    memcpy(both, gz1, len1);
    memcpy(both + len1, gz2, len2);
    api_request(s.ingest_port, "POST", RECS, k, "Content-Encoding: x-gzip\r\n", both, len1 + len2,
                &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "accepted"), 10);
    hresp_free(&r);
    expect_origin(&s, "1000", 0, "m0");
    expect_origin(&s, "1009", 0, "m9");

    /* A gzip JSON array; a gzip body cut short is refused whole. */
    free(gz1);
    n = (size_t)sprintf(plain, "[{\"id\": 2000, \"ts\": 0, \"origin\": \"arr\"}]");
    gz1 = api_gzip(plain, n, &len1);
    api_request(s.ingest_port, "POST", RECS, k,
                "Content-Type: application/json\r\nContent-Encoding: gzip\r\n", gz1, len1, &r);
    api_expect(&r, 200);
    hresp_free(&r);
    expect_origin(&s, "2000", 0, "arr");
    free(gz1);
    n = (size_t)sprintf(plain, "{\"id\": 2001, \"ts\": 0, \"origin\": \"cut\"}\n");
    gz1 = api_gzip(plain, n, &len1);
    api_request(s.ingest_port, "POST", RECS, k, "Content-Encoding: gzip\r\n", gz1, len1 - 6, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    expect_origin(&s, "2001", 0, NULL);
    free(gz1);
    free(gz2);
    free(both);
    free(plain);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_idempotency_key)
{
    struct srv s;
    struct hresp r;
    char hdr[400];
    long long v1, v2;
    char *k = setup(&s, NULL);
    char *g;

    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON "Idempotency-Key: batch-1\r\n",
            "{\"id\": 1, \"ts\": 0, \"origin\": \"first\"}\n", &r);
    api_expect(&r, 200);
    ck_assert(!hresp_header_has(&r, "Idempotent-Replayed", "true"));
    v1 = api_int(&r, "version");
    hresp_free(&r);

    /* The retry, even with another body, gets the first answer and writes nothing. */
    for (int i = 0; i < 3; i++) {
        api_req(s.ingest_port, "POST", RECS, k, API_NDJSON "Idempotency-Key: batch-1\r\n",
                i == 0 ? "{\"id\": 1, \"ts\": 0, \"origin\": \"first\"}\n"
                       : "{\"id\": 1, \"ts\": 0, \"origin\": \"second\"}\n"
                         "{\"id\": 2, \"ts\": 0, \"origin\": \"new\"}\n",
                &r);
        api_expect(&r, 200);
        ck_assert(hresp_header_has(&r, "Idempotent-Replayed", "true"));
        ck_assert_int_eq(api_int(&r, "version"), v1);
        ck_assert_int_eq(api_int(&r, "accepted"), 1);
        hresp_free(&r);
    }
    ck_assert_int_eq(api_version(&s, "acme", NULL), v1);
    expect_origin(&s, "1", 0, "first");
    expect_origin(&s, "2", 0, NULL);

    /* A later change to the record is not undone by another retry. */
    v2 = api_ingest(&s, "acme", "flights", k, "{\"id\": 1, \"ts\": 0, \"origin\": \"later\"}\n");
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON "Idempotency-Key: batch-1\r\n",
            "{\"id\": 1, \"ts\": 0, \"origin\": \"first\"}\n", &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "version"), v1);
    hresp_free(&r);
    expect_origin(&s, "1", 0, "later");
    ck_assert_int_eq(api_version(&s, "acme", NULL), v2);

    /* A different key writes; keys are case-sensitive strings. */
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON "Idempotency-Key: BATCH-1\r\n",
            "{\"id\": 3, \"ts\": 0, \"origin\": \"other\"}\n", &r);
    api_expect(&r, 200);
    ck_assert_int_gt(api_int(&r, "version"), v2);
    hresp_free(&r);
    expect_origin(&s, "3", 0, "other");

    /* Keys are per tenant: globex's batch-1 is its own. */
    api_create_tenant(&s, "globex");
    g = api_make_key(&s, "globex", "[\"read\", \"write\", \"manage\"]", NULL);
    api_create_table(&s, "globex", g, flights);
    api_req(s.ingest_port, "POST", "/v1/tenants/globex/tables/flights/records", g,
            API_NDJSON "Idempotency-Key: batch-1\r\n",
            "{\"id\": 1, \"ts\": 0, \"origin\": \"globex\"}\n", &r);
    api_expect(&r, 200);
    ck_assert(!hresp_header_has(&r, "Idempotent-Replayed", "true"));
    ck_assert_int_gt(api_int(&r, "version"), v2);
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "globex", "flights", "1", g, 0, &r), 200);
    ck_assert_str_eq(json_string_value(api_get(&r, "record.origin")), "globex");
    hresp_free(&r);

    /* A refused request is not remembered: the fixed retry commits. */
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON "Idempotency-Key: fixme\r\n",
            "{\"id\": 4, \"ts\": 0}\n", &r);
    ck_assert_error(&r, 422, "validation_failed");
    hresp_free(&r);
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON "Idempotency-Key: fixme\r\n",
            "{\"id\": 4, \"ts\": 0, \"origin\": \"fixed\"}\n", &r);
    api_expect(&r, 200);
    hresp_free(&r);
    expect_origin(&s, "4", 0, "fixed");

    /* 256 bytes are allowed, 257 are not. */
    snprintf(hdr, sizeof(hdr), API_NDJSON "Idempotency-Key: %0256d\r\n", 0);
    api_req(s.ingest_port, "POST", RECS, k, hdr, "{\"id\": 5, \"ts\": 0, \"origin\": \"x\"}\n", &r);
    api_expect(&r, 200);
    hresp_free(&r);
    snprintf(hdr, sizeof(hdr), API_NDJSON "Idempotency-Key: %0257d\r\n", 0);
    api_req(s.ingest_port, "POST", RECS, k, hdr, "{\"id\": 6, \"ts\": 0, \"origin\": \"x\"}\n", &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    expect_origin(&s, "6", 0, NULL);
    free(g);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_versions_and_as_of)
{
    struct srv s;
    struct hresp r;
    long long v[6];
    long long rv = 0;
    char path[128];
    char *k = setup(&s, NULL);
    char *o;

    v[0] = api_version(&s, "acme", k);
    v[1] = api_ingest(&s, "acme", "flights", k, "{\"id\": 1, \"ts\": 0, \"origin\": \"one\"}\n");
    v[2] = api_ingest(&s, "acme", "flights", k,
                      "{\"id\": 1, \"ts\": 0, \"origin\": \"two\"}\n"
                      "{\"id\": 2, \"ts\": 0, \"origin\": \"b\"}\n");
    api_req(s.ingest_port, "DELETE", RECS "/1", k, NULL, NULL, &r);
    api_expect(&r, 200);
    v[3] = api_int(&r, "version");
    hresp_free(&r);
    v[4] = api_ingest(&s, "acme", "flights", k, "{\"id\": 1, \"ts\": 0, \"origin\": \"three\"}\n");
    for (int i = 1; i < 5; i++)
        ck_assert_int_gt(v[i], v[i - 1]);
    v[5] = api_version(&s, "acme", k);
    ck_assert_int_ge(v[5], v[4]);

    /* Each snapshot shows what was committed at it. */
    expect_origin(&s, "1", v[0], NULL);
    expect_origin(&s, "1", v[1], "one");
    expect_origin(&s, "1", v[2], "two");
    expect_origin(&s, "1", v[3], NULL);
    expect_origin(&s, "1", v[4], "three");
    expect_origin(&s, "1", 0, "three");
    expect_origin(&s, "2", v[1], NULL);
    expect_origin(&s, "2", v[4], "b");
    o = origin(&s, "1", v[2], &rv);
    ck_assert_int_eq(rv, v[2]);
    free(o);
    ck_assert_int_eq(api_get_record(&s, "acme", "flights", "1", k, v[1], &r), 200);
    ck_assert_int_eq(api_int(&r, "version"), v[1]);
    ck_assert_int_eq(api_int(&r, "record_version"), v[1]);
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "acme", "flights", "2", k, 0, &r), 200);
    ck_assert_int_ge(api_int(&r, "version"), v[4]);
    ck_assert_int_eq(api_int(&r, "record_version"), v[2]);
    hresp_free(&r);

    /* A version not yet committed, and garbage, are refused. */
    snprintf(path, sizeof(path), RECS "/1?as_of=%lld", v[5] + 1000);
    api_req(s.query_port, "GET", path, k, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    api_req(s.query_port, "GET", RECS "/1?as_of=-1", k, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    api_req(s.query_port, "GET", RECS "/1?as_of=99999999999999999999999", k, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);

    /* Reads never move the version; a failed write does not either. */
    ck_assert_int_eq(api_version(&s, "acme", k), v[5]);
    api_req(s.ingest_port, "POST", RECS, k, API_NDJSON, "{\"id\": 9}\n", &r);
    ck_assert_error(&r, 422, "validation_failed");
    hresp_free(&r);
    ck_assert_int_eq(api_version(&s, "acme", k), v[5]);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_deletes)
{
    struct srv s;
    struct hresp r;
    long long v, v2;
    char *k = setup(&s, NULL);

    /* Deleting a missing record is a tombstone, not an error. */
    v = api_version(&s, "acme", k);
    api_req(s.ingest_port, "DELETE", RECS "/12345", k, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_int_gt(api_int(&r, "version"), v);
    hresp_free(&r);

    /* A key that is not the key field's type: 400, nothing written. */
    v = api_version(&s, "acme", k);
    api_req(s.ingest_port, "DELETE", RECS "/abc", k, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    api_req(s.ingest_port, "DELETE", RECS "/1/2", k, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    api_req(s.query_port, "GET", RECS "/abc", k, NULL, NULL, &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);
    ck_assert_int_eq(api_version(&s, "acme", k), v);

    /* A composite key: one path segment per field, URL-encoded. */
    api_create_table(
        &s, "acme", k,
        "{\"name\": \"legs\", \"fields\": [{\"name\": \"city\", \"type\": \"string\"}, "
        "{\"name\": \"n\", \"type\": \"int64\"}, {\"name\": \"note\", \"type\": "
        "\"string\"}], \"primary_key\": [\"city\", \"n\"]}");
    v = api_ingest(&s, "acme", "legs", k,
                   "{\"city\": \"new york\", \"n\": 1, \"note\": \"a\"}\n"
                   "{\"city\": \"new york\", \"n\": 2, \"note\": \"b\"}\n"
                   "{\"city\": \"a/b\", \"n\": 1, \"note\": \"slash\"}\n");
    ck_assert_int_eq(api_get_record(&s, "acme", "legs", "new%20york/2", k, 0, &r), 200);
    ck_assert_str_eq(json_string_value(api_get(&r, "record.note")), "b");
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "acme", "legs", "a%2Fb/1", k, 0, &r), 200);
    ck_assert_str_eq(json_string_value(api_get(&r, "record.note")), "slash");
    hresp_free(&r);
    api_req(s.ingest_port, "DELETE", "/v1/tenants/acme/tables/legs/records/new%20york/1", k, NULL,
            NULL, &r);
    api_expect(&r, 200);
    v2 = api_int(&r, "version");
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "acme", "legs", "new%20york/1", k, 0, &r), 404);
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "acme", "legs", "new%20york/1", k, v, &r), 200);
    hresp_free(&r);
    ck_assert_int_eq(api_get_record(&s, "acme", "legs", "new%20york/2", k, v2, &r), 200);
    hresp_free(&r);
    /* Too few segments for the key. */
    ck_assert_int_eq(api_get_record(&s, "acme", "legs", "new%20york", k, 0, &r), 400);
    hresp_free(&r);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = harness_tcase("ingest", 30);

    harness_init();
    tcase_add_test(tc, test_invalid_json_position);
    tcase_add_test(tc, test_too_large);
    tcase_add_test(tc, test_media_types);
    tcase_add_test(tc, test_validation_details);
    tcase_add_test(tc, test_partial_mode);
    tcase_add_test(tc, test_rate_quota);
    tcase_add_test(tc, test_catalog_count_limits);
    tcase_add_test(tc, test_later_key_wins_and_arrays);
    tcase_add_test(tc, test_gzip);
    tcase_add_test(tc, test_idempotency_key);
    tcase_add_test(tc, test_versions_and_as_of);
    tcase_add_test(tc, test_deletes);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
