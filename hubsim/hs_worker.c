#include "hs_worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hs_amqp.h"
#include "hs_device.h"
#include "hs_log.h"

#define HS_TICK_RAMP_MS 10  /* while starting devices */
#define HS_TICK_IDLE_MS 100 /* afterwards: notice phase changes */

static void *hs__thread(void *arg);
static void hs__on_tick(struct hg_loop *loop, struct hg_timer *t);
static void hs__ramp(struct hs_worker *w);
static uint64_t hs__storm(struct hs_worker *w, uint64_t wait);

int hs_worker_init(struct hs_worker *w, struct hs_run *run, unsigned id,
                   unsigned n)
{
    const struct hs_config *cfg = run->cfg;
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->run = run;
    hs_stats_init(&w->stats);
    int rc = hg_loop_init(&w->loop);
    if (rc < 0)
        return rc;
    w->tick.cb = hs__on_tick;
    w->ramp = cfg->ramp / n;
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
        w->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)(id + 1);
    w->ndevices = cfg->ndevices / n + (id < cfg->ndevices % n ? 1 : 0);
    w->devices = calloc(w->ndevices ? w->ndevices : 1, sizeof(*w->devices));
    w->wbuf = malloc(HS_WBUF_SIZE);
    w->pbuf = calloc(1, HS_PAYLOAD_MAX);
    w->rbuf = malloc(HS_RBUF_SIZE);
    if (!w->devices || !w->wbuf || !w->pbuf || !w->rbuf)
        return -ENOMEM;
    if (cfg->protocol >= HS_PROTO_AMQP && (rc = hs_amqp_init(w)) < 0)
        return rc;
    for (uint32_t i = 0; i < w->ndevices; i++) {
        uint32_t index = id + i * n;
        rc = hs_device_init(&w->devices[i], w, cfg->device_ids[index], index);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void hs_worker_deinit(struct hs_worker *w)
{
    for (uint32_t i = 0; w->devices && i < w->ndevices; i++)
        hs_device_deinit(&w->devices[i]);
    hs_amqp_deinit(w);
    free(w->devices);
    free(w->wbuf);
    free(w->pbuf);
    free(w->rbuf);
    hg_loop_deinit(&w->loop);
    hs_stats_deinit(&w->stats);
}

int hs_worker_start(struct hs_worker *w)
{
    return pthread_create(&w->thread, NULL, hs__thread, w);
}

void hs_worker_device_done(struct hs_worker *w)
{
    if (++w->finished == w->ndevices)
        hg_loop_stop(&w->loop);
}

static void *hs__thread(void *arg)
{
    struct hs_worker *w = arg;
    w->loop.now = hg_now_ms();
    w->t0 = w->loop.now;
    hg_timer_start(&w->loop, &w->tick, 0);
    int rc = w->ndevices ? hg_loop_run(&w->loop) : 0;
    if (rc < 0)
        hs_log_error("worker %u: event loop failed: %s", w->id, strerror(-rc));
    atomic_store(&w->done, true);
    return NULL;
}

/* Starts devices as the ramp allows and passes phase changes on. */
static void hs__on_tick(struct hg_loop *loop, struct hg_timer *t)
{
    struct hs_worker *w = hg_container_of(t, struct hs_worker, tick);
    int phase = atomic_load(&w->run->phase);
    if (phase != w->phase_seen) {
        w->phase_seen = phase;
        for (uint32_t i = 0; i < w->ndevices; i++)
            hs_device_phase(&w->devices[i], (enum hs_phase)phase);
    }
    if (phase == HS_PHASE_RUN)
        hs__ramp(w);
    if (w->finished == w->ndevices) {
        hg_loop_stop(loop);
        return;
    }
    bool ramping = phase == HS_PHASE_RUN && w->started < w->ndevices;
    uint64_t wait = ramping ? HS_TICK_RAMP_MS : HS_TICK_IDLE_MS;
    if (phase == HS_PHASE_RUN)
        wait = hs__storm(w, wait);
    hg_timer_start(loop, t, wait);
}

/*
 * --storm-at: when a storm's time has come, every device of this worker
 * drops its connection at once. Returns the tick's wait, shortened to meet
 * the next storm on time.
 */
static uint64_t hs__storm(struct hs_worker *w, uint64_t wait)
{
    const struct hs_config *cfg = w->run->cfg;
    uint64_t elapsed = w->loop.now - w->t0;
    if (w->storms_done < cfg->nstorms &&
        elapsed >= cfg->storm_at[w->storms_done]) {
        uint32_t dropped = 0;
        for (uint32_t i = 0; i < w->ndevices; i++)
            dropped += hs_device_storm(&w->devices[i]);
        if (w->id == 0)
            hs_stat_add(&w->stats.storms, 1);
        hs_log_info("storm %zu: worker %u dropped %u connections",
                    w->storms_done + 1, w->id, dropped);
        w->storms_done++;
    }
    if (w->storms_done < cfg->nstorms) {
        uint64_t left = cfg->storm_at[w->storms_done] - elapsed;
        if (left < wait)
            wait = left;
    }
    return wait;
}

/* Starts the devices whose turn has come: ramp per second since t0. */
static void hs__ramp(struct hs_worker *w)
{
    uint64_t target = w->ndevices;
    if (w->ramp > 0) {
        double due = (double)(w->loop.now - w->t0) * w->ramp / 1000.0;
        target = (uint64_t)due + 1;
    }
    if (target > w->ndevices)
        target = w->ndevices;
    while (w->started < target)
        hs_device_start(&w->devices[w->started++]);
}
