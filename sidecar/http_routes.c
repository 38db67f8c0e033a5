/*
 * http_routes.c - the sidecar's routes, served by httpd.c.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard_json.h"
#include "http_routes.h"
#include "httpd.h"
#include "isotime.h"
#include "log.h"
#include "prometheus.h"
#include "view.h"

#define ROUTES_ALLOW        "GET, HEAD"
#define ROUTES_MAX_HTML     (8 * 1024 * 1024)
#define CT_JSON             "application/json"
#define CT_TEXT             "text/plain; charset=utf-8"
#define CT_HTML             "text/html; charset=utf-8"

/*
 * A rendering of /dashboard/api/data or /metrics is served again for this
 * long: ten polls a second cost one render (a full endpoint table takes
 * milliseconds to print) and a poll costs a copy.  The page refreshes
 * every 10 s and Prometheus scrapes every 15 s or more; 250 ms is never
 * seen as staleness.
 */
#define ROUTES_CACHE_US     250000


typedef struct {
    char               *body;
    size_t              len;
    uint64_t            at_us;          /* monotonic, 0: empty */
} routes_cached_t;


/* what a route renders from the collector's view */
typedef enum {
    ROUTE_HEALTH = 0,           /* /health: never cached */
    ROUTE_DATA,                 /* /dashboard/api/data */
    ROUTE_METRICS,              /* /metrics */
    ROUTE_RENDERED              /* how many */
} route_rendered_e;


struct http_routes_s {
    httpd_t            *server;
    http_routes_ctx_t   ctx;
    size_t              key_len;
    unsigned long       refused;        /* requests without the key */

    pthread_mutex_t     cache_lock;     /* connection threads share it */
    routes_cached_t     cache[ROUTE_RENDERED];
};


typedef struct {
    sidecar_view_t    view;
    coll_snapshot_t  *snap;
    db_stats_t        db;
    proc_sample_t     proc;
} routes_view_t;


#define ROUTES_ALLOW_HEADER  "Allow: " ROUTES_ALLOW "\r\n"
#define ROUTES_CSP_HEADER    "Content-Security-Policy: " DASHBOARD_CSP "\r\n"


/* a copy of the text as the response body */
static void
routes_text(httpd_res_t *res, int status, const char *text)
{
    size_t  len = strlen(text);

    res->status = status;
    res->ctype = CT_TEXT;
    res->body = malloc(len + 1);
    res->len = res->body != NULL ? len : 0;
    if (res->body != NULL) {
        memcpy(res->body, text, len + 1);
    }
    if (status == 405) {
        res->headers = ROUTES_ALLOW_HEADER;
    }
}


/* constant time in the length of what nginx must send */
static int
routes_key_ok(const http_routes_t *r, const char *key)
{
    size_t         i, n;
    unsigned char  diff;

    if (key == NULL) {
        return 0;
    }
    n = strlen(key);
    diff = n != r->key_len;
    for (i = 0; i < r->key_len; i++) {
        diff |= (unsigned char) r->ctx.key[i]
                ^ (unsigned char) (i < n ? key[i] : 0);
    }
    return diff == 0;
}


/*
 * Every route needs the key that nginx adds (X-Sidecar-Key): anyone else
 * on the host gets a 403, and the refusal is logged (1-10, then at powers
 * of two).  Then GET and HEAD pass.
 */
static int
routes_begin(http_routes_t *r, const httpd_req_t *req, httpd_res_t *res)
{
    unsigned long  n;

    /* a scraper may send it as a bearer token (Prometheus: authorization) */
    if (!routes_key_ok(r, req->key) && !routes_key_ok(r, req->bearer)) {
        n = __atomic_add_fetch(&r->refused, 1, __ATOMIC_RELAXED);
        if (n <= 10 || (n & (n - 1)) == 0) {
            log_warn("http: refused %s %s: %s X-Sidecar-Key (%lu refused "
                     "so far)", req->method, req->path,
                     req->key ? "wrong" : "no", n);
        }
        routes_text(res, 403, "forbidden: the sidecar answers nginx only "
                    "(X-Sidecar-Key missing or wrong); open the dashboard "
                    "through nginx\n");
        return -1;
    }

    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        routes_text(res, 405, "method not allowed: use GET or HEAD\n");
        return -1;
    }

    return 0;
}


