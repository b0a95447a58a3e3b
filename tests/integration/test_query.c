/*
 * Queries and snapshots over HTTP (src/api/query.c) on the real binary:
 *
 *   400  invalid_query for an unknown table or field, a type mismatch, a
 *        bad operator or aggregate, a grouped select of a field neither
 *        grouped nor aggregated, a bad, altered or foreign cursor (one
 *        message whatever is wrong with it), an as_of in the future
 *   403  another tenant's key, a key without the read scope
 *   404  wrong_listener on the ingest port
 *   409  snapshot_too_old once compaction has dropped a version
 *
 * and the answers: plain rows with every type as the point read shows
 * it, API.md's grouped example body verbatim, order_by with a limit,
 * paging with cursors while another connection writes (the pages hold
 * exactly the rows of the first page's snapshot, none twice), NDJSON
 * streams with their completion line, a client that leaves mid-stream,
 * held snapshots (as_of through writes and compaction, delete).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "util/strbuf.h"

#define QUERY         "/v1/tenants/acme/query"
#define NDJSON_ACCEPT "Accept: application/x-ndjson\r\n"

static const char flights[] = "{\"name\": \"flights\", \"fields\": ["
                              "{\"name\": \"id\", \"type\": \"int64\"},"
                              "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                              "{\"name\": \"origin\", \"type\": \"string\"},"
                              "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true},"
                              "{\"name\": \"dist\", \"type\": \"float64\", \"nullable\": true},"
                              "{\"name\": \"ok\", \"type\": \"bool\", \"nullable\": true},"
                              "{\"name\": \"meta\", \"type\": \"json\", \"nullable\": true}"
                              "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

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

static void query(const struct srv *s, const char *token, const char *body, struct hresp *r)
{
    api_req(s->query_port, "POST", QUERY, token ? token : s->token, NULL, body, r);
}

/* The answer's next_cursor, which must be a string (caller frees). */
static char *next_cursor(const struct hresp *r)
{
    const char *c = json_string_value(api_get(r, "next_cursor"));
    char *copy;

    ck_assert_msg(c != NULL, "no next_cursor in %s", r->body);
    copy = strdup(c);
    ck_assert_ptr_nonnull(copy);
    return copy;
}

/* Asserts 400 invalid_query with exactly msg (or a message starting with it when prefix). */
#define expect_invalid(s, body, msg, prefix)                                                       \
    expect_invalid_at((s), (body), (msg), (prefix), __LINE__)
static void expect_invalid_at(const struct srv *s, const char *body, const char *msg, bool prefix,
                              int line)
{
    struct hresp r;
    const char *got;

    query(s, NULL, body, &r);
    ck_assert_msg(r.status == 400, "line %d: status %d: %s", line, r.status, r.body);
    ck_assert_error(&r, 400, "invalid_query");
    got = json_string_value(api_get(&r, "error.message"));
    ck_assert_msg(prefix ? !strncmp(got, msg, strlen(msg)) : !strcmp(got, msg),
                  "line %d: message '%s', want '%s'", line, got, msg);
    hresp_free(&r);
}

/* Asserts that the "rows" of r equal the JSON array text want. */
#define expect_rows(r, want) expect_rows_at((r), (want), __LINE__)
static void expect_rows_at(const struct hresp *r, const char *want, int line)
{
    json_error_t jerr;
    json_t *w = json_loads(want, 0, &jerr);

    ck_assert_msg(w, "line %d: bad test JSON: %s", line, jerr.text);
    ck_assert_msg(r->status == 200, "line %d: status %d: %s", line, r->status, r->body);
    ck_assert_msg(json_equal(api_get(r, "rows"), w), "line %d: rows\n got: %s\nwant: %s", line,
                  r->body, want);
    json_decref(w);
}

/* ids [from, to) step by step, origin "<prefix><id % 3>", delay id % 7. */
static long long ingest_range(const struct srv *s, const char *k, int from, int to, int step,
                              const char *prefix)
{
    struct strbuf sb = STRBUF_INIT;
    long long v;

    for (int i = from; i < to; i += step)
        strbuf_addf(&sb,
                    "{\"id\":%d,\"ts\":%lld,\"origin\":\"%s%d\",\"delay\":%d,\"dist\":%d.5,"
                    "\"ok\":%s,\"meta\":{\"n\":%d}}\n",
                    i, 978307200000LL + i * 60000LL, prefix, i % 3, i % 7, i,
                    i % 2 ? "true" : "false", i);
    v = api_ingest(s, "acme", "flights", k, sb.buf);
    strbuf_release(&sb);
    return v;
}

/* ------------------------------------------------------------------ */

