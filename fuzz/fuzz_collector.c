/*
 * fuzz_collector.c - what a stream of wire batches does to the sidecar:
 * ingest_decode() then collector_apply() (or collector_reject()) for each,
 * with the clock moving between them, then collector_snapshot() and both
 * renderings of it (dashboard_json_render, prometheus_render).
 *
 * Input: byte 0 picks the collector's sizes (small ones make every ring,
 * the endpoint table, the worker list and the group tables overflow);
 * then steps of [u16 length][clock][batch bytes].  clock: seconds to add
 * to both clocks, 254 = the wall clock steps back 5 s, 255 = 3 hours pass.
 *
 * Checked besides ASan/UBSan/LSan: the snapshot stays within the
 * configured sizes, its counters add up, the dashboard JSON parses, and
 * the Prometheus text is UTF-8 lines of `name{label="value",...} number`
 * or comments, label values escaped as the format requires.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "collector.h"
#include "dashboard_json.h"
#include "ingest.h"
#include "prometheus.h"

#include "fuzz_common.h"


#define CHECK(c)  do { if (!(c)) { fprintf(stderr, "fuzz_collector.c:%d: " \
                      "invariant failed: %s\n", __LINE__, #c); abort(); } \
                  } while (0)

#define WALL0  1762691696000000ull
#define MONO0  1000000000ull


static void
check_prometheus(const char *t, size_t len)
{
    const char  *p = t, *last = t + len, *eol;

    CHECK(strlen(t) == len);
    CHECK(ref_utf8_valid((const unsigned char *) t, len));
    CHECK(len == 0 || t[len - 1] == '\n');

    while (p < last) {
        eol = memchr(p, '\n', last - p);
        CHECK(eol != NULL);

        if (*p == '#' || p == eol) {
            p = eol + 1;
            continue;
        }

        /* metric name */
        CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || *p == '_' || *p == ':');
        while (p < eol && *p != '{' && *p != ' ') {
            CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '_' || *p == ':');
            p++;
        }

        if (*p == '{') {
            p++;
            while (*p != '}') {
                while (p < eol && *p != '=') {
                    CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                          || (*p >= '0' && *p <= '9') || *p == '_');
                    p++;
                }
                CHECK(p < eol && p[1] == '"');
                p += 2;
                while (p < eol && *p != '"') {
                    CHECK((unsigned char) *p >= 0x20);
                    if (*p == '\\') {
                        CHECK(p[1] == '\\' || p[1] == '"' || p[1] == 'n');
                        p++;
                    }
                    p++;
                }
                CHECK(p < eol);
                p++;
                if (*p == ',') {
                    p++;
                }
                CHECK(p < eol);
            }
            p++;
        }

        CHECK(*p == ' ');
        p++;
        CHECK(p < eol);
        {
            char   *end;
            char    num[64];
            size_t  n = eol - p;

            CHECK(n < sizeof(num));
            memcpy(num, p, n);
            num[n] = '\0';
            (void) strtod(num, &end);
            CHECK(*end == '\0' || strcmp(num, "+Inf") == 0
                  || strcmp(num, "NaN") == 0);
        }

        p = eol + 1;
    }
}


static coll_batch_t  batch;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t             n, i, len;
    char              *out;
    cJSON             *json;
    uint64_t           wall = WALL0, mono = MONO0;
    unsigned           clock;
    fuzz_in_t          in = { data, size };
    db_stats_t         db;
    collector_t       *c;
    coll_config_t      cfg;
    proc_sample_t      proc;
    sidecar_view_t     v;
    coll_snapshot_t   *s;

    if (size < 1) {
        return 0;
    }

    collector_config_defaults(&cfg);

    if (fuzz_byte(&in) & 1) {
        cfg.slow_max = 3;
        cfg.recent_max = 2;
        cfg.errors_max = 2;
        cfg.ws_events_max = 3;
        cfg.custom_max = 2;
        cfg.endpoint_cap = 4;
        cfg.max_workers = 3;
        cfg.max_groups = 4;
        cfg.history_minutes = 3;
    }

    c = collector_create(&cfg, wall, mono);
    CHECK(c != NULL);

    while (in.n >= 3) {
        len = fuzz_u16(&in);
        clock = fuzz_byte(&in);

        if (len > in.n) {
            len = in.n;
        }

        if (clock == 255) {
            wall += 3 * 3600 * 1000000ull;
            mono += 3 * 3600 * 1000000ull;
        } else if (clock == 254) {
            wall -= 5 * 1000000ull;
            mono += 1000000ull;
        } else {
            wall += clock * 1000000ull;
            mono += clock * 1000000ull;
        }

        {
            uint8_t  *buf = malloc(len ? len : 1);

            memcpy(buf, in.p, len);

            if (ingest_decode(buf, len, &batch) == 0) {
                collector_apply(c, &batch, wall, mono);
            } else {
                collector_reject(c);
            }

            free(buf);
        }

        in.p += len;
        in.n -= len;
    }

    s = collector_snapshot(c, wall + 1000, mono + 1000);
    CHECK(s != NULL);

    CHECK(s->nslow <= cfg.slow_max && s->nrecent <= cfg.recent_max);
    CHECK(s->nerrors <= cfg.errors_max && s->nws_events <= cfg.ws_events_max);
    CHECK(s->ncustom <= cfg.custom_max);
    CHECK(s->nhistory <= cfg.history_minutes);
    CHECK(s->endpoints_named <= cfg.endpoint_cap);
    CHECK(s->nworkers <= cfg.max_workers);
    CHECK(s->nslow_very <= s->nslow);

    {
        uint64_t  total = 0;

        for (i = 0; i < s->nendpoints; i++) {
            total += s->endpoints[i].stats.count;
        }
        CHECK(total == s->all.count);

        total = 0;
        for (i = 0; i < s->ngroups; i++) {
            total += s->groups[i].count;
            if (i) {
                CHECK(s->groups[i - 1].count >= s->groups[i].count);
                CHECK(strcmp(s->groups[i - 1].group_id,
                             s->groups[i].group_id) != 0
                      || s->groups[i - 1].count == 0);
            }
        }
        CHECK(total == s->ws_total);
    }

    memset(&db, 0, sizeof(db));
    strcpy(db.status, "connected");
    memset(&proc, 0, sizeof(proc));
    memset(&v, 0, sizeof(v));
    v.snap = s;
    v.db = &db;
    v.proc = &proc;
    v.ingest_url = "ipc:///tmp/fuzz";
    v.now_wall_us = wall + 1000;

    out = dashboard_json_render(&v, &n);
    CHECK(out != NULL && strlen(out) == n);
    json = cJSON_ParseWithLength(out, n);
    CHECK(json != NULL && cJSON_IsObject(json));
    cJSON_Delete(json);
    free(out);

    out = dashboard_json_health(&v, &n);
    CHECK(out != NULL);
    json = cJSON_ParseWithLength(out, n);
    CHECK(json != NULL);
    cJSON_Delete(json);
    free(out);

    out = prometheus_render(&v, &n);
    CHECK(out != NULL);
    check_prometheus(out, n);
    free(out);

    collector_snapshot_free(s);
    collector_free(c);

    return 0;
}
