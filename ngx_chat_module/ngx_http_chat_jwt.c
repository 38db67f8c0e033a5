/*
 * ngx_http_chat_jwt.c - JWT (RFC 7519) bearer tokens, HS256.
 *
 * Why not Debian's libjwt (1.10): its decoder takes the algorithm from the
 * token's own header, so pinning HS256 and refusing "none" would be checks
 * around it anyway, and it would pull in a second JSON library.  The parts
 * that must not be hand-rolled are not: HMAC-SHA256 and the constant-time
 * comparison are OpenSSL's, base64url is nginx's, JSON is cJSON's.  What
 * is left here is framing: split on dots, check lengths, read claims.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <math.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_jwt.h"
#include "ngx_http_chat_api.h"


static ngx_int_t ngx_http_chat_jwt_b64(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_str_t *out);
static ngx_int_t ngx_http_chat_jwt_hmac(ngx_str_t *secret, u_char *data,
    size_t len, u_char *mac, unsigned int *mac_len);
static ngx_int_t ngx_http_chat_jwt_numeric_date(cJSON *v, time_t *t);
static ngx_int_t ngx_http_chat_jwt_printable(const u_char *p, size_t len);
static ngx_int_t ngx_http_chat_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_http_chat_user_var = ngx_string("chat_user");

/*
 * The HMAC keyed once per process: OpenSSL's one-shot HMAC() looks the
 * algorithms up, allocates a context and hashes the key's pads again at
 * every call, ~22,000 instructions of the ~35,000 a verification took on
 * the event loop (callgrind, bench/findings.md "Chat API at 1,000,000
 * messages").  Re-initialised without a key, the context starts again
 * from the pads it keeps.  Verifications run on the event loop only (the
 * API's and the WebSocket handshake's), one at a time: one context per
 * process; the key it holds is compared with the one asked for.
 */
static EVP_MAC_CTX  *ngx_http_chat_jwt_mac;
static u_char        ngx_http_chat_jwt_mac_key[NGX_HTTP_CHAT_JWT_KEY_MAX];
static size_t        ngx_http_chat_jwt_mac_key_len;

/*
 * The tokens this process verified last, with the claims read from them:
 * a client sends the same token with every request until it expires.
 * An entry is the whole token (compared in constant time) and holds for
 * the key the HMAC context has (all dropped when it is keyed again); its
 * exp and nbf are checked again at each use.  Only tokens that passed
 * are kept; one that fails is verified in full each time.  Direct-mapped
 * by a hash of the token: a collision replaces the entry.
 */
typedef struct {
    size_t   len;                       /* 0: empty */
    time_t   exp;
    time_t   nbf;                       /* 0 if the token has none */
    size_t   sub_len;
    u_char   sub[NGX_HTTP_CHAT_USER_ID_MAX];
    u_char   token[NGX_HTTP_CHAT_JWT_CACHED_MAX];
} ngx_http_chat_jwt_cached_t;

static ngx_http_chat_jwt_cached_t
    ngx_http_chat_jwt_cache[NGX_HTTP_CHAT_JWT_CACHE_SIZE];
static ngx_str_t  ngx_http_chat_ws_endpoint =
    ngx_string("/api/chat/ws/{group_id}");


