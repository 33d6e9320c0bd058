/*
 * hg_worker: one thread per core with its own event loop, its own
 * SO_REUSEPORT listening sockets and its own connections. Nothing on the
 * forwarding path takes a lock: a worker sees a new config only when the
 * main thread tells it to switch, and keeps the old one alive for the
 * connections that were accepted under it.
 */
#ifndef HG_WORKER_H
#define HG_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hg_config.h"
#include "hg_hello.h"
#include "hg_loop.h"
#include "hg_pace.h"

struct hg_daemon;
struct hg_worker;
struct hg_wcfg;

/* A bound address: one listening socket per worker, made by main. */
struct hg_listen_sock {
    struct hg_listen_sock *next;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char *text;
    int *fds;          /* [nworkers] */
    uint64_t used_gen; /* last config generation that binds it */
};

/* A worker's registration of one listening socket under one config. */
struct hg_wlisten {
    struct hg_io io;
    struct hg_timer pause; /* accept paused after EMFILE/ENFILE */
    struct hg_worker *worker;
    struct hg_wcfg *wcfg;
    const struct hg_listener_conf *conf;
    uint16_t port;
};

/* A worker's view of one config, alive while its connections are. */
struct hg_wcfg {
    struct hg_wcfg *next;
    struct hg_defer defer; /* freed after the batch that retired it */
    struct hg_config *cfg; /* a reference */
    uint64_t gen;
    uint32_t nconns;
    struct hg_wlisten *ls; /* registered only while current */
    size_t nls;
    struct hg_pace **pace; /* [cfg->nroutes]: the worker's, or NULL */
};

enum hg_worker_cmd {
    HG_WORKER_SWITCH = 1 << 0, /* adopt the daemon's published config */
    HG_WORKER_CLOSE = 1 << 1,  /* stop accepting */
    HG_WORKER_EXIT = 1 << 2,   /* close every connection and return */
    HG_WORKER_DRAIN = 1 << 3,  /* close connections over the drain window */
};

struct hg_conn;

struct hg_worker {
    unsigned id;
    pthread_t thread;
    struct hg_daemon *daemon;
    struct hg_loop loop;
    struct hg_io cmd_io; /* eventfd */
    atomic_uint cmds;    /* enum hg_worker_cmd bits */
    atomic_uint_fast64_t gen_seen;

    struct hg_wcfg *wcfg; /* current first, then older ones */
    bool accepting;

    struct hg_conn *conns; /* every open connection, for shutdown */
    uint64_t next_id;
    uint32_t rr; /* round robin over backend addresses */

    void **bufs; /* free forwarding buffers */
    uint32_t nbufs;
    struct hg_pipe *pipes; /* free pipes */
    uint32_t npipes;       /* in the pool */
    uint32_t pipes_used;   /* held by tunnels */

    struct hg_pace *paces; /* one per paced route name, kept */

    struct hg_timer drain; /* closes connections a few at a time */
    uint64_t drain_start, drain_ms;
    uint32_t drain_total, drain_closed;
    atomic_bool drained;  /* no connection left after a drain */
    atomic_bool unlisted; /* no listening socket in its epoll any more */

    uint64_t pause_log_ms; /* last "accept paused" line */
    unsigned pauses;       /* accept pauses since that line */
    uint64_t sample_ms;    /* refusal log sampling */
    uint64_t suppressed;
};

/* Forwarding buffers come from a small per-worker pool. */
#define HG_BUF_SIZE  (16 * 1024)
#define HG_BUF_CACHE 64

/*
 * Pipes for splice(2), pooled the same way: a tunnel holds one only while
 * bulk bytes sit in it. HG_PIPE_MAX caps the pipes in use per worker (two
 * descriptors each), and the daemon's pipe_fds_max the descriptors that
 * pipes hold in all workers, kept ones included; past either, bulk goes
 * through buffers.
 */
#define HG_PIPE_SIZE  (256 * 1024) /* asked for; the kernel may give less */
#define HG_PIPE_CACHE 32
#define HG_PIPE_MAX   512

struct hg_pipe {
    struct hg_pipe *next; /* in the pool */
    int fd[2];
    uint32_t size; /* bytes it holds */
};

int hg_worker_start(struct hg_worker *w, struct hg_daemon *d, unsigned id);
void hg_worker_post(struct hg_worker *w, enum hg_worker_cmd cmd);
void hg_worker_join(struct hg_worker *w);

void *hg_worker_buf_get(struct hg_worker *w);
void hg_worker_buf_put(struct hg_worker *w, void *buf);

/* A pipe from the pool or a new one; NULL when at the cap or failing. */
struct hg_pipe *hg_worker_pipe_get(struct hg_worker *w);
/* Returns a pipe; one that may hold bytes (clean false) is closed. */
void hg_worker_pipe_put(struct hg_worker *w, struct hg_pipe *p, bool clean);
/* Out of descriptors: closes the pipes kept for reuse. False: there were
 * none. */
bool hg_worker_pipes_release(struct hg_worker *w);

/* A tunnel counted in listener (at accept) has closed. */
void hg_worker_release(struct hg_worker *w, struct hg_stats *listener);

/* Counts and, at most once a second, logs a refusal before routing. */
void hg_worker_refused(struct hg_worker *w, const struct hg_listener_conf *l,
                       int reason, const struct sockaddr *peer,
                       const char *detail);

/* A connection closed: the view it belonged to may be done. */
void hg_worker_wcfg_release(struct hg_worker *w, struct hg_wcfg *wc);

/* From hg_conn.c: take over an accepted socket / close all. */
void hg_conn_accepted(struct hg_worker *w, struct hg_wlisten *wl, int fd,
                      const struct sockaddr_storage *peer);
void hg_conn_close_all(struct hg_worker *w);
/* A connection's turn under its route's connect_rate has come. */
void hg_conn_queue_go(struct hg_pace_wait *wait);
/* Closes the first open connection, as the gateway stops. */
void hg_conn_close_one(struct hg_worker *w);
/* The number of open connections (walks the list). */
uint32_t hg_conn_count(const struct hg_worker *w);

#endif
