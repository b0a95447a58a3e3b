/*
 * Unit tests for src/engine/key.c: the encoded order of every key type
 * and of composite keys against a brute-force comparison of the values
 * (random values with a fixed seed, plus the edge values), decoding back
 * to values, malformed keys, rows, the hash and key_successor().
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/key.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: deterministic and good enough to spread values. */
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Strings live here so values can point at them. */
static char strpool[1 << 16];
static size_t strpool_used;

static const int64_t int_edges[] = {INT64_MIN, INT64_MIN + 1, -256, -255,          -1,       0,
                                    1,         255,           256,  INT64_MAX - 1, INT64_MAX};
static const double float_edges[] = {-INFINITY, -DBL_MAX, -1e300,  -1.5,     -1.0,    -DBL_MIN,
                                     -4.9e-324, -0.0,     0.0,     4.9e-324, DBL_MIN, 1.0,
                                     1.5,       1e300,    DBL_MAX, INFINITY};

static struct value rand_value(enum field_type t)
{
    struct value v;
    uint64_t r = rnd();

    memset(&v, 0, sizeof(v));
    v.type = t;
    switch (t) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        if (r % 4 == 0)
            v.u.i = int_edges[rnd() % ST_ARRAY_SIZE(int_edges)];
        else if (r % 4 == 1)
            v.u.i = (int64_t)(rnd() % 7) - 3; /* many ties */
        else
            v.u.i = (int64_t)rnd();
        break;
    case FIELD_FLOAT64:
        if (r % 3 == 0) {
            v.u.f = float_edges[rnd() % ST_ARRAY_SIZE(float_edges)];
        } else if (r % 3 == 1) {
            v.u.f = ((double)(rnd() % 2001) - 1000.0) / 8.0;
        } else {
            uint64_t bits = rnd();

            memcpy(&v.u.f, &bits, sizeof(bits));
            if (isnan(v.u.f))
                v.u.f = 42.0;
        }
        break;
    case FIELD_BOOL:
        v.u.b = r & 1;
        break;
    case FIELD_STRING: {
        /* Short strings over a tiny alphabet, NUL included: many prefixes and ties. */
        static const char alpha[] = {'\0', '\x01', 'a', 'b', '\xff'};
        size_t len = rnd() % 6;

        if (strpool_used + len > sizeof(strpool))
            strpool_used = 0;
        for (size_t i = 0; i < len; i++)
            strpool[strpool_used + i] = alpha[rnd() % sizeof(alpha)];
        v.u.s.ptr = strpool + strpool_used;
        v.u.s.len = (uint32_t)len;
        strpool_used += len;
        break;
    }
    default:
        ck_abort();
    }
    return v;
}

/* The natural order, written from the definition. */
static int value_cmp(const struct value *a, const struct value *b)
{
    switch (a->type) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    case FIELD_FLOAT64:
        return (a->u.f > b->u.f) - (a->u.f < b->u.f);
    case FIELD_BOOL:
        return (int)a->u.b - (int)b->u.b;
    default: {
        size_t n = ST_MIN(a->u.s.len, b->u.s.len);
        int c = n ? memcmp(a->u.s.ptr, b->u.s.ptr, n) : 0;

        if (c)
            return c < 0 ? -1 : 1;
        return (a->u.s.len > b->u.s.len) - (a->u.s.len < b->u.s.len);
    }
    }
}

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

static int composite_cmp(const struct value *a, const struct value *b, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        int c = value_cmp(&a[k], &b[k]);

        if (c)
            return c;
    }
    return 0;
}

static bool value_eq(const struct value *a, const struct value *b)
{
    if (a->type != b->type)
        return false;
    if (a->type == FIELD_FLOAT64) /* -0.0 decodes as 0.0 */
        return a->u.f == b->u.f;
    return value_cmp(a, b) == 0;
}

/* Encodes, checks the returned length against a probe with a small buffer. */
static size_t enc(const struct value *v, uint32_t n, uint8_t *buf, size_t cap)
{
    uint8_t small[3];
    size_t len = key_encode(v, n, buf, cap);

    ck_assert_uint_le(len, cap);
    ck_assert_uint_eq(key_encode(v, n, small, sizeof(small)), len);
    ck_assert_int_eq(memcmp(small, buf, ST_MIN(len, sizeof(small))), 0);
    return len;
}

