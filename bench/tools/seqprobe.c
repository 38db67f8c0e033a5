/*
 * seqprobe.c - is a group's seq counter ($inc through findAndModify)
 * atomic on this database, and what does that do to the seqs the module
 * takes (ngx_http_chat_seq.c)?
 *
 *   seqprobe URI DB MODE THREADS WORKERS SECONDS [ABANDON_PERCENT]
 *
 * One counter document {_id: 1, seq: 0} in DB.probe_seq_groups, hammered
 * by THREADS threads (one client each).  The threads are split over
 * WORKERS "workers": the threads of one worker take seqs one at a time
 * (a mutex, as the module's stripe lock does in one nginx worker); the
 * workers do not coordinate (as nginx workers do not).
 *
 * MODE "inc":   each round is one findAndModify {$inc: {seq: 1}},
 *               returnNew.  Reported: duplicates (a value answered twice)
 *               and regressions (a call that started after another call
 *               had answered v, yet answered <= v: the counter stepped
 *               back), and the largest step back.
 * MODE "claim": each round takes a seq as ngx_http_chat_take_seq() does:
 *               the $inc, then the claim {_id: "g:<seq>"} inserted into
 *               DB.probe_seq_claims (unique _id); a duplicate takes the
 *               next.  ABANDON_PERCENT of the takes leave their seq
 *               unclaimed, as a claim insert that failed does.  Reported:
 *               claims, late claims (a claim of S made when a claim above
 *               S had been made more than 100 ms before: a subscriber has
 *               delivered past S by then), and among them those of seqs
 *               answered first after the higher claim (re-issued by a
 *               counter that stepped back), abandoned seqs that were
 *               claimed later by another take, and seqs claimed twice
 *               (the unique _id failing: never seen).
 *
 * Scratch collections only: dropped first.  Build (the helpers it shares
 * with writeprobe.c are in benchmongo.h and benchutil.h, next to it):
 *   cc -O2 -Wall -o seqprobe bench/tools/seqprobe.c \
 *       $(pkg-config --cflags --libs libmongoc-1.0) -lpthread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_TOOL "seqprobe"
#include "benchmongo.h"

#define MAXCALLS  4000000
#define MAXWORKERS  64

typedef struct {
    int64_t  value;
    int64_t  t0, t1;            /* µs, monotonic: sent, answered */
    int      thread;
} call_t;

typedef struct {
    int64_t  seq;
    int64_t  at;                /* µs: the claim was acknowledged */
    int64_t  issued;            /* µs: the first answer of this value */
} claim_t;

static const char *uri_s, *db, *mode;
static int seconds, abandon_pct, nworkers;
static mongoc_client_pool_t *pool;
static call_t *calls;
static long ncalls, errors;
static claim_t *claims;
static long nclaims;
static int64_t *abandoned;
static long nabandoned;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t wlock[MAXWORKERS];

