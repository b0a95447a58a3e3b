/*
 * Differential fuzz target for the ingest decoder (src/engine/decode.c):
 * the decoder must accept and reject exactly what jansson plus a plain
 * reference checker written here accept and reject, record by record, and
 * produce the same values.
 *
 * The input is one request body, decoded four ways against a fixed schema
 * that has every type, nullable fields, defaults and json fields: NDJSON
 * and JSON array, each partial (from a buffer of exactly the input's size,
 * so ASan sees any over-read) and atomic (from a NUL-terminated buffer).
 *
 * One deliberate difference: jansson 2.14 silently drops a raw NUL byte
 * right after a number or a literal (its stream buffer uses NUL to mean
 * "empty", and ungetting the byte that ended the token loses it), so it
 * accepts "[1\0]". The decoder follows RFC 8259 and rejects raw NUL bytes
 * anywhere; the reference here does the same before asking jansson.
 *
 * The reference: NDJSON is cut at '\n'; each non-blank line is parsed with
 * json_loadb(JSON_REJECT_DUPLICATES) and, when it is an object, checked
 * field by field with jansson's types (integers, reals, strings, ...),
 * timegm() for timestamps and json_equal() for json values. An array body
 * must load with json_loadb(0) exactly when decode_batch() accepts its
 * framing; its elements are then checked the same way, unless the body
 * has a duplicate key somewhere (jansson then cannot say which record),
 * in which case at least one record must be rejected.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/decode.h"
#include "engine/schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { F_ID, F_TS, F_S, F_F, F_B, F_N, F_J, F_JD, F_NAME, F_T2, F_G, F_C, NF };

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_decode: " __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

static struct schema *the_schema(void)
{
    static struct schema *s;
    static const char *const pk[] = {"id"};
    struct field f[NF];
    struct err err;

    if (s)
        return s;
    memset(f, 0, sizeof(f));
    static const struct {
        const char *name;
        enum field_type type;
        bool nullable;
    } defs[NF] = {
        [F_ID] = {"id", FIELD_INT64, false},      [F_TS] = {"ts", FIELD_TIMESTAMP, false},
        [F_S] = {"s", FIELD_STRING, true},        [F_F] = {"f", FIELD_FLOAT64, false},
        [F_B] = {"b", FIELD_BOOL, false},         [F_N] = {"n", FIELD_INT64, true},
        [F_J] = {"j", FIELD_JSON, true},          [F_JD] = {"jd", FIELD_JSON, false},
        [F_NAME] = {"name", FIELD_STRING, false}, [F_T2] = {"t2", FIELD_TIMESTAMP, true},
        [F_G] = {"g", FIELD_FLOAT64, true},       [F_C] = {"c", FIELD_BOOL, true},
    };
    for (int i = 0; i < NF; i++) {
        st_strlcpy(f[i].name, defs[i].name, sizeof(f[i].name));
        f[i].type = defs[i].type;
        f[i].nullable = defs[i].nullable;
    }
    f[F_F].has_default = true;
    f[F_F].def.type = FIELD_FLOAT64;
    f[F_F].def.u.f = 1.5;
    f[F_B].has_default = true;
    f[F_B].def.type = FIELD_BOOL;
    f[F_B].def.u.b = true;
    f[F_JD].has_default = true;
    f[F_JD].def.type = FIELD_JSON;
    f[F_JD].def.u.s.ptr = "{\"a\":[1,2]}";
    f[F_JD].def.u.s.len = 11;
    f[F_NAME].has_default = true;
    f[F_NAME].def.type = FIELD_STRING;
    f[F_NAME].def.u.s.ptr = "dflt";
    f[F_NAME].def.u.s.len = 4;
    if (schema_new(1, f, NF, pk, 1, "ts", &s, &err))
        FAIL("schema: %s", err.msg);
    return s;
}

/*
 * The reference checker.
 */

struct refval {
    bool is_null;
    int64_t i;
    double f;
    bool b;
    const char *str; /* string bytes (borrowed from the json_t) */
    size_t len;
    json_t *json; /* json value (borrowed), or NULL for the default text */
};

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;

    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* RFC 3339 the plain way: a template, then timegm() and a round trip. */