static void check_pairs(const enum field_type *types, uint32_t n, int rounds)
{
    uint8_t ka[256], kb[256], scratch[256];
    struct value a[4], b[4], back[4];
    struct err err;

    for (int r = 0; r < rounds; r++) {
        size_t la, lb;
        int want, got;

        for (uint32_t k = 0; k < n; k++) {
            a[k] = rand_value(types[k]);
            /* Often share leading fields so later fields decide. */
            b[k] = (rnd() % 3 == 0) ? a[k] : rand_value(types[k]);
        }
        la = enc(a, n, ka, sizeof(ka));
        lb = enc(b, n, kb, sizeof(kb));
        want = sign(composite_cmp(a, b, n));
        got = sign(key_compare(ka, la, kb, lb));
        ck_assert_msg(want == got, "round %d: natural %d, encoded %d", r, want, got);
        ck_assert_int_eq(want == 0, la == lb && !memcmp(ka, kb, la));
        if (want == 0)
            ck_assert_uint_eq(key_hash(ka, la), key_hash(kb, lb));

        ck_assert_int_eq(key_decode(types, n, ka, la, back, scratch, &err), ST_OK);
        for (uint32_t k = 0; k < n; k++)
            ck_assert(value_eq(&a[k], &back[k]));
    }
}

START_TEST(test_order_single_fields)
{
    static const enum field_type types[] = {FIELD_INT64, FIELD_TIMESTAMP, FIELD_FLOAT64, FIELD_BOOL,
                                            FIELD_STRING};

    rng_state = 1;
    for (size_t i = 0; i < ST_ARRAY_SIZE(types); i++)
        check_pairs(&types[i], 1, 6000);
}
END_TEST

START_TEST(test_order_composite)
{
    enum field_type types[4];
    static const enum field_type all[] = {FIELD_INT64, FIELD_TIMESTAMP, FIELD_FLOAT64, FIELD_BOOL,
                                          FIELD_STRING};

    rng_state = 2;
    for (int shape = 0; shape < 120; shape++) {
        uint32_t n = 2 + (uint32_t)(rnd() % 3);

        for (uint32_t k = 0; k < n; k++)
            types[k] = all[rnd() % ST_ARRAY_SIZE(all)];
        check_pairs(types, n, 150);
    }
    /* Strings first, the shape where a missing terminator would break order. */
    types[0] = FIELD_STRING;
    types[1] = FIELD_STRING;
    types[2] = FIELD_INT64;
    check_pairs(types, 3, 6000);
}
END_TEST

static size_t enc_str(const char *s, size_t len, uint8_t *buf)
{
    struct value v;

    memset(&v, 0, sizeof(v));
    v.type = FIELD_STRING;
    v.u.s.ptr = s;
    v.u.s.len = (uint32_t)len;
    return key_encode(&v, 1, buf, 64);
}

START_TEST(test_string_edges)
{
    uint8_t a[64], b[64], c[64], d[64];
    size_t la = enc_str("a", 1, a);
    size_t lb = enc_str("a\0", 2, b);
    size_t lc = enc_str("ab", 2, c);
    size_t ld = enc_str("", 0, d);
    static const uint8_t want_b[] = {'a', 0, 0xff, 0, 1};

    ck_assert_int_lt(key_compare(a, la, b, lb), 0);
    ck_assert_int_lt(key_compare(b, lb, c, lc), 0);
    ck_assert_int_lt(key_compare(d, ld, a, la), 0);
    ck_assert_uint_eq(ld, 2);
    ck_assert_uint_eq(lb, sizeof(want_b));
    ck_assert_int_eq(memcmp(b, want_b, lb), 0);
}
END_TEST

