/*
 * Health and metrics endpoints, on both listeners.
 *
 *   GET /health/live    200 while the process serves HTTP
 *   GET /health/ready   200 when recovery is done and writes are accepted,
 *   GET /health         503 with a reason otherwise (recovering, shutting
 *                       down, read_only after a storage failure)
 *   GET /metrics        Prometheus text format 0.0.4; the admin token is
 *                       required when metrics.require_auth is true
 */
#include "api/api.h"

#include <jansson.h>

#include "http/httpd.h"
#include "server.h"
#include "strata_version.h"
#include "util/metrics.h"
#include "util/strbuf.h"

static const char *state_reason(enum server_state state)
{
    switch (state) {
    case SERVER_STARTING:
        return "recovering";
    case SERVER_READY:
        return "ok";
    case SERVER_STOPPING:
        return "shutting down";
    }
    return "unknown";
}

static void handle_live(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;

    api__reply_json(req, 200,
                    json_pack("{s:s, s:s, s:f}", "status", "ok", "version", STRATA_VERSION,
                              "uptime_seconds", server_uptime_s(srv)));
}

static void handle_ready(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;

    struct err err;

    err_clear(&err);
    if (srv->state != SERVER_READY) {
        httpd_resp_header(req, "Retry-After", "1");
        api__reply_json(
            req, 503,
            json_pack("{s:s, s:s}", "status", "unavailable", "reason", state_reason(srv->state)));
        return;
    }
    if (srv->engine && engine_health(srv->engine, &err)) {
        httpd_resp_header(req, "Retry-After", "1");
        api__reply_json(req, 503,
                        json_pack("{s:s, s:s, s:s}", "status", "unavailable", "reason", "read_only",
                                  "error", err.msg));
        return;
    }
    api__reply_json(req, 200,
                    json_pack("{s:s, s:s, s:f}", "status", "ok", "version", STRATA_VERSION,
                              "uptime_seconds", server_uptime_s(srv)));
}

static void handle_metrics(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct strbuf out = STRBUF_INIT;

    if (srv->cfg.metrics.require_auth && !api_require_admin(req, srv))
        return;
    metrics_format(srv->metrics, &out);
    httpd_reply_strbuf(req, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
    strbuf_release(&out);
}

void api__register_health(struct server *srv)
{
    httpd_route(srv->http, HTTPD_ON_BOTH, HTTPD_M_GET, "/health/live", "health_live", handle_live,
                srv);
    httpd_route(srv->http, HTTPD_ON_BOTH, HTTPD_M_GET, "/health/ready", "health_ready",
                handle_ready, srv);
    httpd_route(srv->http, HTTPD_ON_BOTH, HTTPD_M_GET, "/health", "health", handle_ready, srv);
    httpd_route(srv->http, HTTPD_ON_BOTH, HTTPD_M_GET, "/metrics", "metrics", handle_metrics, srv);
}
