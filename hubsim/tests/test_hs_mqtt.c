/*
 * Tests for hs_mqtt: every packet a device sends or receives, byte for byte
 * against hand-made vectors, encoded then decoded, fed a byte at a time,
 * and every malformation the decoder must refuse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hs_mqtt.h"

#define MAX_SIZE (1u << 20)

static void decode_ok(const uint8_t *buf, size_t len,
                      struct hs_mqtt_packet *pkt);
static const char *decode_bad(const uint8_t *buf, size_t len);
static void all_prefixes_again(const uint8_t *buf, size_t len);
static bool str_is(struct hs_mqtt_str s, const char *want);

/* Decodes a whole packet that must be valid and exactly len bytes. */
static void decode_ok(const uint8_t *buf, size_t len,
                      struct hs_mqtt_packet *pkt)
{
    size_t used = 99;
    const char *reason = NULL;
    assert_int_equal(hs_mqtt_decode(buf, len, MAX_SIZE, pkt, &used, &reason),
                     HS_MQTT_OK);
    assert_int_equal(used, len);
    assert_null(reason);
    all_prefixes_again(buf, len);
}

/* Every strict prefix of a valid packet asks for more. */
static void all_prefixes_again(const uint8_t *buf, size_t len)
{
    for (size_t n = 0; n < len; n++) {
        struct hs_mqtt_packet pkt;
        size_t used = 99;
        const char *reason = NULL;
        assert_int_equal(hs_mqtt_decode(buf, n, MAX_SIZE, &pkt, &used, &reason),
                         HS_MQTT_AGAIN);
        assert_int_equal(used, 0);
    }
}

/* Decodes bytes that must be refused; returns the reason. */
static const char *decode_bad(const uint8_t *buf, size_t len)
{
    struct hs_mqtt_packet pkt;
    size_t used = 99;
    const char *reason = NULL;
    assert_int_equal(hs_mqtt_decode(buf, len, MAX_SIZE, &pkt, &used, &reason),
                     HS_MQTT_ERROR);
    assert_int_equal(used, 0);
    assert_non_null(reason);
    return reason;
}

static bool str_is(struct hs_mqtt_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void test_connect_bytes(void **state)
{
    (void)state;
    /* Made by hand from 3.1.1 section 3.1: id "d1", user "u", pw "pw". */
    static const uint8_t want[] = {0x10, 21,   0,   4,  'M', 'Q', 'T', 'T',
                                   4,    0xC2, 0,   60, 0,   2,   'd', '1',
                                   0,    1,    'u', 0,  2,   'p', 'w'};
    struct hs_mqtt_connect c = {
        .client_id = hs_mqtt_cstr("d1"),
        .username = hs_mqtt_cstr("u"),
        .password = hs_mqtt_cstr("pw"),
        .keepalive = 60,
        .clean_session = true,
    };
    uint8_t buf[64];
    assert_int_equal(hs_mqtt_connect_encode(buf, 3, &c), sizeof(want));
    assert_int_equal(hs_mqtt_connect_encode(buf, sizeof(buf), &c),
                     sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));

    struct hs_mqtt_packet p;
    decode_ok(buf, sizeof(want), &p);
    assert_int_equal(p.type, HS_MQTT_CONNECT);
    assert_true(str_is(p.u.connect.client_id, "d1"));
    assert_true(str_is(p.u.connect.username, "u"));
    assert_true(str_is(p.u.connect.password, "pw"));
    assert_int_equal(p.u.connect.keepalive, 60);
    assert_true(p.u.connect.clean_session);
}

static void test_connect_iot_hub(void **state)
{
    (void)state;
    /* IoT Hub sized: a long user name and a token as password. */
    const char *user = "demo-hub.azure-devices.net/sim000001/"
                       "?api-version=2021-04-12";
    char token[300];
    memset(token, 'x', sizeof(token) - 1);
    token[sizeof(token) - 1] = 0;
    struct hs_mqtt_connect c = {
        .client_id = hs_mqtt_cstr("sim000001"),
        .username = hs_mqtt_cstr(user),
        .password = hs_mqtt_cstr(token),
        .keepalive = 1177,
    };
    uint8_t buf[512];
    size_t n = hs_mqtt_connect_encode(buf, sizeof(buf), &c);
    assert_true(n > 300 && n < sizeof(buf));
    assert_int_equal(buf[1] & 0x80, 0x80); /* two length bytes */
    struct hs_mqtt_packet p;
    decode_ok(buf, n, &p);
    assert_true(str_is(p.u.connect.username, user));
    assert_true(str_is(p.u.connect.password, token));
    assert_false(p.u.connect.clean_session);
    assert_int_equal(p.u.connect.keepalive, 1177);

    /* No user name, no password; a password alone cannot be encoded. */
    struct hs_mqtt_connect bare = {.client_id = hs_mqtt_cstr("x")};
    n = hs_mqtt_connect_encode(buf, sizeof(buf), &bare);
    assert_int_equal(n, 15);
    decode_ok(buf, n, &p);
    assert_null(p.u.connect.username.ptr);
    assert_null(p.u.connect.password.ptr);
    bare.password = hs_mqtt_cstr("pw");
    assert_int_equal(hs_mqtt_connect_encode(buf, sizeof(buf), &bare), 0);
}

