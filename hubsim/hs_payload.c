#include "hs_payload.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hs_base64.h"
#include "hs_json.h"
#include "hs_log.h"
#include "hs_sas.h"

/* What a custom variable is written from: the set and a device's values. */
struct hs__uarg {
    const struct hs_vars *vars;
    const struct hs_vslot *slots;
};

/* One "kind(arg, arg)" of a distribution. */
struct hs__part {
    char kind[16];
    char args[3][512];
    size_t nargs;
    size_t col; /* where it starts, from 1 */
};

static int hs__add(struct hs_payload *p, const struct hs_pl_item *it);
static const char *hs__next_part(const char **s, const char *start,
                                 struct hs__part *part);
static int hs__dist_part(struct hs_payload *p, const struct hs__part *part,
                         const char *default_tpl,
                         const char *(*lookup)(void *, const char *), void *arg,
                         char *err, size_t errlen);
static int hs__pct(const char *text, unsigned *pct);
static const struct hs_pl_item *hs__pick(const struct hs_payload *p,
                                         uint32_t device, uint64_t *rng);
static size_t hs__user(const void *arg, uint32_t i,
                       const struct hs_template_ctx *c, char *buf, size_t cap);
static int hs__bag(const struct hs_payload *p, const struct hs_template_ctx *c,
                   char *out, size_t cap, size_t *len, char *err,
                   size_t errlen);
static int hs__bag_member(const char *key, const struct hs_json *v, char *out,
                          size_t cap, size_t *len, char *err, size_t errlen);

void hs_payload_init(struct hs_payload *p)
{
    memset(p, 0, sizeof(*p));
}

void hs_payload_free(struct hs_payload *p)
{
    for (size_t i = 0; i < p->nitems; i++) {
        hs_template_free(&p->items[i].tpl);
        free(p->items[i].bytes);
        free(p->items[i].device_id);
    }
    free(p->items);
    free(p->own);
    free(p->state);
    if (p->has_header)
        hs_template_free(&p->header);
    free(p->properties);
    hs_vars_free(&p->vars);
    memset(p, 0, sizeof(*p));
}

static int hs__add(struct hs_payload *p, const struct hs_pl_item *it)
{
    struct hs_pl_item *items =
        realloc(p->items, (p->nitems + 1) * sizeof(*items));
    if (items == NULL)
        return -1;
    p->items = items;
    items[p->nitems++] = *it;
    if (it->device_id == NULL)
        p->total += it->pct;
    return 0;
}

int hs_payload_add_template(struct hs_payload *p, unsigned pct,
                            const char *text, const char *device_id)
{
    struct hs_pl_item it = {.kind = HS_PL_TEMPLATE, .pct = pct};
    if (hs_template_compile_vars(&it.tpl, text, p->vars.names, p->vars.n) < 0)
        return -1;
    hs_template_warn_unknown("template", text, p->vars.names, p->vars.n);
    it.device_id = device_id ? strdup(device_id) : NULL;
    if ((device_id && it.device_id == NULL) || hs__add(p, &it) < 0) {
        hs_template_free(&it.tpl);
        free(it.device_id);
        return -1;
    }
    return 0;
}

int hs_payload_add_fix(struct hs_payload *p, unsigned pct, const uint8_t *bytes,
                       size_t len, const char *device_id)
{
    struct hs_pl_item it = {.kind = HS_PL_FIX, .pct = pct, .len = len};
    it.bytes = malloc(len ? len : 1);
    it.device_id = device_id ? strdup(device_id) : NULL;
    if (it.bytes == NULL || (device_id && it.device_id == NULL))
        goto failed;
    if (bytes != NULL)
        memcpy(it.bytes, bytes, len);
    else
        memset(it.bytes, 0, len);
    if (hs__add(p, &it) < 0)
        goto failed;
    return 0;
failed:
    free(it.bytes);
    free(it.device_id);
    return -1;
}

int hs_payload_set_header(struct hs_payload *p, const char *text)
{
    if (hs_template_compile_vars(&p->header, text, p->vars.names, p->vars.n) <
        0)
        return -1;
    hs_template_warn_unknown("Header", text, p->vars.names, p->vars.n);
    p->has_header = true;
    return 0;
}

/* ------------------------------------------------------------------ */
/* PayloadDistribution                                                 */
/* ------------------------------------------------------------------ */

