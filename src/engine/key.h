/*
 * Primary keys as bytes: an order-preserving encoding, its inverse, a
 * comparison and a hash. The memtable, point reads, range scans and
 * transaction conflict checks all work on encoded keys.
 *
 * The encoding (do not change: on-disk format — WAL delete and
 * transaction records and segment indexes store encoded keys) is the one
 * schema.h specifies for
 * schema_key_encode(), so that keys built here, keys built by the ingest
 * decoder and decode_row.key_hash all agree:
 *
 *   int64, timestamp  8 bytes big-endian, sign bit flipped
 *   float64           8 bytes big-endian of the IEEE bits: all bits
 *                     flipped when negative, else the sign bit set;
 *                     -0.0 encodes as 0.0; NaN is not allowed
 *   bool              1 byte, 0 or 1
 *   string            the bytes with 0x00 written as 0x00 0xff, then the
 *                     terminator 0x00 0x01
 *
 * A composite key concatenates its fields in primary-key order. Then
 * memcmp() order, shorter first on a common prefix (key_compare()), is
 * the key's natural order field by field, equal keys have equal bytes,
 * and no encoded key of a schema is a prefix of another key of the same
 * schema ("a" < "a\0" < "ab" holds because 0x01 < 0xff and 0x00 < 'b').
 * Consequences callers may rely on: the smallest key greater than k is
 * k followed by 0x00 (key_successor()), which is never itself a key.
 */
#ifndef ST_ENGINE_KEY_H
#define ST_ENGINE_KEY_H

#include <string.h>

#include "engine/schema.h"

/*
 * Encodes the n key values vals (not null, not NaN; in key order) into
 * buf (cap bytes). Returns the full encoded length; when it exceeds cap,
 * buf holds only the first cap bytes (call again with a bigger buffer).
 */
size_t key_encode(const struct value *vals, uint32_t n, uint8_t *buf, size_t cap);

/*
 * Encodes the primary key of row (well formed for s) like key_encode().
 * Same bytes as schema_row_key().
 */
size_t key_encode_row(const struct schema *s, const void *row, uint8_t *buf, size_t cap);

/*
 * Decodes an encoded key of n fields of the given types back into vals
 * (n entries). String values point into key when they hold no 0x00
 * byte, else into scratch, which must have room for len bytes and
 * outlive the values. ST_ECORRUPT (with a message in err) when key is
 * not exactly n well-formed fields.
 */
enum st_status key_decode(const enum field_type *types, uint32_t n, const void *key, size_t len,
                          struct value *vals, uint8_t *scratch, struct err *err);

/* key_decode() with the types of s's primary key; vals has s->npk entries. */
enum st_status key_decode_pk(const struct schema *s, const void *key, size_t len,
                             struct value *vals, uint8_t *scratch, struct err *err);

/*
 * The 64-bit hash of encoded key bytes used by every hash index of the
 * engine; equal to schema_key_hash() and so to decode_row.key_hash.
 * A murmur3-style mix of 8-byte words: about 10 ns for an 8-byte key,
 * 13 ns for 24 bytes, 18 ns for 64 (bench_memtable; two calls deep).
 * FNV-1a, inlined, is faster up to ~24 bytes (3 ns at 8) and 2x slower
 * at 64; either is a few percent of a memtable put, so the decoder's
 * hash is kept. In-memory only.
 */
uint64_t key_hash(const void *key, size_t len);

/* The first 8 bytes of p as a big-endian number (their memcmp() order). */
static inline uint64_t key_prefix8(const void *p)
{
    uint64_t x;

    memcpy(&x, p, 8);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    x = __builtin_bswap64(x);
#elif defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#else
    {
        const uint8_t *b = p;

        x = 0;
        for (int i = 0; i < 8; i++)
            x = x << 8 | b[i];
    }
#endif
    return x;
}

/*
 * memcmp() order, the shorter first on a common prefix: <0, 0 or >0.
 * Keys are short (an int64 key is 9 bytes): the first 8 bytes are
 * compared as one number before memcmp() is called for the rest.
 */
static inline int key_compare(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c;

    if (n >= 8) {
        uint64_t x = key_prefix8(a), y = key_prefix8(b);

        if (x != y)
            return x < y ? -1 : 1;
        if (n == 8)
            return (alen > blen) - (alen < blen);
        c = memcmp((const uint8_t *)a + 8, (const uint8_t *)b + 8, n - 8);
    } else {
        c = n ? memcmp(a, b, n) : 0;
    }
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/*
 * Writes k (len bytes) followed by 0x00 into out (len + 1 bytes): the
 * smallest byte string greater than k, to turn an inclusive bound into
 * an exclusive one. Returns len + 1.
 */
size_t key_successor(const void *k, size_t len, uint8_t *out);

#endif
