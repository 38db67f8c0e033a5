/*
 * ngx_http_chat_catch_up.h - a group's events after a seq, read from the
 * database for the event loop: what a subscriber that resumes (since=)
 * and a worker that fills a gap in a group's live events both need.
 */

#ifndef _NGX_HTTP_CHAT_CATCH_UP_H_INCLUDED_
#define _NGX_HTTP_CHAT_CATCH_UP_H_INCLUDED_


#include "ngx_http_chat_module.h"


/* an event as it is sent live: its seq and its JSON text */
typedef struct {
    int64_t                    seq;
    ngx_str_t                  json;
} ngx_http_chat_event_item_t;


/*
 * A page of events, oldest first; has_more: there are more to read.
 * next_after (-1: none) is where the next page starts: every seq up to it
 * is in this page or a gap for good, so a reader past a long run of gaps
 * moves on even when the page holds no event.
 */
typedef struct {
    ngx_http_chat_event_item_t  *items;
    ngx_uint_t                   nitems;
    ngx_uint_t                   has_more;
    int64_t                      next_after;
} ngx_http_chat_event_page_t;


/*
 * On the event loop: rc NGX_OK and the page (valid during the call only),
 * NGX_DECLINED (no such group) or NGX_ERROR (the database failed; error
 * says how).
 */
typedef void (*ngx_http_chat_catch_up_pt)(void *data, ngx_int_t rc,
    ngx_http_chat_event_page_t *page, const char *error);


/*
 * Reads up to limit events of the group (its id in hex) with a seq above
 * after, on the thread pool.  NGX_OK: handler will be called, once;
 * NGX_BUSY (the pool's queue is full) or NGX_ERROR: it will not.
 */
ngx_int_t ngx_http_chat_catch_up_read(const u_char *group_id, int64_t after,
    ngx_uint_t limit, ngx_http_chat_catch_up_pt handler, void *data,
    ngx_log_t *log);


#endif /* _NGX_HTTP_CHAT_CATCH_UP_H_INCLUDED_ */
