/* llama4_linear.c - the Llama 4 fast path's linearized bound: whether a
 * carried sequence's change at the input of stage S, the dense MLP stage
 * before the last attention, can still flip a scored prediction, told from
 * the change's direction and not its norm alone.
 *
 * Stages S (the MLP, token by token), A (the last attention), F (the last
 * FFN, token by token; MoE with top-1 routing or dense) and the head follow
 * each other. For a scored position q, a functional phi of the residual at
 * the head input (a top-1 margin: the top logit less class v's) or at F's
 * input (F's router gap: the top expert's logit less the runner-up's)
 * changes by exactly
 *
 *   dphi = sum_t G_q,t . dx_t + sum_t c1_q,t . r_S,t + c2_q . r_A,q
 *          + c3_q . r_F,q + (the head's or router's own norm remainder)
 *
 * where dx_t is the change of row t at S's input, G the gradient of phi
 * there at golden (F's routing held), c1, c2, c3 its gradients at A's,
 * F's and the head's inputs, and r each stage's change less its golden
 * Jacobian times its input's change (second order: llama4_bound.c bounds
 * them from the change's norms, which l4_bound propagates). So a position
 * is cleared when |G . dx| plus the gradients' norms times those remainders
 * stays below each functional's golden clearance (the margin less the
 * rounding and near-tie allowances of the head bound; the router gap less
 * its rounding allowance), for the NEAR nearest classes and the router's
 * runner-up; the other classes and experts by the norm bound at the head
 * and the router (their margins are wider). Off-line, a remainder bound a
 * hundred times the true one would settle every low-bit and four fifths of
 * the high-bit sequences where nothing flips of a layer-1 expert fault
 * (tools/llama4_remainder.py; bench/README.md).
 *
 * Golden state: G for every scored position q and rows t <= q (about
 * n T^2 / 2 x NEAR + 1 rows of hidden floats), made by one backward pass
 * per position through the head, F, A (that query's output only) and S. */
#include "llama4.h"

#include "fast.h"
#include "kernels.h"

#include <cblas.h>
#undef I /* <complex.h> via <cblas.h>: I names a dimension here */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Classes per position with their own gradient. */
#define NEAR 2
/* Largest golden state (bytes) the bound takes; beyond it the fast path
 * works without it. */
#define LIN_BUDGET (256.0 * 1024 * 1024)

struct l4_linear {
    int S, A, F;
    int moe;                   /* F is a MoE layer: functional NEAR is its router gap */
    int64_t n, T, H, nf, rows; /* rows = T (T + 1) / 2: (q, t <= q) at q (q + 1) / 2 + t */
    int16_t *grad;             /* [n, nf, rows, H] G, in units of gscale */
    float *gscale;             /* [n, nf, rows] a row's unit: its largest |G| / 32767 */
    float *gn0, *gn1;          /* [n, nf, rows] |G|, |c1| */
    float *gn2, *gn3;          /* [n, T, nf] |c2|, |c3| */
    float *clear, *wnorm;      /* [n, T, nf] clearance; |row difference| of the last map */
    int32_t *cls;              /* [n, T, nf] a margin's class, -1 for the router gap */
    float *mu_far;             /* [n, T] clearance of the other classes in |da| at the head */
    float *gap_far;            /* [n, T] router: top less third logit, less its allowance */
};

void l4_linear_free(l4_linear *lin) {
    if (!lin)
        return;
    free(lin->grad);
    free(lin->gscale);
    free(lin->gn0);
    free(lin->gn1);
    free(lin->gn2);
    free(lin->gn3);
    free(lin->clear);
    free(lin->wnorm);
    free(lin->cls);
    free(lin->mu_far);
    free(lin->gap_far);
    free(lin);
}

int l4_linear_stage(const l4_linear *lin) {
    return lin->S;
}

int64_t l4_linear_work(const pvf_model *m) {
    const llama4 *l = m->arch_state;
    return 7 * l->T + l4_bound_work(m) + l->T * l->c.hidden / 2 + 1;
}

