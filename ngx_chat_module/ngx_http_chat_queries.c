/*
 * ngx_http_chat_queries.c - the chat's MongoDB operations, one per op
 * kind, on a pool thread (ngx_http_chat_storage.c queues them and brings
 * their results back to the event loop).  They touch nothing but the op
 * (copied inputs, its own outputs), the client they are given and
 * malloc(); the JSON they answer with is rendered by
 * ngx_http_chat_render.c.
 *
 * Every read carries maxTimeMS; the client's socket and selection
 * timeouts bound the rest.  A database that is down or stalled yields
 * NGX_HTTP_CHAT_RES_UNAVAILABLE, never a hung request.
 *
 * Documents: groups {_id, name, created_at, created_by, seq} and messages
 * {_id, group_id (ObjectId), user_id, content, created_at, seq,
 * is_deleted, deleted_at, deleted_seq}; created_at is a BSON date.
 *
 * The events of a group by seq (taking the next seq, listing the events
 * after one) are in ngx_http_chat_event_log.c.
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
#include "ngx_http_chat_migrate.h"
#include "ngx_http_chat_counters.h"


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


ngx_http_chat_queries_t  ngx_http_chat_queries;


ngx_int_t
ngx_http_chat_queries_configure(const char *db, int32_t timeout_ms,
    ngx_log_t *log)
{
    (void) ngx_cpystrn((u_char *) ngx_http_chat_queries.db, (u_char *) db,
                       sizeof(ngx_http_chat_queries.db));
    ngx_http_chat_queries.timeout_ms = timeout_ms;

    if (ngx_http_chat_counters_init(log) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_chat_event_log_init(log);
}


void
ngx_http_chat_queries_run(ngx_http_chat_op_t *op, mongoc_client_t *client)
{
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
        if (op->has_after) {
            ngx_http_chat_op_list_events(op, client);

        } else {
            ngx_http_chat_op_list_messages(op, client);
        }

        break;

    case NGX_HTTP_CHAT_OP_DELETE_MESSAGE:
        ngx_http_chat_op_delete_message(op, client);
        break;

    case NGX_HTTP_CHAT_OP_ENSURE_INDEXES:
        ngx_http_chat_op_ensure_indexes(op, client);

        if (op->result == NGX_HTTP_CHAT_RES_OK) {
            ngx_http_chat_migrate(op, client);
        }

        break;
    }
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
    BSON_APPEND_INT64(&doc, "seq", 0);           /* the first event is 1 */
    BSON_APPEND_BOOL(&doc, "logged", true);      /* every event recorded */
    ngx_http_chat_counters_mark(&doc);

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "groups");

    if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
        ngx_http_chat_op_fail(op, &error, "insert group");

    } else {
        ngx_http_chat_counters_group(client, &oid, now);

        bson_oid_to_string(&oid, op->id_hex);
        ngx_http_chat_op_output(op, ngx_http_chat_render_group(&doc));
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

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "groups");
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    out = ngx_http_chat_render_page("groups", NULL, &list);
    n = 0;

    while (mongoc_cursor_next(cursor, &doc)) {
        if (n++ < op->limit) {
            cJSON_AddItemToArray(list, ngx_http_chat_render_group(doc));
        }
    }

    if (mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "list groups");
        cJSON_Delete(out);

    } else {
        ngx_http_chat_render_paging(out, op->page, op->limit, n > op->limit);
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

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "groups");
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    if (mongoc_cursor_next(cursor, &doc)) {
        ngx_http_chat_op_output(op, ngx_http_chat_render_group(doc));

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
    cJSON                *msg;
    int64_t               now, seq;
    bson_oid_t            oid;
    bson_error_t          error;
    mongoc_collection_t  *coll;

    bson_oid_init(&oid, NULL);

    /* no such group: NOT_FOUND, and no seq taken */

    if (ngx_http_chat_take_seq(op, client, "message", &oid, &seq) != NGX_OK) {
        return;
    }

    now = (int64_t) (ngx_http_chat_realtime_us() / 1000);

    bson_init(&doc);
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_OID(&doc, "group_id", &op->group_id);
    BSON_APPEND_UTF8(&doc, "user_id", op->user_id);
    bson_append_utf8(&doc, "content", -1, op->text, (int) op->text_len);
    BSON_APPEND_DATE_TIME(&doc, "created_at", now);
    BSON_APPEND_INT64(&doc, "seq", seq);
    BSON_APPEND_BOOL(&doc, "is_deleted", false);
    ngx_http_chat_counters_mark(&doc);

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "messages");

    if (!mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
        /* the seq stays taken: a gap, never reused */
        ngx_http_chat_op_fail(op, &error, "insert message");

    } else {
        ngx_http_chat_counters_created(op, client, now);

        bson_oid_to_string(&oid, op->id_hex);
        op->seq = seq;

        msg = ngx_http_chat_render_message(&doc);

        /* the WebSocket event carries the same message */
        ngx_http_chat_op_set_event(op, ngx_http_chat_render_event_message(msg));

        ngx_http_chat_op_output(op, msg);
    }

    mongoc_collection_destroy(coll);
    bson_destroy(&doc);
}


