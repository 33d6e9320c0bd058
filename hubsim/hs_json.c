#include "hs_json.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The reader's position in the text. */
struct hs__jr {
    const char *p, *end;
    const char *line_start;
    uint32_t line;
    unsigned flags;
    struct hs_json_error *err;
};

static int hs__fail(struct hs__jr *r, const char *why);
static int hs__skip(struct hs__jr *r);
static int hs__value(struct hs__jr *r, struct hs_json *v, unsigned depth);
static int hs__literal(struct hs__jr *r, struct hs_json *v);
static int hs__number(struct hs__jr *r, struct hs_json *v);
static int hs__string(struct hs__jr *r, char **out, size_t *len);
static int hs__escape(struct hs__jr *r, char *buf, size_t *n);
static int hs__utf8(struct hs__jr *r, char *buf, size_t *n);
static int hs__hex4(struct hs__jr *r, unsigned *cp);
static int hs__bare_key(struct hs__jr *r, char **out);
static int hs__array(struct hs__jr *r, struct hs_json *v, unsigned depth);
static int hs__object(struct hs__jr *r, struct hs_json *v, unsigned depth);
static int hs__member(struct hs__jr *r, struct hs_json *v, unsigned depth);
static int hs__grow(struct hs__jr *r, struct hs_json *v, bool keyed);
static void hs__clear(struct hs_json *v);
static size_t hs__write_str(const char *s, size_t len, char *out, size_t cap,
                            size_t n);

int hs_json_parse(const char *text, size_t len, unsigned flags,
                  struct hs_json **out, struct hs_json_error *err)
{
    struct hs__jr r = {text, text + len, text, 1, flags, err};
    struct hs_json *v = calloc(1, sizeof(*v));
    *out = NULL;
    if (v == NULL) {
        err->line = err->col = 1;
        err->why = "out of memory";
        return -1;
    }
    if (hs__skip(&r) < 0 || hs__value(&r, v, 0) < 0 || hs__skip(&r) < 0)
        goto failed;
    if (r.p != r.end) {
        hs__fail(&r, "text after the value");
        goto failed;
    }
    *out = v;
    return 0;
failed:
    hs_json_free(v);
    return -1;
}

void hs_json_free(struct hs_json *v)
{
    if (v == NULL)
        return;
    hs__clear(v);
    free(v);
}

