/*
 * hs_vars: the IoT Telemetry Simulator's custom variables ("Variables", a
 * JSON array), referenced in templates as $.Name. Each item has a "name"
 * and one kind:
 *
 *   counter (default)     "min" (1), "step" (1), "max" (none): min, then
 *                         + step each message; past max it starts again
 *                         at min
 *   "random": true        a whole number in [min, max) (max exclusive); with
 *                         neither, in [0, 2^31 - 1)
 *   "randomDouble": true  a number in [min, max), 0 and 1 by default
 *   "values": [...]       one of the values, picked at random
 *   "customLengthString"  that many random letters and digits
 *   "sequence": true      "values" in turn, by message number; a value
 *                         "$.Other" takes that variable's value, and a
 *                         counter so referenced advances only in the
 *                         messages that use it
 *
 * Counters and sequences are per device: every device has its own state
 * (struct hs_vslot, 2 per variable), which only its own thread touches.
 * Random picks use the caller's generator.
 */
#ifndef HS_VARS_H
#define HS_VARS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hs_json.h"
#include "hs_template.h"

#define HS_VARS_MAX 256 /* variables in one set */

enum hs_vkind {
    HS_VK_COUNTER,
    HS_VK_RANDOM,
    HS_VK_DOUBLE,
    HS_VK_VALUES,
    HS_VK_STRING,
    HS_VK_SEQUENCE,
};

/* One of "values": text, or (sequences) a reference to another variable. */
struct hs_vitem {
    char *text;
    size_t len;
    int32_t ref;         /* a custom variable's index, or -1 */
    enum hs_var builtin; /* a built-in variable, or HS_VAR_NONE */
};

struct hs_vdef {
    char *name;
    enum hs_vkind kind;
    int64_t min, max, step;
    bool has_max;
    double dmin, dmax;
    uint32_t length; /* HS_VK_STRING */
    struct hs_vitem *items;
    size_t nitems;
};

struct hs_vars {
    struct hs_vdef *defs;
    const char **names; /* defs[i].name, for hs_template_compile_vars() */
    size_t n;
};

/* One variable's value in one message. */
struct hs_vslot {
    bool has;      /* unset: a referenced counter not yet used */
    uint32_t item; /* VALUES, SEQUENCE: which item */
    int32_t ref;   /* SEQUENCE: the variable whose value v holds, or -1 */
    union {
        int64_t i;     /* COUNTER, RANDOM */
        double d;      /* DOUBLE */
        uint64_t seed; /* STRING: the characters come from it */
    } v;
};

/*
 * Reads a Variables array. Returns 0, or -1 with a message in err (errlen
 * bytes) naming the variable and what is wrong. Unknown keys and keys
 * that do nothing are warned about on stderr, prefixed with what.
 */
int hs_vars_parse(struct hs_vars *vars, const struct hs_json *arr,
                  const char *what, char *err, size_t errlen);

void hs_vars_free(struct hs_vars *vars);

/*
 * Moves one device's state (slots: 2 * vars->n, zeroed at the start) to
 * message number iteration (0, 1, ...): slots[0..n) hold the values.
 */
void hs_vars_next(const struct hs_vars *vars, struct hs_vslot *slots,
                  uint64_t iteration, uint64_t *rng);

/*
 * Writes variable i's value from slots into buf, cut at cap; returns its
 * length. Built-ins a sequence refers to come from c. An unset value is
 * written as "$.Name", as the simulator leaves it.
 */
size_t hs_vars_write(const struct hs_vars *vars, const struct hs_vslot *slots,
                     uint32_t i, const struct hs_template_ctx *c, char *buf,
                     size_t cap);

/* The shortest text that reads back as d (like .NET's double format). */
size_t hs_vars_double(double d, char *buf, size_t cap);

/*
 * Writes a printf-style message into err (errlen bytes); returns -1, so a
 * settings reader can fail with "return hs_vars_err(...)".
 */
int hs_vars_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
