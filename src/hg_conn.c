/*
 * hg_conn: one client connection, from accept to close.
 *
 *   HELLO       read until the whole ClientHello is in, then route by SNI
 *   QUEUED      waiting for a turn under the route's connect_rate, at most
 *               timeouts.queue
 *   CONNECTING  non-blocking connect to the route's backend addresses in
 *               turn, each within timeouts.connect
 *   FORWARD     copy bytes both ways, unchanged, half-close passed on
 *   CLOSED      waiting to be freed after the current batch of events
 *
 * Sockets are registered once, edge-triggered, for reading and writing;
 * the connection remembers which side is readable and writable. A buffer
 * is held only while bytes are in flight: an idle tunnel holds none.
 */
#include "hg_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urcu/urcu-memb.h>

#include "hg_cidr.h"
#include "hg_log.h"
#include "hg_net.h"
#include "hg_resolver.h"
#include "hg_stats.h"

#define HG_HELLO_FIRST_CAP 4096
#define HG_PUMP_BUDGET     16
/*
 * Addresses tried per connection before giving up: enough to step over a
 * few dead ones, few enough that a device is not kept waiting for minutes
 * (each try may take timeouts.connect).
 */
#define HG_CONNECT_TRIES 8
/*
 * Keepalive is set on the backend socket this long after it connected
 * (at most an eighth of tcp_keepalive): four system calls that a tunnel
 * closed within it never pays, and that a reconnect storm pays after its
 * peak. The first probe comes that much later, which no idle timer of a
 * load balancer notices.
 */
#define HG_KEEPALIVE_LATE_MS 1000

enum hg_conn_state {
    HG_CONN_HELLO,
    HG_CONN_QUEUED,
    HG_CONN_CONNECTING,
    HG_CONN_FORWARD,
    HG_CONN_CLOSED,
};

/*
 * Readiness remembered between edge-triggered events. A recv(2) shorter
 * than asked for drained the socket, so readiness is dropped without
 * another read that would only say EAGAIN: any new data is a new edge. A
 * splice(2) into a pipe can come back short with bytes left behind (see
 * hg__pipe_read()), so after one only EAGAIN drops it. After a hang-up the
 * socket is read until it says EOF. recv(2) also stops short at TCP urgent
 * data (which a TLS peer never sends; its one byte is dropped): on a socket
 * that has had some, only EAGAIN drops readiness.
 */
enum {
    HG_CLIENT_RD = 1 << 0,
    HG_CLIENT_WR = 1 << 1,
    HG_SERVER_RD = 1 << 2,
    HG_SERVER_WR = 1 << 3,
    HG_CLIENT_HUP = 1 << 4,
    HG_SERVER_HUP = 1 << 5,
    HG_CLIENT_URG = 1 << 6,
    HG_SERVER_URG = 1 << 7,
};

/* What a tunnel's sockets are watched for, but see hg__interest(). */
#define HG_TUNNEL_EVENTS (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET)

/* One direction of a tunnel. */
struct hg_flow {
    uint8_t *buf;         /* bytes in flight, or NULL */
    struct hg_pipe *pipe; /* or bytes in flight in a pipe (splice) */
    uint32_t off;         /* first byte of buf not yet written */
    uint32_t len;         /* bytes in buf, or in pipe */
    bool heap;            /* buf is the hello buffer (malloc), not pooled */
    bool bulk;            /* the last read brought a buffer's worth */
    bool stuffed;         /* the pipe took no more: write before reading */
    bool eof;             /* the source sent FIN */
    bool shut;            /* FIN passed on to the destination */
};

union hg_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

struct hg_conn {
    struct hg_io cio; /* client socket */
    struct hg_io sio; /* backend socket, fd -1 before connecting */
    struct hg_timer timer;
    struct hg_defer defer;
    struct hg_pace_wait wait; /* in the route's queue while QUEUED */
    struct hg_conn *prev, *next;
    struct hg_worker *w;
    struct hg_wcfg *wcfg;
    const struct hg_listener_conf *listener;
    const struct hg_route_conf *route;
    struct hg_stats *pair;

    struct hg_hello *hello; /* parser, only while reading the hello */
    uint8_t *hbuf;          /* every byte read before routing */
    uint32_t hlen, hcap;
    char *sni;

    struct hg_flow up, down;
    union hg_addr peer, backend;

    uint64_t id;
    uint64_t t_accept, t_routed, t_connected, t_last;
    uint64_t t_dequeued; /* its turn came; 0: never waited */
    uint64_t bytes[2];
    uint32_t acked;     /* peers' acknowledged bytes: hg__still_taking() */
    const char *reason; /* last connect failure */
    uint16_t port;      /* the port the client connected to */
    uint8_t state;
    uint8_t ready;
    uint8_t unwatched; /* events left out per socket: hg__watch() */
    uint8_t attempt;   /* backend addresses tried, at most HG_CONNECT_TRIES */
    uint8_t rr;        /* where this connection starts in the address set */
    bool deferred : 1;
    bool ka_pending : 1; /* keepalive still to set on the backend socket */
    bool acked_seen : 1; /* acked holds a look */
};

