/*
 * test_collector.c - aggregation, error classification, retention,
 * WebSocket state across workers, exactness accounting and history.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sidecar/collector.h"
#include "unit.h"

#define WALL0  1762691696000000ull      /* 2025-11-09T12:34:56Z */
#define MONO0  1000000000ull
#define SEC    1000000ull


static coll_batch_t *
batch(uint32_t pid, uint64_t start, uint64_t seq)
{
    coll_batch_t  *b = calloc(1, sizeof(*b));

    b->worker_pid = pid;
    b->worker_start_us = start;
    b->batch_seq = seq;
    return b;
}


/* a request record of b, its three strings as the wire has them (raw) */
static coll_record_t *
add_raw_req(coll_batch_t *b, const char *method, const char *endpoint,
    const char *cid, unsigned status, uint32_t dur_us)
{
    coll_record_t  *r = &b->rec[b->count++];

    memset(r, 0, sizeof(*r));
    r->type = CHAT_REC_REQUEST;
    r->u.request.status = (uint16_t) status;
    r->u.request.duration_us = dur_us;
    coll_request_raw_set(&r->u.request, method, endpoint, cid);
    return r;
}


/* a request record of b as the module sends it: "METHOD path", cid-N */
static void
add_req(coll_batch_t *b, const char *method, const char *path,
    unsigned status, uint32_t dur_us)
{
    char  ep[COLL_ENDPOINT_SZ], cid[COLL_CID_SZ];

    snprintf(ep, sizeof(ep), "%s %s", method, path);
    snprintf(cid, sizeof(cid), "cid-%u", b->count + 1);
    add_raw_req(b, method, ep, cid, status, dur_us)->u.request.ts_us = WALL0;
}


static void
add_ws(coll_batch_t *b, int connected, const char *gid, uint32_t count)
{
    coll_record_t  *r = &b->rec[b->count++];

    memset(r, 0, sizeof(*r));
    r->type = CHAT_REC_WS_EVENT;
    r->u.ws_event.ts_us = WALL0;
    r->u.ws_event.connected = (uint8_t) connected;
    r->u.ws_event.worker_count = count;
    snprintf(r->u.ws_event.group_id, sizeof(r->u.ws_event.group_id), "%s",
             gid);
    snprintf(r->u.ws_event.user_id, sizeof(r->u.ws_event.user_id), "u1");
}


static void
add_snap(coll_batch_t *b, const char *gid, uint32_t count)
{
    coll_record_t  *r = &b->rec[b->count++];

    memset(r, 0, sizeof(*r));
    r->type = CHAT_REC_WS_SNAPSHOT;
    r->u.ws_count.count = count;
    snprintf(r->u.ws_count.group_id, sizeof(r->u.ws_count.group_id), "%s",
             gid);
}


static collector_t *
mk(const coll_config_t *cfg)
{
    coll_config_t  d;

    if (cfg == NULL) {
        collector_config_defaults(&d);
        cfg = &d;
    }
    return collector_create(cfg, WALL0, MONO0);
}


/*
 * A collector on the default configuration but for one setting, the
 * fixture of the tests of a limit:  c = MK_WITH(cfg, recent_max = 2);
 * (cfg: the test's coll_config_t, left as the collector was made with it)
 */
#define MK_WITH(cfg, setting)                                              \
    (collector_config_defaults(&(cfg)), (cfg).setting, mk(&(cfg)))


static coll_snapshot_t *
snap(collector_t *c, uint64_t dt)
{
    return collector_snapshot(c, WALL0 + dt, MONO0 + dt);
}


static uint64_t
group_count(const coll_snapshot_t *s, const char *gid)
{
    size_t  i;

    for (i = 0; i < s->ngroups; i++) {
        if (strcmp(s->groups[i].group_id, gid) == 0) {
            return s->groups[i].count;
        }
    }
    return 0;
}


