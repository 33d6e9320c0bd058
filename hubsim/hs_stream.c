#include "hs_stream.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hs_worker.h"

/*
 * The WebSocket's state: the key and the upgrade answer gathered so far
 * while upgrading, the frame decoder once upgraded. Never both at once, so
 * they share their memory.
 */
struct hs_stream_ws {
    union {
        struct {
            char key[HS_WS_KEY_LEN + 1];
            struct hs_buf answer;
        } up;
        struct hs_ws_decoder dec;
    } u;
};

static uint64_t hs__now_us(void);
static void hs__on_io(struct hg_loop *loop, struct hg_io *io, uint32_t ev);
static void hs__tcp_done(struct hs_stream *s);
static void hs__tls_step(struct hs_stream *s);
static void hs__tls_fail(struct hs_stream *s, const struct hs_tls_failure *f,
                         bool reading);
static void hs__ws_start(struct hs_stream *s);
static bool hs__ws_answer(struct hs_stream *s, const uint8_t *data, size_t len);
static bool hs__ws_input(struct hs_stream *s, const uint8_t *data, size_t len);
static bool hs__ws_control(struct hs_stream *s, enum hs_ws_opcode op,
                           const uint8_t *payload, size_t len);
static bool hs__read(struct hs_stream *s);
static bool hs__write(struct hs_stream *s, const uint8_t *data, size_t len);
static bool hs__flush(struct hs_stream *s);
static bool hs__update_events(struct hs_stream *s);
static void hs__fail(struct hs_stream *s, enum hs_err kind, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));

void hs_stream_init(struct hs_stream *s, struct hs_worker *w,
                    const struct hs_stream_ops *ops)
{
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->ops = ops;
    s->io.fd = -1;
    s->io.cb = hs__on_io;
}

int hs_stream_connect(struct hs_stream *s, const struct sockaddr_storage *src,
                      const struct hs_tls_id *id, bool ws, enum hs_err *kind,
                      const char **step)
{
    const struct hs_run *run = s->w->run;
    int one = 1, err = 0;
    s->id = id;
    s->want_ws = ws;
    s->phase = HS_STREAM_TCP;
    *step = "connect";
    int fd = socket(run->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        err = errno;
        goto failed;
    }
    s->io.fd = fd;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (src != NULL) {
        socklen_t len = src->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                   : sizeof(struct sockaddr_in);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *)src, len) < 0) {
            err = errno;
            *step = "bind";
            goto failed;
        }
    }
    if (connect(fd, (const struct sockaddr *)&run->addr, run->addr_len) < 0 &&
        errno != EINPROGRESS) {
        err = errno;
        goto failed;
    }
    s->events = EPOLLOUT;
    int rc = hg_io_add(&s->w->loop, &s->io, s->events);
    if (rc < 0) {
        *kind = HS_ERR_LOCAL;
        *step = "epoll";
    }
    return rc;
failed:
    *kind = hs_err_from_errno(err);
    return -err;
}

bool hs_stream_send(struct hs_stream *s, uint8_t *pkt, size_t len)
{
    if (s->ws == NULL)
        return hs__write(s, pkt, len);
    uint32_t m = (uint32_t)hs_rand(&s->w->rng);
    uint8_t mask[4];
    memcpy(mask, &m, sizeof(mask));
    size_t hlen = hs_ws_header_size(len, true);
    hs_ws_header(pkt - hlen, HS_WS_BINARY, len, mask);
    hs_ws_mask(pkt, len, mask, 0);
    return hs__write(s, pkt - hlen, len + hlen);
}

bool hs_stream_backlog(const struct hs_stream *s)
{
    return s->out.len > s->out.off;
}

bool hs_stream_ws_close(struct hs_stream *s, uint16_t code)
{
    if (s->ws == NULL || s->phase != HS_STREAM_UP)
        return true;
    uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return hs__ws_control(s, HS_WS_CLOSE, payload, sizeof(payload));
}

void hs_stream_closing(struct hs_stream *s)
{
    s->closing = true;
}

void hs_stream_expired(struct hs_stream *s, uint64_t limit_ms)
{
    if (s->phase == HS_STREAM_TCP)
        hs__fail(s, HS_ERR_TCP_TIMEOUT, "no TCP connection in %" PRIu64 " ms",
                 limit_ms);
    else
        hs__fail(s, HS_ERR_TIMEOUT, "%s for more than %" PRIu64 " ms",
                 hs_stream_phase_name(s), limit_ms);
}

