#include "hg_resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ares.h>
#include <urcu/urcu-memb.h>

#include "hg_config.h"
#include "hg_loop.h"

/*
 * Retry policy. A name that never answered is asked again every
 * HG_RES_RETRY_MS: start-up should find its addresses as soon as DNS works.
 * A name with a good answer keeps it (marked stale) and backs off from
 * HG_RES_RETRY_MS, doubling per failure, up to the larger of min_ttl and
 * HG_RES_RETRY_MS: during an outage we never ask less often than a healthy
 * short-TTL name would, and we never ask more than once a second.
 */
#define HG_RES_RETRY_MS 1000

/* Below this a TTL (even min_ttl 0) would turn into a lookup loop. */
#define HG_RES_TTL_FLOOR_MS 1000

/* Per try and server; c-ares doubles it each round: 1 s + 2 s per name. */
#define HG_RES_QUERY_TIMEOUT_MS 1000
#define HG_RES_QUERY_TRIES      2

#define HG_RES_DNS_PORT  53
#define HG_RES_LOG_MAX   512
#define HG_RES_LOG_ADDRS 8

/* One c-ares socket watched by the loop. */
struct hg__rsock {
    struct hg_io io;
    struct hg_defer defer; /* frees it after the loop's current batch */
    struct hg_resolver *r;
    struct hg__rsock *next;
    uint32_t events;
    bool closed; /* c-ares let go of it; late events are ignored */
};

struct hg__backend {
    struct hg_backend pub;
    struct hg_resolver *r;
    struct hg__backend *next;
    struct hg_timer timer; /* next lookup */
    uint64_t backoff_ms;   /* next retry delay while failing with addrs */
    bool literal;          /* an IP address: never looked up */
    bool inflight;         /* a c-ares lookup is running */
    bool settled;          /* had its first answer or failure */
    bool failing;          /* the last lookup failed */
    bool resting;          /* no route uses it: no more lookups */
};

struct hg_resolver {
    struct hg_loop *loop;
    ares_channel channel;
    char *servers_csv; /* as given to c-ares; NULL: resolv.conf's */
    uint64_t min_ttl_ms;
    uint64_t max_ttl_ms;
    struct hg_timer ares_timer;    /* c-ares' next timeout */
    struct hg_timer reclaim_timer; /* frees retired sets after the batch */
    struct hg__rsock *socks;
    struct hg__backend *head; /* guarded by lock for other threads */
    struct hg__backend *tail;
    pthread_mutex_t lock;
    struct hg_addrset **retired; /* unpublished, waiting for readers */
    size_t nretired;
    size_t retired_cap;
    hg_resolver_log_cb log_cb;
    void *log_arg;
    bool closing;
};

static void hg__ares_init_once(void);
static bool hg__server_canon(const char *s, char *out, size_t len);
static int hg__servers_csv(const struct hg_config *cfg, char **csv);
static const char *hg__servers_reason(const struct hg_config *cfg);
static bool hg__csv_equal(const char *a, const char *b);
static int hg__ttl_bounds(const struct hg_config *cfg, uint64_t *min_ms,
                          uint64_t *max_ms);
static int hg__channel_new(struct hg_resolver *r, const char *csv,
                           ares_channel *out);
static void hg__channel_swap(struct hg_resolver *r, ares_channel ch);
static struct hg__rsock *hg__sock_find(struct hg_resolver *r, int fd);
static void hg__sock_state(void *data, ares_socket_t fd, int readable,
                           int writable);
static void hg__sock_watch(struct hg_resolver *r, int fd, uint32_t events);
static void hg__sock_unwatch(struct hg_resolver *r, struct hg__rsock *s);
static void hg__sock_io(struct hg_loop *loop, struct hg_io *io,
                        uint32_t events);
static void hg__sock_release(struct hg_loop *loop, struct hg_defer *defer);
static void hg__ares_timer_arm(struct hg_resolver *r);
static void hg__ares_timer_cb(struct hg_loop *loop, struct hg_timer *timer);
static void hg__lookup_start(struct hg__backend *b);
static void hg__lookup_timer_cb(struct hg_loop *loop, struct hg_timer *timer);
static void hg__lookup_done(void *arg, int status, int timeouts,
                            struct ares_addrinfo *res);
static bool hg__v4_usable(const struct in_addr *a);
static bool hg__addr_copy(const struct sockaddr *sa,
                          struct sockaddr_storage *out);
static int hg__addr_cmp(const void *a, const void *b);
static struct hg_addrset *hg__addrset_new(size_t n);
static int hg__addrset_build(const struct ares_addrinfo *res,
                             struct hg_addrset **out, uint64_t *ttl_s);
static bool hg__addrset_equal(const struct hg_addrset *a,
                              const struct hg_addrset *b);
static void hg__addrs_format(const struct hg_addrset *set, char *buf,
                             size_t len);
static uint64_t hg__ttl_clamp(const struct hg_resolver *r, uint64_t ttl_s);
static void hg__answer_ok(struct hg__backend *b, struct hg_addrset *set,
                          uint64_t ttl_s);
