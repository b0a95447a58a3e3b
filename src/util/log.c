/*
 * Diagnostics and access log (see log.h).
 *
 * Every line is formatted into a stack buffer and written with a single
 * write(2): lines from several threads never interleave, and no lock is
 * held while writing. A line longer than the buffer is truncated and ends
 * in "...". The level is an int read without a lock: a stale read after
 * SIGHUP only logs or skips one more line.
 */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

int log__level = ST_LOG_INFO;
static int log_fd = 2;
static int access_fd = -1;

static const char *const level_names[] = {
    [ST_LOG_DEBUG] = "debug", [ST_LOG_INFO] = "info",   [ST_LOG_NOTICE] = "notice",
    [ST_LOG_WARN] = "warn",   [ST_LOG_ERROR] = "error",
};

void log_set_level(enum log_level level)
{
    log__level = (int)level;
}

enum log_level log_get_level(void)
{
    return (enum log_level)log__level;
}

bool log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < ST_ARRAY_SIZE(level_names); i++) {
        if (!strcasecmp(name, level_names[i])) {
            *out = (enum log_level)i;
            return true;
        }
    }
    if (!strcasecmp(name, "warning")) {
        *out = ST_LOG_WARN;
        return true;
    }
    return false;
}

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level >= ST_ARRAY_SIZE(level_names))
        return "unknown";
    return level_names[level];
}

void log_set_fd(int fd)
{
    log_fd = fd;
}

static size_t format_ts(char *buf, size_t n)
{
    struct timeval tv;
    struct tm tm;
    size_t len;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(buf + len, n - len, ".%03dZ", (int)(tv.tv_usec / 1000));
    return len;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Appends "\n", or "...\n" when the line was truncated, and writes it. */
static void finish_line(int fd, char *line, size_t len, int want)
{
    if (want < 0)
        return;
    if ((size_t)want >= LOG_LINE_MAX - len - 1) {
        len = LOG_LINE_MAX - 5;
        memcpy(line + len, "...", 3);
        len += 3;
    } else {
        len += (size_t)want;
    }
    line[len++] = '\n';
    write_all(fd, line, len);
}

void log__write(enum log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    size_t len;
    va_list ap;
    int n;

    memcpy(line, "ts=", 3);
    len = 3 + format_ts(line + 3, 64);
    len += (size_t)snprintf(line + len, LOG_LINE_MAX - len, " level=%s ", log_level_name(level));
    va_start(ap, fmt);
    n = vsnprintf(line + len, LOG_LINE_MAX - len - 1, fmt, ap);
    va_end(ap);
    finish_line(log_fd, line, len, n);
}

bool log_set_access_file(const char *path)
{
    int fd = -1;
    int old;

    if (path && !strcmp(path, "-")) {
        fd = dup(2);
    } else if (path && *path) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    }
    if (path && *path && fd < 0)
        return false;
    old = access_fd;
    access_fd = fd;
    if (old >= 0)
        close(old);
    return true;
}

bool log_access_enabled(void)
{
    return access_fd >= 0;
}

void log_access(const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;
    int n;

    if (access_fd < 0)
        return;
    va_start(ap, fmt);
    n = vsnprintf(line, LOG_LINE_MAX - 1, fmt, ap);
    va_end(ap);
    finish_line(access_fd, line, 0, n);
}
