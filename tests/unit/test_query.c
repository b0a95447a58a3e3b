/*
 * Unit tests for the query language: src/api/query_parse.c (JSON to a
 * checked plan, every error with its exact message) and
 * src/engine/query.c (key and time ranges, the executor: three-valued
 * filters, every operator and aggregate with nulls, grouping, time
 * buckets, ordering with nulls, ties and top-k, exact integer sums,
 * bounded steps, memory limits, older schema versions). With
 * libsqlite3-dev installed (ST_HAVE_SQLITE3), a differential test runs a
 * few hundred random queries against an in-memory SQLite database holding
 * the same random table and requires identical answers.
 *
 * Rows are built by the ingest decoder from NDJSON, so they are the rows
 * the server stores, and results are printed as JSON objects by
 * api_value_json(), the formatter answers use.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/query_parse.h"
#include "engine/decode.h"
#include "engine/key.h"
#include "engine/query.h"
#include "engine/timestamp.h"
#include "util/strbuf.h"

#ifdef ST_HAVE_SQLITE3
#include <sqlite3.h>
#endif

/* ------------------------------------------------------------------ */
/* Schemas, tables, sources */

static void fld(struct field *f, const char *name, enum field_type t, bool nullable)
{
    memset(f, 0, sizeof(*f));
    st_strlcpy(f->name, name, sizeof(f->name));
    f->type = t;
    f->nullable = nullable;
}

static struct schema *mkschema(uint32_t version, struct field *f, uint32_t n, const char *const *pk,
                               uint32_t npk, const char *time_field)
{
    struct schema *s = NULL;
    struct err err;

    ck_assert_msg(schema_new(version, f, n, pk, npk, time_field, &s, &err) == ST_OK, "%s", err.msg);
    return s;
}

/* id int64 key, ts timestamp (time field), origin, delay, dist, ok, payload. */
static struct schema *flights(void)
{
    static const char *const pk[] = {"id"};
    struct field f[7];

    fld(&f[0], "id", FIELD_INT64, false);
    fld(&f[1], "ts", FIELD_TIMESTAMP, true);
    fld(&f[2], "origin", FIELD_STRING, true);
    fld(&f[3], "delay", FIELD_INT64, true);
    fld(&f[4], "dist", FIELD_FLOAT64, true);
    fld(&f[5], "ok", FIELD_BOOL, true);
    fld(&f[6], "payload", FIELD_JSON, true);
    return mkschema(1, f, 7, pk, 1, "ts");
}

/* Rows of one or more schema versions, in the order given (key order). */
struct tab {
    const struct schema *cur;     /* the newest schema */
    struct decode_result res[8];  /* one per tab_add() */
    size_t nres;                  /* used */
    const void **rows;            /* n rows */
    const struct schema **schema; /* and their schemas */
    size_t n;                     /* rows */
};

static void tab_init(struct tab *t, const struct schema *cur)
{
    memset(t, 0, sizeof(*t));
    t->cur = cur;
}

static void tab_add(struct tab *t, const struct schema *s, const char *ndjson)
{
    struct decode_result *r = &t->res[t->nres++];
    struct decode_opts o;
    struct err err;

    ck_assert(t->nres <= ST_ARRAY_SIZE(t->res));
    decode_result_init(r);
    decode_opts_init(&o);
    ck_assert_msg(decode_batch(s, ndjson, strlen(ndjson), &o, r, &err) == ST_OK, "%s", err.msg);
    ck_assert_msg(r->rejected == 0, "row rejected: %s", r->ndetails ? r->details[0].reason : "");
    t->rows = realloc_array(t->rows, t->n + r->nrows, sizeof(*t->rows));
    t->schema = realloc_array(t->schema, t->n + r->nrows, sizeof(*t->schema));
    for (size_t i = 0; i < r->nrows; i++) {
        t->rows[t->n] = decode_result_row(r, i);
        t->schema[t->n++] = s;
    }
}

static void tab_release(struct tab *t)
{
    for (size_t i = 0; i < t->nres; i++)
        decode_result_release(&t->res[i]);
    free(t->rows);
    free(t->schema);
}

struct src {
    const struct tab *t; /* rows */
    size_t i;            /* next row */
    bool fail;           /* end with ST_EIO */
};

static bool src_next(void *ctx, const void **row, const struct schema **s)
{
    struct src *c = ctx;

    if (c->i >= c->t->n)
        return false;
    *row = c->t->rows[c->i];
    *s = c->t->schema[c->i++];
    return true;
}

static enum st_status src_status(void *ctx, struct err *err)
{
    struct src *c = ctx;

    if (c->fail)
        return err_set(err, ST_EIO, "cannot read segment 'x': disk on fire");
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Running queries */

struct out {
    const struct query_plan *p; /* columns */
    struct strbuf sb;           /* rows, one JSON object a line */
    size_t n;                   /* rows */
    unsigned pause;             /* ST_EAGAIN after every row */
    int fail_at;                /* fail on this row (from 1), or 0 */
    struct value last[8];       /* the last row's values (first 8 columns) */
};

static enum st_status collect(void *ctx, const struct query_row *r, struct err *err)
{
    struct out *o = ctx;

    if (o->fail_at && (int)o->n + 1 == o->fail_at)
        return err_set(err, ST_EIO, "client went away");
    ck_assert_uint_eq(r->ncols, o->p->ncols);
    if (o->n++)
        strbuf_addch(&o->sb, '\n');
    strbuf_addch(&o->sb, '{');
    for (uint32_t i = 0; i < r->ncols; i++) {
        if (i)
            strbuf_addch(&o->sb, ',');
        strbuf_add_json_str(&o->sb, o->p->cols[i].name, strlen(o->p->cols[i].name));
        strbuf_addch(&o->sb, ':');
        api_value_json(&o->sb, &r->vals[i]);
        if (i < 8)
            o->last[i] = r->vals[i];
    }
    strbuf_addch(&o->sb, '}');
    return o->pause ? ST_EAGAIN : ST_OK;
}

static struct query_plan *parse_ok(const struct schema *s, const char *text,
                                   const struct query_parse_opts *po)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    struct query_parse_result r;
    struct err err;

    ck_assert_msg(j, "bad test JSON %s: %s", text, jerr.text);
    ck_assert_msg(query_parse(j, s, po, &r, &err) == ST_OK, "%s: %s", text, err.msg);
    json_decref(j);
    return r.plan;
}

/* The error message of parsing text against s (static buffer). */
static const char *parse_err(const struct schema *s, const char *text)
{
    static char msg[ST_ERR_MSG_MAX];
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    struct query_parse_result r;
    struct err err;

    ck_assert_msg(j, "bad test JSON %s: %s", text, jerr.text);
    ck_assert_msg(query_parse(j, s, NULL, &r, &err) == ST_EINVAL, "parsed: %s", text);
    ck_assert_int_eq(err.code, ST_EINVAL);
    ck_assert_ptr_null(r.plan);
    json_decref(j);
    st_strlcpy(msg, err.msg, sizeof(msg));
    return msg;
}

/*
 * Runs query text on t with budget-sized steps (0: query_run()); returns
 * the rows (malloc'd), or "ERROR <message>".
 */
static char *run_steps(struct tab *t, const char *text, const struct query_exec_opts *eo,
                       struct query_stats *st, uint64_t budget, unsigned *nmore)
{
    struct query_plan *p = parse_ok(t->cur, text, NULL);
    struct src src = {t, 0, false};
    struct query_source qs = {src_next, src_status, &src};
    struct out o = {.p = p};
    struct err err;
    enum st_status rc = ST_OK;
    char *res;

    strbuf_init(&o.sb, 0);
    if (!budget) {
        rc = query_run(p, &qs, eo, collect, &o, st, &err);
    } else {
        struct query_exec *q = query_exec_new(p, &qs, eo, collect, &o);
        enum query_step_result r;

        while ((r = query_step(q, budget, &err)) == QUERY_MORE)
            if (nmore)
                (*nmore)++;
        if (r == QUERY_ERROR)
            rc = err.code;
        if (st)
            query_exec_get_stats(q, st);
        query_exec_free(q);
    }
    if (rc != ST_OK) {
        strbuf_reset(&o.sb);
        strbuf_addf(&o.sb, "ERROR %s", err.msg);
    }
    res = strbuf_detach(&o.sb, NULL);
    query_plan_free(p);
    return res;
}

static char *run(struct tab *t, const char *text)
{
    return run_steps(t, text, NULL, NULL, 0, NULL);
}

#define CHECK_RUN(t, q, want)                                                                      \
    do {                                                                                           \
        char *got_ = run(t, q);                                                                    \
        ck_assert_msg(!strcmp(got_, want), "query %s\n got: %s\nwant: %s", q, got_, want);         \
        free(got_);                                                                                \
    } while (0)

/* A few flights, ids 1..6, with nulls in every nullable field. */
static const char *const FLIGHTS =
    "{\"id\":1,\"ts\":\"2001-01-01T00:10:00Z\",\"origin\":\"SFO\",\"delay\":10,\"dist\":1.5,"
    "\"ok\":true,\"payload\":{\"a\":1}}\n"
    "{\"id\":2,\"ts\":\"2001-01-01T00:50:00Z\",\"origin\":\"LAX\",\"delay\":null,\"dist\":2,"
    "\"ok\":false}\n"
    "{\"id\":3,\"ts\":\"2001-01-01T01:10:00Z\",\"origin\":null,\"delay\":30,\"ok\":null}\n"
    "{\"id\":4,\"ts\":\"2001-01-01T01:20:00Z\",\"origin\":\"SFO\",\"delay\":-5,\"dist\":0.25,"
    "\"ok\":true}\n"
    "{\"id\":5,\"ts\":null,\"origin\":\"LAX\",\"delay\":10,\"dist\":null,\"ok\":false}\n"
    "{\"id\":6,\"ts\":\"2001-01-02T00:00:00Z\",\"origin\":\"SFO\",\"delay\":null,\"dist\":3,"
    "\"ok\":null}\n";

/* ------------------------------------------------------------------ */
/* Parsing and validation */

