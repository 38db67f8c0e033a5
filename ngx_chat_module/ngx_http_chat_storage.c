/*
 * ngx_http_chat_storage.c - MongoDB through mongo-c-driver, on nginx's
 * thread pool.
 *
 * Threads: ngx_http_chat_op_post() runs on the event loop and only queues
 * the task.  ngx_http_chat_op_thread() runs on a pool thread: it touches
 * nothing but the op (copied inputs, its own outputs), the worker's
 * mongoc_client_pool_t (thread-safe) and malloc().  The completion event
 * runs back on the event loop and calls op->done().
 *
 * Every call is bounded in time: serverSelectionTimeoutMS, connectTimeoutMS
 * and socketTimeoutMS default to chat_db_timeout when the URI does not set
 * them, and reads carry maxTimeMS.  A database that is down or stalled
 * yields NGX_HTTP_CHAT_RES_UNAVAILABLE, never a hung request.
 *
 * Documents: groups {_id, name, created_at, created_by} and messages
 * {_id, group_id (ObjectId), user_id, content, created_at, is_deleted,
 * deleted_at}; created_at is a BSON date.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signal.h>
#include <pthread.h>

#include <mongoc/mongoc.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_queries.h"
#include "ngx_http_chat_page_cache.h"


#define NGX_HTTP_CHAT_INDEX_RETRY   5000     /* ms between index attempts */


typedef struct {
    mongoc_client_pool_t   *pool;
    mongoc_uri_t           *uri;
    char                    db[128];
    int32_t                 timeout_ms;
    ngx_thread_pool_t      *thread_pool;
    ngx_http_chat_op_t     *index_op;
    ngx_event_t             index_ev;
    ngx_log_t              *log;
} ngx_http_chat_storage_t;


#define NGX_HTTP_CHAT_OP_QUEUED     0
#define NGX_HTTP_CHAT_OP_RUNNING    1
#define NGX_HTTP_CHAT_OP_CANCELLED  2


static void ngx_http_chat_op_thread(void *data, ngx_log_t *log);
static void ngx_http_chat_op_event(ngx_event_t *ev);
static void ngx_http_chat_op_guard(ngx_event_t *ev);
static void ngx_http_chat_op_cleanup(void *data);
static void ngx_http_chat_op_free(ngx_http_chat_op_t *op);
static ngx_int_t ngx_http_chat_op_own_inputs(ngx_http_chat_op_t *op);



static void ngx_http_chat_mongoc_log(mongoc_log_level_t level,
    const char *domain, const char *message, void *data);
static void ngx_http_chat_index_handler(ngx_event_t *ev);
static void ngx_http_chat_index_done(ngx_http_chat_op_t *op);


static ngx_http_chat_storage_t  ngx_http_chat_storage;


ngx_int_t
ngx_http_chat_storage_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    sigset_t                  saved;
    bson_error_t              error;
    ngx_http_chat_storage_t  *st;

    st = &ngx_http_chat_storage;
    ngx_memzero(st, sizeof(ngx_http_chat_storage_t));

    st->log = cycle->log;
    st->timeout_ms = (int32_t) cmcf->db_timeout;

    st->thread_pool = ngx_thread_pool_get(cycle, &cmcf->thread_pool_name);
    if (st->thread_pool == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat storage: thread pool \"%V\" not found",
                      &cmcf->thread_pool_name);
        return NGX_ERROR;
    }

    (void) ngx_cpystrn((u_char *) st->db, cmcf->mongo_db.data,
                       sizeof(st->db));

    if (ngx_http_chat_queries_configure(st->db, st->timeout_ms, cycle->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    mongoc_init();

    /* the driver's own messages go to nginx's error log, not to stderr */
    mongoc_log_set_handler(ngx_http_chat_mongoc_log, NULL);

    st->uri = mongoc_uri_new_with_error((const char *) cmcf->mongo_uri.data,
                                        &error);
    if (st->uri == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat storage: invalid MongoDB URI: %s", error.message);
        return NGX_ERROR;
    }

    /* bound every operation unless the operator chose otherwise */

    if (!mongoc_uri_has_option(st->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS)) {
        mongoc_uri_set_option_as_int32(st->uri,
                                       MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       st->timeout_ms);
    }

    if (!mongoc_uri_has_option(st->uri, MONGOC_URI_CONNECTTIMEOUTMS)) {
        mongoc_uri_set_option_as_int32(st->uri, MONGOC_URI_CONNECTTIMEOUTMS,
                                       st->timeout_ms);
    }

    if (!mongoc_uri_has_option(st->uri, MONGOC_URI_SOCKETTIMEOUTMS)) {
        mongoc_uri_set_option_as_int32(st->uri, MONGOC_URI_SOCKETTIMEOUTMS,
                                       st->timeout_ms);
    }

    /* the driver's threads must not take the worker's signals */

    ngx_http_chat_threads_block_signals(&saved);

    st->pool = mongoc_client_pool_new_with_error(st->uri, &error);

    ngx_http_chat_threads_restore_signals(&saved);

    if (st->pool == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat storage: cannot create the MongoDB client "
                      "pool: %s", error.message);
        return NGX_ERROR;
    }

    (void) mongoc_client_pool_set_error_api(st->pool,
                                            MONGOC_ERROR_API_VERSION_2);
    (void) mongoc_client_pool_set_appname(st->pool, "ngx_chat_module");

    /* one worker makes sure the indexes exist, retrying until it can */

    if (ngx_worker == 0) {
        st->index_ev.handler = ngx_http_chat_index_handler;
        st->index_ev.log = cycle->log;
        st->index_ev.data = st;
        st->index_ev.cancelable = 1;

        ngx_add_timer(&st->index_ev, 1);
    }

    return NGX_OK;
}


