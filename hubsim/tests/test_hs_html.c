/*
 * Tests for the reports' escapes and the HTML page: JSON strings safe in a
 * <script> block (no "</", "<!--", U+2028 or U+2029 left, invalid UTF-8
 * replaced), HTML text and attribute escapes, the UTF-8 check, and a whole
 * page built around a hostile hub name, device id and template, which must
 * keep its two script blocks and nothing else.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "hs_html.h"
#include "hs_json.h"
#include "hs_opts.h"
#include "hs_report.h"
#include "hs_stats.h"

static const char *json(const char *s);
static const char *html(const char *s);
static size_t count(const char *hay, const char *needle);

/* s through hs_json_str, in a static buffer. */
static const char *json(const char *s)
{
    static char out[1024];
    FILE *f = fmemopen(out, sizeof(out), "w");
    assert_non_null(f);
    hs_json_str(f, s);
    fclose(f);
    return out;
}

static const char *html(const char *s)
{
    static char out[1024];
    FILE *f = fmemopen(out, sizeof(out), "w");
    assert_non_null(f);
    hs_html_text(f, s);
    fclose(f);
    return out;
}

/* Occurrences of needle in hay, ignoring case. */
static size_t count(const char *hay, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *p = hay; *p; p++)
        n += strncasecmp(p, needle, len) == 0;
    return n;
}

