/*
 * hs_mqtt: the MQTT 3.1.1 packets a device needs, encoded and decoded.
 *
 * Encoders write one whole packet into a caller's buffer. Each returns the
 * packet's size; when that is larger than cap nothing is written and the
 * caller may retry with more room. 0 means the packet cannot be encoded at
 * all (a string over 65535 bytes, a body over the protocol's limit).
 *
 * The decoder is incremental: hs_mqtt_decode() looks at the bytes received
 * so far and answers OK (one packet, its size in *used), AGAIN (not whole
 * yet; call again with more) or ERROR (a static reason). It never reads
 * past len, and declines a packet larger than the caller's limit as soon as
 * its length is known. Decoded strings and payloads point into the buffer.
 */
#ifndef HS_MQTT_H
#define HS_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HS_MQTT_MAX_REMAINING 268435455u /* four length bytes */
#define HS_MQTT_MAX_HEADER    5

enum hs_mqtt_type {
    HS_MQTT_CONNECT = 1,
    HS_MQTT_CONNACK = 2,
    HS_MQTT_PUBLISH = 3,
    HS_MQTT_PUBACK = 4,
    HS_MQTT_PUBREC = 5,
    HS_MQTT_PUBREL = 6,
    HS_MQTT_PUBCOMP = 7,
    HS_MQTT_SUBSCRIBE = 8,
    HS_MQTT_SUBACK = 9,
    HS_MQTT_UNSUBSCRIBE = 10,
    HS_MQTT_UNSUBACK = 11,
    HS_MQTT_PINGREQ = 12,
    HS_MQTT_PINGRESP = 13,
    HS_MQTT_DISCONNECT = 14,
};

enum hs_mqtt_rc {
    HS_MQTT_OK,
    HS_MQTT_AGAIN,
    HS_MQTT_ERROR,
};

/* CONNACK return codes (3.1.1 section 3.2.2.3). */
enum hs_mqtt_connack_code {
    HS_MQTT_ACCEPTED = 0,
    HS_MQTT_BAD_PROTOCOL = 1,
    HS_MQTT_ID_REJECTED = 2,
    HS_MQTT_UNAVAILABLE = 3,
    HS_MQTT_BAD_CREDENTIALS = 4,
    HS_MQTT_NOT_AUTHORIZED = 5,
};

/* A length-counted string; ptr NULL means "absent" where that is allowed. */
struct hs_mqtt_str {
    const char *ptr;
    size_t len;
};

struct hs_mqtt_connect {
    struct hs_mqtt_str client_id;
    struct hs_mqtt_str username; /* ptr NULL: no username flag */
    struct hs_mqtt_str password; /* ptr NULL: no password flag */
    uint16_t keepalive;          /* seconds */
    bool clean_session;
};

struct hs_mqtt_connack {
    bool session_present;
    uint8_t code; /* enum hs_mqtt_connack_code */
};

#define HS_MQTT_DUP 0x08 /* in a PUBLISH's first byte: sent before */

struct hs_mqtt_publish {
    struct hs_mqtt_str topic;
    const uint8_t *payload;
    size_t payload_len;
    uint16_t packet_id; /* QoS > 0 only */
    uint8_t qos;
    bool dup;
    bool retain;
};

/* A SUBSCRIBE with one or more filters; decoding reports the first. */
struct hs_mqtt_subscribe {
    uint16_t packet_id;
    struct hs_mqtt_str filter;
    uint8_t qos;
    size_t count;
};

struct hs_mqtt_suback {
    uint16_t packet_id;
    const uint8_t *codes; /* 0, 1, 2 or 0x80 each */
    size_t count;
};

struct hs_mqtt_packet {
    enum hs_mqtt_type type;
    uint8_t flags;    /* low nibble of the first byte */
    size_t remaining; /* body length */
    union {
        struct hs_mqtt_connect connect;
        struct hs_mqtt_connack connack;
        struct hs_mqtt_publish publish;
        struct hs_mqtt_subscribe subscribe;
        struct hs_mqtt_suback suback;
        uint16_t packet_id; /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUB* */
    } u;
};

/* A string from a NUL-terminated C string (NULL stays absent). */
struct hs_mqtt_str hs_mqtt_cstr(const char *s);

size_t hs_mqtt_connect_encode(uint8_t *out, size_t cap,
                              const struct hs_mqtt_connect *c);
size_t hs_mqtt_connack_encode(uint8_t *out, size_t cap,
                              const struct hs_mqtt_connack *c);
size_t hs_mqtt_publish_encode(uint8_t *out, size_t cap,
                              const struct hs_mqtt_publish *p);
size_t hs_mqtt_subscribe_encode(uint8_t *out, size_t cap,
                                const struct hs_mqtt_subscribe *s);
size_t hs_mqtt_suback_encode(uint8_t *out, size_t cap,
                             const struct hs_mqtt_suback *s);

/* PUBACK, PUBREC, PUBCOMP (PUBREL gets its reserved flags) with an id. */
size_t hs_mqtt_ack_encode(uint8_t *out, size_t cap, enum hs_mqtt_type type,
                          uint16_t packet_id);

/* PINGREQ, PINGRESP, DISCONNECT: two bytes. */
size_t hs_mqtt_empty_encode(uint8_t *out, size_t cap, enum hs_mqtt_type type);

/*
 * Decodes the packet at the start of buf[0..len). max_size caps the whole
 * packet (header included). On OK fills *pkt and sets *used to the packet's
 * size; on AGAIN and ERROR *used is 0. *reason is set on ERROR only.
 */
enum hs_mqtt_rc hs_mqtt_decode(const uint8_t *buf, size_t len, size_t max_size,
                               struct hs_mqtt_packet *pkt, size_t *used,
                               const char **reason);

/* The packet type's name ("CONNACK"), or "reserved". */
const char *hs_mqtt_type_name(unsigned type);

/* A CONNACK return code's meaning ("not authorized"). */
const char *hs_mqtt_connack_text(unsigned code);

/* True when s[0..len) is well-formed UTF-8 without U+0000. */
bool hs_mqtt_utf8_valid(const char *s, size_t len);

#endif
