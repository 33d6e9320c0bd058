/*
 * Tests for hs_cbs and the AMQP address pattern: a put-token request as
 * IoT Hub reads it (every field checked by decoding the encoded bytes
 * again), and answers read whatever integer type carries the status, with
 * and without a description, and refused when a field is missing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <proton/codec.h>
#include <proton/message.h>

#include "hs_amqp.h"
#include "hs_cbs.h"

static pn_message_t *reply(pn_atom_t cid, const char *key, int type,
                           int64_t status, const char *desc);
static const char *prop(pn_message_t *m, const char *key);

/* A reply with correlation id cid and status under key as type. */
static pn_message_t *reply(pn_atom_t cid, const char *key, int type,
                           int64_t status, const char *desc)
{
    pn_message_t *m = pn_message();
    assert_non_null(m);
    if (cid.type != PN_NULL)
        pn_message_set_correlation_id(m, cid);
    pn_data_t *p = pn_message_properties(m);
    pn_data_put_map(p);
    pn_data_enter(p);
    if (key != NULL) {
        pn_data_put_string(p, pn_bytes(strlen(key), key));
        switch (type) {
        case PN_INT:
            pn_data_put_int(p, (int32_t)status);
            break;
        case PN_UINT:
            pn_data_put_uint(p, (uint32_t)status);
            break;
        case PN_LONG:
            pn_data_put_long(p, status);
            break;
        case PN_USHORT:
            pn_data_put_ushort(p, (uint16_t)status);
            break;
        default:
            pn_data_put_string(p, pn_bytes(3, "200"));
        }
    }
    if (desc != NULL) {
        pn_data_put_symbol(p, pn_bytes(18, "status-description"));
        pn_data_put_string(p, pn_bytes(strlen(desc), desc));
    }
    pn_data_exit(p);
    return m;
}

/* The string value of application property key in m, or NULL. */
static const char *prop(pn_message_t *m, const char *key)
{
    static char out[256];
    pn_data_t *p = pn_message_properties(m);
    pn_data_rewind(p);
    assert_true(pn_data_next(p));
    size_t n = pn_data_get_map(p);
    pn_data_enter(p);
    for (size_t i = 0; i < n; i += 2) {
        pn_data_next(p);
        pn_bytes_t k = pn_data_get_string(p);
        pn_data_next(p);
        if (k.size == strlen(key) && memcmp(k.start, key, k.size) == 0) {
            pn_bytes_t v = pn_data_get_string(p);
            snprintf(out, sizeof(out), "%.*s", (int)v.size, v.start);
            pn_data_exit(p);
            return out;
        }
    }
    pn_data_exit(p);
    return NULL;
}

static void test_request_fields(void **state)
{
    (void)state;
    pn_message_t *m = pn_message(), *back = pn_message();
    char buf[4096];
    size_t n = sizeof(buf);
    assert_int_equal(hs_cbs_request(m, "h.azure-devices.net", "dev-1",
                                    "SharedAccessSignature sr=x&sig=y&se=1",
                                    0x200000007ull),
                     0);
    assert_int_equal(pn_message_encode(m, buf, &n), 0);
    assert_int_equal(pn_message_decode(back, buf, n), 0);
    assert_string_equal(pn_message_get_address(back), "$cbs");
    assert_string_equal(pn_message_get_reply_to(back), "cbs");
    pn_atom_t id = pn_message_get_id(back);
    assert_int_equal(id.type, PN_ULONG);
    assert_true(id.u.as_ulong == 0x200000007ull);
    assert_string_equal(prop(back, "operation"), "put-token");
    assert_string_equal(prop(back, "type"), "azure-devices.net:sastoken");
    assert_string_equal(prop(back, "name"),
                        "h.azure-devices.net/devices/dev-1");
    pn_data_t *body = pn_message_body(back);
    pn_data_rewind(body);
    assert_true(pn_data_next(body));
    assert_int_equal(pn_data_type(body), PN_STRING);
    pn_bytes_t tok = pn_data_get_string(body);
    assert_int_equal(tok.size, 37);
    assert_memory_equal(tok.start, "SharedAccessSignature sr=x&sig=y&se=1", 37);
    pn_message_free(m);
    pn_message_free(back);
}

static void test_request_name_too_long(void **state)
{
    (void)state;
    char id[1100];
    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    pn_message_t *m = pn_message();
    assert_int_equal(hs_cbs_request(m, "h", id, "t", 1), -1);
    pn_message_free(m);
}