static double norm2(const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* out = J^T y for the unit-weight RMSNorm a(x) = x / r at x[H]: J is
 * symmetric, (y - x (x . y) / (H r^2)) / r. */
static void rms_jt(const float *x, const float *y, int64_t H, double eps, float *out) {
    double ss = 0.0, xy = 0.0;
    for (int64_t j = 0; j < H; j++) {
        ss += (double)x[j] * x[j];
        xy += (double)x[j] * y[j];
    }
    const double r2 = ss / (double)H + eps, r = sqrt(r2);
    for (int64_t j = 0; j < H; j++)
        out[j] = (float)((y[j] - x[j] * xy / ((double)H * r2)) / r);
}

/* |a(x') - a(x)| for the unit-weight RMSNorm, |x' - x| <= d, golden rms
 * (INFINITY when the segment may reach rms 0). */
static double da_bound(double d, double rms, int64_t H) {
    if (d == 0.0)
        return 0.0;
    const double low = rms - d / sqrt((double)H);
    return low > 0.0 ? d / low * (1.0 + 1e-6) : INFINITY;
}

static double sigmoid(double z) {
    return 1.0 / (1.0 + exp(-z));
}

/* J^T c for a SwiGLU MLP at its golden pre-activations g, u [I]: gate and
 * up rows [I, H], down [H, I]: wg^T (silu'(g) u (wd^T c)) + wu^T (silu(g)
 * (wd^T c)), out[H]; work[2 I]. */
static void swiglu_back(const float *wg, const float *wu, const float *wd, const float *g,
                        const float *u, int64_t H, int64_t I, const float *c, float *out,
                        float *work) {
    float *a = work, *b = work + I;
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)H, (int)I, 1.0f, wd, (int)I, c, 1, 0.0f, a, 1);
    for (int64_t i = 0; i < I; i++) {
        const double sg = sigmoid(g[i]), silu = g[i] * sg, dsilu = sg * (1.0 + g[i] * (1.0 - sg));
        b[i] = (float)(a[i] * silu);
        a[i] = (float)(a[i] * dsilu * u[i]);
    }
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)I, (int)H, 1.0f, wg, (int)H, a, 1, 0.0f, out, 1);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)I, (int)H, 1.0f, wu, (int)H, b, 1, 1.0f, out, 1);
}

/* Rotates x[d] (pairs 2i, 2i+1) back by RoPE's angle at position pos. */
static void rope_back(float *x, int64_t pos, int64_t d, const float *inv_freq) {
    for (int64_t i = 0; i < d / 2; i++) {
        const float ang = (float)pos * inv_freq[i], c = cosf(ang), s = sinf(ang);
        const float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * c + b * s;
        x[2 * i + 1] = -a * s + b * c;
    }
}

/* Where the bound applies: stage S (dense MLP), A (the last attention, no
 * QK-norm), F (its FFN; MoE with top-1) and the head in a row. 0 if not. */
static int layout(const pvf_model *m, int *S, int *A, int *F) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t L = c->layers - 1;
    if (L < 1 || c->moe[L - 1] || (c->rope[L] && c->qk_norm) || (c->moe[L] && c->top_k != 1))
        return 0;
    *A = m->params[l->layer[L].q].stage;
    *S = m->params[l->layer[L - 1].post_norm].stage;
    *F = m->params[l->layer[L].post_norm].stage;
    return *S + 1 == *A && *A + 1 == *F && *F + 1 == m->params[l->lm_head].stage;
}

/* Golden rows of one sequence the backward passes read. */
typedef struct lin_work {
    float *gS, *uS;         /* [T, I_mlp] stage S's gate and up pre-activations */
    const float *q, *k, *v; /* [T, heads/kv * d] the last attention's, as it reads them */
    float *nrm;             /* [T, H] an RMSNorm output */
    float *c1, *c2, *c3;    /* [nf, T, H], [nf, H], [nf, H] cotangents */
    float *ck, *cv, *cq;    /* [nf, T, kd], [nf, T, kd], [nf, qd] */
    float *x, *y;           /* [nf T, I_mlp] */
    float *gq;              /* [nf T, H] */
    float *vec;             /* 4 max(I) + 4 H + E + heads * d floats */
    double *p, *o;          /* [T], [d] */
} lin_work;

/* Cotangents c2 (at F's input) and c3 (at the head input) of position
 * tt's functionals; their clearances and last maps' row norms. */
