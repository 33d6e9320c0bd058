/*
 * hs_stream: one non-blocking client byte stream to the hub, the transport
 * under both an MQTT device (one stream each) and a shared AMQP connection
 * (hs_amqp): a socket registered with the worker's event loop, hubsim's TLS
 * (hs_tls: SNI and the name check against the hub), for the WebSocket
 * protocols the HTTP upgrade and the framing (hs_ws), the queue of bytes
 * the socket did not take yet, and the read loop.
 *
 *   DOWN -> TCP -> TLS -> [WS] -> UP -> DOWN
 *
 * The owner's protocol starts once the stream is UP and from then on sees
 * only its own bytes: what it sends is framed (over WebSockets) and
 * written or queued; what comes in is unwrapped from TLS and frames and
 * handed to it. PINGs are answered here. The stream counts nothing but
 * the TLS handshake's latency: every failure goes to the owner as a kind
 * and a text (and, for TLS, what failed), since which kind a failure
 * counts as, and how it is worded, depends on the owner's phase.
 *
 * Callbacks run on the stream's stack. One that closed the stream (or
 * opened it anew) says so by returning false, and the stream then touches
 * nothing of itself any more; after ops->fail it does the same, and the
 * owner closes it, at once or once it is safe to.
 */
#ifndef HS_STREAM_H
#define HS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "hg_loop.h"

#include "hs_buf.h"
#include "hs_stats.h"
#include "hs_tls.h"
#include "hs_ws.h"

/* Free bytes hs_stream_send() needs before a packet: a frame's head. */
#define HS_STREAM_HEADROOM HS_WS_MAX_HEADER

struct hs_stream;
struct hs_stream_ws;
struct hs_worker;

enum hs_stream_phase {
    HS_STREAM_DOWN,
    HS_STREAM_TCP, /* connect in progress */
    HS_STREAM_TLS, /* handshake */
    HS_STREAM_WS,  /* upgrade request sent, reading the answer */
    HS_STREAM_UP,  /* the owner's protocol flows */
};

struct hs_stream_ops {
    const char *ws_protocol; /* the subprotocol the upgrade offers */
    /* TLS is done and, over WebSockets, the upgrade too. */
    bool (*up)(struct hs_stream *s);
    /* Bytes from the peer, out of TLS and WebSocket frames. */
    bool (*input)(struct hs_stream *s, const uint8_t *data, size_t len);
    /* Optional: the owner's turn after the stream's reads and writes on
     * one socket event, before it registers for the next. */
    bool (*io)(struct hs_stream *s);
    /*
     * The stream failed: kind and text say how. tls, when not NULL, is
     * the TLS failure behind it (text is then its reason alone), for
     * owners that word it by their own phase.
     */
    void (*fail)(struct hs_stream *s, enum hs_err kind, const char *text,
                 const struct hs_tls_failure *tls);
    /* After hs_stream_closing(): the peer ended the stream, as expected. */
    void (*closed)(struct hs_stream *s);
};

struct hs_stream {
    struct hs_worker *w;
    const struct hs_stream_ops *ops;
    const struct hs_tls_id *id; /* the client certificate, or NULL */
    struct hg_io io;            /* fd -1 while down */
    SSL *ssl;
    struct hs_stream_ws *ws; /* upgrading or upgraded */
    struct hs_buf out;       /* bytes the socket did not take yet */
    uint64_t t_tcp_us;       /* the TCP connect finished */
    uint64_t last_send;      /* loop ms bytes were last sent (keep-alive) */
    uint32_t events;         /* what io is registered for */
    uint8_t phase;           /* enum hs_stream_phase */
    bool want_ws;            /* upgrade once TLS is done */
    bool want_out;           /* TLS needs the socket writable */
    bool closing;            /* the owner said goodbye; see ops->closed */
};

/* Sets s up, down, for worker w's owner behind ops. */
void hs_stream_init(struct hs_stream *s, struct hs_worker *w,
                    const struct hs_stream_ops *ops);

/*
 * Opens a socket, binds it to src when not NULL, starts connecting to the
 * run's address and waits for the connect; TLS presents id when not NULL,
 * and ws asks for the WebSocket upgrade. Returns 0, or -errno with *kind
 * what to count it as and *step naming what failed ("connect", "bind" or
 * "epoll"); the owner counts that and closes the stream.
 */
int hs_stream_connect(struct hs_stream *s, const struct sockaddr_storage *src,
                      const struct hs_tls_id *id, bool ws, enum hs_err *kind,
                      const char **step);

/*
 * Sends one message of the owner's, len bytes at pkt, which must have
 * HS_STREAM_HEADROOM free bytes before it: over WebSockets a binary
 * frame's head goes there and pkt is masked in place. Writes what TLS
 * takes now and queues the rest. Returns false when the stream failed.
 */
bool hs_stream_send(struct hs_stream *s, uint8_t *pkt, size_t len);

/* True while bytes wait in the queue: the owner may hold back more. */
bool hs_stream_backlog(const struct hs_stream *s);

/* Over WebSockets, sends a close frame with code; else does nothing. */
bool hs_stream_ws_close(struct hs_stream *s, uint16_t code);

/*
 * The owner said goodbye and waits for the peer's: a TLS read failure or
 * a WebSocket close from now on is ops->closed, not a failure.
 */
void hs_stream_closing(struct hs_stream *s);

/*
 * The owner's deadline for the stream's set-up passed after limit_ms:
 * reported through ops->fail as a TCP or a TLS or upgrade timeout.
 */
void hs_stream_expired(struct hs_stream *s, uint64_t limit_ms);

/* "tcp connect", "tls handshake", "websocket upgrade" (or "" up, down). */
const char *hs_stream_phase_name(const struct hs_stream *s);

/*
 * Closes the stream, if open: TLS close_notify first when graceful, then
 * the socket; frees what it held. s is down and may connect again.
 */
void hs_stream_close(struct hs_stream *s, bool graceful);

#endif
