/*
 * ngx_http_chat_api.h - the REST API: routing under /api/chat/ and the
 * handlers of each route.
 */

#ifndef _NGX_HTTP_CHAT_API_H_INCLUDED_
#define _NGX_HTTP_CHAT_API_H_INCLUDED_


#include "ngx_http_chat_module.h"


/* the content handler installed by "chat_api on" */
ngx_int_t ngx_http_chat_api_handler(ngx_http_request_t *r);

/* r->uri's route template and methods; NGX_DECLINED if it has no route */
ngx_int_t ngx_http_chat_api_route_names(ngx_http_request_t *r,
    ngx_str_t *endpoint, ngx_str_t *allow);


#endif /* _NGX_HTTP_CHAT_API_H_INCLUDED_ */
