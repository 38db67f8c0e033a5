/*
 * ngx_http_chat_groups.h - the worker's registry of the groups that have
 * live subscribers here, and the delivery of a group's event to each of
 * them: encoded once into a WebSocket frame, shared by every subscriber.
 *
 * A subscriber is anything that can be sent a frame (a WebSocket today):
 * the registry knows it only through ngx_http_chat_subscriber_t, so it
 * depends on no connection code.
 *
 * A group's events reach its subscribers here in seq order, without a
 * gap: an event that comes before the ones under it is held (at most
 * NGX_HTTP_CHAT_HOLD_MAX a group) for NGX_HTTP_CHAT_GAP_WAIT, then what is
 * still missing is read from the database (ngx_http_chat_catch_up.c); a
 * seq the database says is a gap for good is passed over (an event of
 * such a seq that comes later is dropped, logged and counted: see
 * ngx_http_chat_groups_lost()).  A subscriber
 * is "live" once it follows the group's events from where it stands (its
 * last seq); until then (a resume replaying from the database) the
 * group's events are handed to its hold() instead, in the same order.
 */

#ifndef _NGX_HTTP_CHAT_GROUPS_H_INCLUDED_
#define _NGX_HTTP_CHAT_GROUPS_H_INCLUDED_


#include "ngx_http_chat_module.h"

#include "ngx_http_chat_ws_codec.h"


#define NGX_HTTP_CHAT_GROUP_ID_LEN  NGX_HTTP_CHAT_OID_LEN


typedef struct ngx_http_chat_subscriber_s  ngx_http_chat_subscriber_t;

typedef void (*ngx_http_chat_subscriber_send_pt)(
    ngx_http_chat_subscriber_t *s, ngx_http_chat_frame_t *frame);

/* an event of the group while s is not live (it keeps it, or not) */
typedef void (*ngx_http_chat_subscriber_hold_pt)(
    ngx_http_chat_subscriber_t *s, int64_t seq, ngx_http_chat_frame_t *frame);

struct ngx_http_chat_subscriber_s {
    ngx_queue_t                        link;    /* in its group's list */
    void                              *group;   /* the registry's */
    ngx_http_chat_subscriber_send_pt   send;    /* may close s */
    ngx_http_chat_subscriber_hold_pt   hold;    /* or NULL */
    int64_t                            last;    /* the last seq it has */
    unsigned                           live:1;  /* follows the group */
};


#define NGX_HTTP_CHAT_HOLD_MAX     128   /* early events held a group */
#define NGX_HTTP_CHAT_GAP_WAIT     100   /* ms an early event waits */
#define NGX_HTTP_CHAT_FILL_PAGE    100   /* events read a fill */
#define NGX_HTTP_CHAT_FILL_RETRY   1000  /* ms after a failed fill */
#define NGX_HTTP_CHAT_RECHECK_BURST  16  /* groups a recheck starts ... */
#define NGX_HTTP_CHAT_RECHECK_STEP   10  /* ... every this many ms */
#define NGX_HTTP_CHAT_GAPS_KEPT    8     /* ranges passed, kept a group */

/*
 * A group's event reaches at most NGX_HTTP_CHAT_FANOUT_SLICE of its
 * subscribers here in one turn of the event loop; the rest follow in the
 * next turns, so that one big group does not hold the worker's other
 * connections.  The group's later events wait behind it, at most
 * NGX_HTTP_CHAT_FANOUT_JOBS; past it the ones waiting go out at once.
 */
#define NGX_HTTP_CHAT_FANOUT_SLICE 256
#define NGX_HTTP_CHAT_FANOUT_JOBS  64


typedef struct {
    int64_t                    seq;
    ngx_http_chat_frame_t     *frame;
} ngx_http_chat_held_t;


/* seqs from..to that a fill passed over as gaps for good */
typedef struct {
    int64_t                    from;
    int64_t                    to;
} ngx_http_chat_gap_t;


