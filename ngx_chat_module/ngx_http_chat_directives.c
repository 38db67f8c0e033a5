/*
 * ngx_http_chat_directives.c - the directives whose values need checking
 * beyond nginx's stock setters: the database URI, the metrics address,
 * chat_api, the JWT secret file, the correlation header, the WebSocket
 * origins and message rate.  Each fails "nginx -t" with a message that
 * says what is wrong, at the directive's line.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mongoc/mongoc.h>
#include <nng/nng.h>

#include "wire/chat_wire.h"
#include "ngx_http_chat_module.h"
#include "ngx_http_chat_correlation.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_api.h"
#include "ngx_http_chat_jwt.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_directives.h"


char *
ngx_http_chat_mongo_uri(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    u_char        *p;
    ngx_str_t     *value;
    const char    *db;
    bson_error_t   error;
    mongoc_uri_t  *uri;

    if (cmcf->mongo_uri.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* mongoc wants a C string; parsing the URI starts no thread */

    p = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(p, value[1].data, value[1].len + 1);

    uri = mongoc_uri_new_with_error((const char *) p, &error);
    if (uri == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid MongoDB URI \"%V\": %s",
                           &value[1], error.message);
        return NGX_CONF_ERROR;
    }

    db = mongoc_uri_get_database(uri);
    if (db == NULL || *db == '\0') {
        db = "chat";
    }

    cmcf->mongo_db.len = ngx_strlen(db);
    cmcf->mongo_db.data = ngx_pnalloc(cf->pool, cmcf->mongo_db.len + 1);
    if (cmcf->mongo_db.data == NULL) {
        mongoc_uri_destroy(uri);
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(cmcf->mongo_db.data, (u_char *) db,
                       cmcf->mongo_db.len + 1);

    mongoc_uri_destroy(uri);

    cmcf->mongo_uri.data = p;
    cmcf->mongo_uri.len = value[1].len;

    return NGX_CONF_OK;
}


char *
ngx_http_chat_metrics_address(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    ngx_str_t  *value;

    if (cmcf->metrics_address.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_chat_metrics_check_address(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid chat_metrics_address \"%V\": expected "
                           "\"ipc:///path\" or \"tcp://127.0.0.1:port\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* nng wants a C string */

    cmcf->metrics_address.len = value[1].len;
    cmcf->metrics_address.data = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (cmcf->metrics_address.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(cmcf->metrics_address.data, value[1].data,
                       value[1].len + 1);

    return NGX_CONF_OK;
}


char *
ngx_http_chat_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *clcf = conf;

    char                       *rv;
    ngx_http_core_srv_conf_t   *cscf;
    ngx_http_core_loc_conf_t   *hclcf;
    ngx_http_chat_loc_conf_t   *slcf;
    ngx_http_chat_main_conf_t  *cmcf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (!clcf->api) {
        return NGX_CONF_OK;
    }

    hclcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    hclcf->handler = ngx_http_chat_api_handler;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);
    cmcf->api_used = 1;

    /*
     * nginx rejects some requests (a bad URI, TRACE, a header too large)
     * before it picks a location, with the server's configuration: mark
     * it, so that those under /api/chat/ are answered in JSON too
     * (ngx_http_chat_json.c)
     */

    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);
    slcf = cscf->ctx->loc_conf[ngx_http_chat_module.ctx_index];
    slcf->api_server = 1;

    return NGX_CONF_OK;
}


char *
ngx_http_chat_jwt_secret_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    ngx_str_t  *value;

    if (cmcf->jwt_secret.data) {
        return "is duplicate (chat_jwt_secret or chat_jwt_secret_file)";
    }

    value = cf->args->elts;

    if (ngx_http_chat_jwt_secret_read(cf, &value[1], &cmcf->jwt_secret)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_chat_cid_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (cmcf->cid_header.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 64) {
        return "must be a header name of 1 to 64 characters";
    }

    for (i = 0; i < value[1].len; i++) {
        if (!(ngx_http_chat_isalnum(value[1].data[i]) || value[1].data[i] == '-'
              || value[1].data[i] == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\" in "
                               "chat_correlation_header", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    cmcf->cid_header = value[1];
    cmcf->cid_header_lc.len = value[1].len;
    cmcf->cid_header_lc.data = ngx_pnalloc(cf->pool, value[1].len);
    if (cmcf->cid_header_lc.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_strlow(cmcf->cid_header_lc.data, value[1].data, value[1].len);

    cmcf->cid_used = 1;

    return NGX_CONF_OK;
}


char *
ngx_http_chat_ws_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *clcf = conf;

    ngx_str_t   *value, *o;
    ngx_uint_t   i;

    if (clcf->ws_origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    clcf->ws_origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                        sizeof(ngx_str_t));
    if (clcf->ws_origins == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "http://", 7) != 0
            && ngx_strncmp(value[i].data, "https://", 8) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid origin \"%V\" in "
                               "chat_ws_allowed_origins: expected "
                               "\"http://host[:port]\" or "
                               "\"https://host[:port]\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        o = ngx_array_push(clcf->ws_origins);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        *o = value[i];
    }

    return NGX_CONF_OK;
}


/* chat_ws_message_rate N | off: chat messages a second per WebSocket */

char *
ngx_http_chat_ws_message_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_loc_conf_t *clcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (clcf->ws_message_rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3
        && ngx_strncmp(value[1].data, "off", 3) == 0)
    {
        clcf->ws_message_rate = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n < 1 || n > NGX_HTTP_CHAT_WS_MESSAGE_RATE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid chat_ws_message_rate \"%V\": expected "
                           "messages a second from 1 to %d, or \"off\"",
                           &value[1], NGX_HTTP_CHAT_WS_MESSAGE_RATE_MAX);
        return NGX_CONF_ERROR;
    }

    clcf->ws_message_rate = (ngx_uint_t) n;

    return NGX_CONF_OK;
}
