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

#define NGX_HTTP_CHAT_MONGO_DUPLICATE_KEY  11000

/*
 * The bounds of a walk of the log (see ngx_http_chat_op_list_events()).
 * A seq is settled 2 chat_db_timeouts after it was taken: its claim, then
 * its event's write, each bounded by chat_db_timeout (the client's socket
 * and selection timeouts), follow the $inc at once on the same thread.
 * Every subscriber of the group waits that long for a seq whose taker
 * died (a worker killed between the claim and the write).
 */
#define NGX_HTTP_CHAT_SEQ_SETTLE           2
#define NGX_HTTP_CHAT_WALK_SLACK           64
#define NGX_HTTP_CHAT_TAIL                 1024


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
    bson_t              *msg;            /* CREATED: the message as sent */
} ngx_http_chat_ev_t;


static ngx_int_t ngx_http_chat_event_resolve(ngx_http_chat_op_t *op,
    mongoc_collection_t *seqs, mongoc_collection_t *messages, int64_t seq,
    ngx_http_chat_ev_t *ev);
static void ngx_http_chat_event_free(ngx_http_chat_ev_t *ev);
static int64_t ngx_http_chat_event_time(const bson_t *doc, const char *field);
static bson_t *ngx_http_chat_message_copy(const bson_t *doc);
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
                ev->msg = ngx_http_chat_message_copy(doc);
            }

            bson_destroy(doc);

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
 * Buckets.  Once every seq of a range of NGX_HTTP_CHAT_BUCKET is final
 * (an event, or a gap for good), the reader that resolved them one by one
 * inserts them as one document, {_id: "<group id>:b<k>", group_id,
 * bucket: k, events: BinData(the BSON of {events: [{s: seq, id: message
 * id, t: "m", u: user_id, c: content, at: created_at} or {s, id, t: "d"}
 * (a deletion), ...]})} for seqs k x N + 1 to (k + 1) x N (gaps left
 * out), in seqs: from then on the range costs one point read instead of
 * one or two a seq.  Packed as binary because FerretDB's cost is in
 * decoding fields: a bucket of 16 events as subdocuments took ~2.5 ms to
 * read, as one binary field ~0.5 ms.  A bucket is written once and
 * never updated (two readers sealing one at once: the second insert is
 * refused as a duplicate, and was the same document), so FerretDB's
 * lost updates cannot touch it.  It holds what does not change: a
 * creation's message as it was sent; whether the message was deleted
 * since is the log's later deletion event, which the readers look for
 * (ngx_http_chat_log_deleted()).
 */

#define NGX_HTTP_CHAT_BUCKET       16
#define NGX_HTTP_CHAT_BUCKET_FULL  0xffff


typedef struct {
    ngx_http_chat_op_t   *op;
    mongoc_collection_t  *seqs;
    mongoc_collection_t  *messages;
    int64_t               cur;           /* the group's seq */
    int64_t               young;         /* settle: later than this (ms) */
    int64_t               k;             /* the bucket in slots, or -1 */
    ngx_uint_t            sealed;        /* slots from its document */
    uint32_t              resolved;      /* else: the slots resolved */
    ngx_http_chat_ev_t    slots[NGX_HTTP_CHAT_BUCKET];

    bson_oid_t           *deleted;       /* messages seen deleted */
    ngx_uint_t            ndeleted;
    ngx_uint_t            nalloc;
} ngx_http_chat_log_t;


static const char  *ngx_http_chat_message_fields[] = {
    "_id", "group_id", "user_id", "content", "created_at", "seq", NULL
};


static void
ngx_http_chat_log_init(ngx_http_chat_log_t *log, ngx_http_chat_op_t *op,
    mongoc_client_t *client, int64_t cur)
{
    ngx_memzero(log, sizeof(ngx_http_chat_log_t));

    log->op = op;
    log->seqs = mongoc_client_get_collection(client,
                                             ngx_http_chat_queries.db,
                                             "seqs");
    log->messages = mongoc_client_get_collection(client,
                                                 ngx_http_chat_queries.db,
                                                 "messages");
    log->cur = cur;
    log->young = (int64_t) (ngx_http_chat_realtime_us() / 1000)
                 - (int64_t) ngx_http_chat_queries.timeout_ms
                   * NGX_HTTP_CHAT_SEQ_SETTLE;
    log->k = -1;
}


