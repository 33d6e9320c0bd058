#include "hg_daemon.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "hg_admin.h"
#include "hg_log.h"
#include "hg_net.h"
#include "hg_resolver.h"
#include "hg_stats.h"
#include "hg_worker.h"

#define HG_LISTEN_BACKLOG   4096
#define HG_RETIRE_CHECK_MS  50
#define HG_FIRST_RESOLVE_MS 3000
/* Descriptors besides tunnels, pipes, listening sockets and the admin
 * endpoint's connections: standard streams, event and signal descriptors,
 * the loops, resolver sockets, the config and allow files being read. */
#define HG_FD_SPARE 64
/* The kernel holds a connection that has sent nothing for this long (one
 * SYN-ACK retransmission), then hands it over anyway, and timeouts.hello
 * runs from there; most clients send their hello with the handshake's last
 * ACK, and the gateway is never woken before it. */
#define HG_DEFER_ACCEPT_S 1

/* A replaced config, kept until every worker has moved past it. */
struct hg_retired {
    struct hg_retired *next;
    struct hg_config *cfg;
    uint64_t until_gen; /* the generation that replaced it */
};

static void hg__print_error(void *arg, const char *message);
static void hg__log_error(void *arg, const char *message);
static void hg__resolver_log(void *arg, enum hg_log_level level,
                             const char *host, const char *what);
static int hg__setup(struct hg_daemon *d, struct hg_config *cfg);
static int hg__activate(struct hg_daemon *d, struct hg_config *cfg);
static void hg__mark_socks(struct hg_daemon *d, struct hg_config *cfg,
                           uint64_t gen);
static int hg__activate_listeners(struct hg_daemon *d, struct hg_config *cfg);
static int hg__activate_routes(struct hg_daemon *d, struct hg_config *cfg);
static int hg__activate_stats(struct hg_config *cfg);
static void hg__runtime_free(struct hg_config *cfg);
static struct hg_listen_sock *hg__sock_get(struct hg_daemon *d,
                                           const struct hg_sockaddr *a);
static void hg__sock_close(struct hg_daemon *d, struct hg_listen_sock *s);
static void hg__sweep_socks(struct hg_daemon *d);
static void hg__drop_unserved_socks(struct hg_daemon *d);
static void hg__publish(struct hg_daemon *d, struct hg_config *cfg);
static void hg__retire_cb(struct hg_loop *loop, struct hg_timer *timer);
static uint64_t hg__min_gen_seen(struct hg_daemon *d);
static void hg__reload(struct hg_daemon *d);
static void hg__signal_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events);
static void hg__shutdown(struct hg_daemon *d);
static void hg__stop_cb(struct hg_loop *loop, struct hg_timer *timer);
static bool hg__all_drained(struct hg_daemon *d);
static void hg__close_listeners(struct hg_daemon *d);
static void hg__exit(struct hg_daemon *d);
static int hg__signals_open(struct hg_daemon *d);
static void hg__raise_nofile(void);
static void hg__budget_descriptors(struct hg_daemon *d,
                                   const struct hg_config *cfg);
static uint64_t hg__nofile(void);
static unsigned hg__admin_conns(void);
static unsigned hg__ncpu(void);
static int hg__start_workers(struct hg_daemon *d);
static void hg__teardown(struct hg_daemon *d);

int hg_daemon_check(const char *path)
{
    struct hg_config *cfg = hg_config_load(path, hg__print_error, NULL);
    if (cfg == NULL)
        return 1;
    printf("hubgate: configuration %s is valid\n", path);
    hg_config_unref(cfg);
    return 0;
}

int hg_daemon_run(const char *path)
{
    struct hg_daemon d = {.config_path = path, .sigfd = -1};
    pthread_mutex_init(&d.cfg_lock, NULL);
    /* From here on a signal waits in the signalfd, even during the load. */
    if (hg__signals_open(&d) < 0)
        return 1;
    struct hg_config *cfg = hg_config_load(path, hg__log_error, NULL);
    if (cfg == NULL) {
        hg_log_error("%s: configuration invalid, not starting", path);
        close(d.sigfd);
        return 1;
    }
    hg_log_configure(cfg->log_level, cfg->log_format);
    int status = hg__setup(&d, cfg) == 0 ? 0 : 1;
    if (status == 0) {
        atomic_store(&d.ready, true);
        hg_log_info("hubgate %s started: %u workers, %zu listeners, "
                    "%zu routes, admin on %s, room for %u tunnels",
                    HG_VERSION, d.nworkers, cfg->nlisteners, cfg->nroutes,
                    cfg->admin_listen.text, atomic_load(&d.conns_max));
        hg_loop_run(&d.loop);
        hg_log_info("hubgate stopped");
    }
    hg__teardown(&d);
    return status;
}

