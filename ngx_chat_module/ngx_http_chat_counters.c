/*
 * ngx_http_chat_counters.c - the dashboard's database figures, kept by
 * the writes themselves (MongoDB's computed pattern), so that the sidecar
 * reads a few small documents instead of counting the messages.
 *
 * Each worker process owns the documents of the "counters" collection
 * whose _id starts with its own "w:<host>:<pid>:<start ms>:", one per
 * stripe of groups (and a new one when a stripe's fills up):
 *
 *   {_id: "w:<host>:<pid>:<start ms>:<stripe>.<generation>",
 *    pid, updated_at,
 *    ids: [<group id hex>, ...],          the groups, by position,
 *    c:   [<created> * 2^32 + <deleted>], and their counts at the same
 *    l:   [<latest created_at>, ...],     position
 *    hours:  {h<created_at / 3600000>: <messages created that hour>},
 *    groups_created: n, ghours: {h<hour>: <groups created that hour>}}
 *
 * updated ($inc, $max, $push, upsert) right after a message, a deletion or
 * a group is stored, by the pool thread that stored it.  No other process
 * ever writes these documents, and the threads of the worker update one
 * stripe's document one at a time (a lock per stripe), so each update
 * reads the last one's result even on FerretDB 1.24, whose updates are a
 * read then a write and lose one of two concurrent $inc on one document:
 * the counts are exact on both databases.  The sidecar sums the documents.
 *
 * Arrays, not a sub-document per group, and both counts in one integer
 * ($inc of 2^32 for a message, of 1 for a deletion; exact while either
 * stays under 2^31 a document): FerretDB's cost is per value decoded, a
 * document of 1,000 sub-documents of 2 fields takes 28 ms to read, 3,000
 * array items 10 ms; and it rewrites the whole document at each update:
 * hence the stripes and at most NGX_HTTP_CHAT_COUNTER_GROUPS groups a
 * document.
 *
 * Why not the group's seq: every event takes one, but a seq also goes to
 * events whose write then fails (gaps), and creations and deletions share
 * the sequence; telling them apart costs a point read per event.  Why not
 * one document per group written by every worker: that is the lost $inc.
 *
 * A message, group or deletion counted here carries "counted": true
 * ("deleted_counted" for a deletion): the sidecar's one-time count of a
 * database of the previous version (the "base" document) takes the others
 * only, so no event is counted twice, whichever runs first.
 *
 * An update that fails (database gone between the write and its count)
 * loses that count: logged, never retried (it may have been applied); the
 * stripe moves on to a new document, since where its $push went is
 * unknown.  Hour buckets older than 26 hours are removed as new hours are
 * counted: every hour from the last one removed on, at most 32 an update,
 * so that a document written now and then does not keep the buckets of
 * the hours it skipped.
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
#define NGX_HTTP_CHAT_COUNTER_GROUPS   256      /* a document's at most */
#define NGX_HTTP_CHAT_COUNTER_HOUR_MS  3600000
#define NGX_HTTP_CHAT_COUNTER_HOURS    26       /* buckets kept */
#define NGX_HTTP_CHAT_COUNTER_PRUNE    32       /* removed an update */
#define NGX_HTTP_CHAT_COUNTER_ID_LEN   256
#define NGX_HTTP_CHAT_COUNT_CREATED    ((int64_t) 1 << 32)
#define NGX_HTTP_CHAT_COUNT_DELETED    1


typedef enum {
    NGX_HTTP_CHAT_COUNT_MESSAGE = 0,
    NGX_HTTP_CHAT_COUNT_DELETION,
    NGX_HTTP_CHAT_COUNT_GROUP
} ngx_http_chat_count_e;


/* a stripe: its lock and what its current document holds (pool threads,
 * under the lock) */
typedef struct {
    ngx_thread_mutex_t      lock;
    ngx_uint_t              generation;
    bson_oid_t             *ids;          /* malloc()ed, by position */
    ngx_uint_t              nids;
    ngx_uint_t              pruned_gen;   /* the document pruned_hour is of */
    int64_t                 pruned_hour;  /* buckets up to it removed */
} ngx_http_chat_counter_stripe_t;


static void ngx_http_chat_counters_update(mongoc_client_t *client,
    ngx_http_chat_count_e what, const bson_oid_t *group_id, int64_t at_ms);
static void ngx_http_chat_counters_hour(bson_t *inc, const char *field,
    int64_t at_ms);
static void ngx_http_chat_counters_prune(ngx_http_chat_counter_stripe_t *st,
    bson_t *unset, int64_t at_ms);
