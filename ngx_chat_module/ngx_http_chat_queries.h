/*
 * ngx_http_chat_queries.h - the chat's MongoDB operations, run on a pool
 * thread for ngx_http_chat_storage.c.
 */

#ifndef _NGX_HTTP_CHAT_QUERIES_H_INCLUDED_
#define _NGX_HTTP_CHAT_QUERIES_H_INCLUDED_


#include <mongoc/mongoc.h>

#include "ngx_http_chat_storage.h"


/* the database and the operations' time limit, before any op runs */
ngx_int_t ngx_http_chat_queries_configure(const char *db, int32_t timeout_ms,
    ngx_log_t *log);

/* runs the op of its kind with the client; fills its result and output */
void ngx_http_chat_queries_run(ngx_http_chat_op_t *op,
    mongoc_client_t *client);


#endif /* _NGX_HTTP_CHAT_QUERIES_H_INCLUDED_ */