static void functionals(const pvf_model *m, const pvf_golden *g, const l4_bound *b, l4_linear *lin,
                        int64_t tt, const int64_t *near, int32_t e, lin_work *w, float *gn2,
                        float *gn3, float *clear, float *wnorm) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_layer *y = &l->layer[c->layers - 1];
    const int64_t H = c->hidden, I = c->inter, E = c->experts;
    const float *xF = g->stage_in[lin->F] + tt * H, *xH = g->stage_in[lin->F + 1] + tt * H;
    const float *wf = m->params[l->norm].value, *Wh = m->params[l->lm_head].value;
    const float *wp = m->params[y->post_norm].value;
    const int64_t Iw = I > c->inter_mlp ? I : c->inter_mlp;
    float *nF = w->vec, *row = nF + H, *gn = row + H, *tmp = gn + H, *ga = tmp + H;
    float *ua = ga + Iw, *sw = ua + Iw; /* sw: 2 Iw, then E logits */
    float *z = sw + 2 * Iw;
    pvf_rms_norm(xF, 1, H, wp, (float)c->eps, nF);
    int32_t e1 = -1;
    float sc = 1.0f;
    lin->gap_far[tt] = INFINITY;
    if (lin->moe) { /* e: the golden top expert; e1 the runner-up; the rest by norms */
        pvf_linear(nF, 1, H, m->params[y->router].value, NULL, E, z);
        sc = (float)sigmoid(z[e]);
        for (int32_t j = 0; j < (int32_t)E; j++)
            if (j != e && (e1 < 0 || z[j] > z[e1]))
                e1 = j;
        float far = -INFINITY;
        for (int32_t j = 0; j < (int32_t)E; j++)
            if (j != e && j != e1 && z[j] > far)
                far = z[j];
        if (far > -INFINITY)
            lin->gap_far[tt] = (float)((double)z[e] - far - l4_bound_router_slack(b, m, lin->F));
    }
    /* F's golden pre-activations: the dense MLP's or shared expert's, the
     * routed expert's (its input s n) */
    const int64_t Im = lin->moe ? I : c->inter_mlp;
    const float *sg = m->params[lin->moe ? y->sh_gate : y->gate].value;
    const float *su = m->params[lin->moe ? y->sh_up : y->up].value;
    const float *sd = m->params[lin->moe ? y->sh_down : y->mlp_down].value;
    float *gpre = w->x, *upre = w->y; /* spare rows */
    pvf_linear(nF, 1, H, sg, NULL, Im, gpre);
    pvf_linear(nF, 1, H, su, NULL, Im, upre);
    const float *gu = lin->moe ? m->params[y->gate_up[e]].value : NULL;
    const float *dn = lin->moe ? m->params[y->down[e]].value : NULL;
    if (lin->moe) {
        for (int64_t j = 0; j < H; j++)
            tmp[j] = nF[j] * sc;
        pvf_linear(tmp, 1, H, gu, NULL, I, ga);
        pvf_linear(tmp, 1, H, gu + I * H, NULL, I, ua);
    }
    for (int64_t f = 0; f < lin->nf; f++) {
        float *c2 = w->c2 + f * H, *c3 = w->c3 + f * H;
        if (lin->moe && f == NEAR) { /* the router gap z_e - z_e1 */
            const float *Wr = m->params[y->router].value;
            for (int64_t j = 0; j < H; j++)
                row[j] = (Wr[e * H + j] - Wr[e1 * H + j]) * wp[j];
            rms_jt(xF, row, H, c->eps, c2);
            memset(c3, 0, (size_t)H * sizeof *c3);
            wnorm[f] = (float)(norm2(row, H) * (1.0 + 1e-6));
            clear[f] = (float)((double)z[e] - z[e1] - l4_bound_router_slack(b, m, lin->F));
            gn2[f] = (float)(norm2(c2, H) * (1.0 + 1e-4));
            gn3[f] = 0.0f;
            continue;
        }
        const int64_t top = g->top1[tt];
        for (int64_t j = 0; j < H; j++)
            row[j] = (Wh[top * H + j] - Wh[near[f] * H + j]) * wf[j];
        rms_jt(xH, row, H, c->eps, c3);
        double rn;
        clear[f] = (float)l4_bound_head_margin(m, g, tt, near[f], &rn);
        wnorm[f] = (float)rn;
        /* through F: c2 = c3 + J_a^T (w (J_shared^T c3 + the expert's)) */
        swiglu_back(sg, su, sd, gpre, upre, H, Im, c3, gn, sw);
        if (lin->moe) {
            swiglu_back(gu, gu + I * H, dn, ga, ua, H, I, c3, tmp, sw);
            /* d/dn E(s(n) n) = J_E (s + n grad s^T), grad s = s (1 - s) W_r[e] */
            double nj = 0.0;
            for (int64_t j = 0; j < H; j++)
                nj += (double)nF[j] * tmp[j];
            const float *Wr = m->params[y->router].value;
            const double ds = (double)sc * (1.0 - sc) * nj;
            for (int64_t j = 0; j < H; j++)
                gn[j] += (float)(sc * tmp[j] + ds * Wr[e * H + j]);
        }
        for (int64_t j = 0; j < H; j++)
            gn[j] *= wp[j];
        rms_jt(xF, gn, H, c->eps, c2);
        for (int64_t j = 0; j < H; j++)
            c2[j] += c3[j];
        gn2[f] = (float)(norm2(c2, H) * (1.0 + 1e-4));
        gn3[f] = (float)(norm2(c3, H) * (1.0 + 1e-4));
    }
}

