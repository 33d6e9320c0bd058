#include "hg_admin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "hg_daemon.h"
#include "hg_resolver.h"
#include "hg_stats.h"

/*
 * A few idle connections from one address must not keep the load
 * balancer's probe (from another) from an answer: a cap per client address
 * well under the total, and a short idle timeout.
 */
#define HG_ADMIN_MAX_CONNS  512
#define HG_ADMIN_MAX_PER_IP 16
#define HG_ADMIN_TIMEOUT_S  5

struct hg_admin {
    struct MHD_Daemon *mhd;
    struct hg_daemon *d;
};

/* A growing text buffer; a failed allocation sticks and yields NULL. */
struct hg_text {
    char *s;
    size_t len, cap;
    bool failed;
};

static enum MHD_Result hg__handle(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **state);
static enum MHD_Result hg__reply(struct MHD_Connection *conn, unsigned status,
                                 const char *type, char *body, size_t len,
                                 bool owned);
static void hg__printf(struct hg_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void hg__label(struct hg_text *t, const char *name, const char *value,
                      bool first);
static void hg__family(struct hg_text *t, const char *name, const char *type,
                       const char *help);
static void hg__pairs(const struct hg_stats *s, void *arg);
static void hg__pairs_total(const struct hg_stats *s, void *arg);
static void hg__refused(const struct hg_stats *s, void *arg);
static void hg__bytes(const struct hg_stats *s, void *arg);
static void hg__routes(struct hg_text *t, const struct hg_config *cfg);
static void hg__sample(struct hg_text *t, const char *name, const char *k1,
                       const char *v1, const char *k2, const char *v2,
                       uint64_t value);

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
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (addr->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    a->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, hg__handle, a, MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)&addr->addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HG_ADMIN_MAX_CONNS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)HG_ADMIN_MAX_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)HG_ADMIN_TIMEOUT_S, MHD_OPTION_END);
    if (a->mhd == NULL) {
        *reason = "cannot listen (address in use or not local?)";
        free(a);
        return NULL;
    }
    return a;
}

void hg_admin_stop(struct hg_admin *a)
{
    if (a == NULL)
        return;
    MHD_stop_daemon(a->mhd);
    free(a);
}

