/*
 * Queries and held snapshots, on the query listener (API.md, "Reads").
 *
 *   POST   /v1/tenants/{tenant}/query           read  200 {"version", "rows",
 *                                                     "next_cursor", "stats"}
 *                                                     or an NDJSON stream
 *   POST   /v1/tenants/{tenant}/snapshots       read  201 {"id", "version",
 *                                                     "expires_at"}
 *   DELETE /v1/tenants/{tenant}/snapshots/{id}  read  204, or 404
 *
 * A QUERY is checked in full before anything runs: authentication (so a
 * key learns nothing of other tenants), the body (query_parse.c: 400
 * invalid_query naming the JSON path), the table ("table: unknown table
 * 'x'"), the cursor (cursor.c: "cursor: invalid cursor", whatever is
 * wrong with it) and the snapshot (engine_scan_open(): 409
 * snapshot_too_old). Then the executor (engine/query.h) runs on the loop
 * thread in steps of STEP_BUDGET units of work; between steps the query
 * waits on a zero-timeout timer, so that the loop polls its sockets and
 * other requests run in between. (An event made active from its own
 * callback would run again in the same pass of the loop, before any
 * socket is polled: one large query would hold everything else up.)
 *
 * ANSWERS. A buffered answer is built as the rows come, in one strbuf
 * that starts {"version":V,"rows":[ and is finished with next_cursor and
 * stats; its size counts against limits.query_memory like the
 * executor's state. A streamed answer (Accept: application/x-ndjson)
 * starts at the first rows to send, so that a query failing early still
 * gets a real HTTP error; lines are written in batches of FLUSH_BYTES
 * and whenever a step ends. When httpd_stream_write() reports the
 * client's buffer full, emit pauses the executor (ST_EAGAIN) and the
 * drain callback resumes it. The last line is {"done": true, ...}, or
 * {"done": false, "error": {...}} when the query fails after the stream
 * began. A client that goes away gets everything freed from the abort
 * callback.
 *
 * PAGING. next_cursor is null exactly when no row follows (the executor
 * looks one row ahead for plain queries; its count of groups or sorted
 * rows is exact for the others). It carries the snapshot version, so
 * every page reads the same snapshot. Plain queries without order_by
 * continue after the primary key of the last row sent (the next scan
 * starts there: no rows are read twice); all others, and a plain query
 * whose last key is longer than CURSOR_KEY_MAX, continue by an offset
 * (the rows already sent are computed again and left out).
 *
 * LIMITS. limits.query_timeout bounds a query's running time, not
 * counting the time a stream waits for its client to read (the HTTP
 * layer's write timeout bounds that): past it the answer is 504
 * query_timeout. Over limits.query_memory the executor fails with
 * ST_ENOMEM, answered 413 query_too_large (reply.c maps ST_ENOMEM to 503
 * overloaded with Retry-After, but the same query would fail again).
 *
 * SNAPSHOTS pin the version visible when they are made, for a ttl (a
 * duration string, "10m"; a longer one than mvcc.max_snapshot_ttl is cut
 * to it). Queries and point reads use it through as_of.
 */
#include "api/api.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/cursor.h"
#include "api/query_parse.h"
#include "engine/engine.h"
#include "engine/query.h"
#include "engine/timestamp.h"
#include "http/httpd.h"
#include "server.h"
#include "util/metrics.h"
#include "util/timeutil.h"

#define STEP_BUDGET 4096        /* units of executor work per loop turn */
#define FLUSH_BYTES (32 * 1024) /* streamed lines written in batches of this */

_Static_assert(CURSOR_SECRET_LEN == ENGINE_SECRET_LEN, "cursors are MACed with the engine secret");

