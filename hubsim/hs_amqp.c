#include "hs_amqp.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <proton/condition.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/message.h>
#include <proton/sasl.h>
#include <proton/session.h>
#include <proton/terminus.h>
#include <proton/transport.h>

#include "hs_cbs.h"
#include "hs_device.h"
#include "hs_log.h"
#include "hs_sas.h"
#include "hs_tls.h"
#include "hs_worker.h"

#define HS_AMQP_WS_PROTOCOL  "AMQPWSB10"
#define HS_AMQP_FRAME_MAX    (64 * 1024) /* WebSocket frame, AMQP out */
#define HS_AMQP_CBS_CREDIT   64
#define HS_AMQP_PASSWORD_MAX 2048

static uint64_t hs__now_us(void);
static void hs__kick(struct hs_amqp_conn *c);
static void hs__on_defer(struct hg_loop *loop, struct hg_defer *defer);
static void hs__on_io(struct hg_loop *loop, struct hg_io *io, uint32_t ev);
static void hs__on_timer(struct hg_loop *loop, struct hg_timer *t);
static void hs__start(struct hs_amqp_conn *c);
static void hs__tcp_done(struct hs_amqp_conn *c);
static void hs__tls_step(struct hs_amqp_conn *c);
static void hs__tls_fail(struct hs_amqp_conn *c,
                         const struct hs_tls_failure *f);
static void hs__ws_start(struct hs_amqp_conn *c);
static void hs__ws_answer(struct hs_amqp_conn *c);
static void hs__up(struct hs_amqp_conn *c);
static void hs__begin_waiting(struct hs_amqp_conn *c);
static void hs__begin(struct hs_amqp_conn *c, struct hs_device *d);
static void hs__open_sender(struct hs_amqp_conn *c, struct hs_device *d);
static void hs__read(struct hs_amqp_conn *c);
static void hs__feed(struct hs_amqp_conn *c, const uint8_t *data, size_t len);
static void hs__ws_input(struct hs_amqp_conn *c, const uint8_t *data,
                         size_t len);
