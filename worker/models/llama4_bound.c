/* llama4_bound.c - a sound bound on how far a change of the residual stream
 * at some token positions can move every later scored position's logits, so
 * that a fast trial stops carrying a sequence (or a last-layer token) when no
 * scored next-token prediction of it can flip.
 *
 * Input: per position t of one sequence, d_t >= ||x'_t - x_t||_2 at the
 * input of stage s (exact norms of the changed rows; every stage from s on
 * has golden weights). Each later stage adds to d_t a worst-case bound of
 * its branch's change (the residual passes d_t through unchanged), worked out
 * from golden activations of that token:
 *
 * - RMSNorm n(x) = x / sqrt(|x|^2/H + eps) has Jacobian norm <= 1/rms(x);
 *   along the segment x..x' rms >= rms(x) - d/sqrt(H), so
 *   |dn| <= d / (rms(x) - d/sqrt(H)), and always |dn| < 2 sqrt(H). The norm
 *   weight is folded into the following matrices, whose spectral norms are
 *   bounded above by ||(A^T A)^(2^K)||_F^(1/2^(K+1)) (double precision).
 * - Attention, per query i and head h, window W_i (causal, chunked for RoPE
 *   layers): o = sum p_j v_j, so |do| <= max_W |dv_j| + |dp|_1 max_W |v_j - o|
 *   (sum dp_j = 0; o the golden output); a score change
 *   |ds_j| <= e_j = scale (|dq| (|k_j| + |dk_j|) + |q| |dk_j|) moves the
 *   softmax by |dp|_1 <= min(2, range(ds) / 2) <= min(2, max e_j). RoPE
 *   rotates (norm preserving); QK-norm is an RMSNorm without weight; NoPE
 *   temperature scales q. Positions before the first change stay golden.
 *   Weighted by the golden probabilities p_j (stored key-major per layer,
 *   so the sums run key by key over the changed keys C only: few where the
 *   bound matters): along s + u ds, p_j(u) <= f p_j with f = e^(max e +
 *   S1), S1 = sum p_j e_j (Jensen on the normalizer), so the value term is
 *   <= f sum_C p_j |dv_j|, |dp|_1 <= 2 f S1, the covariance term <=
 *   f sqrt(sum p_j e_j^2) vstd, and for an unchanged query (scores move at
 *   C only, sum p_j (v_j - o) = 0) the output moves at sum_C p_j(u) ds_j
 *   (v_j - o) - m(u) (o(u) - o): <= f sum_C p_j |v_j - o| e_j +
 *   f S1 |dp|_1 max|v_j - o|. Keys whose change is below 1/16 of the
 *   largest count with their window maxima instead (mass at most 1 - that
 *   of the others); with more than T / 2 big keys (a change of every
 *   token) only the plain terms are worked out. Each term is the smaller of
 *   the weighted and the plain one.
 * - SwiGLU h = silu(g) u: the smaller of
 *   1.1 |dg| (max|u| + |du|) + max|silu(g)| |du| (|silu'| <= 1.0999) and
 *   |J|_F |dx| + |dg|^2 max|u| / 4 + 1.1 |dg| |du| (J the golden Jacobian,
 *   |silu''| <= 1/2), with golden per-token statistics; the down projection
 *   of the first-order term is bounded by |W_down J|_F per token (three
 *   quadratic forms, see swiglu_down), not |W_down|_2 |J|_F.
 * - Router: logits move by <= max_e |row_e| |dn|; if that could reorder the
 *   golden top-k against the next expert (gap), the bound gives up. Scores
 *   (sigmoid) move by <= 1/4 of that, the expert input is score * n.
 * - Head: the top-1 of position t stays while for every class v,
 *   l_top - l_v > |(row_top - row_v) . w_norm| |dn|: mu_t = the smallest
 *   (l_top - l_v - slack) / |(row_top - row_v) w_norm|, cleared iff |dn| < mu_t.
 *
 * Float rounding: a position the change touches is recomputed in float by
 * the exact path (or the naive one), which rounds differently from golden.
 * Every stage adds RHO (|x_in| + |x_out|) to a touched position (4 unit
 * roundoffs of the residual stream: its own rounding and the branch's), the
 * router gap and the logits RHO-sized slack, and a head margin must also
 * exceed 1e-5 relative, the near-tie tolerance the exact fast path has
 * against the naive one. This is an allowance, not a proof: the rounding
 * of float sums is not bounded worst-case here. A non-finite or overflowing
 * change is never cleared.
 *
 * Per position: a position whose change the bound cannot follow (NaN, Inf,
 * overflow, a routing that might change) is marked unbounded (INFINITY),
 * and so is every later query whose attention window holds it; the others
 * keep their bounds, since causal attention makes a position depend on no
 * later one. l4_bound_needed answers how many leading positions are not all
 * cleared, so a carry can stop before the rest. */
#include "llama4.h"

#include "fast.h"
#include "kernels.h"

#include <cblas.h>
#undef I /* <complex.h> via <cblas.h>: I names a dimension here */
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Relative float rounding slack per stage (float unit roundoff 6e-8). */
#define RHO 2.4e-7
/* Head margins keep the near-tie tolerance the fast path has against the
 * naive one (test_fast): a top-2 margin below 1e-5 relative may flip by
 * rounding alone, so it is never cleared. */
#define HEAD_REL 1e-5
/* |silu'(x)| <= 1.0999 everywhere. */
#define SILU_LIP 1.1
/* Squarings of the Gram matrix in the spectral norm bound. */
/* The golden statistics are float recomputations (another batch shape than
 * the golden pass): a relative allowance on every branch bound. */
#define STAT_SLACK (1.0 + 1e-4)

typedef struct bound_ffn { /* a SwiGLU MLP's golden statistics per token */
    float *silu_max, *up_max, *jac_f;
    float *jac_down;   /* [tokens] |W_down J|_F, J the SwiGLU Jacobian (see swiglu_down) */
    double sg, su, sd; /* spectral norms: gate, up (norm weight folded), down */
} bound_ffn;

/* Rows of a SwiGLU's gate and up matrices (norm weight folded): squared
 * norms and inner products, for the Frobenius norm of its Jacobian. */
typedef struct swiglu_rows {
    double *gg, *uu, *gu; /* [I] */
} swiglu_rows;

typedef struct bound_layer {
    /* attention */
    float *a_rms;         /* [tokens] rms of the attention input */
    float *qn, *q_rms;    /* [tokens, heads] final |q|, rms of raw q (QK-norm) */
    float *kn, *k_rms;    /* [tokens, kv] */
    float *vn;            /* [tokens, kv] */
    float *vdev;          /* [tokens, heads] max over the window of |v_j - golden output| */
    float *vstd;          /* [tokens, heads] sqrt(sum p_j |v_j - golden output|^2) */
    float *prob;          /* [seq, heads, key j, W] golden p_ij, key-major: row j holds the
                             queries i of j's window from its start (W = chunk or T) */
    float *prob_dev;      /* the same layout: p_ij |v_j - o_i| (o_i the golden head output) */
    float *kbar, *kbar2;  /* [tokens, heads] sum p_j |k_j| and sum p_j |k_j|^2 over the window */
    float *vbar;          /* [tokens, heads] sum p_j |v_j - golden output| */
    double *sq, *sk, *sv; /* [heads], [kv], [kv] */
    double so;
    /* FFN */
    float *f_rms;                 /* [tokens] */
    bound_ffn mlp;                /* dense MLP or shared expert */
    float *gap;                   /* [tokens] MoE: k-th minus (k+1)-th router logit */
    float *score;                 /* [tokens, k] */
    int32_t *idx;                 /* [tokens, k] */
    float *e_silu, *e_up, *e_jac; /* [tokens, k] the routed expert's statistics */
    float *e_jac_down;            /* [tokens, k] */
    float *e_along;       /* [tokens, k] |W_down J n| / score: the expert along its own input n */
    double rmax;          /* largest router row norm (norm weight folded) */
    double *eg, *eu, *ed; /* [E] per expert spectral norms */
} bound_layer;

struct l4_bound {
    int64_t T, tokens, layers;
    int nstages;
    bound_layer *layer;
    float **xnorm; /* [nstages + 1]: |stage input| per token (NULL for stage 0) */
    float *h_rms;  /* [tokens] rms of the head input */
    float *mu;     /* [tokens] head clearance, see above */
};

static void free_ffn(bound_ffn *f) {
    free(f->silu_max);
    free(f->up_max);
    free(f->jac_f);
    free(f->jac_down);
}

