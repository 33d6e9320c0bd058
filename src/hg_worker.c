#include "hg_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "hg_cidr.h"
#include "hg_daemon.h"
#include "hg_log.h"
#include "hg_net.h"
#include "hg_stats.h"

#define HG_ACCEPT_BATCH    64
#define HG_ACCEPT_PAUSE_MS 100
#define HG_SAMPLE_MS       1000

static void *hg__main(void *arg);
static void hg__cmd_cb(struct hg_loop *loop, struct hg_io *io, uint32_t events);
static void hg__switch(struct hg_worker *w);
static struct hg_wcfg *hg__wcfg_new(struct hg_worker *w, struct hg_config *cfg,
                                    uint64_t gen);
static void hg__wcfg_free(struct hg_wcfg *wc);
static void hg__pace_all(struct hg_worker *w, const struct hg_config *cfg);
static struct hg_pace *hg__pace_for(struct hg_worker *w,
                                    const struct hg_route_conf *r);
static void hg__wcfg_free_later(struct hg_worker *w, struct hg_wcfg *wc);
static void hg__wcfg_defer_cb(struct hg_loop *loop, struct hg_defer *defer);
static void hg__listen_all(struct hg_worker *w, struct hg_wcfg *wc);
static void hg__unlisten_all(struct hg_worker *w, struct hg_wcfg *wc);
static void hg__accept_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events);
static bool hg__accept_one(struct hg_worker *w, struct hg_wlisten *wl);
static enum hg_refuse hg__admit(struct hg_worker *w,
                                const struct hg_listener_conf *l);
static void hg__accept_pause(struct hg_worker *w, struct hg_wlisten *wl,
                             int err);
static void hg__resume_cb(struct hg_loop *loop, struct hg_timer *timer);
static void hg__drain_start(struct hg_worker *w);
static void hg__drain_cb(struct hg_loop *loop, struct hg_timer *timer);

/*
 * Creates the worker's loop and command eventfd and starts its thread.
 * Returns 0 or -errno; on failure nothing is left to clean up.
 */
int hg_worker_start(struct hg_worker *w, struct hg_daemon *d, unsigned id)
{
    *w = (struct hg_worker){.id = id, .daemon = d, .accepting = true};
    int rc = hg_loop_init(&w->loop);
    if (rc < 0)
        return rc;
    w->bufs = calloc(HG_BUF_CACHE, sizeof(*w->bufs));
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0 || w->bufs == NULL) {
        rc = fd < 0 ? -errno : -ENOMEM;
        goto fail_loop;
    }
    w->cmd_io = (struct hg_io){.fd = fd, .cb = hg__cmd_cb};
    rc = hg_io_add(&w->loop, &w->cmd_io, EPOLLIN);
    if (rc < 0)
        goto fail_fd;
    hg_worker_post(w, HG_WORKER_SWITCH);
    rc = -pthread_create(&w->thread, NULL, hg__main, w);
    if (rc < 0)
        goto fail_fd;
    return 0;
fail_fd:
    if (fd >= 0)
        close(fd);
fail_loop:
    free(w->bufs);
    hg_loop_deinit(&w->loop);
    return rc;
}

/* Asks the worker to act on cmd; callable from any thread. */
void hg_worker_post(struct hg_worker *w, enum hg_worker_cmd cmd)
{
    atomic_fetch_or(&w->cmds, cmd);
    uint64_t one = 1;
    ssize_t rc = write(w->cmd_io.fd, &one, sizeof(one));
    (void)rc; /* a full counter still wakes the worker */
}

void hg_worker_join(struct hg_worker *w)
{
    pthread_join(w->thread, NULL);
    close(w->cmd_io.fd);
    for (uint32_t i = 0; i < w->nbufs; i++)
        free(w->bufs[i]);
    hg_worker_pipes_release(w);
    free(w->bufs);
    while (w->paces != NULL) {
        struct hg_pace *p = w->paces;
        w->paces = p->next;
        hg_pace_free(p);
    }
    hg_loop_deinit(&w->loop);
}

void *hg_worker_buf_get(struct hg_worker *w)
{
    if (w->nbufs > 0)
        return w->bufs[--w->nbufs];
    return malloc(HG_BUF_SIZE);
}