static const char *hg__ok_what(const struct hg__backend *b, bool changed);
static void hg__answer_failed(struct hg__backend *b, int status);
static uint64_t hg__retry_delay(struct hg__backend *b);
static void hg__publish(struct hg__backend *b, struct hg_addrset *set);
static void hg__retire(struct hg_resolver *r, struct hg_addrset *set);
static void hg__reclaim(struct hg_resolver *r);
static void hg__reclaim_timer_cb(struct hg_loop *loop, struct hg_timer *timer);
static struct hg__backend *hg__backend_find(struct hg_resolver *r,
                                            const char *host);
static struct hg__backend *hg__backend_new(struct hg_resolver *r,
                                           const char *host);
static bool hg__backend_literal(struct hg__backend *b);
static void hg__backend_append(struct hg_resolver *r, struct hg__backend *b);
static bool hg__all_settled(struct hg_resolver *r);
static size_t hg__count_empty(struct hg_resolver *r);
static void hg__refresh_all(struct hg_resolver *r);
static void hg__reclamp_timers(struct hg_resolver *r);
static void hg__log(struct hg_resolver *r, enum hg_log_level level,
                    const char *host, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void hg__log_stderr(void *arg, enum hg_log_level level, const char *host,
                           const char *what);

static pthread_once_t hg__ares_once = PTHREAD_ONCE_INIT;
static int hg__ares_status = ARES_ENOTINITIALIZED;

/* ------------------------------------------------------------------------ */
/* Public interface                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Validates cfg's resolver settings, then sets up a c-ares channel on the
 * loop. Nothing is looked up until the first hg_resolver_backend(). Returns
 * the resolver, owned by the caller (hg_resolver_free()), or NULL with a
 * static reason.
 */
struct hg_resolver *hg_resolver_new(struct hg_loop *loop,
                                    const struct hg_config *cfg,
                                    const char **reason)
{
    struct hg_resolver *r = calloc(1, sizeof(*r));
    *reason = "out of memory";
    if (r == NULL)
        goto fail;
    r->loop = loop;
    r->log_cb = hg__log_stderr;
    r->ares_timer.cb = hg__ares_timer_cb;
    r->reclaim_timer.cb = hg__reclaim_timer_cb;
    pthread_once(&hg__ares_once, hg__ares_init_once);
    *reason = "c-ares cannot be initialised";
    if (hg__ares_status != ARES_SUCCESS)
        goto fail_free;
    if (hg__ttl_bounds(cfg, &r->min_ttl_ms, &r->max_ttl_ms) < 0) {
        *reason = "resolver.min_ttl is above resolver.max_ttl";
        goto fail_free;
    }
    if (hg__servers_csv(cfg, &r->servers_csv) < 0) {
        *reason = hg__servers_reason(cfg);
        goto fail_free;
    }
    if (hg__channel_new(r, r->servers_csv, &r->channel) < 0) {
        *reason = "c-ares rejected the resolver settings";
        goto fail_csv;
    }
    pthread_mutex_init(&r->lock, NULL);
    return r;

fail_csv:
    free(r->servers_csv);
fail_free:
    free(r);
fail:
    return NULL;
}

int hg_resolver_plan(struct hg_resolver *r, const struct hg_config *cfg,
                     struct hg_resolver_plan *p, const char **reason)
{
    *p = (struct hg_resolver_plan){0};
    if (hg__ttl_bounds(cfg, &p->min_ttl_ms, &p->max_ttl_ms) < 0) {
        *reason = "resolver.min_ttl is above resolver.max_ttl";
        return -1;
    }
    if (hg__servers_csv(cfg, &p->servers_csv) < 0) {
        *reason = hg__servers_reason(cfg);
        return -1;
    }
    if (hg__csv_equal(p->servers_csv, r->servers_csv))
        return 0;
    ares_channel ch = NULL;
    if (hg__channel_new(r, p->servers_csv, &ch) < 0) {
        *reason = "c-ares rejected the resolver servers";
        hg_resolver_plan_drop(p);
        return -1;
    }
    p->channel = ch;
    return 0;
}

void hg_resolver_apply(struct hg_resolver *r, struct hg_resolver_plan *p)
{
    r->min_ttl_ms = p->min_ttl_ms;
    r->max_ttl_ms = p->max_ttl_ms;
    hg__reclamp_timers(r);
    if (p->channel != NULL) {
        free(r->servers_csv);
        r->servers_csv = p->servers_csv;
        p->servers_csv = NULL;
        hg__channel_swap(r, p->channel);
        p->channel = NULL;
    }
    hg_resolver_plan_drop(p);
}

void hg_resolver_plan_drop(struct hg_resolver_plan *p)
{
    if (p->channel != NULL)
        ares_destroy(p->channel);
    free(p->servers_csv);
    *p = (struct hg_resolver_plan){0};
}

int hg_resolver_configure(struct hg_resolver *r, const struct hg_config *cfg,
                          const char **reason)
{
    struct hg_resolver_plan p;
    if (hg_resolver_plan(r, cfg, &p, reason) < 0)
        return -1;
    hg_resolver_apply(r, &p);
    return 0;
}

/*
 * Finds host (any case) among the backends, or creates it: a literal IP
 * gets its one address now, a name gets its first lookup started. The
 * resolver owns the backend. Returns NULL only when out of memory.
 */
struct hg_backend *hg_resolver_backend(struct hg_resolver *r, const char *host)
{
    struct hg__backend *b = hg__backend_find(r, host);
    /*
     * Lookups start from the loop, not here: a reload that also changes the
     * servers applies them after its backends, and the first question must
     * go to the new servers (and none at all if the reload fails).
     */
    if (b != NULL && b->resting) {
        /* Its addresses are from before the rest: stale until answered. */
        b->resting = false;
        if (b->pub.addrs != NULL)
            atomic_store(&b->pub.stale, true);
        if (!b->inflight)
            hg_timer_start(r->loop, &b->timer, 0);
    }
    if (b != NULL)
        return &b->pub;
    b = hg__backend_new(r, host);
    if (b == NULL)
        return NULL;
    if (!b->literal)
        hg_timer_start(r->loop, &b->timer, 0);
    return &b->pub;
}

void hg_resolver_keep(struct hg_resolver *r, const struct hg_config *cfg)
{
    for (struct hg__backend *b = r->head; b != NULL; b = b->next) {
        bool used = false;
        for (size_t i = 0; i < cfg->nroutes && !used; i++)
            used = strcasecmp(cfg->routes[i].backend_host, b->pub.host) == 0;
        if (used || b->literal || b->resting)
            continue;
        b->resting = true;
        hg_timer_stop(r->loop, &b->timer);
        hg__log(r, HG_LOG_INFO, b->pub.host,
                "no route uses it: no more lookups");
    }
}

/*
 * Runs the loop until every backend settled or timeout_ms passed. Returns
 * how many backends still have no address.
 */
size_t hg_resolver_wait_initial(struct hg_resolver *r, uint64_t timeout_ms)
{
    uint64_t deadline = hg_now_ms() + timeout_ms;

    for (;;) {
        uint64_t now = hg_now_ms();
        if (hg__all_settled(r) || now >= deadline)
            break;
        uint64_t wait = deadline - now;
        if (hg_loop_run_once(r->loop, wait > INT_MAX ? INT_MAX : (int)wait) < 0)
            break;
    }
    return hg__count_empty(r);
}

/*
 * Walks the backends under the list lock. The main thread only appends,
 * so holding the lock while fn runs is short and never deadlocks with it.
 */
void hg_resolver_foreach(struct hg_resolver *r,
                         void (*fn)(struct hg_backend *b, void *arg), void *arg)
{
    pthread_mutex_lock(&r->lock);
    for (struct hg__backend *b = r->head; b != NULL; b = b->next)
        fn(&b->pub, arg);
    pthread_mutex_unlock(&r->lock);
}

void hg_resolver_set_log(struct hg_resolver *r, hg_resolver_log_cb cb,
                         void *arg)
{
    r->log_cb = cb != NULL ? cb : hg__log_stderr;
    r->log_arg = cb != NULL ? arg : NULL;
}

/*
 * Tears everything down in dependency order: c-ares first (its callbacks
 * see r->closing and do nothing), then timers, then one grace period for
 * every set still published or retired, then the backends.
 */
void hg_resolver_free(struct hg_resolver *r)
{
    if (r == NULL)
        return;
    r->closing = true;
    ares_destroy(r->channel);
    while (r->socks != NULL)
        hg__sock_unwatch(r, r->socks);
    hg_timer_stop(r->loop, &r->ares_timer);
    hg_timer_stop(r->loop, &r->reclaim_timer);
    for (struct hg__backend *b = r->head; b != NULL; b = b->next) {
        hg_timer_stop(r->loop, &b->timer);
        hg__retire(r, b->pub.addrs);
        rcu_assign_pointer(b->pub.addrs, NULL);
    }
    hg__reclaim(r);
    while (r->head != NULL) {
        struct hg__backend *b = r->head;
        r->head = b->next;
        free(b->pub.host);
        free(b);
    }
    pthread_mutex_destroy(&r->lock);
    free(r->retired);
    free(r->servers_csv);
    free(r);
}

/* ------------------------------------------------------------------------ */
/* Settings and the c-ares channel                                          */
/* ------------------------------------------------------------------------ */

/* Linux needs no global c-ares state, but the API asks for the call. */
static void hg__ares_init_once(void)
{
    hg__ares_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/*
 * Writes one configured server ("IP", "IP:PORT", "IPv6", "[IPv6]",
 * "[IPv6]:PORT") as c-ares wants it: "IP:PORT" or "[IPv6]:PORT", port 53
 * when none is given. Returns false when s is none of these forms.
 */
static bool hg__server_canon(const char *s, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL, *end;
    unsigned char buf[sizeof(struct in6_addr)];
    bool v6;

    if (s[0] == '[') {
        end = strchr(s, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return false;
        port = end[1] == ':' ? end + 2 : NULL;
        s++;
    } else if (inet_pton(AF_INET6, s, buf) == 1) {
        end = s + strlen(s);
    } else {
        end = strchr(s, ':');
        port = end != NULL ? end + 1 : NULL;
        end = end != NULL ? end : s + strlen(s);
    }
    if ((size_t)(end - s) >= sizeof(host))
        return false;
    memcpy(host, s, (size_t)(end - s));
    host[end - s] = '\0';
    v6 = inet_pton(AF_INET6, host, buf) == 1;
    if (!v6 && inet_pton(AF_INET, host, buf) != 1)
        return false;

    unsigned long p = HG_RES_DNS_PORT;
    if (port != NULL) {
        char *stop;
        if (port[0] < '0' || port[0] > '9')
            return false;
        p = strtoul(port, &stop, 10);
        if (*stop != '\0' || p == 0 || p > 65535)
            return false;
    }
    int n = snprintf(out, len, v6 ? "[%s]:%lu" : "%s:%lu", host, p);
    return n > 0 && (size_t)n < len;
}

/*
 * Builds the comma-separated server list for c-ares from cfg. Returns 0
 * with *csv malloc'd (owned by the caller; NULL when cfg names no server,
 * meaning resolv.conf's), -EINVAL when a server is malformed or -ENOMEM.
 */
static int hg__servers_csv(const struct hg_config *cfg, char **csv)
{
    size_t each = INET6_ADDRSTRLEN + sizeof("[]:65535,");
    char *out;

    *csv = NULL;
    if (cfg->nresolver_servers == 0)
        return 0;
    out = malloc(cfg->nresolver_servers * each);
    if (out == NULL)
        return -ENOMEM;
    out[0] = '\0';
    for (size_t i = 0; i < cfg->nresolver_servers; i++) {
        size_t used = strlen(out);
        if (i > 0)
            out[used++] = ',';
        if (!hg__server_canon(cfg->resolver_servers[i], out + used, each - 1)) {
            free(out);
            return -EINVAL;
        }
    }
    *csv = out;
    return 0;
}

/* Explains a failed hg__servers_csv(): a bad server, or else memory. */
static const char *hg__servers_reason(const struct hg_config *cfg)
{
    char buf[INET6_ADDRSTRLEN + sizeof("[]:65535")];

    for (size_t i = 0; i < cfg->nresolver_servers; i++)
        if (!hg__server_canon(cfg->resolver_servers[i], buf, sizeof(buf)))
            return "a resolver server is not IP, IP:PORT or [IPv6]:PORT";
    return "out of memory";
}

/* True when two server lists (NULL: resolv.conf's) are the same. */
static bool hg__csv_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Reads the TTL bounds. Returns 0, or -1 when min is above max. */
static int hg__ttl_bounds(const struct hg_config *cfg, uint64_t *min_ms,
                          uint64_t *max_ms)
{
    if (cfg->resolver_min_ttl_ms > cfg->resolver_max_ttl_ms)
        return -1;
    *min_ms = cfg->resolver_min_ttl_ms;
    *max_ms = cfg->resolver_max_ttl_ms;
    return 0;
}

/*
 * Creates a channel that reports its sockets to r. Names are looked up in
 * DNS only, as absolute names: a hosts file has no TTL to follow, and a
 * search list (ndots:5 in Kubernetes) would ask for several wrong names
 * first. Every other setting resolv.conf could hold is given here too, so
 * with csv (an empty ARES_OPT_SERVERS, then that list) c-ares does not read
 * resolv.conf at all; without, it reads only the servers from it. Returns 0
 * with *out set, or -1.
 */
static int hg__channel_new(struct hg_resolver *r, const char *csv,
                           ares_channel *out)
{
    char lookups[] = "b";
    struct ares_options opt = {
        .flags = ARES_FLAG_NOSEARCH,
        .timeout = HG_RES_QUERY_TIMEOUT_MS,
        .tries = HG_RES_QUERY_TRIES,
        .ndots = 1,
        .lookups = lookups,
        .sock_state_cb = hg__sock_state,
        .sock_state_cb_data = r,
    };
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
               ARES_OPT_NDOTS | ARES_OPT_DOMAINS | ARES_OPT_SORTLIST |
               ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB;
    ares_channel ch;

    if (csv != NULL)
        mask |= ARES_OPT_SERVERS; /* opt.nservers == 0 */
    if (ares_init_options(&ch, &opt, mask) != ARES_SUCCESS)
        return -1;
    if (csv != NULL && ares_set_servers_ports_csv(ch, csv) != ARES_SUCCESS) {
        ares_destroy(ch);
        return -1;
    }
    *out = ch;
    return 0;
}

/*
 * Replaces the channel: the old one's lookups end with ARES_EDESTRUCTION
 * (not counted as failures) and its sockets close before the new one opens
 * any, so the socket list never mixes channels. Then every name is asked
 * again on the new servers.
 */
static void hg__channel_swap(struct hg_resolver *r, ares_channel ch)
{
    ares_destroy(r->channel);
    r->channel = ch;
    hg__refresh_all(r);
    hg__ares_timer_arm(r);
}

/* ------------------------------------------------------------------------ */
/* c-ares sockets on the loop                                               */
/* ------------------------------------------------------------------------ */

static struct hg__rsock *hg__sock_find(struct hg_resolver *r, int fd)
{
    for (struct hg__rsock *s = r->socks; s != NULL; s = s->next)
        if (s->io.fd == fd)
            return s;
    return NULL;
}

/*
 * c-ares reports what it wants to wait for on fd; nothing at all means it
 * is about to close it.
 */
static void hg__sock_state(void *data, ares_socket_t fd, int readable,
                           int writable)
{
    struct hg_resolver *r = data;
    struct hg__rsock *s = hg__sock_find(r, fd);
    uint32_t events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);

    if (events == 0) {
        if (s != NULL)
            hg__sock_unwatch(r, s);
        return;
    }
    hg__sock_watch(r, fd, events);
}

/*
 * Adds fd to the loop or changes its events. When that fails the lookups
 * on fd still end, by c-ares' own timeout, as failures.
 */
static void hg__sock_watch(struct hg_resolver *r, int fd, uint32_t events)
{
    struct hg__rsock *s = hg__sock_find(r, fd);
    int rc;

    if (s != NULL) {
        rc = s->events == events ? 0 : hg_io_mod(r->loop, &s->io, events);
    } else if ((s = calloc(1, sizeof(*s))) == NULL) {
        rc = -ENOMEM;
    } else {
        s->io = (struct hg_io){.fd = fd, .cb = hg__sock_io};
        s->r = r;
        rc = hg_io_add(r->loop, &s->io, events);
        if (rc == 0) {
            s->next = r->socks;
            r->socks = s;
        } else {
            free(s);
            s = NULL;
        }
    }
    if (rc == 0)
        s->events = events;
    else
        hg__log(r, HG_LOG_ERROR, "-", "cannot watch a DNS socket: %s",
                strerror(-rc));
}

/*
 * Stops watching s. It may still have an event in the loop's current batch,
 * so it is marked closed and freed by the loop's deferred pass.
 */
static void hg__sock_unwatch(struct hg_resolver *r, struct hg__rsock *s)
{
    struct hg__rsock **p = &r->socks;

    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    hg_io_del(r->loop, &s->io); /* the fd may be gone already: no matter */
    s->closed = true;
    s->r = NULL;
    hg_loop_defer(r->loop, &s->defer, hg__sock_release);
}

static void hg__sock_io(struct hg_loop *loop, struct hg_io *io, uint32_t events)
{
    struct hg__rsock *s = hg_container_of(io, struct hg__rsock, io);
    const uint32_t bad = EPOLLERR | EPOLLHUP;
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

    if (s->closed)
        return;
    struct hg_resolver *r = s->r;
    if (events & (EPOLLIN | bad))
        rfd = io->fd;
    if ((events & EPOLLOUT) || ((events & bad) && (s->events & EPOLLOUT)))
        wfd = io->fd;
    ares_process_fd(r->channel, rfd, wfd); /* may close s: see unwatch */
    hg__ares_timer_arm(r);
}

static void hg__sock_release(struct hg_loop *loop, struct hg_defer *defer)
{
    free(hg_container_of(defer, struct hg__rsock, defer));
}

/* Keeps one timer on c-ares' earliest query timeout, if any. */
static void hg__ares_timer_arm(struct hg_resolver *r)
{
    struct timeval max = {.tv_sec = 3600}, tv;
    struct timeval *t = ares_timeout(r->channel, &max, &tv);

    if (t == NULL || r->closing) {
        hg_timer_stop(r->loop, &r->ares_timer);
        return;
    }
    uint64_t ms =
        (uint64_t)t->tv_sec * 1000 + ((uint64_t)t->tv_usec + 999) / 1000;
    hg_timer_start(r->loop, &r->ares_timer, ms);
}

static void hg__ares_timer_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hg_resolver *r =
        hg_container_of(timer, struct hg_resolver, ares_timer);

    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    hg__ares_timer_arm(r);
}

/* ------------------------------------------------------------------------ */
/* Lookups                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Asks for A and AAAA of b's name. c-ares may call hg__lookup_done() before
 * this returns (a failure it knows at once); inflight is set first.
 */
static void hg__lookup_start(struct hg__backend *b)
{
    struct ares_addrinfo_hints hints = {
        .ai_family = AF_UNSPEC,
        .ai_flags = ARES_AI_NOSORT,
    };

    hg_timer_stop(b->r->loop, &b->timer);
    b->inflight = true;
    ares_getaddrinfo(b->r->channel, b->pub.host, NULL, &hints, hg__lookup_done,
                     b);
    hg__ares_timer_arm(b->r);
}

static void hg__lookup_timer_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    hg__lookup_start(hg_container_of(timer, struct hg__backend, timer));
}

