/* lenet_fast.c - LeNet's fast trial path.
 *
 * A fault in fully connected layer j changes one output feature i (one row
 * of the weight, or its bias); a fault in a convolution changes one output
 * channel. How far such a change can move the logits is bounded from the
 * golden pass: the sensitivity of every logit to every stage's input
 * features, through |W| (ReLU and max-pool are 1-Lipschitz, so a change
 * never grows through them). A trial is settled without inference when
 * even the largest input the faulty weights meet cannot move any eval
 * input's logits by its golden top-1 margin; otherwise each eval input is
 * bounded on its own (a conv weight cell by cell from the cached pre-pool
 * maps, then through the first fc stage's ReLUs), and only those the bound
 * cannot clear are computed: one dot product per input for a fully
 * connected fault (the faulty row, exactly), or the faulty output channel
 * for that input; the change then goes on sparsely into the next fully
 * connected stage (its cached pre-activations plus the changed columns),
 * dense from there, for the inputs whose activations still differ.
 *
 * Finer bounds for a single conv weight or bias, per eval input, before
 * computing it: the linearized tail (margin gradients under golden's ReLU /
 * max-pool pattern, plus the worst case of every unit that a change of that
 * size may flip, from per-input pattern radii), then, for the last conv
 * stage, the change with its signs as intervals from its pooled cells
 * through the fc stages (for the one before, computing the input costs
 * less than that bound through the last conv: COARSE_WORTH). A bias counts
 * as a weight whose every tap is 1. Every interval carries golden's and
 * the recompute's rounding; a cell or unit within rounding of changing its
 * winner or sign takes the ReLU / max of its bounds. A fc row with huge
 * values runs as the full pass only when some sum can actually overflow
 * (|w| |x| against FLT_MAX / 2). The fc stages' interval products of the
 * inputs that need them run as one sgemm per stage and batch of inputs
 * (signed_batch), and after each hidden fc stage the linearized tail from
 * there (the next stage's margin gradients and pattern radii) clears the
 * inputs it can before the next product; the inputs none of the bounds
 * clear are computed after that, in order (the faulty channel by a direct
 * convolution over a zero-padded copy of the input, conv_channel, its
 * change carried through the last conv stage by conv_delta; for one
 * huge weight of the last conv stage, an exponent flip, its products alone
 * where they provably are the whole sum, conv_channel_huge). Where a fc
 * stage's input changes so much that the logits follow the direction of
 * the changed features through the later stages (an exponent flip of a fc
 * weight, or of a last-conv weight: its pooled cells), the input takes
 * that direction's top-1 without computing them (dominant_top; a single
 * feature's direction kept per feature, a conv fault's computed for a
 * batch of inputs, dom_flush). */
#include "lenet.h"

#include <cblas.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LENET_STAGES (2 * LENET_MAX_LAYERS + 2)

/* Rounding slack: bounds are computed in double and scaled up by this, and a
 * margin counts only beyond 1e-4 of its logits' scale, since a full forward
 * pass rounds differently from golden by about that much at most. */
#define BOUND_SCALE (1.0 + 1e-6)
#define MARGIN_TOL  1e-4

/* A hint to fetch memory ahead (the bounds walk every eval input's data). */
#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

static inline void prefetch_span(const void *p, size_t bytes) {
    for (size_t b = 0; b < bytes; b += 64)
        PREFETCH((const char *)p + b);
}

/* The signed bounds are not tried when the |W| bound exceeds the margin
 * by this factor: they would not clear the input, only cost time. */
#define HOPELESS 1e6

/* Nor is the cell-by-cell bound, nor the linearized tail, for a change
 * whose channel bound exceeds the margin by this factor (an exponent flip
 * to ~1e38): the exact recompute follows anyway. */
#define ASTRONOMIC 1e12

/* A fault of the conv stage before the last: the cell-by-cell bound and
 * the linearized tail are not tried for an input whose first bound exceeds
 * its slack this many times; computing the input (conv_delta) costs less
 * than what they clear saves. From 1,000-fold up they cleared no input of
 * conv1.weight bits 18-27; per flipped bit of conv1.weight (bits 16-31,
 * the sum of the mean trials), 100 and 30 were 3-9 % faster than 1,000
 * (30 by 1-2 % the faster), 10 and 3 slower (bits 12-17 up to 2x). Such a
 * fault's inputs have no signed bound: through the last conv's filters it
 * cleared most of those it was tried for, but cost more than computing
 * them once the faulty channel's convolution kept its sums in registers
 * (conv_block). */
#define COARSE_WORTH 30.0

/* WIDER_VECTORS: a loop of single operations (no fused multiply-add, the
 * same values) also built for AVX2, chosen at load time where the CPU has
 * it. SELECTS_VECTORIZE: lets gcc turn the selects of a loop into blends
 * (vectorized, no branch): no FP operation traps here; the values computed
 * do not change. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define WIDER_VECTORS __attribute__((target_clones("avx2", "default")))
#else
#define WIDER_VECTORS
#endif
#if defined(__GNUC__) && !defined(__clang__)
#define SELECTS_VECTORIZE __attribute__((optimize("no-trapping-math"))) WIDER_VECTORS
#else
#define SELECTS_VECTORIZE
#endif

/* Pattern radii kept per eval input and conv output channel. */
#define RADII 32

/* fmax / fmin for values that are never NaN here, inlined */
static inline double max2(double a, double b) {
    return a > b ? a : b;
}

static inline double min2(double a, double b) {
    return a < b ? a : b;
}

/* Sums of products for the bounds, in four chains side by side (in one,
 * each add waits on the one before): their rounding, whatever the order,
 * is far inside BOUND_SCALE's slack. a float or double, b double. */