int hs_payload_dist_parse(struct hs_payload *p, const char *spec,
                          const char *default_tpl,
                          const char *(*lookup)(void *arg, const char *name),
                          void *arg, char *err, size_t errlen)
{
    const char *s = spec;
    struct hs__part part;
    size_t before = p->nitems;
    for (;;) {
        const char *why = hs__next_part(&s, spec, &part);
        if (why != NULL)
            return hs_vars_err(err, errlen, "column %zu: %s",
                               (size_t)(s - spec) + 1, why);
        if (part.kind[0] == '\0')
            break;
        if (hs__dist_part(p, &part, default_tpl, lookup, arg, err, errlen) < 0)
            return -1;
    }
    if (p->nitems == before)
        return hs_vars_err(err, errlen,
                           "no payload given (fixSize, fix or "
                           "template)");
    return 0;
}

bool hs_payload_dist_names(const char *spec, const char *name)
{
    const char *s = spec;
    struct hs__part part;
    while (hs__next_part(&s, spec, &part) == NULL && part.kind[0] != '\0')
        if (strcasecmp(part.kind, "template") == 0 && part.nargs == 2 &&
            strcasecmp(part.args[1], name) == 0)
            return true;
    return false;
}

/*
 * The next "kind(args)" at *s into part (kind empty at the end). Returns
 * NULL, or why the text is wrong there (*s then points at the spot).
 */
static const char *hs__next_part(const char **s, const char *start,
                                 struct hs__part *part)
{
    const char *p = *s;
    memset(part, 0, sizeof(*part));
    while (isspace((unsigned char)*p))
        p++;
    *s = p;
    if (*p == '\0')
        return NULL;
    part->col = (size_t)(p - start) + 1;
    size_t k = 0;
    while (isalpha((unsigned char)p[k]))
        k++;
    if (k == 0 || k >= sizeof(part->kind))
        return "expected fixSize(...), fix(...) or template(...)";
    memcpy(part->kind, p, k);
    p += k;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '(') {
        *s = p;
        return "expected '(' after the payload kind";
    }
    p++;
    for (;;) {
        size_t n = strcspn(p, ",)");
        if (p[n] == '\0') {
            *s = p + n;
            return "')' missing";
        }
        if (part->nargs == 3) {
            *s = p;
            return "too many arguments";
        }
        const char *a = p, *b = p + n;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        if ((size_t)(b - a) >= sizeof(part->args[0])) {
            *s = a;
            return "argument too long";
        }
        memcpy(part->args[part->nargs++], a, (size_t)(b - a));
        p += n + 1;
        if (p[-1] == ')')
            break;
    }
    *s = p;
    return NULL;
}

static int hs__dist_part(struct hs_payload *p, const struct hs__part *part,
                         const char *default_tpl,
                         const char *(*lookup)(void *, const char *), void *arg,
                         char *err, size_t errlen)
{
    unsigned pct;
    size_t col = part->col;
    bool fixsize = strcasecmp(part->kind, "fixSize") == 0;
    bool fix = strcasecmp(part->kind, "fix") == 0;
    bool tpl = strcasecmp(part->kind, "template") == 0;
    if (!fixsize && !fix && !tpl)
        return hs_vars_err(err, errlen,
                           "column %zu: unknown payload kind %s (fixSize, fix "
                           "or template)",
                           col, part->kind);
    if (hs__pct(part->args[0], &pct) < 0)
        return hs_vars_err(err, errlen,
                           "column %zu: %s: the share must be a whole number "
                           "from 1 to 100, not \"%s\"",
                           col, part->kind, part->args[0]);
    if ((fixsize || fix) && part->nargs != 2)
        return hs_vars_err(err, errlen, "column %zu: %s takes (percent, %s)",
                           col, part->kind, fix ? "base64" : "bytes");
    if (fixsize) {
        char *end;
        unsigned long n = strtoul(part->args[1], &end, 10);
        if (!isdigit((unsigned char)part->args[1][0]) || *end != '\0' ||
            n > 256 * 1024)
            return hs_vars_err(err, errlen,
                               "column %zu: fixSize: size must be 0 to 262144 "
                               "bytes, not \"%s\"",
                               col, part->args[1]);
        if (hs_payload_add_fix(p, pct, NULL, n, NULL) < 0)
            return hs_vars_err(err, errlen, "out of memory");
        return 0;
    }
    if (fix) {
        uint8_t bytes[512];
        long n = hs_base64_decode(part->args[1], bytes, sizeof(bytes));
        if (n < 0)
            return hs_vars_err(err, errlen,
                               "column %zu: fix: \"%s\" is not base64", col,
                               part->args[1]);
        if (hs_payload_add_fix(p, pct, bytes, (size_t)n, NULL) < 0)
            return hs_vars_err(err, errlen, "out of memory");
        return 0;
    }
    if (part->nargs > 2)
        return hs_vars_err(err, errlen,
                           "column %zu: template takes (percent[, name])", col);
    const char *text = default_tpl;
    if (part->nargs == 2 && strcasecmp(part->args[1], "default") != 0) {
        text = lookup(arg, part->args[1]);
        if (text == NULL)
            return hs_vars_err(
                err, errlen,
                "column %zu: template %s: no setting of that name "
                "holds a template",
                col, part->args[1]);
    }
    if (hs_payload_add_template(p, pct, text, NULL) < 0)
        return hs_vars_err(err, errlen, "out of memory");
    return 0;
}

