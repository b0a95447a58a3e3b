/*
 * The API handlers: they translate HTTP requests and JSON bodies into
 * calls on the server's modules and back. jansson lives here.
 */
#ifndef ST_API_API_H
#define ST_API_API_H

#include "util/status.h"

struct server;
struct httpd_req;

/* Adds every route of the contract to srv->http. */
void api_register(struct server *srv);

/*
 * Settles the admin token: auth.admin_token from the configuration (or
 * STRATA_ADMIN_TOKEN), else the token stored in DATA_DIR/admin_token, else
 * a new random one written there with mode 0600. Logs where it is.
 */
enum st_status api_auth_init(struct server *srv, struct err *err);

/*
 * True when the request carries the admin token. Otherwise answers 401
 * unauthenticated itself and returns false. Always true when auth is
 * disabled.
 */
bool api_require_admin(struct httpd_req *req, const struct server *srv);

/* Route registration of each handler file. */
void api__register_health(struct server *srv);
void api__register_admin(struct server *srv);

/* Sends a jansson value as a JSON response and drops the reference. */
struct json_t;
void api__reply_json(struct httpd_req *req, int status, struct json_t *body);

#endif
