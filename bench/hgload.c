/*
 * hgload: the benchmark's load generator. Every connection starts with a
 * TLS ClientHello naming --sni, so a proxy routes it as it would a device;
 * the backend (hgecho) echoes it, which also proves the route worked.
 *
 *   idle   opens --conns tunnels, each sends the hello and one message and
 *          waits for their echo; prints a "ready" line, then holds them
 *          until stdin closes or --hold seconds pass
 *   msgs   --conns tunnels; a paced phase at --rate messages a second
 *          (latency from each send to its whole echo), then a saturation
 *          phase with --depth messages in flight on every tunnel
 *   bulk   --conns streams read what a source backend sends, checking
 *          every byte against its pattern; bytes/s
 *   storm  new connections at --rate a second for --duration seconds, each
 *          hello, echo, then the backend (hgecho --mode hello) closes and
 *          so does this end; at most --max-conns in all
 *   count  --conns tunnels each send --count messages one at a time, then
 *          close: a fixed amount of work for instruction counts
 *
 * Results are one JSON object on stdout; latencies go into hg_hist
 * histograms (nanoseconds in, microseconds out). Each of --threads threads runs
 * its own hg_loop over a share of the connections. Everything is bounded: the
 * run ends by itself after --deadline seconds whatever happens, and only
 * loopback destinations are accepted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hg_hist.h"
#include "hg_loop.h"

#include "hb_hello.h"
#include "hb_util.h"

#define HB_MAX_THREADS 64
#define HB_RING        16 /* send stamps kept per connection */
#define HB_RBUF        (256 * 1024)
#define HB_GRACE_NS    1000000000ull /* for the last echoes after a phase */
#define HB_NS          1000000000.0

enum hb_workload { HB_W_IDLE, HB_W_MSGS, HB_W_BULK, HB_W_STORM, HB_W_COUNT };

enum hb_err {
    HB_ERR_CONNECT, /* connect(2) failed at once (ports, fds) */
    HB_ERR_REFUSED,
    HB_ERR_RESET,
    HB_ERR_CLOSED, /* EOF before the echo was complete */
    HB_ERR_TIMEOUT,
    HB_ERR_CORRUPT, /* the hello, a message or bulk bytes came back wrong */
    HB_ERR_BUSY,    /* storm: every connection slot in use */
    HB_ERR_LINGER,  /* storm: no close from the far end after the echo */
    HB_ERR_N,
};

static const char *const hb_err_names[HB_ERR_N] = {
    "connect", "refused", "reset", "closed",
    "timeout", "corrupt", "busy",  "linger"};

enum hb_phase { HB_PH_OPEN, HB_PH_RUN, HB_PH_STOP };

enum hb_cstate {
    HB_C_FREE,
    HB_C_CONNECTING,
    HB_C_HELLO,
    HB_C_READY,
    HB_C_DRAIN /* storm: echo complete, waiting for the far end to close */
};

struct hb_opts {
    struct hb_addr dst;
    int workload; /* enum hb_workload, -1 until given */
    const char *sni;
    unsigned conns, threads, size, depth, count;
    unsigned open_inflight, max_conns, src_ips, timeout_ms;
    double rate, warmup_s, duration_s, sat_duration_s, hold_s, deadline_s;
};

/* What one thread measured; merged into the report at the end. */
struct hb_stats {
    struct hg_hist lat;     /* paced messages, or storm connections */
    struct hg_hist sat_lat; /* saturation phase */
    uint64_t paced_sent, paced_done, sat_done, msgs_done;
    uint64_t behind_max_ns; /* how far the pacer fell behind */
    uint64_t bytes;         /* bulk, inside the window */
    uint64_t started, ok, due, established, open_failed;
    uint64_t last_done_ns;
    uint64_t err[HB_ERR_N];
};

struct hb_thread;

struct hb_conn {
    struct hg_io io; /* fd -1 while free */
    struct hg_timer timer;
    struct hb_thread *t;
    uint64_t t_start;
    uint64_t stamp[HB_RING];
    uint32_t hello_tx, hello_rx;
    uint32_t queued, tx_off, rx_off, done;
    uint8_t head, inflight; /* ring of stamps of unanswered messages */
    uint8_t state;
    bool wr_ready;
};

struct hb_thread {
    struct hg_loop loop;
    struct hg_timer tick;
    pthread_t tid;
    unsigned id;
    struct hb_conn *conns;
    unsigned nconns, *free_slots, nfree;
    unsigned next_open, pending; /* opened so far; not yet established */
    unsigned live, rr;
    double rate; /* this thread's share */
    uint64_t t0, sat_start, end;
    bool running, saturating, finished, reported;
    uint8_t *rbuf;
    struct hb_stats st;
};

/* Shared between the main thread and the workers. */
struct hb_ctl {
    _Atomic int phase;
    _Atomic uint64_t t0;
    _Atomic unsigned opened; /* threads done opening */
    uint64_t deadline;
};

static struct hb_opts hb_o;
static unsigned hb_nofile; /* the open-file limit, once raised */
static struct hb_ctl hb_ctl;
static uint8_t hb_hello[HB_HELLO_MAX];
static uint32_t hb_hello_len;
static uint8_t *hb_msg;