static void hs__pump(struct hs_amqp_conn *c);
static void hs__event(struct hs_amqp_conn *c, pn_event_t *e);
static void hs__on_link_open(struct hs_amqp_conn *c, pn_link_t *l);
static void hs__on_link_close(struct hs_amqp_conn *c, pn_link_t *l);
static void hs__on_delivery(struct hs_amqp_conn *c, pn_delivery_t *dlv);
static void hs__on_cbs_reply(struct hs_amqp_conn *c, pn_delivery_t *dlv);
static void hs__on_transport_error(struct hs_amqp_conn *c);
static bool hs__write(struct hs_amqp_conn *c);
static bool hs__flush_out(struct hs_amqp_conn *c);
static void hs__update_events(struct hs_amqp_conn *c);
static void hs__arm_tick(struct hs_amqp_conn *c);
static void hs__fail(struct hs_amqp_conn *c, enum hs_err kind, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
static void hs__teardown(struct hs_amqp_conn *c);
static void hs__close(struct hs_amqp_conn *c);
static struct hs_device *hs__device(struct hs_amqp_conn *c, uint64_t index);
static void hs__condition(pn_condition_t *cond, char *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

int hs_amqp_init(struct hs_worker *w)
{
    uint32_t per = w->run->cfg->devices_per_conn;
    w->nconns = (w->ndevices + per - 1) / per;
    w->conns = calloc(w->nconns ? w->nconns : 1, sizeof(*w->conns));
    w->msg = pn_message();
    if (w->conns == NULL || w->msg == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct hs_amqp_conn *c = &w->conns[i];
        c->w = w;
        c->number = i;
        c->first = i * per;
        c->count = w->ndevices - c->first < per ? w->ndevices - c->first : per;
        c->io.fd = -1;
        c->io.cb = hs__on_io;
        c->timer.cb = hs__on_timer;
    }
    return 0;
}

void hs_amqp_deinit(struct hs_worker *w)
{
    for (uint32_t i = 0; w->conns && i < w->nconns; i++) {
        w->conns[i].failed = false;
        hs__teardown(&w->conns[i]);
    }
    free(w->conns);
    w->conns = NULL;
    if (w->msg)
        pn_message_free(w->msg);
    w->msg = NULL;
}

void hs_amqp_device_open(struct hs_device *d)
{
    struct hs_worker *w = d->w;
    uint32_t slot = (uint32_t)(d - w->devices);
    struct hs_amqp_conn *c = &w->conns[slot / w->run->cfg->devices_per_conn];
    d->conn = c;
    d->amqp_waiting = true;
    c->users++;
    c->waiting++;
    hs__kick(c);
}

bool hs_amqp_send(struct hs_device *d, const uint8_t *payload, size_t len,
                  uint16_t tag)
{
    struct hs_worker *w = d->w;
    const struct hs_config *cfg = w->run->cfg;
    pn_message_t *m = w->msg;
    pn_message_clear(m);
    pn_data_put_ulong(pn_message_id(m), d->sent);
    if (cfg->amqp_auth != HS_AMQP_CBS) {
        pn_data_t *props = pn_message_properties(m);
        pn_data_put_map(props);
        pn_data_enter(props);
        pn_data_put_string(props, pn_bytes(9, "device-id"));
        pn_data_put_string(props, pn_bytes(strlen(d->id), d->id));
        pn_data_exit(props);
    }
    pn_data_put_binary(pn_message_body(m),
                       pn_bytes(len, (const char *)payload));
    size_t n = HS_WBUF_SIZE;
    if (pn_message_encode(m, (char *)w->wbuf, &n) != 0)
        return false;
    uint8_t t[2] = {(uint8_t)(tag >> 8), (uint8_t)tag};
    pn_delivery_t *dlv = pn_delivery(d->link, pn_dtag((const char *)t, 2));
    /* Unsettled even at QoS 0 (see hs__begin); the disposition then
     * finds no message in flight and only settles. */
    (void)dlv;
    pn_link_send(d->link, (const char *)w->wbuf, n);
    pn_link_advance(d->link);
    hs__kick(d->conn);
    return true;
}

void hs_amqp_device_drop(struct hs_device *d, bool graceful)
{
    struct hs_amqp_conn *c = d->conn;
    if (c == NULL)
        return;
    if (d->link != NULL) {
        pn_link_set_context(d->link, NULL);
        if (graceful)
            pn_link_close(d->link);
        else
            pn_link_detach(d->link);
        pn_link_free(d->link);
        d->link = NULL;
    }
    if (d->amqp_waiting)
        c->waiting--;
    d->amqp_waiting = false;
    d->cbs_id = 0;
    d->conn = NULL;
    if (--c->users == 0 && c->state != HS_AMQP_DOWN)
        hs__close(c);
    else if (c->state == HS_AMQP_UP)
        hs__kick(c);
}

size_t hs_amqp_address(char *out, size_t cap, const char *pattern,
                       const char *device_id)
{
    static const char key[] = "{deviceId}";
    size_t n = 0, klen = sizeof(key) - 1, idlen = strlen(device_id);
    for (const char *p = pattern; *p;) {
        const char *piece = p;
        size_t plen = 1;
        if (strncmp(p, key, klen) == 0) {
            piece = device_id;
            plen = idlen;
            p += klen;
        } else {
            p++;
        }
        if (n + 1 < cap)
            memcpy(out + n, piece, n + plen < cap ? plen : cap - 1 - n);
        n += plen;
    }
    if (cap > 0)
        out[n < cap ? n : cap - 1] = '\0';
    return n;
}

static uint64_t hs__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Queues the connection's work to run after the current batch. */
static void hs__kick(struct hs_amqp_conn *c)
{
    if (c->deferred)
        return;
    c->deferred = true;
    hg_loop_defer(&c->w->loop, &c->defer, hs__on_defer);
}

/* Starts the connection, begins waiting devices, moves bytes. */
static void hs__on_defer(struct hg_loop *loop, struct hg_defer *defer)
{
    struct hs_amqp_conn *c = hg_container_of(defer, struct hs_amqp_conn, defer);
    (void)loop;
    c->deferred = false;
    if (c->state == HS_AMQP_DOWN && c->users > 0) {
        hs__start(c);
        return;
    }
    if (c->state == HS_AMQP_UP)
        hs__begin_waiting(c);
    if (c->state == HS_AMQP_UP || c->state == HS_AMQP_CLOSING)
        hs__pump(c);
}

/* ------------------------------------------------------------------ */
/* Connecting: TCP, TLS, WebSocket                                     */
/* ------------------------------------------------------------------ */

static void hs__start(struct hs_amqp_conn *c)
{
    const struct hs_run *run = c->w->run;
    const struct hs_config *cfg = run->cfg;
    int one = 1, err = 0;
    hg_timer_start(&c->w->loop, &c->timer, cfg->connect_timeout_ms);
    c->state = HS_AMQP_TCP;
    int fd = socket(run->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        err = errno;
        hs__fail(c, hs_err_from_errno(err), "connect: %s", strerror(err));
        return;
    }
    c->io.fd = fd;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (cfg->nbinds > 0) {
        const struct sockaddr_storage *src =
            &cfg->binds[(c->w->id + c->number) % cfg->nbinds];
        socklen_t len = src->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                   : sizeof(struct sockaddr_in);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)src, len) < 0) {
            err = errno;
            hs__fail(c, hs_err_from_errno(err), "bind: %s", strerror(err));
            return;
        }
    }
    if (connect(fd, (const struct sockaddr *)&run->addr, run->addr_len) < 0 &&
        errno != EINPROGRESS) {
        err = errno;
        hs__fail(c, hs_err_from_errno(err), "connect: %s", strerror(err));
        return;
    }
    c->events = EPOLLOUT;
    int rc = hg_io_add(&c->w->loop, &c->io, c->events);
    if (rc < 0)
        hs__fail(c, HS_ERR_LOCAL, "epoll: %s", strerror(-rc));
}

static void hs__tcp_done(struct hs_amqp_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        hs__fail(c, hs_err_from_errno(err), "connect: %s", strerror(err));
        return;
    }
    c->t_tcp_us = hs__now_us();
    c->ssl = hs_tls_new(c->w->run->tls, c->io.fd, c->w->run->cfg->hub, NULL);
    if (c->ssl == NULL) {
        hs__fail(c, HS_ERR_LOCAL, "no memory for TLS");
        return;
    }
    c->state = HS_AMQP_TLS;
    hs__tls_step(c);
}

