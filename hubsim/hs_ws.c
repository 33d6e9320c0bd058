#include "hs_ws.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "hs_base64.h"

#define HS_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* What the answer's head said, header by header. */
struct hs__ws_head {
    bool upgrade;
    bool connection;
    bool accept_ok;
    bool protocol_seen;
    bool protocol_ok;
    bool extensions;
};

static bool hs__token_in_list(const char *v, size_t len, const char *token);
static const char *hs__status_line(const char *line, size_t len, int *status);
static const char *hs__header_line(const char *line, size_t len,
                                   const char *accept, const char *protocol,
                                   struct hs__ws_head *head);
static const char *hs__check_head(const struct hs__ws_head *head);
static bool hs__value_is(const char *v, size_t len, const char *want,
                         bool nocase);
static enum hs_ws_rc hs__fail(struct hs_ws_decoder *d, const char *why,
                              const char **reason);
static enum hs_ws_rc hs__take_header(struct hs_ws_decoder *d, const uint8_t *in,
                                     size_t len, size_t *off,
                                     const char **reason);
static const char *hs__first_bytes(struct hs_ws_decoder *d);
static const char *hs__length(struct hs_ws_decoder *d);
static enum hs_ws_rc hs__control_end(struct hs_ws_decoder *d,
                                     struct hs_ws_event *ev,
                                     const char **reason);

void hs_ws_key(const uint8_t nonce[16], char key[HS_WS_KEY_LEN + 1])
{
    hs_base64_encode(nonce, 16, key);
}

void hs_ws_accept(const char *key, char accept[HS_WS_ACCEPT_LEN + 1])
{
    char buf[128];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int n = snprintf(buf, sizeof(buf), "%s%s", key, HS_WS_GUID);
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = 0;
    EVP_Digest(buf, (size_t)n, digest, &dlen, EVP_sha1(), NULL);
    hs_base64_encode(digest, 20, accept);
}

size_t hs_ws_request(char *out, size_t cap, const char *host, const char *path,
                     const char *key, const char *protocol)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n"
                     "\r\n",
                     path, host, key, protocol);
    if (n < 0)
        return cap;
    return (size_t)n;
}

/* ------------------------------------------------------------------ */
/* The upgrade answer                                                  */
/* ------------------------------------------------------------------ */

enum hs_ws_rc hs_ws_response(const char *buf, size_t len, const char *key,
                             const char *protocol, size_t *used, int *status,
                             const char **reason)
{
    static const char http[] = "HTTP/1.";
    size_t cmp = len < sizeof(http) - 1 ? len : sizeof(http) - 1;
    *used = 0;
    *status = 0;
    if (memcmp(buf, http, cmp) != 0) {
        *reason = "not an HTTP answer";
        return HS_WS_ERROR;
    }
    const char *eol = memmem(buf, len, "\r\n", 2);
    if (eol != NULL) {
        const char *why = hs__status_line(buf, (size_t)(eol - buf), status);
        if (why != NULL) {
            *reason = why;
            return HS_WS_ERROR;
        }
    }
    /* Only the first HS_WS_RESPONSE_MAX bytes may hold the head, however
     * the bytes arrive. */
    size_t scan = len < HS_WS_RESPONSE_MAX ? len : HS_WS_RESPONSE_MAX;
    const char *end = memmem(buf, scan, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len < HS_WS_RESPONSE_MAX)
            return HS_WS_AGAIN;
        *reason = "upgrade answer too long";
        return HS_WS_ERROR;
    }
    char accept[HS_WS_ACCEPT_LEN + 1];
    hs_ws_accept(key, accept);
    struct hs__ws_head head = {0};
    const char *line = eol + 2;
    while (line < end + 2) {
        const char *le = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        const char *why =
            hs__header_line(line, (size_t)(le - line), accept, protocol, &head);
        if (why != NULL) {
            *reason = why;
            return HS_WS_ERROR;
        }
        line = le + 2;
    }
    const char *why = hs__check_head(&head);
    if (why != NULL) {
        *reason = why;
        return HS_WS_ERROR;
    }
    *used = (size_t)(end + 4 - buf);
    return HS_WS_OK;
}

/* "HTTP/1.x NNN text": stores NNN; anything but 101 is a refusal. */
static const char *hs__status_line(const char *line, size_t len, int *status)
{
    if (len < 12 || (line[7] != '0' && line[7] != '1') || line[8] != ' ')
        return "malformed HTTP status line";
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (line[i] < '0' || line[i] > '9')
            return "malformed HTTP status line";
        code = code * 10 + (line[i] - '0');
    }
    if (len > 12 && line[12] != ' ')
        return "malformed HTTP status line";
    *status = code;
    return code == 101 ? NULL : "upgrade refused (HTTP status not 101)";
}

