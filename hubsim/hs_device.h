/*
 * hs_device: one simulated device and its connection, as a state machine
 * driven by its worker's event loop:
 *
 *   IDLE -> STREAM -> MQTT -> [SUB] -> RUN -> DRAIN -> DONE
 *     ^                                         |
 *     +-- back-off (exponential, full jitter) <-+ on any failure
 *
 * Over AMQP the device shares its group's connection (hs_amqp) instead:
 *
 *   IDLE -> POOL -> [CBS] -> LINK -> RUN -> DRAIN -> DONE
 *
 * POOL waits for the connection, CBS for the put-token status, LINK for the
 * sender link's attach; the schedule, the in-flight window, the losses and
 * the back-off are the same as over MQTT.
 *
 * STREAM sets up the device's own hs_stream: TCP to the run's address,
 * TLS with the hub's name as SNI and the certificate checked for it, and
 * for mqtt-ws the HTTP upgrade. MQTT waits for CONNACK; SUB for the C2D
 * SUBACK. RUN publishes on a fixed-rate schedule with up to --inflight QoS
 * 1 messages unacknowledged; DRAIN waits for the last PUBACKs once nothing
 * is left to send. QoS 1 messages in flight when a connection ends are
 * sent again, with DUP set, once the device is connected again (at least
 * once, like the Azure IoT SDKs), or with --resend-unacked 0 counted lost.
 * A generated SAS token is renewed before it expires by draining,
 * DISCONNECT and connecting again; a storm (--storm-at) drops every
 * connection at once without DISCONNECT.
 *
 * --max-attempts counts failures in a row. An accepted CONNACK alone does
 * not end the row: a hub that accepts and then breaks every connection
 * would keep a device retrying for ever. A connection proves itself, and
 * clears the count, when the hub acknowledges something on it (a PUBACK,
 * the SUBACK, a PINGRESP, an accepted AMQP disposition) or when it stayed
 * up HS_DEVICE_PROVEN_MS.
 */
#ifndef HS_DEVICE_H
#define HS_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <proton/link.h>

#include "hg_loop.h"

#include "hs_buf.h"
#include "hs_opts.h"
#include "hs_stream.h"
#include "hs_worker.h"

/* A connection up this long has proven itself (see above). */
#define HS_DEVICE_PROVEN_MS 10000

enum hs_dev_state {
    HS_DEV_IDLE,   /* not started, or waiting to reconnect */
    HS_DEV_STREAM, /* TCP, TLS, [WS]: the stream's phase says which */
    HS_DEV_POOL,   /* AMQP: waiting for the shared connection */
    HS_DEV_CBS,    /* AMQP: put-token sent, waiting for its status */
    HS_DEV_LINK,   /* AMQP: sender link attach sent */
    HS_DEV_MQTT,   /* CONNECT sent, waiting for CONNACK */
    HS_DEV_SUB,    /* SUBSCRIBE sent, waiting for SUBACK */
    HS_DEV_RUN,    /* publishing */
    HS_DEV_DRAIN,  /* nothing left to send; waiting for PUBACKs */
    HS_DEV_DONE,   /* finished for good */
};

/* A QoS 1 message not yet acknowledged. */
struct hs_inflight {
    uint64_t sent_us;
    uint8_t *pkt; /* its PUBLISH, to send again (--resend-unacked), or NULL */
    uint32_t len;
    uint16_t id;
};

struct hs_device {
    struct hs_worker *w;
    const char *id; /* owned by the config */
    uint32_t index; /* in the fleet; picks the --bind address */
    enum hs_dev_state state;
    struct hs_stream stream; /* MQTT: TCP, TLS, [WS]; its last_send */
    struct hg_timer timer;   /* connect deadline, back-off, next publish */
    struct hg_timer ka;      /* keep-alive, PUBACK and PINGRESP deadlines */
    struct hs_buf in;        /* an MQTT packet not yet whole */
    bool ever_connected;
    bool blocked;      /* a publish is due but --inflight are unacknowledged */
    bool ping_out;     /* a PINGREQ waits for its PINGRESP */
    bool renewing;     /* reconnecting for a fresh token */
    bool storm_hit;    /* a storm dropped the connection; not up since */
    bool amqp_waiting; /* AMQP: to begin once the connection is up */
    uint16_t next_id;
    uint16_t sub_id;
    bool up;           /* accepted (CONNACK, link attached); up_at set */
    uint32_t failures; /* in a row, since a connection last proved itself */
    uint32_t interval_idx;
    uint32_t ninflight;
    uint64_t t_start_us; /* this connection attempt began */
    uint64_t sent;       /* messages published, over every connection */
    uint64_t next_due;   /* loop ms of the next publish; 0: not yet planned */
    uint64_t ping_sent;  /* loop ms */
    uint64_t renew_at;   /* loop ms to renew the token at; 0: never */
    uint64_t up_at;      /* loop ms the connection was accepted */
    struct hs_inflight *inflight;
    struct hs_amqp_conn *conn; /* AMQP: the shared connection held */
    pn_link_t *link;           /* AMQP: this device's sender link */
    uint64_t cbs_id;           /* AMQP: the put-token request waited for */
};

/* Sets d up as device id of w; returns 0 or -ENOMEM. */
int hs_device_init(struct hs_device *d, struct hs_worker *w, const char *id,
                   uint32_t index);
void hs_device_deinit(struct hs_device *d);

/* The ramp starts the device: its first connection attempt. */
void hs_device_start(struct hs_device *d);

/* The run moved to DRAIN or STOP. */
void hs_device_phase(struct hs_device *d, enum hs_phase phase);

/*
 * A storm: the device's connection, in whatever phase, closes without
 * DISCONNECT, as in a network failure, and the device reconnects after the
 * usual back-off. Returns true when there was a connection to drop.
 */
bool hs_device_storm(struct hs_device *d);

/*
 * The MQTT password for device_id under cfg: a SAS token expiring at
 * cfg->sas_expiry or now_s + the token lifetime, written into buf (cap
 * bytes); the configured token; or NULL when there are no credentials.
 */
const char *hs_device_password(const struct hs_config *cfg,
                               const char *device_id, uint64_t now_s, char *buf,
                               size_t cap);

/* AMQP: what the shared connection tells its device (see hs_amqp). */
void hs_device_amqp_state(struct hs_device *d, enum hs_dev_state s);
/* The link is attached: the device is connected and publishes. */
void hs_device_amqp_up(struct hs_device *d);
/* A disposition for message id: acknowledged when accepted. */
void hs_device_amqp_ack(struct hs_device *d, uint16_t id, bool accepted,
                        const char *state);
/* The device's own failure (CBS refused, link detached): counted. */
void hs_device_amqp_fail(struct hs_device *d, enum hs_err kind, const char *fmt,
                         ...) __attribute__((format(printf, 3, 4)));
/* The connection failed (counted once there): back off like the rest. */
void hs_device_amqp_lost(struct hs_device *d);

#endif
