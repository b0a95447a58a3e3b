/*
 * Transactions: POST /v1/tenants/{tenant}/txn on the ingest listener,
 * scope write.
 *
 * The body is one JSON object:
 *
 *   {"read_version": 1041,                       optional, >= 0
 *    "conditions": [{"table": "accounts", "key": {"id": 7},
 *                    "exists": true, "version_le": 1041}, ...],   optional
 *    "ops": [{"op": "upsert", "table": "accounts", "record": {...}},
 *            {"op": "delete", "table": "holds", "key": {"id": 3}}, ...]}
 *
 * The handler turns it into a struct engine_txn and engine_txn() does the
 * rest (conditions, first-committer-wins against read_version, one
 * atomic commit). Everything the engine would refuse as malformed is
 * refused here first, with the JSON path of the offending part:
 *
 *   - members: unknown members anywhere are refused, so a typo such as
 *     "condition" cannot silently drop a check; "ops" must hold at least
 *     one op (a transaction of conditions alone writes nothing and would
 *     only spend a commit version); a condition needs "exists" (a bool)
 *     or "version_le" (an integer >= 0) or both;
 *   - read_version: an integer from 0 up to the newest visible version
 *     (a client cannot have read a version that is not visible yet);
 *   - keys: a JSON object giving every primary-key field of the table by
 *     name and nothing else. The values become the text form the engine
 *     parses (as in a record path): int64 a JSON integer, written in
 *     decimal; float64 any JSON number, written in the fewest digits that
 *     read back to the same double (api_format_double()); bool true or
 *     false; string as is; timestamp an RFC 3339 string (passed as is) or
 *     an integer of epoch milliseconds (decimal). Anything else is
 *     "conditions[0].key.id: expected int64, got string";
 *   - records: JSON objects, written back to compact JSON text for the
 *     engine's decoder, which checks them against the schema exactly as
 *     ingest does (numbers in the fewest round-trip digits, so a json
 *     field stores 0.1, not 0.10000000000000001).
 *
 * At most API_TXN_MAX_ITEMS conditions and ops together (413 beyond): a
 * transaction is parsed, checked and applied on the loop thread in one
 * go, so its size bounds the time other requests wait (10000 items of
 * about 100 bytes each: some 40 ms on the 2-core test machine).
 *
 * Answers, in the order they are checked:
 *
 *   engine not open                 503 not_ready
 *   token                           401 / 403 (before any lookup)
 *   bad tenant name                 400 bad_request
 *   body not a JSON object          400 invalid_json (line, column, byte)
 *                                   or bad_request; 415 when compressed
 *   too many items                  413 payload_too_large
 *   tenant or a table missing       404 not_found (naming the path)
 *   malformed part                  400 bad_request (naming the path)
 *   committed                       200 {"version": V}
 *   condition failed, or a written  409 conflict, error.details = one
 *     key committed after             {"table", "key", "reason",
 *     read_version                     "condition" | "op": index} per
 *                                     failure; reason "condition failed"
 *                                     or "written after read_version".
 *                                     The key is the request's key
 *                                     object; for an upsert, the record's
 *                                     primary-key fields.
 *   records refused                 422 validation_failed, error.details =
 *                                   [{"index" (the op's index), "field",
 *                                   "reason"}] (at most 100),
 *                                   error.rejected = all
 *   read-only, backpressure         503 read_only / not_ready with
 *                                   Retry-After (http/reply.c)
 *
 * Nothing is written unless the answer is 200. Memory: the parsed body
 * and the key objects echoed by a 409 live in a struct txn_call until the
 * engine's completion runs (at once for a refusal, after the WAL fsync
 * for a commit); the key texts and record texts handed to engine_txn()
 * are borrowed by it for the call only and freed when it returns.
 */
#include "api/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/engine.h"
#include "engine/timestamp.h"
#include "http/httpd.h"
#include "server.h"

