/*
 * Fuzz target for query bodies and cursors (src/api/query_parse.c,
 * src/api/cursor.c), with the executor (src/engine/query.c) behind them.
 *
 * The input is a query body, checked against a fixed schema with every
 * field type (nullable and not, a composite key, a time field). What must
 * hold for any input:
 *   - query_parse() gives a finished plan, or ST_EINVAL with a message
 *     that starts with the JSON path ("where.and[0].op: ..."); nothing
 *     else, and nothing leaks (ASan);
 *   - a plan runs to the end over a few fixed rows, in steps of a budget
 *     taken from the input and under a small memory limit, and every row
 *     it emits formats (api_value_json()) as valid JSON with one member
 *     per column;
 *   - the fingerprint of the body does not depend on its layout or on
 *     its cursor, as_of and limit members;
 *   - a cursor made from the input (as text, or the body's "cursor")
 *     never decodes: no valid MAC can be guessed; a cursor encoded here
 *     with a key from the input decodes back, and any one byte changed
 *     fails.
 * The sizes of the input pick the parse options (streamed or not, a row
 * cap) so that the corpus files stay plain JSON.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/cursor.h"
#include "api/query_parse.h"
#include "engine/decode.h"
#include "engine/query.h"
#include "engine/schema.h"
#include "util/strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_query: " __VA_ARGS__);                                               \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

static const uint8_t secret[CURSOR_SECRET_LEN] = "fuzz secret, thirty-two bytes..";

/* Rows, in key order, under the_schema(). */
static const char rows_ndjson[] =
    "{\"region\":\"\",\"id\":-5,\"ts\":\"1969-12-31T23:59:59.999Z\",\"s\":null,\"n\":null,"
    "\"f\":-0.0,\"b\":null,\"j\":null}\n"
    "{\"region\":\"eu\",\"id\":1,\"ts\":0,\"s\":\"abc\",\"n\":9223372036854775807,\"f\":1.5,"
    "\"b\":true,\"j\":{\"a\":[1,\"x\"]}}\n"
    "{\"region\":\"eu\",\"id\":2,\"ts\":3600000,\"s\":\"ab\",\"n\":9223372036854775807,\"f\":"
    "1e308,\"b\":false,\"j\":\"s\"}\n"
    "{\"region\":\"eu\",\"id\":3,\"ts\":86400000,\"s\":\"\\u00e9t\\u00e9\",\"n\":-1,\"f\":null,"
    "\"b\":true,\"j\":[]}\n"
    "{\"region\":\"us\",\"id\":-9223372036854775808,\"ts\":-86400001,\"s\":\"a\\u0001b\","
    "\"n\":0,\"f\":-2.25,\"b\":false,\"j\":null}\n"
    "{\"region\":\"us\",\"id\":7,\"ts\":253402300799999,\"s\":\"zzz\",\"n\":42,\"f\":0.1,"
    "\"b\":null,\"j\":12}\n";

static struct schema *schema;
static struct decode_result rows;

static void init(void)
{
    static const char *const pk[] = {"region", "id"};
    static const struct {
        const char *name;
        enum field_type type;
        bool nullable;
    } defs[] = {
        {"region", FIELD_STRING, false}, {"id", FIELD_INT64, false},
        {"ts", FIELD_TIMESTAMP, false},  {"s", FIELD_STRING, true},
        {"n", FIELD_INT64, true},        {"f", FIELD_FLOAT64, true},
        {"b", FIELD_BOOL, true},         {"j", FIELD_JSON, true},
    };
    struct field f[ST_ARRAY_SIZE(defs)];
    struct decode_opts o;
    struct err err;

    if (schema)
        return;
    memset(f, 0, sizeof(f));
    for (size_t i = 0; i < ST_ARRAY_SIZE(defs); i++) {
        st_strlcpy(f[i].name, defs[i].name, sizeof(f[i].name));
        f[i].type = defs[i].type;
        f[i].nullable = defs[i].nullable;
    }
    if (schema_new(1, f, ST_ARRAY_SIZE(defs), pk, 2, "ts", &schema, &err) != ST_OK)
        FAIL("schema: %s", err.msg);
    decode_result_init(&rows);
    decode_opts_init(&o);
    if (decode_batch(schema, rows_ndjson, strlen(rows_ndjson), &o, &rows, &err) != ST_OK ||
        rows.rejected)
        FAIL("rows: %s %s", err.msg, rows.ndetails ? rows.details[0].reason : "");
}

struct src {
    size_t i; /* next row */
};

static bool src_next(void *ctx, const void **row, const struct schema **s)
{
    struct src *c = ctx;

    if (c->i >= rows.nrows)
        return false;
    *row = decode_result_row(&rows, c->i++);
    *s = schema;
    return true;
}

struct out {
    const struct query_plan *p; /* the plan */
    uint64_t n;                 /* rows emitted */
};

static enum st_status emit(void *ctx, const struct query_row *row, struct err *err)
{
    struct out *o = ctx;
    struct strbuf sb = STRBUF_INIT;
    json_error_t jerr;
    json_t *v;

