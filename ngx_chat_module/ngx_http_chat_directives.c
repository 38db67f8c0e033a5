/*
 * ngx_http_chat_directives.c - the directives whose values need checking
 * beyond nginx's stock setters: the database URI, the metrics address,
 * chat_api, the JWT secret file, the correlation header, the WebSocket
 * origins and message rate, the cluster (chat_cluster, chat_host_name).  Each fails "nginx -t" with a message that
 * says what is wrong, at the directive's line.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <mongoc/mongoc.h>
#include <nng/nng.h>
#include <openssl/rand.h>

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

    return ngx_http_chat_conf_file(cf, "chat_jwt_secret_file", &value[1],
                                   NGX_HTTP_CHAT_JWT_SECRET_MAX,
                                   NGX_HTTP_CHAT_FILE_TRIM,
                                   &cmcf->jwt_secret);
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


#define NGX_HTTP_CHAT_CLUSTER_SECRET_MAX  4096           /* a password */
#define NGX_HTTP_CHAT_CLUSTER_CA_MAX      (1024 * 1024)  /* a PEM bundle */


static char *ngx_http_chat_cluster_url(ngx_conf_t *cf, ngx_str_t *url,
    char **out);


/*
 * chat_cluster URL... [user=NAME] [password_file=FILE] [token_file=FILE]
 * [ca=FILE]: the NATS servers (nats:// or tls://), the credentials read
 * here, at configuration time (a worker reads no file).
 */

char *
ngx_http_chat_cluster(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    char        **u;
    ngx_str_t    *value, v, password_file;
    ngx_uint_t    i;

    if (cmcf->cluster_urls) {
        return "is duplicate";
    }

    cmcf->cluster_urls = ngx_array_create(cf->pool, 4, sizeof(char *));
    if (cmcf->cluster_urls == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    ngx_str_null(&password_file);

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            v.data = value[i].data + 5;
            v.len = value[i].len - 5;

            if (v.len == 0 || cmcf->cluster_user.len) {
                goto invalid;
            }

            /* nats.c wants C strings */
            cmcf->cluster_user.data = ngx_pnalloc(cf->pool, v.len + 1);
            if (cmcf->cluster_user.data == NULL) {
                return NGX_CONF_ERROR;
            }

            (void) ngx_cpystrn(cmcf->cluster_user.data, v.data, v.len + 1);
            cmcf->cluster_user.len = v.len;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            v.data = value[i].data + 14;
            v.len = value[i].len - 14;

            if (v.len == 0 || cmcf->cluster_password.len) {
                goto invalid;
            }

            if (ngx_http_chat_conf_file(cf, "chat_cluster: password_file",
                                        &v, NGX_HTTP_CHAT_CLUSTER_SECRET_MAX,
                                        NGX_HTTP_CHAT_FILE_LINE,
                                        &cmcf->cluster_password)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            password_file = value[i];
            continue;
        }

        if (ngx_strncmp(value[i].data, "token_file=", 11) == 0) {
            v.data = value[i].data + 11;
            v.len = value[i].len - 11;

            if (v.len == 0 || cmcf->cluster_token.len) {
                goto invalid;
            }

            if (ngx_http_chat_conf_file(cf, "chat_cluster: token_file",
                                        &v, NGX_HTTP_CHAT_CLUSTER_SECRET_MAX,
                                        NGX_HTTP_CHAT_FILE_LINE,
                                        &cmcf->cluster_token)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ca=", 3) == 0) {
            v.data = value[i].data + 3;
            v.len = value[i].len - 3;

            if (v.len == 0 || cmcf->cluster_ca.len) {
                goto invalid;
            }

            if (ngx_http_chat_conf_file(cf, "chat_cluster: ca", &v,
                                        NGX_HTTP_CHAT_CLUSTER_CA_MAX,
                                        NGX_HTTP_CHAT_FILE_WHOLE,
                                        &cmcf->cluster_ca)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (ngx_strstr(cmcf->cluster_ca.data, "-----BEGIN CERTIFICATE")
                == NULL)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "chat_cluster: \"%V\" holds no PEM "
                                   "certificate", &v);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        u = ngx_array_push(cmcf->cluster_urls);
        if (u == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_chat_cluster_url(cf, &value[i], u) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (cmcf->cluster_urls->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_cluster needs at least one server URL, "
                           "\"nats://host:port\" or \"tls://host:port\"");
        return NGX_CONF_ERROR;
    }

    if (cmcf->cluster_password.len && cmcf->cluster_user.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_cluster: \"%V\" needs \"user=\"",
                           &password_file);
        return NGX_CONF_ERROR;
    }

    if (cmcf->cluster_user.len && cmcf->cluster_password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_cluster: \"user=\" needs "
                           "\"password_file=\"");
        return NGX_CONF_ERROR;
    }

    if (cmcf->cluster_token.len && cmcf->cluster_user.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_cluster: \"token_file=\" and \"user=\" "
                           "exclude each other");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "chat_cluster: \"%V\" is empty or repeated",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* nats://host:port or tls://host:port, with user:password@ refused (the
 * password would sit in the configuration: password_file= is for it) */

static char *
ngx_http_chat_cluster_url(ngx_conf_t *cf, ngx_str_t *url, char **out)
{
    u_char     *host, *last, *colon;
    ngx_int_t   port;

    if (url->len > 7 && ngx_strncmp(url->data, "nats://", 7) == 0) {
        host = url->data + 7;

    } else if (url->len > 6 && ngx_strncmp(url->data, "tls://", 6) == 0) {
        host = url->data + 6;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid chat_cluster URL \"%V\": expected "
                           "\"nats://host:port\" or \"tls://host:port\"",
                           url);
        return NGX_CONF_ERROR;
    }

    last = url->data + url->len;

    if (ngx_strlchr(host, last, '@') || ngx_strlchr(host, last, '/')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid chat_cluster URL \"%V\": no credentials "
                           "or path in the URL (user= and password_file= "
                           "are for them)", url);
        return NGX_CONF_ERROR;
    }

    colon = NULL;

    for (colon = last - 1; colon > host && *colon != ':'; colon--) {
        /* void */
    }

    if (colon == host || *colon != ':') {
        port = 4222;

        if (last == host) {
            goto invalid;
        }

    } else {
        port = ngx_atoi(colon + 1, last - colon - 1);

        if (port < 1 || port > 65535) {
            goto invalid;
        }
    }

    (void) port;

    *out = ngx_pnalloc(cf->pool, url->len + 1);
    if (*out == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn((u_char *) *out, url->data, url->len + 1);

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid chat_cluster URL \"%V\": expected a host "
                       "and a port from 1 to 65535", url);
    return NGX_CONF_ERROR;
}


