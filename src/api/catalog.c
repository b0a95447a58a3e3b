/*
 * Catalog endpoints on the query listener: tenants, their keys and
 * quotas (admin token), and their tables and schemas (tenant keys with
 * the manage or read scope, or the admin token).
 *
 *   POST   /v1/tenants                              admin   201 {"name", "version"}
 *   GET    /v1/tenants                              admin   200 {"tenants": [...]}
 *   DELETE /v1/tenants/{tenant}                     admin   204
 *   POST   /v1/tenants/{tenant}/keys                admin   201 {"id", "token", ...}
 *   GET    /v1/tenants/{tenant}/keys                admin   200 {"keys": [...]}
 *   DELETE /v1/tenants/{tenant}/keys/{id}           admin   204
 *   PUT    /v1/tenants/{tenant}/quotas              admin   200 {"tenant", "quotas", "version"}
 *   POST   /v1/tenants/{tenant}/tables              manage  201 the table
 *   GET    /v1/tenants/{tenant}/tables              read    200 {"tables": [...]}
 *   GET    /v1/tenants/{tenant}/tables/{table}      read    200 the table
 *   PUT    /v1/tenants/{tenant}/tables/{table}/schema  manage  200 the table
 *   DELETE /v1/tenants/{tenant}/tables/{table}      manage  204
 *
 * Every request is authenticated first (auth.c), then names are checked
 * against the contract's pattern (400), then the body is parsed (400
 * invalid_json, 400 bad_request). A change becomes a catalog_op handed to
 * engine_catalog_change(); the answer is sent from its completion, once
 * the op is durable, with the op's exact outcome: 409 already_exists,
 * 404 not_found, 400 bad_request.
 *
 * Schema changes (PUT .../schema) are checked for backward compatibility
 * here first, against the current catalog, so that the 422
 * incompatible_schema answer lists one reason per offending field
 * (catalog_schema_compat()); the engine checks again when the op's turn
 * comes (catalog_check_op()), and a failure there (the table changed in
 * between) is a 422 too, with its one reason.
 *
 * Choices beyond the contract: PUT .../quotas changes the quotas given
 * and keeps the others (null means unlimited, as does 0); bodies refuse
 * unknown keys; a key's token appears in the 201 answer only and the
 * copy in the request's memory is wiped before the answer is sent.
 */
#include "api/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "engine/engine.h"
#include "http/httpd.h"
#include "server.h"

/* What a change needs once the engine reports its outcome. */
struct change {
    struct httpd_req *req;               /* to answer */
    struct server *srv;                  /* for the engine */
    enum catalog_op_type type;           /* what was asked */
    char tenant[SCHEMA_NAME_MAX];        /* the tenant */
    char table[SCHEMA_NAME_MAX];         /* the table, if any */
    char key_id[CATALOG_KEY_ID_LEN + 1]; /* create_key */
    char token[CATALOG_TOKEN_LEN + 1];   /* create_key; wiped before answering */
    unsigned scopes;                     /* create_key */
    struct catalog_quotas quotas;        /* set_quotas */
};

static json_t *scopes_json(unsigned scopes)
{
    json_t *a = json_array();

    for (unsigned f = 1; f & CATALOG_SCOPE_ALL; f <<= 1)
        if (scopes & f)
            json_array_append_new(a, json_string(catalog_scope_name(f)));
    return a;
}

static json_t *quotas_json(const struct catalog_quotas *q)
{
    return json_pack("{s:I, s:I}", "max_records_per_sec", (json_int_t)q->max_records_per_sec,
                     "max_storage_bytes", (json_int_t)q->max_storage_bytes);
}

/*
 * The table for GET answers: catalog_table_to_json() plus the commit
 * version of each schema version and of the table's creation.
 */
static json_t *table_json(const struct catalog_table *tb, bool with_versions)
{
    json_t *o = catalog_table_to_json(tb);
    json_t *versions = json_object_get(o, "schema_versions");
    size_t i;
    json_t *v;

    if (!with_versions) {
        json_object_del(o, "schema_versions");
    } else {
        json_array_foreach(versions, i, v)
        {
            json_object_set_new(
                v, "commit_version",
                json_integer((json_int_t)catalog_table_schema_commit(tb, (uint32_t)i + 1)));
        }
    }
    json_object_set_new(o, "created_version",
                        json_integer((json_int_t)catalog_table_created_version(tb)));
    return o;
}