static bool hb__parse(int argc, char **argv, struct hb_opts *o);
static bool hb__parse_one(struct hb_opts *o, const char *k, const char *v);
static bool hb__check(struct hb_opts *o);
static void hb__usage(void);
static int hb__run(void);
static void hb__wait_opened(void);
static void hb__hold(struct hb_thread *ts);
static void hb__marks(uint64_t t0);
static void hb__mark_at(uint64_t when, const char *name);
static void hb__report(struct hb_thread *ts, double wall_s);
static void hb__report_msgs(const struct hb_stats *st);
static void hb__report_storm(const struct hb_stats *st);
static void hb__merge(struct hb_stats *dst, const struct hb_stats *src);
static void hb__hist_json(const struct hg_hist *h);
static void *hb__thread_main(void *arg);
static bool hb__thread_init(struct hb_thread *t);
static void hb__thread_deinit(struct hb_thread *t);
static void hb__tick_cb(struct hg_loop *loop, struct hg_timer *timer);
static void hb__tick_run(struct hb_thread *t, uint64_t now);
static void hb__open_some(struct hb_thread *t);
static void hb__opened_check(struct hb_thread *t);
static void hb__pace_msgs(struct hb_thread *t, uint64_t now);
static void hb__pace_storm(struct hb_thread *t, uint64_t now);
static void hb__saturate(struct hb_thread *t);
static void hb__msgs_phase(struct hb_thread *t, uint64_t now);
static bool hb__idle_all(struct hb_thread *t);
static struct hb_conn *hb__slot_get(struct hb_thread *t);
static void hb__conn_start(struct hb_thread *t, struct hb_conn *c);
static void hb__conn_cb(struct hg_loop *loop, struct hg_io *io,
                        uint32_t events);
static void hb__conn_timer_cb(struct hg_loop *loop, struct hg_timer *timer);
static void hb__connected(struct hb_conn *c);
static void hb__flush(struct hb_conn *c);
static bool hb__write(struct hb_conn *c, const uint8_t *p, uint32_t len,
                      uint32_t *off);
static void hb__read(struct hb_conn *c);
static void hb__consume(struct hb_conn *c, const uint8_t *p, size_t n);
static size_t hb__consume_hello(struct hb_conn *c, const uint8_t *p, size_t n);
static bool hb__pattern_check(struct hb_conn *c, const uint8_t *p, size_t n);
static void hb__established(struct hb_conn *c);
static void hb__msg_send(struct hb_conn *c, uint64_t now);
static void hb__msg_done(struct hb_conn *c, uint64_t now);
static void hb__fail(struct hb_conn *c, enum hb_err e);
static void hb__close(struct hb_conn *c);

int main(int argc, char **argv)
{
    if (!hb__parse(argc, argv, &hb_o) || !hb__check(&hb_o)) {
        hb__usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    hb_hello_len = (uint32_t)hb_hello_build(hb_hello, hb_o.sni);
    hb_pattern_init();
    hb_msg = malloc(hb_o.size);
    if (hb_hello_len == 0 || hb_msg == NULL) {
        fprintf(stderr, "hgload: bad --sni or out of memory\n");
        return 2;
    }
    for (unsigned i = 0; i < hb_o.size; i++) /* no two bytes alike in 251 */
        hb_msg[i] = hb_pattern[i % HB_PATTERN_PERIOD];
    int rc = hb__run();
    free(hb_msg);
    return rc;
}

static void hb__usage(void)
{
    fprintf(stderr,
            "usage: hgload --connect IP:PORT --workload "
            "idle|msgs|bulk|storm|count\n"
            "  [--conns N] [--threads N] [--size BYTES] [--rate R]\n"
            "  [--warmup S] [--duration S] [--sat-duration S] [--depth N]\n"
            "  [--count N] [--hold S] [--max-conns N] [--src-ips N]\n"
            "  [--open-inflight N] [--timeout-ms MS] [--sni NAME]\n"
            "  [--deadline S]\n"
            "Connects to loopback addresses only; see the head of hgload.c.\n");
}

static bool hb__parse(int argc, char **argv, struct hb_opts *o)
{
    *o = (struct hb_opts){.sni = "bench.hub.test",
                          .conns = 100,
                          .threads = 1,
                          .size = 200,
                          .depth = 1,
                          .count = 100,
                          .open_inflight = 256,
                          .max_conns = 100000,
                          .src_ips = 1,
                          .timeout_ms = 3000,
                          .warmup_s = 1,
                          .duration_s = 3,
                          .hold_s = 60,
                          .deadline_s = 120,
                          .workload = -1};
    bool have_dst = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--connect") == 0) {
            have_dst = hb_addr_parse(argv[i + 1], &o->dst);
            if (!have_dst)
                return false;
        } else if (!hb__parse_one(o, argv[i], argv[i + 1])) {
            fprintf(stderr, "hgload: bad option %s %s\n", argv[i], argv[i + 1]);
            return false;
        }
    }
    return have_dst && argc % 2 == 1 && o->workload >= 0;
}

