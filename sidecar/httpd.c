/*
 * httpd.c - the sidecar's HTTP/1.1 server.  See httpd.h.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"
#include "log.h"


struct httpd_s {
    int                 fd;             /* listening socket */
    int                 wake[2];        /* stop: a byte on wake[1] */
    pthread_t           acceptor;
    httpd_handler_pt    handler;
    void               *data;

    pthread_mutex_t     lock;
    pthread_cond_t      done;           /* a connection thread ended */
    int                 conns[HTTPD_MAX_CONNS];     /* fds, -1: free */
    int                 active;
    int                 stopping;
    unsigned long       refused;        /* over HTTPD_MAX_CONNS */
};


typedef struct {
    httpd_t  *h;
    int       slot;
    int       fd;
} httpd_conn_t;


static _Thread_local char  httpd_reason[160];


/* RFC 9110 tchar */
static int
httpd_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z')
           || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}


static const char *
httpd_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}


static int
httpd_bad(int status, const char *fmt, unsigned n)
{
    snprintf(httpd_reason, sizeof(httpd_reason), fmt, n);
    return status;
}


/* the request line: METHOD SP target SP HTTP/1.x */
static int
httpd_request_line(char *line, httpd_req_t *req, const char **reason)
{
    char  *sp1, *sp2, *t, *q;
    int    major, minor;

    sp1 = strchr(line, ' ');
    if (sp1 == NULL || sp1 == line || sp1 - line > 32) {
        *reason = "bad request line: expected METHOD TARGET HTTP/1.x";
        return 400;
    }
    for (t = line; t < sp1; t++) {
        if (!httpd_tchar((unsigned char) *t)) {
            *reason = "bad request line: invalid method";
            return 400;
        }
    }
    *sp1 = '\0';

    t = sp1 + 1;
    sp2 = strchr(t, ' ');
    if (sp2 == NULL || sp2 == t) {
        *reason = "bad request line: expected METHOD TARGET HTTP/1.x";
        return 400;
    }
    *sp2 = '\0';

    for (q = t; *q; q++) {
        if ((unsigned char) *q <= 0x20 || *q == 0x7f) {
            *reason = "bad request line: a control byte in the target";
            return 400;
        }
    }

    /* absolute form: keep the path */
    if (strncasecmp(t, "http://", 7) == 0) {
        q = strchr(t + 7, '/');
        t = q ? q : (char *) "/";
    }
    if (t[0] != '/' && strcmp(t, "*") != 0) {
        *reason = "bad request line: the target must start with /";
        return 400;
    }
    q = strchr(t, '?');
    if (q != NULL) {
        *q = '\0';
    }

    if (strncmp(sp2 + 1, "HTTP/", 5) != 0
        || sscanf(sp2 + 6, "%1d.%1d", &major, &minor) != 2
        || strlen(sp2 + 1) != 8)
    {
        *reason = "bad request line: expected HTTP/1.0 or HTTP/1.1";
        return 400;
    }
    if (major != 1) {
        *reason = "only HTTP/1.0 and HTTP/1.1 are served";
        return 505;
    }

    req->method = line;
    req->path = t;
    req->minor = minor;
    return 0;
}


