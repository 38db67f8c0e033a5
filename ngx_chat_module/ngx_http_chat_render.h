/*
 * ngx_http_chat_render.h - the chat's JSON shapes, in one place: the
 * bodies of the REST API, the WebSocket events, acks and errors.
 *
 * Thread-safe (cJSON, malloc() and the caller's buffers only): the pool
 * threads render with it as the event loop does.
 */

#ifndef _NGX_HTTP_CHAT_RENDER_H_INCLUDED_
#define _NGX_HTTP_CHAT_RENDER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <bson/bson.h>
#include <cjson/cJSON.h>


/* {id, name, created_at, created_by} from a groups document */
cJSON *ngx_http_chat_render_group(const bson_t *doc);

/*
 * {id, group_id, user_id, content, created_at, seq} from a messages
 * document ("seq" only if it has one: messages stored before seqs have
 * none); a deleted message has "is_deleted": true instead of "content"
 */
cJSON *ngx_http_chat_render_message(const bson_t *doc);

/* {id, group_id, is_deleted: true, deleted_at, seq}: a deletion's answer,
 * seq the deletion's own */
cJSON *ngx_http_chat_render_deleted(const bson_oid_t *message_id,
    const bson_oid_t *group_id, int64_t deleted_at_ms, int64_t seq);

/*
 * A page of a list: {items_key: [...], ...}, with "group_id" first when
 * given; the items are appended to *list, then the paging closes it:
 * "page", "limit", "has_more" and, for messages, "next_before" (the id,
 * or null).
 */
cJSON *ngx_http_chat_render_page(const char *items_key,
    const bson_oid_t *group_id, cJSON **list);
void ngx_http_chat_render_paging(cJSON *page, int64_t number, int64_t limit,
    ngx_uint_t has_more);
void ngx_http_chat_render_next_before(cJSON *page, const bson_oid_t *id);

/* "next_after": the seq, or null when seq < 0 */
void ngx_http_chat_render_next_after(cJSON *page, int64_t seq);

/*
 * The events of a group, as WebSocket events and as the items of a
 * listing with "after" (one shape for both, so one handler takes both):
 *   {"type":"message","message":{...},"seq":N}         (takes message)
 *   {"type":"message_deleted","message_id":..,"group_id":..,"seq":M}
 * ("seq" last, so that a client matching on the start of an event still
 * matches; a message stored before seqs existed has none)
 */
cJSON *ngx_http_chat_render_message_event(cJSON *message);
cJSON *ngx_http_chat_render_deleted_event(const bson_oid_t *message_id,
    const bson_oid_t *group_id, int64_t seq);

/* the same, NUL-terminated in malloc()ed memory, or NULL */
char *ngx_http_chat_render_event_message(const cJSON *message);
char *ngx_http_chat_render_event_deleted(const bson_oid_t *message_id,
    const bson_oid_t *group_id, int64_t seq);

/*
 * {"type": ..., "detail": ..., "correlation_id": ...}: an HTTP error's
 * body (type NULL: no "type") or a WebSocket error event; size() is what
 * write() writes.
 */
size_t ngx_http_chat_render_error_size(const char *type, const char *detail,
    ngx_str_t *cid);
u_char *ngx_http_chat_render_error(u_char *p, const char *type,
    const char *detail, ngx_str_t *cid);

/* {"type":"ack","message":MESSAGE}, around a message rendered already */
size_t ngx_http_chat_render_ack_size(size_t message_len);
u_char *ngx_http_chat_render_ack(u_char *p, const char *message,
    size_t message_len);


#endif /* _NGX_HTTP_CHAT_RENDER_H_INCLUDED_ */