void
ngx_http_chat_storage_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_chat_storage_t  *st;

    st = &ngx_http_chat_storage;

    /*
     * Tasks still on the pool threads hold clients from the pool, and
     * nginx's thread pools are not joined before exit: destroying the
     * pool under them would be a use-after-free.  The process is exiting;
     * the kernel reclaims the sockets.
     */

    if (st->index_op && st->index_op->json) {
        free(st->index_op->json);
        st->index_op->json = NULL;
    }
}


ngx_http_chat_op_t *
ngx_http_chat_op_create(ngx_pool_t *pool)
{
    ngx_thread_task_t   *task;
    ngx_pool_cleanup_t  *cln;
    ngx_http_chat_op_t  *op;

    /*
     * Not from the pool: an op that outlives its chat_db_timeout is
     * answered for and its request freed while a pool thread may still
     * hold it; it is freed with its pool or at its completion, whichever
     * comes last.
     */

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    task = ngx_calloc(sizeof(ngx_thread_task_t) + sizeof(ngx_http_chat_op_t),
                      pool->log);
    if (task == NULL) {
        return NULL;
    }

    op = (ngx_http_chat_op_t *) (task + 1);
    task->ctx = op;

    op->task = task;
    op->log = pool->log;

    cln->handler = ngx_http_chat_op_cleanup;
    cln->data = op;

    return op;
}


ngx_int_t
ngx_http_chat_op_post(ngx_http_chat_op_t *op)
{
    ngx_thread_task_t        *task;
    ngx_http_chat_storage_t  *st;

    st = &ngx_http_chat_storage;

    if (st->pool == NULL) {
        return NGX_ERROR;
    }

    if (op->expire && ngx_http_chat_op_own_inputs(op) != NGX_OK) {
        return NGX_ERROR;
    }

    task = op->task;
    task->handler = ngx_http_chat_op_thread;
    task->event.handler = ngx_http_chat_op_event;
    task->event.data = op;
    task->event.log = op->log;

    op->posted_us = ngx_http_chat_monotonic_us();
    op->state = NGX_HTTP_CHAT_OP_QUEUED;
    op->cancelled = 0;
    op->expired = 0;

    if (ngx_thread_task_post(st->thread_pool, task) != NGX_OK) {
        /* the pool's queue is full: logged by nginx; shed the load */
        return NGX_BUSY;
    }

    op->in_flight = 1;

    /* done() cannot run before we return: it is posted to this loop */
    op->guard.handler = ngx_http_chat_op_guard;
    op->guard.data = op;
    op->guard.log = op->log;
    ngx_add_timer(&op->guard, (ngx_msec_t) st->timeout_ms);

    return NGX_OK;
}


void
ngx_http_chat_request_wait(ngx_http_request_t *r, ngx_uint_t raise_count)
{
    if (raise_count) {
        r->main->count++;
    }

    r->main->blocked++;
    r->aio = 1;
}


void
ngx_http_chat_request_resume(ngx_http_request_t *r)
{
    r->main->blocked--;
    r->aio = 0;
}


void
ngx_http_chat_op_release(ngx_http_chat_op_t *op)
{
    free(op->json);
    op->json = NULL;

    free(op->event_json);
    op->event_json = NULL;
}