START_TEST(test_parse_errors)
{
    static const struct {
        const char *q;
        const char *msg;
    } cases[] = {
        {"[]", "query: expected a JSON object, got array"},
        {"{}", "table: missing"},
        {"{\"table\":5}", "table: expected a string, got integer"},
        {"{\"table\":\"Bad Name\"}", "table: invalid table name 'Bad Name'"},
        {"{\"table\":\"f\",\"bogus\":1}", "bogus: unknown member"},
        /* select */
        {"{\"table\":\"f\",\"select\":\"id\"}",
         "select: expected an array of field names, got string"},
        {"{\"table\":\"f\",\"select\":[\"id\",\"foo\"]}", "select[1]: unknown field 'foo'"},
        {"{\"table\":\"f\",\"select\":[\"id\",3]}",
         "select[1]: expected a field name, got integer"},
        {"{\"table\":\"f\",\"select\":[\"id\",\"id\"]}", "select[1]: duplicate column 'id'"},
        {"{\"table\":\"f\",\"select\":[]}", "select: the query has no columns"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"select\":[\"origin\",\"delay\"]}",
         "select[1]: 'delay' is neither a group_by field nor an aggregate"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"avg\","
         "\"field\":\"delay\"}],\"select\":[\"origin\",\"dist\"]}",
         "select[1]: 'dist' is neither a group_by field nor an aggregate"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"avg\","
         "\"field\":\"delay\"}],\"select\":[\"avg_delay\",\"delay\"]}",
         "select[1]: duplicate column: every aggregate of 'delay' is selected"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"avg\","
         "\"field\":\"delay\"}],\"order_by\":[\"delay\"]}",
         "order_by[0]: 'delay' is neither a group_by field nor an aggregate"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"select\":[\"zz\"]}",
         "select[0]: unknown field 'zz'"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"select\":[]}",
         "select: the query has no columns"},
        /* where: shapes */
        {"{\"table\":\"f\",\"where\":[]}", "where: expected an object, got array"},
        {"{\"table\":\"f\",\"where\":{}}",
         "where: expected a predicate {\"field\", \"op\", \"value\"} or one of 'and', 'or', "
         "'not'"},
        {"{\"table\":\"f\",\"where\":{\"and\":[],\"x\":1}}",
         "where: 'and' must be the only member of its object"},
        {"{\"table\":\"f\",\"where\":{\"and\":{}}}", "where.and: expected an array, got object"},
        {"{\"table\":\"f\",\"where\":{\"or\":[5]}}",
         "where.or[0]: expected an object, got integer"},
        {"{\"table\":\"f\",\"where\":{\"not\":[]}}", "where.not: expected an object, got array"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"id\",\"op\":\"=\",\"value\":1,\"x\":2}}",
         "where.x: unknown member"},
        {"{\"table\":\"f\",\"where\":{\"op\":\"=\",\"value\":1}}", "where.field: missing"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"id\",\"value\":1}}", "where.op: missing"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"id\",\"op\":\"=\"}}", "where.value: missing"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"nope\",\"op\":\"=\",\"value\":1}}",
         "where.field: unknown field 'nope'"},
        {"{\"table\":\"f\",\"where\":{\"field\":7,\"op\":\"=\",\"value\":1}}",
         "where.field: expected a field name, got integer"},
        /* where: operators */
        {"{\"table\":\"f\",\"where\":{\"field\":\"id\",\"op\":\"like\",\"value\":1}}",
         "where.op: unknown operator 'like' (=, !=, <, <=, >, >=, in, prefix, contains, "
         "is_null)"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"id\",\"op\":1,\"value\":1}}",
         "where.op: expected an operator, got integer"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"prefix\",\"value\":\"1\"}}",
         "where.op: operator 'prefix' applies to string fields, not to int64 field 'delay'"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"ok\",\"op\":\"contains\",\"value\":\"t\"}}",
         "where.op: operator 'contains' applies to string fields, not to bool field 'ok'"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"payload\",\"op\":\"<\",\"value\":1}}",
         "where.op: operator '<' does not apply to json field 'payload' (only is_null does)"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"is_null\",\"value\":true}}",
         "where.value: operator 'is_null' takes no value"},
        /* where: values */
        {"{\"table\":\"f\",\"where\":{\"and\":[{\"field\":\"id\",\"op\":\"=\",\"value\":1},"
         "{\"field\":\"origin\",\"op\":\"=\",\"value\":5}]}}",
         "where.and[1].value: expected a string for string field 'origin', got integer"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"=\",\"value\":null}}",
         "where.value: null is not a value; use the operator 'is_null'"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"=\",\"value\":\"3\"}}",
         "where.value: expected a number for int64 field 'delay', got string"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"dist\",\"op\":\">\",\"value\":[1]}}",
         "where.value: expected a number for float64 field 'dist', got array"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"in\",\"value\":3}}",
         "where.value: expected a non-empty array for operator 'in', got integer"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"in\",\"value\":[]}}",
         "where.value: expected a non-empty array for operator 'in', got an empty array"},
        {"{\"table\":\"f\",\"where\":{\"not\":{\"field\":\"delay\",\"op\":\"in\","
         "\"value\":[1,\"x\"]}}}",
         "where.not.value[1]: expected a number for int64 field 'delay', got string"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"in\",\"value\":[1,null]}}",
         "where.value[1]: null is not a value; use the operator 'is_null'"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"ts\",\"op\":\">=\",\"value\":\"yesterday\"}}",
         "where.value: invalid timestamp 'yesterday' for field 'ts'"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"ts\",\"op\":\">=\",\"value\":1.5}}",
         "where.value: expected an RFC 3339 string or epoch milliseconds for timestamp field "
         "'ts', got float"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"ok\",\"op\":\"=\",\"value\":1}}",
         "where.value: expected true or false for bool field 'ok', got integer"},
        {"{\"table\":\"f\",\"where\":{\"field\":\"origin\",\"op\":\"prefix\",\"value\":1}}",
         "where.value: expected a string for string field 'origin', got integer"},
        /* group_by */
        {"{\"table\":\"f\",\"group_by\":\"origin\"}",
         "group_by: expected an array of field names, got string"},
        {"{\"table\":\"f\",\"group_by\":[\"x\"]}", "group_by[0]: unknown field 'x'"},
        {"{\"table\":\"f\",\"group_by\":[\"payload\"]}",
         "group_by[0]: cannot group by json field 'payload'"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\",\"origin\"]}",
         "group_by[1]: duplicate field 'origin'"},
        /* time_bucket */
        {"{\"table\":\"f\",\"time_bucket\":1}", "time_bucket: expected an object, got integer"},
        {"{\"table\":\"f\",\"time_bucket\":{\"width\":\"1h\"}}", "time_bucket.field: missing"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"origin\",\"width\":\"1h\"}}",
         "time_bucket.field: 'origin' is a string field, not a timestamp"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\"}}", "time_bucket.width: missing"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":\"1w\"}}",
         "time_bucket.width: expected a width such as \"1h\": a positive integer and s, m, h or "
         "d, at most 100000d"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":\"0h\"}}",
         "time_bucket.width: expected a width such as \"1h\": a positive integer and s, m, h or "
         "d, at most 100000d"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":\"100001d\"}}",
         "time_bucket.width: expected a width such as \"1h\": a positive integer and s, m, h or "
         "d, at most 100000d"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":60}}",
         "time_bucket.width: expected a width such as \"1h\": a positive integer and s, m, h or "
         "d, at most 100000d"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":\"1h\",\"as\":\"a b\"}}",
         "time_bucket.as: invalid name 'a b' (letters, digits and '_', at most 63)"},
        {"{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":\"1h\",\"y\":1}}",
         "time_bucket.y: unknown member"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"time_bucket\":{\"field\":\"ts\","
         "\"width\":\"1h\",\"as\":\"origin\"}}",
         "time_bucket.as: duplicate column 'origin' (a group_by field)"},
        /* aggregates */
        {"{\"table\":\"f\",\"aggregates\":{}}", "aggregates: expected an array, got object"},
        {"{\"table\":\"f\",\"aggregates\":[1]}", "aggregates[0]: expected an object, got integer"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count\"},{\"fn\":\"median\","
         "\"field\":\"delay\"}]}",
         "aggregates[1].fn: expected one of count, sum, min, max, avg, count_distinct"},
        {"{\"table\":\"f\",\"aggregates\":[{\"field\":\"delay\"}]}", "aggregates[0].fn: missing"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"sum\"}]}",
         "aggregates[0].field: missing (sum needs a field)"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"sum\",\"field\":\"origin\"}]}",
         "aggregates[0].field: sum needs an int64 or float64 field, 'origin' is string"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"avg\",\"field\":\"ts\"}]}",
         "aggregates[0].field: avg needs an int64 or float64 field, 'ts' is timestamp"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"max\",\"field\":\"payload\"}]}",
         "aggregates[0].field: max does not apply to json field 'payload'"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"min\",\"field\":\"nope\"}]}",
         "aggregates[0].field: unknown field 'nope'"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count\"},{\"fn\":\"count\"}]}",
         "aggregates[1].as: duplicate column 'count'"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"count\","
         "\"as\":\"origin\"}]}",
         "aggregates[0].as: duplicate column 'origin'"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count\",\"x\":1}]}",
         "aggregates[0].x: unknown member"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count\",\"as\":\"9x\"}]}",
         "aggregates[0].as: invalid name '9x' (letters, digits and '_', at most 63)"},
        /* order_by */
        {"{\"table\":\"f\",\"order_by\":{}}", "order_by: expected an array, got object"},
        {"{\"table\":\"f\",\"order_by\":[5]}",
         "order_by[0]: expected a field name or {\"field\", \"dir\"}, got integer"},
        {"{\"table\":\"f\",\"order_by\":[{\"field\":\"id\",\"dir\":\"up\"}]}",
         "order_by[0].dir: expected \"asc\" or \"desc\""},
        {"{\"table\":\"f\",\"order_by\":[{\"dir\":\"asc\"}]}", "order_by[0].field: missing"},
        {"{\"table\":\"f\",\"order_by\":[{\"field\":\"id\",\"x\":1}]}",
         "order_by[0].x: unknown member"},
        {"{\"table\":\"f\",\"order_by\":[\"id\",\"nope\"]}", "order_by[1]: unknown field 'nope'"},
        {"{\"table\":\"f\",\"order_by\":[\"payload\"]}",
         "order_by[0]: cannot order by json field 'payload'"},
        {"{\"table\":\"f\",\"group_by\":[\"origin\"],\"order_by\":[{\"field\":\"delay\"}]}",
         "order_by[0].field: 'delay' is neither a group_by field nor an aggregate"},
        {"{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"}],"
         "\"order_by\":[\"x\"]}",
         "order_by[0]: unknown field 'x'"},
        /* limit, cursor, as_of */
        {"{\"table\":\"f\",\"limit\":-1}",
         "limit: expected an integer >= 0, got a negative integer"},
        {"{\"table\":\"f\",\"limit\":\"10\"}", "limit: expected an integer >= 0, got string"},
        {"{\"table\":\"f\",\"limit\":1.5}", "limit: expected an integer >= 0, got float"},
        {"{\"table\":\"f\",\"cursor\":5}", "cursor: expected a string or null, got integer"},
        {"{\"table\":\"f\",\"as_of\":\"x\"}",
         "as_of: expected a version (an integer >= 0) or null, got string"},
        {"{\"table\":\"f\",\"as_of\":-2}",
         "as_of: expected a version (an integer >= 0) or null, got a negative integer"},
    };
    struct schema *s = flights();

    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        const char *got = parse_err(s, cases[i].q);

        ck_assert_msg(!strcmp(got, cases[i].msg), "query %s\n got: %s\nwant: %s", cases[i].q, got,
                      cases[i].msg);
    }
    schema_free(s);
}
END_TEST

START_TEST(test_parse_depth)
{
    struct schema *s = flights();
    struct strbuf q = STRBUF_INIT, want = STRBUF_INIT;
    struct query_plan *p;
    int depth;

    /* QUERY_MAX_DEPTH nots around a predicate parse; one more does not. */
    for (int round = 0; round < 2; round++) {
        depth = QUERY_MAX_DEPTH + round;
        strbuf_reset(&q);
        strbuf_addstr(&q, "{\"table\":\"f\",\"where\":");
        for (int i = 0; i < depth; i++)
            strbuf_addstr(&q, "{\"not\":");
        strbuf_addstr(&q, "{\"field\":\"id\",\"op\":\"=\",\"value\":1}");
        for (int i = 0; i < depth; i++)
            strbuf_addch(&q, '}');
        strbuf_addch(&q, '}');
        if (!round) {
            p = parse_ok(s, q.buf, NULL);
            query_plan_free(p);
            continue;
        }
        strbuf_addstr(&want, "where");
        for (int i = 0; i < depth; i++)
            strbuf_addstr(&want, ".not");
        strbuf_addf(&want, ": filter nested deeper than %d levels", QUERY_MAX_DEPTH);
        ck_assert_str_eq(parse_err(s, q.buf), want.buf);
    }
    strbuf_release(&q);
    strbuf_release(&want);
    schema_free(s);
}
END_TEST

