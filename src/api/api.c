/*
 * Route table of the contract and small helpers shared by the handlers.
 * Each handler file registers its own routes; this file decides the order.
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "http/httpd.h"
#include "server.h"

void api__reply_json(struct httpd_req *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));

    if (!text)
        ST_BUG("cannot encode a JSON response");
    httpd_reply(req, status, "application/json", text, strlen(text));
    free(text);
    json_decref(body);
}

void api_register(struct server *srv)
{
    api__register_health(srv);
    api__register_admin(srv);
}
