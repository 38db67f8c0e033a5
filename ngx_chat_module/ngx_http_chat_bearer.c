/*
 * ngx_http_chat_bearer.c - chat_bearer_token_file FILE (http, server,
 * location): a request whose "Authorization: Bearer <token>" carries the
 * token in FILE passes the access phase.
 *
 * Why: auth_basic with a bcrypt htpasswd costs ~1.5 ms of the worker's
 * event loop per request (crypt(3) runs there); right for a person who
 * opens the dashboard, whose page polls every 10 s, too much for a machine
 * that scrapes /metrics or polls the JSON several times a second under
 * load (bench/findings.md, F4).  A machine gets its own long random token
 * instead; checking it is one SHA-256 (~6 k instructions, the handler
 * whole; bcrypt: 8.4 M).  Meant with "satisfy any" next to auth_basic:
 * the token or the password, either admits.
 *
 *   - no Authorization header, or another scheme (Basic): declined, the
 *     next access handler (auth_basic) decides;
 *   - "Bearer" with the right token: NGX_OK;
 *   - "Bearer" with any other token: 401 (under "satisfy any" auth_basic
 *     still runs and answers 401 with its WWW-Authenticate), logged at info.
 *
 * Only the token's SHA-256 is kept; the presented token is hashed and the
 * two digests compared with CRYPTO_memcmp(), in constant time: how much of
 * a guess matches does not show in the time of an answer (its length
 * does, by SHA-256's 64-byte blocks, and it is no secret).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_directives.h"
#include "ngx_http_chat_bearer.h"


/*
 * SHA-256, fetched once (by the master, at configuration; the workers
 * inherit it): OpenSSL 3's one-shot SHA256() looks the algorithm up by
 * name on every call, two thirds of the check's instructions.  Kept for
 * the process's life, across reloads.
 */
static EVP_MD  *ngx_http_chat_bearer_md;


/* RFC 6750's b64token (token68): ALPHA DIGIT - . _ ~ + / and trailing = */
static ngx_int_t
ngx_http_chat_bearer_valid(ngx_str_t *t)
{
    u_char      c;
    ngx_uint_t  i, pad;

    pad = 0;

    for (i = 0; i < t->len; i++) {
        c = t->data[i];

        if (c == '=') {
            pad = 1;
            continue;
        }

        if (pad) {
            return 0;
        }

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
              || c == '~' || c == '+' || c == '/'))
        {
            return 0;
        }
    }

    return 1;
}


char *
ngx_http_chat_bearer_token_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_chat_loc_conf_t *clcf = conf;

    char                       *rv;
    ngx_str_t                  *value, token;
    ngx_http_chat_main_conf_t  *cmcf;

    if (clcf->bearer_sha256 != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        clcf->bearer_sha256 = NULL;
        return NGX_CONF_OK;
    }

    rv = ngx_http_chat_conf_file(cf, "chat_bearer_token_file", &value[1],
                                 NGX_HTTP_CHAT_BEARER_MAX + 2,
                                 NGX_HTTP_CHAT_FILE_LINE, &token);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (token.len < NGX_HTTP_CHAT_BEARER_MIN
        || token.len > NGX_HTTP_CHAT_BEARER_MAX
        || !ngx_http_chat_bearer_valid(&token))
    {
        ngx_explicit_memzero(token.data, token.len);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_bearer_token_file \"%V\": the token must "
                           "be %d to %d characters of A-Z a-z 0-9 - . _ ~ "
                           "+ / (and = at the end), on the first line",
                           &value[1], NGX_HTTP_CHAT_BEARER_MIN,
                           NGX_HTTP_CHAT_BEARER_MAX);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_chat_bearer_md == NULL) {
        ngx_http_chat_bearer_md = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (ngx_http_chat_bearer_md == NULL) {
            ngx_explicit_memzero(token.data, token.len);
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "chat_bearer_token_file: OpenSSL has no "
                               "SHA-256");
            return NGX_CONF_ERROR;
        }
    }

    clcf->bearer_sha256 = ngx_palloc(cf->pool, SHA256_DIGEST_LENGTH);
    if (clcf->bearer_sha256 == NULL
        || EVP_Digest(token.data, token.len, clcf->bearer_sha256, NULL,
                      ngx_http_chat_bearer_md, NULL)
           != 1)
    {
        ngx_explicit_memzero(token.data, token.len);
        return NGX_CONF_ERROR;
    }

    /* the token itself is not kept */
    ngx_explicit_memzero(token.data, token.len);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chat_module);
    cmcf->bearer_used = 1;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_chat_bearer_access_handler(ngx_http_request_t *r)
{
    u_char                     digest[SHA256_DIGEST_LENGTH];
    u_char                    *p, *last;
    ngx_table_elt_t           *h;
    ngx_http_chat_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (clcf->bearer_sha256 == NULL) {
        return NGX_DECLINED;
    }

    h = r->headers_in.authorization;

    if (h == NULL
        || h->value.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    p = h->value.data + sizeof("Bearer ") - 1;
    last = h->value.data + h->value.len;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && last[-1] == ' ') {
        last--;
    }

    if (last - p > 0 && last - p <= NGX_HTTP_CHAT_BEARER_MAX) {

        if (EVP_Digest(p, last - p, digest, NULL, ngx_http_chat_bearer_md,
                       NULL)
            != 1)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "chat: SHA-256 of a bearer token failed");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (CRYPTO_memcmp(digest, clcf->bearer_sha256, SHA256_DIGEST_LENGTH)
            == 0)
        {
            return NGX_OK;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "chat: the bearer token does not match "
                  "chat_bearer_token_file");

    return NGX_HTTP_UNAUTHORIZED;
}
