/*
 * Unit tests for src/engine/colenc.c: the column encodings of segment
 * blocks.
 *
 * Every encoder is run on inputs chosen to make it pick each of its
 * encodings (checked through the encoding byte), and the column is
 * decoded back and compared bit for bit: extreme int64 values, NaN,
 * infinities, -0.0 and subnormal floats, decimals, empty and large
 * (> 64 KiB) strings, strings holding 0x00. Decoders are then fed every
 * strict prefix of each encoding (which must fail: every byte is needed),
 * hand-made malformed columns (overlong varints, dictionary indexes out
 * of range, nonzero padding bits), and random bytes, which must fail or
 * succeed without reading outside their input (ASan checks that).
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/colenc.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Copies the column to a heap buffer of exactly its size, so ASan sees over-reads. */
static uint8_t *exact_copy(const struct strbuf *sb)
{
    uint8_t *p = malloc(sb->len ? sb->len : 1);

    memcpy(p, sb->buf, sb->len);
    return p;
}

static void check_ints(const int64_t *v, size_t n, int want_enc)
{
    struct strbuf sb = STRBUF_INIT;
    int64_t *out = calloc(n + 1, sizeof(*out));
    uint8_t *copy;
    struct colenc_rd rd;

    colenc_put_ints(&sb, v, n);
    if (n == 0) {
        ck_assert_uint_eq(sb.len, 0);
    } else if (want_enc >= 0) {
        ck_assert_int_eq((uint8_t)sb.buf[0], want_enc);
    }
    copy = exact_copy(&sb);
    rd = (struct colenc_rd){copy, copy + sb.len};
    ck_assert_int_eq(colenc_get_ints(&rd, out, n), ST_OK);
    ck_assert_ptr_eq(rd.p, rd.end);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(out[i], v[i]);
    /* Every strict prefix must fail. */
    for (size_t cut = 0; n && cut < sb.len; cut++) {
        rd = (struct colenc_rd){copy, copy + cut};
        ck_assert_int_eq(colenc_get_ints(&rd, out, n), ST_ECORRUPT);
    }
    free(copy);
    free(out);
    strbuf_release(&sb);
}

START_TEST(test_varint)
{
    static const uint64_t vals[] = {0,
                                    1,
                                    127,
                                    128,
                                    16383,
                                    16384,
                                    UINT64_C(1) << 35,
                                    (UINT64_C(1) << 63) - 1,
                                    UINT64_C(1) << 63,
                                    UINT64_MAX};
    static const uint8_t overlong[] = {0x80, 0x80, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x80, 0x02}; /* bit 64 */
    static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x81, 0x00};
    static const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    struct colenc_rd rd;
    uint64_t got;

    for (size_t i = 0; i < ST_ARRAY_SIZE(vals); i++) {
        struct strbuf sb = STRBUF_INIT;

        colenc_put_varint(&sb, vals[i]);
        ck_assert_uint_eq(sb.len, colenc_varint_len(vals[i]));
        rd = (struct colenc_rd){(uint8_t *)sb.buf, (uint8_t *)sb.buf + sb.len};
        ck_assert(colenc_get_varint(&rd, &got));
        ck_assert_uint_eq(got, vals[i]);
        ck_assert_ptr_eq(rd.p, rd.end);
        rd = (struct colenc_rd){(uint8_t *)sb.buf, (uint8_t *)sb.buf + sb.len - 1};
        ck_assert(!colenc_get_varint(&rd, &got));
        ck_assert_ptr_eq(rd.p, (uint8_t *)sb.buf); /* unchanged on failure */
        strbuf_release(&sb);
    }
    ck_assert_uint_eq(colenc_varint_len(UINT64_MAX), COLENC_VARINT_MAX);
    rd = (struct colenc_rd){overlong, overlong + sizeof(overlong)};
    ck_assert(!colenc_get_varint(&rd, &got));
    rd = (struct colenc_rd){eleven, eleven + sizeof(eleven)};
    ck_assert(!colenc_get_varint(&rd, &got));
    rd = (struct colenc_rd){max, max + sizeof(max)};
    ck_assert(colenc_get_varint(&rd, &got));
    ck_assert_uint_eq(got, UINT64_MAX);
}
END_TEST

