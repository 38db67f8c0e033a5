/*
 * workers.h - what the sidecar knows about each nginx worker incarnation.
 *
 * An incarnation is (worker_pid, worker_start_us).  For each one the table
 * keeps the batch sequence accounting (gaps, regressions), the latest
 * cumulative counters from its batch headers, and its per-group WebSocket
 * connection counts.  A worker that sends nothing for the timeout stops
 * being live: its WebSocket counts are forgotten, its counters are kept.
 * When the table is full the least recently seen incarnation is folded
 * into the `retired` totals, so sums stay monotonic.  Not thread safe:
 * the collector serialises access.
 */

#ifndef SIDECAR_WORKERS_H
#define SIDECAR_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "records.h"

typedef struct {
    uint32_t          pid;
    uint64_t          start_us;
    int               live;
    uint64_t          first_seen_wall_us;
    uint64_t          last_seen_wall_us;
    uint64_t          last_seen_mono_us;
    uint64_t          first_seq;
    uint64_t          last_seq;
    uint64_t          batches;
    uint64_t          snapshots;
    uint64_t          seq_gaps;          /* times a seq jumped forward */
    uint64_t          batches_missed;    /* seqs skipped by those jumps */
    uint64_t          seq_regressions;   /* seq not above the last one */
    uint64_t          requests_received; /* request records applied */
    uint64_t          requests_recorded; /* latest cumulative, from worker */
    uint64_t          records_dropped;
    uint64_t          requests_dropped;
    uint64_t          ws_connections;    /* sum of the group counts, the
                                            untracked ones included */
    uint64_t          ws_untracked;      /* connections in groups past
                                            --max-ws-groups */
    int               ws_overflowed;     /* some since the last snapshot */
    int               has_cluster;       /* a cluster record came */
    coll_cluster_t    cluster;           /* the latest one; its counters
                                            never go down */
    size_t            ngroups;
    size_t            groups_cap;
    coll_ws_count_t  *groups;
} worker_t;

/* sums over every incarnation ever seen, retired ones included */
typedef struct {
    uint64_t  batches;
    uint64_t  seq_gaps;
    uint64_t  batches_missed;
    uint64_t  seq_regressions;
    uint64_t  requests_received;
    uint64_t  requests_recorded;
    uint64_t  records_dropped;
    uint64_t  requests_dropped;
    uint64_t  incarnations;
    uint64_t  retired;
    uint64_t  cluster_reconnects;     /* the cluster links' counters */
    uint64_t  cluster_events_out;
    uint64_t  cluster_events_in;
    uint64_t  cluster_gaps_filled;
    uint64_t  cluster_dropped;
} workers_totals_t;

typedef struct workers_s  workers_t;


workers_t *workers_create(size_t max_workers, size_t max_groups);
void workers_free(workers_t *ws);

/*
 * Accounts one batch header and returns its incarnation (created when
 * new; a live entry with the same pid but another start time is ended,
 * since a pid names one process at a time).  NULL only on allocation
 * failure.
 */
worker_t *workers_batch(workers_t *ws, const coll_batch_t *b,
    uint64_t wall_us, uint64_t mono_us);

/* the entry of an incarnation, or NULL */
worker_t *workers_find(workers_t *ws, uint32_t pid, uint64_t start_us);

/*
 * Sets a group's count on one worker; count 0 removes it.  delta is the
 * event's change (+1 connected, -1 disconnected; 0 for a snapshot record).
 * A group that does not fit in the worker's table (--max-ws-groups) is
 * folded into ws_untracked, so the worker's and the global totals stay
 * exact: a snapshot adds its count, an event its delta.  Until the next
 * snapshot says otherwise, a group the table does not hold is then taken
 * for an untracked one.  Returns -1 when the group is untracked.
 */
int workers_set_group(workers_t *ws, worker_t *w, const char *group_id,
    uint32_t count, int delta);

void workers_clear_groups(worker_t *w);

/*
 * Takes a worker's cluster record: the state, host, server and error of
 * the newest (by its timestamp) replace the worker's; each cumulative
 * counter keeps the larger of the two, so a reordered batch never takes
 * a sum back.  One record per worker: memory does not grow with them.
 */
void workers_cluster(worker_t *w, const coll_cluster_t *rec);

/* the group's connections summed over live workers */
uint64_t workers_group_total(const workers_t *ws, const char *group_id);

uint64_t workers_total_connections(const workers_t *ws);

/* ends incarnations not heard from for timeout_us; returns how many */
size_t workers_expire(workers_t *ws, uint64_t mono_us, uint64_t timeout_us);

void workers_totals(const workers_t *ws, workers_totals_t *out);

size_t workers_count(const workers_t *ws);
size_t workers_live(const workers_t *ws);

/* i-th entry (any order), NULL past the end */
const worker_t *workers_at(const workers_t *ws, size_t i);

uint64_t workers_group_overflows(const workers_t *ws);

#endif /* SIDECAR_WORKERS_H */
