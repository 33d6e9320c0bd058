/*
 * Tests for hs_sas and hs_base64: SAS tokens against vectors computed
 * independently (Python's hmac, base64 and urllib.parse.quote, checked
 * against the Node SDK's azure-iot-common for the same inputs), enrollment
 * group keys, strict base64, and connection strings in every form a device
 * SDK accepts and every mistake it refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hs_base64.h"
#include "hs_sas.h"

/* base64 of the bytes 0, 1, ..., 31. */
#define KEY32 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static const char *token(const char *resource, const char *key_b64,
                         const char *policy, uint64_t expiry);
static const char *connstr_bad(const char *text);

/* A token made with hs_sas_token from a base64 key. */
static const char *token(const char *resource, const char *key_b64,
                         const char *policy, uint64_t expiry)
{
    static char out[1024];
    uint8_t key[HS_SAS_KEY_MAX];
    long n = hs_sas_key_decode(key_b64, key);
    assert_true(n > 0);
    size_t len = hs_sas_token(out, sizeof(out), resource, key, (size_t)n,
                              policy, expiry);
    assert_int_equal(len, strlen(out));
    return out;
}

static const char *connstr_bad(const char *text)
{
    struct hs_connstr cs;
    const char *reason = NULL;
    assert_int_equal(hs_connstr_parse(text, &cs, &reason), -1);
    assert_non_null(reason);
    assert_null(cs.host_name);
    return reason;
}

static void test_device_token(void **state)
{
    (void)state;
    assert_string_equal(
        token("demo-hub.azure-devices.net/devices/sim000001", KEY32, NULL,
              1700000000),
        "SharedAccessSignature "
        "sr=demo-hub.azure-devices.net%2Fdevices%2Fsim000001"
        "&sig=7H%2BON%2Bf%2FqSg0ti8pON%2FM2ivXK0jT8xszLHJ1Eint6Gk%3D"
        "&se=1700000000");
}

static void test_policy_token(void **state)
{
    (void)state;
    /* skn comes between sig and se, as the Node SDK writes it. */
    assert_string_equal(
        token("demo-hub.azure-devices.net/devices/sim000001", KEY32, "device",
              1700000000),
        "SharedAccessSignature "
        "sr=demo-hub.azure-devices.net%2Fdevices%2Fsim000001"
        "&sig=7H%2BON%2Bf%2FqSg0ti8pON%2FM2ivXK0jT8xszLHJ1Eint6Gk%3D"
        "&skn=device&se=1700000000");
}

static void test_awkward_names(void **state)
{
    (void)state;
    /* Characters a device id may hold: '*' gets lower-case hex, the rest
     * of !'() and space are escaped, ~_.- are not. */
    assert_string_equal(
        token("hub.azure-devices.net/devices/a*b(c)!d'e f~_.-", KEY32,
              "my policy", 4102444800),
        "SharedAccessSignature "
        "sr=hub.azure-devices.net%2Fdevices%2Fa%2ab%28c%29%21d%27e%20f~_.-"
        "&sig=DDJoLhdtGEJkJDUURjFCWZ1yscZs%2FXzo39SKF3iyoqU%3D"
        "&skn=my%20policy&se=4102444800");
    /* UTF-8 bytes are escaped one by one, upper-case. */
    assert_string_equal(
        token("h\xC3\xA9llo.net/devices/x", "YWJj", NULL, 1),
        "SharedAccessSignature sr=h%C3%A9llo.net%2Fdevices%2Fx"
        "&sig=4OPip6cbrYwsmjF%2F5RBnG8gwUdjFHF9JTFeKv0aK1yc%3D&se=1");
}

static void test_urlencode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(hs_sas_urlencode(out, sizeof(out), "a/b=c+d"), 13);
    assert_string_equal(out, "a%2Fb%3Dc%2Bd");
    /* Too small: the length comes back, nothing past cap is written. */
    memset(out, 'X', sizeof(out));
    assert_int_equal(hs_sas_urlencode(out, 4, "a/b"), 5);
    assert_int_equal(out[4], 'X');
    assert_int_equal(hs_sas_urlencode(out, sizeof(out), ""), 0);
    assert_string_equal(out, "");
}

