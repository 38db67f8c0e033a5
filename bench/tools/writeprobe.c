/*
 * writeprobe.c - what one write costs the database under 32 concurrent
 * writers, beside what a POST of a message writes (issue 13, target
 * "POST p50 <= 10 ms at 32 clients"): the ceiling any POST code has.
 *
 *   writeprobe URI DB MODE THREADS SECONDS
 *
 * MODE: "insert" - one insert_one of a message-like document a round
 *       (into DB.probe_messages);
 *       "inc"    - one findAndModify {$inc: {seq: 1}} of one of 1,000
 *       group-like documents (DB.probe_groups), as the POST takes a seq;
 *       "post"   - the POST's four writes in order: the $inc, the seq's
 *       record (insert, DB.probe_seqs), the message (insert), the
 *       counter (update_one $inc, upsert, DB.probe_counters).
 * Each of THREADS threads has its own client (one connection) and loops
 * for SECONDS; prints rounds/s and the rounds' p50/p99/max in ms, and
 * the writes per second.  Scratch collections only: dropped first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_TOOL "writeprobe"
#include "benchmongo.h"

#define MAXLAT  2000000

static const char *uri_s, *db, *mode;
static int seconds;
static mongoc_client_pool_t *pool;
static double lat[MAXLAT];
static long nlat, errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static bson_oid_t gids[1000];

static int
one_round(mongoc_client_t *cl, unsigned *rnd, long i)
{
    bson_error_t err;
    bson_t doc, q, upd, child, reply;
    bson_oid_t id;
    const bson_oid_t *g = &gids[rand_r(rnd) % 1000];
    int ok = 1;
    char sid[64];
    mongoc_collection_t *groups, *msgs, *seqs, *ctrs;

    groups = mongoc_client_get_collection(cl, db, "probe_groups");
    msgs = mongoc_client_get_collection(cl, db, "probe_messages");
    seqs = mongoc_client_get_collection(cl, db, "probe_seqs");
    ctrs = mongoc_client_get_collection(cl, db, "probe_counters");

    if (strcmp(mode, "inc") == 0 || strcmp(mode, "post") == 0) {
        bson_init(&q);
        BSON_APPEND_OID(&q, "_id", g);
        bson_init(&upd);
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$inc", &child);
        BSON_APPEND_INT64(&child, "seq", 1);
        bson_append_document_end(&upd, &child);
        ok = mongoc_collection_find_and_modify(groups, &q, NULL, &upd, NULL,
                                               false, false, true, &reply,
                                               &err);
        bson_destroy(&reply);
        bson_destroy(&q);
        bson_destroy(&upd);
    }

    if (ok && strcmp(mode, "post") == 0) {
        bson_oid_init(&id, NULL);
        snprintf(sid, sizeof(sid), "%ld:%d", i, rand_r(rnd));
        bson_init(&doc);
        BSON_APPEND_UTF8(&doc, "_id", sid);
        BSON_APPEND_OID(&doc, "group_id", g);
        BSON_APPEND_INT64(&doc, "seq", i);
        BSON_APPEND_UTF8(&doc, "type", "message");
        BSON_APPEND_OID(&doc, "message_id", &id);
        BSON_APPEND_DATE_TIME(&doc, "at", bson_get_monotonic_time() / 1000);
        ok = mongoc_collection_insert_one(seqs, &doc, NULL, NULL, &err);
        bson_destroy(&doc);
    }

    if (ok && (strcmp(mode, "insert") == 0 || strcmp(mode, "post") == 0)) {
        bson_oid_init(&id, NULL);
        bson_init(&doc);
        BSON_APPEND_OID(&doc, "_id", &id);
        BSON_APPEND_OID(&doc, "group_id", g);
        BSON_APPEND_UTF8(&doc, "user_id", "bench");
        BSON_APPEND_UTF8(&doc, "content", "a bench message of some forty bytes....");
        BSON_APPEND_DATE_TIME(&doc, "created_at", bson_get_monotonic_time() / 1000);
        BSON_APPEND_INT64(&doc, "seq", i);
        BSON_APPEND_BOOL(&doc, "is_deleted", false);
        ok = mongoc_collection_insert_one(msgs, &doc, NULL, NULL, &err);
        bson_destroy(&doc);
    }

    if (ok && strcmp(mode, "post") == 0) {
        bson_init(&q);
        BSON_APPEND_INT32(&q, "_id", rand_r(rnd) % 64);
        bson_init(&upd);
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$inc", &child);
        BSON_APPEND_INT64(&child, "messages", 1);
        bson_append_document_end(&upd, &child);
        bson_init(&doc);
        BSON_APPEND_BOOL(&doc, "upsert", true);
        ok = mongoc_collection_update_one(ctrs, &q, &upd, &doc, NULL, &err);
        bson_destroy(&doc);
        bson_destroy(&q);
        bson_destroy(&upd);
    }

    if (!ok) {
        fprintf(stderr, "writeprobe: %s\n", err.message);
    }

    mongoc_collection_destroy(groups);
    mongoc_collection_destroy(msgs);
    mongoc_collection_destroy(seqs);
    mongoc_collection_destroy(ctrs);
    return ok;
}

static void *
worker(void *arg)
{
    unsigned rnd = (unsigned) (uintptr_t) arg * 7919u + 1;
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    int64_t end = bson_get_monotonic_time() + (int64_t) seconds * 1000000;
    long i = (long) (uintptr_t) arg * 100000000L;

    while (bson_get_monotonic_time() < end) {
        int64_t t0 = bson_get_monotonic_time();
        int ok = one_round(cl, &rnd, i++);
        double ms = (bson_get_monotonic_time() - t0) / 1000.0;
        pthread_mutex_lock(&mu);
        if (!ok) {
            errors++;
        } else if (nlat < MAXLAT) {
            lat[nlat++] = ms;
        }
        pthread_mutex_unlock(&mu);
    }

    mongoc_client_pool_push(pool, cl);
    return NULL;
}

/* 1,000 groups at seq 0 */
static int
seed_groups(mongoc_collection_t *c)
{
    int i;

    for (i = 0; i < 1000; i++) {
        bson_t d;
        bson_oid_init(&gids[i], NULL);
        bson_init(&d);
        BSON_APPEND_OID(&d, "_id", &gids[i]);
        BSON_APPEND_UTF8(&d, "name", "probe");
        BSON_APPEND_INT64(&d, "seq", 0);
        if (!bm_insert(c, &d)) {
            return 0;
        }
        bson_destroy(&d);
    }
    return 1;
}

