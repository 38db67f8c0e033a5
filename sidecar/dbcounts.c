/*
 * dbcounts.c - the database figures summed from counters documents and
 * groups: an open-addressing table of groups by id, the hour buckets, and
 * the top groups picked from the table.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbcounts.h"

#define DBC_MIN_SLOTS  1024
#define DBC_MAX_GROUPS 1000000     /* names kept, then forgotten */

typedef struct {
    char      id[DB_GROUP_ID_SZ];       /* "" for a free slot */
    char     *name;                     /* malloc()ed, or NULL; kept
                                           across refreshes */
    int64_t   m;                        /* messages created */
    int64_t   d;                        /* of them deleted */
    int64_t   l;                        /* latest created_at, ms */
    int       has_l;
} dbc_group_t;

struct dbcounts_s {
    dbc_group_t  *slots;
    size_t        nslots;               /* a power of 2 */
    size_t        used;
    int64_t       groups;               /* groups created */
    int64_t       now_ms;
    int64_t       now_hour;
    int64_t       hours[DBC_HOURS];     /* [i]: hour now_hour - i */
    int64_t       ghours[DBC_HOURS];    /* groups created, by hour */
};


static uint64_t
dbc_hash(const char *s)
{
    uint64_t  h = 1469598103934665603ULL;       /* FNV-1a */

    while (*s) {
        h ^= (unsigned char) *s++;
        h *= 1099511628211ULL;
    }
    return h;
}


dbcounts_t *
dbcounts_new(void)
{
    dbcounts_t  *c;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->slots = calloc(DBC_MIN_SLOTS, sizeof(dbc_group_t));
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    c->nslots = DBC_MIN_SLOTS;
    return c;
}


/* the counts go, the groups and their names stay (names never change) */
static void
dbc_clear(dbcounts_t *c)
{
    size_t  i;

    for (i = 0; i < c->nslots; i++) {
        c->slots[i].m = 0;
        c->slots[i].d = 0;
        c->slots[i].l = 0;
        c->slots[i].has_l = 0;
    }
    c->groups = 0;
    memset(c->hours, 0, sizeof(c->hours));
    memset(c->ghours, 0, sizeof(c->ghours));
}


void
dbcounts_free(dbcounts_t *c)
{
    size_t  i;

    if (c == NULL) {
        return;
    }
    for (i = 0; i < c->nslots; i++) {
        free(c->slots[i].name);
    }
    free(c->slots);
    free(c);
}


void
dbcounts_reset(dbcounts_t *c, int64_t now_ms)
{
    dbc_clear(c);
    c->now_ms = now_ms;
    c->now_hour = now_ms / DBC_HOUR_MS;
}


static int
dbc_grow(dbcounts_t *c)
{
    dbc_group_t  *old = c->slots, *s;
    size_t        n = c->nslots, i, j;

    s = calloc(n * 2, sizeof(dbc_group_t));
    if (s == NULL) {
        return -1;
    }
    c->slots = s;
    c->nslots = n * 2;

    for (i = 0; i < n; i++) {
        if (old[i].id[0] == '\0') {
            continue;
        }
        j = dbc_hash(old[i].id) & (c->nslots - 1);
        while (s[j].id[0] != '\0') {
            j = (j + 1) & (c->nslots - 1);
        }
        s[j] = old[i];
    }
    free(old);
    return 0;
}


/* the group's slot, added if new; NULL when out of memory */
static dbc_group_t *
dbc_group(dbcounts_t *c, const char *id)
{
    size_t  j;

    if (id[0] == '\0') {
        id = "(empty id)";
    }

    if ((c->used + 1) * 2 > c->nslots && dbc_grow(c) != 0) {
        return NULL;
    }

    j = dbc_hash(id) & (c->nslots - 1);
    while (c->slots[j].id[0] != '\0') {
        if (strcmp(c->slots[j].id, id) == 0) {
            return &c->slots[j];
        }
        j = (j + 1) & (c->nslots - 1);
    }

    snprintf(c->slots[j].id, sizeof(c->slots[j].id), "%s", id);
    c->used++;
    return &c->slots[j];
}


static const dbc_group_t *
dbc_find(const dbcounts_t *c, const char *id)
{
    size_t  j;

    j = dbc_hash(id) & (c->nslots - 1);
    while (c->slots[j].id[0] != '\0') {
        if (strcmp(c->slots[j].id, id) == 0) {
            return &c->slots[j];
        }
        j = (j + 1) & (c->nslots - 1);
    }
    return NULL;
}


