/*
 * ngx_http_chat_counters.h - the dashboard's database figures, counted
 * by the operations that store a message or a deletion (pool thread side).
 */

#ifndef _NGX_HTTP_CHAT_COUNTERS_H_INCLUDED_
#define _NGX_HTTP_CHAT_COUNTERS_H_INCLUDED_


#include <mongoc/mongoc.h>

#include "ngx_http_chat_storage.h"


/* this worker's documents and their locks, once before any op runs */
ngx_int_t ngx_http_chat_counters_init(ngx_log_t *log);

/* the marks that say a group, a message / a deletion is counted in
 * "counters" (the group's or message's document; the deletion's $set) */
void ngx_http_chat_counters_mark(bson_t *doc);
void ngx_http_chat_counters_mark_deleted(bson_t *set);

/* after the message / the deletion / the group was stored: counts it */
void ngx_http_chat_counters_created(ngx_http_chat_op_t *op,
    mongoc_client_t *client, int64_t created_ms);
void ngx_http_chat_counters_deleted(ngx_http_chat_op_t *op,
    mongoc_client_t *client);
void ngx_http_chat_counters_group(mongoc_client_t *client,
    const bson_oid_t *group_id, int64_t created_ms);


#endif /* _NGX_HTTP_CHAT_COUNTERS_H_INCLUDED_ */
