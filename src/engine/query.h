/*
 * Queries: the plan a query becomes once parsed and checked, the bounds
 * the storage layer can use to skip data, and the executor.
 *
 * A plan is built against one schema (the table's newest; the caller keeps
 * it alive while the plan and its executions live) by src/api's parser,
 * which checks everything a client can get wrong and names the offending
 * part of the JSON. This header has no JSON in it: the engine executes a
 * plan without jansson. Building a plan by hand (tests) follows the same
 * rules; query_plan_finish() asserts them.
 *
 * Semantics (API.md, "Reads > Query"):
 * - Filters use SQL's three-valued logic: a comparison, `in`, `prefix` or
 *   `contains` on a null value is unknown; `not` of unknown is unknown;
 *   `and` is false when any operand is false, `or` true when any is true;
 *   only rows whose filter is true pass. `is_null` is never unknown.
 * - Values compare within their type: numbers by value (an int64 and a
 *   float64 compare exactly, without rounding either), timestamps as
 *   epoch milliseconds, bools false < true, strings by their UTF-8 bytes
 *   (memcmp, then the shorter first), which is code point order.
 * - Aggregates ignore nulls; `count` without a field counts rows. Over no
 *   values: count and count_distinct give 0, the others null. Sums of
 *   int64 are exact: they are accumulated in a 128-bit integer (no
 *   overflow is possible below 2^64 rows), and the result is an int64
 *   whenever it fits; only a total outside int64 falls back to the
 *   nearest float64 (the one inexact case, documented in docs/api.md).
 *   Sums of float64 add doubles in primary-key order. avg is the exact
 *   sum converted to double, divided by the count in double.
 *   count_distinct is exact (a hash set of the values; 0.0 and -0.0 are
 *   one value).
 * - group_by keeps a group whose key is null. time_bucket rounds a
 *   timestamp down to a multiple of its width counted from the epoch
 *   (floor division, so also before 1970; widths in days are UTC days).
 * - order_by sorts ascending with nulls last, descending with nulls first
 *   (the exact reverse). Ties keep primary-key order for plain rows; for
 *   groups, ties (and the order without order_by) are the group keys
 *   ascending, nulls last. So the order is total and a top-k with a limit
 *   is exactly the prefix of the full sort.
 * - Without order_by plain rows come in the order of the row source,
 *   which is primary-key order.
 *
 * Memory: an execution holds at most the plan's state (groups, distinct
 * sets, sorted rows: the top `limit` rows with a limit, all with none)
 * and fails with ST_ENOMEM "query needs more than N bytes of memory" when
 * that exceeds opts.mem_limit. A plain query without order_by holds
 * nothing but one row's values.
 */
#ifndef ST_ENGINE_QUERY_H
#define ST_ENGINE_QUERY_H

#include "engine/schema.h"
#include "util/status.h"

#define QUERY_DEFAULT_LIMIT     1000u                 /* rows when the query gives no limit */
#define QUERY_NO_LIMIT          UINT64_MAX            /* plan.limit: no row cap */
#define QUERY_MAX_DEPTH         32                    /* where: and/or/not nested at most */
#define QUERY_DEFAULT_MEM_LIMIT ((size_t)64 << 20)    /* opts.mem_limit default */
#define QUERY_MAX_BUCKET_MS     (100000LL * 86400000) /* widest time_bucket: 100000d */

/* ------------------------------------------------------------------ */
/* Plans */

enum query_op {
    QUERY_OP_EQ,       /* =  */
    QUERY_OP_NE,       /* != */
    QUERY_OP_LT,       /* <  */
    QUERY_OP_LE,       /* <= */
    QUERY_OP_GT,       /* >  */
    QUERY_OP_GE,       /* >= */
    QUERY_OP_IN,       /* one of a list */
    QUERY_OP_PREFIX,   /* string starts with */
    QUERY_OP_CONTAINS, /* string contains */
    QUERY_OP_IS_NULL,  /* is null (never unknown) */
};

