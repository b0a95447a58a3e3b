/*
 * Timestamps: milliseconds since the Unix epoch, UTC, read from RFC 3339
 * text or epoch milliseconds and written as RFC 3339 with milliseconds.
 * The one place the engine and the API parse and print them.
 */
#ifndef ST_ENGINE_TIMESTAMP_H
#define ST_ENGINE_TIMESTAMP_H

#include "util/common.h"

/* The range of RFC 3339: 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z. */
#define TIMESTAMP_RFC3339_MIN (-62167219200000LL)
#define TIMESTAMP_RFC3339_MAX (253402300799999LL)

/* Longest timestamp_format() output, NUL included. */
#define TIMESTAMP_TEXT_MAX 32

/*
 * Parses an RFC 3339 date-time ("2001-01-01T00:01:00Z", with an optional
 * fraction and a Z or +hh:mm offset; 'T' may be 't' or a space) of len
 * bytes into *ms. Fractions beyond milliseconds are truncated. Checks the
 * calendar (no 2001-02-30). False on any error.
 */
bool timestamp_parse_rfc3339(const char *s, size_t len, int64_t *ms);

/* As above, or an integer of epoch milliseconds ("978307260000", "-5"). */
bool timestamp_parse_text(const char *s, size_t len, int64_t *ms);

/*
 * Writes ms as "YYYY-MM-DDThh:mm:ss.mmmZ" into buf (at least
 * TIMESTAMP_TEXT_MAX bytes; times before 1970 too). Years outside
 * 0000-9999 print with a sign and at least four digits, as ISO 8601's
 * expanded years do ("+12345-01-01T...", "-0001-12-31T..."). Returns
 * the length.
 */
size_t timestamp_format(int64_t ms, char *buf);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
int64_t timestamp_days_from_civil(int64_t y, unsigned m, unsigned d);
void timestamp_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

#endif