static int
cmp_call_t1(const void *a, const void *b)
{
    const call_t *x = a, *y = b;
    return (x->t1 > y->t1) - (x->t1 < y->t1);
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

static int
inc(mongoc_collection_t *groups, int th, int64_t *v)
{
    bson_t q, upd, child, reply;
    bson_iter_t it;
    bson_error_t err;
    int64_t t0, t1;
    int ok;

    bson_init(&q);
    BSON_APPEND_INT32(&q, "_id", 1);
    bson_init(&upd);
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$inc", &child);
    BSON_APPEND_INT64(&child, "seq", 1);
    bson_append_document_end(&upd, &child);

    t0 = bson_get_monotonic_time();
    ok = mongoc_collection_find_and_modify(groups, &q, NULL, &upd, NULL,
                                           false, false, true, &reply, &err);
    t1 = bson_get_monotonic_time();

    if (ok && bson_iter_init(&it, &reply)
        && bson_iter_find_descendant(&it, "value.seq", &it))
    {
        *v = bson_iter_as_int64(&it);
    } else {
        ok = 0;
    }

    bson_destroy(&reply);
    bson_destroy(&q);
    bson_destroy(&upd);

    pthread_mutex_lock(&mu);
    if (!ok) {
        errors++;
    } else if (ncalls < MAXCALLS) {
        calls[ncalls].value = *v;
        calls[ncalls].t0 = t0;
        calls[ncalls].t1 = t1;
        calls[ncalls].thread = th;
        ncalls++;
    }
    pthread_mutex_unlock(&mu);

    return ok;
}

static void *
worker(void *arg)
{
    int th = (int) (uintptr_t) arg;
    unsigned rnd = (unsigned) th * 7919u + 1;
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *groups, *seqs;
    int64_t end = bson_get_monotonic_time() + (int64_t) seconds * 1000000;
    int64_t v, at;
    bson_t doc;
    bson_error_t err;
    char id[64];
    int ok, tries;

    groups = mongoc_client_get_collection(cl, db, "probe_seq_groups");
    seqs = mongoc_client_get_collection(cl, db, "probe_seq_claims");

    while (bson_get_monotonic_time() < end) {
        if (strcmp(mode, "inc") == 0) {
            (void) inc(groups, th, &v);
            continue;
        }

        pthread_mutex_lock(&wlock[th % nworkers]);

        for (tries = 0; tries < 1000; tries++) {
            if (!inc(groups, th, &v)) {
                break;
            }

            if ((int) (rand_r(&rnd) % 100) < abandon_pct) {
                pthread_mutex_lock(&mu);
                abandoned[nabandoned++ % MAXCALLS] = v;
                pthread_mutex_unlock(&mu);
                break;
            }

            snprintf(id, sizeof(id), "g:%lld", (long long) v);
            bson_init(&doc);
            BSON_APPEND_UTF8(&doc, "_id", id);
            BSON_APPEND_INT64(&doc, "seq", v);
            ok = mongoc_collection_insert_one(seqs, &doc, NULL, NULL, &err);
            at = bson_get_monotonic_time();
            bson_destroy(&doc);

            if (ok) {
                pthread_mutex_lock(&mu);
                if (nclaims < MAXCALLS) {
                    claims[nclaims].seq = v;
                    claims[nclaims].at = at;
                    nclaims++;
                }
                pthread_mutex_unlock(&mu);
                break;
            }

            if (err.code != 11000) {
                fprintf(stderr, "seqprobe: claim: %s\n", err.message);
                break;
            }
        }

        pthread_mutex_unlock(&wlock[th % nworkers]);
    }

    mongoc_collection_destroy(seqs);
    mongoc_collection_destroy(groups);
    mongoc_client_pool_push(pool, cl);
    return NULL;
}

/* the counter, at seq 0 */
static int
seed_counter(mongoc_collection_t *c)
{
    bson_t d;
    int ok;

    bson_init(&d);
    BSON_APPEND_INT32(&d, "_id", 1);
    BSON_APPEND_INT64(&d, "seq", 0);
    ok = bm_insert(c, &d);
    bson_destroy(&d);
    return ok;
}

/* the first time each value was answered (calls sorted by t1) */
static int64_t
first_issued(int64_t value, int64_t *first, int64_t maxv)
{
    return (value >= 1 && value <= maxv) ? first[value] : -1;
}

int
main(int argc, char **argv)
{
    mongoc_uri_t *uri;
    const char *scratch[] = { "probe_seq_claims", "probe_seq_groups", NULL };
    int n, i;
    long k, j, dups, regress, late, reissued, abandoned_claimed;
    long dup_claims = 0;
    int64_t maxv, seen_max, worst_back, *first, *vals, *claimed_max_at;
    int64_t late_worst;

    if (argc < 7) {
        fprintf(stderr, "usage: seqprobe URI DB inc|claim THREADS WORKERS "
                        "SECONDS [ABANDON_PERCENT]\n");
        return 2;
    }

    uri_s = argv[1]; db = argv[2]; mode = argv[3];
    n = atoi(argv[4]); nworkers = atoi(argv[5]); seconds = atoi(argv[6]);
    abandon_pct = argc > 7 ? atoi(argv[7]) : 0;

    if (n < 1 || n > 256 || nworkers < 1 || nworkers > MAXWORKERS
        || seconds < 1)
    {
        return 2;
    }

    for (i = 0; i < nworkers; i++) {
        pthread_mutex_init(&wlock[i], NULL);
    }

    calls = calloc(MAXCALLS, sizeof(call_t));
    claims = calloc(MAXCALLS, sizeof(claim_t));
    abandoned = calloc(MAXCALLS, sizeof(int64_t));

    pool = bm_pool_new(uri_s, n + 1, &uri);
    if (pool == NULL) {
        return 1;
    }

    if (!bm_scratch(pool, db, scratch, "probe_seq_groups", seed_counter)) {
        return 1;
    }

    bu_run_threads(n, worker);

    /* duplicates: values answered more than once */
    vals = malloc((size_t) (ncalls ? ncalls : 1) * sizeof(int64_t));
    maxv = 0;
    for (k = 0; k < ncalls; k++) {
        vals[k] = calls[k].value;
        if (vals[k] > maxv) {
            maxv = vals[k];
        }
    }
    qsort(vals, (size_t) ncalls, sizeof(int64_t), cmp_i64);
    dups = 0;
    for (k = 1; k < ncalls; k++) {
        dups += (vals[k] == vals[k - 1]);
    }

    /* regressions: sorted by answer time, a call that started after the
     * highest value answered so far was answered, and got no more */
    qsort(calls, (size_t) ncalls, sizeof(call_t), cmp_call_t1);
    regress = 0;
    worst_back = 0;
    seen_max = 0;
    j = 0;
    first = calloc((size_t) maxv + 2, sizeof(int64_t));
    for (k = 0; k < ncalls; k++) {
        /* the calls answered before this one started */
        while (j < ncalls && calls[j].t1 < calls[k].t0) {
            if (calls[j].value > seen_max) {
                seen_max = calls[j].value;
            }
            j++;
        }
        if (calls[k].value <= seen_max) {
            regress++;
            if (seen_max - calls[k].value > worst_back) {
                worst_back = seen_max - calls[k].value;
            }
        }
        if (first[calls[k].value] == 0) {
            first[calls[k].value] = calls[k].t1;
        }
    }

    printf("{\"mode\":\"%s\",\"threads\":%d,\"workers\":%d,\"seconds\":%d,"
           "\"calls\":%ld,\"errors\":%ld,\"max_value\":%lld,"
           "\"duplicates\":%ld,\"regressions\":%ld,\"worst_step_back\":%lld",
           mode, n, nworkers, seconds, ncalls, errors, (long long) maxv,
           dups, regress, (long long) worst_back);

    if (strcmp(mode, "claim") == 0) {
        /* claims in time order; the highest claimed so far, and when */
        claimed_max_at = NULL;
        late = 0;
        reissued = 0;
        late_worst = 0;
        {
            int64_t hi = 0, hi_at = 0;
            /* claims were appended in ack order, nearly; sort by at */
            for (k = 1; k < nclaims; k++) {
                claim_t x = claims[k];
                for (j = k - 1; j >= 0 && claims[j].at > x.at; j--) {
                    claims[j + 1] = claims[j];
                }
                claims[j + 1] = x;
            }
            for (k = 0; k < nclaims; k++) {
                if (claims[k].seq < hi && claims[k].at - hi_at > 100000) {
                    late++;
                    if (claims[k].at - hi_at > late_worst) {
                        late_worst = claims[k].at - hi_at;
                    }
                    if (first_issued(claims[k].seq, first, maxv) > hi_at) {
                        reissued++;
                    }
                }
                if (claims[k].seq > hi) {
                    hi = claims[k].seq;
                    hi_at = claims[k].at;
                }
            }
        }
        (void) claimed_max_at;

        abandoned_claimed = 0;
        {
            int64_t *cs = malloc((size_t) (nclaims ? nclaims : 1)
                                 * sizeof(int64_t));
            for (k = 0; k < nclaims; k++) {
                cs[k] = claims[k].seq;
            }
            qsort(cs, (size_t) nclaims, sizeof(int64_t), cmp_i64);
            for (k = 1; k < nclaims; k++) {
                dup_claims += (cs[k] == cs[k - 1]);
            }
            for (k = 0; k < nabandoned && k < MAXCALLS; k++) {
                if (bsearch(&abandoned[k], cs, (size_t) nclaims,
                            sizeof(int64_t), cmp_i64))
                {
                    abandoned_claimed++;
                }
            }
            free(cs);
        }

        printf(",\"claims\":%ld,\"claimed_twice\":%ld,\"abandoned\":%ld,"
               "\"abandoned_then_claimed\":%ld,\"late_claims\":%ld,"
               "\"late_claims_reissued\":%ld,\"latest_claim_ms\":%.1f",
               nclaims, dup_claims, nabandoned, abandoned_claimed, late,
               reissued,
               late_worst / 1000.0);
    }

    printf("}\n");

    bm_pool_destroy(pool, uri);
    return 0;
}
