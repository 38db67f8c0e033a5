/*
 * ngx_http_chat_module.h - configuration and per-request state shared by the
 * files of the chat module.  Each .c file is one concern:
 *
 *   ngx_http_chat_module.c       directives, configuration, phases, workers
 *   ngx_http_chat_request.c      request context, arguments, headers, clocks
 *   ngx_http_chat_correlation.c  correlation IDs (header, variable)
 *   ngx_http_chat_metrics.c      log-phase recording, batches to the sidecar
 *   ngx_http_chat_api.c          REST routing and handlers
 *   ngx_http_chat_storage.c      MongoDB operations on the thread pool
 *   ngx_http_chat_json.c         request bodies in, JSON responses out
 *   ngx_http_chat_jwt.c          bearer token verification
 *   ngx_http_chat_bearer.c       chat_bearer_token_file (scrapers' access)
 *   ngx_http_chat_ws_handshake.c   WebSocket: the opening handshake
 *   ngx_http_chat_ws_connection.c  WebSocket: frames in and out, closing
 *   ngx_http_chat_ws_messages.c    WebSocket: chat messages from clients
 *   ngx_http_chat_ws_codec.c       RFC 6455 without I/O (also the fuzzers')
 *   ngx_http_chat_broadcast.c    fan-out: a stored event here and elsewhere
 *   ngx_http_chat_groups.c       the worker's groups and their subscribers
 *   ngx_http_chat_transport.h    the seam to the other workers (or hosts)
 *   ngx_http_chat_bus.c          ... the nng bus between this nginx's workers
 *   ngx_http_chat_cluster.c      ... NATS between nginx hosts (chat_cluster)
 *   ngx_http_chat_cluster_loop.c     nats.c on the event loop, its threads
 */

#ifndef _NGX_HTTP_CHAT_MODULE_H_INCLUDED_
#define _NGX_HTTP_CHAT_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_CHAT_CID_MAX         64   /* longest accepted correlation ID */
#define NGX_HTTP_CHAT_OID_LEN         24   /* an ObjectId in hex */
#define NGX_HTTP_CHAT_WS_MESSAGE_RATE     20   /* chat_ws_message_rate */
#define NGX_HTTP_CHAT_WS_MESSAGE_RATE_MAX 10000
#define NGX_HTTP_CHAT_TRACE_ID_LEN    32   /* W3C trace-id, hex */
#define NGX_HTTP_CHAT_UUID_LEN        36   /* a generated correlation ID */
#define NGX_HTTP_CHAT_SPAN_ID_LEN     16   /* W3C parent-id, hex */
#define NGX_HTTP_CHAT_HOST_NAME_MAX   63   /* chat_host_name */
#define NGX_HTTP_CHAT_TRACEPARENT_LEN 55   /* "00-" trace "-" span "-" 2 */

/* 2^53: every seq up to it is exact in a JSON number */
#define NGX_HTTP_CHAT_MAX_SEQ         9007199254740992LL

#define ngx_http_chat_isalnum(c)                                              \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z')                 \
     || ((c) >= 'A' && (c) <= 'Z'))


typedef struct {
    ngx_str_t                  mongo_uri;
    ngx_str_t                  mongo_db;         /* database of the URI */
    ngx_msec_t                 db_timeout;

    ngx_str_t                  thread_pool_name;
    ngx_thread_pool_t         *thread_pool;

    ngx_str_t                  metrics_address;  /* nng URL of the sidecar */
    ngx_msec_t                 metrics_flush;
    ngx_uint_t                 metrics_batch;
    ngx_uint_t                 metrics_queue;    /* batches nng may hold */
    ngx_uint_t                 bus_generation;   /* names this cycle's bus */

    /* chat_cluster: NULL when unset (one host); C strings */
    ngx_array_t               *cluster_urls;     /* of char * */
    ngx_str_t                  cluster_user;
    ngx_str_t                  cluster_password;
    ngx_str_t                  cluster_token;
    ngx_str_t                  cluster_ca;       /* the CA file's PEM */
    ngx_str_t                  host_name;        /* chat_host_name */
    uint64_t                   cluster_instance; /* this nginx, random */

    ngx_str_t                  jwt_secret;
    time_t                     jwt_leeway;

    ngx_str_t                  cid_header;       /* X-Correlation-ID */
    ngx_str_t                  cid_header_lc;

    ngx_flag_t                 api_used;         /* a location has chat_api */
    ngx_flag_t                 metrics_used;     /* chat_metrics on anywhere */
    ngx_flag_t                 cid_used;         /* chat_correlation_header */
    ngx_flag_t                 bearer_used;      /* chat_bearer_token_file */

    ngx_shm_zone_t            *page_cache;       /* chat_page_cache, or NULL */
    ngx_flag_t                 page_cache_set;
} ngx_http_chat_main_conf_t;