void l4_bound_free(l4_bound *b) {
    if (!b)
        return;
    for (int64_t L = 0; b->layer && L < b->layers; L++) {
        bound_layer *y = &b->layer[L];
        free(y->a_rms);
        free(y->qn);
        free(y->q_rms);
        free(y->kn);
        free(y->k_rms);
        free(y->vn);
        free(y->vdev);
        free(y->vstd);
        free(y->prob);
        free(y->prob_dev);
        free(y->kbar);
        free(y->kbar2);
        free(y->vbar);
        free(y->sq);
        free(y->sk);
        free(y->sv);
        free(y->f_rms);
        free_ffn(&y->mlp);
        free(y->gap);
        free(y->score);
        free(y->idx);
        free(y->e_silu);
        free(y->e_up);
        free(y->e_jac);
        free(y->e_jac_down);
        free(y->e_along);
        free(y->eg);
        free(y->eu);
        free(y->ed);
    }
    free(b->layer);
    for (int s = 0; b->xnorm && s <= b->nstages; s++)
        free(b->xnorm[s]);
    free(b->xnorm);
    free(b->h_rms);
    free(b->mu);
    free(b);
}

/* ---- spectral norms ---- */

/* ---- golden statistics ---- */

static float rms_of(const float *x, int64_t n, double eps) {
    double ss = 0.0;
    for (int64_t j = 0; j < n; j++)
        ss += (double)x[j] * x[j];
    return (float)sqrt(ss / (double)n + eps);
}

static float norm_of(const float *x, int64_t n) {
    double ss = 0.0;
    for (int64_t j = 0; j < n; j++)
        ss += (double)x[j] * x[j];
    return (float)sqrt(ss);
}

/* Row statistics of gate rows wg[I, H] and up rows wu[I, H] (w folded). */
static int swiglu_rows_make(swiglu_rows *r, const float *wg, const float *wu, int64_t I, int64_t H,
                            const float *w) {
    r->gg = malloc((size_t)I * sizeof(double));
    r->uu = malloc((size_t)I * sizeof(double));
    r->gu = malloc((size_t)I * sizeof(double));
    if (!r->gg || !r->uu || !r->gu)
        return -1;
    for (int64_t i = 0; i < I; i++) {
        double gg = 0.0, uu = 0.0, gu = 0.0;
        for (int64_t j = 0; j < H; j++) {
            const double a = (double)wg[i * H + j] * w[j], b = (double)wu[i * H + j] * w[j];
            gg += a * a;
            uu += b * b;
            gu += a * b;
        }
        r->gg[i] = gg;
        r->uu[i] = uu;
        r->gu[i] = gu;
    }
    return 0;
}

static void swiglu_rows_free(swiglu_rows *r) {
    free(r->gg);
    free(r->uu);
    free(r->gu);
}

/* Golden statistics of one SwiGLU row (gate g[I], up u[I]): maxima of
 * |silu(g)| and |u|, and the Frobenius norm of the Jacobian of
 * h = silu(g) u with respect to the input, diag(silu'(g) u) Wg + diag(silu(g)) Wu. */
static void swiglu_stats(const float *g, const float *u, int64_t I, const swiglu_rows *r,
                         float *silu_max, float *up_max, float *jac_f) {
    double sm = 0.0, um = 0.0, f2 = 0.0;
    for (int64_t j = 0; j < I; j++) {
        const double x = g[j], sig = 1.0 / (1.0 + exp(-x));
        const double silu = x * sig, dsilu = sig * (1.0 + x * (1.0 - sig));
        const double a = dsilu * u[j], b = silu;
        if (fabs(silu) > sm)
            sm = fabs(silu);
        if (fabs((double)u[j]) > um)
            um = fabs((double)u[j]);
        f2 += a * a * r->gg[j] + 2.0 * a * b * r->gu[j] + b * b * r->uu[j];
    }
    *silu_max = (float)sm;
    *up_max = (float)um;
    *jac_f = (float)sqrt(f2 > 0.0 ? f2 : 0.0);
}

/* |W_down J|_F per token of a SwiGLU, J = diag(a) G + diag(b) U its
 * Jacobian (a = silu'(g) u, b = silu(g); G, U the gate and up rows with the
 * norm weight folded): a far smaller bound on the first-order change than
 * |W_down|_2 |J|_F. With D = W_down^T W_down,
 * |W_down J|_F^2 = tr(J^T D J) = a^T (D o GG^T) a + 2 a^T (D o GU^T) b
 *                + b^T (D o UU^T) b   (o: elementwise; D symmetric),
 * three I x I matrices once per MLP and three quadratic forms per token. */
typedef struct swiglu_down {
    int64_t I;
    double *p[3];  /* D o GG^T, D o GU^T, D o UU^T */
    double fro[3]; /* their Frobenius norms, for the rounding allowance */
    int64_t H;
    double *down;    /* [H, I] W_down */
    double *cf, *xp; /* [SD_BLOCK, 2 I] coefficients a|b, [SD_BLOCK, I] products */
} swiglu_down;

#define SD_BLOCK 256

static void swiglu_down_free(swiglu_down *sd) {
    for (int i = 0; i < 3; i++)
        free(sd->p[i]);
    free(sd->cf);
    free(sd->xp);
    free(sd->down);
}

/* gate wg[I, H], up wu[I, H] (folded by w), down wd[H, I]. */
static int swiglu_down_make(swiglu_down *sd, const float *wg, const float *wu, const float *wd,
                            int64_t I, int64_t H, const float *w) {
    memset(sd, 0, sizeof *sd);
    sd->I = I;
    sd->H = H;
    double *g = malloc((size_t)(I * H) * sizeof *g), *u = malloc((size_t)(I * H) * sizeof *u);
    double *d = sd->down = malloc((size_t)(H * I) * sizeof *d);
    double *dd = malloc((size_t)(I * I) * sizeof *dd);
    for (int i = 0; i < 3; i++)
        sd->p[i] = malloc((size_t)(I * I) * sizeof(double));
    sd->cf = malloc((size_t)(SD_BLOCK * 2 * I) * sizeof(double));
    sd->xp = malloc((size_t)(SD_BLOCK * I) * sizeof(double));
    int rc = g && u && d && dd && sd->p[0] && sd->p[1] && sd->p[2] && sd->cf && sd->xp ? 0 : -1;
    if (rc == 0) {
        for (int64_t i = 0; i < I; i++)
            for (int64_t j = 0; j < H; j++) {
                g[i * H + j] = (double)wg[i * H + j] * w[j];
                u[i * H + j] = (double)wu[i * H + j] * w[j];
            }
        for (int64_t j = 0; j < H * I; j++)
            d[j] = wd[j];
        const int n = (int)I, h = (int)H;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, h, 1.0, d, n, d, n, 0.0, dd, n);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, h, 1.0, g, h, g, h, 0.0,
                    sd->p[0], n);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, h, 1.0, g, h, u, h, 0.0,
                    sd->p[1], n);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, h, 1.0, u, h, u, h, 0.0,
                    sd->p[2], n);
        for (int i = 0; i < 3; i++) {
            double ss = 0.0;
            for (int64_t j = 0; j < I * I; j++) {
                sd->p[i][j] *= dd[j];
                ss += sd->p[i][j] * sd->p[i][j];
            }
            sd->fro[i] = sqrt(ss);
        }
    }
    free(g);
    free(u);
    free(dd);
    if (rc)
        swiglu_down_free(sd);
    return rc;
}

/* The coefficients a|b of one token's SwiGLU (gate g[I], up u[I]) into
 * cf[2 I]. */
static void swiglu_coef(const float *g, const float *u, int64_t I, double *cf) {
    for (int64_t j = 0; j < I; j++) {
        const double x = g[j], sig = 1.0 / (1.0 + exp(-x));
        cf[j] = sig * (1.0 + x * (1.0 - sig)) * u[j];
        cf[I + j] = x * sig;
    }
}

/* |W_down J|_F of the n <= SD_BLOCK tokens whose coefficients are in
 * sd->cf, into out[i * stride]. The double rounding of the forms (sums of
 * at most 2 I H terms) is far below the allowance added. */
static void swiglu_down_norms(swiglu_down *sd, int64_t n, float *out, int64_t stride) {
    const int64_t I = sd->I;
    double q[SD_BLOCK] = {0};
    for (int i = 0; i < 3; i++) {
        const int right = i == 0 ? 0 : 1, left = i == 2 ? 1 : 0; /* a or b */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)I, (int)I, 1.0,
                    sd->cf + left * I, (int)(2 * I), sd->p[i], (int)I, 0.0, sd->xp, (int)I);
        for (int64_t t = 0; t < n; t++) {
            double acc = 0.0;
            const double *y = sd->cf + t * 2 * I + right * I;
            for (int64_t j = 0; j < I; j++)
                acc += sd->xp[t * I + j] * y[j];
            q[t] += (i == 1 ? 2.0 : 1.0) * acc;
        }
    }
    for (int64_t t = 0; t < n; t++) {
        double na = 0.0, nb = 0.0;
        for (int64_t j = 0; j < I; j++) {
            na += sd->cf[t * 2 * I + j] * sd->cf[t * 2 * I + j];
            nb += sd->cf[t * 2 * I + I + j] * sd->cf[t * 2 * I + I + j];
        }
        const double scale = sd->fro[0] * na + 2.0 * sd->fro[1] * sqrt(na * nb) + sd->fro[2] * nb;
        const double v = q[t] + 1e-9 * scale;
        out[t * stride] = (float)(sqrt(v > 0.0 ? v : 0.0) * (1.0 + 1e-6));
    }
}

