/*
 * procstats.h - resource figures of the monitored nginx, read from /proc.
 *
 * The nginx master is found through its pid file (read at every sample, so
 * an nginx restart is followed); its worker, cache and helper processes are
 * its children.  Every figure has an _ok flag: whatever /proc cannot
 * provide is reported as missing (JSON null), never as an error.
 * procstats_sample() is thread safe (the CPU delta state has its own lock).
 */

#ifndef SIDECAR_PROCSTATS_H
#define SIDECAR_PROCSTATS_H

#include <stdint.h>
#include <sys/types.h>

typedef struct {
    int       configured;           /* a pid file was given */
    int       alive;                /* master pid read and running */
    pid_t     pid;
    int       nprocs;               /* master + children found */

    int       uptime_ok;
    double    uptime_s;             /* since the master started */
    double    start_wall_s;         /* epoch seconds of the start */

    int       mem_ok;
    double    rss_mb;               /* sum over master + children */
    double    mem_percent;          /* of MemTotal */

    int       cpu_ok;
    double    cpu_percent;          /* per core, like psutil: may be > 100 */
    double    cpu_seconds;          /* utime + stime of live processes */

    int       sys_ok;
    double    sys_mem_percent;      /* (total - available) / total */
    double    sys_avail_mb;
    double    sys_total_mb;
} proc_sample_t;

typedef struct procstats_s  procstats_t;

/* pid_file may be NULL: then only the system-wide figures are read.
   proc_root is normally "/proc" (tests point it elsewhere). */
procstats_t *procstats_create(const char *pid_file, const char *proc_root);
void procstats_free(procstats_t *p);

void procstats_sample(procstats_t *p, proc_sample_t *out);

/* 1 if pid is the process named in the pid file (nginx with
   master_process off) or a child of it (a worker), or during a binary
   upgrade the old master of PID_FILE.oldbin or a child of it; 0 if it is
   none of these, -1 if there is no pid file; thread safe */
int procstats_is_nginx_process(const procstats_t *p, pid_t pid);

#endif /* SIDECAR_PROCSTATS_H */