static bool hb__parse_one(struct hb_opts *o, const char *k, const char *v)
{
    static const char *const names[] = {"idle", "msgs", "bulk", "storm",
                                        "count"};
    if (strcmp(k, "--workload") == 0) {
        for (int i = 0; i < 5; i++)
            if (strcmp(v, names[i]) == 0)
                o->workload = i;
        return o->workload >= 0;
    }
    if (strcmp(k, "--sni") == 0)
        return (o->sni = v) != NULL;
    struct {
        const char *name;
        unsigned *u;
        double *d;
        unsigned min, max;
    } const table[] = {
        {"--conns", &o->conns, NULL, 1, 1000000},
        {"--threads", &o->threads, NULL, 1, HB_MAX_THREADS},
        {"--size", &o->size, NULL, 1, 1 << 20},
        {"--depth", &o->depth, NULL, 1, HB_RING},
        {"--count", &o->count, NULL, 1, 100000000},
        {"--open-inflight", &o->open_inflight, NULL, 1, 100000},
        {"--max-conns", &o->max_conns, NULL, 1, 100000000},
        {"--src-ips", &o->src_ips, NULL, 1, 250},
        {"--timeout-ms", &o->timeout_ms, NULL, 1, 600000},
        {"--rate", NULL, &o->rate, 0, 100000000},
        {"--warmup", NULL, &o->warmup_s, 0, 3600},
        {"--duration", NULL, &o->duration_s, 0, 3600},
        {"--sat-duration", NULL, &o->sat_duration_s, 0, 3600},
        {"--hold", NULL, &o->hold_s, 0, 86400},
        {"--deadline", NULL, &o->deadline_s, 0.1, 86400},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(k, table[i].name) != 0)
            continue;
        if (table[i].u != NULL)
            return hb_parse_uint(v, table[i].min, table[i].max, table[i].u);
        return hb_parse_double(v, table[i].min, table[i].max, table[i].d);
    }
    return false;
}

/* Refuses what the machine or the rules cannot take. */
static bool hb__check(struct hb_opts *o)
{
    if (!hb_addr_is_loopback(&o->dst)) {
        fprintf(stderr, "hgload: only loopback destinations are allowed\n");
        return false;
    }
    if (o->src_ips > 1 && o->dst.ss.ss_family != AF_INET)
        o->src_ips = 1;
    hb_nofile = hb_raise_nofile();
    unsigned need = o->workload == HB_W_STORM ? 0 : o->conns;
    if (need + 64 + 2 * o->threads > hb_nofile) {
        fprintf(stderr,
                "hgload: %u connections need more than the %u open "
                "files allowed\n",
                need, hb_nofile);
        return false;
    }
    if (o->workload == HB_W_STORM && o->rate <= 0) {
        fprintf(stderr, "hgload: storm needs --rate\n");
        return false;
    }
    if (o->threads > o->conns && o->workload != HB_W_STORM)
        o->threads = o->conns;
    return true;
}

/* Starts the threads, walks the phases, joins, reports. Returns status. */
static int hb__run(void)
{
    static struct hb_thread ts[HB_MAX_THREADS];
    uint64_t start = hb_now_ns();
    hb_ctl.deadline = start + (uint64_t)(hb_o.deadline_s * HB_NS);
    atomic_store(&hb_ctl.phase, HB_PH_OPEN);
    unsigned n = 0;
    for (; n < hb_o.threads; n++) {
        ts[n].id = n;
        if (pthread_create(&ts[n].tid, NULL, hb__thread_main, &ts[n]) != 0)
            break;
    }
    if (n < hb_o.threads) {
        atomic_store(&hb_ctl.phase, HB_PH_STOP);
        hb_o.threads = n;
    } else if (hb_o.workload == HB_W_IDLE) {
        hb__wait_opened();
        hb__hold(ts);
    } else {
        if (hb_o.workload != HB_W_STORM && hb_o.workload != HB_W_COUNT)
            hb__wait_opened();
        uint64_t t0 = hb_now_ns() + 2000000;
        atomic_store(&hb_ctl.t0, t0);
        atomic_store(&hb_ctl.phase, HB_PH_RUN);
        if (hb_o.workload == HB_W_MSGS)
            hb__marks(t0);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(ts[i].tid, NULL);
    hb__report(ts, (double)(hb_now_ns() - start) / HB_NS);
    return n == hb_o.threads ? 0 : 1;
}

/* Waits until every thread has opened its connections, or the deadline. */
static void hb__wait_opened(void)
{
    while (atomic_load(&hb_ctl.opened) < hb_o.threads &&
           hb_now_ns() < hb_ctl.deadline)
        usleep(2000);
}

/*
 * Idle: says the tunnels are open, then holds them until stdin reaches EOF
 * (or has a line), --hold passes, or the deadline comes.
 */
static void hb__hold(struct hb_thread *ts)
{
    uint64_t est = 0, failed = 0;
    for (unsigned i = 0; i < hb_o.threads; i++) {
        est += ts[i].st.established;
        failed += ts[i].st.open_failed;
    }
    printf("{\"event\": \"ready\", \"established\": %llu, \"failed\": %llu}\n",
           (unsigned long long)est, (unsigned long long)failed);
    fflush(stdout);
    uint64_t until = hb_now_ns() + (uint64_t)(hb_o.hold_s * HB_NS);
    if (until > hb_ctl.deadline)
        until = hb_ctl.deadline;
    for (uint64_t now = hb_now_ns(); now < until; now = hb_now_ns()) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int ms = (int)((until - now) / 1000000) + 1;
        if (poll(&p, 1, ms > 100 ? 100 : ms) > 0)
            break; /* a line or EOF: either means let go */
    }
    atomic_store(&hb_ctl.phase, HB_PH_STOP);
}

