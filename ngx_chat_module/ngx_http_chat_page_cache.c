/*
 * ngx_http_chat_page_cache.c - the newest page of a group, rendered as
 * the API answers it, in a shared memory zone of this nginx
 * ("chat_page_cache SIZE [valid=TIME]").
 *
 * On the embedded database the newest page is ~20 point reads from the
 * event log (ngx_http_chat_event_log.c); at 32 clients they queue behind
 * one another (bench/findings.md, "reads").  A hit is a copy out of the
 * zone on the event loop, under the zone's mutex: no database call.
 *
 * Exactness, on this nginx (every worker maps the same zone):
 *   - every stored event (a message created or deleted, by the REST API
 *     or a WebSocket) changes its group's page in the completion of the
 *     op on the worker that stored it, before the write is answered
 *     (ngx_http_chat_storage.c): a new message is put in place when the
 *     page is current through the seq just before it and holds nothing
 *     above it (ngx_http_chat_page_cache_created()), anything else drops
 *     the page, and the next read misses and reads the database;
 *   - a page read from the event log is "current through" a seq: the
 *     group's counter when the read began, or below the lowest seq the
 *     walk found taken but not yet written; every event up to it is in
 *     the page.  Every event recorded for a group (stored here, or
 *     delivered from another worker or host through
 *     ngx_http_chat_groups_deliver) raises the entry's "seen" and drops a
 *     page current through less; a page read for a miss is kept only if
 *     it is current through "seen" at least (so a page read before a
 *     write is never kept after the write was answered);
 *   - a write whose outcome is unknown drops the page and changes the
 *     entry's version (a zone-wide counter): the pages of misses in
 *     flight (their tickets) are not kept.
 * Events stored by another host reach this one only for groups it has
 * subscribers of: an entry is served for "valid" (default 5 s) after its
 * read, then checked, by one request, while the others are served the
 * entry they have (at most chat_db_timeout more): the group's seq, one
 * point read; the same as the page's: valid again; else the page is read.  So a page written by
 * another host without subscribers here is at most valid +
 * chat_db_timeout old.  "valid=0": never expires (one host only).
 *
 * Bound: the zone's size.  An entry that needs room evicts the least
 * recently used ones (counted); a page larger than an eighth of the zone
 * is not kept.  A reload keeps the zone (same size) and its entries: the
 * old workers' completions still drop what their writes change.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_page_cache.h"


#define NGX_HTTP_CHAT_PAGE_CACHE_VALID  5000            /* ms */


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  lru;
    uint64_t                     version;

    /* for the operator (the log at exit) and the tests */
    uint64_t                     hits;
    uint64_t                     stale;
    uint64_t                     misses;
    uint64_t                     kept;
    uint64_t                     refused;
    uint64_t                     dropped;
    uint64_t                     updated;
    uint64_t                     renewed;
    uint64_t                     evicted;
} ngx_http_chat_page_cache_sh_t;


typedef struct {
    ngx_http_chat_page_cache_sh_t  *sh;
    ngx_slab_pool_t                *shpool;
    ngx_msec_t                      valid;
} ngx_http_chat_page_cache_ctx_t;


typedef struct {
    ngx_rbtree_node_t            node;          /* key: crc32 of the id */
    ngx_queue_t                  lru;
    u_char                       gid[12];
    uint64_t                     version;
    int64_t                      through;       /* of the page */
    int64_t                      seen;          /* the highest seq of an
                                                   event recorded */
    int64_t                      limit;
    uint64_t                     filled_ms;
    uint64_t                     updating_ms;   /* a refresh since, or 0 */
    size_t                       len;
    u_char                      *body;          /* NULL: no page (a miss
                                                   in flight, a dropped
                                                   page) */
    uint32_t                    *items;         /* offset, length of each
                                                   message in body; NULL:
                                                   not updated in place */
    uint32_t                     nitems;
    uint32_t                     prefix;        /* body up to the first */
    unsigned                     has_more:1;
} ngx_http_chat_page_node_t;


static ngx_int_t ngx_http_chat_page_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_chat_page_node_t *ngx_http_chat_page_cache_find(
    ngx_http_chat_page_cache_ctx_t *ctx, const bson_oid_t *group_id,
    uint32_t hash);
