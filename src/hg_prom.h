/*
 * hg_prom: the Prometheus text exposition format, for the gateway's admin
 * endpoint and hubsim's metrics alike: a growing text buffer, the HELP and
 * TYPE lines of a family, samples with escaped label values, and a
 * histogram made from an hg_hist.
 */
#ifndef HG_PROM_H
#define HG_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hg_hist.h"

/* A growing text buffer; a failed allocation sticks and yields NULL. */
struct hg_text {
    char *s;
    size_t len, cap;
    bool failed;
};

void hg_text_printf(struct hg_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The text (the caller frees it) and its length, or NULL once anything
 * failed (t's memory is then freed here).
 */
char *hg_text_take(struct hg_text *t, size_t *len);

/* "# HELP name help" and "# TYPE name type". */
void hg_prom_family(struct hg_text *t, const char *name, const char *type,
                    const char *help);

/* Appends {name="value" (first) or ,name="value" with the escapes. */
void hg_prom_label(struct hg_text *t, const char *name, const char *value,
                   bool first);

/* One sample line with no label (k1 NULL), one, or two (k2 set). */
void hg_prom_sample(struct hg_text *t, const char *name, const char *k1,
                    const char *v1, const char *k2, const char *v2,
                    uint64_t value);

/*
 * A histogram family from h, whose values are in units of unit_s seconds
 * (1e-6 for microseconds): name_bucket for each bound of le_s (seconds,
 * ascending) and +Inf, name_sum (seconds) and name_count. A bound counts
 * the values of every hg_hist bucket that lies wholly at or below it, so
 * no value above a bound is ever counted in it; one within hg_hist's
 * precision (0.8 %) below may land in the next.
 */
void hg_prom_hist(struct hg_text *t, const char *name, const char *help,
                  const struct hg_hist *h, double unit_s, const double *le_s,
                  size_t nle);

#endif
