/*
 * CIDR sets as sorted arrays of disjoint, non-adjacent address ranges, one
 * array per family. IPv6 addresses are 128-bit numbers kept as two 64-bit
 * halves so the code needs no compiler extension. Adding appends a range;
 * finishing sorts and merges; matching bisects.
 */
#include "hg_cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HG__CIDR_TEXT_MAX 64 /* longer than any valid prefix */

struct hg__u128 {
    uint64_t hi;
    uint64_t lo;
};

struct hg__range4 {
    uint32_t first;
    uint32_t last;
};

struct hg__range6 {
    struct hg__u128 first;
    struct hg__u128 last;
};

struct hg_cidr_set {
    struct hg__range4 *v4;
    size_t n4, cap4;
    struct hg__range6 *v6;
    size_t n6, cap6;
    bool finished;
};

/* A parsed prefix before it becomes a range. */
struct hg__prefix {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned len;
};

static int hg__cidr_parse(const char *text, struct hg__prefix *p,
                          const char **reason);
static int hg__cidr_prefix_len(const char *text, unsigned max, unsigned *len,
                               const char **reason);
static void hg__cidr_unmap(struct hg__prefix *p);
static int hg__cidr_add4(struct hg_cidr_set *set, const struct hg__prefix *p);
static int hg__cidr_add6(struct hg_cidr_set *set, const struct hg__prefix *p);
static int hg__cidr_grow(void **arr, size_t *cap, size_t n, size_t size);
static uint32_t hg__cidr_load4(const uint8_t *b);
static struct hg__u128 hg__cidr_load6(const uint8_t *b);
static struct hg__u128 hg__u128_mask(unsigned len);
static int hg__u128_cmp(struct hg__u128 a, struct hg__u128 b);
static bool hg__u128_is_max(struct hg__u128 a);
static struct hg__u128 hg__u128_inc(struct hg__u128 a);
static int hg__cidr_cmp4(const void *a, const void *b);
static int hg__cidr_cmp6(const void *a, const void *b);
static size_t hg__cidr_merge4(struct hg__range4 *r, size_t n);
static size_t hg__cidr_merge6(struct hg__range6 *r, size_t n);
static bool hg__cidr_match4(const struct hg_cidr_set *set, uint32_t a);
static bool hg__cidr_match6(const struct hg_cidr_set *set, struct hg__u128 a);

struct hg_cidr_set *hg_cidr_set_new(void)
{
    return calloc(1, sizeof(struct hg_cidr_set));
}

void hg_cidr_set_free(struct hg_cidr_set *set)
{
    if (set == NULL)
        return;
    free(set->v4);
    free(set->v6);
    free(set);
}

/* Parses the digits after '/': 0..max, no sign. Returns 0 or -1. */
static int hg__cidr_prefix_len(const char *text, unsigned max, unsigned *len,
                               const char **reason)
{
    unsigned v = 0;
    size_t n = strspn(text, "0123456789");

    if (n == 0 || text[n] != '\0' || n > 3) {
        *reason = "the prefix length must be a number";
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(text[i] - '0');
    if (v > max) {
        *reason = max == 32 ? "an IPv4 prefix length must be 0..32"
                            : "an IPv6 prefix length must be 0..128";
        return -1;
    }
    *len = v;
    return 0;
}

/* Parses "addr[/len]" into *p. Returns 0 or -1. */
static int hg__cidr_parse(const char *text, struct hg__prefix *p,
                          const char **reason)
{
    char buf[HG__CIDR_TEXT_MAX];
    size_t n = strlen(text);
    char *slash;

    if (n == 0 || n >= sizeof(buf)) {
        *reason = n ? "too long for an address" : "empty";
        return -1;
    }
    memcpy(buf, text, n + 1);
    slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    memset(p->addr, 0, sizeof(p->addr));
    if (inet_pton(AF_INET, buf, p->addr) == 1) {
        p->family = AF_INET;
        p->len = 32;
    } else if (inet_pton(AF_INET6, buf, p->addr) == 1) {
        p->family = AF_INET6;
        p->len = 128;
    } else {
        *reason = "not an IPv4 or IPv6 address";
        return -1;
    }
    if (slash == NULL)
        return 0;
    return hg__cidr_prefix_len(slash + 1, p->len, &p->len, reason);
}

/* Turns a prefix inside ::ffff:0:0/96 into the IPv4 prefix it maps. */
static void hg__cidr_unmap(struct hg__prefix *p)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};

    if (p->family != AF_INET6 || p->len < 96 ||
        memcmp(p->addr, mapped, sizeof(mapped)) != 0)
        return;
    memmove(p->addr, p->addr + 12, 4);
    p->family = AF_INET;
    p->len -= 96;
}

int hg_cidr_set_add(struct hg_cidr_set *set, const char *text,
                    const char **reason)
{
    struct hg__prefix p;
    int rc;

    if (hg__cidr_parse(text, &p, reason) != 0)
        return -1;
    hg__cidr_unmap(&p);
    rc = p.family == AF_INET ? hg__cidr_add4(set, &p) : hg__cidr_add6(set, &p);
    if (rc != 0) {
        *reason = "out of memory";
        return -1;
    }
    set->finished = false;
    return 0;
}

