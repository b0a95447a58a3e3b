/*
 * Unit tests for the parts of src/api that need no server: float and
 * timestamp formatting, records as JSON (all types, rows of older schema
 * versions read under the newest), Content-Type and Content-Encoding
 * parsing, gzip inflation with its size limit, Idempotency-Key and
 * version checks. The handlers themselves are tested over HTTP in
 * tests/integration.
 */
#include <check.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "api/api.h"
#include "engine/catalog.h"
#include "engine/decode.h"

/* ------------------------------------------------------------------ */
/* Numbers and timestamps. */

static void expect_double(double d, const char *want)
{
    char buf[API_DOUBLE_MAX];
    size_t n = api_format_double(d, buf);

    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(n, strlen(want));
}

START_TEST(test_format_double)
{
    expect_double(0.1, "0.1");
    expect_double(0.2 + 0.1, "0.30000000000000004");
    expect_double(1.0 / 3, "0.3333333333333333");
    expect_double(5, "5.0");
    expect_double(-2.5, "-2.5");
    expect_double(100, "100.0");
    expect_double(0, "0.0");
    expect_double(-0.0, "-0.0");
    expect_double(1e300, "1e+300");
    expect_double(1e16, "10000000000000000.0");
    expect_double(123456789012.0, "123456789012.0");
    expect_double(123.456, "123.456");
    expect_double(-1234.5e10, "-12345000000000.0");
    expect_double(1e21, "1e+21");
    expect_double(1.25e21, "1.25e+21");
    expect_double(999999999999999900000.0, "999999999999999900000.0");
    expect_double(0.000001, "0.000001");
    expect_double(-0.0000012345, "-0.0000012345");
    expect_double(1.5e-7, "1.5e-7");
    expect_double(1e-7, "1e-7");
    expect_double(DBL_MAX, "1.7976931348623157e+308");
    expect_double(5e-324, "5e-324");
    expect_double(NAN, "null");
    expect_double(INFINITY, "null");
    expect_double(-INFINITY, "null");
}
END_TEST

/* Every output reads back to the same double, in at most 17 digits. */
START_TEST(test_format_double_round_trip)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;

    for (int i = 0; i < 20000; i++) {
        char buf[API_DOUBLE_MAX];
        double d;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(&d, &x, sizeof(d));
        if (!isfinite(d))
            continue;
        api_format_double(d, buf);
        ck_assert_msg(strtod(buf, NULL) == d, "%s does not read back as %.17g", buf, d);
        /* Valid JSON number: jansson reads it. */
        {
            json_t *j = json_loads(buf, JSON_DECODE_ANY, NULL);

            ck_assert_msg(j && json_is_real(j), "'%s' is not a JSON real", buf);
            json_decref(j);
        }
    }
}
END_TEST

static void expect_ts(int64_t ms, const char *want)
{
    struct value v = {.type = FIELD_TIMESTAMP, .is_null = false, .u.i = ms};
    struct strbuf sb = STRBUF_INIT;

    api_value_json(&sb, &v);
    ck_assert_str_eq(sb.buf, want);
    strbuf_release(&sb);
}

START_TEST(test_timestamp_json)
{
    expect_ts(0, "\"1970-01-01T00:00:00.000Z\"");
    expect_ts(978307260000, "\"2001-01-01T00:01:00.000Z\"");
    expect_ts(978307260123, "\"2001-01-01T00:01:00.123Z\"");
    /* Before 1970: days and milliseconds round toward the past. */
    expect_ts(-1, "\"1969-12-31T23:59:59.999Z\"");
    expect_ts(-1000, "\"1969-12-31T23:59:59.000Z\"");
    expect_ts(-86400000, "\"1969-12-31T00:00:00.000Z\"");
    expect_ts(-86400001, "\"1969-12-30T23:59:59.999Z\"");
    expect_ts(-2208988800000, "\"1900-01-01T00:00:00.000Z\"");
    expect_ts(-2203891200000, "\"1900-03-01T00:00:00.000Z\"");
    expect_ts(951782400000, "\"2000-02-29T00:00:00.000Z\"");
    expect_ts(-62167219200000, "\"0000-01-01T00:00:00.000Z\"");
    expect_ts(253402300799999, "\"9999-12-31T23:59:59.999Z\"");
    /* Beyond years 0000-9999: a sign and more digits. */
    expect_ts(253402300800000, "\"+10000-01-01T00:00:00.000Z\"");
}
END_TEST

