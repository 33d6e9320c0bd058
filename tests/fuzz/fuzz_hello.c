/*
 * Fuzz target for the ClientHello parser: the verdict must not depend on how
 * the bytes arrive. Each input is parsed whole, in two pieces cut where the
 * first byte says, and one byte per call; any difference aborts. The last
 * byte picks the size cap, so small caps get exercised too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hg_hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum hg_hello_rc fuzz_parse(struct hg_hello *h, const uint8_t *data,
                                   size_t size, size_t max, size_t cut);
static enum hg_hello_rc fuzz_bytes(struct hg_hello *h, const uint8_t *data,
                                   size_t size, size_t max);
static void fuzz_compare(const struct hg_hello *a, enum hg_hello_rc ra,
                         const struct hg_hello *b, enum hg_hello_rc rb);

/* Parses data in two calls, the first with cut bytes. Returns the verdict. */
static enum hg_hello_rc fuzz_parse(struct hg_hello *h, const uint8_t *data,
                                   size_t size, size_t max, size_t cut)
{
    hg_hello_init(h, max);
    enum hg_hello_rc rc = hg_hello_parse(h, data, cut);
    if (rc == HG_HELLO_AGAIN)
        rc = hg_hello_parse(h, data, size);
    if (hg_hello_parse(h, data, size) != rc)
        abort();
    return rc;
}

/* Parses data one more byte per call. Returns the verdict. */
static enum hg_hello_rc fuzz_bytes(struct hg_hello *h, const uint8_t *data,
                                   size_t size, size_t max)
{
    enum hg_hello_rc rc = HG_HELLO_AGAIN;

    hg_hello_init(h, max);
    for (size_t n = 1; n <= size && rc == HG_HELLO_AGAIN; n++) {
        rc = hg_hello_parse(h, data, n);
        if (h->examined > n)
            abort();
    }
    return rc;
}

/* Aborts unless two parses of the same input agree on everything. */
static void fuzz_compare(const struct hg_hello *a, enum hg_hello_rc ra,
                         const struct hg_hello *b, enum hg_hello_rc rb)
{
    if (ra != rb)
        abort();
    if (ra == HG_HELLO_OK) {
        if (a->has_sni != b->has_sni || a->sni_len != b->sni_len ||
            a->hello_len != b->hello_len ||
            memcmp(a->sni, b->sni, a->sni_len + 1) != 0)
            abort();
        if (a->has_sni && strlen(a->sni) != a->sni_len)
            abort();
    } else if (ra != HG_HELLO_AGAIN && strcmp(a->reason, b->reason) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct hg_hello whole, split, bytes;
    size_t max = HG_HELLO_MAX_DEFAULT;
    size_t cut = 0;

    if (size > 0) {
        cut = data[0] % (size + 1);
        if (data[size - 1] & 1)
            max = 64 + (size_t)data[size - 1] * 8;
    }
    enum hg_hello_rc rw = fuzz_parse(&whole, data, size, max, size);
    enum hg_hello_rc rs = fuzz_parse(&split, data, size, max, cut);
    enum hg_hello_rc rb = fuzz_bytes(&bytes, data, size, max);
    fuzz_compare(&whole, rw, &split, rs);
    fuzz_compare(&whole, rw, &bytes, rb);
    if (rw == HG_HELLO_OK && (whole.hello_len > size || whole.hello_len > max))
        abort();
    return 0;
}