/*
 * The start of an admin call on one tenant: the engine is ready, the admin
 * token is given, the tenant name is valid. NULL after answering.
 */
static const char *admin_tenant(struct httpd_req *req, struct server *srv)
{
    if (!api__engine(req, srv) || !api_require_admin(req, srv))
        return NULL;
    return api__name_param(req, "tenant", "tenant");
}

/* Refuses keys of o other than those listed (400); true when all are known. */
static bool only_keys(struct httpd_req *req, json_t *o, const char *const *keys, size_t n)
{
    const char *key;
    json_t *v;

    json_object_foreach(o, key, v)
    {
        size_t i;

        for (i = 0; i < n && strcmp(key, keys[i]); i++)
            ;
        if (i == n) {
            httpd_reply_error(req, 400, "bad_request", "unknown key '%.64s' in the body", key);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Changes: submit, then answer from the completion. */

static struct change *change_new(struct httpd_req *req, struct server *srv,
                                 enum catalog_op_type type, const char *tenant, const char *table)
{
    struct change *ch = httpd_req_alloc(req, sizeof(*ch));

    memset(ch, 0, sizeof(*ch));
    ch->req = req;
    ch->srv = srv;
    ch->type = type;
    st_strlcpy(ch->tenant, tenant, sizeof(ch->tenant));
    if (table)
        st_strlcpy(ch->table, table, sizeof(ch->table));
    return ch;
}

/* A changed table as the answer, with the change's commit version. */
static void reply_table(struct change *ch, int status, uint64_t version)
{
    struct catalog_snap *snap = engine_catalog(ch->srv->engine);
    const struct catalog_table *tb =
        catalog_find_table(snap, ch->tenant, strlen(ch->tenant), ch->table, strlen(ch->table));
    json_t *o;

    /* Another change may have removed it since: answer what is known. */
    o = tb ? table_json(tb, true) : json_pack("{s:s}", "name", ch->table);
    catalog_release(snap);
    json_object_set_new(o, "version", json_integer((json_int_t)version));
    api__reply_json(ch->req, status, o);
}

static void reply_change_error(struct change *ch, const struct engine_result *res)
{
    const char *msg = res->err.msg[0] ? res->err.msg : status_str(res->st);

    if (res->st == ST_EINVAL && ch->type == CATALOG_OP_ADD_SCHEMA_VERSION) {
        struct strbuf m = STRBUF_INIT;

        strbuf_addstr(&m, "\"details\":[{\"reason\":");
        strbuf_add_json_str(&m, msg, strlen(msg));
        strbuf_addstr(&m, "}]");
        api__reply_error_members(ch->req, 422, "incompatible_schema", msg, &m);
        strbuf_release(&m);
        return;
    }
    httpd_reply_status(ch->req, res->st, &res->err);
}

static void change_done(void *arg, const struct engine_result *res)
{
    struct change *ch = arg;
    json_t *o;

    if (res->st != ST_OK) {
        sodium_memzero(ch->token, sizeof(ch->token));
        reply_change_error(ch, res);
        return;
    }
    switch (ch->type) {
    case CATALOG_OP_CREATE_TENANT:
        api__reply_json(
            ch->req, 201,
            json_pack("{s:s, s:I}", "name", ch->tenant, "version", (json_int_t)res->version));
        return;
    case CATALOG_OP_CREATE_KEY:
        o = json_pack("{s:s, s:s, s:s, s:o, s:I}", "id", ch->key_id, "token", ch->token, "tenant",
                      ch->tenant, "scopes", scopes_json(ch->scopes), "version",
                      (json_int_t)res->version);
        sodium_memzero(ch->token, sizeof(ch->token));
        api__reply_json(ch->req, 201, o);
        return;
    case CATALOG_OP_SET_QUOTAS:
        api__reply_json(ch->req, 200,
                        json_pack("{s:s, s:o, s:I}", "tenant", ch->tenant, "quotas",
                                  quotas_json(&ch->quotas), "version", (json_int_t)res->version));
        return;
    case CATALOG_OP_CREATE_TABLE:
        reply_table(ch, 201, res->version);
        return;
    case CATALOG_OP_ADD_SCHEMA_VERSION:
        reply_table(ch, 200, res->version);
        return;
    case CATALOG_OP_DELETE_TENANT:
    case CATALOG_OP_REVOKE_KEY:
    case CATALOG_OP_DELETE_TABLE:
        httpd_reply(ch->req, 204, NULL, NULL, 0);
        return;
    case CATALOG_OP_NONE:
        break;
    }
    ST_BUG("catalog change of unknown type %d", (int)ch->type);
}

/* Hands op (emptied) to the engine; the answer comes from change_done(). */
static void submit(struct change *ch, struct catalog_op *op)
{
    enum st_status rc = engine_catalog_change(ch->srv->engine, op, change_done, ch);

    catalog_op_release(op);
    if (rc != ST_OK) {
        /* Not taken: done will not run. */
        sodium_memzero(ch->token, sizeof(ch->token));
        httpd_reply_status(ch->req, rc, NULL);
    }
}

/* ------------------------------------------------------------------ */
/* Tenants. */

static void handle_tenants_post(struct httpd_req *req, void *arg)
{
    static const char *const keys[] = {"name"};
    struct server *srv = arg;
    struct catalog_op op;
    const char *name;
    json_t *body;

    if (!api__engine(req, srv) || !api_require_admin(req, srv))
        return;
    body = api__body_object(req);
    if (!body)
        return;
    if (!only_keys(req, body, keys, ST_ARRAY_SIZE(keys)))
        goto out_decref;
    name = json_string_value(json_object_get(body, "name"));
    if (!name) {
        httpd_reply_error(req, 400, "bad_request", "'name' must be a string");
        goto out_decref;
    }
    if (!schema_entity_name_is_valid(name, strlen(name))) {
        httpd_reply_error(req, 400, "bad_request",
                          "invalid tenant name '%.64s' (expected [a-z0-9][a-z0-9_-]{0,62})", name);
        goto out_decref;
    }
    catalog_op_create_tenant(&op, name);
    submit(change_new(req, srv, CATALOG_OP_CREATE_TENANT, name, NULL), &op);
out_decref:
    json_decref(body);
}

static void handle_tenants_get(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct catalog_snap *snap;
    json_t *list;

    if (!api__engine(req, srv) || !api_require_admin(req, srv))
        return;
    snap = engine_catalog(srv->engine);
    list = json_array();
    for (uint32_t i = 0; i < catalog_ntenants(snap); i++) {
        const struct catalog_tenant *t = catalog_tenant_at(snap, i);
        struct catalog_quotas q = catalog_tenant_quotas(t);

        json_array_append_new(
            list, json_pack("{s:s, s:o, s:I, s:I}", "name", catalog_tenant_name(t), "quotas",
                            quotas_json(&q), "key_count", (json_int_t)catalog_tenant_nkeys(t),
                            "table_count", (json_int_t)catalog_tenant_ntables(t)));
    }
    catalog_release(snap);
    api__reply_json(req, 200, json_pack("{s:o}", "tenants", list));
}

static void handle_tenant_delete(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct catalog_op op;
    const char *tenant;

    tenant = admin_tenant(req, srv);
    if (!tenant)
        return;
    catalog_op_delete_tenant(&op, tenant);
    submit(change_new(req, srv, CATALOG_OP_DELETE_TENANT, tenant, NULL), &op);
}

/* ------------------------------------------------------------------ */
/* Keys. */

static bool parse_scopes(struct httpd_req *req, const json_t *a, unsigned *out)
{
    size_t i;
    json_t *v;

    *out = 0;
    if (!json_is_array(a) || json_array_size(a) == 0) {
        httpd_reply_error(req, 400, "bad_request",
                          "'scopes' must be a non-empty array of \"read\", \"write\", \"manage\"");
        return false;
    }
    json_array_foreach(a, i, v)
    {
        unsigned f;

        if (!json_is_string(v) || !catalog_scope_parse(json_string_value(v), &f)) {
            httpd_reply_error(req, 400, "bad_request",
                              "scope %zu is not one of \"read\", \"write\", \"manage\"", i);
            return false;
        }
        *out |= f;
    }
    return true;
}

static void handle_keys_post(struct httpd_req *req, void *arg)
{
    static const char *const keys[] = {"scopes"};
    struct server *srv = arg;
    uint8_t hash[CATALOG_HASH_BYTES];
    struct catalog_op op;
    struct change *ch;
    const char *tenant;
    unsigned scopes;
    json_t *body;

    tenant = admin_tenant(req, srv);
    if (!tenant)
        return;
    body = api__body_object(req);
    if (!body)
        return;
    if (only_keys(req, body, keys, ST_ARRAY_SIZE(keys)) &&
        parse_scopes(req, json_object_get(body, "scopes"), &scopes)) {
        ch = change_new(req, srv, CATALOG_OP_CREATE_KEY, tenant, NULL);
        ch->scopes = scopes;
        catalog_key_generate(ch->token, ch->key_id, hash);
        catalog_op_create_key(&op, tenant, ch->key_id, hash, scopes);
        submit(ch, &op);
    }
    json_decref(body);
}

static void handle_keys_get(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const struct catalog_tenant *t;
    struct catalog_snap *snap;
    const char *tenant;
    json_t *list;

    tenant = admin_tenant(req, srv);
    if (!tenant)
        return;
    snap = engine_catalog(srv->engine);
    t = catalog_find_tenant(snap, tenant, strlen(tenant));
    if (!t) {
        catalog_release(snap);
        httpd_reply_error(req, 404, "not_found", "tenant '%s' does not exist", tenant);
        return;
    }
    list = json_array();
    for (uint32_t i = 0; i < catalog_tenant_nkeys(t); i++) {
        struct catalog_key_info k;

        catalog_tenant_key(t, i, &k);
        json_array_append_new(list, json_pack("{s:s, s:o, s:I}", "id", k.id, "scopes",
                                              scopes_json(k.scopes), "created_version",
                                              (json_int_t)k.created_version));
    }
    catalog_release(snap);
    api__reply_json(req, 200, json_pack("{s:s, s:o}", "tenant", tenant, "keys", list));
}

static void handle_key_delete(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct catalog_op op;
    const char *tenant, *id;

    tenant = admin_tenant(req, srv);
    if (!tenant)
        return;
    id = httpd_req_param(req, "id");
    catalog_op_revoke_key(&op, tenant, id ? id : "");
    submit(change_new(req, srv, CATALOG_OP_REVOKE_KEY, tenant, NULL), &op);
}

/* ------------------------------------------------------------------ */
/* Quotas. */

/* One quota from the body: absent keeps *q, null or 0 is unlimited. */
static bool parse_quota(struct httpd_req *req, const json_t *body, const char *key, uint64_t *q)
{
    const json_t *v = json_object_get(body, key);

    if (!v)
        return true;
    if (json_is_null(v)) {
        *q = 0;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        httpd_reply_error(req, 400, "bad_request",
                          "'%s' must be an integer from 0 (unlimited) to 9223372036854775807", key);
        return false;
    }
    *q = (uint64_t)json_integer_value(v);
    return true;
}

static void handle_quotas_put(struct httpd_req *req, void *arg)
{
    static const char *const keys[] = {"max_records_per_sec", "max_storage_bytes"};
    struct server *srv = arg;
    const struct catalog_tenant *t;
    struct catalog_snap *snap;
    struct catalog_quotas q;
    struct catalog_op op;
    struct change *ch;
    const char *tenant;
    json_t *body;

    tenant = admin_tenant(req, srv);
    if (!tenant)
        return;
    body = api__body_object(req);
    if (!body)
        return;
    if (!only_keys(req, body, keys, ST_ARRAY_SIZE(keys)))
        goto out_decref;
    snap = engine_catalog(srv->engine);
    t = catalog_find_tenant(snap, tenant, strlen(tenant));
    if (t)
        q = catalog_tenant_quotas(t);
    catalog_release(snap);
    if (!t) {
        httpd_reply_error(req, 404, "not_found", "tenant '%s' does not exist", tenant);
        goto out_decref;
    }
    if (!parse_quota(req, body, "max_records_per_sec", &q.max_records_per_sec) ||
        !parse_quota(req, body, "max_storage_bytes", &q.max_storage_bytes))
        goto out_decref;
    ch = change_new(req, srv, CATALOG_OP_SET_QUOTAS, tenant, NULL);
    ch->quotas = q;
    catalog_op_set_quotas(&op, tenant, &q);
    submit(ch, &op);
out_decref:
    json_decref(body);
}

/* ------------------------------------------------------------------ */
/* Tables. */

static void handle_tables_post(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct catalog_table_def *def;
    struct catalog_op op;
    const char *tenant;
    struct err err;
    json_t *body;

    tenant = api__scoped_tenant(req, srv, CATALOG_SCOPE_MANAGE);
    if (!tenant)
        return;
    body = api__body_object(req);
    if (!body)
        return;
    err_clear(&err);
    if (catalog_table_def_parse(body, &def, &err) != ST_OK) {
        httpd_reply_error(req, 400, "bad_request", "%s", err.msg);
        goto out_decref;
    }
    {
        struct change *ch = change_new(req, srv, CATALOG_OP_CREATE_TABLE, tenant, def->name);

        catalog_op_create_table(&op, tenant, def);
        submit(ch, &op);
    }
out_decref:
    json_decref(body);
}

/* The tenant from the path, authenticated with scope and found (else answered). */
static const struct catalog_tenant *tenant_for_read(struct httpd_req *req, struct server *srv,
                                                    struct catalog_snap *snap)
{
    const char *tenant = httpd_req_param(req, "tenant");
    const struct catalog_tenant *t;

    if (!api_auth_tenant(req, srv, tenant, CATALOG_SCOPE_READ))
        return NULL;
    if (!api__name_param(req, "tenant", "tenant"))
        return NULL;
    t = catalog_find_tenant(snap, tenant, strlen(tenant));
    if (!t)
        httpd_reply_error(req, 404, "not_found", "tenant '%s' does not exist", tenant);
    return t;
}

static void handle_tables_get(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const struct catalog_tenant *t;
    struct catalog_snap *snap;
    json_t *list;

    if (!api__engine(req, srv))
        return;
    snap = engine_catalog(srv->engine);
    t = tenant_for_read(req, srv, snap);
    if (t) {
        list = json_array();
        for (uint32_t i = 0; i < catalog_tenant_ntables(t); i++)
            json_array_append_new(list, table_json(catalog_tenant_table(t, i), false));
        api__reply_json(req, 200,
                        json_pack("{s:s, s:o}", "tenant", catalog_tenant_name(t), "tables", list));
    }
    catalog_release(snap);
}

static void handle_table_get(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const struct catalog_tenant *t;
    const struct catalog_table *tb;
    struct catalog_snap *snap;
    const char *table;
    json_t *o;

    if (!api__engine(req, srv))
        return;
    snap = engine_catalog(srv->engine);
    t = tenant_for_read(req, srv, snap);
    if (!t)
        goto out_release;
    table = api__name_param(req, "table", "table");
    if (!table)
        goto out_release;
    tb = catalog_tenant_find_table(t, table, strlen(table));
    if (!tb) {
        httpd_reply_error(req, 404, "not_found", "table '%s' does not exist in tenant '%s'", table,
                          catalog_tenant_name(t));
        goto out_release;
    }
    o = table_json(tb, true);
    json_object_set_new(
        o, "stats",
        json_pack("{s:I}", "schema_versions", (json_int_t)catalog_table_schema(tb)->version));
    api__reply_json(req, 200, o);
out_release:
    catalog_release(snap);
}

static void handle_table_delete(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    struct catalog_op op;
    const char *tenant, *table;

    tenant = api__scoped_tenant(req, srv, CATALOG_SCOPE_MANAGE);
    if (!tenant)
        return;
    table = api__name_param(req, "table", "table");
    if (!table)
        return;
    catalog_op_delete_table(&op, tenant, table);
    submit(change_new(req, srv, CATALOG_OP_DELETE_TABLE, tenant, table), &op);
}

/* Collects the reasons of catalog_schema_compat() as a details array. */
struct reasons {
    struct strbuf sb; /* "details":[{"field", "reason"}, ...] */
    uint32_t n;       /* reasons so far */
};

static void compat_reason_cb(void *arg, const char *field, const char *reason)
{
    struct reasons *r = arg;

    strbuf_addstr(&r->sb, r->n++ ? ",{\"field\":" : "{\"field\":");
    strbuf_add_json_str(&r->sb, field, strlen(field));
    strbuf_addstr(&r->sb, ",\"reason\":");
    strbuf_add_json_str(&r->sb, reason, strlen(reason));
    strbuf_addch(&r->sb, '}');
}

/*
 * Checks a new field list against the table (404, 422 with every reason,
 * 400 for what catalog_check_op() refuses); true when it may be
 * submitted.
 */
static bool precheck_schema(struct httpd_req *req, struct server *srv, const struct catalog_op *op)
{
    struct catalog_snap *snap = engine_catalog(srv->engine);
    const struct catalog_table *tb =
        catalog_find_table(snap, op->tenant, strlen(op->tenant), op->table, strlen(op->table));
    struct reasons r = {STRBUF_INIT, 0};
    enum st_status rc;
    struct err err;
    bool ok = false;

    if (!tb) {
        err_clear(&err);
        rc = catalog_check_op(snap, op, &err);
        httpd_reply_status(req, rc ? rc : ST_ENOTFOUND, &err);
        goto out_release;
    }
    strbuf_addstr(&r.sb, "\"details\":[");
    catalog_schema_compat(catalog_table_schema(tb), op->fields, op->nfields, compat_reason_cb, &r);
    strbuf_addch(&r.sb, ']');
    if (r.n) {
        char msg[160];

        snprintf(msg, sizeof(msg), "the new schema is not backward compatible (%u field%s)", r.n,
                 r.n == 1 ? "" : "s");
        api__reply_error_members(req, 422, "incompatible_schema", msg, &r.sb);
        goto out_release;
    }
    err_clear(&err);
    rc = catalog_check_op(snap, op, &err);
    if (rc) {
        httpd_reply_status(req, rc, &err);
        goto out_release;
    }
    ok = true;
out_release:
    strbuf_release(&r.sb);
    catalog_release(snap);
    return ok;
}

static void handle_schema_put(struct httpd_req *req, void *arg)
{
    static const char *const keys[] = {"fields"};
    struct server *srv = arg;
    struct catalog_op op;
    const char *tenant, *table;
    struct field *fields;
    uint32_t n;
    struct err err;
    json_t *body;

    tenant = api__scoped_tenant(req, srv, CATALOG_SCOPE_MANAGE);
    if (!tenant)
        return;
    table = api__name_param(req, "table", "table");
    if (!table)
        return;
    body = api__body_object(req);
    if (!body)
        return;
    if (!only_keys(req, body, keys, ST_ARRAY_SIZE(keys)))
        goto out_decref;
    err_clear(&err);
    if (catalog_fields_parse(json_object_get(body, "fields"), &fields, &n, &err) != ST_OK) {
        httpd_reply_error(req, 400, "bad_request", "%s", err.msg);
        goto out_decref;
    }
    catalog_op_add_schema_version(&op, tenant, table, fields, n);
    if (!precheck_schema(req, srv, &op)) {
        catalog_op_release(&op);
        goto out_decref;
    }
    submit(change_new(req, srv, CATALOG_OP_ADD_SCHEMA_VERSION, tenant, table), &op);
out_decref:
    json_decref(body);
}

void api__register_catalog(struct server *srv)
{
    httpd *h = srv->http;

    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/tenants", "tenants_create",
                handle_tenants_post, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/tenants", "tenants_list", handle_tenants_get,
                srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_DELETE, "/v1/tenants/{tenant}", "tenant_delete",
                handle_tenant_delete, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/tenants/{tenant}/keys", "keys_create",
                handle_keys_post, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/tenants/{tenant}/keys", "keys_list",
                handle_keys_get, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_DELETE, "/v1/tenants/{tenant}/keys/{id}", "key_revoke",
                handle_key_delete, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_PUT, "/v1/tenants/{tenant}/quotas", "quotas_set",
                handle_quotas_put, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/tenants/{tenant}/tables", "tables_create",
                handle_tables_post, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/tenants/{tenant}/tables", "tables_list",
                handle_tables_get, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_GET, "/v1/tenants/{tenant}/tables/{table}", "table_get",
                handle_table_get, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_DELETE, "/v1/tenants/{tenant}/tables/{table}",
                "table_delete", handle_table_delete, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_PUT, "/v1/tenants/{tenant}/tables/{table}/schema",
                "schema_put", handle_schema_put, srv);
}