START_TEST(test_zigzag)
{
    static const int64_t vals[] = {0, -1, 1, -2, 2, INT64_MAX, INT64_MIN, INT64_MIN + 1};

    ck_assert_uint_eq(colenc_zigzag(0), 0);
    ck_assert_uint_eq(colenc_zigzag(-1), 1);
    ck_assert_uint_eq(colenc_zigzag(1), 2);
    ck_assert_uint_eq(colenc_zigzag(INT64_MIN), UINT64_MAX);
    ck_assert_uint_eq(colenc_zigzag(INT64_MAX), UINT64_MAX - 1);
    for (size_t i = 0; i < ST_ARRAY_SIZE(vals); i++)
        ck_assert_int_eq(colenc_unzigzag(colenc_zigzag(vals[i])), vals[i]);
}
END_TEST

START_TEST(test_ints)
{
    int64_t v[600] = {0};

    rng_state = 1;
    check_ints(v, 0, -1);
    v[0] = INT64_MIN;
    check_ints(v, 1, COLENC_INT_CONST);
    for (int i = 0; i < 600; i++)
        v[i] = -77;
    check_ints(v, 600, COLENC_INT_CONST);
    /* Timestamps a minute apart: constant deltas. */
    for (int i = 0; i < 600; i++)
        v[i] = INT64_C(978307200000) + i * 60000;
    check_ints(v, 600, COLENC_INT_DELTA);
    /* Small values around a large base: frame of reference. */
    for (int i = 0; i < 600; i++)
        v[i] = INT64_C(1) << 50 | (int64_t)(rnd() % 200);
    check_ints(v, 600, COLENC_INT_FOR);
    /* Extremes: deltas wrap around. */
    for (int i = 0; i < 600; i++)
        v[i] = (i % 3 == 0) ? INT64_MIN : (i % 3 == 1) ? INT64_MAX : 0;
    check_ints(v, 600, -1);
    for (int i = 0; i < 600; i++)
        v[i] = (int64_t)rnd();
    check_ints(v, 600, -1);
    v[0] = INT64_MAX;
    v[1] = INT64_MIN;
    check_ints(v, 2, -1);
}
END_TEST

START_TEST(test_ints_malformed)
{
    static const uint8_t bad_enc[] = {7, 0};
    static const uint8_t for_trunc[] = {COLENC_INT_FOR, 0, 1};
    int64_t out[4];
    struct colenc_rd rd;

    rd = (struct colenc_rd){bad_enc, bad_enc + sizeof(bad_enc)};
    ck_assert_int_eq(colenc_get_ints(&rd, out, 1), ST_ECORRUPT);
    rd = (struct colenc_rd){for_trunc, for_trunc + sizeof(for_trunc)};
    ck_assert_int_eq(colenc_get_ints(&rd, out, 2), ST_ECORRUPT);
    rd = (struct colenc_rd){for_trunc, for_trunc + sizeof(for_trunc)};
    ck_assert_int_eq(colenc_get_ints(&rd, out, 1), ST_OK);
    ck_assert_int_eq(out[0], 1);
    ck_assert_ptr_eq(rd.p, rd.end);
}
END_TEST

