/*
 * Unit tests for src/engine/decode.c, the ingest decoder: every type rule
 * and error reason, escapes and UTF-8, timestamps, number limits, NDJSON
 * framing (blank lines, CRLF, broken lines), the JSON-array form, atomic
 * and partial modes, the details cap, size limits, json values.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/decode.h"
#include "engine/schema.h"
#include "util/strbuf.h"

/*
 * The test schema covers every type, nullable fields and defaults:
 *   id int64 (key), ts timestamp, s string?, f float64 = 1.5, b bool = true,
 *   n int64?, j json?, jd json = {"a":[1,2]}, name string = "dflt"
 */
enum { F_ID, F_TS, F_S, F_F, F_B, F_N, F_J, F_JD, F_NAME, NF };

static struct schema *sch;
static struct decode_result res;
static struct decode_opts opts;
static struct err err;
static enum st_status rc;

static struct field mkfield(const char *name, enum field_type t, bool nullable)
{
    struct field f;

    memset(&f, 0, sizeof(f));
    st_strlcpy(f.name, name, sizeof(f.name));
    f.type = t;
    f.nullable = nullable;
    return f;
}

static void setup(void)
{
    static const char *const pk[] = {"id"};
    struct field f[NF];

    f[F_ID] = mkfield("id", FIELD_INT64, false);
    f[F_TS] = mkfield("ts", FIELD_TIMESTAMP, false);
    f[F_S] = mkfield("s", FIELD_STRING, true);
    f[F_F] = mkfield("f", FIELD_FLOAT64, false);
    f[F_F].has_default = true;
    f[F_F].def.type = FIELD_FLOAT64;
    f[F_F].def.u.f = 1.5;
    f[F_B] = mkfield("b", FIELD_BOOL, false);
    f[F_B].has_default = true;
    f[F_B].def.type = FIELD_BOOL;
    f[F_B].def.u.b = true;
    f[F_N] = mkfield("n", FIELD_INT64, true);
    f[F_J] = mkfield("j", FIELD_JSON, true);
    f[F_JD] = mkfield("jd", FIELD_JSON, false);
    f[F_JD].has_default = true;
    f[F_JD].def.type = FIELD_JSON;
    f[F_JD].def.u.s.ptr = "{\"a\":[1,2]}";
    f[F_JD].def.u.s.len = 11;
    f[F_NAME] = mkfield("name", FIELD_STRING, false);
    f[F_NAME].has_default = true;
    f[F_NAME].def.type = FIELD_STRING;
    f[F_NAME].def.u.s.ptr = "dflt";
    f[F_NAME].def.u.s.len = 4;
    ck_assert_int_eq(schema_new(1, f, NF, pk, 1, "ts", &sch, &err), ST_OK);
    decode_result_init(&res);
    decode_opts_init(&opts);
    opts.partial = true;
}

static void teardown(void)
{
    decode_result_release(&res);
    schema_free(sch);
}

static enum st_status run(const char *body, size_t len)
{
    err_clear(&err);
    rc = decode_batch(sch, body, len, &opts, &res, &err);
    return rc;
}

static enum st_status nd(const char *body)
{
    opts.format = DECODE_NDJSON;
    return run(body, strlen(body));
}

static enum st_status arr(const char *body)
{
    opts.format = DECODE_JSON_ARRAY;
    return run(body, strlen(body));
}

static struct value get(size_t row, int field)
{
    struct value v;

    ck_assert_uint_lt(row, res.nrows);
    schema_row_get(sch, decode_result_row(&res, row), (uint32_t)field, &v);
    return v;
}

/* A record with the two required fields and then more (rest starts with ','). */
static const char *rec(const char *rest)
{
    static char buf[8192];

    snprintf(buf, sizeof(buf), "{\"id\":1,\"ts\":0%s}\n", rest);
    return buf;
}

/* Decodes one NDJSON record and expects it to be accepted. */
static void ok1(const char *body)
{
    ck_assert_int_eq(nd(body), ST_OK);
    ck_assert_msg(res.rejected == 0, "'%s' rejected: %s: %s", body,
                  res.ndetails ? res.details[0].field : "",
                  res.ndetails ? res.details[0].reason : "");
    ck_assert_uint_eq(res.nrows, 1);
}

/* Decodes one NDJSON record and expects its rejection for field with reason. */
static void bad1(const char *body, const char *field, const char *reason)
{
    ck_assert_int_eq(nd(body), ST_OK);
    ck_assert_msg(res.rejected == 1, "'%s' accepted", body);
    ck_assert_uint_eq(res.nrows, 0);
    ck_assert_uint_eq(res.ndetails, 1);
    ck_assert_uint_eq(res.details[0].index, 0);
    ck_assert_str_eq(res.details[0].field, field);
    ck_assert_msg(strstr(res.details[0].reason, reason), "'%s': reason '%s' lacks '%s'", body,
                  res.details[0].reason, reason);
}

/* The int64 field n of a one-record body. */
static int64_t int_n(const char *lit)
{
    char b[256];

    snprintf(b, sizeof(b), ",\"n\":%s", lit);
    ok1(rec(b));
    return get(0, F_N).u.i;
}

static double flt_f(const char *lit)
{
    char b[512];

    snprintf(b, sizeof(b), ",\"f\":%s", lit);
    ok1(rec(b));
    return get(0, F_F).u.f;
}

static int64_t ts_of(const char *lit)
{
    char b[256];

    snprintf(b, sizeof(b), "{\"id\":1,\"ts\":%s}", lit);
    ok1(b);
    return get(0, F_TS).u.i;
}

/* The stored string s of a record whose s is the JSON text lit. */
static struct value str_s(const char *lit)
{
    char b[512];

    snprintf(b, sizeof(b), ",\"s\":%s", lit);
    ok1(rec(b));
    return get(0, F_S);
}

static void str_is(const char *lit, const char *want, size_t wlen)
{
    struct value v = str_s(lit);

    ck_assert_msg(v.u.s.len == wlen && !memcmp(v.u.s.ptr, want, wlen), "%s -> '%.*s'", lit,
                  (int)v.u.s.len, v.u.s.ptr);
}

