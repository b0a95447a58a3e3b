/*
 * Column encodings of segment blocks (see colenc.h for the byte layout).
 *
 * The encoders pick, per column and per block, the encoding that is
 * smallest before LZ4 runs over the whole block: sizes of every
 * candidate are computed exactly (integers: one pass for the constant
 * and delta sizes and the minimum, one for frame-of-reference; strings:
 * a dictionary is built with a small open-addressing hash table and its
 * size compared with the plain layout). Small varints and dictionary
 * indexes are what LZ4 compresses best afterwards: repeated deltas
 * (regular timestamps, sequential ids) become long matches.
 *
 * Floats: whole numbers, and decimals with a few digits after the point
 * (prices, latencies in ms), can be stored as integers m with a decimal
 * exponent e when (double)m / 10^e gives back every value bit for bit;
 * the check is made on exactly the expression the decoder evaluates, so
 * the round trip is exact by construction (ALP's idea, simplified).
 * Byte-shuffling (blosc) lines up the sign and exponent bytes of similar
 * values. No layout always wins (measured on 4096 values, bytes after
 * LZ4: uniform noise raw 32.9 K, shuffled 28.9 K; a random walk 32.0 K vs
 * 23.2 K; 20 repeated values 11.5 K vs 26.5 K; x.25/x.75 steps decimal
 * 10.7 K, shuffled 8.4 K), and sizes before compression cannot tell them
 * apart, so the encoder compresses each candidate with LZ4 and keeps the
 * smallest: about 20 ns per value and candidate, float columns only.
 *
 * Decoders check every length against the cursor before reading and
 * every count against n before writing, so hostile bytes cannot make
 * them read or write out of bounds.
 */
#include "engine/colenc.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>

static int force_float = -1;

void colenc_test_force_float(int enc)
{
    force_float = enc;
}

/* ------------------------------------------------------------------ */
/* Varints */

size_t colenc_varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

void colenc_put_varint(struct strbuf *sb, uint64_t v)
{
    uint8_t b[COLENC_VARINT_MAX];
    size_t n = 0;

    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    strbuf_add(sb, b, n);
}

