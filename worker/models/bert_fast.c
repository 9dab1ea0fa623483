/* bert_fast.c - BERT's fast trial path (fast.h): a trial computes only what
 * its fault changes.
 *
 * - A word-embedding row (or token-type row) is read only by the sequences
 *   that hold its token (at any position: padded positions are computed too,
 *   and a NaN there reaches every query through 0 x NaN): an unread row
 *   settles with no inference; a read one considers those sequences alone.
 * - Sound bounds (below) settle each candidate sequence whose change cannot
 *   reach its golden top-1 margin, with no inference. Every bound of the
 *   chain grows with its input, so each sequence's largest settling change
 *   at each layer input is found once by bisection (settle_thresholds): a
 *   check costs the faulty layer's own bound and one comparison. The last
 *   layer's [CLS] attention is bounded with its golden directions and
 *   weights, the head also linearized at the golden [CLS] row; a query, key
 *   or value fault changes one feature, bounded token by token with the
 *   golden attention spread (qk_token_inject) or through one column of Wo.
 * - From the last layer's [CLS] first LayerNorm input on, the path to the
 *   margins is also bounded linearized at golden (cls_moved): each margin's
 *   gradient there, bounds on the path's Jacobians, and second-order
 *   remainders; the largest change there it settles is found once
 *   (settle_dz), and every bound that reaches the last layer checks it.
 * - A change that reaches the last layer's input is bounded there row by
 *   row where each token's change is known (row_changes): the [CLS] row's
 *   own change drives its query and residual, each key's its score, and the
 *   values count with their golden [CLS] attention; a fault in the layer
 *   before, in its attention output or feed-forward part, is bounded from
 *   each token's own cached activations (token_rows_settle).
 * - A huge fault in a layer's value projection, attention output or
 *   feed-forward part settles a sequence as non-finite as soon as one
 *   unmasked token's LayerNorm input provably overflows (drop_poisoned,
 *   value_poisoned): its NaN reaches every logit.
 * - The sequences left run exactly. A fault whose values stay moderate
 *   (PADDED_SAFE) cannot make a padded token non-finite, so padded keys keep
 *   their softmax weight of exactly 0: those sequences run over their
 *   unmasked tokens alone, a fault in a layer starting from that layer's
 *   cached golden activations at those tokens (queries, keys, values,
 *   context, LayerNorm inputs, feed-forward activations: the faulty row's
 *   dot products, then what follows), and a sequence drops out once its
 *   layer input is golden again or bounded. So do the sequences of a huge
 *   query or key fault (an exponent flip) whose every score provably stays
 *   far from overflow (qk_scores_finite): padded keys keep weight 0 there
 *   too. Other faults run every token of those sequences from the faulty
 *   stage.
 * - In such a run, a query, key, value or attention-output fault (and an
 *   embedding fault, from the changed tokens' recomputed queries, keys and
 *   values) computes the first LayerNorm's input exactly, which is cheap, and
 *   settles the sequence when its measured change, through the bound of the
 *   rest of the layer, settles it (settles_at_ln1); the others, and a first
 *   feed-forward fault, settle from their exact GELU changes (per token:
 *   the second matrix's norm and LayerNorm's own golden scale), before the
 *   second feed-forward product and the next layer (settles_at_ffn). A
 *   moderate position-embedding fault considers only the sequences with an
 *   unmasked token at its position.
 * - A moderate word, position or token-type row fault that changes one
 *   unmasked token of a sequence is bounded token by token through the
 *   first layer's attention (one_token_bound, in O(hidden) per sequence:
 *   the other queries see one key and value move, weighted by their golden
 *   attention on it), then, in the exact run, with that token's own new
 *   attention computed (one_token_settles) before every query's.
 * - The last encoder layer feeds the pooler only its [CLS] row, which needs
 *   the keys and values of every token: those are cached from the golden
 *   pass, so a fault in that layer recomputes the [CLS] path alone (a key or
 *   value fault first recomputes its changed features of the cached keys or
 *   values, exactly, by their faulty dot products).
 * - Pooler and classifier faults run every sequence from their (cheap) stage. */
#include "bert_internal.h"
#include "fast.h"
#include "kernels.h"
#include "kernels_nn.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds on the golden weights' norms in one encoder layer: spectral
 * norms of the query/key/value rows of each head, of the attention output,
 * of both feed-forward matrices; max |LayerNorm weight|; the L2 norm of each
 * column of the second feed-forward matrix. */
typedef struct layer_norms {
    double *q, *k, *v; /* [heads] */
    double *ov;        /* [heads] the attention output's columns of a head times its value rows */
    double o, ff1, ff2, ln1, ln2;
    double ffn_ln1;     /* see ffn_tail_norm */
    double ffn_plain;   /* likewise per unit change of the first LayerNorm's output */
    double *ff2_col;    /* [intermediate] */
    double *o_col;      /* [hidden] the L2 norm of each column of the attention output */
    double *ff2_row_l1; /* [hidden] the L1 norm of each row of the second feed-forward matrix */
    double ff1_row, ff2_col_max; /* the largest L2 norm of a row of W1, of a column of W2 */
    /* [heads, hidden] the L2 norm of each column of a head's query rows,
     * key rows, and of its Wo_hd Wv_hd (see one_token_bound) */
    double *q_col, *k_col, *ov_col;
} layer_norms;

/* Per (layer, sequence) golden statistics: the largest query norm and the
 * largest distance of a key and of a value to their mean, per head (the last
 * layer: the [CLS] query, unmasked keys and values; earlier layers: every
 * token), the smallest LayerNorm scale sqrt(var + eps)
 * of each LayerNorm over the same rows, and per feature the largest
 * magnitude over all tokens of: the layer input, the attention context, the
 * normalized LayerNorm inputs, the first LayerNorm's output, the query,
 * the key, the key less its mean over the keys (the keys and queries that
 * attention uses: as for the per-head figures), half the range of the key
 * over the unmasked tokens, the GELU output. */
/* blocks of h floats, ST_INTER: intermediate floats */
enum { ST_X, ST_CTX, ST_U1, ST_A, ST_U2, ST_Q, ST_K, ST_KC, ST_KR, ST_INTER };
#define FEAT_FLOATS(b) (ST_INTER * (b)->hidden + (b)->inter)

/* cls_grad per sequence and label k: the L2 norms of the gradient of the
 * margin (logit k less the top one) with respect to the last layer's
 * [CLS] first LayerNorm input, its output, the layer's output; the largest
 * magnitude of the second feed-forward matrix's transpose times the
 * gradient at its output; cls_linearize's rounding term and the two factors
 * of its quadratic term (head_settles and cls_moved read them). */
enum { CG_Z, CG_A, CG_Y, CG_W2, CG_E0, CG_QR, CG_QC, CLS_GRAD };
#define CLS_SQUARINGS 3 /* cls_jacobians' bounds: within h^(1/16) of the norms */

typedef struct bert_fast {
    int64_t n, s; /* sequences, tokens per sequence */
    /* Bound data (see above): per layer and sequence */
    layer_norms *norms; /* [layers] */
    float *qkv_max;     /* [layers, n, 3, heads] */
    /* The last layer's [CLS] attention per sequence and head (see layer_bound):
     * max over unmasked keys of |Wq_hd^T (k_t - kbar)|, |Wk_hd^T q_hd|, and
     * sum_t p_t |Wo_hd (v_t - ctx_hd)| with the golden attention weights p. */
    float *cls_att; /* [n, heads, 3] */
    /* likewise per unmasked key t and head, each a little above itself: the
     * golden attention weight p_t of the [CLS] query, |Wo_hd (v_t - ctx_hd)|
     * and |Wq_hd^T (k_t - kbar)| [R, heads, 3] (see row_changes) */
    float *cls_tok;
    double *settle_dx; /* [layers + 1, n]: see settle_thresholds */
    /* The last layer's [CLS] path linearized at its golden first LayerNorm
     * input cls_z [n, h]: per sequence and label the norms of the margin's
     * gradients (cls_gradient) [n, labels, CLS_GRAD], and the largest
     * change of that input the linearized bound settles (settle_dz [n],
     * -1: none; see cls_settles). */
    float *cls_z;
    double *cls_grad, *settle_dz;
    /* per sequence: cls_jacobians' bounds [n, 3]; the pooler's spectral norm */
    double *cls_jac, pool_norm;
    float *ln_scale;  /* [layers, n, 2] */
    float *feat_max;  /* [layers, n, 5 h + inter] */
    float *emb_scale; /* [n, s] embedding LayerNorm scale of each token */
    int64_t *tokens;  /* [n, s] input_ids, then token_type_ids (all 0 without them) */
    float *emb_u_max; /* [n, h] largest |normalized embedding| per feature */
    double emb_ln;    /* max |embedding LayerNorm weight| */
    double *pool_row; /* [h] L2 norm of each pooler row */
    /* Readers of each word-embedding row: sequences word_rows[word_start[w]
     * .. word_start[w + 1]), ascending; likewise for token-type rows. */
    int64_t *word_start, *word_rows;
    int64_t *type_start, *type_rows;
    /* likewise the sequences whose token at position p is unmasked */
    int64_t *pos_start, *pos_rows;
    int64_t *all_rows; /* 0..n-1 */
    /* The last encoder layer's golden keys and values [n, s, hidden] and
     * the additive attention mask [n, s]. */
    float *keys, *values, *mask_add;
    int64_t layers, hidden;
    /* The unmasked tokens of each sequence: real_tok[real_start[i] ..
     * real_start[i + 1]), ascending. */
    int64_t *real_start, *real_tok;
    /* Every sequence's first token ([CLS]) is unmasked: padded keys weigh 0
     * (otherwise a fully masked row would weigh them all alike), and the
     * unmasked-token paths and the last layer's key/value statistics hold. */
    int cls_real;
    /* Golden feed-forward activations of the layers before the last at the
     * unmasked tokens (row real_start[i] + u of layer li's block): the first
     * LayerNorm's output [h], the GELU output [inter], the second LayerNorm's
     * input [h]. */
    float *ffn_a, *ffn_inter, *ffn_r;
    /* likewise: the second LayerNorm's golden scale sqrt(var + eps), less
     * its rounding */
    float *ffn_scale;
    float *att_ctx, *att_z;       /* likewise: the attention context, the first LayerNorm's input */
    float *att_q, *att_k, *att_v; /* likewise: the query, key and value */
    /* likewise per head: sum_t p_t |Wo_hd (v_t - ctx_hd)| over the unmasked
     * keys t, with the token's golden attention weights p [heads] */
    float *att_spread;
    /* the first layer's golden log-sum-exp of each unmasked query's scores
     * over the unmasked keys, per head [R, heads] (see one_token_settles) */
    float *att_lse;
    /* the first layer's attention received by each unmasked token t, per
     * head: max over the unmasked queries u of P_ut and of
     * P_ut |Wo_hd (v_t - ctx_u)|, golden [R, heads, 2] (see one_token_bound) */
    float *att_recv;
    /* the first layer per sequence, head and input feature c: max over the
     * unmasked queries u of |(Wk_hd^T q_u)_c| and over the unmasked keys t
     * of |(Wq_hd^T (k_t - kbar))_c|, golden [n, heads, 2, h] (see
     * one_token_bound) */
    float *att_cols;
    int64_t layer_width; /* floats per sequence of an encoder layer's input */
} bert_fast;

void pvf_bert_fast_free(void *state) {
    bert_fast *f = state;
    if (!f)
        return;
    free(f->word_start);
    free(f->word_rows);
    free(f->type_start);
    free(f->type_rows);
    free(f->pos_start);
    free(f->pos_rows);
    free(f->all_rows);
    free(f->keys);
    free(f->values);
    free(f->mask_add);
    for (int64_t l = 0; f->norms && l < f->layers; l++) {
        free(f->norms[l].q);
        free(f->norms[l].k);
        free(f->norms[l].v);
        free(f->norms[l].ov);
        free(f->norms[l].ff2_col);
        free(f->norms[l].o_col);
        free(f->norms[l].ff2_row_l1);
        free(f->norms[l].q_col);
        free(f->norms[l].k_col);
        free(f->norms[l].ov_col);
    }
    free(f->norms);
    free(f->qkv_max);
    free(f->cls_att);
    free(f->cls_tok);
    free(f->settle_dx);
    free(f->cls_z);
    free(f->cls_grad);
    free(f->cls_jac);
    free(f->settle_dz);
    free(f->ln_scale);
    free(f->feat_max);
    free(f->emb_scale);
    free(f->tokens);
    free(f->real_start);
    free(f->real_tok);
    free(f->ffn_a);
    free(f->ffn_inter);
    free(f->ffn_r);
    free(f->ffn_scale);
    free(f->att_ctx);
    free(f->att_z);
    free(f->att_q);
    free(f->att_k);
    free(f->att_v);
    free(f->att_spread);
    free(f->att_lse);
    free(f->att_recv);
    free(f->att_cols);
    free(f->emb_u_max);
    free(f->pool_row);
    free(f);
}

/* CSR of the distinct sequences that read each of `nrows` table rows, from
 * the token tensor t [n, s] (NULL: every token reads row 0). */
static int build_readers(const pvf_tensor *t, int64_t n, int64_t s, int64_t nrows,
                         int64_t **start_out, int64_t **rows_out) {
    int64_t *start = calloc((size_t)nrows + 1, sizeof *start);
    int64_t *last = malloc((size_t)nrows * sizeof *last); /* last sequence counted per row */
    int64_t *rows = NULL;
    if (!start || !last)
        goto fail;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t w = 0; w < nrows; w++)
            last[w] = -1;
        for (int64_t i = 0; i < n; i++)
            for (int64_t p = 0; p < s; p++) {
                int64_t w = t ? pvf_tensor_get_i64(t, i * s + p) : 0;
                if (last[w] == i)
                    continue;
                last[w] = i;
                if (pass == 0)
                    start[w + 1]++;
                else
                    rows[start[w]++] = i;
            }
        if (pass == 0) {
            for (int64_t w = 0; w < nrows; w++)
                start[w + 1] += start[w];
            rows = malloc((size_t)(start[nrows] > 0 ? start[nrows] : 1) * sizeof *rows);
            if (!rows)
                goto fail;
        } else { /* start[w] advanced to start[w + 1]: shift back */
            for (int64_t w = nrows; w > 0; w--)
                start[w] = start[w - 1];
            start[0] = 0;
        }
    }
    free(last);
    *start_out = start;
    *rows_out = rows;
    return 0;
fail:
    free(start);
    free(last);
    free(rows);
    return -1;
}

/* pos_start/pos_rows: for each of the npos position rows, the sequences
 * whose token at that position is unmasked (ascending). */
static int position_readers(bert_fast *f, int64_t npos) {
    f->pos_start = calloc((size_t)npos + 1, sizeof *f->pos_start);
    f->pos_rows =
        malloc((size_t)(f->real_start[f->n] > 0 ? f->real_start[f->n] : 1) * sizeof *f->pos_rows);
    if (!f->pos_start || !f->pos_rows)
        return -1;
    for (int64_t u = 0; u < f->real_start[f->n]; u++)
        if (f->real_tok[u] < npos)
            f->pos_start[f->real_tok[u] + 1]++;
    for (int64_t p = 0; p < npos; p++)
        f->pos_start[p + 1] += f->pos_start[p];
    int64_t *next = malloc((size_t)(npos > 0 ? npos : 1) * sizeof *next);
    if (!next)
        return -1;
    memcpy(next, f->pos_start, (size_t)npos * sizeof *next);
    for (int64_t i = 0; i < f->n; i++) /* ascending sequences per position */
        for (int64_t u = f->real_start[i]; u < f->real_start[i + 1]; u++)
            if (f->real_tok[u] < npos)
                f->pos_rows[next[f->real_tok[u]]++] = i;
    free(next);
    return 0;
}

/* ---- Sound bounds ------------------------------------------------------
 *
 * A fault's change is followed as an upper bound on the L2 norm of the
 * change of every token's row (one bound for all tokens of a sequence),
 * through each later operation, from the golden statistics above:
 *   linear map: times an upper bound of its spectral norm;
 *   attention: softmax ignores a shift common to a query's scores, so with
 *     keys and values centred on their mean (radii |k - kbar|, |v - vbar|) the
 *     scores move by eps = (dq |k - kbar| + |q| dk + dq dk) / sqrt(d) beyond
 *     a common shift, every softmax weight by at most a factor e^{+-2 eps},
 *     and the context (sum of weight changes times v - vbar, plus the weighted
 *     value changes) by at most (e^{2 eps} - 1) max |v - vbar| + dv;
 *   LayerNorm with golden scale sigma = sqrt(var + eps): its Jacobian at a
 *     row of scale sigma' has norm <= 1 / sigma' (a projection over sigma'),
 *     and the scale is 1/sqrt(H)-Lipschitz in the row, so the normalized row
 *     moves by at most dz / (sigma - dz / sqrt(H)), then times max |weight|;
 *     no bound when sigma - dz / sqrt(H) <= 0;
 *   GELU (erf): 1.13-Lipschitz (its derivative lies in [-0.13, 1.129]);
 *   tanh: |d tanh| <= |dz| max sech^2 over [z - dz, z + dz], and <= 2;
 *   classifier: |d logit_c| <= sum_i |C_ci| |d pooled_i|.
 * A sequence settles when, for every class c, the golden top-1 logit minus
 * logit c exceeds the two logits' bounds plus a rounding slack. Changes are
 * differences of exact fp32 values, so the bound is on the exact-arithmetic
 * change; the slack covers both fp32 forward passes' rounding. A non-finite
 * change gives an infinite bound: never settled. */

#define GELU_LIPSCHITZ 1.13
#define BOUND_INFLATE  1.001 /* rounding of the bound's own arithmetic */

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

/* A bound on the norm of the feed-forward part's change (with its residual)
 * per unit change of the first LayerNorm's normalized row: the output moves
 * by (I + W2 D W1) diag(g) dn, g the LayerNorm weight (NULL: per unit change
 * of the LayerNorm's output, g = 1), D diagonal with GELU's
 * secant slopes in [-0.13, 1.13] = 0.5 + 0.63 [-1, 1], so by at most
 * (|(I + 0.5 W2 W1) diag(g)| + 0.63 |W2| |W1 diag(g)|) |dn| (spectral
 * norms). The product is formed in double and stored in float: its rounding
 * is relative 2^-24 per entry, at most 1.2e-7 times its Frobenius norm
 * (times max |g|) in spectral norm. -1 when out of memory. */
static double ffn_tail_norm(const pvf_model *m, const bert *b, const int *p, double ff2,
                            const float *g) {
    const int64_t h = b->hidden, ni = b->inter;
    const float *w1 = m->params[p[FF1]].value, *w2 = m->params[p[FF2]].value;
    float *a = malloc((size_t)(h * h) * sizeof *a);
    double *row = malloc((size_t)h * sizeof *row);
    if (!a || !row) {
        free(a);
        free(row);
        return -1;
    }
    double fro = 0;
    for (int64_t r = 0; r < h; r++) {
        for (int64_t c = 0; c < h; c++)
            row[c] = r == c ? 1.0 : 0.0;
        for (int64_t k = 0; k < ni; k++) {
            const double w = 0.5 * (double)w2[r * ni + k];
            for (int64_t c = 0; c < h; c++)
                row[c] += w * w1[k * h + c];
        }
        for (int64_t c = 0; c < h; c++) {
            a[r * h + c] = (float)row[c];
            fro += row[c] * row[c];
        }
    }
    free(row);
    const double gmax = g ? max_abs(g, h) : 1.0;
    const double lin = pvf_fast_spectral_bound(a, h, 0, h, g);
    const double gated = pvf_fast_spectral_bound(w1, h, 0, ni, g);
    free(a);
    if (lin < 0 || gated < 0)
        return -1;
    return ((lin + sqrt(fro) * gmax * 1.2e-7) + 0.63 * ff2 * gated) * 1.0001;
}

/* The L2 norm of each column of rows r0..r0+nr of w[*, cols], inflated for
 * its rounding, into out[cols]. */
static void col_norms(const float *w, int64_t cols, int64_t r0, int64_t nr, double *out) {
    for (int64_t c = 0; c < cols; c++) {
        double acc = 0;
        for (int64_t r = r0; r < r0 + nr; r++)
            acc += (double)w[r * cols + c] * w[r * cols + c];
        out[c] = sqrt(acc) * 1.0001;
    }
}