/*
 * A page of a group's messages, newest first.  The newest page of a
 * logged group (every message has its event record) is read from the
 * event log by point reads (ngx_http_chat_latest_page()); the other
 * pages ("before", "page") are a query, which on the embedded database
 * decodes the whole collection: in seq order for a logged group (the
 * index {group_id: 1, seq: -1} on MongoDB), so that they go on where the
 * newest page ends; in (created_at, _id) order for a group of older code
 * that the migration has not reached.
 */

static void
ngx_http_chat_op_list_messages(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    bson_t                filter, opts, sort, child, or, c1, c2, lt;
    bson_t               *cdoc;
    cJSON                *out, *list;
    int64_t               n, before_ms, before_seq, cur;
    ngx_int_t             rc;
    ngx_uint_t            logged;
    bson_iter_t           it;
    bson_error_t          error;
    const bson_t         *doc;
    const bson_oid_t     *last_oid;
    bson_oid_t            last;
    mongoc_cursor_t      *cursor;
    mongoc_collection_t  *coll;

    if (ngx_http_chat_group_seq(op, client, &cur, &logged) != NGX_OK) {
        return;
    }

    /* the page cache's expired page: still current, one read was enough */

    if (op->revalidate && logged && cur == op->cached_through) {
        op->page_current = 1;
        return;
    }

    if (logged && !op->has_before && op->skip == 0
        && ngx_http_chat_latest_page(op, client, cur) == NGX_OK)
    {
        return;
    }

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "messages");

    before_ms = 0;
    before_seq = -1;

    if (op->has_before) {

        /* the cursor message fixes the position: its seq, or
         * (created_at, _id); read by _id alone, its group checked here */

        rc = ngx_http_chat_find_id(op, coll, NULL, &op->before_id, &cdoc);

        if (rc == NGX_OK) {
            if (bson_iter_init_find(&it, cdoc, "group_id")
                && BSON_ITER_HOLDS_OID(&it)
                && bson_oid_equal(bson_iter_oid(&it), &op->group_id)
                && bson_iter_init_find(&it, cdoc, "created_at")
                && BSON_ITER_HOLDS_DATE_TIME(&it))
            {
                before_ms = bson_iter_date_time(&it);
                before_seq = logged ? ngx_http_chat_event_int(cdoc, "seq")
                                    : -1;

            } else {
                op->result = NGX_HTTP_CHAT_RES_BAD_CURSOR;
            }

            bson_destroy(cdoc);

        } else if (rc == NGX_DECLINED) {
            op->result = NGX_HTTP_CHAT_RES_BAD_CURSOR;
        }

        if (op->result != NGX_HTTP_CHAT_RES_OK) {
            mongoc_collection_destroy(coll);
            return;
        }
    }

    bson_init(&filter);
    BSON_APPEND_OID(&filter, "group_id", &op->group_id);
    BSON_APPEND_BOOL(&filter, "is_deleted", false);

    if (before_seq >= 0) {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "seq", &lt);
        BSON_APPEND_INT64(&lt, "$lt", before_seq);
        bson_append_document_end(&filter, &lt);

    } else if (op->has_before) {
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

    if (logged) {
        BSON_APPEND_INT32(&sort, "seq", -1);

    } else {
        BSON_APPEND_INT32(&sort, "created_at", -1);
        BSON_APPEND_INT32(&sort, "_id", -1);
    }

    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "skip", op->skip);
    BSON_APPEND_INT64(&opts, "limit", op->limit + 1);
    ngx_http_chat_maxtime(&opts);

    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    out = ngx_http_chat_render_page("messages", &op->group_id, &list);
    n = 0;
    last_oid = NULL;

    while (mongoc_cursor_next(cursor, &doc)) {
        if (n++ >= op->limit) {
            continue;
        }

        cJSON_AddItemToArray(list, ngx_http_chat_render_message(doc));

        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it)) {
            bson_oid_copy(bson_iter_oid(&it), &last);
            last_oid = &last;
        }
    }

    if (mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "list messages");
        cJSON_Delete(out);

    } else {
        ngx_http_chat_render_paging(out, op->page, op->limit, n > op->limit);
        ngx_http_chat_render_next_before(out, n > op->limit ? last_oid
                                                            : NULL);

        ngx_http_chat_op_output(op, out);
    }

    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
}


