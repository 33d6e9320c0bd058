/*
 * Tests for hg_resolver against a real dnsmasq that each test starts on a
 * free loopback port. dnsmasq reads no system file (--conf-file=/dev/null,
 * --no-resolv, --no-hosts), answers .test names from a hosts file in a
 * temporary directory with a TTL of 1 s, and never forwards (--local). The
 * resolver is always given that server, so c-ares never reads or queries
 * the system's resolv.conf servers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <urcu/urcu-memb.h>

#include "hg_config.h"
#include "hg_loop.h"
#include "hg_resolver.h"

#define HG_T_TTL_S       1 /* dnsmasq --local-ttl */
#define HG_T_DNS_TRIES   5
#define HG_T_DNS_WAIT_MS 5000
#define HG_T_LOG_LINES   64
#define HG_T_LOG_LEN     256
#define HG_T_MAX_DNS     4

#define HG_T_HOSTS                                                             \
    "127.0.0.11 backend.test\n"                                                \
    "fd00::1 backend6.test\n"                                                  \
    "127.0.0.21 dual.test\n"                                                   \
    "fd00::21 dual.test\n"                                                     \
    "127.0.0.33 multi.test\n"                                                  \
    "127.0.0.31 multi.test\n"                                                  \
    "127.0.0.32 multi.test\n"

/* One dnsmasq child and the files it reads, in the test's directory. */
struct hg_t_dns {
    pid_t pid;
    uint16_t port;
    char hosts[128];
};

/* A worker-like thread that keeps reading one backend's set. */
struct hg_t_reader {
    struct hg_backend *b;
    pthread_t thread;
    atomic_bool stop;
    atomic_ulong reads;
    atomic_ulong bad;
};

struct hg_t_fix {
    char dir[64];
    struct hg_t_dns dns;
    struct hg_t_dns dns2; /* a second server, for reconfiguration */
    struct hg_loop loop;
    bool loop_ready;
    struct hg_config cfg;
    char server[32];
    char *servers[1];
    struct hg_resolver *r;
    struct hg_t_reader *reader; /* running; stopped by the teardown */
    char log[HG_T_LOG_LINES][HG_T_LOG_LEN];
    size_t nlog;
};

static pid_t hg_t_children[HG_T_MAX_DNS];

static void hg_t_kill_children(void);
static void hg_t_write_file(const char *path, const char *text);
static uint16_t hg_t_free_port(void);
static bool hg_t_dns_ready(pid_t pid, uint16_t port);
static pid_t hg_t_dns_spawn(const char *dir, const struct hg_t_dns *dns);
static void hg_t_dns_start(struct hg_t_fix *f, struct hg_t_dns *dns,
                           const char *name, const char *hosts);
static void hg_t_dns_stop(struct hg_t_dns *dns);
static void hg_t_dns_update(struct hg_t_dns *dns, const char *hosts);
static void hg_t_log(void *arg, enum hg_log_level level, const char *host,
                     const char *what);
static size_t hg_t_log_count(const struct hg_t_fix *f, const char *host,
                             const char *part);
static size_t hg_t_read(struct hg_backend *b, char out[][INET6_ADDRSTRLEN],
                        size_t max);
static bool hg_t_is(struct hg_backend *b, const char *addr);
static bool hg_t_run_until_addr(struct hg_t_fix *f, struct hg_backend *b,
                                const char *addr, uint64_t timeout_ms);
static bool hg_t_run_until_failures(struct hg_t_fix *f, struct hg_backend *b,
                                    uint64_t failures, uint64_t timeout_ms);
static void hg_t_run_for(struct hg_t_fix *f, uint64_t ms);
static void *hg_t_reader_main(void *arg);
static void hg_t_reader_start(struct hg_t_fix *f, struct hg_backend *b);
static void hg_t_reader_stop(struct hg_t_fix *f, unsigned long *reads,
                             unsigned long *bad);
