/*
 * dbcounts.h - the database figures summed from the "counters" documents
 * (MongoDB's computed pattern: see ngx_chat_module/ngx_http_chat_counters.c)
 * and the groups, without a query: the database thread feeds it what it
 * read, and it answers the totals, the last 24 hours and the top groups.
 *
 * A counters document (a worker's, or the "base" one of what was stored
 * before counters existed) reads
 *   {ids: [<group id>...], c: [created * 2^32 + deleted...],
 *    l: [latest created_at...],        (a worker's)
 *    packed: "<group id> <created> <deleted> <latest ms>\n...", ("base")
 *    groups_created: n,
 *    hours: {h<created_at / 3600000>: messages created that hour},
 *    ghours: {h<hour>: groups created that hour}}.
 */

#ifndef SIDECAR_DBCOUNTS_H
#define SIDECAR_DBCOUNTS_H

#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "dbstats.h"

#define DBC_HOUR_MS    3600000
#define DBC_HOURS      26           /* buckets read and written: the last
                                       24 h and two of margin */

typedef struct dbcounts_s  dbcounts_t;

/* NULL when out of memory */
dbcounts_t *dbcounts_new(void);
void dbcounts_free(dbcounts_t *c);

/* empties it; the hour of now_ms is the last of the 24 */
void dbcounts_reset(dbcounts_t *c, int64_t now_ms);

/* a group's name (names never change: kept across resets): 0, -1 out
 * of memory */
int dbcounts_set_name(dbcounts_t *c, const char *id, const char *name,
    size_t name_len);

/* a counters document: 0, -1 out of memory */
int dbcounts_add_doc(dbcounts_t *c, const bson_t *doc);

/* for the one-time count: a message (created_ms INT64_MIN: its deletion
 * only), a group */
int dbcounts_add_message(dbcounts_t *c, const char *group_id,
    int64_t created_ms, int deleted);
int dbcounts_add_old_group(dbcounts_t *c, int64_t created_ms);

/* the counters document of what was added: packed, groups_created,
 * hours, ghours; 0, -1 when it passes max_bytes */
int dbcounts_to_bson(const dbcounts_t *c, bson_t *doc, size_t max_bytes);

/* the figures into out: totals, active, deleted, last 24 h, top groups
 * (with the names known), the names of the ids asked for */
void dbcounts_figures(const dbcounts_t *c, db_stats_t *out,
    char (*want)[DB_GROUP_ID_SZ], size_t nwant);

/* the ids, of the top groups in fig then of want, whose names are not
 * known yet: at most max into out, returns how many */
size_t dbcounts_unnamed(const dbcounts_t *c, const db_stats_t *fig,
    char (*want)[DB_GROUP_ID_SZ], size_t nwant, char (*out)[DB_GROUP_ID_SZ],
    size_t max);

#endif /* SIDECAR_DBCOUNTS_H */
