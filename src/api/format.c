/*
 * format: stored values to the JSON of API answers.
 *
 * Records are rows in the format of schema.h; a read answer shows them
 * under the table's newest schema, keyed by field name in its field
 * order. A row written under an older schema version reads back under the
 * newest one (API.md, "Schema evolution"): a field the row's version
 * lacks shows its default or null, an int64 widened to float64 shows as a
 * float, and anything that cannot be the newest field's value (a field
 * removed and later added with another type) also falls back to the
 * default, so an answer always fits the schema it claims.
 *
 * Numbers: int64 as JSON integers; float64 in the fewest significant
 * digits that read back to the same double (tried from 1 to 17 with
 * "%.*e" and strtod), laid out as ECMAScript's Number::toString does
 * (plain decimals from 1e-6 up to 1e21, exponents beyond), with ".0" when
 * the text would look like an integer, so a float64 field never reads
 * back as an integer in a client's JSON parser. Timestamps: RFC 3339,
 * UTC, milliseconds, by timestamp_format(), the one formatter the engine
 * and the API share (times before 1970 too; years beyond 0000-9999 with a
 * sign, "+12345-01-01T00:00:00.000Z").
 */
#include "api/api.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/timestamp.h"

size_t api_format_double(double d, char buf[API_DOUBLE_MAX])
{
    char sci[API_DOUBLE_MAX], digits[20];
    size_t k = 0, n = 0;
    int exp10, point;
    char *e;

    if (!isfinite(d)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    /* The shortest "%.*e" that reads back: d.ddde[+-]x with k digits. */
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(sci, sizeof(sci), "%.*e", prec, d);
        if (strtod(sci, NULL) == d)
            break;
    }
    e = strchr(sci, 'e');
    st_assert(e);
    exp10 = atoi(e + 1);
    for (const char *p = sci; p < e; p++)
        if (*p >= '0' && *p <= '9')
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    if (sci[0] == '-')
        buf[n++] = '-';
    /* ECMAScript's Number::toString layout: plain from 1e-6 up to 1e21. */
    point = exp10 + 1;
    if (point >= (int)k && point <= 21) {
        memcpy(buf + n, digits, k);
        n += k;
        for (int i = (int)k; i < point; i++)
            buf[n++] = '0';
        memcpy(buf + n, ".0", 2);
        n += 2;
    } else if (point > 0 && point <= 21) {
        memcpy(buf + n, digits, (size_t)point);
        n += (size_t)point;
        buf[n++] = '.';
        memcpy(buf + n, digits + point, k - (size_t)point);
        n += k - (size_t)point;
    } else if (point > -6 && point <= 0) {
        buf[n++] = '0';
        buf[n++] = '.';
        for (int i = point; i < 0; i++)
            buf[n++] = '0';
        memcpy(buf + n, digits, k);
        n += k;
    } else {
        buf[n++] = digits[0];
        if (k > 1) {
            buf[n++] = '.';
            memcpy(buf + n, digits + 1, k - 1);
            n += k - 1;
        }
        n += (size_t)snprintf(buf + n, API_DOUBLE_MAX - n, "e%c%d", exp10 < 0 ? '-' : '+',
                              exp10 < 0 ? -exp10 : exp10);
    }
    buf[n] = '\0';
    return n;
}

void api_value_json(struct strbuf *out, const struct value *v)
{
    char buf[API_DOUBLE_MAX > TIMESTAMP_TEXT_MAX ? API_DOUBLE_MAX : TIMESTAMP_TEXT_MAX];
    size_t n;

    if (v->is_null) {
        strbuf_addstr(out, "null");
        return;
    }
    switch (v->type) {
    case FIELD_INT64:
        strbuf_addf(out, "%lld", (long long)v->u.i);
        return;
    case FIELD_FLOAT64:
        n = api_format_double(v->u.f, buf);
        strbuf_add(out, buf, n);
        return;
    case FIELD_BOOL:
        strbuf_addstr(out, v->u.b ? "true" : "false");
        return;
    case FIELD_STRING:
        strbuf_add_json_str(out, v->u.s.ptr, v->u.s.len);
        return;
    case FIELD_TIMESTAMP:
        n = timestamp_format(v->u.i, buf);
        strbuf_addch(out, '"');
        strbuf_add(out, buf, n);
        strbuf_addch(out, '"');
        return;
    case FIELD_JSON:
        strbuf_add(out, v->u.s.ptr, v->u.s.len);
        return;
    }
    ST_BUG("value of unknown type %d", (int)v->type);
}

/* The default of f, or null. */
static void default_value(const struct field *f, struct value *out)
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

void api_record_value(const struct schema *row_schema, const void *row, const struct schema *cur,
                      uint32_t j, struct value *out)
{
    const struct field *f = &cur->fields[j];
    int i;

    st_assert(j < cur->nfields);
    if (row_schema == cur) {
        schema_row_get(cur, row, j, out);
        return;
    }
    i = schema_find_field(row_schema, f->name, strlen(f->name));
    if (i < 0) {
        default_value(f, out);
        return;
    }
    schema_row_get(row_schema, row, (uint32_t)i, out);
    if (out->type != f->type) {
        if (out->type == FIELD_INT64 && f->type == FIELD_FLOAT64) {
            out->type = FIELD_FLOAT64;
            if (!out->is_null)
                out->u.f = (double)out->u.i;
        } else {
            default_value(f, out);
            return;
        }
    }
    if (out->is_null && !f->nullable)
        default_value(f, out);
}

void api_record_json(struct strbuf *out, const struct schema *row_schema, const void *row,
                     const struct schema *cur)
{
    struct value v;

    strbuf_addch(out, '{');
    for (uint32_t j = 0; j < cur->nfields; j++) {
        const char *name = cur->fields[j].name;

        if (j)
            strbuf_addch(out, ',');
        strbuf_add_json_str(out, name, strlen(name));
        strbuf_addch(out, ':');
        api_record_value(row_schema, row, cur, j, &v);
        api_value_json(out, &v);
    }
    strbuf_addch(out, '}');
}
