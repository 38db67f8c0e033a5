/*
 * dashboard_json.c - builds the dashboard JSON with cJSON from a view.
 *
 * Lists are oldest-first, like the spec's deque slices (slow_requests[-10:]).
 * Floats are rounded to 2 decimals; a figure that cannot be known (no
 * /proc, no nginx pid) is null.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cluster.h"
#include "dashboard_json.h"
#include "isotime.h"


static void
j_num(cJSON *o, const char *key, double v)
{
    cJSON_AddNumberToObject(o, key, isotime_round2(v));
}


static void
j_int(cJSON *o, const char *key, uint64_t v)
{
    cJSON_AddNumberToObject(o, key, (double) v);
}


static void
j_num_or_null(cJSON *o, const char *key, int ok, double v)
{
    if (ok) {
        j_num(o, key, v);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}


static void
j_time(cJSON *o, const char *key, uint64_t wall_us)
{
    char  buf[ISOTIME_BUFSZ];

    if (wall_us == 0) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    cJSON_AddStringToObject(o, key, isotime_format(wall_us, buf,
                                                   sizeof(buf)));
}


static double
pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double) part / (double) whole : 0.0;
}


static double
avg_ms(uint64_t total_us, uint64_t count)
{
    return count ? (double) total_us / (double) count / 1000.0 : 0.0;
}


static void
j_system(cJSON *root, const sidecar_view_t *v, const cluster_summary_t *cl)
{
    cJSON                *sys, *res;
    const proc_sample_t  *p = v->proc;
    char                  buf[64];
    double                up;
    const char           *status, *source;
    int                   up_ok;

    sys = cJSON_AddObjectToObject(root, "system");

    if (!p->configured) {
        status = "running";
        source = "sidecar";
        up = v->sidecar_uptime_s;
        up_ok = 1;
    } else if (p->alive) {
        status = "running";
        source = "nginx";
        up = p->uptime_s;
        up_ok = p->uptime_ok;
    } else {
        status = "down";
        source = "nginx";
        up = 0;
        up_ok = 0;
    }

    cJSON_AddStringToObject(sys, "api_status", status);
    j_num_or_null(sys, "uptime_seconds", up_ok, up);
    if (up_ok) {
        cJSON_AddStringToObject(sys, "uptime_formatted",
                                isotime_uptime(up, buf, sizeof(buf)));
    } else {
        cJSON_AddNullToObject(sys, "uptime_formatted");
    }
    cJSON_AddStringToObject(sys, "mongodb_status", v->db->status);
    cJSON_AddBoolToObject(sys, "mongodb_healthy", v->db->healthy);

    res = cJSON_AddObjectToObject(sys, "resources");
    j_num_or_null(res, "process_memory_mb", p->mem_ok, p->rss_mb);
    j_num_or_null(res, "process_memory_percent", p->mem_ok && p->sys_ok,
                  p->mem_percent);
    j_num_or_null(res, "process_cpu_percent", p->cpu_ok, p->cpu_percent);
    j_num_or_null(res, "system_memory_percent", p->sys_ok,
                  p->sys_mem_percent);
    j_num_or_null(res, "system_memory_available_mb", p->sys_ok,
                  p->sys_avail_mb);
    j_num_or_null(res, "process_count", p->alive, (double) p->nprocs);

    /* added */
    cJSON_AddStringToObject(sys, "uptime_source", source);
    if (p->alive) {
        j_int(sys, "nginx_pid", (uint64_t) p->pid);
    } else {
        cJSON_AddNullToObject(sys, "nginx_pid");
    }
    j_num(sys, "sidecar_uptime_seconds", v->sidecar_uptime_s);
    cJSON_AddStringToObject(sys, "sidecar_version", SIDECAR_VERSION);
    cJSON_AddStringToObject(sys, "host", cl->host);
}