static int layer_norms_init(layer_norms *L, const pvf_model *m, const bert *b, int li) {
    const int *p = b->lp[li];
    const int64_t h = b->hidden, d = h / b->heads;
    L->q = malloc((size_t)b->heads * sizeof *L->q);
    L->k = malloc((size_t)b->heads * sizeof *L->k);
    L->v = malloc((size_t)b->heads * sizeof *L->v);
    L->ov = malloc((size_t)b->heads * sizeof *L->ov);
    L->ff2_col = malloc((size_t)b->inter * sizeof *L->ff2_col);
    L->o_col = malloc((size_t)h * sizeof *L->o_col);
    L->ff2_row_l1 = malloc((size_t)h * sizeof *L->ff2_row_l1);
    L->q_col = malloc((size_t)(b->heads * h) * sizeof *L->q_col);
    L->k_col = malloc((size_t)(b->heads * h) * sizeof *L->k_col);
    L->ov_col = malloc((size_t)(b->heads * h) * sizeof *L->ov_col);
    float *prod = malloc((size_t)(h * h) * sizeof *prod);
    if (!L->q || !L->k || !L->v || !L->ov || !L->ff2_col || !L->o_col || !L->ff2_row_l1 ||
        !L->q_col || !L->k_col || !L->ov_col || !prod) {
        free(prod);
        return -1;
    }
    const float *wo = m->params[p[O]].value, *wv = m->params[p[V]].value;
    for (int64_t c = 0; c < h; c++) {
        double acc = 0;
        for (int64_t r = 0; r < h; r++)
            acc += (double)wo[r * h + c] * wo[r * h + c];
        L->o_col[c] = sqrt(acc) * 1.0001;
    }
    for (int64_t hd = 0; hd < b->heads; hd++) { /* Wo[:, head] Wv[head, :], in double */
        for (int64_t r = 0; r < h; r++)
            for (int64_t c = 0; c < h; c++) {
                double acc = 0;
                for (int64_t e = 0; e < d; e++)
                    acc += (double)wo[r * h + hd * d + e] * wv[(hd * d + e) * h + c];
                prod[r * h + c] = (float)acc;
            }
        /* the float rounding of the product: relative 2^-24 per entry, so
         * at most 2^-24 times its Frobenius norm in spectral norm */
        double fro = 0;
        for (int64_t e = 0; e < h * h; e++)
            fro += (double)prod[e] * prod[e];
        L->ov[hd] = pvf_fast_spectral_bound(prod, h, 0, h, NULL);
        if (L->ov[hd] < 0) {
            free(prod);
            return -1;
        }
        L->ov[hd] += sqrt(fro) * 1.2e-7;
        /* its columns (their float rounding: relative 2^-24) */
        col_norms(prod, h, 0, h, L->ov_col + hd * h);
        col_norms(m->params[p[Q]].value, h, hd * d, d, L->q_col + hd * h);
        col_norms(m->params[p[K]].value, h, hd * d, d, L->k_col + hd * h);
    }
    free(prod);
    for (int64_t hd = 0; hd < b->heads; hd++) {
        L->q[hd] = pvf_fast_spectral_bound(m->params[p[Q]].value, h, hd * d, d, NULL);
        L->k[hd] = pvf_fast_spectral_bound(m->params[p[K]].value, h, hd * d, d, NULL);
        L->v[hd] = pvf_fast_spectral_bound(m->params[p[V]].value, h, hd * d, d, NULL);
        if (L->q[hd] < 0 || L->k[hd] < 0 || L->v[hd] < 0)
            return -1;
    }
    L->o = pvf_fast_spectral_bound(m->params[p[O]].value, h, 0, h, NULL);
    L->ff1 = pvf_fast_spectral_bound(m->params[p[FF1]].value, h, 0, b->inter, NULL);
    L->ff2 = pvf_fast_spectral_bound(m->params[p[FF2]].value, b->inter, 0, h, NULL);
    if (L->o < 0 || L->ff1 < 0 || L->ff2 < 0)
        return -1;
    L->ln1 = max_abs(m->params[p[LN1_W]].value, h);
    L->ln2 = max_abs(m->params[p[LN2_W]].value, h);
    L->ffn_ln1 = ffn_tail_norm(m, b, p, L->ff2, m->params[p[LN1_W]].value);
    L->ffn_plain = ffn_tail_norm(m, b, p, L->ff2, NULL);
    if (L->ffn_ln1 < 0 || L->ffn_plain < 0)
        return -1;
    /* never looser than the product of the parts' norms */
    L->ffn_ln1 = fmin(L->ffn_ln1, L->ln1 * (1 + L->ff2 * GELU_LIPSCHITZ * L->ff1));
    L->ffn_plain = fmin(L->ffn_plain, 1 + L->ff2 * GELU_LIPSCHITZ * L->ff1);
    const float *w2 = m->params[p[FF2]].value;
    const float *w1 = m->params[p[FF1]].value;
    L->ff1_row = L->ff2_col_max = 0;
    for (int64_t j = 0; j < b->inter; j++) {
        double acc = 0, row = 0;
        for (int64_t i = 0; i < h; i++) {
            acc += (double)w2[i * b->inter + j] * w2[i * b->inter + j];
            row += (double)w1[j * h + i] * w1[j * h + i];
        }
        L->ff2_col[j] = sqrt(acc) * 1.0001;
        L->ff2_col_max = fmax(L->ff2_col_max, L->ff2_col[j]);
        L->ff1_row = fmax(L->ff1_row, sqrt(row) * 1.0001);
    }
    for (int64_t i = 0; i < h; i++) {
        double acc = 0;
        for (int64_t j = 0; j < b->inter; j++)
            acc += fabs((double)w2[i * b->inter + j]);
        L->ff2_row_l1[i] = acc * 1.0001;
    }
    return 0;
}

/* LayerNorm statistics of rows x[rows, h] as pvf_layernorm computes them:
 * the smallest scale sqrt(var + eps) over the rows, and per feature the
 * largest |normalized value| into u_max[h] (maxed in). */
static double ln_stats(const float *x, int64_t rows, int64_t h, float eps, float *u_max) {
    double smallest = INFINITY;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * h;
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < h; j++)
            sum += row[j];
        double mean = sum / (double)h;
        for (int64_t j = 0; j < h; j++)
            sq += (row[j] - mean) * (row[j] - mean);
        double scale = sqrt(sq / (double)h + (double)eps);
        smallest = fmin(smallest, scale);
        if (u_max)
            for (int64_t j = 0; j < h; j++)
                u_max[j] = fmaxf(u_max[j], (float)(fabs(row[j] - mean) / scale));
    }
    return smallest;
}

/* Largest norm over rows r of x[rows, h]'s columns c0..c0+nc-1, less their
 * mean when `centred`, over the rows with mask_add[r] == 0 (NULL: all). */
static float row_block_max(const float *x, int64_t rows, int64_t h, int64_t c0, int64_t nc,
                           const float *mask_add, int centred) {
    double mean[1024] = {0}, m = 0;
    int64_t used = 0;
    if (nc > 1024)
        return INFINITY;
    for (int64_t r = 0; centred && r < rows; r++) {
        if (mask_add && mask_add[r] != 0)
            continue;
        used++;
        for (int64_t j = 0; j < nc; j++)
            mean[j] += x[r * h + c0 + j];
    }
    for (int64_t j = 0; used && j < nc; j++)
        mean[j] /= (double)used;
    for (int64_t r = 0; r < rows; r++) {
        if (mask_add && mask_add[r] != 0)
            continue; /* a padded key: weight 0 */
        double acc = 0;
        for (int64_t j = 0; j < nc; j++) {
            double v = (double)x[r * h + c0 + j] - mean[j];
            acc += v * v;
        }
        m = fmax(m, sqrt(acc));
    }
    return (float)(m * 1.0001);
}

/* Per column of keys k[rows, h], over the rows with mask_add == 0 (NULL:
 * all): the largest magnitude into kmax, the largest distance to the
 * column's mean into kc. */
static void key_columns(const float *k, int64_t rows, int64_t h, const float *mask_add, float *kmax,
                        float *kc) {
    for (int64_t j = 0; j < h; j++) {
        double mean = 0, far = 0, big = 0;
        int64_t used = 0;
        for (int64_t r = 0; r < rows; r++)
            if (!mask_add || mask_add[r] == 0) {
                mean += k[r * h + j];
                used++;
            }
        mean /= (double)(used ? used : 1);
        for (int64_t r = 0; r < rows; r++)
            if (!mask_add || mask_add[r] == 0) {
                far = fmax(far, fabs(k[r * h + j] - mean));
                big = fmax(big, fabs((double)k[r * h + j]));
            }
        kmax[j] = (float)(big * 1.0001);
        kc[j] = (float)(far * 1.0001);
    }
}

/* Half the range of each column of k[rows, h] over the rows with
 * mask_add == 0, inflated for rounding. */
static void key_half_range(const float *k, int64_t rows, int64_t h, const float *mask_add,
                           float *out) {
    for (int64_t j = 0; j < h; j++) {
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t r = 0; r < rows; r++)
            if (mask_add[r] == 0) {
                lo = fmin(lo, k[r * h + j]);
                hi = fmax(hi, k[r * h + j]);
            }
        out[j] = hi >= lo ? (float)((hi - lo) * 0.5 * 1.0001) : 0.0f;
    }
}

/* att_spread of the unmasked tokens of sequence i in layer li (before the
 * last), from its golden queries, keys and values q, k, v [s, h], in double;
 * ws: s h + 2 s + 4 h doubles. */
static void token_spread(const pvf_model *m, const bert *b, bert_fast *f, int li, int64_t i,
                         const float *q, const float *k, const float *v, double *ws) {
    const int64_t h = b->hidden, heads = b->heads, d = h / heads, R = f->real_start[f->n];
    const int64_t base = f->real_start[i], L = f->real_start[i + 1] - base;
    const int64_t *tok = f->real_tok + base;
    const float *wo = m->params[b->lp[li][O]].value;
    double *wv = ws, *prob = wv + L * h, *wc = prob + L;
    float *recv = li == 0 ? f->att_recv + base * heads * 2 : NULL;
    if (recv)
        memset(recv, 0, (size_t)(L * heads * 2) * sizeof *recv);
    for (int64_t hd = 0; hd < heads; hd++) {
        const int64_t o0 = hd * d;
        for (int64_t t = 0; t < L; t++) /* Wo_hd v_t */
            for (int64_t r = 0; r < h; r++) {
                double acc = 0;
                for (int64_t e = 0; e < d; e++)
                    acc += (double)wo[r * h + o0 + e] * v[tok[t] * h + o0 + e];
                wv[t * h + r] = acc;
            }
        for (int64_t u = 0; u < L; u++) {
            double top = -INFINITY, sum = 0;
            for (int64_t t = 0; t < L; t++) {
                double acc = 0;
                for (int64_t e = 0; e < d; e++)
                    acc += (double)q[tok[u] * h + o0 + e] * k[tok[t] * h + o0 + e];
                prob[t] = acc / sqrt((double)d);
                top = fmax(top, prob[t]);
            }
            for (int64_t t = 0; t < L; t++) {
                prob[t] = exp(prob[t] - top);
                sum += prob[t];
            }
            for (int64_t r = 0; r < h; r++)
                wc[r] = 0;
            for (int64_t t = 0; t < L; t++) {
                prob[t] /= sum;
                for (int64_t r = 0; r < h; r++)
                    wc[r] += prob[t] * wv[t * h + r];
            }
            double spread = 0;
            for (int64_t t = 0; t < L; t++) {
                double sq = 0;
                for (int64_t r = 0; r < h; r++)
                    sq += (wv[t * h + r] - wc[r]) * (wv[t * h + r] - wc[r]);
                spread += prob[t] * sqrt(sq);
                if (recv) {
                    float *rt = recv + (t * heads + hd) * 2;
                    rt[0] = fmaxf(rt[0], (float)(prob[t] * 1.001));
                    rt[1] = fmaxf(rt[1], (float)(prob[t] * sqrt(sq) * 1.001));
                }
            }
            f->att_spread[(li * R + base + u) * heads + hd] = (float)(spread * 1.001);
            if (li == 0)
                f->att_lse[(base + u) * heads + hd] = (float)(top + log(sum));
        }
    }
}

/* att_cols of sequence i from its first layer's golden queries and keys
 * q, k [s, h], in double; ws: h doubles. */
static void att_columns(const pvf_model *m, const bert *b, bert_fast *f, int64_t i, const float *q,
                        const float *k, double *ws) {
    const int64_t h = b->hidden, heads = b->heads, d = h / heads;
    const int64_t base = f->real_start[i], L = f->real_start[i + 1] - base;
    const int64_t *tok = f->real_tok + base;
    const float *wq = m->params[b->lp[0][Q]].value, *wk = m->params[b->lp[0][K]].value;
    float *out = f->att_cols + i * heads * 2 * h;
    memset(out, 0, (size_t)(heads * 2 * h) * sizeof *out);
    for (int64_t hd = 0; hd < heads; hd++) {
        const int64_t o0 = hd * d;
        float *qk = out + hd * 2 * h, *kq = qk + h;
        double *kbar = ws;
        for (int64_t e = 0; e < d; e++) {
            double acc = 0;
            for (int64_t t = 0; t < L; t++)
                acc += k[tok[t] * h + o0 + e];
            kbar[e] = acc / (double)L;
        }
        for (int64_t t = 0; t < L; t++) {
            const float *qt = q + tok[t] * h + o0, *kt = k + tok[t] * h + o0;
            for (int64_t c = 0; c < h; c++) {
                double a = 0, z = 0;
                for (int64_t e = 0; e < d; e++) {
                    a += (double)wk[(o0 + e) * h + c] * qt[e];
                    z += (double)wq[(o0 + e) * h + c] * (kt[e] - kbar[e]);
                }
                qk[c] = fmaxf(qk[c], (float)(fabs(a) * 1.001));
                kq[c] = fmaxf(kq[c], (float)(fabs(z) * 1.001));
            }
        }
    }
}

static void col_max(const float *x, int64_t rows, int64_t cols, float *out) {
    for (int64_t j = 0; j < cols; j++)
        out[j] = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            out[j] = fmaxf(out[j], fabsf(x[r * cols + j]));
}

/* The last layer's [CLS] attention statistics of sequence i (cls_att), from
 * its golden queries, keys and values q, k, v [s, h], computed in double and
 * inflated for their rounding; ws: s + 2 h doubles. */
static void cls_attention_stats(const pvf_model *m, const bert *b, bert_fast *f, int64_t i,
                                const float *q, const float *k, const float *v, const float *madd,
                                double *ws) {
    const int *p = b->lp[b->layers - 1];
    const int64_t h = b->hidden, s = f->s, heads = b->heads, d = h / heads;
    const float *wq = m->params[p[Q]].value, *wk = m->params[p[K]].value,
                *wo = m->params[p[O]].value;
    double *prob = ws, *mean = prob + s, *c = mean + d;
    for (int64_t hd = 0; hd < heads; hd++) {
        float *out = f->cls_att + (i * heads + hd) * 3;
        const int64_t o0 = hd * d;
        /* golden attention weights of the [CLS] query (padded keys: 0) */
        double top = -INFINITY, sum = 0;
        for (int64_t t = 0; t < s; t++) {
            double acc = 0;
            for (int64_t e = 0; e < d; e++)
                acc += (double)q[o0 + e] * k[t * h + o0 + e];
            prob[t] = madd[t] != 0 ? -INFINITY : acc / sqrt((double)d);
            top = fmax(top, prob[t]);
        }
        for (int64_t t = 0; t < s; t++) {
            prob[t] = madd[t] != 0 ? 0 : exp(prob[t] - top);
            sum += prob[t];
        }
        int64_t used = 0;
        for (int64_t e = 0; e < d; e++)
            mean[e] = c[e] = 0;
        for (int64_t t = 0; t < s; t++) {
            prob[t] /= sum;
            if (madd[t] != 0)
                continue;
            /* the unmasked keys in order, as real_tok lists them */
            f->cls_tok[((f->real_start[i] + used) * heads + hd) * 3] =
                (float)(prob[t] * 1.001 + 1e-9);
            used++;
            for (int64_t e = 0; e < d; e++) {
                mean[e] += k[t * h + o0 + e];
                c[e] += prob[t] * v[t * h + o0 + e];
            }
        }
        for (int64_t e = 0; e < d; e++)
            mean[e] /= (double)(used ? used : 1);
        /* |Wk_hd^T q_hd| */
        double bq = 0;
        for (int64_t j = 0; j < h; j++) {
            double acc = 0;
            for (int64_t e = 0; e < d; e++)
                acc += (double)q[o0 + e] * wk[(o0 + e) * h + j];
            bq += acc * acc;
        }
        double aq = 0, spread = 0;
        float *tok = f->cls_tok + (f->real_start[i] * heads + hd) * 3;
        for (int64_t t = 0; t < s; t++) {
            if (madd[t] != 0)
                continue; /* a padded key: weight 0 */
            double sq = 0, so = 0;
            for (int64_t j = 0; j < h; j++) { /* Wq_hd^T (k_t - kbar) */
                double acc = 0;
                for (int64_t e = 0; e < d; e++)
                    acc += (k[t * h + o0 + e] - mean[e]) * wq[(o0 + e) * h + j];
                sq += acc * acc;
            }
            for (int64_t r = 0; r < h; r++) { /* Wo_hd (v_t - ctx_hd) */
                double acc = 0;
                for (int64_t e = 0; e < d; e++)
                    acc += (double)wo[r * h + o0 + e] * (v[t * h + o0 + e] - c[e]);
                so += acc * acc;
            }
            aq = fmax(aq, sqrt(sq));
            spread += prob[t] * sqrt(so);
            tok[1] = (float)(sqrt(so) * 1.001);
            tok[2] = (float)(sqrt(sq) * 1.001);
            tok += heads * 3; /* the next unmasked key */
        }
        out[0] = (float)(aq * 1.001);
        out[1] = (float)(sqrt(bq) * 1.001);
        out[2] = (float)(spread * 1.001);
    }
}

/* Golden statistics of encoder layer li for sequence i (input x[s, h]):
 * the layer recomputed over every token with golden weights. */
static void layer_stats(const pvf_model *m, const bert *b, bert_fast *f, int li, int64_t i,
                        const float *x, float *ws, double *dws) {
    const int *p = b->lp[li];
    const int64_t h = b->hidden, s = f->s, d = h / b->heads, heads = b->heads;
    const int last = li == b->layers - 1;
    const float *madd = f->mask_add + i * s;
    float *q = ws, *k = q + s * h, *v = k + s * h, *ctx = v + s * h, *z = ctx + s * h,
          *a = z + s * h, *r = a + s * h, *inter = r + s * h, *scores = inter + s * b->inter;
#define GW(j) m->params[p[j]].value
    pvf_linear(x, s, h, GW(Q), GW(Q_B), h, q);
    pvf_linear(x, s, h, GW(K), GW(K_B), h, k);
    pvf_linear(x, s, h, GW(V), GW(V_B), h, v);
    pvf_attention(q, s, k, v, s, heads, d, madd, ctx, scores);
    float *qkv = f->qkv_max + (li * f->n + i) * 3 * heads;
    const int64_t qrows = last ? 1 : s;
    for (int64_t hd = 0; hd < heads; hd++) {
        qkv[hd] = row_block_max(q, qrows, h, hd * d, d, NULL, 0);
        /* the last layer: padded keys weigh 0 (its input stays finite); earlier
         * layers: every token, which also keeps padded rows bounded */
        const float *keys_used = last && f->cls_real ? madd : NULL;
        qkv[heads + hd] = row_block_max(k, s, h, hd * d, d, keys_used, 1);
        qkv[2 * heads + hd] = row_block_max(v, s, h, hd * d, d, keys_used, 1);
    }
    if (last && f->cls_real)
        cls_attention_stats(m, b, f, i, q, k, v, madd, dws);
    pvf_linear(ctx, s, h, GW(O), GW(O_B), h, z);
    for (int64_t j = 0; j < s * h; j++)
        z[j] += x[j];
    if (last) /* [CLS] is row 0 */
        memcpy(f->cls_z + i * h, z, (size_t)h * sizeof *z);
    float *fm = f->feat_max + (li * f->n + i) * FEAT_FLOATS(b);
    memset(fm, 0, (size_t)FEAT_FLOATS(b) * sizeof *fm);
    col_max(x, s, h, fm + ST_X * h);
    col_max(q, qrows, h, fm + ST_Q * h);
    key_columns(k, s, h, last && f->cls_real ? madd : NULL, fm + ST_K * h, fm + ST_KC * h);
    col_max(ctx, s, h, fm + ST_CTX * h);
    float *scale = f->ln_scale + (li * f->n + i) * 2;
    scale[0] = (float)(ln_stats(z, qrows, h, b->eps, fm + ST_U1 * h) / 1.0001);
    memcpy(a, z, (size_t)(s * h) * sizeof *a);
    pvf_layernorm(a, s, h, GW(LN1_W), GW(LN1_B), b->eps);
    col_max(a, s, h, fm + ST_A * h);
    pvf_linear(a, s, h, GW(FF1), GW(FF1_B), b->inter, inter);
    pvf_gelu_erf(inter, s * b->inter);
    col_max(inter, s, b->inter, fm + ST_INTER * h);
    pvf_linear(inter, s, b->inter, GW(FF2), GW(FF2_B), h, r);
    for (int64_t j = 0; j < s * h; j++)
        r[j] += a[j];
    scale[1] = (float)(ln_stats(r, qrows, h, b->eps, fm + ST_U2 * h) / 1.0001);
    key_half_range(k, s, h, madd, fm + ST_KR * h);
    if (!last) {
        const int64_t R = f->real_start[f->n], base = f->real_start[i];
        if (f->cls_real)
            token_spread(m, b, f, li, i, q, k, v, dws);
        if (f->cls_real && li == 0)
            att_columns(m, b, f, i, q, k, dws);
        for (int64_t u = base; u < f->real_start[i + 1]; u++) {
            const int64_t t = f->real_tok[u];
            memcpy(f->ffn_a + (li * R + u) * h, a + t * h, (size_t)h * sizeof *a);
            memcpy(f->ffn_r + (li * R + u) * h, r + t * h, (size_t)h * sizeof *r);
            f->ffn_scale[li * R + u] = (float)(ln_stats(r + t * h, 1, h, b->eps, NULL) / 1.0001);
            memcpy(f->att_ctx + (li * R + u) * h, ctx + t * h, (size_t)h * sizeof *r);
            memcpy(f->att_z + (li * R + u) * h, z + t * h, (size_t)h * sizeof *r);
            memcpy(f->att_q + (li * R + u) * h, q + t * h, (size_t)h * sizeof *r);
            memcpy(f->att_k + (li * R + u) * h, k + t * h, (size_t)h * sizeof *r);
            memcpy(f->att_v + (li * R + u) * h, v + t * h, (size_t)h * sizeof *r);
            memcpy(f->ffn_inter + (li * R + u) * b->inter, inter + t * b->inter,
                   (size_t)b->inter * sizeof *inter);
        }
    }
#undef GW
}

