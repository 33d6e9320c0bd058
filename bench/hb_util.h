/*
 * hb_util: what the benchmark tools share besides hubgate's own modules:
 * a nanosecond clock, loopback address parsing, a non-blocking connect and
 * strict parsing of numeric options.
 */
#ifndef HB_UTIL_H
#define HB_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct hb_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Monotonic clock in nanoseconds. */
uint64_t hb_now_ns(void);

/*
 * Parses "1.2.3.4:PORT" or "[::1]:PORT" (a numeric address only: the tools
 * never look a name up). Returns false when text is not one.
 */
bool hb_addr_parse(const char *text, struct hb_addr *out);

/* True for 127.0.0.0/8 and ::1: the tools refuse any other destination. */
bool hb_addr_is_loopback(const struct hb_addr *a);

/*
 * Starts a non-blocking TCP connect to dst with TCP_NODELAY, from src when
 * it is not NULL (port chosen at connect time). Returns the fd, or -errno.
 * EINPROGRESS is success: the caller waits for EPOLLOUT.
 */
int hb_connect(const struct hb_addr *dst, const struct hb_addr *src);

/* SO_ERROR of fd as -errno, or 0. */
int hb_socket_error(int fd);

/*
 * Parses a whole string as a non-negative number into *out; false when it
 * is not one or falls outside [min, max].
 */
bool hb_parse_double(const char *s, double min, double max, double *out);
bool hb_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);

/*
 * What a source backend sends, so that the reader can check every byte:
 * byte k of a stream is k % HB_PATTERN_PERIOD. No two bytes of a period are
 * alike, so a run of bytes changed, lost, repeated or moved shows at once,
 * unless the shift is a whole number of periods (251 is prime: no
 * power-of-two size is one). hb_pattern + phase holds HB_PATTERN_RUN bytes
 * of the stream from any phase below the period. hb_pattern_init() fills
 * it, once, at start.
 */
#define HB_PATTERN_PERIOD 251u
#define HB_PATTERN_RUN    (256u * 1024)
extern uint8_t hb_pattern[HB_PATTERN_RUN + HB_PATTERN_PERIOD];
void hb_pattern_init(void);

/* Reads the open-file soft limit up to the hard one; returns the result. */
unsigned hb_raise_nofile(void);

#endif