static void test_reply_status_types(void **state)
{
    (void)state;
    static const int types[] = {PN_INT, PN_UINT, PN_LONG, PN_USHORT};
    pn_atom_t cid = {.type = PN_ULONG, .u.as_ulong = 42};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        pn_message_t *m = reply(cid, "status-code", types[i], 202, NULL);
        struct hs_cbs_reply r;
        const char *why = NULL;
        assert_int_equal(hs_cbs_reply_read(m, &r, &why), HS_CBS_OK);
        assert_int_equal(r.status, 202);
        assert_true(r.id == 42);
        assert_string_equal(r.description, "");
        assert_true(hs_cbs_accepted(r.status));
        pn_message_free(m);
    }
}

static void test_reply_refused_with_description(void **state)
{
    (void)state;
    pn_atom_t cid = {.type = PN_ULONG, .u.as_ulong = 7};
    pn_message_t *m = reply(cid, "status-code", PN_INT, 401, "bad signature");
    char buf[1024];
    size_t n = sizeof(buf);
    assert_int_equal(pn_message_encode(m, buf, &n), 0);
    struct hs_cbs_reply r;
    const char *why = NULL;
    pn_message_t *d = pn_message();
    assert_int_equal(hs_cbs_reply_decode(d, buf, n, &r, &why), HS_CBS_OK);
    assert_int_equal(r.status, 401);
    assert_string_equal(r.description, "bad signature");
    assert_false(hs_cbs_accepted(r.status));
    pn_message_free(m);
    pn_message_free(d);
}

static void test_reply_declined(void **state)
{
    (void)state;
    pn_atom_t ulong_id = {.type = PN_ULONG, .u.as_ulong = 1};
    pn_atom_t none = {.type = PN_NULL};
    pn_atom_t str_id = {.type = PN_STRING, .u.as_bytes = {1, "x"}};
    struct {
        pn_atom_t cid;
        const char *key;
        int type;
        int64_t status;
    } cases[] = {
        {none, "status-code", PN_INT, 200},        /* no correlation id */
        {str_id, "status-code", PN_INT, 200},      /* not the id we sent */
        {ulong_id, NULL, PN_INT, 200},             /* no status */
        {ulong_id, "status-code", PN_STRING, 200}, /* status as text */
        {ulong_id, "status-code", PN_INT, -5},     /* out of range */
        {ulong_id, "status-code", PN_LONG, 100000},
        {ulong_id, "statuscode", PN_INT, 200}, /* wrong key */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pn_message_t *m = reply(cases[i].cid, cases[i].key, cases[i].type,
                                cases[i].status, NULL);
        struct hs_cbs_reply r;
        const char *why = NULL;
        assert_int_equal(hs_cbs_reply_read(m, &r, &why), HS_CBS_DECLINED);
        assert_non_null(why);
        pn_message_free(m);
    }
}

static void test_reply_garbage(void **state)
{
    (void)state;
    pn_message_t *m = pn_message();
    struct hs_cbs_reply r;
    const char *why = NULL;
    /* proton 0.37 decodes leniently (truncated sections and unknown type
     * codes come back as an empty message), so garbage is DECLINED or
     * ERROR, and never an answer. */
    static const char *const junk[] = {"\x00\x53\x73\xd0\x00\x00\x00\x40",
                                       "\xff\xff", "\x00\x53",
                                       "\xa1\x05"
                                       "ab"};
    static const size_t junk_len[] = {8, 2, 2, 4};
    for (size_t i = 0; i < 4; i++) {
        why = NULL;
        assert_int_not_equal(
            hs_cbs_reply_decode(m, junk[i], junk_len[i], &r, &why), HS_CBS_OK);
        assert_non_null(why);
    }
    /* Nothing at all (proton itself would assert on it). */
    assert_int_equal(hs_cbs_reply_decode(m, "", 0, &r, &why), HS_CBS_ERROR);
    pn_message_free(m);
}

static void test_address_pattern(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(hs_amqp_address(out, sizeof(out),
                                     "/devices/{deviceId}/messages/events",
                                     "sim000001"),
                     34);
    assert_string_equal(out, "/devices/sim000001/messages/events");
    hs_amqp_address(out, sizeof(out), "/queue/q", "x");
    assert_string_equal(out, "/queue/q");
    hs_amqp_address(out, sizeof(out), "{deviceId}{deviceId}{device", "ab");
    assert_string_equal(out, "abab{device");
    /* Cut at the buffer's end, still terminated; the length says so. */
    assert_int_equal(hs_amqp_address(out, 8, "/q/{deviceId}", "abcdefgh"), 11);
    assert_string_equal(out, "/q/abcd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_request_name_too_long),
        cmocka_unit_test(test_reply_status_types),
        cmocka_unit_test(test_reply_refused_with_description),
        cmocka_unit_test(test_reply_declined),
        cmocka_unit_test(test_reply_garbage),
        cmocka_unit_test(test_address_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
