#include "hs_amqp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
#include "hs_worker.h"

#define HS_AMQP_WS_PROTOCOL  "AMQPWSB10"
#define HS_AMQP_FRAME_MAX    (64 * 1024) /* WebSocket frame, AMQP out */
#define HS_AMQP_CBS_CREDIT   64
#define HS_AMQP_PASSWORD_MAX 2048

static void hs__kick(struct hs_amqp_conn *c);
static void hs__on_defer(struct hg_loop *loop, struct hg_defer *defer);
static void hs__on_timer(struct hg_loop *loop, struct hg_timer *t);
static void hs__start(struct hs_amqp_conn *c);
static bool hs__stream_up(struct hs_stream *s);
static bool hs__stream_input(struct hs_stream *s, const uint8_t *data,
                             size_t len);
static bool hs__stream_io(struct hs_stream *s);
static void hs__stream_fail(struct hs_stream *s, enum hs_err kind,
                            const char *text, const struct hs_tls_failure *tls);
static void hs__stream_closed(struct hs_stream *s);
static void hs__up(struct hs_amqp_conn *c);
static void hs__begin_waiting(struct hs_amqp_conn *c);
static void hs__begin(struct hs_amqp_conn *c, struct hs_device *d);
static void hs__open_sender(struct hs_amqp_conn *c, struct hs_device *d);
static void hs__feed(struct hs_amqp_conn *c, const uint8_t *data, size_t len);
static void hs__pump(struct hs_amqp_conn *c);
static void hs__event(struct hs_amqp_conn *c, pn_event_t *e);
static void hs__on_link_open(struct hs_amqp_conn *c, pn_link_t *l);
static void hs__on_link_close(struct hs_amqp_conn *c, pn_link_t *l);
static void hs__on_delivery(struct hs_amqp_conn *c, pn_delivery_t *dlv);
static void hs__on_cbs_reply(struct hs_amqp_conn *c, pn_delivery_t *dlv);
static void hs__on_transport_error(struct hs_amqp_conn *c);
static bool hs__write(struct hs_amqp_conn *c);
static void hs__arm_tick(struct hs_amqp_conn *c);
static void hs__fail(struct hs_amqp_conn *c, enum hs_err kind, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
static void hs__teardown(struct hs_amqp_conn *c);
static void hs__close(struct hs_amqp_conn *c);
static struct hs_device *hs__device(struct hs_amqp_conn *c, uint64_t index);
static void hs__condition(pn_condition_t *cond, char *out, size_t cap);

/* What a connection's stream tells it. */
static const struct hs_stream_ops hs__stream_ops = {
    .ws_protocol = HS_AMQP_WS_PROTOCOL,
    .up = hs__stream_up,
    .input = hs__stream_input,
    .io = hs__stream_io,
    .fail = hs__stream_fail,
    .closed = hs__stream_closed,
};

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
        hs_stream_init(&c->stream, w, &hs__stream_ops);
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
    const struct hs_config *cfg = c->w->run->cfg;
    const char *step = NULL;
    enum hs_err kind = HS_ERR_LOCAL;
    hg_timer_start(&c->w->loop, &c->timer, cfg->connect_timeout_ms);
    c->state = HS_AMQP_STREAM;
    const struct sockaddr_storage *src =
        cfg->nbinds > 0 ? &cfg->binds[(c->w->id + c->number) % cfg->nbinds]
                        : NULL;
    int rc = hs_stream_connect(&c->stream, src, NULL,
                               cfg->protocol == HS_PROTO_AMQP_WS, &kind, &step);
    if (rc < 0)
        hs__fail(c, kind, "%s: %s", step, strerror(-rc));
}

static bool hs__stream_up(struct hs_stream *s)
{
    struct hs_amqp_conn *c = hg_container_of(s, struct hs_amqp_conn, stream);
    hs__up(c);
    return c->state == HS_AMQP_UP;
}

static bool hs__stream_input(struct hs_stream *s, const uint8_t *data,
                             size_t len)
{
    struct hs_amqp_conn *c = hg_container_of(s, struct hs_amqp_conn, stream);
    hs__feed(c, data, len);
    return !c->failed && c->state != HS_AMQP_DOWN;
}

/* After the stream's reads and writes: proton's events and output. */
static bool hs__stream_io(struct hs_stream *s)
{
    struct hs_amqp_conn *c = hg_container_of(s, struct hs_amqp_conn, stream);
    if (c->state >= HS_AMQP_UP)
        hs__pump(c);
    return c->state != HS_AMQP_DOWN;
}

/* Counts the stream's failure; a close in TLS by where it hit. */
static void hs__stream_fail(struct hs_stream *s, enum hs_err kind,
                            const char *text, const struct hs_tls_failure *tls)
{
    struct hs_amqp_conn *c = hg_container_of(s, struct hs_amqp_conn, stream);
    if (tls != NULL && tls->kind == HS_TLS_F_CLOSED)
        hs__fail(c, kind, "%s: %s",
                 s->phase == HS_STREAM_TLS ? "tls handshake" : "amqp", text);
    else
        hs__fail(c, kind, "%s", text);
}

/* The peer hung up after our close: the end we waited for. */
static void hs__stream_closed(struct hs_stream *s)
{
    hs__teardown(hg_container_of(s, struct hs_amqp_conn, stream));
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

static void hs__on_timer(struct hg_loop *loop, struct hg_timer *t)
{
    struct hs_amqp_conn *c = hg_container_of(t, struct hs_amqp_conn, timer);
    const struct hs_config *cfg = c->w->run->cfg;
    switch (c->state) {
    case HS_AMQP_STREAM:
        hs_stream_expired(&c->stream, cfg->connect_timeout_ms);
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
 * Hands proton's output to the stream, a frame's worth at a time, until
 * it is all out or the stream queues some (the rest waits in proton until
 * the socket takes more). Returns false when the connection failed.
 */
static bool hs__write(struct hs_amqp_conn *c)
{
    uint8_t *pkt = c->w->wbuf + HS_STREAM_HEADROOM;
    while (!hs_stream_backlog(&c->stream)) {
        pn_bytes_t wb = pn_connection_driver_write_buffer(&c->driver);
        if (wb.size == 0)
            return true;
        size_t len = wb.size < HS_AMQP_FRAME_MAX ? wb.size : HS_AMQP_FRAME_MAX;
        memcpy(pkt, wb.start, len);
        if (!hs_stream_send(&c->stream, pkt, len))
            return false;
        pn_connection_driver_write_done(&c->driver, len);
    }
    return true;
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
    hs_stream_close(&c->stream, was == HS_AMQP_CLOSING && !c->failed);
    c->failed = c->ending = false;
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
    hs_stream_closing(&c->stream);
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
