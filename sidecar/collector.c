/*
 * collector.c - bounded in-memory metrics, see collector.h for what it
 * keeps and for the locking rules.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector.h"
#include "ring.h"

#define MINUTE_US  60000000ull


/*
 * Each worker flushes its records on its own timer, so the disconnect of
 * a client on one worker may arrive after its reconnect on another: the
 * count after the connect would add the old worker's stale 1.  Events are
 * therefore held for ws_reorder_us and applied in timestamp order (the
 * workers share the host's clock).
 */
#define COLL_PENDING_MAX  4096

typedef struct {
    coll_ws_event_t   ev;
    uint32_t          pid;              /* its incarnation; 0: none */
    uint64_t          start_us;
    uint64_t          arrived_mono_us;
} coll_pending_t;


struct collector_s {
    pthread_mutex_t   lock;
    coll_config_t     cfg;
    uint64_t          start_wall_us;
    uint64_t          start_mono_us;

    ep_stats_t        all;
    coll_counters_t   n;

    ring_t           *slow;             /* coll_request_raw_t */
    ring_t           *recent;           /* coll_request_raw_t */
    ring_t           *errors;           /* coll_request_raw_t */
    ring_t           *ws_events;        /* coll_ws_event_t */
    ring_t           *custom;           /* coll_custom_t */
    ring_t           *history;          /* coll_minute_t */
    ep_table_t       *endpoints;
    workers_t        *workers;

    coll_pending_t   *pending;          /* by ts_us, oldest first */
    size_t            npending;
};


void
collector_config_defaults(coll_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->slow_max = 100;
    cfg->recent_max = 50;
    cfg->errors_max = 50;
    cfg->ws_events_max = 100;
    cfg->custom_max = 100;
    cfg->slow_us = 1000000;
    cfg->very_slow_us = 5000000;
    cfg->endpoint_cap = 256;
    cfg->max_workers = 64;
    cfg->max_groups = 4096;
    cfg->worker_timeout_us = 15000000;
    cfg->ws_reorder_us = 250000;
    cfg->history_minutes = 120;
}


int
collector_is_error(unsigned status)
{
    return status >= 400 && status <= 599;
}


collector_t *
collector_create(const coll_config_t *cfg, uint64_t wall_us, uint64_t mono_us)
{
    collector_t  *c;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }

    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }

    c->cfg = *cfg;
    c->start_wall_us = wall_us;
    c->start_mono_us = mono_us;

    c->slow = ring_create(cfg->slow_max, sizeof(coll_request_raw_t));
    c->recent = ring_create(cfg->recent_max, sizeof(coll_request_raw_t));
    c->errors = ring_create(cfg->errors_max, sizeof(coll_request_raw_t));
    c->ws_events = ring_create(cfg->ws_events_max, sizeof(coll_ws_event_t));
    c->custom = ring_create(cfg->custom_max, sizeof(coll_custom_t));
    c->history = ring_create(cfg->history_minutes, sizeof(coll_minute_t));
    c->endpoints = ep_table_create(cfg->endpoint_cap);
    c->workers = workers_create(cfg->max_workers, cfg->max_groups);
    c->pending = malloc(COLL_PENDING_MAX * sizeof(coll_pending_t));

    if (c->pending == NULL || c->slow == NULL || c->recent == NULL || c->errors == NULL
        || c->ws_events == NULL || c->custom == NULL || c->history == NULL
        || c->endpoints == NULL || c->workers == NULL)
    {
        collector_free(c);
        return NULL;
    }

    return c;
}


void
collector_free(collector_t *c)
{
    if (c == NULL) {
        return;
    }

    ring_free(c->slow);
    ring_free(c->recent);
    ring_free(c->errors);
    ring_free(c->ws_events);
    ring_free(c->custom);
    ring_free(c->history);
    ep_table_free(c->endpoints);
    workers_free(c->workers);
    free(c->pending);
    pthread_mutex_destroy(&c->lock);
    free(c);
}


/*
 * Returns the history slot of the minute `wall_us` falls in, first pushing
 * empty slots for the minutes that passed without traffic, so the ring is
 * a gapless per-minute series.  A clock stepping backwards keeps using the
 * newest slot rather than rewriting the past.
 */
