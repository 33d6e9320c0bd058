#include "hs_report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hs_html.h"
#include "hs_json.h"
#include "hs_log.h"
#include "hs_mqtt.h"

#define HS_LINE_MAX 512

/*
 * One second of the run, or the part of one that ended it (partial: the
 * sample hs_report_finish() takes, so that the timeline sums to the
 * totals).
 */
struct hs_second {
    uint32_t t;       /* seconds since the start */
    uint64_t end_ms;  /* since the start, when taken */
    uint64_t span_ms; /* partial: since the sample before */
    bool partial;
    bool have_lat; /* PUBACKs in that second: the p* below hold values */
    uint64_t connected, connecting;
    uint64_t sent, acked, connects, reconnects, errors; /* in that second */
    uint64_t errors_by_kind[HS_ERR_N];
    uint64_t p50_us, p99_us, p999_us;
};

/* The latency summary of one histogram, in milliseconds. */
struct hs_lat {
    uint64_t count;
    double min, p50, p90, p99, p999, max, mean;
};

struct hs_report {
    const struct hs_config *cfg;
    struct hs_stats **stats;
    unsigned n;
    uint64_t t0, t_end;
    char target[64];
    char started[40]; /* wall-clock time of the start, RFC 3339 */
    bool tty;
    bool line_open; /* a live line without its newline is on screen */
    struct hs_snapshot prev;
    struct hs_snapshot total;
    uint64_t connected_max;
    struct hg_hist window;
    struct hg_hist puback, connect, tls;
    struct hs_second *timeline;
    size_t nsec, cap;
    uint64_t last_ms;    /* loop clock of the last sample */
    char failed[4][160]; /* thresholds that failed, as text */
    unsigned nfailed;
};

static void hs__collect(struct hs_report *r, struct hs_snapshot *snap,
                        bool totals);
static void hs__live(struct hs_report *r, const struct hs_second *s,
                     const struct hs_snapshot *snap);
static size_t hs__errors_text(const struct hs_snapshot *snap, char *buf,
                              size_t cap);
