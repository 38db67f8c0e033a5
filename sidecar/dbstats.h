/*
 * dbstats.h - database statistics, refreshed by a background thread.
 *
 * The thread owns its mongoc client (a mongoc_client_t is not thread
 * safe, and no other thread needs one).  Every refresh interval it pings
 * the server and reads the "counters" documents the module keeps (and,
 * once per database, counts what was stored before them), each read
 * bounded by maxTimeMS and by the URI's serverSelection/socket timeouts;
 * then it publishes the whole result under a mutex, in one copy.
 * Readers (HTTP handlers) take a copy under that mutex and never wait on
 * MongoDB.  A failed refresh keeps the last good figures and marks them
 * stale; a read that runs past maxTimeMS keeps them too, the server still
 * "connected", and stale_reason says which read was too slow.
 */

#ifndef SIDECAR_DBSTATS_H
#define SIDECAR_DBSTATS_H

#include <stddef.h>
#include <stdint.h>

#define DB_TOP_GROUPS     10
#define DB_GROUP_ID_SZ    64
#define DB_GROUP_NAME_SZ  256
#define DB_STATUS_SZ      1024
#define DB_NAMES_MAX      128       /* groups of the WebSocket panel */

/* db_stats_t.measured: figures a query has returned at least once */
#define DB_HAVE_ACTIVE        0x01      /* and deleted_messages */
#define DB_HAVE_NEW_GROUPS    0x02
#define DB_HAVE_NEW_MESSAGES  0x04
#define DB_HAVE_TOP           0x08

typedef struct {
    char      group_id[DB_GROUP_ID_SZ];      /* 24 hex chars for ObjectId */
    char      name[DB_GROUP_NAME_SZ];
    int       has_name;
    int64_t   message_count;
    int       has_last;
    uint64_t  last_message_us;
} db_top_group_t;

typedef struct {
    char      group_id[DB_GROUP_ID_SZ];
    char      name[DB_GROUP_NAME_SZ];
} db_group_name_t;

typedef struct {
    int             healthy;                 /* the server answered the last
                                                refresh (ping, totals) */
    char            status[DB_STATUS_SZ];    /* "connected" or the error */
    int             have_data;               /* one refresh ever succeeded */
    int             stale;                   /* figures are older than the
                                                last attempt */
    char            stale_reason[DB_STATUS_SZ]; /* "" or the first query
                                                that failed */
    uint64_t        refreshed_at_us;         /* wall, last full success */
    uint64_t        attempted_at_us;         /* wall, last attempt */
    double          refresh_ms;              /* duration of the last one */
    uint64_t        refreshes_ok;
    uint64_t        refreshes_partial;       /* some figures kept */
    uint64_t        refreshes_failed;

    unsigned        measured;                /* DB_HAVE_* */
    int64_t         total_groups;
    int64_t         total_messages;
    int64_t         active_messages;
    int64_t         deleted_messages;        /* both from one refresh: */
    int64_t         deleted_of;              /* total_messages then */
    int64_t         new_groups_24h;
    int64_t         new_messages_24h;
    size_t          ntop;
    db_top_group_t  top[DB_TOP_GROUPS];

    /* names from `groups` of the groups the WebSocket panel shows (those
       with connections, those of recent events), whatever their messages */
    size_t          nnames;
    db_group_name_t names[DB_NAMES_MAX];
} db_stats_t;

/* the ids to name: fills ids, returns how many (<= max) */
typedef size_t (*dbstats_ids_pt)(void *arg, char (*ids)[DB_GROUP_ID_SZ],
    size_t max);

typedef struct {
    const char  *uri;               /* mongodb://...; database from path */
    uint64_t     refresh_us;        /* 10 s */
    int          query_timeout_ms;  /* maxTimeMS, also bounds the socket */
    dbstats_ids_pt  want_names;     /* may be NULL; called with no lock */
    void           *want_arg;
} dbstats_config_t;

typedef struct dbstats_s  dbstats_t;

/* mongoc_init() must have been called.  -1 (with err) on a bad URI. */
int dbstats_start(dbstats_t **out, const dbstats_config_t *cfg, char *err,
    size_t errlen);

/* copies the last published result; never blocks on the database */
void dbstats_get(dbstats_t *d, db_stats_t *out);

/* wakes and joins the thread; waits at most for one bounded query */
void dbstats_stop(dbstats_t *d);

/* one ping, for --ping-db: 0 when the server answered */
int dbstats_ping(const char *uri, int timeout_ms, char *err, size_t errlen);

#endif /* SIDECAR_DBSTATS_H */