static void hg_t_collect(struct hg_backend *b, void *arg);
static void test_literal_needs_no_dns(void **state);
static void test_same_host_same_backend(void **state);
static void test_first_answer(void **state);
static void test_ttl_clamped_to_min(void **state);
static void test_aaaa_and_order(void **state);
static void test_nxdomain(void **state);
static void test_change_then_outage(void **state);
static void test_reconfigure_servers(void **state);
static void test_server_forms(void **state);
static void test_foreach(void **state);
static int hg_t_setup(void **state);
static struct hg_t_fix *hg_t_open(void **state);
static int hg_t_teardown(void **state);
static int hg_t_group_setup(void **state);
static int hg_t_group_teardown(void **state);

/* ------------------------------------------------------------------------ */
/* dnsmasq                                                                  */
/* ------------------------------------------------------------------------ */

/* Last resort when a test aborts: no dnsmasq outlives the test binary. */
static void hg_t_kill_children(void)
{
    for (size_t i = 0; i < HG_T_MAX_DNS; i++)
        if (hg_t_children[i] > 0) {
            kill(hg_t_children[i], SIGKILL);
            waitpid(hg_t_children[i], NULL, 0);
            hg_t_children[i] = 0;
        }
}

/* Replaces path atomically with text, readable by dnsmasq's own user. */
static void hg_t_write_file(const char *path, const char *text)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(tmp, 0644), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* Returns a port that was free for both UDP and TCP on 127.0.0.1. */
static uint16_t hg_t_free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    uint16_t port = 0;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (tcp >= 0 && udp >= 0 &&
        bind(tcp, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(tcp, (struct sockaddr *)&sin, &len) == 0 &&
        bind(udp, (struct sockaddr *)&sin, sizeof(sin)) == 0)
        port = ntohs(sin.sin_port);
    close(tcp);
    close(udp);
    return port;
}

/* Waits until dnsmasq accepts TCP on port. Returns false if it exited. */
static bool hg_t_dns_ready(pid_t pid, uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    for (int waited = 0; waited < HG_T_DNS_WAIT_MS; waited += 10) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
        close(fd);
        if (rc == 0)
            return true;
        usleep(10000);
    }
    return false;
}

