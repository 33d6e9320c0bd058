/*
 * hburing: a bare TCP forwarder on io_uring, the benchmark's measure of
 * what that design costs per small message. It is not a proxy: it reads
 * no ClientHello, routes nothing, keeps no timers and counts nothing, and
 * connects each accepted connection to the one --backend with a blocking
 * connect. What it shows is the floor an io_uring forwarding path could
 * reach on this machine, next to hubgate's epoll path, in the same run.
 *
 * Per thread: a ring (one submitter, work run at wait time), a
 * SO_REUSEPORT listening socket with a multishot accept, and a ring of
 * provided buffers shared by every connection of the thread. Each socket
 * has a multishot recv that picks a buffer when data arrives, so an idle
 * connection holds none. A filled buffer is queued for the other socket,
 * one send in flight per direction so that bytes keep their order, and
 * goes back to the ring once sent. When the ring runs dry, receiving
 * stops until buffers come back: the buffers are the whole of the memory
 * in flight.
 *
 * usage: hburing --listen IP:PORT --backend IP:PORT [--threads N]
 *                [--max-time SECONDS]
 * Loopback addresses only; stops on SIGTERM or SIGINT, when its parent
 * dies, or after --max-time seconds.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "hb_util.h"

#define HB_NBUF       4096 /* provided buffers per thread, a power of 2 */
#define HB_BUF_SIZE   2048
#define HB_BGID       1
#define HB_MAX_CONN   16384 /* tunnels per thread */
#define HB_MAX_THREAD 64
#define HB_STARVED    (4 * HB_MAX_CONN) /* a power of 2 */
#define HB_NONE       UINT32_MAX

enum hb_op { HB_OP_ACCEPT, HB_OP_RECV, HB_OP_SEND, HB_OP_CANCEL };

/* One socket of a tunnel and the queue of buffers waiting to go out on it. */
struct hb_side {
    int fd;
    uint32_t head, tail; /* queued buffer ids, linked through next[] */
    bool sending;        /* the head buffer is being sent */
    bool recv_armed;     /* a multishot recv is live on fd */
    bool starved;        /* recv stopped for want of buffers */
    bool eof;            /* fd sent FIN */
    bool shut;           /* FIN passed on to fd */
};

struct hb_tunnel {
    struct hb_side side[2]; /* 0: client, 1: backend */
    uint32_t ops;           /* operations the ring still owns */
    bool used, closing;
};

struct hb_thread {
    pthread_t tid;
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    uint32_t next[HB_NBUF]; /* queue links */
    uint32_t off[HB_NBUF], len[HB_NBUF];
    struct hb_tunnel *tun;           /* [HB_MAX_CONN] */
    uint32_t *free_ids, nfree;       /* free tunnel slots */
    uint32_t *starved;               /* ring of (tunnel << 1 | side) */
    uint32_t starved_head, nstarved; /* waiting for a buffer, oldest first */
    int lfd;
    unsigned long accepted;
};

static struct hb_addr hb_listen, hb_backend;
static volatile sig_atomic_t hb_stop;

static void hb__arm_recv(struct hb_thread *t, uint32_t id, int s);
static void hb__close(struct hb_thread *t, uint32_t id);

/* user_data: op in bits 0-1, side in bit 2, tunnel in 3-31, buffer 32-47. */
static uint64_t hb__ud(enum hb_op op, uint32_t id, int side, uint32_t bid)
{
    return (uint64_t)op | (uint64_t)side << 2 | (uint64_t)id << 3 |
           (uint64_t)bid << 32;
}

static struct io_uring_sqe *hb__sqe(struct hb_thread *t)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    if (sqe == NULL) {
        io_uring_submit(&t->ring);
        sqe = io_uring_get_sqe(&t->ring);
    }
    if (sqe == NULL) {
        fprintf(stderr, "hburing: submission queue full\n");
        exit(1);
    }
    return sqe;
}

static uint8_t *hb__buf(struct hb_thread *t, uint32_t bid)
{
    return t->bufs + (size_t)bid * HB_BUF_SIZE;
}

