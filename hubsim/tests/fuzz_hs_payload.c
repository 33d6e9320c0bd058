/*
 * Fuzz target for the simulator's payload settings past the JSON reader.
 * The input's first byte picks what the rest is: 0, a PayloadDistribution;
 * 1, a Variables array (bare member names allowed), then a few messages
 * from a template that uses every variable; 2, a Header template (with one
 * counter) checked as hubsim does at start. An accepted distribution must
 * have payloads with shares of 1 to 100; a rendered message must fit its
 * buffer, a fixed one 256 KiB, and the topic its array; anything else aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_json.h"
#include "hs_payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *const ids[] = {"d1", "d2"};

static const char *lookup(void *arg, const char *name)
{
    (void)arg;
    return strcmp(name, "T2") == 0 ? "two $.DeviceId" : NULL;
}

static void messages(struct hs_payload *p)
{
    static uint8_t buf[4096];
    struct hs_message m = {.buf = buf, .cap = sizeof(buf)};
    uint64_t rng = 7;
    for (uint64_t i = 0; i < 6; i++) {
        struct hs_template_ctx c = {.device_id = ids[i % 2],
                                    .machine_name = "m",
                                    .iteration = i / 2,
                                    .rng = &rng};
        hs_payload_message(p, (uint32_t)(i % 2), &c, &m);
        if ((m.payload == buf && m.len > m.cap) || m.len > 256 * 1024 ||
            m.topic_len >= sizeof(m.topic) || strlen(m.topic) != m.topic_len)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096)
        return 0;
    char *text = strndup((const char *)data + 1, size - 1);
    char err[512];
    struct hs_payload p;
    hs_payload_init(&p);
    if (data[0] % 3 == 0) {
        if (hs_payload_dist_parse(&p, text, "t $.Counter", lookup, NULL, err,
                                  sizeof(err)) == 0) {
            if (p.nitems == 0 || p.total > 100 * p.nitems)
                abort();
            for (size_t i = 0; i < p.nitems; i++)
                if (p.items[i].pct < 1 || p.items[i].pct > 100)
                    abort();
            if (hs_payload_finish(&p, ids, 2, err, sizeof(err)) == 0)
                messages(&p);
        }
    } else if (data[0] % 3 == 1) {
        struct hs_json *arr;
        struct hs_json_error je;
        if (hs_json_parse(text, strlen(text), HS_JSON_BARE_KEYS, &arr, &je) ==
            0) {
            if (hs_vars_parse(&p.vars, arr, "Variables", err, sizeof(err)) ==
                0) {
                char tpl[2048] = "";
                for (size_t i = 0; i < p.vars.n && strlen(tpl) < 1900; i++)
                    snprintf(tpl + strlen(tpl), sizeof(tpl) - strlen(tpl),
                             "$.%.64s,", p.vars.names[i]);
                if (hs_payload_add_template(&p, 100, tpl, NULL) == 0 &&
                    hs_payload_finish(&p, ids, 2, err, sizeof(err)) == 0)
                    messages(&p);
            }
            hs_json_free(arr);
        }
    } else {
        struct hs_json *arr;
        struct hs_json_error je;
        const char *v = "[{\"name\": \"Counter\"}]";
        uint64_t rng = 3;
        struct hs_template_ctx c = {
            .device_id = "d1", .machine_name = "m", .rng = &rng};
        if (hs_json_parse(v, strlen(v), 0, &arr, &je) == 0 &&
            hs_vars_parse(&p.vars, arr, "Variables", err, sizeof(err)) == 0 &&
            hs_payload_add_template(&p, 100, "x", NULL) == 0 &&
            hs_payload_set_header(&p, text) == 0 &&
            hs_payload_finish(&p, ids, 2, err, sizeof(err)) == 0 &&
            hs_payload_check_header(&p, &c, err, sizeof(err)) == 0)
            messages(&p);
        hs_json_free(arr);
    }
    hs_payload_free(&p);
    free(text);
    return 0;
}