/* "=", "in", ... as in the API; "unknown" for anything else. */
const char *query_op_name(enum query_op op);
/* Parses an operator name; false if unknown. */
bool query_op_parse(const char *name, enum query_op *out);

enum query_node_kind {
    QUERY_NODE_PRED, /* field op literal */
    QUERY_NODE_AND,  /* all of kids (none: true) */
    QUERY_NODE_OR,   /* any of kids (none: false) */
    QUERY_NODE_NOT,  /* the negation of kids[0] */
};

/*
 * One node of a filter. Literals are owned by the plan: their strings
 * are malloc'd copies freed by query_plan_free(). Literal types:
 *   int64 and float64 fields  int64 or float64 (either, any mix; compared
 *                             by value); query_plan_finish() turns a
 *                             literal into the field's type when that is
 *                             exact
 *   timestamp                 timestamp (epoch ms)
 *   bool, string              the field's type
 *   json                      none: only is_null applies
 * prefix and contains take a string field and literal.
 */
struct query_node {
    enum query_node_kind kind; /* what this node is */
    enum query_op op;          /* PRED: the operator */
    uint32_t field;            /* PRED: field index in the plan's schema */
    struct value lit;          /* PRED: the literal (not for in, is_null) */
    struct value *list;        /* PRED in: nlist literals (after finish:
                                * of the field's type, sorted, distinct;
                                * entries that can equal no value dropped) */
    uint32_t nlist;            /* entries in list; at least 1 when parsed */
    struct query_node *kids;   /* AND/OR: nkids nodes; NOT: one */
    uint32_t nkids;            /* entries in kids */
};

/* What a column, an order key or a select entry refers to. */
enum query_ref_kind {
    QUERY_REF_FIELD,  /* a field of the schema (grouped: a group_by field) */
    QUERY_REF_BUCKET, /* the time bucket */
    QUERY_REF_AGG,    /* an aggregate */
};

struct query_ref {
    enum query_ref_kind kind; /* what it refers to */
    uint32_t index;           /* FIELD: field index; AGG: index in aggs */
};

enum query_agg_fn {
    QUERY_AGG_COUNT,
    QUERY_AGG_SUM,
    QUERY_AGG_MIN,
    QUERY_AGG_MAX,
    QUERY_AGG_AVG,
    QUERY_AGG_COUNT_DISTINCT,
};

/* "count", "sum", ...; "unknown" for anything else. */
const char *query_agg_name(enum query_agg_fn fn);
/* Parses an aggregate function name; false if unknown. */
bool query_agg_parse(const char *name, enum query_agg_fn *out);

/*
 * An aggregate. Allowed field types: count any (or no field: rows);
 * sum and avg int64, float64; min, max and count_distinct any but json.
 * Results: count, count_distinct int64; sum the field's type (int64, or
 * float64 beyond int64); avg float64; min, max the field's type.
 */
struct query_agg {
    enum query_agg_fn fn;     /* the function */
    int32_t field;            /* field index, or -1 (count only) */
    char as[SCHEMA_NAME_MAX]; /* its column name */
};

struct query_bucket {
    bool on;                  /* the query has a time_bucket */
    uint32_t field;           /* a timestamp field */
    int64_t width_ms;         /* 1 to QUERY_MAX_BUCKET_MS */
    char as[SCHEMA_NAME_MAX]; /* its column name */
};

struct query_col {
    char name[SCHEMA_NAME_MAX]; /* key in the result rows */
    struct query_ref ref;       /* its value */
};

struct query_order {
    struct query_ref ref; /* grouped: a group_by field, the bucket or an
                           * aggregate; plain: any field but json */
    bool desc;            /* descending (nulls first) */
};

/* Primary-key bounds derived from the filter (see query_plan_finish()). */
struct query_key_range {
    bool empty;    /* no key can match: nothing to read */
    bool point;    /* all key fields are fixed: lo is the one key, and
                    * hi == lo with hi_incl (a point lookup) */
    uint8_t *lo;   /* inclusive lower bound (key.h encoding), or NULL */
    size_t lo_len; /* its length */
    uint8_t *hi;   /* upper bound, or NULL; exclusive unless hi_incl */
    size_t hi_len; /* its length */
    bool hi_incl;  /* hi itself included (point lookups only) */
};

