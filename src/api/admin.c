/*
 * Admin endpoints on the query listener; every one needs the admin token.
 *
 *   GET  /v1/admin/status      version, uptime, listeners, connections,
 *                              storage figures and the running
 *                              configuration (secrets hidden)
 *   POST /v1/admin/compact     compacts every table, or {"tenant": t} or
 *                              {"tenant": t, "table": x}, into one segment
 *                              each (engine_compact()); 200 with a summary
 *                              when done, 202 at once with ?wait=false
 *   POST /v1/admin/checkpoint  flushes memtables, saves the catalog and
 *                              trims the WAL (engine_checkpoint()); same
 *                              answers
 *   POST /v1/admin/backup      {"path": "/abs/new/dir"}: a consistent copy
 *                              of the data directory made while the server
 *                              runs (engine_backup()); same answers
 *
 * The work runs on the engine's worker threads; the answer comes back
 * through the loop. A client that leaves meanwhile gets nothing (httpd
 * keeps the request until the reply, which then writes nothing).
 */
#include "api/api.h"

#include <jansson.h>
#include <string.h>

#include "engine/engine.h"
#include "http/httpd.h"
#include "server.h"
#include "strata_version.h"
#include "util/strbuf.h"

static const char *sync_name(enum config_sync s)
{
    switch (s) {
    case CONFIG_SYNC_ALWAYS:
        return "always";
    case CONFIG_SYNC_INTERVAL:
        return "interval";
    case CONFIG_SYNC_NEVER:
        return "never";
    }
    return "unknown";
}

static void handle_status(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct engine_storage_stats st;
    json_t *body;

    if (!api_require_admin(req, srv))
        return;
    memset(&st, 0, sizeof(st));
    if (srv->engine)
        engine_storage_stats(srv->engine, &st);
    body = json_pack("{s:s, s:f, s:I, s:s, s:{s:s, s:s}, s:I, s:{s:s, s:s, s:I, s:I, s:I}}",
                     "version", STRATA_VERSION, "uptime_seconds", server_uptime_s(srv),
                     "started_at_ms", (json_int_t)srv->start_wall_ms, "state",
                     srv->state == SERVER_READY ? "ready" : "not_ready", "listeners", "ingest",
                     srv->bound[HTTPD_INGEST], "query", srv->bound[HTTPD_QUERY], "connections",
                     (json_int_t)httpd_open_connections(srv->http), "config", "data_dir",
                     srv->cfg.storage.data_dir, "sync", sync_name(srv->cfg.storage.sync),
                     "max_connections", (json_int_t)srv->cfg.server.max_connections,
                     "max_body_bytes", (json_int_t)srv->cfg.limits.max_body_bytes,
                     "max_header_bytes", (json_int_t)srv->cfg.limits.max_header_bytes);
    json_object_set_new(
        body, "storage",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "visible_version",
                  (json_int_t)(srv->engine ? engine_version(srv->engine) : 0), "segments",
                  (json_int_t)st.segments, "segment_bytes", (json_int_t)st.segment_bytes,
                  "rows_stored", (json_int_t)st.rows_stored, "memtables", (json_int_t)st.memtables,
                  "memtable_bytes", (json_int_t)st.memtable_bytes, "wal_bytes",
                  (json_int_t)st.wal_bytes, "flushed_version", (json_int_t)st.flushed_version,
                  "oldest_readable_version", (json_int_t)st.floor));
    api__reply_json(req, 200, body);
}

/* The summary of a compaction or checkpoint, or its error. */
static void job_done(void *arg, const struct engine_job_result *r)
{
    struct httpd_req *req = arg;

    if (!req)
        return; /* ?wait=false: answered already */
    if (r->st != ST_OK) {
        httpd_reply_status(req, r->st, &r->err);
        return;
    }
    api__reply_json(
        req, 200,
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "status", "done",
                  "memtables_flushed", (json_int_t)r->memtables_flushed, "segments_written",
                  (json_int_t)r->segments_written, "segments_removed",
                  (json_int_t)r->segments_removed, "bytes_read", (json_int_t)r->bytes_read,
                  "bytes_written", (json_int_t)r->bytes_written, "versions_dropped",
                  (json_int_t)r->versions_dropped, "wal_files_removed",
                  (json_int_t)r->wal_files_removed, "files_copied", (json_int_t)r->files_copied,
                  "elapsed_ms", (json_int_t)r->elapsed_ms));
}