static coll_minute_t *
collector_minute(collector_t *c, uint64_t wall_us)
{
    coll_minute_t  *last, slot;
    uint64_t        minute, m, ws;

    minute = wall_us - wall_us % MINUTE_US;
    last = ring_newest(c->history);

    if (last != NULL && last->minute_us >= minute) {
        return last;
    }

    ws = workers_total_connections(c->workers);
    m = minute;

    if (last != NULL) {
        m = last->minute_us + MINUTE_US;
        if ((minute - m) / MINUTE_US >= ring_cap(c->history)) {
            m = minute - (ring_cap(c->history) - 1) * MINUTE_US;
        }
    }

    memset(&slot, 0, sizeof(slot));
    slot.ws_connections = ws;

    for ( ; m <= minute; m += MINUTE_US) {
        slot.minute_us = m;
        last = ring_push(c->history, &slot);
    }

    return last;
}


/*
 * A request is counted and kept as it came (records.h): its bytes are
 * cleaned only where they are read, the endpoint's when the table meets a
 * new key, the rest when a snapshot expands the rows still retained.
 */
static void
collector_request(collector_t *c, worker_t *w, coll_minute_t *minute,
    const coll_request_raw_t *req)
{
    int                  err;
    size_t               bucket, klen, used;
    const char          *key;
    coll_request_raw_t  *r;
    char                 buf[COLL_ENDPOINT_SZ];

    err = collector_is_error(req->status);
    bucket = ep_hist_bucket(req->duration_us);
    key = coll_request_key(req, buf, &klen);

    ep_stats_add_bucket(ep_table_get_n(c->endpoints, key, klen),
                        req->duration_us, err, bucket);
    ep_stats_add_bucket(&c->all, req->duration_us, err, bucket);
    ep_stats_add_bucket(&minute->stats, req->duration_us, err, bucket);

    if (w != NULL) {
        w->requests_received++;
    }

    /* copied once into the recent ring (its used bytes), and from there
       into the others */
    used = COLL_REQUEST_RAW_USED(req);
    r = ring_push_n(c->recent, req, used);
    r->very_slow = 0;

    if (r->duration_us >= c->cfg.slow_us) {
        r->very_slow = r->duration_us >= c->cfg.very_slow_us;
        ring_push_n(c->slow, r, used);
        c->n.slow_total++;
        c->n.very_slow_total += r->very_slow;
    }

    if (err) {
        ring_push_n(c->errors, r, used);
    }
}


static void
collector_ws_apply(collector_t *c, worker_t *w, const coll_ws_event_t *ev)
{
    coll_ws_event_t  e;

    e = *ev;

    if (w != NULL && w->live) {
        (void) workers_set_group(c->workers, w, e.group_id, e.worker_count,
                                 e.connected ? 1 : -1);
    }

    e.connection_count = workers_group_total(c->workers, e.group_id);
    ring_push(c->ws_events, &e);

    if (e.connected) {
        c->n.ws_connects++;
    } else {
        c->n.ws_disconnects++;
    }
}


/* applies pending events [0, n) in order and drops them from the queue */
static void
collector_release_first(collector_t *c, size_t n)
{
    size_t           i;
    coll_pending_t  *p;

    for (i = 0; i < n; i++) {
        p = &c->pending[i];
        collector_ws_apply(c, p->pid ? workers_find(c->workers, p->pid,
                                                    p->start_us)
                                     : NULL,
                           &p->ev);
    }

    c->npending -= n;
    memmove(c->pending, c->pending + n, c->npending * sizeof(*c->pending));
}


/*
 * Applies the events that have waited long enough: older than the window
 * by their own clock, or (a worker's clock ahead of ours) held four
 * windows already.  With w, also everything up to that worker's last
 * pending event: a snapshot of it is about to replace its counts.
 */