static void
collector_aggregates_counts_errors_and_time(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b = batch(100, 1, 1);
    coll_snapshot_t  *s;

    add_req(b, "GET", "/api/chat/groups", 200, 10000);
    add_req(b, "GET", "/api/chat/groups", 404, 30000);
    add_req(b, "POST", "/api/chat/groups", 201, 20000);
    b->requests_recorded = 3;
    collector_apply(c, b, WALL0, MONO0);

    s = snap(c, 60 * SEC);
    CHECK(s->all.count == 3);
    CHECK(s->all.errors == 1);
    CHECK(s->all.total_us == 60000);
    CHECK(s->nendpoints == 2);
    CHECK(strcmp(s->endpoints[0].name, "GET /api/chat/groups") == 0);
    CHECK(s->endpoints[0].stats.count == 2);
    CHECK(s->endpoints[0].stats.errors == 1);
    CHECK(s->endpoints[0].stats.total_us == 40000);
    CHECK(s->nrecent == 3 && s->nerrors == 1);
    CHECK(s->errors[0].status == 404);
    CHECK(s->uptime_us == 60 * SEC);

    collector_snapshot_free(s);
    collector_free(c);
    free(b);
}


static void
collector_counts_only_4xx_and_5xx_as_errors(void)
{
    CHECK(!collector_is_error(200));
    CHECK(!collector_is_error(304));
    CHECK(!collector_is_error(399));
    CHECK(collector_is_error(400));
    CHECK(collector_is_error(401));
    CHECK(collector_is_error(499));
    CHECK(collector_is_error(500));
    CHECK(collector_is_error(599));
    CHECK(!collector_is_error(600));
    CHECK(!collector_is_error(0));
}


static void
collector_slow_at_1s_very_slow_at_5s(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b = batch(100, 1, 1);
    coll_snapshot_t  *s;

    add_req(b, "GET", "/a", 200, 999999);
    add_req(b, "GET", "/a", 200, 1000000);
    add_req(b, "GET", "/a", 200, 4999999);
    add_req(b, "GET", "/a", 200, 5000000);
    collector_apply(c, b, WALL0, MONO0);

    s = snap(c, SEC);
    CHECK(s->nslow == 3);
    CHECK(s->nslow_very == 1);
    CHECK(s->n.slow_total == 3 && s->n.very_slow_total == 1);
    CHECK(s->slow[0].duration_us == 1000000 && !s->slow[0].very_slow);
    CHECK(s->slow[2].very_slow);

    collector_snapshot_free(s);
    collector_free(c);
    free(b);
}


static void
collector_retention_matches_the_spec_sizes(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b;
    coll_snapshot_t  *s;
    int               i, j;

    for (i = 0; i < 10; i++) {
        b = batch(100, 1, (uint64_t) i + 1);
        for (j = 0; j < 30; j++) {
            add_req(b, "GET", "/slow", 500, 2000000);
        }
        collector_apply(c, b, WALL0, MONO0);
        free(b);
    }

    s = snap(c, SEC);
    CHECK(s->all.count == 300);
    CHECK(s->nrecent == 50);
    CHECK(s->nerrors == 50);
    CHECK(s->nslow == 100);
    CHECK(s->n.slow_total == 300);
    collector_snapshot_free(s);
    collector_free(c);
}


static void
collector_endpoint_cap_adds_an_overflow_row(void)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_batch_t     *b = batch(100, 1, 1);
    coll_snapshot_t  *s;
    char              path[32];
    int               i;

    c = MK_WITH(cfg, endpoint_cap = 3);

    for (i = 0; i < 5; i++) {
        snprintf(path, sizeof(path), "/p%d", i);
        add_req(b, "GET", path, 200, 1000);
        add_req(b, "GET", path, 200, 1000);
    }
    collector_apply(c, b, WALL0, MONO0);

    s = snap(c, SEC);
    CHECK(s->nendpoints == 4);
    CHECK(s->endpoints_named == 3);
    CHECK(s->endpoints[0].overflow);      /* 4 requests: sorted first */
    CHECK(s->endpoints[0].stats.count == 4);
    CHECK(strcmp(s->endpoints[0].name, EP_OVERFLOW_NAME) == 0);
    CHECK(s->endpoints[1].stats.count == 2 && !s->endpoints[1].overflow);
    collector_snapshot_free(s);
    collector_free(c);
    free(b);
}


