/* dlrm_fast.c - DLRM's fast trial path: a trial computes only what its fault
 * changes, and settles what a sound bound proves harmless.
 *
 * Read map: for every embedding row, the eval inputs whose bags read it. A
 * fault in a row no bag reads settles with no inference at all; otherwise only
 * the readers' pooled vectors are recomputed (the same bag sum as the stage).
 * An MLP weight (i, j), bias i or scale fault recomputes output feature i
 * exactly (the faulty row's dot product), for the inputs whose x_j is non-zero.
 * Changed rows are carried on, a chunk at a time, to the logit.
 *
 * Bounds. The logit z decides: p = sigmoid(z) is monotone, so the click
 * decision holds while |dz| < |z0| (a threshold rule allows z in the logit
 * interval of [p0 - tau, p0 + tau]). A change d of a feature reaches the logit
 * by at most sum |d| * S, where S, the feature's sensitivity, propagates |W|
 * backwards from the logit (ReLU is 1-Lipschitz). The dot interaction is
 * bilinear: a change d_f of one feature vector f changes pair (a, f) by
 * exactly t_a . d_f, so S of vector f is sum_a S_pair(a, f) |t_a| per input
 * (the bottom MLP's S is per input for that reason). Float rounding: every dot
 * product of n terms the faulty pass recomputes may round differently from
 * golden's, by at most 2 gamma_n sum |w x| (gamma_n = n u / (1 - n u), u =
 * 2^-24); those of the layers after the faulty stage, weighted by S, are taken
 * off each input's margin (per faulty stage). Per rule (decision or
 * threshold), tables of max_r |x_j| S / lim over all but the few inputs of
 * smallest allowance settle most MLP faults in O(1); those few are always
 * checked one by one. A non-finite or huge change is never bounded: it goes
 * the exact way. */
#include "dlrm.h"
#include "kernels_nn.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Inputs with the smallest allowance, always computed, left out of the tables. */
#define FRAGILE_INPUTS 16
/* A change of one value bounded only up to this; golden weights and
 * activations up to GOLDEN_CAP: then no carried value can overflow. */
#define DELTA_CAP  1e6
#define GOLDEN_CAP 1e4
/* Relative slack on a bound (the rounding of the change's own products and
 * of the bound itself), and on the margin. */
#define BOUND_SLACK  2e-4
#define MARGIN_SLACK 1e-4

/* What the bounds of one outcome rule need (threshold tau; 0: the decision). */
typedef struct dlrm_rule {
    double tau;
    int enabled;
    /* per faulty stage s: [n] the largest |dz| that keeps input r's outcome,
     * after the rounding of the layers from s on */
    double *lim[PVF_DLRM_MAX_STAGES];
    int64_t *fragile[PVF_DLRM_MAX_STAGES]; /* ascending: inputs left out of q[s] */
    int64_t nfragile[PVF_DLRM_MAX_STAGES];
    double *q[PVF_DLRM_MAX_STAGES]; /* MLP stage s: [(in + 1) x out], max over the other
                                       inputs of |x_j| S_i / lim (row `in`: the bias) */
    struct dlrm_rule *next;
} dlrm_rule;

typedef struct dlrm_fast {
    int64_t n, nfeat, dim, width, top_in;
    int *table_of;    /* [nparams]: the table of an embedding parameter, else -1 */
    int64_t *bag_off; /* [n * ntables + 1]: bag (input, table) is bag_idx[off[at], off[at+1]) */
    int64_t *bag_idx;
    int64_t table_base[PVF_DLRM_MAX_TABLES + 1];
    int64_t *read_key; /* sorted table_base[k] + row, one per (row, reading input) */
    int64_t *read_input;
    int64_t nread;
    float *xtop;                        /* [n x top_in] the top MLP's input (the interaction) */
    int bounds;                         /* 0: nothing is ever bounded */
    double *sens[PVF_DLRM_MAX_STAGES];  /* S of stage s's outputs: top [out], bottom [n x out] */
    double *sens_x;                     /* [top_in] S of the top MLP's input */
    double *G;                          /* [n x nfeat x dim] S of the feature vectors, per input */
    double *xmax[PVF_DLRM_MAX_STAGES];  /* [in] max over inputs of |x_j| */
    double *z0;                         /* [n] golden logit */
    double *allow[PVF_DLRM_MAX_STAGES]; /* [n] rounding allowance of a fault in stage s */
    pthread_mutex_t lock;               /* serializes building rules */
    _Atomic(dlrm_rule *) rules;         /* built rules, never changed once published */
} dlrm_fast;

static void mlp_geometry(const pvf_model *m, int s, int64_t *in, int64_t *out) {
    const pvf_dlrm *d = m->arch_state;
    const int j = m->stages[s].layer;
    const int64_t *sizes = s >= d->first_top ? d->top : d->bot;
    *in = sizes[j];
    *out = sizes[j + 1];
}

