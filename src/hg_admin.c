#include "hg_admin.h"

#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "hg_daemon.h"
#include "hg_http.h"
#include "hg_prom.h"
#include "hg_resolver.h"
#include "hg_stats.h"

struct hg_admin {
    struct hg_http *http;
    struct hg_daemon *d;
};

static void hg__handle(void *arg, const char *url, struct hg_http_reply *out);
static void hg__pairs(const struct hg_stats *s, void *arg);
static void hg__pairs_total(const struct hg_stats *s, void *arg);
static void hg__refused(const struct hg_stats *s, void *arg);
static void hg__bytes(const struct hg_stats *s, void *arg);
static void hg__queued(const struct hg_stats *s, void *arg);
static void hg__open(const struct hg_stats *s, void *arg);
static void hg__queue_timeouts(const struct hg_stats *s, void *arg);
static void hg__routes(struct hg_text *t, const struct hg_config *cfg);

struct hg_admin *hg_admin_start(struct hg_daemon *d,
                                const struct hg_sockaddr *addr,
                                const char **reason)
{
    struct hg_admin *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        *reason = "out of memory";
        return NULL;
    }
    a->d = d;
    a->http = hg_http_start(&addr->addr, d->admin_conns, hg__handle, a, reason);
    if (a->http == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void hg_admin_stop(struct hg_admin *a)
{
    if (a == NULL)
        return;
    hg_http_stop(a->http);
    free(a);
}

char *hg_admin_metrics(struct hg_daemon *d, size_t *len)
{
    struct hg_text t = {0};
    hg_prom_family(&t, "hubgate_build_info", "gauge", "Version of hubgate.");
    hg_text_printf(&t, "hubgate_build_info{version=\"%s\"} 1\n", HG_VERSION);
    hg_prom_family(&t, "hubgate_ready", "gauge",
                   "1 while listening and not draining.");
    hg_text_printf(&t, "hubgate_ready %d\n", hg_daemon_ready(d) ? 1 : 0);
    hg_prom_family(&t, "hubgate_connections_active", "gauge",
                   "Connections open now, by listener and route.");
    hg_stats_foreach(hg__pairs, &t);
    hg_prom_family(&t, "hubgate_connections_open", "gauge",
                   "Connections open now by listener, in any phase.");
    hg_stats_foreach(hg__open, &t);
    hg_prom_family(&t, "hubgate_connections_total", "counter",
                   "Connections routed, by listener and route.");
    hg_stats_foreach(hg__pairs_total, &t);
    hg_prom_family(&t, "hubgate_refused_total", "counter",
                   "Connections closed before reaching a backend, by reason.");
    hg_stats_foreach(hg__refused, &t);
    hg_prom_family(&t, "hubgate_bytes_total", "counter",
                   "Bytes forwarded, by route; up is client to backend.");
    hg_stats_foreach(hg__bytes, &t);
    hg_prom_family(&t, "hubgate_connect_queue", "gauge",
                   "Connections waiting for their turn under the route's "
                   "connect_rate.");
    hg_stats_foreach(hg__queued, &t);
    hg_prom_family(&t, "hubgate_queue_timeouts_total", "counter",
                   "Connections closed after waiting timeouts.queue for "
                   "their turn.");
    hg_stats_foreach(hg__queue_timeouts, &t);
    struct hg_config *cfg = hg_daemon_config(d);
    hg__routes(&t, cfg);
    hg_config_unref(cfg);
    hg_prom_family(&t, "hubgate_config_reloads_total", "counter",
                   "Reloads by result.");
    hg_text_printf(
        &t, "hubgate_config_reloads_total{result=\"ok\"} %llu\n",
        (unsigned long long)hg_stats_get(&hg_global_stats.reloads_ok));
    hg_text_printf(
        &t, "hubgate_config_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)hg_stats_get(&hg_global_stats.reloads_failed));
    hg_prom_family(&t, "hubgate_accept_paused_total", "counter",
                   "Times a listener paused accepting: out of descriptors or "
                   "memory.");
    hg_text_printf(
        &t, "hubgate_accept_paused_total %llu\n",
        (unsigned long long)hg_stats_get(&hg_global_stats.accept_paused));
    return hg_text_take(&t, len);
}

/* Per route: the backend's resolver state under the current config. */
static void hg__routes(struct hg_text *t, const struct hg_config *cfg)
{
    hg_prom_family(t, "hubgate_backend_addresses", "gauge",
                   "Addresses the route's backend name resolves to now.");
    for (size_t i = 0; i < cfg->nroutes; i++)
        hg_prom_sample(t, "hubgate_backend_addresses", "route",
                       cfg->routes[i].name, NULL, NULL,
                       atomic_load(&cfg->routes[i].backend->naddrs));
    hg_prom_family(
        t, "hubgate_backend_stale", "gauge",
        "1 while the last lookup failed and an older answer is used.");
    for (size_t i = 0; i < cfg->nroutes; i++)
        hg_prom_sample(t, "hubgate_backend_stale", "route", cfg->routes[i].name,
                       NULL, NULL, atomic_load(&cfg->routes[i].backend->stale));
    hg_prom_family(t, "hubgate_resolver_failures_total", "counter",
                   "Failed lookups of the route's backend name.");
    for (size_t i = 0; i < cfg->nroutes; i++)
        hg_prom_sample(t, "hubgate_resolver_failures_total", "route",
                       cfg->routes[i].name, NULL, NULL,
                       atomic_load(&cfg->routes[i].backend->failures));
}

static void hg__pairs(const struct hg_stats *s, void *arg)
{
    if (s->kind == HG_STATS_PAIR)
        hg_prom_sample(arg, "hubgate_connections_active", "listener",
                       s->listener, "route", s->route,
                       hg_stats_get(&s->active));
}

static void hg__pairs_total(const struct hg_stats *s, void *arg)
{
    if (s->kind == HG_STATS_PAIR)
        hg_prom_sample(arg, "hubgate_connections_total", "listener",
                       s->listener, "route", s->route, hg_stats_get(&s->total));
}

static void hg__refused(const struct hg_stats *s, void *arg)
{
    if (s->kind != HG_STATS_LISTENER)
        return;
    for (int r = 0; r < HG_REFUSE_MAX; r++)
        hg_prom_sample(arg, "hubgate_refused_total", "listener", s->listener,
                       "reason", hg_refuse_name(r),
                       hg_stats_get(&s->refused[r]));
}

static void hg__bytes(const struct hg_stats *s, void *arg)
{
    static const char *const dirs[] = {"up", "down"};
    if (s->kind != HG_STATS_ROUTE)
        return;
    for (int i = 0; i < 2; i++)
        hg_prom_sample(arg, "hubgate_bytes_total", "route", s->route,
                       "direction", dirs[i], hg_stats_get(&s->bytes[i]));
}

static void hg__open(const struct hg_stats *s, void *arg)
{
    if (s->kind == HG_STATS_LISTENER)
        hg_prom_sample(arg, "hubgate_connections_open", "listener", s->listener,
                       NULL, NULL, hg_stats_get(&s->open));
}

static void hg__queued(const struct hg_stats *s, void *arg)
{
    if (s->kind == HG_STATS_ROUTE)
        hg_prom_sample(arg, "hubgate_connect_queue", "route", s->route, NULL,
                       NULL, hg_stats_get(&s->queued));
}

static void hg__queue_timeouts(const struct hg_stats *s, void *arg)
{
    if (s->kind == HG_STATS_ROUTE)
        hg_prom_sample(arg, "hubgate_queue_timeouts_total", "route", s->route,
                       NULL, NULL, hg_stats_get(&s->queue_timeouts));
}

static void hg__handle(void *arg, const char *url, struct hg_http_reply *out)
{
    struct hg_admin *a = arg;
    static const char text[] = "text/plain; charset=utf-8";
    *out = (struct hg_http_reply){MHD_HTTP_NOT_FOUND, text, "not found\n", 10,
                                  false};
    if (strcmp(url, "/healthz") == 0) {
        *out = (struct hg_http_reply){MHD_HTTP_OK, text, "ok\n", 3, false};
    } else if (strcmp(url, "/readyz") == 0) {
        if (hg_daemon_ready(a->d))
            *out =
                (struct hg_http_reply){MHD_HTTP_OK, text, "ready\n", 6, false};
        else
            *out = (struct hg_http_reply){MHD_HTTP_SERVICE_UNAVAILABLE, text,
                                          "not ready\n", 10, false};
    } else if (strcmp(url, "/metrics") == 0) {
        out->status = MHD_HTTP_OK;
        out->type = "text/plain; version=0.0.4; charset=utf-8";
        out->body = hg_admin_metrics(a->d, &out->len);
        out->owned = true;
    }
}
