#include "hs_json.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define HS_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD in UTF-8 */

size_t hs_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, cp = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, cp = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

void hs_json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    fputc('"', f);
    while (left > 0) {
        size_t n = hs_utf8_len(p, left);
        if (n == 0) {
            fputs("\\ufffd", f);
            n = 1;
        } else if (n == 3 && p[0] == 0xE2 && p[1] == 0x80 &&
                   (p[2] == 0xA8 || p[2] == 0xA9)) {
            fprintf(f, "\\u%04x", 0x2028 + (p[2] - 0xA8));
        } else if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p == '\n') {
            fputs("\\n", f);
        } else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&' ||
                   *p == 0x7F) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
        left -= n;
    }
    fputc('"', f);
}

void hs_html_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t left = strlen(s);
    while (left > 0) {
        size_t n = hs_utf8_len(p, left);
        if (n == 0) {
            fputs(HS_REPLACEMENT, f);
            n = 1;
        } else if (*p == '&') {
            fputs("&amp;", f);
        } else if (*p == '<') {
            fputs("&lt;", f);
        } else if (*p == '>') {
            fputs("&gt;", f);
        } else if (*p == '"') {
            fputs("&quot;", f);
        } else if (*p == '\'') {
            fputs("&#39;", f);
        } else if ((*p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7F) {
            /* dropped: HTML does not allow them */
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
        left -= n;
    }
}
