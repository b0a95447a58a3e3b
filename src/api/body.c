/*
 * body: what an ingest request's headers say about its body, and gzip.
 *
 * Content-Type picks the framing the decoder reads (decode.h): NDJSON
 * for application/x-ndjson, a JSON array for application/json. A request
 * without Content-Type is read as NDJSON, the streaming format most
 * clients send (curl --data-binary with -H is the documented way; a
 * form-encoded type, curl's default for -d, is refused with 415 naming
 * the accepted types). Media types compare case-insensitively and may
 * carry parameters; a charset other than utf-8 is refused, since the
 * decoder reads UTF-8 only.
 *
 * Content-Encoding: gzip is inflated with zlib before decoding, into a
 * buffer that never grows past the configured body limit: a small
 * compressed body cannot expand into unbounded memory (a "zip bomb"
 * gets 413 once its output passes the limit). Concatenated gzip members
 * are one body, as gunzip reads them; anything after the last member, a
 * truncated stream or a bad checksum is a 400. Inflating runs on the
 * loop thread, at zlib's few hundred MB/s.
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

/* The span [*s, end) with spaces and tabs trimmed on both sides. */
static void trim(const char **s, const char **end)
{
    while (*s < *end && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*end > *s && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
}

static bool span_eq(const char *s, const char *end, const char *word)
{
    size_t n = strlen(word);

    return (size_t)(end - s) == n && !strncasecmp(s, word, n);
}

/* Checks the parameters after the media type: only charset matters. */
static enum st_status check_params(const char *p, struct err *err)
{
    while (*p == ';') {
        const char *start = p + 1;
        const char *end = strchr(start, ';');
        const char *eq;

        if (!end)
            end = start + strlen(start);
        p = end;
        trim(&start, &end);
        if (start == end)
            continue;
        eq = memchr(start, '=', (size_t)(end - start));
        if (!eq)
            return err_set(err, ST_EINVAL, "malformed Content-Type parameter '%.*s'",
                           (int)(end - start), start);
        {
            const char *name_end = eq;
            const char *val = eq + 1;
            const char *val_end = end;

            trim(&start, &name_end);
            trim(&val, &val_end);
            if (val_end - val >= 2 && *val == '"' && val_end[-1] == '"') {
                val++;
                val_end--;
            }
            if (span_eq(start, name_end, "charset") && !span_eq(val, val_end, "utf-8") &&
                !span_eq(val, val_end, "utf8"))
                return err_set(err, ST_EINVAL, "unsupported charset '%.*s' (bodies are UTF-8)",
                               (int)(val_end - val), val);
        }
    }
    return ST_OK;
}

enum st_status api_content_type_parse(const char *ct, enum decode_format *fmt, struct err *err)
{
    const char *s, *end, *params;

    *fmt = DECODE_NDJSON;
    if (!ct)
        return ST_OK;
    s = ct;
    params = strchr(ct, ';');
    if (!params)
        params = ct + strlen(ct);
    end = params;
    trim(&s, &end);
    if (span_eq(s, end, "application/x-ndjson") || span_eq(s, end, "application/ndjson") ||
        span_eq(s, end, "application/jsonl") || span_eq(s, end, "application/x-jsonlines"))
        *fmt = DECODE_NDJSON;
    else if (span_eq(s, end, "application/json"))
        *fmt = DECODE_JSON_ARRAY;
    else
        return err_set(err, ST_EINVAL,
                       "unsupported Content-Type '%.*s' (expected application/x-ndjson or "
                       "application/json)",
                       (int)ST_MIN(end - s, 100), s);
    return check_params(params, err);
}

enum st_status api_content_encoding_parse(const char *ce, bool *gzip, struct err *err)
{
    const char *s = ce, *end;

    *gzip = false;
    if (!ce)
        return ST_OK;
    end = ce + strlen(ce);
    trim(&s, &end);
    if (s == end || span_eq(s, end, "identity"))
        return ST_OK;
    if (span_eq(s, end, "gzip") || span_eq(s, end, "x-gzip")) {
        *gzip = true;
        return ST_OK;
    }
    return err_set(err, ST_EINVAL, "unsupported Content-Encoding '%.*s' (expected gzip)",
                   (int)ST_MIN(end - s, 100), s);
}

/* Grows *buf (of *cap bytes) toward limit + 1; false when it cannot. */
static bool grow(char **buf, size_t *cap, size_t used, size_t limit)
{
    size_t want = *cap ? *cap * 2 : 64 * 1024;
    char *p;

    /* One byte past the limit tells "exactly the limit" from "over it". */
    if (want > limit + 1)
        want = limit + 1;
    if (want <= used)
        return false;
    p = realloc(*buf, want + 1);
    if (!p)
        return false;
    *buf = p;
    *cap = want;
    return true;
}

enum st_status api_gunzip(const void *in, size_t len, size_t limit, char **out, size_t *outlen,
                          struct err *err)
{
    z_stream zs;
    char *buf = NULL;
    size_t cap = 0, used = 0;
    enum st_status rc = ST_OK;
    int zrc;

    *out = NULL;
    *outlen = 0;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return err_set(err, ST_ENOMEM, "cannot initialise zlib");
    zs.next_in = (Bytef *)in;
    zs.avail_in = 0;
    for (;;) {
        /* zlib counts in uInt: feed the input in pieces it can take. */
        if (zs.avail_in == 0) {
            size_t left = len - (size_t)((const char *)zs.next_in - (const char *)in);

            zs.avail_in = (uInt)ST_MIN(left, (size_t)UINT32_MAX);
        }
        if (used == cap) {
            if (cap > limit) {
                rc =
                    err_set(err, ST_ETOOLARGE, "decompressed body is larger than %zu bytes", limit);
                break;
            }
            if (!grow(&buf, &cap, used, limit)) {
                rc = err_set(err, ST_ENOMEM, "cannot allocate %zu bytes for the body", cap * 2);
                break;
            }
        }
        zs.next_out = (Bytef *)buf + used;
        zs.avail_out = (uInt)ST_MIN(cap - used, (size_t)UINT32_MAX);
        zrc = inflate(&zs, Z_NO_FLUSH);
        used = (size_t)((char *)zs.next_out - buf);
        if (zrc == Z_STREAM_END) {
            size_t consumed = (size_t)((const char *)zs.next_in - (const char *)in);

            if (consumed == len)
                break;
            /* Another gzip member follows. */
            if (inflateReset(&zs) != Z_OK) {
                rc = err_set(err, ST_EINVAL, "invalid gzip body");
                break;
            }
            continue;
        }
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0 &&
            (size_t)((const char *)zs.next_in - (const char *)in) == len) {
            rc = err_set(err, ST_EINVAL, "gzip body is cut short");
            break;
        }
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = err_set(err, ST_EINVAL, "invalid gzip body: %s", zs.msg ? zs.msg : "bad data");
            break;
        }
    }
    inflateEnd(&zs);
    if (rc == ST_OK && used > limit)
        rc = err_set(err, ST_ETOOLARGE, "decompressed body is larger than %zu bytes", limit);
    if (rc) {
        free(buf);
        return rc;
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf)
            return err_set(err, ST_ENOMEM, "cannot allocate the body");
    }
    buf[used] = '\0';
    *out = buf;
    *outlen = used;
    return ST_OK;
}

enum st_status api_idempotency_key_check(const char *key, struct err *err)
{
    size_t n = strlen(key);

    if (n == 0)
        return err_set(err, ST_EINVAL, "Idempotency-Key must not be empty");
    if (n > API_IDEMPOTENCY_KEY_MAX)
        return err_set(err, ST_EINVAL, "Idempotency-Key is longer than %d bytes",
                       API_IDEMPOTENCY_KEY_MAX);
    return ST_OK;
}

bool api_version_parse(const char *text, uint64_t *out)
{
    uint64_t v = 0;

    if (!text || !*text)
        return false;
    for (const char *p = text; *p; p++) {
        unsigned d;

        if (*p < '0' || *p > '9')
            return false;
        d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}