char *hg_admin_metrics(struct hg_daemon *d, size_t *len)
{
    struct hg_text t = {0};
    hg__family(&t, "hubgate_build_info", "gauge", "Version of hubgate.");
    hg__printf(&t, "hubgate_build_info{version=\"%s\"} 1\n", HG_VERSION);
    hg__family(&t, "hubgate_ready", "gauge",
               "1 while listening and not draining.");
    hg__printf(&t, "hubgate_ready %d\n", atomic_load(&d->ready) ? 1 : 0);
    hg__family(&t, "hubgate_connections_active", "gauge",
               "Connections open now, by listener and route.");
    hg_stats_foreach(hg__pairs, &t);
    hg__family(&t, "hubgate_connections_total", "counter",
               "Connections routed, by listener and route.");
    hg_stats_foreach(hg__pairs_total, &t);
    hg__family(&t, "hubgate_refused_total", "counter",
               "Connections closed before reaching a backend, by reason.");
    hg_stats_foreach(hg__refused, &t);
    hg__family(&t, "hubgate_bytes_total", "counter",
               "Bytes forwarded, by route; up is client to backend.");
    hg_stats_foreach(hg__bytes, &t);
    struct hg_config *cfg = hg_daemon_config(d);
    hg__routes(&t, cfg);
    hg_config_unref(cfg);
    hg__family(&t, "hubgate_config_reloads_total", "counter",
               "Reloads by result.");
    hg__printf(&t, "hubgate_config_reloads_total{result=\"ok\"} %llu\n",
               (unsigned long long)hg_stats_get(&hg_global_stats.reloads_ok));
    hg__printf(
        &t, "hubgate_config_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)hg_stats_get(&hg_global_stats.reloads_failed));
    hg__family(&t, "hubgate_accept_paused_total", "counter",
               "Times a listener paused accepting: out of descriptors or "
               "memory.");
    hg__printf(
        &t, "hubgate_accept_paused_total %llu\n",
        (unsigned long long)hg_stats_get(&hg_global_stats.accept_paused));
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    *len = t.len;
    return t.s;
}

/* Per route: the backend's resolver state under the current config. */
static void hg__routes(struct hg_text *t, const struct hg_config *cfg)
{
    hg__family(t, "hubgate_backend_addresses", "gauge",
               "Addresses the route's backend name resolves to now.");
    for (size_t i = 0; i < cfg->nroutes; i++)
        hg__sample(t, "hubgate_backend_addresses", "route", cfg->routes[i].name,
                   NULL, NULL, atomic_load(&cfg->routes[i].backend->naddrs));
    hg__family(t, "hubgate_backend_stale", "gauge",
               "1 while the last lookup failed and an older answer is used.");
    for (size_t i = 0; i < cfg->nroutes; i++)
        hg__sample(t, "hubgate_backend_stale", "route", cfg->routes[i].name,
                   NULL, NULL, atomic_load(&cfg->routes[i].backend->stale));
    hg__family(t, "hubgate_resolver_failures_total", "counter",
               "Failed lookups of the route's backend name.");
    for (size_t i = 0; i < cfg->nroutes; i++)
        hg__sample(t, "hubgate_resolver_failures_total", "route",
                   cfg->routes[i].name, NULL, NULL,
                   atomic_load(&cfg->routes[i].backend->failures));
}

static void hg__pairs(const struct hg_stats *s, void *arg)
{
    if (s->kind == HG_STATS_PAIR)
        hg__sample(arg, "hubgate_connections_active", "listener", s->listener,
                   "route", s->route, hg_stats_get(&s->active));
}

static void hg__pairs_total(const struct hg_stats *s, void *arg)
{
    if (s->kind == HG_STATS_PAIR)
        hg__sample(arg, "hubgate_connections_total", "listener", s->listener,
                   "route", s->route, hg_stats_get(&s->total));
}

static void hg__refused(const struct hg_stats *s, void *arg)
{
    if (s->kind != HG_STATS_LISTENER)
        return;
    for (int r = 0; r < HG_REFUSE_MAX; r++)
        hg__sample(arg, "hubgate_refused_total", "listener", s->listener,
                   "reason", hg_refuse_name(r), hg_stats_get(&s->refused[r]));
}

static void hg__bytes(const struct hg_stats *s, void *arg)
{
    static const char *const dirs[] = {"up", "down"};
    if (s->kind != HG_STATS_ROUTE)
        return;
    for (int i = 0; i < 2; i++)
        hg__sample(arg, "hubgate_bytes_total", "route", s->route, "direction",
                   dirs[i], hg_stats_get(&s->bytes[i]));
}

/* One sample line with one or two labels (k2 NULL: one). */
static void hg__sample(struct hg_text *t, const char *name, const char *k1,
                       const char *v1, const char *k2, const char *v2,
                       uint64_t value)
{
    hg__printf(t, "%s", name);
    hg__label(t, k1, v1, true);
    if (k2 != NULL)
        hg__label(t, k2, v2, false);
    hg__printf(t, "} %llu\n", (unsigned long long)value);
}

static void hg__family(struct hg_text *t, const char *name, const char *type,
                       const char *help)
{
    hg__printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Appends name="value" with the exposition format's escapes. */
static void hg__label(struct hg_text *t, const char *name, const char *value,
                      bool first)
{
    hg__printf(t, "%s%s=\"", first ? "{" : ",", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            hg__printf(t, "\\%c", *p);
        else if (*p == '\n')
            hg__printf(t, "\\n");
        else
            hg__printf(t, "%c", *p);
    }
    hg__printf(t, "\"");
}

static void hg__printf(struct hg_text *t, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !t->failed; tries++) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = vsnprintf(t->s ? t->s + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap ? t->cap * 2 : 8192) + (size_t)n;
        char *s = realloc(t->s, cap);
        if (s == NULL) {
            t->failed = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static enum MHD_Result hg__handle(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    struct hg_admin *a = cls;
    static const char text[] = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return hg__reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text,
                         "method not allowed\n", 19, false);
    if (strcmp(url, "/healthz") == 0)
        return hg__reply(conn, MHD_HTTP_OK, text, "ok\n", 3, false);
    if (strcmp(url, "/readyz") == 0) {
        if (atomic_load(&a->d->ready))
            return hg__reply(conn, MHD_HTTP_OK, text, "ready\n", 6, false);
        return hg__reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text,
                         "not ready\n", 10, false);
    }
    if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *body = hg_admin_metrics(a->d, &len);
        if (body == NULL)
            return MHD_NO;
        return hg__reply(conn, MHD_HTTP_OK,
                         "text/plain; version=0.0.4; charset=utf-8", body, len,
                         true);
    }
    return hg__reply(conn, MHD_HTTP_NOT_FOUND, text, "not found\n", 10, false);
}

static enum MHD_Result hg__reply(struct MHD_Connection *conn, unsigned status,
                                 const char *type, char *body, size_t len,
                                 bool owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}
