#include "hs_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static enum hs_tls_rc hs__result(SSL *ssl, int ret, struct hs_tls_failure *f);
static void hs__ssl_failure(SSL *ssl, struct hs_tls_failure *f);

SSL_CTX *hs_tls_ctx_new(const char *cafile, char *err, size_t errsz)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errsz, "cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    int ok = cafile ? SSL_CTX_load_verify_locations(ctx, cafile, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        unsigned long e = ERR_get_error();
        snprintf(err, errsz, "cannot load CA certificates%s%s: %s",
                 cafile ? " from " : "", cafile ? cafile : "",
                 e ? ERR_reason_error_string(e) : "unknown error");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL *hs_tls_new(SSL_CTX *ctx, int fd, const char *server_name)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    if (!SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, server_name) ||
        !SSL_set1_host(ssl, server_name)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set_connect_state(ssl);
    return ssl;
}

enum hs_tls_rc hs_tls_handshake(SSL *ssl, struct hs_tls_failure *f)
{
    ERR_clear_error();
    return hs__result(ssl, SSL_do_handshake(ssl), f);
}

enum hs_tls_rc hs_tls_read(SSL *ssl, void *buf, size_t cap, size_t *n,
                           struct hs_tls_failure *f)
{
    ERR_clear_error();
    *n = 0;
    int ret = SSL_read_ex(ssl, buf, cap, n);
    return hs__result(ssl, ret, f);
}

enum hs_tls_rc hs_tls_write(SSL *ssl, const void *buf, size_t len, size_t *n,
                            struct hs_tls_failure *f)
{
    ERR_clear_error();
    *n = 0;
    int ret = SSL_write_ex(ssl, buf, len, n);
    return hs__result(ssl, ret, f);
}

void hs_tls_close(SSL *ssl)
{
    if (ssl == NULL)
        return;
    ERR_clear_error();
    if (SSL_is_init_finished(ssl))
        SSL_shutdown(ssl);
    ERR_clear_error();
    SSL_free(ssl);
}

/* Turns an OpenSSL return value into OK, WANT_* or a described failure. */
static enum hs_tls_rc hs__result(SSL *ssl, int ret, struct hs_tls_failure *f)
{
    if (ret > 0)
        return HS_TLS_OK;
    int saved = errno;
    int e = SSL_get_error(ssl, ret);
    memset(f, 0, sizeof(*f));
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return HS_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return HS_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        f->kind = HS_TLS_F_CLOSED;
        snprintf(f->reason, sizeof(f->reason), "peer sent close_notify");
        return HS_TLS_FAILED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            f->kind = saved ? HS_TLS_F_RESET : HS_TLS_F_CLOSED;
            f->errno_value = saved;
            snprintf(f->reason, sizeof(f->reason), "%s",
                     saved ? strerror(saved) : "connection closed");
            return HS_TLS_FAILED;
        }
        break;
    default:
        break;
    }
    hs__ssl_failure(ssl, f);
    ERR_clear_error();
    return HS_TLS_FAILED;
}

/* Describes a library failure: the certificate check first, then EOF. */
static void hs__ssl_failure(SSL *ssl, struct hs_tls_failure *f)
{
    long verify = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_error();
    if (verify != X509_V_OK) {
        f->kind = HS_TLS_F_VERIFY;
        snprintf(f->reason, sizeof(f->reason), "certificate: %s",
                 X509_verify_cert_error_string(verify));
        return;
    }
    if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        f->kind = HS_TLS_F_CLOSED;
        snprintf(f->reason, sizeof(f->reason), "connection closed");
        return;
    }
    f->kind = HS_TLS_F_PROTO;
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(f->reason, sizeof(f->reason), "%s", why ? why : "TLS failure");
}