static void test_connect_refused(void **state)
{
    (void)state;
    uint8_t base[] = {0x10, 13,   0, 4,  'M', 'Q', 'T', 'T',
                      4,    0x02, 0, 60, 0,   1,   'a'};
    uint8_t b[sizeof(base)];
    struct hs_mqtt_packet p;
    decode_ok(base, sizeof(base), &p);
    memcpy(b, base, sizeof(b));
    b[7] = 'X';
    assert_string_equal(decode_bad(b, sizeof(b)), "protocol name not MQTT");
    memcpy(b, base, sizeof(b));
    b[8] = 3;
    assert_string_equal(decode_bad(b, sizeof(b)),
                        "protocol level not 4 (3.1.1)");
    memcpy(b, base, sizeof(b));
    b[9] = 0x03;
    assert_string_equal(decode_bad(b, sizeof(b)), "reserved connect flag set");
    b[9] = 0x06;
    assert_string_equal(decode_bad(b, sizeof(b)),
                        "CONNECT with a will is not supported");
    b[9] = 0x42;
    assert_string_equal(decode_bad(b, sizeof(b)),
                        "password without a user name");
    b[9] = 0x82;
    assert_string_equal(decode_bad(b, sizeof(b)), "user name cut short");
    memcpy(b, base, sizeof(b));
    b[0] = 0x11;
    assert_string_equal(decode_bad(b, 1), "reserved flags not 0000");
}

static void test_connack(void **state)
{
    (void)state;
    struct hs_mqtt_packet p;
    uint8_t ok[] = {0x20, 2, 0, 0};
    decode_ok(ok, sizeof(ok), &p);
    assert_int_equal(p.type, HS_MQTT_CONNACK);
    assert_int_equal(p.u.connack.code, 0);
    assert_false(p.u.connack.session_present);

    uint8_t sp[] = {0x20, 2, 1, 0};
    decode_ok(sp, sizeof(sp), &p);
    assert_true(p.u.connack.session_present);

    for (uint8_t code = 1; code <= 5; code++) {
        uint8_t r[] = {0x20, 2, 0, code};
        decode_ok(r, sizeof(r), &p);
        assert_int_equal(p.u.connack.code, code);
    }
    assert_string_equal(hs_mqtt_connack_text(5), "not authorized");
    assert_string_equal(hs_mqtt_connack_text(4), "bad user name or password");

    uint8_t enc[4];
    struct hs_mqtt_connack c = {.session_present = false, .code = 5};
    assert_int_equal(hs_mqtt_connack_encode(enc, sizeof(enc), &c), 4);
    assert_memory_equal(enc, ((uint8_t[]){0x20, 2, 0, 5}), 4);

    uint8_t b1[] = {0x20, 2, 0, 6};
    assert_string_equal(decode_bad(b1, 4), "reserved CONNACK return code");
    uint8_t b2[] = {0x20, 2, 2, 0};
    assert_string_equal(decode_bad(b2, 4), "reserved CONNACK flags set");
    uint8_t b3[] = {0x20, 2, 1, 5};
    assert_string_equal(decode_bad(b3, 4), "session present with a refusal");
    uint8_t b4[] = {0x20, 3, 0, 0, 0};
    assert_string_equal(decode_bad(b4, 5), "CONNACK body not 2 bytes");
}

