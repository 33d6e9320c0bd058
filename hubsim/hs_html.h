/*
 * hs_html: the HTML report, one self-contained page. It carries the JSON
 * report in a <script type="application/json"> block, and its own inline
 * style sheet and script (hubsim/report/report.css and report.js, built
 * into hubsim) draw the summary tables and SVG charts over time from it:
 * connected devices, messages per second, PUBACK latency percentiles and
 * errors by kind. A Content-Security-Policy meta tag forbids every fetch,
 * so the page loads nothing, from the network or from disk.
 */
#ifndef HS_HTML_H
#define HS_HTML_H

#include <stdio.h>

#include "hs_opts.h"
#include "hs_report.h"

/* The page's script and style sheet, NUL-terminated (generated). */
extern const char hs_html_js[];
extern const char hs_html_css[];

/* Writes the page for the finished run r of cfg to f. */
void hs_html_write(FILE *f, const struct hs_config *cfg, struct hs_report *r);

#endif
