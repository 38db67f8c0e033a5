/*
 * endpoints.h - per-endpoint statistics with a hard cap on distinct keys.
 *
 * The table is sized once at creation: `cap` named rows plus one overflow
 * row that absorbs every endpoint seen after the cap is reached.  Memory
 * therefore stays flat whatever the traffic (a scan of a million random
 * paths lands in the overflow row).  Not thread safe: the collector
 * serialises access.
 *
 * ep_stats_t is also used for the per-minute history: counts, errors,
 * total time and a latency histogram with the Prometheus bucket bounds.
 */

#ifndef SIDECAR_ENDPOINTS_H
#define SIDECAR_ENDPOINTS_H

#include <stddef.h>
#include <stdint.h>

#include "records.h"

#define EP_HIST_FINITE    11
#define EP_HIST_BUCKETS   (EP_HIST_FINITE + 1)    /* last one is +Inf */
#define EP_OVERFLOW_NAME  "(other endpoints)"

/* upper bounds in microseconds: 5ms .. 10s */
extern const uint32_t  ep_hist_bounds_us[EP_HIST_FINITE];

typedef struct {
    uint64_t  count;
    uint64_t  errors;
    uint64_t  total_us;
    uint64_t  max_us;
    uint64_t  buckets[EP_HIST_BUCKETS];   /* not cumulative */
} ep_stats_t;

typedef struct {
    char        name[COLL_ENDPOINT_SZ];
    size_t      name_len;
    int         overflow;
    ep_stats_t  stats;
} ep_row_t;

typedef struct ep_table_s  ep_table_t;


void ep_stats_add(ep_stats_t *s, uint32_t duration_us, int is_error);

/* the histogram bucket of duration_us */
static inline size_t
ep_hist_bucket(uint32_t duration_us)
{
    size_t  i;

    for (i = 0; i < EP_HIST_FINITE; i++) {
        if (duration_us <= ep_hist_bounds_us[i]) {
            break;
        }
    }
    return i;
}

/* ep_stats_add() with the bucket already found: one search for a request
   added to several rows (inline: three per request) */
static inline void
ep_stats_add_bucket(ep_stats_t *s, uint32_t duration_us, int is_error,
    size_t bucket)
{
    s->count++;
    s->total_us += duration_us;
    s->errors += is_error != 0;
    if (duration_us > s->max_us) {
        s->max_us = duration_us;
    }
    s->buckets[bucket]++;
}
void ep_stats_merge(ep_stats_t *dst, const ep_stats_t *src);

/* quantile q (0..1) in milliseconds, interpolated in its bucket; 0 when
   there is no sample */
double ep_stats_quantile_ms(const ep_stats_t *s, double q);

/* NULL on allocation failure or cap 0 */
ep_table_t *ep_table_create(size_t cap);
void ep_table_free(ep_table_t *t);

/* the row for name, created when there is room, else the overflow row;
   never NULL */
ep_stats_t *ep_table_get(ep_table_t *t, const char *name);

/* the same for len bytes of name, not necessarily clean: the rows are
   named by the key cleaned (coll_text_clean(), records.h), so raw wire
   bytes may be looked up */
ep_stats_t *ep_table_get_n(ep_table_t *t, const char *name, size_t len);

/* named rows in use, plus 1 when the overflow row has counted anything */
size_t ep_table_rows(const ep_table_t *t);
size_t ep_table_cap(const ep_table_t *t);

/* copies up to max rows in insertion order; returns the count */
size_t ep_table_copy(const ep_table_t *t, ep_row_t *out, size_t max);

#endif /* SIDECAR_ENDPOINTS_H */