/* |W_down J xg| / score of a routed expert's slot (coefficients cf = a|b,
 * gate g = G xg, up u = U xg, xg = score n): J xg = a o g + b o u, so this
 * is how its output moves as its input slides along n, per unit of score.
 * z[I], y[H] workspace. */
static float along_input(const swiglu_down *sd, const double *cf, const float *g, const float *u,
                         float score, double *z, double *y) {
    const int64_t I = sd->I, H = sd->H;
    for (int64_t j = 0; j < I; j++)
        z[j] = cf[j] * g[j] + cf[I + j] * u[j];
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)H, (int)I, 1.0, sd->down, (int)I, z, 1, 0.0, y,
                1);
    double ss = 0.0;
    for (int64_t h = 0; h < H; h++)
        ss += y[h] * y[h];
    return (float)(sqrt(ss) / score * (1.0 + 1e-4)); /* a float recomputation: STAT_SLACK */
}

/* Queries per key row of the stored golden probabilities of layer L: an
 * attention window's length (the chunk for chunked layers, else T). */
static int64_t l4_prob_row(const l4_config *c, int64_t L, int64_t T) {
    return c->rope[L] && c->chunk > 0 && c->chunk < T ? c->chunk : T;
}

/* Per query t and head h of one sequence (q, k after RoPE and QK-norm or
 * temperature, v): the largest distance of a value in t's window from the
 * golden output o_t,h = sum p_j v_j, and the p-weighted RMS of that
 * distance, in double. A change of the weights moves the output by
 * sum dp_j (v_j - o) (sum dp_j = 0), at most |dp|_1 times the first; along
 * the path s + u ds the output moves at the rate Cov_p(u)(ds, v), at most
 * max|ds| e^max|ds| times the second (p_j(u) <= e^(2 max|ds|) p_j). */
static void attn_spread(const l4_config *c, int64_t L, int64_t T, const float *q, const float *k,
                        const float *v, const float *kn, double *p, double *o, float *spread,
                        float *rms, int64_t prow, float *prob, float *prob_dev, float *kbar,
                        float *kbar2, float *vbar) {
    const int64_t d = c->head_dim, nh = c->heads, nkv = c->kv_heads, group = nh / nkv;
    const int64_t chunk = c->rope[L] ? c->chunk : 0;
    const double scale = 1.0 / sqrt((double)d);
    for (int64_t t = 0; t < T; t++) {
        const int64_t lo = chunk > 0 ? t / chunk * chunk : 0;
        for (int64_t h = 0; h < nh; h++) {
            const float *qh = q + (t * nh + h) * d;
            const int64_t kh = h / group;
            double mx = -INFINITY, sum = 0.0;
            memset(o, 0, (size_t)d * sizeof *o);
            for (int64_t j = lo; j <= t; j++) {
                double dot = 0.0;
                for (int64_t i = 0; i < d; i++)
                    dot += (double)qh[i] * k[(j * nkv + kh) * d + i];
                p[j - lo] = dot * scale;
                mx = p[j - lo] > mx ? p[j - lo] : mx;
            }
            for (int64_t j = lo; j <= t; j++)
                sum += (p[j - lo] = exp(p[j - lo] - mx));
            for (int64_t j = lo; j <= t; j++)
                for (int64_t i = 0; i < d; i++)
                    o[i] += p[j - lo] / sum * v[(j * nkv + kh) * d + i];
            double far = 0.0, var = 0.0, mean = 0.0;
            for (int64_t j = lo; j <= t; j++) {
                double ss = 0.0;
                for (int64_t i = 0; i < d; i++) {
                    const double dv = v[(j * nkv + kh) * d + i] - o[i];
                    ss += dv * dv;
                }
                far = ss > far ? ss : far;
                var += p[j - lo] / sum * ss;
                mean += p[j - lo] / sum * sqrt(ss);
                prob_dev[(h * T + j) * prow + t - lo] =
                    (float)(p[j - lo] / sum * sqrt(ss) * (1.0 + 1e-5));
            }
            spread[t * nh + h] = (float)(sqrt(far) * (1.0 + 1e-5));
            rms[t * nh + h] = (float)(sqrt(var) * (1.0 + 1e-5));
            vbar[t * nh + h] = (float)(mean * (1.0 + 1e-5));
            double k1 = 0.0, k2 = 0.0;
            for (int64_t j = lo; j <= t; j++) {
                const double pj = p[j - lo] / sum, kj = kn[j * nkv + kh];
                prob[(h * T + j) * prow + t - lo] = (float)pj;
                k1 += pj * kj;
                k2 += pj * kj * kj;
            }
            kbar[t * nh + h] = (float)(k1 * (1.0 + 1e-5));
            kbar2[t * nh + h] = (float)(k2 * (1.0 + 1e-5));
        }
    }
}

/* Attention statistics of layer L: q/k/v norms per token and head. */
static int attn_stats(const pvf_model *m, const pvf_golden *g, int64_t L, bound_layer *y,
                      float *work) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_layer *p = &l->layer[L];
    const int64_t H = c->hidden, T = l->T, tokens = g->n * T, d = c->head_dim;
    const int64_t nh = c->heads, nkv = c->kv_heads, qd = nh * d, kd = nkv * d;
    const float *x = g->stage_in[m->params[p->q].stage];
    const float *w_in = m->params[p->in_norm].value;
    y->a_rms = malloc((size_t)tokens * sizeof(float));
    y->qn = malloc((size_t)(tokens * nh) * sizeof(float));
    y->q_rms = malloc((size_t)(tokens * nh) * sizeof(float));
    y->kn = malloc((size_t)(tokens * nkv) * sizeof(float));
    y->k_rms = malloc((size_t)(tokens * nkv) * sizeof(float));
    y->vn = malloc((size_t)(tokens * nkv) * sizeof(float));
    y->sq = malloc((size_t)nh * sizeof(double));
    y->sk = malloc((size_t)nkv * sizeof(double));
    y->sv = malloc((size_t)nkv * sizeof(double));
    y->vdev = malloc((size_t)(tokens * nh) * sizeof(float));
    y->vstd = malloc((size_t)(tokens * nh) * sizeof(float));
    const int64_t prow = l4_prob_row(c, L, T); /* a key's window of queries */
    y->prob = calloc((size_t)(g->n * nh * T * prow), sizeof(float));
    y->prob_dev = calloc((size_t)(g->n * nh * T * prow), sizeof(float));
    y->kbar = malloc((size_t)(tokens * nh) * sizeof(float));
    y->kbar2 = malloc((size_t)(tokens * nh) * sizeof(float));
    y->vbar = malloc((size_t)(tokens * nh) * sizeof(float));
    if (!y->prob || !y->prob_dev || !y->vbar || !y->kbar || !y->kbar2 || !y->vdev || !y->vstd ||
        !y->a_rms || !y->qn || !y->q_rms || !y->kn || !y->k_rms || !y->vn || !y->sq || !y->sk ||
        !y->sv)
        return -1;
    float *a = work, *q = a + T * H, *k = q + T * qd, *v = k + T * kd;
    double *scores = (double *)(void *)(v + T * kd); /* malloc'd: any type */
    for (int64_t seq = 0; seq < g->n; seq++) {
        const float *xs = x + seq * T * H;
        const int64_t t0 = seq * T;
        for (int64_t t = 0; t < T; t++)
            y->a_rms[t0 + t] = rms_of(xs + t * H, H, c->eps);
        pvf_rms_norm(xs, T, H, w_in, (float)c->eps, a);
        pvf_linear(a, T, H, m->params[p->q].value, NULL, qd, q);
        pvf_linear(a, T, H, m->params[p->k].value, NULL, kd, k);
        pvf_linear(a, T, H, m->params[p->v].value, NULL, kd, v);
        if (c->rope[L]) {
            pvf_rope_apply_from(q, 0, T, nh, d, l->inv_freq);
            pvf_rope_apply_from(k, 0, T, nkv, d, l->inv_freq);
        }
        for (int64_t t = 0; t < T; t++) {
            for (int64_t h = 0; h < nh; h++)
                y->q_rms[(t0 + t) * nh + h] = rms_of(q + (t * nh + h) * d, d, c->eps);
            for (int64_t h = 0; h < nkv; h++) {
                y->k_rms[(t0 + t) * nkv + h] = rms_of(k + (t * nkv + h) * d, d, c->eps);
                y->vn[(t0 + t) * nkv + h] = norm_of(v + (t * nkv + h) * d, d);
            }
        }
        if (c->rope[L] && c->qk_norm) {
            pvf_rms_norm(q, T * nh, d, NULL, (float)c->eps, q);
            pvf_rms_norm(k, T * nkv, d, NULL, (float)c->eps, k);
        } else if (!c->rope[L] && c->temp_tuning) {
            for (int64_t t = 0; t < T; t++) {
                float s = pvf_attn_temperature(t, c->floor_scale, (float)c->attn_scale);
                for (int64_t j = 0; j < qd; j++)
                    q[t * qd + j] *= s;
            }
        }
        for (int64_t t = 0; t < T; t++) {
            for (int64_t h = 0; h < nh; h++)
                y->qn[(t0 + t) * nh + h] = norm_of(q + (t * nh + h) * d, d);
            for (int64_t h = 0; h < nkv; h++)
                y->kn[(t0 + t) * nkv + h] = norm_of(k + (t * nkv + h) * d, d);
        }
        attn_spread(c, L, T, q, k, v, y->kn + t0 * nkv, scores, scores + T, y->vdev + t0 * nh,
                    y->vstd + t0 * nh, prow, y->prob + seq * nh * T * prow,
                    y->prob_dev + seq * nh * T * prow, y->kbar + t0 * nh, y->kbar2 + t0 * nh,
                    y->vbar + t0 * nh);
    }
    const float *wq = m->params[p->q].value, *wk = m->params[p->k].value;
    const float *wv = m->params[p->v].value;
    for (int64_t h = 0; h < nh; h++)
        if ((y->sq[h] = pvf_fast_spectral_bound(wq, H, h * d, d, w_in)) < 0)
            return -1;
    for (int64_t h = 0; h < nkv; h++)
        if ((y->sk[h] = pvf_fast_spectral_bound(wk, H, h * d, d, w_in)) < 0 ||
            (y->sv[h] = pvf_fast_spectral_bound(wv, H, h * d, d, w_in)) < 0)
            return -1;
    y->so = pvf_fast_spectral_bound(m->params[p->o].value, qd, 0, H, NULL);
    return y->so < 0 ? -1 : 0;
}

