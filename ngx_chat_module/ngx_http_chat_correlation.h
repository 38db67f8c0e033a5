/*
 * ngx_http_chat_correlation.h - correlation IDs: accepted from the client
 * when safe (or the trace-id of a valid W3C "traceparent"), generated
 * otherwise, echoed in every response and exposed as $chat_correlation_id;
 * the request's span as "traceparent" and $chat_traceparent.
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

/* the request's span as a "traceparent" value (W3C Trace Context),
 * settling the correlation ID first if needed; empty on memory
 * exhaustion */
ngx_str_t *ngx_http_chat_traceparent(ngx_http_request_t *r);

/* 1 when s is an acceptable client-supplied correlation ID */
ngx_int_t ngx_http_chat_correlation_is_safe(u_char *s, size_t len);


#endif /* _NGX_HTTP_CHAT_CORRELATION_H_INCLUDED_ */