static void
collector_ws_connection_count_spans_workers(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b1 = batch(100, 1, 1), *b2 = batch(200, 2, 1);
    coll_snapshot_t  *s;

    add_ws(b1, 1, "g1", 1);
    add_ws(b1, 1, "g1", 2);
    add_ws(b1, 1, "g2", 1);
    collector_apply(c, b1, WALL0, MONO0);

    add_ws(b2, 1, "g1", 1);
    add_ws(b2, 0, "g2", 0);     /* a stray disconnect on another worker */
    collector_apply(c, b2, WALL0, MONO0);

    s = snap(c, SEC);
    CHECK(s->ws_total == 4);
    CHECK(s->ngroups == 2);
    CHECK(strcmp(s->groups[0].group_id, "g1") == 0);
    CHECK(group_count(s, "g1") == 3);
    CHECK(group_count(s, "g2") == 1);
    CHECK(s->nws_events == 5);
    CHECK(s->ws_events[3].connection_count == 3);   /* g1 after event */
    CHECK(s->ws_events[4].connection_count == 1);
    CHECK(!s->ws_events[4].connected);
    CHECK(s->n.ws_connects == 4 && s->n.ws_disconnects == 1);

    collector_snapshot_free(s);
    collector_free(c);
    free(b1);
    free(b2);
}


/* each worker's count is a u32 from the wire; their sum is not */
static void
collector_group_sums_across_workers_do_not_wrap(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b1 = batch(100, 1, 1), *b2 = batch(200, 2, 1);
    coll_snapshot_t  *s;

    add_snap(b1, "g1", 4000000000u);
    collector_apply(c, b1, WALL0, MONO0);
    add_snap(b2, "g1", 300000007u);
    collector_apply(c, b2, WALL0, MONO0);

    s = snap(c, SEC);
    CHECK(s->ws_total == 4300000007ull);
    CHECK(s->ngroups == 1);
    CHECK(s->groups[0].count == 4300000007ull);

    collector_snapshot_free(s);
    collector_free(c);
    free(b1);
    free(b2);
}


static void
collector_snapshot_batch_replaces_a_workers_counts(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b = batch(100, 1, 1);
    coll_snapshot_t  *s;

    add_ws(b, 1, "g1", 5);
    add_ws(b, 1, "g2", 2);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    /* heartbeat snapshot: only g2 left, with 1 */
    b = batch(100, 1, 2);
    b->snapshot = 1;
    add_snap(b, "g2", 1);
    collector_apply(c, b, WALL0 + SEC, MONO0 + SEC);
    free(b);

    s = snap(c, 2 * SEC);
    CHECK(s->ws_total == 1);
    CHECK(group_count(s, "g1") == 0);
    CHECK(group_count(s, "g2") == 1);
    collector_snapshot_free(s);

    /* an empty snapshot is a heartbeat saying "no connections" */
    b = batch(100, 1, 3);
    b->snapshot = 1;
    collector_apply(c, b, WALL0 + 3 * SEC, MONO0 + 3 * SEC);
    free(b);

    s = snap(c, 4 * SEC);
    CHECK(s->ws_total == 0 && s->ngroups == 0);
    CHECK(s->live_workers == 1);
    collector_snapshot_free(s);
    collector_free(c);
}


/*
 * --max-ws-groups at its limit: groups past it have no row of their own
 * but their connections stay in the worker's and the global totals, from
 * events (+1 / -1) and from snapshots alike.
 */
