/*
 * Parsers for durations, sizes, host names and addresses. Numbers are
 * decimal digits only (no sign, no spaces, no fractions) and every
 * multiplication is checked, so no input can wrap around.
 */
#include "hg_units.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

/* A unit suffix and what one of it is worth. */
struct hg__unit {
    const char *name;
    uint64_t factor;
};

static const struct hg__unit hg__duration_units[] = {
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
};

static const struct hg__unit hg__size_units[] = {
    {"B", 1},
    {"KiB", 1024},
    {"MiB", 1024 * 1024},
};

/* Rates, in events a minute. */
static const struct hg__unit hg__rate_units[] = {
    {"/s", 60},
    {"/m", 1},
};

static int hg__units_number(const char *text, uint64_t *value, const char **end,
                            const char **reason);
static int hg__units_scaled(const char *text, const struct hg__unit *units,
                            size_t nunits, uint64_t *out, const char **reason,
                            const char *no_unit, const char *bad_unit);
static int hg__units_port(const char *text, uint16_t *port,
                          const char **reason);
static int hg__units_copy(const char *src, size_t len, char *dst, size_t dstsz,
                          const char **reason);
static int hg__units_bracketed(const char *text, char *host, size_t hostsz,
                               uint16_t *port, const char **reason);
static int hg__units_ip(const char *host, uint16_t port,
                        struct sockaddr_storage *ss, socklen_t *len);
static bool hg__units_is_ip(const char *host);
static bool hg__units_ambiguous(const char *host);
static bool hg__units_unspecified(const char *host);
static bool hg__units_host_char(char c);
static int hg__units_label(const char *label, size_t len, const char **reason);

/*
 * Reads the leading decimal digits of text into *value and points *end past
 * them. Returns -1 when there is no digit or the number overflows.
 */
static int hg__units_number(const char *text, uint64_t *value, const char **end,
                            const char **reason)
{
    const char *p = text;
    uint64_t v = 0;

    if (*p < '0' || *p > '9') {
        *reason = "a whole number is required";
        return -1;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            *reason = "the number is too large";
            return -1;
        }
        v = v * 10 + d;
    }
    *value = v;
    *end = p;
    return 0;
}

/*
 * Parses "<number><unit>" against a unit table. no_unit and bad_unit are the
 * reasons for a missing and an unknown unit. Returns 0 or -1.
 */
static int hg__units_scaled(const char *text, const struct hg__unit *units,
                            size_t nunits, uint64_t *out, const char **reason,
                            const char *no_unit, const char *bad_unit)
{
    const char *unit;
    uint64_t v;

    if (hg__units_number(text, &v, &unit, reason) != 0)
        return -1;
    if (*unit == '\0') {
        *reason = no_unit;
        return -1;
    }
    if (*unit == '.') {
        *reason = "a whole number is required; use a smaller unit";
        return -1;
    }
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(unit, units[i].name) != 0)
            continue;
        if (v > UINT64_MAX / units[i].factor) {
            *reason = "the value is too large";
            return -1;
        }
        *out = v * units[i].factor;
        return 0;
    }
    *reason = bad_unit;
    return -1;
}

int hg_duration_parse(const char *text, uint64_t *ms, const char **reason)
{
    return hg__units_scaled(
        text, hg__duration_units,
        sizeof(hg__duration_units) / sizeof(hg__duration_units[0]), ms, reason,
        "a unit is required: ms, s, m, h", "unknown unit; use ms, s, m, h");
}

int hg_size_parse(const char *text, uint64_t *bytes, const char **reason)
{
    return hg__units_scaled(text, hg__size_units,
                            sizeof(hg__size_units) / sizeof(hg__size_units[0]),
                            bytes, reason, "a unit is required: B, KiB, MiB",
                            "unknown unit; use B, KiB, MiB");
}