/* Starts dnsmasq for dns in dir; its output goes to a log file there. */
static pid_t hg_t_dns_spawn(const char *dir, const struct hg_t_dns *dns)
{
    char hosts[160], port[32], pidf[96], log[96];
    snprintf(hosts, sizeof(hosts), "--addn-hosts=%s", dns->hosts);
    snprintf(port, sizeof(port), "--port=%u", dns->port);
    snprintf(pidf, sizeof(pidf), "--pid-file=%s/dnsmasq-%u.pid", dir,
             dns->port);
    snprintf(log, sizeof(log), "%s/dnsmasq.log", dir);

    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    FILE *out = freopen(log, "a", stdout);
    if (out == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
        _exit(126);
    execlp("dnsmasq", "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
           "--no-resolv", "--no-hosts", hosts, "--local-ttl=1",
           "--local=/test/", port, "--listen-address=127.0.0.1",
           "--bind-interfaces", pidf, (char *)NULL);
    _exit(127);
}

/*
 * Starts a dnsmasq serving hosts (file name in f->dir) on a free port,
 * trying a few ports in case another test takes one in between.
 */
static void hg_t_dns_start(struct hg_t_fix *f, struct hg_t_dns *dns,
                           const char *name, const char *hosts)
{
    snprintf(dns->hosts, sizeof(dns->hosts), "%s/%s", f->dir, name);
    hg_t_write_file(dns->hosts, hosts);
    for (int i = 0; i < HG_T_DNS_TRIES; i++) {
        dns->port = hg_t_free_port();
        assert_int_not_equal(dns->port, 0);
        dns->pid = hg_t_dns_spawn(f->dir, dns);
        assert_true(dns->pid > 0);
        for (size_t c = 0; c < HG_T_MAX_DNS; c++)
            if (hg_t_children[c] == 0) {
                hg_t_children[c] = dns->pid;
                break;
            }
        if (hg_t_dns_ready(dns->pid, dns->port))
            return;
        hg_t_dns_stop(dns);
    }
    fail_msg("dnsmasq did not start (see %s/dnsmasq.log)", f->dir);
}

static void hg_t_dns_stop(struct hg_t_dns *dns)
{
    if (dns->pid <= 0)
        return;
    kill(dns->pid, SIGTERM);
    waitpid(dns->pid, NULL, 0);
    for (size_t c = 0; c < HG_T_MAX_DNS; c++)
        if (hg_t_children[c] == dns->pid)
            hg_t_children[c] = 0;
    dns->pid = 0;
}

/* Rewrites the hosts file and has dnsmasq read it again. */
static void hg_t_dns_update(struct hg_t_dns *dns, const char *hosts)
{
    hg_t_write_file(dns->hosts, hosts);
    assert_int_equal(kill(dns->pid, SIGHUP), 0);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static void hg_t_log(void *arg, enum hg_log_level level, const char *host,
                     const char *what)
{
    struct hg_t_fix *f = arg;
    fprintf(stderr, "resolver: %s: %s\n", host, what);
    if (f->nlog < HG_T_LOG_LINES)
        snprintf(f->log[f->nlog++], HG_T_LOG_LEN, "%s: %s", host, what);
}

/* Counts captured log lines for host that contain part. */
static size_t hg_t_log_count(const struct hg_t_fix *f, const char *host,
                             const char *part)
{
    size_t n = 0, hl = strlen(host);
    for (size_t i = 0; i < f->nlog; i++)
        n += strncmp(f->log[i], host, hl) == 0 && f->log[i][hl] == ':' &&
             strstr(f->log[i], part) != NULL;
    return n;
}

/*
 * Reads b's current addresses as text the way a worker does: registered
 * thread, read-side critical section, copy out. Returns how many.
 */
static size_t hg_t_read(struct hg_backend *b, char out[][INET6_ADDRSTRLEN],
                        size_t max)
{
    size_t n = 0;

    urcu_memb_read_lock();
    struct hg_addrset *set = rcu_dereference(b->addrs);
    for (; set != NULL && n < set->n && n < max; n++) {
        const struct sockaddr_storage *ss = &set->addrs[n];
        const void *src =
            ss->ss_family == AF_INET
                ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        inet_ntop(ss->ss_family, src, out[n], INET6_ADDRSTRLEN);
    }
    urcu_memb_read_unlock();
    return n;
}

/* True when b's published set is exactly the one address addr. */
static bool hg_t_is(struct hg_backend *b, const char *addr)
{
    char got[4][INET6_ADDRSTRLEN];
    return hg_t_read(b, got, 4) == 1 && strcmp(got[0], addr) == 0;
}

static bool hg_t_run_until_addr(struct hg_t_fix *f, struct hg_backend *b,
                                const char *addr, uint64_t timeout_ms)
{
    uint64_t deadline = hg_now_ms() + timeout_ms;
    while (!hg_t_is(b, addr) && hg_now_ms() < deadline)
        hg_loop_run_once(&f->loop, 20);
    return hg_t_is(b, addr);
}

static bool hg_t_run_until_failures(struct hg_t_fix *f, struct hg_backend *b,
                                    uint64_t failures, uint64_t timeout_ms)
{
    uint64_t deadline = hg_now_ms() + timeout_ms;
    while (atomic_load(&b->failures) < failures && hg_now_ms() < deadline)
        hg_loop_run_once(&f->loop, 20);
    return atomic_load(&b->failures) >= failures;
}

static void hg_t_run_for(struct hg_t_fix *f, uint64_t ms)
{
    uint64_t deadline = hg_now_ms() + ms;
    while (hg_now_ms() < deadline)
        hg_loop_run_once(&f->loop, 20);
}

/*
 * Reads the set over and over, as a worker picking addresses would, and
 * counts sets that do not look like an answer this test publishes. Under
 * ASan a set freed too early shows up here as a use after free.
 */
static void *hg_t_reader_main(void *arg)
{
    struct hg_t_reader *rd = arg;
    struct timespec nap = {.tv_nsec = 200000};

    urcu_memb_register_thread();
    while (!atomic_load(&rd->stop)) {
        urcu_memb_read_lock();
        struct hg_addrset *set = rcu_dereference(rd->b->addrs);
        if (set != NULL && (set->n != 1 || set->addrs[0].ss_family != AF_INET))
            atomic_fetch_add(&rd->bad, 1);
        urcu_memb_read_unlock();
        atomic_fetch_add(&rd->reads, 1);
        nanosleep(&nap, NULL);
    }
    urcu_memb_unregister_thread();
    return NULL;
}

/* Starts a reader on b; the teardown stops it if the test does not. */
static void hg_t_reader_start(struct hg_t_fix *f, struct hg_backend *b)
{
    struct hg_t_reader *rd = calloc(1, sizeof(*rd));

    assert_non_null(rd);
    rd->b = b;
    if (pthread_create(&rd->thread, NULL, hg_t_reader_main, rd) != 0) {
        free(rd);
        fail_msg("pthread_create failed");
    }
    f->reader = rd;
}

/* Stops the reader and reports how often it read and saw a bad set. */
static void hg_t_reader_stop(struct hg_t_fix *f, unsigned long *reads,
                             unsigned long *bad)
{
    struct hg_t_reader *rd = f->reader;

    if (rd == NULL)
        return;
    atomic_store(&rd->stop, true);
    pthread_join(rd->thread, NULL);
    if (reads != NULL)
        *reads = atomic_load(&rd->reads);
    if (bad != NULL)
        *bad = atomic_load(&rd->bad);
    free(rd);
    f->reader = NULL;
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */
/* ------------------------------------------------------------------------ */

static int hg_t_group_setup(void **state)
{
    atexit(hg_t_kill_children);
    urcu_memb_register_thread();
    return 0;
}

static int hg_t_group_teardown(void **state)
{
    urcu_memb_unregister_thread();
    return 0;
}

/*
 * Only allocates the fixture: cmocka skips the teardown when a setup fails,
 * so everything that can fail happens in hg_t_open(), inside the test.
 */
static int hg_t_setup(void **state)
{
    *state = calloc(1, sizeof(struct hg_t_fix));
    return *state != NULL ? 0 : -1;
}

/* Temp dir, dnsmasq with HG_T_HOSTS, loop and a resolver that uses it. */
static struct hg_t_fix *hg_t_open(void **state)
{
    struct hg_t_fix *f = *state;
    const char *reason = NULL;

    snprintf(f->dir, sizeof(f->dir), "/tmp/hg-resolver-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        f->dir[0] = '\0';
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    assert_int_equal(chmod(f->dir, 0755), 0); /* dnsmasq runs as nobody */
    hg_t_dns_start(f, &f->dns, "hosts", HG_T_HOSTS);
    assert_int_equal(hg_loop_init(&f->loop), 0);
    f->loop_ready = true;
    snprintf(f->server, sizeof(f->server), "127.0.0.1:%u", f->dns.port);
    f->servers[0] = f->server;
    f->cfg.resolver_servers = f->servers;
    f->cfg.nresolver_servers = 1;
    f->cfg.resolver_min_ttl_ms = 1000;
    f->cfg.resolver_max_ttl_ms = 300000;
    f->r = hg_resolver_new(&f->loop, &f->cfg, &reason);
    if (f->r == NULL)
        fail_msg("hg_resolver_new: %s", reason);
    hg_resolver_set_log(f->r, hg_t_log, f);
    return f;
}

/* Runs even when the test failed: nothing is left behind. */
static int hg_t_teardown(void **state)
{
    struct hg_t_fix *f = *state;
    char path[160];

    if (f == NULL)
        return 0;
    hg_t_reader_stop(f, NULL, NULL);
    hg_resolver_free(f->r);
    if (f->loop_ready)
        hg_loop_deinit(&f->loop);
    hg_t_dns_stop(&f->dns);
    hg_t_dns_stop(&f->dns2);
    const char *files[] = {"hosts", "hosts.tmp", "hosts2", "hosts2.tmp",
                           "dnsmasq.log"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/dnsmasq-%u.pid", f->dir, f->dns.port);
    unlink(path);
    snprintf(path, sizeof(path), "%s/dnsmasq-%u.pid", f->dir, f->dns2.port);
    unlink(path);
    if (f->dir[0] != '\0')
        rmdir(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

/* Literal addresses are published at once and never go to DNS. */
static void test_literal_needs_no_dns(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);
    char got[2][INET6_ADDRSTRLEN];

    hg_t_dns_stop(&f->dns); /* any lookup would now fail */
    struct hg_backend *v4 = hg_resolver_backend(f->r, "10.1.2.3");
    struct hg_backend *v6 = hg_resolver_backend(f->r, "fd00::5");
    assert_non_null(v4);
    assert_non_null(v6);
    assert_int_equal(atomic_load(&v4->naddrs), 1);
    assert_int_equal(hg_t_read(v4, got, 2), 1);
    assert_string_equal(got[0], "10.1.2.3");
    assert_int_equal(hg_t_read(v6, got, 2), 1);
    assert_string_equal(got[0], "fd00::5");

    uint64_t t0 = hg_now_ms();
    assert_int_equal(hg_resolver_wait_initial(f->r, 5000), 0);
    assert_true(hg_now_ms() - t0 < 100);
    hg_t_run_for(f, 1500);
    assert_int_equal(atomic_load(&v4->failures), 0);
    assert_int_equal(atomic_load(&v6->failures), 0);
    assert_false(atomic_load(&v4->stale));
    assert_int_equal(f->nlog, 0);
}

static void test_same_host_same_backend(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);

    struct hg_backend *a = hg_resolver_backend(f->r, "backend.test");
    struct hg_backend *b = hg_resolver_backend(f->r, "BACKEND.Test");
    struct hg_backend *c = hg_resolver_backend(f->r, "backend6.test");
    struct hg_backend *d = hg_resolver_backend(f->r, "10.0.0.1");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_equal(d, hg_resolver_backend(f->r, "10.0.0.1"));
    assert_string_equal(a->host, "backend.test");
}

/* The first answer arrives, with its TTL as the refresh time. */
static void test_first_answer(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);

    struct hg_backend *b = hg_resolver_backend(f->r, "backend.test");
    assert_non_null(b);
    assert_int_equal(hg_resolver_wait_initial(f->r, 5000), 0);
    assert_true(hg_t_is(b, "127.0.0.11"));
    assert_int_equal(atomic_load(&b->naddrs), 1);
    assert_false(atomic_load(&b->stale));
    assert_int_equal(atomic_load(&b->failures), 0);
    assert_int_equal(atomic_load(&b->changes), 0);

    uint64_t now = hg_now_ms();
    urcu_memb_read_lock();
    uint64_t expires = rcu_dereference(b->addrs)->expires_ms;
    urcu_memb_read_unlock();
    assert_true(expires > now && expires <= now + HG_T_TTL_S * 1000);
    assert_int_equal(hg_t_log_count(f, "backend.test", "resolved"), 1);
}

/* min_ttl stretches a short TTL; reconfiguring applies to the next answer. */
static void test_ttl_clamped_to_min(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);
    const char *reason = NULL;

    f->cfg.resolver_min_ttl_ms = 3000;
    assert_int_equal(hg_resolver_configure(f->r, &f->cfg, &reason), 0);
    struct hg_backend *b = hg_resolver_backend(f->r, "backend.test");
    assert_int_equal(hg_resolver_wait_initial(f->r, 5000), 0);

    uint64_t now = hg_now_ms();
    urcu_memb_read_lock();
    uint64_t expires = rcu_dereference(b->addrs)->expires_ms;
    urcu_memb_read_unlock();
    assert_true(expires >= now + 2500 && expires <= now + 3000);
}

/* AAAA answers are kept; sets are sorted, IPv4 first, and duplicate-free. */
static void test_aaaa_and_order(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);
    char got[4][INET6_ADDRSTRLEN];

    struct hg_backend *v6 = hg_resolver_backend(f->r, "backend6.test");
    struct hg_backend *dual = hg_resolver_backend(f->r, "dual.test");
    struct hg_backend *multi = hg_resolver_backend(f->r, "multi.test");
    assert_int_equal(hg_resolver_wait_initial(f->r, 5000), 0);

    assert_true(hg_t_is(v6, "fd00::1"));
    assert_int_equal(hg_t_read(dual, got, 4), 2);
    assert_string_equal(got[0], "127.0.0.21");
    assert_string_equal(got[1], "fd00::21");
    assert_int_equal(atomic_load(&dual->naddrs), 2);
    assert_int_equal(hg_t_read(multi, got, 4), 3);
    assert_string_equal(got[0], "127.0.0.31");
    assert_string_equal(got[1], "127.0.0.32");
    assert_string_equal(got[2], "127.0.0.33");

    /* Several refreshes later the same answer is still "no change". */
    hg_t_run_for(f, 2500);
    assert_int_equal(atomic_load(&multi->changes), 0);
    assert_int_equal(atomic_load(&dual->changes), 0);
    assert_int_equal(atomic_load(&multi->failures), 0);
}

/* A name that does not exist has no addresses and keeps failing. */
static void test_nxdomain(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);

    struct hg_backend *b = hg_resolver_backend(f->r, "missing.test");
    assert_int_equal(hg_resolver_wait_initial(f->r, 5000), 1);
    assert_null(b->addrs);
    assert_int_equal(atomic_load(&b->naddrs), 0);
    assert_false(atomic_load(&b->stale)); /* nothing older to be stale */
    uint64_t first = atomic_load(&b->failures);
    assert_true(first >= 1);

    /* Retried every second while it never answered. */
    assert_true(hg_t_run_until_failures(f, b, first + 2, 3500));
    assert_null(b->addrs);
    assert_int_equal(hg_t_log_count(f, "missing.test", "lookup failed"), 1);
    assert_int_equal(hg_t_log_count(f, "missing.test", "not found"), 1);
}

/*
 * The whole life of a name while a worker-like thread reads it: first
 * answer, a changed answer within TTL + 1 s, then DNS gone: failures grow,
 * the set turns stale and the last good address stays published.
 */
static void test_change_then_outage(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);
    unsigned long reads, bad;

    struct hg_backend *b = hg_resolver_backend(f->r, "backend.test");
    assert_int_equal(hg_resolver_wait_initial(f->r, 5000), 0);
    assert_true(hg_t_is(b, "127.0.0.11"));
    hg_t_reader_start(f, b);

    hg_t_dns_update(&f->dns, "127.0.0.12 backend.test\n");
    assert_true(
        hg_t_run_until_addr(f, b, "127.0.0.12", HG_T_TTL_S * 1000 + 1000));
    assert_int_equal(atomic_load(&b->changes), 1);
    assert_false(atomic_load(&b->stale));

    hg_t_dns_stop(&f->dns);
    uint64_t before = atomic_load(&b->failures);
    assert_true(hg_t_run_until_failures(f, b, before + 2, 6000));
    assert_true(atomic_load(&b->stale));
    assert_true(hg_t_is(b, "127.0.0.12"));
    assert_int_equal(atomic_load(&b->naddrs), 1);
    assert_int_equal(hg_t_log_count(f, "backend.test", "changed"), 1);
    assert_int_equal(hg_t_log_count(f, "backend.test", "lookup failed"), 1);

    hg_t_reader_stop(f, &reads, &bad);
    assert_true(reads > 0);
    assert_int_equal(bad, 0);
}

