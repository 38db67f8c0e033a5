/*
 * dbstats.c - the database statistics thread (mongo-c-driver).
 *
 * Queries stay inside what both MongoDB and FerretDB 1.x run: count,
 * find, and aggregate with $match/$group($sum)/$sort/$limit.  The spec's
 * top-groups pipeline takes last_message with $max, which FerretDB lacks;
 * here the pipeline only counts, and each of the ten groups' latest
 * message comes from a find sorted on created_at (index (group_id,
 * created_at)), which is also cheaper at scale than $max over all rows.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "dbstats.h"
#include "isotime.h"
#include "log.h"

#define DB_DEFAULT_NAME        "chat"
#define DB_MAX_TIME_EXPIRED    50       /* the server's MaxTimeMSExpired */
#define DB_SELECT_TIMEOUT_MS   2000
#define DB_CONNECT_TIMEOUT_MS  2000


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
    db_group_name_t    names[DB_NAMES_MAX];
};


typedef struct {
    bson_value_t    id;
    db_top_group_t  row;
} db_top_work_t;


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


/*
 * A collection's document count from collStats: metadata on MongoDB, ~25 ms
 * for 30,000 documents on FerretDB where `count` scans them all (~850 ms).
 * Falls back to the count command where collStats is refused.
 */
static int64_t
db_total(mongoc_client_t *client, const char *dbname,
    mongoc_collection_t *coll, const bson_t *opts, const char *what,
    char *err, size_t errlen)
{
    bson_t        *cmd, reply;
    bson_iter_t    it;
    bson_error_t   error;
    int64_t        n = -1;

    cmd = BCON_NEW("collStats", BCON_UTF8(mongoc_collection_get_name(coll)));

    if (mongoc_client_command_simple(client, dbname, cmd, NULL, &reply,
                                     &error)
        && bson_iter_init_find(&it, &reply, "count")
        && BSON_ITER_HOLDS_NUMBER(&it))
    {
        n = bson_iter_as_int64(&it);
    }

    bson_destroy(&reply);
    bson_destroy(cmd);

    if (n >= 0) {
        return n;
    }

    n = mongoc_collection_estimated_document_count(coll, opts, NULL, NULL,
                                                   &error);
    if (n < 0) {
        snprintf(err, errlen, "count of %s failed: %s", what, error.message);
    }
    return n;
}