static void test_publish(void **state)
{
    (void)state;
    const char *topic = "devices/sim000001/messages/events/";
    const char *body = "{\"counter\": 1}";
    struct hs_mqtt_publish pub = {
        .topic = hs_mqtt_cstr(topic),
        .payload = (const uint8_t *)body,
        .payload_len = strlen(body),
        .qos = 1,
        .packet_id = 0x1234,
    };
    uint8_t buf[256];
    size_t n = hs_mqtt_publish_encode(buf, sizeof(buf), &pub);
    assert_int_equal(n, 2 + 2 + strlen(topic) + 2 + strlen(body));
    assert_int_equal(buf[0], 0x32);
    assert_int_equal(buf[2 + 2 + strlen(topic)], 0x12);
    assert_int_equal(buf[2 + 2 + strlen(topic) + 1], 0x34);
    struct hs_mqtt_packet p;
    decode_ok(buf, n, &p);
    assert_int_equal(p.type, HS_MQTT_PUBLISH);
    assert_true(str_is(p.u.publish.topic, topic));
    assert_int_equal(p.u.publish.qos, 1);
    assert_int_equal(p.u.publish.packet_id, 0x1234);
    assert_int_equal(p.u.publish.payload_len, strlen(body));
    assert_memory_equal(p.u.publish.payload, body, strlen(body));

    /* QoS 0 has no packet id; DUP and RETAIN come back. */
    pub.qos = 0;
    pub.retain = true;
    pub.payload_len = 0;
    n = hs_mqtt_publish_encode(buf, sizeof(buf), &pub);
    assert_int_equal(buf[0], 0x31);
    decode_ok(buf, n, &p);
    assert_int_equal(p.u.publish.qos, 0);
    assert_true(p.u.publish.retain);
    assert_int_equal(p.u.publish.payload_len, 0);
    pub.qos = 1;
    pub.dup = true;
    n = hs_mqtt_publish_encode(buf, sizeof(buf), &pub);
    assert_int_equal(buf[0], 0x3B);
    decode_ok(buf, n, &p);
    assert_true(p.u.publish.dup);

    /* Too small a buffer: size returned, nothing written. */
    memset(buf, 0xEE, sizeof(buf));
    assert_int_equal(hs_mqtt_publish_encode(buf, 5, &pub), n);
    assert_int_equal(buf[0], 0xEE);
}

static void test_publish_refused(void **state)
{
    (void)state;
    uint8_t qos3[] = {0x36, 5, 0, 1, 'a', 0, 1};
    assert_string_equal(decode_bad(qos3, 1), "PUBLISH with QoS 3");
    uint8_t dup0[] = {0x38, 3, 0, 1, 'a'};
    assert_string_equal(decode_bad(dup0, 1), "PUBLISH with DUP set at QoS 0");
    uint8_t id0[] = {0x32, 5, 0, 1, 'a', 0, 0};
    assert_string_equal(decode_bad(id0, sizeof(id0)), "packet identifier 0");
    uint8_t wild[] = {0x30, 3, 0, 1, '#'};
    assert_string_equal(decode_bad(wild, sizeof(wild)),
                        "wildcard in a topic name");
    uint8_t empty[] = {0x30, 2, 0, 0};
    assert_string_equal(decode_bad(empty, sizeof(empty)), "empty topic name");
    uint8_t utf[] = {0x30, 4, 0, 2, 0xC0, 0x80};
    assert_string_equal(decode_bad(utf, sizeof(utf)),
                        "topic name not valid UTF-8");
    uint8_t cut[] = {0x30, 3, 0, 5, 'a'};
    assert_string_equal(decode_bad(cut, sizeof(cut)), "topic name cut short");
    uint8_t noid[] = {0x32, 3, 0, 1, 'a'};
    assert_string_equal(decode_bad(noid, sizeof(noid)),
                        "packet identifier cut short");
}