/* added: this host's link to the cluster (cluster.h) */
static void
j_cluster(cJSON *root, const cluster_summary_t *cl)
{
    cJSON   *o, *arr;
    size_t   i;

    o = cJSON_AddObjectToObject(root, "cluster");
    cJSON_AddStringToObject(o, "host", cl->host);
    cJSON_AddBoolToObject(o, "enabled", cl->enabled);
    cJSON_AddStringToObject(o, "state", cl->state);
    j_int(o, "workers_connected", cl->workers_connected);
    j_int(o, "workers", cl->workers);
    arr = cJSON_AddArrayToObject(o, "servers");
    for (i = 0; i < cl->nservers; i++) {
        cJSON_AddItemToArray(arr, cJSON_CreateString(cl->servers[i]));
    }
    j_int(o, "servers_unlisted", cl->servers_unlisted);
    j_int(o, "reconnects", cl->reconnects);
    j_int(o, "events_in", cl->events_in);
    j_int(o, "events_out", cl->events_out);
    j_int(o, "gaps_filled", cl->gaps_filled);
    j_int(o, "dropped", cl->dropped);
    cJSON_AddStringToObject(o, "last_error", cl->last_error);
}


static void
j_database(cJSON *root, const sidecar_view_t *v)
{
    const db_stats_t  *db = v->db;
    cJSON             *o, *h, *arr, *g;
    size_t             i;
    unsigned           have;

    o = cJSON_AddObjectToObject(root, "database");

    /* 0 before any refresh (as documented); once the totals came, a
     * figure no query has returned yet is unknown, not 0 */
    have = db->have_data ? db->measured : ~0u;

    j_int(o, "total_groups", (uint64_t) db->total_groups);
    j_int(o, "total_messages", (uint64_t) db->total_messages);

    if (have & DB_HAVE_ACTIVE) {
        j_int(o, "active_messages", (uint64_t) db->active_messages);
        j_int(o, "deleted_messages", (uint64_t) db->deleted_messages);
        j_num(o, "deletion_rate_percent",
              pct((uint64_t) db->deleted_messages,
                  (uint64_t) db->deleted_of));
    } else {
        cJSON_AddNullToObject(o, "active_messages");
        cJSON_AddNullToObject(o, "deleted_messages");
        cJSON_AddNullToObject(o, "deletion_rate_percent");
    }

    j_num(o, "avg_messages_per_group",
          db->total_groups > 0
          ? (double) db->total_messages / (double) db->total_groups : 0.0);

    h = cJSON_AddObjectToObject(o, "last_24h");
    if (have & DB_HAVE_NEW_GROUPS) {
        j_int(h, "new_groups", (uint64_t) db->new_groups_24h);
    } else {
        cJSON_AddNullToObject(h, "new_groups");
    }
    if (have & DB_HAVE_NEW_MESSAGES) {
        j_int(h, "new_messages", (uint64_t) db->new_messages_24h);
    } else {
        cJSON_AddNullToObject(h, "new_messages");
    }

    arr = cJSON_AddArrayToObject(o, "top_active_groups");
    for (i = 0; i < db->ntop; i++) {
        g = cJSON_CreateObject();
        cJSON_AddStringToObject(g, "group_id", db->top[i].group_id);
        cJSON_AddStringToObject(g, "group_name",
                                db->top[i].has_name ? db->top[i].name
                                                    : "(unknown)");
        j_int(g, "message_count", (uint64_t) db->top[i].message_count);
        j_time(g, "last_message",
               db->top[i].has_last ? db->top[i].last_message_us : 0);
        cJSON_AddItemToArray(arr, g);
    }

    /* added */
    cJSON_AddBoolToObject(o, "stale", db->stale);
    if (db->stale && db->stale_reason[0] != '\0') {
        cJSON_AddStringToObject(o, "stale_reason", db->stale_reason);
    } else {
        cJSON_AddNullToObject(o, "stale_reason");
    }
    j_time(o, "refreshed_at", db->refreshed_at_us);
    j_time(o, "last_attempt_at", db->attempted_at_us);
    j_num(o, "refresh_duration_ms", db->refresh_ms);
}


