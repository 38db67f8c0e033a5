/*
 * http_routes.c - HTTP handlers on nng's HTTP server.
 */

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "dashboard_json.h"
#include "http_routes.h"
#include "isotime.h"
#include "log.h"
#include "prometheus.h"
#include "view.h"

#define ROUTES_ALLOW        "GET, HEAD"
#define ROUTES_MAX_BODY     65536
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


struct http_routes_s {
    nng_http_server    *server;
    nng_url            *url;
    http_routes_ctx_t   ctx;

    pthread_mutex_t     cache_lock;     /* nng's HTTP threads share it */
    routes_cached_t     cache[3];       /* indexed like route_render() */
};


typedef struct {
    sidecar_view_t    view;
    coll_snapshot_t  *snap;
    db_stats_t        db;
    proc_sample_t     proc;
} routes_view_t;


static void
routes_reply(nng_aio *aio, uint16_t status, const char *ctype,
    const void *body, size_t len, int html)
{
    nng_http_res  *res;
    int            rv;

    if ((rv = nng_http_res_alloc(&res)) != 0) {
        nng_aio_finish(aio, rv);
        return;
    }

    if ((rv = nng_http_res_set_status(res, status)) != 0
        || (rv = nng_http_res_set_header(res, "Content-Type", ctype)) != 0
        || (rv = nng_http_res_set_header(res, "Cache-Control", "no-store"))
           != 0
        || (rv = nng_http_res_set_header(res, "X-Content-Type-Options",
                                         "nosniff")) != 0
        || (html && (rv = nng_http_res_set_header(res,
                                 "Content-Security-Policy", DASHBOARD_CSP))
                    != 0)
        || (status == 405 && (rv = nng_http_res_set_header(res, "Allow",
                                                   ROUTES_ALLOW)) != 0)
        || (rv = nng_http_res_copy_data(res, body, len)) != 0)
    {
        nng_http_res_free(res);
        nng_aio_finish(aio, rv);
        return;
    }

    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}


static void
routes_text(nng_aio *aio, uint16_t status, const char *text)
{
    routes_reply(aio, status, CT_TEXT, text, strlen(text), 0);
}


/*
 * Handlers are registered for every method (nng would send 405 without
 * an Allow header); GET and HEAD pass, nng strips the body of a HEAD.
 */
static http_routes_t *
routes_begin(nng_aio *aio)
{
    nng_http_req      *req;
    nng_http_handler  *h;
    const char        *m;

    req = nng_aio_get_input(aio, 0);
    h = nng_aio_get_input(aio, 1);
    m = nng_http_req_get_method(req);

    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
        routes_text(aio, 405, "method not allowed: use GET or HEAD\n");
        return NULL;
    }

    return nng_http_handler_get_data(h);
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
    rv->view.now_wall_us = wall;
    rv->view.sidecar_uptime_s = (double) (mono - r->ctx.start_mono_us) / 1e6;
    return 0;
}


/* a copy of a fresh enough rendering, or NULL */
static char *
routes_cache_get(http_routes_t *r, int which, size_t *len)
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
routes_cache_put(http_routes_t *r, int which, const char *body, size_t len)
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
route_render(nng_aio *aio, int which)
{
    http_routes_t  *r;
    routes_view_t  *rv;
    char           *body = NULL;
    size_t          len = 0;

    r = routes_begin(aio);
    if (r == NULL) {
        return;
    }

    if (which != 0) {
        body = routes_cache_get(r, which, &len);
    }

    if (body == NULL) {
        rv = malloc(sizeof(*rv));
        if (rv == NULL || routes_view(r, rv, which != 0) != 0) {
            free(rv);
            routes_text(aio, 500, "out of memory\n");
            return;
        }

        switch (which) {
        case 0:
            body = dashboard_json_health(&rv->view, &len);
            break;
        case 1:
            body = dashboard_json_render(&rv->view, &len);
            break;
        default:
            body = prometheus_render(&rv->view, &len);
            break;
        }

        collector_snapshot_free(rv->snap);
        free(rv);

        if (body != NULL && which != 0) {
            routes_cache_put(r, which, body, len);
        }
    }

    if (body == NULL) {
        routes_text(aio, 500, "out of memory\n");
        return;
    }

    routes_reply(aio, 200, which == 2 ? PROMETHEUS_CONTENT_TYPE : CT_JSON,
                 body, len, 0);
    free(body);
}


static void
route_health(nng_aio *aio)
{
    route_render(aio, 0);
}


static void
route_data(nng_aio *aio)
{
    route_render(aio, 1);
}


