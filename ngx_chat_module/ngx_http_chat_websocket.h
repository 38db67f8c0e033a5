/*
 * ngx_http_chat_websocket.h - the WebSocket path: RFC 6455 on the server
 * side, from the handshake at /api/chat/ws/{group_id} to the close.
 *
 *   ngx_http_chat_ws_handshake.c   the opening handshake and the upgrade
 *   ngx_http_chat_ws_connection.c  frames in and out, pings, closing
 *   ngx_http_chat_ws_messages.c    chat messages sent over the WebSocket
 *   ngx_http_chat_ws_resume.c      where its events start (since=)
 *   ngx_http_chat_ws_codec.c       the protocol without I/O
 *
 * After the 101 response the HTTP request is freed (and logged) and the
 * connection belongs to an ngx_http_chat_ws_t of its own: an idle
 * subscriber costs its connection, its connection pool and this struct.
 */

#ifndef _NGX_HTTP_CHAT_WEBSOCKET_H_INCLUDED_
#define _NGX_HTTP_CHAT_WEBSOCKET_H_INCLUDED_


#include "ngx_http_chat_module.h"
#include "ngx_http_chat_ws_codec.h"
#include "ngx_http_chat_groups.h"


typedef struct ngx_http_chat_ws_s  ngx_http_chat_ws_t;

struct ngx_http_chat_ws_s {
    ngx_connection_t          *connection;
    ngx_http_chat_loc_conf_t  *conf;

    ngx_http_chat_subscriber_t subscriber;      /* in its group */
    u_char                     group_id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    ngx_str_t                  group;           /* group_id, as a string */

    ngx_str_t                  user_id;
    u_char                     user_buf[64];
    ngx_str_t                  cid;
    u_char                     cid_buf[NGX_HTTP_CHAT_CID_MAX];

    /* out: shared frames, bounded by conf->ws_send_queue */
    ngx_queue_t                out;
    ngx_uint_t                 out_count;
    size_t                     out_pos;         /* sent of the head frame */

    /* in: an incomplete frame, a message being reassembled */
    u_char                    *partial;
    size_t                     partial_len;
    size_t                     partial_size;
    u_char                    *msg;
    size_t                     msg_len;
    ngx_uint_t                 msg_opcode;

    ngx_event_t                timer;           /* ping, idle, close wait */
    ngx_msec_t                 last_recv;

    int64_t                    since;           /* -1: not given */
    int64_t                    start;           /* the group's last seq
                                                   at the handshake */
    ngx_event_t                resume;          /* the next page */
    ngx_uint_t                 replayed;        /* events, since= */
    ngx_http_chat_held_t      *backlog;         /* the group's, while
                                                   replaying */
    ngx_uint_t                 nbacklog;
    ngx_uint_t                 restarts;        /* of the backlog */
    ngx_uint_t                 read_restarts;   /* at the read's post */
    ngx_http_chat_held_t      *page;            /* read, not yet sent */
    ngx_uint_t                 npage;
    ngx_uint_t                 page_pos;
    int64_t                    page_next_after; /* -1: none */

    ngx_uint_t                 pending_ops;     /* messages being stored
                                                   or waiting to be */
    ngx_queue_t                waiting;         /* stored one at a time,
                                                   in the order sent */

    /* chat_ws_message_rate (ngx_http_chat_ws_messages.c) */
    ngx_msec_t                 rate_last;
    ngx_uint_t                 rate_excess;     /* 1/1000 messages */
    ngx_uint_t                 rate_refused;    /* in a row */

    unsigned                   close_sent:1;
    unsigned                   close_received:1;
    unsigned                   closed:1;        /* TCP gone, struct kept
                                                   for pending ops */
    unsigned                   subscribed:1;
    unsigned                   input_failed:1;  /* no message can come */
    unsigned                   reading:1;       /* a page of events is
                                                   being read for it */
    unsigned                   resume_waits:1;  /* for the send queue */
    unsigned                   page_more:1;     /* the page was full */
};


/* events replayed for since= at most; further behind: "resync" */
#define NGX_HTTP_CHAT_RESUME_MAX      1000

/* the group's events kept while a replay runs; past it, kept anew */
#define NGX_HTTP_CHAT_RESUME_BACKLOG  256


/* from the API router, for GET /api/chat/ws/{group_id} */
ngx_int_t ngx_http_chat_ws_handler(ngx_http_request_t *r,
    ngx_str_t *group_id);

/* queues a shared frame; closes a consumer that fell too far behind */
void ngx_http_chat_ws_send_frame(ngx_http_chat_ws_t *ws,
    ngx_http_chat_frame_t *frame);


/* between the WebSocket files */

/* the connection after the upgrade: handlers, timers, the group; the 101
 * response is its first frame out */
void ngx_http_chat_ws_open(ngx_http_chat_ws_t *ws,
    ngx_http_chat_frame_t *response);

/* a protocol error: logged, then the closing handshake with its code */
void ngx_http_chat_ws_fail(ngx_http_chat_ws_t *ws, ngx_uint_t code,
    const char *reason);

/* the end: unsubscribe, report, close the socket; ws goes later */
void ngx_http_chat_ws_finalize(ngx_http_chat_ws_t *ws);

/* a whole message from the client; NGX_OK to keep reading */
ngx_int_t ngx_http_chat_ws_message(ngx_http_chat_ws_t *ws,
    ngx_uint_t opcode, u_char *p, size_t len);

/* after the 101: the replay of since=, then live (or live at once) */
void ngx_http_chat_ws_resume_start(ngx_http_chat_ws_t *ws);

/* the send queue is empty: a replay waiting for room goes on */
void ngx_http_chat_ws_resume_drained(ngx_http_chat_ws_t *ws);

/* the group's event while the replay runs (the subscriber's hold()) */
void ngx_http_chat_ws_resume_hold(ngx_http_chat_subscriber_t *s,
    int64_t seq, ngx_http_chat_frame_t *frame);

/* at the end of the connection: what the replay keeps */
void ngx_http_chat_ws_resume_release(ngx_http_chat_ws_t *ws);

/* ws is freed when nothing holds it any more (a message being stored, a
 * page of events being read, the posted free) */
void ngx_http_chat_ws_maybe_free(ngx_http_chat_ws_t *ws);

/* {"type": ..., "detail": ..., "correlation_id": ...} */
void ngx_http_chat_ws_send_event(ngx_http_chat_ws_t *ws, const char *type,
    const char *detail);


#endif /* _NGX_HTTP_CHAT_WEBSOCKET_H_INCLUDED_ */