/* One "Name: value" line of the head; notes what matters. */
static const char *hs__header_line(const char *line, size_t len,
                                   const char *accept, const char *protocol,
                                   struct hs__ws_head *head)
{
    if (len > 0 && (line[0] == ' ' || line[0] == '\t'))
        return "folded header line";
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line)
        return "malformed header line";
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
#define HS__IS(name)                                                           \
    (nlen == sizeof(name) - 1 && !strncasecmp(line, name, nlen))
    if (HS__IS("Upgrade"))
        head->upgrade = hs__value_is(v, vlen, "websocket", true);
    else if (HS__IS("Connection"))
        head->connection = hs__token_in_list(v, vlen, "upgrade");
    else if (HS__IS("Sec-WebSocket-Accept"))
        head->accept_ok = hs__value_is(v, vlen, accept, false);
    else if (HS__IS("Sec-WebSocket-Protocol")) {
        head->protocol_seen = true;
        head->protocol_ok = hs__value_is(v, vlen, protocol, false);
    } else if (HS__IS("Sec-WebSocket-Extensions"))
        head->extensions = vlen > 0;
#undef HS__IS
    return NULL;
}

static const char *hs__check_head(const struct hs__ws_head *head)
{
    if (!head->upgrade)
        return "no \"Upgrade: websocket\" in the answer";
    if (!head->connection)
        return "no \"Connection: upgrade\" in the answer";
    if (!head->accept_ok)
        return "wrong or missing Sec-WebSocket-Accept";
    if (!head->protocol_seen)
        return "the server chose no subprotocol";
    if (!head->protocol_ok)
        return "the server chose another subprotocol";
    if (head->extensions)
        return "the server chose an extension that was not offered";
    return NULL;
}

static bool hs__value_is(const char *v, size_t len, const char *want,
                         bool nocase)
{
    if (strlen(want) != len)
        return false;
    return nocase ? strncasecmp(v, want, len) == 0 : memcmp(v, want, len) == 0;
}

/* True when the comma-separated list v[0..len) holds token (any case). */
static bool hs__token_in_list(const char *v, size_t len, const char *token)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (hs__value_is(v + a, b - a, token, true))
            return true;
        i = j + 1;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* Frames out                                                          */
/* ------------------------------------------------------------------ */

size_t hs_ws_header_size(size_t len, bool masked)
{
    size_t n = len < 126 ? 2 : len < 65536 ? 4 : 10;
    return n + (masked ? 4 : 0);
}

size_t hs_ws_header(uint8_t *out, enum hs_ws_opcode opcode, size_t len,
                    const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)(0x80 | opcode);
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = (uint8_t)(m | len);
    } else if (len < 65536) {
        out[1] = m | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = m | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void hs_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], size_t offset)
{
    for (size_t i = 0; i < len; i++)
        data[i] ^= mask[(offset + i) & 3];
}

size_t hs_ws_frame(uint8_t *out, size_t cap, enum hs_ws_opcode opcode,
                   const uint8_t *payload, size_t len, const uint8_t *mask)
{
    size_t hlen = hs_ws_header_size(len, mask != NULL);
    if (hlen + len > cap)
        return hlen + len;
    hs_ws_header(out, opcode, len, mask);
    if (len)
        memmove(out + hlen, payload, len);
    if (mask)
        hs_ws_mask(out + hlen, len, mask, 0);
    return hlen + len;
}

/* ------------------------------------------------------------------ */
/* Frames in                                                           */
/* ------------------------------------------------------------------ */

void hs_ws_decoder_init(struct hs_ws_decoder *d)
{
    memset(d, 0, sizeof(*d));
    d->state = HS_WS_D_HEADER;
}

enum hs_ws_rc hs_ws_decode(struct hs_ws_decoder *d, const uint8_t *in,
                           size_t len, size_t *used, struct hs_ws_event *ev,
                           const char **reason)
{
    size_t off = 0;
    *used = 0;
    for (;;) {
        if (d->state == HS_WS_D_FAILED) {
            *reason = d->failure;
            return HS_WS_ERROR;
        }
        if (d->state == HS_WS_D_CLOSED) {
            if (off < len)
                return hs__fail(d, "data after a close frame", reason);
            *used = off;
            return HS_WS_AGAIN;
        }
        if (d->state == HS_WS_D_HEADER) {
            enum hs_ws_rc rc = hs__take_header(d, in, len, &off, reason);
            if (rc != HS_WS_OK) {
                *used = off;
                return rc;
            }
            if (d->left == 0 && (d->opcode & 0x08)) {
                *used = off;
                return hs__control_end(d, ev, reason);
            }
            continue;
        }
        /* HS_WS_D_PAYLOAD */
        size_t n = len - off < d->left ? len - off : (size_t)d->left;
        if (d->opcode & 0x08) {
            memcpy(d->ctl + d->ctl_len, in + off, n);
            d->ctl_len += (uint8_t)n;
            d->left -= n;
            off += n;
            *used = off;
            if (d->left)
                return HS_WS_AGAIN;
            return hs__control_end(d, ev, reason);
        }
        if (n == 0) {
            *used = off;
            return HS_WS_AGAIN;
        }
        *ev = (struct hs_ws_event){
            .type = HS_WS_EV_DATA, .data = in + off, .len = n};
        d->left -= n;
        off += n;
        if (d->left == 0)
            d->state = HS_WS_D_HEADER;
        *used = off;
        return HS_WS_OK;
    }
}