static void hs__tls_step(struct hs_amqp_conn *c)
{
    struct hs_tls_failure f;
    struct hs_stats *st = &c->w->stats;
    switch (hs_tls_handshake(c->ssl, &f)) {
    case HS_TLS_OK:
        c->want_out = false;
        hs_stats_latency(st, &st->tls_all, hs__now_us() - c->t_tcp_us);
        if (c->w->run->cfg->protocol == HS_PROTO_AMQP_WS)
            hs__ws_start(c);
        else
            hs__up(c);
        return;
    case HS_TLS_WANT_READ:
        c->want_out = false;
        hs__update_events(c);
        return;
    case HS_TLS_WANT_WRITE:
        c->want_out = true;
        hs__update_events(c);
        return;
    case HS_TLS_FAILED:
        hs__tls_fail(c, &f);
        return;
    }
}

static void hs__tls_fail(struct hs_amqp_conn *c, const struct hs_tls_failure *f)
{
    bool handshake = c->state == HS_AMQP_TLS;
    switch (f->kind) {
    case HS_TLS_F_VERIFY:
        hs__fail(c, HS_ERR_TLS_VERIFY, "%s", f->reason);
        break;
    case HS_TLS_F_PROTO:
        hs__fail(c, HS_ERR_TLS, "%s", f->reason);
        break;
    case HS_TLS_F_CLOSED:
        hs__fail(c, handshake ? HS_ERR_TLS : HS_ERR_CLOSED, "%s: %s",
                 handshake ? "tls handshake" : "amqp", f->reason);
        break;
    case HS_TLS_F_RESET:
        hs__fail(c, hs_err_from_errno(f->errno_value), "%s", f->reason);
        break;
    }
}

static void hs__ws_start(struct hs_amqp_conn *c)
{
    const struct hs_config *cfg = c->w->run->cfg;
    uint8_t nonce[16];
    uint64_t r[2] = {hs_rand(&c->w->rng), hs_rand(&c->w->rng)};
    memcpy(nonce, r, sizeof(nonce));
    hs_ws_key(nonce, c->ws_key);
    char req[2048];
    size_t n = hs_ws_request(req, sizeof(req), cfg->hub, cfg->ws_path,
                             c->ws_key, HS_AMQP_WS_PROTOCOL);
    c->state = HS_AMQP_WS;
    if (n == 0 || !hs_buf_add(&c->out, (const uint8_t *)req, n)) {
        hs__fail(c, HS_ERR_LOCAL, "cannot build the upgrade request");
        return;
    }
    if (hs__flush_out(c))
        hs__update_events(c);
}

/* Looks at the upgrade answer gathered so far. */
static void hs__ws_answer(struct hs_amqp_conn *c)
{
    size_t used = 0;
    int status = 0;
    const char *why = NULL;
    enum hs_ws_rc rc = hs_ws_response(
        (const char *)c->in.data + c->in.off, c->in.len - c->in.off, c->ws_key,
        HS_AMQP_WS_PROTOCOL, &used, &status, &why);
    if (rc == HS_WS_AGAIN)
        return;
    if (rc == HS_WS_ERROR) {
        if (status != 0 && status != 101)
            hs__fail(c, HS_ERR_WS, "upgrade: HTTP %d", status);
        else
            hs__fail(c, HS_ERR_WS, "upgrade: %s", why);
        return;
    }
    c->ws = malloc(sizeof(*c->ws));
    if (c->ws == NULL) {
        hs__fail(c, HS_ERR_LOCAL, "no memory for the WebSocket");
        return;
    }
    hs_ws_decoder_init(c->ws);
    struct hs_buf rest = c->in;
    rest.off += used;
    memset(&c->in, 0, sizeof(c->in));
    hs__up(c);
    if (c->state == HS_AMQP_UP && rest.len > rest.off)
        hs__ws_input(c, rest.data + rest.off, rest.len - rest.off);
    hs_buf_free(&rest);
}

/*
 * The byte stream is ready: proton's connection with SASL (ANONYMOUS, or
 * PLAIN with the configured user), the hub's name as the open's hostname,
 * a session and, for cbs, the $cbs request and reply links. Devices begin
 * at once; proton holds their frames until SASL is done.
 */
