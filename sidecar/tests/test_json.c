/*
 * test_json.c - the dashboard JSON has every key of the spec's schema
 * with the spec's type, parsed back with cJSON.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sidecar/dashboard_json.h"
#include "unit.h"

#define WALL0  1762691696000000ull
#define MONO0  1000000000ull
#define SEC    1000000ull


/* "a.b.0.c": objects by key, arrays by index */
static cJSON *
jget(cJSON *root, const char *path)
{
    char    buf[256], *tok, *save = NULL;
    cJSON  *cur = root;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok != NULL && cur != NULL;
         tok = strtok_r(NULL, ".", &save))
    {
        if (cJSON_IsArray(cur)) {
            cur = cJSON_GetArrayItem(cur, atoi(tok));
        } else {
            cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
        }
    }
    return cur;
}


static int
jtype(cJSON *root, const char *path, char type)
{
    cJSON  *v = jget(root, path);

    if (v == NULL) {
        fprintf(stderr, "    missing key %s\n", path);
        return 0;
    }
    switch (type) {
    case 'n': return cJSON_IsNumber(v);
    case 's': return cJSON_IsString(v);
    case 'b': return cJSON_IsBool(v);
    case 'o': return cJSON_IsObject(v);
    case 'a': return cJSON_IsArray(v);
    case 'z': return cJSON_IsNull(v);
    }
    return 0;
}


typedef struct {
    collector_t      *c;
    coll_snapshot_t  *snap;
    db_stats_t        db;
    proc_sample_t     proc;
    sidecar_view_t    v;
} fixture_t;


static void
fx_batch(collector_t *c, int n, int ws)
{
    coll_batch_t   *b = calloc(1, sizeof(*b));
    coll_record_t  *r;
    int             i;
    char            cid[COLL_CID_SZ];

    b->worker_pid = 77;
    b->worker_start_us = 5;
    b->batch_seq = 1;
    b->requests_recorded = (uint64_t) n;

    for (i = 0; i < n && b->count < CHAT_WIRE_MAX_RECORDS; i++) {
        r = &b->rec[b->count++];
        r->type = CHAT_REC_REQUEST;
        r->u.request.ts_us = WALL0 + (uint64_t) i * 1000 + 789;
        r->u.request.status = (uint16_t) (i % 4 == 0 ? 500 : 200);
        r->u.request.duration_us = (uint32_t) (i % 10 == 0 ? 1234567
                                                           : 45670);
        snprintf(cid, sizeof(cid), "cid-%d", i);
        coll_request_raw_set(&r->u.request, "GET", "GET /api/chat/groups",
                             cid);
    }

    for (i = 0; i < ws && b->count < CHAT_WIRE_MAX_RECORDS; i++) {
        r = &b->rec[b->count++];
        r->type = CHAT_REC_WS_EVENT;
        r->u.ws_event.ts_us = WALL0;
        r->u.ws_event.connected = 1;
        r->u.ws_event.worker_count = (uint32_t) i + 1;
        snprintf(r->u.ws_event.group_id, sizeof(r->u.ws_event.group_id),
                 "507f1f77bcf86cd799439011");
        snprintf(r->u.ws_event.user_id, sizeof(r->u.ws_event.user_id),
                 "user-%d", i);
    }

    if (b->count < CHAT_WIRE_MAX_RECORDS) {
        r = &b->rec[b->count++];
        r->type = CHAT_REC_CUSTOM;
        r->u.custom.ts_us = WALL0;
        snprintf(r->u.custom.type, sizeof(r->u.custom.type),
                 "message_broadcast");
        r->u.custom.nkv = 3;
        snprintf(r->u.custom.kv[0].key, COLL_KEY_SZ, "group_id");
        snprintf(r->u.custom.kv[0].value, COLL_VALUE_SZ,
                 "507f1f77bcf86cd799439011");
        snprintf(r->u.custom.kv[1].key, COLL_KEY_SZ, "recipient_count");
        snprintf(r->u.custom.kv[1].value, COLL_VALUE_SZ, "3");
        snprintf(r->u.custom.kv[2].key, COLL_KEY_SZ, "timestamp");
        snprintf(r->u.custom.kv[2].value, COLL_VALUE_SZ, "clash");
    }

    /* 10 s before the fixture's snapshot: the worker is still live */
    collector_apply(c, b, WALL0, MONO0 + 3590 * SEC);
    free(b);
}