START_TEST(test_numeric_edges)
{
    struct value v[2];
    uint8_t a[16], b[16];

    memset(v, 0, sizeof(v));
    v[0].type = v[1].type = FIELD_FLOAT64;
    v[0].u.f = -0.0;
    v[1].u.f = 0.0;
    ck_assert_uint_eq(key_encode(&v[0], 1, a, sizeof(a)), 8);
    key_encode(&v[1], 1, b, sizeof(b));
    ck_assert_int_eq(memcmp(a, b, 8), 0);

    v[0].type = v[1].type = FIELD_INT64;
    v[0].u.i = -1;
    v[1].u.i = 0;
    key_encode(&v[0], 1, a, sizeof(a));
    key_encode(&v[1], 1, b, sizeof(b));
    ck_assert_int_lt(memcmp(a, b, 8), 0);
    /* 0 is 0x80 00 .. 00: big-endian with the sign bit flipped. */
    ck_assert_uint_eq(b[0], 0x80);
    for (int i = 1; i < 8; i++)
        ck_assert_uint_eq(b[i], 0);
}
END_TEST

START_TEST(test_decode_escapes_and_borrow)
{
    static const enum field_type types[] = {FIELD_STRING, FIELD_INT64, FIELD_STRING};
    struct value v[3], back[3];
    uint8_t key[64], scratch[64];
    struct err err;
    size_t len;

    memset(v, 0, sizeof(v));
    v[0].type = FIELD_STRING;
    v[0].u.s.ptr = "plain";
    v[0].u.s.len = 5;
    v[1].type = FIELD_INT64;
    v[1].u.i = -42;
    v[2].type = FIELD_STRING;
    v[2].u.s.ptr = "x\0y\0";
    v[2].u.s.len = 4;
    len = key_encode(v, 3, key, sizeof(key));
    ck_assert_int_eq(key_decode(types, 3, key, len, back, scratch, &err), ST_OK);
    /* Without escapes the string borrows the key; with them it is in scratch. */
    ck_assert_ptr_eq(back[0].u.s.ptr, (const char *)key);
    ck_assert_uint_eq(back[0].u.s.len, 5);
    ck_assert_int_eq(back[1].u.i, -42);
    ck_assert_ptr_eq(back[2].u.s.ptr, (const char *)scratch);
    ck_assert_uint_eq(back[2].u.s.len, 4);
    ck_assert_int_eq(memcmp(back[2].u.s.ptr, "x\0y\0", 4), 0);
}
END_TEST

START_TEST(test_decode_malformed)
{
    static const enum field_type t_int[] = {FIELD_INT64};
    static const enum field_type t_bool[] = {FIELD_BOOL};
    static const enum field_type t_str[] = {FIELD_STRING};
    static const uint8_t short_int[] = {0x80, 0, 0};
    static const uint8_t long_int[] = {0x80, 0, 0, 0, 0, 0, 0, 1, 7};
    static const uint8_t bad_bool[] = {2};
    static const uint8_t no_term[] = {'a', 'b'};
    static const uint8_t half_term[] = {'a', 0};
    static const uint8_t bad_escape[] = {'a', 0, 7, 0, 1};
    struct value v[1];
    uint8_t scratch[16];
    struct err err;

    ck_assert_int_eq(key_decode(t_int, 1, short_int, sizeof(short_int), v, scratch, &err),
                     ST_ECORRUPT);
    ck_assert_int_eq(key_decode(t_int, 1, long_int, sizeof(long_int), v, scratch, &err),
                     ST_ECORRUPT);
    ck_assert_int_eq(key_decode(t_int, 1, long_int, 8, v, scratch, &err), ST_OK);
    ck_assert_int_eq(v[0].u.i, 1);
    ck_assert_int_eq(key_decode(t_bool, 1, bad_bool, 1, v, scratch, &err), ST_ECORRUPT);
    ck_assert_int_eq(key_decode(t_str, 1, no_term, sizeof(no_term), v, scratch, &err), ST_ECORRUPT);
    ck_assert_int_eq(key_decode(t_str, 1, half_term, sizeof(half_term), v, scratch, &err),
                     ST_ECORRUPT);
    ck_assert_int_eq(key_decode(t_str, 1, bad_escape, sizeof(bad_escape), v, scratch, &err),
                     ST_ECORRUPT);
    ck_assert_int_eq(key_decode(t_str, 1, NULL, 0, v, scratch, &err), ST_ECORRUPT);
}
END_TEST

static struct field mkfield(const char *name, enum field_type t)
{
    struct field f;

