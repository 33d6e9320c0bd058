#include "hs_template.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_opts.h"

/* 0001-01-01 to 1970-01-01 in 100 ns ticks. */
#define HS_TICKS_AT_EPOCH UINT64_C(621355968000000000)

static enum hs_var hs__match(const char *p, size_t *len,
                             const char *const *names, size_t nnames,
                             uint32_t *user);
static size_t hs__iso_time(const struct timespec *ts, bool local, char *buf,
                           size_t cap);
static size_t hs__guid(uint64_t *rng, char *buf, size_t cap);

static const struct {
    const char *name;
    enum hs_var var;
} hs__vars[] = {
    {"DeviceId", HS_VAR_DEVICE_ID},
    {"Guid", HS_VAR_GUID},
    {"Time", HS_VAR_TIME},
    {"LocalTime", HS_VAR_LOCAL_TIME},
    {"Ticks", HS_VAR_TICKS},
    {"Epoch", HS_VAR_EPOCH},
    {"MachineName", HS_VAR_MACHINE_NAME},
    {"IterationNumber", HS_VAR_ITERATION},
    {"Counter", HS_VAR_COUNTER},
};

uint64_t hs_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

/*
 * The longest variable name at p (just after "$."), or HS_VAR_NONE; a
 * custom name (*user set) wins over a built-in one as long.
 */
static enum hs_var hs__match(const char *p, size_t *len,
                             const char *const *names, size_t nnames,
                             uint32_t *user)
{
    enum hs_var best = HS_VAR_NONE;
    size_t best_len = 0;
    for (size_t i = 0; i < nnames; i++) {
        size_t n = strlen(names[i]);
        if (n > best_len && strncmp(p, names[i], n) == 0) {
            best = HS_VAR_USER;
            best_len = n;
            *user = (uint32_t)i;
        }
    }
    for (size_t i = 0; i < sizeof(hs__vars) / sizeof(hs__vars[0]); i++) {
        size_t n = strlen(hs__vars[i].name);
        if (n > best_len && strncmp(p, hs__vars[i].name, n) == 0) {
            best = hs__vars[i].var;
            best_len = n;
        }
    }
    *len = best_len;
    return best;
}

enum hs_var hs_template_builtin(const char *name)
{
    for (size_t i = 0; i < sizeof(hs__vars) / sizeof(hs__vars[0]); i++)
        if (strcmp(name, hs__vars[i].name) == 0)
            return hs__vars[i].var;
    return HS_VAR_NONE;
}

bool hs_template_is_plain(const struct hs_template *t)
{
    return t->npieces <= 1;
}

int hs_template_compile(struct hs_template *t, const char *text)
{
    return hs_template_compile_vars(t, text, NULL, 0);
}

int hs_template_compile_vars(struct hs_template *t, const char *text,
                             const char *const *names, size_t nnames)
{
    memset(t, 0, sizeof(*t));
    t->text = strdup(text);
    /* At most one piece per "$." plus the tail. */
    size_t cap = 1;
    for (const char *p = text; (p = strstr(p, "$.")) != NULL; p += 2)
        cap++;
    t->pieces = calloc(cap, sizeof(*t->pieces));
    if (t->text == NULL || t->pieces == NULL) {
        hs_template_free(t);
        return -1;
    }
    size_t start = 0, i = 0;
    while (t->text[i]) {
        size_t n;
        uint32_t user = 0;
        enum hs_var v = HS_VAR_NONE;
        if (t->text[i] == '$' && t->text[i + 1] == '.')
            v = hs__match(t->text + i + 2, &n, names, nnames, &user);
        if (v == HS_VAR_NONE) {
            i++;
            continue;
        }
        t->pieces[t->npieces++] =
            (struct hs_template_piece){start, i - start, v, user};
        i += 2 + n;
        start = i;
    }
    t->pieces[t->npieces++] =
        (struct hs_template_piece){start, i - start, HS_VAR_NONE, 0};
    return 0;
}

