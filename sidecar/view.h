/*
 * view.h - everything one response is rendered from: private copies taken
 * from the collector, the database thread and /proc, plus fixed facts.
 * Renderers (dashboard_json.c, prometheus.c) read only this, with no lock
 * held and no I/O.
 */

#ifndef SIDECAR_VIEW_H
#define SIDECAR_VIEW_H

#include <stdint.h>

#include "collector.h"
#include "dbstats.h"
#include "procstats.h"

#define SIDECAR_VERSION  "0.1.0"

typedef struct {
    const coll_snapshot_t  *snap;
    const db_stats_t       *db;
    const proc_sample_t    *proc;
    const char             *ingest_url;
    const char             *hostname;   /* the sidecar's gethostname():
                                           the host until a worker names
                                           it (cluster.h) */
    uint64_t                now_wall_us;
    double                  sidecar_uptime_s;
} sidecar_view_t;

#endif /* SIDECAR_VIEW_H */
