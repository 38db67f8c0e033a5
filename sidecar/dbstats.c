/*
 * dbstats.c - the database statistics thread (mongo-c-driver).
 *
 * The figures are not counted from the messages: the module counts each
 * message and deletion as it stores it, into documents of the "counters"
 * collection that one worker process each writes
 * (ngx_chat_module/ngx_http_chat_counters.c).  A refresh reads two small
 * collections, "groups" (names, created_at) and "counters", and sums them
 * (dbcounts.c): its cost does not grow with the messages.  Once per
 * database, the messages stored before counters existed are counted by a
 * scan into the "base" counters document (db_count_once).
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "dbcounts.h"
#include "dbstats.h"
#include "isotime.h"
#include "log.h"

#define DB_DEFAULT_NAME        "chat"
#define DB_MAX_TIME_EXPIRED    50       /* the server's MaxTimeMSExpired */
#define DB_SELECT_TIMEOUT_MS   2000
#define DB_CONNECT_TIMEOUT_MS  2000
#define DB_DUPLICATE_KEY       11000
#define DB_BASE_ID             "base"   /* counters: the one-time count */
#define DB_BASE_MAX_BYTES      (15 * 1024 * 1024)   /* under BSON's 16 MiB */
#define DB_SCAN_BATCH          10000
#define DB_SCAN_TIMEOUT_MS     300000   /* a batch of the one-time count */
#define DB_NAME_READS          16       /* group names read a refresh */


struct dbstats_s {
    pthread_t          thread;
    pthread_mutex_t    lock;        /* guards published, stop */
    pthread_cond_t     wake;
    int                stop;
    db_stats_t         published;

    /* owned by the thread only */
    mongoc_uri_t      *uri;
    mongoc_client_t   *client;
    char              *dbname;
    uint64_t           refresh_us;
    int                timeout_ms;
    dbstats_ids_pt     want_names;
    void              *want_arg;
    char               ids[DB_NAMES_MAX][DB_GROUP_ID_SZ];
    dbcounts_t        *counts;      /* this refresh's sums */
};


/*
 * Adds the timeouts a monitoring query needs when the URI leaves them
 * out: without them a down server would hold the thread for the driver's
 * 30 s default.
 */
static mongoc_uri_t *
db_uri(const char *uri_string, int timeout_ms, char *err, size_t errlen)
{
    mongoc_uri_t  *uri;
    bson_error_t   error;

    uri = mongoc_uri_new_with_error(uri_string, &error);
    if (uri == NULL) {
        snprintf(err, errlen, "invalid MongoDB URI: %s", error.message);
        return NULL;
    }

    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS)) {
        mongoc_uri_set_option_as_int32(uri,
            MONGOC_URI_SERVERSELECTIONTIMEOUTMS, DB_SELECT_TIMEOUT_MS);
    }
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS)) {
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS,
                                       DB_CONNECT_TIMEOUT_MS);
    }
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SOCKETTIMEOUTMS)) {
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS,
                                       timeout_ms + 1000);
    }
    if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME)) {
        mongoc_uri_set_appname(uri, "chat-sidecar");
    }

    return uri;
}


