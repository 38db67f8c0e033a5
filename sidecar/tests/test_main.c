/*
 * test_main.c - runs every suite; the last line is "N passed, M failed".
 */

#include <stdio.h>
#include <stdlib.h>

#include "unit.h"

int  unit_current_failed;

static int  passed, failed;


void
unit_run(const char *name, void (*fn)(void))
{
    unit_current_failed = 0;
    fn();

    if (unit_current_failed) {
        failed++;
        printf("FAIL  %s\n", name);
    } else {
        passed++;
        printf("ok    %s\n", name);
    }
    fflush(stdout);
}


int
main(void)
{
    suite_ring();
    suite_endpoints();
    suite_collector();
    suite_ingest();
    suite_json();
    suite_prometheus();
    suite_isotime();
    suite_options();
    suite_procstats();
    suite_httpd();
    suite_dbcounts();
    suite_cluster();

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