static void check_bits(const uint8_t *v, size_t n, int want_enc)
{
    struct strbuf sb = STRBUF_INIT;
    uint8_t *out = calloc(n + 1, 1);
    uint8_t *copy;
    struct colenc_rd rd;
    size_t ones = 0;
    size_t got_ones;

    for (size_t i = 0; i < n; i++)
        ones += v[i];
    colenc_put_bits(&sb, v, n);
    if (n)
        ck_assert_int_eq((uint8_t)sb.buf[0], want_enc);
    else
        ck_assert_uint_eq(sb.len, 0);
    copy = exact_copy(&sb);
    rd = (struct colenc_rd){copy, copy + sb.len};
    ck_assert_int_eq(colenc_get_bits(&rd, out, n, &got_ones), ST_OK);
    ck_assert_ptr_eq(rd.p, rd.end);
    ck_assert_uint_eq(got_ones, ones);
    ck_assert(n == 0 || !memcmp(out, v, n));
    for (size_t cut = 0; n && cut < sb.len; cut++) {
        rd = (struct colenc_rd){copy, copy + cut};
        ck_assert_int_eq(colenc_get_bits(&rd, out, n, NULL), ST_ECORRUPT);
    }
    free(copy);
    free(out);
    strbuf_release(&sb);
}

START_TEST(test_bits)
{
    uint8_t v[77] = {0};
    static const uint8_t pad[] = {COLENC_BITS_MAP, 0x09}; /* bit 3 set, n = 3 */
    uint8_t out[8];
    struct colenc_rd rd;

    check_bits(v, 0, 0);
    memset(v, 0, sizeof(v));
    check_bits(v, 77, COLENC_BITS_ZERO);
    memset(v, 1, sizeof(v));
    check_bits(v, 77, COLENC_BITS_ONE);
    for (int i = 0; i < 77; i++)
        v[i] = (i * 7 % 5) == 1;
    check_bits(v, 77, COLENC_BITS_MAP);
    check_bits(v, 64, COLENC_BITS_MAP);
    check_bits(v, 9, COLENC_BITS_MAP);

    rd = (struct colenc_rd){pad, pad + sizeof(pad)};
    ck_assert_int_eq(colenc_get_bits(&rd, out, 3, NULL), ST_ECORRUPT);
    rd = (struct colenc_rd){pad, pad + sizeof(pad)};
    ck_assert_int_eq(colenc_get_bits(&rd, out, 4, NULL), ST_OK);
    ck_assert(out[0] == 1 && out[1] == 0 && out[2] == 0 && out[3] == 1);
}
END_TEST

