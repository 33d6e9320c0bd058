/*
 * hubsim: the device fleet simulator and load tester. Reads the settings,
 * resolves where to connect, starts one worker (event loop) per core with
 * a share of the devices, prints the live line each second, moves the run
 * from RUN to DRAIN to STOP on --duration, the drain timeout or signals,
 * then reports and sets the exit status from the thresholds.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hg_loop.h"
#include "hg_net.h"

#include "hs_device.h"
#include "hs_log.h"
#include "hs_metrics.h"
#include "hs_opts.h"
#include "hs_report.h"
#include "hs_tls.h"
#include "hs_worker.h"

#define HS_EXIT_USAGE 2
#define HS_EXIT_START 3
#define HS_WAKE_MS    50 /* how often the main thread looks around */

extern char **environ;

static int hs__print_tokens(const struct hs_config *cfg);
static int hs__run(const struct hs_config *cfg);
static int hs__target(const struct hs_config *cfg, struct hs_run *run);
static int hs__load_certs(const struct hs_config *cfg, struct hs_run *run);
static void hs__free_certs(const struct hs_config *cfg, struct hs_run *run);
static void hs__raise_nofile(const struct hs_config *cfg);
static int hs__start_workers(struct hs_run *run, struct hs_worker *workers,
                             unsigned n, unsigned *ready,
                             struct hs_metrics **metrics);
static void hs__supervise(struct hs_run *run, struct hs_worker *workers,
                          unsigned n, struct hs_report *report, uint64_t t0);
static void hs__signal(struct hs_run *run, int sig, int count,
                       uint64_t *drain_deadline);
static void hs__set_phase(struct hs_run *run, enum hs_phase phase,
                          uint64_t *drain_deadline);
static bool hs__all_done(struct hs_worker *workers, unsigned n);
static void hs__linger(const struct hs_config *cfg);

int main(int argc, char **argv)
{
    struct hs_config cfg;
    signal(SIGPIPE, SIG_IGN);
    switch (hs_opts_parse(&cfg, argc, argv, environ)) {
    case HS_OPTS_EXIT:
        return 0;
    case HS_OPTS_ERROR:
        return HS_EXIT_USAGE;
    case HS_OPTS_RUN:
        break;
    }
    int status = cfg.print_token ? hs__print_tokens(&cfg) : hs__run(&cfg);
    hs_config_free(&cfg);
    return status;
}

/* --print-token: each device's password, one per line, and nothing else. */
static int hs__print_tokens(const struct hs_config *cfg)
{
    char buf[4096];
    uint64_t now = (uint64_t)time(NULL);
    for (uint32_t i = 0; i < cfg->ndevices; i++) {
        const char *p =
            hs_device_password(cfg, cfg->device_ids[i], now, buf, sizeof(buf));
        if (p == NULL) {
            fprintf(stderr, "hubsim: --print-token: no key or token given\n");
            return HS_EXIT_USAGE;
        }
        printf("%s\n", p);
    }
    return 0;
}

static int hs__run(const struct hs_config *cfg)
{
    struct hs_run run = {.cfg = cfg};
    char err[256], target[HG_ADDRSTRLEN];
    int status = HS_EXIT_START;
    hs__raise_nofile(cfg);
    if (hs_report_check_paths(cfg) < 0 || hs__target(cfg, &run) < 0)
        return HS_EXIT_START;
    hg_net_format((const struct sockaddr *)&run.addr, target, sizeof(target));
    run.tls = hs_tls_ctx_new(cfg->cafile, err, sizeof(err));
    if (run.tls == NULL) {
        hs_log_error("%s", err);
        return HS_EXIT_START;
    }
    if (hs__load_certs(cfg, &run) < 0) {
        SSL_CTX_free(run.tls);
        return HS_EXIT_START;
    }
    if (gethostname(run.machine_name, sizeof(run.machine_name) - 1) < 0)
        snprintf(run.machine_name, sizeof(run.machine_name), "hubsim");
    unsigned n = cfg->threads, ready = 0;
    struct hs_worker *workers = calloc(n, sizeof(*workers));
    struct hs_stats **stats = calloc(n, sizeof(*stats));
    struct hs_report *report = NULL;
    struct hs_metrics *metrics = NULL;
    if (workers == NULL || stats == NULL)
        goto free_workers;
    for (unsigned i = 0; i < n; i++)
        stats[i] = &workers[i].stats;
    uint64_t t0 = hg_now_ms();
    report = hs_report_new(cfg, stats, n, t0, target);
    if (report == NULL ||
        hs__start_workers(&run, workers, n, &ready, &metrics) < 0)
        goto free_workers;
    hs_log_info("%u devices, %s to %s at %s, %u threads", cfg->ndevices,
                hs_protocol_name(cfg->protocol), cfg->hub, target, n);
    hs__supervise(&run, workers, n, report, t0);
    for (unsigned i = 0; i < n; i++)
        pthread_join(workers[i].thread, NULL);
    status = hs_report_finish(report, hg_now_ms());
    if (metrics != NULL)
        hs__linger(cfg);
free_workers:
    hs_metrics_stop(metrics);
    for (unsigned i = 0; i < ready; i++)
        hs_worker_deinit(&workers[i]);
    hs_report_free(report);
    free(stats);
    free(workers);
    hs__free_certs(cfg, &run);
    SSL_CTX_free(run.tls);
    return status;
}