/* a comma-separated list contains the token (case-insensitive) */
static int
httpd_has_token(const char *list, const char *tok)
{
    size_t       n = strlen(tok);
    const char  *p = list;

    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (strncasecmp(p, tok, n) == 0
            && (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
        {
            return 1;
        }
        while (*p && *p != ',') {
            p++;
        }
    }
    return 0;
}


static int
httpd_header(char *name, char *value, httpd_req_t *req, unsigned line)
{
    int64_t  n;
    char    *p;

    if (strcasecmp(name, "Content-Length") == 0) {
        if (*value == '\0') {
            return httpd_bad(400, "header line %u: empty Content-Length",
                             line);
        }
        n = 0;
        for (p = value; *p; p++) {
            if (*p < '0' || *p > '9' || n > (INT64_MAX - 9) / 10) {
                return httpd_bad(400, "header line %u: invalid "
                                 "Content-Length", line);
            }
            n = n * 10 + (*p - '0');
        }
        if (req->content_length >= 0 && req->content_length != n) {
            return httpd_bad(400, "header line %u: two different "
                             "Content-Length values", line);
        }
        req->content_length = n;

    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        req->chunked = 1;

    } else if (strcasecmp(name, "Connection") == 0) {
        req->close |= httpd_has_token(value, "close");
        req->keep_alive |= httpd_has_token(value, "keep-alive");

    } else if (strcasecmp(name, "X-Sidecar-Key") == 0) {
        req->key = value;

    } else if (strcasecmp(name, "Authorization") == 0
               && strncasecmp(value, "Bearer ", 7) == 0)
    {
        req->bearer = value + 7;
    }

    return 0;
}


int
httpd_parse(char *buf, size_t len, httpd_req_t *req, const char **reason)
{
    char      *p, *end, *eol, *colon, *v, *ve;
    unsigned   line = 0;
    int        rc;

    memset(req, 0, sizeof(*req));
    req->content_length = -1;
    *reason = httpd_reason;
    httpd_reason[0] = '\0';

    p = buf;
    end = buf + len;

    /* RFC 9112 2.2: empty lines (CRLF, or LF) before the request line are
     * ignored; a bare CR is no line end (found by fuzz/fuzz_http_head.c) */
    while (p < end && (*p == '\n'
                       || (*p == '\r' && p + 1 < end && p[1] == '\n')))
    {
        p++;
    }

    for ( ;; ) {
        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            return httpd_bad(400, "header line %u: no end of line", line);
        }
        ve = eol;
        if (ve > p && ve[-1] == '\r') {
            ve--;
        }
        *ve = '\0';

        /* within the line: no NUL, no CR (a CR ends a line only before LF) */
        if (memchr(p, '\0', (size_t) (ve - p)) != NULL) {
            return httpd_bad(400, "header line %u: a NUL byte", line);
        }
        if (memchr(p, '\r', (size_t) (ve - p)) != NULL) {
            return httpd_bad(400, "header line %u: a CR not followed by LF",
                             line);
        }

        if (line == 0) {
            rc = httpd_request_line(p, req, reason);
            if (rc != 0) {
                return rc;
            }

        } else if (p == ve) {
            break;                              /* the empty line */

        } else if (line > HTTPD_MAX_HEADERS) {
            return httpd_bad(431, "more than %u header lines",
                             HTTPD_MAX_HEADERS);

        } else if (*p == ' ' || *p == '\t') {
            return httpd_bad(400, "header line %u: obsolete line folding",
                             line);

        } else {
            colon = strchr(p, ':');
            if (colon == NULL || colon == p) {
                return httpd_bad(400, "header line %u: no field name and "
                                 "colon", line);
            }
            for (v = p; v < colon; v++) {
                if (!httpd_tchar((unsigned char) *v)) {
                    return httpd_bad(400, "header line %u: invalid byte in "
                                     "the field name", line);
                }
            }
            *colon = '\0';

            /* the value without its surrounding SP / HTAB; any other
             * byte (HTAB inside, obs-text, UTF-8) is kept as it is */
            v = colon + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
                *--ve = '\0';
            }

            rc = httpd_header(p, v, req, line);
            if (rc != 0) {
                return rc;
            }
        }

        line++;
        p = eol + 1;
    }

    if (req->chunked && req->content_length >= 0) {
        *reason = "both Transfer-Encoding and Content-Length";
        return 400;
    }

    return 0;
}


/* the end of the head (just past the empty line), or 0 */
static size_t
httpd_head_end(const char *buf, size_t len)
{
    size_t  i, start = 0;

    /* leading empty lines do not end a head */
    while (start < len && (buf[start] == '\r' || buf[start] == '\n')) {
        start++;
    }

    for (i = start; i < len; i++) {
        if (buf[i] != '\n') {
            continue;
        }
        if (i + 1 < len && buf[i + 1] == '\n') {
            return i + 2;
        }
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            return i + 3;
        }
    }
    return 0;
}


/* header and body in one go (two writes would meet Nagle and a delayed
   ACK: 40 ms per keep-alive response) */
