/*
 * Tests for hg_units: durations, sizes, host names and the address forms
 * of binds, resolver servers and backends, including every edge that the
 * config's error messages depend on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "hg_units.h"

static uint64_t duration_ok(const char *text);
static const char *duration_bad(const char *text);
static uint64_t size_ok(const char *text);
static const char *size_bad(const char *text);
static const char *backend_bad(const char *text);

/* Parses a duration that must be valid; returns milliseconds. */
static uint64_t duration_ok(const char *text)
{
    const char *reason = NULL;
    uint64_t ms = 0;

    assert_int_equal(hg_duration_parse(text, &ms, &reason), 0);
    return ms;
}

/* Parses a duration that must be invalid; returns the reason. */
static const char *duration_bad(const char *text)
{
    const char *reason = NULL;
    uint64_t ms = 12345;

    assert_int_equal(hg_duration_parse(text, &ms, &reason), -1);
    assert_non_null(reason);
    assert_int_equal(ms, 12345); /* untouched on error */
    return reason;
}

static uint64_t size_ok(const char *text)
{
    const char *reason = NULL;
    uint64_t bytes = 0;

    assert_int_equal(hg_size_parse(text, &bytes, &reason), 0);
    return bytes;
}

static const char *size_bad(const char *text)
{
    const char *reason = NULL;
    uint64_t bytes = 0;

    assert_int_equal(hg_size_parse(text, &bytes, &reason), -1);
    assert_non_null(reason);
    return reason;
}

static const char *backend_bad(const char *text)
{
    char host[HG_HOST_BUF];
    const char *reason = NULL;
    uint16_t port;

    assert_int_equal(hg_backend_parse(text, host, sizeof(host), &port, &reason),
                     -1);
    assert_non_null(reason);
    return reason;
}

static void test_duration_units(void **state)
{
    (void)state;
    assert_int_equal(duration_ok("1500ms"), 1500);
    assert_int_equal(duration_ok("5s"), 5000);
    assert_int_equal(duration_ok("30m"), 30 * 60 * 1000);
    assert_int_equal(duration_ok("2h"), 2 * 3600 * 1000);
    assert_int_equal(duration_ok("0s"), 0);
    assert_int_equal(duration_ok("007s"), 7000);
}

static void test_duration_errors(void **state)
{
    (void)state;
    assert_string_equal(duration_bad("5"), "a unit is required: ms, s, m, h");
    assert_string_equal(duration_bad("5x"), "unknown unit; use ms, s, m, h");
    assert_string_equal(duration_bad("5S"), "unknown unit; use ms, s, m, h");
    assert_string_equal(duration_bad("5 s"), "unknown unit; use ms, s, m, h");
    assert_string_equal(duration_bad("5sec"), "unknown unit; use ms, s, m, h");
    assert_string_equal(duration_bad("s"), "a whole number is required");
    assert_string_equal(duration_bad(""), "a whole number is required");
    assert_string_equal(duration_bad("-5s"), "a whole number is required");
    assert_string_equal(duration_bad("+5s"), "a whole number is required");
    assert_string_equal(duration_bad(" 5s"), "a whole number is required");
    assert_string_equal(duration_bad("1.5s"),
                        "a whole number is required; use a smaller unit");
    assert_string_equal(duration_bad("1h30m"), "unknown unit; use ms, s, m, h");
}

static void test_duration_overflow(void **state)
{
    (void)state;
    /* 2^64 - 1 ms fits; one more digit does not. */
    assert_true(duration_ok("18446744073709551615ms") == UINT64_MAX);
    assert_string_equal(duration_bad("18446744073709551616ms"),
                        "the number is too large");
    assert_string_equal(duration_bad("99999999999999999999999s"),
                        "the number is too large");
    /* The number fits, the milliseconds do not. */
    assert_string_equal(duration_bad("18446744073709552s"),
                        "the value is too large");
    assert_string_equal(duration_bad("5124095576031h"),
                        "the value is too large");
    assert_true(duration_ok("5124095576030h") == 5124095576030ull * 3600000);
}

