/*
 * Incremental TLS ClientHello parser: finds the SNI host name in the first
 * bytes a client sends, however they are split across TCP reads and TLS
 * records, without ever looking at a byte twice and without allocating.
 *
 * The caller keeps every byte it reads in one buffer that only grows and
 * calls hg_hello_parse() with the whole buffer after each read. The parser
 * remembers how far it got and examines only the new bytes: an outer record
 * layer strips the 5-byte record headers and feeds the payload to an inner
 * handshake state machine that accumulates fixed fields, skips variable ones
 * by count and copies the host name as it streams by.
 *
 * Reason words (hg_hello.reason, also used as metric label values):
 *   not_tls           DECLINED: the first byte is not a TLS record type
 *   sslv2             DECLINED: an SSLv2-format hello (first byte >= 0x80)
 *   bad_version       record version major is not 3
 *   bad_record        record length 0 or above 16384
 *   not_handshake     a non-handshake record before the hello is complete
 *   not_client_hello  the first handshake message is not a ClientHello
 *   malformed         a length field that overruns or does not add up
 *   bad_sni           a malformed, duplicate or invalid server_name
 *   too_big           the hello cannot fit in max_hello bytes
 */
#ifndef HG_HELLO_H
#define HG_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A convenient cap for hg_hello_init(): a full-size hello with room left. */
#define HG_HELLO_MAX_DEFAULT (64 * 1024)

enum hg_hello_rc {
    HG_HELLO_OK,       /* the whole ClientHello is in and well formed */
    HG_HELLO_AGAIN,    /* call again with more bytes */
    HG_HELLO_DECLINED, /* not TLS at all */
    HG_HELLO_ERROR     /* TLS framing, but unacceptable */
};

struct hg_hello {
    /* Results, valid once hg_hello_parse() returned HG_HELLO_OK. */
    char sni[256];      /* host_name, NUL-terminated, case kept */
    size_t sni_len;     /* bytes in sni before the NUL */
    bool has_sni;       /* false: no server_name extension */
    size_t hello_len;   /* raw bytes up to the end of the hello's last record */
    const char *reason; /* static reason word on DECLINED/ERROR, else NULL */

    /* Parser state, private to hg_hello.c. */
    size_t max_hello;  /* cap on the raw bytes of the hello */
    size_t pos;        /* bytes of the caller's buffer consumed */
    size_t rec_end;    /* buffer offset just past the current record */
    size_t examined;   /* bytes consumed, counted where they are read */
    uint32_t msg_left; /* handshake message bytes not yet consumed */
    uint32_t need;     /* size of the field being read */
    uint32_t got;      /* bytes of it read so far */
    uint32_t acc;      /* big-endian value of a fixed field */
    uint16_t rec_len;  /* length of the current record */
    uint16_t ext_type; /* type of the extension being read */
    uint16_t ext_len;  /* length of the extension being read */
    uint16_t list_len; /* length of the server_name list */
    uint8_t rc;        /* enum hg_hello_rc, sticky once not AGAIN */
    uint8_t rec_state; /* record header or record payload */
    uint8_t rec_got;   /* record header bytes read */
    uint8_t hs_state;  /* handshake field being read */
};

/*
 * Prepares h for a new connection. max_hello caps the raw bytes (record
 * headers included) a ClientHello may take; a hello declared larger is
 * refused as soon as its length fields are in.
 */
void hg_hello_init(struct hg_hello *h, size_t max_hello);

/*
 * Parses what is new in buf, the whole buffer read from the client so far:
 * the same prefix as on the previous call, possibly longer. Bytes after the
 * hello (past hello_len) are ignored. Returns HG_HELLO_AGAIN until the
 * outcome is known, then the same final value on every later call; on
 * DECLINED and ERROR, h->reason says why. The parser keeps no pointer to buf.
 */
enum hg_hello_rc hg_hello_parse(struct hg_hello *h, const uint8_t *buf,
                                size_t len);

#endif