static inline double dot_fd(const float *a, const double *b, int64_t n) {
    double s[4] = {0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (int i = 0; i < 4; i++)
            s[i] += (double)a[k + i] * b[k + i];
    for (; k < n; k++)
        s[0] += (double)a[k] * b[k];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static inline double dot_dd(const double *a, const double *b, int64_t n) {
    double s[4] = {0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (int i = 0; i < 4; i++)
            s[i] += a[k + i] * b[k + i];
    for (; k < n; k++)
        s[0] += a[k] * b[k];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* The largest of a[0..n) (>= 0), likewise; a NaN may or may not pass. */
static inline double max_of(const double *a, int64_t n) {
    double s[4] = {0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 4 <= n; k += 4)
        for (int i = 0; i < 4; i++)
            s[i] = max2(s[i], a[k + i]);
    for (; k < n; k++)
        s[0] = max2(s[0], a[k]);
    return max2(max2(s[0], s[1]), max2(s[2], s[3]));
}

typedef struct lenet_fast {
    int64_t n, classes;
    double *slack;       /* [n] golden top-1 margin minus the tolerance; < 0 never settles */
    double min_slack;    /* over all eval inputs */
    const int64_t *top1; /* golden top-1 per eval input (the golden pass's) */
    /* sens[s][f * classes + c]: bound on |Δ logit c| per unit |Δ x_f| of stage
     * s's input feature f (s >= 1); sens_max[s][f] its max over c. */
    double *sens[LENET_STAGES], *sens_max[LENET_STAGES];
    /* pair[s][t * in + f]: sens[s][f * classes + t] + sens_max[s][f], a
     * bound on |Δ (logit t - any other)| per unit |Δ x_f| (pair_factor),
     * laid out per top-1 class t for the bounds' loops over features. */
    double *pair[LENET_STAGES];
    /* Conv stage s: chan[s][co * classes + c] sums the sensitivity of the
     * pooled output channel co over its positions; chan_max its max over c. */
    double *chan[LENET_STAGES], *chan_max[LENET_STAGES];
    /* Conv stage s: per eval input and input channel, max |x| over the
     * plane [n x cin], and over all inputs [cin]. Fc stage s: per input
     * feature max |x| over all inputs [in]. */
    float *xmax_row[LENET_STAGES], *xmax[LENET_STAGES];
    /* Fc stage s: golden pre-activations [n x out], the base a sparse change
     * of its input is added to. */
    float *pre[LENET_STAGES];
    /* Conv stage s: golden outputs before pooling [n x cout x oh x ow].
     * Any stage: per eval input the largest |x| over all its input [n]. */
    float *pre_pool[LENET_STAGES], *xmax_all[LENET_STAGES];
    double *filter_l1[LENET_STAGES]; /* [cout]: sum of |w| of each filter */
    double *kernel_l1[LENET_STAGES]; /* [cout x cin]: sum of |w| over each kernel */
    /* The linearized tail (linear_tail_prepare). gin[s][row * in + f], for
     * s >= lin_first: bound on |d(z_top1 - z_c)/dx_f| over c, the gradient
     * of the logit margins w.r.t. stage s's input under golden's ReLU and
     * max-pool pattern (rounded up to float). */
    int lin_first;
    float *gin[LENET_STAGES];
    /* Conv stage s (s + 1 >= lin_first), [(row * cout + co) * RADII + k]:
     * the RADII smallest radii rho (max |change| of output channel co) at
     * which a later unit's pattern may change, ascending (INFINITY: none),
     * and the cumulative error per unit rho of the units up to k. */
    double *radius[LENET_STAGES], *radius_cost[LENET_STAGES];
    double *unit_eps[LENET_STAGES]; /* hidden fc stage: [n x out] golden rounding bound */
    double *abs_sum[LENET_STAGES];  /* hidden fc stage: [n x out] golden sum |w x| + |b| */
    double *row_l1[LENET_STAGES];   /* fc stage: [out] sum of |w| of each row */
    float *absw[LENET_STAGES];      /* fc stage: |w| */
    float *wt[LENET_STAGES];        /* fc stage: w transposed [in x out], a column per feature */
    /* fc stage: golden's inputs by feature [in x n], what one weight of
     * the stage reads over all eval inputs, in one run (row by row that is
     * a cache line per input: a fc fault's first bound waited on memory) */
    float *xcol[LENET_STAGES];
    /* hidden fc stage s: [out x n] the largest change of unit i that eval
     * input row's slack clears (slack over the next stage's pair factor and
     * BOUND_SCALE, rounded down; -1: none), a run per unit for fc_trial */
    float *fc_limit[LENET_STAGES];
    double *in_r[LENET_STAGES], *in_cost[LENET_STAGES]; /* input_radii: [n x RADII] */
    /* near_bound, at the input of the hidden fc stage before the last,
     * near_t (0: none): per eval input the NEAR runner-up classes of least
     * margin [n x NEAR], their margins less the tolerance and then the least
     * of the others' [n x (NEAR + 1)], and their margin gradients under
     * golden's pattern [n x NEAR x in] (float); per unit of stage near_t
     * the L2 norm of its weights' row, and per top-1 class t and unit j
     * max over c of |w_last[t][j] - w_last[c][j]| [classes x out]. */
    int near_t;
    int32_t *near_class;
    double *near_margin;
    float *near_grad;
    double *near_norm, *near_dmax;
    /* Last stage, [(t * classes + c) * in + k]: w[t][k] - w[c][k] in double
     * (exact: two floats' difference) and its magnitude, the margin rows
     * margin_bound reads for top-1 t. */
    double *margin_w, *margin_abs;
    double *chan_l1; /* first fc stage: [out x last conv's cout] sum of |w|
                        over each row's columns of one channel */
    /* Hidden fc stage t's input grown without bound (dominant_prepare):
     * per input feature dom_reach[t] and dom_dir[t] [in], per eval input
     * dom_rest[t] [n], and dom_golden[t]. */
    double *dom_reach[LENET_STAGES], *dom_rest[LENET_STAGES], dom_golden[LENET_STAGES];
    struct dominant *dom_dir[LENET_STAGES];
} lenet_fast;

void lenet_fast_free(void *state) {
    lenet_fast *f = state;
    if (!f)
        return;
    free(f->slack);
    free(f->chan_l1);
    free(f->near_class);
    free(f->near_margin);
    free(f->near_grad);
    free(f->near_norm);
    free(f->near_dmax);
    free(f->margin_w);
    free(f->margin_abs);
    for (int s = 0; s < LENET_STAGES; s++) {
        free(f->sens[s]);
        free(f->sens_max[s]);
        free(f->pair[s]);
        free(f->chan[s]);
        free(f->chan_max[s]);
        free(f->xmax_row[s]);
        free(f->xmax[s]);
        free(f->pre[s]);
        free(f->pre_pool[s]);
        free(f->xmax_all[s]);
        free(f->filter_l1[s]);
        free(f->kernel_l1[s]);
        free(f->gin[s]);
        free(f->radius[s]);
        free(f->radius_cost[s]);
        free(f->unit_eps[s]);
        free(f->abs_sum[s]);
        free(f->row_l1[s]);
        free(f->absw[s]);
        free(f->wt[s]);
        free(f->xcol[s]);
        free(f->fc_limit[s]);
        free(f->dom_reach[s]);
        free(f->dom_rest[s]);
        free(f->dom_dir[s]);
        free(f->in_r[s]);
        free(f->in_cost[s]);
    }

    free(f);
}

static double *max_over_classes(const double *v, int64_t rows, int64_t classes) {
    double *out = malloc((size_t)rows * sizeof *out);
    if (!out)
        return NULL;
    for (int64_t f = 0; f < rows; f++) {
        double mx = 0;
        for (int64_t c = 0; c < classes; c++)
            mx = fmax(mx, v[f * classes + c]);
        out[f] = mx;
    }
    return out;
}

/* Sensitivity of the logits to the input of fc stage s, from its output's. */
static double *fc_sensitivity(const pvf_model *m, const lenet *l, int s, const double *next,
                              int64_t classes) {
    const int j = m->stages[s].layer;
    const int64_t in = l->fc_in[j], out = l->fc_out[j];
    const float *w = m->params[l->w[s]].value;
    double *sens = calloc((size_t)(in * classes), sizeof *sens);
    if (!sens)
        return NULL;
    for (int64_t i = 0; i < out; i++)
        for (int64_t k = 0; k < in; k++) {
            double a = fabs((double)w[i * in + k]);
            for (int64_t c = 0; c < classes; c++)
                sens[k * classes + c] += a * (next ? next[i * classes + c] : (i == c));
        }
    return sens;
}

/* Sensitivity of the logits to the input of conv stage s (cin x h x w),
 * from that of its pooled output: every path input -> pre-pool output ->
 * pooled cell, weighted by |w|. */
static double *conv_sensitivity(const pvf_model *m, const lenet *l, int s, const double *next,
                                int64_t classes) {
    const pvf_conv2d *cv = &l->conv[m->stages[s].layer];
    const int64_t ph = cv->oh / l->pool, pw = cv->ow / l->pool, k = cv->k;
    const float *w = m->params[l->w[s]].value;
    double *sens = calloc((size_t)(cv->cin * cv->h * cv->w * classes), sizeof *sens);
    if (!sens)
        return NULL;
    for (int64_t co = 0; co < cv->cout; co++)
        for (int64_t ci = 0; ci < cv->cin; ci++)
            for (int64_t ky = 0; ky < k; ky++)
                for (int64_t kx = 0; kx < k; kx++) {
                    double a = fabs((double)w[((co * cv->cin + ci) * k + ky) * k + kx]);
                    for (int64_t oy = 0; oy < ph * l->pool; oy++)
                        for (int64_t ox = 0; ox < pw * l->pool; ox++) {
                            int64_t y = oy * cv->stride - cv->pad + ky;
                            int64_t x = ox * cv->stride - cv->pad + kx;
                            if (y < 0 || y >= cv->h || x < 0 || x >= cv->w)
                                continue;
                            const double *nx =
                                next + ((co * ph + oy / l->pool) * pw + ox / l->pool) * classes;
                            double *sx = sens + ((ci * cv->h + y) * cv->w + x) * classes;
                            for (int64_t c = 0; c < classes; c++)
                                sx[c] += a * nx[c];
                        }
                }
    return sens;
}

/* gamma_k of a k-term float sum in any order (Higham), doubled for slack. */
static double sum_gamma(int64_t k) {
    const double u = ldexp(1.0, -24);
    return 2.0 * (double)k * u / (1.0 - (double)k * u);
}

/* v rounded up to float (v >= 0). */
static float float_up(double v) {
    return (float)(v * (1 + 1e-6) + 1e-37); /* above any float rounding, subnormals too */
}

/* Keeps the RADII smallest radii (ascending) with their costs. */
static void radii_insert(double *r, double *cost, double rv, double cv) {
    if (!(rv >= 0))
        rv = 0;
    if (!(rv < r[RADII - 1]))
        return;
    int k = RADII - 1;
    for (; k > 0 && r[k - 1] > rv; k--) {
        r[k] = r[k - 1];
        cost[k] = cost[k - 1];
    }
    r[k] = rv;
    cost[k] = cv;
}

/* The margin gradients gin[s] of every eval input, from the logits back to
 * the last conv stage's input, under golden's pattern: G[k * classes + c] =
 * d(z_top1 - z_c)/dx_k, through the active units of each ReLU and the
 * golden winner of each active pooled cell. */
static int margin_gradients(const pvf_model *m, const pvf_golden *g, lenet_fast *f) {
    const lenet *l = m->arch_state;
    const int last = m->nstages - 1, nconv = l->nconv;
    const int64_t n = f->n, classes = f->classes;
    int64_t widest = 0;
    for (int s = f->lin_first; s <= last; s++) {
        const int64_t in = m->stages[s].in_size;
        widest = in > widest ? in : widest;
        if (!(f->gin[s] = malloc((size_t)(n * in) * sizeof(float))))
            return -1;
    }
    double *G = malloc((size_t)(2 * classes * widest) * sizeof *G);
    if (!G)
        return -1;
    double *Gn = G + classes * widest;
    for (int64_t i = 0; i < n; i++) {
        const int64_t t = f->top1[i];
        int64_t width = m->stages[last].in_size;
        const float *w = m->params[l->w[last]].value;
        for (int64_t k = 0; k < width; k++)
            for (int64_t c = 0; c < classes; c++)
                G[k * classes + c] = (double)w[t * width + k] - (double)w[c * width + k];
        for (int s = last;; s--) {
            float *gi = f->gin[s] + i * width;
            for (int64_t k = 0; k < width; k++) {
                double mx = 0;
                for (int64_t c = 0; c < classes; c++)
                    mx = fmax(mx, fabs(G[k * classes + c]));
                gi[k] = float_up(mx);
            }
            if (s == f->lin_first)
                break;
            const int64_t in = m->stages[s - 1].in_size;
            memset(Gn, 0, (size_t)(in * classes) * sizeof *Gn);
            w = m->params[l->w[s - 1]].value;
            if (s - 1 >= nconv) { /* fc stage s - 1, its active units */
                const float *pre = f->pre[s - 1] + i * width;
                for (int64_t j = 0; j < width; j++) {
                    if (!(pre[j] > 0))
                        continue;
                    const double *gj = G + j * classes;
                    for (int64_t k = 0; k < in; k++) {
                        const double a = w[j * in + k];
                        double *gk = Gn + k * classes;
                        for (int64_t c = 0; c < classes; c++)
                            gk[c] += a * gj[c];
                    }
                }
            } else { /* conv stage s - 1: each active pooled cell's winner */
                const pvf_conv2d *cv = &l->conv[s - 1];
                const int64_t ph = cv->oh / l->pool, pw = cv->ow / l->pool, kk = cv->k;
                const float *pooled = g->stage_in[s] + i * width;
                const float *pre = f->pre_pool[s - 1] + i * cv->cout * cv->oh * cv->ow;
                for (int64_t u = 0; u < width; u++) {
                    if (!(pooled[u] > 0))
                        continue;
                    const int64_t co = u / (ph * pw), py = u % (ph * pw) / pw, px = u % pw;
                    const float *plane = pre + co * cv->oh * cv->ow;
                    int64_t oy = py * l->pool, ox = px * l->pool;
                    for (int64_t dy = 0; dy < l->pool; dy++)
                        for (int64_t dx = 0; dx < l->pool; dx++) {
                            const int64_t y = py * l->pool + dy, x = px * l->pool + dx;
                            if (plane[y * cv->ow + x] > plane[oy * cv->ow + ox]) {
                                oy = y;
                                ox = x;
                            }
                        }
                    const double *gu = G + u * classes;
                    for (int64_t ci = 0; ci < cv->cin; ci++)
                        for (int64_t ky = 0; ky < kk; ky++) {
                            const int64_t y = oy * cv->stride - cv->pad + ky;
                            if (y < 0 || y >= cv->h)
                                continue;
                            for (int64_t kx = 0; kx < kk; kx++) {
                                const int64_t x = ox * cv->stride - cv->pad + kx;
                                if (x < 0 || x >= cv->w)
                                    continue;
                                const double a = w[((co * cv->cin + ci) * kk + ky) * kk + kx];
                                double *gk = Gn + ((ci * cv->h + y) * cv->w + x) * classes;
                                for (int64_t c = 0; c < classes; c++)
                                    gk[c] += a * gu[c];
                            }
                        }
                }
            }
            double *tmp = G;
            G = Gn;
            Gn = tmp;
            width = in;
        }
    }
    free(G < Gn ? G : Gn);
    return 0;
}

/* The rounding bound of every hidden fc unit's golden pre-activation. */
static int unit_rounding(const pvf_model *m, const pvf_golden *g, lenet_fast *f) {
    const lenet *l = m->arch_state;
    for (int t = l->nconv; t < m->nstages - 1; t++) {
        const int64_t in = m->stages[t].in_size, out = m->stages[t].out_size;
        const float *w = m->params[l->w[t]].value, *b = m->params[l->b[t]].value;
        if (!(f->unit_eps[t] = malloc((size_t)(f->n * out) * sizeof(double))) ||
            !(f->abs_sum[t] = malloc((size_t)(f->n * out) * sizeof(double))))
            return -1;
        const int64_t out2 = m->stages[t + 1].out_size;
        if (!(f->row_l1[t + 1] = calloc((size_t)out2, sizeof(double))) ||
            !(f->absw[t + 1] = malloc((size_t)(out2 * out) * sizeof(float))))
            return -1;
        for (int64_t e = 0; e < out2 * out; e++)
            f->absw[t + 1][e] = fabsf(m->params[l->w[t + 1]].value[e]);
        for (int64_t j = 0; j < m->stages[t + 1].out_size; j++)
            for (int64_t k = 0; k < out; k++)
                f->row_l1[t + 1][j] += fabs((double)m->params[l->w[t + 1]].value[j * out + k]);
        for (int64_t i = 0; i < f->n; i++) {
            const float *x = g->stage_in[t] + i * in;
            for (int64_t j = 0; j < out; j++) {
                double sum = fabs((double)b[j]);
                for (int64_t k = 0; k < in; k++)
                    sum += fabs((double)w[j * in + k] * (double)x[k]);
                f->abs_sum[t][i * out + j] = sum;
                f->unit_eps[t][i * out + j] = sum_gamma(in + 1) * sum;
            }
        }
    }
    return 0;
}

/* a[] for the hidden fc stages t0.. (concatenated): the worst change of
 * each unit's pre-activation per unit rho, when stage t0's input features
 * change by at most rho * a_in[k] (|W| products: ReLU is 1-Lipschitz). */
static void fc_coefficients(const pvf_model *m, int t0, const double *a_in, double *a) {
    const lenet *l = m->arch_state;
    const double *prev = a_in;
    for (int t = t0; t < m->nstages - 1; t++) {
        const int64_t in = m->stages[t].in_size, out = m->stages[t].out_size;
        const float *w = m->params[l->w[t]].value;
        for (int64_t j = 0; j < out; j++) {
            double sum = 0;
            for (int64_t k = 0; k < in; k++)
                sum += fabs((double)w[j * in + k]) * prev[k];
            a[j] = sum * BOUND_SCALE;
        }
        prev = a;
        a += out;
    }
}

/* Inserts the hidden fc units of stages t0.. of eval input i into its
 * radii: unit j may leave golden's pattern once rho * a[j] reaches its
 * |golden pre-activation| minus rounding; it then adds at most that times
 * its output's margin gradient. */
static void insert_fc_units(const pvf_model *m, const lenet_fast *f, int t0, const double *a,
                            int64_t i, double *r, double *cost) {
    for (int t = t0; t < m->nstages - 1; t++) {
        const int64_t out = m->stages[t].out_size;
        const float *pre = f->pre[t] + i * out, *gnext = f->gin[t + 1] + i * out;
        const double *e = f->unit_eps[t] + i * out;
        for (int64_t j = 0; j < out; j++)
            if (a[j] > 0)
                radii_insert(r, cost, (fabs((double)pre[j]) - e[j]) / a[j] / BOUND_SCALE,
                             a[j] * gnext[j]);
        a += out;
    }
}

static void radii_init(double *r, double *cost) {
    for (int k = 0; k < RADII; k++) {
        r[k] = INFINITY;
        cost[k] = 0;
    }
}

static void radii_cumulate(double *cost) {
    for (int k = 1; k < RADII; k++)
        cost[k] += cost[k - 1];
}

/* Per eval input and output channel co of conv stage s, the radii rho (max
 * |change| over co's output cells) at which a later ReLU or max-pool unit
 * may leave golden's pattern: |golden pre-activation| minus its rounding
 * over the unit's worst-case change per unit rho (|W| products, pattern
 * independent since ReLU and max-pool are 1-Lipschitz). Such a unit adds at
 * most its change times its output's margin gradient (2x for a pooled cell:
 * the winner's change plus the actual one). */
static int pattern_radii(const pvf_model *m, lenet_fast *f, int s) {
    const lenet *l = m->arch_state;
    const int last = m->nstages - 1, nconv = l->nconv, fc0 = nconv;
    const int64_t n = f->n, cout = l->conv[s].cout;
    const int64_t in0 = m->stages[fc0].in_size;
    int64_t total = 0;
    for (int t = fc0; t < last; t++)
        total += m->stages[t].out_size;
    double *a = malloc((size_t)(in0 + total) * sizeof *a);
    double *bcoef = calloc((size_t)l->conv[nconv - 1].cout, sizeof *bcoef);
    f->radius[s] = malloc((size_t)(n * cout * RADII) * sizeof(double));
    f->radius_cost[s] = malloc((size_t)(n * cout * RADII) * sizeof(double));
    if (!a || !bcoef || !f->radius[s] || !f->radius_cost[s]) {
        free(a);
        free(bcoef);
        return -1;
    }
    const pvf_conv2d *cl = &l->conv[nconv - 1];
    const int64_t chan0 = in0 / cl->cout, kk = cl->k * cl->k, cols = cl->cin * kk;
    for (int64_t co = 0; co < cout; co++) {
        if (s == nconv - 1) {
            for (int64_t u = 0; u < in0; u++)
                a[u] = u / chan0 == co;
        } else { /* s == nconv - 2: through the last conv's filters on channel co */
            const float *w = m->params[l->w[nconv - 1]].value;
            for (int64_t c2 = 0; c2 < cl->cout; c2++) {
                bcoef[c2] = 0;
                for (int64_t e = 0; e < kk; e++)
                    bcoef[c2] += fabs((double)w[c2 * cols + co * kk + e]);
            }
            for (int64_t u = 0; u < in0; u++)
                a[u] = bcoef[u / chan0];
        }
        fc_coefficients(m, fc0, a, a + in0);
        for (int64_t i = 0; i < n; i++) {
            double *r = f->radius[s] + (i * cout + co) * RADII;
            double *cost = f->radius_cost[s] + (i * cout + co) * RADII;
            radii_init(r, cost);
            if (s == nconv - 2) { /* the last conv's pooled cells */
                const int64_t pw = cl->ow / l->pool;
                const float *pre = f->pre_pool[nconv - 1] + i * cl->cout * cl->oh * cl->ow;
                const float *gnext = f->gin[fc0] + i * in0;
                const float *bias = m->params[l->b[nconv - 1]].value;
                for (int64_t u = 0; u < in0; u++) {
                    const int64_t c2 = u / chan0, py = u % chan0 / pw, px = u % pw;
                    const double b = bcoef[c2];
                    if (b == 0)
                        continue;
                    const double ep = sum_gamma(cols + 1) * (f->filter_l1[nconv - 1][c2] *
                                                                 (double)f->xmax_all[nconv - 1][i] +
                                                             fabs((double)bias[c2]));
                    double v1 = -INFINITY, v2 = -INFINITY;
                    for (int64_t dy = 0; dy < l->pool; dy++)
                        for (int64_t dx = 0; dx < l->pool; dx++) {
                            const double v =
                                pre[(c2 * cl->oh + py * l->pool + dy) * cl->ow + px * l->pool + dx];
                            if (v > v1) {
                                v2 = v1;
                                v1 = v;
                            } else if (v > v2)
                                v2 = v;
                        }
                    double rr = 0;
                    if (v1 + ep < 0)
                        rr = (-v1 - ep) / b;
                    else if (v1 - ep > 0)
                        rr = fmin((v1 - ep) / b, (v1 - v2 - 2 * ep) / (2 * b));
                    radii_insert(r, cost, rr / BOUND_SCALE, 2 * b * BOUND_SCALE * gnext[u]);
                }
            }
            insert_fc_units(m, f, fc0, a + in0, i, r, cost);
            radii_cumulate(cost);
        }
    }
    free(a);
    free(bcoef);
    return 0;
}

/* Per eval input, the radii over rho = max |change| of hidden fc stage
 * t's input at which a hidden fc unit from t on may leave golden's
 * pattern, with their cumulative costs (as pattern_radii). */
static int input_radii(const pvf_model *m, lenet_fast *f, int t) {
    const int64_t in = m->stages[t].in_size, n = f->n;
    int64_t total = 0;
    for (int u = t; u < m->nstages - 1; u++)
        total += m->stages[u].out_size;
    double *a = malloc((size_t)(in + total) * sizeof *a);
    double *r = f->in_r[t] = malloc((size_t)(n * RADII) * sizeof(double));
    double *cost = f->in_cost[t] = malloc((size_t)(n * RADII) * sizeof(double));
    if (!a || !r || !cost) {
        free(a);
        return -1;
    }
    for (int64_t k = 0; k < in; k++)
        a[k] = 1;
    fc_coefficients(m, t, a, a + in);
    for (int64_t i = 0; i < n; i++) {
        radii_init(r + i * RADII, cost + i * RADII);
        insert_fc_units(m, f, t, a + in, i, r + i * RADII, cost + i * RADII);
        radii_cumulate(cost + i * RADII);
    }
    free(a);
    return 0;
}

/* The linearized tail from hidden fc stage t's input changing by at most
 * |mid| + rad per feature: its margin gradient times that, plus the units
 * that may leave golden's pattern; INFINITY when too many may. */
WIDER_VECTORS static double input_linear_bound(const pvf_model *m, const lenet_fast *f, int t,
                                               int64_t row, const double *mid, const double *rad) {
    const int64_t in = m->stages[t].in_size;
    double c[4096];
    if (in > 4096)
        return INFINITY;
    for (int64_t q = 0; q < in; q++)
        c[q] = fabs(mid[q]) + rad[q];
    const double lin = dot_fd(f->gin[t] + row * in, c, in), rho = max_of(c, in);
    const double *r = f->in_r[t] + row * RADII, *cost = f->in_cost[t] + row * RADII;
    int k = 0;
    while (k < RADII && r[k] <= rho)
        k++;
    if (k == RADII || !isfinite(lin))
        return INFINITY;
    return (lin + rho * (k ? cost[k - 1] : 0.0)) * BOUND_SCALE;
}

/* The last stage's margin rows w[t] - w[c] and their magnitudes. */
static int margin_rows(const pvf_model *m, lenet_fast *f) {
    const lenet *l = m->arch_state;
    const int last = m->nstages - 1;
    const int64_t in = m->stages[last].in_size, classes = f->classes;
    const float *w = m->params[l->w[last]].value;
    const size_t count = (size_t)(classes * classes * in);
    if (!(f->margin_w = malloc(count * sizeof(double))) ||
        !(f->margin_abs = malloc(count * sizeof(double))))
        return -1;
    for (int64_t t = 0; t < classes; t++)
        for (int64_t c = 0; c < classes; c++)
            for (int64_t k = 0; k < in; k++) {
                const int64_t at = (t * classes + c) * in + k;
                f->margin_w[at] = (double)w[t * in + k] - (double)w[c * in + k];
                f->margin_abs[at] = fabs(f->margin_w[at]);
            }
    return 0;
}

/* near_bound's runner-up classes per eval input. */
#define NEAR 2

/* Bound at the input of hidden fc stage t = near_t, the last hidden one,
 * when that input changes by mid +- rad (eval input row): per runner-up
 * class c of the NEAR of least margin, the margin's change is its gradient
 * under golden's pattern times the change, signed (within the gradient's
 * magnitude, gin, times rad and its float rounding), plus what the units
 * of t that may leave golden's pattern add: unit j's pre-activation moves
 * by at most |w_j|_2 |change|_2, so by that less its golden margin from 0
 * beyond the linear change, through max_c |w_last[top][j] - w_last[c][j]|.
 * The other classes take the gradient's magnitude against the least of
 * their margins. Cleared (1) when no margin can reach 0; *claim then the
 * bound on every margin's change. */
WIDER_VECTORS static int near_bound(const pvf_model *m, const lenet_fast *f, int64_t row,
                                    const double *mid, const double *rad, double *claim) {
    const int t = f->near_t;
    const int64_t in = m->stages[t].in_size, out = m->stages[t].out_size;
    const float *gin = f->gin[t] + row * in, *pre = f->pre[t] + row * out;
    const double *eps = f->unit_eps[t] + row * out;
    const double *dmax = f->near_dmax + f->top1[row] * out;
    double am[4096], c[4096], beyond[4096];
    if (in > 4096 || out > 4096)
        return 0;
    for (int64_t k = 0; k < in; k++) {
        am[k] = fabs(mid[k]);
        c[k] = am[k] + rad[k];
    }
    const double mag = dot_fd(gin, am, in), spread = dot_fd(gin, rad, in);
    const double rho = sqrt(dot_dd(c, c, in)) * BOUND_SCALE;
    for (int64_t j = 0; j < out; j++) {
        const double b = f->near_norm[j] * rho - (fabs((double)pre[j]) - eps[j]);
        beyond[j] = b > 0 ? b : 0.0;
    }
    const double rem = dot_dd(beyond, dmax, out);
    /* the gradients' float rounding: within 2^-24 of gin each */
    const double err = (spread + 0x1p-23 * mag + rem) * BOUND_SCALE;
    const double *margin = f->near_margin + row * (NEAR + 1);
    double worst = (mag + spread + rem) * BOUND_SCALE;
    int cleared = worst < margin[NEAR];
    for (int k = 0; k < NEAR && cleared; k++) {
        const double lin = dot_fd(f->near_grad + (row * NEAR + k) * in, mid, in);
        cleared = margin[k] + lin - err > 0; /* the margin's change: lin +- err */
        worst = max2(worst, fabs(lin) + err);
    }
    *claim = worst;
    return cleared && isfinite(worst);
}

/* near_bound's state (see lenet_fast), for a model whose last hidden fc
 * stage takes the first fc stage's outputs; none otherwise. */
static int near_prepare(const pvf_model *m, const pvf_golden *g, lenet_fast *f) {
    const lenet *l = m->arch_state;
    const int last = m->nstages - 1, t = l->nconv + 1;
    if (t + 1 != last || !f->gin[t] || !f->unit_eps[t] || f->classes < 2)
        return 0;
    const int64_t n = f->n, in = m->stages[t].in_size, out = m->stages[t].out_size;
    const int64_t classes = f->classes;
    const float *w = m->params[l->w[t]].value, *wl = m->params[l->w[last]].value;
    f->near_class = malloc((size_t)(n * NEAR) * sizeof *f->near_class);
    f->near_margin = malloc((size_t)(n * (NEAR + 1)) * sizeof *f->near_margin);
    f->near_grad = malloc((size_t)(n * NEAR * in) * sizeof *f->near_grad);
    f->near_norm = malloc((size_t)out * sizeof *f->near_norm);
    f->near_dmax = malloc((size_t)(classes * out) * sizeof *f->near_dmax);
    double *gd = malloc((size_t)in * sizeof *gd);
    if (!f->near_class || !f->near_margin || !f->near_grad || !f->near_norm || !f->near_dmax ||
        !gd) {
        free(gd);
        return -1;
    }
    for (int64_t j = 0; j < out; j++) {
        double sq = 0;
        for (int64_t k = 0; k < in; k++)
            sq += (double)w[j * in + k] * (double)w[j * in + k];
        f->near_norm[j] = sqrt(sq) * BOUND_SCALE;
    }
    for (int64_t top = 0; top < classes; top++)
        for (int64_t j = 0; j < out; j++) {
            double d = 0;
            for (int64_t c = 0; c < classes; c++)
                d = max2(d, fabs((double)wl[top * out + j] - (double)wl[c * out + j]));
            f->near_dmax[top * out + j] = d;
        }
    for (int64_t row = 0; row < n; row++) {
        const float *z = g->out + row * classes, *pre = f->pre[t] + row * out;
        const int64_t top = f->top1[row];
        double scale = 1;
        for (int64_t c = 0; c < classes; c++)
            scale = max2(scale, fabs((double)z[c]));
        /* the NEAR least margins, then the least of the rest */
        double *margin = f->near_margin + row * (NEAR + 1);
        int32_t *near = f->near_class + row * NEAR;
        for (int k = 0; k <= NEAR; k++) {
            int64_t best = -1;
            for (int64_t c = 0; c < classes; c++) {
                int taken = c == top;
                for (int q = 0; q < k && !taken; q++)
                    taken = near[q] == c;
                if (!taken && (best < 0 || z[c] > z[best]))
                    best = c;
            }
            margin[k] = best < 0 ? INFINITY : (double)z[top] - (double)z[best] - MARGIN_TOL * scale;
            if (k < NEAR)
                near[k] = (int32_t)(best < 0 ? top : best);
        }
        for (int k = 0; k < NEAR; k++) {
            const int64_t c = near[k];
            for (int64_t q = 0; q < in; q++)
                gd[q] = 0;
            for (int64_t j = 0; j < out && c != top; j++) {
                if (!(pre[j] > 0))
                    continue;
                const double dj = (double)wl[top * out + j] - (double)wl[c * out + j];
                for (int64_t q = 0; q < in; q++)
                    gd[q] += dj * (double)w[j * in + q];
            }
            for (int64_t q = 0; q < in; q++)
                f->near_grad[(row * NEAR + k) * in + q] = (float)gd[q];
        }
    }
    free(gd);
    f->near_t = t;
    return 0;
}

/* The linearized tail of the last two conv stages (see lenet_fast). */
static int linear_tail_prepare(const pvf_model *m, const pvf_golden *g, lenet_fast *f) {
    const lenet *l = m->arch_state;
    if (l->nconv < 1)
        return 0;
    const int fc0 = l->nconv;
    const int64_t in = m->stages[fc0].in_size, out = m->stages[fc0].out_size;
    const int64_t cout = l->conv[fc0 - 1].cout, chan = in / cout;
    if (!(f->chan_l1 = calloc((size_t)(out * cout), sizeof(double))) ||
        !(f->absw[fc0] = malloc((size_t)(out * in) * sizeof(float))))
        return -1;
    for (int64_t e = 0; e < out * in; e++)
        f->absw[fc0][e] = fabsf(m->params[l->w[fc0]].value[e]);
    if (!(f->row_l1[fc0] = calloc((size_t)out, sizeof(double))))
        return -1;
    for (int64_t j = 0; j < out; j++)
        for (int64_t k = 0; k < in; k++) {
            const double a = fabs((double)m->params[l->w[fc0]].value[j * in + k]);
            f->chan_l1[j * cout + k / chan] += a;
            f->row_l1[fc0][j] += a;
        }
    f->lin_first = l->nconv >= 2 ? l->nconv - 1 : l->nconv;
    if (margin_gradients(m, g, f) || unit_rounding(m, g, f))
        return -1;
    for (int s = f->lin_first - 1; s < l->nconv; s++)
        if (s >= 0 && pattern_radii(m, f, s))
            return -1;
    /* from the hidden fc stages after the first: signed_batch_flush's
     * linearized tail after each of its products, where near_bound does
     * not take its place (it clears what the tail would, measured) */
    if (near_prepare(m, g, f))
        return -1;
    for (int t = fc0 + 1; t < m->nstages - 1; t++)
        if (t != f->near_t && input_radii(m, f, t))
            return -1;
    return 0;
}

/* Bound, through the linearized tail, on the margin change of eval input
 * row when output channel co of conv stage s (features co * chan + q of
 * stage s + 1's input) changes by at most cell[q]: the gradient times the
 * change, plus the units that may leave golden's pattern; INFINITY when
 * more units may do so than were kept. */
WIDER_VECTORS static double linear_tail_bound(const pvf_model *m, const lenet_fast *f, int s,
                                              int64_t row, int64_t co, int64_t chan,
                                              const double *cell) {
    if (!f->radius[s])
        return INFINITY;
    const lenet *l = m->arch_state;
    const int64_t cout = l->conv[s].cout;
    const float *gq = f->gin[s + 1] + row * m->stages[s + 1].in_size + co * chan;
    /* a NaN makes lin NaN: INFINITY below */
    const double lin = dot_fd(gq, cell, chan), rho = max_of(cell, chan);
    const double *r = f->radius[s] + (row * cout + co) * RADII;
    const double *cost = f->radius_cost[s] + (row * cout + co) * RADII;
    int k = 0;
    while (k < RADII && r[k] <= rho)
        k++;
    if (k == RADII || !isfinite(lin))
        return INFINITY;
    return lin + rho * (k ? cost[k - 1] : 0.0);
}

/* Rounding allowance of the dominant directions, relative to the |W| path
 * to a logit: a full pass's float sums are within gamma(600) ~ 3.6e-5 of
 * it through the fc stages, the direction's own within 1.4e-5. */
#define DOMINANT_ROUNDING 1e-4

/* Directions computed together (dominant_directions' batch). */
#define DOM_BATCH 64

/* When the input of hidden fc stage t is golden's except features feat[]
 * now worth xnew[], of largest magnitude H: every unit from t on is H
 * times its value for the input xnew / H alone (ReLU and the linear maps
 * are positively homogeneous; the biases left out), plus at most what
 * golden's other terms and the biases add through |W| (ReLU is
 * 1-Lipschitz). So once H times the direction's lead over every other
 * class exceeds twice that, the top-1 is the direction's; and once a
 * logit is provably beyond FLT_MAX while no earlier sum can overflow, the
 * outputs are not finite in any order of the sums. An exponent flip to
 * ~1e37 is so judged per eval input from its direction, not by the
 * stages' products of its own values with every overflow check. The
 * overflow and rounding arguments hold for the sums a full pass computes
 * from such inputs, in any order. */
typedef struct dominant {
    int64_t top;   /* the direction's top-1; -1: a near tie */
    double gap;    /* its least lead over another class, less the allowance */
    double vmax;   /* its largest |logit|, less the allowance */
    double hidden; /* sum |w x| of any hidden unit from t on, per unit H */
    double last;   /* the same for the logits */
} dominant;

/* The directions of nb inputs of hidden fc stage t, input b being
 * xhat[b * ncol + k] at feature col0 + k (|xhat| <= 1), as one sgemm per
 * stage and product for the batch, in float. work: scratch, 4 nb x the
 * widest stage from t on plus nb ncol. */
static void dominant_directions(const pvf_model *m, const lenet_fast *f, int t, int64_t col0,
                                int64_t ncol, const float *xhat, int64_t nb, float *work,
                                dominant *d) {
    const lenet *l = m->arch_state;
    const int last = m->nstages - 1;
    const int64_t in = m->stages[t].in_size;
    int64_t width = m->stages[t].out_size, wide = width;
    for (int u = t; u <= last; u++)
        wide = m->stages[u].out_size > wide ? m->stages[u].out_size : wide;
    float *h = work, *ha = h + nb * wide, *y = ha + nb * wide, *ya = y + nb * wide;
    float *xa = ya + nb * wide;
    for (int64_t e = 0; e < nb * ncol; e++)
        xa[e] = fabsf(xhat[e]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)width, (int)ncol, 1.0f, xhat,
                (int)ncol, m->params[l->w[t]].value + col0, (int)in, 0.0f, h, (int)width);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)width, (int)ncol, 1.0f, xa,
                (int)ncol, f->absw[t] + col0, (int)in, 0.0f, ha, (int)width);
    for (int64_t b = 0; b < nb; b++) {
        double most = 0;
        for (int64_t j = 0; j < width; j++)
            most = max2(most, (double)ha[b * width + j]);
        d[b].hidden = most;
        d[b].last = 0;
    }
    for (int u = t + 1; u <= last; u++) {
        const int64_t out = m->stages[u].out_size;
        pvf_relu(h, nb * width); /* >= 0: its own magnitudes */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)out, (int)width, 1.0f, h,
                    (int)width, m->params[l->w[u]].value, (int)width, 0.0f, y, (int)out);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)out, (int)width, 1.0f, h,
                    (int)width, f->absw[u], (int)width, 0.0f, ya, (int)out);
        for (int64_t b = 0; b < nb; b++) {
            double most = 0;
            for (int64_t j = 0; j < out; j++)
                most = max2(most, (double)ya[b * out + j]);
            if (u < last)
                d[b].hidden = max2(d[b].hidden, most);
            else
                d[b].last = most;
        }
        float *tmp = h;
        h = y, y = tmp;
        width = out;
    }
    for (int64_t b = 0; b < nb; b++) {
        const float *v = h + b * width;
        double reach = 0; /* the allowance's scale */
        for (int64_t k = 0; k < ncol; k++)
            reach += (double)xa[b * ncol + k] * f->dom_reach[t][col0 + k];
        int64_t best = 0;
        double vmax = 0, gap = INFINITY;
        for (int64_t c = 1; c < width; c++)
            best = v[c] > v[best] ? c : best;
        for (int64_t c = 0; c < width; c++) {
            vmax = max2(vmax, fabs((double)v[c]));
            if (c != best)
                gap = min2(gap, (double)v[best] - (double)v[c]);
        }
        /* the sums' bounds with room for their own rounding (the allowance) */
        d[b].hidden *= 1 + DOMINANT_ROUNDING;
        d[b].last *= 1 + DOMINANT_ROUNDING;
        d[b].gap = gap - 2 * DOMINANT_ROUNDING * reach;
        d[b].vmax = vmax - DOMINANT_ROUNDING * reach;
        d[b].top = d[b].gap > 0 && isfinite(d[b].gap) ? best : -1;
    }
}