static void hg__client_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events);
static void hg__server_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events);
static void hg__timer_cb(struct hg_loop *loop, struct hg_timer *timer);
static void hg__defer_cb(struct hg_loop *loop, struct hg_defer *defer);
static bool hg__still_taking(struct hg_conn *c);
static void hg__hello_read(struct hg_conn *c);
static bool hg__hello_grow(struct hg_conn *c);
static void hg__hello_done(struct hg_conn *c, enum hg_hello_rc rc);
static void hg__route(struct hg_conn *c);
static void hg__connect_start(struct hg_conn *c);
static void hg__connect_next(struct hg_conn *c);
static int hg__connect_one(struct hg_conn *c);
static void hg__connect_done(struct hg_conn *c, uint32_t events);
static void hg__connect_failed(struct hg_conn *c, const char *reason);
static void hg__forward_start(struct hg_conn *c);
static void hg__forward_timer(struct hg_conn *c);
static void hg__pump(struct hg_conn *c);
static int hg__pump_dir(struct hg_conn *c, enum hg_dir dir);
static bool hg__watch(struct hg_conn *c);
static bool hg__in_flight(const struct hg_flow *f);
static bool hg__flow_full(const struct hg_flow *f);
static int hg__flow_write(struct hg_conn *c, struct hg_flow *f, int fd,
                          uint8_t wr_bit);
static void hg__flow_release(struct hg_conn *c, struct hg_flow *f);
static int hg__pipe_write(struct hg_conn *c, struct hg_flow *f, int fd,
                          uint8_t wr_bit);
static int hg__write_failed(struct hg_conn *c, uint8_t wr_bit, int err);
static void hg__count(struct hg_conn *c, const struct hg_flow *f, size_t n);
static int hg__flow_read(struct hg_conn *c, enum hg_dir dir, int fd);
static int hg__pipe_read(struct hg_conn *c, enum hg_dir dir, int fd);
static int hg__pipe_top_up(struct hg_conn *c, enum hg_dir dir, int fd);
static int hg__read_result(struct hg_conn *c, enum hg_dir dir, ssize_t n,
                           bool drained, int err);
static void hg__refuse(struct hg_conn *c, enum hg_refuse reason,
                       const char *detail);
static void hg__close(struct hg_conn *c, const char *term, const char *reason);
static void hg__teardown(struct hg_conn *c);
static void hg__access_log(struct hg_conn *c, const char *term,
                           const char *reason);
static void hg__schedule(struct hg_conn *c);
static void hg__free(struct hg_conn *c);

/*
 * Takes over fd, just accepted on wl and allowed by the listener. On any
 * failure the socket is closed and the refusal counted.
 */
void hg_conn_accepted(struct hg_worker *w, struct hg_wlisten *wl, int fd,
                      const struct sockaddr_storage *peer)
{
    const struct hg_config *cfg = wl->wcfg->cfg;
    struct hg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->hello = malloc(sizeof(*c->hello))) == NULL) {
        free(c);
        close(fd);
        hg_worker_release(w, wl->conf->stats);
        hg_worker_refused(w, wl->conf, HG_REFUSE_NO_MEMORY,
                          (const struct sockaddr *)peer, NULL);
        return;
    }
    c->w = w;
    c->wcfg = wl->wcfg;
    c->wcfg->nconns++;
    c->listener = wl->conf;
    c->port = wl->port;
    memcpy(&c->peer, peer, hg_net_len((const struct sockaddr *)peer));
    c->id = w->next_id++;
    c->t_accept = c->t_last = w->loop.now;
    c->cio = (struct hg_io){.fd = fd, .cb = hg__client_cb};
    c->sio = (struct hg_io){.fd = -1, .cb = hg__server_cb};
    c->timer.cb = hg__timer_cb;
    hg_hello_init(c->hello, cfg->max_hello);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;

    /* TCP_NODELAY and keepalive come from the listening socket. */
    int rc = hg_io_add(&w->loop, &c->cio, HG_TUNNEL_EVENTS);
    if (rc < 0) {
        hg__refuse(c, HG_REFUSE_NO_MEMORY, strerror(-rc));
        return;
    }
    hg_timer_start(&w->loop, &c->timer, cfg->hello_timeout_ms);
    /* With TCP_DEFER_ACCEPT the hello is usually in already. */
    c->ready |= HG_CLIENT_RD;
    hg__hello_read(c);
}

/* Closes the first open connection, as the gateway stops. */
void hg_conn_close_one(struct hg_worker *w)
{
    struct hg_conn *c = w->conns;
    if (c == NULL)
        return;
    if (c->state == HG_CONN_HELLO)
        hg__refuse(c, HG_REFUSE_SHUTDOWN, NULL);
    else
        hg__close(c, c->state == HG_CONN_FORWARD ? "PD" : "PC", "shutdown");
}

/* Closes every connection of the worker (the gateway is stopping). */
void hg_conn_close_all(struct hg_worker *w)
{
    while (w->conns != NULL)
        hg_conn_close_one(w);
}

uint32_t hg_conn_count(const struct hg_worker *w)
{
    uint32_t n = 0;
    for (const struct hg_conn *c = w->conns; c != NULL; c = c->next)
        n++;
    return n;
}

