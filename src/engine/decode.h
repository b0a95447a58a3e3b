/*
 * The ingest decoder: the body of an ingest request (NDJSON, or one JSON
 * array of objects) to binary rows in the format of schema.h, checked
 * against a schema while it parses, without building a DOM.
 *
 * JSON syntax is exactly what jansson's json_loadb() accepts with flags 0
 * (strict RFC 8259: no trailing commas, no NaN, no leading zeros, no raw
 * control characters in strings, valid UTF-8 only, no lone surrogates),
 * including jansson's limits: "\u0000" is rejected anywhere, integer
 * literals must fit int64 (even in float64 or json fields; write 1e19, not
 * 10000000000000000000), reals must not overflow a double, and values nest
 * at most 2048 deep. Whatever jansson rejects is "invalid JSON" here. One
 * deliberate exception: jansson 2.14 drops a raw NUL byte that directly
 * follows a number or literal ("[1\0]" loads); the decoder rejects raw
 * NUL bytes anywhere, as RFC 8259 does.
 *
 * Type rules, checked per record (a failure rejects the record):
 *   int64      a JSON integer literal in int64 range. 1.0 and 1e3 are
 *              rejected ("expected int64, got float"): no float literal
 *              is ever an int64.
 *   float64    any JSON number; an integer literal converts like (double).
 *   bool       true or false.
 *   string     a JSON string; escapes decoded, surrogate pairs joined;
 *              valid UTF-8 without NUL.
 *   timestamp  an RFC 3339 string, YYYY-MM-DD(T|t|space)hh:mm:ss, an
 *              optional fraction of 1 or more digits (truncated to ms),
 *              then Z, z or +hh:mm/-hh:mm; years 0000-9999, real calendar
 *              days, hours 00-23, seconds 00-59 (no leap second);
 *              or an integer literal of epoch milliseconds (any int64).
 *              Stored as ms since the epoch, UTC; before 1970 is negative.
 *   json       any JSON value, stored as minimal text: no whitespace,
 *              strings re-escaped canonically (only '"', '\\' and control
 *              characters escaped, as \b \f \n \r \t or \u00XX with upper
 *              case hex; everything else as raw UTF-8; this is jansson's
 *              JSON_COMPACT form), numbers as written. Containers nest at
 *              most DECODE_JSON_MAX_DEPTH deep; duplicate keys in one
 *              object are rejected.
 *   null       SQL null on a nullable field. On a json field that is not
 *              nullable, null is the JSON value null (text "null"); on
 *              any other field it is "expected <type>, got null".
 * A field missing from a record takes its default, else null when it is
 * nullable, else the record fails with "missing required field". Unknown
 * fields and a field given twice fail the record. Primary-key fields are
 * required and never null (schema_new() guarantees it).
 *
 * Records: in NDJSON each line is one record; blank lines (only spaces,
 * tabs, CR) are skipped and do not count; CRLF line ends are fine; a line
 * that is not valid JSON fails only its record ("invalid JSON at byte N:
 * ..."). In a JSON array each element is one record; a syntax error
 * anywhere fails the whole request, since the framing is lost. Record
 * numbers (detail.index) count records from 0 in the request.
 *
 * Reasons (decode_detail.reason), one per rejected record, the first met:
 *   "invalid JSON at byte N: ..."            (N: offset in the body)
 *   "record is not a JSON object"
 *   "unknown field 'k'"   "duplicate field"   "missing required field"
 *   "expected T, got K"   (K: null, bool, integer, float, string, array,
 *                          object)
 *   "invalid timestamp 'text'"
 *   "json value nested deeper than 64 levels"
 *   "duplicate key 'k' in json value"
 *   "record larger than N bytes"
 * A syntax error anywhere in a record wins over an earlier schema reason.
 *
 * Memory: no allocation per record once the result's buffers have grown;
 * reusing one decode_result across calls keeps them.
 */
#ifndef ST_ENGINE_DECODE_H
#define ST_ENGINE_DECODE_H

#include "engine/schema.h"
#include "util/strbuf.h"

#define DECODE_MAX_DETAILS    100  /* default opts.max_details */
#define DECODE_REASON_MAX     160  /* reason text, NUL included */
#define DECODE_JSON_MAX_DEPTH 64   /* containers nested in one json value */
#define DECODE_NESTING_MAX    2048 /* values nested in a body (jansson's limit) */