ngx_int_t
ngx_http_chat_jwt_verify(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *secret, time_t now, time_t leeway,
    ngx_http_chat_jwt_claims_t *claims, const char **detail)
{
    u_char        *p, *dot1, *dot2, *last;
    u_char         mac[EVP_MAX_MD_SIZE];
    u_char         sig_b64[ngx_base64_encoded_length(EVP_MAX_MD_SIZE)];
    cJSON         *hdr, *payload, *v;
    time_t         t, nbf;
    ngx_str_t      header_json, payload_json, sig, sig_enc;
    uint32_t       hash;
    ngx_int_t      rc;
    unsigned int   mac_len;

    ngx_http_chat_jwt_cached_t  *cached;

    *detail = "invalid token";

    if (token->len == 0 || token->len > NGX_HTTP_CHAT_JWT_MAX) {
        *detail = "token is empty or too long";
        return NGX_DECLINED;
    }

    /* verified before with this key: its times checked again */

    cached = NULL;

    if (token->len <= NGX_HTTP_CHAT_JWT_CACHED_MAX
        && ngx_http_chat_jwt_mac_key_len == secret->len
        && ngx_http_chat_jwt_mac_key_len != 0
        && ngx_memcmp(ngx_http_chat_jwt_mac_key, secret->data, secret->len)
           == 0)
    {
        /* the slot: FNV-1a of the token's last bytes (its signature's) */

        hash = 2166136261u;
        for (p = token->data + token->len - ngx_min(token->len, 16);
             p < token->data + token->len;
             p++)
        {
            hash = (hash ^ *p) * 16777619u;
        }

        cached = &ngx_http_chat_jwt_cache[hash % NGX_HTTP_CHAT_JWT_CACHE_SIZE];

        if (cached->len == token->len
            && CRYPTO_memcmp(cached->token, token->data, token->len) == 0
            && now <= cached->exp + leeway
            && now + leeway >= cached->nbf)
        {
            claims->sub.data = ngx_pnalloc(pool, cached->sub_len + 1);
            if (claims->sub.data == NULL) {
                *detail = "out of memory";
                return NGX_DECLINED;
            }

            claims->sub.len = cached->sub_len;
            ngx_memcpy(claims->sub.data, cached->sub, cached->sub_len);
            claims->sub.data[cached->sub_len] = '\0';
            claims->exp = cached->exp;

            return NGX_OK;
        }
    }

    p = token->data;
    last = p + token->len;

    /* JWS uses unpadded base64url; nginx's decoder would stop at '=' and
     * ignore what follows, which would make signatures malleable */

    if (ngx_strlchr(p, last, '=') != NULL) {
        *detail = "token is not valid base64url";
        return NGX_DECLINED;
    }

    dot1 = ngx_strlchr(p, last, '.');
    dot2 = dot1 ? ngx_strlchr(dot1 + 1, last, '.') : NULL;

    if (dot1 == NULL || dot2 == NULL || ngx_strlchr(dot2 + 1, last, '.')) {
        *detail = "token is not a three-part JWS";
        return NGX_DECLINED;
    }

    if (ngx_http_chat_jwt_b64(pool, p, dot1 - p, &header_json) != NGX_OK) {
        *detail = "token is not valid base64url";
        return NGX_DECLINED;
    }

    /* the header: the algorithm is ours to choose, never the token's */

    hdr = cJSON_ParseWithLength((const char *) header_json.data,
                                header_json.len);
    if (hdr == NULL || !cJSON_IsObject(hdr)) {
        cJSON_Delete(hdr);
        *detail = "token header is not a JSON object";
        return NGX_DECLINED;
    }

    /* a name given twice means one thing here, another elsewhere */
    if (ngx_http_chat_json_duplicate_key(hdr)) {
        cJSON_Delete(hdr);
        *detail = "token header has a duplicate key";
        return NGX_DECLINED;
    }

    v = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
    rc = (cJSON_IsString(v) && ngx_strcmp(v->valuestring, "HS256") == 0)
         ? NGX_OK : NGX_DECLINED;

    if (rc == NGX_OK) {
        v = cJSON_GetObjectItemCaseSensitive(hdr, "crit");
        if (v != NULL) {
            rc = NGX_DECLINED;       /* no extension is understood here */
        }
    }

    cJSON_Delete(hdr);

    if (rc != NGX_OK) {
        *detail = "token algorithm is not HS256";
        return NGX_DECLINED;
    }

    if (ngx_http_chat_jwt_b64(pool, dot1 + 1, dot2 - dot1 - 1, &payload_json)
        != NGX_OK
        || ngx_http_chat_jwt_b64(pool, dot2 + 1, last - dot2 - 1, &sig)
           != NGX_OK)
    {
        *detail = "token is not valid base64url";
        return NGX_DECLINED;
    }

    /* the signature, before anything in the payload is believed */

    if (ngx_http_chat_jwt_hmac(secret, token->data, dot2 - token->data, mac,
                               &mac_len)
        != NGX_OK)
    {
        *detail = "token signature cannot be computed";
        return NGX_DECLINED;
    }

    if (sig.len != mac_len || CRYPTO_memcmp(sig.data, mac, mac_len) != 0) {
        *detail = "token signature is invalid";
        return NGX_DECLINED;
    }

    /*
     * The signature's encoding must be the one of the MAC: nginx's decoder
     * ignores the bits past the last byte in a final character (2 of the 6
     * bits of an HS256 signature's 43rd), so "...A" and "...B" would both
     * pass, and each a token of its own, a second entry of the cache.
     */

    sig_enc.data = sig_b64;
    ngx_encode_base64url(&sig_enc, &sig);

    if (sig_enc.len != (size_t) (last - dot2 - 1)
        || ngx_memcmp(sig_enc.data, dot2 + 1, sig_enc.len) != 0)
    {
        *detail = "token signature is invalid";
        return NGX_DECLINED;
    }

    /* cJSON would cut "eve\u0000admin" to "eve": refuse what it cuts */
    if (ngx_http_chat_json_nul_check(payload_json.data, payload_json.len)) {
        *detail = "token payload is not acceptable JSON";
        return NGX_DECLINED;
    }

    payload = cJSON_ParseWithLength((const char *) payload_json.data,
                                    payload_json.len);
    if (payload == NULL || !cJSON_IsObject(payload)) {
        cJSON_Delete(payload);
        *detail = "token payload is not a JSON object";
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    if (ngx_http_chat_json_duplicate_key(payload)) {
        *detail = "token payload has a duplicate claim";
        goto done;
    }

    v = cJSON_GetObjectItemCaseSensitive(payload, "exp");
    if (ngx_http_chat_jwt_numeric_date(v, &t) != NGX_OK) {
        *detail = "token has no valid \"exp\" claim";
        goto done;
    }

    if (now > t + leeway) {
        *detail = "token has expired";
        goto done;
    }

    claims->exp = t;

    nbf = 0;

    v = cJSON_GetObjectItemCaseSensitive(payload, "nbf");
    if (v != NULL) {
        if (ngx_http_chat_jwt_numeric_date(v, &t) != NGX_OK) {
            *detail = "token has an invalid \"nbf\" claim";
            goto done;
        }

        if (now + leeway < t) {
            *detail = "token is not valid yet";
            goto done;
        }

        nbf = t;
    }

    v = cJSON_GetObjectItemCaseSensitive(payload, "sub");
    if (!cJSON_IsString(v)) {
        *detail = "token has no \"sub\" claim";
        goto done;
    }

    claims->sub.len = ngx_strlen(v->valuestring);

    if (claims->sub.len == 0 || claims->sub.len > NGX_HTTP_CHAT_USER_ID_MAX
        || !ngx_http_chat_utf8_valid((u_char *) v->valuestring,
                                     claims->sub.len)
        || !ngx_http_chat_jwt_printable((u_char *) v->valuestring,
                                        claims->sub.len))
    {
        *detail = "token \"sub\" must be 1 to 64 bytes of printable UTF-8";
        goto done;
    }

    claims->sub.data = ngx_pnalloc(pool, claims->sub.len + 1);
    if (claims->sub.data == NULL) {
        *detail = "out of memory";
        goto done;
    }

    (void) ngx_cpystrn(claims->sub.data, (u_char *) v->valuestring,
                       claims->sub.len + 1);

    rc = NGX_OK;

    /* kept if the signature was checked with the keyed context's key */

    if (cached != NULL && ngx_http_chat_jwt_mac_key_len == secret->len) {
        cached->len = token->len;
        ngx_memcpy(cached->token, token->data, token->len);
        cached->exp = claims->exp;
        cached->nbf = nbf;
        cached->sub_len = claims->sub.len;
        ngx_memcpy(cached->sub, claims->sub.data, claims->sub.len);
    }

done:

    cJSON_Delete(payload);

    return rc;
}


ngx_int_t
ngx_http_chat_jwt_from_request(ngx_http_request_t *r, ngx_uint_t allow_query,
    ngx_str_t *token, const char **detail)
{
    ngx_str_t         *auth, arg;
    ngx_table_elt_t   *h;

    h = r->headers_in.authorization;

    if (h != NULL) {
        auth = &h->value;

        if (auth->len <= sizeof("Bearer ") - 1
            || ngx_strncasecmp(auth->data, (u_char *) "Bearer ",
                               sizeof("Bearer ") - 1) != 0)
        {
            *detail = "Authorization header must be \"Bearer <token>\"";
            return NGX_DECLINED;
        }

        token->data = auth->data + sizeof("Bearer ") - 1;
        token->len = auth->len - (sizeof("Bearer ") - 1);

        while (token->len && token->data[0] == ' ') {
            token->data++;
            token->len--;
        }

        return NGX_OK;
    }

    if (allow_query) {
        switch (ngx_http_chat_arg(r, "token", &arg)) {

        case NGX_BUSY:
            *detail = "query parameter \"token\" is given more than once";
            return NGX_DECLINED;

        case NGX_OK:
            if (arg.len) {
                *token = arg;
                return NGX_OK;
            }
            break;

        default:
            break;
        }
    }

    *detail = "missing bearer token";

    return NGX_DECLINED;
}


/*
 * The verification is cached in the main request's chat context: the
 * preaccess phase (limit_req, limit_conn evaluating $chat_user) runs
 * before the content handler, and both must see the same user for the
 * same token, verified once.  Only a result for the same token source
 * (header only, or header or ?token=) is reused.  The clock is read once
 * too: a token that expires between the two phases is judged as it was
 * in the first.
 */

ngx_int_t
ngx_http_chat_jwt_user(ngx_http_request_t *r, ngx_uint_t allow_query,
    ngx_http_chat_jwt_claims_t *claims, const char **detail)
{
    ngx_str_t                   token;
    ngx_int_t                   rc;
    ngx_http_chat_ctx_t        *ctx;
    ngx_http_chat_main_conf_t  *cmcf;

    r = r->main;

    ctx = ngx_http_chat_create_ctx(r);
    if (ctx == NULL) {
        *detail = "out of memory";
        return NGX_DECLINED;
    }

    if (ctx->user_checked && ctx->user_query == (allow_query ? 1 : 0)) {

        if (ctx->user.len == 0) {
            *detail = ctx->user_detail;
            return NGX_DECLINED;
        }

        claims->sub = ctx->user;
        claims->exp = 0;
        return NGX_OK;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    rc = ngx_http_chat_jwt_from_request(r, allow_query, &token, detail);

    if (rc == NGX_OK) {
        rc = ngx_http_chat_jwt_verify(r->pool, &token, &cmcf->jwt_secret,
                                      ngx_time(), cmcf->jwt_leeway, claims,
                                      detail);
    }

    ctx->user_checked = 1;
    ctx->user_query = allow_query ? 1 : 0;

    if (rc != NGX_OK) {
        ngx_str_null(&ctx->user);
        ctx->user_detail = *detail;
        return NGX_DECLINED;
    }

    ctx->user = claims->sub;

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_jwt_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_chat_user_var,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_chat_user_variable;

    return NGX_OK;
}


/*
 * $chat_user: the user id of a valid token, empty otherwise (no token,
 * a bad one, or no chat_api in this http block).  limit_req and
 * limit_conn skip an empty key, so unauthenticated requests are not
 * counted here: they end in a 401 without reaching the database.  The
 * token is looked for where the route's handler looks: the Authorization
 * header, and also ?token= on the WebSocket route.
 */

static ngx_int_t
ngx_http_chat_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                    endpoint, allow;
    ngx_uint_t                   allow_query;
    const char                  *detail;
    ngx_http_chat_jwt_claims_t   claims;
    ngx_http_chat_main_conf_t   *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    if (!cmcf->api_used) {
        v->not_found = 1;
        return NGX_OK;
    }

    allow_query = ngx_http_chat_api_route_names(r->main, &endpoint, &allow)
                      == NGX_OK
                  && endpoint.len == ngx_http_chat_ws_endpoint.len
                  && ngx_strncmp(endpoint.data, ngx_http_chat_ws_endpoint.data,
                                 endpoint.len) == 0;

    if (ngx_http_chat_jwt_user(r, allow_query, &claims, &detail) != NGX_OK) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = claims.sub.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = claims.sub.data;

    return NGX_OK;
}


/*
 * HMAC-SHA256 of data with the secret: the process's keyed context, or,
 * if it cannot be had (a key longer than kept, an allocation failure),
 * OpenSSL's one-shot HMAC()
 */

static ngx_int_t
ngx_http_chat_jwt_hmac(ngx_str_t *secret, u_char *data, size_t len,
    u_char *mac, unsigned int *mac_len)
{
    size_t       out;
    EVP_MAC     *alg;
    OSSL_PARAM   params[2];

    if (secret->len > NGX_HTTP_CHAT_JWT_KEY_MAX) {
        goto oneshot;
    }

    if (ngx_http_chat_jwt_mac != NULL
        && ngx_http_chat_jwt_mac_key_len == secret->len
        && ngx_memcmp(ngx_http_chat_jwt_mac_key, secret->data, secret->len)
           == 0)
    {
        /* the same key: from the pads the context kept */

        if (EVP_MAC_init(ngx_http_chat_jwt_mac, NULL, 0, NULL) != 1) {
            ngx_http_chat_jwt_mac_key_len = 0;
            goto oneshot;
        }

    } else {
        if (ngx_http_chat_jwt_mac == NULL) {
            alg = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
            if (alg == NULL) {
                goto oneshot;
            }

            ngx_http_chat_jwt_mac = EVP_MAC_CTX_new(alg);
            EVP_MAC_free(alg);         /* the context holds its own ref */

            if (ngx_http_chat_jwt_mac == NULL) {
                goto oneshot;
            }
        }

        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                     (char *) "SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();

        ngx_http_chat_jwt_mac_key_len = 0;
        ngx_memzero(ngx_http_chat_jwt_cache, sizeof(ngx_http_chat_jwt_cache));

        if (EVP_MAC_init(ngx_http_chat_jwt_mac, secret->data, secret->len,
                         params)
            != 1)
        {
            goto oneshot;
        }

        ngx_memcpy(ngx_http_chat_jwt_mac_key, secret->data, secret->len);
        ngx_http_chat_jwt_mac_key_len = secret->len;
    }

    if (EVP_MAC_update(ngx_http_chat_jwt_mac, data, len) != 1
        || EVP_MAC_final(ngx_http_chat_jwt_mac, mac, &out, EVP_MAX_MD_SIZE)
           != 1)
    {
        ngx_http_chat_jwt_mac_key_len = 0;    /* keyed again next time */
        goto oneshot;
    }

    *mac_len = (unsigned int) out;

    return NGX_OK;

oneshot:

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, data, len, mac,
             mac_len)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_jwt_b64(ngx_pool_t *pool, u_char *p, size_t len, ngx_str_t *out)
{
    ngx_str_t  src;

    if (len == 0) {
        return NGX_ERROR;
    }

    src.data = p;
    src.len = len;

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(out, &src) != NGX_OK) {
        return NGX_ERROR;
    }

    out->data[out->len] = '\0';

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_jwt_numeric_date(cJSON *v, time_t *t)
{
    double  d;

    if (!cJSON_IsNumber(v)) {
        return NGX_ERROR;
    }

    d = v->valuedouble;

    if (!isfinite(d) || d < 0 || d > 253402300799.0) {   /* year 9999 */
        return NGX_ERROR;
    }

    *t = (time_t) d;

    return NGX_OK;
}


/*
 * The user id ends up in log lines, the dashboard and the metrics record:
 * no control characters (a newline would forge log lines), no quote or
 * backslash (they delimit it in logs).
 */

static ngx_int_t
ngx_http_chat_jwt_printable(const u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '"' || p[i] == '\\') {
            return 0;
        }
    }

    return 1;
}
