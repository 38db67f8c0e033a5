/*
 * test_endpoints.c - endpoint cap, overflow row, histogram and p95.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecar/endpoints.h"
#include "unit.h"


static long
rss_kb(void)
{
    FILE  *f;
    long   pages = 0, rss = 0;

    f = fopen("/proc/self/statm", "r");
    if (f == NULL) {
        return -1;
    }
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) {
        rss = -1;
    }
    fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}


static void
endpoints_count_per_name(void)
{
    ep_table_t  *t = ep_table_create(8);
    ep_row_t     rows[9];

    ep_stats_add(ep_table_get(t, "GET /a"), 1000, 0);
    ep_stats_add(ep_table_get(t, "GET /a"), 3000, 1);
    ep_stats_add(ep_table_get(t, "POST /a"), 2000, 0);

    CHECK(ep_table_rows(t) == 2);
    CHECK(ep_table_copy(t, rows, 9) == 2);
    CHECK(strcmp(rows[0].name, "GET /a") == 0);
    CHECK(rows[0].stats.count == 2);
    CHECK(rows[0].stats.errors == 1);
    CHECK(rows[0].stats.total_us == 4000);
    CHECK(rows[0].stats.max_us == 3000);
    CHECK(rows[1].stats.count == 1);
    ep_table_free(t);
}


static void
endpoints_past_the_cap_fold_into_one_overflow_row(void)
{
    ep_table_t  *t = ep_table_create(3);
    ep_row_t     rows[4];
    char         name[32];
    int          i;

    for (i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "GET /p%d", i);
        ep_stats_add(ep_table_get(t, name), 100, 0);
    }
    /* a name admitted before the cap keeps its own row */
    ep_stats_add(ep_table_get(t, "GET /p1"), 100, 0);

    CHECK(ep_table_rows(t) == 4);
    CHECK(ep_table_copy(t, rows, 4) == 4);
    CHECK(rows[1].stats.count == 2);
    CHECK(rows[3].overflow == 1);
    CHECK(strcmp(rows[3].name, EP_OVERFLOW_NAME) == 0);
    CHECK(rows[3].stats.count == 7);
    ep_table_free(t);
}


/* the ISSUE 5 requirement: a scan of a million random paths must not
   grow memory */
static void
endpoints_million_random_paths_keep_memory_flat(void)
{
    ep_table_t  *t = ep_table_create(256);
    char         name[64];
    long         before, after;
    int          i;

    srand(42);
    for (i = 0; i < 1000; i++) {        /* fill the table first */
        snprintf(name, sizeof(name), "GET /warm/%d", i);
        ep_stats_add(ep_table_get(t, name), 10, 0);
    }

    before = rss_kb();
    for (i = 0; i < 1000000; i++) {
        snprintf(name, sizeof(name), "GET /scan/%08x%08x", rand(), rand());
        ep_stats_add(ep_table_get(t, name), 10, 1);
    }
    after = rss_kb();

    printf("      1M random paths: RSS %ld kB -> %ld kB\n", before, after);
    CHECK(before > 0);
    CHECK(after - before < 512);
    CHECK(ep_table_rows(t) == 257);
    ep_table_free(t);
}


static void
endpoints_histogram_buckets_use_inclusive_upper_bounds(void)
{
    ep_stats_t  s;

    memset(&s, 0, sizeof(s));
    ep_stats_add(&s, 5000, 0);          /* le 0.005 */
    ep_stats_add(&s, 5001, 0);          /* le 0.01 */
    ep_stats_add(&s, 1000000, 0);       /* le 1 */
    ep_stats_add(&s, 10000001, 0);      /* +Inf */

    CHECK(s.buckets[0] == 1);
    CHECK(s.buckets[1] == 1);
    CHECK(s.buckets[7] == 1);
    CHECK(s.buckets[EP_HIST_BUCKETS - 1] == 1);
    CHECK(s.count == 4);
}


static void
endpoints_p95_interpolates_and_never_exceeds_max(void)
{
    ep_stats_t  s;
    double      p95;
    int         i;

    memset(&s, 0, sizeof(s));
    CHECK(ep_stats_quantile_ms(&s, 0.95) == 0.0);

    for (i = 0; i < 100; i++) {
        ep_stats_add(&s, 20000, 0);     /* all in (10, 25] ms */
    }
    p95 = ep_stats_quantile_ms(&s, 0.95);
    CHECK(p95 > 10.0 && p95 <= 20.0);

    memset(&s, 0, sizeof(s));
    for (i = 0; i < 90; i++) {
        ep_stats_add(&s, 1000, 0);
    }
    for (i = 0; i < 10; i++) {
        ep_stats_add(&s, 400000, 0);    /* slow tail in (250, 500] ms */
    }
    p95 = ep_stats_quantile_ms(&s, 0.95);
    CHECK(p95 > 250.0 && p95 <= 400.0);
}


/* rows are named by the key cleaned (records.h), whatever bytes came:
   keys that clean alike share a row, and the clean name finds it too */
static void
endpoints_raw_keys_are_cleaned_once(void)
{
    ep_table_t  *t = ep_table_create(8);
    ep_row_t     rows[9];

    ep_stats_add(ep_table_get_n(t, "GET /a\x01", 7), 10, 0);
    ep_stats_add(ep_table_get_n(t, "GET /a\x01", 7), 10, 0);  /* last */
    ep_stats_add(ep_table_get_n(t, "GET /a\xff", 7), 10, 0);
    ep_stats_add(ep_table_get_n(t, "GET /b", 6), 10, 0);
    ep_stats_add(ep_table_get_n(t, "GET /a\x7f", 7), 10, 0);  /* hashed */
    ep_stats_add(ep_table_get(t, "GET /a?"), 10, 0);
    ep_stats_add(ep_table_get_n(t, "GET /\xc3\xa9tat-long", 15), 10, 0);
    ep_stats_add(ep_table_get_n(t, "GET /\xc3\xa9tat-lonG", 15), 10, 0);

    CHECK(ep_table_rows(t) == 4);
    CHECK(ep_table_copy(t, rows, 9) == 4);
    CHECK(strcmp(rows[0].name, "GET /a?") == 0 && rows[0].name_len == 7);
    CHECK(rows[0].stats.count == 5);
    CHECK(strcmp(rows[1].name, "GET /b") == 0 && rows[1].stats.count == 1);
    CHECK(strcmp(rows[2].name, "GET /\xc3\xa9tat-long") == 0);
    CHECK(rows[2].stats.count == 1 && rows[3].stats.count == 1);
    ep_table_free(t);
}


void
suite_endpoints(void)
{
    RUN(endpoints_count_per_name);
    RUN(endpoints_raw_keys_are_cleaned_once);
    RUN(endpoints_past_the_cap_fold_into_one_overflow_row);
    RUN(endpoints_million_random_paths_keep_memory_flat);
    RUN(endpoints_histogram_buckets_use_inclusive_upper_bounds);
    RUN(endpoints_p95_interpolates_and_never_exceeds_max);
}
