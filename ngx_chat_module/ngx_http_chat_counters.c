/*
 * ngx_http_chat_counters.c - the dashboard's database figures, kept by
 * the writes themselves (MongoDB's computed pattern), so that the sidecar
 * reads a few small documents instead of counting the messages.
 *
 * Each worker process owns NGX_HTTP_CHAT_COUNTER_STRIPES documents of the
 * "counters" collection, one per stripe of groups:
 *
 *   {_id: "w:<host>:<pid>:<start ms>:<stripe>", host, pid, updated_at,
 *    groups: {<group id hex>: {m: <messages created>, d: <deleted>,
 *                              l: <latest created_at>}},
 *    hours:  {h<created_at / 3600000>: <messages created that hour>}}
 *
 * updated ($inc, $max, upsert) right after a message or a deletion is
 * stored, by the pool thread that stored it.  No other process ever writes
 * these documents, and the threads of the worker update one stripe's
 * document one at a time (a lock per stripe), so each update reads the
 * last one's result even on FerretDB 1.24, whose updates are a read then
 * a write and lose one of two concurrent $inc on one document: the counts
 * are exact on both databases.  The sidecar sums the documents.
 *
 * Why not the group's seq: every event takes one, but a seq also goes to
 * events whose write then fails (gaps), and creations and deletions share
 * the sequence; telling them apart costs a point read per event.  Why not
 * one document per group written by every worker: that is the lost $inc.
 *
 * A message counted here carries "counted": true, a deletion counted here
 * "deleted_counted": true: the sidecar's one-time count of a database of
 * the previous version (the "base" document) takes the others only, so no
 * event is counted twice, whichever runs first.
 *
 * An update that fails (database gone between the write and its count)
 * loses that count: logged, never retried (it may have been applied).
 * The hour buckets older than 26 hours are removed as new hours are
 * counted; "groups" holds the groups this worker wrote to.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mongoc/mongoc.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_queries.h"
#include "ngx_http_chat_counters.h"


#define NGX_HTTP_CHAT_COUNTER_STRIPES  16
#define NGX_HTTP_CHAT_COUNTER_HOUR_MS  3600000
#define NGX_HTTP_CHAT_COUNTER_HOURS    26       /* buckets kept */
#define NGX_HTTP_CHAT_COUNTER_ID_LEN   256


static void ngx_http_chat_counters_update(ngx_http_chat_op_t *op,
    mongoc_client_t *client, bson_t *update, const char *what);
static ngx_int_t ngx_http_chat_counters_lock(ngx_thread_mutex_t *lock);


/* set once per worker, before any op runs; read-only on the threads */
static char                ngx_http_chat_counter_prefix[
                               NGX_HTTP_CHAT_COUNTER_ID_LEN];
static ngx_thread_mutex_t  ngx_http_chat_counter_locks[
                               NGX_HTTP_CHAT_COUNTER_STRIPES];


