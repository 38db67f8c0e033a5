/*
 * ring.h - a bounded ring of fixed-size elements (Python's deque(maxlen)).
 *
 * Pushing onto a full ring overwrites the oldest element; the ring never
 * allocates after ring_create().  Index 0 is the oldest element.  Not
 * thread safe: the owner (the collector) serialises access.
 */

#ifndef SIDECAR_RING_H
#define SIDECAR_RING_H

#include <stddef.h>

typedef struct ring_s  ring_t;

/* NULL when cap or elem_size is 0 or on allocation failure */
ring_t *ring_create(size_t cap, size_t elem_size);
void ring_free(ring_t *r);

/* copies elem in; returns a pointer to the stored copy */
void *ring_push(ring_t *r, const void *elem);

/* the same, copying only the first n bytes of elem (n <= the element
   size): the slot's other bytes are whatever it held before */
void *ring_push_n(ring_t *r, const void *elem, size_t n);

size_t ring_len(const ring_t *r);
size_t ring_cap(const ring_t *r);

/* i-th oldest element, NULL when i >= ring_len() */
void *ring_at(const ring_t *r, size_t i);

/* the newest element, NULL when empty */
void *ring_newest(const ring_t *r);

/* copies the newest min(n, len) elements, oldest first; returns count */
size_t ring_copy_last(const ring_t *r, size_t n, void *dst);

void ring_clear(ring_t *r);

#endif /* SIDECAR_RING_H */
