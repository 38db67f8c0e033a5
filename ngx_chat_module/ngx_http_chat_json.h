/*
 * ngx_http_chat_json.h - request bodies in, JSON responses out: the one
 * place that writes a chat response, so that every error carries a
 * "detail" and the "correlation_id" and leaves a log line behind.
 */

#ifndef _NGX_HTTP_CHAT_JSON_H_INCLUDED_
#define _NGX_HTTP_CHAT_JSON_H_INCLUDED_


#include "ngx_http_chat_module.h"
#include "ngx_http_chat_storage.h"

#include <cjson/cJSON.h>


/* nginx 1.22 has no constant (nor reason phrase) for these */
#define NGX_HTTP_CHAT_UNPROCESSABLE      422
#define NGX_HTTP_CHAT_UPGRADE_REQUIRED   426


/*
 * Installs the filters that turn nginx's own error pages (a 413 above
 * client_max_body_size, a 400 for a bad URI, TRACE's 405, ...) into the
 * API's JSON on chat_api locations and under /api/chat/ of their servers.
 */
ngx_int_t ngx_http_chat_error_pages_init(ngx_conf_t *cf);

extern ngx_str_t  ngx_http_chat_json_type;          /* application/json */

/* {"detail", "correlation_id"} of an error, and its log line */
ngx_buf_t *ngx_http_chat_error_body(ngx_http_request_t *r,
    ngx_uint_t status, const char *detail);

/* sends {"detail": ..., "correlation_id": ...} with the status; logs it */
ngx_int_t ngx_http_chat_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail);

/* a 503 with Retry-After: the seconds a client should wait */
#define NGX_HTTP_CHAT_RETRY_BUSY         1      /* thread pool queue full */
#define NGX_HTTP_CHAT_RETRY_DATABASE     5      /* database unavailable */

ngx_int_t ngx_http_chat_send_unavailable(ngx_http_request_t *r,
    ngx_uint_t retry_after, const char *detail);

/* from an op's expire(): its request answered 503 now, the op detached */
void ngx_http_chat_answer_expired(ngx_http_chat_op_t *op,
    ngx_http_chat_op_done_pt late);

/*
 * A required, non-blank string field of at most max bytes (into value,
 * pointing into json); NGX_DECLINED with the reason in detail.
 */
#define ngx_http_chat_is_blank(c)                                             \
    ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')

ngx_int_t ngx_http_chat_text_field(cJSON *json, const char *name,
    size_t max, ngx_uint_t trim, ngx_str_t *value, u_char *detail,
    size_t size);

/* sends a JSON body held in malloc()ed memory; takes ownership of it */
ngx_int_t ngx_http_chat_send_json(ngx_http_request_t *r, ngx_uint_t status,
    char *json, size_t len);

/* 1 when Content-Type is application/json (parameters allowed) */
ngx_int_t ngx_http_chat_is_json_content_type(ngx_http_request_t *r);

/* the whole request body in one buffer of the request pool */
ngx_int_t ngx_http_chat_body(ngx_http_request_t *r, ngx_str_t *body);

/*
 * Parses a JSON object body.  On failure returns NULL and points *detail
 * at a message for the client (valid until the next call).  A name given
 * twice in one object, at any depth, is a failure that names the key.
 * The caller frees with cJSON_Delete().
 */
cJSON *ngx_http_chat_parse_object(ngx_str_t *body, const char **detail);

/* the first member name given twice in one object, at any depth, or NULL */
const char *ngx_http_chat_json_duplicate_key(cJSON *json);

/*
 * What cJSON would silently turn into a NUL (raw NUL, \u0000, a \u
 * without four hex digits): the detail for the client, or NULL.
 */
const char *ngx_http_chat_json_nul_check(const u_char *p, size_t len);

/* strict UTF-8: no overlongs, no surrogates, nothing past U+10FFFF */
ngx_int_t ngx_http_chat_utf8_valid(const u_char *p, size_t len);


/*
 * An op's failure in the client's words, the same over HTTP and over a
 * WebSocket: the HTTP status and its detail.  A 5xx logs the driver's
 * reason at error level.
 */
ngx_uint_t ngx_http_chat_op_status(ngx_http_chat_op_t *op, ngx_log_t *log,
    const char **detail);

/* NGX_OK if s is an ObjectId in hex (24 characters), into oid */
ngx_int_t ngx_http_chat_oid_parse(const u_char *s, size_t len,
    bson_oid_t *oid);



#endif /* _NGX_HTTP_CHAT_JSON_H_INCLUDED_ */
