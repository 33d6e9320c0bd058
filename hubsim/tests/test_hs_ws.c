/*
 * Tests for hs_ws: the upgrade request and the checks of its answer (RFC
 * 6455 section 4), frames out (the RFC's own examples), and the frame
 * decoder over every split of its input and every frame a server must not
 * send.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hs_ws.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

/* What decoding a whole input gave: data bytes and control events. */
struct result {
    uint8_t data[80000];
    size_t data_len;
    int pings, pongs, closes;
    uint16_t close_code;
    uint8_t ping[HS_WS_CONTROL_MAX];
    size_t ping_len;
    const char *error;
};

static void feed(struct hs_ws_decoder *d, const uint8_t *in, size_t len,
                 struct result *r);
static void decode_split(const uint8_t *in, size_t len, size_t step,
                         struct result *r);
static const char *decode_error(const uint8_t *in, size_t len);
static char *answer(const char *extra_headers);

/* Runs the decoder over in, gathering what it hands out into r. */
static void feed(struct hs_ws_decoder *d, const uint8_t *in, size_t len,
                 struct result *r)
{
    size_t off = 0;
    while (r->error == NULL) {
        struct hs_ws_event ev;
        size_t used = 0;
        const char *reason = NULL;
        enum hs_ws_rc rc =
            hs_ws_decode(d, in + off, len - off, &used, &ev, &reason);
        assert_true(used <= len - off);
        off += used;
        if (rc == HS_WS_ERROR) {
            r->error = reason;
            return;
        }
        if (rc == HS_WS_AGAIN) {
            assert_int_equal(off, len);
            return;
        }
        switch (ev.type) {
        case HS_WS_EV_DATA:
            assert_true(ev.len > 0);
            memcpy(r->data + r->data_len, ev.data, ev.len);
            r->data_len += ev.len;
            break;
        case HS_WS_EV_PING:
            r->pings++;
            memcpy(r->ping, ev.data, ev.len);
            r->ping_len = ev.len;
            break;
        case HS_WS_EV_PONG:
            r->pongs++;
            break;
        case HS_WS_EV_CLOSE:
            r->closes++;
            r->close_code = ev.close_code;
            break;
        }
    }
}

/* Decodes in, step bytes per call (0: all at once). */
static void decode_split(const uint8_t *in, size_t len, size_t step,
                         struct result *r)
{
    struct hs_ws_decoder d;
    hs_ws_decoder_init(&d);
    memset(r, 0, sizeof(*r));
    if (step == 0)
        step = len ? len : 1;
    for (size_t off = 0; off < len && r->error == NULL; off += step)
        feed(&d, in + off, len - off < step ? len - off : step, r);
}

/* The reason a frame sequence is refused, the same for every split. */
static const char *decode_error(const uint8_t *in, size_t len)
{
    static struct result whole, bytes;
    decode_split(in, len, 0, &whole);
    decode_split(in, len, 1, &bytes);
    assert_non_null(whole.error);
    assert_ptr_equal(whole.error, bytes.error);
    return whole.error;
}

static char *answer(const char *extra_headers)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf),
             "HTTP/1.1 101 Switching Protocols\r\n"
             "Upgrade: websocket\r\n"
             "Connection: Upgrade\r\n"
             "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
             "%s"
             "\r\n",
             extra_headers);
    return buf;
}

