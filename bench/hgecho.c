/*
 * hgecho: the benchmark's backend. Plain TCP, no TLS: the ClientHello the
 * load generator sends arrives like any other bytes.
 *
 *   echo    every byte read is written back (the small-message, idle and
 *           connection-storm workloads, and the CPU count)
 *   source  reads the first TLS record (the ClientHello), then writes
 *           hb_pattern's stream as fast as the peer takes it until the
 *           peer closes (bulk; the reader checks every byte)
 *   hello   echoes the first TLS record, then closes (the connection
 *           storm: the side that closes first keeps the TIME_WAIT, so the
 *           load generator's and the proxy's ephemeral ports stay free)
 *
 * Runs --threads loops on one listening socket (EPOLLEXCLUSIVE), prints
 * "ready ADDR" once listening, and stops on SIGTERM or SIGINT, when its
 * parent dies, or after --max-time seconds, whichever comes first.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hg_loop.h"
#include "hg_net.h"

#include "hb_hello.h"
#include "hb_util.h"

#define HB_ECHO_BUF   (64 * 1024)
#define HB_MAX_THREAD 64
#define HB_WRITE_TURN 16 /* source writes per connection before yielding */

enum hb_mode { HB_MODE_ECHO, HB_MODE_SOURCE, HB_MODE_HELLO };

struct hb_echo_opts {
    struct hb_addr listen;
    enum hb_mode mode;
    unsigned threads;
    double max_time_s;
};

struct hb_server;

/* One accepted connection. pend holds echo bytes the peer has not taken. */
struct hb_econn {
    struct hg_io io;
    struct hg_defer defer; /* frees */
    struct hg_defer again; /* source mode: writes on after a full turn */
    struct hb_server *srv;
    uint8_t *pend;
    uint32_t pend_off, pend_len;
    uint64_t rx;        /* source mode: bytes read */
    uint32_t hello_len; /* source mode: the first record's, once known */
    uint32_t phase;     /* source mode: bytes written, modulo the period */
    uint8_t head[5];
    bool closed;
    bool again_queued;
};

struct hb_server {
    struct hg_loop loop;
    struct hg_io lio; /* the shared listening socket */
    pthread_t thread;
    const struct hb_echo_opts *opts;
    uint8_t *buf;
    uint64_t accepted;
};

static volatile sig_atomic_t hb_stop;

static bool hb__parse(int argc, char **argv, struct hb_echo_opts *o);
static void hb__usage(void);
static void hb__on_signal(int sig);
static void *hb__thread(void *arg);
static void hb__accept_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events);
static void hb__conn_cb(struct hg_loop *loop, struct hg_io *io,
                        uint32_t events);
static void hb__echo_read(struct hb_econn *c);
static bool hb__echo_flush(struct hb_econn *c);
static bool hb__echo_write(struct hb_econn *c, const uint8_t *p, size_t n);
static void hb__note_rx(struct hb_econn *c, const uint8_t *p, size_t n);
static bool hb__hello_echoed(struct hb_econn *c);
static void hb__source_read(struct hb_econn *c);
static void hb__source_write(struct hb_econn *c);
static void hb__again_cb(struct hg_loop *loop, struct hg_defer *defer);
static void hb__close(struct hb_econn *c);
static void hb__free_cb(struct hg_loop *loop, struct hg_defer *defer);

int main(int argc, char **argv)
{
    struct hb_echo_opts o;
    if (!hb__parse(argc, argv, &o)) {
        hb__usage();
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, hb__on_signal);
    signal(SIGINT, hb__on_signal);
    signal(SIGPIPE, SIG_IGN);
    hb_raise_nofile();
    hb_pattern_init();

    int lfd =
        hg_net_listen((struct sockaddr *)&o.listen.ss, o.listen.len, 4096, 0);
    if (lfd < 0) {
        fprintf(stderr, "hgecho: cannot listen: %s\n", strerror(-lfd));
        return 1;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(lfd, (struct sockaddr *)&bound, &blen);
    char text[HG_ADDRSTRLEN];
    printf("ready %s\n",
           hg_net_format((struct sockaddr *)&bound, text, sizeof(text)));
    fflush(stdout);

    struct hb_server srv[HB_MAX_THREAD];
    unsigned started = 0;
    for (; started < o.threads; started++) {
        srv[started] = (struct hb_server){.opts = &o};
        srv[started].lio = (struct hg_io){.fd = lfd, .cb = hb__accept_cb};
        if (pthread_create(&srv[started].thread, NULL, hb__thread,
                           &srv[started]) != 0)
            break;
    }
    uint64_t end = hb_now_ns() + (uint64_t)(o.max_time_s * 1e9);
    while (!hb_stop && hb_now_ns() < end)
        usleep(20000);
    hb_stop = 1;
    uint64_t accepted = 0;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(srv[i].thread, NULL);
        accepted += srv[i].accepted;
    }
    close(lfd);
    fprintf(stderr, "hgecho: %llu connections accepted\n",
            (unsigned long long)accepted);
    return started == o.threads ? 0 : 1;
}