/* dominant_directions' work floats for nb inputs of ncol features. */
static int64_t dominant_work(const pvf_model *m, int t, int64_t nb, int64_t ncol) {
    int64_t wide = m->stages[t].out_size;
    for (int u = t; u < m->nstages; u++)
        wide = m->stages[u].out_size > wide ? m->stages[u].out_size : wide;
    return 4 * nb * wide + nb * ncol;
}

/* |W| from stage t's units holding a[] (width of stage t's output) through
 * the later stages, with |b| when bias: the largest value at any unit (a[]
 * included), *end the largest logit. a, an: scratch as wide. */
static double abs_through(const pvf_model *m, int t, double *a, double *an, int bias, double *end) {
    const lenet *l = m->arch_state;
    int64_t width = m->stages[t].out_size;
    double most = 0;
    for (int64_t j = 0; j < width; j++)
        most = max2(most, a[j]);
    for (int u = t + 1; u < m->nstages; u++) {
        const int64_t out = m->stages[u].out_size;
        const float *w = m->params[l->w[u]].value, *b = m->params[l->b[u]].value;
        for (int64_t j = 0; j < out; j++) {
            double za = bias ? fabs((double)b[j]) : 0;
            for (int64_t q = 0; q < width; q++)
                za += fabs((double)w[j * width + q]) * a[q];
            an[j] = za;
            most = max2(most, za);
        }
        double *tmp = a;
        a = an, an = tmp;
        width = out;
    }
    *end = 0;
    for (int64_t c = 0; c < width; c++)
        *end = max2(*end, a[c]);
    return most;
}

/* Hidden fc stage t's dominant state: per input feature k the largest |W|
 * product to a logit (dom_reach: the allowance's scale) and the direction
 * of k alone (dom_dir); per eval input golden's part (dom_rest: its other
 * terms, within sum |w x| + |b| of each unit of t, through |W| and |b|),
 * and its largest over every sum and input (dom_golden). */
static int dominant_prepare(const pvf_model *m, lenet_fast *f, int t) {
    const int64_t in = m->stages[t].in_size, out = m->stages[t].out_size, n = f->n;
    int64_t wide = in;
    for (int u = t; u < m->nstages; u++)
        wide = m->stages[u].out_size > wide ? m->stages[u].out_size : wide;
    double *a = malloc((size_t)(2 * wide) * sizeof *a);
    /* every feature alone, DOM_BATCH at a time */
    float *one = malloc((size_t)(DOM_BATCH * DOM_BATCH) * sizeof *one);
    float *h = malloc((size_t)dominant_work(m, t, DOM_BATCH, DOM_BATCH) * sizeof *h);
    f->dom_reach[t] = malloc((size_t)in * sizeof(double));
    f->dom_dir[t] = malloc((size_t)in * sizeof(dominant));
    f->dom_rest[t] = malloc((size_t)n * sizeof(double));
    int rc = -1;
    if (!a || !one || !h || !f->dom_reach[t] || !f->dom_dir[t] || !f->dom_rest[t])
        goto out;
    for (int64_t k = 0; k < in; k++) {
        for (int64_t j = 0; j < out; j++)
            a[j] = fabs((double)f->wt[t][k * out + j]);
        abs_through(m, t, a, a + wide, 0, &f->dom_reach[t][k]);
    }
    for (int64_t k0 = 0; k0 < in; k0 += DOM_BATCH) { /* after dom_reach: the allowance reads it */
        const int64_t nb = in - k0 < DOM_BATCH ? in - k0 : DOM_BATCH;
        for (int64_t e = 0; e < nb * nb; e++)
            one[e] = e % (nb + 1) == 0; /* the identity over features k0.. */
        dominant_directions(m, f, t, k0, nb, one, nb, h, f->dom_dir[t] + k0);
    }
    f->dom_golden[t] = 0;
    for (int64_t row = 0; row < n; row++) {
        for (int64_t j = 0; j < out; j++)
            a[j] = f->abs_sum[t][row * out + j];
        double end;
        const double most = abs_through(m, t, a, a + wide, 1, &end);
        /* with room for the rounding of these sums themselves */
        f->dom_rest[t][row] = end * (1 + DOMINANT_ROUNDING);
        f->dom_golden[t] = max2(f->dom_golden[t], most * (1 + DOMINANT_ROUNDING));
    }
    rc = 0;
out:
    free(a);
    free(one);
    free(h);
    return rc;
}