const char *hs_stream_phase_name(const struct hs_stream *s)
{
    switch (s->phase) {
    case HS_STREAM_TCP:
        return "tcp connect";
    case HS_STREAM_TLS:
        return "tls handshake";
    case HS_STREAM_WS:
        return "websocket upgrade";
    default:
        return "";
    }
}

void hs_stream_close(struct hs_stream *s, bool graceful)
{
    if (s->ssl != NULL) {
        if (graceful)
            hs_tls_close(s->ssl);
        else
            SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->io.fd >= 0) {
        hg_io_del(&s->w->loop, &s->io);
        close(s->io.fd);
        s->io.fd = -1;
    }
    s->events = 0;
    hs_buf_free(&s->out);
    if (s->ws != NULL && s->phase == HS_STREAM_WS)
        hs_buf_free(&s->ws->u.up.answer);
    free(s->ws);
    s->ws = NULL;
    s->phase = HS_STREAM_DOWN;
    s->want_out = s->closing = false;
}

static uint64_t hs__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ */
/* Setting up: TCP, TLS, WebSocket                                     */
/* ------------------------------------------------------------------ */

static void hs__tcp_done(struct hs_stream *s)
{
    const struct hs_run *run = s->w->run;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(s->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0) {
        hs__fail(s, hs_err_from_errno(err), "connect: %s", strerror(err));
        return;
    }
    s->t_tcp_us = hs__now_us();
    s->ssl = hs_tls_new(run->tls, s->io.fd, run->cfg->hub, s->id);
    if (s->ssl == NULL) {
        hs__fail(s, HS_ERR_LOCAL, "no memory for TLS");
        return;
    }
    s->phase = HS_STREAM_TLS;
    hs__tls_step(s);
}

static void hs__tls_step(struct hs_stream *s)
{
    struct hs_tls_failure f;
    struct hs_stats *st = &s->w->stats;
    switch (hs_tls_handshake(s->ssl, &f)) {
    case HS_TLS_OK:
        s->want_out = false;
        hs_stats_latency(st, &st->tls_all, hs__now_us() - s->t_tcp_us);
        if (s->want_ws) {
            hs__ws_start(s);
            return;
        }
        s->phase = HS_STREAM_UP;
        s->ops->up(s);
        return;
    case HS_TLS_WANT_READ:
        s->want_out = false;
        hs__update_events(s);
        return;
    case HS_TLS_WANT_WRITE:
        s->want_out = true;
        hs__update_events(s);
        return;
    case HS_TLS_FAILED:
        hs__tls_fail(s, &f, false);
        return;
    }
}

/*
 * A TLS failure, counted by what it was: a close is a TLS failure in the
 * handshake and the hub closing a working connection after. Reading after
 * the owner's goodbye, any failure is the peer's end.
 */
static void hs__tls_fail(struct hs_stream *s, const struct hs_tls_failure *f,
                         bool reading)
{
    enum hs_err kind = HS_ERR_TLS;
    if (reading && s->closing) {
        s->ops->closed(s);
        return;
    }
    switch (f->kind) {
    case HS_TLS_F_VERIFY:
        kind = HS_ERR_TLS_VERIFY;
        break;
    case HS_TLS_F_PROTO:
        kind = HS_ERR_TLS;
        break;
    case HS_TLS_F_CLOSED:
        /* A server that is no WebSocket server closes at the upgrade. */
        kind = s->phase == HS_STREAM_TLS  ? HS_ERR_TLS
               : s->phase == HS_STREAM_WS ? HS_ERR_WS
                                          : HS_ERR_CLOSED;
        break;
    case HS_TLS_F_RESET:
        kind = hs_err_from_errno(f->errno_value);
        break;
    }
    s->ops->fail(s, kind, f->reason, f);
}

