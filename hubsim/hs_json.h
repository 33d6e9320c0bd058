/*
 * hs_json: the text escapes of hubsim's reports. The JSON report and the
 * HTML report carry the same JSON document, and the HTML page embeds it in
 * a <script> block, so one string escape serves both: besides what JSON
 * requires it writes '<', '>', '&', U+2028 and U+2029 as \u escapes (no
 * "</script>" or "<!--" can close or bend the block, and the text is also
 * a valid JavaScript literal), and it turns bytes that are not UTF-8 into
 * U+FFFD so the document always parses. Device ids, the hub's name and
 * error samples come from the user or the network; they reach a report only
 * through these functions.
 */
#ifndef HS_JSON_H
#define HS_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Writes s as a quoted JSON string. */
void hs_json_str(FILE *f, const char *s);

/*
 * Writes s as HTML text or attribute value: & < > " ' become character
 * references, control characters other than tab and newline are dropped,
 * and bytes that are not UTF-8 become U+FFFD.
 */
void hs_html_text(FILE *f, const char *s);

/*
 * The length of the valid UTF-8 sequence at s (at most n bytes), or 0 when
 * the bytes there are not one (overlong forms, surrogates and values above
 * U+10FFFF included). Exposed for tests.
 */
size_t hs_utf8_len(const unsigned char *s, size_t n);

#endif