void hg_worker_buf_put(struct hg_worker *w, void *buf)
{
    if (w->nbufs < HG_BUF_CACHE)
        w->bufs[w->nbufs++] = buf;
    else
        free(buf);
}

/*
 * Tunnels come first: a new pipe's two descriptors are taken only within
 * the budget that the daemon leaves after what max_connections may need.
 */
static struct hg_pipe *hg__pipe_new(struct hg_worker *w)
{
    struct hg_daemon *d = w->daemon;
    if (w->pipes_used >= HG_PIPE_MAX)
        return NULL;
    if (atomic_fetch_add(&d->pipe_fds, 2) + 2 > atomic_load(&d->pipe_fds_max))
        goto none;
    struct hg_pipe *p = malloc(sizeof(*p));
    if (p == NULL)
        goto none;
    if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) < 0) {
        free(p);
        goto none;
    }
    /* Larger pipes move bulk in fewer splices; the default is 64 KiB. */
    int size = fcntl(p->fd[1], F_SETPIPE_SZ, HG_PIPE_SIZE);
    p->size = size > 0 ? (uint32_t)size : 64 * 1024;
    return p;
none:
    atomic_fetch_sub(&d->pipe_fds, 2);
    return NULL;
}

/* A reload may have lowered the budget below what pipes hold now. */
static bool hg__pipes_over_budget(struct hg_daemon *d)
{
    return atomic_load(&d->pipe_fds) > atomic_load(&d->pipe_fds_max);
}

static void hg__pipe_free(struct hg_worker *w, struct hg_pipe *p)
{
    close(p->fd[0]);
    close(p->fd[1]);
    free(p);
    atomic_fetch_sub(&w->daemon->pipe_fds, 2);
}

struct hg_pipe *hg_worker_pipe_get(struct hg_worker *w)
{
    if (hg__pipes_over_budget(w->daemon))
        hg_worker_pipes_release(w); /* nothing kept is used again */
    struct hg_pipe *p = w->pipes;
    if (p != NULL) {
        w->pipes = p->next;
        w->npipes--;
    } else if ((p = hg__pipe_new(w)) == NULL) {
        return NULL;
    }
    w->pipes_used++;
    return p;
}

void hg_worker_pipe_put(struct hg_worker *w, struct hg_pipe *p, bool clean)
{
    w->pipes_used--;
    if (clean && w->npipes < HG_PIPE_CACHE &&
        !hg__pipes_over_budget(w->daemon)) {
        p->next = w->pipes;
        w->pipes = p;
        w->npipes++;
        return;
    }
    hg__pipe_free(w, p);
}

bool hg_worker_pipes_release(struct hg_worker *w)
{
    if (w->pipes == NULL)
        return false;
    while (w->pipes != NULL) {
        struct hg_pipe *p = w->pipes;
        w->pipes = p->next;
        hg__pipe_free(w, p);
    }
    w->npipes = 0;
    return true;
}

/*
 * Refusals are routine under attack or misconfiguration: each is counted
 * on /metrics, and at most one line a second says what is going on.
 */
void hg_worker_refused(struct hg_worker *w, const struct hg_listener_conf *l,
                       int reason, const struct sockaddr *peer,
                       const char *detail)
{
    hg_stats_add(&l->stats->refused[reason], 1);
    uint64_t now = w->loop.now;
    if (now - w->sample_ms < HG_SAMPLE_MS && w->sample_ms != 0) {
        w->suppressed++;
        return;
    }
    char client[HG_ADDRSTRLEN], more[24];
    hg_net_format(peer, client, sizeof(client));
    snprintf(more, sizeof(more), "%llu", (unsigned long long)w->suppressed);
    const struct hg_log_field fields[] = {
        {"listener", l->name, true},
        {"client", client, true},
        {"reason", hg_refuse_name((enum hg_refuse)reason), true},
        {"detail", detail ? detail : "-", true},
        {"suppressed", more, false},
        {NULL, NULL, false},
    };
    hg_log_fields(HG_LOG_INFO, "refused", fields);
    w->sample_ms = now;
    w->suppressed = 0;
}

/* Frees a view that is no longer current once its last connection left. */
void hg_worker_wcfg_release(struct hg_worker *w, struct hg_wcfg *wc)
{
    wc->nconns--;
    if (wc->nconns > 0 || wc == w->wcfg)
        return;
    struct hg_wcfg **p = &w->wcfg;
    while (*p != wc)
        p = &(*p)->next;
    *p = wc->next;
    hg__wcfg_free_later(w, wc);
}