static void
collector_release(collector_t *c, uint64_t wall_us, uint64_t mono_us,
    const worker_t *w)
{
    size_t           i, n = 0;
    uint64_t         win = c->cfg.ws_reorder_us;

    if (c->npending == 0) {
        return;
    }
    coll_pending_t  *p;

    for (i = 0; i < c->npending; i++) {
        p = &c->pending[i];
        if (p->ev.ts_us + win <= wall_us
            || p->arrived_mono_us + 4 * win <= mono_us
            || (w != NULL && p->pid == w->pid && p->start_us == w->start_us))
        {
            n = i + 1;
        } else if (w == NULL) {
            break;
        }
    }

    if (n > 0) {
        collector_release_first(c, n);
    }
}


static void
collector_ws_event(collector_t *c, worker_t *w, const coll_ws_event_t *ev,
    uint64_t mono_us)
{
    size_t           i;
    coll_pending_t  *p;

    if (c->cfg.ws_reorder_us == 0) {
        collector_ws_apply(c, w, ev);
        return;
    }

    if (c->npending == COLL_PENDING_MAX) {
        collector_release_first(c, 1);
    }

    /* after every event of the same time or older (batches mostly come
     * in order: this is a short walk from the end) */
    i = c->npending;
    while (i > 0 && c->pending[i - 1].ev.ts_us > ev->ts_us) {
        i--;
    }
    memmove(&c->pending[i + 1], &c->pending[i],
            (c->npending - i) * sizeof(*p));
    c->npending++;

    p = &c->pending[i];
    p->ev = *ev;
    p->pid = w != NULL ? w->pid : 0;
    p->start_us = w != NULL ? w->start_us : 0;
    p->arrived_mono_us = mono_us;
}


void
collector_apply(collector_t *c, const coll_batch_t *b, uint64_t wall_us,
    uint64_t mono_us)
{
    worker_t             *w;
    coll_minute_t        *minute;
    const coll_record_t  *r;
    uint32_t              i;

    pthread_mutex_lock(&c->lock);

    workers_expire(c->workers, mono_us, c->cfg.worker_timeout_us);

    collector_release(c, wall_us, mono_us, NULL);

    w = workers_batch(c->workers, b, wall_us, mono_us);
    /* a snapshot replaces the worker's groups: cleared on its first part,
     * after its events still held (the snapshot already counts them) */
    if (w != NULL && b->snapshot && !b->snapshot_cont) {
        collector_release(c, wall_us, mono_us, w);
        workers_clear_groups(w);
    }

    minute = collector_minute(c, wall_us);

    for (i = 0; i < b->count && i < CHAT_WIRE_MAX_RECORDS; i++) {
        r = &b->rec[i];

        switch (r->type) {

        case CHAT_REC_REQUEST:
            collector_request(c, w, minute, &r->u.request);
            break;

        case CHAT_REC_WS_EVENT:
            collector_ws_event(c, w, &r->u.ws_event, mono_us);
            break;

        case CHAT_REC_WS_SNAPSHOT:
            if (w != NULL) {
                (void) workers_set_group(c->workers, w, r->u.ws_count.group_id,
                                         r->u.ws_count.count, 0);
            }
            break;

        case CHAT_REC_CUSTOM:
            ring_push(c->custom, &r->u.custom);
            c->n.custom_total++;
            break;

        case CHAT_REC_CLUSTER:
            if (w != NULL) {
                workers_cluster(w, &r->u.cluster);
            }
            c->n.cluster_records++;
            break;

        default:
            c->n.records_invalid++;
            break;
        }
    }

    collector_release(c, wall_us, mono_us, NULL);

    c->n.records_invalid += b->invalid;
    c->n.batches_applied++;
    if (b->count > c->n.largest_batch) {
        c->n.largest_batch = b->count;
    }
    minute->ws_connections = workers_total_connections(c->workers);

    pthread_mutex_unlock(&c->lock);
}


static int
collector_id_add(char (*ids)[COLL_GROUP_SZ], size_t *n, size_t max,
    const char *id)
{
    size_t  i;

    if (*n == max) {
        return -1;
    }
    for (i = 0; i < *n; i++) {
        if (strcmp(ids[i], id) == 0) {
            return 0;
        }
    }
    snprintf(ids[(*n)++], COLL_GROUP_SZ, "%s", id);
    return 0;
}


