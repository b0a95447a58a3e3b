/*
 * Unit tests for the small shared pieces of src/util: strbuf (including
 * JSON string escaping), status and err, st_strlcpy, log levels.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/common.h"
#include "util/log.h"
#include "util/status.h"
#include "util/strbuf.h"

START_TEST(test_strbuf_add_and_addf)
{
    struct strbuf sb = STRBUF_INIT;

    ck_assert_str_eq(sb.buf, "");
    strbuf_addstr(&sb, "abc");
    strbuf_addch(&sb, '-');
    strbuf_addf(&sb, "%d/%s", 42, "x");
    ck_assert_str_eq(sb.buf, "abc-42/x");
    ck_assert_uint_eq(sb.len, 8);
    strbuf_setlen(&sb, 3);
    ck_assert_str_eq(sb.buf, "abc");
    strbuf_reset(&sb);
    ck_assert_str_eq(sb.buf, "");
    strbuf_release(&sb);
    ck_assert_uint_eq(sb.alloc, 0);
}
END_TEST

START_TEST(test_strbuf_grows_past_initial_size)
{
    struct strbuf sb = STRBUF_INIT;
    char big[5000];

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        strbuf_addf(&sb, "%s", big);
    ck_assert_uint_eq(sb.len, 10 * (sizeof(big) - 1));
    ck_assert_uint_eq(strlen(sb.buf), sb.len);
    strbuf_release(&sb);
}
END_TEST

START_TEST(test_strbuf_detach)
{
    struct strbuf sb = STRBUF_INIT;
    size_t len;
    char *s;

    s = strbuf_detach(&sb, &len);
    ck_assert_str_eq(s, "");
    ck_assert_uint_eq(len, 0);
    free(s);
    strbuf_addstr(&sb, "hello");
    s = strbuf_detach(&sb, &len);
    ck_assert_str_eq(s, "hello");
    ck_assert_uint_eq(len, 5);
    ck_assert_str_eq(sb.buf, "");
    free(s);
}
END_TEST

static void check_json(const char *in, size_t len, const char *want)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_add_json_str(&sb, in, len);
    ck_assert_str_eq(sb.buf, want);
    strbuf_release(&sb);
}

START_TEST(test_json_escaping)
{
    check_json("plain", 5, "\"plain\"");
    check_json("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    check_json("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    check_json("\x01\x1f", 2, "\"\\u0001\\u001f\"");
    check_json("nul\0x", 5, "\"nul\\u0000x\"");
    /* Valid UTF-8 passes through. */
    check_json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
               "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* Invalid bytes, overlongs, surrogates and truncated sequences become U+FFFD. */
    check_json("\xff", 1, "\"\xef\xbf\xbd\"");
    check_json("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    check_json("\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    check_json("\xe2\x82", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
}
END_TEST

START_TEST(test_err_set)
{
    struct err err;

    err_clear(&err);
    ck_assert_int_eq(err.code, ST_OK);
    ck_assert_int_eq(err_set(&err, ST_EINVAL, "bad key '%s'", "x"), ST_EINVAL);
    ck_assert_str_eq(err.msg, "bad key 'x'");
    ck_assert_int_eq(err_set_errno(&err, ST_EIO, 2, "cannot open '%s'", "f"), ST_EIO);
    ck_assert_int_eq(err.sys_errno, 2);
    ck_assert_str_eq(err.msg, "cannot open 'f': No such file or directory");
    /* A NULL err is allowed and still returns the code. */
    ck_assert_int_eq(err_set(NULL, ST_ENOTFOUND, "x"), ST_ENOTFOUND);
    ck_assert_str_eq(status_str(ST_ENOTFOUND), "not found");
    ck_assert_str_eq(status_str((enum st_status)999), "unknown status");
}
END_TEST

START_TEST(test_parse_hex)
{
    uint64_t v = 1;

    ck_assert(st_parse_hex("00000000000000ff", 16, &v));
    ck_assert_uint_eq(v, 255);
    ck_assert(st_parse_hex("ffffffffffffffff", 16, &v));
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert(st_parse_hex("a1", 2, &v));
    ck_assert_uint_eq(v, 0xa1);
    v = 7;
    ck_assert(!st_parse_hex("00000000000000FF", 16, &v)); /* lowercase only */
    ck_assert(!st_parse_hex("0000000g", 8, &v));
    ck_assert(!st_parse_hex("00000000000000000", 17, &v)); /* more than 64 bits */
    ck_assert_uint_eq(v, 7);                               /* untouched on failure */
}
END_TEST

START_TEST(test_strlcpy)
{
    char buf[4];

    ck_assert(st_strlcpy(buf, "abc", sizeof(buf)));
    ck_assert_str_eq(buf, "abc");
    ck_assert(!st_strlcpy(buf, "abcd", sizeof(buf)));
    ck_assert_str_eq(buf, "abc");
}
END_TEST

START_TEST(test_log_levels_and_output)
{
    enum log_level lv;
    int fds[2];
    char buf[512];
    ssize_t n;

    ck_assert(log_level_parse("warn", &lv));
    ck_assert_int_eq(lv, ST_LOG_WARN);
    ck_assert(log_level_parse("DEBUG", &lv));
    ck_assert_int_eq(lv, ST_LOG_DEBUG);
    ck_assert(!log_level_parse("loud", &lv));

    ck_assert_int_eq(pipe(fds), 0);
    log_set_fd(fds[1]);
    log_set_level(ST_LOG_INFO);
    log_debug("hidden=%d", 1);
    log_info("listening ingest=%s", "127.0.0.1:1");
    n = read(fds[0], buf, sizeof(buf) - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_ptr_nonnull(strstr(buf, "level=info listening ingest=127.0.0.1:1\n"));
    ck_assert_ptr_null(strstr(buf, "hidden"));
    ck_assert(!strncmp(buf, "ts=", 3));
    log_set_fd(2);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_strbuf_add_and_addf);
    tcase_add_test(tc, test_parse_hex);
    tcase_add_test(tc, test_strbuf_grows_past_initial_size);
    tcase_add_test(tc, test_strbuf_detach);
    tcase_add_test(tc, test_json_escaping);
    tcase_add_test(tc, test_err_set);
    tcase_add_test(tc, test_strlcpy);
    tcase_add_test(tc, test_log_levels_and_output);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
