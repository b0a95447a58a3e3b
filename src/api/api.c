/*
 * Route table of the contract and small helpers shared by the handlers.
 * Each handler file registers its own routes; this file decides the order.
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/engine.h"
#include "http/httpd.h"
#include "server.h"
#include "util/strbuf.h"

void api__reply_json(struct httpd_req *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));

    if (!text)
        ST_BUG("cannot encode a JSON response");
    httpd_reply(req, status, "application/json", text, strlen(text));
    free(text);
    json_decref(body);
}

void api__reply_error_members(struct httpd_req *req, int status, const char *code, const char *msg,
                              const struct strbuf *members)
{
    struct strbuf sb = STRBUF_INIT;

    strbuf_addstr(&sb, "{\"error\":{\"code\":");
    strbuf_add_json_str(&sb, code, strlen(code));
    strbuf_addstr(&sb, ",\"message\":");
    strbuf_add_json_str(&sb, msg, strlen(msg));
    if (members && members->len) {
        strbuf_addch(&sb, ',');
        strbuf_add(&sb, members->buf, members->len);
    }
    strbuf_addstr(&sb, "}}");
    httpd_reply_strbuf(req, status, "application/json", &sb);
    strbuf_release(&sb);
}

struct engine *api__engine(struct httpd_req *req, const struct server *srv)
{
    if (!srv->engine) {
        httpd_reply_error(req, 503, "not_ready", "the server is starting; try again shortly");
        return NULL;
    }
    return srv->engine;
}

const char *api__name_param(struct httpd_req *req, const char *param, const char *what)
{
    const char *name = httpd_req_param(req, param);

    if (!name || !schema_entity_name_is_valid(name, strlen(name))) {
        httpd_reply_error(req, 400, "bad_request",
                          "invalid %s name '%.64s' (expected [a-z0-9][a-z0-9_-]{0,62})", what,
                          name ? name : "");
        return NULL;
    }
    return name;
}

const char *api__scoped_tenant(struct httpd_req *req, const struct server *srv, unsigned scope)
{
    if (!api__engine(req, srv))
        return NULL;
    if (!api_auth_tenant(req, srv, httpd_req_param(req, "tenant"), scope))
        return NULL;
    return api__name_param(req, "tenant", "tenant");
}

json_t *api__body_object(struct httpd_req *req)
{
    const char *ce = httpd_req_header(req, "Content-Encoding");
    json_error_t jerr;
    const char *body;
    size_t len;
    bool gzip;
    json_t *o;
    struct err err;

    if (api_content_encoding_parse(ce, &gzip, &err) != ST_OK || gzip) {
        httpd_reply_error(req, 415, "unsupported_media_type",
                          "this endpoint takes an uncompressed JSON body");
        return NULL;
    }
    body = httpd_req_body(req, &len);
    o = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        httpd_reply_error(req, 400, "invalid_json",
                          "invalid JSON at line %d column %d (byte %d): %s", jerr.line, jerr.column,
                          jerr.position, jerr.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        httpd_reply_error(req, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

void api_register(struct server *srv)
{
    api__register_health(srv);
    api__register_admin(srv);
    api__register_catalog(srv);
    api__register_records(srv);
    api__register_txn(srv);
    api__register_query(srv);
}
