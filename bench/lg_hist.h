/*
 * A log-linear latency histogram in the manner of HdrHistogram: fixed
 * memory (32 KiB), values in nanoseconds from 0 to 2^37 ns (137 s), and a
 * relative error of at most 1/256 (0.4%) for every recorded value, so
 * percentiles need no stored samples.
 */
#ifndef ST_BENCH_LG_HIST_H
#define ST_BENCH_LG_HIST_H

#include <stdint.h>

/*
 * Values below 2^LG_HIST_LINEAR_BITS are counted exactly; every power of two
 * above that is split into 2^LG_HIST_SUB_BITS equal buckets.
 */
#define LG_HIST_LINEAR_BITS 8
#define LG_HIST_SUB_BITS    7
#define LG_HIST_MAX_BITS    37 /* highest tracked value is 2^37 - 1 ns */
#define LG_HIST_BUCKETS                                                                            \
    ((1u << LG_HIST_LINEAR_BITS) +                                                                 \
     (LG_HIST_MAX_BITS - LG_HIST_LINEAR_BITS) * (1u << LG_HIST_SUB_BITS))

struct lg_hist {
    uint64_t count;                    /* values recorded */
    uint64_t min;                      /* smallest value, exact (UINT64_MAX when empty) */
    uint64_t max;                      /* largest value, exact */
    uint64_t sum;                      /* sum of values, for the mean */
    uint64_t clamped;                  /* values above the range, counted in the last bucket */
    uint64_t buckets[LG_HIST_BUCKETS]; /* counts per bucket */
};

/* Empties h. */
void lg_hist_init(struct lg_hist *h);

/* Counts one value v (nanoseconds). */
void lg_hist_record(struct lg_hist *h, uint64_t v);

/* Adds every count of src to dst. */
void lg_hist_merge(struct lg_hist *dst, const struct lg_hist *src);

/*
 * The value below which p percent of the recorded values fall (p in
 * [0, 100]), as the middle of its bucket clamped to [min, max]; so p = 100
 * gives the exact maximum. Returns 0 for an empty histogram.
 */
uint64_t lg_hist_percentile(const struct lg_hist *h, double p);

/* The mean of the recorded values, 0 for an empty histogram. */
double lg_hist_mean(const struct lg_hist *h);

#endif
