/*
 * Unit tests for src/engine/schema.c: building schemas and their checks,
 * field lookup, reading rows, primary-key encoding order and hashing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/schema.h"

static struct field mkfield(const char *name, enum field_type t, bool nullable)
{
    struct field f;

    memset(&f, 0, sizeof(f));
    st_strlcpy(f.name, name, sizeof(f.name));
    f.type = t;
    f.nullable = nullable;
    return f;
}

static const char *const pk_id[] = {"id"};

START_TEST(test_new_and_find)
{
    struct field f[4] = {
        mkfield("id", FIELD_INT64, false),
        mkfield("ts", FIELD_TIMESTAMP, false),
        mkfield("origin", FIELD_STRING, false),
        mkfield("delay", FIELD_INT64, true),
    };
    char dflt[] = "LAS";
    struct schema *s;
    struct err err;

    f[2].has_default = true;
    f[2].def.type = FIELD_STRING;
    f[2].def.u.s.ptr = dflt;
    f[2].def.u.s.len = 3;
    ck_assert_int_eq(schema_new(3, f, 4, pk_id, 1, "ts", &s, &err), ST_OK);
    dflt[0] = 'X'; /* the schema has its own copy */
    ck_assert_uint_eq(s->version, 3);
    ck_assert_uint_eq(s->nfields, 4);
    ck_assert_uint_eq(s->npk, 1);
    ck_assert_uint_eq(s->pk[0], 0);
    ck_assert(s->fields[0].is_pk);
    ck_assert(!s->fields[1].is_pk);
    ck_assert_int_eq(s->time_field, 1);
    ck_assert_int_eq(memcmp(s->fields[2].def.u.s.ptr, "LAS", 3), 0);
    ck_assert_int_eq(schema_find_field(s, "id", 2), 0);
    ck_assert_int_eq(schema_find_field(s, "delay", 5), 3);
    ck_assert_int_eq(schema_find_field(s, "origin", 6), 2);
    ck_assert_int_eq(schema_find_field(s, "idx", 2), 0); /* len counts */
    ck_assert_int_eq(schema_find_field(s, "idx", 3), -1);
    ck_assert_int_eq(schema_find_field(s, "i", 1), -1);
    ck_assert_int_eq(schema_find_field(s, "", 0), -1);
    ck_assert_int_eq(schema_find_field(s, "Delay", 5), -1);
    schema_free(s);
    schema_free(NULL);
}
END_TEST

START_TEST(test_find_many_fields_and_hand_built)
{
    struct field *f = calloc(SCHEMA_MAX_FIELDS, sizeof(*f));
    struct schema *s, hand;
    char name[16];
    struct err err;

    for (int i = 0; i < SCHEMA_MAX_FIELDS; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        f[i] = mkfield(name, FIELD_INT64, i > 0);
    }
    {
        const char *pk[] = {"f0"};

        ck_assert_int_eq(schema_new(1, f, SCHEMA_MAX_FIELDS, pk, 1, NULL, &s, &err), ST_OK);
    }
    for (int i = 0; i < SCHEMA_MAX_FIELDS; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        ck_assert_int_eq(schema_find_field(s, name, strlen(name)), i);
    }
    ck_assert_int_eq(schema_find_field(s, "f1024", 5), -1);
    ck_assert_int_eq(s->time_field, -1);

    /* Without the index, lookups scan. */
    memset(&hand, 0, sizeof(hand));
    hand.nfields = 3;
    hand.fields = f;
    ck_assert_int_eq(schema_find_field(&hand, "f2", 2), 2);
    ck_assert_int_eq(schema_find_field(&hand, "f3", 2), -1);
    schema_free(s);
    free(f);
}
END_TEST

static enum st_status try_new(struct field *f, uint32_t n, const char *const *pk, uint32_t npk,
                              const char *tf, const char *want)
{
    struct schema *s = (struct schema *)1;
    struct err err;
    enum st_status rc = schema_new(1, f, n, pk, npk, tf, &s, &err);

    ck_assert_ptr_null(s);
    ck_assert_int_eq(rc, ST_EINVAL);
    ck_assert_msg(strstr(err.msg, want), "'%s' lacks '%s'", err.msg, want);
    return rc;
}