/*
 * msgs: prints a line as each measuring window opens and closes, so that
 * whoever runs this can sample the proxy (its CPU time) at those moments.
 */
static void hb__marks(uint64_t t0)
{
    uint64_t warm = (uint64_t)(hb_o.warmup_s * HB_NS);
    uint64_t at = t0;
    if (hb_o.rate > 0) {
        hb__mark_at(at + warm, "paced");
        at += warm + (uint64_t)(hb_o.duration_s * HB_NS);
        hb__mark_at(at, "paced_end");
    }
    if (hb_o.sat_duration_s > 0) {
        hb__mark_at(at + warm, "saturation");
        at += warm + (uint64_t)(hb_o.sat_duration_s * HB_NS);
        hb__mark_at(at, "saturation_end");
    }
}

static void hb__mark_at(uint64_t when, const char *name)
{
    for (uint64_t now = hb_now_ns(); now < when && now < hb_ctl.deadline;
         now = hb_now_ns()) {
        uint64_t left = when - now;
        usleep(left > 100000000 ? 100000 : (useconds_t)(left / 1000));
    }
    printf("{\"event\": \"mark\", \"name\": \"%s\"}\n", name);
    fflush(stdout);
}

static void hb__report(struct hb_thread *ts, double wall_s)
{
    static struct hb_stats all;
    hg_hist_init(&all.lat);
    hg_hist_init(&all.sat_lat);
    for (unsigned i = 0; i < hb_o.threads; i++)
        hb__merge(&all, &ts[i].st);
    static const char *const names[] = {"idle", "msgs", "bulk", "storm",
                                        "count"};
    printf("{\"workload\": \"%s\", \"conns\": %u, \"threads\": %u, "
           "\"wall_s\": %.3f, \"timed_out\": %s, \"established\": %llu, "
           "\"open_failed\": %llu, \"msgs_done\": %llu, ",
           names[hb_o.workload], hb_o.conns, hb_o.threads, wall_s,
           hb_now_ns() >= hb_ctl.deadline ? "true" : "false",
           (unsigned long long)all.established,
           (unsigned long long)all.open_failed,
           (unsigned long long)all.msgs_done);
    if (hb_o.workload == HB_W_MSGS)
        hb__report_msgs(&all);
    if (hb_o.workload == HB_W_STORM)
        hb__report_storm(&all);
    if (hb_o.workload == HB_W_BULK)
        printf("\"bytes\": %llu, \"bytes_per_s\": %.1f, ",
               (unsigned long long)all.bytes,
               hb_o.duration_s > 0 ? (double)all.bytes / hb_o.duration_s : 0);
    printf("\"errors\": {");
    for (int e = 0; e < HB_ERR_N; e++)
        printf("%s\"%s\": %llu", e ? ", " : "", hb_err_names[e],
               (unsigned long long)all.err[e]);
    printf("}}\n");
    fflush(stdout);
}

static void hb__report_msgs(const struct hb_stats *st)
{
    printf("\"paced\": {\"rate\": %.1f, \"sent\": %llu, \"done\": %llu, "
           "\"behind_max_ms\": %.3f, \"latency\": ",
           hb_o.rate, (unsigned long long)st->paced_sent,
           (unsigned long long)st->paced_done, (double)st->behind_max_ns / 1e6);
    hb__hist_json(&st->lat);
    double d = hb_o.sat_duration_s;
    printf("}, \"saturation\": {\"duration_s\": %.3f, \"done\": %llu, "
           "\"msgs_per_s\": %.1f, \"latency\": ",
           d, (unsigned long long)st->sat_done,
           d > 0 ? (double)st->sat_done / d : 0);
    hb__hist_json(&st->sat_lat);
    printf("}, ");
}

static void hb__report_storm(const struct hb_stats *st)
{
    double t0 = (double)atomic_load(&hb_ctl.t0);
    double span = st->last_done_ns > t0 ? ((double)st->last_done_ns - t0) : 0;
    double achieved = span > 0 ? (double)st->ok / (span / HB_NS) : 0;
    printf("\"rate\": %.1f, \"duration_s\": %.3f, \"due\": %llu, "
           "\"started\": %llu, \"ok\": %llu, \"span_s\": %.3f, "
           "\"achieved_per_s\": %.1f, \"latency\": ",
           hb_o.rate, hb_o.duration_s, (unsigned long long)st->due,
           (unsigned long long)st->started, (unsigned long long)st->ok,
           span / HB_NS, achieved);
    hb__hist_json(&st->lat);
    printf(", ");
}

/*
 * Writes a histogram of nanoseconds as a JSON object in microseconds:
 * count, mean, p50, p90, p99, p99.9, max.
 */
