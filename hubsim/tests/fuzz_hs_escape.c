/*
 * Fuzz target for the reports' escapes. The input (up to its first NUL) is
 * written with hs_json_str and hs_html_text. The JSON must be one quoted
 * string of valid UTF-8 holding no control character, '<', '>', '&',
 * U+2028 or U+2029, and decoding it must give back the input with each
 * byte that is not UTF-8 replaced by U+FFFD. The HTML must be valid UTF-8
 * without '<', '>', '"' or '\'', and every '&' must start one of the
 * escapes. Any failure aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *render(const char *s, int html, size_t *len);
static void check_utf8(const char *s, size_t len);
static void check_json(const char *in, const char *out, size_t len);
static void check_html(const char *out, size_t len);
static size_t put_utf8(char *out, uint32_t cp);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    size_t len;
    char *out = render(in, 0, &len);
    check_json(in, out, len);
    free(out);
    out = render(in, 1, &len);
    check_html(out, len);
    free(out);
    free(in);
    return 0;
}

static char *render(const char *s, int html, size_t *len)
{
    char *out = NULL;
    FILE *f = open_memstream(&out, len);
    if (f == NULL)
        abort();
    if (html)
        hs_html_text(f, s);
    else
        hs_json_str(f, s);
    fclose(f);
    return out;
}

static void check_utf8(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = hs_utf8_len((const unsigned char *)s + i, len - i);
        if (n == 0)
            abort();
        i += n;
    }
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

static void check_json(const char *in, const char *out, size_t len)
{
    check_utf8(out, len);
    if (len < 2 || out[0] != '"' || out[len - 1] != '"')
        abort();
    if (strstr(out, "\xE2\x80\xA8") || strstr(out, "\xE2\x80\xA9"))
        abort();
    /* Decode, and build what the input should come back as. */
    size_t inlen = strlen(in);
    char *got = malloc(len * 3 + 1), *want = malloc(inlen * 3 + 1);
    size_t g = 0, w = 0;
    for (size_t i = 1; i < len - 1; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == '"')
            abort();
        if (c != '\\') {
            got[g++] = (char)c;
            continue;
        }
        char e = out[++i];
        if (e == 'n' || e == '"' || e == '\\') {
            got[g++] = e == 'n' ? '\n' : e;
        } else if (e == 'u' && i + 4 < len - 1) {
            char hex[5] = {0};
            memcpy(hex, out + i + 1, 4);
            g += put_utf8(got + g, (uint32_t)strtoul(hex, NULL, 16));
            i += 4;
        } else {
            abort();
        }
    }
    for (size_t i = 0; i < inlen;) {
        size_t n = hs_utf8_len((const unsigned char *)in + i, inlen - i);
        if (n == 0) {
            w += put_utf8(want + w, 0xFFFD);
            n = 1;
        } else {
            memcpy(want + w, in + i, n);
            w += n;
        }
        i += n;
    }
    if (g != w || memcmp(got, want, g) != 0)
        abort();
    free(got);
    free(want);
}

static void check_html(const char *out, size_t len)
{
    static const char *const refs[] = {"&amp;", "&lt;", "&gt;", "&quot;",
                                       "&#39;"};
    check_utf8(out, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c == '<' || c == '>' || c == '"' || c == '\'' || c == 0x7F ||
            (c < 0x20 && c != '\t' && c != '\n'))
            abort();
        if (c != '&')
            continue;
        int ok = 0;
        for (size_t r = 0; r < sizeof(refs) / sizeof(refs[0]); r++)
            ok |= strncmp(out + i, refs[r], strlen(refs[r])) == 0;
        if (!ok)
            abort();
    }
}