struct hg_config *hg_daemon_config(struct hg_daemon *d)
{
    pthread_mutex_lock(&d->cfg_lock);
    struct hg_config *cfg = hg_config_ref(d->cfg);
    pthread_mutex_unlock(&d->cfg_lock);
    return cfg;
}

static void hg__print_error(void *arg, const char *message)
{
    fprintf(stderr, "%s\n", message);
}

static void hg__log_error(void *arg, const char *message)
{
    hg_log_error("%s", message);
}

static void hg__resolver_log(void *arg, enum hg_log_level level,
                             const char *host, const char *what)
{
    hg_log(level, "resolver: %s: %s", host, what);
}

/*
 * Everything before the workers run: signals, loop, resolver, sockets,
 * first answers, admin. Takes over cfg. Returns 0 or -1 (logged).
 */
static int hg__setup(struct hg_daemon *d, struct hg_config *cfg)
{
    const char *reason = NULL;
    signal(SIGPIPE, SIG_IGN);
    hg__raise_nofile();
    d->cfg = cfg;
    atomic_store(&d->published, cfg);
    d->nworkers = cfg->workers ? cfg->workers : hg__ncpu();
    d->admin_conns = hg__admin_conns();
    hg__budget_descriptors(d, cfg);
    if (hg_loop_init(&d->loop) < 0)
        return -1;
    d->retire_timer.cb = hg__retire_cb;
    d->resolver = hg_resolver_new(&d->loop, cfg, &reason);
    if (d->resolver == NULL) {
        hg_log_error("resolver: %s", reason);
        return -1;
    }
    hg_resolver_set_log(d->resolver, hg__resolver_log, NULL);
    if (hg__activate(d, cfg) < 0)
        return -1;
    hg__mark_socks(d, cfg, 1);
    atomic_store(&d->gen, 1);
    size_t missing = hg_resolver_wait_initial(d->resolver, HG_FIRST_RESOLVE_MS);
    if (missing > 0)
        hg_log_warn("%zu backend names have no address yet; still trying",
                    missing);
    d->admin = hg_admin_start(d, &cfg->admin_listen, &reason);
    if (d->admin == NULL) {
        hg_log_error("admin %s: %s", cfg->admin_listen.text, reason);
        return -1;
    }
    d->admin_addr = cfg->admin_listen.addr;
    d->admin_addr_len = cfg->admin_listen.addr_len;
    if (hg__start_workers(d) < 0)
        return -1;
    /*
     * Only now: the first lookups run the loop, and a SIGHUP or SIGTERM that
     * came meanwhile waits in the signalfd until there are workers to act on.
     */
    return hg_io_add(&d->loop, &d->sig_io, EPOLLIN) < 0 ? -1 : 0;
}

static int hg__start_workers(struct hg_daemon *d)
{
    d->workers = calloc(d->nworkers, sizeof(*d->workers));
    if (d->workers == NULL)
        return -1;
    for (unsigned i = 0; i < d->nworkers; i++) {
        int rc = hg_worker_start(&d->workers[i], d, i);
        if (rc < 0) {
            hg_log_error("cannot start worker %u: %s", i, strerror(-rc));
            d->nworkers = i;
            return -1;
        }
    }
    return 0;
}

/*
 * Fills cfg's runtime slots: listening sockets (opening the new ones),
 * backends, and only then stats records, so that a config that cannot be
 * had leaves no metrics behind for names it alone brought. Returns 0, or -1
 * with the reason logged; on failure cfg may hold partial runtime state,
 * freed with it.
 */
static int hg__activate(struct hg_daemon *d, struct hg_config *cfg)
{
    cfg->runtime_free = hg__runtime_free;
    if (hg__activate_listeners(d, cfg) < 0 || hg__activate_routes(d, cfg) < 0)
        return -1;
    return hg__activate_stats(cfg);
}

/*
 * Marks the addresses cfg binds as in use by generation gen, once cfg is
 * sure to be used (the sweep closes the others), and gives them cfg's TCP
 * options.
 */
