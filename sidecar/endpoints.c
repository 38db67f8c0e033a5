/*
 * endpoints.c - capped endpoint table and latency histograms.
 *
 * Open addressing with linear probing over an index twice the cap (a
 * power of two), rows in a flat preallocated array.  No deletion: an
 * endpoint, once admitted, keeps its row for the sidecar's lifetime,
 * which is what a cumulative counter needs.
 */

#include <stdlib.h>
#include <string.h>

#include "endpoints.h"


const uint32_t  ep_hist_bounds_us[EP_HIST_FINITE] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000
};


struct ep_table_s {
    size_t     cap;
    size_t     used;
    size_t     mask;        /* index size - 1 */
    uint32_t  *index;       /* 0 = empty, else row number + 1 */
    ep_row_t  *rows;        /* cap named rows, then the overflow row */
    ep_row_t  *last;        /* the named row found last: requests come in
                               runs of one endpoint (rows never move) */
};


void
ep_stats_add(ep_stats_t *s, uint32_t duration_us, int is_error)
{
    ep_stats_add_bucket(s, duration_us, is_error,
                        ep_hist_bucket(duration_us));
}


void
ep_stats_merge(ep_stats_t *dst, const ep_stats_t *src)
{
    size_t  i;

    dst->count += src->count;
    dst->errors += src->errors;
    dst->total_us += src->total_us;
    if (src->max_us > dst->max_us) {
        dst->max_us = src->max_us;
    }
    for (i = 0; i < EP_HIST_BUCKETS; i++) {
        dst->buckets[i] += src->buckets[i];
    }
}


/*
 * Like Prometheus' histogram_quantile(): find the bucket holding the
 * rank and interpolate linearly inside it.  The +Inf bucket has no upper
 * bound, so the largest duration seen stands in for it; that also keeps
 * a p95 from exceeding the maximum.
 */
double
ep_stats_quantile_ms(const ep_stats_t *s, double q)
{
    double    rank, seen, lo, hi, in_bucket;
    size_t    i;

    if (s->count == 0) {
        return 0.0;
    }
    if (q < 0) {
        q = 0;
    }
    if (q > 1) {
        q = 1;
    }

    rank = q * (double) s->count;
    seen = 0;

    for (i = 0; i < EP_HIST_BUCKETS; i++) {
        in_bucket = (double) s->buckets[i];
        if (in_bucket > 0 && seen + in_bucket >= rank) {
            break;
        }
        seen += in_bucket;
    }

    if (i == EP_HIST_BUCKETS) {
        return (double) s->max_us / 1000.0;
    }

    lo = (i == 0) ? 0.0 : (double) ep_hist_bounds_us[i - 1];
    hi = (i < EP_HIST_FINITE) ? (double) ep_hist_bounds_us[i]
                              : (double) s->max_us;
    if (hi > (double) s->max_us) {
        hi = (double) s->max_us;
    }
    if (hi < lo) {
        hi = lo;
    }

    return (lo + (hi - lo) * ((rank - seen) / in_bucket)) / 1000.0;
}


ep_table_t *
ep_table_create(size_t cap)
{
    ep_table_t  *t;
    size_t       size;

    if (cap == 0 || cap > (1u << 24)) {
        return NULL;
    }

    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }

    for (size = 16; size < cap * 2; size <<= 1) {
        /* void */
    }

    t->cap = cap;
    t->mask = size - 1;
    t->index = calloc(size, sizeof(uint32_t));
    t->rows = calloc(cap + 1, sizeof(ep_row_t));

    if (t->index == NULL || t->rows == NULL) {
        ep_table_free(t);
        return NULL;
    }

    strcpy(t->rows[cap].name, EP_OVERFLOW_NAME);
    t->rows[cap].name_len = strlen(EP_OVERFLOW_NAME);
    t->rows[cap].overflow = 1;
    return t;
}


void
ep_table_free(ep_table_t *t)
{
    if (t == NULL) {
        return;
    }
    free(t->index);
    free(t->rows);
    free(t);
}


/* FNV-1a: short keys, no adversary that can see the hash state */
static uint64_t
ep_hash(const char *s, size_t len)
{
    uint64_t  h = 1469598103934665603ull, w;

    /* FNV-1a over 8-byte words, then the tail bytes: a name is hashed
       once per request, so its bytes are taken eight at a time */
    for ( ; len >= 8; len -= 8, s += 8) {
        memcpy(&w, s, 8);
        h ^= w;
        h *= 1099511628211ull;
        h ^= h >> 29;
    }
    while (len--) {
        h ^= (unsigned char) *s++;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 32);
}


ep_stats_t *
ep_table_get(ep_table_t *t, const char *name)
{
    return ep_table_get_n(t, name, strlen(name));
}


/* ep_table_get_n() past the row found last: the key cleaned, hashed and
   looked up, or admitted */
static __attribute__((noinline)) ep_row_t *
ep_table_find(ep_table_t *t, const char *name, size_t len)
{
    size_t     i;
    uint32_t   slot;
    ep_row_t  *row;
    char       clean[COLL_ENDPOINT_SZ];

    len = coll_text_clean(clean, sizeof(clean), name, len);

    i = (size_t) ep_hash(clean, len) & t->mask;

    for ( ;; ) {
        slot = t->index[i];

        if (slot == 0) {
            break;
        }
        row = &t->rows[slot - 1];
        if (row->name_len == len && memcmp(row->name, clean, len) == 0) {
            t->last = row;
            return row;
        }
        i = (i + 1) & t->mask;
    }

    if (t->used == t->cap) {
        return &t->rows[t->cap];
    }

    /* the index is twice the cap, so an empty slot always exists; a
       cleaned key fits a row's name */
    row = &t->rows[t->used];
    memcpy(row->name, clean, len + 1);
    row->name_len = len;

    t->used++;
    t->index[i] = (uint32_t) t->used;
    t->last = row;
    return row;
}


/*
 * The row found last is compared with the raw key first: a row's name is
 * clean, and raw bytes equal to clean text are clean themselves (cleaning
 * leaves clean text as it is), so that row is the key's.  Any other key
 * is cleaned before it is hashed and compared.
 */
ep_stats_t *
ep_table_get_n(ep_table_t *t, const char *name, size_t len)
{
    if (t->last != NULL && t->last->name_len == len
        && coll_bytes_eq(t->last->name, name, len))
    {
        return &t->last->stats;
    }

    return &ep_table_find(t, name, len)->stats;
}


size_t
ep_table_rows(const ep_table_t *t)
{
    return t->used + (t->rows[t->cap].stats.count > 0 ? 1 : 0);
}


size_t
ep_table_cap(const ep_table_t *t)
{
    return t->cap;
}


size_t
ep_table_copy(const ep_table_t *t, ep_row_t *out, size_t max)
{
    size_t  n;

    n = t->used < max ? t->used : max;
    memcpy(out, t->rows, n * sizeof(ep_row_t));

    if (n < max && t->rows[t->cap].stats.count > 0) {
        out[n++] = t->rows[t->cap];
    }

    return n;
}
