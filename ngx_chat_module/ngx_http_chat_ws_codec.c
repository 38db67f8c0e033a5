/*
 * ngx_http_chat_ws_codec.c - RFC 6455 without I/O: frame headers parsed
 * (ngx_http_chat_ws_parse_frame), close payloads checked, frames encoded
 * once to be shared by every connection that sends them, the handshake's
 * accept key and Connection token.  Nothing here touches a connection, a
 * request or a pool, so the fuzzers link this file as it is (fuzz/).
 *
 * As nginx keeps its parsers apart from its I/O (ngx_http_parse.c; HTTP/3's
 * ngx_http_v3_parse.c and ngx_http_v3_encode.c).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include "ngx_http_chat_json.h"          /* ngx_http_chat_utf8_valid() */
#include "ngx_http_chat_ws_codec.h"


static ngx_str_t  ngx_http_chat_ws_guid =
    ngx_string("258EAFA5-E914-47DA-95CA-C5AB0DC85B11");


/* --- frames in ------------------------------------------------------------ */

ngx_int_t
ngx_http_chat_ws_parse_frame(const u_char *p, size_t len, size_t max_payload,
    ngx_http_chat_ws_frame_t *f)
{
    size_t     hlen;
    uint64_t   plen;
    ngx_uint_t l7, i;

    f->close_code = NGX_HTTP_CHAT_WS_PROTOCOL;

    if (len < 2) {
        return NGX_AGAIN;
    }

    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 0x0f;
    f->masked = p[1] >> 7;
    l7 = p[1] & 0x7f;

    if (f->rsv) {
        return NGX_ERROR;                        /* no extension agreed */
    }

    switch (f->opcode) {
    case NGX_HTTP_CHAT_WS_CONT:
    case NGX_HTTP_CHAT_WS_TEXT:
    case NGX_HTTP_CHAT_WS_BINARY:
    case NGX_HTTP_CHAT_WS_CLOSE:
    case NGX_HTTP_CHAT_WS_PING:
    case NGX_HTTP_CHAT_WS_PONG:
        break;
    default:
        return NGX_ERROR;                        /* reserved opcode */
    }

    if (!f->masked) {
        return NGX_ERROR;                        /* clients must mask */
    }

    if ((f->opcode & 0x8) && (!f->fin || l7 > 125)) {
        return NGX_ERROR;                        /* control frame rules */
    }

    hlen = 2;

    if (l7 == 126) {
        if (len < 4) {
            return NGX_AGAIN;
        }

        plen = ((uint64_t) p[2] << 8) | p[3];
        hlen = 4;

        if (plen < 126) {
            return NGX_ERROR;                    /* not the minimal form */
        }

    } else if (l7 == 127) {
        if (len < 10) {
            return NGX_AGAIN;
        }

        plen = 0;
        for (i = 0; i < 8; i++) {
            plen = (plen << 8) | p[2 + i];
        }

        hlen = 10;

        if (plen >> 63 || plen < 65536) {
            return NGX_ERROR;
        }

    } else {
        plen = l7;
    }

    if (plen > max_payload) {
        f->close_code = NGX_HTTP_CHAT_WS_TOO_BIG;
        return NGX_ERROR;
    }

    if (len < hlen + 4) {
        return NGX_AGAIN;
    }

    ngx_memcpy(f->mask, p + hlen, 4);

    f->payload_len = plen;
    f->header_len = hlen + 4;

    return NGX_OK;
}


/*
 * A close frame's payload: empty, or a valid code and a UTF-8 reason.
 * *code is the code to answer with: the peer's, or the error's.
 */

ngx_int_t
ngx_http_chat_ws_check_close_payload(const u_char *p, size_t len,
    ngx_uint_t *code)
{
    ngx_uint_t  c;

    *code = 0;

    if (len == 0) {
        return NGX_OK;
    }

    if (len == 1) {
        *code = NGX_HTTP_CHAT_WS_PROTOCOL;
        return NGX_ERROR;
    }

    c = ((ngx_uint_t) p[0] << 8) | p[1];

    if (!((c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014)
          || (c >= 3000 && c <= 4999)))
    {
        *code = NGX_HTTP_CHAT_WS_PROTOCOL;
        return NGX_ERROR;
    }

    if (!ngx_http_chat_utf8_valid(p + 2, len - 2)) {
        *code = NGX_HTTP_CHAT_WS_BAD_DATA;
        return NGX_ERROR;
    }

    *code = c;

    return NGX_OK;
}


/* --- frames out ----------------------------------------------------------- */

ngx_http_chat_frame_t *
ngx_http_chat_frame_create(ngx_uint_t opcode, const u_char *payload,
    size_t len)
{
    u_char                 *p;
    size_t                  hlen;
    ngx_http_chat_frame_t  *frame;

    hlen = (len < 126) ? 2 : (len < 65536) ? 4 : 10;

    frame = ngx_alloc(sizeof(ngx_http_chat_frame_t) + hlen + len,
                      ngx_cycle->log);
    if (frame == NULL) {
        return NULL;
    }

    frame->refs = 1;
    frame->len = hlen + len;

    p = frame->data;
    *p++ = (u_char) (0x80 | opcode);               /* FIN, never masked */

    if (len < 126) {
        *p++ = (u_char) len;

    } else if (len < 65536) {
        *p++ = 126;
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;

    } else {
        *p++ = 127;
        *p++ = 0; *p++ = 0; *p++ = 0; *p++ = 0;
        *p++ = (u_char) (len >> 24);
        *p++ = (u_char) (len >> 16);
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;
    }

    if (payload) {
        ngx_memcpy(p, payload, len);
    }

    return frame;
}


void
ngx_http_chat_frame_release(ngx_http_chat_frame_t *frame)
{
    if (--frame->refs == 0) {
        ngx_free(frame);
    }
}


/* --- the opening handshake ------------------------------------------------ */

ngx_int_t
ngx_http_chat_ws_accept_key(ngx_str_t *key, u_char *accept)
{
    u_char      raw[32], digest[20];
    ngx_str_t   src, dst;
    ngx_sha1_t  sha1;

    if (key->len != NGX_HTTP_CHAT_WS_KEY_LEN) {
        return NGX_ERROR;
    }

    dst.data = raw;

    if (ngx_decode_base64(&dst, key) != NGX_OK || dst.len != 16) {
        return NGX_ERROR;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key->data, key->len);
    ngx_sha1_update(&sha1, ngx_http_chat_ws_guid.data,
                    ngx_http_chat_ws_guid.len);
    ngx_sha1_final(digest, &sha1);

    src.data = digest;
    src.len = sizeof(digest);
    dst.data = accept;

    ngx_encode_base64(&dst, &src);

    return NGX_OK;
}



ngx_int_t
ngx_http_chat_ws_has_token(ngx_str_t *value, const char *token)
{
    u_char  *p, *last, *start;
    size_t   len;

    len = ngx_strlen(token);
    p = value->data;
    last = p + value->len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}