/* a group's name from the last refresh: WebSocket groups, then top groups */
static const char *
db_group_name(const db_stats_t *db, const char *group_id)
{
    size_t  i;

    for (i = 0; i < db->nnames; i++) {
        if (strcmp(db->names[i].group_id, group_id) == 0) {
            return db->names[i].name;
        }
    }
    for (i = 0; i < db->ntop; i++) {
        if (db->top[i].has_name
            && strcmp(db->top[i].group_id, group_id) == 0)
        {
            return db->top[i].name;
        }
    }
    return NULL;
}


/* added: the group's name from `groups` (null until a refresh has read it) */
static void
j_group_name(cJSON *o, const sidecar_view_t *v, const char *group_id)
{
    const char  *name = db_group_name(v->db, group_id);

    if (name != NULL) {
        cJSON_AddStringToObject(o, "group_name", name);
    } else {
        cJSON_AddNullToObject(o, "group_name");
    }
}


static void
j_websockets(cJSON *root, const sidecar_view_t *v)
{
    const coll_snapshot_t  *s = v->snap;
    cJSON                  *o, *arr, *e;
    size_t                  i, first;

    o = cJSON_AddObjectToObject(root, "websockets");
    j_int(o, "total_active_connections", s->ws_total);
    j_int(o, "groups_with_connections", s->ngroups);

    arr = cJSON_AddArrayToObject(o, "connections_per_group");
    for (i = 0; i < s->ngroups; i++) {
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "group_id", s->groups[i].group_id);
        j_group_name(e, v, s->groups[i].group_id);
        j_int(e, "connection_count", s->groups[i].count);
        cJSON_AddItemToArray(arr, e);
    }

    arr = cJSON_AddArrayToObject(o, "recent_events");
    first = s->nws_events > DASH_RECENT_WS_EVENTS
            ? s->nws_events - DASH_RECENT_WS_EVENTS : 0;
    for (i = first; i < s->nws_events; i++) {
        const coll_ws_event_t  *ev = &s->ws_events[i];

        e = cJSON_CreateObject();
        j_time(e, "timestamp", ev->ts_us);
        cJSON_AddStringToObject(e, "event_type",
                                ev->connected ? "connected"
                                              : "disconnected");
        cJSON_AddStringToObject(e, "group_id", ev->group_id);
        j_group_name(e, v, ev->group_id);
        cJSON_AddStringToObject(e, "user_id", ev->user_id);
        j_int(e, "connection_count", ev->connection_count);
        cJSON_AddItemToArray(arr, e);
    }

    /* added */
    j_int(o, "live_workers", s->live_workers);
    j_int(o, "total_connects", s->n.ws_connects);
    j_int(o, "total_disconnects", s->n.ws_disconnects);
}


static cJSON *
j_request(const coll_request_t *r, int slow)
{
    cJSON  *e;

    e = cJSON_CreateObject();
    j_time(e, "timestamp", r->ts_us);
    cJSON_AddStringToObject(e, "endpoint", r->path);
    cJSON_AddStringToObject(e, "method", r->method);
    if (!slow) {
        j_int(e, "status_code", r->status);
    }
    j_num(e, "duration_ms", (double) r->duration_us / 1000.0);
    cJSON_AddStringToObject(e, "correlation_id", r->cid);
    if (slow) {
        cJSON_AddBoolToObject(e, "very_slow", r->very_slow);
        j_int(e, "status_code", r->status);         /* added */
    }
    return e;
}


static void
j_request_list(cJSON *o, const char *key, const coll_request_t *r, size_t n,
    size_t show, int slow)
{
    cJSON   *arr;
    size_t   i;

    arr = cJSON_AddArrayToObject(o, key);
    for (i = n > show ? n - show : 0; i < n; i++) {
        cJSON_AddItemToArray(arr, j_request(&r[i], slow));
    }
}


