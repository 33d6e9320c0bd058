#include "hs_vars.h"

#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hs_opts.h"

static const char *const hs__keys[] = {
    "name", "random", "randomDouble", "sequence",           "min",
    "max",  "step",   "values",       "customLengthString",
};
#define HS__NKEYS (sizeof(hs__keys) / sizeof(hs__keys[0]))

/* What one item says, before it becomes a definition. */
struct hs__item {
    const struct hs_json *key[HS__NKEYS];
};

static int hs__def(struct hs_vars *vars, const struct hs_json *obj, size_t pos,
                   const char *what, char *err, size_t errlen);
static int hs__kind(struct hs_vdef *d, const struct hs__item *it, char *why,
                    size_t cap);
static int hs__numbers(struct hs_vdef *d, const struct hs__item *it, char *why,
                       size_t cap);
static int hs__values(struct hs_vdef *d, const struct hs_json *arr, char *why,
                      size_t cap);
static int hs__bool(const struct hs_json *v, const char *key, bool *out,
                    char *why, size_t cap);
static void hs__refs(struct hs_vars *vars, const char *what);
static size_t hs__put(char *buf, size_t cap, const char *s, size_t len);
static size_t hs__write_slot(const struct hs_vars *vars, uint32_t i,
                             const struct hs_vslot *s,
                             const struct hs_template_ctx *c, char *buf,
                             size_t cap);

int hs_vars_parse(struct hs_vars *vars, const struct hs_json *arr,
                  const char *what, char *err, size_t errlen)
{
    memset(vars, 0, sizeof(*vars));
    if (arr->type != HS_JSON_ARRAY)
        return hs_vars_err(err, errlen, "%s: must be a JSON array, not %s",
                           what, hs_json_type_name(arr));
    if (arr->n > HS_VARS_MAX)
        return hs_vars_err(err, errlen, "%s: more than %d variables", what,
                           HS_VARS_MAX);
    vars->defs = calloc(arr->n ? arr->n : 1, sizeof(*vars->defs));
    vars->names = calloc(arr->n ? arr->n : 1, sizeof(*vars->names));
    if (vars->defs == NULL || vars->names == NULL) {
        hs_vars_free(vars);
        return hs_vars_err(err, errlen, "%s: out of memory", what);
    }
    for (size_t i = 0; i < arr->n; i++) {
        if (hs__def(vars, &arr->items[i], i + 1, what, err, errlen) < 0) {
            hs_vars_free(vars);
            return -1;
        }
    }
    hs__refs(vars, what);
    return 0;
}

void hs_vars_free(struct hs_vars *vars)
{
    for (size_t i = 0; vars->defs && i < vars->n; i++) {
        struct hs_vdef *d = &vars->defs[i];
        free(d->name);
        for (size_t k = 0; k < d->nitems; k++)
            free(d->items[k].text);
        free(d->items);
    }
    free(vars->defs);
    free(vars->names);
    memset(vars, 0, sizeof(*vars));
}

/* Item pos (from 1) of the array: an object with a new name and one kind. */
static int hs__def(struct hs_vars *vars, const struct hs_json *obj, size_t pos,
                   const char *what, char *err, size_t errlen)
{
    char why[256] = "";
    struct hs__item it = {0};
    if (obj->type != HS_JSON_OBJECT)
        return hs_vars_err(err, errlen,
                           "%s: item %zu (line %u, column %u) is %s, not an "
                           "object with a name",
                           what, pos, obj->line, obj->col,
                           hs_json_type_name(obj));
    const struct hs_json *name = hs_json_get(obj, "name");
    if (name == NULL || name->type != HS_JSON_STRING || name->len == 0)
        return hs_vars_err(err, errlen,
                           "%s: item %zu (line %u, column %u) needs a \"name\" "
                           "(a non-empty string)",
                           what, pos, obj->line, obj->col);
    for (size_t i = 0; i < vars->n; i++)
        if (strcmp(vars->defs[i].name, name->str) == 0)
            return hs_vars_err(err, errlen,
                               "%s: item %zu: the name %s is taken "
                               "by item %zu",
                               what, pos, name->str, i + 1);
    for (size_t k = 0; k < obj->n; k++) {
        size_t j = 0;
        while (j < HS__NKEYS && strcasecmp(obj->keys[k], hs__keys[j]))
            j++;
        if (j < HS__NKEYS && it.key[j] != NULL)
            return hs_vars_err(err, errlen, "%s: variable %s: %s given twice",
                               what, name->str, hs__keys[j]);
        if (j < HS__NKEYS) {
            it.key[j] = &obj->items[k];
            continue;
        }
        const char *near = hs_opts_suggest(obj->keys[k], hs__keys, HS__NKEYS);
        fprintf(
            stderr,
            "hubsim: warning: %s: variable %s: unknown key %s ignored%s%s%s\n",
            what, name->str, obj->keys[k], near ? " (did you mean " : "",
            near ? near : "", near ? "?)" : "");
    }
    struct hs_vdef *d = &vars->defs[vars->n];
    d->name = strdup(name->str);
    if (d->name == NULL)
        return hs_vars_err(err, errlen, "%s: out of memory", what);
    vars->names[vars->n++] = d->name;
    if (hs__kind(d, &it, why, sizeof(why)) < 0 ||
        hs__numbers(d, &it, why, sizeof(why)) < 0 ||
        (it.key[7] && hs__values(d, it.key[7], why, sizeof(why)) < 0))
        return hs_vars_err(err, errlen, "%s: variable %s (item %zu): %s", what,
                           d->name, pos, why);
    return 0;
}