START_TEST(test_invalid_queries)
{
    struct srv s;
    struct hresp r;
    char body[512];
    char *k = setup(&s, NULL);
    char *cursor;

    ingest_range(&s, k, 0, 10, 1, "A");
    expect_invalid(&s, "{\"table\":\"nope\"}", "table: unknown table 'nope'", false);
    expect_invalid(&s, "{\"select\":[\"id\"]}", "table: missing", false);
    expect_invalid(&s, "{\"table\":\"flights\",\"select\":[\"id\",\"foo\"]}",
                   "select[1]: unknown field 'foo'", false);
    expect_invalid(&s,
                   "{\"table\":\"flights\",\"where\":{\"field\":\"origin\",\"op\":\"=\","
                   "\"value\":5}}",
                   "where.value: expected a string for string field 'origin', got integer", false);
    expect_invalid(&s,
                   "{\"table\":\"flights\",\"where\":{\"and\":[{\"field\":\"delay\",\"op\":\"~\","
                   "\"value\":5}]}}",
                   "where.and[0].op: unknown operator '~'", true);
    expect_invalid(&s,
                   "{\"table\":\"flights\",\"where\":{\"field\":\"delay\",\"op\":\"prefix\","
                   "\"value\":\"x\"}}",
                   "where.op: operator 'prefix' applies to string fields", true);
    expect_invalid(&s, "{\"table\":\"flights\",\"aggregates\":[{\"fn\":\"median\"}]}",
                   "aggregates[0].fn: expected one of", true);
    expect_invalid(&s,
                   "{\"table\":\"flights\",\"aggregates\":[{\"fn\":\"sum\",\"field\":\"origin\"}]}",
                   "aggregates[0].field: sum needs an int64 or float64 field", true);
    expect_invalid(&s, "{\"table\":\"flights\",\"group_by\":[\"origin\"],\"select\":[\"delay\"]}",
                   "select[0]: 'delay' is neither a group_by field nor an aggregate", false);
    expect_invalid(&s,
                   "{\"table\":\"flights\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":"
                   "\"avg\",\"field\":\"delay\"}],\"select\":[\"origin\",\"dist\"]}",
                   "select[1]: 'dist' is neither a group_by field nor an aggregate", false);
    expect_invalid(&s, "{\"table\":\"flights\",\"limit\":-1}", "limit: expected an integer >= 0",
                   true);
    expect_invalid(&s, "{\"table\":\"flights\",\"cursor\":\"garbage\"}", "cursor: invalid cursor",
                   false);
    expect_invalid(&s, "{\"table\":\"flights\",\"cursor\":\"\"}", "cursor: invalid cursor", false);
    expect_invalid(&s, "{\"table\":\"flights\",\"as_of\":999999999}", "as_of: ", true);
    query(&s, NULL, "{\"table\": ", &r);
    ck_assert_error(&r, 400, "invalid_json");
    hresp_free(&r);
    query(&s, NULL, "[1]", &r);
    ck_assert_error(&r, 400, "bad_request");
    hresp_free(&r);

    /* A real cursor, altered, and used for another query. */
    query(&s, k, "{\"table\":\"flights\",\"select\":[\"id\"],\"limit\":3}", &r);
    api_expect(&r, 200);
    cursor = next_cursor(&r);
    hresp_free(&r);
    snprintf(body, sizeof(body), "{\"table\":\"flights\",\"select\":[\"id\"],\"cursor\":\"%s\"}",
             cursor);
    query(&s, k, body, &r);
    expect_rows(&r,
                "[{\"id\":3},{\"id\":4},{\"id\":5},{\"id\":6},{\"id\":7},{\"id\":8},{\"id\":9}]");
    ck_assert(json_is_null(api_get(&r, "next_cursor")));
    hresp_free(&r);
    snprintf(body, sizeof(body),
             "{\"table\":\"flights\",\"select\":[\"id\",\"origin\"],\"cursor\":\"%s\"}", cursor);
    expect_invalid(&s, body, "cursor: invalid cursor", false);
    {
        size_t len = strlen(cursor);
        char *bad = strdup(cursor);

        ck_assert_ptr_nonnull(bad);
        bad[len / 2] = bad[len / 2] == 'A' ? 'B' : 'A';
        snprintf(body, sizeof(body),
                 "{\"table\":\"flights\",\"select\":[\"id\"],\"cursor\":\"%.*s\"}", (int)len, bad);
        expect_invalid(&s, body, "cursor: invalid cursor", false);
        free(bad);
    }
    /* as_of must agree with the cursor's snapshot. */
    snprintf(body, sizeof(body),
             "{\"table\":\"flights\",\"select\":[\"id\"],\"cursor\":\"%s\",\"as_of\":1}", cursor);
    expect_invalid(&s, body, "as_of: the cursor continues version", true);
    free(cursor);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

/* Cursors of one tenant are refused by another, even for the same query. */
START_TEST(test_foreign_cursor)
{
    struct srv s;
    struct hresp r;
    char body[512];
    char *k = setup(&s, NULL);
    char *cursor;

    api_create_tenant(&s, "other");
    api_create_table(&s, "other", NULL, flights);
    ingest_range(&s, k, 0, 10, 1, "A");
    api_req(s.ingest_port, "POST", "/v1/tenants/other/tables/flights/records", s.token, API_NDJSON,
            "{\"id\":1,\"ts\":0,\"origin\":\"x\"}\n{\"id\":2,\"ts\":0,\"origin\":\"y\"}\n", &r);
    api_expect(&r, 200);
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/tenants/other/query", s.token, NULL,
            "{\"table\":\"flights\",\"select\":[\"id\"],\"limit\":1}", &r);
    api_expect(&r, 200);
    cursor = next_cursor(&r);
    hresp_free(&r);
    snprintf(body, sizeof(body), "{\"table\":\"flights\",\"select\":[\"id\"],\"cursor\":\"%s\"}",
             cursor);
    expect_invalid(&s, body, "cursor: invalid cursor", false);
    /* It still works where it came from. */
    api_req(s.query_port, "POST", "/v1/tenants/other/query", s.token, NULL, body, &r);
    expect_rows(&r, "[{\"id\":2}]");
    hresp_free(&r);
    free(cursor);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_auth_and_listeners)
{
    static const char q[] = "{\"table\":\"flights\"}";
    struct srv s;
    struct hresp r;
    char *k = setup(&s, NULL);
    char *w, *o;

    api_create_tenant(&s, "other");
    o = api_make_key(&s, "other", "[\"read\"]", NULL);
    w = api_make_key(&s, "acme", "[\"write\"]", NULL);
    query(&s, o, q, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/tenants/nosuch/query", o, NULL, q, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    query(&s, w, q, &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    api_req(s.query_port, "POST", QUERY, NULL, NULL, q, &r);
    ck_assert_error(&r, 401, "unauthenticated");
    hresp_free(&r);
    /* The admin token learns that a tenant does not exist. */
    api_req(s.query_port, "POST", "/v1/tenants/nosuch/query", s.token, NULL, q, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    api_req(s.query_port, "POST", "/v1/tenants/other/snapshots", k, NULL, "{\"ttl\":\"1m\"}", &r);
    ck_assert_error(&r, 403, "forbidden");
    hresp_free(&r);
    api_req(s.ingest_port, "POST", QUERY, k, NULL, q, &r);
    ck_assert_error(&r, 404, "wrong_listener");
    hresp_free(&r);
    api_req(s.ingest_port, "POST", "/v1/tenants/acme/snapshots", k, NULL, "{\"ttl\":\"1m\"}", &r);
    ck_assert_error(&r, 404, "wrong_listener");
    hresp_free(&r);
    api_req(s.ingest_port, "DELETE", "/v1/tenants/acme/snapshots/1", k, NULL, NULL, &r);
    ck_assert_error(&r, 404, "wrong_listener");
    hresp_free(&r);
    free(o);
    free(w);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

START_TEST(test_plain_and_grouped)
{
    /* API.md's example, verbatim. */
    static const char example[] =
        "{\n"
        "  \"table\": \"flights\",\n"
        "  \"select\": [\"origin\", \"delay\"],\n"
        "  \"where\": {\"and\": [\n"
        "    {\"field\": \"ts\", \"op\": \">=\", \"value\": \"2001-01-01T00:00:00Z\"},\n"
        "    {\"field\": \"origin\", \"op\": \"in\", \"value\": [\"SFO\", \"LAX\"]},\n"
        "    {\"not\": {\"field\": \"delay\", \"op\": \"is_null\"}}\n"
        "  ]},\n"
        "  \"group_by\": [\"origin\"],\n"
        "  \"time_bucket\": {\"field\": \"ts\", \"width\": \"1h\", \"as\": \"hour\"},\n"
        "  \"aggregates\": [{\"fn\": \"count\", \"as\": \"n\"}, {\"fn\": \"avg\", \"field\": "
        "\"delay\", \"as\": \"avg_delay\"}],\n"
        "  \"order_by\": [{\"field\": \"avg_delay\", \"dir\": \"desc\"}],\n"
        "  \"limit\": 100,\n"
        "  \"cursor\": null,\n"
        "  \"as_of\": null\n"
        "}";
    static const char data[] =
        "{\"id\":1,\"ts\":\"2001-01-01T00:10:00Z\",\"origin\":\"SFO\",\"delay\":10,\"dist\":1.5,"
        "\"ok\":true,\"meta\":{\"a\":[1,2]}}\n"
        "{\"id\":2,\"ts\":\"2001-01-01T00:50:00Z\",\"origin\":\"LAX\",\"delay\":null}\n"
        "{\"id\":3,\"ts\":\"2001-01-01T01:10:00Z\",\"origin\":\"SFO\",\"delay\":30}\n"
        "{\"id\":4,\"ts\":\"2001-01-01T01:20:00Z\",\"origin\":\"SFO\",\"delay\":-5}\n"
        "{\"id\":5,\"ts\":\"2001-01-01T00:30:00Z\",\"origin\":\"LAX\",\"delay\":20}\n"
        "{\"id\":6,\"ts\":\"2000-12-31T23:00:00Z\",\"origin\":\"SFO\",\"delay\":100}\n"
        "{\"id\":7,\"ts\":\"2001-01-01T00:40:00Z\",\"origin\":\"JFK\",\"delay\":9007199254740993}"
        "\n";
    struct srv s;
    struct hresp r, p;
    long long v;
    char *k = setup(&s, NULL);

    v = api_ingest(&s, "acme", "flights", k, data);
    query(&s, k, example, &r);
    expect_rows(&r, "[{\"origin\":\"LAX\",\"avg_delay\":20.0,\"hour\":\"2001-01-01T00:00:00.000Z\","
                    "\"n\":1},{\"origin\":\"SFO\",\"avg_delay\":12.5,\"hour\":"
                    "\"2001-01-01T01:00:00.000Z\",\"n\":2},{\"origin\":\"SFO\",\"avg_delay\":10.0,"
                    "\"hour\":\"2001-01-01T00:00:00.000Z\",\"n\":1}]");
    ck_assert_int_eq(api_int(&r, "version"), v);
    ck_assert(json_is_null(api_get(&r, "next_cursor")));
    ck_assert_int_eq(api_int(&r, "stats.rows_scanned"), 7);
    ck_assert(json_is_integer(api_get(&r, "stats.segments_skipped")));
    ck_assert(json_is_number(api_get(&r, "stats.elapsed_ms")));
    /* Keys in the order of the columns, values as the point read shows them. */
    ck_assert_ptr_nonnull(strstr(r.body, "{\"origin\":\"LAX\",\"avg_delay\":20.0,\"hour\":"));
    hresp_free(&r);

    /* Plain rows: every field, in schema order, as the point read shows the record. */
    query(&s, k, "{\"table\":\"flights\",\"where\":{\"field\":\"id\",\"op\":\"=\",\"value\":1}}",
          &r);
    ck_assert_int_eq(api_get_record(&s, "acme", "flights", "1", k, 0, &p), 200);
    ck_assert(json_equal(json_array_get(api_get(&r, "rows"), 0), api_get(&p, "record")));
    ck_assert_ptr_nonnull(strstr(r.body, "\"rows\":[{\"id\":1,\"ts\":\"2001-01-01T00:10:00.000Z\","
                                         "\"origin\":\"SFO\",\"delay\":10,\"dist\":1.5,\"ok\":true,"
                                         "\"meta\":{\"a\":[1,2]}}]"));
    hresp_free(&r);
    hresp_free(&p);
    /* int64 beyond 2^53 exactly. */
    query(&s, k,
          "{\"table\":\"flights\",\"select\":[\"delay\"],\"where\":{\"field\":\"origin\",\"op\":"
          "\"=\",\"value\":\"JFK\"}}",
          &r);
    ck_assert_ptr_nonnull(strstr(r.body, "[{\"delay\":9007199254740993}]"));
    hresp_free(&r);

    /* order_by with a limit; nulls first when descending; the cursor goes on. */
    query(&s, k,
          "{\"table\":\"flights\",\"select\":[\"id\",\"delay\"],\"order_by\":[{\"field\":"
          "\"delay\",\"dir\":\"desc\"}],\"limit\":3}",
          &r);
    expect_rows(&r, "[{\"id\":2,\"delay\":null},{\"id\":7,\"delay\":9007199254740993},"
                    "{\"id\":6,\"delay\":100}]");
    ck_assert(json_is_string(api_get(&r, "next_cursor")));
    {
        char body[1024];

        snprintf(body, sizeof(body),
                 "{\"table\":\"flights\",\"select\":[\"id\",\"delay\"],\"order_by\":[{\"field\":"
                 "\"delay\",\"dir\":\"desc\"}],\"limit\":10,\"cursor\":\"%s\"}",
                 json_string_value(api_get(&r, "next_cursor")));
        hresp_free(&r);
        query(&s, k, body, &r);
        expect_rows(&r, "[{\"id\":3,\"delay\":30},{\"id\":5,\"delay\":20},{\"id\":1,\"delay\":10},"
                        "{\"id\":4,\"delay\":-5}]");
        ck_assert(json_is_null(api_get(&r, "next_cursor")));
        hresp_free(&r);
    }

    /* Aggregates over no rows: one row, counts 0, the others null. */
    query(&s, k,
          "{\"table\":\"flights\",\"where\":{\"field\":\"origin\",\"op\":\"=\",\"value\":\"NONE\"},"
          "\"aggregates\":[{\"fn\":\"count\"},{\"fn\":\"count_distinct\",\"field\":\"origin\"},"
          "{\"fn\":\"sum\",\"field\":\"delay\"},{\"fn\":\"min\",\"field\":\"ts\"},{\"fn\":\"avg\","
          "\"field\":\"dist\"}]}",
          &r);
    expect_rows(&r, "[{\"count\":0,\"count_distinct_origin\":0,\"sum_delay\":null,\"min_ts\":null,"
                    "\"avg_dist\":null}]");
    hresp_free(&r);
    /* And over rows: sums exact, min of a timestamp as a timestamp. */
    query(&s, k,
          "{\"table\":\"flights\",\"where\":{\"field\":\"origin\",\"op\":\"in\",\"value\":[\"SFO\","
          "\"LAX\"]},\"aggregates\":[{\"fn\":\"count\",\"field\":\"delay\"},{\"fn\":\"sum\","
          "\"field\":\"delay\"},{\"fn\":\"min\",\"field\":\"ts\"},{\"fn\":\"max\",\"field\":"
          "\"origin\"}]}",
          &r);
    expect_rows(&r, "[{\"count_delay\":5,\"sum_delay\":155,\"min_ts\":"
                    "\"2000-12-31T23:00:00.000Z\",\"max_origin\":\"SFO\"}]");
    hresp_free(&r);

    /* An empty table answers no rows; limit 0 answers none but a cursor. */
    query(&s, k, "{\"table\":\"flights\",\"where\":{\"field\":\"id\",\"op\":\">\",\"value\":100}}",
          &r);
    expect_rows(&r, "[]");
    ck_assert(json_is_null(api_get(&r, "next_cursor")));
    hresp_free(&r);
    query(&s, k, "{\"table\":\"flights\",\"limit\":0}", &r);
    expect_rows(&r, "[]");
    ck_assert(json_is_string(api_get(&r, "next_cursor")));
    hresp_free(&r);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Paging while writes go on */

struct writer {
    int port;          /* ingest */
    const char *token; /* write key */
    volatile int stop; /* set by the test */
    int rounds;        /* writes that got 200 */
};

/* Rewrites every row and adds others, over and over, on its own connection. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct strbuf sb = STRBUF_INIT;

    for (int round = 0; !w->stop && round < 2000; round++) {
        struct hconn *c = hc_try_open(w->port);
        struct hresp r;

        if (!c)
            break;
        strbuf_reset(&sb);
        for (int i = 0; i < 400; i++)
            strbuf_addf(&sb, "{\"id\":%d,\"ts\":%d,\"origin\":\"W%d\",\"delay\":%d}\n",
                        (i * 7 + round) % 1200, round, round, -round);
        if (api_send(c, "POST", "/v1/tenants/acme/tables/flights/records", w->token, API_NDJSON,
                     sb.buf, sb.len, 5000, &r) == HREAD_OK) {
            if (r.status == 200)
                w->rounds++;
            hresp_free(&r);
        }
        hc_close(c);
    }
    strbuf_release(&sb);
    return NULL;
}

/*
 * Runs the query fmt (its JSON without the closing brace) page by page; returns every row (caller
 * decrefs) and the pages' count.
 */
static json_t *all_pages(const struct srv *s, const char *k, const char *fmt, int limit,
                         long long *version, int *pages)
{
    json_t *rows = json_array();
    char *cursor = NULL;
    char body[4096];

    *pages = 0;
    for (;;) {
        struct hresp r;
        char member[3000] = "";
        json_t *nc;

        if (cursor)
            snprintf(member, sizeof(member), ",\"cursor\":\"%s\"", cursor);
        snprintf(body, sizeof(body), "%s,\"limit\":%d%s}", fmt, limit, member);
        query(s, k, body, &r);
        api_expect(&r, 200);
        ck_assert_int_le(json_array_size(api_get(&r, "rows")), limit);
        if (!*pages)
            *version = api_int(&r, "version");
        ck_assert_int_eq(api_int(&r, "version"), *version);
        json_array_extend(rows, api_get(&r, "rows"));
        (*pages)++;
        free(cursor);
        cursor = NULL;
        nc = api_get(&r, "next_cursor");
        if (json_is_string(nc))
            cursor = strdup(json_string_value(nc));
        else
            ck_assert(json_is_null(nc));
        hresp_free(&r);
        if (!cursor)
            break;
        ck_assert_int_lt(*pages, 1000);
    }
    return rows;
}

/* The rows of body at version v in one answer (caller decrefs). */
static json_t *one_page(const struct srv *s, const char *k, const char *fmt, long long v)
{
    char member[64], body[4096];
    struct hresp r;
    json_t *rows;

    snprintf(member, sizeof(member), ",\"as_of\":%lld,\"limit\":100000", v);
    snprintf(body, sizeof(body), "%s%s}", fmt, member);
    query(s, k, body, &r);
    api_expect(&r, 200);
    ck_assert(json_is_null(api_get(&r, "next_cursor")));
    rows = json_incref(api_get(&r, "rows"));
    hresp_free(&r);
    return rows;
}

START_TEST(test_paging_while_writing)
{
    static const char *const queries[] = {
        /* By key. */
        "{\"table\":\"flights\",\"select\":[\"id\",\"origin\",\"delay\"]",
        /* By key, with a filter and a key range. */
        "{\"table\":\"flights\",\"select\":[\"id\",\"origin\"],\"where\":{\"and\":[{\"field\":"
        "\"id\",\"op\":\">=\",\"value\":100},{\"field\":\"delay\",\"op\":\"!=\",\"value\":3}]}",
        /* By offset: order_by, then grouped. */
        "{\"table\":\"flights\",\"select\":[\"id\",\"delay\"],\"order_by\":[{\"field\":\"delay\","
        "\"dir\":\"desc\"},\"origin\"]",
        "{\"table\":\"flights\",\"group_by\":[\"delay\"],\"aggregates\":[{\"fn\":\"count\"},"
        "{\"fn\":\"sum\",\"field\":\"id\"}]",
    };
    static const int limits[] = {37, 50, 41, 2};
    struct srv s;
    struct writer w;
    pthread_t th;
    char *k = setup(&s, NULL);

    ingest_range(&s, k, 0, 1000, 2, "A");
    memset(&w, 0, sizeof(w));
    w.port = s.ingest_port;
    w.token = k;
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        long long v;
        int pages;
        json_t *paged = all_pages(&s, k, queries[i], limits[i], &v, &pages);
        json_t *whole = one_page(&s, k, queries[i], v);

        ck_assert_msg(json_equal(paged, whole), "query %zu: %zu rows paged, %zu at once", i,
                      json_array_size(paged), json_array_size(whole));
        ck_assert_int_gt(pages, 1);
        json_decref(paged);
        json_decref(whole);
    }
    w.stop = 1;
    pthread_join(th, NULL);
    ck_assert_int_gt(w.rounds, 0);
    free(k);
    srv_stop(&s, 10000);
}
END_TEST

/* Pages are exact: 500 rows by 100 are 5 pages, the last without a cursor. */
START_TEST(test_paging_exact)
{
    static const char fmt[] = "{\"table\":\"flights\",\"select\":[\"id\"]";
    struct srv s;
    long long v, before;
    int pages;
    json_t *rows;
    char *k = setup(&s, NULL);

    before = ingest_range(&s, k, 0, 1000, 2, "A");
    rows = all_pages(&s, k, fmt, 100, &v, &pages);
    ck_assert_int_eq(v, before);
    ck_assert_int_eq(pages, 5);
    ck_assert_uint_eq(json_array_size(rows), 500);
    for (size_t i = 0; i < 500; i++)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(rows, i), "id")),
                         (json_int_t)i * 2);
    json_decref(rows);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Streams */

/* Splits an NDJSON body into a JSON array of its lines (caller decrefs). */
static json_t *ndjson_lines(const char *body)
{
    json_t *a = json_array();

    while (*body) {
        const char *nl = strchr(body, '\n');
        json_error_t jerr;
        json_t *v;

        ck_assert_msg(nl, "a line without its newline: %.80s", body);
        v = json_loadb(body, (size_t)(nl - body), 0, &jerr);
        ck_assert_msg(v, "not JSON: %.80s", body);
        json_array_append_new(a, v);
        body = nl + 1;
    }
    return a;
}

static void stream(const struct srv *s, const char *k, const char *body, struct hresp *r)
{
    struct hconn *c = hc_open(s->query_port);
    enum hread rc = api_send(c, "POST", QUERY, k, NDJSON_ACCEPT, body, strlen(body), 60000, r);

    hc_close(c);
    ck_assert_int_eq(rc, HREAD_OK);
}

START_TEST(test_stream)
{
    static const char *const env[] = {"STRATA_LIMITS_MAX_QUERY_ROWS=1000", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hresp r;
    long long v = 0;
    json_t *lines, *last;
    char *ct;
    char *k = setup(&s, &o);

    for (int i = 0; i < 30000; i += 5000)
        v = ingest_range(&s, k, i, i + 5000, 1, "A");
    /* A page is capped by limits.max_query_rows ... */
    query(&s, k, "{\"table\":\"flights\",\"select\":[\"id\"],\"limit\":5000}", &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "rows")), 1000);
    ck_assert(json_is_string(api_get(&r, "next_cursor")));
    hresp_free(&r);
    /* ... a stream is not: every row, in key order, then the completion line. */
    stream(&s, k, "{\"table\":\"flights\",\"select\":[\"id\",\"origin\"]}", &r);
    api_expect(&r, 200);
    ct = hresp_header(&r, "Content-Type");
    ck_assert_str_eq(ct, "application/x-ndjson");
    free(ct);
    ck_assert(r.chunked);
    lines = ndjson_lines(r.body);
    ck_assert_uint_eq(json_array_size(lines), 30001);
    for (size_t i = 0; i < 30000; i++)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(lines, i), "id")),
                         (json_int_t)i);
    last = json_array_get(lines, 30000);
    ck_assert(json_is_true(json_object_get(last, "done")));
    ck_assert_int_eq(json_integer_value(json_object_get(last, "rows")), 30000);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "version")), v);
    ck_assert(json_is_null(json_object_get(last, "next_cursor")));
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(last, "stats"), "rows_scanned")), 30000);
    json_decref(lines);
    hresp_free(&r);

    /* A limit the query gives applies, with a cursor to go on. */
    stream(&s, k, "{\"table\":\"flights\",\"select\":[\"id\"],\"limit\":3}", &r);
    lines = ndjson_lines(r.body);
    ck_assert_uint_eq(json_array_size(lines), 4);
    last = json_array_get(lines, 3);
    ck_assert_int_eq(json_integer_value(json_object_get(last, "rows")), 3);
    ck_assert(json_is_string(json_object_get(last, "next_cursor")));
    json_decref(lines);
    hresp_free(&r);

    /* Grouped, streamed. */
    stream(&s, k,
           "{\"table\":\"flights\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"count\"}]}",
           &r);
    lines = ndjson_lines(r.body);
    ck_assert_uint_eq(json_array_size(lines), 4);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(lines, 1), "origin")), "A1");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(lines, 1), "count")), 10000);
    json_decref(lines);
    hresp_free(&r);

    /* Errors found before the stream begins are plain HTTP errors. */
    {
        struct hconn *c = hc_open(s.query_port);
        static const char bad[] = "{\"table\":\"nope\"}";

        ck_assert_int_eq(api_send(c, "POST", QUERY, k, NDJSON_ACCEPT, bad, strlen(bad), 5000, &r),
                         HREAD_OK);
        ck_assert_error(&r, 400, "invalid_query");
        hresp_free(&r);
        hc_close(c);
    }
    free(k);
    srv_stop(&s, 10000);
}
END_TEST

