/*
 * Fuzz target for the WebSocket side a device reads: the upgrade answer and
 * then frames. The input's first byte picks a piece size; the rest is fed
 * to hs_ws_response and, past the head (or from the start when there is
 * none), to the frame decoder, whole and in pieces. Both feeds must give
 * the same payload bytes, the same control events in the same order and
 * the same verdict; an answer accepted whole must be AGAIN for every
 * shorter prefix. Any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hs_ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

struct outcome {
    uint8_t *data;
    size_t len;
    char events[256]; /* 'p' ping, 'o' pong, 'c' close, in order */
    size_t nevents;
    uint16_t close_code;
    const char *error;
};

static void run(const uint8_t *in, size_t len, size_t step, struct outcome *o);
static void feed(struct hs_ws_decoder *d, const uint8_t *in, size_t len,
                 struct outcome *o);
static void check_response(const uint8_t *in, size_t len, size_t *head);

static void feed(struct hs_ws_decoder *d, const uint8_t *in, size_t len,
                 struct outcome *o)
{
    size_t off = 0;
    while (o->error == NULL) {
        struct hs_ws_event ev;
        size_t used = 0;
        const char *why = NULL;
        enum hs_ws_rc rc =
            hs_ws_decode(d, in + off, len - off, &used, &ev, &why);
        if (used > len - off)
            abort();
        off += used;
        if (rc == HS_WS_ERROR) {
            o->error = why;
            return;
        }
        if (rc == HS_WS_AGAIN) {
            if (off != len)
                abort();
            return;
        }
        if (ev.type == HS_WS_EV_DATA) {
            memcpy(o->data + o->len, ev.data, ev.len);
            o->len += ev.len;
            continue;
        }
        if (ev.len > HS_WS_CONTROL_MAX)
            abort();
        if (o->nevents < sizeof(o->events))
            o->events[o->nevents++] = ev.type == HS_WS_EV_PING   ? 'p'
                                      : ev.type == HS_WS_EV_PONG ? 'o'
                                                                 : 'c';
        if (ev.type == HS_WS_EV_CLOSE)
            o->close_code = ev.close_code;
    }
}

static void run(const uint8_t *in, size_t len, size_t step, struct outcome *o)
{
    struct hs_ws_decoder d;
    hs_ws_decoder_init(&d);
    for (size_t off = 0; off < len && o->error == NULL; off += step)
        feed(&d, in + off, len - off < step ? len - off : step, o);
}

/* An answer accepted whole is AGAIN for every prefix; *head its length. */
static void check_response(const uint8_t *in, size_t len, size_t *head)
{
    size_t used = 0;
    int status;
    const char *why;
    *head = 0;
    if (hs_ws_response((const char *)in, len, KEY, "mqtt", &used, &status,
                       &why) != HS_WS_OK)
        return;
    if (used == 0 || used > len)
        abort();
    for (size_t n = 0; n < used; n += 1 + n / 8) {
        size_t u2;
        if (hs_ws_response((const char *)in, n, KEY, "mqtt", &u2, &status,
                           &why) != HS_WS_AGAIN)
            abort();
    }
    *head = used;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 32 + 1, head;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    check_response(in, len, &head);
    in += head;
    len -= head;
    struct outcome whole = {0}, parts = {0};
    whole.data = malloc(len + 1);
    parts.data = malloc(len + 1);
    run(in, len, len ? len : 1, &whole);
    run(in, len, step, &parts);
    if (whole.error != parts.error || whole.len != parts.len ||
        memcmp(whole.data, parts.data, whole.len) != 0 ||
        whole.nevents != parts.nevents ||
        memcmp(whole.events, parts.events, whole.nevents) != 0 ||
        whole.close_code != parts.close_code)
        abort();
    free(whole.data);
    free(parts.data);
    return 0;
}
