/*
 * hb_hello: the bytes of a TLS 1.3 ClientHello with a given server name,
 * as a browser or an IoT SDK would send it: one handshake record carrying
 * server_name, supported_versions, supported_groups, signature_algorithms,
 * key_share (x25519), psk_key_exchange_modes, ALPN and padding up to a
 * 512-byte handshake. It never completes a handshake: the benchmark's
 * backend is a plain TCP echo, and the proxies only peek at it.
 */
#ifndef HB_HELLO_H
#define HB_HELLO_H

#include <stddef.h>
#include <stdint.h>

#define HB_HELLO_MAX 1024

/*
 * Writes the record (5-byte header and handshake) into out, which holds
 * HB_HELLO_MAX bytes. Returns its length, or 0 when sni does not fit.
 */
size_t hb_hello_build(uint8_t *out, const char *sni);

/*
 * The length of the TLS record that starts buf (5 + its length field), or
 * 0 while fewer than 5 bytes are in.
 */
size_t hb_hello_record_len(const uint8_t *buf, size_t len);

#endif
