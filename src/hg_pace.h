/*
 * hg_pace: new backend connections of one route, paced to a rate. After a
 * gateway or network blink, every device reconnects at once; a hub that
 * sees them all in one second throttles everyone. A route's connect_rate
 * lets connections through at that rate (with a burst of a tenth of a
 * second's worth) and queues the rest, each holding only its ClientHello
 * while it waits.
 *
 * The schedule is the gateway's: every worker takes its turns from one
 * shared slot time (in the route's stats record), so the rate and the
 * burst hold whatever the number of workers and however the kernel spreads
 * connections over them. The queue is the worker's: first come first
 * served among the connections a worker accepted. One hg_pace per route
 * name per worker, kept across reloads so that a reload neither resets the
 * schedule nor strands the queue.
 */
#ifndef HG_PACE_H
#define HG_PACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hg_loop.h"
#include "hg_stats.h"

struct hg_pace;

/* A waiter's link, embedded in the waiting object. */
struct hg_pace_wait {
    struct hg_pace_wait *prev, *next;
    struct hg_pace *pace; /* NULL when not waiting */
};

/* Called when a waiter's turn has come; it has left the queue. */
typedef void (*hg_pace_cb)(struct hg_pace_wait *wait);

struct hg_pace {
    struct hg_pace *next; /* in the worker's list */
    char *name;           /* the route's */
    struct hg_loop *loop;
    hg_pace_cb go;
    struct hg_stats *stats; /* the route's record: queued, queue timeouts */
    uint64_t interval_us;   /* between two connections; 0: not paced */
    uint64_t tolerance_us;  /* how far ahead of schedule a burst may run */
    atomic_uint_fast64_t *tat_us; /* when the next one is due: shared */
    atomic_uint_fast64_t own_tat; /* the schedule without a stats record */
    struct hg_pace_wait *head, *tail;
    uint32_t waiting;
    struct hg_timer timer; /* the head's turn */
};

/*
 * Makes a pace for the route called name (copied), not paced until
 * hg_pace_set_rate(). Paces given the same stats record share one
 * schedule. Returns NULL when out of memory.
 */
struct hg_pace *hg_pace_new(struct hg_loop *loop, const char *name,
                            struct hg_stats *stats, hg_pace_cb go);

/* Frees a pace; its waiters, if any, are simply forgotten. */
void hg_pace_free(struct hg_pace *p);

/*
 * Sets the rate: per_minute connections a minute for the whole gateway; 0
 * stops pacing and lets every waiter go at once. A faster rate applies at
 * once (the slot the slower one had set is brought forward); a slower one
 * from the next turn on.
 */
void hg_pace_set_rate(struct hg_pace *p, uint64_t per_minute);

/*
 * True when a connection may go now. Otherwise it joins the queue and
 * returns false; the pace's go callback runs when its turn comes, unless
 * hg_pace_cancel() took it out first.
 */
bool hg_pace_admit(struct hg_pace *p, struct hg_pace_wait *wait);

/* Takes a waiter out of its queue; nothing when it is not in one. */
void hg_pace_cancel(struct hg_pace_wait *wait);

#endif
