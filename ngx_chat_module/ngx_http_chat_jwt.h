/*
 * ngx_http_chat_jwt.h - bearer token verification (JWT, HS256 only).
 */

#ifndef _NGX_HTTP_CHAT_JWT_H_INCLUDED_
#define _NGX_HTTP_CHAT_JWT_H_INCLUDED_


#include "ngx_http_chat_module.h"


#define NGX_HTTP_CHAT_JWT_MAX        4096   /* longest token accepted */
#define NGX_HTTP_CHAT_JWT_KEY_MAX    1024   /* longest secret kept keyed */
#define NGX_HTTP_CHAT_JWT_CACHED_MAX 512    /* longest token kept verified */
#define NGX_HTTP_CHAT_JWT_CACHE_SIZE 64     /* tokens kept, per process */
#define NGX_HTTP_CHAT_USER_ID_MAX    64     /* longest "sub" accepted */
#define NGX_HTTP_CHAT_JWT_SECRET_MAX 4096   /* chat_jwt_secret_file */


typedef struct {
    ngx_str_t   sub;                        /* user id, in the pool */
    time_t      exp;
} ngx_http_chat_jwt_claims_t;


/*
 * Verifies a compact JWS: alg must be exactly HS256, the signature must
 * match (constant-time compare), exp must be present and not past, nbf,
 * when present, not in the future, both with the leeway in seconds.
 * Returns NGX_OK, or NGX_DECLINED with *detail saying why.
 */
ngx_int_t ngx_http_chat_jwt_verify(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *secret, time_t now, time_t leeway,
    ngx_http_chat_jwt_claims_t *claims, const char **detail);

/*
 * Finds the token: "Authorization: Bearer <token>", or, when allow_query
 * is set (WebSocket handshakes, where browsers cannot set headers), the
 * "token" argument.  NGX_DECLINED when there is none.
 */
ngx_int_t ngx_http_chat_jwt_from_request(ngx_http_request_t *r,
    ngx_uint_t allow_query, ngx_str_t *token, const char **detail);


/*
 * The request's user: the token found (allow_query as above) and
 * verified once per request, the result cached in the request's chat
 * context, so that $chat_user, evaluated by limit_req and limit_conn in
 * the preaccess phase, and the content handler after them, verify it
 * once.  NGX_OK with claims->sub set, or NGX_DECLINED with *detail.
 */
ngx_int_t ngx_http_chat_jwt_user(ngx_http_request_t *r,
    ngx_uint_t allow_query, ngx_http_chat_jwt_claims_t *claims,
    const char **detail);

/* $chat_user */
ngx_int_t ngx_http_chat_jwt_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_CHAT_JWT_H_INCLUDED_ */