static void json_is(const char *lit, const char *want)
{
    char b[4096];
    struct value v;

    snprintf(b, sizeof(b), ",\"j\":%s", lit);
    ok1(rec(b));
    v = get(0, F_J);
    ck_assert(!v.is_null);
    ck_assert_msg(v.u.s.len == strlen(want) && !memcmp(v.u.s.ptr, want, v.u.s.len),
                  "%s -> '%.*s', want '%s'", lit, (int)v.u.s.len, v.u.s.ptr, want);
}

static void bad_json_syntax(const char *rest)
{
    bad1(rec(rest), "", "invalid JSON at byte");
}

START_TEST(test_flights_and_values)
{
    const char *body =
        "{\"id\":1,\"ts\":\"2001-01-01T00:01:00Z\",\"s\":\"LAS\",\"f\":2176,\"b\":false,"
        "\"n\":33,\"j\":{\"x\":1},\"jd\":[],\"name\":\"PHL\"}\n"
        "{\"id\":2,\"ts\":\"2001-01-01T00:02:00Z\"}\n";
    struct value v;
    uint8_t key[64];
    size_t klen;

    ck_assert_int_eq(nd(body), ST_OK);
    ck_assert_uint_eq(res.nrecords, 2);
    ck_assert_uint_eq(res.rejected, 0);
    ck_assert_uint_eq(res.nrows, 2);
    ck_assert_int_eq(get(0, F_ID).u.i, 1);
    ck_assert_int_eq(get(0, F_TS).u.i, 978307260000);
    v = get(0, F_S);
    ck_assert_uint_eq(v.u.s.len, 3);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "LAS", 3), 0);
    ck_assert(get(0, F_F).u.f == 2176.0);
    ck_assert(!get(0, F_B).u.b);
    ck_assert_int_eq(get(0, F_N).u.i, 33);
    v = get(0, F_J);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "{\"x\":1}", v.u.s.len), 0);
    v = get(0, F_JD);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "[]", v.u.s.len), 0);

    /* Defaults and nulls for the missing fields. */
    ck_assert_int_eq(get(1, F_ID).u.i, 2);
    ck_assert(get(1, F_S).is_null);
    ck_assert(get(1, F_F).u.f == 1.5);
    ck_assert(get(1, F_B).u.b);
    ck_assert(get(1, F_N).is_null);
    ck_assert(get(1, F_J).is_null);
    v = get(1, F_JD);
    ck_assert_uint_eq(v.u.s.len, 11);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "{\"a\":[1,2]}", 11), 0);
    v = get(1, F_NAME);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "dflt", v.u.s.len), 0);

    /* Rows are back to back and carry the hash of their key. */
    ck_assert_uint_eq(res.row[0].off, 0);
    ck_assert_uint_eq(res.row[1].off, schema_row_len(decode_result_row(&res, 0)));
    ck_assert_uint_eq(res.rows_len, res.row[1].off + schema_row_len(decode_result_row(&res, 1)));
    for (int i = 0; i < 2; i++) {
        klen = schema_row_key(sch, decode_result_row(&res, (size_t)i), key, sizeof(key));
        ck_assert_uint_eq(res.row[i].key_hash, schema_key_hash(key, klen));
    }
    ck_assert_uint_ne(res.row[0].key_hash, res.row[1].key_hash);
}
END_TEST

START_TEST(test_field_order_and_keys)
{
    /* Any order; escaped keys match their decoded name. */
    ok1("{\"name\":\"x\",\"ts\":5,\"\\u0069d\":9,\"s\":\"y\"}");
    ck_assert_int_eq(get(0, F_ID).u.i, 9);
    ck_assert_int_eq(get(0, F_TS).u.i, 5);
    ok1("{ \"ts\" : 5 ,\t\"id\"\t:\r9 }");
    ck_assert_int_eq(get(0, F_ID).u.i, 9);

    bad1(rec(",\"idx\":1"), "idx", "unknown field 'idx'");
    bad1(rec(",\"i\":1"), "i", "unknown field 'i'");
    bad1(rec(",\"\":1"), "", "unknown field ''");
    bad1(rec(",\"Id\":1"), "Id", "unknown field 'Id'");
    bad1(rec(",\"id\":2"), "id", "duplicate field");
    bad1("{\"id\":1,\"\\u0069d\":1,\"ts\":0}", "id", "duplicate field");
    bad1("{\"id\":1}", "ts", "missing required field");
    bad1("{}", "id", "missing required field");
    /* A long unknown key is cut in the detail's field. */
    bad1(
        rec(",\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1"),
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "unknown field");
    /* Not objects. */
    bad1("[1]", "", "record is not a JSON object");
    bad1("1", "", "record is not a JSON object");
    bad1("\"x\"", "", "record is not a JSON object");
    bad1("null", "", "record is not a JSON object");
}
END_TEST

START_TEST(test_int64)
{
    ck_assert_int_eq(int_n("0"), 0);
    ck_assert_int_eq(int_n("-0"), 0);
    ck_assert_int_eq(int_n("42"), 42);
    ck_assert_int_eq(int_n("-42"), -42);
    ck_assert_int_eq(int_n("9223372036854775807"), INT64_MAX);
    ck_assert_int_eq(int_n("-9223372036854775808"), INT64_MIN);
    ck_assert_int_eq(int_n("1000000000000000000"), 1000000000000000000LL);
    ok1(rec(",\"n\":null"));
    ck_assert(get(0, F_N).is_null);

    bad_json_syntax(",\"n\":9223372036854775808");
    bad_json_syntax(",\"n\":-9223372036854775809");
    bad_json_syntax(",\"n\":99999999999999999999");
    bad_json_syntax(",\"n\":01");
    bad_json_syntax(",\"n\":-");
    bad_json_syntax(",\"n\":+1");
    bad_json_syntax(",\"n\":1.");
    bad_json_syntax(",\"n\":.5");
    bad_json_syntax(",\"n\":1e");
    bad_json_syntax(",\"n\":0x10");
    bad_json_syntax(",\"n\":NaN");
    bad_json_syntax(",\"n\":Infinity");
    bad_json_syntax(",\"n\":-Infinity");
    bad1(rec(",\"n\":1.0"), "n", "expected int64, got float");
    bad1(rec(",\"n\":1e3"), "n", "expected int64, got float");
    bad1(rec(",\"n\":-0.0"), "n", "expected int64, got float");
    bad1(rec(",\"n\":\"1\""), "n", "expected int64, got string");
    bad1(rec(",\"n\":true"), "n", "expected int64, got bool");
    bad1(rec(",\"n\":[1]"), "n", "expected int64, got array");
    bad1(rec(",\"n\":{\"a\":1}"), "n", "expected int64, got object");
    bad1("{\"id\":null,\"ts\":0}", "id", "expected int64, got null");
}
END_TEST

