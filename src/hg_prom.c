#include "hg_prom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void hg_text_printf(struct hg_text *t, const char *fmt, ...)
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

char *hg_text_take(struct hg_text *t, size_t *len)
{
    char *s = t->s;
    if (t->failed || s == NULL) {
        free(s);
        s = NULL;
    } else {
        *len = t->len;
    }
    *t = (struct hg_text){0};
    return s;
}

void hg_prom_family(struct hg_text *t, const char *name, const char *type,
                    const char *help)
{
    hg_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void hg_prom_label(struct hg_text *t, const char *name, const char *value,
                   bool first)
{
    hg_text_printf(t, "%s%s=\"", first ? "{" : ",", name);
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            hg_text_printf(t, "\\%c", *p);
        else if (*p == '\n')
            hg_text_printf(t, "\\n");
        else
            hg_text_printf(t, "%c", *p);
    }
    hg_text_printf(t, "\"");
}

void hg_prom_sample(struct hg_text *t, const char *name, const char *k1,
                    const char *v1, const char *k2, const char *v2,
                    uint64_t value)
{
    hg_text_printf(t, "%s", name);
    if (k1 != NULL) {
        hg_prom_label(t, k1, v1, true);
        if (k2 != NULL)
            hg_prom_label(t, k2, v2, false);
        hg_text_printf(t, "}");
    }
    hg_text_printf(t, " %llu\n", (unsigned long long)value);
}

void hg_prom_hist(struct hg_text *t, const char *name, const char *help,
                  const struct hg_hist *h, double unit_s, const double *le_s,
                  size_t nle)
{
    hg_prom_family(t, name, "histogram", help);
    uint32_t b = 0;
    uint64_t below = 0;
    for (size_t i = 0; i < nle; i++) {
        while (b < HG_HIST_BUCKETS &&
               (double)hg_hist_high(b) * unit_s <= le_s[i] * (1 + 1e-9))
            below += h->bucket[b++];
        hg_text_printf(t, "%s_bucket{le=\"%g\"} %llu\n", name, le_s[i],
                       (unsigned long long)below);
    }
    hg_text_printf(t, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                   (unsigned long long)h->count);
    hg_text_printf(t, "%s_sum %.9g\n%s_count %llu\n", name,
                   (double)h->sum * unit_s, name, (unsigned long long)h->count);
}
