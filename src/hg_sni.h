/*
 * hg_sni: the table that maps a TLS server name to a value (a route). Two
 * hash tables: exact names, and wildcards "*.example.net" keyed by their
 * suffix "example.net". Names are compared in lower case and without one
 * trailing dot. An exact name beats any wildcard; among wildcards the
 * longest suffix wins; a wildcard matches names with one or more labels in
 * front of its suffix, never the suffix itself. A table is filled once and
 * then only read, so lookups from several threads need no lock.
 */
#ifndef HG_SNI_H
#define HG_SNI_H

#include <stddef.h>

#define HG_SNI_QUERY_MAX 255 /* longest server name a lookup considers */

struct hg_sni_table;

/* Returns an empty table, owned by the caller, or NULL when out of memory. */
struct hg_sni_table *hg_sni_table_new(void);

/*
 * Adds name, an exact host name or "*." and a host name, with its value
 * (not NULL, not owned). Returns 0, or -1 with *reason set to a static
 * string. When the normalized name is already in the table, *prev is set to
 * the value it has (otherwise to NULL), so the caller can say where.
 */
int hg_sni_table_add(struct hg_sni_table *t, const char *name, void *value,
                     void **prev, const char **reason);

/*
 * Finds the value for a server name of len bytes (not NUL-terminated, any
 * case, optional trailing dot), without allocating. Returns NULL when
 * nothing matches or the name cannot be a host name.
 */
void *hg_sni_table_lookup(const struct hg_sni_table *t, const char *name,
                          size_t len);

/* Number of names in the table. */
size_t hg_sni_table_count(const struct hg_sni_table *t);

/* Frees the table and its copies of the names; NULL is allowed. */
void hg_sni_table_free(struct hg_sni_table *t);

#endif