static void
httpd_timeout(int fd, int seconds)
{
    struct timeval  tv = { seconds, 0 };

    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}


static int
httpd_send_all(int fd, const char *hdr, size_t hlen, const char *body,
    size_t blen)
{
    struct iovec   iov[2];
    struct msghdr  msg;
    ssize_t        n;
    int            i = 0;

    iov[0].iov_base = (void *) hdr;
    iov[0].iov_len = hlen;
    iov[1].iov_base = (void *) body;
    iov[1].iov_len = blen;

    while (i < 2) {
        if (iov[i].iov_len == 0) {
            i++;
            continue;
        }
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov[i];
        msg.msg_iovlen = (size_t) (2 - i);
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        while (i < 2 && (size_t) n >= iov[i].iov_len) {
            n -= (ssize_t) iov[i].iov_len;
            iov[i].iov_len = 0;
            i++;
        }
        if (i < 2) {
            iov[i].iov_base = (char *) iov[i].iov_base + n;
            iov[i].iov_len -= (size_t) n;
        }
    }
    return 0;
}


static int
httpd_respond(int fd, const httpd_res_t *res, int head, int keep)
{
    char  hdr[2048];
    int   n;

    n = snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "Content-Length: %zu\r\n"
                 "Cache-Control: no-store\r\n"
                 "X-Content-Type-Options: nosniff\r\n"
                 "%s"
                 "Connection: %s\r\n\r\n",
                 res->status, httpd_status_text(res->status),
                 res->ctype ? res->ctype : "text/plain; charset=utf-8",
                 res->len, res->headers ? res->headers : "",
                 keep ? "keep-alive" : "close");
    if (n < 0 || (size_t) n >= sizeof(hdr)) {
        return -1;
    }

    return httpd_send_all(fd, hdr, (size_t) n, res->body,
                          head ? 0 : res->len);
}


/*
 * An error ends the connection; what the client is still sending is read
 * and dropped for a moment first (nginx's lingering close), or the kernel
 * would reset the connection and the client might lose the answer.
 */
static void
httpd_error(int fd, int status, const char *reason, int linger)
{
    char             text[256], sink[4096];
    size_t           total = 0;
    ssize_t          n;
    struct timeval   tv = { 1, 0 };
    httpd_res_t      res;

    snprintf(text, sizeof(text), "%s\n", reason);
    memset(&res, 0, sizeof(res));
    res.status = status;
    res.body = text;
    res.len = strlen(text);
    if (httpd_respond(fd, &res, 0, 0) != 0 || !linger) {
        return;
    }

    shutdown(fd, SHUT_WR);
    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (total < 256 * 1024) {
        n = recv(fd, sink, sizeof(sink), 0);
        if (n <= 0) {
            break;
        }
        total += (size_t) n;
    }
}


/*
 * One connection: requests in turn (keep-alive), each head read whole
 * before it is parsed.  A body (a GET may have one) is read and ignored.
 */