static void *ngx_http_chat_page_cache_alloc(
    ngx_http_chat_page_cache_ctx_t *ctx, size_t size,
    ngx_http_chat_page_node_t *keep);
static void ngx_http_chat_page_cache_evict(
    ngx_http_chat_page_cache_ctx_t *ctx, ngx_http_chat_page_node_t *pn);
static void ngx_http_chat_page_cache_free_page(
    ngx_http_chat_page_cache_ctx_t *ctx, ngx_http_chat_page_node_t *pn);
static ngx_int_t ngx_http_chat_page_cache_parse(const u_char *p, size_t len,
    int64_t limit, uint32_t *items, uint32_t *n, uint32_t *prefix,
    ngx_uint_t *has_more);
static void ngx_http_chat_page_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);


static ngx_str_t        ngx_http_chat_page_cache_name =
    ngx_string("chat_page_cache");

/* this cycle's zone (NULL: off) and how long a refresh may take */
static ngx_shm_zone_t  *ngx_http_chat_page_cache_zone;
static ngx_msec_t       ngx_http_chat_page_cache_updating;


char *
ngx_http_chat_page_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    ssize_t                          size;
    ngx_str_t                       *value, s;
    ngx_msec_t                       valid;
    ngx_uint_t                       i;
    ngx_shm_zone_t                  *zone;
    ngx_http_chat_page_cache_ctx_t  *ctx;

    if (cmcf->page_cache_set) {
        return "is duplicate";
    }

    cmcf->page_cache_set = 1;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "chat_page_cache off takes no parameters");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_page_cache: invalid size \"%V\" (\"off\", "
                           "or at least %uzk)", &value[1],
                           8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    valid = NGX_HTTP_CHAT_PAGE_CACHE_VALID;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "valid=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            valid = ngx_parse_time(&s, 0);
            if (valid == (ngx_msec_t) NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "chat_page_cache: invalid valid time "
                                   "\"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_page_cache: invalid parameter \"%V\" "
                           "(valid=TIME)", &value[i]);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_page_cache_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->valid = valid;

    zone = ngx_shared_memory_add(cf, &ngx_http_chat_page_cache_name,
                                 (size_t) size, &ngx_http_chat_module);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->init = ngx_http_chat_page_cache_init_zone;
    zone->data = ctx;

    cmcf->page_cache = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_chat_page_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_chat_page_cache_ctx_t  *octx = data;

    ngx_http_chat_page_cache_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* a reload with the same size: the entries stay */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              sizeof(ngx_http_chat_page_cache_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_chat_page_cache_rbtree_insert);
    ngx_queue_init(&ctx->sh->lru);

    /* the slab's own messages name the zone */
    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool,
                              sizeof(" in chat_page_cache \"\"")
                              + shm_zone->shm.name.len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in chat_page_cache \"%V\"%Z",
                &shm_zone->shm.name);

    ctx->shpool->log_nomem = 0;          /* eviction is the answer */

    return NGX_OK;
}


void
ngx_http_chat_page_cache_init_process(ngx_cycle_t *cycle)
{
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_chat_module);

    ngx_http_chat_page_cache_zone = cmcf ? cmcf->page_cache : NULL;
    ngx_http_chat_page_cache_updating = cmcf ? cmcf->db_timeout : 5000;
}


