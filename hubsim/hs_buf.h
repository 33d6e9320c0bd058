/*
 * hs_buf: a growable byte queue for what a socket did not take yet and for
 * input not yet whole. Shared by the per-device MQTT connections and the
 * pooled AMQP ones.
 */
#ifndef HS_BUF_H
#define HS_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes waiting: data[off..len). */
struct hs_buf {
    uint8_t *data;
    size_t off;
    size_t len;
    size_t cap;
};

/* Appends, growing (and first compacting) as needed; false without memory. */
bool hs_buf_add(struct hs_buf *b, const uint8_t *data, size_t len);

/* Frees the storage; b is empty afterwards. */
void hs_buf_free(struct hs_buf *b);

#endif
