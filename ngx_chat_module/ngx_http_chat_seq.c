/*
 * ngx_http_chat_seq.c - the write side of a group's event log: taking the
 * group's next seq for an event (and its claim in "seqs"), and a
 * deletion's claim and its mark on the message.  On a pool thread, like
 * every operation; the reading side, the log's states and its buckets,
 * is ngx_http_chat_event_log.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mongoc/mongoc.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_queries.h"
#include "ngx_http_chat_event_log.h"
#include "ngx_http_chat_counters.h"


/*
 * A worker takes the seqs of a group one pool thread at a time (one lock
 * per stripe of groups): on MongoDB this costs a group no more than one
 * findAndModify and one insert at a time per worker; on FerretDB, whose
 * $inc is not atomic, it keeps the threads of a worker from taking the
 * same seq over and over (32 clients posting to one group, 2 workers:
 * 34 POSTs/s, some of them 503s, without it; 200/s with it).
 */
#define NGX_HTTP_CHAT_SEQ_LOCKS            64


static ngx_int_t ngx_http_chat_inc_seq(ngx_http_chat_op_t *op,
    mongoc_collection_t *groups, int64_t *seq);
static ngx_int_t ngx_http_chat_seq_lock(ngx_http_chat_op_t *op,
    ngx_thread_mutex_t *lock);


/* created once per worker, before any op runs */
static ngx_thread_mutex_t  ngx_http_chat_seq_locks[NGX_HTTP_CHAT_SEQ_LOCKS];


ngx_int_t
ngx_http_chat_event_log_init(ngx_log_t *log)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_CHAT_SEQ_LOCKS; i++) {
        if (ngx_thread_mutex_create(&ngx_http_chat_seq_locks[i], log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A deletion's claim: {_id: "<message id>:deleted", group_id,
 * message_id, seq, deleted_at} in seqs, inserted once: of two deletions
 * of one message (two requests, two migrations) exactly one wins, on
 * both databases.  The winner then marks the message (its one writer
 * from then on).  The loser repairs the message from the claim, in case
 * the winner's update never landed (identical values: safe to race).
 *
 * NGX_OK: this deletion won; NGX_DECLINED: another did (NOT_FOUND);
 * NGX_ERROR (op->result).
 */

ngx_int_t
ngx_http_chat_claim_deletion(ngx_http_chat_op_t *op, mongoc_client_t *client,
    const bson_oid_t *mid, int64_t seq, int64_t deleted_at)
{
    char                  id[NGX_HTTP_CHAT_SEQ_ID_LEN];
    bson_t                claim, *doc;
    int64_t               s, at;
    ngx_int_t             rc;
    bson_error_t          error;
    mongoc_collection_t  *seqs;

    seqs = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "seqs");

    ngx_http_chat_deletion_id(id, mid);

    bson_init(&claim);
    BSON_APPEND_UTF8(&claim, "_id", id);
    BSON_APPEND_OID(&claim, "group_id", &op->group_id);
    BSON_APPEND_OID(&claim, "message_id", mid);
    BSON_APPEND_INT64(&claim, "seq", seq);
    BSON_APPEND_DATE_TIME(&claim, "deleted_at", deleted_at);

    if (mongoc_collection_insert_one(seqs, &claim, NULL, NULL, &error)) {
        rc = NGX_OK;

    } else if (error.code != NGX_HTTP_CHAT_MONGO_DUPLICATE_KEY) {
        ngx_http_chat_op_fail(op, &error, "claim deletion");
        rc = NGX_ERROR;

    } else {
        rc = ngx_http_chat_find_id(op, seqs, id, NULL, &doc);

        if (rc == NGX_OK) {
            s = ngx_http_chat_event_int(doc, "seq");
            at = ngx_http_chat_event_time(doc, "deleted_at");
            bson_destroy(doc);

            rc = (s >= 0) ? ngx_http_chat_apply_deletion(op, client, mid, s,
                                                         at, 0)
                          : NGX_OK;
        }

        if (rc != NGX_ERROR) {
            op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
            rc = NGX_DECLINED;
        }
    }

    bson_destroy(&claim);
    mongoc_collection_destroy(seqs);

    return rc;
}


/* marks the message deleted, as its deletion's claim says (by _id only:
 * one filter key, the embedded database's point read) */

ngx_int_t
ngx_http_chat_apply_deletion(ngx_http_chat_op_t *op, mongoc_client_t *client,
    const bson_oid_t *mid, int64_t seq, int64_t deleted_at,
    ngx_uint_t counted)
{
    bson_t                filter, update, set;
    ngx_int_t             rc;
    bson_error_t          error;
    mongoc_collection_t  *messages;

    messages = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                            "messages");

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "_id", mid);

    bson_init(&update);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_BOOL(&set, "is_deleted", true);
    BSON_APPEND_DATE_TIME(&set, "deleted_at", deleted_at);
    BSON_APPEND_INT64(&set, "deleted_seq", seq);

    if (counted) {
        /* the dashboard's count of it follows (ngx_http_chat_counters.c) */
        ngx_http_chat_counters_mark_deleted(&set);
    }

    bson_append_document_end(&update, &set);

    rc = NGX_OK;

    if (!mongoc_collection_update_one(messages, &filter, &update, NULL, NULL,
                                      &error))
    {
        ngx_http_chat_op_fail(op, &error, "mark message deleted");
        rc = NGX_ERROR;
    }

    bson_destroy(&update);
    bson_destroy(&filter);
    mongoc_collection_destroy(messages);

    return rc;
}