static void test_keys(void **state)
{
    (void)state;
    /* RFC 6455 section 1.3: the sample nonce and its accept value. */
    const uint8_t nonce[16] = "the sample nonce";
    char key[HS_WS_KEY_LEN + 1], accept[HS_WS_ACCEPT_LEN + 1];
    hs_ws_key(nonce, key);
    assert_string_equal(key, KEY);
    hs_ws_accept(key, accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_request(void **state)
{
    (void)state;
    char buf[512];
    size_t n = hs_ws_request(buf, sizeof(buf), "demo-hub.azure-devices.net",
                             "/$iothub/websocket", KEY, "mqtt");
    assert_int_equal(n, strlen(buf));
    assert_string_equal(buf, "GET /$iothub/websocket HTTP/1.1\r\n"
                             "Host: demo-hub.azure-devices.net\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Key: " KEY "\r\n"
                             "Sec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Protocol: mqtt\r\n"
                             "\r\n");
    assert_true(hs_ws_request(buf, 10, "h", "/", KEY, "mqtt") >= 10);
}

static void test_response_ok(void **state)
{
    (void)state;
    char buf[1200];
    snprintf(buf, sizeof(buf), "%s\x82\x02hi",
             answer("Sec-WebSocket-Protocol: mqtt\r\n"));
    size_t head = strlen(buf) - 4, used = 0;
    int status = 0;
    const char *reason = NULL;
    assert_int_equal(
        hs_ws_response(buf, strlen(buf), KEY, "mqtt", &used, &status, &reason),
        HS_WS_OK);
    assert_int_equal(used, head);
    assert_int_equal(status, 101);
    for (size_t n = 0; n < head; n++)
        assert_int_equal(
            hs_ws_response(buf, n, KEY, "mqtt", &used, &status, &reason),
            HS_WS_AGAIN);

    /* Header names and the Upgrade value in any case; Connection as a
     * list; extra headers ignored. */
    snprintf(buf, sizeof(buf),
             "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\n"
             "CONNECTION: keep-alive, Upgrade\r\nServer: x\r\n"
             "sec-websocket-accept:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n"
             "sec-websocket-protocol: mqtt\r\n\r\n");
    assert_int_equal(
        hs_ws_response(buf, strlen(buf), KEY, "mqtt", &used, &status, &reason),
        HS_WS_OK);
}

static void test_response_refused(void **state)
{
    (void)state;
    char buf[10000];
    size_t used;
    int status;
    const char *reason;
#define REFUSED(text)                                                          \
    (assert_int_equal(hs_ws_response(text, strlen(text), KEY, "mqtt", &used,   \
                                     &status, &reason),                        \
                      HS_WS_ERROR),                                            \
     reason)
    const char *r = REFUSED("HTTP/1.1 401 Unauthorized\r\n");
    assert_string_equal(r, "upgrade refused (HTTP status not 101)");
    assert_int_equal(status, 401);
    assert_string_equal(REFUSED("\x15\x03\x03"), "not an HTTP answer");
    assert_string_equal(REFUSED("HTTP/1.1 1O1 x\r\n"),
                        "malformed HTTP status line");
    assert_string_equal(REFUSED(answer("")), "the server chose no subprotocol");
    assert_string_equal(REFUSED(answer("Sec-WebSocket-Protocol: mqttv5\r\n")),
                        "the server chose another subprotocol");
    assert_string_equal(
        REFUSED(answer("Sec-WebSocket-Protocol: mqtt\r\n"
                       "Sec-WebSocket-Extensions: permessage-deflate\r\n")),
        "the server chose an extension that was not offered");
    assert_string_equal(
        REFUSED(
            "HTTP/1.1 101 x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"),
        "no \"Upgrade: websocket\" in the answer");
    assert_string_equal(REFUSED("HTTP/1.1 101 x\r\nUpgrade: websocket\r\n\r\n"),
                        "no \"Connection: upgrade\" in the answer");
    assert_string_equal(REFUSED("HTTP/1.1 101 x\r\nUpgrade: websocket\r\n"
                                "Connection: upgrade\r\n"
                                "Sec-WebSocket-Accept: AAAA\r\n\r\n"),
                        "wrong or missing Sec-WebSocket-Accept");
    assert_string_equal(REFUSED("HTTP/1.1 101 x\r\n folded\r\n\r\n"),
                        "folded header line");
    /* A head that never ends. */
    memset(buf, 'a', sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    memcpy(buf, "HTTP/1.1 101 x\r\nX: ", 19);
    assert_string_equal(REFUSED(buf), "upgrade answer too long");
#undef REFUSED
}

static void test_frames_out(void **state)
{
    (void)state;
    /* RFC 6455 section 5.7: a masked text "Hello". */
    const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    const uint8_t want[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                            0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t buf[80000];
    assert_int_equal(hs_ws_frame(buf, sizeof(buf), HS_WS_TEXT,
                                 (const uint8_t *)"Hello", 5, mask),
                     sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    /* Unmasked, as a server would send it. */
    assert_int_equal(hs_ws_frame(buf, sizeof(buf), HS_WS_BINARY,
                                 (const uint8_t *)"Hello", 5, NULL),
                     7);
    assert_memory_equal(buf, "\x82\x05Hello", 7);
    /* Length forms at their edges. */
    assert_int_equal(hs_ws_header_size(125, true), 6);
    assert_int_equal(hs_ws_header_size(126, true), 8);
    assert_int_equal(hs_ws_header_size(65535, false), 4);
    assert_int_equal(hs_ws_header_size(65536, false), 10);
    assert_int_equal(hs_ws_header(buf, HS_WS_BINARY, 256, NULL), 4);
    assert_memory_equal(buf, "\x82\x7e\x01\x00", 4);
    assert_int_equal(hs_ws_header(buf, HS_WS_BINARY, 65536, mask), 14);
    assert_memory_equal(buf, "\x82\xff\0\0\0\0\0\x01\0\0\x37\xfa\x21\x3d", 14);
    /* Masking is its own inverse, at any offset into the payload. */
    uint8_t data[10] = "0123456789";
    hs_ws_mask(data, 3, mask, 0);
    hs_ws_mask(data + 3, 7, mask, 3);
    hs_ws_mask(data, 10, mask, 0);
    assert_memory_equal(data, "0123456789", 10);
    assert_int_equal(hs_ws_frame(buf, 5, HS_WS_BINARY, data, 10, mask), 16);
}

static void test_decode_splits(void **state)
{
    (void)state;
    static uint8_t in[80000];
    static struct result whole, part;
    size_t n = 0;
    uint8_t payload[70000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    /* Small, 16-bit and 64-bit lengths, a fragmented message with a ping
     * in between, an empty frame, a pong, then a close. */
    n += hs_ws_frame(in + n, sizeof(in) - n, HS_WS_BINARY, payload, 5, NULL);
    n += hs_ws_frame(in + n, sizeof(in) - n, HS_WS_BINARY, payload + 5, 300,
                     NULL);
    in[n++] = 0x02; /* binary, not final */
    in[n++] = 3;
    memcpy(in + n, payload + 305, 3);
    n += 3;
    n += hs_ws_frame(in + n, sizeof(in) - n, HS_WS_PING, (const uint8_t *)"abc",
                     3, NULL);
    in[n++] = 0x80; /* continuation, final */
    in[n++] = 2;
    memcpy(in + n, payload + 308, 2);
    n += 2;
    n += hs_ws_frame(in + n, sizeof(in) - n, HS_WS_BINARY, NULL, 0, NULL);
    n += hs_ws_frame(in + n, sizeof(in) - n, HS_WS_BINARY, payload + 310, 65536,
                     NULL);
    n += hs_ws_frame(in + n, sizeof(in) - n, HS_WS_PONG, NULL, 0, NULL);
    n += hs_ws_frame(in + n, sizeof(in) - n, HS_WS_CLOSE,
                     (const uint8_t *)"\x03\xe8ok", 4, NULL);
    size_t total = 310 + 65536;

    decode_split(in, n, 0, &whole);
    assert_null(whole.error);
    assert_int_equal(whole.data_len, total);
    assert_memory_equal(whole.data, payload, total);
    assert_int_equal(whole.pings, 1);
    assert_int_equal(whole.ping_len, 3);
    assert_memory_equal(whole.ping, "abc", 3);
    assert_int_equal(whole.pongs, 1);
    assert_int_equal(whole.closes, 1);
    assert_int_equal(whole.close_code, 1000);
    const size_t steps[] = {1, 2, 3, 7, 13, 127, 4096};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        decode_split(in, n, steps[i], &part);
        assert_null(part.error);
        assert_int_equal(part.data_len, total);
        assert_memory_equal(part.data, payload, total);
        assert_int_equal(part.pings, 1);
        assert_int_equal(part.closes, 1);
    }
}

static void test_decode_close_forms(void **state)
{
    (void)state;
    static struct result r;
    decode_split((const uint8_t *)"\x88\x00", 2, 0, &r);
    assert_int_equal(r.closes, 1);
    assert_int_equal(r.close_code, 1005);
    assert_string_equal(decode_error((const uint8_t *)"\x88\x01\x03", 3),
                        "close frame with a one-byte body");
    assert_string_equal(decode_error((const uint8_t *)"\x88\x00\x82\x00", 4),
                        "data after a close frame");
}

static void test_decode_refused(void **state)
{
    (void)state;
#define BAD(bytes) decode_error((const uint8_t *)(bytes), sizeof(bytes) - 1)
    assert_string_equal(BAD("\x82\x81\0\0\0\0x"),
                        "masked frame from the server");
    assert_string_equal(BAD("\xc2\x00"), "reserved bits set in a frame");
    assert_string_equal(BAD("\x92\x00"), "reserved bits set in a frame");
    assert_string_equal(BAD("\x81\x01x"),
                        "text frame (MQTT needs binary frames)");
    assert_string_equal(BAD("\x83\x00"), "reserved opcode");
    assert_string_equal(BAD("\x8b\x00"), "reserved opcode");
    assert_string_equal(BAD("\x09\x00"), "fragmented control frame");
    assert_string_equal(BAD("\x89\x7e\x00\x7e"),
                        "control frame longer than 125 bytes");
    assert_string_equal(BAD("\x80\x01x"),
                        "continuation frame outside a message");
    assert_string_equal(BAD("\x02\x01x\x82\x01y"),
                        "new message inside a fragmented one");
    assert_string_equal(BAD("\x82\x7e\x00\x7d"),
                        "frame length not in its shortest form");
    assert_string_equal(BAD("\x82\x7f\0\0\0\0\0\0\xff\xff"),
                        "frame length not in its shortest form");
    assert_string_equal(BAD("\x82\x7f\x80\0\0\0\0\0\0\0"),
                        "frame length over 2^63");
#undef BAD
    /* Once failed, the decoder stays failed. */
    struct hs_ws_decoder d;
    struct hs_ws_event ev;
    size_t used;
    const char *reason;
    hs_ws_decoder_init(&d);
    assert_int_equal(
        hs_ws_decode(&d, (const uint8_t *)"\x83\x00", 2, &used, &ev, &reason),
        HS_WS_ERROR);
    assert_int_equal(
        hs_ws_decode(&d, (const uint8_t *)"\x82\x00", 2, &used, &ev, &reason),
        HS_WS_ERROR);
    assert_string_equal(reason, "reserved opcode");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_response_ok),
        cmocka_unit_test(test_response_refused),
        cmocka_unit_test(test_frames_out),
        cmocka_unit_test(test_decode_splits),
        cmocka_unit_test(test_decode_close_forms),
        cmocka_unit_test(test_decode_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