/*
 * X.509 devices: --cert/--key goes into the shared context once;
 * --cert-dir loads DIR/{id}.pem and DIR/{id}.key for every device, each
 * parsed once and kept for its reconnects. Returns 0, or -1 after logging.
 */
static int hs__load_certs(const struct hs_config *cfg, struct hs_run *run)
{
    char err[512], cert[PATH_MAX], key[PATH_MAX];
    if (cfg->cert != NULL) {
        struct hs_tls_id id;
        int rc =
            hs_tls_id_load(&id, cfg->cert, cfg->cert_key, err, sizeof(err));
        if (rc == 0)
            rc = hs_tls_ctx_use_id(run->tls, &id, err, sizeof(err));
        hs_tls_id_free(&id); /* the context holds its own references */
        if (rc < 0)
            hs_log_error("--cert: %s", err);
        return rc;
    }
    if (cfg->cert_dir == NULL)
        return 0;
    run->ids = calloc(cfg->ndevices, sizeof(*run->ids));
    if (run->ids == NULL) {
        hs_log_error("no memory for %u certificates", cfg->ndevices);
        return -1;
    }
    for (uint32_t i = 0; i < cfg->ndevices; i++) {
        snprintf(cert, sizeof(cert), "%s/%s.pem", cfg->cert_dir,
                 cfg->device_ids[i]);
        snprintf(key, sizeof(key), "%s/%s.key", cfg->cert_dir,
                 cfg->device_ids[i]);
        if (hs_tls_id_load(&run->ids[i], cert, key, err, sizeof(err)) < 0) {
            hs_log_error("--cert-dir: device %s: %s", cfg->device_ids[i], err);
            hs__free_certs(cfg, run);
            return -1;
        }
    }
    return 0;
}

static void hs__free_certs(const struct hs_config *cfg, struct hs_run *run)
{
    for (uint32_t i = 0; run->ids != NULL && i < cfg->ndevices; i++)
        hs_tls_id_free(&run->ids[i]);
    free(run->ids);
    run->ids = NULL;
}

/*
 * Initialises every worker, starts --metrics-listen over their stats into
 * *metrics, then starts the threads with SIGINT and SIGTERM blocked (they
 * inherit the mask; only the main thread takes them). *ready counts the
 * workers initialised, to deinit. Returns 0, or -1 after logging; threads
 * already started are stopped and joined.
 */
static int hs__start_workers(struct hs_run *run, struct hs_worker *workers,
                             unsigned n, unsigned *ready,
                             struct hs_metrics **metrics)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (unsigned i = 0; i < n; i++) {
        int rc = hs_worker_init(&workers[i], run, i, n);
        *ready = i + 1;
        if (rc < 0) {
            hs_log_error("cannot set up worker %u: %s", i, strerror(-rc));
            return -1;
        }
    }
    if (run->cfg->have_metrics_listen) {
        struct hs_stats *stats[HS_MAX_THREADS];
        const char *why = NULL;
        for (unsigned i = 0; i < n; i++)
            stats[i] = &workers[i].stats;
        *metrics = hs_metrics_start(run->cfg, stats, n, &why);
        if (*metrics == NULL) {
            hs_log_error("--metrics-listen: %s", why);
            return -1;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        int rc = hs_worker_start(&workers[i]);
        if (rc == 0)
            continue;
        hs_log_error("cannot start worker %u: %s", i, strerror(rc));
        atomic_store(&run->phase, HS_PHASE_STOP);
        for (unsigned k = 0; k < i; k++)
            pthread_join(workers[k].thread, NULL);
        return -1;
    }
    return 0;
}

