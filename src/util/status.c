/*
 * Status codes and the error record (see status.h).
 */
#include "util/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *status_str(enum st_status st)
{
    switch (st) {
    case ST_OK:
        return "ok";
    case ST_ENOTFOUND:
        return "not found";
    case ST_EEXIST:
        return "already exists";
    case ST_ECONFLICT:
        return "conflict";
    case ST_EINVAL:
        return "invalid argument";
    case ST_ENOMEM:
        return "out of memory";
    case ST_EIO:
        return "i/o error";
    case ST_ECORRUPT:
        return "corrupt data";
    case ST_EBUSY:
        return "busy";
    case ST_EAGAIN:
        return "try again";
    case ST_ESHUTDOWN:
        return "shutting down";
    case ST_EPERM:
        return "permission denied";
    case ST_EQUOTA:
        return "quota exceeded";
    case ST_ETOOLARGE:
        return "too large";
    }
    return "unknown status";
}

void err_clear(struct err *err)
{
    if (!err)
        return;
    err->code = ST_OK;
    err->sys_errno = 0;
    err->msg[0] = '\0';
}

enum st_status err_set(struct err *err, enum st_status code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    err->sys_errno = 0;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

enum st_status err_set_errno(struct err *err, enum st_status code, int errnum, const char *fmt, ...)
{
    va_list ap;
    size_t len;

    if (!err)
        return code;
    err->code = code;
    err->sys_errno = errnum;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    len = strlen(err->msg);
    if (len < sizeof(err->msg))
        snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", strerror(errnum));
    return code;
}