/* Clients that stop reading for a while, or leave mid-stream. */
START_TEST(test_stream_slow_and_gone_clients)
{
    static const char body[] = "{\"table\":\"flights\"}";
    struct srv s;
    struct hresp r;
    char req[512];
    char *k = setup(&s, NULL);

    for (int i = 0; i < 60000; i += 10000)
        ingest_range(&s, k, i, i + 10000, 1, "A");
    snprintf(req, sizeof(req),
             "POST " QUERY " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" NDJSON_ACCEPT
             "Content-Length: %zu\r\n\r\n%s",
             k, strlen(body), body);
    for (int round = 0; round < 3; round++) {
        struct hconn *c = hc_open(s.query_port);
        char buf[4096];
        ssize_t n;

        ck_assert(hc_sendstr(c, req));
        n = recv(c->fd, buf, sizeof(buf), 0);
        ck_assert_int_gt(n, 0);
        ck_assert(!strncmp(buf, "HTTP/1.1 200", 12));
        hc_close(c); /* gone, with most of the answer unread */
    }
    /* A client that reads nothing for a while gets everything after all. */
    {
        struct hconn *c = hc_open(s.query_port);
        json_t *lines;

        ck_assert(hc_sendstr(c, req));
        harness_sleep_ms(300);
        ck_assert_int_eq(hc_read(c, &r, 60000, false), HREAD_OK);
        lines = ndjson_lines(r.body);
        ck_assert_uint_eq(json_array_size(lines), 60001);
        ck_assert(json_is_true(json_object_get(json_array_get(lines, 60000), "done")));
        json_decref(lines);
        hresp_free(&r);
        hc_close(c);
    }
    /* The three were seen as gone (499), not finished. */
    http_get(s.query_port, "/metrics", NULL, &r);
    api_expect(&r, 200);
    ck_assert_msg(strstr(r.body, "strata_http_requests_total{listener=\"query\",route=\"query\","
                                 "method=\"POST\",code=\"499\"} 3"),
                  "%s", r.body);
    hresp_free(&r);
    /* The server is healthy and answers queries. */
    query(&s, k, "{\"table\":\"flights\",\"aggregates\":[{\"fn\":\"count\"}]}", &r);
    expect_rows(&r, "[{\"count\":60000}]");
    hresp_free(&r);
    http_get(s.query_port, "/health", NULL, &r);
    ck_assert_health_ok(&r);
    hresp_free(&r);
    free(k);
    srv_stop(&s, 10000);
}
END_TEST