ngx_int_t
ngx_http_chat_counters_init(ngx_log_t *log)
{
    ngx_uint_t  i;

    /* host and pid: another process never has both; the start time: nor
     * a later process that is given the same pid */

    (void) snprintf(ngx_http_chat_counter_prefix,
                    sizeof(ngx_http_chat_counter_prefix), "w:%.*s:%d:%llu",
                    (int) ngx_min(ngx_cycle->hostname.len, 128),
                    ngx_cycle->hostname.data, (int) ngx_pid,
                    (unsigned long long) (ngx_http_chat_realtime_us()
                                          / 1000));

    for (i = 0; i < NGX_HTTP_CHAT_COUNTER_STRIPES; i++) {
        if (ngx_thread_mutex_create(&ngx_http_chat_counter_locks[i], log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_http_chat_counters_mark_message(bson_t *doc)
{
    BSON_APPEND_BOOL(doc, "counted", true);
}


void
ngx_http_chat_counters_mark_deleted(bson_t *set)
{
    BSON_APPEND_BOOL(set, "deleted_counted", true);
}


void
ngx_http_chat_counters_created(ngx_http_chat_op_t *op,
    mongoc_client_t *client, int64_t created_ms)
{
    char      gid[NGX_HTTP_CHAT_OID_LEN + 1], key[64], old[32];
    bson_t    update, inc, max, unset;
    int64_t   hour;

    bson_oid_to_string(&op->group_id, gid);
    hour = created_ms / NGX_HTTP_CHAT_COUNTER_HOUR_MS;

    bson_init(&update);

    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    (void) snprintf(key, sizeof(key), "groups.%s.m", gid);
    BSON_APPEND_INT64(&inc, key, 1);
    (void) snprintf(key, sizeof(key), "hours.h%lld", (long long) hour);
    BSON_APPEND_INT64(&inc, key, 1);
    bson_append_document_end(&update, &inc);

    BSON_APPEND_DOCUMENT_BEGIN(&update, "$max", &max);
    (void) snprintf(key, sizeof(key), "groups.%s.l", gid);
    BSON_APPEND_DATE_TIME(&max, key, created_ms);
    bson_append_document_end(&update, &max);

    /* the bucket that just left the kept window: at most one a new hour */

    BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &unset);
    (void) snprintf(old, sizeof(old), "hours.h%lld",
                    (long long) (hour - NGX_HTTP_CHAT_COUNTER_HOURS));
    BSON_APPEND_UTF8(&unset, old, "");
    bson_append_document_end(&update, &unset);

    ngx_http_chat_counters_update(op, client, &update, "message");

    bson_destroy(&update);
}


void
ngx_http_chat_counters_deleted(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    char      gid[NGX_HTTP_CHAT_OID_LEN + 1], key[64];
    bson_t    update, inc;

    bson_oid_to_string(&op->group_id, gid);

    bson_init(&update);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    (void) snprintf(key, sizeof(key), "groups.%s.d", gid);
    BSON_APPEND_INT64(&inc, key, 1);
    bson_append_document_end(&update, &inc);

    ngx_http_chat_counters_update(op, client, &update, "deletion");

    bson_destroy(&update);
}


/*
 * One update of this worker's document of the group's stripe, under the
 * stripe's lock.  It runs whether or not the request is still waiting:
 * the message is stored, so it must be counted.
 */

static void
ngx_http_chat_counters_update(ngx_http_chat_op_t *op, mongoc_client_t *client,
    bson_t *update, const char *what)
{
    char                  id[NGX_HTTP_CHAT_COUNTER_ID_LEN + 16],
                          gid[NGX_HTTP_CHAT_OID_LEN + 1];
    bson_t                filter, opts, set;
    ngx_uint_t            stripe;
    bson_error_t          error;
    ngx_thread_mutex_t   *lock;
    mongoc_collection_t  *coll;

    stripe = ngx_hash_key(op->group_id.bytes, sizeof(op->group_id.bytes))
             % NGX_HTTP_CHAT_COUNTER_STRIPES;

    (void) snprintf(id, sizeof(id), "%s:%u", ngx_http_chat_counter_prefix,
                    (unsigned) stripe);

    BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
    BSON_APPEND_INT32(&set, "pid", (int32_t) ngx_pid);
    BSON_APPEND_DATE_TIME(&set, "updated_at",
                          (int64_t) (ngx_http_chat_realtime_us() / 1000));
    bson_append_document_end(update, &set);

    bson_init(&filter);
    BSON_APPEND_UTF8(&filter, "_id", id);

    bson_init(&opts);
    BSON_APPEND_BOOL(&opts, "upsert", true);

    lock = &ngx_http_chat_counter_locks[stripe];

    if (ngx_http_chat_counters_lock(lock) != NGX_OK) {
        bson_oid_to_string(&op->group_id, gid);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat counters: a %s of group %s not counted: the "
                      "lock of %s was held for chat_db_timeout (%d ms)",
                      what, gid, id, (int) ngx_http_chat_queries.timeout_ms);
        goto done;
    }

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "counters");

    if (!mongoc_collection_update_one(coll, &filter, update, &opts, NULL,
                                      &error))
    {
        bson_oid_to_string(&op->group_id, gid);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat counters: a %s of group %s not counted: "
                      "update of %s failed: %s (domain %u, code %u)",
                      what, gid, id, error.message, error.domain,
                      error.code);
    }

    mongoc_collection_destroy(coll);

    (void) ngx_thread_mutex_unlock(lock, ngx_cycle->log);

done:

    bson_destroy(&opts);
    bson_destroy(&filter);
}


/* waits chat_db_timeout at most (nginx has no timed lock) */

static ngx_int_t
ngx_http_chat_counters_lock(ngx_thread_mutex_t *lock)
{
    uint64_t         until;
    struct timespec  ts;

    until = ngx_http_chat_realtime_us()
            + (uint64_t) ngx_http_chat_queries.timeout_ms * 1000;
    ts.tv_sec = (time_t) (until / 1000000);
    ts.tv_nsec = (long) (until % 1000000) * 1000;

    return pthread_mutex_timedlock(lock, &ts) == 0 ? NGX_OK : NGX_ERROR;
}
