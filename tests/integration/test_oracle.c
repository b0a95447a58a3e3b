/*
 * A correctness oracle for queries: real public data in strata, over
 * HTTP, and in SQLite, the same queries on both, identical answers.
 *
 * DATA. data/flights-20k.json of the npm package vega-datasets (20,000
 * US flights of 2001: date, delay, distance, origin, destination),
 * fetched by scripts/deps.sh --test into tests/data/vega/, which
 * tests/integration/meson.build passes as STRATA_VEGA_DIR. Without the
 * file the suite fails, saying how to fetch it, unless
 * STRATA_ORACLE_OPTIONAL=1, when it prints why it skipped and passes.
 * Each record becomes (the same values go to both sides):
 *   id           its line number, from 1
 *   ts           "date" read as UTC; every 101st record is moved back
 *                12775 days (into 1966) so that ranges and time buckets
 *                cross the epoch, where buckets must round down
 *   delay        null for every 17th record (sent as null, or left out
 *                for every 34th)
 *   distance     float64: distance + (id % 10) / 10
 *   origin, destination  as they are
 * and goes in as NDJSON in three layers, so that queries merge
 * segments and the memtable: ids 1-10000, checkpoint (a segment);
 * 10001-20000, checkpoint; then, left in the memtable, rewrites of every
 * 50th record (a new delay, or null; a new origin for some) and the
 * deletion of every 997th. Timestamps go in as RFC 3339 for even ids
 * and as epoch milliseconds for odd ones.
 *
 * SQLITE. An in-memory table flights(id INTEGER PRIMARY KEY, ts
 * INTEGER ms, delay INTEGER, distance REAL, origin TEXT, destination
 * TEXT) with the final rows, and flights_b with the rows before the
 * third layer, for queries as_of that version. The contract maps onto SQL as in
 * tests/unit/test_query.c's differential test: != is <>, prefix p is
 * substr(x, 1, length(p)) = p, contains p is instr(x, p) > 0, is_null
 * is IS NULL, time_bucket w is ts - (((ts % w) + w) % w) (floor, also
 * before 1970), count_distinct is count(DISTINCT x); ascending orders
 * are NULLS LAST and descending ones NULLS FIRST, then the documented
 * tie order (engine/query.h): id for plain rows, the group keys (then
 * the bucket) ascending nulls last for groups, which is also the order
 * without order_by. A query without a limit gets LIMIT 1000. The SQL
 * function iso(ms) prints a timestamp as strata does
 * ("2001-01-01T00:47:00.000Z").
 *
 * COMPARISON. Row by row in order: the same number of rows and columns,
 * each column by name: nulls, integers and strings exactly, floats
 * exactly except in columns named avg* or sum*, which may differ by
 * 1e-9 relative (summation order); a JSON integer never equals a SQL
 * float nor the reverse. Every query runs; each one that differs is
 * printed with its JSON, its SQL and the first difference, then the
 * test fails naming how many differed.
 *
 * Tests: the query list (every operator, and/or/not with nulls, every
 * aggregate, grouping by one and two fields, time buckets, orders,
 * limits, empty answers), on the newest version and again as_of the
 * version before the third layer; paging by next_cursor (by key, and by
 * offset for an ordered and a grouped query) through writes made between
 * the pages: the pages show the first page's snapshot, and a query after
 * them the new state; NDJSON streams, after a compaction.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "client.h"
#include "util/strbuf.h"

#define QUERY          "/v1/tenants/air/query"
#define RECORDS        "/v1/tenants/air/tables/flights/records"
#define NDJSON_ACCEPT  "Accept: application/x-ndjson\r\n"
#define VEGA_FILE      "flights-20k.json"
#define SHIFT_MS       (12775LL * 86400000LL) /* every 101st record moves back this far */
#define REL_TOLERANCE  1e-9                   /* for avg* and sum* float columns */
#define MAX_ROWS_LIMIT ",'limit':100000"      /* limits.max_query_rows: every row */

/* The columns of a plain row, as SQL: what strata answers without select. */
#define ALL_COLS "id, iso(ts) AS ts, delay, distance, origin, destination"

/* time_bucket in SQL: the floor of ts to a multiple of w ms. */
#define BUCKET(w)  "(ts - (((ts % " w ") + " w ") % " w "))"
#define BUCKET_15M BUCKET("900000")
#define BUCKET_1H  BUCKET("3600000")
#define BUCKET_1D  BUCKET("86400000")
#define BUCKET_7D  BUCKET("604800000")

static const char table_def[] = "{\"name\": \"flights\", \"fields\": ["
                                "{\"name\": \"id\", \"type\": \"int64\"},"
                                "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                                "{\"name\": \"delay\", \"type\": \"int64\", \"nullable\": true},"
                                "{\"name\": \"distance\", \"type\": \"float64\"},"
                                "{\"name\": \"origin\", \"type\": \"string\"},"
                                "{\"name\": \"destination\", \"type\": \"string\"}"
                                "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

/* One flight as both sides hold it. */
struct rec {
    long long id;    /* line number, from 1 */
    long long ts;    /* epoch ms */
    long long delay; /* minutes, unless delay_null */
    bool delay_null; /* delay is null */
    double distance; /* miles, with a fraction added */
    char origin[8];  /* airport code */
    char dest[8];    /* airport code */
    bool deleted;    /* deleted (third layer, or between pages) */
};

struct oracle {
    struct srv s;        /* the server */
    char *key;           /* read/write key for tenant air */
    sqlite3 *db;         /* the same rows */
    struct rec *recs;    /* recs[i].id == i + 1 for i < n, then records added */
    size_t n;            /* records in the file */
    size_t nall;         /* records in recs */
    size_t cap;          /* room in recs */
    long long rounds;    /* write_between() calls */
    long long version_b; /* the version before the third layer */
};

/* ------------------------------------------------------------------ */
/* The data set */

static char data_path[HARNESS_PATH_MAX];

/* Whether the data file is there; fills data_path. */
static bool data_present(void)
{
    const char *dir = getenv("STRATA_VEGA_DIR");

    if (!dir || !*dir)
        return false;
    snprintf(data_path, sizeof(data_path), "%s/%s", dir, VEGA_FILE);
    return access(data_path, R_OK) == 0;
}

/* "2001/01/01 00:47" as epoch ms, UTC. */
static long long parse_date(const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi;
    char end;

    ck_assert_msg(sscanf(s, "%d/%d/%d %d:%d%c", &y, &mo, &d, &h, &mi, &end) == 5,
                  "unexpected date '%s' in %s", s, data_path);
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (long long)timegm(&tm) * 1000;
}

/* ms as strata prints a timestamp: "2001-01-01T00:47:00.000Z". */
static void format_ts(long long ms, char out[32])
{
    long long sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    time_t t = (time_t)sec;
    struct tm tm;

    ck_assert_ptr_nonnull(gmtime_r(&t, &tm));
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + strlen(out), 32 - strlen(out), ".%03dZ", (int)(ms - sec * 1000));
}

static void copy_code(char out[8], const json_t *v, const char *what, size_t i)
{
    ck_assert_msg(json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 8,
                  "record %zu: unexpected %s", i, what);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
}

/* Reads the file and applies the transformations of the header. */
static void load_records(struct oracle *o)
{
    json_error_t jerr;
    json_t *all = json_load_file(data_path, 0, &jerr);

    ck_assert_msg(all && json_is_array(all), "%s: %s", data_path, all ? "not an array" : jerr.text);
    o->n = json_array_size(all);
    ck_assert_uint_ge(o->n, 10000);
    o->cap = o->n + 16;
    o->nall = o->n;
    o->recs = calloc_array(o->cap, sizeof(*o->recs));
    for (size_t i = 0; i < o->n; i++) {
        const json_t *e = json_array_get(all, i);
        const json_t *date = json_object_get(e, "date");
        const json_t *delay = json_object_get(e, "delay");
        const json_t *dist = json_object_get(e, "distance");
        struct rec *r = &o->recs[i];

        ck_assert_msg(json_is_string(date) && json_is_integer(delay) && json_is_number(dist),
                      "record %zu of %s has an unexpected shape", i, data_path);
        r->id = (long long)i + 1;
        r->ts = parse_date(json_string_value(date));
        if (r->id % 101 == 0)
            r->ts -= SHIFT_MS;
        r->delay = json_integer_value(delay);
        r->delay_null = r->id % 17 == 0;
        r->distance = json_number_value(dist) + (double)(r->id % 10) / 10;
        copy_code(r->origin, json_object_get(e, "origin"), "origin", i);
        copy_code(r->dest, json_object_get(e, "destination"), "destination", i);
    }
    json_decref(all);
}

