/*
 * ngx_http_chat_cluster_loop.h - the NATS link of a worker, shared by the
 * transport (ngx_http_chat_cluster.c) and nats.c's side of it
 * (ngx_http_chat_cluster_loop.c: the event loop adapter, the callbacks
 * nats.c calls from its threads, the hand-off to the event loop).
 */

#ifndef _NGX_HTTP_CHAT_CLUSTER_LOOP_H_INCLUDED_
#define _NGX_HTTP_CHAT_CLUSTER_LOOP_H_INCLUDED_


#include <pthread.h>

#include <nats/nats.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"

#include "wire/chat_wire.h"


#define NGX_HTTP_CHAT_CLUSTER_MAGIC     "CHC1"
#define NGX_HTTP_CHAT_CLUSTER_ORIGIN    4       /* uint64_t, the instance */
#define NGX_HTTP_CHAT_CLUSTER_SEQ       12      /* int64_t, in its group */
#define NGX_HTTP_CHAT_CLUSTER_GROUP     20      /* the group's id */
#define NGX_HTTP_CHAT_CLUSTER_HEADER    (20 + NGX_HTTP_CHAT_GROUP_ID_LEN)
#define NGX_HTTP_CHAT_CLUSTER_SUBJECT   "chat.g."

/*
 * "Read what you missed": a worker linked again after a cut (what nats.c
 * still held to send may be lost with its node) or after events it could
 * not publish tells the other hosts: CHR1, its instance id, on
 * NGX_HTTP_CHAT_CLUSTER_TELL; NGX_HTTP_CHAT_CLUSTER_TELLS times, at once,
 * then 1, 4 and 16 x NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN apart, because a
 * node back from an outage may not route to the others yet.
 */
#define NGX_HTTP_CHAT_CLUSTER_TELL        "chat.recheck"
#define NGX_HTTP_CHAT_CLUSTER_TELL_MAGIC  "CHR1"
#define NGX_HTTP_CHAT_CLUSTER_TELL_LEN    12
#define NGX_HTTP_CHAT_CLUSTER_TELLS       4
#define NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN  1000      /* ms */
#define NGX_HTTP_CHAT_CLUSTER_NO_SOCK   ((natsSock) -1)

#define NGX_HTTP_CHAT_CLUSTER_TURN      256     /* events a loop turn */
#define NGX_HTTP_CHAT_CLUSTER_EVENT_MAX 65536   /* an event's JSON, bytes */
#define NGX_HTTP_CHAT_CLUSTER_READS     16      /* reads a loop turn */


typedef struct ngx_http_chat_cluster_item_s  ngx_http_chat_cluster_item_t;

struct ngx_http_chat_cluster_item_s {
    ngx_http_chat_cluster_item_t  *next;
    int64_t                        seq;
    size_t                         len;
    u_char                         group[NGX_HTTP_CHAT_GROUP_ID_LEN];
    u_char                         event[1];
};


typedef struct {
    ngx_str_node_t                 sn;
    u_char                         id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    natsSubscription              *sub;             /* NULL: not yet */
    unsigned                       unwanted:1;      /* to unsubscribe once
                                                       linked again */
} ngx_http_chat_cluster_sub_t;