START_TEST(test_parse_plan)
{
    struct schema *s = flights();
    struct query_parse_opts po = {.max_rows = 500};
    struct query_parse_result r;
    struct query_plan *p;
    json_t *j;
    struct err err;

    /* Defaults: every field, limit 1000 capped by max_rows, no cap when streamed. */
    p = parse_ok(s, "{\"table\":\"f\"}", NULL);
    ck_assert_uint_eq(p->ncols, 7);
    ck_assert_str_eq(p->cols[6].name, "payload");
    ck_assert_uint_eq(p->limit, QUERY_DEFAULT_LIMIT);
    ck_assert(!p->grouped);
    query_plan_free(p);
    p = parse_ok(s, "{\"table\":\"f\"}", &po);
    ck_assert_uint_eq(p->limit, 500);
    query_plan_free(p);
    p = parse_ok(s, "{\"table\":\"f\",\"limit\":100000}", &po);
    ck_assert_uint_eq(p->limit, 500);
    query_plan_free(p);
    po.stream = true;
    p = parse_ok(s, "{\"table\":\"f\"}", &po);
    ck_assert_uint_eq(p->limit, QUERY_NO_LIMIT);
    query_plan_free(p);
    p = parse_ok(s, "{\"table\":\"f\",\"limit\":100000,\"where\":null,\"cursor\":null}", &po);
    ck_assert_uint_eq(p->limit, 100000);
    ck_assert_ptr_null(p->where);
    query_plan_free(p);

    /* Grouped columns: select, then the bucket and the aggregates it leaves out. */
    p = parse_ok(s,
                 "{\"table\":\"f\",\"group_by\":[\"origin\",\"ok\"],\"select\":[\"avg_delay\","
                 "\"ok\"],\"time_bucket\":{\"field\":\"ts\",\"width\":\"15m\"},"
                 "\"aggregates\":[{\"fn\":\"count\"},{\"fn\":\"avg\",\"field\":\"delay\"}],"
                 "\"order_by\":[{\"field\":\"count\",\"dir\":\"desc\"},\"ts\"]}",
                 NULL);
    ck_assert(p->grouped);
    ck_assert_uint_eq(p->ncols, 4);
    ck_assert_str_eq(p->cols[0].name, "avg_delay");
    ck_assert_str_eq(p->cols[1].name, "ok");
    ck_assert_str_eq(p->cols[2].name, "ts");
    ck_assert_int_eq(p->cols[2].ref.kind, QUERY_REF_BUCKET);
    ck_assert_str_eq(p->cols[3].name, "count");
    ck_assert_int_eq(p->bucket.width_ms, 15 * 60000);
    ck_assert_uint_eq(p->norder, 2);
    ck_assert(p->order[0].desc && p->order[0].ref.kind == QUERY_REF_AGG);
    ck_assert(!p->order[1].desc && p->order[1].ref.kind == QUERY_REF_BUCKET);
    query_plan_free(p);

    /* API.md's example: "delay" selects avg_delay, at its place. */
    p = parse_ok(s,
                 "{\"table\":\"f\",\"select\":[\"origin\",\"delay\"],\"group_by\":[\"origin\"],"
                 "\"time_bucket\":{\"field\":\"ts\",\"width\":\"1h\",\"as\":\"hour\"},"
                 "\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"},{\"fn\":\"avg\",\"field\":"
                 "\"delay\",\"as\":\"avg_delay\"},{\"fn\":\"max\",\"field\":\"delay\"}],"
                 "\"order_by\":[{\"field\":\"avg_delay\",\"dir\":\"desc\"}],\"limit\":100}",
                 NULL);
    ck_assert_uint_eq(p->ncols, 5);
    ck_assert_str_eq(p->cols[0].name, "origin");
    ck_assert_str_eq(p->cols[1].name, "avg_delay");
    ck_assert_int_eq(p->cols[1].ref.kind, QUERY_REF_AGG);
    ck_assert_uint_eq(p->cols[1].ref.index, 1);
    ck_assert_str_eq(p->cols[2].name, "max_delay");
    ck_assert_str_eq(p->cols[3].name, "hour");
    ck_assert_str_eq(p->cols[4].name, "n");
    query_plan_free(p);

    /* Without select: group fields, bucket, aggregates. */
    p = parse_ok(s,
                 "{\"table\":\"f\",\"group_by\":[\"ok\"],\"time_bucket\":{\"field\":\"ts\","
                 "\"width\":\"2d\",\"as\":\"day\"},\"aggregates\":[{\"fn\":\"count_distinct\","
                 "\"field\":\"origin\"}]}",
                 NULL);
    ck_assert_uint_eq(p->ncols, 3);
    ck_assert_str_eq(p->cols[0].name, "ok");
    ck_assert_str_eq(p->cols[1].name, "day");
    ck_assert_str_eq(p->cols[2].name, "count_distinct_origin");
    ck_assert_int_eq(p->bucket.width_ms, 2 * 86400000LL);
    query_plan_free(p);

    /* cursor and as_of come back; the cursor borrows the body. */
    j = json_loads("{\"table\":\"f\",\"cursor\":\"abc\",\"as_of\":42}", 0, NULL);
    ck_assert_int_eq(query_parse(j, s, NULL, &r, &err), ST_OK);
    ck_assert_str_eq(r.cursor, "abc");
    ck_assert(r.has_as_of);
    ck_assert_uint_eq(r.as_of, 42);
    query_parse_result_release(&r);
    ck_assert_ptr_null(r.plan);
    json_decref(j);

    /* The table name, for the caller's lookup. */
    {
        const char *name;
        size_t len;

        j = json_loads("{\"table\":\"flights\"}", 0, NULL);
        ck_assert_int_eq(query_parse_table(j, &name, &len, &err), ST_OK);
        ck_assert_str_eq(name, "flights");
        ck_assert_uint_eq(len, 7);
        json_decref(j);
    }
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Filters */

START_TEST(test_operators_with_nulls)
{
    static const struct {
        const char *pred; /* field, op, value */
        const char *yes;  /* ids where it is true */
        const char *no;   /* ids where it is false (never a null row) */
    } cases[] = {
        {"\"field\":\"delay\",\"op\":\"=\",\"value\":10", "1,5", "3,4"},
        {"\"field\":\"delay\",\"op\":\"!=\",\"value\":10", "3,4", "1,5"},
        {"\"field\":\"delay\",\"op\":\"<\",\"value\":10", "4", "1,3,5"},
        {"\"field\":\"delay\",\"op\":\"<=\",\"value\":10", "1,4,5", "3"},
        {"\"field\":\"delay\",\"op\":\">\",\"value\":10", "3", "1,4,5"},
        {"\"field\":\"delay\",\"op\":\">=\",\"value\":10", "1,3,5", "4"},
        {"\"field\":\"delay\",\"op\":\"in\",\"value\":[30,-5,99]", "3,4", "1,5"},
        {"\"field\":\"delay\",\"op\":\"is_null\"", "2,6", "1,3,4,5"},
        {"\"field\":\"origin\",\"op\":\"prefix\",\"value\":\"SF\"", "1,4,6", "2,5"},
        {"\"field\":\"origin\",\"op\":\"prefix\",\"value\":\"\"", "1,2,4,5,6", ""},
        {"\"field\":\"origin\",\"op\":\"contains\",\"value\":\"A\"", "2,5", "1,4,6"},
        {"\"field\":\"origin\",\"op\":\"contains\",\"value\":\"\"", "1,2,4,5,6", ""},
        {"\"field\":\"origin\",\"op\":\"<\",\"value\":\"MIA\"", "2,5", "1,4,6"},
        {"\"field\":\"ok\",\"op\":\"=\",\"value\":true", "1,4", "2,5"},
        {"\"field\":\"ok\",\"op\":\"<\",\"value\":true", "2,5", "1,4"},
        {"\"field\":\"ts\",\"op\":\">=\",\"value\":\"2001-01-01T01:10:00Z\"", "3,4,6", "1,2"},
        {"\"field\":\"ts\",\"op\":\"<\",\"value\":978311400000", "1,2", "3,4,6"},
        {"\"field\":\"ts\",\"op\":\"in\",\"value\":[\"2001-01-02T00:00:00+00:00\","
         "978307800000]",
         "1,6", "2,3,4"},
        {"\"field\":\"dist\",\"op\":\">\",\"value\":1", "1,2,6", "4"},
        {"\"field\":\"payload\",\"op\":\"is_null\"", "2,3,4,5,6", "1"},
    };
    struct schema *s = flights();
    struct tab t;
    char q[512];

    tab_init(&t, s);
    tab_add(&t, s, FLIGHTS);
    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        char *got;

        for (int neg = 0; neg < 2; neg++) {
            struct strbuf ids = STRBUF_INIT;
            char *p;

            snprintf(q, sizeof(q),
                     neg ? "{\"table\":\"f\",\"select\":[\"id\"],\"where\":{\"not\":{%s}}}"
                         : "{\"table\":\"f\",\"select\":[\"id\"],\"where\":{%s}}",
                     cases[i].pred);
            got = run(&t, q);
            /* {"id":1}\n{"id":5} -> 1,5 */
            for (p = got; (p = strstr(p, "\"id\":")); p += 5) {
                if (ids.len)
                    strbuf_addch(&ids, ',');
                strbuf_addf(&ids, "%ld", strtol(p + 5, NULL, 10));
            }
            ck_assert_msg(!strcmp(ids.buf, neg ? cases[i].no : cases[i].yes), "%s: got %s want %s",
                          q, ids.buf, neg ? cases[i].no : cases[i].yes);
            strbuf_release(&ids);
            free(got);
        }
    }
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* and, or, not over all nine pairs of true, false and null. */
START_TEST(test_three_valued_logic)
{
    static const char *const bools[] = {"true", "false", "null"};
    static const struct {
        const char *where;
        const char *ids;
    } cases[] = {
        {"{\"and\":[{\"field\":\"a\",\"op\":\"=\",\"value\":true},{\"field\":\"b\",\"op\":\"=\","
         "\"value\":true}]}",
         "1"},
        {"{\"not\":{\"and\":[{\"field\":\"a\",\"op\":\"=\",\"value\":true},{\"field\":\"b\","
         "\"op\":\"=\",\"value\":true}]}}",
         "2,4,5,6,8"},
        {"{\"or\":[{\"field\":\"a\",\"op\":\"=\",\"value\":true},{\"field\":\"b\",\"op\":\"=\","
         "\"value\":true}]}",
         "1,2,3,4,7"},
        {"{\"not\":{\"or\":[{\"field\":\"a\",\"op\":\"=\",\"value\":true},{\"field\":\"b\","
         "\"op\":\"=\",\"value\":true}]}}",
         "5"},
        {"{\"not\":{\"field\":\"a\",\"op\":\"=\",\"value\":true}}", "4,5,6"},
        {"{\"not\":{\"not\":{\"field\":\"a\",\"op\":\"=\",\"value\":true}}}", "1,2,3"},
        {"{\"field\":\"a\",\"op\":\"!=\",\"value\":true}", "4,5,6"},
        {"{\"not\":{\"field\":\"a\",\"op\":\"is_null\"}}", "1,2,3,4,5,6"},
        {"{\"or\":[{\"field\":\"a\",\"op\":\"is_null\"},{\"not\":{\"field\":\"b\",\"op\":\"=\","
         "\"value\":false}}]}",
         "1,4,7,8,9"},
        {"{\"and\":[]}", "1,2,3,4,5,6,7,8,9"},
        {"{\"or\":[]}", ""},
        {"{\"not\":{\"or\":[]}}", "1,2,3,4,5,6,7,8,9"},
    };
    static const char *const pk[] = {"id"};
    struct field f[3];
    struct schema *s;
    struct strbuf rows = STRBUF_INIT;
    struct tab t;

    fld(&f[0], "id", FIELD_INT64, false);
    fld(&f[1], "a", FIELD_BOOL, true);
    fld(&f[2], "b", FIELD_BOOL, true);
    s = mkschema(1, f, 3, pk, 1, NULL);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            strbuf_addf(&rows, "{\"id\":%d,\"a\":%s,\"b\":%s}\n", 3 * a + b + 1, bools[a],
                        bools[b]);
    tab_init(&t, s);
    tab_add(&t, s, rows.buf);
    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        char q[512], *got, *p;
        struct strbuf ids = STRBUF_INIT;

        snprintf(q, sizeof(q), "{\"table\":\"t\",\"select\":[\"id\"],\"where\":%s}",
                 cases[i].where);
        got = run(&t, q);
        for (p = got; (p = strstr(p, "\"id\":")); p += 5) {
            if (ids.len)
                strbuf_addch(&ids, ',');
            strbuf_addf(&ids, "%ld", strtol(p + 5, NULL, 10));
        }
        ck_assert_msg(!strcmp(ids.buf, cases[i].ids), "%s: got %s want %s", cases[i].where, ids.buf,
                      cases[i].ids);
        strbuf_release(&ids);
        free(got);
    }
    strbuf_release(&rows);
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* Integer literals against float64 fields, and float literals against int64. */
START_TEST(test_numeric_literals)
{
    static const char *const pk[] = {"id"};
    struct field f[3];
    struct schema *s;
    struct tab t;

    fld(&f[0], "id", FIELD_INT64, false);
    fld(&f[1], "x", FIELD_FLOAT64, true);
    fld(&f[2], "n", FIELD_INT64, true);
    s = mkschema(1, f, 3, pk, 1, NULL);
    tab_init(&t, s);
    tab_add(&t, s,
            "{\"id\":1,\"x\":1.0,\"n\":1}\n{\"id\":2,\"x\":1.5,\"n\":2}\n"
            "{\"id\":3,\"x\":2,\"n\":3}\n{\"id\":4,\"x\":9007199254740992,"
            "\"n\":9007199254740993}\n{\"id\":5,\"x\":-0.0,\"n\":-9223372036854775808}\n");
#define IDS(w, want) CHECK_RUN(&t, "{\"table\":\"t\",\"select\":[\"id\"],\"where\":" w "}", want)
    IDS("{\"field\":\"x\",\"op\":\"=\",\"value\":1}", "{\"id\":1}");
    IDS("{\"field\":\"x\",\"op\":\"<\",\"value\":2}", "{\"id\":1}\n{\"id\":2}\n{\"id\":5}");
    IDS("{\"field\":\"x\",\"op\":\"in\",\"value\":[2,1,1.0,0]}",
        "{\"id\":1}\n{\"id\":3}\n{\"id\":5}");
    /* 2^53 + 1 is no double: no float64 equals it, 2^53 is below it. */
    IDS("{\"field\":\"x\",\"op\":\"=\",\"value\":9007199254740993}", "");
    IDS("{\"field\":\"x\",\"op\":\"<\",\"value\":9007199254740993}",
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n{\"id\":5}");
    IDS("{\"field\":\"x\",\"op\":\">=\",\"value\":9007199254740992}", "{\"id\":4}");
    IDS("{\"field\":\"x\",\"op\":\"in\",\"value\":[9007199254740993]}", "");
    IDS("{\"field\":\"x\",\"op\":\"=\",\"value\":0}", "{\"id\":5}");
    /* float literals against int64: by value, no rounding. */
    IDS("{\"field\":\"n\",\"op\":\"<\",\"value\":2.5}", "{\"id\":1}\n{\"id\":2}\n{\"id\":5}");
    IDS("{\"field\":\"n\",\"op\":\"=\",\"value\":2.0}", "{\"id\":2}");
    IDS("{\"field\":\"n\",\"op\":\"=\",\"value\":2.5}", "");
    IDS("{\"field\":\"n\",\"op\":\"!=\",\"value\":2.5}",
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n{\"id\":5}");
    IDS("{\"field\":\"n\",\"op\":\"in\",\"value\":[2.5,3.0]}", "{\"id\":3}");
    /* 9007199254740992.0 is not 9007199254740993 however it is rounded. */
    IDS("{\"field\":\"n\",\"op\":\"=\",\"value\":9007199254740992.0}", "");
    IDS("{\"field\":\"n\",\"op\":\">\",\"value\":9007199254740992.0}", "{\"id\":4}");
    IDS("{\"field\":\"n\",\"op\":\"<\",\"value\":-9223372036854775808.0}", "");
    IDS("{\"field\":\"n\",\"op\":\"<=\",\"value\":-9223372036854775808.0}", "{\"id\":5}");
    IDS("{\"field\":\"n\",\"op\":\"<\",\"value\":1e300}",
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n{\"id\":5}");
    IDS("{\"field\":\"n\",\"op\":\">\",\"value\":-1e300}",
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n{\"id\":5}");
#undef IDS
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* Strings order by UTF-8 bytes, which is code point order (not UTF-16's). */
START_TEST(test_utf8_byte_order)
{
    static const char *const pk[] = {"id"};
    struct field f[2];
    struct schema *s;
    struct tab t;

    fld(&f[0], "id", FIELD_INT64, false);
    fld(&f[1], "s", FIELD_STRING, false);
    s = mkschema(1, f, 2, pk, 1, NULL);
    tab_init(&t, s);
    /* U+10000 is F0 90 80 80 (after U+FFFD, EF BF BD); in UTF-16 it would sort before. */
    tab_add(&t, s,
            "{\"id\":1,\"s\":\"\\ud800\\udc00\"}\n{\"id\":2,\"s\":\"\\ufffd\"}\n"
            "{\"id\":3,\"s\":\"\\u00e9\"}\n{\"id\":4,\"s\":\"a\"}\n{\"id\":5,\"s\":\"B\"}\n"
            "{\"id\":6,\"s\":\"ab\"}\n{\"id\":7,\"s\":\"\\u00e4\"}\n{\"id\":8,\"s\":\"a \"}\n");
    CHECK_RUN(&t, "{\"table\":\"t\",\"select\":[\"id\"],\"order_by\":[\"s\"]}",
              "{\"id\":5}\n{\"id\":4}\n{\"id\":8}\n{\"id\":6}\n{\"id\":7}\n{\"id\":3}\n{\"id\":2}"
              "\n{\"id\":1}");
    CHECK_RUN(&t,
              "{\"table\":\"t\",\"select\":[\"id\"],\"where\":{\"field\":\"s\",\"op\":\">\","
              "\"value\":\"\\uffff\"}}",
              "{\"id\":1}");
    CHECK_RUN(&t,
              "{\"table\":\"t\",\"select\":[\"id\"],\"where\":{\"field\":\"s\",\"op\":\"<\","
              "\"value\":\"a\"}}",
              "{\"id\":5}");
    CHECK_RUN(&t,
              "{\"table\":\"t\",\"select\":[\"id\"],\"where\":{\"field\":\"s\",\"op\":\"=\","
              "\"value\":\"A\"}}",
              "");
    CHECK_RUN(&t,
              "{\"table\":\"t\",\"select\":[\"id\"],\"where\":{\"field\":\"s\",\"op\":\"prefix\","
              "\"value\":\"\\u00c3\"}}",
              "");
    CHECK_RUN(&t,
              "{\"table\":\"t\",\"aggregates\":[{\"fn\":\"min\",\"field\":\"s\"},{\"fn\":\"max\","
              "\"field\":\"s\"}]}",
              "{\"min_s\":\"B\",\"max_s\":\"\xf0\x90\x80\x80\"}");
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Aggregates and groups */

START_TEST(test_aggregates_with_nulls)
{
    struct schema *s = flights();
    struct tab t;

    tab_init(&t, s);
    tab_add(&t, s, FLIGHTS);
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"},{\"fn\":\"count\","
              "\"field\":\"delay\"},{\"fn\":\"sum\",\"field\":\"delay\"},{\"fn\":\"min\","
              "\"field\":\"delay\"},{\"fn\":\"max\",\"field\":\"delay\"},{\"fn\":\"avg\","
              "\"field\":\"delay\"},{\"fn\":\"count_distinct\",\"field\":\"delay\"}]}",
              "{\"n\":6,\"count_delay\":4,\"sum_delay\":45,\"min_delay\":-5,\"max_delay\":30,"
              "\"avg_delay\":11.25,\"count_distinct_delay\":3}");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"aggregates\":[{\"fn\":\"sum\",\"field\":\"dist\"},{\"fn\":"
              "\"avg\",\"field\":\"dist\"},{\"fn\":\"min\",\"field\":\"origin\"},{\"fn\":\"max\","
              "\"field\":\"origin\"},{\"fn\":\"min\",\"field\":\"ts\"},{\"fn\":\"max\",\"field\":"
              "\"ok\"},{\"fn\":\"min\",\"field\":\"ok\"},{\"fn\":\"count_distinct\",\"field\":"
              "\"origin\"},{\"fn\":\"count\",\"field\":\"payload\"}]}",
              "{\"sum_dist\":6.75,\"avg_dist\":1.6875,\"min_origin\":\"LAX\",\"max_origin\":"
              "\"SFO\",\"min_ts\":\"2001-01-01T00:10:00.000Z\",\"max_ok\":true,\"min_ok\":false,"
              "\"count_distinct_origin\":2,\"count_payload\":1}");
    /* Only nulls: counts 0, everything else null. */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"where\":{\"field\":\"delay\",\"op\":\"is_null\"},"
              "\"aggregates\":[{\"fn\":\"count\"},{\"fn\":\"count\",\"field\":\"delay\"},{\"fn\":"
              "\"sum\",\"field\":\"delay\"},{\"fn\":\"min\",\"field\":\"delay\"},{\"fn\":\"max\","
              "\"field\":\"delay\"},{\"fn\":\"avg\",\"field\":\"delay\"},{\"fn\":"
              "\"count_distinct\",\"field\":\"delay\"}]}",
              "{\"count\":2,\"count_delay\":0,\"sum_delay\":null,\"min_delay\":null,"
              "\"max_delay\":null,\"avg_delay\":null,\"count_distinct_delay\":0}");
    /* No rows: one row of aggregates; grouped by a field: no rows. */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"where\":{\"field\":\"id\",\"op\":\">\",\"value\":100},"
              "\"aggregates\":[{\"fn\":\"count\"},{\"fn\":\"sum\",\"field\":\"dist\"},{\"fn\":"
              "\"max\",\"field\":\"origin\"},{\"fn\":\"count_distinct\",\"field\":\"ok\"}]}",
              "{\"count\":0,\"sum_dist\":null,\"max_origin\":null,\"count_distinct_ok\":0}");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"where\":{\"field\":\"id\",\"op\":\">\",\"value\":100},"
              "\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"count\"}]}",
              "");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"where\":{\"field\":\"id\",\"op\":\">\",\"value\":100},"
              "\"aggregates\":[{\"fn\":\"count\"}],\"limit\":0}",
              "");
    tab_release(&t);
    schema_free(s);
}
END_TEST

START_TEST(test_group_by)
{
    struct schema *s = flights();
    struct tab t;

    tab_init(&t, s);
    tab_add(&t, s, FLIGHTS);
    /* Groups come in key order, nulls last; the null group is kept. */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"count\","
              "\"as\":\"n\"},{\"fn\":\"sum\",\"field\":\"delay\",\"as\":\"d\"}]}",
              "{\"origin\":\"LAX\",\"n\":2,\"d\":10}\n{\"origin\":\"SFO\",\"n\":3,\"d\":5}\n"
              "{\"origin\":null,\"n\":1,\"d\":30}");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"group_by\":[\"ok\",\"origin\"],\"aggregates\":[{\"fn\":\"count\","
              "\"as\":\"n\"}]}",
              "{\"ok\":false,\"origin\":\"LAX\",\"n\":2}\n{\"ok\":true,\"origin\":\"SFO\",\"n\":2}"
              "\n{\"ok\":null,\"origin\":\"SFO\",\"n\":1}\n{\"ok\":null,\"origin\":null,\"n\":1}");
    /* Without aggregates: the distinct keys; select hides a group field. */
    CHECK_RUN(&t, "{\"table\":\"f\",\"group_by\":[\"ok\"]}",
              "{\"ok\":false}\n{\"ok\":true}\n{\"ok\":null}");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"group_by\":[\"ok\",\"origin\"],\"select\":[\"origin\"],"
              "\"order_by\":[{\"field\":\"ok\",\"dir\":\"desc\"}]}",
              "{\"origin\":\"SFO\"}\n{\"origin\":null}\n{\"origin\":\"SFO\"}\n{\"origin\":"
              "\"LAX\"}");
    /* Order by an aggregate, ties by the group key, with a limit. */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"count\","
              "\"as\":\"n\"}],\"order_by\":[{\"field\":\"n\",\"dir\":\"desc\"}],\"limit\":2}",
              "{\"origin\":\"SFO\",\"n\":3}\n{\"origin\":\"LAX\",\"n\":2}");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"max\","
              "\"field\":\"delay\",\"as\":\"m\"}],\"order_by\":[\"m\"]}",
              "{\"origin\":\"LAX\",\"m\":10}\n{\"origin\":\"SFO\",\"m\":10}\n{\"origin\":null,"
              "\"m\":30}");
    /*
     * A select naming an aggregated field (API.md's example): the
     * aggregates of that field at its place, the others after.
     */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"select\":[\"delay\",\"origin\"],\"group_by\":[\"origin\"],"
              "\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"},{\"fn\":\"avg\",\"field\":"
              "\"delay\",\"as\":\"avg_delay\"},{\"fn\":\"max\",\"field\":\"delay\"}],"
              "\"order_by\":[{\"field\":\"avg_delay\",\"dir\":\"desc\"}]}",
              "{\"avg_delay\":30.0,\"max_delay\":30,\"origin\":null,\"n\":1}\n"
              "{\"avg_delay\":10.0,\"max_delay\":10,\"origin\":\"LAX\",\"n\":2}\n"
              "{\"avg_delay\":2.5,\"max_delay\":10,\"origin\":\"SFO\",\"n\":3}");
    /* A filter before grouping. */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"where\":{\"field\":\"ok\",\"op\":\"=\",\"value\":true},"
              "\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":\"avg\",\"field\":\"dist\"}]}",
              "{\"origin\":\"SFO\",\"avg_dist\":0.875}");
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* Buckets round down, also before 1970, at every unit's boundaries. */
START_TEST(test_time_bucket)
{
    static const struct {
        int64_t ts;
        const char *width;
        const char *bucket;
    } cases[] = {
        {0, "1s", "1970-01-01T00:00:00.000Z"},
        {999, "1s", "1970-01-01T00:00:00.000Z"},
        {1000, "1s", "1970-01-01T00:00:01.000Z"},
        {-1, "1s", "1969-12-31T23:59:59.000Z"},
        {-1000, "1s", "1969-12-31T23:59:59.000Z"},
        {-1001, "1s", "1969-12-31T23:59:58.000Z"},
        {59999, "1m", "1970-01-01T00:00:00.000Z"},
        {60000, "1m", "1970-01-01T00:01:00.000Z"},
        {-1, "1m", "1969-12-31T23:59:00.000Z"},
        {-60000, "1m", "1969-12-31T23:59:00.000Z"},
        {-60001, "1m", "1969-12-31T23:58:00.000Z"},
        {3599999, "1h", "1970-01-01T00:00:00.000Z"},
        {3600000, "1h", "1970-01-01T01:00:00.000Z"},
        {-1, "1h", "1969-12-31T23:00:00.000Z"},
        {-3600001, "1h", "1969-12-31T22:00:00.000Z"},
        {86399999, "1d", "1970-01-01T00:00:00.000Z"},
        {86400000, "1d", "1970-01-02T00:00:00.000Z"},
        {-1, "1d", "1969-12-31T00:00:00.000Z"},
        {-86400000, "1d", "1969-12-31T00:00:00.000Z"},
        {-86400001, "1d", "1969-12-30T00:00:00.000Z"},
        {-1, "7d", "1969-12-25T00:00:00.000Z"},
        {978307260000, "15m", "2001-01-01T00:00:00.000Z"},
        {978308099999, "15m", "2001-01-01T00:00:00.000Z"},
        {978308100000, "15m", "2001-01-01T00:15:00.000Z"},
        {-62135596800001, "1d", "0000-12-31T00:00:00.000Z"},
        {-62167219200001, "1d", "-0001-12-31T00:00:00.000Z"},
        {INT64_MIN, "1s", NULL}, /* the floor is below INT64_MIN: clamped */
    };
    struct schema *s = flights();

    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        struct tab t;
        char row[128], q[256], want[128], *got;

        snprintf(row, sizeof(row), "{\"id\":1,\"ts\":%lld}\n", (long long)cases[i].ts);
        tab_init(&t, s);
        tab_add(&t, s, row);
        snprintf(q, sizeof(q),
                 "{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":\"%s\",\"as\":"
                 "\"b\"},\"aggregates\":[{\"fn\":\"count\"}]}",
                 cases[i].width);
        got = run(&t, q);
        if (cases[i].bucket) {
            snprintf(want, sizeof(want), "{\"b\":\"%s\",\"count\":1}", cases[i].bucket);
        } else {
            char ts[TIMESTAMP_TEXT_MAX];

            timestamp_format(INT64_MIN, ts);
            snprintf(want, sizeof(want), "{\"b\":\"%s\",\"count\":1}", ts);
        }
        ck_assert_msg(!strcmp(got, want), "%lld %s: got %s want %s", (long long)cases[i].ts,
                      cases[i].width, got, want);
        free(got);
        tab_release(&t);
    }
    schema_free(s);
}
END_TEST