static void
fx_init(fixture_t *f, int requests, int ws)
{
    coll_config_t  cfg;

    memset(f, 0, sizeof(*f));
    collector_config_defaults(&cfg);
    f->c = collector_create(&cfg, WALL0, MONO0);
    if (requests > 0 || ws > 0) {
        fx_batch(f->c, requests, ws);
    }
    f->snap = collector_snapshot(f->c, WALL0 + 3600 * SEC,
                                 MONO0 + 3600 * SEC);

    f->db.healthy = 1;
    f->db.have_data = 1;
    snprintf(f->db.status, sizeof(f->db.status), "connected");
    f->db.refreshed_at_us = WALL0;
    f->db.total_groups = 15;
    f->db.total_messages = 1234;
    f->db.active_messages = 1200;
    f->db.deleted_messages = 34;
    f->db.deleted_of = 1234;
    f->db.measured = DB_HAVE_ACTIVE | DB_HAVE_NEW_GROUPS
                     | DB_HAVE_NEW_MESSAGES | DB_HAVE_TOP;
    f->db.new_groups_24h = 2;
    f->db.new_messages_24h = 145;
    f->db.ntop = 1;
    snprintf(f->db.top[0].group_id, DB_GROUP_ID_SZ,
             "507f1f77bcf86cd799439011");
    snprintf(f->db.top[0].name, DB_GROUP_NAME_SZ, "General");
    f->db.top[0].has_name = 1;
    f->db.top[0].message_count = 456;
    f->db.top[0].has_last = 1;
    f->db.top[0].last_message_us = WALL0;

    f->proc.configured = 1;
    f->proc.alive = 1;
    f->proc.pid = 1234;
    f->proc.uptime_ok = 1;
    f->proc.uptime_s = 3600.5;
    f->proc.mem_ok = 1;
    f->proc.rss_mb = 256.5;
    f->proc.mem_percent = 3.2;
    f->proc.cpu_ok = 1;
    f->proc.cpu_percent = 12.5;
    f->proc.sys_ok = 1;
    f->proc.sys_mem_percent = 45.3;
    f->proc.sys_avail_mb = 8192.0;

    f->v.snap = f->snap;
    f->v.db = &f->db;
    f->v.proc = &f->proc;
    f->v.ingest_url = "ipc:///tmp/x.ipc";
    f->v.now_wall_us = WALL0 + 3600 * SEC + 789000;
    f->v.sidecar_uptime_s = 3600;
}


static void
fx_free(fixture_t *f)
{
    collector_snapshot_free(f->snap);
    collector_free(f->c);
}


static cJSON *
render(fixture_t *f)
{
    char    *s;
    size_t   len = 0;
    cJSON   *root;

    s = dashboard_json_render(&f->v, &len);
    if (s == NULL) {
        return NULL;
    }
    root = cJSON_Parse(s);
    if (len != strlen(s)) {
        root = NULL;
    }
    free(s);
    return root;
}


