/*
 * ngx_http_chat_event_log.c - a group's events by seq: taking the next
 * seq of a group for an event, reading the log by point reads (the REST
 * "after=" listing, a group's newest page), and a deletion's claim.  Runs
 * on a pool thread, like the other operations of ngx_http_chat_queries.c,
 * whose helpers it shares.
 *
 * Every event of a group (a message created, a message deleted) takes the
 * next integer of the group's "seq" (ngx_http_chat_take_seq()), and each
 * seq taken leaves its record in "seqs": {_id: "<group id>:<seq>",
 * group_id, seq, type, message_id, at}.  A deletion also inserts its
 * claim {_id: "<message id>:deleted", group_id, message_id, seq,
 * deleted_at} there.  Every _id is computable, so the log is read by _id
 * alone.  A seq taken by an event whose write then fails (or a deletion
 * that lost a race with another) is a gap: never reused.  Messages stored
 * before seqs existed have none until ngx_http_chat_migrate.c numbers
 * them.
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
#define NGX_HTTP_CHAT_SEQ_LOCKS            64

#define NGX_HTTP_CHAT_MONGO_DUPLICATE_KEY  11000


typedef enum {
    NGX_HTTP_CHAT_EV_MISSING = 0,
    NGX_HTTP_CHAT_EV_PENDING,
    NGX_HTTP_CHAT_EV_GAP,
    NGX_HTTP_CHAT_EV_CREATED,
    NGX_HTTP_CHAT_EV_DELETED
} ngx_http_chat_ev_e;


typedef struct {
    ngx_http_chat_ev_e   state;
    int64_t              at;             /* the claim's time (ms), or 0 */
    bson_oid_t           mid;
    bson_t              *msg;            /* CREATED: the message */
} ngx_http_chat_ev_t;


static ngx_int_t ngx_http_chat_event_resolve(ngx_http_chat_op_t *op,
    mongoc_collection_t *seqs, mongoc_collection_t *messages, int64_t seq,
    ngx_http_chat_ev_t *ev);