static void
collector_groups_past_the_limit_are_folded_into_totals(void)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_batch_t     *b;
    coll_snapshot_t  *s;

    c = MK_WITH(cfg, max_groups = 2);

    b = batch(100, 1, 1);
    add_ws(b, 1, "g1", 1);
    add_ws(b, 1, "g2", 1);
    add_ws(b, 1, "g3", 1);          /* past the limit */
    add_ws(b, 1, "g3", 2);
    add_ws(b, 1, "g4", 1);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    s = snap(c, SEC);
    CHECK(s->ngroups == 2);
    CHECK(group_count(s, "g1") == 1 && group_count(s, "g2") == 1);
    CHECK(s->ws_total == 5);
    CHECK(s->nworkers == 1 && s->workers[0].ws_connections == 5);
    CHECK(s->ws_group_overflows == 3);
    collector_snapshot_free(s);

    /* g1 leaves: its row goes; g3 is still one of the untracked ones */
    b = batch(100, 1, 2);
    add_ws(b, 0, "g1", 0);
    add_ws(b, 0, "g3", 1);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    s = snap(c, SEC);
    CHECK(s->ws_total == 3);
    CHECK(s->ngroups == 1 && group_count(s, "g2") == 1);
    collector_snapshot_free(s);

    /* a snapshot states it all again: two rows, the rest in the total */
    b = batch(100, 1, 3);
    b->snapshot = 1;
    add_snap(b, "g2", 1);
    add_snap(b, "g3", 1);
    add_snap(b, "g4", 1);
    add_snap(b, "g5", 4);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    s = snap(c, SEC);
    CHECK(s->ws_total == 7);
    CHECK(s->ngroups == 2);
    collector_snapshot_free(s);

    /* every connection leaves: nothing is left, nothing goes negative */
    b = batch(100, 1, 4);
    add_ws(b, 0, "g5", 3);
    add_ws(b, 0, "g5", 2);
    add_ws(b, 0, "g5", 1);
    add_ws(b, 0, "g5", 0);
    add_ws(b, 0, "g4", 0);
    add_ws(b, 0, "g3", 0);
    add_ws(b, 0, "g2", 0);
    add_ws(b, 0, "g9", 0);          /* a stray one */
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    s = snap(c, SEC);
    CHECK(s->ws_total == 0);
    CHECK(s->ngroups == 0);
    collector_snapshot_free(s);

    /* and a snapshot that fits ends the folding: rows for all again */
    b = batch(100, 1, 5);
    b->snapshot = 1;
    add_snap(b, "g7", 2);
    collector_apply(c, b, WALL0, MONO0);
    free(b);
    b = batch(100, 1, 6);
    add_ws(b, 1, "g8", 1);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    s = snap(c, SEC);
    CHECK(s->ws_total == 3);
    CHECK(s->ngroups == 2 && group_count(s, "g8") == 1);
    collector_snapshot_free(s);

    collector_free(c);
}


/*
 * A client leaves worker 100 and comes back at once on worker 200; worker
 * 200's batch arrives first.  The events are applied in the order they
 * happened, so the group never counts 2.  A snapshot of a worker applies
 * that worker's held events first.
 */
static void
collector_ws_events_are_applied_in_time_order_across_workers(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b;
    coll_snapshot_t  *s;
    uint64_t          t = WALL0 + 10 * SEC;

    b = batch(100, 1, 1);
    add_ws(b, 1, "g1", 1);                      /* at WALL0 */
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    b = batch(200, 2, 1);
    add_ws(b, 1, "g1", 1);
    b->rec[0].u.ws_event.ts_us = t + 1000;      /* the reconnect */
    collector_apply(c, b, t + 40000, MONO0 + 10 * SEC + 40000);
    free(b);

    b = batch(100, 1, 2);
    add_ws(b, 0, "g1", 0);
    b->rec[0].u.ws_event.ts_us = t;             /* the disconnect, first */
    collector_apply(c, b, t + 90000, MONO0 + 10 * SEC + 90000);
    free(b);

    s = snap(c, 11 * SEC);
    CHECK(s->nws_events == 3);
    CHECK(s->ws_events[1].ts_us == t && !s->ws_events[1].connected);
    CHECK(s->ws_events[1].connection_count == 0);
    CHECK(s->ws_events[2].ts_us == t + 1000 && s->ws_events[2].connected);
    CHECK(s->ws_events[2].connection_count == 1);
    CHECK(s->ws_total == 1 && group_count(s, "g1") == 1);
    collector_snapshot_free(s);

    /* held, then worker 200's snapshot: its event first, then replaced */
    b = batch(200, 2, 2);
    add_ws(b, 1, "g2", 1);
    b->rec[0].u.ws_event.ts_us = WALL0 + 20 * SEC;
    collector_apply(c, b, WALL0 + 20 * SEC, MONO0 + 20 * SEC);
    free(b);

    s = snap(c, 20 * SEC + 1000);
    CHECK(group_count(s, "g2") == 0);           /* not yet */
    collector_snapshot_free(s);

    b = batch(200, 2, 3);
    b->snapshot = 1;
    add_snap(b, "g1", 1);
    add_snap(b, "g2", 1);
    collector_apply(c, b, WALL0 + 20 * SEC + 2000, MONO0 + 20 * SEC + 2000);
    free(b);

    s = snap(c, 20 * SEC + 3000);
    CHECK(s->nws_events == 4 && s->ws_events[3].connection_count == 1);
    CHECK(group_count(s, "g1") == 1 && group_count(s, "g2") == 1);
    CHECK(s->ws_total == 2);
    collector_snapshot_free(s);

    collector_free(c);
}