static double
requests_per_minute(const coll_snapshot_t *s)
{
    double  up = (double) s->uptime_us / 1e6;

    if (up < 1.0) {
        up = 1.0;
    }
    return (double) s->all.count / (up / 60.0);
}


static void
j_performance(cJSON *root, const sidecar_view_t *v)
{
    const coll_snapshot_t   *s = v->snap;
    const workers_totals_t  *t = &s->totals;
    cJSON                   *o;

    o = cJSON_AddObjectToObject(root, "performance");
    j_int(o, "total_requests", s->all.count);
    j_int(o, "total_errors", s->all.errors);
    j_num(o, "error_rate_percent", pct(s->all.errors, s->all.count));
    j_num(o, "average_response_time_ms",
          avg_ms(s->all.total_us, s->all.count));
    j_num(o, "requests_per_minute", requests_per_minute(s));
    j_int(o, "slow_requests_count", s->nslow);
    j_int(o, "very_slow_requests_count", s->nslow_very);
    j_request_list(o, "recent_slow_requests", s->slow, s->nslow,
                   DASH_RECENT_SLOW, 1);

    /* added */
    j_num(o, "p95_response_time_ms", ep_stats_quantile_ms(&s->all, 0.95));
    j_int(o, "slow_requests_total", s->n.slow_total);
    j_int(o, "very_slow_requests_total", s->n.very_slow_total);
    j_num(o, "slow_threshold_ms", (double) s->cfg.slow_us / 1000.0);
    j_num(o, "very_slow_threshold_ms", (double) s->cfg.very_slow_us / 1000.0);
    j_int(o, "requests_served", t->requests_recorded + t->requests_dropped);
    j_int(o, "requests_dropped", t->requests_dropped);
    j_int(o, "dropped_records", t->records_dropped);
    j_num(o, "collector_uptime_seconds", (double) s->uptime_us / 1e6);
    cJSON_AddStringToObject(o, "requests_per_minute_basis", "collector");
}


static void
j_endpoints(cJSON *root, const sidecar_view_t *v)
{
    const coll_snapshot_t  *s = v->snap;
    cJSON                  *arr, *e;
    size_t                  i;

    arr = cJSON_AddArrayToObject(root, "endpoints");
    for (i = 0; i < s->nendpoints; i++) {
        const ep_row_t  *r = &s->endpoints[i];

        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "endpoint", r->name);
        j_int(e, "request_count", r->stats.count);
        j_int(e, "error_count", r->stats.errors);
        j_num(e, "error_rate_percent", pct(r->stats.errors, r->stats.count));
        j_num(e, "avg_response_time_ms",
              avg_ms(r->stats.total_us, r->stats.count));
        j_num(e, "p95_response_time_ms",
              ep_stats_quantile_ms(&r->stats, 0.95));
        cJSON_AddBoolToObject(e, "overflow", r->overflow);
        cJSON_AddItemToArray(arr, e);
    }
}


static void
j_recent(cJSON *root, const sidecar_view_t *v)
{
    const coll_snapshot_t  *s = v->snap;
    cJSON                  *o;

    o = cJSON_AddObjectToObject(root, "recent_activity");
    j_request_list(o, "recent_requests", s->recent, s->nrecent,
                   DASH_RECENT_REQUESTS, 0);
    j_request_list(o, "recent_errors", s->errors, s->nerrors,
                   DASH_RECENT_ERRORS, 0);
}


/*
 * The spec's record_custom_event(event_type, **kwargs) spreads the kwargs
 * beside timestamp and event_type.  Wire values are strings; a plain
 * decimal integer becomes a JSON number (recipient_count: 3).  An empty key
 * or one that would overwrite timestamp/event_type or repeat becomes
 * "kvN_key" (N = its position).
 */