size_t
collector_ws_group_ids(collector_t *c, char (*ids)[COLL_GROUP_SZ],
    size_t max, size_t recent)
{
    size_t                  i, j, n = 0, len;
    const worker_t         *w;
    const coll_ws_event_t  *e;

    pthread_mutex_lock(&c->lock);

    len = ring_len(c->ws_events);
    for (i = 0; i < recent && i < len; i++) {
        e = ring_at(c->ws_events, len - 1 - i);
        if (collector_id_add(ids, &n, max, e->group_id) != 0) {
            goto done;
        }
    }

    for (i = 0; (w = workers_at(c->workers, i)) != NULL; i++) {
        if (!w->live) {
            continue;
        }
        for (j = 0; j < w->ngroups; j++) {
            if (collector_id_add(ids, &n, max, w->groups[j].group_id) != 0) {
                goto done;
            }
        }
    }

done:
    pthread_mutex_unlock(&c->lock);
    return n;
}


void
collector_apply_events(collector_t *c, const coll_batch_t *b)
{
    uint32_t  i;

    pthread_mutex_lock(&c->lock);

    for (i = 0; i < b->count && i < CHAT_WIRE_MAX_RECORDS; i++) {
        if (b->rec[i].type == CHAT_REC_CUSTOM) {
            ring_push(c->custom, &b->rec[i].u.custom);
            c->n.custom_total++;

        } else {
            c->n.records_invalid++;
        }
    }

    c->n.records_invalid += b->invalid;
    c->n.batches_applied++;

    pthread_mutex_unlock(&c->lock);
}


void
collector_reject(collector_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->n.batches_rejected++;
    pthread_mutex_unlock(&c->lock);
}


static int
snap_ring(const ring_t *r, size_t elem, void **out, size_t *n)
{
    *n = ring_len(r);
    *out = malloc((*n ? *n : 1) * elem);
    if (*out == NULL) {
        return -1;
    }
    ring_copy_last(r, *n, *out);
    return 0;
}


static int
snap_expand(const coll_request_raw_t *raw, size_t n, coll_request_t **out)
{
    size_t  i;

    *out = malloc((n ? n : 1) * sizeof(coll_request_t));
    if (*out == NULL) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        coll_request_expand(&raw[i], &(*out)[i]);
    }
    return 0;
}


static int
cmp_endpoint(const void *a, const void *b)
{
    const ep_row_t  *x = a, *y = b;

    if (x->stats.count != y->stats.count) {
        return x->stats.count > y->stats.count ? -1 : 1;
    }
    if (x->overflow != y->overflow) {
        return x->overflow ? 1 : -1;
    }
    return strcmp(x->name, y->name);
}


static int
cmp_group_id(const void *a, const void *b)
{
    return strcmp(((const coll_ws_count_t *) a)->group_id,
                  ((const coll_ws_count_t *) b)->group_id);
}


static int
cmp_group_count(const void *a, const void *b)
{
    const coll_ws_count_t  *x = a, *y = b;

    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    return strcmp(x->group_id, y->group_id);
}


/* Sums the per-worker rows of each group; runs on the private copy. */
static void
snap_merge_groups(coll_snapshot_t *s)
{
    size_t  i, n = 0;

    if (s->ngroups == 0) {
        return;
    }

    qsort(s->groups, s->ngroups, sizeof(coll_ws_count_t), cmp_group_id);

    for (i = 0; i < s->ngroups; i++) {
        if (n > 0 && strcmp(s->groups[n - 1].group_id,
                            s->groups[i].group_id) == 0)
        {
            s->groups[n - 1].count += s->groups[i].count;
        } else {
            s->groups[n++] = s->groups[i];
        }
    }

    s->ngroups = n;
    qsort(s->groups, n, sizeof(coll_ws_count_t), cmp_group_count);
}


/*
 * Copies under the lock, in one hold, everything a renderer needs; the
 * sorting and merging run after the lock is released.
 */