typedef struct {
    ngx_http_chat_main_conf_t     *cmcf;
    ngx_log_t                     *log;
    pthread_t                      loop_thread;
    uint64_t                       instance;

    /* shared with nats.c's threads, under lock */
    pthread_mutex_t                lock;
    int                            wake_fd;         /* eventfd */
    natsSock                       sock;            /* nats.c's, -1: none */
    int                            sock_dup;        /* ours, made at the
                                                       attach, not yet
                                                       watched; -1: none */
    int                            dup_errno;       /* dup() failed */
    ngx_uint_t                     attaches;        /* each attach */
    unsigned                       want_read:1;
    unsigned                       want_write:1;
    unsigned                       linked:1;        /* a socket is being
                                                       read: see publish */
    ngx_uint_t                     state;           /* chat_wire_cluster_
                                                       state_e */
    ngx_uint_t                     state_changes;
    ngx_uint_t                     reconnects;
    char                           error[CHAT_WIRE_ERROR_LEN];
    ngx_uint_t                     errors;          /* each new error */
    ngx_uint_t                     connect_done;
    natsStatus                     connect_status;
    natsConnection                *connect_nc;
    ngx_http_chat_cluster_item_t  *head;            /* received, in order */
    ngx_http_chat_cluster_item_t **tail;
    ngx_uint_t                     queued;
    uint64_t                       thread_full;     /* queue full */
    uint64_t                       thread_bad;      /* malformed */
    uint64_t                       thread_own;      /* this nginx's */
    uint64_t                       told;            /* CHR1 of other hosts */

    /* the event loop's */
    ngx_connection_t              *wake_conn;
    ngx_connection_t              *sock_conn;       /* our dup of sock */
    ngx_uint_t                     attaches_seen;
    ngx_uint_t                     state_seen;
    ngx_uint_t                     errors_seen;
    ngx_uint_t                     logged_state;
    natsOptions                   *opts;
    natsConnection                *nc;
    pthread_t                      connector;
    unsigned                       connector_running:1;
    unsigned                       nats_open:1;
    unsigned                       mutex:1;

    ngx_rbtree_t                   subs;            /* by group */
    ngx_rbtree_node_t              sentinel;

    u_char                        *out;             /* a publish's buffer */
    size_t                         out_size;

    uint64_t                       events_out;
    uint64_t                       events_in;
    uint64_t                       dropped;         /* the loop's */
    uint64_t                       full_seen;       /* thread_full, */
    uint64_t                       bad_seen;        /* thread_bad logged */
    uint64_t                       full_rechecked;  /* thread_full when the
                                                       groups last read
                                                       what they missed */
    ngx_uint_t                     reconnects_rechecked;  /* the same, for
                                                       reconnects */
    uint64_t                       told_seen;
    uint64_t                       dropped_told;    /* dropped when the
                                                       others were told */
    natsSubscription              *tell_sub;
    ngx_event_t                    tell_ev;         /* the next tell */
    ngx_event_t                    told_ev;         /* the next recheck
                                                       others may ask */
    ngx_uint_t                     tells_left;
    time_t                         full_logged;
    time_t                         bad_logged;
    char                           server[CHAT_WIRE_SERVER_LEN];
} ngx_http_chat_cluster_t;


extern ngx_http_chat_cluster_t  ngx_http_chat_nats_link;


/* ngx_http_chat_cluster_loop.c */
void ngx_http_chat_cluster_wake(ngx_http_chat_cluster_t *cl);
void ngx_http_chat_cluster_apply(ngx_http_chat_cluster_t *cl);
void ngx_http_chat_cluster_unwatch(ngx_http_chat_cluster_t *cl);
natsStatus ngx_http_chat_cluster_ev_attach(void **userData,
    void *loop, natsConnection *nc, natsSock socket);
natsStatus ngx_http_chat_cluster_ev_read(void *userData, bool add);
natsStatus ngx_http_chat_cluster_ev_write(void *userData, bool add);
natsStatus ngx_http_chat_cluster_ev_detach(void *userData);
void ngx_http_chat_cluster_on_message(natsConnection *nc,
    natsSubscription *sub, natsMsg *msg, void *closure);
void ngx_http_chat_cluster_on_tell(natsConnection *nc,
    natsSubscription *sub, natsMsg *msg, void *closure);
void ngx_http_chat_cluster_on_connected(natsConnection *nc,
    void *closure);
void ngx_http_chat_cluster_on_disconnected(natsConnection *nc,
    void *closure);
void ngx_http_chat_cluster_on_reconnected(natsConnection *nc,
    void *closure);
void ngx_http_chat_cluster_on_closed(natsConnection *nc,
    void *closure);
void ngx_http_chat_cluster_on_error(natsConnection *nc,
    natsSubscription *sub, natsStatus err, void *closure);
void ngx_http_chat_cluster_set_state(ngx_http_chat_cluster_t *cl,
    ngx_uint_t state, natsConnection *nc, const char *error);
const char *ngx_http_chat_cluster_error_text(const char *text);

/* ngx_http_chat_cluster.c: the state changes, logged (the event loop) */
void ngx_http_chat_cluster_states(ngx_http_chat_cluster_t *cl);


#endif /* _NGX_HTTP_CHAT_CLUSTER_LOOP_H_INCLUDED_ */
