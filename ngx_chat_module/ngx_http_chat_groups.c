/*
 * ngx_http_chat_groups.c - the worker's groups and their subscribers: an
 * rbtree of groups keyed by id (nginx's ngx_str_rbtree), each with a list
 * of subscribers.  An event is encoded once into a WebSocket frame and
 * handed to every live subscriber of its group, in seq order (see
 * ngx_http_chat_groups.h: early events are held, gaps filled from the
 * database); each delivery is reported to the metrics as a
 * "message_broadcast" event.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_catch_up.h"
#include "ngx_http_chat_page_cache.h"


/* a walk's budget without a bound */
#define NGX_HTTP_CHAT_FANOUT_ALL  ((ngx_uint_t) -1)


typedef struct {
    ngx_rbtree_t                    tree;
    ngx_rbtree_node_t               sentinel;
    ngx_http_chat_groups_watch_pt   watch;
} ngx_http_chat_groups_t;


static ngx_http_chat_group_t *ngx_http_chat_groups_find(const u_char *id);
static ngx_uint_t ngx_http_chat_groups_send(ngx_http_chat_group_t *g,
    int64_t seq, ngx_http_chat_frame_t *frame);
static ngx_uint_t ngx_http_chat_groups_walk(ngx_http_chat_group_t *g,
    int64_t seq, ngx_http_chat_frame_t *frame, ngx_uint_t *budget,
    ngx_uint_t *sent);
static ngx_inline ngx_uint_t ngx_http_chat_groups_one(
    ngx_http_chat_subscriber_t *s, int64_t seq,
    ngx_http_chat_frame_t *frame);
static void ngx_http_chat_groups_run(ngx_http_chat_group_t *g,
    ngx_uint_t budget);
static void ngx_http_chat_groups_slice_handler(ngx_event_t *ev);
static void ngx_http_chat_groups_drop_jobs(ngx_http_chat_group_t *g);
static void ngx_http_chat_groups_hold(ngx_http_chat_group_t *g, int64_t seq,
    const u_char *event, size_t len);
static void ngx_http_chat_groups_release_held(ngx_http_chat_group_t *g);
static void ngx_http_chat_groups_fill_handler(ngx_event_t *ev);
static void ngx_http_chat_groups_filled(void *data, ngx_int_t rc,
    ngx_http_chat_event_page_t *page, const char *error);
static void ngx_http_chat_groups_passed(ngx_http_chat_group_t *g,
    int64_t from, int64_t to);
static void ngx_http_chat_groups_lost(ngx_http_chat_group_t *g,
    int64_t seq);
static void ngx_http_chat_groups_maybe_free(ngx_http_chat_group_t *g);
static void ngx_http_chat_groups_report(const u_char *id, ngx_uint_t n);


static ngx_http_chat_groups_t  ngx_http_chat_groups;

/* events read from the database to fill gaps, for the cluster link's
 * record (ngx_http_chat_cluster_link()) */
static uint64_t                ngx_http_chat_groups_filled_total;

/* events that came for a seq this worker had passed as a gap for good:
 * not delivered live (ngx_http_chat_groups_lost()) */
static uint64_t                ngx_http_chat_groups_lost_total;

/* the last recheck: when, and how many groups it flagged */
static ngx_msec_t              ngx_http_chat_groups_rechecked_at;
static ngx_uint_t              ngx_http_chat_groups_rechecked;
static ngx_uint_t              ngx_http_chat_groups_rechecks;


void
ngx_http_chat_groups_init(ngx_http_chat_groups_watch_pt watch)
{
    ngx_rbtree_init(&ngx_http_chat_groups.tree,
                    &ngx_http_chat_groups.sentinel,
                    ngx_str_rbtree_insert_value);

    ngx_http_chat_groups.watch = watch;
}


