/*
 * hs_report: what the run looks like, while it runs and at the end.
 *
 * Once a second the reporter sums the workers' counters, takes their
 * PUBACK latencies of the last second, keeps a timeline entry and prints a
 * live line on stderr: redrawn in place on a terminal, one line per second
 * otherwise. The end adds a last, partial entry for the time since the
 * last tick, so that the timeline adds up to the totals. At the end it prints a
 * summary on stdout, writes the JSON and HTML reports when asked, and checks
 * the thresholds that decide the exit status.
 */
#ifndef HS_REPORT_H
#define HS_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hs_opts.h"
#include "hs_stats.h"

struct hs_report;

/*
 * A reporter over n workers' stats, for a run that began at t0_ms (loop
 * clock) and connects to target ("127.0.0.1:8883"). NULL when out of
 * memory.
 */
struct hs_report *hs_report_new(const struct hs_config *cfg,
                                struct hs_stats **stats, unsigned n,
                                uint64_t t0_ms, const char *target);

/*
 * Before the run: can the --report-json and --report-html files be
 * written? Creates (and removes) each one's temporary file beside it, so
 * that a bad path stops the run before any device connects instead of
 * losing the report at its end. Returns 0, or -1 after logging.
 */
int hs_report_check_paths(const struct hs_config *cfg);

/* Once a second: a timeline entry and the live line. */
void hs_report_tick(struct hs_report *r, uint64_t now_ms);

/*
 * The end: totals, the summary on stdout, the JSON and HTML files. Returns
 * the exit status: 0, or 1 when a threshold failed (each failure is
 * printed), or 3 when a report could not be written.
 */
int hs_report_finish(struct hs_report *r, uint64_t now_ms);

void hs_report_free(struct hs_report *r);

/*
 * Writes the JSON report (settings, totals, latencies, errors, thresholds,
 * the per-second timeline) to f, as of the last hs_report_finish(). The
 * HTML report embeds the same document.
 */
void hs_report_json(struct hs_report *r, FILE *f);

#endif
