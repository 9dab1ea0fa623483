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
 * dense from there, for the inputs whose activations still differ. */
#include "lenet.h"

#include <cblas.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LENET_STAGES (2 * LENET_MAX_LAYERS + 2)

/* Rounding slack: bounds are computed in double and scaled up by this, and a
 * margin counts only beyond 1e-4 of its logits' scale, since a full forward
 * pass rounds differently from golden by about that much at most. */
#define BOUND_SCALE (1.0 + 1e-6)
#define MARGIN_TOL  1e-4

typedef struct lenet_fast {
    int64_t n, classes;
    double *slack;       /* [n] golden top-1 margin minus the tolerance; < 0 never settles */
    double min_slack;    /* over all eval inputs */
    const int64_t *top1; /* golden top-1 per eval input (the golden pass's) */
    /* sens[s][f * classes + c]: bound on |Δ logit c| per unit |Δ x_f| of stage
     * s's input feature f (s >= 1); sens_max[s][f] its max over c. */
    double *sens[LENET_STAGES], *sens_max[LENET_STAGES];
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
    /* Conv stage s: golden outputs before pooling [n x cout x oh x ow], and
     * per eval input the largest |x| over all its input channels [n]. */
    float *pre_pool[LENET_STAGES], *xmax_all[LENET_STAGES];
    double *filter_l1[LENET_STAGES]; /* [cout]: sum of |w| of each filter */
} lenet_fast;

