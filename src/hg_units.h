/*
 * hg_units: parsers for the small value types of the config: durations,
 * sizes, host names and "host:port" addresses. Each parser returns 0 on
 * success, or -1 with *reason set to a static string that explains what is
 * wrong; the caller adds where (file:line:col) and the text itself.
 */
#ifndef HG_UNITS_H
#define HG_UNITS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HG_HOSTNAME_MAX 253 /* characters, without a trailing dot */
#define HG_HOST_BUF     256 /* fits any host name or IP literal and a NUL */

/*
 * Parses a duration: a whole number followed by one unit, "ms", "s", "m" or
 * "h" ("1500ms", "5s", "30m"). A bare number is an error, as is a value that
 * does not fit 64 bits of milliseconds. Stores milliseconds in *ms.
 */
int hg_duration_parse(const char *text, uint64_t *ms, const char **reason);

/*
 * Parses a size: a whole number followed by "B", "KiB" or "MiB" ("64KiB").
 * A bare number is an error. Stores bytes in *bytes.
 */
int hg_size_parse(const char *text, uint64_t *bytes, const char **reason);

/*
 * Parses a rate: a whole number followed by "/s" or "/m" ("200/s",
 * "3000/m"). A bare number is an error. Stores events a minute.
 */
int hg_rate_parse(const char *text, uint64_t *per_minute, const char **reason);

/*
 * Splits "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 literal
 * into host (without brackets, NUL-terminated, at most hostsz bytes with the
 * NUL) and port (1..65535; 0 when none is written). Does not check that the
 * host is a valid name; a bracketed host must be an IPv6 address.
 */
int hg_hostport_split(const char *text, char *host, size_t hostsz,
                      uint16_t *port, const char **reason);

/*
 * Parses an address to listen on: an IP literal and a port, both required
 * ("0.0.0.0:8883", "[::]:8883"). Fills *ss and *len.
 */
int hg_bind_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len,
                  const char **reason);

/*
 * Parses a DNS server: an IP literal with an optional port ("10.0.0.2",
 * "10.0.0.2:5353", "[fd00::2]:53"); default_port is used when none is
 * written. Fills *ss and *len.
 */
int hg_server_parse(const char *text, uint16_t default_port,
                    struct sockaddr_storage *ss, socklen_t *len,
                    const char **reason);

/*
 * Parses a backend: a host name or IP literal with an optional port
 * ("hub.example.net", "hub.example.net:8883", "10.1.2.3", "[fd00::1]:443").
 * Stores the host without brackets in host (hostsz bytes, HG_HOST_BUF is
 * always enough) and the port, 0 when none is written.
 */
int hg_backend_parse(const char *text, char *host, size_t hostsz,
                     uint16_t *port, const char **reason);

/*
 * Checks that name[0..len) is made of host name labels: letters, digits,
 * '-' and '_' joined by single dots, 1..63 characters each, none beginning
 * or ending with '-'. A trailing dot must be stripped by the caller.
 */
int hg_hostname_labels(const char *name, size_t len, const char **reason);

/*
 * Checks that name[0..len) is a host name: labels as hg_hostname_labels()
 * wants, at most 253 characters in all, and a last label that is not all
 * digits. A trailing dot must be stripped by the caller.
 */
int hg_hostname_check(const char *name, size_t len, const char **reason);

#endif
