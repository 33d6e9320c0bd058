/*
 * hg_net: small socket helpers shared by the gateway and its tools. All
 * return 0 or -errno, never leave errno for the caller to read.
 */
#ifndef HG_NET_H
#define HG_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Big enough for "[ffff:...:ffff]:65535". */
#define HG_ADDRSTRLEN 64

/* Formats ip:port ("1.2.3.4:80", "[::1]:80") into buf; returns buf. */
char *hg_net_format(const struct sockaddr *sa, char *buf, size_t size);

/* Formats the address alone, without port or brackets. */
char *hg_net_format_ip(const struct sockaddr *sa, char *buf, size_t size);

/* The port of an AF_INET/AF_INET6 address, host order. */
uint16_t hg_net_port(const struct sockaddr *sa);
void hg_net_set_port(struct sockaddr *sa, uint16_t port);

/* sizeof the address of sa's family. */
socklen_t hg_net_len(const struct sockaddr *sa);

/*
 * TCP_NODELAY, and SO_KEEPALIVE on with that idle time (off when 0). Set on
 * a listening socket, every socket accepted from it inherits them.
 */
int hg_net_tune(int fd, unsigned keepalive_idle_s);

/* TCP_NODELAY alone. */
int hg_net_nodelay(int fd);

/*
 * TCP_QUICKACK. Off, fd's ACKs wait for data to ride on (the kernel's
 * interactive mode): set before connect(2), the handshake's last ACK goes
 * with the first bytes sent. On again once they are sent, an ACK held back
 * goes at once, and so do the ones after.
 */
int hg_net_quick_ack(int fd, bool on);

/* SO_KEEPALIVE on, first probe after idle_s, then every 30 s, 4 at most. */
int hg_net_keepalive(int fd, unsigned idle_s);

/*
 * How far the peer has taken what was sent on a TCP socket: the bytes it
 * acknowledged so far (0 where the kernel does not say), and whether some
 * are still waiting for it (sent or not).
 */
uint64_t hg_net_acked(int fd, bool *waiting);

/* SO_LINGER 0: the close that follows resets the connection. */
int hg_net_abort(int fd);

/*
 * A non-blocking listening socket bound to addr with SO_REUSEPORT, so that
 * each worker can own one for the same address. defer_s > 0 sets
 * TCP_DEFER_ACCEPT. Returns the fd, or -errno.
 */
int hg_net_listen(const struct sockaddr *addr, socklen_t len, int backlog,
                  unsigned defer_s);

#endif