/* A SwiGLU MLP's per-token statistics over rows f[tokens, H] (gate, up
 * [I, H], down [H, I]). */
static int mlp_stats(const float *f, int64_t tokens, int64_t H, int64_t I, const float *wg,
                     const float *wu, const float *wd, const float *w_norm, bound_ffn *b,
                     float *work) {
    b->silu_max = malloc((size_t)tokens * sizeof(float));
    b->up_max = malloc((size_t)tokens * sizeof(float));
    b->jac_f = malloc((size_t)tokens * sizeof(float));
    swiglu_rows rows = {NULL, NULL, NULL};
    if (!b->silu_max || !b->up_max || !b->jac_f || swiglu_rows_make(&rows, wg, wu, I, H, w_norm)) {
        swiglu_rows_free(&rows);
        return -1;
    }
    float *gg = work, *uu = work + tokens * I;
    pvf_linear(f, tokens, H, wg, NULL, I, gg);
    pvf_linear(f, tokens, H, wu, NULL, I, uu);
    for (int64_t t = 0; t < tokens; t++)
        swiglu_stats(gg + t * I, uu + t * I, I, &rows, &b->silu_max[t], &b->up_max[t],
                     &b->jac_f[t]);
    swiglu_rows_free(&rows);
    swiglu_down sd;
    b->jac_down = malloc((size_t)tokens * sizeof(float));
    if (!b->jac_down || swiglu_down_make(&sd, wg, wu, wd, I, H, w_norm))
        return -1;
    for (int64_t t0 = 0; t0 < tokens; t0 += SD_BLOCK) {
        const int64_t n = tokens - t0 < SD_BLOCK ? tokens - t0 : SD_BLOCK;
        for (int64_t t = 0; t < n; t++)
            swiglu_coef(gg + (t0 + t) * I, uu + (t0 + t) * I, I, sd.cf + t * 2 * I);
        swiglu_down_norms(&sd, n, b->jac_down + t0, 1);
    }
    swiglu_down_free(&sd);
    b->sg = pvf_fast_spectral_bound(wg, H, 0, I, w_norm);
    b->su = pvf_fast_spectral_bound(wu, H, 0, I, w_norm);
    b->sd = pvf_fast_spectral_bound(wd, I, 0, H, NULL);
    return b->sg < 0 || b->su < 0 || b->sd < 0 ? -1 : 0;
}

/* FFN statistics of layer L (dense MLP, or router, shared and routed experts). */
static int ffn_stats(const pvf_model *m, const pvf_golden *g, int64_t L, bound_layer *y,
                     float *work) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const l4_layer *p = &l->layer[L];
    const int64_t H = c->hidden, tokens = g->n * l->T;
    const float *x = g->stage_in[m->params[p->post_norm].stage];
    const float *w_post = m->params[p->post_norm].value;
    y->f_rms = malloc((size_t)tokens * sizeof(float));
    if (!y->f_rms)
        return -1;
    for (int64_t t = 0; t < tokens; t++)
        y->f_rms[t] = rms_of(x + t * H, H, c->eps);
    float *f = work, *rest = work + tokens * H;
    pvf_rms_norm(x, tokens, H, w_post, (float)c->eps, f);
    if (!c->moe[L])
        return mlp_stats(f, tokens, H, c->inter_mlp, m->params[p->gate].value,
                         m->params[p->up].value, m->params[p->mlp_down].value, w_post, &y->mlp,
                         rest);
    const int64_t I = c->inter, E = c->experts, k = c->top_k;
    if (mlp_stats(f, tokens, H, I, m->params[p->sh_gate].value, m->params[p->sh_up].value,
                  m->params[p->sh_down].value, w_post, &y->mlp, rest))
        return -1;
    y->gap = malloc((size_t)tokens * sizeof(float));
    y->score = malloc((size_t)(tokens * k) * sizeof(float));
    y->idx = malloc((size_t)(tokens * k) * sizeof(int32_t));
    y->e_silu = malloc((size_t)(tokens * k) * sizeof(float));
    y->e_up = malloc((size_t)(tokens * k) * sizeof(float));
    y->e_jac = malloc((size_t)(tokens * k) * sizeof(float));
    y->eg = malloc((size_t)E * sizeof(double));
    y->eu = malloc((size_t)E * sizeof(double));
    y->ed = malloc((size_t)E * sizeof(double));
    swiglu_rows *er = calloc((size_t)E, sizeof *er);
    if (!y->gap || !y->score || !y->idx || !y->e_silu || !y->e_up || !y->e_jac || !y->eg ||
        !y->eu || !y->ed || !er) {
        free(er);
        return -1;
    }
    int rc = 0;
    for (int64_t e = 0; e < E; e++) {
        const float *wgu = m->params[p->gate_up[e]].value;
        rc |= swiglu_rows_make(&er[e], wgu, wgu + I * H, I, H, w_post);
    }
    float *logits = rest, *xg = logits + tokens * E, *gu = xg + H;
    const float *wr = m->params[p->router].value;
    pvf_linear(f, tokens, H, wr, NULL, E, logits);
    pvf_router_topk(logits, tokens, E, (int)k, y->idx, y->score);
    for (int64_t t = 0; t < tokens; t++) {
        const float *lg = logits + t * E;
        float kth = INFINITY, other = -INFINITY;
        for (int64_t e = 0; e < E; e++) {
            int chosen = 0;
            for (int64_t s = 0; s < k; s++)
                chosen |= y->idx[t * k + s] == e;
            if (chosen && lg[e] < kth)
                kth = lg[e];
            if (!chosen && lg[e] > other)
                other = lg[e];
        }
        y->gap[t] = E > k ? kth - other : INFINITY; /* NaN when a logit is: never cleared */
        for (int64_t s = 0; s < k; s++) {
            const int32_t e = y->idx[t * k + s];
            for (int64_t j = 0; j < H; j++)
                xg[j] = f[t * H + j] * y->score[t * k + s];
            pvf_linear(xg, 1, H, m->params[p->gate_up[e]].value, NULL, 2 * I, gu);
            if (rc == 0)
                swiglu_stats(gu, gu + I, I, &er[e], &y->e_silu[t * k + s], &y->e_up[t * k + s],
                             &y->e_jac[t * k + s]);
        }
    }
    for (int64_t e = 0; e < E; e++)
        swiglu_rows_free(&er[e]);
    free(er);
    y->e_jac_down = malloc((size_t)(tokens * k) * sizeof(float));
    y->e_along = malloc((size_t)(tokens * k) * sizeof(float));
    if (rc || !y->e_jac_down || !y->e_along)
        return -1;
    for (int32_t e = 0; e < (int32_t)E; e++) { /* |W_down J|_F of each slot routed to e */
        swiglu_down sd;
        const float *wgu = m->params[p->gate_up[e]].value;
        if (swiglu_down_make(&sd, wgu, wgu + I * H, m->params[p->down[e]].value, I, H, w_post))
            return -1;
        int64_t slot[SD_BLOCK], n = 0;
        float norms[SD_BLOCK];
        for (int64_t ts = 0; ts < tokens * k; ts++) {
            if (y->idx[ts] == e) {
                for (int64_t j = 0; j < H; j++)
                    xg[j] = f[ts / k * H + j] * y->score[ts];
                pvf_linear(xg, 1, H, wgu, NULL, 2 * I, gu);
                swiglu_coef(gu, gu + I, I, sd.cf + n * 2 * I);
                /* sd.xp is free between flushes */
                y->e_along[ts] =
                    along_input(&sd, sd.cf + n * 2 * I, gu, gu + I, y->score[ts], sd.xp, sd.xp + I);
                slot[n++] = ts;
            }
            if (n == SD_BLOCK || (n > 0 && ts == tokens * k - 1)) {
                swiglu_down_norms(&sd, n, norms, 1);
                for (int64_t i = 0; i < n; i++)
                    y->e_jac_down[slot[i]] = norms[i];
                n = 0;
            }
        }
        swiglu_down_free(&sd);
    }
    y->rmax = 0.0;
    for (int64_t e = 0; e < E; e++) {
        double ss = 0.0;
        for (int64_t j = 0; j < H; j++) {
            double v = (double)wr[e * H + j] * w_post[j];
            ss += v * v;
        }
        if (sqrt(ss) > y->rmax)
            y->rmax = sqrt(ss);
        const float *wgu = m->params[p->gate_up[e]].value;
        y->eg[e] = pvf_fast_spectral_bound(wgu, H, 0, I, w_post);
        y->eu[e] = pvf_fast_spectral_bound(wgu, H, I, I, w_post);
        y->ed[e] = pvf_fast_spectral_bound(m->params[p->down[e]].value, I, 0, H, NULL);
        if (y->eg[e] < 0 || y->eu[e] < 0 || y->ed[e] < 0)
            return -1;
    }
    y->rmax *= 1.0 + 1e-9;
    return 0;
}