START_TEST(test_float64)
{
    static const char *const lits[] = {
        "0.1",
        "1.5",
        "-2.25",
        "3.141592653589793",
        "1e22",
        "1e23",
        "9007199254740993",
        "9007199254740993.0",
        "123456789012345678901234567890e-10",
        "0.000000000000000000000000000000000001",
        "2.2250738585072014e-308",
        "4.9e-324",
        "1e-400",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "17976931348623157e292",
        "0.1e1",
        "1E+2",
        "1e-2",
        "100e-2",
        "123.456e-789",
        "0.30000000000000004",
        "5e-324",
        "2.4703282292062328e-324",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "-1.00000000000000011102230246251565404236316680908203126",
    };

    for (size_t i = 0; i < ST_ARRAY_SIZE(lits); i++) {
        double want = strtod(lits[i], NULL);
        double got = flt_f(lits[i]);

        ck_assert_msg(memcmp(&got, &want, sizeof(got)) == 0, "%s: %.17g != %.17g", lits[i], got,
                      want);
    }
    ck_assert(flt_f("7") == 7.0);
    ck_assert(flt_f("-9223372036854775808") == -9223372036854775808.0);
    ck_assert(flt_f("9223372036854775807") == 9223372036854775808.0);
    ck_assert(signbit(flt_f("-0.0")));
    ck_assert(signbit(flt_f("-0e10")));
    ck_assert(!signbit(flt_f("-0"))); /* an integer literal: (double)0 */

    bad_json_syntax(",\"f\":1e309");
    bad_json_syntax(",\"f\":-1e309");
    bad_json_syntax(",\"f\":1.7976931348623159e308");
    bad_json_syntax(",\"f\":18446744073709551616");
    bad_json_syntax(",\"f\":1e99999999999999999999");
    bad_json_syntax(",\"f\":1.e5");
    bad_json_syntax(",\"f\":1e+");
    bad_json_syntax(",\"f\":--1");
    bad_json_syntax(",\"f\":1.5.5");
    ck_assert(flt_f("1e-99999999999999999999") == 0.0);
    ck_assert(flt_f("0e99999") == 0.0);
    bad1(rec(",\"f\":null"), "f", "expected float64, got null");
    bad1(rec(",\"f\":\"1.5\""), "f", "expected float64, got string");
}
END_TEST

START_TEST(test_bool)
{
    ok1(rec(",\"b\":false"));
    ck_assert(!get(0, F_B).u.b);
    ok1(rec(",\"b\":true"));
    ck_assert(get(0, F_B).u.b);
    bad1(rec(",\"b\":1"), "b", "expected bool, got integer");
    bad1(rec(",\"b\":\"true\""), "b", "expected bool, got string");
    bad1(rec(",\"b\":null"), "b", "expected bool, got null");
    bad_json_syntax(",\"b\":tru");
    bad_json_syntax(",\"b\":truex");
    bad_json_syntax(",\"b\":True");
    bad_json_syntax(",\"b\":nul");
    bad_json_syntax(",\"b\":falsey");
}
END_TEST