#define DOMINANT_NONFINITE (-2)

/* Eval input row's outcome when the input of hidden fc stage t is golden's
 * except some features, of largest magnitude H, whose direction is d (see
 * dominant), each the sum of a changed term and others of at most `others`
 * in all: the direction's top-1 when H times its lead exceeds twice
 * golden's part and every sum stays below FLT_MAX / 2; DOMINANT_NONFINITE
 * when every hidden sum does and a logit is provably beyond FLT_MAX; else
 * -1. */
static int64_t dominant_top(const lenet_fast *f, int t, int64_t row, const dominant *d, double H,
                            double others) {
    const double rest = f->dom_rest[t][row], golden = f->dom_golden[t];
    /* the sums the changed values came from: their terms within H + 2 others */
    if (!(H > 0) || !((H + 2 * others) * (1 + DOMINANT_ROUNDING) < FLT_MAX / 2) ||
        !(H * d->hidden + golden < FLT_MAX / 2))
        return -1;
    if (H * d->last + golden < FLT_MAX / 2)
        return d->top >= 0 && H * d->gap > 2 * rest ? d->top : -1;
    return H * d->vmax - rest > FLT_MAX * (1 + DOMINANT_ROUNDING) ? DOMINANT_NONFINITE : -1;
}

/* Counts eval input row's outcome from dominant_top; 0 when it gave none. */
static int dominant_judge(const pvf_golden *g, int64_t row, int64_t top, pvf_trial_result *r) {
    if (top == DOMINANT_NONFINITE) {
        r->incorrect++;
        r->nonfinite++;
        return 1;
    }
    if (top < 0)
        return 0;
    r->incorrect += top != g->top1[row];
    return 1;
}

int lenet_fast_prepare(const pvf_model *m, const pvf_golden *g, void **state, pvf_err *err) {
    const lenet *l = m->arch_state;
    const int64_t n = g->n, classes = m->out_size, last = m->nstages - 1;
    lenet_fast *f = calloc(1, sizeof *f);
    if (!f)
        return pvf_err_set(err, "fast path: out of memory");
    f->n = n;
    f->classes = classes;
    f->top1 = g->top1;
    f->slack = malloc((size_t)n * sizeof *f->slack);
    if (!f->slack)
        goto oom;
    f->min_slack = INFINITY;
    for (int64_t i = 0; i < n; i++) {
        const float *z = g->out + i * classes;
        const int64_t t = g->top1[i];
        double second = -INFINITY, scale = 1;
        for (int64_t c = 0; c < classes; c++) {
            scale = fmax(scale, fabs((double)z[c]));
            if (c != t)
                second = fmax(second, (double)z[c]);
        }
        double slack = (double)z[t] - second - MARGIN_TOL * scale;
        f->slack[i] = slack > 0 ? slack : -1;
        f->min_slack = fmin(f->min_slack, f->slack[i]);
    }
    /* Sensitivities, from the logits back to the second stage's input. */
    for (int s = (int)last; s >= 1; s--) {
        const double *next = s == last ? NULL : f->sens[s + 1];
        f->sens[s] = s < l->nconv ? conv_sensitivity(m, l, s, next, classes)
                                  : fc_sensitivity(m, l, s, next, classes);
        const int64_t in = m->stages[s].in_size;
        if (!f->sens[s] || !(f->sens_max[s] = max_over_classes(f->sens[s], in, classes)) ||
            !(f->pair[s] = malloc((size_t)(classes * in) * sizeof(double))))
            goto oom;
        for (int64_t t = 0; t < classes; t++)
            for (int64_t k = 0; k < in; k++)
                f->pair[s][t * in + k] = f->sens[s][k * classes + t] + f->sens_max[s][k];
    }
    for (int s = 0; s < l->nconv; s++) {
        const pvf_conv2d *cv = &l->conv[s];
        const int64_t positions = m->stages[s].out_size / cv->cout, plane = cv->h * cv->w;
        f->chan[s] = calloc((size_t)(cv->cout * classes), sizeof(double));
        f->xmax_row[s] = calloc((size_t)(n * cv->cin), sizeof(float));
        f->xmax[s] = calloc((size_t)cv->cin, sizeof(float));
        if (!f->chan[s] || !f->xmax_row[s] || !f->xmax[s])
            goto oom;
        for (int64_t co = 0; co < cv->cout; co++)
            for (int64_t p = 0; p < positions; p++)
                for (int64_t c = 0; c < classes; c++)
                    f->chan[s][co * classes + c] +=
                        f->sens[s + 1][(co * positions + p) * classes + c];
        if (!(f->chan_max[s] = max_over_classes(f->chan[s], cv->cout, classes)))
            goto oom;
        const int64_t maps = cv->cout * cv->oh * cv->ow, cols = cv->cin * cv->k * cv->k;
        f->pre_pool[s] = malloc((size_t)(n * maps) * sizeof(float));
        f->xmax_all[s] = calloc((size_t)n, sizeof(float));
        f->filter_l1[s] = calloc((size_t)cv->cout, sizeof(double));
        f->kernel_l1[s] = calloc((size_t)(cv->cout * cv->cin), sizeof(double));
        float *col = malloc((size_t)pvf_conv2d_scratch(cv) * sizeof(float));
        if (!f->pre_pool[s] || !f->xmax_all[s] || !f->filter_l1[s] || !f->kernel_l1[s] || !col) {
            free(col);
            goto oom;
        }
        /* image by image, as the stage computes them */
        pvf_conv2d_run(cv, g->stage_in[s], n, m->params[l->w[s]].value, m->params[l->b[s]].value,
                       f->pre_pool[s], col);
        free(col);
        const int64_t kk = cv->k * cv->k;
        for (int64_t co = 0; co < cv->cout; co++)
            for (int64_t e = 0; e < cols; e++) {
                const double a = fabs((double)m->params[l->w[s]].value[co * cols + e]);
                f->filter_l1[s][co] += a;
                f->kernel_l1[s][co * cv->cin + e / kk] += a;
            }
        for (int64_t i = 0; i < n; i++)
            for (int64_t ci = 0; ci < cv->cin; ci++) {
                const float *x = g->stage_in[s] + i * m->stages[s].in_size + ci * plane;
                float mx = 0;
                for (int64_t p = 0; p < plane; p++)
                    mx = fmaxf(mx, fabsf(x[p]));
                f->xmax_row[s][i * cv->cin + ci] = mx;
                f->xmax[s][ci] = fmaxf(f->xmax[s][ci], mx);
                f->xmax_all[s][i] = fmaxf(f->xmax_all[s][i], mx);
            }
    }
    for (int s = l->nconv; s <= last; s++) {
        const int64_t in = m->stages[s].in_size, out = m->stages[s].out_size;
        f->xmax[s] = calloc((size_t)in, sizeof(float));
        f->xmax_all[s] = calloc((size_t)n, sizeof(float));
        f->pre[s] = malloc((size_t)(n * out) * sizeof(float));
        if (!f->xmax[s] || !f->xmax_all[s] || !f->pre[s])
            goto oom;
        /* in the golden pass's chunks, so that the sums are the pass's own */
        for (int64_t i = 0; i < n; i += PVF_CHUNK)
            pvf_linear(g->stage_in[s] + i * in, n - i < PVF_CHUNK ? n - i : PVF_CHUNK, in,
                       m->params[l->w[s]].value, m->params[l->b[s]].value, out,
                       f->pre[s] + i * out);
        if (!(f->wt[s] = malloc((size_t)(in * out) * sizeof(float))) ||
            !(f->xcol[s] = malloc((size_t)(in * n) * sizeof(float))))
            goto oom;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < in; k++) {
                const float x = g->stage_in[s][i * in + k];
                f->xmax[s][k] = fmaxf(f->xmax[s][k], fabsf(x));
                f->xmax_all[s][i] = fmaxf(f->xmax_all[s][i], fabsf(x));
                f->xcol[s][k * n + i] = x;
            }
        for (int64_t j = 0; j < out; j++)
            for (int64_t k = 0; k < in; k++)
                f->wt[s][k * out + j] = m->params[l->w[s]].value[j * in + k];
    }
    if (margin_rows(m, f) || linear_tail_prepare(m, g, f))
        goto oom;
    for (int t = l->nconv; t < last; t++)
        if (f->abs_sum[t] && dominant_prepare(m, f, t))
            goto oom;
    for (int s = l->nconv; s < last; s++) {
        const int64_t out = m->stages[s].out_size;
        if (!(f->fc_limit[s] = malloc((size_t)(out * n) * sizeof(float))))
            goto oom;
        for (int64_t i = 0; i < out; i++)
            for (int64_t row = 0; row < n; row++) {
                const double pf = f->pair[s + 1][g->top1[row] * out + i] * BOUND_SCALE;
                const double v = f->slack[row] > 0 ? f->slack[row] / pf : -1;
                float lim = (float)v;
                if ((double)lim > v)
                    lim = nextafterf(lim, -INFINITY);
                f->fc_limit[s][i * n + row] = lim;
            }
    }
    *state = f;
    return 0;
oom:
    lenet_fast_free(f);
    return pvf_err_set(err, "fast path: out of memory");
}

/* Bound on |Δ (top-1 logit - any other)| per unit change of a feature with
 * per-class sensitivity sens[classes]. */
static double pair_factor(const double *sens, double sens_max, int64_t top1) {
    return sens[top1] + sens_max;
}

/* pvf_arch.fast_bound: a row whose input to stage s (>= 1) differs from
 * golden by Δx is judged as golden when Σ |Δx_f| (sens_t + sens_max) fits
 * in its slack. */
int lenet_fast_bound(const pvf_exec *ex, const pvf_golden *g, int s, int64_t row, const float *in) {
    const lenet_fast *f = g->fast;
    if (s < 1 || f->slack[row] <= 0)
        return 0;
    const int64_t width = ex->m->stages[s].in_size;
    const float *gold = g->stage_in[s] + row * width;
    const double *pf = f->pair[s] + g->top1[row] * width;
    const double limit = f->slack[row] / BOUND_SCALE;
    double bound = 0;
    /* 16 terms at a time, then whether it is past the limit already (terms
     * are >= 0: it only grows; a NaN goes on and fails below). Measured: a
     * branch per term was slower on conv faults' rows, none on fc1 faults'
     * large changes. */
    for (int64_t k0 = 0; k0 < width; k0 += 16) {
        const int64_t k1 = k0 + 16 < width ? k0 + 16 : width;
        for (int64_t k = k0; k < k1; k++)
            bound += fabs((double)in[k] - (double)gold[k]) * pf[k];
        if (bound > limit)
            return 0;
    }
    return isfinite(bound) && bound * BOUND_SCALE <= f->slack[row];
}

/* Changed weights of a fault: |Δw| per element (double), non-finite flag. */
static int fault_deltas(const pvf_exec *ex, int param, double *d, int64_t cap) {
    const float *shared = ex->m->params[param].value + ex->fault_lo;
    int nonfinite = 0;
    for (int64_t e = 0; e < ex->fault_hi - ex->fault_lo && e < cap; e++) {
        nonfinite |= !isfinite(ex->patch[e]);
        d[e] = fabs((double)ex->patch[e] - (double)shared[e]);
    }
    return nonfinite;
}

/* Reruns fc stage s for every eval input that reads columns k0..k0+span. */
static int rerun_readers(pvf_exec *ex, const pvf_golden *g, int s, int64_t k0, int64_t span,
                         pvf_trial_result *r, pvf_err *err) {
    const lenet_fast *f = g->fast;
    const int64_t in = ex->m->stages[s].in_size;
    int64_t *rows = malloc((size_t)f->n * sizeof *rows), k = 0;
    if (!rows)
        return pvf_err_set(err, "fast path: out of memory");
    for (int64_t row = 0; row < f->n; row++) {
        const float *x = g->stage_in[s] + row * in + k0;
        int64_t e = 0;
        while (e < span && x[e] == 0.0f)
            e++;
        if (e < span)
            rows[k++] = row;
    }
    int rc = pvf_fast_rows(ex, g, s, rows, k, NULL, r, err);
    free(rows);
    return rc;
}

/* Outputs per block of conv_channel_direct: four AVX registers, whose sums
 * run side by side (one register's chain of adds waits on each add). */
#define CONV_BLOCK 32

/* The row width of conv_channel_direct's zero-padded copy of the input:
 * whole blocks of outputs read past the image's padded width. */
static int64_t conv_padded_width(const pvf_conv2d *cv) {
    const int64_t blocks = (cv->ow + CONV_BLOCK - 1) / CONV_BLOCK;
    const int64_t pw = blocks * CONV_BLOCK + cv->k - 1;
    return pw < cv->w + 2 * cv->pad ? cv->w + 2 * cv->pad : pw;
}

/* Floats conv_channel_direct needs for its zero-padded copy of the input. */
static int64_t conv_direct_scratch(const pvf_conv2d *cv) {
    return cv->cin * (cv->h + 2 * cv->pad) * conv_padded_width(cv);
}

/* Eight floats, operated on element by element (vectors of two halves
 * where the CPU has no AVX): conv_block keeps its sums in these, in
 * registers, where float arrays were kept in memory. */
typedef float conv_vec __attribute__((vector_size(32)));

/* acc[0..nv) += the k taps of weight row wr times input row xr. */
static inline __attribute__((always_inline)) void conv_block_row(int64_t k,
                                                                 const float *restrict xr,
                                                                 const float *restrict wr, int nv,
                                                                 conv_vec *acc) {
    for (int64_t kx = 0; kx < k; kx++) {
        const float wv = wr[kx];
        for (int v = 0; v < nv; v++) {
            conv_vec x; /* unaligned */
            memcpy(&x, xr + kx + 8 * v, sizeof x);
            acc[v] += wv * x;
        }
    }
}

/* One block of 8 nv outputs of rows oy and oy + 1 (two, a constant at
 * each call; a last odd row alone) from column x0 of conv_channel_direct,
 * accumulated over the whole filter in registers (nv is a constant at each
 * call). The two rows read k + 1 input rows between them, each once for
 * both: two independent sums per load, and each output still the plain sum
 * of its terms in filter order. */
static inline __attribute__((always_inline)) void
conv_block(const pvf_conv2d *cv, const float *restrict xp, const float *restrict w, int64_t oy,
           int64_t x0, int nv, int two, float *restrict out0, float *restrict out1) {
    const int64_t k = cv->k, ph = cv->h + 2 * cv->pad, pw = conv_padded_width(cv);
    conv_vec acc0[CONV_BLOCK / 8] = {0}, acc1[CONV_BLOCK / 8] = {0};
    for (int64_t ci = 0; ci < cv->cin; ci++) {
        const float *xr = xp + (ci * ph + oy) * pw + x0, *wr = w + ci * k * k;
        conv_block_row(k, xr, wr, nv, acc0);
        for (int64_t r = 1; r < k; r++) {
            conv_block_row(k, xr + r * pw, wr + r * k, nv, acc0);
            if (two)
                conv_block_row(k, xr + r * pw, wr + (r - 1) * k, nv, acc1);
        }
        if (two)
            conv_block_row(k, xr + k * pw, wr + (k - 1) * k, nv, acc1);
    }
    memcpy(out0, acc0, (size_t)nv * sizeof *acc0);
    if (two)
        memcpy(out1, acc1, (size_t)nv * sizeof *acc1);
}

/* The convolution of input x with one filter w[cin x k x k] (stride 1),
 * plane[oh x ow]: each output the plain sum of its terms in filter order,
 * the taps outside the image adding w * 0 from a zero-padded copy of x in
 * xp[conv_direct_scratch] (w finite: conv_channel). A block of CONV_BLOCK
 * outputs of two rows accumulates in registers over the whole filter: an
 * im2col matrix for one matrix-vector product costs more to build than the
 * product itself. */
