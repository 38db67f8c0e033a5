/*
 * ngx_http_chat_migrate.c - a database written before the event log
 * (messages without "seq", groups without "seq" or "logged", no records
 * in "seqs") upgraded at start: by worker 0, on a pool thread, after the
 * indexes (the ensure-indexes op of ngx_http_chat_storage.c, retried
 * until it succeeds).
 *
 * Three steps, each a query for what is still to do, so that a run that
 * was interrupted, or two nginx starting together, only finish the work:
 *
 *   1. every message without "seq", in (group_id, created_at, _id) order,
 *      takes its group's next seq through ngx_http_chat_take_seq() (its
 *      record in seqs, as a new message's), then gets "seq" set;
 *   2. every deleted message without "deleted_seq", in (group_id,
 *      deleted_at, _id) order, takes a seq and its deletion's claim, then
 *      gets "deleted_seq" (all of a group's creations are numbered by
 *      step 1 before any of its deletions: they come after);
 *   3. every group not yet "logged" is marked so: its newest page is read
 *      from the log from then on (ngx_http_chat_latest_page()).
 *
 * The numbers go on from the group's seq, so events written by this code
 * before the migration ran keep theirs.  A message numbered twice (two
 * runs at once, one interrupted between its record and its "seq", or a
 * DELETE of it while the migration runs: ngx_http_chat_migrate_message()
 * numbers its creation before its deletion) keeps the first seq set in
 * it, and the other record is a gap (ngx_http_chat_event_log.c, GAP); two
 * runs at once may number a group's old messages out of their
 * (created_at, _id) order.
 *
 * A run that gets to its end inserts {_id: "migrated"} into seqs, and
 * the starts after it see that (one point read) and skip the rest: on the
 * embedded database steps 1 and 2 are each one query that decodes the
 * whole messages collection.  So messages that workers of the older code
 * write after it (during a binary upgrade from it) are not numbered:
 * remove the mark and restart once they are gone (README, "Upgrading").
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mongoc/mongoc.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_queries.h"
#include "ngx_http_chat_event_log.h"
#include "ngx_http_chat_migrate.h"


/* in seqs once a migration has run to its end */
#define NGX_HTTP_CHAT_MIGRATED  "migrated"


static ngx_int_t ngx_http_chat_migrate_messages(ngx_http_chat_op_t *op,
    mongoc_client_t *client, ngx_uint_t deletions, int64_t *done);
static ngx_int_t ngx_http_chat_migrate_one(ngx_http_chat_op_t *op,
    mongoc_client_t *client, mongoc_collection_t *messages,
    const bson_t *doc, ngx_uint_t deletion);
static ngx_int_t ngx_http_chat_migrate_groups(ngx_http_chat_op_t *op,
    mongoc_client_t *client, int64_t *done);
static ngx_int_t ngx_http_chat_set_field(ngx_http_chat_op_t *op,
    mongoc_collection_t *coll, const bson_oid_t *id, const char *field,
    int64_t seq);


void
ngx_http_chat_migrate(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
    cJSON                *out;
    bson_t               *doc, mark;
    int64_t               created, deleted, groups;
    ngx_int_t             rc;
    bson_error_t          error;
    mongoc_collection_t  *seqs;

    created = 0;
    deleted = 0;
    groups = 0;

    seqs = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "seqs");

    rc = ngx_http_chat_find_id(op, seqs, NGX_HTTP_CHAT_MIGRATED, NULL, &doc);

    if (rc == NGX_OK) {
        bson_destroy(doc);

    } else if (rc == NGX_DECLINED) {
        if (ngx_http_chat_migrate_messages(op, client, 0, &created) != NGX_OK
            || ngx_http_chat_migrate_messages(op, client, 1, &deleted)
               != NGX_OK
            || ngx_http_chat_migrate_groups(op, client, &groups) != NGX_OK)
        {
            mongoc_collection_destroy(seqs);
            return;
        }

        /* done: the next starts skip the scans (a second run at once
         * inserts the same mark: refused as a duplicate, and so done) */

        bson_init(&mark);
        BSON_APPEND_UTF8(&mark, "_id", NGX_HTTP_CHAT_MIGRATED);
        BSON_APPEND_DATE_TIME(&mark, "at",
                              (int64_t) (ngx_http_chat_realtime_us() / 1000));
        (void) mongoc_collection_insert_one(seqs, &mark, NULL, NULL, &error);
        bson_destroy(&mark);

    } else {
        mongoc_collection_destroy(seqs);
        return;
    }

    mongoc_collection_destroy(seqs);

    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "messages", (double) created);
    cJSON_AddNumberToObject(out, "deletions", (double) deleted);
    cJSON_AddNumberToObject(out, "groups", (double) groups);
    cJSON_AddBoolToObject(out, "done_before", rc == NGX_OK);

    ngx_http_chat_op_output(op, out);
}


static ngx_int_t
ngx_http_chat_migrate_messages(ngx_http_chat_op_t *op,
    mongoc_client_t *client, ngx_uint_t deletions, int64_t *done)
{
    bson_t                filter, opts, sort, exists;
    ngx_int_t             rc;
    bson_error_t          error;
    const bson_t         *doc;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *messages;

    messages = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                            "messages");

    bson_init(&filter);

    if (deletions) {
        BSON_APPEND_BOOL(&filter, "is_deleted", true);
    }

    BSON_APPEND_DOCUMENT_BEGIN(&filter, deletions ? "deleted_seq" : "seq",
                               &exists);
    BSON_APPEND_BOOL(&exists, "$exists", false);
    bson_append_document_end(&filter, &exists);

    bson_init(&opts);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "group_id", 1);
    BSON_APPEND_INT32(&sort, deletions ? "deleted_at" : "created_at", 1);
    BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(&opts, &sort);

    cursor = mongoc_collection_find_with_opts(messages, &filter, &opts, NULL);

    rc = NGX_OK;

    while (mongoc_cursor_next(cursor, &doc)) {
        rc = ngx_http_chat_migrate_one(op, client, messages, doc, deletions);

        if (rc == NGX_ERROR) {
            break;
        }

        if (rc == NGX_OK) {
            (*done)++;
        }

        rc = NGX_OK;
    }

    if (rc == NGX_OK && mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, deletions ? "migrate: deletions"
                                                    : "migrate: messages");
        rc = NGX_ERROR;
    }

    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    mongoc_collection_destroy(messages);

    return rc;
}


