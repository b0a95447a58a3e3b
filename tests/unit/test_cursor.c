/*
 * Unit tests for src/api/cursor.c: cursors round-trip with and without a
 * key, and any change fails with the one message: every bit of the
 * binary flipped, every character of the text replaced, the text cut
 * short or lengthened, another tenant, table, query or secret, a forged
 * cursor with a valid layout but no valid MAC. Fingerprints ignore
 * layout, cursor, as_of, limit and null members, and nothing else.
 */
#include <check.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "api/cursor.h"
#include "util/strbuf.h"

static const uint8_t secret[CURSOR_SECRET_LEN] = "0123456789abcdef0123456789abcdef";

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void sample(struct cursor *c, size_t key_len)
{
    memset(c, 0, sizeof(*c));
    c->tenant_id = 7;
    c->table_id = 0x1122334455667788ULL;
    c->version = 123456789;
    c->fingerprint = 0xfedcba9876543210ULL;
    c->skip = key_len ? 0 : 4242;
    c->key_len = key_len;
    for (size_t i = 0; i < key_len; i++)
        c->key[i] = (uint8_t)(i * 37 + 1);
}

/* The text of c (caller frees). */
static char *encode(const struct cursor *c)
{
    struct strbuf sb = STRBUF_INIT;

    cursor_encode(c, secret, &sb);
    return strbuf_detach(&sb, NULL);
}

/* Decodes text against the sample's ids; returns the status. */
static enum st_status decode(const char *text, size_t len, struct cursor *out)
{
    struct err err;
    enum st_status rc;

    err_clear(&err);
    rc = cursor_decode(text, len, secret, 7, 0x1122334455667788ULL, 0xfedcba9876543210ULL, out,
                       &err);
    if (rc != ST_OK) {
        ck_assert_int_eq(rc, ST_EINVAL);
        ck_assert_str_eq(err.msg, CURSOR_INVALID);
    }
    return rc;
}

START_TEST(test_round_trip)
{
    static const size_t lens[] = {0, 1, 8, 100, CURSOR_KEY_MAX};
    struct cursor c, d;

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        char *t;

        sample(&c, lens[i]);
        t = encode(&c);
        ck_assert_uint_le(strlen(t), CURSOR_TEXT_MAX);
        ck_assert_uint_eq(strspn(t, b64url), strlen(t));
        ck_assert_int_eq(decode(t, strlen(t), &d), ST_OK);
        ck_assert_uint_eq(d.tenant_id, c.tenant_id);
        ck_assert_uint_eq(d.table_id, c.table_id);
        ck_assert_uint_eq(d.version, c.version);
        ck_assert_uint_eq(d.fingerprint, c.fingerprint);
        ck_assert_uint_eq(d.skip, c.skip);
        ck_assert_uint_eq(d.key_len, c.key_len);
        ck_assert(!memcmp(d.key, c.key, c.key_len));
        free(t);
    }
    /* A key and a skip together (a page cut inside a long key's run). */
    sample(&c, 5);
    c.skip = 99;
    {
        char *t = encode(&c);

        ck_assert_int_eq(decode(t, strlen(t), &d), ST_OK);
        ck_assert_uint_eq(d.skip, 99);
        ck_assert_uint_eq(d.key_len, 5);
        free(t);
    }
}
END_TEST

/* Every character replaced by every other base64url character fails. */
START_TEST(test_every_char_changed)
{
    struct cursor c, d;
    size_t len;
    char *t;

    sample(&c, 9);
    t = encode(&c);
    len = strlen(t);
    for (size_t i = 0; i < len; i++) {
        char orig = t[i];

        for (const char *r = b64url; *r; r++) {
            if (*r == orig)
                continue;
            t[i] = *r;
            ck_assert_msg(decode(t, len, &d) != ST_OK, "char %zu changed to %c decodes", i, *r);
        }
        /* Every byte outside the alphabet: padding, standard base64, non-ASCII. */
        for (int b = 0; b < 256; b++) {
            if (b && strchr(b64url, b))
                continue;
            t[i] = (char)b;
            ck_assert_msg(decode(t, len, &d) != ST_OK, "char %zu of %zu changed to %#x decodes", i,
                          len, (unsigned)b);
        }
        t[i] = orig;
    }
    ck_assert_int_eq(decode(t, len, &d), ST_OK);
    free(t);
}
END_TEST