void
ngx_http_chat_op_detach(ngx_http_chat_op_t *op, ngx_http_chat_op_done_pt done)
{
    ngx_http_chat_storage_t  *st;

    st = &ngx_http_chat_storage;

    op->done = done;
    op->data = NULL;
    op->detached = 1;

    op->log = st->log;
    op->guard.log = st->log;
    op->task->event.log = st->log;
}


/*
 * An op whose caller may leave before it completes (expire set) owns its
 * inputs: copied before the thread can see them, so no pointer of the
 * op ever changes under the thread.
 */

static ngx_int_t
ngx_http_chat_op_own_inputs(ngx_http_chat_op_t *op)
{
    size_t   ulen;
    u_char  *p;

    if (op->owned || (op->text == NULL && op->user_id == NULL)) {
        return NGX_OK;
    }

    ulen = op->user_id ? ngx_strlen(op->user_id) + 1 : 0;

    p = ngx_alloc(op->text_len + 1 + ulen, op->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    op->owned = p;

    if (op->text) {
        ngx_memcpy(p, op->text, op->text_len);
        p[op->text_len] = '\0';
        op->text = (const char *) p;
    }

    p += op->text_len + 1;

    if (op->user_id) {
        ngx_memcpy(p, op->user_id, ulen);
        op->user_id = (const char *) p;
    }

    return NGX_OK;
}


static void
ngx_http_chat_op_cleanup(void *data)
{
    ngx_http_chat_op_t *op = data;

    ngx_http_chat_storage_t  *st;

    if (!op->in_flight) {
        ngx_http_chat_op_free(op);
        return;
    }

    /* the completion event frees it; nothing of the pool's is touched */

    st = &ngx_http_chat_storage;

    op->orphan = 1;
    op->log = st->log;
    op->guard.log = st->log;
    op->task->event.log = st->log;

    if (!op->detached) {
        op->done = NULL;
        op->data = NULL;
    }
}


static void
ngx_http_chat_op_free(ngx_http_chat_op_t *op)
{
    ngx_http_chat_op_release(op);

    if (op->owned) {
        ngx_free(op->owned);
    }

    ngx_free(op->task);
}


static void
ngx_http_chat_op_event(ngx_event_t *ev)
{
    ngx_uint_t           orphan;
    ngx_http_chat_op_t  *op;

    op = ev->data;

    if (op->guard.timer_set) {
        ngx_del_timer(&op->guard);
    }

    op->in_flight = 0;
    orphan = op->orphan;

    /*
     * A stored event changes its group's newest page: a new message put
     * in place in the cache, or the page dropped, here, before anyone is
     * answered (whoever asked, whether or not its request is still
     * there).  A write whose outcome is unknown drops it too.
     */

    if ((op->kind == NGX_HTTP_CHAT_OP_CREATE_MESSAGE
         || op->kind == NGX_HTTP_CHAT_OP_DELETE_MESSAGE)
        && !op->cancelled)
    {
        if (op->result == NGX_HTTP_CHAT_RES_OK && op->seq > 0
            && op->kind == NGX_HTTP_CHAT_OP_CREATE_MESSAGE && op->json)
        {
            ngx_http_chat_page_cache_created(&op->group_id, op->seq,
                                             op->json, op->json_len);

        } else if (op->result == NGX_HTTP_CHAT_RES_OK && op->seq > 0) {
            ngx_http_chat_page_cache_event(&op->group_id, op->seq);

        } else if (op->result == NGX_HTTP_CHAT_RES_UNAVAILABLE
                   || op->result == NGX_HTTP_CHAT_RES_ERROR)
        {
            ngx_http_chat_page_cache_event(&op->group_id, -1);
        }
    }

    /* done() may free the op with its pool: not touched after, unless
     * the pool went before */

    if (op->done) {
        op->done(op);
    }

    if (orphan) {
        ngx_http_chat_op_free(op);
    }
}


/*
 * chat_db_timeout after the op was posted.  Each call on the thread is
 * bounded by chat_db_timeout, but an op may be queued behind others, or
 * make several calls: its caller, if it asked (expire), answers now; the
 * op itself is still waited for (its client and its memory are in use),
 * and said so.
 */

static void
ngx_http_chat_op_guard(ngx_event_t *ev)
{
    ngx_http_chat_op_t       *op;
    ngx_http_chat_storage_t  *st;

    op = ev->data;
    st = &ngx_http_chat_storage;

    ngx_add_timer(ev, (ngx_msec_t) st->timeout_ms);

    if (op->expire && !op->expired) {
        op->expired = 1;
        op->cancelled = ngx_atomic_cmp_set(&op->state,
                                           NGX_HTTP_CHAT_OP_QUEUED,
                                           NGX_HTTP_CHAT_OP_CANCELLED)
                        ? 1 : 0;

        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "chat storage: database operation %d not done %uL ms "
                      "after it was queued (chat_db_timeout %d ms): "
                      "answered now; %s",
                      (int) op->kind,
                      (uint64_t) ((ngx_http_chat_monotonic_us()
                                   - op->posted_us) / 1000),
                      (int) st->timeout_ms,
                      op->cancelled ? "it was still queued and will not run"
                                    : "it is still running");

        op->expire(op);
        return;
    }

    if (op->cancelled) {
        return;                  /* quietly waits for its turn to be skipped */
    }

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "chat storage: database operation %d not done %uL ms "
                  "after it was queued (chat_db_timeout %d ms); waiting "
                  "for it",
                  (int) op->kind,
                  (uint64_t) ((ngx_http_chat_monotonic_us() - op->posted_us)
                              / 1000),
                  (int) st->timeout_ms);
}


