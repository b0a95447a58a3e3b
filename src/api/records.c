/*
 * Record endpoints: writes on the ingest listener, reads on the query
 * listener.
 *
 *   POST   /v1/tenants/{tenant}/tables/{table}/records         ingest  write
 *   DELETE /v1/tenants/{tenant}/tables/{table}/records/{key*}  ingest  write
 *   GET    /v1/tenants/{tenant}/tables/{table}/records/{key*}  query   read
 *   GET    /v1/tenants/{tenant}/version                        query   read
 *
 * Ingest. The headers are checked before the body is touched: the
 * Content-Type picks NDJSON or a JSON array (415 otherwise), the
 * Content-Encoding may be gzip (415 otherwise; inflated within
 * limits.max_body_bytes, 413 beyond, 400 when corrupt, see body.c),
 * ?mode= is "atomic" (the default) or "partial", and an Idempotency-Key
 * holds 1 to 256 bytes (400). engine_ingest() then validates, commits and
 * makes the records durable; its completion answers:
 *
 *   committed                 200 {"accepted", "rejected", "version"}
 *                             (+ "details" always in partial mode)
 *   records refused (atomic)  422 validation_failed, error.details =
 *                             [{"index", "field", "reason"}] (at most
 *                             100; "field" null when the reason is about
 *                             the whole record), error.rejected = all
 *   body not JSON (array)     400 invalid_json naming line, column and
 *                             byte (also as error.line/column/offset)
 *   other statuses            the one mapping of http/reply.c: 404
 *                             not_found, 413, 503 read_only or not_ready
 *                             with Retry-After, ...
 *
 * A request replayed by its Idempotency-Key gets the first answer again
 * (the engine keeps it) with the header "Idempotent-Replayed: true".
 *
 * Reads. A point read runs engine_get() on the loop thread (memtables
 * are in memory) and shows the record under the table's newest schema
 * (format.c). ?as_of= must be a decimal version (400 otherwise); a
 * version no longer retained is 409 snapshot_too_old.
 *
 * Record paths are served by both listeners with different methods, so
 * the router alone would answer a GET on the ingest listener with 405;
 * small routes answer 404 wrong_listener instead, as the contract asks.
 */
#include "api/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "http/httpd.h"
#include "server.h"

/* An ingest request waiting for the engine. */
struct ingest {
    struct httpd_req *req; /* to answer */
    bool partial;          /* ?mode=partial */
    char *inflated;        /* the gunzipped body, or NULL; freed when done */
};

/* The path's tenant and table, authenticated with scope and checked (else answered). */
static bool tenant_table(struct httpd_req *req, const struct server *srv, unsigned scope,
                         const char **tenant, const char **table)
{
    *tenant = api__scoped_tenant(req, srv, scope);
    if (!*tenant)
        return false;
    *table = httpd_req_param(req, "table");
    return !*table || api__name_param(req, "table", "table");
}

void api__details_json(struct strbuf *sb, const struct decode_detail *d, uint32_t n)
{
    strbuf_addstr(sb, "\"details\":[");
    for (uint32_t i = 0; i < n; i++) {
        strbuf_addf(sb, "%s{\"index\":%" PRIu64 ",\"field\":", i ? "," : "", d[i].index);
        if (d[i].field[0])
            strbuf_add_json_str(sb, d[i].field, strlen(d[i].field));
        else
            strbuf_addstr(sb, "null");
        strbuf_addstr(sb, ",\"reason\":");
        strbuf_add_json_str(sb, d[i].reason, strlen(d[i].reason));
        strbuf_addch(sb, '}');
    }
    strbuf_addch(sb, ']');
}