/* more groups than one batch holds: the parts after the first add up */
static void
collector_snapshot_in_several_parts_replaces_once(void)
{
    char              id[32];
    int               i;
    collector_t      *c = mk(NULL);
    coll_batch_t     *b;
    coll_snapshot_t  *s;

    b = batch(100, 1, 1);
    add_ws(b, 1, "old", 7);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    b = batch(100, 1, 2);
    b->snapshot = 1;
    for (i = 0; i < CHAT_WIRE_MAX_RECORDS; i++) {
        snprintf(id, sizeof(id), "a%d", i);
        add_snap(b, id, 1);
    }
    collector_apply(c, b, WALL0 + SEC, MONO0 + SEC);
    free(b);

    b = batch(100, 1, 3);
    b->snapshot = 1;
    b->snapshot_cont = 1;
    add_snap(b, "b0", 2);
    collector_apply(c, b, WALL0 + SEC, MONO0 + SEC);
    free(b);

    s = snap(c, 2 * SEC);
    CHECK(group_count(s, "old") == 0);          /* cleared by part one */
    CHECK(group_count(s, "a0") == 1);           /* kept by part two */
    CHECK(group_count(s, "b0") == 2);
    CHECK(s->ws_total == CHAT_WIRE_MAX_RECORDS + 2);
    collector_snapshot_free(s);
    collector_free(c);
}


static void
collector_forgets_a_silent_worker_after_the_timeout(void)
{
    collector_t      *c = mk(NULL);
    coll_batch_t     *b1 = batch(100, 1, 1), *b2 = batch(200, 2, 1);
    coll_snapshot_t  *s;

    add_ws(b1, 1, "g1", 2);
    add_ws(b2, 1, "g1", 1);
    collector_apply(c, b1, WALL0, MONO0);
    collector_apply(c, b2, WALL0 + 10 * SEC, MONO0 + 10 * SEC);

    s = snap(c, 15 * SEC);              /* exactly 15 s: still live */
    CHECK(s->ws_total == 3 && s->live_workers == 2);
    collector_snapshot_free(s);

    s = snap(c, 16 * SEC);              /* worker 100 silent > 15 s */
    CHECK(s->ws_total == 1);
    CHECK(s->live_workers == 1);
    CHECK(s->nworkers == 2);            /* still listed, not live */
    CHECK(group_count(s, "g1") == 1);
    collector_snapshot_free(s);

    collector_free(c);
    free(b1);
    free(b2);
}


static void
collector_recovers_ws_state_from_snapshots_after_restart(void)
{
    collector_t      *c = mk(NULL);     /* a freshly restarted sidecar */
    coll_batch_t     *b = batch(100, 1, 57);
    coll_snapshot_t  *s;

    b->snapshot = 1;
    add_snap(b, "g1", 4);
    add_snap(b, "g2", 2);
    b->requests_recorded = 900;
    collector_apply(c, b, WALL0, MONO0);

    s = snap(c, SEC);
    CHECK(s->ws_total == 6);
    CHECK(group_count(s, "g1") == 4);
    CHECK(s->totals.seq_gaps == 0);     /* starting late is not a gap */
    CHECK(s->workers[0].first_seq == 57);
    CHECK(s->totals.requests_recorded == 900);
    CHECK(s->totals.requests_received == 0);
    collector_snapshot_free(s);
    collector_free(c);
    free(b);
}


static void
collector_detects_seq_gaps_and_regressions(void)
{
    collector_t      *c = mk(NULL);
    coll_snapshot_t  *s;
    coll_batch_t     *b;
    uint64_t          seqs[] = { 1, 2, 5, 6, 6, 3, 10 };
    size_t            i;

    for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        b = batch(100, 1, seqs[i]);
        collector_apply(c, b, WALL0, MONO0);
        free(b);
    }

    s = snap(c, SEC);
    CHECK(s->totals.batches == 7);
    CHECK(s->totals.seq_gaps == 2);         /* 2->5, 6->10 */
    CHECK(s->totals.batches_missed == 5);   /* 3,4 and 7,8,9 */
    CHECK(s->totals.seq_regressions == 2);  /* 6 again, 3 */
    CHECK(s->workers[0].last_seq == 10);
    collector_snapshot_free(s);
    collector_free(c);
}