ngx_uint_t
ngx_http_chat_groups_join(ngx_http_chat_subscriber_t *s,
    const u_char *group_id, int64_t start)
{
    u_char                 id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    ngx_http_chat_group_t  *g;

    ngx_strlow(id, (u_char *) group_id, NGX_HTTP_CHAT_GROUP_ID_LEN);

    g = ngx_http_chat_groups_find(id);

    if (g == NULL) {
        g = ngx_calloc(sizeof(ngx_http_chat_group_t), ngx_cycle->log);
        if (g == NULL) {
            return 0;
        }

        ngx_memcpy(g->id, id, NGX_HTTP_CHAT_GROUP_ID_LEN);
        g->sn.str.data = g->id;
        g->sn.str.len = NGX_HTTP_CHAT_GROUP_ID_LEN;
        g->sn.node.key = ngx_crc32_short(g->id, NGX_HTTP_CHAT_GROUP_ID_LEN);
        ngx_queue_init(&g->subscribers);

        g->fill.handler = ngx_http_chat_groups_fill_handler;
        g->fill.data = g;
        g->fill.log = ngx_cycle->log;
        g->fill.cancelable = 1;

        g->slice.handler = ngx_http_chat_groups_slice_handler;
        g->slice.data = g;
        g->slice.log = ngx_cycle->log;

        ngx_rbtree_insert(&ngx_http_chat_groups.tree, &g->sn.node);

        if (ngx_http_chat_groups.watch) {
            ngx_http_chat_groups.watch(g->id, 1);
        }
    }

    if (g->next == 0) {
        g->next = start + 1;
    }

    /* while an event is fanned out in slices, a newcomer joins the part
     * it has passed: as if it came after that event, like any other */

    ngx_queue_insert_tail(g->walking ? &g->cursor : &g->subscribers,
                          &s->link);
    s->group = g;
    s->live = 0;

    return ++g->count;
}


ngx_uint_t
ngx_http_chat_groups_leave(ngx_http_chat_subscriber_t *s)
{
    ngx_uint_t              count;
    ngx_http_chat_group_t  *g;

    g = s->group;
    if (g == NULL) {
        return 0;
    }

    ngx_queue_remove(&s->link);
    s->group = NULL;

    count = --g->count;

    ngx_http_chat_groups_maybe_free(g);

    return count;
}


ngx_int_t
ngx_http_chat_groups_go_live(ngx_http_chat_subscriber_t *s)
{
    ngx_http_chat_group_t  *g;

    g = s->group;

    if (g == NULL) {
        return NGX_ERROR;
    }

    if (g->next - 1 > s->last) {
        return NGX_AGAIN;
    }

    /* events the group has yet to deliver up to s->last pass s over */

    s->live = 1;

    return NGX_OK;
}


ngx_uint_t
ngx_http_chat_groups_deliver(const u_char *group_id, int64_t seq,
    const u_char *event, size_t len)
{
    u_char                  id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    ngx_uint_t              n;
    bson_oid_t              oid;
    ngx_http_chat_held_t   *h;
    ngx_http_chat_group_t  *g;
    ngx_http_chat_frame_t  *frame;

    ngx_strlow(id, (u_char *) group_id, NGX_HTTP_CHAT_GROUP_ID_LEN);

    /* an event of another worker or host: a cached page older than it
     * goes (the storing worker dropped it already, if it is one of ours) */

    if (seq > 0 && bson_oid_is_valid((const char *) id,
                                     NGX_HTTP_CHAT_GROUP_ID_LEN))
    {
        bson_oid_init_from_string(&oid, (const char *) id);
        ngx_http_chat_page_cache_event(&oid, seq);
    }

    g = ngx_http_chat_groups_find(id);
    if (g == NULL) {
        return 0;
    }

    if (seq > 0) {
        if (seq < g->next) {
            ngx_http_chat_groups_lost(g, seq);  /* if it was passed */
            return 0;                       /* delivered already */
        }

        if (seq > g->highest) {
            g->highest = seq;
        }

        if (seq > g->next) {
            ngx_http_chat_groups_hold(g, seq, event, len);
            return 0;
        }
    }

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, event, len);
    if (frame == NULL) {
        return 0;
    }

    g->delivering++;

    n = ngx_http_chat_groups_send(g, seq, frame);
    ngx_http_chat_frame_release(frame);

    /* the held events it was the last missing one for */

    while (g->nheld && g->held[0].seq <= g->next) {
        h = &g->held[0];

        if (h->seq == g->next) {
            (void) ngx_http_chat_groups_send(g, h->seq, h->frame);

        } else {
            ngx_http_chat_groups_lost(g, h->seq);
        }

        ngx_http_chat_frame_release(h->frame);
        ngx_memmove(g->held, g->held + 1,
                    --g->nheld * sizeof(ngx_http_chat_held_t));
    }

    if (g->nheld == 0 && g->highest < g->next && !g->recheck
        && g->fill.timer_set)
    {
        ngx_del_timer(&g->fill);
    }

    g->delivering--;

    ngx_http_chat_groups_maybe_free(g);

    return n;
}