static void
ngx_http_chat_log_clear(ngx_http_chat_log_t *log)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_CHAT_BUCKET; i++) {
        ngx_http_chat_event_free(&log->slots[i]);
    }

    ngx_memzero(log->slots, sizeof(log->slots));
}


static void
ngx_http_chat_log_done(ngx_http_chat_log_t *log)
{
    ngx_http_chat_log_clear(log);
    free(log->deleted);
    mongoc_collection_destroy(log->messages);
    mongoc_collection_destroy(log->seqs);
}


/* the fields of a message as it was sent: no deletion state */

static bson_t *
ngx_http_chat_message_copy(const bson_t *doc)
{
    bson_t       *copy;
    ngx_uint_t    i;
    bson_iter_t   it;

    copy = bson_new();

    for (i = 0; ngx_http_chat_message_fields[i]; i++) {
        if (bson_iter_init_find(&it, doc, ngx_http_chat_message_fields[i])) {
            (void) bson_append_iter(copy, ngx_http_chat_message_fields[i], -1,
                                    &it);
        }
    }

    return copy;
}


/* bucket k into the slots: from its document, or left to resolve */

static ngx_int_t
ngx_http_chat_log_load(ngx_http_chat_log_t *log, int64_t k)
{
    char                 id[NGX_HTTP_CHAT_SEQ_ID_LEN];
    bson_t              *doc, sub, packed;
    int64_t              seq, i;
    uint32_t             len;
    ngx_int_t            rc;
    bson_iter_t          it, ev, f;
    bson_subtype_t       subtype;
    const uint8_t       *data;
    ngx_http_chat_ev_t  *slot;

    ngx_http_chat_log_clear(log);
    log->k = k;
    log->sealed = 0;
    log->resolved = 0;

    bson_oid_to_string(&log->op->group_id, id);
    (void) snprintf(id + NGX_HTTP_CHAT_OID_LEN,
                    sizeof(id) - NGX_HTTP_CHAT_OID_LEN, ":b%lld",
                    (long long) k);

    rc = ngx_http_chat_find_id(log->op, log->seqs, id, NULL, &doc);
    if (rc != NGX_OK) {
        return rc == NGX_DECLINED ? NGX_OK : NGX_ERROR;
    }

    log->sealed = 1;
    data = NULL;
    len = 0;

    for (i = 0; i < NGX_HTTP_CHAT_BUCKET; i++) {
        log->slots[i].state = NGX_HTTP_CHAT_EV_GAP;
    }

    /* "events": a BSON document {events: [...]} packed as binary */

    if (bson_iter_init_find(&it, doc, "events")
        && BSON_ITER_HOLDS_BINARY(&it))
    {
        bson_iter_binary(&it, &subtype, &len, &data);
    }

    if (data && bson_init_static(&packed, data, len)
        && bson_iter_init_find(&it, &packed, "events")
        && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &ev))
    {
        while (bson_iter_next(&ev)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&ev)) {
                continue;
            }

            bson_iter_document(&ev, &len, &data);
            if (!bson_init_static(&sub, data, len)) {
                continue;
            }

            seq = ngx_http_chat_event_int(&sub, "s");
            i = seq - 1 - k * NGX_HTTP_CHAT_BUCKET;

            if (seq < 1 || i < 0 || i >= NGX_HTTP_CHAT_BUCKET
                || !bson_iter_init_find(&f, &sub, "id")
                || !BSON_ITER_HOLDS_OID(&f))
            {
                continue;
            }

            slot = &log->slots[i];
            bson_oid_copy(bson_iter_oid(&f), &slot->mid);

            if (bson_iter_init_find(&f, &sub, "t") && BSON_ITER_HOLDS_UTF8(&f)
                && strcmp(bson_iter_utf8(&f, NULL), "d") == 0)
            {
                slot->state = NGX_HTTP_CHAT_EV_DELETED;
                continue;
            }

            /* the message as the messages collection has it */

            slot->msg = bson_new();
            BSON_APPEND_OID(slot->msg, "_id", &slot->mid);
            BSON_APPEND_OID(slot->msg, "group_id", &log->op->group_id);

            if (bson_iter_init_find(&f, &sub, "u")) {
                (void) bson_append_iter(slot->msg, "user_id", -1, &f);
            }

            if (bson_iter_init_find(&f, &sub, "c")) {
                (void) bson_append_iter(slot->msg, "content", -1, &f);
            }

            if (bson_iter_init_find(&f, &sub, "at")) {
                (void) bson_append_iter(slot->msg, "created_at", -1, &f);
            }

            BSON_APPEND_INT64(slot->msg, "seq", seq);
            slot->state = NGX_HTTP_CHAT_EV_CREATED;
        }
    }

    bson_destroy(doc);

    return NGX_OK;
}