static void hb__hist_json(const struct hg_hist *h)
{
    static const double q[] = {0.50, 0.90, 0.99, 0.999};
    static const char *const name[] = {"p50", "p90", "p99", "p999"};
    printf("{\"count\": %llu, \"mean_us\": %.3f", (unsigned long long)h->count,
           hg_hist_mean(h) / 1e3);
    for (int i = 0; i < 4; i++)
        printf(", \"%s_us\": %.3f", name[i],
               (double)hg_hist_quantile(h, q[i]) / 1e3);
    printf(", \"max_us\": %.3f}", (double)(h->count ? h->max : 0) / 1e3);
}

static void hb__merge(struct hb_stats *dst, const struct hb_stats *src)
{
    hg_hist_merge(&dst->lat, &src->lat);
    hg_hist_merge(&dst->sat_lat, &src->sat_lat);
    dst->paced_sent += src->paced_sent;
    dst->paced_done += src->paced_done;
    dst->sat_done += src->sat_done;
    dst->msgs_done += src->msgs_done;
    dst->bytes += src->bytes;
    dst->started += src->started;
    dst->ok += src->ok;
    dst->due += src->due;
    dst->established += src->established;
    dst->open_failed += src->open_failed;
    if (src->behind_max_ns > dst->behind_max_ns)
        dst->behind_max_ns = src->behind_max_ns;
    if (src->last_done_ns > dst->last_done_ns)
        dst->last_done_ns = src->last_done_ns;
    for (int e = 0; e < HB_ERR_N; e++)
        dst->err[e] += src->err[e];
}

/* ------------------------------------------------------------------------ */
/* A worker thread                                                          */
/* ------------------------------------------------------------------------ */

static void *hb__thread_main(void *arg)
{
    struct hb_thread *t = arg;
    if (!hb__thread_init(t)) {
        atomic_fetch_add(&hb_ctl.opened, 1);
        return NULL;
    }
    hb__open_some(t);
    hg_timer_start(&t->loop, &t->tick, 1);
    while (!t->finished)
        hg_loop_run_once(&t->loop, 5);
    hb__thread_deinit(t);
    return NULL;
}

/* This thread's share of the connections and of the rate. */
static bool hb__thread_init(struct hb_thread *t)
{
    unsigned n = hb_o.threads, share;
    hg_hist_init(&t->st.lat);
    hg_hist_init(&t->st.sat_lat);
    t->rate = hb_o.rate / n;
    if (hb_o.workload == HB_W_STORM) {
        /* Connections in progress at once, within the open-file limit. */
        unsigned cap = hb_nofile > 16384 + 128 ? 16384 : hb_nofile - 128;
        share = cap / n;
    } else {
        share = hb_o.conns / n + (t->id < hb_o.conns % n ? 1 : 0);
    }
    t->nconns = share;
    t->conns = calloc(share, sizeof(*t->conns));
    t->free_slots = calloc(share, sizeof(*t->free_slots));
    t->rbuf = malloc(HB_RBUF);
    if (hg_loop_init(&t->loop) < 0 || !t->conns || !t->free_slots || !t->rbuf)
        return false;
    for (unsigned i = 0; i < share; i++) {
        t->conns[i] = (struct hb_conn){.t = t, .io = {.fd = -1}};
        t->free_slots[t->nfree++] = share - 1 - i;
    }
    t->tick.cb = hb__tick_cb;
    return true;
}

static void hb__thread_deinit(struct hb_thread *t)
{
    for (unsigned i = 0; i < t->nconns; i++)
        if (t->conns[i].io.fd >= 0)
            close(t->conns[i].io.fd);
    hg_loop_deinit(&t->loop);
    free(t->conns);
    free(t->free_slots);
    free(t->rbuf);
}

/* Every millisecond: the phase, the pacers, the deadline. */
static void hb__tick_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hb_thread *t = hg_container_of(timer, struct hb_thread, tick);
    uint64_t now = hb_now_ns();
    int phase = atomic_load(&hb_ctl.phase);
    if (now >= hb_ctl.deadline || phase == HB_PH_STOP) {
        t->finished = true;
        return;
    }
    hb__open_some(t);
    hb__opened_check(t);
    if (phase == HB_PH_RUN && !t->running) {
        t->running = true;
        t->t0 = atomic_load(&hb_ctl.t0);
    }
    if (t->running && now >= t->t0)
        hb__tick_run(t, now);
    hg_timer_start(loop, &t->tick, 1);
}

static void hb__tick_run(struct hb_thread *t, uint64_t now)
{
    double span = hb_o.warmup_s + hb_o.duration_s;
    uint64_t run_end = t->t0 + (uint64_t)(span * HB_NS);
    switch (hb_o.workload) {
    case HB_W_MSGS:
        hb__msgs_phase(t, now);
        break;
    case HB_W_BULK:
        t->finished = now >= run_end;
        break;
    case HB_W_STORM:
        hb__pace_storm(t, now);
        break;
    case HB_W_COUNT:
        t->finished = t->next_open == t->nconns && t->live == 0;
        break;
    case HB_W_IDLE:
        break;
    }
}

/* Starts connections up to the in-progress cap (idle, msgs, bulk, count). */
static void hb__open_some(struct hb_thread *t)
{
    if (hb_o.workload == HB_W_STORM)
        return;
    if (hb_o.workload == HB_W_COUNT && !t->running)
        return;
    while (t->next_open < t->nconns && t->pending < hb_o.open_inflight) {
        struct hb_conn *c = &t->conns[t->next_open++];
        t->pending++;
        hb__conn_start(t, c);
    }
}

