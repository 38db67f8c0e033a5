/*
 * idlookup.c - latency of find({_id: X}) on one connection, for the
 * devdb's _id index (bench/devdb-id-index.sh).
 *
 *   idlookup URI DB COLL seed N        insert N message-like documents
 *                                      (ObjectId _ids, ~200 bytes, 1,000
 *                                      per insert_many); prints the time
 *   idlookup URI DB COLL lookup M      M sequential lookups by _id of
 *                                      documents spread over the
 *                                      collection; prints median, p90,
 *                                      min and max in ms
 *
 * One single-threaded mongoc client: one connection. The ids to look up
 * are read first (one find with a projection, not timed). Every lookup
 * must return exactly its document, or the tool fails.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_TOOL "idlookup"
#include "benchutil.h"

static int
seed(mongoc_collection_t *c, long n)
{
    bson_error_t err;
    bson_t *docs[1000];
    int k = 0;
    int64_t now = (int64_t) time(NULL) * 1000;
    int64_t t0 = bson_get_monotonic_time();

    for (long i = 0; i < n; i++) {
        char user[32], content[96];
        bson_oid_t id, gid;
        bson_oid_init(&id, NULL);
        bson_oid_init(&gid, NULL);
        snprintf(user, sizeof(user), "user-%ld", i % 5000);
        snprintf(content, sizeof(content),
                 "message %ld of the _id lookup benchmark, some text", i);
        docs[k] = bson_new();
        BSON_APPEND_OID(docs[k], "_id", &id);
        BSON_APPEND_OID(docs[k], "group_id", &gid);
        BSON_APPEND_UTF8(docs[k], "user_id", user);
        BSON_APPEND_UTF8(docs[k], "content", content);
        BSON_APPEND_DATE_TIME(docs[k], "created_at", now - n + i);
        BSON_APPEND_BOOL(docs[k], "is_deleted", false);
        if (++k == 1000 || i == n - 1) {
            if (!mongoc_collection_insert_many(c, (const bson_t **) docs, k,
                                               NULL, NULL, &err)) {
                fprintf(stderr, "idlookup: insert: %s\n", err.message);
                return 1;
            }
            for (int j = 0; j < k; j++) bson_destroy(docs[j]);
            k = 0;
        }
    }
    double s = (bson_get_monotonic_time() - t0) / 1e6;
    printf("seeded %ld documents in %.2f s (%.0f documents/s)\n", n, s,
           n / s);
    return 0;
}

static int
lookup(mongoc_collection_t *c, long m)
{
    bson_error_t err;
    const bson_t *doc;
    bson_iter_t it;

    /* the ids, in insertion order */
    bson_t *all = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
    bson_t empty = BSON_INITIALIZER;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &empty, all, NULL);
    size_t n = 0, cap = 1024;
    bson_oid_t *ids = malloc(cap * sizeof(*ids));
    while (mongoc_cursor_next(cur, &doc)) {
        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it)) {
            if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof(*ids));
            bson_oid_copy(bson_iter_oid(&it), &ids[n++]);
        }
    }
    if (mongoc_cursor_error(cur, &err)) {
        fprintf(stderr, "idlookup: reading the ids: %s\n", err.message);
        return 1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(all);
    if (n == 0) {
        fprintf(stderr, "idlookup: the collection has no ObjectId _ids\n");
        return 1;
    }

    double *ms = malloc(m * sizeof(double));
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    for (long i = 0; i < m; i++) {
        /* spread over the collection: a stride prime to any size here */
        const bson_oid_t *id = &ids[(size_t) ((i * 7919 + 13) % (long) n)];
        bson_t *filter = BCON_NEW("_id", BCON_OID(id));
        int64_t t0 = bson_get_monotonic_time();
        cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
        int got = 0;
        while (mongoc_cursor_next(cur, &doc)) {
            if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it)
                && bson_oid_equal(bson_iter_oid(&it), id))
                got++;
        }
        bool bad = mongoc_cursor_error(cur, &err);
        mongoc_cursor_destroy(cur);
        ms[i] = (bson_get_monotonic_time() - t0) / 1000.0;
        bson_destroy(filter);
        if (bad || got != 1) {
            fprintf(stderr, "idlookup: lookup %ld: %s\n", i,
                    bad ? err.message : "document not found");
            return 1;
        }
    }
    bson_destroy(opts);
    qsort(ms, m, sizeof(double), bu_cmp_double);
    printf("lookups=%ld docs=%zu median_ms=%.3f p90_ms=%.3f min_ms=%.3f "
           "max_ms=%.3f\n",
           m, n, ms[m / 2], ms[(m * 9) / 10], ms[0], ms[m - 1]);
    free(ms);
    free(ids);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[4], "seed") && strcmp(argv[4], "lookup"))
        || atol(argv[5]) <= 0) {
        fprintf(stderr, "usage: idlookup URI DB COLL seed N\n"
                        "       idlookup URI DB COLL lookup M\n");
        return 2;
    }
    mongoc_init();
    mongoc_client_t *cl = mongoc_client_new(argv[1]);
    if (cl == NULL) {
        fprintf(stderr, "idlookup: bad URI %s\n", argv[1]);
        return 2;
    }
    mongoc_collection_t *c = mongoc_client_get_collection(cl, argv[2], argv[3]);
    int rc = strcmp(argv[4], "seed") == 0 ? seed(c, atol(argv[5]))
                                          : lookup(c, atol(argv[5]));
    mongoc_collection_destroy(c);
    mongoc_client_destroy(cl);
    mongoc_cleanup();
    return rc;
}
