/*
 * cluster.h - this host's link to the cluster, summed over its workers.
 *
 * Each nginx worker sends its cluster link (CHAT_REC_CLUSTER) once a
 * second; workers.c keeps the latest of each incarnation.  The summary
 * reads a collector snapshot (no lock, no I/O) for the dashboard JSON and
 * Prometheus:
 *
 *   state      "off"           no live worker has chat_cluster set (none
 *                              sent a record, or all say off)
 *              "connected"     every live worker with chat_cluster set is
 *                              connected
 *              "degraded"      some are, some are not
 *              "disconnected"  none is (connecting, reconnecting, closed)
 *   counters   sums over every incarnation ever seen, the ended and the
 *              evicted (workers_totals_t) ones included: they never go down
 *   servers    the distinct servers the live workers are connected to, at
 *              most CLUSTER_MAX_SERVERS (more are counted in
 *              servers_unlisted)
 *   host       the newest worker record's (chat_host_name), else own_host
 *              (the sidecar's gethostname())
 */

#ifndef SIDECAR_CLUSTER_H
#define SIDECAR_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "collector.h"

#define CLUSTER_MAX_SERVERS  16

typedef struct {
    char         host[COLL_HOST_SZ];
    int          host_from_worker;      /* 0: own_host */
    int          enabled;
    const char  *state;
    size_t       workers;               /* live, with chat_cluster set (a
                                           record, its state not off) */
    size_t       workers_connected;
    size_t       nservers;
    size_t       servers_unlisted;
    char         servers[CLUSTER_MAX_SERVERS][COLL_SERVER_SZ];
    uint64_t     reconnects;
    uint64_t     events_in;
    uint64_t     events_out;
    uint64_t     gaps_filled;
    uint64_t     dropped;
    char         last_error[COLL_ERROR_SZ];
} cluster_summary_t;


void cluster_summarize(const coll_snapshot_t *s, const char *own_host,
    cluster_summary_t *out);

/* "off", "connecting", "connected", "reconnecting", "closed" */
const char *cluster_state_name(unsigned state);

#endif /* SIDECAR_CLUSTER_H */