static void test_json_escapes(void **state)
{
    (void)state;
    assert_string_equal(json(""), "\"\"");
    assert_string_equal(json("a\"b\\c\nd\te\x01"),
                        "\"a\\\"b\\\\c\\nd\\u0009e\\u0001\"");
    assert_string_equal(json("</script><!-- -->&x"),
                        "\"\\u003c/script\\u003e\\u003c!-- --\\u003e"
                        "\\u0026x\"");
    assert_string_equal(json("a\xE2\x80\xA8"
                             "b\xE2\x80\xA9"
                             "c"),
                        "\"a\\u2028b\\u2029c\"");
    assert_string_equal(json("\x7F"), "\"\\u007f\"");
    /* Valid UTF-8 passes as it is. */
    assert_string_equal(json("caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC"),
                        "\"caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC\"");
    /* Not UTF-8: stray, truncated, overlong, surrogate, too large. */
    assert_string_equal(json("a\xFF"
                             "b"),
                        "\"a\\ufffdb\"");
    assert_string_equal(json("\xE2\x80"), "\"\\ufffd\\ufffd\"");
    assert_string_equal(json("\xC0\xAF"), "\"\\ufffd\\ufffd\"");
    assert_string_equal(json("\xED\xA0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
    assert_string_equal(json("\xF4\x90\x80\x80"),
                        "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

static void test_html_escapes(void **state)
{
    (void)state;
    assert_string_equal(html("<a href=\"x\" title='y'>&amp;</a>"),
                        "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;"
                        "&amp;amp;&lt;/a&gt;");
    assert_string_equal(html("tab\there\nline\x01\x1b[0m\x7F"),
                        "tab\there\nline[0m");
    assert_string_equal(html("\xC3\xA9\xFFx"), "\xC3\xA9\xEF\xBF\xBDx");
    assert_string_equal(html("plain-hub.azure-devices.net"),
                        "plain-hub.azure-devices.net");
}

static void test_utf8_len(void **state)
{
    (void)state;
    const struct {
        const char *s;
        size_t len;
    } cases[] = {
        {"a", 1},
        {"\xC3\xA9", 2},
        {"\xE2\x82\xAC", 3},
        {"\xF0\x9F\x98\x80", 4},
        {"\xF4\x8F\xBF\xBF", 4}, /* U+10FFFF */
        {"\x80", 0},
        {"\xC3", 0},
        {"\xC1\xBF", 0},         /* overlong */
        {"\xE0\x9F\xBF", 0},     /* overlong */
        {"\xED\xBF\xBF", 0},     /* surrogate */
        {"\xF4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"\xF8\x88\x80\x80\x80", 0},
        {"\xE2\x28\xA1", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(
            hs_utf8_len((const unsigned char *)cases[i].s, strlen(cases[i].s)),
            cases[i].len);
}

/* The page's own script and style cannot end their blocks early. */
static void test_assets(void **state)
{
    (void)state;
    assert_true(strlen(hs_html_js) > 1000);
    assert_true(strlen(hs_html_css) > 100);
    assert_int_equal(count(hs_html_js, "</"), 0);
    assert_int_equal(count(hs_html_js, "<!--"), 0);
    assert_int_equal(count(hs_html_css, "</"), 0);
    assert_int_equal(count(hs_html_css, "<!--"), 0);
}

static void test_page(void **state)
{
    (void)state;
    char *argv[] = {
        "hubsim",       "--hub",       "hub.example",
        "--connect-to", "127.0.0.1:1", "--device-list",
        "a,b",          "--template",  "</script><script>alert(1)</script>",
        NULL,
    };
    char *envp[] = {NULL};
    struct hs_config cfg;
    assert_int_equal(hs_opts_parse(&cfg, 9, argv, envp), HS_OPTS_RUN);
    free(cfg.hub);
    cfg.hub = strdup("</title><b onclick=\"x\">&'");
    /* hs_opts refuses such an id; the page must still escape one. */
    free(cfg.device_ids[0]);
    cfg.device_ids[0] = strdup("<script>x<!--\xE2\x80\xA8\xFF");
    struct hs_stats stats;
    struct hs_stats *all[] = {&stats};
    hs_stats_init(&stats);
    struct hs_report *r = hs_report_new(&cfg, all, 1, 1000, "127.0.0.1:1");
    assert_non_null(r);
    hs_stat_add(&stats.sent, 5);
    hs_stats_error(&stats, HS_ERR_TLS, cfg.device_ids[0], "</script>");
    hs_report_tick(r, 2000);
    hs_stat_add(&stats.acked, 5);
    hs_report_tick(r, 3000);
    assert_int_equal(hs_report_finish(r, 3100), 0);

    char *page = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&page, &len);
    hs_html_write(f, &cfg, r);
    fclose(f);
    /* Two blocks, data then code, and no way to end or bend one. */
    assert_int_equal(count(page, "<script"), 2);
    assert_int_equal(count(page, "</script"), 2);
    assert_int_equal(count(page, "<!--"), 0);
    assert_null(strstr(page, "\xE2\x80\xA8"));
    assert_null(strstr(page, "\xFF"));
    assert_int_equal(count(page, "</title"), 1);
    assert_non_null(strstr(page, "<title>hubsim report: &lt;/title&gt;&lt;b "
                                 "onclick=&quot;x&quot;&gt;&amp;&#39;"
                                 "</title>"));
    assert_non_null(strstr(page, "Content-Security-Policy\" content=\""
                                 "default-src 'none'; script-src "
                                 "'unsafe-inline'; style-src "
                                 "'unsafe-inline'"));
    /* The data: the device id, the template, the error sample. */
    const char *data = strstr(page, "id=\"hubsim-data\">");
    assert_non_null(data);
    assert_non_null(strstr(data, "\"first_device\": \"\\u003cscript\\u003ex"
                                 "\\u003c!--\\u2028\\ufffd\""));
    assert_non_null(strstr(data, "\"template\": \"\\u003c/script\\u003e"));
    assert_non_null(strstr(data, "\"tls\": \"\\u003cscript\\u003ex"));
    assert_non_null(strstr(data, "\"errors_by_kind\": {\"tls\": 1}"));
    assert_non_null(strstr(data, "\"sent\": 5, \"acked\": 0"));
    assert_non_null(strstr(data, "\"sent\": 0, \"acked\": 5"));
    free(page);
    hs_report_free(r);
    hs_stats_deinit(&stats);
    hs_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_html_escapes),
        cmocka_unit_test(test_utf8_len),
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
