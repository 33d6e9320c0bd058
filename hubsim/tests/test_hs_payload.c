/*
 * Tests for hs_vars and hs_payload: each kind of custom variable (counters
 * that step and wrap, random whole numbers and doubles in their ranges,
 * value lists, random strings, sequences and the counters they hold back),
 * state per device, the refusals with the variable named, the payload
 * distribution's syntax and its shares over many draws, payloads bound to
 * a device, and the Header's property bag. Random draws use a seeded
 * generator, so every run sees the same values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hs_json.h"
#include "hs_payload.h"
#include "hs_vars.h"

static char *const ids[] = {"d1", "d2", "d3"};

static void vars_ok(struct hs_vars *v, const char *json);
static const char *vars_bad(const char *json);
static void plan(struct hs_payload *p, const char *vars, const char *dist,
                 const char *tpl);
static const char *msg(const struct hs_payload *p, uint32_t dev,
                       uint64_t iteration, uint64_t *rng);
static const char *lookup(void *arg, const char *name);

static void vars_ok(struct hs_vars *v, const char *json)
{
    struct hs_json *arr;
    struct hs_json_error e;
    char err[512] = "";
    assert_int_equal(
        hs_json_parse(json, strlen(json), HS_JSON_BARE_KEYS, &arr, &e), 0);
    if (hs_vars_parse(v, arr, "Variables", err, sizeof(err)) != 0)
        fail_msg("%s", err);
    hs_json_free(arr);
}

static const char *vars_bad(const char *json)
{
    static char err[512];
    struct hs_vars v;
    struct hs_json *arr;
    struct hs_json_error e;
    assert_int_equal(
        hs_json_parse(json, strlen(json), HS_JSON_BARE_KEYS, &arr, &e), 0);
    assert_int_equal(hs_vars_parse(&v, arr, "Variables", err, sizeof(err)), -1);
    hs_json_free(arr);
    return err;
}

/* A plan for ids with variables (may be NULL) and a distribution. */
static void plan(struct hs_payload *p, const char *vars, const char *dist,
                 const char *tpl)
{
    char err[512] = "";
    hs_payload_init(p);
    if (vars)
        vars_ok(&p->vars, vars);
    if (dist == NULL)
        assert_int_equal(hs_payload_add_template(p, 100, tpl, NULL), 0);
    else if (hs_payload_dist_parse(p, dist, tpl, lookup, NULL, err,
                                   sizeof(err)) != 0)
        fail_msg("%s", err);
}

/* Device dev's next message: "topic payload". */
static const char *msg(const struct hs_payload *p, uint32_t dev,
                       uint64_t iteration, uint64_t *rng)
{
    static char out[HS_TOPIC_MAX + 1024];
    static uint8_t buf[1024];
    static struct hs_message m;
    m.buf = buf;
    m.cap = sizeof(buf);
    struct hs_template_ctx c = {.device_id = ids[dev],
                                .machine_name = "host",
                                .iteration = iteration,
                                .now = {.tv_sec = 1714564800},
                                .rng = rng};
    hs_payload_message(p, dev, &c, &m);
    snprintf(out, sizeof(out), "%s %.*s", m.topic, (int)m.len,
             (const char *)m.payload);
    return out;
}

static const char *lookup(void *arg, const char *name)
{
    (void)arg;
    return strcmp(name, "Template2") == 0 ? "T2:$.DeviceId" : NULL;
}