int
main(int argc, char **argv)
{
    mongoc_uri_t *uri;
    int n;
    const char *names[] = { "probe_groups", "probe_messages", "probe_seqs",
                            "probe_counters", NULL };

    if (argc != 6) {
        fprintf(stderr, "usage: writeprobe URI DB insert|inc|post THREADS SECONDS\n");
        return 2;
    }

    uri_s = argv[1]; db = argv[2]; mode = argv[3];
    n = atoi(argv[4]); seconds = atoi(argv[5]);
    if (n < 1 || n > 256 || seconds < 1) {
        return 2;
    }

    pool = bm_pool_new(uri_s, n + 1, &uri);
    if (pool == NULL) {
        return 1;
    }

    if (!bm_scratch(pool, db, names, "probe_groups", seed_groups)) {
        return 1;
    }

    bu_run_threads(n, worker);

    qsort(lat, (size_t) nlat, sizeof(double), bu_cmp_double);
    printf("{\"mode\":\"%s\",\"threads\":%d,\"seconds\":%d,\"rounds\":%ld,"
           "\"rounds_per_s\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
           "\"max_ms\":%.2f,\"errors\":%ld}\n",
           mode, n, seconds, nlat, (double) nlat / seconds,
           nlat ? lat[nlat / 2] : 0, nlat ? lat[(long) (nlat * 0.99)] : 0,
           nlat ? lat[nlat - 1] : 0, errors);

    bm_pool_destroy(pool, uri);
    return 0;
}