static void hg__mark_socks(struct hg_daemon *d, struct hg_config *cfg,
                           uint64_t gen)
{
    unsigned keepalive_s = (unsigned)((cfg->tcp_keepalive_ms + 999) / 1000);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        for (size_t b = 0; b < cfg->listeners[i].nbinds; b++) {
            struct hg_listen_sock *s = cfg->listeners[i].socks[b];
            s->used_gen = gen;
            /* Accepted sockets inherit these: none to set per connection. */
            for (unsigned w = 0; w < d->nworkers; w++)
                hg_net_tune(s->fds[w], keepalive_s);
        }
    }
}

static int hg__activate_listeners(struct hg_daemon *d, struct hg_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct hg_listener_conf *l = &cfg->listeners[i];
        l->socks = calloc(l->nbinds, sizeof(*l->socks));
        if (l->socks == NULL)
            return -1;
        for (size_t b = 0; b < l->nbinds; b++) {
            l->socks[b] = hg__sock_get(d, &l->binds[b]);
            if (l->socks[b] == NULL)
                return -1;
        }
    }
    return 0;
}

static int hg__activate_routes(struct hg_daemon *d, struct hg_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct hg_route_conf *r = &cfg->routes[i];
        r->backend = hg_resolver_backend(d->resolver, r->backend_host);
        if (r->backend == NULL)
            return -1;
    }
    return 0;
}

static int hg__activate_stats(struct hg_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if ((cfg->listeners[i].stats =
                 hg_stats_listener(cfg->listeners[i].name)) == NULL)
            return -1;
    for (size_t i = 0; i < cfg->nroutes; i++)
        if ((cfg->routes[i].stats = hg_stats_route(cfg->routes[i].name)) ==
            NULL)
            return -1;
    size_t n = cfg->nlisteners * cfg->nroutes;
    cfg->pair_stats = calloc(n ? n : 1, sizeof(*cfg->pair_stats));
    if (cfg->pair_stats == NULL)
        return -1;
    for (size_t l = 0; l < cfg->nlisteners; l++)
        for (size_t r = 0; r < cfg->nroutes; r++) {
            struct hg_stats *s =
                hg_stats_pair(cfg->listeners[l].name, cfg->routes[r].name);
            if (s == NULL)
                return -1;
            cfg->pair_stats[l * cfg->nroutes + r] = s;
        }
    return 0;
}

/* The runtime arrays belong to the snapshot; what they point to does not. */
static void hg__runtime_free(struct hg_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        free(cfg->listeners[i].socks);
    free(cfg->pair_stats);
}

/*
 * The socket set for a bind address: the one already open, or a new one
 * with a socket per worker. Returns NULL (logged) when it cannot bind.
 */
static struct hg_listen_sock *hg__sock_get(struct hg_daemon *d,
                                           const struct hg_sockaddr *a)
{
    for (struct hg_listen_sock *s = d->socks; s != NULL; s = s->next)
        if (s->addr_len == a->addr_len &&
            memcmp(&s->addr, &a->addr, a->addr_len) == 0)
            return s;
    struct hg_listen_sock *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->fds = calloc(d->nworkers, sizeof(int))) == NULL ||
        (s->text = strdup(a->text)) == NULL) {
        hg__sock_close(d, s);
        return NULL;
    }
    memcpy(&s->addr, &a->addr, a->addr_len);
    s->addr_len = a->addr_len;
    for (unsigned i = 0; i < d->nworkers; i++)
        s->fds[i] = -1;
    for (unsigned i = 0; i < d->nworkers; i++) {
        int fd = hg_net_listen((const struct sockaddr *)&a->addr, a->addr_len,
                               HG_LISTEN_BACKLOG, HG_DEFER_ACCEPT_S);
        if (fd < 0) {
            hg_log_error("cannot listen on %s: %s", a->text, strerror(-fd));
            hg__sock_close(d, s);
            return NULL;
        }
        s->fds[i] = fd;
    }
    s->next = d->socks;
    d->socks = s;
    return s;
}

/* Closes a socket set that is not (or no longer) in the list. */
static void hg__sock_close(struct hg_daemon *d, struct hg_listen_sock *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; s->fds && i < d->nworkers; i++)
        if (s->fds[i] >= 0)
            close(s->fds[i]);
    free(s->fds);
    free(s->text);
    free(s);
}