/* Logit lt of the top class less lv of class v, less the allowances the
 * head bound keeps: a logit rounds by <= RHO |row w| sqrt(H) (|n| <=
 * sqrt(H); nt, nv the rows' |row w|), and the near-tie tolerance. */
static double head_gap(double lt, double lv, double nt, double nv, int64_t H) {
    return lt - lv - RHO * (nt + nv) * sqrt((double)H) - HEAD_REL * fmax(fabs(lt), fabs(lv));
}

/* Head clearance mu_t of every position (see the top). The squared norms
 * |(row_top - row_v) w|^2 come from the Gram matrix of the folded rows,
 * K_tt + K_vv - 2 K_tv, plus an allowance for its cancellation in double. */
static int head_stats(const pvf_model *m, const pvf_golden *g, l4_bound *b) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t H = c->hidden, V = c->vocab, tokens = b->tokens;
    const float *x = g->stage_in[m->params[l->lm_head].stage];
    const float *w = m->params[l->norm].value, *W = m->params[l->lm_head].value;
    b->h_rms = malloc((size_t)tokens * sizeof(float));
    b->mu = malloc((size_t)tokens * sizeof(float));
    double *rows = malloc((size_t)(V * H) * sizeof *rows);
    double *gram = malloc((size_t)(V * V) * sizeof *gram);
    if (!b->h_rms || !b->mu || !rows || !gram) {
        free(rows);
        free(gram);
        return -1;
    }
    for (int64_t v = 0; v < V; v++)
        for (int64_t j = 0; j < H; j++)
            rows[v * H + j] = (double)W[v * H + j] * w[j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)V, (int)V, (int)H, 1.0, rows, (int)H,
                rows, (int)H, 0.0, gram, (int)V);
    for (int64_t t = 0; t < tokens; t++) {
        b->h_rms[t] = rms_of(x + t * H, H, c->eps);
        const float *lg = g->out + t * V;
        const int64_t top = g->top1[t];
        const double ktt = gram[top * V + top];
        double mu = INFINITY;
        for (int64_t v = 0; v < V && mu > 0; v++) {
            if (v == top)
                continue;
            const double kvv = gram[v * V + v];
            double ss = ktt + kvv - 2.0 * gram[top * V + v] + 1e-12 * (ktt + kvv);
            double num = head_gap(lg[top], lg[v], sqrt(ktt), sqrt(kvv), H);
            double ratio = ss > 0 && num > 0 ? num / (sqrt(ss) * (1.0 + 1e-9)) : 0.0;
            if (!(ratio < mu))
                ratio = isnan(ratio) ? 0.0 : mu;
            mu = ratio;
        }
        b->mu[t] = (float)(mu * (1.0 - 1e-6));
    }
    free(rows);
    free(gram);
    return 0;
}

int l4_bound_prepare(const pvf_model *m, const pvf_golden *g, l4_bound **out) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t H = c->hidden, T = l->T, tokens = g->n * T;
    *out = NULL;
    l4_bound *b = calloc(1, sizeof *b);
    if (!b)
        return -1;
    b->T = T;
    b->tokens = tokens;
    b->layers = c->layers;
    b->nstages = m->nstages;
    b->layer = calloc((size_t)c->layers, sizeof *b->layer);
    b->xnorm = calloc((size_t)m->nstages + 1, sizeof *b->xnorm);
    /* workspace: the widest of the attention and FFN replays */
    const int64_t qd = c->heads * c->head_dim, kd = c->kv_heads * c->head_dim;
    int64_t need = T * (H + qd + 2 * kd) + 2 * (T + c->head_dim);
    const int64_t widest_i = c->inter > c->inter_mlp ? c->inter : c->inter_mlp;
    const int64_t ffn =
        tokens * (H + 2 * widest_i) + tokens * (H + c->experts) + 3 * H + 2 * c->inter;
    if (ffn > need)
        need = ffn;
    float *work = malloc((size_t)need * sizeof *work);
    if (!b->layer || !b->xnorm || !work)
        goto fail;
    for (int s = 1; s < m->nstages; s++) {
        if (!g->stage_in[s] || !(b->xnorm[s] = malloc((size_t)tokens * sizeof(float))))
            goto fail;
        for (int64_t t = 0; t < tokens; t++)
            b->xnorm[s][t] = norm_of(g->stage_in[s] + t * H, H);
    }
    for (int64_t L = 0; L < c->layers; L++)
        if (attn_stats(m, g, L, &b->layer[L], work) || ffn_stats(m, g, L, &b->layer[L], work))
            goto fail;
    if (head_stats(m, g, b))
        goto fail;
    free(work);
    *out = b;
    return 0;
fail:
    free(work);
    l4_bound_free(b);
    return -1;
}

/* ---- the bound ---- */

/* Bound on |n(x') - n(x)| for the unit-weight RMSNorm n over dim features,
 * |x' - x| <= d, golden rms(x) = rms. */
static double norm_change(double d, double rms, int64_t dim) {
    if (d == 0.0)
        return 0.0;
    const double most = 2.0 * sqrt((double)dim), low = rms - d / sqrt((double)dim);
    if (low > 0.0 && d / low < most)
        return d / low * (1.0 + 1e-6); /* rms is stored in float */
    return most;
}

/* Change of a SwiGLU MLP's output (down projection included) for input
 * change din (norm weight folded into sg, su): the smaller of a norm-wise
 * bound and first order plus the second-order remainder, |silu''| <= 1/2:
 * |dh_m - J dx| <= |dg_m|^2 |u_m| / 4 + 1.1 |dg_m| |du_m|; `first` bounds the
 * first-order |W_down J dx|. */
static double swiglu_change(double din, double first, double sg, double su, double sd,
                            double silu_max, double up_max) {
    const double dg = sg * din, du = su * din;
    const double normwise = sd * (SILU_LIP * dg * (up_max + du) + silu_max * du);
    const double total = first * (1.0 + 1e-4) + sd * (0.26 * up_max * dg * dg + SILU_LIP * dg * du);
    return total < normwise ? total : normwise;
}

