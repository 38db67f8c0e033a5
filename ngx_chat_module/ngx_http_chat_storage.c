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

static void ngx_http_chat_op_create_group(ngx_http_chat_op_t *op,
    mongoc_client_t *client);
static void ngx_http_chat_op_list_groups(ngx_http_chat_op_t *op,
    mongoc_client_t *client);
static void ngx_http_chat_op_get_group(ngx_http_chat_op_t *op,
    mongoc_client_t *client);
static void ngx_http_chat_op_create_message(ngx_http_chat_op_t *op,
    mongoc_client_t *client);
static void ngx_http_chat_op_list_messages(ngx_http_chat_op_t *op,
    mongoc_client_t *client);
static void ngx_http_chat_op_delete_message(ngx_http_chat_op_t *op,
    mongoc_client_t *client);
static void ngx_http_chat_op_ensure_indexes(ngx_http_chat_op_t *op,
    mongoc_client_t *client);

static ngx_int_t ngx_http_chat_group_exists(ngx_http_chat_op_t *op,
    mongoc_client_t *client, const bson_oid_t *id);
static void ngx_http_chat_op_fail(ngx_http_chat_op_t *op,
    const bson_error_t *error, const char *what);
static void ngx_http_chat_op_output(ngx_http_chat_op_t *op, cJSON *json);
static cJSON *ngx_http_chat_group_json(const bson_t *doc);
static cJSON *ngx_http_chat_message_json(const bson_t *doc);
static void ngx_http_chat_field(cJSON *o, const bson_t *doc,
    const char *field, const char *key);
static void ngx_http_chat_add_time(cJSON *obj, const char *key, int64_t ms);
static void ngx_http_chat_add_oid(cJSON *obj, const char *key,
    const bson_oid_t *oid);
static void ngx_http_chat_maxtime(bson_t *opts);

static void ngx_http_chat_mongoc_log(mongoc_log_level_t level,
    const char *domain, const char *message, void *data);
static void ngx_http_chat_index_handler(ngx_event_t *ev);
static void ngx_http_chat_index_done(ngx_http_chat_op_t *op);


static ngx_http_chat_storage_t  ngx_http_chat_storage;


ngx_int_t
ngx_http_chat_storage_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    sigset_t                  all, saved;
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

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);

    st->pool = mongoc_client_pool_new_with_error(st->uri, &error);

    pthread_sigmask(SIG_SETMASK, &saved, NULL);

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

    switch (op->kind) {

    case NGX_HTTP_CHAT_OP_CREATE_GROUP:
        ngx_http_chat_op_create_group(op, client);
        break;

    case NGX_HTTP_CHAT_OP_LIST_GROUPS:
        ngx_http_chat_op_list_groups(op, client);
        break;

    case NGX_HTTP_CHAT_OP_GET_GROUP:
        ngx_http_chat_op_get_group(op, client);
        break;

    case NGX_HTTP_CHAT_OP_GROUP_EXISTS:
        if (ngx_http_chat_group_exists(op, client, &op->group_id) == NGX_OK) {
            ngx_http_chat_op_output(op, cJSON_CreateObject());
        }
        break;

    case NGX_HTTP_CHAT_OP_CREATE_MESSAGE:
        ngx_http_chat_op_create_message(op, client);
        break;

    case NGX_HTTP_CHAT_OP_LIST_MESSAGES:
        ngx_http_chat_op_list_messages(op, client);
        break;

    case NGX_HTTP_CHAT_OP_DELETE_MESSAGE:
        ngx_http_chat_op_delete_message(op, client);
        break;

    case NGX_HTTP_CHAT_OP_ENSURE_INDEXES:
        ngx_http_chat_op_ensure_indexes(op, client);
        break;
    }

    mongoc_client_pool_push(ngx_http_chat_storage.pool, client);
}


static void
ngx_http_chat_op_create_group(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
    bson_t                doc;
    int64_t               now;
    bson_oid_t            oid;
    bson_error_t          error;
    mongoc_collection_t  *coll;

    bson_oid_init(&oid, NULL);
    now = (int64_t) (ngx_http_chat_realtime_us() / 1000);

    bson_init(&doc);
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_UTF8(&doc, "name", op->text);
    BSON_APPEND_DATE_TIME(&doc, "created_at", now);
    BSON_APPEND_UTF8(&doc, "created_by", op->user_id);

    coll = mongoc_client_get_collection(client, ngx_http_chat_storage.db,
                                        "groups");

    if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
        ngx_http_chat_op_fail(op, &error, "insert group");

    } else {
        bson_oid_to_string(&oid, op->id_hex);
        ngx_http_chat_op_output(op, ngx_http_chat_group_json(&doc));
    }

    mongoc_collection_destroy(coll);
    bson_destroy(&doc);
}