static void
httpd_serve(httpd_t *h, int fd)
{
    char         *buf;
    size_t        have = 0, end;
    ssize_t       n;
    int64_t       rest;
    int           rc, keep, head, served = 0;
    time_t        started;
    const char   *reason;
    httpd_req_t   req;
    httpd_res_t   res;

    buf = malloc(HTTPD_HEAD_MAX + 1);
    if (buf == NULL) {
        return;
    }

    for ( ;; ) {
        /* between requests a keep-alive connection may idle longer than
         * a head may take to arrive */
        httpd_timeout(fd, have == 0 && served > 0 ? HTTPD_IDLE_S
                                                  : HTTPD_TIMEOUT_S);
        started = 0;

        while ((end = httpd_head_end(buf, have)) == 0) {
            if (have == HTTPD_HEAD_MAX) {
                httpd_error(fd, 431, "the request head is over 16 KiB", 1);
                goto done;
            }
            if (have > 0 && started == 0) {
                started = time(NULL);
                httpd_timeout(fd, HTTPD_TIMEOUT_S);
            }
            if (started != 0 && time(NULL) - started > HTTPD_TIMEOUT_S) {
                httpd_error(fd, 408, "the request head did not arrive "
                            "in time", 1);
                goto done;
            }
            n = recv(fd, buf + have, HTTPD_HEAD_MAX - have, 0);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                if (n < 0 && have > 0
                    && (errno == EAGAIN || errno == EWOULDBLOCK))
                {
                    httpd_error(fd, 408, "the request head did not arrive "
                                "in time", 1);
                }
                goto done;                  /* closed, idle or stopped */
            }
            have += (size_t) n;
        }

        rc = httpd_parse(buf, end, &req, &reason);
        if (rc != 0) {
            httpd_error(fd, rc, reason, 1);
            goto done;
        }

        if (req.chunked) {
            httpd_error(fd, 400, "a chunked request body is not accepted", 1);
            goto done;
        }
        if (req.content_length > HTTPD_MAX_BODY) {
            httpd_error(fd, 413, "the request body is over 64 KiB", 1);
            goto done;
        }

        /* skip the body: what is buffered, then the rest from the socket */
        rest = req.content_length > 0 ? req.content_length : 0;
        if (rest <= (int64_t) (have - end)) {
            end += (size_t) rest;
        } else {
            rest -= (int64_t) (have - end);
            have = end = 0;
            while (rest > 0) {
                n = recv(fd, buf, rest < HTTPD_HEAD_MAX ? (size_t) rest
                                                        : HTTPD_HEAD_MAX, 0);
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n <= 0) {
                    goto done;
                }
                rest -= n;
            }
        }

        keep = req.minor >= 1 ? !req.close : (req.keep_alive && !req.close);
        head = strcmp(req.method, "HEAD") == 0;

        memset(&res, 0, sizeof(res));
        h->handler(h->data, &req, &res);

        rc = httpd_respond(fd, &res, head, keep);
        free(res.body);
        served++;
        if (rc != 0 || !keep) {
            goto done;
        }

        /* a pipelined request may follow in the buffer */
        memmove(buf, buf + end, have - end);
        have -= end;
    }

done:
    free(buf);
}


static void *
httpd_conn_thread(void *arg)
{
    httpd_conn_t  *c = arg;
    httpd_t       *h = c->h;

    httpd_serve(h, c->fd);

    pthread_mutex_lock(&h->lock);
    close(c->fd);
    h->conns[c->slot] = -1;
    h->active--;
    pthread_cond_broadcast(&h->done);
    pthread_mutex_unlock(&h->lock);

    free(c);
    return NULL;
}


static void
httpd_accepted(httpd_t *h, int fd)
{
    int              i, slot = -1, one = 1;
    unsigned long    n;
    struct timeval   tv = { HTTPD_TIMEOUT_S, 0 };
    pthread_t        tid;
    pthread_attr_t   attr;
    httpd_conn_t    *c;

    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    pthread_mutex_lock(&h->lock);
    for (i = 0; i < HTTPD_MAX_CONNS && !h->stopping; i++) {
        if (h->conns[i] == -1) {
            slot = i;
            break;
        }
    }
    if (slot >= 0) {
        h->conns[slot] = fd;
        h->active++;
    }
    pthread_mutex_unlock(&h->lock);

    if (slot < 0) {
        n = ++h->refused;
        if (n <= 10 || (n & (n - 1)) == 0) {
            log_warn("http: %d connections open, one more answered 503 "
                     "(%lu so far)", HTTPD_MAX_CONNS, n);
        }
        httpd_error(fd, 503, "too many connections to the sidecar", 0);
        close(fd);
        return;
    }

    c = malloc(sizeof(*c));
    if (c != NULL) {
        c->h = h;
        c->slot = slot;
        c->fd = fd;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        i = pthread_create(&tid, &attr, httpd_conn_thread, c);
        pthread_attr_destroy(&attr);
        if (i == 0) {
            return;
        }
        free(c);
    }

    httpd_error(fd, 503, "the sidecar cannot start a thread", 0);
    pthread_mutex_lock(&h->lock);
    close(fd);
    h->conns[slot] = -1;
    h->active--;
    pthread_cond_broadcast(&h->done);
    pthread_mutex_unlock(&h->lock);
}