START_TEST(test_strings_and_escapes)
{
    str_is("\"\"", "", 0);
    str_is("\"plain\"", "plain", 5);
    str_is("\"q\\\"b\\\\s\\/\"", "q\"b\\s/", 6);
    str_is("\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t", 5);
    str_is("\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9", 4);
    str_is("\"\\u0041\\u20ac\\uffff\"", "A\xe2\x82\xac\xef\xbf\xbf", 7);
    str_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    str_is("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4);
    str_is("\"a\\u0001b\"",
           "a\x01"
           "b",
           3);
    str_is("\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"",
           "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15);
    str_is("\"\x7f\"", "\x7f", 1);
    str_is("\"\xef\xbb\xbf\"", "\xef\xbb\xbf", 3);
    ok1(rec(",\"s\":null"));
    ck_assert(get(0, F_S).is_null);

    bad_json_syntax(",\"s\":\"\\ud83d\"");        /* lone high surrogate */
    bad_json_syntax(",\"s\":\"\\ude00\"");        /* lone low surrogate */
    bad_json_syntax(",\"s\":\"\\ud83d\\u0041\""); /* high then not low */
    bad_json_syntax(",\"s\":\"\\ud83dx\"");
    bad_json_syntax(",\"s\":\"\\u0000\""); /* jansson refuses NUL */
    bad_json_syntax(",\"s\":\"\\u12\"");
    bad_json_syntax(",\"s\":\"\\u12g4\"");
    bad_json_syntax(",\"s\":\"\\x41\"");
    bad_json_syntax(",\"s\":\"\\a\"");
    bad_json_syntax(",\"s\":\"\\\"");
    bad_json_syntax(",\"s\":\"a\tb\""); /* raw control characters */
    bad_json_syntax(",\"s\":\"a\x01\"");
    bad_json_syntax(",\"s\":\"\xc3\x28\"");         /* bad continuation */
    bad_json_syntax(",\"s\":\"\xc0\x80\"");         /* overlong NUL */
    bad_json_syntax(",\"s\":\"\xe0\x80\xaf\"");     /* overlong '/' */
    bad_json_syntax(",\"s\":\"\xed\xa0\x80\"");     /* UTF-8 surrogate */
    bad_json_syntax(",\"s\":\"\xf4\x90\x80\x80\""); /* over U+10FFFF */
    bad_json_syntax(",\"s\":\"\xf8\x88\x80\x80\x80\"");
    bad_json_syntax(",\"s\":\"\x80\"");
    bad_json_syntax(",\"s\":\"\xe2\x82\""); /* cut short */
    bad_json_syntax(",\"s\":\"\xff\"");
    bad_json_syntax(",\"s\":'x'");
    bad_json_syntax(",\"s\":\"unterminated");
    bad1(rec(",\"s\":1"), "s", "expected string, got integer");
    bad1(rec(",\"s\":1.5"), "s", "expected string, got float");
    bad1(rec(",\"s\":{}"), "s", "expected string, got object");
    /* Raw bytes that are not UTF-8 outside strings. */
    bad1("\xef\xbb\xbf{\"id\":1,\"ts\":0}", "", "invalid JSON at byte 0");
    bad1("{\"id\":1,\"ts\":0}\xc3\xa9", "", "invalid JSON at byte 15");
}
END_TEST

START_TEST(test_timestamps)
{
    ck_assert_int_eq(ts_of("\"1970-01-01T00:00:00Z\""), 0);
    ck_assert_int_eq(ts_of("\"2001-01-01T00:01:00Z\""), 978307260000);
    ck_assert_int_eq(ts_of("\"2001-01-01t00:01:00z\""), 978307260000);
    ck_assert_int_eq(ts_of("\"2001-01-01 00:01:00Z\""), 978307260000);
    ck_assert_int_eq(ts_of("\"2001-01-01T01:01:00+01:00\""), 978307260000);
    ck_assert_int_eq(ts_of("\"2000-12-31T18:31:00-05:30\""), 978307260000);
    ck_assert_int_eq(ts_of("\"2001-01-01T00:01:00-00:00\""), 978307260000);
    ck_assert_int_eq(ts_of("\"2001-01-01T00:01:00.5Z\""), 978307260500);
    ck_assert_int_eq(ts_of("\"2001-01-01T00:01:00.1Z\""), 978307260100);
    ck_assert_int_eq(ts_of("\"2001-01-01T00:01:00.12Z\""), 978307260120);
    ck_assert_int_eq(ts_of("\"2001-01-01T00:01:00.123Z\""), 978307260123);
    ck_assert_int_eq(ts_of("\"2001-01-01T00:01:00.123999999Z\""), 978307260123);
    ck_assert_int_eq(ts_of("\"1969-12-31T23:59:59Z\""), -1000);
    ck_assert_int_eq(ts_of("\"1969-12-31T23:59:59.999Z\""), -1);
    ck_assert_int_eq(ts_of("\"1900-01-01T00:00:00Z\""), -2208988800000);
    ck_assert_int_eq(ts_of("\"0000-01-01T00:00:00Z\""), -62167219200000);
    ck_assert_int_eq(ts_of("\"9999-12-31T23:59:59.999Z\""), 253402300799999);
    ck_assert_int_eq(ts_of("\"2000-02-29T00:00:00Z\""), 951782400000);
    ck_assert_int_eq(ts_of("\"2004-02-29T12:00:00Z\""), 1078056000000);
    ck_assert_int_eq(ts_of("\"2001-03-01T00:00:00Z\""), 983404800000);
    ck_assert_int_eq(ts_of("\"2001\\u002d01-01T00:01:00Z\""), 978307260000);
    ck_assert_int_eq(ts_of("0"), 0);
    ck_assert_int_eq(ts_of("-1"), -1);
    ck_assert_int_eq(ts_of("978307260000"), 978307260000);
    ck_assert_int_eq(ts_of("9223372036854775807"), INT64_MAX);
    ck_assert_int_eq(ts_of("-9223372036854775808"), INT64_MIN);

    static const char *const bad[] = {
        "2001-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2001-02-30T00:00:00Z",
        "2001-04-31T00:00:00Z",
        "2001-13-01T00:00:00Z",
        "2001-00-10T00:00:00Z",
        "2001-01-00T00:00:00Z",
        "2001-01-32T00:00:00Z",
        "2001-01-01T24:00:00Z",
        "2001-01-01T23:60:00Z",
        "2001-01-01T23:59:60Z",
        "2001-01-01T00:00:00",
        "2001-01-01T00:00:00+24:00",
        "2001-01-01T00:00:00+01:60",
        "2001-01-01T00:00:00+0100",
        "2001-01-01T00:00:00+01",
        "2001-01-01T00:00:00ZZ",
        "2001-01-01T00:00:00Z ",
        " 2001-01-01T00:00:00Z",
        "2001-1-01T00:00:00Z",
        "2001-01-01X00:00:00Z",
        "2001-01-01T00:00:00.Z",
        "2001-01-01T00:00:00,5Z",
        "2001-01-01",
        "",
        "20010101T000000Z",
        "+2001-01-01T00:00:00Z",
        "2001-01-01T0a:00:00Z",
    };
    char b[256];

    for (size_t i = 0; i < ST_ARRAY_SIZE(bad); i++) {
        snprintf(b, sizeof(b), "{\"id\":1,\"ts\":\"%s\"}", bad[i]);
        bad1(b, "ts", "invalid timestamp '");
    }
    bad1("{\"id\":1,\"ts\":\"2001-02-30T00:00:00Z\"}", "ts",
         "invalid timestamp '2001-02-30T00:00:00Z'");
    bad1("{\"id\":1,\"ts\":1.5}", "ts", "expected timestamp, got float");
    bad1("{\"id\":1,\"ts\":1e3}", "ts", "expected timestamp, got float");
    bad1("{\"id\":1,\"ts\":true}", "ts", "expected timestamp, got bool");
    bad1("{\"id\":1,\"ts\":null}", "ts", "expected timestamp, got null");
}
END_TEST

START_TEST(test_json_values)
{
    json_is("{}", "{}");
    json_is("[]", "[]");
    json_is(" { \"a\" : [ 1 , 2.50 , \"x\\u00e9\\n\" ] , \"b\" : null } ",
            "{\"a\":[1,2.50,\"x\xc3\xa9\\n\"],\"b\":null}");
    json_is("\"s\"", "\"s\"");
    json_is("1e5", "1e5");
    json_is("-0.0", "-0.0");
    json_is("true", "true");
    json_is("false", "false");
    json_is("\"\\u0022\\\\\\/\\u001f\\u007f\\b\"", "\"\\\"\\\\/\\u001F\x7f\\b\"");
    json_is("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    json_is("{\"a\":{\"a\":1},\"b\":{\"a\":2}}", "{\"a\":{\"a\":1},\"b\":{\"a\":2}}");
    json_is("[{\"k\":1},{\"k\":2}]", "[{\"k\":1},{\"k\":2}]");
}
END_TEST

START_TEST(test_json_rules)
{
    char deep[1024];
    size_t n = 0;

    /* null: SQL null on the nullable j, JSON null on the required jd. */
    ok1(rec(",\"j\":null,\"jd\":null"));
    ck_assert(get(0, F_J).is_null);
    ck_assert(!get(0, F_JD).is_null);
    ck_assert_int_eq(memcmp(get(0, F_JD).u.s.ptr, "null", 4), 0);

    /* 64 levels fit, 65 do not. */
    n = (size_t)snprintf(deep, sizeof(deep), ",\"j\":");
    for (int i = 0; i < 64; i++)
        deep[n++] = '[';
    for (int i = 0; i < 64; i++)
        deep[n++] = ']';
    deep[n] = '\0';
    ok1(rec(deep));
    /* Objects count as levels too. */
    n = (size_t)snprintf(deep, sizeof(deep), ",\"j\":");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"k\":");
    n += (size_t)snprintf(deep + n, sizeof(deep) - n, "1");
    for (int i = 0; i < 65; i++)
        deep[n++] = '}';
    deep[n] = '\0';
    bad1(rec(deep), "j", "json value nested deeper than 64 levels");

    bad1(rec(",\"j\":{\"a\":1,\"a\":2}"), "j", "duplicate key 'a' in json value");
    bad1(rec(",\"j\":{\"a\":1,\"\\u0061\":2}"), "j", "duplicate key 'a' in json value");
    bad1(rec(",\"j\":[{\"x\":{\"b\":1,\"c\":2,\"b\":3}}]"), "j", "duplicate key 'b'");
    bad1(rec(",\"j\":{\"k1\":1,\"k2\":1,\"k3\":1,\"k4\":1,\"k5\":1,\"k6\":1,\"k7\":1,"
             "\"k8\":1,\"k9\":1,\"k10\":1,\"k5\":1}"),
         "j", "duplicate key 'k5'");
    ok1(rec(",\"j\":{\"k1\":1,\"k2\":1,\"k3\":1,\"k4\":1,\"k5\":1,\"k6\":1,\"k7\":1,"
            "\"k8\":1,\"k9\":1,\"k10\":1,\"k11\":1}"));

    /* Syntax errors inside json values are syntax errors. */
    bad_json_syntax(",\"j\":[1,]");
    bad_json_syntax(",\"j\":{\"a\":1,}");
    bad_json_syntax(",\"j\":{\"a\"}");
    bad_json_syntax(",\"j\":{1:2}");
    bad_json_syntax(",\"j\":[1 2]");
    bad_json_syntax(",\"j\":[");
    bad_json_syntax(",\"j\":{\"\\u0000\":1}");
    bad_json_syntax(",\"j\":[99999999999999999999]");
    bad_json_syntax(",\"j\":1e400");
}
END_TEST

START_TEST(test_ndjson_framing)
{
    const char *body = "\n"
                       "{\"id\":1,\"ts\":0}\r\n"
                       "   \r\n"
                       "\t\n"
                       "  {\"id\":2,\"ts\":0}  \n"
                       "{\"id\":3,\"ts\":0\n"
                       "{\"id\":4,\"ts\":0}\n"
                       "{\"id\":5,\"ts\":0} x\n"
                       "{\"id\":6,\"ts\":0}{\"id\":7,\"ts\":0}\n"
                       "{\"id\":\n"
                       "8,\"ts\":0}\n"
                       "{\"id\":9,\"ts\":0,}\n"
                       "\f\n"
                       "{\"id\":10,\"ts\":0}";

    ck_assert_int_eq(nd(body), ST_OK);
    ck_assert_uint_eq(res.nrecords, 11);
    ck_assert_uint_eq(res.rejected, 7);
    ck_assert_uint_eq(res.nrows, 4);
    ck_assert_int_eq(get(0, F_ID).u.i, 1);
    ck_assert_int_eq(get(1, F_ID).u.i, 2);
    ck_assert_int_eq(get(2, F_ID).u.i, 4);
    ck_assert_int_eq(get(3, F_ID).u.i, 10);
    ck_assert_uint_eq(res.ndetails, 7);
    ck_assert_uint_eq(res.details[0].index, 2);
    /* "{\"id\":3,\"ts\":0\n" starts at byte 45; the '\n' is at 45 + 14. */
    ck_assert_str_eq(res.details[0].reason, "invalid JSON at byte 59: expected ',' or '}'");
    ck_assert_uint_eq(res.details[1].index, 4);
    ck_assert_uint_eq(res.details[2].index, 5);
    ck_assert_uint_eq(res.details[3].index, 6);
    ck_assert_uint_eq(res.details[4].index, 7);
    ck_assert_uint_eq(res.details[5].index, 8);
    ck_assert_uint_eq(res.details[6].index, 9);
    for (int i = 0; i < 7; i++) {
        ck_assert_str_eq(res.details[i].field, "");
        ck_assert_ptr_nonnull(strstr(res.details[i].reason, "invalid JSON at byte"));
    }

    ck_assert_int_eq(nd(""), ST_OK);
    ck_assert_uint_eq(res.nrecords, 0);
    ck_assert_int_eq(nd("\n\n \r\n"), ST_OK);
    ck_assert_uint_eq(res.nrecords, 0);
    ck_assert_int_eq(nd("{\"id\":1,\"ts\":0}"), ST_OK);
    ck_assert_uint_eq(res.nrows, 1);
    ck_assert_int_eq(nd("{\"id\":1,\"ts\":0}\t"), ST_OK);
    ck_assert_uint_eq(res.nrows, 1);
    ck_assert_int_eq(nd("{\"id\":1,\"ts\":"), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
    ck_assert_int_eq(nd("{\"id\":1,\"ts\":\"2001"), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
    ck_assert_int_eq(nd("{"), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
}
END_TEST

START_TEST(test_syntax_beats_schema)
{
    /* A type error first, then a syntax error: the syntax error is reported. */
    bad1("{\"id\":\"x\",\"ts\":tru}", "", "invalid JSON at byte 15");
    bad1("{\"zz\":1,\"ts\":[1,]}", "", "invalid JSON at byte 16");
    /* Only the first schema reason is kept. */
    bad1("{\"id\":\"x\",\"ts\":\"y\"}", "id", "expected int64, got string");
}
END_TEST

START_TEST(test_array_form)
{
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0},\n {\"id\":2,\"ts\":0}\n]\n"), ST_OK);
    ck_assert_uint_eq(res.nrows, 2);
    ck_assert_int_eq(get(1, F_ID).u.i, 2);
    ck_assert_int_eq(arr(" [ ] "), ST_OK);
    ck_assert_uint_eq(res.nrecords, 0);
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0},1,{\"id\":\"x\",\"ts\":0},{\"id\":4,\"ts\":0}]"),
                     ST_OK);
    ck_assert_uint_eq(res.nrecords, 4);
    ck_assert_uint_eq(res.rejected, 2);
    ck_assert_uint_eq(res.nrows, 2);
    ck_assert_uint_eq(res.details[0].index, 1);
    ck_assert_str_eq(res.details[0].reason, "record is not a JSON object");
    ck_assert_uint_eq(res.details[1].index, 2);
    ck_assert_str_eq(res.details[1].field, "id");

    /* Request-level errors. */
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0},]"), ST_EINVAL);
    ck_assert_uint_eq(res.nrows, 0);
    ck_assert_uint_eq(res.err_offset, 17);
    ck_assert_uint_eq(res.err_line, 1);
    ck_assert_uint_eq(res.err_column, 18);
    ck_assert_ptr_nonnull(strstr(err.msg, "invalid JSON at line 1 column 18 (byte 17)"));
    ck_assert_int_eq(arr("[\n{\"id\":1,\"ts\":0},\n{\"id\":2,\"ts\":\"x}\n]"), ST_EINVAL);
    ck_assert_uint_eq(res.err_line, 3);
    ck_assert_uint_eq(res.err_column, 17);
    /* A body cut short: the error is at its end, not one past it. */
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0}"), ST_EINVAL);
    ck_assert_uint_eq(res.err_offset, 16);
    ck_assert_uint_eq(res.err_line, 1);
    ck_assert_uint_eq(res.err_column, 17);
    ck_assert_int_eq(arr(""), ST_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "empty body"));
    ck_assert_int_eq(arr("   "), ST_EINVAL);
    ck_assert_int_eq(arr("{\"id\":1,\"ts\":0}"), ST_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "must be an array"));
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0}] x"), ST_EINVAL);
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0}][]"), ST_EINVAL);
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0}"), ST_EINVAL);
    ck_assert_int_eq(arr("[{\"id\":1,\"ts\":0}"), ST_EINVAL);
    ck_assert_int_eq(arr("[,]"), ST_EINVAL);
    ck_assert_int_eq(arr("[{\"id\":\"x\",\"ts\":0} {}]"), ST_EINVAL);
    /* A schema error, then a syntax error later: the request fails. */
    ck_assert_int_eq(arr("[{\"id\":\"x\",\"ts\":0},{\"id\":1,\"ts\":\"\\u0000\"}]"), ST_EINVAL);
    ck_assert_uint_eq(res.nrows, 0);
    /* Embedded NUL. */
    ck_assert_int_eq(run("[]\0", 3), ST_EINVAL);
}
END_TEST

