/*
 * ngx_http_chat_broadcast.h - the fan-out of every stored event to the
 * subscribers of its group, in this worker and in the others.
 */

#ifndef _NGX_HTTP_CHAT_BROADCAST_H_INCLUDED_
#define _NGX_HTTP_CHAT_BROADCAST_H_INCLUDED_


#include "ngx_http_chat_module.h"


ngx_int_t ngx_http_chat_broadcast_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_broadcast_exit_process(ngx_cycle_t *cycle);

/* delivers a JSON event of a group (its seq in the group) here and in
 * every other worker */
void ngx_http_chat_broadcast_publish(const u_char *group_id, int64_t seq,
    const char *json, size_t len);

/* called at each configuration load (the transport's naming, checks) */
void ngx_http_chat_broadcast_configured(ngx_http_chat_main_conf_t *cmcf);


#endif /* _NGX_HTTP_CHAT_BROADCAST_H_INCLUDED_ */
