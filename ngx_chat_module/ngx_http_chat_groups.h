/*
 * ngx_http_chat_groups.h - the worker's registry of the groups that have
 * live subscribers here, and the delivery of a group's event to each of
 * them: encoded once into a WebSocket frame, shared by every subscriber.
 *
 * A subscriber is anything that can be sent a frame (a WebSocket today):
 * the registry knows it only through ngx_http_chat_subscriber_t, so it
 * depends on no connection code.
 */

#ifndef _NGX_HTTP_CHAT_GROUPS_H_INCLUDED_
#define _NGX_HTTP_CHAT_GROUPS_H_INCLUDED_


#include "ngx_http_chat_module.h"

#include "ngx_http_chat_ws_codec.h"


#define NGX_HTTP_CHAT_GROUP_ID_LEN  NGX_HTTP_CHAT_OID_LEN


typedef struct ngx_http_chat_subscriber_s  ngx_http_chat_subscriber_t;

typedef void (*ngx_http_chat_subscriber_send_pt)(
    ngx_http_chat_subscriber_t *s, ngx_http_chat_frame_t *frame);

struct ngx_http_chat_subscriber_s {
    ngx_queue_t                        link;    /* in its group's list */
    void                              *group;   /* the registry's */
    ngx_http_chat_subscriber_send_pt   send;    /* may close s */
};


typedef struct {
    ngx_str_node_t             sn;              /* str: the id, lower case */
    u_char                     id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    ngx_queue_t                subscribers;
    ngx_uint_t                 count;
    ngx_uint_t                 delivering;      /* freed after, not during */
} ngx_http_chat_group_t;


/* a group's first subscriber in this worker came (on) or its last left */
typedef void (*ngx_http_chat_groups_watch_pt)(const u_char *group_id,
    ngx_uint_t on);


void ngx_http_chat_groups_init(ngx_http_chat_groups_watch_pt watch);

/* this worker's subscriber count of the group after the change */
ngx_uint_t ngx_http_chat_groups_join(ngx_http_chat_subscriber_t *s,
    const u_char *group_id);
ngx_uint_t ngx_http_chat_groups_leave(ngx_http_chat_subscriber_t *s);

/* an event of a group (JSON text) to every subscriber here; how many */
ngx_uint_t ngx_http_chat_groups_deliver(const u_char *group_id,
    const u_char *event, size_t len);

/*
 * The groups with subscribers, one after another (NULL: the first); the
 * order holds while no group is added or removed, that is within one turn
 * of the event loop.
 */
ngx_http_chat_group_t *ngx_http_chat_groups_next(ngx_http_chat_group_t *g);


#endif /* _NGX_HTTP_CHAT_GROUPS_H_INCLUDED_ */