static bool ref_ts(const char *s, size_t n, int64_t *ms)
{
    static const char tmpl[] = "dddd-dd-ddTdd:dd:dd";
    struct tm tm, back;
    size_t i = 19;
    int frac = 0, off = 0;
    time_t t;

    if (n < 20)
        return false;
    for (int k = 0; k < 19; k++) {
        char c = s[k];

        if (tmpl[k] == 'd'   ? !(c >= '0' && c <= '9')
            : tmpl[k] == 'T' ? (c != 'T' && c != 't' && c != ' ')
                             : c != tmpl[k])
            return false;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = num(s, 4) - 1900;
    tm.tm_mon = num(s + 5, 2) - 1;
    tm.tm_mday = num(s + 8, 2);
    tm.tm_hour = num(s + 11, 2);
    tm.tm_min = num(s + 14, 2);
    tm.tm_sec = num(s + 17, 2);
    back = tm;
    t = timegm(&back);
    if (!gmtime_r(&t, &back) || back.tm_year != tm.tm_year || back.tm_mon != tm.tm_mon ||
        back.tm_mday != tm.tm_mday || back.tm_hour != tm.tm_hour || back.tm_min != tm.tm_min ||
        back.tm_sec != tm.tm_sec)
        return false;
    if (s[i] == '.') {
        size_t start = ++i;

        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
        for (size_t k = 0; k < 3; k++)
            frac = frac * 10 + (start + k < i ? s[start + k] - '0' : 0);
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        if (n - i < 6 || !all_digits(s + i + 1, 2) || s[i + 3] != ':' ||
            !all_digits(s + i + 4, 2) || num(s + i + 1, 2) > 23 || num(s + i + 4, 2) > 59)
            return false;
        off = (num(s + i + 1, 2) * 60 + num(s + i + 4, 2)) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return false;
    }
    if (i != n)
        return false;
    *ms = ((int64_t)t - off * 60) * 1000 + frac;
    return true;
}

static int json_depth(const json_t *v)
{
    int d = 0;
    const char *k;
    json_t *e;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e)
        {
            int x = json_depth(e);

            d = x > d ? x : d;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            int x = json_depth(e);

            d = x > d ? x : d;
        }
        return d + 1;
    }
    return 0;
}

/* Checks record v against the schema; fills vals when it fits. */
static bool ref_record(const struct schema *s, json_t *v, struct refval *vals)
{
    bool seen[NF] = {false};
    const char *key;
    json_t *x;

    if (!json_is_object(v))
        return false;
    memset(vals, 0, NF * sizeof(*vals));
    json_object_foreach(v, key, x)
    {
        int fi = -1;
        const struct field *f;
        struct refval *r;

        for (int i = 0; i < NF; i++)
            if (!strcmp(key, s->fields[i].name))
                fi = i;
        if (fi < 0)
            return false;
        f = &s->fields[fi];
        r = &vals[fi];
        seen[fi] = true;
        if (json_is_null(x) && f->nullable) {
            r->is_null = true;
            continue;
        }
        switch (f->type) {
        case FIELD_INT64:
            if (!json_is_integer(x))
                return false;
            r->i = json_integer_value(x);
            break;
        case FIELD_FLOAT64:
            if (!json_is_number(x))
                return false;
            r->f = json_number_value(x);
            break;
        case FIELD_BOOL:
            if (!json_is_boolean(x))
                return false;
            r->b = json_is_true(x);
            break;
        case FIELD_STRING:
            if (!json_is_string(x))
                return false;
            r->str = json_string_value(x);
            r->len = json_string_length(x);
            break;
        case FIELD_TIMESTAMP:
            if (json_is_integer(x))
                r->i = json_integer_value(x);
            else if (!json_is_string(x) ||
                     !ref_ts(json_string_value(x), json_string_length(x), &r->i))
                return false;
            break;
        case FIELD_JSON:
            if (json_depth(x) > DECODE_JSON_MAX_DEPTH)
                return false;
            r->json = x;
            break;
        }
    }
    for (int i = 0; i < NF; i++) {
        const struct field *f = &s->fields[i];

        if (seen[i])
            continue;
        if (f->has_default) {
            if (f->type == FIELD_INT64 || f->type == FIELD_TIMESTAMP)
                vals[i].i = f->def.u.i;
            else if (f->type == FIELD_FLOAT64)
                vals[i].f = f->def.u.f;
            else if (f->type == FIELD_BOOL)
                vals[i].b = f->def.u.b;
            else {
                vals[i].str = f->def.u.s.ptr;
                vals[i].len = f->def.u.s.len;
            }
        } else if (f->nullable) {
            vals[i].is_null = true;
        } else {
            return false;
        }
    }
    return true;
}

static bool has_real_or_zero(const json_t *v)
{
    const char *k;
    json_t *e;
    size_t i;

    if (json_is_real(v) || (json_is_integer(v) && json_integer_value(v) == 0))
        return true;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e)
        {
            if (has_real_or_zero(e))
                return true;
        }
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            if (has_real_or_zero(e))
                return true;
        }
    }
    return false;
}