static mongoc_client_t *
db_client(const mongoc_uri_t *uri, char *err, size_t errlen)
{
    mongoc_client_t  *client;
    bson_error_t      error;

    client = mongoc_client_new_from_uri_with_error(uri, &error);
    if (client == NULL) {
        snprintf(err, errlen, "cannot create MongoDB client: %s",
                 error.message);
        return NULL;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    return client;
}


static int
db_ping(mongoc_client_t *client, char *err, size_t errlen)
{
    bson_t        *cmd, reply;
    bson_error_t   error;
    bool           ok;

    cmd = BCON_NEW("ping", BCON_INT32(1));
    ok = mongoc_client_command_simple(client, "admin", cmd, NULL, &reply,
                                      &error);
    bson_destroy(cmd);
    bson_destroy(&reply);

    if (!ok) {
        snprintf(err, errlen, "ping failed: %s", error.message);
        return -1;
    }
    return 0;
}


int
dbstats_ping(const char *uri_string, int timeout_ms, char *err, size_t errlen)
{
    mongoc_uri_t     *uri;
    mongoc_client_t  *client;
    int               rc;

    uri = db_uri(uri_string, timeout_ms, err, errlen);
    if (uri == NULL) {
        return -1;
    }

    client = db_client(uri, err, errlen);
    if (client == NULL) {
        mongoc_uri_destroy(uri);
        return -1;
    }

    rc = db_ping(client, err, errlen);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    return rc;
}


/* group ids are ObjectIds (24 hex chars); a string id is shown as is */
static void
db_id_string(const bson_value_t *v, char *buf, size_t size)
{
    if (v->value_type == BSON_TYPE_OID) {
        bson_oid_to_string(&v->value.v_oid, buf);
    } else if (v->value_type == BSON_TYPE_UTF8) {
        snprintf(buf, size, "%.*s", (int) v->value.v_utf8.len,
                 v->value.v_utf8.str);
    } else {
        snprintf(buf, size, "(%s id)",
                 v->value_type == BSON_TYPE_NULL ? "null" : "non-string");
    }
}


static int
db_cursor_done(mongoc_cursor_t *cursor, const char *what, char *err,
    size_t errlen)
{
    bson_error_t  error;
    int           rc = 0;

    if (mongoc_cursor_error(cursor, &error)) {
        snprintf(err, errlen, "%s failed: %s", what, error.message);
        rc = error.code == DB_MAX_TIME_EXPIRED ? -2 : -1;
    }
    mongoc_cursor_destroy(cursor);
    return rc;
}


/*
 * The names of the groups to show that the table does not know yet: a
 * point read by _id each (pushed down and indexed on the embedded
 * database too), at most DB_NAME_READS a refresh; names never change, so
 * the table keeps them.  A failure leaves the name for the next refresh:
 * a label, not a figure.
 */
static void
db_read_names(dbstats_t *d, mongoc_collection_t *groups,
    char (*ids)[DB_GROUP_ID_SZ], size_t n)
{
    bson_t           *filter, *opts;
    bson_oid_t        oid;
    mongoc_cursor_t  *cursor;
    const bson_t     *doc;
    bson_iter_t       it;
    const char       *name;
    uint32_t          len;
    size_t            i;
    char              err[DB_STATUS_SZ];

    for (i = 0; i < n; i++) {
        filter = bson_new();
        if (bson_oid_is_valid(ids[i], strlen(ids[i]))) {
            bson_oid_init_from_string(&oid, ids[i]);
            BSON_APPEND_OID(filter, "_id", &oid);
        } else {
            BSON_APPEND_UTF8(filter, "_id", ids[i]);
        }
        opts = BCON_NEW("projection", "{", "name", BCON_INT32(1), "}",
                        "limit", BCON_INT64(1),
                        "maxTimeMS", BCON_INT64(d->timeout_ms));
        cursor = mongoc_collection_find_with_opts(groups, filter, opts, NULL);

        if (mongoc_cursor_next(cursor, &doc)
            && bson_iter_init_find(&it, doc, "name")
            && BSON_ITER_HOLDS_UTF8(&it))
        {
            name = bson_iter_utf8(&it, &len);
            if (dbcounts_set_name(d->counts, ids[i], name, len) != 0) {
                log_warn("db: out of memory for group names");
            }
        }

        bson_destroy(filter);
        bson_destroy(opts);
        if (db_cursor_done(cursor, "group name find", err, sizeof(err))
            != 0)
        {
            log_debug("db: %s (name left for the next refresh)", err);
            return;
        }
    }
}


/*
 * Every counters document (a few per worker that ever wrote, and "base"):
 * a small collection.  *have_base says whether the messages stored before
 * counters existed have been counted.
 */
static int
db_read_counters(dbstats_t *d, mongoc_collection_t *counters,
    int *have_base, char *err, size_t errlen)
{
    bson_t           *filter, *opts;
    mongoc_cursor_t  *cursor;
    const bson_t     *doc;
    bson_iter_t       it;
    int               rc = 0, done;

    *have_base = 0;
    filter = bson_new();
    opts = BCON_NEW("maxTimeMS", BCON_INT64(d->timeout_ms));
    cursor = mongoc_collection_find_with_opts(counters, filter, opts, NULL);

    while (rc == 0 && mongoc_cursor_next(cursor, &doc)) {
        if (!bson_iter_init_find(&it, doc, "_id")
            || !BSON_ITER_HOLDS_UTF8(&it))
        {
            continue;
        }
        if (strcmp(bson_iter_utf8(&it, NULL), DB_BASE_ID) == 0) {
            *have_base = 1;
        }
        if (dbcounts_add_doc(d->counts, doc) != 0) {
            snprintf(err, errlen, "counters find: out of memory");
            rc = -1;
        }
    }

    bson_destroy(filter);
    bson_destroy(opts);
    done = db_cursor_done(cursor, "counters find", err, errlen);
    return rc != 0 ? rc : done;
}


static int
db_stopping(dbstats_t *d)
{
    int  stop;

    pthread_mutex_lock(&d->lock);
    stop = d->stop;
    pthread_mutex_unlock(&d->lock);
    return stop;
}


/*
 * The migration, once per database: the messages (and deletions) the
 * module did not count, those stored before it counted (no "counted" /
 * "deleted_counted" mark), counted by one scan into the "base" counters
 * document.  Inserted with _id "base": of two sidecars counting at once
 * one only writes it, the other reads it at its next refresh.  A message
 * the module counts carries its mark before it is stored, so whenever
 * the scan runs, each event is in exactly one of base and the workers'
 * documents.  The scan reads the whole collection (26 us a message on
 * FerretDB: ~30 s at 1,000,000), in batches, each under the socket
 * timeout; it stops with the thread.
 */
static int
db_count_scan(dbstats_t *d, mongoc_collection_t *groups,
    mongoc_collection_t *messages, mongoc_collection_t *counters, char *err,
    size_t errlen)
{
    dbcounts_t       *base;
    bson_t           *filter, *opts, doc;
    mongoc_cursor_t  *cursor;
    const bson_t     *m;
    bson_iter_t       it;
    bson_error_t      error;
    char              gid[DB_GROUP_ID_SZ];
    int64_t           n = 0, created, now_ms;
    uint64_t          t0 = isotime_mono_us();
    int               counted, deleted, rc = 0;

    base = dbcounts_new();
    if (base == NULL) {
        snprintf(err, errlen, "count of the messages: out of memory");
        return -1;
    }
    now_ms = (int64_t) (isotime_wall_us() / 1000u);
    dbcounts_reset(base, now_ms);

    log_info("db: counting once the groups and messages stored before the "
             "counters (no \"%s\" in \"counters\")", DB_BASE_ID);

    /* the groups: few; those not counted by the module */
    filter = bson_new();
    opts = BCON_NEW("projection", "{", "created_at", BCON_INT32(1),
                                       "counted", BCON_INT32(1), "}",
                    "batchSize", BCON_INT32(DB_SCAN_BATCH));
    cursor = mongoc_collection_find_with_opts(groups, filter, opts, NULL);
    while (mongoc_cursor_next(cursor, &m)) {
        if (bson_iter_init_find(&it, m, "counted")
            && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it))
        {
            continue;
        }
        created = 0;
        if (bson_iter_init_find(&it, m, "created_at")
            && BSON_ITER_HOLDS_DATE_TIME(&it))
        {
            created = bson_iter_date_time(&it);
        }
        (void) dbcounts_add_old_group(base, created);
    }
    bson_destroy(filter);
    bson_destroy(opts);
    if (db_cursor_done(cursor, "count of the groups", err, errlen) != 0) {
        dbcounts_free(base);
        return -1;
    }

    filter = bson_new();
    opts = BCON_NEW("projection", "{", "group_id", BCON_INT32(1),
                                       "created_at", BCON_INT32(1),
                                       "is_deleted", BCON_INT32(1),
                                       "counted", BCON_INT32(1),
                                       "deleted_counted", BCON_INT32(1), "}",
                    "batchSize", BCON_INT32(DB_SCAN_BATCH));
    cursor = mongoc_collection_find_with_opts(messages, filter, opts, NULL);

    while (rc == 0 && mongoc_cursor_next(cursor, &m)) {
        if (++n % DB_SCAN_BATCH == 0 && db_stopping(d)) {
            snprintf(err, errlen, "count of the messages: stopped");
            rc = -1;
            break;
        }
        counted = bson_iter_init_find(&it, m, "counted")
                  && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
        deleted = bson_iter_init_find(&it, m, "is_deleted")
                  && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it)
                  && !(bson_iter_init_find(&it, m, "deleted_counted")
                       && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it));
        if (counted && !deleted) {
            continue;
        }
        if (!bson_iter_init_find(&it, m, "group_id")) {
            continue;
        }
        db_id_string(bson_iter_value(&it), gid, sizeof(gid));

        created = 0;
        if (bson_iter_init_find(&it, m, "created_at")
            && BSON_ITER_HOLDS_DATE_TIME(&it))
        {
            created = bson_iter_date_time(&it);
        }
        if (dbcounts_add_message(base, gid, counted ? INT64_MIN : created,
                                 deleted)
            != 0)
        {
            snprintf(err, errlen, "count of the messages: out of memory");
            rc = -1;
        }
    }

    bson_destroy(filter);
    bson_destroy(opts);
    if (db_cursor_done(cursor, "count of the messages", err, errlen) != 0
        && rc == 0)
    {
        rc = -1;
    }

    if (rc == 0) {
        bson_init(&doc);
        BSON_APPEND_UTF8(&doc, "_id", DB_BASE_ID);
        BSON_APPEND_DATE_TIME(&doc, "at", now_ms);
        BSON_APPEND_INT64(&doc, "scanned", n);

        if (dbcounts_to_bson(base, &doc, DB_BASE_MAX_BYTES) != 0) {
            snprintf(err, errlen, "count of the messages: the \"%s\" "
                     "document would pass %d bytes (too many groups)",
                     DB_BASE_ID, DB_BASE_MAX_BYTES);
            rc = -1;

        } else if (!mongoc_collection_insert_one(counters, &doc, NULL, NULL,
                                                 &error))
        {
            snprintf(err, errlen, "count of the messages: insert of \"%s\" "
                     "failed: %s", DB_BASE_ID, error.message);
            /* another sidecar wrote it first: read at the next refresh */
            rc = error.code == DB_DUPLICATE_KEY ? -2 : -1;

        } else if (dbcounts_add_doc(d->counts, &doc) != 0) {
            snprintf(err, errlen, "count of the messages: out of memory");
            rc = -1;

        } else {
            log_info("db: counted once, %lld messages read in %.1f s (\"%s\" in "
                     "\"counters\")", (long long) n,
                     (double) (isotime_mono_us() - t0) / 1e6, DB_BASE_ID);
        }
        bson_destroy(&doc);
    }

    dbcounts_free(base);
    return rc;
}


