/*
 * workers.c - worker incarnations, batch sequence accounting and the
 * per-worker WebSocket group counts.  See workers.h.
 */

#include <stdlib.h>
#include <string.h>

#include "workers.h"


struct workers_s {
    size_t            max_workers;
    size_t            max_groups;
    size_t            n;
    worker_t         *w;
    workers_totals_t  retired;          /* folded-in evicted entries */
    uint64_t          incarnations;
    uint64_t          group_overflows;
};


workers_t *
workers_create(size_t max_workers, size_t max_groups)
{
    workers_t  *ws;

    if (max_workers == 0 || max_groups == 0) {
        return NULL;
    }

    ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        return NULL;
    }

    ws->w = calloc(max_workers, sizeof(worker_t));
    if (ws->w == NULL) {
        free(ws);
        return NULL;
    }

    ws->max_workers = max_workers;
    ws->max_groups = max_groups;
    return ws;
}


void
workers_free(workers_t *ws)
{
    size_t  i;

    if (ws == NULL) {
        return;
    }
    for (i = 0; i < ws->n; i++) {
        free(ws->w[i].groups);
    }
    free(ws->w);
    free(ws);
}


void
workers_clear_groups(worker_t *w)
{
    w->ngroups = 0;
    w->ws_connections = 0;
    w->ws_untracked = 0;
    w->ws_overflowed = 0;
}


/* a group past the table: its connections count in the totals only */
static int
workers_untracked(workers_t *ws, worker_t *w, uint32_t count, int delta)
{
    uint64_t  n;

    w->ws_overflowed = 1;
    ws->group_overflows++;

    n = delta == 0 ? count : 1;

    if (delta < 0) {
        n = n < w->ws_untracked ? n : w->ws_untracked;
        w->ws_untracked -= n;
        w->ws_connections -= n;
    } else {
        w->ws_untracked += n;
        w->ws_connections += n;
    }
    return -1;
}


static void
workers_end(worker_t *w)
{
    w->live = 0;
    workers_clear_groups(w);
}


static void
workers_retire(workers_t *ws, size_t i)
{
    worker_t  *w = &ws->w[i];

    ws->retired.batches += w->batches;
    ws->retired.seq_gaps += w->seq_gaps;
    ws->retired.batches_missed += w->batches_missed;
    ws->retired.seq_regressions += w->seq_regressions;
    ws->retired.requests_received += w->requests_received;
    ws->retired.requests_recorded += w->requests_recorded;
    ws->retired.records_dropped += w->records_dropped;
    ws->retired.requests_dropped += w->requests_dropped;
    ws->retired.retired++;
    ws->retired.cluster_reconnects += w->cluster.reconnects;
    ws->retired.cluster_events_out += w->cluster.events_out;
    ws->retired.cluster_events_in += w->cluster.events_in;
    ws->retired.cluster_gaps_filled += w->cluster.gaps_filled;
    ws->retired.cluster_dropped += w->cluster.dropped;

    free(w->groups);
    ws->w[i] = ws->w[ws->n - 1];
    memset(&ws->w[ws->n - 1], 0, sizeof(worker_t));
    ws->n--;
}


/* Evicts the least recently seen entry, preferring ended ones. */
static void
workers_make_room(workers_t *ws)
{
    size_t     i, victim = 0;
    worker_t  *w, *v;

    for (i = 1; i < ws->n; i++) {
        w = &ws->w[i];
        v = &ws->w[victim];

        if (w->live != v->live) {
            if (!w->live) {
                victim = i;
            }
            continue;
        }
        if (w->last_seen_mono_us < v->last_seen_mono_us) {
            victim = i;
        }
    }

    workers_retire(ws, victim);
}


worker_t *
workers_batch(workers_t *ws, const coll_batch_t *b, uint64_t wall_us,
    uint64_t mono_us)
{
    size_t     i;
    worker_t  *w = NULL;

    for (i = 0; i < ws->n; i++) {
        if (ws->w[i].pid != b->worker_pid) {
            continue;
        }
        if (ws->w[i].start_us == b->worker_start_us) {
            w = &ws->w[i];
        } else if (ws->w[i].live) {
            workers_end(&ws->w[i]);
        }
    }

    if (w == NULL) {
        if (ws->n == ws->max_workers) {
            workers_make_room(ws);
        }

        w = &ws->w[ws->n++];
        memset(w, 0, sizeof(*w));
        w->pid = b->worker_pid;
        w->start_us = b->worker_start_us;
        w->first_seen_wall_us = wall_us;
        w->first_seq = b->batch_seq;
        ws->incarnations++;

    } else if (b->batch_seq > w->last_seq + 1) {
        w->seq_gaps++;
        w->batches_missed += b->batch_seq - w->last_seq - 1;

    } else if (b->batch_seq <= w->last_seq) {
        w->seq_regressions++;
    }

    if (b->batch_seq > w->last_seq) {
        w->last_seq = b->batch_seq;
    }

    /* cumulative counters only grow; a reordered batch carries older ones */
    if (b->requests_recorded > w->requests_recorded) {
        w->requests_recorded = b->requests_recorded;
    }
    if (b->records_dropped > w->records_dropped) {
        w->records_dropped = b->records_dropped;
    }
    if (b->requests_dropped > w->requests_dropped) {
        w->requests_dropped = b->requests_dropped;
    }

    w->live = 1;
    w->batches++;
    if (b->snapshot) {
        w->snapshots++;
    }
    w->last_seen_wall_us = wall_us;
    w->last_seen_mono_us = mono_us;
    return w;
}


#define max_u64(a, b)  ((a) > (b) ? (a) : (b))

