/*
 * Table schemas and the binary row format (see schema.h).
 *
 * A schema is a flat array of fields plus a small hash index of their
 * names, built once by schema_new() and read-only afterwards, so any
 * number of threads may share it. Rows are read field by field:
 * schema_row_get() walks the values before field i (fixed sizes, or a u32
 * length for strings and json), so reading is O(i) and needs no per-row
 * offset table. Primary keys are re-encoded as memcmp-ordered bytes for
 * the memtable (schema_key_encode()), and hashed with schema_key_hash().
 */
#include "engine/schema.h"

#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
    [FIELD_INT64] = "int64",   [FIELD_FLOAT64] = "float64",     [FIELD_BOOL] = "bool",
    [FIELD_STRING] = "string", [FIELD_TIMESTAMP] = "timestamp", [FIELD_JSON] = "json",
};

const char *field_type_name(enum field_type t)
{
    if ((unsigned)t >= ST_ARRAY_SIZE(type_names))
        return "unknown";
    return type_names[t];
}

bool field_type_parse(const char *name, enum field_type *out)
{
    for (size_t i = 0; i < ST_ARRAY_SIZE(type_names); i++) {
        if (!strcmp(name, type_names[i])) {
            *out = (enum field_type)i;
            return true;
        }
    }
    return false;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

bool schema_field_name_is_valid(const char *name, size_t len)
{
    if (len == 0 || len >= SCHEMA_NAME_MAX)
        return false;
    if (!is_alpha(name[0]) && name[0] != '_')
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_alpha(name[i]) && !is_digit(name[i]) && name[i] != '_')
            return false;
    return true;
}

bool schema_entity_name_is_valid(const char *name, size_t len)
{
    if (len == 0 || len >= SCHEMA_NAME_MAX)
        return false;
    if (!(name[0] >= 'a' && name[0] <= 'z') && !is_digit(name[0]))
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = name[i];

        if (!(c >= 'a' && c <= 'z') && !is_digit(c) && c != '_' && c != '-')
            return false;
    }
    return true;
}

/*
 * Building and freeing schemas.
 *
 * The name index is an open-addressing hash table (FNV-1a, linear
 * probing) at most half full, so a lookup is a hash of at most 63 bytes
 * and usually one compare.
 */

static uint32_t name_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 16777619u;
    }
    return h;
}

static bool utf8_is_valid(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    const uint8_t *end = p + len;

    while (p < end) {
        uint8_t c = *p;
        size_t n;
        uint32_t cp;

        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - p) < n)
            return false;
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n;
    }
    return true;
}

static enum st_status check_default(const struct field *f, struct err *err)
{
    const struct value *d = &f->def;

    if (!f->has_default)
        return ST_OK;
    if (d->is_null) {
        if (!f->nullable)
            return err_set(err, ST_EINVAL, "field '%s' has a null default but is not nullable",
                           f->name);
        return ST_OK;
    }
    if (d->type != f->type)
        return err_set(err, ST_EINVAL, "default of field '%s' is not a %s", f->name,
                       field_type_name(f->type));
    if (f->type == FIELD_STRING && !utf8_is_valid(d->u.s.ptr, d->u.s.len))
        return err_set(err, ST_EINVAL, "default of field '%s' is not valid UTF-8", f->name);
    if (f->type == FIELD_JSON && d->u.s.len == 0)
        return err_set(err, ST_EINVAL, "default of field '%s' is empty", f->name);
    return ST_OK;
}

static void index_insert(struct schema *s, uint32_t i)
{
    const char *name = s->fields[i].name;
    uint32_t h = name_hash(name, strlen(name)) & s->name_mask;

    while (s->name_index[h] >= 0)
        h = (h + 1) & s->name_mask;
    s->name_index[h] = (int32_t)i;
}

enum st_status schema_new(uint32_t version, const struct field *fields, uint32_t nfields,
                          const char *const *pk, uint32_t npk, const char *time_field,
                          struct schema **out, struct err *err)
{
    struct schema *s;
    enum st_status rc;
    uint32_t slots = 16;

    *out = NULL;
    if (nfields == 0 || nfields > SCHEMA_MAX_FIELDS)
        return err_set(err, ST_EINVAL, "a table needs 1 to %d fields, not %u", SCHEMA_MAX_FIELDS,
                       nfields);
    if (npk == 0 || npk > SCHEMA_MAX_PK)
        return err_set(err, ST_EINVAL, "a primary key needs 1 to %d fields, not %u", SCHEMA_MAX_PK,
                       npk);
    for (uint32_t i = 0; i < nfields; i++) {
        const struct field *f = &fields[i];
        size_t n = strnlen(f->name, SCHEMA_NAME_MAX);

        if (!schema_field_name_is_valid(f->name, n))
            return err_set(err, ST_EINVAL, "invalid field name '%.*s'", (int)n, f->name);
        if ((unsigned)f->type > FIELD_JSON)
            return err_set(err, ST_EINVAL, "field '%s' has an unknown type", f->name);
        rc = check_default(f, err);
        if (rc)
            return rc;
    }