/*
 * The scans of the one-time count run on a client of their own whose
 * socket timeout is DB_SCAN_TIMEOUT_MS, not --db-timeout-ms + 1 s: a
 * batch of 10,000 documents is decoded in ~0.3 s on an idle embedded
 * database, but several seconds on a loaded one, and a scan cut by a
 * timeout starts again at the next refresh, from the start.
 */
static int
db_count_once(dbstats_t *d, mongoc_collection_t *counters, char *err,
    size_t errlen)
{
    mongoc_uri_t         *uri;
    mongoc_client_t      *client;
    mongoc_collection_t  *groups, *messages;
    int                   rc;

    uri = mongoc_uri_copy(d->uri);
    if (uri == NULL) {
        snprintf(err, errlen, "count of the messages: out of memory");
        return -1;
    }
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS,
                                   DB_SCAN_TIMEOUT_MS);
    client = db_client(uri, err, errlen);
    mongoc_uri_destroy(uri);
    if (client == NULL) {
        return -1;
    }

    groups = mongoc_client_get_collection(client, d->dbname, "groups");
    messages = mongoc_client_get_collection(client, d->dbname, "messages");

    rc = db_count_scan(d, groups, messages, counters, err, errlen);

    mongoc_collection_destroy(groups);
    mongoc_collection_destroy(messages);
    mongoc_client_destroy(client);
    return rc;
}


