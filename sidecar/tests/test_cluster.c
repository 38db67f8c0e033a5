/*
 * test_cluster.c - a worker's cluster link (CHAT_REC_CLUSTER): decoding,
 * the latest record of a worker replacing the one before, the host's
 * summary over workers, a worker replaced or evicted without a counter
 * going back, the JSON object and the Prometheus lines.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sidecar/cluster.h"
#include "sidecar/dashboard_json.h"
#include "sidecar/ingest.h"
#include "sidecar/prometheus.h"
#include "unit.h"

#define WALL0  1762691696000000ull
#define MONO0  1000000000ull
#define SEC    1000000ull


typedef struct {
    chat_wire_batch_t   hdr;
    chat_wire_record_t  rec[CHAT_WIRE_MAX_RECORDS];
} wire_t;


static void
wire_str(char *dst, uint8_t *len, const char *s)
{
    *len = (uint8_t) strlen(s);
    memcpy(dst, s, strlen(s));
}


static void
cluster_record_decodes_and_is_made_safe(void)
{
    wire_t              *w = calloc(1, sizeof(*w));
    coll_batch_t        *b = calloc(1, sizeof(*b));
    chat_wire_cluster_t *c;

    w->hdr.magic = CHAT_WIRE_MAGIC;
    w->hdr.version = CHAT_WIRE_VERSION;
    w->hdr.record_size = sizeof(chat_wire_record_t);
    w->hdr.count = 2;
    w->rec[0].size = sizeof(chat_wire_record_t);     /* whole records */
    w->rec[1].size = sizeof(chat_wire_record_t);
    w->hdr.worker_pid = 10;
    w->hdr.worker_start_us = 1;
    w->hdr.batch_seq = 1;

    w->rec[0].type = CHAT_REC_CLUSTER;
    w->rec[0].timestamp_us = WALL0;
    c = &w->rec[0].u.cluster;
    c->state = CHAT_CLUSTER_CONNECTED;
    c->reconnects = 3;
    c->events_out = 40;
    c->events_in = 50;
    c->gaps_filled = 6;
    c->dropped = 7;
    wire_str(c->host, &c->host_len, "host-a");
    wire_str(c->server, &c->server_len, "nats://127.0.0.1:4222");
    wire_str(c->error, &c->error_len, "bad\n\"x\"");
    /* a length past the field is cut to it */
    memset(c->host + 6, 'h', CHAT_WIRE_HOST_LEN - 6);
    c->host_len = 255;

    /* a state the wire does not define is skipped and counted */
    w->rec[1].type = CHAT_REC_CLUSTER;
    w->rec[1].u.cluster.state = CHAT_CLUSTER_CLOSED + 1;

    CHECK(ingest_decode(w, CHAT_WIRE_BATCH_SIZE(2), b) == 0);
    CHECK(b->count == 1);
    CHECK(b->invalid == 1);
    CHECK(b->rec[0].type == CHAT_REC_CLUSTER);
    CHECK(b->rec[0].u.cluster.state == CHAT_CLUSTER_CONNECTED);
    CHECK(b->rec[0].u.cluster.ts_us == WALL0);
    CHECK(b->rec[0].u.cluster.reconnects == 3);
    CHECK(b->rec[0].u.cluster.events_out == 40);
    CHECK(b->rec[0].u.cluster.events_in == 50);
    CHECK(b->rec[0].u.cluster.gaps_filled == 6);
    CHECK(b->rec[0].u.cluster.dropped == 7);
    CHECK(strlen(b->rec[0].u.cluster.host) == CHAT_WIRE_HOST_LEN);
    CHECK(strncmp(b->rec[0].u.cluster.host, "host-ahh", 8) == 0);
    CHECK(strcmp(b->rec[0].u.cluster.server, "nats://127.0.0.1:4222")
          == 0);
    CHECK(strcmp(b->rec[0].u.cluster.error, "bad?\"x\"") == 0);

    free(w);
    free(b);
}


static void
add_cluster(coll_batch_t *b, uint64_t ts, unsigned state, const char *host,
    const char *server, const char *error, uint64_t n)
{
    coll_record_t  *r = &b->rec[b->count++];

    memset(r, 0, sizeof(*r));
    r->type = CHAT_REC_CLUSTER;
    r->u.cluster.ts_us = ts;
    r->u.cluster.state = (uint8_t) state;
    r->u.cluster.reconnects = n;
    r->u.cluster.events_out = 10 * n;
    r->u.cluster.events_in = 100 * n;
    r->u.cluster.gaps_filled = 1000 * n;
    r->u.cluster.dropped = 10000 * n;
    snprintf(r->u.cluster.host, sizeof(r->u.cluster.host), "%s", host);
    snprintf(r->u.cluster.server, sizeof(r->u.cluster.server), "%s", server);
    snprintf(r->u.cluster.error, sizeof(r->u.cluster.error), "%s", error);
}