/* private copies of everything, then no lock is held while rendering */
static int
routes_view(http_routes_t *r, routes_view_t *rv, int want_snapshot)
{
    uint64_t  wall = isotime_wall_us(), mono = isotime_mono_us();

    memset(rv, 0, sizeof(*rv));

    if (want_snapshot) {
        rv->snap = collector_snapshot(r->ctx.collector, wall, mono);
        if (rv->snap == NULL) {
            return -1;
        }
        procstats_sample(r->ctx.proc, &rv->proc);
    }

    if (r->ctx.db != NULL) {
        dbstats_get(r->ctx.db, &rv->db);
    } else {
        snprintf(rv->db.status, sizeof(rv->db.status), "disabled");
        rv->db.stale = 1;
    }

    rv->view.snap = rv->snap;
    rv->view.db = &rv->db;
    rv->view.proc = &rv->proc;
    rv->view.ingest_url = r->ctx.ingest_url;
    rv->view.hostname = r->ctx.hostname;
    rv->view.now_wall_us = wall;
    rv->view.sidecar_uptime_s = (double) (mono - r->ctx.start_mono_us) / 1e6;
    return 0;
}


/* a copy of a fresh enough rendering, or NULL */
static char *
routes_cache_get(http_routes_t *r, route_rendered_e which, size_t *len)
{
    char             *body = NULL;
    routes_cached_t  *c = &r->cache[which];

    pthread_mutex_lock(&r->cache_lock);

    if (c->body != NULL && isotime_mono_us() - c->at_us < ROUTES_CACHE_US) {
        body = malloc(c->len ? c->len : 1);
        if (body != NULL) {
            memcpy(body, c->body, c->len);
            *len = c->len;
        }
    }

    pthread_mutex_unlock(&r->cache_lock);

    return body;
}


static void
routes_cache_put(http_routes_t *r, route_rendered_e which, const char *body,
    size_t len)
{
    char             *copy;
    routes_cached_t  *c = &r->cache[which];

    copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return;
    }
    memcpy(copy, body, len);

    pthread_mutex_lock(&r->cache_lock);
    free(c->body);
    c->body = copy;
    c->len = len;
    c->at_us = isotime_mono_us();
    pthread_mutex_unlock(&r->cache_lock);
}


static void
route_render(http_routes_t *r, httpd_res_t *res, route_rendered_e which)
{
    routes_view_t  *rv;
    char           *body = NULL;
    size_t          len = 0;

    if (which != ROUTE_HEALTH) {
        body = routes_cache_get(r, which, &len);
    }

    if (body == NULL) {
        rv = malloc(sizeof(*rv));
        if (rv == NULL || routes_view(r, rv, which != ROUTE_HEALTH) != 0) {
            free(rv);
            routes_text(res, 500, "out of memory\n");
            return;
        }

        switch (which) {
        case ROUTE_HEALTH:
            body = dashboard_json_health(&rv->view, &len);
            break;
        case ROUTE_DATA:
            body = dashboard_json_render(&rv->view, &len);
            break;
        default:
            body = prometheus_render(&rv->view, &len);
            break;
        }

        collector_snapshot_free(rv->snap);
        free(rv);

        if (body != NULL && which != ROUTE_HEALTH) {
            routes_cache_put(r, which, body, len);
        }
    }

    if (body == NULL) {
        routes_text(res, 500, "out of memory\n");
        return;
    }

    res->status = 200;
    res->ctype = which == ROUTE_METRICS ? PROMETHEUS_CONTENT_TYPE : CT_JSON;
    res->body = body;
    res->len = len;
}


/*
 * The page is read at each request: it is small, and a redeployed
 * dashboard.html shows up without restarting the sidecar.
 */