static void hs__up(struct hs_amqp_conn *c)
{
    const struct hs_config *cfg = c->w->run->cfg;
    char container[64];
    if (pn_connection_driver_init(&c->driver, NULL, NULL) != 0) {
        hs__fail(c, HS_ERR_LOCAL, "no memory for AMQP");
        return;
    }
    c->have_driver = true;
    pn_transport_t *t = c->driver.transport;
    pn_connection_t *conn = c->driver.connection;
    pn_sasl_t *sasl = pn_sasl(t);
    pn_sasl_set_allow_insecure_mechs(sasl,
                                     true); /* TLS is ours, not proton's */
    if (cfg->amqp_auth == HS_AMQP_PLAIN) {
        pn_sasl_allowed_mechs(sasl, "PLAIN");
        pn_connection_set_user(conn, cfg->amqp_user);
        pn_connection_set_password(conn, cfg->amqp_password);
    } else {
        pn_sasl_allowed_mechs(sasl, "ANONYMOUS");
    }
    if (cfg->keepalive_s)
        pn_transport_set_idle_timeout(t, cfg->keepalive_s * 2000);
    snprintf(container, sizeof(container), "hubsim-%u-%u", c->w->id, c->number);
    pn_connection_set_container(conn, container);
    pn_connection_set_hostname(conn, cfg->hub);
    pn_connection_open(conn);
    c->session = pn_session(conn);
    pn_session_set_incoming_capacity(c->session, 1024 * 1024);
    pn_session_open(c->session);
    if (cfg->amqp_auth == HS_AMQP_CBS) {
        c->cbs_tx = pn_sender(c->session, "cbs-sender");
        pn_terminus_set_address(pn_link_target(c->cbs_tx), HS_CBS_NODE);
        pn_terminus_set_address(pn_link_source(c->cbs_tx), HS_CBS_REPLY_TO);
        pn_link_open(c->cbs_tx);
        c->cbs_rx = pn_receiver(c->session, "cbs-receiver");
        pn_terminus_set_address(pn_link_source(c->cbs_rx), HS_CBS_NODE);
        pn_terminus_set_address(pn_link_target(c->cbs_rx), HS_CBS_REPLY_TO);
        pn_link_open(c->cbs_rx);
        pn_link_flow(c->cbs_rx, HS_AMQP_CBS_CREDIT);
    }
    c->state = HS_AMQP_UP;
    hs__begin_waiting(c);
    hs__pump(c);
}

/* Every device waiting for this connection begins on it. */
static void hs__begin_waiting(struct hs_amqp_conn *c)
{
    struct hs_device *devs = c->w->devices + c->first;
    for (uint32_t i = 0; i < c->count && c->waiting > 0; i++) {
        struct hs_device *d = &devs[i];
        if (d->conn == c && d->amqp_waiting) {
            d->amqp_waiting = false;
            c->waiting--;
            hs__begin(c, d);
        }
    }
}

/* A device's first step: its put-token request, or straight its link. */
static void hs__begin(struct hs_amqp_conn *c, struct hs_device *d)
{
    const struct hs_config *cfg = c->w->run->cfg;
    char buf[HS_AMQP_PASSWORD_MAX];
    if (cfg->amqp_auth != HS_AMQP_CBS) {
        hs__open_sender(c, d);
        return;
    }
    const char *token =
        hs_device_password(cfg, d->id, (uint64_t)time(NULL), buf, sizeof(buf));
    /* The request's id names the device and this attempt, so an answer to
     * an earlier attempt is recognised and dropped. */
    d->cbs_id = ((uint64_t)++c->link_seq << 32) | d->index;
    pn_message_t *m = c->w->msg;
    size_t n = HS_WBUF_SIZE;
    if (token == NULL ||
        hs_cbs_request(m, cfg->hub, d->id, token, d->cbs_id) != 0 ||
        pn_message_encode(m, (char *)c->w->wbuf, &n) != 0) {
        hs_device_amqp_fail(d, HS_ERR_LOCAL, "cannot build the put-token");
        return;
    }
    char tag[8];
    memcpy(tag, &d->cbs_id, sizeof(tag));
    pn_delivery_t *dlv = pn_delivery(c->cbs_tx, pn_dtag(tag, sizeof(tag)));
    /* Sent unsettled: proton drops a delivery settled before the peer
     * gave credit for it; the peer's disposition settles it. */
    (void)dlv;
    pn_link_send(c->cbs_tx, (const char *)c->w->wbuf, n);
    pn_link_advance(c->cbs_tx);
    hs_device_amqp_state(d, HS_DEV_CBS);
}

/* The device's own sender link to its address. */
static void hs__open_sender(struct hs_amqp_conn *c, struct hs_device *d)
{
    const struct hs_config *cfg = c->w->run->cfg;
    char name[HS_DEVICE_ID_MAX + 64], addr[HS_DEVICE_ID_MAX + 1024];
    snprintf(name, sizeof(name), "%s-%" PRIu32, d->id, ++c->link_seq);
    hs_amqp_address(addr, sizeof(addr), cfg->amqp_address, d->id);
    d->link = pn_sender(c->session, name);
    pn_link_set_context(d->link, d);
    pn_terminus_set_address(pn_link_target(d->link), addr);
    pn_terminus_set_address(pn_link_source(d->link), d->id);
    pn_link_set_snd_settle_mode(d->link, PN_SND_UNSETTLED);
    pn_link_open(d->link);
    hs_device_amqp_state(d, HS_DEV_LINK);
}

/* ------------------------------------------------------------------ */
/* Events and I/O                                                      */
/* ------------------------------------------------------------------ */

static void hs__on_io(struct hg_loop *loop, struct hg_io *io, uint32_t ev)
{
    struct hs_amqp_conn *c = hg_container_of(io, struct hs_amqp_conn, io);
    (void)loop;
    switch (c->state) {
    case HS_AMQP_TCP:
        hs__tcp_done(c);
        return;
    case HS_AMQP_TLS:
        hs__tls_step(c);
        return;
    case HS_AMQP_WS:
    case HS_AMQP_UP:
    case HS_AMQP_CLOSING:
        if ((ev & EPOLLOUT) && c->out.len > c->out.off && !hs__flush_out(c))
            return;
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP) || c->want_out)
            hs__read(c);
        if (c->state >= HS_AMQP_UP && c->io.fd >= 0)
            hs__pump(c);
        else if (c->io.fd >= 0)
            hs__update_events(c);
        return;
    default:
        return;
    }
}