/* Appends r as one NDJSON line. */
static void add_ndjson(struct strbuf *sb, const struct rec *r)
{
    strbuf_addf(sb, "{\"id\":%lld,", r->id);
    if (r->id % 2 == 0) {
        char ts[32];

        format_ts(r->ts, ts);
        /* RFC 3339 without the milliseconds, as a client would write it. */
        strbuf_addf(sb, "\"ts\":\"%.19sZ\",", ts);
    } else {
        strbuf_addf(sb, "\"ts\":%lld,", r->ts);
    }
    if (!r->delay_null)
        strbuf_addf(sb, "\"delay\":%lld,", r->delay);
    else if (r->id % 34 != 0)
        strbuf_addstr(sb, "\"delay\":null,");
    strbuf_addf(sb, "\"distance\":%.17g,\"origin\":\"%s\",\"destination\":\"%s\"}\n", r->distance,
                r->origin, r->dest);
}

static long long ingest(const struct oracle *o, const struct strbuf *sb, size_t records)
{
    struct hresp r;
    long long v;

    api_request(o->s.ingest_port, "POST", RECORDS, o->key, API_NDJSON, sb->buf, sb->len, &r);
    api_expect(&r, 200);
    ck_assert_int_eq(api_int(&r, "accepted"), (long long)records);
    v = api_int(&r, "version");
    hresp_free(&r);
    return v;
}

/* Ingests recs[from, to) in batches of 5000. */
static void ingest_range(const struct oracle *o, size_t from, size_t to)
{
    struct strbuf sb = STRBUF_INIT;

    for (size_t i = from; i < to; i += 5000) {
        size_t end = i + 5000 < to ? i + 5000 : to;

        strbuf_reset(&sb);
        for (size_t j = i; j < end; j++)
            add_ndjson(&sb, &o->recs[j]);
        ingest(o, &sb, end - i);
    }
    strbuf_release(&sb);
}

static void checkpoint(const struct oracle *o)
{
    struct hresp r;

    api_req(o->s.query_port, "POST", "/v1/admin/checkpoint", o->s.token, NULL, NULL, &r);
    api_expect(&r, 200);
    ck_assert_int_ge(api_int(&r, "segments_written"), 1);
    hresp_free(&r);
}

static void delete_record(const struct oracle *o, long long id)
{
    char path[128];
    struct hresp r;

    snprintf(path, sizeof(path), RECORDS "/%lld", id);
    api_req(o->s.ingest_port, "DELETE", path, o->key, NULL, NULL, &r);
    api_expect(&r, 200);
    hresp_free(&r);
}

/* The third layer: rewrites of every 50th record, deletes of every 997th. */
static void rewrite_and_delete(struct oracle *o)
{
    struct strbuf sb = STRBUF_INIT;
    size_t n = 0;

    for (size_t i = 2; i < o->n; i += 50) {
        struct rec *r = &o->recs[i]; /* id % 50 == 3 */

        if (r->id % 100 == 3) {
            r->delay_null = true;
        } else if (r->delay_null) {
            r->delay_null = false;
            r->delay = 7;
        } else {
            r->delay += 1000;
        }
        if (r->id % 200 == 53)
            st_strlcpy(r->origin, "XQX", sizeof(r->origin));
        add_ndjson(&sb, r);
        n++;
    }
    ingest(o, &sb, n);
    strbuf_release(&sb);
    for (size_t i = 996; i < o->n; i += 997) {
        delete_record(o, o->recs[i].id);
        o->recs[i].deleted = true;
    }
}

/* ------------------------------------------------------------------ */
/* SQLite */

/* iso(ms): the timestamp as strata prints it; null stays null. */
static void sql_iso(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    char buf[32];

    ST_UNUSED(argc);
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    format_ts((long long)sqlite3_value_int64(argv[0]), buf);
    sqlite3_result_text(ctx, buf, -1, SQLITE_TRANSIENT);
}

static void sql_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;

    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
                  msg ? msg : "?");
}

