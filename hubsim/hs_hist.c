#include "hs_hist.h"

#include <string.h>

void hs_hist_init(struct hs_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

/*
 * Below 2 * SUB the index is the value. Above, with m the highest set bit,
 * the value shifted right by m - SUB_BITS lies in [SUB, 2 * SUB) and picks
 * one of SUB buckets in the block of that power of two.
 */
uint32_t hs_hist_index(uint64_t value)
{
    if (value > HS_HIST_MAX)
        value = HS_HIST_MAX;
    if (value < 2 * HS_HIST_SUB)
        return (uint32_t)value;
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned shift = msb - HS_HIST_SUB_BITS;
    return (shift + 1) * HS_HIST_SUB + (uint32_t)(value >> shift) - HS_HIST_SUB;
}

/* The smallest value that lands in bucket index. */
uint64_t hs_hist_low(uint32_t index)
{
    if (index < 2 * HS_HIST_SUB)
        return index;
    unsigned shift = index / HS_HIST_SUB - 1;
    uint64_t sub = HS_HIST_SUB + index % HS_HIST_SUB;
    return sub << shift;
}

/* The largest value that lands in bucket index. */
uint64_t hs_hist_high(uint32_t index)
{
    if (index < 2 * HS_HIST_SUB)
        return index;
    unsigned shift = index / HS_HIST_SUB - 1;
    return hs_hist_low(index) + (UINT64_C(1) << shift) - 1;
}

void hs_hist_record(struct hs_hist *h, uint64_t value)
{
    if (value > HS_HIST_MAX)
        value = HS_HIST_MAX;
    h->bucket[hs_hist_index(value)]++;
    h->count++;
    h->sum += value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void hs_hist_merge(struct hs_hist *dst, const struct hs_hist *src)
{
    if (src->count == 0)
        return;
    for (uint32_t i = 0; i < HS_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hs_hist_quantile(const struct hs_hist *h, double q)
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
    for (uint32_t i = 0; i < HS_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen < rank)
            continue;
        uint64_t v = hs_hist_high(i);
        if (v > h->max)
            v = h->max;
        return v < h->min ? h->min : v;
    }
    return h->max;
}

double hs_hist_mean(const struct hs_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
