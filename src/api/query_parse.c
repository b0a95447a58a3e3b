/*
 * query_parse: a query's JSON body to a checked struct query_plan.
 *
 * The parser walks the body with jansson and keeps the JSON path of the
 * part it is looking at ("where.and[1].value") in a buffer that grows as
 * it descends and is cut back as it returns, so that every error names
 * its place: fail() prefixes the path. Members are read in a fixed order
 * (table, group_by, time_bucket, aggregates, select, where, order_by,
 * limit, cursor, as_of) because select and order_by resolve names against
 * the groups and aggregates; an unknown top-level member is reported
 * first.
 *
 * Literals become struct values of the field's type here (timestamps to
 * epoch ms; strings copied, owned by the plan); int64 and float64 fields
 * accept any JSON number and query_plan_finish() keeps the comparison
 * exact. The plan is built in place and freed with query_plan_free() on
 * any error: every array is allocated zeroed at its full size first, and
 * a zeroed node or value owns nothing, so a half-built plan frees cleanly.
 */
#include "api/query_parse.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/timestamp.h"

#define PATH_MAX_LEN 200 /* bytes of path kept in messages */

struct pctx {
    const struct schema *s;  /* the table's newest schema */
    struct query_plan *p;    /* the plan being built */
    struct err *err;         /* where failures go */
    char path[PATH_MAX_LEN]; /* the JSON path of the current part */
    size_t plen;             /* its length */
};

/* Appends a path component; returns the old length for path_cut(). */
static size_t path_push(struct pctx *c, const char *fmt, ...) ST_PRINTF(2, 3);