/* Inserts or replaces r in table. */
static void sql_put(sqlite3 *db, const char *table, const struct rec *r)
{
    char sql[128];
    sqlite3_stmt *st;

    snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO %s VALUES (?,?,?,?,?,?)", table);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, r->id);
    sqlite3_bind_int64(st, 2, r->ts);
    if (r->delay_null)
        sqlite3_bind_null(st, 3);
    else
        sqlite3_bind_int64(st, 3, r->delay);
    sqlite3_bind_double(st, 4, r->distance);
    sqlite3_bind_text(st, 5, r->origin, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->dest, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* Makes table hold exactly the records of o->recs not deleted. */
static void sql_fill(struct oracle *o, const char *table)
{
    char sql[64];

    snprintf(sql, sizeof(sql), "DELETE FROM %s", table);
    sql_exec(o->db, "BEGIN");
    sql_exec(o->db, sql);
    for (size_t i = 0; i < o->nall; i++)
        if (!o->recs[i].deleted)
            sql_put(o->db, table, &o->recs[i]);
    sql_exec(o->db, "COMMIT");
}

/* SQLite's flights now holds what strata holds. */
static void sql_sync(struct oracle *o)
{
    sql_fill(o, "flights");
}

/*
 * Opens the database with two tables: flights, empty, and flights_b,
 * which keeps the records as they are now (the state before the third
 * layer, for queries as_of that version).
 */
static void sql_open(struct oracle *o)
{
    static const char cols[] = "(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, delay INTEGER, "
                               "distance REAL NOT NULL, origin TEXT NOT NULL, "
                               "destination TEXT NOT NULL)";
    char sql[256];

    ck_assert_int_eq(sqlite3_open(":memory:", &o->db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_create_function(o->db, "iso", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                             NULL, sql_iso, NULL, NULL),
                     SQLITE_OK);
    snprintf(sql, sizeof(sql), "CREATE TABLE flights%s", cols);
    sql_exec(o->db, sql);
    snprintf(sql, sizeof(sql), "CREATE TABLE flights_b%s", cols);
    sql_exec(o->db, sql);
    sql_fill(o, "flights_b");
}

/* The rows of sql as a JSON array of objects, columns by name (caller decrefs). */
static json_t *sql_rows(sqlite3 *db, const char *sql)
{
    json_t *rows = json_array();
    sqlite3_stmt *st;
    int rc;

    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *row = json_object();

        for (int i = 0; i < sqlite3_column_count(st); i++) {
            json_t *v;

            switch (sqlite3_column_type(st, i)) {
            case SQLITE_NULL:
                v = json_null();
                break;
            case SQLITE_INTEGER:
                v = json_integer((json_int_t)sqlite3_column_int64(st, i));
                break;
            case SQLITE_FLOAT:
                v = json_real(sqlite3_column_double(st, i));
                break;
            default:
                v = json_stringn((const char *)sqlite3_column_text(st, i),
                                 (size_t)sqlite3_column_bytes(st, i));
                break;
            }
            ck_assert_ptr_nonnull(v);
            json_object_set_new(row, sqlite3_column_name(st, i), v);
        }
        json_array_append_new(rows, row);
    }
    ck_assert_msg(rc == SQLITE_DONE, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rows;
}

/* ------------------------------------------------------------------ */
/* Comparison */

static bool same_value(const json_t *want, const json_t *got, const char *col)
{
    if (!got)
        return false;
    switch (json_typeof(want)) {
    case JSON_NULL:
        return json_is_null(got);
    case JSON_INTEGER:
        return json_is_integer(got) && json_integer_value(got) == json_integer_value(want);
    case JSON_REAL: {
        double w = json_real_value(want), g;

        if (!json_is_real(got))
            return false;
        g = json_real_value(got);
        if (g == w)
            return true;
        if (strncmp(col, "avg", 3) != 0 && strncmp(col, "sum", 3) != 0)
            return false;
        return fabs(g - w) <= REL_TOLERANCE * fmax(fabs(w), fabs(g));
    }
    case JSON_STRING:
        return json_is_string(got) && json_string_length(got) == json_string_length(want) &&
               !memcmp(json_string_value(got), json_string_value(want), json_string_length(want));
    default:
        ST_BUG("SQLite gave a JSON %d", (int)json_typeof(want));
    }
}

static void add_json(struct strbuf *sb, const json_t *v, size_t max)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) : NULL;

    if (!s) {
        strbuf_addstr(sb, "(missing)");
        return;
    }
    if (strlen(s) > max)
        strbuf_addf(sb, "%.*s...", (int)max, s);
    else
        strbuf_addstr(sb, s);
    free(s);
}

/*
 * Compares strata's rows with SQLite's; on the first difference describes
 * it in why and returns false.
 */
static bool same_rows(const json_t *want, const json_t *got, struct strbuf *why)
{
    size_t nw = json_array_size(want), ng;

    if (!json_is_array(got)) {
        strbuf_addstr(why, "no rows array");
        return false;
    }
    ng = json_array_size(got);
    for (size_t i = 0; i < nw && i < ng; i++) {
        const json_t *w = json_array_get(want, i), *g = json_array_get(got, i);
        const char *col;
        const json_t *wv;

        if (!json_is_object(g) || json_object_size(g) != json_object_size(w)) {
            strbuf_addf(why, "row %zu: columns differ", i);
            goto describe_row;
        }
        json_object_foreach((json_t *)w, col, wv)
        {
            const json_t *gv = json_object_get(g, col);

            if (same_value(wv, gv, col))
                continue;
            strbuf_addf(why, "row %zu, column '%s': want ", i, col);
            add_json(why, wv, 100);
            strbuf_addstr(why, ", got ");
            add_json(why, gv, 100);
            goto describe_row;
        }
        continue;
    describe_row:
        strbuf_addstr(why, "\n   want row: ");
        add_json(why, w, 300);
        strbuf_addstr(why, "\n    got row: ");
        add_json(why, g, 300);
        return false;
    }
    if (nw != ng) {
        strbuf_addf(why, "%zu rows, want %zu; first extra row: ", ng, nw);
        add_json(why, json_array_get(nw > ng ? want : got, nw > ng ? ng : nw), 300);
        return false;
    }
    return true;
}

/* The test JSON with ' for " (no test string holds a quote). */
static void add_query_json(struct strbuf *sb, const char *q)
{
    for (; *q; q++)
        strbuf_addch(sb, *q == '\'' ? '"' : *q);
}

/* {"table":"flights", ...q's members...}. */
static void query_body(struct strbuf *sb, const char *q)
{
    ck_assert_msg(q[0] == '{', "%s", q);
    strbuf_addstr(sb, "{\"table\":\"flights\"");
    if (q[1] != '}')
        strbuf_addch(sb, ',');
    add_query_json(sb, q + 1);
}

/* ------------------------------------------------------------------ */
/* Set-up */

static void setup(struct oracle *o)
{
    size_t half;

    memset(o, 0, sizeof(*o));
    load_records(o);
    srv_start(&o->s, NULL);
    api_create_tenant(&o->s, "air");
    o->key = api_make_key(&o->s, "air", "[\"read\", \"write\"]", NULL);
    api_create_table(&o->s, "air", NULL, table_def);
    half = o->n / 2;
    ingest_range(o, 0, half);
    checkpoint(o);
    ingest_range(o, half, o->n);
    checkpoint(o);
    o->version_b = api_version(&o->s, "air", o->key);
    sql_open(o);
    rewrite_and_delete(o);
    sql_sync(o);
}

static void teardown_oracle(struct oracle *o)
{
    srv_stop(&o->s, 10000);
    sqlite3_close(o->db);
    free(o->recs);
    free(o->key);
}

static void post_query(const struct oracle *o, const char *body, struct hresp *r)
{
    api_req(o->s.query_port, "POST", QUERY, o->key, NULL, body, r);
}

/* ------------------------------------------------------------------ */
/* The queries */

struct oq {
    const char *json; /* the query without "table", ' for " */
    const char *sql;  /* the same in SQLite */
};

static const struct oq queries[] = {
    /* ---- every operator, on plain rows ---- */
    {"{'select':['id','delay'],'where':{'field':'delay','op':'=','value':0}" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE delay = 0 ORDER BY id"},
    {"{'where':{'field':'delay','op':'!=','value':0},'aggregates':[{'fn':'count','as':'n'}]}",
     "SELECT count(*) AS n FROM flights WHERE delay <> 0"},
    {"{'where':{'field':'delay','op':'<','value':-25}" MAX_ROWS_LIMIT "}",
     "SELECT " ALL_COLS " FROM flights WHERE delay < -25 ORDER BY id"},
    {"{'select':['id','distance'],'where':{'field':'distance','op':'<=','value':100."
     "5}" MAX_ROWS_LIMIT "}",
     "SELECT id, distance FROM flights WHERE distance <= 100.5 ORDER BY id"},
    /* An integer literal against a float64 field, a float one against int64. */
    {"{'select':['id','origin','distance'],'where':{'field':'distance','op':'>','value':"
     "2500}" MAX_ROWS_LIMIT "}",
     "SELECT id, origin, distance FROM flights WHERE distance > 2500 ORDER BY id"},
    {"{'select':['id','delay'],'where':{'and':[{'field':'delay','op':'>=','value':-5.5},"
     "{'field':'delay','op':'<','value':10.5}]}" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE delay >= -5.5 AND delay < 10.5 ORDER BY id"},
    {"{'select':['id','distance'],'where':{'field':'distance','op':'=','value':1750."
     "3}" MAX_ROWS_LIMIT "}",
     "SELECT id, distance FROM flights WHERE distance = 1750.3 ORDER BY id"},
    /* A time range, as RFC 3339 and as epoch ms (the 1966 records). */
    {"{'select':['id','ts'],'where':{'and':[{'field':'ts','op':'>=','value':'2001-03-30T00:00:00Z'}"
     ","
     "{'field':'ts','op':'<','value':'2001-03-31T00:00:00Z'}]}" MAX_ROWS_LIMIT "}",
     "SELECT id, iso(ts) AS ts FROM flights WHERE ts >= 985910400000 AND ts < 985996800000 "
     "ORDER BY id"},
    {"{'select':['id','ts','origin'],'where':{'field':'ts','op':'<','value':0}" MAX_ROWS_LIMIT "}",
     "SELECT id, iso(ts) AS ts, origin FROM flights WHERE ts < 0 ORDER BY id"},
    {"{'select':['id','ts'],'where':{'field':'ts','op':'=','value':'2001-01-01T00:47:00.000Z'}}",
     "SELECT id, iso(ts) AS ts FROM flights WHERE ts = 978310020000 ORDER BY id LIMIT 1000"},
    {"{'where':{'field':'origin','op':'=','value':'SFO'}" MAX_ROWS_LIMIT "}",
     "SELECT " ALL_COLS " FROM flights WHERE origin = 'SFO' ORDER BY id"},
    {"{'where':{'field':'destination','op':'!=','value':'LAX'},'aggregates':[{'fn':'count','as':'n'"
     "}"
     "]}",
     "SELECT count(*) AS n FROM flights WHERE destination <> 'LAX'"},
    {"{'select':['id','origin','destination'],'where':{'field':'origin','op':'in','value':['SFO',"
     "'LAX','ORD','NOPE']}" MAX_ROWS_LIMIT "}",
     "SELECT id, origin, destination FROM flights WHERE origin IN ('SFO','LAX','ORD','NOPE') "
     "ORDER BY id"},
    {"{'select':['id','delay'],'where':{'field':'delay','op':'in','value':[0,1,2,100]"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE delay IN (0,1,2,100) ORDER BY id"},
    {"{'select':['id','distance'],'where':{'field':'distance','op':'in','value':[1750,407,256.5]"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT id, distance FROM flights WHERE distance IN (1750,407,256.5) ORDER BY id"},
    {"{'select':['id','origin'],'where':{'field':'origin','op':'prefix','value':'S'}" MAX_ROWS_LIMIT
     "}",
     "SELECT id, origin FROM flights WHERE substr(origin, 1, 1) = 'S' ORDER BY id"},
    {"{'select':['destination','id'],'where':{'field':'destination','op':'prefix','value':'LA'"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT destination, id FROM flights WHERE substr(destination, 1, 2) = 'LA' ORDER BY id"},
    {"{'where':{'field':'origin','op':'prefix','value':''},'aggregates':[{'fn':'count','as':'n'}]}",
     "SELECT count(*) AS n FROM flights"},
    {"{'select':['id','destination'],'where':{'field':'destination','op':'contains','value':'X'"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT id, destination FROM flights WHERE instr(destination, 'X') > 0 ORDER BY id"},
    {"{'where':{'field':'origin','op':'contains','value':'AX'},'group_by':['origin'],"
     "'aggregates':[{'fn':'count','as':'n'}]}",
     "SELECT origin, count(*) AS n FROM flights WHERE instr(origin, 'AX') > 0 GROUP BY origin "
     "ORDER BY origin LIMIT 1000"},
    {"{'select':['id','delay'],'where':{'field':'delay','op':'is_null'}" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE delay IS NULL ORDER BY id"},
    {"{'where':{'not':{'field':'delay','op':'is_null'}},'aggregates':[{'fn':'count','as':'n'}]}",
     "SELECT count(*) AS n FROM flights WHERE NOT (delay IS NULL)"},
    /* ---- not, or, and with nulls: three-valued logic ---- */
    {"{'select':['id','delay'],'where':{'not':{'field':'delay','op':'>','value':10}}" MAX_ROWS_LIMIT
     "}",
     "SELECT id, delay FROM flights WHERE NOT (delay > 10) ORDER BY id"},
    {"{'select':['id','delay'],'where':{'not':{'field':'delay','op':'in','value':[1,2,3]}"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE NOT (delay IN (1,2,3)) ORDER BY id"},
    {"{'select':['id','origin','delay'],'where':{'or':[{'field':'delay','op':'>','value':300},"
     "{'field':'origin','op':'=','value':'SFO'}]}" MAX_ROWS_LIMIT "}",
     "SELECT id, origin, delay FROM flights WHERE (delay > 300 OR origin = 'SFO') ORDER BY id"},
    {"{'select':['id','delay'],'where':{'or':[{'field':'delay','op':'is_null'},{'field':'delay',"
     "'op':'>','value':400}]}" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE (delay IS NULL OR delay > 400) ORDER BY id"},
    {"{'where':{'not':{'and':[{'field':'delay','op':'>','value':0},{'field':'origin','op':'=',"
     "'value':'LAX'}]}},'aggregates':[{'fn':'count','as':'n'},{'fn':'count','field':'delay','as':"
     "'nd'}]}",
     "SELECT count(*) AS n, count(delay) AS nd FROM flights WHERE NOT (delay > 0 AND origin = "
     "'LAX')"},
    {"{'where':{'not':{'or':[{'field':'delay','op':'<','value':0},{'field':'destination','op':'=',"
     "'value':'SEA'}]}},'aggregates':[{'fn':'count','as':'n'}]}",
     "SELECT count(*) AS n FROM flights WHERE NOT (delay < 0 OR destination = 'SEA')"},
    {"{'where':{'and':[{'or':[{'field':'origin','op':'=','value':'SFO'},{'field':'destination',"
     "'op':'=','value':'SFO'}]},{'not':{'or':[{'field':'delay','op':'<','value':0},{'field':"
     "'delay','op':'is_null'}]}},{'field':'distance','op':'>=','value':300}]}" MAX_ROWS_LIMIT "}",
     "SELECT " ALL_COLS " FROM flights WHERE (origin = 'SFO' OR destination = 'SFO') AND NOT "
     "(delay < 0 OR delay IS NULL) AND distance >= 300 ORDER BY id"},
    {"{'select':['id','origin'],'where':{'and':[{'field':'origin','op':'>=','value':'M'},{'field':"
     "'origin','op':'<','value':'O'},{'not':{'field':'origin','op':'prefix','value':'MS'}}]"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT id, origin FROM flights WHERE origin >= 'M' AND origin < 'O' AND NOT "
     "(substr(origin, 1, 2) = 'MS') ORDER BY id"},
    /* Key ranges and points. */
    {"{'select':['id','ts'],'where':{'and':[{'field':'id','op':'>=','value':100},{'field':'id',"
     "'op':'<','value':200}]}}",
     "SELECT id, iso(ts) AS ts FROM flights WHERE id >= 100 AND id < 200 ORDER BY id LIMIT 1000"},
    {"{'where':{'field':'id','op':'in','value':[5,17,997,1003,999999]}}",
     "SELECT " ALL_COLS " FROM flights WHERE id IN (5,17,997,1003,999999) ORDER BY id LIMIT 1000"},
    /* ---- answers with no rows ---- */
    {"{'where':{'field':'origin','op':'=','value':'ZZZ'}}",
     "SELECT " ALL_COLS " FROM flights WHERE origin = 'ZZZ' ORDER BY id LIMIT 1000"},
    {"{'where':{'field':'origin','op':'=','value':'ZZZ'},'group_by':['origin'],'aggregates':[{'fn':"
     "'count','as':'n'}]}",
     "SELECT origin, count(*) AS n FROM flights WHERE origin = 'ZZZ' GROUP BY origin"},
    {"{'where':{'field':'origin','op':'=','value':'ZZZ'},'aggregates':[{'fn':'count','as':'n'},"
     "{'fn':'count','field':'delay','as':'nd'},{'fn':'sum','field':'delay','as':'sum_delay'},"
     "{'fn':'avg','field':'distance','as':'avg_distance'},{'fn':'min','field':'origin','as':"
     "'min_origin'},{'fn':'max','field':'ts','as':'max_ts'},{'fn':'count_distinct','field':"
     "'destination','as':'nd_dest'}]}",
     "SELECT count(*) AS n, count(delay) AS nd, sum(delay) AS sum_delay, avg(distance) AS "
     "avg_distance, min(origin) AS min_origin, iso(max(ts)) AS max_ts, count(DISTINCT "
     "destination) AS nd_dest FROM flights WHERE origin = 'ZZZ'"},
    /* ---- every aggregate, over the whole table and over nulls only ---- */
    {"{'aggregates':[{'fn':'count','as':'n'},{'fn':'count','field':'delay','as':'nd'},{'fn':'sum',"
     "'field':'delay','as':'sum_delay'},{'fn':'min','field':'delay','as':'min_delay'},{'fn':'max',"
     "'field':'delay','as':'max_delay'},{'fn':'avg','field':'delay','as':'avg_delay'},{'fn':'sum',"
     "'field':'distance','as':'sum_distance'},{'fn':'min','field':'distance','as':'min_distance'},"
     "{'fn':'max','field':'distance','as':'max_distance'},{'fn':'avg','field':'distance','as':"
     "'avg_distance'},{'fn':'min','field':'origin','as':'min_origin'},{'fn':'max','field':"
     "'destination','as':'max_dest'},{'fn':'min','field':'ts','as':'min_ts'},{'fn':'max','field':"
     "'ts','as':'max_ts'},{'fn':'min','field':'id','as':'min_id'},{'fn':'max','field':'id','as':"
     "'max_id'}]}",
     "SELECT count(*) AS n, count(delay) AS nd, sum(delay) AS sum_delay, min(delay) AS min_delay, "
     "max(delay) AS max_delay, avg(delay) AS avg_delay, sum(distance) AS sum_distance, "
     "min(distance) AS min_distance, max(distance) AS max_distance, avg(distance) AS "
     "avg_distance, min(origin) AS min_origin, max(destination) AS max_dest, iso(min(ts)) AS "
     "min_ts, iso(max(ts)) AS max_ts, min(id) AS min_id, max(id) AS max_id FROM flights"},
    {"{'aggregates':[{'fn':'count_distinct','field':'origin','as':'a'},{'fn':'count_distinct',"
     "'field':'destination','as':'b'},{'fn':'count_distinct','field':'delay','as':'c'},{'fn':"
     "'count_distinct','field':'distance','as':'d'},{'fn':'count_distinct','field':'ts','as':'e'},"
     "{'fn':'count_distinct','field':'id','as':'f'}]}",
     "SELECT count(DISTINCT origin) AS a, count(DISTINCT destination) AS b, count(DISTINCT delay) "
     "AS c, count(DISTINCT distance) AS d, count(DISTINCT ts) AS e, count(DISTINCT id) AS f FROM "
     "flights"},
    {"{'where':{'field':'delay','op':'is_null'},'aggregates':[{'fn':'count','as':'n'},{'fn':"
     "'count','field':'delay','as':'nd'},{'fn':'sum','field':'delay','as':'sum_delay'},{'fn':'avg',"
     "'field':'delay','as':'avg_delay'},{'fn':'min','field':'delay','as':'min_delay'},{'fn':'max',"
     "'field':'delay','as':'max_delay'},{'fn':'count_distinct','field':'delay','as':'cd'},{'fn':"
     "'sum','field':'distance','as':'sum_distance'}]}",
     "SELECT count(*) AS n, count(delay) AS nd, sum(delay) AS sum_delay, avg(delay) AS avg_delay, "
     "min(delay) AS min_delay, max(delay) AS max_delay, count(DISTINCT delay) AS cd, "
     "sum(distance) AS sum_distance FROM flights WHERE delay IS NULL"},
    /* The default column names. */
    {"{'aggregates':[{'fn':'count'},{'fn':'count','field':'delay'},{'fn':'sum','field':'delay'},"
     "{'fn':'avg','field':'distance'},{'fn':'max','field':'ts'},{'fn':'count_distinct','field':"
     "'origin'}]}",
     "SELECT count(*) AS \"count\", count(delay) AS count_delay, sum(delay) AS sum_delay, "
     "avg(distance) AS avg_distance, iso(max(ts)) AS max_ts, count(DISTINCT origin) AS "
     "count_distinct_origin FROM flights"},
    /* ---- group_by ---- */
    {"{'group_by':['origin'],'aggregates':[{'fn':'count','as':'n'},{'fn':'count','field':'delay',"
     "'as':'nd'},{'fn':'avg','field':'delay','as':'avg_delay'},{'fn':'sum','field':'distance','as':"
     "'sum_distance'},{'fn':'sum','field':'delay','as':'sum_delay'}]}",
     "SELECT origin, count(*) AS n, count(delay) AS nd, avg(delay) AS avg_delay, sum(distance) AS "
     "sum_distance, sum(delay) AS sum_delay FROM flights GROUP BY origin ORDER BY origin ASC "
     "NULLS LAST LIMIT 1000"},
    /* A nullable key: the null group comes last. */
    {"{'group_by':['delay'],'aggregates':[{'fn':'count','as':'n'},{'fn':'min','field':'id','as':"
     "'first'},{'fn':'max','field':'ts','as':'last_ts'},{'fn':'avg','field':'distance','as':"
     "'avg_distance'}]}",
     "SELECT delay, count(*) AS n, min(id) AS first, iso(max(ts)) AS last_ts, avg(distance) AS "
     "avg_distance FROM flights GROUP BY delay ORDER BY delay ASC NULLS LAST LIMIT 1000"},
    {"{'where':{'field':'origin','op':'prefix','value':'S'},'group_by':['origin','destination'],"
     "'aggregates':[{'fn':'count','as':'n'},{'fn':'avg','field':'delay','as':'avg_delay'},{'fn':"
     "'max','field':'delay','as':'max_delay'}]" MAX_ROWS_LIMIT "}",
     "SELECT origin, destination, count(*) AS n, avg(delay) AS avg_delay, max(delay) AS max_delay "
     "FROM flights WHERE substr(origin, 1, 1) = 'S' GROUP BY origin, destination ORDER BY origin "
     "ASC NULLS LAST, destination ASC NULLS LAST"},
    {"{'where':{'or':[{'field':'delay','op':'is_null'},{'field':'delay','op':'>','value':250}]},"
     "'group_by':['delay','origin'],'aggregates':[{'fn':'count','as':'n'}]" MAX_ROWS_LIMIT "}",
     "SELECT delay, origin, count(*) AS n FROM flights WHERE delay IS NULL OR delay > 250 GROUP BY "
     "delay, origin ORDER BY delay ASC NULLS LAST, origin ASC NULLS LAST"},
    {"{'group_by':['destination'],'select':['n','destination'],'aggregates':[{'fn':'count','as':"
     "'n'},{'fn':'min','field':'distance','as':'min_distance'},{'fn':'max','field':'origin','as':"
     "'max_origin'}]}",
     "SELECT count(*) AS n, destination, min(distance) AS min_distance, max(origin) AS max_origin "
     "FROM flights GROUP BY destination ORDER BY destination LIMIT 1000"},
    {"{'group_by':['origin'],'aggregates':[{'fn':'avg','field':'distance','as':'avg_distance'},"
     "{'fn':'min','field':'destination','as':'lo'},{'fn':'max','field':'destination','as':'hi'},"
     "{'fn':'count_distinct','field':'destination','as':'nd'},{'fn':'count_distinct','field':"
     "'delay','as':'ndelay'}]}",
     "SELECT origin, avg(distance) AS avg_distance, min(destination) AS lo, max(destination) AS "
     "hi, count(DISTINCT destination) AS nd, count(DISTINCT delay) AS ndelay FROM flights GROUP "
     "BY origin ORDER BY origin LIMIT 1000"},
    /* A timestamp key. */
    {"{'where':{'field':'origin','op':'=','value':'ORD'},'group_by':['ts'],'aggregates':[{'fn':"
     "'count','as':'n'},{'fn':'sum','field':'delay','as':'sum_delay'}]" MAX_ROWS_LIMIT "}",
     "SELECT iso(ts) AS ts, count(*) AS n, sum(delay) AS sum_delay FROM flights WHERE origin = "
     "'ORD' GROUP BY flights.ts ORDER BY flights.ts"},
    /* Many groups, the default limit. */
    {"{'group_by':['ts'],'aggregates':[{'fn':'count','as':'n'}]}",
     "SELECT iso(ts) AS ts, count(*) AS n FROM flights GROUP BY flights.ts ORDER BY flights.ts "
     "LIMIT 1000"},
    /* ---- ordered by aggregates, ties by the group keys ---- */
    {"{'group_by':['destination'],'aggregates':[{'fn':'count','as':'n'}],'order_by':[{'field':'n',"
     "'dir':'desc'}],'limit':10}",
     "SELECT destination, count(*) AS n FROM flights GROUP BY destination ORDER BY n DESC NULLS "
     "FIRST, destination ASC NULLS LAST LIMIT 10"},
    {"{'group_by':['origin'],'aggregates':[{'fn':'avg','field':'delay','as':'avg_delay'},{'fn':"
     "'count','as':'n'}],'order_by':[{'field':'avg_delay','dir':'asc'}],'limit':15}",
     "SELECT origin, avg(delay) AS avg_delay, count(*) AS n FROM flights GROUP BY origin ORDER BY "
     "avg_delay ASC NULLS LAST, origin ASC NULLS LAST LIMIT 15"},
    {"{'group_by':['origin'],'aggregates':[{'fn':'avg','field':'delay','as':'avg_delay'}],"
     "'order_by':[{'field':'avg_delay','dir':'desc'}]}",
     "SELECT origin, avg(delay) AS avg_delay FROM flights GROUP BY origin ORDER BY avg_delay DESC "
     "NULLS FIRST, origin ASC NULLS LAST LIMIT 1000"},
    {"{'group_by':['origin'],'aggregates':[{'fn':'count','as':'n'}],'order_by':[{'field':'n','dir':"
     "'desc'},{'field':'origin','dir':'desc'}],'limit':25}",
     "SELECT origin, count(*) AS n FROM flights GROUP BY origin ORDER BY n DESC NULLS FIRST, "
     "origin DESC NULLS FIRST LIMIT 25"},
    {"{'group_by':['origin'],'aggregates':[{'fn':'count_distinct','field':'destination','as':"
     "'nd'}],'order_by':[{'field':'nd','dir':'desc'}],'limit':20}",
     "SELECT origin, count(DISTINCT destination) AS nd FROM flights GROUP BY origin ORDER BY nd "
     "DESC NULLS FIRST, origin ASC NULLS LAST LIMIT 20"},
    {"{'where':{'not':{'field':'delay','op':'is_null'}},'group_by':['origin'],'aggregates':[{'fn':"
     "'sum','field':'delay','as':'sum_delay'},{'fn':'min','field':'ts','as':'first_ts'}],"
     "'order_by':[{'field':'sum_delay','dir':'desc'}],'limit':10}",
     "SELECT origin, sum(delay) AS sum_delay, iso(min(ts)) AS first_ts FROM flights WHERE NOT "
     "(delay IS NULL) GROUP BY origin ORDER BY sum_delay DESC NULLS FIRST, origin ASC NULLS LAST "
     "LIMIT 10"},
    {"{'group_by':['delay'],'aggregates':[{'fn':'count','as':'n'}],'order_by':[{'field':'delay',"
     "'dir':'desc'}],'limit':12}",
     "SELECT delay, count(*) AS n FROM flights GROUP BY delay ORDER BY delay DESC NULLS FIRST "
     "LIMIT 12"},
    /* ---- time buckets ---- */
    {"{'where':{'field':'origin','op':'=','value':'ORD'},'time_bucket':{'field':'ts','width':'1h',"
     "'as':'hour'},'aggregates':[{'fn':'count','as':'n'},{'fn':'avg','field':'delay','as':"
     "'avg_delay'}]" MAX_ROWS_LIMIT "}",
     "SELECT iso(" BUCKET_1H ") AS hour, count(*) AS n, avg(delay) AS avg_delay FROM flights WHERE "
     "origin = 'ORD' GROUP BY " BUCKET_1H " ORDER BY " BUCKET_1H},
    {"{'where':{'field':'origin','op':'in','value':['SFO','LAX']},'group_by':['origin'],"
     "'time_bucket':{'field':'ts','width':'1d','as':'day'},'aggregates':[{'fn':'count','as':'n'},"
     "{'fn':'sum','field':'delay','as':'sum_delay'}]" MAX_ROWS_LIMIT "}",
     "SELECT origin, iso(" BUCKET_1D ") AS day, count(*) AS n, sum(delay) AS sum_delay FROM "
     "flights WHERE origin IN ('SFO','LAX') GROUP BY origin, " BUCKET_1D
     " ORDER BY origin, " BUCKET_1D},
    /* Every day, 1966's included: buckets round down before 1970 too. */
    {"{'time_bucket':{'field':'ts','width':'1d','as':'day'},'aggregates':[{'fn':'count','as':'n'},"
     "{'fn':'min','field':'delay','as':'lo'},{'fn':'max','field':'delay','as':'hi'}]" MAX_ROWS_LIMIT
     "}",
     "SELECT iso(" BUCKET_1D ") AS day, count(*) AS n, min(delay) AS lo, max(delay) AS hi FROM "
     "flights GROUP BY " BUCKET_1D " ORDER BY " BUCKET_1D},
    {"{'where':{'field':'ts','op':'<','value':0},'time_bucket':{'field':'ts','width':'1h'},"
     "'aggregates':[{'fn':'count','as':'n'}]" MAX_ROWS_LIMIT "}",
     "SELECT iso(" BUCKET_1H ") AS ts, count(*) AS n FROM flights WHERE ts < 0 GROUP BY " BUCKET_1H
     " ORDER BY " BUCKET_1H},
    {"{'where':{'field':'destination','op':'=','value':'SEA'},'time_bucket':{'field':'ts','width':"
     "'15m','as':'q'},'aggregates':[{'fn':'count','as':'n'}]" MAX_ROWS_LIMIT "}",
     "SELECT iso(" BUCKET_15M ") AS q, count(*) AS n FROM flights WHERE destination = 'SEA' GROUP "
     "BY " BUCKET_15M " ORDER BY " BUCKET_15M},
    {"{'time_bucket':{'field':'ts','width':'7d','as':'week'},'aggregates':[{'fn':'count','as':'n'},"
     "{'fn':'count_distinct','field':'origin','as':'origins'},{'fn':'avg','field':'delay','as':"
     "'avg_delay'}]}",
     "SELECT iso(" BUCKET_7D ") AS week, count(*) AS n, count(DISTINCT origin) AS origins, "
     "avg(delay) AS avg_delay FROM flights GROUP BY " BUCKET_7D " ORDER BY " BUCKET_7D
     " LIMIT 1000"},
    {"{'time_bucket':{'field':'ts','width':'1h','as':'hour'},'aggregates':[{'fn':'count','as':"
     "'n'}],'order_by':[{'field':'hour','dir':'desc'}],'limit':5}",
     "SELECT iso(" BUCKET_1H ") AS hour, count(*) AS n FROM flights GROUP BY " BUCKET_1H
     " ORDER BY " BUCKET_1H " DESC LIMIT 5"},
    {"{'time_bucket':{'field':'ts','width':'1h','as':'hour'},'aggregates':[{'fn':'count','as':"
     "'n'}],'order_by':[{'field':'n','dir':'desc'}],'limit':7}",
     "SELECT iso(" BUCKET_1H ") AS hour, count(*) AS n FROM flights GROUP BY " BUCKET_1H
     " ORDER BY n DESC, " BUCKET_1H " ASC LIMIT 7"},
    /* ---- order_by on fields, ties by id ---- */
    {"{'select':['id','delay'],'order_by':[{'field':'delay','dir':'asc'}],'limit':50}",
     "SELECT id, delay FROM flights ORDER BY delay ASC NULLS LAST, id LIMIT 50"},
    {"{'select':['id','delay'],'order_by':[{'field':'delay','dir':'desc'}],'limit':30}",
     "SELECT id, delay FROM flights ORDER BY delay DESC NULLS FIRST, id LIMIT 30"},
    {"{'select':['id','delay'],'where':{'field':'delay','op':'>','value':100},'order_by':['delay'"
     "]" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE delay > 100 ORDER BY delay ASC NULLS LAST, id"},
    {"{'select':['origin','distance','id'],'order_by':[{'field':'origin','dir':'asc'},{'field':"
     "'distance','dir':'desc'}],'limit':100}",
     "SELECT origin, distance, id FROM flights ORDER BY origin ASC, distance DESC, id LIMIT 100"},
    {"{'select':['id','ts'],'order_by':[{'field':'ts','dir':'desc'}],'limit':20}",
     "SELECT id, iso(ts) AS ts FROM flights ORDER BY flights.ts DESC, id LIMIT 20"},
    {"{'where':{'field':'origin','op':'=','value':'SFO'},'order_by':[{'field':'distance','dir':"
     "'asc'}]" MAX_ROWS_LIMIT "}",
     "SELECT " ALL_COLS " FROM flights WHERE origin = 'SFO' ORDER BY distance ASC, id"},
    {"{'select':['id','destination','delay'],'order_by':[{'field':'destination','dir':'desc'},"
     "{'field':'delay','dir':'asc'}],'limit':200}",
     "SELECT id, destination, delay FROM flights ORDER BY destination DESC, delay ASC NULLS LAST, "
     "id LIMIT 200"},
    /* ---- more literals, strings and orders ---- */
    {"{'select':['id','delay'],'where':{'field':'delay','op':'in','value':[1.0,2.5,-3]"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT id, delay FROM flights WHERE delay IN (1.0,2.5,-3) ORDER BY id"},
    {"{'where':{'field':'distance','op':'!=','value':1750},'aggregates':[{'fn':'count','as':'n'},"
     "{'fn':'sum','field':'distance','as':'sum_distance'}]}",
     "SELECT count(*) AS n, sum(distance) AS sum_distance FROM flights WHERE distance <> 1750"},
    {"{'select':['id','destination'],'where':{'field':'destination','op':'<','value':'BOS'"
     "}" MAX_ROWS_LIMIT "}",
     "SELECT id, destination FROM flights WHERE destination < 'BOS' ORDER BY id"},
    {"{'aggregates':[{'fn':'count','as':'n'}],'where':{'or':[{'field':'origin','op':'prefix','"
     "value':"
     "'SFO'},{'field':'destination','op':'prefix','value':'SFOX'}]}}",
     "SELECT count(*) AS n FROM flights WHERE substr(origin, 1, 3) = 'SFO' OR substr(destination, "
     "1, 4) = 'SFOX'"},
    {"{'aggregates':[{'fn':'count','as':'n'}],'where':{'field':'destination','op':'contains','"
     "value':"
     "''}}",
     "SELECT count(*) AS n FROM flights WHERE instr(destination, '') > 0"},
    {"{'group_by':['origin'],'aggregates':[{'fn':'count','as':'n'}],'order_by':[{'field':'origin',"
     "'dir':'desc'}],'limit':30}",
     "SELECT origin, count(*) AS n FROM flights GROUP BY origin ORDER BY origin DESC LIMIT 30"},
    {"{'group_by':['destination'],'aggregates':[{'fn':'min','field':'distance','as':'lo'},{'fn':"
     "'max','field':'distance','as':'hi'},{'fn':'count_distinct','field':'distance','as':'nd'}],"
     "'order_by':[{'field':'hi','dir':'desc'}],'limit':10}",
     "SELECT destination, min(distance) AS lo, max(distance) AS hi, count(DISTINCT distance) AS "
     "nd FROM flights GROUP BY destination ORDER BY hi DESC, destination LIMIT 10"},
    {"{'select':['id','distance'],'order_by':[{'field':'distance','dir':'asc'}],'limit':25}",
     "SELECT id, distance FROM flights ORDER BY distance ASC, id LIMIT 25"},
    {"{'where':{'field':'origin','op':'in','value':['SFO','SEA','DEN']},'group_by':['origin'],"
     "'time_bucket':{'field':'ts','width':'1d','as':'day'},'aggregates':[{'fn':'count','as':'n'}],"
     "'order_by':[{'field':'day','dir':'desc'}],'limit':40}",
     "SELECT origin, iso(" BUCKET_1D ") AS day, count(*) AS n FROM flights WHERE origin IN "
     "('SFO','SEA','DEN') GROUP BY origin, " BUCKET_1D " ORDER BY " BUCKET_1D
     " DESC, origin, " BUCKET_1D " LIMIT 40"},
    /* ---- limits ---- */
    {"{'select':['id'],'limit':0}", "SELECT id FROM flights ORDER BY id LIMIT 0"},
    {"{'where':{'field':'delay','op':'>','value':60},'limit':1}",
     "SELECT " ALL_COLS " FROM flights WHERE delay > 60 ORDER BY id LIMIT 1"},
    {"{'select':['id','destination'],'where':{'field':'delay','op':'>','value':0}}",
     "SELECT id, destination FROM flights WHERE delay > 0 ORDER BY id LIMIT 1000"},
};

/* sql on flights_b (the state before the third layer) instead of flights. */
static void sql_before(struct strbuf *out, const char *sql)
{
    for (const char *p = sql; *p;) {
        const char *hit = strstr(p, "flights");

        if (!hit) {
            strbuf_addstr(out, p);
            break;
        }
        strbuf_add(out, p, (size_t)(hit - p) + 7);
        strbuf_addstr(out, "_b");
        p = hit + 7;
    }
}

/*
 * Runs query q on both sides, at as_of when > 0 (SQL on flights_b);
 * false (after printing why) if they differ. *rows gets SQLite's count.
 */
static bool check_query(const struct oracle *o, size_t idx, const struct oq *q, long long as_of,
                        size_t *rows)
{
    struct strbuf body = STRBUF_INIT, why = STRBUF_INIT, sql = STRBUF_INIT;
    struct hresp r;
    json_t *want;
    bool same;

    query_body(&body, q->json);
    if (as_of > 0) {
        strbuf_setlen(&body, body.len - 1);
        strbuf_addf(&body, ",\"as_of\":%lld}", as_of);
        sql_before(&sql, q->sql);
    } else {
        strbuf_addstr(&sql, q->sql);
    }
    want = sql_rows(o->db, sql.buf);
    post_query(o, body.buf, &r);
    if (r.status != 200) {
        strbuf_addf(&why, "status %d: %.300s", r.status, r.body ? r.body : "");
        same = false;
    } else {
        same = same_rows(want, api_get(&r, "rows"), &why);
        if (as_of > 0 && api_int(&r, "version") != as_of) {
            strbuf_addf(&why, "version %lld, want %lld", api_int(&r, "version"), as_of);
            same = false;
        }
    }
    *rows = json_array_size(want);
    if (!same)
        fprintf(stderr, "oracle: query %zu differs: %s\n  json: %s\n   sql: %s\n", idx, why.buf,
                body.buf, sql.buf);
    hresp_free(&r);
    json_decref(want);
    strbuf_release(&body);
    strbuf_release(&why);
    strbuf_release(&sql);
    return same;
}

START_TEST(test_queries)
{
    struct oracle o;
    size_t n = sizeof(queries) / sizeof(queries[0]), failed = 0, failed_as_of = 0, nonempty = 0;

    setup(&o);
    for (size_t i = 0; i < n; i++) {
        size_t rows;

        if (!check_query(&o, i, &queries[i], 0, &rows))
            failed++;
        nonempty += rows > 0;
    }
    /* Again as_of the version before the third layer of writes. */
    for (size_t i = 0; i < n; i++) {
        size_t rows;

        if (!check_query(&o, i, &queries[i], o.version_b, &rows))
            failed_as_of++;
    }
    ck_assert_msg(!failed && !failed_as_of,
                  "%zu of %zu queries differ from SQLite, and %zu as_of %lld (printed above)",
                  failed, n, failed_as_of, o.version_b);
    /* The list is not trivially empty. */
    ck_assert_uint_ge(n, 40);
    ck_assert_uint_ge(nonempty, n - 5);
    teardown_oracle(&o);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Paging and streams */

/*
 * Writes made between two pages (to o->recs and the server, not to
 * SQLite): a new delay and destination for records behind and ahead of
 * any cursor, a new record, a deleted one.
 */
static void write_between(struct oracle *o)
{
    struct strbuf sb = STRBUF_INIT;
    struct rec *extra;
    size_t n = 0;
    long long round = ++o->rounds;

    for (size_t i = (size_t)round * 37; i < o->n; i += 1500) {
        struct rec *r = &o->recs[i];

        if (r->deleted)
            continue;
        r->delay = round * 100000 + (long long)i;
        r->delay_null = false;
        st_strlcpy(r->dest, "PGD", sizeof(r->dest));
        add_ndjson(&sb, r);
        n++;
    }
    ck_assert_uint_lt(o->nall, o->cap);
    extra = &o->recs[o->nall++];
    memset(extra, 0, sizeof(*extra));
    extra->id = 100000 + round;
    extra->ts = 978307200000LL + round * 60000;
    extra->delay_null = true;
    extra->distance = 1.5;
    st_strlcpy(extra->origin, "NEW", sizeof(extra->origin));
    st_strlcpy(extra->dest, "NEW", sizeof(extra->dest));
    add_ndjson(&sb, extra);
    ingest(o, &sb, n + 1);
    strbuf_release(&sb);
    for (size_t i = (size_t)round * 613; i < o->n; i++) {
        if (!o->recs[i].deleted) {
            delete_record(o, o->recs[i].id);
            o->recs[i].deleted = true;
            break;
        }
    }
}

/*
 * Fetches q (a test query without limit) page by page, with writes
 * after the first and the fourth page; returns the rows (caller decrefs)
 * and checks the pages: each full but the last, one version throughout,
 * the last without a cursor.
 */
static json_t *all_pages(struct oracle *o, const char *q, int page, int *pages)
{
    json_t *rows = json_array();
    char *cursor = NULL;
    long long version = 0;

    for (*pages = 1;; (*pages)++) {
        struct strbuf body = STRBUF_INIT;
        struct hresp r;
        json_t *got;
        const json_t *nc;

        query_body(&body, q);
        strbuf_setlen(&body, body.len - 1);
        strbuf_addf(&body, ",\"limit\":%d", page);
        if (cursor)
            strbuf_addf(&body, ",\"cursor\":\"%s\"", cursor);
        strbuf_addch(&body, '}');
        post_query(o, body.buf, &r);
        api_expect(&r, 200);
        got = api_get(&r, "rows");
        ck_assert(json_is_array(got));
        if (*pages == 1)
            version = api_int(&r, "version");
        ck_assert_int_eq(api_int(&r, "version"), version);
        json_array_extend(rows, got);
        free(cursor);
        cursor = NULL;
        nc = api_get(&r, "next_cursor");
        if (json_is_string(nc)) {
            ck_assert_uint_eq(json_array_size(got), (size_t)page);
            cursor = strdup(json_string_value(nc));
        } else {
            ck_assert_msg(json_is_null(nc), "next_cursor: %.200s", r.body);
            ck_assert_uint_le(json_array_size(got), (size_t)page);
        }
        hresp_free(&r);
        strbuf_release(&body);
        if (!cursor)
            break;
        ck_assert_int_lt(*pages, 1000);
        if (*pages == 1 || *pages == 4)
            write_between(o);
    }
    return rows;
}

/* Pages q by page rows and compares them with sql's rows before the paging. */
static void check_paged(struct oracle *o, const char *q, const char *sql, int page)
{
    struct strbuf why = STRBUF_INIT, body = STRBUF_INIT;
    json_t *want, *got;
    size_t nrows;
    int pages;

    sql_sync(o);
    want = sql_rows(o->db, sql);
    got = all_pages(o, q, page, &pages);
    query_body(&body, q);
    ck_assert_msg(same_rows(want, got, &why), "%s by %d: the pages differ from SQLite: %s",
                  body.buf, page, why.buf);
    /* Full pages but the last, which is not empty unless the answer is. */
    nrows = json_array_size(want);
    ck_assert_int_eq(pages, nrows ? (int)((nrows + (size_t)page - 1) / (size_t)page) : 1);
    ck_assert_int_ge(pages, 5);
    json_decref(want);
    json_decref(got);
    strbuf_release(&why);
    strbuf_release(&body);
}

START_TEST(test_paging)
{
    static const char plain[] = "{}";
    static const char sql_plain[] = "SELECT " ALL_COLS " FROM flights ORDER BY id";
    struct oracle o;

    setup(&o);
    /* By key: the plain query, 500 rows a page. */
    check_paged(&o, plain, sql_plain, 500);
    /* The writes made between its pages are there for a new query. */
    ck_assert_int_eq(o.rounds, 2);
    sql_sync(&o);
    ck_assert(check_query(&o, 0, &(struct oq){"{'limit':100000}", sql_plain}, 0, &(size_t){0}));
    /* By offset: a filtered plain query with an order, and groups. */
    check_paged(&o,
                "{'select':['id','origin','delay'],'where':{'field':'distance','op':'>','value':"
                "1000},'order_by':[{'field':'delay','dir':'desc'},'origin']}",
                "SELECT id, origin, delay FROM flights WHERE distance > 1000 ORDER BY delay DESC "
                "NULLS FIRST, origin, id",
                1000);
    check_paged(&o,
                "{'group_by':['origin','destination'],'aggregates':[{'fn':'count','as':'n'},{'fn':"
                "'avg','field':'delay','as':'avg_delay'},{'fn':'sum','field':'distance','as':'sum_"
                "distance'}]}",
                "SELECT origin, destination, count(*) AS n, avg(delay) AS avg_delay, "
                "sum(distance) AS sum_distance FROM flights GROUP BY origin, destination ORDER BY "
                "origin, destination",
                250);
    ck_assert_int_eq(o.rounds, 6);
    teardown_oracle(&o);
}
END_TEST

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

/*
 * Streams q (Accept: application/x-ndjson) and compares its lines with
 * sql's rows, then the completion line; returns that line's next_cursor
 * (true if a string).
 */
static bool check_stream(const struct oracle *o, const char *q, const char *sql, long long version)
{
    struct strbuf body = STRBUF_INIT, why = STRBUF_INIT;
    struct hconn *c = hc_open(o->s.query_port);
    struct hresp r;
    json_t *lines, *last, *want = sql_rows(o->db, sql);
    size_t n;
    bool more;

    query_body(&body, q);
    ck_assert_int_eq(
        api_send(c, "POST", QUERY, o->key, NDJSON_ACCEPT, body.buf, body.len, 60000, &r), HREAD_OK);
    hc_close(c);
    api_expect(&r, 200);
    ck_assert(hresp_header_has(&r, "Content-Type", "application/x-ndjson"));
    lines = ndjson_lines(r.body);
    n = json_array_size(lines);
    ck_assert_uint_ge(n, 1);
    last = json_incref(json_array_get(lines, n - 1));
    json_array_remove(lines, n - 1);
    ck_assert_msg(json_is_true(json_object_get(last, "done")), "%s: last line %.200s", body.buf,
                  r.body + (r.body_len > 200 ? r.body_len - 200 : 0));
    ck_assert_int_eq(json_integer_value(json_object_get(last, "rows")), (json_int_t)(n - 1));
    ck_assert_int_eq(json_integer_value(json_object_get(last, "version")), version);
    ck_assert_msg(same_rows(want, lines, &why), "%s: the stream differs from SQLite: %s", body.buf,
                  why.buf);
    more = json_is_string(json_object_get(last, "next_cursor"));
    json_decref(last);
    json_decref(lines);
    json_decref(want);
    hresp_free(&r);
    strbuf_release(&body);
    strbuf_release(&why);
    return more;
}

START_TEST(test_stream)
{
    struct oracle o;
    long long v;

    setup(&o);
    /* Streams read the compacted segments and the memtable. */
    {
        struct hresp r;

        api_req(o.s.query_port, "POST", "/v1/admin/compact", o.s.token, NULL, NULL, &r);
        api_expect(&r, 200);
        hresp_free(&r);
    }
    v = api_version(&o.s, "air", o.key);
    /* Every row, past limits.max_query_rows's default page of 1000. */
    ck_assert(!check_stream(&o, "{}", "SELECT " ALL_COLS " FROM flights ORDER BY id", v));
    ck_assert(!check_stream(&o,
                            "{'select':['id','delay','origin'],'where':{'or':[{'field':'delay',"
                            "'op':'is_null'},{'field':'origin','op':'prefix','value':'B'}]}}",
                            "SELECT id, delay, origin FROM flights WHERE delay IS NULL OR "
                            "substr(origin, 1, 1) = 'B' ORDER BY id",
                            v));
    /* Ordered, grouped: every group. */
    ck_assert(!check_stream(&o,
                            "{'group_by':['origin','destination'],'aggregates':[{'fn':'count','as':"
                            "'n'},{'fn':'max','field':'delay','as':'max_delay'}],'order_by':[{"
                            "'field':'n','dir':'desc'}]}",
                            "SELECT origin, destination, count(*) AS n, max(delay) AS max_delay "
                            "FROM flights GROUP BY origin, destination ORDER BY n DESC, origin, "
                            "destination",
                            v));
    ck_assert(!check_stream(&o,
                            "{'time_bucket':{'field':'ts','width':'1h','as':'hour'},'aggregates':[{"
                            "'fn':'avg','field':'delay','as':'avg_delay'}]}",
                            "SELECT iso(" BUCKET_1H ") AS hour, avg(delay) AS avg_delay FROM "
                            "flights GROUP BY " BUCKET_1H " ORDER BY " BUCKET_1H,
                            v));
    /* A limit applies, and the completion line has the cursor. */
    ck_assert(check_stream(&o,
                           "{'select':['id','distance'],'order_by':[{'field':'distance','dir':"
                           "'desc'}],'limit':100}",
                           "SELECT id, distance FROM flights ORDER BY distance DESC, id LIMIT 100",
                           v));
    teardown_oracle(&o);
}
END_TEST

int main(void)
{
    Suite *s;
    TCase *tc;

    if (!data_present()) {
        if (getenv("STRATA_ORACLE_OPTIONAL") && !strcmp(getenv("STRATA_ORACLE_OPTIONAL"), "1")) {
            printf("oracle: SKIPPED: no %s under STRATA_VEGA_DIR (%s); STRATA_ORACLE_OPTIONAL=1 "
                   "lets this pass without it\n",
                   VEGA_FILE, getenv("STRATA_VEGA_DIR") ? getenv("STRATA_VEGA_DIR") : "unset");
            return 0;
        }
        fprintf(stderr,
                "oracle: no %s under STRATA_VEGA_DIR (%s): run scripts/deps.sh --test to fetch "
                "it (or set STRATA_ORACLE_OPTIONAL=1 to skip this suite)\n",
                VEGA_FILE, getenv("STRATA_VEGA_DIR") ? getenv("STRATA_VEGA_DIR") : "unset");
        return 1;
    }
    s = suite_create("oracle");
    tc = harness_tcase("oracle", 60);
    harness_init();
    tcase_add_test(tc, test_queries);
    tcase_add_test(tc, test_paging);
    tcase_add_test(tc, test_stream);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