/*
 * A secret or a certificate named in the configuration, read at load time
 * (who names it in errors: "chat_jwt_secret_file", "chat_cluster:
 * token_file"): its text as a C string of at most max bytes, not empty.
 * NGX_HTTP_CHAT_FILE_LINE: its first line, trailing blanks cut;
 * NGX_HTTP_CHAT_FILE_TRIM: trailing line ends cut; else as it is.
 */

char *
ngx_http_chat_conf_file(ngx_conf_t *cf, const char *who, ngx_str_t *file,
    size_t max, ngx_uint_t mode, ngx_str_t *out)
{
    u_char           *p, *last;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t         name;
    ngx_file_info_t   fi;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s \"%V\" cannot be opened", who, &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > (off_t) max)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s \"%V\" is unreadable or larger than %uz "
                           "bytes", who, &name, max);
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, max + 1);
    if (p == NULL) {
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, p, max);
    (void) ngx_close_file(fd);

    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s \"%V\" cannot be read", who, &name);
        return NGX_CONF_ERROR;
    }

    last = p + n;

    if (mode == NGX_HTTP_CHAT_FILE_LINE) {
        last = ngx_strlchr(p, last, '\n');
        if (last == NULL) {
            last = p + n;
        }

        while (last > p && (last[-1] == '\r' || last[-1] == ' ')) {
            last--;
        }

    } else if (mode == NGX_HTTP_CHAT_FILE_TRIM) {
        while (last > p && (last[-1] == '\n' || last[-1] == '\r')) {
            last--;
        }
    }

    if (last == p) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s \"%V\" is empty", who, &name);
        return NGX_CONF_ERROR;
    }

    *last = '\0';

    out->data = p;
    out->len = last - p;

    return NGX_CONF_OK;
}


/* chat_host_name NAME: how this host is shown (dashboard, NATS, logs) */

char *
ngx_http_chat_host_name(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chat_main_conf_t *cmcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (cmcf->host_name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_HTTP_CHAT_HOST_NAME_MAX) {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!(ngx_http_chat_isalnum(value[1].data[i])
              || value[1].data[i] == '-' || value[1].data[i] == '_'
              || value[1].data[i] == '.'))
        {
            goto invalid;
        }
    }

    cmcf->host_name = value[1];

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid chat_host_name \"%V\": expected 1 to %d "
                       "letters, digits, \".\", \"-\" or \"_\"",
                       &value[1], NGX_HTTP_CHAT_HOST_NAME_MAX);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_http_chat_cluster_init_conf(ngx_conf_t *cf,
    ngx_http_chat_main_conf_t *cmcf)
{
    char  name[256];

    if (cmcf->host_name.data == NULL) {
        if (gethostname(name, sizeof(name) - 1) == -1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "gethostname() failed: set chat_host_name");
            return NGX_ERROR;
        }

        name[sizeof(name) - 1] = '\0';

        cmcf->host_name.len = ngx_min(ngx_strlen(name),
                                      NGX_HTTP_CHAT_HOST_NAME_MAX);
        cmcf->host_name.data = ngx_pnalloc(cf->pool, cmcf->host_name.len);
        if (cmcf->host_name.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(cmcf->host_name.data, name, cmcf->host_name.len);
    }

    /* tells this nginx's events apart from the other hosts' in the
     * cluster; new at each configuration load */

    if (RAND_bytes((u_char *) &cmcf->cluster_instance,
                   sizeof(cmcf->cluster_instance)) != 1)
    {
        cmcf->cluster_instance = ((uint64_t) ngx_random() << 32)
                                 ^ (uint64_t) ngx_time() ^ (uint64_t) ngx_pid;
    }

    return NGX_OK;
}
