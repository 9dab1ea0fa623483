/* pvf_client.h - the worker process: a ZeroMQ DEALER that takes trial jobs
 * from a coordinator and runs them on its executors.
 *
 * The main thread owns the socket: it says HELLO and READY, answers and
 * sends heartbeats (so a worker busy in a trial still looks alive), fetches
 * the model and eval set by sha256 into a local cache when missing (no
 * shared filesystem needed), and keeps every RESULT until the coordinator
 * acknowledges it (stored), resending after a reconnect. Executor threads
 * run the trials, one job at a time each. SIGTERM (the stop flag) drains:
 * no new jobs, running jobs finish and report, unacknowledged results are
 * flushed, then the worker says BYE. A fatal signal in a trial (guard.h)
 * is reported as that trial's crash outcome; the worker then drains the
 * same way and returns an error, for a supervisor to restart it. */
#ifndef PVF_CLIENT_H
#define PVF_CLIENT_H

#include "pvf_common.h"

#include <signal.h>

typedef struct pvf_client_config {
    const char *endpoint;   /* tcp://host:port, ipc://path */
    const char *name;       /* reported name; NULL: host:pid */
    int executors;          /* >= 1 */
    const char *cache_dir;  /* artifact cache; NULL: pvf_client_cache_default() */
    const char *server_key; /* coordinator's CURVE public key (Z85), NULL: no CURVE */
    const char *public_key; /* this worker's CURVE key pair (Z85) */
    const char *secret_key;
    int heartbeat_ms;             /* 1000 */
    int dead_after;               /* heartbeats of silence before reconnecting: 5 */
    int fake;                     /* answer trials without inference (benchmarks only) */
    int naive;                    /* every trial a full forward pass (fast path off) */
    volatile sig_atomic_t *stop;  /* set by SIGTERM/SIGINT: drain and leave */
    volatile sig_atomic_t *abort; /* set by a second signal: leave now */
} pvf_client_config;

/* Runs until drained after *stop, or until a DISCONNECT that says to stop.
 * Connection loss is not an error: the worker reconnects with exponential
 * backoff and jitter. */
int pvf_client_run(const pvf_client_config *cfg, pvf_err *err);

/* $PVF_CACHE, else $XDG_CACHE_HOME/pvf, else ~/.cache/pvf (root:
 * /var/cache/pvf). Writes into buf. */
void pvf_client_cache_default(char *buf, size_t n);

#endif