/*
 * One refresh: the counters documents (and, once per database, the count
 * of what was stored before counters existed), then the names of the
 * groups shown that are not known yet.  `out` comes in with the last
 * published figures and keeps them unless the reads succeeded.  Returns
 * -1 when the server did not answer or a read failed (the error in err),
 * 1 when the figures were kept (a read past maxTimeMS, or the one-time
 * count written meanwhile by another sidecar; why says which), 0 when
 * all are fresh.
 */
static int
db_refresh(dbstats_t *d, db_stats_t *out, char *err, size_t errlen,
    char *why, size_t whylen)
{
    mongoc_collection_t  *groups, *counters;
    size_t                nwant = 0, nunnamed;
    int                   rc, have_base;
    char                  unnamed[DB_NAME_READS][DB_GROUP_ID_SZ];

    if (db_ping(d->client, err, errlen) != 0) {
        return -1;
    }

    groups = mongoc_client_get_collection(d->client, d->dbname, "groups");
    counters = mongoc_client_get_collection(d->client, d->dbname,
                                            "counters");

    dbcounts_reset(d->counts, (int64_t) (isotime_wall_us() / 1000u));

    rc = db_read_counters(d, counters, &have_base, err, errlen);
    if (rc == 0 && !have_base) {
        rc = db_count_once(d, counters, err, errlen);
    }

    if (rc == -2) {
        snprintf(why, whylen, "%s", err);
        err[0] = '\0';
        rc = 1;

    } else if (rc == 0) {
        if (d->want_names != NULL) {
            nwant = d->want_names(d->want_arg, d->ids, DB_NAMES_MAX);
        }
        dbcounts_figures(d->counts, out, d->ids, nwant);

        nunnamed = dbcounts_unnamed(d->counts, out, d->ids, nwant, unnamed,
                                    DB_NAME_READS);
        if (nunnamed > 0) {
            db_read_names(d, groups, unnamed, nunnamed);
            dbcounts_figures(d->counts, out, d->ids, nwant);
        }
    }

    mongoc_collection_destroy(groups);
    mongoc_collection_destroy(counters);
    return rc;
}