/* Remembers that side s of tunnel id stopped receiving for want of buffers. */
static void hb__starve(struct hb_thread *t, uint32_t id, int s)
{
    if (t->nstarved == HB_STARVED) {
        fprintf(stderr, "hburing: too many receivers waiting for buffers\n");
        exit(1);
    }
    t->tun[id].side[s].starved = true;
    t->starved[(t->starved_head + t->nstarved++) & (HB_STARVED - 1)] =
        id << 1 | (uint32_t)s;
}

/*
 * Gives a buffer back to the ring and lets the receiver that waited
 * longest go on. An entry whose tunnel closed meanwhile is skipped.
 */
static void hb__buf_put(struct hb_thread *t, uint32_t bid)
{
    io_uring_buf_ring_add(t->br, hb__buf(t, bid), HB_BUF_SIZE,
                          (unsigned short)bid, io_uring_buf_ring_mask(HB_NBUF),
                          0);
    io_uring_buf_ring_advance(t->br, 1);
    while (t->nstarved > 0) {
        uint32_t e = t->starved[t->starved_head];
        t->starved_head = (t->starved_head + 1) & (HB_STARVED - 1);
        t->nstarved--;
        struct hb_tunnel *c = &t->tun[e >> 1];
        struct hb_side *side = &c->side[e & 1];
        if (c->used && !c->closing && side->starved) {
            side->starved = false;
            hb__arm_recv(t, e >> 1, (int)(e & 1));
            break;
        }
    }
}

static void hb__send_head(struct hb_thread *t, uint32_t id, int s)
{
    struct hb_side *d = &t->tun[id].side[s];
    uint32_t bid = d->head;
    struct io_uring_sqe *sqe = hb__sqe(t);
    io_uring_prep_send(sqe, d->fd, hb__buf(t, bid) + t->off[bid], t->len[bid],
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, hb__ud(HB_OP_SEND, id, s, bid));
    d->sending = true;
    t->tun[id].ops++;
}

/* Queues buffer bid, holding len bytes, to go out on side s. */
static void hb__queue(struct hb_thread *t, uint32_t id, int s, uint32_t bid,
                      uint32_t len)
{
    struct hb_side *d = &t->tun[id].side[s];
    t->off[bid] = 0;
    t->len[bid] = len;
    t->next[bid] = HB_NONE;
    if (d->head == HB_NONE)
        d->head = bid;
    else
        t->next[d->tail] = bid;
    d->tail = bid;
    if (!d->sending)
        hb__send_head(t, id, s);
}

/* Passes a FIN on once everything read before it has gone out. */
static void hb__maybe_shut(struct hb_thread *t, uint32_t id, int from)
{
    struct hb_tunnel *c = &t->tun[id];
    struct hb_side *d = &c->side[!from];
    if (!c->side[from].eof || d->head != HB_NONE || d->shut)
        return;
    shutdown(d->fd, SHUT_WR);
    d->shut = true;
    if (c->side[0].shut && c->side[1].shut)
        hb__close(t, id);
}

static void hb__on_recv(struct hb_thread *t, uint32_t id, int s,
                        const struct io_uring_cqe *cqe)
{
    struct hb_tunnel *c = &t->tun[id];
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more)
        c->side[s].recv_armed = false;
    if (cqe->res > 0) {
        uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (c->closing)
            hb__buf_put(t, bid);
        else
            hb__queue(t, id, !s, bid, (uint32_t)cqe->res);
        if (!more && !c->closing)
            hb__arm_recv(t, id, s);
    } else if (cqe->res == -ENOBUFS && !c->closing) {
        hb__starve(t, id, s);
    } else if (cqe->res == 0 && !c->closing) {
        c->side[s].eof = true;
        hb__maybe_shut(t, id, s);
    } else if (!more) {
        hb__close(t, id);
    }
}

static void hb__on_send(struct hb_thread *t, uint32_t id, int s, uint32_t bid,
                        int res)
{
    struct hb_tunnel *c = &t->tun[id];
    struct hb_side *d = &c->side[s];
    d->sending = false;
    if (res < 0 || c->closing) {
        hb__close(t, id);
        return;
    }
    t->off[bid] += (uint32_t)res;
    t->len[bid] -= (uint32_t)res;
    if (t->len[bid] == 0) {
        d->head = t->next[bid];
        hb__buf_put(t, bid);
    }
    if (d->head != HB_NONE)
        hb__send_head(t, id, s);
    else
        hb__maybe_shut(t, id, !s);
}

