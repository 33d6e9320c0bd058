#include "hs_mqtt.h"

#include <string.h>

/* A read cursor over a packet body. */
struct hs__cur {
    const uint8_t *p;
    size_t left;
};

static size_t hs__varint_size(size_t value);
static uint8_t *hs__put_header(uint8_t *out, uint8_t first, size_t remaining);
static uint8_t *hs__put_u16(uint8_t *out, uint16_t v);
static uint8_t *hs__put_str(uint8_t *out, struct hs_mqtt_str s);
static size_t hs__finish_size(size_t remaining);
static enum hs_mqtt_rc hs__header(const uint8_t *buf, size_t len,
                                  size_t *remaining, size_t *hlen,
                                  const char **reason);
static const char *hs__check_flags(unsigned type, unsigned flags);
static bool hs__u8(struct hs__cur *c, uint8_t *v);
static bool hs__u16(struct hs__cur *c, uint16_t *v);
static bool hs__str(struct hs__cur *c, struct hs_mqtt_str *s);
static const char *hs__body(struct hs_mqtt_packet *pkt, struct hs__cur *c);
static const char *hs__connect(struct hs_mqtt_connect *m, struct hs__cur *c);
static const char *hs__connect_payload(struct hs_mqtt_connect *m,
                                       struct hs__cur *c, uint8_t flags);
static const char *hs__connack(struct hs_mqtt_connack *m, struct hs__cur *c);
static const char *hs__publish(struct hs_mqtt_publish *m, uint8_t flags,
                               struct hs__cur *c);
static const char *hs__subscribe(struct hs_mqtt_subscribe *m,
                                 struct hs__cur *c);
static const char *hs__unsubscribe(uint16_t *packet_id, struct hs__cur *c);
static const char *hs__suback(struct hs_mqtt_suback *m, struct hs__cur *c);
static const char *hs__packet_id(uint16_t *id, struct hs__cur *c);
static bool hs__filter_valid(struct hs_mqtt_str f);

static const char *const hs__type_names[16] = {
    "reserved", "CONNECT",  "CONNACK",    "PUBLISH",  "PUBACK",      "PUBREC",
    "PUBREL",   "PUBCOMP",  "SUBSCRIBE",  "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
    "PINGREQ",  "PINGRESP", "DISCONNECT", "reserved",
};

static const char *const hs__connack_texts[] = {
    "accepted",
    "unacceptable protocol version",
    "identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
};

struct hs_mqtt_str hs_mqtt_cstr(const char *s)
{
    return (struct hs_mqtt_str){s, s ? strlen(s) : 0};
}

const char *hs_mqtt_type_name(unsigned type)
{
    return type < 16 ? hs__type_names[type] : "reserved";
}

const char *hs_mqtt_connack_text(unsigned code)
{
    if (code < sizeof(hs__connack_texts) / sizeof(hs__connack_texts[0]))
        return hs__connack_texts[code];
    return "reserved return code";
}

/*
 * Checks UTF-8 as MQTT 3.1.1 section 1.5.3 wants it: no overlong forms, no
 * surrogates, nothing above U+10FFFF, and no U+0000.
 */
bool hs_mqtt_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

/* Bytes of the variable-length Remaining Length field for value. */
static size_t hs__varint_size(size_t value)
{
    if (value < 128)
        return 1;
    if (value < 16384)
        return 2;
    if (value < 2097152)
        return 3;
    return 4;
}

/* Whole packet size for a body, or 0 when the body is over the limit. */
static size_t hs__finish_size(size_t remaining)
{
    if (remaining > HS_MQTT_MAX_REMAINING)
        return 0;
    return 1 + hs__varint_size(remaining) + remaining;
}

static uint8_t *hs__put_header(uint8_t *out, uint8_t first, size_t remaining)
{
    *out++ = first;
    do {
        uint8_t b = remaining % 128;
        remaining /= 128;
        *out++ = b | (remaining ? 0x80 : 0);
    } while (remaining);
    return out;
}