/* |W_down J|: the smaller of |W_down J|_F and sd |J|_F. */
static double jac_norm(double jac_down, double sd, double jac_f) {
    return jac_down < sd * jac_f ? jac_down : sd * jac_f;
}

/* Adds the rounding slack of stage s at touched position t. */
static double slack(const l4_bound *b, int s, int64_t t) {
    return RHO * ((double)b->xnorm[s][t] + (double)b->xnorm[s + 1][t]);
}

/* A changed key is weighed on its own when its change is at least this
 * share of the largest one (the others by their window maxima). */
#define BIG_KEY (1.0 / 16.0)
/* The weighted terms are worked out when at most T / WEIGHTED_KEYS keys
 * are big (a routed expert's or an embedding row's tokens, and what the
 * attention after them spread); with more (a change of every token), the
 * key by key sums cost more than they save (measured: 1 weighs always and
 * makes uniform faults 6 % slower, 4 loses half the gain on experts). */
#define WEIGHTED_KEYS 2
/* Adds one key's terms to its n queries' weighted sums (see bound_attn):
 * p_ij, and p_ij times |dk_j|, |dk_j|^2, |dv_j|; p_ij |v_j - o_i| |dk_j|. */
static void acc_key(const float *restrict p, const float *restrict pdev, float dk, float dv,
                    int64_t n, float *restrict s0, float *restrict s1, float *restrict s2,
                    float *restrict sv, float *restrict sd) {
    const float dk2 = dk * dk;
    for (int64_t i = 0; i < n; i++) {
        s0[i] += p[i];
        s1[i] += p[i] * dk;
        s2[i] += p[i] * dk2;
        sv[i] += p[i] * dv;
        sd[i] += pdev[i] * dk;
    }
}

/* Attention stage s of layer L over positions 0..n-1 (causal: they read
 * no later one): d[n] in, out[n] (both indexed by position). d[t] = INFINITY
 * marks a position whose change is not bounded: every query whose window
 * holds it is not bounded either. */
static void bound_attn(const pvf_model *m, const l4_bound *b, int s, int64_t L, int64_t seq,
                       int64_t n, const double *d, double *out, double *dq, double *dk, double *dv,
                       float *w0, float *w1, float *w2, float *wv, float *wd) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const bound_layer *y = &b->layer[L];
    const int64_t T = b->T, H = c->hidden, hd = c->head_dim, t0 = seq * T;
    const int64_t nh = c->heads, nkv = c->kv_heads, group = nh / nkv;
    const int qkn = c->rope[L] && c->qk_norm, temp = !c->rope[L] && c->temp_tuning;
    const int64_t chunk = c->rope[L] ? c->chunk : 0;
    const double scale = 1.0 / sqrt((double)hd);
    /* per position: q change per head, k and v changes per kv head */
    for (int64_t t = 0; t < n; t++) {
        const double da = norm_change(d[t], y->a_rms[t0 + t], H);
        for (int64_t h = 0; h < nh; h++) {
            double x = y->sq[h] * da;
            if (qkn)
                x = norm_change(x, y->q_rms[(t0 + t) * nh + h], hd);
            else if (temp)
                x *= pvf_attn_temperature(t, c->floor_scale, (float)c->attn_scale);
            dq[t * nh + h] = x;
        }
        for (int64_t h = 0; h < nkv; h++) {
            double x = y->sk[h] * da;
            dk[t * nkv + h] = qkn ? norm_change(x, y->k_rms[(t0 + t) * nkv + h], hd) : x;
            dv[t * nkv + h] = y->sv[h] * da;
        }
    }
    int64_t first = 0; /* positions before the first change stay golden */
    while (first < n && d[first] == 0.0)
        first++;
    /* per head and query i: sum p_ij, sum p_ij |dk_j|, sum p_ij |dk_j|^2,
     * sum p_ij |dv_j|, sum p_ij |v_j - o_i| |dk_j| over the big changed keys j
     * of i's window (d_j >= big: the fault's own tokens, typically), key by
     * key (golden p_ij stored key-major: one contiguous run of queries per
     * key), in float (vectorized; sums of at most T positive terms, relative
     * error below T unit roundoffs: acc_slack). The small changed keys count
     * with their window maxima times the mass the big ones leave. */
    const double acc_slack = 1.0 + 1.2e-7 * (double)(T + 2);
    double big = 0.0;
    for (int64_t j = first; j < n; j++)
        big = d[j] > big ? d[j] : big;
    big *= BIG_KEY;
    int64_t nbig = 0;
    for (int64_t j = first; j < n; j++)
        nbig += d[j] > 0.0 && d[j] >= big;
    const int weighted = nbig * WEIGHTED_KEYS <= T;
    for (int64_t h = 0; weighted && h < nh; h++)
        for (int64_t i = first; i < n; i++)
            w0[h * T + i] = w1[h * T + i] = w2[h * T + i] = wv[h * T + i] = wd[h * T + i] = 0.0f;
    const int64_t prow = l4_prob_row(c, L, T);
    const float *prob = y->prob + seq * nh * T * prow;
    const float *prob_dev = y->prob_dev + seq * nh * T * prow;
    for (int64_t j = first; weighted && j < n; j++) {
        if (d[j] == 0.0 || d[j] < big)
            continue;
        const int64_t wend = chunk > 0 && (j / chunk + 1) * chunk < n ? (j / chunk + 1) * chunk : n;
        for (int64_t h = 0; h < nh; h++) {
            const float a = (float)dk[j * nkv + h / group];
            const float c_v = (float)dv[j * nkv + h / group];
            /* row j from its window's start: query i at i - start */
            const int64_t at = (h * T + j) * prow - (chunk > 0 ? j / chunk * chunk : 0);
            const float *pj = prob + at, *pdj = prob_dev + at;
            acc_key(pj + j, pdj + j, a, c_v, wend - j, w0 + h * T + j, w1 + h * T + j,
                    w2 + h * T + j, wv + h * T + j, wd + h * T + j);
        }
    }
    /* sum over heads of the squared head-output changes, in out[] first;
     * window maxima kept running (a window starts at its chunk, or at 0) */
    for (int64_t i = 0; i < n; i++)
        out[i] = 0.0;
    for (int64_t kh = 0; kh < nkv; kh++) {
        double max_k = 0.0, max_dk = 0.0, max_dv = 0.0, max_v = 0.0, small_dk = 0.0, small_dv = 0.0;
        for (int64_t i = 0; i < n; i++) {
            if (i == (chunk > 0 ? i / chunk * chunk : 0))
                max_k = max_dk = max_dv = max_v = small_dk = small_dv = 0.0;
            if (d[i] > 0.0 && d[i] < big) { /* a small changed key */
                small_dk = dk[i * nkv + kh] > small_dk ? dk[i * nkv + kh] : small_dk;
                small_dv = dv[i * nkv + kh] > small_dv ? dv[i * nkv + kh] : small_dv;
            }
            const double kk = y->kn[(t0 + i) * nkv + kh] + dk[i * nkv + kh];
            max_k = kk > max_k ? kk : max_k;
            max_dk = dk[i * nkv + kh] > max_dk ? dk[i * nkv + kh] : max_dk;
            max_dv = dv[i * nkv + kh] > max_dv ? dv[i * nkv + kh] : max_dv;
            max_v = y->vn[(t0 + i) * nkv + kh] > max_v ? y->vn[(t0 + i) * nkv + kh] : max_v;
            if (i < first) /* nothing before it changed */
                continue;
            if (d[i] == 0.0 && max_dk == 0.0 && max_dv == 0.0)
                continue; /* nor anything in its window */
            for (int64_t h = kh * group; h < (kh + 1) * group; h++) {
                const double qn = y->qn[(t0 + i) * nh + h], dqi = dq[i * nh + h];
                const double e = scale * (dqi * max_k + qn * max_dk);
                const double dp = e < 2.0 ? e : 2.0;
                const double spread = y->vdev[(t0 + i) * nh + h];
                const double vfar = spread < max_v ? spread : max_v;
                const double vstd = y->vstd[(t0 + i) * nh + h];
                double soft = dp * vfar, value = max_dv;
                const double path = e < 30.0 ? e * exp(e) * vstd : INFINITY;
                soft = path < soft ? path : soft;
                if (!weighted) {
                    const double doh = value + soft;
                    out[i] += doh * doh;
                    continue;
                }
                /* weighted by golden p over the changed keys C: k1 >= sum_C
                 * p_j |dk_j|, k2 >= sum_C p_j |dk_j|^2, kv >= sum_C p_j |dv_j|,
                 * kd >= sum_C p_j |v_j - o| |dk_j| (the small keys' mass at
                 * most 1 - the big ones'; vbar = sum p_j |v_j - o| over all) */
                double sm = 1.0 - w0[h * T + i] / acc_slack + 1e-6;
                sm = sm < 0.0 ? 0.0 : sm > 1.0 ? 1.0 : sm;
                const double k1 = w1[h * T + i] * acc_slack + small_dk * sm;
                const double k2 = w2[h * T + i] * acc_slack + small_dk * small_dk * sm;
                const double kv = wv[h * T + i] * acc_slack + small_dv * sm;
                const double vbar = y->vbar[(t0 + i) * nh + h];
                const double kd =
                    wd[h * T + i] * acc_slack + small_dk * (vbar < sm * vfar ? vbar : sm * vfar);
                /* S1 >= sum p_j e_j, R2 >= sqrt(sum p_j e_j^2) */
                const double s1 =
                    scale * STAT_SLACK * (dqi * y->kbar[(t0 + i) * nh + h] + (dqi + qn) * k1);
                if (e + s1 < 30.0) {
                    const double r2 =
                        scale * STAT_SLACK *
                        (dqi * sqrt((double)y->kbar2[(t0 + i) * nh + h]) + (dqi + qn) * sqrt(k2));
                    const double f = exp(e + s1), rf = sqrt(f); /* p_j(u) <= f p_j */
                    const double vw = f * kv * STAT_SLACK;
                    const double dpw = 2.0 * f * s1 < dp ? 2.0 * f * s1 : dp;
                    const double cov = (e < rf * r2 ? e : rf * r2) * rf * vstd;
                    value = vw < value ? vw : value;
                    soft = dpw * vfar < soft ? dpw * vfar : soft;
                    soft = cov < soft ? cov : soft;
                    if (dqi == 0.0) {
                        /* only changed keys' scores move: the output moves at
                         * sum_C p_j(u) ds_j (v_j - o) - m(u) (o(u) - o) */
                        const double lin = f * scale * qn * kd * STAT_SLACK;
                        const double dev = f * s1 * (dpw < 2.0 ? dpw : 2.0) * vfar;
                        soft = lin + dev < soft ? lin + dev : soft;
                    }
                }
                const double doh = value + soft;
                out[i] += doh * doh;
            }
        }
    }
    /* a position changes when it did or a key of its window did */
    int64_t last_changed = -1, last_lost = -1;
    for (int64_t i = 0; i < n; i++) {
        if (d[i] > 0.0)
            last_changed = i;
        if (d[i] == INFINITY)
            last_lost = i;
        const int64_t lo = chunk > 0 ? i / chunk * chunk : 0;
        const double heads = out[i];
        out[i] = d[i];
        if (last_lost >= lo && last_lost >= 0)
            out[i] = INFINITY;
        else if (last_changed >= lo && last_changed >= 0)
            out[i] += y->so * sqrt(heads) * STAT_SLACK + slack(b, s, t0 + i);
    }
}