static void hs__on_timer(struct hg_loop *loop, struct hg_timer *t)
{
    struct hs_amqp_conn *c = hg_container_of(t, struct hs_amqp_conn, timer);
    const struct hs_config *cfg = c->w->run->cfg;
    switch (c->state) {
    case HS_AMQP_TCP:
        hs__fail(c, HS_ERR_TCP_TIMEOUT, "no TCP connection in %" PRIu64 " ms",
                 cfg->connect_timeout_ms);
        return;
    case HS_AMQP_TLS:
    case HS_AMQP_WS:
        hs__fail(c, HS_ERR_TIMEOUT, "%s for more than %" PRIu64 " ms",
                 c->state == HS_AMQP_TLS ? "tls handshake"
                                         : "websocket upgrade",
                 cfg->connect_timeout_ms);
        return;
    case HS_AMQP_UP:
        pn_transport_tick(c->driver.transport, (int64_t)loop->now);
        hs__pump(c);
        return;
    case HS_AMQP_CLOSING:
        hs__teardown(c); /* the peer never answered the close */
        return;
    default:
        return;
    }
}

/* Reads until the socket is empty, handing the bytes on. */
static void hs__read(struct hs_amqp_conn *c)
{
    uint8_t *buf = c->w->rbuf;
    while (c->ssl != NULL && !c->failed) {
        struct hs_tls_failure f;
        size_t n = 0;
        enum hs_tls_rc rc = hs_tls_read(c->ssl, buf, HS_RBUF_SIZE, &n, &f);
        if (rc == HS_TLS_FAILED) {
            if (c->state == HS_AMQP_CLOSING)
                hs__teardown(c); /* the peer hung up first: fine */
            else
                hs__tls_fail(c, &f);
            return;
        }
        if (rc != HS_TLS_OK) {
            c->want_out = rc == HS_TLS_WANT_WRITE;
            return;
        }
        if (c->state == HS_AMQP_WS) {
            if (!hs_buf_add(&c->in, buf, n) ||
                c->in.len - c->in.off > HS_WS_RESPONSE_MAX + HS_RBUF_SIZE) {
                hs__fail(c, HS_ERR_WS, "upgrade: answer too long");
                return;
            }
            hs__ws_answer(c);
        } else if (c->ws != NULL) {
            hs__ws_input(c, buf, n);
        } else {
            hs__feed(c, buf, n);
        }
    }
}

/* Gives proton bytes from the peer, handling events as its buffer fills. */
static void hs__feed(struct hs_amqp_conn *c, const uint8_t *data, size_t len)
{
    while (len > 0 && !c->failed && c->have_driver) {
        pn_rwbytes_t rb = pn_connection_driver_read_buffer(&c->driver);
        if (rb.size == 0) {
            hs__pump(c);
            if (!c->have_driver || c->failed)
                return; /* torn down meanwhile */
            rb = pn_connection_driver_read_buffer(&c->driver);
            if (rb.size == 0)
                return; /* proton takes no more input: the end is near */
        }
        size_t n = len < rb.size ? len : rb.size;
        memcpy(rb.start, data, n);
        pn_connection_driver_read_done(&c->driver, n);
        data += n;
        len -= n;
    }
}

/* WebSocket frames from the peer: their payload is AMQP. */
static void hs__ws_input(struct hs_amqp_conn *c, const uint8_t *data,
                         size_t len)
{
    size_t off = 0;
    while (off < len && !c->failed) {
        struct hs_ws_event ev;
        size_t used = 0;
        const char *why = NULL;
        enum hs_ws_rc rc =
            hs_ws_decode(c->ws, data + off, len - off, &used, &ev, &why);
        off += used;
        if (rc == HS_WS_ERROR) {
            hs__fail(c, HS_ERR_WS, "%s", why);
            return;
        }
        if (rc == HS_WS_AGAIN)
            return;
        if (ev.type == HS_WS_EV_DATA) {
            hs__feed(c, ev.data, ev.len);
        } else if (ev.type == HS_WS_EV_PING) {
            uint8_t frame[HS_WS_MAX_HEADER + HS_WS_CONTROL_MAX], mask[4];
            uint32_t m = (uint32_t)hs_rand(&c->w->rng);
            memcpy(mask, &m, sizeof(mask));
            size_t n = hs_ws_frame(frame, sizeof(frame), HS_WS_PONG, ev.data,
                                   ev.len, mask);
            if (!hs_buf_add(&c->out, frame, n)) {
                hs__fail(c, HS_ERR_LOCAL, "no memory for the send queue");
                return;
            }
        } else if (ev.type == HS_WS_EV_CLOSE) {
            if (c->state == HS_AMQP_CLOSING) {
                hs__teardown(c);
                return;
            }
            hs__fail(c, HS_ERR_WS, "the server closed the WebSocket (%u)",
                     ev.close_code);
            return;
        }
    }
}

/*
 * Handles proton's events and writes what it has to say, until neither is
 * left; a failure found on the way tears the connection down once no event
 * is being handled.
 */
