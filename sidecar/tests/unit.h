/*
 * unit.h - the smallest test runner that does the job: CHECK() records a
 * failure and goes on, RUN() prints "ok"/"FAIL" per test, test_main.c
 * prints "N passed, M failed" and exits non-zero on any failure.
 */

#ifndef SIDECAR_TESTS_UNIT_H
#define SIDECAR_TESTS_UNIT_H

#include <stdio.h>

extern int  unit_current_failed;

void unit_run(const char *name, void (*fn)(void));

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "    %s:%d: CHECK(%s) failed\n", __FILE__,     \
                    __LINE__, #cond);                                      \
            unit_current_failed = 1;                                       \
        }                                                                  \
    } while (0)

#define RUN(fn)  unit_run(#fn, fn)

void suite_ring(void);
void suite_endpoints(void);
void suite_collector(void);
void suite_ingest(void);
void suite_json(void);
void suite_prometheus(void);
void suite_isotime(void);
void suite_options(void);
void suite_procstats(void);
void suite_httpd(void);
void suite_dbcounts(void);
void suite_cluster(void);

#endif /* SIDECAR_TESTS_UNIT_H */