WIDER_VECTORS static void conv_channel_direct(const pvf_conv2d *cv, const float *restrict x,
                                              const float *restrict w, float *restrict plane,
                                              float *restrict xp) {
    const int64_t oh = cv->oh, ow = cv->ow, pad = cv->pad;
    const int64_t blocks = (ow + CONV_BLOCK - 1) / CONV_BLOCK, ph = cv->h + 2 * pad;
    const int64_t pw = conv_padded_width(cv);
    memset(xp, 0, (size_t)(cv->cin * ph * pw) * sizeof *xp);
    for (int64_t ci = 0; ci < cv->cin; ci++)
        for (int64_t y = 0; y < cv->h; y++)
            memcpy(xp + (ci * ph + y + pad) * pw + pad, x + (ci * cv->h + y) * cv->w,
                   (size_t)cv->w * sizeof *xp);
    for (int64_t oy = 0; oy < oh; oy += 2) {
        const int two = oy + 1 < oh;
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t x0 = b * CONV_BLOCK;
            const int64_t n = ow - x0 < CONV_BLOCK ? ow - x0 : CONV_BLOCK;
            float out0[CONV_BLOCK], out1[CONV_BLOCK];
            if (!two) /* the last row of an odd count */
                conv_block(cv, xp, w, oy, x0, CONV_BLOCK / 8, 0, out0, out1);
            else if (n <= 8) /* a short last block: fewer registers */
                conv_block(cv, xp, w, oy, x0, 1, 1, out0, out1);
            else if (n <= 16)
                conv_block(cv, xp, w, oy, x0, 2, 1, out0, out1);
            else
                conv_block(cv, xp, w, oy, x0, CONV_BLOCK / 8, 1, out0, out1);
            memcpy(plane + oy * ow + x0, out0, (size_t)n * sizeof *plane);
            if (two)
                memcpy(plane + (oy + 1) * ow + x0, out1, (size_t)n * sizeof *plane);
        }
    }
}

/* Output channel co of conv stage s for one eval input x, exactly as the
 * stage computes it apart from the order of the sums: the convolution with
 * the faulty filter w[cin x k x k] and bias, max-pool, ReLU. col: scratch
 * for cin k k x oh ow floats. */
static void conv_channel(const lenet *l, const pvf_conv2d *cv, const float *restrict x,
                         const float *restrict w, float bias, float *restrict plane, float *pooled,
                         float *restrict col) {
    const int64_t k = cv->k, oh = cv->oh, ow = cv->ow, positions = oh * ow;
    const int64_t cols = cv->cin * k * k;
    int finite = 1;
    for (int64_t e = 0; e < cols; e++)
        finite &= isfinite(w[e]) != 0;
    if (cv->stride == 1 && finite && conv_direct_scratch(cv) <= cols * positions) {
        conv_channel_direct(cv, x, w, plane, col);
        for (int64_t p = 0; p < positions; p++)
            plane[p] += bias;
        pvf_maxpool2d(plane, 1, 1, oh, ow, l->pool, pooled);
        pvf_relu(pooled, (oh / l->pool) * (ow / l->pool));
        return;
    }
    /* this input's im2col rows, then one matrix-vector product */
    pvf_im2col(cv, x, col, positions);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)cols, (int)positions, 1.0f, col, (int)positions, w,
                1, 0.0f, plane, 1);
    for (int64_t p = 0; p < positions; p++)
        plane[p] += bias;
    pvf_maxpool2d(plane, 1, 1, oh, ow, l->pool, pooled);
    pvf_relu(pooled, (oh / l->pool) * (ow / l->pool));
}

/* Rows whose sums can overflow, waiting to run as the full pass runs them
 * (pvf_fast_rows: in batches of the pass's shape, rows of any chunks), a
 * queue per stage they start from: rows of different stages in turn would
 * otherwise make a batch each. */
typedef struct pending {
    int64_t n[LENET_STAGES];
    int64_t rows[LENET_STAGES][PVF_CHUNK];
    float *inputs[LENET_STAGES]; /* [PVF_CHUNK x the stage's in_size], on first use */
} pending;

static int pending_run(pvf_exec *ex, const pvf_golden *g, pending *p, int stage,
                       pvf_trial_result *r, pvf_err *err) {
    int rc = p->n[stage] ? pvf_fast_rows(ex, g, stage, p->rows[stage], p->n[stage],
                                         p->inputs[stage], r, err)
                         : 0;
    p->n[stage] = 0;
    return rc;
}

static void pending_free(pending *p) {
    for (int s = 0; s < LENET_STAGES; s++) {
        free(p->inputs[s]);
        p->inputs[s] = NULL;
    }
}

/* Runs every waiting row, stage by stage, and frees the queues. */
static int pending_flush(pvf_exec *ex, const pvf_golden *g, pending *p, pvf_trial_result *r,
                         pvf_err *err) {
    int rc = 0;
    for (int s = 0; s < LENET_STAGES && rc == 0; s++)
        rc = pending_run(ex, g, p, s, r, err);
    pending_free(p);
    return rc;
}

static int pending_add(pvf_exec *ex, const pvf_golden *g, pending *p, int stage, int64_t row,
                       const float *x, pvf_trial_result *r, pvf_err *err) {
    const int64_t in = ex->m->stages[stage].in_size;
    if (!p->inputs[stage] &&
        !(p->inputs[stage] = malloc((size_t)(PVF_CHUNK * in) * sizeof *p->inputs[stage])))
        return pvf_err_set(err, "fast path: out of memory");
    if (p->n[stage] == PVF_CHUNK && pending_run(ex, g, p, stage, r, err))
        return -1;
    memcpy(p->inputs[stage] + p->n[stage] * in, x, (size_t)in * sizeof *x);
    p->rows[stage][p->n[stage]++] = row;
    return 0;
}

/* 1 when a sum of fc stage st over input x may overflow float in some
 * order and not in another: x holds two or more huge values (see
 * pvf_fast_overflow_prone) and sum |w x| + |b| of some unit, bounded in
 * float with room to spare for its rounding, reaches FLT_MAX / 2.
 * Otherwise every order gives finite sums that differ by rounding only,
 * like any recompute, and the row need not run as the full pass. */
static int fc_may_overflow(const pvf_model *m, const lenet_fast *f, int st, const float *x) {
    const lenet *l = m->arch_state;
    const int64_t in = m->stages[st].in_size, out = m->stages[st].out_size;
    if (!pvf_fast_overflow_prone(x, in))
        return 0;
    float absx[4096], sum[4096];
    if (in > 4096 || out > 4096 || !f->absw[st])
        return 1;
    for (int64_t k = 0; k < in; k++)
        absx[k] = fabsf(x[k]);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, f->absw[st], (int)in, absx, 1,
                0.0f, sum, 1);
    const float *b = m->params[l->b[st]].value;
    for (int64_t j = 0; j < out; j++)
        if (!((double)sum[j] + fabs((double)b[j]) < FLT_MAX / 2)) /* NaN too */
            return 1;
    return 0;
}

/* The fully connected stages from fc stage s on for one eval input whose
 * input to s is x (dense), each a matrix-vector product; the row leaves as
 * soon as it is golden again or bounded. */
static int fc_tail(pvf_exec *ex, const pvf_golden *g, int s, int64_t row, const float *x,
                   pending *p, pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    float *buf[2] = {ex->fast_scratch + l->fast_tail, ex->fast_scratch + l->fast_tail + l->widest};
    const float *cur = x;
    for (int st = s; st < m->nstages; st++) {
        const int64_t in = m->stages[st].in_size, out = m->stages[st].out_size;
        if (st != s) {
            const float *gold = g->stage_in[st] + row * in;
            if (memcmp(cur, gold, (size_t)in * sizeof *cur) == 0 ||
                lenet_fast_bound(ex, g, st, row, cur))
                return 0;
        }
        if (fc_may_overflow(m, g->fast, st, cur)) /* as the full pass */
            return pending_add(ex, g, p, st, row, cur, r, err);
        float *y = buf[st & 1];
        memcpy(y, m->params[l->b[st]].value, (size_t)out * sizeof *y);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, m->params[l->w[st]].value,
                    (int)in, cur, 1, 1.0f, y, 1);
        if (st != m->nstages - 1)
            pvf_relu(y, out);
        r->stage_rows++;
        cur = y;
    }
    pvf_fast_judge_row(ex, g, row, cur, r);
    return 0;
}

/* 1 when a sum of hidden fc stage s for eval input row, whose input is
 * golden's plus delta[] at features feat[], may overflow: golden's sum
 * |w x| + |b| of a unit plus the changed columns' |w delta| reaches
 * FLT_MAX / 2 (or it is not known). Otherwise every order gives finite sums
 * and the sparse update is as faithful as a full recompute. */
static int sparse_may_overflow(const pvf_model *m, const lenet_fast *f, int s, int64_t row,
                               const int64_t *feat, const float *delta, int64_t nf) {
    const int64_t out = m->stages[s].out_size;
    double sum[4096];
    if (!f->abs_sum[s] || out > 4096)
        return 1;
    /* each unit's sum in order of the changed features, the units side by
     * side along the transposed weight's columns */
    memcpy(sum, f->abs_sum[s] + row * out, (size_t)out * sizeof *sum);
    for (int64_t c = 0; c < nf; c++) {
        const float *col = f->wt[s] + feat[c] * out;
        const double dc = fabs((double)delta[c]);
        for (int64_t j = 0; j < out; j++)
            sum[j] += fabs((double)col[j]) * dc;
    }
    for (int64_t j = 0; j < out; j++)
        if (!(sum[j] < FLT_MAX / 2)) /* NaN too */
            return 1;
    return 0;
}

/* Fc stage s for one eval input whose input differs from golden only in
 * features feat[0..nf) by delta[]: the golden pre-activations plus those
 * columns, then on (dense) from there; first dominant_top, when others >=
 * 0 bounds the other terms of the sums those inputs came from. */
static int fc_sparse(pvf_exec *ex, const pvf_golden *g, int s, int64_t row, const int64_t *feat,
                     const float *delta, int64_t nf, double others, pending *p, pvf_trial_result *r,
                     pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const lenet_fast *f = g->fast;
    const int64_t in = m->stages[s].in_size, out = m->stages[s].out_size;
    const int last = s == m->nstages - 1;
    float *y = ex->fast_scratch + l->fast_tail + 2 * l->widest;
    if (!last && nf == 1 && others >= 0 && !ex->trial_out && f->dom_dir[s]) {
        /* so large that the top-1 is its direction's, kept per feature
         * (with every output written, the outputs are computed instead) */
        const float xnew = g->stage_in[s][row * in + feat[0]] + delta[0];
        if (xnew > 0 &&
            dominant_judge(
                g, row, dominant_top(f, s, row, &f->dom_dir[s][feat[0]], (double)xnew, others), r))
            return 0;
    }
    if (pvf_fast_overflow_prone(delta, nf) && sparse_may_overflow(m, f, s, row, feat, delta, nf)) {
        /* as the full pass, dense; fc_may_overflow's bound of the dense
         * input, tighter by the triangle inequality only, agreed on every
         * such row measured (exponent flips of conv2.weight) */
        memcpy(y, g->stage_in[s] + row * in, (size_t)in * sizeof *y);
        for (int64_t j = 0; j < nf; j++)
            y[feat[j]] += delta[j];
        return pending_add(ex, g, p, s, row, y, r, err);
    }
    memcpy(y, f->pre[s] + row * out, (size_t)out * sizeof *y);
    for (int64_t j = 0; j < nf; j++) {
        const float *col = f->wt[s] + feat[j] * out; /* column feat[j], contiguous */
        for (int64_t o = 0; o < out; o++)
            y[o] += col[o] * delta[j];
    }
    if (!last)
        pvf_relu(y, out);
    r->stage_rows++;
    const float *gold = last ? g->out + row * out : g->stage_in[s + 1] + row * out;
    if (memcmp(y, gold, (size_t)out * sizeof *y) == 0)
        return 0;
    if (last) {
        pvf_fast_judge_row(ex, g, row, y, r);
        return 0;
    }
    if (lenet_fast_bound(ex, g, s + 1, row, y))
        return 0;
    return fc_tail(ex, g, s + 1, row, y, p, r, err);
}

/* sum + Σ_ci kernel_l1[s][co][ci] xm[ci]: a bound on Σ |w x| over filter co
 * of conv stage s for an input whose channel ci stays within ±xm[ci]. */
static double kernel_abs_sum(const lenet_fast *f, int s, int64_t cin, int64_t co, const float *xm,
                             double sum) {
    const double *l1 = f->kernel_l1[s] + co * cin;
    for (int64_t ci = 0; ci < cin; ci++)
        sum += l1[ci] * (double)xm[ci];
    return sum;
}

/* Rounding of output channel co's pre-pool sums of eval input row, golden's
 * and one recomputed with a weight (or the bias) changed by dw, whose taps
 * are at most tapmax (1 for the bias): 2 K u sum |w x|, with each input
 * channel's largest |x|. */
static double conv_rounding(const pvf_model *m, const lenet *l, const lenet_fast *f, int s,
                            int64_t row, int64_t co, double dw, double tapmax) {
    const pvf_conv2d *cv = &l->conv[s];
    const double sum =
        kernel_abs_sum(f, s, cv->cin, co, f->xmax_row[s] + row * cv->cin,
                       fabs(dw) * tapmax + fabs((double)m->params[l->b[s]].value[co]));
    return sum_gamma(cv->cin * cv->k * cv->k + 1) * sum;
}

/* One pooled cell of k pre-pool values v[] changing by dv[]: the largest
 * and second largest of v (equal on ties), the largest of v + dv and the
 * spread max dv - min dv; k == 4 (2x2 pooling) with min / max only. */
static inline void pool_stats(const double *v, const double *dv, int k, double *b1, double *b2,
                              double *a1, double *spread) {
    if (k == 4) {
        const double h01 = max2(v[0], v[1]), l01 = min2(v[0], v[1]);
        const double h23 = max2(v[2], v[3]), l23 = min2(v[2], v[3]);
        *b1 = max2(h01, h23);
        *b2 = max2(min2(h01, h23), max2(l01, l23));
        *a1 = max2(max2(v[0] + dv[0], v[1] + dv[1]), max2(v[2] + dv[2], v[3] + dv[3]));
        *spread = max2(max2(dv[0], dv[1]), max2(dv[2], dv[3])) -
                  min2(min2(dv[0], dv[1]), min2(dv[2], dv[3]));
        return;
    }
    double x1 = -INFINITY, x2 = -INFINITY, y1 = -INFINITY, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < k; i++) {
        x2 = max2(x2, min2(x1, v[i]));
        x1 = max2(x1, v[i]);
        y1 = max2(y1, v[i] + dv[i]);
        lo = min2(lo, dv[i]);
        hi = max2(hi, dv[i]);
    }
    *b1 = x1;
    *b2 = x2;
    *a1 = y1;
    *spread = hi - lo;
}

/* The input that weight (ci, ky, kx) meets at each pre-pool output of a
 * conv stage for input x (0 outside the image). */
static void conv_taps(const pvf_conv2d *cv, const float *x, int64_t ci, int64_t ky, int64_t kx,
                      double *tap) {
    const float *plane = x + ci * cv->h * cv->w;
    int64_t lo = 0, hi = cv->ow; /* ox whose input column is inside */
    while (lo < cv->ow && lo * cv->stride - cv->pad + kx < 0)
        lo++;
    while (hi > lo && (hi - 1) * cv->stride - cv->pad + kx >= cv->w)
        hi--;
    for (int64_t oy = 0; oy < cv->oh; oy++) {
        const int64_t y = oy * cv->stride - cv->pad + ky;
        double *t = tap + oy * cv->ow;
        for (int64_t ox = 0; ox < cv->ow; ox++)
            t[ox] = 0.0;
        if (y < 0 || y >= cv->h)
            continue;
        const float *xr = plane + y * cv->w - cv->pad + kx;
        for (int64_t ox = lo; ox < hi; ox++)
            t[ox] = (double)xr[ox * cv->stride];
    }
}

/* cell_changes for ncell cells of 2x2 pooling, whose four pre-pool values
 * (golden) are v[0..3][q] and their taps t[0..3][q], each set contiguous:
 * as pool_stats and the general case, every case computed and one selected
 * (relu_changes), one loop over all the cells. 1 when some cell may change
 * its winner or sign beyond rounding. */
