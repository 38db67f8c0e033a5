/*
 * dashboard_json.h - the JSON of GET /dashboard/api/data and GET /health.
 *
 * The schema is the spec's (dashboard-spec.md, "API Reference"), key for
 * key, plus added keys documented in README.md: database.stale/
 * refreshed_at, performance.p95/drop counters, endpoints[].p95,
 * custom_events, pipeline, history.
 */

#ifndef SIDECAR_DASHBOARD_JSON_H
#define SIDECAR_DASHBOARD_JSON_H

#include <stddef.h>

#include "view.h"

/* how many of the retained items each list shows (the spec's numbers) */
#define DASH_RECENT_REQUESTS   20
#define DASH_RECENT_ERRORS     20
#define DASH_RECENT_SLOW       10
#define DASH_RECENT_WS_EVENTS  20

/* malloc'ed NUL-terminated JSON (free with free()), NULL when out of
   memory; *len gets strlen */
char *dashboard_json_render(const sidecar_view_t *v, size_t *len);

char *dashboard_json_health(const sidecar_view_t *v, size_t *len);

#endif /* SIDECAR_DASHBOARD_JSON_H */