static const struct {
    const char  *path;
    char         type;
} spec_keys[] = {
    { "timestamp", 's' },
    { "system", 'o' },
    { "system.api_status", 's' },
    { "system.uptime_seconds", 'n' },
    { "system.uptime_formatted", 's' },
    { "system.mongodb_status", 's' },
    { "system.mongodb_healthy", 'b' },
    { "system.resources", 'o' },
    { "system.resources.process_memory_mb", 'n' },
    { "system.resources.process_memory_percent", 'n' },
    { "system.resources.process_cpu_percent", 'n' },
    { "system.resources.system_memory_percent", 'n' },
    { "system.resources.system_memory_available_mb", 'n' },
    { "database", 'o' },
    { "database.total_groups", 'n' },
    { "database.total_messages", 'n' },
    { "database.active_messages", 'n' },
    { "database.deleted_messages", 'n' },
    { "database.deletion_rate_percent", 'n' },
    { "database.avg_messages_per_group", 'n' },
    { "database.last_24h", 'o' },
    { "database.last_24h.new_groups", 'n' },
    { "database.last_24h.new_messages", 'n' },
    { "database.top_active_groups", 'a' },
    { "database.top_active_groups.0.group_id", 's' },
    { "database.top_active_groups.0.group_name", 's' },
    { "database.top_active_groups.0.message_count", 'n' },
    { "database.top_active_groups.0.last_message", 's' },
    { "websockets", 'o' },
    { "websockets.total_active_connections", 'n' },
    { "websockets.groups_with_connections", 'n' },
    { "websockets.connections_per_group", 'a' },
    { "websockets.connections_per_group.0.group_id", 's' },
    { "websockets.connections_per_group.0.connection_count", 'n' },
    { "websockets.recent_events", 'a' },
    { "websockets.recent_events.0.timestamp", 's' },
    { "websockets.recent_events.0.event_type", 's' },
    { "websockets.recent_events.0.group_id", 's' },
    { "websockets.recent_events.0.user_id", 's' },
    { "websockets.recent_events.0.connection_count", 'n' },
    { "performance", 'o' },
    { "performance.total_requests", 'n' },
    { "performance.total_errors", 'n' },
    { "performance.error_rate_percent", 'n' },
    { "performance.average_response_time_ms", 'n' },
    { "performance.requests_per_minute", 'n' },
    { "performance.slow_requests_count", 'n' },
    { "performance.very_slow_requests_count", 'n' },
    { "performance.recent_slow_requests", 'a' },
    { "performance.recent_slow_requests.0.timestamp", 's' },
    { "performance.recent_slow_requests.0.endpoint", 's' },
    { "performance.recent_slow_requests.0.method", 's' },
    { "performance.recent_slow_requests.0.duration_ms", 'n' },
    { "performance.recent_slow_requests.0.correlation_id", 's' },
    { "performance.recent_slow_requests.0.very_slow", 'b' },
    { "endpoints", 'a' },
    { "endpoints.0.endpoint", 's' },
    { "endpoints.0.request_count", 'n' },
    { "endpoints.0.error_count", 'n' },
    { "endpoints.0.error_rate_percent", 'n' },
    { "endpoints.0.avg_response_time_ms", 'n' },
    { "recent_activity", 'o' },
    { "recent_activity.recent_requests", 'a' },
    { "recent_activity.recent_requests.0.timestamp", 's' },
    { "recent_activity.recent_requests.0.endpoint", 's' },
    { "recent_activity.recent_requests.0.method", 's' },
    { "recent_activity.recent_requests.0.status_code", 'n' },
    { "recent_activity.recent_requests.0.duration_ms", 'n' },
    { "recent_activity.recent_requests.0.correlation_id", 's' },
    { "recent_activity.recent_errors", 'a' },
    { "recent_activity.recent_errors.0.timestamp", 's' },
    { "recent_activity.recent_errors.0.endpoint", 's' },
    { "recent_activity.recent_errors.0.method", 's' },
    { "recent_activity.recent_errors.0.status_code", 'n' },
    { "recent_activity.recent_errors.0.duration_ms", 'n' },
    { "recent_activity.recent_errors.0.correlation_id", 's' },
    /* added keys */
    { "database.stale", 'b' },
    { "database.refreshed_at", 's' },
    { "performance.p95_response_time_ms", 'n' },
    { "performance.dropped_records", 'n' },
    { "performance.requests_dropped", 'n' },
    { "endpoints.0.p95_response_time_ms", 'n' },
    { "custom_events", 'a' },
    { "pipeline", 'o' },
    { "pipeline.workers", 'a' },
    { "pipeline.workers.0.worker_pid", 'n' },
    { "history", 'a' },
    { "history.0.p95_response_time_ms", 'n' },
    { "system.host", 's' },
    { "cluster", 'o' },
    { "cluster.host", 's' },
    { "cluster.enabled", 'b' },
    { "cluster.state", 's' },
    { "cluster.workers_connected", 'n' },
    { "cluster.workers", 'n' },
    { "cluster.servers", 'a' },
    { "cluster.reconnects", 'n' },
    { "cluster.events_in", 'n' },
    { "cluster.events_out", 'n' },
    { "cluster.gaps_filled", 'n' },
    { "cluster.dropped", 'n' },
    { "cluster.last_error", 's' },
};


static void
json_has_every_spec_key_with_the_spec_type(void)
{
    fixture_t  f;
    cJSON     *root;
    size_t     i;
    int        ok;

    fx_init(&f, 60, 3);
    root = render(&f);
    CHECK(root != NULL);

    for (i = 0; root != NULL && i < sizeof(spec_keys) / sizeof(spec_keys[0]);
         i++)
    {
        ok = jtype(root, spec_keys[i].path, spec_keys[i].type);
        if (!ok) {
            fprintf(stderr, "    wrong or missing: %s\n", spec_keys[i].path);
        }
        CHECK(ok);
    }

    cJSON_Delete(root);
    fx_free(&f);
}