static void *
httpd_accept_thread(void *arg)
{
    httpd_t        *h = arg;
    struct pollfd   pfd[2];
    int             fd;

    pfd[0].fd = h->fd;
    pfd[0].events = POLLIN;
    pfd[1].fd = h->wake[0];
    pfd[1].events = POLLIN;

    for ( ;; ) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_error("http: poll: %s", strerror(errno));
            return NULL;
        }
        if (pfd[1].revents) {
            return NULL;
        }
        if (!(pfd[0].revents & POLLIN)) {
            continue;
        }

        fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                log_warn("http: accept: %s", strerror(errno));
                if (errno == EMFILE || errno == ENFILE) {
                    poll(NULL, 0, 100);
                }
            }
            continue;
        }

        httpd_accepted(h, fd);
    }
}


int
httpd_start(httpd_t **out, const char *host, int port,
    httpd_handler_pt handler, void *data, int *bound, char *err,
    size_t errlen)
{
    httpd_t                  *h;
    struct sockaddr_storage   ss;
    struct sockaddr_in       *s4 = (struct sockaddr_in *) &ss;
    struct sockaddr_in6      *s6 = (struct sockaddr_in6 *) &ss;
    socklen_t                 sl;
    int                       i, one = 1, v6;

    memset(&ss, 0, sizeof(ss));
    v6 = strchr(host, ':') != NULL;
    if (v6) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t) port);
        i = inet_pton(AF_INET6, host, &s6->sin6_addr);
        sl = sizeof(*s6);
    } else {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t) port);
        i = inet_pton(AF_INET, host, &s4->sin_addr);
        sl = sizeof(*s4);
    }
    if (i != 1) {
        snprintf(err, errlen, "listen address \"%s\": not an address", host);
        return -1;
    }

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->handler = handler;
    h->data = data;
    h->wake[0] = h->wake[1] = -1;
    for (i = 0; i < HTTPD_MAX_CONNS; i++) {
        h->conns[i] = -1;
    }

    h->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (h->fd < 0
        || setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))
           != 0
        || bind(h->fd, (struct sockaddr *) &ss, sl) != 0
        || listen(h->fd, 128) != 0)
    {
        snprintf(err, errlen, "cannot listen on %s%s%s:%d: %s",
                 v6 ? "[" : "", host, v6 ? "]" : "", port, strerror(errno));
        if (h->fd >= 0) {
            close(h->fd);
        }
        free(h);
        return -1;
    }

    sl = sizeof(ss);
    *bound = port;
    if (getsockname(h->fd, (struct sockaddr *) &ss, &sl) == 0) {
        *bound = ntohs(v6 ? s6->sin6_port : s4->sin_port);
    }

    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->done, NULL);

    if (pipe2(h->wake, O_CLOEXEC) != 0
        || pthread_create(&h->acceptor, NULL, httpd_accept_thread, h) != 0)
    {
        snprintf(err, errlen, "cannot start the HTTP thread: %s",
                 strerror(errno));
        if (h->wake[0] >= 0) {
            close(h->wake[0]);
            close(h->wake[1]);
        }
        close(h->fd);
        pthread_cond_destroy(&h->done);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return -1;
    }

    *out = h;
    return 0;
}


void
httpd_stop(httpd_t *h)
{
    int  i;

    if (h == NULL) {
        return;
    }

    (void) !write(h->wake[1], "x", 1);
    pthread_join(h->acceptor, NULL);
    close(h->fd);

    /* wake every connection thread out of recv(); each closes its fd */
    pthread_mutex_lock(&h->lock);
    h->stopping = 1;
    for (i = 0; i < HTTPD_MAX_CONNS; i++) {
        if (h->conns[i] != -1) {
            shutdown(h->conns[i], SHUT_RDWR);
        }
    }
    while (h->active > 0) {
        pthread_cond_wait(&h->done, &h->lock);
    }
    pthread_mutex_unlock(&h->lock);

    close(h->wake[0]);
    close(h->wake[1]);
    pthread_cond_destroy(&h->done);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