/*
 * Ends a lookup. A destroyed channel (reload, shutdown) is not a DNS
 * failure: the caller that destroyed it decides what happens next. c-ares
 * reports success as soon as either family answered; an answer without a
 * usable address counts as a failure.
 */
static void hg__lookup_done(void *arg, int status, int timeouts,
                            struct ares_addrinfo *res)
{
    struct hg__backend *b = arg;
    struct hg_addrset *set = NULL;
    uint64_t ttl_s = 0;

    b->inflight = false;
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
        goto out;
    if (status == ARES_SUCCESS)
        status = hg__addrset_build(res, &set, &ttl_s);
    if (status == ARES_SUCCESS)
        hg__answer_ok(b, set, ttl_s);
    else
        hg__answer_failed(b, status);
out:
    if (res != NULL)
        ares_freeaddrinfo(res);
}

/* ------------------------------------------------------------------------ */
/* Address sets                                                             */
/* ------------------------------------------------------------------------ */

/*
 * An IPv4 address a backend can have: not 0.0.0.0/8 (which connect(2)
 * takes for this host, and DNS filters answer for a blocked name), not
 * multicast, reserved or broadcast (224.0.0.0 and up).
 */
static bool hg__v4_usable(const struct in_addr *a)
{
    uint8_t first = ((const uint8_t *)&a->s_addr)[0];
    return first != 0 && first < 224;
}