/* Sequence seq's golden state. */
static int prepare_seq(const pvf_model *m, const pvf_golden *g, const l4_bound *b,
                       const int32_t *route, const l4_qkv *qkv, l4_linear *lin, int64_t seq,
                       lin_work *w) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t LA = c->layers - 1;
    const l4_layer *ya = &l->layer[LA], *ys = &l->layer[LA - 1];
    const int64_t H = c->hidden, T = l->T, V = c->vocab, Im = c->inter_mlp;
    const int64_t nh = c->heads, nkv = c->kv_heads, d = c->head_dim, group = nh / nkv;
    const int64_t qd = nh * d, kd = nkv * d, nf = lin->nf, t0 = seq * T;
    const float *xS = g->stage_in[lin->S] + t0 * H, *xA = g->stage_in[lin->A] + t0 * H;
    const float *ws = m->params[ys->post_norm].value, *wa = m->params[ya->in_norm].value;
    const float *Wg = m->params[ys->gate].value, *Wu = m->params[ys->up].value;
    const float *Wd = m->params[ys->mlp_down].value;
    const float *Wq = m->params[ya->q].value, *Wk = m->params[ya->k].value;
    const float *Wv = m->params[ya->v].value, *Wo = m->params[ya->o].value;
    const int64_t chunk = c->rope[LA] ? c->chunk : 0;
    const double scale = 1.0 / sqrt((double)d);
    /* stage S's pre-activations; the last attention's q, k, v as it reads
     * them (the fast path's golden replay) */
    pvf_rms_norm(xS, T, H, ws, (float)c->eps, w->nrm);
    pvf_linear(w->nrm, T, H, Wg, NULL, Im, w->gS);
    pvf_linear(w->nrm, T, H, Wu, NULL, Im, w->uS);
    w->q = qkv->q + t0 * qd;
    w->k = qkv->k + t0 * kd;
    w->v = qkv->v + t0 * kd;
    for (int64_t q = l->scored_from; q < T; q++) {
        const int64_t tt = t0 + q, top = g->top1[tt];
        /* the nearest classes, and the others' clearance in |da| */
        int64_t near[NEAR];
        double nm[NEAR];
        for (int64_t i = 0; i < NEAR; i++) {
            near[i] = -1;
            nm[i] = INFINITY;
        }
        const float *lg = g->out + tt * V;
        for (int64_t v = 0; v < V; v++) {
            if (v == top)
                continue;
            double mv = (double)lg[top] - lg[v];
            for (int64_t i = 0; i < NEAR; i++)
                if (near[i] < 0 || mv < nm[i]) {
                    for (int64_t s = NEAR - 1; s > i; s--) {
                        near[s] = near[s - 1];
                        nm[s] = nm[s - 1];
                    }
                    near[i] = v;
                    nm[i] = mv;
                    break;
                }
        }
        double mu = INFINITY;
        for (int64_t v = 0; v < V; v++) {
            int skip = v == top;
            for (int64_t i = 0; i < NEAR; i++)
                skip |= v == near[i];
            if (skip)
                continue;
            double rn;
            const double num = l4_bound_head_margin(m, g, tt, v, &rn);
            const double ratio = num > 0.0 && rn > 0.0 ? num / rn : 0.0;
            mu = ratio < mu ? ratio : mu;
        }
        lin->mu_far[tt] = (float)(mu * (1.0 - 1e-6));
        for (int64_t f = 0; f < nf; f++)
            lin->cls[tt * nf + f] = f < NEAR ? (int32_t)near[f] : -1;
        float *gn2 = lin->gn2 + tt * nf, *gn3 = lin->gn3 + tt * nf;
        functionals(m, g, b, lin, tt, near, route ? route[tt] : 0, w, gn2, gn3,
                    lin->clear + tt * nf, lin->wnorm + tt * nf);
        /* the last attention, query q's output only: c2 -> c1 at rows j <= q */
        const int64_t lo = chunk > 0 ? q / chunk * chunk : 0, rows = q + 1;
        memset(w->ck, 0, (size_t)(nf * rows * kd) * sizeof *w->ck);
        memset(w->cv, 0, (size_t)(nf * rows * kd) * sizeof *w->cv);
        memset(w->cq, 0, (size_t)(nf * qd) * sizeof *w->cq);
        float *co = w->vec + 2 * H; /* [qd] */
        for (int64_t f = 0; f < nf; f++) {
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)H, (int)qd, 1.0f, Wo, (int)qd,
                        w->c2 + f * H, 1, 0.0f, co, 1);
            for (int64_t h = 0; h < nh; h++) {
                const int64_t kh = h / group;
                const float *qh = w->q + q * qd + h * d, *coh = co + h * d;
                double mx = -INFINITY, sum = 0.0;
                for (int64_t j = lo; j <= q; j++) {
                    double dot = 0.0;
                    for (int64_t i = 0; i < d; i++)
                        dot += (double)qh[i] * w->k[j * kd + kh * d + i];
                    w->p[j] = dot * scale;
                    mx = w->p[j] > mx ? w->p[j] : mx;
                }
                for (int64_t j = lo; j <= q; j++)
                    sum += (w->p[j] = exp(w->p[j] - mx));
                for (int64_t i = 0; i < d; i++)
                    w->o[i] = 0.0;
                for (int64_t j = lo; j <= q; j++) {
                    w->p[j] /= sum;
                    for (int64_t i = 0; i < d; i++)
                        w->o[i] += w->p[j] * w->v[j * kd + kh * d + i];
                }
                for (int64_t j = lo; j <= q; j++) {
                    const float *vj = w->v + j * kd + kh * d, *kj = w->k + j * kd + kh * d;
                    double dsj = 0.0;
                    for (int64_t i = 0; i < d; i++)
                        dsj += (vj[i] - w->o[i]) * coh[i];
                    dsj *= w->p[j] * scale;
                    float *ckj = w->ck + (f * rows + j) * kd + kh * d;
                    float *cvj = w->cv + (f * rows + j) * kd + kh * d;
                    float *cqh = w->cq + f * qd + h * d;
                    for (int64_t i = 0; i < d; i++) {
                        ckj[i] += (float)(dsj * qh[i]);
                        cvj[i] += (float)(w->p[j] * coh[i]);
                        cqh[i] += (float)(dsj * kj[i]);
                    }
                }
            }
        }
        /* back through RoPE or the temperature, then the projections */
        for (int64_t f = 0; f < nf; f++) {
            float *cqf = w->cq + f * qd;
            if (c->rope[LA]) {
                for (int64_t j = lo; j <= q; j++)
                    for (int64_t h = 0; h < nkv; h++)
                        rope_back(w->ck + (f * rows + j) * kd + h * d, j, d, l->inv_freq);
                for (int64_t h = 0; h < nh; h++)
                    rope_back(cqf + h * d, q, d, l->inv_freq);
            } else if (c->temp_tuning) {
                const float s = pvf_attn_temperature(q, c->floor_scale, (float)c->attn_scale);
                for (int64_t j = 0; j < qd; j++)
                    cqf[j] *= s;
            }
        }
        const int64_t R = nf * rows;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)H, (int)kd, 1.0f, w->ck,
                    (int)kd, Wk, (int)H, 0.0f, w->x, (int)H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)H, (int)kd, 1.0f, w->cv,
                    (int)kd, Wv, (int)H, 1.0f, w->x, (int)H);
        for (int64_t f = 0; f < nf; f++)
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)qd, (int)H, 1.0f, Wq, (int)H,
                        w->cq + f * qd, 1, 1.0f, w->x + (f * rows + q) * H, 1);
        const int64_t base = q * (q + 1) / 2;
        for (int64_t f = 0; f < nf; f++)
            for (int64_t j = 0; j <= q; j++) {
                float *cn = w->x + (f * rows + j) * H, *c1 = w->c1 + (f * rows + j) * H;
                for (int64_t i = 0; i < H; i++)
                    cn[i] *= wa[i];
                rms_jt(xA + j * H, cn, H, c->eps, c1);
                if (j == q)
                    for (int64_t i = 0; i < H; i++)
                        c1[i] += w->c2[f * H + i];
                lin->gn1[(seq * nf + f) * lin->rows + base + j] =
                    (float)(norm2(c1, H) * (1.0 + 1e-4));
            }
        /* stage S, row by row: G = c1 + J_a^T (w (J_mlp^T c1)) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)Im, (int)H, 1.0f, w->c1,
                    (int)H, Wd, (int)Im, 0.0f, w->x, (int)Im);
        for (int64_t f = 0; f < nf; f++)
            for (int64_t j = 0; j <= q; j++) {
                float *a = w->x + (f * rows + j) * Im, *bb = w->y + (f * rows + j) * Im;
                const float *gj = w->gS + j * Im, *uj = w->uS + j * Im;
                for (int64_t i = 0; i < Im; i++) {
                    const double sg = sigmoid(gj[i]);
                    bb[i] = (float)(a[i] * gj[i] * sg);
                    a[i] = (float)(a[i] * sg * (1.0 + gj[i] * (1.0 - sg)) * uj[i]);
                }
            }
        float *gq = w->gq;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)H, (int)Im, 1.0f, w->x,
                    (int)Im, Wg, (int)H, 0.0f, gq, (int)H);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)H, (int)Im, 1.0f, w->y,
                    (int)Im, Wu, (int)H, 1.0f, gq, (int)H);
        float *G = w->vec; /* a row of G, then stored in 16 bits */
        for (int64_t f = 0; f < nf; f++)
            for (int64_t j = 0; j <= q; j++) {
                float *gr = gq + (f * rows + j) * H;
                const int64_t row = (seq * nf + f) * lin->rows + base + j;
                const float *c1 = w->c1 + (f * rows + j) * H;
                for (int64_t i = 0; i < H; i++)
                    gr[i] *= ws[i];
                rms_jt(xS + j * H, gr, H, c->eps, G);
                float most = 0.0f;
                for (int64_t i = 0; i < H; i++) {
                    G[i] += c1[i];
                    most = fabsf(G[i]) > most ? fabsf(G[i]) : most;
                }
                const float unit = most / 32767.0f;
                lin->gscale[row] = unit;
                for (int64_t i = 0; i < H; i++)
                    lin->grad[row * H + i] = unit > 0.0f ? (int16_t)lrintf(G[i] / unit) : 0;
                lin->gn0[row] = (float)(norm2(G, H) * (1.0 + 1e-4));
            }
    }
    return 0;
}

