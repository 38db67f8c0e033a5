/*
 * http_routes.h - the sidecar's HTTP routes (served by httpd.c).
 *
 *   GET /health               200 {"status":"ok", ...}
 *   GET /dashboard[/]         html_dir/dashboard.html, with a CSP header
 *   GET /dashboard/api/data   the dashboard JSON (dashboard_json.h)
 *   GET /metrics              Prometheus text 0.0.4 (prometheus.h)
 *
 * Every request must carry X-Sidecar-Key: the key nginx adds in its
 * proxy location (--http-key-file); without it the answer is 403 and a
 * log line, so that no other local process reads the dashboard.
 * HEAD is answered like GET without a body; any other method gets 405
 * with an Allow header.  Handlers run on the connection threads: each one
 * takes private copies (collector_snapshot, dbstats_get,
 * procstats_sample) and renders them with no lock held.
 */

#ifndef SIDECAR_HTTP_ROUTES_H
#define SIDECAR_HTTP_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "collector.h"
#include "dbstats.h"
#include "procstats.h"

#define DASHBOARD_CSP                                                      \
    "default-src 'none'; script-src 'self' 'unsafe-inline'; "             \
    "style-src 'self' 'unsafe-inline'; connect-src 'self'; "              \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; "         \
    "frame-ancestors 'none'"

typedef struct {
    collector_t   *collector;
    dbstats_t     *db;              /* may be NULL: database disabled */
    procstats_t   *proc;
    const char    *html_dir;
    const char    *ingest_url;
    const char    *hostname;        /* gethostname(), "" if unknown */
    uint64_t       start_mono_us;
    const char    *key;             /* X-Sidecar-Key, HTTP_ROUTES_KEY_MIN+ */
} http_routes_ctx_t;

#define HTTP_ROUTES_KEY_MIN  16

typedef struct http_routes_s  http_routes_t;

/* listen_url is "http://127.0.0.1:PORT" (port 0: any free port; the
   bound port is stored in *port).  -1 with a message in err. */
int http_routes_start(http_routes_t **out, const char *listen_url,
    const http_routes_ctx_t *ctx, int *port, char *err, size_t errlen);

void http_routes_stop(http_routes_t *h);

#endif /* SIDECAR_HTTP_ROUTES_H */