/*
 * Copies the address of sa into a zeroed out, port 0: equal addresses are
 * then equal bytes. Returns false for a family we cannot connect to, or
 * an address no backend can have.
 */
static bool hg__addr_copy(const struct sockaddr *sa,
                          struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        in->sin_family = AF_INET;
        in->sin_addr = ((const struct sockaddr_in *)sa)->sin_addr;
        return hg__v4_usable(&in->sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_MULTICAST(a) ||
            (IN6_IS_ADDR_V4MAPPED(a) &&
             !hg__v4_usable((const struct in_addr *)&a->s6_addr[12])))
            return false;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        in6->sin6_scope_id = ((const struct sockaddr_in6 *)sa)->sin6_scope_id;
        return true;
    }
    return false;
}

/*
 * Orders normalised addresses by their bytes: family first (IPv4 before
 * IPv6 on Linux), then the address in network order. Any fixed order
 * serves; it only has to make equal answers equal bytes.
 */
static int hg__addr_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct sockaddr_storage));
}

/* Returns a set with room for n addresses (n filled in), or NULL. */
static struct hg_addrset *hg__addrset_new(size_t n)
{
    struct hg_addrset *set =
        malloc(sizeof(*set) + n * sizeof(struct sockaddr_storage));

    if (set != NULL) {
        set->expires_ms = UINT64_MAX;
        set->n = n;
    }
    return set;
}

