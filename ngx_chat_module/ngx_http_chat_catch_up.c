/*
 * ngx_http_chat_catch_up.c - a group's events after a seq, read from the
 * database: the op of the REST "after=" listing (ngx_http_chat_event_log.c)
 * posted for the event loop, its page taken apart into the events'
 * JSON texts, each as it is sent live (ngx_http_chat_render.c renders
 * both).
 *
 * Each read has a small pool of its own, destroyed when its handler has
 * run: the caller (a WebSocket, a group) keeps itself alive until then.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_catch_up.h"


typedef struct {
    ngx_pool_t                 *pool;
    ngx_http_chat_catch_up_pt   handler;
    void                       *data;
} ngx_http_chat_catch_up_t;


static void ngx_http_chat_catch_up_done(ngx_http_chat_op_t *op);
static ngx_int_t ngx_http_chat_catch_up_page(ngx_pool_t *pool,
    const char *json, ngx_http_chat_event_page_t *page);


ngx_int_t
ngx_http_chat_catch_up_read(const u_char *group_id, int64_t after,
    ngx_uint_t limit, ngx_http_chat_catch_up_pt handler, void *data,
    ngx_log_t *log)
{
    ngx_int_t                  rc;
    ngx_pool_t                *pool;
    ngx_http_chat_op_t        *op;
    ngx_http_chat_catch_up_t  *cu;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    cu = ngx_palloc(pool, sizeof(ngx_http_chat_catch_up_t));
    op = ngx_http_chat_op_create(pool);

    if (cu == NULL || op == NULL
        || ngx_http_chat_oid_parse(group_id, NGX_HTTP_CHAT_OID_LEN,
                                   &op->group_id)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    cu->pool = pool;
    cu->handler = handler;
    cu->data = data;

    op->kind = NGX_HTTP_CHAT_OP_LIST_MESSAGES;
    op->has_after = 1;
    op->after = after;
    op->limit = (int64_t) limit;
    op->done = ngx_http_chat_catch_up_done;
    op->data = cu;
    op->log = log;

    rc = ngx_http_chat_op_post(op);

    if (rc != NGX_OK) {
        ngx_destroy_pool(pool);
    }

    return rc;
}


static void
ngx_http_chat_catch_up_done(ngx_http_chat_op_t *op)
{
    ngx_int_t                    rc;
    const char                  *error;
    ngx_http_chat_catch_up_t    *cu;
    ngx_http_chat_event_page_t   page;

    cu = op->data;

    ngx_memzero(&page, sizeof(ngx_http_chat_event_page_t));
    error = NULL;

    switch (op->result) {

    case NGX_HTTP_CHAT_RES_OK:
        rc = ngx_http_chat_catch_up_page(cu->pool, op->json, &page);
        if (rc != NGX_OK) {
            error = "the page of events cannot be read";
        }
        break;

    case NGX_HTTP_CHAT_RES_NOT_FOUND:
        rc = NGX_DECLINED;
        error = "the group is gone";
        break;

    default:
        rc = NGX_ERROR;
        error = op->error[0] ? op->error : "the database failed";
        break;
    }

    cu->handler(cu->data, rc, &page, error);

    ngx_http_chat_op_release(op);
    ngx_destroy_pool(cu->pool);
}


/* {"messages": [event, ...], "has_more": ...}: each event re-printed as
 * the live one is, with its seq */

static ngx_int_t
ngx_http_chat_catch_up_page(ngx_pool_t *pool, const char *json,
    ngx_http_chat_event_page_t *page)
{
    char                        *text;
    cJSON                       *root, *list, *item, *seq;
    ngx_uint_t                   n;
    ngx_http_chat_event_item_t  *e;

    root = json ? cJSON_Parse(json) : NULL;
    list = cJSON_GetObjectItemCaseSensitive(root, "messages");

    if (!cJSON_IsArray(list)) {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    n = (ngx_uint_t) cJSON_GetArraySize(list);

    page->items = ngx_pcalloc(pool, (n ? n : 1)
                                    * sizeof(ngx_http_chat_event_item_t));
    if (page->items == NULL) {
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    page->has_more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root,
                                                                  "has_more"));

    seq = cJSON_GetObjectItemCaseSensitive(root, "next_after");
    page->next_after = (page->has_more && cJSON_IsNumber(seq)
                        && seq->valuedouble >= 0)
                       ? (int64_t) seq->valuedouble : -1;

    cJSON_ArrayForEach(item, list) {
        seq = cJSON_GetObjectItemCaseSensitive(item, "seq");
        if (!cJSON_IsNumber(seq) || seq->valuedouble < 1) {
            continue;
        }

        text = cJSON_PrintUnformatted(item);
        if (text == NULL) {
            cJSON_Delete(root);
            return NGX_ERROR;
        }

        e = &page->items[page->nitems];
        e->seq = (int64_t) seq->valuedouble;
        e->json.len = ngx_strlen(text);
        e->json.data = ngx_pnalloc(pool, e->json.len);

        if (e->json.data == NULL) {
            cJSON_free(text);
            cJSON_Delete(root);
            return NGX_ERROR;
        }

        ngx_memcpy(e->json.data, text, e->json.len);
        cJSON_free(text);

        page->nitems++;
    }

    cJSON_Delete(root);

    return NGX_OK;
}