/* Every bit of the binary flipped (and re-encoded as valid base64url) fails. */
START_TEST(test_every_bit_flipped)
{
    unsigned char bin[CURSOR_TEXT_MAX];
    char text[CURSOR_TEXT_MAX + 1];
    struct cursor c, d;
    size_t n;
    char *t;

    ck_assert_int_ge(sodium_init(), 0);
    for (size_t kl = 0; kl <= 3; kl += 3) {
        sample(&c, kl);
        t = encode(&c);
        ck_assert_int_eq(sodium_base642bin(bin, sizeof(bin), t, strlen(t), NULL, &n, NULL,
                                           sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                         0);
        for (size_t i = 0; i < n * 8; i++) {
            bin[i / 8] ^= (unsigned char)(1u << (i % 8));
            sodium_bin2base64(text, sizeof(text), bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
            ck_assert_msg(decode(text, strlen(text), &d) != ST_OK, "bit %zu flipped decodes", i);
            bin[i / 8] ^= (unsigned char)(1u << (i % 8));
        }
        sodium_bin2base64(text, sizeof(text), bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        ck_assert_str_eq(text, t);
        free(t);
    }
}
END_TEST

START_TEST(test_truncated_and_extended)
{
    struct cursor c, d;
    char buf[CURSOR_TEXT_MAX + 8];
    size_t len;
    char *t;

    sample(&c, 20);
    t = encode(&c);
    len = strlen(t);
    for (size_t i = 0; i < len; i++)
        ck_assert_msg(decode(t, i, &d) != ST_OK, "prefix of %zu bytes decodes", i);
    /* Whole bytes cut from the binary's end or added to it. */
    for (const char *r = b64url; *r; r++) {
        memcpy(buf, t, len);
        buf[len] = *r;
        ck_assert(decode(buf, len + 1, &d) != ST_OK);
        buf[len + 1] = *r;
        ck_assert(decode(buf, len + 2, &d) != ST_OK);
    }
    /* A NUL inside. */
    memcpy(buf, t, len);
    buf[len / 2] = '\0';
    ck_assert(decode(buf, len, &d) != ST_OK);
    free(t);
    /* Over the length limit, and the empty text. */
    memset(buf, 'A', sizeof(buf));
    ck_assert(decode(buf, CURSOR_TEXT_MAX + 4, &d) != ST_OK);
    ck_assert(decode("", 0, &d) != ST_OK);
}
END_TEST

START_TEST(test_wrong_owner)
{
    static const uint8_t other[CURSOR_SECRET_LEN] = "another secret, 32 bytes long..";
    struct cursor c, d;
    struct err err;
    char *t;

    sample(&c, 8);
    t = encode(&c);
    ck_assert_int_eq(cursor_decode(t, strlen(t), secret, 8, c.table_id, c.fingerprint, &d, &err),
                     ST_EINVAL);
    ck_assert_str_eq(err.msg, CURSOR_INVALID);
    ck_assert_int_eq(
        cursor_decode(t, strlen(t), secret, 7, c.table_id + 1, c.fingerprint, &d, &err), ST_EINVAL);
    ck_assert_int_eq(
        cursor_decode(t, strlen(t), secret, 7, c.table_id, c.fingerprint ^ 1, &d, &err), ST_EINVAL);
    ck_assert_int_eq(cursor_decode(t, strlen(t), other, 7, c.table_id, c.fingerprint, &d, &err),
                     ST_EINVAL);
    ck_assert_str_eq(err.msg, CURSOR_INVALID);
    ck_assert_int_eq(cursor_decode(t, strlen(t), secret, 7, c.table_id, c.fingerprint, &d, &err),
                     ST_OK);
    free(t);
}
END_TEST

/* A cursor MACed under another key (a forgery) with a valid layout fails. */
START_TEST(test_forged)
{
    static const uint8_t guess[CURSOR_SECRET_LEN] = {0};
    struct strbuf sb = STRBUF_INIT;
    struct cursor c, d;

    sample(&c, 0);
    cursor_encode(&c, guess, &sb);
    ck_assert_int_eq(decode(sb.buf, sb.len, &d), ST_EINVAL);
    strbuf_release(&sb);
}
END_TEST

static uint64_t fp(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    uint64_t v;

    ck_assert_msg(j, "bad test JSON %s: %s", text, jerr.text);
    v = cursor_fingerprint(j);
    /* The body itself is left alone. */
    ck_assert_int_eq(json_object_size(j) > 0, strcmp(text, "{}") != 0);
    json_decref(j);
    return v;
}

START_TEST(test_fingerprint)
{
    uint64_t base = fp("{\"table\":\"f\",\"select\":[\"a\",\"b\"],\"where\":{\"field\":\"a\","
                       "\"op\":\">\",\"value\":1}}");

    /* Layout, member order, cursor, as_of, limit and nulls do not count. */
    ck_assert_uint_eq(base, fp("{ \"where\": {\"value\": 1, \"op\": \">\", \"field\": \"a\"},\n"
                               "  \"select\": [\"a\", \"b\"], \"table\": \"f\", \"limit\": 5,"
                               "  \"cursor\": \"xyz\", \"as_of\": 17, \"order_by\": null}"));
    /* Everything else does. */
    ck_assert_uint_ne(base, fp("{\"table\":\"g\",\"select\":[\"a\",\"b\"],\"where\":{\"field\":"
                               "\"a\",\"op\":\">\",\"value\":1}}"));
    ck_assert_uint_ne(base, fp("{\"table\":\"f\",\"select\":[\"b\",\"a\"],\"where\":{\"field\":"
                               "\"a\",\"op\":\">\",\"value\":1}}"));
    ck_assert_uint_ne(base, fp("{\"table\":\"f\",\"select\":[\"a\",\"b\"],\"where\":{\"field\":"
                               "\"a\",\"op\":\">\",\"value\":2}}"));
    ck_assert_uint_ne(base, fp("{\"table\":\"f\",\"select\":[\"a\",\"b\"],\"where\":{\"field\":"
                               "\"a\",\"op\":\">=\",\"value\":1}}"));
    ck_assert_uint_ne(base, fp("{\"table\":\"f\",\"select\":[\"a\",\"b\"],\"where\":{\"field\":"
                               "\"a\",\"op\":\">\",\"value\":1},\"order_by\":[\"a\"]}"));
    ck_assert_uint_ne(fp("{}"), fp("{\"table\":\"f\"}"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cursor");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    if (sodium_init() < 0)
        return EXIT_FAILURE;
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_every_char_changed);
    tcase_add_test(tc, test_every_bit_flipped);
    tcase_add_test(tc, test_truncated_and_extended);
    tcase_add_test(tc, test_wrong_owner);
    tcase_add_test(tc, test_forged);
    tcase_add_test(tc, test_fingerprint);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