/*
 * A deletion: the message read by _id alone (one filter key: a point read
 * on the embedded database too), its group, state and author checked
 * here; then a seq, then the deletion's claim "<message id>:deleted"
 * (ngx_http_chat_claim_deletion()), whose unique _id makes exactly one of
 * two racing deletions win on both databases (the other's seq is a gap),
 * then the message marked by the winner, its one writer.
 */

static void
ngx_http_chat_op_delete_message(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    bson_t               *doc;
    int64_t               now, seq;
    ngx_int_t             rc;
    bson_iter_t           it;
    mongoc_collection_t  *coll;

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "messages");

    rc = ngx_http_chat_find_id(op, coll, NULL, &op->message_id, &doc);

    mongoc_collection_destroy(coll);

    if (rc != NGX_OK) {
        if (rc == NGX_DECLINED) {
            op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
        }

        return;
    }

    if (!bson_iter_init_find(&it, doc, "group_id")
        || !BSON_ITER_HOLDS_OID(&it)
        || !bson_oid_equal(bson_iter_oid(&it), &op->group_id)
        || (bson_iter_init_find(&it, doc, "is_deleted")
            && (!BSON_ITER_HOLDS_BOOL(&it) || bson_iter_bool(&it))))
    {
        op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
        bson_destroy(doc);
        return;
    }

    if (!bson_iter_init_find(&it, doc, "user_id")
        || !BSON_ITER_HOLDS_UTF8(&it)
        || strcmp(bson_iter_utf8(&it, NULL), op->user_id) != 0)
    {
        op->result = NGX_HTTP_CHAT_RES_FORBIDDEN;
        bson_destroy(doc);
        return;
    }

    /*
     * A message of older code not numbered yet (the migration at start is
     * still on its way): its creation first, so that its deletion comes
     * after it in the log.
     */

    rc = bson_iter_init_find(&it, doc, "seq") ? NGX_OK
         : ngx_http_chat_migrate_message(op, client, &op->message_id);

    bson_destroy(doc);

    if (rc != NGX_OK) {
        if (rc == NGX_DECLINED) {
            op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
        }

        return;
    }

    /* the group went away meanwhile: NOT_FOUND, "message not found" */

    if (ngx_http_chat_take_seq(op, client, "message_deleted", &op->message_id,
                               &seq)
        != NGX_OK)
    {
        return;
    }

    now = (int64_t) (ngx_http_chat_realtime_us() / 1000);

    /* lost to another deletion: NOT_FOUND, and this seq is a gap */

    if (ngx_http_chat_claim_deletion(op, client, &op->message_id, seq, now)
        != NGX_OK)
    {
        return;
    }

    /* a failure here leaves the claim: deleted, as the log says; the
     * next DELETE of it marks the message (claim_deletion's repair) */

    if (ngx_http_chat_apply_deletion(op, client, &op->message_id, seq, now, 1)
        != NGX_OK)
    {
        return;
    }

    ngx_http_chat_counters_deleted(op, client);

    bson_oid_to_string(&op->message_id, op->id_hex);
    op->seq = seq;

    ngx_http_chat_op_set_event(op,
        ngx_http_chat_render_event_deleted(&op->message_id, &op->group_id,
                                           seq));

    ngx_http_chat_op_output(op,
        ngx_http_chat_render_deleted(&op->message_id, &op->group_id, now,
                                     seq));
}


