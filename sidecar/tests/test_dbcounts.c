/*
 * test_dbcounts.c - the database figures summed from counters documents
 * (the module's, with arrays; "base", packed), without a database.
 */

#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "sidecar/dbcounts.h"
#include "unit.h"

#define NOW_MS    ((int64_t) 1765000000000)       /* 2025-12-06T05:46:40Z */
#define HOUR      ((int64_t) DBC_HOUR_MS)
#define C(m, d)   (((int64_t) (m) << 32) + (d))

static const char  *G1 = "6b0000000000000000000001";
static const char  *G2 = "6b0000000000000000000002";
static const char  *G3 = "6b0000000000000000000003";


/* a worker's document: n groups with their packed counts and latest */
static void
worker_doc(bson_t *doc, size_t n, const char **ids, const int64_t *c,
    const int64_t *l, int64_t groups, int64_t hour_msgs)
{
    bson_t  a, h;
    char    key[16], hk[32];
    size_t  i;

    bson_init(doc);
    BSON_APPEND_UTF8(doc, "_id", "w:host:1:2:0.0");
    BSON_APPEND_ARRAY_BEGIN(doc, "ids", &a);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%zu", i);
        BSON_APPEND_UTF8(&a, key, ids[i]);
    }
    bson_append_array_end(doc, &a);
    BSON_APPEND_ARRAY_BEGIN(doc, "c", &a);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%zu", i);
        BSON_APPEND_INT64(&a, key, c[i]);
    }
    bson_append_array_end(doc, &a);
    BSON_APPEND_ARRAY_BEGIN(doc, "l", &a);
    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%zu", i);
        BSON_APPEND_DATE_TIME(&a, key, l[i]);
    }
    bson_append_array_end(doc, &a);
    BSON_APPEND_INT64(doc, "groups_created", groups);

    /* this hour, 23 hours ago (in the 24 h), 24 hours ago (out) */
    BSON_APPEND_DOCUMENT_BEGIN(doc, "hours", &h);
    snprintf(hk, sizeof(hk), "h%lld", (long long) (NOW_MS / HOUR));
    BSON_APPEND_INT64(&h, hk, hour_msgs);
    snprintf(hk, sizeof(hk), "h%lld", (long long) (NOW_MS / HOUR - 23));
    BSON_APPEND_INT64(&h, hk, 1);
    snprintf(hk, sizeof(hk), "h%lld", (long long) (NOW_MS / HOUR - 24));
    BSON_APPEND_INT64(&h, hk, 100);
    BSON_APPEND_INT32(&h, "hx", 7);                /* not an hour: skipped */
    bson_append_document_end(doc, &h);

    BSON_APPEND_DOCUMENT_BEGIN(doc, "ghours", &h);
    snprintf(hk, sizeof(hk), "h%lld", (long long) (NOW_MS / HOUR - 1));
    BSON_APPEND_INT64(&h, hk, groups);
    bson_append_document_end(doc, &h);
}


static void
dbcounts_sums_the_documents_of_every_worker(void)
{
    dbcounts_t  *c = dbcounts_new();
    db_stats_t  *out = calloc(1, sizeof(*out));
    bson_t       w1, w2;
    const char  *ids1[] = { G1, G2 }, *ids2[] = { G2, G3 };
    int64_t      c1[] = { C(5, 1), C(3, 0) }, l1[] = { NOW_MS - 10, NOW_MS };
    int64_t      c2[] = { C(4, 2), C(0, 1) }, l2[] = { NOW_MS - 5, 0 };

    dbcounts_reset(c, NOW_MS);
    worker_doc(&w1, 2, ids1, c1, l1, 2, 8);
    worker_doc(&w2, 2, ids2, c2, l2, 1, 4);
    CHECK(dbcounts_add_doc(c, &w1) == 0);
    CHECK(dbcounts_add_doc(c, &w2) == 0);
    CHECK(dbcounts_set_name(c, G2, "two", 3) == 0);
    dbcounts_figures(c, out, NULL, 0);

    CHECK(out->total_messages == 12);
    CHECK(out->deleted_messages == 4);
    CHECK(out->active_messages == 8);
    CHECK(out->deleted_of == 12);
    CHECK(out->total_groups == 3);
    CHECK(out->new_groups_24h == 3);
    CHECK(out->new_messages_24h == 8 + 4 + 2);     /* not the 24th hour */

    /* G2: 7 - 2 = 5 live, G1: 4, G3: -1 (a deletion of a message another
     * document counted) is not listed */
    CHECK(out->ntop == 2);
    CHECK(strcmp(out->top[0].group_id, G2) == 0);
    CHECK(out->top[0].message_count == 5);
    CHECK(out->top[0].has_name && strcmp(out->top[0].name, "two") == 0);
    CHECK(out->top[0].has_last && out->top[0].last_message_us
          == (uint64_t) NOW_MS * 1000u);
    CHECK(strcmp(out->top[1].group_id, G1) == 0);
    CHECK(out->top[1].message_count == 4);
    CHECK(!out->top[1].has_name);

    bson_destroy(&w1);
    bson_destroy(&w2);
    free(out);
    dbcounts_free(c);
}