static void reply_ingest_error(struct httpd_req *req, const struct engine_ingest_result *res)
{
    const struct engine_result *r = &res->r;
    const char *msg = r->err.msg[0] ? r->err.msg : status_str(r->st);
    struct strbuf m = STRBUF_INIT;

    if (r->st == ST_EINVAL && res->rejected > 0) {
        char text[ST_ERR_MSG_MAX + 32];

        api__details_json(&m, res->details, res->ndetails);
        strbuf_addf(&m, ",\"rejected\":%" PRIu64, res->rejected);
        snprintf(text, sizeof(text), "%s; nothing was written", msg);
        api__reply_error_members(req, 422, "validation_failed", text, &m);
    } else if (r->st == ST_EBUSY && res->retry_after_s) {
        char ra[16];

        snprintf(ra, sizeof(ra), "%u", res->retry_after_s);
        httpd_resp_header(req, "Retry-After", ra);
        httpd_reply_error(req, 429, "rate_limited", "%s", msg);
    } else if (r->st == ST_EINVAL && res->err_line > 0) {
        strbuf_addf(&m, "\"line\":%" PRIu32 ",\"column\":%" PRIu32 ",\"offset\":%zu", res->err_line,
                    res->err_column, res->err_offset);
        api__reply_error_members(req, 400, "invalid_json", msg, &m);
    } else {
        httpd_reply_status(req, r->st, &r->err);
    }
    strbuf_release(&m);
}

static void ingest_done(void *arg, const struct engine_ingest_result *res)
{
    struct ingest *in = arg;
    struct httpd_req *req = in->req;
    struct strbuf sb = STRBUF_INIT;

    free(in->inflated);
    in->inflated = NULL;
    if (res->replayed)
        httpd_resp_header(req, "Idempotent-Replayed", "true");
    if (res->r.st != ST_OK) {
        reply_ingest_error(req, res);
        return;
    }
    strbuf_addf(&sb, "{\"accepted\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"version\":%" PRIu64,
                res->accepted, res->rejected, res->r.version);
    if (in->partial) {
        strbuf_addch(&sb, ',');
        api__details_json(&sb, res->details, res->ndetails);
    }
    strbuf_addch(&sb, '}');
    httpd_reply_strbuf(req, 200, "application/json", &sb);
    strbuf_release(&sb);
}

static void handle_ingest(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct engine_ingest_opts opts;
    const char *tenant, *table, *mode, *body;
    struct ingest *in;
    struct err err;
    size_t len;
    bool gzip;

    if (!tenant_table(req, srv, CATALOG_SCOPE_WRITE, &tenant, &table))
        return;
    memset(&opts, 0, sizeof(opts));
    err_clear(&err);
    if (api_content_type_parse(httpd_req_header(req, "Content-Type"), &opts.format, &err) ||
        api_content_encoding_parse(httpd_req_header(req, "Content-Encoding"), &gzip, &err)) {
        httpd_reply_error(req, 415, "unsupported_media_type", "%s", err.msg);
        return;
    }
    mode = httpd_req_query_arg(req, "mode");
    if (mode && strcmp(mode, "partial") && strcmp(mode, "atomic")) {
        httpd_reply_error(req, 400, "bad_request",
                          "mode must be \"atomic\" (the default) or \"partial\", not '%.32s'",
                          mode);
        return;
    }
    opts.partial = mode && !strcmp(mode, "partial");
    opts.idempotency_key = httpd_req_header(req, "Idempotency-Key");
    if (opts.idempotency_key && api_idempotency_key_check(opts.idempotency_key, &err)) {
        httpd_reply_error(req, 400, "bad_request", "%s", err.msg);
        return;
    }

    in = httpd_req_alloc(req, sizeof(*in));
    memset(in, 0, sizeof(*in));
    in->req = req;
    in->partial = opts.partial;
    body = httpd_req_body(req, &len);
    if (!body) {
        body = "";
        len = 0;
    }
    if (gzip) {
        enum st_status rc =
            api_gunzip(body, len, srv->cfg.limits.max_body_bytes, &in->inflated, &len, &err);

        if (rc) {
            httpd_reply_status(req, rc, &err);
            return;
        }
        body = in->inflated;
    }
    engine_ingest(srv->engine, tenant, table, body, len, &opts, ingest_done, in);
}

/* ------------------------------------------------------------------ */
/* Deletes. */

static void delete_done(void *arg, const struct engine_result *res)
{
    struct httpd_req *req = arg;
    char buf[64];
    int n;

    if (res->st != ST_OK) {
        httpd_reply_status(req, res->st, &res->err);
        return;
    }
    n = snprintf(buf, sizeof(buf), "{\"version\":%" PRIu64 "}", res->version);
    httpd_reply(req, 200, "application/json", buf, (size_t)n);
}