static ngx_int_t ngx_http_chat_counters_lock(ngx_thread_mutex_t *lock);


static const char  *ngx_http_chat_count_names[] = {
    "message", "deletion", "group"
};

/* set once per worker, before any op runs */
static char                            ngx_http_chat_counter_prefix[
                                           NGX_HTTP_CHAT_COUNTER_ID_LEN];
static ngx_http_chat_counter_stripe_t  ngx_http_chat_counter_stripes[
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
        if (ngx_thread_mutex_create(&ngx_http_chat_counter_stripes[i].lock,
                                    log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_http_chat_counters_mark(bson_t *doc)
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
    ngx_http_chat_counters_update(client, NGX_HTTP_CHAT_COUNT_MESSAGE,
                                  &op->group_id, created_ms);
}


void
ngx_http_chat_counters_deleted(ngx_http_chat_op_t *op,
    mongoc_client_t *client)
{
    ngx_http_chat_counters_update(client, NGX_HTTP_CHAT_COUNT_DELETION,
                                  &op->group_id, 0);
}


void
ngx_http_chat_counters_group(mongoc_client_t *client,
    const bson_oid_t *group_id, int64_t created_ms)
{
    ngx_http_chat_counters_update(client, NGX_HTTP_CHAT_COUNT_GROUP,
                                  group_id, created_ms);
}


/*
 * One update of this worker's document of the group's stripe, under the
 * stripe's lock.  It runs whether or not the request is still waiting:
 * the event is stored, so it must be counted.
 */

static void
ngx_http_chat_counters_update(mongoc_client_t *client,
    ngx_http_chat_count_e what, const bson_oid_t *group_id, int64_t at_ms)
{
    char                             id[NGX_HTTP_CHAT_COUNTER_ID_LEN + 48],
                                     gid[NGX_HTTP_CHAT_OID_LEN + 1], key[32];
    bson_t                           filter, opts, update, inc, max, push,
                                     unset, set;
    bson_oid_t                      *ids;
    ngx_uint_t                       i, s;
    bson_error_t                     error;
    mongoc_collection_t             *coll;
    ngx_http_chat_counter_stripe_t  *st;

    bson_oid_to_string(group_id, gid);

    s = ngx_hash_key((u_char *) group_id->bytes, sizeof(group_id->bytes))
        % NGX_HTTP_CHAT_COUNTER_STRIPES;
    st = &ngx_http_chat_counter_stripes[s];

    if (ngx_http_chat_counters_lock(&st->lock) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat counters: a %s of group %s not counted: stripe "
                      "%ui's lock was held for chat_db_timeout (%d ms)",
                      ngx_http_chat_count_names[what], gid, s,
                      (int) ngx_http_chat_queries.timeout_ms);
        return;
    }

    /* the group's position in the document, or none yet (i == nids) */

    for (i = 0; i < st->nids; i++) {
        if (bson_oid_equal(&st->ids[i], group_id)) {
            break;
        }
    }

    if (what != NGX_HTTP_CHAT_COUNT_GROUP
        && i == st->nids
        && st->nids == NGX_HTTP_CHAT_COUNTER_GROUPS)
    {
        st->generation++;                 /* full: the next document */
        st->nids = 0;
        i = 0;
    }

    (void) snprintf(id, sizeof(id), "%s:%u.%u", ngx_http_chat_counter_prefix,
                    (unsigned) s, (unsigned) st->generation);

    bson_init(&update);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);

    bson_init(&max);
    bson_init(&push);
    bson_init(&unset);

    switch (what) {

    case NGX_HTTP_CHAT_COUNT_GROUP:
        BSON_APPEND_INT64(&inc, "groups_created", 1);
        ngx_http_chat_counters_hour(&inc, "ghours", at_ms);
        break;

    case NGX_HTTP_CHAT_COUNT_MESSAGE:
        ngx_http_chat_counters_hour(&inc, "hours", at_ms);

        if (i < st->nids) {
            (void) snprintf(key, sizeof(key), "c.%u", (unsigned) i);
            BSON_APPEND_INT64(&inc, key, NGX_HTTP_CHAT_COUNT_CREATED);
            (void) snprintf(key, sizeof(key), "l.%u", (unsigned) i);
            BSON_APPEND_DATE_TIME(&max, key, at_ms);

        } else {
            BSON_APPEND_UTF8(&push, "ids", gid);
            BSON_APPEND_INT64(&push, "c", NGX_HTTP_CHAT_COUNT_CREATED);
            BSON_APPEND_DATE_TIME(&push, "l", at_ms);
        }

        break;

    case NGX_HTTP_CHAT_COUNT_DELETION:
        if (i < st->nids) {
            (void) snprintf(key, sizeof(key), "c.%u", (unsigned) i);
            BSON_APPEND_INT64(&inc, key, NGX_HTTP_CHAT_COUNT_DELETED);

        } else {
            BSON_APPEND_UTF8(&push, "ids", gid);
            BSON_APPEND_INT64(&push, "c", NGX_HTTP_CHAT_COUNT_DELETED);
            BSON_APPEND_DATE_TIME(&push, "l", 0);
        }

        break;
    }

    ngx_http_chat_counters_prune(st, &unset, at_ms);

    bson_append_document_end(&update, &inc);

    if (!bson_empty(&max)) {
        BSON_APPEND_DOCUMENT(&update, "$max", &max);
    }
    if (!bson_empty(&push)) {
        BSON_APPEND_DOCUMENT(&update, "$push", &push);
    }
    if (!bson_empty(&unset)) {
        BSON_APPEND_DOCUMENT(&update, "$unset", &unset);
    }

    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_INT32(&set, "pid", (int32_t) ngx_pid);
    BSON_APPEND_DATE_TIME(&set, "updated_at",
                          (int64_t) (ngx_http_chat_realtime_us() / 1000));
    bson_append_document_end(&update, &set);

    bson_init(&filter);
    BSON_APPEND_UTF8(&filter, "_id", id);

    bson_init(&opts);
    BSON_APPEND_BOOL(&opts, "upsert", true);

    coll = mongoc_client_get_collection(client, ngx_http_chat_queries.db,
                                        "counters");

    if (!mongoc_collection_update_one(coll, &filter, &update, &opts, NULL,
                                      &error))
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat counters: a %s of group %s not counted: "
                      "update of \"%s\" failed: %s (domain %u, code %u)",
                      ngx_http_chat_count_names[what], gid, id,
                      error.message, error.domain, error.code);

        /* a $push may or may not have been applied: a new document */
        st->generation++;
        st->nids = 0;

    } else if (!bson_empty(&push)) {

        if (st->nids % 16 == 0) {
            ids = realloc(st->ids, (st->nids + 16) * sizeof(bson_oid_t));
            if (ids == NULL) {
                ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                              "chat counters: out of memory for stripe %ui",
                              s);
                st->generation++;          /* forget this document */
                st->nids = 0;
                goto done;
            }
            st->ids = ids;
        }

        bson_oid_copy(group_id, &st->ids[st->nids++]);
    }