/* Exactly one kind: random, randomDouble, sequence, string, values. */
static int hs__kind(struct hs_vdef *d, const struct hs__item *it, char *why,
                    size_t cap)
{
    bool random = false, dbl = false, seq = false;
    if (hs__bool(it->key[1], "random", &random, why, cap) < 0 ||
        hs__bool(it->key[2], "randomDouble", &dbl, why, cap) < 0 ||
        hs__bool(it->key[3], "sequence", &seq, why, cap) < 0)
        return -1;
    bool str = it->key[8] != NULL, values = it->key[7] != NULL && !seq;
    if (random + dbl + seq + str + values > 1) {
        snprintf(why, cap,
                 "give only one of random, randomDouble, "
                 "sequence, values and customLengthString");
        return -1;
    }
    if (seq && it->key[7] == NULL) {
        snprintf(why, cap, "a sequence needs \"values\"");
        return -1;
    }
    d->kind = random   ? HS_VK_RANDOM
              : dbl    ? HS_VK_DOUBLE
              : seq    ? HS_VK_SEQUENCE
              : str    ? HS_VK_STRING
              : values ? HS_VK_VALUES
                       : HS_VK_COUNTER;
    return 0;
}

static int hs__bool(const struct hs_json *v, const char *key, bool *out,
                    char *why, size_t cap)
{
    if (v == NULL)
        return 0;
    if (v->type != HS_JSON_TRUE && v->type != HS_JSON_FALSE) {
        snprintf(why, cap, "%s must be true or false, not %s", key,
                 hs_json_type_name(v));
        return -1;
    }
    *out = v->type == HS_JSON_TRUE;
    return 0;
}

