/*
 * Admin endpoints on the query listener; every one needs the admin token.
 *
 *   GET /v1/admin/status   version, uptime, listeners, connections and the
 *                          running configuration (secrets hidden)
 *
 * Compaction, checkpoint and backup join these with the storage engine.
 */
#include "api/api.h"

#include <jansson.h>

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
    json_t *body;

    if (!api_require_admin(req, srv))
        return;
    body = json_pack("{s:s, s:f, s:I, s:s, s:{s:s, s:s}, s:I, s:{s:s, s:s, s:I, s:I, s:I}}",
                     "version", STRATA_VERSION, "uptime_seconds", server_uptime_s(srv),
                     "started_at_ms", (json_int_t)srv->start_wall_ms, "state",
                     srv->state == SERVER_READY ? "ready" : "not_ready", "listeners", "ingest",
                     srv->bound[HTTPD_INGEST], "query", srv->bound[HTTPD_QUERY],
                     "connections", (json_int_t)httpd_open_connections(srv->http), "config",
                     "data_dir", srv->cfg.storage.data_dir, "sync", sync_name(srv->cfg.storage.sync),
                     "max_connections", (json_int_t)srv->cfg.server.max_connections,
                     "max_body_bytes", (json_int_t)srv->cfg.limits.max_body_bytes,
                     "max_header_bytes", (json_int_t)srv->cfg.limits.max_header_bytes);
    api__reply_json(req, 200, body);
}

void api__register_admin(struct server *srv)
{
    httpd_route(srv->http, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/admin/status", "admin_status",
                handle_status, srv);
}
