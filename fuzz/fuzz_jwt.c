/*
 * fuzz_jwt.c - ngx_http_chat_jwt_verify(): framing, base64url, the header
 * (alg pinned to HS256, crit refused), HMAC-SHA256, and the claims.
 *
 * Input: byte 0 picks the mode and the leeway.
 *   mode 0  the rest is the token as a client sends it;
 *   mode 1  the rest is header JSON, a NUL byte, payload JSON: the harness
 *           encodes and signs them with the verifier's secret, so that the
 *           fuzzer reaches the claims as easily as the framing.
 *
 * Checked besides ASan/UBSan: a token is accepted only if its header,
 * decoded here independently, is a JSON object whose "alg" is exactly
 * "HS256" with no "crit", and its signature is the HMAC of the first two
 * parts (recomputed with OpenSSL); an accepted token has exp + leeway >=
 * now and nbf - leeway <= now, and its sub is 1 to 64 bytes of UTF-8,
 * NUL-terminated in the pool; a refused one has a detail.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cjson/cJSON.h>

#include "ngx_http_chat_jwt.h"
#include "ngx_http_chat_json.h"

#include "fuzz_common.h"
#include "ngx_shim.h"


#define NOW  1762691696

static u_char  secret_data[] = "fuzz-secret-0123456789abcdef0123";


static size_t
b64url_encode(u_char *dst, const u_char *src, size_t len)
{
    static const char  a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t    i, o = 0;
    uint32_t  v;

    for (i = 0; i + 2 < len; i += 3) {
        v = (src[i] << 16) | (src[i + 1] << 8) | src[i + 2];
        dst[o++] = a[v >> 18];
        dst[o++] = a[(v >> 12) & 63];
        dst[o++] = a[(v >> 6) & 63];
        dst[o++] = a[v & 63];
    }

    if (len - i == 1) {
        v = src[i] << 16;
        dst[o++] = a[v >> 18];
        dst[o++] = a[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = (src[i] << 16) | (src[i + 1] << 8);
        dst[o++] = a[v >> 18];
        dst[o++] = a[(v >> 12) & 63];
        dst[o++] = a[(v >> 6) & 63];
    }

    return o;
}


static int
b64url_value(u_char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}


/* RFC 4648 section 5 without padding; -1 if not base64url */
static long
b64url_decode(u_char *dst, const u_char *src, size_t len)
{
    size_t    i, o = 0;
    uint32_t  acc = 0;
    int       bits = 0, v;

    if (len % 4 == 1) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        v = b64url_value(src[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dst[o++] = (u_char) (acc >> bits);
        }
    }

    return o;
}


static void
check_accepted(ngx_str_t *token, ngx_http_chat_jwt_claims_t *claims,
    time_t leeway)
{
    u_char        *p, *dot1, *dot2, *hdr, mac[EVP_MAX_MD_SIZE], *sig;
    long           hlen, slen;
    unsigned int   mac_len;
    cJSON         *json, *alg;

    p = token->data;
    dot1 = memchr(p, '.', token->len);
    FUZZ_CHECK(dot1 != NULL);
    dot2 = memchr(dot1 + 1, '.', token->len - (dot1 + 1 - p));
    FUZZ_CHECK(dot2 != NULL);

    hdr = malloc(token->len);
    hlen = b64url_decode(hdr, p, dot1 - p);
    FUZZ_CHECK(hlen > 0);

    json = cJSON_ParseWithLength((const char *) hdr, hlen);
    FUZZ_CHECK(cJSON_IsObject(json));
    alg = cJSON_GetObjectItemCaseSensitive(json, "alg");
    FUZZ_CHECK(cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0);
    FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(json, "crit") == NULL);
    cJSON_Delete(json);
    free(hdr);

    FUZZ_CHECK(HMAC(EVP_sha256(), secret_data, sizeof(secret_data) - 1, p,
                    dot2 - p, mac, &mac_len) != NULL);

    sig = malloc(token->len);
    slen = b64url_decode(sig, dot2 + 1, token->data + token->len - dot2 - 1);
    FUZZ_CHECK(slen == (long) mac_len);
    FUZZ_CHECK(memcmp(sig, mac, mac_len) == 0);
    free(sig);

    FUZZ_CHECK(claims->exp + leeway >= NOW);
    FUZZ_CHECK(claims->sub.len >= 1 && claims->sub.len <= 64);
    FUZZ_CHECK(claims->sub.data[claims->sub.len] == '\0');
    FUZZ_CHECK(strlen((char *) claims->sub.data) == claims->sub.len);
    FUZZ_CHECK(ref_utf8_valid(claims->sub.data, claims->sub.len));
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                      *t, *nul, mac[EVP_MAX_MD_SIZE];
    size_t                       hlen, plen, n;
    time_t                       leeway;
    ngx_int_t                    rc;
    ngx_str_t                    token, secret;
    ngx_pool_t                  *pool;
    unsigned int                 mac_len;
    const char                  *detail;
    ngx_http_chat_jwt_claims_t   claims;

    if (size < 1) {
        return 0;
    }

    leeway = (data[0] >> 1) * 4;               /* 0 to 508 s */
    data++;
    size--;

    pool = ngx_create_pool(1024, shim_log_get());

    if ((data[-1] & 1) == 0) {
        token.len = size;
        token.data = ngx_pnalloc(pool, size ? size : 1);
        memcpy(token.data, data, size);

    } else {
        nul = memchr(data, '\0', size);
        hlen = nul ? (size_t) (nul - data) : size;
        plen = nul ? size - hlen - 1 : 0;

        t = malloc(2 * size + 64);
        n = b64url_encode(t, data, hlen);
        t[n++] = '.';
        n += b64url_encode(t + n, data + hlen + 1 - (nul ? 0 : 1), plen);

        HMAC(EVP_sha256(), secret_data, sizeof(secret_data) - 1, t, n, mac,
             &mac_len);
        t[n++] = '.';
        n += b64url_encode(t + n, mac, mac_len);

        token.len = n;
        token.data = ngx_pnalloc(pool, n);
        memcpy(token.data, t, n);
        free(t);
    }

    secret.data = secret_data;
    secret.len = sizeof(secret_data) - 1;

    memset(&claims, 0, sizeof(claims));
    detail = NULL;

    rc = ngx_http_chat_jwt_verify(pool, &token, &secret, NOW, leeway,
                                  &claims, &detail);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);
    FUZZ_CHECK(detail != NULL);

    if (rc == NGX_OK) {
        check_accepted(&token, &claims, leeway);
    }

    ngx_destroy_pool(pool);

    return 0;
}