/* The input of MLP stage s's weights for eval input r. */
static const float *mlp_input(const dlrm_fast *f, const pvf_golden *g, const pvf_model *m, int s,
                              int64_t r) {
    const pvf_dlrm *d = m->arch_state;
    if (s == d->first_top)
        return f->xtop + r * f->top_in;
    return g->stage_in[s] + r * m->stages[s].in_size;
}

/* Index of pair (a, b), a > b, in the dot interaction's output. */
static int64_t pair_index(int64_t dim, int64_t a, int64_t b) {
    return dim + a * (a - 1) / 2 + b;
}

/* Worst-case relative rounding of a float sum of n terms. */
static double gamma_n(int64_t n) {
    const double u = 0x1p-24;
    return (double)n * u / (1 - (double)n * u);
}

static int all_below(const float *x, int64_t n, double cap) {
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)x[i]) <= cap))
            return 0;
    return 1;
}

/* ---- rules ---------------------------------------------------------------- */

static void rule_free(dlrm_rule *r, int nstages) {
    for (int s = 0; s < nstages; s++) {
        free(r->lim[s]);
        free(r->fragile[s]);
        free(r->q[s]);
    }
    free(r);
}

/* The largest |dz| input r's outcome allows under rule tau, after slack for
 * a fault in stage s. */
static double allowance(const dlrm_fast *f, const pvf_golden *g, int s, int64_t r, double tau) {
    const double z = f->z0[r], p0 = g->out[r];
    double margin;
    if (tau > 0) {
        /* 1e-6: the float sigmoid's rounding, a few ulps of p */
        const double lo = p0 - tau + 1e-6, hi = p0 + tau - 1e-6;
        double below = INFINITY, above = INFINITY;
        if (lo >= 1 || hi <= 0)
            return 0;
        if (lo > 0)
            below = z - log(lo / (1 - lo));
        if (hi < 1)
            above = log(hi / (1 - hi)) - z;
        margin = below < above ? below : above;
    } else {
        margin = (g->out[r] > 0.5f) == (z > 0) ? fabs(z) : 0;
    }
    double lim = margin * (1 - MARGIN_SLACK) - 1e-6 * (1 + fabs(z)) - f->allow[s][r];
    return lim > 0 ? lim : 0;
}

typedef struct ranked {
    double lim;
    int64_t row;
} ranked;

static int by_lim(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    return (x->lim > y->lim) - (x->lim < y->lim);
}

