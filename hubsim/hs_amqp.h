/*
 * hs_amqp: AMQP 1.0 connections shared by many devices, as the IoT
 * Telemetry Simulator does it (--devices-per-connection, 995 by default).
 * Each worker deals its devices into groups; a group shares one stream
 * (hs_stream: TCP, TLS with SNI and the name check against the hub and,
 * for amqp-ws, a WebSocket with subprotocol AMQPWSB10). proton's
 * connection driver does the AMQP framing, SASL and link bookkeeping; its
 * byte buffers go through that stream and the worker's event loop, never
 * through proton's SSL or proactor.
 *
 *   DOWN -> STREAM -> UP -> CLOSING -> DOWN
 *
 * A device on the connection authenticates by claims-based security (a
 * put-token request to $cbs, see hs_cbs) when --amqp-auth is cbs, then
 * opens its own sender link; its messages are deliveries on that link and
 * the peer's disposition acknowledges them. The connection opens when its
 * first device wants it and closes when its last device lets go. When it
 * fails, the failure is counted once, and every device on it goes the way
 * of a failed MQTT device: messages in flight lost, back-off, reconnect.
 *
 * Devices never drive the connection's I/O on their own stack: they queue
 * work and the connection runs it from a deferred callback, so a failure
 * never pulls a connection out from under a device in mid-call.
 */
#ifndef HS_AMQP_H
#define HS_AMQP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <proton/connection_driver.h>

#include "hg_loop.h"

#include "hs_stats.h"
#include "hs_stream.h"

struct hs_device;
struct hs_worker;

enum hs_amqp_cstate {
    HS_AMQP_DOWN,
    HS_AMQP_STREAM,  /* TCP, TLS, [WS]: the stream's phase says which */
    HS_AMQP_UP,      /* AMQP flowing (SASL and open pipelined) */
    HS_AMQP_CLOSING, /* close sent, waiting for the peer's */
};

struct hs_amqp_conn {
    struct hs_worker *w;
    uint32_t number; /* in the worker, for logs */
    uint32_t first;  /* the worker's devices [first, first + count) */
    uint32_t count;
    enum hs_amqp_cstate state;
    struct hs_stream stream;
    struct hg_timer timer; /* connect or close deadline; proton's ticks */
    struct hg_defer defer;
    bool deferred; /* defer is queued */
    bool pumping;  /* proton's events are being handled */
    bool failed;   /* tear down once the events are handled */
    bool ending;   /* the same, quietly: nobody uses it any more */
    enum hs_err fail_kind;
    char fail_text[HS_SAMPLE_LEN];
    bool have_driver;
    pn_connection_driver_t driver;
    pn_session_t *session;
    pn_link_t *cbs_tx, *cbs_rx;
    uint32_t users;    /* devices that hold the connection */
    uint32_t waiting;  /* of those, devices still to begin on it */
    uint32_t link_seq; /* makes link names unique */
};

/* The worker's connections, one per group of its devices. 0 or -ENOMEM. */
int hs_amqp_init(struct hs_worker *w);
void hs_amqp_deinit(struct hs_worker *w);

/*
 * The device wants to connect: it takes its group's connection, which
 * starts if it was down. The device hears back through hs_device_amqp_*.
 */
void hs_amqp_device_open(struct hs_device *d);

/*
 * Sends one message from d (which must be publishing) with delivery tag
 * tag; settled at once when qos is 0. Returns false when it could not be
 * encoded (too large).
 */
bool hs_amqp_send(struct hs_device *d, const uint8_t *payload, size_t len,
                  uint16_t tag);

/*
 * The device lets go of its connection: its link is detached (closed when
 * graceful, else only forgotten) and, if it was the last user, the
 * connection closes.
 */
void hs_amqp_device_drop(struct hs_device *d, bool graceful);

/* The sender address for device_id: "{deviceId}" in pattern replaced. */
size_t hs_amqp_address(char *out, size_t cap, const char *pattern,
                       const char *device_id);

#endif