size_t hs_template_warn_unknown(const char *what, const char *text,
                                const char *const *names, size_t n)
{
    size_t warned = 0;
    size_t nbuiltin = sizeof(hs__vars) / sizeof(hs__vars[0]);
    const char **all = malloc((nbuiltin + n) * sizeof(*all));
    if (all == NULL)
        return 0;
    for (size_t i = 0; i < nbuiltin; i++)
        all[i] = hs__vars[i].name;
    for (size_t i = 0; i < n; i++)
        all[nbuiltin + i] = names[i];
    for (const char *p = text; (p = strstr(p, "$.")) != NULL; p += 2) {
        size_t len;
        uint32_t user;
        if (hs__match(p + 2, &len, names, n, &user) != HS_VAR_NONE)
            continue;
        len = 0;
        while (isalnum((unsigned char)p[2 + len]) || p[2 + len] == '_')
            len++;
        if (isdigit((unsigned char)p[2])) /* "$.5": money, not a name */
            continue;
        if (len == 0 || len > 64)
            continue;
        char word[65];
        memcpy(word, p + 2, len);
        word[len] = '\0';
        /* Said already for an earlier "$.word"? */
        bool seen = false;
        for (const char *q = text; q < p && !seen; q++)
            seen = strncmp(q, p, len + 2) == 0 &&
                   !isalnum((unsigned char)q[len + 2]) && q[len + 2] != '_';
        if (seen)
            continue;
        const char *near = hs_opts_suggest(word, all, nbuiltin + n);
        fprintf(stderr,
                "hubsim: warning: %s: $.%s is neither a variable nor a "
                "built-in and goes out as written%s%s%s\n",
                what, word, near ? " (did you mean $." : "", near ? near : "",
                near ? "?)" : "");
        warned++;
    }
    free(all);
    return warned;
}

void hs_template_free(struct hs_template *t)
{
    free(t->text);
    free(t->pieces);
    memset(t, 0, sizeof(*t));
}

size_t hs_template_render(const struct hs_template *t,
                          const struct hs_template_ctx *c, char *out,
                          size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < t->npieces; i++) {
        const struct hs_template_piece *p = &t->pieces[i];
        size_t k = p->len < cap - n ? p->len : cap - n;
        memcpy(out + n, t->text + p->off, k);
        n += k;
        if (p->var == HS_VAR_USER)
            n += c->user(c->user_arg, p->user, c, out + n, cap - n);
        else if (p->var != HS_VAR_NONE)
            n += hs_template_value(p->var, c, out + n, cap - n);
    }
    return n;
}

size_t hs_template_value(enum hs_var var, const struct hs_template_ctx *c,
                         char *buf, size_t cap)
{
    char tmp[128];
    const char *s = tmp;
    size_t len;
    uint64_t ticks;
    switch (var) {
    case HS_VAR_DEVICE_ID:
    case HS_VAR_MACHINE_NAME:
        s = var == HS_VAR_DEVICE_ID ? c->device_id : c->machine_name;
        s = s ? s : "";
        len = strlen(s);
        break;
    case HS_VAR_GUID:
        len = hs__guid(c->rng, tmp, sizeof(tmp));
        break;
    case HS_VAR_TIME:
    case HS_VAR_LOCAL_TIME:
        len = hs__iso_time(&c->now, var == HS_VAR_LOCAL_TIME, tmp, sizeof(tmp));
        break;
    case HS_VAR_TICKS:
        ticks = (uint64_t)c->now.tv_sec * 10000000u +
                (uint64_t)c->now.tv_nsec / 100 + HS_TICKS_AT_EPOCH;
        len = (size_t)snprintf(tmp, sizeof(tmp), "%" PRIu64, ticks);
        break;
    case HS_VAR_EPOCH:
        len = (size_t)snprintf(tmp, sizeof(tmp), "%" PRIu64,
                               (uint64_t)c->now.tv_sec);
        break;
    case HS_VAR_ITERATION:
    case HS_VAR_COUNTER:
        len = (size_t)snprintf(tmp, sizeof(tmp), "%" PRIu64,
                               c->iteration + (var == HS_VAR_COUNTER));
        break;
    default:
        return 0;
    }
    if (len > cap)
        len = cap;
    memcpy(buf, s, len);
    return len;
}

/* "2024-05-01T12:00:00.1234567Z", or with a "+02:00" offset when local. */
static size_t hs__iso_time(const struct timespec *ts, bool local, char *buf,
                           size_t cap)
{
    struct tm tm;
    if (local)
        localtime_r(&ts->tv_sec, &tm);
    else
        gmtime_r(&ts->tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, cap - n, ".%07ld", ts->tv_nsec / 100);
    if (!local)
        return n + (size_t)snprintf(buf + n, cap - n, "Z");
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    off = off < 0 ? -off : off;
    return n + (size_t)snprintf(buf + n, cap - n, "%c%02ld:%02ld", sign,
                                off / 60, off % 60);
}

/* A random version 4 UUID in lower-case hex with dashes. */
static size_t hs__guid(uint64_t *rng, char *buf, size_t cap)
{
    uint64_t hi = hs_rand(rng), lo = hs_rand(rng);
    hi = (hi & ~UINT64_C(0xF000)) | UINT64_C(0x4000);
    lo = (lo & ~(UINT64_C(3) << 62)) | (UINT64_C(2) << 62);
    return (size_t)snprintf(buf, cap,
                            "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64
                            "-%04" PRIx64 "-%012" PRIx64,
                            hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF,
                            lo >> 48, lo & UINT64_C(0xFFFFFFFFFFFF));
}
