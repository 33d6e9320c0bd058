/*
 * Tests for hs_json: values of every type, escapes and UTF-8, what strict
 * JSON refuses and where, each relaxation only when asked for, lookups
 * without regard to case, whole numbers, and writing back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hs_json.h"

static struct hs_json *ok(const char *text, unsigned flags);
static struct hs_json_error bad(const char *text, unsigned flags);
static const char *written(const char *text, unsigned flags);

static struct hs_json *ok(const char *text, unsigned flags)
{
    struct hs_json *v = NULL;
    struct hs_json_error e = {0};
    int rc = hs_json_parse(text, strlen(text), flags, &v, &e);
    if (rc != 0)
        fail_msg("%s: %u:%u %s", text, e.line, e.col, e.why);
    return v;
}

static struct hs_json_error bad(const char *text, unsigned flags)
{
    struct hs_json *v = NULL;
    struct hs_json_error e = {0};
    assert_int_equal(hs_json_parse(text, strlen(text), flags, &v, &e), -1);
    assert_null(v);
    assert_non_null(e.why);
    return e;
}

static const char *written(const char *text, unsigned flags)
{
    static char out[512];
    struct hs_json *v = ok(text, flags);
    size_t n = hs_json_write(v, out, sizeof(out));
    assert_true(n < sizeof(out));
    assert_int_equal(strlen(out), n);
    hs_json_free(v);
    return out;
}

static void test_values(void **state)
{
    (void)state;
    struct hs_json *v = ok(" [null, true, false, -12.5e1, \"a\", {}, []] ", 0);
    assert_int_equal(v->type, HS_JSON_ARRAY);
    assert_int_equal(v->n, 7);
    assert_int_equal(v->items[0].type, HS_JSON_NULL);
    assert_int_equal(v->items[1].type, HS_JSON_TRUE);
    assert_int_equal(v->items[2].type, HS_JSON_FALSE);
    assert_int_equal(v->items[3].type, HS_JSON_NUMBER);
    assert_true(v->items[3].num == -125.0);
    assert_string_equal(v->items[3].str, "-12.5e1");
    assert_string_equal(v->items[4].str, "a");
    assert_int_equal(v->items[5].type, HS_JSON_OBJECT);
    assert_int_equal(v->items[6].n, 0);
    /* Where each value starts. */
    assert_int_equal(v->items[1].line, 1);
    assert_int_equal(v->items[1].col, 9);
    hs_json_free(v);
}

static void test_strings(void **state)
{
    (void)state;
    struct hs_json *v = ok(
        "\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\ud83d\\ude00 \xc3\xa9\"",
        0);
    assert_string_equal(v->str, "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 "
                                "\xf0\x9f\x98\x80 \xc3\xa9");
    assert_int_equal(v->len, strlen(v->str));
    hs_json_free(v);
    assert_string_equal(bad("\"a\nb\"", 0).why,
                        "control character in a string (write it as an "
                        "escape)");
    assert_string_equal(bad("\"\\x\"", 0).why, "unknown escape");
    assert_string_equal(bad("\"\\u12\"", 0).why, "\\u needs four hex digits");
    assert_string_equal(bad("\"\\ud83d\"", 0).why,
                        "high surrogate without a low one");
    assert_string_equal(bad("\"\\ude00\"", 0).why, "lone low surrogate");
    assert_string_equal(bad("\"\\u0000\"", 0).why, "\\u0000 is not allowed");
    assert_string_equal(bad("\"\xc0\xaf\"", 0).why, "not UTF-8");
    assert_string_equal(bad("\"\xed\xa0\x80\"", 0).why, "not UTF-8");
    assert_string_equal(bad("\"\xe2\x82\"", 0).why, "not UTF-8");
    assert_string_equal(bad("\"abc", 0).why, "string not closed");
}

static void test_strict(void **state)
{
    (void)state;
    struct hs_json_error e = bad("[1,\n  2,]", 0);
    assert_string_equal(e.why, "a comma before ']'");
    assert_int_equal(e.line, 2);
    assert_int_equal(e.col, 5);
    assert_string_equal(bad("{\"a\":1,}", 0).why, "a comma before '}'");
    assert_string_equal(bad("{a: 1}", 0).why,
                        "a member name must be a string in double quotes");
    assert_string_equal(bad("[1] // c", 0).why, "text after the value");
    assert_string_equal(bad("['a']", 0).why, "strings take double quotes");
    assert_string_equal(bad("{\"a\":1,\"a\":2}", 0).why,
                        "a member name given twice");
    assert_string_equal(bad("01", 0).why, "not a number");
    assert_string_equal(bad("1.", 0).why, "a digit must follow '.'");
    assert_string_equal(bad("1e", 0).why, "an exponent needs a digit");
    assert_string_equal(bad("-", 0).why, "a number needs a digit");
    assert_string_equal(bad("1e999", 0).why, "number too large");
    assert_string_equal(bad("tru", 0).why, "not a JSON value");
    assert_string_equal(bad("nullx", 0).why, "not a JSON value");
    assert_string_equal(bad("", 0).why, "a value is missing");
    assert_string_equal(bad("[1 2]", 0).why, "expected ',' or ']'");
    assert_string_equal(bad("{\"a\" 1}", 0).why, "expected ':'");
    char deep[200];
    memset(deep, '[', sizeof(deep));
    deep[sizeof(deep) - 1] = '\0';
    assert_string_equal(bad(deep, 0).why, "nested too deeply");
}

static void test_relaxations(void **state)
{
    (void)state;
    assert_string_equal(written("[{name: \"T\", _x$1: 2}]", HS_JSON_BARE_KEYS),
                        "[{\"name\":\"T\",\"_x$1\":2}]");
    assert_string_equal(written("// c\n{\"a\": /* in */ [1,],}\n/* end */",
                                HS_JSON_COMMENTS | HS_JSON_TRAILING),
                        "{\"a\":[1]}");
    assert_string_equal(bad("/* open", HS_JSON_COMMENTS).why,
                        "comment not closed");
    assert_string_equal(bad("{1: 2}", HS_JSON_BARE_KEYS).why,
                        "expected a member name");
    assert_string_equal(bad("[1,]", HS_JSON_COMMENTS).why,
                        "a comma before ']'");
}

static void test_get_int_write(void **state)
{
    (void)state;
    struct hs_json *v = ok("{\"Name\": \"x\", \"n\": 42, \"f\": 4.5, "
                           "\"big\": 9223372036854775808}",
                           0);
    assert_string_equal(hs_json_get(v, "name")->str, "x");
    assert_null(hs_json_get(v, "nam"));
    assert_null(hs_json_get(hs_json_get(v, "n"), "x"));
    int64_t i = 0;
    assert_true(hs_json_int(hs_json_get(v, "n"), &i));
    assert_int_equal(i, 42);
    assert_false(hs_json_int(hs_json_get(v, "f"), &i));
    assert_false(hs_json_int(hs_json_get(v, "big"), &i));
    assert_false(hs_json_int(hs_json_get(v, "name"), &i));
    assert_string_equal(hs_json_type_name(v), "an object");
    /* Cut output still reports the full length. */
    char small[4];
    size_t n = hs_json_write(v, small, sizeof(small));
    assert_int_equal(n, hs_json_write(v, NULL, 0));
    hs_json_free(v);
    assert_string_equal(written("\"a\\u0001\\\"\"", 0), "\"a\\u0001\\\"\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_strict),
        cmocka_unit_test(test_relaxations),
        cmocka_unit_test(test_get_int_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