/*
 * The group's next event seq.  $inc on the group's "seq" through
 * findAndModify (atomic on MongoDB), then a claim of it: the document
 * {_id: "<group id>:<seq>"} inserted into "seqs", whose unique _id lets
 * one event only have a seq.  FerretDB 1.24 runs findAndModify as a read
 * then a write (internal/handler/msg_findandmodify.go), so two concurrent
 * $inc may both answer the same seq, and the counter may even step back;
 * the event whose claim is refused (E11000) takes another.  Every seq up
 * to the highest taken is taken exactly once, so on both databases the
 * seqs of a group are distinct and, but for failed writes, gapless.
 *
 * NGX_OK and *seq; NGX_DECLINED: no such group (NOT_FOUND); NGX_ERROR:
 * failed (op->result set).
 */

#define NGX_HTTP_CHAT_SEQ_TRIES          1000

ngx_int_t
ngx_http_chat_take_seq(ngx_http_chat_op_t *op, mongoc_client_t *client,
    const char *type, const bson_oid_t *message_id, int64_t *seq)
{
    char                  id[NGX_HTTP_CHAT_SEQ_ID_LEN];
    bson_t                claim;
    ngx_int_t             rc;
    ngx_uint_t            tries;
    bson_error_t          error;
    ngx_thread_mutex_t   *lock;
    mongoc_collection_t  *groups, *seqs;

    groups = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                          "groups");
    seqs = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "seqs");

    lock = &ngx_http_chat_seq_locks[
               ngx_hash_key(op->group_id.bytes, sizeof(op->group_id.bytes))
               % NGX_HTTP_CHAT_SEQ_LOCKS];

    if (ngx_http_chat_seq_lock(op, lock) != NGX_OK) {
        mongoc_collection_destroy(seqs);
        mongoc_collection_destroy(groups);
        return NGX_ERROR;
    }

    for (tries = 0; /* void */; tries++) {

        if (tries == NGX_HTTP_CHAT_SEQ_TRIES) {
            op->result = NGX_HTTP_CHAT_RES_UNAVAILABLE;
            (void) snprintf(op->error, sizeof(op->error),
                            "take seq: %d tries refused as duplicates "
                            "(last seq %lld)", NGX_HTTP_CHAT_SEQ_TRIES,
                            (long long) *seq);
            rc = NGX_ERROR;
            break;
        }

        rc = ngx_http_chat_inc_seq(op, groups, seq);
        if (rc != NGX_OK) {
            break;
        }

        ngx_http_chat_seq_id(id, &op->group_id, *seq);

        bson_init(&claim);
        BSON_APPEND_UTF8(&claim, "_id", id);
        BSON_APPEND_OID(&claim, "group_id", &op->group_id);
        BSON_APPEND_INT64(&claim, "seq", *seq);
        BSON_APPEND_UTF8(&claim, "type", type);
        BSON_APPEND_OID(&claim, "message_id", message_id);
        BSON_APPEND_DATE_TIME(&claim, "at",
                              (int64_t) (ngx_http_chat_realtime_us() / 1000));

        if (mongoc_collection_insert_one(seqs, &claim, NULL, NULL, &error)) {
            bson_destroy(&claim);
            break;
        }

        bson_destroy(&claim);

        if (error.code != NGX_HTTP_CHAT_MONGO_DUPLICATE_KEY) {
            ngx_http_chat_op_fail(op, &error, "claim seq");
            rc = NGX_ERROR;
            break;
        }
    }

    (void) ngx_thread_mutex_unlock(lock, ngx_cycle->log);

    mongoc_collection_destroy(seqs);
    mongoc_collection_destroy(groups);

    return rc;
}