static void hs__pump(struct hs_amqp_conn *c)
{
    if (c->pumping || !c->have_driver)
        return;
    c->pumping = true;
    for (int rounds = 0; rounds < 1000 && !c->failed; rounds++) {
        pn_event_t *e;
        while (!c->failed &&
               (e = pn_connection_driver_next_event(&c->driver)) != NULL)
            hs__event(c, e);
        if (c->failed || !hs__write(c))
            break;
        if (!pn_connection_driver_has_event(&c->driver))
            break;
    }
    c->pumping = false;
    if (c->failed || c->ending || pn_connection_driver_finished(&c->driver)) {
        hs__teardown(c);
        return;
    }
    hs__update_events(c);
    if (c->state == HS_AMQP_UP)
        hs__arm_tick(c);
}

static void hs__event(struct hs_amqp_conn *c, pn_event_t *e)
{
    switch (pn_event_type(e)) {
    case PN_LINK_REMOTE_OPEN:
        hs__on_link_open(c, pn_event_link(e));
        return;
    case PN_LINK_REMOTE_CLOSE:
    case PN_LINK_REMOTE_DETACH:
        hs__on_link_close(c, pn_event_link(e));
        return;
    case PN_DELIVERY:
        hs__on_delivery(c, pn_event_delivery(e));
        return;
    case PN_CONNECTION_REMOTE_CLOSE: {
        char why[HS_SAMPLE_LEN];
        hs__condition(pn_connection_remote_condition(c->driver.connection), why,
                      sizeof(why));
        if (c->state == HS_AMQP_CLOSING) {
            pn_connection_close(c->driver.connection);
            return;
        }
        hs__fail(c, HS_ERR_AMQP_CLOSE, "the peer closed the connection%s%s",
                 why[0] ? ": " : "", why);
        return;
    }
    case PN_SESSION_REMOTE_CLOSE:
        if (c->state != HS_AMQP_CLOSING)
            hs__fail(c, HS_ERR_AMQP_CLOSE, "the peer ended the session");
        return;
    case PN_TRANSPORT_ERROR:
        hs__on_transport_error(c);
        return;
    case PN_TRANSPORT_CLOSED:
        if (c->state != HS_AMQP_CLOSING && !c->failed)
            hs__fail(c, HS_ERR_CLOSED, "the peer closed the connection");
        return;
    default:
        return;
    }
}

/* A device's link is attached: it may publish, unless the peer refused. */
static void hs__on_link_open(struct hs_amqp_conn *c, pn_link_t *l)
{
    struct hs_device *d = pn_link_get_context(l);
    (void)c;
    if (d == NULL || l != d->link)
        return;
    /* A refusal is an attach without a target, then a detach. */
    if (pn_terminus_get_type(pn_link_remote_target(l)) == PN_UNSPECIFIED)
        return;
    hs_device_amqp_up(d);
}

static void hs__on_link_close(struct hs_amqp_conn *c, pn_link_t *l)
{
    char why[HS_SAMPLE_LEN];
    hs__condition(pn_link_remote_condition(l), why, sizeof(why));
    if (l == c->cbs_tx || l == c->cbs_rx) {
        if (c->state != HS_AMQP_CLOSING)
            hs__fail(c, HS_ERR_AMQP_CBS, "the peer detached the $cbs link%s%s",
                     why[0] ? ": " : "", why);
        return;
    }
    struct hs_device *d = pn_link_get_context(l);
    if (d == NULL || l != d->link)
        return;
    hs_device_amqp_fail(d, HS_ERR_AMQP_DETACH, "link detached%s%s",
                        why[0] ? ": " : "", why[0] ? why : " without a reason");
}

/* A disposition for a device's message, or an answer on $cbs. */
static void hs__on_delivery(struct hs_amqp_conn *c, pn_delivery_t *dlv)
{
    pn_link_t *l = pn_delivery_link(dlv);
    if (l == c->cbs_rx) {
        hs__on_cbs_reply(c, dlv);
        return;
    }
    if (!pn_delivery_updated(dlv))
        return;
    uint64_t state = pn_delivery_remote_state(dlv);
    if (state == 0 && !pn_delivery_settled(dlv))
        return;
    if (l == c->cbs_tx) {
        pn_delivery_settle(dlv);
        return;
    }
    struct hs_device *d = pn_link_get_context(l);
    pn_delivery_tag_t tag = pn_delivery_tag(dlv);
    uint16_t id =
        tag.size == 2
            ? (uint16_t)((uint8_t)tag.start[0] << 8 | (uint8_t)tag.start[1])
            : 0;
    pn_delivery_settle(dlv);
    if (d != NULL && l == d->link)
        hs_device_amqp_ack(d, id, state == PN_ACCEPTED,
                           pn_disposition_type_name(state));
}

