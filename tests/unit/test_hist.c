/*
 * Tests for hg_hist: bucket arithmetic (contiguous, exact below 2 * SUB,
 * within 1/SUB above), quantiles against a sorted reference, merging, and
 * the clamp at the top.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hg_hist.h"

static int cmp_u64(const void *a, const void *b);
static uint64_t ref_quantile(const uint64_t *sorted, size_t n, double q);

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The ceil(q * n)-th smallest value, the rank hg_hist_quantile uses. */
static uint64_t ref_quantile(const uint64_t *sorted, size_t n, double q)
{
    double want = q * (double)n;
    size_t rank = (size_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static void test_buckets_contiguous(void **state)
{
    (void)state;
    assert_int_equal(hg_hist_low(0), 0);
    for (uint32_t i = 0; i + 1 < HG_HIST_BUCKETS; i++) {
        assert_true(hg_hist_low(i) <= hg_hist_high(i));
        assert_int_equal(hg_hist_high(i) + 1, hg_hist_low(i + 1));
        assert_int_equal(hg_hist_index(hg_hist_low(i)), i);
        assert_int_equal(hg_hist_index(hg_hist_high(i)), i);
    }
    assert_int_equal(hg_hist_high(HG_HIST_BUCKETS - 1), HG_HIST_MAX);
    assert_int_equal(hg_hist_index(HG_HIST_MAX), HG_HIST_BUCKETS - 1);
    assert_int_equal(hg_hist_index(UINT64_MAX), HG_HIST_BUCKETS - 1);
}

static void test_precision(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 2 * HG_HIST_SUB; v++)
        assert_int_equal(hg_hist_high(hg_hist_index(v)), v);
    uint64_t x = 12345;
    for (int i = 0; i < 100000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t v = (x >> 24) & HG_HIST_MAX;
        uint32_t b = hg_hist_index(v);
        uint64_t width = hg_hist_high(b) - hg_hist_low(b) + 1;
        assert_true(hg_hist_low(b) <= v && v <= hg_hist_high(b));
        /* A bucket is never wider than 1/SUB of its lowest value. */
        assert_true(width <= 1 || width * HG_HIST_SUB <= hg_hist_low(b));
    }
}

static void test_empty(void **state)
{
    (void)state;
    struct hg_hist *h = malloc(sizeof(*h));
    hg_hist_init(h);
    assert_int_equal(hg_hist_quantile(h, 0.5), 0);
    assert_int_equal(hg_hist_quantile(h, 1), 0);
    assert_true(hg_hist_mean(h) == 0.0);
    assert_int_equal(h->count, 0);
    free(h);
}

static void test_quantiles_match_reference(void **state)
{
    (void)state;
    enum { N = 20000 };
    struct hg_hist *h = malloc(sizeof(*h));
    uint64_t *vals = malloc(N * sizeof(*vals));
    hg_hist_init(h);
    uint64_t x = 99;
    for (size_t i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        /* Latency-like: mostly small, a long tail. */
        vals[i] = (x >> 33) % 2000 + ((x & 0xFF) == 0 ? (x >> 40) : 0);
        hg_hist_record(h, vals[i]);
    }
    qsort(vals, N, sizeof(*vals), cmp_u64);
    const double qs[] = {0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t want = ref_quantile(vals, N, qs[i]);
        uint64_t got = hg_hist_quantile(h, qs[i]);
        uint32_t b = hg_hist_index(want);
        assert_true(got >= want);
        assert_true(got <= hg_hist_high(b));
    }
    assert_int_equal(hg_hist_quantile(h, 0), vals[0]);
    assert_int_equal(hg_hist_quantile(h, 1), vals[N - 1]);
    assert_int_equal(h->min, vals[0]);
    assert_int_equal(h->max, vals[N - 1]);
    free(vals);
    free(h);
}

static void test_small_exact(void **state)
{
    (void)state;
    struct hg_hist *h = malloc(sizeof(*h));
    hg_hist_init(h);
    for (uint64_t v = 1; v <= 100; v++)
        hg_hist_record(h, v);
    assert_int_equal(hg_hist_quantile(h, 0.5), 50);
    assert_int_equal(hg_hist_quantile(h, 0.99), 99);
    assert_int_equal(hg_hist_quantile(h, 0.999), 100);
    assert_true(hg_hist_mean(h) == 50.5);
    free(h);
}

static void test_merge(void **state)
{
    (void)state;
    struct hg_hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    struct hg_hist *all = malloc(sizeof(*all));
    hg_hist_init(a);
    hg_hist_init(b);
    hg_hist_init(all);
    for (uint64_t v = 0; v < 5000; v++) {
        hg_hist_record(v % 3 ? a : b, v * 37);
        hg_hist_record(all, v * 37);
    }
    hg_hist_merge(a, b);
    assert_memory_equal(a, all, sizeof(*a));
    /* Merging an empty histogram changes nothing, min included. */
    hg_hist_init(b);
    hg_hist_merge(a, b);
    assert_memory_equal(a, all, sizeof(*a));
    free(a);
    free(b);
    free(all);
}

static void test_clamp(void **state)
{
    (void)state;
    struct hg_hist *h = malloc(sizeof(*h));
    hg_hist_init(h);
    hg_hist_record(h, UINT64_MAX);
    hg_hist_record(h, 7);
    assert_int_equal(h->max, HG_HIST_MAX);
    assert_int_equal(hg_hist_quantile(h, 1), HG_HIST_MAX);
    assert_int_equal(hg_hist_quantile(h, 0.5), 7);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_contiguous),
        cmocka_unit_test(test_precision),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_quantiles_match_reference),
        cmocka_unit_test(test_small_exact),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_clamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