/* one batch from (pid, start) carrying one cluster record */
static void
send_link(collector_t *c, uint32_t pid, uint64_t start, uint64_t seq,
    uint64_t dt, unsigned state, const char *server, const char *error,
    uint64_t n)
{
    coll_batch_t  *b = calloc(1, sizeof(*b));

    b->worker_pid = pid;
    b->worker_start_us = start;
    b->batch_seq = seq;
    add_cluster(b, WALL0 + dt, state, "host-a", server, error, n);
    collector_apply(c, b, WALL0 + dt, MONO0 + dt);
    free(b);
}


static void
summary(collector_t *c, uint64_t dt, cluster_summary_t *out)
{
    coll_snapshot_t  *s = collector_snapshot(c, WALL0 + dt, MONO0 + dt);

    cluster_summarize(s, "own-host", out);
    collector_snapshot_free(s);
}


static collector_t *
mk(size_t max_workers)
{
    coll_config_t  cfg;

    collector_config_defaults(&cfg);
    cfg.max_workers = max_workers;
    cfg.ws_reorder_us = 0;
    return collector_create(&cfg, WALL0, MONO0);
}


static void
cluster_off_without_records_names_own_host(void)
{
    collector_t        *c = mk(4);
    coll_batch_t       *b = calloc(1, sizeof(*b));
    cluster_summary_t   cl;

    summary(c, SEC, &cl);
    CHECK(strcmp(cl.host, "own-host") == 0);
    CHECK(!cl.host_from_worker);
    CHECK(!cl.enabled);
    CHECK(strcmp(cl.state, "off") == 0);
    CHECK(cl.workers == 0 && cl.workers_connected == 0);

    /* a worker with chat_cluster unset: it names the host, still off */
    send_link(c, 1, 1, 1, SEC, CHAT_CLUSTER_OFF, "", "", 0);
    summary(c, SEC, &cl);
    CHECK(strcmp(cl.host, "host-a") == 0);
    CHECK(!cl.enabled);
    CHECK(strcmp(cl.state, "off") == 0);
    CHECK(cl.workers == 0);

    free(b);
    collector_free(c);
}


static void
cluster_state_over_workers_and_distinct_servers(void)
{
    collector_t        *c = mk(8);
    cluster_summary_t   cl;

    send_link(c, 1, 1, 1, SEC, CHAT_CLUSTER_CONNECTED, "nats://a:4222", "",
              1);
    send_link(c, 2, 1, 1, SEC, CHAT_CLUSTER_CONNECTED, "nats://a:4222", "",
              2);
    summary(c, SEC, &cl);
    CHECK(cl.enabled);
    CHECK(strcmp(cl.state, "connected") == 0);
    CHECK(cl.workers == 2 && cl.workers_connected == 2);
    CHECK(cl.nservers == 1);
    CHECK(strcmp(cl.servers[0], "nats://a:4222") == 0);
    CHECK(cl.reconnects == 3 && cl.events_out == 30 && cl.events_in == 300
          && cl.gaps_filled == 3000 && cl.dropped == 30000);

    /* worker 2 loses its server: degraded, its error is the last one */
    send_link(c, 2, 1, 2, 2 * SEC, CHAT_CLUSTER_RECONNECTING, "",
              "connection refused", 2);
    summary(c, 2 * SEC, &cl);
    CHECK(strcmp(cl.state, "degraded") == 0);
    CHECK(cl.workers_connected == 1);
    CHECK(strcmp(cl.last_error, "connection refused") == 0);

    /* then it connects to another server */
    send_link(c, 2, 1, 3, 3 * SEC, CHAT_CLUSTER_CONNECTED, "nats://b:4222",
              "connection refused", 3);
    summary(c, 3 * SEC, &cl);
    CHECK(strcmp(cl.state, "connected") == 0);
    CHECK(cl.nservers == 2);
    CHECK(cl.reconnects == 4);

    /* both down */
    send_link(c, 1, 1, 2, 4 * SEC, CHAT_CLUSTER_CLOSED, "", "gave up", 1);
    send_link(c, 2, 1, 4, 4 * SEC, CHAT_CLUSTER_CONNECTING, "", "", 3);
    summary(c, 4 * SEC, &cl);
    CHECK(cl.enabled);
    CHECK(strcmp(cl.state, "disconnected") == 0);
    CHECK(cl.workers_connected == 0 && cl.nservers == 0);
    CHECK(strcmp(cl.last_error, "gave up") == 0);

    collector_free(c);
}