/* Changes injected inside an encoder layer by a fault in it (bounds on the
 * L2 change of one token's row at that point). */
typedef struct inject {
    int64_t head;              /* head of a query/key/value change, or -1 */
    double q, k, v;            /* that head's query/key/value change */
    double attn, ln1, ff, ln2; /* attention output, LayerNorm 1 output, FFN output, layer output */
} inject;

/* Bounds on the changes of the last encoder layer's input rows of a
 * sequence as its [CLS] path reads them, row by row. A fault before the
 * last layer often moves a few tokens far more than the [CLS] row or the
 * tokens [CLS] attends to.
 *
 * With golden weights p_t of the [CLS] query on key t (one head), row t
 * moving by at most dx_t and [CLS]'s own row by dx_0, the score of key t
 * moves, beyond a shift common to all keys, by at most
 * a_t = (|Wq^T (k_t - kbar)| dx_0 + |Wk^T q| dx_t + |Wq| dx_0 |Wk| dx_t) / sqrt(d).
 * The new weights are p_t e^{delta_t} / Z with |delta_t| <= a_t and
 * |ln Z| <= lz = ln sum_t p_t e^{a_t} (Jensen below, the largest term
 * above), so p'_t / p_t - 1 lies within e^{a_t + lz} - 1: the head's output
 * moves by at most
 *   sum_t p_t (e^{a_t + lz} - 1) |Wo (v_t - ctx)|      (the weights)
 *   + |Wo Wv| sum_t p_t e^{a_t + lz} dx_t              (the values),
 * sums accumulated here per head (p_t stored a little above itself, which
 * only raises them). */
#define SPLIT_HEADS 16
typedef struct row_changes {
    int split;       /* the last layer, with [CLS] unmasked and at most SPLIT_HEADS heads */
    double cls, max; /* dx_0, max dx_t */
    /* per head: sum p e^a, sum p |w| (e^a - 1), sum p |w|, sum p e^a dx */
    double z[SPLIT_HEADS], wm[SPLIT_HEADS], w0[SPLIT_HEADS], v[SPLIT_HEADS];
} row_changes;

/* Bound on the change of layer li's output rows of sequence i (the [CLS] row
 * for the last layer) when every input row moves by at most dx (rc, for the
 * last layer: row by row, dx its largest) and `in` is injected; INFINITY
 * when none holds. */
static double layer_bound_rows(const bert *b, const bert_fast *f, int li, int64_t i, double dx,
                               const row_changes *rc, const inject *in, double *dz_cls_out) {
    const layer_norms *L = &f->norms[li];
    const int64_t heads = b->heads, h = b->hidden;
    const float *qkv = f->qkv_max + (li * f->n + i) * 3 * heads;
    const float *scale = f->ln_scale + (li * f->n + i) * 2;
    const double rd = 1.0 / sqrt((double)(h / heads)), rh = 1.0 / sqrt((double)h);
    if (dz_cls_out)
        *dz_cls_out = INFINITY;
    if (!(dx < INFINITY))
        return INFINITY;
    double ctx2 = 0, dz_cls = 0;
    const int cls = li == b->layers - 1 && f->cls_real;
    const int split = cls && rc && rc->split;
    const double dx_cls = split ? rc->cls : dx; /* the [CLS] row's own change */
    for (int64_t hd = 0; hd < heads; hd++) {
        const int here = in && in->head == hd;
        double dq = L->q[hd] * dx + (here ? in->q : 0), dk = L->k[hd] * dx + (here ? in->k : 0),
               dv = L->v[hd] * dx + (here ? in->v : 0);
        double eps = (dq * qkv[heads + hd] + qkv[hd] * dk + dq * dk) * rd;
        if (!(eps < 20))
            return INFINITY; /* also keeps every score far below FLT_MAX */
        double dc = expm1(2 * eps) * qkv[2 * heads + hd] + dv;
        ctx2 += dc * dc;
        if (cls) {
            /* The [CLS] query alone, with the golden directions: the score of
             * key t moves by (Wq e0).(k_t - kbar) + q.(Wk e_t) + dq dk beyond
             * a shift common to all keys, |e| <= dx; the weights by a factor
             * e^{+-2 eps}, so the output of the head by at most
             * (e^{2 eps} - 1) sum_t p_t |Wo_hd (v_t - ctx_hd)| plus the
             * weighted value changes through Wo_hd Wv_hd. */
            const float *ca = f->cls_att + (i * heads + hd) * 3;
            const double dq_cls = split ? L->q[hd] * dx_cls + (here ? in->q : 0) : dq;
            double e2 = (ca[0] * dx_cls + (here ? in->q * qkv[heads + hd] : 0) + ca[1] * dx +
                         (here ? qkv[hd] * in->k : 0) + dq_cls * dk) *
                        rd;
            if (!(e2 < 20))
                return INFINITY;
            double weights = expm1(2 * e2) * ca[2], values = dx;
            if (split && !in) { /* row by row (row_changes) */
                const double lz = log(rc->z[hd]);
                if (lz < 20) {
                    weights = fmin(weights, exp(lz) * rc->wm[hd] + expm1(lz) * rc->w0[hd]);
                    values = fmin(values, exp(lz) * rc->v[hd]);
                }
            }
            dz_cls += weights + L->ov[hd] * values + (here ? L->o * in->v : 0);
        }
    }
    double dz = L->o * sqrt(ctx2);
    if (cls)
        dz = fmin(dz, dz_cls * BOUND_INFLATE);
    dz += dx_cls + (in ? in->attn : 0);
    if (dz_cls_out && li == b->layers - 1 && !(in && (in->ln1 || in->ff || in->ln2)))
        *dz_cls_out = dz; /* the [CLS] row's first LayerNorm input */
    double s1 = scale[0] - dz * rh;
    if (!(s1 > 0))
        return INFINITY;
    /* the normalized row moves by at most dz / s1, the LayerNorm's output
     * by a fault of its own parameters by in->ln1 more */
    const double dn = dz / s1, dln1 = in ? in->ln1 : 0;
    double dr = L->ffn_ln1 * dn + (L->ff2 * GELU_LIPSCHITZ * L->ff1 + 1) * dln1 + (in ? in->ff : 0);
    double s2 = scale[1] - dr * rh;
    if (!(s2 > 0))
        return INFINITY;
    double dy = (L->ln2 * dr / s2 + (in ? in->ln2 : 0)) * BOUND_INFLATE;
    return dy < INFINITY ? dy : INFINITY;
}

static double layer_bound(const bert *b, const bert_fast *f, int li, int64_t i, double dx,
                          const inject *in) {
    return layer_bound_rows(b, f, li, i, dx, NULL, in, NULL);
}

/* The last layer's [CLS] path at a golden first LayerNorm input, in
 * double: both LayerNorms' normalized inputs n1, n2 and scales
 * sqrt(var + eps), GELU's slope at each feed-forward pre-activation; gy,
 * gu, w2g, ga, gz: cls_gradient's scratch. */
typedef struct cls_point {
    double s1, s2;
    double *n1, *n2, *slope, *gy, *gu, *w2g, *ga, *gz; /* [h] or [inter] */
    /* for cls_jacobians: the second feed-forward matrix [h, inter] and the
     * pooler [h, h] in double; scratch */
    double *w2, *wp, *dw1, *m1, *m3;
} cls_point;

static void cls_point_free(cls_point *cp) {
    free(cp->n1);
    free(cp->w2);
    memset(cp, 0, sizeof *cp);
}

/* cp's buffers and the weights it reads in double; -1 when out of memory
 * (cp can be freed either way). */
static int cls_point_init(cls_point *cp, const pvf_model *m, const bert *b) {
    const int *p = b->lp[b->layers - 1];
    const int64_t h = b->hidden, ni = b->inter;
    memset(cp, 0, sizeof *cp);
    cp->n1 = malloc((size_t)(6 * h + 2 * ni) * sizeof *cp->n1);
    cp->w2 = malloc((size_t)(2 * ni * h + 3 * h * h) * sizeof *cp->w2);
    if (!cp->n1 || !cp->w2)
        return -1;
    cp->n2 = cp->n1 + h;
    cp->gy = cp->n2 + h;
    cp->gu = cp->gy + h;
    cp->ga = cp->gu + h;
    cp->gz = cp->ga + h;
    cp->slope = cp->gz + h;
    cp->w2g = cp->slope + ni;
    cp->dw1 = cp->w2 + h * ni;
    cp->wp = cp->dw1 + ni * h;
    cp->m1 = cp->wp + h * h;
    cp->m3 = cp->m1 + h * h;
    const float *w2 = m->params[p[FF2]].value, *wp = m->params[b->pool_w].value;
    for (int64_t e = 0; e < h * ni; e++)
        cp->w2[e] = w2[e];
    for (int64_t e = 0; e < h * h; e++)
        cp->wp[e] = wp[e];
    return 0;
}

/* n = (x - mean) / s, s = sqrt(var + eps): LayerNorm before its weight */
static double ln_normalize(const double *x, int64_t h, double eps, double *n) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < h; c++)
        mean += x[c];
    mean /= (double)h;
    for (int64_t c = 0; c < h; c++)
        var += (x[c] - mean) * (x[c] - mean);
    const double sc = sqrt(var / (double)h + eps);
    for (int64_t c = 0; c < h; c++)
        n[c] = (x[c] - mean) / sc;
    return sc;
}

/* out = J^T gin for LayerNorm y = w (x - mean) / s + bias at normalized
 * input n, scale sc: J^T = (P - n n^T / h) diag(w) / sc, P the centering
 * (symmetric, and n is centered). */
static void ln_backward(const double *n, double sc, const float *w, const double *gin, int64_t h,
                        double *out) {
    double mean = 0, dot = 0;
    for (int64_t c = 0; c < h; c++) {
        out[c] = w[c] * gin[c];
        mean += out[c];
        dot += n[c] * out[c];
    }
    mean /= (double)h;
    dot /= (double)h;
    for (int64_t c = 0; c < h; c++)
        out[c] = (out[c] - mean - n[c] * dot) / sc;
}

/* cp at a golden first LayerNorm input z[h] of the last layer: the path
 * forward in double. */
static void cls_point_at(const pvf_model *m, const bert *b, const float *z, cls_point *cp) {
    const int *p = b->lp[b->layers - 1];
    const int64_t h = b->hidden, ni = b->inter;
    const float *w1 = m->params[p[FF1]].value, *b1 = m->params[p[FF1_B]].value,
                *w2 = m->params[p[FF2]].value, *b2 = m->params[p[FF2_B]].value,
                *g1 = m->params[p[LN1_W]].value, *be1 = m->params[p[LN1_B]].value;
    double *x = cp->gz, *a = cp->ga, *gelu = cp->w2g; /* scratch here */
    for (int64_t c = 0; c < h; c++)
        x[c] = z[c];
    cp->s1 = ln_normalize(x, h, b->eps, cp->n1);
    for (int64_t c = 0; c < h; c++)
        a[c] = g1[c] * cp->n1[c] + be1[c];
    for (int64_t j = 0; j < ni; j++) {
        double pre = b1[j];
        for (int64_t c = 0; c < h; c++)
            pre += (double)w1[j * h + c] * a[c];
        const double cdf = 0.5 * erfc(-pre * M_SQRT1_2);
        cp->slope[j] = cdf + pre * exp(-0.5 * pre * pre) * 0.3989422804014327;
        gelu[j] = pre * cdf;
    }
    for (int64_t c = 0; c < h; c++) {
        double acc = a[c] + b2[c];
        for (int64_t j = 0; j < ni; j++)
            acc += (double)w2[c * ni + j] * gelu[j];
        x[c] = acc;
    }
    cp->s2 = ln_normalize(x, h, b->eps, cp->n2);
}

/* Upper bounds on the spectral norms of the last layer's [CLS] path
 * Jacobians at cp from its first LayerNorm input z: to the second
 * LayerNorm's input, M1 = JF J1, and to the pooler's pre-activation,
 * M3 = Wp J2 M1, with JF = I + W2 D W1 the feed-forward part's (D GELU's
 * slopes) and J1, J2 the LayerNorms' diag(w) (P - n n^T / h) / s (P the
 * centering); and of JF itself. Formed in double: out = {M1, M3, JF}. */
static int cls_jacobians(const pvf_model *m, const bert *b, cls_point *cp, double *out) {
    const int *p = b->lp[b->layers - 1];
    const int64_t h = b->hidden, ni = b->inter;
    const float *g1 = m->params[p[LN1_W]].value, *g2 = m->params[p[LN2_W]].value;
    const float *w1 = m->params[p[FF1]].value;
    for (int64_t j = 0; j < ni; j++) /* D W1 */
        for (int64_t c = 0; c < h; c++)
            cp->dw1[j * h + c] = cp->slope[j] * w1[j * h + c];
    for (int64_t r = 0; r < h; r++)
        for (int64_t c = 0; c < h; c++)
            cp->m3[r * h + c] = r == c;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)h, (blasint)h, (blasint)ni, 1.0,
                cp->w2, (blasint)ni, cp->dw1, (blasint)h, 1.0, cp->m3, (blasint)h);
    out[2] = pvf_fast_spectral_bound_d(cp->m3, h, h, CLS_SQUARINGS);
    /* a row of A J is J^T times A's row: ln_backward, row by row */
    for (int64_t r = 0; r < h; r++) /* M1 = JF J1 */
        ln_backward(cp->n1, cp->s1, g1, cp->m3 + r * h, h, cp->m1 + r * h);
    out[0] = pvf_fast_spectral_bound_d(cp->m1, h, h, CLS_SQUARINGS);
    for (int64_t r = 0; r < h; r++) /* Wp J2, into dw1 */
        ln_backward(cp->n2, cp->s2, g2, cp->wp + r * h, h, cp->dw1 + r * h);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)h, (blasint)h, (blasint)h, 1.0,
                cp->dw1, (blasint)h, cp->m1, (blasint)h, 0.0, cp->m3, (blasint)h);
    out[1] = pvf_fast_spectral_bound_d(cp->m3, h, h, CLS_SQUARINGS);
    return out[0] < 0 || out[1] < 0 || out[2] < 0 ? -1 : 0;
}

/* The gradients of one margin back through the last layer's [CLS] path
 * from its gradient at the layer's output (cp->gy), linearized at cp:
 * LayerNorm 2, the feed-forward part I + W2 D W1 (D: GELU's slopes),
 * LayerNorm 1; their norms into cg (CLS_GRAD). */
static void cls_gradient(const pvf_model *m, const bert *b, cls_point *cp, double *cg) {
    const int *p = b->lp[b->layers - 1];
    const int64_t h = b->hidden, ni = b->inter;
    const float *w1 = m->params[p[FF1]].value, *w2 = m->params[p[FF2]].value;
    ln_backward(cp->n2, cp->s2, m->params[p[LN2_W]].value, cp->gy, h, cp->gu);
    for (int64_t j = 0; j < ni; j++)
        cp->w2g[j] = 0;
    for (int64_t c = 0; c < h; c++)
        for (int64_t j = 0; j < ni; j++)
            cp->w2g[j] += (double)w2[c * ni + j] * cp->gu[c];
    double w2max = 0;
    for (int64_t c = 0; c < h; c++)
        cp->ga[c] = cp->gu[c];
    for (int64_t j = 0; j < ni; j++) {
        w2max = fmax(w2max, fabs(cp->w2g[j]));
        const double t = cp->slope[j] * cp->w2g[j];
        for (int64_t c = 0; c < h; c++)
            cp->ga[c] += (double)w1[j * h + c] * t;
    }
    ln_backward(cp->n1, cp->s1, m->params[p[LN1_W]].value, cp->ga, h, cp->gz);
    double nz = 0, na = 0, ny = 0;
    for (int64_t c = 0; c < h; c++) {
        nz += cp->gz[c] * cp->gz[c];
        na += cp->ga[c] * cp->ga[c];
        ny += cp->gy[c] * cp->gy[c];
    }
    cg[CG_Z] = sqrt(nz) * 1.001;
    cg[CG_A] = sqrt(na) * 1.001;
    cg[CG_Y] = sqrt(ny) * 1.001;
    cg[CG_W2] = w2max * 1.001;
}

/* Bound on the change of margin k (logit k less the top one) of sequence
 * i under a change of at most r in its last layer's [CLS] first LayerNorm
 * input z (golden: cls_z); INFINITY when none holds. Each stage of the
 * path moves as its Jacobian at golden plus a remainder, so the margin
 * moves by
 *   gz^T dz + ga^T rho1 + (W2^T gu)^T rho_gelu + gy^T rho2 + rho_head
 * with g* the margin's gradients (cls_gradient): by at most
 *   |gz| r + |ga| |rho1| + 0.399 |W2^T gu|_inf |dp|^2 + |gy| |rho2|
 *   + cls_linearize's rounding term |dy| and quadratic term,
 * dp = W1 da the feed-forward pre-activations' change. A LayerNorm's
 * remainder is at most max|w| (0.578 + 1.5 eps / s^2) |dx|^2 / (sqrt(h)
 * s^2), s its smallest scale on the way: along a centered step u = a v^ +
 * b w (v^ the centered row's direction, w across it, |u| = 1) the second
 * derivative of x / s is (|v| / (h s^3)) (-(b^2 + 3 a^2 eps / s^2) v^ -
 * 2 a b w), at most (2 / sqrt(3) + 3 eps / s^2) / (sqrt(h) s^2) (at
 * b^2 = 2/3);
 * GELU's per feature 0.399 dp_j^2 (|gelu''| <= 2 phi(0) < 0.798), which W2
 * carries by at most 0.399 min(|W2| max_j |W1_j| |da|, max_j |W2_j|
 * |dp|) |dp|. The changes on the way: da, dp through the norms; du (the
 * second LayerNorm's input) and dq (the pooler's pre-activation) also as
 * the Jacobians' norms (cls_jacobians) times r plus the remainders (the
 * first LayerNorm's through the feed-forward Jacobian at golden, as the
 * feed-forward part is expanded at golden around its whole input change);
 * the head's quadratic term with |W e| <= dq. */
static double ln_remainder(double wmax, double dx, double s, double eps, double rh) {
    return wmax * (0.578 + 1.5 * eps / (s * s)) * dx * dx * rh / (s * s);
}

static double cls_moved(const bert *b, const bert_fast *f, int64_t i, double r, int64_t k) {
    const int64_t h = b->hidden, last = b->layers - 1;
    const layer_norms *N = &f->norms[last];
    const float *scale = f->ln_scale + (last * f->n + i) * 2;
    const double *jac = f->cls_jac + i * 3, rh = 1.0 / sqrt((double)h);
    const double s1 = scale[0] - r * rh;
    if (!(s1 > 0) || !(r < INFINITY))
        return INFINITY;
    const double rho1 = ln_remainder(N->ln1, r, s1, b->eps, rh);
    const double da = N->ln1 * r / s1, dp = N->ff1 * da;
    /* W2 times GELU's remainder, |.| <= 0.399 dp_j^2 per feature */
    const double rho_ffn = fmin(N->ffn_plain, jac[2]) * rho1 +
                           0.399 * fmin(N->ff2 * N->ff1_row * da, N->ff2_col_max * dp) * dp;
    const double du = fmin(N->ffn_plain * da, jac[0] * r + rho_ffn);
    const double s2 = scale[1] - du * rh;
    if (!(s2 > 0))
        return INFINITY;
    const double rho2 = ln_remainder(N->ln2, du, s2, b->eps, rh);
    const double dy = N->ln2 * du / s2;
    const double dq =
        fmin(f->pool_norm * dy, jac[1] * r + f->pool_norm * (N->ln2 / scale[1] * rho_ffn + rho2));
    const double *cg = f->cls_grad + (i * b->labels + k) * CLS_GRAD;
    const double quad = fmin(cg[CG_QR] * dy * dy, cg[CG_QC] * dq * dq);
    return (cg[CG_Z] * r + cg[CG_A] * rho1 + 0.399 * cg[CG_W2] * dp * dp + cg[CG_Y] * rho2 +
            cg[CG_E0] * dy + quad) *
           BOUND_INFLATE;
}

/* The rounding slack of margin k: the golden logits and the faulty ones
 * each within it of their real values. */
static double margin_slack(const float *logit, int64_t top, int64_t k) {
    return 1e-4 * (1.0 + fabs((double)logit[top]) + fabs((double)logit[k]));
}

/* 1 when every margin of sequence i provably stays positive under a change
 * of at most r in its last layer's [CLS] first LayerNorm input (cls_moved). */
static int cls_settles(const pvf_model *m, const pvf_golden *g, const bert *b, const bert_fast *f,
                       int64_t i, double r) {
    const float *logit = g->out + i * m->out_size;
    const int64_t top = g->top1[i];
    for (int64_t k = 0; k < b->labels; k++) {
        if (k == top)
            continue;
        if (!((double)logit[top] - logit[k] >
              cls_moved(b, f, i, r, k) + margin_slack(logit, top, k)))
            return 0;
    }
    return 1;
}

/* 1 when a change of at most dy in sequence i's [CLS] output of the last
 * layer provably leaves its top-1 class (and finiteness) as golden's. */