static void hb__arm_recv(struct hb_thread *t, uint32_t id, int s)
{
    struct hb_side *side = &t->tun[id].side[s];
    struct io_uring_sqe *sqe = hb__sqe(t);
    io_uring_prep_recv_multishot(sqe, side->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = HB_BGID;
    io_uring_sqe_set_data64(sqe, hb__ud(HB_OP_RECV, id, s, 0));
    side->recv_armed = true;
    t->tun[id].ops++;
}

/*
 * Starts closing a tunnel: cancels what the ring holds for both sockets.
 * The slot and the sockets are freed once the last operation completed.
 */
static void hb__close(struct hb_thread *t, uint32_t id)
{
    struct hb_tunnel *c = &t->tun[id];
    if (c->closing)
        return;
    c->closing = true;
    for (int s = 0; s < 2; s++) {
        struct io_uring_sqe *sqe = hb__sqe(t);
        io_uring_prep_cancel_fd(sqe, c->side[s].fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, hb__ud(HB_OP_CANCEL, id, s, 0));
        c->ops++;
    }
}

static void hb__free_if_done(struct hb_thread *t, uint32_t id)
{
    struct hb_tunnel *c = &t->tun[id];
    if (!c->closing || c->ops != 0)
        return;
    for (int s = 0; s < 2; s++) {
        for (uint32_t b = c->side[s].head; b != HB_NONE; b = t->next[b])
            hb__buf_put(t, b);
        close(c->side[s].fd);
    }
    c->used = false;
    t->free_ids[t->nfree++] = id;
}

static void hb__arm_accept(struct hb_thread *t)
{
    struct io_uring_sqe *sqe = hb__sqe(t);
    io_uring_prep_multishot_accept(sqe, t->lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, hb__ud(HB_OP_ACCEPT, 0, 0, 0));
}

static void hb__on_accept(struct hb_thread *t, int fd)
{
    int one = 1;
    int b = socket(hb_backend.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (b < 0 || t->nfree == 0 ||
        connect(b, (struct sockaddr *)&hb_backend.ss, hb_backend.len) < 0) {
        if (b >= 0)
            close(b);
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint32_t id = t->free_ids[--t->nfree];
    struct hb_tunnel *c = &t->tun[id];
    *c = (struct hb_tunnel){.used = true};
    c->side[0] = (struct hb_side){.fd = fd, .head = HB_NONE};
    c->side[1] = (struct hb_side){.fd = b, .head = HB_NONE};
    t->accepted++;
    hb__arm_recv(t, id, 0);
    hb__arm_recv(t, id, 1);
}

static void hb__on_cqe(struct hb_thread *t, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    enum hb_op op = ud & 3;
    int s = (ud >> 2) & 1;
    uint32_t id = (uint32_t)(ud >> 3) & 0x1fffffff;
    uint32_t bid = (uint32_t)(ud >> 32) & 0xffff;
    if (op == HB_OP_ACCEPT) {
        if (!(cqe->flags & IORING_CQE_F_MORE))
            hb__arm_accept(t);
        if (cqe->res >= 0)
            hb__on_accept(t, cqe->res);
        return;
    }
    bool done = op != HB_OP_RECV || !(cqe->flags & IORING_CQE_F_MORE);
    if (op == HB_OP_RECV)
        hb__on_recv(t, id, s, cqe);
    else if (op == HB_OP_SEND)
        hb__on_send(t, id, s, bid, cqe->res);
    if (done)
        t->tun[id].ops--;
    hb__free_if_done(t, id);
}

static int hb__listen(void)
{
    int one = 1;
    int fd = socket(hb_listen.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&hb_listen.ss, hb_listen.len) < 0 ||
        listen(fd, 4096) < 0) {
        perror("hburing: listen");
        exit(1);
    }
    return fd;
}

static void hb__setup(struct hb_thread *t)
{
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER |
                                         IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_CQSIZE,
                                .cq_entries = 65536};
    int err = io_uring_queue_init_params(4096, &t->ring, &p);
    size_t ring_size = HB_NBUF * sizeof(struct io_uring_buf);
    t->br = mmap(NULL, ring_size, PROT_READ | PROT_WRITE,
                 MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    t->bufs = malloc((size_t)HB_NBUF * HB_BUF_SIZE);
    t->tun = calloc(HB_MAX_CONN, sizeof(*t->tun));
    t->free_ids = malloc(HB_MAX_CONN * sizeof(*t->free_ids));
    t->starved = malloc(HB_STARVED * sizeof(*t->starved));
    if (err < 0 || t->br == MAP_FAILED || !t->bufs || !t->tun || !t->free_ids ||
        !t->starved) {
        fprintf(stderr, "hburing: io_uring setup: %s\n", strerror(-err));
        exit(1);
    }
    io_uring_buf_ring_init(t->br);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)t->br,
                                   .ring_entries = HB_NBUF,
                                   .bgid = HB_BGID};
    err = io_uring_register_buf_ring(&t->ring, &reg, 0);
    if (err < 0) {
        fprintf(stderr, "hburing: buffer ring: %s\n", strerror(-err));
        exit(1);
    }
    for (uint32_t i = 0; i < HB_NBUF; i++)
        hb__buf_put(t, i);
    for (uint32_t i = 0; i < HB_MAX_CONN; i++)
        t->free_ids[t->nfree++] = HB_MAX_CONN - 1 - i;
    t->lfd = hb__listen();
    hb__arm_accept(t);
}

