/*
 * ngx_http_chat_module.c - directives, configuration, request phases and the
 * worker lifecycle of the chat module.  The directives that check their
 * values themselves are in ngx_http_chat_directives.c; the work itself
 * lives in the files named after it (see ngx_http_chat_module.h).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <dlfcn.h>
#include <pthread.h>

#include <mongoc/mongoc.h>
#include <nng/nng.h>

#include "wire/chat_wire.h"
#include "ngx_http_chat_module.h"
#include "ngx_http_chat_correlation.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_jwt.h"
#include "ngx_http_chat_api.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_broadcast.h"
#include "ngx_http_chat_directives.h"
#include "ngx_http_chat_page_cache.h"
#include "ngx_http_chat_bearer.h"


static ngx_int_t ngx_http_chat_add_variables(ngx_conf_t *cf);
static void *ngx_http_chat_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_chat_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_chat_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_chat_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_chat_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_chat_init_process(ngx_cycle_t *cycle);
static void ngx_http_chat_exit_process(ngx_cycle_t *cycle);
static void ngx_http_chat_nng_fini(void *data);
static void ngx_http_chat_keep_loaded(ngx_cycle_t *cycle);


static ngx_int_t ngx_http_chat_post_read_handler(ngx_http_request_t *r);


/* a batch is one nng message of at most CHAT_WIRE_MAX_RECORDS records */
static ngx_conf_num_bounds_t  ngx_http_chat_batch_bounds = {
    ngx_conf_check_num_bounds, 1, CHAT_WIRE_MAX_RECORDS
};

static ngx_conf_num_bounds_t  ngx_http_chat_metrics_queue_bounds = {
    ngx_conf_check_num_bounds, 1, 8192
};

static ngx_conf_num_bounds_t  ngx_http_chat_page_bounds = {
    ngx_conf_check_num_bounds, 1, 1000
};

static ngx_conf_num_bounds_t  ngx_http_chat_queue_bounds = {
    ngx_conf_check_num_bounds, 1, 65536
};