static void ngx_http_chat_event_free(ngx_http_chat_ev_t *ev);
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
 * Reading the log: point reads by _id only, the one kind of read the
 * embedded database does not pay for with its whole collection (with
 * devdb's _id index, O(log n)); MongoDB serves them from its _id index.
 *
 * The event of seq S of group G is resolved from its record "<G>:<S>"
 * in seqs (the claim take_seq() inserted: type, message_id, at), then
 *   - a creation ("message"): the message, by its _id: the event
 *     happened when the message exists with seq S;
 *   - a deletion ("message_deleted"): the deletion's claim
 *     "<message id>:deleted" in seqs: the event happened when that
 *     claim says seq S.
 * So the states of a seq, as a reader sees them:
 *   MISSING   no record: the seq is not claimed yet (its taker is between
 *             $inc and the insert of the claim), or never will be (that
 *             insert failed);
 *   PENDING   a record, not (yet) its event: the message or the deletion
 *             claim is still being written, or its write failed;
 *   GAP       a record whose event is another seq's: a deletion that
 *             lost to another, a message two migrations numbered at once
 *             (ngx_http_chat_migrate.c);
 *   CREATED / DELETED: the event.
 * A MISSING or PENDING seq younger than NGX_HTTP_CHAT_SEQ_SETTLE x
 * chat_db_timeout may still become an event; past that, it is a gap for
 * good (every write of an operation is done or failed by then).
 */

static ngx_int_t
ngx_http_chat_event_resolve(ngx_http_chat_op_t *op,
    mongoc_collection_t *seqs, mongoc_collection_t *messages, int64_t seq,
    ngx_http_chat_ev_t *ev)
{
    char               id[NGX_HTTP_CHAT_SEQ_ID_LEN];
    bson_t            *rec, *doc;
    int64_t            s;
    ngx_int_t          rc;
    bson_iter_t        it;
    const char        *type;
    const bson_oid_t  *gid;

    ev->state = NGX_HTTP_CHAT_EV_MISSING;
    ev->at = 0;
    ev->msg = NULL;

    ngx_http_chat_seq_id(id, &op->group_id, seq);

    rc = ngx_http_chat_find_id(op, seqs, id, NULL, &rec);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    ev->at = ngx_http_chat_event_time(rec, "at");
    ev->state = NGX_HTTP_CHAT_EV_GAP;

    type = (bson_iter_init_find(&it, rec, "type") && BSON_ITER_HOLDS_UTF8(&it))
           ? bson_iter_utf8(&it, NULL) : "";

    if (!bson_iter_init_find(&it, rec, "message_id")
        || !BSON_ITER_HOLDS_OID(&it))
    {
        bson_destroy(rec);
        return NGX_OK;
    }

    bson_oid_copy(bson_iter_oid(&it), &ev->mid);

    if (strcmp(type, "message") == 0) {
        rc = ngx_http_chat_find_id(op, messages, NULL, &ev->mid, &doc);

        if (rc == NGX_OK) {
            gid = (bson_iter_init_find(&it, doc, "group_id")
                   && BSON_ITER_HOLDS_OID(&it))
                  ? bson_iter_oid(&it) : NULL;
            s = ngx_http_chat_event_int(doc, "seq");

            if (s < 0) {
                ev->state = NGX_HTTP_CHAT_EV_PENDING;   /* a migration's */

            } else if (s == seq && gid
                       && bson_oid_equal(gid, &op->group_id))
            {
                ev->state = NGX_HTTP_CHAT_EV_CREATED;
                ev->msg = doc;
                doc = NULL;
            }

            if (doc) {
                bson_destroy(doc);
            }

        } else if (rc == NGX_DECLINED) {
            ev->state = NGX_HTTP_CHAT_EV_PENDING;
        }

    } else if (strcmp(type, "message_deleted") == 0) {
        ngx_http_chat_deletion_id(id, &ev->mid);

        rc = ngx_http_chat_find_id(op, seqs, id, NULL, &doc);

        if (rc == NGX_OK) {
            if (ngx_http_chat_event_int(doc, "seq") == seq) {
                ev->state = NGX_HTTP_CHAT_EV_DELETED;
            }

            bson_destroy(doc);

        } else if (rc == NGX_DECLINED) {
            ev->state = NGX_HTTP_CHAT_EV_PENDING;
        }
    }

    bson_destroy(rec);

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_chat_event_free(ngx_http_chat_ev_t *ev)
{
    if (ev->msg) {
        bson_destroy(ev->msg);
        ev->msg = NULL;
    }
}


/*
 * The events of a group after op->after, oldest first: seq after+1,
 * after+2, ... up to the group's current seq, each resolved by point
 * reads (above); the page ends at op->limit items.
 *
 * A seq is taken before its event is written, so a later event may be
 * stored before an earlier one is: a page ends before a MISSING or
 * PENDING seq for as long as it (or, for a MISSING one, the next event
 * that has a time) is younger than NGX_HTTP_CHAT_SEQ_SETTLE
 * chat_db_timeouts, as if nothing came after it yet; a walk from the last
 * seq seen then gets the late event too.  Past that, it is a gap for good.
 *
 * A page resolves at most 2 x limit + NGX_HTTP_CHAT_WALK_SLACK seqs: past
 * that (a long run of gaps) it ends with has_more and next_after, the
 * last seq resolved, or, inside a run of MISSING seqs whose age it could
 * not learn, as if the log ended there for now.
 */

#define NGX_HTTP_CHAT_SEQ_SETTLE   4
#define NGX_HTTP_CHAT_WALK_SLACK   64

void
ngx_http_chat_op_list_events(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
    cJSON                *out, *list, *item;
    int64_t               n, prev, seq, cur, young, hole, budget;
    ngx_uint_t            more, logged, failed;
    ngx_http_chat_ev_t    ev;
    mongoc_collection_t  *seqs, *messages;

    if (ngx_http_chat_group_seq(op, client, &cur, &logged) != NGX_OK) {
        return;
    }

    seqs = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "seqs");
    messages = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                            "messages");

    /* "messages", like every listing of the route; its items are events */
    out = ngx_http_chat_render_page("messages", &op->group_id, &list);

    young = (int64_t) (ngx_http_chat_realtime_us() / 1000)
            - (int64_t) ngx_http_chat_queries.timeout_ms
              * NGX_HTTP_CHAT_SEQ_SETTLE;
    budget = 2 * op->limit + NGX_HTTP_CHAT_WALK_SLACK;

    n = 0;
    prev = op->after;
    more = 0;
    hole = 0;
    failed = 0;

    for (seq = op->after + 1; seq <= cur; seq++) {

        if (seq - op->after > budget) {
            more = (hole == 0);
            break;
        }

        if (ngx_http_chat_event_resolve(op, seqs, messages, seq, &ev)
            != NGX_OK)
        {
            failed = 1;
            break;
        }

        if (ev.state == NGX_HTTP_CHAT_EV_MISSING) {
            if (hole == 0) {
                hole = seq;
            }

            continue;
        }

        if (hole) {
            if (ev.at > young) {
                ngx_http_chat_event_free(&ev);
                break;                   /* the hole may still be filled */
            }

            hole = 0;                    /* gaps for good */
            prev = seq - 1;
        }

        if (ev.state == NGX_HTTP_CHAT_EV_PENDING) {
            if (ev.at > young) {
                break;                   /* may still be written: later */
            }

            ev.state = NGX_HTTP_CHAT_EV_GAP;
        }

        if (ev.state == NGX_HTTP_CHAT_EV_GAP) {
            prev = seq;
            continue;
        }

        if (n == op->limit) {
            more = 1;                    /* one more than a page */
            ngx_http_chat_event_free(&ev);
            break;
        }

        if (ev.state == NGX_HTTP_CHAT_EV_CREATED) {
            item = ngx_http_chat_render_message_event(
                       ngx_http_chat_render_message(ev.msg));

        } else {
            item = ngx_http_chat_render_deleted_event(&ev.mid,
                                                      &op->group_id, seq);
        }

        ngx_http_chat_event_free(&ev);

        cJSON_AddItemToArray(list, item);
        n++;
        prev = seq;
    }

    if (failed) {
        cJSON_Delete(out);

    } else {
        cJSON_AddNumberToObject(out, "limit", (double) op->limit);
        cJSON_AddBoolToObject(out, "has_more", more);
        ngx_http_chat_render_next_after(out, more ? prev : -1);

        ngx_http_chat_op_output(op, out);
    }

    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(seqs);
}


