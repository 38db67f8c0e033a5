/*
 * log.h - one-line log messages on stderr, greppable:
 *   2025-11-09T12:34:56.789Z [warn] chat-sidecar: ingest: rejected ...
 */

#ifndef SIDECAR_LOG_H
#define SIDECAR_LOG_H

typedef enum {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO,
    LOG_LVL_WARN,
    LOG_LVL_ERROR
} log_level_e;

void log_set_level(log_level_e level);

void log_msg(log_level_e level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...)  log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...)  log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif /* SIDECAR_LOG_H */