SELECTS_VECTORIZE static int cells4(int64_t ncell, const double *restrict v0,
                                    const double *restrict v1, const double *restrict v2,
                                    const double *restrict v3, const double *restrict t0,
                                    const double *restrict t1, const double *restrict t2,
                                    const double *restrict t3, double dw, double eps,
                                    double *restrict d, double *restrict cell) {
    double undecided = 0; /* a double: the loop's vectors hold doubles */
    for (int64_t q = 0; q < ncell; q++) {
        const double a0 = v0[q], a1_ = v1[q], a2 = v2[q], a3 = v3[q];
        const double d0 = dw * t0[q], d1 = dw * t1[q], d2 = dw * t2[q], d3 = dw * t3[q];
        const double h01 = a0 > a1_ ? a0 : a1_, l01 = a0 < a1_ ? a0 : a1_;
        const double h23 = a2 > a3 ? a2 : a3, l23 = a2 < a3 ? a2 : a3;
        const double b1 = h01 > h23 ? h01 : h23;
        const double hl = h01 < h23 ? h01 : h23, lh = l01 > l23 ? l01 : l23;
        const double b2 = hl > lh ? hl : lh;
        const double s0 = a0 + d0, s1 = a1_ + d1, s2 = a2 + d2, s3 = a3 + d3;
        const double s01 = s0 > s1 ? s0 : s1, s23 = s2 > s3 ? s2 : s3;
        const double a1 = s01 > s23 ? s01 : s23;
        const double dh01 = d0 > d1 ? d0 : d1, dh23 = d2 > d3 ? d2 : d3;
        const double dl01 = d0 < d1 ? d0 : d1, dl23 = d2 < d3 ? d2 : d3;
        const double spread = (dh01 > dh23 ? dh01 : dh23) - (dl01 < dl23 ? dl01 : dl23);
        const double dq = (a1 > 0.0 ? a1 : 0.0) - (b1 > 0.0 ? b1 : 0.0);
        d[q] = dq;
        cell[q] = fabs(dq) + (((a1 > -eps) | (b1 > -eps)) ? eps : 0.0);
        const int off = (b1 < -eps) & (a1 < -eps);
        const int on = (b1 > eps) & (a1 > eps) & (b1 - b2 > 2 * eps + spread);
        undecided = (off | on) ? undecided : 1.0;
    }
    return undecided != 0;
}

/* One weight of output channel co changes by dw: each pre-pool output
 * becomes its golden value plus dw times its tap, up to eps (the rounding
 * of golden's sum and of a recomputed one). Per pooled cell: d[] the
 * change from golden's pre-pool maps (signed), cell[] a bound on the exact
 * one (a cell that stays below zero changes nothing). Returns how far d can
 * be from the exact change: 0 when every cell keeps its winner and sign
 * beyond rounding, before and after, else 2 eps. */
static double cell_changes(const lenet *l, const pvf_conv2d *cv, const float *pre,
                           const double *tap, double dw, double eps, double *d, double *cell) {
    const int64_t pw = cv->ow / l->pool, ph = cv->oh / l->pool;
    double dmax = 0;
    const int k = (int)(l->pool * l->pool); /* <= 64: conv_trial */
    double v[64], dv[64];
    if (k == 4 && ph * pw <= 1024) { /* every cell in one loop, branch free */
        double vals[8][1024];        /* each cell's four pre-pool values (golden), then taps */
        for (int64_t py = 0; py < ph; py++)
            for (int64_t px = 0; px < pw; px++) {
                const int64_t q = py * pw + px, at = 2 * py * cv->ow + 2 * px;
                vals[0][q] = pre[at];
                vals[1][q] = pre[at + 1];
                vals[2][q] = pre[at + cv->ow];
                vals[3][q] = pre[at + cv->ow + 1];
                vals[4][q] = tap[at];
                vals[5][q] = tap[at + 1];
                vals[6][q] = tap[at + cv->ow];
                vals[7][q] = tap[at + cv->ow + 1];
            }
        return cells4(ph * pw, vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6],
                      vals[7], dw, eps, d, cell)
                   ? 2 * eps
                   : 0.0;
    }
    for (int64_t py = 0; py < ph; py++)
        for (int64_t px = 0; px < pw; px++) {
            for (int64_t dy = 0; dy < l->pool; dy++)
                for (int64_t dx = 0; dx < l->pool; dx++) {
                    const int64_t at = (py * l->pool + dy) * cv->ow + px * l->pool + dx;
                    v[dy * l->pool + dx] = pre[at];
                    dv[dy * l->pool + dx] = dw * tap[at];
                }
            double b1, b2, a1, spread;
            pool_stats(v, dv, k, &b1, &b2, &a1, &spread);
            const int64_t q = py * pw + px;
            /* ReLU after the pool: |relu(a) - relu(b)| <= |a - b|, 0 when both < 0 */
            d[q] = max2(a1, 0.0) - max2(b1, 0.0);
            cell[q] = fabs(d[q]) + (a1 > -eps || b1 > -eps ? eps : 0.0);
            /* off: stays below zero; on: the winner stays ahead (by more than
             * the rounding and the spread of the changes) and above zero,
             * so d is its change exactly */
            const int off = b1 < -eps && a1 < -eps;
            const int on = b1 > eps && a1 > eps && b1 - b2 > 2 * eps + spread;
            if (!off && !on)
                dmax = 2 * eps;
        }
    return dmax;
}

/* Bound on the top-1 margin of eval input row for a change of at most
 * cell[q] of feature co * chan + q of stage s's input, through its
 * sensitivity. */
static double sens_bound(const pvf_model *m, const lenet_fast *f, int s, int64_t row, int64_t co,
                         int64_t chan, const double *cell) {
    return dot_dd(cell, f->pair[s] + f->top1[row] * m->stages[s].in_size + co * chan, chan);
}

/* Hidden fc units with golden pre-activations z[] (rounding e[]) whose
 * inputs change by mid +- rad: their outputs' changes, as mid +- rad (in
 * place). A ReLU is decided where z keeps its sign; else the change lies
 * between 0 and c +- u. Every case is computed and one selected, so that
 * the loop runs without branches: which case holds is data dependent, a
 * branch on it mispredicts. (max / min spelled out: a helper function
 * would not be inlined under another optimize attribute.) */
SELECTS_VECTORIZE static void relu_changes(int64_t n, const float *restrict z,
                                           const double *restrict e, double *restrict mid,
                                           double *restrict rad) {
    for (int64_t k = 0; k < n; k++) {
        const double zk = z[k], ek = e[k], c = mid[k], u = rad[k];
        const double big = fabs(c) + u;
        /* relu(z + dz) - relu(z) for z in zk +- ek, dz in c +- u */
        const double lo0 = 0.0 < c - u ? 0.0 : c - u, lo1 = zk - ek + c - u, lo2 = zk + ek;
        const double hi0 = 0.0 > c + u ? 0.0 : c + u, hi1 = zk + ek + c + u, hi2 = zk - ek;
        const double lo_d = (lo1 > 0.0 ? lo1 : 0.0) - (lo2 > 0.0 ? lo2 : 0.0);
        const double hi_d = (hi1 > 0.0 ? hi1 : 0.0) - (hi2 > 0.0 ? hi2 : 0.0);
        const double lo = lo0 > lo_d ? lo0 : lo_d, hi = hi0 < hi_d ? hi0 : hi_d;
        double mk = (lo + hi) / 2, rk = (hi - lo) / 2 * BOUND_SCALE;
        mk = zk + ek < -big ? 0.0 : mk; /* off: stays off */
        rk = zk + ek < -big ? 0.0 : rk;
        mk = zk - ek > big ? c : mk; /* on: stays on */
        rk = zk - ek > big ? u : rk;
        mid[k] = mk;
        rad[k] = rk;
    }
}

/* A stage's input change mid +- rad in float for its products: midf, and
 * radf covering rad and midf's conversion; their largest magnitudes. 0 when
 * some are not finite. */
static int signed_inputs(int64_t in, const double *mid, const double *rad, float *midf, float *radf,
                         double *mmax, double *rmax) {
    *mmax = *rmax = 0;
    for (int64_t k = 0; k < in; k++) {
        midf[k] = (float)mid[k];
        radf[k] = float_up(rad[k] + fabs(mid[k] - (double)midf[k]));
        *mmax = max2(*mmax, fabs(mid[k]));
        *rmax = max2(*rmax, (double)radf[k]);
    }
    return isfinite(*mmax) && isfinite(*rmax);
}

/* Hidden fc stage t's units for eval input row from y = W midf and
 * yr = |W| radf (computed in any order: gamma(in) bounds the rounding):
 * each unit's output change as mid +- rad (relu_change). */
static void signed_units(const pvf_model *m, const lenet_fast *f, int64_t row, int t,
                         const float *y, const float *yr, double mmax, double rmax, double *mid,
                         double *rad) {
    const int64_t in = m->stages[t].in_size, out = m->stages[t].out_size;
    const double gamma = sum_gamma(in);
    const double *l1 = f->row_l1[t];
    for (int64_t k = 0; k < out; k++) {
        mid[k] = (double)y[k];
        rad[k] = ((double)yr[k] + l1[k] * gamma * (mmax + rmax)) * BOUND_SCALE;
    }
    relu_changes(out, f->pre[t] + row * out, f->unit_eps[t] + row * out, mid, rad);
}

/* The logit margins' change of eval input row when the last stage's input
 * (in features) changes by mid +- rad: through the margin rows, in double. */
static double margin_bound(const lenet_fast *f, int64_t row, int64_t in, const double *mid,
                           const double *rad) {
    const int64_t classes = f->classes, top1 = f->top1[row];
    double bound = 0;
    for (int64_t c = 0; c < classes; c++) {
        if (c == top1)
            continue;
        const double *gk = f->margin_w + (top1 * classes + c) * in;
        const double *ak = f->margin_abs + (top1 * classes + c) * in;
        bound = max2(bound, fabs(dot_dd(gk, mid, in)) + dot_dd(ak, rad, in));
    }
    return bound * BOUND_SCALE;
}

/* A bound for a single weight (co, ci, ky, kx) of the last conv stage s
 * changing by dw, with signs: each pooled cell's change d_q (from golden's
 * pre-pool maps, within 2 eps of the exact one), then through the fc stages
 * as intervals mid +- rad of the change of every unit (the exact change of
 * each linear map up to rounding, each ReLU decided where golden's
 * pre-activation keeps its sign), to the change of the logit margins.
 * tail_cells: channel co's chan cell changes d (within dmax) in float for
 * the first fc stage's product, dq, and the slop every product of them
 * carries (d's conversion and the sums' rounding); 0 when not finite. */
static int tail_cells(int64_t chan, const double *d, double dmax, float *dq, double *slop) {
    double dfmax = 0, dconv = 0;
    for (int64_t q = 0; q < chan; q++) {
        dq[q] = (float)d[q];
        dconv = max2(dconv, fabs(d[q] - (double)dq[q]));
        dfmax = max2(dfmax, fabs((double)dq[q]));
    }
    *slop = dmax + dconv + sum_gamma(chan) * dfmax;
    return isfinite(*slop);
}

/* The first fc stage's output change of eval input row, as mid +- rad, from
 * y = W dq over channel co's columns (tail_cells). */
static void tail_first_units(const pvf_model *m, const lenet_fast *f, int64_t row, int64_t co,
                             const float *y, double slop, double *mid, double *rad) {
    const lenet *l = m->arch_state;
    const int fc0 = l->nconv;
    const int64_t out = m->stages[fc0].out_size, cout = l->conv[fc0 - 1].cout;
    for (int64_t j = 0; j < out; j++) {
        mid[j] = (double)y[j];
        rad[j] = f->chan_l1[(j * cout + co)] * slop * BOUND_SCALE;
    }
    relu_changes(out, f->pre[fc0] + row * out, f->unit_eps[fc0] + row * out, mid, rad);
}

/* Eval inputs whose signed bound goes through the fc stages together: the
 * change of every unit as an interval mid +- rad, through each stage's two
 * products, W and |W| times every input's change, in float, one sgemm each
 * for the batch (the rounding bound of signed_units holds in any order),
 * each ReLU decided where golden's pre-activation keeps its sign
 * (relu_changes), then the margins (batch_margins). The inputs' changes
 * are the pooled cells of the last conv stage's channel co (tail_cells: t
 * the first fc stage, the product over co's columns only). need[row] is
 * set once decided: 1 when the bound cannot clear it.
 * 128 inputs a batch: each product packs its weights once per batch
 * (measured against 32, conv2.weight bits 17-31: 4-8 % faster). */
#define SIGNED_BATCH 128

typedef struct signed_batch {
    int t;            /* the first fc stage of the batched products */
    int64_t co, chan; /* the inputs are channel co's chan pooled cells */
    int64_t n, wide;  /* inputs in the batch; the widest stage from t on */
    int64_t rows[SIGNED_BATCH];
    double cheap[SIGNED_BATCH], mmax[SIGNED_BATCH], rmax[SIGNED_BATCH], slop[SIGNED_BATCH];
    float *midf, *radf, *y, *yr; /* [SIGNED_BATCH x wide] each */
    double *mid, *rad;           /* [wide] each: one input's change in double */
    double *claim;               /* pvf_exec.audit_claim */
} signed_batch;

/* Decides batch input j from its logits' changes y +- yr (the last
 * stage's products of its input change midf +- radf): each logit k is within
 * e_k = yr_k + gamma |w_k| (mmax + rmax) of its exact change (the rounding
 * of both products), so a margin within |y_t - y_c| + e_t + e_c; where that
 * does not clear the input, the margin rows from midf +- radf
 * (margin_bound, |w_t - w_c| instead of |w_t| + |w_c|). */
static void batch_margins(const pvf_model *m, const lenet_fast *f, signed_batch *b, int j,
                          unsigned char *need) {
    const int last = m->nstages - 1;
    const int64_t in = m->stages[last].in_size, classes = f->classes, row = b->rows[j];
    const int64_t top1 = f->top1[row];
    const float *y = b->y + j * b->wide, *yr = b->yr + j * b->wide;
    const double *l1 = f->row_l1[last];
    const double slop = sum_gamma(in) * (b->mmax[j] + b->rmax[j]);
    const double et = (double)yr[top1] + l1[top1] * slop;
    double loose = 0;
    for (int64_t c = 0; c < classes; c++)
        if (c != top1)
            loose = max2(loose,
                         fabs((double)y[top1] - (double)y[c]) + et + (double)yr[c] + l1[c] * slop);
    double bound = min2(b->cheap[j], loose * BOUND_SCALE);
    if (!(bound * BOUND_SCALE <= f->slack[row])) {
        for (int64_t k = 0; k < in; k++) {
            b->mid[k] = b->midf[j * b->wide + k];
            b->rad[k] = b->radf[j * b->wide + k];
        }
        bound = min2(bound, margin_bound(f, row, in, b->mid, b->rad));
    }
    need[row] = !(bound * BOUND_SCALE <= f->slack[row]);
    if (b->claim && !need[row])
        b->claim[row] = bound * BOUND_SCALE;
}

static void signed_batch_flush(const pvf_model *m, const lenet_fast *f, signed_batch *b,
                               unsigned char *need) {
    const lenet *l = m->arch_state;
    const int last = m->nstages - 1, wide = (int)b->wide;
    double *mid = b->mid, *rad = b->rad;
    int n = (int)b->n;
    b->n = 0;
    for (int t = b->t; t <= last && n > 0; t++) {
        const int in = (int)m->stages[t].in_size, out = (int)m->stages[t].out_size;
        const float *w = m->params[l->w[t]].value;
        const int cells = t == b->t;
        if (cells)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, (int)b->chan, 1.0f,
                        b->midf, wide, w + b->co * b->chan, in, 0.0f, b->y, wide);
        else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, b->midf, wide, w,
                        in, 0.0f, b->y, wide);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, b->radf, wide,
                        f->absw[t], in, 0.0f, b->yr, wide);
        }
        if (t == last) { /* the margins */
            for (int j = 0; j < n; j++)
                batch_margins(m, f, b, j, need);
            return;
        }
        int kept = 0;
        for (int j = 0; j < n; j++) {
            const int64_t row = b->rows[j];
            if (cells)
                tail_first_units(m, f, row, b->co, b->y + j * wide, b->slop[j], mid, rad);
            else
                signed_units(m, f, row, t, b->y + j * wide, b->yr + j * wide, b->mmax[j],
                             b->rmax[j], mid, rad);
            /* the linearized tail from the next stage, a hidden one */
            const double tail = t + 1 < last && f->in_r[t + 1]
                                    ? input_linear_bound(m, f, t + 1, row, mid, rad) * BOUND_SCALE
                                    : INFINITY;
            double near = INFINITY;
            if (tail <= f->slack[row]) {
                need[row] = 0; /* cleared by the linearized tail from here */
                if (b->claim)
                    b->claim[row] = tail;
            } else if (t + 1 == f->near_t && near_bound(m, f, row, mid, rad, &near)) {
                need[row] = 0; /* cleared by the runner-up classes' gradients */
                if (b->claim)
                    b->claim[row] = near;
            } else if (!signed_inputs(out, mid, rad, b->midf + kept * wide, b->radf + kept * wide,
                                      &b->mmax[kept], &b->rmax[kept]))
                need[row] = 1; /* not finite: no bound clears it */
            else {
                b->rows[kept] = row;
                b->cheap[kept++] = b->cheap[j];
            }
        }
        n = kept;
    }
}

