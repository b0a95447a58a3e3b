/*
 * Unit tests for src/engine/timestamp.c: RFC 3339 and epoch-ms parsing,
 * formatting with milliseconds, dates before 1970 and at the range ends.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "engine/timestamp.h"

static int64_t parse(const char *s)
{
    int64_t ms = 0;

    ck_assert_msg(timestamp_parse_text(s, strlen(s), &ms), "'%s' did not parse", s);
    return ms;
}

static void check_format(int64_t ms, const char *want)
{
    char buf[TIMESTAMP_TEXT_MAX];
    size_t n = timestamp_format(ms, buf);

    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(n, strlen(want));
}

START_TEST(test_parse_forms)
{
    ck_assert_int_eq(parse("1970-01-01T00:00:00Z"), 0);
    ck_assert_int_eq(parse("2001-01-01T00:01:00Z"), 978307260000LL);
    ck_assert_int_eq(parse("2001-01-01t00:01:00.5z"), 978307260500LL);
    ck_assert_int_eq(parse("2001-01-01 01:01:00.123456+01:00"), 978307260123LL);
    ck_assert_int_eq(parse("1969-12-31T23:59:59.999Z"), -1);
    ck_assert_int_eq(parse("2000-02-29T00:00:00Z"), 951782400000LL);
    ck_assert_int_eq(parse("978307260000"), 978307260000LL);
    ck_assert_int_eq(parse("-5"), -5);
}
END_TEST

START_TEST(test_parse_rejects)
{
    static const char *const bad[] = {
        "",
        "-",
        "+5",
        "1e3",
        "2001-02-29T00:00:00Z",
        "2001-13-01T00:00:00Z",
        "2001-01-01T24:00:00Z",
        "2001-01-01T00:00:60Z",
        "2001-01-01T00:00:00",
        "2001-01-01T00:00:00.Z",
        "2001-01-01T00:00:00+1:00",
        "2001-01-01T00:00:00Zjunk",
        "9223372036854775808",
        "12a",
    };
    int64_t ms;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!timestamp_parse_text(bad[i], strlen(bad[i]), &ms), "'%s' parsed", bad[i]);
}
END_TEST

START_TEST(test_format)
{
    check_format(0, "1970-01-01T00:00:00.000Z");
    check_format(978307260123LL, "2001-01-01T00:01:00.123Z");
    check_format(-1, "1969-12-31T23:59:59.999Z");
    check_format(TIMESTAMP_RFC3339_MIN, "0000-01-01T00:00:00.000Z");
    check_format(TIMESTAMP_RFC3339_MAX, "9999-12-31T23:59:59.999Z");
    check_format(TIMESTAMP_RFC3339_MAX + 1, "+10000-01-01T00:00:00.000Z");
    check_format(TIMESTAMP_RFC3339_MIN - 1, "-0001-12-31T23:59:59.999Z");
    check_format(INT64_MAX, "+292278994-08-17T07:12:55.807Z");
}
END_TEST

/* Every millisecond offset of a few days around the epoch round-trips. */
START_TEST(test_round_trip)
{
    char buf[TIMESTAMP_TEXT_MAX];
    int64_t back;

    for (int64_t ms = -3 * 86400000LL; ms < 3 * 86400000LL; ms += 86400000LL / 7 + 13) {
        size_t n = timestamp_format(ms, buf);

        ck_assert(timestamp_parse_rfc3339(buf, n, &back));
        ck_assert_int_eq(back, ms);
    }
    for (int64_t d = -800000; d < 3000000; d += 997) {
        int64_t y;
        unsigned m, dd;

        timestamp_civil_from_days(d, &y, &m, &dd);
        ck_assert_int_eq(timestamp_days_from_civil(y, m, dd), d);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("timestamp");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_parse_forms);
    tcase_add_test(tc, test_parse_rejects);
    tcase_add_test(tc, test_format);
    tcase_add_test(tc, test_round_trip);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
