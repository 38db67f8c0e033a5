/*
 * benchmongo.h - mongo-c-driver helpers shared by the database probes of
 * bench/tools (writeprobe, seqprobe): the client pool and the scratch
 * collections.  Header only (static inline), like benchutil.h, which it
 * includes: the tool defines BENCH_TOOL first and links libmongoc:
 *   cc -O2 -Wall -o TOOL bench/tools/TOOL.c \
 *       $(pkg-config --cflags --libs libmongoc-1.0) -lpthread
 */

#ifndef BENCHMONGO_H
#define BENCHMONGO_H

#include <mongoc/mongoc.h>

#include "benchutil.h"


/*
 * mongoc_init(), then a client pool on uri_s of at most max_size clients
 * (one connection each), with the error API version 2; *uri is for
 * bm_pool_destroy().  NULL, and the error on stderr, if the URI is bad.
 */
static inline mongoc_client_pool_t *
bm_pool_new(const char *uri_s, int max_size, mongoc_uri_t **uri)
{
    bson_error_t           err;
    mongoc_client_pool_t  *pool;

    mongoc_init();
    *uri = mongoc_uri_new_with_error(uri_s, &err);
    if (*uri == NULL) {
        fprintf(stderr, BENCH_TOOL ": %s\n", err.message);
        return NULL;
    }
    mongoc_uri_set_option_as_int32(*uri, MONGOC_URI_MAXPOOLSIZE, max_size);
    pool = mongoc_client_pool_new(*uri);
    mongoc_client_pool_set_error_api(pool, 2);
    return pool;
}


/* the pool and its URI destroyed, then mongoc_cleanup() */
static inline void
bm_pool_destroy(mongoc_client_pool_t *pool, mongoc_uri_t *uri)
{
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
}


/* a scratch collection DB.NAME dropped (an error, e.g. none yet, ignored) */
static inline void
bm_drop(mongoc_client_t *cl, const char *db, const char *name)
{
    mongoc_collection_t  *c;

    c = mongoc_client_get_collection(cl, db, name);
    (void) mongoc_collection_drop(c, NULL);
    mongoc_collection_destroy(c);
}


/* insert_one of d into c: 1, or 0 and the error on stderr */
static inline int
bm_insert(mongoc_collection_t *c, const bson_t *d)
{
    bson_error_t  err;

    if (!mongoc_collection_insert_one(c, d, NULL, NULL, &err)) {
        fprintf(stderr, BENCH_TOOL ": %s\n", err.message);
        return 0;
    }
    return 1;
}

/*
 * A probe's scratch collections, with a client of the pool given back
 * after: DB.NAME dropped for each name of the NULL-terminated drop[], then
 * seed(c) on DB.INTO writes what the probe starts from.  Returns seed()'s
 * answer: 0 if it failed (the error on stderr: bm_insert()).
 */
static inline int
bm_scratch(mongoc_client_pool_t *pool, const char *db,
    const char *const *drop, const char *into,
    int (*seed)(mongoc_collection_t *c))
{
    int                   ok;
    mongoc_client_t      *cl;
    mongoc_collection_t  *c;

    cl = mongoc_client_pool_pop(pool);
    for ( /* void */ ; *drop != NULL; drop++) {
        bm_drop(cl, db, *drop);
    }
    c = mongoc_client_get_collection(cl, db, into);
    ok = seed(c);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
    return ok;
}

#endif /* BENCHMONGO_H */
