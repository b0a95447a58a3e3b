/*
 * Column encodings: how one column of a segment block is laid out in
 * bytes before the block is compressed (docs/storage-format.md,
 * "Segments"; do not change: on-disk format).
 *
 * A column holds n values of one kind; n is not stored in the column
 * (the block header gives it, and the null bitmap of a field gives the
 * count of non-null values). A column of 0 values takes 0 bytes.
 * Otherwise it starts with one encoding byte, chosen per column and per
 * block by the encoder (whichever is smallest before compression; for
 * floats, whichever is smallest after LZ4), then:
 *
 *   integers (int64, timestamp, commit versions)
 *     COLENC_INT_CONST  varint zigzag(v): every value is v
 *     COLENC_INT_DELTA  varint zigzag(v[0]), then n - 1 varints
 *                       zigzag(v[i] - v[i-1]) (differences wrap mod 2^64)
 *     COLENC_INT_FOR    varint zigzag(min), then n varints v[i] - min
 *   bits (bool values, null and tombstone bitmaps)
 *     COLENC_BITS_ZERO  every bit is 0
 *     COLENC_BITS_ONE   every bit is 1
 *     COLENC_BITS_MAP   (n + 7) / 8 bytes, bit i at byte i / 8, mask
 *                       1 << (i % 8); unused high bits of the last byte 0
 *   floats (float64)
 *     COLENC_FLOAT_RAW      n x 8 bytes, the IEEE bits little-endian
 *     COLENC_FLOAT_SHUFFLE  8 planes of n bytes: plane j holds byte j
 *                           (little-endian) of every value
 *     COLENC_FLOAT_DEC      u8 e (0..COLENC_DEC_MAX), then an integer
 *                           column (as above, with its own encoding byte)
 *                           of m[i] where v[i] == (double)m[i] / 10^e
 *                           exactly, bit for bit (e = 0: whole numbers)
 *   strings (string, json)
 *     COLENC_STR_PLAIN  n varint lengths, then the n values' bytes back
 *                       to back
 *     COLENC_STR_DICT   varint d (1 <= d <= n), d varint lengths, the d
 *                       entries' bytes back to back, then n varint
 *                       indexes into the entries (< d)
 *
 * Varints are LEB128: 7 bits a byte, low groups first, high bit set on
 * every byte but the last; at most 10 bytes, and the tenth may only hold
 * the top bit of a 64-bit value. zigzag(v) = (v << 1) ^ (v >> 63).
 *
 * Decoders take a bounded cursor, read exactly n values, and return
 * ST_ECORRUPT on anything malformed (bad encoding byte, truncation,
 * overlong varint, index out of range, nonzero padding bits); they never
 * read outside the cursor. String values decode to slices of the input
 * bytes (no copy), so they live as long as the input.
 */
#ifndef ST_ENGINE_COLENC_H
#define ST_ENGINE_COLENC_H

#include "util/status.h"
#include "util/strbuf.h"

/* Encoding bytes. Do not change: on-disk format. */
enum colenc_int_enc {
    COLENC_INT_CONST = 0,
    COLENC_INT_DELTA = 1,
    COLENC_INT_FOR = 2,
};

enum colenc_bits_enc {
    COLENC_BITS_ZERO = 0,
    COLENC_BITS_ONE = 1,
    COLENC_BITS_MAP = 2,
};

enum colenc_float_enc {
    COLENC_FLOAT_RAW = 0,
    COLENC_FLOAT_SHUFFLE = 1,
    COLENC_FLOAT_DEC = 2,
};

enum colenc_str_enc {
    COLENC_STR_PLAIN = 0,
    COLENC_STR_DICT = 1,
};

#define COLENC_VARINT_MAX 10 /* bytes of the longest varint */
#define COLENC_DEC_MAX    15 /* largest decimal exponent of COLENC_FLOAT_DEC */

/* A bounded read cursor: the bytes [p, end). */
struct colenc_rd {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
};

/* A string value: len bytes at ptr (not NUL-terminated). */
struct colenc_str {
    const uint8_t *ptr; /* the bytes; may be NULL when len is 0 */
    uint32_t len;       /* their count */
};

static inline uint64_t colenc_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (0 - ((uint64_t)v >> 63));
}

static inline int64_t colenc_unzigzag(uint64_t u)
{
    return (int64_t)((u >> 1) ^ (0 - (u & 1)));
}

/*
 * Sets sb's length to len, which may exceed it (unlike strbuf_setlen()),
 * after the caller wrote the bytes into room made by strbuf_grow().
 */
static inline void colenc_buf_setlen(struct strbuf *sb, size_t len)
{
    st_assert(len < sb->alloc);
    sb->len = len;
    sb->buf[len] = '\0';
}

/* Appends v as a varint. */
void colenc_put_varint(struct strbuf *sb, uint64_t v);
/* The bytes colenc_put_varint() writes for v (1..10). */
size_t colenc_varint_len(uint64_t v);
/* Reads a varint; false (cursor unchanged) when truncated or overlong. */
bool colenc_get_varint(struct colenc_rd *rd, uint64_t *out);

/*
 * Encoders: append the column of the n values (n may be 0) to out,
 * choosing the smallest encoding. Bits are bytes of 0 or 1.
 * colenc_put_floats() compresses each candidate layout with LZ4 to choose.
 */
void colenc_put_ints(struct strbuf *out, const int64_t *v, size_t n);
void colenc_put_bits(struct strbuf *out, const uint8_t *v, size_t n);
void colenc_put_floats(struct strbuf *out, const double *v, size_t n);
void colenc_put_strs(struct strbuf *out, const struct colenc_str *v, size_t n);

/*
 * Decoders: read a column of exactly n values from rd into out (n
 * entries), advancing rd past it. ST_ECORRUPT with rd unspecified on
 * malformed input. colenc_get_bits() also counts the ones into *ones
 * (may be NULL). colenc_get_strs() may allocate a scratch dictionary of
 * at most n entries, freed before it returns.
 */
enum st_status colenc_get_ints(struct colenc_rd *rd, int64_t *out, size_t n);
enum st_status colenc_get_bits(struct colenc_rd *rd, uint8_t *out, size_t n, size_t *ones);
enum st_status colenc_get_floats(struct colenc_rd *rd, double *out, size_t n);
enum st_status colenc_get_strs(struct colenc_rd *rd, struct colenc_str *out, size_t n);

/*
 * Test hook: forces colenc_put_floats() to use enc (a COLENC_FLOAT_*
 * value; COLENC_FLOAT_DEC falls back to RAW when the values do not fit
 * it), or restores the automatic choice with -1. Process-wide; for tests
 * and the benchmark only.
 */
void colenc_test_force_float(int enc);

#endif