static void
db_publish(dbstats_t *d, int rc, const db_stats_t *fresh, const char *err,
    const char *why, uint64_t started_wall, uint64_t started_mono)
{
    db_stats_t  *p = &d->published;

    pthread_mutex_lock(&d->lock);

    if (rc >= 0) {
        p->measured = fresh->measured;
        p->total_groups = fresh->total_groups;
        p->total_messages = fresh->total_messages;
        p->active_messages = fresh->active_messages;
        p->deleted_messages = fresh->deleted_messages;
        p->deleted_of = fresh->deleted_of;
        p->new_groups_24h = fresh->new_groups_24h;
        p->new_messages_24h = fresh->new_messages_24h;
        p->ntop = fresh->ntop;
        memcpy(p->top, fresh->top, sizeof(p->top));
        p->nnames = fresh->nnames;
        memcpy(p->names, fresh->names, fresh->nnames * sizeof(p->names[0]));

        p->healthy = 1;
        p->have_data = 1;
        snprintf(p->status, sizeof(p->status), "connected");

        if (rc == 0) {
            p->stale = 0;
            p->stale_reason[0] = '\0';
            p->refreshed_at_us = started_wall;
            p->refreshes_ok++;

        } else {
            p->stale = 1;
            snprintf(p->stale_reason, sizeof(p->stale_reason), "%s", why);
            p->refreshes_partial++;
        }

    } else {
        p->healthy = 0;
        p->stale = 1;
        snprintf(p->status, sizeof(p->status), "%s", err);
        snprintf(p->stale_reason, sizeof(p->stale_reason), "%s", err);
        p->refreshes_failed++;
    }

    p->attempted_at_us = started_wall;
    p->refresh_ms = (double) (isotime_mono_us() - started_mono) / 1000.0;

    pthread_mutex_unlock(&d->lock);
}