static int head_settles(const pvf_model *m, const pvf_golden *g, const bert *b, const bert_fast *f,
                        int64_t i, double dy) {
    if (!(dy < INFINITY))
        return 0;
    const int64_t h = b->hidden, labels = b->labels;
    const int cls_stage = m->nstages - 1;
    const float *pooled = g->stage_in[cls_stage] + i * h;
    const float *c = m->params[b->cls_w].value;
    double dlogit[64] = {0};
    if (labels > 64)
        return 0;
    for (int64_t j = 0; j < h; j++) {
        double dz = f->pool_row[j] * dy;
        if (dz == 0)
            continue;
        /* |z| from the golden tanh output, minus its rounding */
        double z = atanh(
            fmax(0.0, fmin(fabs((double)pooled[j]) - 4.0 / 16777216.0, 1.0 - 1.0 / 16777216.0)));
        double sech2 = z <= dz ? 1.0 : 1.0 - tanh(z - dz) * tanh(z - dz);
        double dp = fmin(2.0, dz * sech2) * BOUND_INFLATE;
        for (int64_t k = 0; k < labels; k++)
            dlogit[k] += fabs((double)c[k * h + j]) * dp;
    }
    const float *logit = g->out + i * m->out_size;
    const int64_t top = g->top1[i];
    for (int64_t k = 0; k < labels; k++) {
        if (k == top)
            continue;
        const double *cg = f->cls_grad + (i * labels + k) * CLS_GRAD;
        const double lin = cg[CG_Y] + cg[CG_E0],
                     quad = fmin(cg[CG_QR], cg[CG_QC] * f->pool_norm * f->pool_norm);
        double moved = fmin(dlogit[top] + dlogit[k], (lin + quad * dy) * dy);
        if (!((double)logit[top] - logit[k] > moved + margin_slack(logit, top, k)))
            return 0;
    }
    return 1;
}

/* The last layer's [CLS] path linearized at every sequence's golden point
 * (cls_point_at): its Jacobian bounds into cls_jac (cls_jacobians), and
 * each margin's gradients back from the head (cls_gradient) into cls_grad.
 * The pooler and classifier, at sequence i's golden [CLS] row: with c = C_k - C_top, D = tanh'(z)
 * at the golden pooler input z, W the pooler, a [CLS] change e moves logit k less the top one by
 * c^T (D + E) W e, |E_j| <= 0.385 |(W e)_j| + e0_j (a secant slope of tanh
 * is within half its largest |tanh''| < 0.7698 times the step of its
 * slope at either end; e0_j: D's own rounding), so by at most
 * |W^T D c| |e| + sum_j |c_j| e0_j r_j |e|
 * + 0.385 min(sum_j |c_j| r_j^2, max_j |c_j| |W|^2) |e|^2 with r_j the L2
 * norm of pooler row j: cls_grad's CG_Y (|W^T D c|, the margin's gradient
 * at the [CLS] row, which goes on back through the last layer:
 * cls_gradient), CG_E0, CG_QR and CG_QC, inflated for their rounding. */
static int cls_linearize(const pvf_model *m, const pvf_golden *g, const bert *b, bert_fast *f) {
    const int64_t h = b->hidden, labels = b->labels;
    const float *w = m->params[b->pool_w].value, *bias = m->params[b->pool_b].value,
                *cw = m->params[b->cls_w].value;
    const int pooler = b->first_layer + (int)b->layers;
    double *dc = malloc((size_t)(2 * h) * sizeof *dc);
    f->pool_norm = pvf_fast_spectral_bound(w, h, 0, h, NULL);
    cls_point cp;
    int rc = -1;
    if (cls_point_init(&cp, m, b) || !dc || f->pool_norm < 0)
        goto out;
    double *e0 = dc + h;
    for (int64_t i = 0; i < f->n; i++) {
        const float *y = g->stage_in[pooler] + i * h, *pooled = g->stage_in[pooler + 1] + i * h;
        const int64_t top = g->top1[i];
        cls_point_at(m, b, f->cls_z + i * h, &cp);
        if (cls_jacobians(m, b, &cp, f->cls_jac + i * 3))
            goto out;
        for (int64_t j = 0; j < h; j++) {
            double sum = fabs((double)bias[j]);
            for (int64_t c = 0; c < h; c++)
                sum += fabs((double)w[j * h + c] * y[c]);
            /* tanhf's rounding, then the pre-activation's: D moves 2x them */
            e0[j] = 2.0 * (3e-7 + 1.01 * (double)(h + 2) / 16777216.0 * sum);
        }
        for (int64_t k = 0; k < labels; k++) {
            if (k == top)
                continue;
            double lin = 0, quad = 0, cmax = 0;
            for (int64_t j = 0; j < h; j++) {
                const double c = (double)cw[k * h + j] - cw[top * h + j];
                dc[j] = (1.0 - (double)pooled[j] * pooled[j]) * c;
                lin += fabs(c) * e0[j] * f->pool_row[j];
                quad += fabs(c) * f->pool_row[j] * f->pool_row[j];
                cmax = fmax(cmax, fabs(c));
            }
            for (int64_t c = 0; c < h; c++) {
                double acc = 0;
                for (int64_t j = 0; j < h; j++)
                    acc += (double)w[j * h + c] * dc[j];
                cp.gy[c] = acc;
            }
            double *cg = f->cls_grad + (i * labels + k) * CLS_GRAD;
            cls_gradient(m, b, &cp, cg);
            cg[CG_E0] = lin * 1.001;
            cg[CG_QR] = 0.385 * quad * 1.001;
            cg[CG_QC] = 0.385 * cmax * 1.001;
        }
    }
    rc = 0;
out:
    cls_point_free(&cp);
    free(dc);
    return rc;
}

/* 1 when sequence i settles with every input row of the last encoder layer
 * moving by at most dx (rc: row by row), `in` injected there: by the bound
 * on the [CLS] row's first LayerNorm input, linearized from there on
 * (settle_dz), or by the layer's output (settle_dx). */
static int last_layer_settles(const bert *b, const bert_fast *f, int64_t i, double dx,
                              const row_changes *rc, const inject *in) {
    double dz;
    const double dy = layer_bound_rows(b, f, (int)b->layers - 1, i, dx, rc, in, &dz);
    if (dz <= f->settle_dz[i]) /* false for NaN */
        return 1;
    const double limit = f->settle_dx[b->layers * f->n + i];
    return limit >= 0 && dy <= limit;
}

/* The chain of bounds from layer li (li == layers: the [CLS] output of the
 * last layer) with golden weights: 1 when a change of at most dx there
 * settles sequence i. */
static int chain_settles(const pvf_model *m, const pvf_golden *g, const bert *b, const bert_fast *f,
                         int64_t li, int64_t i, double dx) {
    if (li == b->layers)
        return head_settles(m, g, b, f, i, dx);
    for (int64_t l = li; l < b->layers - 1 && dx < INFINITY; l++)
        dx = layer_bound(b, f, (int)l, i, dx, NULL);
    return last_layer_settles(b, f, i, dx, NULL, NULL);
}

/* Every bound of the chain grows with the change it is given, so the chain
 * settles sequence i from layer li exactly for changes up to a threshold:
 * settle_dx[li * n + i], found once by bisection (a value the chain was seen
 * to settle, less a margin; -1 when even no change settles); li -1:
 * settle_dz by cls_settles. */
static double largest_settling(const pvf_model *m, const pvf_golden *g, const bert *b,
                               const bert_fast *f, int64_t li, int64_t i) {
#define SETTLES(dx) (li < 0 ? cls_settles(m, g, b, f, i, dx) : chain_settles(m, g, b, f, li, i, dx))
    if (!SETTLES(0))
        return -1;
    double lo = 0, hi = 1e6; /* SETTLES(lo) holds */
    if (SETTLES(hi))
        return hi;
    for (int it = 0; it < 80 && hi > lo * (1 + 1e-9); it++) {
        double mid = lo > 0 ? sqrt(lo * hi) : (hi > 1e-30 ? hi * 1e-6 : 0);
        if (mid <= lo)
            break;
        if (SETTLES(mid))
            lo = mid;
        else
            hi = mid;
    }
#undef SETTLES
    return lo * (1 - 1e-6);
}

static void settle_thresholds(const pvf_model *m, const pvf_golden *g, const bert *b,
                              bert_fast *f) {
    for (int64_t i = 0; i < f->n; i++) /* chain_settles reads them */
        f->settle_dz[i] = largest_settling(m, g, b, f, -1, i);
    for (int64_t li = b->layers; li >= 0; li--)
        for (int64_t i = 0; i < f->n; i++)
            f->settle_dx[li * f->n + i] = largest_settling(m, g, b, f, li, i);
}

/* 1 when sequence i settles with a change of at most dx in every input row
 * of encoder layer li (li == layers: in the last layer's [CLS] output),
 * `in` injected in layer li. */
static int settles_from_layer(const bert *b, const bert_fast *f, int64_t li, int64_t i, double dx,
                              const inject *in) {
    if (in && li == b->layers - 1)
        return last_layer_settles(b, f, i, dx, NULL, in);
    if (in && li < b->layers) {
        dx = layer_bound(b, f, (int)li, i, dx, in);
        li++;
    }
    const double limit = f->settle_dx[li * f->n + i];
    return limit >= 0 && dx <= limit; /* false for NaN */
}

/* Row by row changes of encoder layer li's input rows: split for the last
 * layer (row_changes). */
static void row_changes_init(row_changes *rc, const bert *b, const bert_fast *f, int64_t li) {
    memset(rc, 0, sizeof *rc);
    rc->split = li == b->layers - 1 && f->cls_real && b->heads <= SPLIT_HEADS;
}

/* Adds the bound d on the change of unmasked token u of sequence i (a
 * little above itself), in order of u: [CLS] first. */
static void row_changes_add(row_changes *rc, const bert *b, const bert_fast *f, int64_t i,
                            int64_t u, double d) {
    d *= BOUND_INFLATE;
    rc->max = fmax(rc->max, d); /* NaN: infinite */
    if (!(d < INFINITY))
        rc->max = INFINITY;
    if (!rc->split)
        return;
    if (u == 0) /* [CLS], unmasked: real_tok's first */
        rc->cls = d;
    const int64_t heads = b->heads;
    const layer_norms *L = &f->norms[b->layers - 1];
    const double rd = 1.0 / sqrt((double)(b->hidden / heads));
    const float *ca = f->cls_att + i * heads * 3,
                *tok = f->cls_tok + (f->real_start[i] + u) * heads * 3;
    for (int64_t hd = 0; hd < heads; hd++) {
        const double a =
            (tok[3 * hd + 2] * rc->cls + ca[3 * hd + 1] * d + L->q[hd] * rc->cls * L->k[hd] * d) *
            rd * BOUND_INFLATE;
        const double p = tok[3 * hd], w = tok[3 * hd + 1], e = exp(a);
        rc->z[hd] += p * e;
        rc->wm[hd] += p * w * expm1(a);
        rc->w0[hd] += p * w;
        rc->v[hd] += p * e * d;
    }
}

/* 1 when sequence i settles with the rows of encoder layer li's input
 * changed as rc says: through the threshold with the largest change, then,
 * for the last layer, row by row. */
static int rows_settle(const bert *b, const bert_fast *f, int64_t li, int64_t i,
                       const row_changes *rc) {
    if (settles_from_layer(b, f, li, i, rc->max, NULL))
        return 1;
    if (!rc->split || !(rc->max < INFINITY))
        return 0;
    return last_layer_settles(b, f, i, rc->max, rc, NULL);
}

/* Bound on the change of every row of sequence i's embedding output when
 * the embedding sum moves by at most de at the tokens that read row `row` of
 * embedding table `param` (word, position or token type), or LayerNorm's
 * output directly by dln at every token. */
static double embedding_bound(const bert *b, const bert_fast *f, int param, int64_t row, int64_t i,
                              double de, double dln) {
    const double rh = 1.0 / sqrt((double)f->hidden);
    double scale = INFINITY; /* the smallest golden scale among the changed tokens */
    for (int64_t t = 0; de > 0 && t < f->s; t++) {
        int hit = param == b->pos    ? t == row
                  : param == b->word ? f->tokens[i * f->s + t] == row
                                     : f->tokens[(f->n + i) * f->s + t] == row;
        if (hit)
            scale = fmin(scale, f->emb_scale[i * f->s + t]);
    }
    if (de == 0)
        scale = 1; /* unused */
    double s0 = scale - de * rh;
    if (!(s0 > 0) || !(de < INFINITY) || !(dln < INFINITY))
        return INFINITY;
    return (f->emb_ln * de / s0 + dln) * BOUND_INFLATE;
}

/* The golden statistics and weight norms the bounds use. */
static int bound_data_init(const pvf_model *m, const pvf_golden *g, const bert *b, bert_fast *f,
                           const pvf_tensor *ids, const pvf_tensor *types, pvf_err *err) {
    const int64_t n = f->n, s = f->s, h = b->hidden, L = b->layers;
    f->layers = L;
    f->hidden = h;
    f->norms = calloc((size_t)L, sizeof *f->norms);
    f->qkv_max = malloc((size_t)(L * n * 3 * b->heads) * sizeof *f->qkv_max);
    f->cls_att = calloc((size_t)(n * 3 * b->heads), sizeof *f->cls_att);
    f->cls_tok = calloc((size_t)(f->real_start[n] * b->heads * 3 + 1), sizeof *f->cls_tok);
    f->settle_dx = malloc((size_t)((L + 1) * n) * sizeof *f->settle_dx);
    f->cls_z = malloc((size_t)(n * h) * sizeof *f->cls_z);
    f->cls_grad = calloc((size_t)(n * b->labels * CLS_GRAD), sizeof *f->cls_grad);
    f->settle_dz = malloc((size_t)n * sizeof *f->settle_dz);
    f->cls_jac = malloc((size_t)(3 * n) * sizeof *f->cls_jac);
    f->ln_scale = malloc((size_t)(L * n * 2) * sizeof *f->ln_scale);
    f->feat_max = malloc((size_t)(L * n * FEAT_FLOATS(b)) * sizeof *f->feat_max);
    f->emb_scale = malloc((size_t)(n * s) * sizeof *f->emb_scale);
    const int64_t R = f->real_start[n] * (L - 1);
    f->ffn_a = malloc((size_t)(R > 0 ? R * h : 1) * sizeof *f->ffn_a);
    f->ffn_r = malloc((size_t)(R > 0 ? R * h : 1) * sizeof *f->ffn_r);
    f->ffn_scale = malloc((size_t)(R > 0 ? R : 1) * sizeof *f->ffn_scale);
    f->att_ctx = malloc((size_t)(R > 0 ? R * h : 1) * sizeof *f->att_ctx);
    f->att_z = malloc((size_t)(R > 0 ? R * h : 1) * sizeof *f->att_z);
    f->att_q = malloc((size_t)(R > 0 ? R * h : 1) * sizeof *f->att_q);
    f->att_k = malloc((size_t)(R > 0 ? R * h : 1) * sizeof *f->att_k);
    f->att_v = malloc((size_t)(R > 0 ? R * h : 1) * sizeof *f->att_v);
    f->att_spread = malloc((size_t)(R > 0 ? R * b->heads : 1) * sizeof *f->att_spread);
    f->att_lse = malloc((size_t)(R > 0 ? f->real_start[n] * b->heads : 1) * sizeof *f->att_lse);
    f->att_recv =
        malloc((size_t)(R > 0 ? f->real_start[n] * b->heads * 2 : 1) * sizeof *f->att_recv);
    f->att_cols = malloc((size_t)(n * b->heads * 2 * h) * sizeof *f->att_cols);
    f->layer_width = m->stages[b->first_layer].in_size;
    f->ffn_inter = malloc((size_t)(R > 0 ? R * b->inter : 1) * sizeof *f->ffn_inter);
    f->tokens = calloc((size_t)(2 * n * s), sizeof *f->tokens);
    f->emb_u_max = calloc((size_t)(n * h), sizeof *f->emb_u_max);
    f->pool_row = malloc((size_t)h * sizeof *f->pool_row);
    float *ws = malloc((size_t)(s * (7 * h + b->inter) + s * s) * sizeof *ws);
    double *dws = malloc((size_t)(s * h + 2 * s + 4 * h) * sizeof *dws);
    int rc = -1;
    if (!f->norms || !f->qkv_max || !f->cls_att || !f->cls_tok || !f->settle_dx || !f->cls_z ||
        !f->cls_grad || !f->settle_dz || !f->cls_jac || !f->ln_scale || !f->feat_max ||
        !f->emb_scale || !f->tokens || !f->ffn_a || !f->ffn_r || !f->ffn_scale || !f->ffn_inter ||
        !f->att_ctx || !f->att_z || !f->att_q || !f->att_k || !f->att_v || !f->att_spread ||
        !f->att_lse || !f->att_recv || !f->att_cols || !f->emb_u_max || !f->pool_row || !ws || !dws)
        goto done;
    for (int li = 0; li < L; li++)
        if (layer_norms_init(&f->norms[li], m, b, li))
            goto done;
    f->emb_ln = max_abs(m->params[b->ln_w].value, h);
    const float *pw = m->params[b->pool_w].value;
    for (int64_t j = 0; j < h; j++) {
        double acc = 0;
        for (int64_t c = 0; c < h; c++)
            acc += (double)pw[j * h + c] * pw[j * h + c];
        f->pool_row[j] = sqrt(acc) * 1.0001;
    }
    const float *word = m->params[b->word].value, *pos = m->params[b->pos].value,
                *type = m->params[b->type].value;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < s; t++) { /* the embedding sum, as the stage adds it */
            int64_t *tok = f->tokens + i * s + t;
            tok[0] = pvf_tensor_get_i64(ids, i * s + t);
            tok[n * s] = types ? pvf_tensor_get_i64(types, i * s + t) : 0;
            const float *w = word + tok[0] * h, *ty = type + tok[n * s] * h;
            for (int64_t j = 0; j < h; j++)
                ws[t * h + j] = (w[j] + ty[j]) + pos[t * h + j];
            f->emb_scale[i * s + t] =
                (float)(ln_stats(ws + t * h, 1, h, b->eps, f->emb_u_max + i * h) / 1.0001);
        }
        for (int li = 0; li < L; li++)
            layer_stats(m, b, f, li, i,
                        g->stage_in[b->first_layer + li] +
                            i * m->stages[b->first_layer + li].in_size,
                        ws, dws);
    }
    if (cls_linearize(m, g, b, f))
        goto done;
    settle_thresholds(m, g, b, f);
    rc = 0;
done:
    free(ws);
    free(dws);
    return rc ? pvf_err_set(err, "out of memory") : 0;
}

int pvf_bert_fast_prepare(const pvf_model *m, const pvf_golden *g, void **state, pvf_err *err) {
    const bert *b = m->arch_state;
    bert_fast *f = calloc(1, sizeof *f);
    if (!f)
        return pvf_err_set(err, "out of memory");
    *state = f;
    const int64_t n = g->n, s = pvf_bert_seq_len(g->eval), h = b->hidden;
    f->n = n;
    f->s = s;
    pvf_tensor ids, types, mask;
    pvf_bert_eval_int(g->eval, "input_ids", &ids);
    int has_types = pvf_bert_eval_int(g->eval, "token_type_ids", &types);
    int has_mask = pvf_bert_eval_int(g->eval, "attention_mask", &mask);
    const int last = b->first_layer + (int)b->layers - 1;
    const int64_t width = m->stages[last].in_size;
    f->all_rows = malloc((size_t)n * sizeof *f->all_rows);
    f->keys = malloc((size_t)(n * s * h) * sizeof *f->keys);
    f->values = malloc((size_t)(n * s * h) * sizeof *f->values);
    f->mask_add = malloc((size_t)(n * s) * sizeof *f->mask_add);
    f->real_start = calloc((size_t)n + 1, sizeof *f->real_start);
    f->real_tok = malloc((size_t)(n * s > 0 ? n * s : 1) * sizeof *f->real_tok);
    if (!f->all_rows || !f->keys || !f->values || !f->mask_add || !f->real_start || !f->real_tok ||
        build_readers(&ids, n, s, b->vocab, &f->word_start, &f->word_rows) ||
        build_readers(has_types ? &types : NULL, n, s, b->types, &f->type_start, &f->type_rows))
        return pvf_err_set(err, "out of memory");
    const int *p = b->lp[b->layers - 1];
    int cls_real = 1;
    for (int64_t i = 0; i < n; i++) {
        f->all_rows[i] = i;
        const float *x = g->stage_in[last] + i * width;
        /* as the layer stage computes them (pvf_linear over the sequence's tokens) */
        pvf_linear(x, s, h, m->params[p[K]].value, m->params[p[K_B]].value, h, f->keys + i * s * h);
        pvf_linear(x, s, h, m->params[p[V]].value, m->params[p[V_B]].value, h,
                   f->values + i * s * h);
        f->real_start[i + 1] = f->real_start[i];
        for (int64_t t = 0; t < s; t++) {
            int64_t real = has_mask ? pvf_tensor_get_i64(&mask, i * s + t) : 1;
            f->mask_add[i * s + t] = pvf_attention_mask_add(real);
            if (real)
                f->real_tok[f->real_start[i + 1]++] = t;
        }
        cls_real &= f->real_start[i + 1] > f->real_start[i] && f->real_tok[f->real_start[i]] == 0;
    }
    f->cls_real = cls_real;
    if (position_readers(f, b->maxpos))
        return pvf_err_set(err, "out of memory");
    return bound_data_init(m, g, b, f, &ids, has_types ? &types : NULL, err);
}

/* Rows first..last of a [rows, cols] table that elements lo..hi-1 touch; 0
 * when they span several rows. */
static int one_table_row(const pvf_fault_effect *eff, int64_t cols, int64_t *row) {
    *row = eff->lo / cols;
    return (eff->hi - 1) / cols == *row;
}

