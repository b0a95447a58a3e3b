/*
 * The API handlers: they translate HTTP requests and JSON bodies into
 * calls on the server's modules and back. jansson lives here.
 */
#ifndef ST_API_API_H
#define ST_API_API_H

#include "engine/decode.h"
#include "engine/schema.h"
#include "util/status.h"
#include "util/strbuf.h"

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
 * True when the request carries the admin token. Otherwise answers itself
 * and returns false: 401 unauthenticated (with WWW-Authenticate) for no
 * or an unknown token, 403 forbidden for a valid tenant key. Always true
 * when auth is disabled.
 */
bool api_require_admin(struct httpd_req *req, const struct server *srv);

/*
 * True when the request may act on tenant (the name from the path, not
 * necessarily valid or existing) with scope (one CATALOG_SCOPE_* flag):
 * the admin token may do anything; a tenant key (catalog_key_authenticate()
 * on the engine's catalog) only on its own tenant and with that scope.
 * Otherwise answers itself and returns false: 401 unauthenticated for no
 * or an unknown token, 403 forbidden for a key of any other tenant
 * (whether or not that tenant exists, so keys cannot probe for tenants)
 * or one without the scope. Call it before anything that could reveal
 * whether the tenant or table exists. Always true when auth is disabled.
 */
bool api_auth_tenant(struct httpd_req *req, const struct server *srv, const char *tenant,
                     unsigned scope);

/* Route registration of each handler file. */
void api__register_health(struct server *srv);
void api__register_admin(struct server *srv);
void api__register_catalog(struct server *srv);
void api__register_records(struct server *srv);
void api__register_txn(struct server *srv);
void api__register_query(struct server *srv);

/*
 * Conditions and ops together in one POST .../txn (txn.c); more is 413
 * payload_too_large. A transaction is checked and applied on the loop
 * thread in one go, so this bounds how long it holds other requests.
 */
#define API_TXN_MAX_ITEMS 10000

/* Appends "details":[{"index","field","reason"}...] for n rejected records. */
struct decode_detail;
struct strbuf;
void api__details_json(struct strbuf *sb, const struct decode_detail *d, uint32_t n);

/* A route handler answering 404 wrong_listener; arg names the right listener. */
void api__wrong_listener(struct httpd_req *req, void *arg);

/* Sends a jansson value as a JSON response and drops the reference. */
struct json_t;
void api__reply_json(struct httpd_req *req, int status, struct json_t *body);

/*
 * Sends {"error": {"code": code, "message": msg, <members>}}: the
 * contract's error shape with more members of the error object, members
 * being JSON text such as "details":[...],"rejected":3 (no leading comma;
 * NULL or empty for none). Built with strbuf_add_json_str(), so names and
 * reasons that are not valid UTF-8 still give valid JSON.
 */
void api__reply_error_members(struct httpd_req *req, int status, const char *code, const char *msg,
                              const struct strbuf *members);

/*
 * The server's engine, or NULL after answering 503 not_ready (the engine
 * is not open yet: the server is starting).
 */
struct engine *api__engine(struct httpd_req *req, const struct server *srv);

/*
 * The path parameter param as a tenant or table name (what says which, for
 * the message), or NULL after answering 400 bad_request.
 */
const char *api__name_param(struct httpd_req *req, const char *param, const char *what);

/*
 * The start of a tenant-scoped call: the engine is ready, the token may
 * use scope on the path's tenant (checked before the name, so keys cannot
 * probe), the tenant name is valid. Returns the tenant; NULL after
 * answering.
 */
const char *api__scoped_tenant(struct httpd_req *req, const struct server *srv, unsigned scope);

/*
 * The request body as a JSON object (json_loadb, duplicate keys refused),
 * or NULL after answering 400 invalid_json naming line, column and byte,
 * 400 bad_request when it is not an object, or 415 for a Content-Encoding
 * other than identity. Caller drops it with json_decref().
 */
struct json_t *api__body_object(struct httpd_req *req);

/* ------------------------------------------------------------------ */
/* Output formats (format.c); no server needed, unit-tested. */

#define API_DOUBLE_MAX 32 /* api_format_double() buffer, NUL included */

/*
 * Writes d as JSON in the fewest significant digits that read back to
 * the same double, laid out as JavaScript prints numbers: plain decimals
 * from 1e-6 up to 1e21 ("0.1", "0.000001", "100.0"), exponents beyond
 * ("1e+21", "1.5e-7"), with ".0" added when the text would read as an
 * integer ("5.0", "-0.0"). NaN and infinities, which no stored value
 * holds, become "null". Returns the length.
 */
size_t api_format_double(double d, char buf[API_DOUBLE_MAX]);

/*
 * Appends one value as JSON: null, a number, true/false, a string, a
 * timestamp as an RFC 3339 string (timestamp_format()), json text as is.
 */
void api_value_json(struct strbuf *out, const struct value *v);

/*
 * Field j of cur (the table's newest schema) for a row stored under
 * row_schema (an older or the same version): the row's value of the field
 * with the same name, widened from int64 to float64 when the type was
 * widened; the field's default (or null) when the row's version lacks the
 * field, holds it with an incompatible type (a field removed and added
 * again), or holds null where cur does not allow it.
 */
void api_record_value(const struct schema *row_schema, const void *row, const struct schema *cur,
                      uint32_t j, struct value *out /* OUT */);

/*
 * Appends the record as a JSON object keyed by the field names of cur, in
 * its field order (api_record_value() for each).
 */
void api_record_json(struct strbuf *out, const struct schema *row_schema, const void *row,
                     const struct schema *cur);

/* ------------------------------------------------------------------ */
/* Ingest bodies (body.c); no server needed, unit-tested. */

#define API_IDEMPOTENCY_KEY_MAX 256 /* bytes in an Idempotency-Key */

/*
 * The framing of an ingest body from its Content-Type: application/x-ndjson
 * (also application/ndjson and application/jsonl) is NDJSON,
 * application/json a JSON array; no header is NDJSON. Case-insensitive,
 * parameters allowed, but a charset must be utf-8. ST_EINVAL (answer 415)
 * otherwise, with the reason in err.
 */
enum st_status api_content_type_parse(const char *ct, enum decode_format *fmt /* OUT */,
                                      struct err *err);

/*
 * Content-Encoding: absent, empty or "identity" is none; "gzip" (or
 * "x-gzip") sets *gzip. ST_EINVAL (answer 415) for anything else, lists of
 * codings included.
 */
enum st_status api_content_encoding_parse(const char *ce, bool *gzip /* OUT */, struct err *err);

/*
 * Inflates a gzip body (in, len bytes; several gzip members back to back
 * are concatenated, as gunzip does) into *out, NUL-terminated, *outlen
 * bytes without the NUL. ST_ETOOLARGE when the output would exceed limit
 * bytes, ST_EINVAL for data that is not gzip, is corrupt or is cut short,
 * ST_ENOMEM when the buffer cannot be allocated. Caller frees *out with
 * free() on ST_OK; on failure *out is NULL.
 */
enum st_status api_gunzip(const void *in, size_t len, size_t limit, char **out /* OUT */,
                          size_t *outlen /* OUT */, struct err *err);

/* ST_EINVAL unless key is 1 to API_IDEMPOTENCY_KEY_MAX bytes. */
enum st_status api_idempotency_key_check(const char *key, struct err *err);

/*
 * Parses a version from a query argument (as_of): decimal digits only,
 * up to UINT64_MAX. False otherwise.
 */
bool api_version_parse(const char *text, uint64_t *out /* OUT */);

#endif
