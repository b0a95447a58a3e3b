/*
 * Log-linear histogram for latencies (see lg_hist.h).
 *
 * Bucket layout: values v < 256 have one bucket each (index v). A value
 * with its highest set bit at e >= 8 lies in [2^e, 2^(e+1)); that range is
 * split into 128 buckets of width 2^(e-7), so the bucket index is
 * 256 + (e - 8) * 128 + (v >> (e - 7)) - 128. A bucket's width is at most
 * 1/128 of its lower bound, and reporting its middle keeps the error under
 * 1/256. Values of 2^37 ns and more are counted in the last bucket and in
 * `clamped`; min and max are kept exactly.
 */
#include "lg_hist.h"

#include <math.h>
#include <string.h>

#define LINEAR_LIMIT (1u << LG_HIST_LINEAR_BITS)
#define SUB_COUNT    (1u << LG_HIST_SUB_BITS)

static unsigned bucket_of(uint64_t v)
{
    unsigned e;

    if (v < LINEAR_LIMIT)
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v);
    return LINEAR_LIMIT + (e - LG_HIST_LINEAR_BITS) * SUB_COUNT +
           (unsigned)(v >> (e - LG_HIST_SUB_BITS)) - SUB_COUNT;
}

/* The middle of bucket i. */
static uint64_t bucket_mid(unsigned i)
{
    unsigned k;
    unsigned e;
    uint64_t sub;
    uint64_t width;

    if (i < LINEAR_LIMIT)
        return i;
    k = i - LINEAR_LIMIT;
    e = LG_HIST_LINEAR_BITS + k / SUB_COUNT;
    sub = SUB_COUNT + k % SUB_COUNT;
    width = (uint64_t)1 << (e - LG_HIST_SUB_BITS);
    return sub * width + width / 2;
}

void lg_hist_init(struct lg_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void lg_hist_record(struct lg_hist *h, uint64_t v)
{
    const uint64_t top = ((uint64_t)1 << LG_HIST_MAX_BITS) - 1;

    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    if (v > top) {
        h->clamped++;
        v = top;
    }
    h->buckets[bucket_of(v)]++;
}

void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src)
{
    unsigned i;

    if (src->count == 0)
        return;
    dst->count += src->count;
    dst->sum += src->sum;
    dst->clamped += src->clamped;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    for (i = 0; i < LG_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

uint64_t lg_hist_percentile(const struct lg_hist *h, double p)
{
    uint64_t rank;
    uint64_t seen = 0;
    uint64_t v;
    unsigned i;

    if (h->count == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    if (p < 0.0)
        p = 0.0;
    rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank == 0)
        rank = 1;
    for (i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank)
            break;
    }
    if (i == LG_HIST_BUCKETS)
        return h->max;
    v = bucket_mid(i);
    if (v < h->min)
        v = h->min;
    if (v > h->max)
        v = h->max;
    return v;
}

double lg_hist_mean(const struct lg_hist *h)
{
    if (h->count == 0)
        return 0.0;
    return (double)h->sum / (double)h->count;
}