START_TEST(test_new_rejects)
{
    struct field f[3];
    const char *pk2[] = {"id", "id"};
    const char *pk_x[] = {"x"};
    const char *pk_j[] = {"j"};
    const char *pk_n[] = {"n"};

    f[0] = mkfield("id", FIELD_INT64, false);
    f[1] = mkfield("j", FIELD_JSON, false);
    f[2] = mkfield("n", FIELD_STRING, true);
    try_new(f, 0, pk_id, 1, NULL, "1 to");
    try_new(f, 3, pk_id, 0, NULL, "primary key needs");
    try_new(f, 3, pk_x, 1, NULL, "'x' does not exist");
    try_new(f, 3, pk2, 2, NULL, "twice");
    try_new(f, 3, pk_j, 1, NULL, "not json");
    try_new(f, 3, pk_n, 1, NULL, "must be required");
    try_new(f, 3, pk_id, 1, "n", "not a timestamp");
    try_new(f, 3, pk_id, 1, "zz", "not a timestamp");

    f[0].has_default = true;
    f[0].def.type = FIELD_INT64;
    try_new(f, 3, pk_id, 1, NULL, "must be required");
    f[0].has_default = false;

    f[2] = mkfield("1bad", FIELD_STRING, true);
    try_new(f, 3, pk_id, 1, NULL, "invalid field name");
    f[2] = mkfield("id", FIELD_STRING, true);
    try_new(f, 3, pk_id, 1, NULL, "duplicate field 'id'");
    f[2] = mkfield("n", FIELD_STRING, true);
    f[2].type = (enum field_type)9;
    try_new(f, 3, pk_id, 1, NULL, "unknown type");

    f[2] = mkfield("n", FIELD_STRING, false);
    f[2].has_default = true;
    f[2].def.type = FIELD_INT64;
    try_new(f, 3, pk_id, 1, NULL, "default of field 'n' is not a string");
    f[2].def.type = FIELD_STRING;
    f[2].def.is_null = true;
    try_new(f, 3, pk_id, 1, NULL, "null default");
    f[2].def.is_null = false;
    f[2].def.u.s.ptr = "\xc3\x28";
    f[2].def.u.s.len = 2;
    try_new(f, 3, pk_id, 1, NULL, "UTF-8");
    f[2].def.u.s.ptr = "a\0b";
    f[2].def.u.s.len = 3;
    try_new(f, 3, pk_id, 1, NULL, "UTF-8");
}
END_TEST

/* Builds a row by hand: id=-5, s=null, f=2.5, b=true, str="héllo", j="[1]". */
static size_t hand_row(uint8_t *r)
{
    size_t n = 4;
    int64_t id = -5;
    double fv = 2.5;
    uint32_t len;

    r[n++] = 0x02; /* field 1 null */
    memcpy(r + n, &id, 8);
    n += 8;
    memcpy(r + n, &fv, 8);
    n += 8;
    r[n++] = 1;
    len = 6;
    memcpy(r + n, &len, 4);
    memcpy(r + n + 4, "h\xc3\xa9llo", 6);
    n += 10;
    len = 3;
    memcpy(r + n, &len, 4);
    memcpy(r + n + 4, "[1]", 3);
    n += 7;
    len = (uint32_t)n;
    memcpy(r, &len, 4);
    return n;
}

