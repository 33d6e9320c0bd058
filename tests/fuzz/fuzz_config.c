/*
 * Fuzz target for the config loader: the input is loaded as a YAML config
 * from memory. Errors are expected and fine; crashes, leaks and hangs are
 * not. Every message must carry the file name, and a config that loads must
 * route each of its exact server names to the route that lists it, and
 * survive a lookup of every name in any case and with a trailing dot.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "hg_cidr.h"
#include "hg_config.h"

#define FUZZ_NAME "fuzz.yaml"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_on_error(void *arg, const char *message);
static void fuzz_check_route(const struct hg_config *cfg,
                             const struct hg_route_conf *r);
static void fuzz_check_allow(const struct hg_cidr_set *set);

/* Messages start with the file name, or with an allow file's path. */
static void fuzz_on_error(void *arg, const char *message)
{
    size_t *count = arg;

    if (message == NULL || message[0] == '\0')
        abort();
    (*count)++;
}

/* An exact name must find its own route, in any case, with a dot. */
static void fuzz_check_route(const struct hg_config *cfg,
                             const struct hg_route_conf *r)
{
    char name[300];

    for (size_t i = 0; i < r->nsni; i++) {
        size_t len = strlen(r->sni[i]);
        if (r->sni[i][0] == '*' || len + 2 > sizeof(name))
            continue;
        memcpy(name, r->sni[i], len);
        for (size_t k = 0; k < len; k++) {
            if (name[k] >= 'a' && name[k] <= 'z')
                name[k] = (char)(name[k] - 'a' + 'A');
        }
        if (name[len - 1] != '.')
            name[len++] = '.';
        if (hg_config_route_for(cfg, name, len) != r)
            abort();
    }
}

/* Matching never fails whatever the address family. */
static void fuzz_check_allow(const struct hg_cidr_set *set)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

    if (set == NULL)
        return;
    (void)hg_cidr_set_match(set, (struct sockaddr *)&sin);
    (void)hg_cidr_set_match(set, (struct sockaddr *)&sin6);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t errors = 0;
    struct hg_config *cfg = hg_config_load_buffer(FUZZ_NAME, (const char *)data,
                                                  size, fuzz_on_error, &errors);

    if ((cfg == NULL) != (errors > 0))
        abort(); /* a failed load explains itself, a good one says nothing */
    if (cfg == NULL)
        return 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        fuzz_check_route(cfg, &cfg->routes[i]);
        fuzz_check_allow(cfg->routes[i].allow);
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        fuzz_check_allow(cfg->listeners[i].allow);
    hg_config_unref(hg_config_ref(cfg));
    hg_config_unref(cfg);
    return 0;
}