START_TEST(test_nesting_limit)
{
    /* jansson counts every value: array 1, record 2, "j" 3, ... 2048 at most. */
    size_t k = 2046, n = 0;
    char *b = malloc(2 * 2048 + 64);

    for (int round = 0; round < 2; round++, k++) {
        static const char head[] = "[{\"id\":1,\"ts\":0,\"s\":";

        n = sizeof(head) - 1;
        memcpy(b, head, n);
        for (size_t i = 0; i < k; i++)
            b[n++] = '[';
        for (size_t i = 0; i < k; i++)
            b[n++] = ']';
        n += (size_t)sprintf(b + n, "}]");
        if (round == 0) {
            ck_assert_int_eq(arr(b), ST_OK);
            ck_assert_uint_eq(res.rejected, 1);
            ck_assert_str_eq(res.details[0].reason, "expected string, got array");
        } else {
            ck_assert_int_eq(arr(b), ST_EINVAL);
            ck_assert_ptr_nonnull(strstr(err.msg, "nested deeper than 2048"));
        }
    }
    /* In NDJSON the record is depth 1, so one level more fits. */
    n = (size_t)sprintf(b, "{\"id\":1,\"ts\":0,\"j\":");
    for (size_t i = 0; i < 2047; i++)
        b[n++] = '[';
    for (size_t i = 0; i < 2047; i++)
        b[n++] = ']';
    n += (size_t)sprintf(b + n, "}");
    bad1(b, "j", "json value nested deeper than 64 levels");
    n = (size_t)sprintf(b, "{\"id\":1,\"ts\":0,\"j\":");
    for (size_t i = 0; i < 2048; i++)
        b[n++] = '[';
    for (size_t i = 0; i < 2048; i++)
        b[n++] = ']';
    n += (size_t)sprintf(b + n, "}");
    bad1(b, "", "invalid JSON");
    /* A scalar inside counts as a level too. */
    n = (size_t)sprintf(b, "{\"id\":1,\"ts\":0,\"j\":");
    for (size_t i = 0; i < 2047; i++)
        b[n++] = '[';
    b[n++] = '1';
    for (size_t i = 0; i < 2047; i++)
        b[n++] = ']';
    n += (size_t)sprintf(b + n, "}");
    bad1(b, "", "invalid JSON");
    free(b);
}
END_TEST