/* A query over limits.query_timeout: 504 before the stream, an error line after. */
START_TEST(test_limits)
{
    static const char *const env[] = {"STRATA_LIMITS_QUERY_TIMEOUT=1ms",
                                      "STRATA_LIMITS_QUERY_MEMORY=1MiB", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hresp r;
    json_t *lines, *last;
    char *k = setup(&s, &o);

    for (int i = 0; i < 100000; i += 20000)
        ingest_range(&s, k, i, i + 20000, 1, "A");
    stream(&s, k, "{\"table\":\"flights\"}", &r);
    if (r.status == 200) {
        lines = ndjson_lines(r.body);
        last = json_array_get(lines, json_array_size(lines) - 1);
        ck_assert_msg(json_is_false(json_object_get(last, "done")), "%s",
                      json_dumps(last, JSON_COMPACT));
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(last, "error"), "code")),
                         "query_timeout");
        ck_assert_uint_lt(json_array_size(lines), 100001);
        json_decref(lines);
    } else {
        ck_assert_error(&r, 504, "query_timeout");
    }
    hresp_free(&r);
    query(&s, k, "{\"table\":\"flights\",\"limit\":100000}", &r);
    ck_assert_msg(r.status == 504 || r.status == 413, "%d %s", r.status, r.body);
    hresp_free(&r);
    free(k);
    srv_stop(&s, 10000);
}
END_TEST