/* Frees what v holds, not v itself. */
static void hs__clear(struct hs_json *v)
{
    for (size_t i = 0; i < v->n; i++) {
        hs__clear(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    memset(v, 0, sizeof(*v));
}

const struct hs_json *hs_json_get(const struct hs_json *obj, const char *key)
{
    if (obj == NULL || obj->type != HS_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcasecmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

bool hs_json_int(const struct hs_json *v, int64_t *out)
{
    if (v == NULL || v->type != HS_JSON_NUMBER || strpbrk(v->str, ".eE"))
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v->str, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return false;
    *out = x;
    return true;
}

const char *hs_json_type_name(const struct hs_json *v)
{
    static const char *const names[] = {"null",     "false",    "true",
                                        "a number", "a string", "an array",
                                        "an object"};
    return names[v->type];
}

/* Notes why and where (the current position) and returns -1. */
static int hs__fail(struct hs__jr *r, const char *why)
{
    r->err->line = r->line;
    r->err->col = (uint32_t)(r->p - r->line_start) + 1;
    r->err->why = why;
    return -1;
}

/* Skips white space, and comments when allowed. */
static int hs__skip(struct hs__jr *r)
{
    while (r->p < r->end) {
        char c = *r->p;
        if (c == '\n') {
            r->line++;
            r->line_start = ++r->p;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            r->p++;
        } else if (c == '/' && (r->flags & HS_JSON_COMMENTS) &&
                   r->end - r->p >= 2 && r->p[1] == '/') {
            while (r->p < r->end && *r->p != '\n')
                r->p++;
        } else if (c == '/' && (r->flags & HS_JSON_COMMENTS) &&
                   r->end - r->p >= 2 && r->p[1] == '*') {
            const char *start = r->p;
            r->p += 2;
            while (r->p < r->end &&
                   !(*r->p == '*' && r->end - r->p >= 2 && r->p[1] == '/')) {
                if (*r->p == '\n') {
                    r->line++;
                    r->line_start = r->p + 1;
                }
                r->p++;
            }
            if (r->p >= r->end) {
                r->p = start;
                return hs__fail(r, "comment not closed");
            }
            r->p += 2;
        } else {
            break;
        }
    }
    return 0;
}

static int hs__value(struct hs__jr *r, struct hs_json *v, unsigned depth)
{
    v->line = r->line;
    v->col = (uint32_t)(r->p - r->line_start) + 1;
    if (r->p >= r->end)
        return hs__fail(r, "a value is missing");
    switch (*r->p) {
    case '{':
        return hs__object(r, v, depth + 1);
    case '[':
        return hs__array(r, v, depth + 1);
    case '"':
        v->type = HS_JSON_STRING;
        return hs__string(r, &v->str, &v->len);
    default:
        if (*r->p == '-' || isdigit((unsigned char)*r->p))
            return hs__number(r, v);
        return hs__literal(r, v);
    }
}

static int hs__literal(struct hs__jr *r, struct hs_json *v)
{
    static const struct {
        const char *text;
        enum hs_json_type type;
    } lits[] = {{"null", HS_JSON_NULL},
                {"true", HS_JSON_TRUE},
                {"false", HS_JSON_FALSE}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(lits[i].text);
        if ((size_t)(r->end - r->p) >= n &&
            memcmp(r->p, lits[i].text, n) == 0 &&
            ((size_t)(r->end - r->p) == n ||
             !isalnum((unsigned char)r->p[n]))) {
            v->type = lits[i].type;
            r->p += n;
            return 0;
        }
    }
    if (*r->p == '\'')
        return hs__fail(r, "strings take double quotes");
    return hs__fail(r, "not a JSON value");
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int hs__number(struct hs__jr *r, struct hs_json *v)
{
    const char *s = r->p, *p = s, *e = r->end;
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        while (p < e && isdigit((unsigned char)*p))
            p++;
    else
        return hs__fail(r, "a number needs a digit");
    if (p < e && *p == '.') {
        if (++p >= e || !isdigit((unsigned char)*p)) {
            r->p = p;
            return hs__fail(r, "a digit must follow '.'");
        }
        while (p < e && isdigit((unsigned char)*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || !isdigit((unsigned char)*p)) {
            r->p = p;
            return hs__fail(r, "an exponent needs a digit");
        }
        while (p < e && isdigit((unsigned char)*p))
            p++;
    }
    if (p < e && (isalnum((unsigned char)*p) || *p == '.')) {
        r->p = p;
        return hs__fail(r, "not a number");
    }
    v->type = HS_JSON_NUMBER;
    v->len = (size_t)(p - s);
    v->str = strndup(s, v->len);
    if (v->str == NULL)
        return hs__fail(r, "out of memory");
    v->num = strtod(v->str, NULL);
    r->p = p;
    if (!isfinite(v->num)) {
        r->p = s;
        return hs__fail(r, "number too large");
    }
    return 0;
}

/* A quoted string at r->p, decoded into a new NUL-ended *out. */
static int hs__string(struct hs__jr *r, char **out, size_t *len)
{
    const char *start = ++r->p;
    /* Decoding never makes text longer than it was written. */
    const char *q = start;
    while (q < r->end && *q != '"')
        q += (*q == '\\' && q + 1 < r->end) ? 2 : 1;
    char *buf = malloc((size_t)(q - start) + 1);
    size_t n = 0;
    if (buf == NULL)
        return hs__fail(r, "out of memory");
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        int rc = 0;
        if (c < 0x20)
            rc = hs__fail(r, "control character in a string (write it as "
                             "an escape)");
        else if (c == '\\')
            rc = hs__escape(r, buf, &n);
        else if (c >= 0x80)
            rc = hs__utf8(r, buf, &n);
        else
            buf[n++] = (char)*r->p++;
        if (rc < 0) {
            free(buf);
            return -1;
        }
    }
    if (r->p >= r->end) {
        free(buf);
        r->p = start - 1;
        return hs__fail(r, "string not closed");
    }
    r->p++;
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int hs__escape(struct hs__jr *r, char *buf, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (r->end - r->p < 2)
        return hs__fail(r, "escape cut short");
    const char *hit = strchr(from, r->p[1]);
    if (hit != NULL && r->p[1] != '\0') {
        buf[(*n)++] = to[hit - from];
        r->p += 2;
        return 0;
    }
    if (r->p[1] != 'u')
        return hs__fail(r, "unknown escape");
    unsigned cp, lo;
    if (hs__hex4(r, &cp) < 0)
        return -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return hs__fail(r, "lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u' ||
            hs__hex4(r, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
            return hs__fail(r, "high surrogate without a low one");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0)
        return hs__fail(r, "\\u0000 is not allowed");
    char *o = buf + *n;
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    *n = (size_t)(o - buf);
    return 0;
}

/* "\uXXXX" at r->p into cp. */
static int hs__hex4(struct hs__jr *r, unsigned *cp)
{
    if (r->end - r->p < 6)
        return hs__fail(r, "\\u needs four hex digits");
    *cp = 0;
    for (int i = 2; i < 6; i++) {
        char c = r->p[i];
        if (!isxdigit((unsigned char)c))
            return hs__fail(r, "\\u needs four hex digits");
        *cp =
            *cp << 4 | (unsigned)(isdigit((unsigned char)c)
                                      ? c - '0'
                                      : (tolower((unsigned char)c) - 'a' + 10));
    }
    r->p += 6;
    return 0;
}

/* One UTF-8 sequence, checked (shortest form, no surrogates, <= U+10FFFF). */
static int hs__utf8(struct hs__jr *r, char *buf, size_t *n)
{
    size_t k =
        hs_utf8_len((const unsigned char *)r->p, (size_t)(r->end - r->p));
    if (k == 0)
        return hs__fail(r, "not UTF-8");
    memcpy(buf + *n, r->p, k);
    *n += k;
    r->p += k;
    return 0;
}

/* [A-Za-z_$][A-Za-z0-9_$]* as a member name. */
static int hs__bare_key(struct hs__jr *r, char **out)
{
    const char *s = r->p;
    if (!(r->flags & HS_JSON_BARE_KEYS))
        return hs__fail(r, "a member name must be a string in double "
                           "quotes");
    if (!isalpha((unsigned char)*s) && *s != '_' && *s != '$')
        return hs__fail(r, "expected a member name");
    while (r->p < r->end &&
           (isalnum((unsigned char)*r->p) || *r->p == '_' || *r->p == '$'))
        r->p++;
    *out = strndup(s, (size_t)(r->p - s));
    return *out ? 0 : hs__fail(r, "out of memory");
}

/* Room for one more item (and name). */
static int hs__grow(struct hs__jr *r, struct hs_json *v, bool keyed)
{
    if ((v->n & (v->n - 1)) == 0) {
        size_t cap = v->n ? v->n * 2 : 1;
        struct hs_json *items = realloc(v->items, cap * sizeof(*items));
        if (items == NULL)
            return hs__fail(r, "out of memory");
        v->items = items;
        if (keyed) {
            char **keys = realloc(v->keys, cap * sizeof(*keys));
            if (keys == NULL)
                return hs__fail(r, "out of memory");
            v->keys = keys;
        }
    }
    memset(&v->items[v->n], 0, sizeof(v->items[0]));
    if (keyed)
        v->keys[v->n] = NULL;
    return 0;
}

static int hs__array(struct hs__jr *r, struct hs_json *v, unsigned depth)
{
    v->type = HS_JSON_ARRAY;
    if (depth > HS_JSON_DEPTH)
        return hs__fail(r, "nested too deeply");
    r->p++;
    if (hs__skip(r) < 0)
        return -1;
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return 0;
    }
    for (;;) {
        if (hs__grow(r, v, false) < 0)
            return -1;
        v->n++;
        if (hs__value(r, &v->items[v->n - 1], depth) < 0 || hs__skip(r) < 0)
            return -1;
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return 0;
        }
        if (r->p >= r->end || *r->p != ',')
            return hs__fail(r, "expected ',' or ']'");
        r->p++;
        if (hs__skip(r) < 0)
            return -1;
        if (r->p < r->end && *r->p == ']') {
            if (!(r->flags & HS_JSON_TRAILING))
                return hs__fail(r, "a comma before ']'");
            r->p++;
            return 0;
        }
    }
}

static int hs__object(struct hs__jr *r, struct hs_json *v, unsigned depth)
{
    v->type = HS_JSON_OBJECT;
    if (depth > HS_JSON_DEPTH)
        return hs__fail(r, "nested too deeply");
    r->p++;
    if (hs__skip(r) < 0)
        return -1;
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return 0;
    }
    for (;;) {
        if (hs__member(r, v, depth) < 0 || hs__skip(r) < 0)
            return -1;
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return 0;
        }
        if (r->p >= r->end || *r->p != ',')
            return hs__fail(r, "expected ',' or '}'");
        r->p++;
        if (hs__skip(r) < 0)
            return -1;
        if (r->p < r->end && *r->p == '}') {
            if (!(r->flags & HS_JSON_TRAILING))
                return hs__fail(r, "a comma before '}'");
            r->p++;
            return 0;
        }
    }
}

/* name ':' value, the name not seen before in v. */
static int hs__member(struct hs__jr *r, struct hs_json *v, unsigned depth)
{
    if (hs__grow(r, v, true) < 0)
        return -1;
    size_t len = 0;
    const char *at = r->p;
    uint32_t line = r->line;
    const char *line_start = r->line_start;
    char **key = &v->keys[v->n];
    v->n++;
    if (r->p >= r->end)
        return hs__fail(r, "expected a member name");
    if ((*r->p == '"' ? hs__string(r, key, &len) : hs__bare_key(r, key)) < 0)
        return -1;
    for (size_t i = 0; i + 1 < v->n; i++) {
        if (strcmp(v->keys[i], *key) == 0) {
            r->p = at;
            r->line = line;
            r->line_start = line_start;
            return hs__fail(r, "a member name given twice");
        }
    }
    if (hs__skip(r) < 0)
        return -1;
    if (r->p >= r->end || *r->p != ':')
        return hs__fail(r, "expected ':'");
    r->p++;
    if (hs__skip(r) < 0)
        return -1;
    return hs__value(r, &v->items[v->n - 1], depth);
}

size_t hs_json_write(const struct hs_json *v, char *out, size_t cap)
{
    size_t n = 0;
#define HS__PUT(s, k)                                                          \
    do {                                                                       \
        if (n + (k) < cap)                                                     \
            memcpy(out + n, (s), (k));                                         \
        n += (k);                                                              \
    } while (0)
    switch (v->type) {
    case HS_JSON_NULL:
        HS__PUT("null", 4);
        break;
    case HS_JSON_FALSE:
        HS__PUT("false", 5);
        break;
    case HS_JSON_TRUE:
        HS__PUT("true", 4);
        break;
    case HS_JSON_NUMBER:
        HS__PUT(v->str, v->len);
        break;
    case HS_JSON_STRING:
        n = hs__write_str(v->str, v->len, out, cap, n);
        break;
    case HS_JSON_ARRAY:
    case HS_JSON_OBJECT:
        HS__PUT(v->type == HS_JSON_ARRAY ? "[" : "{", 1);
        for (size_t i = 0; i < v->n; i++) {
            if (i)
                HS__PUT(",", 1);
            if (v->type == HS_JSON_OBJECT) {
                n = hs__write_str(v->keys[i], strlen(v->keys[i]), out, cap, n);
                HS__PUT(":", 1);
            }
            n += hs_json_write(&v->items[i], n < cap ? out + n : NULL,
                               n < cap ? cap - n : 0);
        }
        HS__PUT(v->type == HS_JSON_ARRAY ? "]" : "}", 1);
        break;
    }
#undef HS__PUT
    if (n < cap)
        out[n] = '\0';
    return n;
}

/* Appends s as a JSON string at out + n; returns the new length. */
static size_t hs__write_str(const char *s, size_t len, char *out, size_t cap,
                            size_t n)
{
    char esc[8];
    for (size_t i = 0; i <= len + 1; i++) {
        const char *piece = esc;
        size_t k = 1;
        unsigned char c =
            i == 0 || i == len + 1 ? '"' : (unsigned char)s[i - 1];
        esc[0] = (char)c;
        if (i > 0 && i <= len && (c == '"' || c == '\\')) {
            esc[0] = '\\';
            esc[1] = (char)c;
            k = 2;
        } else if (i > 0 && i <= len && c < 0x20) {
            k = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        }
        if (n + k < cap)
            memcpy(out + n, piece, k);
        n += k;
    }
    return n;
}

/* Writing: the reports' escapes. */

#define HS_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD in UTF-8 */

size_t hs_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, cp = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, cp = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

void hs_json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    fputc('"', f);
    while (left > 0) {
        size_t n = hs_utf8_len(p, left);
        if (n == 0) {
            fputs("\\ufffd", f);
            n = 1;
        } else if (n == 3 && p[0] == 0xE2 && p[1] == 0x80 &&
                   (p[2] == 0xA8 || p[2] == 0xA9)) {
            fprintf(f, "\\u%04x", 0x2028 + (p[2] - 0xA8));
        } else if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p == '\n') {
            fputs("\\n", f);
        } else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&' ||
                   *p == 0x7F) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
        left -= n;
    }
    fputc('"', f);
}

void hs_html_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left > 0) {
        size_t n = hs_utf8_len(p, left);
        if (n == 0) {
            fputs(HS_REPLACEMENT, f);
            n = 1;
        } else if (*p == '&') {
            fputs("&amp;", f);
        } else if (*p == '<') {
            fputs("&lt;", f);
        } else if (*p == '>') {
            fputs("&gt;", f);
        } else if (*p == '"') {
            fputs("&quot;", f);
        } else if (*p == '\'') {
            fputs("&#39;", f);
        } else if ((*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7F) {
            /* dropped: HTML does not allow them */
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
        left -= n;
    }
}