    s = xcalloc(1, sizeof(*s));
    s->version = version;
    s->nfields = nfields;
    s->time_field = -1;
    s->fields = calloc_array(nfields, sizeof(*s->fields));
    while (slots < 2 * nfields)
        slots *= 2;
    s->name_mask = slots - 1;
    s->name_index = calloc_array(slots, sizeof(*s->name_index));
    memset(s->name_index, 0xff, slots * sizeof(*s->name_index));
    for (uint32_t i = 0; i < nfields; i++) {
        struct field *f = &s->fields[i];

        *f = fields[i];
        f->is_pk = false;
        if ((f->type == FIELD_STRING || f->type == FIELD_JSON) && f->has_default &&
            !f->def.is_null) {
            char *copy = xmalloc(f->def.u.s.len + 1);

            memcpy(copy, f->def.u.s.ptr, f->def.u.s.len);
            copy[f->def.u.s.len] = '\0';
            f->def.u.s.ptr = copy;
        } else if (f->has_default && f->def.is_null) {
            f->has_default = false; /* a nullable field's missing value is null anyway */
        }
        if (schema_find_field(s, f->name, strlen(f->name)) >= 0) {
            rc = err_set(err, ST_EINVAL, "duplicate field '%s'", f->name);
            goto err_free;
        }
        index_insert(s, i);
    }

    s->npk = npk;
    for (uint32_t k = 0; k < npk; k++) {
        int idx = pk[k] ? schema_find_field(s, pk[k], strlen(pk[k])) : -1;
        struct field *f;

        if (idx < 0) {
            rc = err_set(err, ST_EINVAL, "primary key field '%s' does not exist",
                         pk[k] ? pk[k] : "");
            goto err_free;
        }
        f = &s->fields[idx];
        if (f->is_pk) {
            rc = err_set(err, ST_EINVAL, "primary key names field '%s' twice", f->name);
            goto err_free;
        }
        if (f->nullable || f->has_default || f->type == FIELD_JSON) {
            rc = err_set(err, ST_EINVAL,
                         "primary key field '%s' must be required (not nullable, no default) "
                         "and not json",
                         f->name);
            goto err_free;
        }
        f->is_pk = true;
        s->pk[k] = (uint32_t)idx;
    }

    if (time_field) {
        int idx = schema_find_field(s, time_field, strlen(time_field));

        if (idx < 0 || s->fields[idx].type != FIELD_TIMESTAMP) {
            rc = err_set(err, ST_EINVAL, "time field '%s' is not a timestamp field", time_field);
            goto err_free;
        }
        s->time_field = idx;
    }
    *out = s;
    return ST_OK;

err_free:
    schema_free(s);
    return rc;
}

void schema_free(struct schema *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->nfields; i++) {
        struct field *f = &s->fields[i];

        if ((f->type == FIELD_STRING || f->type == FIELD_JSON) && f->has_default && !f->def.is_null)
            free((char *)f->def.u.s.ptr);
    }
    free(s->fields);
    free(s->name_index);
    free(s);
}

int schema_find_field(const struct schema *s, const char *name, size_t len)
{
    if (len == 0 || len >= SCHEMA_NAME_MAX)
        return -1;
    if (s->name_index) {
        uint32_t h = name_hash(name, len) & s->name_mask;
        int32_t i;

        while ((i = s->name_index[h]) >= 0) {
            const char *fn = s->fields[i].name;

            if (!memcmp(fn, name, len) && fn[len] == '\0')
                return i;
            h = (h + 1) & s->name_mask;
        }
        return -1;
    }
    for (uint32_t i = 0; i < s->nfields; i++) {
        const char *fn = s->fields[i].name;

        if (!strncmp(fn, name, len) && fn[len] == '\0')
            return (int)i;
    }
    return -1;
}

/*
 * Reading rows. Values are little-endian; memcpy keeps the loads legal on
 * any alignment and compiles to one move.
 */

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint32_t schema_row_len(const void *row)
{
    return rd32(row);
}

