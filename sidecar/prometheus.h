/*
 * prometheus.h - GET /metrics in the Prometheus text format 0.0.4.
 *
 * Metric families (all prefixed chat_): per-endpoint request and error
 * counters and a duration histogram (le = 5ms .. 10s, +Inf), slow request
 * counters, WebSocket gauges and event counters, the ingest pipeline's
 * batch/drop counters (chat_worker_records_dropped_total is the dropped-
 * record counter), database figures and nginx process resources.
 */

#ifndef SIDECAR_PROMETHEUS_H
#define SIDECAR_PROMETHEUS_H

#include <stddef.h>

#include "view.h"

#define PROMETHEUS_CONTENT_TYPE  "text/plain; version=0.0.4; charset=utf-8"

/* malloc'ed text, NULL when out of memory */
char *prometheus_render(const sidecar_view_t *v, size_t *len);

#endif /* SIDECAR_PROMETHEUS_H */