static int
dbc_has_name(const dbcounts_t *c, const char *id)
{
    const dbc_group_t  *g = dbc_find(c, id);

    return g != NULL && g->name != NULL;
}


/* every group and name forgotten (the counts are re-added each refresh) */
static void
dbc_forget(dbcounts_t *c)
{
    size_t  i;

    for (i = 0; i < c->nslots; i++) {
        free(c->slots[i].name);
    }
    memset(c->slots, 0, c->nslots * sizeof(dbc_group_t));
    c->used = 0;
}


int
dbcounts_set_name(dbcounts_t *c, const char *id, const char *name,
    size_t name_len)
{
    dbc_group_t  *g;

    /* a table of groups that keeps growing with names only: start over */
    if (c->used >= DBC_MAX_GROUPS) {
        dbc_forget(c);
    }

    g = dbc_group(c, id);
    if (g == NULL) {
        return -1;
    }
    if (g->name != NULL) {
        return 0;
    }

    /* cut at a character boundary to what the dashboard shows */
    if (name_len > DB_GROUP_NAME_SZ - 1) {
        name_len = DB_GROUP_NAME_SZ - 1;
        while (name_len > 0
               && ((unsigned char) name[name_len] & 0xc0) == 0x80)
        {
            name_len--;
        }
    }
    g->name = malloc(name_len + 1);
    if (g->name == NULL) {
        return -1;
    }
    memcpy(g->name, name, name_len);
    g->name[name_len] = '\0';
    return 0;
}


static int64_t
dbc_int(bson_iter_t *it)
{
    return BSON_ITER_HOLDS_NUMBER(it) ? bson_iter_as_int64(it) : 0;
}


static void
dbc_add_hour(dbcounts_t *c, int64_t *hours, int64_t hour, int64_t n)
{
    int64_t  i = c->now_hour - hour;

    if (i < 0) {
        i = 0;                  /* a clock ahead of ours: this hour */
    }
    if (i < DBC_HOURS) {
        hours[i] += n;
    }
}


/* {h<hour>: n, ...} into hours */
static void
dbc_add_hours(dbcounts_t *c, const bson_t *doc, const char *field,
    int64_t *hours)
{
    bson_iter_t   it, sub;
    const char   *key;
    char         *end;
    int64_t       hour;

    if (!bson_iter_init_find(&it, doc, field)
        || !BSON_ITER_HOLDS_DOCUMENT(&it)
        || !bson_iter_recurse(&it, &sub))
    {
        return;
    }
    while (bson_iter_next(&sub)) {
        key = bson_iter_key(&sub);
        if (key[0] != 'h') {
            continue;
        }
        hour = strtoll(key + 1, &end, 10);
        if (end == key + 1 || *end != '\0') {
            continue;
        }
        dbc_add_hour(c, hours, hour, dbc_int(&sub));
    }
}


/* the array field's iterator, or 0 */
static int
dbc_array(const bson_t *doc, const char *field, bson_iter_t *it)
{
    bson_iter_t  a;

    return bson_iter_init_find(&a, doc, field) && BSON_ITER_HOLDS_ARRAY(&a)
           && bson_iter_recurse(&a, it);
}


static void
dbc_add_counts(dbc_group_t *g, int64_t m, int64_t d, int64_t l)
{
    g->m += m;
    g->d += d;
    if (l > 0 && (!g->has_l || l > g->l)) {
        g->l = l;
        g->has_l = 1;
    }
}


/* "base": lines of "<group id> <created> <deleted> <latest ms>\n" */
static int
dbc_add_packed(dbcounts_t *c, const char *p, uint32_t len)
{
    const char   *end = p + len, *nl, *sp;
    char          id[DB_GROUP_ID_SZ], *e;
    long long     v[3];
    size_t        idlen;
    int           k;
    dbc_group_t  *g;

    for (; p < end; p = nl + 1) {
        nl = memchr(p, '\n', (size_t) (end - p));
        if (nl == NULL) {
            nl = end;
        }
        sp = memchr(p, ' ', (size_t) (nl - p));
        if (sp == NULL || (idlen = (size_t) (sp - p)) == 0
            || idlen >= sizeof(id))
        {
            continue;
        }
        memcpy(id, p, idlen);
        id[idlen] = '\0';

        p = sp;
        for (k = 0; k < 3; k++) {
            v[k] = strtoll(p, &e, 10);
            if (e == p || e > nl) {
                break;
            }
            p = e;
        }
        if (k < 3) {
            continue;
        }
        g = dbc_group(c, id);
        if (g == NULL) {
            return -1;
        }
        dbc_add_counts(g, v[0], v[1], v[2]);
    }
    return 0;
}


