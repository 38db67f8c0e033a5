/*
 * ngx_http_chat_broadcast.h - who listens to which group, in this worker,
 * and the fan-out of every event to the other workers over nng.
 */

#ifndef _NGX_HTTP_CHAT_BROADCAST_H_INCLUDED_
#define _NGX_HTTP_CHAT_BROADCAST_H_INCLUDED_


#include "ngx_http_chat_module.h"
#include "ngx_http_chat_websocket.h"


ngx_int_t ngx_http_chat_broadcast_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
void ngx_http_chat_broadcast_exit_process(ngx_cycle_t *cycle);

/* returns this worker's subscriber count of the group after the change */
ngx_uint_t ngx_http_chat_broadcast_subscribe(ngx_http_chat_ws_t *ws);
ngx_uint_t ngx_http_chat_broadcast_unsubscribe(ngx_http_chat_ws_t *ws);

/* delivers a JSON event of a group here and in every other worker */
void ngx_http_chat_broadcast_publish(const u_char *group_id_hex,
    const char *json, size_t len);

/* called at each configuration load: gives the cycle's bus its name */
void ngx_http_chat_broadcast_configured(ngx_http_chat_main_conf_t *cmcf);


#endif /* _NGX_HTTP_CHAT_BROADCAST_H_INCLUDED_ */