static void test_sign(void **state)
{
    (void)state;
    uint8_t key[HS_SAS_KEY_MAX];
    char sig[HS_SAS_SIG_LEN + 1];
    long n = hs_sas_key_decode(KEY32, key);
    assert_int_equal(n, 32);
    hs_sas_sign(key, 32, "demo-hub.azure-devices.net%2Fdevices%2Fsim000001",
                1700000000, sig);
    assert_string_equal(sig, "7H+ON+f/qSg0ti8pON/M2ivXK0jT8xszLHJ1Eint6Gk=");
}

static void test_group_key(void **state)
{
    (void)state;
    /* DPS symmetric-key enrollment groups: HMAC-SHA256(group, id). */
    uint8_t group[HS_SAS_KEY_MAX], dev[32];
    char b64[HS_BASE64_LEN(32) + 1];
    long n = hs_sas_key_decode("Z3JvdXAta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2w=",
                               group);
    assert_int_equal(n, 32);
    hs_sas_derive(group, (size_t)n, "sim000001", dev);
    hs_base64_encode(dev, 32, b64);
    assert_string_equal(b64, "Geh+8duu8gO+WSXTZQp4PQsQALR1tBm+trvmieijm44=");
}

static void test_base64(void **state)
{
    (void)state;
    uint8_t out[16];
    char enc[32];
    assert_int_equal(hs_base64_decode("", out, sizeof(out)), 0);
    assert_int_equal(hs_base64_decode("YQ==", out, sizeof(out)), 1);
    assert_int_equal(out[0], 'a');
    assert_int_equal(hs_base64_decode("YWI=", out, sizeof(out)), 2);
    assert_int_equal(hs_base64_decode("YWJj", out, sizeof(out)), 3);
    assert_memory_equal(out, "abc", 3);
    assert_int_equal(hs_base64_decode("YWJ", out, sizeof(out)), -1);
    assert_int_equal(hs_base64_decode("YW=j", out, sizeof(out)), -1);
    assert_int_equal(hs_base64_decode("Y===", out, sizeof(out)), -1);
    assert_int_equal(hs_base64_decode("YR==", out, sizeof(out)), -1);
    assert_int_equal(hs_base64_decode("YWJ-", out, sizeof(out)), -1);
    assert_int_equal(hs_base64_decode("YWJj", out, 2), -1);
    assert_int_equal(hs_sas_key_decode("", out), -1);
    assert_int_equal(hs_base64_encode((const uint8_t *)"ab", 2, enc), 4);
    assert_string_equal(enc, "YWI=");
    assert_int_equal(hs_base64_encode((const uint8_t *)"\xff\xfe\xfd", 3, enc),
                     4);
    assert_string_equal(enc, "//79");
}

static void test_connstr_device(void **state)
{
    (void)state;
    struct hs_connstr cs;
    const char *reason = NULL;
    assert_int_equal(hs_connstr_parse("HostName=demo-hub.azure-devices.net;"
                                      "DeviceId=dev%2A1;"
                                      "SharedAccessKey=" KEY32,
                                      &cs, &reason),
                     0);
    assert_string_equal(cs.host_name, "demo-hub.azure-devices.net");
    assert_string_equal(cs.device_id, "dev*1");
    assert_string_equal(cs.key, KEY32); /* '=' inside a value is kept */
    assert_null(cs.key_name);
    assert_int_equal(hs_connstr_kind(&cs), HS_CONNSTR_DEVICE);
    hs_connstr_free(&cs);

    /* Keys in any case and order, spaces around keys, empty parts. */
    assert_int_equal(
        hs_connstr_parse(";sharedaccesssignature=SharedAccessSignature "
                         "sr=x&sig=y&se=1;; deviceid =d;HOSTNAME=h;"
                         "GatewayHostName=gw;ModuleId=m;",
                         &cs, &reason),
        0);
    assert_string_equal(cs.sas, "SharedAccessSignature sr=x&sig=y&se=1");
    assert_string_equal(cs.device_id, "d");
    assert_string_equal(cs.gateway, "gw");
    assert_string_equal(cs.module_id, "m");
    hs_connstr_free(&cs);

    assert_int_equal(
        hs_connstr_parse("HostName=h;DeviceId=d;x509=true", &cs, &reason), 0);
    assert_true(cs.x509);
    hs_connstr_free(&cs);

    /* A policy acting for one device. */
    assert_int_equal(hs_connstr_parse("HostName=h;DeviceId=d;"
                                      "SharedAccessKeyName=device;"
                                      "SharedAccessKey=YWJj",
                                      &cs, &reason),
                     0);
    assert_int_equal(hs_connstr_kind(&cs), HS_CONNSTR_DEVICE);
    assert_string_equal(cs.key_name, "device");
    hs_connstr_free(&cs);
}