done:

    (void) ngx_thread_mutex_unlock(&st->lock, ngx_cycle->log);

    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    bson_destroy(&unset);
    bson_destroy(&push);
    bson_destroy(&max);
    bson_destroy(&update);
}


/* +1 in the hour's bucket */

static void
ngx_http_chat_counters_hour(bson_t *inc, const char *field, int64_t at_ms)
{
    char     key[64];
    int64_t  hour;

    hour = at_ms / NGX_HTTP_CHAT_COUNTER_HOUR_MS;

    (void) snprintf(key, sizeof(key), "%s.h%lld", field, (long long) hour);
    BSON_APPEND_INT64(inc, key, 1);
}


/*
 * The buckets of both kinds that left the kept window since the last
 * removal in this document, at most NGX_HTTP_CHAT_COUNTER_PRUNE hours an
 * update (a $unset of a field that is not there is a no-op).  A new
 * document starts with nothing to remove.
 */

static void
ngx_http_chat_counters_prune(ngx_http_chat_counter_stripe_t *st,
    bson_t *unset, int64_t at_ms)
{
    char     key[64];
    int64_t  gone, h;

    gone = at_ms / NGX_HTTP_CHAT_COUNTER_HOUR_MS - NGX_HTTP_CHAT_COUNTER_HOURS;

    if (st->pruned_gen != st->generation + 1) {
        st->pruned_gen = st->generation + 1;      /* 0: never */
        st->pruned_hour = gone - 1;
    }

    for (h = st->pruned_hour + 1;
         h <= gone && h <= st->pruned_hour + NGX_HTTP_CHAT_COUNTER_PRUNE;
         h++)
    {
        (void) snprintf(key, sizeof(key), "hours.h%lld", (long long) h);
        BSON_APPEND_UTF8(unset, key, "");
        (void) snprintf(key, sizeof(key), "ghours.h%lld", (long long) h);
        BSON_APPEND_UTF8(unset, key, "");
    }

    if (h - 1 > st->pruned_hour) {
        st->pruned_hour = h - 1;
    }
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