static void *hb__run(void *arg)
{
    struct hb_thread *t = arg;
    hb__setup(t);
    struct __kernel_timespec tick = {.tv_nsec = 100 * 1000 * 1000};
    while (!hb_stop) {
        struct io_uring_cqe *cqe;
        int err =
            io_uring_submit_and_wait_timeout(&t->ring, &cqe, 1, &tick, NULL);
        if (err < 0 && err != -ETIME && err != -EINTR) {
            fprintf(stderr, "hburing: wait: %s\n", strerror(-err));
            exit(1);
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&t->ring, head, cqe)
        {
            hb__on_cqe(t, cqe);
            n++;
        }
        io_uring_cq_advance(&t->ring, n);
    }
    return NULL;
}

static void hb__on_signal(int sig)
{
    (void)sig;
    hb_stop = 1;
}

static void hb__usage(void)
{
    fprintf(stderr, "usage: hburing --listen IP:PORT --backend IP:PORT "
                    "[--threads N] [--max-time SECONDS]\n"
                    "Loopback addresses only; the listening port must be "
                    "given (not 0).\n");
}

int main(int argc, char **argv)
{
    unsigned threads = 1;
    double max_time = 3600;
    bool ok = argc % 2 == 1, have_listen = false, have_backend = false;
    for (int i = 1; ok && i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--listen") == 0)
            ok = have_listen =
                hb_addr_parse(v, &hb_listen) && hb_addr_is_loopback(&hb_listen);
        else if (strcmp(k, "--backend") == 0)
            ok = have_backend = hb_addr_parse(v, &hb_backend) &&
                                hb_addr_is_loopback(&hb_backend);
        else if (strcmp(k, "--threads") == 0)
            ok = hb_parse_uint(v, 1, HB_MAX_THREAD, &threads);
        else if (strcmp(k, "--max-time") == 0)
            ok = hb_parse_double(v, 0.1, 86400, &max_time);
        else
            ok = false;
    }
    /* Each thread binds the port with SO_REUSEPORT: 0 would give each its
     * own unknown port. */
    if (ok && have_listen &&
        ((struct sockaddr_in *)&hb_listen.ss)->sin_port == 0)
        ok = false;
    if (!ok || !have_listen || !have_backend) {
        hb__usage();
        return 2;
    }
    hb_raise_nofile();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, hb__on_signal);
    signal(SIGINT, hb__on_signal);
    signal(SIGPIPE, SIG_IGN);
    struct hb_thread *ts = calloc(threads, sizeof(*ts));
    if (ts == NULL)
        return 1;
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&ts[i].tid, NULL, hb__run, &ts[i]) != 0)
            return 1;
    uint64_t end = hb_now_ns() + (uint64_t)(max_time * 1e9);
    while (!hb_stop && hb_now_ns() < end)
        usleep(100 * 1000);
    hb_stop = 1;
    unsigned long accepted = 0;
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(ts[i].tid, NULL);
        accepted += ts[i].accepted;
    }
    fprintf(stderr, "hburing: %lu connections accepted\n", accepted);
    return 0;
}