#define TXN_KEY_TEXT_MAX API_DOUBLE_MAX /* an int64, epoch ms or double as text */
#define TXN_PATH_MAX     64             /* "conditions[9999]" and the like */

/* A transaction waiting for the engine; freed by its completion. */
struct txn_call {
    struct httpd_req *req; /* to answer */
    json_t *root;          /* the request body */
    json_t *op_keys;       /* per op: the key object echoed on a conflict */
};

/* What engine_txn() borrows; freed once it returns. */
struct txn_build {
    struct engine_txn t;           /* handed to the engine */
    struct engine_txn_cond *conds; /* t.conds, t.nconds entries */
    struct engine_txn_op *ops;     /* t.ops, t.nops entries */
    void **owned;                  /* key texts and record texts */
    size_t nowned;                 /* entries used in owned */
    size_t owned_alloc;            /* entries allocated */
};

/* The JSON kind of v, in the decoder's words ("expected int64, got float"). */
static const char *kind_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "float";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    case JSON_NULL:
        break;
    }
    return "null";
}

/* Takes ownership of p (from malloc): freed by build_release(). */
static void build_own(struct txn_build *b, void *p)
{
    if (b->nowned == b->owned_alloc) {
        b->owned_alloc = b->owned_alloc ? 2 * b->owned_alloc : 16;
        b->owned = realloc_array(b->owned, b->owned_alloc, sizeof(*b->owned));
    }
    b->owned[b->nowned++] = p;
}

static void *build_alloc(struct txn_build *b, size_t n)
{
    void *p = xmalloc(n);

    build_own(b, p);
    return p;
}

static void build_release(struct txn_build *b)
{
    for (size_t i = 0; i < b->nowned; i++)
        free(b->owned[i]);
    free(b->owned);
    free(b->conds);
    free(b->ops);
}

/* 400 unless o (at path) has only members named in allowed (NULL-terminated). */
static bool only_members(struct httpd_req *req, const json_t *o, const char *path,
                         const char *const *allowed)
{
    const char *name;
    json_t *member;

    json_object_foreach((json_t *)o, name, member)
    {
        size_t i;

        for (i = 0; allowed[i] && strcmp(allowed[i], name); i++)
            ;
        if (!allowed[i]) {
            httpd_reply_error(req, 400, "bad_request", "%s%s%.64s: unknown member", path,
                              path[0] ? "." : "", name);
            return false;
        }
    }
    return true;
}

/* A non-negative JSON integer member, or 400. *present says whether it was given. */
static bool version_member(struct httpd_req *req, const json_t *o, const char *path,
                           const char *name, bool *present, uint64_t *out)
{
    json_t *v = json_object_get(o, name);

    *present = v != NULL;
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        httpd_reply_error(
            req, 400, "bad_request", "%s%s%s: expected a version (an integer >= 0), got %s", path,
            path[0] ? "." : "", name, json_is_integer(v) ? "a negative integer" : kind_name(v));
        return false;
    }
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/*
 * The table named by o's "table" member, or NULL after answering 400 (not
 * a valid name) or 404 (no such table in tenant).
 */
static const struct catalog_table *item_table(struct httpd_req *req,
                                              const struct catalog_tenant *tn, const json_t *o,
                                              const char *path, const char **name)
{
    json_t *v = json_object_get(o, "table");
    const struct catalog_table *tb;

    if (!json_is_string(v)) {
        httpd_reply_error(req, 400, "bad_request", "%s.table: expected a table name, got %s", path,
                          v ? kind_name(v) : "nothing");
        return NULL;
    }
    *name = json_string_value(v);
    if (!schema_entity_name_is_valid(*name, json_string_length(v))) {
        httpd_reply_error(req, 400, "bad_request",
                          "%s.table: invalid table name '%.64s' (expected "
                          "[a-z0-9][a-z0-9_-]{0,62})",
                          path, *name);
        return NULL;
    }
    tb = catalog_tenant_find_table(tn, *name, json_string_length(v));
    if (!tb)
        httpd_reply_error(req, 404, "not_found", "%s.table: no table '%s' in tenant '%s'", path,
                          *name, catalog_tenant_name(tn));
    return tb;
}