/*
 * Bucket log->k, every slot resolved: inserted if every slot is final.
 * A MISSING seq is final when the next seq of the bucket that has a time
 * is older than the settle time; a PENDING one when it is.  A failure to
 * insert is no failure of the read: the next reader tries again.
 */

static void
ngx_http_chat_log_seal(ngx_http_chat_log_t *log)
{
    char                 id[NGX_HTTP_CHAT_SEQ_ID_LEN], key[16];
    bson_t               doc, packed, arr, ev;
    int64_t              at, seq;
    ngx_int_t            i, n;
    bson_iter_t          it;
    bson_error_t         error;
    ngx_http_chat_ev_t  *slot;

    at = -1;                             /* the next slot's time: none */

    for (i = NGX_HTTP_CHAT_BUCKET - 1; i >= 0; i--) {
        slot = &log->slots[i];

        switch (slot->state) {

        case NGX_HTTP_CHAT_EV_MISSING:
            if (at < 0 || at > log->young) {
                return;
            }
            break;

        case NGX_HTTP_CHAT_EV_PENDING:
            if (slot->at > log->young) {
                return;
            }
            break;

        default:
            break;
        }

        if (slot->state != NGX_HTTP_CHAT_EV_MISSING) {
            at = slot->at;
        }
    }

    bson_oid_to_string(&log->op->group_id, id);
    (void) snprintf(id + NGX_HTTP_CHAT_OID_LEN,
                    sizeof(id) - NGX_HTTP_CHAT_OID_LEN, ":b%lld",
                    (long long) log->k);

    bson_init(&doc);
    BSON_APPEND_UTF8(&doc, "_id", id);
    BSON_APPEND_OID(&doc, "group_id", &log->op->group_id);
    BSON_APPEND_INT64(&doc, "bucket", log->k);

    bson_init(&packed);
    BSON_APPEND_ARRAY_BEGIN(&packed, "events", &arr);

    for (i = 0, n = 0; i < NGX_HTTP_CHAT_BUCKET; i++) {
        slot = &log->slots[i];
        seq = log->k * NGX_HTTP_CHAT_BUCKET + i + 1;

        if (slot->state != NGX_HTTP_CHAT_EV_CREATED
            && slot->state != NGX_HTTP_CHAT_EV_DELETED)
        {
            continue;
        }

        (void) snprintf(key, sizeof(key), "%d", (int) n++);

        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &ev);
        BSON_APPEND_INT64(&ev, "s", seq);
        BSON_APPEND_OID(&ev, "id", &slot->mid);

        if (slot->state == NGX_HTTP_CHAT_EV_DELETED) {
            BSON_APPEND_UTF8(&ev, "t", "d");

        } else {
            BSON_APPEND_UTF8(&ev, "t", "m");

            if (bson_iter_init_find(&it, slot->msg, "user_id")) {
                (void) bson_append_iter(&ev, "u", -1, &it);
            }

            if (bson_iter_init_find(&it, slot->msg, "content")) {
                (void) bson_append_iter(&ev, "c", -1, &it);
            }

            if (bson_iter_init_find(&it, slot->msg, "created_at")) {
                (void) bson_append_iter(&ev, "at", -1, &it);
            }
        }

        bson_append_document_end(&arr, &ev);
    }

    bson_append_array_end(&packed, &arr);

    BSON_APPEND_BINARY(&doc, "events", BSON_SUBTYPE_BINARY,
                       bson_get_data(&packed), packed.len);

    (void) mongoc_collection_insert_one(log->seqs, &doc, NULL, NULL, &error);

    bson_destroy(&packed);
    bson_destroy(&doc);
}


