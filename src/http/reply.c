/*
 * reply: what the HTTP layer says when something fails.
 *
 * The one table mapping an engine status (enum st_status) to an HTTP
 * status and a JSON error code lives here; handlers call
 * httpd_reply_status() and never pick codes for engine errors themselves.
 * Error bodies all have the contract's shape
 *
 *   {"error":{"code":"not_found","message":"no table 'x'"}}
 *
 * written with strbuf_add_json_str(), so any message (even bytes that are
 * not UTF-8) becomes valid JSON. 503 and 429 answers carry "Retry-After: 1"
 * unless the handler set its own.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "http/http_int.h"
#include "util/strbuf.h"

static const struct {
    enum st_status st;
    int http;
    const char *code;
} status_map[] = {
    {ST_OK, 200, "ok"},
    {ST_ENOTFOUND, 404, "not_found"},
    {ST_EEXIST, 409, "already_exists"},
    {ST_ECONFLICT, 409, "conflict"},
    {ST_EINVAL, 400, "bad_request"},
    {ST_EPERM, 403, "forbidden"},
    {ST_ETOOLARGE, 413, "payload_too_large"},
    {ST_EQUOTA, 507, "quota_exceeded"},
    {ST_EAGAIN, 503, "not_ready"},
    {ST_EIO, 503, "read_only"},
    {ST_ESHUTDOWN, 503, "not_ready"},
    {ST_EBUSY, 503, "busy"},
    {ST_ENOMEM, 503, "overloaded"},
    {ST_ECORRUPT, 500, "data_corrupt"},
};

int httpd_status_http(enum st_status st, const char **code)
{
    for (size_t i = 0; i < ST_ARRAY_SIZE(status_map); i++) {
        if (status_map[i].st == st) {
            if (code)
                *code = status_map[i].code;
            return status_map[i].http;
        }
    }
    if (code)
        *code = "internal";
    return 500;
}

const char *httpd__reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Entity";
    case 425:
        return "Too Early";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

void httpd__error_body(struct strbuf *sb, const char *code, const char *msg, size_t msglen)
{
    strbuf_addstr(sb, "{\"error\":{\"code\":");
    strbuf_add_json_str(sb, code, strlen(code));
    strbuf_addstr(sb, ",\"message\":");
    strbuf_add_json_str(sb, msg, msglen);
    strbuf_addstr(sb, "}}");
}

static void reply_error_msg(struct httpd_req *req, int status, const char *code, const char *msg,
                            size_t msglen)
{
    struct strbuf sb = STRBUF_INIT;

    if ((status == 503 || status == 429) && !req->has_retry_after)
        httpd_resp_header(req, "Retry-After", "1");
    strbuf_grow(&sb, 48 + strlen(code) + msglen);
    httpd__error_body(&sb, code, msg, msglen);
    httpd_reply_strbuf(req, status, "application/json", &sb);
    strbuf_release(&sb);
}

void httpd_reply_error(struct httpd_req *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    reply_error_msg(req, status, code, msg, ST_MIN((size_t)n, sizeof(msg) - 1));
}

void httpd_reply_status(struct httpd_req *req, enum st_status st, const struct err *err)
{
    const char *code;
    const char *msg;
    int status;

    status = httpd_status_http(st, &code);
    msg = err && err->msg[0] ? err->msg : status_str(st);
    reply_error_msg(req, status, code, msg, strlen(msg));
}