/* A fault's changed compute values: deltas[k] = faulty - golden of elements
 * lo + k, all in row `row` of the parameter viewed as [rows, cols]. */
typedef struct fault_delta {
    int64_t lo, n, row, cols;
    double *deltas;
    double l2; /* their L2 norm; INFINITY when any is not finite */
} fault_delta;

static int fault_delta_init(const pvf_exec *ex, int param, const pvf_fault_effect *eff,
                            fault_delta *fd) {
    const pvf_param *p = &ex->m->params[param];
    fd->cols = p->ndim >= 2 ? p->numel / p->shape[0] : p->numel;
    fd->lo = eff->lo;
    fd->n = eff->hi - eff->lo;
    fd->row = eff->lo / fd->cols;
    fd->deltas = NULL;
    fd->l2 = INFINITY;
    if ((eff->hi - 1) / fd->cols != fd->row)
        return 1; /* several rows: not bounded here */
    fd->deltas = malloc((size_t)fd->n * sizeof *fd->deltas);
    if (!fd->deltas)
        return -1;
    const float *faulty = pvf_exec_weights(ex, param);
    double sq = 0;
    for (int64_t k = 0; k < fd->n; k++) {
        fd->deltas[k] = (double)faulty[fd->lo + k] - (double)p->value[fd->lo + k];
        sq += fd->deltas[k] * fd->deltas[k];
    }
    fd->l2 = sq < INFINITY ? sqrt(sq) : INFINITY; /* NaN fails the test too */
    return 0;
}

/* sum_k |delta_k| feat[column of k]: a bound on the change of the faulty
 * row's dot product with any input whose |feature| is at most feat. */
static double delta_dot(const fault_delta *fd, const float *feat) {
    if (!(fd->l2 < INFINITY))
        return INFINITY;
    double acc = 0;
    for (int64_t k = 0; k < fd->n; k++)
        acc += fabs(fd->deltas[k] * feat[(fd->lo + k) % fd->cols]);
    return acc * BOUND_INFLATE;
}

/* The change injected into layer li of sequence i by a fault in its
 * parameter of role `role`; 0, or 1 when this role is not bounded. */
static int layer_inject(const bert *b, const bert_fast *f, int li, int64_t i, int role,
                        const fault_delta *fd, inject *in) {
    const int64_t h = b->hidden, d = h / b->heads;
    const float *fm = f->feat_max + (li * f->n + i) * FEAT_FLOATS(b);
    const double one = fd->l2 < INFINITY ? fabs(fd->deltas[0]) * BOUND_INFLATE : INFINITY;
    memset(in, 0, sizeof *in);
    in->head = -1;
    switch (role) {
    case Q:
    case K:
    case V:
    case Q_B:
    case K_B:
    case V_B: {
        const int bias = role == Q_B || role == K_B || role == V_B;
        const int64_t o = bias ? fd->lo : fd->row, hd = o / d, heads = b->heads;
        double c = bias ? one : delta_dot(fd, fm + ST_X * h); /* |change of feature o| */
        /* One feature o of the queries, keys or values changes, by at most c
         * at every token. A value: the context's feature o by at most c (a
         * weighted mean), the output by column o of Wo times that. A query
         * or key: every score of head hd by at most eps (a query: beyond a
         * shift common to the keys, c |k_o - mean k_o|; a key: c |q_o|),
         * its weights by a factor e^{+-2 eps}, its context by at most
         * (e^{2 eps} - 1) times its values' radius. */
        const double rd = 1.0 / sqrt((double)d),
                     vrad = f->qkv_max[(li * f->n + i) * 3 * heads + 2 * heads + hd];
        double eps = INFINITY;
        if (role == V || role == V_B) {
            in->attn = f->norms[li].o_col[o] * c * BOUND_INFLATE;
            return in->attn < INFINITY ? 0 : 1;
        }
        if (role == Q || role == Q_B) {
            if (c * fm[ST_K * h + o] * rd < 20) /* the common shift stays moderate */
                eps = c * fm[ST_KC * h + o] * rd;
        } else {
            eps = c * fm[ST_Q * h + o] * rd;
        }
        if (eps < 20) {
            in->attn = f->norms[li].o * expm1(2 * eps) * vrad * BOUND_INFLATE;
            return 0;
        }
        in->head = hd; /* the plain per-head bound (not finite either: never settles) */
        if (role == Q || role == Q_B)
            in->q = c;
        else if (role == K || role == K_B)
            in->k = c;
        else
            in->v = c;
        return 0;
    }
    case O:
        in->attn = delta_dot(fd, fm + ST_CTX * h);
        return 0;
    case O_B:
        in->attn = one;
        return 0;
    case LN1_W:
        in->ln1 = one * fm[ST_U1 * h + fd->lo];
        return 0;
    case LN1_B:
        in->ln1 = one;
        return 0;
    case FF1:
        in->ff = GELU_LIPSCHITZ * delta_dot(fd, fm + ST_A * h) * f->norms[li].ff2_col[fd->row];
        return 0;
    case FF1_B:
        in->ff = GELU_LIPSCHITZ * one * f->norms[li].ff2_col[fd->lo];
        return 0;
    case FF2:
        in->ff = delta_dot(fd, fm + ST_INTER * h);
        return 0;
    case FF2_B:
        in->ff = one;
        return 0;
    case LN2_W:
        in->ln2 = one * fm[ST_U2 * h + fd->lo];
        return 0;
    case LN2_B:
        in->ln2 = one;
        return 0;
    default:
        return 1;
    }
}

/* A query or key fault (role) in layer li before the last, with moderate
 * faulty values, for sequence i, token by token over its unmasked tokens:
 * feature o of the query of token u changes by dq_u (a key: of key t by
 * dk_t), the golden values known. Query u's scores move by dq_u k_t,o (or
 * q_u,o dk_t), over sqrt(d), which lies within eps_u of its midrange over t:
 * a shift common to the keys; so its weights change by a factor e^{+-2
 * eps_u} and its attention output (through Wo) by at most
 * (e^{2 eps_u} - 1) att_spread. Sets in->attn to the largest over the
 * tokens and adds each token's bound on its layer output to rc (if not
 * NULL) when it is split; 1 when the scores may move far (no bound). */
static int qk_token_inject(const pvf_golden *g, const bert *b, const bert_fast *f, int li,
                           int64_t i, int role, const fault_delta *fd, inject *in,
                           row_changes *rc) {
    const int64_t h = b->hidden, heads = b->heads, d = h / heads, R = f->real_start[f->n];
    const int64_t base = f->real_start[i], L = f->real_start[i + 1] - base;
    const int64_t *tok = f->real_tok + base;
    const int bias = role == Q_B || role == K_B;
    const int64_t o = bias ? fd->lo : fd->row, hd = o / d;
    const float *x = g->stage_in[b->first_layer + li] + i * f->layer_width;
    const float *fm = f->feat_max + (li * f->n + i) * FEAT_FLOATS(b);
    const double rd = 1.0 / sqrt((double)d);
    double worst = 0, lo = INFINITY, hi = -INFINITY, big = 0;
    inject one; /* a token's attention output change alone */
    memset(&one, 0, sizeof one);
    one.head = -1;
    if (!(fd->l2 < INFINITY))
        return 1;
    for (int64_t u = 0; u < L; u++) { /* each token's change of feature o */
        const float *row = x + tok[u] * h;
        double c = 0;
        if (bias)
            c = fd->deltas[0];
        else
            for (int64_t e = 0; e < fd->n; e++)
                c += fd->deltas[e] * row[(fd->lo + e) % fd->cols];
        c *= 1 + 1e-12 * (double)(fd->n + 2); /* the double sum's rounding, as a factor */
        if (role == Q || role == Q_B) {
            const double shift = fabs(c) * fm[ST_K * h + o] * rd;
            const double eps = fabs(c) * fm[ST_KR * h + o] * rd * BOUND_INFLATE;
            if (!(shift < 20) || !(eps < 20))
                return 1;
            one.attn = expm1(2 * eps) * f->att_spread[(li * R + base + u) * heads + hd];
            worst = fmax(worst, one.attn);
            if (rc && rc->split) {
                one.attn *= BOUND_INFLATE;
                row_changes_add(rc, b, f, i, u, layer_bound(b, f, li, i, 0, &one));
            }
        } else {
            lo = fmin(lo, c);
            hi = fmax(hi, c);
            big = fmax(big, fabs(c));
        }
    }
    if (role == K || role == K_B)
        for (int64_t u = 0; u < L; u++) {
            const double qo = fabs((double)f->att_q[(li * R + base + u) * h + o]);
            const double eps = qo * (hi - lo) * 0.5 * rd * BOUND_INFLATE;
            if (!(qo * big * rd < 20) || !(eps < 20))
                return 1;
            one.attn = expm1(2 * eps) * f->att_spread[(li * R + base + u) * heads + hd];
            worst = fmax(worst, one.attn);
            if (rc && rc->split) {
                one.attn *= BOUND_INFLATE;
                row_changes_add(rc, b, f, i, u, layer_bound(b, f, li, i, 0, &one));
            }
        }
    memset(in, 0, sizeof *in);
    in->head = -1;
    in->attn = worst * BOUND_INFLATE;
    return 0;
}

/* The index among sequence i's unmasked tokens of the one that reads row
 * `row` of embedding table `param` (word, position or token type); -1 when
 * none or several do. */
static int64_t single_reader(const bert *b, const bert_fast *f, int param, int64_t row, int64_t i) {
    int64_t found = -1;
    for (int64_t u = f->real_start[i]; u < f->real_start[i + 1]; u++) {
        const int64_t t = f->real_tok[u];
        const int hit = param == b->pos    ? t == row
                        : param == b->word ? f->tokens[i * f->s + t] == row
                                           : f->tokens[(f->n + i) * f->s + t] == row;
        if (hit && found >= 0)
            return -1;
        if (hit)
            found = u - f->real_start[i];
    }
    return found;
}

/* 1 when sequence i settles under a moderate fault in an embedding table
 * (the faulty weights of ex) that changes its first layer's input at one
 * unmasked token p alone (index u0 of its unmasked tokens), in O(hidden):
 * p's new input row is computed as the embeddings stage does (into row[h])
 * and its change dx taken through the first layer's attention token by
 * token, per head (exact-arithmetic changes, as for the bounds):
 * - p's query, key and value (through Wo: Wo_hd Wv_hd) move by at most
 *   sum_c |dx_c| |column c| of the head's rows, or the largest |dx_c|
 *   through its column plus the rest through the spectral norm: dq, dk, dvo;
 * - query p: its scores move by dx.Wq_hd^T k_t + [t = p] (q_p dk + dq dk),
 *   within eps of a shift common to the keys, eps sqrt(d) = (sum_c |dx_c|
 *   max_t |(Wq_hd^T (k_t - kbar))_c| (att_cols), or dq |k - kbar|) +
 *   (sum_c |dx_c| max_u |(Wk_hd^T q_u)_c|, or |q_p| dk) + dq dk; so its
 *   output moves by at most (e^{2 eps} - 1) att_spread + dvo, its first
 *   LayerNorm input by that plus |dx|;
 * - any other query u sees key p's score move by delta, |delta| <= D (as
 *   the second term of eps, or max|q| dk), and value p alone: with P its
 *   golden weight on p and Z = 1 + P (e^delta - 1) its context moves by
 *   w (v_p - ctx_u) + P' dv, w = P (e^delta - 1) / Z, P' = P e^delta / Z,
 *   |w| <= P (e^D - 1), P' <= P e^D; through Wo by at most
 *   (e^D - 1) max_u P |Wo_hd (v_p - ctx_u)| + e^D max_u P dvo (att_recv).
 * The largest of those changes then goes through the rest of the layer as
 * settles_at_ln1 takes a measured one. */
static int one_token_bound(const pvf_exec *ex, const pvf_golden *g, const bert *b,
                           const bert_fast *f, int64_t i, int64_t u0, float *row) {
    const int64_t h = b->hidden, heads = b->heads, d = h / heads, s = f->s;
    const int64_t u = f->real_start[i] + u0, t = f->real_tok[u];
    const layer_norms *N = &f->norms[0];
    const float *word = pvf_exec_weights(ex, b->word) + f->tokens[i * s + t] * h,
                *type = pvf_exec_weights(ex, b->type) + f->tokens[(f->n + i) * s + t] * h,
                *pos = pvf_exec_weights(ex, b->pos) + t * h;
    const float *x0 = g->stage_in[b->first_layer] + i * f->layer_width + t * h;
    const double rd = 1.0 / sqrt((double)d);
    for (int64_t c = 0; c < h; c++) /* as the embeddings stage computes it */
        row[c] = (word[c] + type[c]) + pos[c];
    pvf_layernorm(row, 1, h, pvf_exec_weights(ex, b->ln_w), pvf_exec_weights(ex, b->ln_b), b->eps);
    /* per head: the column bounds of dq, dk, dvo, and sum_c |dx_c| times
     * att_cols' two maxima (the query's and the key's score terms) */
    double a = 0, top = 0, dq[64] = {0}, dk[64] = {0}, dvo[64] = {0}, sk[64] = {0}, sq[64] = {0};
    int64_t jt = 0;
    if (heads > 64)
        return 0;
    const float *cols = f->att_cols + i * heads * 2 * h;
    for (int64_t c = 0; c < h; c++) {
        const double dx = fabs((double)row[c] - x0[c]);
        a += dx * dx;
        if (dx > top)
            top = dx, jt = c;
        for (int64_t hd = 0; hd < heads; hd++) {
            dq[hd] += dx * N->q_col[hd * h + c];
            dk[hd] += dx * N->k_col[hd * h + c];
            dvo[hd] += dx * N->ov_col[hd * h + c];
            sk[hd] += dx * cols[hd * 2 * h + c];
            sq[hd] += dx * cols[hd * 2 * h + h + c];
        }
    }
    if (!(a < INFINITY))
        return 0;
    if (a == 0)
        return 1; /* its input is golden's */
    /* or its largest feature through its column, the rest through the
     * spectral norm */
    const double rest = sqrt(fmax(0.0, a - top * top)) * 1.0001 + 1e-300;
    a = sqrt(a);
    for (int64_t hd = 0; hd < heads; hd++) {
        dq[hd] = fmin(dq[hd], top * N->q_col[hd * h + jt] + N->q[hd] * rest);
        dk[hd] = fmin(dk[hd], top * N->k_col[hd * h + jt] + N->k[hd] * rest);
        dvo[hd] = fmin(dvo[hd], top * N->ov_col[hd * h + jt] + N->ov[hd] * rest);
    }
    const float *qkv = f->qkv_max + i * 3 * heads, *q = f->att_q + u * h;
    double own = 0, others = 0;
    for (int64_t hd = 0; hd < heads; hd++) {
        double qn = 0;
        for (int64_t e = hd * d; e < (hd + 1) * d; e++)
            qn += (double)q[e] * q[e];
        const double qh = dq[hd] * BOUND_INFLATE, kh = dk[hd] * BOUND_INFLATE,
                     vh = dvo[hd] * BOUND_INFLATE;
        /* |q_u dk| <= sum_c |dx_c| |(Wk_hd^T q_u)_c|, likewise dq (k_t - kbar) */
        const double qdk = fmin(sqrt(qn) * 1.0001 * kh, sk[hd] * BOUND_INFLATE),
                     big = fmin(qkv[hd] * kh, sk[hd] * BOUND_INFLATE) * rd; /* D */
        const double eps =
            (fmin(qh * qkv[heads + hd], sq[hd] * BOUND_INFLATE) + qdk + qh * kh) * rd;
        if (!(eps < 20) || !(big < 20))
            return 0;
        const float *rv = f->att_recv + (u * heads + hd) * 2;
        own += expm1(2 * eps) * f->att_spread[u * heads + hd] + vh;
        others += expm1(big) * rv[1] + exp(big) * rv[0] * vh;
    }
    inject in;
    memset(&in, 0, sizeof in);
    in.head = -1;
    in.attn = fmax(own + a, others) * BOUND_INFLATE;
    if (settles_from_layer(b, f, 0, i, 0, &in))
        return 1;
    row_changes rc; /* the next layer the last: token u0 apart from the others */
    row_changes_init(&rc, b, f, 1);
    if (!rc.split)
        return 0;
    in.attn = (own + a) * BOUND_INFLATE;
    const double dy_own = layer_bound(b, f, 0, i, 0, &in);
    in.attn = others * BOUND_INFLATE;
    const double dy_others = layer_bound(b, f, 0, i, 0, &in);
    for (int64_t v = 0; v < f->real_start[i + 1] - f->real_start[i]; v++)
        row_changes_add(&rc, b, f, i, v, v == u0 ? dy_own : dy_others);
    return rows_settle(b, f, 1, i, &rc);
}

/* 1 when sequence i provably keeps golden's outcome under a fault in the
 * embeddings (param) or in encoder layer li's parameter of role `role`;
 * row: hidden floats of workspace. */
/* The second LayerNorm of cached token `tok` whose input moves by at most
 * dr: the bound on its output's change (with the token's own golden scale,
 * rh = 1 / sqrt(hidden)); INFINITY when there is none (NaN, Inf, or a
 * change that may reach the scale). */
static double ln2_output_change(const bert_fast *f, const layer_norms *N, int64_t tok, double dr,
                                double rh) {
    const double s2 = f->ffn_scale[tok] - dr * rh;
    if (!(dr < INFINITY) || !(s2 > 0))
        return INFINITY;
    return N->ln2 * dr / s2;
}

/* A fault in the attention output or a feed-forward matrix (role) of encoder
 * layer li, the one before the last, for sequence i: each unmasked token's
 * own change, from its cached golden context, first LayerNorm output or
 * GELU output, through the rest of the layer; then the last layer row by
 * row (rows_settle). Tighter than layer_inject's largest feature over the
 * tokens. */
static int token_rows_settle(const bert *b, const bert_fast *f, int li, int64_t i, int role,
                             const fault_delta *fd) {
    const int64_t h = b->hidden, R = f->real_start[f->n], base = li * R + f->real_start[i];
    const int64_t L = f->real_start[i + 1] - f->real_start[i];
    const layer_norms *N = &f->norms[li];
    const double rh = 1.0 / sqrt((double)h);
    row_changes rc;
    row_changes_init(&rc, b, f, li + 1);
    if (!rc.split || !(fd->l2 < INFINITY))
        return 0;
    inject in; /* an attention output fault: the token's change there */
    memset(&in, 0, sizeof in);
    in.head = -1;
    for (int64_t u = 0; u < L; u++) {
        double dy;
        if (role == O) {
            in.attn = delta_dot(fd, f->att_ctx + (base + u) * h);
            dy = layer_bound(b, f, li, i, 0, &in);
        } else { /* the second LayerNorm's input moves by dr */
            const double dr = role == FF1
                                  ? GELU_LIPSCHITZ * delta_dot(fd, f->ffn_a + (base + u) * h) *
                                        N->ff2_col[fd->row]
                                  : delta_dot(fd, f->ffn_inter + (base + u) * b->inter);
            dy = ln2_output_change(f, N, base + u, dr * BOUND_INFLATE, rh);
        }
        if (!(dy < INFINITY))
            return 0;
        row_changes_add(&rc, b, f, i, u, dy);
    }
    return rows_settle(b, f, li + 1, i, &rc);
}

static int fault_settles(const pvf_exec *ex, const pvf_golden *g, const bert *b, const bert_fast *f,
                         int param, int li, int role, const fault_delta *fd, int moderate,
                         int64_t i, float *row) {
    if (li < 0) { /* embeddings */
        double dx;
        if (param == b->ln_w)
            dx = embedding_bound(b, f, param, 0, i, 0,
                                 fd->l2 * BOUND_INFLATE * f->emb_u_max[i * b->hidden + fd->lo]);
        else if (param == b->ln_b)
            dx = embedding_bound(b, f, param, 0, i, 0, fd->l2 * BOUND_INFLATE);
        else /* a word, position or token-type row: the sum moves by the row's change */
            dx = embedding_bound(b, f, param, fd->row, i, fd->l2 * BOUND_INFLATE, 0);
        if (settles_from_layer(b, f, 0, i, dx, NULL))
            return 1;
        /* a moderate row fault read by one unmasked token: token by token */
        if (!moderate || b->layers < 2 || param == b->ln_w || param == b->ln_b)
            return 0;
        const int64_t u0 = single_reader(b, f, param, fd->row, i);
        return u0 >= 0 && one_token_bound(ex, g, b, f, i, u0, row);
    }
    inject in;
    if (layer_inject(b, f, li, i, role, fd, &in))
        return 0;
    if (settles_from_layer(b, f, li, i, 0, &in))
        return 1;
    /* queries and keys of layers before the last: token by token (padded
     * tokens stay finite, so their keys keep weight 0) */
    if (moderate && li < b->layers - 1 && (role == Q || role == Q_B || role == K || role == K_B) &&
        !qk_token_inject(g, b, f, li, i, role, fd, &in, NULL)) {
        if (settles_from_layer(b, f, li, i, 0, &in))
            return 1;
        row_changes rc; /* the next layer the last: again, row by row */
        row_changes_init(&rc, b, f, li + 1);
        return rc.split && !qk_token_inject(g, b, f, li, i, role, fd, &in, &rc) &&
               rows_settle(b, f, li + 1, i, &rc);
    }
    if (li == b->layers - 2 && (role == O || role == FF1 || role == FF2))
        return token_rows_settle(b, f, li, i, role, fd);
    return 0;
}