/*
 * A counters document: a worker's has ids, c and l, parallel arrays (a
 * group's counts at its position, c = created * 2^32 + deleted; a
 * document cut short counts what all three arrays hold); "base" has them
 * packed in one string (one value to decode: FerretDB's cost is per
 * value).
 */
int
dbcounts_add_doc(dbcounts_t *c, const bson_t *doc)
{
    bson_iter_t   it, ids, cs, l;
    dbc_group_t  *g;
    int64_t       n;
    uint32_t      len;
    const char   *p;
    int           has_l;

    if (dbc_array(doc, "ids", &ids) && dbc_array(doc, "c", &cs)) {
        has_l = dbc_array(doc, "l", &l);

        while (bson_iter_next(&ids)) {
            if (!bson_iter_next(&cs) || (has_l && !bson_iter_next(&l))) {
                break;
            }
            if (!BSON_ITER_HOLDS_UTF8(&ids)) {
                continue;
            }
            g = dbc_group(c, bson_iter_utf8(&ids, NULL));
            if (g == NULL) {
                return -1;
            }
            n = dbc_int(&cs);
            dbc_add_counts(g, n >> 32, n & 0xffffffff,
                           has_l && BSON_ITER_HOLDS_DATE_TIME(&l)
                           ? bson_iter_date_time(&l) : 0);
        }
    }

    if (bson_iter_init_find(&it, doc, "packed") && BSON_ITER_HOLDS_UTF8(&it))
    {
        p = bson_iter_utf8(&it, &len);
        if (dbc_add_packed(c, p, len) != 0) {
            return -1;
        }
    }

    if (bson_iter_init_find(&it, doc, "groups_created")) {
        c->groups += dbc_int(&it);
    }
    dbc_add_hours(c, doc, "hours", c->hours);
    dbc_add_hours(c, doc, "ghours", c->ghours);
    return 0;
}


int
dbcounts_add_old_group(dbcounts_t *c, int64_t created_ms)
{
    c->groups++;
    dbc_add_hour(c, c->ghours, created_ms / DBC_HOUR_MS, 1);
    return 0;
}


int
dbcounts_add_message(dbcounts_t *c, const char *group_id, int64_t created_ms,
    int deleted)
{
    dbc_group_t  *g;

    g = dbc_group(c, group_id);
    if (g == NULL) {
        return -1;
    }
    if (created_ms != INT64_MIN) {
        g->m++;
        if (!g->has_l || created_ms > g->l) {
            g->l = created_ms;
            g->has_l = 1;
        }
        dbc_add_hour(c, c->hours, created_ms / DBC_HOUR_MS, 1);
    }
    if (deleted) {
        g->d++;
    }
    return 0;
}


static void
dbc_hours_bson(const dbcounts_t *c, bson_t *doc, const char *field,
    const int64_t *hours)
{
    bson_t  h;
    size_t  i;
    char    key[32];

    BSON_APPEND_DOCUMENT_BEGIN(doc, field, &h);
    for (i = 0; i < DBC_HOURS; i++) {
        if (hours[i] != 0) {
            snprintf(key, sizeof(key), "h%lld",
                     (long long) (c->now_hour - (int64_t) i));
            BSON_APPEND_INT64(&h, key, hours[i]);
        }
    }
    bson_append_document_end(doc, &h);
}


int
dbcounts_to_bson(const dbcounts_t *c, bson_t *doc, size_t max_bytes)
{
    char    *buf, *nbuf;
    size_t   i, len = 0, cap = 4096;
    int      n;

    buf = malloc(cap);
    if (buf == NULL) {
        return -1;
    }
    for (i = 0; i < c->nslots; i++) {
        const dbc_group_t  *s = &c->slots[i];

        if (s->id[0] == '\0' || (s->m == 0 && s->d == 0)) {
            continue;
        }
        for ( ;; ) {
            n = snprintf(buf + len, cap - len, "%s %lld %lld %lld\n", s->id,
                         (long long) s->m, (long long) s->d,
                         (long long) (s->has_l ? s->l : 0));
            if (n >= 0 && (size_t) n < cap - len) {
                break;
            }
            if (cap * 2 > max_bytes
                || (nbuf = realloc(buf, cap * 2)) == NULL)
            {
                free(buf);
                return -1;
            }
            buf = nbuf;
            cap *= 2;
        }
        len += (size_t) n;
    }
    bson_append_utf8(doc, "packed", -1, buf, (int) len);
    free(buf);

    BSON_APPEND_INT64(doc, "groups_created", c->groups);
    dbc_hours_bson(c, doc, "hours", c->hours);
    dbc_hours_bson(c, doc, "ghours", c->ghours);

    return doc->len > max_bytes ? -1 : 0;
}