ngx_uint_t
ngx_http_chat_groups_recheck(void)
{
    ngx_uint_t              n;
    ngx_http_chat_group_t  *g;

    /* asked again (a gap seen at each bus message of an overflow, each
     * turn of a full cluster hand-off) before the last one's reads began:
     * those reads cover it, without another walk of every group */

    if (ngx_http_chat_groups_rechecks
        && ngx_current_msec - ngx_http_chat_groups_rechecked_at
           < NGX_HTTP_CHAT_GAP_WAIT)
    {
        return ngx_http_chat_groups_rechecked;
    }

    n = 0;

    for (g = ngx_http_chat_groups_next(NULL);
         g;
         g = ngx_http_chat_groups_next(g))
    {
        if (g->count == 0 || g->next == 0) {
            continue;                       /* no seq due yet */
        }

        g->recheck = 1;

        if (!g->filling && !g->fill.timer_set) {
            ngx_add_timer(&g->fill, NGX_HTTP_CHAT_GAP_WAIT
                          + n / NGX_HTTP_CHAT_RECHECK_BURST
                            * NGX_HTTP_CHAT_RECHECK_STEP);
        }

        n++;
    }

    ngx_http_chat_groups_rechecks++;
    ngx_http_chat_groups_rechecked_at = ngx_current_msec;
    ngx_http_chat_groups_rechecked = n;

    return n;
}


uint64_t
ngx_http_chat_groups_gaps_filled(void)
{
    return ngx_http_chat_groups_filled_total;
}


ngx_http_chat_group_t *
ngx_http_chat_groups_next(ngx_http_chat_group_t *g)
{
    ngx_rbtree_node_t  *node, *root, *sentinel;

    root = ngx_http_chat_groups.tree.root;
    sentinel = ngx_http_chat_groups.tree.sentinel;

    if (root == sentinel) {
        return NULL;
    }

    node = g ? ngx_rbtree_next(&ngx_http_chat_groups.tree, &g->sn.node)
             : ngx_rbtree_min(root, sentinel);

    return (ngx_http_chat_group_t *) node;
}


/*
 * The event of seq (0: none) to every live subscriber short of it, in
 * the group's order: the first NGX_HTTP_CHAT_FANOUT_SLICE subscribers
 * now, the rest in the next turns of the event loop; behind the events
 * still being fanned out, if any.  The event counts as delivered to the
 * group at once (g->next).  How many it was sent to now.
 */