static ngx_command_t  ngx_http_chat_commands[] = {

    { ngx_string("chat_mongo_uri"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_mongo_uri,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_db_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, db_timeout),
      NULL },

    { ngx_string("chat_page_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_chat_page_cache_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("chat_metrics_address"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_metrics_address,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_metrics_flush_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, metrics_flush),
      NULL },

    { ngx_string("chat_metrics_batch"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, metrics_batch),
      &ngx_http_chat_batch_bounds },

    { ngx_string("chat_metrics_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, metrics_queue),
      &ngx_http_chat_metrics_queue_bounds },

    { ngx_string("chat_jwt_secret"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, jwt_secret),
      NULL },

    { ngx_string("chat_jwt_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_jwt_secret_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_bearer_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_bearer_token_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chat_main_conf_t, jwt_leeway),
      NULL },

    { ngx_string("chat_correlation_header"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_cid_header,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_correlation_response"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, cid_response),
      NULL },

    { ngx_string("chat_traceparent_response"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, tp_response),
      NULL },

    { ngx_string("chat_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_chat_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, api),
      NULL },

    { ngx_string("chat_metrics"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, metrics),
      NULL },

    { ngx_string("chat_metrics_endpoint"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, endpoint),
      NULL },

    { ngx_string("chat_max_content_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, max_content),
      NULL },

    { ngx_string("chat_max_name_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, max_name),
      NULL },

    { ngx_string("chat_page_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, page_size),
      &ngx_http_chat_page_bounds },

    { ngx_string("chat_page_max"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, page_max),
      &ngx_http_chat_page_bounds },

    { ngx_string("chat_ws_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, ws_ping_interval),
      NULL },

    { ngx_string("chat_ws_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, ws_idle_timeout),
      NULL },

    { ngx_string("chat_ws_close_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, ws_close_timeout),
      NULL },

    { ngx_string("chat_ws_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, ws_max_frame),
      NULL },

    { ngx_string("chat_ws_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, ws_max_message),
      NULL },

    { ngx_string("chat_ws_send_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, ws_send_queue),
      &ngx_http_chat_queue_bounds },

    { ngx_string("chat_ws_message_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_ws_message_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chat_loc_conf_t, ws_message_rate),
      NULL },

    { ngx_string("chat_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_chat_cluster,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_host_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chat_host_name,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_ws_allowed_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_chat_ws_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_chat_module_ctx = {
    ngx_http_chat_add_variables,           /* preconfiguration */
    ngx_http_chat_init,                    /* postconfiguration */

    ngx_http_chat_create_main_conf,        /* create main configuration */
    ngx_http_chat_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_chat_create_loc_conf,         /* create location configuration */
    ngx_http_chat_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_chat_module = {
    NGX_MODULE_V1,
    &ngx_http_chat_module_ctx,             /* module context */
    ngx_http_chat_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_chat_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_chat_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_chat_default_pool = ngx_string("default");
static ngx_str_t  ngx_http_chat_default_cid = ngx_string("X-Correlation-ID");


/*
 * The first phase every request goes through: stamp the start time on a
 * monotonic clock (r->start_msec has millisecond resolution only) and settle
 * the correlation ID, so that everything after, errors included, carries it.
 */

static ngx_int_t
ngx_http_chat_post_read_handler(ngx_http_request_t *r)
{
    ngx_http_chat_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_chat_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_http_chat_new_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (ctx->start_us) {
        return NGX_DECLINED;
    }

    ctx->start_us = ngx_http_chat_monotonic_us();

    if (ngx_http_chat_correlation_settle(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_chat_add_variables(ngx_conf_t *cf)
{
    if (ngx_http_chat_correlation_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_chat_jwt_add_variables(cf);
}


static void *
ngx_http_chat_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     cmcf->mongo_uri = { 0, NULL };
     *     cmcf->mongo_db = { 0, NULL };
     *     cmcf->thread_pool_name = { 0, NULL };
     *     cmcf->thread_pool = NULL;
     *     cmcf->metrics_address = { 0, NULL };
     *     cmcf->jwt_secret = { 0, NULL };
     *     cmcf->cid_header = { 0, NULL };
     *     cmcf->api_used = 0;
     *     cmcf->metrics_used = 0;
     *     cmcf->cid_used = 0;
     *     cmcf->cluster_urls = NULL;
     *     cmcf->cluster_user = { 0, NULL };
     *     cmcf->cluster_password = { 0, NULL };
     *     cmcf->cluster_token = { 0, NULL };
     *     cmcf->cluster_ca = { 0, NULL };
     *     cmcf->host_name = { 0, NULL };
     */

    cmcf->db_timeout = NGX_CONF_UNSET_MSEC;
    cmcf->metrics_flush = NGX_CONF_UNSET_MSEC;
    cmcf->metrics_batch = NGX_CONF_UNSET_UINT;
    cmcf->metrics_queue = NGX_CONF_UNSET_UINT;
    cmcf->jwt_leeway = NGX_CONF_UNSET;

    return cmcf;
}


static char *
ngx_http_chat_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    ngx_conf_init_msec_value(cmcf->db_timeout, 5000);
    ngx_conf_init_msec_value(cmcf->metrics_flush, 100);
    ngx_conf_init_uint_value(cmcf->metrics_batch, 1024);
    ngx_conf_init_uint_value(cmcf->metrics_queue, 64);
    ngx_conf_init_value(cmcf->jwt_leeway, 30);

    if (cmcf->db_timeout < 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_db_timeout must be at least 100ms");
        return NGX_CONF_ERROR;
    }

    if (cmcf->metrics_flush == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_metrics_flush_interval must not be zero");
        return NGX_CONF_ERROR;
    }

    if (cmcf->thread_pool_name.len == 0) {
        cmcf->thread_pool_name = ngx_http_chat_default_pool;
    }

    ngx_http_chat_broadcast_configured(cmcf);

    if (ngx_http_chat_cluster_init_conf(cf, cmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (cmcf->cid_header.len == 0) {
        cmcf->cid_header = ngx_http_chat_default_cid;
        cmcf->cid_header_lc.len = cmcf->cid_header.len;
        cmcf->cid_header_lc.data = ngx_pnalloc(cf->pool, cmcf->cid_header.len);
        if (cmcf->cid_header_lc.data == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_strlow(cmcf->cid_header_lc.data, cmcf->cid_header.data,
                   cmcf->cid_header.len);
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_chat_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_chat_loc_conf_t  *clcf;

    clcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chat_loc_conf_t));
    if (clcf == NULL) {
        return NULL;
    }

    clcf->api = NGX_CONF_UNSET;
    clcf->endpoint = NGX_CONF_UNSET_PTR;
    clcf->metrics = NGX_CONF_UNSET;
    clcf->cid_response = NGX_CONF_UNSET;
    clcf->tp_response = NGX_CONF_UNSET;
    clcf->max_content = NGX_CONF_UNSET_SIZE;
    clcf->max_name = NGX_CONF_UNSET_SIZE;
    clcf->page_size = NGX_CONF_UNSET_UINT;
    clcf->page_max = NGX_CONF_UNSET_UINT;
    clcf->ws_ping_interval = NGX_CONF_UNSET_MSEC;
    clcf->ws_idle_timeout = NGX_CONF_UNSET_MSEC;
    clcf->ws_close_timeout = NGX_CONF_UNSET_MSEC;
    clcf->ws_max_frame = NGX_CONF_UNSET_SIZE;
    clcf->ws_max_message = NGX_CONF_UNSET_SIZE;
    clcf->ws_send_queue = NGX_CONF_UNSET_UINT;
    clcf->ws_message_rate = NGX_CONF_UNSET_UINT;
    clcf->ws_origins = NGX_CONF_UNSET_PTR;
    clcf->bearer_sha256 = NGX_CONF_UNSET_PTR;

    return clcf;
}


static char *
ngx_http_chat_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_chat_loc_conf_t *prev = parent;
    ngx_http_chat_loc_conf_t *conf = child;

    ngx_http_chat_main_conf_t  *cmcf;

    /* chat_api is not inherited: it installs a content handler */
    ngx_conf_init_value(conf->api, 0);

    ngx_conf_merge_value(conf->metrics, prev->metrics, 0);
    ngx_conf_merge_ptr_value(conf->endpoint, prev->endpoint, NULL);
    ngx_conf_merge_value(conf->cid_response, prev->cid_response, 1);

    /*
     * off by default: W3C Trace Context defines no response header (its
     * level 2 draft names "traceresponse"), and the span costs ~150
     * instructions per request (bench/findings.md, issue 15 part 1)
     */
    ngx_conf_merge_value(conf->tp_response, prev->tp_response, 0);
    ngx_conf_merge_size_value(conf->max_content, prev->max_content, 4096);
    ngx_conf_merge_size_value(conf->max_name, prev->max_name, 100);
    ngx_conf_merge_uint_value(conf->page_size, prev->page_size, 50);
    ngx_conf_merge_uint_value(conf->page_max, prev->page_max, 100);

    ngx_conf_merge_msec_value(conf->ws_ping_interval,
                              prev->ws_ping_interval, 30000);
    ngx_conf_merge_msec_value(conf->ws_idle_timeout,
                              prev->ws_idle_timeout, 75000);
    ngx_conf_merge_msec_value(conf->ws_close_timeout,
                              prev->ws_close_timeout, 5000);
    ngx_conf_merge_size_value(conf->ws_max_frame, prev->ws_max_frame,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->ws_max_message, prev->ws_max_message,
                              64 * 1024);
    ngx_conf_merge_uint_value(conf->ws_send_queue, prev->ws_send_queue, 256);
    ngx_conf_merge_uint_value(conf->ws_message_rate, prev->ws_message_rate,
                              NGX_HTTP_CHAT_WS_MESSAGE_RATE);
    ngx_conf_merge_ptr_value(conf->ws_origins, prev->ws_origins, NULL);
    ngx_conf_merge_ptr_value(conf->bearer_sha256, prev->bearer_sha256, NULL);

    if (conf->ws_ping_interval < 100 || conf->ws_idle_timeout < 100
        || conf->ws_close_timeout < 100)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_ws_ping_interval, chat_ws_idle_timeout and "
                           "chat_ws_close_timeout must be at least 100ms");
        return NGX_CONF_ERROR;
    }

    if (conf->ws_idle_timeout <= conf->ws_ping_interval) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_ws_idle_timeout (%M ms) must be longer than "
                           "chat_ws_ping_interval (%M ms), or live peers "
                           "would be cut off before they can answer a ping",
                           conf->ws_idle_timeout, conf->ws_ping_interval);
        return NGX_CONF_ERROR;
    }

    if (conf->ws_max_frame < 125 || conf->ws_max_frame > 16 * 1024 * 1024
        || conf->ws_max_message < 125
        || conf->ws_max_message > 16 * 1024 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_ws_max_frame_size and "
                           "chat_ws_max_message_size must be between 125 "
                           "and 16m");
        return NGX_CONF_ERROR;
    }

    if (conf->max_content == 0 || conf->max_content > 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_max_content_length must be between "
                           "1 and 1m, not %uz", conf->max_content);
        return NGX_CONF_ERROR;
    }

    if (conf->max_name == 0 || conf->max_name > 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_max_name_length must be between "
                           "1 and 4096, not %uz", conf->max_name);
        return NGX_CONF_ERROR;
    }

    if (conf->page_size > conf->page_max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_page_size %ui is larger than "
                           "chat_page_max %ui", conf->page_size,
                           conf->page_max);
        return NGX_CONF_ERROR;
    }

    if (conf->metrics) {
        cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);
        cmcf->metrics_used = 1;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_chat_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *hcmcf;
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);

    if (cmcf->api_used) {

        if (cmcf->mongo_uri.data == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"chat_api\" is on but \"chat_mongo_uri\" "
                               "is not set in the http block");
            return NGX_ERROR;
        }

        if (cmcf->jwt_secret.data == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"chat_api\" is on but neither "
                               "\"chat_jwt_secret\" nor "
                               "\"chat_jwt_secret_file\" is set");
            return NGX_ERROR;
        }

        if (cmcf->jwt_secret.len < 32) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "the chat JWT secret is shorter than 32 "
                               "bytes; HS256 wants at least 32");
        }

        cmcf->thread_pool = ngx_thread_pool_add(cf, &cmcf->thread_pool_name);
        if (cmcf->thread_pool == NULL) {
            return NGX_ERROR;
        }
    }

    if (cmcf->metrics_used && cmcf->metrics_address.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_metrics\" is on but "
                           "\"chat_metrics_address\" is not set in the "
                           "http block");
        return NGX_ERROR;
    }

    hcmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    if (cmcf->bearer_used) {
        h = ngx_array_push(&hcmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_chat_bearer_access_handler;
    }

    /*
     * Loaded but not used (Debian enables a packaged module for every
     * configuration of the system's nginx): no handler, no header filter,
     * every request left alone.
     */

    if (!cmcf->api_used && !cmcf->metrics_used && !cmcf->cid_used) {
        return NGX_OK;
    }

    h = ngx_array_push(&hcmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chat_post_read_handler;

    if (cmcf->api_used && ngx_http_chat_error_pages_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (cmcf->metrics_used) {
        h = ngx_array_push(&hcmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_chat_metrics_log_handler;
    }

    return ngx_http_chat_correlation_init(cf);
}


/*
 * A worker exits by destroying its cycle's pool, whose cleanup dlclose()s
 * this module (and libmongoc, libnng with it).  nginx does not join its
 * pool threads first, and a database operation may still be running on
 * one (chat_db_timeout answered the request, the driver still waits on an
 * unreachable server): returning into unmapped code, the thread crashed
 * the exiting worker (a SEGV at an unmapped pc under ASan, t/03).  In a
 * worker the module is marked never to be unloaded; the process is
 * exiting, nothing is lost.  The master, whose reloads do unload old
 * modules, runs no such threads.
 */

static void
ngx_http_chat_keep_loaded(ngx_cycle_t *cycle)
{
    char     *err;
    Dl_info   info;

    if (dladdr((void *) &ngx_http_chat_module, &info) == 0
        || info.dli_fname == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "chat: the module could not be kept loaded until "
                      "the worker exits: dladdr() found no file");
        return;
    }

    if (dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE)
        == NULL)
    {
        err = dlerror();
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "chat: the module could not be kept loaded until "
                      "the worker exits: %s", err ? err : "dlopen() failed");
    }
}


/*
 * Threads do not survive fork(): the nng socket and the mongoc client pool
 * (which runs monitoring threads) are made here, in each worker.
 */

static ngx_int_t
ngx_http_chat_init_process(ngx_cycle_t *cycle)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_chat_main_conf_t  *cmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_chat_module);
    if (cmcf == NULL || !(cmcf->metrics_used || cmcf->api_used)) {
        return NGX_OK;
    }

    /*
     * Added after load_module's cleanup, so it runs before it: once every
     * exit_process handler has closed its nng socket, and before the
     * module (and libnng, loaded for it alone) is unloaded.
     */

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_chat_nng_fini;

    ngx_http_chat_keep_loaded(cycle);

    if (cmcf->metrics_used
        && ngx_http_chat_metrics_init_process(cycle, cmcf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (cmcf->api_used) {
        ngx_http_chat_page_cache_init_process(cycle);
    }

    if (cmcf->api_used
        && (ngx_http_chat_storage_init_process(cycle, cmcf) != NGX_OK
            || ngx_http_chat_broadcast_init_process(cycle, cmcf) != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_chat_exit_process(ngx_cycle_t *cycle)
{
    u_char                      stats[256];
    size_t                      n;
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_chat_module);
    if (cmcf == NULL) {
        return;
    }

    if (cmcf->api_used) {
        ngx_http_chat_broadcast_exit_process(cycle);
        ngx_http_chat_storage_exit_process(cycle);

        /* the zone's figures so far (all workers'), for the operator */
        n = ngx_http_chat_page_cache_stats(stats, sizeof(stats));
        if (n) {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "chat page cache: %*s", n, stats);
        }
    }

    if (cmcf->metrics_used) {
        ngx_http_chat_metrics_exit_process(cycle);
    }
}


/*
 * nng's threads outlive nng_close().  When a worker exits, nginx unloads
 * the module, and with it libnng: a thread of nng that wakes up after that
 * runs unmapped code (a SIGSEGV in workers leaving after a reload).
 * nng_fini() stops them all; nng asks for it "just before dlclose()".
 */

static void
ngx_http_chat_nng_fini(void *data)
{
    nng_fini();
}
