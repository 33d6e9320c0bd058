/*
 * hs_log: hubsim's log lines, through the gateway's hg_log (one line per
 * write on stderr). On a terminal the live progress line is redrawn in
 * place; while it is on screen a log line first clears it, so the two never
 * share a line.
 */
#ifndef HS_LOG_H
#define HS_LOG_H

#include <stdbool.h>

#include "hg_log.h"

/* The reporter says whether an unfinished live line is on the terminal. */
void hs_log_live(bool on);

void hs_log(enum hg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define hs_log_error(...) hs_log(HG_LOG_ERROR, __VA_ARGS__)
#define hs_log_warn(...)  hs_log(HG_LOG_WARN, __VA_ARGS__)
#define hs_log_info(...)  hs_log(HG_LOG_INFO, __VA_ARGS__)
#define hs_log_debug(...)                                                      \
    do {                                                                       \
        if (hg_log_enabled(HG_LOG_DEBUG))                                      \
            hs_log(HG_LOG_DEBUG, __VA_ARGS__);                                 \
    } while (0)

#endif