/* Where devices connect: --connect-to, or the hub's name resolved once. */
static int hs__target(const struct hs_config *cfg, struct hs_run *run)
{
    if (cfg->have_connect_to) {
        run->addr = cfg->connect_to;
        run->addr_len = cfg->connect_to_len;
        return 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->port);
    int rc = getaddrinfo(cfg->hub, port, &hints, &res);
    if (rc != 0) {
        hs_log_error("cannot resolve %s: %s (or give --connect-to IP:PORT)",
                     cfg->hub, gai_strerror(rc));
        return -1;
    }
    memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
    run->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* One descriptor per device: take the hard limit, warn when short. */
static void hs__raise_nofile(const struct hs_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && cfg->ndevices + 64 > rl.rlim_cur)
        hs_log_warn("%u devices but only %llu open files allowed: some "
                    "connections will fail (ulimit -n)",
                    cfg->ndevices, (unsigned long long)rl.rlim_cur);
}

/*
 * Until every worker is done: the live line each second, the end of
 * --duration, the drain timeout, and signals (the first drains, the
 * second stops at once, the third exits).
 */
static void hs__supervise(struct hs_run *run, struct hs_worker *workers,
                          unsigned n, struct hs_report *report, uint64_t t0)
{
    const struct hs_config *cfg = run->cfg;
    uint64_t next = t0 + 1000, drain_deadline = 0;
    int signals = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    while (!hs__all_done(workers, n)) {
        uint64_t now = hg_now_ms();
        int phase = atomic_load(&run->phase);
        if (phase == HS_PHASE_RUN && cfg->duration_ms &&
            now >= t0 + cfg->duration_ms)
            hs__set_phase(run, HS_PHASE_DRAIN, &drain_deadline);
        if (phase == HS_PHASE_DRAIN && now >= drain_deadline) {
            hs_log_warn("drain timeout: closing the connections left");
            hs__set_phase(run, HS_PHASE_STOP, &drain_deadline);
        }
        if (now >= next) {
            hs_report_tick(report, now);
            next = next + 1000 > now ? next + 1000 : now + 1000;
        }
        uint64_t wait = next - now < HS_WAKE_MS ? next - now : HS_WAKE_MS;
        struct timespec ts = {0, (long)wait * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig > 0)
            hs__signal(run, sig, ++signals, &drain_deadline);
    }
}

static void hs__signal(struct hs_run *run, int sig, int count,
                       uint64_t *drain_deadline)
{
    if (count >= 3) {
        hs_log_error("signal %d again: exiting now", sig);
        _exit(128 + sig);
    }
    if (count == 1) {
        hs_log_info("signal %d: no new messages; waiting up to %llu ms for "
                    "the last PUBACKs (again to stop now)",
                    sig, (unsigned long long)run->cfg->drain_timeout_ms);
        hs__set_phase(run, HS_PHASE_DRAIN, drain_deadline);
        return;
    }
    hs_log_info("signal %d: closing every connection now", sig);
    hs__set_phase(run, HS_PHASE_STOP, drain_deadline);
}

static void hs__set_phase(struct hs_run *run, enum hs_phase phase,
                          uint64_t *drain_deadline)
{
    if ((int)phase <= atomic_load(&run->phase))
        return;
    if (phase == HS_PHASE_DRAIN)
        *drain_deadline = hg_now_ms() + run->cfg->drain_timeout_ms;
    atomic_store(&run->phase, phase);
}

static bool hs__all_done(struct hs_worker *workers, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!atomic_load(&workers[i].done))
            return false;
    return true;
}

/*
 * --metrics-linger: the run is over and reported; keep /metrics up with
 * the final figures for a last scrape, until the time is up or a signal
 * comes (still blocked in this thread, as during the run).
 */
static void hs__linger(const struct hs_config *cfg)
{
    if (cfg->metrics_linger_ms == 0)
        return;
    hs_log_info("serving the final metrics for up to %llu ms (a signal "
                "ends it)",
                (unsigned long long)cfg->metrics_linger_ms);
    uint64_t end = hg_now_ms() + cfg->metrics_linger_ms;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (uint64_t now = hg_now_ms(); now < end; now = hg_now_ms()) {
        uint64_t wait = end - now < 500 ? end - now : 500;
        struct timespec ts = {0, (long)wait * 1000000};
        if (sigtimedwait(&set, NULL, &ts) > 0)
            return;
    }
}