/* Second-order remainder of a SwiGLU MLP (down projection included) whose
 * input moves by din, per unit input: |silu''| <= 1/2 and the product
 * silu(g) u (see swiglu_change). */
static double swiglu_remainder(double din, double sg, double su, double sd, double up_max) {
    const double dg = sg * din, du = su * din;
    return sd * (0.26 * up_max * dg * dg + SILU_LIP * dg * du);
}

/* FFN stage s of layer L at token tt (sequence * T + position) whose input
 * changed by d > 0: its output change, or -1 when the routing might change.
 * With rem (the linearized bound, whose caller shows the routing holds) the
 * routing is taken as held, and *rem gets the stage's second-order
 * remainder: its change less its golden Jacobian times the input's. */
static double ffn_token_bound(const pvf_model *m, const l4_bound *b, int s, int64_t L, int64_t tt,
                              double d, double *rem) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const bound_layer *y = &b->layer[L];
    const int64_t H = c->hidden, k = c->top_k;
    const double sqrt_h = sqrt((double)H);
    const double dn = norm_change(d, y->f_rms[tt], H);
    const double ra = rem ? l4_norm_remainder(d, y->f_rms[tt], H) : 0.0;
    const double jm = jac_norm(y->mlp.jac_down[tt], y->mlp.sd, y->mlp.jac_f[tt]);
    double branch = swiglu_change(dn, jm * dn, y->mlp.sg, y->mlp.su, y->mlp.sd, y->mlp.silu_max[tt],
                                  y->mlp.up_max[tt]);
    /* the MLP's own remainder, and its Jacobian on the norm's */
    double r =
        rem ? swiglu_remainder(dn, y->mlp.sg, y->mlp.su, y->mlp.sd, y->mlp.up_max[tt]) + jm * ra
            : 0.0;
    if (c->moe[L]) {
        const double dl = y->rmax * dn;
        /* the golden top-k survives when no logit pair can cross */
        if (!rem && !(y->gap[tt] > 2.0 * dl + 2.0 * RHO * y->rmax * sqrt_h))
            return -1.0;
        const double dsc = 0.25 * dl;
        for (int64_t sl = 0; sl < k; sl++) {
            const int64_t ts = tt * k + sl;
            const int32_t e = y->idx[ts];
            /* input s n moves by ds n + (s + ds) dn, |n| <= sqrt(H): first
             * order ds |W_down J n| + (s + ds) |W_down J| |dn| */
            const double din = (y->score[ts] + dsc) * dn + dsc * sqrt_h;
            const double je = jac_norm(y->e_jac_down[ts], y->ed[e], y->e_jac[ts]);
            const double first = dsc * y->e_along[ts] + (y->score[ts] + dsc) * je * dn;
            branch += swiglu_change(din, first < je * din ? first : je * din, y->eg[e], y->eu[e],
                                    y->ed[e], y->e_silu[ts], y->e_up[ts]);
            if (rem) {
                /* the expert's input s(a) a moves by ds a + s da + ds da; its
                 * first order (s'(z) dz) a + s J_a dx leaves the sigmoid's
                 * remainder (|s''| <= 0.0962), ds da, and the norm's
                 * remainder through both (|a| <= sqrt(H), |s'| <= 1/4) */
                const double lin_err = 0.0481 * dl * dl * sqrt_h + dsc * dn +
                                       0.25 * y->rmax * ra * sqrt_h + y->score[ts] * ra;
                r +=
                    je * lin_err + swiglu_remainder(din, y->eg[e], y->eu[e], y->ed[e], y->e_up[ts]);
            }
        }
    }
    if (rem)
        *rem = r * STAT_SLACK + slack(b, s, tt);
    return d + branch * STAT_SLACK + slack(b, s, tt);
}

/* FFN stage s of layer L over positions 0..n-1; INFINITY where the change
 * is not bounded (it was not, or the routing might change). */
static void bound_ffn_stage(const pvf_model *m, const l4_bound *b, int s, int64_t L, int64_t seq,
                            int64_t n, const double *d, double *out) {
    const int64_t t0 = seq * b->T;
    for (int64_t t = 0; t < n; t++) {
        out[t] = d[t];
        if (d[t] == 0.0 || d[t] == INFINITY)
            continue;
        if ((out[t] = ffn_token_bound(m, b, s, L, t0 + t, d[t], NULL)) < 0.0)
            out[t] = INFINITY;
    }
}

int l4_bound_head_clears(const l4_bound *b, const pvf_model *m, int64_t token, double d) {
    const llama4 *l = m->arch_state;
    if (token % b->T < l->scored_from || d == 0.0)
        return 1;
    if (!(d < 1e30)) /* NaN, Inf or overflow: the exact way */
        return 0;
    return norm_change(d, b->h_rms[token], l->c.hidden) < (double)b->mu[token];
}

int64_t l4_bound_work(const pvf_model *m) {
    const llama4 *l = m->arch_state;
    return l->T * (2 + 4 * l->c.heads + 2 * l->c.kv_heads); /* w0..wd: 5 T heads floats */
}

int64_t l4_bound_needed(const l4_bound *b, const pvf_model *m, int s, int64_t seq, int64_t n,
                        double *d, double *work) {
    const int64_t T = b->T;
    for (int64_t t = 0; t < n; t++)
        if (!(d[t] >= 0.0 && d[t] < 1e30)) /* NaN, Inf or overflow: not bounded */
            d[t] = INFINITY;
    for (int st = s; st < m->nstages - 1; st++) {
        if (l4_bound_stage(b, m, st, seq, n, d, work))
            return n;
        /* A stage only adds to d: once the last position cannot clear, the
         * answer is n whatever the later stages add. Not taken before the
         * token by token stages, whose per-position bounds the caller uses
         * (l4_bound_head_clears on d). */
        if (n > 0 && !l4_bound_tokenwise(m, st + 1) &&
            !l4_bound_head_clears(b, m, seq * T + n - 1, d[n - 1])) {
            for (int64_t t = 0; t < n; t++)
                d[t] = INFINITY;
            return n;
        }
    }
    int64_t needed = 0; /* one past the last position not cleared */
    for (int64_t t = 0; t < n; t++)
        if (d[t] == INFINITY || !l4_bound_head_clears(b, m, seq * T + t, d[t]))
            needed = t + 1;
    return needed;
}