static ngx_uint_t
ngx_http_chat_groups_send(ngx_http_chat_group_t *g, int64_t seq,
    ngx_http_chat_frame_t *frame)
{
    ngx_uint_t             n, budget;
    ngx_queue_t           *q, *next;
    ngx_http_chat_held_t  *job;

    if (seq > 0) {
        g->next = seq + 1;
    }

    if (g->busy) {
        /*
         * From a subscriber's send, in a walk (nothing does it today): at
         * once, over the whole list, as the fan-out always did
         */

        n = 0;

        for (q = ngx_queue_head(&g->subscribers);
             q != ngx_queue_sentinel(&g->subscribers);
             q = next)
        {
            next = ngx_queue_next(q);

            if (q != &g->cursor) {
                n += ngx_http_chat_groups_one(
                         ngx_queue_data(q, ngx_http_chat_subscriber_t, link),
                         seq, frame);
            }
        }

        ngx_http_chat_groups_report(g->id, n);
        return n;
    }

    if (g->njobs == NGX_HTTP_CHAT_FANOUT_JOBS) {
        /* too many waiting: they all go now, the bound is kept */
        ngx_http_chat_groups_run(g, NGX_HTTP_CHAT_FANOUT_ALL);
    }

    if (g->njobs) {
        job = &g->jobs[g->njobs++];
        job->seq = seq;
        job->frame = frame;
        frame->refs++;
        return 0;
    }

    n = 0;
    budget = NGX_HTTP_CHAT_FANOUT_SLICE;

    ngx_queue_insert_head(&g->subscribers, &g->cursor);
    g->walking = 1;

    if (ngx_http_chat_groups_walk(g, seq, frame, &budget, &n)) {
        ngx_http_chat_groups_report(g->id, n);
        return n;
    }

    if (g->jobs == NULL) {
        g->jobs = ngx_alloc(NGX_HTTP_CHAT_FANOUT_JOBS
                            * sizeof(ngx_http_chat_held_t), ngx_cycle->log);

        if (g->jobs == NULL) {
            /* no slices, then: the rest now */
            budget = NGX_HTTP_CHAT_FANOUT_ALL;
            (void) ngx_http_chat_groups_walk(g, seq, frame, &budget, &n);
            ngx_http_chat_groups_report(g->id, n);
            return n;
        }
    }

    g->jobs[0].seq = seq;
    g->jobs[0].frame = frame;
    frame->refs++;
    g->njobs = 1;
    g->job_sent = n;

    ngx_post_event(&g->slice, &ngx_posted_next_events);

    return n;
}


/*
 * The event to the subscribers after the cursor, at most *budget of them;
 * 1 when the list is done (the cursor out of it).  The cursor moves past
 * a subscriber before it is sent to: any subscriber may leave meanwhile
 * (a slow one is closed), the walk goes on from the cursor.
 */

static ngx_uint_t
ngx_http_chat_groups_walk(ngx_http_chat_group_t *g, int64_t seq,
    ngx_http_chat_frame_t *frame, ngx_uint_t *budget, ngx_uint_t *sent)
{
    ngx_queue_t  *q;

    g->busy = 1;

    for ( ;; ) {
        q = ngx_queue_next(&g->cursor);

        if (q == ngx_queue_sentinel(&g->subscribers)) {
            ngx_queue_remove(&g->cursor);
            g->walking = 0;
            g->busy = 0;
            return 1;
        }

        if (*budget == 0) {
            g->busy = 0;
            return 0;
        }

        (*budget)--;

        ngx_queue_remove(&g->cursor);
        ngx_queue_insert_after(q, &g->cursor);

        *sent += ngx_http_chat_groups_one(
                     ngx_queue_data(q, ngx_http_chat_subscriber_t, link),
                     seq, frame);
    }
}


/* the event to one subscriber: 1 if sent, 0 if held or passed over */

static ngx_inline ngx_uint_t
ngx_http_chat_groups_one(ngx_http_chat_subscriber_t *s, int64_t seq,
    ngx_http_chat_frame_t *frame)
{
    if (!s->live) {
        if (s->hold && seq > 0) {
            s->hold(s, seq, frame);
        }

        return 0;
    }

    if (seq > 0) {
        if (seq <= s->last) {
            return 0;
        }

        s->last = seq;
    }

    s->send(s, frame);

    return 1;
}