static size_t path_push(struct pctx *c, const char *fmt, ...)
{
    size_t old = c->plen;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(c->path + c->plen, sizeof(c->path) - c->plen, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->plen = ST_MIN(c->plen + (size_t)n, sizeof(c->path) - 1);
    return old;
}

static void path_cut(struct pctx *c, size_t len)
{
    c->plen = len;
    c->path[len] = '\0';
}

/* Records "<path>: <message>" as ST_EINVAL; returns false. */
static bool fail(struct pctx *c, const char *fmt, ...) ST_PRINTF(2, 3);

static bool fail(struct pctx *c, const char *fmt, ...)
{
    char msg[ST_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err_set(c->err, ST_EINVAL, "%s: %s", c->plen ? c->path : "query", msg);
    return false;
}

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

/* Member name of o, or NULL when absent or null. */
static json_t *member(const json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);

    return v && !json_is_null(v) ? v : NULL;
}

/* False (after fail()) when o has a member not in allowed (NULL-terminated). */
static bool only_members(struct pctx *c, const json_t *o, const char *const *allowed)
{
    const char *name;
    json_t *v;

    json_object_foreach((json_t *)o, name, v)
    {
        size_t i;

        for (i = 0; allowed[i] && strcmp(allowed[i], name); i++)
            ;
        if (!allowed[i]) {
            path_push(c, "%s%.64s", c->plen ? "." : "", name);
            return fail(c, "unknown member");
        }
    }
    return true;
}

/* The index of the field named by string v, or -1 after fail(). */
static int field_of(struct pctx *c, const json_t *v)
{
    int i;

    if (!json_is_string(v)) {
        fail(c, "expected a field name, got %s", kind_name(v));
        return -1;
    }
    i = schema_find_field(c->s, json_string_value(v), json_string_length(v));
    if (i < 0)
        fail(c, "unknown field '%.64s'", json_string_value(v));
    return i;
}

static bool name_ok(struct pctx *c, const json_t *v, char out[SCHEMA_NAME_MAX])
{
    if (!json_is_string(v))
        return fail(c, "expected a name, got %s", kind_name(v));
    if (!schema_field_name_is_valid(json_string_value(v), json_string_length(v)))
        return fail(c, "invalid name '%.64s' (letters, digits and '_', at most 63)",
                    json_string_value(v));
    st_strlcpy(out, json_string_value(v), SCHEMA_NAME_MAX);
    return true;
}

/* ------------------------------------------------------------------ */
/* where */

static char *copy_bytes(const char *s, size_t len)
{
    char *d = xmalloc(len ? len : 1);

    memcpy(d, s, len);
    return d;
}

/* v as a literal for field f into *out (strings copied). */
static bool literal(struct pctx *c, const struct field *f, const json_t *v, struct value *out)
{
    memset(out, 0, sizeof(*out));
    if (json_is_null(v))
        return fail(c, "null is not a value; use the operator 'is_null'");
    switch (f->type) {
    case FIELD_INT64:
    case FIELD_FLOAT64:
        if (json_is_integer(v)) {
            out->type = FIELD_INT64;
            out->u.i = json_integer_value(v);
            return true;
        }
        if (json_is_real(v)) {
            out->type = FIELD_FLOAT64;
            out->u.f = json_real_value(v);
            return true;
        }
        return fail(c, "expected a number for %s field '%s', got %s", field_type_name(f->type),
                    f->name, kind_name(v));
    case FIELD_BOOL:
        if (!json_is_boolean(v))
            return fail(c, "expected true or false for bool field '%s', got %s", f->name,
                        kind_name(v));
        out->type = FIELD_BOOL;
        out->u.b = json_is_true(v);
        return true;
    case FIELD_STRING:
        if (!json_is_string(v))
            return fail(c, "expected a string for string field '%s', got %s", f->name,
                        kind_name(v));
        out->type = FIELD_STRING;
        out->u.s.len = (uint32_t)json_string_length(v);
        out->u.s.ptr = copy_bytes(json_string_value(v), json_string_length(v));
        return true;
    case FIELD_TIMESTAMP:
        out->type = FIELD_TIMESTAMP;
        if (json_is_integer(v)) {
            out->u.i = json_integer_value(v);
            return true;
        }
        if (!json_is_string(v))
            return fail(c,
                        "expected an RFC 3339 string or epoch milliseconds for timestamp field "
                        "'%s', got %s",
                        f->name, kind_name(v));
        if (!timestamp_parse_rfc3339(json_string_value(v), json_string_length(v), &out->u.i))
            return fail(c, "invalid timestamp '%.64s' for field '%s'", json_string_value(v),
                        f->name);
        return true;
    case FIELD_JSON:
        break;
    }
    ST_BUG("literal for a field of type %d", (int)f->type);
}

/* Whether op applies to fields of type t; fails naming both otherwise. */
static bool op_applies(struct pctx *c, enum query_op op, const struct field *f)
{
    if (op == QUERY_OP_IS_NULL)
        return true;
    if ((op == QUERY_OP_PREFIX || op == QUERY_OP_CONTAINS) && f->type != FIELD_STRING)
        return fail(c, "operator '%s' applies to string fields, not to %s field '%s'",
                    query_op_name(op), field_type_name(f->type), f->name);
    if (f->type == FIELD_JSON)
        return fail(c, "operator '%s' does not apply to json field '%s' (only is_null does)",
                    query_op_name(op), f->name);
    return true;
}

static bool pred(struct pctx *c, const json_t *o, struct query_node *n)
{
    static const char *const allowed[] = {"field", "op", "value", NULL};
    json_t *fv = json_object_get(o, "field"), *ov = json_object_get(o, "op");
    json_t *vv = json_object_get(o, "value");
    const struct field *f;
    size_t at = c->plen;
    int i;

    if (!only_members(c, o, allowed))
        return false;
    n->kind = QUERY_NODE_PRED;
    path_push(c, "%sfield", at ? "." : "");
    if (!fv)
        return fail(c, "missing");
    if ((i = field_of(c, fv)) < 0)
        return false;
    f = &c->s->fields[i];
    n->field = (uint32_t)i;
    path_cut(c, at);
    path_push(c, "%sop", at ? "." : "");
    if (!ov)
        return fail(c, "missing");
    if (!json_is_string(ov))
        return fail(c, "expected an operator, got %s", kind_name(ov));
    if (!query_op_parse(json_string_value(ov), &n->op))
        return fail(c,
                    "unknown operator '%.32s' (=, !=, <, <=, >, >=, in, prefix, contains, "
                    "is_null)",
                    json_string_value(ov));
    if (!op_applies(c, n->op, f))
        return false;
    path_cut(c, at);
    path_push(c, "%svalue", at ? "." : "");
    if (n->op == QUERY_OP_IS_NULL) {
        if (vv)
            return fail(c, "operator 'is_null' takes no value");
        path_cut(c, at);
        return true;
    }
    if (!vv)
        return fail(c, "missing");
    if (n->op == QUERY_OP_IN) {
        size_t len = json_array_size(vv);

        if (!json_is_array(vv) || !len)
            return fail(c, "expected a non-empty array for operator 'in', got %s",
                        json_is_array(vv) ? "an empty array" : kind_name(vv));
        n->list = calloc_array(len, sizeof(*n->list));
        n->nlist = (uint32_t)len;
        for (size_t k = 0; k < len; k++) {
            size_t el = path_push(c, "[%zu]", k);

            if (!literal(c, f, json_array_get(vv, k), &n->list[k]))
                return false;
            path_cut(c, el);
        }
    } else if (!literal(c, f, vv, &n->lit)) {
        return false;
    }
    path_cut(c, at);
    return true;
}

static bool node(struct pctx *c, const json_t *o, struct query_node *n, int depth);

static bool combinator(struct pctx *c, const char *name, const json_t *v, struct query_node *n,
                       int depth)
{
    size_t at = path_push(c, "%s%s", c->plen ? "." : "", name);

    if (!strcmp(name, "not")) {
        n->kind = QUERY_NODE_NOT;
        if (!json_is_object(v))
            return fail(c, "expected an object, got %s", kind_name(v));
        n->kids = xcalloc(1, sizeof(*n->kids));
        n->nkids = 1;
        if (!node(c, v, &n->kids[0], depth + 1))
            return false;
    } else {
        size_t len = json_array_size(v);

        n->kind = name[0] == 'a' ? QUERY_NODE_AND : QUERY_NODE_OR;
        if (!json_is_array(v))
            return fail(c, "expected an array, got %s", kind_name(v));
        n->kids = calloc_array(len ? len : 1, sizeof(*n->kids));
        n->nkids = (uint32_t)len;
        for (size_t k = 0; k < len; k++) {
            size_t el = path_push(c, "[%zu]", k);

            if (!node(c, json_array_get(v, k), &n->kids[k], depth + 1))
                return false;
            path_cut(c, el);
        }
    }
    path_cut(c, at);
    return true;
}

static bool node(struct pctx *c, const json_t *o, struct query_node *n, int depth)
{
    static const char *const combinators[] = {"and", "or", "not"};

    if (!json_is_object(o))
        return fail(c, "expected an object, got %s", kind_name(o));
    if (depth > QUERY_MAX_DEPTH)
        return fail(c, "filter nested deeper than %d levels", QUERY_MAX_DEPTH);
    for (size_t i = 0; i < ST_ARRAY_SIZE(combinators); i++) {
        json_t *v = json_object_get(o, combinators[i]);

        if (!v)
            continue;
        if (json_object_size(o) != 1)
            return fail(c, "'%s' must be the only member of its object", combinators[i]);
        return combinator(c, combinators[i], v, n, depth);
    }
    if (!json_object_size(o))
        return fail(c, "expected a predicate {\"field\", \"op\", \"value\"} or one of "
                       "'and', 'or', 'not'");
    return pred(c, o, n);
}

/* ------------------------------------------------------------------ */
/* Grouping */

static bool group_by(struct pctx *c, const json_t *v)
{
    struct query_plan *p = c->p;
    size_t len = json_array_size(v);

    if (!json_is_array(v))
        return fail(c, "expected an array of field names, got %s", kind_name(v));
    p->group = calloc_array(len ? len : 1, sizeof(*p->group));
    for (size_t k = 0; k < len; k++) {
        size_t at = path_push(c, "[%zu]", k);
        int i = field_of(c, json_array_get(v, k));

        if (i < 0)
            return false;
        if (c->s->fields[i].type == FIELD_JSON)
            return fail(c, "cannot group by json field '%s'", c->s->fields[i].name);
        for (uint32_t j = 0; j < p->ngroup; j++)
            if (p->group[j] == (uint32_t)i)
                return fail(c, "duplicate field '%s'", c->s->fields[i].name);
        p->group[p->ngroup++] = (uint32_t)i;
        path_cut(c, at);
    }
    return true;
}

/* "15m" and the like: n >= 1 of s, m, h or d, at most QUERY_MAX_BUCKET_MS. */
static bool parse_width(const char *s, size_t len, int64_t *ms)
{
    int64_t n = 0, unit;
    size_t i;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        n = n * 10 + (s[i] - '0');
        if (n > QUERY_MAX_BUCKET_MS)
            return false;
    }
    if (i == 0 || n == 0 || i + 1 != len)
        return false;
    switch (s[i]) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = 86400 * 1000;
        break;
    default:
        return false;
    }
    if (n > QUERY_MAX_BUCKET_MS / unit)
        return false;
    *ms = n * unit;
    return true;
}