/* Once no worker can use an old config, closes addresses it alone bound. */
static void hg__sweep_socks(struct hg_daemon *d)
{
    uint64_t gen = atomic_load(&d->gen);
    struct hg_listen_sock **p = &d->socks;
    while (*p != NULL) {
        struct hg_listen_sock *s = *p;
        if (s->used_gen == gen) {
            p = &s->next;
            continue;
        }
        hg_log_info("stopped listening on %s", s->text);
        *p = s->next;
        hg__sock_close(d, s);
    }
}

/*
 * Closes, at once and without a word, the addresses that a config which
 * failed to load opened: no config ever served them.
 */
static void hg__drop_unserved_socks(struct hg_daemon *d)
{
    struct hg_listen_sock **p = &d->socks;
    while (*p != NULL) {
        struct hg_listen_sock *s = *p;
        if (s->used_gen != 0) {
            p = &s->next;
            continue;
        }
        *p = s->next;
        hg__sock_close(d, s);
    }
}

/* Makes cfg current and tells the workers; the old one is retired. */
static void hg__publish(struct hg_daemon *d, struct hg_config *cfg)
{
    struct hg_retired *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort(); /* a few bytes; the old config must not leak into use */
    pthread_mutex_lock(&d->cfg_lock);
    r->cfg = d->cfg;
    d->cfg = cfg;
    pthread_mutex_unlock(&d->cfg_lock);
    hg__raise_nofile();
    hg__budget_descriptors(d, cfg);
    atomic_store(&d->published, cfg);
    r->until_gen = atomic_load(&d->gen) + 1;
    hg__mark_socks(d, cfg, r->until_gen);
    atomic_store(&d->gen, r->until_gen);
    r->next = d->retired;
    d->retired = r;
    for (unsigned i = 0; i < d->nworkers; i++)
        hg_worker_post(&d->workers[i], HG_WORKER_SWITCH);
    hg_timer_start(&d->loop, &d->retire_timer, HG_RETIRE_CHECK_MS);
}

static uint64_t hg__min_gen_seen(struct hg_daemon *d)
{
    uint64_t min = UINT64_MAX;
    for (unsigned i = 0; i < d->nworkers; i++) {
        uint64_t g = atomic_load(&d->workers[i].gen_seen);
        if (g < min)
            min = g;
    }
    return min;
}

/* Drops retired configs that every worker has moved past. */
static void hg__retire_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hg_daemon *d =
        hg_container_of(timer, struct hg_daemon, retire_timer);
    uint64_t seen = hg__min_gen_seen(d);
    struct hg_retired **p = &d->retired;
    while (*p != NULL) {
        struct hg_retired *r = *p;
        if (r->until_gen > seen) {
            p = &r->next;
            continue;
        }
        *p = r->next;
        hg_config_unref(r->cfg);
        free(r);
    }
    if (d->retired != NULL)
        hg_timer_start(loop, timer, HG_RETIRE_CHECK_MS);
    else
        hg__sweep_socks(d);
}

/*
 * SIGHUP: a valid new config applies to new connections; an invalid one
 * changes nothing. Established connections are never touched.
 */
static void hg__reload(struct hg_daemon *d)
{
    const char *reason = NULL;
    struct hg_config *cfg;
    hg_log_info("reloading %s", d->config_path);
    cfg = hg_config_load(d->config_path, hg__log_error, NULL);
    if (cfg == NULL)
        goto failed;
    /* Against what runs, not against the last file read. */
    if ((cfg->workers ? cfg->workers : hg__ncpu()) != d->nworkers)
        hg_log_warn("workers changed: applies at the next restart");
    if (cfg->admin_listen.addr_len != d->admin_addr_len ||
        memcmp(&cfg->admin_listen.addr, &d->admin_addr, d->admin_addr_len) != 0)
        hg_log_warn("admin.listen changed: applies at the next restart");
    /* Nothing of the resolver changes unless the whole reload does. */
    struct hg_resolver_plan plan;
    if (hg_resolver_plan(d->resolver, cfg, &plan, &reason) < 0) {
        hg_log_error("resolver: %s", reason);
        goto failed;
    }
    if (hg__activate(d, cfg) < 0) {
        hg_resolver_plan_drop(&plan);
        goto failed;
    }
    hg_resolver_apply(d->resolver, &plan);
    hg_log_configure(cfg->log_level, cfg->log_format);
    hg__publish(d, cfg);
    hg_resolver_keep(d->resolver, cfg);
    hg_stats_add(&hg_global_stats.reloads_ok, 1);
    hg_log_info("reloaded %s: %zu listeners, %zu routes, room for %u "
                "tunnels",
                d->config_path, cfg->nlisteners, cfg->nroutes,
                atomic_load(&d->conns_max));
    return;
failed:
    if (cfg != NULL) {
        hg_resolver_keep(d->resolver, d->cfg); /* names only it added */
        hg_config_unref(cfg);
    }
    /* Addresses the failed config opened must not linger unserved. */
    hg__drop_unserved_socks(d);
    hg_stats_add(&hg_global_stats.reloads_failed, 1);
    hg_log_error("reload of %s failed; the running configuration stays",
                 d->config_path);
}