static void *hg__main(void *arg)
{
    struct hg_worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "hubgate-w%u", w->id);
    pthread_setname_np(pthread_self(), name);
    urcu_memb_register_thread();
    hg_loop_run(&w->loop);
    hg_timer_stop(&w->loop, &w->drain);
    hg_conn_close_all(w);
    hg_loop_run_once(&w->loop, 0); /* frees the closed connections */
    while (w->wcfg != NULL) {
        struct hg_wcfg *wc = w->wcfg;
        w->wcfg = wc->next;
        hg__unlisten_all(w, wc);
        hg__wcfg_free(wc);
    }
    urcu_memb_unregister_thread();
    return NULL;
}

static void hg__cmd_cb(struct hg_loop *loop, struct hg_io *io, uint32_t events)
{
    struct hg_worker *w = hg_container_of(io, struct hg_worker, cmd_io);
    uint64_t count;
    ssize_t rc = read(io->fd, &count, sizeof(count));
    (void)rc;
    unsigned cmds = atomic_exchange(&w->cmds, 0);
    if (cmds & HG_WORKER_SWITCH)
        hg__switch(w);
    if ((cmds & (HG_WORKER_CLOSE | HG_WORKER_EXIT)) && w->accepting) {
        w->accepting = false;
        if (w->wcfg)
            hg__unlisten_all(w, w->wcfg);
        atomic_store(&w->unlisted, true);
    }
    if (cmds & HG_WORKER_DRAIN)
        hg__drain_start(w);
    if (cmds & HG_WORKER_EXIT)
        hg_loop_stop(loop);
}

/*
 * Closing every tunnel at once would send every device back through the
 * load balancer at once; spreading the closes over the window paces the
 * reconnects toward the other gateways and the hub.
 */
static void hg__drain_start(struct hg_worker *w)
{
    w->drain_start = w->loop.now;
    w->drain_ms = w->wcfg ? w->wcfg->cfg->shutdown_drain_ms : 0;
    w->drain_total = hg_conn_count(w);
    w->drain_closed = 0;
    w->drain.cb = hg__drain_cb;
    hg__drain_cb(&w->loop, &w->drain);
}

#define HG_DRAIN_TICK_MS 20

static void hg__drain_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hg_worker *w = hg_container_of(timer, struct hg_worker, drain);
    uint64_t elapsed = loop->now - w->drain_start;
    uint64_t due = w->drain_total; /* the i-th closes at i/total of it */
    if (elapsed < w->drain_ms)
        due = (due * elapsed + w->drain_ms - 1) / w->drain_ms;
    while (w->conns != NULL && w->drain_closed < due) {
        hg_conn_close_one(w);
        w->drain_closed++;
    }
    if (w->conns == NULL || elapsed >= w->drain_ms) {
        hg_conn_close_all(w);
        atomic_store(&w->drained, true);
        return;
    }
    hg_timer_start(loop, timer, HG_DRAIN_TICK_MS);
}

/*
 * Adopts the config the daemon published: new connections use it, the
 * ones already open keep the view they were accepted under.
 */
static void hg__switch(struct hg_worker *w)
{
    struct hg_daemon *d = w->daemon;
    uint64_t gen = atomic_load(&d->gen);
    struct hg_config *cfg = atomic_load(&d->published);
    if (w->wcfg != NULL && w->wcfg->cfg == cfg) {
        atomic_store(&w->gen_seen, gen);
        return;
    }
    struct hg_wcfg *wc = hg__wcfg_new(w, cfg, gen);
    if (wc == NULL) {
        hg_log_error("worker %u: out of memory adopting a new config; "
                     "keeping the previous one",
                     w->id);
        return;
    }
    struct hg_wcfg *old = w->wcfg;
    if (old != NULL)
        hg__unlisten_all(w, old);
    wc->next = old;
    w->wcfg = wc;
    if (w->accepting)
        hg__listen_all(w, wc);
    if (old != NULL && old->nconns == 0) {
        wc->next = old->next;
        hg__wcfg_free_later(w, old);
    }
    hg__pace_all(w, cfg);
    atomic_store(&w->gen_seen, gen);
}