static void
ngx_http_chat_op_list_groups(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
    bson_t                filter, opts, sort;
    cJSON                *out, *list;
    int64_t               n;
    bson_error_t          error;
    const bson_t         *doc;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *coll;

    bson_init(&filter);
    bson_init(&opts);

    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "created_at", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "skip", op->skip);
    BSON_APPEND_INT64(&opts, "limit", op->limit + 1);
    ngx_http_chat_maxtime(&opts);

    coll = mongoc_client_get_collection(client, ngx_http_chat_storage.db,
                                        "groups");
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    out = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(out, "groups");
    n = 0;

    while (mongoc_cursor_next(cursor, &doc)) {
        if (n++ < op->limit) {
            cJSON_AddItemToArray(list, ngx_http_chat_group_json(doc));
        }
    }

    if (mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "list groups");
        cJSON_Delete(out);

    } else {
        cJSON_AddNumberToObject(out, "page", (double) op->page);
        cJSON_AddNumberToObject(out, "limit", (double) op->limit);
        cJSON_AddBoolToObject(out, "has_more", n > op->limit);
        ngx_http_chat_op_output(op, out);
    }

    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
}


static void
ngx_http_chat_op_get_group(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
    bson_t                filter, opts;
    bson_error_t          error;
    const bson_t         *doc;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *coll;

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "_id", &op->group_id);

    bson_init(&opts);
    BSON_APPEND_INT64(&opts, "limit", 1);
    ngx_http_chat_maxtime(&opts);

    coll = mongoc_client_get_collection(client, ngx_http_chat_storage.db,
                                        "groups");
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    if (mongoc_cursor_next(cursor, &doc)) {
        ngx_http_chat_op_output(op, ngx_http_chat_group_json(doc));

    } else if (mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "get group");

    } else {
        op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
    }

    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
}


static void
ngx_http_chat_op_create_message(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    bson_t                doc;
    cJSON                *msg, *event;
    char                 *s;
    int64_t               now;
    bson_oid_t            oid;
    bson_error_t          error;
    mongoc_collection_t  *coll;

    if (ngx_http_chat_group_exists(op, client, &op->group_id) != NGX_OK) {
        return;
    }

    bson_oid_init(&oid, NULL);
    now = (int64_t) (ngx_http_chat_realtime_us() / 1000);

    bson_init(&doc);
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_OID(&doc, "group_id", &op->group_id);
    BSON_APPEND_UTF8(&doc, "user_id", op->user_id);
    bson_append_utf8(&doc, "content", -1, op->text, (int) op->text_len);
    BSON_APPEND_DATE_TIME(&doc, "created_at", now);
    BSON_APPEND_BOOL(&doc, "is_deleted", false);

    coll = mongoc_client_get_collection(client, ngx_http_chat_storage.db,
                                        "messages");

    if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
        ngx_http_chat_op_fail(op, &error, "insert message");

    } else {
        bson_oid_to_string(&oid, op->id_hex);

        msg = ngx_http_chat_message_json(&doc);

        /* the WebSocket event carries the same message */
        event = cJSON_CreateObject();
        cJSON_AddStringToObject(event, "type", "message");
        cJSON_AddItemToObject(event, "message", cJSON_Duplicate(msg, 1));

        s = cJSON_PrintUnformatted(event);
        if (s) {
            op->event_json = s;
            op->event_json_len = strlen(s);
        }

        cJSON_Delete(event);

        ngx_http_chat_op_output(op, msg);
    }

    mongoc_collection_destroy(coll);
    bson_destroy(&doc);
}