START_TEST(test_atomic_and_partial)
{
    const char *body = "{\"id\":1,\"ts\":0}\n{\"id\":\"bad\",\"ts\":0}\n{\"id\":3,\"ts\":0}\n";

    opts.partial = false;
    ck_assert_int_eq(nd(body), ST_OK);
    ck_assert_uint_eq(res.nrecords, 3);
    ck_assert_uint_eq(res.rejected, 1);
    ck_assert_uint_eq(res.nrows, 0);
    ck_assert_uint_eq(res.rows_len, 0);
    ck_assert_uint_eq(res.ndetails, 1);
    ck_assert_uint_eq(res.details[0].index, 1);
    ck_assert_str_eq(res.details[0].field, "id");
    ck_assert_str_eq(res.details[0].reason, "expected int64, got string");

    opts.partial = true;
    ck_assert_int_eq(nd(body), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
    ck_assert_uint_eq(res.nrows, 2);
    ck_assert_int_eq(get(1, F_ID).u.i, 3);

    opts.partial = false;
    ck_assert_int_eq(nd("{\"id\":1,\"ts\":0}\n{\"id\":2,\"ts\":0}\n"), ST_OK);
    ck_assert_uint_eq(res.nrows, 2);
}
END_TEST

START_TEST(test_details_cap)
{
    struct strbuf sb = STRBUF_INIT;

    for (int i = 0; i < 300; i++)
        strbuf_addf(&sb, i % 2 ? "{\"id\":%d,\"ts\":0}\n" : "{\"id\":%d}\n", i);
    ck_assert_int_eq(nd(sb.buf), ST_OK);
    ck_assert_uint_eq(res.nrecords, 300);
    ck_assert_uint_eq(res.rejected, 150);
    ck_assert_uint_eq(res.nrows, 150);
    ck_assert_uint_eq(res.ndetails, DECODE_MAX_DETAILS);
    for (uint32_t i = 0; i < res.ndetails; i++) {
        ck_assert_uint_eq(res.details[i].index, 2 * i);
        ck_assert_str_eq(res.details[i].reason, "missing required field");
    }
    opts.max_details = 0;
    ck_assert_int_eq(nd(sb.buf), ST_OK);
    ck_assert_uint_eq(res.rejected, 150);
    ck_assert_uint_eq(res.ndetails, 0);
    opts.max_details = 3;
    ck_assert_int_eq(nd(sb.buf), ST_OK);
    ck_assert_uint_eq(res.ndetails, 3);
    ck_assert_uint_eq(res.details[2].index, 4);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_limits)
{
    struct strbuf sb = STRBUF_INIT;

    opts.max_record_bytes = 60; /* the first row takes 54 bytes */
    ck_assert_int_eq(
        nd("{\"id\":1,\"ts\":0}\n{\"id\":2,\"ts\":0,\"s\":\"xxxxxxxxxxxxxxxxxxxxx\"}\n"), ST_OK);
    ck_assert_uint_eq(res.nrows, 1);
    ck_assert_uint_eq(res.details[0].index, 1);
    ck_assert_str_eq(res.details[0].reason, "record larger than 60 bytes");
    /* The row counts too: defaults can make it bigger than the text. */
    opts.max_record_bytes = 50;
    ck_assert_int_eq(nd("{\"id\":1,\"ts\":0}"), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
    decode_opts_init(&opts);
    opts.partial = true;

    for (int i = 0; i < 1000; i++)
        strbuf_addf(&sb, "{\"id\":%d,\"ts\":0}\n", i);
    opts.max_rows_bytes = 10000;
    ck_assert_int_eq(nd(sb.buf), ST_ETOOLARGE);
    ck_assert_uint_eq(res.nrows, 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "exceed 10000 bytes"));
    opts.max_rows_bytes = (size_t)1 << 30;
    ck_assert_int_eq(nd(sb.buf), ST_OK);
    ck_assert_uint_eq(res.nrows, 1000);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_terminators_and_copies)
{
    /* The same records through every bounds path: in place, copied, NUL-terminated. */
    static const char *const bodies[] = {
        "{\"id\":1,\"ts\":0,\"s\":\"abc\"}\n",
        "{\"id\":1,\"ts\":0,\"s\":\"abc\"}",
        "{\"id\":1,\"ts\":0,\"s\":\"abc\"} ",
        "{\"id\":1,\"ts\":0,\"s\":\"abc\"}\r",
    };

    for (int nul = 0; nul < 2; nul++) {
        opts.nul_terminated = nul;
        for (size_t i = 0; i < ST_ARRAY_SIZE(bodies); i++) {
            ok1(bodies[i]);
            ck_assert_int_eq(memcmp(get(0, F_S).u.s.ptr, "abc", 3), 0);
        }
        /*
         * Bodies cut anywhere, and cut then ended with '\n' (parsed in
         * place), never read past their end (ASan checks).
         */
        for (int form = 0; form < 2; form++) {
            const char *whole = form ? "[{\"id\":1,\"ts\":0,\"s\":\"a\\u00e9\",\"j\":[1e5,{}]}]"
                                     : "{\"id\":1,\"ts\":0,\"s\":\"a\\u00e9\",\"j\":[1e5,{}]}";

            for (size_t cut = 0; cut <= strlen(whole); cut++) {
                for (int nl = 0; nl < 2; nl++) {
                    size_t len = cut + (size_t)nl;
                    char *b = malloc(len + 1); /* exactly len bytes used */

                    memcpy(b, whole, cut);
                    if (nl)
                        b[cut] = '\n';
                    b[len] = '\0';
                    if (!nul) /* then not even the NUL may be read */
                        b = realloc(b, len ? len : 1);
                    opts.format = DECODE_NDJSON;
                    ck_assert_int_eq(run(b, len), ST_OK);
                    ck_assert_uint_eq(res.nrows + res.rejected, res.nrecords);
                    opts.format = DECODE_JSON_ARRAY;
                    run(b, len);
                    free(b);
                }
            }
        }
        opts.format = DECODE_NDJSON;
    }
    opts.nul_terminated = false;
    /* An embedded NUL is an invalid byte. */
    ck_assert_int_eq(run("{\"id\":1,\"ts\":0}\0\n", 17), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
    ck_assert_int_eq(run("{\"id\":1,\"s\":\"a\0\",\"ts\":0}\n", 24), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
    /* jansson would drop this NUL (after a number); RFC 8259 forbids it. */
    ck_assert_int_eq(run("{\"id\":1\0,\"ts\":0}\n", 17), ST_OK);
    ck_assert_uint_eq(res.rejected, 1);
    ck_assert_int_eq(run(NULL, 0), ST_OK);
    ck_assert_uint_eq(res.nrecords, 0);
}
END_TEST

START_TEST(test_reuse_across_schemas)
{
    static const char *const pk[] = {"k"};
    struct field f[12];
    struct schema *big;
    struct strbuf sb = STRBUF_INIT;
    struct value v;

    for (int i = 0; i < 12; i++) {
        char name[8];

        snprintf(name, sizeof(name), "c%d", i);
        f[i] = (struct field){.type = FIELD_STRING, .nullable = i > 0};
        st_strlcpy(f[i].name, name, sizeof(f[i].name));
    }
    st_strlcpy(f[0].name, "k", sizeof(f[0].name));
    ck_assert_int_eq(schema_new(2, f, 12, pk, 1, NULL, &big, &err), ST_OK);
    strbuf_addstr(&sb, "{\"k\":\"a\\u00e9\",\"c11\":\"z\"}\n{\"k\":\"b\"}\n");
    opts.format = DECODE_NDJSON;
    ck_assert_int_eq(decode_batch(big, sb.buf, sb.len, &opts, &res, &err), ST_OK);
    ck_assert_uint_eq(res.nrows, 2);
    schema_row_get(big, decode_result_row(&res, 0), 0, &v);
    ck_assert_uint_eq(v.u.s.len, 3);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "a\xc3\xa9", 3), 0);
    schema_row_get(big, decode_result_row(&res, 0), 11, &v);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "z", 1), 0);
    schema_row_get(big, decode_result_row(&res, 1), 11, &v);
    ck_assert(v.is_null);
    /* And back to the small schema with the same result. */
    ok1(rec(",\"s\":\"q\""));
    ck_assert_int_eq(memcmp(get(0, F_S).u.s.ptr, "q", 1), 0);
    schema_free(big);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_string_keys_hash)
{
    static const char *const pk[] = {"a", "b"};
    struct field f[2] = {{.type = FIELD_STRING}, {.type = FIELD_INT64}};
    struct schema *s2;
    struct strbuf sb = STRBUF_INIT;
    uint8_t key[512];
    size_t klen;

    st_strlcpy(f[0].name, "a", sizeof(f[0].name));
    st_strlcpy(f[1].name, "b", sizeof(f[1].name));
    ck_assert_int_eq(schema_new(1, f, 2, pk, 2, NULL, &s2, &err), ST_OK);
    strbuf_addstr(&sb, "{\"a\":\"x\",\"b\":1}\n{\"b\":1,\"a\":\"\\u0078\"}\n{\"a\":\"");
    for (int i = 0; i < 400; i++)
        strbuf_addch(&sb, 'y');
    strbuf_addstr(&sb, "\",\"b\":2}\n");
    ck_assert_int_eq(decode_batch(s2, sb.buf, sb.len, &opts, &res, &err), ST_OK);
    ck_assert_uint_eq(res.nrows, 3);
    ck_assert_uint_eq(res.row[0].key_hash, res.row[1].key_hash);
    klen = schema_row_key(s2, decode_result_row(&res, 2), key, sizeof(key));
    ck_assert_uint_eq(klen, 400 + 2 + 8);
    ck_assert_uint_eq(res.row[2].key_hash, schema_key_hash(key, klen));
    schema_free(s2);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_json_text)
{
    struct strbuf sb = STRBUF_INIT;

    ck_assert_int_eq(decode_json_text(" {\"a\" : [1, \"\\u00e9\"]} ", 23, &sb, &err), ST_OK);
    ck_assert_str_eq(sb.buf, "{\"a\":[1,\"\xc3\xa9\"]}");
    strbuf_reset(&sb);
    ck_assert_int_eq(decode_json_text("42", 2, &sb, &err), ST_OK);
    ck_assert_str_eq(sb.buf, "42");
    ck_assert_int_eq(decode_json_text("", 0, &sb, &err), ST_EINVAL);
    ck_assert_int_eq(decode_json_text("[1,]", 4, &sb, &err), ST_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "invalid JSON at byte 3"));
    ck_assert_int_eq(decode_json_text("1 2", 3, &sb, &err), ST_EINVAL);
    ck_assert_int_eq(decode_json_text("{\"a\":1,\"a\":1}", 13, &sb, &err), ST_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "duplicate key 'a'"));
    strbuf_release(&sb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_flights_and_values);
    tcase_add_test(tc, test_field_order_and_keys);
    tcase_add_test(tc, test_int64);
    tcase_add_test(tc, test_float64);
    tcase_add_test(tc, test_bool);
    tcase_add_test(tc, test_strings_and_escapes);
    tcase_add_test(tc, test_timestamps);
    tcase_add_test(tc, test_json_values);
    tcase_add_test(tc, test_json_rules);
    tcase_add_test(tc, test_ndjson_framing);
    tcase_add_test(tc, test_syntax_beats_schema);
    tcase_add_test(tc, test_array_form);
    tcase_add_test(tc, test_nesting_limit);
    tcase_add_test(tc, test_atomic_and_partial);
    tcase_add_test(tc, test_details_cap);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_terminators_and_copies);
    tcase_add_test(tc, test_reuse_across_schemas);
    tcase_add_test(tc, test_string_keys_hash);
    tcase_add_test(tc, test_json_text);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
