/*
 * Tests for hs_template: the simulator's "$.Name" substitution, longest
 * name first, unknown names left alone, each built-in variable's form, and
 * output cut at the buffer's end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hs_template.h"

static const char *render(const char *text, uint64_t iteration);
static size_t user(const void *arg, uint32_t i, const struct hs_template_ctx *c,
                   char *buf, size_t cap);

/* Renders text for device "sim000042" at 2024-05-01T12:00:00.5Z. */
static const char *render(const char *text, uint64_t iteration)
{
    static char out[1024];
    static uint64_t rng = 12345;
    struct hs_template t;
    assert_int_equal(hs_template_compile(&t, text), 0);
    struct hs_template_ctx c = {
        .device_id = "sim000042",
        .machine_name = "host-1",
        .iteration = iteration,
        .now = {.tv_sec = 1714564800, .tv_nsec = 500000000},
        .rng = &rng,
    };
    size_t n = hs_template_render(&t, &c, out, sizeof(out) - 1);
    out[n] = '\0';
    hs_template_free(&t);
    return out;
}

static void test_default_template(void **state)
{
    (void)state;
    assert_string_equal(render(HS_TEMPLATE_DEFAULT, 0),
                        "{\"deviceId\": \"sim000042\", \"time\": "
                        "\"2024-05-01T12:00:00.5000000Z\", \"counter\": 1}");
    assert_string_equal(render(HS_TEMPLATE_DEFAULT, 9),
                        "{\"deviceId\": \"sim000042\", \"time\": "
                        "\"2024-05-01T12:00:00.5000000Z\", \"counter\": 10}");
}

static void test_variables(void **state)
{
    (void)state;
    assert_string_equal(render("$.Epoch", 0), "1714564800");
    /* .NET ticks: 100 ns since 0001-01-01. */
    assert_string_equal(render("$.Ticks", 0), "638501616005000000");
    assert_string_equal(render("$.IterationNumber/$.Counter", 4), "4/5");
    assert_string_equal(render("$.MachineName", 0), "host-1");
    const char *g = render("$.Guid", 0);
    assert_int_equal(strlen(g), 36);
    assert_int_equal(g[8], '-');
    assert_int_equal(g[14], '4');
    assert_true(strchr("89ab", g[19]) != NULL);
    char first[40];
    snprintf(first, sizeof(first), "%s", g);
    assert_string_not_equal(first, render("$.Guid", 0));
}

static void test_plain_text_and_unknown(void **state)
{
    (void)state;
    /* Not JSON-aware, unknown names stay, "$." alone stays. */
    assert_string_equal(render("no variables", 0), "no variables");
    assert_string_equal(render("$.Foo $. $$.DeviceId.", 0),
                        "$.Foo $. $sim000042.");
    /* Longest name first: IterationNumber is not "Iteration" + text. */
    assert_string_equal(render("$.DeviceIdX", 0), "sim000042X");
    assert_string_equal(render("", 0), "");
    assert_string_equal(render("a$.Counter$.Counter", 1), "a22");
}

/* Unknown names are warned about once each; known ones never. */
static void test_warn_unknown(void **state)
{
    (void)state;
    const char *names[] = {"Temperature", "Status"};
    assert_int_equal(hs_template_warn_unknown("Template",
                                              "$.DeviceId $.Temperature "
                                              "$.Status $.Counter $. $.5 $",
                                              names, 2),
                     0);
    assert_int_equal(hs_template_warn_unknown("Template",
                                              "$.deviceid $.Countr $.Countr "
                                              "$.Temperatur $.CountrX",
                                              names, 2),
                     4);
    assert_int_equal(hs_template_warn_unknown("Header", "$.Status2", names, 0),
                     1);
}

static void test_cut_at_cap(void **state)
{
    (void)state;
    struct hs_template t;
    char out[8];
    uint64_t rng = 1;
    assert_int_equal(hs_template_compile(&t, "abc$.DeviceIdxyz"), 0);
    struct hs_template_ctx c = {.device_id = "sim000042", .rng = &rng};
    assert_int_equal(hs_template_render(&t, &c, out, sizeof(out)), 8);
    assert_memory_equal(out, "abcsim00", 8);
    hs_template_free(&t);
}

/* Custom variable i's value is "<i>". */
static size_t user(const void *arg, uint32_t i, const struct hs_template_ctx *c,
                   char *buf, size_t cap)
{
    (void)arg;
    (void)c;
    return (size_t)snprintf(buf, cap, "<%u>", i);
}

static void test_custom_names(void **state)
{
    (void)state;
    const char *names[] = {"Counter", "DeviceIdX", "Temp"};
    struct hs_template t;
    char out[128];
    uint64_t rng = 1;
    assert_int_equal(hs_template_compile_vars(&t,
                                              "$.Counter $.DeviceIdX "
                                              "$.DeviceId $.Temperature $.Tem",
                                              names, 3),
                     0);
    struct hs_template_ctx c = {.device_id = "d", .rng = &rng, .user = user};
    size_t n = hs_template_render(&t, &c, out, sizeof(out) - 1);
    out[n] = '\0';
    /* A custom name wins over a built-in one as long; the longest wins. */
    assert_string_equal(out, "<0> <1> d <2>erature $.Tem");
    assert_false(hs_template_is_plain(&t));
    hs_template_free(&t);
    assert_int_equal(hs_template_compile_vars(&t, "plain", names, 3), 0);
    assert_true(hs_template_is_plain(&t));
    hs_template_free(&t);
    assert_int_equal(hs_template_builtin("Epoch"), HS_VAR_EPOCH);
    assert_int_equal(hs_template_builtin("epoch"), HS_VAR_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_template),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_plain_text_and_unknown),
        cmocka_unit_test(test_warn_unknown),
        cmocka_unit_test(test_cut_at_cap),
        cmocka_unit_test(test_custom_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
