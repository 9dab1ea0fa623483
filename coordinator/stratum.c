/* stratum.c - one stratum's progress: which trials are issued, which are
 * done, and the estimator over the contiguous prefix of done trials.
 *
 * Results arrive in any order; values beyond the prefix wait in a ring until
 * the gap before them closes. The estimator sees trial 0, 1, 2, ... in that
 * order and the stopping rule is checked after each one, so the stopping
 * count is a function of the trial values alone. */
#include "co.h"

#include "pvf_stats.h"

#include <stdlib.h>
#include <string.h>

/* How far issuing may run ahead of the prefix: trials beyond the stopping
 * point are wasted work, a short window starves workers. */
static uint64_t window(const co_stratum *s) {
    uint64_t w = s->cs.t / 2;
    return w < 4096 ? 4096 : w;
}

int co_stratum_init(co_stratum *s, const co_campaign *c, double alpha, pvf_err *err) {
    s->ahead_cap = 1024;
    s->ahead = calloc(s->ahead_cap, sizeof *s->ahead);
    s->ahead_set = calloc(s->ahead_cap, 1);
    if (!s->ahead || !s->ahead_set)
        return pvf_err_set(err, "out of memory");
    if (pvf_cs_init(&s->cs, c->value_any ? PVF_CS_BETA : PVF_CS_EB, alpha, err))
        return -1;
    return 0;
}

void co_stratum_free(co_stratum *s) {
    free(s->ahead);
    free(s->ahead_set);
    free(s->retry);
    for (uint32_t i = 0; i < s->ntargets; i++)
        free(s->targets[i]);
    free(s->targets);
    free(s->name);
    memset(s, 0, sizeof *s);
}

static int grow_ahead(co_stratum *s, uint64_t need) {
    uint64_t cap = s->ahead_cap;
    while (cap <= need)
        cap *= 2;
    if (cap == s->ahead_cap)
        return 0;
    double *v = calloc(cap, sizeof *v);
    uint8_t *set = calloc(cap, 1);
    if (!v || !set) {
        free(v);
        free(set);
        return -1;
    }
    const uint64_t base = s->cs.t;
    for (uint64_t t = base; t < base + s->ahead_cap; t++) {
        uint64_t o = t & (s->ahead_cap - 1), n = t & (cap - 1);
        v[n] = s->ahead[o];
        set[n] = s->ahead_set[o];
    }
    free(s->ahead);
    free(s->ahead_set);
    s->ahead = v;
    s->ahead_set = set;
    s->ahead_cap = cap;
    return 0;
}

static pvf_stop_rule rule_of(const co_stratum *s, const co_campaign *c) {
    return (pvf_stop_rule){.margin = c->margin,
                           .rel_margin = c->rel_margin,
                           .max_trials = s->max_trials,
                           .min_trials = 0};
}

static void check_stop(co_stratum *s, const co_campaign *c) {
    pvf_stop_rule rule = rule_of(s, c);
    switch (pvf_cs_check(&s->cs, &rule)) {
    case PVF_STOP_MARGIN:
        s->stopped = s->converged = 1;
        s->stop_reason = "margin";
        break;
    case PVF_STOP_REL:
        s->stopped = s->converged = 1;
        s->stop_reason = "rel-margin";
        break;
    case PVF_STOP_CAP:
        s->stopped = 1;
        s->converged = 0;
        s->stop_reason = "cap";
        break;
    default:
        break;
    }
}

/* Feeds the estimator while the prefix extends and the stratum runs. */
static void advance(co_stratum *s, const co_campaign *c) {
    while (!s->stopped) {
        uint64_t t = s->cs.t;
        uint64_t slot = t & (s->ahead_cap - 1);
        if (!s->ahead_set[slot])
            break;
        double x = s->ahead[slot];
        s->ahead_set[slot] = 0;
        if (c->value_any)
            x = x > 0 ? 1.0 : 0.0;
        s->dirty = 1;
        if (pvf_cs_push(&s->cs, x, NULL)) {
            /* Cannot happen for values the protocol admits (finite, in
             * [0, 1]); if it does, stop visibly rather than stall. */
            s->stopped = 1;
            s->stop_reason = "cancelled";
            break;
        }
        check_stop(s, c);
    }
}

