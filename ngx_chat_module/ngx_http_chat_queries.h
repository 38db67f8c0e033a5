/*
 * ngx_http_chat_queries.h - the chat's MongoDB operations, run on a pool
 * thread for ngx_http_chat_storage.c.
 */

#ifndef _NGX_HTTP_CHAT_QUERIES_H_INCLUDED_
#define _NGX_HTTP_CHAT_QUERIES_H_INCLUDED_


#include <mongoc/mongoc.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_storage.h"


/* set once per worker, before any op runs; read-only on the threads */
typedef struct {
    char                    db[128];
    int32_t                 timeout_ms;
} ngx_http_chat_queries_t;

extern ngx_http_chat_queries_t  ngx_http_chat_queries;


/* the database and the operations' time limit, before any op runs */
ngx_int_t ngx_http_chat_queries_configure(const char *db, int32_t timeout_ms,
    ngx_log_t *log);

/* runs the op of its kind with the client; fills its result and output */
void ngx_http_chat_queries_run(ngx_http_chat_op_t *op,
    mongoc_client_t *client);



/* shared by the operations (here and in ngx_http_chat_event_log.c) */

/* NGX_OK; NGX_DECLINED: no such group (op->result NOT_FOUND); NGX_ERROR */
ngx_int_t ngx_http_chat_group_exists(ngx_http_chat_op_t *op,
    mongoc_client_t *client, const bson_oid_t *id);

/* one document by _id (sid, a string, or else oid) into *doc, a copy
 * (bson_destroy): NGX_OK; NGX_DECLINED: none; NGX_ERROR (op failed) */
ngx_int_t ngx_http_chat_find_id(ngx_http_chat_op_t *op,
    mongoc_collection_t *coll, const char *sid, const bson_oid_t *oid,
    bson_t **doc);

/* op->result and op->error from a failed call ("what" names the step) */
void ngx_http_chat_op_fail(ngx_http_chat_op_t *op, const bson_error_t *error,
    const char *what);

/* the op's answer (takes json) and the event its success broadcasts */
void ngx_http_chat_op_output(ngx_http_chat_op_t *op, cJSON *json);
void ngx_http_chat_op_set_event(ngx_http_chat_op_t *op, char *event);

/* maxTimeMS: chat_db_timeout */
void ngx_http_chat_maxtime(bson_t *opts);


#endif /* _NGX_HTTP_CHAT_QUERIES_H_INCLUDED_ */
