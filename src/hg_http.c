#include "hg_http.h"

#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#define HG_HTTP_MAX_PER_IP 16
#define HG_HTTP_TIMEOUT_S  5

struct hg_http {
    struct MHD_Daemon *mhd;
    hg_http_cb cb;
    void *arg;
};

static enum MHD_Result hg__http_handle(void *cls, struct MHD_Connection *conn,
                                       const char *url, const char *method,
                                       const char *version, const char *upload,
                                       size_t *upload_size, void **state);
static enum MHD_Result hg__http_reply(struct MHD_Connection *conn,
                                      const struct hg_http_reply *r);

struct hg_http *hg_http_start(const struct sockaddr_storage *addr,
                              unsigned max_conns, hg_http_cb cb, void *arg,
                              const char **reason)
{
    struct hg_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        *reason = "out of memory";
        return NULL;
    }
    h->cb = cb;
    h->arg = arg;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (addr->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, hg__http_handle, h, MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)addr, MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        max_conns < HG_HTTP_MAX_PER_IP ? max_conns : HG_HTTP_MAX_PER_IP,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HG_HTTP_TIMEOUT_S,
        MHD_OPTION_END);
    if (h->mhd == NULL) {
        *reason = "cannot listen (address in use or not local?)";
        free(h);
        return NULL;
    }
    return h;
}

void hg_http_stop(struct hg_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->mhd);
    free(h);
}

static enum MHD_Result hg__http_handle(void *cls, struct MHD_Connection *conn,
                                       const char *url, const char *method,
                                       const char *version, const char *upload,
                                       size_t *upload_size, void **state)
{
    struct hg_http *h = cls;
    struct hg_http_reply r = {
        .status = MHD_HTTP_METHOD_NOT_ALLOWED,
        .type = "text/plain; charset=utf-8",
        .body = "method not allowed\n",
        .len = 19,
    };
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        h->cb(h->arg, url, &r);
    if (r.body == NULL)
        return MHD_NO;
    return hg__http_reply(conn, &r);
}

static enum MHD_Result hg__http_reply(struct MHD_Connection *conn,
                                      const struct hg_http_reply *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r->len, r->body,
        r->owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        if (r->owned)
            free(r->body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type);
    enum MHD_Result rc = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);
    return rc;
}
