#include "sampler.h"

/* SplitMix64's finalizer: a bijection on 64 bits with full avalanche. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t pvf_rng(uint64_t seed, uint64_t stratum, uint64_t trial, uint64_t i) {
    uint64_t h = mix64(seed + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ (stratum + 0x632BE59BD9B4E019ull));
    h = mix64(h ^ (trial + 0x8CB92BA72F3D8DD7ull));
    return mix64(h ^ (i * 0x9E3779B97F4A7C15ull + 0xD1B54A32D192ED03ull));
}

/* Uniform in [0, n) without modulo bias (Lemire's multiply-and-reject),
 * drawing further stream outputs on rejection. *i advances. */
static uint64_t uniform(uint64_t seed, uint64_t stratum, uint64_t trial, uint64_t *i, uint64_t n) {
    for (;;) {
        uint64_t x = pvf_rng(seed, stratum, trial, (*i)++);
        __uint128_t prod = (__uint128_t)x * n;
        uint64_t low = (uint64_t)prod;
        if (low >= n || low >= (-n) % n)
            return (uint64_t)(prod >> 64);
    }
}

/* Sites a word of `bits` contributes. */
static uint64_t sites_per_word(const pvf_fault_model *fm, int bits) {
    if (!pvf_fault_model_fits(fm, bits))
        return 0;
    if (fm->kind == PVF_FAULT_BURST)
        return (uint64_t)(bits - fm->k + 1);
    if (fm->kind == PVF_FAULT_KBIT || fm->bit < 0)
        return (uint64_t)bits;
    return 1;
}

uint64_t pvf_stratum_population(const pvf_model *m, const int *targets, int ntargets,
                                const pvf_fault_model *fm) {
    uint64_t total = 0;
    for (int i = 0; i < ntargets; i++) {
        const pvf_target *t = &m->targets[targets[i]];
        total += (uint64_t)t->numel * sites_per_word(fm, t->bits);
    }
    return total;
}

int pvf_sample_site(const pvf_model *m, const int *targets, int ntargets, const pvf_fault_model *fm,
                    uint64_t seed, uint64_t stratum, uint64_t trial, pvf_fault_site *site,
                    pvf_err *err) {
    uint64_t total = pvf_stratum_population(m, targets, ntargets, fm);
    if (total == 0)
        return pvf_err_set(err, "the fault model fits no word of this stratum");
    uint64_t i = 0;
    uint64_t u = uniform(seed, stratum, trial, &i, total);
    for (int k = 0; k < ntargets; k++) {
        const pvf_target *t = &m->targets[targets[k]];
        uint64_t per = sites_per_word(fm, t->bits);
        uint64_t n = (uint64_t)t->numel * per;
        if (u >= n) {
            u -= n;
            continue;
        }
        site->target = targets[k];
        site->element = (int64_t)(u / per);
        uint32_t first = (uint32_t)(u % per);
        switch (fm->kind) {
        case PVF_FAULT_BURST:
            site->mask = (fm->k == 32 ? 0xFFFFFFFFu : ((1u << fm->k) - 1u)) << first;
            break;
        case PVF_FAULT_KBIT:
            site->mask = 1u << first;
            /* the other k-1 bits: distinct, uniform among the rest */
            for (int picked = 1; picked < fm->k; picked++) {
                uint64_t r = uniform(seed, stratum, trial, &i, (uint64_t)(t->bits - picked));
                for (int b = 0; b < t->bits; b++) {
                    if (site->mask & (1u << b))
                        continue;
                    if (r-- == 0) {
                        site->mask |= 1u << b;
                        break;
                    }
                }
            }
            break;
        default:
            site->mask = 1u << (fm->bit >= 0 ? (uint32_t)fm->bit : first);
            break;
        }
        return 0;
    }
    return pvf_err_set(err, "sampler: population walk overran"); /* unreachable */
}
