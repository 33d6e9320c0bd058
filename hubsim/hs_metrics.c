#include "hs_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "hg_http.h"
#include "hg_prom.h"

/* Scrapers and people looking: a few connections are plenty. */
#define HS_METRICS_MAX_CONNS 64

struct hs_metrics {
    struct hg_http *http;
    const struct hs_config *cfg;
    struct hs_stats **stats;
    unsigned n;
};

/* The latency histograms' bounds, in seconds. */
static const double hs__le[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60,
};

/* A gauge or counter without labels. */
struct hs__plain {
    const char *name, *type, *help;
    size_t offset; /* into struct hs_snapshot */
};

static const struct hs__plain hs__plain_metrics[] = {
    {"hubsim_devices_connected", "gauge",
     "Devices connected now (after CONNACK).",
     offsetof(struct hs_snapshot, connected)},
    {"hubsim_devices_connecting", "gauge",
     "Devices between TCP connect and CONNACK now.",
     offsetof(struct hs_snapshot, connecting)},
    {"hubsim_devices_finished", "gauge",
     "Devices that are done and will not connect again.",
     offsetof(struct hs_snapshot, finished)},
    {"hubsim_connection_attempts_total", "counter", "Connections begun.",
     offsetof(struct hs_snapshot, attempts)},
    {"hubsim_connects_total", "counter", "CONNACKs accepted.",
     offsetof(struct hs_snapshot, connects)},
    {"hubsim_reconnects_total", "counter",
     "Accepted connections of devices that had been connected before.",
     offsetof(struct hs_snapshot, reconnects)},
    {"hubsim_devices_gave_up_total", "counter",
     "Devices that stopped after --max-attempts failures.",
     offsetof(struct hs_snapshot, gave_up)},
    {"hubsim_messages_sent_total", "counter", "Telemetry messages sent.",
     offsetof(struct hs_snapshot, sent)},
    {"hubsim_messages_acked_total", "counter",
     "Telemetry messages acknowledged (PUBACK).",
     offsetof(struct hs_snapshot, acked)},
    {"hubsim_messages_lost_total", "counter",
     "QoS 1 messages never acknowledged: in flight when their device "
     "stopped, or when their connection ended without re-sending.",
     offsetof(struct hs_snapshot, lost)},
    {"hubsim_messages_behind_schedule_total", "counter",
     "Message slots missed: sends a whole interval late, and slots that "
     "passed while the device was not connected.",
     offsetof(struct hs_snapshot, overrun)},
    {"hubsim_c2d_messages_total", "counter",
     "Cloud-to-device messages received.", offsetof(struct hs_snapshot, c2d)},
    {"hubsim_messages_resent_total", "counter",
     "QoS 1 messages sent again after a reconnect.",
     offsetof(struct hs_snapshot, resent)},
    {"hubsim_token_renewals_total", "counter",
     "CONNACKs of SAS token renewals (not counted as reconnects).",
     offsetof(struct hs_snapshot, renewals)},
    {"hubsim_storms_total", "counter", "Reconnect storms (--storm-at) run.",
     offsetof(struct hs_snapshot, storms)},
    {"hubsim_storm_drops_total", "counter", "Connections the storms dropped.",
     offsetof(struct hs_snapshot, storm_drops)},
    {"hubsim_storm_reconnects_total", "counter",
     "CONNACKs after a storm's drop.",
     offsetof(struct hs_snapshot, storm_reconnects)},
};

static void hs__handle(void *arg, const char *url, struct hg_http_reply *out);
static void hs__hists(struct hg_text *t, struct hs_stats **stats, unsigned n);

struct hs_metrics *hs_metrics_start(const struct hs_config *cfg,
                                    struct hs_stats **stats, unsigned n,
                                    const char **reason)
{
    struct hs_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        *reason = "out of memory";
        return NULL;
    }
    /* A copy of the array: the caller's may be gone before the stats. */
    struct hs_stats **copy = calloc(n, sizeof(*copy));
    if (copy == NULL) {
        free(m);
        *reason = "out of memory";
        return NULL;
    }
    memcpy(copy, stats, n * sizeof(*copy));
    *m = (struct hs_metrics){NULL, cfg, copy, n};
    m->http = hg_http_start(&cfg->metrics_listen, HS_METRICS_MAX_CONNS,
                            hs__handle, m, reason);
    if (m->http == NULL) {
        free(copy);
        free(m);
        return NULL;
    }
    return m;
}

