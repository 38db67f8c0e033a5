/*
 * ngx_http_chat_storage.h - the storage path: MongoDB operations run on an
 * nginx thread pool, never on the event loop.
 *
 * The caller fills an op (inputs are copied or owned by the caller and
 * only read by the thread), posts it, and gets its done() handler called
 * back on the event loop with op->result set and, on success, op->json: a
 * malloc()ed response body built off the event loop.
 */

#ifndef _NGX_HTTP_CHAT_STORAGE_H_INCLUDED_
#define _NGX_HTTP_CHAT_STORAGE_H_INCLUDED_


#include "ngx_http_chat_module.h"

#include <bson/bson.h>


typedef enum {
    NGX_HTTP_CHAT_OP_CREATE_GROUP = 1,
    NGX_HTTP_CHAT_OP_LIST_GROUPS,
    NGX_HTTP_CHAT_OP_GET_GROUP,
    NGX_HTTP_CHAT_OP_GROUP_EXISTS,
    NGX_HTTP_CHAT_OP_CREATE_MESSAGE,
    NGX_HTTP_CHAT_OP_LIST_MESSAGES,
    NGX_HTTP_CHAT_OP_DELETE_MESSAGE,
    NGX_HTTP_CHAT_OP_ENSURE_INDEXES
} ngx_http_chat_op_e;


typedef enum {
    NGX_HTTP_CHAT_RES_OK = 0,
    NGX_HTTP_CHAT_RES_NOT_FOUND,         /* group or message */
    NGX_HTTP_CHAT_RES_FORBIDDEN,         /* not the author */
    NGX_HTTP_CHAT_RES_BAD_CURSOR,        /* "before" names no message */
    NGX_HTTP_CHAT_RES_UNAVAILABLE,       /* database down or too slow */
    NGX_HTTP_CHAT_RES_ERROR              /* anything else */
} ngx_http_chat_res_e;


typedef struct ngx_http_chat_op_s  ngx_http_chat_op_t;

typedef void (*ngx_http_chat_op_done_pt)(ngx_http_chat_op_t *op);


struct ngx_http_chat_op_s {
    ngx_http_chat_op_e         kind;

    /* inputs: read-only for the thread */
    bson_oid_t                 group_id;
    bson_oid_t                 message_id;
    bson_oid_t                 before_id;
    unsigned                   has_before:1;
    const char                *user_id;       /* NUL-terminated */
    const char                *text;          /* name or content, NUL-t. */
    size_t                     text_len;
    int64_t                    limit;
    int64_t                    skip;
    int64_t                    page;

    /* outputs: written by the thread */
    ngx_http_chat_res_e        result;
    char                       error[320];
    char                      *json;          /* malloc()ed, or NULL */
    size_t                     json_len;
    char                      *event_json;    /* broadcast payload, or NULL */
    size_t                     event_json_len;
    char                       id_hex[25];    /* the id created/deleted */

    /* completion, on the event loop */
    ngx_http_chat_op_done_pt   done;
    void                      *data;
    ngx_log_t                 *log;

    ngx_thread_task_t         *task;
    uint64_t                   posted_us;

    /* armed while the thread runs: a worker that is shutting down exits
     * only when no timer is left, so this keeps it until done() ran */
    ngx_event_t                guard;
};


ngx_int_t ngx_http_chat_storage_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_storage_exit_process(ngx_cycle_t *cycle);

/* allocates an op (and its thread task) from the pool */
ngx_http_chat_op_t *ngx_http_chat_op_create(ngx_pool_t *pool);

/* NGX_OK: done() will be called; NGX_BUSY: the task queue is full;
 * NGX_ERROR: storage is not available in this worker */
ngx_int_t ngx_http_chat_op_post(ngx_http_chat_op_t *op);

/* releases op->json and op->event_json if still owned by the op */
void ngx_http_chat_op_release(ngx_http_chat_op_t *op);


#endif /* _NGX_HTTP_CHAT_STORAGE_H_INCLUDED_ */