static int
is_plain_int(const char *s)
{
    size_t  i = 0, n;

    if (s[0] == '-') {
        i = 1;
    }
    n = strlen(s + i);
    if (n == 0 || n > 15 || (s[i] == '0' && n > 1)) {
        return 0;
    }
    for ( ; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}


static void
j_custom(cJSON *root, const sidecar_view_t *v)
{
    const coll_snapshot_t  *s = v->snap;
    cJSON                  *arr, *e;
    size_t                  i, k;
    char                    key[COLL_KEY_SZ + 32];

    arr = cJSON_AddArrayToObject(root, "custom_events");

    for (i = 0; i < s->ncustom; i++) {
        const coll_custom_t  *c = &s->custom[i];

        e = cJSON_CreateObject();
        j_time(e, "timestamp", c->ts_us);
        cJSON_AddStringToObject(e, "event_type", c->type);

        for (k = 0; k < c->nkv; k++) {
            snprintf(key, sizeof(key), "%s", c->kv[k].key);
            if (key[0] == '\0' || cJSON_HasObjectItem(e, key)) {
                snprintf(key, sizeof(key), "kv%u_%s", (unsigned) k,
                         c->kv[k].key);
            }
            if (cJSON_HasObjectItem(e, key)) {
                continue;
            }
            if (is_plain_int(c->kv[k].value)) {
                cJSON_AddNumberToObject(e, key, strtod(c->kv[k].value, NULL));
            } else {
                cJSON_AddStringToObject(e, key, c->kv[k].value);
            }
        }
        cJSON_AddItemToArray(arr, e);
    }
}


static void
j_pipeline(cJSON *root, const sidecar_view_t *v)
{
    const coll_snapshot_t   *s = v->snap;
    const workers_totals_t  *t = &s->totals;
    cJSON                   *o, *arr, *e;
    size_t                   i;
    uint64_t                 overflow = 0;

    for (i = 0; i < s->nendpoints; i++) {
        if (s->endpoints[i].overflow) {
            overflow = s->endpoints[i].stats.count;
        }
    }

    o = cJSON_AddObjectToObject(root, "pipeline");
    cJSON_AddStringToObject(o, "ingest_address", v->ingest_url);
    j_int(o, "batches_received", s->n.batches_applied + s->n.batches_rejected);
    j_int(o, "batches_applied", s->n.batches_applied);
    j_int(o, "largest_batch_records", s->n.largest_batch);
    j_int(o, "malformed_batches_rejected", s->n.batches_rejected);
    j_int(o, "invalid_records_skipped", s->n.records_invalid);
    j_int(o, "batch_seq_gaps", t->seq_gaps);
    j_int(o, "batches_missed", t->batches_missed);
    j_int(o, "batch_seq_regressions", t->seq_regressions);
    j_int(o, "requests_received", t->requests_received);
    j_int(o, "requests_recorded", t->requests_recorded);
    j_int(o, "requests_dropped", t->requests_dropped);
    j_int(o, "records_dropped", t->records_dropped);
    j_int(o, "requests_served", t->requests_recorded + t->requests_dropped);
    j_int(o, "requests_not_received",
          t->requests_recorded > t->requests_received
          ? t->requests_recorded - t->requests_received : 0);
    j_int(o, "worker_incarnations", t->incarnations);
    j_int(o, "workers_retired", t->retired);
    j_int(o, "live_workers", s->live_workers);
    j_int(o, "endpoint_cap", s->cfg.endpoint_cap);
    j_int(o, "endpoints_tracked", s->endpoints_named);
    j_int(o, "endpoint_overflow_requests", overflow);
    j_int(o, "ws_group_overflows", s->ws_group_overflows);
    j_int(o, "cluster_records", s->n.cluster_records);
    j_num(o, "worker_timeout_seconds",
          (double) s->cfg.worker_timeout_us / 1e6);

    arr = cJSON_AddArrayToObject(o, "workers");
    for (i = 0; i < s->nworkers; i++) {
        const worker_t  *w = &s->workers[i];

        e = cJSON_CreateObject();
        j_int(e, "worker_pid", w->pid);
        j_int(e, "worker_start_us", w->start_us);
        j_time(e, "worker_start", w->start_us);
        cJSON_AddBoolToObject(e, "live", w->live);
        j_time(e, "first_seen", w->first_seen_wall_us);
        j_time(e, "last_seen", w->last_seen_wall_us);
        j_int(e, "batches", w->batches);
        j_int(e, "snapshots", w->snapshots);
        j_int(e, "first_seq", w->first_seq);
        j_int(e, "last_seq", w->last_seq);
        j_int(e, "seq_gaps", w->seq_gaps);
        j_int(e, "batches_missed", w->batches_missed);
        j_int(e, "seq_regressions", w->seq_regressions);
        j_int(e, "requests_received", w->requests_received);
        j_int(e, "requests_recorded", w->requests_recorded);
        j_int(e, "requests_dropped", w->requests_dropped);
        j_int(e, "records_dropped", w->records_dropped);
        j_int(e, "ws_connections", w->ws_connections);
        if (w->has_cluster) {
            cJSON_AddStringToObject(e, "cluster_state",
                                    cluster_state_name(w->cluster.state));
        } else {
            cJSON_AddNullToObject(e, "cluster_state");
        }
        cJSON_AddItemToArray(arr, e);
    }
}


static void
j_history(cJSON *root, const sidecar_view_t *v)
{
    const coll_snapshot_t  *s = v->snap;
    cJSON                  *arr, *e;
    size_t                  i;

    arr = cJSON_AddArrayToObject(root, "history");
    for (i = 0; i < s->nhistory; i++) {
        const coll_minute_t  *m = &s->history[i];

        e = cJSON_CreateObject();
        j_time(e, "minute", m->minute_us);
        j_int(e, "requests", m->stats.count);
        j_int(e, "errors", m->stats.errors);
        j_num(e, "avg_response_time_ms",
              avg_ms(m->stats.total_us, m->stats.count));
        j_num(e, "p95_response_time_ms",
              ep_stats_quantile_ms(&m->stats, 0.95));
        j_int(e, "ws_connections", m->ws_connections);
        cJSON_AddItemToArray(arr, e);
    }
}


static char *
j_print(cJSON *root, size_t *len)
{
    char  *out;

    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (out != NULL && len != NULL) {
        *len = strlen(out);
    }
    return out;
}


char *
dashboard_json_render(const sidecar_view_t *v, size_t *len)
{
    cJSON              *root;
    char                buf[ISOTIME_BUFSZ];
    cluster_summary_t   cl;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NULL;
    }

    cluster_summarize(v->snap, v->hostname, &cl);

    cJSON_AddStringToObject(root, "timestamp",
                            isotime_format(v->now_wall_us, buf, sizeof(buf)));
    j_system(root, v, &cl);
    j_database(root, v);
    j_websockets(root, v);
    j_performance(root, v);
    j_endpoints(root, v);
    j_recent(root, v);
    j_custom(root, v);
    j_pipeline(root, v);
    j_history(root, v);
    j_cluster(root, &cl);

    return j_print(root, len);
}


char *
dashboard_json_health(const sidecar_view_t *v, size_t *len)
{
    cJSON  *root;
    char    buf[ISOTIME_BUFSZ];

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NULL;
    }

    cJSON_AddStringToObject(root, "status", "ok");
    cJSON_AddStringToObject(root, "timestamp",
                            isotime_format(v->now_wall_us, buf, sizeof(buf)));
    j_num(root, "uptime_seconds", v->sidecar_uptime_s);
    cJSON_AddStringToObject(root, "ingest_address", v->ingest_url);
    cJSON_AddBoolToObject(root, "db_healthy", v->db->healthy);
    cJSON_AddStringToObject(root, "db_status", v->db->status);
    cJSON_AddStringToObject(root, "version", SIDECAR_VERSION);

    return j_print(root, len);
}
