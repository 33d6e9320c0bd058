#include "hs_buf.h"

#include <stdlib.h>
#include <string.h>

bool hs_buf_add(struct hs_buf *b, const uint8_t *data, size_t len)
{
    if (b->off > 0 && b->len + len > b->cap) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *n = realloc(b->data, cap);
        if (n == NULL)
            return false;
        b->data = n;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return true;
}

void hs_buf_free(struct hs_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}