/* min, max, step, customLengthString, as the kind wants them. */
static int hs__numbers(struct hs_vdef *d, const struct hs__item *it, char *why,
                       size_t cap)
{
    const struct hs_json *min = it->key[4], *max = it->key[5];
    const struct hs_json *step = it->key[6], *len = it->key[8];
    static const char *const kinds[] = {
        "counter", "random", "randomDouble", "values", "customLengthString",
        "sequence"};
    const char *ignored[2] = {NULL, NULL};
    if (d->kind != HS_VK_COUNTER && step)
        ignored[0] = "step";
    if (d->kind >= HS_VK_VALUES && (min || max))
        ignored[1] = min ? "min" : "max";
    for (int i = 0; i < 2; i++)
        if (ignored[i])
            fprintf(stderr,
                    "hubsim: warning: variable %s: %s does nothing for a %s "
                    "variable\n",
                    d->name, ignored[i], kinds[d->kind]);
    const int64_t lim = INT64_C(1) << 53;
    if (d->kind == HS_VK_DOUBLE) {
        d->dmin = min ? min->num : 0;
        d->dmax = max ? max->num : 1;
        if ((min && min->type != HS_JSON_NUMBER) ||
            (max && max->type != HS_JSON_NUMBER) || !(d->dmax > d->dmin)) {
            snprintf(why, cap, "randomDouble needs numbers min < max");
            return -1;
        }
        return 0;
    }
    if (d->kind == HS_VK_STRING) {
        int64_t n;
        if (!hs_json_int(len, &n) || n < 0 || n > 65536) {
            snprintf(why, cap,
                     "customLengthString must be a whole number "
                     "from 0 to 65536");
            return -1;
        }
        d->length = (uint32_t)n;
        return 0;
    }
    if (d->kind != HS_VK_COUNTER && d->kind != HS_VK_RANDOM)
        return 0;
    const struct hs_json *nums[] = {min, max, step};
    int64_t *dst[] = {&d->min, &d->max, &d->step};
    const char *names[] = {"min", "max", "step"};
    d->min = d->kind == HS_VK_COUNTER ? 1 : 0;
    d->max = INT32_MAX;
    d->step = 1;
    for (int i = 0; i < 3; i++) {
        if (nums[i] == NULL)
            continue;
        if (!hs_json_int(nums[i], dst[i]) || *dst[i] < -lim || *dst[i] > lim) {
            snprintf(why, cap,
                     "%s must be a whole number (within +-2^53), "
                     "not %s",
                     names[i],
                     nums[i]->str ? nums[i]->str : hs_json_type_name(nums[i]));
            return -1;
        }
    }
    d->has_max = max != NULL;
    if (d->kind == HS_VK_RANDOM && (min == NULL) != (max == NULL)) {
        snprintf(why, cap, "random takes both min and max, or neither");
        return -1;
    }
    if (d->kind == HS_VK_RANDOM && d->max <= d->min) {
        snprintf(why, cap, "random needs min < max (max is exclusive)");
        return -1;
    }
    if (d->kind == HS_VK_COUNTER && d->has_max && d->min > d->max) {
        snprintf(why, cap, "a counter's min is above its max");
        return -1;
    }
    return 0;
}