START_TEST(test_memory_limit)
{
    static const char *const env[] = {"STRATA_LIMITS_QUERY_MEMORY=1MiB", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hresp r;
    char *k = setup(&s, &o);

    for (int i = 0; i < 40000; i += 20000)
        ingest_range(&s, k, i, i + 20000, 1, "A");
    /* 40000 distinct groups hold more than 1 MiB. */
    query(&s, k,
          "{\"table\":\"flights\",\"group_by\":[\"id\"],\"aggregates\":[{\"fn\":\"count\"}]}", &r);
    ck_assert_error(&r, 413, "query_too_large");
    hresp_free(&r);
    /* So does an answer of 40000 rows; streamed it needs nothing. */
    query(&s, k, "{\"table\":\"flights\",\"limit\":40000}", &r);
    ck_assert_error(&r, 413, "query_too_large");
    hresp_free(&r);
    stream(&s, k, "{\"table\":\"flights\"}", &r);
    api_expect(&r, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "{\"done\":true,\"rows\":40000,"));
    hresp_free(&r);
    /* The server is fine. */
    query(&s, k, "{\"table\":\"flights\",\"aggregates\":[{\"fn\":\"count\"}]}", &r);
    expect_rows(&r, "[{\"count\":40000}]");
    hresp_free(&r);
    free(k);
    srv_stop(&s, 10000);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Snapshots */

static long long origin_count(const struct srv *s, const char *k, const char *origin,
                              long long as_of)
{
    char body[256];
    struct hresp r;
    long long n;

    snprintf(
        body, sizeof(body),
        "{\"table\":\"flights\",\"where\":{\"field\":\"origin\",\"op\":\"=\",\"value\":\"%s\"},"
        "\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"}],\"as_of\":%lld}",
        origin, as_of);
    query(s, k, body, &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "version"), as_of);
    n = json_integer_value(json_object_get(json_array_get(api_get(&r, "rows"), 0), "n"));
    hresp_free(&r);
    return n;
}