static void hb__usage(void)
{
    fprintf(stderr,
            "usage: hgecho --listen IP:PORT [--mode echo|source|hello]\n"
            "              [--threads N] [--max-time SECONDS]\n"
            "Listens on a loopback address only (port 0: any free one).\n");
}

static bool hb__parse(int argc, char **argv, struct hb_echo_opts *o)
{
    *o = (struct hb_echo_opts){.threads = 1, .max_time_s = 3600};
    bool have_listen = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        bool ok = true;
        if (strcmp(k, "--listen") == 0)
            ok = have_listen =
                hb_addr_parse(v, &o->listen) && hb_addr_is_loopback(&o->listen);
        else if (strcmp(k, "--mode") == 0 && strcmp(v, "echo") == 0)
            o->mode = HB_MODE_ECHO;
        else if (strcmp(k, "--mode") == 0 && strcmp(v, "source") == 0)
            o->mode = HB_MODE_SOURCE;
        else if (strcmp(k, "--mode") == 0 && strcmp(v, "hello") == 0)
            o->mode = HB_MODE_HELLO;
        else if (strcmp(k, "--threads") == 0)
            ok = hb_parse_uint(v, 1, HB_MAX_THREAD, &o->threads);
        else if (strcmp(k, "--max-time") == 0)
            ok = hb_parse_double(v, 0.1, 86400, &o->max_time_s);
        else
            ok = false;
        if (!ok)
            return false;
    }
    return have_listen && argc % 2 == 1;
}

static void hb__on_signal(int sig)
{
    (void)sig;
    hb_stop = 1;
}

static void *hb__thread(void *arg)
{
    struct hb_server *s = arg;
    s->buf = malloc(HB_ECHO_BUF);
    if (s->buf == NULL || hg_loop_init(&s->loop) < 0) {
        free(s->buf);
        hb_stop = 1;
        return NULL;
    }
    if (hg_io_add(&s->loop, &s->lio, EPOLLIN | EPOLLEXCLUSIVE) < 0)
        hb_stop = 1;
    while (!hb_stop)
        hg_loop_run_once(&s->loop, 50);
    /* Connections still open die with the process; the kernel closes them. */
    hg_loop_deinit(&s->loop);
    free(s->buf);
    return NULL;
}

static void hb__accept_cb(struct hg_loop *loop, struct hg_io *io,
                          uint32_t events)
{
    struct hb_server *s = hg_container_of(io, struct hb_server, lio);
    for (int i = 0; i < 64; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or out of fds: the next event retries */
        hg_net_tune(fd, 0);
        struct hb_econn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->srv = s;
        c->io = (struct hg_io){.fd = fd, .cb = hb__conn_cb};
        if (hg_io_add(loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) <
            0) {
            close(fd);
            free(c);
            continue;
        }
        s->accepted++;
    }
}

