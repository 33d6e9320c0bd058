/*
 * hg_daemon: the main thread. Loads the config, owns the listening
 * sockets, the resolver and the admin server, starts the workers, handles
 * signals (SIGHUP reload, SIGTERM/SIGINT drain and exit) and hands each new
 * config to the workers.
 */
#ifndef HG_DAEMON_H
#define HG_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "hg_config.h"
#include "hg_loop.h"

struct hg_worker;
struct hg_resolver;
struct hg_listen_sock;
struct hg_admin;
struct hg_retired;

struct hg_daemon {
    const char *config_path;
    struct hg_loop loop;
    struct hg_resolver *resolver;
    struct hg_admin *admin;

    /* The current config: main's reference, published to workers. */
    struct hg_config *cfg;
    _Atomic(struct hg_config *) published;
    atomic_uint_fast64_t gen;
    pthread_mutex_t cfg_lock; /* for readers outside the workers */
    struct hg_retired *retired;

    struct hg_worker *workers;
    unsigned nworkers;
    struct hg_listen_sock *socks;

    /* Descriptors held by pipes, in use or kept, in all workers; and what
     * they may hold, set from each config (hg_worker_pipe_get()). */
    atomic_uint pipe_fds;
    atomic_uint pipe_fds_max;
    /* Tunnels open in all listeners, and how many the open files limit
     * leaves room for beside the pipes and the rest (hg__admit()). */
    atomic_uint conns;
    atomic_uint conns_max;
    /* Connections the admin endpoint may hold, and its address: fixed at
     * start. */
    unsigned admin_conns;
    struct sockaddr_storage admin_addr;
    socklen_t admin_addr_len;

    atomic_bool ready;    /* listening and not draining */
    atomic_bool draining; /* SIGTERM seen */

    int sigfd;
    struct hg_io sig_io;
    struct hg_timer retire_timer;
    struct hg_timer stop_timer; /* steps of the shutdown */
    uint64_t stop_deadline;
    bool stop_draining; /* workers were told to drain */
};

/* Runs the gateway with the config at path; returns the exit status. */
int hg_daemon_run(const char *path);

/* Checks a config file, printing errors to stderr; returns exit status. */
int hg_daemon_check(const char *path);

/* Listening, not draining, and with room for a tunnel: what /readyz says. */
bool hg_daemon_ready(struct hg_daemon *d);

/*
 * The config the admin server should describe, with a reference the
 * caller drops with hg_config_unref().
 */
struct hg_config *hg_daemon_config(struct hg_daemon *d);

#endif