/* Sends the upgrade request; its answer comes through hs__ws_answer. */
static void hs__ws_start(struct hs_stream *s)
{
    const struct hs_config *cfg = s->w->run->cfg;
    uint8_t nonce[16];
    uint64_t r[2] = {hs_rand(&s->w->rng), hs_rand(&s->w->rng)};
    memcpy(nonce, r, sizeof(nonce));
    s->phase = HS_STREAM_WS;
    s->ws = calloc(1, sizeof(*s->ws));
    if (s->ws == NULL) {
        hs__fail(s, HS_ERR_LOCAL, "no memory for the WebSocket");
        return;
    }
    hs_ws_key(nonce, s->ws->u.up.key);
    char *req = (char *)s->w->wbuf;
    size_t n = hs_ws_request(req, HS_WBUF_SIZE, cfg->hub, cfg->ws_path,
                             s->ws->u.up.key, s->ops->ws_protocol);
    if (n == 0) {
        hs__fail(s, HS_ERR_LOCAL, "cannot build the upgrade request");
        return;
    }
    hs__write(s, (const uint8_t *)req, n);
}

/*
 * Gathers the upgrade answer and looks at it. Once it is whole, the stream
 * is up, and whatever followed the answer's head is frame data.
 */
static bool hs__ws_answer(struct hs_stream *s, const uint8_t *data, size_t len)
{
    struct hs_buf *in = &s->ws->u.up.answer;
    size_t used = 0;
    int status = 0;
    const char *why = NULL;
    if (!hs_buf_add(in, data, len)) {
        hs__fail(s, HS_ERR_LOCAL, "no memory for input");
        return false;
    }
    if (in->len - in->off > HS_WS_RESPONSE_MAX + HS_RBUF_SIZE) {
        hs__fail(s, HS_ERR_WS, "upgrade: answer too long");
        return false;
    }
    enum hs_ws_rc rc = hs_ws_response(
        (const char *)in->data + in->off, in->len - in->off, s->ws->u.up.key,
        s->ops->ws_protocol, &used, &status, &why);
    if (rc == HS_WS_AGAIN)
        return true;
    if (rc == HS_WS_ERROR) {
        if (status != 0 && status != 101)
            hs__fail(s, HS_ERR_WS, "upgrade: HTTP %d", status);
        else
            hs__fail(s, HS_ERR_WS, "upgrade: %s", why);
        return false;
    }
    /* The decoder takes the answer's place: keep the rest aside first. */
    struct hs_buf rest = *in;
    rest.off += used;
    hs_ws_decoder_init(&s->ws->u.dec);
    s->phase = HS_STREAM_UP;
    bool alive = s->ops->up(s);
    if (alive && rest.len > rest.off)
        alive = hs__ws_input(s, rest.data + rest.off, rest.len - rest.off);
    hs_buf_free(&rest);
    return alive;
}

/* WebSocket frames from the peer: their payload is the owner's. */
static bool hs__ws_input(struct hs_stream *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        struct hs_ws_event ev;
        size_t used = 0;
        const char *why = NULL;
        enum hs_ws_rc rc = hs_ws_decode(&s->ws->u.dec, data + off, len - off,
                                        &used, &ev, &why);
        off += used;
        if (rc == HS_WS_ERROR) {
            hs__fail(s, HS_ERR_WS, "%s", why);
            return false;
        }
        if (rc == HS_WS_AGAIN)
            break;
        if (ev.type == HS_WS_EV_DATA && !s->ops->input(s, ev.data, ev.len))
            return false;
        if (ev.type == HS_WS_EV_PING &&
            !hs__ws_control(s, HS_WS_PONG, ev.data, ev.len))
            return false;
        if (ev.type == HS_WS_EV_CLOSE) {
            if (s->closing)
                s->ops->closed(s);
            else
                hs__fail(s, HS_ERR_WS, "the server closed the WebSocket (%u)",
                         ev.close_code);
            return false;
        }
    }
    return true;
}

/* Sends a control frame (a PONG, a CLOSE) with its payload. */
static bool hs__ws_control(struct hs_stream *s, enum hs_ws_opcode op,
                           const uint8_t *payload, size_t len)
{
    uint8_t frame[HS_WS_MAX_HEADER + HS_WS_CONTROL_MAX], mask[4];
    uint32_t m = (uint32_t)hs_rand(&s->w->rng);
    memcpy(mask, &m, sizeof(mask));
    size_t n = hs_ws_frame(frame, sizeof(frame), op, payload, len, mask);
    return hs__write(s, frame, n);
}

/* ------------------------------------------------------------------ */
/* Events and I/O                                                      */
/* ------------------------------------------------------------------ */

