/*
 * ngx_http_chat_bearer.h - chat_bearer_token_file: a credential for
 * machines (a Prometheus scraper, a poller of the dashboard's JSON) that
 * costs a SHA-256 to check instead of a bcrypt (ngx_http_chat_bearer.c).
 */

#ifndef _NGX_HTTP_CHAT_BEARER_H_INCLUDED_
#define _NGX_HTTP_CHAT_BEARER_H_INCLUDED_


#include "ngx_http_chat_module.h"


/* a token: 32 to 256 characters of RFC 6750's token68 set */
#define NGX_HTTP_CHAT_BEARER_MIN  32
#define NGX_HTTP_CHAT_BEARER_MAX  256


char *ngx_http_chat_bearer_token_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the access-phase handler, registered when a location uses the directive */
ngx_int_t ngx_http_chat_bearer_access_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CHAT_BEARER_H_INCLUDED_ */