/* Tells the main thread once every connection is established or failed. */
static void hb__opened_check(struct hb_thread *t)
{
    if (t->reported || t->next_open < t->nconns || t->pending > 0)
        return;
    if (hb_o.workload == HB_W_IDLE && !hb__idle_all(t))
        return;
    t->reported = true;
    atomic_fetch_add(&hb_ctl.opened, 1);
}

/* Idle: every live tunnel has had its message echoed. */
static bool hb__idle_all(struct hb_thread *t)
{
    for (unsigned i = 0; i < t->nconns; i++)
        if (t->conns[i].io.fd >= 0 && t->conns[i].inflight > 0)
            return false;
    return true;
}

/*
 * msgs: the paced phase, then saturation, then a grace second for the
 * last echoes. Either phase may be empty (--rate 0, --sat-duration 0).
 */
static void hb__msgs_phase(struct hb_thread *t, uint64_t now)
{
    uint64_t paced = hb_o.rate > 0
                         ? (uint64_t)((hb_o.warmup_s + hb_o.duration_s) * HB_NS)
                         : 0;
    uint64_t sat =
        hb_o.sat_duration_s > 0
            ? (uint64_t)((hb_o.warmup_s + hb_o.sat_duration_s) * HB_NS)
            : 0;
    t->sat_start = t->t0 + paced;
    t->end = t->sat_start + sat;
    if (now < t->sat_start) {
        hb__pace_msgs(t, now);
    } else if (now < t->end) {
        if (!t->saturating) {
            t->saturating = true;
            hb__saturate(t);
        }
    } else {
        t->saturating = false;
        unsigned inflight = 0;
        for (unsigned i = 0; i < t->nconns; i++)
            inflight += t->conns[i].io.fd >= 0 ? t->conns[i].inflight : 0;
        t->finished = inflight == 0 || now >= t->end + HB_GRACE_NS;
    }
}

/*
 * Open loop: by now, rate * elapsed messages should have left; sends what
 * is due, round robin over the established tunnels. A tunnel whose ring is
 * full of unanswered messages is skipped (and the skip shows as lag).
 */
static void hb__pace_msgs(struct hb_thread *t, uint64_t now)
{
    double elapsed = (double)(now - t->t0) / HB_NS;
    uint64_t due = (uint64_t)(elapsed * t->rate);
    while (t->st.paced_sent < due) {
        uint64_t want =
            t->t0 + (uint64_t)((double)t->st.paced_sent / t->rate * HB_NS);
        if (now > want && now - want > t->st.behind_max_ns)
            t->st.behind_max_ns = now - want;
        struct hb_conn *c = NULL;
        for (unsigned k = 0; k < t->nconns && c == NULL; k++) {
            struct hb_conn *x = &t->conns[t->rr++ % t->nconns];
            if (x->state == HB_C_READY && x->inflight < HB_RING)
                c = x;
        }
        if (c == NULL)
            return; /* nothing can take it now: the lag grows */
        t->st.paced_sent++;
        hb__msg_send(c, now);
    }
}

/* Fills every established tunnel up to --depth messages in flight. */
static void hb__saturate(struct hb_thread *t)
{
    uint64_t now = hb_now_ns();
    for (unsigned i = 0; i < t->nconns; i++) {
        struct hb_conn *c = &t->conns[i];
        while (c->io.fd >= 0 && c->state == HB_C_READY &&
               c->inflight < hb_o.depth)
            hb__msg_send(c, now);
    }
}

/* storm: starts the connections due by now, within --max-conns. */
static void hb__pace_storm(struct hb_thread *t, uint64_t now)
{
    uint64_t stop = t->t0 + (uint64_t)(hb_o.duration_s * HB_NS);
    uint64_t cap = hb_o.max_conns / hb_o.threads;
    uint64_t at = now < stop ? now : stop;
    uint64_t due = (uint64_t)((double)(at - t->t0) / HB_NS * t->rate);
    if (due > cap)
        due = cap;
    while (t->st.due < due) {
        t->st.due++;
        struct hb_conn *c = hb__slot_get(t);
        if (c == NULL) {
            t->st.err[HB_ERR_BUSY]++;
            continue;
        }
        t->st.started++;
        hb__conn_start(t, c);
    }
    bool over = now >= stop || t->st.due >= cap;
    t->finished = over && t->live == 0;
    uint64_t grace = (uint64_t)hb_o.timeout_ms * 1000000 + HB_GRACE_NS;
    if (over && now >= stop + grace)
        t->finished = true;
}

static struct hb_conn *hb__slot_get(struct hb_thread *t)
{
    if (t->nfree == 0)
        return NULL;
    return &t->conns[t->free_slots[--t->nfree]];
}

/* ------------------------------------------------------------------------ */
/* A connection                                                             */
/* ------------------------------------------------------------------------ */