    memset(&f, 0, sizeof(f));
    st_strlcpy(f.name, name, sizeof(f.name));
    f.type = t;
    return f;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

START_TEST(test_encode_row)
{
    /* Key (name, id) declared in the other order than the fields. */
    struct field f[3] = {mkfield("id", FIELD_INT64), mkfield("score", FIELD_FLOAT64),
                         mkfield("name", FIELD_STRING)};
    const char *pk[] = {"name", "id"};
    struct schema *s;
    struct err err;
    uint8_t row[64], k1[64], k2[64], scratch[64];
    struct value v[2], back[2];
    size_t n = 0, l1, l2;
    double score = 2.5;
    uint64_t bits;

    ck_assert_int_eq(schema_new(1, f, 3, pk, 2, NULL, &s, &err), ST_OK);
    n = 4;
    row[n++] = 0; /* no nulls */
    put_le(row + n, (uint64_t)-7, 8);
    n += 8;
    memcpy(&bits, &score, 8);
    put_le(row + n, bits, 8);
    n += 8;
    put_le(row + n, 3, 4);
    n += 4;
    memcpy(row + n, "bob", 3);
    n += 3;
    put_le(row, n, 4);

    memset(v, 0, sizeof(v));
    v[0].type = FIELD_STRING;
    v[0].u.s.ptr = "bob";
    v[0].u.s.len = 3;
    v[1].type = FIELD_INT64;
    v[1].u.i = -7;
    l1 = key_encode_row(s, row, k1, sizeof(k1));
    l2 = key_encode(v, 2, k2, sizeof(k2));
    ck_assert_uint_eq(l1, l2);
    ck_assert_int_eq(memcmp(k1, k2, l1), 0);
    ck_assert_uint_eq(l1, 3 + 2 + 8);
    ck_assert_uint_eq(key_hash(k1, l1), schema_key_hash(k2, l2));
    ck_assert_int_eq(key_decode_pk(s, k1, l1, back, scratch, &err), ST_OK);
    ck_assert_int_eq(back[0].type, FIELD_STRING);
    ck_assert_int_eq(memcmp(back[0].u.s.ptr, "bob", 3), 0);
    ck_assert_int_eq(back[1].u.i, -7);
    schema_free(s);
}
END_TEST

START_TEST(test_hash_and_successor)
{
    uint8_t buf[40], succ[41], k[1] = {5}, x[2];
    uint64_t h[41], before;
    size_t sl;

    for (int i = 0; i < 40; i++)
        buf[i] = (uint8_t)(i * 7);
    /* Every length hashes differently (no trivial length collisions). */
    for (int i = 0; i <= 40; i++) {
        h[i] = key_hash(buf, (size_t)i);
        for (int j = 0; j < i; j++)
            ck_assert_uint_ne(h[i], h[j]);
    }
    /* A one-bit change anywhere changes the hash. */
    before = key_hash(buf, 40);
    for (int i = 0; i < 40; i++) {
        buf[i] ^= 0x10;
        ck_assert_uint_ne(key_hash(buf, 40), before);
        buf[i] ^= 0x10;
    }
    ck_assert_uint_eq(key_hash(buf, 40), schema_key_hash(buf, 40));

    /* Nothing of up to 2 bytes lies strictly between k and its successor. */
    sl = key_successor(k, 1, succ);
    ck_assert_uint_eq(sl, 2);
    ck_assert_int_gt(key_compare(succ, sl, k, 1), 0);
    for (int a = 0; a < 256; a++) {
        x[0] = (uint8_t)a;
        for (int b = -1; b < 256; b++) {
            size_t xl = b < 0 ? 1 : 2;

            x[1] = (uint8_t)(b < 0 ? 0 : b);
            if (key_compare(x, xl, k, 1) > 0)
                ck_assert_int_ge(key_compare(x, xl, succ, sl), 0);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("key");
    TCase *tc = tcase_create("key");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_order_single_fields);
    tcase_add_test(tc, test_order_composite);
    tcase_add_test(tc, test_string_edges);
    tcase_add_test(tc, test_numeric_edges);
    tcase_add_test(tc, test_decode_escapes_and_borrow);
    tcase_add_test(tc, test_decode_malformed);
    tcase_add_test(tc, test_encode_row);
    tcase_add_test(tc, test_hash_and_successor);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