/* Adds eval input row to the batch: its pooled cell changes d of channel
 * co, within dmax (tail_cells). 0 when they are not finite (no bound would
 * clear it). */
static int signed_batch_add(const pvf_model *m, const lenet_fast *f, signed_batch *b, int64_t row,
                            const double *d, double dmax, double cheap, unsigned char *need) {
    const int64_t j = b->n;
    if (!tail_cells(b->chan, d, dmax, b->midf + j * b->wide, &b->slop[j]))
        return 0;
    b->rows[j] = row;
    b->cheap[j] = cheap;
    if (++b->n == SIGNED_BATCH)
        signed_batch_flush(m, f, b, need);
    return 1;
}

/* The faulty channel co of the last conv stage s for eval input row (input
 * x) when its one changed weight (ci0, ky0, kx0) is huge, w (finite): a
 * pre-pool sum whose tap meets x != 0 is fl(w x) exactly as
 * conv_channel_direct computes it when all its other terms and the bias,
 * in whatever order, stay below an eighth of that value's ulp: |fl(w x)| >
 * 2^27 (1 + 1e-3) S, S = sum |w x| + |b| over the golden filter (with room
 * for its partial sums' rounding; fl(w x) == inf is inf in any order); a sum
 * whose tap meets 0 has golden's terms, and is golden's own sum (the pass's
 * order). Then max-pool and ReLU as conv_channel. 0 when some sum is not
 * provably so (conv_channel computes it); tap: scratch [oh x ow]. */
static int conv_channel_huge(const lenet *l, const lenet_fast *f, const pvf_conv2d *cv, int s,
                             const float *x, int64_t row, int64_t co, int64_t ci0, int64_t ky0,
                             int64_t kx0, float w, float bias, float *plane, float *pooled,
                             double *tap, double *others_out) {
    const int64_t positions = cv->oh * cv->ow;
    const double others = *others_out =
        kernel_abs_sum(f, s, cv->cin, co, f->xmax_row[s] + row * cv->cin, fabs((double)bias));
    const double floor = ldexp(others * (1 + 1e-3), 27);
    if (!(floor < INFINITY))
        return 0;
    const float *gold = f->pre_pool[s] + (row * cv->cout + co) * positions;
    conv_taps(cv, x, ci0, ky0, kx0, tap);
    int huge = 1;
    for (int64_t p = 0; p < positions; p++) {
        const float xv = (float)tap[p], v = w * xv; /* the float product, as conv_block */
        huge &= (xv == 0.0f) | (fabs((double)v) > floor);
        plane[p] = xv == 0.0f ? gold[p] : v;
    }
    if (!huge)
        return 0;
    pvf_maxpool2d(plane, 1, 1, cv->oh, cv->ow, l->pool, pooled);
    pvf_relu(pooled, (cv->oh / l->pool) * (cv->ow / l->pool));
    return 1;
}

/* The rows of a fault in the conv stage before the last, carried through
 * the last conv stage as golden's pre-pool sums plus the change of their
 * channel co through its kernels (a carried stage, as fc_sparse is): one
 * sgemm per batch over their im2col rows of that one channel, where the
 * full stage would take every channel's; then on from the first fc stage
 * as the carried rows go (pvf_fast_rows), a batch at a time. */
#define DELTA_BATCH PVF_CHUNK

typedef struct conv_delta {
    const pvf_conv2d *cv; /* the last conv stage, s + 1 */
    pvf_conv2d one;       /* its geometry over one input channel */
    int64_t n, batch, rows[DELTA_BATCH];
    double l1max; /* max over its filters of sum |w| over channel co's kernel */
    float *d;     /* [DELTA_BATCH x h w]: the rows' changes of channel co */
    float *col;   /* [k k x DELTA_BATCH oh ow]: their im2col rows side by side */
    float *dy;    /* [cout x DELTA_BATCH oh ow]: the pre-pool sums' changes */
    float *plane; /* [cout x oh ow] */
    float *next;  /* [DELTA_BATCH x the first fc stage's in_size]: their inputs */
} conv_delta;

static void conv_delta_free(conv_delta *c) {
    if (c)
        free(c->d);
    free(c);
}

/* For output channel co of conv stage s (not the last), or NULL when out
 * of memory. */
static conv_delta *conv_delta_new(const pvf_exec *ex, const lenet_fast *f, int s, int64_t co) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const pvf_conv2d *cv = &l->conv[m->stages[s + 1].layer];
    const int64_t maps = cv->oh * cv->ow, kk = cv->k * cv->k;
    conv_delta *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cv = cv;
    c->one = *cv;
    c->one.cin = 1;
    c->batch = ex->chunk < DELTA_BATCH ? ex->chunk : DELTA_BATCH;
    for (int64_t o = 0; o < cv->cout; o++)
        c->l1max = max2(c->l1max, f->kernel_l1[s + 1][o * cv->cin + co]);
    const int64_t floats =
        DELTA_BATCH * (cv->h * cv->w + maps * kk + maps * cv->cout + m->stages[s + 2].in_size) +
        cv->cout * maps;
    if (!(c->d = malloc((size_t)floats * sizeof(float)))) {
        conv_delta_free(c);
        return NULL;
    }
    c->col = c->d + DELTA_BATCH * cv->h * cv->w;
    c->dy = c->col + DELTA_BATCH * maps * kk;
    c->next = c->dy + DELTA_BATCH * maps * cv->cout;
    c->plane = c->next + DELTA_BATCH * m->stages[s + 2].in_size;
    return c;
}

/* What the exact recompute of one eval input for a conv fault needs: the
 * faulty filter and bias of output channel co, scratch, and the rows
 * carried on (dense, for a conv stage before the last) or waiting to run as
 * the full pass (the last conv's rows go on sparsely, never carried). */
/* Eval inputs of a huge weight of the last conv stage whose changed cells
 * go into the first fc stage (features col0.. of its input): judged from
 * their directions a batch at a time (dominant_directions, one sgemm per
 * stage and product, where one input at a time took four sgemv); those not
 * judged go on by fc_sparse. */

typedef struct dom_batch {
    int64_t n, chan, col0;
    int64_t rows[DOM_BATCH];
    double H[DOM_BATCH], others[DOM_BATCH];
    float *xhat;  /* [DOM_BATCH x chan]: new values over H, 0 where unchanged */
    float *delta; /* [DOM_BATCH x chan]: the changes */
    float *work;  /* dominant_directions' */
    dominant d[DOM_BATCH];
} dom_batch;

typedef struct conv_exact_ctx {
    const pvf_conv2d *cv;
    int s;
    int64_t co;
    const float *w;
    float bias;
    float *plane, *pooled, *carry;
    int64_t carried[PVF_CHUNK], nc;
    pending wait;
    /* a single huge weight (ci0, ky0, kx0) of the last conv stage, finite:
     * conv_channel_huge tries first; tap its scratch */
    int huge;
    int64_t ci0, ky0, kx0;
    double *tap;
    conv_delta *delta; /* the conv stage before the last: its rows go on batched */
    dom_batch *dom;    /* a huge weight of the last conv stage: judged by direction */
} conv_exact_ctx;

/* The batch's rows through the last conv stage, then on from the first fc
 * stage. */
static int conv_delta_flush(pvf_exec *ex, const pvf_golden *g, conv_exact_ctx *c,
                            pvf_trial_result *r, pvf_err *err) {
    conv_delta *dl = c->delta;
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const lenet_fast *f = g->fast;
    const pvf_conv2d *cv = dl->cv;
    const int s = c->s + 1, n = (int)dl->n;
    const int64_t maps = cv->oh * cv->ow, kk = cv->k * cv->k, cout = cv->cout;
    const int64_t in0 = m->stages[s + 1].in_size;
    dl->n = 0;
    if (n == 0)
        return 0;
    const int ld = (int)(dl->batch * maps);
    for (int j = 0; j < n; j++)
        pvf_im2col(&dl->one, dl->d + j * cv->h * cv->w, dl->col + j * maps, ld);
    /* dy[o][j maps + p]: filter o's kernel of channel co over row j's cells */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, n * (int)maps, (int)kk, 1.0f,
                m->params[l->w[s]].value + c->co * kk, (int)(cv->cin * kk), dl->col, ld, 0.0f,
                dl->dy, n * (int)maps);
    for (int j = 0; j < n; j++) {
        const float *gold = f->pre_pool[s] + dl->rows[j] * cout * maps;
        for (int64_t o = 0; o < cout; o++) {
            const float *dy = dl->dy + (o * n + j) * maps;
            for (int64_t p = 0; p < maps; p++)
                dl->plane[o * maps + p] = gold[o * maps + p] + dy[p];
        }
        pvf_maxpool2d(dl->plane, 1, cout, cv->oh, cv->ow, l->pool, dl->next + j * in0);
        pvf_relu(dl->next + j * in0, in0);
    }
    r->stage_rows += n;
    return pvf_fast_rows(ex, g, s + 1, dl->rows, n, dl->next, r, err);
}

static int dom_flush(pvf_exec *ex, const pvf_golden *g, conv_exact_ctx *c, pvf_trial_result *r,
                     pvf_err *err) {
    dom_batch *db = c->dom;
    const pvf_model *m = ex->m;
    const lenet_fast *f = g->fast;
    const int t = ((const lenet *)m->arch_state)->nconv;
    const int64_t n = db->n;
    db->n = 0;
    if (n == 0)
        return 0;
    dominant_directions(m, f, t, db->col0, db->chan, db->xhat, n, db->work, db->d);
    for (int64_t b = 0; b < n; b++) {
        const int64_t row = db->rows[b];
        if (dominant_judge(g, row, dominant_top(f, t, row, &db->d[b], db->H[b], db->others[b]), r))
            continue;
        int64_t feat[4096], nf = 0;
        float delta[4096];
        for (int64_t q = 0; q < db->chan; q++)
            if (db->delta[b * db->chan + q] != 0) {
                feat[nf] = db->col0 + q;
                delta[nf++] = db->delta[b * db->chan + q];
            }
        if (fc_sparse(ex, g, t, row, feat, delta, nf, -1, &c->wait, r, err))
            return -1;
    }
    return 0;
}

/* Eval input row for the batch: its changed cells, features feat[0..nf)
 * (of the batch's channel) now worth pooled[] (indexed by cell), by
 * delta[]; others the bound of their sums' other terms. 0 when added (or
 * judged later), 1 when no direction could judge it. */
static int dom_add(const pvf_model *m, const lenet_fast *f, dom_batch *db, int64_t row,
                   const int64_t *feat, const float *delta, int64_t nf, const float *pooled,
                   double others) {
    const int t = ((const lenet *)m->arch_state)->nconv;
    double H = 0, reach = 0;
    int finite = 1;
    for (int64_t k = 0; k < nf; k++) {
        const float v = pooled[feat[k] - db->col0];
        H = max2(H, fabs((double)v));
        finite &= isfinite(v) != 0;
    }
    if (!finite || !(H > 0))
        return 1;
    const int64_t b = db->n;
    float *xhat = db->xhat + b * db->chan, *d = db->delta + b * db->chan;
    memset(xhat, 0, (size_t)db->chan * sizeof *xhat);
    memset(d, 0, (size_t)db->chan * sizeof *d);
    for (int64_t k = 0; k < nf; k++) {
        const int64_t q = feat[k] - db->col0;
        d[q] = delta[k];
        xhat[q] = (float)((double)pooled[q] / H);
        reach += fabs((double)xhat[q]) * f->dom_reach[t][feat[k]];
    }
    /* a lead is at most twice the reach: no direction would judge it */
    if (!(H * reach > f->dom_rest[t][row]))
        return 1;
    db->rows[b] = row;
    db->H[b] = H;
    db->others[b] = others;
    db->n++;
    return 0;
}

/* Eval input i exactly: channel co with the faulty filter, then on. */
static int conv_exact(pvf_exec *ex, const pvf_golden *g, conv_exact_ctx *c, int64_t i,
                      pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const int s = c->s;
    const int64_t in = m->stages[s].in_size, out = m->stages[s].out_size;
    const int64_t chan = out / c->cv->cout, co = c->co;
    float *plane = c->plane, *pooled = c->pooled;
    const float *x = g->stage_in[s] + i * in;
    /* the other terms of the huge sums (dominant_top): only where they are
     * the huge products alone */
    double others = -1;
    if (!c->huge || !conv_channel_huge(l, g->fast, c->cv, s, x, i, co, c->ci0, c->ky0, c->kx0,
                                       c->w[(c->ci0 * c->cv->k + c->ky0) * c->cv->k + c->kx0],
                                       c->bias, plane, pooled, c->tap, &others)) {
        conv_channel(l, c->cv, x, c->w, c->bias, plane, pooled, pooled + chan);
        others = -1;
    }
    r->stage_rows++;
    const float *gold = g->stage_in[s + 1] + i * out;
    if (memcmp(pooled, gold + co * chan, (size_t)chan * sizeof *pooled) == 0)
        return 0;
    if (s + 1 == l->nconv) { /* a few changed features into the first fc stage */
        int64_t feat[4096], nf = 0;
        if (chan > 4096)
            return pvf_err_set(err, "fast path: %lld features per channel", (long long)chan);
        for (int64_t q = 0; q < chan; q++)
            if (memcmp(&pooled[q], &gold[co * chan + q], sizeof *pooled)) {
                feat[nf] = co * chan + q;
                plane[nf++] = pooled[q] - gold[co * chan + q];
            }
        if (c->dom && others >= 0 && nf > 1 && !ex->trial_out &&
            !dom_add(m, g->fast, c->dom, i, feat, plane, nf, pooled, others))
            return c->dom->n == DOM_BATCH ? dom_flush(ex, g, c, r, err) : 0;
        return fc_sparse(ex, g, s + 1, i, feat, plane, nf, others, &c->wait, r, err);
    }
    if (c->delta) { /* batched, unless its sums through the next stage may overflow */
        conv_delta *dl = c->delta;
        float *d = dl->d + dl->n * chan;
        double dmax = 0;
        int finite = 1;
        for (int64_t q = 0; q < chan; q++) {
            d[q] = pooled[q] - gold[co * chan + q];
            finite &= isfinite(d[q]) != 0;
            dmax = max2(dmax, fabs((double)d[q]));
        }
        if (finite && dmax * dl->l1max <= FLT_MAX / 4) {
            dl->rows[dl->n++] = i;
            return dl->n == dl->batch ? conv_delta_flush(ex, g, c, r, err) : 0;
        }
    }
    memcpy(c->carry + c->nc * out, gold, (size_t)out * sizeof *c->carry);
    memcpy(c->carry + c->nc * out + co * chan, pooled, (size_t)chan * sizeof *c->carry);
    c->carried[c->nc++] = i;
    if (c->nc == ex->chunk) {
        c->nc = 0;
        return pvf_fast_rows(ex, g, s + 1, c->carried, ex->chunk, c->carry, r, err);
    }
    return 0;
}

/* The first bound of a fault in output channel co of conv stage s for eval
 * input i: the summed |Δw| per input channel dch[] (and bias dbias) times the
 * channel's largest |x|, through the channel's summed sensitivity; 0 when
 * the changed weights meet only zeros. */
static inline double coarse_bound(const lenet_fast *f, const pvf_golden *g, int s, int64_t cin,
                                  int64_t co, const double *dch, double dbias, int64_t i) {
    double delta = dbias;
    for (int64_t ci = 0; ci < cin; ci++)
        delta += dch[ci] * f->xmax_row[s][i * cin + ci];
    if (delta == 0)
        return 0;
    return delta * pair_factor(f->chan[s] + co * f->classes, f->chan_max[s][co], g->top1[i]);
}