static void hs__on_io(struct hg_loop *loop, struct hg_io *io, uint32_t ev)
{
    struct hs_stream *s = hg_container_of(io, struct hs_stream, io);
    (void)loop;
    switch (s->phase) {
    case HS_STREAM_TCP:
        hs__tcp_done(s);
        return;
    case HS_STREAM_TLS:
        hs__tls_step(s);
        return;
    case HS_STREAM_WS:
    case HS_STREAM_UP:
        if ((ev & EPOLLOUT) && hs_stream_backlog(s) && !hs__flush(s))
            return;
        if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP) || s->want_out) &&
            !hs__read(s))
            return;
        if (s->ops->io != NULL && !s->ops->io(s))
            return;
        hs__update_events(s);
        return;
    default:
        return; /* a stale event for a stream already closed */
    }
}

/*
 * Reads until the socket is empty, handing each piece on: to the upgrade
 * answer, the frame decoder, or the owner. Returns false when the stream
 * failed or its owner closed it.
 */
static bool hs__read(struct hs_stream *s)
{
    uint8_t *buf = s->w->rbuf;
    for (;;) {
        struct hs_tls_failure f;
        size_t n = 0;
        bool alive;
        enum hs_tls_rc rc = hs_tls_read(s->ssl, buf, HS_RBUF_SIZE, &n, &f);
        if (rc == HS_TLS_FAILED) {
            hs__tls_fail(s, &f, true);
            return false;
        }
        if (rc != HS_TLS_OK) {
            s->want_out = rc == HS_TLS_WANT_WRITE;
            return true;
        }
        if (s->phase == HS_STREAM_WS)
            alive = hs__ws_answer(s, buf, n);
        else if (s->ws != NULL)
            alive = hs__ws_input(s, buf, n);
        else
            alive = s->ops->input(s, buf, n);
        if (!alive)
            return false;
    }
}

/*
 * Writes data, or queues what TLS does not take now behind what is
 * already queued. Returns false when the stream failed.
 */
static bool hs__write(struct hs_stream *s, const uint8_t *data, size_t len)
{
    size_t off = 0;
    s->last_send = s->w->loop.now;
    while (!hs_stream_backlog(s) && off < len) {
        struct hs_tls_failure f;
        size_t n = 0;
        enum hs_tls_rc rc = hs_tls_write(s->ssl, data + off, len - off, &n, &f);
        if (rc == HS_TLS_FAILED) {
            hs__tls_fail(s, &f, false);
            return false;
        }
        if (rc != HS_TLS_OK)
            break;
        off += n;
    }
    if (off < len && !hs_buf_add(&s->out, data + off, len - off)) {
        hs__fail(s, HS_ERR_LOCAL, "no memory for the send queue");
        return false;
    }
    return hs__update_events(s);
}

/* Writes queued bytes while TLS takes them. */
static bool hs__flush(struct hs_stream *s)
{
    while (hs_stream_backlog(s)) {
        struct hs_tls_failure f;
        size_t n = 0;
        enum hs_tls_rc rc = hs_tls_write(s->ssl, s->out.data + s->out.off,
                                         s->out.len - s->out.off, &n, &f);
        if (rc == HS_TLS_FAILED) {
            hs__tls_fail(s, &f, false);
            return false;
        }
        if (rc != HS_TLS_OK)
            break;
        s->out.off += n;
    }
    if (s->out.off == s->out.len)
        hs_buf_free(&s->out);
    return true;
}

/* Registers for what the stream waits on. Returns false when it failed. */
static bool hs__update_events(struct hs_stream *s)
{
    uint32_t want = EPOLLIN;
    if (s->io.fd < 0)
        return true;
    if (hs_stream_backlog(s) || s->want_out)
        want |= EPOLLOUT;
    if (want == s->events)
        return true;
    int rc = hg_io_mod(&s->w->loop, &s->io, want);
    if (rc < 0) {
        hs__fail(s, HS_ERR_LOCAL, "epoll: %s", strerror(-rc));
        return false;
    }
    s->events = want;
    return true;
}

static void hs__fail(struct hs_stream *s, enum hs_err kind, const char *fmt,
                     ...)
{
    char text[HS_SAMPLE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    s->ops->fail(s, kind, text, NULL);
}
