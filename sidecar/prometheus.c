/*
 * prometheus.c - text exposition of a view, see prometheus.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "prometheus.h"


typedef struct {
    char    *buf;
    size_t   len;
    size_t   cap;
    int      failed;
} sbuf_t;


static void
sb_grow(sbuf_t *b, size_t need)
{
    size_t   cap;
    char    *p;

    if (b->failed || b->len + need + 1 <= b->cap) {
        return;
    }

    cap = b->cap ? b->cap : 16384;
    while (cap < b->len + need + 1) {
        cap *= 2;
    }

    p = realloc(b->buf, cap);
    if (p == NULL) {
        b->failed = 1;
        return;
    }
    b->buf = p;
    b->cap = cap;
}


static void
sb_printf(sbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);

    if (n < 0) {
        b->failed = 1;
        return;
    }

    sb_grow(b, (size_t) n);
    if (b->failed) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
}


/* label values escape backslash, double quote and newline */
static void
sb_label(sbuf_t *b, const char *s)
{
    for ( ; *s != '\0'; s++) {
        sb_grow(b, 2);
        if (b->failed) {
            return;
        }
        if (*s == '\\' || *s == '"') {
            b->buf[b->len++] = '\\';
            b->buf[b->len++] = *s;
        } else if (*s == '\n') {
            b->buf[b->len++] = '\\';
            b->buf[b->len++] = 'n';
        } else {
            b->buf[b->len++] = *s;
        }
    }
    if (!b->failed) {
        b->buf[b->len] = '\0';
    }
}