/*
 * Reads ?wait= into *wait (absent: true). False after answering 400 for
 * anything but "true" or "false".
 */
static bool wait_arg(struct httpd_req *req, bool *wait)
{
    const char *w = httpd_req_query_arg(req, "wait");

    *wait = !w || !strcmp(w, "true");
    if (w && strcmp(w, "true") != 0 && strcmp(w, "false") != 0) {
        httpd_reply_error(req, 400, "bad_request", "wait must be true or false, not '%s'", w);
        return false;
    }
    return true;
}

static void reply_started(struct httpd_req *req)
{
    static const char body[] = "{\"status\":\"started\"}";

    httpd_reply(req, 202, "application/json", body, sizeof(body) - 1);
}

/* A member of the compact body: a string, or absent/null. */
static bool name_member(struct httpd_req *req, json_t *o, const char *name, const char **out)
{
    json_t *v = o ? json_object_get(o, name) : NULL;

    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        httpd_reply_error(req, 400, "bad_request", "%s must be a string", name);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static void handle_compact(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *tenant, *table;
    json_t *o = NULL;
    size_t len;
    bool wait;

    if (!api_require_admin(req, srv) || !api__engine(req, srv) || !wait_arg(req, &wait))
        return;
    httpd_req_body(req, &len);
    if (len && !(o = api__body_object(req)))
        return;
    if (o) {
        const char *k;
        json_t *v;

        json_object_foreach(o, k, v)
        {
            if (strcmp(k, "tenant") != 0 && strcmp(k, "table") != 0) {
                httpd_reply_error(req, 400, "bad_request", "unknown member '%s'", k);
                json_decref(o);
                return;
            }
        }
    }
    if (!name_member(req, o, "tenant", &tenant) || !name_member(req, o, "table", &table)) {
        json_decref(o);
        return;
    }
    if (table && !tenant) {
        httpd_reply_error(req, 400, "bad_request", "table needs a tenant");
        json_decref(o);
        return;
    }
    engine_compact(srv->engine, tenant, table, job_done, wait ? req : NULL);
    json_decref(o);
    if (!wait)
        reply_started(req);
}

static void handle_backup(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *path;
    json_t *o;
    bool wait;

    if (!api_require_admin(req, srv) || !api__engine(req, srv) || !wait_arg(req, &wait))
        return;
    if (!(o = api__body_object(req)))
        return;
    if (json_object_size(o) != 1 || !name_member(req, o, "path", &path)) {
        if (json_object_size(o) != 1)
            httpd_reply_error(req, 400, "bad_request", "the body must be {\"path\": \"...\"}");
        json_decref(o);
        return;
    }
    if (!path || !path[0]) {
        httpd_reply_error(req, 400, "bad_request", "path must be a non-empty string");
        json_decref(o);
        return;
    }
    engine_backup(srv->engine, path, job_done, wait ? req : NULL);
    json_decref(o);
    if (!wait)
        reply_started(req);
}

static void handle_checkpoint(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    bool wait;

    if (!api_require_admin(req, srv) || !api__engine(req, srv) || !wait_arg(req, &wait))
        return;
    engine_checkpoint(srv->engine, job_done, wait ? req : NULL);
    if (!wait)
        reply_started(req);
}

void api__register_admin(struct server *srv)
{
    httpd_route(srv->http, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/admin/status", "admin_status",
                handle_status, srv);
    httpd_route(srv->http, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/admin/compact", "admin_compact",
                handle_compact, srv);
    httpd_route(srv->http, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/admin/checkpoint", "admin_checkpoint",
                handle_checkpoint, srv);
    httpd_route(srv->http, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/admin/backup", "admin_backup",
                handle_backup, srv);
}