static enum hs_ws_rc hs__fail(struct hs_ws_decoder *d, const char *why,
                              const char **reason)
{
    d->state = HS_WS_D_FAILED;
    d->failure = why;
    *reason = why;
    return HS_WS_ERROR;
}

/*
 * Gathers header bytes from in at *off. OK once the header is whole (state
 * moves to PAYLOAD, or back to HEADER for an empty data frame), AGAIN when
 * the input ran out, ERROR when what is there is not allowed.
 */
static enum hs_ws_rc hs__take_header(struct hs_ws_decoder *d, const uint8_t *in,
                                     size_t len, size_t *off,
                                     const char **reason)
{
    for (;;) {
        size_t need = 2;
        if (d->hdr_len >= 2) {
            uint8_t l7 = d->hdr[1] & 0x7F;
            need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
        }
        if (d->hdr_len == need)
            break;
        if (*off == len)
            return HS_WS_AGAIN;
        d->hdr[d->hdr_len++] = in[(*off)++];
        if (d->hdr_len == 2) {
            const char *why = hs__first_bytes(d);
            if (why != NULL)
                return hs__fail(d, why, reason);
        }
    }
    const char *why = hs__length(d);
    if (why != NULL)
        return hs__fail(d, why, reason);
    d->hdr_len = 0;
    d->ctl_len = 0;
    bool data = !(d->opcode & 0x08);
    if (data)
        d->in_message = !d->fin;
    d->state = (data && d->left == 0) ? HS_WS_D_HEADER : HS_WS_D_PAYLOAD;
    return HS_WS_OK;
}

/* Checks the first two header bytes, as soon as they are in. */
static const char *hs__first_bytes(struct hs_ws_decoder *d)
{
    uint8_t b0 = d->hdr[0], b1 = d->hdr[1];
    d->fin = (b0 & 0x80) != 0;
    d->opcode = b0 & 0x0F;
    if (b0 & 0x70)
        return "reserved bits set in a frame";
    if (b1 & 0x80)
        return "masked frame from the server";
    switch (d->opcode) {
    case HS_WS_CONT:
        return d->in_message ? NULL : "continuation frame outside a message";
    case HS_WS_BINARY:
        return d->in_message ? "new message inside a fragmented one" : NULL;
    case HS_WS_TEXT:
        return "text frame (MQTT needs binary frames)";
    case HS_WS_CLOSE:
    case HS_WS_PING:
    case HS_WS_PONG:
        if (!d->fin)
            return "fragmented control frame";
        return (b1 & 0x7F) > HS_WS_CONTROL_MAX
                   ? "control frame longer than 125 bytes"
                   : NULL;
    default:
        return "reserved opcode";
    }
}

/* Reads the payload length from a whole header; minimal forms only. */
static const char *hs__length(struct hs_ws_decoder *d)
{
    uint8_t l7 = d->hdr[1] & 0x7F;
    uint64_t n = l7;
    if (l7 == 126) {
        n = (uint64_t)d->hdr[2] << 8 | d->hdr[3];
        if (n < 126)
            return "frame length not in its shortest form";
    } else if (l7 == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | d->hdr[2 + i];
        if (n >> 63)
            return "frame length over 2^63";
        if (n < 65536)
            return "frame length not in its shortest form";
    }
    d->left = n;
    return NULL;
}

/* A control frame is whole: turns it into an event. */
static enum hs_ws_rc hs__control_end(struct hs_ws_decoder *d,
                                     struct hs_ws_event *ev,
                                     const char **reason)
{
    d->state = HS_WS_D_HEADER;
    *ev = (struct hs_ws_event){.data = d->ctl, .len = d->ctl_len};
    switch (d->opcode) {
    case HS_WS_PING:
        ev->type = HS_WS_EV_PING;
        return HS_WS_OK;
    case HS_WS_PONG:
        ev->type = HS_WS_EV_PONG;
        return HS_WS_OK;
    default:
        if (d->ctl_len == 1)
            return hs__fail(d, "close frame with a one-byte body", reason);
        ev->type = HS_WS_EV_CLOSE;
        ev->close_code =
            d->ctl_len >= 2 ? (uint16_t)(d->ctl[0] << 8 | d->ctl[1]) : 1005;
        d->state = HS_WS_D_CLOSED;
        return HS_WS_OK;
    }
}