START_TEST(test_time_bucket_groups)
{
    struct schema *s = flights();
    struct tab t;

    tab_init(&t, s);
    tab_add(&t, s, FLIGHTS);
    /* A null time is a null bucket, kept as a group, last. */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"time_bucket\":{\"field\":\"ts\",\"width\":\"1h\",\"as\":"
              "\"hour\"},\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"},{\"fn\":\"avg\","
              "\"field\":\"delay\",\"as\":\"avg_delay\"}]}",
              "{\"hour\":\"2001-01-01T00:00:00.000Z\",\"n\":2,\"avg_delay\":10.0}\n"
              "{\"hour\":\"2001-01-01T01:00:00.000Z\",\"n\":2,\"avg_delay\":12.5}\n"
              "{\"hour\":\"2001-01-02T00:00:00.000Z\",\"n\":1,\"avg_delay\":null}\n"
              "{\"hour\":null,\"n\":1,\"avg_delay\":10.0}");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"group_by\":[\"origin\"],\"time_bucket\":{\"field\":\"ts\","
              "\"width\":\"1d\"},\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"}],"
              "\"order_by\":[{\"field\":\"ts\",\"dir\":\"desc\"},\"n\"]}",
              "{\"origin\":\"LAX\",\"ts\":null,\"n\":1}\n{\"origin\":\"SFO\",\"ts\":"
              "\"2001-01-02T00:00:00.000Z\",\"n\":1}\n{\"origin\":\"LAX\",\"ts\":"
              "\"2001-01-01T00:00:00.000Z\",\"n\":1}\n{\"origin\":null,\"ts\":"
              "\"2001-01-01T00:00:00.000Z\",\"n\":1}\n{\"origin\":\"SFO\",\"ts\":"
              "\"2001-01-01T00:00:00.000Z\",\"n\":2}");
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* Sums of int64 are exact whenever the total fits, whatever the partial sums. */
START_TEST(test_int_sums_near_limits)
{
    static const struct {
        const char *vals;
        const char *sum;
        const char *avg;
    } cases[] = {
        {"9223372036854775807,1,-1", "9223372036854775807", "3074457345618258400.0"},
        {"9223372036854775807,9223372036854775807,-9223372036854775807", "9223372036854775807",
         "3074457345618258400.0"},
        {"-9223372036854775808,-1,1", "-9223372036854775808", "-3074457345618258400.0"},
        {"-9223372036854775808,-9223372036854775808,9223372036854775807,9223372036854775807", "-2",
         "-0.5"},
        /* Beyond int64: the nearest float64 (the one inexact case). */
        {"9223372036854775807,1", "9223372036854776000.0", "4611686018427388000.0"},
        {"-9223372036854775808,-9223372036854775808", "-18446744073709552000.0",
         "-9223372036854776000.0"},
    };
    static const char *const pk[] = {"id"};
    struct field f[2];
    struct schema *s;

    fld(&f[0], "id", FIELD_INT64, false);
    fld(&f[1], "v", FIELD_INT64, true);
    s = mkschema(1, f, 2, pk, 1, NULL);
    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        struct strbuf rows = STRBUF_INIT;
        char want[256], *got, *copy = xstrdup(cases[i].vals), *save = NULL;
        struct tab t;
        int id = 1;

        for (char *v = strtok_r(copy, ",", &save); v; v = strtok_r(NULL, ",", &save))
            strbuf_addf(&rows, "{\"id\":%d,\"v\":%s}\n{\"id\":%d,\"v\":null}\n", id, v, id + 1),
                id += 2;
        free(copy);
        tab_init(&t, s);
        tab_add(&t, s, rows.buf);
        got = run(&t, "{\"table\":\"t\",\"aggregates\":[{\"fn\":\"sum\",\"field\":\"v\","
                      "\"as\":\"s\"},{\"fn\":\"avg\",\"field\":\"v\",\"as\":\"a\"}]}");
        snprintf(want, sizeof(want), "{\"s\":%s,\"a\":%s}", cases[i].sum, cases[i].avg);
        ck_assert_msg(!strcmp(got, want), "%s: got %s want %s", cases[i].vals, got, want);
        free(got);
        tab_release(&t);
        strbuf_release(&rows);
    }
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Ordering and limits */

