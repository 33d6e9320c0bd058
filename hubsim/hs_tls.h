/*
 * hs_tls: OpenSSL for many non-blocking client connections. One context is
 * made at start and shared by every worker thread; each connection gets
 * its own SSL, sending the hub's name as SNI and checking the certificate
 * against that same name, whatever address the TCP connection went to.
 *
 * Every call clears the thread's OpenSSL error queue first and reports a
 * failure as a kind and a short reason, so the caller can count errors
 * apart: the peer reset, closed, certificate checks, other TLS failures.
 */
#ifndef HS_TLS_H
#define HS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/*
 * A client certificate (X.509 device authentication): the certificate,
 * any chain certificates that followed it in its PEM file, and its private
 * key, parsed once and shared by every connection that presents it.
 */
struct hs_tls_id {
    X509 *cert;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
};

enum hs_tls_rc {
    HS_TLS_OK,
    HS_TLS_WANT_READ,
    HS_TLS_WANT_WRITE,
    HS_TLS_FAILED, /* see struct hs_tls_failure */
};

enum hs_tls_fail_kind {
    HS_TLS_F_VERIFY, /* the certificate check failed */
    HS_TLS_F_PROTO,  /* any other TLS failure, an alert included */
    HS_TLS_F_CLOSED, /* the peer closed (EOF or close_notify) */
    HS_TLS_F_RESET,  /* a socket error; errno_value says which */
};

struct hs_tls_failure {
    enum hs_tls_fail_kind kind;
    int errno_value;
    char reason[160];
};

/*
 * Makes the shared client context: TLS 1.2 or later, peer verification
 * against cafile (or the system's roots when NULL), buffers released while
 * idle, partial writes. Returns NULL with a message in err on failure.
 */
SSL_CTX *hs_tls_ctx_new(const char *cafile, char *err, size_t errsz);

/*
 * Loads id from a PEM certificate file (chain certificates may follow) and
 * a PEM key file, and checks that they belong together. Returns 0, or -1
 * with a message in err (id is then empty). hs_tls_id_free() releases it.
 */
int hs_tls_id_load(struct hs_tls_id *id, const char *cert_file,
                   const char *key_file, char *err, size_t errsz);
void hs_tls_id_free(struct hs_tls_id *id);

/* Makes id the certificate every connection of ctx presents. */
int hs_tls_ctx_use_id(SSL_CTX *ctx, const struct hs_tls_id *id, char *err,
                      size_t errsz);

/*
 * A connection over fd (already connected) that sends server_name as SNI
 * and requires it in the certificate, presenting id when not NULL (else
 * the context's certificate, if any). Returns NULL when out of memory.
 */
SSL *hs_tls_new(SSL_CTX *ctx, int fd, const char *server_name,
                const struct hs_tls_id *id);

/* Drives the handshake one step. */
enum hs_tls_rc hs_tls_handshake(SSL *ssl, struct hs_tls_failure *f);

/* Reads up to cap bytes; OK with *n > 0, or WANT_* when nothing is in. */
enum hs_tls_rc hs_tls_read(SSL *ssl, void *buf, size_t cap, size_t *n,
                           struct hs_tls_failure *f);

/* Writes up to len bytes; OK with *n written (possibly fewer). */
enum hs_tls_rc hs_tls_write(SSL *ssl, const void *buf, size_t len, size_t *n,
                            struct hs_tls_failure *f);

/*
 * True when the server asked ssl for a client certificate and it had none.
 * Under TLS 1.3 the server checks the certificate after the client's
 * handshake is done, so its refusal shows up as the first read failing,
 * often as a reset; this tells that failure apart.
 */
bool hs_tls_cert_missing(SSL *ssl);

/* Sends close_notify without waiting for the peer's, then frees ssl. */
void hs_tls_close(SSL *ssl);

#endif
