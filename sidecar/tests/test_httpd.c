/*
 * test_httpd.c - the request head parser of the sidecar's HTTP server:
 * what RFC 9110 allows in a field value is taken, what it forbids gets a
 * status and a reason, never a silent close.
 */

#include <string.h>

#include "sidecar/httpd.h"
#include "unit.h"


/* parses a copy of the head (the parser writes into it) */
static int
parse(const char *head, httpd_req_t *req, const char **why)
{
    static char  buf[HTTPD_HEAD_MAX + 1];
    size_t       len = strlen(head);

    memcpy(buf, head, len + 1);
    return httpd_parse(buf, len, req, why);
}


static void
httpd_takes_tab_obs_text_and_control_bytes_in_values(void)
{
    httpd_req_t   req;
    const char   *why;

    CHECK(parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n"
                "User-Agent: caf\xc3\xa9\r\nX-A: a\tb\r\nX-B: \x1b\x01\xff\r\n"
                "X-Sidecar-Key:   k1  \r\n\r\n", &req, &why) == 0);
    CHECK(strcmp(req.method, "GET") == 0);
    CHECK(strcmp(req.path, "/metrics") == 0);
    CHECK(req.minor == 1 && !req.close && req.content_length == -1);
    CHECK(req.key != NULL && strcmp(req.key, "k1") == 0);

    /* LF only, leading empty lines, absolute form, HTTP/1.0 keep-alive */
    CHECK(parse("\r\n\nGET http://h:1/health HTTP/1.0\nConnection: "
                "Keep-Alive\n\n", &req, &why) == 0);
    CHECK(strcmp(req.path, "/health") == 0 && req.minor == 0);
    CHECK(req.keep_alive && !req.close);

    CHECK(parse("HEAD / HTTP/1.1\r\nConnection: upgrade, close\r\n"
                "Authorization: Bearer t0k\r\nContent-Length: 5\r\n\r\n",
                &req, &why) == 0);
    CHECK(req.close && req.content_length == 5);
    CHECK(req.bearer != NULL && strcmp(req.bearer, "t0k") == 0);
}


static void
httpd_refuses_with_a_status_and_a_reason(void)
{
    httpd_req_t   req;
    char          nul[] = "GET / HTTP/1.1\r\nX-A: a?b\r\n\r\n";
    char          big[HTTPD_HEAD_MAX];
    const char   *why;
    size_t        i, n;

    /* a NUL inside a value (the string helper stops at NUL: by hand) */
    *strchr(nul, '?') = '\0';
    CHECK(httpd_parse(nul, sizeof(nul) - 1, &req, &why) == 400);
    CHECK(strstr(why, "header line 1: a NUL byte") != NULL);

    CHECK(parse("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", &req, &why) == 400);
    CHECK(strstr(why, "CR not followed by LF") != NULL);
    CHECK(parse("GET / HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n", &req, &why)
          == 400);
    CHECK(strstr(why, "obsolete line folding") != NULL);
    CHECK(parse("GET / HTTP/1.1\r\nX A: b\r\n\r\n", &req, &why) == 400);
    CHECK(strstr(why, "field name") != NULL);
    CHECK(parse("GET / HTTP/1.1\r\nX-A : b\r\n\r\n", &req, &why) == 400);
    CHECK(parse("GET / HTTP/1.1\r\nno colon\r\n\r\n", &req, &why) == 400);
    CHECK(parse("GET / HTTP/2.0\r\n\r\n", &req, &why) == 505);
    CHECK(parse("GET / HTTP/1.1x\r\n\r\n", &req, &why) == 400);
    CHECK(parse("GET /a b HTTP/1.1\r\n\r\n", &req, &why) == 400);
    CHECK(parse("GET a HTTP/1.1\r\n\r\n", &req, &why) == 400);
    CHECK(parse("G(T / HTTP/1.1\r\n\r\n", &req, &why) == 400);
    CHECK(parse("GET /\x01 HTTP/1.1\r\n\r\n", &req, &why) == 400);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", &req, &why)
          == 400);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 1\r\n"
                "Content-Length: 2\r\n\r\n", &req, &why) == 400);
    CHECK(strstr(why, "two different Content-Length") != NULL);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999"
                "\r\n\r\n", &req, &why) == 400);
    CHECK(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                "Content-Length: 2\r\n\r\n", &req, &why) == 400);

    /* more than 100 header lines */
    n = (size_t) snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    for (i = 0; i < HTTPD_MAX_HEADERS + 1; i++) {
        n += (size_t) snprintf(big + n, sizeof(big) - n, "X-%zu: v\r\n", i);
    }
    n += (size_t) snprintf(big + n, sizeof(big) - n, "\r\n");
    CHECK(httpd_parse(big, n, &req, &why) == 431);
}


void
suite_httpd(void)
{
    RUN(httpd_takes_tab_obs_text_and_control_bytes_in_values);
    RUN(httpd_refuses_with_a_status_and_a_reason);
}
