/*
 * le: little-endian integers in byte buffers, the byte order of every
 * on-disk format (WAL, segments, manifest, bloom filters, checkpoints).
 * Byte by byte, so alignment never matters; compilers turn the loops into
 * single loads and stores.
 */
#ifndef ST_UTIL_LE_H
#define ST_UTIL_LE_H

#include "util/common.h"
#include "util/strbuf.h"

/* Stores the low n bytes (1..8) of v at p. */
static inline void le_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Reads n bytes (1..8) at p. */
static inline uint64_t le_get(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Appends the low n bytes (1..8) of v to sb. */
static inline void le_add(struct strbuf *sb, uint64_t v, int n)
{
    uint8_t b[8];

    le_put(b, v, n);
    strbuf_add(sb, b, (size_t)n);
}

#endif