/*
 * A reload with new servers asks again at once and recovers a failing
 * name; a reload with a bad server changes nothing.
 */
static void test_reconfigure_servers(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);
    const char *reason = NULL;
    char bad[] = "not-an-address";
    char server2[32];

    struct hg_backend *b = hg_resolver_backend(f->r, "backend.test");
    assert_int_equal(hg_resolver_wait_initial(f->r, 5000), 0);
    hg_t_dns_stop(&f->dns);
    assert_true(hg_t_run_until_failures(f, b, 1, 6000));
    assert_true(atomic_load(&b->stale));

    f->servers[0] = bad;
    assert_int_equal(hg_resolver_configure(f->r, &f->cfg, &reason), -1);
    assert_non_null(reason);

    hg_t_dns_start(f, &f->dns2, "hosts2", "127.0.0.13 backend.test\n");
    snprintf(server2, sizeof(server2), "127.0.0.1:%u", f->dns2.port);
    f->servers[0] = server2;
    assert_int_equal(hg_resolver_configure(f->r, &f->cfg, &reason), 0);
    assert_true(hg_t_run_until_addr(f, b, "127.0.0.13", 1000));
    assert_false(atomic_load(&b->stale));
    assert_int_equal(atomic_load(&b->changes), 1);
    f->servers[0] = f->server;
}

