/*
 * Tests for hg_cidr: parsing and normalizing prefixes, merging into ranges,
 * matching IPv4, IPv6 and IPv4-mapped IPv6 addresses, and a randomized
 * comparison of the bisection against a plain scan of the prefixes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "hg_cidr.h"

static struct hg_cidr_set *set_of(const char *const *cidrs, size_t n);
static bool match(const struct hg_cidr_set *set, const char *ip);
static const char *add_bad(const char *text);

/* Builds a finished set from valid prefixes. */
static struct hg_cidr_set *set_of(const char *const *cidrs, size_t n)
{
    struct hg_cidr_set *set = hg_cidr_set_new();
    const char *reason;

    assert_non_null(set);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hg_cidr_set_add(set, cidrs[i], &reason), 0);
    hg_cidr_set_finish(set);
    return set;
}

/* Matches an address written as text, v4 or v6. */
static bool match(const struct hg_cidr_set *set, const char *ip)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

    if (inet_pton(AF_INET, ip, &sin.sin_addr) == 1)
        return hg_cidr_set_match(set, (struct sockaddr *)&sin);
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
    return hg_cidr_set_match(set, (struct sockaddr *)&sin6);
}

static const char *add_bad(const char *text)
{
    struct hg_cidr_set *set = hg_cidr_set_new();
    const char *reason = NULL;

    assert_int_equal(hg_cidr_set_add(set, text, &reason), -1);
    assert_non_null(reason);
    hg_cidr_set_free(set);
    return reason;
}

static void test_ipv4(void **state)
{
    static const char *const cidrs[] = {"203.0.113.0/24", "10.0.0.0/8",
                                        "192.0.2.7"};
    struct hg_cidr_set *set = set_of(cidrs, 3);

    (void)state;
    assert_true(match(set, "203.0.113.0"));
    assert_true(match(set, "203.0.113.255"));
    assert_false(match(set, "203.0.114.0"));
    assert_false(match(set, "203.0.112.255"));
    assert_true(match(set, "10.255.255.255"));
    assert_false(match(set, "11.0.0.0"));
    assert_true(match(set, "192.0.2.7"));
    assert_false(match(set, "192.0.2.8"));
    assert_false(match(set, "192.0.2.6"));
    assert_false(match(set, "0.0.0.0"));
    assert_false(match(set, "255.255.255.255"));
    assert_false(match(set, "::1"));
    hg_cidr_set_free(set);
}

