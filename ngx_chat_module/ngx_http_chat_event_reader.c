/*
 * ngx_http_chat_event_reader.c - reading a group's event log by _id, the
 * one kind of read the embedded database answers without a scan: the
 * state of each seq (its record, then its message or its deletion's
 * claim), the buckets of NGX_HTTP_CHAT_BUCKET events sealed once final,
 * and the reader the walks of ngx_http_chat_event_log.c go through.
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
#include "ngx_http_chat_event_reader.h"
#include "ngx_http_chat_counters.h"


static bson_t *ngx_http_chat_message_copy(const bson_t *doc);


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
 *             insert failed, or the counter, stepped back by FerretDB's
 *             lost updates, hands it out again much later);
 *   PENDING   a record, not (yet) its event: the message or the deletion
 *             claim is still being written, or its write failed;
 *   GAP       a record whose event is another seq's: a deletion that
 *             lost to another, a message two migrations numbered at once
 *             (ngx_http_chat_migrate.c); or a "void" record, the mark of
 *             a MISSING seq a reader passed (ngx_http_chat_log_void());
 *   CREATED / DELETED: the event.
 * A MISSING or PENDING seq younger than NGX_HTTP_CHAT_SEQ_SETTLE x
 * chat_db_timeout may still become an event; past that, it is a gap for
 * good (every write of an operation is done or failed by then).  A
 * MISSING seq is passed only once a reader has voided it: no take can
 * claim it afterwards.
 */

ngx_int_t
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


void
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


static const char  *ngx_http_chat_message_fields[] = {
    "_id", "group_id", "user_id", "content", "created_at", "seq", NULL
};


void
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


void
ngx_http_chat_log_clear(ngx_http_chat_log_t *log)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_CHAT_BUCKET; i++) {
        ngx_http_chat_event_free(&log->slots[i]);
    }

    ngx_memzero(log->slots, sizeof(log->slots));
}


void
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

ngx_int_t
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
 * Seqs from..to, each MISSING (never claimed), passed as gaps for good:
 * a "void" record {_id: "<group id>:<seq>", group_id, seq, type: "void",
 * at} claims each of them first, in one insert.  FerretDB's $inc
 * is not atomic: its counter can step back (a stale read-modify-write,
 * seqprobe measured steps of 100 and more) and hand out a seq that was
 * taken but never claimed (a failed claim insert, a worker killed after
 * its $inc) long after the readers passed it; claimed then, its event
 * would be stored below events every subscriber has delivered, and
 * dropped live by all of them.  The void's unique _id refuses that claim
 * (E11000: its take takes the next seq), on MongoDB as on FerretDB, so a
 * seq a reader passed never gets an event.
 *
 * NGX_OK: all voided; NGX_DECLINED: one of them was claimed (or voided
 * by another reader) meanwhile: the walk stops before the run, and the
 * next one reads what each seq of it is now; NGX_ERROR.
 */

ngx_int_t
ngx_http_chat_log_void(ngx_http_chat_log_t *log, int64_t from, int64_t to)
{
    char           id[NGX_HTTP_CHAT_SEQ_ID_LEN];
    bson_t        *docs;
    int64_t        seq, at, n, i;
    ngx_int_t      rc;
    bson_error_t   error;
    const bson_t  **ptrs;

    if (to < from) {
        return NGX_OK;
    }

    n = to - from + 1;

    docs = calloc((size_t) n, sizeof(bson_t));
    ptrs = calloc((size_t) n, sizeof(bson_t *));

    if (docs == NULL || ptrs == NULL) {
        free(docs);
        free(ptrs);
        log->op->result = NGX_HTTP_CHAT_RES_ERROR;
        (void) snprintf(log->op->error, sizeof(log->op->error),
                        "event log: out of memory");
        return NGX_ERROR;
    }

    at = (int64_t) (ngx_http_chat_realtime_us() / 1000);

    for (i = 0; i < n; i++) {
        seq = from + i;
        ngx_http_chat_seq_id(id, &log->op->group_id, seq);

        bson_init(&docs[i]);
        BSON_APPEND_UTF8(&docs[i], "_id", id);
        BSON_APPEND_OID(&docs[i], "group_id", &log->op->group_id);
        BSON_APPEND_INT64(&docs[i], "seq", seq);
        BSON_APPEND_UTF8(&docs[i], "type", "void");
        BSON_APPEND_DATE_TIME(&docs[i], "at", at);
        ptrs[i] = &docs[i];
    }

    /* one write; a seq claimed already is refused, its event kept */

    if (mongoc_collection_insert_many(log->seqs, ptrs, (size_t) n, NULL,
                                      NULL, &error))
    {
        rc = NGX_OK;

    } else if (error.code == NGX_HTTP_CHAT_MONGO_DUPLICATE_KEY) {
        rc = NGX_DECLINED;

    } else {
        ngx_http_chat_op_fail(log->op, &error, "void missing seqs");
        rc = NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        bson_destroy(&docs[i]);
    }

    free(docs);
    free(ptrs);

    return rc;
}


/*
 * Bucket log->k, every slot resolved: inserted if every slot is final.
 * A MISSING seq is final when the next seq of the bucket that has a time
 * is older than the settle time, and then voided (ngx_http_chat_log_void():
 * its slot a GAP from then on); a PENDING one when it is.  A failure to
 * void or insert is no failure of the read: the next reader tries again.
 */

void
ngx_http_chat_log_seal(ngx_http_chat_log_t *log)
{
    char                 id[NGX_HTTP_CHAT_SEQ_ID_LEN], key[16];
    char                 saved[sizeof(log->op->error)];
    bson_t               doc, packed, arr, ev;
    int64_t              at, seq;
    ngx_int_t            i, n;
    ngx_http_chat_res_e  result;
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

    /* every MISSING seq of it is final: voided before it is left out */

    for (i = 0; i < NGX_HTTP_CHAT_BUCKET; i++) {
        slot = &log->slots[i];

        if (slot->state != NGX_HTTP_CHAT_EV_MISSING) {
            continue;
        }

        seq = log->k * NGX_HTTP_CHAT_BUCKET + i + 1;

        result = log->op->result;
        ngx_memcpy(saved, log->op->error, sizeof(saved));

        if (ngx_http_chat_log_void(log, seq, seq) != NGX_OK) {
            /* claimed meanwhile, or failed: no failure of the read */
            log->op->result = result;
            ngx_memcpy(log->op->error, saved, sizeof(saved));
            return;
        }

        slot->state = NGX_HTTP_CHAT_EV_GAP;
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

ngx_int_t
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


ngx_int_t
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


ngx_uint_t
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

cJSON *
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