static size_t hs__add(char *buf, size_t size, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void hs__lat(const struct hg_hist *h, struct hs_lat *l);
static double hs__rate(const struct hs_report *r);
static void hs__summary(struct hs_report *r, FILE *out);
static void hs__summary_latency(FILE *out, const char *name,
                                const struct hg_hist *h);
static void hs__summary_errors(struct hs_report *r, FILE *out);
static void hs__thresholds(struct hs_report *r);
static int hs__save(struct hs_report *r, const char *path, bool html);
static void hs__json_str(FILE *f, const char *s);
static void hs__json_config(struct hs_report *r, FILE *f);
static bool hs__amqp(const struct hs_config *cfg);
static void hs__json_more_config(struct hs_report *r, FILE *f);
static void hs__json_limit(FILE *f, const char *name, double v,
                           const char *end);
static void hs__json_counts(struct hs_report *r, FILE *f);
static void hs__json_latency(FILE *f, const char *name, const struct hg_hist *h,
                             bool last);
static void hs__json_errors(struct hs_report *r, FILE *f);
static void hs__json_timeline(struct hs_report *r, FILE *f);
static void hs__json_ms(FILE *f, const char *name, bool have, double ms);
static const char *hs__sample(struct hs_report *r, int kind, char *buf,
                              size_t cap);

struct hs_report *hs_report_new(const struct hs_config *cfg,
                                struct hs_stats **stats, unsigned n,
                                uint64_t t0_ms, const char *target)
{
    struct hs_report *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->cfg = cfg;
    r->stats = stats;
    r->n = n;
    r->t0 = t0_ms;
    snprintf(r->target, sizeof(r->target), "%s", target);
    r->tty = isatty(STDERR_FILENO) && !cfg->quiet;
    hg_hist_init(&r->window);
    hg_hist_init(&r->puback);
    hg_hist_init(&r->connect);
    hg_hist_init(&r->tls);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(r->started, sizeof(r->started), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return r;
}

void hs_report_free(struct hs_report *r)
{
    if (r == NULL)
        return;
    free(r->timeline);
    free(r);
}

/*
 * Sums the counters into snap and moves each worker's last-second PUBACK
 * latencies into r->window; with totals, also sums the whole-run
 * histograms.
 */
static void hs__collect(struct hs_report *r, struct hs_snapshot *snap,
                        bool totals)
{
    memset(snap, 0, sizeof(*snap));
    hg_hist_init(&r->window);
    for (unsigned i = 0; i < r->n; i++) {
        struct hs_stats *s = r->stats[i];
        hs_stats_snapshot(snap, s);
        pthread_mutex_lock(&s->lock);
        hg_hist_merge(&r->window, &s->puback_win);
        hg_hist_init(&s->puback_win);
        if (totals) {
            hg_hist_merge(&r->puback, &s->puback_all);
            hg_hist_merge(&r->connect, &s->connect_all);
            hg_hist_merge(&r->tls, &s->tls_all);
        }
        pthread_mutex_unlock(&s->lock);
    }
    r->connected_max = hs_stats_up_max();
}

/*
 * Appends the sample of cur (and r->window) at now_ms to the timeline;
 * NULL when out of memory.
 */
static struct hs_second *hs__sample_second(struct hs_report *r,
                                           const struct hs_snapshot *cur,
                                           uint64_t now_ms, bool partial)
{
    if (r->nsec == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct hs_second *t = realloc(r->timeline, cap * sizeof(*t));
        if (t == NULL)
            return NULL;
        r->timeline = t;
        r->cap = cap;
    }
    struct hs_second *s = &r->timeline[r->nsec++];
    *s = (struct hs_second){
        .t = (uint32_t)((now_ms - r->t0 + 500) / 1000),
        .end_ms = now_ms - r->t0,
        .span_ms = now_ms - (r->nsec > 1 ? r->last_ms : r->t0),
        .partial = partial,
        .have_lat = r->window.count > 0,
        .connected = cur->connected,
        .connecting = cur->connecting,
        .sent = cur->sent - r->prev.sent,
        .acked = cur->acked - r->prev.acked,
        .connects = cur->connects - r->prev.connects,
        .reconnects = cur->reconnects - r->prev.reconnects,
        .errors = cur->errors_total - r->prev.errors_total,
        .p50_us = hg_hist_quantile(&r->window, 0.5),
        .p99_us = hg_hist_quantile(&r->window, 0.99),
        .p999_us = hg_hist_quantile(&r->window, 0.999),
    };
    for (int k = 0; k < HS_ERR_N; k++)
        s->errors_by_kind[k] = cur->errors[k] - r->prev.errors[k];
    r->last_ms = now_ms;
    return s;
}

void hs_report_tick(struct hs_report *r, uint64_t now_ms)
{
    struct hs_snapshot cur;
    hs__collect(r, &cur, false);
    struct hs_second *s = hs__sample_second(r, &cur, now_ms, false);
    if (s == NULL)
        return;
    if (!r->cfg->quiet)
        hs__live(r, s, &cur);
    r->prev = cur;
}

/* The live line: on a terminal redrawn in place, else one per second. */
static void hs__live(struct hs_report *r, const struct hs_second *s,
                     const struct hs_snapshot *snap)
{
    char line[HS_LINE_MAX], errs[HS_LINE_MAX / 2] = "";
    size_t n = 0;
    n = hs__add(line, sizeof(line), n,
                "%s[%4us] connected %" PRIu64 "/%u  sent/s %" PRIu64
                "  acked/s %" PRIu64,
                r->tty ? "\r" : "", s->t, s->connected, r->cfg->ndevices,
                s->sent, s->acked);
    if (r->window.count > 0)
        n = hs__add(
            line, sizeof(line), n, "  puback ms p50 %.1f p99 %.1f p99.9 %.1f",
            s->p50_us / 1000.0, s->p99_us / 1000.0, s->p999_us / 1000.0);
    if (snap->errors_total > 0)
        hs__errors_text(snap, errs, sizeof(errs));
    n = hs__add(line, sizeof(line), n,
                "  connects/s %" PRIu64 "  reconnects %" PRIu64
                "  renewals %" PRIu64 "  errors %" PRIu64 "%s%s%s%s",
                s->connects, snap->reconnects, snap->renewals,
                snap->errors_total, errs[0] ? " (" : "", errs,
                errs[0] ? ")" : "", r->tty ? "\033[K" : "\n");
    ssize_t rc = write(STDERR_FILENO, line, n);
    (void)rc;
    r->line_open = r->tty;
    hs_log_live(r->line_open);
}

/* Appends to buf at n, never past size (the end keeps a newline's room);
 * returns the new length. */
static size_t hs__add(char *buf, size_t size, size_t n, const char *fmt, ...)
{
    va_list ap;
    if (n >= size - 1)
        return n;
    va_start(ap, fmt);
    int w = vsnprintf(buf + n, size - n, fmt, ap);
    va_end(ap);
    if (w < 0)
        return n;
    if ((size_t)w >= size - n) {
        buf[size - 2] = '\n';
        return size - 1;
    }
    return n + (size_t)w;
}

/* "tcp_refused 5, tls 1": every kind seen, within cap. */
static size_t hs__errors_text(const struct hs_snapshot *snap, char *buf,
                              size_t cap)
{
    size_t n = 0;
    for (int k = 0; k < HS_ERR_N; k++) {
        if (snap->errors[k] == 0)
            continue;
        int w = snprintf(buf + n, cap - n, "%s%s %" PRIu64, n ? ", " : "",
                         hs_err_names[k], snap->errors[k]);
        if (w < 0 || (size_t)w >= cap - n)
            break;
        n += (size_t)w;
    }
    return n;
}

static void hs__lat(const struct hg_hist *h, struct hs_lat *l)
{
    l->count = h->count;
    l->min = h->count ? h->min / 1000.0 : 0;
    l->p50 = hg_hist_quantile(h, 0.5) / 1000.0;
    l->p90 = hg_hist_quantile(h, 0.9) / 1000.0;
    l->p99 = hg_hist_quantile(h, 0.99) / 1000.0;
    l->p999 = hg_hist_quantile(h, 0.999) / 1000.0;
    l->max = h->max / 1000.0;
    l->mean = hg_hist_mean(h) / 1000.0;
}

/* Acknowledged (QoS 0: sent) messages per second over the whole run. */
static double hs__rate(const struct hs_report *r)
{
    double secs = (double)(r->t_end - r->t0) / 1000.0;
    uint64_t n = r->cfg->qos ? r->total.acked : r->total.sent;
    return secs > 0 ? (double)n / secs : 0;
}

int hs_report_finish(struct hs_report *r, uint64_t now_ms)
{
    r->t_end = now_ms;
    hs__collect(r, &r->total, true);
    /*
     * The part of a second since the last tick (the whole run when it
     * was shorter than a second), so that the timeline adds up to the
     * totals.
     */
    const struct hs_snapshot *t = &r->total, *p = &r->prev;
    bool moved = t->sent != p->sent || t->acked != p->acked ||
                 t->connects != p->connects || t->reconnects != p->reconnects ||
                 t->errors_total != p->errors_total;
    if (moved || now_ms > (r->nsec ? r->last_ms : r->t0))
        hs__sample_second(r, &r->total, now_ms, true);
    r->prev = r->total;
    if (r->line_open) {
        ssize_t rc = write(STDERR_FILENO, "\n", 1);
        (void)rc;
        r->line_open = false;
        hs_log_live(false);
    }
    hs__thresholds(r);
    hs__summary(r, stdout);
    fflush(stdout);
    int rc = r->nfailed ? 1 : 0;
    if (r->cfg->report_json && hs__save(r, r->cfg->report_json, false) < 0)
        rc = 3;
    if (r->cfg->report_html && hs__save(r, r->cfg->report_html, true) < 0)
        rc = 3;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Thresholds                                                          */
/* ------------------------------------------------------------------ */

static void hs__thresholds(struct hs_report *r)
{
    const struct hs_config *cfg = r->cfg;
    if (cfg->max_errors >= 0 &&
        r->total.errors_total > (uint64_t)cfg->max_errors)
        snprintf(r->failed[r->nfailed++], sizeof(r->failed[0]),
                 "--max-errors %" PRId64 ": %" PRIu64 " errors",
                 cfg->max_errors, r->total.errors_total);
    if (cfg->max_p99_ms >= 0) {
        double p99 = hg_hist_quantile(&r->puback, 0.99) / 1000.0;
        if (r->puback.count == 0)
            snprintf(r->failed[r->nfailed++], sizeof(r->failed[0]),
                     "--max-p99 %g: no PUBACK was measured", cfg->max_p99_ms);
        else if (p99 > cfg->max_p99_ms)
            snprintf(r->failed[r->nfailed++], sizeof(r->failed[0]),
                     "--max-p99 %g: PUBACK p99 was %.2f ms", cfg->max_p99_ms,
                     p99);
    }
    if (cfg->min_rate >= 0 && hs__rate(r) < cfg->min_rate)
        snprintf(r->failed[r->nfailed++], sizeof(r->failed[0]),
                 "--min-rate %g: %.1f messages/s", cfg->min_rate, hs__rate(r));
}

/* ------------------------------------------------------------------ */
/* Summary                                                             */
/* ------------------------------------------------------------------ */

static void hs__summary(struct hs_report *r, FILE *out)
{
    const struct hs_config *cfg = r->cfg;
    const struct hs_snapshot *t = &r->total;
    char qos[48];
    /* AMQP has no QoS: each message is sent unsettled and counts as
     * acknowledged when the hub's disposition settles it. */
    if (hs__amqp(cfg))
        snprintf(qos, sizeof(qos), "AMQP, settled on disposition");
    else
        snprintf(qos, sizeof(qos), "QoS %u", cfg->qos);
    fprintf(out, "hubsim: %u devices, %s to %s via %s, %s, %.1f s\n\n",
            cfg->ndevices, hs_protocol_name(cfg->protocol), cfg->hub, r->target,
            qos, (double)(r->t_end - r->t0) / 1000.0);
    fprintf(out,
            "  connections   attempts %" PRIu64 "  accepted %" PRIu64
            "  reconnects %" PRIu64 "  renewals %" PRIu64
            "  most at once %" PRIu64 "  gave up %" PRIu64 "\n",
            t->attempts, t->connects, t->reconnects, t->renewals,
            r->connected_max, t->gave_up);
    if (cfg->nstorms)
        fprintf(out,
                "  storms        %" PRIu64 "  connections dropped %" PRIu64
                "  reconnected %" PRIu64 "\n",
                t->storms, t->storm_drops, t->storm_reconnects);
    fprintf(out,
            "  messages      sent %" PRIu64 "  acknowledged %" PRIu64
            "  lost %" PRIu64 "  re-sent %" PRIu64 "  behind schedule %" PRIu64,
            t->sent, t->acked, t->lost, t->resent, t->overrun);
    if (cfg->c2d)
        fprintf(out, "  cloud-to-device %" PRIu64, t->c2d);
    fprintf(out, "\n  rate          %.1f %s messages/s over the run\n\n",
            hs__rate(r), cfg->qos ? "acknowledged" : "sent");
    fprintf(out, "  latency ms          count       min       p50       p90"
                 "       p99     p99.9       max      mean\n");
    hs__summary_latency(out, "puback", &r->puback);
    hs__summary_latency(out, "connect", &r->connect);
    hs__summary_latency(out, "tls handshake", &r->tls);
    hs__summary_errors(r, out);
    for (unsigned i = 0; i < r->nfailed; i++)
        fprintf(out, "  FAILED        %s\n", r->failed[i]);
}

static void hs__summary_latency(FILE *out, const char *name,
                                const struct hg_hist *h)
{
    struct hs_lat l;
    hs__lat(h, &l);
    if (l.count == 0) { /* nothing measured: no figure to show */
        fprintf(out, "  %-15s %9d %9s %9s %9s %9s %9s %9s %9s\n", name, 0, "-",
                "-", "-", "-", "-", "-", "-");
        return;
    }
    fprintf(out,
            "  %-15s %9" PRIu64 " %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n",
            name, l.count, l.min, l.p50, l.p90, l.p99, l.p999, l.max, l.mean);
}

static void hs__summary_errors(struct hs_report *r, FILE *out)
{
    char sample[HS_SAMPLE_LEN];
    fprintf(out, "\n  errors        %" PRIu64 "\n", r->total.errors_total);
    for (int k = 0; k < HS_ERR_N; k++) {
        if (r->total.errors[k] == 0)
            continue;
        fprintf(out, "    %-14s %8" PRIu64 "   first: %s\n", hs_err_names[k],
                r->total.errors[k], hs__sample(r, k, sample, sizeof(sample)));
    }
    for (int c = 1; c < HS_CONNACK_CODES; c++)
        if (r->total.connack[c])
            fprintf(out, "    CONNACK %d      %8" PRIu64 "   (%s)\n", c,
                    r->total.connack[c], hs_mqtt_connack_text((unsigned)c));
}

/* The first sample text of kind over the workers. */
static const char *hs__sample(struct hs_report *r, int kind, char *buf,
                              size_t cap)
{
    buf[0] = '\0';
    for (unsigned i = 0; i < r->n && buf[0] == '\0'; i++) {
        pthread_mutex_lock(&r->stats[i]->lock);
        snprintf(buf, cap, "%s", r->stats[i]->sample[kind]);
        pthread_mutex_unlock(&r->stats[i]->lock);
    }
    return buf;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

static int hs__check_path(const char *flag, const char *path)
{
    char tmp[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        hs_log_error("%s: cannot write %s: it is a directory", flag, path);
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        hs_log_error("%s: cannot write %s: %s", flag, path, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(tmp);
    return 0;
}

int hs_report_check_paths(const struct hs_config *cfg)
{
    if (cfg->report_json &&
        hs__check_path("--report-json", cfg->report_json) < 0)
        return -1;
    if (cfg->report_html &&
        hs__check_path("--report-html", cfg->report_html) < 0)
        return -1;
    return 0;
}

/* Writes the JSON or HTML report to path.tmp, then renames it to path. */
static int hs__save(struct hs_report *r, const char *path, bool html)
{
    const char *what = html ? "HTML" : "JSON";
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        hs_log_error("cannot write the %s report %s: %s", what, tmp,
                     strerror(errno));
        return -1;
    }
    if (html)
        hs_html_write(f, r->cfg, r);
    else
        hs_report_json(r, f);
    bool ok = !ferror(f);
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) < 0) {
        hs_log_error("cannot write the %s report %s: %s", what, path,
                     strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void hs_report_json(struct hs_report *r, FILE *f)
{
    fprintf(f, "{\n  \"hubsim_version\": ");
    hs__json_str(f, HG_VERSION);
    fprintf(f, ",\n  \"started\": ");
    hs__json_str(f, r->started);
    fprintf(f, ",\n  \"duration_s\": %.3f,\n",
            (double)(r->t_end - r->t0) / 1000.0);
    hs__json_config(r, f);
    hs__json_counts(r, f);
    fprintf(f, "  \"latency_ms\": {\n");
    hs__json_latency(f, "puback", &r->puback, false);
    hs__json_latency(f, "connect", &r->connect, false);
    hs__json_latency(f, "tls_handshake", &r->tls, true);
    fprintf(f, "  },\n");
    hs__json_errors(r, f);
    hs__json_timeline(r, f);
    fprintf(f, "}\n");
}

/* Strings go through the escape the HTML report's script block needs. */
static void hs__json_str(FILE *f, const char *s)
{
    hs_json_str(f, s);
}

static void hs__json_config(struct hs_report *r, FILE *f)
{
    const struct hs_config *cfg = r->cfg;
    fprintf(f, "  \"config\": {\n    \"hub\": ");
    hs__json_str(f, cfg->hub);
    fprintf(f, ",\n    \"protocol\": ");
    hs__json_str(f, hs_protocol_name(cfg->protocol));
    fprintf(f, ",\n    \"target\": ");
    hs__json_str(f, r->target);
    fprintf(f,
            ",\n    \"devices\": %u,\n    \"first_device\": ", cfg->ndevices);
    hs__json_str(f, cfg->device_ids[0]);
    fprintf(f,
            ",\n    \"messages_per_device\": %" PRIu64
            ",\n    \"intervals_ms\": [",
            cfg->messages);
    for (size_t i = 0; i < cfg->nintervals; i++)
        fprintf(f, "%s%u", i ? ", " : "", cfg->intervals[i]);
    fprintf(f, "],\n    \"duration_s\": ");
    if (cfg->duration_ms) /* else no limit */
        fprintf(f, "%.3f", cfg->duration_ms / 1000.0);
    else
        fprintf(f, "null");
    fprintf(f,
            ",\n    \"qos\": %u,\n"
            "    \"ramp_per_s\": %g,\n    \"inflight\": %u,\n"
            "    \"keepalive_s\": %u,\n    \"threads\": %u,\n",
            cfg->qos, cfg->ramp, cfg->inflight, cfg->keepalive_s, cfg->threads);
    if (cfg->payload_size)
        fprintf(f, "    \"payload_size\": %zu,\n", cfg->payload_size);
    else if (cfg->template.text) {
        fprintf(f, "    \"template\": ");
        hs__json_str(f, cfg->template.text);
        fprintf(f, ",\n");
    }
    hs__json_more_config(r, f);
    hs__json_limit(f, "max_errors", (double)cfg->max_errors, ",");
    hs__json_limit(f, "max_p99_ms", cfg->max_p99_ms, ",");
    hs__json_limit(f, "min_rate", cfg->min_rate, "\n  },");
}

static bool hs__amqp(const struct hs_config *cfg)
{
    return cfg->protocol == HS_PROTO_AMQP || cfg->protocol == HS_PROTO_AMQP_WS;
}

/* The rest of the settings: payload, identity, time-outs, storms. */
static void hs__json_more_config(struct hs_report *r, FILE *f)
{
    const struct hs_config *cfg = r->cfg;
    static const char *const auths[] = {
        [HS_AUTH_NONE] = "none",           [HS_AUTH_DEVICE_KEY] = "device_key",
        [HS_AUTH_GROUP_KEY] = "group_key", [HS_AUTH_POLICY] = "policy",
        [HS_AUTH_TOKEN] = "token",
    };
    const struct hs_payload *p = &cfg->payload;
    /* Which payloads, with their shares (--payload-distribution). */
    fprintf(f, "    \"payloads\": [");
    for (size_t i = 0; i < p->nitems; i++) {
        const struct hs_pl_item *it = &p->items[i];
        fprintf(f, "%s{\"kind\": \"%s\", \"percent\": %u", i ? ", " : "",
                it->kind == HS_PL_FIX ? "fixed" : "template", it->pct);
        if (it->kind == HS_PL_FIX)
            fprintf(f, ", \"bytes\": %zu", it->len);
        fprintf(f, ", \"device\": ");
        if (it->device_id)
            hs__json_str(f, it->device_id);
        else
            fprintf(f, "null");
        fprintf(f, "}");
    }
    fprintf(f,
            "],\n    \"header\": %s,\n    \"variables\": %zu,\n"
            "    \"properties\": %s,\n    \"intervals_per_device\": %s,\n",
            p->has_header ? "true" : "false", p->vars.n,
            cfg->properties || p->properties ? "true" : "false",
            cfg->dev_intervals ? "true" : "false");
    fprintf(f, "    \"auth\": ");
    if (cfg->cert || cfg->cert_dir)
        hs__json_str(f, cfg->cert_dir ? "x509_per_device" : "x509");
    else
        hs__json_str(f, (unsigned)cfg->auth < sizeof(auths) / sizeof(*auths)
                            ? auths[cfg->auth]
                            : "?");
    fprintf(f, ",\n    \"sas_ttl_s\": %" PRIu64 ",\n    \"sas_expiry\": ",
            cfg->sas_ttl_s);
    if (cfg->sas_expiry)
        fprintf(f, "%" PRIu64, cfg->sas_expiry);
    else
        fprintf(f, "null");
    fprintf(f,
            ",\n    \"connect_timeout_ms\": %" PRIu64
            ",\n    \"ack_timeout_ms\": %" PRIu64
            ",\n    \"drain_timeout_ms\": %" PRIu64
            ",\n    \"backoff_base_ms\": %" PRIu64
            ",\n    \"backoff_max_ms\": %" PRIu64
            ",\n    \"max_attempts\": %u,\n    \"clean_session\": %s,\n"
            "    \"c2d\": %s,\n    \"resend\": %s,\n"
            "    \"source_addresses\": %zu,\n    \"storm_at_s\": [",
            cfg->connect_timeout_ms, cfg->ack_timeout_ms, cfg->drain_timeout_ms,
            cfg->backoff_base_ms, cfg->backoff_max_ms, cfg->max_attempts,
            cfg->clean_session ? "true" : "false", cfg->c2d ? "true" : "false",
            cfg->resend ? "true" : "false", cfg->nbinds);
    for (size_t i = 0; i < cfg->nstorms; i++)
        fprintf(f, "%s%.3f", i ? ", " : "", cfg->storm_at[i] / 1000.0);
    fprintf(f, "],\n");
    if (cfg->protocol == HS_PROTO_MQTT_WS ||
        cfg->protocol == HS_PROTO_AMQP_WS) {
        fprintf(f, "    \"ws_path\": ");
        hs__json_str(f, cfg->ws_path ? cfg->ws_path : "");
        fprintf(f, ",\n");
    }
    if (hs__amqp(cfg)) {
        static const char *const amqp_auths[] = {
            [HS_AMQP_CBS] = "cbs",
            [HS_AMQP_PLAIN] = "plain",
            [HS_AMQP_ANONYMOUS] = "anonymous",
        };
        fprintf(f, "    \"devices_per_connection\": %u,\n    \"amqp_auth\": ",
                cfg->devices_per_conn);
        hs__json_str(
            f, (unsigned)cfg->amqp_auth < 3 ? amqp_auths[cfg->amqp_auth] : "?");
        fprintf(f, ",\n    \"amqp_address\": ");
        hs__json_str(f, cfg->amqp_address ? cfg->amqp_address : "");
        fprintf(f, ",\n    \"acknowledged_by\": \"disposition\",\n");
    }
}

/* A threshold's setting: its value, or null when not given (< 0). */
static void hs__json_limit(FILE *f, const char *name, double v, const char *end)
{
    if (v < 0)
        fprintf(f, "    \"%s\": null%s\n", name, end);
    else
        fprintf(f, "    \"%s\": %.15g%s\n", name, v, end);
}

static void hs__json_counts(struct hs_report *r, FILE *f)
{
    const struct hs_snapshot *t = &r->total;
    fprintf(f,
            "  \"connections\": {\"attempts\": %" PRIu64
            ", \"accepted\": %" PRIu64 ", \"reconnects\": %" PRIu64
            ", \"renewals\": %" PRIu64 ", \"most_at_once\": %" PRIu64
            ", \"gave_up\": %" PRIu64 ", \"open_at_end\": %" PRIu64
            ", \"storms\": %" PRIu64 ", \"storm_drops\": %" PRIu64
            ", \"storm_reconnects\": %" PRIu64 "},\n",
            t->attempts, t->connects, t->reconnects, t->renewals,
            r->connected_max, t->gave_up, t->connected, t->storms,
            t->storm_drops, t->storm_reconnects);
    fprintf(f,
            "  \"messages\": {\"sent\": %" PRIu64 ", \"acked\": %" PRIu64
            ", \"lost\": %" PRIu64 ", \"resent\": %" PRIu64
            ", \"behind_schedule\": %" PRIu64 ", \"c2d\": %" PRIu64
            ", \"rate_per_s\": %.3f},\n",
            t->sent, t->acked, t->lost, t->resent, t->overrun, t->c2d,
            hs__rate(r));
}

static void hs__json_latency(FILE *f, const char *name, const struct hg_hist *h,
                             bool last)
{
    struct hs_lat l;
    hs__lat(h, &l);
    bool have = l.count > 0;
    fprintf(f, "    \"%s\": {\"count\": %" PRIu64, name, l.count);
    hs__json_ms(f, "min", have, l.min);
    hs__json_ms(f, "p50", have, l.p50);
    hs__json_ms(f, "p90", have, l.p90);
    hs__json_ms(f, "p99", have, l.p99);
    hs__json_ms(f, "p999", have, l.p999);
    hs__json_ms(f, "max", have, l.max);
    hs__json_ms(f, "mean", have, l.mean);
    fprintf(f, "}%s\n", last ? "" : ",");
}

static void hs__json_errors(struct hs_report *r, FILE *f)
{
    char sample[HS_SAMPLE_LEN];
    fprintf(f,
            "  \"errors\": {\n    \"total\": %" PRIu64 ",\n    \"by_kind\": {",
            r->total.errors_total);
    for (int k = 0; k < HS_ERR_N; k++)
        fprintf(f, "%s\"%s\": %" PRIu64, k ? ", " : "", hs_err_names[k],
                r->total.errors[k]);
    fprintf(f, "},\n    \"connack_codes\": {");
    bool first = true;
    for (int c = 1; c < HS_CONNACK_CODES; c++) {
        if (r->total.connack[c] == 0)
            continue;
        fprintf(f, "%s\"%d\": %" PRIu64, first ? "" : ", ", c,
                r->total.connack[c]);
        first = false;
    }
    fprintf(f, "},\n    \"first\": {");
    first = true;
    for (int k = 0; k < HS_ERR_N; k++) {
        if (r->total.errors[k] == 0)
            continue;
        fprintf(f, "%s\"%s\": ", first ? "" : ", ", hs_err_names[k]);
        hs__json_str(f, hs__sample(r, k, sample, sizeof(sample)));
        first = false;
    }
    fprintf(f, "}\n  },\n  \"thresholds\": {\"passed\": %s, \"failed\": [",
            r->nfailed ? "false" : "true");
    for (unsigned i = 0; i < r->nfailed; i++) {
        fprintf(f, "%s", i ? ", " : "");
        hs__json_str(f, r->failed[i]);
    }
    fprintf(f, "]},\n");
}

/* A latency in ms, or null when nothing was measured. */
static void hs__json_ms(FILE *f, const char *name, bool have, double ms)
{
    if (have)
        fprintf(f, ", \"%s\": %.3f", name, ms);
    else
        fprintf(f, ", \"%s\": null", name);
}

static void hs__json_timeline(struct hs_report *r, FILE *f)
{
    fprintf(f, "  \"timeline\": [");
    for (size_t i = 0; i < r->nsec; i++) {
        const struct hs_second *s = &r->timeline[i];
        /* The last, partial sample: its time to the millisecond. */
        if (s->partial)
            fprintf(f,
                    "%s\n    {\"t\": %.3f, \"partial\": true, "
                    "\"span_s\": %.3f",
                    i ? "," : "", s->end_ms / 1000.0, s->span_ms / 1000.0);
        else
            fprintf(f, "%s\n    {\"t\": %u", i ? "," : "", s->t);
        fprintf(f,
                ", \"connected\": %" PRIu64 ", \"connecting\": %" PRIu64
                ", \"sent\": %" PRIu64 ", \"acked\": %" PRIu64
                ", \"connects\": %" PRIu64 ", \"reconnects\": %" PRIu64
                ", \"errors\": %" PRIu64,
                s->connected, s->connecting, s->sent, s->acked, s->connects,
                s->reconnects, s->errors);
        hs__json_ms(f, "puback_p50_ms", s->have_lat, s->p50_us / 1000.0);
        hs__json_ms(f, "puback_p99_ms", s->have_lat, s->p99_us / 1000.0);
        hs__json_ms(f, "puback_p999_ms", s->have_lat, s->p999_us / 1000.0);
        fprintf(f, ", \"errors_by_kind\": {");
        const char *sep = "";
        for (int k = 0; k < HS_ERR_N; k++) {
            if (s->errors_by_kind[k] == 0)
                continue;
            fprintf(f, "%s\"%s\": %" PRIu64, sep, hs_err_names[k],
                    s->errors_by_kind[k]);
            sep = ", ";
        }
        fprintf(f, "}}");
    }
    fprintf(f, "\n  ]\n");
}