typedef struct {
    ngx_flag_t                 api;
    ngx_flag_t                 api_server;       /* server{} level: one of
                                                    its locations has
                                                    chat_api on */
    ngx_flag_t                 metrics;
    ngx_http_complex_value_t  *endpoint;
    ngx_flag_t                 cid_response;     /* chat_correlation_response */
    ngx_flag_t                 tp_response;      /* chat_traceparent_response */

    size_t                     max_content;
    size_t                     max_name;
    ngx_uint_t                 page_size;
    ngx_uint_t                 page_max;

    ngx_msec_t                 ws_ping_interval;
    ngx_msec_t                 ws_idle_timeout;
    ngx_msec_t                 ws_close_timeout;
    size_t                     ws_max_frame;
    size_t                     ws_max_message;
    ngx_uint_t                 ws_send_queue;
    ngx_uint_t                 ws_message_rate;  /* a second, 0: off */
    ngx_array_t               *ws_origins;

    u_char                    *bearer_sha256;    /* chat_bearer_token_file:
                                                    the token's SHA-256 */
} ngx_http_chat_loc_conf_t;


/* the state of an API request (_api.c), of a WebSocket handshake
 * (_ws_handshake.c): each file's own */
typedef struct ngx_http_chat_api_ctx_s        ngx_http_chat_api_ctx_t;
typedef struct ngx_http_chat_ws_handshake_s   ngx_http_chat_ws_handshake_t;


/*
 * Per-request state.  It is also registered as a pool cleanup so that it
 * can be found again after an internal redirect, which clears r->ctx (the
 * same technique as ngx_http_realip_module; ngx_http_chat_request.c).
 */
typedef struct {
    /* the client's ID or trace-id point into its request header; a
     * generated one is in uuid_buf, at the end (the context is allocated
     * for every request: it is kept small) */
    ngx_str_t                      correlation_id;
    uint64_t                       start_us;     /* monotonic clock */

    /* this request's span, "00-<trace-id>-<span-id>-<flags>"
     * (ngx_http_chat_correlation.c), allocated when first asked for */
    ngx_str_t                      traceparent;
    unsigned                       trace_from:2; /* where its trace-id comes
                                                    from, built when first
                                                    needed */
    unsigned                       trace_sampled:1;

    /* the authenticated user, verified once (ngx_http_chat_jwt.c) */
    ngx_str_t                      user;
    const char                    *user_detail;  /* why there is none */
    unsigned                       user_checked:1;
    unsigned                       user_query:1; /* checked with ?token= */

    ngx_str_t                      endpoint;     /* route template, if any */

    ngx_http_chat_api_ctx_t       *api;          /* a REST request */
    ngx_http_chat_ws_handshake_t  *handshake;    /* or a handshake */

    ngx_buf_t                     *error_body;   /* JSON for nginx's own
                                                    error page */
    unsigned                       error_sent:1;

    /* not zeroed when the context is made (ngx_http_chat_new_ctx()):
     * written whole before it is read */
    u_char                         uuid_buf[NGX_HTTP_CHAT_UUID_LEN];
} ngx_http_chat_ctx_t;


extern ngx_module_t  ngx_http_chat_module;


/* ngx_http_chat_request.c: what every file needs of a request or of time */

ngx_http_chat_ctx_t *ngx_http_chat_find_ctx(ngx_http_request_t *r);
ngx_http_chat_ctx_t *ngx_http_chat_new_ctx(ngx_http_request_t *r);
ngx_http_chat_ctx_t *ngx_http_chat_create_ctx(ngx_http_request_t *r);

/* the request's context, or NULL; looked for in the pool's cleanups only
 * after an internal redirect (or a filter finalization) cleared r->ctx */
static ngx_inline ngx_http_chat_ctx_t *
ngx_http_chat_get_ctx(ngx_http_request_t *r)
{
    ngx_http_chat_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chat_module);

    if (ctx || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    return ngx_http_chat_find_ctx(r);
}
ngx_int_t ngx_http_chat_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_chat_query_int(ngx_http_request_t *r, const char *name,
    int64_t min, int64_t max, int64_t dflt, int64_t *value, ngx_int_t *rc);
ngx_table_elt_t *ngx_http_chat_header_in(ngx_http_request_t *r,
    ngx_str_t *name);

uint64_t ngx_http_chat_realtime_us(void);

/* a request's start and end (twice a request: inline, one vDSO call) */
static ngx_inline uint64_t
ngx_http_chat_monotonic_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


/*
 * Around a call that starts a library's threads (nng, mongoc): they are
 * born with every signal blocked, so that the worker's signals reach its
 * event loop thread only.
 */
void ngx_http_chat_threads_block_signals(sigset_t *saved);
void ngx_http_chat_threads_restore_signals(sigset_t *saved);


#endif /* _NGX_HTTP_CHAT_MODULE_H_INCLUDED_ */