static void
ngx_http_chat_op_list_messages(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    bson_t                filter, opts, sort, child, or, c1, c2, lt;
    cJSON                *out, *list;
    int64_t               n, before_ms;
    bson_iter_t           it;
    bson_error_t          error;
    const bson_t         *doc;
    const bson_oid_t     *last_oid;
    bson_oid_t            last;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *coll;

    if (ngx_http_chat_group_exists(op, client, &op->group_id) != NGX_OK) {
        return;
    }

    coll = mongoc_client_get_collection(client, ngx_http_chat_storage.db,
                                        "messages");

    before_ms = 0;

    if (op->has_before) {

        /* the cursor message fixes the position: (created_at, _id) */

        bson_init(&filter);
        BSON_APPEND_OID(&filter, "_id", &op->before_id);
        BSON_APPEND_OID(&filter, "group_id", &op->group_id);

        bson_init(&opts);
        BSON_APPEND_INT64(&opts, "limit", 1);
        ngx_http_chat_maxtime(&opts);

        cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

        if (mongoc_cursor_next(cursor, &doc)
            && bson_iter_init_find(&it, doc, "created_at")
            && BSON_ITER_HOLDS_DATE_TIME(&it))
        {
            before_ms = bson_iter_date_time(&it);

        } else if (mongoc_cursor_error(cursor, &error)) {
            ngx_http_chat_op_fail(op, &error, "find cursor message");

        } else {
            op->result = NGX_HTTP_CHAT_RES_BAD_CURSOR;
        }

        mongoc_cursor_destroy(cursor);
        bson_destroy(&opts);
        bson_destroy(&filter);

        if (op->result != NGX_HTTP_CHAT_RES_OK) {
            mongoc_collection_destroy(coll);
            return;
        }
    }

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "group_id", &op->group_id);
    BSON_APPEND_BOOL(&filter, "is_deleted", false);

    if (op->has_before) {
        /* strictly older than the cursor: stable while new ones arrive */
        BSON_APPEND_ARRAY_BEGIN(&filter, "$or", &or);

        BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &c1);
        BSON_APPEND_DOCUMENT_BEGIN(&c1, "created_at", &lt);
        BSON_APPEND_DATE_TIME(&lt, "$lt", before_ms);
        bson_append_document_end(&c1, &lt);
        bson_append_document_end(&or, &c1);

        BSON_APPEND_DOCUMENT_BEGIN(&or, "1", &c2);
        BSON_APPEND_DATE_TIME(&c2, "created_at", before_ms);
        BSON_APPEND_DOCUMENT_BEGIN(&c2, "_id", &child);
        BSON_APPEND_OID(&child, "$lt", &op->before_id);
        bson_append_document_end(&c2, &child);
        bson_append_document_end(&or, &c2);

        bson_append_array_end(&filter, &or);
    }

    bson_init(&opts);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "created_at", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "skip", op->skip);
    BSON_APPEND_INT64(&opts, "limit", op->limit + 1);
    ngx_http_chat_maxtime(&opts);

    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    out = cJSON_CreateObject();
    ngx_http_chat_add_oid(out, "group_id", &op->group_id);
    list = cJSON_AddArrayToObject(out, "messages");
    n = 0;
    last_oid = NULL;

    while (mongoc_cursor_next(cursor, &doc)) {
        if (n++ >= op->limit) {
            continue;
        }

        cJSON_AddItemToArray(list, ngx_http_chat_message_json(doc));

        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it)) {
            bson_oid_copy(bson_iter_oid(&it), &last);
            last_oid = &last;
        }
    }

    if (mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "list messages");
        cJSON_Delete(out);

    } else {
        cJSON_AddNumberToObject(out, "page", (double) op->page);
        cJSON_AddNumberToObject(out, "limit", (double) op->limit);
        cJSON_AddBoolToObject(out, "has_more", n > op->limit);

        if (n > op->limit && last_oid) {
            ngx_http_chat_add_oid(out, "next_before", last_oid);
        } else {
            cJSON_AddNullToObject(out, "next_before");
        }

        ngx_http_chat_op_output(op, out);
    }

    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
}