static void
route_metrics(nng_aio *aio)
{
    route_render(aio, 2);
}


/*
 * The page is read at each request: it is small, and a redeployed
 * dashboard.html shows up without restarting the sidecar.
 */
static void
route_dashboard(nng_aio *aio)
{
    http_routes_t  *r;
    char            path[4096], msg[4200];
    FILE           *f;
    char           *buf;
    long            size;

    r = routes_begin(aio);
    if (r == NULL) {
        return;
    }

    snprintf(path, sizeof(path), "%s/dashboard.html", r->ctx.html_dir);

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(msg, sizeof(msg),
                 "dashboard page not installed: %s not found "
                 "(see --html-dir); the JSON is at /dashboard/api/data\n",
                 path);
        routes_text(aio, 404, msg);
        return;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || size > ROUTES_MAX_HTML || fseek(f, 0, SEEK_SET) != 0)
    {
        fclose(f);
        routes_text(aio, 500, "cannot read dashboard.html\n");
        return;
    }

    buf = malloc((size_t) size + 1);
    if (buf == NULL || fread(buf, 1, (size_t) size, f) != (size_t) size) {
        free(buf);
        fclose(f);
        routes_text(aio, 500, "cannot read dashboard.html\n");
        return;
    }
    fclose(f);

    routes_reply(aio, 200, CT_HTML, buf, (size_t) size, 1);
    free(buf);
}


static int
routes_add(http_routes_t *r, const char *path, void (*cb)(nng_aio *),
    char *err, size_t errlen)
{
    nng_http_handler  *h;
    int                rv;

    if ((rv = nng_http_handler_alloc(&h, path, cb)) != 0) {
        snprintf(err, errlen, "handler %s: %s", path, nng_strerror(rv));
        return -1;
    }

    if ((rv = nng_http_handler_set_method(h, NULL)) != 0
        || (rv = nng_http_handler_collect_body(h, true, ROUTES_MAX_BODY)) != 0
        || (rv = nng_http_handler_set_data(h, r, NULL)) != 0
        || (rv = nng_http_server_add_handler(r->server, h)) != 0)
    {
        nng_http_handler_free(h);
        snprintf(err, errlen, "handler %s: %s", path, nng_strerror(rv));
        return -1;
    }

    return 0;
}


int
http_routes_start(http_routes_t **out, const char *listen_url,
    const http_routes_ctx_t *ctx, int *port, char *err, size_t errlen)
{
    http_routes_t  *r;
    nng_sockaddr    sa;
    int             rv;

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->ctx = *ctx;
    pthread_mutex_init(&r->cache_lock, NULL);

    if ((rv = nng_url_parse(&r->url, listen_url)) != 0) {
        snprintf(err, errlen, "listen address \"%s\": %s", listen_url,
                 nng_strerror(rv));
        free(r);
        return -1;
    }

    if ((rv = nng_http_server_hold(&r->server, r->url)) != 0) {
        snprintf(err, errlen, "HTTP server on %s: %s", listen_url,
                 nng_strerror(rv));
        nng_url_free(r->url);
        free(r);
        return -1;
    }

    if (routes_add(r, "/health", route_health, err, errlen) != 0
        || routes_add(r, "/dashboard/api/data", route_data, err, errlen) != 0
        || routes_add(r, "/dashboard", route_dashboard, err, errlen) != 0
        || routes_add(r, "/metrics", route_metrics, err, errlen) != 0)
    {
        goto fail;
    }

    if ((rv = nng_http_server_start(r->server)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen_url,
                 nng_strerror(rv));
        goto fail;
    }

    *port = 0;
    if (nng_http_server_get_addr(r->server, &sa) == 0) {
        if (sa.s_family == NNG_AF_INET) {
            *port = ntohs(sa.s_in.sa_port);
        } else if (sa.s_family == NNG_AF_INET6) {
            *port = ntohs(sa.s_in6.sa_port);
        }
    }

    *out = r;
    return 0;

fail:
    nng_http_server_release(r->server);
    nng_url_free(r->url);
    pthread_mutex_destroy(&r->cache_lock);
    free(r);
    return -1;
}


void
http_routes_stop(http_routes_t *r)
{
    if (r == NULL) {
        return;
    }
    int  i;

    nng_http_server_stop(r->server);
    nng_http_server_release(r->server);
    nng_url_free(r->url);

    for (i = 0; i < 3; i++) {
        free(r->cache[i].body);
    }

    pthread_mutex_destroy(&r->cache_lock);
    free(r);
}