/* ---- Poisoned sequences ----------------------------------------------
 *
 * pvf_layernorm turns a row whose variance exceeds FLT_MAX (or that holds a
 * NaN or Inf) into NaN. A NaN row at any token of an encoder layer's output
 * makes that token's key NaN in the next layer, hence every score, weight
 * and context of every query NaN (NaN + mask is NaN; pvf_softmax keeps it),
 * and so every later activation and every logit: the sequence is judged
 * non-finite, whatever else the fault does. A huge faulty value in a layer's
 * attention output or feed-forward part shows this at one token, proved
 * soundly from the token's cached golden activations: the faulty dot
 * product in double, give or take far more than the full pass's fp32
 * rounding (at most (terms + 3) 2^-24 sum |term|) and than the rounding
 * differences of the cached inputs from the full pass's: 1e-3 sum |term|
 * (only values far beyond 1e20 are judged, so this costs nothing). */

#define ROUNDING(terms) fmax(1e-3, 1.01 * (double)((terms) + 3) / 16777216.0)

/* 1 when a LayerNorm row of h values, one of which is y +- e and the others
 * at most `others` in magnitude, certainly has a variance above FLT_MAX:
 * sum (x - mean)^2 >= (h - 1) / h (|y| - e - others)^2. */
static int huge_row(double y, double e, double others, int64_t h) {
    const double gap = fabs(y) - e - others;
    return gap > 0 && (double)(h - 1) / ((double)h * h) * gap * gap > FLT_MAX * 1.001;
}

/* 1 when the fault (a huge value in row o of the attention output, the
 * feed-forward matrices or their biases of layer li, before the last)
 * certainly makes the output of unmasked token u (index u of the real-token
 * caches) NaN. */
static int token_poisoned(const pvf_exec *ex, const pvf_golden *g, const bert *b,
                          const bert_fast *f, int li, int role, int64_t o, int64_t i, int64_t u) {
    const int *p = b->lp[li];
    const int64_t h = b->hidden, ni = b->inter, R = f->real_start[f->n], idx = li * R + u;
    const int ff1 = role == FF1 || role == FF1_B, ff2 = role == FF2 || role == FF2_B;
    const int wrole = role == O || role == O_B ? O : ff1 ? FF1 : FF2;
    const float *w = pvf_exec_weights(ex, p[wrole]) + o * (ff2 ? ni : h);
    const float *bias = pvf_exec_weights(ex, p[wrole == O ? O_B : ff1 ? FF1_B : FF2_B]);
    const float *in = wrole == O ? f->att_ctx + idx * h
                      : ff2      ? f->ffn_inter + idx * ni
                                 : f->ffn_a + idx * h;
    const int64_t n = ff2 ? ni : h;
    double y = bias[o], sum = fabs((double)bias[o]);
    for (int64_t j = 0; j < n; j++) {
        y += (double)in[j] * w[j];
        sum += fabs((double)in[j] * w[j]);
    }
    if (!isfinite(y))
        return 1; /* a NaN or Inf faulty value: NaN or Inf there, whatever the order */
    if (!ff1) {   /* one feature of the LayerNorm input: + the residual */
        const float *resid =
            wrole == O ? g->stage_in[b->first_layer + li] + i * f->layer_width + f->real_tok[u] * h
                       : f->ffn_a + idx * h;
        const float *gold = wrole == O ? f->att_z + idx * h : f->ffn_r + idx * h;
        y += resid[o];
        sum += fabs((double)resid[o]);
        double others = 0;
        for (int64_t j = 0; j < h; j++)
            if (j != o)
                others = fmax(others, fabs((double)gold[j]));
        return huge_row(y, ROUNDING(n) * sum, others * 1.01 + 1, h);
    }
    /* a GELU input: its full-pass value lies in [y - e, y + e] */
    const double e = ROUNDING(n) * sum;
    if (fabs(y) - e > FLT_MAX * 1.0001)
        return 1; /* overflows to +-Inf: GELU gives Inf or NaN, the LayerNorm NaN */
    if (!(y - e >= 10))
        return 0; /* GELU(y) = y holds exactly in fp32 only for large y */
    /* the second LayerNorm's input: W2[:, o] GELU(y) + a bounded rest */
    const float *w2 = pvf_exec_weights(ex, p[FF2]), *b2 = pvf_exec_weights(ex, p[FF2_B]);
    const float *inter = f->ffn_inter + idx * ni, *a = f->ffn_a + idx * h,
                *res = f->ffn_r + idx * h;
    double imax = 0, mean = 0, dir = 0, rest = 0;
    for (int64_t j = 0; j < ni; j++)
        imax = fmax(imax, fabs((double)inter[j]));
    for (int64_t k = 0; k < h; k++)
        mean += w2[k * ni + o];
    mean /= (double)h;
    const double lo = y - e, hi = y + e, gam = ROUNDING(ni);
    for (int64_t k = 0; k < h; k++) {
        const double c = w2[k * ni + o];
        dir += (c - mean) * (c - mean);
        const double r =
            fabs(c) * (hi - lo) + fabs((double)res[k]) + fabs(c * inter[o]) +
            2 * gam *
                (f->norms[li].ff2_row_l1[k] * imax + fabs((double)b2[k]) + fabs((double)a[k])) +
            gam * fabs(c) * hi;
        rest += r * r;
    }
    const double gap = lo * sqrt(dir) - sqrt(rest); /* |centred row| >= gap */
    return gap > 0 && gap * gap / (double)h > FLT_MAX * 1.001;
}

/* 1 when a huge fault in row o of layer li's value projection (role V or
 * V_B; before the last layer) certainly makes the output of one unmasked
 * token of sequence i NaN. The scores are golden, so padded keys weigh
 * exactly 0 (a non-finite value poisons the token anyway). At unmasked key
 * t the faulty value o lies within y_t +- e_t (its dot product in double,
 * give or take ROUNDING); the token's golden attention weights p_t,
 * recomputed in double from the cached queries and keys, lie within a
 * factor 1 +- eta of the full pass's (eta from 1e-4 of each score's sum of
 * |terms|, far more than both computations' rounding, plus softmax's own);
 * so its context o lies within sum p_t y_t give or take
 * eta sum p_t |y_t| + (1 + eta) sum p_t e_t and the sum's rounding. The
 * first LayerNorm's input is then Wo[:, o] times it plus a bounded rest
 * (the other context features at most their golden maxima), and as in
 * token_poisoned its centred row is too long for a finite variance. ws:
 * 2 L + 2 hidden doubles. */
static int value_poisoned(const pvf_exec *ex, const pvf_golden *g, const bert *b,
                          const bert_fast *f, int li, int64_t o, int64_t i, double *ws) {
    const int *p = b->lp[li];
    const int64_t h = b->hidden, d = h / b->heads, hd = o / d, R = f->real_start[f->n];
    const int64_t base = f->real_start[i], L = f->real_start[i + 1] - base;
    const int64_t *tok = f->real_tok + base;
    const float *x = g->stage_in[b->first_layer + li] + i * f->layer_width;
    const float *w = pvf_exec_weights(ex, p[V]) + o * h, bias = pvf_exec_weights(ex, p[V_B])[o];
    const float *wo = pvf_exec_weights(ex, p[O]), *bo = pvf_exec_weights(ex, p[O_B]);
    const float *fm = f->feat_max + (li * f->n + i) * FEAT_FLOATS(b);
    const double rd = 1.0 / sqrt((double)d);
    double *y = ws, *e = ws + L;
    for (int64_t t = 0; t < L; t++) {
        const float *row = x + tok[t] * h;
        double acc = bias, mag = fabs((double)bias);
        for (int64_t j = 0; j < h; j++) {
            acc += (double)row[j] * w[j];
            mag += fabs((double)row[j] * w[j]);
        }
        if (!(mag < INFINITY))
            return 0;
        y[t] = acc;
        e[t] = ROUNDING(h) * mag;
    }
    /* the direction Wo[:, o], centred */
    double mean = 0, dir = 0;
    for (int64_t k = 0; k < h; k++)
        mean += wo[k * h + o];
    mean /= (double)h;
    for (int64_t k = 0; k < h; k++)
        dir += ((double)wo[k * h + o] - mean) * ((double)wo[k * h + o] - mean);
    const double gam = ROUNDING(h);
    /* Each cached query or key feature c, like the full pass's, is a float
     * dot product within (h + 3) 2^-24 qa_c (ka_c) of the exact one (qa_c:
     * sum_j max|x_j| |Wq_cj| + |b_c|): the two differ by at most dqk qa_c
     * (ka_c), each score by the sum above, and the full pass's own score
     * by sr times its sum of |terms|; 4x slack on both. */
    double *qa = ws + 2 * L, *ka = qa + d;
    const float *wq = pvf_exec_weights(ex, p[Q]), *wk = pvf_exec_weights(ex, p[K]),
                *bq = pvf_exec_weights(ex, p[Q_B]), *bk = pvf_exec_weights(ex, p[K_B]);
    for (int64_t c = 0; c < d; c++) {
        const int64_t row = hd * d + c;
        qa[c] = fabs((double)bq[row]);
        ka[c] = fabs((double)bk[row]);
        for (int64_t j = 0; j < h; j++) {
            qa[c] += fm[ST_X * h + j] * fabs((double)wq[row * h + j]);
            ka[c] += fm[ST_X * h + j] * fabs((double)wk[row * h + j]);
        }
    }
    const double dqk = 8.0 * (double)(h + 3) / 16777216.0, sr = 4.0 * (double)(d + 3) / 16777216.0;
    for (int64_t u = 0; u < L; u++) {
        const float *qu = f->att_q + (li * R + base + u) * h + hd * d;
        double top = -INFINITY, err = 0;
        for (int64_t t = 0; t < L; t++) { /* the largest score, its error */
            const float *kt = f->att_k + (li * R + base + t) * h + hd * d;
            double sc = 0, mag = 0, moved = 0;
            for (int64_t c = 0; c < d; c++) {
                sc += (double)qu[c] * kt[c];
                mag += fabs((double)qu[c] * kt[c]);
                moved += dqk * (qa[c] * fabs((double)kt[c]) + ka[c] * fabs((double)qu[c]) +
                                dqk * qa[c] * ka[c]);
            }
            top = fmax(top, sc * rd);
            err = fmax(err, (sr * (mag + moved) + moved) * rd);
        }
        const double eta = expm1(2 * err) + 1e-4; /* and softmax's own rounding */
        if (!(eta < 0.1))
            continue;
        double z = 0, sum = 0, sabs = 0, se = 0;
        for (int64_t t = 0; t < L; t++) {
            const float *kt = f->att_k + (li * R + base + t) * h + hd * d;
            double sc = 0;
            for (int64_t c = 0; c < d; c++)
                sc += (double)qu[c] * kt[c];
            const double pt = exp(sc * rd - top);
            z += pt;
            sum += pt * y[t];
            sabs += pt * fabs(y[t]);
            se += pt * e[t];
        }
        sum /= z;
        sabs /= z;
        se /= z;
        const double spread = eta * sabs + (1 + eta) * se;
        const double round = ROUNDING(f->s) * (1 + eta) * (sabs + se);
        const double clo = fabs(sum) - spread - round, chi = fabs(sum) + spread + round;
        if (!(clo > 0) || !(chi < FLT_MAX))
            continue;
        const float *xu = x + tok[u] * h;
        double rest = 0;
        for (int64_t k = 0; k < h; k++) {
            double others = fabs((double)bo[k]) + fabs((double)xu[k]);
            for (int64_t c = 0; c < h; c++)
                if (c != o)
                    others += fabs((double)wo[k * h + c]) * (fm[ST_CTX * h + c] * 1.01 + 1e-3);
            const double c = fabs((double)wo[k * h + o]);
            const double r = others + 2 * gam * (others + c * chi) + c * (chi - clo);
            rest += r * r;
        }
        const double gap = clo * sqrt(dir) - sqrt(rest); /* |centred row| >= gap */
        if (gap > 0 && gap * gap / (double)h > FLT_MAX * 1.001)
            return 1;
    }
    return 0;
}

/* Judges sequence i's outputs non-finite (all NaN): a stage's worth of work
 * was done for it. */
static void judge_nan(pvf_exec *ex, const pvf_golden *g, const bert *b, int64_t i,
                      pvf_trial_result *r) {
    float nan_out[64];
    for (int64_t c = 0; c < b->labels && c < 64; c++)
        nan_out[c] = NAN;
    r->stage_rows++;
    pvf_fast_judge_row(ex, g, i, nan_out, r);
}

/* 1 when a fault in row `row` of embedding table `param` (word, position or
 * token type) makes the embedding LayerNorm of some token of sequence i, a
 * padded one included, NaN: its faulty sum, as the embeddings stage adds it
 * (into sum[hidden]), overflows pvf_layernorm. The NaN row reaches every
 * logit (see above). */
static int embedding_poisoned(const pvf_exec *ex, const bert *b, const bert_fast *f, int param,
                              int64_t row, int64_t i, float *sum) {
    const int64_t h = b->hidden, s = f->s;
    const float *word = pvf_exec_weights(ex, b->word), *pos = pvf_exec_weights(ex, b->pos),
                *type = pvf_exec_weights(ex, b->type);
    for (int64_t t = 0; t < s; t++) {
        const int64_t w = f->tokens[i * s + t], ty = f->tokens[(f->n + i) * s + t];
        if (param == b->word ? w != row : param == b->type ? ty != row : t != row)
            continue;
        for (int64_t c = 0; c < h; c++)
            sum[c] = (word[w * h + c] + type[ty * h + c]) + pos[t * h + c];
        if (pvf_layernorm_overflows(sum, h))
            return 1;
    }
    return 0;
}

/* Moves the sequences of rows[0..k) that a huge fault in layer li (role,
 * compute elements lo..hi; li < 0: a row of embedding table `param`)
 * certainly poisons to r, judged non-finite; returns how many remain in
 * rows. */
static int64_t drop_poisoned(pvf_exec *ex, const pvf_golden *g, const bert *b, const bert_fast *f,
                             int param, int li, int role, const pvf_fault_effect *eff,
                             int64_t *rows, int64_t k, pvf_trial_result *r) {
    const int bias = role == O_B || role == FF1_B || role == FF2_B || role == V_B;
    const int value = role == V || role == V_B;
    const int64_t cols = role == FF2 ? b->inter : b->hidden;
    const int64_t o = bias ? eff->lo : eff->lo / cols;
    if (b->labels > 64 || k == 0)
        return k; /* not settled here: the exact way */
    const int table = li < 0 && (param == b->word || param == b->pos || param == b->type) &&
                      (eff->hi - 1) / b->hidden == eff->lo / b->hidden; /* one row */
    if (!table && (li < 0 || li >= b->layers - 1 ||
                   !(role == O || role == O_B || role == FF1 || role == FF1_B || role == FF2 ||
                     role == FF2_B || (value && f->cls_real)) ||
                   (bias ? eff->hi - eff->lo != 1 : (eff->hi - 1) / cols != o)))
        return k;
    /* scratch: value_poisoned's, or an embedding sum */
    const size_t wsn = table   ? (size_t)b->hidden * sizeof(float)
                       : value ? (size_t)(2 * f->s + 2 * b->hidden) * sizeof(double)
                               : 0;
    void *ws = wsn ? malloc(wsn) : NULL;
    if (wsn && !ws)
        return k; /* not settled here: the exact way */
    int64_t kept = 0;
    for (int64_t j = 0; j < k; j++) {
        const int64_t i = rows[j];
        int poisoned = table ? embedding_poisoned(ex, b, f, param, eff->lo / b->hidden, i, ws)
                             : value && value_poisoned(ex, g, b, f, li, o, i, ws);
        for (int64_t u = f->real_start[i];
             !table && !value && u < f->real_start[i + 1] && !poisoned; u++)
            poisoned = token_poisoned(ex, g, b, f, li, role, o, i, u);
        if (poisoned) {
            judge_nan(ex, g, b, i, r);
        } else {
            rows[kept++] = i;
        }
    }
    free(ws);
    return kept;
}

/* Floats of executor scratch the last layer's [CLS] path needs. */
static int64_t cls_scratch(const bert *b, int64_t s) {
    return PVF_CHUNK * (6 * b->hidden + b->inter) + 2 * s * b->hidden + s;
}

/* Features f0..f1 of rows x[n, h] through w[*, h] and bias, recomputed
 * exactly (the faulty rows' dot products) into out[n, h]. */
static void faulty_features(const float *x, int64_t n, int64_t h, const float *w, const float *bias,
                            int64_t f0, int64_t f1, float *out) {
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = f0; o <= f1; o++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < h; j++)
                acc += x[t * h + j] * w[o * h + j];
            out[t * h + o] = acc + bias[o];
        }
}

/* The rest of an encoder layer (parameters p) at L tokens from the first
 * LayerNorm's input a [L, h], as pvf_bert_encoder_layer computes it: its
 * output rows into x; inter: L * intermediate floats. */
#define W(j) pvf_exec_weights(ex, p[j])
static void layer_tail_ln1(const pvf_exec *ex, const bert *b, const int *p, int64_t L, float *a) {
    pvf_layernorm(a, L, b->hidden, W(LN1_W), W(LN1_B), b->eps);
}

static void layer_tail_gelu(const pvf_exec *ex, const bert *b, const int *p, int64_t L,
                            const float *a, float *inter) {
    pvf_linear(a, L, b->hidden, W(FF1), W(FF1_B), b->inter, inter);
    pvf_gelu_erf(inter, L * b->inter);
}

static void layer_tail_to_gelu(const pvf_exec *ex, const bert *b, const int *p, int64_t L, float *a,
                               float *inter) {
    layer_tail_ln1(ex, b, p, L, a);
    layer_tail_gelu(ex, b, p, L, a, inter);
}

static void layer_tail_from_gelu(const pvf_exec *ex, const bert *b, const int *p, int64_t L,
                                 const float *a, const float *inter, float *x) {
    const int64_t h = b->hidden;
    pvf_linear(inter, L, b->inter, W(FF2), W(FF2_B), h, x);
    for (int64_t j = 0; j < L * h; j++)
        x[j] += a[j];
    pvf_layernorm(x, L, h, W(LN2_W), W(LN2_B), b->eps);
#undef W
}

static void layer_tail(const pvf_exec *ex, const bert *b, const int *p, int64_t L, float *a,
                       float *inter, float *x) {
    layer_tail_to_gelu(ex, b, p, L, a, inter);
    layer_tail_from_gelu(ex, b, p, L, a, inter, x);
}

/* A fault in the last encoder layer: its [CLS] rows, from the cached keys and
 * values (the faulty features of those recomputed), then pvf_fast_rows from
 * the pooler on. */
static int last_layer_trial(pvf_exec *ex, const pvf_golden *g, int role,
                            const pvf_fault_effect *eff, const int64_t *rows, int64_t k,
                            pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const bert *b = m->arch_state;
    const bert_fast *f = g->fast;
    const int last = b->first_layer + (int)b->layers - 1;
    const int *p = b->lp[b->layers - 1];
    const int64_t h = b->hidden, s = f->s, d = h / b->heads, width = m->stages[last].in_size;
    if (m->scratch_floats < cls_scratch(b, s))
        return 1;
    float *x = ex->scratch, *q = x + PVF_CHUNK * h, *ctx = q + PVF_CHUNK * h,
          *a = ctx + PVF_CHUNK * h, *inter = a + PVF_CHUNK * h, *res = inter + PVF_CHUNK * b->inter,
          *kbuf = res + PVF_CHUNK * h, *vbuf = kbuf + s * h, *scores = vbuf + s * h;
    /* A key or value fault changes output features f0..f1 of every token. */
    const int kv = role == K || role == K_B ? K : role == V || role == V_B ? V : -1;
    const int weight_fault = role == K || role == V;
    const int64_t f0 = weight_fault ? eff->lo / h : eff->lo,
                  f1 = weight_fault ? (eff->hi - 1) / h : eff->hi - 1;
#define W(i) pvf_exec_weights(ex, p[i])
    for (int64_t first = 0; first < k; first += PVF_CHUNK) {
        const int64_t c = k - first < PVF_CHUNK ? k - first : PVF_CHUNK;
        for (int64_t i = 0; i < c; i++)
            memcpy(x + i * h, g->stage_in[last] + rows[first + i] * width, (size_t)h * sizeof *x);
        pvf_linear(x, c, h, W(Q), W(Q_B), h, q);
        for (int64_t i = 0; i < c; i++) {
            const int64_t row = rows[first + i];
            const float *keys = f->keys + row * s * h, *values = f->values + row * s * h;
            if (kv >= 0) {
                float *buf = kv == K ? kbuf : vbuf;
                memcpy(buf, kv == K ? keys : values, (size_t)(s * h) * sizeof *buf);
                const float *w = W(kv), *bias = W(kv == K ? K_B : V_B);
                const float *xs = g->stage_in[last] + row * width;
                faulty_features(xs, s, h, w, bias, f0, f1, buf);
                if (kv == K)
                    keys = buf;
                else
                    values = buf;
            }
            pvf_attention(q + i * h, 1, keys, values, s, b->heads, d, f->mask_add + row * s,
                          ctx + i * h, scores);
        }
        pvf_linear(ctx, c, h, W(O), W(O_B), h, a);
        for (int64_t j = 0; j < c * h; j++)
            a[j] += x[j];
        layer_tail(ex, b, p, c, a, inter, res);
        r->stage_rows += c;
        if (pvf_fast_rows(ex, g, last + 1, rows + first, c, res, r, err))
            return -1;
    }
#undef W
    return 0;
}

/* A fault whose faulty values are finite and at most this large keeps every
 * activation of a padded token finite (far below fp32's range: one faulty
 * value times golden weights and LayerNorm-bounded rows), so padded keys
 * keep their softmax weight of exactly 0 and only unmasked tokens matter. */
