/*
 * hs_base64: standard base64 (RFC 4648, with padding), as SAS keys, SAS
 * signatures and WebSocket keys use it.
 */
#ifndef HS_BASE64_H
#define HS_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Characters hs_base64_encode writes for len bytes, without the NUL. */
#define HS_BASE64_LEN(len) (((len) + 2) / 3 * 4)

/* Encodes in[0..len) into out (HS_BASE64_LEN(len) + 1 bytes, NUL ended). */
size_t hs_base64_encode(const uint8_t *in, size_t len, char *out);

/*
 * Decodes text: a multiple of four characters of the standard alphabet,
 * with '=' padding only at the end and zero bits in the padded tail.
 * Returns the number of bytes, or -1 when text is not such a string or out
 * (cap bytes) is too small.
 */
long hs_base64_decode(const char *text, uint8_t *out, size_t cap);

#endif