/*
 * Turns an answer into a sorted set without duplicates, and the smallest
 * TTL among its addresses; addresses no backend can have are left out.
 * Returns ARES_SUCCESS with *out owned by the caller, ARES_ENODATA when no
 * address is usable, or ARES_ENOMEM.
 */
static int hg__addrset_build(const struct ares_addrinfo *res,
                             struct hg_addrset **out, uint64_t *ttl_s)
{
    const struct ares_addrinfo_node *node;
    struct hg_addrset *set;
    size_t n = 0, kept = 0;

    for (node = res->nodes; node != NULL; node = node->ai_next)
        n++;
    if (n == 0)
        return ARES_ENODATA;
    if ((set = hg__addrset_new(n)) == NULL)
        return ARES_ENOMEM;
    *ttl_s = UINT64_MAX;
    for (node = res->nodes; node != NULL; node = node->ai_next) {
        if (!hg__addr_copy(node->ai_addr, &set->addrs[kept]))
            continue;
        kept++;
        uint64_t ttl = node->ai_ttl > 0 ? (uint64_t)node->ai_ttl : 0;
        *ttl_s = ttl < *ttl_s ? ttl : *ttl_s;
    }
    qsort(set->addrs, kept, sizeof(set->addrs[0]), hg__addr_cmp);
    set->n = 0;
    for (size_t i = 0; i < kept; i++)
        if (set->n == 0 ||
            hg__addr_cmp(&set->addrs[set->n - 1], &set->addrs[i]) != 0)
            set->addrs[set->n++] = set->addrs[i];
    if (set->n == 0) {
        free(set);
        return ARES_ENODATA;
    }
    *out = set;
    return ARES_SUCCESS;
}

