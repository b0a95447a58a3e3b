/*
 * Timestamps (see timestamp.h). Calendar arithmetic after Howard
 * Hinnant's days_from_civil/civil_from_days: exact for every int64 day
 * count the parser can produce, before 1970 too.
 */
#include "engine/timestamp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t timestamp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void timestamp_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;

    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

bool timestamp_parse_rfc3339(const char *s, size_t len, int64_t *ms)
{
    static const uint8_t mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, mo, dd, h, mi, se, frac = 0, oh, om;
    int64_t off = 0;
    size_t i = 19;
    unsigned dim;

    if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &dd) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 59)
        return false;
    dim = mdays[mo - 1] + (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0));
    if (dd < 1 || dd > dim)
        return false;
    if (s[i] == '.') {
        unsigned nd = 0;

        i++;
        while (i < len && is_digit(s[i])) {
            if (nd < 3)
                frac = frac * 10 + (unsigned)(s[i] - '0');
            nd++;
            i++;
        }
        if (nd == 0)
            return false;
        for (; nd < 3; nd++)
            frac *= 10;
    }
    if (i >= len)
        return false;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        if (len - i < 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        off = (int64_t)(oh * 60 + om) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return false;
    }
    if (i != len)
        return false;
    *ms = ((timestamp_days_from_civil(y, mo, dd) * 86400 + h * 3600 + mi * 60 + se) - off * 60) *
              1000 +
          frac;
    return true;
}

bool timestamp_parse_text(const char *s, size_t len, int64_t *ms)
{
    char buf[32];
    char *end;
    long long v;

    if (timestamp_parse_rfc3339(s, len, ms))
        return true;
    if (len == 0 || len >= sizeof(buf))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(s[i]) && !(i == 0 && s[i] == '-' && len > 1))
            return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno || *end)
        return false;
    *ms = v;
    return true;
}

size_t timestamp_format(int64_t ms, char *buf)
{
    const int64_t day = 86400000;
    int64_t days = ms / day, rem = ms % day, y;
    unsigned m, d;
    int n;

    if (rem < 0) {
        days--;
        rem += day;
    }
    timestamp_civil_from_days(days, &y, &m, &d);
    if (y >= 0 && y <= 9999)
        n = snprintf(buf, TIMESTAMP_TEXT_MAX, "%04d-%02u-%02uT%02u:%02u:%02u.%03uZ", (int)y, m, d,
                     (unsigned)(rem / 3600000), (unsigned)(rem / 60000 % 60),
                     (unsigned)(rem / 1000 % 60), (unsigned)(rem % 1000));
    else
        n = snprintf(buf, TIMESTAMP_TEXT_MAX, "%+05lld-%02u-%02uT%02u:%02u:%02u.%03uZ",
                     (long long)y, m, d, (unsigned)(rem / 3600000), (unsigned)(rem / 60000 % 60),
                     (unsigned)(rem / 1000 % 60), (unsigned)(rem % 1000));
    return (size_t)n;
}
