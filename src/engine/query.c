/*
 * Query plans and their execution (the semantics are in query.h).
 *
 * PLANS. src/api/query_parse.c builds a struct query_plan and calls
 * query_plan_finish(), which normalises literals (an int64 literal on a
 * float64 field becomes a double when that is exact, and so on; in-lists
 * are sorted and made distinct for a binary search) and derives from the
 * top-level conjunction the primary-key range and the time range the
 * storage layer uses to skip data. Key bounds are computed per key field
 * in the key.h byte encoding, always as [lo, hi): because that encoding is
 * prefix-free per field and memcmp-ordered, "field > v" is "field bytes >=
 * succ(enc(v))", where succ(x) is the smallest string greater than every
 * string starting with x (x without its trailing 0xff bytes, last byte
 * plus one), and "field starts with p" is [esc(p), succ(esc(p))). Fixed
 * leading fields are concatenated in front of the next field's bounds.
 *
 * EXECUTION is a state machine driven by query_step(q, budget):
 *
 *   SCAN      read rows from the source; per row: decode the fields the
 *             query needs (one pass over the row, through a per-schema
 *             map that handles older schema versions), evaluate the filter
 *             (three-valued), then
 *               plain, no order_by: emit the row at once (stop at limit)
 *               plain, order_by:    keep it in a max-heap of the best
 *                                   skip+limit rows (or a plain array
 *                                   without a limit), copying its values
 *               grouped:            find its group in a hash table keyed by
 *                                   the encoded group values (the last
 *                                   row's group is tried first: rows in
 *                                   key order often share it, time buckets
 *                                   nearly always) and update the
 *                                   aggregates
 *   FINALIZE  grouped: turn each group's key and aggregate states into
 *             result values
 *   HEAPIFY   build a min-heap of the kept rows or groups (bottom-up, one
 *             node per unit of budget)
 *   EMIT      pop the heap in order, leaving out opts.skip rows, and emit
 *   DONE
 *
 * Every phase works in units of budget, so no step runs longer than its
 * budget whatever the data; an emit callback can also pause the machine
 * (ST_EAGAIN). The order of kept rows is total (order keys, then group
 * keys or arrival number), so the heap yields exactly a full sort's order
 * and a top-k is exactly the prefix of the full sort.
 *
 * Memory is accounted, not estimated: every byte of state (group arena,
 * hash tables, distinct sets, copied rows, min/max strings, heap arrays)
 * is reserved against opts.mem_limit before it is allocated; over the
 * limit the query fails with ST_ENOMEM. Per-row scratch (one row's
 * values, one encoded key) is not counted: it is bounded by a row.
 *
 * Groups live in an arena: a group is its header, its aggregate states and
 * its encoded key in one block. Group keys and count_distinct values use
 * one encoding: per value a byte 0 (null) or 1, then int64/timestamp 8
 * bytes, float64 8 bytes (-0.0 stored as 0.0), bool 1 byte, string a u32
 * length and the bytes. count_distinct keeps one hash set for the whole
 * query keyed by (group number, aggregate number, encoded value).
 */
#include "engine/query.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "engine/key.h"

__extension__ typedef __int128 i128;

#define I64_LIMIT 9223372036854775808.0 /* 2^63 as a double */

/* ------------------------------------------------------------------ */
/* Names */

static const char *const op_names[] = {
    [QUERY_OP_EQ] = "=",
    [QUERY_OP_NE] = "!=",
    [QUERY_OP_LT] = "<",
    [QUERY_OP_LE] = "<=",
    [QUERY_OP_GT] = ">",
    [QUERY_OP_GE] = ">=",
    [QUERY_OP_IN] = "in",
    [QUERY_OP_PREFIX] = "prefix",
    [QUERY_OP_CONTAINS] = "contains",
    [QUERY_OP_IS_NULL] = "is_null",
};

static const char *const agg_names[] = {
    [QUERY_AGG_COUNT] = "count", [QUERY_AGG_SUM] = "sum",
    [QUERY_AGG_MIN] = "min",     [QUERY_AGG_MAX] = "max",
    [QUERY_AGG_AVG] = "avg",     [QUERY_AGG_COUNT_DISTINCT] = "count_distinct",
};

const char *query_op_name(enum query_op op)
{
    if ((unsigned)op >= ST_ARRAY_SIZE(op_names))
        return "unknown";
    return op_names[op];
}

bool query_op_parse(const char *name, enum query_op *out)
{
    for (size_t i = 0; i < ST_ARRAY_SIZE(op_names); i++) {
        if (!strcmp(name, op_names[i])) {
            *out = (enum query_op)i;
            return true;
        }
    }
    return false;
}

const char *query_agg_name(enum query_agg_fn fn)
{
    if ((unsigned)fn >= ST_ARRAY_SIZE(agg_names))
        return "unknown";
    return agg_names[fn];
}

