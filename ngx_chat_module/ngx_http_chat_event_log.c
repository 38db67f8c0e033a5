/*
 * ngx_http_chat_event_log.c - a group's events by seq: taking the next
 * seq of a group for an event, and listing the events after a seq (the
 * REST "after=" listing).  Runs on a pool thread, like the other
 * operations of ngx_http_chat_queries.c, whose helpers it shares.
 *
 * Every event of a group (a message created, a message deleted) takes the
 * next integer of the group's "seq" (ngx_http_chat_take_seq()), and each
 * seq taken leaves a claim in "seqs": {_id: "<group id>:<seq>", group_id,
 * seq, type, message_id}.  A seq taken by an event whose write then fails
 * (or a deletion that lost a race with another) is a gap: never reused.
 * Messages stored before seqs existed have none (and no deleted_seq).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mongoc/mongoc.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_queries.h"
#include "ngx_http_chat_render.h"
#include "ngx_http_chat_event_log.h"


/*
 * A worker takes the seqs of a group one pool thread at a time (one lock
 * per stripe of groups): on MongoDB this costs a group no more than one
 * findAndModify and one insert at a time per worker; on FerretDB, whose
 * $inc is not atomic, it keeps the threads of a worker from taking the
 * same seq over and over (32 clients posting to one group, 2 workers:
 * 34 POSTs/s, some of them 503s, without it; 200/s with it).
 */
#define NGX_HTTP_CHAT_SEQ_LOCKS  64


static mongoc_cursor_t *ngx_http_chat_events_from(mongoc_collection_t *coll,
    ngx_http_chat_op_t *op, const char *field);
static ngx_int_t ngx_http_chat_events_next(mongoc_cursor_t *cursor,
    const char *field, const bson_t **doc, int64_t *seq);
static int64_t ngx_http_chat_event_time(const bson_t *doc, const char *field);
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
 * The events of a group after op->after, oldest first: an item for each
 * message created with seq > after, and one for each deletion with
 * deleted_seq > after.  Two cursors, each in seq order and limited to a
 * page and one (the {group_id, seq} and {group_id, deleted_seq} indexes
 * on MongoDB), merged here; the page ends at op->limit items.
 *
 * A seq is taken before its event is written, so a later event may be
 * stored before an earlier one is: a page ends before a missing seq for
 * as long as the event after it is younger than the time an operation
 * can take to write one (NGX_HTTP_CHAT_SEQ_SETTLE chat_db_timeouts), as
 * if nothing came after it yet; a walk from the last seq seen then gets
 * the late event too.  Past that, the missing seq is a gap for good.
 */

#define NGX_HTTP_CHAT_SEQ_SETTLE  4

