/*
 * ngx_http_chat_correlation.h - correlation IDs: accepted from the client
 * when safe, generated otherwise, echoed in every response and exposed as
 * $chat_correlation_id.
 */

#ifndef _NGX_HTTP_CHAT_CORRELATION_H_INCLUDED_
#define _NGX_HTTP_CHAT_CORRELATION_H_INCLUDED_


#include "ngx_http_chat_module.h"


ngx_int_t ngx_http_chat_correlation_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_chat_correlation_init(ngx_conf_t *cf);

/* sets ctx->correlation_id from the request header or a new one */
ngx_int_t ngx_http_chat_correlation_settle(ngx_http_request_t *r,
    ngx_http_chat_ctx_t *ctx);

/* the request's correlation ID, settling it first if needed; never fails
 * to return something printable (empty only on memory exhaustion) */
ngx_str_t *ngx_http_chat_correlation_id(ngx_http_request_t *r);

/* 1 when s is an acceptable client-supplied correlation ID */
ngx_int_t ngx_http_chat_correlation_is_safe(u_char *s, size_t len);


#endif /* _NGX_HTTP_CHAT_CORRELATION_H_INCLUDED_ */
