/*
 * ngx_http_chat_ws_codec.h - RFC 6455 without I/O: frame parsing and
 * encoding, close payloads, the handshake's accept key and tokens.
 */

#ifndef _NGX_HTTP_CHAT_WS_CODEC_H_INCLUDED_
#define _NGX_HTTP_CHAT_WS_CODEC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* opcodes */
#define NGX_HTTP_CHAT_WS_CONT        0x0
#define NGX_HTTP_CHAT_WS_TEXT        0x1
#define NGX_HTTP_CHAT_WS_BINARY      0x2
#define NGX_HTTP_CHAT_WS_CLOSE       0x8
#define NGX_HTTP_CHAT_WS_PING        0x9
#define NGX_HTTP_CHAT_WS_PONG        0xa

/* close codes */
#define NGX_HTTP_CHAT_WS_NORMAL      1000
#define NGX_HTTP_CHAT_WS_GOING_AWAY  1001
#define NGX_HTTP_CHAT_WS_PROTOCOL    1002
#define NGX_HTTP_CHAT_WS_BAD_DATA    1007
#define NGX_HTTP_CHAT_WS_POLICY      1008
#define NGX_HTTP_CHAT_WS_TOO_BIG     1009

/* Sec-WebSocket-Key: 16 random bytes in base64 */
#define NGX_HTTP_CHAT_WS_KEY_LEN     24

/* Sec-WebSocket-Accept: base64 of a SHA-1 digest */
#define NGX_HTTP_CHAT_WS_ACCEPT_LEN  28


/* a frame encoded once and shared by every connection that sends it */
typedef struct {
    ngx_uint_t                 refs;
    size_t                     len;
    u_char                     data[1];
} ngx_http_chat_frame_t;


/* a parsed frame header */
typedef struct {
    ngx_uint_t                 fin;
    ngx_uint_t                 rsv;
    ngx_uint_t                 opcode;
    ngx_uint_t                 masked;
    uint64_t                   payload_len;
    u_char                     mask[4];
    size_t                     header_len;
    ngx_uint_t                 close_code;      /* set on NGX_ERROR */
} ngx_http_chat_ws_frame_t;


/*
 * A client frame's header at p: NGX_OK (f filled in), NGX_AGAIN (more
 * bytes needed), NGX_ERROR (f->close_code says why: 1002, or 1009 for a
 * payload over max_payload).
 */
ngx_int_t ngx_http_chat_ws_parse_frame(const u_char *p, size_t len,
    size_t max_payload, ngx_http_chat_ws_frame_t *f);

/* a close frame's payload: empty, or a valid code and UTF-8 reason */
ngx_int_t ngx_http_chat_ws_check_close_payload(const u_char *p, size_t len,
    ngx_uint_t *code);

/* a server frame (FIN, unmasked) with one reference; payload may be NULL
 * (the caller writes the last len bytes of frame->data) */
ngx_http_chat_frame_t *ngx_http_chat_frame_create(ngx_uint_t opcode,
    const u_char *payload, size_t len);
void ngx_http_chat_frame_release(ngx_http_chat_frame_t *frame);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (16 bytes in base64) */
ngx_int_t ngx_http_chat_ws_accept_key(ngx_str_t *key, u_char *accept);

/* 1 if the comma-separated list value holds token (any case) */
ngx_int_t ngx_http_chat_ws_has_token(ngx_str_t *value, const char *token);


#endif /* _NGX_HTTP_CHAT_WS_CODEC_H_INCLUDED_ */
