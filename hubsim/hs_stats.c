#include "hs_stats.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hs_log.h"

const char *const hs_err_names[HS_ERR_N] = {
    [HS_ERR_TCP_REFUSED] = "tcp_refused",
    [HS_ERR_TCP_RESET] = "tcp_reset",
    [HS_ERR_TCP_TIMEOUT] = "tcp_timeout",
    [HS_ERR_TCP_OTHER] = "tcp_error",
    [HS_ERR_LOCAL] = "local",
    [HS_ERR_TLS_VERIFY] = "tls_verify",
    [HS_ERR_TLS] = "tls",
    [HS_ERR_WS] = "websocket",
    [HS_ERR_CONNACK] = "connack",
    [HS_ERR_PROTOCOL] = "protocol",
    [HS_ERR_CLOSED] = "closed",
    [HS_ERR_TIMEOUT] = "timeout",
    [HS_ERR_ACK_TIMEOUT] = "ack_timeout",
    [HS_ERR_PING_TIMEOUT] = "ping_timeout",
    [HS_ERR_AMQP_SASL] = "amqp_sasl",
    [HS_ERR_AMQP_CBS] = "amqp_cbs",
    [HS_ERR_AMQP_DETACH] = "amqp_detach",
    [HS_ERR_AMQP_CLOSE] = "amqp_close",
    [HS_ERR_AMQP_REJECTED] = "amqp_rejected",
};

/* One flag per kind: has the process logged this kind yet? */
static atomic_bool hs__logged[HS_ERR_N];

/* Devices connected now, and the peak, over every worker. */
static _Atomic uint64_t hs__up_now;
static _Atomic uint64_t hs__up_max;

void hs_stats_init(struct hs_stats *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    hg_hist_init(&s->puback_win);
    hg_hist_init(&s->puback_all);
    hg_hist_init(&s->connect_all);
    hg_hist_init(&s->tls_all);
}

void hs_stats_deinit(struct hs_stats *s)
{
    pthread_mutex_destroy(&s->lock);
}

void hs_stats_latency(struct hs_stats *s, struct hg_hist *h, uint64_t us)
{
    pthread_mutex_lock(&s->lock);
    hg_hist_record(h, us);
    if (h == &s->puback_all)
        hg_hist_record(&s->puback_win, us);
    pthread_mutex_unlock(&s->lock);
}

void hs_stats_error(struct hs_stats *s, enum hs_err kind, const char *device,
                    const char *fmt, ...)
{
    char text[HS_SAMPLE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    hs_stat_add(&s->errors[kind], 1);
    pthread_mutex_lock(&s->lock);
    if (s->sample[kind][0] == '\0')
        snprintf(s->sample[kind], sizeof(s->sample[kind]), "%.40s: %.150s",
                 device, text);
    pthread_mutex_unlock(&s->lock);
    bool first = !atomic_exchange(&hs__logged[kind], true);
    if (first)
        hs_log_warn("first %s error: device %s: %s (further ones are "
                    "counted)",
                    hs_err_names[kind], device, text);
    else
        hs_log_debug("%s error: device %s: %s", hs_err_names[kind], device,
                     text);
}

void hs_stats_up(int delta)
{
    if (delta < 0) {
        atomic_fetch_sub(&hs__up_now, 1);
        return;
    }
    uint64_t now = atomic_fetch_add(&hs__up_now, 1) + 1;
    uint64_t max = atomic_load(&hs__up_max);
    while (now > max && !atomic_compare_exchange_weak(&hs__up_max, &max, now))
        ;
}

uint64_t hs_stats_up_max(void)
{
    return atomic_load(&hs__up_max);
}

void hs_stats_snapshot(struct hs_snapshot *snap, struct hs_stats *s)
{
#define HS__ADD(f) snap->f += atomic_load_explicit(&s->f, memory_order_relaxed)
    HS__ADD(connecting);
    HS__ADD(connected);
    HS__ADD(finished);
    HS__ADD(attempts);
    HS__ADD(connects);
    HS__ADD(reconnects);
    HS__ADD(gave_up);
    HS__ADD(sent);
    HS__ADD(acked);
    HS__ADD(lost);
    HS__ADD(overrun);
    HS__ADD(c2d);
    HS__ADD(resent);
    HS__ADD(renewals);
    HS__ADD(storms);
    HS__ADD(storm_drops);
    HS__ADD(storm_reconnects);
    for (int i = 0; i < HS_ERR_N; i++) {
        HS__ADD(errors[i]);
        snap->errors_total +=
            atomic_load_explicit(&s->errors[i], memory_order_relaxed);
    }
    for (int i = 0; i < HS_CONNACK_CODES; i++)
        HS__ADD(connack[i]);
#undef HS__ADD
}

enum hs_err hs_err_from_errno(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return HS_ERR_TCP_REFUSED;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return HS_ERR_TCP_RESET;
    case ETIMEDOUT:
        return HS_ERR_TCP_TIMEOUT;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
    case EADDRINUSE:
    case EAFNOSUPPORT:
        return HS_ERR_LOCAL;
    default:
        return HS_ERR_TCP_OTHER;
    }
}