#define PADDED_SAFE 1e4

/* Squared L2 distance of x from golden g in double (NaN and Inf carry). */
static double sq_change(const float *x, const float *g, int64_t n) {
    double d = 0;
    for (int64_t c = 0; c < n; c++)
        d += ((double)x[c] - g[c]) * ((double)x[c] - g[c]);
    return d;
}

/* 1 when sequence i settles with its first LayerNorm inputs in encoder layer
 * li (before the last) at its L unmasked tokens computed exactly as a[L, h]
 * and everything before them golden: the largest change of a row, against
 * the cached golden rows, through the rest of the layer's bound (golden
 * weights from there on). Far cheaper than the feed-forward part, and the
 * change there is measured rather than bounded through attention. */
static int settles_at_ln1(const bert *b, const bert_fast *f, int li, int64_t i, int64_t L,
                          const float *a) {
    const int64_t h = b->hidden, R = f->real_start[f->n];
    const float *gold = f->att_z + (li * R + f->real_start[i]) * h;
    double dz = 0;
    for (int64_t u = 0; u < L; u++) {
        double sq = 0;
        for (int64_t c = 0; c < h; c++) {
            const double dv = (double)a[u * h + c] - gold[u * h + c];
            sq += dv * dv;
        }
        if (!(sq < INFINITY))
            return 0; /* NaN or Inf: the exact way */
        dz = fmax(dz, sqrt(sq));
    }
    inject in;
    memset(&in, 0, sizeof in);
    in.head = -1;
    in.attn = dz * BOUND_INFLATE;
    if (settles_from_layer(b, f, li, i, 0, &in))
        return 1;
    row_changes rc; /* the next layer the last: row by row */
    row_changes_init(&rc, b, f, li + 1);
    if (!rc.split)
        return 0;
    for (int64_t u = 0; u < L; u++) {
        in.attn = sqrt(sq_change(a + u * h, gold + u * h, h)) * BOUND_INFLATE;
        row_changes_add(&rc, b, f, i, u, layer_bound(b, f, li, i, 0, &in));
    }
    return rows_settle(b, f, li + 1, i, &rc);
}

/* 1 when sequence i settles with its first LayerNorm's outputs a[L, h] (NULL:
 * golden) and GELU outputs inter[L, intermediate] (golden outside features
 * j0..j1) in encoder layer li (before the last) at its L unmasked tokens
 * computed exactly, the second feed-forward matrix and LayerNorm golden:
 * token u's second LayerNorm input moves by at most
 * dr_u = |da_u| + |W2| |dg_u| from the cached golden one (for a few changed
 * features, or sum_j |dg_uj| |W2[:, j]| when smaller), its output (the next
 * layer's input) by at most max|weight| dr_u / (sigma_u - dr_u / sqrt(H))
 * with its own golden scale sigma_u; the largest of those through the chain
 * from layer li + 1. The measured GELU changes make this far tighter than
 * bounding the whole feed-forward part, and it skips the second matrix
 * product. */
static int settles_at_ffn(const bert *b, const bert_fast *f, int li, int64_t i, int64_t L,
                          const float *a, const float *inter, int64_t j0, int64_t j1) {
    const layer_norms *N = &f->norms[li];
    const int64_t h = b->hidden, ni = b->inter, R = f->real_start[f->n];
    const int64_t base = li * R + f->real_start[i];
    const double rh = 1.0 / sqrt((double)h);
    row_changes rc;
    row_changes_init(&rc, b, f, li + 1);
    for (int64_t u = 0; u < L; u++) {
        const float *ga = f->ffn_a + (base + u) * h, *gi = f->ffn_inter + (base + u) * ni;
        const float *iu = inter + u * ni;
        const double *col = N->ff2_col;
        /* NaN and Inf carry into the sums */
        const double da = a ? sq_change(a + u * h, ga, h) : 0;
        double dg = 0, cols = 0;
        if (j1 - j0 < 16) { /* a few features: their columns of W2 */
            for (int64_t j = j0; j <= j1; j++) {
                const double dv = (double)iu[j] - gi[j];
                dg += dv * dv;
                cols += fabs(dv) * col[j];
            }
        } else {
            dg = sq_change(iu + j0, gi + j0, j1 - j0 + 1);
            cols = INFINITY;
        }
        if (!(dg < INFINITY) || !(cols == cols))
            return 0; /* NaN or Inf: the exact way */
        const double dr = (sqrt(da) + fmin(N->ff2 * sqrt(dg), cols)) * BOUND_INFLATE;
        const double dy = ln2_output_change(f, N, base + u, dr, rh);
        if (!(dy < INFINITY))
            return 0; /* NaN, Inf or no bound: the exact way */
        row_changes_add(&rc, b, f, i, u, dy);
    }
    return rows_settle(b, f, li + 1, i, &rc);
}

/* 1 when sequence i settles with its first LayerNorm's outputs a[L, h] in
 * encoder layer li (before the last) at its L unmasked tokens computed
 * exactly, the feed-forward part and the second LayerNorm golden: token u's
 * second LayerNorm input moves by at most dr_u = ffn_plain |da_u| from the
 * cached golden one (ffn_tail_norm), its output as in settles_at_ffn. The
 * measured change of each token's LayerNorm output, with that token's own
 * second LayerNorm scale, is tighter than settles_at_ln1's bound through
 * the first LayerNorm, and it skips the first feed-forward product and its
 * GELU. */
static int settles_at_ln1_out(const bert *b, const bert_fast *f, int li, int64_t i, int64_t L,
                              const float *a) {
    const int64_t h = b->hidden, R = f->real_start[f->n], base = li * R + f->real_start[i];
    const double rh = 1.0 / sqrt((double)h), tail = f->norms[li].ffn_plain;
    row_changes rc;
    row_changes_init(&rc, b, f, li + 1);
    for (int64_t u = 0; u < L; u++) {
        const double da = sq_change(a + u * h, f->ffn_a + (base + u) * h, h);
        const double dy =
            ln2_output_change(f, &f->norms[li], base + u, tail * sqrt(da) * BOUND_INFLATE, rh);
        if (!(dy < INFINITY))
            return 0; /* NaN, Inf or no bound: the exact way */
        row_changes_add(&rc, b, f, i, u, dy);
    }
    return rows_settle(b, f, li + 1, i, &rc);
}

/* layer_tail for a fault before encoder layer li's feed-forward part (li
 * before the last): 1 when sequence i settles after the first LayerNorm
 * (settles_at_ln1_out) or after the GELU (settles_at_ffn); x not computed
 * then. */
static int layer_tail_settles(const pvf_exec *ex, const bert *b, const bert_fast *f, int li,
                              int64_t i, int64_t L, float *a, float *inter, float *x) {
    layer_tail_ln1(ex, b, b->lp[li], L, a);
    if (settles_at_ln1_out(b, f, li, i, L, a))
        return 1;
    layer_tail_gelu(ex, b, b->lp[li], L, a, inter);
    if (settles_at_ffn(b, f, li, i, L, a, inter, 0, b->inter - 1))
        return 1;
    layer_tail_from_gelu(ex, b, b->lp[li], L, a, inter, x);
    return 0;
}

/* A fault in the feed-forward part of encoder layer li (role) of sequence
 * i: that layer's output rows at the L unmasked tokens into x, from the
 * cached golden activations, recomputing exactly what changed: a first
 * matrix row (or bias) its GELU feature of every token, then the second
 * matrix product; a second matrix row its output feature; a LayerNorm
 * parameter the LayerNorm. ws: L * intermediate floats. */
static int ffn_from_cache(const pvf_exec *ex, const bert *b, const bert_fast *f, int li, int role,
                          int64_t f0, int64_t f1, int64_t i, int64_t L, float *x, float *ws) {
    const int *p = b->lp[li];
    const int64_t h = b->hidden, ni = b->inter, R = f->real_start[f->n];
    const int64_t base = li * R + f->real_start[i];
    const float *a = f->ffn_a + base * h, *inter = f->ffn_inter + base * ni,
                *res = f->ffn_r + base * h;
#define W(j) pvf_exec_weights(ex, p[j])
    if (role == FF1 || role == FF1_B) {
        memcpy(ws, inter, (size_t)(L * ni) * sizeof *ws);
        const float *w = W(FF1), *bias = W(FF1_B);
        for (int64_t u = 0; u < L; u++)
            for (int64_t o = f0; o <= f1; o++) { /* the faulty dot product */
                float acc = 0.0f;
                for (int64_t j = 0; j < h; j++)
                    acc += a[u * h + j] * w[o * h + j];
                float v = acc + bias[o];
                pvf_gelu_erf(&v, 1);
                ws[u * ni + o] = v;
            }
        /* settled by the bound from the measured GELU changes when small */
        if (settles_at_ffn(b, f, li, i, L, NULL, ws, f0, f1))
            return 1;
        pvf_linear(ws, L, ni, W(FF2), W(FF2_B), h, x);
        for (int64_t j = 0; j < L * h; j++)
            x[j] += a[j];
    } else {
        memcpy(x, res, (size_t)(L * h) * sizeof *x);
        if (role == FF2 || role == FF2_B) {
            const float *w = W(FF2), *bias = W(FF2_B);
            for (int64_t u = 0; u < L; u++)
                for (int64_t o = f0; o <= f1; o++) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < ni; j++)
                        acc += inter[u * ni + j] * w[o * ni + j];
                    x[u * h + o] = (acc + bias[o]) + a[u * h + o];
                }
        }
    }
    pvf_layernorm(x, L, h, W(LN2_W), W(LN2_B), b->eps);
#undef W
    return 0;
}

/* A fault in the attention output dense or the first LayerNorm of encoder
 * layer li (role) of sequence i: that layer's output rows at its L unmasked
 * tokens into x, from the cached context and LayerNorm input: an output row
 * (or bias) its feature of every token, exactly, then the first LayerNorm
 * and the whole feed-forward part. xin: the layer's golden input rows; ws:
 * L * (h + intermediate) floats. */
static int attn_out_from_cache(const pvf_exec *ex, const bert *b, const bert_fast *f, int li,
                               int role, int64_t f0, int64_t f1, int64_t i, int64_t L,
                               const float *xin, float *x, float *ws) {
    const int *p = b->lp[li];
    const int64_t h = b->hidden, R = f->real_start[f->n], base = li * R + f->real_start[i];
    const float *ctx = f->att_ctx + base * h;
    float *a = ws, *inter = ws + L * h;
#define W(j) pvf_exec_weights(ex, p[j])
    memcpy(a, f->att_z + base * h, (size_t)(L * h) * sizeof *a);
    if (role == O || role == O_B) {
        const float *w = W(O), *bias = W(O_B);
        for (int64_t u = 0; u < L; u++)
            for (int64_t o = f0; o <= f1; o++) { /* the faulty dot product */
                float acc = 0.0f;
                for (int64_t j = 0; j < h; j++)
                    acc += ctx[u * h + j] * w[o * h + j];
                a[u * h + o] = (acc + bias[o]) + xin[u * h + o];
            }
        if (settles_at_ln1(b, f, li, i, L, a))
            return 1;
    }
#undef W
    return layer_tail_settles(ex, b, f, li, i, L, a, inter, x);
}

/* A fault in the query, key or value projection of encoder layer li (role)
 * of sequence i: that layer's output rows at its L unmasked tokens into x,
 * from the cached queries, keys and values: the faulty rows f0..f1 of the
 * projection (or its bias) their features of every token, exactly, then
 * attention over the unmasked tokens (zero_mask: L zeros) and the rest of
 * the layer. xin: the layer's golden input rows; ws: L * (5 h +
 * intermediate) + L * L floats. */
static int qkv_from_cache(const pvf_exec *ex, const bert *b, const bert_fast *f, int li, int role,
                          int64_t f0, int64_t f1, int64_t i, int64_t L, const float *xin,
                          const float *zero_mask, float *x, float *ws) {
    const int *p = b->lp[li];
    const int64_t h = b->hidden, R = f->real_start[f->n], base = li * R + f->real_start[i];
    float *q = ws, *k = q + L * h, *v = k + L * h, *ctx = v + L * h, *a = ctx + L * h,
          *inter = a + L * h, *scores = inter + L * b->inter;
    const int kind = role == Q || role == Q_B ? Q : role == K || role == K_B ? K : V;
    float *changed = kind == Q ? q : kind == K ? k : v;
#define W(j) pvf_exec_weights(ex, p[j])
    memcpy(q, f->att_q + base * h, (size_t)(L * h) * sizeof *q);
    memcpy(k, f->att_k + base * h, (size_t)(L * h) * sizeof *k);
    memcpy(v, f->att_v + base * h, (size_t)(L * h) * sizeof *v);
    const float *w = W(kind), *bias = W(kind == Q ? Q_B : kind == K ? K_B : V_B);
    faulty_features(xin, L, h, w, bias, f0, f1, changed);
    /* the heads of features f0..f1 change; the others keep golden's context */
    const int64_t d = h / b->heads;
    memcpy(ctx, f->att_ctx + base * h, (size_t)(L * h) * sizeof *ctx);
    for (int64_t hd = f0 / d; hd <= f1 / d; hd++)
        pvf_attention_head(q, L, k, v, L, b->heads, d, hd, zero_mask, ctx, scores);
    pvf_linear(ctx, L, h, W(O), W(O_B), h, a);
    for (int64_t j = 0; j < L * h; j++)
        a[j] += xin[j];
    if (settles_at_ln1(b, f, li, i, L, a))
        return 1;
#undef W
    return layer_tail_settles(ex, b, f, li, i, L, a, inter, x);
}

/* 1 when sequence i settles under an embedding fault that changed its
 * first layer's input at one unmasked token p alone (index u0 of its L
 * unmasked tokens), from x1, the new input row, and q1, k1, v1, its new
 * query, key and value; wo: the attention output matrix. The first
 * LayerNorm's input of each unmasked token moves by at most dz (bounded
 * below), which settles_from_layer then takes through the rest of the layer,
 * as settles_at_ln1 takes a measured change: without the attention of every
 * query and the output product. Per head, in double from the cached golden
 * rows (exact-arithmetic changes, as for the bounds):
 * - query p: its golden and new softmax and context computed, its change
 *   through Wo, plus the change of its residual row;
 * - any other query u sees key p's score move by delta = q_u (k1 - k_p) /
 *   sqrt(d) and value p move by dv alone, so with P its golden weight on p
 *   and Z = 1 + P (e^delta - 1) its context moves by
 *   w (v_p - ctx_u) + P' dv, w = P (e^delta - 1) / Z, P' = P e^delta / Z,
 *   |w| <= P |e^delta - 1| / min(1, e^delta), P' <= P max(1, e^delta);
 *   through Wo: |w| |Wo| |v_p - ctx_u| + P' |Wo_hd dv|. P from the cached
 *   log-sum-exp with 1e-5 of slack in the exponent (its float storage),
 *   |v_p - ctx_u| plus the cached context's float rounding (at most
 *   (L + 8) 2^-22 max_t |v_t|).
 * Skipped when half the change of p's input row alone does not settle. */
static int one_token_settles(const bert *b, const bert_fast *f, const float *wo, int64_t i,
                             int64_t L, int64_t u0, const float *x0, const float *x1,
                             const float *q1, const float *k1, const float *v1) {
    const int64_t h = b->hidden, heads = b->heads, d = h / heads, base = f->real_start[i];
    const float *gq = f->att_q + base * h, *gk = f->att_k + base * h, *gv = f->att_v + base * h,
                *gc = f->att_ctx + base * h, *lse = f->att_lse + base * heads;
    const double rd = 1.0 / sqrt((double)d), o = f->norms[0].o;
    inject in;
    memset(&in, 0, sizeof in);
    in.head = -1;
    double a = 0;
    for (int64_t c = 0; c < h; c++)
        a += ((double)x1[c] - x0[c]) * ((double)x1[c] - x0[c]);
    in.attn = 0.5 * sqrt(a);
    if (!settles_from_layer(b, f, 0, i, 0, &in))
        return 0; /* hopeless (dz ~ |dx| then): the exact way at once */
    double *dc = malloc((size_t)(h + 2 * L) * sizeof *dc);
    if (!dc)
        return 0; /* the exact way */
    double *p0 = dc + h, *p1 = p0 + L;
    int settled = 0;
    for (int64_t hd = 0; hd < heads; hd++) { /* query p: golden and new context */
        const int64_t c0 = hd * d;
        double top0 = -INFINITY, top1 = -INFINITY, sum0 = 0, sum1 = 0;
        for (int64_t t = 0; t < L; t++) {
            const float *kt = t == u0 ? k1 : gk + t * h;
            double s0 = 0, s1 = 0;
            for (int64_t e = c0; e < c0 + d; e++) {
                s0 += (double)gq[u0 * h + e] * gk[t * h + e];
                s1 += (double)q1[e] * kt[e];
            }
            p0[t] = s0 * rd;
            p1[t] = s1 * rd;
            top0 = fmax(top0, p0[t]);
            top1 = fmax(top1, p1[t]);
        }
        for (int64_t t = 0; t < L; t++) {
            p0[t] = exp(p0[t] - top0);
            p1[t] = exp(p1[t] - top1);
            sum0 += p0[t];
            sum1 += p1[t];
        }
        for (int64_t e = c0; e < c0 + d; e++)
            dc[e] = 0;
        for (int64_t t = 0; t < L; t++) {
            const float *vt = t == u0 ? v1 : gv + t * h;
            const double w0 = p0[t] / sum0, w1 = p1[t] / sum1;
            for (int64_t e = c0; e < c0 + d; e++)
                dc[e] += w1 * vt[e] - w0 * gv[t * h + e];
        }
    }
    double dz = 0, sq = 0; /* query p's row: Wo dc plus its residual change */
    for (int64_t r = 0; r < h; r++) {
        double acc = (double)x1[r] - x0[r];
        for (int64_t c = 0; c < h; c++)
            acc += (double)wo[r * h + c] * dc[c];
        sq += acc * acc;
    }
    dz = sqrt(sq);
    in.attn = dz * BOUND_INFLATE;
    if (!settles_from_layer(b, f, 0, i, 0, &in)) /* false for NaN: no need to go on */
        goto done;
    double vmax[64] = {0}, wd[64] = {0}; /* per head: max_t |v_t|, |Wo_hd dv| */
    if (heads > 64)
        goto done;
    for (int64_t r = 0; r < h; r++) { /* Wo_hd dv, every head */
        for (int64_t hd = 0; hd < heads; hd++) {
            double acc = 0;
            for (int64_t e = hd * d; e < (hd + 1) * d; e++)
                acc += (double)wo[r * h + e] * ((double)v1[e] - gv[u0 * h + e]);
            wd[hd] += acc * acc;
        }
    }
    for (int64_t hd = 0; hd < heads; hd++)
        wd[hd] = sqrt(wd[hd]);
    for (int64_t t = 0; t < L; t++)
        for (int64_t hd = 0; hd < heads; hd++) {
            double n2 = 0;
            for (int64_t e = hd * d; e < (hd + 1) * d; e++)
                n2 += (double)gv[t * h + e] * gv[t * h + e];
            vmax[hd] = fmax(vmax[hd], sqrt(n2));
        }
    for (int64_t u = 0; u < L; u++) {
        if (u == u0)
            continue;
        double du = 0;
        for (int64_t hd = 0; hd < heads; hd++) {
            double delta = 0, score = 0, dist = 0;
            for (int64_t e = hd * d; e < (hd + 1) * d; e++) {
                const double qe = gq[u * h + e], gap = (double)gv[u0 * h + e] - gc[u * h + e];
                delta += qe * ((double)k1[e] - gk[u0 * h + e]);
                score += qe * gk[u0 * h + e];
                dist += gap * gap;
            }
            delta *= rd;
            const double P = fmin(1.0, exp(score * rd - lse[u * heads + hd] + 1e-5));
            const double ed = exp(delta);
            dist = sqrt(dist) + (double)(L + 8) / 4194304.0 * vmax[hd];
            du += P * fabs(expm1(delta)) / fmin(1.0, ed) * o * dist + P * fmax(1.0, ed) * wd[hd];
        }
        dz = fmax(dz, du); /* NaN fails below */
    }
    in.attn = dz * BOUND_INFLATE;
    settled = settles_from_layer(b, f, 0, i, 0, &in);
done:
    free(dc);
    return settled;
}

/* A fault in the embeddings, for sequence i: the first encoder layer's
 * output rows at its L unmasked tokens into x, from its new input rows xin
 * there and its cached golden queries, keys and values: those of the
 * tokens whose input row changed recomputed, then attention over the
 * unmasked tokens (zero_mask: L zeros) and the rest of the layer; 1 when the
 * sequence settles at the first LayerNorm's input (x not computed). ws: as
 * qkv_from_cache's. */