static void
ngx_http_chat_op_delete_message(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    bson_t                filter, opts, update, set, reply;
    cJSON                *out, *event;
    char                 *s;
    int64_t               now;
    bson_iter_t           it;
    bson_error_t          error;
    const bson_t         *doc;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *coll;

    coll = mongoc_client_get_collection(client, ngx_http_chat_storage.db,
                                        "messages");

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "_id", &op->message_id);
    BSON_APPEND_OID(&filter, "group_id", &op->group_id);
    BSON_APPEND_BOOL(&filter, "is_deleted", false);

    bson_init(&opts);
    BSON_APPEND_INT64(&opts, "limit", 1);
    ngx_http_chat_maxtime(&opts);

    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    if (!mongoc_cursor_next(cursor, &doc)) {
        if (mongoc_cursor_error(cursor, &error)) {
            ngx_http_chat_op_fail(op, &error, "find message");
        } else {
            op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
        }

        goto done;
    }

    if (!bson_iter_init_find(&it, doc, "user_id")
        || !BSON_ITER_HOLDS_UTF8(&it)
        || strcmp(bson_iter_utf8(&it, NULL), op->user_id) != 0)
    {
        op->result = NGX_HTTP_CHAT_RES_FORBIDDEN;
        goto done;
    }

    now = (int64_t) (ngx_http_chat_realtime_us() / 1000);

    bson_init(&update);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_BOOL(&set, "is_deleted", true);
    BSON_APPEND_DATE_TIME(&set, "deleted_at", now);
    bson_append_document_end(&update, &set);

    /* the filter still says is_deleted: false, so of two racing deletes
     * exactly one matches */

    if (!mongoc_collection_update_one(coll, &filter, &update, NULL, &reply,
                                      &error))
    {
        ngx_http_chat_op_fail(op, &error, "delete message");

    } else if (bson_iter_init_find(&it, &reply, "modifiedCount")
               && bson_iter_as_int64(&it) == 0)
    {
        op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;

    } else {
        bson_oid_to_string(&op->message_id, op->id_hex);

        out = cJSON_CreateObject();
        ngx_http_chat_add_oid(out, "id", &op->message_id);
        ngx_http_chat_add_oid(out, "group_id", &op->group_id);
        cJSON_AddBoolToObject(out, "is_deleted", 1);
        ngx_http_chat_add_time(out, "deleted_at", now);

        event = cJSON_CreateObject();
        cJSON_AddStringToObject(event, "type", "message_deleted");
        ngx_http_chat_add_oid(event, "message_id", &op->message_id);
        ngx_http_chat_add_oid(event, "group_id", &op->group_id);

        s = cJSON_PrintUnformatted(event);
        if (s) {
            op->event_json = s;
            op->event_json_len = strlen(s);
        }

        cJSON_Delete(event);

        ngx_http_chat_op_output(op, out);
    }

    bson_destroy(&reply);
    bson_destroy(&update);

done:

    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
}


/*
 * The indexes the API and the dashboard's queries use.  createIndexes is
 * idempotent on MongoDB and FerretDB alike when names and keys match.
 */

static void
ngx_http_chat_op_ensure_indexes(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    static const struct {
        const char  *coll;
        const char  *name;
        const char  *keys_json;
    } indexes[] = {
        { "messages", "group_id_1", "{\"group_id\": 1}" },
        { "messages", "group_id_1_created_at_-1",
          "{\"group_id\": 1, \"created_at\": -1}" },
        { "messages", "created_at_1", "{\"created_at\": 1}" },
        { "groups", "created_at_1", "{\"created_at\": 1}" },
    };

    bson_t                cmd, arr, idx, *keys;
    size_t                i;
    bson_error_t          error;
    mongoc_database_t    *db;

    db = mongoc_client_get_database(client, ngx_http_chat_storage.db);

    for (i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++) {

        keys = bson_new_from_json((const uint8_t *) indexes[i].keys_json, -1,
                                  &error);
        if (keys == NULL) {
            ngx_http_chat_op_fail(op, &error, "index keys");
            break;
        }

        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "createIndexes", indexes[i].coll);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &idx);
        BSON_APPEND_DOCUMENT(&idx, "key", keys);
        BSON_APPEND_UTF8(&idx, "name", indexes[i].name);
        bson_append_document_end(&arr, &idx);
        bson_append_array_end(&cmd, &arr);

        if (!mongoc_database_write_command_with_opts(db, &cmd, NULL, NULL,
                                                     &error))
        {
            ngx_http_chat_op_fail(op, &error, indexes[i].name);
            bson_destroy(&cmd);
            bson_destroy(keys);
            break;
        }

        bson_destroy(&cmd);
        bson_destroy(keys);
    }

    mongoc_database_destroy(db);
}


static ngx_int_t
ngx_http_chat_group_exists(ngx_http_chat_op_t *op, mongoc_client_t *client,
    const bson_oid_t *id)
{
    bson_t                filter, opts, proj;
    ngx_int_t             rc;
    bson_error_t          error;
    const bson_t         *doc;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *coll;

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "_id", id);

    bson_init(&opts);
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "_id", 1);
    bson_append_document_end(&opts, &proj);
    ngx_http_chat_maxtime(&opts);

    coll = mongoc_client_get_collection(client, ngx_http_chat_storage.db,
                                        "groups");
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    if (mongoc_cursor_next(cursor, &doc)) {
        rc = NGX_OK;

    } else if (mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "find group");
        rc = NGX_ERROR;

    } else {
        op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
        rc = NGX_DECLINED;
    }

    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);

    return rc;
}


/* down, unreachable or too slow is "unavailable" (503), the rest is 500 */