static int64_t
db_count(mongoc_collection_t *coll, const bson_t *filter, const bson_t *opts,
    const char *what, char *err, size_t errlen)
{
    bson_error_t  error;
    int64_t       n;

    n = mongoc_collection_count_documents(coll, filter, opts, NULL, NULL,
                                          &error);
    if (n < 0) {
        snprintf(err, errlen, "count of %s failed: %s", what, error.message);
        return error.code == DB_MAX_TIME_EXPIRED ? -2 : -1;
    }
    return n;
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


/* cuts a UTF-8 string at a character boundary */
static void
db_copy_utf8(char *dst, size_t size, const char *src, size_t len)
{
    if (len > size - 1) {
        len = size - 1;
        while (len > 0 && ((unsigned char) src[len] & 0xc0) == 0x80) {
            len--;
        }
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
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


static int
db_top_groups(dbstats_t *d, mongoc_collection_t *messages,
    mongoc_collection_t *groups, const bson_t *opts, db_top_work_t *top,
    size_t *ntop, char *err, size_t errlen)
{
    bson_t           *pipeline, *filter, *fopts, ids;
    mongoc_cursor_t  *cursor;
    const bson_t     *doc;
    bson_iter_t       it;
    size_t            i, n = 0;
    char              key[16];
    const char       *name;
    uint32_t          len;
    int               rc;

    pipeline = BCON_NEW("pipeline", "[",
        "{", "$match", "{", "is_deleted", BCON_BOOL(false), "}", "}",
        "{", "$group", "{", "_id", BCON_UTF8("$group_id"),
                            "message_count", "{", "$sum", BCON_INT32(1), "}",
             "}", "}",
        "{", "$sort", "{", "message_count", BCON_INT32(-1),
                           "_id", BCON_INT32(1), "}", "}",
        "{", "$limit", BCON_INT32(DB_TOP_GROUPS), "}",
    "]");

    cursor = mongoc_collection_aggregate(messages, MONGOC_QUERY_NONE,
                                         pipeline, opts, NULL);
    bson_destroy(pipeline);

    while (n < DB_TOP_GROUPS && mongoc_cursor_next(cursor, &doc)) {
        if (!bson_iter_init_find(&it, doc, "_id")) {
            continue;
        }
        memset(&top[n], 0, sizeof(top[n]));
        bson_value_copy(bson_iter_value(&it), &top[n].id);
        db_id_string(&top[n].id, top[n].row.group_id,
                     sizeof(top[n].row.group_id));

        if (bson_iter_init_find(&it, doc, "message_count")
            && BSON_ITER_HOLDS_NUMBER(&it))
        {
            top[n].row.message_count = bson_iter_as_int64(&it);
        }
        n++;
    }

    *ntop = n;
    if ((rc = db_cursor_done(cursor, "top groups aggregation", err, errlen))
        != 0)
    {
        return rc;
    }

    /* the latest live message of each group: an indexed find, limit 1 */
    for (i = 0; i < n; i++) {
        filter = bson_new();
        BSON_APPEND_VALUE(filter, "group_id", &top[i].id);
        BSON_APPEND_BOOL(filter, "is_deleted", false);

        fopts = BCON_NEW("sort", "{", "created_at", BCON_INT32(-1), "}",
                         "limit", BCON_INT64(1),
                         "projection", "{", "created_at", BCON_INT32(1), "}",
                         "maxTimeMS", BCON_INT64(d->timeout_ms));

        cursor = mongoc_collection_find_with_opts(messages, filter, fopts,
                                                  NULL);
        if (mongoc_cursor_next(cursor, &doc)
            && bson_iter_init_find(&it, doc, "created_at")
            && BSON_ITER_HOLDS_DATE_TIME(&it))
        {
            top[i].row.has_last = 1;
            top[i].row.last_message_us =
                (uint64_t) bson_iter_date_time(&it) * 1000u;
        }

        bson_destroy(filter);
        bson_destroy(fopts);

        if ((rc = db_cursor_done(cursor, "latest message find", err, errlen))
            != 0)
        {
            return rc;
        }
    }

    if (n == 0) {
        return 0;
    }

    /* the names, in one find */
    bson_init(&ids);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%zu", i);
        bson_append_value(&ids, key, -1, &top[i].id);
    }

    filter = bson_new();
    {
        bson_t  in;

        BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &in);
        BSON_APPEND_ARRAY(&in, "$in", &ids);
        bson_append_document_end(filter, &in);
    }
    bson_destroy(&ids);

    fopts = BCON_NEW("projection", "{", "name", BCON_INT32(1), "}",
                     "maxTimeMS", BCON_INT64(d->timeout_ms));
    cursor = mongoc_collection_find_with_opts(groups, filter, fopts, NULL);

    while (mongoc_cursor_next(cursor, &doc)) {
        char  id[DB_GROUP_ID_SZ];

        if (!bson_iter_init_find(&it, doc, "_id")) {
            continue;
        }
        db_id_string(bson_iter_value(&it), id, sizeof(id));

        if (!bson_iter_init_find(&it, doc, "name")
            || !BSON_ITER_HOLDS_UTF8(&it))
        {
            continue;
        }
        name = bson_iter_utf8(&it, &len);

        for (i = 0; i < n; i++) {
            if (strcmp(top[i].row.group_id, id) == 0) {
                db_copy_utf8(top[i].row.name, sizeof(top[i].row.name),
                             name, len);
                top[i].row.has_name = 1;
            }
        }
    }

    bson_destroy(filter);
    bson_destroy(fopts);
    rc = db_cursor_done(cursor, "group names find", err, errlen);
    return rc;
}


/*
 * The names of the groups the WebSocket panel shows, from `groups`: one
 * find by _id.  A group with connections but no message yet is named too
 * (the top groups only know groups with messages).  A failure keeps the
 * names of the refresh before: they are labels, not figures.
 */
static void
db_group_names(dbstats_t *d, mongoc_collection_t *groups, db_stats_t *out)
{
    char            (*ids)[DB_GROUP_ID_SZ] = d->ids;
    bson_t           *filter, *fopts, in, arr;
    bson_oid_t        oid;
    mongoc_cursor_t  *cursor;
    const bson_t     *doc;
    bson_iter_t       it;
    size_t            i, n, k = 0;
    char              key[16], id[DB_GROUP_ID_SZ], err[DB_STATUS_SZ];
    const char       *name;
    uint32_t          len;

    if (d->want_names == NULL) {
        return;
    }
    n = d->want_names(d->want_arg, ids, DB_NAMES_MAX);
    if (n == 0) {
        out->nnames = 0;
        return;
    }

    filter = bson_new();
    BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%u", (unsigned) i);
        if (bson_oid_is_valid(ids[i], strlen(ids[i]))) {
            bson_oid_init_from_string(&oid, ids[i]);
            BSON_APPEND_OID(&arr, key, &oid);
        } else {
            BSON_APPEND_UTF8(&arr, key, ids[i]);
        }
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(filter, &in);

    fopts = BCON_NEW("projection", "{", "name", BCON_INT32(1), "}",
                     "maxTimeMS", BCON_INT64(d->timeout_ms));
    cursor = mongoc_collection_find_with_opts(groups, filter, fopts, NULL);

    while (k < DB_NAMES_MAX && mongoc_cursor_next(cursor, &doc)) {
        if (!bson_iter_init_find(&it, doc, "_id")) {
            continue;
        }
        db_id_string(bson_iter_value(&it), id, sizeof(id));
        if (!bson_iter_init_find(&it, doc, "name")
            || !BSON_ITER_HOLDS_UTF8(&it))
        {
            continue;
        }
        name = bson_iter_utf8(&it, &len);
        snprintf(d->names[k].group_id, sizeof(d->names[k].group_id), "%s",
                 id);
        db_copy_utf8(d->names[k].name, sizeof(d->names[k].name), name, len);
        k++;
    }

    bson_destroy(filter);
    bson_destroy(fopts);

    if (db_cursor_done(cursor, "group names find", err, sizeof(err)) != 0) {
        log_debug("db: %s (names kept from before)", err);
        return;
    }

    out->nnames = k;
    memcpy(out->names, d->names, k * sizeof(db_group_name_t));
}


/*
 * Runs every query.  `out` comes in with the last published figures; each
 * figure is replaced only by a query that succeeded.  Returns -1 when the
 * server did not answer (ping or totals; the error in err), 1 when some
 * figures could not be refreshed (the first failure in why), 0 when all
 * were.
 */
static int
db_refresh(dbstats_t *d, db_stats_t *out, char *err, size_t errlen,
    char *why, size_t whylen)
{
    mongoc_collection_t  *groups, *messages;
    bson_t               *opts, *live, *recent;
    db_top_work_t         top[DB_TOP_GROUPS];
    size_t                i, ntop = 0;
    int64_t               since_ms, n;
    int                   rc = -1, failed = 0;
    char                  qerr[DB_STATUS_SZ];

    if (db_ping(d->client, err, errlen) != 0) {
        return -1;
    }

    groups = mongoc_client_get_collection(d->client, d->dbname, "groups");
    messages = mongoc_client_get_collection(d->client, d->dbname,
                                            "messages");

    since_ms = (int64_t) (isotime_wall_us() / 1000u) - 24 * 3600 * 1000;

    opts = BCON_NEW("maxTimeMS", BCON_INT64(d->timeout_ms));
    live = BCON_NEW("is_deleted", BCON_BOOL(false));
    recent = BCON_NEW("created_at", "{", "$gte", BCON_DATE_TIME(since_ms),
                      "}");

    /* the totals: without them the server is not answering */

    if ((n = db_total(d->client, d->dbname, groups, opts, "groups",
                      err, errlen)) < 0)
    {
        goto done;
    }
    out->total_groups = n;

    if ((n = db_total(d->client, d->dbname, messages, opts, "messages",
                      err, errlen)) < 0)
    {
        goto done;
    }
    out->total_messages = n;

    /* the rest: one too slow for maxTimeMS keeps its last value */

/*
 * A query that ran out of maxTimeMS (-2) keeps its figure and makes the
 * refresh partial; any other error (-1: the server went away) fails it.
 */
#define db_figure(field, have, expr)                                        \
    do {                                                                    \
        if ((n = (expr)) >= 0) {                                            \
            out->field = n;                                                 \
            out->measured |= (have);                                        \
        } else if (n == -1) {                                               \
            snprintf(err, errlen, "%s", qerr);                              \
            goto done;                                                      \
        } else if (failed++ == 0) {                                         \
            snprintf(why, whylen, "%s", qerr);                              \
        }                                                                   \
    } while (0)

    db_figure(active_messages, DB_HAVE_ACTIVE,
              db_count(messages, live, opts, "active messages", qerr,
                       sizeof(qerr)));

    /* deleted = total - active only when both are of this refresh */
    if (n >= 0) {
        out->deleted_messages = out->total_messages > n
                                ? out->total_messages - n : 0;
        out->deleted_of = out->total_messages;
    }

    db_figure(new_groups_24h, DB_HAVE_NEW_GROUPS,
              db_count(groups, recent, opts, "new groups", qerr,
                       sizeof(qerr)));
    db_figure(new_messages_24h, DB_HAVE_NEW_MESSAGES,
              db_count(messages, recent, opts, "new messages", qerr,
                       sizeof(qerr)));

#undef db_figure

    n = db_top_groups(d, messages, groups, opts, top, &ntop, qerr,
                      sizeof(qerr));

    if (n == -1) {
        snprintf(err, errlen, "%s", qerr);
        goto done;
    }

    if (n == 0) {
        out->ntop = ntop;
        for (i = 0; i < ntop; i++) {
            out->top[i] = top[i].row;
        }
        out->measured |= DB_HAVE_TOP;

    } else if (failed++ == 0) {
        snprintf(why, whylen, "%s", qerr);
    }

    db_group_names(d, groups, out);

    rc = failed ? 1 : 0;

done:
    for (i = 0; i < ntop; i++) {
        bson_value_destroy(&top[i].id);
    }
    bson_destroy(opts);
    bson_destroy(live);
    bson_destroy(recent);
    mongoc_collection_destroy(groups);
    mongoc_collection_destroy(messages);
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
    if (fresh == NULL) {
        log_error("db: out of memory");
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
