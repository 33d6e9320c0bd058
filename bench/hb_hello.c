#include "hb_hello.h"

#include <string.h>

#define HB_HANDSHAKE_TARGET 512 /* the size browsers pad to */

struct hb_wbuf {
    uint8_t *p;
    size_t len;
};

static void hb__u8(struct hb_wbuf *w, unsigned v);
static void hb__u16(struct hb_wbuf *w, unsigned v);
static void hb__bytes(struct hb_wbuf *w, const void *src, size_t n);
static size_t hb__open(struct hb_wbuf *w, size_t width);
static void hb__close(struct hb_wbuf *w, size_t at, size_t width);
static void hb__fill(struct hb_wbuf *w, size_t n, unsigned seed);
static void hb__extensions(struct hb_wbuf *w, const char *sni, size_t hs_start);

size_t hb_hello_build(uint8_t *out, const char *sni)
{
    static const uint16_t suites[] = {0x1301, 0x1302, 0x1303, 0xc02b,
                                      0xc02f, 0xc02c, 0xc030, 0xcca9};
    size_t sni_len = strlen(sni);
    if (sni_len == 0 || sni_len > 255)
        return 0;
    struct hb_wbuf w = {.p = out};
    hb__u8(&w, 0x16); /* handshake record, legacy version TLS 1.0 */
    hb__u16(&w, 0x0301);
    size_t rec = hb__open(&w, 2);
    size_t hs_start = w.len;
    hb__u8(&w, 0x01); /* client_hello */
    size_t hs = hb__open(&w, 3);
    hb__u16(&w, 0x0303);
    hb__fill(&w, 32, 1); /* random */
    hb__u8(&w, 32);      /* legacy session id, as TLS 1.3 clients send */
    hb__fill(&w, 32, 2);
    hb__u16(&w, sizeof(suites));
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
        hb__u16(&w, suites[i]);
    hb__u8(&w, 1); /* compression methods: null */
    hb__u8(&w, 0);
    hb__extensions(&w, sni, hs_start);
    hb__close(&w, hs, 3);
    hb__close(&w, rec, 2);
    return w.len;
}

size_t hb_hello_record_len(const uint8_t *buf, size_t len)
{
    if (len < 5)
        return 0;
    return 5 + ((size_t)buf[3] << 8 | buf[4]);
}

/* The extension block; padding brings the handshake to its target size. */
static void hb__extensions(struct hb_wbuf *w, const char *sni, size_t hs_start)
{
    size_t sni_len = strlen(sni);
    size_t all = hb__open(w, 2);
    hb__u16(w, 0x0000); /* server_name */
    hb__u16(w, sni_len + 5);
    hb__u16(w, sni_len + 3);
    hb__u8(w, 0); /* host_name */
    hb__u16(w, sni_len);
    hb__bytes(w, sni, sni_len);
    static const uint8_t fixed[] = {
        0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04, /* supported_versions */
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, /* groups */
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04,
        0x04, 0x01,                               /* signature_algorithms */
        0x00, 0x2d, 0x00, 0x02, 0x01, 0x01,       /* psk_key_exchange_modes */
        0x00, 0x10, 0x00, 0x07, 0x00, 0x05, 0x04, /* ALPN: "mqtt" */
        'm',  'q',  't',  't'};
    hb__bytes(w, fixed, sizeof(fixed));
    hb__u16(w, 0x0033); /* key_share: one x25519 share */
    hb__u16(w, 38);
    hb__u16(w, 36);
    hb__u16(w, 0x001d);
    hb__u16(w, 32);
    hb__fill(w, 32, 3);
    size_t hs_len = w->len - hs_start;
    if (hs_len + 4 < HB_HANDSHAKE_TARGET) {
        size_t pad = HB_HANDSHAKE_TARGET - hs_len - 4;
        hb__u16(w, 0x0015); /* padding */
        hb__u16(w, pad);
        memset(w->p + w->len, 0, pad);
        w->len += pad;
    }
    hb__close(w, all, 2);
}

static void hb__u8(struct hb_wbuf *w, unsigned v)
{
    w->p[w->len++] = (uint8_t)v;
}

static void hb__u16(struct hb_wbuf *w, unsigned v)
{
    hb__u8(w, v >> 8);
    hb__u8(w, v);
}

static void hb__bytes(struct hb_wbuf *w, const void *src, size_t n)
{
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

/* Reserves a length field of width bytes; returns where it is. */
static size_t hb__open(struct hb_wbuf *w, size_t width)
{
    size_t at = w->len;
    w->len += width;
    return at;
}

/* Fills in the length field at `at` with the bytes written after it. */
static void hb__close(struct hb_wbuf *w, size_t at, size_t width)
{
    size_t n = w->len - at - width;
    for (size_t i = 0; i < width; i++)
        w->p[at + i] = (uint8_t)(n >> (8 * (width - 1 - i)));
}

/* Deterministic filler for the random, session id and key share. */
static void hb__fill(struct hb_wbuf *w, size_t n, unsigned seed)
{
    uint32_t x = 2463534242u * seed;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        w->p[w->len++] = (uint8_t)x;
    }
}
