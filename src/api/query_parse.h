/*
 * query_parse: the JSON body of POST /v1/tenants/{tenant}/query to a
 * checked plan (engine/query.h) that the engine executes without JSON.
 *
 * Every mistake a client can make is found here, before execution, and
 * reported as ST_EINVAL (answer 400 invalid_query) with a message that
 * starts with the JSON path of the offending part, in git's style:
 *   "where.and[1].value: expected a string for string field 'origin', got integer"
 *   "select[2]: unknown field 'foo'"
 *   "order_by[0].field: 'x' is neither a group_by field nor an aggregate"
 * Unknown members, unknown fields, literals that do not fit the field's
 * type, operators that do not apply to the field's type, aggregates over
 * the wrong types, selected fields that are not grouped, duplicate column
 * names and bad time_bucket widths are all refused.
 *
 * The body (API.md, "Reads > Query"):
 *   table        the table's name (query_parse_table(); the caller looks
 *                it up: an unknown table is also 400 invalid_query,
 *                "table: unknown table 'x'")
 *   select       field names. Plain queries: the columns, in order;
 *                absent: every field of the newest schema. Grouped
 *                queries: group_by fields, the bucket's or aggregates'
 *                names, or the field of one or more aggregates (which
 *                selects those aggregates' columns at that place, as
 *                "delay" selects avg_delay in API.md's example); the
 *                columns are the select list, then the bucket and every
 *                aggregate it does not name; absent: every group_by
 *                field, the bucket, every aggregate. A field that is
 *                neither grouped nor aggregated is refused ("select[1]:
 *                'x' is neither a group_by field nor an aggregate").
 *   where        a predicate {"field", "op", "value"} or {"and": [...]},
 *                {"or": [...]}, {"not": {...}}, nested at most
 *                QUERY_MAX_DEPTH deep. Values: int64 and float64 fields
 *                take any JSON number; timestamp fields an RFC 3339
 *                string or integer epoch milliseconds; bool fields
 *                true/false; string fields strings; json fields only
 *                is_null. "in" takes a non-empty array of such values,
 *                prefix and contains a string on a string field, is_null
 *                no value. A null literal is refused (use is_null).
 *   group_by     field names (not json), distinct
 *   time_bucket  {"field": a timestamp field, "width": "<n>s|m|h|d"
 *                (at most 100000d), "as": its column name (default: the
 *                field's name)}
 *   aggregates   [{"fn": count|sum|min|max|avg|count_distinct, "field",
 *                "as" (default "count" for a count of rows, else
 *                "<fn>_<field>")}]
 *   order_by     ["name", or {"field": "name", "dir": "asc"|"desc"}]:
 *                plain queries any field but json; grouped queries a
 *                group_by field, the bucket or an aggregate
 *   limit        an integer >= 0; default QUERY_DEFAULT_LIMIT, capped by
 *                opts->max_rows (limits.max_query_rows); a streamed
 *                (NDJSON) answer has no default and no cap
 *   cursor       a string or null (passed back to the caller)
 *   as_of        a version, an integer >= 0, or null
 * Any optional member may be null, meaning absent.
 */
#ifndef ST_API_QUERY_PARSE_H
#define ST_API_QUERY_PARSE_H

#include "engine/query.h"

struct json_t;

struct query_parse_opts {
    uint64_t max_rows; /* limits.max_query_rows: the cap on limit; 0: none */
    bool stream;       /* a streamed answer: no default limit, no cap */
};

struct query_parse_result {
    struct query_plan *plan; /* the finished plan; query_parse_result_release() */
    bool has_as_of;          /* as_of was given */
    uint64_t as_of;          /* the snapshot version asked for */
    const char *cursor;      /* the cursor text, borrowed from the body, or NULL */
};

/*
 * The "table" member of body (a JSON object): *name (borrowed from body,
 * NUL-terminated) and *len. ST_EINVAL ("table: missing", "table: expected
 * a string, got integer", "table: invalid table name '...'") otherwise.
 */
enum st_status query_parse_table(const struct json_t *body, const char **name, size_t *len,
                                 struct err *err);

/*
 * Parses and checks body (a JSON value) against schema (the table's
 * newest; borrowed by the plan) into out, with a finished plan. opts may
 * be NULL (no cap, not streamed). ST_EINVAL with the message described
 * above on any mistake; then out holds nothing to release.
 */
enum st_status query_parse(const struct json_t *body, const struct schema *schema,
                           const struct query_parse_opts *opts, struct query_parse_result *out,
                           struct err *err);

/* Frees what out holds (the plan); out may be zeroed. */
void query_parse_result_release(struct query_parse_result *out);

#endif
