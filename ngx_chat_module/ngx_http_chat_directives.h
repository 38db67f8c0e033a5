/*
 * ngx_http_chat_directives.h - the directives whose values need more than
 * nginx's stock setters (ngx_http_chat_directives.c).
 */

#ifndef _NGX_HTTP_CHAT_DIRECTIVES_H_INCLUDED_
#define _NGX_HTTP_CHAT_DIRECTIVES_H_INCLUDED_


#include "ngx_http_chat_module.h"


char *ngx_http_chat_mongo_uri(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_chat_metrics_address(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_chat_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_chat_jwt_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_chat_cid_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_chat_ws_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_chat_ws_message_rate(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);

char *ngx_http_chat_cluster(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_chat_host_name(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * A secret or a certificate file read at load time
 * (ngx_http_chat_directives.c): how it takes the file's text
 */
#define NGX_HTTP_CHAT_FILE_WHOLE  0
#define NGX_HTTP_CHAT_FILE_LINE   1
#define NGX_HTTP_CHAT_FILE_TRIM   2

char *ngx_http_chat_conf_file(ngx_conf_t *cf, const char *who,
    ngx_str_t *file, size_t max, ngx_uint_t mode, ngx_str_t *out);

/* init_main_conf: chat_host_name's default, this nginx's instance id */
ngx_int_t ngx_http_chat_cluster_init_conf(ngx_conf_t *cf,
    ngx_http_chat_main_conf_t *cmcf);


#endif /* _NGX_HTTP_CHAT_DIRECTIVES_H_INCLUDED_ */