static void
dbcounts_keeps_the_ten_best_in_a_total_order(void)
{
    dbcounts_t  *c = dbcounts_new();
    db_stats_t  *out = calloc(1, sizeof(*out));
    const char  *ids[30];
    char         idbuf[30][DB_GROUP_ID_SZ];
    int64_t      cs[30], ls[30];
    bson_t       w;
    size_t       i;

    for (i = 0; i < 30; i++) {
        snprintf(idbuf[i], sizeof(idbuf[i]), "6c%022zx", 29 - i);
        ids[i] = idbuf[i];
        cs[i] = C(i / 2 + 1, 0);            /* ties two by two */
        ls[i] = NOW_MS;
    }
    dbcounts_reset(c, NOW_MS);
    worker_doc(&w, 30, ids, cs, ls, 0, 0);
    CHECK(dbcounts_add_doc(c, &w) == 0);
    dbcounts_figures(c, out, NULL, 0);

    CHECK(out->ntop == DB_TOP_GROUPS);
    CHECK(out->top[0].message_count == 15);
    CHECK(out->top[9].message_count == 11);
    /* a tie: the smaller id first (ids[29] is "6c...00") */
    CHECK(strcmp(out->top[0].group_id, ids[29]) == 0);
    CHECK(strcmp(out->top[1].group_id, ids[28]) == 0);
    for (i = 1; i < DB_TOP_GROUPS; i++) {
        CHECK(out->top[i - 1].message_count >= out->top[i].message_count);
    }

    bson_destroy(&w);
    free(out);
    dbcounts_free(c);
}


static void
dbcounts_base_round_trips_packed(void)
{
    dbcounts_t  *base = dbcounts_new(), *c = dbcounts_new();
    db_stats_t  *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    bson_t       doc;
    bson_iter_t  it;

    dbcounts_reset(base, NOW_MS);
    CHECK(dbcounts_add_message(base, G1, NOW_MS - HOUR, 0) == 0);
    CHECK(dbcounts_add_message(base, G1, NOW_MS - 2 * HOUR, 1) == 0);
    CHECK(dbcounts_add_message(base, G2, NOW_MS - 48 * HOUR, 0) == 0);
    /* a deletion only: its message was counted by a worker */
    CHECK(dbcounts_add_message(base, G3, INT64_MIN, 1) == 0);
    CHECK(dbcounts_add_old_group(base, NOW_MS - HOUR) == 0);
    CHECK(dbcounts_add_old_group(base, NOW_MS - 30 * HOUR) == 0);
    dbcounts_figures(base, a, NULL, 0);

    bson_init(&doc);
    CHECK(dbcounts_to_bson(base, &doc, 1 << 20) == 0);
    CHECK(bson_iter_init_find(&it, &doc, "packed")
          && BSON_ITER_HOLDS_UTF8(&it));

    dbcounts_reset(c, NOW_MS);
    CHECK(dbcounts_add_doc(c, &doc) == 0);
    dbcounts_figures(c, b, NULL, 0);

    CHECK(a->total_messages == 3 && b->total_messages == 3);
    CHECK(a->deleted_messages == 2 && b->deleted_messages == 2);
    CHECK(b->total_groups == 2 && b->new_groups_24h == 1);
    CHECK(b->new_messages_24h == 2);
    CHECK(b->ntop == 2);
    CHECK(strcmp(b->top[0].group_id, G2) == 0
          || strcmp(b->top[0].group_id, G1) == 0);
    CHECK(b->top[0].message_count == 1 && b->top[1].message_count == 1);
    CHECK(memcmp(a->top, b->top, sizeof(a->top[0]) * a->ntop) == 0);

    /* the bound: a document that would pass max_bytes is refused */
    bson_reinit(&doc);
    CHECK(dbcounts_to_bson(base, &doc, 64) == -1);

    bson_destroy(&doc);
    free(a);
    free(b);
    dbcounts_free(base);
    dbcounts_free(c);
}


