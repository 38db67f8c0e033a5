/*
 * ngx_http_chat_event_log.c - a group's events by seq, walked by point
 * reads: the REST "after=" listing and a group's newest page, through the
 * reader of ngx_http_chat_event_reader.c (the states of a seq, the
 * buckets); the write side (taking the next seq, a deletion's claim) is
 * ngx_http_chat_seq.c.  Runs on a pool thread, like the other operations
 * of ngx_http_chat_queries.c, whose helpers it shares.
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
#include "ngx_http_chat_event_reader.h"
#include "ngx_http_chat_counters.h"


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
 * seq seen then gets the late event too.  Past that, it is a gap for good:
 * a MISSING seq is voided first (ngx_http_chat_log_void()), so that a take
 * that gets it later from a counter that stepped back (FerretDB) cannot
 * claim it below events already delivered.
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

            /* gaps for good, once voided: no take claims them later */

            rc = ngx_http_chat_log_void(&log, hole, seq - 1);

            if (rc == NGX_ERROR) {
                failed = 1;
                break;
            }

            if (rc == NGX_DECLINED) {
                break;                   /* claimed meanwhile: next walk */
            }

            hole = 0;
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

    /* every seq up to "through" is settled in the page (for the cache):
     * below the lowest seq not yet written */
    op->through = cur;

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

        if (ev->state == NGX_HTTP_CHAT_EV_MISSING
            || ev->state == NGX_HTTP_CHAT_EV_PENDING)
        {
            op->through = seq - 1;
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
        op->page_read = (op->result == NGX_HTTP_CHAT_RES_OK);

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


/* when the event was written (ms), or 0 if the document does not say */

int64_t
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
