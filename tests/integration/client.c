/*
 * Data-API helpers for the integration suites (see client.h).
 *
 * Requests are built in one malloc'd buffer (head, then body) and sent
 * with one hc_send(), so a request never crosses a partial-write path in
 * the server that a test did not mean to exercise. Answers are read with
 * harness.h's hc_read(), which also parses the JSON body.
 */
#include "client.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

enum hread api_send(struct hconn *c, const char *method, const char *path, const char *token,
                    const char *headers, const void *body, size_t body_len, long timeout_ms,
                    struct hresp *r)
{
    size_t cap = strlen(method) + strlen(path) + (token ? strlen(token) : 0) +
                 (headers ? strlen(headers) : 0) + 160 + (body ? body_len : 0);
    char *buf = malloc(cap);
    int n;
    bool sent;

    memset(r, 0, sizeof(*r));
    if (!buf)
        abort();
    n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s%s", method, path,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
                 headers ? headers : "");
    if (body)
        n += snprintf(buf + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(buf + n, cap - (size_t)n, "\r\n");
    if (body) {
        memcpy(buf + n, body, body_len);
        n += (int)body_len;
    }
    sent = hc_send(c, buf, (size_t)n);
    free(buf);
    if (!sent)
        return HREAD_CLOSED;
    return hc_read(c, r, timeout_ms, strcmp(method, "HEAD") == 0);
}

void api_request(int port, const char *method, const char *path, const char *token,
                 const char *headers, const void *body, size_t body_len, struct hresp *r)
{
    struct hconn *c = hc_open(port);
    enum hread rc = api_send(c, method, path, token, headers, body, body_len, 5000, r);

    hc_close(c);
    ck_assert_msg(rc == HREAD_OK, "%s %s on port %d: no answer (hread %d)", method, path, port,
                  (int)rc);
}

void api_req(int port, const char *method, const char *path, const char *token, const char *headers,
             const char *body, struct hresp *r)
{
    api_request(port, method, path, token, headers, body, body ? strlen(body) : 0, r);
}

void api__expect(const struct hresp *r, int status, const char *file, int line)
{
    ck_assert_msg(r->status == status, "%s:%d: status %d, want %d\n%s\n%s", file, line, r->status,
                  status, r->head ? r->head : "", r->body ? r->body : "");
}

json_t *api_get(const struct hresp *r, const char *path)
{
    char name[128];
    json_t *v = r->json;

    while (v && *path) {
        size_t n = strcspn(path, ".");

        ck_assert_uint_lt(n, sizeof(name));
        memcpy(name, path, n);
        name[n] = '\0';
        v = json_object_get(v, name);
        path += n;
        if (*path == '.')
            path++;
    }
    return v;
}

long long api_int(const struct hresp *r, const char *path)
{
    json_t *v = api_get(r, path);

    ck_assert_msg(json_is_integer(v), "no integer at '%s' in %s", path, r->body ? r->body : "");
    return (long long)json_integer_value(v);
}

void api_create_tenant(const struct srv *s, const char *name)
{
    char body[160];
    struct hresp r;

    snprintf(body, sizeof(body), "{\"name\": \"%s\"}", name);
    api_req(s->query_port, "POST", "/v1/tenants", s->token, NULL, body, &r);
    api_expect(&r, 201);
    hresp_free(&r);
}

char *api_make_key(const struct srv *s, const char *tenant, const char *scopes_json, char *id)
{
    char path[160], body[160];
    struct hresp r;
    const char *tok;
    char *copy;

    snprintf(path, sizeof(path), "/v1/tenants/%s/keys", tenant);
    snprintf(body, sizeof(body), "{\"scopes\": %s}", scopes_json);
    api_req(s->query_port, "POST", path, s->token, NULL, body, &r);
    api_expect(&r, 201);
    tok = json_string_value(api_get(&r, "token"));
    ck_assert_ptr_nonnull(tok);
    copy = strdup(tok);
    if (id) {
        const char *kid = json_string_value(api_get(&r, "id"));

        ck_assert_ptr_nonnull(kid);
        ck_assert_uint_eq(strlen(kid), 16);
        memcpy(id, kid, 17);
    }
    hresp_free(&r);
    return copy;
}

void api_create_table(const struct srv *s, const char *tenant, const char *token, const char *def)
{
    char path[160];
    struct hresp r;

    snprintf(path, sizeof(path), "/v1/tenants/%s/tables", tenant);
    api_req(s->query_port, "POST", path, token ? token : s->token, NULL, def, &r);
    api_expect(&r, 201);
    hresp_free(&r);
}

long long api_ingest(const struct srv *s, const char *tenant, const char *table, const char *token,
                     const char *body)
{
    char path[256];
    struct hresp r;
    long long v;

    snprintf(path, sizeof(path), "/v1/tenants/%s/tables/%s/records", tenant, table);
    api_req(s->ingest_port, "POST", path, token ? token : s->token, API_NDJSON, body, &r);
    api_expect(&r, 200);
    v = api_int(&r, "version");
    hresp_free(&r);
    return v;
}

int api_get_record(const struct srv *s, const char *tenant, const char *table, const char *key,
                   const char *token, long long as_of, struct hresp *r)
{
    char path[512];
    int n = snprintf(path, sizeof(path), "/v1/tenants/%s/tables/%s/records/%s", tenant, table, key);

    if (as_of > 0)
        snprintf(path + n, sizeof(path) - (size_t)n, "?as_of=%lld", as_of);
    api_req(s->query_port, "GET", path, token ? token : s->token, NULL, NULL, r);
    return r->status;
}

long long api_version(const struct srv *s, const char *tenant, const char *token)
{
    char path[160];
    struct hresp r;
    long long v;

    snprintf(path, sizeof(path), "/v1/tenants/%s/version", tenant);
    api_req(s->query_port, "GET", path, token ? token : s->token, NULL, NULL, &r);
    api_expect(&r, 200);
    v = api_int(&r, "version");
    hresp_free(&r);
    return v;
}

unsigned char *api_gzip(const void *in, size_t len, size_t *outlen)
{
    z_stream z;
    unsigned char *out;
    size_t cap;

    memset(&z, 0, sizeof(z));
    /* 15 window bits + 16: a gzip wrapper instead of zlib's. */
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    cap = deflateBound(&z, (uLong)len) + 64;
    out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    *outlen = z.total_out;
    deflateEnd(&z);
    return out;
}