/*
 * The newest page of a group whose every message has its event record
 * ("logged": created so, or migrated): the log read backwards from the
 * group's current seq, a message listed when its creation resolves and
 * it is not deleted (deletions, gaps and seqs not yet written are passed
 * over), newest first, up to a page and one.  The same JSON as the scan
 * of ngx_http_chat_queries.c.
 *
 * NGX_OK: answered (or op failed); NGX_DECLINED: the walk resolved
 * 4 x (limit + 1) + NGX_HTTP_CHAT_WALK_SLACK seqs without filling the
 * page (many deletions): the caller scans instead.
 */

ngx_int_t
ngx_http_chat_latest_page(ngx_http_chat_op_t *op, mongoc_client_t *client,
    int64_t cur)
{
    cJSON                *out, *list;
    int64_t               n, seq, budget;
    ngx_int_t             rc;
    ngx_uint_t            more;
    bson_iter_t           it;
    bson_oid_t            last;
    ngx_http_chat_ev_t    ev;
    mongoc_collection_t  *seqs, *messages;

    seqs = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "seqs");
    messages = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                            "messages");

    out = ngx_http_chat_render_page("messages", &op->group_id, &list);
    budget = 4 * (op->limit + 1) + NGX_HTTP_CHAT_WALK_SLACK;
    n = 0;
    more = 0;
    rc = NGX_OK;

    for (seq = cur; seq >= 1; seq--) {

        if (cur - seq >= budget) {
            (void) snprintf(op->error, sizeof(op->error),
                            "newest page: %lld events walked back from "
                            "seq %lld without a page of %lld messages "
                            "(deletions): scanned instead",
                            (long long) budget, (long long) cur,
                            (long long) op->limit);
            rc = NGX_DECLINED;
            break;
        }

        if (ngx_http_chat_event_resolve(op, seqs, messages, seq, &ev)
            != NGX_OK)
        {
            rc = NGX_ERROR;
            break;
        }

        if (ev.state != NGX_HTTP_CHAT_EV_CREATED
            || (bson_iter_init_find(&it, ev.msg, "is_deleted")
                && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it)))
        {
            ngx_http_chat_event_free(&ev);
            continue;
        }

        if (n == op->limit) {
            more = 1;
            ngx_http_chat_event_free(&ev);
            break;
        }

        cJSON_AddItemToArray(list, ngx_http_chat_render_message(ev.msg));
        bson_oid_copy(&ev.mid, &last);
        n++;

        ngx_http_chat_event_free(&ev);
    }

    if (rc == NGX_OK) {
        ngx_http_chat_render_paging(out, op->page, op->limit, more);
        ngx_http_chat_render_next_before(out, more ? &last : NULL);
        ngx_http_chat_op_output(op, out);

    } else {
        cJSON_Delete(out);
    }

    mongoc_collection_destroy(messages);
    mongoc_collection_destroy(seqs);

    return rc == NGX_DECLINED ? NGX_DECLINED : NGX_OK;
}