    (void)err;
    if (row->ncols != o->p->ncols)
        FAIL("a row of %u columns, want %u", row->ncols, o->p->ncols);
    strbuf_addch(&sb, '{');
    for (uint32_t i = 0; i < row->ncols; i++) {
        if (i)
            strbuf_addch(&sb, ',');
        strbuf_add_json_str(&sb, o->p->cols[i].name, strlen(o->p->cols[i].name));
        strbuf_addch(&sb, ':');
        api_value_json(&sb, &row->vals[i]);
    }
    strbuf_addch(&sb, '}');
    v = json_loadb(sb.buf, sb.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!v || json_object_size(v) != row->ncols)
        FAIL("row is not a JSON object of %u members: %s (%s)", row->ncols, sb.buf, jerr.text);
    json_decref(v);
    strbuf_release(&sb);
    o->n++;
    return ST_OK;
}

static void check_plan(const struct query_plan *p, size_t size)
{
    struct query_exec_opts eo = {.mem_limit = 1 << 16, .skip = size % 3, .lookahead = size & 4};
    struct src src = {0};
    struct query_source qs = {src_next, NULL, &src};
    struct out o = {p, 0};
    struct query_exec *q;
    enum query_step_result r;
    struct err err;
    int steps = 0;

    if (!p || p->ncols == 0)
        FAIL("a plan without columns");
    for (uint32_t i = 0; i < p->ncols; i++)
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(p->cols[i].name, p->cols[j].name))
                FAIL("column '%s' twice", p->cols[i].name);
    q = query_exec_new(p, &qs, &eo, emit, &o);
    while ((r = query_step(q, 1 + size % 7, &err)) == QUERY_MORE)
        if (++steps > 100000)
            FAIL("the query does not end");
    if (r == QUERY_ERROR && err.code != ST_ENOMEM)
        FAIL("the query failed: %s", err.msg);
    if (r == QUERY_DONE && p->limit != QUERY_NO_LIMIT && o.n > p->limit)
        FAIL("%llu rows over the limit %llu", (unsigned long long)o.n,
             (unsigned long long)p->limit);
    query_exec_free(q);
}

static void check_fingerprint(const json_t *body)
{
    uint64_t fp = cursor_fingerprint(body);
    char *text = json_dumps(body, JSON_INDENT(3) | JSON_ENCODE_ANY);
    json_t *again, *more;

    if (!text)
        return;
    again = json_loads(text, JSON_ALLOW_NUL, NULL);
    free(text);
    if (!again)
        FAIL("a dumped body does not load again");
    if (cursor_fingerprint(again) != fp)
        FAIL("the fingerprint depends on the layout");
    more = json_copy(again);
    json_object_set_new(more, "cursor", json_string("c"));
    json_object_set_new(more, "as_of", json_integer(3));
    json_object_set_new(more, "limit", json_integer(5));
    if (cursor_fingerprint(more) != fp)
        FAIL("the fingerprint depends on cursor, as_of or limit");
    json_decref(more);
    json_decref(again);
}

static void check_cursors(const uint8_t *data, size_t size, uint64_t fp)
{
    struct cursor *c = calloc(1, sizeof(*c)), *d = calloc(1, sizeof(*d));
    struct strbuf sb = STRBUF_INIT;
    struct err err;
    size_t at;

    if (!c || !d)
        abort();
    if (cursor_decode((const char *)data, size, secret, 1, 2, fp, d, &err) == ST_OK)
        FAIL("made-up cursor text decodes");
    c->tenant_id = 1;
    c->table_id = 2;
    c->version = size;
    c->fingerprint = fp;
    c->key_len = ST_MIN(size, (size_t)CURSOR_KEY_MAX);
    memcpy(c->key, data, c->key_len);
    c->skip = c->key_len ? 0 : fp;
    cursor_encode(c, secret, &sb);
    if (cursor_decode(sb.buf, sb.len, secret, 1, 2, fp, d, &err) != ST_OK)
        FAIL("a cursor does not decode: %s", err.msg);
    if (d->version != c->version || d->skip != c->skip || d->key_len != c->key_len ||
        memcmp(d->key, c->key, c->key_len))
        FAIL("a cursor decodes to something else");
    at = fp % sb.len;
    sb.buf[at] = sb.buf[at] == 'A' ? 'B' : 'A';
    if (cursor_decode(sb.buf, sb.len, secret, 1, 2, fp, d, &err) == ST_OK)
        FAIL("a changed cursor decodes");
    strbuf_release(&sb);
    free(c);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct query_parse_opts po = {.max_rows = (size & 2) ? 2 : 0, .stream = size & 1};
    struct query_parse_result res;
    json_t *body, *cur;
    struct err err;
    enum st_status rc;

    init();
    body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!body) {
        check_cursors(data, size, 0);
        return 0;
    }
    err_clear(&err);
    rc = query_parse(body, schema, &po, &res, &err);
    if (rc == ST_OK) {
        check_plan(res.plan, size);
        query_parse_result_release(&res);
    } else if (rc != ST_EINVAL || !strstr(err.msg, ": ") || res.plan) {
        FAIL("query_parse: status %d, message '%s'", (int)rc, err.msg);
    }
    if (json_is_object(body)) {
        uint64_t fp = cursor_fingerprint(body);

        check_fingerprint(body);
        cur = json_object_get(body, "cursor");
        if (json_is_string(cur)) {
            struct cursor *c = malloc(sizeof(*c));

            if (!c)
                abort();
            if (cursor_decode(json_string_value(cur), json_string_length(cur), secret, 1, 2, fp, c,
                              &err) == ST_OK)
                FAIL("the body's cursor decodes");
            free(c);
        }
        check_cursors(data, size, fp);
    }
    json_decref(body);
    return 0;
}
