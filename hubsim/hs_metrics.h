/*
 * hs_metrics: --metrics-listen, the run's live figures in Prometheus text
 * format at /metrics, served from a thread of its own (hg_http). A scrape
 * reads the workers' counters as the per-second reporter does (relaxed
 * atomic loads, summed) and merges their whole-run latency histograms
 * under each worker's lock, so it never disturbs the live line or the
 * timeline. Names start hubsim_.
 */
#ifndef HS_METRICS_H
#define HS_METRICS_H

#include <stddef.h>

#include "hs_opts.h"
#include "hs_stats.h"

struct hs_metrics;

/*
 * Serves cfg->metrics_listen over the n workers' stats (the array is
 * copied; the stats must stay initialised until hs_metrics_stop). NULL
 * with a static reason when it cannot listen.
 */
struct hs_metrics *hs_metrics_start(const struct hs_config *cfg,
                                    struct hs_stats **stats, unsigned n,
                                    const char **reason);

/* Stops serving and frees; NULL is fine. */
void hs_metrics_stop(struct hs_metrics *m);

/*
 * Renders the metrics of n workers' stats into a new string (the caller
 * frees it), or NULL when out of memory. Exposed for tests.
 */
char *hs_metrics_render(const struct hs_config *cfg, struct hs_stats **stats,
                        unsigned n, size_t *len);

#endif
