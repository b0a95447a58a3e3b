/*
 * Unit tests for src/util/crc32c: the published vectors (RFC 3720 B.4 and
 * the "123456789" check value), chaining with crc32c_extend(), and the
 * hardware and slicing-by-8 paths against a bit-at-a-time reference at
 * every length and alignment up to a few hundred bytes.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "util/crc32c.h"

/* Bit-at-a-time reference, straight from the definition. */
static uint32_t crc_ref(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint32_t crc = 0xffffffffu;

    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

START_TEST(test_known_vectors)
{
    unsigned char buf[48];
    static const unsigned char iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };

    ck_assert_uint_eq(crc32c("", 0), 0);
    ck_assert_uint_eq(crc32c("123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(crc32c("a", 1), 0xc1d04330u);
    memset(buf, 0, 32);
    ck_assert_uint_eq(crc32c(buf, 32), 0x8a9136aau);
    memset(buf, 0xff, 32);
    ck_assert_uint_eq(crc32c(buf, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    ck_assert_uint_eq(crc32c(buf, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    ck_assert_uint_eq(crc32c(buf, 32), 0x113fdb5cu);
    ck_assert_uint_eq(crc32c(iscsi_read, sizeof(iscsi_read)), 0xd9963a56u);
    ck_assert_uint_eq(crc32c__extend_portable(0, iscsi_read, sizeof(iscsi_read)), 0xd9963a56u);
    ck_assert_uint_eq(crc32c__extend_portable(0, "123456789", 9), 0xe3069283u);
}
END_TEST

START_TEST(test_extend_chains)
{
    const char *s = "hello, write-ahead log";
    size_t n = strlen(s);

    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t a = crc32c(s, cut);

        ck_assert_uint_eq(crc32c_extend(a, s + cut, n - cut), crc32c(s, n));
        ck_assert_uint_eq(crc32c__extend_portable(a, s + cut, n - cut), crc32c(s, n));
    }
    ck_assert_uint_eq(crc32c_extend(0, s, n), crc32c(s, n));
}
END_TEST

START_TEST(test_paths_agree_at_every_length_and_alignment)
{
    enum { MAXLEN = 300 };
    unsigned char *buf = malloc(MAXLEN + 16);
    unsigned seed = 12345;

    for (size_t i = 0; i < MAXLEN + 16; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (unsigned char)(seed >> 16);
    }
    for (size_t align = 0; align < 8; align++) {
        for (size_t len = 0; len <= MAXLEN; len++) {
            uint32_t want = crc_ref(buf + align, len);

            ck_assert_uint_eq(crc32c(buf + align, len), want);
            ck_assert_uint_eq(crc32c__extend_portable(0, buf + align, len), want);
        }
    }
    free(buf);
}
END_TEST

START_TEST(test_large_buffer)
{
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    uint32_t before;

    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 7 + (i >> 9));
    before = crc_ref(buf, n);
    ck_assert_uint_eq(crc32c(buf, n), before);
    ck_assert_uint_eq(crc32c__extend_portable(0, buf, n), before);
    /* A single flipped bit changes the value. */
    buf[n / 2] ^= 0x10;
    ck_assert_uint_ne(crc32c(buf, n), before);
    ck_assert_uint_eq(crc32c(buf, n), crc_ref(buf, n));
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_known_vectors);
    tcase_add_test(tc, test_extend_chains);
    tcase_add_test(tc, test_paths_agree_at_every_length_and_alignment);
    tcase_add_test(tc, test_large_buffer);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
