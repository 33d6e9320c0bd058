#include "hg_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HG_LOG_LINE_MAX 2048

static atomic_int hg__level = HG_LOG_INFO;
static atomic_int hg__format = HG_LOG_TEXT;

static const char *const hg__level_names[] = {
    [HG_LOG_ERROR] = "error",
    [HG_LOG_WARN] = "warn",
    [HG_LOG_INFO] = "info",
    [HG_LOG_DEBUG] = "debug",
};

static size_t hg__add(char *buf, size_t size, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t hg__stamp(char *buf, size_t size);
static size_t hg__json_escape(char *dst, size_t size, const char *src);
static bool hg__needs_quotes(const char *value);
static void hg__emit(char *line, size_t len, size_t size);
static size_t hg__prefix(char *line, size_t size, enum hg_log_level level);

void hg_log_configure(enum hg_log_level level, enum hg_log_format format)
{
    atomic_store(&hg__level, level);
    atomic_store(&hg__format, format);
}

bool hg_log_enabled(enum hg_log_level level)
{
    return (int)level <= atomic_load_explicit(&hg__level, memory_order_relaxed);
}

int hg_log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(hg__level_names) / sizeof(char *); i++)
        if (strcmp(name, hg__level_names[i]) == 0)
            return (int)i;
    return -1;
}

void hg_log(enum hg_log_level level, const char *fmt, ...)
{
    if (!hg_log_enabled(level))
        return;
    char msg[HG_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    char line[HG_LOG_LINE_MAX * 2];
    size_t n = hg__prefix(line, sizeof(line), level);
    if (atomic_load(&hg__format) == HG_LOG_JSON) {
        n = hg__add(line, sizeof(line), n, "\"msg\":\"");
        n += hg__json_escape(line + n, sizeof(line) - n, msg);
        n = hg__add(line, sizeof(line), n, "\"}");
    } else {
        n = hg__add(line, sizeof(line), n, "%s", msg);
    }
    hg__emit(line, n, sizeof(line));
}

void hg_log_fields(enum hg_log_level level, const char *event,
                   const struct hg_log_field *fields)
{
    if (!hg_log_enabled(level))
        return;
    char line[HG_LOG_LINE_MAX * 2];
    size_t size = sizeof(line) - 2;
    size_t n = hg__prefix(line, size, level);
    bool json = atomic_load(&hg__format) == HG_LOG_JSON;
    n = hg__add(line, size, n, json ? "\"event\":\"%s\"" : "%s", event);
    for (const struct hg_log_field *f = fields; f->key != NULL && n < size;
         f++) {
        if (!json && !hg__needs_quotes(f->value)) {
            n = hg__add(line, size, n, " %s=%s", f->key, f->value);
            continue;
        }
        if (!json) { /* key="value", escaped as in JSON */
            n = hg__add(line, size, n, " %s=\"", f->key);
            n += hg__json_escape(line + n, size - n, f->value);
            if (n < size)
                line[n++] = '"';
            continue;
        }
        n = hg__add(line, size, n, ",\"%s\":%s", f->key, f->quote ? "\"" : "");
        n += hg__json_escape(line + n, size - n, f->value);
        if (f->quote && n < size)
            line[n++] = '"';
    }
    if (json && n < size)
        line[n++] = '}';
    hg__emit(line, n, sizeof(line));
}

/* A text-format value that would not read back as one key=value word. */
static bool hg__needs_quotes(const char *value)
{
    if (*value == '\0')
        return true;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '=' || *p >= 0x7f)
            return true;
    return false;
}

/* Appends to buf at n without ever running past size; returns the new n. */
static size_t hg__add(char *buf, size_t size, size_t n, const char *fmt, ...)
{
    if (n >= size)
        return n;
    va_list ap;
    va_start(ap, fmt);
    int rc = vsnprintf(buf + n, size - n, fmt, ap);
    va_end(ap);
    if (rc < 0)
        return n;
    return (size_t)rc >= size - n ? size - 1 : n + (size_t)rc;
}

/* The start of a line: time and level, or the opening of a JSON object. */
static size_t hg__prefix(char *line, size_t size, enum hg_log_level level)
{
    char ts[40];
    hg__stamp(ts, sizeof(ts));
    if (atomic_load(&hg__format) == HG_LOG_JSON)
        return hg__add(line, size, 0, "{\"ts\":\"%s\",\"level\":\"%s\",", ts,
                       hg__level_names[level]);
    return hg__add(line, size, 0, "%s %-5s ", ts, hg__level_names[level]);
}

/* Terminates the line and writes it whole; output errors are ignored. */
static void hg__emit(char *line, size_t len, size_t size)
{
    if (len >= size - 1)
        len = size - 2;
    line[len++] = '\n';
    ssize_t rc = write(STDERR_FILENO, line, len);
    (void)rc;
}

/* RFC 3339 UTC time with milliseconds. */
static size_t hg__stamp(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    return hg__add(buf, size, n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Copies src into dst as the inside of a JSON string; returns bytes. */
static size_t hg__json_escape(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        if (n + 7 >= size)
            break;
        if (*p == '"' || *p == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)*p;
        } else if (*p < 0x20) {
            n = hg__add(dst, size, n, "\\u%04x", *p);
        } else {
            dst[n++] = (char)*p;
        }
    }
    return n;
}