/* the events waiting to be fanned out, over at most budget subscribers */

static void
ngx_http_chat_groups_run(ngx_http_chat_group_t *g, ngx_uint_t budget)
{
    ngx_http_chat_held_t  *job;

    while (g->njobs) {
        job = &g->jobs[0];

        if (!g->walking) {
            ngx_queue_insert_head(&g->subscribers, &g->cursor);
            g->walking = 1;
            g->job_sent = 0;
        }

        if (!ngx_http_chat_groups_walk(g, job->seq, job->frame, &budget,
                                       &g->job_sent))
        {
            return;
        }

        ngx_http_chat_groups_report(g->id, g->job_sent);
        ngx_http_chat_frame_release(job->frame);

        ngx_memmove(g->jobs, g->jobs + 1,
                    --g->njobs * sizeof(ngx_http_chat_held_t));
    }
}


static void
ngx_http_chat_groups_slice_handler(ngx_event_t *ev)
{
    ngx_http_chat_group_t  *g;

    g = ev->data;

    g->delivering++;

    ngx_http_chat_groups_run(g, NGX_HTTP_CHAT_FANOUT_SLICE);

    g->delivering--;

    if (g->njobs) {
        /* ngx_posted_next_events: after the connections ready now */
        ngx_post_event(&g->slice, &ngx_posted_next_events);
    }

    ngx_http_chat_groups_maybe_free(g);
}


/* the group has no subscriber left: what was still to go goes nowhere */

static void
ngx_http_chat_groups_drop_jobs(ngx_http_chat_group_t *g)
{
    while (g->njobs) {
        ngx_http_chat_frame_release(g->jobs[--g->njobs].frame);
    }

    if (g->walking) {
        ngx_queue_remove(&g->cursor);
        g->walking = 0;
    }

    if (g->slice.posted) {
        ngx_delete_posted_event(&g->slice);
    }

    if (g->jobs) {
        ngx_free(g->jobs);
        g->jobs = NULL;
    }
}


/*
 * An event ahead of the one due waits, in seq order, for the ones under
 * it.  At NGX_HTTP_CHAT_HOLD_MAX the highest is let go: g->highest still
 * says it was heard, and the fill reads it from the database.
 */

static void
ngx_http_chat_groups_hold(ngx_http_chat_group_t *g, int64_t seq,
    const u_char *event, size_t len)
{
    ngx_uint_t              i;
    ngx_http_chat_frame_t  *frame;

    if (!g->fill.timer_set && !g->filling) {
        ngx_add_timer(&g->fill, NGX_HTTP_CHAT_GAP_WAIT);
    }

    if (g->held == NULL) {
        g->held = ngx_alloc(NGX_HTTP_CHAT_HOLD_MAX
                            * sizeof(ngx_http_chat_held_t), ngx_cycle->log);
        if (g->held == NULL) {
            return;                         /* the fill reads it */
        }
    }

    for (i = g->nheld; i > 0 && g->held[i - 1].seq > seq; i--) {
        /* void */
    }

    if ((i > 0 && g->held[i - 1].seq == seq)
        || i == NGX_HTTP_CHAT_HOLD_MAX)
    {
        return;                             /* a duplicate, or too far */
    }

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, event, len);
    if (frame == NULL) {
        return;
    }

    if (g->nheld == NGX_HTTP_CHAT_HOLD_MAX) {
        ngx_http_chat_frame_release(g->held[--g->nheld].frame);
    }

    ngx_memmove(&g->held[i + 1], &g->held[i],
                (g->nheld - i) * sizeof(ngx_http_chat_held_t));

    g->held[i].seq = seq;
    g->held[i].frame = frame;
    g->nheld++;
}


static void
ngx_http_chat_groups_release_held(ngx_http_chat_group_t *g)
{
    while (g->nheld) {
        ngx_http_chat_frame_release(g->held[--g->nheld].frame);
    }

    if (g->held) {
        ngx_free(g->held);
        g->held = NULL;
    }
}