static void hg__client_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events)
{
    struct hg_conn *c = hg_container_of(io, struct hg_conn, cio);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->ready |= HG_CLIENT_RD;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->ready |= HG_CLIENT_HUP;
    if (events & EPOLLPRI)
        c->ready |= HG_CLIENT_RD | HG_CLIENT_URG;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->ready |= HG_CLIENT_WR;
    switch (c->state) {
    case HG_CONN_HELLO:
        hg__hello_read(c);
        break;
    case HG_CONN_QUEUED:
        /* A TLS client that hangs up before any answer has given up:
         * its turn would only cost the hub a connection. */
        if (events & EPOLLERR)
            hg__close(c, "CC", "client_reset");
        else if (events & (EPOLLRDHUP | EPOLLHUP))
            hg__close(c, "CC", "client_gone");
        break;
    case HG_CONN_CONNECTING:
        if (events & EPOLLERR)
            hg__close(c, "CC", "client_reset");
        break;
    case HG_CONN_FORWARD:
        hg__pump(c);
        break;
    default:
        break;
    }
}

static void hg__server_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events)
{
    struct hg_conn *c = hg_container_of(io, struct hg_conn, sio);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->ready |= HG_SERVER_RD;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->ready |= HG_SERVER_HUP;
    if (events & EPOLLPRI)
        c->ready |= HG_SERVER_RD | HG_SERVER_URG;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->ready |= HG_SERVER_WR;
    if (c->state == HG_CONN_CONNECTING)
        hg__connect_done(c, events);
    else if (c->state == HG_CONN_FORWARD)
        hg__pump(c);
}

/*
 * The idle time is up, but a slow peer may still be taking in bytes the
 * gateway handed its socket long ago (the gateway waits for a third of the
 * send buffer to free up before it writes again). When bytes still wait
 * for a peer and the peers have acknowledged more since the last look, the
 * tunnel is not idle: it counts as active now, and the next look comes one
 * idle time later. A peer that takes nothing is left idle, so such a
 * tunnel closes within two idle times of the last byte it took.
 */
static bool hg__still_taking(struct hg_conn *c)
{
    bool waiting = false;
    uint32_t acked = (uint32_t)(hg_net_acked(c->cio.fd, &waiting) +
                                hg_net_acked(c->sio.fd, &waiting));
    if (!waiting || (c->acked_seen && acked == c->acked))
        return false;
    c->acked = acked;
    c->acked_seen = true;
    c->t_last = c->w->loop.now;
    return true;
}

/* One timer per connection: the deadline of whatever phase it is in. */
static void hg__timer_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hg_conn *c = hg_container_of(timer, struct hg_conn, timer);
    const struct hg_config *cfg = c->wcfg->cfg;
    switch (c->state) {
    case HG_CONN_HELLO:
        hg__refuse(c, HG_REFUSE_HELLO_TIMEOUT, NULL);
        break;
    case HG_CONN_QUEUED:
        hg_stats_add(&c->route->stats->queue_timeouts, 1);
        hg__close(c, "QC", "queue_timeout");
        break;
    case HG_CONN_CONNECTING:
        hg__connect_failed(c, "connect_timeout");
        break;
    case HG_CONN_FORWARD:
        if (c->ka_pending) {
            c->ka_pending = false;
            /* Best effort, as before: the tunnel works without it. */
            hg_net_keepalive(c->sio.fd,
                             (unsigned)((cfg->tcp_keepalive_ms + 999) / 1000));
        }
        if (cfg->idle_timeout_ms &&
            loop->now - c->t_last >= cfg->idle_timeout_ms &&
            !hg__still_taking(c))
            hg__close(c, "ID", "idle_timeout");
        else
            hg__forward_timer(c);
        break;
    default:
        break;
    }
}

/* Runs after the batch: frees a closed connection or pumps again. */
static void hg__defer_cb(struct hg_loop *loop, struct hg_defer *defer)
{
    struct hg_conn *c = hg_container_of(defer, struct hg_conn, defer);
    c->deferred = false;
    if (c->state == HG_CONN_CLOSED)
        hg__free(c);
    else if (c->state == HG_CONN_FORWARD)
        hg__pump(c);
}

/* Reads what the client sent so far and feeds it to the hello parser. */
static void hg__hello_read(struct hg_conn *c)
{
    while (c->ready & HG_CLIENT_RD) {
        if (c->hlen == c->hcap && !hg__hello_grow(c)) {
            hg__refuse(c, c->hcap ? HG_REFUSE_TOO_BIG : HG_REFUSE_NO_MEMORY,
                       NULL);
            return;
        }
        ssize_t n = recv(c->cio.fd, c->hbuf + c->hlen, c->hcap - c->hlen, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->ready &= ~HG_CLIENT_RD;
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            hg__refuse(c, HG_REFUSE_CLIENT_GONE,
                       n < 0 ? strerror(errno) : NULL);
            return;
        }
        if ((size_t)n < c->hcap - c->hlen &&
            !(c->ready & (HG_CLIENT_HUP | HG_CLIENT_URG)))
            c->ready &= ~HG_CLIENT_RD;
        c->hlen += (uint32_t)n;
        enum hg_hello_rc rc = hg_hello_parse(c->hello, c->hbuf, c->hlen);
        if (rc != HG_HELLO_AGAIN) {
            hg__hello_done(c, rc);
            return;
        }
    }
}