static bool hg__addrset_equal(const struct hg_addrset *a,
                              const struct hg_addrset *b)
{
    return a->n == b->n &&
           memcmp(a->addrs, b->addrs, a->n * sizeof(a->addrs[0])) == 0;
}

/* Writes "a, b, c" (the first few addresses) for a log line. */
static void hg__addrs_format(const struct hg_addrset *set, char *buf,
                             size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < set->n && i < HG_RES_LOG_ADDRS; i++) {
        char text[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *ss = &set->addrs[i];
        const void *src =
            ss->ss_family == AF_INET
                ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        inet_ntop(ss->ss_family, src, text, sizeof(text));
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", text);
        if (n < 0 || (size_t)n >= len - used)
            return;
        used += (size_t)n;
    }
    if (set->n > HG_RES_LOG_ADDRS)
        snprintf(buf + used, len - used, ", ... (%zu)", set->n);
}

/* ------------------------------------------------------------------------ */
/* Answers, failures and publishing                                         */
/* ------------------------------------------------------------------------ */

/* Returns the refresh delay for a TTL in seconds, within the bounds. */
static uint64_t hg__ttl_clamp(const struct hg_resolver *r, uint64_t ttl_s)
{
    uint64_t ms = ttl_s > UINT64_MAX / 1000 ? UINT64_MAX : ttl_s * 1000;

    if (ms < r->min_ttl_ms)
        ms = r->min_ttl_ms;
    if (ms > r->max_ttl_ms)
        ms = r->max_ttl_ms;
    return ms < HG_RES_TTL_FLOOR_MS ? HG_RES_TTL_FLOOR_MS : ms;
}