/* "values": strings, numbers or booleans; at least one. */
static int hs__values(struct hs_vdef *d, const struct hs_json *arr, char *why,
                      size_t cap)
{
    if (arr->type != HS_JSON_ARRAY || arr->n == 0) {
        snprintf(why, cap, "values must be a non-empty array");
        return -1;
    }
    d->items = calloc(arr->n, sizeof(*d->items));
    if (d->items == NULL) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < arr->n; i++) {
        const struct hs_json *v = &arr->items[i];
        const char *text = v->type == HS_JSON_TRUE    ? "true"
                           : v->type == HS_JSON_FALSE ? "false"
                                                      : v->str;
        if (text == NULL) {
            snprintf(why, cap,
                     "value %zu is %s; values are strings, numbers "
                     "or booleans",
                     i + 1, hs_json_type_name(v));
            return -1;
        }
        struct hs_vitem *item = &d->items[d->nitems++];
        item->text = strdup(text);
        item->len = strlen(text);
        item->ref = -1;
        item->builtin = HS_VAR_NONE;
        if (item->text == NULL) {
            snprintf(why, cap, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* A sequence's "$.Name" values: another variable, a built-in, or text. */
static void hs__refs(struct hs_vars *vars, const char *what)
{
    for (size_t i = 0; i < vars->n; i++) {
        struct hs_vdef *d = &vars->defs[i];
        for (size_t k = 0; d->kind == HS_VK_SEQUENCE && k < d->nitems; k++) {
            struct hs_vitem *it = &d->items[k];
            if (strncmp(it->text, "$.", 2) != 0)
                continue;
            for (size_t j = 0; j < vars->n; j++)
                if (strcmp(vars->defs[j].name, it->text + 2) == 0 &&
                    vars->defs[j].kind != HS_VK_SEQUENCE)
                    it->ref = (int32_t)j;
            if (it->ref < 0)
                it->builtin = hs_template_builtin(it->text + 2);
            if (it->ref < 0 && it->builtin == HS_VAR_NONE)
                fprintf(stderr,
                        "hubsim: warning: %s: variable %s: %s names no "
                        "variable (or another sequence); sent as written\n",
                        what, d->name, it->text);
        }
    }
}

void hs_vars_next(const struct hs_vars *vars, struct hs_vslot *slots,
                  uint64_t iteration, uint64_t *rng)
{
    struct hs_vslot *cur = slots, *prev = slots + vars->n;
    memcpy(prev, cur, vars->n * sizeof(*cur));
    for (size_t i = 0; i < vars->n; i++) {
        const struct hs_vdef *d = &vars->defs[i];
        struct hs_vslot *s = &cur[i];
        int64_t x;
        switch (d->kind) {
        case HS_VK_COUNTER:
            if (!s->has || (d->has_max && s->v.i > d->max - d->step) ||
                __builtin_add_overflow(s->v.i, d->step, &x))
                x = d->min;
            s->v.i = x;
            break;
        case HS_VK_RANDOM:
            s->v.i =
                d->min + (int64_t)(hs_rand(rng) % (uint64_t)(d->max - d->min));
            break;
        case HS_VK_DOUBLE: {
            /* Weighted, not min + u * (max - min): the range itself may be
             * beyond the largest double. */
            double u = (double)(hs_rand(rng) >> 11) * 0x1p-53;
            s->v.d = d->dmin * (1 - u) + d->dmax * u;
            if (!(s->v.d < d->dmax)) /* rounded up to max: keep [min, max) */
                s->v.d = nextafter(d->dmax, d->dmin);
        } break;
        case HS_VK_VALUES:
            s->item = (uint32_t)(hs_rand(rng) % d->nitems);
            break;
        case HS_VK_STRING:
            s->v.seed = hs_rand(rng) | 1;
            break;
        case HS_VK_SEQUENCE:
            continue;
        }
        s->has = true;
        s->ref = -1;
    }
    /* Sequences last: they take the values just made, and put back the
     * ones they refer to but do not use this time. */
    for (size_t i = 0; i < vars->n; i++) {
        const struct hs_vdef *d = &vars->defs[i];
        if (d->kind != HS_VK_SEQUENCE)
            continue;
        uint32_t k = (uint32_t)(iteration % d->nitems);
        int32_t ref = d->items[k].ref;
        if (ref >= 0 && cur[ref].has) {
            cur[i] = cur[ref];
            cur[i].ref = ref;
        } else {
            cur[i] = (struct hs_vslot){.has = true, .item = k, .ref = -1};
        }
        for (size_t j = 0; j < d->nitems; j++) {
            int32_t r = d->items[j].ref;
            if (r >= 0 && r != ref)
                cur[r] = prev[r];
        }
    }
}

size_t hs_vars_write(const struct hs_vars *vars, const struct hs_vslot *slots,
                     uint32_t i, const struct hs_template_ctx *c, char *buf,
                     size_t cap)
{
    const struct hs_vslot *s = &slots[i];
    if (!s->has) {
        size_t n = hs__put(buf, cap, "$.", 2);
        return n + hs__put(buf + n, cap - n, vars->defs[i].name,
                           strlen(vars->defs[i].name));
    }
    if (vars->defs[i].kind == HS_VK_SEQUENCE && s->ref >= 0)
        return hs__write_slot(vars, (uint32_t)s->ref, s, c, buf, cap);
    return hs__write_slot(vars, i, s, c, buf, cap);
}

/* Writes s as a value of variable i's kind. */
static size_t hs__write_slot(const struct hs_vars *vars, uint32_t i,
                             const struct hs_vslot *s,
                             const struct hs_template_ctx *c, char *buf,
                             size_t cap)
{
    const struct hs_vdef *d = &vars->defs[i];
    char tmp[64];
    size_t n = 0;
    switch (d->kind) {
    case HS_VK_COUNTER:
    case HS_VK_RANDOM:
        n = (size_t)snprintf(tmp, sizeof(tmp), "%" PRId64, s->v.i);
        return hs__put(buf, cap, tmp, n);
    case HS_VK_DOUBLE:
        n = hs_vars_double(s->v.d, tmp, sizeof(tmp));
        return hs__put(buf, cap, tmp, n);
    case HS_VK_STRING: {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyz"
                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        uint64_t r = s->v.seed;
        for (n = 0; n < d->length && n < cap; n++)
            buf[n] = chars[hs_rand(&r) % 62];
        return n;
    }
    case HS_VK_VALUES:
    case HS_VK_SEQUENCE:
        if (d->items[s->item].builtin != HS_VAR_NONE)
            return hs_template_value(d->items[s->item].builtin, c, buf, cap);
        return hs__put(buf, cap, d->items[s->item].text, d->items[s->item].len);
    }
    return 0;
}

size_t hs_vars_double(double d, char *buf, size_t cap)
{
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static size_t hs__put(char *buf, size_t cap, const char *s, size_t len)
{
    if (len > cap)
        len = cap;
    memcpy(buf, s, len);
    return len;
}

int hs_vars_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
