#include "hs_device.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hs_amqp.h"
#include "hs_log.h"
#include "hs_mqtt.h"
#include "hs_sas.h"
#include "hs_tls.h"

#define HS_HEADROOM       HS_STREAM_HEADROOM /* before a packet */
#define HS_MQTT_IN_MAX    (1024 * 1024)      /* largest packet accepted */
#define HS_PASSWORD_MAX   2048
#define HS_RENEW_DRAIN_MS 5000 /* longest wait for PUBACKs before renewing */

static const char *const hs__state_names[] = {
    "idle",
    "connecting", /* the stream's phase names it better */
    "waiting for the AMQP connection",
    "waiting for the put-token status",
    "waiting for the link attach",
    "waiting for CONNACK",
    "waiting for SUBACK",
    "publishing",
    "draining",
    "done",
};

static uint64_t hs__now_us(void);
static void hs__set_state(struct hs_device *d, enum hs_dev_state s);
static const char *hs__phase_name(const struct hs_device *d);
static void hs__connect(struct hs_device *d);
static void hs__on_timer(struct hg_loop *loop, struct hg_timer *t);
static void hs__on_ka(struct hg_loop *loop, struct hg_timer *t);
static bool hs__stream_up(struct hs_stream *s);
static bool hs__stream_input(struct hs_stream *s, const uint8_t *data,
                             size_t len);
static void hs__stream_fail(struct hs_stream *s, enum hs_err kind,
                            const char *text, const struct hs_tls_failure *tls);
static bool hs__mqtt_start(struct hs_device *d);
static bool hs__send(struct hs_device *d, uint8_t *pkt, size_t len);
static bool hs__mqtt_input(struct hs_device *d, const uint8_t *data,
                           size_t len);
static bool hs__mqtt_packets(struct hs_device *d, const uint8_t *buf,
                             size_t len, size_t *used);
static bool hs__packet(struct hs_device *d, const struct hs_mqtt_packet *p);
static bool hs__on_connack(struct hs_device *d,
                           const struct hs_mqtt_connack *c);
static void hs__proven(struct hs_device *d);
static bool hs__on_suback(struct hs_device *d, const struct hs_mqtt_suback *s);
static bool hs__on_puback(struct hs_device *d, uint16_t id);
static bool hs__acked(struct hs_device *d, uint32_t i, bool accepted);
static void hs__connected(struct hs_device *d);
static bool hs__amqp(const struct hs_device *d);
static bool hs__on_c2d(struct hs_device *d, const struct hs_mqtt_publish *p);
static bool hs__run_start(struct hs_device *d);
static void hs__skip_missed(struct hs_device *d, uint64_t now);
static void hs__publish_due(struct hs_device *d);
static bool hs__publish(struct hs_device *d);
static bool hs__publish_amqp(struct hs_device *d, const uint8_t *payload,
                             size_t len);
