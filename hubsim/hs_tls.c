#include "hs_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

static enum hs_tls_rc hs__result(SSL *ssl, int ret, struct hs_tls_failure *f);
static void hs__ssl_failure(SSL *ssl, struct hs_tls_failure *f);
static const char *hs__err_text(void);
static int hs__no_cert(SSL *ssl, X509 **cert, EVP_PKEY **key);

/* Marks (as app data) an SSL asked for a certificate it did not have. */
static char hs__cert_asked;

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
    SSL_CTX_set_client_cert_cb(ctx, hs__no_cert);
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

int hs_tls_id_load(struct hs_tls_id *id, const char *cert_file,
                   const char *key_file, char *err, size_t errsz)
{
    const char *bad = cert_file;
    memset(id, 0, sizeof(*id));
    ERR_clear_error();
    BIO *bio = BIO_new_file(cert_file, "r");
    if (bio == NULL ||
        (id->cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL)
        goto fail;
    X509 *extra;
    while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (id->chain == NULL && (id->chain = sk_X509_new_null()) == NULL) {
            X509_free(extra);
            goto fail;
        }
        if (!sk_X509_push(id->chain, extra)) {
            X509_free(extra);
            goto fail;
        }
    }
    ERR_clear_error(); /* the end of the file */
    BIO_free(bio);
    bad = key_file;
    bio = BIO_new_file(key_file, "r");
    if (bio == NULL ||
        (id->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL)
        goto fail;
    BIO_free(bio);
    bio = NULL;
    if (!X509_check_private_key(id->cert, id->key))
        goto fail;
    return 0;
fail:
    snprintf(err, errsz, "%s: %s", bad, hs__err_text());
    BIO_free(bio);
    hs_tls_id_free(id);
    ERR_clear_error();
    return -1;
}

void hs_tls_id_free(struct hs_tls_id *id)
{
    X509_free(id->cert);
    sk_X509_pop_free(id->chain, X509_free);
    EVP_PKEY_free(id->key);
    memset(id, 0, sizeof(*id));
}

int hs_tls_ctx_use_id(SSL_CTX *ctx, const struct hs_tls_id *id, char *err,
                      size_t errsz)
{
    ERR_clear_error();
    if (SSL_CTX_use_cert_and_key(ctx, id->cert, id->key, id->chain, 1))
        return 0;
    snprintf(err, errsz, "cannot use the client certificate: %s",
             hs__err_text());
    ERR_clear_error();
    return -1;
}

SSL *hs_tls_new(SSL_CTX *ctx, int fd, const char *server_name,
                const struct hs_tls_id *id)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    if (!SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, server_name) ||
        !SSL_set1_host(ssl, server_name) ||
        (id != NULL &&
         !SSL_use_cert_and_key(ssl, id->cert, id->key, id->chain, 1))) {
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

bool hs_tls_cert_missing(SSL *ssl)
{
    return ssl != NULL && SSL_get_app_data(ssl) == &hs__cert_asked;
}

/*
 * OpenSSL calls this when the server asks for a client certificate and
 * none is set: note it, and go on without one (returns 0).
 */
static int hs__no_cert(SSL *ssl, X509 **cert, EVP_PKEY **key)
{
    (void)cert;
    (void)key;
    SSL_set_app_data(ssl, &hs__cert_asked);
    return 0;
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

/* The reason of the first error in OpenSSL's queue. */
static const char *hs__err_text(void)
{
    unsigned long e = ERR_peek_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    return why ? why : "cannot read it";
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