/* Makes room for one more element of size bytes. Returns 0 or -1. */
static int hg__cidr_grow(void **arr, size_t *cap, size_t n, size_t size)
{
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p;

    if (n < *cap)
        return 0;
    p = realloc(*arr, ncap * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static uint32_t hg__cidr_load4(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           (uint32_t)b[3];
}

static struct hg__u128 hg__cidr_load6(const uint8_t *b)
{
    struct hg__u128 v = {0, 0};

    for (int i = 0; i < 8; i++) {
        v.hi = v.hi << 8 | b[i];
        v.lo = v.lo << 8 | b[i + 8];
    }
    return v;
}

/* Appends the IPv4 range of a prefix. Returns 0 or -1 (out of memory). */
static int hg__cidr_add4(struct hg_cidr_set *set, const struct hg__prefix *p)
{
    uint32_t mask = p->len == 0 ? 0 : UINT32_MAX << (32 - p->len);
    uint32_t a = hg__cidr_load4(p->addr);

    if (hg__cidr_grow((void **)&set->v4, &set->cap4, set->n4,
                      sizeof(*set->v4)) != 0)
        return -1;
    set->v4[set->n4].first = a & mask;
    set->v4[set->n4].last = (a & mask) | ~mask;
    set->n4++;
    return 0;
}

/* The netmask of a /len IPv6 prefix. */
static struct hg__u128 hg__u128_mask(unsigned len)
{
    struct hg__u128 m = {0, 0};

    if (len >= 64) {
        m.hi = UINT64_MAX;
        m.lo = len == 64 ? 0 : UINT64_MAX << (128 - len);
    } else if (len > 0) {
        m.hi = UINT64_MAX << (64 - len);
    }
    return m;
}

/* Appends the IPv6 range of a prefix. Returns 0 or -1 (out of memory). */
static int hg__cidr_add6(struct hg_cidr_set *set, const struct hg__prefix *p)
{
    struct hg__u128 m = hg__u128_mask(p->len);
    struct hg__u128 a = hg__cidr_load6(p->addr);
    struct hg__range6 *r;

    if (hg__cidr_grow((void **)&set->v6, &set->cap6, set->n6,
                      sizeof(*set->v6)) != 0)
        return -1;
    r = &set->v6[set->n6++];
    r->first.hi = a.hi & m.hi;
    r->first.lo = a.lo & m.lo;
    r->last.hi = r->first.hi | ~m.hi;
    r->last.lo = r->first.lo | ~m.lo;
    return 0;
}

static int hg__u128_cmp(struct hg__u128 a, struct hg__u128 b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo)
        return a.lo < b.lo ? -1 : 1;
    return 0;
}

static bool hg__u128_is_max(struct hg__u128 a)
{
    return a.hi == UINT64_MAX && a.lo == UINT64_MAX;
}

static struct hg__u128 hg__u128_inc(struct hg__u128 a)
{
    a.lo++;
    if (a.lo == 0)
        a.hi++;
    return a;
}

static int hg__cidr_cmp4(const void *a, const void *b)
{
    const struct hg__range4 *x = a, *y = b;

    return (x->first > y->first) - (x->first < y->first);
}

static int hg__cidr_cmp6(const void *a, const void *b)
{
    const struct hg__range6 *x = a, *y = b;

    return hg__u128_cmp(x->first, y->first);
}

/*
 * Merges overlapping and adjacent ranges of a sorted array in place.
 * Returns the new count.
 */
static size_t hg__cidr_merge4(struct hg__range4 *r, size_t n)
{
    size_t out = 0;

    for (size_t i = 1; i < n; i++) {
        if (r[out].last == UINT32_MAX || r[i].first <= r[out].last + 1) {
            if (r[i].last > r[out].last)
                r[out].last = r[i].last;
            continue;
        }
        r[++out] = r[i];
    }
    return n ? out + 1 : 0;
}

/* The IPv6 twin of hg__cidr_merge4(). */
static size_t hg__cidr_merge6(struct hg__range6 *r, size_t n)
{
    size_t out = 0;

    for (size_t i = 1; i < n; i++) {
        if (hg__u128_is_max(r[out].last) ||
            hg__u128_cmp(r[i].first, hg__u128_inc(r[out].last)) <= 0) {
            if (hg__u128_cmp(r[i].last, r[out].last) > 0)
                r[out].last = r[i].last;
            continue;
        }
        r[++out] = r[i];
    }
    return n ? out + 1 : 0;
}

void hg_cidr_set_finish(struct hg_cidr_set *set)
{
    if (set->n4 > 0)
        qsort(set->v4, set->n4, sizeof(*set->v4), hg__cidr_cmp4);
    if (set->n6 > 0)
        qsort(set->v6, set->n6, sizeof(*set->v6), hg__cidr_cmp6);
    set->n4 = hg__cidr_merge4(set->v4, set->n4);
    set->n6 = hg__cidr_merge6(set->v6, set->n6);
    set->finished = true;
}

size_t hg_cidr_set_ranges(const struct hg_cidr_set *set)
{
    return set->n4 + set->n6;
}

/* Bisects for the last range that starts at or before a. */
static bool hg__cidr_match4(const struct hg_cidr_set *set, uint32_t a)
{
    size_t lo = 0, hi = set->n4; /* answer in [lo, hi) */

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->v4[mid].first <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && a <= set->v4[lo - 1].last;
}

/* The IPv6 twin of hg__cidr_match4(). */
static bool hg__cidr_match6(const struct hg_cidr_set *set, struct hg__u128 a)
{
    size_t lo = 0, hi = set->n6;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (hg__u128_cmp(set->v6[mid].first, a) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && hg__u128_cmp(a, set->v6[lo - 1].last) <= 0;
}

bool hg_cidr_set_match(const struct hg_cidr_set *set, const struct sockaddr *sa)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *b;

    if (!set->finished)
        abort(); /* matching an unsorted set would answer at random */
    if (sa->sa_family == AF_INET)
        return hg__cidr_match4(set, ntohl(sin->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6)
        return false;
    b = sin6->sin6_addr.s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
        hg__cidr_match4(set, hg__cidr_load4(b + 12)))
        return true;
    return hg__cidr_match6(set, hg__cidr_load6(b));
}
