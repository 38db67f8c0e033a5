/*
 * test_ring.c - the bounded ring behaves like deque(maxlen=N).
 */

#include <stdint.h>

#include "sidecar/ring.h"
#include "unit.h"


static void
ring_keeps_insertion_order_below_capacity(void)
{
    ring_t  *r = ring_create(5, sizeof(int));
    int      i;

    for (i = 0; i < 3; i++) {
        ring_push(r, &i);
    }
    CHECK(ring_len(r) == 3);
    CHECK(*(int *) ring_at(r, 0) == 0);
    CHECK(*(int *) ring_at(r, 2) == 2);
    CHECK(ring_at(r, 3) == NULL);
    CHECK(*(int *) ring_newest(r) == 2);
    ring_free(r);
}


static void
ring_at_capacity_then_past_it_drops_the_oldest(void)
{
    ring_t  *r = ring_create(100, sizeof(int));
    int      i;

    for (i = 0; i < 100; i++) {
        ring_push(r, &i);
    }
    CHECK(ring_len(r) == 100);
    CHECK(*(int *) ring_at(r, 0) == 0);

    for (i = 100; i < 250; i++) {
        ring_push(r, &i);
    }
    CHECK(ring_len(r) == 100);
    CHECK(ring_cap(r) == 100);
    CHECK(*(int *) ring_at(r, 0) == 150);
    CHECK(*(int *) ring_at(r, 99) == 249);
    ring_free(r);
}


static void
ring_copy_last_gives_newest_n_oldest_first(void)
{
    ring_t  *r = ring_create(50, sizeof(int));
    int      i, out[20];

    for (i = 0; i < 77; i++) {
        ring_push(r, &i);
    }
    CHECK(ring_copy_last(r, 20, out) == 20);
    CHECK(out[0] == 57);
    CHECK(out[19] == 76);

    ring_clear(r);
    CHECK(ring_len(r) == 0);
    CHECK(ring_newest(r) == NULL);
    CHECK(ring_copy_last(r, 20, out) == 0);
    ring_free(r);
}


static void
ring_create_refuses_zero_sizes(void)
{
    CHECK(ring_create(0, 4) == NULL);
    CHECK(ring_create(4, 0) == NULL);
    CHECK(ring_create(SIZE_MAX / 2, 4) == NULL);
}


static void
ring_push_n_copies_only_the_bytes_given(void)
{
    ring_t    *r = ring_create(2, 8);
    uint64_t   a = 0x1111111111111111ull, b = 0x2222222222222222ull;
    uint64_t  *p;
    uint8_t    first[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, two[2] = { 9, 9 };

    ring_push(r, &a);
    ring_push(r, &a);
    p = ring_push_n(r, two, 2);             /* over the oldest */
    CHECK(p == ring_newest(r) && ring_len(r) == 2);
    CHECK(((uint8_t *) p)[0] == 9 && ((uint8_t *) p)[1] == 9);
    CHECK(((uint8_t *) p)[2] == 0x11 && ((uint8_t *) p)[7] == 0x11);
    p = ring_push_n(r, first, 100);         /* at most the element */
    CHECK(*p != b && ((uint8_t *) p)[7] == 8);
    ring_free(r);
}


void
suite_ring(void)
{
    RUN(ring_keeps_insertion_order_below_capacity);
    RUN(ring_at_capacity_then_past_it_drops_the_oldest);
    RUN(ring_copy_last_gives_newest_n_oldest_first);
    RUN(ring_create_refuses_zero_sizes);
    RUN(ring_push_n_copies_only_the_bytes_given);
}
