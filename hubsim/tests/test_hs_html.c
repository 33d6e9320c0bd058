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
#include <unistd.h>

#include <cmocka.h>

#include "hs_html.h"
#include "hs_json.h"
#include "hs_opts.h"
#include "hs_report.h"
#include "hs_stats.h"

static const char *json(const char *s);
static char *report_json(struct hs_report *r);
static int parse(struct hs_config *cfg, char **extra);
static char *finish_quietly(struct hs_report *r, uint64_t now, int *rc);
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

/* The JSON report of r, malloc'd. */
static char *report_json(struct hs_report *r)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    assert_non_null(f);
    hs_report_json(r, f);
    fclose(f);
    return doc;
}

/* A run's settings: a hub on a closed port plus extra (NULL-ended). */
static int parse(struct hs_config *cfg, char **extra)
{
    char *argv[32] = {"hubsim", "--hub", "hub.example", "--connect-to",
                      "127.0.0.1:1"};
    int argc = 5;
    while (*extra && argc < 31)
        argv[argc++] = *extra++;
    argv[argc] = NULL;
    char *envp[] = {NULL};
    return hs_opts_parse(cfg, argc, argv, envp);
}

/* hs_report_finish(), its summary on stdout caught and returned. */
static char *finish_quietly(struct hs_report *r, uint64_t now, int *rc)
{
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    assert_true(saved >= 0);
    dup2(fileno(tmp), STDOUT_FILENO);
    *rc = hs_report_finish(r, now);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    long n = ftell(tmp);
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    rewind(tmp);
    assert_int_equal(fread(out, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return out;
}

/*
 * The part of a second after the last tick makes a last, partial
 * timeline entry, so that the timeline adds up to the totals; a run
 * shorter than a second has one entry, not none.
 */
static void test_partial_second(void **state)
{
    (void)state;
    struct hs_config cfg;
    assert_int_equal(parse(&cfg, (char *[]){"--quiet", NULL}), HS_OPTS_RUN);
    struct hs_stats stats;
    struct hs_stats *all[] = {&stats};
    hs_stats_init(&stats);
    struct hs_report *r = hs_report_new(&cfg, all, 1, 1000, "127.0.0.1:1");
    assert_non_null(r);
    hs_stat_add(&stats.sent, 10);
    hs_stat_add(&stats.connects, 1);
    hs_report_tick(r, 2000);
    hs_stat_add(&stats.sent, 4);
    hs_stat_add(&stats.acked, 3);
    hs_stats_latency(&stats, &stats.puback_all, 2000);
    hs_stats_error(&stats, HS_ERR_ACK_TIMEOUT, "d", "no PUBACK");
    hs_stats_error(&stats, HS_ERR_ACK_TIMEOUT, "d", "no PUBACK");
    int rc;
    free(finish_quietly(r, 2850, &rc));
    assert_int_equal(rc, 0);
    char *doc = report_json(r);
    assert_non_null(strstr(doc, "{\"t\": 1, \"connected\": 0, "
                                "\"connecting\": 0, \"sent\": 10, "
                                "\"acked\": 0, \"connects\": 1, "
                                "\"reconnects\": 0, \"errors\": 0, "
                                "\"puback_p50_ms\": null"));
    assert_non_null(strstr(doc, "{\"t\": 1.850, \"partial\": true, "
                                "\"span_s\": 0.850, \"connected\": 0, "
                                "\"connecting\": 0, \"sent\": 4, "
                                "\"acked\": 3, \"connects\": 0, "
                                "\"reconnects\": 0, \"errors\": 2, "
                                "\"puback_p50_ms\": 2.0"));
    assert_non_null(strstr(doc, "\"errors_by_kind\": {\"ack_timeout\": 2}}"));
    free(doc);
    hs_report_free(r);

    /* Shorter than a second: one entry, the whole run. */
    r = hs_report_new(&cfg, all, 1, 1000, "127.0.0.1:1");
    free(finish_quietly(r, 1550, &rc));
    doc = report_json(r);
    assert_non_null(strstr(doc, "\"timeline\": [\n    {\"t\": 0.550, "
                                "\"partial\": true, \"span_s\": 0.550, "));
    assert_int_equal(count(doc, "\"t\": "), 1);
    free(doc);
    hs_report_free(r);
    hs_stats_deinit(&stats);
    hs_config_free(&cfg);
}

/* No sample, no figure: null, never 0. */
static void test_no_data_is_null(void **state)
{
    (void)state;
    struct hs_config cfg;
    assert_int_equal(parse(&cfg, (char *[]){"--quiet", NULL}), HS_OPTS_RUN);
    struct hs_stats stats;
    struct hs_stats *all[] = {&stats};
    hs_stats_init(&stats);
    struct hs_report *r = hs_report_new(&cfg, all, 1, 1000, "127.0.0.1:1");
    hs_stat_add(&stats.sent, 3);
    hs_stats_latency(&stats, &stats.connect_all, 5000);
    hs_report_tick(r, 2000);
    int rc;
    char *out = finish_quietly(r, 2500, &rc);
    assert_non_null(strstr(out, "  puback                  0         -"));
    assert_non_null(strstr(out, "  connect                 1      5.00"));
    free(out);
    char *doc = report_json(r);
    assert_non_null(strstr(doc, "\"puback\": {\"count\": 0, \"min\": null, "
                                "\"p50\": null, \"p90\": null, "
                                "\"p99\": null, \"p999\": null, "
                                "\"max\": null, \"mean\": null}"));
    assert_non_null(strstr(doc, "\"connect\": {\"count\": 1, "
                                "\"min\": 5.000, \"p50\": 5.0"));
    assert_int_equal(count(doc, "\"puback_p50_ms\": null, "
                                "\"puback_p99_ms\": null, "
                                "\"puback_p999_ms\": null"),
                     2);
    assert_int_equal(count(doc, "_ms\": 0.000"), 0);
    free(doc);
    hs_report_free(r);
    hs_stats_deinit(&stats);
    hs_config_free(&cfg);
}

/* The settings in the report, and what the summary says of AMQP. */
static void test_config(void **state)
{
    (void)state;
    struct hs_config cfg;
    assert_int_equal(
        parse(&cfg, (char *[]){"--quiet", "--protocol", "amqp",
                               "--devices-per-connection", "7", "--device-key",
                               "aw==", "--ack-timeout", "2s", NULL}),
        HS_OPTS_RUN);
    struct hs_stats stats;
    struct hs_stats *all[] = {&stats};
    hs_stats_init(&stats);
    struct hs_report *r = hs_report_new(&cfg, all, 1, 1000, "127.0.0.1:1");
    int rc;
    char *out = finish_quietly(r, 1100, &rc);
    assert_non_null(strstr(out, "via 127.0.0.1:1, AMQP, settled on "
                                "disposition, 0.1 s"));
    assert_null(strstr(out, "QoS"));
    free(out);
    char *doc = report_json(r);
    assert_non_null(strstr(doc, "\"duration_s\": null,"));
    assert_non_null(strstr(doc, "\"ack_timeout_ms\": 2000,"));
    assert_non_null(strstr(doc, "\"storm_at_s\": []"));
    assert_non_null(strstr(doc, "\"devices_per_connection\": 7,"));
    assert_non_null(strstr(doc, "\"amqp_auth\": \"cbs\""));
    assert_non_null(strstr(doc, "\"auth\": \"device_key\""));
    assert_non_null(strstr(doc, "\"sas_ttl_s\": 3600,"));
    assert_non_null(strstr(doc, "\"payloads\": [{\"kind\": \"template\", "
                                "\"percent\": 100, \"device\": null}]"));
    assert_non_null(strstr(doc, "\"header\": false,"));
    free(doc);
    hs_report_free(r);
    hs_config_free(&cfg);

    /* A duration limit is given in seconds; MQTT says its QoS. */
    assert_int_equal(
        parse(&cfg, (char *[]){"--quiet", "--duration", "2500ms", "--qos", "0",
                               "--storm-at", "1500ms", NULL}),
        HS_OPTS_RUN);
    r = hs_report_new(&cfg, all, 1, 1000, "127.0.0.1:1");
    out = finish_quietly(r, 1100, &rc);
    assert_non_null(strstr(out, "via 127.0.0.1:1, QoS 0, 0.1 s"));
    free(out);
    doc = report_json(r);
    assert_non_null(strstr(doc, "\"duration_s\": 2.500,"));
    assert_non_null(strstr(doc, "\"storm_at_s\": [1.500]"));
    assert_null(strstr(doc, "devices_per_connection"));
    free(doc);
    hs_report_free(r);
    hs_stats_deinit(&stats);
    hs_config_free(&cfg);
}

/* A report that cannot be written stops the run before it starts. */
static void test_check_paths(void **state)
{
    (void)state;
    struct hs_config cfg;
    char dir[] = "/tmp/hs_html_test_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/r.json", dir);
    assert_int_equal(parse(&cfg, (char *[]){"--report-json", path,
                                            "--report-html", dir, NULL}),
                     HS_OPTS_RUN);
    assert_int_equal(hs_report_check_paths(&cfg), -1); /* html: a dir */
    free(cfg.report_html);
    cfg.report_html = strdup("/nonexistent/dir/r.html");
    assert_int_equal(hs_report_check_paths(&cfg), -1);
    free(cfg.report_html);
    cfg.report_html = NULL;
    assert_int_equal(hs_report_check_paths(&cfg), 0);
    /* The check leaves nothing behind. */
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/r.json.tmp", dir);
    assert_int_equal(access(path, F_OK), -1);
    free(cfg.report_json);
    cfg.report_json = strdup("/nonexistent/dir/r.json");
    assert_int_equal(hs_report_check_paths(&cfg), -1);
    hs_config_free(&cfg);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_html_escapes),
        cmocka_unit_test(test_utf8_len),
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_partial_second),
        cmocka_unit_test(test_no_data_is_null),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_check_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