START_TEST(test_row_get)
{
    struct field f[6] = {
        mkfield("id", FIELD_INT64, false),   mkfield("s", FIELD_TIMESTAMP, true),
        mkfield("f", FIELD_FLOAT64, false),  mkfield("b", FIELD_BOOL, false),
        mkfield("str", FIELD_STRING, false), mkfield("j", FIELD_JSON, false),
    };
    uint8_t row[128];
    size_t n = hand_row(row);
    struct schema *s;
    struct value v;
    struct err err;

    ck_assert_int_eq(schema_new(1, f, 6, pk_id, 1, NULL, &s, &err), ST_OK);
    ck_assert_uint_eq(schema_row_len(row), n);
    schema_row_get(s, row, 0, &v);
    ck_assert(!v.is_null);
    ck_assert_int_eq(v.type, FIELD_INT64);
    ck_assert_int_eq(v.u.i, -5);
    schema_row_get(s, row, 1, &v);
    ck_assert(v.is_null);
    ck_assert_int_eq(v.type, FIELD_TIMESTAMP);
    schema_row_get(s, row, 2, &v);
    ck_assert(v.u.f == 2.5);
    schema_row_get(s, row, 3, &v);
    ck_assert(v.u.b);
    schema_row_get(s, row, 4, &v);
    ck_assert_uint_eq(v.u.s.len, 6);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "h\xc3\xa9llo", 6), 0);
    schema_row_get(s, row, 5, &v);
    ck_assert_uint_eq(v.u.s.len, 3);
    ck_assert_int_eq(memcmp(v.u.s.ptr, "[1]", 3), 0);
    schema_free(s);
}
END_TEST

static int key_cmp(const struct value *a, const struct value *b, uint32_t n)
{
    uint8_t ka[128], kb[128];
    size_t la = schema_key_encode(a, n, ka, sizeof(ka));
    size_t lb = schema_key_encode(b, n, kb, sizeof(kb));
    int c = memcmp(ka, kb, ST_MIN(la, lb));

    ck_assert(la <= sizeof(ka) && lb <= sizeof(kb));
    if (c)
        return c < 0 ? -1 : 1;
    return la < lb ? -1 : la > lb;
}

static struct value vint(int64_t i)
{
    struct value v = {.type = FIELD_INT64};

    v.u.i = i;
    return v;
}

static struct value vflt(double f)
{
    struct value v = {.type = FIELD_FLOAT64};

    v.u.f = f;
    return v;
}

static struct value vstr(const char *s, uint32_t len)
{
    struct value v = {.type = FIELD_STRING};

    v.u.s.ptr = s;
    v.u.s.len = len;
    return v;
}

START_TEST(test_key_order)
{
    const int64_t ints[] = {INT64_MIN, -1000000, -1, 0, 1, 255, 256, 1000000, INT64_MAX};
    const double flts[] = {-1e300, -2.5, -1.0, -1e-300, 0.0, 1e-300, 1.0, 2.5, 1e300};
    struct value a[2], b[2];

    for (size_t i = 0; i + 1 < ST_ARRAY_SIZE(ints); i++) {
        a[0] = vint(ints[i]);
        b[0] = vint(ints[i + 1]);
        ck_assert_int_eq(key_cmp(a, b, 1), -1);
        ck_assert_int_eq(key_cmp(b, a, 1), 1);
        ck_assert_int_eq(key_cmp(a, a, 1), 0);
    }
    for (size_t i = 0; i + 1 < ST_ARRAY_SIZE(flts); i++) {
        a[0] = vflt(flts[i]);
        b[0] = vflt(flts[i + 1]);
        ck_assert_int_eq(key_cmp(a, b, 1), -1);
    }
    a[0] = vflt(-0.0);
    b[0] = vflt(0.0);
    ck_assert_int_eq(key_cmp(a, b, 1), 0);

    /* Strings: bytes order, a prefix first, NUL bytes kept apart. */
    a[0] = vstr("ab", 2);
    b[0] = vstr("abc", 3);
    ck_assert_int_eq(key_cmp(a, b, 1), -1);
    a[0] = vstr("a\0", 2);
    b[0] = vstr("a", 1);
    ck_assert_int_eq(key_cmp(a, b, 1), 1);
    a[0] = vstr("\xc3\xa9", 2);
    b[0] = vstr("z", 1);
    ck_assert_int_eq(key_cmp(a, b, 1), 1);

    /* Composite keys: the first field decides, then the next. */
    a[0] = vstr("a", 1);
    a[1] = vint(5);
    b[0] = vstr("ab", 2);
    b[1] = vint(-5);
    ck_assert_int_eq(key_cmp(a, b, 2), -1);
    b[0] = vstr("a", 1);
    ck_assert_int_eq(key_cmp(a, b, 2), 1);
    b[1] = vint(5);
    ck_assert_int_eq(key_cmp(a, b, 2), 0);
}
END_TEST

