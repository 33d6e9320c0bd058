/*
 * hg_config: the gateway's configuration, loaded from YAML into one
 * immutable snapshot. Workers read a snapshot without locks; a reload builds
 * a new one and swaps the pointer. Nothing in a snapshot changes after
 * hg_config_load() returns, except the runtime slots that the daemon fills
 * once before publishing it (marked "runtime").
 */
#ifndef HG_CONFIG_H
#define HG_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct hg_cidr_set;
struct hg_sni_table;
struct hg_backend;
struct hg_stats;
struct hg_listen_sock;

enum hg_log_level {
    HG_LOG_ERROR,
    HG_LOG_WARN,
    HG_LOG_INFO,
    HG_LOG_DEBUG,
};

enum hg_log_format {
    HG_LOG_TEXT,
    HG_LOG_JSON,
};

/* One address to bind or to reach, as written and as parsed. */
struct hg_sockaddr {
    char *text; /* as written, e.g. "[::]:8883" */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct hg_listener_conf {
    char *name;
    struct hg_sockaddr *binds;
    size_t nbinds;
    struct hg_cidr_set *allow; /* NULL: every address */
    uint64_t max_conns;        /* open at once, gateway-wide; 0: no limit */

    /* runtime */
    struct hg_stats *stats;
    struct hg_listen_sock **socks; /* one per bind */
};

#define HG_RATE_MAX_PER_MIN (100000ull * 60) /* connect_rate: 100000/s */
#define HG_MAX_CONNS_MAX    10000000ull      /* max_connections */

struct hg_route_conf {
    char *name;
    char **sni; /* as written */
    size_t nsni;
    char *backend_host;        /* DNS name or literal IP, without port or [] */
    uint16_t backend_port;     /* 0: the port the client connected to */
    struct hg_cidr_set *allow; /* NULL: every address */
    uint64_t connect_per_min;  /* connect_rate, a minute; 0: not paced */

    /* runtime */
    struct hg_backend *backend;
    struct hg_stats *stats;
};

struct hg_config {
    atomic_uint refs;
    char *path;

    unsigned workers; /* 0: one per core ("auto") */
    struct hg_sockaddr admin_listen;
    enum hg_log_level log_level;
    enum hg_log_format log_format;

    uint64_t connect_timeout_ms; /* per backend address tried */
    uint64_t hello_timeout_ms;   /* accept to whole ClientHello */
    uint64_t idle_timeout_ms;    /* no byte either way */
    uint64_t queue_timeout_ms;   /* longest wait under a connect_rate */
    uint64_t tcp_keepalive_ms;   /* 0: off */
    size_t max_hello;            /* bytes */

    /*
     * SIGTERM: /readyz answers 503 while accepting goes on for
     * shutdown_ready_ms (the load balancer's probe notices), then the open
     * connections are closed spread over shutdown_drain_ms.
     */
    uint64_t shutdown_ready_ms;
    uint64_t shutdown_drain_ms;

    char **resolver_servers; /* "IP", "IP:port" or "[v6]:port" as written
                                (checked); none: resolv.conf */
    size_t nresolver_servers;
    uint64_t resolver_min_ttl_ms;
    uint64_t resolver_max_ttl_ms;

    struct hg_listener_conf *listeners;
    size_t nlisteners;
    struct hg_route_conf *routes;
    size_t nroutes;
    struct hg_route_conf *default_route; /* NULL: refuse ("none") */

    struct hg_sni_table *sni; /* built from routes[].sni */

    /* runtime */
    struct hg_stats **pair_stats; /* [listener * nroutes + route] */
    void (*runtime_free)(struct hg_config *cfg); /* called by the last unref */
};

/*
 * Called once per error with a complete message "FILE:LINE:COL: text"
 * (LINE and COL 1-based).
 */
typedef void (*hg_config_error_cb)(void *arg, const char *message);

/*
 * Reads and validates the YAML file at path. Reports every error it finds
 * (not just the first) through on_error. Returns a new snapshot with one
 * reference, owned by the caller, or NULL when there was at least one error.
 */
struct hg_config *hg_config_load(const char *path, hg_config_error_cb on_error,
                                 void *arg);

/*
 * Like hg_config_load(), but reads the YAML from text[0..len) instead of a
 * file. name stands for the file in messages and in the snapshot's path,
 * and its directory is where relative "file:" allow lists are looked up.
 * For tests and the fuzzer.
 */
struct hg_config *hg_config_load_buffer(const char *name, const char *text,
                                        size_t len, hg_config_error_cb on_error,
                                        void *arg);

/* Takes a reference. */
struct hg_config *hg_config_ref(struct hg_config *cfg);

/* Drops a reference; the last one frees the snapshot and what it owns. */
void hg_config_unref(struct hg_config *cfg);

/*
 * Finds the route for a server name as sent in SNI (any case, optional
 * trailing dot): an exact name beats a wildcard, the longest wildcard wins.
 * Returns NULL when no route matches (the caller then applies
 * default_route).
 */
const struct hg_route_conf *hg_config_route_for(const struct hg_config *cfg,
                                                const char *sni, size_t len);

#endif
