/*
 * test_isotime.c - timestamp and uptime formats of the spec.
 */

#include <math.h>
#include <string.h>

#include "sidecar/isotime.h"
#include "unit.h"


static void
isotime_is_utc_with_millis_and_z(void)
{
    char  buf[ISOTIME_BUFSZ];

    CHECK(strcmp(isotime_format(1762691696789999ull, buf, sizeof(buf)),
                 "2025-11-09T12:34:56.789Z") == 0);
    CHECK(strcmp(isotime_format(0, buf, sizeof(buf)),
                 "1970-01-01T00:00:00.000Z") == 0);
}


static void
isotime_uptime_reads_like_the_spec(void)
{
    char  buf[64];

    CHECK(strcmp(isotime_uptime(3600.5, buf, sizeof(buf)), "1h 0m 0s")
          == 0);
    CHECK(strcmp(isotime_uptime(2 * 86400 + 5 * 3600 + 30 * 60 + 7, buf,
                                sizeof(buf)), "2d 5h 30m") == 0);
    CHECK(strcmp(isotime_uptime(252, buf, sizeof(buf)), "4m 12s") == 0);
    CHECK(strcmp(isotime_uptime(-3, buf, sizeof(buf)), "0m 0s") == 0);
}


static void
isotime_round2_rounds_half_away(void)
{
    CHECK(isotime_round2(2.755) == 2.76 || isotime_round2(2.755) == 2.75);
    CHECK(isotime_round2(45.6049) == 45.6);
    CHECK(isotime_round2(0.4) == 0.4);
    CHECK(isotime_round2(INFINITY) == 0.0);
}


void
suite_isotime(void)
{
    RUN(isotime_is_utc_with_millis_and_z);
    RUN(isotime_uptime_reads_like_the_spec);
    RUN(isotime_round2_rounds_half_away);
}