/* Time-field bounds derived from the filter. */
struct query_time_range {
    bool bounded; /* only rows whose time field is non-null and within
                   * [lo, hi] can match */
    bool empty;   /* no row can match */
    int64_t lo;   /* inclusive, ms; INT64_MIN when only an upper bound */
    int64_t hi;   /* inclusive, ms; INT64_MAX when only a lower bound */
};

/*
 * A query. A query is grouped when it has group_by fields, a time bucket
 * or aggregates; then it yields one row per group (one row in all when it
 * has aggregates only, even over no rows), and its columns refer to
 * group_by fields, the bucket and aggregates. Otherwise it yields the
 * rows that pass the filter, and its columns are fields.
 *
 * Owned by the plan, freed by query_plan_free(): where (recursively),
 * cols, group, aggs, order, and the ranges' bounds. Everything is
 * allocated with malloc.
 */
struct query_plan {
    const struct schema *schema; /* the table's newest schema (borrowed) */
    struct query_node *where;    /* the filter, or NULL: every row */
    struct query_col *cols;      /* ncols result columns, in order */
    uint32_t ncols;              /* at least 1 */
    uint32_t *group;             /* ngroup group_by field indexes */
    uint32_t ngroup;             /* entries in group */
    struct query_bucket bucket;  /* the time bucket, if on */
    struct query_agg *aggs;      /* naggs aggregates */
    uint32_t naggs;              /* entries in aggs */
    struct query_order *order;   /* norder order_by keys */
    uint32_t norder;             /* entries in order */
    uint64_t limit;              /* rows at most, or QUERY_NO_LIMIT */
    /* Set by query_plan_finish(): */
    bool grouped;                 /* group_by, bucket or aggregates */
    struct query_key_range keys;  /* primary-key bounds */
    struct query_time_range time; /* time-field bounds */
};

/* A new empty plan for schema (borrowed), limit QUERY_NO_LIMIT. */
struct query_plan *query_plan_new(const struct schema *schema);
/* Frees p and everything it owns; p may be NULL. */
void query_plan_free(struct query_plan *p);

/*
 * Completes a plan once its parts are set: normalises literals (exact
 * conversions to the field's type; in-lists sorted and made distinct),
 * sets grouped, and derives the key and time ranges from the filter.
 * Asserts the rules above (a violation is a bug in the builder).
 *
 * The ranges come from the top-level conjunction only (nested `and`s
 * flattened); `or` and `not` contribute nothing, so the bounds may be
 * wider than the filter but never narrower: rows outside them cannot
 * match, rows inside them still go through the filter.
 * Key range: `=` (or a one-value `in`) on every key field is a point
 * lookup; equalities on leading key fields, then `<`, `<=`, `>`, `>=`,
 * `in` (its min and max) or `prefix` (string) on the next key field, give
 * a key range. Time range: `=`, `<`, `<=`, `>`, `>=`, `in` on the
 * schema's time_field, intersected.
 */
void query_plan_finish(struct query_plan *p);

/*
 * The fields of p->schema the query reads (filter, columns, order,
 * groups, bucket, aggregates): need[i] for field i (p->schema->nfields
 * entries). A row source may leave the others out (null).
 */
void query_plan_fields(const struct query_plan *p, bool *need /* OUT */);

/* ------------------------------------------------------------------ */
/* Execution */

/*
 * Where rows come from: next() gives the next row (schema.h format) and
 * the schema version it was written under, in primary-key order, visible
 * at the query's snapshot, deletes removed; false at the end. Rows and
 * schemas must stay valid until the following next() call (schemas:
 * until the execution is freed). When next() returns false, status() (if
 * not NULL) says whether the source ended or failed; a failure fails the
 * query with that status and message.
 */
