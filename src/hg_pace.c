#include "hg_pace.h"

#include <stdlib.h>
#include <string.h>

/*
 * The schedule is the generic cell rate algorithm: tat is when the next
 * connection is due if they came exactly on time; one may go as long as
 * it is no more than tolerance_us ahead of that, and each one that goes
 * moves tat on by one interval. Workers share tat and move it with a
 * compare-and-swap, so no slot is given twice.
 */

static void hg__pace_timer_cb(struct hg_loop *loop, struct hg_timer *timer);
static bool hg__pace_take(struct hg_pace *p, uint64_t now_us);
static struct hg_pace_wait *hg__pace_pop(struct hg_pace *p);
static void hg__pace_arm(struct hg_pace *p);

struct hg_pace *hg_pace_new(struct hg_loop *loop, const char *name,
                            struct hg_stats *stats, hg_pace_cb go)
{
    struct hg_pace *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(name)) == NULL) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->stats = stats;
    p->tat_us = stats != NULL ? &stats->pace_tat_us : &p->own_tat;
    p->go = go;
    p->timer.cb = hg__pace_timer_cb;
    return p;
}

void hg_pace_free(struct hg_pace *p)
{
    if (p == NULL)
        return;
    hg_timer_stop(p->loop, &p->timer);
    while (hg__pace_pop(p) != NULL)
        ;
    free(p->name);
    free(p);
}

void hg_pace_set_rate(struct hg_pace *p, uint64_t per_minute)
{
    struct hg_pace_wait *w;

    if (per_minute == 0) {
        p->interval_us = p->tolerance_us = 0;
        hg_timer_stop(p->loop, &p->timer);
        while ((w = hg__pace_pop(p)) != NULL)
            p->go(w);
        return;
    }
    uint64_t interval = 60ull * 1000 * 1000 / per_minute;
    if (interval == 0)
        interval = 1;
    if (p->interval_us == 0 || interval < p->interval_us) {
        /* Faster: the next slot is at most one new interval away. */
        uint64_t limit = p->loop->now * 1000 + interval;
        uint64_t t = atomic_load(p->tat_us);
        while (t > limit && !atomic_compare_exchange_weak(p->tat_us, &t, limit))
            ;
    }
    p->interval_us = interval;
    /* A burst of a tenth of a second's worth, at least one. */
    uint64_t burst = per_minute / 600;
    p->tolerance_us = burst > 1 ? (burst - 1) * interval : 0;
    if (p->head != NULL)
        hg__pace_arm(p);
}

bool hg_pace_admit(struct hg_pace *p, struct hg_pace_wait *wait)
{
    uint64_t now_us = p->loop->now * 1000;

    if (p->interval_us == 0)
        return true;
    if (p->head == NULL && hg__pace_take(p, now_us))
        return true;
    *wait = (struct hg_pace_wait){.prev = p->tail, .pace = p};
    if (p->tail != NULL)
        p->tail->next = wait;
    else
        p->head = wait;
    p->tail = wait;
    p->waiting++;
    if (p->stats != NULL)
        hg_stats_add(&p->stats->queued, 1);
    if (p->head == wait)
        hg__pace_arm(p);
    return false;
}

void hg_pace_cancel(struct hg_pace_wait *wait)
{
    struct hg_pace *p = wait->pace;

    if (p == NULL)
        return;
    if (wait->prev != NULL)
        wait->prev->next = wait->next;
    else
        p->head = wait->next;
    if (wait->next != NULL)
        wait->next->prev = wait->prev;
    else
        p->tail = wait->prev;
    *wait = (struct hg_pace_wait){0};
    p->waiting--;
    if (p->stats != NULL)
        hg_stats_sub(&p->stats->queued, 1);
    if (p->head == NULL)
        hg_timer_stop(p->loop, &p->timer);
}

/* Lets waiters go while they are due, then waits for the next one. */
static void hg__pace_timer_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hg_pace *p = hg_container_of(timer, struct hg_pace, timer);
    uint64_t now_us = loop->now * 1000;

    while (p->head != NULL && hg__pace_take(p, now_us))
        p->go(hg__pace_pop(p));
    if (p->head != NULL)
        hg__pace_arm(p);
}

/* Takes the next slot if it is due by now_us; false when it is not. */
static bool hg__pace_take(struct hg_pace *p, uint64_t now_us)
{
    uint64_t t = atomic_load(p->tat_us);
    for (;;) {
        if (now_us + p->tolerance_us < t)
            return false;
        uint64_t next = (t > now_us ? t : now_us) + p->interval_us;
        if (atomic_compare_exchange_weak(p->tat_us, &t, next))
            return true;
    }
}

/* Takes the head out of the queue; NULL when there is none. */
static struct hg_pace_wait *hg__pace_pop(struct hg_pace *p)
{
    struct hg_pace_wait *w = p->head;
    if (w != NULL)
        hg_pace_cancel(w);
    return w;
}

/* Arms the timer for when the head is due (rounded up to the next ms). */
static void hg__pace_arm(struct hg_pace *p)
{
    uint64_t now_us = p->loop->now * 1000;
    uint64_t tat = atomic_load(p->tat_us);
    uint64_t due_us = tat > p->tolerance_us ? tat - p->tolerance_us : 0;
    uint64_t delay = due_us > now_us ? (due_us - now_us + 999) / 1000 : 0;
    hg_timer_start(p->loop, &p->timer, delay);
}
