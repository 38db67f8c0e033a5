/*
 * ngx_http_chat_broadcast.c - live delivery of a group's events to every
 * subscriber, whichever worker holds its connection.
 *
 * A stored event goes to the other workers through the transport
 * (ngx_http_chat_transport.h; the nng bus of ngx_http_chat_bus.c), then to
 * this worker's own subscribers through the registry
 * (ngx_http_chat_groups.c); the transport hands the others' events to the
 * registry as they come.  A worker alone (one worker, or master_process
 * off) has no transport: its subscribers are everyone.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_transport.h"
#include "ngx_http_chat_broadcast.h"


static void ngx_http_chat_broadcast_interest(const u_char *group_id,
    ngx_uint_t on);


/* the transport of this configuration, and this worker's when it fans out */
static ngx_http_chat_transport_t  *ngx_http_chat_transport_conf =
    &ngx_http_chat_bus_transport;
static ngx_http_chat_transport_t  *ngx_http_chat_transport;


void
ngx_http_chat_broadcast_configured(ngx_http_chat_main_conf_t *cmcf)
{
    if (ngx_http_chat_transport_conf->configured) {
        ngx_http_chat_transport_conf->configured(cmcf);
    }
}


ngx_int_t
ngx_http_chat_broadcast_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    ngx_int_t                   rc;
    ngx_http_chat_transport_t  *t;

    ngx_http_chat_groups_init(ngx_http_chat_broadcast_interest);

    t = ngx_http_chat_transport_conf;

    rc = t->init_process(cycle, cmcf);

    if (rc == NGX_DECLINED) {
        return NGX_OK;                      /* nobody to fan out to */
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_chat_transport = t;

    return NGX_OK;
}


void
ngx_http_chat_broadcast_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_chat_transport) {
        ngx_http_chat_transport->exit_process(cycle);
        ngx_http_chat_transport = NULL;
    }
}


void
ngx_http_chat_broadcast_publish(const u_char *group_id, int64_t seq,
    const char *json, size_t len)
{
    /* the other workers first: they fan out while this one does; a send
     * that fails is the transport's to log and count */

    if (ngx_http_chat_transport) {
        (void) ngx_http_chat_transport->publish(group_id, seq,
                                                (const u_char *) json, len);
    }

    (void) ngx_http_chat_groups_deliver(group_id, seq, (const u_char *) json,
                                        len);
}


static void
ngx_http_chat_broadcast_interest(const u_char *group_id, ngx_uint_t on)
{
    if (ngx_http_chat_transport && ngx_http_chat_transport->interest) {
        ngx_http_chat_transport->interest(group_id, on);
    }
}
