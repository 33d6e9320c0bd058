#include "hs_base64.h"

#include <string.h>

static int hs__b64_value(char c);

static const char hs__b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t hs_base64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[n++] = hs__b64_chars[v >> 18 & 63];
        out[n++] = hs__b64_chars[v >> 12 & 63];
        out[n++] = i + 1 < len ? hs__b64_chars[v >> 6 & 63] : '=';
        out[n++] = i + 2 < len ? hs__b64_chars[v & 63] : '=';
    }
    out[n] = '\0';
    return n;
}

/* The 6-bit value of a base64 character, or -1. */
static int hs__b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long hs_base64_decode(const char *text, uint8_t *out, size_t cap)
{
    size_t len = strlen(text);
    if (len % 4 != 0)
        return -1;
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=')
        pad++;
    if (len >= 2 && text[len - 2] == '=')
        pad++;
    size_t n = len / 4 * 3 - pad;
    if (n > cap)
        return -1;
    size_t w = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            char c = text[i + k];
            int d = (c == '=' && i + k >= len - pad) ? 0 : hs__b64_value(c);
            if (d < 0)
                return -1;
            v = v << 6 | (uint32_t)d;
        }
        uint8_t b[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
        for (size_t k = 0; k < 3 && w < n; k++)
            out[w++] = b[k];
        if (i + 4 == len &&
            ((pad == 1 && (v & 0xFF)) || (pad == 2 && (v & 0xFFFF))))
            return -1; /* non-zero bits under the padding */
    }
    return (long)n;
}