/*
 * Gives every paced route name this worker knows the rate cfg sets for it:
 * a route cfg keeps but no longer paces lets its waiters go. A route cfg
 * renamed or dropped keeps its pace for the connections still waiting
 * (they go to the backend they were routed to, at the rate they waited
 * under); new ones never join it.
 */
static void hg__pace_all(struct hg_worker *w, const struct hg_config *cfg)
{
    for (struct hg_pace *p = w->paces; p != NULL; p = p->next) {
        for (size_t i = 0; i < cfg->nroutes; i++) {
            if (strcmp(cfg->routes[i].name, p->name) == 0)
                hg_pace_set_rate(p, cfg->routes[i].connect_per_min);
        }
    }
}

/* The worker's pace for a route name, made on first use; NULL: no memory. */
static struct hg_pace *hg__pace_for(struct hg_worker *w,
                                    const struct hg_route_conf *r)
{
    for (struct hg_pace *p = w->paces; p != NULL; p = p->next) {
        if (strcmp(p->name, r->name) == 0)
            return p;
    }
    struct hg_pace *p =
        hg_pace_new(&w->loop, r->name, r->stats, hg_conn_queue_go);
    if (p != NULL) {
        p->next = w->paces;
        w->paces = p;
    }
    return p;
}

/* A view of cfg with one registration slot per bound address. */
static struct hg_wcfg *hg__wcfg_new(struct hg_worker *w, struct hg_config *cfg,
                                    uint64_t gen)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        n += cfg->listeners[i].nbinds;
    struct hg_wcfg *wc = calloc(1, sizeof(*wc));
    if (wc == NULL)
        return NULL;
    wc->ls = calloc(n, sizeof(*wc->ls));
    wc->pace = calloc(cfg->nroutes + 1, sizeof(*wc->pace));
    if (wc->ls == NULL || wc->pace == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (cfg->routes[i].connect_per_min != 0 &&
            (wc->pace[i] = hg__pace_for(w, &cfg->routes[i])) == NULL)
            goto fail;
    }
    wc->cfg = hg_config_ref(cfg);
    wc->gen = gen;
    wc->nls = n;
    n = 0;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct hg_listener_conf *l = &cfg->listeners[i];
        for (size_t b = 0; b < l->nbinds; b++) {
            struct hg_wlisten *wl = &wc->ls[n++];
            wl->io = (struct hg_io){.fd = l->socks[b]->fds[w->id],
                                    .cb = hg__accept_cb};
            wl->pause.cb = hg__resume_cb;
            wl->worker = w;
            wl->wcfg = wc;
            wl->conf = l;
            wl->port = hg_net_port((const struct sockaddr *)&l->binds[b].addr);
        }
    }
    return wc;
fail:
    free(wc->pace);
    free(wc->ls);
    free(wc);
    return NULL;
}

/*
 * Events of the current batch may still point at the view's listener
 * registrations (epoll returned them before the switch): free it after.
 */
static void hg__wcfg_free_later(struct hg_worker *w, struct hg_wcfg *wc)
{
    hg_loop_defer(&w->loop, &wc->defer, hg__wcfg_defer_cb);
}

static void hg__wcfg_defer_cb(struct hg_loop *loop, struct hg_defer *defer)
{
    hg__wcfg_free(hg_container_of(defer, struct hg_wcfg, defer));
}

static void hg__wcfg_free(struct hg_wcfg *wc)
{
    hg_config_unref(wc->cfg);
    free(wc->pace);
    free(wc->ls);
    free(wc);
}

static void hg__listen_all(struct hg_worker *w, struct hg_wcfg *wc)
{
    for (size_t i = 0; i < wc->nls; i++) {
        int rc = hg_io_add(&w->loop, &wc->ls[i].io, EPOLLIN);
        if (rc < 0)
            hg_log_error("worker %u: cannot watch listener %s: %s", w->id,
                         wc->ls[i].conf->name, strerror(-rc));
    }
}

/* Stops accepting on every socket of the view (paused ones included). */
static void hg__unlisten_all(struct hg_worker *w, struct hg_wcfg *wc)
{
    for (size_t i = 0; i < wc->nls; i++) {
        struct hg_wlisten *wl = &wc->ls[i];
        if (hg_timer_active(&wl->pause))
            hg_timer_stop(&w->loop, &wl->pause);
        else
            hg_io_del(&w->loop, &wl->io);
    }
}