/* --- on a pool thread from here to the index handler --------------------- */

static void
ngx_http_chat_op_thread(void *data, ngx_log_t *log)
{
    ngx_http_chat_op_t  *op = data;

    mongoc_client_t          *client;
    ngx_http_chat_storage_t  *st;

    st = &ngx_http_chat_storage;

    if (!ngx_atomic_cmp_set(&op->state, NGX_HTTP_CHAT_OP_QUEUED,
                            NGX_HTTP_CHAT_OP_RUNNING))
    {
        /* its caller has answered already: it is never run late */
        op->result = NGX_HTTP_CHAT_RES_UNAVAILABLE;
        (void) ngx_cpystrn((u_char *) op->error,
                           (u_char *) "cancelled: still queued after "
                           "chat_db_timeout", sizeof(op->error));
        return;
    }

    client = mongoc_client_pool_pop(st->pool);
    if (client == NULL) {
        op->result = NGX_HTTP_CHAT_RES_ERROR;
        (void) ngx_cpystrn((u_char *) op->error,
                           (u_char *) "no MongoDB client available",
                           sizeof(op->error));
        return;
    }

    op->result = NGX_HTTP_CHAT_RES_OK;

    ngx_http_chat_queries_run(op, client);

    mongoc_client_pool_push(ngx_http_chat_storage.pool, client);
}


static void
ngx_http_chat_mongoc_log(mongoc_log_level_t level, const char *domain,
    const char *message, void *data)
{
    ngx_uint_t  ngx_level;

    switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        ngx_level = NGX_LOG_ERR;
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        ngx_level = NGX_LOG_WARN;
        break;
    default:
        return;
    }

    ngx_log_error(ngx_level, ngx_cycle->log, 0, "chat mongoc %s: %s",
                  domain, message);
}


/* --- back on the event loop ---------------------------------------------- */

static void
ngx_http_chat_index_handler(ngx_event_t *ev)
{
    ngx_http_chat_op_t       *op;
    ngx_http_chat_storage_t  *st;

    st = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (st->index_op == NULL) {
        st->index_op = ngx_http_chat_op_create(ngx_cycle->pool);
        if (st->index_op == NULL) {
            return;
        }
    }

    op = st->index_op;
    op->kind = NGX_HTTP_CHAT_OP_ENSURE_INDEXES;
    op->result = NGX_HTTP_CHAT_RES_OK;
    op->error[0] = '\0';
    op->done = ngx_http_chat_index_done;
    op->data = st;
    op->log = st->log;

    if (ngx_http_chat_op_post(op) != NGX_OK) {
        ngx_add_timer(ev, NGX_HTTP_CHAT_INDEX_RETRY);
    }
}


static void
ngx_http_chat_index_done(ngx_http_chat_op_t *op)
{
    ngx_http_chat_storage_t  *st;

    st = op->data;

    if (op->result == NGX_HTTP_CHAT_RES_OK) {
        /* and the data of older code has its event log: the counts */
        ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                      "chat storage: indexes are in place in \"%s\", "
                      "migrated to the event log: %*s", st->db,
                      op->json ? op->json_len : (size_t) 2,
                      op->json ? op->json : "{}");
        ngx_http_chat_op_release(op);
        return;
    }

    ngx_http_chat_op_release(op);

    ngx_log_error(NGX_LOG_WARN, st->log, 0,
                  "chat storage: cannot create indexes or migrate yet, "
                  "retrying in "
                  "%d ms: %s", NGX_HTTP_CHAT_INDEX_RETRY, op->error);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&st->index_ev, NGX_HTTP_CHAT_INDEX_RETRY);
    }
}