/*
 * Publishes a good answer (taking ownership of set) and schedules the next
 * lookup when its TTL runs out. Logs a change of addresses or a recovery.
 */
static void hg__answer_ok(struct hg__backend *b, struct hg_addrset *set,
                          uint64_t ttl_s)
{
    struct hg_addrset *old = b->pub.addrs;
    uint64_t delay = hg__ttl_clamp(b->r, ttl_s);
    char text[HG_RES_LOG_MAX];
    bool changed = old == NULL || !hg__addrset_equal(old, set);
    const char *what = hg__ok_what(b, changed);

    set->expires_ms = hg_now_ms() + delay;
    if (what != NULL) {
        hg__addrs_format(set, text, sizeof(text));
        hg__log(b->r, HG_LOG_INFO, b->pub.host, "%s: %s", what, text);
    }
    if (changed && old != NULL)
        atomic_fetch_add(&b->pub.changes, 1);
    hg__publish(b, set);
    b->failing = false;
    b->settled = true;
    b->backoff_ms = HG_RES_RETRY_MS;
    if (!b->resting)
        hg_timer_start(b->r->loop, &b->timer, delay);
}

/* Names the state change a good answer makes, or NULL when there is none. */
static const char *hg__ok_what(const struct hg__backend *b, bool changed)
{
    if (b->pub.addrs == NULL)
        return "resolved";
    if (changed)
        return b->failing ? "lookups work again, addresses changed"
                          : "addresses changed";
    return b->failing ? "lookups work again, addresses unchanged" : NULL;
}

/*
 * Counts a failed lookup, keeps whatever was published (now stale) and
 * schedules a retry. Logs only the first failure of a run.
 */
static void hg__answer_failed(struct hg__backend *b, int status)
{
    struct hg_addrset *cur = b->pub.addrs;

    atomic_fetch_add(&b->pub.failures, 1);
    if (cur != NULL)
        atomic_store(&b->pub.stale, true);
    if (!b->failing && cur != NULL)
        hg__log(b->r, HG_LOG_WARN, b->pub.host,
                "lookup failed (%s), keeping %zu stale address%s",
                ares_strerror(status), cur->n, cur->n == 1 ? "" : "es");
    else if (!b->failing)
        hg__log(b->r, HG_LOG_WARN, b->pub.host,
                "lookup failed (%s), no addresses yet", ares_strerror(status));
    b->failing = true;
    b->settled = true;
    if (!b->resting)
        hg_timer_start(b->r->loop, &b->timer, hg__retry_delay(b));
}

/* Returns the delay before the next retry and advances the backoff. */
static uint64_t hg__retry_delay(struct hg__backend *b)
{
    uint64_t cap =
        b->r->min_ttl_ms > HG_RES_RETRY_MS ? b->r->min_ttl_ms : HG_RES_RETRY_MS;
    uint64_t delay = b->backoff_ms;

    if (b->pub.addrs == NULL)
        return HG_RES_RETRY_MS;
    b->backoff_ms = delay * 2 < cap ? delay * 2 : cap;
    return delay;
}

/*
 * Makes set the backend's current answer. Readers that still hold the old
 * one keep it until the grace period that hg__reclaim() waits for.
 */
static void hg__publish(struct hg__backend *b, struct hg_addrset *set)
{
    struct hg_addrset *old = b->pub.addrs;

    rcu_assign_pointer(b->pub.addrs, set);
    atomic_store(&b->pub.naddrs, set->n);
    atomic_store(&b->pub.stale, false);
    hg__retire(b->r, old);
}

/*
 * Queues an unpublished set for freeing after the current loop batch, so
 * that one grace period covers every set replaced in the batch. Without
 * memory for the queue it waits for the grace period here.
 */
