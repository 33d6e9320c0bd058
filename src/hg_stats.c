#include "hg_stats.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct hg_global_stats hg_global_stats;

static pthread_mutex_t hg__lock = PTHREAD_MUTEX_INITIALIZER;
static struct hg_stats *hg__head;
static struct hg_stats **hg__tail = &hg__head;

static const char *const hg__refuse_names[HG_REFUSE_MAX] = {
    [HG_REFUSE_LISTENER_ALLOW] = "listener_allow",
    [HG_REFUSE_ROUTE_ALLOW] = "route_allow",
    [HG_REFUSE_NO_SNI] = "no_sni",
    [HG_REFUSE_UNKNOWN_SNI] = "unknown_sni",
    [HG_REFUSE_NOT_TLS] = "not_tls",
    [HG_REFUSE_BAD_HELLO] = "bad_hello",
    [HG_REFUSE_TOO_BIG] = "hello_too_big",
    [HG_REFUSE_HELLO_TIMEOUT] = "hello_timeout",
    [HG_REFUSE_CLIENT_GONE] = "client_gone",
    [HG_REFUSE_SHUTDOWN] = "shutdown",
    [HG_REFUSE_NO_MEMORY] = "no_memory",
    [HG_REFUSE_LIMIT] = "limit",
    [HG_REFUSE_NO_DESCRIPTORS] = "no_descriptors",
};

static bool hg__same(const char *a, const char *b);
static struct hg_stats *hg__get(enum hg_stats_kind kind, const char *listener,
                                const char *route);

const char *hg_refuse_name(enum hg_refuse reason)
{
    return reason < HG_REFUSE_MAX ? hg__refuse_names[reason] : "unknown";
}

struct hg_stats *hg_stats_listener(const char *listener)
{
    return hg__get(HG_STATS_LISTENER, listener, NULL);
}

struct hg_stats *hg_stats_route(const char *route)
{
    return hg__get(HG_STATS_ROUTE, NULL, route);
}

struct hg_stats *hg_stats_pair(const char *listener, const char *route)
{
    return hg__get(HG_STATS_PAIR, listener, route);
}

void hg_stats_foreach(void (*fn)(const struct hg_stats *s, void *arg),
                      void *arg)
{
    pthread_mutex_lock(&hg__lock);
    for (struct hg_stats *s = hg__head; s != NULL; s = s->next)
        fn(s, arg);
    pthread_mutex_unlock(&hg__lock);
}

void hg_stats_free_all(void)
{
    pthread_mutex_lock(&hg__lock);
    while (hg__head != NULL) {
        struct hg_stats *s = hg__head;
        hg__head = s->next;
        free(s->listener);
        free(s->route);
        free(s);
    }
    hg__tail = &hg__head;
    pthread_mutex_unlock(&hg__lock);
}

static bool hg__same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Finds or appends a record; the list only grows until exit. */
static struct hg_stats *hg__get(enum hg_stats_kind kind, const char *listener,
                                const char *route)
{
    struct hg_stats *s;
    pthread_mutex_lock(&hg__lock);
    for (s = hg__head; s != NULL; s = s->next)
        if (s->kind == kind && hg__same(s->listener, listener) &&
            hg__same(s->route, route))
            goto out;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto out;
    s->kind = kind;
    s->listener = listener ? strdup(listener) : NULL;
    s->route = route ? strdup(route) : NULL;
    if ((listener && !s->listener) || (route && !s->route)) {
        free(s->listener);
        free(s->route);
        free(s);
        s = NULL;
        goto out;
    }
    *hg__tail = s;
    hg__tail = &s->next;
out:
    pthread_mutex_unlock(&hg__lock);
    return s;
}