static bool time_bucket(struct pctx *c, const json_t *o)
{
    static const char *const allowed[] = {"field", "width", "as", NULL};
    struct query_bucket *b = &c->p->bucket;
    size_t at = c->plen;
    json_t *v;
    int i;

    if (!json_is_object(o))
        return fail(c, "expected an object, got %s", kind_name(o));
    if (!only_members(c, o, allowed))
        return false;
    path_push(c, ".field");
    if (!(v = member(o, "field")))
        return fail(c, "missing");
    if ((i = field_of(c, v)) < 0)
        return false;
    if (c->s->fields[i].type != FIELD_TIMESTAMP)
        return fail(c, "'%s' is a %s field, not a timestamp", c->s->fields[i].name,
                    field_type_name(c->s->fields[i].type));
    b->field = (uint32_t)i;
    path_cut(c, at);
    path_push(c, ".width");
    if (!(v = member(o, "width")))
        return fail(c, "missing");
    if (!json_is_string(v) ||
        !parse_width(json_string_value(v), json_string_length(v), &b->width_ms))
        return fail(c, "expected a width such as \"1h\": a positive integer and s, m, h or d, "
                       "at most 100000d");
    path_cut(c, at);
    path_push(c, ".as");
    if ((v = member(o, "as"))) {
        if (!name_ok(c, v, b->as))
            return false;
    } else {
        st_strlcpy(b->as, c->s->fields[i].name, sizeof(b->as));
    }
    for (uint32_t j = 0; j < c->p->ngroup; j++)
        if (!strcmp(c->s->fields[c->p->group[j]].name, b->as))
            return fail(c, "duplicate column '%s' (a group_by field)", b->as);
    b->on = true;
    return true;
}

