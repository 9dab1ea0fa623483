/* pool.h - runs a list of trials on N executor threads sharing one model.
 *
 * Each trial's site depends only on (seed, stratum, trial index), and each
 * result lands in its own slot, so the results are the same whatever the
 * number of executors or the order in which they finish. The trials run in
 * the order of their sites (pvf_trial_order), a tensor's together. */
#ifndef PVF_POOL_H
#define PVF_POOL_H

#include "runner.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pvf_trial_spec {
    const int *targets; /* the stratum's targets */
    int ntargets;
    uint64_t stratum;
    uint64_t trial;
} pvf_trial_spec;

/* Runs specs[0..n) with `executors` threads (>= 1; executor 0 is r->exec)
 * and writes out[i] for specs[i]. On error no result is to be trusted. */
int pvf_pool_run(pvf_runner *r, const pvf_fault_model *fm, uint64_t seed,
                 const pvf_trial_spec *specs, size_t n, int executors, pvf_trial_result *out,
                 pvf_err *err);

#endif