static void
dbcounts_reads_damaged_documents_without_harm(void)
{
    dbcounts_t  *c = dbcounts_new();
    db_stats_t  *out = calloc(1, sizeof(*out));
    bson_t      *doc;
    char         id[DB_GROUP_ID_SZ];

    dbcounts_reset(c, NOW_MS);

    /* arrays of different lengths: what all hold; a non-string id; a
     * packed line cut short; a name longer than the dashboard shows */
    doc = BCON_NEW("ids", "[", BCON_UTF8(G1), BCON_INT32(7), BCON_UTF8(G2),
                   "]",
                   "c", "[", BCON_INT64(C(2, 0)), BCON_INT64(C(9, 0)), "]",
                   "packed", BCON_UTF8("6b0000000000000000000003 4 1 0\n"
                                       "6b0000000000000000000004 4\n"
                                       "\n x 1 2 3\n"));
    CHECK(dbcounts_add_doc(c, doc) == 0);
    bson_destroy(doc);

    {
        char  name[400];

        memset(name, 'a', sizeof(name));
        memcpy(name + 254, "\xc3\xa9\xc3\xa9", 4);     /* cut inside */
        CHECK(dbcounts_set_name(c, G1, name, sizeof(name)) == 0);
    }

    snprintf(id, sizeof(id), "%s", G1);
    dbcounts_figures(c, out, &id, 1);
    CHECK(out->total_messages == 2 + 4);
    CHECK(out->deleted_messages == 1);
    CHECK(out->ntop == 2);
    CHECK(out->nnames == 1);
    CHECK(strlen(out->names[0].name) == 254);
    CHECK(out->top[0].message_count == 3);

    free(out);
    dbcounts_free(c);
}


static void
dbcounts_names_what_it_lacks_first_the_top(void)
{
    dbcounts_t  *c = dbcounts_new();
    db_stats_t  *out = calloc(1, sizeof(*out));
    bson_t       w;
    const char  *ids[] = { G1, G2 };
    int64_t      cs[] = { C(2, 0), C(1, 0) }, ls[] = { NOW_MS, NOW_MS };
    char         want[2][DB_GROUP_ID_SZ], un[4][DB_GROUP_ID_SZ];
    size_t       n;

    dbcounts_reset(c, NOW_MS);
    worker_doc(&w, 2, ids, cs, ls, 0, 0);
    CHECK(dbcounts_add_doc(c, &w) == 0);
    CHECK(dbcounts_set_name(c, G2, "two", 3) == 0);
    dbcounts_figures(c, out, NULL, 0);

    snprintf(want[0], sizeof(want[0]), "%s", G3);
    snprintf(want[1], sizeof(want[1]), "%s", G2);
    n = dbcounts_unnamed(c, out, want, 2, un, 4);
    CHECK(n == 2);
    CHECK(strcmp(un[0], G1) == 0);          /* top, unnamed */
    CHECK(strcmp(un[1], G3) == 0);          /* wanted, unknown */
    CHECK(dbcounts_unnamed(c, out, want, 2, un, 1) == 1);   /* the bound */

    /* a name stays across resets (names never change) */
    dbcounts_reset(c, NOW_MS);
    CHECK(dbcounts_set_name(c, G3, "three", 5) == 0);
    dbcounts_figures(c, out, want, 2);
    CHECK(out->ntop == 0 && out->total_messages == 0);
    CHECK(out->nnames == 2);

    bson_destroy(&w);
    free(out);
    dbcounts_free(c);
}


void
suite_dbcounts(void)
{
    RUN(dbcounts_sums_the_documents_of_every_worker);
    RUN(dbcounts_keeps_the_ten_best_in_a_total_order);
    RUN(dbcounts_base_round_trips_packed);
    RUN(dbcounts_reads_damaged_documents_without_harm);
    RUN(dbcounts_names_what_it_lacks_first_the_top);
}
