/*
 * ngx_http_chat_websocket.h - the WebSocket path: RFC 6455 on the server
 * side, from the handshake at /api/chat/ws/{group_id} to the close.
 *
 * After the 101 response the HTTP request is freed (and logged) and the
 * connection belongs to an ngx_http_chat_ws_t of its own: an idle
 * subscriber costs its connection, its connection pool and this struct.
 */

#ifndef _NGX_HTTP_CHAT_WEBSOCKET_H_INCLUDED_
#define _NGX_HTTP_CHAT_WEBSOCKET_H_INCLUDED_


#include "ngx_http_chat_module.h"


/* opcodes */
#define NGX_HTTP_CHAT_WS_CONT        0x0
#define NGX_HTTP_CHAT_WS_TEXT        0x1
#define NGX_HTTP_CHAT_WS_BINARY      0x2
#define NGX_HTTP_CHAT_WS_CLOSE       0x8
#define NGX_HTTP_CHAT_WS_PING        0x9
#define NGX_HTTP_CHAT_WS_PONG        0xa

/* close codes */
#define NGX_HTTP_CHAT_WS_NORMAL      1000
#define NGX_HTTP_CHAT_WS_GOING_AWAY  1001
#define NGX_HTTP_CHAT_WS_PROTOCOL    1002
#define NGX_HTTP_CHAT_WS_UNSUPPORTED 1003
#define NGX_HTTP_CHAT_WS_BAD_DATA    1007
#define NGX_HTTP_CHAT_WS_POLICY      1008
#define NGX_HTTP_CHAT_WS_TOO_BIG     1009
#define NGX_HTTP_CHAT_WS_TRY_LATER   1013


/* a frame encoded once and shared by every connection that sends it */
typedef struct {
    ngx_uint_t                 refs;
    size_t                     len;
    u_char                     data[1];
} ngx_http_chat_frame_t;


/* a parsed frame header */
typedef struct {
    ngx_uint_t                 fin;
    ngx_uint_t                 rsv;
    ngx_uint_t                 opcode;
    ngx_uint_t                 masked;
    uint64_t                   payload_len;
    u_char                     mask[4];
    size_t                     header_len;
    ngx_uint_t                 close_code;      /* set on NGX_ERROR */
} ngx_http_chat_ws_frame_t;


typedef struct ngx_http_chat_ws_s  ngx_http_chat_ws_t;

struct ngx_http_chat_ws_s {
    ngx_connection_t          *connection;
    ngx_http_chat_loc_conf_t  *conf;

    ngx_queue_t                group_link;      /* broadcast.c's list */
    void                      *group;           /* broadcast.c's node */
    u_char                     group_id[24];

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

    ngx_uint_t                 pending_ops;     /* messages being stored
                                                   or waiting to be */
    ngx_queue_t                waiting;         /* stored one at a time,
                                                   in the order sent */

    unsigned                   close_sent:1;
    unsigned                   close_received:1;
    unsigned                   closed:1;        /* TCP gone, struct kept
                                                   for pending ops */
    unsigned                   subscribed:1;
    unsigned                   input_failed:1;  /* no message can come */
};


/* from the API router, for GET /api/chat/ws/{group_id} */
ngx_int_t ngx_http_chat_ws_handler(ngx_http_request_t *r,
    ngx_str_t *group_id);

/* queues a shared frame; closes a consumer that fell too far behind */
void ngx_http_chat_ws_send_frame(ngx_http_chat_ws_t *ws,
    ngx_http_chat_frame_t *frame);

ngx_http_chat_frame_t *ngx_http_chat_frame_create(ngx_uint_t opcode,
    const u_char *payload, size_t len);
void ngx_http_chat_frame_release(ngx_http_chat_frame_t *frame);

/* protocol pieces without I/O (also what the fuzzers call) */
ngx_int_t ngx_http_chat_ws_parse_frame(const u_char *p, size_t len,
    size_t max_payload, ngx_http_chat_ws_frame_t *f);
ngx_int_t ngx_http_chat_ws_check_close_payload(const u_char *p, size_t len,
    ngx_uint_t *code);
ngx_int_t ngx_http_chat_ws_accept_key(ngx_str_t *key, u_char *accept);


#endif /* _NGX_HTTP_CHAT_WEBSOCKET_H_INCLUDED_ */
