/*
 * Config loader: libyaml builds a document tree, then one function per
 * section walks its part of the tree into a struct hg_config. The walk never
 * stops at the first error: each problem is reported with the position of
 * the node at fault and the walk goes on, so one run of "hubgate -t" lists
 * everything to fix. Values are checked as they are read; checks that need
 * the whole file (duplicate names and addresses, default_route) run after
 * their sections; messages are held back and sorted into file order at the
 * end. YAML aliases share nodes, so a small file could stand for a huge
 * tree: every value walked is counted against a budget. A snapshot with any
 * error is freed, never returned.
 */
#include "hg_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "hg_cidr.h"
#include "hg_sni.h"
#include "hg_units.h"

#define HG__CFG_FILE_MAX    (16 * 1024 * 1024) /* bytes of YAML */
#define HG__CFG_BUDGET      1000000 /* values walked, aliases included */
#define HG__CFG_MSG_MAX     1024
#define HG__CFG_QUOTE_BUF   256
#define HG__CFG_QUOTE_SHOWN 60 /* bytes of a value shown in a message */
#define HG__CFG_NAME_MAX    64
#define HG__CFG_WORKERS_MAX 256
#define HG__CFG_FILE_ERRORS 20   /* reported per allow file */
#define HG__CFG_ERRORS_MAX  1000 /* reported per load */
#define HG__CFG_DNS_PORT    53
#define HG__CFG_HOUR_MS     (3600ull * 1000)
#define HG__CFG_YEAR_MS     (8760 * HG__CFG_HOUR_MS)

#define HG__CFG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Flags of hg__cfg_list(). */
#define HG__CFG_ONE   1u /* a single value stands for a list of one */
#define HG__CFG_EMPTY 2u /* an empty list is allowed */

/* Keys of each mapping, in the order of the enum that indexes them. */
enum hg__cfg_top {
    HG__TOP_WORKERS,
    HG__TOP_ADMIN,
    HG__TOP_LOG,
    HG__TOP_TIMEOUTS,
    HG__TOP_KEEPALIVE,
    HG__TOP_MAX_HELLO,
    HG__TOP_RESOLVER,
    HG__TOP_LISTENERS,
    HG__TOP_ROUTES,
    HG__TOP_DEFAULT_ROUTE,
    HG__TOP_SHUTDOWN,
    HG__TOP_N
};
enum hg__cfg_admin { HG__ADMIN_LISTEN, HG__ADMIN_N };
enum hg__cfg_log { HG__LOG_LEVEL, HG__LOG_FORMAT, HG__LOG_N };
enum hg__cfg_timeouts {
    HG__TO_CONNECT,
    HG__TO_HELLO,
    HG__TO_IDLE,
    HG__TO_QUEUE,
    HG__TO_N
};
enum hg__cfg_shutdown { HG__SD_READY, HG__SD_DRAIN, HG__SD_N };
enum hg__cfg_resolver { HG__RES_SERVERS, HG__RES_MIN, HG__RES_MAX, HG__RES_N };
enum hg__cfg_listener {
    HG__LIS_NAME,
    HG__LIS_BIND,
    HG__LIS_ALLOW,
    HG__LIS_MAX,
    HG__LIS_N
};
enum hg__cfg_route {
    HG__RT_NAME,
    HG__RT_SNI,
    HG__RT_BACKEND,
    HG__RT_ALLOW,
    HG__RT_RATE,
    HG__RT_N
};

static const char *const hg__cfg_top_keys[HG__TOP_N] = {
    "workers",       "admin",         "log",      "timeouts",
    "tcp_keepalive", "max_hello",     "resolver", "listeners",
    "routes",        "default_route", "shutdown",
};
static const char *const hg__cfg_shutdown_keys[HG__SD_N] = {"ready_delay",
                                                            "drain"};
static const char *const hg__cfg_admin_keys[HG__ADMIN_N] = {"listen"};
static const char *const hg__cfg_log_keys[HG__LOG_N] = {"level", "format"};
static const char *const hg__cfg_timeout_keys[HG__TO_N] = {"connect", "hello",
                                                           "idle", "queue"};
static const char *const hg__cfg_resolver_keys[HG__RES_N] = {
    "servers", "min_ttl", "max_ttl"};
static const char *const hg__cfg_listener_keys[HG__LIS_N] = {
    "name", "bind", "allow", "max_connections"};
static const char *const hg__cfg_route_keys[HG__RT_N] = {
    "name", "sni", "backend", "allow", "connect_rate"};

/* Values of log.level and log.format, in the order of their enums. */
static const char *const hg__cfg_levels[] = {"error", "warn", "info", "debug"};
static const char *const hg__cfg_formats[] = {"text", "json"};

/* The allowed values of a duration, size or rate, and how to say them. */
struct hg__cfg_range {
    uint64_t min;
    uint64_t max;
    const char *text;
};

static const struct hg__cfg_range hg__cfg_timeout_range = {1, HG__CFG_YEAR_MS,
                                                           "1ms..8760h"};
static const struct hg__cfg_range hg__cfg_keepalive_range = {
    0, 32767 * 1000, "1s..32767s, or 0 to turn it off"};
static const struct hg__cfg_range hg__cfg_min_ttl_range = {0, HG__CFG_YEAR_MS,
                                                           "0s..8760h"};
static const struct hg__cfg_range hg__cfg_max_ttl_range = {
    1000, HG__CFG_YEAR_MS, "1s..8760h"};
static const struct hg__cfg_range hg__cfg_hello_range = {1024, 16 * 1024 * 1024,
                                                         "1KiB..16MiB"};

/* A value that must be unique (a name, an address), for the checks that run
 * once a section is walked. */
struct hg__cfg_seen {
    const void *bytes;
    size_t len;
    const yaml_node_t *node;
    size_t order; /* place in the document */
    bool dup;     /* equal to an earlier one */
};

struct hg__cfg_seen_list {
    struct hg__cfg_seen *v;
    size_t n, cap;
};

/*
 * A message held back until the load ends, so that messages come out in
 * the order of the config file, whatever order the checks ran in. line and
 * col are where the message belongs in the config file (for an error inside
 * an allow file, the "file:" entry that names it); seq keeps the order of
 * messages at the same place.
 */
struct hg__cfg_msg {
    size_t line, col, seq;
    char *text;
};

/* State of one load. */
struct hg__cfg_ctx {
    const char *path; /* the file, as named in messages */
    const char *text; /* the YAML, for positions of encoding errors */
    size_t len;
    hg_config_error_cb on_error;
    void *arg;
    unsigned errors;
    size_t budget; /* values left to walk before the config is too large */
    bool spent;
    yaml_document_t doc;
    struct hg_config *cfg;
    struct hg__cfg_seen_list listener_names;
    struct hg__cfg_seen_list route_names;
    struct hg__cfg_seen_list binds;
    struct hg__cfg_msg *msgs;
    size_t nmsgs, capmsgs;
};

static void hg__cfg_keep(struct hg__cfg_ctx *ctx, size_t line, size_t col,
                         char *text);
static void hg__cfg_verror(struct hg__cfg_ctx *ctx, const yaml_node_t *anchor,
                           const char *file, size_t line, size_t col,
                           const char *fmt, va_list ap);