/*
 * The indexes the API and the dashboard's queries use.  createIndexes is
 * idempotent on MongoDB and FerretDB alike when names and keys match.
 * (Then, in the same op, the migration of data of older code:
 * ngx_http_chat_migrate.c.)
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
        { "messages", "group_id_1_seq_-1",
          "{\"group_id\": 1, \"seq\": -1}" },
        { "groups", "created_at_1", "{\"created_at\": 1}" },
    };

    bson_t                cmd, arr, idx, *keys;
    size_t                i;
    bson_error_t          error;
    mongoc_database_t    *db;

    db = mongoc_client_get_database(client, ngx_http_chat_queries.db);

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


ngx_int_t
ngx_http_chat_group_exists(ngx_http_chat_op_t *op, mongoc_client_t *client,
    const bson_oid_t *id)
{
    bson_t                filter, opts, proj;
    ngx_int_t             rc;
    bson_iter_t           it;
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
    BSON_APPEND_INT32(&proj, "seq", 1);
    bson_append_document_end(&opts, &proj);
    ngx_http_chat_maxtime(&opts);

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "groups");
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    if (mongoc_cursor_next(cursor, &doc)) {
        /* the group's last seq: where a new subscriber starts */
        op->seq = (bson_iter_init_find(&it, doc, "seq")
                   && (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)))
                  ? bson_iter_as_int64(&it) : 0;
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


ngx_int_t
ngx_http_chat_find_id(ngx_http_chat_op_t *op, mongoc_collection_t *coll,
    const char *sid, const bson_oid_t *oid, bson_t **doc)
{
    bson_t            filter, opts;
    ngx_int_t         rc;
    bson_error_t      error;
    const bson_t     *d;
    mongoc_cursor_t  *cursor;

    bson_init(&filter);

    if (sid) {
        BSON_APPEND_UTF8(&filter, "_id", sid);

    } else {
        BSON_APPEND_OID(&filter, "_id", oid);
    }

    bson_init(&opts);
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_BOOL(&opts, "singleBatch", true);
    ngx_http_chat_maxtime(&opts);

    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);

    if (mongoc_cursor_next(cursor, &d)) {
        *doc = bson_copy(d);
        rc = NGX_OK;

    } else if (mongoc_cursor_error(cursor, &error)) {
        ngx_http_chat_op_fail(op, &error, "read by _id");
        rc = NGX_ERROR;

    } else {
        rc = NGX_DECLINED;
    }

    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);

    return rc;
}


/*
 * The server's error codes that mean "not now" rather than "never"
 * (MongoDB's src/mongo/base/error_codes.yml names them so).
 */
#define NGX_HTTP_CHAT_MONGO_MAX_TIME_MS_EXPIRED                  50
#define NGX_HTTP_CHAT_MONGO_WRITE_CONCERN_FAILED                 64
#define NGX_HTTP_CHAT_MONGO_SHUTDOWN_IN_PROGRESS                 91
#define NGX_HTTP_CHAT_MONGO_PRIMARY_STEPPED_DOWN                 189
#define NGX_HTTP_CHAT_MONGO_NOT_WRITABLE_PRIMARY                 10107
#define NGX_HTTP_CHAT_MONGO_INTERRUPTED_AT_SHUTDOWN              11600
#define NGX_HTTP_CHAT_MONGO_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE 11602


/* down, unreachable or too slow is "unavailable" (503), the rest is 500 */

void
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
        switch (error->code) {
        case NGX_HTTP_CHAT_MONGO_MAX_TIME_MS_EXPIRED:
        case NGX_HTTP_CHAT_MONGO_NOT_WRITABLE_PRIMARY:
        case NGX_HTTP_CHAT_MONGO_INTERRUPTED_AT_SHUTDOWN:
        case NGX_HTTP_CHAT_MONGO_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE:
        case NGX_HTTP_CHAT_MONGO_SHUTDOWN_IN_PROGRESS:
        case NGX_HTTP_CHAT_MONGO_PRIMARY_STEPPED_DOWN:
        case NGX_HTTP_CHAT_MONGO_WRITE_CONCERN_FAILED:
            unavailable = 1;
            break;
        }

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


void
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


/* the event the op's success broadcasts (op_output's twin for events) */

void
ngx_http_chat_op_set_event(ngx_http_chat_op_t *op, char *event)
{
    if (event) {
        op->event_json = event;
        op->event_json_len = strlen(event);
    }
}


void
ngx_http_chat_maxtime(bson_t *opts)
{
    BSON_APPEND_INT64(opts, "maxTimeMS",
                      (int64_t) ngx_http_chat_queries.timeout_ms);
}
