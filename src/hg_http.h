/*
 * hg_http: a small read-only HTTP server on its own thread
 * (libmicrohttpd), for the gateway's admin endpoint and hubsim's metrics.
 * It answers GET and HEAD through a callback and refuses other methods;
 * per-address and total connection caps and a short idle timeout keep a
 * few idle clients from starving a probe or a scraper.
 */
#ifndef HG_HTTP_H
#define HG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct hg_http;

/* What the callback answers. */
struct hg_http_reply {
    unsigned status;
    const char *type; /* Content-Type */
    char *body;       /* NULL: out of memory, the connection is dropped */
    size_t len;
    bool owned; /* body was malloc'd; the server frees it */
};

/*
 * Called on the server's thread for each GET or HEAD of url; fills *out.
 * Runs concurrently with everything else: it must read shared state only
 * in thread-safe ways.
 */
typedef void (*hg_http_cb)(void *arg, const char *url,
                           struct hg_http_reply *out);

/* Starts serving on addr, holding max_conns connections at most (16 from
 * one address); NULL with a static reason when it cannot. */
struct hg_http *hg_http_start(const struct sockaddr_storage *addr,
                              unsigned max_conns, hg_http_cb cb, void *arg,
                              const char **reason);

/* Stops serving (no callback runs after it returns) and frees; NULL is
 * fine. */
void hg_http_stop(struct hg_http *h);

#endif