struct query_source {
    bool (*next)(void *ctx, const void **row, const struct schema **schema);
    enum st_status (*status)(void *ctx, struct err *err);
    void *ctx; /* passed to both */
};

/* One result row, valid only during the emit callback. */
struct query_row {
    const struct value *vals;        /* plan->ncols values, column order;
                                      * strings borrowed */
    uint32_t ncols;                  /* plan->ncols */
    const void *row;                 /* plain queries without order_by:
                                      * the source row (to build a
                                      * cursor from its key); else NULL */
    const struct schema *row_schema; /* its schema, or NULL */
};

/*
 * Receives each result row. Returns ST_OK to go on, ST_EAGAIN to pause
 * after this row (it was taken; query_step() returns QUERY_MORE at once:
 * backpressure), anything else to fail the query with that status and
 * the message it set in err.
 */
typedef enum st_status (*query_emit_fn)(void *ctx, const struct query_row *row, struct err *err);

struct query_exec_opts {
    size_t mem_limit; /* bytes of state; 0: QUERY_DEFAULT_MEM_LIMIT */
    uint64_t skip;    /* result rows to leave out before the first one
                       * emitted (an offset, for paging); the limit
                       * counts after them */
    bool lookahead;   /* plain queries without order_by: after the
                       * limit, read on until one more row matches, so
                       * that stats.more is exact (see there) */
};

struct query_stats {
    uint64_t rows_scanned; /* rows the source gave */
    uint64_t rows_matched; /* of which passed the filter */
    uint64_t rows_emitted; /* result rows emitted */
    uint64_t groups;       /* groups formed */
    size_t mem_peak;       /* most bytes of state held at once */
    bool more;             /* the limit cut the result: at least one more
                            * row would follow (for a plain query without
                            * order_by and without opts.lookahead: the
                            * limit was reached, more rows may follow) */
};

enum query_step_result {
    QUERY_DONE,  /* finished: every row emitted */
    QUERY_MORE,  /* the step's budget ran out or emit paused: call again */
    QUERY_ERROR, /* failed: err says why; calling again repeats it */
};

struct query_exec;

/*
 * An execution of plan (finished; borrowed, as are src's context and the
 * schemas) reading src and emitting through emit(ctx, ...). opts may be
 * NULL. Does no work until query_step(). Free with query_exec_free().
 */
struct query_exec *query_exec_new(const struct query_plan *plan, const struct query_source *src,
                                  const struct query_exec_opts *opts, query_emit_fn emit,
                                  void *ctx);

/*
 * Runs the query for about `budget` units of work (budget >= 1): one unit
 * per row read from the source, per group finalised, per heap node
 * ordered and per row emitted, so a step's time is bounded whatever the
 * query and the caller can go back to its event loop in between.
 * Returns QUERY_MORE, QUERY_DONE or QUERY_ERROR (err set: ST_ENOMEM over
 * the memory limit, or the source's or emit's failure).
 */
enum query_step_result query_step(struct query_exec *q, uint64_t budget, struct err *err);

/* The statistics so far. */
void query_exec_get_stats(const struct query_exec *q, struct query_stats *out);

/* Frees q; q may be NULL. */
void query_exec_free(struct query_exec *q);

/*
 * Runs a whole query in one go (query_exec_new(), query_step() until it
 * is done, query_exec_free()); stats may be NULL. For tests and small
 * queries off the event loop.
 */
enum st_status query_run(const struct query_plan *plan, const struct query_source *src,
                         const struct query_exec_opts *opts, query_emit_fn emit, void *ctx,
                         struct query_stats *stats, struct err *err);

/*
 * The value a field of the newest schema `cur` has in a row written under
 * row_schema: the same-named field's value, int64 widened to float64 when
 * the field was widened, else the field's default (or null) when the row's
 * version lacks it or holds another type or a null the field no longer
 * allows (api_record_value() does the same for answers). Strings borrow
 * the row (or cur's defaults).
 */
void query_row_value(const struct schema *row_schema, const void *row, const struct schema *cur,
                     uint32_t field, struct value *out /* OUT */);

#endif
