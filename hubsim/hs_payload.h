/*
 * hs_payload: what each message carries, as the IoT Telemetry Simulator
 * decides it. A payload is a template or fixed bytes, each with a share in
 * percent (PayloadDistribution, e.g. "fixSize(10, 12) template(25,
 * default) fix(65, aaaaBBBBCCCC)"), or bound to one device (the File's
 * Payloads with a deviceId). Every message draws a payload from the shares
 * of those bound to no device, unless its device has its own. The Header
 * template, rendered with the message's variables, must give a JSON object;
 * its members become the message's properties, appended URL-encoded to the
 * MQTT topic after the fixed --properties.
 *
 * The plan is built once and shared by the threads; each device's variable
 * state lives in it, by the device's place in the fleet, and only that
 * device's thread touches its entry.
 */
#ifndef HS_PAYLOAD_H
#define HS_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hs_template.h"
#include "hs_vars.h"

/* An MQTT topic hubsim writes: device id, "devices/.../events/" and bag. */
#define HS_TOPIC_MAX 3072

enum hs_pl_kind {
    HS_PL_TEMPLATE,
    HS_PL_FIX,
};

struct hs_pl_item {
    enum hs_pl_kind kind;
    unsigned pct; /* 1..100 */
    struct hs_template tpl;
    uint8_t *bytes; /* HS_PL_FIX */
    size_t len;
    char *device_id; /* NULL: any device's */
};

struct hs_payload {
    struct hs_vars vars;
    struct hs_pl_item *items;
    size_t nitems;
    unsigned total;         /* shares of the items bound to no device */
    uint32_t *own;          /* per device: 1 + its own item, or 0 */
    struct hs_vslot *state; /* per device: 2 * vars.n slots */
    uint32_t ndevices;
    bool has_header;
    struct hs_template header;
    char *properties; /* fixed bag, or NULL */
};

/* One message, as hs_payload_message() makes it. */
struct hs_message {
    uint8_t *buf; /* in: room for a rendered payload */
    size_t cap;
    const uint8_t *payload; /* out: buf, or a fixed payload's bytes */
    size_t len;
    char topic[HS_TOPIC_MAX]; /* out, NUL-ended */
    size_t topic_len;
};

/* Empty: no payload yet, no variables. */
void hs_payload_init(struct hs_payload *p);
void hs_payload_free(struct hs_payload *p);

/*
 * Adds a payload: a template (text, compiled with p->vars) or fixed bytes
 * (copied), with a share of pct (1..100) and bound to device_id unless it
 * is NULL. Returns 0, or -1 when out of memory.
 */
int hs_payload_add_template(struct hs_payload *p, unsigned pct,
                            const char *text, const char *device_id);
int hs_payload_add_fix(struct hs_payload *p, unsigned pct, const uint8_t *bytes,
                       size_t len, const char *device_id);

/*
 * Reads a PayloadDistribution: fixSize(PCT, BYTES), fix(PCT, BASE64) and
 * template(PCT[, default|NAME]) separated by spaces, names in any case,
 * PCT with or without '%'. A template NAME is another setting's name;
 * lookup(arg, NAME) gives its text or NULL. default_tpl is the Template.
 * Returns 0, or -1 with a message in err.
 */
int hs_payload_dist_parse(struct hs_payload *p, const char *spec,
                          const char *default_tpl,
                          const char *(*lookup)(void *arg, const char *name),
                          void *arg, char *err, size_t errlen);

/* True when spec's template(PCT, NAME) parts name name (any case). */
bool hs_payload_dist_names(const char *spec, const char *name);

/* Compiles the Header template. Returns 0, or -1 when out of memory. */
int hs_payload_set_header(struct hs_payload *p, const char *text);

/*
 * Ties payloads to the fleet (ids[0..n)) and makes each device's state.
 * Warns when shares do not add up to 100 or a payload names a device not
 * in the fleet. Returns 0, or -1 with a message in err.
 */
int hs_payload_finish(struct hs_payload *p, char *const *ids, uint32_t n,
                      char *err, size_t errlen);

/*
 * The next message of device (its place in the fleet) with id device_id:
 * advances its variables, draws a payload with c->rng and writes the topic.
 * c's time, iteration and rng are the caller's.
 */
void hs_payload_message(const struct hs_payload *p, uint32_t device,
                        const struct hs_template_ctx *c, struct hs_message *m);

/*
 * Renders the header for c with a fresh state, to check it at start.
 * Returns 0, or -1 with why the result is not a usable property bag.
 */
int hs_payload_check_header(const struct hs_payload *p,
                            const struct hs_template_ctx *c, char *err,
                            size_t errlen);

#endif