static uint8_t *hs__put_u16(uint8_t *out, uint16_t v)
{
    out[0] = (uint8_t)(v >> 8);
    out[1] = (uint8_t)v;
    return out + 2;
}

static uint8_t *hs__put_str(uint8_t *out, struct hs_mqtt_str s)
{
    out = hs__put_u16(out, (uint16_t)s.len);
    if (s.len)
        memcpy(out, s.ptr, s.len);
    return out + s.len;
}

size_t hs_mqtt_connect_encode(uint8_t *out, size_t cap,
                              const struct hs_mqtt_connect *c)
{
    if (c->client_id.len > 65535 || c->username.len > 65535 ||
        c->password.len > 65535)
        return 0;
    if (c->password.ptr != NULL && c->username.ptr == NULL)
        return 0; /* 3.1.1 forbids a password without a user name */
    size_t rem = 10 + 2 + c->client_id.len;
    uint8_t flags = c->clean_session ? 0x02 : 0;
    if (c->username.ptr != NULL) {
        rem += 2 + c->username.len;
        flags |= 0x80;
    }
    if (c->password.ptr != NULL) {
        rem += 2 + c->password.len;
        flags |= 0x40;
    }
    size_t size = hs__finish_size(rem);
    if (size == 0 || size > cap)
        return size;
    uint8_t *p = hs__put_header(out, HS_MQTT_CONNECT << 4, rem);
    p = hs__put_str(p, hs_mqtt_cstr("MQTT"));
    *p++ = 4; /* protocol level 3.1.1 */
    *p++ = flags;
    p = hs__put_u16(p, c->keepalive);
    p = hs__put_str(p, c->client_id);
    if (c->username.ptr != NULL)
        p = hs__put_str(p, c->username);
    if (c->password.ptr != NULL)
        hs__put_str(p, c->password);
    return size;
}

size_t hs_mqtt_connack_encode(uint8_t *out, size_t cap,
                              const struct hs_mqtt_connack *c)
{
    if (cap < 4)
        return 4;
    uint8_t *p = hs__put_header(out, HS_MQTT_CONNACK << 4, 2);
    p[0] = c->session_present ? 1 : 0;
    p[1] = c->code;
    return 4;
}

size_t hs_mqtt_publish_encode(uint8_t *out, size_t cap,
                              const struct hs_mqtt_publish *p)
{
    if (p->topic.len > 65535 || p->qos > 2)
        return 0;
    size_t rem = 2 + p->topic.len + (p->qos ? 2 : 0) + p->payload_len;
    size_t size = hs__finish_size(rem);
    if (size == 0 || size > cap)
        return size;
    uint8_t first = (uint8_t)(HS_MQTT_PUBLISH << 4 | p->qos << 1);
    first |= (p->dup ? HS_MQTT_DUP : 0) | (p->retain ? 0x01 : 0);
    uint8_t *w = hs__put_header(out, first, rem);
    w = hs__put_str(w, p->topic);
    if (p->qos)
        w = hs__put_u16(w, p->packet_id);
    if (p->payload_len)
        memcpy(w, p->payload, p->payload_len);
    return size;
}

size_t hs_mqtt_subscribe_encode(uint8_t *out, size_t cap,
                                const struct hs_mqtt_subscribe *s)
{
    if (s->filter.len > 65535 || s->qos > 2)
        return 0;
    size_t rem = 2 + 2 + s->filter.len + 1;
    size_t size = hs__finish_size(rem);
    if (size > cap)
        return size;
    uint8_t *p = hs__put_header(out, HS_MQTT_SUBSCRIBE << 4 | 0x02, rem);
    p = hs__put_u16(p, s->packet_id);
    p = hs__put_str(p, s->filter);
    *p = s->qos;
    return size;
}

size_t hs_mqtt_suback_encode(uint8_t *out, size_t cap,
                             const struct hs_mqtt_suback *s)
{
    size_t rem = 2 + s->count;
    size_t size = hs__finish_size(rem);
    if (size == 0 || size > cap)
        return size;
    uint8_t *p = hs__put_header(out, HS_MQTT_SUBACK << 4, rem);
    p = hs__put_u16(p, s->packet_id);
    if (s->count)
        memcpy(p, s->codes, s->count);
    return size;
}