void lenet_fast_free(void *state) {
    lenet_fast *f = state;
    if (!f)
        return;
    free(f->slack);
    for (int s = 0; s < LENET_STAGES; s++) {
        free(f->sens[s]);
        free(f->sens_max[s]);
        free(f->chan[s]);
        free(f->chan_max[s]);
        free(f->xmax_row[s]);
        free(f->xmax[s]);
        free(f->pre[s]);
        free(f->pre_pool[s]);
        free(f->xmax_all[s]);
        free(f->filter_l1[s]);
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
        if (!f->sens[s] ||
            !(f->sens_max[s] = max_over_classes(f->sens[s], m->stages[s].in_size, classes)))
            goto oom;
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
        float *col = malloc((size_t)pvf_conv2d_scratch(cv) * sizeof(float));
        if (!f->pre_pool[s] || !f->xmax_all[s] || !f->filter_l1[s] || !col) {
            free(col);
            goto oom;
        }
        /* image by image, as the stage computes them */
        pvf_conv2d_run(cv, g->stage_in[s], n, m->params[l->w[s]].value, m->params[l->b[s]].value,
                       f->pre_pool[s], col);
        free(col);
        for (int64_t co = 0; co < cv->cout; co++)
            for (int64_t e = 0; e < cols; e++)
                f->filter_l1[s][co] += fabs((double)m->params[l->w[s]].value[co * cols + e]);
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
        f->pre[s] = malloc((size_t)(n * out) * sizeof(float));
        if (!f->xmax[s] || !f->pre[s])
            goto oom;
        /* in the golden pass's chunks, so that the sums are the pass's own */
        for (int64_t i = 0; i < n; i += PVF_CHUNK)
            pvf_linear(g->stage_in[s] + i * in, n - i < PVF_CHUNK ? n - i : PVF_CHUNK, in,
                       m->params[l->w[s]].value, m->params[l->b[s]].value, out,
                       f->pre[s] + i * out);
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < in; k++)
                f->xmax[s][k] = fmaxf(f->xmax[s][k], fabsf(g->stage_in[s][i * in + k]));
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
    const int64_t width = ex->m->stages[s].in_size, classes = f->classes, t = g->top1[row];
    const float *gold = g->stage_in[s] + row * width;
    double bound = 0;
    for (int64_t k = 0; k < width; k++) {
        double d = fabs((double)in[k] - (double)gold[k]);
        if (d != 0)
            bound += d * pair_factor(f->sens[s] + k * classes, f->sens_max[s][k], t);
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

/* Output channel co of conv stage s for one eval input x, exactly as the
 * stage computes it apart from the order of the sums: the convolution with
 * the faulty filter w[cin x k x k] and bias, max-pool, ReLU. */
static void conv_channel(const lenet *l, const pvf_conv2d *cv, const float *restrict x,
                         const float *restrict w, float bias, float *restrict plane,
                         float *pooled) {
    const int64_t k = cv->k, oh = cv->oh, ow = cv->ow;
    for (int64_t p = 0; p < oh * ow; p++)
        plane[p] = 0.0f;
    /* weight by weight, so the inner loop runs along an output row */
    for (int64_t ci = 0; ci < cv->cin; ci++)
        for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) {
                const float wv = w[(ci * k + ky) * k + kx];
                for (int64_t oy = 0; oy < oh; oy++) {
                    const int64_t y = oy * cv->stride - cv->pad + ky;
                    if (y < 0 || y >= cv->h)
                        continue;
                    const float *restrict xr = x + (ci * cv->h + y) * cv->w;
                    float *restrict pr = plane + oy * ow;
                    int64_t lo = 0, hi = ow; /* ox whose input column is inside */
                    while (lo < ow && lo * cv->stride - cv->pad + kx < 0)
                        lo++;
                    while (hi > lo && (hi - 1) * cv->stride - cv->pad + kx >= cv->w)
                        hi--;
                    if (cv->stride == 1)
                        for (int64_t ox = lo; ox < hi; ox++)
                            pr[ox] += wv * xr[ox - cv->pad + kx];
                    else
                        for (int64_t ox = lo; ox < hi; ox++)
                            pr[ox] += wv * xr[ox * cv->stride - cv->pad + kx];
                }
            }
    for (int64_t p = 0; p < oh * ow; p++)
        plane[p] += bias;
    pvf_maxpool2d(plane, 1, 1, oh, ow, l->pool, pooled);
    pvf_relu(pooled, (oh / l->pool) * (ow / l->pool));
}

/* Rows whose sums can overflow, waiting to run as the full pass runs them
 * (pvf_fast_rows batches them by the pass's chunks). */
typedef struct pending {
    int stage;
    int64_t n;
    int64_t rows[PVF_CHUNK];
    float *inputs; /* [PVF_CHUNK x the stage's in_size] */
} pending;

static int pending_flush(pvf_exec *ex, const pvf_golden *g, pending *p, pvf_trial_result *r,
                         pvf_err *err) {
    int rc = p->n ? pvf_fast_rows(ex, g, p->stage, p->rows, p->n, p->inputs, r, err) : 0;
    p->n = 0;
    return rc;
}

static int pending_add(pvf_exec *ex, const pvf_golden *g, pending *p, int stage, int64_t row,
                       const float *x, pvf_trial_result *r, pvf_err *err) {
    if (p->n && (p->stage != stage || p->n == ex->chunk) && pending_flush(ex, g, p, r, err))
        return -1;
    const int64_t in = ex->m->stages[stage].in_size;
    p->stage = stage;
    memcpy(p->inputs + p->n * in, x, (size_t)in * sizeof *x);
    p->rows[p->n++] = row;
    return 0;
}

/* The fully connected stages from fc stage s on for one eval input whose
 * input to s is x (dense), each a matrix-vector product; the row leaves as
 * soon as it is golden again or bounded. */
static int fc_tail(pvf_exec *ex, const pvf_golden *g, int s, int64_t row, const float *x,
                   pending *p, pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    if (pvf_fast_overflow_prone(x, m->stages[s].in_size)) /* as the full pass */
        return pending_add(ex, g, p, s, row, x, r, err);
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

/* Fc stage s for one eval input whose input differs from golden only in
 * features feat[0..nf) by delta[]: the golden pre-activations plus those
 * columns, then on (dense) from there. */
static int fc_sparse(pvf_exec *ex, const pvf_golden *g, int s, int64_t row, const int64_t *feat,
                     const float *delta, int64_t nf, pending *p, pvf_trial_result *r,
                     pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const lenet_fast *f = g->fast;
    const int64_t in = m->stages[s].in_size, out = m->stages[s].out_size;
    const int last = s == m->nstages - 1;
    float *y = ex->fast_scratch + l->fast_tail + 2 * l->widest;
    if (pvf_fast_overflow_prone(delta, nf)) { /* the dense way, as the full pass */
        memcpy(y, g->stage_in[s] + row * in, (size_t)in * sizeof *y);
        for (int64_t j = 0; j < nf; j++)
            y[feat[j]] += delta[j];
        return fc_tail(ex, g, s, row, y, p, r, err);
    }
    const float *w = m->params[l->w[s]].value;
    memcpy(y, f->pre[s] + row * out, (size_t)out * sizeof *y);
    for (int64_t j = 0; j < nf; j++)
        for (int64_t o = 0; o < out; o++)
            y[o] += w[o * in + feat[j]] * delta[j];
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

/* Weight (co, ci, ky, kx) of conv stage s changes by dw (a single element).
 * Each pre-pool output of channel co becomes its golden value plus dw times
 * the one input it meets there, up to the rounding of a recomputed sum; so
 * every pooled cell's change is bounded closely (a cell that stays below
 * zero changes nothing). cell[] gets the bounds; returns the bound on the
 * top-1 margin through the next stage's sensitivity. */
static double conv_tight_bound(const lenet *l, const lenet_fast *f, const pvf_conv2d *cv, int s,
                               int64_t row, const float *x, int64_t co, int64_t ci, int64_t ky,
                               int64_t kx, double dw, double *cell) {
    const int64_t ph = cv->oh / l->pool, pw = cv->ow / l->pool, classes = f->classes;
    const float *plane = x + ci * cv->h * cv->w;
    const float *pre = f->pre_pool[s] + (row * cv->cout + co) * cv->oh * cv->ow;
    /* rounding of a recomputed sum, and of golden's: 2 K u sum|w x| */
    const double eps = 2.0 * (double)(cv->cin * cv->k * cv->k) * 6e-8 *
                       (f->filter_l1[s][co] + fabs(dw)) * (double)f->xmax_all[s][row];
    const int64_t top1 = f->top1[row];
    double bound = 0;
    for (int64_t py = 0; py < ph; py++)
        for (int64_t px = 0; px < pw; px++) {
            double before = -INFINITY, after = -INFINITY;
            for (int64_t dy = 0; dy < l->pool; dy++) {
                const int64_t oy = py * l->pool + dy, y = oy * cv->stride - cv->pad + ky;
                for (int64_t dx = 0; dx < l->pool; dx++) {
                    const int64_t ox = px * l->pool + dx, xx = ox * cv->stride - cv->pad + kx;
                    const double p0 = pre[oy * cv->ow + ox];
                    const double in = y >= 0 && y < cv->h && xx >= 0 && xx < cv->w
                                          ? (double)plane[y * cv->w + xx]
                                          : 0.0;
                    before = fmax(before, p0);
                    after = fmax(after, p0 + dw * in);
                }
            }
            /* ReLU after the pool: |relu(a) - relu(b)| <= |a - b|, 0 when both < 0 */
            double change = fabs(fmax(after, 0.0) - fmax(before, 0.0));
            if (after > -eps || before > -eps)
                change += eps;
            cell[py * pw + px] = change;
            if (change > 0) {
                const int64_t feat = (co * ph + py) * pw + px;
                bound += change * pair_factor(f->sens[s + 1] + feat * classes,
                                              f->sens_max[s + 1][feat], top1);
            }
        }
    return bound;
}

/* A finer bound for a change of at most cell[c] in features co*chan + c of
 * fc stage s's input: the change of every pre-activation through |W|, and
 * a unit whose golden pre-activation stays below zero passes nothing on
 * (ReLU), then the sensitivity of the next stage's input. */
static double fc_relu_bound(const pvf_model *m, const lenet *l, const lenet_fast *f, int s,
                            int64_t row, int64_t co, int64_t chan, const double *cell) {
    const int64_t in = m->stages[s].in_size, out = m->stages[s].out_size, classes = f->classes;
    const float *w = m->params[l->w[s]].value, *pre = f->pre[s] + row * out;
    const int64_t top1 = (int64_t)f->top1[row];
    double bound = 0;
    for (int64_t j = 0; j < out; j++) {
        double dz = 0;
        for (int64_t c = 0; c < chan; c++)
            dz += fabs((double)w[j * in + co * chan + c]) * cell[c];
        dz *= BOUND_SCALE;
        double z = pre[j], dh = z > 0 ? dz : fmax(0.0, z + dz);
        if (dh > 0)
            bound += dh * pair_factor(f->sens[s + 1] + j * classes, f->sens_max[s + 1][j], top1);
    }
    return bound;
}

static int conv_trial(pvf_exec *ex, const pvf_golden *g, int s, int param, pvf_trial_result *r,
                      pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const lenet_fast *f = g->fast;
    const pvf_conv2d *cv = &l->conv[m->stages[s].layer];
    const int64_t kk = cv->k * cv->k, cols = cv->cin * kk, classes = f->classes;
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
    const float w_old = m->params[param].value[ex->fault_lo];
    const int64_t e0 = ex->fault_lo % cols, ci0 = e0 / kk, ky0 = e0 % kk / cv->k, kx0 = e0 % cv->k;
    double cell[4096];
    if (chan > 4096)
        return 1;
    int64_t carried[PVF_CHUNK], nc = 0;
    pending wait = {.inputs = carry}; /* the last conv's rows go on sparsely, never carried */
    for (int64_t i = 0; i < f->n; i++) {
        const float *x = g->stage_in[s] + i * in;
        if (!nonfinite && f->slack[i] > 0) {
            double delta = dbias;
            for (int64_t ci = 0; ci < cv->cin; ci++)
                delta += dch[ci] * f->xmax_row[s][i * cv->cin + ci];
            if (delta == 0)
                continue; /* the changed weights meet only zeros */
            const double *ch = f->chan[s] + co * classes;
            double bound = delta * pair_factor(ch, f->chan_max[s][co], g->top1[i]);
            if (single && bound * BOUND_SCALE > f->slack[i]) { /* finer: cell by cell */
                bound = conv_tight_bound(l, f, cv, s, i, x, co, ci0, ky0, kx0,
                                         (double)ex->patch[0] - (double)w_old, cell);
                if (bound * BOUND_SCALE > f->slack[i] && s + 1 == l->nconv &&
                    s + 2 < m->nstages) /* finer still: through the first fc stage */
                    bound = fc_relu_bound(m, l, f, s + 1, i, co, chan, cell);
            }
            if (bound * BOUND_SCALE <= f->slack[i])
                continue;
        }
        /* Exactly: channel co of this input with the faulty filter. */
        conv_channel(l, cv, x, w, bias, plane, pooled);
        r->stage_rows++;
        const float *gold = g->stage_in[s + 1] + i * out;
        if (memcmp(pooled, gold + co * chan, (size_t)chan * sizeof *pooled) == 0)
            continue;
        if (s + 1 == l->nconv) { /* a few changed features into the first fc stage */
            int64_t feat[4096], nf = 0;
            if (chan > 4096)
                return pvf_err_set(err, "fast path: %lld features per channel", (long long)chan);
            for (int64_t c = 0; c < chan; c++)
                if (memcmp(&pooled[c], &gold[co * chan + c], sizeof *pooled)) {
                    feat[nf] = co * chan + c;
                    plane[nf++] = pooled[c] - gold[co * chan + c];
                }
            if (fc_sparse(ex, g, s + 1, i, feat, plane, nf, &wait, r, err))
                return -1;
            continue;
        }
        memcpy(carry + nc * out, gold, (size_t)out * sizeof *carry);
        memcpy(carry + nc * out + co * chan, pooled, (size_t)chan * sizeof *carry);
        carried[nc++] = i;
        if (nc == ex->chunk) {
            if (pvf_fast_rows(ex, g, s + 1, carried, nc, carry, r, err))
                return -1;
            nc = 0;
        }
    }
    if (nc && pvf_fast_rows(ex, g, s + 1, carried, nc, carry, r, err))
        return -1;
    return pending_flush(ex, g, &wait, r, err);
}

static int fc_trial(pvf_exec *ex, const pvf_golden *g, int s, int param, pvf_trial_result *r,
                    pvf_err *err) {
    const pvf_model *m = ex->m;
    const lenet *l = m->arch_state;
    const lenet_fast *f = g->fast;
    const int j = m->stages[s].layer, last = s == m->nstages - 1;
    const int64_t in = l->fc_in[j], out = l->fc_out[j], classes = f->classes;
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
    const double *sens = last ? NULL : f->sens[s + 1] + i * classes;
    const double smax = last ? 1 : f->sens_max[s + 1][i];
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
    pending wait = {.inputs = ex->fast_scratch};
    memcpy(w, m->params[l->w[s]].value + i * in, (size_t)in * sizeof *w);
    float bias = m->params[l->b[s]].value[i];
    if (is_bias)
        bias = ex->patch[0];
    else
        memcpy(w + k0, ex->patch, (size_t)span * sizeof *w);
    const float *gold_out = last ? g->out : g->stage_in[s + 1];
    for (int64_t row = 0; row < f->n; row++) {
        const float *x = g->stage_in[s] + row * in;
        const double slack = f->slack[row];
        if (!nonfinite) {
            double delta = 0;
            for (int64_t e = 0; e < span; e++)
                delta += d[e] * (is_bias ? 1.0 : fabs((double)x[k0 + e]));
            if (delta == 0)
                continue; /* the changed weights meet only zeros: the same sums */
            if (slack > 0 &&
                delta * BOUND_SCALE * (last ? 1 : pair_factor(sens, smax, g->top1[row])) <= slack)
                continue;
        }
        /* Exactly: the faulty row's dot product. */
        float z = cblas_sdot((int)in, x, 1, w, 1) + bias;
        if (!last)
            z = z < 0.0f ? 0.0f : z; /* pvf_relu: NaN passes */
        r->stage_rows++;
        const float *gold = gold_out + row * out;
        if (memcmp(&z, gold + i, sizeof z) == 0)
            continue;
        if (last) {
            float logits[256];
            if (out > 256)
                return pvf_err_set(err, "fast path: %lld classes", (long long)out);
            memcpy(logits, gold, (size_t)out * sizeof *logits);
            logits[i] = z;
            pvf_fast_judge_row(ex, g, row, logits, r);
            continue;
        }
        double change = fabs((double)z - (double)gold[i]);
        if (isfinite(change) && slack > 0 &&
            change * BOUND_SCALE * pair_factor(sens, smax, g->top1[row]) <= slack)
            continue;
        /* One changed feature into the next stage. */
        const float delta = z - gold[i];
        if (fc_sparse(ex, g, s + 1, row, &i, &delta, 1, &wait, r, err))
            return -1;
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