static void test_acks_and_empty(void **state)
{
    (void)state;
    uint8_t buf[8];
    struct hs_mqtt_packet p;
    assert_int_equal(hs_mqtt_ack_encode(buf, sizeof(buf), HS_MQTT_PUBACK, 7),
                     4);
    assert_memory_equal(buf, ((uint8_t[]){0x40, 2, 0, 7}), 4);
    decode_ok(buf, 4, &p);
    assert_int_equal(p.type, HS_MQTT_PUBACK);
    assert_int_equal(p.u.packet_id, 7);
    assert_int_equal(hs_mqtt_ack_encode(buf, sizeof(buf), HS_MQTT_PUBREL, 9),
                     4);
    assert_int_equal(buf[0], 0x62);
    decode_ok(buf, 4, &p);

    uint8_t long_ack[] = {0x40, 3, 0, 7, 0};
    assert_string_equal(decode_bad(long_ack, 5),
                        "bytes left over after the packet's fields");
    uint8_t zero_ack[] = {0x40, 2, 0, 0};
    assert_string_equal(decode_bad(zero_ack, 4), "packet identifier 0");

    const enum hs_mqtt_type empties[] = {HS_MQTT_PINGREQ, HS_MQTT_PINGRESP,
                                         HS_MQTT_DISCONNECT};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(hs_mqtt_empty_encode(buf, sizeof(buf), empties[i]), 2);
        assert_int_equal(buf[0], empties[i] << 4);
        assert_int_equal(buf[1], 0);
        decode_ok(buf, 2, &p);
        assert_int_equal(p.type, empties[i]);
    }
    uint8_t fat_ping[] = {0xD0, 1, 0};
    assert_string_equal(decode_bad(fat_ping, 3), "non-empty body");
    uint8_t reserved[] = {0xF0, 0};
    assert_string_equal(decode_bad(reserved, 2), "reserved packet type");
    reserved[0] = 0x00;
    assert_string_equal(decode_bad(reserved, 2), "reserved packet type");
}

static void test_subscribe_suback(void **state)
{
    (void)state;
    const char *filter = "devices/sim000001/messages/devicebound/#";
    struct hs_mqtt_subscribe s = {
        .packet_id = 1, .filter = hs_mqtt_cstr(filter), .qos = 1};
    uint8_t buf[128];
    size_t n = hs_mqtt_subscribe_encode(buf, sizeof(buf), &s);
    assert_int_equal(n, 2 + 2 + 2 + strlen(filter) + 1);
    assert_int_equal(buf[0], 0x82);
    struct hs_mqtt_packet p;
    decode_ok(buf, n, &p);
    assert_int_equal(p.type, HS_MQTT_SUBSCRIBE);
    assert_true(str_is(p.u.subscribe.filter, filter));
    assert_int_equal(p.u.subscribe.qos, 1);
    assert_int_equal(p.u.subscribe.count, 1);

    const uint8_t codes[] = {1, 0x80};
    struct hs_mqtt_suback sa = {.packet_id = 1, .codes = codes, .count = 2};
    n = hs_mqtt_suback_encode(buf, sizeof(buf), &sa);
    assert_memory_equal(buf, ((uint8_t[]){0x90, 4, 0, 1, 1, 0x80}), 6);
    decode_ok(buf, n, &p);
    assert_int_equal(p.u.suback.count, 2);
    assert_int_equal(p.u.suback.codes[1], 0x80);

    uint8_t bad_code[] = {0x90, 3, 0, 1, 3};
    assert_string_equal(decode_bad(bad_code, 5), "reserved SUBACK return code");
    uint8_t no_code[] = {0x90, 2, 0, 1};
    assert_string_equal(decode_bad(no_code, 4), "SUBACK without a return code");
    uint8_t sub_flags[] = {0x80, 0};
    assert_string_equal(decode_bad(sub_flags, 2), "reserved flags not 0010");
    uint8_t bad_filter[] = {0x82, 8, 0, 1, 0, 3, 'a', '#', 'b', 0};
    assert_string_equal(decode_bad(bad_filter, sizeof(bad_filter)),
                        "invalid topic filter");
    uint8_t bad_qos[] = {0x82, 6, 0, 1, 0, 1, 'a', 3};
    assert_string_equal(decode_bad(bad_qos, sizeof(bad_qos)),
                        "requested QoS above 2");
    uint8_t two[] = {0x82, 10, 0, 5, 0, 1, '+', 0, 0, 2, 'a', '/', 1};
    two[1] = 11;
    decode_ok(two, sizeof(two), &p);
    assert_int_equal(p.u.subscribe.count, 2);
    assert_true(str_is(p.u.subscribe.filter, "+"));
    uint8_t unsub[] = {0xA2, 5, 0, 9, 0, 1, '#'};
    decode_ok(unsub, sizeof(unsub), &p);
    assert_int_equal(p.u.packet_id, 9);
}