void
ngx_http_chat_op_list_events(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
    cJSON                *out, *list, *item;
    int64_t               n, prev, seq, now, settle, created_seq,
                          deleted_seq;
    ngx_int_t             created, deleted;
    ngx_uint_t            from_created, more;
    bson_iter_t           it;
    bson_error_t          error;
    const bson_t         *doc, *created_doc, *deleted_doc;
    const bson_oid_t     *mid;
    mongoc_cursor_t      *creations, *deletions;
    mongoc_collection_t  *coll;

    if (ngx_http_chat_group_exists(op, client, &op->group_id) != NGX_OK) {
        return;
    }

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "messages");

    creations = ngx_http_chat_events_from(coll, op, "seq");
    deletions = ngx_http_chat_events_from(coll, op, "deleted_seq");

    created = ngx_http_chat_events_next(creations, "seq", &created_doc,
                                        &created_seq);
    deleted = ngx_http_chat_events_next(deletions, "deleted_seq",
                                        &deleted_doc, &deleted_seq);

    /* "messages", like every listing of the route; its items are events */
    out = ngx_http_chat_render_page("messages", &op->group_id, &list);
    n = 0;
    prev = op->after;
    more = 0;

    now = (int64_t) (ngx_http_chat_realtime_us() / 1000);
    settle = (int64_t) ngx_http_chat_queries.timeout_ms
             * NGX_HTTP_CHAT_SEQ_SETTLE;

    while (created == NGX_OK || deleted == NGX_OK) {

        if (n == op->limit) {
            more = 1;                    /* one more than a page */
            break;
        }

        from_created = (created == NGX_OK
                        && (deleted != NGX_OK || created_seq < deleted_seq));
        seq = from_created ? created_seq : deleted_seq;
        doc = from_created ? created_doc : deleted_doc;

        if (seq > prev + 1
            && ngx_http_chat_event_time(doc, from_created ? "created_at"
                                                          : "deleted_at")
               > now - settle)
        {
            break;                       /* may still be written: later */
        }

        if (from_created) {
            item = ngx_http_chat_render_message_event(
                       ngx_http_chat_render_message(doc));

            created = ngx_http_chat_events_next(creations, "seq",
                                                &created_doc, &created_seq);

        } else {
            mid = (bson_iter_init_find(&it, doc, "_id")
                   && BSON_ITER_HOLDS_OID(&it))
                  ? bson_iter_oid(&it) : NULL;

            item = mid ? ngx_http_chat_render_deleted_event(mid,
                                                            &op->group_id,
                                                            seq)
                       : NULL;

            deleted = ngx_http_chat_events_next(deletions, "deleted_seq",
                                                &deleted_doc, &deleted_seq);
        }

        prev = seq;

        if (item) {
            cJSON_AddItemToArray(list, item);
            n++;
        }
    }

    if (mongoc_cursor_error(creations, &error)
        || mongoc_cursor_error(deletions, &error))
    {
        ngx_http_chat_op_fail(op, &error, "list events");
        cJSON_Delete(out);

    } else {
        cJSON_AddNumberToObject(out, "limit", (double) op->limit);
        cJSON_AddBoolToObject(out, "has_more", more);
        ngx_http_chat_render_next_after(out, more ? prev : -1);

        ngx_http_chat_op_output(op, out);
    }

    mongoc_cursor_destroy(deletions);
    mongoc_cursor_destroy(creations);
    mongoc_collection_destroy(coll);
}


/* when the event was written (ms), or 0 if the document does not say */

static int64_t
ngx_http_chat_event_time(const bson_t *doc, const char *field)
{
    bson_iter_t  it;

    if (bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME(&it))
    {
        return bson_iter_date_time(&it);
    }

    return 0;
}


/* messages of the group with field > op->after, in field order */

static mongoc_cursor_t *
ngx_http_chat_events_from(mongoc_collection_t *coll, ngx_http_chat_op_t *op,
    const char *field)
{
    bson_t            filter, opts, sort, gt;
    mongoc_cursor_t  *cursor;

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "group_id", &op->group_id);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, field, &gt);
    BSON_APPEND_INT64(&gt, "$gt", op->after);
    bson_append_document_end(&filter, &gt);

    bson_init(&opts);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, field, 1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", op->limit + 1);
    ngx_http_chat_maxtime(&opts);

    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    bson_destroy(&opts);
    bson_destroy(&filter);

    return cursor;
}


/* NGX_OK: *doc (valid until the cursor's next call) and its *seq;
 * NGX_DONE: the cursor is exhausted or failed */

static ngx_int_t
ngx_http_chat_events_next(mongoc_cursor_t *cursor, const char *field,
    const bson_t **doc, int64_t *seq)
{
    bson_iter_t  it;

    while (mongoc_cursor_next(cursor, doc)) {
        if (bson_iter_init_find(&it, *doc, field)
            && (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)))
        {
            *seq = bson_iter_as_int64(&it);
            return NGX_OK;
        }
    }

    return NGX_DONE;
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
#define NGX_HTTP_CHAT_MONGO_DUPLICATE_KEY  11000

ngx_int_t
ngx_http_chat_take_seq(ngx_http_chat_op_t *op, mongoc_client_t *client,
    const char *type, const bson_oid_t *message_id, int64_t *seq)
{
    char                  id[NGX_HTTP_CHAT_OID_LEN + 1 + NGX_INT64_LEN + 1];
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

        bson_oid_to_string(&op->group_id, id);
        (void) snprintf(id + NGX_HTTP_CHAT_OID_LEN,
                        sizeof(id) - NGX_HTTP_CHAT_OID_LEN, ":%lld",
                        (long long) *seq);

        bson_init(&claim);
        BSON_APPEND_UTF8(&claim, "_id", id);
        BSON_APPEND_OID(&claim, "group_id", &op->group_id);
        BSON_APPEND_INT64(&claim, "seq", *seq);
        BSON_APPEND_UTF8(&claim, "type", type);
        BSON_APPEND_OID(&claim, "message_id", message_id);

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