/* Compares row (ours) with the reference values of record index. */
static void compare_row(const struct schema *s, const void *row, const struct refval *vals,
                        uint64_t index)
{
    for (uint32_t i = 0; i < NF; i++) {
        const struct refval *r = &vals[i];
        struct value v;

        schema_row_get(s, row, i, &v);
        if (v.is_null != r->is_null)
            FAIL("record %llu field %s: null %d, reference %d", (unsigned long long)index,
                 s->fields[i].name, v.is_null, r->is_null);
        if (v.is_null)
            continue;
        switch (v.type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            if (v.u.i != r->i)
                FAIL("record %llu field %s: %lld, reference %lld", (unsigned long long)index,
                     s->fields[i].name, (long long)v.u.i, (long long)r->i);
            break;
        case FIELD_FLOAT64:
            if (memcmp(&v.u.f, &r->f, sizeof(double)))
                FAIL("record %llu field %s: %.17g, reference %.17g", (unsigned long long)index,
                     s->fields[i].name, v.u.f, r->f);
            break;
        case FIELD_BOOL:
            if (v.u.b != r->b)
                FAIL("record %llu field %s: bool differs", (unsigned long long)index,
                     s->fields[i].name);
            break;
        case FIELD_STRING:
            if (v.u.s.len != r->len || memcmp(v.u.s.ptr, r->str, r->len))
                FAIL("record %llu field %s: string differs", (unsigned long long)index,
                     s->fields[i].name);
            break;
        case FIELD_JSON:
            if (!r->json) {
                if (v.u.s.len != r->len || memcmp(v.u.s.ptr, r->str, r->len))
                    FAIL("record %llu field %s: default differs", (unsigned long long)index,
                         s->fields[i].name);
            } else {
                json_error_t e;
                json_t *ours =
                    json_loadb(v.u.s.ptr, v.u.s.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);

                if (!ours || !json_equal(ours, r->json))
                    FAIL("record %llu field %s: json '%.*s' differs (%s)",
                         (unsigned long long)index, s->fields[i].name, (int)v.u.s.len, v.u.s.ptr,
                         ours ? "value" : e.text);
                if (!has_real_or_zero(r->json)) {
                    char *text = json_dumps(r->json, JSON_COMPACT | JSON_ENCODE_ANY);

                    if (!text || strlen(text) != v.u.s.len || memcmp(text, v.u.s.ptr, v.u.s.len))
                        FAIL("record %llu field %s: json text '%.*s', jansson's '%s'",
                             (unsigned long long)index, s->fields[i].name, (int)v.u.s.len,
                             v.u.s.ptr, text ? text : "");
                    free(text);
                }
                json_decref(ours);
            }
            break;
        }
    }
}

/* What the reference says about one record. */
struct refrec {
    bool ok;
    json_t *root; /* keeps the borrowed values alive */
    struct refval vals[NF];
};

static void check_result(const struct schema *s, const struct decode_result *res,
                         const struct refrec *recs, size_t nrecs, const char *what)
{
    size_t rejected = 0, d = 0, row = 0, rows_len = 0;
    uint8_t key[4096];

    if (res->nrecords != nrecs)
        FAIL("%s: %llu records, reference %zu", what, (unsigned long long)res->nrecords, nrecs);
    for (size_t i = 0; i < nrecs; i++) {
        if (recs[i].ok) {
            if (row >= res->nrows)
                FAIL("%s: record %zu accepted by the reference only%s%s", what, i,
                     d < res->ndetails ? ": " : "",
                     d < res->ndetails ? res->details[d].reason : "");
            compare_row(s, decode_result_row(res, row), recs[i].vals, i);
            row++;
            continue;
        }
        rejected++;
        if (d >= res->ndetails || res->details[d].index != i)
            FAIL("%s: record %zu rejected by the reference only", what, i);
        d++;
    }
    if (res->rejected != rejected || res->nrows != row || res->ndetails != d)
        FAIL("%s: %llu rejected / %zu rows, reference %zu / %zu", what,
             (unsigned long long)res->rejected, res->nrows, rejected, row);
    for (size_t i = 0; i < res->nrows; i++) {
        const void *r = decode_result_row(res, i);
        size_t klen = schema_row_key(s, r, key, sizeof(key));

        if (res->row[i].off != rows_len)
            FAIL("%s: row %zu is not where the previous one ends", what, i);
        rows_len += schema_row_len(r);
        if (klen <= sizeof(key) && res->row[i].key_hash != schema_key_hash(key, klen))
            FAIL("%s: row %zu has the wrong key hash", what, i);
    }
    if (rows_len != res->rows_len)
        FAIL("%s: rows_len %zu, rows add up to %zu", what, res->rows_len, rows_len);
}