static int conv_trial(pvf_exec *ex, const pvf_golden *g, int s, int param, pvf_trial_result *r,
                      pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const lenet_fast *f = g->fast;
    const pvf_conv2d *cv = &l->conv[m->stages[s].layer];
    const int64_t kk = cv->k * cv->k, cols = cv->cin * kk;
    const int64_t in = m->stages[s].in_size, out = m->stages[s].out_size, chan = out / cv->cout;
    const int is_bias = param == l->b[s];
    const int64_t span = ex->fault_hi - ex->fault_lo;
    const int64_t co = is_bias ? ex->fault_lo : ex->fault_lo / cols;
    double d[1024], dch[1024];
    if (span > 1024 || cv->cin > 1024)
        return 1;
    const int nonfinite = fault_deltas(ex, param, d, span);
    if (span > 1 && pvf_fast_overflow_prone(ex->patch, span)) { /* as the full pass */
        int64_t *rows = malloc((size_t)f->n * sizeof *rows);
        if (!rows)
            return pvf_err_set(err, "fast path: out of memory");
        for (int64_t i = 0; i < f->n; i++)
            rows[i] = i;
        int rc = pvf_fast_rows(ex, g, s, rows, f->n, NULL, r, err);
        free(rows);
        return rc;
    }
    /* per input channel, the summed |Δw| of the fault's elements */
    double dbias = 0;
    memset(dch, 0, (size_t)cv->cin * sizeof *dch);
    for (int64_t e = 0; e < span; e++) {
        if (is_bias)
            dbias += d[e];
        else
            dch[((ex->fault_lo + e) % cols) / kk] += d[e];
    }
    if (!nonfinite) {
        double global = dbias;
        for (int64_t ci = 0; ci < cv->cin; ci++)
            global += dch[ci] * f->xmax[s][ci];
        if (global * BOUND_SCALE * 2 * f->chan_max[s][co] <= f->min_slack)
            return 0; /* no eval input can change its top-1 */
    }
    /* The faulty filter of channel co and its bias, from the patch. */
    float *carry = ex->fast_scratch, *w = carry + ex->chunk * l->widest, *plane = w + cols,
          *pooled = plane + cv->oh * cv->ow;
    memcpy(w, m->params[l->w[s]].value + co * cols, (size_t)cols * sizeof *w);
    float bias = m->params[l->b[s]].value[co];
    if (is_bias)
        bias = ex->patch[0];
    else
        memcpy(w + (ex->fault_lo - co * cols), ex->patch, (size_t)span * sizeof *w);
    const int single = !is_bias && span == 1;
    const int fine = span == 1; /* a single weight or bias: the finer bounds apply */
    const float w_old = m->params[param].value[ex->fault_lo];
    const int64_t e0 = ex->fault_lo % cols, ci0 = e0 / kk, ky0 = e0 % kk / cv->k, kx0 = e0 % cv->k;
    double cell[4096], dcell[4096], tap[4096];
    if (chan > 4096 || cv->oh * cv->ow > 4096 || l->pool * l->pool > 64)
        return 1;
    conv_exact_ctx cx = {.cv = cv,
                         .s = s,
                         .co = co,
                         .w = w,
                         .bias = bias,
                         .plane = plane,
                         .pooled = pooled,
                         .carry = carry,
                         /* far beyond any sum of the other terms, where conv_channel
                          * takes the direct convolution: see conv_channel_huge */
                         .huge = single && s + 1 == l->nconv && isfinite(ex->patch[0]) &&
                                 fabsf(ex->patch[0]) > 0x1p60f && cv->stride == 1 &&
                                 conv_direct_scratch(cv) <= cols * cv->oh * cv->ow,
                         .ci0 = ci0,
                         .ky0 = ky0,
                         .kx0 = kx0,
                         .tap = tap};
    /* a single weight of the last conv stage: the inputs whose signed bound
     * goes through the fc stages are batched (signed_batch) from its pooled
     * cells of channel co, and every input not cleared is computed
     * afterwards, in order */
    const int fc0 = l->nconv, last = m->nstages - 1;
    const int before_last = s + 2 == fc0 && fc0 < m->nstages;  /* carried by conv_delta */
    const int tail = fine && s + 1 == fc0 && fc0 < m->nstages; /* from the pooled cells */
    signed_batch sb = {.t = fc0, .co = co, .chan = chan, .claim = ex->audit_claim};
    int batched = tail;
    for (int t = fc0; batched && t <= last; t++) {
        const int64_t tin = m->stages[t].in_size, tout = m->stages[t].out_size;
        sb.wide = tin > sb.wide ? tin : sb.wide;
        sb.wide = tout > sb.wide ? tout : sb.wide;
        batched = f->absw[t] != NULL;
    }
    unsigned char *need = NULL;
    int rc = -1;
    dom_batch db = {.chan = chan, .col0 = co * chan};
    if (cx.huge && tail && f->dom_rest[fc0] && chan <= 4096) { /* dom_flush's rows */
        cx.dom = &db;
        db.xhat = malloc((size_t)(2 * DOM_BATCH * chan) * sizeof(float));
        db.work = malloc((size_t)dominant_work(m, fc0, DOM_BATCH, chan) * sizeof(float));
        if (!db.xhat || !db.work) {
            pvf_err_set(err, "fast path: out of memory");
            goto out;
        }
        db.delta = db.xhat + DOM_BATCH * chan;
    }
    if (before_last && !(cx.delta = conv_delta_new(ex, f, s, co))) {
        pvf_err_set(err, "fast path: out of memory");
        goto out;
    }
    if (batched) {
        need = malloc((size_t)f->n);
        sb.midf = malloc((size_t)(4 * SIGNED_BATCH * sb.wide) * sizeof(float));
        sb.mid = malloc((size_t)(2 * sb.wide) * sizeof *sb.mid);
        if (!need || !sb.midf || !sb.mid) {
            pvf_err_set(err, "fast path: out of memory");
            goto out;
        }
        sb.radf = sb.midf + SIGNED_BATCH * sb.wide;
        sb.y = sb.radf + SIGNED_BATCH * sb.wide;
        sb.yr = sb.y + SIGNED_BATCH * sb.wide;
        sb.rad = sb.mid + sb.wide;
    }
    const int64_t maps = cv->oh * cv->ow, plane_size = cv->h * cv->w;
    if (fine && is_bias) /* the bias is every pre-pool sum's tap of 1 */
        for (int64_t p = 0; p < maps; p++)
            tap[p] = 1.0;
    double next = nonfinite ? 0 : coarse_bound(f, g, s, cv->cin, co, dch, dbias, 0);
    for (int64_t i = 0; i < f->n; i++) {
        const float *x = g->stage_in[s] + i * in;
        const double coarse = next;
        if (need)
            need[i] = 0;
        if (!nonfinite && i + 1 < f->n)
            next = coarse_bound(f, g, s, cv->cin, co, dch, dbias, i + 1);
        /* the next input's data for the finer bounds, ahead, unless the
         * first bound clears it (fetching it for every input was most of a
         * low-bit conv1 trial's time) */
        if (fine && i + 1 < f->n &&
            (nonfinite || !(f->slack[i + 1] > 0 && next * BOUND_SCALE <= f->slack[i + 1]))) {
            if (single)
                prefetch_span(x + in + ci0 * plane_size, (size_t)plane_size * sizeof(float));
            prefetch_span(f->pre_pool[s] + ((i + 1) * cv->cout + co) * maps,
                          (size_t)maps * sizeof(float));
            /* the tail bounds' per-input data: a page apart from one input
             * to the next, beyond the hardware prefetcher's reach */
            const int64_t at = ((i + 1) * cv->cout + co) * RADII;
            if (f->radius[s]) {
                prefetch_span(f->radius[s] + at, RADII * sizeof(double));
                prefetch_span(f->radius_cost[s] + at, RADII * sizeof(double));
            }
            if (f->gin[s + 1])
                prefetch_span(f->gin[s + 1] + (i + 1) * out + co * chan, chan * sizeof(float));
        }
        if (!nonfinite && f->slack[i] > 0) {
            if (coarse == 0) { /* the changed weights meet only zeros */
                if (ex->audit_claim)
                    ex->audit_claim[i] = 0;
                continue;
            }
            double bound = coarse;
            if (fine && bound * BOUND_SCALE > f->slack[i] &&
                bound < (before_last ? COARSE_WORTH : ASTRONOMIC) *
                            f->slack[i]) { /* finer: cell by cell */
                const double dw = (double)ex->patch[0] - (double)w_old;
                const double eps =
                    conv_rounding(m, l, f, s, i, co, dw, is_bias ? 1.0 : (double)f->xmax_all[s][i]);
                if (!is_bias)
                    conv_taps(cv, x, ci0, ky0, kx0, tap);
                const double dmax =
                    cell_changes(l, cv, f->pre_pool[s] + (i * cv->cout + co) * cv->oh * cv->ow, tap,
                                 dw, eps, dcell, cell);
                bound = sens_bound(m, f, s + 1, i, co, chan, cell);
                if (bound * BOUND_SCALE > f->slack[i]) /* finer: the linearized tail */
                    bound = fmin(bound, linear_tail_bound(m, f, s, i, co, chan, cell));
                /* finer still, with signs; not worth it for a change far beyond
                 * the margin even through |W| */
                if (batched && bound * BOUND_SCALE > f->slack[i] &&
                    bound < HOPELESS * f->slack[i] &&
                    signed_batch_add(m, f, &sb, i, dcell, dmax, bound, need))
                    continue; /* decided when its batch goes */
            }
            if (bound * BOUND_SCALE <= f->slack[i]) {
                if (ex->audit_claim)
                    ex->audit_claim[i] = bound * BOUND_SCALE;
                continue;
            }
        }
        if (need)
            need[i] = 1; /* computed below, once the batches are decided */
        else if (conv_exact(ex, g, &cx, i, r, err))
            goto out;
    }
    if (need) {
        signed_batch_flush(m, f, &sb, need);
        for (int64_t i = 0; i < f->n; i++)
            if (need[i] && conv_exact(ex, g, &cx, i, r, err))
                goto out;
    }
    if (cx.delta && conv_delta_flush(ex, g, &cx, r, err))
        goto out;
    if (cx.dom && dom_flush(ex, g, &cx, r, err))
        goto out;
    if (cx.nc && pvf_fast_rows(ex, g, s + 1, cx.carried, cx.nc, carry, r, err))
        goto out;
    rc = pending_flush(ex, g, &cx.wait, r, err);
out:
    pending_free(&cx.wait); /* freed by the flush, unless it was not reached */
    if (cx.dom) {
        free(cx.dom->xhat);
        free(cx.dom->work);
    }
    conv_delta_free(cx.delta);
    free(need);
    free(sb.midf);
    free(sb.mid);
    return rc;
}

static int fc_trial(pvf_exec *ex, const pvf_golden *g, int s, int param, pvf_trial_result *r,
                    pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const lenet_fast *f = g->fast;
    const int j = m->stages[s].layer, last = s == m->nstages - 1;
    const int64_t in = l->fc_in[j], out = l->fc_out[j];
    const int is_bias = param == l->b[s];
    const int64_t span = ex->fault_hi - ex->fault_lo;
    const int64_t i = is_bias ? ex->fault_lo : ex->fault_lo / in; /* the changed feature */
    const int64_t k0 = is_bias ? 0 : ex->fault_lo % in;           /* its first changed column */
    double d[4096];
    if (span > (int64_t)(sizeof d / sizeof *d))
        return 1;
    const int nonfinite = fault_deltas(ex, param, d, span);
    if (pvf_fast_overflow_prone(ex->patch, span)) /* as the full pass */
        return rerun_readers(ex, g, s, k0, span, r, err);
    /* How a change of feature i moves top-1 against the rest: next stage's
     * sensitivity, or for the logits themselves only that logit moves. */
    const double smax = last ? 1 : f->sens_max[s + 1][i];
    const double *pair = last ? NULL : f->pair[s + 1] + i; /* top-1 t: pair[t * out] */
    if (!nonfinite) {
        double global = 0;
        for (int64_t e = 0; e < span; e++)
            global += d[e] * (is_bias ? 1.0 : (double)f->xmax[s][k0 + e]);
        if (global * BOUND_SCALE * (last ? 1 : 2 * smax) <= f->min_slack)
            return 0;
    }
    /* The faulty row i of the weight and its bias, as the stage would read
     * them (built from the patch: the overlay's full copy is not needed). */
    float *w = ex->fast_scratch + ex->chunk * l->widest;
    if (last && out > 256)
        return pvf_err_set(err, "fast path: %lld classes", (long long)out);
    pending wait = {0};
    memcpy(w, m->params[l->w[s]].value + i * in, (size_t)in * sizeof *w);
    float bias = m->params[l->b[s]].value[i];
    if (is_bias)
        bias = ex->patch[0];
    else
        memcpy(w + k0, ex->patch, (size_t)span * sizeof *w);
    const float *gold_out = last ? g->out : g->stage_in[s + 1];
    /* The eval inputs no bound clears, listed first without a branch per
     * input (which of them are cleared is data dependent): an input whose
     * changed weights meet only zeros has the same sums; one whose change
     * times its sensitivity fits in its slack keeps its outcome. */
    int32_t todo_rows[4096], *todo = todo_rows;
    int64_t ntodo = 0;
    if (nonfinite || f->n > 4096)
        todo = NULL;                                    /* every input, in the loop below */
    else if (span == 1 && !is_bias && f->fc_limit[s]) { /* one weight: one run of each */
        const float *x = f->xcol[s] + k0 * f->n, *limit = f->fc_limit[s] + i * f->n;
        for (int64_t row = 0; row < f->n; row++) {
            const double delta = d[0] * fabs((double)x[row]);
            todo[ntodo] = (int32_t)row;
            ntodo += (delta != 0) & !(delta <= (double)limit[row]);
        }
    } else
        for (int64_t row = 0; row < f->n; row++) {
            const float *x = f->xcol[s] + k0 * f->n + row; /* x[e * n]: column k0 + e */
            const double slack = f->slack[row];
            double delta = 0;
            for (int64_t e = 0; e < span; e++)
                delta += d[e] * (is_bias ? 1.0 : fabs((double)x[e * f->n]));
            const double pf = last ? 1 : pair[g->top1[row] * out];
            todo[ntodo] = (int32_t)row;
            ntodo += (delta != 0) & !((slack > 0) & (delta * BOUND_SCALE * pf <= slack));
        }
    /* A single weight so large (an exponent flip) that its product alone
     * can be the whole sum: when it exceeds 2^27 (1 + 1e-3) times a bound
     * on golden's sum |w x| + |b| of unit i (|w| of the row times the
     * input's largest |x|, plus |b|), every other term and partial sum, in
     * whatever order, stays below an eighth of its ulp, and the sum is that
     * product, as any recompute would round it. */
    const float w_new = ex->patch[0];
    const int alone = !is_bias && span == 1 && isfinite(w_new) && fabsf(w_new) > 0x1p60f;
    const double row_others = f->row_l1[s][i] * BOUND_SCALE + fabs((double)bias);
    for (int64_t at = 0; at < (todo ? ntodo : f->n); at++) {
        const int64_t row = todo ? todo[at] : at;
        const double slack = f->slack[row];
        float z = 0;
        double others = 0;
        int product_alone = 0;
        if (alone) {
            const float xk = f->xcol[s][k0 * f->n + row];
            others = row_others * (double)f->xmax_all[s][row];
            z = w_new * xk;
            product_alone = fabs((double)z) > 0x1p27 * (1 + 1e-3) * others;
        }
        if (!product_alone) { /* exactly: the faulty row's dot product */
            z = cblas_sdot((int)in, g->stage_in[s] + row * in, 1, w, 1) + bias;
            others = last ? 0 : f->abs_sum[s][row * out + i];
        }
        if (!last)
            z = z < 0.0f ? 0.0f : z; /* pvf_relu: NaN passes */
        r->stage_rows++;
        const float *gold = gold_out + row * out;
        /* golden's value of unit i, by feature: in one run over the inputs */
        const float gold_i = last ? gold[i] : f->xcol[s + 1][i * f->n + row];
        if (memcmp(&z, &gold_i, sizeof z) == 0)
            continue;
        if (last) {
            float logits[256];
            memcpy(logits, gold, (size_t)out * sizeof *logits);
            logits[i] = z;
            pvf_fast_judge_row(ex, g, row, logits, r);
            continue;
        }
        double change = fabs((double)z - (double)gold_i);
        if (isfinite(change) && slack > 0 &&
            change * BOUND_SCALE * pair[g->top1[row] * out] <= slack)
            continue;
        /* One changed feature into the next stage (others: the faulty
         * sum's other terms, for dominant_top; with more than one changed
         * term, they may cancel in z: not known) */
        const float delta = z - gold_i;
        if (fc_sparse(ex, g, s + 1, row, &i, &delta, 1, span == 1 ? others : -1, &wait, r, err)) {
            pending_free(&wait);
            return -1;
        }
    }
    return pending_flush(ex, g, &wait, r, err);
}

int lenet_fast_trial(pvf_exec *ex, const pvf_golden *g, int param, const pvf_fault_effect *eff,
                     pvf_trial_result *r, pvf_err *err) {
    (void)eff;
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const int s = m->params[param].stage;
    return s < l->nconv ? conv_trial(ex, g, s, param, r, err) : fc_trial(ex, g, s, param, r, err);
}
