/*
 * ring.c - bounded ring buffer, see ring.h.
 */

#include <stdlib.h>
#include <string.h>

#include "ring.h"


struct ring_s {
    size_t          cap;
    size_t          elem_size;
    size_t          head;       /* slot of the oldest element */
    size_t          len;
    unsigned char  *buf;
};


ring_t *
ring_create(size_t cap, size_t elem_size)
{
    ring_t  *r;

    if (cap == 0 || elem_size == 0 || cap > ((size_t) -1) / elem_size) {
        return NULL;
    }

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }

    r->buf = calloc(cap, elem_size);
    if (r->buf == NULL) {
        free(r);
        return NULL;
    }

    r->cap = cap;
    r->elem_size = elem_size;
    return r;
}


void
ring_free(ring_t *r)
{
    if (r == NULL) {
        return;
    }
    free(r->buf);
    free(r);
}


void *
ring_push(ring_t *r, const void *elem)
{
    return ring_push_n(r, elem, r->elem_size);
}


void *
ring_push_n(ring_t *r, const void *elem, size_t n)
{
    size_t  slot;

    /* head < cap and len <= cap: a subtraction wraps, no division */
    if (r->len < r->cap) {
        slot = r->head + r->len;
        if (slot >= r->cap) {
            slot -= r->cap;
        }
        r->len++;
    } else {
        slot = r->head;
        if (++r->head == r->cap) {
            r->head = 0;
        }
    }

    memcpy(r->buf + slot * r->elem_size, elem,
           n < r->elem_size ? n : r->elem_size);
    return r->buf + slot * r->elem_size;
}


size_t
ring_len(const ring_t *r)
{
    return r->len;
}


size_t
ring_cap(const ring_t *r)
{
    return r->cap;
}


void *
ring_at(const ring_t *r, size_t i)
{
    if (i >= r->len) {
        return NULL;
    }
    return r->buf + ((r->head + i) % r->cap) * r->elem_size;
}


void *
ring_newest(const ring_t *r)
{
    if (r->len == 0) {
        return NULL;
    }
    return ring_at(r, r->len - 1);
}


size_t
ring_copy_last(const ring_t *r, size_t n, void *dst)
{
    size_t          i, first;
    unsigned char  *out = dst;

    if (n > r->len) {
        n = r->len;
    }

    first = r->len - n;
    for (i = 0; i < n; i++) {
        memcpy(out + i * r->elem_size, ring_at(r, first + i), r->elem_size);
    }

    return n;
}


void
ring_clear(ring_t *r)
{
    r->head = 0;
    r->len = 0;
}