ngx_int_t
ngx_http_chat_page_cache_get(const bson_oid_t *group_id, int64_t limit,
    ngx_uint_t bypass, char **json, size_t *len, uint64_t *ticket,
    int64_t *through)
{
    char                            *copy;
    uint32_t                         hash;
    uint64_t                         now;
    ngx_http_chat_page_node_t       *pn;
    ngx_http_chat_page_cache_ctx_t  *ctx;

    *ticket = 0;
    *through = -1;

    if (ngx_http_chat_page_cache_zone == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_chat_page_cache_zone->data;
    hash = ngx_crc32_short((u_char *) group_id->bytes, 12);
    now = ngx_http_chat_monotonic_us() / 1000;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pn = ngx_http_chat_page_cache_find(ctx, group_id, hash);

    if (pn && pn->body && pn->limit == limit && !bypass) {

        if (ctx->valid == 0 || now - pn->filled_ms < ctx->valid
            || (pn->updating_ms
                && now - pn->updating_ms < ngx_http_chat_page_cache_updating))
        {
            copy = malloc(pn->len);

            if (copy != NULL) {
                ngx_memcpy(copy, pn->body, pn->len);
                *json = copy;
                *len = pn->len;

                if (ctx->valid == 0 || now - pn->filled_ms < ctx->valid) {
                    ctx->sh->hits++;

                } else {
                    ctx->sh->stale++;     /* while one request refreshes */
                }

                ngx_queue_remove(&pn->lru);
                ngx_queue_insert_head(&ctx->sh->lru, &pn->lru);

                ngx_shmtx_unlock(&ctx->shpool->mutex);
                return NGX_OK;
            }
        }

        /* expired: this request refreshes it, the others are served it */
        pn->updating_ms = now;
        *through = pn->through;
    }

    ctx->sh->misses++;

    if (pn == NULL) {
        /* a marker: the events recorded from now on reach the ticket */
        pn = ngx_http_chat_page_cache_alloc(ctx,
                                        sizeof(ngx_http_chat_page_node_t),
                                        NULL);
        if (pn == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_DECLINED;
        }

        ngx_memzero(pn, sizeof(ngx_http_chat_page_node_t));
        pn->node.key = hash;
        ngx_memcpy(pn->gid, group_id->bytes, 12);
        pn->through = -1;
        pn->seen = -1;
        pn->version = ++ctx->sh->version;

        ngx_rbtree_insert(&ctx->sh->rbtree, &pn->node);
        ngx_queue_insert_head(&ctx->sh->lru, &pn->lru);

    } else {
        ngx_queue_remove(&pn->lru);
        ngx_queue_insert_head(&ctx->sh->lru, &pn->lru);
    }

    *ticket = pn->version;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_DECLINED;
}


void
ngx_http_chat_page_cache_put(const bson_oid_t *group_id, int64_t limit,
    uint64_t ticket, int64_t through, ngx_uint_t whole, const char *json,
    size_t len)
{
    u_char                          *body;
    uint32_t                        *items, *parsed, n, prefix;
    ngx_uint_t                       more;
    ngx_http_chat_page_node_t       *pn;
    ngx_http_chat_page_cache_ctx_t  *ctx;

    if (ngx_http_chat_page_cache_zone == NULL || ticket == 0) {
        return;
    }

    ctx = ngx_http_chat_page_cache_zone->data;

    /* where its messages are, so that a new one can be put in place */

    parsed = whole ? malloc((size_t) limit * 2 * sizeof(uint32_t)) : NULL;

    if (parsed == NULL
        || ngx_http_chat_page_cache_parse((const u_char *) json, len, limit,
                                          parsed, &n, &prefix, &more)
           != NGX_OK)
    {
        free(parsed);
        parsed = NULL;
        n = 0;
        prefix = 0;
        more = 0;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pn = ngx_http_chat_page_cache_find(ctx, group_id,
                               ngx_crc32_short((u_char *) group_id->bytes, 12));

    /*
     * The marker was evicted, or a write of unknown outcome was recorded
     * since the miss (the version), or an event the page does not have:
     * a seq is taken before the group's counter can be read past it, and
     * every seq up to "through" is settled in the page.
     */

    if (pn == NULL || pn->version != ticket || through < pn->seen
        || len > ngx_http_chat_page_cache_zone->shm.size / 8)
    {
        ctx->sh->refused++;
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        free(parsed);
        return;
    }

    ngx_http_chat_page_cache_free_page(ctx, pn);

    body = ngx_http_chat_page_cache_alloc(ctx, len, pn);
    items = NULL;

    if (body && parsed && n) {
        items = ngx_http_chat_page_cache_alloc(ctx, n * 2 * sizeof(uint32_t),
                                               pn);
    }

    if (body == NULL) {
        ctx->sh->refused++;
        pn->version = ++ctx->sh->version;
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        free(parsed);
        return;
    }

    ngx_memcpy(body, json, len);

    if (items) {
        ngx_memcpy(items, parsed, n * 2 * sizeof(uint32_t));
    }

    pn->items = items;
    pn->nitems = items ? n : 0;
    pn->prefix = prefix;
    pn->has_more = more;

    pn->body = body;
    pn->len = len;
    pn->limit = limit;
    pn->through = through;
    pn->filled_ms = ngx_http_chat_monotonic_us() / 1000;
    pn->updating_ms = 0;
    pn->version = ++ctx->sh->version;

    ctx->sh->kept++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    free(parsed);
}


ngx_int_t
ngx_http_chat_page_cache_renew(const bson_oid_t *group_id, int64_t limit,
    char **json, size_t *len)
{
    char                            *copy;
    ngx_int_t                        rc;
    ngx_http_chat_page_node_t       *pn;
    ngx_http_chat_page_cache_ctx_t  *ctx;

    if (ngx_http_chat_page_cache_zone == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_chat_page_cache_zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pn = ngx_http_chat_page_cache_find(ctx, group_id,
                               ngx_crc32_short((u_char *) group_id->bytes, 12));

    /* still there (or put in place since: newer, as exact) */

    if (pn && pn->body && pn->limit == limit) {
        copy = malloc(pn->len);

        if (copy) {
            ngx_memcpy(copy, pn->body, pn->len);
            *json = copy;
            *len = pn->len;

            pn->filled_ms = ngx_http_chat_monotonic_us() / 1000;
            pn->updating_ms = 0;
            ctx->sh->renewed++;
            rc = NGX_OK;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * A message created by this nginx, its answer "item" (the same JSON as
 * an item of a page): a page current through the seq just before it
 * takes it in place, first, the oldest one out past the page's size
 * (has_more and next_before as a read would give them); any other page
 * of the group is dropped as for any event.
 */

void
ngx_http_chat_page_cache_created(const bson_oid_t *group_id, int64_t seq,
    const char *item, size_t item_len)
{
    u_char                           suffix[128], *body, *p, *last_id;
    size_t                           size, slen;
    uint32_t                        *items, keep, j, off;
    ngx_uint_t                       more;
    ngx_http_chat_page_node_t       *pn;
    ngx_http_chat_page_cache_ctx_t  *ctx;

    if (ngx_http_chat_page_cache_zone == NULL) {
        return;
    }

    if (item_len < 7 + 24 || ngx_strncmp(item, "{\"id\":\"", 7) != 0) {
        ngx_http_chat_page_cache_event(group_id, seq);
        return;
    }

    ctx = ngx_http_chat_page_cache_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pn = ngx_http_chat_page_cache_find(ctx, group_id,
                               ngx_crc32_short((u_char *) group_id->bytes, 12));

    if (pn == NULL || pn->body == NULL || pn->items == NULL
        || seq != pn->through + 1 || seq <= pn->seen)
    {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_chat_page_cache_event(group_id, seq);
        return;
    }

    /* the messages kept after the new one; the last one listed */

    keep = ((int64_t) pn->nitems + 1 > pn->limit) ? (uint32_t) pn->limit - 1
                                                  : pn->nitems;
    more = pn->has_more || ((int64_t) pn->nitems + 1 > pn->limit);

    last_id = keep ? pn->body + pn->items[2 * (keep - 1)] + 7
                   : (u_char *) item + 7;

    p = ngx_snprintf(suffix, sizeof(suffix),
                     "],\"page\":1,\"limit\":%L,\"has_more\":%s,"
                     "\"next_before\":", pn->limit, more ? "true" : "false");

    if (more) {
        *p++ = '"';
        p = ngx_cpymem(p, last_id, 24);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    *p++ = '}';
    slen = p - suffix;

    size = pn->prefix + item_len + slen;
    for (j = 0; j < keep; j++) {
        size += 1 + pn->items[2 * j + 1];
    }

    body = NULL;
    items = NULL;

    if (size <= ngx_http_chat_page_cache_zone->shm.size / 8) {
        body = ngx_http_chat_page_cache_alloc(ctx, size, pn);
        if (body) {
            items = ngx_http_chat_page_cache_alloc(ctx,
                                          (keep + 1) * 2 * sizeof(uint32_t),
                                          pn);
        }
    }

    if (items == NULL) {
        if (body) {
            ngx_slab_free_locked(ctx->shpool, body);
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_chat_page_cache_event(group_id, seq);
        return;
    }

    p = ngx_cpymem(body, pn->body, pn->prefix);

    items[0] = (uint32_t) (p - body);
    items[1] = (uint32_t) item_len;
    p = ngx_cpymem(p, item, item_len);

    for (j = 0; j < keep; j++) {
        *p++ = ',';
        off = pn->items[2 * j];
        items[2 * (j + 1)] = (uint32_t) (p - body);
        items[2 * (j + 1) + 1] = pn->items[2 * j + 1];
        p = ngx_cpymem(p, pn->body + off, pn->items[2 * j + 1]);
    }

    p = ngx_cpymem(p, suffix, slen);

    ngx_http_chat_page_cache_free_page(ctx, pn);

    pn->body = body;
    pn->len = p - body;
    pn->items = items;
    pn->nitems = keep + 1;
    pn->has_more = more;
    pn->through = seq;
    pn->seen = seq;
    pn->version = ++ctx->sh->version;

    ctx->sh->updated++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_chat_page_cache_event(const bson_oid_t *group_id, int64_t seq)
{
    ngx_http_chat_page_node_t       *pn;
    ngx_http_chat_page_cache_ctx_t  *ctx;

    if (ngx_http_chat_page_cache_zone == NULL) {
        return;
    }

    ctx = ngx_http_chat_page_cache_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pn = ngx_http_chat_page_cache_find(ctx, group_id,
                               ngx_crc32_short((u_char *) group_id->bytes, 12));

    if (pn == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return;
    }

    if (seq > pn->seen) {
        pn->seen = seq;              /* a miss in flight must have it */
    }

    if (seq < 0) {
        pn->version = ++ctx->sh->version;
    }

    if (pn->body && (seq < 0 || seq > pn->through)) {
        ngx_http_chat_page_cache_free_page(ctx, pn);
        pn->updating_ms = 0;
        pn->version = ++ctx->sh->version;
        ctx->sh->dropped++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* "hits stale misses kept refused dropped evicted", for the tests */

size_t
ngx_http_chat_page_cache_stats(u_char *buf, size_t size)
{
    u_char                          *p;
    ngx_http_chat_page_cache_sh_t    s;
    ngx_http_chat_page_cache_ctx_t  *ctx;

    if (ngx_http_chat_page_cache_zone == NULL) {
        return 0;
    }

    ctx = ngx_http_chat_page_cache_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    s = *ctx->sh;
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    p = ngx_snprintf(buf, size, "hits=%uL stale=%uL misses=%uL kept=%uL "
                     "refused=%uL dropped=%uL updated=%uL renewed=%uL "
                     "evicted=%uL",
                     s.hits, s.stale, s.misses, s.kept, s.refused, s.dropped,
                     s.updated, s.renewed, s.evicted);

    return p - buf;
}


static ngx_http_chat_page_node_t *
ngx_http_chat_page_cache_find(ngx_http_chat_page_cache_ctx_t *ctx,
    const bson_oid_t *group_id, uint32_t hash)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_chat_page_node_t  *pn;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        pn = (ngx_http_chat_page_node_t *) node;

        rc = ngx_memn2cmp((u_char *) group_id->bytes, pn->gid, 12, 12);

        if (rc == 0) {
            return pn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* room in the zone, evicting the least recently used entries (never
 * "keep") until there is; NULL if none is left to evict */

static void *
ngx_http_chat_page_cache_alloc(ngx_http_chat_page_cache_ctx_t *ctx,
    size_t size, ngx_http_chat_page_node_t *keep)
{
    void                       *p;
    ngx_queue_t                *q;
    ngx_http_chat_page_node_t  *pn;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(ctx->shpool, size);
        if (p) {
            return p;
        }

        q = ngx_queue_last(&ctx->sh->lru);

        if (q != ngx_queue_sentinel(&ctx->sh->lru)
            && ngx_queue_data(q, ngx_http_chat_page_node_t, lru) == keep)
        {
            q = ngx_queue_prev(q);
        }

        if (q == ngx_queue_sentinel(&ctx->sh->lru)) {
            return NULL;
        }

        pn = ngx_queue_data(q, ngx_http_chat_page_node_t, lru);
        ngx_http_chat_page_cache_evict(ctx, pn);
    }
}


static void
ngx_http_chat_page_cache_evict(ngx_http_chat_page_cache_ctx_t *ctx,
    ngx_http_chat_page_node_t *pn)
{
    ngx_queue_remove(&pn->lru);
    ngx_rbtree_delete(&ctx->sh->rbtree, &pn->node);

    ngx_http_chat_page_cache_free_page(ctx, pn);
    ngx_slab_free_locked(ctx->shpool, pn);

    ctx->sh->evicted++;
}


static void
ngx_http_chat_page_cache_free_page(ngx_http_chat_page_cache_ctx_t *ctx,
    ngx_http_chat_page_node_t *pn)
{
    if (pn->body) {
        ngx_slab_free_locked(ctx->shpool, pn->body);
        pn->body = NULL;
    }

    if (pn->items) {
        ngx_slab_free_locked(ctx->shpool, pn->items);
        pn->items = NULL;
    }

    pn->nitems = 0;
}


/*
 * A newest page as ngx_http_chat_latest_page() renders it:
 * {"group_id":"...","messages":[{"id":"...",...},...],"page":1,
 * "limit":L,"has_more":B,"next_before":"..."|null}: the offset and
 * length of each message, the length up to the first.  NGX_DECLINED for
 * anything else (the page is then kept, and dropped by a write).
 */

static ngx_int_t
ngx_http_chat_page_cache_parse(const u_char *p, size_t len, int64_t limit,
    uint32_t *items, uint32_t *n, uint32_t *prefix, ngx_uint_t *has_more)
{
    u_char       tail[64], *t;
    size_t       i, start, tlen;
    ngx_uint_t   depth, in_str, esc;
    static char  key[] = "\"messages\":[";

    t = ngx_strnstr((u_char *) p, key, ngx_min(len, 64));
    if (t == NULL) {
        return NGX_DECLINED;
    }

    i = (t - p) + sizeof(key) - 1;
    *prefix = (uint32_t) i;
    *n = 0;

    while (i < len && p[i] == '{') {

        if ((int64_t) *n == limit || len - i < 7 + 24
            || ngx_strncmp(p + i, "{\"id\":\"", 7) != 0)
        {
            return NGX_DECLINED;
        }

        start = i;
        depth = 0;
        in_str = 0;
        esc = 0;

        for ( /* void */ ; i < len; i++) {
            if (in_str) {
                if (esc) {
                    esc = 0;
                } else if (p[i] == '\\') {
                    esc = 1;
                } else if (p[i] == '"') {
                    in_str = 0;
                }

                continue;
            }

            if (p[i] == '"') {
                in_str = 1;

            } else if (p[i] == '{') {
                depth++;

            } else if (p[i] == '}' && --depth == 0) {
                i++;
                break;
            }
        }

        if (depth != 0) {
            return NGX_DECLINED;
        }

        items[2 * *n] = (uint32_t) start;
        items[2 * *n + 1] = (uint32_t) (i - start);
        (*n)++;

        if (i < len && p[i] == ',') {
            i++;
        }
    }

    for (*has_more = 0; /* void */; (*has_more)++) {
        t = ngx_snprintf(tail, sizeof(tail),
                         "],\"page\":1,\"limit\":%L,\"has_more\":%s,"
                         "\"next_before\":", limit,
                         *has_more ? "true" : "false");
        tlen = t - tail;

        if (len - i > tlen && ngx_strncmp(p + i, tail, tlen) == 0) {
            break;
        }

        if (*has_more) {
            return NGX_DECLINED;
        }
    }

    i += tlen;

    /* next_before: the last message's id, or null */

    if (*has_more) {
        return (*n && len - i == 24 + 3 && p[i] == '"'
                && ngx_strncmp(p + i + 1, p + items[2 * (*n - 1)] + 7, 24)
                   == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    return (len - i == 5 && ngx_strncmp(p + i, "null}", 5) == 0)
           ? NGX_OK : NGX_DECLINED;
}


static void
ngx_http_chat_page_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_chat_page_node_t   *pn, *pt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            pn = (ngx_http_chat_page_node_t *) node;
            pt = (ngx_http_chat_page_node_t *) temp;

            p = (ngx_memn2cmp(pn->gid, pt->gid, 12, 12) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}