static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(size_ok("100B"), 100);
    assert_int_equal(size_ok("64KiB"), 64 * 1024);
    assert_int_equal(size_ok("16MiB"), 16 * 1024 * 1024);
    assert_string_equal(size_bad("64"), "a unit is required: B, KiB, MiB");
    assert_string_equal(size_bad("64KB"), "unknown unit; use B, KiB, MiB");
    assert_string_equal(size_bad("64kib"), "unknown unit; use B, KiB, MiB");
    assert_string_equal(size_bad("1GiB"), "unknown unit; use B, KiB, MiB");
    assert_string_equal(size_bad("KiB"), "a whole number is required");
    assert_string_equal(size_bad("17592186044416MiB"),
                        "the value is too large");
}

static void test_hostport_split(void **state)
{
    char host[HG_HOST_BUF];
    const char *reason;
    uint16_t port;

    (void)state;
    assert_int_equal(
        hg_hostport_split("name", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "name");
    assert_int_equal(port, 0);
    assert_int_equal(
        hg_hostport_split("name:8883", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "name");
    assert_int_equal(port, 8883);
    assert_int_equal(
        hg_hostport_split("[::1]:443", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 443);
    assert_int_equal(
        hg_hostport_split("[::1]", host, sizeof(host), &port, &reason), 0);
    assert_int_equal(port, 0);
    assert_int_equal(
        hg_hostport_split("::1", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(
        hg_hostport_split("fd00::abcd", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "fd00::abcd");
    assert_int_equal(port, 0);
    /* The last group reads as a port too: brackets must say which. */
    assert_int_equal(
        hg_hostport_split("::1:8883", host, sizeof(host), &port, &reason), -1);
    assert_string_equal(reason, "ambiguous: the last group reads as a port "
                                "as well; write [ADDRESS]:PORT, or [ADDRESS] "
                                "for no port");
    assert_int_equal(hg_hostport_split("2001:db8::1:443", host, sizeof(host),
                                       &port, &reason),
                     -1);
    assert_int_equal(
        hg_hostport_split("[::1:8883]", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "::1:8883");
    assert_int_equal(port, 0);
    assert_int_equal(hg_hostport_split("::ffff:10.0.0.1", host, sizeof(host),
                                       &port, &reason),
                     0);
    /* A buffer too small for the host. */
    assert_int_equal(hg_hostport_split("abcdef:1", host, 4, &port, &reason),
                     -1);
    assert_string_equal(reason, "the host is too long");
}

static void test_rates(void **state)
{
    uint64_t v;
    const char *reason;

    (void)state;
    assert_int_equal(hg_rate_parse("200/s", &v, &reason), 0);
    assert_int_equal(v, 12000);
    assert_int_equal(hg_rate_parse("30/m", &v, &reason), 0);
    assert_int_equal(v, 30);
    assert_int_equal(hg_rate_parse("30", &v, &reason), -1);
    assert_string_equal(reason, "a unit is required: /s or /m, as in 200/s");
    assert_int_equal(hg_rate_parse("30/h", &v, &reason), -1);
    assert_string_equal(reason, "unknown unit; use /s or /m, as in 200/s");
    assert_int_equal(hg_rate_parse("/s", &v, &reason), -1);
    assert_int_equal(hg_rate_parse("1.5/s", &v, &reason), -1);
    assert_int_equal(hg_rate_parse("999999999999999999/s", &v, &reason), -1);
    assert_string_equal(reason, "the value is too large");
}

static void test_ports(void **state)
{
    char host[HG_HOST_BUF];
    const char *reason;
    uint16_t port;

    (void)state;
    assert_int_equal(
        hg_hostport_split("a:65535", host, sizeof(host), &port, &reason), 0);
    assert_int_equal(port, 65535);
    assert_int_equal(
        hg_hostport_split("a:1", host, sizeof(host), &port, &reason), 0);
    assert_int_equal(port, 1);
    assert_int_equal(
        hg_hostport_split("a:0", host, sizeof(host), &port, &reason), -1);
    assert_string_equal(reason, "the port must be 1..65535");
    assert_int_equal(
        hg_hostport_split("a:65536", host, sizeof(host), &port, &reason), -1);
    assert_string_equal(reason, "the port must be 1..65535");
    assert_int_equal(hg_hostport_split("a:99999999999999999999999", host,
                                       sizeof(host), &port, &reason),
                     -1);
    assert_int_equal(
        hg_hostport_split("a:", host, sizeof(host), &port, &reason), -1);
    assert_string_equal(reason, "the port must be a number");
    assert_int_equal(
        hg_hostport_split("a:8x", host, sizeof(host), &port, &reason), -1);
    assert_string_equal(reason, "the port must be a number");
    assert_int_equal(
        hg_hostport_split(":80", host, sizeof(host), &port, &reason), -1);
    assert_string_equal(reason, "the host is missing");
}

static void test_bind(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    const char *reason;
    socklen_t len;

    (void)state;
    assert_int_equal(hg_bind_parse("1.2.3.4:8883", &ss, &len, &reason), 0);
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 8883);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x01020304);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(hg_bind_parse("[::]:8883", &ss, &len, &reason), 0);
    assert_int_equal(sin6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(sin6->sin6_port), 8883);
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(hg_bind_parse("[2001:db8::1]:443", &ss, &len, &reason), 0);
    assert_int_equal(sin6->sin6_addr.s6_addr[15], 1);
}

static void test_bind_errors(void **state)
{
    struct sockaddr_storage ss;
    const char *reason;
    socklen_t len;

    (void)state;
    assert_int_equal(hg_bind_parse("1.2.3.4", &ss, &len, &reason), -1);
    assert_string_equal(reason,
                        "a port is required, as in 0.0.0.0:8883 or [::]:8883");
    assert_int_equal(hg_bind_parse("[::]", &ss, &len, &reason), -1);
    assert_int_equal(hg_bind_parse("::1", &ss, &len, &reason), -1);
    assert_int_equal(hg_bind_parse("localhost:80", &ss, &len, &reason), -1);
    assert_string_equal(reason, "the host must be an IP address");
    assert_int_equal(hg_bind_parse("1.2.3:80", &ss, &len, &reason), -1);
    assert_int_equal(hg_bind_parse("256.0.0.1:80", &ss, &len, &reason), -1);
    assert_int_equal(hg_bind_parse("::1:8883x", &ss, &len, &reason), -1);
    assert_int_equal(hg_bind_parse("2001:db8::1:443x", &ss, &len, &reason), -1);
    assert_string_equal(
        reason, "an IPv6 address with a port needs brackets, as in [::1]:443");
    assert_int_equal(hg_bind_parse("[::1", &ss, &len, &reason), -1);
    assert_string_equal(reason, "missing ']'");
    assert_int_equal(hg_bind_parse("[::1]443", &ss, &len, &reason), -1);
    assert_string_equal(reason, "unexpected text after ']'");
    assert_int_equal(hg_bind_parse("[1.2.3.4]:80", &ss, &len, &reason), -1);
    assert_string_equal(reason, "brackets must hold an IPv6 address");
    assert_int_equal(hg_bind_parse("", &ss, &len, &reason), -1);
    assert_int_equal(
        hg_bind_parse("[::ffff:127.0.0.1]:8883", &ss, &len, &reason), -1);
    assert_string_equal(
        reason, "an IPv4 address is written as one, as in 127.0.0.1:8883");
}

static void test_server(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    const char *reason;
    socklen_t len;

    (void)state;
    assert_int_equal(hg_server_parse("10.0.0.2", 53, &ss, &len, &reason), 0);
    assert_int_equal(ntohs(sin->sin_port), 53);
    assert_int_equal(hg_server_parse("10.0.0.2:5353", 53, &ss, &len, &reason),
                     0);
    assert_int_equal(ntohs(sin->sin_port), 5353);
    assert_int_equal(hg_server_parse("[fd00::2]:54", 53, &ss, &len, &reason),
                     0);
    assert_int_equal(ntohs(sin6->sin6_port), 54);
    assert_int_equal(hg_server_parse("fd00::2", 53, &ss, &len, &reason), 0);
    assert_int_equal(ntohs(sin6->sin6_port), 53);
    assert_int_equal(hg_server_parse("dns.example:53", 53, &ss, &len, &reason),
                     -1);
    assert_string_equal(reason, "the server must be an IP address");
}

static void test_backend(void **state)
{
    char host[HG_HOST_BUF];
    const char *reason;
    uint16_t port;

    (void)state;
    assert_int_equal(hg_backend_parse("hub-a.privatelink.example.net", host,
                                      sizeof(host), &port, &reason),
                     0);
    assert_string_equal(host, "hub-a.privatelink.example.net");
    assert_int_equal(port, 0);
    assert_int_equal(
        hg_backend_parse("hub:8883", host, sizeof(host), &port, &reason), 0);
    assert_int_equal(port, 8883);
    assert_int_equal(
        hg_backend_parse("1.2.3.4", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "1.2.3.4");
    assert_int_equal(
        hg_backend_parse("[::1]:8883", host, sizeof(host), &port, &reason), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8883);
    assert_int_equal(hg_backend_parse("hub.example.net.", host, sizeof(host),
                                      &port, &reason),
                     0);
    /* No address at all cannot be a backend. */
    assert_int_equal(
        hg_backend_parse("0.0.0.0", host, sizeof(host), &port, &reason), -1);
    assert_string_equal(reason,
                        "0.0.0.0 and :: mean no address; a backend needs one");
    assert_int_equal(
        hg_backend_parse("[::]:8883", host, sizeof(host), &port, &reason), -1);
    assert_int_equal(
        hg_backend_parse("[0::0]", host, sizeof(host), &port, &reason), -1);
}

static void test_backend_errors(void **state)
{
    (void)state;
    assert_string_equal(backend_bad("hub:0"), "the port must be 1..65535");
    assert_string_equal(backend_bad("1.2.3.256"),
                        "not an IP address, and a name cannot end in a "
                        "number");
    assert_string_equal(backend_bad("hub example"),
                        "invalid character; use letters, digits, '-', '_', "
                        "'.'");
    assert_string_equal(backend_bad("a..b"),
                        "empty label (two dots in a row, or a dot at an end)");
    assert_string_equal(backend_bad("[hub]:80"),
                        "brackets must hold an IPv6 address");
    assert_string_equal(backend_bad(""), "the host is missing");
    assert_string_equal(backend_bad("."), "the name is empty");
}

static void test_hostname(void **state)
{
    char name[300];
    const char *reason;

    (void)state;
    assert_int_equal(hg_hostname_check("a_b-c.Example.NET", 17, &reason), 0);
    assert_int_equal(hg_hostname_check("localhost", 9, &reason), 0);
    assert_int_equal(hg_hostname_check("a.b1", 4, &reason), 0);
    assert_int_equal(hg_hostname_check(".a", 2, &reason), -1);
    assert_int_equal(hg_hostname_check("a.", 2, &reason), -1);
    assert_int_equal(hg_hostname_check("a*b", 3, &reason), -1);
    assert_int_equal(hg_hostname_check("123", 3, &reason), -1);
    assert_int_equal(hg_hostname_check("1.2.3.4", 7, &reason), -1);
    assert_int_equal(hg_hostname_labels("1.2.3.4", 7, &reason), 0);
    assert_int_equal(hg_hostname_check("-a.net", 6, &reason), -1);
    assert_string_equal(reason, "a label begins or ends with '-'");
    assert_int_equal(hg_hostname_check("a.b-.net", 8, &reason), -1);
    assert_int_equal(hg_hostname_labels("a-b.-", 5, &reason), -1);
    assert_int_equal(hg_hostname_labels("a..b", 4, &reason), -1);
    /* Only len bytes count. */
    assert_int_equal(hg_hostname_check("ab!", 2, &reason), 0);
    /* Labels up to 63, names up to 253. */
    memset(name, 'a', sizeof(name));
    assert_int_equal(hg_hostname_check(name, 63, &reason), 0);
    assert_int_equal(hg_hostname_check(name, 64, &reason), -1);
    assert_string_equal(reason, "a label is longer than 63 characters");
    for (size_t i = 63; i < sizeof(name); i += 64)
        name[i] = '.';
    assert_int_equal(hg_hostname_check(name, 253, &reason), 0);
    assert_int_equal(hg_hostname_check(name, 254, &reason), -1);
    assert_string_equal(reason, "the name is longer than 253 characters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_units),
        cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_duration_overflow),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_hostport_split),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_rates),
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_bind_errors),
        cmocka_unit_test(test_server),
        cmocka_unit_test(test_backend),
        cmocka_unit_test(test_backend_errors),
        cmocka_unit_test(test_hostname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
