/*
 * hg_log: one line per event on stderr, as text or JSON (journald and
 * Kubernetes collect stderr). Each line is written with one write(2), so
 * lines from several threads never interleave.
 */
#ifndef HG_LOG_H
#define HG_LOG_H

#include <stdbool.h>

#include "hg_config.h"

/* A key/value pair for structured lines; value NULL ends a list. */
struct hg_log_field {
    const char *key;
    const char *value;
    bool quote; /* JSON: a string (true) or a number (false) */
};

void hg_log_configure(enum hg_log_level level, enum hg_log_format format);

bool hg_log_enabled(enum hg_log_level level);

/* Logs a free-text message at level. */
void hg_log(enum hg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Logs a structured event: text format prints "event key=value ...",
 * JSON an object with "event" and each field.
 */
void hg_log_fields(enum hg_log_level level, const char *event,
                   const struct hg_log_field *fields);

/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int hg_log_level_parse(const char *name);

#define hg_log_error(...) hg_log(HG_LOG_ERROR, __VA_ARGS__)
#define hg_log_warn(...)  hg_log(HG_LOG_WARN, __VA_ARGS__)
#define hg_log_info(...)  hg_log(HG_LOG_INFO, __VA_ARGS__)
#define hg_log_debug(...)                                                      \
    do {                                                                       \
        if (hg_log_enabled(HG_LOG_DEBUG))                                      \
            hg_log(HG_LOG_DEBUG, __VA_ARGS__);                                 \
    } while (0)

#endif
