/*
 * Fuzz target for the MQTT decoder, as a device meets it: a stream of
 * packets cut anywhere. For every input the decoder must
 *   - give the same packets whether the stream comes whole or in pieces
 *     (piece sizes taken from the input's first byte);
 *   - answer AGAIN, never ERROR or OK, for any prefix of a good packet;
 *   - produce the very same bytes when a decoded packet is encoded again
 *     (for the packets hs_mqtt encodes, when the length was minimal).
 * Any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hs_mqtt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PACKETS 64

struct seen {
    size_t n;
    size_t sizes[MAX_PACKETS];
    uint8_t types[MAX_PACKETS];
    const char *error;
};

static void decode_whole(const uint8_t *s, size_t len, size_t max,
                         struct seen *out);
static void decode_pieces(const uint8_t *s, size_t len, size_t max, size_t step,
                          struct seen *out);
static void check_prefixes(const uint8_t *pkt, size_t n, size_t max);
static void check_reencode(const struct hs_mqtt_packet *p, const uint8_t *pkt,
                           size_t n);
static size_t reencode(const struct hs_mqtt_packet *p, uint8_t *out,
                       size_t cap);

/* Decodes packet after packet from one buffer. */
static void decode_whole(const uint8_t *s, size_t len, size_t max,
                         struct seen *out)
{
    size_t off = 0;
    memset(out, 0, sizeof(*out));
    while (out->n < MAX_PACKETS) {
        struct hs_mqtt_packet p;
        size_t used = 0;
        const char *why = NULL;
        enum hs_mqtt_rc rc =
            hs_mqtt_decode(s + off, len - off, max, &p, &used, &why);
        if (rc == HS_MQTT_ERROR) {
            out->error = why;
            return;
        }
        if (rc == HS_MQTT_AGAIN)
            return;
        check_prefixes(s + off, used, max);
        check_reencode(&p, s + off, used);
        out->sizes[out->n] = used;
        out->types[out->n++] = (uint8_t)p.type;
        off += used;
    }
}

/* The same stream arriving step bytes at a time into a growing buffer. */
static void decode_pieces(const uint8_t *s, size_t len, size_t max, size_t step,
                          struct seen *out)
{
    uint8_t *buf = malloc(len + 1);
    size_t have = 0, start = 0;
    memset(out, 0, sizeof(*out));
    while (have < len && out->n < MAX_PACKETS && out->error == NULL) {
        size_t k = len - have < step ? len - have : step;
        memcpy(buf + have, s + have, k);
        have += k;
        while (out->n < MAX_PACKETS) {
            struct hs_mqtt_packet p;
            size_t used = 0;
            const char *why = NULL;
            enum hs_mqtt_rc rc =
                hs_mqtt_decode(buf + start, have - start, max, &p, &used, &why);
            if (rc == HS_MQTT_ERROR)
                out->error = why;
            if (rc != HS_MQTT_OK)
                break;
            out->sizes[out->n] = used;
            out->types[out->n++] = (uint8_t)p.type;
            start += used;
        }
    }
    free(buf);
}

/* Every strict prefix of a good packet is AGAIN. */
static void check_prefixes(const uint8_t *pkt, size_t n, size_t max)
{
    size_t cuts[] = {0, 1, 2, n / 2, n - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        struct hs_mqtt_packet p;
        size_t used;
        const char *why;
        if (cuts[i] >= n)
            continue;
        if (hs_mqtt_decode(pkt, cuts[i], max, &p, &used, &why) != HS_MQTT_AGAIN)
            abort();
    }
}

static void check_reencode(const struct hs_mqtt_packet *p, const uint8_t *pkt,
                           size_t n)
{
    size_t minimal = 1 +
                     (p->remaining < 128       ? 1
                      : p->remaining < 16384   ? 2
                      : p->remaining < 2097152 ? 3
                                               : 4) +
                     p->remaining;
    if (minimal != n)
        return; /* a padded length: the encoder always writes the shortest */
    if (p->type == HS_MQTT_SUBSCRIBE && p->u.subscribe.count != 1)
        return; /* the encoder writes one filter */
    if (p->type == HS_MQTT_UNSUBSCRIBE)
        return;
    uint8_t *out = malloc(n + 16);
    size_t m = reencode(p, out, n + 16);
    if (m != n || memcmp(out, pkt, n) != 0)
        abort();
    free(out);
}

static size_t reencode(const struct hs_mqtt_packet *p, uint8_t *out, size_t cap)
{
    switch (p->type) {
    case HS_MQTT_CONNECT:
        return hs_mqtt_connect_encode(out, cap, &p->u.connect);
    case HS_MQTT_CONNACK:
        return hs_mqtt_connack_encode(out, cap, &p->u.connack);
    case HS_MQTT_PUBLISH:
        return hs_mqtt_publish_encode(out, cap, &p->u.publish);
    case HS_MQTT_SUBSCRIBE:
        return hs_mqtt_subscribe_encode(out, cap, &p->u.subscribe);
    case HS_MQTT_SUBACK:
        return hs_mqtt_suback_encode(out, cap, &p->u.suback);
    case HS_MQTT_PINGREQ:
    case HS_MQTT_PINGRESP:
    case HS_MQTT_DISCONNECT:
        return hs_mqtt_empty_encode(out, cap, p->type);
    default:
        return hs_mqtt_ack_encode(out, cap, p->type, p->u.packet_id);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 16) + 1;
    size_t max = data[0] & 0x80 ? 64 : 1u << 20;
    struct seen whole, pieces;
    decode_whole(data + 1, size - 1, max, &whole);
    decode_pieces(data + 1, size - 1, max, step, &pieces);
    if (whole.n != pieces.n || whole.error != pieces.error)
        abort();
    for (size_t i = 0; i < whole.n; i++)
        if (whole.sizes[i] != pieces.sizes[i] ||
            whole.types[i] != pieces.types[i])
            abort();
    return 0;
}