/*
 * requests served = recorded + dropped, from the cumulative header
 * counters; what the sidecar received is counted separately.
 */
static void
collector_exactness_served_is_recorded_plus_dropped(void)
{
    collector_t      *c = mk(NULL);
    coll_snapshot_t  *s;
    coll_batch_t     *b;
    int               i;

    b = batch(100, 1, 1);
    for (i = 0; i < 10; i++) {
        add_req(b, "GET", "/a", 200, 100);
    }
    b->requests_recorded = 10;
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    /* batch 2 was dropped by the worker (queue full): 5 requests, 7
       records in all; batch 3 says so in its counters */
    b = batch(100, 1, 3);
    for (i = 0; i < 4; i++) {
        add_req(b, "GET", "/a", 200, 100);
    }
    b->requests_recorded = 14;
    b->records_dropped = 7;
    b->requests_dropped = 5;
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    /* a second worker */
    b = batch(200, 2, 1);
    add_req(b, "GET", "/a", 200, 100);
    b->requests_recorded = 1;
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    s = snap(c, SEC);
    CHECK(s->all.count == 15);
    CHECK(s->totals.requests_received == 15);
    CHECK(s->totals.requests_recorded == 15);
    CHECK(s->totals.requests_dropped == 5);
    CHECK(s->totals.records_dropped == 7);
    CHECK(s->totals.requests_recorded + s->totals.requests_dropped == 20);
    collector_snapshot_free(s);
    collector_free(c);
}


static void
collector_new_incarnation_of_a_pid_ends_the_old_one(void)
{
    collector_t      *c = mk(NULL);
    coll_snapshot_t  *s;
    coll_batch_t     *b;

    b = batch(100, 1, 1);
    add_ws(b, 1, "g1", 3);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    b = batch(100, 2, 1);               /* same pid, new start time */
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    s = snap(c, SEC);
    CHECK(s->nworkers == 2);
    CHECK(s->live_workers == 1);
    CHECK(s->ws_total == 0);
    CHECK(s->totals.incarnations == 2);
    collector_snapshot_free(s);
    collector_free(c);
}


static void
collector_worker_eviction_keeps_totals(void)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_snapshot_t  *s;
    coll_batch_t     *b;
    uint32_t          pid;

    c = MK_WITH(cfg, max_workers = 2);

    for (pid = 1; pid <= 5; pid++) {
        b = batch(pid, pid, 1);
        add_req(b, "GET", "/a", 200, 100);
        b->requests_recorded = 10;
        b->records_dropped = 1;
        b->requests_dropped = 1;
        collector_apply(c, b, WALL0, MONO0 + pid);
        free(b);
    }

    s = snap(c, SEC);
    CHECK(s->nworkers == 2);
    CHECK(s->totals.retired == 3);
    CHECK(s->totals.requests_recorded == 50);
    CHECK(s->totals.requests_dropped == 5);
    CHECK(s->totals.requests_received == 5);
    collector_snapshot_free(s);
    collector_free(c);
}


static void
collector_keeps_the_last_100_custom_events(void)
{
    collector_t      *c = mk(NULL);
    coll_snapshot_t  *s;
    coll_batch_t     *b;
    coll_record_t    *r;
    int               i, j;

    for (i = 0; i < 3; i++) {
        b = batch(100, 1, (uint64_t) i + 1);
        for (j = 0; j < 50; j++) {
            r = &b->rec[b->count++];
            r->type = CHAT_REC_CUSTOM;
            snprintf(r->u.custom.type, sizeof(r->u.custom.type),
                     "message_broadcast");
            r->u.custom.nkv = 1;
            snprintf(r->u.custom.kv[0].key, sizeof(r->u.custom.kv[0].key),
                     "n");
            snprintf(r->u.custom.kv[0].value,
                     sizeof(r->u.custom.kv[0].value), "%d", i * 50 + j);
        }
        collector_apply(c, b, WALL0, MONO0);
        free(b);
    }

    s = snap(c, SEC);
    CHECK(s->ncustom == 100);
    CHECK(s->n.custom_total == 150);
    CHECK(strcmp(s->custom[0].kv[0].value, "50") == 0);
    CHECK(strcmp(s->custom[99].kv[0].value, "149") == 0);
    collector_snapshot_free(s);
    collector_free(c);
}


