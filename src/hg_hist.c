#include "hg_hist.h"

#include <string.h>

void hg_hist_init(struct hg_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

/*
 * Below 2 * SUB the index is the value. Above, with m the highest set bit,
 * the value shifted right by m - SUB_BITS lies in [SUB, 2 * SUB) and picks
 * one of SUB buckets in the block of that power of two.
 */
uint32_t hg_hist_index(uint64_t value)
{
    if (value > HG_HIST_MAX)
        value = HG_HIST_MAX;
    if (value < 2 * HG_HIST_SUB)
        return (uint32_t)value;
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned shift = msb - HG_HIST_SUB_BITS;
    return (shift + 1) * HG_HIST_SUB + (uint32_t)(value >> shift) - HG_HIST_SUB;
}

/* The smallest value that lands in bucket index. */
uint64_t hg_hist_low(uint32_t index)
{
    if (index < 2 * HG_HIST_SUB)
        return index;
    unsigned shift = index / HG_HIST_SUB - 1;
    uint64_t sub = HG_HIST_SUB + index % HG_HIST_SUB;
    return sub << shift;
}

/* The largest value that lands in bucket index. */
uint64_t hg_hist_high(uint32_t index)
{
    if (index < 2 * HG_HIST_SUB)
        return index;
    unsigned shift = index / HG_HIST_SUB - 1;
    return hg_hist_low(index) + (UINT64_C(1) << shift) - 1;
}

void hg_hist_record(struct hg_hist *h, uint64_t value)
{
    if (value > HG_HIST_MAX)
        value = HG_HIST_MAX;
    h->bucket[hg_hist_index(value)]++;
    h->count++;
    h->sum += value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void hg_hist_merge(struct hg_hist *dst, const struct hg_hist *src)
{
    if (src->count == 0)
        return;
    for (uint32_t i = 0; i < HG_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hg_hist_quantile(const struct hg_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    double want = q * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HG_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen < rank)
            continue;
        uint64_t v = hg_hist_high(i);
        if (v > h->max)
            v = h->max;
        return v < h->min ? h->min : v;
    }
    return h->max;
}

double hg_hist_mean(const struct hg_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