static void *
db_thread(void *arg)
{
    dbstats_t        *d = arg;
    db_stats_t       *fresh;
    char              err[DB_STATUS_SZ], why[DB_STATUS_SZ];
    uint64_t          wall, mono;
    struct timespec   ts;
    int               rc, ok, last_rc = -2;

    fresh = malloc(sizeof(*fresh));
    d->counts = dbcounts_new();
    if (fresh == NULL || d->counts == NULL) {
        log_error("db: out of memory");
        free(fresh);
        dbcounts_free(d->counts);
        d->counts = NULL;
        return NULL;
    }

    for ( ;; ) {
        pthread_mutex_lock(&d->lock);
        if (d->stop) {
            pthread_mutex_unlock(&d->lock);
            break;
        }
        pthread_mutex_unlock(&d->lock);

        wall = isotime_wall_us();
        mono = isotime_mono_us();
        dbstats_get(d, fresh);          /* the figures a query may keep */
        err[0] = '\0';
        why[0] = '\0';

        rc = db_refresh(d, fresh, err, sizeof(err), why, sizeof(why));
        db_publish(d, rc, fresh, err, why, wall, mono);
        ok = rc >= 0;

        /*
         * A single-threaded mongoc client that failed to reach a server
         * waits out a 5 s cooldown before it tries that server again; a
         * new client has no such memory, so the dashboard sees the
         * database back at the next refresh instead.
         */
        if (!ok) {
            char              cerr[1024];
            mongoc_client_t  *fresh_client;

            fresh_client = db_client(d->uri, cerr, sizeof(cerr));
            if (fresh_client != NULL) {
                mongoc_client_destroy(d->client);
                d->client = fresh_client;
            }
        }

        /* log state changes, not every failed refresh */
        if (rc != last_rc) {
            if (rc == 0) {
                log_info("db: connected, statistics refreshed in %.1f ms",
                         (double) (isotime_mono_us() - mono) / 1000.0);
            } else if (rc == 1) {
                log_warn("db: connected, some statistics kept from before: "
                         "%s", why);
            } else {
                log_warn("db: %s", err);
            }
            last_rc = rc;
        }

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t) (d->refresh_us / 1000000u);
        ts.tv_nsec += (long) (d->refresh_us % 1000000u) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }

        pthread_mutex_lock(&d->lock);
        while (!d->stop
               && pthread_cond_timedwait(&d->wake, &d->lock, &ts) == 0)
        {
            /* spurious wakeup or stop: loop re-checks */
        }
        pthread_mutex_unlock(&d->lock);
    }

    free(fresh);
    dbcounts_free(d->counts);
    d->counts = NULL;
    return NULL;
}


int
dbstats_start(dbstats_t **out, const dbstats_config_t *cfg, char *err,
    size_t errlen)
{
    dbstats_t           *d;
    pthread_condattr_t   attr;
    const char          *name;

    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    d->refresh_us = cfg->refresh_us;
    d->timeout_ms = cfg->query_timeout_ms;
    d->want_names = cfg->want_names;
    d->want_arg = cfg->want_arg;

    d->uri = db_uri(cfg->uri, cfg->query_timeout_ms, err, errlen);
    if (d->uri == NULL) {
        free(d);
        return -1;
    }

    name = mongoc_uri_get_database(d->uri);
    d->dbname = strdup(name != NULL && name[0] != '\0' ? name
                                                       : DB_DEFAULT_NAME);
    d->client = db_client(d->uri, err, errlen);

    if (d->dbname == NULL || d->client == NULL) {
        if (d->client == NULL && d->dbname != NULL) {
            /* err already set */
        } else {
            snprintf(err, errlen, "out of memory");
        }
        if (d->client != NULL) {
            mongoc_client_destroy(d->client);
        }
        free(d->dbname);
        mongoc_uri_destroy(d->uri);
        free(d);
        return -1;
    }

    snprintf(d->published.status, sizeof(d->published.status),
             "not checked yet");
    d->published.stale = 1;

    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&d->wake, &attr);
    pthread_condattr_destroy(&attr);

    if (pthread_create(&d->thread, NULL, db_thread, d) != 0) {
        snprintf(err, errlen, "cannot start the database thread");
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        mongoc_client_destroy(d->client);
        free(d->dbname);
        mongoc_uri_destroy(d->uri);
        free(d);
        return -1;
    }

    log_info("db: statistics from database \"%s\" every %.1f s",
             d->dbname, (double) d->refresh_us / 1e6);
    *out = d;
    return 0;
}


void
dbstats_get(dbstats_t *d, db_stats_t *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->published;
    pthread_mutex_unlock(&d->lock);
}


void
dbstats_stop(dbstats_t *d)
{
    if (d == NULL) {
        return;
    }

    pthread_mutex_lock(&d->lock);
    d->stop = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);

    pthread_join(d->thread, NULL);

    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
    mongoc_client_destroy(d->client);
    free(d->dbname);
    mongoc_uri_destroy(d->uri);
    free(d);
}
