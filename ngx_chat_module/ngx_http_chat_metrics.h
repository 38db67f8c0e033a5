/*
 * ngx_http_chat_metrics.h - the metrics path: every request nginx serves is
 * recorded in the log phase into a per-worker batch (wire/chat_wire.h) that
 * is pushed to the sidecar over nng without ever waiting.
 */

#ifndef _NGX_HTTP_CHAT_METRICS_H_INCLUDED_
#define _NGX_HTTP_CHAT_METRICS_H_INCLUDED_


#include "ngx_http_chat_module.h"


typedef struct {
    ngx_str_t   key;
    ngx_str_t   value;
} ngx_http_chat_kv_t;


ngx_int_t ngx_http_chat_metrics_check_address(ngx_str_t *addr);
ngx_int_t ngx_http_chat_metrics_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_metrics_exit_process(ngx_cycle_t *cycle);

ngx_int_t ngx_http_chat_metrics_log_handler(ngx_http_request_t *r);

void ngx_http_chat_metrics_ws_event(ngx_uint_t connected, ngx_str_t *group_id,
    ngx_str_t *user_id, ngx_uint_t worker_group_count);
void ngx_http_chat_metrics_custom(ngx_str_t *event_type,
    ngx_http_chat_kv_t *kv, ngx_uint_t n);


#endif /* _NGX_HTTP_CHAT_METRICS_H_INCLUDED_ */
