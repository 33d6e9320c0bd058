/*
 * Fuzz target for CIDR sets: each input line is added as a prefix; the
 * finished set must then match the address of every prefix it accepted
 * (host bits are cleared, so the written address is always inside), and
 * matching the remaining bytes read as addresses must not fail.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hg_cidr.h"

#define FUZZ_LINES 64
#define FUZZ_LINE  80

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One accepted prefix's address, to look up once the set is finished. */
struct fuzz_addr {
    int family;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
};

static bool fuzz_addr_of(const char *text, struct fuzz_addr *a);
static void fuzz_probe(const struct hg_cidr_set *set, const uint8_t *data,
                       size_t size);

/* Reads the address part of an accepted prefix. */
static bool fuzz_addr_of(const char *text, struct fuzz_addr *a)
{
    char buf[FUZZ_LINE];
    char *slash;

    memset(a, 0, sizeof(*a));
    strcpy(buf, text);
    slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    a->sin.sin_family = AF_INET;
    a->sin6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET, buf, &a->sin.sin_addr) == 1)
        a->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, &a->sin6.sin6_addr) == 1)
        a->family = AF_INET6;
    return a->family != 0;
}

/* Matches every 16-byte window of data as IPv6, and every 4 as IPv4. */
static void fuzz_probe(const struct hg_cidr_set *set, const uint8_t *data,
                       size_t size)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

    for (size_t i = 0; i + 16 <= size; i += 16) {
        memcpy(&sin6.sin6_addr, data + i, 16);
        (void)hg_cidr_set_match(set, (struct sockaddr *)&sin6);
        memcpy(&sin.sin_addr, data + i, 4);
        (void)hg_cidr_set_match(set, (struct sockaddr *)&sin);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_addr addrs[FUZZ_LINES];
    struct hg_cidr_set *set = hg_cidr_set_new();
    size_t n = 0, pos = 0;
    char line[FUZZ_LINE];
    const char *reason;

    if (set == NULL)
        return 0;
    while (pos < size && n < FUZZ_LINES) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - data) - pos : size - pos;
        if (len < sizeof(line)) {
            memcpy(line, data + pos, len);
            line[len] = '\0';
            if (hg_cidr_set_add(set, line, &reason) == 0 &&
                fuzz_addr_of(line, &addrs[n]))
                n++;
        }
        pos += len + 1;
    }
    hg_cidr_set_finish(set);
    for (size_t i = 0; i < n; i++) {
        const struct sockaddr *sa = addrs[i].family == AF_INET
                                        ? (struct sockaddr *)&addrs[i].sin
                                        : (struct sockaddr *)&addrs[i].sin6;
        if (!hg_cidr_set_match(set, sa))
            abort();
    }
    fuzz_probe(set, data, size);
    hg_cidr_set_free(set);
    return 0;
}