int l4_linear_prepare(const pvf_model *m, const pvf_golden *g, const l4_bound *b,
                      const int32_t *route, const l4_qkv *qkv, l4_linear **out) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t H = c->hidden, T = l->T, n = g->n, I = c->inter, Im = c->inter_mlp;
    const int64_t kd = c->kv_heads * c->head_dim, qd = c->heads * c->head_dim;
    int S, A, F;
    *out = NULL;
    if (!b || !layout(m, &S, &A, &F))
        return 0;
    const int moe = c->moe[c->layers - 1] && c->experts > 1;
    const int64_t nf = NEAR + (moe ? 1 : 0), rows = T * (T + 1) / 2;
    if ((double)n * nf * rows * (H * sizeof(int16_t) + 3 * sizeof(float)) > LIN_BUDGET ||
        c->vocab <= NEAR)
        return 0;
    l4_linear *lin = calloc(1, sizeof *lin);
    if (!lin)
        return -1;
    lin->S = S;
    lin->A = A;
    lin->F = F;
    lin->moe = moe;
    lin->n = n;
    lin->T = T;
    lin->H = H;
    lin->nf = nf;
    lin->rows = rows;
    lin->grad = calloc((size_t)(n * nf * rows * H), sizeof(int16_t));
    lin->gscale = calloc((size_t)(n * nf * rows), sizeof(float));
    lin->gn0 = calloc((size_t)(n * nf * rows), sizeof(float));
    lin->gn1 = calloc((size_t)(n * nf * rows), sizeof(float));
    lin->gn2 = calloc((size_t)(n * T * nf), sizeof(float));
    lin->gn3 = calloc((size_t)(n * T * nf), sizeof(float));
    lin->clear = calloc((size_t)(n * T * nf), sizeof(float));
    lin->wnorm = calloc((size_t)(n * T * nf), sizeof(float));
    lin->cls = calloc((size_t)(n * T * nf), sizeof(int32_t));
    lin->mu_far = calloc((size_t)(n * T), sizeof(float));
    lin->gap_far = calloc((size_t)(n * T), sizeof(float));
    const int64_t Iw = Im > I ? Im : I, R = nf * T;
    lin_work w = {0};
    const int64_t vec = 4 * Iw + 4 * H + c->experts + qd;
    float *fl = malloc((size_t)(2 * T * Im + T * H + 2 * R * H + 2 * nf * H + 2 * R * kd + nf * qd +
                                2 * R * (Iw > H ? Iw : H) + vec) *
                       sizeof *fl);
    double *db = malloc((size_t)(T + c->head_dim) * sizeof *db);
    if (!lin->grad || !lin->gscale || !lin->gn0 || !lin->gn1 || !lin->gn2 || !lin->gn3 ||
        !lin->clear || !lin->wnorm || !lin->cls || !lin->mu_far || !lin->gap_far || !fl || !db) {
        free(fl);
        free(db);
        l4_linear_free(lin);
        return -1;
    }
    w.gS = fl;
    w.uS = w.gS + T * Im;
    w.nrm = w.uS + T * Im;
    w.c1 = w.nrm + T * H;
    w.c2 = w.c1 + R * H;
    w.c3 = w.c2 + nf * H;
    w.ck = w.c3 + nf * H;
    w.cv = w.ck + R * kd;
    w.cq = w.cv + R * kd;
    w.x = w.cq + nf * qd;
    w.y = w.x + R * (Iw > H ? Iw : H);
    w.gq = w.y + R * (Iw > H ? Iw : H);
    w.vec = w.gq + R * H;
    w.p = db;
    w.o = db + T;
    int rc = 0;
    for (int64_t seq = 0; seq < n && rc == 0; seq++)
        rc = prepare_seq(m, g, b, route, qkv, lin, seq, &w);
    free(fl);
    free(db);
    if (rc) {
        l4_linear_free(lin);
        return -1;
    }
    *out = lin;
    return 0;
}