static void hb__conn_start(struct hb_thread *t, struct hb_conn *c)
{
    struct hb_addr src, *srcp = NULL;
    *c = (struct hb_conn){.t = t, .io = {.fd = -1, .cb = hb__conn_cb}};
    c->timer.cb = hb__conn_timer_cb;
    c->t_start = hb_now_ns();
    if (hb_o.src_ips > 1) {
        src = (struct hb_addr){.len = sizeof(struct sockaddr_in)};
        struct sockaddr_in *in = (struct sockaddr_in *)&src.ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(0x7f000001 + t->rr++ % hb_o.src_ips);
        srcp = &src;
    }
    int fd = hb_connect(&hb_o.dst, srcp);
    if (fd < 0) {
        hb__fail(c, HB_ERR_CONNECT);
        return;
    }
    c->io.fd = fd;
    c->state = HB_C_CONNECTING;
    t->live++;
    if (hg_io_add(&t->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) <
        0) {
        hb__fail(c, HB_ERR_CONNECT);
        return;
    }
    if (hb_o.workload == HB_W_STORM)
        hg_timer_start(&t->loop, &c->timer, hb_o.timeout_ms);
}

static void hb__conn_cb(struct hg_loop *loop, struct hg_io *io, uint32_t events)
{
    struct hb_conn *c = hg_container_of(io, struct hb_conn, io);
    if (c->state == HB_C_CONNECTING) {
        int err = hb_socket_error(io->fd);
        if (err != 0) {
            hb__fail(c, err == -ECONNREFUSED ? HB_ERR_REFUSED : HB_ERR_RESET);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        hb__connected(c);
    } else if (events & EPOLLOUT) {
        c->wr_ready = true;
        hb__flush(c);
    }
    if (c->io.fd >= 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR)))
        hb__read(c);
}

static void hb__conn_timer_cb(struct hg_loop *loop, struct hg_timer *timer)
{
    struct hb_conn *c = hg_container_of(timer, struct hb_conn, timer);
    hb__fail(c, c->state == HB_C_DRAIN ? HB_ERR_LINGER : HB_ERR_TIMEOUT);
}

/* Sends the hello (and, for idle, the one message right behind it). */
static void hb__connected(struct hb_conn *c)
{
    c->state = HB_C_HELLO;
    c->wr_ready = true;
    if (hb_o.workload == HB_W_BULK) {
        /* The source backend answers the hello with data, not an echo. */
        c->hello_rx = hb_hello_len;
        hb__flush(c);
        if (c->io.fd >= 0)
            hb__established(c);
        return;
    }
    if (hb_o.workload == HB_W_IDLE)
        hb__msg_send(c, hb_now_ns());
    else
        hb__flush(c);
}

/* Writes the hello, then the queued messages, until the socket is full. */
static void hb__flush(struct hb_conn *c)
{
    if (c->io.fd < 0 || !c->wr_ready || c->state == HB_C_CONNECTING)
        return;
    if (!hb__write(c, hb_hello, hb_hello_len, &c->hello_tx))
        return;
    while (c->queued > 0) {
        if (!hb__write(c, hb_msg, hb_o.size, &c->tx_off))
            return;
        c->tx_off = 0;
        c->queued--;
    }
}

/* Writes p[*off..len); true once all of it is out. */
static bool hb__write(struct hb_conn *c, const uint8_t *p, uint32_t len,
                      uint32_t *off)
{
    while (*off < len) {
        ssize_t n = write(c->io.fd, p + *off, len - *off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno == EAGAIN)
                c->wr_ready = false;
            else
                hb__fail(c, HB_ERR_RESET);
            return false;
        }
        *off += (uint32_t)n;
    }
    return true;
}

static void hb__read(struct hb_conn *c)
{
    struct hb_thread *t = c->t;
    while (c->io.fd >= 0) {
        ssize_t n = read(c->io.fd, t->rbuf, HB_RBUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n == 0 && c->state == HB_C_DRAIN) {
            hb__close(c); /* the storm's normal end */
            return;
        }
        if (n <= 0) {
            hb__fail(c, n == 0 ? HB_ERR_CLOSED : HB_ERR_RESET);
            return;
        }
        hb__consume(c, t->rbuf, (size_t)n);
    }
}

/* Accounts for bytes that came back: the hello's echo, then messages. */
static void hb__consume(struct hb_conn *c, const uint8_t *p, size_t n)
{
    size_t used = hb__consume_hello(c, p, n);
    if (c->io.fd < 0 || c->hello_rx < hb_hello_len)
        return;
    n -= used;
    if (hb_o.workload == HB_W_BULK) {
        if (!hb__pattern_check(c, p + used, n)) {
            hb__fail(c, HB_ERR_CORRUPT);
            return;
        }
        uint64_t now = hb_now_ns();
        struct hb_thread *t = c->t;
        uint64_t from = t->t0 + (uint64_t)(hb_o.warmup_s * HB_NS);
        uint64_t to = from + (uint64_t)(hb_o.duration_s * HB_NS);
        if (t->running && now >= from && now < to)
            t->st.bytes += n;
        return;
    }
    /* Every message is hb_msg: the echo must be it, byte for byte. */
    const uint8_t *q = p + used;
    for (size_t left = n, off = c->rx_off; left > 0;) {
        size_t k = hb_o.size - off < left ? hb_o.size - off : left;
        if (memcmp(q, hb_msg + off, k) != 0) {
            hb__fail(c, HB_ERR_CORRUPT);
            return;
        }
        q += k;
        left -= k;
        off = (off + k) % hb_o.size;
    }
    uint64_t now = n > 0 ? hb_now_ns() : 0;
    c->rx_off += (uint32_t)n;
    while (c->rx_off >= hb_o.size && c->io.fd >= 0) {
        c->rx_off -= hb_o.size;
        hb__msg_done(c, now);
    }
}

