/*
 * seedlog.c - fills a MongoDB-compatible database (the devdb) with chat
 * data as the event log stores it (ngx_http_chat_event_log.c), for the
 * "reads" case: seedlog URI DB GROUPS MESSAGES GROUPS_FILE.
 *
 * The indexes nginx makes at start first (see create_indexes()).
 * Groups {_id, name, created_at, created_by, seq, logged: true}; messages
 * spread round-robin over the groups, dated over the last 48 hours, each
 * with its group's next seq; each message's record {_id: "<group>:<seq>",
 * group_id, seq, type: "message", message_id, at} in seqs.  No deletions.
 * Inserted 1,000 per insert_many, straight through the wire protocol (the
 * API would take hours for a million), with the mark of a migrated
 * database ({_id: "migrated"} in seqs).  No buckets: the first walk of a
 * range seals it, as in a running system.  Writes the group ids, one a
 * line, to GROUPS_FILE.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>

#define BATCH  1000

/*
 * The indexes nginx creates at start, this tree's and main's, made on the
 * empty collections: built at start over a million documents, they take
 * the embedded database longer than chat_db_timeout (the start retries
 * until they are there, but meanwhile every read waits on them).
 */
static int
create_indexes(mongoc_database_t *db)
{
    static const char *idx[][3] = {
        { "messages", "group_id_1", "{\"group_id\": 1}" },
        { "messages", "group_id_1_created_at_-1", "{\"group_id\": 1, \"created_at\": -1}" },
        { "messages", "created_at_1", "{\"created_at\": 1}" },
        { "messages", "group_id_1_seq_-1", "{\"group_id\": 1, \"seq\": -1}" },
        { "messages", "group_id_1_seq_1", "{\"group_id\": 1, \"seq\": 1}" },
        { "messages", "group_id_1_deleted_seq_1", "{\"group_id\": 1, \"deleted_seq\": 1}" },
        { "groups", "created_at_1", "{\"created_at\": 1}" },
    };
    bson_error_t  err;
    size_t        i;

    for (i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        bson_t *keys = bson_new_from_json((const uint8_t *) idx[i][2], -1, &err);
        bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(idx[i][0]),
                               "indexes", "[", "{", "key", BCON_DOCUMENT(keys),
                               "name", BCON_UTF8(idx[i][1]), "}", "]");
        int ok = mongoc_database_write_command_with_opts(db, cmd, NULL, NULL, &err);
        bson_destroy(cmd);
        bson_destroy(keys);
        if (!ok) {
            fprintf(stderr, "seedlog: index %s: %s\n", idx[i][1], err.message);
            return -1;
        }
    }
    return 0;
}