/* One query in progress. */
struct qrun {
    struct httpd_req *req;            /* to answer */
    struct server *srv;               /* for the engine and the config */
    struct catalog_snap *snap;        /* keeps the plan's schema alive */
    struct query_parse_result pr;     /* the plan */
    struct engine_scan *scan;         /* the rows, on one snapshot */
    struct query_exec *exec;          /* the executor */
    struct event *ev;                 /* runs the next step */
    struct strbuf out;                /* buffered: the answer so far; streamed:
                                       * lines not written yet */
    char **keys;                      /* per column: its JSON name and ':' */
    uint32_t nkeys;                   /* entries in keys */
    bool stream;                      /* an NDJSON answer */
    bool started;                     /* the stream has begun */
    bool blocked;                     /* waiting for the stream to drain */
    bool by_key;                      /* plain, no order_by: cursors by key */
    uint64_t tenant_id;               /* for cursors */
    uint64_t table_id;                /* for cursors */
    uint64_t fingerprint;             /* of the query, for cursors */
    uint64_t version;                 /* the snapshot read */
    uint64_t rows;                    /* rows emitted */
    size_t mem_limit;                 /* limits.query_memory */
    uint64_t start_ns;                /* when the query started */
    uint64_t timeout_ns;              /* limits.query_timeout */
    uint64_t paused_ns;               /* spent waiting for drains */
    uint64_t blocked_ns;              /* when the current wait began */
    size_t last_key_len;              /* key of the last row sent; 0: none, or
                                       * longer than CURSOR_KEY_MAX */
    uint8_t last_key[CURSOR_KEY_MAX]; /* its bytes */
    struct cursor from;               /* where this page starts */
};

static void qrun_free(struct qrun *q)
{
    if (q->ev)
        event_free(q->ev);
    query_exec_free(q->exec);
    engine_scan_close(q->scan);
    query_parse_result_release(&q->pr);
    if (q->snap)
        catalog_release(q->snap);
    for (uint32_t i = 0; i < q->nkeys; i++)
        free(q->keys[i]);
    free(q->keys);
    strbuf_release(&q->out);
    free(q);
}

/* ------------------------------------------------------------------ */
/* Answers */

static void reply_invalid(struct httpd_req *req, const char *msg)
{
    httpd_reply_error(req, 400, "invalid_query", "%s", msg);
}

/* The HTTP status and code of a failed query (see the top of the file). */
static int fail_status(enum st_status st, const char **code)
{
    if (st == ST_ENOMEM) {
        *code = "query_too_large";
        return 413;
    }
    return httpd_status_http(st, code);
}

