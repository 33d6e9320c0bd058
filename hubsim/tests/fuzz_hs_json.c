/*
 * Fuzz target for hs_json. The input's first byte picks the relaxations;
 * the rest is read. A text that is accepted must write back as strict JSON
 * that reads again, strictly, into a tree that writes the same bytes; the
 * written length must be what a cut write reports. Any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hs_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned flags =
        data[0] & (HS_JSON_BARE_KEYS | HS_JSON_COMMENTS | HS_JSON_TRAILING);
    struct hs_json *v = NULL, *again = NULL;
    struct hs_json_error e;
    if (hs_json_parse((const char *)data + 1, size - 1, flags, &v, &e) < 0) {
        if (v != NULL || e.why == NULL || e.line == 0 || e.col == 0)
            abort();
        return 0;
    }
    size_t n = hs_json_write(v, NULL, 0);
    char *out = malloc(n + 1), *out2 = malloc(n + 1);
    if (out == NULL || out2 == NULL)
        abort();
    if (hs_json_write(v, out, n + 1) != n || strlen(out) != n)
        abort();
    if (hs_json_parse(out, n, 0, &again, &e) < 0)
        abort();
    if (hs_json_write(again, out2, n + 1) != n || memcmp(out, out2, n) != 0)
        abort();
    char cut[8];
    if (hs_json_write(v, cut, sizeof(cut)) != n)
        abort();
    free(out);
    free(out2);
    hs_json_free(v);
    hs_json_free(again);
    return 0;
}