static void hb__conn_cb(struct hg_loop *loop, struct hg_io *io, uint32_t events)
{
    struct hb_econn *c = hg_container_of(io, struct hb_econn, io);
    if (c->closed)
        return;
    if (c->srv->opts->mode == HB_MODE_SOURCE) {
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
            hb__source_read(c);
        if (!c->closed && (events & EPOLLOUT))
            hb__source_write(c);
        return;
    }
    if (c->pend_len > 0) {
        /* Reading was paused: bytes may have come in meanwhile. */
        if (!hb__echo_flush(c) || c->pend_len > 0)
            return;
        if (hb__hello_echoed(c))
            hb__close(c);
        else
            hb__echo_read(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        hb__echo_read(c);
}

/* Reads and echoes until the socket is empty or the peer stops taking. */
static void hb__echo_read(struct hb_econn *c)
{
    for (;;) {
        ssize_t n = read(c->io.fd, c->srv->buf, HB_ECHO_BUF);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            hb__close(c);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            continue;
        }
        hb__note_rx(c, c->srv->buf, (size_t)n);
        if (!hb__echo_write(c, c->srv->buf, (size_t)n) || c->pend_len > 0)
            return;
        if (hb__hello_echoed(c)) {
            hb__close(c);
            return;
        }
    }
}

/* Hello mode: the whole first record has been read and written back. */
static bool hb__hello_echoed(struct hb_econn *c)
{
    return c->srv->opts->mode == HB_MODE_HELLO && c->hello_len > 0 &&
           c->rx >= c->hello_len && c->pend_len == 0;
}

/* Counts bytes read and keeps the first record's header. */
static void hb__note_rx(struct hb_econn *c, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && c->rx + i < 5; i++)
        c->head[c->rx + i] = p[i];
    c->rx += n;
    if (c->hello_len == 0)
        c->hello_len = (uint32_t)hb_hello_record_len(
            c->head, c->rx < 5 ? (size_t)c->rx : 5);
}

/* Writes p; what does not fit is kept in c->pend. False when closed. */
static bool hb__echo_write(struct hb_econn *c, const uint8_t *p, size_t n)
{
    ssize_t w = write(c->io.fd, p, n);
    if (w < 0 && errno != EAGAIN) {
        hb__close(c);
        return false;
    }
    size_t done = w < 0 ? 0 : (size_t)w;
    if (done == n)
        return true;
    c->pend = malloc(n - done);
    if (c->pend == NULL) {
        hb__close(c);
        return false;
    }
    memcpy(c->pend, p + done, n - done);
    c->pend_off = 0;
    c->pend_len = (uint32_t)(n - done);
    return true;
}

/* Writes what is pending; false when the connection closed. */
static bool hb__echo_flush(struct hb_econn *c)
{
    while (c->pend_len > 0) {
        ssize_t w = write(c->io.fd, c->pend + c->pend_off, c->pend_len);
        if (w < 0 && errno == EAGAIN)
            return true;
        if (w < 0) {
            hb__close(c);
            return false;
        }
        c->pend_off += (uint32_t)w;
        c->pend_len -= (uint32_t)w;
    }
    free(c->pend);
    c->pend = NULL;
    return true;
}

/* Source mode: waits for the whole first record, then ignores input. */
static void hb__source_read(struct hb_econn *c)
{
    for (;;) {
        ssize_t n = read(c->io.fd, c->srv->buf, HB_ECHO_BUF);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            hb__close(c);
            return;
        }
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            continue;
        hb__note_rx(c, c->srv->buf, (size_t)n);
    }
    hb__source_write(c);
}

/*
 * Writes until the socket is full. A peer that reads as fast as this
 * writes would keep the loop here, so after a turn of writes the rest
 * waits until the other connections of the batch had theirs.
 */
static void hb__source_write(struct hb_econn *c)
{
    if (c->hello_len == 0 || c->rx < c->hello_len || c->again_queued)
        return;
    for (int i = 0; i < HB_WRITE_TURN; i++) {
        ssize_t w = write(c->io.fd, hb_pattern + c->phase, HB_PATTERN_RUN);
        if (w >= 0 || errno == EINTR) {
            c->phase =
                (uint32_t)((c->phase + (w > 0 ? w : 0)) % HB_PATTERN_PERIOD);
            continue;
        }
        if (errno != EAGAIN)
            hb__close(c);
        return;
    }
    c->again_queued = true;
    hg_loop_defer(&c->srv->loop, &c->again, hb__again_cb);
}

static void hb__again_cb(struct hg_loop *loop, struct hg_defer *defer)
{
    struct hb_econn *c = hg_container_of(defer, struct hb_econn, again);
    c->again_queued = false;
    if (c->closed)
        hb__free_cb(loop, &c->defer);
    else
        hb__source_write(c);
}

static void hb__close(struct hb_econn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    hg_io_del(&c->srv->loop, &c->io);
    close(c->io.fd);
    /* A queued turn of writes frees the connection when it runs. */
    if (!c->again_queued)
        hg_loop_defer(&c->srv->loop, &c->defer, hb__free_cb);
}

static void hb__free_cb(struct hg_loop *loop, struct hg_defer *defer)
{
    struct hb_econn *c = hg_container_of(defer, struct hb_econn, defer);
    free(c->pend);
    free(c);
}
