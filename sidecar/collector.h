/*
 * collector.h - the sidecar's in-memory metrics: the spec's MetricsCollector
 * fed by batches from the nginx workers.
 *
 * What it keeps (sizes are the spec's defaults, all tunable):
 *   slow requests        ring of 100  (duration >= slow threshold, 1 s)
 *   recent requests      ring of 50
 *   recent errors        ring of 50   (status 400..599)
 *   WebSocket events     ring of 100
 *   custom events        ring of 100
 *   per-endpoint stats   count / errors / total time / latency histogram,
 *                        at most `endpoint_cap` names plus one overflow row
 *   per-minute history   ring of `history_minutes` slots
 *   worker incarnations  batch accounting, WebSocket counts and the latest
 *                        cluster link record of each (workers.h)
 *
 * Thread safety
 * -------------
 * A collector_t is shared by four kinds of threads and guarded by ONE
 * mutex inside it; no caller ever holds that mutex itself.
 *
 *   - the ingest thread (ingest.c) decodes a batch with no lock held, then
 *     calls collector_apply(): one lock hold per batch, so a reader never
 *     sees half a batch (a snapshot batch replaces a worker's WebSocket
 *     counts atomically);
 *   - the HTTP connection threads (httpd.c, http_routes.c) call
 *     collector_snapshot(), which also applies the WebSocket events whose
 *     ordering window has passed:
 *     under the lock it only copies the retained data into a private
 *     coll_snapshot_t; sorting, merging and all JSON/Prometheus rendering
 *     then happen on that private copy with the lock released, so a slow
 *     client or a large render never stalls ingestion;
 *   - main() creates and frees the collector while no other thread uses it.
 *
 * The database thread (dbstats.c) only calls collector_ws_group_ids()
 * (through main.c's callback, holding none of its own locks) to learn
 * which groups to name.  The lock is
 * never held across I/O, allocation-heavy work or calls into other modules
 * that take locks, so there is no lock ordering to get wrong.
 */

#ifndef SIDECAR_COLLECTOR_H
#define SIDECAR_COLLECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "endpoints.h"
#include "records.h"
#include "workers.h"

typedef struct {
    size_t    slow_max;             /* 100 */
    size_t    recent_max;           /* 50 */
    size_t    errors_max;           /* 50 */
    size_t    ws_events_max;        /* 100 */
    size_t    custom_max;           /* 100 */
    uint32_t  slow_us;              /* 1 s */
    uint32_t  very_slow_us;         /* 5 s */
    size_t    endpoint_cap;         /* 256 */
    size_t    max_workers;          /* 64 incarnations remembered */
    size_t    max_groups;           /* 4096 WebSocket groups per worker */
    uint64_t  worker_timeout_us;    /* 15 s without a batch: not live */
    uint32_t  ws_reorder_us;        /* 250 ms: WebSocket events are held
                                       this long and applied in the order
                                       of their timestamps (0: at once) */
    size_t    history_minutes;      /* 120 */
} coll_config_t;

typedef struct {
    uint64_t    minute_us;          /* wall clock start of the minute */
    ep_stats_t  stats;              /* requests that arrived in it */
    uint64_t    ws_connections;     /* live total at its last update */
} coll_minute_t;

/* the collector's running totals: kept under its lock, copied whole into
   each snapshot */
typedef struct {
    uint64_t           slow_total;
    uint64_t           very_slow_total;
    uint64_t           ws_connects;
    uint64_t           ws_disconnects;
    uint64_t           custom_total;
    uint64_t           batches_applied;
    uint64_t           largest_batch;   /* records in the largest applied */
    uint64_t           batches_rejected;
    uint64_t           records_invalid;
    uint64_t           cluster_records;
} coll_counters_t;

/* A private, consistent copy: read it freely, then collector_snapshot_free */
typedef struct {
    coll_config_t      cfg;
    uint64_t           start_wall_us;
    uint64_t           now_wall_us;
    uint64_t           uptime_us;          /* monotonic, since create */

    ep_stats_t         all;                /* every request record */
    coll_counters_t    n;
    uint64_t           ws_group_overflows;

    coll_request_t    *slow;               /* all retained, oldest first */
    size_t             nslow;
    size_t             nslow_very;         /* very_slow among them */
    coll_request_t    *recent;
    size_t             nrecent;
    coll_request_t    *errors;
    size_t             nerrors;
    coll_ws_event_t   *ws_events;
    size_t             nws_events;
    coll_custom_t     *custom;
    size_t             ncustom;

    ep_row_t          *endpoints;          /* by request count, desc */
    size_t             nendpoints;
    size_t             endpoints_named;    /* rows short of the overflow */

    uint64_t           ws_total;           /* over live workers */
    coll_ws_count_t   *groups;             /* merged, by count desc */
    size_t             ngroups;

    coll_minute_t     *history;            /* oldest first */
    size_t             nhistory;

    worker_t          *workers;            /* groups == NULL in copies */
    size_t             nworkers;
    size_t             live_workers;
    workers_totals_t   totals;
} coll_snapshot_t;

typedef struct collector_s  collector_t;


void collector_config_defaults(coll_config_t *cfg);

/* NULL on allocation failure or a zero size in cfg */
collector_t *collector_create(const coll_config_t *cfg, uint64_t wall_us,
    uint64_t mono_us);
void collector_free(collector_t *c);

/* applies one decoded batch (see records.h) atomically */
void collector_apply(collector_t *c, const coll_batch_t *b, uint64_t wall_us,
    uint64_t mono_us);

/* applies only the custom event records of a batch from another program
   (the --events socket): it is no worker, and any other record is
   counted as invalid, never taken */
void collector_apply_events(collector_t *c, const coll_batch_t *b);

/* counts a buffer that failed decoding */
void collector_reject(collector_t *c);

/* NULL on allocation failure */
coll_snapshot_t *collector_snapshot(collector_t *c, uint64_t wall_us,
    uint64_t mono_us);
void collector_snapshot_free(coll_snapshot_t *s);

/*
 * The group ids the WebSocket panel shows: those of the last `recent`
 * events (newest first), then groups with live connections, each once,
 * at most max.  For the database thread, which looks their names up.
 */
size_t collector_ws_group_ids(collector_t *c, char (*ids)[COLL_GROUP_SZ],
    size_t max, size_t recent);

/* the spec: errors are 4xx and 5xx */
int collector_is_error(unsigned status);

#endif /* SIDECAR_COLLECTOR_H */