bool query_agg_parse(const char *name, enum query_agg_fn *out)
{
    for (size_t i = 0; i < ST_ARRAY_SIZE(agg_names); i++) {
        if (!strcmp(name, agg_names[i])) {
            *out = (enum query_agg_fn)i;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Comparing values */

/* a against b (not NaN) by exact value: <0, 0 or >0. */
static int cmp_i64_f64(int64_t a, double b)
{
    int64_t t;
    double frac;

    if (b >= I64_LIMIT)
        return -1;
    if (b < -I64_LIMIT)
        return 1;
    t = (int64_t)b; /* toward zero, in range */
    if (a != t)
        return a < t ? -1 : 1;
    frac = b - (double)t; /* exact: |b| < 2^52 or b is an integer */
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_bytes(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return key_compare(a, alen, b, blen);
}

/*
 * Two non-null values of one type, or an int64 and a float64: <0, 0, >0.
 * -0.0 equals 0.0.
 */
static int cmp_value(const struct value *a, const struct value *b)
{
    if (a->type != b->type) {
        if (a->type == FIELD_INT64 && b->type == FIELD_FLOAT64)
            return cmp_i64_f64(a->u.i, b->u.f);
        if (a->type == FIELD_FLOAT64 && b->type == FIELD_INT64)
            return -cmp_i64_f64(b->u.i, a->u.f);
        ST_BUG("comparing %s with %s", field_type_name(a->type), field_type_name(b->type));
    }
    switch (a->type) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    case FIELD_FLOAT64:
        return (a->u.f > b->u.f) - (a->u.f < b->u.f);
    case FIELD_BOOL:
        return (int)a->u.b - (int)b->u.b;
    case FIELD_STRING:
    case FIELD_JSON:
        return cmp_bytes(a->u.s.ptr, a->u.s.len, b->u.s.ptr, b->u.s.len);
    }
    ST_BUG("value of unknown type %d", (int)a->type);
}

/* Like cmp_value(), with nulls after every value. */
static int cmp_nulls_last(const struct value *a, const struct value *b)
{
    if (a->is_null || b->is_null)
        return (int)a->is_null - (int)b->is_null;
    return cmp_value(a, b);
}

/* ------------------------------------------------------------------ */
/* Plans */

struct query_plan *query_plan_new(const struct schema *schema)
{
    struct query_plan *p = xcalloc(1, sizeof(*p));

    p->schema = schema;
    p->limit = QUERY_NO_LIMIT;
    return p;
}

static bool has_string(const struct value *v)
{
    return !v->is_null && (v->type == FIELD_STRING || v->type == FIELD_JSON);
}

static void node_release(struct query_node *n)
{
    for (uint32_t i = 0; i < n->nkids; i++)
        node_release(&n->kids[i]);
    free(n->kids);
    if (n->kind == QUERY_NODE_PRED && has_string(&n->lit))
        free((void *)n->lit.u.s.ptr);
    for (uint32_t i = 0; i < n->nlist; i++)
        if (has_string(&n->list[i]))
            free((void *)n->list[i].u.s.ptr);
    free(n->list);
}

void query_plan_free(struct query_plan *p)
{
    if (!p)
        return;
    if (p->where) {
        node_release(p->where);
        free(p->where);
    }
    free(p->cols);
    free(p->group);
    free(p->aggs);
    free(p->order);
    free(p->keys.lo);
    if (p->keys.hi != p->keys.lo)
        free(p->keys.hi);
    free(p);
}

/* Turns a numeric literal into type t (int64 or float64) when exact. */
static void lit_normalize(enum field_type t, struct value *lit)
{
    if (t == FIELD_INT64 && lit->type == FIELD_FLOAT64) {
        double d = lit->u.f;

        if (d >= -I64_LIMIT && d < I64_LIMIT && (double)(int64_t)d == d) {
            lit->type = FIELD_INT64;
            lit->u.i = (int64_t)d;
        }
    } else if (t == FIELD_FLOAT64 && lit->type == FIELD_INT64) {
        double d = (double)lit->u.i;

        if (d < I64_LIMIT && (int64_t)d == lit->u.i) {
            lit->type = FIELD_FLOAT64;
            lit->u.f = d;
        }
    }
    if (lit->type == FIELD_FLOAT64 && lit->u.f == 0)
        lit->u.f = 0.0; /* -0.0 */
}

static int cmp_value_qsort(const void *a, const void *b)
{
    return cmp_value(a, b);
}

/*
 * Normalises an in-list: entries of the field's type, sorted, distinct.
 * A numeric entry that cannot be exactly of the field's type equals no
 * value of it and is dropped.
 */
static void list_normalize(enum field_type t, struct query_node *n)
{
    uint32_t k = 0;

    for (uint32_t i = 0; i < n->nlist; i++) {
        lit_normalize(t, &n->list[i]);
        if (n->list[i].type == t)
            n->list[k++] = n->list[i];
        else
            st_assert(!has_string(&n->list[i]));
    }
    n->nlist = k;
    if (k > 1)
        qsort(n->list, k, sizeof(*n->list), cmp_value_qsort);
    k = 0;
    for (uint32_t i = 0; i < n->nlist; i++) {
        if (k && cmp_value(&n->list[k - 1], &n->list[i]) == 0) {
            if (has_string(&n->list[i]))
                free((void *)n->list[i].u.s.ptr);
            continue;
        }
        n->list[k++] = n->list[i];
    }
    n->nlist = k;
}

static bool op_takes_literal(enum query_op op)
{
    return op != QUERY_OP_IN && op != QUERY_OP_IS_NULL;
}

/* Whether a literal of type lt can go with a field of type ft. */
static bool lit_type_ok(enum field_type ft, enum field_type lt)
{
    if (ft == FIELD_INT64 || ft == FIELD_FLOAT64)
        return lt == FIELD_INT64 || lt == FIELD_FLOAT64;
    return ft == lt && ft != FIELD_JSON;
}

static void node_finish(const struct schema *s, struct query_node *n, int depth)
{
    enum field_type ft;

    st_assert(depth <= QUERY_MAX_DEPTH);
    switch (n->kind) {
    case QUERY_NODE_AND:
    case QUERY_NODE_OR:
        for (uint32_t i = 0; i < n->nkids; i++)
            node_finish(s, &n->kids[i], depth + 1);
        return;
    case QUERY_NODE_NOT:
        st_assert(n->nkids == 1);
        node_finish(s, &n->kids[0], depth + 1);
        return;
    case QUERY_NODE_PRED:
        break;
    }
    st_assert(n->field < s->nfields && !n->nkids);
    ft = s->fields[n->field].type;
    if (op_takes_literal(n->op)) {
        st_assert(!n->lit.is_null && lit_type_ok(ft, n->lit.type));
        if (n->op == QUERY_OP_PREFIX || n->op == QUERY_OP_CONTAINS)
            st_assert(ft == FIELD_STRING);
        lit_normalize(ft, &n->lit);
    } else if (n->op == QUERY_OP_IN) {
        for (uint32_t i = 0; i < n->nlist; i++)
            st_assert(!n->list[i].is_null && lit_type_ok(ft, n->list[i].type));
        list_normalize(ft, n);
    }
}

static void ref_check(const struct query_plan *p, const struct query_ref *r)
{
    switch (r->kind) {
    case QUERY_REF_FIELD:
        st_assert(r->index < p->schema->nfields);
        st_assert(p->schema->fields[r->index].type != FIELD_JSON || !p->grouped);
        if (p->grouped) {
            uint32_t i;

            for (i = 0; i < p->ngroup && p->group[i] != r->index; i++)
                ;
            st_assert(i < p->ngroup);
        }
        return;
    case QUERY_REF_BUCKET:
        st_assert(p->bucket.on);
        return;
    case QUERY_REF_AGG:
        st_assert(r->index < p->naggs);
        return;
    }
    ST_BUG("bad reference kind %d", (int)r->kind);
}

/* --- key ranges --- */

/* Bounds on one key field's encoding: [lo, hi); eq when pinned to a value. */
struct fbound {
    uint8_t *lo; /* inclusive, or NULL */
    size_t lo_len;
    uint8_t *hi; /* exclusive, or NULL */
    size_t hi_len;
    uint8_t *eq; /* the one value (its encoding), or NULL */
    size_t eq_len;
};

static uint8_t *encode1(const struct value *v, size_t *len)
{
    uint8_t tmp[16];
    size_t n = key_encode(v, 1, tmp, sizeof(tmp));
    uint8_t *buf = xmalloc(n ? n : 1);

    if (n <= sizeof(tmp))
        memcpy(buf, tmp, n);
    else
        key_encode(v, 1, buf, n);
    *len = n;
    return buf;
}

/*
 * The smallest string greater than every string starting with x: x
 * without its trailing 0xff bytes, last byte plus one. NULL when there
 * is none (x empty or all 0xff).
 */
static uint8_t *prefix_successor(const uint8_t *x, size_t len, size_t *out_len)
{
    uint8_t *buf;

    while (len && x[len - 1] == 0xff)
        len--;
    if (!len)
        return NULL;
    buf = xmalloc(len);
    memcpy(buf, x, len);
    buf[len - 1]++;
    *out_len = len;
    return buf;
}

static void bound_lo(struct fbound *b, uint8_t *lo, size_t len)
{
    if (!lo)
        return;
    if (!b->lo || key_compare(lo, len, b->lo, b->lo_len) > 0) {
        free(b->lo);
        b->lo = lo;
        b->lo_len = len;
    } else {
        free(lo);
    }
}

static void bound_hi(struct fbound *b, uint8_t *hi, size_t len)
{
    if (!hi)
        return;
    if (!b->hi || key_compare(hi, len, b->hi, b->hi_len) < 0) {
        free(b->hi);
        b->hi = hi;
        b->hi_len = len;
    } else {
        free(hi);
    }
}

/* Narrows b by one predicate on its field; false when nothing can match. */
static bool bound_pred(struct fbound *b, enum field_type ft, const struct query_node *n)
{
    uint8_t *e, *s;
    size_t elen, slen = 0;

    if (n->op == QUERY_OP_IN) {
        if (!n->nlist)
            return false;
        if (n->nlist > 1) {
            e = encode1(&n->list[n->nlist - 1], &elen);
            s = prefix_successor(e, elen, &slen);
            free(e);
            bound_hi(b, s, slen);
            e = encode1(&n->list[0], &elen);
            bound_lo(b, e, elen);
            return true;
        }
    } else if (n->op == QUERY_OP_PREFIX) {
        e = encode1(&n->lit, &elen);
        elen -= 2; /* the string terminator 0x00 0x01 */
        s = prefix_successor(e, elen, &slen);
        bound_hi(b, s, slen);
        if (elen)
            bound_lo(b, e, elen);
        else
            free(e);
        return true;
    } else if (n->op == QUERY_OP_NE || n->op == QUERY_OP_CONTAINS || n->op == QUERY_OP_IS_NULL) {
        return true;
    }
    {
        const struct value *v = n->op == QUERY_OP_IN ? &n->list[0] : &n->lit;

        if (v->type != ft) /* a numeric literal not exactly of the field's type */
            return n->op != QUERY_OP_EQ && n->op != QUERY_OP_IN;
        e = encode1(v, &elen);
    }
    switch (n->op) {
    case QUERY_OP_EQ:
    case QUERY_OP_IN:
        if (b->eq && key_compare(b->eq, b->eq_len, e, elen)) {
            free(e);
            return false;
        }
        free(b->eq);
        b->eq = e;
        b->eq_len = elen;
        return true;
    case QUERY_OP_GE:
        bound_lo(b, e, elen);
        return true;
    case QUERY_OP_GT:
        s = prefix_successor(e, elen, &slen);
        free(e);
        if (!s)
            return false; /* nothing above the largest value */
        bound_lo(b, s, slen);
        return true;
    case QUERY_OP_LT:
        bound_hi(b, e, elen);
        return true;
    case QUERY_OP_LE:
        s = prefix_successor(e, elen, &slen);
        free(e);
        bound_hi(b, s, slen);
        return true;
    default:
        break;
    }
    ST_BUG("operator %d in a key bound", (int)n->op);
}

/* Calls fn on each predicate of the top-level conjunction of n. */
static bool conjuncts(const struct query_node *n, bool (*fn)(void *, const struct query_node *),
                      void *arg)
{
    if (n->kind == QUERY_NODE_AND) {
        for (uint32_t i = 0; i < n->nkids; i++)
            if (!conjuncts(&n->kids[i], fn, arg))
                return false;
        return true;
    }
    if (n->kind == QUERY_NODE_PRED)
        return fn(arg, n);
    return true; /* or, not: no bound */
}

struct key_ctx {
    const struct schema *s;
    struct fbound *fb; /* per key field */
};

static bool key_conjunct(void *arg, const struct query_node *n)
{
    struct key_ctx *c = arg;

    for (uint32_t j = 0; j < c->s->npk; j++)
        if (c->s->pk[j] == n->field)
            return bound_pred(&c->fb[j], c->s->fields[n->field].type, n);
    return true;
}

static uint8_t *concat(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, size_t *len)
{
    uint8_t *buf = xmalloc(alen + blen ? alen + blen : 1);

    if (alen)
        memcpy(buf, a, alen);
    if (blen)
        memcpy(buf + alen, b, blen);
    *len = alen + blen;
    return buf;
}

static bool field_bounds_consistent(const struct fbound *b)
{
    if (b->lo && b->hi && key_compare(b->lo, b->lo_len, b->hi, b->hi_len) >= 0)
        return false;
    if (b->eq && b->lo && key_compare(b->eq, b->eq_len, b->lo, b->lo_len) < 0)
        return false;
    if (b->eq && b->hi && key_compare(b->eq, b->eq_len, b->hi, b->hi_len) >= 0)
        return false;
    return true;
}

static void derive_key_range(struct query_plan *p)
{
    const struct schema *s = p->schema;
    struct query_key_range *r = &p->keys;
    struct fbound fb[SCHEMA_MAX_PK];
    struct key_ctx c = {s, fb};
    uint8_t *pre = NULL;
    size_t pre_len = 0, m = 0;
    const struct fbound *b;

    memset(fb, 0, sizeof(fb));
    if (!p->where)
        return;
    if (!conjuncts(p->where, key_conjunct, &c)) {
        r->empty = true;
        goto out_free;
    }
    for (uint32_t j = 0; j < s->npk; j++) {
        if (!field_bounds_consistent(&fb[j])) {
            r->empty = true;
            goto out_free;
        }
    }
    /* The pinned leading fields. */
    while (m < s->npk && fb[m].eq) {
        uint8_t *n = concat(pre, pre_len, fb[m].eq, fb[m].eq_len, &pre_len);

        free(pre);
        pre = n;
        m++;
    }
    if (m == s->npk) {
        r->point = true;
        r->lo = r->hi = pre;
        r->lo_len = r->hi_len = pre_len;
        r->hi_incl = true;
        goto out_free;
    }
    b = &fb[m];
    if (b->lo)
        r->lo = concat(pre, pre_len, b->lo, b->lo_len, &r->lo_len);
    else if (pre_len)
        r->lo = concat(pre, pre_len, NULL, 0, &r->lo_len);
    if (b->hi)
        r->hi = concat(pre, pre_len, b->hi, b->hi_len, &r->hi_len);
    else if (pre_len)
        r->hi = prefix_successor(pre, pre_len, &r->hi_len);
    free(pre);
    if (r->lo && r->hi && key_compare(r->lo, r->lo_len, r->hi, r->hi_len) >= 0)
        r->empty = true;
out_free:
    for (uint32_t j = 0; j < SCHEMA_MAX_PK; j++) {
        free(fb[j].lo);
        free(fb[j].hi);
        free(fb[j].eq);
    }
}

/* --- time ranges --- */

struct time_ctx {
    uint32_t field;
    struct query_time_range *t;
};

static bool time_conjunct(void *arg, const struct query_node *n)
{
    struct time_ctx *c = arg;
    struct query_time_range *t = c->t;
    int64_t lo = INT64_MIN, hi = INT64_MAX, v;

    if (n->field != c->field)
        return true;
    switch (n->op) {
    case QUERY_OP_IN:
        if (!n->nlist)
            return false;
        lo = n->list[0].u.i;
        hi = n->list[n->nlist - 1].u.i;
        break;
    case QUERY_OP_EQ:
    case QUERY_OP_LT:
    case QUERY_OP_LE:
    case QUERY_OP_GT:
    case QUERY_OP_GE:
        v = n->lit.u.i;
        if (n->op == QUERY_OP_LT && v == INT64_MIN)
            return false;
        if (n->op == QUERY_OP_GT && v == INT64_MAX)
            return false;
        if (n->op != QUERY_OP_GT && n->op != QUERY_OP_GE)
            hi = n->op == QUERY_OP_LT ? v - 1 : v;
        if (n->op != QUERY_OP_LT && n->op != QUERY_OP_LE)
            lo = n->op == QUERY_OP_GT ? v + 1 : v;
        break;
    default:
        return true;
    }
    t->bounded = true;
    t->lo = ST_MAX(t->lo, lo);
    t->hi = ST_MIN(t->hi, hi);
    return t->lo <= t->hi;
}

static void derive_time_range(struct query_plan *p)
{
    struct query_time_range *t = &p->time;
    struct time_ctx c = {0, t};

    t->lo = INT64_MIN;
    t->hi = INT64_MAX;
    if (!p->where || p->schema->time_field < 0)
        return;
    c.field = (uint32_t)p->schema->time_field;
    if (!conjuncts(p->where, time_conjunct, &c)) {
        t->bounded = true;
        t->empty = true;
    }
}

void query_plan_finish(struct query_plan *p)
{
    const struct schema *s = p->schema;

    st_assert(s && p->ncols >= 1 && p->cols);
    if (p->where)
        node_finish(s, p->where, 0);
    p->grouped = p->ngroup || p->bucket.on || p->naggs;
    for (uint32_t i = 0; i < p->ngroup; i++)
        st_assert(p->group[i] < s->nfields && s->fields[p->group[i]].type != FIELD_JSON);
    if (p->bucket.on)
        st_assert(p->bucket.field < s->nfields &&
                  s->fields[p->bucket.field].type == FIELD_TIMESTAMP && p->bucket.width_ms >= 1 &&
                  p->bucket.width_ms <= QUERY_MAX_BUCKET_MS);
    for (uint32_t i = 0; i < p->naggs; i++) {
        const struct query_agg *a = &p->aggs[i];

        st_assert(a->field >= -1 && a->field < (int32_t)s->nfields);
        st_assert(a->field >= 0 || a->fn == QUERY_AGG_COUNT);
    }
    for (uint32_t i = 0; i < p->ncols; i++)
        ref_check(p, &p->cols[i].ref);
    for (uint32_t i = 0; i < p->norder; i++)
        ref_check(p, &p->order[i].ref);
    free(p->keys.lo);
    if (p->keys.hi != p->keys.lo)
        free(p->keys.hi);
    memset(&p->keys, 0, sizeof(p->keys));
    memset(&p->time, 0, sizeof(p->time));
    derive_key_range(p);
    derive_time_range(p);
}

/* ------------------------------------------------------------------ */
/* Rows across schema versions */

/* The default of field f, or null. */
static void field_default(const struct field *f, struct value *out)
{
    if (f->has_default) {
        *out = f->def;
        out->type = f->type;
    } else {
        memset(out, 0, sizeof(*out));
        out->type = f->type;
        out->is_null = true;
    }
}

enum get_flags {
    GET_WIDEN = 1 << 0,   /* stored int64, read as float64 */
    GET_NULLFIX = 1 << 1, /* a null here takes the default (not nullable now) */
};

/* How to read the fields a query needs from rows of one schema version. */
struct rowmap {
    const struct schema *s; /* the rows' schema */
    uint32_t nget;          /* fields read from the row */
    uint32_t *src;          /* their indexes in s, ascending */
    uint32_t *dst;          /* the newest-schema field each one fills */
    uint8_t *flags;         /* enum get_flags per field read */
    uint32_t nfill;         /* needed fields s cannot provide */
    uint32_t *fill;         /* their newest-schema indexes: default or null */
};

static void rowmap_build(struct rowmap *m, const struct schema *s, const struct schema *cur,
                         const uint32_t *need, uint32_t nneed)
{
    memset(m, 0, sizeof(*m));
    m->s = s;
    m->src = calloc_array(nneed ? nneed : 1, sizeof(*m->src));
    m->dst = calloc_array(nneed ? nneed : 1, sizeof(*m->dst));
    m->flags = calloc_array(nneed ? nneed : 1, sizeof(*m->flags));
    m->fill = calloc_array(nneed ? nneed : 1, sizeof(*m->fill));
    for (uint32_t k = 0; k < nneed; k++) {
        const struct field *f = &cur->fields[need[k]];
        int i = s == cur ? (int)need[k] : schema_find_field(s, f->name, strlen(f->name));
        uint8_t fl = 0;
        uint32_t at;

        if (i >= 0 && s->fields[i].type != f->type) {
            if (s->fields[i].type == FIELD_INT64 && f->type == FIELD_FLOAT64)
                fl |= GET_WIDEN;
            else
                i = -1;
        }
        if (i < 0) {
            m->fill[m->nfill++] = need[k];
            continue;
        }
        if (s->fields[i].nullable && !f->nullable)
            fl |= GET_NULLFIX;
        /* Insert in order of i. */
        for (at = m->nget; at > 0 && m->src[at - 1] > (uint32_t)i; at--) {
            m->src[at] = m->src[at - 1];
            m->dst[at] = m->dst[at - 1];
            m->flags[at] = m->flags[at - 1];
        }
        m->src[at] = (uint32_t)i;
        m->dst[at] = need[k];
        m->flags[at] = fl;
        m->nget++;
    }
}

static void rowmap_release(struct rowmap *m)
{
    free(m->src);
    free(m->dst);
    free(m->flags);
    free(m->fill);
}

/* Little-endian loads of the row format (one instruction each on x86). */
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

/*
 * Reads the fields of m from row into vals (indexed by newest-schema
 * field) in one pass over the row (the format of schema.h: schema_row_get()
 * reads one field per pass, which is quadratic when a query needs many).
 */
static void rowmap_read(const struct rowmap *m, const struct schema *cur, const void *row,
                        struct value *vals)
{
    const struct schema *s = m->s;
    const uint8_t *nulls = (const uint8_t *)row + 4;
    const uint8_t *p = nulls + (s->nfields + 7) / 8;
    uint32_t k = 0;

    for (uint32_t j = 0; k < m->nget; j++) {
        bool is_null = nulls[j / 8] & (1u << (j % 8));
        enum field_type t = s->fields[j].type;
        uint32_t len = 0;

        if (!is_null && (t == FIELD_STRING || t == FIELD_JSON))
            len = rd32(p);
        if (j == m->src[k]) {
            struct value *v = &vals[m->dst[k]];
            uint8_t fl = m->flags[k];

            v->type = t;
            v->is_null = is_null;
            if (!is_null) {
                switch (t) {
                case FIELD_INT64:
                case FIELD_TIMESTAMP:
                    v->u.i = (int64_t)rd64(p);
                    break;
                case FIELD_FLOAT64: {
                    uint64_t bits = rd64(p);

                    memcpy(&v->u.f, &bits, sizeof(bits));
                    break;
                }
                case FIELD_BOOL:
                    v->u.b = *p != 0;
                    break;
                case FIELD_STRING:
                case FIELD_JSON:
                    v->u.s.ptr = (const char *)p + 4;
                    v->u.s.len = len;
                    break;
                }
                if (fl & GET_WIDEN) {
                    v->type = FIELD_FLOAT64;
                    v->u.f = (double)v->u.i;
                }
            } else if (fl & GET_NULLFIX) {
                field_default(&cur->fields[m->dst[k]], v);
            } else if (fl & GET_WIDEN) {
                v->type = FIELD_FLOAT64;
            }
            k++;
        }
        if (!is_null) {
            if (t == FIELD_STRING || t == FIELD_JSON)
                p += 4 + (size_t)len;
            else
                p += t == FIELD_BOOL ? 1 : 8;
        }
    }
    for (uint32_t i = 0; i < m->nfill; i++)
        field_default(&cur->fields[m->fill[i]], &vals[m->fill[i]]);
}

void query_row_value(const struct schema *row_schema, const void *row, const struct schema *cur,
                     uint32_t field, struct value *out)
{
    struct rowmap m;
    struct value *vals = calloc_array(cur->nfields, sizeof(*vals));

    st_assert(field < cur->nfields);
    rowmap_build(&m, row_schema, cur, &field, 1);
    rowmap_read(&m, cur, row, vals);
    *out = vals[field];
    rowmap_release(&m);
    free(vals);
}

/* ------------------------------------------------------------------ */
/* Filters */

enum tv {
    TV_FALSE = 0,
    TV_TRUE = 1,
    TV_UNKNOWN = 2,
};

static bool in_list(const struct query_node *n, const struct value *v)
{
    uint32_t lo = 0, hi = n->nlist;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = cmp_value(&n->list[mid], v);

        if (!c)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static enum tv eval_pred(const struct query_node *n, const struct value *v)
{
    const struct value *lit = &n->lit;

    if (n->op == QUERY_OP_IS_NULL)
        return v->is_null ? TV_TRUE : TV_FALSE;
    if (v->is_null)
        return TV_UNKNOWN;
    switch (n->op) {
    case QUERY_OP_EQ:
        return cmp_value(v, lit) == 0 ? TV_TRUE : TV_FALSE;
    case QUERY_OP_NE:
        return cmp_value(v, lit) != 0 ? TV_TRUE : TV_FALSE;
    case QUERY_OP_LT:
        return cmp_value(v, lit) < 0 ? TV_TRUE : TV_FALSE;
    case QUERY_OP_LE:
        return cmp_value(v, lit) <= 0 ? TV_TRUE : TV_FALSE;
    case QUERY_OP_GT:
        return cmp_value(v, lit) > 0 ? TV_TRUE : TV_FALSE;
    case QUERY_OP_GE:
        return cmp_value(v, lit) >= 0 ? TV_TRUE : TV_FALSE;
    case QUERY_OP_IN:
        return in_list(n, v) ? TV_TRUE : TV_FALSE;
    case QUERY_OP_PREFIX:
        return v->u.s.len >= lit->u.s.len && !memcmp(v->u.s.ptr, lit->u.s.ptr, lit->u.s.len)
                   ? TV_TRUE
                   : TV_FALSE;
    case QUERY_OP_CONTAINS:
        if (!lit->u.s.len)
            return TV_TRUE;
        return memmem(v->u.s.ptr, v->u.s.len, lit->u.s.ptr, lit->u.s.len) ? TV_TRUE : TV_FALSE;
    case QUERY_OP_IS_NULL:
        break;
    }
    ST_BUG("operator %d", (int)n->op);
}

static enum tv eval(const struct query_node *n, const struct value *vals)
{
    enum tv r, k;

    switch (n->kind) {
    case QUERY_NODE_PRED:
        return eval_pred(n, &vals[n->field]);
    case QUERY_NODE_AND:
        r = TV_TRUE;
        for (uint32_t i = 0; i < n->nkids; i++) {
            k = eval(&n->kids[i], vals);
            if (k == TV_FALSE)
                return TV_FALSE;
            if (k == TV_UNKNOWN)
                r = TV_UNKNOWN;
        }
        return r;
    case QUERY_NODE_OR:
        r = TV_FALSE;
        for (uint32_t i = 0; i < n->nkids; i++) {
            k = eval(&n->kids[i], vals);
            if (k == TV_TRUE)
                return TV_TRUE;
            if (k == TV_UNKNOWN)
                r = TV_UNKNOWN;
        }
        return r;
    case QUERY_NODE_NOT:
        k = eval(&n->kids[0], vals);
        return k == TV_UNKNOWN ? TV_UNKNOWN : k == TV_TRUE ? TV_FALSE : TV_TRUE;
    }
    ST_BUG("node kind %d", (int)n->kind);
}

/* ------------------------------------------------------------------ */
/* Execution state */

enum phase {
    PH_SCAN,
    PH_FINALIZE,
    PH_HEAPIFY,
    PH_EMIT,
    PH_DONE,
    PH_FAILED,
};

/* What a phase function tells query_step(). */
enum run {
    RUN_OK,    /* went on (phase may have changed), budget may remain */
    RUN_PAUSE, /* emit asked to pause */
    RUN_FAIL,  /* q->err is set */
};

/*
 * Something to sort: a kept row or a group. v holds its values; the
 * execution's ord_slot/tie_slot/col_slot say which is which.
 */
struct item {
    struct value *v; /* its values */
    uint64_t seq;    /* plain rows: arrival number (ties); groups: 0 */
};

/* A kept row: one malloc'd block of the header, values and string bytes. */
struct pitem {
    struct item it; /* it.v points just past the header */
    size_t bytes;   /* the block's size, as accounted */
};

/* Aggregate state of one group. */
struct agg_state {
    union {
        i128 isum;      /* sum, avg of int64 */
        double fsum;    /* sum, avg of float64 */
        struct value v; /* min, max: the best so far */
    } u;
    uint64_t n;   /* values seen (count: rows or non-null values) */
    char *buf;    /* min, max of strings: a malloc'd copy of v */
    uint32_t cap; /* its size */
};

struct group {
    struct item it;        /* it.v: result slots once finalised */
    struct group *next;    /* hash chain */
    uint64_t hash;         /* key_hash() of the key */
    uint32_t id;           /* creation number */
    uint32_t key_len;      /* bytes of key */
    uint8_t *key;          /* the encoded group values */
    struct agg_state *agg; /* one per aggregate */
};

/* One count_distinct value: (group id, aggregate, encoded value). */
struct dent {
    uint64_t hash;   /* key_hash() of bytes */
    uint32_t len;    /* bytes */
    uint8_t bytes[]; /* the value */
};

struct arena_chunk {
    struct arena_chunk *next; /* older chunks */
    size_t size;              /* usable bytes */
    size_t used;              /* of which used */
};

#define ARENA_HDR   ((sizeof(struct arena_chunk) + 15) & ~(size_t)15)
#define ARENA_CHUNK ((size_t)64 << 10)

struct query_exec {
    const struct query_plan *p;  /* the plan */
    const struct schema *cur;    /* p->schema */
    struct query_source src;     /* rows */
    query_emit_fn emit;          /* result rows */
    void *ctx;                   /* emit's context */
    struct query_exec_opts opts; /* mem_limit filled in */
    enum phase phase;            /* where the machine is */
    struct err err;              /* the failure, once failed */
    struct query_stats st;       /* statistics */
    size_t mem;                  /* bytes of state held */
    uint64_t want;               /* skip + limit, saturated: rows kept */
    uint64_t skipped;            /* result rows left out so far */
    bool plain;                  /* not grouped */
    bool sorted;                 /* plain with order_by */
    bool looking;                /* plain: limit reached, looking ahead */

    /* Row decoding */
    uint32_t *need;                  /* newest-schema fields the query reads */
    uint32_t nneed;                  /* entries in need */
    struct value *vals;              /* the current row, by newest-schema field */
    struct rowmap *maps;             /* one per schema version seen */
    uint32_t nmaps;                  /* entries in maps */
    uint32_t last_map;               /* the one used last */
    struct value *out;               /* ncols scratch values to emit */
    const void *src_row;             /* the current row */
    const struct schema *src_schema; /* its schema */

    /* Sorting: items by (order keys, tie keys, seq) */
    uint32_t nord;       /* order keys */
    uint32_t *ord_slot;  /* value index of each order key */
    bool *ord_desc;      /* its direction */
    uint32_t ntie;       /* tie keys (groups: the key slots) */
    uint32_t *col_slot;  /* value index of each column */
    uint32_t nslots;     /* plain: nord + ncols; grouped: keys + aggs */
    struct value *tmp;   /* plain: a candidate row's nslots values */
    uint64_t tmp_seq;    /* and its arrival number */
    struct item **items; /* kept rows or groups */
    size_t nitems;       /* entries in items */
    size_t items_cap;    /* entries allocated */
    size_t nheap;        /* items[0..nheap) are the heap */
    size_t heapify_at;   /* next node to sift in PH_HEAPIFY (+1) */
    size_t finalize_at;  /* next group to finalise */

    /* Groups */
    uint32_t nkeys;            /* key values: ngroup (+1 with a bucket) */
    struct arena_chunk *arena; /* group storage, newest chunk first */
    struct group **table;      /* hash chains */
    size_t table_size;         /* entries in table, a power of two */
    struct group *single;      /* the group of a query without keys */
    struct group *last;        /* the group of the last row, or NULL */
    uint8_t *kbuf;             /* scratch encoded key */
    size_t kcap;               /* its size */
    struct dent **dset;        /* count_distinct values, open addressing */
    size_t dset_size;          /* entries in dset, a power of two or 0 */
    size_t dset_n;             /* entries used */
};

static bool mem_reserve(struct query_exec *q, size_t n)
{
    if (n > q->opts.mem_limit - q->mem) {
        err_set(&q->err, ST_ENOMEM, "query needs more than %zu bytes of memory", q->opts.mem_limit);
        return false;
    }
    q->mem += n;
    if (q->mem > q->st.mem_peak)
        q->st.mem_peak = q->mem;
    return true;
}

static void mem_release(struct query_exec *q, size_t n)
{
    st_assert(n <= q->mem);
    q->mem -= n;
}

/* n bytes, 16-aligned, from the arena; NULL over the memory limit. */
static void *arena_alloc(struct query_exec *q, size_t n)
{
    struct arena_chunk *c = q->arena;
    void *p;

    n = (n + 15) & ~(size_t)15;
    if (!c || c->size - c->used < n) {
        size_t size = ST_MAX(ARENA_CHUNK, n);

        if (!mem_reserve(q, ARENA_HDR + size))
            return NULL;
        c = xmalloc(ARENA_HDR + size);
        c->next = q->arena;
        c->size = size;
        c->used = 0;
        q->arena = c;
    }
    p = (char *)c + ARENA_HDR + c->used;
    c->used += n;
    return p;
}

/* Appends it to items; false over the memory limit. */
static bool items_push(struct query_exec *q, struct item *it)
{
    if (q->nitems == q->items_cap) {
        size_t cap = q->items_cap ? 2 * q->items_cap : 64;

        if (!mem_reserve(q, (cap - q->items_cap) * sizeof(*q->items)))
            return false;
        q->items = realloc_array(q->items, cap, sizeof(*q->items));
        q->items_cap = cap;
    }
    q->items[q->nitems++] = it;
    return true;
}

/* ------------------------------------------------------------------ */
/* Ordering */

static int item_cmp(const struct query_exec *q, const struct item *a, const struct item *b)
{
    for (uint32_t i = 0; i < q->nord; i++) {
        int c = cmp_nulls_last(&a->v[q->ord_slot[i]], &b->v[q->ord_slot[i]]);

        if (c)
            return q->ord_desc[i] ? -c : c;
    }
    for (uint32_t i = 0; i < q->ntie; i++) {
        int c = cmp_nulls_last(&a->v[i], &b->v[i]);

        if (c)
            return c;
    }
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* sign 1: a max-heap (root the last in order); -1: a min-heap. */
static void sift_down(const struct query_exec *q, struct item **h, size_t n, size_t i, int sign)
{
    for (;;) {
        size_t l = 2 * i + 1, top = i;
        struct item *t;

        if (l < n && sign * item_cmp(q, h[l], h[top]) > 0)
            top = l;
        if (l + 1 < n && sign * item_cmp(q, h[l + 1], h[top]) > 0)
            top = l + 1;
        if (top == i)
            return;
        t = h[i];
        h[i] = h[top];
        h[top] = t;
        i = top;
    }
}

static void sift_up(const struct query_exec *q, struct item **h, size_t i, int sign)
{
    while (i > 0) {
        size_t up = (i - 1) / 2;
        struct item *t;

        if (sign * item_cmp(q, h[i], h[up]) <= 0)
            return;
        t = h[i];
        h[i] = h[up];
        h[up] = t;
        i = up;
    }
}

/* ------------------------------------------------------------------ */
/* Emitting */

static enum run emit_row(struct query_exec *q, const struct value *vals, const void *row,
                         const struct schema *rs)
{
    struct query_row r = {vals, q->p->ncols, row, rs};
    enum st_status rc;

    if (q->skipped < q->opts.skip) {
        q->skipped++;
        return RUN_OK;
    }
    rc = q->emit(q->ctx, &r, &q->err);
    if (rc == ST_OK || rc == ST_EAGAIN) {
        q->st.rows_emitted++;
        return rc == ST_OK ? RUN_OK : RUN_PAUSE;
    }
    if (q->err.code == ST_OK)
        err_set(&q->err, rc, "query output failed: %s", status_str(rc));
    q->err.code = rc;
    return RUN_FAIL;
}

/* Result rows that count toward the limit so far, skipped ones included. */
static uint64_t rows_out(const struct query_exec *q)
{
    return q->st.rows_emitted + q->skipped;
}

/* ------------------------------------------------------------------ */
/* Plain rows */

/* A matching row of a plain query without order_by. */
static enum run plain_stream(struct query_exec *q)
{
    const struct query_plan *p = q->p;
    enum run r;

    if (q->looking) {
        q->st.more = true;
        q->phase = PH_DONE;
        return RUN_OK;
    }
    for (uint32_t i = 0; i < p->ncols; i++)
        q->out[i] = q->vals[p->cols[i].ref.index];
    r = emit_row(q, q->out, q->src_row, q->src_schema);
    if (r == RUN_FAIL)
        return r;
    if (rows_out(q) >= q->want) {
        if (q->opts.lookahead) {
            q->looking = true;
        } else {
            q->st.more = true;
            q->phase = PH_DONE;
        }
    }
    return r;
}

/* A copy of the candidate row q->tmp, or NULL over the memory limit. */
static struct pitem *pitem_new(struct query_exec *q)
{
    size_t bytes = sizeof(struct pitem) + q->nslots * sizeof(struct value);
    struct pitem *e;
    char *s;

    for (uint32_t i = 0; i < q->nslots; i++)
        if (has_string(&q->tmp[i]))
            bytes += q->tmp[i].u.s.len;
    if (!mem_reserve(q, bytes))
        return NULL;
    e = xmalloc(bytes);
    e->bytes = bytes;
    e->it.v = (struct value *)(e + 1);
    e->it.seq = q->tmp_seq;
    s = (char *)(e->it.v + q->nslots);
    for (uint32_t i = 0; i < q->nslots; i++) {
        e->it.v[i] = q->tmp[i];
        if (has_string(&q->tmp[i])) {
            memcpy(s, q->tmp[i].u.s.ptr, q->tmp[i].u.s.len);
            e->it.v[i].u.s.ptr = s;
            s += q->tmp[i].u.s.len;
        }
    }
    return e;
}

static void pitem_free(struct query_exec *q, struct item *it)
{
    struct pitem *e = (struct pitem *)it;

    mem_release(q, e->bytes);
    free(e);
}

/* A matching row of a plain query with order_by: keep it if it is among the best. */
static enum run plain_collect(struct query_exec *q)
{
    const struct query_plan *p = q->p;
    struct item cand;
    struct pitem *e;

    for (uint32_t i = 0; i < q->nord; i++)
        q->tmp[i] = q->vals[p->order[i].ref.index];
    for (uint32_t i = 0; i < p->ncols; i++)
        q->tmp[q->nord + i] = q->vals[p->cols[i].ref.index];
    q->tmp_seq = q->st.rows_matched;
    if (q->want == QUERY_NO_LIMIT || q->nheap < q->want) {
        if (!(e = pitem_new(q)) || !items_push(q, &e->it)) {
            if (e)
                pitem_free(q, &e->it);
            return RUN_FAIL;
        }
        q->nheap = q->nitems;
        if (q->want != QUERY_NO_LIMIT)
            sift_up(q, q->items, q->nheap - 1, 1);
        return RUN_OK;
    }
    if (!q->want)
        return RUN_OK;
    cand.v = q->tmp;
    cand.seq = q->tmp_seq;
    if (item_cmp(q, &cand, q->items[0]) >= 0)
        return RUN_OK; /* not better than the worst kept */
    if (!(e = pitem_new(q)))
        return RUN_FAIL;
    pitem_free(q, q->items[0]);
    q->items[0] = &e->it;
    sift_down(q, q->items, q->nheap, 0, 1);
    return RUN_OK;
}

/* ------------------------------------------------------------------ */
/* Groups */

static size_t part_size(const struct value *v)
{
    if (v->is_null)
        return 1;
    switch (v->type) {
    case FIELD_BOOL:
        return 2;
    case FIELD_STRING:
    case FIELD_JSON:
        return 5 + (size_t)v->u.s.len;
    default:
        return 9;
    }
}

static uint8_t *part_put(uint8_t *p, const struct value *v)
{
    double f;

    *p++ = !v->is_null;
    if (v->is_null)
        return p;
    switch (v->type) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        memcpy(p, &v->u.i, 8);
        return p + 8;
    case FIELD_FLOAT64:
        f = v->u.f == 0 ? 0.0 : v->u.f;
        memcpy(p, &f, 8);
        return p + 8;
    case FIELD_BOOL:
        *p = v->u.b;
        return p + 1;
    case FIELD_STRING:
    case FIELD_JSON:
        memcpy(p, &v->u.s.len, 4);
        memcpy(p + 4, v->u.s.ptr, v->u.s.len);
        return p + 4 + v->u.s.len;
    }
    ST_BUG("value of unknown type %d", (int)v->type);
}

static const uint8_t *part_get(const uint8_t *p, enum field_type t, struct value *v)
{
    memset(v, 0, sizeof(*v));
    v->type = t;
    v->is_null = !*p++;
    if (v->is_null)
        return p;
    switch (t) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        memcpy(&v->u.i, p, 8);
        return p + 8;
    case FIELD_FLOAT64:
        memcpy(&v->u.f, p, 8);
        return p + 8;
    case FIELD_BOOL:
        v->u.b = *p;
        return p + 1;
    case FIELD_STRING:
    case FIELD_JSON:
        memcpy(&v->u.s.len, p, 4);
        v->u.s.ptr = (const char *)p + 4;
        return p + 4 + v->u.s.len;
    }
    ST_BUG("value of unknown type %d", (int)t);
}

/* Makes room for n bytes in the scratch key buffer. */
static void kbuf_reserve(struct query_exec *q, size_t n)
{
    if (n > q->kcap) {
        q->kcap = ST_MAX(n, 2 * q->kcap);
        q->kbuf = xrealloc(q->kbuf, q->kcap);
    }
}

/* The time bucket of ts: rounded down to a multiple of w (clamped at INT64_MIN). */
static void bucket_of(const struct value *ts, int64_t w, struct value *out)
{
    int64_t r;

    memset(out, 0, sizeof(*out));
    out->type = FIELD_TIMESTAMP;
    out->is_null = ts->is_null;
    if (ts->is_null)
        return;
    r = ts->u.i % w;
    if (r < 0)
        r += w;
    if (__builtin_sub_overflow(ts->u.i, r, &out->u.i))
        out->u.i = INT64_MIN;
}

/* The current row's group key into q->kbuf; returns its length. */
static size_t group_key(struct query_exec *q)
{
    const struct query_plan *p = q->p;
    struct value b;
    size_t n = 0;
    uint8_t *w;

    if (p->bucket.on)
        bucket_of(&q->vals[p->bucket.field], p->bucket.width_ms, &b);
    for (uint32_t i = 0; i < p->ngroup; i++)
        n += part_size(&q->vals[p->group[i]]);
    if (p->bucket.on)
        n += part_size(&b);
    kbuf_reserve(q, n ? n : 1);
    w = q->kbuf;
    for (uint32_t i = 0; i < p->ngroup; i++)
        w = part_put(w, &q->vals[p->group[i]]);
    if (p->bucket.on)
        w = part_put(w, &b);
    return n;
}

static bool table_grow(struct query_exec *q)
{
    size_t size = q->table_size ? 2 * q->table_size : 64;
    struct group **t;

    if (!mem_reserve(q, size * sizeof(*t)))
        return false;
    t = calloc_array(size, sizeof(*t));
    for (size_t i = 0; i < q->nitems; i++) {
        struct group *g = (struct group *)q->items[i];
        size_t at = g->hash & (size - 1);

        g->next = t[at];
        t[at] = g;
    }
    mem_release(q, q->table_size * sizeof(*t));
    free(q->table);
    q->table = t;
    q->table_size = size;
    return true;
}

#define GROUP_HDR ((sizeof(struct group) + 15) & ~(size_t)15)

/* A new group for key (len bytes, hash h), or NULL over the memory limit. */
static struct group *group_new(struct query_exec *q, const uint8_t *key, size_t len, uint64_t h)
{
    size_t aggs = q->p->naggs * sizeof(struct agg_state);
    struct group *g;

    if (q->nitems >= q->table_size && !table_grow(q))
        return NULL;
    if (!(g = arena_alloc(q, GROUP_HDR + aggs + len)))
        return NULL;
    memset(g, 0, GROUP_HDR + aggs);
    g->agg = (struct agg_state *)((char *)g + GROUP_HDR);
    g->key = (uint8_t *)g->agg + aggs;
    if (len)
        memcpy(g->key, key, len);
    g->key_len = (uint32_t)len;
    g->hash = h;
    g->id = (uint32_t)q->nitems;
    if (!items_push(q, &g->it))
        return NULL;
    g->next = q->table[h & (q->table_size - 1)];
    q->table[h & (q->table_size - 1)] = g;
    q->st.groups++;
    return g;
}

/* The current row's group, created if new; NULL over the memory limit. */
/* Equality of two short byte strings (group keys) without a call to memcmp(). */
static inline bool bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
    while (n >= 8) {
        uint64_t x, y;

        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y)
            return false;
        a += 8;
        b += 8;
        n -= 8;
    }
    while (n--)
        if (*a++ != *b++)
            return false;
    return true;
}

static struct group *group_find(struct query_exec *q)
{
    size_t len;
    uint64_t h;

    if (!q->nkeys) {
        if (!q->single)
            q->single = group_new(q, NULL, 0, 0);
        return q->single;
    }
    len = group_key(q);
    /* Rows in key order often repeat the last group (time buckets do). */
    if (q->last && q->last->key_len == len && bytes_eq(q->last->key, q->kbuf, len))
        return q->last;
    h = key_hash(q->kbuf, len);
    if (q->table) {
        for (struct group *g = q->table[h & (q->table_size - 1)]; g; g = g->next)
            if (g->hash == h && g->key_len == len && bytes_eq(g->key, q->kbuf, len))
                return q->last = g;
    }
    return q->last = group_new(q, q->kbuf, len, h);
}

static bool dset_grow(struct query_exec *q)
{
    size_t size = q->dset_size ? 2 * q->dset_size : 256;
    struct dent **t;

    if (!mem_reserve(q, size * sizeof(*t)))
        return false;
    t = calloc_array(size, sizeof(*t));
    for (size_t i = 0; i < q->dset_size; i++) {
        struct dent *d = q->dset[i];
        size_t at;

        if (!d)
            continue;
        for (at = d->hash & (size - 1); t[at]; at = (at + 1) & (size - 1))
            ;
        t[at] = d;
    }
    mem_release(q, q->dset_size * sizeof(*t));
    free(q->dset);
    q->dset = t;
    q->dset_size = size;
    return true;
}

/*
 * Adds v to the distinct values of aggregate a of group g. *added says
 * whether it was new. False over the memory limit.
 */
static bool dset_add(struct query_exec *q, const struct group *g, uint32_t a, const struct value *v,
                     bool *added)
{
    size_t len = 8 + part_size(v), at;
    uint64_t h;
    struct dent *d;

    *added = false;
    if (2 * (q->dset_n + 1) > q->dset_size && !dset_grow(q))
        return false;
    kbuf_reserve(q, len);
    memcpy(q->kbuf, &g->id, 4);
    memcpy(q->kbuf + 4, &a, 4);
    part_put(q->kbuf + 8, v);
    h = key_hash(q->kbuf, len);
    for (at = h & (q->dset_size - 1); (d = q->dset[at]); at = (at + 1) & (q->dset_size - 1))
        if (d->hash == h && d->len == len && !memcmp(d->bytes, q->kbuf, len))
            return true;
    if (!(d = arena_alloc(q, sizeof(*d) + len)))
        return false;
    d->hash = h;
    d->len = (uint32_t)len;
    memcpy(d->bytes, q->kbuf, len);
    q->dset[at] = d;
    q->dset_n++;
    *added = true;
    return true;
}

/* Keeps v (not null) as the min or max of s; false over the memory limit. */
static bool agg_keep(struct query_exec *q, struct agg_state *s, const struct value *v)
{
    s->u.v = *v;
    if (!has_string(v))
        return true;
    if (!s->buf || v->u.s.len > s->cap) {
        uint32_t cap = ST_MAX(v->u.s.len, 16u);

        if (!mem_reserve(q, cap))
            return false;
        mem_release(q, s->cap);
        free(s->buf);
        s->buf = xmalloc(cap);
        s->cap = cap;
    }
    memcpy(s->buf, v->u.s.ptr, v->u.s.len);
    s->u.v.u.s.ptr = s->buf;
    return true;
}

static bool agg_update(struct query_exec *q, struct group *g, uint32_t a)
{
    const struct query_agg *ag = &q->p->aggs[a];
    struct agg_state *s = &g->agg[a];
    const struct value *v;
    bool added;
    int c;

    if (ag->field < 0) {
        s->n++;
        return true;
    }
    v = &q->vals[ag->field];
    if (v->is_null)
        return true;
    switch (ag->fn) {
    case QUERY_AGG_COUNT:
        break;
    case QUERY_AGG_SUM:
    case QUERY_AGG_AVG:
        if (v->type == FIELD_INT64)
            s->u.isum += v->u.i;
        else
            s->u.fsum += v->u.f;
        break;
    case QUERY_AGG_MIN:
    case QUERY_AGG_MAX:
        c = s->n ? cmp_value(v, &s->u.v) : 0;
        if ((!s->n || (ag->fn == QUERY_AGG_MIN ? c < 0 : c > 0)) && !agg_keep(q, s, v))
            return false;
        break;
    case QUERY_AGG_COUNT_DISTINCT:
        if (!dset_add(q, g, a, v, &added))
            return false;
        if (!added)
            return true;
        break;
    }
    s->n++;
    return true;
}

/* A matching row of a grouped query. */
static enum run group_row(struct query_exec *q)
{
    struct group *g = group_find(q);

    if (!g)
        return RUN_FAIL;
    for (uint32_t a = 0; a < q->p->naggs; a++)
        if (!agg_update(q, g, a))
            return RUN_FAIL;
    return RUN_OK;
}

static void agg_final(const struct query_exec *q, const struct group *g, uint32_t a,
                      struct value *out)
{
    const struct query_agg *ag = &q->p->aggs[a];
    const struct agg_state *s = &g->agg[a];
    enum field_type ft = ag->field >= 0 ? q->cur->fields[ag->field].type : FIELD_INT64;

    memset(out, 0, sizeof(*out));
    switch (ag->fn) {
    case QUERY_AGG_COUNT:
    case QUERY_AGG_COUNT_DISTINCT:
        out->type = FIELD_INT64;
        out->u.i = (int64_t)s->n;
        return;
    case QUERY_AGG_SUM:
        out->type = ft;
        out->is_null = !s->n;
        if (!s->n)
            return;
        if (ft == FIELD_FLOAT64)
            out->u.f = s->u.fsum;
        else if (s->u.isum >= INT64_MIN && s->u.isum <= INT64_MAX)
            out->u.i = (int64_t)s->u.isum;
        else {
            out->type = FIELD_FLOAT64;
            out->u.f = (double)s->u.isum;
        }
        return;
    case QUERY_AGG_AVG:
        out->type = FIELD_FLOAT64;
        out->is_null = !s->n;
        if (s->n)
            out->u.f = (ft == FIELD_FLOAT64 ? s->u.fsum : (double)s->u.isum) / (double)s->n;
        return;
    case QUERY_AGG_MIN:
    case QUERY_AGG_MAX:
        if (s->n) {
            *out = s->u.v;
        } else {
            out->type = ft;
            out->is_null = true;
        }
        return;
    }
    ST_BUG("aggregate %d", (int)ag->fn);
}

/* Fills a group's result slots: key values, then aggregates. */
static bool group_finalize(struct query_exec *q, struct group *g)
{
    const struct query_plan *p = q->p;
    const uint8_t *k = g->key;
    struct value *v = arena_alloc(q, q->nslots * sizeof(*v));

    if (!v)
        return false;
    for (uint32_t i = 0; i < p->ngroup; i++)
        k = part_get(k, q->cur->fields[p->group[i]].type, &v[i]);
    if (p->bucket.on)
        k = part_get(k, FIELD_TIMESTAMP, &v[p->ngroup]);
    st_assert(k == g->key + g->key_len);
    for (uint32_t a = 0; a < p->naggs; a++)
        agg_final(q, g, a, &v[q->nkeys + a]);
    g->it.v = v;
    return true;
}

/* ------------------------------------------------------------------ */
/* The phases */

static struct rowmap *map_for(struct query_exec *q, const struct schema *s)
{
    if (q->nmaps && q->maps[q->last_map].s == s)
        return &q->maps[q->last_map];
    for (uint32_t i = 0; i < q->nmaps; i++) {
        if (q->maps[i].s == s) {
            q->last_map = i;
            return &q->maps[i];
        }
    }
    q->maps = realloc_array(q->maps, q->nmaps + 1, sizeof(*q->maps));
    rowmap_build(&q->maps[q->nmaps], s, q->cur, q->need, q->nneed);
    q->last_map = q->nmaps++;
    return &q->maps[q->last_map];
}

/* Where SCAN goes once the source is exhausted. */
static void scan_done(struct query_exec *q)
{
    if (q->plain && !q->sorted) {
        q->phase = PH_DONE;
        return;
    }
    if (q->plain) {
        q->st.more = q->st.rows_matched > q->want;
        q->phase = PH_HEAPIFY;
        q->nheap = q->nitems;
        q->heapify_at = q->nheap / 2;
        return;
    }
    q->phase = PH_FINALIZE;
}

static enum run run_scan(struct query_exec *q, uint64_t *budget)
{
    while (*budget) {
        const void *row;
        const struct schema *s;
        enum run r;

        if (!q->src.next(q->src.ctx, &row, &s)) {
            if (q->src.status && q->src.status(q->src.ctx, &q->err) != ST_OK) {
                if (q->err.code == ST_OK)
                    err_set(&q->err, ST_EIO, "query source failed");
                return RUN_FAIL;
            }
            if (!q->plain && !q->nkeys && !q->single && !group_find(q))
                return RUN_FAIL; /* aggregates only: one row even over no rows */
            scan_done(q);
            return RUN_OK;
        }
        (*budget)--;
        q->st.rows_scanned++;
        rowmap_read(map_for(q, s), q->cur, row, q->vals);
        if (q->p->where && eval(q->p->where, q->vals) != TV_TRUE)
            continue;
        q->st.rows_matched++;
        q->src_row = row;
        q->src_schema = s;
        if (!q->plain)
            r = group_row(q);
        else if (q->sorted)
            r = plain_collect(q);
        else
            r = plain_stream(q);
        if (r != RUN_OK || q->phase != PH_SCAN)
            return r;
    }
    return RUN_OK;
}

static enum run run_finalize(struct query_exec *q, uint64_t *budget)
{
    while (*budget && q->finalize_at < q->nitems) {
        (*budget)--;
        if (!group_finalize(q, (struct group *)q->items[q->finalize_at++]))
            return RUN_FAIL;
    }
    if (q->finalize_at == q->nitems) {
        q->st.more = q->nitems > q->want;
        q->phase = PH_HEAPIFY;
        q->nheap = q->nitems;
        q->heapify_at = q->nheap / 2;
    }
    return RUN_OK;
}

static enum run run_heapify(struct query_exec *q, uint64_t *budget)
{
    while (*budget && q->heapify_at > 0) {
        (*budget)--;
        sift_down(q, q->items, q->nheap, --q->heapify_at, -1);
    }
    if (!q->heapify_at)
        q->phase = PH_EMIT;
    return RUN_OK;
}

static enum run run_emit(struct query_exec *q, uint64_t *budget)
{
    while (*budget) {
        struct item *it;
        const struct value *vals;
        enum run r;

        if (!q->nheap || rows_out(q) >= q->want) {
            q->phase = PH_DONE;
            return RUN_OK;
        }
        (*budget)--;
        it = q->items[0];
        q->items[0] = q->items[--q->nheap];
        q->items[q->nheap] = it;
        sift_down(q, q->items, q->nheap, 0, -1);
        if (q->plain) {
            vals = it->v + q->nord;
        } else {
            for (uint32_t i = 0; i < q->p->ncols; i++)
                q->out[i] = it->v[q->col_slot[i]];
            vals = q->out;
        }
        r = emit_row(q, vals, NULL, NULL);
        if (q->plain) {
            q->items[q->nheap] = NULL;
            pitem_free(q, it);
        }
        if (r != RUN_OK)
            return r;
    }
    return RUN_OK;
}

enum query_step_result query_step(struct query_exec *q, uint64_t budget, struct err *err)
{
    st_assert(budget >= 1);
    while (budget && q->phase != PH_DONE && q->phase != PH_FAILED) {
        enum run r = RUN_OK;

        switch (q->phase) {
        case PH_SCAN:
            r = run_scan(q, &budget);
            break;
        case PH_FINALIZE:
            r = run_finalize(q, &budget);
            break;
        case PH_HEAPIFY:
            r = run_heapify(q, &budget);
            break;
        case PH_EMIT:
            r = run_emit(q, &budget);
            break;
        case PH_DONE:
        case PH_FAILED:
            break;
        }
        if (r == RUN_FAIL)
            q->phase = PH_FAILED;
        if (r == RUN_PAUSE)
            break;
    }
    /* A phase that used the last unit may have left nothing to do. */
    if (q->phase == PH_EMIT && (!q->nheap || rows_out(q) >= q->want))
        q->phase = PH_DONE;
    if (q->phase == PH_FAILED) {
        if (err)
            *err = q->err;
        return QUERY_ERROR;
    }
    return q->phase == PH_DONE ? QUERY_DONE : QUERY_MORE;
}

/* ------------------------------------------------------------------ */
/* Setting up */

static uint32_t slot_of(const struct query_exec *q, const struct query_ref *r)
{
    const struct query_plan *p = q->p;

    switch (r->kind) {
    case QUERY_REF_FIELD:
        for (uint32_t i = 0; i < p->ngroup; i++)
            if (p->group[i] == r->index)
                return i;
        break;
    case QUERY_REF_BUCKET:
        return p->ngroup;
    case QUERY_REF_AGG:
        return q->nkeys + r->index;
    }
    ST_BUG("reference to a value the groups do not hold");
}

static void need_node(const struct query_node *n, bool *need)
{
    if (n->kind == QUERY_NODE_PRED)
        need[n->field] = true;
    for (uint32_t i = 0; i < n->nkids; i++)
        need_node(&n->kids[i], need);
}

void query_plan_fields(const struct query_plan *p, bool *need)
{
    memset(need, 0, p->schema->nfields * sizeof(*need));
    if (p->where)
        need_node(p->where, need);
    for (uint32_t i = 0; i < p->ncols; i++)
        if (p->cols[i].ref.kind == QUERY_REF_FIELD)
            need[p->cols[i].ref.index] = true;
    for (uint32_t i = 0; i < p->norder; i++)
        if (p->order[i].ref.kind == QUERY_REF_FIELD)
            need[p->order[i].ref.index] = true;
    for (uint32_t i = 0; i < p->ngroup; i++)
        need[p->group[i]] = true;
    if (p->bucket.on)
        need[p->bucket.field] = true;
    for (uint32_t i = 0; i < p->naggs; i++)
        if (p->aggs[i].field >= 0)
            need[p->aggs[i].field] = true;
}

static void need_fields(struct query_exec *q)
{
    bool *need = calloc_array(q->cur->nfields ? q->cur->nfields : 1, sizeof(*need));

    query_plan_fields(q->p, need);
    q->need = calloc_array(q->cur->nfields, sizeof(*q->need));
    for (uint32_t j = 0; j < q->cur->nfields; j++)
        if (need[j])
            q->need[q->nneed++] = j;
    free(need);
}

struct query_exec *query_exec_new(const struct query_plan *plan, const struct query_source *src,
                                  const struct query_exec_opts *opts, query_emit_fn emit, void *ctx)
{
    struct query_exec *q = xcalloc(1, sizeof(*q));
    const struct query_plan *p = plan;

    st_assert(src && src->next && emit);
    q->p = p;
    q->cur = p->schema;
    q->src = *src;
    q->emit = emit;
    q->ctx = ctx;
    if (opts)
        q->opts = *opts;
    if (!q->opts.mem_limit)
        q->opts.mem_limit = QUERY_DEFAULT_MEM_LIMIT;
    q->want = p->limit > QUERY_NO_LIMIT - q->opts.skip ? QUERY_NO_LIMIT : p->limit + q->opts.skip;
    q->plain = !p->grouped;
    q->sorted = q->plain && p->norder;
    need_fields(q);
    q->vals = calloc_array(q->cur->nfields, sizeof(*q->vals));
    q->out = calloc_array(p->ncols, sizeof(*q->out));
    q->nord = p->norder;
    q->ord_slot = calloc_array(p->norder ? p->norder : 1, sizeof(*q->ord_slot));
    q->ord_desc = calloc_array(p->norder ? p->norder : 1, sizeof(*q->ord_desc));
    q->col_slot = calloc_array(p->ncols, sizeof(*q->col_slot));
    if (q->plain) {
        q->nslots = p->norder + p->ncols;
        for (uint32_t i = 0; i < p->norder; i++)
            q->ord_slot[i] = i;
        for (uint32_t i = 0; i < p->ncols; i++)
            q->col_slot[i] = p->norder + i;
        q->tmp = calloc_array(q->nslots, sizeof(*q->tmp));
    } else {
        q->nkeys = p->ngroup + (p->bucket.on ? 1 : 0);
        q->nslots = q->nkeys + p->naggs;
        q->ntie = q->nkeys;
        for (uint32_t i = 0; i < p->norder; i++)
            q->ord_slot[i] = slot_of(q, &p->order[i].ref);
        for (uint32_t i = 0; i < p->ncols; i++)
            q->col_slot[i] = slot_of(q, &p->cols[i].ref);
    }
    for (uint32_t i = 0; i < p->norder; i++)
        q->ord_desc[i] = p->order[i].desc;
    q->phase = PH_SCAN;
    if (q->plain && !q->sorted && q->want == 0) {
        if (q->opts.lookahead)
            q->looking = true;
        else
            q->phase = PH_DONE;
        q->st.more = !q->opts.lookahead;
    }
    return q;
}

void query_exec_get_stats(const struct query_exec *q, struct query_stats *out)
{
    *out = q->st;
}

void query_exec_free(struct query_exec *q)
{
    if (!q)
        return;
    if (q->plain) {
        for (size_t i = 0; i < q->nitems; i++)
            if (q->items[i])
                pitem_free(q, q->items[i]);
    } else {
        for (size_t i = 0; i < q->nitems; i++) {
            struct group *g = (struct group *)q->items[i];

            for (uint32_t a = 0; a < q->p->naggs; a++)
                free(g->agg[a].buf);
        }
    }
    while (q->arena) {
        struct arena_chunk *c = q->arena;

        q->arena = c->next;
        free(c);
    }
    for (uint32_t i = 0; i < q->nmaps; i++)
        rowmap_release(&q->maps[i]);
    free(q->maps);
    free(q->items);
    free(q->table);
    free(q->dset);
    free(q->kbuf);
    free(q->need);
    free(q->vals);
    free(q->out);
    free(q->tmp);
    free(q->ord_slot);
    free(q->ord_desc);
    free(q->col_slot);
    free(q);
}

enum st_status query_run(const struct query_plan *plan, const struct query_source *src,
                         const struct query_exec_opts *opts, query_emit_fn emit, void *ctx,
                         struct query_stats *stats, struct err *err)
{
    struct query_exec *q = query_exec_new(plan, src, opts, emit, ctx);
    enum query_step_result r;
    enum st_status rc = ST_OK;

    while ((r = query_step(q, 4096, err)) == QUERY_MORE)
        ;
    if (r == QUERY_ERROR)
        rc = q->err.code;
    if (stats)
        query_exec_get_stats(q, stats);
    query_exec_free(q);
    return rc;
}
