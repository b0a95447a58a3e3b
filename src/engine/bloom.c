/*
 * Bloom filters of segment files (see bloom.h for the format and hash).
 *
 * A classic filter with double hashing: one 64-bit hash per key gives all
 * k probe positions. The writer collects the hash of every distinct key
 * and builds the filter once, sized for the final count, when the segment
 * is finished; the reader keeps the serialized bytes and probes them in
 * place. A cache-blocked layout would take one cache miss per probe
 * instead of k but raises the false-positive rate at 10 bits per key; a
 * point read that passes the filter goes on to decode a whole block, so
 * the rate matters more than the misses.
 */
#include "engine/bloom.h"

#include <string.h>

#include "engine/colenc.h"
#include "util/le.h"

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

uint64_t bloom_hash(const void *key, size_t len)
{
    const uint64_t c = UINT64_C(0x9e3779b97f4a7c15);
    const uint8_t *p = key;
    uint64_t h = UINT64_C(0x243f6a8885a308d3) ^ ((uint64_t)len * c);

    for (size_t i = 0; i < len; i += 8) {
        size_t n = ST_MIN(len - i, (size_t)8);
        uint64_t w = 0;

        for (size_t j = 0; j < n; j++)
            w |= (uint64_t)p[i + j] << (8 * j);
        h = rotl64((h ^ mix(w)) * c, 31);
    }
    return mix(h);
}

static uint64_t probe_step(uint64_t h)
{
    return rotl64(h, 32) | 1;
}

void bloom_build(const uint64_t *hashes, size_t n, unsigned bits_per_key, struct strbuf *out)
{
    uint8_t hdr[BLOOM_HEADER] = {0};
    uint64_t m;
    uint32_t k;
    uint8_t *bits;

    st_assert(bits_per_key >= 1 && bits_per_key <= 64);
    k = (uint32_t)(bits_per_key * 69 / 100); /* ln 2 = 0.693 */
    if ((bits_per_key * 69) % 100 >= 50)
        k++;
    k = ST_MAX(k, 1u);
    k = ST_MIN(k, (uint32_t)BLOOM_MAX_K);
    m = (uint64_t)n * bits_per_key;
    m = (m + 63) / 64 * 64;
    st_assert(m <= BLOOM_MAX_BITS);

    hdr[0] = 1;
    hdr[1] = (uint8_t)k;
    le_put(hdr + 8, m, 8);
    strbuf_add(out, hdr, sizeof(hdr));
    if (!m)
        return;
    strbuf_grow(out, (size_t)(m / 8));
    bits = (uint8_t *)out->buf + out->len;
    memset(bits, 0, (size_t)(m / 8));
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hashes[i];
        uint64_t d = probe_step(h);

        for (uint32_t j = 0; j < k; j++, h += d) {
            uint64_t b = h % m;

            bits[b / 8] |= (uint8_t)(1u << (b % 8));
        }
    }
    colenc_buf_setlen(out, out->len + (size_t)(m / 8));
}

enum st_status bloom_parse(const void *buf, size_t len, struct bloom *out)
{
    const uint8_t *p = buf;
    uint64_t m = 0;

    if (len < BLOOM_HEADER || p[0] != 1 || p[2] || p[3] || p[4] || p[5] || p[6] || p[7])
        return ST_ECORRUPT;
    for (int i = 0; i < 8; i++)
        m |= (uint64_t)p[8 + i] << (8 * i);
    if (m % 64 || m > BLOOM_MAX_BITS || m / 8 != len - BLOOM_HEADER)
        return ST_ECORRUPT;
    if (m && (p[1] < 1 || p[1] > BLOOM_MAX_K))
        return ST_ECORRUPT;
    out->bits = p + BLOOM_HEADER;
    out->m = m;
    out->k = p[1];
    return ST_OK;
}

bool bloom_may_contain(const struct bloom *b, uint64_t h)
{
    uint64_t d = probe_step(h);

    if (!b->m)
        return false;
    for (uint32_t j = 0; j < b->k; j++, h += d) {
        uint64_t bit = h % b->m;

        if (!(b->bits[bit / 8] & (1u << (bit % 8))))
            return false;
    }
    return true;
}