static int by_row(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static dlrm_rule *rule_build(const dlrm_fast *f, const pvf_model *m, const pvf_golden *g,
                             double tau) {
    const pvf_dlrm *d = m->arch_state;
    const int64_t n = f->n;
    dlrm_rule *rule = calloc(1, sizeof *rule);
    if (!rule)
        return NULL;
    rule->tau = tau;
    rule->enabled = f->bounds;
    if (!rule->enabled)
        return rule;
    ranked *order = malloc((size_t)n * sizeof *order);
    unsigned char *skip = malloc((size_t)n);
    if (!order || !skip)
        goto oom;
    for (int s = 0; s < m->nstages; s++) {
        double *lim = rule->lim[s] = malloc((size_t)n * sizeof *lim);
        int64_t *fragile = rule->fragile[s] = malloc((size_t)n * sizeof *fragile);
        if (!lim || !fragile)
            goto oom;
        for (int64_t r = 0; r < n; r++) {
            lim[r] = allowance(f, g, s, r, tau);
            order[r] = (ranked){lim[r], r};
        }
        if (s == d->emb_stage)
            continue; /* embedding faults are bounded input by input */
        qsort(order, (size_t)n, sizeof *order, by_lim);
        for (int64_t r = 0; r < n; r++)
            skip[r] = 0;
        int64_t positive = 0;
        for (int64_t t = 0; t < n; t++) {
            if (order[t].lim > 0 && positive++ >= FRAGILE_INPUTS)
                break;
            fragile[rule->nfragile[s]++] = order[t].row;
            skip[order[t].row] = 1;
        }
        qsort(fragile, (size_t)rule->nfragile[s], sizeof *fragile, by_row);
        int64_t in, out;
        mlp_geometry(m, s, &in, &out);
        double *q = rule->q[s] = calloc((size_t)((in + 1) * out), sizeof *q);
        if (!q)
            goto oom;
        for (int64_t r = 0; r < n; r++) {
            if (skip[r])
                continue;
            const float *x = mlp_input(f, g, m, s, r);
            const double *sens = s < d->emb_stage ? f->sens[s] + r * out : f->sens[s];
            for (int64_t j = 0; j <= in; j++) {
                const double a = (j < in ? fabs((double)x[j]) : 1.0) / lim[r];
                double *qj = q + j * out;
                for (int64_t i = 0; i < out; i++)
                    qj[i] = fmax(qj[i], a * sens[i]);
            }
        }
    }
    free(order);
    free(skip);
    return rule;
oom:
    free(order);
    free(skip);
    rule_free(rule, m->nstages);
    return NULL;
}

static const dlrm_rule *rule_find(dlrm_fast *f, double tau) {
    for (dlrm_rule *r = atomic_load_explicit(&f->rules, memory_order_acquire); r; r = r->next)
        if (r->tau == tau)
            return r;
    return NULL;
}

/* The rule of the model's current outcome threshold, built on first use. */
static const dlrm_rule *rule_get(dlrm_fast *f, const pvf_model *m, const pvf_golden *g,
                                 pvf_err *err) {
    const double tau = m->outcome_threshold > 0 ? m->outcome_threshold : 0;
    const dlrm_rule *found = rule_find(f, tau);
    if (found)
        return found;
    pthread_mutex_lock(&f->lock);
    found = rule_find(f, tau);
    if (!found) {
        dlrm_rule *rule = rule_build(f, m, g, tau);
        if (rule) {
            rule->next = atomic_load_explicit(&f->rules, memory_order_relaxed);
            atomic_store_explicit(&f->rules, rule, memory_order_release);
        }
        found = rule;
    }
    pthread_mutex_unlock(&f->lock);
    if (!found)
        pvf_err_set(err, "dlrm fast path: out of memory");
    return found;
}

/* ---- bounds --------------------------------------------------------------- */

/* sum |in - gold| * sens over n values; INFINITY when a change is not finite
 * or above DELTA_CAP (then nothing may be bounded). */
static double weighted_change(const double *sens, const float *in, const float *gold, int64_t n) {
    double b = 0;
    for (int64_t c = 0; c < n; c++) {
        const double dl = fabs((double)in[c] - (double)gold[c]);
        if (!(dl <= DELTA_CAP))
            return INFINITY;
        b += dl * sens[c];
    }
    return b;
}

/* Bound on |dz| of input r whose top-MLP input (the embedding stage's output)
 * is in instead of gold. */
static double top_input_bound(const dlrm_fast *f, const pvf_dlrm *d, int64_t r, const float *in,
                              const float *gold) {
    const int64_t dim = f->dim, nf = f->nfeat;
    int changed = -1, nchanged = 0;
    for (int64_t a = 0; a < nf; a++) {
        if (memcmp(in + a * dim, gold + a * dim, (size_t)dim * sizeof *in) != 0) {
            changed = (int)a;
            nchanged++;
        }
    }
    if (nchanged == 0)
        return 0;
    if (!d->dot) /* the concatenation: linear */
        return weighted_change(f->sens_x, in, gold, f->width);
    if (nchanged == 1) /* linear in the one changed vector */
        return weighted_change(f->G + (r * nf + changed) * dim, in + changed * dim,
                               gold + changed * dim, dim);
    /* several vectors: |d(t_a . t_b)| <= |t_a||d_b| + |d_a||t_b| + |d_a||d_b| */
    double b = weighted_change(f->sens_x, in, gold, dim);
    for (int64_t a = 1; a < nf; a++) {
        for (int64_t c = 0; c < a; c++) {
            const float *ta = gold + a * dim, *tc = gold + c * dim;
            const float *ua = in + a * dim, *uc = in + c * dim;
            double sum = 0;
            for (int64_t k = 0; k < dim; k++) {
                const double da = fabs((double)ua[k] - ta[k]), dc = fabs((double)uc[k] - tc[k]);
                if (!(da <= DELTA_CAP && dc <= DELTA_CAP))
                    return INFINITY;
                sum += fabs(ta[k]) * dc + da * fabs(tc[k]) + da * dc;
            }
            b += f->sens_x[pair_index(dim, a, c)] * sum;
        }
    }
    return b;
}

/* The bound proves input r's outcome under a fault in stage s. */
static int settles(const dlrm_rule *rule, int s, int64_t r, double bound) {
    return bound * (1 + BOUND_SLACK) < rule->lim[s][r];
}

int pvf_dlrm_fast_bound(const pvf_exec *ex, const pvf_golden *g, int stage, int64_t row,
                        const float *in) {
    dlrm_fast *f = g->fast;
    const pvf_model *m = ex->m;
    const pvf_dlrm *d = m->arch_state;
    if (!f || !f->bounds || stage < 1 || stage >= m->nstages)
        return 0;
    const dlrm_rule *rule = rule_find(f, m->outcome_threshold > 0 ? m->outcome_threshold : 0);
    if (!rule || !rule->enabled)
        return 0;
    const int64_t width = m->stages[stage].in_size;
    const float *gold = g->stage_in[stage] + row * width;
    double b;
    if (stage == d->first_top)
        b = top_input_bound(f, d, row, in, gold);
    else if (stage == d->emb_stage)
        b = weighted_change(f->G + row * f->nfeat * f->dim, in, gold, width);
    else if (stage < d->emb_stage)
        b = weighted_change(f->sens[stage - 1] + row * width, in, gold, width);
    else
        b = weighted_change(f->sens[stage - 1], in, gold, width);
    /* rows come from the stage before: what rounds from here on is its allowance */
    return settles(rule, stage == d->first_top ? d->emb_stage : stage - 1, row, b);
}

/* ---- carrying changed rows on ---------------------------------------------- */

/* Up to one chunk of changed rows, with their inputs to `stage`. */
typedef struct carry {
    pvf_exec *ex;
    const pvf_golden *g;
    pvf_trial_result *r;
    int stage;
    int64_t width, cap, k;
    const float *gold; /* golden inputs to stage (outputs when stage == nstages) */
    float *buf;        /* in ex->scratch, after what the stages use */
    int64_t rows[PVF_CHUNK];
} carry;

static void carry_init(carry *c, pvf_exec *ex, const pvf_golden *g, pvf_trial_result *r,
                       int stage) {
    const pvf_model *m = ex->m;
    const pvf_dlrm *d = m->arch_state;
    c->ex = ex;
    c->g = g;
    c->r = r;
    c->stage = stage;
    c->width = stage < m->nstages ? m->stages[stage].in_size : m->out_size;
    c->gold = stage < m->nstages ? g->stage_in[stage] : g->out;
    c->cap = ex->chunk < PVF_CHUNK ? ex->chunk : PVF_CHUNK;
    c->k = 0;
    c->buf = ex->scratch + d->stage_scratch;
}

/* Carries the rows through the stages from c->stage and judges them, as
 * pvf_fast_rows does (a row is dropped where its input is golden again or
 * the bound settles it), but faster for DLRM: an MLP stage reads no eval data,
 * so it runs all the rows in one call however scattered they are (one GEMM,
 * not one per row); and the rows of an MLP fault skip the embedding stage,
 * whose pooled vectors they leave golden: its output is golden's with the
 * bottom vector replaced. */
static int carry_flush(carry *c, pvf_err *err) {
    pvf_exec *ex = c->ex;
    const pvf_golden *g = c->g;
    const pvf_model *m = ex->m;
    const pvf_dlrm *d = m->arch_state;
    int64_t n = c->k, *rows = c->rows;
    c->k = 0;
    float *cur = c->buf;
    int ping = 0;
    for (int s = c->stage; s < m->nstages && n > 0; s++) {
        const pvf_stage *st = &m->stages[s];
        if (s != c->stage) { /* the rows handed over are changed and unsettled already */
            n = pvf_fast_drop_golden(ex, g, s, rows, cur, n);
            if (n == 0)
                break;
        }
        float *next = ex->fast_io[ping];
        if (s == d->emb_stage) {
            for (int64_t j = 0; j < n; j++) {
                float *out = next + j * st->out_size;
                memcpy(out, g->stage_in[s + 1] + rows[j] * st->out_size,
                       (size_t)st->out_size * sizeof *out);
                memcpy(out, cur + j * st->in_size, (size_t)st->in_size * sizeof *out);
            }
        } else if (st->run(m, s, ex, rows[0], n, cur, next)) {
            return pvf_err_set(err, "stage '%s' failed", st->name);
        }
        c->r->stage_rows += n;
        cur = next;
        ping ^= 1;
    }
    for (int64_t j = 0; j < n; j++)
        pvf_fast_judge_row(ex, g, rows[j], cur + j * m->out_size, c->r);
    return 0;
}

/* A slot holding golden's input of `row` to the stage, to change; NULL on error. */
static float *carry_push(carry *c, int64_t row, pvf_err *err) {
    if (c->k == c->cap && carry_flush(c, err))
        return NULL;
    float *slot = c->buf + c->k * c->width;
    memcpy(slot, c->gold + row * c->width, (size_t)c->width * sizeof *slot);
    c->rows[c->k++] = row;
    return slot;
}

/* The last pushed row is golden after all, or settled. */
static void carry_drop(carry *c) {
    c->k--;
}

/* ---- trials ---------------------------------------------------------------- */

static int64_t lower_bound(const int64_t *keys, int64_t n, int64_t key) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A fault in row `row` of table k: only the bags that read it change. */
static int embedding_trial(pvf_exec *ex, const pvf_golden *g, dlrm_fast *f, const dlrm_rule *rule,
                           int param, int k, const pvf_fault_effect *eff, pvf_trial_result *r,
                           pvf_err *err) {
    const pvf_model *m = ex->m;
    const pvf_dlrm *d = m->arch_state;
    const int64_t dim = f->dim, row = eff->lo / dim;
    if ((eff->hi - 1) / dim != row)
        return 1; /* a span over several rows: not a storage format pvf has */
    const int64_t key = f->table_base[k] + row;
    const int64_t first = lower_bound(f->read_key, f->nread, key);
    const float *table = pvf_exec_weights(ex, param);
    carry c;
    carry_init(&c, ex, g, r, d->first_top);
    for (int64_t e = first; e < f->nread && f->read_key[e] == key; e++) {
        const int64_t in = f->read_input[e];
        float *slot = carry_push(&c, in, err);
        if (!slot)
            return -1;
        float *pooled = slot + (int64_t)(k + 1) * dim;
        const int64_t at = in * d->ntables + k, zero = 0;
        pvf_embedding_bag_sum(table, dim, f->bag_idx + f->bag_off[at],
                              f->bag_off[at + 1] - f->bag_off[at], &zero, 1, pooled, dim);
        r->stage_rows++;
        const float *gold = c.gold + in * c.width + (int64_t)(k + 1) * dim;
        if (memcmp(pooled, gold, (size_t)dim * sizeof *pooled) == 0 ||
            (rule->enabled &&
             settles(rule, d->emb_stage, in,
                     weighted_change(f->G + (in * f->nfeat + k + 1) * dim, pooled, gold, dim))))
            carry_drop(&c);
    }
    return carry_flush(&c, err);
}

/* A fault in MLP stage s changing output feature i: weights (i, c0..c1-1), or
 * the bias when c0 == c1. */
static int mlp_trial(pvf_exec *ex, const pvf_golden *g, dlrm_fast *f, const dlrm_rule *rule, int s,
                     int64_t i, int64_t c0, int64_t c1, pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const pvf_dlrm *d = m->arch_state;
    int64_t in, out;
    mlp_geometry(m, s, &in, &out);
    const float *w = pvf_exec_weights(ex, d->w[s]) + i * in, *b = pvf_exec_weights(ex, d->b[s]);
    const float *w0 = m->params[d->w[s]].value + i * in, *b0 = m->params[d->b[s]].value;
    const int last = s == m->nstages - 1, bias = c0 == c1;
    /* One bound for every input but the fragile ones: |dx_i| <= sum_j |dW_ij| |x_j|. */
    const int64_t *visit = NULL;
    int64_t nvisit = f->n;
    if (rule->enabled) {
        const double *q = rule->q[s];
        double ratio = 0, worst = 0;
        if (bias) {
            worst = fabs((double)b[i] - (double)b0[i]);
            ratio = worst * q[in * out + i];
        }
        for (int64_t j = c0; j < c1; j++) {
            const double dw = fabs((double)w[j] - (double)w0[j]);
            ratio += dw * q[j * out + i];
            worst += dw * f->xmax[s][j];
        }
        if (ratio * (1 + BOUND_SLACK) < 1 && worst <= DELTA_CAP) {
            visit = rule->fragile[s];
            nvisit = rule->nfragile[s];
        }
    }
    /* The bottom MLP's output is the first block of the embedding stage's output. */
    const int next = last ? m->nstages : s + 1 == d->emb_stage ? d->first_top : s + 1;
    carry c;
    carry_init(&c, ex, g, r, next);
    for (int64_t t = 0; t < nvisit; t++) {
        const int64_t row = visit ? visit[t] : t;
        const float *x = mlp_input(f, g, m, s, row);
        if (c1 - c0 == 1 && x[c0] == 0.0f)
            continue; /* W_ij * 0 = 0 for a finite W_ij: feature i unchanged */
        const double *sens = NULL;
        if (!last && rule->enabled) {
            /* before any arithmetic: |dx_i| <= |db_i| + sum_j |dW_ij| |x_j| */
            sens = s < d->emb_stage ? f->sens[s] + row * out : f->sens[s];
            double change = bias ? fabs((double)b[i] - (double)b0[i]) : 0;
            for (int64_t j = c0; j < c1; j++)
                change += fabs((double)w[j] - (double)w0[j]) * fabs((double)x[j]);
            if (change <= DELTA_CAP && settles(rule, s, row, change * sens[i]))
                continue;
        }
        float v = 0.0f;
        for (int64_t j = 0; j < in; j++)
            v += w[j] * x[j];
        v += b[i];
        r->stage_rows++;
        if (last)
            pvf_sigmoid(&v, 1);
        else
            v = v < 0.0f ? 0.0f : v; /* as pvf_relu */
        const float gold = last ? g->out[row] : g->stage_in[s + 1][row * out + i];
        if (memcmp(&v, &gold, sizeof v) == 0)
            continue;
        if (sens && settles(rule, s, row, weighted_change(sens + i, &v, &gold, 1)))
            continue;
        float *slot = carry_push(&c, row, err);
        if (!slot)
            return -1;
        slot[last ? 0 : i] = v;
        if (next == d->first_top)
            r->stage_rows++; /* the embedding stage, for this row */
    }
    return carry_flush(&c, err);
}

int pvf_dlrm_fast_trial(pvf_exec *ex, const pvf_golden *g, int param, const pvf_fault_effect *eff,
                        pvf_trial_result *r, pvf_err *err) {
    dlrm_fast *f = g->fast;
    const pvf_model *m = ex->m;
    const pvf_dlrm *d = m->arch_state;
    if (!f || eff->hi <= eff->lo)
        return 1;
    const dlrm_rule *rule = rule_get(f, m, g, err);
    if (!rule)
        return -1;
    if (f->table_of[param] >= 0)
        return embedding_trial(ex, g, f, rule, param, f->table_of[param], eff, r, err);
    const int s = m->params[param].stage;
    const float *v = pvf_exec_weights(ex, param);
    for (int64_t e = eff->lo; e < eff->hi; e++)
        if (!isfinite(v[e]))
            return 1; /* NaN/Inf also reaches inputs with x_j = 0: every input, exactly */
    int64_t in, out;
    mlp_geometry(m, s, &in, &out);
    if (param == d->b[s])
        return eff->hi - eff->lo == 1 ? mlp_trial(ex, g, f, rule, s, eff->lo, 0, 0, r, err) : 1;
    const int64_t i = eff->lo / in;
    if ((eff->hi - 1) / in != i)
        return 1;
    return mlp_trial(ex, g, f, rule, s, i, eff->lo - i * in, eff->hi - i * in, r, err);
}

/* ---- prepare --------------------------------------------------------------- */

typedef struct read_pair {
    int64_t key, input;
} read_pair;

static int by_key(const void *a, const void *b) {
    const read_pair *x = a, *y = b;
    if (x->key != y->key)
        return (x->key > y->key) - (x->key < y->key);
    return (x->input > y->input) - (x->input < y->input);
}

/* The bags of the first n eval inputs and which inputs read each row. */
static int build_read_map(dlrm_fast *f, const pvf_model *m, const pvf_evalset *e) {
    const pvf_dlrm *d = m->arch_state;
    long io = pvf_st_find(&e->file, "sparse_offsets"), ii = pvf_st_find(&e->file, "sparse_indices");
    if (io < 0 || ii < 0)
        return -1;
    pvf_tensor off, idx;
    pvf_st_view(&e->file, (size_t)io, &off);
    pvf_st_view(&e->file, (size_t)ii, &idx);
    const int64_t nbags = f->n * d->ntables, all_bags = e->n * d->ntables;
    f->bag_off = malloc((size_t)(nbags + 1) * sizeof *f->bag_off);
    if (!f->bag_off)
        return -1;
    for (int64_t at = 0; at <= nbags; at++)
        f->bag_off[at] = at < all_bags ? pvf_tensor_get_i64(&off, at) : idx.shape[0];
    const int64_t total = f->bag_off[nbags];
    f->bag_idx = malloc((size_t)(total > 0 ? total : 1) * sizeof *f->bag_idx);
    read_pair *pairs = malloc((size_t)(total > 0 ? total : 1) * sizeof *pairs);
    if (!f->bag_idx || !pairs) {
        free(pairs);
        return -1;
    }
    f->table_base[0] = 0;
    for (int k = 0; k < d->ntables; k++)
        f->table_base[k + 1] = f->table_base[k] + d->rows[k];
    for (int64_t at = 0; at < nbags; at++) {
        for (int64_t t = f->bag_off[at]; t < f->bag_off[at + 1]; t++) {
            f->bag_idx[t] = pvf_tensor_get_i64(&idx, t);
            pairs[t] = (read_pair){f->table_base[at % d->ntables] + f->bag_idx[t], at / d->ntables};
        }
    }
    qsort(pairs, (size_t)total, sizeof *pairs, by_key);
    f->read_key = malloc((size_t)(total > 0 ? total : 1) * sizeof *f->read_key);
    f->read_input = malloc((size_t)(total > 0 ? total : 1) * sizeof *f->read_input);
    if (!f->read_key || !f->read_input) {
        free(pairs);
        return -1;
    }
    f->nread = 0;
    for (int64_t t = 0; t < total; t++) {
        if (f->nread > 0 && f->read_key[f->nread - 1] == pairs[t].key &&
            f->read_input[f->nread - 1] == pairs[t].input)
            continue; /* a row twice in one bag: one reader */
        f->read_key[f->nread] = pairs[t].key;
        f->read_input[f->nread++] = pairs[t].input;
    }
    free(pairs);
    return 0;
}

/* Bounds are sound only while no carried value can overflow. */
static int bounds_apply(const dlrm_fast *f, const pvf_model *m, const pvf_golden *g) {
    const pvf_dlrm *d = m->arch_state;
    if (d->itself)
        return 0; /* t_a . t_a is quadratic in its change */
    for (int s = 0; s < m->nstages; s++) {
        if (s == d->emb_stage)
            continue;
        const pvf_param *w = &m->params[d->w[s]], *b = &m->params[d->b[s]];
        if (!all_below(w->value, w->numel, GOLDEN_CAP) ||
            !all_below(b->value, b->numel, GOLDEN_CAP))
            return 0;
    }
    for (int s = 0; s < m->nstages; s++)
        if (g->stage_in[s] && !all_below(g->stage_in[s], f->n * m->stages[s].in_size, GOLDEN_CAP))
            return 0;
    return 1;
}

/* Sensitivities, golden logits and magnitudes (see the top of the file). */
static int build_bounds(dlrm_fast *f, const pvf_model *m, const pvf_golden *g) {
    const pvf_dlrm *d = m->arch_state;
    const int64_t n = f->n, dim = f->dim, nf = f->nfeat, last = m->nstages - 1;
    /* top MLP: S of each stage's outputs, from the logit backwards */
    for (int s = (int)last; s >= d->first_top; s--) {
        int64_t in, out;
        mlp_geometry(m, s, &in, &out);
        double *below = calloc((size_t)in, sizeof *below);
        if (!below)
            return -1;
        if (s == last) {
            f->sens[s] = calloc(1, sizeof(double));
            if (!f->sens[s]) {
                free(below);
                return -1;
            }
            f->sens[s][0] = 1.0;
        }
        const float *w = m->params[d->w[s]].value;
        for (int64_t i = 0; i < out; i++)
            for (int64_t j = 0; j < in; j++)
                below[j] += fabs((double)w[i * in + j]) * f->sens[s][i];
        if (s > d->first_top)
            f->sens[s - 1] = below;
        else
            f->sens_x = below;
    }
    /* S of the feature vectors, per input */
    f->G = malloc((size_t)(n * nf * dim) * sizeof *f->G);
    f->z0 = malloc((size_t)n * sizeof *f->z0);
    for (int s = 0; s < m->nstages; s++)
        if (!(f->allow[s] = calloc((size_t)n, sizeof *f->allow[s])))
            return -1;
    if (!f->G || !f->z0)
        return -1;
    for (int64_t r = 0; r < n; r++) {
        const float *t = g->stage_in[d->first_top] + r * f->width;
        for (int64_t a = 0; a < nf; a++) {
            double *ga = f->G + (r * nf + a) * dim;
            for (int64_t c = 0; c < dim; c++)
                ga[c] = d->dot ? (a == 0 ? f->sens_x[c] : 0.0) : f->sens_x[a * dim + c];
            if (!d->dot)
                continue;
            for (int64_t o = 0; o < nf; o++) {
                if (o == a)
                    continue;
                const double sp = f->sens_x[pair_index(dim, a > o ? a : o, a > o ? o : a)];
                for (int64_t c = 0; c < dim; c++)
                    ga[c] += sp * fabs((double)t[o * dim + c]);
            }
        }
    }
    /* bottom MLP: S per input, from the bottom vector backwards */
    for (int s = d->emb_stage - 1; s >= 0; s--) {
        int64_t in, out;
        mlp_geometry(m, s, &in, &out);
        double *sens = f->sens[s] = malloc((size_t)(n * out) * sizeof *sens);
        if (!sens)
            return -1;
        for (int64_t r = 0; r < n; r++) {
            double *sr = sens + r * out;
            if (s == d->emb_stage - 1) {
                memcpy(sr, f->G + r * nf * dim, (size_t)dim * sizeof *sr);
                continue;
            }
            int64_t nin, nout;
            mlp_geometry(m, s + 1, &nin, &nout);
            const float *w = m->params[d->w[s + 1]].value;
            const double *up = f->sens[s + 1] + r * nout;
            for (int64_t i = 0; i < out; i++) {
                double acc = 0;
                for (int64_t k = 0; k < nout; k++)
                    acc += fabs((double)w[k * nin + i]) * up[k];
                sr[i] = acc;
            }
        }
    }
    /* golden logit; rounding allowances */
    for (int64_t r = 0; r < n; r++) {
        int64_t in, out;
        mlp_geometry(m, (int)last, &in, &out);
        const float *h = g->stage_in[last] + r * in, *w = m->params[d->w[last]].value;
        double z = m->params[d->b[last]].value[0];
        for (int64_t j = 0; j < in; j++)
            z += (double)w[j] * h[j];
        f->z0[r] = z;
        /* rho[s]: what layer s's dot products may round, sum_i S_i gamma (|b_i| +
         * sum_j |W_ij x_j|); own[s]: its largest term, one faulty feature's */
        double rho[PVF_DLRM_MAX_STAGES] = {0}, own[PVF_DLRM_MAX_STAGES] = {0}, rho_int = 0;
        for (int s = 0; s < m->nstages; s++) {
            if (s == d->emb_stage)
                continue;
            mlp_geometry(m, s, &in, &out);
            const float *wb = m->params[d->b[s]].value, *ws = m->params[d->w[s]].value;
            const double *sens = s < d->emb_stage ? f->sens[s] + r * out : f->sens[s];
            const float *x = mlp_input(f, g, m, s, r);
            for (int64_t i = 0; i < out; i++) {
                double a = fabs((double)wb[i]);
                for (int64_t j = 0; j < in; j++)
                    a += fabs((double)ws[i * in + j] * (double)x[j]);
                rho[s] += gamma_n(in + 1) * sens[i] * a;
                own[s] = fmax(own[s], gamma_n(in + 1) * sens[i] * a);
            }
        }
        if (d->dot) {
            const float *t = g->stage_in[d->first_top] + r * f->width;
            for (int64_t a = 1; a < nf; a++)
                for (int64_t o = 0; o < a; o++) {
                    double dot = 0;
                    for (int64_t c = 0; c < dim; c++)
                        dot += fabs((double)t[a * dim + c] * (double)t[o * dim + c]);
                    rho_int += gamma_n(dim) * f->sens_x[pair_index(dim, a, o)] * dot;
                }
        }
        /* The faulty pass and golden both round (2x) every layer after the
         * faulty stage, and the faulty feature's own product; z0, the exact
         * sum of the golden float products, is off golden's float logit by up
         * to rho[last]. An embedding fault's bag sums are bit-exact. */
        double after = 0;
        for (int s = (int)last; s >= 0; s--) {
            if (s == d->emb_stage) {
                after += rho_int;
                f->allow[s][r] = 2 * after + rho[last];
                continue;
            }
            f->allow[s][r] = 2 * (after + own[s]) + rho[last];
            after += rho[s];
        }
    }
    for (int s = 0; s < m->nstages; s++) {
        if (s == d->emb_stage)
            continue;
        int64_t in, out;
        mlp_geometry(m, s, &in, &out);
        double *xm = f->xmax[s] = calloc((size_t)in, sizeof *xm);
        if (!xm)
            return -1;
        for (int64_t r = 0; r < n; r++) {
            const float *x = mlp_input(f, g, m, s, r);
            for (int64_t j = 0; j < in; j++)
                xm[j] = fmax(xm[j], fabs((double)x[j]));
        }
    }
    return 0;
}

void pvf_dlrm_fast_free(void *state) {
    dlrm_fast *f = state;
    if (!f)
        return;
    dlrm_rule *r = atomic_load_explicit(&f->rules, memory_order_acquire);
    while (r) {
        dlrm_rule *next = r->next;
        rule_free(r, PVF_DLRM_MAX_STAGES);
        r = next;
    }
    pthread_mutex_destroy(&f->lock);
    free(f->table_of);
    free(f->bag_off);
    free(f->bag_idx);
    free(f->read_key);
    free(f->read_input);
    free(f->xtop);
    for (int s = 0; s < PVF_DLRM_MAX_STAGES; s++) {
        free(f->sens[s]);
        free(f->xmax[s]);
    }
    free(f->sens_x);
    free(f->G);
    free(f->z0);
    for (int s = 0; s < PVF_DLRM_MAX_STAGES; s++)
        free(f->allow[s]);
    free(f);
}

int pvf_dlrm_fast_prepare(const pvf_model *m, const pvf_golden *g, void **state, pvf_err *err) {
    const pvf_dlrm *d = m->arch_state;
    *state = NULL;
    if (!g->eval)
        return 0; /* no read map without the eval set: the plain path */
    dlrm_fast *f = calloc(1, sizeof *f);
    if (!f)
        return pvf_err_set(err, "dlrm fast path: out of memory");
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->rules, NULL);
    f->n = g->n;
    f->dim = d->dim;
    f->nfeat = d->ntables + 1;
    f->width = f->nfeat * f->dim;
    f->top_in = d->top[0];
    f->table_of = malloc((size_t)m->nparams * sizeof *f->table_of);
    f->xtop = malloc((size_t)(f->n * f->top_in) * sizeof *f->xtop);
    if (!f->table_of || !f->xtop || build_read_map(f, m, g->eval))
        goto oom;
    for (int p = 0; p < m->nparams; p++)
        f->table_of[p] = -1;
    for (int k = 0; k < d->ntables; k++)
        f->table_of[d->emb[k]] = k;
    const float *t = g->stage_in[d->first_top];
    if (d->dot)
        pvf_interaction_dot(t, f->n, f->nfeat, f->dim, d->itself, f->xtop);
    else
        memcpy(f->xtop, t, (size_t)(f->n * f->top_in) * sizeof *f->xtop);
    f->bounds = bounds_apply(f, m, g);
    if (f->bounds && build_bounds(f, m, g))
        goto oom;
    dlrm_rule *rule = rule_build(f, m, g, m->outcome_threshold > 0 ? m->outcome_threshold : 0);
    if (!rule)
        goto oom;
    atomic_store_explicit(&f->rules, rule, memory_order_release);
    *state = f;
    return 0;
oom:
    pvf_dlrm_fast_free(f);
    return pvf_err_set(err, "dlrm fast path: out of memory");
}
