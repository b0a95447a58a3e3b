/*
 * Unit tests for src/engine/bloom.c: the bloom filters of segment files.
 *
 * The hash is part of the file format, so it is pinned by test vectors.
 * Filters built from encoded keys must hold every key (no false
 * negatives) and show a false-positive rate close to the theory
 * (0.82% at 10 bits per key and k = 7) on keys that were not added;
 * the parser must refuse malformed headers and sizes.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/bloom.h"
#include "engine/key.h"

/* An encoded int64 key, as the engine makes them. */
static size_t int_key(int64_t v, uint8_t *buf)
{
    struct value val = {.type = FIELD_INT64, .u.i = v};

    return key_encode(&val, 1, buf, 16);
}

START_TEST(test_hash_vectors)
{
    /*
     * Do not change: on-disk format. Every segment's bloom filter depends
     * on these; they were computed by an independent implementation of
     * the algorithm in bloom.h.
     */
    ck_assert_uint_eq(bloom_hash("", 0), UINT64_C(0xe9e0033e3badaf36));
    ck_assert_uint_eq(bloom_hash("a", 1), UINT64_C(0xb53a7180a8823070));
    ck_assert_uint_eq(bloom_hash("12345678", 8), UINT64_C(0x8d0be6b40ae9d656));
    ck_assert_uint_eq(bloom_hash("123456789", 9), UINT64_C(0xe49e5bb6ca8424cb));
    /* Length takes part: zero padding does not collide. */
    ck_assert_uint_ne(bloom_hash("a\0", 2), bloom_hash("a", 1));
}
END_TEST

static void check_rate(unsigned bits_per_key, uint32_t want_k, double max_rate)
{
    enum { N = 20000, PROBES = 200000 };
    uint64_t *h = malloc(N * sizeof(*h));
    struct strbuf sb = STRBUF_INIT;
    struct bloom b;
    uint8_t key[16];
    size_t fp = 0;
    double rate;

    for (int i = 0; i < N; i++)
        h[i] = bloom_hash(key, int_key(i * 3, key));
    bloom_build(h, N, bits_per_key, &sb);
    ck_assert_int_eq(bloom_parse(sb.buf, sb.len, &b), ST_OK);
    ck_assert_uint_eq(b.k, want_k);
    ck_assert_uint_eq(b.m % 64, 0);
    ck_assert(b.m >= (uint64_t)N * bits_per_key && b.m < (uint64_t)N * bits_per_key + 64);
    for (int i = 0; i < N; i++)
        ck_assert(bloom_may_contain(&b, h[i]));
    /* Keys next to the present ones (i * 3 + 1, i * 3 + 2) and far away. */
    for (int i = 0; i < PROBES; i++) {
        int64_t v = (i % 2) ? (int64_t)i * 3 + 1 + (i % 4 == 1) : INT64_C(1) << 40 | i;

        fp += bloom_may_contain(&b, bloom_hash(key, int_key(v, key)));
    }
    rate = (double)fp / PROBES;
    ck_assert_msg(rate <= max_rate, "false-positive rate %.4f at %u bits/key, want <= %.4f", rate,
                  bits_per_key, max_rate);
    strbuf_release(&sb);
    free(h);
}

START_TEST(test_false_positive_rate)
{
    /* Theory: (1 - e^(-k/b))^k = 0.0082 at b = 10, k = 7; 0.047 at 6, 4; 0.0005 at 16, 11. */
    check_rate(10, 7, 0.0110);
    check_rate(6, 4, 0.060);
    check_rate(16, 11, 0.0010);
    check_rate(1, 1, 0.70);
}
END_TEST

START_TEST(test_empty)
{
    struct strbuf sb = STRBUF_INIT;
    struct bloom b;

    bloom_build(NULL, 0, 10, &sb);
    ck_assert_uint_eq(sb.len, BLOOM_HEADER);
    ck_assert_int_eq(bloom_parse(sb.buf, sb.len, &b), ST_OK);
    ck_assert_uint_eq(b.m, 0);
    ck_assert(!bloom_may_contain(&b, bloom_hash("x", 1)));
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_parse_errors)
{
    uint64_t h[3] = {1, 2, 3};
    struct strbuf sb = STRBUF_INIT;
    struct bloom b;
    uint8_t *p;

    bloom_build(h, 3, 10, &sb); /* m = 64: 16 + 8 bytes */
    ck_assert_uint_eq(sb.len, BLOOM_HEADER + 8);
    p = (uint8_t *)sb.buf;
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_OK);
    ck_assert_int_eq(bloom_parse(p, sb.len - 1, &b), ST_ECORRUPT);
    ck_assert_int_eq(bloom_parse(p, BLOOM_HEADER - 1, &b), ST_ECORRUPT);
    p[0] = 2; /* format */
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_ECORRUPT);
    p[0] = 1;
    p[1] = 0; /* k */
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_ECORRUPT);
    p[1] = BLOOM_MAX_K + 1;
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_ECORRUPT);
    p[1] = 7;
    p[5] = 1; /* reserved */
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_ECORRUPT);
    p[5] = 0;
    p[8] = 65; /* m not a multiple of 64 */
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_ECORRUPT);
    p[8] = 0;
    p[15] = 0x40; /* m huge */
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_ECORRUPT);
    p[15] = 0;
    p[8] = 64;
    ck_assert_int_eq(bloom_parse(p, sb.len, &b), ST_OK);
    strbuf_release(&sb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bloom");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_hash_vectors);
    tcase_add_test(tc, test_false_positive_rate);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