int l4_bound_stage(const l4_bound *b, const pvf_model *m, int s, int64_t seq, int64_t n, double *d,
                   double *work) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t T = b->T;
    if (s < 1 || s >= m->nstages - 1)
        return -1;
    double *next = work, *dq = next + T, *dk = dq + T * c->heads, *dv = dk + T * c->kv_heads;
    float *w0 = (float *)(void *)(dv + T * c->kv_heads); /* doubles' room: enough floats */
    float *w1 = w0 + T * c->heads, *w2 = w1 + T * c->heads, *wv = w2 + T * c->heads;
    float *wd = wv + T * c->heads;
    for (int64_t t = 0; t < n; t++)
        if (!(d[t] >= 0.0 && d[t] < 1e30)) /* NaN, Inf or overflow: not bounded */
            d[t] = INFINITY;
    const int64_t L = m->stages[s].layer;
    if (s == m->params[l->layer[L].q].stage)
        bound_attn(m, b, s, L, seq, n, d, next, dq, dk, dv, w0, w1, w2, wv, wd);
    else
        bound_ffn_stage(m, b, s, L, seq, n, d, next);
    for (int64_t t = 0; t < n; t++)
        d[t] = next[t] < 1e30 ? next[t] : INFINITY; /* NaN or overflow: not bounded */
    return 0;
}

int l4_bound_clears(const l4_bound *b, const pvf_model *m, int s, int64_t seq, double *d,
                    double *work) {
    return l4_bound_needed(b, m, s, seq, b->T, d, work) == 0;
}

int l4_bound_tokenwise(const pvf_model *m, int s) {
    const llama4 *l = m->arch_state;
    for (int st = s; st < m->nstages - 1; st++) {
        const int64_t L = m->stages[st].layer;
        if (L < 0 || st == m->params[l->layer[L].q].stage)
            return 0;
    }
    return 1;
}

int l4_bound_token_clears(const l4_bound *b, const pvf_model *m, int s, int64_t token, double d) {
    if (!(d >= 0.0 && d < 1e30)) /* NaN, Inf or overflow: the exact way */
        return 0;
    for (int st = s; st < m->nstages - 1 && d > 0.0; st++) {
        d = ffn_token_bound(m, b, st, m->stages[st].layer, token, d, NULL);
        if (!(d >= 0.0 && d < 1e30))
            return 0;
    }
    return l4_bound_head_clears(b, m, token, d);
}

/* ---- second-order remainders, for the linearized bound (llama4_linear.c) ---- */

double l4_norm_remainder(double d, double rms, int64_t dim) {
    if (d == 0.0)
        return 0.0;
    /* a(x) = x / r(x), r = sqrt(|x|^2 / dim + eps) >= |x| / sqrt(dim):
     * |D2 a[u, u]| <= (2 + 1 + 3) |u|^2 / (sqrt(dim) r^2) along the segment,
     * where r >= rms - d / sqrt(dim) (r is 1/sqrt(dim)-Lipschitz) */
    const double low = rms - d / sqrt((double)dim);
    if (!(low > 0.0))
        return INFINITY;
    return 3.0 * d * d / (sqrt((double)dim) * low * low) * (1.0 + 1e-6);
}

double l4_bound_ffn_held(const l4_bound *b, const pvf_model *m, int s, int64_t tt, double d,
                         double *rem) {
    *rem = 0.0;
    return d == 0.0 ? 0.0 : ffn_token_bound(m, b, s, m->stages[s].layer, tt, d, rem);
}

double l4_bound_attn_remainder(const l4_bound *b, const pvf_model *m, int s, int64_t seq, int64_t q,
                               const double *d) {
    const llama4 *l = m->arch_state;
    const l4_config *c = &l->c;
    const int64_t L = m->stages[s].layer, H = c->hidden, T = b->T;
    const int64_t nh = c->heads, nkv = c->kv_heads, group = nh / nkv, t0 = seq * T;
    const bound_layer *y = &b->layer[L];
    if (c->rope[L] && c->qk_norm)
        return INFINITY; /* QK-norm's own second order is not worked out */
    const int64_t chunk = c->rope[L] ? c->chunk : 0, lo = chunk > 0 ? q / chunk * chunk : 0;
    const double scale = 1.0 / sqrt((double)c->head_dim);
    const double temp = !c->rope[L] && c->temp_tuning
                            ? (double)pvf_attn_temperature(q, c->floor_scale, (float)c->attn_scale)
                            : 1.0;
    for (int64_t j = lo; j <= q; j++)
        if (!(d[j] < 1e30))
            return INFINITY;
    const double daq = norm_change(d[q], y->a_rms[t0 + q], H);
    const double raq = l4_norm_remainder(d[q], y->a_rms[t0 + q], H);
    double sum2 = 0.0;
    for (int64_t h = 0; h < nh; h++) {
        const int64_t kh = h / group;
        const double dq = temp * y->sq[h] * daq, rq = temp * y->sq[h] * raq;
        const double qn = y->qn[(t0 + q) * nh + h];
        /* o = sum p_j v_j along the straight path in (q, k, v): |o''| <=
         * (2 E^2 + 2 S2)(max|v_j - o| + max|dv|) + 4 E max|dv|, E >= every
         * |ds_j/du|, S2 >= every |d2 s_j/du2| = 2 scale |dq.dk_j|; and the
         * norm's remainders (rq, rk_j, rv_j) through the first order */
        double e = 0.0, dkmax = 0.0, dvmax = 0.0, erem = 0.0, rvmax = 0.0;
        for (int64_t j = lo; j <= q; j++) {
            const double da = d[j] > 0.0 ? norm_change(d[j], y->a_rms[t0 + j], H) : 0.0;
            const double ra = d[j] > 0.0 ? l4_norm_remainder(d[j], y->a_rms[t0 + j], H) : 0.0;
            const double dk = y->sk[kh] * da, dv = y->sv[kh] * da;
            const double kn = y->kn[(t0 + j) * nkv + kh];
            e = fmax(e, dq * (kn + dk) + (qn + dq) * dk);
            erem = fmax(erem, rq * kn + qn * y->sk[kh] * ra);
            dkmax = fmax(dkmax, dk);
            dvmax = fmax(dvmax, dv);
            rvmax = fmax(rvmax, y->sv[kh] * ra);
        }
        e *= scale;
        erem *= scale;
        const double s2 = 2.0 * scale * dq * dkmax, vdev = y->vdev[(t0 + q) * nh + h];
        const double r =
            (e * e + s2) * (vdev + dvmax) + 2.0 * e * dvmax + rvmax + 2.0 * erem * vdev;
        sum2 += r * r;
    }
    const double r = y->so * sqrt(sum2) * STAT_SLACK + slack(b, s, t0 + q);
    return r < 1e30 ? r : INFINITY;
}

double l4_bound_head_rms(const l4_bound *b, int64_t token) {
    return b->h_rms[token];
}

double l4_bound_ffn_rms(const l4_bound *b, const pvf_model *m, int s, int64_t token) {
    return b->layer[m->stages[s].layer].f_rms[token];
}

double l4_bound_router_rmax(const l4_bound *b, const pvf_model *m, int s) {
    return b->layer[m->stages[s].layer].rmax;
}

double l4_bound_head_margin(const pvf_model *m, const pvf_golden *g, int64_t token, int64_t v,
                            double *rownorm) {
    const llama4 *l = m->arch_state;
    const int64_t H = l->c.hidden, V = l->c.vocab, top = g->top1[token];
    const float *w = m->params[l->norm].value, *W = m->params[l->lm_head].value;
    const float *lg = g->out + token * V;
    double ss = 0.0, tt = 0.0, vv = 0.0;
    for (int64_t j = 0; j < H; j++) {
        const double a = (double)W[top * H + j] * w[j], bv = (double)W[v * H + j] * w[j];
        ss += (a - bv) * (a - bv);
        tt += a * a;
        vv += bv * bv;
    }
    *rownorm = sqrt(ss) * (1.0 + 1e-9);
    return head_gap(lg[top], lg[v], sqrt(tt), sqrt(vv), H);
}

double l4_bound_router_slack(const l4_bound *b, const pvf_model *m, int s) {
    const llama4 *l = m->arch_state;
    return 2.0 * RHO * b->layer[m->stages[s].layer].rmax * sqrt((double)l->c.hidden);
}
