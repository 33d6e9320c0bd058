/*
 * Tests for hubsim's /metrics text: counters summed over workers, errors
 * by kind, and the PUBACK histogram's buckets taken from hg_hist (a bound
 * counts only buckets wholly at or below it), plus the shared Prometheus
 * label escapes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hg_prom.h"
#include "hs_metrics.h"
#include "hs_opts.h"
#include "hs_stats.h"

#define has(text, line) assert_non_null(strstr(text, "\n" line "\n"))

static void test_render(void **state)
{
    (void)state;
    struct hs_config cfg = {.ndevices = 7};
    struct hs_stats a, b;
    struct hs_stats *all[] = {&a, &b};
    hs_stats_init(&a);
    hs_stats_init(&b);
    hs_stat_add(&a.sent, 4);
    hs_stat_add(&b.sent, 3);
    hs_stat_add(&a.acked, 5);
    hs_stat_add(&b.connected, 2);
    hs_stat_add(&a.reconnects, 1);
    hs_stat_add(&b.connack[5], 2);
    hs_stats_error(&a, HS_ERR_TLS_VERIFY, "d1", "no");
    hs_stats_error(&b, HS_ERR_TLS_VERIFY, "d2", "no");
    hs_stats_error(&b, HS_ERR_CLOSED, "d2", "bye");
    hs_stats_latency(&a, &a.puback_all, 100);
    hs_stats_latency(&a, &a.puback_all, 100);
    hs_stats_latency(&b, &b.puback_all, 100);
    hs_stats_latency(&b, &b.puback_all, 1000);    /* in [1000, 1003] */
    hs_stats_latency(&b, &b.puback_all, 2000000); /* 2 s */
    size_t len = 0;
    char *text = hs_metrics_render(&cfg, all, 2, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    has(text, "hubsim_devices 7");
    has(text, "hubsim_messages_sent_total 7");
    has(text, "hubsim_messages_acked_total 5");
    has(text, "hubsim_devices_connected 2");
    has(text, "hubsim_reconnects_total 1");
    has(text, "# TYPE hubsim_messages_sent_total counter");
    has(text, "# TYPE hubsim_devices_connected gauge");
    has(text, "hubsim_errors_total{kind=\"tls_verify\"} 2");
    has(text, "hubsim_errors_total{kind=\"closed\"} 1");
    has(text, "hubsim_errors_total{kind=\"tcp_refused\"} 0");
    has(text, "hubsim_connack_refused_total{code=\"5\"} 2");
    has(text, "# TYPE hubsim_puback_latency_seconds histogram");
    has(text, "hubsim_puback_latency_seconds_bucket{le=\"0.0001\"} 3");
    has(text, "hubsim_puback_latency_seconds_bucket{le=\"0.001\"} 3");
    has(text, "hubsim_puback_latency_seconds_bucket{le=\"0.0025\"} 4");
    has(text, "hubsim_puback_latency_seconds_bucket{le=\"1\"} 4");
    has(text, "hubsim_puback_latency_seconds_bucket{le=\"2.5\"} 5");
    has(text, "hubsim_puback_latency_seconds_bucket{le=\"+Inf\"} 5");
    has(text, "hubsim_puback_latency_seconds_sum 2.0013");
    has(text, "hubsim_puback_latency_seconds_count 5");
    has(text, "hubsim_connect_latency_seconds_count 0");
    free(text);
    hs_stats_deinit(&a);
    hs_stats_deinit(&b);
}

static void test_prom_label(void **state)
{
    (void)state;
    struct hg_text t = {0};
    hg_prom_sample(&t, "m", "a", "x\"y\\z\nw", "b", "", 3);
    hg_prom_sample(&t, "n", NULL, NULL, NULL, NULL, 4);
    size_t len;
    char *s = hg_text_take(&t, &len);
    assert_string_equal(s, "m{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 3\nn 4\n");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_prom_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
