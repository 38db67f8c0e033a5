/*
 * ngx_http_chat_page_cache.h - the newest page of a group, rendered, in
 * a shared memory zone of this nginx (chat_page_cache).
 */

#ifndef _NGX_HTTP_CHAT_PAGE_CACHE_H_INCLUDED_
#define _NGX_HTTP_CHAT_PAGE_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <bson/bson.h>


/* chat_page_cache off | SIZE [valid=TIME] (http{}) */
char *ngx_http_chat_page_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the zone of this cycle, for the event loop's calls below */
void ngx_http_chat_page_cache_init_process(ngx_cycle_t *cycle);

/*
 * The newest page of the group for a page size of limit: NGX_OK, *json
 * (malloc()ed, the caller's) and *len; NGX_DECLINED: a miss, the caller
 * reads the database and then offers the page with *ticket (0: it will
 * not be kept); *through >= 0: the page is there but expired, current
 * through that seq (the caller may check the group's seq first and then
 * _renew() it).  "bypass": a miss whatever the cache has (Cache-Control:
 * no-cache).  The cache is off: NGX_DECLINED and *ticket 0.
 */
ngx_int_t ngx_http_chat_page_cache_get(const bson_oid_t *group_id,
    int64_t limit, ngx_uint_t bypass, char **json, size_t *len,
    uint64_t *ticket, int64_t *through);

/* the expired page found current by the group's seq: valid again, and
 * its copy; NGX_DECLINED: it changed meanwhile (read it) */
ngx_int_t ngx_http_chat_page_cache_renew(const bson_oid_t *group_id,
    int64_t limit, char **json, size_t *len);

/* the page read for a miss, current through seq "through": kept if no
 * event of the group was recorded since the miss (the ticket); "whole":
 * no seq above "through" is in it (a new message may be put first) */
void ngx_http_chat_page_cache_put(const bson_oid_t *group_id, int64_t limit,
    uint64_t ticket, int64_t through, ngx_uint_t whole, const char *json,
    size_t len);

/* an event of the group was stored, by this nginx (seq, or -1: a write
 * whose outcome is unknown) or by another host: a page current through
 * less is dropped, a miss in flight is not kept */
void ngx_http_chat_page_cache_event(const bson_oid_t *group_id, int64_t seq);

/* a message created by this nginx, with its answer (an item of a page):
 * put in place in a page current through seq - 1, else as _event() */
void ngx_http_chat_page_cache_created(const bson_oid_t *group_id,
    int64_t seq, const char *item, size_t item_len);

/* "hits=N stale=N misses=N kept=N refused=N dropped=N evicted=N" into
 * buf; 0 if the cache is off */
size_t ngx_http_chat_page_cache_stats(u_char *buf, size_t size);


#endif /* _NGX_HTTP_CHAT_PAGE_CACHE_H_INCLUDED_ */
