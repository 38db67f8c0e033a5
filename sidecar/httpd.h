/*
 * httpd.h - the sidecar's small HTTP/1.1 server (loopback TCP).
 *
 * Why not nng's HTTP server: nng 1.5 closes the connection, with no
 * response, on any header byte below 0x20 or above 0x7e, so a tab or a
 * UTF-8 user agent ("café") made nginx answer 502.  Why not Debian's
 * libmicrohttpd (0.9.75), checked before writing this one: it takes a NUL
 * byte, a bare CR, obsolete line folding and a space in a field name as
 * if they were nothing (even with MHD_OPTION_STRICT_FOR_CLIENT = 1), which
 * RFC 9112 tells a server to refuse, and it closes a malformed request
 * line without an answer.  This parser is small, unit-tested
 * (tests/test_httpd.c) and fuzzed (fuzz/fuzz_http_head.c).  This one accepts
 * what RFC 9110 allows in a field value (HTAB, SP, VCHAR, obs-text; other
 * control bytes are kept too, as nginx keeps them) and answers anything it
 * cannot take with a status and a one-line reason: 400 (NUL, a bare CR,
 * line folding, a bad name or request line), 431 (head over
 * HTTPD_HEAD_MAX or HTTPD_MAX_HEADERS lines), 505, 413, 503 (too many
 * connections), 408 (a head not finished within HTTPD_TIMEOUT_S).
 *
 * One thread accepts; each connection has a thread of its own (at most
 * HTTPD_MAX_CONNS), keep-alive for HTTP/1.1, closed after HTTPD_IDLE_S
 * without a request or HTTPD_TIMEOUT_S into an unfinished head.  The
 * handler runs on the connection's thread and must be thread safe.
 */

#ifndef SIDECAR_HTTPD_H
#define SIDECAR_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#define HTTPD_HEAD_MAX     16384
#define HTTPD_MAX_HEADERS  100
#define HTTPD_MAX_CONNS    64
#define HTTPD_MAX_BODY     65536        /* a GET's body is read and ignored */
#define HTTPD_TIMEOUT_S    10       /* to send a head, from its first byte */
#define HTTPD_IDLE_S       75       /* keep-alive between requests: above
                                       nginx's keepalive_timeout (60 s), so
                                       nginx closes first */

typedef struct {
    const char  *method;
    const char  *path;          /* the target up to '?' (origin form) */
    const char  *key;           /* X-Sidecar-Key, or NULL */
    const char  *bearer;        /* Authorization: Bearer TOKEN, or NULL */
    int          minor;         /* HTTP/1.minor */
    int          close;         /* the client asked for Connection: close */
    int          keep_alive;    /* ... or (1.0) for keep-alive */
    int64_t      content_length;    /* -1: none */
    int          chunked;
} httpd_req_t;

typedef struct {
    int          status;
    const char  *ctype;
    char        *body;          /* malloc()ed; the server frees it */
    size_t       len;
    const char  *headers;       /* extra "Name: value\r\n" lines, static */
} httpd_res_t;

typedef void (*httpd_handler_pt)(void *data, const httpd_req_t *req,
    httpd_res_t *res);

typedef struct httpd_s  httpd_t;

/* host is a loopback address literal ("127.0.0.1", "::1"); port 0 picks a
   free port, stored in *bound.  -1 with a message in err. */
int httpd_start(httpd_t **out, const char *host, int port,
    httpd_handler_pt handler, void *data, int *bound, char *err,
    size_t errlen);

/* stops accepting, ends every connection and waits for their threads */
void httpd_stop(httpd_t *h);

/*
 * Parses a request head in place: buf holds len bytes ending with the
 * empty line.  Returns 0, or the status to answer with *reason set
 * (a static string, or one written into buf).
 */
int httpd_parse(char *buf, size_t len, httpd_req_t *req,
    const char **reason);

#endif /* SIDECAR_HTTPD_H */
