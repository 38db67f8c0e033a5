/*
 * test_prometheus.c - the exposition is well formed: HELP/TYPE per
 * family, cumulative buckets ending in +Inf == _count, escaped labels.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sidecar/prometheus.h"
#include "unit.h"

#define WALL0  1762691696000000ull
#define MONO0  1000000000ull


static char *
render_with(const char *endpoint, const uint32_t *durs, int n)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_batch_t     *b = calloc(1, sizeof(*b));
    coll_snapshot_t  *s;
    db_stats_t        db;
    proc_sample_t     proc;
    sidecar_view_t    v;
    char             *out;
    int               i;

    collector_config_defaults(&cfg);
    c = collector_create(&cfg, WALL0, MONO0);
    b->worker_pid = 1;
    b->batch_seq = 1;
    b->records_dropped = 4;
    for (i = 0; i < n; i++) {
        coll_record_t  *r = &b->rec[b->count++];

        r->type = CHAT_REC_REQUEST;
        r->u.request.status = 200;
        r->u.request.duration_us = durs[i];
        coll_request_raw_set(&r->u.request, "", endpoint, "");
    }
    collector_apply(c, b, WALL0, MONO0);
    s = collector_snapshot(c, WALL0 + 1, MONO0 + 1);

    memset(&db, 0, sizeof(db));
    memset(&proc, 0, sizeof(proc));
    memset(&v, 0, sizeof(v));
    v.snap = s;
    v.db = &db;
    v.proc = &proc;
    v.ingest_url = "ipc:///x";

    out = prometheus_render(&v, NULL);
    collector_snapshot_free(s);
    collector_free(c);
    free(b);
    return out;
}


static void
prometheus_histogram_is_cumulative_and_inf_equals_count(void)
{
    uint32_t   d[] = { 1000, 7000, 7000, 300000, 20000000 };
    char      *t = render_with("GET /a", d, 5);

    CHECK(t != NULL);
    CHECK(strstr(t, "chat_http_request_duration_seconds_bucket"
                    "{endpoint=\"GET /a\",le=\"0.005\"} 1\n") != NULL);
    CHECK(strstr(t, "chat_http_request_duration_seconds_bucket"
                    "{endpoint=\"GET /a\",le=\"0.01\"} 3\n") != NULL);
    CHECK(strstr(t, "chat_http_request_duration_seconds_bucket"
                    "{endpoint=\"GET /a\",le=\"0.5\"} 4\n") != NULL);
    CHECK(strstr(t, "chat_http_request_duration_seconds_bucket"
                    "{endpoint=\"GET /a\",le=\"10\"} 4\n") != NULL);
    CHECK(strstr(t, "chat_http_request_duration_seconds_bucket"
                    "{endpoint=\"GET /a\",le=\"+Inf\"} 5\n") != NULL);
    CHECK(strstr(t, "chat_http_request_duration_seconds_count"
                    "{endpoint=\"GET /a\"} 5\n") != NULL);
    CHECK(strstr(t, "chat_http_request_duration_seconds_sum"
                    "{endpoint=\"GET /a\"} 20.315000\n") != NULL);
    CHECK(strstr(t, "chat_worker_records_dropped_total 4\n") != NULL);
    free(t);
}


static void
prometheus_escapes_label_values(void)
{
    uint32_t   d[] = { 1000 };
    char      *t = render_with("GET /a\"b\\c", d, 1);

    CHECK(strstr(t, "chat_http_requests_total{endpoint=\"GET /a\\\"b\\\\c\"}"
                    " 1\n") != NULL);
    free(t);
}


/* every sample line belongs to a family announced by HELP and TYPE */
static void
prometheus_every_sample_has_help_and_type(void)
{
    uint32_t   d[] = { 1000 };
    char      *t = render_with("GET /a", d, 1), *line, *save = NULL;
    char       family[128] = "", name[128];
    size_t     n;
    int        bad = 0, helps = 0, types = 0;

    for (line = strtok_r(t, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
    {
        if (strncmp(line, "# HELP ", 7) == 0) {
            helps++;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            types++;
            sscanf(line + 7, "%127s", family);
            continue;
        }
        n = strcspn(line, "{ ");
        snprintf(name, sizeof(name), "%.*s", (int) n, line);
        if (strncmp(name, family, strlen(family)) != 0) {
            fprintf(stderr, "    sample %s outside family %s\n", name,
                    family);
            bad++;
        }
    }

    CHECK(bad == 0);
    CHECK(helps == types && helps > 20);
    free(t);
}


void
suite_prometheus(void)
{
    RUN(prometheus_histogram_is_cumulative_and_inf_equals_count);
    RUN(prometheus_escapes_label_values);
    RUN(prometheus_every_sample_has_help_and_type);
}
