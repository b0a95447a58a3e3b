/*
 * Diagnostics: one line per event on stderr, greppable key=value form,
 * journald-friendly:
 *
 *   ts=2026-11-24T04:35:37.123Z level=info listening ingest=127.0.0.1:41234
 *
 * st_log() is a macro that skips evaluating its arguments below the
 * configured level (Redis serverLog). Each line is formatted into a local
 * buffer and written with one write(2), so lines from different threads
 * never interleave. Values that may hold spaces or quotes should be logged
 * with %s of log_quote() output.
 *
 * The access log is separate: log_access() writes to the file set with
 * log_set_access_file(), or nowhere.
 */
#ifndef ST_UTIL_LOG_H
#define ST_UTIL_LOG_H

#include "util/common.h"

enum log_level {
    ST_LOG_DEBUG = 0,
    ST_LOG_INFO,
    ST_LOG_NOTICE,
    ST_LOG_WARN,
    ST_LOG_ERROR,
};

extern int log__level; /* the current level; set with log_set_level() */

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "notice", "warn" or "error"; false if unknown. */
bool log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Sends diagnostics to fd instead of stderr (tests). */
void log_set_fd(int fd);

void log__write(enum log_level level, const char *fmt, ...) ST_PRINTF(2, 3);

#define st_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((int)(level) >= log__level)                                                            \
            log__write((level), __VA_ARGS__);                                                      \
    } while (0)

#define log_debug(...)  st_log(ST_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)   st_log(ST_LOG_INFO, __VA_ARGS__)
#define log_notice(...) st_log(ST_LOG_NOTICE, __VA_ARGS__)
#define log_warn(...)   st_log(ST_LOG_WARN, __VA_ARGS__)
#define log_error(...)  st_log(ST_LOG_ERROR, __VA_ARGS__)

/*
 * Opens path for the access log (append, created 0640), "-" for stderr,
 * or "" / NULL to turn it off. Returns false with errno set on failure.
 */
bool log_set_access_file(const char *path);
/* Writes one access-log line (a newline is added). */
void log_access(const char *fmt, ...) ST_PRINTF(1, 2);
bool log_access_enabled(void);

#endif