/* "25" or "25%", 1..100. */
static int hs__pct(const char *text, unsigned *pct)
{
    char *end;
    if (!isdigit((unsigned char)text[0]))
        return -1;
    unsigned long v = strtoul(text, &end, 10);
    if (*end == '%')
        end++;
    if (*end != '\0' || v < 1 || v > 100)
        return -1;
    *pct = (unsigned)v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The fleet, and each message                                         */
/* ------------------------------------------------------------------ */

int hs_payload_finish(struct hs_payload *p, char *const *ids, uint32_t n,
                      char *err, size_t errlen)
{
    p->ndevices = n;
    p->own = calloc(n ? n : 1, sizeof(*p->own));
    if (p->vars.n > 0)
        p->state = calloc((size_t)n * 2 * p->vars.n, sizeof(*p->state));
    if (p->own == NULL || (p->vars.n > 0 && p->state == NULL))
        return hs_vars_err(err, errlen, "out of memory");
    for (size_t i = 0; i < p->nitems; i++) {
        const char *id = p->items[i].device_id;
        uint32_t d = 0;
        while (id != NULL && d < n && strcmp(ids[d], id) != 0)
            d++;
        if (id != NULL && d == n)
            fprintf(stderr,
                    "hubsim: warning: a payload is for device %s, "
                    "which is not in this run\n",
                    id);
        else if (id != NULL && p->own[d] != 0)
            return hs_vars_err(err, errlen, "two payloads for device %s", id);
        else if (id != NULL)
            p->own[d] = (uint32_t)i + 1;
    }
    for (uint32_t d = 0; p->total == 0 && d < n; d++)
        if (p->own[d] == 0)
            return hs_vars_err(err, errlen, "device %s has no payload", ids[d]);
    if (p->total != 0 && p->total != 100)
        fprintf(stderr,
                "hubsim: warning: payload shares add up to %u, not 100; "
                "each is drawn in proportion to its share\n",
                p->total);
    return 0;
}

/* The device's own payload, or one drawn by the shares. */
static const struct hs_pl_item *hs__pick(const struct hs_payload *p,
                                         uint32_t device, uint64_t *rng)
{
    if (device < p->ndevices && p->own[device] != 0)
        return &p->items[p->own[device] - 1];
    uint64_t r = p->total > 1 ? hs_rand(rng) % p->total : 0;
    const struct hs_pl_item *last = NULL;
    for (size_t i = 0; i < p->nitems; i++) {
        if (p->items[i].device_id != NULL)
            continue;
        last = &p->items[i];
        if (r < p->items[i].pct)
            return last;
        r -= p->items[i].pct;
    }
    return last;
}

void hs_payload_message(const struct hs_payload *p, uint32_t device,
                        const struct hs_template_ctx *c, struct hs_message *m)
{
    static atomic_bool warned;
    struct hs_vslot *slots =
        p->state ? p->state + (size_t)device * 2 * p->vars.n : NULL;
    struct hs__uarg u = {&p->vars, slots};
    struct hs_template_ctx ctx = *c;
    ctx.user = hs__user;
    ctx.user_arg = &u;
    const struct hs_pl_item *it = hs__pick(p, device, c->rng);
    if (it->kind == HS_PL_FIX) {
        /* As in the simulator, only a template moves the variables on; but
         * a header needs values, so the first message draws them. */
        if (slots != NULL && p->has_header && !slots[0].has)
            hs_vars_next(&p->vars, slots, c->iteration, c->rng);
        m->payload = it->bytes;
        m->len = it->len;
    } else {
        if (slots != NULL)
            hs_vars_next(&p->vars, slots, c->iteration, c->rng);
        m->len = hs_template_render(&it->tpl, &ctx, (char *)m->buf, m->cap);
        m->payload = m->buf;
        static atomic_bool cut;
        if (m->len == m->cap && !atomic_exchange(&cut, true))
            hs_log_warn("a payload reached %zu bytes, the most a message may "
                        "carry, and was cut there (said once)",
                        m->cap);
    }
    int n =
        snprintf(m->topic, sizeof(m->topic), "devices/%s/messages/events/%s",
                 c->device_id, p->properties ? p->properties : "");
    m->topic_len = (size_t)n;
    if (!p->has_header)
        return;
    char why[256];
    size_t len = 0, at = m->topic_len + (p->properties ? 1 : 0);
    if (at < sizeof(m->topic) &&
        hs__bag(p, &ctx, m->topic + at, sizeof(m->topic) - at, &len, why,
                sizeof(why)) == 0) {
        if (len > 0 && p->properties)
            m->topic[m->topic_len] = '&';
        m->topic_len = len > 0 ? at + len : m->topic_len;
        m->topic[m->topic_len] = '\0';
    } else {
        m->topic[m->topic_len] = '\0';
        if (!atomic_exchange(&warned, true))
            hs_log_warn("Header: message sent without its properties: %s "
                        "(said once)",
                        why);
    }
}

int hs_payload_check_header(const struct hs_payload *p,
                            const struct hs_template_ctx *c, char *err,
                            size_t errlen)
{
    if (!p->has_header)
        return 0;
    struct hs_vslot *slots = calloc(2 * p->vars.n + 1, sizeof(*slots));
    char *bag = malloc(HS_TOPIC_MAX);
    int rc = hs_vars_err(err, errlen, "out of memory");
    if (slots != NULL && bag != NULL) {
        struct hs__uarg u = {&p->vars, slots};
        struct hs_template_ctx ctx = *c;
        ctx.user = hs__user;
        ctx.user_arg = &u;
        size_t len;
        hs_vars_next(&p->vars, slots, 0, c->rng);
        rc = hs__bag(p, &ctx, bag, HS_TOPIC_MAX - 256, &len, err, errlen);
    }
    free(bag);
    free(slots);
    return rc;
}

static size_t hs__user(const void *arg, uint32_t i,
                       const struct hs_template_ctx *c, char *buf, size_t cap)
{
    const struct hs__uarg *u = arg;
    if (u->slots == NULL)
        return 0;
    return hs_vars_write(u->vars, u->slots, i, c, buf, cap);
}

/*
 * Renders the header and writes its members as a URL-encoded bag
 * (k=v&k2=v2) into out. Returns 0, or -1 with why.
 */
static int hs__bag(const struct hs_payload *p, const struct hs_template_ctx *c,
                   char *out, size_t cap, size_t *len, char *err, size_t errlen)
{
    char text[2 * HS_TOPIC_MAX];
    size_t n = hs_template_render(&p->header, c, text, sizeof(text));
    if (n == sizeof(text))
        return hs_vars_err(err, errlen, "the header is longer than %zu bytes",
                           sizeof(text) - 1);
    struct hs_json *obj;
    struct hs_json_error je;
    if (hs_json_parse(text, n, HS_JSON_BARE_KEYS, &obj, &je) < 0)
        return hs_vars_err(err, errlen,
                           "the header is not JSON (%s at line %u, column %u): "
                           "%.*s",
                           je.why, je.line, je.col, (int)(n > 200 ? 200 : n),
                           text);
    int rc = 0;
    *len = 0;
    if (obj->type != HS_JSON_OBJECT)
        rc = hs_vars_err(err, errlen,
                         "the header must give a JSON object, not %s",
                         hs_json_type_name(obj));
    for (size_t i = 0; rc == 0 && i < obj->n; i++)
        rc = hs__bag_member(obj->keys[i], &obj->items[i], out, cap, len, err,
                            errlen);
    hs_json_free(obj);
    return rc;
}

/* Appends "key=value" (URL-encoded, '&' between) unless value is null. */
static int hs__bag_member(const char *key, const struct hs_json *v, char *out,
                          size_t cap, size_t *len, char *err, size_t errlen)
{
    const char *text = v->type == HS_JSON_TRUE    ? "true"
                       : v->type == HS_JSON_FALSE ? "false"
                                                  : v->str;
    if (v->type == HS_JSON_NULL)
        return 0;
    if (text == NULL || key[0] == '\0')
        return hs_vars_err(err, errlen,
                           "header property %s is %s; properties are strings, "
                           "numbers or booleans with a name",
                           key, hs_json_type_name(v));
    size_t n = *len;
    if (n > 0 && n + 1 < cap)
        out[n] = '&';
    n += n > 0;
    n += hs_sas_urlencode(n < cap ? out + n : NULL, n < cap ? cap - n : 0, key);
    if (n + 1 < cap)
        out[n] = '=';
    n++;
    n +=
        hs_sas_urlencode(n < cap ? out + n : NULL, n < cap ? cap - n : 0, text);
    if (n >= cap)
        return hs_vars_err(err, errlen,
                           "the properties take more than %zu bytes", cap - 1);
    *len = n;
    return 0;
}