static void
collector_history_has_a_slot_per_minute_even_when_idle(void)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_snapshot_t  *s;
    coll_batch_t     *b;
    uint64_t          m0 = WALL0 - WALL0 % (60 * SEC);

    /* the event counts in the minute it arrives: not held for ordering */
    c = MK_WITH(cfg, ws_reorder_us = 0);

    b = batch(100, 1, 1);
    add_req(b, "GET", "/a", 200, 10000);
    add_req(b, "GET", "/a", 500, 30000);
    add_ws(b, 1, "g1", 2);
    collector_apply(c, b, WALL0, MONO0);
    free(b);

    b = batch(100, 1, 2);
    add_req(b, "GET", "/a", 200, 20000);
    collector_apply(c, b, m0 + 3 * 60 * SEC, MONO0 + SEC);
    free(b);

    s = collector_snapshot(c, m0 + 3 * 60 * SEC + 5, MONO0 + 2 * SEC);
    CHECK(s->nhistory == 4);
    CHECK(s->history[0].minute_us == m0);
    CHECK(s->history[0].stats.count == 2);
    CHECK(s->history[0].stats.errors == 1);
    CHECK(s->history[0].ws_connections == 2);
    CHECK(s->history[1].stats.count == 0);
    CHECK(s->history[1].ws_connections == 2);
    CHECK(s->history[3].stats.count == 1);
    CHECK(s->history[3].minute_us == m0 + 3 * 60 * SEC);
    collector_snapshot_free(s);
    collector_free(c);
}


static void
collector_history_is_bounded(void)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_snapshot_t  *s;

    c = MK_WITH(cfg, history_minutes = 60);

    /* a day later: only the last 60 minutes are kept */
    s = collector_snapshot(c, WALL0 + 86400 * SEC, MONO0 + SEC);
    collector_snapshot_free(s);
    s = collector_snapshot(c, WALL0 + 2 * 86400 * SEC, MONO0 + 2 * SEC);
    CHECK(s->nhistory == 60);
    CHECK(s->history[59].minute_us + 60 * SEC > WALL0 + 2 * 86400 * SEC);
    CHECK(s->history[0].minute_us + 60 * 60 * SEC
          == s->history[59].minute_us + 60 * SEC);
    collector_snapshot_free(s);
    collector_free(c);
}


typedef struct {
    collector_t  *c;
    int           batches;
} feeder_t;


static void *
feeder(void *arg)
{
    feeder_t      *f = arg;
    coll_batch_t  *b;
    char           path[32];
    int            i, j;

    for (i = 0; i < f->batches; i++) {
        b = batch(100, 1, (uint64_t) i + 1);
        for (j = 0; j < 10; j++) {
            snprintf(path, sizeof(path), "/p%d", (i + j) % 40);
            add_req(b, "GET", path, j == 0 ? 500 : 200, 1000);
        }
        add_ws(b, 1, "g1", (uint32_t) i + 1);
        collector_apply(f->c, b, WALL0, MONO0);
        free(b);
    }
    return NULL;
}


/*
 * Snapshots taken while another thread applies batches always see whole
 * batches: 10 requests, 1 error and 1 WebSocket event per batch, and the
 * endpoint rows adding up to the total.
 */
static void
collector_snapshots_are_consistent_under_concurrent_ingest(void)
{
    collector_t      *c = mk(NULL);
    coll_snapshot_t  *s;
    feeder_t          f = { c, 3000 };
    pthread_t         t;
    uint64_t          sum;
    size_t            i;
    int               n, bad = 0;

    pthread_create(&t, NULL, feeder, &f);

    for (n = 0; n < 300; n++) {
        s = snap(c, SEC);
        sum = 0;
        for (i = 0; i < s->nendpoints; i++) {
            sum += s->endpoints[i].stats.count;
        }
        if (s->all.count % 10 != 0 || s->all.errors * 10 != s->all.count
            || s->n.ws_connects * 10 != s->all.count || sum != s->all.count
            || s->ws_total != s->n.ws_connects)
        {
            bad++;
        }
        collector_snapshot_free(s);
    }

    pthread_join(t, NULL);
    s = snap(c, SEC);
    CHECK(bad == 0);
    CHECK(s->all.count == 30000);
    CHECK(s->totals.batches == 3000 && s->totals.seq_gaps == 0);
    collector_snapshot_free(s);
    collector_free(c);
}