static int
flush(mongoc_collection_t *c, bson_t **docs, int *n, const char *what)
{
    bson_error_t  err;
    int           k;

    if (*n == 0) {
        return 0;
    }
    if (!mongoc_collection_insert_many(c, (const bson_t **) docs, *n, NULL,
                                       NULL, &err))
    {
        fprintf(stderr, "seedlog: %s: %s\n", what, err.message);
        return -1;
    }
    for (k = 0; k < *n; k++) {
        bson_destroy(docs[k]);
    }
    *n = 0;
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: seedlog URI DB GROUPS MESSAGES GROUPS_FILE\n");
        return 2;
    }
    int ngroups = atoi(argv[3]);
    long nmsg = atol(argv[4]);
    FILE *gf = fopen(argv[5], "w");
    if (ngroups <= 0 || nmsg < 0 || gf == NULL) {
        fprintf(stderr, "seedlog: bad arguments\n");
        return 2;
    }

    mongoc_init();
    mongoc_client_t *cl = mongoc_client_new(argv[1]);
    if (cl == NULL) return 1;
    mongoc_database_t *db = mongoc_client_get_database(cl, argv[2]);
    if (create_indexes(db) != 0) return 1;
    mongoc_database_destroy(db);
    mongoc_collection_t *gc = mongoc_client_get_collection(cl, argv[2], "groups");
    mongoc_collection_t *mc = mongoc_client_get_collection(cl, argv[2], "messages");
    mongoc_collection_t *sc = mongoc_client_get_collection(cl, argv[2], "seqs");
    bson_oid_t *gids = calloc(ngroups, sizeof(bson_oid_t));
    int64_t now = (int64_t) time(NULL) * 1000;
    bson_t *docs[BATCH], *recs[BATCH];
    int n = 0, nr = 0;

    for (int i = 0; i < ngroups; i++) {
        char name[32], hex[25];
        long count = nmsg / ngroups + (i < nmsg % ngroups);
        bson_oid_init(&gids[i], NULL);
        bson_oid_to_string(&gids[i], hex);
        fprintf(gf, "%s\n", hex);
        snprintf(name, sizeof(name), "seed-group-%d", i);
        docs[n] = bson_new();
        BSON_APPEND_OID(docs[n], "_id", &gids[i]);
        BSON_APPEND_UTF8(docs[n], "name", name);
        BSON_APPEND_DATE_TIME(docs[n], "created_at", now - 3 * 86400000);
        BSON_APPEND_UTF8(docs[n], "created_by", "seed");
        BSON_APPEND_INT64(docs[n], "seq", count);
        BSON_APPEND_BOOL(docs[n], "logged", true);
        if (++n == BATCH && flush(gc, docs, &n, "groups") != 0) return 1;
    }
    if (flush(gc, docs, &n, "groups") != 0) return 1;
    fclose(gf);

    for (long i = 0; i < nmsg; i++) {
        char user[32], content[64], rid[64], hex[25];
        int g = (int) (i % ngroups);
        int64_t seq = i / ngroups + 1;
        int64_t at = now - (nmsg - i) * 172800000 / (nmsg ? nmsg : 1);
        bson_oid_t id;

        bson_oid_init(&id, NULL);
        snprintf(user, sizeof(user), "user-%ld", i % 5000);
        snprintf(content, sizeof(content), "seeded message %ld", i);
        docs[n] = bson_new();
        BSON_APPEND_OID(docs[n], "_id", &id);
        BSON_APPEND_OID(docs[n], "group_id", &gids[g]);
        BSON_APPEND_UTF8(docs[n], "user_id", user);
        BSON_APPEND_UTF8(docs[n], "content", content);
        BSON_APPEND_DATE_TIME(docs[n], "created_at", at);
        BSON_APPEND_INT64(docs[n], "seq", seq);
        BSON_APPEND_BOOL(docs[n], "is_deleted", false);
        n++;

        bson_oid_to_string(&gids[g], hex);
        snprintf(rid, sizeof(rid), "%s:%lld", hex, (long long) seq);
        recs[nr] = bson_new();
        BSON_APPEND_UTF8(recs[nr], "_id", rid);
        BSON_APPEND_OID(recs[nr], "group_id", &gids[g]);
        BSON_APPEND_INT64(recs[nr], "seq", seq);
        BSON_APPEND_UTF8(recs[nr], "type", "message");
        BSON_APPEND_OID(recs[nr], "message_id", &id);
        BSON_APPEND_DATE_TIME(recs[nr], "at", at);
        nr++;

        if (n == BATCH) {
            if (flush(mc, docs, &n, "messages") != 0) return 1;
            if (flush(sc, recs, &nr, "seqs") != 0) return 1;
        }
        if ((i + 1) % 100000 == 0) {
            fprintf(stderr, "seedlog: %ld messages\n", i + 1);
        }
    }
    if (flush(mc, docs, &n, "messages") != 0) return 1;
    if (flush(sc, recs, &nr, "seqs") != 0) return 1;

    /* the mark of a migrated database: nginx skips the migration's scans */
    recs[0] = bson_new();
    BSON_APPEND_UTF8(recs[0], "_id", "migrated");
    BSON_APPEND_DATE_TIME(recs[0], "at", now);
    nr = 1;
    if (flush(sc, recs, &nr, "seqs") != 0) return 1;

    mongoc_collection_destroy(sc);
    mongoc_collection_destroy(gc);
    mongoc_collection_destroy(mc);
    mongoc_client_destroy(cl);
    mongoc_cleanup();
    printf("seeded %d groups, %ld messages and their records\n", ngroups, nmsg);
    return 0;
}
