/*
 * seed.c - fills a MongoDB-compatible database (the devdb) with chat data
 * in the module's schema for target 4: seed URI DB GROUPS MESSAGES.
 * Messages are spread over the groups, dated over the last 48 hours, 2 %
 * soft-deleted; inserted 1,000 per insert_many.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>

int
main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: seed URI DB GROUPS MESSAGES\n");
        return 2;
    }
    int ngroups = atoi(argv[3]);
    long nmsg = atol(argv[4]);
    bson_error_t err;

    mongoc_init();
    mongoc_client_t *cl = mongoc_client_new(argv[1]);
    if (cl == NULL) return 1;
    mongoc_collection_t *gc = mongoc_client_get_collection(cl, argv[2], "groups");
    mongoc_collection_t *mc = mongoc_client_get_collection(cl, argv[2], "messages");
    bson_oid_t *gids = calloc(ngroups, sizeof(bson_oid_t));
    int64_t now = (int64_t) time(NULL) * 1000;

    bson_t **docs = calloc(1000, sizeof(bson_t *));
    int n = 0;
    for (int i = 0; i < ngroups; i++) {
        char name[32];
        bson_oid_init(&gids[i], NULL);
        snprintf(name, sizeof(name), "seed-group-%d", i);
        docs[n] = bson_new();
        BSON_APPEND_OID(docs[n], "_id", &gids[i]);
        BSON_APPEND_UTF8(docs[n], "name", name);
        BSON_APPEND_DATE_TIME(docs[n], "created_at", now - 3600000);
        BSON_APPEND_UTF8(docs[n], "created_by", "seed");
        if (++n == 1000 || i == ngroups - 1) {
            if (!mongoc_collection_insert_many(gc, (const bson_t **) docs, n, NULL, NULL, &err)) {
                fprintf(stderr, "seed: groups: %s\n", err.message);
                return 1;
            }
            for (int k = 0; k < n; k++) bson_destroy(docs[k]);
            n = 0;
        }
    }
    for (long i = 0; i < nmsg; i++) {
        char user[32], content[64];
        bson_oid_t id;
        bson_oid_init(&id, NULL);
        snprintf(user, sizeof(user), "user-%ld", i % 5000);
        snprintf(content, sizeof(content), "seeded message %ld", i);
        docs[n] = bson_new();
        BSON_APPEND_OID(docs[n], "_id", &id);
        BSON_APPEND_OID(docs[n], "group_id", &gids[i % ngroups]);
        BSON_APPEND_UTF8(docs[n], "user_id", user);
        BSON_APPEND_UTF8(docs[n], "content", content);
        BSON_APPEND_DATE_TIME(docs[n], "created_at", now - (nmsg - i) * 172800000 / nmsg);
        BSON_APPEND_BOOL(docs[n], "is_deleted", i % 50 == 0);
        if (++n == 1000 || i == nmsg - 1) {
            if (!mongoc_collection_insert_many(mc, (const bson_t **) docs, n, NULL, NULL, &err)) {
                fprintf(stderr, "seed: messages: %s\n", err.message);
                return 1;
            }
            for (int k = 0; k < n; k++) bson_destroy(docs[k]);
            n = 0;
        }
    }
    mongoc_collection_destroy(gc);
    mongoc_collection_destroy(mc);
    mongoc_client_destroy(cl);
    mongoc_cleanup();
    printf("seeded %d groups, %ld messages\n", ngroups, nmsg);
    return 0;
}