static void hg__cfg_error_at(struct hg__cfg_ctx *ctx, const yaml_node_t *anchor,
                             const char *file, size_t line, size_t col,
                             const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int hg__cfg_msg_cmp(const void *a, const void *b);
static void hg__cfg_flush(struct hg__cfg_ctx *ctx);
static void hg__cfg_error(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void hg__cfg_nomem(struct hg__cfg_ctx *ctx, const yaml_node_t *node);
static const char *hg__cfg_quote(const char *s, size_t len, char *buf);
static const char *hg__cfg_qnode(const yaml_node_t *node, char *buf);
static bool hg__cfg_is_null(const yaml_node_t *node);
static bool hg__cfg_is(const yaml_node_t *node, const char *s);
static const char *hg__cfg_kind(const yaml_node_t *node);
static void hg__cfg_wrong_type(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                               const char *key, bool item,
                               const char *expected);
static void hg__cfg_missing(struct hg__cfg_ctx *ctx, const yaml_node_t *map,
                            const char *key);
static int hg__cfg_spend(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                         size_t n);
static void hg__cfg_pair(struct hg__cfg_ctx *ctx, const yaml_node_pair_t *p,
                         const char *const *names, size_t n,
                         yaml_node_t **values);
static int hg__cfg_map(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                       const char *key, bool item, const char *const *names,
                       size_t n, yaml_node_t **values);
static int hg__cfg_list(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                        const char *key, unsigned flags, const char *expected,
                        size_t *n);
static yaml_node_t *hg__cfg_item(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                                 size_t i);
static const char *hg__cfg_scalar(struct hg__cfg_ctx *ctx,
                                  const yaml_node_t *node, const char *key,
                                  bool item, const char *expected);
static char *hg__cfg_strdup(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *s);
static void hg__cfg_seen_add(struct hg__cfg_ctx *ctx,
                             struct hg__cfg_seen_list *list, const void *bytes,
                             size_t len, const yaml_node_t *node);
static int hg__cfg_seen_cmp_value(const void *a, const void *b);
static int hg__cfg_seen_cmp_order(const void *a, const void *b);
static void hg__cfg_seen_report(struct hg__cfg_ctx *ctx,
                                struct hg__cfg_seen_list *list,
                                const char *what);
static int hg__cfg_duration(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *key, const struct hg__cfg_range *r,
                            uint64_t *out);
static int hg__cfg_choice(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                          const char *key, const char *const *names, size_t n,
                          const char *hint);
static int hg__cfg_sockaddr(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *key, bool item, const char *what,
                            struct hg_sockaddr *out);
static char *hg__cfg_name(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                          const char *what);
static void hg__cfg_workers(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_admin(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_admin_clash(struct hg__cfg_ctx *ctx);
static bool hg__cfg_addr_overlap(const struct sockaddr_storage *a,
                                 const struct sockaddr_storage *b);
static void hg__cfg_log(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_timeouts(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_shutdown(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_keepalive(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_max_hello(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_servers(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_resolver(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static char *hg__cfg_relative(const char *base, const char *name);
static FILE *hg__cfg_open_file(const char *path, const char **reason);
static int hg__cfg_allow_line(struct hg__cfg_ctx *ctx, struct hg_cidr_set *set,
                              const yaml_node_t *node, const char *path,
                              size_t lineno, char *line, size_t n);
static void hg__cfg_allow_lines(struct hg__cfg_ctx *ctx,
                                struct hg_cidr_set *set,
                                const yaml_node_t *node, FILE *f,
                                const char *path);
static void hg__cfg_allow_file(struct hg__cfg_ctx *ctx, struct hg_cidr_set *set,
                               const yaml_node_t *node, const char *name);
static struct hg_cidr_set *hg__cfg_allow(struct hg__cfg_ctx *ctx,
                                         yaml_node_t *node);
static void hg__cfg_binds(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                          struct hg_listener_conf *l);
static void hg__cfg_listener(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                             struct hg_listener_conf *l);
static void hg__cfg_listeners(struct hg__cfg_ctx *ctx, yaml_node_t *root,
                              yaml_node_t *node);
static void hg__cfg_max_conns(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                              struct hg_listener_conf *l);
static void hg__cfg_sni_add(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *name, struct hg_route_conf *r);
static void hg__cfg_sni(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                        struct hg_route_conf *r);
static void hg__cfg_backend(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                            struct hg_route_conf *r);
static void hg__cfg_route(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                          struct hg_route_conf *r);
static void hg__cfg_rate(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                         struct hg_route_conf *r);
static void hg__cfg_routes(struct hg__cfg_ctx *ctx, yaml_node_t *root,
                           yaml_node_t *node);
static void hg__cfg_default_route(struct hg__cfg_ctx *ctx, yaml_node_t *node);
static void hg__cfg_root(struct hg__cfg_ctx *ctx, yaml_node_t *root);
static void hg__cfg_offset_pos(const char *text, size_t len, size_t offset,
                               size_t *line, size_t *col);
static void hg__cfg_syntax(struct hg__cfg_ctx *ctx, const yaml_parser_t *p);
static int hg__cfg_parse(struct hg__cfg_ctx *ctx);
static struct hg_config *hg__cfg_new(const char *path);
static void hg__cfg_free_listener(struct hg_listener_conf *l);
static void hg__cfg_free_route(struct hg_route_conf *r);
static void hg__cfg_free(struct hg_config *cfg);
static int hg__cfg_read_file(const char *path, char **text, size_t *len,
                             const char **reason);

/* ---- messages ---------------------------------------------------------- */

/*
 * Holds back a complete message (ownership of text passes to ctx) to be
 * sorted into place at line:col of the config. When no room is left, the
 * message goes out at once instead.
 */
static void hg__cfg_keep(struct hg__cfg_ctx *ctx, size_t line, size_t col,
                         char *text)
{
    if (ctx->nmsgs == ctx->capmsgs) {
        size_t cap = ctx->capmsgs ? ctx->capmsgs * 2 : 16;
        struct hg__cfg_msg *m = realloc(ctx->msgs, cap * sizeof(*m));
        if (m == NULL) {
            ctx->on_error(ctx->arg, text);
            free(text);
            return;
        }
        ctx->msgs = m;
        ctx->capmsgs = cap;
    }
    ctx->msgs[ctx->nmsgs] = (struct hg__cfg_msg){line, col, ctx->nmsgs, text};
    ctx->nmsgs++;
}

/*
 * Formats one message as "FILE:LINE:COL: text" (or "FILE: text" when line
 * is 0) and counts it. anchor is the config node the message is sorted
 * under; NULL sorts it under line:col itself.
 */
static void hg__cfg_verror(struct hg__cfg_ctx *ctx, const yaml_node_t *anchor,
                           const char *file, size_t line, size_t col,
                           const char *fmt, va_list ap)
{
    char msg[HG__CFG_MSG_MAX];
    char *full = NULL;
    int rc;

    if (ctx->errors++ >= HG__CFG_ERRORS_MAX || ctx->on_error == NULL)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (line == 0)
        rc = asprintf(&full, "%s: %s", file, msg);
    else
        rc = asprintf(&full, "%s:%zu:%zu: %s", file, line, col, msg);
    if (rc < 0) {
        ctx->on_error(ctx->arg, msg);
        return;
    }
    if (anchor != NULL)
        hg__cfg_keep(ctx, anchor->start_mark.line + 1,
                     anchor->start_mark.column + 1, full);
    else
        hg__cfg_keep(ctx, line, col, full);
}

static void hg__cfg_error_at(struct hg__cfg_ctx *ctx, const yaml_node_t *anchor,
                             const char *file, size_t line, size_t col,
                             const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    hg__cfg_verror(ctx, anchor, file, line, col, fmt, ap);
    va_end(ap);
}

/* Reports an error at a node of the config file. */
static void hg__cfg_error(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                          const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    hg__cfg_verror(ctx, node, ctx->path, node->start_mark.line + 1,
                   node->start_mark.column + 1, fmt, ap);
    va_end(ap);
}

static int hg__cfg_msg_cmp(const void *a, const void *b)
{
    const struct hg__cfg_msg *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/*
 * Hands the held-back messages to the callback in file order, and says how
 * many were over the limit.
 */
static void hg__cfg_flush(struct hg__cfg_ctx *ctx)
{
    char more[HG__CFG_MSG_MAX];

    if (ctx->nmsgs > 1)
        qsort(ctx->msgs, ctx->nmsgs, sizeof(*ctx->msgs), hg__cfg_msg_cmp);
    for (size_t i = 0; i < ctx->nmsgs; i++) {
        ctx->on_error(ctx->arg, ctx->msgs[i].text);
        free(ctx->msgs[i].text);
    }
    if (ctx->errors > HG__CFG_ERRORS_MAX && ctx->on_error != NULL) {
        snprintf(more, sizeof(more), "%s: %u more errors not shown", ctx->path,
                 ctx->errors - HG__CFG_ERRORS_MAX);
        ctx->on_error(ctx->arg, more);
    }
    free(ctx->msgs);
    ctx->msgs = NULL;
    ctx->nmsgs = ctx->capmsgs = 0;
}

static void hg__cfg_nomem(struct hg__cfg_ctx *ctx, const yaml_node_t *node)
{
    hg__cfg_error(ctx, node, "out of memory");
}

/*
 * Writes s[0..len) into buf (HG__CFG_QUOTE_BUF bytes) in double quotes,
 * with quotes, backslashes and every byte outside printable ASCII escaped
 * and long values cut, so a message stays one readable line. Returns buf.
 */
static const char *hg__cfg_quote(const char *s, size_t len, char *buf)
{
    size_t o = 0;

    buf[o++] = '"';
    for (size_t i = 0; i < len && i < HG__CFG_QUOTE_SHOWN; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            o += (size_t)sprintf(buf + o, "\\%c", c);
        else if (c < 0x20 || c > 0x7e)
            o += (size_t)sprintf(buf + o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    if (len > HG__CFG_QUOTE_SHOWN)
        o += (size_t)sprintf(buf + o, "...");
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* Quotes the text of a scalar node. */
static const char *hg__cfg_qnode(const yaml_node_t *node, char *buf)
{
    return hg__cfg_quote((const char *)node->data.scalar.value,
                         node->data.scalar.length, buf);
}

/* ---- typed access to the tree ------------------------------------------ */

/* True for a plain scalar that YAML reads as null ("", "~", "null"). */
static bool hg__cfg_is_null(const yaml_node_t *node)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

    if (node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < HG__CFG_COUNT(nulls); i++) {
        if (hg__cfg_is(node, nulls[i]))
            return true;
    }
    return false;
}

/* True when a scalar node holds exactly s (embedded NULs never match). */
static bool hg__cfg_is(const yaml_node_t *node, const char *s)
{
    size_t n = strlen(s);

    return node->type == YAML_SCALAR_NODE && node->data.scalar.length == n &&
           memcmp(node->data.scalar.value, s, n) == 0;
}

/* Names the type of a node for messages. */
static const char *hg__cfg_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a string";
    }
}

/*
 * Reports a value of the wrong type. key NULL means the whole file; item
 * says the node is one entry of the list under key.
 */
static void hg__cfg_wrong_type(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                               const char *key, bool item, const char *expected)
{
    const char *kind = hg__cfg_kind(node);

    if (key == NULL)
        hg__cfg_error(ctx, node, "the config must be %s, not %s", expected,
                      kind);
    else if (hg__cfg_is_null(node) && item)
        hg__cfg_error(ctx, node, "empty entry in \"%s\"", key);
    else if (hg__cfg_is_null(node))
        hg__cfg_error(ctx, node, "missing value for \"%s\"", key);
    else if (item)
        hg__cfg_error(ctx, node, "each entry of \"%s\" must be %s, not %s", key,
                      expected, kind);
    else
        hg__cfg_error(ctx, node, "\"%s\" must be %s, not %s", key, expected,
                      kind);
}

/* Reports a required key that a mapping lacks, at the mapping. */
static void hg__cfg_missing(struct hg__cfg_ctx *ctx, const yaml_node_t *map,
                            const char *key)
{
    hg__cfg_error(ctx, map, "missing required key \"%s\"", key);
}

/*
 * Counts n more values against the budget that keeps aliases from
 * multiplying a small file into a huge walk. Returns 0, or -1 once the
 * budget is gone (reported once).
 */
static int hg__cfg_spend(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                         size_t n)
{
    if (ctx->spent)
        return -1;
    if (n <= ctx->budget) {
        ctx->budget -= n;
        return 0;
    }
    ctx->spent = true;
    hg__cfg_error(ctx, node,
                  "the config is too large (more than %d values, aliases "
                  "included)",
                  HG__CFG_BUDGET);
    return -1;
}

/* Files one key/value pair of a mapping under its name in values. */
static void hg__cfg_pair(struct hg__cfg_ctx *ctx, const yaml_node_pair_t *p,
                         const char *const *names, size_t n,
                         yaml_node_t **values)
{
    yaml_node_t *k = yaml_document_get_node(&ctx->doc, p->key);
    char q[HG__CFG_QUOTE_BUF];

    if (k->type != YAML_SCALAR_NODE) {
        hg__cfg_error(ctx, k, "a key must be a string, not %s",
                      hg__cfg_kind(k));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!hg__cfg_is(k, names[i]))
            continue;
        if (values[i] != NULL)
            hg__cfg_error(ctx, k, "duplicate key %s", hg__cfg_qnode(k, q));
        else
            values[i] = yaml_document_get_node(&ctx->doc, p->value);
        return;
    }
    hg__cfg_error(ctx, k, "unknown key %s", hg__cfg_qnode(k, q));
}

/*
 * Reads a mapping whose keys must be among names[0..n): values[i] is set to
 * the value of names[i], or NULL when absent. Unknown and duplicate keys
 * are reported. Returns 0, or -1 when node is no mapping (reported).
 */
static int hg__cfg_map(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                       const char *key, bool item, const char *const *names,
                       size_t n, yaml_node_t **values)
{
    yaml_node_pair_t *p;

    memset(values, 0, n * sizeof(*values));
    if (node->type != YAML_MAPPING_NODE) {
        hg__cfg_wrong_type(ctx, node, key, item, "a mapping");
        return -1;
    }
    p = node->data.mapping.pairs.start;
    if (hg__cfg_spend(ctx, node, (size_t)(node->data.mapping.pairs.top - p)) !=
        0)
        return -1;
    for (; p < node->data.mapping.pairs.top; p++)
        hg__cfg_pair(ctx, p, names, n, values);
    return 0;
}

/*
 * Checks that node is a list (or, with HG__CFG_ONE, a single value) and
 * sets *n to its length; see hg__cfg_item(). An empty list is an error
 * unless HG__CFG_EMPTY. Returns 0 or -1 (reported).
 */
static int hg__cfg_list(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                        const char *key, unsigned flags, const char *expected,
                        size_t *n)
{
    if (node->type == YAML_SCALAR_NODE && (flags & HG__CFG_ONE) &&
        !hg__cfg_is_null(node)) {
        *n = 1;
        return hg__cfg_spend(ctx, node, 1);
    }
    if (node->type != YAML_SEQUENCE_NODE) {
        hg__cfg_wrong_type(ctx, node, key, false, expected);
        return -1;
    }
    *n = (size_t)(node->data.sequence.items.top -
                  node->data.sequence.items.start);
    if (*n == 0 && !(flags & HG__CFG_EMPTY)) {
        hg__cfg_error(ctx, node, "\"%s\" must not be empty", key);
        return -1;
    }
    return hg__cfg_spend(ctx, node, *n);
}

/* Returns entry i of a node that hg__cfg_list() accepted. */
static yaml_node_t *hg__cfg_item(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                                 size_t i)
{
    if (node->type == YAML_SCALAR_NODE)
        return node;
    return yaml_document_get_node(&ctx->doc,
                                  node->data.sequence.items.start[i]);
}

/*
 * Returns the text of a scalar value, or NULL after reporting a value that
 * is missing, of another type, or holds a NUL byte. The text belongs to the
 * document.
 */
static const char *hg__cfg_scalar(struct hg__cfg_ctx *ctx,
                                  const yaml_node_t *node, const char *key,
                                  bool item, const char *expected)
{
    const char *s;

    if (node->type != YAML_SCALAR_NODE || hg__cfg_is_null(node)) {
        hg__cfg_wrong_type(ctx, node, key, item, expected);
        return NULL;
    }
    s = (const char *)node->data.scalar.value;
    if (strlen(s) != node->data.scalar.length) {
        hg__cfg_error(ctx, node, "the value of \"%s\" holds a NUL byte", key);
        return NULL;
    }
    return s;
}

/* strdup() that reports failure at node. */
static char *hg__cfg_strdup(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *s)
{
    char *copy = strdup(s);

    if (copy == NULL)
        hg__cfg_nomem(ctx, node);
    return copy;
}

/* ---- uniqueness checks ------------------------------------------------- */

/* Remembers a value that must be unique; bytes must outlive the load. */
static void hg__cfg_seen_add(struct hg__cfg_ctx *ctx,
                             struct hg__cfg_seen_list *list, const void *bytes,
                             size_t len, const yaml_node_t *node)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        struct hg__cfg_seen *v = realloc(list->v, cap * sizeof(*v));
        if (v == NULL) {
            hg__cfg_nomem(ctx, node);
            return;
        }
        list->v = v;
        list->cap = cap;
    }
    list->v[list->n] = (struct hg__cfg_seen){bytes, len, node, list->n, false};
    list->n++;
}

/* Orders by value, then by place in the document. */
static int hg__cfg_seen_cmp_value(const void *a, const void *b)
{
    const struct hg__cfg_seen *x = a, *y = b;
    int c;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    c = memcmp(x->bytes, y->bytes, x->len);
    if (c != 0)
        return c;
    return (x->order > y->order) - (x->order < y->order);
}

static int hg__cfg_seen_cmp_order(const void *a, const void *b)
{
    const struct hg__cfg_seen *x = a, *y = b;

    return (x->order > y->order) - (x->order < y->order);
}

/*
 * Reports every value equal to an earlier one, at the later one, in
 * document order. Sorting keeps this O(n log n) for any size.
 */
static void hg__cfg_seen_report(struct hg__cfg_ctx *ctx,
                                struct hg__cfg_seen_list *list,
                                const char *what)
{
    struct hg__cfg_seen *v = list->v;
    char q[HG__CFG_QUOTE_BUF];

    if (list->n < 2)
        return;
    qsort(v, list->n, sizeof(*v), hg__cfg_seen_cmp_value);
    for (size_t i = 1; i < list->n; i++) {
        v[i].dup = v[i].len == v[i - 1].len &&
                   memcmp(v[i].bytes, v[i - 1].bytes, v[i].len) == 0;
    }
    qsort(v, list->n, sizeof(*v), hg__cfg_seen_cmp_order);
    for (size_t i = 0; i < list->n; i++) {
        if (v[i].dup)
            hg__cfg_error(ctx, v[i].node, "duplicate %s %s", what,
                          hg__cfg_qnode(v[i].node, q));
    }
}

/* ---- values ------------------------------------------------------------ */

/* A kind of value with units: how to parse it and what to call it. */
struct hg__cfg_unit_kind {
    int (*parse)(const char *text, uint64_t *out, const char **reason);
    const char *name; /* "duration": in "invalid duration ..." */
    const char *hint; /* "a duration": in "... must be a duration" */
};

static const struct hg__cfg_unit_kind hg__cfg_durations = {
    hg_duration_parse, "duration", "a duration"};
static const struct hg__cfg_unit_kind hg__cfg_sizes = {hg_size_parse, "size",
                                                       "a size"};
static const struct hg__cfg_unit_kind hg__cfg_rates = {hg_rate_parse, "rate",
                                                       "a rate"};

/*
 * Reads a value of kind within r into *out; an absent node (NULL) keeps
 * the default. Returns 0, or -1 after reporting.
 */
static int hg__cfg_scaled(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                          const char *key, const struct hg__cfg_unit_kind *kind,
                          const struct hg__cfg_range *r, uint64_t *out)
{
    char q[HG__CFG_QUOTE_BUF];
    const char *text, *reason;
    uint64_t v;

    if (node == NULL)
        return 0;
    text = hg__cfg_scalar(ctx, node, key, false, kind->hint);
    if (text == NULL)
        return -1;
    if (kind->parse(text, &v, &reason) != 0) {
        hg__cfg_error(ctx, node, "invalid %s %s (%s)", kind->name,
                      hg__cfg_qnode(node, q), reason);
        return -1;
    }
    if (v < r->min || v > r->max) {
        hg__cfg_error(ctx, node, "\"%s\" out of range: %s (allowed: %s)", key,
                      hg__cfg_qnode(node, q), r->text);
        return -1;
    }
    *out = v;
    return 0;
}

/* A duration within r (see hg__cfg_scaled). */
static int hg__cfg_duration(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *key, const struct hg__cfg_range *r,
                            uint64_t *out)
{
    return hg__cfg_scaled(ctx, node, key, &hg__cfg_durations, r, out);
}

/*
 * Reads one of names[0..n) and returns its index, or -1 after reporting;
 * hint lists the choices for the message.
 */
static int hg__cfg_choice(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                          const char *key, const char *const *names, size_t n,
                          const char *hint)
{
    char q[HG__CFG_QUOTE_BUF];
    const char *text = hg__cfg_scalar(ctx, node, key, false, hint);

    if (text == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(text, names[i]) == 0)
            return (int)i;
    }
    hg__cfg_error(ctx, node, "invalid %s %s (use %s)", key,
                  hg__cfg_qnode(node, q), hint);
    return -1;
}

/*
 * Reads an address to listen on into *out (replacing what it held); what
 * names it in messages. Returns 0 or -1 (reported).
 */
static int hg__cfg_sockaddr(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *key, bool item, const char *what,
                            struct hg_sockaddr *out)
{
    char q[HG__CFG_QUOTE_BUF];
    const char *text, *reason;
    struct sockaddr_storage ss;
    socklen_t len;
    char *copy;

    text = hg__cfg_scalar(ctx, node, key, item, "an address");
    if (text == NULL)
        return -1;
    if (hg_bind_parse(text, &ss, &len, &reason) != 0) {
        hg__cfg_error(ctx, node, "invalid %s %s (%s)", what,
                      hg__cfg_qnode(node, q), reason);
        return -1;
    }
    copy = hg__cfg_strdup(ctx, node, text);
    if (copy == NULL)
        return -1;
    free(out->text);
    out->text = copy;
    out->addr = ss;
    out->addr_len = len;
    return 0;
}

/*
 * Reads the name of a listener or route: 1..64 letters, digits, '-', '_',
 * '.', so it is safe in log lines and metric labels. Returns a copy owned
 * by the caller, or NULL (reported).
 */
static char *hg__cfg_name(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                          const char *what)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
    char q[HG__CFG_QUOTE_BUF];
    const char *text = hg__cfg_scalar(ctx, node, "name", false, "a name");
    size_t len;

    if (text == NULL)
        return NULL;
    len = strlen(text);
    if (len == 0 || len > HG__CFG_NAME_MAX || strspn(text, ok) != len) {
        hg__cfg_error(ctx, node,
                      "invalid %s name %s (use 1 to %d letters, digits, '-', "
                      "'_', '.')",
                      what, hg__cfg_qnode(node, q), HG__CFG_NAME_MAX);
        return NULL;
    }
    return hg__cfg_strdup(ctx, node, text);
}

/* ---- top-level sections ------------------------------------------------ */

/* workers: "auto" (0) or 1..256. */
/*
 * Reads text, already taken from node, as a whole number in 1..max into
 * *out; other is another choice to offer ("auto or "), or "". Returns 0,
 * or -1 after reporting.
 */
static int hg__cfg_count(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                         const char *key, const char *text, uint64_t max,
                         const char *other, uint64_t *out)
{
    char q[HG__CFG_QUOTE_BUF];
    size_t digits = strspn(text, "0123456789");
    uint64_t v = digits > 0 && digits <= 8 ? strtoull(text, NULL, 10) : 0;

    if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        hg__cfg_error(ctx, node, "invalid %s %s (a number, not quoted)", key,
                      hg__cfg_qnode(node, q));
        return -1;
    }
    if (text[digits] != '\0' || v < 1 || v > max) {
        hg__cfg_error(ctx, node, "invalid %s %s (use %s1..%llu)", key,
                      hg__cfg_qnode(node, q), other, (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

static void hg__cfg_workers(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    const char *text;
    uint64_t n;

    if (node == NULL)
        return;
    text = hg__cfg_scalar(ctx, node, "workers", false, "auto or a number");
    if (text == NULL)
        return;
    if (strcmp(text, "auto") == 0)
        ctx->cfg->workers = 0;
    else if (hg__cfg_count(ctx, node, "workers", text, HG__CFG_WORKERS_MAX,
                           "auto or ", &n) == 0)
        ctx->cfg->workers = (unsigned)n;
}

/* max_connections: a whole number of connections, or absent. */
static void hg__cfg_max_conns(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                              struct hg_listener_conf *l)
{
    const char *text;

    if (node == NULL)
        return;
    text = hg__cfg_scalar(ctx, node, "max_connections", false, "a number");
    if (text != NULL)
        hg__cfg_count(ctx, node, "max_connections", text, HG_MAX_CONNS_MAX, "",
                      &l->max_conns);
}

static void hg__cfg_admin(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    yaml_node_t *v[HG__ADMIN_N];

    if (node == NULL || hg__cfg_map(ctx, node, "admin", false,
                                    hg__cfg_admin_keys, HG__ADMIN_N, v) != 0)
        return;
    if (v[HG__ADMIN_LISTEN] != NULL)
        hg__cfg_sockaddr(ctx, v[HG__ADMIN_LISTEN], "listen", false,
                         "listen address", &ctx->cfg->admin_listen);
}

/*
 * A listener cannot bind admin.listen's port on its address, or on a
 * wildcard address of its family: one of the two would fail at start.
 */
static void hg__cfg_admin_clash(struct hg__cfg_ctx *ctx)
{
    char q[HG__CFG_QUOTE_BUF];

    for (size_t i = 0; i < ctx->binds.n; i++) {
        const struct hg__cfg_seen *b = &ctx->binds.v[i];
        if (hg__cfg_addr_overlap(b->bytes, &ctx->cfg->admin_listen.addr))
            hg__cfg_error(ctx, b->node,
                          "bind address %s takes admin.listen's port",
                          hg__cfg_qnode(b->node, q));
    }
}

/* True for two addresses of one family and port that one bind excludes. */
static bool hg__cfg_addr_overlap(const struct sockaddr_storage *a,
                                 const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port &&
               (x->sin_addr.s_addr == y->sin_addr.s_addr ||
                x->sin_addr.s_addr == htonl(INADDR_ANY) ||
                y->sin_addr.s_addr == htonl(INADDR_ANY));
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           (IN6_ARE_ADDR_EQUAL(&x->sin6_addr, &y->sin6_addr) ||
            IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) ||
            IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
}

static void hg__cfg_log(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    yaml_node_t *v[HG__LOG_N];
    int i;

    if (node == NULL || hg__cfg_map(ctx, node, "log", false, hg__cfg_log_keys,
                                    HG__LOG_N, v) != 0)
        return;
    if (v[HG__LOG_LEVEL] != NULL) {
        i = hg__cfg_choice(ctx, v[HG__LOG_LEVEL], "level", hg__cfg_levels,
                           HG__CFG_COUNT(hg__cfg_levels),
                           "error, warn, info, debug");
        if (i >= 0)
            ctx->cfg->log_level = (enum hg_log_level)i;
    }
    if (v[HG__LOG_FORMAT] != NULL) {
        i = hg__cfg_choice(ctx, v[HG__LOG_FORMAT], "format", hg__cfg_formats,
                           HG__CFG_COUNT(hg__cfg_formats), "text, json");
        if (i >= 0)
            ctx->cfg->log_format = (enum hg_log_format)i;
    }
}

static void hg__cfg_timeouts(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    yaml_node_t *v[HG__TO_N];
    struct hg_config *cfg = ctx->cfg;

    if (node == NULL || hg__cfg_map(ctx, node, "timeouts", false,
                                    hg__cfg_timeout_keys, HG__TO_N, v) != 0)
        return;
    hg__cfg_duration(ctx, v[HG__TO_CONNECT], "connect", &hg__cfg_timeout_range,
                     &cfg->connect_timeout_ms);
    hg__cfg_duration(ctx, v[HG__TO_HELLO], "hello", &hg__cfg_timeout_range,
                     &cfg->hello_timeout_ms);
    hg__cfg_duration(ctx, v[HG__TO_IDLE], "idle", &hg__cfg_timeout_range,
                     &cfg->idle_timeout_ms);
    hg__cfg_duration(ctx, v[HG__TO_QUEUE], "queue", &hg__cfg_timeout_range,
                     &cfg->queue_timeout_ms);
}

/* shutdown: ready_delay and drain, each zero (0s) or more. */
static void hg__cfg_shutdown(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    static const struct hg__cfg_range range = {0, 3600 * 1000, "0s..1h"};
    yaml_node_t *v[HG__SD_N];
    struct hg_config *cfg = ctx->cfg;

    if (node == NULL || hg__cfg_map(ctx, node, "shutdown", false,
                                    hg__cfg_shutdown_keys, HG__SD_N, v) != 0)
        return;
    hg__cfg_duration(ctx, v[HG__SD_READY], "ready_delay", &range,
                     &cfg->shutdown_ready_ms);
    hg__cfg_duration(ctx, v[HG__SD_DRAIN], "drain", &range,
                     &cfg->shutdown_drain_ms);
}

/*
 * tcp_keepalive: a duration in whole seconds' reach of TCP_KEEPIDLE, or
 * zero (a bare 0 too) for off.
 */
static void hg__cfg_keepalive(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    const struct hg__cfg_range *r = &hg__cfg_keepalive_range;
    char q[HG__CFG_QUOTE_BUF];
    uint64_t ms = 0;

    if (node == NULL)
        return;
    if (!hg__cfg_is(node, "0") &&
        hg__cfg_duration(ctx, node, "tcp_keepalive", r, &ms) != 0)
        return;
    if (ms > 0 && ms < 1000) {
        hg__cfg_error(ctx, node,
                      "\"tcp_keepalive\" out of range: %s "
                      "(allowed: %s)",
                      hg__cfg_qnode(node, q), r->text);
        return;
    }
    ctx->cfg->tcp_keepalive_ms = ms;
}

static void hg__cfg_max_hello(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    uint64_t bytes;

    if (node != NULL && hg__cfg_scaled(ctx, node, "max_hello", &hg__cfg_sizes,
                                       &hg__cfg_hello_range, &bytes) == 0)
        ctx->cfg->max_hello = (size_t)bytes;
}

/* resolver.servers: IP or IP:port each, kept as written. */
static void hg__cfg_servers(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    struct hg_config *cfg = ctx->cfg;
    char q[HG__CFG_QUOTE_BUF];
    struct sockaddr_storage ss;
    const char *text, *reason;
    socklen_t len;
    size_t n;

    if (node == NULL ||
        hg__cfg_list(ctx, node, "servers", HG__CFG_ONE | HG__CFG_EMPTY,
                     "a list of addresses", &n) != 0 ||
        n == 0)
        return;
    cfg->resolver_servers = calloc(n, sizeof(char *));
    if (cfg->resolver_servers == NULL) {
        hg__cfg_nomem(ctx, node);
        return;
    }
    cfg->nresolver_servers = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = hg__cfg_item(ctx, node, i);
        text = hg__cfg_scalar(ctx, item, "servers", true, "an address");
        if (text == NULL)
            continue;
        if (hg_server_parse(text, HG__CFG_DNS_PORT, &ss, &len, &reason) != 0)
            hg__cfg_error(ctx, item, "invalid resolver server %s (%s)",
                          hg__cfg_qnode(item, q), reason);
        else
            cfg->resolver_servers[i] = hg__cfg_strdup(ctx, item, text);
    }
}

static void hg__cfg_resolver(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    struct hg_config *cfg = ctx->cfg;
    yaml_node_t *v[HG__RES_N], *at;
    char qmin[HG__CFG_QUOTE_BUF], qmax[HG__CFG_QUOTE_BUF];
    int rc;

    if (node == NULL || hg__cfg_map(ctx, node, "resolver", false,
                                    hg__cfg_resolver_keys, HG__RES_N, v) != 0)
        return;
    hg__cfg_servers(ctx, v[HG__RES_SERVERS]);
    rc = hg__cfg_duration(ctx, v[HG__RES_MIN], "min_ttl",
                          &hg__cfg_min_ttl_range, &cfg->resolver_min_ttl_ms);
    rc |= hg__cfg_duration(ctx, v[HG__RES_MAX], "max_ttl",
                           &hg__cfg_max_ttl_range, &cfg->resolver_max_ttl_ms);
    if (rc != 0 || cfg->resolver_min_ttl_ms <= cfg->resolver_max_ttl_ms)
        return;
    at = v[HG__RES_MIN] ? v[HG__RES_MIN] : v[HG__RES_MAX];
    hg__cfg_error(
        ctx, at, "min_ttl %s is greater than max_ttl %s",
        v[HG__RES_MIN] ? hg__cfg_qnode(v[HG__RES_MIN], qmin) : "\"5s\"",
        v[HG__RES_MAX] ? hg__cfg_qnode(v[HG__RES_MAX], qmax) : "\"300s\"");
}

/* ---- allow lists ------------------------------------------------------- */

/*
 * Resolves a "file:" path: absolute as is, relative to the directory of
 * the config file. Returns a string owned by the caller, or NULL.
 */
static char *hg__cfg_relative(const char *base, const char *name)
{
    const char *slash = strrchr(base, '/');
    size_t dir;
    char *path;

    if (name[0] == '/' || slash == NULL)
        return strdup(name);
    dir = (size_t)(slash - base);
    path = malloc(dir + 1 + strlen(name) + 1);
    if (path != NULL)
        sprintf(path, "%.*s/%s", (int)dir, base, name);
    return path;
}

/*
 * Opens a config or allow file for reading. Only regular files are read,
 * and the open does not block, so a path to a device or a pipe fails
 * instead of hanging the load. Returns the stream, or NULL with *reason
 * set.
 */
static FILE *hg__cfg_open_file(const char *path, const char **reason)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    FILE *f;

    if (fd < 0) {
        *reason = strerror(errno);
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *reason = "not a regular file";
        close(fd);
        return NULL;
    }
    f = fdopen(fd, "r");
    if (f == NULL) {
        *reason = strerror(errno);
        close(fd);
    }
    return f;
}

/*
 * Adds the CIDR on one line of an allow file; '#' starts a comment, blank
 * lines are skipped. Returns 0, or -1 after reporting at the file's own
 * line and column (sorted under node, the entry that names the file).
 */
static int hg__cfg_allow_line(struct hg__cfg_ctx *ctx, struct hg_cidr_set *set,
                              const yaml_node_t *node, const char *path,
                              size_t lineno, char *line, size_t n)
{
    static const char space[] = " \t\r\n\v\f";
    char q[HG__CFG_QUOTE_BUF];
    const char *reason;
    char *start, *end;

    if (strlen(line) != n) {
        hg__cfg_error_at(ctx, node, path, lineno, 1,
                         "the line holds a NUL byte");
        return -1;
    }
    end = strchr(line, '#');
    if (end != NULL)
        *end = '\0';
    start = line + strspn(line, space);
    end = start + strlen(start);
    while (end > start && strchr(space, end[-1]) != NULL)
        end--;
    *end = '\0';
    if (*start == '\0' || hg_cidr_set_add(set, start, &reason) == 0)
        return 0;
    hg__cfg_error_at(ctx, node, path, lineno, (size_t)(start - line) + 1,
                     "invalid CIDR %s (%s)",
                     hg__cfg_quote(start, strlen(start), q), reason);
    return -1;
}

/* Reads every line of an open allow file into set. */
static void hg__cfg_allow_lines(struct hg__cfg_ctx *ctx,
                                struct hg_cidr_set *set,
                                const yaml_node_t *node, FILE *f,
                                const char *path)
{
    char q[HG__CFG_QUOTE_BUF];
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    unsigned bad = 0;
    ssize_t n;
    int err = 0;

    while ((n = getline(&line, &cap, f)) != -1) {
        lineno++;
        if (hg__cfg_allow_line(ctx, set, node, path, lineno, line, (size_t)n) ==
            0)
            continue;
        if (++bad == HG__CFG_FILE_ERRORS) {
            hg__cfg_error_at(ctx, node, path, lineno, 1,
                             "too many errors, the rest of this file is "
                             "not checked");
            break;
        }
    }
    if (n == -1)
        err = errno;
    if (n == -1 && ferror(f))
        hg__cfg_error(ctx, node, "cannot read allow file %s: %s",
                      hg__cfg_quote(path, strlen(path), q), strerror(err));
    free(line);
}

/* Adds the CIDRs of the allow file name (from "file:name") to set. */
static void hg__cfg_allow_file(struct hg__cfg_ctx *ctx, struct hg_cidr_set *set,
                               const yaml_node_t *node, const char *name)
{
    char q[HG__CFG_QUOTE_BUF];
    const char *reason;
    char *path;
    FILE *f;

    if (name[0] == '\0') {
        hg__cfg_error(ctx, node, "\"file:\" needs a path");
        return;
    }
    path = hg__cfg_relative(ctx->path, name);
    if (path == NULL) {
        hg__cfg_nomem(ctx, node);
        return;
    }
    f = hg__cfg_open_file(path, &reason);
    if (f == NULL) {
        hg__cfg_error(ctx, node, "cannot read allow file %s: %s",
                      hg__cfg_quote(path, strlen(path), q), reason);
        goto free_path;
    }
    hg__cfg_allow_lines(ctx, set, node, f, path);
    fclose(f);
free_path:
    free(path);
}

/*
 * Builds the set of an allow list: CIDRs and "file:PATH" entries. Returns
 * the finished set, owned by the caller, or NULL when the key is absent or
 * the list is unusable (reported).
 */
static struct hg_cidr_set *hg__cfg_allow(struct hg__cfg_ctx *ctx,
                                         yaml_node_t *node)
{
    char q[HG__CFG_QUOTE_BUF];
    struct hg_cidr_set *set;
    const char *text, *reason;
    size_t n;

    if (node == NULL || hg__cfg_list(ctx, node, "allow", HG__CFG_ONE,
                                     "a list of CIDRs", &n) != 0)
        return NULL;
    set = hg_cidr_set_new();
    if (set == NULL) {
        hg__cfg_nomem(ctx, node);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = hg__cfg_item(ctx, node, i);
        text = hg__cfg_scalar(ctx, item, "allow", true, "a CIDR");
        if (text == NULL)
            continue;
        if (strncmp(text, "file:", 5) == 0)
            hg__cfg_allow_file(ctx, set, item, text + 5);
        else if (hg_cidr_set_add(set, text, &reason) != 0)
            hg__cfg_error(ctx, item, "invalid CIDR %s (%s)",
                          hg__cfg_qnode(item, q), reason);
    }
    hg_cidr_set_finish(set);
    return set;
}

/* ---- listeners --------------------------------------------------------- */

static void hg__cfg_binds(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                          struct hg_listener_conf *l)
{
    size_t n;

    if (hg__cfg_list(ctx, node, "bind", HG__CFG_ONE, "a list of addresses",
                     &n) != 0)
        return;
    l->binds = calloc(n, sizeof(*l->binds));
    if (l->binds == NULL) {
        hg__cfg_nomem(ctx, node);
        return;
    }
    l->nbinds = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = hg__cfg_item(ctx, node, i);
        struct hg_sockaddr *b = &l->binds[i];
        if (hg__cfg_sockaddr(ctx, item, "bind", true, "bind address", b) == 0)
            hg__cfg_seen_add(ctx, &ctx->binds, &b->addr, b->addr_len, item);
    }
}

static void hg__cfg_listener(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                             struct hg_listener_conf *l)
{
    yaml_node_t *v[HG__LIS_N];

    if (hg__cfg_map(ctx, node, "listeners", true, hg__cfg_listener_keys,
                    HG__LIS_N, v) != 0)
        return;
    if (v[HG__LIS_NAME] == NULL)
        hg__cfg_missing(ctx, node, "name");
    else
        l->name = hg__cfg_name(ctx, v[HG__LIS_NAME], "listener");
    if (l->name != NULL)
        hg__cfg_seen_add(ctx, &ctx->listener_names, l->name, strlen(l->name),
                         v[HG__LIS_NAME]);
    if (v[HG__LIS_BIND] == NULL)
        hg__cfg_missing(ctx, node, "bind");
    else
        hg__cfg_binds(ctx, v[HG__LIS_BIND], l);
    l->allow = hg__cfg_allow(ctx, v[HG__LIS_ALLOW]);
    hg__cfg_max_conns(ctx, v[HG__LIS_MAX], l);
}

static void hg__cfg_listeners(struct hg__cfg_ctx *ctx, yaml_node_t *root,
                              yaml_node_t *node)
{
    struct hg_config *cfg = ctx->cfg;
    size_t n;

    if (node == NULL) {
        hg__cfg_missing(ctx, root, "listeners");
        return;
    }
    if (hg__cfg_list(ctx, node, "listeners", 0, "a list of listeners", &n) != 0)
        return;
    cfg->listeners = calloc(n, sizeof(*cfg->listeners));
    if (cfg->listeners == NULL) {
        hg__cfg_nomem(ctx, node);
        return;
    }
    cfg->nlisteners = n;
    for (size_t i = 0; i < n; i++)
        hg__cfg_listener(ctx, hg__cfg_item(ctx, node, i), &cfg->listeners[i]);
    hg__cfg_seen_report(ctx, &ctx->listener_names, "listener name");
    hg__cfg_seen_report(ctx, &ctx->binds, "bind address");
}

/* ---- routes ------------------------------------------------------------ */

/* Enters one server name of route r into the SNI table. */
static void hg__cfg_sni_add(struct hg__cfg_ctx *ctx, const yaml_node_t *node,
                            const char *name, struct hg_route_conf *r)
{
    char q[HG__CFG_QUOTE_BUF], qr[HG__CFG_QUOTE_BUF];
    const struct hg_route_conf *prev;
    const char *reason;
    void *found;

    if (hg_sni_table_add(ctx->cfg->sni, name, r, &found, &reason) == 0)
        return;
    prev = found;
    hg__cfg_qnode(node, q);
    if (prev == NULL)
        hg__cfg_error(ctx, node, "invalid server name %s (%s)", q, reason);
    else if (prev == r)
        hg__cfg_error(ctx, node,
                      "duplicate server name %s (listed twice in this route)",
                      q);
    else if (prev->name == NULL)
        hg__cfg_error(ctx, node,
                      "duplicate server name %s (also in another route)", q);
    else
        hg__cfg_error(ctx, node, "duplicate server name %s (also in route %s)",
                      q, hg__cfg_quote(prev->name, strlen(prev->name), qr));
}

static void hg__cfg_sni(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                        struct hg_route_conf *r)
{
    const char *text;
    size_t n;

    if (hg__cfg_list(ctx, node, "sni", HG__CFG_ONE, "a list of server names",
                     &n) != 0)
        return;
    r->sni = calloc(n, sizeof(char *));
    if (r->sni == NULL) {
        hg__cfg_nomem(ctx, node);
        return;
    }
    r->nsni = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = hg__cfg_item(ctx, node, i);
        text = hg__cfg_scalar(ctx, item, "sni", true, "a server name");
        if (text == NULL)
            continue;
        r->sni[i] = hg__cfg_strdup(ctx, item, text);
        if (r->sni[i] != NULL)
            hg__cfg_sni_add(ctx, item, text, r);
    }
}

static void hg__cfg_backend(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                            struct hg_route_conf *r)
{
    char host[HG_HOST_BUF], q[HG__CFG_QUOTE_BUF];
    const char *text, *reason;
    uint16_t port;

    text = hg__cfg_scalar(ctx, node, "backend", false, "a host name");
    if (text == NULL)
        return;
    if (hg_backend_parse(text, host, sizeof(host), &port, &reason) != 0) {
        hg__cfg_error(ctx, node, "invalid backend %s (%s)",
                      hg__cfg_qnode(node, q), reason);
        return;
    }
    r->backend_host = hg__cfg_strdup(ctx, node, host);
    r->backend_port = port;
}

static void hg__cfg_route(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                          struct hg_route_conf *r)
{
    yaml_node_t *v[HG__RT_N];

    if (hg__cfg_map(ctx, node, "routes", true, hg__cfg_route_keys, HG__RT_N,
                    v) != 0)
        return;
    if (v[HG__RT_NAME] == NULL)
        hg__cfg_missing(ctx, node, "name");
    else
        r->name = hg__cfg_name(ctx, v[HG__RT_NAME], "route");
    if (r->name != NULL && strcmp(r->name, "none") == 0)
        hg__cfg_error(ctx, v[HG__RT_NAME],
                      "the route name \"none\" is reserved (default_route: "
                      "none means no default)");
    else if (r->name != NULL)
        hg__cfg_seen_add(ctx, &ctx->route_names, r->name, strlen(r->name),
                         v[HG__RT_NAME]);
    if (v[HG__RT_SNI] == NULL)
        hg__cfg_missing(ctx, node, "sni");
    else
        hg__cfg_sni(ctx, v[HG__RT_SNI], r);
    if (v[HG__RT_BACKEND] == NULL)
        hg__cfg_missing(ctx, node, "backend");
    else
        hg__cfg_backend(ctx, v[HG__RT_BACKEND], r);
    r->allow = hg__cfg_allow(ctx, v[HG__RT_ALLOW]);
    hg__cfg_rate(ctx, v[HG__RT_RATE], r);
}

/* connect_rate: new backend connections a second or a minute, or absent. */
static void hg__cfg_rate(struct hg__cfg_ctx *ctx, yaml_node_t *node,
                         struct hg_route_conf *r)
{
    static const struct hg__cfg_range range = {1, HG_RATE_MAX_PER_MIN,
                                               "1/m..100000/s"};

    hg__cfg_scaled(ctx, node, "connect_rate", &hg__cfg_rates, &range,
                   &r->connect_per_min);
}

static void hg__cfg_routes(struct hg__cfg_ctx *ctx, yaml_node_t *root,
                           yaml_node_t *node)
{
    struct hg_config *cfg = ctx->cfg;
    size_t n;

    if (node == NULL) {
        hg__cfg_missing(ctx, root, "routes");
        return;
    }
    if (hg__cfg_list(ctx, node, "routes", 0, "a list of routes", &n) != 0)
        return;
    /* Allocated once: the SNI table points into this array. */
    cfg->routes = calloc(n, sizeof(*cfg->routes));
    if (cfg->routes == NULL) {
        hg__cfg_nomem(ctx, node);
        return;
    }
    cfg->nroutes = n;
    for (size_t i = 0; i < n; i++)
        hg__cfg_route(ctx, hg__cfg_item(ctx, node, i), &cfg->routes[i]);
    hg__cfg_seen_report(ctx, &ctx->route_names, "route name");
}

/* default_route: "none" or the name of a route; runs after the routes. */
static void hg__cfg_default_route(struct hg__cfg_ctx *ctx, yaml_node_t *node)
{
    struct hg_config *cfg = ctx->cfg;
    char q[HG__CFG_QUOTE_BUF];
    const char *text;

    if (node == NULL)
        return;
    text = hg__cfg_scalar(ctx, node, "default_route", false, "a route name");
    if (text == NULL || strcmp(text, "none") == 0)
        return;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (cfg->routes[i].name != NULL &&
            strcmp(cfg->routes[i].name, text) == 0) {
            cfg->default_route = &cfg->routes[i];
            return;
        }
    }
    hg__cfg_error(ctx, node, "default_route %s does not name a route",
                  hg__cfg_qnode(node, q));
}

static void hg__cfg_root(struct hg__cfg_ctx *ctx, yaml_node_t *root)
{
    yaml_node_t *v[HG__TOP_N];

    if (hg__cfg_map(ctx, root, NULL, false, hg__cfg_top_keys, HG__TOP_N, v) !=
        0)
        return;
    hg__cfg_workers(ctx, v[HG__TOP_WORKERS]);
    hg__cfg_admin(ctx, v[HG__TOP_ADMIN]);
    hg__cfg_log(ctx, v[HG__TOP_LOG]);
    hg__cfg_timeouts(ctx, v[HG__TOP_TIMEOUTS]);
    hg__cfg_keepalive(ctx, v[HG__TOP_KEEPALIVE]);
    hg__cfg_max_hello(ctx, v[HG__TOP_MAX_HELLO]);
    hg__cfg_resolver(ctx, v[HG__TOP_RESOLVER]);
    hg__cfg_listeners(ctx, root, v[HG__TOP_LISTENERS]);
    hg__cfg_admin_clash(ctx);
    hg__cfg_routes(ctx, root, v[HG__TOP_ROUTES]);
    hg__cfg_default_route(ctx, v[HG__TOP_DEFAULT_ROUTE]);
    hg__cfg_shutdown(ctx, v[HG__TOP_SHUTDOWN]);
}

/* ---- YAML -------------------------------------------------------------- */

/* Turns a byte offset into a 1-based line and column. */
static void hg__cfg_offset_pos(const char *text, size_t len, size_t offset,
                               size_t *line, size_t *col)
{
    size_t start = 0;

    *line = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            start = i + 1;
        }
    }
    *col = offset - start + 1;
}

/* Reports why libyaml could not read the file. */
static void hg__cfg_syntax(struct hg__cfg_ctx *ctx, const yaml_parser_t *p)
{
    size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;

    if (p->error == YAML_MEMORY_ERROR || p->problem == NULL) {
        hg__cfg_error_at(ctx, NULL, ctx->path, 0, 0, "out of memory");
        return;
    }
    if (p->error == YAML_READER_ERROR)
        hg__cfg_offset_pos(ctx->text, ctx->len, p->problem_offset, &line, &col);
    if (p->context == NULL)
        hg__cfg_error_at(ctx, NULL, ctx->path, line, col, "syntax error: %s",
                         p->problem);
    else
        hg__cfg_error_at(ctx, NULL, ctx->path, line, col,
                         "syntax error: %s (%s at %zu:%zu)", p->problem,
                         p->context, p->context_mark.line + 1,
                         p->context_mark.column + 1);
}

/*
 * Parses the text into ctx->doc. A second document in the stream is an
 * error, reported like any other. Returns 0 when ctx->doc holds a document
 * to walk and free, -1 when the text is no YAML at all (reported).
 */
static int hg__cfg_parse(struct hg__cfg_ctx *ctx)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    yaml_node_t *root;
    int rc = -1;

    if (!yaml_parser_initialize(&parser)) {
        hg__cfg_error_at(ctx, NULL, ctx->path, 0, 0, "out of memory");
        return -1;
    }
    /* libyaml asserts on a NULL string, even an empty one. */
    yaml_parser_set_input_string(
        &parser, (const unsigned char *)(ctx->text ? ctx->text : ""),
        ctx->text ? ctx->len : 0);
    if (!yaml_parser_load(&parser, &ctx->doc)) {
        hg__cfg_syntax(ctx, &parser);
        goto delete_parser;
    }
    rc = 0;
    if (!yaml_parser_load(&parser, &extra)) {
        hg__cfg_syntax(ctx, &parser);
        goto delete_parser;
    }
    root = yaml_document_get_root_node(&extra);
    if (root != NULL)
        hg__cfg_error(ctx, root, "only one YAML document is allowed");
    yaml_document_delete(&extra);
delete_parser:
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- snapshots --------------------------------------------------------- */

/* Returns a snapshot holding every default, or NULL when out of memory. */
static struct hg_config *hg__cfg_new(const char *path)
{
    struct hg_config *cfg = calloc(1, sizeof(*cfg));
    const char *reason;

    if (cfg == NULL)
        return NULL;
    atomic_init(&cfg->refs, 1);
    cfg->path = strdup(path);
    cfg->admin_listen.text = strdup("127.0.0.1:9100");
    cfg->sni = hg_sni_table_new();
    if (cfg->path == NULL || cfg->admin_listen.text == NULL ||
        cfg->sni == NULL) {
        hg__cfg_free(cfg);
        return NULL;
    }
    hg_bind_parse(cfg->admin_listen.text, &cfg->admin_listen.addr,
                  &cfg->admin_listen.addr_len, &reason);
    cfg->workers = 0;
    cfg->log_level = HG_LOG_INFO;
    cfg->log_format = HG_LOG_TEXT;
    cfg->connect_timeout_ms = 5 * 1000;
    cfg->hello_timeout_ms = 10 * 1000;
    cfg->queue_timeout_ms = 10 * 1000;
    cfg->idle_timeout_ms = 30 * 60 * 1000;
    cfg->tcp_keepalive_ms = 120 * 1000;
    cfg->max_hello = 64 * 1024;
    cfg->resolver_min_ttl_ms = 5 * 1000;
    cfg->resolver_max_ttl_ms = 300 * 1000;
    cfg->shutdown_ready_ms = 10 * 1000;
    cfg->shutdown_drain_ms = 15 * 1000;
    return cfg;
}

static void hg__cfg_free_listener(struct hg_listener_conf *l)
{
    free(l->name);
    for (size_t i = 0; i < l->nbinds; i++)
        free(l->binds[i].text);
    free(l->binds);
    hg_cidr_set_free(l->allow);
}

static void hg__cfg_free_route(struct hg_route_conf *r)
{
    free(r->name);
    for (size_t i = 0; i < r->nsni; i++)
        free(r->sni[i]);
    free(r->sni);
    free(r->backend_host);
    hg_cidr_set_free(r->allow);
}

/* Frees a snapshot and all it owns; the runtime slots are the daemon's. */
static void hg__cfg_free(struct hg_config *cfg)
{
    if (cfg->runtime_free != NULL)
        cfg->runtime_free(cfg);
    free(cfg->path);
    free(cfg->admin_listen.text);
    for (size_t i = 0; i < cfg->nresolver_servers; i++)
        free(cfg->resolver_servers[i]);
    free(cfg->resolver_servers);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        hg__cfg_free_listener(&cfg->listeners[i]);
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->nroutes; i++)
        hg__cfg_free_route(&cfg->routes[i]);
    free(cfg->routes);
    hg_sni_table_free(cfg->sni);
    free(cfg);
}

struct hg_config *hg_config_load_buffer(const char *name, const char *text,
                                        size_t len, hg_config_error_cb on_error,
                                        void *arg)
{
    struct hg__cfg_ctx ctx = {.path = name,
                              .text = text,
                              .len = len,
                              .on_error = on_error,
                              .arg = arg,
                              .budget = HG__CFG_BUDGET};
    yaml_node_t *root;

    ctx.cfg = hg__cfg_new(name);
    if (ctx.cfg == NULL) {
        hg__cfg_error_at(&ctx, NULL, name, 0, 0, "out of memory");
        hg__cfg_flush(&ctx);
        return NULL;
    }
    if (hg__cfg_parse(&ctx) == 0) {
        root = yaml_document_get_root_node(&ctx.doc);
        if (root == NULL)
            hg__cfg_error_at(&ctx, NULL, name, 1, 1, "the config is empty");
        else
            hg__cfg_root(&ctx, root);
        yaml_document_delete(&ctx.doc);
    }
    free(ctx.listener_names.v);
    free(ctx.route_names.v);
    free(ctx.binds.v);
    hg__cfg_flush(&ctx);
    if (ctx.errors > 0) {
        hg__cfg_free(ctx.cfg);
        return NULL;
    }
    return ctx.cfg;
}

/*
 * Reads a whole regular file into a NUL-terminated buffer owned by the
 * caller. Returns 0, or -1 with *reason set.
 */
static int hg__cfg_read_file(const char *path, char **text, size_t *len,
                             const char **reason)
{
    FILE *f = hg__cfg_open_file(path, reason);
    char *buf = NULL, *p;
    size_t n = 0, cap = 0, got;

    if (f == NULL)
        return -1;
    for (;;) {
        if (n == cap) {
            *reason = strerror(cap >= HG__CFG_FILE_MAX ? EFBIG : ENOMEM);
            p = cap >= HG__CFG_FILE_MAX ? NULL : realloc(buf, cap + 65537);
            if (p == NULL)
                goto free_buf;
            buf = p;
            cap += 65536;
        }
        got = fread(buf + n, 1, cap - n, f);
        *reason = strerror(errno);
        if (got == 0 && ferror(f))
            goto free_buf;
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
free_buf:
    free(buf);
    fclose(f);
    return -1;
}

struct hg_config *hg_config_load(const char *path, hg_config_error_cb on_error,
                                 void *arg)
{
    struct hg__cfg_ctx ctx = {.path = path, .on_error = on_error, .arg = arg};
    struct hg_config *cfg;
    char *text;
    size_t len;
    const char *reason;

    if (hg__cfg_read_file(path, &text, &len, &reason) != 0) {
        hg__cfg_error_at(&ctx, NULL, path, 0, 0, "cannot read the config: %s",
                         reason);
        hg__cfg_flush(&ctx);
        return NULL;
    }
    cfg = hg_config_load_buffer(path, text, len, on_error, arg);
    free(text);
    return cfg;
}

struct hg_config *hg_config_ref(struct hg_config *cfg)
{
    atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void hg_config_unref(struct hg_config *cfg)
{
    if (cfg != NULL && atomic_fetch_sub(&cfg->refs, 1) == 1)
        hg__cfg_free(cfg);
}

const struct hg_route_conf *hg_config_route_for(const struct hg_config *cfg,
                                                const char *sni, size_t len)
{
    if (sni == NULL || cfg->sni == NULL)
        return NULL;
    return hg_sni_table_lookup(cfg->sni, sni, len);
}
