/*
 * log.c - stderr logging; one fputs per line so that lines from
 * different threads do not interleave.
 */

#include <stdarg.h>
#include <stdio.h>

#include "isotime.h"
#include "log.h"

static log_level_e  log_level = LOG_LVL_INFO;

static const char  *log_names[] = { "debug", "info", "warn", "error" };


void
log_set_level(log_level_e level)
{
    log_level = level;
}


void
log_msg(log_level_e level, const char *fmt, ...)
{
    char     line[1024], ts[ISOTIME_BUFSZ];
    va_list  ap;
    int      n;

    if (level < log_level) {
        return;
    }

    n = snprintf(line, sizeof(line), "%s [%s] chat-sidecar: ",
                 isotime_format(isotime_wall_us(), ts, sizeof(ts)),
                 log_names[level]);
    if (n < 0 || (size_t) n >= sizeof(line)) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t) n - 1, fmt, ap);
    va_end(ap);

    n = 0;
    while (line[n] != '\0') {
        n++;
    }
    line[n] = '\n';
    line[n + 1] = '\0';

    fputs(line, stderr);
}
