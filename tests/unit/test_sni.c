/*
 * Tests for hg_sni, one case per SNI rule: case folding, the trailing dot,
 * wildcards at any depth but not the bare domain, exact over wildcard, the
 * longest wildcard first, duplicates after normalizing, invalid names, and
 * a table large enough to grow many times.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hg_sni.h"

static int route_a, route_b, route_c, route_d;

static struct hg_sni_table *table_new(void);
static void add_ok(struct hg_sni_table *t, const char *name, void *value);
static const char *add_bad(struct hg_sni_table *t, const char *name,
                           void **prev);
static void *find(const struct hg_sni_table *t, const char *name);

/* A table with exact names and wildcards at several depths. */
static struct hg_sni_table *table_new(void)
{
    struct hg_sni_table *t = hg_sni_table_new();

    assert_non_null(t);
    add_ok(t, "hub-a.azure-devices.net", &route_a);
    add_ok(t, "*.example.net", &route_b);
    add_ok(t, "*.eu.example.net", &route_c);
    add_ok(t, "exact.eu.example.net", &route_d);
    return t;
}

static void add_ok(struct hg_sni_table *t, const char *name, void *value)
{
    const char *reason = NULL;
    void *prev = &route_a;

    assert_int_equal(hg_sni_table_add(t, name, value, &prev, &reason), 0);
    assert_null(prev);
}

static const char *add_bad(struct hg_sni_table *t, const char *name,
                           void **prev)
{
    const char *reason = NULL;

    assert_int_equal(hg_sni_table_add(t, name, &route_d, prev, &reason), -1);
    assert_non_null(reason);
    return reason;
}

/* Looks up a NUL-terminated name (the table itself never needs the NUL). */
static void *find(const struct hg_sni_table *t, const char *name)
{
    return hg_sni_table_lookup(t, name, strlen(name));
}

static void test_exact(void **state)
{
    struct hg_sni_table *t = table_new();

    (void)state;
    assert_ptr_equal(find(t, "hub-a.azure-devices.net"), &route_a);
    assert_null(find(t, "hub-b.azure-devices.net"));
    assert_null(find(t, "azure-devices.net"));
    assert_null(find(t, "x.hub-a.azure-devices.net"));
    assert_null(find(t, "hub-a.azure-devices.ne"));
    assert_int_equal(hg_sni_table_count(t), 4);
    hg_sni_table_free(t);
}

static void test_case_folding(void **state)
{
    struct hg_sni_table *t = hg_sni_table_new();

    (void)state;
    add_ok(t, "Hub-A.Azure-Devices.NET", &route_a);
    add_ok(t, "*.EXAMPLE.net", &route_b);
    assert_ptr_equal(find(t, "hub-a.azure-devices.net"), &route_a);
    assert_ptr_equal(find(t, "HUB-A.AZURE-DEVICES.NET"), &route_a);
    assert_ptr_equal(find(t, "x.Example.Net"), &route_b);
    hg_sni_table_free(t);
}

static void test_trailing_dot(void **state)
{
    struct hg_sni_table *t = table_new();

    (void)state;
    assert_ptr_equal(find(t, "hub-a.azure-devices.net."), &route_a);
    assert_ptr_equal(find(t, "a.example.net."), &route_b);
    /* Only one dot is stripped. */
    assert_null(find(t, "hub-a.azure-devices.net.."));
    assert_null(find(t, "."));
    assert_null(find(t, ""));
    /* A name written with a dot matches queries without. */
    add_ok(t, "fqdn.example.org.", &route_c);
    assert_ptr_equal(find(t, "fqdn.example.org"), &route_c);
    hg_sni_table_free(t);
}

static void test_wildcard_depth(void **state)
{
    struct hg_sni_table *t = table_new();

    (void)state;
    assert_ptr_equal(find(t, "a.example.net"), &route_b);
    assert_ptr_equal(find(t, "a.b.example.net"), &route_b);
    assert_ptr_equal(find(t, "a.b.c.d.example.net"), &route_b);
    assert_ptr_equal(find(t, "x-1_y.example.net"), &route_b);
    /* Not a suffix on a label boundary. */
    assert_null(find(t, "aexample.net"));
    assert_null(find(t, "example.net.evil"));
    hg_sni_table_free(t);
}

static void test_wildcard_not_bare(void **state)
{
    struct hg_sni_table *t = table_new();

    (void)state;
    assert_null(find(t, "example.net"));
    assert_null(find(t, "example.net."));
    assert_null(find(t, ".example.net"));
    assert_null(find(t, "net"));
    /* The bare domain only through an exact name of its own. */
    add_ok(t, "example.net", &route_a);
    assert_ptr_equal(find(t, "example.net"), &route_a);
    assert_ptr_equal(find(t, "a.example.net"), &route_b);
    hg_sni_table_free(t);
}

static void test_exact_beats_wildcard(void **state)
{
    struct hg_sni_table *t = table_new();

    (void)state;
    assert_ptr_equal(find(t, "exact.eu.example.net"), &route_d);
    assert_ptr_equal(find(t, "EXACT.eu.example.net."), &route_d);
    assert_ptr_equal(find(t, "other.eu.example.net"), &route_c);
    assert_ptr_equal(find(t, "a.exact.eu.example.net"), &route_c);
    hg_sni_table_free(t);
}