static void test_connstr_hub(void **state)
{
    (void)state;
    struct hs_connstr cs;
    const char *reason = NULL;
    assert_int_equal(hs_connstr_parse("HostName=demo-hub.azure-devices.net;"
                                      "SharedAccessKeyName=iothubowner;"
                                      "SharedAccessKey=" KEY32,
                                      &cs, &reason),
                     0);
    assert_int_equal(hs_connstr_kind(&cs), HS_CONNSTR_HUB);
    assert_string_equal(cs.key_name, "iothubowner");
    assert_null(cs.device_id);
    hs_connstr_free(&cs);
}

static void test_connstr_refused(void **state)
{
    (void)state;
    assert_string_equal(connstr_bad(""), "no HostName");
    assert_string_equal(connstr_bad("DeviceId=d;SharedAccessKey=YWJj"),
                        "no HostName");
    assert_string_equal(connstr_bad("HostName=h;DeviceId=d;Key=YWJj"),
                        "unknown key");
    assert_string_equal(connstr_bad("HostName=h;HostName=h2;DeviceId=d"),
                        "repeated key");
    assert_string_equal(connstr_bad("HostName=h;DeviceId"),
                        "a part without '='");
    assert_string_equal(connstr_bad("HostName=;DeviceId=d"), "empty value");
    assert_string_equal(connstr_bad("HostName=h;DeviceId=d;"
                                    "SharedAccessKey=YWJj;"
                                    "SharedAccessSignature=s"),
                        "both SharedAccessKey and SharedAccessSignature");
    assert_string_equal(
        connstr_bad("HostName=h;DeviceId=d;SharedAccessKey=not base64"),
        "SharedAccessKey is not base64");
    assert_string_equal(connstr_bad("HostName=h;SharedAccessKeyName=p"),
                        "SharedAccessKeyName without SharedAccessKey");
    assert_string_equal(connstr_bad("HostName=h;SharedAccessKey=YWJj"),
                        "neither DeviceId nor SharedAccessKeyName");
    assert_string_equal(
        connstr_bad("HostName=h;DeviceId=d"),
        "no SharedAccessKey, SharedAccessSignature or x509=true");
    assert_string_equal(connstr_bad("HostName=h;DeviceId=d%2;x509=true"),
                        "DeviceId has a bad %-escape");
    assert_string_equal(connstr_bad("HostName=h;DeviceId=d%00;x509=true"),
                        "DeviceId has a bad %-escape");
    assert_string_equal(connstr_bad("HostName=h;DeviceId=d;x509=yes"),
                        "x509 is neither true nor false");
    assert_string_equal(
        connstr_bad("HostName=h;DeviceId=d;x509=true;SharedAccessKey=YWJj"),
        "x509=true with a key or token");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_token),
        cmocka_unit_test(test_policy_token),
        cmocka_unit_test(test_awkward_names),
        cmocka_unit_test(test_urlencode),
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_group_key),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_connstr_device),
        cmocka_unit_test(test_connstr_hub),
        cmocka_unit_test(test_connstr_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