static void test_remaining_length(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 127, 128, 16383, 16384, 2097151, 2097152};
    const size_t header[] = {2, 2, 3, 3, 4, 4, 5};
    uint8_t *buf = malloc(2200000), *payload = calloc(1, 2200000);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        /* A QoS 0 PUBLISH with topic "t": 3 bytes before the payload. */
        if (sizes[i] < 3)
            continue;
        struct hs_mqtt_publish pub = {.topic = hs_mqtt_cstr("t"),
                                      .payload = payload,
                                      .payload_len = sizes[i] - 3};
        size_t n = hs_mqtt_publish_encode(buf, 2200000, &pub);
        assert_int_equal(n, header[i] + sizes[i]);
        struct hs_mqtt_packet p;
        size_t used;
        const char *reason;
        assert_int_equal(hs_mqtt_decode(buf, n, n, &p, &used, &reason),
                         HS_MQTT_OK);
        assert_int_equal(p.remaining, sizes[i]);
        /* One byte over the caller's limit: refused from the header. */
        assert_int_equal(
            hs_mqtt_decode(buf, header[i], n - 1, &p, &used, &reason),
            HS_MQTT_ERROR);
        assert_string_equal(reason, "packet larger than the limit");
    }
    free(buf);
    free(payload);
    uint8_t max[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
    struct hs_mqtt_packet p;
    size_t used;
    const char *reason;
    assert_int_equal(hs_mqtt_decode(max, 5, SIZE_MAX, &p, &used, &reason),
                     HS_MQTT_AGAIN);
    uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    assert_string_equal(decode_bad(five, 6),
                        "remaining length longer than four bytes");
    /* A non-minimal length is accepted (3.1.1 does not forbid it). */
    uint8_t padded[] = {0xC0, 0x80, 0x00};
    decode_ok(padded, 3, &p);
    assert_int_equal(p.type, HS_MQTT_PINGREQ);
}

static void test_stream_byte_by_byte(void **state)
{
    (void)state;
    uint8_t stream[256];
    size_t n = 0;
    struct hs_mqtt_connack ca = {0};
    n += hs_mqtt_connack_encode(stream + n, sizeof(stream) - n, &ca);
    for (uint16_t id = 1; id <= 5; id++)
        n += hs_mqtt_ack_encode(stream + n, sizeof(stream) - n, HS_MQTT_PUBACK,
                                id);
    n += hs_mqtt_empty_encode(stream + n, sizeof(stream) - n, HS_MQTT_PINGRESP);
    /* Feed one byte more each time, as a slow network would. */
    size_t start = 0, have = 0, seen = 0;
    uint16_t want_id = 1;
    while (have < n) {
        have++;
        struct hs_mqtt_packet p;
        size_t used;
        const char *reason;
        enum hs_mqtt_rc rc = hs_mqtt_decode(stream + start, have - start,
                                            MAX_SIZE, &p, &used, &reason);
        if (rc == HS_MQTT_AGAIN)
            continue;
        assert_int_equal(rc, HS_MQTT_OK);
        assert_int_equal(start + used, have);
        if (p.type == HS_MQTT_PUBACK)
            assert_int_equal(p.u.packet_id, want_id++);
        start += used;
        seen++;
    }
    assert_int_equal(seen, 7);
    assert_int_equal(want_id, 6);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(hs_mqtt_utf8_valid("plain/ascii", 11));
    assert_true(hs_mqtt_utf8_valid("h\xC3\xA9", 3));
    assert_true(hs_mqtt_utf8_valid("\xF0\x9F\x98\x80", 4));
    assert_true(hs_mqtt_utf8_valid("\xEF\xBF\xBF", 3));
    assert_false(hs_mqtt_utf8_valid("a\0b", 3));
    assert_false(hs_mqtt_utf8_valid("\xC0\x80", 2));         /* overlong */
    assert_false(hs_mqtt_utf8_valid("\xE0\x80\xAF", 3));     /* overlong */
    assert_false(hs_mqtt_utf8_valid("\xED\xA0\x80", 3));     /* surrogate */
    assert_false(hs_mqtt_utf8_valid("\xF4\x90\x80\x80", 4)); /* > 10FFFF */
    assert_false(hs_mqtt_utf8_valid("\xC3", 1));             /* cut */
    assert_false(hs_mqtt_utf8_valid("\x80", 1));
    assert_false(hs_mqtt_utf8_valid("\xC3\x41", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_bytes),
        cmocka_unit_test(test_connect_iot_hub),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connack),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_publish_refused),
        cmocka_unit_test(test_acks_and_empty),
        cmocka_unit_test(test_subscribe_suback),
        cmocka_unit_test(test_remaining_length),
        cmocka_unit_test(test_stream_byte_by_byte),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