/* The bytes the value of type t at p takes in a row. */
static size_t value_size(enum field_type t, const uint8_t *p)
{
    switch (t) {
    case FIELD_INT64:
    case FIELD_FLOAT64:
    case FIELD_TIMESTAMP:
        return 8;
    case FIELD_BOOL:
        return 1;
    case FIELD_STRING:
    case FIELD_JSON:
        return 4 + (size_t)rd32(p);
    }
    ST_BUG("bad field type %d", (int)t);
}

void schema_row_get(const struct schema *s, const void *row, uint32_t i, struct value *out)
{
    const uint8_t *nulls = (const uint8_t *)row + 4;
    const uint8_t *p = nulls + (s->nfields + 7) / 8;
    enum field_type t;
    uint64_t bits;

    st_assert(i < s->nfields);
    for (uint32_t j = 0; j < i; j++)
        if (!(nulls[j / 8] & (1u << (j % 8))))
            p += value_size(s->fields[j].type, p);
    t = s->fields[i].type;
    memset(out, 0, sizeof(*out));
    out->type = t;
    out->is_null = nulls[i / 8] & (1u << (i % 8));
    if (out->is_null)
        return;
    switch (t) {
    case FIELD_INT64:
    case FIELD_TIMESTAMP:
        out->u.i = (int64_t)rd64(p);
        break;
    case FIELD_FLOAT64:
        bits = rd64(p);
        memcpy(&out->u.f, &bits, sizeof(bits));
        break;
    case FIELD_BOOL:
        out->u.b = *p != 0;
        break;
    case FIELD_STRING:
    case FIELD_JSON:
        out->u.s.len = rd32(p);
        out->u.s.ptr = (const char *)p + 4;
        break;
    }
}

/*
 * Key encoding (see schema.h). put() writes a byte when it fits, so the
 * encoder always returns the full length.
 */

static void put(uint8_t *buf, size_t cap, size_t *n, uint8_t b)
{
    if (*n < cap)
        buf[*n] = b;
    (*n)++;
}

static void put_be64(uint8_t *buf, size_t cap, size_t *n, uint64_t v)
{
    if (cap >= 8 && *n <= cap - 8) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        v = __builtin_bswap64(v);
#endif
        memcpy(buf + *n, &v, sizeof(v));
        *n += 8;
        return;
    }
    for (int sh = 56; sh >= 0; sh -= 8)
        put(buf, cap, n, (uint8_t)(v >> sh));
}

size_t schema_key_encode(const struct value *vals, uint32_t n, uint8_t *buf, size_t cap)
{
    size_t len = 0;

    for (uint32_t k = 0; k < n; k++) {
        const struct value *v = &vals[k];
        uint64_t bits;
        double f;

        st_assert(!v->is_null);
        switch (v->type) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
            put_be64(buf, cap, &len, (uint64_t)v->u.i ^ (UINT64_C(1) << 63));
            break;
        case FIELD_FLOAT64:
            f = v->u.f == 0.0 ? 0.0 : v->u.f;
            memcpy(&bits, &f, sizeof(bits));
            bits = (bits >> 63) ? ~bits : bits | (UINT64_C(1) << 63);
            put_be64(buf, cap, &len, bits);
            break;
        case FIELD_BOOL:
            put(buf, cap, &len, v->u.b ? 1 : 0);
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            for (uint32_t i = 0; i < v->u.s.len; i++) {
                uint8_t c = (uint8_t)v->u.s.ptr[i];

                put(buf, cap, &len, c);
                if (c == 0)
                    put(buf, cap, &len, 0xff);
            }
            put(buf, cap, &len, 0);
            put(buf, cap, &len, 1);
            break;
        }
    }
    return len;
}

size_t schema_row_key(const struct schema *s, const void *row, uint8_t *buf, size_t cap)
{
    struct value vals[SCHEMA_MAX_PK];

    for (uint32_t k = 0; k < s->npk; k++)
        schema_row_get(s, row, s->pk[k], &vals[k]);
    return schema_key_encode(vals, s->npk, buf, cap);
}

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

uint64_t schema_key_hash(const void *key, size_t len)
{
    const uint64_t c1 = UINT64_C(0x87c37b91114253d5);
    const uint64_t c2 = UINT64_C(0x4cf5ad432745937f);
    const uint8_t *p = key;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15);
    uint64_t k;
    size_t n = len;

    while (n >= 8) {
        k = rd64(p);
        k = rotl64(k * c1, 31) * c2;
        h = rotl64(h ^ k, 27) * 5 + 0x52dce729;
        p += 8;
        n -= 8;
    }
    k = 0;
    for (size_t i = 0; i < n; i++)
        k |= (uint64_t)p[i] << (8 * i);
    k = rotl64(k * c1, 31) * c2;
    h ^= k;
    return fmix64(h ^ (uint64_t)len);
}
