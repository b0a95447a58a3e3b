/*
 * The error model: a status code plus a human message.
 *
 * Actions return enum st_status (ST_OK is 0). Functions that can fail in
 * interesting ways take a trailing `struct err *err`, which may be NULL; it
 * records the code, the errno seen and a message in git's style: lower case,
 * no trailing period, what failed first, subject in quotes, e.g.
 * "cannot open segment '%s': %s". http/reply.c maps a status to an HTTP
 * status and JSON error code; nothing else invents that mapping.
 */
#ifndef ST_UTIL_STATUS_H
#define ST_UTIL_STATUS_H

#include "util/common.h"

enum st_status {
    ST_OK = 0,
    ST_ENOTFOUND, /* no such thing */
    ST_EEXIST,    /* it exists already */
    ST_ECONFLICT, /* transaction conflict or failed condition */
    ST_EINVAL,    /* bad input from the caller */
    ST_ENOMEM,    /* over a memory limit chosen by the client or config */
    ST_EIO,       /* an I/O error; sticky in the engine */
    ST_ECORRUPT,  /* stored bytes fail their checksum or format */
    ST_EBUSY,     /* resource busy; try again later */
    ST_EAGAIN,    /* not now (recovering, backpressure) */
    ST_ESHUTDOWN, /* the server is stopping */
    ST_EPERM,     /* not allowed (auth, scope) */
    ST_ETOOLARGE, /* over a size limit */
    ST_EQUOTA,    /* over a quota or a count limit of the tenant */
};

/* The name of a status, e.g. "ST_ENOTFOUND" -> "not found". Never NULL. */
const char *status_str(enum st_status st);

#define ST_ERR_MSG_MAX 256

struct err {
    enum st_status code;      /* ST_OK when nothing failed */
    int sys_errno;            /* errno at the failure, or 0 */
    char msg[ST_ERR_MSG_MAX]; /* human message, NUL-terminated */
};

/* Resets err to ST_OK with an empty message. err may be NULL. */
void err_clear(struct err *err);

/*
 * Records code and a formatted message in err (which may be NULL) and
 * returns code, so callers can write `return err_set(err, ST_EINVAL, ...)`.
 */
enum st_status err_set(struct err *err, enum st_status code, const char *fmt, ...) ST_PRINTF(3, 4);

/*
 * Like err_set(), but also records errnum and appends ": strerror(errnum)"
 * to the message.
 */
enum st_status err_set_errno(struct err *err, enum st_status code, int errnum, const char *fmt, ...)
    ST_PRINTF(4, 5);

#endif