/* The text form of key field f's value v, into buf; NULL after answering 400. */
static const char *key_value_text(struct httpd_req *req, const struct field *f, const json_t *v,
                                  const char *path, char buf[TXN_KEY_TEXT_MAX])
{
    int64_t ms;

    switch (f->type) {
    case FIELD_INT64:
        if (!json_is_integer(v))
            break;
        snprintf(buf, TXN_KEY_TEXT_MAX, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case FIELD_FLOAT64:
        if (!json_is_number(v))
            break;
        api_format_double(json_number_value(v), buf);
        return buf;
    case FIELD_BOOL:
        if (!json_is_boolean(v))
            break;
        return json_is_true(v) ? "true" : "false";
    case FIELD_STRING:
        if (!json_is_string(v))
            break;
        return json_string_value(v);
    case FIELD_TIMESTAMP:
        if (json_is_integer(v)) {
            snprintf(buf, TXN_KEY_TEXT_MAX, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            return buf;
        }
        if (!json_is_string(v))
            break;
        if (!timestamp_parse_rfc3339(json_string_value(v), json_string_length(v), &ms)) {
            httpd_reply_error(req, 400, "bad_request", "%s.%s: invalid timestamp '%.64s'", path,
                              f->name, json_string_value(v));
            return NULL;
        }
        return json_string_value(v);
    case FIELD_JSON:
        break; /* never a key field */
    }
    httpd_reply_error(req, 400, "bad_request", "%s.%s: expected %s, got %s", path, f->name,
                      field_type_name(f->type), kind_name(v));
    return NULL;
}

/*
 * Fills k (table already set) from the key object at o's "key" member
 * for schema s, or answers 400. The texts are owned by b.
 */
static bool key_texts(struct httpd_req *req, const struct schema *s, const json_t *o,
                      const char *path, struct txn_build *b, struct engine_txn_key *k)
{
    json_t *key = json_object_get(o, "key");
    char kpath[TXN_PATH_MAX + 8];
    const char **texts;
    char *bufs;
    const char *name;
    json_t *v;

    snprintf(kpath, sizeof(kpath), "%s.key", path);
    if (!json_is_object(key)) {
        httpd_reply_error(req, 400, "bad_request",
                          "%s: expected an object of the primary-key fields, got %s", kpath,
                          key ? kind_name(key) : "nothing");
        return false;
    }
    json_object_foreach(key, name, v)
    {
        int i = schema_find_field(s, name, strlen(name));

        if (i < 0 || !s->fields[i].is_pk) {
            httpd_reply_error(req, 400, "bad_request", "%s.%.64s: not a primary-key field", kpath,
                              name);
            return false;
        }
    }
    texts = build_alloc(b, s->npk * (sizeof(*texts) + TXN_KEY_TEXT_MAX));
    bufs = (char *)(texts + s->npk);
    for (uint32_t j = 0; j < s->npk; j++) {
        const struct field *f = &s->fields[s->pk[j]];

        v = json_object_get(key, f->name);
        if (!v) {
            httpd_reply_error(req, 400, "bad_request", "%s.%s: missing primary-key field", kpath,
                              f->name);
            return false;
        }
        texts[j] = key_value_text(req, f, v, kpath, bufs + (size_t)j * TXN_KEY_TEXT_MAX);
        if (!texts[j])
            return false;
    }
    k->key = texts;
    k->nkey = s->npk;
    return true;
}

/* The primary-key fields of an upserted record, for a 409 (new reference). */
static json_t *record_key(const struct schema *s, const json_t *record)
{
    json_t *key = json_object();

    for (uint32_t j = 0; j < s->npk; j++) {
        const char *name = s->fields[s->pk[j]].name;
        json_t *v = json_object_get(record, name);

        if (v)
            json_object_set(key, name, v);
    }
    return key;
}

static bool parse_condition(struct httpd_req *req, const struct catalog_tenant *tn, const json_t *c,
                            size_t i, struct txn_build *b, struct engine_txn_cond *out)
{
    static const char *const allowed[] = {"table", "key", "exists", "version_le", NULL};
    const struct catalog_table *tb;
    char path[TXN_PATH_MAX];
    json_t *exists;

    snprintf(path, sizeof(path), "conditions[%zu]", i);
    if (!json_is_object(c)) {
        httpd_reply_error(req, 400, "bad_request", "%s: expected an object, got %s", path,
                          kind_name(c));
        return false;
    }
    if (!only_members(req, c, path, allowed) ||
        !(tb = item_table(req, tn, c, path, &out->k.table)) ||
        !key_texts(req, catalog_table_schema(tb), c, path, b, &out->k) ||
        !version_member(req, c, path, "version_le", &out->has_version_le, &out->version_le))
        return false;
    exists = json_object_get(c, "exists");
    if (exists && !json_is_boolean(exists)) {
        httpd_reply_error(req, 400, "bad_request", "%s.exists: expected true or false, got %s",
                          path, kind_name(exists));
        return false;
    }
    out->exists = exists ? json_is_true(exists) : -1;
    if (!exists && !out->has_version_le) {
        httpd_reply_error(req, 400, "bad_request",
                          "%s: a condition needs \"exists\" or \"version_le\"", path);
        return false;
    }
    return true;
}

static bool parse_op(struct httpd_req *req, const struct catalog_tenant *tn, const json_t *o,
                     size_t i, struct txn_build *b, struct engine_txn_op *out, json_t *op_keys)
{
    static const char *const upsert_members[] = {"op", "table", "record", NULL};
    static const char *const delete_members[] = {"op", "table", "key", NULL};
    const struct catalog_table *tb;
    char path[TXN_PATH_MAX];
    const char *kind;
    json_t *v;

    snprintf(path, sizeof(path), "ops[%zu]", i);
    if (!json_is_object(o)) {
        httpd_reply_error(req, 400, "bad_request", "%s: expected an object, got %s", path,
                          kind_name(o));
        return false;
    }
    v = json_object_get(o, "op");
    kind = json_string_value(v);
    if (!kind || (strcmp(kind, "upsert") && strcmp(kind, "delete"))) {
        httpd_reply_error(req, 400, "bad_request",
                          "%s.op: expected \"upsert\" or \"delete\", got %s%.32s%s", path,
                          kind ? "'" : "",
                          kind ? kind
                          : v  ? kind_name(v)
                               : "nothing",
                          kind ? "'" : "");
        return false;
    }
    if (!strcmp(kind, "delete")) {
        out->op = ENGINE_TXN_DELETE;
        if (!only_members(req, o, path, delete_members) ||
            !(tb = item_table(req, tn, o, path, &out->k.table)) ||
            !key_texts(req, catalog_table_schema(tb), o, path, b, &out->k))
            return false;
        json_array_append(op_keys, json_object_get(o, "key"));
        return true;
    }

    out->op = ENGINE_TXN_UPSERT;
    if (!only_members(req, o, path, upsert_members) ||
        !(tb = item_table(req, tn, o, path, &out->k.table)))
        return false;
    v = json_object_get(o, "record");
    if (!json_is_object(v)) {
        httpd_reply_error(req, 400, "bad_request", "%s.record: expected an object, got %s", path,
                          v ? kind_name(v) : "nothing");
        return false;
    }
    {
        struct strbuf sb = STRBUF_INIT;
        char *text;

        catalog_json_compact(v, &sb);
        out->record_len = sb.len;
        text = strbuf_detach(&sb, NULL);
        build_own(b, text);
        out->record = text;
    }
    json_array_append_new(op_keys, record_key(catalog_table_schema(tb), v));
    return true;
}

/*
 * Fills b from the body for tenant tn; false after answering. op_keys
 * gets one key object per op.
 */
static bool parse_txn(struct httpd_req *req, engine *e, const struct catalog_tenant *tn,
                      const json_t *root, struct txn_build *b, json_t *op_keys)
{
    static const char *const allowed[] = {"read_version", "conditions", "ops", NULL};
    json_t *conds = json_object_get(root, "conditions");
    json_t *ops = json_object_get(root, "ops");
    json_t *v;
    size_t i;

    if (!only_members(req, root, "", allowed) ||
        !version_member(req, root, "", "read_version", &b->t.has_read_version, &b->t.read_version))
        return false;
    if (b->t.has_read_version && b->t.read_version > engine_version(e)) {
        httpd_reply_error(req, 400, "bad_request",
                          "read_version %" PRIu64 " is newer than the newest version %" PRIu64,
                          b->t.read_version, engine_version(e));
        return false;
    }
    if (conds && !json_is_array(conds)) {
        httpd_reply_error(req, 400, "bad_request", "conditions: expected an array, got %s",
                          kind_name(conds));
        return false;
    }
    if (!json_is_array(ops) || json_array_size(ops) == 0) {
        httpd_reply_error(req, 400, "bad_request",
                          "ops: expected an array of at least one op, "
                          "got %s",
                          !ops                 ? "nothing"
                          : json_is_array(ops) ? "[]"
                                               : kind_name(ops));
        return false;
    }
    b->t.nconds = json_array_size(conds);
    b->t.nops = json_array_size(ops);
    if (b->t.nconds + b->t.nops > API_TXN_MAX_ITEMS) {
        httpd_reply_error(req, 413, "payload_too_large",
                          "a transaction holds at most %d conditions and ops together; this one "
                          "has %zu",
                          API_TXN_MAX_ITEMS, b->t.nconds + b->t.nops);
        return false;
    }
    b->conds = calloc_array(b->t.nconds ? b->t.nconds : 1, sizeof(*b->conds));
    b->ops = calloc_array(b->t.nops, sizeof(*b->ops));
    b->t.conds = b->conds;
    b->t.ops = b->ops;
    json_array_foreach(conds, i, v)
    {
        if (!parse_condition(req, tn, v, i, b, &b->conds[i]))
            return false;
    }
    json_array_foreach(ops, i, v)
    {
        if (!parse_op(req, tn, v, i, b, &b->ops[i], op_keys))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Answers. */

/* Appends one 409 detail for conflict c. */
static void conflict_json(struct strbuf *sb, const struct txn_call *call,
                          const struct engine_txn_conflict *c)
{
    const char *list = c->is_cond ? "conditions" : "ops";
    json_t *item = json_array_get(json_object_get(call->root, list), c->index);
    json_t *table = json_object_get(item, "table");
    json_t *key =
        c->is_cond ? json_object_get(item, "key") : json_array_get(call->op_keys, c->index);

    strbuf_addstr(sb, "{\"table\":");
    strbuf_add_json_str(sb, json_string_value(table), json_string_length(table));
    strbuf_addstr(sb, ",\"key\":");
    if (key)
        catalog_json_compact(key, sb);
    else
        strbuf_addstr(sb, "null");
    strbuf_addf(sb, ",\"reason\":\"%s\",\"%s\":%zu}",
                c->is_cond ? "condition failed" : "written after read_version",
                c->is_cond ? "condition" : "op", c->index);
}

static void reply_conflict(struct httpd_req *req, const struct txn_call *call,
                           const struct engine_txn_result *res)
{
    struct strbuf m = STRBUF_INIT;
    size_t nconds = 0;
    char msg[160];

    strbuf_addstr(&m, "\"details\":[");
    for (size_t i = 0; i < res->nconflicts; i++) {
        if (i)
            strbuf_addch(&m, ',');
        conflict_json(&m, call, &res->conflicts[i]);
        nconds += res->conflicts[i].is_cond;
    }
    strbuf_addch(&m, ']');
    snprintf(msg, sizeof(msg),
             "transaction conflict: %zu condition%s failed, %zu key%s written after "
             "read_version; nothing was written",
             nconds, nconds == 1 ? "" : "s", res->nconflicts - nconds,
             res->nconflicts - nconds == 1 ? "" : "s");
    api__reply_error_members(req, 409, "conflict", msg, &m);
    strbuf_release(&m);
}

static void reply_invalid(struct httpd_req *req, const struct engine_txn_result *res)
{
    uint32_t n = ST_MIN(res->ndetails, (uint32_t)DECODE_MAX_DETAILS);
    struct strbuf m = STRBUF_INIT;
    char msg[ST_ERR_MSG_MAX + 32];

    api__details_json(&m, res->details, n);
    strbuf_addf(&m, ",\"rejected\":%" PRIu32, res->ndetails);
    snprintf(msg, sizeof(msg), "%s; nothing was written",
             res->r.err.msg[0] ? res->r.err.msg : status_str(res->r.st));
    api__reply_error_members(req, 422, "validation_failed", msg, &m);
    strbuf_release(&m);
}

static void txn_done(void *arg, const struct engine_txn_result *res)
{
    struct txn_call *call = arg;
    struct httpd_req *req = call->req;

    if (res->r.st == ST_OK) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "{\"version\":%" PRIu64 "}", res->r.version);

        httpd_reply(req, 200, "application/json", buf, (size_t)n);
    } else if (res->r.st == ST_ECONFLICT && res->nconflicts) {
        reply_conflict(req, call, res);
    } else if (res->r.st == ST_EINVAL && res->ndetails) {
        reply_invalid(req, res);
    } else {
        httpd_reply_status(req, res->r.st, &res->r.err);
    }
    json_decref(call->root);
    json_decref(call->op_keys);
    free(call);
}

static void handle_txn(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *tenant = api__scoped_tenant(req, srv, CATALOG_SCOPE_WRITE);
    const struct catalog_tenant *tn;
    struct catalog_snap *snap;
    struct txn_build b;
    struct txn_call *call;
    json_t *root;

    if (!tenant)
        return;
    root = api__body_object(req);
    if (!root)
        return;
    snap = engine_catalog(srv->engine);
    tn = catalog_find_tenant(snap, tenant, strlen(tenant));
    if (!tn) {
        httpd_reply_error(req, 404, "not_found", "tenant '%s' does not exist", tenant);
        goto out_release;
    }
    memset(&b, 0, sizeof(b));
    call = xmalloc(sizeof(*call));
    call->req = req;
    call->root = root;
    call->op_keys = json_array();
    if (!parse_txn(req, srv->engine, tn, root, &b, call->op_keys)) {
        json_decref(call->op_keys);
        free(call);
        build_release(&b);
        goto out_release;
    }
    root = NULL; /* the call owns it now; txn_done frees both */
    engine_txn(srv->engine, tenant, &b.t, txn_done, call);
    build_release(&b);
out_release:
    catalog_release(snap);
    json_decref(root);
}

void api__register_txn(struct server *srv)
{
    static const char txn[] = "/v1/tenants/{tenant}/txn";

    httpd_route(srv->http, HTTPD_ON_INGEST, HTTPD_M_POST, txn, "txn", handle_txn, srv);
    httpd_route(srv->http, HTTPD_ON_QUERY, HTTPD_M_POST, txn, "wrong_listener", api__wrong_listener,
                (void *)httpd_listener_name(HTTPD_INGEST));
}
