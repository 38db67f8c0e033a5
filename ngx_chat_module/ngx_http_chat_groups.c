/*
 * ngx_http_chat_groups.c - the worker's groups and their subscribers: an
 * rbtree of groups keyed by id (nginx's ngx_str_rbtree), each with a list
 * of subscribers.  An event is encoded once into a WebSocket frame and
 * handed to every subscriber of its group; each delivery is reported to
 * the metrics as a "message_broadcast" event.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_groups.h"


typedef struct {
    ngx_rbtree_t                    tree;
    ngx_rbtree_node_t               sentinel;
    ngx_http_chat_groups_watch_pt   watch;
} ngx_http_chat_groups_t;


static ngx_http_chat_group_t *ngx_http_chat_groups_find(const u_char *id);
static void ngx_http_chat_groups_maybe_free(ngx_http_chat_group_t *g);
static void ngx_http_chat_groups_report(const u_char *id, ngx_uint_t n);


static ngx_http_chat_groups_t  ngx_http_chat_groups;


void
ngx_http_chat_groups_init(ngx_http_chat_groups_watch_pt watch)
{
    ngx_rbtree_init(&ngx_http_chat_groups.tree,
                    &ngx_http_chat_groups.sentinel,
                    ngx_str_rbtree_insert_value);

    ngx_http_chat_groups.watch = watch;
}


ngx_uint_t
ngx_http_chat_groups_join(ngx_http_chat_subscriber_t *s,
    const u_char *group_id)
{
    u_char                 id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    ngx_http_chat_group_t  *g;

    ngx_strlow(id, (u_char *) group_id, NGX_HTTP_CHAT_GROUP_ID_LEN);

    g = ngx_http_chat_groups_find(id);

    if (g == NULL) {
        g = ngx_calloc(sizeof(ngx_http_chat_group_t), ngx_cycle->log);
        if (g == NULL) {
            return 0;
        }

        ngx_memcpy(g->id, id, NGX_HTTP_CHAT_GROUP_ID_LEN);
        g->sn.str.data = g->id;
        g->sn.str.len = NGX_HTTP_CHAT_GROUP_ID_LEN;
        g->sn.node.key = ngx_crc32_short(g->id, NGX_HTTP_CHAT_GROUP_ID_LEN);
        ngx_queue_init(&g->subscribers);

        ngx_rbtree_insert(&ngx_http_chat_groups.tree, &g->sn.node);

        if (ngx_http_chat_groups.watch) {
            ngx_http_chat_groups.watch(g->id, 1);
        }
    }

    ngx_queue_insert_tail(&g->subscribers, &s->link);
    s->group = g;

    return ++g->count;
}


ngx_uint_t
ngx_http_chat_groups_leave(ngx_http_chat_subscriber_t *s)
{
    ngx_uint_t              count;
    ngx_http_chat_group_t  *g;

    g = s->group;
    if (g == NULL) {
        return 0;
    }

    ngx_queue_remove(&s->link);
    s->group = NULL;

    count = --g->count;

    ngx_http_chat_groups_maybe_free(g);

    return count;
}


ngx_uint_t
ngx_http_chat_groups_deliver(const u_char *group_id, const u_char *event,
    size_t len)
{
    u_char                       id[NGX_HTTP_CHAT_GROUP_ID_LEN];
    ngx_uint_t                   n;
    ngx_queue_t                 *q, *next;
    ngx_http_chat_group_t       *g;
    ngx_http_chat_frame_t       *frame;
    ngx_http_chat_subscriber_t  *s;

    ngx_strlow(id, (u_char *) group_id, NGX_HTTP_CHAT_GROUP_ID_LEN);

    g = ngx_http_chat_groups_find(id);
    if (g == NULL) {
        return 0;
    }

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, event, len);
    if (frame == NULL) {
        return 0;
    }

    n = 0;
    g->delivering++;

    /* a subscriber may leave while we iterate (a slow one is closed) */

    for (q = ngx_queue_head(&g->subscribers);
         q != ngx_queue_sentinel(&g->subscribers);
         q = next)
    {
        next = ngx_queue_next(q);
        s = ngx_queue_data(q, ngx_http_chat_subscriber_t, link);

        s->send(s, frame);
        n++;
    }

    g->delivering--;

    ngx_http_chat_frame_release(frame);

    ngx_http_chat_groups_report(id, n);

    ngx_http_chat_groups_maybe_free(g);

    return n;
}


ngx_http_chat_group_t *
ngx_http_chat_groups_next(ngx_http_chat_group_t *g)
{
    ngx_rbtree_node_t  *node, *root, *sentinel;

    root = ngx_http_chat_groups.tree.root;
    sentinel = ngx_http_chat_groups.tree.sentinel;

    if (root == sentinel) {
        return NULL;
    }

    node = g ? ngx_rbtree_next(&ngx_http_chat_groups.tree, &g->sn.node)
             : ngx_rbtree_min(root, sentinel);

    return (ngx_http_chat_group_t *) node;
}


static ngx_http_chat_group_t *
ngx_http_chat_groups_find(const u_char *id)
{
    ngx_str_t  name;

    name.data = (u_char *) id;
    name.len = NGX_HTTP_CHAT_GROUP_ID_LEN;

    return (ngx_http_chat_group_t *)
               ngx_str_rbtree_lookup(&ngx_http_chat_groups.tree, &name,
                                     ngx_crc32_short(name.data, name.len));
}


static void
ngx_http_chat_groups_maybe_free(ngx_http_chat_group_t *g)
{
    if (g->count || g->delivering) {
        return;
    }

    ngx_rbtree_delete(&ngx_http_chat_groups.tree, &g->sn.node);

    if (ngx_http_chat_groups.watch) {
        ngx_http_chat_groups.watch(g->id, 0);
    }

    ngx_free(g);
}


/* every delivery is a "message_broadcast" event for the dashboard */

static void
ngx_http_chat_groups_report(const u_char *id, ngx_uint_t n)
{
    u_char              count[NGX_INT_T_LEN];
    ngx_str_t           type = ngx_string("message_broadcast");
    ngx_http_chat_kv_t  kv[2];

    ngx_str_set(&kv[0].key, "group_id");
    kv[0].value.data = (u_char *) id;
    kv[0].value.len = NGX_HTTP_CHAT_GROUP_ID_LEN;
    ngx_str_set(&kv[1].key, "recipient_count");
    kv[1].value.data = count;
    kv[1].value.len = ngx_sprintf(count, "%ui", n) - count;

    ngx_http_chat_metrics_custom(&type, kv, 2);
}
