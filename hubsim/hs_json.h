/*
 * hs_json: a small strict JSON reader (RFC 8259) for the simulator's
 * settings: Variables, Header, Payloads and the File. The whole text is
 * read into a tree. By default nothing beyond the RFC is accepted; the
 * relaxations the simulator's own inputs rely on are asked for one by one:
 *
 *   HS_JSON_BARE_KEYS   member names without quotes ({name: "Temp"}), as
 *                       the simulator's documented Variables examples are
 *                       written
 *   HS_JSON_COMMENTS    // and slash-star comments, as .NET settings files
 *   HS_JSON_TRAILING    a comma before ']' or '}', as .NET settings files
 *
 * Strings must be valid UTF-8 and may not contain U+0000; a name may not
 * appear twice in one object; nesting is limited to HS_JSON_DEPTH.
 *
 * And the text escapes of hubsim's reports. The JSON report and the HTML
 * report carry the same JSON document, and the HTML page embeds it in a
 * <script> block, so one string escape serves both: besides what JSON
 * requires it writes '<', '>', '&', U+2028 and U+2029 as \u escapes (no
 * "</script>" or "<!--" can close or bend the block, and the text is also
 * a valid JavaScript literal), and it turns bytes that are not UTF-8 into
 * U+FFFD so the document always parses. Device ids, the hub's name and
 * error samples come from the user or the network; they reach a report only
 * through these functions.
 */
#ifndef HS_JSON_H
#define HS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HS_JSON_DEPTH 64

enum hs_json_flags {
    HS_JSON_BARE_KEYS = 1 << 0,
    HS_JSON_COMMENTS = 1 << 1,
    HS_JSON_TRAILING = 1 << 2,
};

enum hs_json_type {
    HS_JSON_NULL,
    HS_JSON_FALSE,
    HS_JSON_TRUE,
    HS_JSON_NUMBER,
    HS_JSON_STRING,
    HS_JSON_ARRAY,
    HS_JSON_OBJECT,
};

struct hs_json {
    enum hs_json_type type;
    uint32_t line, col; /* where the value starts, from 1 */
    char *str;  /* STRING: decoded, NUL-ended; NUMBER: the text as written */
    size_t len; /* of str */
    double num; /* NUMBER */
    struct hs_json *items; /* ARRAY items, OBJECT member values */
    char **keys;           /* OBJECT member names, NUL-ended */
    size_t n;
};

/* Where and why a text was refused. */
struct hs_json_error {
    uint32_t line, col;
    const char *why; /* static */
};

/*
 * Reads text[0..len) (flags: enum hs_json_flags) into *out. Returns 0 and
 * a tree the caller frees with hs_json_free(), or -1 with err filled in
 * (why is "out of memory" when that was the reason).
 */
int hs_json_parse(const char *text, size_t len, unsigned flags,
                  struct hs_json **out, struct hs_json_error *err);

void hs_json_free(struct hs_json *v);

/* The member of obj named key, ignoring case, or NULL. */
const struct hs_json *hs_json_get(const struct hs_json *obj, const char *key);

/* True when v is a number without fraction or exponent within int64. */
bool hs_json_int(const struct hs_json *v, int64_t *out);

/* A name for v's type in messages: "a string", "an object", ... */
const char *hs_json_type_name(const struct hs_json *v);

/*
 * Writes v as compact strict JSON into out (cap bytes). Returns the full
 * length, as snprintf does; the output is NUL-ended when it fits.
 */
size_t hs_json_write(const struct hs_json *v, char *out, size_t cap);

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
