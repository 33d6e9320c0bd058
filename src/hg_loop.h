/*
 * hg_loop: a small epoll event loop with timers, one per thread. Shared by
 * the gateway's workers, its main thread and the load tools.
 *
 * Owners embed struct hg_io and struct hg_timer in their own objects and
 * find themselves again with hg_container_of(). Objects that may still have
 * events pending in the current batch are freed through hg_loop_defer(),
 * which runs after the batch is done.
 */
#ifndef HG_LOOP_H
#define HG_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#define hg_container_of(ptr, type, member)                                     \
    ((type *)((char *)(ptr)-offsetof(type, member)))

struct hg_loop;
struct hg_io;
struct hg_timer;
struct hg_defer;

typedef void (*hg_io_cb)(struct hg_loop *loop, struct hg_io *io,
                         uint32_t events);
typedef void (*hg_timer_cb)(struct hg_loop *loop, struct hg_timer *timer);
typedef void (*hg_defer_cb)(struct hg_loop *loop, struct hg_defer *defer);

struct hg_io {
    int fd;
    hg_io_cb cb;
};

struct hg_timer {
    uint64_t when; /* monotonic ms */
    uint32_t slot; /* heap index + 1; 0 while not armed */
    hg_timer_cb cb;
};

struct hg_defer {
    struct hg_defer *next;
    hg_defer_cb cb;
};

struct hg_loop {
    int epfd;
    bool stopping;
    uint64_t now; /* monotonic ms, refreshed once per wake-up */
    struct hg_timer **heap;
    uint32_t nheap;
    uint32_t heap_cap;
    struct hg_defer *deferred;
};

/* Monotonic clock in milliseconds. */
uint64_t hg_now_ms(void);

/* Returns 0, or -errno when epoll cannot be created. */
int hg_loop_init(struct hg_loop *loop);
void hg_loop_deinit(struct hg_loop *loop);

/*
 * Runs until hg_loop_stop(). Each wake-up: epoll events, then due timers,
 * then deferred callbacks. Returns 0, or -errno if epoll_wait fails.
 */
int hg_loop_run(struct hg_loop *loop);

/* Runs one wake-up, waiting at most max_wait_ms (-1: until something). */
int hg_loop_run_once(struct hg_loop *loop, int max_wait_ms);

void hg_loop_stop(struct hg_loop *loop);

/* epoll_ctl wrappers; return 0 or -errno. */
int hg_io_add(struct hg_loop *loop, struct hg_io *io, uint32_t events);
int hg_io_mod(struct hg_loop *loop, struct hg_io *io, uint32_t events);
int hg_io_del(struct hg_loop *loop, struct hg_io *io);

/* Arms (or re-arms) a timer delay_ms from the loop's current time. */
void hg_timer_start(struct hg_loop *loop, struct hg_timer *timer,
                    uint64_t delay_ms);
void hg_timer_stop(struct hg_loop *loop, struct hg_timer *timer);

static inline bool hg_timer_active(const struct hg_timer *timer)
{
    return timer->slot != 0;
}

/* Queues cb to run after the current batch of events and timers. */
void hg_loop_defer(struct hg_loop *loop, struct hg_defer *defer,
                   hg_defer_cb cb);

#endif