enum decode_format {
    DECODE_NDJSON = 0,     /* application/x-ndjson: one object a line */
    DECODE_JSON_ARRAY = 1, /* application/json: one array of objects */
};

struct decode_opts {
    enum decode_format format; /* body framing */
    bool partial;              /* keep the valid records when some fail */
    bool nul_terminated;       /* body[len] is readable and '\0' (a strbuf's
                                * buffer is): saves a copy of bodies that do
                                * not end in a control character */
    uint32_t max_details;      /* details kept (rejections are all counted) */
    size_t max_record_bytes;   /* a record's text or row over this fails it */
    size_t max_rows_bytes;     /* the rows of one request over this fail it
                                * with ST_ETOOLARGE */
};

/*
 * Defaults: NDJSON, atomic, DECODE_MAX_DETAILS details, 16 MiB records,
 * 1 GiB of rows, body not known to be NUL-terminated.
 */
void decode_opts_init(struct decode_opts *o);

/* Why one record was rejected. */
struct decode_detail {
    uint64_t index;                 /* record number in the request, from 0 */
    char field[SCHEMA_NAME_MAX];    /* the field (or unknown key, cut to 63
                                     * bytes), or "" when not field-specific */
    char reason[DECODE_REASON_MAX]; /* e.g. "expected int64, got string" */
};

/* One decoded row. */
struct decode_row {
    size_t off;        /* where the row starts in decode_result.rows */
    uint64_t key_hash; /* schema_key_hash() of the row's primary key
                        * encoded by schema_key_encode() (= schema_row_key()) */
};

struct decode_scratch;

/*
 * What decode_batch() produced. Initialise with decode_result_init(),
 * free with decode_result_release(); decode_batch() empties it first and
 * keeps its allocations, so one result can serve many requests.
 */
struct decode_result {
    uint8_t *rows;                  /* rows back to back, schema.h format */
    size_t rows_len;                /* bytes used in rows */
    size_t rows_cap;                /* bytes allocated */
    struct decode_row *row;         /* nrows entries, in record order */
    size_t nrows;                   /* rows kept (0 in atomic mode when any
                                     * record was rejected) */
    size_t row_cap;                 /* entries allocated */
    uint64_t nrecords;              /* records seen (accepted = nrecords - rejected) */
    uint64_t rejected;              /* records rejected, all of them */
    struct decode_detail *details;  /* ndetails entries, in record order */
    uint32_t ndetails;              /* at most opts.max_details */
    size_t err_offset;              /* on a request-level JSON error: byte offset */
    uint32_t err_line;              /* ... its line, from 1 */
    uint32_t err_column;            /* ... its column in bytes, from 1 */
    struct decode_scratch *scratch; /* private working memory */
};

void decode_result_init(struct decode_result *res);
void decode_result_release(struct decode_result *res);
/* Row i of res (i < res->nrows); its length is schema_row_len(). */
const void *decode_result_row(const struct decode_result *res, size_t i);

/*
 * Decodes the body (len bytes; see opts.nul_terminated) against s into
 * res. Returns ST_OK when the body could be read as a whole, even when
 * records were rejected: then res->rejected > 0 and res->details say why
 * (the caller answers 422 in atomic mode, or commits res's rows in
 * partial mode). Request-level failures:
 *   ST_EINVAL     a JSON array body that is not valid JSON or not an array
 *                 (err says where: "invalid JSON at line L column C (byte
 *                 N): ..."; also in res->err_*)
 *   ST_ETOOLARGE  the rows exceed opts->max_rows_bytes
 *   ST_ENOMEM     a buffer sized by the body could not be allocated
 * After a failure res holds no rows.
 */
enum st_status decode_batch(const struct schema *s, const char *body, size_t len,
                            const struct decode_opts *opts, struct decode_result *res,
                            struct err *err);

/*
 * Checks that text (len bytes) is one JSON value (surrounding whitespace
 * allowed) under the rules of json fields above, and appends its minimal
 * text to out. For the catalog's json defaults. ST_EINVAL with a reason in
 * err otherwise.
 */
enum st_status decode_json_text(const char *text, size_t len, struct strbuf *out, struct err *err);

#endif