/* the gap outlived NGX_HTTP_CHAT_GAP_WAIT: the database has the rest */

static void
ngx_http_chat_groups_fill_handler(ngx_event_t *ev)
{
    ngx_int_t               rc;
    ngx_http_chat_group_t  *g;

    g = ev->data;

    if (g->filling || g->next == 0
        || (g->highest < g->next && !g->recheck))
    {
        return;
    }

    rc = ngx_http_chat_catch_up_read(g->id, g->next - 1,
                                     NGX_HTTP_CHAT_FILL_PAGE,
                                     ngx_http_chat_groups_filled, g,
                                     ngx_cycle->log);

    if (rc == NGX_OK) {
        g->filling = 1;
        g->rechecking = g->recheck;
        g->recheck = 0;
        return;
    }

    ngx_add_timer(&g->fill, NGX_HTTP_CHAT_FILL_RETRY);
}


static void
ngx_http_chat_groups_filled(void *data, ngx_int_t rc,
    ngx_http_chat_event_page_t *page, const char *error)
{
    int64_t                      from;
    ngx_uint_t                   i, n;
    ngx_http_chat_group_t       *g;
    ngx_http_chat_frame_t       *frame;
    ngx_http_chat_event_item_t  *e;

    g = data;
    g->filling = 0;

    /* a recheck read that failed, or stopped at a full page, goes on (one
     * asked for while this read ran is still asked for) */

    if (g->rechecking && (rc != NGX_OK || page->has_more)) {
        g->recheck = 1;
    }

    g->rechecking = 0;

    if (g->count == 0) {
        ngx_http_chat_groups_maybe_free(g);
        return;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat group %*s: events from seq %L on cannot be "
                      "read, retrying in %d ms: %s",
                      (size_t) NGX_HTTP_CHAT_GROUP_ID_LEN, g->id, g->next,
                      NGX_HTTP_CHAT_FILL_RETRY, error);

        ngx_add_timer(&g->fill, NGX_HTTP_CHAT_FILL_RETRY);
        return;
    }

    from = g->next;
    n = 0;

    g->delivering++;

    for (i = 0; i < page->nitems; i++) {
        e = &page->items[i];

        if (e->seq < g->next) {
            ngx_http_chat_groups_lost(g, e->seq);
            continue;
        }

        frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT,
                                           e->json.data, e->json.len);
        if (frame == NULL) {
            break;
        }

        /* the seqs the page went past to it are gaps for good */
        ngx_http_chat_groups_passed(g, g->next, e->seq - 1);

        (void) ngx_http_chat_groups_send(g, e->seq, frame);
        ngx_http_chat_frame_release(frame);
        n++;
    }

    /* the seqs the walk passed up to there are gaps for good */

    if (page->next_after >= g->next) {
        ngx_http_chat_groups_passed(g, g->next, page->next_after);
        g->next = page->next_after + 1;
    }

    /* the held ones the page covered, then those it made due */

    while (g->nheld && g->held[0].seq <= g->next) {
        if (g->held[0].seq == g->next) {
            (void) ngx_http_chat_groups_send(g, g->held[0].seq,
                                             g->held[0].frame);

        } else {
            ngx_http_chat_groups_lost(g, g->held[0].seq);
        }

        ngx_http_chat_frame_release(g->held[0].frame);
        ngx_memmove(g->held, g->held + 1,
                    --g->nheld * sizeof(ngx_http_chat_held_t));
    }

    g->delivering--;

    ngx_http_chat_groups_filled_total += n;

    if (n) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "chat group %*s: %ui event(s) from seq %L read from "
                      "the database to fill a gap",
                      (size_t) NGX_HTTP_CHAT_GROUP_ID_LEN, g->id, n, from);
    }

    if (g->count == 0) {
        ngx_http_chat_groups_maybe_free(g);
        return;
    }

    if ((g->highest >= g->next || g->recheck) && !g->fill.timer_set) {
        /* a full page: the next one now; else the rest is still being
         * written (or not yet a gap for good): wait again */
        ngx_add_timer(&g->fill, page->has_more ? 1 : NGX_HTTP_CHAT_GAP_WAIT);
    }
}