static void expect_value(struct value v, const char *want)
{
    struct strbuf sb = STRBUF_INIT;

    api_value_json(&sb, &v);
    ck_assert_str_eq(sb.buf, want);
    strbuf_release(&sb);
}

START_TEST(test_value_json)
{
    expect_value((struct value){.type = FIELD_INT64, .u.i = INT64_MIN}, "-9223372036854775808");
    expect_value((struct value){.type = FIELD_INT64, .u.i = INT64_MAX}, "9223372036854775807");
    expect_value((struct value){.type = FIELD_FLOAT64, .u.f = 0.1}, "0.1");
    expect_value((struct value){.type = FIELD_BOOL, .u.b = true}, "true");
    expect_value((struct value){.type = FIELD_BOOL, .u.b = false}, "false");
    expect_value((struct value){.type = FIELD_STRING, .u.s = {"a\"\n\xff", 4}},
                 "\"a\\\"\\n\xef\xbf\xbd\"");
    expect_value((struct value){.type = FIELD_JSON, .u.s = {"{\"a\":[1]}xx", 9}}, "{\"a\":[1]}");
    expect_value((struct value){.type = FIELD_STRING, .is_null = true}, "null");
    expect_value((struct value){.type = FIELD_TIMESTAMP, .is_null = true}, "null");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Records as JSON. */

static struct catalog_table_def *def_of(const char *text)
{
    struct catalog_table_def *def;
    struct err err;

    err_clear(&err);
    ck_assert_msg(catalog_table_def_parse_text(text, strlen(text), &def, &err) == ST_OK, "%s",
                  err.msg);
    return def;
}

/* The JSON of each record of ndjson (decoded against s) read under cur. */
static char *records_json(const struct schema *s, const struct schema *cur, const char *ndjson)
{
    struct decode_result res;
    struct decode_opts opts;
    struct strbuf sb = STRBUF_INIT;
    struct err err;

    decode_opts_init(&opts);
    decode_result_init(&res);
    err_clear(&err);
    ck_assert_msg(decode_batch(s, ndjson, strlen(ndjson), &opts, &res, &err) == ST_OK, "%s",
                  err.msg);
    ck_assert_msg(res.rejected == 0, "record refused: %s",
                  res.ndetails ? res.details[0].reason : "?");
    for (size_t i = 0; i < res.nrows; i++) {
        if (i)
            strbuf_addch(&sb, '\n');
        api_record_json(&sb, s, decode_result_row(&res, i), cur);
    }
    decode_result_release(&res);
    return strbuf_detach(&sb, NULL);
}

static const char every_type[] = "{\"name\": \"t\", \"fields\": ["
                                 "{\"name\": \"id\", \"type\": \"int64\"},"
                                 "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                                 "{\"name\": \"f\", \"type\": \"float64\", \"nullable\": true},"
                                 "{\"name\": \"b\", \"type\": \"bool\", \"default\": false},"
                                 "{\"name\": \"s\", \"type\": \"string\", \"nullable\": true},"
                                 "{\"name\": \"j\", \"type\": \"json\", \"nullable\": true}"
                                 "], \"primary_key\": [\"id\"], \"time_field\": \"ts\"}";

START_TEST(test_record_json)
{
    struct catalog_table_def *def = def_of(every_type);
    const struct schema *s = def->schema;
    char *got;

    got = records_json(
        s, s,
        "{\"id\": -9223372036854775808, \"ts\": \"2001-01-01T00:01:00Z\", \"f\": 0.1, \"b\": true,"
        " \"s\": \"a\\\"b\\\\c\\n\\u00e9\\u0001\", \"j\": {\"k\": [1, 2.50, \"x\"], \"n\": null}}\n"
        "{\"id\": 2, \"ts\": -1, \"f\": 3}\n"
        "{\"id\": 3, \"ts\": \"1900-01-01T00:00:00.5+01:00\", \"f\": null, \"s\": \"\", \"j\": "
        "\"str\"}\n"
        "{\"id\": 4, \"ts\": 253402300800000, \"f\": 1e300, \"j\": [] }\n");
    ck_assert_str_eq(
        got, "{\"id\":-9223372036854775808,\"ts\":\"2001-01-01T00:01:00.000Z\","
             "\"f\":0.1,\"b\":true,\"s\":\"a\\\"b\\\\c\\n\xc3\xa9\\u0001\","
             "\"j\":{\"k\":[1,2.50,\"x\"],\"n\":null}}\n"
             "{\"id\":2,\"ts\":\"1969-12-31T23:59:59.999Z\",\"f\":3.0,\"b\":false,"
             "\"s\":null,\"j\":null}\n"
             "{\"id\":3,\"ts\":\"1899-12-31T23:00:00.500Z\",\"f\":null,\"b\":false,"
             "\"s\":\"\",\"j\":\"str\"}\n"
             "{\"id\":4,\"ts\":\"+10000-01-01T00:00:00.000Z\",\"f\":1e+300,\"b\":false,\"s\":null,"
             "\"j\":[]}");
    /* Every line is valid JSON. */
    for (char *line = strtok(got, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);

        ck_assert_msg(j != NULL, "invalid JSON: %s", line);
        json_decref(j);
    }
    free(got);
    catalog_table_def_free(def);
}
END_TEST

/* The newest version of every_type after an evolution, built by hand. */
static struct schema *evolved(void)
{
    const char *text = "["
                       "{\"name\": \"ts\", \"type\": \"timestamp\"},"
                       "{\"name\": \"id\", \"type\": \"int64\"},"
                       "{\"name\": \"f\", \"type\": \"float64\", \"nullable\": true},"
                       "{\"name\": \"b\", \"type\": \"bool\", \"nullable\": true},"
                       "{\"name\": \"n\", \"type\": \"int64\", \"default\": 42},"
                       "{\"name\": \"m\", \"type\": \"string\", \"nullable\": true},"
                       "{\"name\": \"w\", \"type\": \"timestamp\", \"default\": -1}"
                       "]";
    const char *pk[] = {"id"};
    json_t *j = json_loads(text, 0, NULL);
    struct field *fields;
    struct schema *s;
    struct err err;
    uint32_t n;

    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(catalog_fields_parse(j, &fields, &n, &err), ST_OK);
    json_decref(j);
    ck_assert_msg(schema_new(2, fields, n, pk, 1, "ts", &s, &err) == ST_OK, "%s", err.msg);
    catalog_fields_free(fields, n);
    return s;
}

START_TEST(test_record_json_older_version)
{
    struct catalog_table_def *def = def_of(every_type);
    struct schema *cur = evolved();
    char *got;

    /* Fields in the newest order; missing ones as default or null; s and j gone. */
    got = records_json(def->schema, cur,
                       "{\"id\": 1, \"ts\": 0, \"f\": 2.5, \"b\": true, \"s\": \"x\", \"j\": 1}\n"
                       "{\"id\": 2, \"ts\": 0}\n");
    ck_assert_str_eq(got, "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"id\":1,\"f\":2.5,\"b\":true,"
                          "\"n\":42,\"m\":null,\"w\":\"1969-12-31T23:59:59.999Z\"}\n"
                          "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"id\":2,\"f\":null,\"b\":false,"
                          "\"n\":42,\"m\":null,\"w\":\"1969-12-31T23:59:59.999Z\"}");
    free(got);
    catalog_table_def_free(def);
    schema_free(cur);
}
END_TEST

/* int64 widened to float64; a field re-added with another type shows its default. */
START_TEST(test_record_value_widening)
{
    struct catalog_table_def *v1 =
        def_of("{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"},"
               "{\"name\": \"x\", \"type\": \"int64\", \"nullable\": true},"
               "{\"name\": \"y\", \"type\": \"string\"},"
               "{\"name\": \"z\", \"type\": \"int64\", \"nullable\": true}],"
               "\"primary_key\": [\"id\"]}");
    struct catalog_table_def *v3 =
        def_of("{\"name\": \"t\", \"fields\": [{\"name\": \"id\", \"type\": \"int64\"},"
               "{\"name\": \"x\", \"type\": \"float64\", \"nullable\": true},"
               "{\"name\": \"y\", \"type\": \"bool\", \"default\": true},"
               "{\"name\": \"z\", \"type\": \"int64\", \"default\": 7}],"
               "\"primary_key\": [\"id\"]}");
    struct value v;
    char *got;

    got = records_json(v1->schema, v3->schema,
                       "{\"id\": 1, \"x\": 9007199254740993, \"y\": \"s\", \"z\": null}\n"
                       "{\"id\": 2, \"x\": null, \"y\": \"s\", \"z\": 5}");
    /* z: null in the old row, but the newest z is not nullable: its default. */
    ck_assert_str_eq(got, "{\"id\":1,\"x\":9007199254740992.0,\"y\":true,\"z\":7}\n"
                          "{\"id\":2,\"x\":null,\"y\":true,\"z\":5}");
    free(got);

    /* The value itself says float64 after widening. */
    {
        struct decode_result res;
        struct decode_opts opts;
        const char *rec = "{\"id\": 1, \"x\": -3, \"y\": \"s\"}";

        decode_opts_init(&opts);
        decode_result_init(&res);
        ck_assert_int_eq(decode_batch(v1->schema, rec, strlen(rec), &opts, &res, NULL), ST_OK);
        ck_assert_uint_eq(res.nrows, 1);
        api_record_value(v1->schema, decode_result_row(&res, 0), v3->schema, 1, &v);
        ck_assert_int_eq(v.type, FIELD_FLOAT64);
        ck_assert(!v.is_null);
        ck_assert(v.u.f == -3.0);
        api_record_value(v1->schema, decode_result_row(&res, 0), v1->schema, 1, &v);
        ck_assert_int_eq(v.type, FIELD_INT64);
        ck_assert_int_eq(v.u.i, -3);
        decode_result_release(&res);
    }
    catalog_table_def_free(v1);
    catalog_table_def_free(v3);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Headers. */

static void expect_ct(const char *ct, enum st_status st, enum decode_format want)
{
    enum decode_format fmt;
    struct err err;

    err_clear(&err);
    ck_assert_msg(api_content_type_parse(ct, &fmt, &err) == st, "'%s': %s", ct ? ct : "(none)",
                  err.msg);
    if (st == ST_OK)
        ck_assert_int_eq(fmt, want);
    else
        ck_assert(err.msg[0]);
}

START_TEST(test_content_type)
{
    expect_ct(NULL, ST_OK, DECODE_NDJSON);
    expect_ct("application/x-ndjson", ST_OK, DECODE_NDJSON);
    expect_ct("Application/X-NDJSON", ST_OK, DECODE_NDJSON);
    expect_ct("application/ndjson", ST_OK, DECODE_NDJSON);
    expect_ct("application/jsonl", ST_OK, DECODE_NDJSON);
    expect_ct("application/json", ST_OK, DECODE_JSON_ARRAY);
    expect_ct("  application/json  ", ST_OK, DECODE_JSON_ARRAY);
    expect_ct("application/json; charset=utf-8", ST_OK, DECODE_JSON_ARRAY);
    expect_ct("application/json;charset=\"UTF-8\"", ST_OK, DECODE_JSON_ARRAY);
    expect_ct("application/x-ndjson ; charset=utf8; foo=bar", ST_OK, DECODE_NDJSON);
    expect_ct("application/x-ndjson;", ST_OK, DECODE_NDJSON);
    expect_ct("application/json; charset=iso-8859-1", ST_EINVAL, 0);
    expect_ct("application/json; charset", ST_EINVAL, 0);
    expect_ct("application/x-www-form-urlencoded", ST_EINVAL, 0);
    expect_ct("text/plain", ST_EINVAL, 0);
    expect_ct("application/jsonx", ST_EINVAL, 0);
    expect_ct("application/json-seq", ST_EINVAL, 0);
    expect_ct("", ST_EINVAL, 0);
}
END_TEST

static void expect_ce(const char *ce, enum st_status st, bool want)
{
    bool gzip = !want;
    struct err err;

    err_clear(&err);
    ck_assert_msg(api_content_encoding_parse(ce, &gzip, &err) == st, "'%s'", ce ? ce : "(none)");
    if (st == ST_OK)
        ck_assert_int_eq(gzip, want);
}

START_TEST(test_content_encoding)
{
    expect_ce(NULL, ST_OK, false);
    expect_ce("", ST_OK, false);
    expect_ce("identity", ST_OK, false);
    expect_ce("gzip", ST_OK, true);
    expect_ce(" GZIP ", ST_OK, true);
    expect_ce("x-gzip", ST_OK, true);
    expect_ce("deflate", ST_EINVAL, false);
    expect_ce("br", ST_EINVAL, false);
    expect_ce("gzip, gzip", ST_EINVAL, false);
    expect_ce("zstd", ST_EINVAL, false);
}
END_TEST

START_TEST(test_idempotency_and_version)
{
    char key[API_IDEMPOTENCY_KEY_MAX + 2];
    uint64_t v = 7;

    memset(key, 'k', sizeof(key));
    key[API_IDEMPOTENCY_KEY_MAX] = '\0';
    ck_assert_int_eq(api_idempotency_key_check(key, NULL), ST_OK);
    key[API_IDEMPOTENCY_KEY_MAX] = 'k';
    key[API_IDEMPOTENCY_KEY_MAX + 1] = '\0';
    ck_assert_int_eq(api_idempotency_key_check(key, NULL), ST_EINVAL);
    ck_assert_int_eq(api_idempotency_key_check("", NULL), ST_EINVAL);
    ck_assert_int_eq(api_idempotency_key_check("a", NULL), ST_OK);

    ck_assert(api_version_parse("0", &v) && v == 0);
    ck_assert(api_version_parse("1041", &v) && v == 1041);
    ck_assert(api_version_parse("18446744073709551615", &v) && v == UINT64_MAX);
    v = 7;
    ck_assert(!api_version_parse("18446744073709551616", &v));
    ck_assert(!api_version_parse("", &v));
    ck_assert(!api_version_parse(NULL, &v));
    ck_assert(!api_version_parse("-1", &v));
    ck_assert(!api_version_parse("+1", &v));
    ck_assert(!api_version_parse(" 1", &v));
    ck_assert(!api_version_parse("1a", &v));
    ck_assert(!api_version_parse("1.0", &v));
    ck_assert_uint_eq(v, 7);
}
END_TEST

/* ------------------------------------------------------------------ */
/* gzip. */

/* in (len bytes) as one gzip member; caller frees. */
static unsigned char *gzip_of(const void *in, size_t len, size_t *outlen)
{
    z_stream zs;
    size_t cap = compressBound((uLong)len) + 64;
    unsigned char *out = malloc(cap);

    ck_assert_ptr_nonnull(out);
    memset(&zs, 0, sizeof(zs));
    ck_assert_int_eq(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outlen = zs.total_out;
    deflateEnd(&zs);
    return out;
}

START_TEST(test_gunzip)
{
    const char text[] = "{\"id\": 1}\n{\"id\": 2}\n";
    size_t tlen = strlen(text), zlen, zlen2, outlen;
    unsigned char *z = gzip_of(text, tlen, &zlen);
    unsigned char *z2 = gzip_of("{\"id\": 3}\n", 10, &zlen2);
    unsigned char *both = malloc(zlen + zlen2 + 4);
    struct err err;
    char *out;

    ck_assert_int_eq(api_gunzip(z, zlen, 1 << 20, &out, &outlen, &err), ST_OK);
    ck_assert_uint_eq(outlen, tlen);
    ck_assert_str_eq(out, text);
    free(out);

    /* Exactly the limit is fine; one byte less is 413. */
    ck_assert_int_eq(api_gunzip(z, zlen, tlen, &out, &outlen, &err), ST_OK);
    ck_assert_uint_eq(outlen, tlen);
    free(out);
    ck_assert_int_eq(api_gunzip(z, zlen, tlen - 1, &out, &outlen, &err), ST_ETOOLARGE);
    ck_assert_ptr_null(out);

    /* Members back to back are one body. */
    memcpy(both, z, zlen);
    memcpy(both + zlen, z2, zlen2);
    ck_assert_int_eq(api_gunzip(both, zlen + zlen2, 1 << 20, &out, &outlen, &err), ST_OK);
    ck_assert_str_eq(out, "{\"id\": 1}\n{\"id\": 2}\n{\"id\": 3}\n");
    free(out);

    /* Cut short, trailing garbage, corrupt, not gzip, empty: 400. */
    ck_assert_int_eq(api_gunzip(z, zlen - 3, 1 << 20, &out, &outlen, &err), ST_EINVAL);
    ck_assert_ptr_null(out);
    memcpy(both, z, zlen);
    memcpy(both + zlen, "junk", 4);
    ck_assert_int_eq(api_gunzip(both, zlen + 4, 1 << 20, &out, &outlen, &err), ST_EINVAL);
    memcpy(both, z, zlen);
    both[zlen - 6] ^= 0xff; /* the CRC-32 */
    ck_assert_int_eq(api_gunzip(both, zlen, 1 << 20, &out, &outlen, &err), ST_EINVAL);
    ck_assert_int_eq(api_gunzip(text, tlen, 1 << 20, &out, &outlen, &err), ST_EINVAL);
    ck_assert_int_eq(api_gunzip("", 0, 1 << 20, &out, &outlen, &err), ST_EINVAL);

    /* An empty payload inflates to an empty, NUL-terminated body. */
    free(z);
    z = gzip_of("", 0, &zlen);
    ck_assert_int_eq(api_gunzip(z, zlen, 0, &out, &outlen, &err), ST_OK);
    ck_assert_uint_eq(outlen, 0);
    ck_assert_str_eq(out, "");
    free(out);
    free(z);
    free(z2);
    free(both);
}
END_TEST

/* A small body that inflates past the limit stops at the limit. */
START_TEST(test_gunzip_bomb)
{
    size_t big = 64u << 20, zlen, outlen;
    char *zeros = calloc(1, big);
    unsigned char *z;
    struct err err;
    char *out;

    ck_assert_ptr_nonnull(zeros);
    z = gzip_of(zeros, big, &zlen);
    free(zeros);
    ck_assert_uint_lt(zlen, 100 * 1024);
    err_clear(&err);
    ck_assert_int_eq(api_gunzip(z, zlen, 1 << 20, &out, &outlen, &err), ST_ETOOLARGE);
    ck_assert_str_eq(err.msg, "decompressed body is larger than 1048576 bytes");
    ck_assert_ptr_null(out);
    ck_assert_int_eq(api_gunzip(z, zlen, big, &out, &outlen, &err), ST_OK);
    ck_assert_uint_eq(outlen, big);
    ck_assert_int_eq(out[big - 1], 0);
    free(out);
    free(z);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_format_double);
    tcase_add_test(tc, test_format_double_round_trip);
    tcase_add_test(tc, test_timestamp_json);
    tcase_add_test(tc, test_value_json);
    tcase_add_test(tc, test_record_json);
    tcase_add_test(tc, test_record_json_older_version);
    tcase_add_test(tc, test_record_value_widening);
    tcase_add_test(tc, test_content_type);
    tcase_add_test(tc, test_content_encoding);
    tcase_add_test(tc, test_idempotency_and_version);
    tcase_add_test(tc, test_gunzip);
    tcase_add_test(tc, test_gunzip_bomb);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