/* The answer to a put-token: the device opens its link, or fails. */
static void hs__on_cbs_reply(struct hs_amqp_conn *c, pn_delivery_t *dlv)
{
    if (pn_delivery_partial(dlv) || !pn_delivery_readable(dlv))
        return;
    size_t size = pn_delivery_pending(dlv);
    char *buf = (char *)c->w->rbuf;
    if (size > HS_RBUF_SIZE) {
        pn_delivery_update(dlv, PN_REJECTED);
        pn_delivery_settle(dlv);
        hs__fail(c, HS_ERR_AMQP_CBS, "a $cbs answer of %zu bytes", size);
        return;
    }
    ssize_t n = pn_link_recv(c->cbs_rx, buf, size);
    pn_link_advance(c->cbs_rx);
    pn_delivery_update(dlv, PN_ACCEPTED);
    pn_delivery_settle(dlv);
    if (pn_link_credit(c->cbs_rx) < HS_AMQP_CBS_CREDIT / 2)
        pn_link_flow(c->cbs_rx, HS_AMQP_CBS_CREDIT);
    struct hs_cbs_reply r;
    const char *why = NULL;
    enum hs_cbs_rc rc =
        hs_cbs_reply_decode(c->w->msg, buf, n > 0 ? (size_t)n : 0, &r, &why);
    if (rc != HS_CBS_OK) {
        hs__fail(c, HS_ERR_AMQP_CBS, "bad $cbs answer: %s", why);
        return;
    }
    struct hs_device *d = hs__device(c, r.id & 0xffffffffu);
    if (d == NULL || d->conn != c || d->cbs_id != r.id ||
        d->state != HS_DEV_CBS)
        return; /* for an attempt that has ended */
    if (!hs_cbs_accepted(r.status)) {
        hs_device_amqp_fail(d, HS_ERR_AMQP_CBS, "put-token refused: %d%s%s",
                            r.status, r.description[0] ? " " : "",
                            r.description);
        return;
    }
    hs__open_sender(c, d);
}

/* proton gave up on the connection: SASL refused us, or bad framing. */
static void hs__on_transport_error(struct hs_amqp_conn *c)
{
    char why[HS_SAMPLE_LEN];
    pn_transport_t *t = c->driver.transport;
    hs__condition(pn_transport_condition(t), why, sizeof(why));
    pn_sasl_outcome_t outcome = pn_sasl_outcome(pn_sasl(t));
    if (outcome > PN_SASL_OK) {
        hs__fail(c, HS_ERR_AMQP_SASL, "SASL outcome %d: %s", (int)outcome, why);
        return;
    }
    if (c->state == HS_AMQP_CLOSING || c->failed)
        return;
    if (strstr(why, "idle-timeout") != NULL)
        hs__fail(c, HS_ERR_PING_TIMEOUT, "amqp: %s", why);
    else
        hs__fail(c, HS_ERR_PROTOCOL, "amqp: %s", why);
}

/*
 * Writes proton's output: straight through TLS, or framed for WebSockets
 * into c->out first. Returns false when the connection failed.
 */
static bool hs__write(struct hs_amqp_conn *c)
{
    bool ws = c->ws != NULL;
    if (!hs__flush_out(c))
        return false;
    while (c->out.len == c->out.off) {
        pn_bytes_t wb = pn_connection_driver_write_buffer(&c->driver);
        if (wb.size == 0)
            return true;
        if (ws) {
            size_t len =
                wb.size < HS_AMQP_FRAME_MAX ? wb.size : HS_AMQP_FRAME_MAX;
            uint8_t hdr[HS_WS_MAX_HEADER], mask[4];
            uint32_t m = (uint32_t)hs_rand(&c->w->rng);
            memcpy(mask, &m, sizeof(mask));
            size_t hlen = hs_ws_header(hdr, HS_WS_BINARY, len, mask);
            size_t at = c->out.len;
            if (!hs_buf_add(&c->out, hdr, hlen) ||
                !hs_buf_add(&c->out, (const uint8_t *)wb.start, len)) {
                hs__fail(c, HS_ERR_LOCAL, "no memory for the send queue");
                return false;
            }
            hs_ws_mask(c->out.data + at + hlen, len, mask, 0);
            pn_connection_driver_write_done(&c->driver, len);
            if (!hs__flush_out(c))
                return false;
            continue;
        }
        struct hs_tls_failure f;
        size_t n = 0;
        enum hs_tls_rc rc = hs_tls_write(c->ssl, wb.start, wb.size, &n, &f);
        if (rc == HS_TLS_FAILED) {
            hs__tls_fail(c, &f);
            return false;
        }
        if (rc != HS_TLS_OK) {
            c->want_out = c->want_out || rc == HS_TLS_WANT_WRITE;
            return true;
        }
        pn_connection_driver_write_done(&c->driver, n);
    }
    return true;
}

/* Writes queued bytes (the upgrade request, frames) while TLS takes them. */
static bool hs__flush_out(struct hs_amqp_conn *c)
{
    while (c->out.len > c->out.off) {
        struct hs_tls_failure f;
        size_t n = 0;
        enum hs_tls_rc rc = hs_tls_write(c->ssl, c->out.data + c->out.off,
                                         c->out.len - c->out.off, &n, &f);
        if (rc == HS_TLS_FAILED) {
            hs__tls_fail(c, &f);
            return false;
        }
        if (rc != HS_TLS_OK)
            return true;
        c->out.off += n;
    }
    hs_buf_free(&c->out);
    return true;
}