coll_snapshot_t *
collector_snapshot(collector_t *c, uint64_t wall_us, uint64_t mono_us)
{
    coll_snapshot_t     *s;
    coll_minute_t       *minute;
    const worker_t      *w;
    size_t               i, ngroups;
    int                  rc = 0;
    coll_request_raw_t  *slow = NULL, *recent = NULL, *errors = NULL;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }

    pthread_mutex_lock(&c->lock);

    collector_release(c, wall_us, mono_us, NULL);
    workers_expire(c->workers, mono_us, c->cfg.worker_timeout_us);
    minute = collector_minute(c, wall_us);
    minute->ws_connections = workers_total_connections(c->workers);

    s->cfg = c->cfg;
    s->start_wall_us = c->start_wall_us;
    s->now_wall_us = wall_us;
    s->uptime_us = mono_us > c->start_mono_us ? mono_us - c->start_mono_us
                                              : 0;
    s->all = c->all;
    s->n = c->n;
    s->ws_group_overflows = workers_group_overflows(c->workers);
    s->ws_total = workers_total_connections(c->workers);
    s->live_workers = workers_live(c->workers);
    workers_totals(c->workers, &s->totals);

    rc |= snap_ring(c->slow, sizeof(coll_request_raw_t),
                    (void **) &slow, &s->nslow);
    rc |= snap_ring(c->recent, sizeof(coll_request_raw_t),
                    (void **) &recent, &s->nrecent);
    rc |= snap_ring(c->errors, sizeof(coll_request_raw_t),
                    (void **) &errors, &s->nerrors);
    rc |= snap_ring(c->ws_events, sizeof(coll_ws_event_t),
                    (void **) &s->ws_events, &s->nws_events);
    rc |= snap_ring(c->custom, sizeof(coll_custom_t),
                    (void **) &s->custom, &s->ncustom);
    rc |= snap_ring(c->history, sizeof(coll_minute_t),
                    (void **) &s->history, &s->nhistory);

    s->nendpoints = ep_table_rows(c->endpoints);
    s->endpoints = malloc((s->nendpoints + 1) * sizeof(ep_row_t));
    if (s->endpoints != NULL) {
        s->nendpoints = ep_table_copy(c->endpoints, s->endpoints,
                                      s->nendpoints);
    } else {
        rc = -1;
    }

    s->nworkers = workers_count(c->workers);
    s->workers = malloc((s->nworkers + 1) * sizeof(worker_t));
    ngroups = 0;
    for (i = 0; i < s->nworkers; i++) {
        w = workers_at(c->workers, i);
        if (w->live) {
            ngroups += w->ngroups;
        }
    }
    s->groups = malloc((ngroups + 1) * sizeof(coll_ws_count_t));

    if (s->workers != NULL && s->groups != NULL) {
        for (i = 0; i < s->nworkers; i++) {
            w = workers_at(c->workers, i);
            s->workers[i] = *w;
            s->workers[i].groups = NULL;
            if (w->live && w->ngroups > 0) {
                memcpy(s->groups + s->ngroups, w->groups,
                       w->ngroups * sizeof(coll_ws_count_t));
                s->ngroups += w->ngroups;
            }
        }
    } else {
        rc = -1;
    }

    pthread_mutex_unlock(&c->lock);

    /* the retained requests as rendered, their strings cleaned */
    if (rc == 0) {
        rc |= snap_expand(slow, s->nslow, &s->slow);
        rc |= snap_expand(recent, s->nrecent, &s->recent);
        rc |= snap_expand(errors, s->nerrors, &s->errors);
    }
    free(slow);
    free(recent);
    free(errors);

    if (rc != 0) {
        collector_snapshot_free(s);
        return NULL;
    }

    for (i = 0; i < s->nslow; i++) {
        s->nslow_very += s->slow[i].very_slow;
    }
    for (i = 0; i < s->nendpoints; i++) {
        if (!s->endpoints[i].overflow) {
            s->endpoints_named++;
        }
    }

    qsort(s->endpoints, s->nendpoints, sizeof(ep_row_t), cmp_endpoint);
    snap_merge_groups(s);
    return s;
}


void
collector_snapshot_free(coll_snapshot_t *s)
{
    if (s == NULL) {
        return;
    }
    free(s->slow);
    free(s->recent);
    free(s->errors);
    free(s->ws_events);
    free(s->custom);
    free(s->history);
    free(s->endpoints);
    free(s->groups);
    free(s->workers);
    free(s);
}