static int embedded_from_cache(const pvf_exec *ex, const pvf_golden *g, const bert *b,
                               const bert_fast *f, int64_t i, int64_t L, const float *xin,
                               const float *zero_mask, float *x, float *ws) {
    const int *p = b->lp[0];
    const int64_t h = b->hidden, base = f->real_start[i];
    const int64_t *tok = f->real_tok + base;
    const float *gold = g->stage_in[b->first_layer] + i * f->layer_width;
    float *q = ws, *k = q + L * h, *v = k + L * h, *ctx = v + L * h, *a = ctx + L * h,
          *inter = a + L * h, *scores = inter + L * b->inter;
    /* the changed rows packed, and their projections, in inter's space */
    float *xc = inter, *qc = xc + L * h, *kc = qc + L * h, *vc = kc + L * h;
#define W(j) pvf_exec_weights(ex, p[j])
    memcpy(q, f->att_q + base * h, (size_t)(L * h) * sizeof *q);
    memcpy(k, f->att_k + base * h, (size_t)(L * h) * sizeof *k);
    memcpy(v, f->att_v + base * h, (size_t)(L * h) * sizeof *v);
    int64_t nc = 0;
    for (int64_t u = 0; u < L; u++)
        if (memcmp(xin + u * h, gold + tok[u] * h, (size_t)h * sizeof *xin))
            memcpy(xc + nc++ * h, xin + u * h, (size_t)h * sizeof *xc);
    if (nc) {
        pvf_linear(xc, nc, h, W(Q), W(Q_B), h, qc);
        pvf_linear(xc, nc, h, W(K), W(K_B), h, kc);
        pvf_linear(xc, nc, h, W(V), W(V_B), h, vc);
        for (int64_t u = 0, c = 0; u < L; u++) /* the same rows, in the same order */
            if (memcmp(xin + u * h, gold + tok[u] * h, (size_t)h * sizeof *xin)) {
                memcpy(q + u * h, qc + c * h, (size_t)h * sizeof *q);
                memcpy(k + u * h, kc + c * h, (size_t)h * sizeof *k);
                memcpy(v + u * h, vc + c * h, (size_t)h * sizeof *v);
                c++;
                if (nc == 1 && one_token_settles(b, f, W(O), i, L, u, gold + tok[u] * h,
                                                 xin + u * h, q + u * h, k + u * h, v + u * h))
                    return 1;
            }
    }
    pvf_attention(q, L, k, v, L, b->heads, h / b->heads, zero_mask, ctx, scores);
    pvf_linear(ctx, L, h, W(O), W(O_B), h, a);
    for (int64_t j = 0; j < L * h; j++)
        a[j] += xin[j];
    if (settles_at_ln1(b, f, 0, i, L, a))
        return 1;
#undef W
    return layer_tail_settles(ex, b, f, 0, i, L, a, inter, x);
}

/* The bound audit of cls_moved: sequence i's exact logits from its last
 * layer's [CLS] output x, each margin's change against its bound for a
 * change of at most dz in that layer's [CLS] first LayerNorm input. */
static void audit_margins(pvf_exec *ex, const pvf_golden *g, int64_t i, const float *x, double dz) {
    const pvf_model *m = ex->m;
    const bert *b = m->arch_state;
    const int64_t h = b->hidden, labels = b->labels, top = g->top1[i];
    float *pooled = malloc((size_t)(h + labels) * sizeof *pooled), *logit = pooled + h;
    if (!pooled || !(dz < INFINITY)) {
        free(pooled);
        return;
    }
    const int pooler = b->first_layer + (int)b->layers; /* then the classifier */
    if (m->stages[pooler].run(m, pooler, ex, i, 1, x, pooled) ||
        m->stages[pooler + 1].run(m, pooler + 1, ex, i, 1, pooled, logit)) {
        free(pooled);
        return;
    }
    const float *gold = g->out + i * m->out_size;
    for (int64_t k = 0; k < labels; k++) {
        if (k == top)
            continue;
        const double moved = cls_moved(b, g->fast, i, dz, k);
        if (!(moved < INFINITY))
            continue;
        const double change = fabs(((double)logit[top] - logit[k]) - ((double)gold[top] - gold[k]));
        const double slack = margin_slack(gold, top, k);
        ex->audit_margin_checked++;
        ex->audit_margin_violations += !(change <= moved + slack);
        if (change > 10 * slack)
            ex->audit_margin_min_ratio = fmin(ex->audit_margin_min_ratio, moved / change);
    }
    free(pooled);
}

/* Bound audit (pvf_exec.audit_bounds): the last layer's [CLS] output x of
 * sequence i, computed exactly, against dy, the row-by-row bound of its
 * change (layer_bound_rows) that did not settle it. Allows golden's and the
 * recompute's rounding (1e-4 of the row); then its margins (audit_margins)
 * against dz, the bound on its first LayerNorm input's change. */
static void audit_cls(pvf_exec *ex, const pvf_golden *g, int64_t i, const float *x, double dy,
                      double dz) {
    const bert *b = ex->m->arch_state;
    audit_margins(ex, g, i, x, dz);
    if (!(dy < INFINITY))
        return; /* no bound: nothing claimed */
    const int pooler = b->first_layer + (int)b->layers;
    const float *gold = g->stage_in[pooler] + i * b->hidden;
    double norm = 0;
    for (int64_t c = 0; c < b->hidden; c++)
        norm += (double)gold[c] * gold[c];
    const double change = sqrt(sq_change(x, gold, b->hidden)), slack = 1e-4 * sqrt(norm);
    ex->audit_checked++;
    ex->audit_violations += !(change <= dy + slack); /* NaN and Inf too */
    if (change > 10 * slack)
        ex->audit_min_ratio = fmin(ex->audit_min_ratio, dy / change);
}

/* 1 when the executor scratch holds real_tokens_forward's buffers. */
static int real_tokens_fit(const pvf_model *m, const bert *b, int64_t s) {
    const int64_t h = b->hidden;
    return m->scratch_floats >= PVF_CHUNK * h + 2 * s * h + s + s * (5 * h + b->inter) + s * s + h;
}

/* Runs sequences rows[0..k) from `stage` (the embeddings or an encoder layer
 * before the last) over their unmasked tokens alone, dropping a sequence
 * whose layer input is golden again (or bounded) at those tokens, and
 * carries the [CLS] rows from the pooler on. A fault in a layer's
 * feed-forward part (role) starts from its cached activations. Only for
 * faults within PADDED_SAFE, or query and key faults whose scores stay
 * finite (qk_scores_finite). Returns 1 when the scratch is too small. */
static int real_tokens_forward(pvf_exec *ex, const pvf_golden *g, int stage, int role,
                               const pvf_fault_effect *eff, const int64_t *rows, int64_t k,
                               pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const bert *b = m->arch_state;
    const bert_fast *f = g->fast;
    const int64_t h = b->hidden, s = f->s;
    const int pooler = b->first_layer + (int)b->layers;
    if (!real_tokens_fit(m, b, s))
        return 1;
    float *out = ex->scratch, *x = out + PVF_CHUNK * h, *y = x + s * h, *zero_mask = y + s * h,
          *ws = zero_mask + s;
    memset(zero_mask, 0, (size_t)s * sizeof *zero_mask); /* every token kept is unmasked */
    int64_t carried[PVF_CHUNK], nout = 0;
    const float *word = pvf_exec_weights(ex, b->word), *pos = pvf_exec_weights(ex, b->pos),
                *type = pvf_exec_weights(ex, b->type);
    const int ffn = stage != 0 && (role == FF1 || role == FF1_B || role == FF2 || role == FF2_B ||
                                   role == LN2_W || role == LN2_B);
    const int attn_out = stage != 0 && (role == O || role == O_B || role == LN1_W || role == LN1_B);
    const int qkv = stage != 0 && (role == Q || role == Q_B || role == K || role == K_B ||
                                   role == V || role == V_B);
    const int weight =
        role == FF1 || role == FF2 || role == O || role == Q || role == K || role == V;
    const int64_t cols = role == FF2 ? b->inter : h;
    const int64_t f0 = weight ? eff->lo / cols : eff->lo,
                  f1 = weight ? (eff->hi - 1) / cols : eff->hi - 1;
    for (int64_t j = 0; j < k; j++) {
        const int64_t i = rows[j], L = f->real_start[i + 1] - f->real_start[i];
        const int64_t *tok = f->real_tok + f->real_start[i];
        int li = stage == 0 ? 0 : stage - b->first_layer, fresh = stage != 0;
        if (stage == 0) { /* as the embeddings stage computes them */
            for (int64_t u = 0; u < L; u++) {
                const float *w = word + f->tokens[i * s + tok[u]] * h,
                            *ty = type + f->tokens[(f->n + i) * s + tok[u]] * h,
                            *ps = pos + tok[u] * h;
                for (int64_t c = 0; c < h; c++)
                    x[u * h + c] = (w[c] + ty[c]) + ps[c];
            }
            pvf_layernorm(x, L, h, pvf_exec_weights(ex, b->ln_w), pvf_exec_weights(ex, b->ln_b),
                          b->eps);
            r->stage_rows++;
        } else if (ffn || attn_out || qkv) { /* the faulty layer's output from its caches */
            int settled; /* by a bound partway through the layer: x not computed */
            if (ffn) {
                settled = ffn_from_cache(ex, b, f, li, role, f0, f1, i, L, x, ws);
            } else {
                for (int64_t u = 0; u < L; u++) /* the layer's golden input rows */
                    memcpy(y + u * h,
                           g->stage_in[stage] + i * m->stages[stage].in_size + tok[u] * h,
                           (size_t)h * sizeof *y);
                if (attn_out)
                    settled = attn_out_from_cache(ex, b, f, li, role, f0, f1, i, L, y, x, ws);
                else
                    settled = qkv_from_cache(ex, b, f, li, role, f0, f1, i, L, y, zero_mask, x, ws);
            }
            r->stage_rows++;
            if (settled)
                continue;
            li++;
            fresh = 0;
        } else {
            for (int64_t u = 0; u < L; u++)
                memcpy(x + u * h, g->stage_in[stage] + i * m->stages[stage].in_size + tok[u] * h,
                       (size_t)h * sizeof *x);
        }
        int dropped = 0;
        /* the row-by-row bounds of the last layer's [CLS] output and its
         * first LayerNorm input */
        double audit_dy = NAN, audit_dz = NAN;
        for (; li < b->layers && !dropped; li++, fresh = 0) {
            const int st = b->first_layer + li;
            const int last = li == b->layers - 1;
            if (!fresh) { /* golden again, or bounded: its outcome is golden's */
                const float *gold = g->stage_in[st] + i * m->stages[st].in_size;
                row_changes rc;
                row_changes_init(&rc, b, f, li);
                for (int64_t u = 0; u < L; u++) {
                    const double sq = sq_change(x + u * h, gold + tok[u] * h, h);
                    row_changes_add(&rc, b, f, i, u, sq < INFINITY ? sqrt(sq) : INFINITY);
                }
                if (rc.max == 0 || rows_settle(b, f, li, i, &rc)) {
                    dropped = 1;
                    break;
                }
                if (ex->audit_bounds && last && rc.split)
                    audit_dy = layer_bound_rows(b, f, li, i, rc.max, &rc, NULL, &audit_dz);
            }
            if (stage == 0 && li == 0 && !last && b->inter >= 4 * h) { /* from its caches */
                r->stage_rows++;
                if (embedded_from_cache(ex, g, b, f, i, L, x, zero_mask, y, ws)) {
                    dropped = 1;
                    break;
                }
            } else {
                pvf_bert_encoder_layer(b, ex, b->lp[li], x, 1, L, last, zero_mask, ws, y);
                r->stage_rows++;
            }
            float *t = x;
            x = y;
            y = t;
        }
        if (dropped)
            continue;
        if (audit_dy == audit_dy)
            audit_cls(ex, g, i, x, audit_dy, audit_dz);
        memcpy(out + nout * h, x, (size_t)h * sizeof *out); /* the [CLS] row */
        carried[nout++] = i;
        if (nout == PVF_CHUNK || j == k - 1) {
            if (pvf_fast_rows(ex, g, pooler, carried, nout, out, r, err))
                return -1;
            nout = 0;
        }
    }
    if (nout && pvf_fast_rows(ex, g, pooler, carried, nout, out, r, err))
        return -1;
    return 0;
}

/* 1 when, under a query or key fault (kind) in row o of encoder layer li
 * (before the last) whose faulty row and bias are w[hidden] and bias, every
 * score of sequence i (every pair of its tokens, padded ones included)
 * provably stays far from overflow: each term of a head's dot product is at
 * most its query's times its key's largest magnitude over the tokens
 * (golden, from feat_max; the faulty feature o at most sum_j max|x_j| |w_j|
 * + |bias|), and the sum of those, with ample slack for rounding, stays
 * below FLT_MAX / 2. Then a real query's scores of padded keys (mask
 * -FLT_MAX) stay below every real key's by far more than expf can lift from
 * 0, padded keys keep weight exactly 0, and a padded token's context stays
 * a weighted mean of golden values: its layer output moderate, so padded
 * keys weigh 0 in the later layers too, as for a moderate fault. NaN and
 * Inf fail the test. */
static int qk_scores_finite(const bert *b, const bert_fast *f, int li, int64_t i, int kind,
                            int64_t o, const float *w, float bias) {
    const int64_t h = b->hidden, d = h / b->heads, hd = o / d;
    const float *fm = f->feat_max + (li * f->n + i) * FEAT_FLOATS(b);
    double changed = fabs((double)bias);
    for (int64_t j = 0; j < h; j++)
        changed += (double)fm[ST_X * h + j] * fabs((double)w[j]);
    changed *= 1.01; /* the float sum's rounding, far more */
    double sum = 0;
    for (int64_t c = hd * d; c < (hd + 1) * d; c++) {
        const double qc = c == o && kind == Q ? changed : fm[ST_Q * h + c] * 1.01;
        const double kc = c == o && kind == K ? changed : fm[ST_K * h + c] * 1.01;
        sum += qc * kc;
    }
    return sum * 1.01 <= 0.5 * FLT_MAX; /* false for NaN */
}

/* A fault in the embeddings or an encoder layer: the candidate sequences
 * rows[0..k) that no bound settles run exactly from the faulty stage (the
 * last layer: its [CLS] path). */
static int bounded_trial(pvf_exec *ex, const pvf_golden *g, int param, int li, int role,
                         const pvf_fault_effect *eff, const int64_t *rows, int64_t k,
                         pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const bert *b = m->arch_state;
    const bert_fast *f = g->fast;
    const int stage = m->params[param].stage;
    fault_delta fd;
    int64_t *kept = malloc((size_t)(k > 0 ? k : 1) * sizeof *kept), nk = 0;
    float *row = malloc((size_t)b->hidden * sizeof *row);
    int rc = kept && row ? fault_delta_init(ex, param, eff, &fd) : -1;
    if (rc < 0) {
        free(kept);
        free(row);
        return pvf_err_set(err, "out of memory");
    }
    /* the faulty values are moderate: padded tokens cannot matter */
    const float *faulty = pvf_exec_weights(ex, param);
    int moderate = f->cls_real;
    for (int64_t e = eff->lo; e < eff->hi; e++)
        moderate &= fabsf(faulty[e]) <= PADDED_SAFE; /* false for NaN */
    for (int64_t j = 0; j < k; j++)
        if (rc == 1 || !fault_settles(ex, g, b, f, param, li, role, &fd, moderate, rows[j], row))
            kept[nk++] = rows[j];
    free(fd.deltas);
    free(row);
    if (!moderate)
        nk = drop_poisoned(ex, g, b, f, param, li, role, eff, kept, nk, r);
    rc = 0;
    /* A huge query or key fault whose scores provably stay finite in a
     * sequence runs it over its unmasked tokens alone (qk_scores_finite). */
    const int qk = role == Q || role == Q_B || role == K || role == K_B;
    if (!moderate && qk && f->cls_real && li >= 0 && li < b->layers - 1 && nk > 0 &&
        real_tokens_fit(m, b, f->s) &&
        (role == Q || role == K ? (eff->hi - 1) / b->hidden == eff->lo / b->hidden
                                : eff->hi - eff->lo == 1)) {
        const int64_t o = role == Q || role == K ? eff->lo / b->hidden : eff->lo;
        const int kind = role == Q || role == Q_B ? Q : K;
        const float *w = pvf_exec_weights(ex, b->lp[li][kind]) + o * b->hidden;
        const float bias = pvf_exec_weights(ex, b->lp[li][kind == Q ? Q_B : K_B])[o];
        int64_t *safe = malloc((size_t)nk * sizeof *safe), ns = 0, rest = 0;
        if (!safe) {
            free(kept);
            return pvf_err_set(err, "out of memory");
        }
        for (int64_t j = 0; j < nk; j++) /* both lists stay ascending */
            if (qk_scores_finite(b, f, li, kept[j], kind, o, w, bias))
                safe[ns++] = kept[j];
            else
                kept[rest++] = kept[j];
        nk = rest;
        if (ns)
            rc = real_tokens_forward(ex, g, stage, role, eff, safe, ns, r, err);
        free(safe);
        if (rc) { /* real_tokens_fit held: an error */
            free(kept);
            return -1;
        }
    }
    if (nk == 0) {
        rc = 0;
    } else if (moderate && li < b->layers - 1 &&
               (rc = real_tokens_forward(ex, g, stage, role, eff, kept, nk, r, err)) != 1) {
        /* done over the unmasked tokens */
    } else if (stage == 0) {
        rc = pvf_fast_rows(ex, g, 0, kept, nk, NULL, r, err);
    } else if (li == b->layers - 1 &&
               (rc = last_layer_trial(ex, g, role, eff, kept, nk, r, err)) != 1) {
        /* done by the [CLS] path */
    } else {
        rc = 0; /* golden inputs of the layer, a chunk at a time, through scratch */
        const int64_t width = m->stages[stage].in_size;
        const int64_t chunk =
            ex->chunk < m->scratch_floats / width ? ex->chunk : m->scratch_floats / width;
        for (int64_t a = 0; a < nk && rc == 0; a += chunk) {
            const int64_t c = nk - a < chunk ? nk - a : chunk;
            for (int64_t j = 0; j < c; j++)
                memcpy(ex->scratch + j * width, g->stage_in[stage] + kept[a + j] * width,
                       (size_t)width * sizeof(float));
            rc = pvf_fast_rows(ex, g, stage, kept + a, c, ex->scratch, r, err);
        }
    }
    free(kept);
    return rc ? -1 : 0;
}

int pvf_bert_fast_bound(const pvf_exec *ex, const pvf_golden *g, int stage, int64_t row,
                        const float *in) {
    const pvf_model *m = ex->m;
    const bert *b = m->arch_state;
    const bert_fast *f = g->fast;
    const int li = stage - b->first_layer, pooler = b->first_layer + (int)b->layers;
    if (!f || li < 0 || stage > pooler || ex->fault_param < 0 ||
        m->params[ex->fault_param].stage >= stage)
        return 0; /* the bounds assume golden weights from this stage on */
    const int64_t h = b->hidden, rows = stage == pooler ? 1 : f->s;
    const float *gold = g->stage_in[stage] + row * m->stages[stage].in_size;
    row_changes rc;
    row_changes_init(&rc, b, f, li);
    for (int64_t t = 0, u = 0; t < rows; t++) {
        const double sq = sq_change(in + t * h, gold + t * h, h);
        if (!(sq < INFINITY))
            return 0;
        if (rc.split && (u >= f->real_start[row + 1] - f->real_start[row] ||
                         f->real_tok[f->real_start[row] + u] != t))
            rc.max = fmax(rc.max, sqrt(sq) * BOUND_INFLATE); /* padded: a key of weight 0 */
        else
            row_changes_add(&rc, b, f, row, u++, sqrt(sq));
    }
    return rows_settle(b, f, li, row, &rc);
}

int pvf_bert_fast_trial(pvf_exec *ex, const pvf_golden *g, int param, const pvf_fault_effect *eff,
                        pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const bert *b = m->arch_state;
    const bert_fast *f = g->fast;
    if (!f)
        return 1;
    int64_t row;
    if (param == b->word || param == b->type) {
        if (!one_table_row(eff, b->hidden, &row))
            return 1;
        const int64_t *start = param == b->word ? f->word_start : f->type_start;
        const int64_t *rows = param == b->word ? f->word_rows : f->type_rows;
        const int64_t k = start[row + 1] - start[row];
        if (k == 0)
            return 0; /* no sequence reads the row: settled, no inference */
        return bounded_trial(ex, g, param, -1, -1, eff, rows + start[row], k, r, err);
    }
    if (param == b->pos && f->cls_real && one_table_row(eff, b->hidden, &row)) {
        /* Moderate values change a padded token alone where the row's
         * position is padded: its key keeps weight 0, so only the sequences
         * with an unmasked token there can change. */
        const float *faulty = pvf_exec_weights(ex, param);
        int moderate = 1;
        for (int64_t e = eff->lo; e < eff->hi; e++)
            moderate &= fabsf(faulty[e]) <= PADDED_SAFE; /* false for NaN */
        if (moderate) {
            const int64_t k = f->pos_start[row + 1] - f->pos_start[row];
            if (k == 0)
                return 0; /* settled, no inference */
            return bounded_trial(ex, g, param, -1, -1, eff, f->pos_rows + f->pos_start[row], k, r,
                                 err);
        }
    }
    if (param == b->pos || param == b->ln_w || param == b->ln_b)
        return bounded_trial(ex, g, param, -1, -1, eff, f->all_rows, f->n, r, err);
    for (int li = 0; li < b->layers; li++)
        for (int role = 0; role < NLP; role++)
            if (b->lp[li][role] == param)
                return bounded_trial(ex, g, param, li, role, eff, f->all_rows, f->n, r, err);
    return 1;
}

int pvf_bert_fast_cls_probe(const pvf_model *m, const pvf_golden *g, int64_t i, int64_t k, double r,
                            const float **z, double *grad_norm, double *moved) {
    const bert *b = m->arch_state;
    const bert_fast *f = g->fast;
    if (!f || i < 0 || i >= f->n || k < 0 || k >= b->labels || k == g->top1[i])
        return -1;
    *z = f->cls_z + i * b->hidden;
    *grad_norm = f->cls_grad[(i * b->labels + k) * CLS_GRAD + CG_Z];
    *moved = cls_moved(b, f, i, r, k);
    return 0;
}