/* Whether name is already a column name of a grouped query. */
static bool group_name_taken(const struct pctx *c, const char *name, uint32_t naggs)
{
    const struct query_plan *p = c->p;

    for (uint32_t j = 0; j < p->ngroup; j++)
        if (!strcmp(c->s->fields[p->group[j]].name, name))
            return true;
    if (p->bucket.on && !strcmp(p->bucket.as, name))
        return true;
    for (uint32_t j = 0; j < naggs; j++)
        if (!strcmp(p->aggs[j].as, name))
            return true;
    return false;
}

static bool agg_field_ok(struct pctx *c, enum query_agg_fn fn, const struct field *f)
{
    switch (fn) {
    case QUERY_AGG_COUNT:
        return true;
    case QUERY_AGG_SUM:
    case QUERY_AGG_AVG:
        if (f->type == FIELD_INT64 || f->type == FIELD_FLOAT64)
            return true;
        return fail(c, "%s needs an int64 or float64 field, '%s' is %s", query_agg_name(fn),
                    f->name, field_type_name(f->type));
    case QUERY_AGG_MIN:
    case QUERY_AGG_MAX:
    case QUERY_AGG_COUNT_DISTINCT:
        if (f->type != FIELD_JSON)
            return true;
        return fail(c, "%s does not apply to json field '%s'", query_agg_name(fn), f->name);
    }
    ST_BUG("aggregate %d", (int)fn);
}