static uint64_t bits_of(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

static void check_floats(const double *v, size_t n, int want_enc)
{
    struct strbuf sb = STRBUF_INIT;
    double *out = calloc(n + 1, sizeof(*out));
    uint8_t *copy;
    struct colenc_rd rd;

    colenc_put_floats(&sb, v, n);
    if (n && want_enc >= 0)
        ck_assert_int_eq((uint8_t)sb.buf[0], want_enc);
    copy = exact_copy(&sb);
    rd = (struct colenc_rd){copy, copy + sb.len};
    ck_assert_int_eq(colenc_get_floats(&rd, out, n), ST_OK);
    ck_assert_ptr_eq(rd.p, rd.end);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(bits_of(out[i]) == bits_of(v[i]), "value %zu: %a != %a", i, out[i], v[i]);
    for (size_t cut = 0; n && cut < sb.len; cut++) {
        rd = (struct colenc_rd){copy, copy + cut};
        ck_assert_int_eq(colenc_get_floats(&rd, out, n), ST_ECORRUPT);
    }
    free(copy);
    free(out);
    strbuf_release(&sb);
}

START_TEST(test_floats)
{
    double v[500] = {0};
    struct strbuf sb = STRBUF_INIT;

    rng_state = 2;
    check_floats(v, 0, -1);
    /* Whole numbers: decimal exponent 0. */
    for (int i = 0; i < 500; i++)
        v[i] = 100 + (double)(rnd() % 3900);
    check_floats(v, 500, COLENC_FLOAT_DEC);
    colenc_put_floats(&sb, v, 500);
    ck_assert_int_eq(sb.buf[1], 0);
    /* Three decimals: exponent 3. */
    for (int i = 0; i < 500; i++)
        v[i] = (double)(int64_t)(rnd() % 100000) / 1000.0;
    v[0] = 0.125;
    v[1] = 12.345;
    check_floats(v, 500, COLENC_FLOAT_DEC);
    strbuf_reset(&sb);
    colenc_put_floats(&sb, v, 500);
    ck_assert_int_eq(sb.buf[1], 3);
    /* A noisy random walk: shuffled bytes compress best. */
    v[0] = 100.0 / 3.0;
    for (int i = 1; i < 500; i++)
        v[i] = v[i - 1] + ((double)(rnd() % 2001) - 1000.0) / 7.0e4;
    check_floats(v, 500, COLENC_FLOAT_SHUFFLE);
    /* A few repeated values that are not decimals: raw bytes repeat whole. */
    for (int i = 0; i < 500; i++)
        v[i] = (double)(rnd() % 7) / 3.0;
    check_floats(v, 500, COLENC_FLOAT_RAW);
    /* Random doubles of every magnitude and sign. */
    for (int i = 0; i < 500; i++)
        v[i] = (double)rnd() / 3.0e7 * ((rnd() & 1) ? 1 : -1);
    check_floats(v, 500, -1);
    /* Special values, with and without whole numbers around them. */
    v[0] = NAN;
    v[1] = INFINITY;
    v[2] = -INFINITY;
    v[3] = -0.0;
    v[4] = 0.0;
    v[5] = DBL_MIN / 4; /* subnormal */
    v[6] = DBL_MAX;
    v[7] = -DBL_MAX;
    v[8] = DBL_TRUE_MIN;
    v[9] = 9007199254740993.0; /* 2^53 + 1 rounds to 2^53 */
    v[10] = -9007199254740992.0;
    check_floats(v, 11, -1);
    for (int i = 0; i < 11; i++) {
        double w[2] = {v[i], 3.0};

        check_floats(w, 2, -1);
    }
    /* -0.0 is not a whole number here: it would come back as +0.0. */
    v[0] = 1.0;
    v[1] = -0.0;
    check_floats(v, 2, -1);
    strbuf_reset(&sb);
    colenc_put_floats(&sb, v, 2);
    ck_assert_int_ne(sb.buf[0], COLENC_FLOAT_DEC);
    /* Forced raw layout. */
    for (int i = 0; i < 500; i++)
        v[i] = (double)rnd() / 7.0;
    colenc_test_force_float(COLENC_FLOAT_RAW);
    check_floats(v, 500, COLENC_FLOAT_RAW);
    colenc_test_force_float(COLENC_FLOAT_SHUFFLE);
    check_floats(v, 500, COLENC_FLOAT_SHUFFLE);
    colenc_test_force_float(COLENC_FLOAT_DEC); /* not decimals: raw */
    check_floats(v, 500, COLENC_FLOAT_RAW);
    colenc_test_force_float(-1);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_floats_malformed)
{
    static const uint8_t bad_e[] = {COLENC_FLOAT_DEC, COLENC_DEC_MAX + 1, COLENC_INT_CONST, 2};
    static const uint8_t ok_e[] = {COLENC_FLOAT_DEC, 2, COLENC_INT_CONST, 2};
    static const uint8_t short_raw[] = {COLENC_FLOAT_RAW, 1, 2, 3, 4, 5, 6, 7};
    double out[2];
    struct colenc_rd rd;

    rd = (struct colenc_rd){bad_e, bad_e + sizeof(bad_e)};
    ck_assert_int_eq(colenc_get_floats(&rd, out, 2), ST_ECORRUPT);
    rd = (struct colenc_rd){ok_e, ok_e + sizeof(ok_e)};
    ck_assert_int_eq(colenc_get_floats(&rd, out, 2), ST_OK);
    ck_assert(out[0] == 0.01 && out[1] == 0.01);
    rd = (struct colenc_rd){short_raw, short_raw + sizeof(short_raw)};
    ck_assert_int_eq(colenc_get_floats(&rd, out, 1), ST_ECORRUPT);
}
END_TEST

static void check_strs(const struct colenc_str *v, size_t n, int want_enc)
{
    struct strbuf sb = STRBUF_INIT;
    struct colenc_str *out = calloc(n + 1, sizeof(*out));
    uint8_t *copy;
    struct colenc_rd rd;

    colenc_put_strs(&sb, v, n);
    if (n && want_enc >= 0)
        ck_assert_int_eq((uint8_t)sb.buf[0], want_enc);
    copy = exact_copy(&sb);
    rd = (struct colenc_rd){copy, copy + sb.len};
    ck_assert_int_eq(colenc_get_strs(&rd, out, n), ST_OK);
    ck_assert_ptr_eq(rd.p, rd.end);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(out[i].len, v[i].len);
        ck_assert(v[i].len == 0 || !memcmp(out[i].ptr, v[i].ptr, v[i].len));
        ck_assert(v[i].len == 0 ||
                  (out[i].ptr >= copy && out[i].ptr + out[i].len <= copy + sb.len));
    }
    /* Prefixes: long strings make this quadratic, so sample them. */
    for (size_t cut = 0; n && cut < sb.len; cut += 1 + cut / 64) {
        rd = (struct colenc_rd){copy, copy + cut};
        ck_assert_int_eq(colenc_get_strs(&rd, out, n), ST_ECORRUPT);
    }
    free(copy);
    free(out);
    strbuf_release(&sb);
}

