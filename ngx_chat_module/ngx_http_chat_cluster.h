/*
 * ngx_http_chat_cluster.h - the transport between nginx hosts
 * (ngx_http_chat_transport.h): a NATS connection per worker, driven by
 * nginx's event loop (ngx_http_chat_cluster.c).
 */

#ifndef _NGX_HTTP_CHAT_CLUSTER_H_INCLUDED_
#define _NGX_HTTP_CHAT_CLUSTER_H_INCLUDED_


#include "ngx_http_chat_module.h"
#include "ngx_http_chat_transport.h"

#include "wire/chat_wire.h"


#define NGX_HTTP_CHAT_CLUSTER_QUEUE    4096  /* received events waiting for
                                                the event loop */


extern ngx_http_chat_transport_t  ngx_http_chat_cluster_transport;


/* this worker's link, for the sidecar (CHAT_CLUSTER_OFF when unset) */
void ngx_http_chat_cluster_link(ngx_http_chat_main_conf_t *cmcf,
    chat_wire_cluster_t *link);


#endif /* _NGX_HTTP_CHAT_CLUSTER_H_INCLUDED_ */