static void hs__update_events(struct hs_amqp_conn *c)
{
    if (c->io.fd < 0)
        return;
    uint32_t want = EPOLLIN;
    bool pending = c->out.len > c->out.off;
    if (c->have_driver && c->ws == NULL &&
        pn_connection_driver_write_buffer(&c->driver).size > 0)
        pending = true;
    if (pending || c->want_out)
        want |= EPOLLOUT;
    if (want == c->events)
        return;
    int rc = hg_io_mod(&c->w->loop, &c->io, want);
    if (rc < 0) {
        hs__fail(c, HS_ERR_LOCAL, "epoll: %s", strerror(-rc));
        hs__teardown(c);
        return;
    }
    c->events = want;
}

/* proton's next deadline (heartbeats, the peer's idle limit). */
static void hs__arm_tick(struct hs_amqp_conn *c)
{
    struct hg_loop *loop = &c->w->loop;
    int64_t next = pn_transport_tick(c->driver.transport, (int64_t)loop->now);
    if (next <= 0)
        hg_timer_stop(loop, &c->timer);
    else
        hg_timer_start(loop, &c->timer,
                       (uint64_t)next > loop->now ? (uint64_t)next - loop->now
                                                  : 0);
}

/* ------------------------------------------------------------------ */
/* Failure and close                                                   */
/* ------------------------------------------------------------------ */

/*
 * Counts the connection's failure once and tears it down, now or, while
 * proton's events are being handled, right after.
 */
static void hs__fail(struct hs_amqp_conn *c, enum hs_err kind, const char *fmt,
                     ...)
{
    if (c->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_text, sizeof(c->fail_text), fmt, ap);
    va_end(ap);
    c->fail_kind = kind;
    c->failed = true;
    char who[64];
    snprintf(who, sizeof(who), "amqp connection %u.%u", c->w->id, c->number);
    hs_stats_error(&c->w->stats, kind, who, "%s", c->fail_text);
    if (!c->pumping)
        hs__teardown(c);
}

/*
 * Frees everything the connection holds. Its devices lose it: each goes
 * to back-off as after a failure of its own (its messages in flight lost),
 * or, if the connection was closing because nobody used it, nothing.
 */
static void hs__teardown(struct hs_amqp_conn *c)
{
    struct hg_loop *loop = &c->w->loop;
    hg_timer_stop(loop, &c->timer);
    enum hs_amqp_cstate was = c->state;
    c->state = HS_AMQP_DOWN;
    /* A device that came for the connection while it was closing for
     * lack of users keeps waiting: a new connection starts for it. */
    bool quiet = !c->failed;
    uint32_t kept = 0;
    struct hs_device *devs = c->w->devices + c->first;
    for (uint32_t i = 0; i < c->count && c->users > kept; i++) {
        struct hs_device *d = &devs[i];
        if (d->conn != c)
            continue;
        if (quiet && d->amqp_waiting) {
            kept++;
            continue;
        }
        d->link = NULL; /* freed with the connection below */
        hs_device_amqp_lost(d);
    }
    if (c->have_driver) {
        pn_connection_driver_destroy(&c->driver);
        c->have_driver = false;
    }
    c->session = NULL;
    c->cbs_tx = c->cbs_rx = NULL;
    if (c->ssl != NULL) {
        if (was == HS_AMQP_CLOSING && !c->failed)
            hs_tls_close(c->ssl);
        else
            SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->io.fd >= 0) {
        hg_io_del(loop, &c->io);
        close(c->io.fd);
        c->io.fd = -1;
    }
    c->events = 0;
    free(c->ws);
    c->ws = NULL;
    hs_buf_free(&c->in);
    hs_buf_free(&c->out);
    c->failed = c->ending = c->want_out = false;
    c->users = c->waiting = kept;
    if (was != HS_AMQP_DOWN)
        hs_log_debug("amqp connection %u.%u closed", c->w->id, c->number);
    if (kept > 0)
        hs__kick(c);
}

/*
 * Its last device let go: an open connection says close and waits a while
 * for the peer's; one still being set up just ends.
 */
static void hs__close(struct hs_amqp_conn *c)
{
    if (c->state != HS_AMQP_UP || !c->have_driver) {
        if (!c->pumping)
            hs__teardown(c);
        else
            c->ending = true;
        return;
    }
    c->state = HS_AMQP_CLOSING;
    if (c->session)
        pn_session_close(c->session);
    pn_connection_close(c->driver.connection);
    hg_timer_start(&c->w->loop, &c->timer, c->w->run->cfg->connect_timeout_ms);
    hs__kick(c);
}

/* The worker's device with fleet index index, if it is on c. */
static struct hs_device *hs__device(struct hs_amqp_conn *c, uint64_t index)
{
    struct hs_worker *w = c->w;
    unsigned n = w->run->cfg->threads;
    if (index % n != w->id)
        return NULL;
    uint64_t slot = index / n;
    if (slot < c->first || slot >= (uint64_t)c->first + c->count)
        return NULL;
    return &w->devices[slot];
}

/* "name: description" of an AMQP error condition, or "" when none. */
static void hs__condition(pn_condition_t *cond, char *out, size_t cap)
{
    out[0] = '\0';
    if (cond == NULL || !pn_condition_is_set(cond))
        return;
    const char *name = pn_condition_get_name(cond);
    const char *desc = pn_condition_get_description(cond);
    snprintf(out, cap, "%s%s%s", name ? name : "error", desc ? " " : "",
             desc ? desc : "");
}