/* Doubles the hello buffer up to max_hello; false when it cannot. */
static bool hg__hello_grow(struct hg_conn *c)
{
    size_t max = c->wcfg->cfg->max_hello;
    if (c->hcap >= max)
        return false;
    size_t cap = c->hcap ? (size_t)c->hcap * 2 : HG_HELLO_FIRST_CAP;
    if (cap > max)
        cap = max;
    uint8_t *buf = realloc(c->hbuf, cap);
    if (buf == NULL)
        return false;
    c->hbuf = buf;
    c->hcap = (uint32_t)cap;
    return true;
}

static void hg__hello_done(struct hg_conn *c, enum hg_hello_rc rc)
{
    struct hg_hello *h = c->hello;
    if (rc == HG_HELLO_DECLINED) {
        hg__refuse(c, HG_REFUSE_NOT_TLS, h->reason);
        return;
    }
    if (rc == HG_HELLO_ERROR) {
        bool big = h->reason && strcmp(h->reason, "too_big") == 0;
        hg__refuse(c, big ? HG_REFUSE_TOO_BIG : HG_REFUSE_BAD_HELLO, h->reason);
        return;
    }
    if (h->has_sni && (c->sni = strdup(h->sni)) == NULL) {
        hg__refuse(c, HG_REFUSE_NO_MEMORY, NULL);
        return;
    }
    free(c->hello);
    c->hello = NULL;
    hg__route(c);
}

/* Picks the route by SNI, checks its allow list, then connects. */
static void hg__route(struct hg_conn *c)
{
    const struct hg_config *cfg = c->wcfg->cfg;
    const struct hg_route_conf *r = NULL;
    if (c->sni != NULL)
        r = hg_config_route_for(cfg, c->sni, strlen(c->sni));
    if (r == NULL)
        r = cfg->default_route;
    if (r == NULL) {
        hg__refuse(c, c->sni ? HG_REFUSE_UNKNOWN_SNI : HG_REFUSE_NO_SNI,
                   c->sni);
        return;
    }
    if (r->allow != NULL && !hg_cidr_set_match(r->allow, &c->peer.sa)) {
        hg__refuse(c, HG_REFUSE_ROUTE_ALLOW, r->name);
        return;
    }
    c->route = r;
    size_t li = (size_t)(c->listener - cfg->listeners);
    size_t ri = (size_t)(r - cfg->routes);
    c->pair = cfg->pair_stats[li * cfg->nroutes + ri];
    hg_stats_add(&c->pair->total, 1);
    c->t_routed = c->w->loop.now;
    c->rr = (uint8_t)c->w->rr++;
    struct hg_pace *pace = c->wcfg->pace[ri];
    if (pace != NULL && !hg_pace_admit(pace, &c->wait)) {
        c->state = HG_CONN_QUEUED;
        hg_timer_start(&c->w->loop, &c->timer, cfg->queue_timeout_ms);
        return;
    }
    hg__connect_start(c);
}

/* The connection's turn under its route's connect_rate has come. */
void hg_conn_queue_go(struct hg_pace_wait *wait)
{
    struct hg_conn *c = hg_container_of(wait, struct hg_conn, wait);
    c->t_dequeued = c->w->loop.now;
    hg__connect_start(c);
}

/* A routed connection becomes a tunnel: counted active, then connecting. */
static void hg__connect_start(struct hg_conn *c)
{
    hg_stats_add(&c->pair->active, 1);
    c->state = HG_CONN_CONNECTING;
    hg__connect_next(c);
}

/*
 * Tries the next address of the backend's current answer. New connections
 * only ever use the addresses published now.
 */
static void hg__connect_next(struct hg_conn *c)
{
    for (;;) {
        int rc = hg__connect_one(c);
        if (rc == 0)
            return;
        if (rc == -ENOENT) {
            hg__close(c, c->attempt ? "SC" : "RC",
                      c->attempt ? c->reason : "no_address");
            return;
        }
        if (rc == -EMFILE || rc == -ENFILE) {
            /* The gateway's lack, not the backend's: no other address. */
            if (hg_worker_pipes_release(c->w))
                continue;
            hg__close(c, "RC", "no_descriptors");
            return;
        }
        c->reason = "connect_error";
        c->attempt++;
    }
}

/*
 * Starts a connect to address number c->attempt. Returns 0 when under way,
 * -ENOENT when every address (or HG_CONNECT_TRIES) has been tried, or another
 * -errno when this address failed at once.
 */