size_t hs_mqtt_ack_encode(uint8_t *out, size_t cap, enum hs_mqtt_type type,
                          uint16_t packet_id)
{
    if (cap < 4)
        return 4;
    uint8_t flags = type == HS_MQTT_PUBREL ? 0x02 : 0;
    uint8_t *p = hs__put_header(out, (uint8_t)(type << 4 | flags), 2);
    hs__put_u16(p, packet_id);
    return 4;
}

size_t hs_mqtt_empty_encode(uint8_t *out, size_t cap, enum hs_mqtt_type type)
{
    if (cap < 2)
        return 2;
    hs__put_header(out, (uint8_t)(type << 4), 0);
    return 2;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                            */
/* ------------------------------------------------------------------ */

enum hs_mqtt_rc hs_mqtt_decode(const uint8_t *buf, size_t len, size_t max_size,
                               struct hs_mqtt_packet *pkt, size_t *used,
                               const char **reason)
{
    *used = 0;
    if (len == 0)
        return HS_MQTT_AGAIN;
    unsigned type = buf[0] >> 4, flags = buf[0] & 0x0F;
    const char *why = hs__check_flags(type, flags);
    if (why != NULL) {
        *reason = why;
        return HS_MQTT_ERROR;
    }
    size_t remaining, hlen;
    enum hs_mqtt_rc rc = hs__header(buf, len, &remaining, &hlen, reason);
    if (rc != HS_MQTT_OK)
        return rc;
    if (hlen + remaining > max_size) {
        *reason = "packet larger than the limit";
        return HS_MQTT_ERROR;
    }
    if (len - hlen < remaining)
        return HS_MQTT_AGAIN;
    memset(pkt, 0, sizeof(*pkt));
    pkt->type = (enum hs_mqtt_type)type;
    pkt->flags = (uint8_t)flags;
    pkt->remaining = remaining;
    struct hs__cur c = {buf + hlen, remaining};
    why = hs__body(pkt, &c);
    if (why == NULL && c.left != 0)
        why = "bytes left over after the packet's fields";
    if (why != NULL) {
        *reason = why;
        return HS_MQTT_ERROR;
    }
    *used = hlen + remaining;
    return HS_MQTT_OK;
}

/* Reads the Remaining Length field: OK, AGAIN or ERROR. */
static enum hs_mqtt_rc hs__header(const uint8_t *buf, size_t len,
                                  size_t *remaining, size_t *hlen,
                                  const char **reason)
{
    size_t value = 0, mult = 1;
    for (size_t i = 1; i <= 4; i++) {
        if (i >= len)
            return HS_MQTT_AGAIN;
        value += (size_t)(buf[i] & 0x7F) * mult;
        if (!(buf[i] & 0x80)) {
            *remaining = value;
            *hlen = i + 1;
            return HS_MQTT_OK;
        }
        mult *= 128;
    }
    *reason = "remaining length longer than four bytes";
    return HS_MQTT_ERROR;
}

/* The fixed header's flags each type must carry (3.1.1 table 2.2). */
static const char *hs__check_flags(unsigned type, unsigned flags)
{
    switch (type) {
    case 0:
    case 15:
        return "reserved packet type";
    case HS_MQTT_PUBLISH:
        if ((flags & 0x06) == 0x06)
            return "PUBLISH with QoS 3";
        if ((flags & 0x08) && !(flags & 0x06))
            return "PUBLISH with DUP set at QoS 0";
        return NULL;
    case HS_MQTT_PUBREL:
    case HS_MQTT_SUBSCRIBE:
    case HS_MQTT_UNSUBSCRIBE:
        return flags == 0x02 ? NULL : "reserved flags not 0010";
    default:
        return flags == 0 ? NULL : "reserved flags not 0000";
    }
}

static bool hs__u8(struct hs__cur *c, uint8_t *v)
{
    if (c->left < 1)
        return false;
    *v = c->p[0];
    c->p++;
    c->left--;
    return true;
}

static bool hs__u16(struct hs__cur *c, uint16_t *v)
{
    if (c->left < 2)
        return false;
    *v = (uint16_t)(c->p[0] << 8 | c->p[1]);
    c->p += 2;
    c->left -= 2;
    return true;
}

/* A length-prefixed string; its bytes are not checked here. */
static bool hs__str(struct hs__cur *c, struct hs_mqtt_str *s)
{
    uint16_t n;
    if (!hs__u16(c, &n) || c->left < n)
        return false;
    s->ptr = (const char *)c->p;
    s->len = n;
    c->p += n;
    c->left -= n;
    return true;
}

/* Dispatches to the body parser of the packet's type. */
static const char *hs__body(struct hs_mqtt_packet *pkt, struct hs__cur *c)
{
    switch (pkt->type) {
    case HS_MQTT_CONNECT:
        return hs__connect(&pkt->u.connect, c);
    case HS_MQTT_CONNACK:
        return hs__connack(&pkt->u.connack, c);
    case HS_MQTT_PUBLISH:
        return hs__publish(&pkt->u.publish, pkt->flags, c);
    case HS_MQTT_SUBSCRIBE:
        return hs__subscribe(&pkt->u.subscribe, c);
    case HS_MQTT_SUBACK:
        return hs__suback(&pkt->u.suback, c);
    case HS_MQTT_UNSUBSCRIBE:
        return hs__unsubscribe(&pkt->u.packet_id, c);
    case HS_MQTT_PUBACK:
    case HS_MQTT_PUBREC:
    case HS_MQTT_PUBREL:
    case HS_MQTT_PUBCOMP:
    case HS_MQTT_UNSUBACK:
        return hs__packet_id(&pkt->u.packet_id, c);
    case HS_MQTT_PINGREQ:
    case HS_MQTT_PINGRESP:
    case HS_MQTT_DISCONNECT:
        return c->left == 0 ? NULL : "non-empty body";
    }
    return "reserved packet type";
}

/* A packet identifier that must not be 0. */
static const char *hs__packet_id(uint16_t *id, struct hs__cur *c)
{
    if (!hs__u16(c, id))
        return "packet identifier cut short";
    return *id == 0 ? "packet identifier 0" : NULL;
}

/* CONNECT, as 3.1.1 section 3.1; a will is declined (no use here). */
static const char *hs__connect(struct hs_mqtt_connect *m, struct hs__cur *c)
{
    struct hs_mqtt_str proto;
    uint8_t level, flags;
    if (!hs__str(c, &proto) || !hs__u8(c, &level) || !hs__u8(c, &flags) ||
        !hs__u16(c, &m->keepalive))
        return "CONNECT header cut short";
    if (proto.len != 4 || memcmp(proto.ptr, "MQTT", 4) != 0)
        return "protocol name not MQTT";
    if (level != 4)
        return "protocol level not 4 (3.1.1)";
    if (flags & 0x01)
        return "reserved connect flag set";
    if (flags & 0x3C)
        return "CONNECT with a will is not supported";
    if ((flags & 0x40) && !(flags & 0x80))
        return "password without a user name";
    m->clean_session = (flags & 0x02) != 0;
    return hs__connect_payload(m, c, flags);
}

static const char *hs__connect_payload(struct hs_mqtt_connect *m,
                                       struct hs__cur *c, uint8_t flags)
{
    if (!hs__str(c, &m->client_id))
        return "client identifier cut short";
    if (!hs_mqtt_utf8_valid(m->client_id.ptr, m->client_id.len))
        return "client identifier not valid UTF-8";
    if (flags & 0x80) {
        if (!hs__str(c, &m->username))
            return "user name cut short";
        if (!hs_mqtt_utf8_valid(m->username.ptr, m->username.len))
            return "user name not valid UTF-8";
    }
    if ((flags & 0x40) && !hs__str(c, &m->password))
        return "password cut short";
    return NULL;
}

static const char *hs__connack(struct hs_mqtt_connack *m, struct hs__cur *c)
{
    uint8_t ack, code;
    if (c->left != 2)
        return "CONNACK body not 2 bytes";
    hs__u8(c, &ack);
    hs__u8(c, &code);
    if (ack & 0xFE)
        return "reserved CONNACK flags set";
    if (code > HS_MQTT_NOT_AUTHORIZED)
        return "reserved CONNACK return code";
    if (code != 0 && (ack & 1))
        return "session present with a refusal";
    m->session_present = ack & 1;
    m->code = code;
    return NULL;
}

static const char *hs__publish(struct hs_mqtt_publish *m, uint8_t flags,
                               struct hs__cur *c)
{
    m->qos = (flags >> 1) & 3;
    m->dup = (flags & HS_MQTT_DUP) != 0;
    m->retain = (flags & 0x01) != 0;
    if (!hs__str(c, &m->topic))
        return "topic name cut short";
    if (m->topic.len == 0)
        return "empty topic name";
    if (!hs_mqtt_utf8_valid(m->topic.ptr, m->topic.len))
        return "topic name not valid UTF-8";
    if (memchr(m->topic.ptr, '+', m->topic.len) ||
        memchr(m->topic.ptr, '#', m->topic.len))
        return "wildcard in a topic name";
    if (m->qos) {
        const char *why = hs__packet_id(&m->packet_id, c);
        if (why != NULL)
            return why;
    }
    m->payload = c->p;
    m->payload_len = c->left;
    c->p += c->left;
    c->left = 0;
    return NULL;
}

/*
 * A topic filter: non-empty UTF-8, '#' only as the whole last level and
 * '+' only as a whole level.
 */
static bool hs__filter_valid(struct hs_mqtt_str f)
{
    if (f.len == 0 || !hs_mqtt_utf8_valid(f.ptr, f.len))
        return false;
    for (size_t i = 0; i < f.len; i++) {
        char ch = f.ptr[i];
        if (ch != '#' && ch != '+')
            continue;
        bool starts = i == 0 || f.ptr[i - 1] == '/';
        bool ends = i + 1 == f.len || f.ptr[i + 1] == '/';
        if (!starts || !ends || (ch == '#' && i + 1 != f.len))
            return false;
    }
    return true;
}

static const char *hs__subscribe(struct hs_mqtt_subscribe *m, struct hs__cur *c)
{
    const char *why = hs__packet_id(&m->packet_id, c);
    if (why != NULL)
        return why;
    if (c->left == 0)
        return "SUBSCRIBE without a topic filter";
    while (c->left) {
        struct hs_mqtt_str f;
        uint8_t qos;
        if (!hs__str(c, &f) || !hs__u8(c, &qos))
            return "topic filter cut short";
        if (!hs__filter_valid(f))
            return "invalid topic filter";
        if (qos > 2)
            return "requested QoS above 2";
        if (m->count++ == 0) {
            m->filter = f;
            m->qos = qos;
        }
    }
    return NULL;
}

static const char *hs__unsubscribe(uint16_t *packet_id, struct hs__cur *c)
{
    const char *why = hs__packet_id(packet_id, c);
    if (why != NULL)
        return why;
    if (c->left == 0)
        return "UNSUBSCRIBE without a topic filter";
    while (c->left) {
        struct hs_mqtt_str f;
        if (!hs__str(c, &f))
            return "topic filter cut short";
        if (!hs__filter_valid(f))
            return "invalid topic filter";
    }
    return NULL;
}

static const char *hs__suback(struct hs_mqtt_suback *m, struct hs__cur *c)
{
    const char *why = hs__packet_id(&m->packet_id, c);
    if (why != NULL)
        return why;
    if (c->left == 0)
        return "SUBACK without a return code";
    for (size_t i = 0; i < c->left; i++)
        if (c->p[i] > 2 && c->p[i] != 0x80)
            return "reserved SUBACK return code";
    m->codes = c->p;
    m->count = c->left;
    c->p += c->left;
    c->left = 0;
    return NULL;
}