static void handle_delete(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *const *key;
    const char *tenant, *table;
    size_t nkey;

    if (!tenant_table(req, srv, CATALOG_SCOPE_WRITE, &tenant, &table))
        return;
    key = httpd_req_param_segments(req, "key", &nkey);
    engine_delete(srv->engine, tenant, table, key, nkey, delete_done, req);
}

/* ------------------------------------------------------------------ */
/* Reads. */

static void handle_get(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *tenant, *table, *as_of_text;
    const char *const *key;
    struct engine_record rec;
    struct strbuf sb = STRBUF_INIT;
    uint64_t as_of = 0;
    enum st_status rc;
    struct err err;
    size_t nkey;

    if (!tenant_table(req, srv, CATALOG_SCOPE_READ, &tenant, &table))
        return;
    as_of_text = httpd_req_query_arg(req, "as_of");
    if (as_of_text && !api_version_parse(as_of_text, &as_of)) {
        httpd_reply_error(req, 400, "bad_request", "as_of must be a version number, not '%.32s'",
                          as_of_text);
        return;
    }
    key = httpd_req_param_segments(req, "key", &nkey);
    err_clear(&err);
    rc = engine_get(srv->engine, tenant, table, key, nkey, as_of, &rec, &err);
    if (rc == ST_ECONFLICT) {
        httpd_reply_error(req, 409, "snapshot_too_old", "%s", err.msg);
        return;
    }
    if (rc) {
        httpd_reply_status(req, rc, &err);
        return;
    }
    strbuf_addf(&sb, "{\"version\":%" PRIu64 ",\"record\":", rec.version);
    api_record_json(&sb, rec.schema, rec.row, rec.current);
    strbuf_addf(&sb, ",\"record_version\":%" PRIu64 "}", rec.record_version);
    engine_record_release(&rec);
    httpd_reply_strbuf(req, 200, "application/json", &sb);
    strbuf_release(&sb);
}

static void handle_version(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *tenant, *table;
    struct catalog_snap *snap;
    bool found;
    char buf[64];
    int n;

    if (!tenant_table(req, srv, CATALOG_SCOPE_READ, &tenant, &table))
        return;
    snap = engine_catalog(srv->engine);
    found = catalog_find_tenant(snap, tenant, strlen(tenant)) != NULL;
    catalog_release(snap);
    if (!found) {
        httpd_reply_error(req, 404, "not_found", "tenant '%s' does not exist", tenant);
        return;
    }
    n = snprintf(buf, sizeof(buf), "{\"version\":%" PRIu64 "}", engine_version(srv->engine));
    httpd_reply(req, 200, "application/json", buf, (size_t)n);
}

/* ------------------------------------------------------------------ */
/* Routes. */

void api__wrong_listener(struct httpd_req *req, void *arg)
{
    const char *right = arg;

    httpd_reply_error(req, 404, "wrong_listener", "%s %s is served by the %s listener",
                      httpd_req_method_name(req), httpd_req_path(req), right);
}

void api__register_records(struct server *srv)
{
    static const char records[] = "/v1/tenants/{tenant}/tables/{table}/records";
    static const char record[] = "/v1/tenants/{tenant}/tables/{table}/records/{key*}";
    httpd *h = srv->http;

    httpd_route(h, HTTPD_ON_INGEST, HTTPD_M_POST, records, "ingest", handle_ingest, srv);
    httpd_route(h, HTTPD_ON_INGEST, HTTPD_M_DELETE, record, "record_delete", handle_delete, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_GET, record, "record_get", handle_get, srv);
    httpd_route(h, HTTPD_ON_INGEST, HTTPD_M_GET, record, "wrong_listener", api__wrong_listener,
                (void *)httpd_listener_name(HTTPD_QUERY));
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_DELETE, record, "wrong_listener", api__wrong_listener,
                (void *)httpd_listener_name(HTTPD_INGEST));
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/tenants/{tenant}/version", "version",
                handle_version, srv);
}