static void
family(sbuf_t *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


static void
metric(sbuf_t *b, const char *name, const char *type, const char *help,
    double v)
{
    family(b, name, type, help);
    sb_printf(b, "%s %.15g\n", name, v);
}


static void
endpoint_series(sbuf_t *b, const char *name, const ep_row_t *r,
    const char *extra)
{
    sb_printf(b, "%s{endpoint=\"", name);
    sb_label(b, r->name);
    sb_printf(b, "\"%s}", extra);
}


static void
p_endpoints(sbuf_t *b, const coll_snapshot_t *s)
{
    size_t    i, k;
    uint64_t  cum;
    char      le[64];

    family(b, "chat_http_requests_total", "counter",
           "Requests served by nginx, by endpoint (METHOD path).");
    for (i = 0; i < s->nendpoints; i++) {
        endpoint_series(b, "chat_http_requests_total", &s->endpoints[i], "");
        sb_printf(b, " %llu\n",
                  (unsigned long long) s->endpoints[i].stats.count);
    }

    family(b, "chat_http_request_errors_total", "counter",
           "Requests answered 4xx or 5xx, by endpoint.");
    for (i = 0; i < s->nendpoints; i++) {
        endpoint_series(b, "chat_http_request_errors_total",
                        &s->endpoints[i], "");
        sb_printf(b, " %llu\n",
                  (unsigned long long) s->endpoints[i].stats.errors);
    }

    family(b, "chat_http_request_duration_seconds", "histogram",
           "Request duration from start to log phase, by endpoint.");
    for (i = 0; i < s->nendpoints; i++) {
        const ep_row_t  *r = &s->endpoints[i];

        cum = 0;
        for (k = 0; k < EP_HIST_BUCKETS; k++) {
            cum += r->stats.buckets[k];
            if (k < EP_HIST_FINITE) {
                snprintf(le, sizeof(le), ",le=\"%g\"",
                         (double) ep_hist_bounds_us[k] / 1e6);
            } else {
                snprintf(le, sizeof(le), ",le=\"+Inf\"");
            }
            endpoint_series(b, "chat_http_request_duration_seconds_bucket",
                            r, le);
            sb_printf(b, " %llu\n", (unsigned long long) cum);
        }
        endpoint_series(b, "chat_http_request_duration_seconds_sum", r, "");
        sb_printf(b, " %.6f\n", (double) r->stats.total_us / 1e6);
        endpoint_series(b, "chat_http_request_duration_seconds_count", r,
                        "");
        sb_printf(b, " %llu\n", (unsigned long long) r->stats.count);
    }
}


static void
p_process(sbuf_t *b, const sidecar_view_t *v)
{
    const proc_sample_t  *p = v->proc;

    metric(b, "chat_nginx_up", "gauge",
           "1 when the nginx master from the pid file is running.",
           p->alive ? 1 : 0);

    if (p->alive && p->uptime_ok) {
        metric(b, "chat_nginx_start_time_seconds", "gauge",
               "Start time of the nginx master, seconds since the epoch.",
               p->start_wall_s);
    }
    if (p->mem_ok) {
        metric(b, "chat_nginx_resident_memory_bytes", "gauge",
               "Resident memory of the nginx master and its children.",
               p->rss_mb * 1024.0 * 1024.0);
    }
    if (p->cpu_ok) {
        metric(b, "chat_nginx_cpu_seconds_total", "counter",
               "User and system CPU time of the live nginx processes.",
               p->cpu_seconds);
    }
    if (p->sys_ok) {
        metric(b, "chat_system_memory_available_bytes", "gauge",
               "MemAvailable from /proc/meminfo.",
               p->sys_avail_mb * 1024.0 * 1024.0);
    }
}


static void
p_database(sbuf_t *b, const db_stats_t *db)
{
    metric(b, "chat_mongodb_up", "gauge",
           "1 when the database answered the last refresh.", db->healthy);
    metric(b, "chat_db_stats_stale", "gauge",
           "1 when the database figures are from an earlier refresh.",
           db->stale);
    if (db->refreshed_at_us != 0) {
        metric(b, "chat_db_stats_refreshed_timestamp_seconds", "gauge",
               "When the database figures were last refreshed.",
               (double) db->refreshed_at_us / 1e6);
    }
    metric(b, "chat_db_refresh_failures_total", "counter",
           "Database refreshes that failed.", (double) db->refreshes_failed);
    metric(b, "chat_db_refresh_partial_total", "counter",
           "Database refreshes that kept some figures (a query too slow).",
           (double) db->refreshes_partial);

    if (!db->have_data) {
        return;
    }
    metric(b, "chat_db_groups", "gauge", "Groups in the database.",
           (double) db->total_groups);
    metric(b, "chat_db_messages", "gauge",
           "Messages in the database, deleted included.",
           (double) db->total_messages);
    if (db->measured & DB_HAVE_ACTIVE) {
        metric(b, "chat_db_active_messages", "gauge",
               "Messages not soft-deleted.", (double) db->active_messages);
    }
}


/* this host and its link to the cluster (cluster.h); the names are the
   ones deploy/prometheus/ and deploy/grafana/ query */
static void
p_cluster(sbuf_t *b, const sidecar_view_t *v)
{
    cluster_summary_t  cl;

    cluster_summarize(v->snap, v->hostname, &cl);

    family(b, "chat_host_info", "gauge",
           "1, labelled with this host's name (chat_host_name, else the "
           "sidecar's hostname).");
    sb_printf(b, "chat_host_info{host=\"");
    sb_label(b, cl.host);
    sb_printf(b, "\"} 1\n");

    metric(b, "chat_cluster_enabled", "gauge",
           "1 when a live worker has chat_cluster set.", cl.enabled);
    metric(b, "chat_cluster_workers_connected", "gauge",
           "Live workers whose cluster link is connected.",
           (double) cl.workers_connected);
    metric(b, "chat_cluster_reconnects_total", "counter",
           "Cluster links re-established after a loss.",
           (double) cl.reconnects);
    metric(b, "chat_cluster_events_in_total", "counter",
           "Events received from other hosts over the cluster.",
           (double) cl.events_in);
    metric(b, "chat_cluster_events_out_total", "counter",
           "Events published to the cluster.", (double) cl.events_out);
    metric(b, "chat_cluster_gaps_filled_total", "counter",
           "Events read from the database to fill a gap in a group's "
           "sequence.", (double) cl.gaps_filled);
    metric(b, "chat_cluster_dropped_total", "counter",
           "Events not published or not handled (link down, buffer full, "
           "bad message).", (double) cl.dropped);
}


char *
prometheus_render(const sidecar_view_t *v, size_t *len)
{
    const coll_snapshot_t   *s = v->snap;
    const workers_totals_t  *t = &s->totals;
    sbuf_t                   b;

    memset(&b, 0, sizeof(b));
    sb_grow(&b, 0);

    p_endpoints(&b, s);

    metric(&b, "chat_http_slow_requests_total", "counter",
           "Requests at or above the slow threshold.",
           (double) s->n.slow_total);
    metric(&b, "chat_http_very_slow_requests_total", "counter",
           "Requests at or above the very slow threshold.",
           (double) s->n.very_slow_total);

    metric(&b, "chat_websocket_connections", "gauge",
           "Open WebSocket connections over live workers.",
           (double) s->ws_total);
    metric(&b, "chat_websocket_groups_with_connections", "gauge",
           "Groups with at least one open WebSocket.",
           (double) s->ngroups);
    family(&b, "chat_websocket_events_total", "counter",
           "WebSocket connects and disconnects.");
    sb_printf(&b, "chat_websocket_events_total{event=\"connected\"} %llu\n",
              (unsigned long long) s->n.ws_connects);
    sb_printf(&b,
              "chat_websocket_events_total{event=\"disconnected\"} %llu\n",
              (unsigned long long) s->n.ws_disconnects);
    metric(&b, "chat_custom_events_total", "counter",
           "Custom events received.", (double) s->n.custom_total);

    metric(&b, "chat_sidecar_batches_total", "counter",
           "Well-formed batches received from workers.",
           (double) s->n.batches_applied);
    metric(&b, "chat_sidecar_batches_rejected_total", "counter",
           "Malformed batches rejected.", (double) s->n.batches_rejected);
    metric(&b, "chat_sidecar_invalid_records_total", "counter",
           "Records skipped for an unknown type or event.",
           (double) s->n.records_invalid);
    metric(&b, "chat_sidecar_batch_seq_gaps_total", "counter",
           "Times a worker's batch sequence jumped forward.",
           (double) t->seq_gaps);
    metric(&b, "chat_sidecar_batches_missed_total", "counter",
           "Batch sequence numbers skipped by those jumps.",
           (double) t->batches_missed);
    metric(&b, "chat_sidecar_requests_received_total", "counter",
           "Request records received by the sidecar.",
           (double) t->requests_received);
    metric(&b, "chat_worker_requests_recorded_total", "counter",
           "Request records produced by workers (their cumulative count).",
           (double) t->requests_recorded);
    metric(&b, "chat_worker_records_dropped_total", "counter",
           "Records workers could not send (no reader, queue full).",
           (double) t->records_dropped);
    metric(&b, "chat_worker_requests_dropped_total", "counter",
           "Request records among the dropped ones.",
           (double) t->requests_dropped);
    metric(&b, "chat_sidecar_live_workers", "gauge",
           "Worker incarnations heard from within the timeout.",
           (double) s->live_workers);
    metric(&b, "chat_sidecar_endpoints_tracked", "gauge",
           "Distinct endpoints with their own row (capped).",
           (double) s->endpoints_named);
    metric(&b, "chat_sidecar_uptime_seconds", "gauge",
           "Seconds since the sidecar started.", v->sidecar_uptime_s);

    p_database(&b, v->db);
    p_process(&b, v);
    p_cluster(&b, v);

    if (b.failed) {
        free(b.buf);
        return NULL;
    }
    if (len != NULL) {
        *len = b.len;
    }
    return b.buf;
}