/*
 * The group's current seq (0 when it has none: no event yet, or a group
 * of older code) and whether every message of it has its event record.
 * NGX_OK; NGX_DECLINED: no such group (NOT_FOUND); NGX_ERROR.
 */

ngx_int_t
ngx_http_chat_group_seq(ngx_http_chat_op_t *op, mongoc_client_t *client,
    int64_t *cur, ngx_uint_t *logged)
{
    bson_t               *doc;
    ngx_int_t             rc;
    bson_iter_t           it;
    mongoc_collection_t  *groups;

    groups = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                          "groups");

    rc = ngx_http_chat_find_id(op, groups, NULL, &op->group_id, &doc);

    if (rc == NGX_OK) {
        *cur = ngx_http_chat_event_int(doc, "seq");
        if (*cur < 0) {
            *cur = 0;
        }

        *logged = (bson_iter_init_find(&it, doc, "logged")
                   && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it));

        bson_destroy(doc);

    } else if (rc == NGX_DECLINED) {
        op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
    }

    mongoc_collection_destroy(groups);

    return rc;
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
                                                         at)
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
    const bson_oid_t *mid, int64_t seq, int64_t deleted_at)
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


/* an integer field (a seq), or -1 */

int64_t
ngx_http_chat_event_int(const bson_t *doc, const char *field)
{
    bson_iter_t  it;

    if (bson_iter_init_find(&it, doc, field)
        && (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)))
    {
        return bson_iter_as_int64(&it);
    }

    return -1;
}


/* "<group id>:<seq>", the _id of a seq's record */

void
ngx_http_chat_seq_id(char *id, const bson_oid_t *group_id, int64_t seq)
{
    bson_oid_to_string(group_id, id);
    (void) snprintf(id + NGX_HTTP_CHAT_OID_LEN,
                    NGX_HTTP_CHAT_SEQ_ID_LEN - NGX_HTTP_CHAT_OID_LEN, ":%lld",
                    (long long) seq);
}


/* "<message id>:deleted", the _id of a deletion's claim */

void
ngx_http_chat_deletion_id(char *id, const bson_oid_t *message_id)
{
    bson_oid_to_string(message_id, id);
    (void) ngx_cpystrn((u_char *) id + NGX_HTTP_CHAT_OID_LEN,
                       (u_char *) ":deleted",
                       NGX_HTTP_CHAT_SEQ_ID_LEN - NGX_HTTP_CHAT_OID_LEN);
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

