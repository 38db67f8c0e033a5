/*
 * isotime.h - clocks and the time formats the dashboard prints.
 *
 * All times inside the sidecar are uint64_t microseconds: wall clock
 * (CLOCK_REALTIME, since the epoch) for what is shown to people, and
 * monotonic clock (CLOCK_MONOTONIC) for ages and intervals, so that a
 * clock step never expires a live worker or fakes an uptime.
 */

#ifndef SIDECAR_ISOTIME_H
#define SIDECAR_ISOTIME_H

#include <stddef.h>
#include <stdint.h>

/* "2025-11-09T12:34:56.789Z" plus NUL */
#define ISOTIME_BUFSZ  32

uint64_t isotime_wall_us(void);
uint64_t isotime_mono_us(void);

/* Writes the ISO-8601 UTC form with milliseconds and 'Z'; returns buf. */
char *isotime_format(uint64_t wall_us, char *buf, size_t size);

/* "2d 5h 30m", "1h 0m 0s", "4m 12s": the spec's uptime_formatted. */
char *isotime_uptime(double seconds, char *buf, size_t size);

/* Rounds to 2 decimals, the precision the spec's examples show. */
double isotime_round2(double v);

#endif /* SIDECAR_ISOTIME_H */