/* Writes v as a varint at p (room for COLENC_VARINT_MAX); returns the bytes. */
static size_t varint_store(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

bool colenc_get_varint(struct colenc_rd *rd, uint64_t *out)
{
    const uint8_t *p = rd->p;
    uint64_t v = 0;

    for (unsigned shift = 0; shift < 64; shift += 7) {
        uint8_t b;

        if (p == rd->end)
            return false;
        b = *p++;
        if (shift == 63 && b > 1)
            return false; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            rd->p = p;
            *out = v;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Integers */

void colenc_put_ints(struct strbuf *out, const int64_t *v, size_t n)
{
    size_t delta_len;
    size_t for_len;
    int64_t min;
    bool all_same = true;
    uint8_t *p;

    if (n == 0)
        return;
    min = v[0];
    delta_len = colenc_varint_len(colenc_zigzag(v[0]));
    for (size_t i = 1; i < n; i++) {
        delta_len +=
            colenc_varint_len(colenc_zigzag((int64_t)((uint64_t)v[i] - (uint64_t)v[i - 1])));
        if (v[i] != v[0])
            all_same = false;
        if (v[i] < min)
            min = v[i];
    }
    if (all_same) {
        strbuf_addch(out, COLENC_INT_CONST);
        colenc_put_varint(out, colenc_zigzag(v[0]));
        return;
    }
    for_len = colenc_varint_len(colenc_zigzag(min));
    for (size_t i = 0; i < n; i++)
        for_len += colenc_varint_len((uint64_t)v[i] - (uint64_t)min);

    strbuf_grow(out, 1 + ST_MIN(delta_len, for_len));
    p = (uint8_t *)out->buf + out->len;
    if (for_len < delta_len) {
        *p++ = COLENC_INT_FOR;
        p += varint_store(p, colenc_zigzag(min));
        for (size_t i = 0; i < n; i++)
            p += varint_store(p, (uint64_t)v[i] - (uint64_t)min);
    } else {
        *p++ = COLENC_INT_DELTA;
        p += varint_store(p, colenc_zigzag(v[0]));
        for (size_t i = 1; i < n; i++)
            p += varint_store(p, colenc_zigzag((int64_t)((uint64_t)v[i] - (uint64_t)v[i - 1])));
    }
    colenc_buf_setlen(out, (size_t)(p - (uint8_t *)out->buf));
}

enum st_status colenc_get_ints(struct colenc_rd *rd, int64_t *out, size_t n)
{
    uint64_t u;
    uint64_t base;

    if (n == 0)
        return ST_OK;
    if (rd->p == rd->end)
        return ST_ECORRUPT;
    switch (*rd->p++) {
    case COLENC_INT_CONST:
        if (!colenc_get_varint(rd, &u))
            return ST_ECORRUPT;
        for (size_t i = 0; i < n; i++)
            out[i] = colenc_unzigzag(u);
        return ST_OK;
    case COLENC_INT_DELTA:
        if (!colenc_get_varint(rd, &u))
            return ST_ECORRUPT;
        base = (uint64_t)colenc_unzigzag(u);
        out[0] = (int64_t)base;
        for (size_t i = 1; i < n; i++) {
            if (!colenc_get_varint(rd, &u))
                return ST_ECORRUPT;
            base += (uint64_t)colenc_unzigzag(u);
            out[i] = (int64_t)base;
        }
        return ST_OK;
    case COLENC_INT_FOR:
        if (!colenc_get_varint(rd, &u))
            return ST_ECORRUPT;
        base = (uint64_t)colenc_unzigzag(u);
        for (size_t i = 0; i < n; i++) {
            if (!colenc_get_varint(rd, &u))
                return ST_ECORRUPT;
            out[i] = (int64_t)(base + u);
        }
        return ST_OK;
    }
    return ST_ECORRUPT;
}

/* ------------------------------------------------------------------ */
/* Bits */

void colenc_put_bits(struct strbuf *out, const uint8_t *v, size_t n)
{
    size_t ones = 0;
    size_t nbytes = (n + 7) / 8;
    uint8_t *p;

    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        ones += v[i] != 0;
    if (ones == 0 || ones == n) {
        strbuf_addch(out, ones ? COLENC_BITS_ONE : COLENC_BITS_ZERO);
        return;
    }
    strbuf_addch(out, COLENC_BITS_MAP);
    strbuf_grow(out, nbytes);
    p = (uint8_t *)out->buf + out->len;
    memset(p, 0, nbytes);
    for (size_t i = 0; i < n; i++)
        if (v[i])
            p[i / 8] |= (uint8_t)(1u << (i % 8));
    colenc_buf_setlen(out, out->len + nbytes);
}

enum st_status colenc_get_bits(struct colenc_rd *rd, uint8_t *out, size_t n, size_t *ones)
{
    size_t nbytes = (n + 7) / 8;
    size_t count = 0;
    uint8_t enc;

    if (ones)
        *ones = 0;
    if (n == 0)
        return ST_OK;
    if (rd->p == rd->end)
        return ST_ECORRUPT;
    enc = *rd->p++;
    switch (enc) {
    case COLENC_BITS_ZERO:
    case COLENC_BITS_ONE:
        memset(out, enc == COLENC_BITS_ONE, n);
        count = enc == COLENC_BITS_ONE ? n : 0;
        break;
    case COLENC_BITS_MAP:
        if ((size_t)(rd->end - rd->p) < nbytes)
            return ST_ECORRUPT;
        if ((n % 8) && (rd->p[nbytes - 1] >> (n % 8)))
            return ST_ECORRUPT; /* padding bits must be zero */
        for (size_t i = 0; i < n; i++) {
            out[i] = (rd->p[i / 8] >> (i % 8)) & 1;
            count += out[i];
        }
        rd->p += nbytes;
        break;
    default:
        return ST_ECORRUPT;
    }
    if (ones)
        *ones = count;
    return ST_OK;
}

/* ------------------------------------------------------------------ */
/* Floats */

/* 10^0 .. 10^COLENC_DEC_MAX, all exact in a double. */
static const double pow10_tab[COLENC_DEC_MAX + 1] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
};

static uint64_t dbits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bitsd(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof(d));
    return d;
}

/* m with (double)m / 10^e == v bit for bit, or false. */
static bool dec_fits(double v, unsigned e, int64_t *m)
{
    double s = v * pow10_tab[e];
    int64_t r;

    if (!(s > -9007199254740992.0 && s < 9007199254740992.0)) /* |s| < 2^53; false for NaN */
        return false;
    r = (int64_t)s; /* toward zero, then to the nearest */
    if (s - (double)r >= 0.5)
        r++;
    else if ((double)r - s >= 0.5)
        r--;
    *m = r;
    return dbits((double)r / pow10_tab[e]) == dbits(v);
}

/* The smallest exponent that represents every value, or -1. */
static int dec_exponent(const double *v, size_t n)
{
    int64_t m;
    unsigned e = 0;
    size_t i = 0;

    /* Every value must fit the exponent; a failure raises it and retries. */
    while (i < n) {
        if (dec_fits(v[i], e, &m)) {
            i++;
            continue;
        }
        if (++e > COLENC_DEC_MAX)
            return -1;
        i = 0;
    }
    return (int)e;
}

/* Appends the column of v in layout enc (e: the exponent for DEC). */
static void put_floats_as(struct strbuf *out, const double *v, size_t n, int enc, int e)
{
    uint8_t *p;

    if (enc == COLENC_FLOAT_DEC) {
        int64_t *m = calloc_array(n, sizeof(*m));

        for (size_t i = 0; i < n; i++)
            dec_fits(v[i], (unsigned)e, &m[i]);
        strbuf_addch(out, COLENC_FLOAT_DEC);
        strbuf_addch(out, (char)e);
        colenc_put_ints(out, m, n);
        free(m);
        return;
    }
    strbuf_grow(out, 1 + 8 * n);
    p = (uint8_t *)out->buf + out->len;
    *p++ = (uint8_t)enc;
    if (enc == COLENC_FLOAT_RAW) {
        for (size_t i = 0; i < n; i++) {
            uint64_t u = dbits(v[i]);

            for (int j = 0; j < 8; j++)
                *p++ = (uint8_t)(u >> (8 * j));
        }
    } else {
        for (int j = 0; j < 8; j++)
            for (size_t i = 0; i < n; i++)
                *p++ = (uint8_t)(dbits(v[i]) >> (8 * j));
    }
    colenc_buf_setlen(out, (size_t)(p - (uint8_t *)out->buf));
}

/* Bytes LZ4 makes of sb's contents. */
static int lz4_size(const struct strbuf *sb, struct strbuf *scratch)
{
    int bound = LZ4_compressBound((int)sb->len);

    strbuf_reset(scratch);
    strbuf_grow(scratch, (size_t)bound);
    return LZ4_compress_default(sb->buf, scratch->buf, (int)sb->len, bound);
}

void colenc_put_floats(struct strbuf *out, const double *v, size_t n)
{
    static const int layouts[] = {COLENC_FLOAT_DEC, COLENC_FLOAT_SHUFFLE, COLENC_FLOAT_RAW};
    struct strbuf cand = STRBUF_INIT;
    struct strbuf best = STRBUF_INIT;
    struct strbuf scratch = STRBUF_INIT;
    int best_size = 0;
    int e;

    if (n == 0)
        return;
    e = dec_exponent(v, n);
    if (force_float != -1) {
        put_floats_as(out, v, n,
                      force_float == COLENC_FLOAT_DEC && e < 0 ? COLENC_FLOAT_RAW : force_float, e);
        return;
    }
    /*
     * Which layout compresses best depends on the values: shuffling wins
     * on noisy measurements, raw bytes on a few repeated values, decimals
     * on short decimal fractions, except some that shuffle better still.
     * Try each with LZ4 (a few tens of ns per value) and keep the smallest.
     */
    for (size_t i = 0; i < ST_ARRAY_SIZE(layouts); i++) {
        int size;

        if (layouts[i] == COLENC_FLOAT_DEC && e < 0)
            continue;
        strbuf_reset(&cand);
        put_floats_as(&cand, v, n, layouts[i], e);
        size = lz4_size(&cand, &scratch);
        if (!best.len || (size > 0 && size < best_size)) {
            struct strbuf t = best;

            best = cand;
            cand = t;
            best_size = size;
        }
    }
    strbuf_add(out, best.buf, best.len);
    strbuf_release(&cand);
    strbuf_release(&best);
    strbuf_release(&scratch);
}

enum st_status colenc_get_floats(struct colenc_rd *rd, double *out, size_t n)
{
    enum st_status rc;
    int64_t *m;
    uint8_t enc;
    unsigned e;

    if (n == 0)
        return ST_OK;
    if (rd->p == rd->end)
        return ST_ECORRUPT;
    enc = *rd->p++;
    switch (enc) {
    case COLENC_FLOAT_RAW:
    case COLENC_FLOAT_SHUFFLE:
        if ((size_t)(rd->end - rd->p) / 8 < n)
            return ST_ECORRUPT;
        for (size_t i = 0; i < n; i++) {
            uint64_t u = 0;

            for (unsigned j = 0; j < 8; j++) {
                size_t at = enc == COLENC_FLOAT_RAW ? 8 * i + j : j * n + i;

                u |= (uint64_t)rd->p[at] << (8 * j);
            }
            out[i] = bitsd(u);
        }
        rd->p += 8 * n;
        return ST_OK;
    case COLENC_FLOAT_DEC:
        if (rd->p == rd->end || *rd->p > COLENC_DEC_MAX)
            return ST_ECORRUPT;
        e = *rd->p++;
        m = calloc_array(n, sizeof(*m));
        rc = colenc_get_ints(rd, m, n);
        for (size_t i = 0; !rc && i < n; i++)
            out[i] = (double)m[i] / pow10_tab[e];
        free(m);
        return rc;
    }
    return ST_ECORRUPT;
}

/* ------------------------------------------------------------------ */
/* Strings */

static uint64_t str_hash(const uint8_t *p, uint32_t len)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (uint32_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h ^ (h >> 29);
}

static bool str_eq(const struct colenc_str *a, const struct colenc_str *b)
{
    return a->len == b->len && (a->len == 0 || !memcmp(a->ptr, b->ptr, a->len));
}

/*
 * Builds the dictionary of v: idx[i] is the entry of v[i], *dict the
 * first occurrence of each distinct value (indexes into v), in order.
 * Returns the number of entries.
 */
static size_t dict_build(const struct colenc_str *v, size_t n, uint32_t *idx, uint32_t *dict)
{
    size_t cap = 16;
    size_t nd = 0;
    uint32_t *slots;

    while (cap < 2 * n)
        cap *= 2;
    slots = calloc_array(cap, sizeof(*slots)); /* entry + 1; 0 is empty */
    for (size_t i = 0; i < n; i++) {
        size_t s = (size_t)str_hash(v[i].ptr, v[i].len) & (cap - 1);

        for (;;) {
            uint32_t e = slots[s];

            if (!e) {
                dict[nd] = (uint32_t)i;
                slots[s] = (uint32_t)++nd;
                idx[i] = (uint32_t)(nd - 1);
                break;
            }
            if (str_eq(&v[dict[e - 1]], &v[i])) {
                idx[i] = e - 1;
                break;
            }
            s = (s + 1) & (cap - 1);
        }
    }
    free(slots);
    return nd;
}

static void put_plain(struct strbuf *out, const struct colenc_str *v, size_t n,
                      const uint32_t *pick)
{
    for (size_t i = 0; i < n; i++)
        colenc_put_varint(out, v[pick ? pick[i] : i].len);
    for (size_t i = 0; i < n; i++) {
        const struct colenc_str *s = &v[pick ? pick[i] : i];

        if (s->len)
            strbuf_add(out, s->ptr, s->len);
    }
}

void colenc_put_strs(struct strbuf *out, const struct colenc_str *v, size_t n)
{
    uint32_t *idx;
    uint32_t *dict;
    size_t nd;
    uint64_t plain_len = 0;
    uint64_t dict_len;

    if (n == 0)
        return;
    st_assert(n <= UINT32_MAX);
    idx = calloc_array(n, sizeof(*idx));
    dict = calloc_array(n, sizeof(*dict));
    nd = dict_build(v, n, idx, dict);
    for (size_t i = 0; i < n; i++)
        plain_len += colenc_varint_len(v[i].len) + v[i].len;
    dict_len = colenc_varint_len(nd);
    for (size_t d = 0; d < nd; d++)
        dict_len += colenc_varint_len(v[dict[d]].len) + v[dict[d]].len;
    for (size_t i = 0; i < n; i++)
        dict_len += colenc_varint_len(idx[i]);

    if (dict_len < plain_len) {
        strbuf_addch(out, COLENC_STR_DICT);
        colenc_put_varint(out, nd);
        put_plain(out, v, nd, dict);
        for (size_t i = 0; i < n; i++)
            colenc_put_varint(out, idx[i]);
    } else {
        strbuf_addch(out, COLENC_STR_PLAIN);
        put_plain(out, v, n, NULL);
    }
    free(dict);
    free(idx);
}

/* Reads n lengths then n byte strings into out (slices of rd's bytes). */
static enum st_status get_plain(struct colenc_rd *rd, struct colenc_str *out, size_t n)
{
    uint64_t total = 0;
    uint64_t len;

    for (size_t i = 0; i < n; i++) {
        if (!colenc_get_varint(rd, &len) || len > UINT32_MAX)
            return ST_ECORRUPT;
        out[i].len = (uint32_t)len;
        total += len;
    }
    if (total > (uint64_t)(rd->end - rd->p))
        return ST_ECORRUPT;
    for (size_t i = 0; i < n; i++) {
        out[i].ptr = rd->p;
        rd->p += out[i].len;
    }
    return ST_OK;
}

enum st_status colenc_get_strs(struct colenc_rd *rd, struct colenc_str *out, size_t n)
{
    struct colenc_str *dict;
    enum st_status rc;
    uint64_t nd;
    uint64_t ix;

    if (n == 0)
        return ST_OK;
    if (rd->p == rd->end)
        return ST_ECORRUPT;
    switch (*rd->p++) {
    case COLENC_STR_PLAIN:
        return get_plain(rd, out, n);
    case COLENC_STR_DICT:
        /* Each entry takes at least one byte: bounds the allocation. */
        if (!colenc_get_varint(rd, &nd) || nd == 0 || nd > n || nd > (uint64_t)(rd->end - rd->p))
            return ST_ECORRUPT;
        dict = calloc_array((size_t)nd, sizeof(*dict));
        rc = get_plain(rd, dict, (size_t)nd);
        for (size_t i = 0; !rc && i < n; i++) {
            if (!colenc_get_varint(rd, &ix) || ix >= nd)
                rc = ST_ECORRUPT;
            else
                out[i] = dict[ix];
        }
        free(dict);
        return rc;
    }
    return ST_ECORRUPT;
}