void
workers_cluster(worker_t *w, const coll_cluster_t *rec)
{
    coll_cluster_t  *c = &w->cluster;

    if (w->has_cluster) {
        c->reconnects = max_u64(c->reconnects, rec->reconnects);
        c->events_out = max_u64(c->events_out, rec->events_out);
        c->events_in = max_u64(c->events_in, rec->events_in);
        c->gaps_filled = max_u64(c->gaps_filled, rec->gaps_filled);
        c->dropped = max_u64(c->dropped, rec->dropped);

        if (rec->ts_us < c->ts_us) {
            return;
        }

    } else {
        c->reconnects = rec->reconnects;
        c->events_out = rec->events_out;
        c->events_in = rec->events_in;
        c->gaps_filled = rec->gaps_filled;
        c->dropped = rec->dropped;
        w->has_cluster = 1;
    }

    c->ts_us = rec->ts_us;
    c->state = rec->state;
    memcpy(c->host, rec->host, sizeof(c->host));
    memcpy(c->server, rec->server, sizeof(c->server));
    memcpy(c->error, rec->error, sizeof(c->error));
}


worker_t *
workers_find(workers_t *ws, uint32_t pid, uint64_t start_us)
{
    size_t  i;

    for (i = 0; i < ws->n; i++) {
        if (ws->w[i].pid == pid && ws->w[i].start_us == start_us) {
            return &ws->w[i];
        }
    }
    return NULL;
}


int
workers_set_group(workers_t *ws, worker_t *w, const char *group_id,
    uint32_t count, int delta)
{
    size_t            i, cap;
    coll_ws_count_t  *g;

    for (i = 0; i < w->ngroups; i++) {
        if (strcmp(w->groups[i].group_id, group_id) == 0) {
            break;
        }
    }

    if (i < w->ngroups) {
        w->ws_connections -= w->groups[i].count;
        if (count == 0) {
            w->groups[i] = w->groups[--w->ngroups];
            return 0;
        }
        w->groups[i].count = count;
        w->ws_connections += count;
        return 0;
    }

    /* an event of a group not in the table, once some did not fit: it
     * is one of those (its earlier connections are in ws_untracked) */
    if (w->ws_overflowed && delta != 0) {
        return workers_untracked(ws, w, count, delta);
    }

    if (count == 0) {
        return 0;
    }

    if (w->ngroups == w->groups_cap) {
        if (w->groups_cap == ws->max_groups) {
            return workers_untracked(ws, w, count, delta);
        }
        cap = w->groups_cap ? w->groups_cap * 2 : 16;
        if (cap > ws->max_groups) {
            cap = ws->max_groups;
        }
        g = realloc(w->groups, cap * sizeof(*g));
        if (g == NULL) {
            return workers_untracked(ws, w, count, delta);
        }
        w->groups = g;
        w->groups_cap = cap;
    }

    g = &w->groups[w->ngroups++];
    memcpy(g->group_id, group_id, sizeof(g->group_id));
    g->group_id[sizeof(g->group_id) - 1] = '\0';
    g->count = count;
    w->ws_connections += count;
    return 0;
}


uint64_t
workers_group_total(const workers_t *ws, const char *group_id)
{
    size_t    i, j;
    uint64_t  total = 0;

    for (i = 0; i < ws->n; i++) {
        const worker_t  *w = &ws->w[i];

        if (!w->live) {
            continue;
        }
        for (j = 0; j < w->ngroups; j++) {
            if (strcmp(w->groups[j].group_id, group_id) == 0) {
                total += w->groups[j].count;
                break;
            }
        }
    }
    return total;
}


uint64_t
workers_total_connections(const workers_t *ws)
{
    size_t    i;
    uint64_t  total = 0;

    for (i = 0; i < ws->n; i++) {
        if (ws->w[i].live) {
            total += ws->w[i].ws_connections;
        }
    }
    return total;
}


size_t
workers_expire(workers_t *ws, uint64_t mono_us, uint64_t timeout_us)
{
    size_t  i, n = 0;

    for (i = 0; i < ws->n; i++) {
        worker_t  *w = &ws->w[i];

        if (w->live && mono_us > w->last_seen_mono_us
            && mono_us - w->last_seen_mono_us > timeout_us)
        {
            workers_end(w);
            n++;
        }
    }
    return n;
}


void
workers_totals(const workers_t *ws, workers_totals_t *out)
{
    size_t  i;

    *out = ws->retired;
    out->incarnations = ws->incarnations;

    for (i = 0; i < ws->n; i++) {
        const worker_t  *w = &ws->w[i];

        out->batches += w->batches;
        out->seq_gaps += w->seq_gaps;
        out->batches_missed += w->batches_missed;
        out->seq_regressions += w->seq_regressions;
        out->requests_received += w->requests_received;
        out->requests_recorded += w->requests_recorded;
        out->records_dropped += w->records_dropped;
        out->requests_dropped += w->requests_dropped;
        out->cluster_reconnects += w->cluster.reconnects;
        out->cluster_events_out += w->cluster.events_out;
        out->cluster_events_in += w->cluster.events_in;
        out->cluster_gaps_filled += w->cluster.gaps_filled;
        out->cluster_dropped += w->cluster.dropped;
    }
}


size_t
workers_count(const workers_t *ws)
{
    return ws->n;
}


size_t
workers_live(const workers_t *ws)
{
    size_t  i, n = 0;

    for (i = 0; i < ws->n; i++) {
        n += ws->w[i].live ? 1 : 0;
    }
    return n;
}


const worker_t *
workers_at(const workers_t *ws, size_t i)
{
    return i < ws->n ? &ws->w[i] : NULL;
}


uint64_t
workers_group_overflows(const workers_t *ws)
{
    return ws->group_overflows;
}