int hg_rate_parse(const char *text, uint64_t *per_minute, const char **reason)
{
    return hg__units_scaled(text, hg__rate_units,
                            sizeof(hg__rate_units) / sizeof(hg__rate_units[0]),
                            per_minute, reason,
                            "a unit is required: /s or /m, as in 200/s",
                            "unknown unit; use /s or /m, as in 200/s");
}

/* Parses a port number, 1..65535, digits only. Returns 0 or -1. */
static int hg__units_port(const char *text, uint16_t *port, const char **reason)
{
    const char *end;
    uint64_t v;

    if (hg__units_number(text, &v, &end, reason) != 0 || *end != '\0') {
        *reason = "the port must be a number";
        return -1;
    }
    if (v < 1 || v > 65535) {
        *reason = "the port must be 1..65535";
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

/* Copies len bytes and a NUL into dst. Returns -1 if the host is empty or
 * does not fit. */
static int hg__units_copy(const char *src, size_t len, char *dst, size_t dstsz,
                          const char **reason)
{
    if (len == 0) {
        *reason = "the host is missing";
        return -1;
    }
    if (len >= dstsz) {
        *reason = "the host is too long";
        return -1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* Splits "[v6]" or "[v6]:port". Returns 0 or -1. */
static int hg__units_bracketed(const char *text, char *host, size_t hostsz,
                               uint16_t *port, const char **reason)
{
    const char *close = strchr(text, ']');
    struct in6_addr a6;

    if (close == NULL) {
        *reason = "missing ']'";
        return -1;
    }
    if (hg__units_copy(text + 1, (size_t)(close - text - 1), host, hostsz,
                       reason) != 0)
        return -1;
    if (inet_pton(AF_INET6, host, &a6) != 1) {
        *reason = "brackets must hold an IPv6 address";
        return -1;
    }
    *port = 0;
    if (close[1] == '\0')
        return 0;
    if (close[1] != ':') {
        *reason = "unexpected text after ']'";
        return -1;
    }
    return hg__units_port(close + 2, port, reason);
}

int hg_hostport_split(const char *text, char *host, size_t hostsz,
                      uint16_t *port, const char **reason)
{
    const char *colon = strchr(text, ':');

    if (text[0] == '[')
        return hg__units_bracketed(text, host, hostsz, port, reason);
    *port = 0;
    if (colon == NULL)
        return hg__units_copy(text, strlen(text), host, hostsz, reason);
    if (strchr(colon + 1, ':') == NULL) {
        if (hg__units_copy(text, (size_t)(colon - text), host, hostsz,
                           reason) != 0)
            return -1;
        return hg__units_port(colon + 1, port, reason);
    }
    /* Two colons or more: only a bare IPv6 literal, without a port. */
    if (hg__units_copy(text, strlen(text), host, hostsz, reason) != 0)
        return -1;
    if (!hg__units_is_ip(host)) {
        *reason = "an IPv6 address with a port needs brackets, as in "
                  "[::1]:443";
        return -1;
    }
    if (hg__units_ambiguous(host)) {
        *reason = "ambiguous: the last group reads as a port as well; "
                  "write [ADDRESS]:PORT, or [ADDRESS] for no port";
        return -1;
    }
    return 0;
}

/*
 * True when a bare IPv6 literal also reads as an IPv6 address and a port
 * ("::1:8883", "2001:db8::1:443"): some tools take the last group for a
 * port, so either reading may be what was meant.
 */
static bool hg__units_ambiguous(const char *host)
{
    const char *last = strrchr(host, ':');
    char head[HG_HOST_BUF];
    uint16_t port;
    const char *reason;

    if (last == NULL || (size_t)(last - host) >= sizeof(head) ||
        hg__units_port(last + 1, &port, &reason) != 0)
        return false;
    memcpy(head, host, (size_t)(last - host));
    head[last - host] = '\0';
    return hg__units_is_ip(head);
}

/* Fills *ss from an IP literal and a port. Returns -1 if host is not one. */
static int hg__units_ip(const char *host, uint16_t port,
                        struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

/* True when host is an IPv4 or IPv6 literal. */
/* True for 0.0.0.0 and :: in any spelling. */
static bool hg__units_unspecified(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len;
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;

    if (hg__units_ip(host, 0, &ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return ((struct sockaddr_in *)&ss)->sin_addr.s_addr == INADDR_ANY;
    return memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &any6,
                  sizeof(any6)) == 0;
}

static bool hg__units_is_ip(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t len;

    return hg__units_ip(host, 0, &ss, &len) == 0;
}

int hg_bind_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len,
                  const char **reason)
{
    char host[HG_HOST_BUF];
    uint16_t port;

    if (hg_hostport_split(text, host, sizeof(host), &port, reason) != 0)
        return -1;
    if (hg__units_ip(host, port, ss, len) != 0) {
        *reason = "the host must be an IP address";
        return -1;
    }
    if (port == 0) {
        *reason = "a port is required, as in 0.0.0.0:8883 or [::]:8883";
        return -1;
    }
    /* Listening sockets are IPv6-only, and those cannot bind an IPv4
     * address in IPv6 form. */
    if (ss->ss_family == AF_INET6 &&
        IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)ss)->sin6_addr)) {
        *reason = "an IPv4 address is written as one, as in 127.0.0.1:8883";
        return -1;
    }
    return 0;
}

int hg_server_parse(const char *text, uint16_t default_port,
                    struct sockaddr_storage *ss, socklen_t *len,
                    const char **reason)
{
    char host[HG_HOST_BUF];
    uint16_t port;

    if (hg_hostport_split(text, host, sizeof(host), &port, reason) != 0)
        return -1;
    if (hg__units_ip(host, port ? port : default_port, ss, len) != 0) {
        *reason = "the server must be an IP address";
        return -1;
    }
    return 0;
}

int hg_backend_parse(const char *text, char *host, size_t hostsz,
                     uint16_t *port, const char **reason)
{
    size_t len;

    if (hg_hostport_split(text, host, hostsz, port, reason) != 0)
        return -1;
    if (hg__units_is_ip(host) && hg__units_unspecified(host)) {
        *reason = "0.0.0.0 and :: mean no address; a backend needs one";
        return -1;
    }
    if (hg__units_is_ip(host))
        return 0;
    len = strlen(host);
    if (host[len - 1] == '.')
        len--; /* a fully qualified name */
    return hg_hostname_check(host, len, reason);
}

/* True for the characters a host name may hold besides the dots. */
static bool hg__units_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Checks one label of a host name. Returns 0 or -1. */
static int hg__units_label(const char *label, size_t len, const char **reason)
{
    if (len == 0) {
        *reason = "empty label (two dots in a row, or a dot at an end)";
        return -1;
    }
    if (len > 63) {
        *reason = "a label is longer than 63 characters";
        return -1;
    }
    if (label[0] == '-' || label[len - 1] == '-') {
        *reason = "a label begins or ends with '-'";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (!hg__units_host_char(label[i])) {
            *reason = "invalid character; use letters, digits, '-', '_', "
                      "'.'";
            return -1;
        }
    }
    return 0;
}

int hg_hostname_labels(const char *name, size_t len, const char **reason)
{
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] != '.')
            continue;
        if (hg__units_label(name + start, i - start, reason) != 0)
            return -1;
        start = i + 1;
    }
    return 0;
}

int hg_hostname_check(const char *name, size_t len, const char **reason)
{
    bool numeric = true;

    if (len == 0) {
        *reason = "the name is empty";
        return -1;
    }
    if (len > HG_HOSTNAME_MAX) {
        *reason = "the name is longer than 253 characters";
        return -1;
    }
    if (hg_hostname_labels(name, len, reason) != 0)
        return -1;
    for (size_t j = len; j > 0 && name[j - 1] != '.'; j--)
        numeric = numeric && name[j - 1] >= '0' && name[j - 1] <= '9';
    if (numeric) {
        *reason = "not an IP address, and a name cannot end in a number";
        return -1;
    }
    return 0;
}