/* The server forms the config accepts, and the ones it does not. */
static void test_server_forms(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);
    const char *reason = NULL;
    const char *good[] = {"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]",
                          "[::1]:5353"};
    const char *bad[] = {"",           "1.2.3",         "[::1",
                         "[::1]x",     "127.0.0.1:0",   "127.0.0.1:65536",
                         "127.0.0.1:", "127.0.0.1:+53", "dns.test:53",
                         "::1:53x"};
    char buf[64];

    /* No backend exists, so no query goes to any of these. */
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(buf, sizeof(buf), "%s", good[i]);
        f->servers[0] = buf;
        if (hg_resolver_configure(f->r, &f->cfg, &reason) != 0)
            fail_msg("rejected %s: %s", good[i], reason);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "%s", bad[i]);
        f->servers[0] = buf;
        if (hg_resolver_configure(f->r, &f->cfg, &reason) != -1)
            fail_msg("accepted %s", bad[i]);
    }
    f->servers[0] = f->server;
    f->cfg.resolver_min_ttl_ms = 10000;
    f->cfg.resolver_max_ttl_ms = 5000;
    assert_int_equal(hg_resolver_configure(f->r, &f->cfg, &reason), -1);

    struct hg_config cfg = f->cfg;
    assert_null(hg_resolver_new(&f->loop, &cfg, &reason));
    assert_non_null(reason);
}

/* foreach sees every backend, in creation order. */
static void hg_t_collect(struct hg_backend *b, void *arg)
{
    char *out = arg;
    strcat(out, b->host);
    strcat(out, " ");
}

static void test_foreach(void **state)
{
    struct hg_t_fix *f = hg_t_open(state);
    char seen[128] = "";

    hg_resolver_backend(f->r, "backend.test");
    hg_resolver_backend(f->r, "192.0.2.1");
    hg_resolver_backend(f->r, "Backend.test");
    hg_resolver_backend(f->r, "dual.test");
    hg_resolver_foreach(f->r, hg_t_collect, seen);
    assert_string_equal(seen, "backend.test 192.0.2.1 dual.test ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_literal_needs_no_dns, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_same_host_same_backend, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_first_answer, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_clamped_to_min, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_aaaa_and_order, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_nxdomain, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_change_then_outage, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure_servers, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_server_forms, hg_t_setup,
                                        hg_t_teardown),
        cmocka_unit_test_setup_teardown(test_foreach, hg_t_setup,
                                        hg_t_teardown),
    };
    return cmocka_run_group_tests(tests, hg_t_group_setup, hg_t_group_teardown);
}