static void hg__retire(struct hg_resolver *r, struct hg_addrset *set)
{
    if (set == NULL)
        return;
    if (r->nretired == r->retired_cap) {
        size_t cap = r->retired_cap ? r->retired_cap * 2 : 16;
        struct hg_addrset **v = realloc(r->retired, cap * sizeof(*v));
        if (v == NULL) {
            urcu_memb_synchronize_rcu();
            free(set);
            return;
        }
        r->retired = v;
        r->retired_cap = cap;
    }
    r->retired[r->nretired++] = set;
    if (!r->closing && !hg_timer_active(&r->reclaim_timer))
        hg_timer_start(r->loop, &r->reclaim_timer, 0);
}

/*
 * Waits until no reader can still see a retired set, then frees them all.
 * Called on the loop's thread, outside any read-side critical section.
 */
static void hg__reclaim(struct hg_resolver *r)
{
    if (r->nretired == 0)
        return;
    urcu_memb_synchronize_rcu();
    for (size_t i = 0; i < r->nretired; i++)
        free(r->retired[i]);
    r->nretired = 0;
}

static void hg__reclaim_timer_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    hg__reclaim(hg_container_of(timer, struct hg_resolver, reclaim_timer));
}

/* ------------------------------------------------------------------------ */
/* Backends                                                                 */
/* ------------------------------------------------------------------------ */

/* Runs on the loop's thread, the list's only writer: no lock needed. */
static struct hg__backend *hg__backend_find(struct hg_resolver *r,
                                            const char *host)
{
    for (struct hg__backend *b = r->head; b != NULL; b = b->next)
        if (strcasecmp(b->pub.host, host) == 0)
            return b;
    return NULL;
}

/*
 * Allocates a backend for host and appends it to the list. A literal IP
 * gets its one-address set now. Returns NULL when out of memory.
 */
static struct hg__backend *hg__backend_new(struct hg_resolver *r,
                                           const char *host)
{
    struct hg__backend *b = calloc(1, sizeof(*b));

    if (b == NULL)
        goto fail;
    b->pub.host = strdup(host);
    if (b->pub.host == NULL)
        goto fail_backend;
    b->r = r;
    b->timer.cb = hg__lookup_timer_cb;
    b->backoff_ms = HG_RES_RETRY_MS;
    atomic_init(&b->pub.stale, false);
    atomic_init(&b->pub.failures, 0);
    atomic_init(&b->pub.changes, 0);
    atomic_init(&b->pub.naddrs, 0);
    if (!hg__backend_literal(b))
        goto fail_host;
    hg__backend_append(r, b);
    return b;

fail_host:
    free(b->pub.host);
fail_backend:
    free(b);
fail:
    return NULL;
}

/*
 * Sets b->literal when the host is an IPv4 or IPv6 address and publishes
 * it. Returns false only when it is one but the set cannot be allocated.
 */
static bool hg__backend_literal(struct hg__backend *b)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    struct hg_addrset *set;

    if (inet_pton(AF_INET, b->pub.host, &in->sin_addr) == 1)
        in->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, b->pub.host, &in6->sin6_addr) == 1)
        in6->sin6_family = AF_INET6;
    else
        return true;
    b->literal = true;
    b->settled = true;
    if ((set = hg__addrset_new(1)) == NULL)
        return false;
    set->addrs[0] = ss;
    hg__publish(b, set);
    return true;
}

static void hg__backend_append(struct hg_resolver *r, struct hg__backend *b)
{
    pthread_mutex_lock(&r->lock);
    if (r->tail != NULL)
        r->tail->next = b;
    else
        r->head = b;
    r->tail = b;
    pthread_mutex_unlock(&r->lock);
}

static bool hg__all_settled(struct hg_resolver *r)
{
    for (struct hg__backend *b = r->head; b != NULL; b = b->next)
        if (!b->settled)
            return false;
    return true;
}

static size_t hg__count_empty(struct hg_resolver *r)
{
    size_t n = 0;

    for (struct hg__backend *b = r->head; b != NULL; b = b->next)
        n += atomic_load(&b->pub.naddrs) == 0;
    return n;
}

/* Starts a lookup now for every name that is not being looked up. */
static void hg__refresh_all(struct hg_resolver *r)
{
    for (struct hg__backend *b = r->head; b != NULL; b = b->next)
        if (!b->literal && !b->inflight && !b->resting)
            hg__lookup_start(b);
}

/* Brings refreshes scheduled past a lowered max_ttl forward to it. */
static void hg__reclamp_timers(struct hg_resolver *r)
{
    uint64_t latest = r->loop->now + r->max_ttl_ms;

    for (struct hg__backend *b = r->head; b != NULL; b = b->next)
        if (hg_timer_active(&b->timer) && b->timer.when > latest)
            hg_timer_start(r->loop, &b->timer, r->max_ttl_ms);
}

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

static void hg__log(struct hg_resolver *r, enum hg_log_level level,
                    const char *host, const char *fmt, ...)
{
    char what[HG_RES_LOG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    r->log_cb(r->log_arg, level, host, what);
}

/* The default until the daemon's logger takes over: one line on stderr. */
static void hg__log_stderr(void *arg, enum hg_log_level level, const char *host,
                           const char *what)
{
    fprintf(stderr, "resolver: %s: %s\n", host, what);
}
