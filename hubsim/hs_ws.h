/*
 * hs_ws: the client side of WebSocket (RFC 6455) as MQTT over WebSockets
 * needs it: the HTTP upgrade request and the check of its answer, masked
 * binary frames out, and an incremental frame decoder in.
 *
 * The decoder takes bytes as they come, in any split, and hands out events:
 * a slice of message payload (pointing into the caller's input), or a whole
 * control frame (PING, PONG, CLOSE, gathered in the decoder). It refuses
 * what a server must not send: masked frames, reserved bits and opcodes,
 * text frames (MQTT is binary), bad fragmentation, oversized or fragmented
 * control frames, non-minimal lengths, and anything after a CLOSE.
 */
#ifndef HS_WS_H
#define HS_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HS_WS_KEY_LEN      24   /* base64 of 16 random bytes */
#define HS_WS_ACCEPT_LEN   28   /* base64 of a SHA-1 */
#define HS_WS_MAX_HEADER   14   /* 2 + 8 length + 4 mask */
#define HS_WS_RESPONSE_MAX 8192 /* longest upgrade answer accepted */
#define HS_WS_CONTROL_MAX  125

enum hs_ws_rc {
    HS_WS_OK,
    HS_WS_AGAIN,
    HS_WS_ERROR,
};

enum hs_ws_opcode {
    HS_WS_CONT = 0x0,
    HS_WS_TEXT = 0x1,
    HS_WS_BINARY = 0x2,
    HS_WS_CLOSE = 0x8,
    HS_WS_PING = 0x9,
    HS_WS_PONG = 0xA,
};

enum hs_ws_event_type {
    HS_WS_EV_DATA, /* data, len: a piece of a binary message */
    HS_WS_EV_PING, /* data, len: its payload, to echo in a PONG */
    HS_WS_EV_PONG,
    HS_WS_EV_CLOSE, /* close_code: the status, 1005 when none was given */
};

struct hs_ws_event {
    enum hs_ws_event_type type;
    const uint8_t *data;
    size_t len;
    uint16_t close_code;
};

enum hs_ws_dstate {
    HS_WS_D_HEADER,
    HS_WS_D_PAYLOAD,
    HS_WS_D_CLOSED, /* a CLOSE came: nothing more may follow */
    HS_WS_D_FAILED,
};

struct hs_ws_decoder {
    enum hs_ws_dstate state;
    uint8_t hdr[HS_WS_MAX_HEADER];
    uint8_t hdr_len;
    uint8_t opcode; /* of the frame being read */
    bool fin;
    bool in_message; /* a fragmented data message is open */
    uint64_t left;   /* payload bytes still to come in this frame */
    uint8_t ctl[HS_WS_CONTROL_MAX];
    uint8_t ctl_len;
    const char *failure; /* the reason, once FAILED */
};

/* Base64 of nonce: the Sec-WebSocket-Key (24 characters and a NUL). */
void hs_ws_key(const uint8_t nonce[16], char key[HS_WS_KEY_LEN + 1]);

/* The Sec-WebSocket-Accept a server must answer to key. */
void hs_ws_accept(const char *key, char accept[HS_WS_ACCEPT_LEN + 1]);

/*
 * Writes the GET upgrade request for host and path, offering subprotocol
 * protocol. Returns its length (without a NUL); writes nothing when that is
 * cap or more.
 */
size_t hs_ws_request(char *out, size_t cap, const char *host, const char *path,
                     const char *key, const char *protocol);

/*
 * Checks the server's answer in buf[0..len): OK once the head is complete
 * and says 101 with the right Upgrade, Connection, Sec-WebSocket-Accept and
 * Sec-WebSocket-Protocol (*used = the head's length; what follows is frame
 * data), AGAIN when the head is not complete, ERROR with a reason otherwise.
 * *status gets the HTTP status as soon as it is known (0 before).
 */
enum hs_ws_rc hs_ws_response(const char *buf, size_t len, const char *key,
                             const char *protocol, size_t *used, int *status,
                             const char **reason);

/* Frame header bytes for a payload of len bytes (2, 4 or 10, +4 masked). */
size_t hs_ws_header_size(size_t len, bool masked);

/*
 * Writes a final frame's header for opcode and len payload bytes, masked
 * with mask when it is not NULL. Returns the header's length.
 */
size_t hs_ws_header(uint8_t *out, enum hs_ws_opcode opcode, size_t len,
                    const uint8_t *mask);

/* XORs data with mask; offset is data's position in the frame payload. */
void hs_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4],
                size_t offset);

/*
 * Writes a whole final frame (header, then payload masked with mask when
 * not NULL). Returns the frame's size; writes nothing when it exceeds cap.
 */
size_t hs_ws_frame(uint8_t *out, size_t cap, enum hs_ws_opcode opcode,
                   const uint8_t *payload, size_t len, const uint8_t *mask);

void hs_ws_decoder_init(struct hs_ws_decoder *d);

/*
 * Consumes input from in[0..len). OK: *ev holds an event and *used the
 * bytes consumed to reach it. AGAIN: every byte was consumed (*used = len)
 * and no event is complete. ERROR: *reason says why; the decoder stays
 * failed. Event data stays valid until the next call.
 */
enum hs_ws_rc hs_ws_decode(struct hs_ws_decoder *d, const uint8_t *in,
                           size_t len, size_t *used, struct hs_ws_event *ev,
                           const char **reason);

#endif
