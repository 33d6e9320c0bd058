/*
 * hs_hist: a log-linear histogram in the manner of HdrHistogram, for
 * latencies in microseconds. Values below 2 * HS_HIST_SUB are kept exactly;
 * above that every power of two is split into HS_HIST_SUB equal buckets, so
 * a value is known to within 1/HS_HIST_SUB (0.8 %) of itself. The size is
 * fixed, recording is O(1) and two histograms merge by adding buckets, so
 * each worker keeps its own and the reporter sums them.
 */
#ifndef HS_HIST_H
#define HS_HIST_H

#include <stdint.h>

#define HS_HIST_SUB_BITS 7
#define HS_HIST_SUB      (1u << HS_HIST_SUB_BITS)
#define HS_HIST_MAX_BITS 40 /* larger values are recorded as 2^40 - 1 */
#define HS_HIST_MAX      ((UINT64_C(1) << HS_HIST_MAX_BITS) - 1)
#define HS_HIST_BUCKETS                                                        \
    ((HS_HIST_MAX_BITS - HS_HIST_SUB_BITS + 1) * HS_HIST_SUB)

struct hs_hist {
    uint64_t count;
    uint64_t min; /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t sum;
    uint64_t bucket[HS_HIST_BUCKETS];
};

/* Empties h (also the way to reset it). */
void hs_hist_init(struct hs_hist *h);

/* Adds one value; values above HS_HIST_MAX count as HS_HIST_MAX. */
void hs_hist_record(struct hs_hist *h, uint64_t value);

/* Adds every count of src into dst. */
void hs_hist_merge(struct hs_hist *dst, const struct hs_hist *src);

/*
 * The value at quantile q (0..1): the highest value of the bucket that
 * holds the ceil(q * count)-th smallest value, clipped to [min, max], so
 * quantile 1 is the exact maximum. 0 for an empty histogram.
 */
uint64_t hs_hist_quantile(const struct hs_hist *h, double q);

/* The mean, or 0 for an empty histogram. */
double hs_hist_mean(const struct hs_hist *h);

/* Bucket arithmetic, exposed for tests. */
uint32_t hs_hist_index(uint64_t value);
uint64_t hs_hist_low(uint32_t index);
uint64_t hs_hist_high(uint32_t index);

#endif