static void compact(const struct srv *s)
{
    struct hresp r;

    api_req(s->query_port, "POST", "/v1/admin/compact", s->token, NULL, "{}", &r);
    api_expect(&r, 200);
    hresp_free(&r);
}

START_TEST(test_snapshots)
{
    static const char *const env[] = {"STRATA_MVCC_HISTORY_RETENTION=0", NULL};
    struct srv_opts o = {.env = env};
    struct srv s;
    struct hresp r;
    char path[128], body[1024];
    long long v1, v2, sv;
    char *id, *cursor;
    char *k = setup(&s, &o);

    v1 = ingest_range(&s, k, 0, 30, 1, "A");
    api_req(s.query_port, "POST", "/v1/tenants/acme/snapshots", k, NULL, "{\"ttl\": \"10m\"}", &r);
    api_expect(&r, 201);
    ck_assert(json_is_string(api_get(&r, "id")));
    id = strdup(json_string_value(api_get(&r, "id")));
    sv = api_int(&r, "version");
    ck_assert_int_eq(sv, v1);
    ck_assert(json_is_string(api_get(&r, "expires_at")));
    ck_assert_uint_eq(strlen(json_string_value(api_get(&r, "expires_at"))), 24);
    hresp_free(&r);

    /* A cursor on the snapshot, then every row rewritten and compacted. */
    query(&s, k, "{\"table\":\"flights\",\"select\":[\"id\",\"origin\"],\"limit\":10}", &r);
    api_expect(&r, 200);
    cursor = next_cursor(&r);
    hresp_free(&r);
    v2 = ingest_range(&s, k, 0, 30, 1, "B");
    compact(&s);
    ck_assert_int_eq(origin_count(&s, k, "A0", sv), 10);
    ck_assert_int_eq(origin_count(&s, k, "B0", sv), 0);
    ck_assert_int_eq(origin_count(&s, k, "B0", v2), 10);
    snprintf(body, sizeof(body),
             "{\"table\":\"flights\",\"select\":[\"id\",\"origin\"],\"cursor\":\"%s\"}", cursor);
    query(&s, k, body, &r);
    api_expect(&r, 200);
    ck_assert_uint_eq(json_array_size(api_get(&r, "rows")), 20);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(api_get(&r, "rows"), 0), "origin")), "A1");
    hresp_free(&r);

    /* Released: the next compaction may drop the version. */
    snprintf(path, sizeof(path), "/v1/tenants/acme/snapshots/%s", id);
    api_req(s.query_port, "DELETE", path, k, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    api_req(s.query_port, "DELETE", path, k, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    ingest_range(&s, k, 0, 30, 1, "C");
    compact(&s);
    snprintf(body, sizeof(body), "{\"table\":\"flights\",\"as_of\":%lld}", sv);
    query(&s, k, body, &r);
    ck_assert_error(&r, 409, "snapshot_too_old");
    hresp_free(&r);
    snprintf(body, sizeof(body),
             "{\"table\":\"flights\",\"select\":[\"id\",\"origin\"],\"cursor\":\"%s\"}", cursor);
    query(&s, k, body, &r);
    ck_assert_error(&r, 409, "snapshot_too_old");
    hresp_free(&r);

    /* Bad ttls, unknown ids, other tenants' snapshots. */
    {
        static const char *const bad[] = {"{}", "{\"ttl\": 5}", "{\"ttl\": \"soon\"}",
                                          "{\"ttl\": \"0s\"}", "{\"ttl\": \"1m\", \"x\": 1}"};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            api_req(s.query_port, "POST", "/v1/tenants/acme/snapshots", k, NULL, bad[i], &r);
            ck_assert_error(&r, 400, "bad_request");
            hresp_free(&r);
        }
    }
    api_req(s.query_port, "DELETE", "/v1/tenants/acme/snapshots/x1", k, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    api_create_tenant(&s, "other");
    api_req(s.query_port, "POST", "/v1/tenants/acme/snapshots", k, NULL, "{\"ttl\": \"100d\"}", &r);
    api_expect(&r, 201);
    free(id);
    id = strdup(json_string_value(api_get(&r, "id")));
    hresp_free(&r);
    snprintf(path, sizeof(path), "/v1/tenants/other/snapshots/%s", id);
    api_req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
    ck_assert_error(&r, 404, "not_found");
    hresp_free(&r);
    snprintf(path, sizeof(path), "/v1/tenants/acme/snapshots/%s", id);
    api_req(s.query_port, "DELETE", path, s.token, NULL, NULL, &r);
    api_expect(&r, 204);
    hresp_free(&r);
    free(id);
    free(cursor);
    free(k);
    srv_stop(&s, 5000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("query");
    TCase *tc = harness_tcase("query", 60);

    harness_init();
    tcase_add_test(tc, test_invalid_queries);
    tcase_add_test(tc, test_foreign_cursor);
    tcase_add_test(tc, test_auth_and_listeners);
    tcase_add_test(tc, test_plain_and_grouped);
    tcase_add_test(tc, test_paging_while_writing);
    tcase_add_test(tc, test_paging_exact);
    tcase_add_test(tc, test_stream);
    tcase_add_test(tc, test_stream_slow_and_gone_clients);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_memory_limit);
    tcase_add_test(tc, test_snapshots);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