int co_stratum_is_done(const co_stratum *s, uint64_t t) {
    if (t < s->cs.t)
        return 1;
    if (t - s->cs.t >= s->ahead_cap)
        return 0;
    return s->ahead_set[t & (s->ahead_cap - 1)];
}

int co_stratum_complete(co_stratum *s, const co_campaign *c, uint64_t t, double value) {
    if (co_stratum_is_done(s, t))
        return 0;
    s->done++;
    s->dirty = 1;
    if (s->stopped)
        return 1; /* stored, but past the stopping point */
    if (grow_ahead(s, t - s->cs.t))
        return 1; /* out of memory: the estimate waits for a re-issue */
    s->ahead[t & (s->ahead_cap - 1)] = value;
    s->ahead_set[t & (s->ahead_cap - 1)] = 1;
    advance(s, c);
    return 1;
}

void co_stratum_requeue(co_stratum *s, co_range r) {
    while (r.lo < r.hi && co_stratum_is_done(s, r.lo))
        r.lo++;
    while (r.hi > r.lo && co_stratum_is_done(s, r.hi - 1))
        r.hi--;
    if (r.lo >= r.hi || s->stopped)
        return;
    if (s->nretry == s->cap_retry) {
        int cap = s->cap_retry ? 2 * s->cap_retry : 8;
        co_range *grown = realloc(s->retry, (size_t)cap * sizeof *grown);
        if (!grown)
            return; /* out of memory: those trials are issued again never; the cap ends it */
        s->retry = grown;
        s->cap_retry = cap;
    }
    int i = s->nretry;
    while (i > 0 && s->retry[i - 1].lo > r.lo) {
        s->retry[i] = s->retry[i - 1];
        i--;
    }
    s->retry[i] = r;
    s->nretry++;
}

int co_stratum_wants(const co_stratum *s) {
    if (s->stopped)
        return 0;
    if (s->nretry)
        return 1;
    return s->next < s->max_trials && s->next - s->cs.t < window(s);
}

int co_stratum_take(co_stratum *s, uint64_t size, co_range *out) {
    if (s->stopped)
        return 0;
    while (s->nretry) {
        co_range r = s->retry[0];
        memmove(s->retry, s->retry + 1, (size_t)(s->nretry - 1) * sizeof *s->retry);
        s->nretry--;
        while (r.lo < r.hi && co_stratum_is_done(s, r.lo))
            r.lo++;
        if (r.lo >= r.hi)
            continue;
        /* A range that killed workers is split, so a poison trial ends up
         * alone; the caller settles a lone trial that keeps killing. */
        uint64_t len = r.hi - r.lo;
        if (r.kills >= 2 && len > 1)
            len = (len + 1) / 2;
        if (len > size)
            len = size;
        /* Only the front half is suspect: deaths without progress point at
         * the first unreported trial. */
        if (r.lo + len < r.hi)
            co_stratum_requeue(s, r.kills >= 2 ? (co_range){r.lo + len, r.hi, 0, 0}
                                               : (co_range){r.lo + len, r.hi, r.kills, r.stuck});
        *out = (co_range){r.lo, r.lo + len, r.kills, r.stuck};
        return 1;
    }
    if (s->next >= s->max_trials)
        return 0;
    uint64_t hi = s->next + size;
    if (hi > s->max_trials)
        hi = s->max_trials;
    *out = (co_range){s->next, hi, 0, 0};
    s->next = hi;
    return 1;
}

void co_stratum_recheck(co_stratum *s, const co_campaign *c) {
    if (s->stopped && s->stop_reason && strcmp(s->stop_reason, "cap") == 0 &&
        s->cs.t < s->max_trials) {
        s->stopped = 0;
        s->stop_reason = NULL;
        s->dirty = 1;
    }
    advance(s, c);
    if (!s->stopped)
        check_stop(s, c);
}

void co_stratum_interval(const co_stratum *s, double *mean, double *lo, double *hi) {
    if (s->cs.t == 0) {
        *mean = 0;
        *lo = 0;
        *hi = 1;
        return;
    }
    *mean = pvf_cs_mean(&s->cs);
    pvf_cs_bounds(&s->cs, lo, hi);
}
