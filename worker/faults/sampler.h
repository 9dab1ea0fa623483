/* sampler.h - the counter-based sampler: (seed, stratum, trial index) ->
 * fault site, with no state carried between trials, so any trial can be
 * recomputed anywhere (any worker, any order, after any crash) and gives the
 * same site.
 *
 * A stratum is a set of targets. Its population depends on the fault model:
 *   bit, stuck0, stuck1 (uniform bit)  every (element, bit) pair
 *   bit:B, stuck0:B, stuck1:B          every element whose word has bit B
 *   kbit:K                             every (element, bit) pair; the other
 *                                      K-1 bits uniform among the rest
 *   burst:L                            every (element, first bit) with the
 *                                      L bits inside the word
 * and a site is drawn uniformly from it: a target with wider words holds
 * proportionally more of the population. */
#ifndef PVF_SAMPLER_H
#define PVF_SAMPLER_H

#include "fault.h"

#include <stdint.h>

/* The i-th 64-bit output of the stream keyed by (seed, stratum, trial). */
uint64_t pvf_rng(uint64_t seed, uint64_t stratum, uint64_t trial, uint64_t i);

/* Population size of a stratum (0 when the fault model fits none). */
uint64_t pvf_stratum_population(const pvf_model *m, const int *targets, int ntargets,
                                const pvf_fault_model *fm);

int pvf_sample_site(const pvf_model *m, const int *targets, int ntargets, const pvf_fault_model *fm,
                    uint64_t seed, uint64_t stratum, uint64_t trial, pvf_fault_site *site,
                    pvf_err *err);

#endif
