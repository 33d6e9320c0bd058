/*
 * hs_template: message payloads from a template, the way Microsoft's IoT
 * Telemetry Simulator writes them. "$.Name" is replaced by the variable's
 * value as plain text (the template need not be JSON); where names overlap
 * the longest one wins. Built-in variables:
 *
 *   DeviceId         the device's id
 *   Guid             a random version 4 UUID
 *   Time, LocalTime  now, ISO 8601 with 7 fractional digits (UTC / local)
 *   Ticks            .NET ticks (100 ns since 0001-01-01)
 *   Epoch            seconds since 1970
 *   MachineName      this host's name
 *   IterationNumber  0, 1, 2, ... per device
 *   Counter          1, 2, 3, ... per device
 *
 * Custom variables (the simulator's Variables, see hs_vars.h) are compiled
 * in by name; a custom name wins over a built-in one of the same spelling.
 * A template is compiled once into pieces; rendering writes them out.
 */
#ifndef HS_TEMPLATE_H
#define HS_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HS_TEMPLATE_DEFAULT                                                    \
    "{\"deviceId\": \"$.DeviceId\", \"time\": \"$.Time\", "                    \
    "\"counter\": $.Counter}"

enum hs_var {
    HS_VAR_NONE = -1,
    HS_VAR_DEVICE_ID,
    HS_VAR_GUID,
    HS_VAR_TIME,
    HS_VAR_LOCAL_TIME,
    HS_VAR_TICKS,
    HS_VAR_EPOCH,
    HS_VAR_MACHINE_NAME,
    HS_VAR_ITERATION,
    HS_VAR_COUNTER,
    HS_VAR_USER, /* a custom variable, by index */
};

/* Literal text followed by a variable (HS_VAR_NONE for none). */
struct hs_template_piece {
    size_t off; /* into text */
    size_t len;
    enum hs_var var;
    uint32_t user; /* HS_VAR_USER: the custom variable's index */
};

struct hs_template {
    char *text;
    struct hs_template_piece *pieces;
    size_t npieces;
};

/* What one message's variables hold. */
struct hs_template_ctx {
    const char *device_id;
    const char *machine_name;
    uint64_t iteration;
    struct timespec now; /* CLOCK_REALTIME */
    uint64_t *rng;       /* xorshift state for Guid */
    /* Writes custom variable i's value (cut at cap); returns its length. */
    size_t (*user)(const void *arg, uint32_t i, const struct hs_template_ctx *c,
                   char *buf, size_t cap);
    const void *user_arg;
};

/* Compiles text. Returns 0, or -1 when out of memory. */
int hs_template_compile(struct hs_template *t, const char *text);

/* The same, with custom variables names[0..n) as HS_VAR_USER 0..n-1. */
int hs_template_compile_vars(struct hs_template *t, const char *text,
                             const char *const *names, size_t n);

/*
 * Warns on stderr, once per name, about each "$.Name" in text that is
 * neither a built-in nor one of names[0..n): it goes out as written, which
 * is seldom what was meant ("$.Countr", "$.deviceid"). what names the text
 * in the warning ("Template", "Header"). Returns how many names it warned
 * about.
 */
size_t hs_template_warn_unknown(const char *what, const char *text,
                                const char *const *names, size_t n);

/* True when the template uses no variable at all. */
bool hs_template_is_plain(const struct hs_template *t);

/* The built-in variable called name (exactly), or HS_VAR_NONE. */
enum hs_var hs_template_builtin(const char *name);

/* Writes built-in variable var's value, cut at cap; returns its length. */
size_t hs_template_value(enum hs_var var, const struct hs_template_ctx *c,
                         char *buf, size_t cap);

void hs_template_free(struct hs_template *t);

/*
 * Renders one payload into out. Returns its length; the output is cut at
 * cap (the return value is then cap) and is not NUL-terminated.
 */
size_t hs_template_render(const struct hs_template *t,
                          const struct hs_template_ctx *c, char *out,
                          size_t cap);

/* The next value of a xorshift64* generator (state never 0). */
uint64_t hs_rand(uint64_t *state);

#endif