START_TEST(test_order_nulls_and_ties)
{
    struct schema *s = flights();
    struct tab t;

    tab_init(&t, s);
    tab_add(&t, s, FLIGHTS);
    /* Ascending: nulls last; ties in key order. */
    CHECK_RUN(&t, "{\"table\":\"f\",\"select\":[\"id\",\"delay\"],\"order_by\":[\"delay\"]}",
              "{\"id\":4,\"delay\":-5}\n{\"id\":1,\"delay\":10}\n{\"id\":5,\"delay\":10}\n"
              "{\"id\":3,\"delay\":30}\n{\"id\":2,\"delay\":null}\n{\"id\":6,\"delay\":null}");
    /* Descending: nulls first; ties still in key order. */
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"select\":[\"id\"],\"order_by\":[{\"field\":\"delay\","
              "\"dir\":\"desc\"}]}",
              "{\"id\":2}\n{\"id\":6}\n{\"id\":3}\n{\"id\":1}\n{\"id\":5}\n{\"id\":4}");
    CHECK_RUN(&t,
              "{\"table\":\"f\",\"select\":[\"id\"],\"order_by\":[{\"field\":\"origin\","
              "\"dir\":\"desc\"},{\"field\":\"dist\",\"dir\":\"desc\"}],\"limit\":4}",
              "{\"id\":3}\n{\"id\":6}\n{\"id\":1}\n{\"id\":4}");
    CHECK_RUN(&t, "{\"table\":\"f\",\"select\":[\"id\"],\"order_by\":[\"ok\",\"id\"]}",
              "{\"id\":2}\n{\"id\":5}\n{\"id\":1}\n{\"id\":4}\n{\"id\":3}\n{\"id\":6}");
    /* Without order_by: key order, cut at the limit. */
    CHECK_RUN(&t, "{\"table\":\"f\",\"select\":[\"id\"],\"limit\":2}", "{\"id\":1}\n{\"id\":2}");
    CHECK_RUN(&t, "{\"table\":\"f\",\"select\":[\"id\"],\"limit\":0}", "");
    CHECK_RUN(&t, "{\"table\":\"f\",\"select\":[\"id\"],\"order_by\":[\"delay\"],\"limit\":0}", "");
    tab_release(&t);
    schema_free(s);
}
END_TEST

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545F4914F6CDD1DULL;
}

/* A random flights table of n rows with few distinct values (many ties). */
static void random_flights(struct tab *t, const struct schema *s, int n)
{
    static const char *const origins[] = {"\"SFO\"", "\"LAX\"", "\"JFK\"", "null"};
    struct strbuf rows = STRBUF_INIT;

    for (int i = 0; i < n; i++) {
        strbuf_addf(&rows, "{\"id\":%d,\"ts\":%lld,\"origin\":%s,", i * 3 - 100,
                    (long long)(rnd() % 5) * 3600000 - 7200000, origins[rnd() % 4]);
        if (rnd() % 5)
            strbuf_addf(&rows, "\"delay\":%d,", (int)(rnd() % 7) - 3);
        if (rnd() % 4)
            strbuf_addf(&rows, "\"dist\":%g,", (double)(rnd() % 9) / 4);
        strbuf_addf(&rows, "\"ok\":%s}\n", rnd() % 3 ? (rnd() % 2 ? "true" : "false") : "null");
    }
    tab_add(t, s, rows.buf);
    strbuf_release(&rows);
}

/* With a limit, a top-k is exactly the prefix of the full sort. */
START_TEST(test_topk_is_sort_prefix)
{
    static const char *const orders[] = {
        "[\"delay\"]",
        "[{\"field\":\"delay\",\"dir\":\"desc\"}]",
        "[\"origin\",{\"field\":\"dist\",\"dir\":\"desc\"}]",
        "[{\"field\":\"ok\",\"dir\":\"desc\"},\"ts\",\"delay\"]",
        "[\"id\"]",
    };
    static const int limits[] = {0, 1, 2, 3, 10, 77, 199, 200, 1000};
    static const char *const grouped[] = {
        "\"group_by\":[\"origin\",\"ok\"],\"aggregates\":[{\"fn\":\"count\",\"as\":\"n\"},"
        "{\"fn\":\"avg\",\"field\":\"dist\",\"as\":\"a\"}],\"order_by\":[{\"field\":\"n\","
        "\"dir\":\"desc\"}]",
        "\"group_by\":[\"delay\"],\"time_bucket\":{\"field\":\"ts\",\"width\":\"2h\"},"
        "\"aggregates\":[{\"fn\":\"max\",\"field\":\"dist\",\"as\":\"m\"}],"
        "\"order_by\":[\"m\"]",
        "\"group_by\":[\"ok\",\"delay\"]",
    };
    struct schema *s = flights();
    struct tab t;

    rnd_state = 42;
    tab_init(&t, s);
    random_flights(&t, s, 200);
    for (int g = 0; g < 2; g++) {
        size_t n = g ? ST_ARRAY_SIZE(grouped) : ST_ARRAY_SIZE(orders);

        for (size_t i = 0; i < n; i++) {
            char q[1024], *full;

            if (g)
                snprintf(q, sizeof(q), "{\"table\":\"f\",%s,\"limit\":100000}", grouped[i]);
            else
                snprintf(q, sizeof(q),
                         "{\"table\":\"f\",\"select\":[\"id\",\"delay\"],\"order_by\":%s,"
                         "\"limit\":100000}",
                         orders[i]);
            full = run(&t, q);
            for (size_t k = 0; k < ST_ARRAY_SIZE(limits); k++) {
                char *got, *end = full;

                for (int r = 0; r < limits[k] && end; r++) {
                    end = strchr(end + (r ? 1 : 0), '\n');
                }
                snprintf(strstr(q, "\"limit\":"), 32, "\"limit\":%d}", limits[k]);
                got = run(&t, q);
                if (!limits[k])
                    ck_assert_str_eq(got, "");
                else if (end)
                    ck_assert_msg(strlen(got) == (size_t)(end - full) &&
                                      !strncmp(got, full, (size_t)(end - full)),
                                  "%s: not the prefix", q);
                else
                    ck_assert_str_eq(got, full);
                free(got);
                snprintf(strstr(q, "\"limit\":"), 32, "\"limit\":100000}");
            }
            free(full);
        }
    }
    tab_release(&t);
    schema_free(s);
}
END_TEST

