/*
 * hg_cidr: a set of IPv4 and IPv6 prefixes (an allow list) with a lookup in
 * O(log n). Prefixes are added as text, then hg_cidr_set_finish() turns
 * them into sorted, merged address ranges that hg_cidr_set_match() searches
 * by bisection. A finished set is read-only and safe to share between
 * threads.
 */
#ifndef HG_CIDR_H
#define HG_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct hg_cidr_set;

/* Returns an empty set, owned by the caller, or NULL when out of memory. */
struct hg_cidr_set *hg_cidr_set_new(void);

/*
 * Adds a prefix written as "a.b.c.d/len", "v6/len" or a bare address (/32
 * or /128). Host bits set below the prefix are cleared ("10.1.2.3/8" is
 * 10.0.0.0/8). A prefix inside ::ffff:0:0/96 is stored as the IPv4 prefix
 * it maps. Returns 0, or -1 with *reason set to a static string; the set is
 * unchanged on error. Invalidates an earlier hg_cidr_set_finish().
 */
int hg_cidr_set_add(struct hg_cidr_set *set, const char *text,
                    const char **reason);

/* Sorts and merges the prefixes; call once after the last add. */
void hg_cidr_set_finish(struct hg_cidr_set *set);

/*
 * True when the address of sa (AF_INET or AF_INET6) lies in the set. An
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) also matches IPv4 prefixes.
 * The set must be finished.
 */
bool hg_cidr_set_match(const struct hg_cidr_set *set,
                       const struct sockaddr *sa);

/* Number of merged ranges (IPv4 and IPv6) of a finished set. */
size_t hg_cidr_set_ranges(const struct hg_cidr_set *set);

/* Frees the set; NULL is allowed. */
void hg_cidr_set_free(struct hg_cidr_set *set);

#endif