static bool aggregate(struct pctx *c, const json_t *o, struct query_agg *a, uint32_t idx)
{
    static const char *const allowed[] = {"fn", "field", "as", NULL};
    size_t at = c->plen;
    json_t *v;

    if (!json_is_object(o))
        return fail(c, "expected an object, got %s", kind_name(o));
    if (!only_members(c, o, allowed))
        return false;
    path_push(c, ".fn");
    if (!(v = member(o, "fn")))
        return fail(c, "missing");
    if (!json_is_string(v) || !query_agg_parse(json_string_value(v), &a->fn))
        return fail(c, "expected one of count, sum, min, max, avg, count_distinct");
    path_cut(c, at);
    path_push(c, ".field");
    a->field = -1;
    if ((v = member(o, "field"))) {
        int i = field_of(c, v);

        if (i < 0 || !agg_field_ok(c, a->fn, &c->s->fields[i]))
            return false;
        a->field = i;
    } else if (a->fn != QUERY_AGG_COUNT) {
        return fail(c, "missing (%s needs a field)", query_agg_name(a->fn));
    }
    path_cut(c, at);
    path_push(c, ".as");
    if ((v = member(o, "as"))) {
        if (!name_ok(c, v, a->as))
            return false;
    } else {
        char def[2 * SCHEMA_NAME_MAX];

        if (a->field < 0)
            snprintf(def, sizeof(def), "%s", query_agg_name(a->fn));
        else
            snprintf(def, sizeof(def), "%s_%s", query_agg_name(a->fn), c->s->fields[a->field].name);
        if (strlen(def) >= SCHEMA_NAME_MAX)
            return fail(c, "missing (the default name '%s' is longer than 63 bytes)", def);
        st_strlcpy(a->as, def, sizeof(a->as));
    }
    if (group_name_taken(c, a->as, idx))
        return fail(c, "duplicate column '%s'", a->as);
    path_cut(c, at);
    return true;
}