static int hg__connect_one(struct hg_conn *c)
{
    struct hg_backend *b = c->route->backend;
    urcu_memb_read_lock();
    struct hg_addrset *set = rcu_dereference(b->addrs);
    size_t n = set ? set->n : 0;
    if (c->attempt >= n || c->attempt >= HG_CONNECT_TRIES) {
        urcu_memb_read_unlock();
        return -ENOENT;
    }
    const struct sockaddr *sa =
        (const struct sockaddr *)&set->addrs[(c->rr + c->attempt) % n];
    memcpy(&c->backend, sa, hg_net_len(sa));
    urcu_memb_read_unlock();

    uint16_t port = c->route->backend_port ? c->route->backend_port : c->port;
    hg_net_set_port(&c->backend.sa, port);
    int fd = socket(c->backend.sa.sa_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    const struct hg_config *cfg = c->wcfg->cfg;
    hg_net_nodelay(fd); /* keepalive comes later: hg__forward_timer() */
    /* The ClientHello is in hand: the handshake's last ACK rides on it. */
    hg_net_quick_ack(fd, false);
    if (connect(fd, &c->backend.sa, hg_net_len(&c->backend.sa)) < 0 &&
        errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    c->sio.fd = fd;
    c->ready &= ~(HG_SERVER_RD | HG_SERVER_WR | HG_SERVER_HUP | HG_SERVER_URG);
    c->unwatched &= 0x03; /* a new backend socket: watched for all */
    int rc = hg_io_add(&c->w->loop, &c->sio, HG_TUNNEL_EVENTS);
    if (rc < 0) {
        close(fd);
        c->sio.fd = -1;
        return rc;
    }
    hg_timer_start(&c->w->loop, &c->timer, cfg->connect_timeout_ms);
    return 0;
}

/*
 * The backend socket reported events while connecting. A failed connect
 * always shows EPOLLERR or EPOLLHUP, so SO_ERROR is asked for only then:
 * writable without either is connected, one system call fewer on every
 * connection.
 */
static void hg__connect_done(struct hg_conn *c, uint32_t events)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if ((events & (EPOLLERR | EPOLLHUP)) &&
        getsockopt(c->sio.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0 && !(c->ready & HG_SERVER_WR))
        return;
    if (err != 0) {
        hg__connect_failed(c, err == ECONNREFUSED ? "connect_refused"
                                                  : "connect_error");
        return;
    }
    hg__forward_start(c);
}

static void hg__connect_failed(struct hg_conn *c, const char *reason)
{
    close(c->sio.fd);
    c->sio.fd = -1;
    c->reason = reason;
    c->attempt++;
    hg__connect_next(c);
}

/* Connected: the bytes read so far go first, exactly as the client sent. */
static void hg__forward_start(struct hg_conn *c)
{
    const struct hg_config *cfg = c->wcfg->cfg;
    c->state = HG_CONN_FORWARD;
    c->t_connected = c->t_last = c->w->loop.now;
    c->up = (struct hg_flow){.buf = c->hbuf, .len = c->hlen, .heap = true};
    c->hbuf = NULL;
    c->hlen = c->hcap = 0;
    c->ka_pending = cfg->tcp_keepalive_ms > 0;
    hg__forward_timer(c);
    hg__pump(c);
}

/*
 * Arms the tunnel's one timer for what comes first: setting keepalive on
 * the backend socket, or the idle deadline. Neither: no timer.
 */
static void hg__forward_timer(struct hg_conn *c)
{
    const struct hg_config *cfg = c->wcfg->cfg;
    struct hg_loop *loop = &c->w->loop;
    uint64_t delay = UINT64_MAX;
    if (cfg->idle_timeout_ms)
        delay = cfg->idle_timeout_ms - (loop->now - c->t_last);
    if (c->ka_pending) {
        uint64_t late = cfg->tcp_keepalive_ms / 8;
        if (late > HG_KEEPALIVE_LATE_MS)
            late = HG_KEEPALIVE_LATE_MS;
        if (late < delay)
            delay = late;
    }
    if (delay == UINT64_MAX)
        hg_timer_stop(loop, &c->timer);
    else
        hg_timer_start(loop, &c->timer, delay);
}

/* Moves bytes both ways until nothing more can move without waiting. */
static void hg__pump(struct hg_conn *c)
{
    int up = hg__pump_dir(c, HG_DIR_UP);
    if (up < 0)
        return; /* closed */
    int down = hg__pump_dir(c, HG_DIR_DOWN);
    if (down < 0)
        return;
    if (c->up.shut && c->down.shut) {
        hg__close(c, "--", "eof");
        return;
    }
    if (!hg__watch(c))
        return;
    if (up > 0 || down > 0)
        hg__schedule(c);
}

/*
 * What a tunnel socket is watched for while the tunnel waits; dir is the
 * flow that reads it. A flow whose buffer or pipe is full, with more to
 * read, waits for its destination only: were its source watched, every
 * segment the source sends meanwhile would wake the worker for nothing,
 * and a fast sender behind a slower reader sends many. The socket is then
 * watched for room to write only if the other flow is waiting for it.
 */
static uint32_t hg__interest(const struct hg_conn *c, enum hg_dir dir)
{
    bool up = dir == HG_DIR_UP;
    const struct hg_flow *f = up ? &c->up : &c->down;
    const struct hg_flow *g = up ? &c->down : &c->up;
    uint8_t rd = up ? HG_CLIENT_RD : HG_SERVER_RD;
    uint8_t wr = up ? HG_CLIENT_WR : HG_SERVER_WR;
    if (!hg__flow_full(f) || f->eof || !(c->ready & rd))
        return HG_TUNNEL_EVENTS;
    bool blocked = hg__in_flight(g) && !(c->ready & wr);
    /* EPOLLPRI too: the kernel wakes it for any data. Urgent data shows
     * once the socket is watched for all again, as epoll polls it then. */
    return (HG_TUNNEL_EVENTS & ~(EPOLLIN | EPOLLPRI | EPOLLOUT)) |
           (blocked ? EPOLLOUT : 0);
}

/*
 * Watches both sockets for what hg__interest() says, changing the epoll
 * registration only when that changed. Returns false when it closed the
 * connection.
 */
static bool hg__watch(struct hg_conn *c)
{
    if (c->unwatched == 0 && !hg__in_flight(&c->up) && !hg__in_flight(&c->down))
        return true; /* nothing in flight: watched for all, as it should */
    for (int dir = HG_DIR_UP; dir <= HG_DIR_DOWN; dir++) {
        uint32_t want = hg__interest(c, (enum hg_dir)dir);
        uint8_t off =
            (uint8_t)((want & EPOLLIN ? 0 : 1) | (want & EPOLLOUT ? 0 : 2));
        int shift = dir == HG_DIR_UP ? 0 : 2;
        if (((c->unwatched >> shift) & 3) == off)
            continue;
        struct hg_io *io = dir == HG_DIR_UP ? &c->cio : &c->sio;
        if (hg_io_mod(&c->w->loop, io, want) < 0) {
            if (want != HG_TUNNEL_EVENTS)
                continue; /* watched for more: only wake-ups are lost */
            hg__close(c, "RD", "no_memory");
            return false;
        }
        c->unwatched = (uint8_t)((c->unwatched & ~(3 << shift)) | off << shift);
    }
    return true;
}

/* Bytes are in the flow's buffer or pipe, not yet written. */
static bool hg__in_flight(const struct hg_flow *f)
{
    return f->buf != NULL || f->pipe != NULL; /* a pipe is held while used */
}

/* The flow takes no more bytes until some of what it holds is written. */
static bool hg__flow_full(const struct hg_flow *f)
{
    return f->buf != NULL ||
           (f->pipe != NULL && (f->stuffed || f->len >= f->pipe->size));
}

/*
 * Copies from one side to the other: small reads through a pooled buffer,
 * and, once reads come back full, through a pooled pipe with splice(2) so
 * bulk bytes never cross into user space. Returns 0 when it has to wait,
 * 1 when its budget ran out with more to do, -1 when it closed the
 * connection.
 */
static int hg__pump_dir(struct hg_conn *c, enum hg_dir dir)
{
    bool up = dir == HG_DIR_UP;
    struct hg_flow *f = up ? &c->up : &c->down;
    int src = up ? c->cio.fd : c->sio.fd, dst = up ? c->sio.fd : c->cio.fd;
    uint8_t rd = up ? HG_CLIENT_RD : HG_SERVER_RD;
    uint8_t wr = up ? HG_SERVER_WR : HG_CLIENT_WR;

    for (int budget = HG_PUMP_BUDGET; budget > 0; budget--) {
        int rc;
        if (hg__in_flight(f)) {
            rc = f->buf ? hg__flow_write(c, f, dst, wr)
                        : hg__pipe_write(c, f, dst, wr);
            if (rc == 0 && f->pipe != NULL && !hg__flow_full(f) && !f->eof &&
                (c->ready & rd))
                rc = hg__pipe_top_up(c, dir, src) < 0 ? -1 : 0;
            if (rc <= 0)
                return rc;
            continue;
        }
        if (f->eof) {
            if (!f->shut && !(up ? c->down.shut : c->up.shut) &&
                shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) {
                hg__close(c, up ? "SD" : "CD", "shutdown_error");
                return -1;
            }
            /*
             * When the other way is already done, the connection closes
             * next, and close(2) sends this FIN itself: both sockets were
             * read to their EOF, so nothing unread turns it into a reset.
             */
            f->shut = true;
            return 0;
        }
        if (!(c->ready & rd))
            return 0;
        if (f->bulk && (f->pipe || (f->pipe = hg_worker_pipe_get(c->w))))
            rc = hg__pipe_read(c, dir, src);
        else
            rc = hg__flow_read(c, dir, src);
        if (rc <= 0)
            return rc;
    }
    return 1;
}

/* Reads into a pooled buffer. Returns as hg__read_result(). */
static int hg__flow_read(struct hg_conn *c, enum hg_dir dir, int fd)
{
    struct hg_flow *f = dir == HG_DIR_UP ? &c->up : &c->down;
    uint8_t *buf = hg_worker_buf_get(c->w);
    if (buf == NULL) {
        hg__close(c, "RD", "no_memory");
        return -1;
    }
    ssize_t n = recv(fd, buf, HG_BUF_SIZE, 0);
    int err = errno;
    if (n > 0) {
        f->buf = buf;
        f->off = 0;
        f->len = (uint32_t)n;
    } else {
        hg_worker_buf_put(c->w, buf);
    }
    /* recv(2) takes all the socket holds, up to the buffer: a short read
     * left it empty. */
    return hg__read_result(c, dir, n, (size_t)n < HG_BUF_SIZE, err);
}

/*
 * Moves bytes from the socket into the flow's pipe. A short splice(2) does
 * not say the socket is empty: each segment takes one of the pipe's slots,
 * and small segments use up the slots long before the bytes. Only EAGAIN
 * on an empty pipe says it.
 */
static int hg__pipe_read(struct hg_conn *c, enum hg_dir dir, int fd)
{
    struct hg_flow *f = dir == HG_DIR_UP ? &c->up : &c->down;
    size_t asked = f->pipe->size;
    ssize_t n = splice(fd, NULL, f->pipe->fd[1], NULL, asked,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    int err = errno;
    if (n > 0) {
        f->len = (uint32_t)n;
    } else {
        hg_worker_pipe_put(c->w, f->pipe, true); /* empty: held only in use */
        f->pipe = NULL;
    }
    return hg__read_result(c, dir, n, false, err);
}

/*
 * The destination is full: fills the rest of the flow's pipe from the
 * source meanwhile, so that both sockets stay busy and the next write
 * moves more at once. Less than asked, or EAGAIN, may mean the pipe ran
 * out of slots as well as the socket out of bytes: either way the pipe
 * takes no more until some of it is written (f->stuffed). Returns as
 * hg__read_result().
 */
static int hg__pipe_top_up(struct hg_conn *c, enum hg_dir dir, int fd)
{
    struct hg_flow *f = dir == HG_DIR_UP ? &c->up : &c->down;
    size_t room = f->pipe->size - f->len;
    bool bulk = f->bulk;
    ssize_t n = splice(fd, NULL, f->pipe->fd[1], NULL, room,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    int err = errno;
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        f->stuffed = true;
        return 0;
    }
    int rc = hg__read_result(c, dir, n, false, err);
    if (n > 0) {
        f->len += (uint32_t)n;
        f->bulk = bulk; /* a part-filled pipe says nothing of the stream */
        f->stuffed = (size_t)n < room;
    }
    return rc;
}

/*
 * Accounts for a read of n bytes (err: errno when n < 0); drained: the
 * read says the socket has nothing more. Returns 1 when there is something
 * to do next (bytes to write, or EOF to pass on), 0 when the socket is
 * drained, -1 when it closed the connection.
 */
static int hg__read_result(struct hg_conn *c, enum hg_dir dir, ssize_t n,
                           bool drained, int err)
{
    bool up = dir == HG_DIR_UP;
    struct hg_flow *f = up ? &c->up : &c->down;
    uint8_t rd = up ? HG_CLIENT_RD : HG_SERVER_RD;
    uint8_t more =
        up ? HG_CLIENT_HUP | HG_CLIENT_URG : HG_SERVER_HUP | HG_SERVER_URG;
    if (n > 0) {
        /* A pipe read short of the pipe but over a buffer is still bulk. */
        f->bulk = (size_t)n >= HG_BUF_SIZE;
        if (drained && !(c->ready & more))
            c->ready &= ~rd;
        c->t_last = c->w->loop.now;
        return 1;
    }
    if (n == 0) {
        f->eof = true;
        return 1;
    }
    if (err == EAGAIN || err == EWOULDBLOCK) {
        c->ready &= ~rd;
        return 0;
    }
    if (err == EINTR)
        return 1;
    hg__close(c, up ? "CD" : "SD", up ? "client_reset" : "server_reset");
    return -1;
}

/*
 * Writes what the flow's pipe holds. Returns 1 when the pipe was emptied
 * (and went back to the pool) or more may go, 0 when the destination is
 * full, -1 when it closed the connection.
 */
static int hg__pipe_write(struct hg_conn *c, struct hg_flow *f, int fd,
                          uint8_t wr_bit)
{
    if (!(c->ready & wr_bit))
        return 0;
    ssize_t n = splice(f->pipe->fd[0], NULL, fd, NULL, f->len,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0)
        return hg__write_failed(c, wr_bit, errno);
    f->len -= (uint32_t)n;
    f->stuffed = false;
    hg__count(c, f, (size_t)n);
    c->t_last = c->w->loop.now;
    if (f->len == 0) {
        hg_worker_pipe_put(c->w, f->pipe, true);
        f->pipe = NULL;
    }
    return 1;
}

/*
 * Writes what is in flight. Returns 1 when all of it went (the buffer is
 * released), 0 when the destination is full, -1 when it closed the
 * connection.
 */
static int hg__flow_write(struct hg_conn *c, struct hg_flow *f, int fd,
                          uint8_t wr_bit)
{
    if (!(c->ready & wr_bit))
        return 0;
    /* The source has hung up: these are its last bytes, and the FIN
     * passed on next rides on their segment. */
    uint8_t src_hup = wr_bit == HG_SERVER_WR ? HG_CLIENT_HUP : HG_SERVER_HUP;
    int more = c->ready & src_hup ? MSG_MORE : 0;
    ssize_t n = send(fd, f->buf + f->off, f->len - f->off, MSG_NOSIGNAL | more);
    if (n < 0)
        return hg__write_failed(c, wr_bit, errno);
    f->off += (uint32_t)n;
    hg__count(c, f, (size_t)n);
    c->t_last = c->w->loop.now; /* a reader draining slowly is not idle */
    if (f->off < f->len)
        return 1;
    /* The hello is out, with the handshake's last ACK: from now on the
     * backend's bytes are acknowledged at once, or a backend that answers
     * in two writes would wait for a delayed ACK before its second. */
    if (f->heap)
        hg_net_quick_ack(fd, true);
    hg__flow_release(c, f);
    return 1;
}

/* Counts n bytes of flow f handed to its destination's socket. */
static void hg__count(struct hg_conn *c, const struct hg_flow *f, size_t n)
{
    enum hg_dir dir = f == &c->up ? HG_DIR_UP : HG_DIR_DOWN;
    c->bytes[dir] += n;
    hg_stats_add(&c->route->stats->bytes[dir], n);
}

/*
 * A write toward wr_bit's side failed with err. Returns 0 when that side
 * is full (wait for it), 1 to try again, -1 when the connection closed.
 */
static int hg__write_failed(struct hg_conn *c, uint8_t wr_bit, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK) {
        c->ready &= ~wr_bit;
        return 0;
    }
    if (err == EINTR)
        return 1;
    bool to_server = wr_bit == HG_SERVER_WR;
    hg__close(c, to_server ? "SD" : "CD",
              to_server ? "server_reset" : "client_reset");
    return -1;
}

/*
 * Gives back the flow's buffer or pipe. A pipe is held only while it has
 * bytes in it, so one given back here is dirty and gets closed.
 */
static void hg__flow_release(struct hg_conn *c, struct hg_flow *f)
{
    if (f->pipe != NULL) {
        hg_worker_pipe_put(c->w, f->pipe, false);
        f->pipe = NULL;
    } else if (f->heap) {
        free(f->buf);
    } else if (f->buf != NULL) {
        hg_worker_buf_put(c->w, f->buf);
    }
    f->buf = NULL;
    f->off = f->len = 0;
    f->heap = false;
}

/* Closes a connection that never reached a backend; counted, not logged. */
static void hg__refuse(struct hg_conn *c, enum hg_refuse reason,
                       const char *detail)
{
    hg_worker_refused(c->w, c->listener, reason, &c->peer.sa, detail);
    hg__teardown(c);
}

/* Closes a routed connection with its access line. */
static void hg__close(struct hg_conn *c, const char *term, const char *reason)
{
    if (c->state == HG_CONN_CLOSED)
        return;
    hg__access_log(c, term, reason);
    if (c->state != HG_CONN_QUEUED) /* a queued one is not a tunnel yet */
        hg_stats_sub(&c->pair->active, 1);
    hg__teardown(c);
}

/* Releases everything but the struct, which is freed after the batch. */
static void hg__teardown(struct hg_conn *c)
{
    struct hg_worker *w = c->w;
    hg_timer_stop(&w->loop, &c->timer);
    hg_pace_cancel(&c->wait);
    hg_worker_release(w, c->listener->stats);
    /*
     * Bytes the gateway still held for a side are lost with the tunnel:
     * that side gets a reset, not an end of stream it would take for the
     * whole of it.
     */
    if (c->state == HG_CONN_FORWARD) {
        if (hg__in_flight(&c->down))
            hg_net_abort(c->cio.fd);
        if (hg__in_flight(&c->up))
            hg_net_abort(c->sio.fd);
    }
    close(c->cio.fd);
    if (c->sio.fd >= 0)
        close(c->sio.fd);
    hg__flow_release(c, &c->up);
    hg__flow_release(c, &c->down);
    free(c->hbuf);
    free(c->hello);
    free(c->sni);
    c->hbuf = NULL;
    c->hello = NULL;
    c->sni = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    hg_worker_wcfg_release(w, c->wcfg);
    c->state = HG_CONN_CLOSED;
    hg__schedule(c);
}

static void hg__schedule(struct hg_conn *c)
{
    if (c->deferred)
        return;
    c->deferred = true;
    hg_loop_defer(&c->w->loop, &c->defer, hg__defer_cb);
}

static void hg__free(struct hg_conn *c)
{
    free(c);
}

/* The one line per routed connection, written when it closes. */
static void hg__access_log(struct hg_conn *c, const char *term,
                           const char *reason)
{
    if (!hg_log_enabled(HG_LOG_INFO))
        return;
    uint64_t now = c->w->loop.now;
    char id[24], client[HG_ADDRSTRLEN], backend[HG_ADDRSTRLEN];
    char up[24], down[24], dur[24], hello[24], conn[24], queue[24];
    snprintf(id, sizeof(id), "%u-%llu", c->w->id, (unsigned long long)c->id);
    hg_net_format(&c->peer.sa, client, sizeof(client));
    if (c->t_connected || c->attempt)
        hg_net_format(&c->backend.sa, backend, sizeof(backend));
    else
        snprintf(backend, sizeof(backend), "-");
    snprintf(up, sizeof(up), "%llu", (unsigned long long)c->bytes[0]);
    snprintf(down, sizeof(down), "%llu", (unsigned long long)c->bytes[1]);
    snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(now - c->t_accept));
    snprintf(hello, sizeof(hello), "%llu",
             (unsigned long long)(c->t_routed - c->t_accept));
    /* When its turn came: now if still waiting, at routing if it never did. */
    uint64_t t_go = c->t_dequeued                ? c->t_dequeued
                    : c->state == HG_CONN_QUEUED ? now
                                                 : c->t_routed;
    snprintf(queue, sizeof(queue), "%llu",
             (unsigned long long)(t_go - c->t_routed));
    snprintf(conn, sizeof(conn), "%lld",
             c->t_connected ? (long long)(c->t_connected - t_go) : -1);
    const struct hg_log_field fields[] = {
        {"conn", id, true},
        {"client", client, true},
        {"listener", c->listener->name, true},
        {"sni", c->sni ? c->sni : "-", true},
        {"route", c->route->name, true},
        {"backend", backend, true},
        {"term", term, true},
        {"reason", reason, true},
        {"bytes_up", up, false},
        {"bytes_down", down, false},
        {"duration_ms", dur, false},
        {"hello_ms", hello, false},
        {"queue_ms", queue, false},
        {"connect_ms", conn, false},
        {NULL, NULL, false},
    };
    hg_log_fields(HG_LOG_INFO, "access", fields);
}