static void test_counters_step_and_wrap(void **state)
{
    (void)state;
    struct hs_payload p;
    uint64_t rng = 1;
    plan(&p,
         "[{\"name\":\"Counter\",\"min\":100,\"max\":102},"
         "{name:\"X\",min:0,max:5,step:2},{name:\"Down\",min:10,step:-3}]",
         NULL, "$.Counter $.X $.Down");
    assert_int_equal(hs_payload_finish(&p, ids, 3, NULL, 0), 0);
    const char *want[] = {"100 0 10", "101 2 7", "102 4 4", "100 0 1",
                          "101 2 -2"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(strchr(msg(&p, 0, (uint64_t)i, &rng), ' ') + 1,
                            want[i]);
    /* Every device has its own counters. */
    assert_string_equal(msg(&p, 1, 0, &rng),
                        "devices/d2/messages/events/ 100 0 10");
    hs_payload_free(&p);
}

static void test_random_values_strings(void **state)
{
    (void)state;
    struct hs_payload p;
    uint64_t rng = 42;
    plan(
        &p,
        "[{name:\"T\",random:true,min:23,max:25},{name:\"D\","
        "randomDouble:true,min:1.5,max:2},{name:\"E\",values:[\"on\",7,"
        "false]},{name:\"S\",customLengthString:8},{name:\"Any\",random:true}]",
        NULL, "$.T|$.D|$.E|$.S|$.S|$.Any");
    assert_int_equal(hs_payload_finish(&p, ids, 3, NULL, 0), 0);
    int seen_t[2] = {0}, seen_e[3] = {0};
    for (int i = 0; i < 300; i++) {
        char line[256];
        snprintf(line, sizeof(line), "%s",
                 strchr(msg(&p, 2, (uint64_t)i, &rng), ' ') + 1);
        char *f[6], *save = NULL;
        f[0] = strtok_r(line, "|", &save);
        for (int k = 1; k < 6; k++)
            f[k] = strtok_r(NULL, "|", &save);
        int t = atoi(f[0]);
        assert_true(t == 23 || t == 24);
        seen_t[t - 23]++;
        double d = strtod(f[1], NULL);
        assert_true(d >= 1.5 && d < 2);
        int e = strcmp(f[2], "on") == 0 ? 0 : strcmp(f[2], "7") == 0 ? 1 : 2;
        assert_true(e < 2 || strcmp(f[2], "false") == 0);
        seen_e[e]++;
        assert_int_equal(strlen(f[3]), 8);
        assert_int_equal(strspn(f[3], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
                                      "KLMNOPQRSTUVWXYZ0123456789"),
                         8);
        /* One value per message, however often it is written. */
        assert_string_equal(f[3], f[4]);
        long any = atol(f[5]);
        assert_true(any >= 0 && any < 2147483647L);
    }
    assert_true(seen_t[0] > 100 && seen_t[1] > 100);
    hs_payload_free(&p);
    /* A range wider than the largest double still gives finite values. */
    plan(&p, "[{name:\"W\",randomDouble:true,min:-1e308,max:1e308}]", NULL,
         "$.W");
    assert_int_equal(hs_payload_finish(&p, ids, 3, NULL, 0), 0);
    for (int i = 0; i < 100; i++) {
        double w = strtod(strchr(msg(&p, 0, (uint64_t)i, &rng), ' ') + 1, NULL);
        assert_true(isfinite(w) && w >= -1e308 && w < 1e308);
    }
    assert_true(seen_e[0] > 60 && seen_e[1] > 60 && seen_e[2] > 60);
    hs_payload_free(&p);
}

static void test_sequences(void **state)
{
    (void)state;
    struct hs_payload p;
    uint64_t rng = 7;
    plan(&p,
         "[{name:\"Value\",sequence:true,values:[\"$.Counter\",\"true\"]},"
         "{name:\"Counter\"},{name:\"Who\",sequence:true,values:[\"a\","
         "\"$.DeviceId\",3]}]",
         NULL, "$.Value,$.Who");
    assert_int_equal(hs_payload_finish(&p, ids, 3, NULL, 0), 0);
    /* The counter advances only in the messages that use it. */
    const char *want[] = {"1,a", "true,d1", "2,3", "true,a", "3,d1"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(strchr(msg(&p, 0, (uint64_t)i, &rng), ' ') + 1,
                            want[i]);
    hs_payload_free(&p);
    /* A counter held back before its first use is left as written. */
    plan(&p,
         "[{name:\"V\",sequence:true,values:[\"x\",\"$.Counter\"]},"
         "{name:\"Counter\",min:5}]",
         NULL, "$.V $.Counter");
    assert_int_equal(hs_payload_finish(&p, ids, 3, NULL, 0), 0);
    assert_string_equal(strchr(msg(&p, 0, 0, &rng), ' ') + 1, "x $.Counter");
    assert_string_equal(strchr(msg(&p, 0, 1, &rng), ' ') + 1, "5 5");
    assert_string_equal(strchr(msg(&p, 0, 2, &rng), ' ') + 1, "x 5");
    assert_string_equal(strchr(msg(&p, 0, 3, &rng), ' ') + 1, "6 6");
    hs_payload_free(&p);
}

static void test_refused(void **state)
{
    (void)state;
    assert_string_equal(vars_bad("{}"),
                        "Variables: must be a JSON array, not an object");
    assert_string_equal(vars_bad("[1]"),
                        "Variables: item 1 (line 1, column 2) is a number, "
                        "not an object with a name");
    assert_string_equal(vars_bad("[{name:\"A\"},{min:1}]"),
                        "Variables: item 2 (line 1, column 13) needs a "
                        "\"name\" (a non-empty string)");
    assert_string_equal(vars_bad("[{name:\"A\"},{name:\"A\"}]"),
                        "Variables: item 2: the name A is taken by item 1");
    assert_string_equal(vars_bad("[{name:\"A\",random:true,values:[1]}]"),
                        "Variables: variable A (item 1): give only one of "
                        "random, randomDouble, sequence, values and "
                        "customLengthString");
    assert_string_equal(vars_bad("[{name:\"A\",random:true,min:5,max:5}]"),
                        "Variables: variable A (item 1): random needs min < "
                        "max (max is exclusive)");
    assert_string_equal(vars_bad("[{name:\"A\",random:true,min:5}]"),
                        "Variables: variable A (item 1): random takes both "
                        "min and max, or neither");
    assert_string_equal(vars_bad("[{name:\"A\",min:5,max:4}]"),
                        "Variables: variable A (item 1): a counter's min is "
                        "above its max");
    assert_string_equal(vars_bad("[{name:\"A\",min:1.5}]"),
                        "Variables: variable A (item 1): min must be a whole "
                        "number (within +-2^53), not 1.5");
    assert_string_equal(vars_bad("[{name:\"A\",random:\"yes\"}]"),
                        "Variables: variable A (item 1): random must be true "
                        "or false, not a string");
    assert_string_equal(vars_bad("[{name:\"A\",values:[]}]"),
                        "Variables: variable A (item 1): values must be a "
                        "non-empty array");
    assert_string_equal(vars_bad("[{name:\"A\",values:[null]}]"),
                        "Variables: variable A (item 1): value 1 is null; "
                        "values are strings, numbers or booleans");
    assert_string_equal(vars_bad("[{name:\"A\",sequence:true}]"),
                        "Variables: variable A (item 1): a sequence needs "
                        "\"values\"");
    assert_string_equal(vars_bad("[{name:\"A\",customLengthString:-1}]"),
                        "Variables: variable A (item 1): customLengthString "
                        "must be a whole number from 0 to 65536");
    assert_string_equal(
        vars_bad("[{name:\"A\",randomDouble:true,min:2,max:1}]"),
        "Variables: variable A (item 1): randomDouble needs "
        "numbers min < max");
    /* An unknown key is only a warning. */
    struct hs_vars v;
    vars_ok(&v, "[{name:\"A\",mni:3}]");
    assert_int_equal(v.n, 1);
    assert_int_equal(v.defs[0].kind, HS_VK_COUNTER);
    hs_vars_free(&v);
}

static void test_distribution(void **state)
{
    (void)state;
    struct hs_payload p;
    uint64_t rng = 99;
    plan(&p, NULL,
         "fixSize(10, 12) template(25, default) fix(65%, aaaaBBBBCCCC) ",
         "T:$.DeviceId");
    assert_int_equal(hs_payload_finish(&p, ids, 3, NULL, 0), 0);
    assert_int_equal(p.nitems, 3);
    assert_int_equal(p.items[0].len, 12);
    assert_int_equal(p.items[2].len, 9);
    assert_int_equal(p.total, 100);
    int counts[3] = {0};
    for (int i = 0; i < 10000; i++) {
        const char *m = strchr(msg(&p, 1, (uint64_t)i, &rng), ' ') + 1;
        counts[m[0] == 'T' ? 1 : m[0] == '\0' ? 0 : 2]++;
    }
    assert_in_range(counts[0], 850, 1150);
    assert_in_range(counts[1], 2300, 2700);
    assert_in_range(counts[2], 6200, 6800);
    hs_payload_free(&p);
    plan(&p, NULL, "TEMPLATE(60,Template2)FixSize(40,0)", "x");
    assert_int_equal(hs_payload_finish(&p, ids, 3, NULL, 0), 0);
    assert_int_equal(p.nitems, 2);
    assert_string_equal(p.items[0].tpl.text, "T2:$.DeviceId");
    hs_payload_free(&p);
    assert_true(hs_payload_dist_names("fix(5,AA==) template(9, tpl1)", "TPL1"));
    assert_false(hs_payload_dist_names("template(9, default)", "tpl1"));
    const char *bad[][2] = {
        {"", "no payload given (fixSize, fix or template)"},
        {"fixed(1,2)", "column 1: unknown payload kind fixed (fixSize, fix "
                       "or template)"},
        {" fix(0,AA==)", "column 2: fix: the share must be a whole number "
                         "from 1 to 100, not \"0\""},
        {"template(101)", "column 1: template: the share must be a whole "
                          "number from 1 to 100, not \"101\""},
        {"fix(5, ab+/cd=)", "column 1: fix: \"ab+/cd=\" is not base64"},
        {"fixSize(5)", "column 1: fixSize takes (percent, bytes)"},
        {"fixSize(5, 262145)", "column 1: fixSize: size must be 0 to 262144 "
                               "bytes, not \"262145\""},
        {"template(5, nope)", "column 1: template nope: no setting of that "
                              "name holds a template"},
        {"template(5", "column 11: ')' missing"},
        {"template 5)", "column 10: expected '(' after the payload kind"},
        {"fix(1,AA==) ,", "column 13: expected fixSize(...), fix(...) or "
                          "template(...)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[512] = "";
        hs_payload_init(&p);
        assert_int_equal(hs_payload_dist_parse(&p, bad[i][0], "t", lookup, NULL,
                                               err, sizeof(err)),
                         -1);
        assert_string_equal(err, bad[i][1]);
        hs_payload_free(&p);
    }
}

static void test_own_payloads_and_fix(void **state)
{
    (void)state;
    struct hs_payload p;
    uint64_t rng = 3;
    char err[256] = "";
    hs_payload_init(&p);
    vars_ok(&p.vars, "[{name:\"Counter\"}]");
    assert_int_equal(hs_payload_add_template(&p, 100, "own $.Counter", "d2"),
                     0);
    assert_int_equal(hs_payload_add_fix(&p, 50, (const uint8_t *)"F", 1, NULL),
                     0);
    assert_int_equal(hs_payload_add_template(&p, 50, "g $.Counter", NULL), 0);
    assert_int_equal(hs_payload_finish(&p, ids, 3, err, sizeof(err)), 0);
    for (int i = 0; i < 20; i++) {
        char w[32];
        snprintf(w, sizeof(w), "own %d", i + 1);
        assert_string_equal(strchr(msg(&p, 1, (uint64_t)i, &rng), ' ') + 1, w);
    }
    /* A fixed payload does not move the variables on. */
    int next = 1;
    for (int i = 0; i < 40; i++) {
        const char *m = strchr(msg(&p, 0, (uint64_t)i, &rng), ' ') + 1;
        if (strcmp(m, "F") == 0)
            continue;
        char w[32];
        snprintf(w, sizeof(w), "g %d", next++);
        assert_string_equal(m, w);
    }
    assert_true(next > 5 && next < 36);
    hs_payload_free(&p);
    /* Two payloads for one device, and a device left without any. */
    hs_payload_init(&p);
    assert_int_equal(hs_payload_add_template(&p, 100, "a", "d1"), 0);
    assert_int_equal(hs_payload_add_template(&p, 100, "b", "d1"), 0);
    assert_int_equal(hs_payload_finish(&p, ids, 3, err, sizeof(err)), -1);
    assert_string_equal(err, "two payloads for device d1");
    hs_payload_free(&p);
    hs_payload_init(&p);
    assert_int_equal(hs_payload_add_template(&p, 100, "a", "d1"), 0);
    assert_int_equal(hs_payload_finish(&p, ids, 3, err, sizeof(err)), -1);
    assert_string_equal(err, "device d2 has no payload");
    hs_payload_free(&p);
}

static void test_header(void **state)
{
    (void)state;
    struct hs_payload p;
    uint64_t rng = 5;
    char err[512] = "";
    plan(&p, "[{name:\"Counter\",min:7},{name:\"S\",values:[\"x/y\"]}]", NULL,
         "body");
    assert_int_equal(hs_payload_set_header(&p, "{\"n\": $.Counter, \"b c\": "
                                               "\"$.S\", t: true, \"z\": "
                                               "null, \"id\":\"$.DeviceId\"}"),
                     0);
    p.properties = strdup("fixed=1");
    assert_int_equal(hs_payload_finish(&p, ids, 3, err, sizeof(err)), 0);
    struct hs_template_ctx c = {.device_id = "d1", .rng = &rng};
    assert_int_equal(hs_payload_check_header(&p, &c, err, sizeof(err)), 0);
    assert_string_equal(msg(&p, 0, 0, &rng),
                        "devices/d1/messages/events/fixed=1&n=7&b%20c=x%2Fy&"
                        "t=true&id=d1 body");
    assert_string_equal(msg(&p, 0, 1, &rng),
                        "devices/d1/messages/events/fixed=1&n=8&b%20c=x%2Fy&"
                        "t=true&id=d1 body");
    hs_payload_free(&p);
    const char *bad[][2] = {
        {"[1]", "the header must give a JSON object, not an array"},
        {"{\"a\": [1]}", "header property a is an array; properties are "
                         "strings, numbers or booleans with a name"},
        {"{\"a\": $.Nope}", "the header is not JSON (not a JSON value at line "
                            "1, column 7): {\"a\": $.Nope}"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        plan(&p, NULL, NULL, "b");
        assert_int_equal(hs_payload_set_header(&p, bad[i][0]), 0);
        assert_int_equal(hs_payload_finish(&p, ids, 3, err, sizeof(err)), 0);
        assert_int_equal(hs_payload_check_header(&p, &c, err, sizeof(err)), -1);
        assert_string_equal(err, bad[i][1]);
        hs_payload_free(&p);
    }
}

/* A header over fixed payloads has values from the first message on. */
static void test_header_fix(void **state)
{
    (void)state;
    struct hs_payload p;
    uint64_t rng = 5;
    char err[512] = "";
    hs_payload_init(&p);
    vars_ok(&p.vars, "[{name:\"Temp\",random:true,min:20,max:21},"
                     "{name:\"N\",min:3}]");
    assert_int_equal(
        hs_payload_add_fix(&p, 100, (const uint8_t *)"fixed", 5, NULL), 0);
    assert_int_equal(hs_payload_set_header(&p, "{\"t\": $.Temp, \"n\": $.N}"),
                     0);
    assert_int_equal(hs_payload_finish(&p, ids, 3, err, sizeof(err)), 0);
    assert_string_equal(msg(&p, 0, 0, &rng),
                        "devices/d1/messages/events/t=20&n=3 fixed");
    /* Fixed payloads do not move the variables on. */
    assert_string_equal(msg(&p, 0, 1, &rng),
                        "devices/d1/messages/events/t=20&n=3 fixed");
    hs_payload_free(&p);
}

static void test_double_text(void **state)
{
    (void)state;
    char buf[64];
    hs_vars_double(0.1, buf, sizeof(buf));
    assert_string_equal(buf, "0.1");
    hs_vars_double(2.5, buf, sizeof(buf));
    assert_string_equal(buf, "2.5");
    hs_vars_double(1.0 / 3, buf, sizeof(buf));
    assert_string_equal(buf, "0.3333333333333333");
    hs_vars_double(23, buf, sizeof(buf));
    assert_string_equal(buf, "23");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_step_and_wrap),
        cmocka_unit_test(test_random_values_strings),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_own_payloads_and_fix),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_header_fix),
        cmocka_unit_test(test_double_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