/*
 * Requests are kept raw in the rings (records.h) and cleaned when a
 * snapshot expands them: the rows read clean, "METHOD path" is built for
 * a bare path, and a short row written over a long one in a full ring
 * shows nothing of the long one.
 */
static void
collector_keeps_requests_raw_and_shows_them_clean(void)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_batch_t     *b = batch(100, 1, 1);
    coll_snapshot_t  *s;
    size_t            i;

    c = MK_WITH(cfg, recent_max = 2);

    add_raw_req(b, "GET", "GET /x\x01\xff_\xc3\xa9",
                "c\x7f-0123456789abcdef0123456789abcdef", 500, 2000000);
    add_raw_req(b, "POST", "/y", "d", 200, 0);

    add_req(b, "GET", "/z", 200, 10);       /* over the first row */
    collector_apply(c, b, WALL0, MONO0);

    s = snap(c, SEC);
    CHECK(s->nrecent == 2);
    CHECK(strcmp(s->recent[0].endpoint, "POST /y") == 0);
    CHECK(strcmp(s->recent[0].path, "/y") == 0);
    CHECK(strcmp(s->recent[0].method, "POST") == 0);
    CHECK(strcmp(s->recent[0].cid, "d") == 0);
    CHECK(strcmp(s->recent[1].endpoint, "GET /z") == 0);
    CHECK(strcmp(s->recent[1].cid, "cid-3") == 0);

    /* the slow and error rows: copies of the first, whole and clean */
    CHECK(s->nslow == 1 && s->nerrors == 1);
    CHECK(strcmp(s->slow[0].endpoint, "GET /x??_\xc3\xa9") == 0);
    CHECK(strcmp(s->slow[0].path, "/x??_\xc3\xa9") == 0);
    CHECK(strcmp(s->errors[0].cid,
                 "c?-0123456789abcdef0123456789abcdef") == 0);
    CHECK(s->slow[0].very_slow == 0 && s->slow[0].status == 500);

    CHECK(s->nendpoints == 3);
    for (i = 0; i < s->nendpoints; i++) {
        CHECK(strcmp(s->endpoints[i].name, "GET /x??_\xc3\xa9") == 0
              || strcmp(s->endpoints[i].name, "POST /y") == 0
              || strcmp(s->endpoints[i].name, "GET /z") == 0);
        CHECK(s->endpoints[i].stats.count == 1);
    }

    collector_snapshot_free(s);
    collector_free(c);
    free(b);
}


void
suite_collector(void)
{
    RUN(collector_aggregates_counts_errors_and_time);
    RUN(collector_keeps_requests_raw_and_shows_them_clean);
    RUN(collector_counts_only_4xx_and_5xx_as_errors);
    RUN(collector_slow_at_1s_very_slow_at_5s);
    RUN(collector_retention_matches_the_spec_sizes);
    RUN(collector_endpoint_cap_adds_an_overflow_row);
    RUN(collector_ws_connection_count_spans_workers);
    RUN(collector_group_sums_across_workers_do_not_wrap);
    RUN(collector_snapshot_batch_replaces_a_workers_counts);
    RUN(collector_snapshot_in_several_parts_replaces_once);
    RUN(collector_groups_past_the_limit_are_folded_into_totals);
    RUN(collector_ws_events_are_applied_in_time_order_across_workers);
    RUN(collector_forgets_a_silent_worker_after_the_timeout);
    RUN(collector_recovers_ws_state_from_snapshots_after_restart);
    RUN(collector_detects_seq_gaps_and_regressions);
    RUN(collector_exactness_served_is_recorded_plus_dropped);
    RUN(collector_new_incarnation_of_a_pid_ends_the_old_one);
    RUN(collector_worker_eviction_keeps_totals);
    RUN(collector_keeps_the_last_100_custom_events);
    RUN(collector_history_has_a_slot_per_minute_even_when_idle);
    RUN(collector_history_is_bounded);
    RUN(collector_snapshots_are_consistent_under_concurrent_ingest);
}