static void
cluster_latest_record_replaces_and_counters_never_go_back(void)
{
    collector_t        *c = mk(4);
    coll_snapshot_t    *s;
    cluster_summary_t   cl;

    send_link(c, 1, 1, 1, SEC, CHAT_CLUSTER_CONNECTED, "nats://a:4222", "",
              5);
    /* a reordered older record: counters stay, the state too */
    send_link(c, 1, 1, 2, SEC / 2, CHAT_CLUSTER_RECONNECTING, "", "old",
              2);
    summary(c, SEC, &cl);
    CHECK(strcmp(cl.state, "connected") == 0);
    CHECK(cl.reconnects == 5);
    CHECK(cl.last_error[0] == '\0');

    /* 100 more records keep one entry: the worker's memory is fixed */
    {
        uint64_t  i;

        for (i = 0; i < 100; i++) {
            send_link(c, 1, 1, 3 + i, 2 * SEC + i, CHAT_CLUSTER_CONNECTED,
                      "nats://a:4222", "", 6 + i);
        }
    }
    s = collector_snapshot(c, WALL0 + 3 * SEC, MONO0 + 3 * SEC);
    CHECK(s->nworkers == 1);
    CHECK(s->workers[0].cluster.reconnects == 105);
    CHECK(s->n.cluster_records == 102);
    collector_snapshot_free(s);

    collector_free(c);
}


static void
cluster_worker_replaced_or_evicted_keeps_its_counts(void)
{
    collector_t        *c = mk(2);
    cluster_summary_t   cl;
    coll_snapshot_t    *s;

    send_link(c, 1, 1, 1, SEC, CHAT_CLUSTER_CONNECTED, "nats://a:4222", "",
              1);
    send_link(c, 2, 1, 1, SEC, CHAT_CLUSTER_CONNECTED, "nats://a:4222", "",
              2);

    /* pid 1 restarted (a new start time): the old one is ended, no
     * longer counted as connected, and the table (2) is full, so the
     * ended one is evicted into the retired sums */
    send_link(c, 1, 2, 1, 2 * SEC, CHAT_CLUSTER_CONNECTING, "", "", 0);
    summary(c, 2 * SEC, &cl);
    CHECK(cl.workers == 2);
    CHECK(cl.workers_connected == 1);
    CHECK(strcmp(cl.state, "degraded") == 0);
    CHECK(cl.reconnects == 3);
    CHECK(cl.events_out == 30 && cl.events_in == 300);
    CHECK(cl.gaps_filled == 3000 && cl.dropped == 30000);

    s = collector_snapshot(c, WALL0 + 2 * SEC, MONO0 + 2 * SEC);
    CHECK(s->nworkers == 2);
    CHECK(s->totals.retired == 1);
    collector_snapshot_free(s);

    /* a third incarnation evicts again: still no counter goes back */
    send_link(c, 3, 1, 1, 3 * SEC, CHAT_CLUSTER_CONNECTED, "nats://b:4222",
              "", 4);
    summary(c, 3 * SEC, &cl);
    CHECK(cl.reconnects == 7);
    CHECK(cl.dropped == 70000);

    /* every worker silent past the timeout: nothing connected, the sums
     * stay and the host is still named */
    summary(c, 60 * SEC, &cl);
    CHECK(cl.workers == 0 && cl.workers_connected == 0);
    CHECK(!cl.enabled);
    CHECK(strcmp(cl.state, "off") == 0);
    CHECK(cl.reconnects == 7);
    CHECK(strcmp(cl.host, "host-a") == 0);

    collector_free(c);
}


static void
cluster_servers_list_is_bounded(void)
{
    collector_t        *c = mk(64);
    cluster_summary_t   cl;
    char                url[64];
    uint32_t            i;

    for (i = 0; i < CLUSTER_MAX_SERVERS + 3; i++) {
        snprintf(url, sizeof(url), "nats://n%u:4222", i);
        send_link(c, 100 + i, 1, 1, SEC, CHAT_CLUSTER_CONNECTED, url, "", 0);
    }
    summary(c, SEC, &cl);
    CHECK(cl.workers_connected == CLUSTER_MAX_SERVERS + 3);
    CHECK(cl.nservers == CLUSTER_MAX_SERVERS);
    CHECK(cl.servers_unlisted == 3);

    collector_free(c);
}


static void
view_of(collector_t *c, coll_snapshot_t *s, sidecar_view_t *v,
    db_stats_t *db, proc_sample_t *proc)
{
    (void) c;
    memset(db, 0, sizeof(*db));
    memset(proc, 0, sizeof(*proc));
    memset(v, 0, sizeof(*v));
    v->snap = s;
    v->db = db;
    v->proc = proc;
    v->ingest_url = "ipc:///x";
    v->hostname = "own-host";
    v->now_wall_us = WALL0 + SEC;
}