/* Bulk: the n bytes at p continue the source's pattern where it was. */
static bool hb__pattern_check(struct hb_conn *c, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t k = n < HB_PATTERN_RUN ? n : HB_PATTERN_RUN;
        if (memcmp(p, hb_pattern + c->rx_off, k) != 0)
            return false;
        c->rx_off = (uint32_t)((c->rx_off + k) % HB_PATTERN_PERIOD);
        p += k;
        n -= k;
    }
    return true;
}

/* Checks the hello's echo; returns how many bytes of p it took. */
static size_t hb__consume_hello(struct hb_conn *c, const uint8_t *p, size_t n)
{
    if (c->hello_rx >= hb_hello_len)
        return 0;
    size_t k = hb_hello_len - c->hello_rx;
    if (k > n)
        k = n;
    if (memcmp(p, hb_hello + c->hello_rx, k) != 0) {
        hb__fail(c, HB_ERR_CORRUPT);
        return 0;
    }
    c->hello_rx += (uint32_t)k;
    if (c->hello_rx == hb_hello_len)
        hb__established(c);
    return k;
}

/* The route works: the hello came back whole. */
static void hb__established(struct hb_conn *c)
{
    struct hb_thread *t = c->t;
    if (hb_o.workload == HB_W_STORM) {
        uint64_t now = hb_now_ns();
        hg_hist_record(&t->st.lat, now - c->t_start);
        t->st.ok++;
        t->st.last_done_ns = now;
        c->state = HB_C_DRAIN;
        return;
    }
    c->state = HB_C_READY;
    t->st.established++;
    /* Idle stays pending until its message is back too. */
    if (hb_o.workload != HB_W_IDLE)
        t->pending--;
    if (hb_o.workload == HB_W_COUNT)
        hb__msg_send(c, hb_now_ns());
    else if (t->saturating)
        while (c->io.fd >= 0 && c->inflight < hb_o.depth)
            hb__msg_send(c, hb_now_ns());
}

/* Queues one message stamped now, and writes what the socket takes. */
static void hb__msg_send(struct hb_conn *c, uint64_t now)
{
    if (c->io.fd < 0)
        return;
    c->stamp[(c->head + c->inflight) % HB_RING] = now;
    c->inflight++;
    c->queued++;
    hb__flush(c);
}

/* A whole message came back: latency, counts, and what comes next. */
static void hb__msg_done(struct hb_conn *c, uint64_t now)
{
    struct hb_thread *t = c->t;
    if (c->inflight == 0) {
        hb__fail(c, HB_ERR_CORRUPT); /* more came back than went out */
        return;
    }
    uint64_t sent = c->stamp[c->head];
    c->head = (uint8_t)((c->head + 1) % HB_RING);
    c->inflight--;
    c->done++;
    t->st.msgs_done++;
    if (hb_o.workload == HB_W_MSGS && t->running) {
        uint64_t warm = (uint64_t)(hb_o.warmup_s * HB_NS);
        if (sent >= t->t0 + warm && sent < t->sat_start) {
            t->st.paced_done++;
            hg_hist_record(&t->st.lat, now - sent);
        } else if (sent >= t->sat_start && now >= t->sat_start + warm &&
                   now < t->end) {
            t->st.sat_done++;
            hg_hist_record(&t->st.sat_lat, now - sent);
        }
        if (t->saturating && now < t->end)
            hb__msg_send(c, now);
    } else if (hb_o.workload == HB_W_IDLE && c->inflight == 0) {
        t->pending--;
    } else if (hb_o.workload == HB_W_COUNT) {
        if (c->done < hb_o.count)
            hb__msg_send(c, now);
        else
            hb__close(c);
    }
}

/* Counts the error and closes; an opening connection stops pending. */
static void hb__fail(struct hb_conn *c, enum hb_err e)
{
    struct hb_thread *t = c->t;
    t->st.err[e]++;
    bool opening = c->state != HB_C_READY;
    if (hb_o.workload == HB_W_IDLE && c->state == HB_C_READY)
        opening = c->inflight > 0;
    if (opening && hb_o.workload != HB_W_STORM) {
        t->pending--;
        t->st.open_failed++;
    }
    hb__close(c);
}

static void hb__close(struct hb_conn *c)
{
    struct hb_thread *t = c->t;
    if (c->io.fd < 0) {
        if (hb_o.workload == HB_W_STORM)
            t->free_slots[t->nfree++] = (unsigned)(c - t->conns);
        return;
    }
    hg_timer_stop(&t->loop, &c->timer);
    close(c->io.fd); /* also leaves epoll: this fd has no other copy */
    c->io.fd = -1;
    c->state = HB_C_FREE;
    t->live--;
    if (hb_o.workload == HB_W_STORM)
        t->free_slots[t->nfree++] = (unsigned)(c - t->conns);
}