START_TEST(test_strings)
{
    static const char *const airports[] = {"LAS", "PHL", "SFO", "", "JFK"};
    struct colenc_str v[400] = {{0}};
    char bufs[400][24];
    uint8_t *big = malloc(200000);
    static const uint8_t nul[] = {'a', 0, 'b', 0, 0};

    rng_state = 3;
    check_strs(v, 0, -1);
    for (int i = 0; i < 400; i++) {
        const char *a = airports[rnd() % 5];

        v[i].ptr = (const uint8_t *)a;
        v[i].len = (uint32_t)strlen(a);
    }
    check_strs(v, 400, COLENC_STR_DICT);
    for (int i = 0; i < 400; i++) {
        snprintf(bufs[i], sizeof(bufs[i]), "host-%d-%llu", i, (unsigned long long)(rnd() % 1000));
        v[i].ptr = (const uint8_t *)bufs[i];
        v[i].len = (uint32_t)strlen(bufs[i]);
    }
    check_strs(v, 400, COLENC_STR_PLAIN);
    /* Every value empty. */
    for (int i = 0; i < 400; i++) {
        v[i].ptr = NULL;
        v[i].len = 0;
    }
    check_strs(v, 400, -1);
    /* Large values (> 64 KiB), some repeated, and 0x00 bytes. */
    for (size_t i = 0; i < 200000; i++)
        big[i] = (uint8_t)rnd();
    v[0] = (struct colenc_str){big, 200000};
    v[1] = (struct colenc_str){big + 1, 70000};
    v[2] = (struct colenc_str){nul, sizeof(nul)};
    v[3] = (struct colenc_str){big, 200000};
    v[4] = (struct colenc_str){NULL, 0};
    check_strs(v, 5, COLENC_STR_DICT);
    check_strs(v, 3, COLENC_STR_PLAIN);
    free(big);
}
END_TEST

