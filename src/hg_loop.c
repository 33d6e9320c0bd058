#include "hg_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define HG_LOOP_BATCH 256

static void hg__heap_swap(struct hg_loop *loop, uint32_t a, uint32_t b);
static void hg__heap_up(struct hg_loop *loop, uint32_t i);
static void hg__heap_down(struct hg_loop *loop, uint32_t i);
static bool hg__heap_grow(struct hg_loop *loop);
static int hg__next_wait(struct hg_loop *loop, int max_wait_ms);
static void hg__run_timers(struct hg_loop *loop);
static void hg__run_deferred(struct hg_loop *loop);

uint64_t hg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int hg_loop_init(struct hg_loop *loop)
{
    *loop = (struct hg_loop){0};
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -errno;
    loop->now = hg_now_ms();
    return 0;
}

void hg_loop_deinit(struct hg_loop *loop)
{
    hg__run_deferred(loop);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->heap);
    loop->heap = NULL;
    loop->epfd = -1;
}

void hg_loop_stop(struct hg_loop *loop)
{
    loop->stopping = true;
}

int hg_loop_run(struct hg_loop *loop)
{
    loop->stopping = false;
    while (!loop->stopping) {
        int rc = hg_loop_run_once(loop, -1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * One wake-up. Events are dispatched in the order epoll returned them; an
 * owner freed during the batch must go through hg_loop_defer() so that a
 * later event of the same batch never points at freed memory.
 */
int hg_loop_run_once(struct hg_loop *loop, int max_wait_ms)
{
    struct epoll_event events[HG_LOOP_BATCH];
    int n = epoll_wait(loop->epfd, events, HG_LOOP_BATCH,
                       hg__next_wait(loop, max_wait_ms));
    if (n < 0 && errno != EINTR)
        return -errno;
    loop->now = hg_now_ms();
    for (int i = 0; i < n; i++) {
        struct hg_io *io = events[i].data.ptr;
        io->cb(loop, io, events[i].events);
    }
    hg__run_timers(loop);
    hg__run_deferred(loop);
    return 0;
}

int hg_io_add(struct hg_loop *loop, struct hg_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return -errno;
    return 0;
}

int hg_io_mod(struct hg_loop *loop, struct hg_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    return 0;
}

int hg_io_del(struct hg_loop *loop, struct hg_io *io)
{
    if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0)
        return -errno;
    return 0;
}

void hg_timer_start(struct hg_loop *loop, struct hg_timer *timer,
                    uint64_t delay_ms)
{
    if (timer->slot != 0)
        hg_timer_stop(loop, timer);
    if (loop->nheap == loop->heap_cap && !hg__heap_grow(loop))
        abort(); /* out of memory for a few pointers: nothing sane left */
    timer->when = loop->now + delay_ms;
    loop->heap[loop->nheap] = timer;
    timer->slot = ++loop->nheap;
    hg__heap_up(loop, loop->nheap - 1);
}

void hg_timer_stop(struct hg_loop *loop, struct hg_timer *timer)
{
    if (timer->slot == 0)
        return;
    uint32_t i = timer->slot - 1;
    uint32_t last = --loop->nheap;
    timer->slot = 0;
    if (i == last)
        return;
    loop->heap[i] = loop->heap[last];
    loop->heap[i]->slot = i + 1;
    hg__heap_up(loop, i);
    hg__heap_down(loop, loop->heap[i]->slot - 1);
}

void hg_loop_defer(struct hg_loop *loop, struct hg_defer *defer, hg_defer_cb cb)
{
    defer->cb = cb;
    defer->next = loop->deferred;
    loop->deferred = defer;
}

static bool hg__heap_grow(struct hg_loop *loop)
{
    uint32_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
    struct hg_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
    if (heap == NULL)
        return false;
    loop->heap = heap;
    loop->heap_cap = cap;
    return true;
}

static void hg__heap_swap(struct hg_loop *loop, uint32_t a, uint32_t b)
{
    struct hg_timer *t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->slot = a + 1;
    loop->heap[b]->slot = b + 1;
}

static void hg__heap_up(struct hg_loop *loop, uint32_t i)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= loop->heap[i]->when)
            break;
        hg__heap_swap(loop, i, parent);
        i = parent;
    }
}

static void hg__heap_down(struct hg_loop *loop, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->nheap && loop->heap[l]->when < loop->heap[m]->when)
            m = l;
        if (r < loop->nheap && loop->heap[r]->when < loop->heap[m]->when)
            m = r;
        if (m == i)
            return;
        hg__heap_swap(loop, i, m);
        i = m;
    }
}

/* Milliseconds epoll may sleep: until the first timer, capped by max. */
static int hg__next_wait(struct hg_loop *loop, int max_wait_ms)
{
    if (loop->deferred != NULL)
        return 0;
    if (loop->nheap == 0)
        return max_wait_ms;
    uint64_t now = hg_now_ms();
    uint64_t when = loop->heap[0]->when;
    uint64_t wait = when > now ? when - now : 0;
    if (max_wait_ms >= 0 && wait > (uint64_t)max_wait_ms)
        return max_wait_ms;
    return wait > 60000 ? 60000 : (int)wait;
}

static void hg__run_timers(struct hg_loop *loop)
{
    while (loop->nheap > 0 && loop->heap[0]->when <= loop->now) {
        struct hg_timer *t = loop->heap[0];
        hg_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

static void hg__run_deferred(struct hg_loop *loop)
{
    while (loop->deferred != NULL) {
        struct hg_defer *d = loop->deferred;
        loop->deferred = d->next;
        d->cb(loop, d);
    }
}
