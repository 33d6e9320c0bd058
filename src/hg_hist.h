/*
 * hg_hist: a log-linear histogram in the manner of HdrHistogram, for
 * latencies in microseconds. Values below 2 * HG_HIST_SUB are kept exactly;
 * above that every power of two is split into HG_HIST_SUB equal buckets, so
 * a value is known to within 1/HG_HIST_SUB (0.8 %) of itself. The size is
 * fixed, recording is O(1) and two histograms merge by adding buckets, so
 * each worker keeps its own and the reporter sums them.
 */
#ifndef HG_HIST_H
#define HG_HIST_H

#include <stdint.h>

#define HG_HIST_SUB_BITS 7
#define HG_HIST_SUB      (1u << HG_HIST_SUB_BITS)
#define HG_HIST_MAX_BITS 40 /* larger values are recorded as 2^40 - 1 */
#define HG_HIST_MAX      ((UINT64_C(1) << HG_HIST_MAX_BITS) - 1)
#define HG_HIST_BUCKETS                                                        \
    ((HG_HIST_MAX_BITS - HG_HIST_SUB_BITS + 1) * HG_HIST_SUB)

struct hg_hist {
    uint64_t count;
    uint64_t min; /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t sum;
    uint64_t bucket[HG_HIST_BUCKETS];
};

/* Empties h (also the way to reset it). */
void hg_hist_init(struct hg_hist *h);

/* Adds one value; values above HG_HIST_MAX count as HG_HIST_MAX. */
void hg_hist_record(struct hg_hist *h, uint64_t value);

/* Adds every count of src into dst. */
void hg_hist_merge(struct hg_hist *dst, const struct hg_hist *src);

/*
 * The value at quantile q (0..1): the highest value of the bucket that
 * holds the ceil(q * count)-th smallest value, clipped to [min, max], so
 * quantile 1 is the exact maximum. 0 for an empty histogram.
 */
uint64_t hg_hist_quantile(const struct hg_hist *h, double q);

/* The mean, or 0 for an empty histogram. */
double hg_hist_mean(const struct hg_hist *h);

/* Bucket arithmetic, exposed for tests. */
uint32_t hg_hist_index(uint64_t value);
uint64_t hg_hist_low(uint32_t index);
uint64_t hg_hist_high(uint32_t index);

#endif
