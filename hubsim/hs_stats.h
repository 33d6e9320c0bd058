/*
 * hs_stats: what one worker counts and measures. Each worker owns one
 * struct hs_stats and is its only writer: counters are relaxed atomics the
 * reporter reads at any time, histograms and error samples sit behind a
 * mutex that the reporter takes once a second. A snapshot sums workers.
 */
#ifndef HS_STATS_H
#define HS_STATS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#include "hg_hist.h"

/* Errors, told apart by what failed. */
enum hs_err {
    HS_ERR_TCP_REFUSED,   /* connection refused */
    HS_ERR_TCP_RESET,     /* reset or broken pipe, in any phase */
    HS_ERR_TCP_TIMEOUT,   /* TCP connect took longer than the limit */
    HS_ERR_TCP_OTHER,     /* unreachable and other connect errors */
    HS_ERR_LOCAL,         /* no descriptor, no source port, no memory */
    HS_ERR_TLS_VERIFY,    /* the hub's certificate did not check out */
    HS_ERR_TLS,           /* other TLS failures (alerts, EOF in handshake) */
    HS_ERR_WS,            /* upgrade refused, bad frame, server's close */
    HS_ERR_CONNACK,       /* the hub refused CONNECT (see connack codes) */
    HS_ERR_PROTOCOL,      /* the hub sent MQTT that makes no sense */
    HS_ERR_CLOSED,        /* the hub closed a working connection */
    HS_ERR_TIMEOUT,       /* TLS, upgrade or CONNACK took too long */
    HS_ERR_ACK_TIMEOUT,   /* a PUBACK or SUBACK took too long */
    HS_ERR_PING_TIMEOUT,  /* no PINGRESP in time */
    HS_ERR_AMQP_SASL,     /* SASL refused the connection */
    HS_ERR_AMQP_CBS,      /* put-token refused (with its status), bad $cbs */
    HS_ERR_AMQP_DETACH,   /* the peer detached a device's link */
    HS_ERR_AMQP_CLOSE,    /* the peer closed the connection or session */
    HS_ERR_AMQP_REJECTED, /* a message settled other than accepted */
    HS_ERR_N,
};

#define HS_CONNACK_CODES 6
#define HS_SAMPLE_LEN    200

typedef _Atomic uint64_t hs_counter;

struct hs_stats {
    /* Gauges. */
    hs_counter connecting; /* TCP connect until CONNACK */
    hs_counter connected;  /* after CONNACK, until the connection ends */
    hs_counter finished;   /* devices that will not connect again */
    /* Totals. */
    hs_counter attempts;   /* connections begun */
    hs_counter connects;   /* CONNACKs accepted */
    hs_counter reconnects; /* of those, by a device connected before */
    hs_counter gave_up;    /* devices that stopped after failures */
    hs_counter sent;       /* PUBLISH written */
    hs_counter acked;      /* PUBACK received */
    hs_counter lost;       /* QoS 1 messages never acknowledged */
    hs_counter overrun;    /* sends that fell a whole interval behind */
    hs_counter c2d;        /* cloud-to-device messages received */

    hs_counter resent;      /* QoS 1 messages sent again after a reconnect */
    hs_counter renewals;    /* CONNACKs of token renewals (not reconnects) */
    hs_counter storms;      /* --storm-at events, counted by worker 0 */
    hs_counter storm_drops; /* connections storms dropped */
    hs_counter storm_reconnects; /* CONNACKs after a storm's drop */
    hs_counter errors[HS_ERR_N];
    hs_counter connack[HS_CONNACK_CODES];

    pthread_mutex_t lock;       /* guards what follows */
    struct hg_hist puback_win;  /* since the reporter last looked */
    struct hg_hist puback_all;  /* microseconds, publish to PUBACK */
    struct hg_hist connect_all; /* microseconds, TCP start to CONNACK */
    struct hg_hist tls_all;     /* microseconds, TLS handshake */
    char sample[HS_ERR_N][HS_SAMPLE_LEN]; /* first error of each kind */
};

/* A plain copy of the counters of one or more workers. */
struct hs_snapshot {
    uint64_t connecting, connected, finished;
    uint64_t attempts, connects, reconnects, gave_up;
    uint64_t sent, acked, lost, overrun, c2d;
    uint64_t resent, renewals, storms, storm_drops, storm_reconnects;
    uint64_t errors[HS_ERR_N];
    uint64_t connack[HS_CONNACK_CODES];
    uint64_t errors_total;
};

extern const char *const hs_err_names[HS_ERR_N];

void hs_stats_init(struct hs_stats *s);
void hs_stats_deinit(struct hs_stats *s);

/* Adds n to a counter; only the owning worker may call it. */
static inline void hs_stat_add(hs_counter *c, uint64_t n)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + n, memory_order_relaxed);
}

static inline void hs_stat_sub(hs_counter *c, uint64_t n)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v - n, memory_order_relaxed);
}

/* The kind of a socket error (connect, read, write). */
enum hs_err hs_err_from_errno(int err);

/* Records a latency in microseconds into one of s's histograms. */
void hs_stats_latency(struct hs_stats *s, struct hg_hist *h, uint64_t us);

/*
 * Counts an error of kind for device and keeps its text as the kind's
 * sample if it is the first. The first error of each kind in the process
 * is logged as a warning, the rest at debug level.
 */
void hs_stats_error(struct hs_stats *s, enum hs_err kind, const char *device,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Process-wide count of connected devices (after CONNACK), kept apart from
 * the per-worker gauges so that its peak is exact. delta is +1 or -1.
 */
void hs_stats_up(int delta);

/* The most devices connected at once so far. */
uint64_t hs_stats_up_max(void);

/* Adds s's counters into snap (errors_total included). */
void hs_stats_snapshot(struct hs_snapshot *snap, struct hs_stats *s);

#endif