void hs_metrics_stop(struct hs_metrics *m)
{
    if (m == NULL)
        return;
    hg_http_stop(m->http);
    free(m->stats);
    free(m);
}

char *hs_metrics_render(const struct hs_config *cfg, struct hs_stats **stats,
                        unsigned n, size_t *len)
{
    struct hg_text t = {0};
    struct hs_snapshot snap = {0};
    for (unsigned i = 0; i < n; i++)
        hs_stats_snapshot(&snap, stats[i]);
    hg_prom_family(&t, "hubsim_build_info", "gauge", "Version of hubsim.");
    hg_prom_sample(&t, "hubsim_build_info", "version", HG_VERSION, NULL, NULL,
                   1);
    hg_prom_family(&t, "hubsim_devices", "gauge", "Devices in this process.");
    hg_prom_sample(&t, "hubsim_devices", NULL, NULL, NULL, NULL, cfg->ndevices);
    hg_prom_family(&t, "hubsim_devices_connected_max", "gauge",
                   "The most devices connected at once so far.");
    hg_prom_sample(&t, "hubsim_devices_connected_max", NULL, NULL, NULL, NULL,
                   hs_stats_up_max());
    for (size_t i = 0;
         i < sizeof(hs__plain_metrics) / sizeof(hs__plain_metrics[0]); i++) {
        const struct hs__plain *p = &hs__plain_metrics[i];
        uint64_t v;
        memcpy(&v, (const char *)&snap + p->offset, sizeof(v));
        hg_prom_family(&t, p->name, p->type, p->help);
        hg_prom_sample(&t, p->name, NULL, NULL, NULL, NULL, v);
    }
    hg_prom_family(&t, "hubsim_errors_total", "counter",
                   "Errors by kind (see hubsim's README).");
    for (int k = 0; k < HS_ERR_N; k++)
        hg_prom_sample(&t, "hubsim_errors_total", "kind", hs_err_names[k], NULL,
                       NULL, snap.errors[k]);
    hg_prom_family(&t, "hubsim_connack_refused_total", "counter",
                   "CONNECTs the hub refused, by CONNACK return code.");
    for (int c = 1; c < HS_CONNACK_CODES; c++) {
        char code[4];
        snprintf(code, sizeof(code), "%d", c);
        hg_prom_sample(&t, "hubsim_connack_refused_total", "code", code, NULL,
                       NULL, snap.connack[c]);
    }
    hs__hists(&t, stats, n);
    return hg_text_take(&t, len);
}

/* The whole run's PUBACK and connect latencies, merged over workers. */
static void hs__hists(struct hg_text *t, struct hs_stats **stats, unsigned n)
{
    struct hg_hist *h = malloc(2 * sizeof(*h));
    if (h == NULL) {
        t->failed = true;
        return;
    }
    hg_hist_init(&h[0]);
    hg_hist_init(&h[1]);
    for (unsigned i = 0; i < n; i++) {
        pthread_mutex_lock(&stats[i]->lock);
        hg_hist_merge(&h[0], &stats[i]->puback_all);
        hg_hist_merge(&h[1], &stats[i]->connect_all);
        pthread_mutex_unlock(&stats[i]->lock);
    }
    size_t nle = sizeof(hs__le) / sizeof(hs__le[0]);
    hg_prom_hist(t, "hubsim_puback_latency_seconds",
                 "Publish to PUBACK, QoS 1, over the whole run.", &h[0], 1e-6,
                 hs__le, nle);
    hg_prom_hist(t, "hubsim_connect_latency_seconds",
                 "TCP connect to CONNACK, over the whole run.", &h[1], 1e-6,
                 hs__le, nle);
    free(h);
}

static void hs__handle(void *arg, const char *url, struct hg_http_reply *out)
{
    struct hs_metrics *m = arg;
    if (strcmp(url, "/metrics") != 0) {
        *out = (struct hg_http_reply){MHD_HTTP_NOT_FOUND,
                                      "text/plain; charset=utf-8",
                                      "not found\n", 10, false};
        return;
    }
    out->status = MHD_HTTP_OK;
    out->type = "text/plain; version=0.0.4; charset=utf-8";
    out->body = hs_metrics_render(m->cfg, m->stats, m->n, &out->len);
    out->owned = true;
}