/* Atomic mode keeps all the rows of partial mode, or none. */
static void check_atomic(const struct decode_result *part, const struct decode_result *atom)
{
    if (atom->nrecords != part->nrecords || atom->rejected != part->rejected)
        FAIL("atomic: counts differ from partial");
    if (part->rejected ? atom->nrows != 0
                       : (atom->rows_len != part->rows_len ||
                          (part->rows_len && memcmp(atom->rows, part->rows, part->rows_len))))
        FAIL("atomic: rows differ from partial");
}

static void free_recs(struct refrec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(recs[i].root);
    free(recs);
}

static void run_ndjson(const struct schema *s, const char *body, size_t size, const char *zbody)
{
    struct refrec *recs = calloc(size / 2 + 1, sizeof(*recs));
    size_t nrecs = 0;
    struct decode_opts o;
    struct decode_result part, atom;
    struct err err;

    for (size_t p = 0; p < size;) {
        const char *nl = memchr(body + p, '\n', size - p);
        size_t end = nl ? (size_t)(nl - body) : size;
        bool blank = true;

        for (size_t i = p; i < end; i++)
            if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r')
                blank = false;
        if (!blank) {
            struct refrec *r = &recs[nrecs++];

            r->root = memchr(body + p, '\0', end - p)
                          ? NULL
                          : json_loadb(body + p, end - p, JSON_REJECT_DUPLICATES, NULL);
            r->ok = r->root && ref_record(s, r->root, r->vals);
        }
        p = end + 1;
    }

    decode_opts_init(&o);
    o.partial = true;
    o.max_details = UINT32_MAX;
    decode_result_init(&part);
    decode_result_init(&atom);
    if (decode_batch(s, body, size, &o, &part, &err))
        FAIL("ndjson: %s", err.msg);
    check_result(s, &part, recs, nrecs, "ndjson");
    o.partial = false;
    o.nul_terminated = true;
    if (decode_batch(s, zbody, size, &o, &atom, &err))
        FAIL("ndjson atomic: %s", err.msg);
    check_atomic(&part, &atom);
    decode_result_release(&part);
    decode_result_release(&atom);
    free_recs(recs, nrecs);
}

static void run_array(const struct schema *s, const char *body, size_t size, const char *zbody)
{
    json_error_t e;
    json_t *top = memchr(body, '\0', size) ? NULL : json_loadb(body, size, 0, &e);
    json_t *strict = NULL;
    struct decode_opts o;
    struct decode_result part, atom;
    struct err err;
    enum st_status rc;
    struct refrec *recs = NULL;
    size_t n = 0;

    decode_opts_init(&o);
    o.format = DECODE_JSON_ARRAY;
    o.partial = true;
    o.max_details = UINT32_MAX;
    decode_result_init(&part);
    decode_result_init(&atom);
    rc = decode_batch(s, body, size, &o, &part, &err);
    if (!top || !json_is_array(top)) {
        if (rc != ST_EINVAL)
            FAIL("array: accepted a body jansson rejects (%s)", top ? "not an array" : "");
        goto out;
    }
    if (rc != ST_OK)
        FAIL("array: rejected a body jansson accepts: %s", err.msg);
    n = json_array_size(top);
    strict = json_loadb(body, size, JSON_REJECT_DUPLICATES, NULL);
    if (strict) {
        recs = calloc(n + 1, sizeof(*recs));
        for (size_t i = 0; i < n; i++) {
            recs[i].root = json_incref(json_array_get(strict, i));
            recs[i].ok = ref_record(s, recs[i].root, recs[i].vals);
        }
        check_result(s, &part, recs, n, "array");
    } else if (part.nrecords != n || part.rejected == 0) {
        FAIL("array: a duplicate key but %llu of %llu records rejected",
             (unsigned long long)part.rejected, (unsigned long long)part.nrecords);
    }
    o.partial = false;
    o.nul_terminated = true;
    if (decode_batch(s, zbody, size, &o, &atom, &err))
        FAIL("array atomic: %s", err.msg);
    check_atomic(&part, &atom);
out:
    if (recs)
        free_recs(recs, n);
    json_decref(strict);
    json_decref(top);
    decode_result_release(&part);
    decode_result_release(&atom);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct schema *s = the_schema();
    char *body = malloc(size ? size : 1);
    char *zbody = malloc(size + 1);

    if (size) {
        memcpy(body, data, size);
        memcpy(zbody, data, size);
    }
    zbody[size] = '\0';
    run_ndjson(s, body, size, zbody);
    run_array(s, body, size, zbody);
    free(body);
    free(zbody);
    return 0;
}