static void
ngx_http_chat_op_fail(ngx_http_chat_op_t *op, const bson_error_t *error,
    const char *what)
{
    ngx_uint_t  unavailable;

    unavailable = 0;

    switch (error->domain) {

    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_STREAM:
        unavailable = 1;
        break;

    case MONGOC_ERROR_SERVER:
    case MONGOC_ERROR_QUERY:
    case MONGOC_ERROR_WRITE_CONCERN:
        /* MaxTimeMSExpired, NotWritablePrimary, ShutdownInProgress ... */
        unavailable = (error->code == 50 || error->code == 10107
                       || error->code == 11600 || error->code == 11602
                       || error->code == 91 || error->code == 189
                       || error->code == 64);
        break;

    default:
        break;
    }

    op->result = unavailable ? NGX_HTTP_CHAT_RES_UNAVAILABLE
                             : NGX_HTTP_CHAT_RES_ERROR;

    (void) snprintf(op->error, sizeof(op->error), "%.60s: %.180s (domain %u, "
                    "code %u)", what, error->message, error->domain,
                    error->code);
}


static void
ngx_http_chat_op_output(ngx_http_chat_op_t *op, cJSON *json)
{
    char  *s;

    s = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);

    if (s == NULL) {
        op->result = NGX_HTTP_CHAT_RES_ERROR;
        (void) snprintf(op->error, sizeof(op->error),
                        "cannot render the response");
        return;
    }

    op->json = s;
    op->json_len = strlen(s);
}


/* copies one field of a document into the JSON output, if it has it */

static void
ngx_http_chat_field(cJSON *o, const bson_t *doc, const char *field,
    const char *key)
{
    bson_iter_t  it;

    if (!bson_iter_init_find(&it, doc, field)) {
        return;
    }

    if (BSON_ITER_HOLDS_OID(&it)) {
        ngx_http_chat_add_oid(o, key, bson_iter_oid(&it));

    } else if (BSON_ITER_HOLDS_UTF8(&it)) {
        cJSON_AddStringToObject(o, key, bson_iter_utf8(&it, NULL));

    } else if (BSON_ITER_HOLDS_DATE_TIME(&it)) {
        ngx_http_chat_add_time(o, key, bson_iter_date_time(&it));
    }
}


static cJSON *
ngx_http_chat_group_json(const bson_t *doc)
{
    cJSON  *o;

    o = cJSON_CreateObject();

    ngx_http_chat_field(o, doc, "_id", "id");
    ngx_http_chat_field(o, doc, "name", "name");
    ngx_http_chat_field(o, doc, "created_at", "created_at");
    ngx_http_chat_field(o, doc, "created_by", "created_by");

    return o;
}


static cJSON *
ngx_http_chat_message_json(const bson_t *doc)
{
    cJSON  *o;

    o = cJSON_CreateObject();

    ngx_http_chat_field(o, doc, "_id", "id");
    ngx_http_chat_field(o, doc, "group_id", "group_id");
    ngx_http_chat_field(o, doc, "user_id", "user_id");
    ngx_http_chat_field(o, doc, "content", "content");
    ngx_http_chat_field(o, doc, "created_at", "created_at");

    return o;
}


/* ISO-8601 UTC with milliseconds and "Z": 2025-11-09T12:34:56.789Z */

static void
ngx_http_chat_add_time(cJSON *obj, const char *key, int64_t ms)
{
    char       buf[64];
    time_t     sec;
    struct tm  tm;

    sec = (time_t) (ms / 1000);
    ms %= 1000;
    if (ms < 0) {
        ms += 1000;
        sec--;
    }

    gmtime_r(&sec, &tm);

    (void) snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                    tm.tm_hour, tm.tm_min, tm.tm_sec, (int) ms);

    cJSON_AddStringToObject(obj, key, buf);
}


static void
ngx_http_chat_add_oid(cJSON *obj, const char *key, const bson_oid_t *oid)
{
    char  hex[25];

    bson_oid_to_string(oid, hex);
    cJSON_AddStringToObject(obj, key, hex);
}


static void
ngx_http_chat_maxtime(bson_t *opts)
{
    BSON_APPEND_INT64(opts, "maxTimeMS",
                      (int64_t) ngx_http_chat_storage.timeout_ms);
}


/*
 * mongoc logs from its own threads too; like nginx's thread pool threads,
 * they write to the cycle's log.  Its chatter (debug, info, message) is
 * dropped: with the database down it would repeat twice a second.
 */

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

    ngx_http_chat_op_release(op);

    if (op->result == NGX_HTTP_CHAT_RES_OK) {
        ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                      "chat storage: indexes are in place in \"%s\"", st->db);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, st->log, 0,
                  "chat storage: cannot create indexes yet, retrying in "
                  "%d ms: %s", NGX_HTTP_CHAT_INDEX_RETRY, op->error);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&st->index_ev, NGX_HTTP_CHAT_INDEX_RETRY);
    }
}
