/*
 * SNI table: two open-addressing hash tables (linear probing, FNV-1a,
 * at most half full), one for exact names and one for wildcard suffixes.
 * A lookup folds the query to lower case in a stack buffer, tries the exact
 * table, then each suffix after a dot from the left, so the first wildcard
 * found is the longest one that matches.
 */
#include "hg_sni.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hg_units.h"

#define HG__SNI_MIN_CAP 16

struct hg__sni_entry {
    char *name; /* lower case, no trailing dot; NULL: free slot */
    size_t len;
    uint32_t hash;
    void *value;
};

struct hg__sni_map {
    struct hg__sni_entry *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
};

struct hg_sni_table {
    struct hg__sni_map exact;
    struct hg__sni_map wild; /* "*.example.net" stored as "example.net" */
};

static uint32_t hg__sni_hash(const char *s, size_t len);
static struct hg__sni_entry *hg__sni_find(const struct hg__sni_map *m,
                                          const char *name, size_t len,
                                          uint32_t hash);
static int hg__sni_grow(struct hg__sni_map *m);
static int hg__sni_insert(struct hg__sni_map *m, char *name, size_t len,
                          void *value);
static void hg__sni_map_free(struct hg__sni_map *m);
static int hg__sni_split(const char *name, size_t *len, bool *wild,
                         const char **reason);
static bool hg__sni_fold(const char *in, size_t len, char *out);

struct hg_sni_table *hg_sni_table_new(void)
{
    return calloc(1, sizeof(struct hg_sni_table));
}

static void hg__sni_map_free(struct hg__sni_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].name);
    free(m->slots);
}

void hg_sni_table_free(struct hg_sni_table *t)
{
    if (t == NULL)
        return;
    hg__sni_map_free(&t->exact);
    hg__sni_map_free(&t->wild);
    free(t);
}

size_t hg_sni_table_count(const struct hg_sni_table *t)
{
    return t->exact.count + t->wild.count;
}

/* FNV-1a, 32 bits. */
static uint32_t hg__sni_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

/*
 * Returns the slot that holds name, or the free slot where it would go, or
 * NULL for a map with no slots.
 */
static struct hg__sni_entry *hg__sni_find(const struct hg__sni_map *m,
                                          const char *name, size_t len,
                                          uint32_t hash)
{
    size_t mask = m->cap - 1;

    if (m->cap == 0)
        return NULL;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        struct hg__sni_entry *e = &m->slots[i];
        if (e->name == NULL)
            return e;
        if (e->hash == hash && e->len == len && memcmp(e->name, name, len) == 0)
            return e;
    }
}

/* Doubles the slots and rehashes. Returns 0 or -1 (out of memory). */
static int hg__sni_grow(struct hg__sni_map *m)
{
    struct hg__sni_map n = {NULL, m->cap ? m->cap * 2 : HG__SNI_MIN_CAP,
                            m->count};

    n.slots = calloc(n.cap, sizeof(*n.slots));
    if (n.slots == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct hg__sni_entry *e = &m->slots[i];
        if (e->name != NULL)
            *hg__sni_find(&n, e->name, e->len, e->hash) = *e;
    }
    free(m->slots);
    *m = n;
    return 0;
}

/*
 * Inserts a name the caller checked is absent; takes ownership of name.
 * Returns 0 or -1 (out of memory, name not taken).
 */
static int hg__sni_insert(struct hg__sni_map *m, char *name, size_t len,
                          void *value)
{
    uint32_t hash = hg__sni_hash(name, len);
    struct hg__sni_entry *e;

    if ((m->count + 1) * 2 > m->cap && hg__sni_grow(m) != 0)
        return -1;
    e = hg__sni_find(m, name, len, hash);
    e->name = name;
    e->len = len;
    e->hash = hash;
    e->value = value;
    m->count++;
    return 0;
}

/*
 * Checks a name as written: strips one trailing dot, recognizes a leading
 * "*." and checks the rest is a host name. Sets *len to the length without
 * the dot and *wild. Returns 0 or -1.
 */
static int hg__sni_split(const char *name, size_t *len, bool *wild,
                         const char **reason)
{
    size_t n = strlen(name);
    const char *star = memchr(name, '*', n);

    if (n > 0 && name[n - 1] == '.')
        n--;
    *len = n;
    *wild = n >= 2 && name[0] == '*' && name[1] == '.';
    if (n == 1 && name[0] == '*') {
        *reason = "a wildcard needs a domain after \"*.\"";
        return -1;
    }
    if (star != NULL && (!*wild || memchr(name + 1, '*', n - 1) != NULL)) {
        *reason = "'*' is only allowed as the whole first label, as in "
                  "*.example.net";
        return -1;
    }
    if (*wild && n == 2) {
        *reason = "a wildcard needs a domain after \"*.\"";
        return -1;
    }
    return *wild ? hg_hostname_check(name + 2, n - 2, reason)
                 : hg_hostname_check(name, n, reason);
}

int hg_sni_table_add(struct hg_sni_table *t, const char *name, void *value,
                     void **prev, const char **reason)
{
    struct hg__sni_map *m;
    struct hg__sni_entry *e;
    size_t len;
    bool wild;
    char *copy;

    *prev = NULL;
    if (hg__sni_split(name, &len, &wild, reason) != 0)
        return -1;
    m = wild ? &t->wild : &t->exact;
    if (wild) {
        name += 2;
        len -= 2;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        *reason = "out of memory";
        return -1;
    }
    hg__sni_fold(name, len, copy);
    copy[len] = '\0';
    e = hg__sni_find(m, copy, len, hg__sni_hash(copy, len));
    if (e != NULL && e->name != NULL) {
        *prev = e->value;
        *reason = "the name is already in the table";
        free(copy);
        return -1;
    }
    if (hg__sni_insert(m, copy, len, value) != 0) {
        *reason = "out of memory";
        free(copy);
        return -1;
    }
    return 0;
}

/*
 * Copies len bytes to out in lower case. Returns false at a byte that a
 * host name cannot hold.
 */
static bool hg__sni_fold(const char *in, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.'))
            return false;
        out[i] = c;
    }
    return true;
}

void *hg_sni_table_lookup(const struct hg_sni_table *t, const char *name,
                          size_t len)
{
    char buf[HG_SNI_QUERY_MAX];
    const struct hg__sni_entry *e;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > HG_HOSTNAME_MAX || !hg__sni_fold(name, len, buf))
        return NULL;
    e = hg__sni_find(&t->exact, buf, len, hg__sni_hash(buf, len));
    if (e != NULL && e->name != NULL)
        return e->value;
    if (t->wild.count == 0)
        return NULL;
    for (size_t i = 1; i + 1 < len; i++) {
        if (buf[i] != '.')
            continue;
        const char *suffix = buf + i + 1;
        size_t n = len - i - 1;
        e = hg__sni_find(&t->wild, suffix, n, hg__sni_hash(suffix, n));
        if (e != NULL && e->name != NULL)
            return e->value;
    }
    return NULL;
}