static bool aggregates(struct pctx *c, const json_t *v)
{
    struct query_plan *p = c->p;
    size_t len = json_array_size(v);

    if (!json_is_array(v))
        return fail(c, "expected an array, got %s", kind_name(v));
    p->aggs = calloc_array(len ? len : 1, sizeof(*p->aggs));
    for (size_t k = 0; k < len; k++) {
        size_t at = path_push(c, "[%zu]", k);

        if (!aggregate(c, json_array_get(v, k), &p->aggs[k], (uint32_t)k))
            return false;
        p->naggs++;
        path_cut(c, at);
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Columns and order */

/*
 * Resolves a name in a grouped query: a group_by field, the bucket or an
 * aggregate. Fails naming the problem otherwise.
 */
static bool grouped_ref(struct pctx *c, const json_t *v, struct query_ref *r)
{
    const struct query_plan *p = c->p;
    const char *name;
    int i;

    if (!json_is_string(v))
        return fail(c, "expected a name, got %s", kind_name(v));
    name = json_string_value(v);
    for (uint32_t j = 0; j < p->naggs; j++) {
        if (!strcmp(p->aggs[j].as, name)) {
            r->kind = QUERY_REF_AGG;
            r->index = j;
            return true;
        }
    }
    if (p->bucket.on && !strcmp(p->bucket.as, name)) {
        r->kind = QUERY_REF_BUCKET;
        r->index = 0;
        return true;
    }
    i = schema_find_field(c->s, name, json_string_length(v));
    if (i < 0)
        return fail(c, "unknown field '%.64s'", name);
    for (uint32_t j = 0; j < p->ngroup; j++) {
        if (p->group[j] == (uint32_t)i) {
            r->kind = QUERY_REF_FIELD;
            r->index = (uint32_t)i;
            return true;
        }
    }
    return fail(c, "'%s' is neither a group_by field nor an aggregate", name);
}

static bool same_ref(const struct query_ref *a, const struct query_ref *b)
{
    return a->kind == b->kind && a->index == b->index;
}

/* Adds a column for r unless there is one. */
static void add_col(struct query_plan *p, const struct query_ref *r, const char *name)
{
    for (uint32_t i = 0; i < p->ncols; i++)
        if (same_ref(&p->cols[i].ref, r))
            return;
    p->cols[p->ncols].ref = *r;
    st_strlcpy(p->cols[p->ncols].name, name, SCHEMA_NAME_MAX);
    p->ncols++;
}

static const char *ref_name(const struct pctx *c, const struct query_ref *r)
{
    switch (r->kind) {
    case QUERY_REF_FIELD:
        return c->s->fields[r->index].name;
    case QUERY_REF_BUCKET:
        return c->p->bucket.as;
    case QUERY_REF_AGG:
        return c->p->aggs[r->index].as;
    }
    ST_BUG("reference kind %d", (int)r->kind);
}

/*
 * In a grouped select: a field name that is not a column name (aggregate,
 * bucket, group_by field) but the field of one or more aggregates
 * selects those aggregates' columns at its place ("delay" for
 * avg(delay)), those not selected yet. Returns how many aggregates have
 * that field (0: not such a name; the caller resolves it as usual).
 */
static int select_agg_field(struct pctx *c, const json_t *v)
{
    struct query_plan *p = c->p;
    struct query_ref r;
    int i, n = 0;

    if (!json_is_string(v) || group_name_taken(c, json_string_value(v), p->naggs))
        return 0;
    i = schema_find_field(c->s, json_string_value(v), json_string_length(v));
    if (i < 0)
        return 0;
    for (uint32_t j = 0; j < p->naggs; j++) {
        if (p->aggs[j].field != i)
            continue;
        r.kind = QUERY_REF_AGG;
        r.index = j;
        add_col(p, &r, p->aggs[j].as);
        n++;
    }
    return n;
}

static bool select_cols(struct pctx *c, const json_t *v)
{
    struct query_plan *p = c->p;
    size_t len = v ? json_array_size(v) : 0, max;
    struct query_ref r;

    if (v && !json_is_array(v))
        return fail(c, "expected an array of field names, got %s", kind_name(v));
    max = p->grouped ? len + p->ngroup + 1 + p->naggs : (v ? len : c->s->nfields);
    p->cols = calloc_array(max ? max : 1, sizeof(*p->cols));
    for (size_t k = 0; k < len; k++) {
        size_t at = path_push(c, "[%zu]", k);
        const json_t *e = json_array_get(v, k);
        uint32_t before = p->ncols;

        if (p->grouped) {
            int n = select_agg_field(c, e);

            if (n > 0) {
                if (p->ncols == before)
                    return fail(c, "duplicate column: every aggregate of '%s' is selected",
                                json_string_value(e));
                path_cut(c, at);
                continue;
            }
            if (!grouped_ref(c, e, &r))
                return false;
        } else {
            int i = field_of(c, e);

            if (i < 0)
                return false;
            r.kind = QUERY_REF_FIELD;
            r.index = (uint32_t)i;
        }
        add_col(p, &r, ref_name(c, &r));
        if (p->ncols == before)
            return fail(c, "duplicate column '%s'", ref_name(c, &r));
        path_cut(c, at);
    }
    if (!v && !p->grouped) {
        for (uint32_t j = 0; j < c->s->nfields; j++) {
            r.kind = QUERY_REF_FIELD;
            r.index = j;
            add_col(p, &r, c->s->fields[j].name);
        }
    }
    if (!v) {
        for (uint32_t j = 0; p->grouped && j < p->ngroup; j++) {
            r.kind = QUERY_REF_FIELD;
            r.index = p->group[j];
            add_col(p, &r, c->s->fields[p->group[j]].name);
        }
    }
    if (p->bucket.on) {
        r.kind = QUERY_REF_BUCKET;
        r.index = 0;
        add_col(p, &r, p->bucket.as);
    }
    for (uint32_t j = 0; j < p->naggs; j++) {
        r.kind = QUERY_REF_AGG;
        r.index = j;
        add_col(p, &r, p->aggs[j].as);
    }
    if (!p->ncols)
        return fail(c, "the query has no columns");
    return true;
}

static bool order_key(struct pctx *c, const json_t *e, struct query_order *o)
{
    static const char *const allowed[] = {"field", "dir", NULL};
    size_t at = c->plen;
    const json_t *name = e;

    if (json_is_object(e)) {
        json_t *d = member(e, "dir");

        if (!only_members(c, e, allowed))
            return false;
        if (d) {
            path_push(c, ".dir");
            if (!json_is_string(d) ||
                (strcmp(json_string_value(d), "asc") && strcmp(json_string_value(d), "desc")))
                return fail(c, "expected \"asc\" or \"desc\"");
            o->desc = !strcmp(json_string_value(d), "desc");
            path_cut(c, at);
        }
        path_push(c, ".field");
        if (!(name = member(e, "field")))
            return fail(c, "missing");
    } else if (!json_is_string(e)) {
        return fail(c, "expected a field name or {\"field\", \"dir\"}, got %s", kind_name(e));
    }
    if (c->p->grouped) {
        if (!grouped_ref(c, name, &o->ref))
            return false;
    } else {
        int i = field_of(c, name);

        if (i < 0)
            return false;
        if (c->s->fields[i].type == FIELD_JSON)
            return fail(c, "cannot order by json field '%s'", c->s->fields[i].name);
        o->ref.kind = QUERY_REF_FIELD;
        o->ref.index = (uint32_t)i;
    }
    path_cut(c, at);
    return true;
}

static bool order_by(struct pctx *c, const json_t *v)
{
    struct query_plan *p = c->p;
    size_t len = json_array_size(v);

    if (!json_is_array(v))
        return fail(c, "expected an array, got %s", kind_name(v));
    p->order = calloc_array(len ? len : 1, sizeof(*p->order));
    for (size_t k = 0; k < len; k++) {
        size_t at = path_push(c, "[%zu]", k);

        if (!order_key(c, json_array_get(v, k), &p->order[k]))
            return false;
        p->norder++;
        path_cut(c, at);
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* The body */

enum st_status query_parse_table(const json_t *body, const char **name, size_t *len,
                                 struct err *err)
{
    json_t *v;

    if (!json_is_object(body))
        return err_set(err, ST_EINVAL, "query: expected a JSON object, got %s", kind_name(body));
    v = json_object_get(body, "table");
    if (!v)
        return err_set(err, ST_EINVAL, "table: missing");
    if (!json_is_string(v))
        return err_set(err, ST_EINVAL, "table: expected a string, got %s", kind_name(v));
    if (!schema_entity_name_is_valid(json_string_value(v), json_string_length(v)))
        return err_set(err, ST_EINVAL, "table: invalid table name '%.64s'", json_string_value(v));
    *name = json_string_value(v);
    *len = json_string_length(v);
    return ST_OK;
}

/* A member that runs fn at path name when present. */
static bool part(struct pctx *c, const json_t *body, const char *name,
                 bool (*fn)(struct pctx *, const json_t *))
{
    json_t *v = member(body, name);
    bool ok;

    if (!v)
        return true;
    path_push(c, "%s", name);
    ok = fn(c, v);
    if (ok)
        path_cut(c, 0);
    return ok;
}

static bool where(struct pctx *c, const json_t *v)
{
    c->p->where = xcalloc(1, sizeof(*c->p->where));
    return node(c, v, c->p->where, 0);
}

static bool limit(struct pctx *c, const json_t *body, const struct query_parse_opts *opts)
{
    json_t *v = member(body, "limit");
    struct query_plan *p = c->p;

    if (!v) {
        p->limit = opts->stream ? QUERY_NO_LIMIT : QUERY_DEFAULT_LIMIT;
        if (!opts->stream && opts->max_rows && p->limit > opts->max_rows)
            p->limit = opts->max_rows;
        return true;
    }
    path_push(c, "limit");
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return fail(c, "expected an integer >= 0, got %s",
                    json_is_integer(v) ? "a negative integer" : kind_name(v));
    p->limit = (uint64_t)json_integer_value(v);
    if (!opts->stream && opts->max_rows && p->limit > opts->max_rows)
        p->limit = opts->max_rows;
    path_cut(c, 0);
    return true;
}

static bool cursor_as_of(struct pctx *c, const json_t *body, struct query_parse_result *out)
{
    json_t *v;

    if ((v = member(body, "cursor"))) {
        path_push(c, "cursor");
        if (!json_is_string(v))
            return fail(c, "expected a string or null, got %s", kind_name(v));
        out->cursor = json_string_value(v);
        path_cut(c, 0);
    }
    if ((v = member(body, "as_of"))) {
        path_push(c, "as_of");
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return fail(c, "expected a version (an integer >= 0) or null, got %s",
                        json_is_integer(v) ? "a negative integer" : kind_name(v));
        out->has_as_of = true;
        out->as_of = (uint64_t)json_integer_value(v);
        path_cut(c, 0);
    }
    return true;
}

enum st_status query_parse(const json_t *body, const struct schema *schema,
                           const struct query_parse_opts *opts, struct query_parse_result *out,
                           struct err *err)
{
    static const char *const allowed[] = {"table",       "select",     "where",    "group_by",
                                          "time_bucket", "aggregates", "order_by", "limit",
                                          "cursor",      "as_of",      NULL};
    static const struct query_parse_opts no_opts;
    struct pctx c = {.s = schema, .err = err};
    const char *table;
    size_t table_len;
    enum st_status rc;

    memset(out, 0, sizeof(*out));
    if (!opts)
        opts = &no_opts;
    if ((rc = query_parse_table(body, &table, &table_len, err)) != ST_OK)
        return rc;
    c.p = query_plan_new(schema);
    if (!only_members(&c, body, allowed) || !part(&c, body, "group_by", group_by) ||
        !part(&c, body, "time_bucket", time_bucket) || !part(&c, body, "aggregates", aggregates))
        goto err_free_plan;
    c.p->grouped = c.p->ngroup || c.p->bucket.on || c.p->naggs;
    path_push(&c, "select");
    if (!select_cols(&c, member(body, "select")))
        goto err_free_plan;
    path_cut(&c, 0);
    if (!part(&c, body, "where", where) || !part(&c, body, "order_by", order_by) ||
        !limit(&c, body, opts) || !cursor_as_of(&c, body, out))
        goto err_free_plan;
    query_plan_finish(c.p);
    out->plan = c.p;
    return ST_OK;

err_free_plan:
    query_plan_free(c.p);
    memset(out, 0, sizeof(*out));
    return ST_EINVAL;
}

void query_parse_result_release(struct query_parse_result *out)
{
    query_plan_free(out->plan);
    memset(out, 0, sizeof(*out));
}