/* NGX_OK: numbered; NGX_DECLINED: passed over (its group is gone, or
 * another run numbered its deletion); NGX_ERROR (op->result) */

static ngx_int_t
ngx_http_chat_migrate_one(ngx_http_chat_op_t *op, mongoc_client_t *client,
    mongoc_collection_t *messages, const bson_t *doc, ngx_uint_t deletion)
{
    int64_t      seq, at;
    ngx_int_t    rc;
    bson_oid_t   mid;
    bson_iter_t  it;

    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it)) {
        return NGX_DECLINED;
    }

    bson_oid_copy(bson_iter_oid(&it), &mid);

    if (!bson_iter_init_find(&it, doc, "group_id")
        || !BSON_ITER_HOLDS_OID(&it))
    {
        return NGX_DECLINED;
    }

    /* the op is the migration's own: its group is this message's */
    bson_oid_copy(bson_iter_oid(&it), &op->group_id);

    /* a long migration waits for a seq lock as long as any op may */
    op->posted_us = ngx_http_chat_monotonic_us();

    rc = ngx_http_chat_take_seq(op, client,
                                deletion ? "message_deleted" : "message",
                                &mid, &seq);

    if (rc == NGX_DECLINED) {
        op->result = NGX_HTTP_CHAT_RES_OK;       /* a message of no group */
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (!deletion) {
        return ngx_http_chat_set_field(op, messages, &mid, "seq", seq);
    }

    at = (bson_iter_init_find(&it, doc, "deleted_at")
          && BSON_ITER_HOLDS_DATE_TIME(&it))
         ? bson_iter_date_time(&it)
         : (int64_t) (ngx_http_chat_realtime_us() / 1000);

    rc = ngx_http_chat_claim_deletion(op, client, &mid, seq, at);

    if (rc == NGX_DECLINED) {
        op->result = NGX_HTTP_CHAT_RES_OK;       /* marked from its claim */
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_chat_apply_deletion(op, client, &mid, seq, at, 0);
}


static ngx_int_t
ngx_http_chat_migrate_groups(ngx_http_chat_op_t *op, mongoc_client_t *client,
    int64_t *done)
{
    bson_t                filter, ne;
    ngx_int_t             rc;
    bson_iter_t           it;
    bson_error_t          error;
    const bson_t         *doc;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *groups;

    groups = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                          "groups");

    bson_init(&filter);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "logged", &ne);
    BSON_APPEND_BOOL(&ne, "$ne", true);
    bson_append_document_end(&filter, &ne);

    cursor = mongoc_collection_find_with_opts(groups, &filter, NULL, NULL);

    rc = NGX_OK;

    while (mongoc_cursor_next(cursor, &doc)) {
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it))
        {
            continue;
        }

        rc = ngx_http_chat_set_field(op, groups, bson_iter_oid(&it),
                                     "logged", -1);
        if (rc != NGX_OK) {
            break;
        }

        (*done)++;
    }

    if (rc == NGX_OK && mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "migrate: groups");
        rc = NGX_ERROR;
    }

    mongoc_cursor_destroy(cursor);
    bson_destroy(&filter);
    mongoc_collection_destroy(groups);

    return rc;
}


/* {$set: {field: seq}} (or, seq < 0, {field: true}) on the document of
 * _id id: one filter key, a point write on the embedded database */

static ngx_int_t
ngx_http_chat_set_field(ngx_http_chat_op_t *op, mongoc_collection_t *coll,
    const bson_oid_t *id, const char *field, int64_t seq)
{
    bson_t        filter, update, set;
    ngx_int_t     rc;
    bson_error_t  error;

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "_id", id);

    if (seq >= 0) {
        /* the first number set stays: {field: {$exists: false}} */
        BSON_APPEND_DOCUMENT_BEGIN(&filter, field, &set);
        BSON_APPEND_BOOL(&set, "$exists", false);
        bson_append_document_end(&filter, &set);
    }

    bson_init(&update);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);

    if (seq >= 0) {
        BSON_APPEND_INT64(&set, field, seq);

    } else {
        BSON_APPEND_BOOL(&set, field, true);
    }

    bson_append_document_end(&update, &set);

    rc = NGX_OK;

    if (!mongoc_collection_update_one(coll, &filter, &update, NULL, NULL,
                                      &error))
    {
        ngx_http_chat_op_fail(op, &error, "migrate: update");
        rc = NGX_ERROR;
    }

    bson_destroy(&update);
    bson_destroy(&filter);

    return rc;
}


ngx_int_t
ngx_http_chat_migrate_message(ngx_http_chat_op_t *op, mongoc_client_t *client,
    const bson_oid_t *mid)
{
    int64_t               seq;
    ngx_int_t             rc;
    mongoc_collection_t  *messages;

    rc = ngx_http_chat_take_seq(op, client, "message", mid, &seq);
    if (rc != NGX_OK) {
        return rc;
    }

    messages = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                            "messages");

    rc = ngx_http_chat_set_field(op, messages, mid, "seq", seq);

    mongoc_collection_destroy(messages);

    return rc;
}
