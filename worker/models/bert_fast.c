/* bert_fast.c - BERT's fast trial path (fast.h): a trial computes only what
 * its fault changes.
 *
 * - A word-embedding row (or token-type row) is read only by the sequences
 *   that hold its token (at any position: padded positions are computed too,
 *   and a NaN there reaches every query through 0 x NaN): an unread row
 *   settles with no inference, a read one runs those sequences alone, from
 *   the embeddings on (pvf_fast_rows drops each as soon as it is golden).
 * - The last encoder layer feeds the pooler only its [CLS] row, which needs
 *   the keys and values of every token: those are cached from the golden
 *   pass, so a fault in that layer recomputes the [CLS] path alone (a key or
 *   value fault first recomputes its changed features of the cached keys or
 *   values, exactly, by their faulty dot products).
 * - Other faults (position rows, embedding LayerNorm, earlier layers, the
 *   pooler and the classifier) run every sequence from the faulty stage. */
#include "bert_internal.h"
#include "fast.h"
#include "kernels.h"
#include "kernels_nn.h"

#include <stdlib.h>
#include <string.h>

typedef struct bert_fast {
    int64_t n, s; /* sequences, tokens per sequence */
    /* Readers of each word-embedding row: sequences word_rows[word_start[w]
     * .. word_start[w + 1]), ascending; likewise for token-type rows. */
    int64_t *word_start, *word_rows;
    int64_t *type_start, *type_rows;
    int64_t *all_rows; /* 0..n-1 */
    /* The last encoder layer's golden keys and values [n, s, hidden] and
     * the additive attention mask [n, s]. */
    float *keys, *values, *mask_add;
} bert_fast;

void pvf_bert_fast_free(void *state) {
    bert_fast *f = state;
    if (!f)
        return;
    free(f->word_start);
    free(f->word_rows);
    free(f->type_start);
    free(f->type_rows);
    free(f->all_rows);
    free(f->keys);
    free(f->values);
    free(f->mask_add);
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
    if (!f->all_rows || !f->keys || !f->values || !f->mask_add ||
        build_readers(&ids, n, s, b->vocab, &f->word_start, &f->word_rows) ||
        build_readers(has_types ? &types : NULL, n, s, b->types, &f->type_start, &f->type_rows))
        return pvf_err_set(err, "out of memory");
    const int *p = b->lp[b->layers - 1];
    for (int64_t i = 0; i < n; i++) {
        f->all_rows[i] = i;
        const float *x = g->stage_in[last] + i * width;
        /* as the layer stage computes them (pvf_linear over the sequence's tokens) */
        pvf_linear(x, s, h, m->params[p[K]].value, m->params[p[K_B]].value, h, f->keys + i * s * h);
        pvf_linear(x, s, h, m->params[p[V]].value, m->params[p[V_B]].value, h,
                   f->values + i * s * h);
        for (int64_t t = 0; t < s; t++)
            f->mask_add[i * s + t] =
                pvf_attention_mask_add(has_mask ? pvf_tensor_get_i64(&mask, i * s + t) : 1);
    }
    return 0;
}

/* Floats of executor scratch the last layer's [CLS] path needs. */
static int64_t cls_scratch(const bert *b, int64_t s) {
    return PVF_CHUNK * (6 * b->hidden + b->inter) + 2 * s * b->hidden + s;
}

/* A fault in the last encoder layer: its [CLS] rows, from the cached keys and
 * values (the faulty features of those recomputed), then pvf_fast_rows from
 * the pooler on. */
static int last_layer_trial(pvf_exec *ex, const pvf_golden *g, int role,
                            const pvf_fault_effect *eff, pvf_trial_result *r, pvf_err *err) {
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
    for (int64_t first = 0; first < f->n; first += PVF_CHUNK) {
        const int64_t c = f->n - first < PVF_CHUNK ? f->n - first : PVF_CHUNK;
        for (int64_t i = 0; i < c; i++)
            memcpy(x + i * h, g->stage_in[last] + (first + i) * width, (size_t)h * sizeof *x);
        pvf_linear(x, c, h, W(Q), W(Q_B), h, q);
        for (int64_t i = 0; i < c; i++) {
            const int64_t row = first + i;
            const float *keys = f->keys + row * s * h, *values = f->values + row * s * h;
            if (kv >= 0) {
                float *buf = kv == K ? kbuf : vbuf;
                memcpy(buf, kv == K ? keys : values, (size_t)(s * h) * sizeof *buf);
                const float *w = W(kv), *bias = W(kv == K ? K_B : V_B);
                const float *xs = g->stage_in[last] + row * width;
                for (int64_t t = 0; t < s; t++)
                    for (int64_t o = f0; o <= f1; o++) { /* the faulty dot product */
                        float acc = 0.0f;
                        for (int64_t j = 0; j < h; j++)
                            acc += xs[t * h + j] * w[o * h + j];
                        buf[t * h + o] = acc + bias[o];
                    }
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
        pvf_layernorm(a, c, h, W(LN1_W), W(LN1_B), b->eps);
        pvf_linear(a, c, h, W(FF1), W(FF1_B), b->inter, inter);
        pvf_gelu_erf(inter, c * b->inter);
        pvf_linear(inter, c, b->inter, W(FF2), W(FF2_B), h, res);
        for (int64_t j = 0; j < c * h; j++)
            res[j] += a[j];
        pvf_layernorm(res, c, h, W(LN2_W), W(LN2_B), b->eps);
        r->stage_rows += c;
        if (pvf_fast_rows(ex, g, last + 1, f->all_rows + first, c, res, r, err))
            return -1;
    }
#undef W
    return 0;
}

/* Rows first..last of a [rows, cols] table that elements lo..hi-1 touch; 0
 * when they span several rows. */
static int one_table_row(const pvf_fault_effect *eff, int64_t cols, int64_t *row) {
    *row = eff->lo / cols;
    return (eff->hi - 1) / cols == *row;
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
        return pvf_fast_rows(ex, g, 0, rows + start[row], k, NULL, r, err) ? -1 : 0;
    }
    const int *lp = b->lp[b->layers - 1];
    for (int role = 0; role < NLP; role++)
        if (lp[role] == param)
            return last_layer_trial(ex, g, role, eff, r, err);
    return 1;
}
