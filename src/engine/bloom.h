/*
 * Bloom filters over encoded keys, as stored in segment files (do not
 * change: on-disk format; docs/storage-format.md, "Segments").
 *
 * A filter is m bits (a multiple of 64) and k probes. A key's bits are
 * g_i = (h + i * d) mod m for i = 0 .. k-1, where h = bloom_hash(key)
 * and d = (h >> 32 | h << 32) | 1, 64-bit arithmetic (Kirsch and
 * Mitzenmacher's double hashing). Bit b is bit (b % 8) of byte b / 8.
 *
 * bloom_hash() is defined here rather than taken from key_hash(), which
 * is in-memory only and may change between versions: this one is part of
 * the file format and pinned by a test vector. On 8-byte little-endian
 * words w of the key (the last one zero-padded):
 *
 *   h = 0x243f6a8885a308d3 ^ (len * 0x9e3779b97f4a7c15)
 *   for each w:  h = rotl64((h ^ mix(w)) * 0x9e3779b97f4a7c15, 31)
 *   result:      mix(h)
 *   mix(x):      x ^= x >> 30; x *= 0xbf58476d1ce4e5b9;
 *                x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31
 *
 * Serialized filter (little-endian):
 *   u8  format, 1
 *   u8  k, 1..BLOOM_MAX_K (any value when m is 0)
 *   u16 reserved, 0
 *   u32 reserved, 0
 *   u64 m, a multiple of 64; 0 for a filter of no keys
 *   m / 8 bytes of bits
 *
 * With 10 bits per key and k = 7 the false-positive rate is about 0.8%.
 */
#ifndef ST_ENGINE_BLOOM_H
#define ST_ENGINE_BLOOM_H

#include "util/status.h"
#include "util/strbuf.h"

#define BLOOM_HEADER   16 /* bytes before the bits */
#define BLOOM_MAX_K    30
#define BLOOM_MAX_BITS (UINT64_C(1) << 35) /* 4 GiB of bits */

/* The hash of len bytes at key described above. */
uint64_t bloom_hash(const void *key, size_t len);

/*
 * Appends the serialized filter of the n hashes (bloom_hash() values;
 * duplicates are harmless) to out, sized at bits_per_key (1..64) bits per
 * hash with k = bits_per_key * ln 2 rounded, at least 1.
 */
void bloom_build(const uint64_t *hashes, size_t n, unsigned bits_per_key, struct strbuf *out);

/* A parsed filter: a view of serialized bytes, which must outlive it. */
struct bloom {
    const uint8_t *bits; /* m / 8 bytes */
    uint64_t m;          /* bits; 0 means no key is present */
    uint32_t k;          /* probes */
};

/*
 * Parses the serialized filter of exactly len bytes at buf. ST_ECORRUPT
 * when the header is invalid or len does not match m.
 */
enum st_status bloom_parse(const void *buf, size_t len, struct bloom *out);

/* False when the key of hash h is certainly absent. */
bool bloom_may_contain(const struct bloom *b, uint64_t h);

#endif
