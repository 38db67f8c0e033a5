/*
 * ngx_http_chat_transport.h - the seam between a worker and the others
 * (other workers of this nginx, other hosts): how a stored event leaves
 * this worker, and how events of the others come in.
 *
 * A transport sends an event of a group to every other worker that may
 * have subscribers to it (publish, never waiting), and hands each event
 * it receives to ngx_http_chat_groups_deliver() on the event loop.  It is
 * told when a group gains its first or loses its last subscriber in this
 * worker (interest), for a transport that routes by interest.
 *
 * ngx_http_chat_bus.c, the nng bus between the workers of one nginx, is
 * the first one.
 */

#ifndef _NGX_HTTP_CHAT_TRANSPORT_H_INCLUDED_
#define _NGX_HTTP_CHAT_TRANSPORT_H_INCLUDED_


#include "ngx_http_chat_module.h"


typedef struct {
    const char  *name;

    /* the master, at each configuration load */
    void       (*configured)(ngx_http_chat_main_conf_t *cmcf);

    /*
     * init_process, before the event loop: NGX_OK, NGX_DECLINED (nothing
     * to fan out to: the worker is alone), or NGX_ERROR (logged).
     */
    ngx_int_t  (*init_process)(ngx_cycle_t *cycle,
                               ngx_http_chat_main_conf_t *cmcf);
    void       (*exit_process)(ngx_cycle_t *cycle);

    /* NGX_OK when sent (queued); NGX_ERROR: not sent, logged and counted;
     * seq is the event's in its group (0: none) */
    ngx_int_t  (*publish)(const u_char *group_id, int64_t seq,
                          const u_char *event, size_t len);

    /* optional: the group's first subscriber here came (on) or last left */
    void       (*interest)(const u_char *group_id, ngx_uint_t on);
} ngx_http_chat_transport_t;


extern ngx_http_chat_transport_t  ngx_http_chat_bus_transport;


#endif /* _NGX_HTTP_CHAT_TRANSPORT_H_INCLUDED_ */