START_TEST(test_limit_skip_and_more)
{
    struct schema *s = flights();
    struct query_stats st;
    struct query_exec_opts eo = {0};
    struct tab t;
    char *got;

    rnd_state = 7;
    tab_init(&t, s);
    random_flights(&t, s, 100);
    /* A plain query stops reading at its limit. */
    got = run_steps(&t, "{\"table\":\"f\",\"select\":[\"id\"],\"limit\":10}", NULL, &st, 0, NULL);
    ck_assert_uint_eq(st.rows_scanned, 10);
    ck_assert_uint_eq(st.rows_emitted, 10);
    ck_assert(st.more);
    free(got);
    /* With lookahead it reads on to learn whether more rows match. */
    eo.lookahead = true;
    got = run_steps(&t,
                    "{\"table\":\"f\",\"select\":[\"id\"],\"where\":{\"field\":\"id\",\"op\":\"<\","
                    "\"value\":-70},\"limit\":10}",
                    &eo, &st, 0, NULL);
    ck_assert_str_eq(got, "{\"id\":-100}\n{\"id\":-97}\n{\"id\":-94}\n{\"id\":-91}\n{\"id\":-88}\n"
                          "{\"id\":-85}\n{\"id\":-82}\n{\"id\":-79}\n{\"id\":-76}\n{\"id\":-73}");
    ck_assert_uint_eq(st.rows_scanned, 100);
    ck_assert(!st.more);
    free(got);
    got = run_steps(&t,
                    "{\"table\":\"f\",\"select\":[\"id\"],\"where\":{\"field\":\"id\",\"op\":\"<\","
                    "\"value\":-60},\"limit\":10}",
                    &eo, &st, 0, NULL);
    ck_assert_uint_eq(st.rows_scanned, 11);
    ck_assert(st.more);
    free(got);
    /* skip leaves out rows before the limit counts, sorted or not. */
    eo.lookahead = false;
    eo.skip = 3;
    got = run_steps(&t, "{\"table\":\"f\",\"select\":[\"id\"],\"limit\":2}", &eo, &st, 0, NULL);
    ck_assert_str_eq(got, "{\"id\":-91}\n{\"id\":-88}");
    free(got);
    got = run_steps(&t,
                    "{\"table\":\"f\",\"select\":[\"id\"],\"order_by\":[{\"field\":\"id\",\"dir\":"
                    "\"desc\"}],\"limit\":2}",
                    &eo, &st, 0, NULL);
    ck_assert_str_eq(got, "{\"id\":188}\n{\"id\":185}");
    ck_assert(st.more);
    ck_assert_uint_eq(st.rows_scanned, 100);
    free(got);
    {
        const char *gq = "{\"table\":\"f\",\"group_by\":[\"origin\"],\"aggregates\":[{\"fn\":"
                         "\"count\"}],\"select\":[\"origin\"],\"limit\":5}";
        char *all = run(&t, gq);

        got = run_steps(&t, gq, &eo, &st, 0, NULL);
        ck_assert_str_eq(got, strrchr(all, '\n') + 1);
        ck_assert(!strncmp(got, "{\"origin\":null,", 15));
        free(all);
    }
    ck_assert(!st.more);
    ck_assert_uint_eq(st.groups, 4);
    free(got);
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Bounded steps, failures, memory */

START_TEST(test_bounded_steps)
{
    static const char *const queries[] = {
        "{\"table\":\"f\",\"select\":[\"id\",\"origin\"],\"limit\":150}",
        "{\"table\":\"f\",\"select\":[\"id\",\"origin\"],\"order_by\":[\"delay\",{\"field\":"
        "\"origin\",\"dir\":\"desc\"}],\"limit\":37}",
        "{\"table\":\"f\",\"select\":[\"id\"],\"order_by\":[\"dist\"],\"limit\":100000}",
        "{\"table\":\"f\",\"group_by\":[\"origin\",\"delay\"],\"aggregates\":[{\"fn\":"
        "\"count\"},{\"fn\":\"count_distinct\",\"field\":\"dist\"},{\"fn\":\"min\",\"field\":"
        "\"origin\",\"as\":\"mo\"}],\"order_by\":[{\"field\":\"count\",\"dir\":\"desc\"}]}",
        "{\"table\":\"f\",\"aggregates\":[{\"fn\":\"sum\",\"field\":\"delay\"}]}",
        "{\"table\":\"f\",\"where\":{\"field\":\"ok\",\"op\":\"=\",\"value\":true},"
        "\"time_bucket\":{\"field\":\"ts\",\"width\":\"1h\"}}",
    };
    static const uint64_t budgets[] = {1, 2, 7, 64};
    struct schema *s = flights();
    struct tab t;

    rnd_state = 99;
    tab_init(&t, s);
    random_flights(&t, s, 300);
    for (size_t i = 0; i < ST_ARRAY_SIZE(queries); i++) {
        struct query_stats one, st;
        char *want = run_steps(&t, queries[i], NULL, &one, 0, NULL);

        ck_assert(strncmp(want, "ERROR", 5));
        for (size_t b = 0; b < ST_ARRAY_SIZE(budgets); b++) {
            unsigned nmore = 0;
            char *got = run_steps(&t, queries[i], NULL, &st, budgets[b], &nmore);

            ck_assert_msg(!strcmp(got, want), "%s with budget %llu differs", queries[i],
                          (unsigned long long)budgets[b]);
            ck_assert_uint_eq(st.rows_scanned, one.rows_scanned);
            ck_assert_uint_eq(st.rows_emitted, one.rows_emitted);
            /* Each step reads at most its budget: at least that many MOREs. */
            ck_assert_uint_ge((uint64_t)nmore * budgets[b] + budgets[b], st.rows_scanned);
            if (budgets[b] == 1)
                ck_assert_uint_ge(nmore + 1, st.rows_scanned);
            free(got);
        }
        free(want);
    }
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* An emit callback that answers ST_EAGAIN pauses after each row. */
START_TEST(test_emit_pause_and_failures)
{
    struct schema *s = flights();
    struct query_plan *p;
    struct tab t;
    struct src src = {&t, 0, false};
    struct query_source qs = {src_next, src_status, &src};
    struct out o;
    struct query_exec *q;
    struct err err;
    int steps = 0;

    tab_init(&t, s);
    tab_add(&t, s, FLIGHTS);
    p = parse_ok(s, "{\"table\":\"f\",\"select\":[\"id\"],\"order_by\":[\"id\"]}", NULL);
    memset(&o, 0, sizeof(o));
    o.p = p;
    o.pause = 1;
    strbuf_init(&o.sb, 0);
    q = query_exec_new(p, &qs, NULL, collect, &o);
    while (query_step(q, 1000, &err) == QUERY_MORE) {
        steps++;
        ck_assert_uint_eq(o.n, (size_t)steps);
    }
    /* The sixth row ends the query: DONE, not MORE. */
    ck_assert_int_eq(steps, 5);
    ck_assert_uint_eq(o.n, 6);
    query_exec_free(q);

    /* An emit failure fails the query with its status and message, for good. */
    strbuf_reset(&o.sb);
    o.n = 0;
    o.pause = 0;
    o.fail_at = 3;
    src.i = 0;
    q = query_exec_new(p, &qs, NULL, collect, &o);
    ck_assert_int_eq(query_step(q, 1000, &err), QUERY_ERROR);
    ck_assert_int_eq(err.code, ST_EIO);
    ck_assert_str_eq(err.msg, "client went away");
    memset(&err, 0, sizeof(err));
    ck_assert_int_eq(query_step(q, 1000, &err), QUERY_ERROR);
    ck_assert_str_eq(err.msg, "client went away");
    query_exec_free(q);

    /* A source failure is the query's failure; no partial aggregate is emitted. */
    query_plan_free(p);
    p = parse_ok(s, "{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count\"}]}", NULL);
    o.p = p;
    o.n = 0;
    o.fail_at = 0;
    src.i = 0;
    src.fail = true;
    ck_assert_int_eq(query_run(p, &qs, NULL, collect, &o, NULL, &err), ST_EIO);
    ck_assert_str_eq(err.msg, "cannot read segment 'x': disk on fire");
    ck_assert_uint_eq(o.n, 0);
    query_plan_free(p);
    strbuf_release(&o.sb);
    tab_release(&t);
    schema_free(s);
}
END_TEST

START_TEST(test_memory_limit)
{
    static const char *const queries[] = {
        "{\"table\":\"f\",\"group_by\":[\"id\"],\"aggregates\":[{\"fn\":\"count\"}]}",
        "{\"table\":\"f\",\"aggregates\":[{\"fn\":\"count_distinct\",\"field\":\"id\"}]}",
        "{\"table\":\"f\",\"select\":[\"id\",\"origin\"],\"order_by\":[\"ts\"],\"limit\":100000}",
    };
    struct schema *s = flights();
    struct query_exec_opts eo = {.mem_limit = 64 << 10};
    struct query_stats st;
    struct tab t;

    rnd_state = 5;
    tab_init(&t, s);
    random_flights(&t, s, 5000);
    for (size_t i = 0; i < ST_ARRAY_SIZE(queries); i++) {
        char *got = run_steps(&t, queries[i], &eo, &st, 0, NULL);

        ck_assert_msg(!strcmp(got, "ERROR query needs more than 65536 bytes of memory"), "%s: %s",
                      queries[i], got);
        ck_assert_uint_le(st.mem_peak, 64 << 10);
        free(got);
        /* The default limit is plenty. */
        got = run_steps(&t, queries[i], NULL, &st, 0, NULL);
        ck_assert(strncmp(got, "ERROR", 5));
        ck_assert_uint_gt(st.mem_peak, 64 << 10);
        free(got);
    }
    /* A top-k holds only k rows, so it fits where the full sort did not. */
    {
        char *got = run_steps(
            &t,
            "{\"table\":\"f\",\"select\":[\"id\",\"origin\"],\"order_by\":[\"ts\"],\"limit\":10}",
            &eo, &st, 0, NULL);

        ck_assert(strncmp(got, "ERROR", 5));
        ck_assert_uint_lt(st.mem_peak, 8 << 10);
        free(got);
    }
    tab_release(&t);
    schema_free(s);
}
END_TEST

/* Rows of older schema versions read as the newest schema says. */
START_TEST(test_schema_versions)
{
    static const char *const pk[] = {"id"};
    struct field f1[3], f2[4];
    struct schema *v1, *v2;
    struct value v;
    struct tab t;

    fld(&f1[0], "id", FIELD_INT64, false);
    fld(&f1[1], "val", FIELD_INT64, false);
    fld(&f1[2], "name", FIELD_STRING, false);
    v1 = mkschema(1, f1, 3, pk, 1, NULL);
    fld(&f2[0], "id", FIELD_INT64, false);
    fld(&f2[1], "extra", FIELD_STRING, false);
    f2[1].has_default = true;
    f2[1].def.type = FIELD_STRING;
    f2[1].def.u.s.ptr = "dflt";
    f2[1].def.u.s.len = 4;
    fld(&f2[2], "name", FIELD_STRING, true);
    fld(&f2[3], "val", FIELD_FLOAT64, false); /* widened */
    v2 = mkschema(2, f2, 4, pk, 1, NULL);
    tab_init(&t, v2);
    tab_add(&t, v1, "{\"id\":1,\"val\":5,\"name\":\"a\"}\n");
    tab_add(&t, v2, "{\"id\":2,\"val\":2.5,\"name\":null,\"extra\":\"x\"}\n");
    tab_add(&t, v1, "{\"id\":3,\"val\":-1,\"name\":\"c\"}\n");
    CHECK_RUN(&t, "{\"table\":\"t\"}",
              "{\"id\":1,\"extra\":\"dflt\",\"name\":\"a\",\"val\":5.0}\n"
              "{\"id\":2,\"extra\":\"x\",\"name\":null,\"val\":2.5}\n"
              "{\"id\":3,\"extra\":\"dflt\",\"name\":\"c\",\"val\":-1.0}");
    CHECK_RUN(&t,
              "{\"table\":\"t\",\"where\":{\"field\":\"extra\",\"op\":\"=\",\"value\":\"dflt\"},"
              "\"aggregates\":[{\"fn\":\"sum\",\"field\":\"val\"},{\"fn\":\"count\"}]}",
              "{\"sum_val\":4.0,\"count\":2}");
    CHECK_RUN(&t,
              "{\"table\":\"t\",\"group_by\":[\"extra\"],\"aggregates\":[{\"fn\":\"max\","
              "\"field\":\"val\"}]}",
              "{\"extra\":\"dflt\",\"max_val\":5.0}\n{\"extra\":\"x\",\"max_val\":2.5}");
    CHECK_RUN(&t, "{\"table\":\"t\",\"select\":[\"id\"],\"order_by\":[\"val\"]}",
              "{\"id\":3}\n{\"id\":2}\n{\"id\":1}");
    query_row_value(v1, t.rows[0], v2, 1, &v);
    ck_assert(!v.is_null && v.type == FIELD_STRING && v.u.s.len == 4);
    query_row_value(v1, t.rows[0], v2, 3, &v);
    ck_assert(v.type == FIELD_FLOAT64 && v.u.f == 5.0);
    tab_release(&t);
    schema_free(v1);
    schema_free(v2);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Key and time ranges */

static struct schema *composite(void)
{
    static const char *const pk[] = {"k1", "k2"};
    struct field f[3];

    fld(&f[0], "k1", FIELD_STRING, false);
    fld(&f[1], "k2", FIELD_INT64, false);
    fld(&f[2], "v", FIELD_INT64, true);
    return mkschema(1, f, 3, pk, 2, NULL);
}

/* Encoded key bytes of (k1) or (k1, k2) into buf; returns the length. */
static size_t enc(const char *k1, const int64_t *k2, uint8_t *buf)
{
    struct value v[2];

    memset(v, 0, sizeof(v));
    v[0].type = FIELD_STRING;
    v[0].u.s.ptr = k1;
    v[0].u.s.len = (uint32_t)strlen(k1);
    v[1].type = FIELD_INT64;
    v[1].u.i = k2 ? *k2 : 0;
    return key_encode(v, k2 ? 2 : 1, buf, 64);
}

static void assert_bytes(const uint8_t *got, size_t glen, const uint8_t *want, size_t wlen,
                         const char *what)
{
    ck_assert_msg(got && glen == wlen && !memcmp(got, want, wlen), "%s differs", what);
}

START_TEST(test_key_range)
{
    struct schema *s = composite();
    struct query_plan *p;
    uint8_t a[64], b[64];
    size_t alen, blen;
    int64_t five = 5, two = 2, six = 6;

#define PLAN(w) (p = parse_ok(s, "{\"table\":\"t\",\"where\":" w "}", NULL))
    /* Both key fields fixed: a point lookup. */
    PLAN("{\"and\":[{\"field\":\"k2\",\"op\":\"=\",\"value\":5},{\"field\":\"k1\",\"op\":\"in\","
         "\"value\":[\"a\"]},{\"field\":\"v\",\"op\":\">\",\"value\":1}]}");
    alen = enc("a", &five, a);
    ck_assert(p->keys.point && !p->keys.empty && p->keys.hi_incl);
    assert_bytes(p->keys.lo, p->keys.lo_len, a, alen, "point lo");
    assert_bytes(p->keys.hi, p->keys.hi_len, a, alen, "point hi");
    query_plan_free(p);
    /* The leading field fixed: every key that starts with it. */
    PLAN("{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"}");
    alen = enc("a", NULL, a);
    memcpy(b, a, alen);
    b[alen - 1]++;
    ck_assert(!p->keys.point && !p->keys.empty && !p->keys.hi_incl);
    assert_bytes(p->keys.lo, p->keys.lo_len, a, alen, "prefix lo");
    assert_bytes(p->keys.hi, p->keys.hi_len, b, alen, "prefix hi");
    query_plan_free(p);
    /* k1 fixed, k2 in [2, 5]: [enc(a,2), enc(a,6)). */
    PLAN("{\"and\":[{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"},{\"and\":[{\"field\":\"k2\","
         "\"op\":\"<=\",\"value\":5},{\"field\":\"k2\",\"op\":\">=\",\"value\":2}]}]}");
    alen = enc("a", &two, a);
    blen = enc("a", &six, b);
    assert_bytes(p->keys.lo, p->keys.lo_len, a, alen, "range lo");
    assert_bytes(p->keys.hi, p->keys.hi_len, b, blen, "range hi");
    query_plan_free(p);
    /* k1 fixed, k2 > 5: from enc(a,6) to the end of a. */
    PLAN("{\"and\":[{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"},{\"field\":\"k2\",\"op\":"
         "\">\",\"value\":5}]}");
    alen = enc("a", &six, a);
    assert_bytes(p->keys.lo, p->keys.lo_len, a, alen, "gt lo");
    blen = enc("a", NULL, b);
    b[blen - 1]++;
    assert_bytes(p->keys.hi, p->keys.hi_len, b, blen, "gt hi");
    query_plan_free(p);
    /* A prefix of the leading field: ["ab", "ac"). */
    PLAN("{\"field\":\"k1\",\"op\":\"prefix\",\"value\":\"ab\"}");
    assert_bytes(p->keys.lo, p->keys.lo_len, (const uint8_t *)"ab", 2, "prefix op lo");
    assert_bytes(p->keys.hi, p->keys.hi_len, (const uint8_t *)"ac", 2, "prefix op hi");
    query_plan_free(p);
    /* k1 > "b": past every key starting with "b". */
    PLAN("{\"field\":\"k1\",\"op\":\">\",\"value\":\"b\"}");
    alen = enc("b", NULL, a);
    a[alen - 1]++;
    assert_bytes(p->keys.lo, p->keys.lo_len, a, alen, "k1 gt lo");
    ck_assert_ptr_null(p->keys.hi);
    query_plan_free(p);
    /* in: from the least to past the greatest. */
    PLAN("{\"field\":\"k1\",\"op\":\"in\",\"value\":[\"b\",\"a\",\"b\"]}");
    alen = enc("a", NULL, a);
    blen = enc("b", NULL, b);
    b[blen - 1]++;
    assert_bytes(p->keys.lo, p->keys.lo_len, a, alen, "in lo");
    assert_bytes(p->keys.hi, p->keys.hi_len, b, blen, "in hi");
    ck_assert_uint_eq(p->where->nlist, 2);
    query_plan_free(p);
    /* or, not, a non-leading field, != and contains: no bound at all. */
    {
        static const char *const none[] = {
            ("{\"or\":[{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"},{\"field\":\"k1\",\"op\":"
             "\"=\",\"value\":\"b\"}]}"),
            "{\"not\":{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"}}",
            "{\"not\":{\"field\":\"k1\",\"op\":\"!=\",\"value\":\"a\"}}",
            "{\"field\":\"k2\",\"op\":\"=\",\"value\":5}",
            "{\"field\":\"k1\",\"op\":\"!=\",\"value\":\"a\"}",
            "{\"field\":\"k1\",\"op\":\"contains\",\"value\":\"a\"}",
            "{\"field\":\"k1\",\"op\":\"prefix\",\"value\":\"\"}",
            "{\"field\":\"k1\",\"op\":\"is_null\"}",
        };
        for (size_t i = 0; i < ST_ARRAY_SIZE(none); i++) {
            char q[512];

            snprintf(q, sizeof(q), "{\"table\":\"t\",\"where\":%s}", none[i]);
            p = parse_ok(s, q, NULL);
            ck_assert_msg(!p->keys.lo && !p->keys.hi && !p->keys.empty && !p->keys.point, "%s",
                          none[i]);
            query_plan_free(p);
        }
    }
    /* k1 fixed and (k2 = 1 or k2 = 2): the k1 prefix only. */
    PLAN("{\"and\":[{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"},{\"or\":[{\"field\":\"k2\","
         "\"op\":\"=\",\"value\":1},{\"field\":\"k2\",\"op\":\"=\",\"value\":2}]}]}");
    alen = enc("a", NULL, a);
    assert_bytes(p->keys.lo, p->keys.lo_len, a, alen, "or lo");
    ck_assert(!p->keys.point);
    query_plan_free(p);
    /* Contradictions: nothing to read. */
    {
        static const char *const empty[] = {
            "{\"and\":[{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"},{\"field\":\"k1\","
            "\"op\":\"=\",\"value\":\"b\"}]}",
            "{\"and\":[{\"field\":\"k1\",\"op\":\"=\",\"value\":\"a\"},{\"field\":\"k2\","
            "\"op\":\">\",\"value\":5},{\"field\":\"k2\",\"op\":\"<\",\"value\":6}]}",
            "{\"and\":[{\"field\":\"k1\",\"op\":\">\",\"value\":\"b\"},{\"field\":\"k1\","
            "\"op\":\"prefix\",\"value\":\"a\"}]}",
            "{\"and\":[{\"field\":\"k1\",\"op\":\"=\",\"value\":\"b\"},{\"field\":\"k1\","
            "\"op\":\"<\",\"value\":\"b\"}]}",
            "{\"field\":\"k2\",\"op\":\"=\",\"value\":2.5}",
        };
        for (size_t i = 0; i < ST_ARRAY_SIZE(empty); i++) {
            char q[512];

            snprintf(q, sizeof(q), "{\"table\":\"t\",\"where\":%s}", empty[i]);
            p = parse_ok(s, q, NULL);
            ck_assert_msg(p->keys.empty, "%s", empty[i]);
            query_plan_free(p);
        }
    }
    /* A float literal on an int64 key: = is empty, > gives no (a safe) bound. */
    {
        static const char *const pk1[] = {"id"};
        struct field f[1];
        struct schema *s1;

        fld(&f[0], "id", FIELD_INT64, false);
        s1 = mkschema(1, f, 1, pk1, 1, NULL);
        p = parse_ok(
            s1, "{\"table\":\"t\",\"where\":{\"field\":\"id\",\"op\":\"=\",\"value\":2.5}}", NULL);
        ck_assert(p->keys.empty);
        query_plan_free(p);
        p = parse_ok(
            s1, "{\"table\":\"t\",\"where\":{\"field\":\"id\",\"op\":\">\",\"value\":2.5}}", NULL);
        ck_assert(!p->keys.empty && !p->keys.lo && !p->keys.hi);
        query_plan_free(p);
        p = parse_ok(
            s1, "{\"table\":\"t\",\"where\":{\"field\":\"id\",\"op\":\"=\",\"value\":2.0}}", NULL);
        ck_assert(p->keys.point);
        query_plan_free(p);
        p = parse_ok(s1,
                     "{\"table\":\"t\",\"where\":{\"field\":\"id\",\"op\":\">\",\"value\":"
                     "9223372036854775807}}",
                     NULL);
        ck_assert(p->keys.empty);
        query_plan_free(p);
        schema_free(s1);
    }
#undef PLAN
    schema_free(s);
}
END_TEST

struct keycheck {
    const struct query_plan *p; /* the plan with the range */
    unsigned n;                 /* rows seen */
};

static enum st_status check_key_in_range(void *ctx, const struct query_row *r, struct err *err)
{
    struct keycheck *c = ctx;
    const struct query_key_range *k = &c->p->keys;
    uint8_t key[256];
    size_t len = key_encode_row(r->row_schema, r->row, key, sizeof(key));

    ST_UNUSED(err);
    ck_assert(len <= sizeof(key));
    ck_assert(!k->empty);
    if (k->lo)
        ck_assert(key_compare(key, len, k->lo, k->lo_len) >= 0);
    if (k->hi) {
        int c2 = key_compare(key, len, k->hi, k->hi_len);

        ck_assert(k->hi_incl ? c2 <= 0 : c2 < 0);
    }
    c->n++;
    return ST_OK;
}

/* Random filters: every matching row's key lies in the derived range. */
START_TEST(test_key_range_is_safe)
{
    static const char *const k1s[] = {"", "a", "ab", "abc", "b", "b\\u0001", "ba", "\\u00ff"};
    static const char *const ops[] = {"=", "!=", "<", "<=", ">", ">=", "prefix", "in"};
    struct schema *s = composite();
    struct strbuf rows = STRBUF_INIT, q = STRBUF_INIT;
    struct tab t;
    unsigned matched = 0, bounded = 0;

    rnd_state = 1234;
    for (size_t i = 0; i < ST_ARRAY_SIZE(k1s); i++)
        for (int k2 = -3; k2 <= 3; k2++)
            strbuf_addf(&rows, "{\"k1\":\"%s\",\"k2\":%d,\"v\":%d}\n", k1s[i], k2, k2 * 2);
    tab_init(&t, s);
    tab_add(&t, s, rows.buf);
    for (int round = 0; round < 400; round++) {
        int nconj = 1 + (int)(rnd() % 3);
        struct query_plan *p;
        struct src src = {&t, 0, false};
        struct query_source qs = {src_next, NULL, &src};
        struct keycheck kc;
        struct err err;

        strbuf_reset(&q);
        strbuf_addstr(&q, "{\"table\":\"t\",\"select\":[\"k1\"],\"limit\":100000,\"where\":"
                          "{\"and\":[");
        for (int c = 0; c < nconj; c++) {
            const char *op = ops[rnd() % ST_ARRAY_SIZE(ops)];
            bool on_k1 = rnd() % 3 != 0, in = !strcmp(op, "in");
            int wrap = rnd() % 6 ? 0 : 1 + (int)(rnd() % 2); /* 1: not, 2: or */

            if (c)
                strbuf_addch(&q, ',');
            strbuf_addstr(&q, wrap == 1 ? "{\"not\":" : wrap == 2 ? "{\"or\":[" : "");
            if (!on_k1 && !strcmp(op, "prefix"))
                op = "=";
            strbuf_addf(&q, "{\"field\":\"%s\",\"op\":\"%s\",\"value\":", on_k1 ? "k1" : "k2", op);
            if (in)
                strbuf_addch(&q, '[');
            for (int e = 0; e < (in ? 2 : 1); e++) {
                if (e)
                    strbuf_addch(&q, ',');
                if (on_k1)
                    strbuf_addf(&q, "\"%s\"", k1s[rnd() % ST_ARRAY_SIZE(k1s)]);
                else
                    strbuf_addf(&q, "%d", (int)(rnd() % 9) - 4);
            }
            strbuf_addstr(&q, in ? "]}" : "}");
            strbuf_addstr(&q, wrap == 1 ? "}" : wrap == 2 ? "]}" : "");
        }
        strbuf_addstr(&q, "]}}");
        p = parse_ok(s, q.buf, NULL);
        kc.p = p;
        kc.n = 0;
        ck_assert_int_eq(query_run(p, &qs, NULL, check_key_in_range, &kc, NULL, &err), ST_OK);
        matched += kc.n;
        bounded += p->keys.lo || p->keys.hi || p->keys.empty;
        query_plan_free(p);
    }
    ck_assert_uint_gt(matched, 100);
    ck_assert_uint_gt(bounded, 50);
    strbuf_release(&rows);
    strbuf_release(&q);
    tab_release(&t);
    schema_free(s);
}
END_TEST

START_TEST(test_time_range)
{
    static const struct {
        const char *where;
        bool bounded, empty;
        int64_t lo, hi;
    } cases[] = {
        {"{\"and\":[{\"field\":\"ts\",\"op\":\">=\",\"value\":1000},{\"field\":\"ts\",\"op\":"
         "\"<\",\"value\":5000}]}",
         true, false, 1000, 4999},
        {"{\"field\":\"ts\",\"op\":\"=\",\"value\":\"2001-01-01T00:00:00Z\"}", true, false,
         978307200000, 978307200000},
        {"{\"field\":\"ts\",\"op\":\">\",\"value\":\"1969-12-31T23:59:59.999Z\"}", true, false, 0,
         INT64_MAX},
        {"{\"field\":\"ts\",\"op\":\"<=\",\"value\":-5}", true, false, INT64_MIN, -5},
        {"{\"field\":\"ts\",\"op\":\"in\",\"value\":[300,100,200]}", true, false, 100, 300},
        {"{\"and\":[{\"field\":\"ts\",\"op\":\">\",\"value\":10},{\"field\":\"ts\",\"op\":\"<\","
         "\"value\":11}]}",
         true, true, 0, 0},
        {"{\"and\":[{\"field\":\"delay\",\"op\":\"=\",\"value\":1},{\"and\":[{\"field\":\"ts\","
         "\"op\":\"<\",\"value\":10},{\"field\":\"ts\",\"op\":\">=\",\"value\":-10}]}]}",
         true, false, -10, 9},
        {"{\"or\":[{\"field\":\"ts\",\"op\":\">=\",\"value\":1000},{\"field\":\"delay\","
         "\"op\":\"=\",\"value\":1}]}",
         false, false, INT64_MIN, INT64_MAX},
        {"{\"not\":{\"field\":\"ts\",\"op\":\"<\",\"value\":1000}}", false, false, INT64_MIN,
         INT64_MAX},
        {"{\"field\":\"ts\",\"op\":\"!=\",\"value\":1000}", false, false, INT64_MIN, INT64_MAX},
        {"{\"field\":\"ts\",\"op\":\"<\",\"value\":-9223372036854775808}", true, true, 0, 0},
    };
    struct schema *s = flights();

    for (size_t i = 0; i < ST_ARRAY_SIZE(cases); i++) {
        char q[512];
        struct query_plan *p;

        snprintf(q, sizeof(q), "{\"table\":\"f\",\"where\":%s}", cases[i].where);
        p = parse_ok(s, q, NULL);
        ck_assert_msg(p->time.bounded == cases[i].bounded && p->time.empty == cases[i].empty,
                      "%s: bounded %d empty %d", cases[i].where, p->time.bounded, p->time.empty);
        if (!cases[i].empty) {
            ck_assert_int_eq(p->time.lo, cases[i].lo);
            ck_assert_int_eq(p->time.hi, cases[i].hi);
        }
        query_plan_free(p);
    }
    schema_free(s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Differential test against SQLite */

#ifdef ST_HAVE_SQLITE3

/*
 * The table: id (key), ts (timestamp, nullable), s (string), i (int64),
 * f (float64: multiples of 0.25, so every sum is exact in any order), b
 * (bool). In SQLite: INTEGER, INTEGER (ms), TEXT, INTEGER, REAL, INTEGER
 * (0/1). The contract's semantics map onto SQLite's as follows:
 *   !=            <>
 *   in            IN (...)
 *   prefix p      substr(s, 1, length(p)) = p   (characters of valid UTF-8)
 *   contains p    instr(s, p) > 0
 *   is_null       IS NULL
 *   bool literal  1 / 0; bool results compare as 0 / 1
 *   time_bucket   ts - (((ts % w) + w) % w)     (floor, also below 0)
 *   count_distinct  count(DISTINCT x)
 *   order_by asc  ASC NULLS LAST, desc DESC NULLS FIRST, then the tie
 *                 order: id for plain rows, the group keys ascending
 *                 nulls last for groups
 *   no order_by   ORDER BY id (plain), the group keys (grouped)
 *   default limit LIMIT 1000
 * Strings compare with BINARY collation (memcmp), as the contract says;
 * an integer literal against a REAL column and a REAL literal against an
 * INTEGER column compare by value in both.
 */
#define DIFF_ROWS    2500
#define DIFF_QUERIES 400

static const char *const diff_strings[] = {"",   "a", "ab", "abc",          "b",  "B", "ba",
                                           "zz", "é", "éa", "\xe2\x82\xac", "a b"};
static const char *const diff_fields[] = {"id", "ts", "s", "i", "f", "b"};

enum { DF_ID, DF_TS, DF_S, DF_I, DF_F, DF_B };

struct diffq {
    struct strbuf js;  /* the query as JSON */
    struct strbuf sql; /* the same in SQL */
};

/* Appends the same literal for field to both texts. */
static void diff_literal(struct diffq *d, int field)
{
    char buf[64];
    long k;

    switch (field) {
    case DF_ID:
        snprintf(buf, sizeof(buf), "%d", (int)(rnd() % (DIFF_ROWS + 20)) - 10);
        break;
    case DF_TS:
        snprintf(buf, sizeof(buf), "%lld", (long long)(rnd() % 518400000) - 259200000);
        break;
    case DF_I:
        if (rnd() % 5 == 0)
            snprintf(buf, sizeof(buf), "%d.5", (int)(rnd() % 120) - 60);
        else
            snprintf(buf, sizeof(buf), "%d", (int)(rnd() % 120) - 60);
        break;
    case DF_F:
        k = (long)(rnd() % 161) - 80;
        if (rnd() % 3 == 0)
            snprintf(buf, sizeof(buf), "%ld", k / 4);
        else
            snprintf(buf, sizeof(buf), "%.2f", (double)k / 4);
        break;
    case DF_B:
        k = (long)(rnd() % 2);
        strbuf_addstr(&d->js, k ? "true" : "false");
        strbuf_addstr(&d->sql, k ? "1" : "0");
        return;
    case DF_S: {
        const char *str = diff_strings[rnd() % ST_ARRAY_SIZE(diff_strings)];

        strbuf_add_json_str(&d->js, str, strlen(str));
        strbuf_addf(&d->sql, "'%s'", str);
        return;
    }
    }
    strbuf_addstr(&d->js, buf);
    strbuf_addstr(&d->sql, buf);
}

static void diff_pred(struct diffq *d)
{
    static const char *const cmp[] = {"=", "!=", "<", "<=", ">", ">="};
    int field = (int)(rnd() % ST_ARRAY_SIZE(diff_fields));
    const char *name = diff_fields[field];
    unsigned kind = (unsigned)(rnd() % (field == DF_S ? 10 : 8));

    strbuf_addf(&d->js, "{\"field\":\"%s\",\"op\":", name);
    if (kind < 6) {
        strbuf_addf(&d->js, "\"%s\",\"value\":", cmp[kind]);
        strbuf_addf(&d->sql, "(%s %s ", name, kind == 1 ? "<>" : cmp[kind]);
        diff_literal(d, field);
        strbuf_addstr(&d->sql, ")");
    } else if (kind == 6) {
        int n = 1 + (int)(rnd() % 4);

        strbuf_addstr(&d->js, "\"in\",\"value\":[");
        strbuf_addf(&d->sql, "(%s IN (", name);
        for (int i = 0; i < n; i++) {
            if (i) {
                strbuf_addch(&d->js, ',');
                strbuf_addch(&d->sql, ',');
            }
            diff_literal(d, field);
        }
        strbuf_addstr(&d->js, "]");
        strbuf_addstr(&d->sql, "))");
    } else if (kind == 7) {
        strbuf_addstr(&d->js, "\"is_null\"");
        strbuf_addf(&d->sql, "(%s IS NULL)", name);
    } else {
        const char *str = diff_strings[rnd() % ST_ARRAY_SIZE(diff_strings)];

        strbuf_addf(&d->js, "\"%s\",\"value\":", kind == 8 ? "prefix" : "contains");
        strbuf_add_json_str(&d->js, str, strlen(str));
        if (kind == 8)
            strbuf_addf(&d->sql, "(substr(s, 1, length('%s')) = '%s')", str, str);
        else
            strbuf_addf(&d->sql, "(instr(s, '%s') > 0)", str);
    }
    strbuf_addch(&d->js, '}');
}

static void diff_filter(struct diffq *d, int depth)
{
    unsigned kind = depth >= 3 ? 0 : (unsigned)(rnd() % 5);

    if (kind <= 1) {
        diff_pred(d);
    } else if (kind == 4) {
        strbuf_addstr(&d->js, "{\"not\":");
        strbuf_addstr(&d->sql, "(NOT ");
        diff_filter(d, depth + 1);
        strbuf_addstr(&d->js, "}");
        strbuf_addstr(&d->sql, ")");
    } else {
        int n = (int)(rnd() % 4);
        const char *op = kind == 2 ? "and" : "or";

        strbuf_addf(&d->js, "{\"%s\":[", op);
        strbuf_addch(&d->sql, '(');
        if (!n)
            strbuf_addstr(&d->sql, kind == 2 ? "1" : "0");
        for (int i = 0; i < n; i++) {
            if (i) {
                strbuf_addch(&d->js, ',');
                strbuf_addstr(&d->sql, kind == 2 ? " AND " : " OR ");
            }
            diff_filter(d, depth + 1);
        }
        strbuf_addstr(&d->js, "]}");
        strbuf_addch(&d->sql, ')');
    }
}

/* A value as comparable text: N, I<int>, F<double>, S<bytes>. */
static void canon_value(struct strbuf *sb, const struct value *v)
{
    if (v->is_null) {
        strbuf_addstr(sb, "N");
        return;
    }
    switch (v->type) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        strbuf_addf(sb, "I%lld", (long long)v->u.i);
        return;
    case FIELD_BOOL:
        strbuf_addf(sb, "I%d", v->u.b ? 1 : 0);
        return;
    case FIELD_FLOAT64:
        strbuf_addf(sb, "F%.17g", v->u.f == 0 ? 0.0 : v->u.f);
        return;
    case FIELD_STRING:
    case FIELD_JSON:
        strbuf_addch(sb, 'S');
        strbuf_add(sb, v->u.s.ptr, v->u.s.len);
        return;
    }
}

static enum st_status canon_row(void *ctx, const struct query_row *r, struct err *err)
{
    struct strbuf *sb = ctx;

    ST_UNUSED(err);
    for (uint32_t i = 0; i < r->ncols; i++) {
        strbuf_addch(sb, i ? '|' : '[');
        canon_value(sb, &r->vals[i]);
    }
    strbuf_addstr(sb, "]\n");
    return ST_OK;
}

static void sqlite_rows(sqlite3 *db, const char *sql, struct strbuf *sb)
{
    sqlite3_stmt *st;
    int rc;

    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int n = sqlite3_column_count(st);

        for (int i = 0; i < n; i++) {
            strbuf_addch(sb, i ? '|' : '[');
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_NULL:
                strbuf_addstr(sb, "N");
                break;
            case SQLITE_INTEGER:
                strbuf_addf(sb, "I%lld", (long long)sqlite3_column_int64(st, i));
                break;
            case SQLITE_FLOAT: {
                double f = sqlite3_column_double(st, i);

                strbuf_addf(sb, "F%.17g", f == 0 ? 0.0 : f);
                break;
            }
            default:
                strbuf_addch(sb, 'S');
                strbuf_add(sb, sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
                break;
            }
        }
        strbuf_addstr(sb, "]\n");
    }
    ck_assert_msg(rc == SQLITE_DONE, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
}

static void diff_order_dir(struct diffq *d, const char *js_name, const char *sql_name)
{
    bool desc = rnd() % 2;

    strbuf_addf(&d->js, "{\"field\":\"%s\",\"dir\":\"%s\"}", js_name, desc ? "desc" : "asc");
    strbuf_addf(&d->sql, "%s %s", sql_name, desc ? "DESC NULLS FIRST" : "ASC NULLS LAST");
}

static void diff_limit(struct diffq *d)
{
    static const int limits[] = {-1, 0, 1, 3, 10, 50, 700, 100000};
    int l = limits[rnd() % ST_ARRAY_SIZE(limits)];

    if (l >= 0)
        strbuf_addf(&d->js, ",\"limit\":%d", l);
    strbuf_addf(&d->sql, " LIMIT %d", l >= 0 ? l : 1000);
}

static void diff_plain(struct diffq *d)
{
    bool used[6] = {false};
    int nsel = 1 + (int)(rnd() % 4), nord = (int)(rnd() % 3);

    strbuf_addstr(&d->js, "{\"table\":\"t\",\"select\":[");
    strbuf_addstr(&d->sql, "SELECT ");
    for (int i = 0; i < nsel; i++) {
        int fi = (int)(rnd() % 6);

        if (used[fi])
            continue;
        used[fi] = true;
        if (d->js.buf[d->js.len - 1] != '[') {
            strbuf_addch(&d->js, ',');
            strbuf_addstr(&d->sql, ", ");
        }
        strbuf_addf(&d->js, "\"%s\"", diff_fields[fi]);
        strbuf_addstr(&d->sql, diff_fields[fi]);
    }
    strbuf_addstr(&d->js, "]");
    strbuf_addstr(&d->sql, " FROM t");
    if (rnd() % 4) {
        strbuf_addstr(&d->js, ",\"where\":");
        strbuf_addstr(&d->sql, " WHERE ");
        diff_filter(d, 0);
    }
    strbuf_addstr(&d->sql, " ORDER BY ");
    if (nord) {
        strbuf_addstr(&d->js, ",\"order_by\":[");
        for (int i = 0; i < nord; i++) {
            const char *f = diff_fields[rnd() % 6];

            if (i) {
                strbuf_addch(&d->js, ',');
                strbuf_addstr(&d->sql, ", ");
            }
            diff_order_dir(d, f, f);
        }
        strbuf_addstr(&d->js, "]");
        strbuf_addstr(&d->sql, ", ");
    }
    strbuf_addstr(&d->sql, "id");
    diff_limit(d);
    strbuf_addch(&d->js, '}');
}

static void diff_grouped(struct diffq *d)
{
    static const char *const keys[] = {"s", "i", "b"};
    static const char *const widths[] = {"1s", "90s", "1h", "1d", "7d"};
    static const int64_t width_ms[] = {1000, 90000, 3600000, 86400000, 7 * 86400000LL};
    static const char *const fns[] = {"count", "sum", "min", "max", "avg", "count_distinct"};
    const char *gk[2];
    int ngk = (int)(rnd() % 3), nagg = (int)(rnd() % 4), nord = (int)(rnd() % 3), nnames = 0;
    int bucket = rnd() % 3 == 0 ? (int)(rnd() % ST_ARRAY_SIZE(widths)) : -1;
    char names[8][16];

    if (!ngk && bucket < 0 && !nagg)
        nagg = 1;
    if (ngk == 2) {
        gk[0] = keys[rnd() % 3];
        do
            gk[1] = keys[rnd() % 3];
        while (gk[1] == gk[0]);
    } else if (ngk == 1) {
        gk[0] = keys[rnd() % 3];
    }
    strbuf_addstr(&d->js, "{\"table\":\"t\"");
    strbuf_addstr(&d->sql, "SELECT ");
    if (ngk) {
        strbuf_addstr(&d->js, ",\"group_by\":[");
        for (int i = 0; i < ngk; i++) {
            strbuf_addf(&d->js, "%s\"%s\"", i ? "," : "", gk[i]);
            strbuf_addf(&d->sql, "%s%s", i ? ", " : "", gk[i]);
            st_strlcpy(names[nnames++], gk[i], 16);
        }
        strbuf_addstr(&d->js, "]");
    }
    if (bucket >= 0) {
        strbuf_addf(&d->js, ",\"time_bucket\":{\"field\":\"ts\",\"width\":\"%s\",\"as\":\"bk\"}",
                    widths[bucket]);
        strbuf_addf(&d->sql, "%s(ts - (((ts %% %lld) + %lld) %% %lld)) AS bk", ngk ? ", " : "",
                    (long long)width_ms[bucket], (long long)width_ms[bucket],
                    (long long)width_ms[bucket]);
        st_strlcpy(names[nnames++], "bk", 16);
    }
    if (nagg) {
        strbuf_addstr(&d->js, ",\"aggregates\":[");
        for (int a = 0; a < nagg; a++) {
            int fn = (int)(rnd() % ST_ARRAY_SIZE(fns));
            const char *field;

            if (fn == 1 || fn == 4)
                field = rnd() % 2 ? "i" : "f";
            else
                field = diff_fields[rnd() % 6];
            if (a)
                strbuf_addch(&d->js, ',');
            if (nnames)
                strbuf_addstr(&d->sql, ", ");
            snprintf(names[nnames], 16, "a%d", a);
            if (fn == 0 && rnd() % 2) {
                strbuf_addf(&d->js, "{\"fn\":\"count\",\"as\":\"a%d\"}", a);
                strbuf_addf(&d->sql, "count(*) AS a%d", a);
            } else {
                strbuf_addf(&d->js, "{\"fn\":\"%s\",\"field\":\"%s\",\"as\":\"a%d\"}", fns[fn],
                            field, a);
                if (fn == 5)
                    strbuf_addf(&d->sql, "count(DISTINCT %s) AS a%d", field, a);
                else
                    strbuf_addf(&d->sql, "%s(%s) AS a%d", fns[fn], field, a);
            }
            nnames++;
        }
        strbuf_addstr(&d->js, "]");
    }
    strbuf_addstr(&d->sql, " FROM t");
    if (rnd() % 3) {
        strbuf_addstr(&d->js, ",\"where\":");
        strbuf_addstr(&d->sql, " WHERE ");
        diff_filter(d, 0);
    }
    if (ngk || bucket >= 0) {
        strbuf_addstr(&d->sql, " GROUP BY ");
        for (int i = 0; i < ngk; i++)
            strbuf_addf(&d->sql, "%s%s", i ? ", " : "", gk[i]);
        if (bucket >= 0)
            strbuf_addf(&d->sql, "%s(ts - (((ts %% %lld) + %lld) %% %lld))", ngk ? ", " : "",
                        (long long)width_ms[bucket], (long long)width_ms[bucket],
                        (long long)width_ms[bucket]);
    }
    if (nord || ngk || bucket >= 0)
        strbuf_addstr(&d->sql, " ORDER BY ");
    if (nord) {
        strbuf_addstr(&d->js, ",\"order_by\":[");
        for (int i = 0; i < nord; i++) {
            const char *n = names[rnd() % (unsigned)nnames];

            if (i) {
                strbuf_addch(&d->js, ',');
                strbuf_addstr(&d->sql, ", ");
            }
            diff_order_dir(d, n, n);
        }
        strbuf_addstr(&d->js, "]");
    }
    /* Ties: the group keys ascending, nulls last. */
    for (int i = 0; i < ngk + (bucket >= 0); i++) {
        if (nord || i)
            strbuf_addstr(&d->sql, ", ");
        strbuf_addf(&d->sql, "%s ASC NULLS LAST", names[i]);
    }
    diff_limit(d);
    strbuf_addch(&d->js, '}');
}

START_TEST(test_differential_sqlite)
{
    static const char *const pk[] = {"id"};
    struct field f[6];
    struct schema *s;
    struct strbuf rows = STRBUF_INIT, mine = STRBUF_INIT, theirs = STRBUF_INIT;
    struct tab t;
    sqlite3 *db;
    sqlite3_stmt *ins;
    unsigned nonempty = 0;

    fld(&f[0], "id", FIELD_INT64, false);
    fld(&f[1], "ts", FIELD_TIMESTAMP, true);
    fld(&f[2], "s", FIELD_STRING, true);
    fld(&f[3], "i", FIELD_INT64, true);
    fld(&f[4], "f", FIELD_FLOAT64, true);
    fld(&f[5], "b", FIELD_BOOL, true);
    s = mkschema(1, f, 6, pk, 1, "ts");
    ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db,
                                  "CREATE TABLE t(id INTEGER PRIMARY KEY, ts INTEGER, s TEXT, "
                                  "i INTEGER, f REAL, b INTEGER)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", -1, &ins, NULL),
        SQLITE_OK);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    rnd_state = 20261124;
    for (int id = 0; id < DIFF_ROWS; id++) {
        bool nul[6];
        long long ts = (long long)(rnd() % 518400000) - 259200000;
        const char *str = diff_strings[rnd() % ST_ARRAY_SIZE(diff_strings)];
        int iv = (int)(rnd() % 120) - 60;
        double fv = (double)((long)(rnd() % 161) - 80) / 4;
        int bv = (int)(rnd() % 2);

        for (int k = 1; k < 6; k++)
            nul[k] = rnd() % 7 == 0;
        strbuf_addf(&rows, "{\"id\":%d", id);
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, id);
        if (nul[DF_TS])
            sqlite3_bind_null(ins, 2);
        else
            sqlite3_bind_int64(ins, 2, ts), strbuf_addf(&rows, ",\"ts\":%lld", ts);
        if (nul[DF_S]) {
            sqlite3_bind_null(ins, 3);
        } else {
            sqlite3_bind_text(ins, 3, str, -1, SQLITE_STATIC);
            strbuf_addstr(&rows, ",\"s\":");
            strbuf_add_json_str(&rows, str, strlen(str));
        }
        if (nul[DF_I])
            sqlite3_bind_null(ins, 4);
        else
            sqlite3_bind_int64(ins, 4, iv), strbuf_addf(&rows, ",\"i\":%d", iv);
        if (nul[DF_F])
            sqlite3_bind_null(ins, 5);
        else
            sqlite3_bind_double(ins, 5, fv), strbuf_addf(&rows, ",\"f\":%.2f", fv);
        if (nul[DF_B])
            sqlite3_bind_null(ins, 6);
        else
            sqlite3_bind_int(ins, 6, bv), strbuf_addf(&rows, ",\"b\":%s", bv ? "true" : "false");
        strbuf_addstr(&rows, "}\n");
        ck_assert_int_eq(sqlite3_step(ins), SQLITE_DONE);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_finalize(ins);
    tab_init(&t, s);
    tab_add(&t, s, rows.buf);

    for (int n = 0; n < DIFF_QUERIES; n++) {
        struct diffq d = {STRBUF_INIT, STRBUF_INIT};
        struct query_plan *p;
        struct src src = {&t, 0, false};
        struct query_source qs = {src_next, NULL, &src};
        struct err err;

        if (rnd() % 2)
            diff_plain(&d);
        else
            diff_grouped(&d);
        p = parse_ok(s, d.js.buf, NULL);
        strbuf_reset(&mine);
        strbuf_reset(&theirs);
        ck_assert_int_eq(query_run(p, &qs, NULL, canon_row, &mine, NULL, &err), ST_OK);
        sqlite_rows(db, d.sql.buf, &theirs);
        ck_assert_msg(!strcmp(mine.buf, theirs.buf),
                      "query %d differs\n json: %s\n  sql: %s\n mine: %.600s\n sqlite: %.600s", n,
                      d.js.buf, d.sql.buf, mine.buf, theirs.buf);
        nonempty += mine.len > 0;
        query_plan_free(p);
        strbuf_release(&d.js);
        strbuf_release(&d.sql);
    }
    /* The queries are not all trivially empty. */
    ck_assert_uint_gt(nonempty, DIFF_QUERIES / 2);
    sqlite3_close(db);
    strbuf_release(&rows);
    strbuf_release(&mine);
    strbuf_release(&theirs);
    tab_release(&t);
    schema_free(s);
}
END_TEST

