/*
 * cluster.c - a host's cluster link from its workers' records, see
 * cluster.h.
 */

#include <stdio.h>
#include <string.h>

#include "cluster.h"


const char *
cluster_state_name(unsigned state)
{
    static const char  *names[] = {
        "off", "connecting", "connected", "reconnecting", "closed"
    };

    return state < sizeof(names) / sizeof(names[0]) ? names[state]
                                                     : "unknown";
}


static void
cluster_add_server(cluster_summary_t *out, const char *server)
{
    size_t  i;

    if (server[0] == '\0') {
        return;
    }
    for (i = 0; i < out->nservers; i++) {
        if (strcmp(out->servers[i], server) == 0) {
            return;
        }
    }
    if (out->nservers == CLUSTER_MAX_SERVERS) {
        out->servers_unlisted++;
        return;
    }
    snprintf(out->servers[out->nservers++], COLL_SERVER_SZ, "%s", server);
}


void
cluster_summarize(const coll_snapshot_t *s, const char *own_host,
    cluster_summary_t *out)
{
    size_t           i;
    uint64_t         host_ts = 0, error_ts = 0;
    const worker_t  *w;

    memset(out, 0, sizeof(*out));

    for (i = 0; i < s->nworkers; i++) {
        w = &s->workers[i];
        if (!w->has_cluster) {
            continue;
        }

        /* an ended worker still names the host (it rarely changes) */
        if (w->cluster.host[0] != '\0'
            && (!out->host_from_worker || w->cluster.ts_us >= host_ts))
        {
            memcpy(out->host, w->cluster.host, sizeof(out->host));
            out->host_from_worker = 1;
            host_ts = w->cluster.ts_us;
        }

        if (!w->live) {
            continue;
        }

        if (w->cluster.state == CHAT_CLUSTER_OFF) {
            continue;
        }

        out->workers++;

        if (w->cluster.state == CHAT_CLUSTER_CONNECTED) {
            out->workers_connected++;
            cluster_add_server(out, w->cluster.server);
        }
        if (w->cluster.error[0] != '\0' && w->cluster.ts_us >= error_ts) {
            memcpy(out->last_error, w->cluster.error,
                   sizeof(out->last_error));
            error_ts = w->cluster.ts_us;
        }
    }

    if (!out->host_from_worker) {
        snprintf(out->host, sizeof(out->host), "%s",
                 own_host != NULL ? own_host : "");
    }

    out->enabled = out->workers > 0;

    if (!out->enabled) {
        out->state = "off";
    } else if (out->workers_connected == out->workers) {
        out->state = "connected";
    } else if (out->workers_connected == 0) {
        out->state = "disconnected";
    } else {
        out->state = "degraded";
    }

    out->reconnects = s->totals.cluster_reconnects;
    out->events_in = s->totals.cluster_events_in;
    out->events_out = s->totals.cluster_events_out;
    out->gaps_filled = s->totals.cluster_gaps_filled;
    out->dropped = s->totals.cluster_dropped;
}