/* Appends next_cursor's value: a cursor, or null when no row follows. */
static void add_next_cursor(struct qrun *q, const struct query_stats *st)
{
    struct cursor *c;

    if (!st->more) {
        strbuf_addstr(&q->out, "null");
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->tenant_id = q->tenant_id;
    c->table_id = q->table_id;
    c->version = q->version;
    c->fingerprint = q->fingerprint;
    if (q->by_key && q->last_key_len) {
        memcpy(c->key, q->last_key, q->last_key_len);
        c->key_len = q->last_key_len;
    } else {
        /* After the same key as this page (if any), the rows sent since. */
        memcpy(c->key, q->from.key, q->from.key_len);
        c->key_len = q->from.key_len;
        c->skip = q->from.skip + q->rows;
    }
    strbuf_addch(&q->out, '"');
    cursor_encode(c, engine_secret(q->srv->engine), &q->out);
    strbuf_addch(&q->out, '"');
    free(c);
}

static void add_stats(struct qrun *q, const struct query_stats *st)
{
    struct engine_scan_stats ss;
    uint64_t ns = time_mono_ns() - q->start_ns;

    engine_scan_get_stats(q->scan, &ss);
    strbuf_addf(&q->out,
                "\"stats\":{\"rows_scanned\":%" PRIu64 ",\"rows_matched\":%" PRIu64
                ",\"segments_skipped\":%" PRIu64 ",\"blocks_skipped\":%" PRIu64
                ",\"elapsed_ms\":%.3f}",
                st->rows_scanned, st->rows_matched, ss.segments_skipped, ss.blocks_skipped,
                (double)ns / 1e6);
}

static void on_drain(void *arg);

/* Writes the pending lines of a stream (beginning it); false when blocked. */
static bool flush(struct qrun *q)
{
    bool ok;

    if (!q->started) {
        httpd_stream_begin(q->req, 200, "application/x-ndjson");
        httpd_stream_on_drain(q->req, on_drain, q);
        q->started = true;
    }
    ok = httpd_stream_write(q->req, q->out.buf, q->out.len);
    strbuf_reset(&q->out);
    if (!ok && !q->blocked) {
        q->blocked = true;
        q->blocked_ns = time_mono_ns();
    }
    return ok;
}

/* The query is done: the answer's end, then free everything. */
/* strata_query_duration_seconds: from the request to the last row, waits for the reader included.
 */
static void observe(struct qrun *q, bool failed)
{
    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    struct metric *m;

    if (!q->srv->metrics)
        return;
    m = metrics_histogram(q->srv->metrics, "strata_query_duration_seconds",
                          "Queries (POST .../query) from start to their last row, by outcome.",
                          "outcome", buckets, ST_ARRAY_SIZE(buckets));
    metric_observe(metric_series_get(m, failed ? "error" : "ok"),
                   (double)(time_mono_ns() - q->start_ns) / 1e9);
}

static void finish(struct qrun *q)
{
    struct query_stats st;

    query_exec_get_stats(q->exec, &st);
    if (q->stream) {
        strbuf_addf(&q->out,
                    "{\"done\":true,\"rows\":%" PRIu64 ",\"version\":%" PRIu64 ",\"next_cursor\":",
                    q->rows, q->version);
        add_next_cursor(q, &st);
        strbuf_addch(&q->out, ',');
        add_stats(q, &st);
        strbuf_addstr(&q->out, "}\n");
        flush(q);
        httpd_stream_end(q->req);
    } else {
        strbuf_addstr(&q->out, "],\"next_cursor\":");
        add_next_cursor(q, &st);
        strbuf_addch(&q->out, ',');
        add_stats(q, &st);
        strbuf_addch(&q->out, '}');
        httpd_reply_strbuf(q->req, 200, "application/json", &q->out);
    }
    observe(q, false);
    qrun_free(q);
}

/* The query failed with st: an error answer, or the stream's error line. */
static void fail(struct qrun *q, enum st_status st, const char *code, int http, const char *msg)
{
    if (!code)
        http = fail_status(st, &code);
    if (q->stream && q->started) {
        strbuf_addstr(&q->out, "{\"done\":false,\"error\":{\"code\":");
        strbuf_add_json_str(&q->out, code, strlen(code));
        strbuf_addstr(&q->out, ",\"message\":");
        strbuf_add_json_str(&q->out, msg, strlen(msg));
        strbuf_addstr(&q->out, "}}\n");
        flush(q);
        httpd_stream_end(q->req);
    } else {
        httpd_reply_error(q->req, http, code, "%s", msg);
    }
    observe(q, true);
    qrun_free(q);
}

/* ------------------------------------------------------------------ */
/* Execution */

static enum st_status emit(void *ctx, const struct query_row *row, struct err *err)
{
    struct qrun *q = ctx;

    if (!q->stream && q->rows)
        strbuf_addch(&q->out, ',');
    strbuf_addch(&q->out, '{');
    for (uint32_t i = 0; i < row->ncols; i++) {
        if (i)
            strbuf_addch(&q->out, ',');
        strbuf_addstr(&q->out, q->keys[i]);
        api_value_json(&q->out, &row->vals[i]);
    }
    strbuf_addch(&q->out, '}');
    q->rows++;
    if (q->by_key && row->row) {
        size_t n = schema_row_key(row->row_schema, row->row, q->last_key, sizeof(q->last_key));

        q->last_key_len = n <= sizeof(q->last_key) ? n : 0;
    }
    if (!q->stream) {
        if (q->out.len > q->mem_limit)
            return err_set(err, ST_ENOMEM,
                           "the answer needs more than %zu bytes (limits.query_memory); ask for "
                           "fewer rows or stream them (Accept: application/x-ndjson)",
                           q->mem_limit);
        return ST_OK;
    }
    strbuf_addch(&q->out, '\n');
    if (q->out.len >= FLUSH_BYTES && !flush(q))
        return ST_EAGAIN;
    return ST_OK;
}

static void schedule(struct qrun *q)
{
    struct timeval now = {0, 0};

    evtimer_add(q->ev, &now);
}

/* Runs one step of the query and decides what comes next. */
static void run_step(struct qrun *q)
{
    uint64_t ran = time_mono_ns() - q->start_ns - q->paused_ns;
    enum query_step_result r;
    struct err err;

    if (ran > q->timeout_ns) {
        char msg[128];

        snprintf(msg, sizeof(msg),
                 "the query ran longer than %" PRIu64 " ms (limits.query_timeout)",
                 q->timeout_ns / 1000000);
        fail(q, ST_EBUSY, "query_timeout", 504, msg);
        return;
    }
    err_clear(&err);
    r = query_step(q->exec, STEP_BUDGET, &err);
    if (r == QUERY_ERROR) {
        fail(q, err.code, NULL, 0, err.msg[0] ? err.msg : status_str(err.code));
        return;
    }
    if (r == QUERY_DONE) {
        finish(q);
        return;
    }
    if (q->blocked || (q->stream && q->out.len && !flush(q)))
        return; /* on_drain() goes on */
    schedule(q);
}

static void on_step(evutil_socket_t fd, short what, void *arg)
{
    ST_UNUSED(fd);
    ST_UNUSED(what);
    run_step(arg);
}

static void on_drain(void *arg)
{
    struct qrun *q = arg;

    if (!q->blocked)
        return;
    q->blocked = false;
    q->paused_ns += time_mono_ns() - q->blocked_ns;
    schedule(q);
}

/* The client went away: free everything and let the request go. */
static void on_abort(void *arg)
{
    struct qrun *q = arg;
    struct httpd_req *req = q->req;
    bool started = q->started;

    qrun_free(q);
    if (started)
        httpd_stream_end(req);
    else
        httpd_reply(req, 499, "text/plain", NULL, 0);
}

/* ------------------------------------------------------------------ */
/* The request */

/* Whether the Accept header asks for NDJSON (application/x-ndjson or application/ndjson). */
static bool wants_ndjson(const char *accept)
{
    static const char *const types[] = {"application/x-ndjson", "application/ndjson"};

    while (accept && *accept) {
        size_t len;

        accept += strspn(accept, " \t,");
        len = strcspn(accept, ",; \t");
        for (size_t i = 0; i < ST_ARRAY_SIZE(types); i++)
            if (len == strlen(types[i]) && !strncasecmp(accept, types[i], len))
                return true;
        accept += strcspn(accept, ",");
    }
    return false;
}

/* Each column's name as JSON with its ':'. */
static void column_keys(struct qrun *q)
{
    const struct query_plan *p = q->pr.plan;

    q->keys = calloc_array(p->ncols, sizeof(*q->keys));
    q->nkeys = p->ncols;
    for (uint32_t i = 0; i < p->ncols; i++) {
        struct strbuf sb = STRBUF_INIT;

        strbuf_add_json_str(&sb, p->cols[i].name, strlen(p->cols[i].name));
        strbuf_addch(&sb, ':');
        q->keys[i] = strbuf_detach(&sb, NULL);
    }
}

/*
 * Checks the query's cursor (if any) and sets where the page starts.
 * False after answering 400.
 */
static bool take_cursor(struct qrun *q, const json_t *body)
{
    const struct query_parse_result *pr = &q->pr;
    struct err err;

    q->fingerprint = cursor_fingerprint(body);
    if (!pr->cursor)
        return true;
    if (cursor_decode(pr->cursor, strlen(pr->cursor), engine_secret(q->srv->engine), q->tenant_id,
                      q->table_id, q->fingerprint, &q->from, &err) != ST_OK ||
        (q->from.key_len && !q->by_key)) {
        reply_invalid(q->req, CURSOR_INVALID);
        return false;
    }
    if (pr->has_as_of && pr->as_of != q->from.version) {
        httpd_reply_error(q->req, 400, "invalid_query",
                          "as_of: the cursor continues version %" PRIu64 ", not %" PRIu64,
                          q->from.version, pr->as_of);
        return false;
    }
    return true;
}

/* Opens the scan on the query's snapshot. False after answering. */
static bool open_scan(struct qrun *q, const char *tenant, const char *table)
{
    const struct query_plan *p = q->pr.plan;
    bool *fields = calloc_array(p->schema->nfields ? p->schema->nfields : 1, sizeof(*fields));
    struct engine_scan_opts so;
    enum st_status rc;
    struct err err;

    memset(&so, 0, sizeof(so));
    so.as_of = q->pr.cursor ? q->from.version : q->pr.as_of;
    so.keys = &p->keys;
    so.time = &p->time;
    /* Segments decode only the columns the query reads. */
    query_plan_fields(p, fields);
    so.fields = fields;
    if (q->from.key_len) {
        so.after = q->from.key;
        so.after_len = q->from.key_len;
    }
    err_clear(&err);
    rc = engine_scan_open(q->srv->engine, tenant, table, &so, &q->scan, &err);
    free(fields);
    if (rc == ST_ECONFLICT) {
        httpd_reply_error(q->req, 409, "snapshot_too_old", "%s", err.msg);
        return false;
    }
    if (rc == ST_EINVAL) {
        httpd_reply_error(q->req, 400, "invalid_query", "as_of: %s", err.msg);
        return false;
    }
    if (rc) {
        httpd_reply_status(q->req, rc, &err);
        return false;
    }
    if (engine_scan_table_id(q->scan) != q->table_id) {
        /* Dropped and created again between the lookup and the scan. */
        httpd_reply_error(q->req, 409, "conflict", "table '%s' changed; try again", table);
        return false;
    }
    q->version = engine_scan_version(q->scan);
    return true;
}

/*
 * Builds the query of body for tenant: the table, the plan, the cursor,
 * the scan, the executor. NULL after answering.
 */
static struct qrun *qrun_new(struct httpd_req *req, struct server *srv, const char *tenant,
                             const json_t *body)
{
    struct qrun *q = xcalloc(1, sizeof(*q));
    const struct catalog_tenant *t;
    const struct catalog_table *tb;
    struct query_parse_opts po;
    struct query_exec_opts eo;
    struct query_source src;
    const char *table;
    size_t table_len;
    struct err err;

    q->req = req;
    q->srv = srv;
    q->start_ns = time_mono_ns();
    q->timeout_ns = srv->cfg.limits.query_timeout_ms * 1000000;
    q->mem_limit = (size_t)srv->cfg.limits.query_memory;
    strbuf_init(&q->out, 0);
    if (query_parse_table(body, &table, &table_len, &err) != ST_OK) {
        reply_invalid(req, err.msg);
        goto err_free;
    }
    q->snap = engine_catalog(srv->engine);
    t = catalog_find_tenant(q->snap, tenant, strlen(tenant));
    if (!t) {
        httpd_reply_error(req, 404, "not_found", "tenant '%s' does not exist", tenant);
        goto err_free;
    }
    tb = catalog_tenant_find_table(t, table, table_len);
    if (!tb) {
        httpd_reply_error(req, 400, "invalid_query", "table: unknown table '%s'", table);
        goto err_free;
    }
    q->tenant_id = catalog_tenant_id(t);
    q->table_id = catalog_table_id(tb);
    q->stream = wants_ndjson(httpd_req_header(req, "Accept"));
    po.max_rows = srv->cfg.limits.max_query_rows;
    po.stream = q->stream;
    if (query_parse(body, catalog_table_schema(tb), &po, &q->pr, &err) != ST_OK) {
        reply_invalid(req, err.msg);
        goto err_free;
    }
    q->by_key = !q->pr.plan->grouped && !q->pr.plan->norder;
    if (!take_cursor(q, body) || !open_scan(q, tenant, table))
        goto err_free;
    q->pr.cursor = NULL; /* borrowed from the body, which goes now */
    memset(&eo, 0, sizeof(eo));
    eo.mem_limit = q->mem_limit;
    eo.skip = q->from.skip;
    eo.lookahead = q->by_key;
    engine_scan_source(q->scan, &src);
    q->exec = query_exec_new(q->pr.plan, &src, &eo, emit, q);
    column_keys(q);
    if (!q->stream)
        strbuf_addf(&q->out, "{\"version\":%" PRIu64 ",\"rows\":[", q->version);
    q->ev = evtimer_new(srv->base, on_step, q);
    if (!q->ev)
        ST_BUG("cannot create a timer event");
    return q;

err_free:
    qrun_free(q);
    return NULL;
}

static void handle_query(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *tenant = api__scoped_tenant(req, srv, CATALOG_SCOPE_READ);
    struct qrun *q;
    json_t *body;

    if (!tenant)
        return;
    body = api__body_object(req);
    if (!body)
        return;
    q = qrun_new(req, srv, tenant, body);
    json_decref(body);
    if (!q)
        return;
    if (httpd_req_is_aborted(req)) {
        on_abort(q);
        return;
    }
    httpd_req_on_abort(req, on_abort, q);
    run_step(q);
}

/* ------------------------------------------------------------------ */
/* Snapshots */

/* The body's ttl in ms, cut to mvcc.max_snapshot_ttl; false after answering 400. */
static bool snapshot_ttl(struct httpd_req *req, const struct server *srv, json_t *body,
                         int64_t *ttl_ms)
{
    const char *name;
    uint64_t ms;
    json_t *v;

    json_object_foreach(body, name, v)
    {
        if (strcmp(name, "ttl")) {
            httpd_reply_error(req, 400, "bad_request", "unknown member '%.64s' (only \"ttl\")",
                              name);
            return false;
        }
    }
    v = json_object_get(body, "ttl");
    if (!v) {
        httpd_reply_error(req, 400, "bad_request", "ttl: missing (a duration such as \"10m\")");
        return false;
    }
    if (!json_is_string(v) || !config_parse_duration_ms(json_string_value(v), &ms) || ms == 0) {
        httpd_reply_error(req, 400, "bad_request",
                          "ttl: expected a positive duration such as \"10m\" (ms, s, m, h, d)");
        return false;
    }
    if (ms > srv->cfg.mvcc.max_snapshot_ttl_ms)
        ms = srv->cfg.mvcc.max_snapshot_ttl_ms;
    *ttl_ms = (int64_t)ms;
    return true;
}

static void handle_snapshot_post(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    char when[TIMESTAMP_TEXT_MAX];
    struct engine_snapshot snap;
    struct strbuf sb = STRBUF_INIT;
    const char *tenant;
    enum st_status rc;
    int64_t ttl_ms;
    struct err err;
    json_t *body;
    size_t n;

    if (!(tenant = api__scoped_tenant(req, srv, CATALOG_SCOPE_READ)) ||
        !(body = api__body_object(req)))
        return;
    if (!snapshot_ttl(req, srv, body, &ttl_ms))
        goto out_decref;
    err_clear(&err);
    rc = engine_snapshot_hold(srv->engine, tenant, ttl_ms, &snap, &err);
    if (rc) {
        httpd_reply_status(req, rc, &err);
        goto out_decref;
    }
    n = timestamp_format(snap.expires_ms, when);
    strbuf_addf(&sb, "{\"id\":\"%" PRIu64 "\",\"version\":%" PRIu64 ",\"expires_at\":\"%.*s\"}",
                snap.id, snap.version, (int)n, when);
    httpd_reply_strbuf(req, 201, "application/json", &sb);
    strbuf_release(&sb);
out_decref:
    json_decref(body);
}

static void handle_snapshot_delete(struct httpd_req *req, void *arg)
{
    struct server *srv = arg;
    const char *tenant, *id_text;
    enum st_status rc;
    struct err err;
    uint64_t id;

    if (!(tenant = api__scoped_tenant(req, srv, CATALOG_SCOPE_READ)))
        return;
    id_text = httpd_req_param(req, "id");
    if (!api_version_parse(id_text, &id) || id == 0) {
        httpd_reply_error(req, 404, "not_found", "no snapshot '%.32s'", id_text);
        return;
    }
    err_clear(&err);
    rc = engine_snapshot_release(srv->engine, tenant, id, &err);
    if (rc) {
        httpd_reply_status(req, rc, &err);
        return;
    }
    httpd_reply(req, 204, "application/json", NULL, 0);
}

void api__register_query(struct server *srv)
{
    httpd *h = srv->http;

    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/tenants/{tenant}/query", "query",
                handle_query, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_POST, "/v1/tenants/{tenant}/snapshots",
                "snapshot_create", handle_snapshot_post, srv);
    httpd_route(h, HTTPD_ON_QUERY, HTTPD_M_DELETE, "/v1/tenants/{tenant}/snapshots/{id}",
                "snapshot_delete", handle_snapshot_delete, srv);
}