/*
 * The seq's slot: from its bucket's document; else, for a bucket whose
 * seqs are all taken (its end at most the group's seq), every slot of it
 * resolved by point reads and the bucket sealed if they are final, so
 * that the next reader reads it at once; else (the newest, partial
 * bucket) the seq alone resolved.
 */

static ngx_int_t
ngx_http_chat_log_at(ngx_http_chat_log_t *log, int64_t seq,
    ngx_http_chat_ev_t **ev)
{
    int64_t    k, i, j, first, end;
    uint32_t   bit;

    k = (seq - 1) / NGX_HTTP_CHAT_BUCKET;
    i = (seq - 1) % NGX_HTTP_CHAT_BUCKET;

    if (k != log->k && ngx_http_chat_log_load(log, k) != NGX_OK) {
        return NGX_ERROR;
    }

    bit = (uint32_t) 1 << i;

    if (!log->sealed && !(log->resolved & bit)) {
        first = k * NGX_HTTP_CHAT_BUCKET + 1;
        end = first + NGX_HTTP_CHAT_BUCKET - 1;

        for (j = (end <= log->cur) ? 0 : i;
             j <= ((end <= log->cur) ? NGX_HTTP_CHAT_BUCKET - 1 : i);
             j++)
        {
            if (log->resolved & ((uint32_t) 1 << j)) {
                continue;
            }

            if (ngx_http_chat_event_resolve(log->op, log->seqs,
                                            log->messages, first + j,
                                            &log->slots[j])
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            log->resolved |= (uint32_t) 1 << j;
        }

        if (log->resolved == NGX_HTTP_CHAT_BUCKET_FULL) {
            ngx_http_chat_log_seal(log);
        }
    }

    *ev = &log->slots[i];

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_log_add_deleted(ngx_http_chat_log_t *log, const bson_oid_t *mid)
{
    bson_oid_t  *p;

    if (log->ndeleted == log->nalloc) {
        p = realloc(log->deleted, (log->nalloc * 2 + 16) * sizeof(bson_oid_t));
        if (p == NULL) {
            log->op->result = NGX_HTTP_CHAT_RES_ERROR;
            (void) snprintf(log->op->error, sizeof(log->op->error),
                            "event log: out of memory");
            return NGX_ERROR;
        }

        log->deleted = p;
        log->nalloc = log->nalloc * 2 + 16;
    }

    bson_oid_copy(mid, &log->deleted[log->ndeleted++]);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_chat_log_is_deleted(ngx_http_chat_log_t *log, const bson_oid_t *mid)
{
    ngx_uint_t  i;

    for (i = 0; i < log->ndeleted; i++) {
        if (bson_oid_equal(&log->deleted[i], mid)) {
            return 1;
        }
    }

    return 0;
}


/* {type: "message", message: {...}, seq}: the message as sent, or, if
 * deleted since, without its text */

static cJSON *
ngx_http_chat_log_render(const ngx_http_chat_ev_t *ev, ngx_uint_t deleted)
{
    bson_t  *doc;
    cJSON   *msg;

    if (!deleted) {
        return ngx_http_chat_render_message(ev->msg);
    }

    doc = bson_copy(ev->msg);
    BSON_APPEND_BOOL(doc, "is_deleted", true);
    msg = ngx_http_chat_render_message(doc);
    bson_destroy(doc);

    return msg;
}


/*
 * The events of a group after op->after, oldest first: seq after+1,
 * after+2, ... up to the group's current seq, each from its bucket or
 * resolved by point reads (above); the page ends at op->limit items.
 *
 * A seq is taken before its event is written, so a later event may be
 * stored before an earlier one is: a page ends before a MISSING or
 * PENDING seq for as long as it (or, for a MISSING one, the next event
 * that has a time) is younger than NGX_HTTP_CHAT_SEQ_SETTLE
 * chat_db_timeouts, as if nothing came after it yet; a walk from the last
 * seq seen then gets the late event too.  Past that, it is a gap for good.
 *
 * A page walks at most 2 x limit + NGX_HTTP_CHAT_WALK_SLACK seqs: past
 * that (a long run of gaps) it ends with has_more and next_after, the
 * last seq walked, or, inside a run of MISSING seqs whose age it could
 * not learn, as if the log ended there for now.
 *
 * A message of the page deleted since is listed without its text, as
 * the scan of the messages would: the walk goes on to the group's seq for
 * its deletion (at most NGX_HTTP_CHAT_TAIL seqs further: in buckets, a
 * few reads), or, farther behind, reads the deletion's claim.
 */

void
ngx_http_chat_op_list_events(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
    char                  id[NGX_HTTP_CHAT_SEQ_ID_LEN];
    cJSON                *out, *list, *item;
    bson_t               *claim;
    int64_t               n, i, prev, seq, walked, cur, hole, budget;
    ngx_int_t             rc;
    ngx_uint_t            more, logged, failed;
    ngx_http_chat_ev_t   *ev, *page;
    ngx_http_chat_log_t   log;

    if (ngx_http_chat_group_seq(op, client, &cur, &logged) != NGX_OK) {
        return;
    }

    page = calloc((size_t) op->limit, sizeof(ngx_http_chat_ev_t));
    if (page == NULL) {
        op->result = NGX_HTTP_CHAT_RES_ERROR;
        (void) snprintf(op->error, sizeof(op->error),
                        "list events: out of memory");
        return;
    }

    ngx_http_chat_log_init(&log, op, client, cur);

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

        if (ngx_http_chat_log_at(&log, seq, &ev) != NGX_OK) {
            failed = 1;
            break;
        }

        if (ev->state == NGX_HTTP_CHAT_EV_MISSING) {
            if (hole == 0) {
                hole = seq;
            }

            continue;
        }

        if (hole) {
            if (ev->at > log.young) {
                break;                   /* the hole may still be filled */
            }

            hole = 0;                    /* gaps for good */
            prev = seq - 1;
        }

        if (ev->state == NGX_HTTP_CHAT_EV_PENDING) {
            if (ev->at > log.young) {
                break;                   /* may still be written: later */
            }

            prev = seq;                  /* a gap for good */
            continue;
        }

        if (ev->state == NGX_HTTP_CHAT_EV_GAP) {
            prev = seq;
            continue;
        }

        if (n == op->limit) {
            more = 1;                    /* one more than a page */
            break;
        }

        if (ev->state == NGX_HTTP_CHAT_EV_DELETED
            && ngx_http_chat_log_add_deleted(&log, &ev->mid) != NGX_OK)
        {
            failed = 1;
            break;
        }

        page[n].state = ev->state;
        page[n].at = seq;                /* here: the item's seq */
        bson_oid_copy(&ev->mid, &page[n].mid);
        page[n].msg = ev->msg ? bson_copy(ev->msg) : NULL;
        n++;
        prev = seq;
    }

    /* the deletions of the page's messages, later in the log */

    walked = seq - 1;

    if (!failed && cur - walked <= NGX_HTTP_CHAT_TAIL) {
        for (seq = walked + 1; seq <= cur; seq++) {
            if (ngx_http_chat_log_at(&log, seq, &ev) != NGX_OK) {
                failed = 1;
                break;
            }

            if (ev->state == NGX_HTTP_CHAT_EV_DELETED
                && ngx_http_chat_log_add_deleted(&log, &ev->mid) != NGX_OK)
            {
                failed = 1;
                break;
            }
        }

    } else {
        for (i = 0; !failed && i < n; i++) {
            if (page[i].state != NGX_HTTP_CHAT_EV_CREATED
                || ngx_http_chat_log_is_deleted(&log, &page[i].mid))
            {
                continue;
            }

            ngx_http_chat_deletion_id(id, &page[i].mid);

            rc = ngx_http_chat_find_id(op, log.seqs, id, NULL, &claim);

            if (rc == NGX_OK) {
                bson_destroy(claim);
                rc = ngx_http_chat_log_add_deleted(&log, &page[i].mid);
            }

            failed = (rc == NGX_ERROR);
        }
    }

    if (!failed) {
        /* "messages", like every listing of the route; items are events */
        out = ngx_http_chat_render_page("messages", &op->group_id, &list);

        for (i = 0; i < n; i++) {
            if (page[i].state == NGX_HTTP_CHAT_EV_CREATED) {
                item = ngx_http_chat_render_message_event(
                           ngx_http_chat_log_render(&page[i],
                               ngx_http_chat_log_is_deleted(&log,
                                                            &page[i].mid)));

            } else {
                item = ngx_http_chat_render_deleted_event(&page[i].mid,
                                                          &op->group_id,
                                                          page[i].at);
            }

            cJSON_AddItemToArray(list, item);
        }

        cJSON_AddNumberToObject(out, "limit", (double) op->limit);
        cJSON_AddBoolToObject(out, "has_more", more);
        ngx_http_chat_render_next_after(out, more ? prev : -1);

        ngx_http_chat_op_output(op, out);
    }

    for (i = 0; i < n; i++) {
        ngx_http_chat_event_free(&page[i]);
    }

    free(page);
    ngx_http_chat_log_done(&log);
}


/*
 * The newest page of a group whose every message has its event record
 * ("logged": created so, or migrated): the log read backwards from the
 * group's current seq (its buckets, then point reads for the newest
 * seqs), a message listed when its creation is an event and no deletion
 * of it was met on the way (deletions come after), newest first, up to a
 * page and one.  The same JSON as the scan of ngx_http_chat_queries.c.
 *
 * NGX_OK: answered (or op failed); NGX_DECLINED: the walk passed
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
    bson_oid_t            last;
    ngx_http_chat_ev_t   *ev;
    ngx_http_chat_log_t   log;

    ngx_http_chat_log_init(&log, op, client, cur);

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

        if (ngx_http_chat_log_at(&log, seq, &ev) != NGX_OK) {
            rc = NGX_ERROR;
            break;
        }

        if (ev->state == NGX_HTTP_CHAT_EV_DELETED) {
            if (ngx_http_chat_log_add_deleted(&log, &ev->mid) != NGX_OK) {
                rc = NGX_ERROR;
                break;
            }

            continue;
        }

        if (ev->state != NGX_HTTP_CHAT_EV_CREATED
            || ngx_http_chat_log_is_deleted(&log, &ev->mid))
        {
            continue;
        }

        if (n == op->limit) {
            more = 1;
            break;
        }

        cJSON_AddItemToArray(list, ngx_http_chat_log_render(ev, 0));
        bson_oid_copy(&ev->mid, &last);
        n++;
    }

    if (rc == NGX_OK) {
        ngx_http_chat_render_paging(out, op->page, op->limit, more);
        ngx_http_chat_render_next_before(out, more ? &last : NULL);
        ngx_http_chat_op_output(op, out);

    } else {
        cJSON_Delete(out);
    }

    ngx_http_chat_log_done(&log);

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

        op->seq = *cur;                  /* as group_exists() says it */

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