/*
 * Waits for the lock of the group's stripe no longer than the op's own
 * bound, chat_db_timeout from when it was queued: behind a holder stalled
 * on a database that is down, the others give up with their requests
 * (503) instead of keeping pool threads, one timeout after another.
 * (ngx_thread_mutex_t is a pthread mutex; nginx has no timed lock.)
 */

static ngx_int_t
ngx_http_chat_seq_lock(ngx_http_chat_op_t *op, ngx_thread_mutex_t *lock)
{
    int              err;
    uint64_t         now, deadline, until;
    struct timespec  ts;

    deadline = op->posted_us
               + (uint64_t) ngx_http_chat_queries.timeout_ms * 1000;
    now = ngx_http_chat_monotonic_us();

    /* pthread_mutex_timedlock() counts in CLOCK_REALTIME */
    until = ngx_http_chat_realtime_us() + (deadline > now ? deadline - now
                                                          : 0);
    ts.tv_sec = (time_t) (until / 1000000);
    ts.tv_nsec = (long) (until % 1000000) * 1000;

    err = pthread_mutex_timedlock(lock, &ts);

    if (err == 0) {
        return NGX_OK;
    }

    op->result = NGX_HTTP_CHAT_RES_UNAVAILABLE;
    (void) snprintf(op->error, sizeof(op->error),
                    "take seq: another operation of the group's stripe held "
                    "the seq lock for chat_db_timeout (%s)", strerror(err));

    return NGX_ERROR;
}


/* the whole group comes back: FerretDB 1.24 refuses findAndModify's
 * "fields" ("not implemented yet"); a group's document is small */

static ngx_int_t
ngx_http_chat_inc_seq(ngx_http_chat_op_t *op, mongoc_collection_t *groups,
    int64_t *seq)
{
    bson_t                          query, update, inc, reply;
    ngx_int_t                       rc;
    bson_iter_t                     it;
    bson_error_t                    error;
    mongoc_find_and_modify_opts_t  *opts;

    bson_init(&query);
    BSON_APPEND_OID(&query, "_id", &op->group_id);

    bson_init(&update);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    BSON_APPEND_INT64(&inc, "seq", 1);
    bson_append_document_end(&update, &inc);

    opts = mongoc_find_and_modify_opts_new();
    (void) mongoc_find_and_modify_opts_set_update(opts, &update);
    (void) mongoc_find_and_modify_opts_set_flags(opts,
                                        MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    (void) mongoc_find_and_modify_opts_set_max_time_ms(opts,
                                (uint32_t) ngx_http_chat_queries.timeout_ms);

    if (!mongoc_collection_find_and_modify_with_opts(groups, &query, opts,
                                                     &reply, &error))
    {
        ngx_http_chat_op_fail(op, &error, "take seq");
        rc = NGX_ERROR;

    } else if (bson_iter_init(&it, &reply)
               && bson_iter_find_descendant(&it, "value.seq", &it)
               && (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)))
    {
        *seq = bson_iter_as_int64(&it);
        rc = NGX_OK;

    } else if (bson_iter_init_find(&it, &reply, "value")
               && BSON_ITER_HOLDS_NULL(&it))
    {
        op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
        rc = NGX_DECLINED;

    } else {
        op->result = NGX_HTTP_CHAT_RES_ERROR;
        (void) snprintf(op->error, sizeof(op->error),
                        "take seq: no integer \"seq\" in the answer");
        rc = NGX_ERROR;
    }

    mongoc_find_and_modify_opts_destroy(opts);
    bson_destroy(&reply);
    bson_destroy(&update);
    bson_destroy(&query);

    return rc;
}