typedef struct {
    ngx_str_node_t             sn;              /* str: the id, lower case */
    u_char                     id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    ngx_queue_t                subscribers;
    ngx_uint_t                 count;
    ngx_uint_t                 delivering;      /* freed after, not during */

    int64_t                    next;            /* the seq due; 0: none
                                                   live yet */
    int64_t                    highest;         /* the highest seq heard */
    ngx_http_chat_held_t      *held;            /* by seq, NGX_HTTP_CHAT_
                                                   HOLD_MAX, or NULL */
    ngx_uint_t                 nheld;
    ngx_event_t                fill;            /* the gap's wait */
    ngx_http_chat_gap_t        gaps[NGX_HTTP_CHAT_GAPS_KEPT];
                                                /* the last ones passed,
                                                   a ring */
    ngx_uint_t                 ngaps;           /* ranges passed so far */

    /* events being fanned out in slices: jobs[0] from the cursor on */
    ngx_http_chat_held_t      *jobs;            /* NGX_HTTP_CHAT_FANOUT_
                                                   JOBS, or NULL */
    ngx_uint_t                 njobs;
    ngx_uint_t                 job_sent;        /* of jobs[0] */
    ngx_queue_t                cursor;          /* in subscribers */
    ngx_event_t                slice;           /* the next slice */

    unsigned                   filling:1;       /* a read in flight */
    unsigned                   recheck:1;       /* read what follows g->next
                                                   from the database, though
                                                   nothing above it came */
    unsigned                   rechecking:1;    /* the read in flight is
                                                   one */
    unsigned                   walking:1;       /* cursor in the list */
    unsigned                   busy:1;          /* in a walk */
} ngx_http_chat_group_t;


/* a group's first subscriber in this worker came (on) or its last left */
typedef void (*ngx_http_chat_groups_watch_pt)(const u_char *group_id,
    ngx_uint_t on);


void ngx_http_chat_groups_init(ngx_http_chat_groups_watch_pt watch);

/*
 * This worker's subscriber count of the group after the change.  s joins
 * not live; the group, new here, starts after seq "start" (the group's
 * last seq when s looked it up).
 */
ngx_uint_t ngx_http_chat_groups_join(ngx_http_chat_subscriber_t *s,
    const u_char *group_id, int64_t start);
ngx_uint_t ngx_http_chat_groups_leave(ngx_http_chat_subscriber_t *s);

/*
 * The subscriber (its last seq set) follows the group's events from now:
 * NGX_OK; NGX_AGAIN: the group is past s->last already, s catches up from
 * the database first and asks again.
 */
ngx_int_t ngx_http_chat_groups_go_live(ngx_http_chat_subscriber_t *s);

/* an event of a group (JSON text, its seq; 0: none) to every live
 * subscriber here, in seq order; how many it was sent to now */
ngx_uint_t ngx_http_chat_groups_deliver(const u_char *group_id, int64_t seq,
    const u_char *event, size_t len);

/*
 * A transport lost events it cannot name (a gap in another worker's bus
 * numbers, a link to the cluster that was down): each group here that
 * has a seq due (a live subscriber came) reads what follows it from the
 * database, as a fill does, once NGX_HTTP_CHAT_GAP_WAIT has let the
 * events still on their way come; NGX_HTTP_CHAT_RECHECK_BURST groups
 * every NGX_HTTP_CHAT_RECHECK_STEP ms, so that thousands of groups do not
 * fill the thread pool's queue at once.  So the last events of a group
 * reach its subscribers without waiting for the group's next one.  How
 * many groups will read.
 */
ngx_uint_t ngx_http_chat_groups_recheck(void);

/* the events read from the database to fill gaps, since the worker began */
uint64_t ngx_http_chat_groups_gaps_filled(void);

/*
 * The groups with subscribers, one after another (NULL: the first); the
 * order holds while no group is added or removed, that is within one turn
 * of the event loop.
 */
ngx_http_chat_group_t *ngx_http_chat_groups_next(ngx_http_chat_group_t *g);


#endif /* _NGX_HTTP_CHAT_GROUPS_H_INCLUDED_ */