#endif /* ST_HAVE_SQLITE3 */

int main(void)
{
    Suite *s = suite_create("query");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_parse_depth);
    tcase_add_test(tc, test_parse_plan);
    tcase_add_test(tc, test_operators_with_nulls);
    tcase_add_test(tc, test_three_valued_logic);
    tcase_add_test(tc, test_numeric_literals);
    tcase_add_test(tc, test_utf8_byte_order);
    tcase_add_test(tc, test_aggregates_with_nulls);
    tcase_add_test(tc, test_group_by);
    tcase_add_test(tc, test_time_bucket);
    tcase_add_test(tc, test_time_bucket_groups);
    tcase_add_test(tc, test_int_sums_near_limits);
    tcase_add_test(tc, test_order_nulls_and_ties);
    tcase_add_test(tc, test_topk_is_sort_prefix);
    tcase_add_test(tc, test_limit_skip_and_more);
    tcase_add_test(tc, test_bounded_steps);
    tcase_add_test(tc, test_emit_pause_and_failures);
    tcase_add_test(tc, test_memory_limit);
    tcase_add_test(tc, test_schema_versions);
    tcase_add_test(tc, test_key_range);
    tcase_add_test(tc, test_key_range_is_safe);
    tcase_add_test(tc, test_time_range);
#ifdef ST_HAVE_SQLITE3
    tcase_add_test(tc, test_differential_sqlite);
#endif
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