static void hg__signal_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events)
{
    struct hg_daemon *d = hg_container_of(io, struct hg_daemon, sig_io);
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
        loop->now = hg_now_ms(); /* a reload before this one took time */
        if (si.ssi_signo == SIGHUP && !atomic_load(&d->draining))
            hg__reload(d);
        else if (si.ssi_signo == SIGHUP)
            hg_log_warn("reload ignored: the gateway is stopping");
        else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
            hg__shutdown(d);
    }
}

/*
 * SIGTERM/SIGINT: report not ready at once but go on accepting for
 * shutdown.ready_delay, so the load balancer's probe sees it and sends new
 * devices elsewhere; then stop accepting and close the open connections
 * spread over shutdown.drain. A second signal exits at once.
 */
static void hg__shutdown(struct hg_daemon *d)
{
    if (atomic_load(&d->draining)) {
        hg_log_info("second stop signal: closing everything now");
        hg__exit(d);
        return;
    }
    atomic_store(&d->ready, false);
    atomic_store(&d->draining, true);
    hg_log_info("stopping: not ready; accepting for %llu ms more, then "
                "closing connections over %llu ms",
                (unsigned long long)d->cfg->shutdown_ready_ms,
                (unsigned long long)d->cfg->shutdown_drain_ms);
    d->stop_timer.cb = hg__stop_cb;
    hg_timer_start(&d->loop, &d->stop_timer, d->cfg->shutdown_ready_ms);
}

#define HG_STOP_POLL_MS  20
#define HG_STOP_GRACE_MS 2000

static void hg__stop_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hg_daemon *d = hg_container_of(timer, struct hg_daemon, stop_timer);
    if (!d->stop_draining) {
        d->stop_draining = true;
        d->stop_deadline =
            loop->now + d->cfg->shutdown_drain_ms + HG_STOP_GRACE_MS;
        hg_log_info("no longer accepting; draining connections");
        for (unsigned i = 0; i < d->nworkers; i++)
            hg_worker_post(&d->workers[i], HG_WORKER_CLOSE | HG_WORKER_DRAIN);
    } else if (hg__all_drained(d) || loop->now >= d->stop_deadline) {
        hg__exit(d);
        return;
    }
    hg__close_listeners(d);
    hg_timer_start(loop, timer, HG_STOP_POLL_MS);
}

/*
 * Once no worker watches them any more, closes the listening sockets, so
 * that the kernel refuses new connections instead of queueing them for
 * nobody (or handing them to this process rather than to a new instance
 * sharing the port).
 */
static void hg__close_listeners(struct hg_daemon *d)
{
    if (d->socks == NULL)
        return;
    for (unsigned i = 0; i < d->nworkers; i++)
        if (!atomic_load(&d->workers[i].unlisted))
            return;
    while (d->socks != NULL) {
        struct hg_listen_sock *s = d->socks;
        d->socks = s->next;
        hg__sock_close(d, s);
    }
    hg_log_info("listening sockets closed");
}

static bool hg__all_drained(struct hg_daemon *d)
{
    for (unsigned i = 0; i < d->nworkers; i++)
        if (!atomic_load(&d->workers[i].drained))
            return false;
    return true;
}

static void hg__exit(struct hg_daemon *d)
{
    atomic_store(&d->ready, false);
    hg_timer_stop(&d->loop, &d->stop_timer);
    for (unsigned i = 0; i < d->nworkers; i++)
        hg_worker_post(&d->workers[i], HG_WORKER_EXIT);
    hg_loop_stop(&d->loop);
}

/* Signals arrive through a signalfd on the main loop, in every thread. */
static int hg__signals_open(struct hg_daemon *d)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    d->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d->sigfd < 0) {
        hg_log_error("signalfd: %s", strerror(errno));
        return -1;
    }
    d->sig_io = (struct hg_io){.fd = d->sigfd, .cb = hg__signal_cb};
    return 0;
}