/* sum g_i x_i of a stored gradient row (16-bit units) and a change row. */
static float row_dot(const int16_t *g, const float *x, int64_t H) {
    float s = 0.0f;
    for (int64_t i = 0; i < H; i++)
        s += (float)g[i] * x[i];
    return s;
}

int64_t l4_linear_needed(const l4_linear *lin, const l4_bound *b, const pvf_model *m,
                         const pvf_golden *g, int64_t seq, int64_t p0, int64_t end, const float *x,
                         double *work) {
    const llama4 *l = m->arch_state;
    const int64_t H = lin->H, T = lin->T, nf = lin->nf, t0 = seq * T;
    double *D = work, *dA = D + T, *dF = dA + T, *dH = dF + T, *rS = dH + T, *rA = rS + T;
    double *rF = rA + T, *bw = rF + T;
    float *dx = (float *)(void *)(bw + l4_bound_work(m)); /* malloc'd: any type */
    const float *gold = g->stage_in[lin->S] + t0 * H;
    for (int64_t t = 0; t < end; t++) {
        D[t] = 0.0;
        if (t < p0)
            continue;
        double ss = 0.0;
        for (int64_t j = 0; j < H; j++) {
            dx[t * H + j] = x[t * H + j] - gold[t * H + j];
            ss += (double)dx[t * H + j] * dx[t * H + j];
        }
        D[t] = ss < 1e60 ? sqrt(ss) : INFINITY;
    }
    /* the norm bound through S, A and F: the plain answer, and the norms
     * the remainders take */
    for (int64_t t = 0; t < end; t++) {
        rS[t] = 0.0;
        dA[t] = t < p0 || !(D[t] < 1e30) ? (D[t] < 1e30 ? 0.0 : INFINITY)
                                         : l4_bound_ffn_held(b, m, lin->S, t0 + t, D[t], &rS[t]);
        dF[t] = dA[t];
    }
    l4_bound_stage(b, m, lin->A, seq, end, dF, bw);
    int64_t needed = 0;
    for (int64_t q = end - 1; q >= p0 && needed == 0; q--) {
        if (q < l->scored_from)
            break;
        const int64_t tt = t0 + q;
        if (dF[q] < 1e30 && l4_bound_token_clears(b, m, lin->F, tt, dF[q]))
            continue; /* the norm bound clears it */
        if (!(dF[q] < 1e30)) {
            needed = q + 1;
            break;
        }
        dH[q] = l4_bound_ffn_held(b, m, lin->F, tt, dF[q], &rF[q]);
        rA[q] = l4_bound_attn_remainder(b, m, lin->A, seq, q, dA);
        const double rhead = l4_norm_remainder(dH[q], l4_bound_head_rms(b, tt), H);
        const double rrouter = l4_norm_remainder(dF[q], l4_bound_ffn_rms(b, m, lin->F, tt), H);
        if (!(dH[q] < 1e30 && rA[q] < 1e30 && rhead < 1e30 && rrouter < 1e30)) {
            needed = q + 1;
            break;
        }
        /* the other classes and experts by norms */
        if (!(da_bound(dH[q], l4_bound_head_rms(b, tt), H) < lin->mu_far[tt])) {
            needed = q + 1;
            break;
        }
        if (lin->moe) {
            const double daF = da_bound(dF[q], l4_bound_ffn_rms(b, m, lin->F, tt), H);
            if (!(2.0 * l4_bound_router_rmax(b, m, lin->F) * daF < lin->gap_far[tt])) {
                needed = q + 1;
                break;
            }
        }
        const int64_t base = q * (q + 1) / 2;
        int ok = 1;
        for (int64_t f = 0; f < nf && ok; f++) {
            const int64_t off = (seq * nf + f) * lin->rows + base;
            double first = 0.0, cs = 0.0, rem = 0.0, unit = 0.0;
            for (int64_t t = p0; t <= q; t++) {
                first += row_dot(lin->grad + (off + t) * H, dx + t * H, H) * lin->gscale[off + t];
                cs += (double)lin->gn0[off + t] * D[t];
                unit += (double)lin->gscale[off + t] * D[t];
                rem += (double)lin->gn1[off + t] * rS[t];
            }
            const int64_t k = tt * nf + f;
            rem += (double)lin->gn2[k] * rA[q] + (double)lin->gn3[k] * rF[q] +
                   (double)lin->wnorm[k] * (lin->moe && f == NEAR ? rrouter : rhead);
            /* float dot products: H roundings of |G| |dx| each per row, G's own
             * float errors (1e-4 of it), and half a unit per element stored
             * (sum |dx_t|_1 / 2 <= sqrt(H) |dx_t| / 2) */
            const double err =
                (2.0 * (double)H * FLT_EPSILON + 1e-4) * cs + 0.5 * sqrt((double)H) * unit;
            ok = fabs(first) + err + rem * (1.0 + 1e-4) < (double)lin->clear[k];
        }
        if (!ok)
            needed = q + 1;
    }
    return needed;
}

int64_t l4_linear_functionals(const l4_linear *lin) {
    return lin->nf;
}

double l4_linear_first_order(const l4_linear *lin, int64_t seq, int64_t q, int64_t f, int64_t p0,
                             const float *dx, int32_t *cls) {
    const int64_t off = (seq * lin->nf + f) * lin->rows + q * (q + 1) / 2;
    *cls = lin->cls[(seq * lin->T + q) * lin->nf + f];
    double s = 0.0;
    for (int64_t t = p0; t <= q; t++)
        for (int64_t j = 0; j < lin->H; j++)
            s += (double)lin->grad[(off + t) * lin->H + j] * lin->gscale[off + t] *
                 dx[t * lin->H + j];
    return s;
}

double l4_linear_gradient(const l4_linear *lin, int64_t seq, int64_t q, int64_t f, float *G) {
    const int64_t off = (seq * lin->nf + f) * lin->rows + q * (q + 1) / 2;
    for (int64_t t = 0; t <= q; t++)
        for (int64_t j = 0; j < lin->H; j++)
            G[t * lin->H + j] = lin->grad[(off + t) * lin->H + j] * lin->gscale[off + t];
    return lin->clear[(seq * lin->T + q) * lin->nf + f];
}