static void
route_dashboard(http_routes_t *r, httpd_res_t *res)
{
    char   path[4096], msg[4200];
    FILE  *f;
    char  *buf;
    long   size;

    snprintf(path, sizeof(path), "%s/dashboard.html", r->ctx.html_dir);

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(msg, sizeof(msg),
                 "dashboard page not installed: %s not found "
                 "(see --html-dir); the JSON is at /dashboard/api/data\n",
                 path);
        routes_text(res, 404, msg);
        return;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || size > ROUTES_MAX_HTML || fseek(f, 0, SEEK_SET) != 0)
    {
        fclose(f);
        routes_text(res, 500, "cannot read dashboard.html\n");
        return;
    }

    buf = malloc((size_t) size + 1);
    if (buf == NULL || fread(buf, 1, (size_t) size, f) != (size_t) size) {
        free(buf);
        fclose(f);
        routes_text(res, 500, "cannot read dashboard.html\n");
        return;
    }
    fclose(f);

    res->status = 200;
    res->ctype = CT_HTML;
    res->headers = ROUTES_CSP_HEADER;
    res->body = buf;
    res->len = (size_t) size;
}


/* runs on the connection's thread (httpd.c) */
static void
routes_handle(void *data, const httpd_req_t *req, httpd_res_t *res)
{
    http_routes_t  *r = data;
    const char     *p = req->path;

    if (routes_begin(r, req, res) != 0) {
        return;
    }

    if (strcmp(p, "/health") == 0) {
        route_render(r, res, ROUTE_HEALTH);
    } else if (strcmp(p, "/dashboard/api/data") == 0) {
        route_render(r, res, ROUTE_DATA);
    } else if (strcmp(p, "/metrics") == 0) {
        route_render(r, res, ROUTE_METRICS);
    } else if (strcmp(p, "/dashboard") == 0
               || strcmp(p, "/dashboard/") == 0)
    {
        route_dashboard(r, res);
    } else {
        routes_text(res, 404, "not found: the sidecar serves /dashboard, "
                    "/dashboard/api/data, /metrics and /health\n");
    }
}


int
http_routes_start(http_routes_t **out, const char *listen_url,
    const http_routes_ctx_t *ctx, int *port, char *err, size_t errlen)
{
    http_routes_t  *r;
    char            host[256], *colon;
    const char     *p;
    long            want;

    /* "http://127.0.0.1:PORT" or "http://[::1]:PORT" (options.c) */
    p = strncmp(listen_url, "http://", 7) == 0 ? listen_url + 7 : listen_url;
    snprintf(host, sizeof(host), "%s", *p == '[' ? p + 1 : p);
    colon = strrchr(host, ':');
    if (colon == NULL) {
        snprintf(err, errlen, "listen address \"%s\": no port", listen_url);
        return -1;
    }
    *colon = '\0';
    want = strtol(colon + 1, NULL, 10);
    if (*p == '[' && colon > host && colon[-1] == ']') {
        colon[-1] = '\0';
    }

    if (ctx->key == NULL || strlen(ctx->key) < HTTP_ROUTES_KEY_MIN) {
        snprintf(err, errlen, "no key of at least %d characters for the "
                 "HTTP listener", HTTP_ROUTES_KEY_MIN);
        return -1;
    }

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->ctx = *ctx;
    r->key_len = strlen(ctx->key);
    pthread_mutex_init(&r->cache_lock, NULL);

    if (httpd_start(&r->server, host, (int) want, routes_handle, r, port,
                    err, errlen) != 0)
    {
        pthread_mutex_destroy(&r->cache_lock);
        free(r);
        return -1;
    }

    *out = r;
    return 0;
}


void
http_routes_stop(http_routes_t *r)
{
    int  i;

    if (r == NULL) {
        return;
    }

    httpd_stop(r->server);

    for (i = 0; i < ROUTE_RENDERED; i++) {
        free(r->cache[i].body);
    }

    pthread_mutex_destroy(&r->cache_lock);
    free(r);
}
