/*
 * ngx_http_chat_event_log.h - a group's events by seq (pool thread side).
 */

#ifndef _NGX_HTTP_CHAT_EVENT_LOG_H_INCLUDED_
#define _NGX_HTTP_CHAT_EVENT_LOG_H_INCLUDED_


#include <mongoc/mongoc.h>

#include "ngx_http_chat_storage.h"


/* the seq locks, once per worker before any op runs */
ngx_int_t ngx_http_chat_event_log_init(ngx_log_t *log);

/* the group's next seq for an event of the type about message_id:
 * NGX_OK and *seq; NGX_DECLINED: no such group; NGX_ERROR (op->result) */
ngx_int_t ngx_http_chat_take_seq(ngx_http_chat_op_t *op,
    mongoc_client_t *client, const char *type, const bson_oid_t *message_id,
    int64_t *seq);

/* the op's answer: a page of the group's events after op->after */
void ngx_http_chat_op_list_events(ngx_http_chat_op_t *op,
    mongoc_client_t *client);


#endif /* _NGX_HTTP_CHAT_EVENT_LOG_H_INCLUDED_ */
