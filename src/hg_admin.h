/*
 * hg_admin: the admin HTTP endpoint (libmicrohttpd, its own thread):
 * /healthz, /readyz and /metrics in Prometheus text format.
 */
#ifndef HG_ADMIN_H
#define HG_ADMIN_H

#include "hg_config.h"

struct hg_admin;
struct hg_daemon;

/* Starts serving on addr; NULL with a static reason when it cannot. */
struct hg_admin *hg_admin_start(struct hg_daemon *d,
                                const struct hg_sockaddr *addr,
                                const char **reason);

/* Stops serving and frees; NULL is fine. */
void hg_admin_stop(struct hg_admin *a);

/*
 * Renders every metric of d into a new NUL-terminated string (caller
 * frees), or NULL when out of memory. Exposed for tests.
 */
char *hg_admin_metrics(struct hg_daemon *d, size_t *len);

#endif