static uint16_t hs__next_id(struct hs_device *d);
static bool hs__resend(struct hs_device *d);
static void hs__drain(struct hs_device *d);
static void hs__finish(struct hs_device *d);
static bool hs__goodbye(struct hs_device *d);
static void hs__renew_plan(struct hs_device *d, uint64_t now_s);
static void hs__renew(struct hs_device *d);
static void hs__renew_now(struct hs_device *d);
static void hs__fail(struct hs_device *d, enum hs_err kind, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
static void hs__drop(struct hs_device *d, bool graceful);
static void hs__after_drop(struct hs_device *d, bool failed);
static void hs__ka_arm(struct hs_device *d);

/* What the device's own stream (MQTT) tells it. */
static const struct hs_stream_ops hs__stream_ops = {
    .ws_protocol = "mqtt",
    .up = hs__stream_up,
    .input = hs__stream_input,
    .fail = hs__stream_fail,
};

/* ------------------------------------------------------------------ */
/* Life cycle                                                          */
/* ------------------------------------------------------------------ */

/* The messages in flight will never be acknowledged: counted lost. */
static void hs__inflight_lost(struct hs_device *d)
{
    hs_stat_add(&d->w->stats.lost, d->ninflight);
    for (uint32_t i = 0; i < d->ninflight; i++)
        free(d->inflight[i].pkt);
    d->ninflight = 0;
}

int hs_device_init(struct hs_device *d, struct hs_worker *w, const char *id,
                   uint32_t index)
{
    memset(d, 0, sizeof(*d));
    d->w = w;
    d->id = id;
    d->index = index;
    hs_stream_init(&d->stream, w, &hs__stream_ops);
    d->timer.cb = hs__on_timer;
    d->ka.cb = hs__on_ka;
    d->next_id = 1;
    if (w->run->cfg->qos > 0) {
        d->inflight = calloc(w->run->cfg->inflight, sizeof(*d->inflight));
        if (d->inflight == NULL)
            return -ENOMEM;
    }
    return 0;
}

void hs_device_deinit(struct hs_device *d)
{
    if (d->stream.io.fd >= 0 || d->conn != NULL)
        hs__drop(d, false);
    for (uint32_t i = 0; i < d->ninflight; i++)
        free(d->inflight[i].pkt);
    free(d->inflight);
    d->inflight = NULL;
}

void hs_device_start(struct hs_device *d)
{
    if (d->state == HS_DEV_IDLE && !hg_timer_active(&d->timer))
        hs__connect(d);
}

/*
 * DRAIN: devices not yet connected stop; publishing ones wait for their
 * last PUBACKs. STOP: every connection closes now.
 */
void hs_device_phase(struct hs_device *d, enum hs_phase phase)
{
    if (d->state == HS_DEV_DONE)
        return;
    if (phase == HS_PHASE_DRAIN && d->state == HS_DEV_RUN) {
        hs__drain(d);
        return;
    }
    if (phase == HS_PHASE_DRAIN && d->state == HS_DEV_DRAIN)
        return;
    hs__drop(d, d->state >= HS_DEV_SUB);
    hs__set_state(d, HS_DEV_DONE);
}

bool hs_device_storm(struct hs_device *d)
{
    if (d->state < HS_DEV_STREAM || d->state > HS_DEV_DRAIN)
        return false;
    d->storm_hit = true;
    hs_stat_add(&d->w->stats.storm_drops, 1);
    hs__drop(d, false);
    hs__after_drop(d, false); /* not a failure: no step toward giving up */
    return true;
}

const char *hs_device_password(const struct hs_config *cfg,
                               const char *device_id, uint64_t now_s, char *buf,
                               size_t cap)
{
    char resource[512];
    uint8_t derived[32];
    const uint8_t *key = cfg->key;
    size_t key_len = cfg->key_len;
    if (cfg->auth == HS_AUTH_NONE)
        return NULL;
    if (cfg->auth == HS_AUTH_TOKEN)
        return cfg->token;
    if (cfg->auth == HS_AUTH_GROUP_KEY) {
        hs_sas_derive(cfg->key, cfg->key_len, device_id, derived);
        key = derived;
        key_len = sizeof(derived);
    }
    snprintf(resource, sizeof(resource), "%s/devices/%s", cfg->hub, device_id);
    uint64_t expiry =
        cfg->sas_expiry ? cfg->sas_expiry : now_s + cfg->sas_ttl_s;
    const char *policy = cfg->auth == HS_AUTH_POLICY ? cfg->policy : NULL;
    if (hs_sas_token(buf, cap, resource, key, key_len, policy, expiry) >= cap)
        return NULL;
    return buf;
}

static uint64_t hs__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Moves to state s, keeping the worker's gauges in step. */
static void hs__set_state(struct hs_device *d, enum hs_dev_state s)
{
    struct hs_stats *st = &d->w->stats;
    enum hs_dev_state old = d->state;
    bool was_conn = old >= HS_DEV_STREAM && old <= HS_DEV_MQTT;
    bool is_conn = s >= HS_DEV_STREAM && s <= HS_DEV_MQTT;
    bool was_up = old >= HS_DEV_SUB && old <= HS_DEV_DRAIN;
    bool is_up = s >= HS_DEV_SUB && s <= HS_DEV_DRAIN;
    if (was_conn != is_conn)
        (is_conn ? hs_stat_add : hs_stat_sub)(&st->connecting, 1);
    if (was_up != is_up) {
        (is_up ? hs_stat_add : hs_stat_sub)(&st->connected, 1);
        hs_stats_up(is_up ? 1 : -1);
    }
    d->state = s;
    if (s == HS_DEV_DONE && old != HS_DEV_DONE) {
        /* Messages kept to re-send will never go now. */
        hs__inflight_lost(d);
        hg_timer_stop(&d->w->loop, &d->timer);
        hg_timer_stop(&d->w->loop, &d->ka);
        hs_stat_add(&st->finished, 1);
        hs_worker_device_done(d->w);
    }
}

/* ------------------------------------------------------------------ */
/* Connecting: the stream (TCP, TLS, WebSocket), then CONNECT          */
/* ------------------------------------------------------------------ */

/* The name of the phase d is in, for errors. */
static const char *hs__phase_name(const struct hs_device *d)
{
    if (d->state == HS_DEV_STREAM)
        return hs_stream_phase_name(&d->stream);
    return hs__state_names[d->state];
}

static void hs__connect(struct hs_device *d)
{
    const struct hs_run *run = d->w->run;
    const struct hs_config *cfg = run->cfg;
    const char *step = NULL;
    enum hs_err kind = HS_ERR_LOCAL;
    hs_stat_add(&d->w->stats.attempts, 1);
    hs__set_state(d, HS_DEV_STREAM);
    d->t_start_us = hs__now_us();
    hg_timer_start(&d->w->loop, &d->timer, cfg->connect_timeout_ms);
    if (hs__amqp(d)) {
        hs__set_state(d, HS_DEV_POOL);
        hs_amqp_device_open(d);
        return;
    }
    const struct sockaddr_storage *src =
        cfg->nbinds > 0 ? &cfg->binds[d->index % cfg->nbinds] : NULL;
    int rc = hs_stream_connect(&d->stream, src,
                               run->ids ? &run->ids[d->index] : NULL,
                               cfg->protocol == HS_PROTO_MQTT_WS, &kind, &step);
    if (rc < 0) /* a device calls a failed bind a failed connect */
        hs__fail(d, kind, "%s: %s", strcmp(step, "bind") ? step : "connect",
                 strerror(-rc));
}

static bool hs__stream_up(struct hs_stream *s)
{
    return hs__mqtt_start(hg_container_of(s, struct hs_device, stream));
}

static bool hs__stream_input(struct hs_stream *s, const uint8_t *data,
                             size_t len)
{
    return hs__mqtt_input(hg_container_of(s, struct hs_device, stream), data,
                          len);
}

/*
 * Counts the stream's failure; a TLS one by what it was and the phase it
 * hit, and a refusal of a client certificate the hub asked for and did not
 * get (seen as the first failure after the handshake) as a TLS failure.
 */
static void hs__stream_fail(struct hs_stream *s, enum hs_err kind,
                            const char *text, const struct hs_tls_failure *tls)
{
    struct hs_device *d = hg_container_of(s, struct hs_device, stream);
    const char *phase = hs__phase_name(d);
    if (tls == NULL) {
        hs__fail(d, kind, "%s", text);
        return;
    }
    if ((s->phase == HS_STREAM_WS || d->state == HS_DEV_MQTT) &&
        hs_tls_cert_missing(s->ssl)) {
        hs__fail(d, HS_ERR_TLS,
                 "%s: %s (the hub asked for a client certificate and none "
                 "was given)",
                 phase, text);
        return;
    }
    if (tls->kind == HS_TLS_F_VERIFY)
        hs__fail(d, kind, "%s", text);
    else
        hs__fail(d, kind, "%s: %s", phase, text);
}

static bool hs__mqtt_start(struct hs_device *d)
{
    const struct hs_config *cfg = d->w->run->cfg;
    char user[HS_DEVICE_ID_MAX + 300], pass[HS_PASSWORD_MAX];
    uint64_t now_s = (uint64_t)time(NULL);
    snprintf(user, sizeof(user), "%s/%s/?api-version=%s", cfg->hub, d->id,
             HS_API_VERSION);
    struct hs_mqtt_connect c = {
        .client_id = hs_mqtt_cstr(d->id),
        .username = hs_mqtt_cstr(user),
        .password = hs_mqtt_cstr(
            hs_device_password(cfg, d->id, now_s, pass, sizeof(pass))),
        .keepalive = (uint16_t)cfg->keepalive_s,
        .clean_session = cfg->clean_session,
    };
    uint8_t *pkt = d->w->wbuf + HS_HEADROOM;
    size_t n = hs_mqtt_connect_encode(pkt, HS_WBUF_SIZE - HS_HEADROOM, &c);
    hs__renew_plan(d, now_s);
    hs__set_state(d, HS_DEV_MQTT);
    return hs__send(d, pkt, n);
}

/* ------------------------------------------------------------------ */
/* Events and I/O                                                      */
/* ------------------------------------------------------------------ */

static void hs__on_timer(struct hg_loop *loop, struct hg_timer *t)
{
    struct hs_device *d = hg_container_of(t, struct hs_device, timer);
    const struct hs_config *cfg = d->w->run->cfg;
    (void)loop;
    switch (d->state) {
    case HS_DEV_IDLE:
        hs__connect(d);
        return;
    case HS_DEV_STREAM:
        hs_stream_expired(&d->stream, cfg->connect_timeout_ms);
        return;
    case HS_DEV_POOL:
    case HS_DEV_CBS:
    case HS_DEV_LINK:
    case HS_DEV_MQTT:
    case HS_DEV_SUB:
        hs__fail(d, HS_ERR_TIMEOUT, "%s for more than %" PRIu64 " ms",
                 hs__state_names[d->state], cfg->connect_timeout_ms);
        return;
    case HS_DEV_RUN:
        hs__publish_due(d);
        return;
    case HS_DEV_DRAIN:
        if (d->renewing) /* PUBACKs did not all come in time */
            hs__renew_now(d);
        return;
    default:
        return;
    }
}

/* Keep-alive and the PUBACK and PINGRESP deadlines. */
static void hs__on_ka(struct hg_loop *loop, struct hg_timer *t)
{
    struct hs_device *d = hg_container_of(t, struct hs_device, ka);
    const struct hs_config *cfg = d->w->run->cfg;
    uint64_t now_us = hs__now_us(), limit_us = cfg->ack_timeout_ms * 1000;
    if (d->renew_at && d->state == HS_DEV_RUN && loop->now >= d->renew_at) {
        hs__renew(d);
        return;
    }
    if (d->ping_out && loop->now >= d->ping_sent + cfg->ack_timeout_ms) {
        hs__fail(d, HS_ERR_PING_TIMEOUT, "no PINGRESP in %" PRIu64 " ms",
                 cfg->ack_timeout_ms);
        return;
    }
    for (uint32_t i = 0; d->state >= HS_DEV_RUN && i < d->ninflight; i++) {
        if (now_us - d->inflight[i].sent_us >= limit_us) {
            hs__fail(d, HS_ERR_ACK_TIMEOUT, "no PUBACK in %" PRIu64 " ms",
                     cfg->ack_timeout_ms);
            return;
        }
    }
    if (cfg->keepalive_s && !d->ping_out && !hs__amqp(d) &&
        loop->now >= d->stream.last_send + cfg->keepalive_s * 1000ull) {
        uint8_t *pkt = d->w->wbuf + HS_HEADROOM;
        size_t n = hs_mqtt_empty_encode(pkt, 2, HS_MQTT_PINGREQ);
        d->ping_out = true;
        d->ping_sent = loop->now;
        if (!hs__send(d, pkt, n))
            return;
    }
    hs__ka_arm(d);
}

/* Arms the keep-alive timer for the earliest deadline that applies. */
static void hs__ka_arm(struct hs_device *d)
{
    const struct hs_config *cfg = d->w->run->cfg;
    struct hg_loop *loop = &d->w->loop;
    uint64_t next = UINT64_MAX;
    if (d->state < HS_DEV_SUB || d->state > HS_DEV_DRAIN)
        return;
    if (d->ping_out)
        next = d->ping_sent + cfg->ack_timeout_ms;
    else if (cfg->keepalive_s && !hs__amqp(d))
        next = d->stream.last_send + cfg->keepalive_s * 1000ull;
    if (d->renew_at && d->state == HS_DEV_RUN && d->renew_at < next)
        next = d->renew_at;
    /* Messages kept from a dropped connection count once re-sent. */
    if (d->ninflight > 0 && d->state >= HS_DEV_RUN) {
        uint64_t oldest = d->inflight[0].sent_us, now_us = hs__now_us();
        for (uint32_t i = 1; i < d->ninflight; i++)
            if (d->inflight[i].sent_us < oldest)
                oldest = d->inflight[i].sent_us;
        uint64_t age_ms = (now_us - oldest) / 1000;
        uint64_t left =
            age_ms < cfg->ack_timeout_ms ? cfg->ack_timeout_ms - age_ms : 0;
        if (loop->now + left < next)
            next = loop->now + left;
    }
    if (next == UINT64_MAX)
        hg_timer_stop(loop, &d->ka);
    else
        hg_timer_start(loop, &d->ka, next > loop->now ? next - loop->now : 0);
}

/*
 * Sends one MQTT packet; pkt must have HS_HEADROOM bytes free before it
 * (see hs_stream_send). Returns false when the device failed.
 */
static bool hs__send(struct hs_device *d, uint8_t *pkt, size_t len)
{
    return hs_stream_send(&d->stream, pkt, len);
}

/*
 * Decodes MQTT packets from data, straight from the read buffer when no
 * partial packet is waiting, and keeps any incomplete tail.
 */
static bool hs__mqtt_input(struct hs_device *d, const uint8_t *data, size_t len)
{
    size_t used = 0;
    if (d->in.len == d->in.off) {
        if (!hs__mqtt_packets(d, data, len, &used))
            return false;
        if (used < len && !hs_buf_add(&d->in, data + used, len - used)) {
            hs__fail(d, HS_ERR_LOCAL, "no memory for input");
            return false;
        }
        return true;
    }
    if (!hs_buf_add(&d->in, data, len)) {
        hs__fail(d, HS_ERR_LOCAL, "no memory for input");
        return false;
    }
    if (!hs__mqtt_packets(d, d->in.data + d->in.off, d->in.len - d->in.off,
                          &used))
        return false;
    d->in.off += used;
    if (d->in.off == d->in.len)
        hs_buf_free(&d->in);
    return true;
}

/* Handles every whole packet in buf; *used says how far that got. */
static bool hs__mqtt_packets(struct hs_device *d, const uint8_t *buf,
                             size_t len, size_t *used)
{
    size_t off = 0;
    while (off < len) {
        struct hs_mqtt_packet p;
        size_t n = 0;
        const char *why = NULL;
        enum hs_mqtt_rc rc =
            hs_mqtt_decode(buf + off, len - off, HS_MQTT_IN_MAX, &p, &n, &why);
        if (rc == HS_MQTT_AGAIN)
            break;
        if (rc == HS_MQTT_ERROR) {
            hs__fail(d, HS_ERR_PROTOCOL, "bad packet from the hub: %s", why);
            return false;
        }
        off += n;
        if (!hs__packet(d, &p))
            return false;
    }
    *used = off;
    return true;
}

/* ------------------------------------------------------------------ */
/* MQTT                                                                */
/* ------------------------------------------------------------------ */

/* One packet from the hub. Returns false when the device stopped. */
static bool hs__packet(struct hs_device *d, const struct hs_mqtt_packet *p)
{
    if (d->state == HS_DEV_MQTT) {
        if (p->type == HS_MQTT_CONNACK)
            return hs__on_connack(d, &p->u.connack);
        hs__fail(d, HS_ERR_PROTOCOL, "%s before CONNACK",
                 hs_mqtt_type_name(p->type));
        return false;
    }
    switch (p->type) {
    case HS_MQTT_SUBACK:
        return hs__on_suback(d, &p->u.suback);
    case HS_MQTT_PUBACK:
        return hs__on_puback(d, p->u.packet_id);
    case HS_MQTT_PINGRESP:
        hs__proven(d);
        d->ping_out = false;
        hs__ka_arm(d);
        return true;
    case HS_MQTT_PUBLISH:
        return hs__on_c2d(d, &p->u.publish);
    default:
        hs__fail(d, HS_ERR_PROTOCOL, "unexpected %s",
                 hs_mqtt_type_name(p->type));
        return false;
    }
}

static bool hs__on_connack(struct hs_device *d, const struct hs_mqtt_connack *c)
{
    const struct hs_config *cfg = d->w->run->cfg;
    struct hs_stats *st = &d->w->stats;
    if (c->code != HS_MQTT_ACCEPTED) {
        hs_stat_add(&st->connack[c->code], 1);
        hs__fail(d, HS_ERR_CONNACK, "CONNACK %u: %s", c->code,
                 hs_mqtt_connack_text(c->code));
        return false;
    }
    hs__connected(d);
    if (!cfg->c2d)
        return hs__run_start(d);
    char filter[HS_DEVICE_ID_MAX + 64];
    snprintf(filter, sizeof(filter), "devices/%s/messages/devicebound/#",
             d->id);
    d->sub_id = d->next_id++;
    if (d->next_id == 0)
        d->next_id = 1;
    struct hs_mqtt_subscribe s = {
        .packet_id = d->sub_id, .filter = hs_mqtt_cstr(filter), .qos = 1};
    uint8_t *pkt = d->w->wbuf + HS_HEADROOM;
    size_t n = hs_mqtt_subscribe_encode(pkt, HS_WBUF_SIZE - HS_HEADROOM, &s);
    hs__set_state(d, HS_DEV_SUB);
    if (!hs__send(d, pkt, n))
        return false;
    hs__ka_arm(d);
    return true;
}

/* Accepted by the hub (CONNACK, or an AMQP link attached). */
static void hs__connected(struct hs_device *d)
{
    struct hs_stats *st = &d->w->stats;
    hs_stats_latency(st, &st->connect_all, hs__now_us() - d->t_start_us);
    hs_stat_add(&st->connects, 1);
    if (d->renewing)
        hs_stat_add(&st->renewals, 1);
    else if (d->ever_connected)
        hs_stat_add(&st->reconnects, 1);
    if (d->storm_hit)
        hs_stat_add(&st->storm_reconnects, 1);
    d->ever_connected = true;
    d->renewing = d->storm_hit = false;
    d->up = true;
    d->up_at = d->w->loop.now;
}

/* The hub acknowledged something: the connection works, the row ends. */
static void hs__proven(struct hs_device *d)
{
    d->failures = 0;
}

static bool hs__on_suback(struct hs_device *d, const struct hs_mqtt_suback *s)
{
    if (d->state != HS_DEV_SUB || s->packet_id != d->sub_id) {
        hs__fail(d, HS_ERR_PROTOCOL, "SUBACK %u that was not asked for",
                 s->packet_id);
        return false;
    }
    if (s->codes[0] == 0x80) {
        hs__fail(d, HS_ERR_PROTOCOL, "cloud-to-device subscription refused");
        return false;
    }
    hs__proven(d);
    return hs__run_start(d);
}

static bool hs__on_puback(struct hs_device *d, uint16_t id)
{
    uint32_t i = 0;
    while (i < d->ninflight && d->inflight[i].id != id)
        i++;
    if (i == d->ninflight) {
        hs__fail(d, HS_ERR_PROTOCOL, "PUBACK %u for no message in flight", id);
        return false;
    }
    return hs__acked(d, i, true);
}

/*
 * In-flight message i is settled: acknowledged (its latency measured), or
 * else lost. Returns false when that finished the device.
 */
static bool hs__acked(struct hs_device *d, uint32_t i, bool accepted)
{
    struct hs_stats *st = &d->w->stats;
    if (accepted) {
        hs__proven(d);
        hs_stats_latency(st, &st->puback_all,
                         hs__now_us() - d->inflight[i].sent_us);
        hs_stat_add(&st->acked, 1);
    } else {
        hs_stat_add(&st->lost, 1);
    }
    free(d->inflight[i].pkt);
    d->inflight[i] = d->inflight[--d->ninflight];
    if (d->state == HS_DEV_DRAIN && d->ninflight == 0) {
        if (d->renewing)
            hs__renew_now(d);
        else
            hs__finish(d);
        return false;
    }
    if (d->blocked && d->state == HS_DEV_RUN) {
        uint64_t now = d->w->loop.now;
        d->blocked = false;
        hg_timer_start(&d->w->loop, &d->timer,
                       d->next_due > now ? d->next_due - now : 0);
    }
    return true;
}

/* A cloud-to-device message: counted, and acknowledged at QoS 1. */
static bool hs__on_c2d(struct hs_device *d, const struct hs_mqtt_publish *p)
{
    hs_stat_add(&d->w->stats.c2d, 1);
    if (p->qos == 0)
        return true;
    if (p->qos > 1) {
        hs__fail(d, HS_ERR_PROTOCOL, "PUBLISH at QoS 2");
        return false;
    }
    uint8_t *pkt = d->w->wbuf + HS_HEADROOM;
    size_t n = hs_mqtt_ack_encode(pkt, 4, HS_MQTT_PUBACK, p->packet_id);
    return hs__send(d, pkt, n);
}

/* Connected: plan the next publish (the first after a random delay). */
static bool hs__run_start(struct hs_device *d)
{
    const struct hs_config *cfg = d->w->run->cfg;
    uint64_t now = d->w->loop.now;
    hs__set_state(d, HS_DEV_RUN);
    if (d->ninflight > 0 && !hs__resend(d))
        return false;
    if (atomic_load(&d->w->run->phase) != HS_PHASE_RUN ||
        (cfg->messages && d->sent >= cfg->messages)) {
        hs__drain(d);
        return false;
    }
    if (d->next_due == 0)
        d->next_due = now + hs_rand(&d->w->rng) %
                                (hs_config_interval(cfg, d->index, 0) + 1);
    else if (d->next_due < now)
        hs__skip_missed(d, now);
    hg_timer_start(&d->w->loop, &d->timer, d->next_due - now);
    hs__ka_arm(d);
    return true;
}

/*
 * Connected again after the schedule's next slot passed: the slots that
 * went by while the device was not connected are counted behind schedule,
 * all but the one sent now, and the schedule restarts from now rather
 * than sending them in a burst. With --messages, only slots that a message
 * was left for count.
 */
static void hs__skip_missed(struct hs_device *d, uint64_t now)
{
    const struct hs_config *cfg = d->w->run->cfg;
    uint64_t left = cfg->messages ? cfg->messages - d->sent : UINT64_MAX;
    uint64_t missed = 0;
    /* Whole cycles of the interval list first, so that a long outage at
     * a short interval costs no long loop. */
    size_t n = cfg->nintervals;
    if (cfg->dev_intervals && cfg->dev_intervals[d->index].n > 0)
        n = cfg->dev_intervals[d->index].n;
    uint64_t cycle = 0;
    for (size_t k = 0; k < n; k++)
        cycle += hs_config_interval(cfg, d->index, k);
    uint64_t cycles = (now - d->next_due) / cycle;
    if (cycles > 1 && left != UINT64_MAX)
        cycles = cycles * n < left ? cycles : (left - 1) / n;
    if (cycles > 1) {
        cycles--; /* the loop below finishes the last, partial one */
        d->next_due += cycles * cycle;
        missed = cycles * n;
    }
    for (;;) {
        uint32_t iv = hs_config_interval(cfg, d->index, d->interval_idx);
        if (d->next_due + iv > now || missed + 1 >= left)
            break;
        d->next_due += iv;
        d->interval_idx++;
        missed++;
    }
    if (missed)
        hs_stat_add(&d->w->stats.overrun, missed);
    d->next_due = now;
}

/* The schedule says publish: do, unless the window is full or done. */
static void hs__publish_due(struct hs_device *d)
{
    const struct hs_config *cfg = d->w->run->cfg;
    struct hg_loop *loop = &d->w->loop;
    if (atomic_load(&d->w->run->phase) != HS_PHASE_RUN ||
        (cfg->messages && d->sent >= cfg->messages)) {
        hs__drain(d);
        return;
    }
    if (cfg->qos > 0 && d->ninflight >= cfg->inflight) {
        d->blocked = true;
        return;
    }
    if (!hs__publish(d))
        return;
    uint32_t interval = hs_config_interval(cfg, d->index, d->interval_idx++);
    d->next_due += interval;
    if (loop->now >= d->next_due + interval) {
        hs_stat_add(&d->w->stats.overrun, 1);
        d->next_due = loop->now;
    }
    if (cfg->messages && d->sent >= cfg->messages) {
        hs__drain(d);
        return;
    }
    hg_timer_start(loop, &d->timer,
                   d->next_due > loop->now ? d->next_due - loop->now : 0);
}

/*
 * A new telemetry message: rendered, numbered, sent. At QoS 1 it stays in
 * flight until its PUBACK; with re-sending on, its encoded packet is kept
 * too, so a message sent again after a reconnect is byte for byte the one
 * sent first (variables have moved on since).
 */
static bool hs__publish(struct hs_device *d)
{
    struct hs_worker *w = d->w;
    const struct hs_config *cfg = w->run->cfg;
    struct hs_message msg = {.buf = w->pbuf, .cap = HS_PAYLOAD_MAX};
    struct hs_template_ctx ctx = {.device_id = d->id,
                                  .machine_name = w->run->machine_name,
                                  .iteration = d->sent,
                                  .rng = &w->rng};
    clock_gettime(CLOCK_REALTIME, &ctx.now);
    hs_payload_message(&cfg->payload, d->index, &ctx, &msg);
    if (hs__amqp(d))
        return hs__publish_amqp(d, msg.payload, msg.len);
    struct hs_mqtt_publish pub = {.topic = {msg.topic, msg.topic_len},
                                  .payload = msg.payload,
                                  .payload_len = msg.len,
                                  .qos = cfg->qos};
    struct hs_inflight m = {.sent_us = hs__now_us()};
    if (cfg->qos > 0)
        m.id = pub.packet_id = hs__next_id(d);
    uint8_t *pkt = w->wbuf + HS_HEADROOM;
    size_t n = hs_mqtt_publish_encode(pkt, HS_WBUF_SIZE - HS_HEADROOM, &pub);
    if (cfg->qos > 0) {
        if (cfg->resend) {
            m.pkt = malloc(n);
            if (m.pkt == NULL) {
                hs__fail(d, HS_ERR_LOCAL, "no memory for a message");
                return false;
            }
            memcpy(m.pkt, pkt, n);
            m.len = (uint32_t)n;
        }
        d->inflight[d->ninflight++] = m;
    }
    d->sent++;
    hs_stat_add(&w->stats.sent, 1);
    if (!hs__send(d, pkt, n))
        return false;
    if (d->ninflight == 1)
        hs__ka_arm(d);
    return true;
}

/* The next packet id or delivery tag (never 0). */
static uint16_t hs__next_id(struct hs_device *d)
{
    uint16_t id = d->next_id++;
    if (d->next_id == 0)
        d->next_id = 1;
    return id;
}

/* One telemetry message as a delivery on the device's AMQP link. */
static bool hs__publish_amqp(struct hs_device *d, const uint8_t *payload,
                             size_t len)
{
    struct hs_worker *w = d->w;
    struct hs_inflight m = {.sent_us = hs__now_us(), .id = hs__next_id(d)};
    if (!hs_amqp_send(d, payload, len, m.id)) {
        hs__fail(d, HS_ERR_LOCAL, "message too large for AMQP");
        return false;
    }
    if (w->run->cfg->qos > 0)
        d->inflight[d->ninflight++] = m;
    d->sent++;
    hs_stat_add(&w->stats.sent, 1);
    if (d->ninflight == 1)
        hs__ka_arm(d);
    return true;
}

/*
 * Connected again with messages a dropped connection left unacknowledged:
 * they go first, with DUP set, and their PUBACK clocks start over.
 */
static bool hs__resend(struct hs_device *d)
{
    uint64_t now = hs__now_us();
    uint8_t *pkt = d->w->wbuf + HS_HEADROOM;
    for (uint32_t i = 0; i < d->ninflight; i++) {
        struct hs_inflight *m = &d->inflight[i];
        m->sent_us = now;
        hs_stat_add(&d->w->stats.resent, 1);
        memcpy(pkt, m->pkt, m->len); /* masking (mqtt-ws) works in place */
        pkt[0] |= HS_MQTT_DUP;
        if (!hs__send(d, pkt, m->len))
            return false;
    }
    hs__ka_arm(d);
    return true;
}

/* Nothing more to send: finish now, or once the last PUBACK is in. */
static void hs__drain(struct hs_device *d)
{
    hg_timer_stop(&d->w->loop, &d->timer);
    d->blocked = false;
    if (d->state != HS_DEV_RUN || d->ninflight == 0) {
        hs__finish(d);
        return;
    }
    hs__set_state(d, HS_DEV_DRAIN);
}

/* The device is done: it says goodbye and stops. */
static void hs__finish(struct hs_device *d)
{
    if (hs__goodbye(d))
        hs__set_state(d, HS_DEV_DONE);
}

/*
 * DISCONNECT, a WebSocket close, TLS close_notify, and the connection is
 * gone. Returns false when sending failed (counted, and handled as any
 * failure).
 */
static bool hs__goodbye(struct hs_device *d)
{
    if (hs__amqp(d)) {
        hs__drop(d, true); /* detach; the last device closes the connection */
        return true;
    }
    uint8_t *pkt = d->w->wbuf + HS_HEADROOM;
    size_t n = hs_mqtt_empty_encode(pkt, 2, HS_MQTT_DISCONNECT);
    if (!hs__send(d, pkt, n))
        return false;
    if (!hs_stream_ws_close(&d->stream, 1000)) /* normal closure */
        return false;
    hs__drop(d, true);
    return true;
}

/* ------------------------------------------------------------------ */
/* Token renewal                                                       */
/* ------------------------------------------------------------------ */

/*
 * A token was just made for CONNECT: when hubsim generates tokens (and no
 * fixed --sas-expiry holds), plan its renewal at a random point between 75
 * and 85 % of its lifetime, so that a fleet connected at once renews over a
 * spread of time and well before IoT Hub would drop the connection.
 */
static void hs__renew_plan(struct hs_device *d, uint64_t now_s)
{
    const struct hs_config *cfg = d->w->run->cfg;
    d->renew_at = 0;
    if (cfg->auth == HS_AUTH_NONE || cfg->auth == HS_AUTH_TOKEN ||
        cfg->sas_expiry)
        return;
    uint64_t ttl_ms = cfg->sas_ttl_s * 1000;
    uint64_t permille = 750 + hs_rand(&d->w->rng) % 101;
    d->renew_at = d->w->loop.now + ttl_ms * permille / 1000;
    hs_log_debug("device %s: token expires at se=%llu, renewal in %llu ms",
                 d->id, (unsigned long long)(now_s + cfg->sas_ttl_s),
                 (unsigned long long)(ttl_ms * permille / 1000));
}

/*
 * Time to renew (IoT Hub renews MQTT credentials by reconnecting): stop
 * publishing, wait briefly for the PUBACKs in flight so that nothing is
 * cut off, then reconnect at once.
 */
static void hs__renew(struct hs_device *d)
{
    const struct hs_config *cfg = d->w->run->cfg;
    d->renewing = true;
    d->renew_at = 0;
    d->blocked = false;
    hg_timer_stop(&d->w->loop, &d->timer);
    if (d->ninflight == 0) {
        hs__renew_now(d);
        return;
    }
    hs__set_state(d, HS_DEV_DRAIN);
    hg_timer_start(&d->w->loop, &d->timer,
                   cfg->ack_timeout_ms < HS_RENEW_DRAIN_MS ? cfg->ack_timeout_ms
                                                           : HS_RENEW_DRAIN_MS);
    hs__ka_arm(d);
}

/* DISCONNECT and connect again with a fresh token, or stop if the run is. */
static void hs__renew_now(struct hs_device *d)
{
    if (!hs__goodbye(d))
        return;
    if (atomic_load(&d->w->run->phase) != HS_PHASE_RUN) {
        hs__set_state(d, HS_DEV_DONE);
        return;
    }
    hs__set_state(d, HS_DEV_IDLE);
    hs__connect(d);
}

/* ------------------------------------------------------------------ */
/* Failures                                                            */
/* ------------------------------------------------------------------ */

static void hs__fail(struct hs_device *d, enum hs_err kind, const char *fmt,
                     ...)
{
    char text[HS_SAMPLE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    hs_stats_error(&d->w->stats, kind, d->id, "%s", text);
    hs__drop(d, false);
    hs__after_drop(d, true);
}

/*
 * Closes the connection, if any, and forgets its state. Messages still in
 * flight are kept to send again, or with --resend-unacked 0 counted lost.
 */
static void hs__drop(struct hs_device *d, bool graceful)
{
    struct hg_loop *loop = &d->w->loop;
    hg_timer_stop(loop, &d->timer);
    hg_timer_stop(loop, &d->ka);
    if (d->conn != NULL)
        hs_amqp_device_drop(d, graceful);
    hs_stream_close(&d->stream, graceful);
    hs_buf_free(&d->in);
    if (!d->w->run->cfg->resend || hs__amqp(d))
        hs__inflight_lost(d);
    if (d->up && loop->now - d->up_at >= HS_DEVICE_PROVEN_MS)
        hs__proven(d); /* it held long enough, whatever ended it */
    d->blocked = d->ping_out = d->up = false;
}

/*
 * After a failure, or a storm's drop (failed false, which does not count
 * toward --max-attempts): back off and try again, give up, or stop.
 */
static void hs__after_drop(struct hs_device *d, bool failed)
{
    const struct hs_config *cfg = d->w->run->cfg;
    bool all_sent =
        cfg->messages && d->sent >= cfg->messages && d->ninflight == 0;
    d->renewing = false; /* the next CONNACK is a reconnect */
    if (atomic_load(&d->w->run->phase) != HS_PHASE_RUN || all_sent) {
        hs__set_state(d, HS_DEV_DONE);
        return;
    }
    d->failures += failed;
    if (failed && cfg->max_attempts && d->failures >= cfg->max_attempts) {
        hs_stat_add(&d->w->stats.gave_up, 1);
        hs__set_state(d, HS_DEV_DONE);
        return;
    }
    unsigned shift = d->failures > 1 ? d->failures - 1 : 0;
    shift = shift < 30 ? shift : 30;
    uint64_t cap = cfg->backoff_base_ms << shift;
    if (cap > cfg->backoff_max_ms || cap >> shift != cfg->backoff_base_ms)
        cap = cfg->backoff_max_ms;
    uint64_t delay = hs_rand(&d->w->rng) % (cap + 1);
    hs__set_state(d, HS_DEV_IDLE);
    hg_timer_start(&d->w->loop, &d->timer, delay);
}

/* ------------------------------------------------------------------ */
/* AMQP                                                                */
/* ------------------------------------------------------------------ */

static bool hs__amqp(const struct hs_device *d)
{
    return d->w->run->cfg->protocol >= HS_PROTO_AMQP;
}

void hs_device_amqp_state(struct hs_device *d, enum hs_dev_state s)
{
    hs__set_state(d, s);
}

void hs_device_amqp_up(struct hs_device *d)
{
    if (d->state != HS_DEV_LINK)
        return;
    hs__connected(d);
    hs__run_start(d);
}

void hs_device_amqp_ack(struct hs_device *d, uint16_t id, bool accepted,
                        const char *state)
{
    uint32_t i = 0;
    while (i < d->ninflight && d->inflight[i].id != id)
        i++;
    if (i == d->ninflight)
        return; /* settled after its connection attempt had been given up */
    if (!accepted)
        hs_stats_error(&d->w->stats, HS_ERR_AMQP_REJECTED, d->id,
                       "message %u settled as %s", id, state);
    hs__acked(d, i, accepted);
}

void hs_device_amqp_fail(struct hs_device *d, enum hs_err kind, const char *fmt,
                         ...)
{
    char text[HS_SAMPLE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    hs__fail(d, kind, "%s", text);
}

void hs_device_amqp_lost(struct hs_device *d)
{
    if (d->state == HS_DEV_DONE)
        return;
    hs__drop(d, false);
    hs__after_drop(d, true);
}
