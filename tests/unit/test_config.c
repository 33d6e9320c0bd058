/*
 * Tests for hg_config: the default of every key when absent, every key
 * read, the design's full sketch, SNI routing through a snapshot, allow
 * lists inline and from files, reference counting, and error messages with
 * their exact FILE:LINE:COL. Positions in the expected messages are counted
 * by hand from the YAML next to them (1-based; a quoted value starts at its
 * quote).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "hg_cidr.h"
#include "hg_config.h"

/* One listener and one route: the least a valid config holds. */
#define MIN_LISTENERS                                                          \
    "listeners:\n"                                                             \
    "  - name: l\n"                                                            \
    "    bind: 0.0.0.0:8883\n"
#define MIN_ROUTES                                                             \
    "routes:\n"                                                                \
    "  - name: r\n"                                                            \
    "    sni: a.example\n"                                                     \
    "    backend: b.example\n"
#define MIN MIN_LISTENERS MIN_ROUTES

#define MAX_MSGS 4096

/* Messages collected from one load. */
struct msgs {
    char *text[MAX_MSGS];
    size_t n;
    size_t calls;
};

static void collect(void *arg, const char *message);
static void msgs_free(struct msgs *m);
static bool msgs_have(const struct msgs *m, const char *fragment);
static struct hg_config *load(const char *yaml, struct msgs *m);
static void expect_errors(const char *yaml, const char *const *expected,
                          size_t n);
static void expect_error(const char *yaml, const char *expected);
static struct hg_config *load_ok(const char *yaml);
static char *tmpdir_new(void);
static void tmpdir_free(char *dir);
static char *write_file(const char *dir, const char *name, const char *content);
static bool allows(const struct hg_cidr_set *set, const char *ip);

static void collect(void *arg, const char *message)
{
    struct msgs *m = arg;

    m->calls++;
    if (m->n < MAX_MSGS)
        m->text[m->n++] = strdup(message);
}

static void msgs_free(struct msgs *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->text[i]);
    m->n = 0;
}

static bool msgs_have(const struct msgs *m, const char *fragment)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strstr(m->text[i], fragment) != NULL)
            return true;
    }
    return false;
}

/* Loads YAML text under the name "t.yaml". */
static struct hg_config *load(const char *yaml, struct msgs *m)
{
    return hg_config_load_buffer("t.yaml", yaml, strlen(yaml), collect, m);
}