static void
json_lists_are_cut_to_the_spec_lengths(void)
{
    fixture_t  f;
    cJSON     *root;

    fx_init(&f, 100, 25);
    root = render(&f);

    CHECK(cJSON_GetArraySize(jget(root, "recent_activity.recent_requests"))
          == 20);
    CHECK(cJSON_GetArraySize(jget(root, "recent_activity.recent_errors"))
          == 20);
    CHECK(cJSON_GetArraySize(jget(root, "performance.recent_slow_requests"))
          == 10);
    CHECK(cJSON_GetArraySize(jget(root, "websockets.recent_events")) == 20);
    /* newest last, like deque[-20:] */
    CHECK(strcmp(jget(root, "recent_activity.recent_requests.19."
                            "correlation_id")->valuestring, "cid-99") == 0);
    CHECK(jget(root, "performance.slow_requests_count")->valuedouble == 10);
    CHECK(jget(root, "websockets.recent_events.19.connection_count")
          ->valuedouble == 25);

    cJSON_Delete(root);
    fx_free(&f);
}


static void
json_values_follow_the_spec_arithmetic(void)
{
    fixture_t  f;
    cJSON     *root;

    fx_init(&f, 8, 0);      /* i%4==0 -> 500: 2 errors; i==0 slow */
    root = render(&f);

    CHECK(jget(root, "performance.total_requests")->valuedouble == 8);
    CHECK(jget(root, "performance.total_errors")->valuedouble == 2);
    CHECK(jget(root, "performance.error_rate_percent")->valuedouble == 25);
    /* (1234.567 + 7 * 45.67) / 8 = 194.28 */
    CHECK(jget(root, "performance.average_response_time_ms")->valuedouble
          == 194.28);
    /* 8 requests over 60 minutes of collector uptime */
    CHECK(jget(root, "performance.requests_per_minute")->valuedouble
          == 0.13);
    CHECK(jget(root, "endpoints.0.error_rate_percent")->valuedouble == 25);
    CHECK(jget(root, "database.deleted_messages")->valuedouble == 34);
    CHECK(jget(root, "database.deletion_rate_percent")->valuedouble == 2.76);
    CHECK(jget(root, "database.avg_messages_per_group")->valuedouble
          == 82.27);
    CHECK(strcmp(jget(root, "system.uptime_formatted")->valuestring,
                 "1h 0m 0s") == 0);
    CHECK(jget(root, "system.uptime_seconds")->valuedouble == 3600.5);
    CHECK(jget(root, "performance.recent_slow_requests.0.duration_ms")
          ->valuedouble == 1234.57);

    cJSON_Delete(root);
    fx_free(&f);
}


static void
json_timestamps_are_iso_utc_with_millis(void)
{
    fixture_t    f;
    cJSON       *root;
    const char  *ts;

    fx_init(&f, 1, 1);
    root = render(&f);

    ts = jget(root, "timestamp")->valuestring;
    CHECK(strcmp(ts, "2025-11-09T13:34:56.789Z") == 0);
    ts = jget(root, "recent_activity.recent_requests.0.timestamp")
         ->valuestring;
    CHECK(strcmp(ts, "2025-11-09T12:34:56.000Z") == 0);
    ts = jget(root, "database.top_active_groups.0.last_message")->valuestring;
    CHECK(strlen(ts) == 24 && ts[23] == 'Z' && ts[19] == '.');

    cJSON_Delete(root);
    fx_free(&f);
}


static void
json_db_down_keeps_last_figures_and_says_stale(void)
{
    fixture_t  f;
    cJSON     *root;

    fx_init(&f, 1, 0);
    f.db.healthy = 0;
    f.db.stale = 1;
    snprintf(f.db.status, sizeof(f.db.status), "ping failed: refused");
    root = render(&f);

    CHECK(cJSON_IsFalse(jget(root, "system.mongodb_healthy")));
    CHECK(strcmp(jget(root, "system.mongodb_status")->valuestring,
                 "ping failed: refused") == 0);
    CHECK(cJSON_IsTrue(jget(root, "database.stale")));
    CHECK(jget(root, "database.total_messages")->valuedouble == 1234);
    CHECK(jtype(root, "database.refreshed_at", 's'));

    cJSON_Delete(root);
    fx_free(&f);
}