/* more live messages first, then the smaller id: the order is total */
static int
dbc_before(const dbc_group_t *a, const dbc_group_t *b)
{
    int64_t  la = a->m - a->d, lb = b->m - b->d;

    if (la != lb) {
        return la > lb;
    }
    return strcmp(a->id, b->id) < 0;
}


void
dbcounts_figures(const dbcounts_t *c, db_stats_t *out,
    char (*want)[DB_GROUP_ID_SZ], size_t nwant)
{
    const dbc_group_t  *top[DB_TOP_GROUPS];
    const dbc_group_t  *s;
    size_t              i, j, ntop = 0, k;
    int64_t             total = 0, deleted = 0, recent = 0,
                        new_groups = 0;

    for (i = 0; i < c->nslots; i++) {
        s = &c->slots[i];
        if (s->id[0] == '\0') {
            continue;
        }
        total += s->m;
        deleted += s->d;

        if (s->m - s->d <= 0) {
            continue;
        }
        /* insertion into the 10 best so far */
        if (ntop == DB_TOP_GROUPS && !dbc_before(s, top[ntop - 1])) {
            continue;
        }
        j = ntop < DB_TOP_GROUPS ? ntop++ : ntop - 1;
        while (j > 0 && dbc_before(s, top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = s;
    }

    for (i = 0; i < 24; i++) {
        recent += c->hours[i];
        new_groups += c->ghours[i];
    }

    out->total_groups = c->groups;
    out->total_messages = total;
    out->deleted_messages = deleted;
    out->active_messages = total - deleted;
    out->deleted_of = total;
    out->new_groups_24h = new_groups;
    out->new_messages_24h = recent;
    out->measured = DB_HAVE_ACTIVE | DB_HAVE_NEW_GROUPS
                    | DB_HAVE_NEW_MESSAGES | DB_HAVE_TOP;

    out->ntop = ntop;
    for (i = 0; i < ntop; i++) {
        db_top_group_t  *t = &out->top[i];

        memset(t, 0, sizeof(*t));
        snprintf(t->group_id, sizeof(t->group_id), "%s", top[i]->id);
        if (top[i]->name != NULL) {
            snprintf(t->name, sizeof(t->name), "%s", top[i]->name);
            t->has_name = 1;
        }
        t->message_count = top[i]->m - top[i]->d;
        t->has_last = top[i]->has_l;
        t->last_message_us = top[i]->has_l
                             ? (uint64_t) top[i]->l * 1000u : 0;
    }

    /* the names the WebSocket panel wants, from the same table */
    k = 0;
    for (i = 0; i < nwant && k < DB_NAMES_MAX; i++) {
        s = dbc_find(c, want[i]);
        if (s != NULL && s->name != NULL) {
            snprintf(out->names[k].group_id, sizeof(out->names[k].group_id),
                     "%s", s->id);
            snprintf(out->names[k].name, sizeof(out->names[k].name), "%s",
                     s->name);
            k++;
        }
    }
    out->nnames = k;
}


size_t
dbcounts_unnamed(const dbcounts_t *c, const db_stats_t *fig,
    char (*want)[DB_GROUP_ID_SZ], size_t nwant, char (*out)[DB_GROUP_ID_SZ],
    size_t max)
{
    size_t  i, n = 0;

    for (i = 0; i < fig->ntop && n < max; i++) {
        if (!fig->top[i].has_name) {
            snprintf(out[n++], DB_GROUP_ID_SZ, "%s", fig->top[i].group_id);
        }
    }
    for (i = 0; i < nwant && n < max; i++) {
        if (!dbc_has_name(c, want[i])) {
            snprintf(out[n++], DB_GROUP_ID_SZ, "%s", want[i]);
        }
    }
    return n;
}