/* Asserts that yaml fails with exactly these messages, in this order. */
static void expect_errors(const char *yaml, const char *const *expected,
                          size_t n)
{
    struct msgs m = {0};
    struct hg_config *cfg = load(yaml, &m);

    for (size_t i = 0; i < m.n; i++)
        print_message("  got: %s\n", m.text[i]);
    assert_null(cfg);
    assert_int_equal(m.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(m.text[i], expected[i]);
    msgs_free(&m);
}

static void expect_error(const char *yaml, const char *expected)
{
    expect_errors(yaml, &expected, 1);
}

/* Loads a config that must be valid. */
static struct hg_config *load_ok(const char *yaml)
{
    struct msgs m = {0};
    struct hg_config *cfg = load(yaml, &m);

    for (size_t i = 0; i < m.n; i++)
        print_message("  unexpected: %s\n", m.text[i]);
    assert_int_equal(m.n, 0);
    assert_non_null(cfg);
    return cfg;
}

static char *tmpdir_new(void)
{
    char *dir = strdup("/tmp/hg_test_config.XXXXXX");

    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

/* Removes the directory and the files the tests put in it. */
static void tmpdir_free(char *dir)
{
    static const char *const names[] = {"hubgate.yaml", "sites.txt", "bad.txt",
                                        "sub/x.txt"};
    char path[512];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/sub", dir);
    rmdir(path);
    rmdir(dir);
    free(dir);
}

/* Writes a file into dir; returns its path, owned by the caller. */
static char *write_file(const char *dir, const char *name, const char *content)
{
    char *path = NULL;
    FILE *f;

    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static bool allows(const struct hg_cidr_set *set, const char *ip)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

    if (inet_pton(AF_INET, ip, &sin.sin_addr) == 1)
        return hg_cidr_set_match(set, (struct sockaddr *)&sin);
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
    return hg_cidr_set_match(set, (struct sockaddr *)&sin6);
}

/* ---- defaults and values ----------------------------------------------- */

static void test_defaults(void **state)
{
    struct hg_config *cfg = load_ok(MIN);
    struct sockaddr_in *admin = (struct sockaddr_in *)&cfg->admin_listen.addr;

    (void)state;
    assert_int_equal(atomic_load(&cfg->refs), 1);
    assert_string_equal(cfg->path, "t.yaml");
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->admin_listen.text, "127.0.0.1:9100");
    assert_int_equal(admin->sin_family, AF_INET);
    assert_int_equal(ntohs(admin->sin_port), 9100);
    assert_int_equal(ntohl(admin->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(cfg->admin_listen.addr_len, sizeof(*admin));
    assert_int_equal(cfg->log_level, HG_LOG_INFO);
    assert_int_equal(cfg->log_format, HG_LOG_TEXT);
    assert_int_equal(cfg->connect_timeout_ms, 5000);
    assert_int_equal(cfg->hello_timeout_ms, 10000);
    assert_int_equal(cfg->idle_timeout_ms, 30 * 60 * 1000);
    assert_int_equal(cfg->tcp_keepalive_ms, 120 * 1000);
    assert_int_equal(cfg->max_hello, 64 * 1024);
    assert_null(cfg->resolver_servers);
    assert_int_equal(cfg->nresolver_servers, 0);
    assert_int_equal(cfg->resolver_min_ttl_ms, 5000);
    assert_int_equal(cfg->resolver_max_ttl_ms, 300 * 1000);
    assert_int_equal(cfg->shutdown_ready_ms, 10 * 1000);
    assert_int_equal(cfg->shutdown_drain_ms, 15 * 1000);
    assert_null(cfg->default_route);
    hg_config_unref(cfg);
}

static void test_shutdown(void **state)
{
    struct hg_config *cfg;

    (void)state;
    cfg = load_ok("shutdown:\n  ready_delay: 0s\n  drain: 2500ms\n" MIN);
    assert_int_equal(cfg->shutdown_ready_ms, 0);
    assert_int_equal(cfg->shutdown_drain_ms, 2500);
    hg_config_unref(cfg);
    expect_error("shutdown:\n  drain: 2h\n" MIN,
                 "t.yaml:2:10: \"drain\" out of range: \"2h\" "
                 "(allowed: 0s..1h)");
    expect_error("shutdown:\n  ready_delay: 10\n" MIN,
                 "t.yaml:2:16: invalid duration \"10\" (a unit is required: "
                 "ms, s, m, h)");
    expect_error("shutdown:\n  delay: 1s\n" MIN,
                 "t.yaml:2:3: unknown key \"delay\"");
}

static void test_defaults_lists(void **state)
{
    struct hg_config *cfg = load_ok(MIN);
    struct hg_listener_conf *l = &cfg->listeners[0];
    struct hg_route_conf *r = &cfg->routes[0];

    (void)state;
    assert_int_equal(cfg->nlisteners, 1);
    assert_string_equal(l->name, "l");
    assert_int_equal(l->nbinds, 1);
    assert_string_equal(l->binds[0].text, "0.0.0.0:8883");
    assert_null(l->allow);
    assert_null(l->stats);
    assert_null(l->socks);
    assert_int_equal(cfg->nroutes, 1);
    assert_string_equal(r->name, "r");
    assert_int_equal(r->nsni, 1);
    assert_string_equal(r->sni[0], "a.example");
    assert_string_equal(r->backend_host, "b.example");
    assert_int_equal(r->backend_port, 0);
    assert_null(r->allow);
    assert_null(r->backend);
    assert_null(r->stats);
    assert_non_null(cfg->sni);
    hg_config_unref(cfg);
}

static void test_every_key(void **state)
{
    struct hg_config *cfg =
        load_ok("workers: 8\n"
                "admin:\n"
                "  listen: \"[::1]:9200\"\n"
                "log:\n"
                "  level: debug\n"
                "  format: json\n"
                "timeouts:\n"
                "  connect: 1500ms\n"
                "  hello: 3s\n"
                "  idle: 2h\n"
                "  queue: 20s\n"
                "tcp_keepalive: 60s\n"
                "max_hello: 1MiB\n"
                "resolver:\n"
                "  servers: [10.0.0.2, \"[fd00::2]:5353\"]\n"
                "  min_ttl: 1s\n"
                "  max_ttl: 1h\n" MIN "default_route: r\n");
    struct sockaddr_in6 *admin = (struct sockaddr_in6 *)&cfg->admin_listen.addr;

    (void)state;
    assert_int_equal(cfg->workers, 8);
    assert_string_equal(cfg->admin_listen.text, "[::1]:9200");
    assert_int_equal(admin->sin6_family, AF_INET6);
    assert_int_equal(ntohs(admin->sin6_port), 9200);
    assert_int_equal(cfg->log_level, HG_LOG_DEBUG);
    assert_int_equal(cfg->log_format, HG_LOG_JSON);
    assert_int_equal(cfg->connect_timeout_ms, 1500);
    assert_int_equal(cfg->hello_timeout_ms, 3000);
    assert_int_equal(cfg->idle_timeout_ms, 2 * 3600 * 1000);
    assert_int_equal(cfg->queue_timeout_ms, 20000);
    assert_int_equal(cfg->routes[0].connect_per_min, 0);
    assert_int_equal(cfg->tcp_keepalive_ms, 60000);
    assert_int_equal(cfg->max_hello, 1024 * 1024);
    assert_int_equal(cfg->nresolver_servers, 2);
    assert_string_equal(cfg->resolver_servers[0], "10.0.0.2");
    assert_string_equal(cfg->resolver_servers[1], "[fd00::2]:5353");
    assert_int_equal(cfg->resolver_min_ttl_ms, 1000);
    assert_int_equal(cfg->resolver_max_ttl_ms, 3600 * 1000);
    assert_ptr_equal(cfg->default_route, &cfg->routes[0]);
    hg_config_unref(cfg);
}

static void test_enums(void **state)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    char yaml[512];

    (void)state;
    for (int i = 0; i < 4; i++) {
        snprintf(yaml, sizeof(yaml), "log:\n  level: %s\n" MIN, levels[i]);
        struct hg_config *cfg = load_ok(yaml);
        assert_int_equal(cfg->log_level, i);
        assert_int_equal(cfg->log_format, HG_LOG_TEXT);
        hg_config_unref(cfg);
    }
}

static void test_workers_and_keepalive(void **state)
{
    struct hg_config *cfg;

    (void)state;
    cfg = load_ok("workers: auto\ntcp_keepalive: 0\n" MIN);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->tcp_keepalive_ms, 0);
    hg_config_unref(cfg);
    cfg = load_ok("workers: 256\ntcp_keepalive: 0s\n" MIN);
    assert_int_equal(cfg->workers, 256);
    assert_int_equal(cfg->tcp_keepalive_ms, 0);
    hg_config_unref(cfg);
    cfg = load_ok("workers: 1\ntcp_keepalive: 32767s\n" MIN);
    assert_int_equal(cfg->workers, 1);
    assert_int_equal(cfg->tcp_keepalive_ms, 32767000);
    hg_config_unref(cfg);
    cfg = load_ok("max_hello: 1KiB\n" MIN);
    assert_int_equal(cfg->max_hello, 1024);
    hg_config_unref(cfg);
    cfg = load_ok("max_hello: 16MiB\nresolver:\n  servers: []\n" MIN);
    assert_int_equal(cfg->max_hello, 16 * 1024 * 1024);
    assert_int_equal(cfg->nresolver_servers, 0);
    hg_config_unref(cfg);
}

static void test_listeners_and_routes(void **state)
{
    struct hg_config *cfg =
        load_ok("listeners:\n"
                "  - name: mqtt\n"
                "    bind: [\"0.0.0.0:8883\", \"[::]:8883\"]\n"
                "  - name: https\n"
                "    bind: 0.0.0.0:443\n"
                "routes:\n"
                "  - name: hub-a\n"
                "    sni: [hub-a.example.net, \"*.a.example.net\"]\n"
                "    backend: hub-a.privatelink.example.net:8883\n"
                "  - name: hub-b\n"
                "    sni: hub-b.example.net\n"
                "    backend: \"[fd00::1]:443\"\n"
                "  - name: hub-c\n"
                "    sni: [hub-c.example.net]\n"
                "    backend: 10.1.2.3\n");

    (void)state;
    assert_int_equal(cfg->nlisteners, 2);
    assert_int_equal(cfg->listeners[0].nbinds, 2);
    assert_int_equal(cfg->listeners[0].binds[1].addr.ss_family, AF_INET6);
    assert_string_equal(cfg->listeners[1].name, "https");
    assert_int_equal(cfg->nroutes, 3);
    assert_int_equal(cfg->routes[0].nsni, 2);
    assert_string_equal(cfg->routes[0].sni[1], "*.a.example.net");
    assert_string_equal(cfg->routes[0].backend_host,
                        "hub-a.privatelink.example.net");
    assert_int_equal(cfg->routes[0].backend_port, 8883);
    assert_string_equal(cfg->routes[1].backend_host, "fd00::1");
    assert_int_equal(cfg->routes[1].backend_port, 443);
    assert_string_equal(cfg->routes[2].backend_host, "10.1.2.3");
    assert_int_equal(cfg->routes[2].backend_port, 0);
    hg_config_unref(cfg);
}

static void test_route_for(void **state)
{
    struct hg_config *cfg =
        load_ok(MIN_LISTENERS "routes:\n"
                              "  - name: exact\n"
                              "    sni: [Hub.Example.NET, x.eu.example.net]\n"
                              "    backend: b1\n"
                              "  - name: wild\n"
                              "    sni: \"*.example.net\"\n"
                              "    backend: b2\n"
                              "  - name: deeper\n"
                              "    sni: \"*.eu.example.net\"\n"
                              "    backend: b3\n"
                              "default_route: wild\n");
    const struct hg_route_conf *r = cfg->routes;

    (void)state;
    assert_ptr_equal(hg_config_route_for(cfg, "hub.example.net", 15), &r[0]);
    assert_ptr_equal(hg_config_route_for(cfg, "HUB.EXAMPLE.NET.", 16), &r[0]);
    assert_ptr_equal(hg_config_route_for(cfg, "x.eu.example.net", 16), &r[0]);
    assert_ptr_equal(hg_config_route_for(cfg, "y.eu.example.net", 16), &r[2]);
    assert_ptr_equal(hg_config_route_for(cfg, "a.b.example.net", 15), &r[1]);
    assert_null(hg_config_route_for(cfg, "example.net", 11));
    assert_null(hg_config_route_for(cfg, "other.org", 9));
    assert_null(hg_config_route_for(cfg, "", 0));
    assert_null(hg_config_route_for(cfg, NULL, 0));
    assert_ptr_equal(cfg->default_route, &r[1]);
    hg_config_unref(cfg);
}

static void test_refs(void **state)
{
    struct hg_config *cfg = load_ok(MIN);

    (void)state;
    assert_ptr_equal(hg_config_ref(cfg), cfg);
    assert_int_equal(atomic_load(&cfg->refs), 2);
    hg_config_unref(cfg);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    assert_string_equal(cfg->routes[0].name, "r");
    hg_config_unref(cfg); /* frees; ASan/LSan check the rest */
    hg_config_unref(NULL);
}

static void test_aliases(void **state)
{
    /* Anchors let routes share an allow list. */
    struct hg_config *cfg =
        load_ok(MIN_LISTENERS "routes:\n"
                              "  - name: a\n"
                              "    sni: a.example\n"
                              "    backend: b.example\n"
                              "    allow: &sites [10.0.0.0/8, 192.0.2.1]\n"
                              "  - name: b\n"
                              "    sni: b.example\n"
                              "    backend: b.example\n"
                              "    allow: *sites\n");

    (void)state;
    assert_true(allows(cfg->routes[1].allow, "10.9.9.9"));
    assert_true(allows(cfg->routes[1].allow, "192.0.2.1"));
    assert_false(allows(cfg->routes[1].allow, "192.0.2.2"));
    assert_ptr_not_equal(cfg->routes[0].allow, cfg->routes[1].allow);
    hg_config_unref(cfg);
}

/* ---- the design's sketch and allow files ------------------------------- */

static const char sketch[] =
    "workers: auto                 # one per core\n"
    "admin:\n"
    "  listen: 127.0.0.1:9100\n"
    "log:\n"
    "  level: info                 # error | warn | info | debug\n"
    "  format: text                # text | json\n"
    "timeouts:\n"
    "  connect: 5s                 # per backend address tried\n"
    "  hello: 10s                  # from accept until the whole ClientHello "
    "is in\n"
    "  idle: 30m                   # no byte either way\n"
    "tcp_keepalive: 120s           # idle time before probes, both sides; 0 "
    "turns it off\n"
    "max_hello: 64KiB\n"
    "resolver:\n"
    "  servers: [\"127.0.0.1:53\"]   # default: the nameservers of "
    "/etc/resolv.conf\n"
    "  min_ttl: 5s\n"
    "  max_ttl: 300s\n"
    "listeners:\n"
    "  - name: mqtt\n"
    "    bind: [\"0.0.0.0:8883\", \"[::]:8883\"]\n"
    "    allow: [\"203.0.113.0/24\", \"file:sites.txt\"]   # absent: every "
    "address\n"
    "routes:\n"
    "  - name: hub-a\n"
    "    sni: [\"hub-a.azure-devices.net\"]        # exact, or "
    "\"*.example.net\"\n"
    "    backend: hub-a.privatelink.azure-devices.net   # name or IP, "
    "optional \":port\"\n"
    "    allow: [\"198.51.100.0/24\"]              # absent: every address\n"
    "default_route: none           # or a route name, for no SNI and unknown "
    "SNI\n";

static void test_sketch(void **state)
{
    char *dir = tmpdir_new();
    char *sites = write_file(dir, "sites.txt",
                             "# customer sites\n"
                             "192.0.2.0/28\n"
                             "\n"
                             "  2001:db8:5::/48   # site 5, IPv6\n");
    char *path = write_file(dir, "hubgate.yaml", sketch);
    struct msgs m = {0};
    struct hg_config *cfg = hg_config_load(path, collect, &m);
    struct hg_listener_conf *l;

    (void)state;
    assert_int_equal(m.n, 0);
    assert_non_null(cfg);
    assert_string_equal(cfg->path, path);
    l = &cfg->listeners[0];
    assert_string_equal(l->name, "mqtt");
    assert_int_equal(l->nbinds, 2);
    assert_true(allows(l->allow, "203.0.113.77"));
    assert_true(allows(l->allow, "::ffff:203.0.113.77"));
    assert_true(allows(l->allow, "192.0.2.15"));
    assert_false(allows(l->allow, "192.0.2.16"));
    assert_true(allows(l->allow, "2001:db8:5:ffff::1"));
    assert_false(allows(l->allow, "198.51.100.1"));
    assert_true(allows(cfg->routes[0].allow, "198.51.100.1"));
    assert_int_equal(cfg->nresolver_servers, 1);
    assert_null(cfg->default_route);
    assert_ptr_equal(hg_config_route_for(cfg, "hub-a.azure-devices.net", 23),
                     &cfg->routes[0]);
    hg_config_unref(cfg);
    free(sites);
    free(path);
    tmpdir_free(dir);
}

static void test_allow_file_errors(void **state)
{
    char *dir = tmpdir_new();
    char *bad = write_file(dir, "bad.txt",
                           "10.0.0.0/8\n"
                           "\n"
                           "  # comment\n"
                           "   300.1.1.1/8  # not an address\n"
                           "fe80::/10\r\n"
                           "\t10.0.0.0/40\n");
    char *path = write_file(dir, "hubgate.yaml",
                            MIN_ROUTES "listeners:\n"
                                       "  - name: l\n"
                                       "    bind: 0.0.0.0:1\n"
                                       "    allow:\n"
                                       "      - file:bad.txt\n"
                                       "      - file:nope.txt\n"
                                       "      - \"file:\"\n"
                                       "      - file:sub\n");
    char *e[5], *sub;
    struct msgs m = {0};

    (void)state;
    assert_true(asprintf(&sub, "%s/sub", dir) > 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    free(sub);
    assert_true(asprintf(&e[0],
                         "%s:4:4: invalid CIDR \"300.1.1.1/8\" (not an IPv4 "
                         "or IPv6 address)",
                         bad) > 0);
    assert_true(asprintf(&e[1],
                         "%s:6:2: invalid CIDR \"10.0.0.0/40\" (an IPv4 "
                         "prefix length must be 0..32)",
                         bad) > 0);
    assert_true(asprintf(&e[2],
                         "%s:10:9: cannot read allow file \"%s/nope.txt\": "
                         "No such file or directory",
                         path, dir) > 0);
    assert_true(asprintf(&e[3], "%s:11:9: \"file:\" needs a path", path) > 0);
    assert_true(asprintf(&e[4],
                         "%s:12:9: cannot read allow file \"%s/sub\": not a "
                         "regular file",
                         path, dir) > 0);
    assert_null(hg_config_load(path, collect, &m));
    assert_int_equal(m.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(m.text[i], e[i]);
        free(e[i]);
    }
    msgs_free(&m);
    free(bad);
    free(path);
    tmpdir_free(dir);
}

static void test_allow_file_paths(void **state)
{
    char *dir = tmpdir_new();
    static const char rel[] = MIN_ROUTES "listeners:\n"
                                         "  - name: l\n"
                                         "    bind: 0.0.0.0:1\n"
                                         "    allow: [file:sites.txt]\n";
    char *abs = write_file(dir, "sites.txt", "10.0.0.0/8\n");
    char *yaml = NULL;
    struct hg_config *cfg;

    (void)state;
    /* Absolute path, whatever the config's name. */
    assert_true(asprintf(&yaml,
                         MIN_ROUTES "listeners:\n"
                                    "  - name: l\n"
                                    "    bind: 0.0.0.0:1\n"
                                    "    allow: file:%s\n",
                         abs) > 0);
    cfg = load_ok(yaml);
    assert_true(allows(cfg->listeners[0].allow, "10.1.1.1"));
    hg_config_unref(cfg);
    free(yaml);
    /* Relative to the directory of the config's name. */
    assert_true(asprintf(&yaml, "%s/virtual.yaml", dir) > 0);
    cfg = hg_config_load_buffer(yaml, rel, strlen(rel), NULL, NULL);
    assert_non_null(cfg);
    assert_true(allows(cfg->listeners[0].allow, "10.1.1.1"));
    assert_false(allows(cfg->listeners[0].allow, "11.1.1.1"));
    hg_config_unref(cfg);
    free(yaml);
    free(abs);
    tmpdir_free(dir);
}

static void test_missing_file(void **state)
{
    struct msgs m = {0};

    (void)state;
    assert_null(hg_config_load("/nonexistent/hubgate.yaml", collect, &m));
    assert_int_equal(m.n, 1);
    assert_string_equal(m.text[0], "/nonexistent/hubgate.yaml: cannot read "
                                   "the config: No such file or directory");
    msgs_free(&m);
}

/* ---- error messages ---------------------------------------------------- */

static void test_error_unknown_keys(void **state)
{
    static const char *const e[] = {
        "t.yaml:1:1: unknown key \"tiemouts\"",
        "t.yaml:3:3: unknown key \"conect\"",
        "t.yaml:9:5: unknown key \"backends\"",
    };

    (void)state;
    expect_errors("tiemouts: {}\n"
                  "timeouts:\n"
                  "  conect: 5s\n" MIN_LISTENERS "routes:\n"
                  "  - name: r\n"
                  "    backends: x\n"
                  "    sni: a.example\n"
                  "    backend: b.example\n",
                  e, 3);
}

static void test_error_types(void **state)
{
    static const char *const e[] = {
        "t.yaml:1:10: \"workers\" must be auto or a number, not a mapping",
        "t.yaml:2:8: \"admin\" must be a mapping, not a list",
        "t.yaml:4:12: \"connect\" must be a duration, not a list",
        "t.yaml:5:10: \"hello\" must be a duration, not a mapping",
        "t.yaml:6:8: missing value for \"idle\"",
        "t.yaml:7:12: \"max_hello\" must be a size, not a list",
    };

    (void)state;
    expect_errors("workers: {n: 1}\n"
                  "admin: [127.0.0.1:9100]\n"
                  "timeouts:\n"
                  "  connect: [5s]\n"
                  "  hello: {s: 10}\n"
                  "  idle:\n"
                  "max_hello: [1KiB]\n" MIN,
                  e, 6);
}

static void test_error_list_types(void **state)
{
    static const char *const e[] = {
        "t.yaml:1:12: \"listeners\" must be a list of listeners, not a "
        "mapping",
        "t.yaml:3:5: each entry of \"routes\" must be a mapping, not a string",
        "t.yaml:5:10: \"sni\" must be a list of server names, not a mapping",
        "t.yaml:6:12: \"allow\" must not be empty",
    };
    static const char *const e2[] = {
        "t.yaml:7:9: each entry of \"sni\" must be a server name, not a list",
        "t.yaml:8:8: empty entry in \"sni\"",
        "t.yaml:10:13: each entry of \"allow\" must be a CIDR, not a mapping",
    };

    (void)state;
    expect_errors("listeners: {name: l}\n"
                  "routes:\n"
                  "  - r\n"
                  "  - name: r\n"
                  "    sni: {a: b}\n"
                  "    allow: []\n"
                  "    backend: b\n",
                  e, 4);
    expect_errors(MIN_LISTENERS "routes:\n"
                                "  - name: r\n"
                                "    sni:\n"
                                "      - [a]\n"
                                "      -\n"
                                "      - b.example\n"
                                "    allow: [{a: 1}]\n"
                                "    backend: b\n",
                  e2, 3);
}

static void test_error_durations(void **state)
{
    static const char *const e[] = {
        "t.yaml:2:12: invalid duration \"5\" (a unit is required: ms, s, m, "
        "h)",
        "t.yaml:3:10: invalid duration \"10sec\" (unknown unit; use ms, s, m, "
        "h)",
        "t.yaml:4:9: \"idle\" out of range: \"0s\" (allowed: 1ms..8760h)",
        "t.yaml:5:16: \"tcp_keepalive\" out of range: \"500ms\" (allowed: "
        "1s..32767s, or 0 to turn it off)",
        "t.yaml:6:12: invalid size \"64KB\" (unknown unit; use B, KiB, MiB)",
        "t.yaml:8:12: invalid duration \"-1s\" (a whole number is required)",
        "t.yaml:9:12: invalid duration \"99999999999999999999h\" (the number "
        "is too large)",
    };

    (void)state;
    expect_errors("timeouts:\n"
                  "  connect: 5\n"
                  "  hello: 10sec\n"
                  "  idle: 0s\n"
                  "tcp_keepalive: 500ms\n"
                  "max_hello: 64KB\n"
                  "resolver:\n"
                  "  min_ttl: -1s\n"
                  "  max_ttl: 99999999999999999999h\n" MIN,
                  e, 7);
}

/* max_connections: a whole number within range. */
static void test_max_connections(void **state)
{
    static const char *const e[] = {
        "t.yaml:4:22: invalid max_connections \"0\" (use 1..10000000)",
        "t.yaml:7:22: invalid max_connections \"10k\" (use 1..10000000)",
        "t.yaml:10:22: invalid max_connections \"10000001\" (use "
        "1..10000000)",
    };
    struct hg_config *cfg = load_ok("listeners:\n"
                                    "  - name: l\n"
                                    "    bind: 0.0.0.0:8883\n"
                                    "    max_connections: 20000\n" MIN_ROUTES);

    (void)state;
    assert_int_equal(cfg->listeners[0].max_conns, 20000);
    hg_config_unref(cfg);
    expect_errors("listeners:\n"
                  "  - name: a\n"
                  "    bind: 0.0.0.0:1\n"
                  "    max_connections: 0\n"
                  "  - name: b\n"
                  "    bind: 0.0.0.0:2\n"
                  "    max_connections: 10k\n"
                  "  - name: c\n"
                  "    bind: 0.0.0.0:3\n"
                  "    max_connections: 10000001\n" MIN_ROUTES,
                  e, 3);
}

/* connect_rate: per second or per minute, within range, never bare. */
static void test_connect_rate(void **state)
{
    static const char *const e[] = {
        "t.yaml:8:19: invalid rate \"10\" (a unit is required: /s or /m, "
        "as in 200/s)",
        "t.yaml:12:19: \"connect_rate\" out of range: \"0/s\" (allowed: "
        "1/m..100000/s)",
        "t.yaml:16:19: invalid rate \"5/h\" (unknown unit; use /s or /m, as "
        "in 200/s)",
        "t.yaml:20:19: \"connect_rate\" out of range: \"100001/s\" "
        "(allowed: 1/m..100000/s)",
    };
    struct hg_config *cfg = load_ok(MIN_LISTENERS "routes:\n"
                                                  "  - name: a\n"
                                                  "    sni: a.example\n"
                                                  "    backend: b.example\n"
                                                  "    connect_rate: 200/s\n"
                                                  "  - name: b\n"
                                                  "    sni: b.example\n"
                                                  "    backend: b.example\n"
                                                  "    connect_rate: 30/m\n");

    (void)state;
    assert_int_equal(cfg->routes[0].connect_per_min, 12000);
    assert_int_equal(cfg->routes[1].connect_per_min, 30);
    assert_int_equal(cfg->queue_timeout_ms, 10000);
    hg_config_unref(cfg);
    expect_errors(MIN_LISTENERS "routes:\n"
                                "  - name: a\n"
                                "    sni: a.example\n"
                                "    backend: b.example\n"
                                "    connect_rate: 10\n"
                                "  - name: b\n"
                                "    sni: b.example\n"
                                "    backend: b.example\n"
                                "    connect_rate: 0/s\n"
                                "  - name: c\n"
                                "    sni: c.example\n"
                                "    backend: b.example\n"
                                "    connect_rate: 5/h\n"
                                "  - name: d\n"
                                "    sni: d.example\n"
                                "    backend: b.example\n"
                                "    connect_rate: 100001/s\n",
                  e, 4);
}

static void test_error_ranges(void **state)
{
    static const char *const e[] = {
        "t.yaml:1:10: invalid workers \"0\" (use auto or 1..256)",
        "t.yaml:2:16: \"tcp_keepalive\" out of range: \"32768s\" (allowed: "
        "1s..32767s, or 0 to turn it off)",
        "t.yaml:3:12: \"max_hello\" out of range: \"1023B\" (allowed: "
        "1KiB..16MiB)",
        "t.yaml:5:12: min_ttl \"10m\" is greater than max_ttl \"5m\"",
    };

    (void)state;
    expect_errors("workers: 0\n"
                  "tcp_keepalive: 32768s\n"
                  "max_hello: 1023B\n"
                  "resolver:\n"
                  "  min_ttl: 10m\n"
                  "  max_ttl: 5m\n" MIN,
                  e, 4);
    expect_error("workers: 257\n" MIN,
                 "t.yaml:1:10: invalid workers \"257\" (use auto or 1..256)");
    expect_error("workers: 2.5\n" MIN,
                 "t.yaml:1:10: invalid workers \"2.5\" (use auto or 1..256)");
    expect_error("workers: \"1\"\n" MIN,
                 "t.yaml:1:10: invalid workers \"1\" (a number, not quoted)");
    expect_error("max_hello: 17MiB\n" MIN,
                 "t.yaml:1:12: \"max_hello\" out of range: \"17MiB\" "
                 "(allowed: 1KiB..16MiB)");
    /* Against the default on the other side. */
    expect_error("resolver:\n  max_ttl: 2s\n" MIN,
                 "t.yaml:2:12: min_ttl \"5s\" is greater than max_ttl \"2s\"");
    expect_error("resolver:\n  min_ttl: 301s\n" MIN,
                 "t.yaml:2:12: min_ttl \"301s\" is greater than max_ttl "
                 "\"300s\"");
}

static void test_error_enums(void **state)
{
    static const char *const e[] = {
        "t.yaml:2:10: invalid level \"verbose\" (use error, warn, info, "
        "debug)",
        "t.yaml:3:11: invalid format \"xml\" (use text, json)",
        "t.yaml:4:3: duplicate key \"level\"",
    };

    (void)state;
    expect_errors("log:\n"
                  "  level: verbose\n"
                  "  format: xml\n"
                  "  level: info\n" MIN,
                  e, 3);
}

static void test_error_addresses(void **state)
{
    static const char *const e[] = {
        "t.yaml:2:11: invalid listen address \"localhost:9100\" (the host "
        "must be an IP address)",
        "t.yaml:4:12: invalid resolver server \"10.0.0.1:0\" (the port must "
        "be 1..65535)",
        "t.yaml:7:12: invalid bind address \"0.0.0.0\" (a port is required, "
        "as in 0.0.0.0:8883 or [::]:8883)",
        "t.yaml:7:21: invalid bind address \"::1:8883\" (ambiguous: the last "
        "group reads as a port as well; write [ADDRESS]:PORT, or [ADDRESS] "
        "for no port)",
        "t.yaml:11:14: invalid backend \"b.example:99999\" (the port must be "
        "1..65535)",
    };

    (void)state;
    expect_errors("admin:\n"
                  "  listen: localhost:9100\n"
                  "resolver:\n"
                  "  servers: 10.0.0.1:0\n"
                  "listeners:\n"
                  "  - name: l\n"
                  "    bind: [0.0.0.0, \"::1:8883\"]\n"
                  "routes:\n"
                  "  - name: r\n"
                  "    sni: a.example\n"
                  "    backend: b.example:99999\n",
                  e, 5);
}

static void test_error_cidr(void **state)
{
    static const char *const e[] = {
        "t.yaml:4:13: invalid CIDR \"10.0.0.0/33\" (an IPv4 prefix length "
        "must be 0..32)",
        "t.yaml:4:28: invalid CIDR \"10.0.0\" (not an IPv4 or IPv6 address)",
        "t.yaml:4:36: invalid CIDR \"::/129\" (an IPv6 prefix length must be "
        "0..128)",
        "t.yaml:9:12: \"allow\" must not be empty",
    };

    (void)state;
    expect_errors("listeners:\n"
                  "  - name: l\n"
                  "    bind: 0.0.0.0:1\n"
                  "    allow: [\"10.0.0.0/33\", 10.0.0, \"::/129\"]\n"
                  "routes:\n"
                  "  - name: r\n"
                  "    sni: a.example\n"
                  "    backend: b.example\n"
                  "    allow: []\n",
                  e, 4);
}

static void test_error_sni(void **state)
{
    static const char *const e[] = {
        "t.yaml:6:37: duplicate server name \"A.EXAMPLE.\" (listed twice in "
        "this route)",
        "t.yaml:9:11: invalid server name \"a*.example\" ('*' is only allowed "
        "as the whole first label, as in *.example.net)",
        "t.yaml:9:23: invalid server name \"*\" (a wildcard needs a domain "
        "after \"*.\")",
        "t.yaml:9:28: duplicate server name \"a.example\" (also in route "
        "\"r1\")",
        "t.yaml:9:39: duplicate server name \"*.w.example\" (also in route "
        "\"r1\")",
    };

    (void)state;
    expect_errors(MIN_LISTENERS "routes:\n"
                                "  - name: r1\n"
                                "    sni: [a.example, \"*.w.example\", "
                                "A.EXAMPLE.]\n"
                                "    backend: b\n"
                                "  - name: r2\n"
                                "    sni: [a*.example, \"*\", a.example, "
                                "\"*.w.example\"]\n"
                                "    backend: b\n",
                  e, 5);
}

static void test_error_names(void **state)
{
    static const char *const e[] = {
        "t.yaml:2:11: invalid listener name \"a b\" (use 1 to 64 letters, "
        "digits, '-', '_', '.')",
        "t.yaml:3:10: missing value for \"bind\"",
        "t.yaml:5:11: duplicate listener name \"l\"",
        "t.yaml:6:12: duplicate bind address \"0.0.0.0:1\"",
        "t.yaml:6:23: duplicate bind address \"0.0.0.0:1\"",
        "t.yaml:8:5: missing required key \"name\"",
        "t.yaml:8:5: missing required key \"sni\"",
        "t.yaml:8:5: missing required key \"backend\"",
        "t.yaml:10:11: the route name \"none\" is reserved (default_route: "
        "none means no default)",
    };

    (void)state;
    expect_errors("listeners:\n"
                  "  - name: a b\n"
                  "    bind:\n"
                  "  - {name: l, bind: 0.0.0.0:1}\n"
                  "  - name: l\n"
                  "    bind: [0.0.0.0:1, \"0.0.0.0:1\", \"[::]:1\"]\n"
                  "routes:\n"
                  "  - allow: 10.0.0.0/8\n"
                  "  - sni: n.example\n"
                  "    name: none\n"
                  "    backend: b\n",
                  e, 9);
}

static void test_error_route_names(void **state)
{
    static const char *const e[] = {
        "t.yaml:8:11: duplicate route name \"r\"",
        "t.yaml:11:16: default_route \"hub-x\" does not name a route",
    };

    (void)state;
    expect_errors(MIN_LISTENERS "routes:\n"
                                "  - name: r\n"
                                "    sni: a.example\n"
                                "    backend: b\n"
                                "  - name: r\n"
                                "    sni: c.example\n"
                                "    backend: b\n"
                                "default_route: hub-x\n",
                  e, 2);
}

static void test_error_required_top(void **state)
{
    static const char *const e[] = {
        "t.yaml:1:1: missing required key \"listeners\"",
        "t.yaml:1:1: missing required key \"routes\"",
    };

    (void)state;
    expect_errors("workers: auto\n", e, 2);
    expect_error("listeners: []\n" MIN_ROUTES,
                 "t.yaml:1:12: \"listeners\" must not be empty");
    expect_error(MIN_LISTENERS "routes: []\n",
                 "t.yaml:4:9: \"routes\" must not be empty");
}

static void test_error_yaml(void **state)
{
    (void)state;
    expect_error("workers: auto\n"
                 "listeners: [a, b\n"
                 "routes: []\n",
                 "t.yaml:3:7: syntax error: did not find expected ',' or ']' "
                 "(while parsing a flow sequence at 2:12)");
    expect_error("a: \"open\n",
                 "t.yaml:2:1: syntax error: found unexpected end of stream "
                 "(while scanning a quoted scalar at 1:4)");
    expect_error("workers: 1\n\tlog: x\n",
                 "t.yaml:2:1: syntax error: found a tab character that "
                 "violates indentation (while scanning a plain scalar at "
                 "1:10)");
    expect_error("workers: 1\nlog: \x01\n",
                 "t.yaml:2:6: syntax error: control characters are not "
                 "allowed");
    expect_error("", "t.yaml:1:1: the config is empty");
    expect_error("# only a comment\n", "t.yaml:1:1: the config is empty");
    expect_error("- a\n- b\n",
                 "t.yaml:1:1: the config must be a mapping, not a list");
    expect_error("hello\n",
                 "t.yaml:1:1: the config must be a mapping, not a string");
}

static void test_error_documents(void **state)
{
    static const char *const e[] = {
        "t.yaml:9:1: only one YAML document is allowed",
    };

    (void)state;
    expect_errors(MIN "---\nworkers: 2\n", e, 1);
    expect_error(MIN "---\n[",
                 "t.yaml:10:1: syntax error: did not find expected node "
                 "content (while parsing a flow node at 10:1)");
}

static void test_error_keys(void **state)
{
    static const char nul[] = "workers: \"4\\0\"\n" MIN;

    (void)state;
    expect_error("? [a]\n: b\n" MIN,
                 "t.yaml:1:3: a key must be a string, not a list");
    expect_error(nul, "t.yaml:1:10: the value of \"workers\" holds a NUL "
                      "byte");
    expect_error("\"work\\0ers\": 4\n" MIN,
                 "t.yaml:1:1: unknown key \"work\\x00ers\"");
}

static void test_error_budget(void **state)
{
    char *yaml = NULL, *p;
    size_t cap = 64 * 1024;
    struct msgs m = {0};

    (void)state;
    /* 1000 binds, then 1100 aliases of the listener: over a million
     * values from a few kilobytes. */
    yaml = malloc(cap);
    assert_non_null(yaml);
    p = yaml +
        sprintf(yaml, "listeners:\n  - &l {name: l, bind: [&b 0.0.0.0:1");
    for (int i = 1; i < 1000; i++)
        p += sprintf(p, ", *b");
    p += sprintf(p, "]}\n");
    for (int i = 0; i < 1100; i++)
        p += sprintf(p, "  - *l\n");
    sprintf(p, MIN_ROUTES);
    assert_null(load(yaml, &m));
    assert_true(msgs_have(&m, "the config is too large (more than 1000000 "
                              "values, aliases included)"));
    assert_int_equal(m.calls, 1001);
    assert_true(msgs_have(&m, "more errors not shown"));
    msgs_free(&m);
    free(yaml);
}

static void test_no_callback(void **state)
{
    (void)state;
    assert_null(hg_config_load_buffer("t.yaml", "x: [", 4, NULL, NULL));
    assert_null(hg_config_load_buffer("t.yaml", "x: 1", 4, NULL, NULL));
    assert_null(hg_config_load_buffer("t.yaml", NULL, 0, NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_lists),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_workers_and_keepalive),
        cmocka_unit_test(test_listeners_and_routes),
        cmocka_unit_test(test_route_for),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_sketch),
        cmocka_unit_test(test_allow_file_errors),
        cmocka_unit_test(test_allow_file_paths),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_error_unknown_keys),
        cmocka_unit_test(test_error_types),
        cmocka_unit_test(test_error_list_types),
        cmocka_unit_test(test_error_durations),
        cmocka_unit_test(test_error_ranges),
        cmocka_unit_test(test_connect_rate),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_error_enums),
        cmocka_unit_test(test_error_addresses),
        cmocka_unit_test(test_error_cidr),
        cmocka_unit_test(test_error_sni),
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_error_route_names),
        cmocka_unit_test(test_error_required_top),
        cmocka_unit_test(test_error_yaml),
        cmocka_unit_test(test_error_documents),
        cmocka_unit_test(test_error_keys),
        cmocka_unit_test(test_error_budget),
        cmocka_unit_test(test_no_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
