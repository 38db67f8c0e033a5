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
    unsigned                   has_after:1;
    int64_t                    after;         /* events after this seq */
    const char                *user_id;       /* NUL-terminated */
    const char                *text;          /* name or content, NUL-t. */
    size_t                     text_len;
    int64_t                    limit;
    int64_t                    skip;
    int64_t                    page;

    /* outputs: written by the thread */
    ngx_http_chat_res_e        result;
    char                       error[320];    /* what failed; on
                                                 success: a note or "" */
    char                      *json;          /* malloc()ed, or NULL */
    size_t                     json_len;
    char                      *event_json;    /* broadcast payload, or NULL */
    int64_t                    seq;           /* the event's seq (create,
                                                 delete); the group's last
                                                 (group exists) */
    size_t                     event_json_len;
    char                       id_hex[NGX_HTTP_CHAT_OID_LEN + 1];
                                              /* the id created/deleted */
    int64_t                    through;       /* a newest page read from
                                                 the log: every seq up to
                                                 this one is in it */
    unsigned                   page_read:1;   /* ... and it is such a page */

    /* the page cache's ticket of a newest page's miss (event loop) */
    uint64_t                   cache_ticket;

    /* an expired cached page current through cached_through: if the
     * group's seq is still that, the thread says so (page_current) and
     * reads nothing more */
    int64_t                    cached_through;
    unsigned                   revalidate:1;
    unsigned                   page_current:1;

    /* completion, on the event loop */
    ngx_http_chat_op_done_pt   done;
    void                      *data;
    ngx_log_t                 *log;

    /*
     * Optional: called on the event loop when the op is not done
     * chat_db_timeout after it was posted (time in the thread pool's
     * queue included), so that its caller can answer now.  The caller
     * then detaches (ngx_http_chat_op_detach); "cancelled" says whether
     * the op was still queued: it will not run at all.
     */
    ngx_http_chat_op_done_pt   expire;
    unsigned                   cancelled:1;

    /* lifetime, on the event loop: posted and not yet completed; its
     * pool is gone (the completion frees it); detached from its caller */
    unsigned                   in_flight:1;
    unsigned                   orphan:1;
    unsigned                   detached:1;
    unsigned                   expired:1;

    /* queued -> running (the thread) or queued -> cancelled (expiry) */
    ngx_atomic_t               state;

    ngx_thread_task_t         *task;
    u_char                    *owned;         /* inputs copied by detach */
    uint64_t                   posted_us;

    /* armed while the thread runs: a worker that is shutting down exits
     * only when no timer is left, so this keeps it until done() ran */
    ngx_event_t                guard;
};


ngx_int_t ngx_http_chat_storage_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_storage_exit_process(ngx_cycle_t *cycle);

/*
 * Allocates an op and its thread task.  They are freed with the pool, or,
 * when the pool goes while the op is in flight, when the op completes:
 * a pool thread never writes into freed memory.
 */
ngx_http_chat_op_t *ngx_http_chat_op_create(ngx_pool_t *pool);

/* NGX_OK: done() will be called; NGX_BUSY: the task queue is full;
 * NGX_ERROR: storage is not available in this worker */
ngx_int_t ngx_http_chat_op_post(ngx_http_chat_op_t *op);

/* releases op->json and op->event_json if still owned by the op */
void ngx_http_chat_op_release(ngx_http_chat_op_t *op);

/*
 * From an expire() handler: the caller is done with the op (an op posted
 * with expire set owns copies of its text and user id).  done, if not
 * NULL, is still called at completion but must not touch the caller's
 * state.
 */
void ngx_http_chat_op_detach(ngx_http_chat_op_t *op,
    ngx_http_chat_op_done_pt done);

/*
 * A request waits for its op on the thread pool: its count is raised
 * (unless a body handler did already) and "blocked" keeps
 * ngx_http_terminate_request() from freeing it while a pool thread may
 * still write into the op; resumed by the op's done() or expire().
 */
void ngx_http_chat_request_wait(ngx_http_request_t *r,
    ngx_uint_t raise_count);
void ngx_http_chat_request_resume(ngx_http_request_t *r);

#endif /* _NGX_HTTP_CHAT_STORAGE_H_INCLUDED_ */