static void
cluster_json_and_prometheus(void)
{
    collector_t      *c = mk(8);
    coll_snapshot_t  *s;
    sidecar_view_t    v;
    db_stats_t        db;
    proc_sample_t     proc;
    char             *out;
    cJSON            *root, *o, *e;

    /* before any record: own host, off, zeros */
    s = collector_snapshot(c, WALL0 + SEC, MONO0 + SEC);
    view_of(c, s, &v, &db, &proc);
    out = prometheus_render(&v, NULL);
    CHECK(out != NULL && strstr(out, "chat_host_info{host=\"own-host\"} 1\n"));
    CHECK(out != NULL && strstr(out, "\nchat_cluster_enabled 0\n"));
    CHECK(out != NULL && strstr(out, "\nchat_cluster_workers_connected 0\n"));
    CHECK(out != NULL && strstr(out, "\nchat_cluster_dropped_total 0\n"));
    free(out);
    collector_snapshot_free(s);

    send_link(c, 1, 1, 1, SEC, CHAT_CLUSTER_CONNECTED, "nats://a:4222", "",
              1);
    send_link(c, 2, 1, 1, SEC, CHAT_CLUSTER_RECONNECTING, "", "timeout", 2);

    s = collector_snapshot(c, WALL0 + SEC, MONO0 + SEC);
    view_of(c, s, &v, &db, &proc);

    out = dashboard_json_render(&v, NULL);
    root = out != NULL ? cJSON_Parse(out) : NULL;
    free(out);
    CHECK(root != NULL);
    o = cJSON_GetObjectItemCaseSensitive(root, "cluster");
    CHECK(cJSON_IsObject(o));
    if (o != NULL) {
        e = cJSON_GetObjectItemCaseSensitive(o, "host");
        CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "host-a") == 0);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "enabled")));
        e = cJSON_GetObjectItemCaseSensitive(o, "state");
        CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "degraded") == 0);
        e = cJSON_GetObjectItemCaseSensitive(o, "workers_connected");
        CHECK(cJSON_IsNumber(e) && e->valuedouble == 1);
        e = cJSON_GetObjectItemCaseSensitive(o, "workers");
        CHECK(cJSON_IsNumber(e) && e->valuedouble == 2);
        e = cJSON_GetObjectItemCaseSensitive(o, "servers");
        CHECK(cJSON_IsArray(e) && cJSON_GetArraySize(e) == 1
              && strcmp(cJSON_GetArrayItem(e, 0)->valuestring,
                        "nats://a:4222") == 0);
        e = cJSON_GetObjectItemCaseSensitive(o, "events_in");
        CHECK(cJSON_IsNumber(e) && e->valuedouble == 300);
        e = cJSON_GetObjectItemCaseSensitive(o, "gaps_filled");
        CHECK(cJSON_IsNumber(e) && e->valuedouble == 3000);
        e = cJSON_GetObjectItemCaseSensitive(o, "last_error");
        CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "timeout") == 0);
    }
    o = cJSON_GetObjectItemCaseSensitive(root, "system");
    e = cJSON_GetObjectItemCaseSensitive(o, "host");
    CHECK(cJSON_IsString(e) && strcmp(e->valuestring, "host-a") == 0);
    cJSON_Delete(root);

    out = prometheus_render(&v, NULL);
    CHECK(out != NULL);
    if (out != NULL) {
        CHECK(strstr(out, "# TYPE chat_host_info gauge\n"));
        CHECK(strstr(out, "chat_host_info{host=\"host-a\"} 1\n"));
        CHECK(strstr(out, "\nchat_cluster_enabled 1\n"));
        CHECK(strstr(out, "\nchat_cluster_workers_connected 1\n"));
        CHECK(strstr(out, "# TYPE chat_cluster_reconnects_total counter\n"));
        CHECK(strstr(out, "\nchat_cluster_reconnects_total 3\n"));
        CHECK(strstr(out, "\nchat_cluster_events_out_total 30\n"));
        CHECK(strstr(out, "\nchat_cluster_events_in_total 300\n"));
        CHECK(strstr(out, "\nchat_cluster_gaps_filled_total 3000\n"));
        CHECK(strstr(out, "\nchat_cluster_dropped_total 30000\n"));
    }
    free(out);
    collector_snapshot_free(s);
    collector_free(c);
}


void
suite_cluster(void)
{
    RUN(cluster_record_decodes_and_is_made_safe);
    RUN(cluster_off_without_records_names_own_host);
    RUN(cluster_state_over_workers_and_distinct_servers);
    RUN(cluster_latest_record_replaces_and_counters_never_go_back);
    RUN(cluster_worker_replaced_or_evicted_keeps_its_counts);
    RUN(cluster_servers_list_is_bounded);
    RUN(cluster_json_and_prometheus);
}