START_TEST(test_key_encode_truncates_and_hash)
{
    struct value v = vstr("hello world", 11);
    uint8_t small[4], full[64];
    size_t n = schema_key_encode(&v, 1, small, sizeof(small));
    uint64_t h[200];

    ck_assert_uint_eq(n, 13);
    ck_assert_uint_eq(schema_key_encode(&v, 1, full, sizeof(full)), 13);
    ck_assert_int_eq(memcmp(small, full, 4), 0);
    ck_assert_int_eq(full[11], 0);
    ck_assert_int_eq(full[12], 1);

    ck_assert_uint_eq(schema_key_hash(full, 13), schema_key_hash(full, 13));
    ck_assert_uint_ne(schema_key_hash(full, 13), schema_key_hash(full, 12));
    for (int i = 0; i < 200; i++) {
        struct value k = vint(i);
        uint8_t b[8];

        schema_key_encode(&k, 1, b, sizeof(b));
        h[i] = schema_key_hash(b, 8);
        for (int j = 0; j < i; j++)
            ck_assert_uint_ne(h[i], h[j]);
    }
}
END_TEST

START_TEST(test_row_key)
{
    struct field f[3] = {
        mkfield("a", FIELD_BOOL, false),
        mkfield("id", FIELD_INT64, false),
        mkfield("b", FIELD_STRING, false),
    };
    const char *pk[] = {"b", "id"};
    uint8_t row[64], key[64], want[64];
    struct value kv[2];
    struct schema *s;
    struct err err;
    size_t n = 4, len;
    int64_t id = 7;
    uint32_t slen = 2;

    ck_assert_int_eq(schema_new(1, f, 3, pk, 2, NULL, &s, &err), ST_OK);
    ck_assert_uint_eq(s->pk[0], 2);
    ck_assert_uint_eq(s->pk[1], 1);
    row[n++] = 0;
    row[n++] = 1;
    memcpy(row + n, &id, 8);
    n += 8;
    memcpy(row + n, &slen, 4);
    memcpy(row + n + 4, "xy", 2);
    n += 6;
    slen = (uint32_t)n;
    memcpy(row, &slen, 4);
    len = schema_row_key(s, row, key, sizeof(key));
    kv[0] = vstr("xy", 2);
    kv[1] = vint(7);
    ck_assert_uint_eq(len, schema_key_encode(kv, 2, want, sizeof(want)));
    ck_assert_int_eq(memcmp(key, want, len), 0);
    schema_free(s);
}
END_TEST

START_TEST(test_names_and_types)
{
    enum field_type t;

    ck_assert(field_type_parse("timestamp", &t));
    ck_assert_int_eq(t, FIELD_TIMESTAMP);
    ck_assert(!field_type_parse("int", &t));
    ck_assert_str_eq(field_type_name(FIELD_JSON), "json");
    ck_assert_str_eq(field_type_name((enum field_type)42), "unknown");
    ck_assert(schema_field_name_is_valid("_a9", 3));
    ck_assert(!schema_field_name_is_valid("9a", 2));
    ck_assert(!schema_field_name_is_valid("a-b", 3));
    ck_assert(schema_entity_name_is_valid("acme-1", 6));
    ck_assert(!schema_entity_name_is_valid("Acme", 4));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_new_and_find);
    tcase_add_test(tc, test_find_many_fields_and_hand_built);
    tcase_add_test(tc, test_new_rejects);
    tcase_add_test(tc, test_row_get);
    tcase_add_test(tc, test_key_order);
    tcase_add_test(tc, test_key_encode_truncates_and_hash);
    tcase_add_test(tc, test_row_key);
    tcase_add_test(tc, test_names_and_types);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