static void test_longest_wildcard(void **state)
{
    struct hg_sni_table *t = table_new();

    (void)state;
    assert_ptr_equal(find(t, "x.eu.example.net"), &route_c);
    assert_ptr_equal(find(t, "y.x.eu.example.net"), &route_c);
    assert_ptr_equal(find(t, "eu.example.net"), &route_b);
    assert_ptr_equal(find(t, "x.us.example.net"), &route_b);
    /* Order of insertion does not matter. */
    hg_sni_table_free(t);
    t = hg_sni_table_new();
    add_ok(t, "*.c.example.org", &route_c);
    add_ok(t, "*.example.org", &route_b);
    add_ok(t, "*.b.c.example.org", &route_d);
    assert_ptr_equal(find(t, "a.b.c.example.org"), &route_d);
    assert_ptr_equal(find(t, "b.c.example.org"), &route_c);
    assert_ptr_equal(find(t, "c.example.org"), &route_b);
    hg_sni_table_free(t);
}

static void test_duplicates(void **state)
{
    struct hg_sni_table *t = table_new();
    void *prev = NULL;

    (void)state;
    assert_string_equal(add_bad(t, "HUB-A.azure-devices.net.", &prev),
                        "the name is already in the table");
    assert_ptr_equal(prev, &route_a);
    assert_string_equal(add_bad(t, "*.Example.NET", &prev),
                        "the name is already in the table");
    assert_ptr_equal(prev, &route_b);
    /* A wildcard and an exact name of the same text are different. */
    add_ok(t, "eu.example.net", &route_a);
    assert_int_equal(hg_sni_table_count(t), 5);
    hg_sni_table_free(t);
}

static void test_invalid(void **state)
{
    static const char wild[] = "'*' is only allowed as the whole first "
                               "label, as in *.example.net";
    static const char domain[] = "a wildcard needs a domain after \"*.\"";
    struct hg_sni_table *t = hg_sni_table_new();
    void *prev = &route_a;

    (void)state;
    assert_string_equal(add_bad(t, "a*.b", &prev), wild);
    assert_null(prev);
    assert_string_equal(add_bad(t, "*a.b", &prev), wild);
    assert_string_equal(add_bad(t, "a.*.b", &prev), wild);
    assert_string_equal(add_bad(t, "*.*.b", &prev), wild);
    assert_string_equal(add_bad(t, "a.b*", &prev), wild);
    assert_string_equal(add_bad(t, "*", &prev), domain);
    assert_string_equal(add_bad(t, "*.", &prev), domain);
    assert_string_equal(add_bad(t, "*..", &prev), domain);
    assert_string_equal(add_bad(t, "", &prev), "the name is empty");
    assert_string_equal(add_bad(t, ".", &prev), "the name is empty");
    assert_string_equal(add_bad(t, "a..b", &prev),
                        "empty label (two dots in a row, or a dot at an end)");
    assert_string_equal(add_bad(t, "a b", &prev),
                        "invalid character; use letters, digits, '-', '_', "
                        "'.'");
    assert_string_equal(add_bad(t, "1.2.3.4", &prev),
                        "not an IP address, and a name cannot end in a "
                        "number");
    assert_int_equal(hg_sni_table_count(t), 0);
    hg_sni_table_free(t);
}

static void test_lengths(void **state)
{
    struct hg_sni_table *t = hg_sni_table_new();
    char name[300], query[300];

    (void)state;
    /* 253 characters: labels of 63, 63, 63 and 61. */
    memset(name, 'a', sizeof(name));
    name[63] = name[127] = name[191] = '.';
    name[253] = '\0';
    add_ok(t, name, &route_a);
    assert_ptr_equal(hg_sni_table_lookup(t, name, 253), &route_a);
    memcpy(query, name, 253);
    query[253] = '.';
    assert_ptr_equal(hg_sni_table_lookup(t, query, 254), &route_a);
    /* Longer than any host name: no match, no overrun. */
    memset(query, 'a', sizeof(query));
    assert_null(hg_sni_table_lookup(t, query, 255));
    assert_null(hg_sni_table_lookup(t, query, sizeof(query)));
    name[253] = 'a';
    name[254] = '\0';
    assert_string_equal(add_bad(t, name, &(void *){NULL}),
                        "the name is longer than 253 characters");
    hg_sni_table_free(t);
}

static void test_hostile_queries(void **state)
{
    struct hg_sni_table *t = table_new();
    static const char nul[] = "a.example.net\0x";

    (void)state;
    assert_null(hg_sni_table_lookup(t, nul, sizeof(nul) - 1));
    assert_null(find(t, "a b.example.net"));
    assert_null(find(t, "\xc3\xa9.example.net"));
    assert_ptr_equal(hg_sni_table_lookup(t, "a.example.netXYZ", 13), &route_b);
    assert_null(hg_sni_table_lookup(t, NULL, 0));
    hg_sni_table_free(t);
}

static void test_many(void **state)
{
    struct hg_sni_table *t = hg_sni_table_new();
    static int values[5000];
    char name[64];

    (void)state;
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "%s%d.example.com", i % 2 ? "*." : "h", i);
        add_ok(t, name, &values[i]);
    }
    assert_int_equal(hg_sni_table_count(t), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "%s%d.example.com", i % 2 ? "x." : "h", i);
        assert_ptr_equal(find(t, name), &values[i]);
    }
    assert_null(find(t, "h1.example.com"));
    hg_sni_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_case_folding),
        cmocka_unit_test(test_trailing_dot),
        cmocka_unit_test(test_wildcard_depth),
        cmocka_unit_test(test_wildcard_not_bare),
        cmocka_unit_test(test_exact_beats_wildcard),
        cmocka_unit_test(test_longest_wildcard),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_hostile_queries),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