/* seqs from..to passed over as gaps for good (a ring of the last few) */

static void
ngx_http_chat_groups_passed(ngx_http_chat_group_t *g, int64_t from,
    int64_t to)
{
    ngx_http_chat_gap_t  *gap;

    if (to < from) {
        return;
    }

    gap = &g->gaps[g->ngaps++ % NGX_HTTP_CHAT_GAPS_KEPT];
    gap->from = from;
    gap->to = to;
}


/*
 * An event below the seq due: delivered already (a fill read it before
 * its bus message came: nothing to say), or, if it is of a seq passed
 * over as a gap for good, an event that is stored but that no live
 * subscriber of this worker will get (the log's writers and readers make
 * that impossible but for a write that lands later than the settle time:
 * docs/ARCHITECTURE.md, "Known limits").  Never delivered out of order:
 * logged, with this worker's count; a client that reconnects with
 * "since" below it gets it from the database.
 */

static void
ngx_http_chat_groups_lost(ngx_http_chat_group_t *g, int64_t seq)
{
    ngx_uint_t            i, n;
    ngx_http_chat_gap_t  *gap;

    n = ngx_min(g->ngaps, NGX_HTTP_CHAT_GAPS_KEPT);

    for (i = 0; i < n; i++) {
        gap = &g->gaps[i];

        if (seq >= gap->from && seq <= gap->to) {
            break;
        }
    }

    if (i == n) {
        return;
    }

    ngx_http_chat_groups_lost_total++;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat group %*s: event seq %L came after this worker "
                  "passed it as a gap for good (seqs %L to %L): not "
                  "delivered live, %uL so far",
                  (size_t) NGX_HTTP_CHAT_GROUP_ID_LEN, g->id, seq,
                  gap->from, gap->to, ngx_http_chat_groups_lost_total);
}


static ngx_http_chat_group_t *
ngx_http_chat_groups_find(const u_char *id)
{
    ngx_str_t  name;

    name.data = (u_char *) id;
    name.len = NGX_HTTP_CHAT_GROUP_ID_LEN;

    return (ngx_http_chat_group_t *)
               ngx_str_rbtree_lookup(&ngx_http_chat_groups.tree, &name,
                                     ngx_crc32_short(name.data, name.len));
}


static void
ngx_http_chat_groups_maybe_free(ngx_http_chat_group_t *g)
{
    if (g->count || g->delivering || g->filling) {
        return;
    }

    ngx_rbtree_delete(&ngx_http_chat_groups.tree, &g->sn.node);

    ngx_http_chat_groups_drop_jobs(g);

    if (g->fill.timer_set) {
        ngx_del_timer(&g->fill);
    }

    ngx_http_chat_groups_release_held(g);

    if (ngx_http_chat_groups.watch) {
        ngx_http_chat_groups.watch(g->id, 0);
    }

    ngx_free(g);
}


/* every delivery is a "message_broadcast" event for the dashboard */

static void
ngx_http_chat_groups_report(const u_char *id, ngx_uint_t n)
{
    u_char              count[NGX_INT_T_LEN];
    ngx_str_t           type = ngx_string("message_broadcast");
    ngx_http_chat_kv_t  kv[2];

    ngx_str_set(&kv[0].key, "group_id");
    kv[0].value.data = (u_char *) id;
    kv[0].value.len = NGX_HTTP_CHAT_GROUP_ID_LEN;
    ngx_str_set(&kv[1].key, "recipient_count");
    kv[1].value.data = count;
    kv[1].value.len = ngx_sprintf(count, "%ui", n) - count;

    ngx_http_chat_metrics_custom(&type, kv, 2);
}
