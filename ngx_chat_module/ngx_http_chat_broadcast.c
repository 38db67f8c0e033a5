/*
 * ngx_http_chat_broadcast.c - live delivery of a group's events to every
 * subscriber, whichever worker holds its connection.
 *
 * A stored event goes to the other workers through the transport
 * (ngx_http_chat_transport.h; the nng bus of ngx_http_chat_bus.c), then to
 * this worker's own subscribers through the registry
 * (ngx_http_chat_groups.c); the transport hands the others' events to the
 * registry as they come.  A worker alone (one worker, or master_process
 * off) has no bus: its subscribers are everyone on this host.
 *
 * With chat_cluster, a second transport carries the event to the other
 * hosts (NATS, ngx_http_chat_cluster.c): the bus for this nginx's workers,
 * the cluster for the others.  Unset, nothing of it runs.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_transport.h"
#include "ngx_http_chat_cluster.h"
#include "ngx_http_chat_broadcast.h"


static void ngx_http_chat_broadcast_interest(const u_char *group_id,
    ngx_uint_t on);


/* the transport of this configuration, and this worker's when it fans out */
static ngx_http_chat_transport_t  *ngx_http_chat_transport_conf =
    &ngx_http_chat_bus_transport;
static ngx_http_chat_transport_t  *ngx_http_chat_transport;

/* this worker's link to the other hosts (chat_cluster), or NULL */
static ngx_http_chat_transport_t  *ngx_http_chat_hosts_transport;


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

    if (rc == NGX_OK) {
        ngx_http_chat_transport = t;

    } else if (rc != NGX_DECLINED) {        /* declined: no other worker */
        return NGX_ERROR;
    }

    if (cmcf->cluster_urls == NULL) {
        return NGX_OK;
    }

    /* never fails for want of the cluster: it links when it can */

    t = &ngx_http_chat_cluster_transport;

    if (t->init_process(cycle, cmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_chat_hosts_transport = t;

    return NGX_OK;
}


void
ngx_http_chat_broadcast_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_chat_hosts_transport) {
        ngx_http_chat_hosts_transport->exit_process(cycle);
        ngx_http_chat_hosts_transport = NULL;
    }

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

    if (ngx_http_chat_hosts_transport) {
        (void) ngx_http_chat_hosts_transport->publish(group_id, seq,
                                                   (const u_char *) json,
                                                   len);
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

    if (ngx_http_chat_hosts_transport) {
        ngx_http_chat_hosts_transport->interest(group_id, on);
    }
}
