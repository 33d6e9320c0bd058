#include "hs_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_bool hs__live;

void hs_log_live(bool on)
{
    atomic_store(&hs__live, on);
}

void hs_log(enum hg_log_level level, const char *fmt, ...)
{
    if (!hg_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (atomic_load(&hs__live)) {
        ssize_t rc = write(STDERR_FILENO, "\r\033[K", 4);
        (void)rc;
    }
    hg_log(level, "%s", msg);
}
