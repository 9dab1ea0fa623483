/* pvf_coordinator.h - the coordinator: serves the running campaigns of a
 * PostgreSQL database to workers over a ZeroMQ ROUTER socket.
 *
 * A libuv loop owns the socket (watched through ZMQ_FD, drained until
 * ZMQ_EVENTS has no POLLIN) and all scheduling state: workers, leases,
 * strata. A database writer thread owns the PostgreSQL connection: trial
 * rows, estimates, job states, and the campaign polling; a RESULT is
 * acknowledged only once its rows are committed. Each stratum's estimate is
 * computed over the contiguous prefix of completed trials in trial-index
 * order, so the stopping point and estimate do not depend on the number of
 * workers, the order of results, or restarts. */
#ifndef PVF_COORDINATOR_H
#define PVF_COORDINATOR_H

#include "pvf_common.h"

#include <signal.h>
#include <stdint.h>

/* What a progress callback sees of one campaign. */
typedef struct pvf_coord_progress {
    int64_t campaign;
    int strata, strata_stopped;
    uint64_t trials_done, trials_used;
    uint64_t trials_planned; /* a rough total for an ETA: done + what each stratum may still need */
    int workers;
    double pvf, lo, hi; /* model level, population weighted */
    int done;
} pvf_coord_progress;

typedef struct pvf_coord_config {
    const char *dsn;
    const char *bind;       /* endpoint: tcp://HOST:PORT (needs secret_key), ipc://, inproc:// */
    void *zmq_context;      /* share with in-process workers (inproc://); NULL: own */
    const char *secret_key; /* CURVE server secret key (Z85), NULL: no CURVE */
    const char *allow_file; /* worker public keys admitted (one Z85 key [name] per line) */
    int heartbeat_ms;       /* 1000 */
    int dead_after;         /* heartbeats of silence before a worker is dead: 5 */
    uint32_t trial_deadline_ms; /* a job making no progress this long is stuck: 60000 */
    int64_t only_campaign;      /* serve only this one (0: every running campaign) */
    int exit_when_done;         /* return once only_campaign is done (and tell workers to stop) */
    volatile sig_atomic_t *stop;
    void (*progress)(const pvf_coord_progress *p, void *ctx); /* ~4 times a second */
    void *progress_ctx;
    int quiet; /* no log lines on stderr */
} pvf_coord_config;

int pvf_coord_run(const pvf_coord_config *cfg, pvf_err *err);

#endif
