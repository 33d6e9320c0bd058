/* Unit tests for hg_pace: admission, the queue's order, bursts, rates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hg_loop.h"
#include "hg_pace.h"

#define NWAIT 8

/* Waiters, and the order their turns came in. */
static struct hg_pace_wait waits[NWAIT];
static int order[NWAIT];
static uint64_t went_at[NWAIT];
static int ngone;
static struct hg_loop *test_loop;

static void go(struct hg_pace_wait *w)
{
    order[ngone] = (int)(w - waits);
    went_at[ngone] = hg_now_ms();
    ngone++;
}

static struct hg_pace *setup(struct hg_loop *loop, struct hg_stats *stats)
{
    assert_int_equal(hg_loop_init(loop), 0);
    test_loop = loop;
    ngone = 0;
    struct hg_pace *p = hg_pace_new(loop, "r", stats, go);
    assert_non_null(p);
    return p;
}

static void teardown(struct hg_loop *loop, struct hg_pace *p)
{
    hg_pace_free(p);
    hg_loop_deinit(loop);
}

/* Unpaced, everyone goes; the first one of a pace goes at once. */
static void test_admit(void **state)
{
    struct hg_loop loop;
    struct hg_stats stats = {0};
    struct hg_pace *p = setup(&loop, &stats);

    (void)state;
    assert_true(hg_pace_admit(p, &waits[0]));
    assert_true(hg_pace_admit(p, &waits[1]));
    hg_pace_set_rate(p, 600); /* 10/s: a burst of one */
    assert_true(hg_pace_admit(p, &waits[0]));
    assert_false(hg_pace_admit(p, &waits[1]));
    assert_false(hg_pace_admit(p, &waits[2]));
    assert_int_equal(p->waiting, 2);
    assert_int_equal(hg_stats_get(&stats.queued), 2);
    hg_pace_cancel(&waits[1]);
    hg_pace_cancel(&waits[1]); /* not waiting any more: nothing */
    assert_int_equal(p->waiting, 1);
    assert_int_equal(hg_stats_get(&stats.queued), 1);
    assert_ptr_equal(p->head, &waits[2]);
    hg_pace_cancel(&waits[2]);
    assert_null(p->head);
    assert_null(p->tail);
    assert_int_equal(hg_stats_get(&stats.queued), 0);
    teardown(&loop, p);
}

/*
 * A tenth of a second's worth goes at once, then the queue starts; two
 * workers' paces of one route share that burst and the rate.
 */
static void test_burst_shared(void **state)
{
    struct hg_loop loop;
    struct hg_stats stats = {0};
    struct hg_pace *p = setup(&loop, &stats);
    struct hg_pace *q = hg_pace_new(&loop, "r", &stats, go);
    struct hg_pace_wait more[NWAIT];
    int admitted = 0;

    (void)state;
    hg_pace_set_rate(p, 6000); /* 100/s: a burst of 10 */
    hg_pace_set_rate(q, 6000);
    assert_int_equal(p->interval_us, 10000);
    for (int i = 0; i < NWAIT; i++) {
        admitted += hg_pace_admit(p, &waits[i]);
        admitted += hg_pace_admit(q, &more[i]);
    }
    assert_int_equal(admitted, 10);
    assert_int_equal(p->waiting + q->waiting, 2 * NWAIT - 10);
    assert_int_equal(hg_stats_get(&stats.queued), 2 * NWAIT - 10);
    hg_pace_free(q);
    teardown(&loop, p);
}

/* A faster rate brings the next slot forward at once. */
static void test_faster_rate_applies_now(void **state)
{
    struct hg_loop loop;
    struct hg_pace *p = setup(&loop, NULL);

    (void)state;
    hg_pace_set_rate(p, 1); /* one a minute: the next slot is 60 s away */
    uint64_t t0 = hg_now_ms();
    loop.now = t0;
    assert_true(hg_pace_admit(p, &waits[0]));
    assert_false(hg_pace_admit(p, &waits[1]));
    hg_pace_set_rate(p, 600); /* 10/s */
    while (ngone < 1 && hg_now_ms() < t0 + 5000)
        assert_int_equal(hg_loop_run_once(&loop, 100), 0);
    assert_int_equal(ngone, 1);
    assert_true(went_at[0] < t0 + 1000);
    teardown(&loop, p);
}

/* Waiters go first come first served, one interval apart. */
static void test_queue_order(void **state)
{
    struct hg_loop loop;
    struct hg_pace *p = setup(&loop, NULL);

    (void)state;
    hg_pace_set_rate(p, 600); /* 10/s: one every 100 ms, no burst */
    uint64_t t0 = hg_now_ms();
    loop.now = t0;
    assert_true(hg_pace_admit(p, &waits[0]));
    for (int i = 1; i < 4; i++)
        assert_false(hg_pace_admit(p, &waits[i]));
    uint64_t deadline = t0 + 5000;
    while (ngone < 3 && hg_now_ms() < deadline)
        assert_int_equal(hg_loop_run_once(&loop, 100), 0);
    assert_int_equal(ngone, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(order[i], i + 1);
        /* Never early: the i-th waiter's turn is (i + 1) intervals on. */
        assert_true(went_at[i] >= t0 + 100 * (uint64_t)(i + 1));
    }
    assert_int_equal(p->waiting, 0);
    teardown(&loop, p);
}

/* Stopping the pace lets every waiter go at once, in order. */
static void test_rate_off_releases(void **state)
{
    struct hg_loop loop;
    struct hg_pace *p = setup(&loop, NULL);

    (void)state;
    hg_pace_set_rate(p, 1); /* one a minute */
    assert_true(hg_pace_admit(p, &waits[0]));
    for (int i = 1; i < 5; i++)
        assert_false(hg_pace_admit(p, &waits[i]));
    hg_pace_set_rate(p, 0);
    assert_int_equal(ngone, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(order[i], i + 1);
    assert_null(p->head);
    assert_false(hg_timer_active(&p->timer));
    assert_true(hg_pace_admit(p, &waits[5]));
    teardown(&loop, p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit),
        cmocka_unit_test(test_burst_shared),
        cmocka_unit_test(test_faster_rate_applies_now),
        cmocka_unit_test(test_queue_order),
        cmocka_unit_test(test_rate_off_releases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
