/*
 * hg_resolver: keeps the addresses of every backend name current.
 *
 * Runs on the main thread's loop with c-ares. Each backend name is resolved
 * (A and AAAA) and re-resolved when the answer's TTL, clamped to
 * resolver.min_ttl..max_ttl, runs out. When a lookup fails, the last good
 * answer stays in use (marked stale) and the lookup is retried. Literal IP
 * backends never touch DNS.
 *
 * Workers read a backend's current address set without locks: the set is
 * immutable and published with RCU (liburcu, memb flavour), so a worker
 * reads it inside urcu_memb_read_lock()/unlock() and copies what it needs.
 * Backends persist across reloads, keyed by name, so a reload never loses
 * an answer.
 */
#ifndef HG_RESOLVER_H
#define HG_RESOLVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hg_config.h"
#include "hg_loop.h"

struct hg_config;
struct hg_resolver;

/* An immutable answer: addresses with port 0 (the caller sets the port). */
struct hg_addrset {
    uint64_t expires_ms; /* monotonic; when it is looked up again */
    size_t n;
    struct sockaddr_storage addrs[];
};

struct hg_backend {
    char *host;                    /* as configured, no port */
    struct hg_addrset *addrs;      /* RCU-published; NULL until first answer */
    atomic_bool stale;             /* last lookup failed; addrs is older */
    atomic_uint_fast64_t failures; /* lookups that failed, ever */
    atomic_uint_fast64_t changes;  /* answers that differed from the last */
    atomic_size_t naddrs;          /* addrs->n, readable without RCU */
};

/*
 * Creates the resolver on loop with cfg's servers and TTL bounds.
 * Returns NULL with a static reason when c-ares cannot be set up.
 */
struct hg_resolver *hg_resolver_new(struct hg_loop *loop,
                                    const struct hg_config *cfg,
                                    const char **reason);

/*
 * A reload's resolver settings, checked but not applied: hg_resolver_plan()
 * fills it (0), or gives a static reason (-1, nothing to drop);
 * hg_resolver_apply() puts it in force, hg_resolver_plan_drop() discards it.
 * Applying new TTL bounds brings refreshes scheduled past the new max_ttl
 * forward; new servers get a new channel, the running lookups are dropped
 * and every name is asked again at once.
 */
struct hg_resolver_plan {
    uint64_t min_ttl_ms, max_ttl_ms;
    char *servers_csv;
    void *channel; /* a new c-ares channel; NULL: the servers stay */
};
int hg_resolver_plan(struct hg_resolver *r, const struct hg_config *cfg,
                     struct hg_resolver_plan *p, const char **reason);
void hg_resolver_apply(struct hg_resolver *r, struct hg_resolver_plan *p);
void hg_resolver_plan_drop(struct hg_resolver_plan *p);

/* Both steps at once. Returns 0, or -1 with a reason and nothing changed. */
int hg_resolver_configure(struct hg_resolver *r, const struct hg_config *cfg,
                          const char **reason);

/*
 * Returns the backend for host, creating it and starting its first lookup
 * if it is new (or was put to rest). The resolver owns it; it lives until
 * hg_resolver_free(). Returns NULL only when out of memory.
 */
struct hg_backend *hg_resolver_backend(struct hg_resolver *r, const char *host);

/*
 * Puts to rest every backend that no route of cfg uses: its name is no
 * longer looked up, and it keeps its last addresses for the connections
 * that began under an older configuration.
 */
void hg_resolver_keep(struct hg_resolver *r, const struct hg_config *cfg);

/*
 * Runs the loop until every backend has had its first answer or failure,
 * or timeout_ms passed; used at start-up so that the first connections
 * find addresses. Returns the number of backends still without addresses.
 */
size_t hg_resolver_wait_initial(struct hg_resolver *r, uint64_t timeout_ms);

/*
 * Calls fn for each backend. Safe from any thread (the admin server's):
 * the list is guarded by a mutex, and fn may read the atomics only.
 */
void hg_resolver_foreach(struct hg_resolver *r,
                         void (*fn)(struct hg_backend *b, void *arg),
                         void *arg);

/*
 * Receives the resolver's log lines, at most one per state change of a
 * backend (new addresses, lookups failing, recovery): the level, the host
 * as configured and a short text of what happened.
 */
typedef void (*hg_resolver_log_cb)(void *arg, enum hg_log_level level,
                                   const char *host, const char *what);

/*
 * Sends log lines to cb from now on; NULL restores the default, one line
 * "resolver: HOST: WHAT" on stderr.
 */
void hg_resolver_set_log(struct hg_resolver *r, hg_resolver_log_cb cb,
                         void *arg);

/*
 * Cancels every lookup and timer and frees the backends and their address
 * sets. Call it on the loop's thread, once no worker reads a backend any
 * more, and before hg_loop_deinit(): the loop's deferred pass releases the
 * last c-ares socket watchers.
 */
void hg_resolver_free(struct hg_resolver *r);

#endif