/* Tunnels take two descriptors each: use all the hard limit allows. */
static void hg__raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * Shares the open files limit out. HG_FD_SPARE descriptors and the admin
 * endpoint's connections stay out of reach, with two listening sockets per
 * bind address and worker (old and new across a reload). Pipes may hold
 * only descriptors that tunnels cannot need: with a max_connections on
 * every listener, what the limit leaves after two descriptors per
 * connection; with a listener unbounded, a quarter of the limit; at most
 * HG_PIPE_MAX pipes per worker either way. Tunnels get the rest, two
 * descriptors each (the pipes' share too when every listener is bounded:
 * pipes then give way when old tunnels outlast a reload that lowered the
 * bounds), so that a storm can never take the descriptors the admin
 * endpoint, the resolver and the backends' sockets need.
 */
static void hg__budget_descriptors(struct hg_daemon *d,
                                   const struct hg_config *cfg)
{
    uint64_t most = (uint64_t)d->nworkers * HG_PIPE_MAX * 2;
    uint64_t limit = hg__nofile();
    uint64_t conns = 0, binds = 0;
    bool bounded = true;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct hg_listener_conf *l = &cfg->listeners[i];
        bounded = bounded && l->max_conns != 0;
        conns += l->max_conns;
        binds += l->nbinds;
    }
    uint64_t rest = HG_FD_SPARE + d->admin_conns + 2 * binds * d->nworkers;
    uint64_t need = rest + 2 * conns;
    uint64_t pipes = limit / 4;
    if (bounded)
        pipes = limit > need ? limit - need : 0;
    pipes = pipes < most ? pipes : most;
    uint64_t held = rest + (bounded ? 0 : pipes);
    uint64_t room = limit > held ? (limit - held) / 2 : 0;
    atomic_store(&d->pipe_fds_max, (unsigned)pipes);
    atomic_store(&d->conns_max, room < UINT_MAX ? (unsigned)room : UINT_MAX);
    if (room == 0)
        hg_log_warn("the open files limit of %llu leaves no room for "
                    "tunnels: every connection is refused and /readyz "
                    "says 503 (raise it)",
                    (unsigned long long)limit);
    else if (conns > room)
        hg_log_warn("max_connections allow %llu connections, more than the "
                    "%llu tunnels that the open files limit of %llu has room "
                    "for (two descriptors each, %llu kept for the rest)%s",
                    (unsigned long long)conns, (unsigned long long)room,
                    (unsigned long long)limit, (unsigned long long)held,
                    pipes == 0 ? "; bulk goes without pipes" : "");
}

/* The open files limit now (UINT64_MAX for none). */
static uint64_t hg__nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        return rl.rlim_cur;
    return UINT64_MAX;
}

/* The admin endpoint's connections: a sixteenth of the limit, 16 to 512. */
static unsigned hg__admin_conns(void)
{
    uint64_t n = hg__nofile() / 16;
    return n < 16 ? 16 : n > 512 ? 512 : (unsigned)n;
}

bool hg_daemon_ready(struct hg_daemon *d)
{
    return atomic_load(&d->ready) && atomic_load(&d->conns_max) > 0;
}

static unsigned hg__ncpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static void hg__teardown(struct hg_daemon *d)
{
    for (unsigned i = 0; d->workers && i < d->nworkers; i++)
        hg_worker_post(&d->workers[i], HG_WORKER_EXIT);
    for (unsigned i = 0; d->workers && i < d->nworkers; i++)
        hg_worker_join(&d->workers[i]);
    free(d->workers);
    hg_admin_stop(d->admin);
    while (d->retired != NULL) {
        struct hg_retired *r = d->retired;
        d->retired = r->next;
        hg_config_unref(r->cfg);
        free(r);
    }
    while (d->socks != NULL) {
        struct hg_listen_sock *s = d->socks;
        d->socks = s->next;
        hg__sock_close(d, s);
    }
    if (d->cfg)
        hg_config_unref(d->cfg);
    if (d->resolver)
        hg_resolver_free(d->resolver);
    if (d->sigfd >= 0)
        close(d->sigfd);
    if (d->loop.epfd > 0)
        hg_loop_deinit(&d->loop);
    hg_stats_free_all();
    pthread_mutex_destroy(&d->cfg_lock);
}
