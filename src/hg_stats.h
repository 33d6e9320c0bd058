/*
 * hg_stats: the counters behind /metrics. One record per listener, per
 * route and per listener/route pair, kept by name for the life of the
 * process so that counters stay monotonic across reloads. Workers update
 * them with relaxed atomics; the admin thread reads them.
 */
#ifndef HG_STATS_H
#define HG_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* Why a connection was closed before it reached a backend. */
enum hg_refuse {
    HG_REFUSE_LISTENER_ALLOW, /* client not in the listener's allow list */
    HG_REFUSE_ROUTE_ALLOW,    /* client not in the route's allow list */
    HG_REFUSE_NO_SNI,         /* no server_name and no default_route */
    HG_REFUSE_UNKNOWN_SNI,    /* no route for the name, no default_route */
    HG_REFUSE_NOT_TLS,        /* first bytes are not a TLS record */
    HG_REFUSE_BAD_HELLO,      /* TLS framing or ClientHello malformed */
    HG_REFUSE_TOO_BIG,        /* ClientHello larger than max_hello */
    HG_REFUSE_HELLO_TIMEOUT,  /* ClientHello not complete in time */
    HG_REFUSE_CLIENT_GONE,    /* client closed before its ClientHello */
    HG_REFUSE_SHUTDOWN,       /* the gateway is stopping */
    HG_REFUSE_NO_MEMORY,      /* allocation failed */
    HG_REFUSE_LIMIT,          /* the listener's max_connections are open */
    HG_REFUSE_NO_DESCRIPTORS, /* the open files limit leaves no room */
    HG_REFUSE_MAX
};

enum hg_dir {
    HG_DIR_UP,   /* client to backend */
    HG_DIR_DOWN, /* backend to client */
};

enum hg_stats_kind {
    HG_STATS_LISTENER,
    HG_STATS_ROUTE,
    HG_STATS_PAIR,
};

struct hg_stats {
    struct hg_stats *next;
    enum hg_stats_kind kind;
    char *listener;                      /* NULL for a route record */
    char *route;                         /* NULL for a listener record */
    atomic_uint_fast64_t active;         /* pair: connections open now */
    atomic_uint_fast64_t total;          /* pair: connections routed, ever */
    atomic_uint_fast64_t bytes[2];       /* route */
    atomic_uint_fast64_t queued;         /* route: waiting for their turn now */
    atomic_uint_fast64_t queue_timeouts; /* route: gave up waiting, ever */
    atomic_uint_fast64_t pace_tat_us;    /* route: connect_rate's next slot */
    atomic_uint_fast64_t refused[HG_REFUSE_MAX]; /* listener */
    atomic_uint_fast64_t open; /* listener: connections open, any phase */
};

/* Process-wide counters. */
struct hg_global_stats {
    atomic_uint_fast64_t reloads_ok;
    atomic_uint_fast64_t reloads_failed;
    atomic_uint_fast64_t accept_paused; /* times accept paused (EMFILE) */
};

extern struct hg_global_stats hg_global_stats;

/*
 * Return the record for a name (or pair of names), creating it on first
 * use; NULL only when out of memory. Called by the main thread when a
 * config is activated, never on the forwarding path.
 */
struct hg_stats *hg_stats_listener(const char *listener);
struct hg_stats *hg_stats_route(const char *route);
struct hg_stats *hg_stats_pair(const char *listener, const char *route);

/*
 * Calls fn for every record while holding the registry lock; fn must not
 * call back into this module.
 */
void hg_stats_foreach(void (*fn)(const struct hg_stats *s, void *arg),
                      void *arg);

/* Frees every record (at exit). */
void hg_stats_free_all(void);

const char *hg_refuse_name(enum hg_refuse reason);

static inline void hg_stats_add(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void hg_stats_sub(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t hg_stats_get(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
