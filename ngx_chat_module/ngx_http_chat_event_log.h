/*
 * ngx_http_chat_event_log.h - a group's events by seq (pool thread side).
 */

#ifndef _NGX_HTTP_CHAT_EVENT_LOG_H_INCLUDED_
#define _NGX_HTTP_CHAT_EVENT_LOG_H_INCLUDED_


#include <mongoc/mongoc.h>

#include "ngx_http_chat_storage.h"


/* room for "<group id>:<seq>" and "<message id>:deleted" */
#define NGX_HTTP_CHAT_SEQ_ID_LEN                                              \
    (NGX_HTTP_CHAT_OID_LEN + 1 + NGX_INT64_LEN + 1)


/* E11000: an insert refused for its _id (a seq claimed, or voided) */
#define NGX_HTTP_CHAT_MONGO_DUPLICATE_KEY  11000


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

/* the op's answer: the newest page of a logged group, whose current seq
 * is cur; NGX_DECLINED: too many deletions to walk, scan instead */
ngx_int_t ngx_http_chat_latest_page(ngx_http_chat_op_t *op,
    mongoc_client_t *client, int64_t cur);

/* the group's current seq and whether all its messages have event
 * records: NGX_OK; NGX_DECLINED: no such group (NOT_FOUND); NGX_ERROR */
ngx_int_t ngx_http_chat_group_seq(ngx_http_chat_op_t *op,
    mongoc_client_t *client, int64_t *cur, ngx_uint_t *logged);

/* the deletion's claim: NGX_OK won; NGX_DECLINED: another deletion had
 * won (NOT_FOUND; the message marked as that one says); NGX_ERROR */
ngx_int_t ngx_http_chat_claim_deletion(ngx_http_chat_op_t *op,
    mongoc_client_t *client, const bson_oid_t *mid, int64_t seq,
    int64_t deleted_at);

/* the message marked deleted with the deletion's seq and time */
ngx_int_t ngx_http_chat_apply_deletion(ngx_http_chat_op_t *op,
    mongoc_client_t *client, const bson_oid_t *mid, int64_t seq,
    int64_t deleted_at, ngx_uint_t counted);

/* an integer field of a document, or -1 */
int64_t ngx_http_chat_event_int(const bson_t *doc, const char *field);
int64_t ngx_http_chat_event_time(const bson_t *doc, const char *field);

/* the _ids: "<group id>:<seq>" and "<message id>:deleted" */
void ngx_http_chat_seq_id(char *id, const bson_oid_t *group_id, int64_t seq);
void ngx_http_chat_deletion_id(char *id, const bson_oid_t *message_id);


#endif /* _NGX_HTTP_CHAT_EVENT_LOG_H_INCLUDED_ */
