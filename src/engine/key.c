/*
 * Primary keys as bytes (see key.h for the encoding).
 *
 * The encoder and the hash live in schema.c (schema_key_encode(),
 * schema_key_hash()), where the ingest decoder needed them first; this
 * module is the engine's name for them, so that the memtable, reads and
 * conflict checks use exactly the bytes and hashes the decoder produced.
 * What it adds is the way back, key_decode(), which walks the fields by
 * type: fixed-size fields undo the bit flips, strings are read up to
 * their 0x00 0x01 terminator and unescaped (0x00 0xff -> 0x00) into the
 * caller's scratch only when they contain an escape.
 */
#include "engine/key.h"

size_t key_encode(const struct value *vals, uint32_t n, uint8_t *buf, size_t cap)
{
    for (uint32_t k = 0; k < n; k++)
        st_assert(vals[k].type != FIELD_FLOAT64 || vals[k].u.f == vals[k].u.f);
    return schema_key_encode(vals, n, buf, cap);
}

size_t key_encode_row(const struct schema *s, const void *row, uint8_t *buf, size_t cap)
{
    return schema_row_key(s, row, buf, cap);
}

uint64_t key_hash(const void *key, size_t len)
{
    return schema_key_hash(key, len);
}

size_t key_successor(const void *k, size_t len, uint8_t *out)
{
    if (len)
        memcpy(out, k, len);
    out[len] = 0;
    return len + 1;
}

static uint64_t rd_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Decodes one string starting at p (n bytes left) into *out. Returns the
 * bytes consumed, or 0 when the terminator is missing or an escape is
 * malformed. *used counts scratch bytes already taken.
 */
static size_t decode_string(const uint8_t *p, size_t n, struct value *out, uint8_t *scratch,
                            size_t *used)
{
    const uint8_t *z = n ? memchr(p, 0, n) : NULL;
    size_t i;
    size_t o;

    if (!z || (size_t)(z - p) + 1 >= n)
        return 0;
    if (z[1] == 1) {
        /* No escape: borrow the key's bytes. */
        out->u.s.ptr = (const char *)p;
        out->u.s.len = (uint32_t)(z - p);
        return (size_t)(z - p) + 2;
    }
    o = *used;
    for (i = 0; i + 1 < n; i++) {
        if (p[i] != 0) {
            scratch[o++] = p[i];
            continue;
        }
        if (p[i + 1] == 1)
            break;
        if (p[i + 1] != 0xff)
            return 0;
        scratch[o++] = 0;
        i++;
    }
    if (i + 1 >= n)
        return 0;
    out->u.s.ptr = (const char *)scratch + *used;
    out->u.s.len = (uint32_t)(o - *used);
    *used = o;
    return i + 2;
}

enum st_status key_decode(const enum field_type *types, uint32_t n, const void *key, size_t len,
                          struct value *vals, uint8_t *scratch, struct err *err)
{
    const uint8_t *p = key;
    size_t left = len;
    size_t used = 0;

    for (uint32_t k = 0; k < n; k++) {
        struct value *v = &vals[k];
        uint64_t bits;
        size_t took;

        memset(v, 0, sizeof(*v));
        v->type = types[k];
        switch (types[k]) {
        case FIELD_INT64:
        case FIELD_TIMESTAMP:
        case FIELD_FLOAT64:
            if (left < 8)
                return err_set(err, ST_ECORRUPT, "key field %u truncated", k);
            bits = rd_be64(p);
            if (types[k] != FIELD_FLOAT64) {
                v->u.i = (int64_t)(bits ^ (UINT64_C(1) << 63));
            } else {
                bits = (bits >> 63) ? bits ^ (UINT64_C(1) << 63) : ~bits;
                memcpy(&v->u.f, &bits, sizeof(bits));
            }
            took = 8;
            break;
        case FIELD_BOOL:
            if (left < 1 || p[0] > 1)
                return err_set(err, ST_ECORRUPT, "key field %u is not a bool", k);
            v->u.b = p[0] == 1;
            took = 1;
            break;
        case FIELD_STRING:
        case FIELD_JSON:
            took = decode_string(p, left, v, scratch, &used);
            if (!took)
                return err_set(err, ST_ECORRUPT, "key field %u is not a terminated string", k);
            break;
        default:
            return err_set(err, ST_ECORRUPT, "key field %u has unknown type %d", k, (int)types[k]);
        }
        p += took;
        left -= took;
    }
    if (left)
        return err_set(err, ST_ECORRUPT, "%zu bytes after the last key field", left);
    return ST_OK;
}

enum st_status key_decode_pk(const struct schema *s, const void *key, size_t len,
                             struct value *vals, uint8_t *scratch, struct err *err)
{
    enum field_type types[SCHEMA_MAX_PK];

    for (uint32_t k = 0; k < s->npk; k++)
        types[k] = s->fields[s->pk[k]].type;
    return key_decode(types, s->npk, key, len, vals, scratch, err);
}