START_TEST(test_strings_malformed)
{
    /* d = 2, lengths 1 1, "ab", indexes 0 2 (2 out of range). */
    static const uint8_t bad_ix[] = {COLENC_STR_DICT, 2, 1, 1, 'a', 'b', 0, 2};
    static const uint8_t ok_ix[] = {COLENC_STR_DICT, 2, 1, 1, 'a', 'b', 1, 0};
    /* d = 3 > n = 2. */
    static const uint8_t big_d[] = {COLENC_STR_DICT, 3, 1, 1, 1, 'a', 'b', 'c', 0, 1};
    static const uint8_t zero_d[] = {COLENC_STR_DICT, 0, 0, 0};
    /* A length past the end. */
    static const uint8_t long_len[] = {COLENC_STR_PLAIN, 5, 'a', 'b'};
    /* A length over 32 bits. */
    static const uint8_t huge_len[] = {COLENC_STR_PLAIN, 0x80, 0x80, 0x80, 0x80, 0x10};
    struct colenc_str out[2];
    struct colenc_rd rd;

    rd = (struct colenc_rd){bad_ix, bad_ix + sizeof(bad_ix)};
    ck_assert_int_eq(colenc_get_strs(&rd, out, 2), ST_ECORRUPT);
    rd = (struct colenc_rd){ok_ix, ok_ix + sizeof(ok_ix)};
    ck_assert_int_eq(colenc_get_strs(&rd, out, 2), ST_OK);
    ck_assert(out[0].len == 1 && out[0].ptr[0] == 'b' && out[1].ptr[0] == 'a');
    rd = (struct colenc_rd){big_d, big_d + sizeof(big_d)};
    ck_assert_int_eq(colenc_get_strs(&rd, out, 2), ST_ECORRUPT);
    rd = (struct colenc_rd){zero_d, zero_d + sizeof(zero_d)};
    ck_assert_int_eq(colenc_get_strs(&rd, out, 2), ST_ECORRUPT);
    rd = (struct colenc_rd){long_len, long_len + sizeof(long_len)};
    ck_assert_int_eq(colenc_get_strs(&rd, out, 1), ST_ECORRUPT);
    rd = (struct colenc_rd){huge_len, huge_len + sizeof(huge_len)};
    ck_assert_int_eq(colenc_get_strs(&rd, out, 1), ST_ECORRUPT);
}
END_TEST

/* Random bytes into every decoder: any status, but no out-of-bounds access. */
START_TEST(test_random_bytes)
{
    enum { N = 64 };
    int64_t iv[N];
    uint8_t bv[N];
    double fv[N];
    struct colenc_str sv[N];

    rng_state = 4;
    for (int round = 0; round < 20000; round++) {
        size_t len = rnd() % 24;
        uint8_t *p = malloc(len ? len : 1);
        size_t n = 1 + rnd() % N;
        struct colenc_rd rd;

        for (size_t i = 0; i < len; i++)
            p[i] = (rnd() % 3) ? (uint8_t)(rnd() % 4) : (uint8_t)rnd();
        rd = (struct colenc_rd){p, p + len};
        (void)colenc_get_ints(&rd, iv, n);
        ck_assert(rd.p <= rd.end);
        rd = (struct colenc_rd){p, p + len};
        (void)colenc_get_bits(&rd, bv, n, NULL);
        ck_assert(rd.p <= rd.end);
        rd = (struct colenc_rd){p, p + len};
        (void)colenc_get_floats(&rd, fv, n);
        ck_assert(rd.p <= rd.end);
        rd = (struct colenc_rd){p, p + len};
        if (colenc_get_strs(&rd, sv, n) == ST_OK)
            for (size_t i = 0; i < n; i++)
                ck_assert(sv[i].len == 0 || (sv[i].ptr >= p && sv[i].ptr + sv[i].len <= p + len));
        ck_assert(rd.p <= rd.end);
        free(p);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("colenc");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_varint);
    tcase_add_test(tc, test_zigzag);
    tcase_add_test(tc, test_ints);
    tcase_add_test(tc, test_ints_malformed);
    tcase_add_test(tc, test_bits);
    tcase_add_test(tc, test_floats);
    tcase_add_test(tc, test_floats_malformed);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_strings_malformed);
    tcase_add_test(tc, test_random_bytes);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
