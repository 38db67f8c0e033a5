/*
 * isotime.c - clocks, ISO-8601 timestamps and uptime strings.
 */

#include <math.h>
#include <stdio.h>
#include <time.h>

#include "isotime.h"


uint64_t
isotime_wall_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}


uint64_t
isotime_mono_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}


char *
isotime_format(uint64_t wall_us, char *buf, size_t size)
{
    time_t     secs;
    struct tm  tm;
    unsigned   ms;

    secs = (time_t) (wall_us / 1000000u);
    ms = (unsigned) ((wall_us % 1000000u) / 1000u);

    if (size == 0) {
        return buf;
    }

    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(buf, size, "1970-01-01T00:00:00.000Z");
        return buf;
    }

    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}


/*
 * The spec shows "2d 5h 30m" in its metric table and "1h 0m 0s" in its
 * example payload: days drop the seconds, shorter uptimes keep them.
 */
char *
isotime_uptime(double seconds, char *buf, size_t size)
{
    unsigned long long  s, d, h, m;

    if (!(seconds > 0)) {
        seconds = 0;
    }

    s = (unsigned long long) seconds;
    d = s / 86400;
    h = (s % 86400) / 3600;
    m = (s % 3600) / 60;
    s = s % 60;

    if (d > 0) {
        snprintf(buf, size, "%llud %lluh %llum", d, h, m);
    } else if (h > 0) {
        snprintf(buf, size, "%lluh %llum %llus", h, m, s);
    } else {
        snprintf(buf, size, "%llum %llus", m, s);
    }

    return buf;
}


double
isotime_round2(double v)
{
    if (!isfinite(v)) {
        return 0.0;
    }
    return round(v * 100.0) / 100.0;
}