/*
 * Level-triggered: accepts a batch, then lets the other sockets and
 * connections have their turn; what is left wakes the loop again.
 */
static void hg__accept_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events)
{
    struct hg_wlisten *wl = hg_container_of(io, struct hg_wlisten, io);
    struct hg_worker *w = wl->worker;
    /* An event fetched before a switch or a close in this same batch. */
    if (wl->wcfg != w->wcfg || !w->accepting)
        return;
    for (int i = 0; i < HG_ACCEPT_BATCH; i++)
        if (!hg__accept_one(wl->worker, wl))
            break;
}

/* Accepts one connection; false when there is nothing more to accept. */
static bool hg__accept_one(struct hg_worker *w, struct hg_wlisten *wl)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int fd = accept4(wl->io.fd, (struct sockaddr *)&peer, &len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == EINTR || err == ECONNABORTED)
            return true;
        if ((err == EMFILE || err == ENFILE) && hg_worker_pipes_release(w))
            return true; /* descriptors came free: again */
        if (err != EAGAIN && err != EWOULDBLOCK)
            hg__accept_pause(w, wl, err);
        return false;
    }
    const struct hg_listener_conf *l = wl->conf;
    if (l->allow != NULL &&
        !hg_cidr_set_match(l->allow, (const struct sockaddr *)&peer)) {
        close(fd);
        hg_worker_refused(w, l, HG_REFUSE_LISTENER_ALLOW,
                          (const struct sockaddr *)&peer, NULL);
        return true;
    }
    enum hg_refuse why = hg__admit(w, l);
    if (why != HG_REFUSE_MAX) {
        close(fd);
        hg_worker_refused(w, l, why, (const struct sockaddr *)&peer, NULL);
        return true;
    }
    hg_conn_accepted(w, wl, fd, &peer);
    return true;
}

/*
 * Counts a new tunnel in its listener and in the process, or says why
 * there is no room for it (HG_REFUSE_MAX: there is). Counted before the
 * check, so that workers never overshoot together; hg_worker_release()
 * undoes it.
 */
static enum hg_refuse hg__admit(struct hg_worker *w,
                                const struct hg_listener_conf *l)
{
    struct hg_daemon *d = w->daemon;
    if (atomic_fetch_add_explicit(&l->stats->open, 1, memory_order_relaxed) >=
            l->max_conns &&
        l->max_conns != 0) {
        hg_stats_sub(&l->stats->open, 1);
        return HG_REFUSE_LIMIT;
    }
    if (atomic_fetch_add_explicit(&d->conns, 1, memory_order_relaxed) >=
        atomic_load_explicit(&d->conns_max, memory_order_relaxed)) {
        hg_worker_release(w, l->stats);
        return HG_REFUSE_NO_DESCRIPTORS;
    }
    return HG_REFUSE_MAX;
}

void hg_worker_release(struct hg_worker *w, struct hg_stats *listener)
{
    hg_stats_sub(&listener->open, 1);
    atomic_fetch_sub_explicit(&w->daemon->conns, 1, memory_order_relaxed);
}

/*
 * Out of descriptors or memory: stop accepting on this socket for a moment
 * (the kernel keeps the backlog) instead of spinning; count it, and say so
 * at most once a minute.
 */
static void hg__accept_pause(struct hg_worker *w, struct hg_wlisten *wl,
                             int err)
{
    hg_io_del(&w->loop, &wl->io);
    hg_timer_start(&w->loop, &wl->pause, HG_ACCEPT_PAUSE_MS);
    hg_stats_add(&hg_global_stats.accept_paused, 1);
    w->pauses++;
    if (w->pause_log_ms != 0 && w->loop.now - w->pause_log_ms < 60000)
        return;
    w->pause_log_ms = w->loop.now;
    hg_log_warn("listener %s: accept paused for %d ms: %s "
                "(raise the open files limit?); %u pause%s in this worker "
                "since its last such line",
                wl->conf->name, HG_ACCEPT_PAUSE_MS, strerror(err), w->pauses,
                w->pauses == 1 ? "" : "s");
    w->pauses = 0;
}

static void hg__resume_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hg_wlisten *wl = hg_container_of(timer, struct hg_wlisten, pause);
    hg_io_add(loop, &wl->io, EPOLLIN);
}