/* a count past maxTimeMS keeps its figure; one never measured is null */
static void
json_db_partial_refresh_keeps_or_nulls_each_figure(void)
{
    fixture_t  f;
    cJSON     *root;

    /* the active count ran once (1200 of 1234), then timed out while the
     * total grew to 2000: deleted stays the measured 34 of 1234 */
    fx_init(&f, 1, 0);
    f.db.total_messages = 2000;
    f.db.stale = 1;
    snprintf(f.db.stale_reason, sizeof(f.db.stale_reason),
             "count of active messages failed: time limit");
    root = render(&f);
    CHECK(cJSON_IsTrue(jget(root, "system.mongodb_healthy")));
    CHECK(jget(root, "database.total_messages")->valuedouble == 2000);
    CHECK(jget(root, "database.active_messages")->valuedouble == 1200);
    CHECK(jget(root, "database.deleted_messages")->valuedouble == 34);
    CHECK(jget(root, "database.deletion_rate_percent")->valuedouble == 2.76);
    CHECK(strstr(jget(root, "database.stale_reason")->valuestring,
                 "time limit") != NULL);
    cJSON_Delete(root);

    /* never measured: unknown, not 0 (not a 100 % deletion rate) */
    f.db.measured = DB_HAVE_TOP;
    root = render(&f);
    CHECK(cJSON_IsNull(jget(root, "database.active_messages")));
    CHECK(cJSON_IsNull(jget(root, "database.deleted_messages")));
    CHECK(cJSON_IsNull(jget(root, "database.deletion_rate_percent")));
    CHECK(cJSON_IsNull(jget(root, "database.last_24h.new_groups")));
    CHECK(cJSON_IsNull(jget(root, "database.last_24h.new_messages")));
    CHECK(jget(root, "database.total_messages")->valuedouble == 2000);
    cJSON_Delete(root);

    /* before any refresh: the documented zeros */
    f.db.have_data = 0;
    f.db.measured = 0;
    root = render(&f);
    CHECK(jtype(root, "database.active_messages", 'n'));
    CHECK(jtype(root, "database.last_24h.new_messages", 'n'));
    cJSON_Delete(root);

    fx_free(&f);
}


static void
json_missing_proc_figures_are_null(void)
{
    fixture_t  f;
    cJSON     *root;

    fx_init(&f, 0, 0);
    memset(&f.proc, 0, sizeof(f.proc));
    f.proc.configured = 1;              /* pid file given, nginx gone */
    root = render(&f);

    CHECK(strcmp(jget(root, "system.api_status")->valuestring, "down")
          == 0);
    CHECK(jtype(root, "system.uptime_seconds", 'z'));
    CHECK(jtype(root, "system.resources.process_memory_mb", 'z'));
    CHECK(jtype(root, "system.resources.process_cpu_percent", 'z'));
    CHECK(jtype(root, "system.resources.system_memory_percent", 'z'));
    CHECK(jtype(root, "endpoints", 'a'));
    CHECK(cJSON_GetArraySize(jget(root, "endpoints")) == 0);

    cJSON_Delete(root);
    fx_free(&f);
}


static void
json_custom_events_spread_their_key_values(void)
{
    fixture_t  f;
    cJSON     *root, *e;

    fx_init(&f, 0, 0);
    fx_batch(f.c, 0, 0);
    collector_snapshot_free(f.snap);
    f.snap = collector_snapshot(f.c, WALL0 + SEC, MONO0 + SEC);
    f.v.snap = f.snap;
    root = render(&f);

    e = jget(root, "custom_events.0");
    CHECK(e != NULL);
    CHECK(strcmp(jget(e, "event_type")->valuestring, "message_broadcast")
          == 0);
    CHECK(cJSON_IsString(jget(e, "group_id")));
    CHECK(cJSON_IsNumber(jget(e, "recipient_count")));
    CHECK(jget(e, "recipient_count")->valuedouble == 3);
    CHECK(cJSON_IsString(jget(e, "timestamp")));
    CHECK(strcmp(jget(e, "kv2_timestamp")->valuestring, "clash") == 0);

    cJSON_Delete(root);
    fx_free(&f);
}


static void
json_health_says_ok(void)
{
    fixture_t  f;
    char      *s;
    cJSON     *root;

    fx_init(&f, 0, 0);
    s = dashboard_json_health(&f.v, NULL);
    root = cJSON_Parse(s);
    CHECK(strcmp(jget(root, "status")->valuestring, "ok") == 0);
    CHECK(cJSON_IsTrue(jget(root, "db_healthy")));
    CHECK(strcmp(jget(root, "ingest_address")->valuestring,
                 "ipc:///tmp/x.ipc") == 0);
    CHECK(jtype(root, "uptime_seconds", 'n'));
    cJSON_Delete(root);
    free(s);
    fx_free(&f);
}


void
suite_json(void)
{
    RUN(json_has_every_spec_key_with_the_spec_type);
    RUN(json_lists_are_cut_to_the_spec_lengths);
    RUN(json_values_follow_the_spec_arithmetic);
    RUN(json_timestamps_are_iso_utc_with_millis);
    RUN(json_db_down_keeps_last_figures_and_says_stale);
    RUN(json_db_partial_refresh_keeps_or_nulls_each_figure);
    RUN(json_missing_proc_figures_are_null);
    RUN(json_custom_events_spread_their_key_values);
    RUN(json_health_says_ok);
}