static void test_ipv6(void **state)
{
    static const char *const cidrs[] = {"2001:db8::/32", "fd00:1::/64", "::1",
                                        "2001:db9:0:1::/127"};
    struct hg_cidr_set *set = set_of(cidrs, 4);

    (void)state;
    assert_true(match(set, "2001:db8::"));
    assert_true(match(set, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(match(set, "2001:db9::"));
    assert_true(match(set, "fd00:1::ffff:ffff:ffff:ffff"));
    assert_false(match(set, "fd00:1:0:1::"));
    assert_true(match(set, "::1"));
    assert_false(match(set, "::2"));
    assert_true(match(set, "2001:db9:0:1::1"));
    assert_false(match(set, "2001:db9:0:1::2"));
    assert_false(match(set, "10.0.0.1"));
    hg_cidr_set_free(set);
}

static void test_mapped(void **state)
{
    static const char *const v4[] = {"198.51.100.0/24"};
    static const char *const v6mapped[] = {"::ffff:192.0.2.0/120"};
    static const char *const any6[] = {"::/0"};
    struct hg_cidr_set *set = set_of(v4, 1);

    (void)state;
    /* An IPv4 client on a dual-stack socket shows up mapped. */
    assert_true(match(set, "::ffff:198.51.100.9"));
    assert_false(match(set, "::ffff:198.51.101.9"));
    assert_false(match(set, "::198.51.100.9")); /* compatible, not mapped */
    hg_cidr_set_free(set);
    /* A mapped prefix is an IPv4 prefix, for both forms of address. */
    set = set_of(v6mapped, 1);
    assert_true(match(set, "192.0.2.200"));
    assert_true(match(set, "::ffff:192.0.2.200"));
    assert_false(match(set, "192.0.3.1"));
    hg_cidr_set_free(set);
    /* ::/0 is every IPv6 address, mapped ones too, but no IPv4 one. */
    set = set_of(any6, 1);
    assert_true(match(set, "::ffff:1.2.3.4"));
    assert_true(match(set, "ffff::"));
    assert_false(match(set, "1.2.3.4"));
    hg_cidr_set_free(set);
}

static void test_normalize(void **state)
{
    static const char *const cidrs[] = {"10.1.2.3/8", "2001:db8::1/32"};
    struct hg_cidr_set *set = set_of(cidrs, 2);

    (void)state;
    assert_true(match(set, "10.200.0.0"));
    assert_true(match(set, "2001:db8:1::"));
    assert_int_equal(hg_cidr_set_ranges(set), 2);
    hg_cidr_set_free(set);
}

static void test_edges(void **state)
{
    static const char *const all[] = {"0.0.0.0/0", "::/0"};
    static const char *const ends[] = {"0.0.0.0/32", "255.255.255.255/32",
                                       "::/128",
                                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
                                       "ffff/128"};
    struct hg_cidr_set *set = set_of(all, 2);

    (void)state;
    assert_true(match(set, "0.0.0.0"));
    assert_true(match(set, "255.255.255.255"));
    assert_true(match(set, "::"));
    assert_true(match(set, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    hg_cidr_set_free(set);
    set = set_of(ends, 4);
    assert_true(match(set, "0.0.0.0"));
    assert_false(match(set, "0.0.0.1"));
    assert_true(match(set, "255.255.255.255"));
    assert_false(match(set, "255.255.255.254"));
    assert_true(match(set, "::"));
    assert_true(match(set, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(match(set, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"));
    hg_cidr_set_free(set);
}

static void test_merge(void **state)
{
    static const char *const cidrs[] = {
        "10.0.1.0/24",      "10.0.0.0/24",        "10.0.0.0/16", /* nested */
        "10.1.0.0/16",                                           /* adjacent */
        "192.168.0.0/24",   "192.168.2.0/24",                    /* a gap */
        "255.255.255.0/24", "255.255.255.128/25", /* at the top */
        "2001:db8::/33",    "2001:db8:8000::/33", /* adjacent v6 */
        "ffff::/16",        "ffff:ffff::/32",     /* v6 at the top */
    };
    struct hg_cidr_set *set = set_of(cidrs, 12);

    (void)state;
    /* 10.0/15, 192.168.0/24, 192.168.2/24, 255.255.255/24; 2001:db8::/32,
     * ffff::/16 */
    assert_int_equal(hg_cidr_set_ranges(set), 6);
    assert_true(match(set, "10.1.255.255"));
    assert_false(match(set, "10.2.0.0"));
    assert_false(match(set, "192.168.1.1"));
    assert_true(match(set, "192.168.2.1"));
    assert_true(match(set, "255.255.255.1"));
    assert_true(match(set, "2001:db8:ffff::"));
    assert_true(match(set, "ffff:1::"));
    hg_cidr_set_free(set);
}

static void test_empty(void **state)
{
    struct hg_cidr_set *set = set_of(NULL, 0);

    (void)state;
    assert_int_equal(hg_cidr_set_ranges(set), 0);
    assert_false(match(set, "1.2.3.4"));
    assert_false(match(set, "::1"));
    hg_cidr_set_free(set);
    hg_cidr_set_free(NULL);
}

static void test_errors(void **state)
{
    (void)state;
    assert_string_equal(add_bad("10.0.0.0/33"),
                        "an IPv4 prefix length must be 0..32");
    assert_string_equal(add_bad("::/129"),
                        "an IPv6 prefix length must be 0..128");
    assert_string_equal(add_bad("10.0.0.0/"),
                        "the prefix length must be a number");
    assert_string_equal(add_bad("10.0.0.0/-1"),
                        "the prefix length must be a number");
    assert_string_equal(add_bad("10.0.0.0/+8"),
                        "the prefix length must be a number");
    assert_string_equal(add_bad("10.0.0.0/8/8"),
                        "the prefix length must be a number");
    assert_string_equal(add_bad("10.0.0.0/0008"),
                        "the prefix length must be a number");
    assert_string_equal(add_bad("10.0.0/8"), "not an IPv4 or IPv6 address");
    assert_string_equal(add_bad("10.0.0.256"), "not an IPv4 or IPv6 address");
    assert_string_equal(add_bad("host.example"), "not an IPv4 or IPv6 address");
    assert_string_equal(add_bad(" 10.0.0.0/8"), "not an IPv4 or IPv6 address");
    assert_string_equal(add_bad("/8"), "not an IPv4 or IPv6 address");
    assert_string_equal(add_bad(""), "empty");
    assert_string_equal(add_bad("0000:0000:0000:0000:0000:0000:0000:0000:"
                                "0000:0000:0000:0000:0000/128"),
                        "too long for an address");
}

/* A prefix as numbers, for the reference scan. */
struct ref_prefix {
    uint32_t addr;
    unsigned len;
};

static bool ref_match(const struct ref_prefix *p, size_t n, uint32_t a)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t mask = p[i].len ? UINT32_MAX << (32 - p[i].len) : 0;
        if ((a & mask) == (p[i].addr & mask))
            return true;
    }
    return false;
}

/* Random prefixes in a small space, so overlaps and adjacency are common;
 * the set must agree with a linear scan on every address probed. */
static void test_random_v4(void **state)
{
    struct ref_prefix p[40];
    char text[32];
    const char *reason;

    (void)state;
    srand(7);
    for (int round = 0; round < 200; round++) {
        struct hg_cidr_set *set = hg_cidr_set_new();
        size_t n = (size_t)(rand() % 40);
        for (size_t i = 0; i < n; i++) {
            p[i].addr = 0x0a000000u | (uint32_t)(rand() & 0xffff);
            p[i].len = 16 + (unsigned)(rand() % 17);
            snprintf(text, sizeof(text), "10.0.%u.%u/%u",
                     (p[i].addr >> 8) & 0xff, p[i].addr & 0xff, p[i].len);
            assert_int_equal(hg_cidr_set_add(set, text, &reason), 0);
        }
        hg_cidr_set_finish(set);
        for (int k = 0; k < 300; k++) {
            uint32_t a = 0x0a000000u | (uint32_t)(rand() & 0x1ffff);
            struct sockaddr_in sin = {.sin_family = AF_INET,
                                      .sin_addr.s_addr = htonl(a)};
            assert_int_equal(hg_cidr_set_match(set, (struct sockaddr *)&sin),
                             ref_match(p, n, a));
        }
        hg_cidr_set_free(set);
    }
}

static bool ref_match6(const uint8_t (*p)[16], const unsigned *len, size_t n,
                       const uint8_t *a)
{
    for (size_t i = 0; i < n; i++) {
        unsigned bits = len[i], k = 0;
        while (k < bits / 8 && p[i][k] == a[k])
            k++;
        if (k < bits / 8)
            continue;
        if (bits % 8 == 0 ||
            ((p[i][k] ^ a[k]) & (0xff00 >> (bits % 8)) & 0xff) == 0)
            return true;
    }
    return false;
}

/* The IPv6 twin, varying the bytes on both sides of the 64-bit halves
 * (bytes 7 and 8), so carries between the halves are exercised. */
static void test_random_v6(void **state)
{
    uint8_t p[40][16];
    unsigned len[40];
    char addr[INET6_ADDRSTRLEN], text[64];
    const char *reason;

    (void)state;
    srand(11);
    for (int round = 0; round < 200; round++) {
        struct hg_cidr_set *set = hg_cidr_set_new();
        size_t n = (size_t)(rand() % 40);
        for (size_t i = 0; i < n; i++) {
            memset(p[i], 0xff, 16);
            p[i][0] = 0x20;
            p[i][7] = (uint8_t)rand();
            p[i][8] = (uint8_t)rand();
            len[i] = 56 + (unsigned)(rand() % 17);
            inet_ntop(AF_INET6, p[i], addr, sizeof(addr));
            snprintf(text, sizeof(text), "%s/%u", addr, len[i]);
            assert_int_equal(hg_cidr_set_add(set, text, &reason), 0);
        }
        hg_cidr_set_finish(set);
        for (int k = 0; k < 300; k++) {
            struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
            uint8_t *a = sin6.sin6_addr.s6_addr;
            memset(a, 0xff, 16);
            memset(a + 9, rand() % 2 ? 0xff : 0x00, 7);
            a[0] = 0x20;
            a[7] = (uint8_t)rand();
            a[8] = (uint8_t)rand();
            assert_int_equal(hg_cidr_set_match(set, (struct sockaddr *)&sin6),
                             ref_match6((const uint8_t(*)[16])p, len, n, a));
        }
        hg_cidr_set_free(set);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),      cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_mapped),    cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_edges),     cmocka_unit_test(test_merge),
        cmocka_unit_test(test_empty),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_random_v4), cmocka_unit_test(test_random_v6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
