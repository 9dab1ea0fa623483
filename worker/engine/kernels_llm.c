#include "kernels_llm.h"

#include "kernels.h"

#include <math.h>
#include <string.h>

void pvf_rms_norm(const float *x, int64_t rows, int64_t cols, const float *w, float eps, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float ss = 0.0f;
        for (int64_t j = 0; j < cols; j++)
            ss += xr[j] * xr[j];
        float inv = 1.0f / sqrtf(ss / (float)cols + eps);
        if (w)
            for (int64_t j = 0; j < cols; j++)
                yr[j] = xr[j] * inv * w[j];
        else
            for (int64_t j = 0; j < cols; j++)
                yr[j] = xr[j] * inv;
    }
}

void pvf_rope_inv_freq(int64_t d, double theta, const pvf_rope_llama3 *s, float *inv_freq) {
    const double pi = 3.14159265358979323846;
    for (int64_t i = 0; i < d / 2; i++) {
        /* fp32 as the reference: 1 / theta^(2i/d) */
        float th = 1.0f / powf((float)theta, (float)(2 * i) / (float)d);
        if (s && s->factor > 0) {
            double wavelen = 2 * pi / th;
            double low_w = s->original_max_position / s->low_freq_factor;
            double high_w = s->original_max_position / s->high_freq_factor;
            if (wavelen < high_w) {
                /* high frequency: kept */
            } else if (wavelen > low_w) {
                th = (float)(th / s->factor);
            } else if (s->high_freq_factor != s->low_freq_factor) {
                double smooth = (s->original_max_position / wavelen - s->low_freq_factor) /
                                (s->high_freq_factor - s->low_freq_factor);
                th = (float)((1 - smooth) * th / s->factor + smooth * th);
            }
        }
        inv_freq[i] = th;
    }
}

void pvf_rope_apply(float *x, int64_t T, int64_t heads, int64_t d, const float *inv_freq) {
    pvf_rope_apply_from(x, 0, T, heads, d, inv_freq);
}

void pvf_rope_apply_from(float *x, int64_t pos0, int64_t T, int64_t heads, int64_t d,
                         const float *inv_freq) {
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < d / 2; i++) {
            float ang = (float)(pos0 + t) * inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            for (int64_t h = 0; h < heads; h++) {
                float *p = x + (t * heads + h) * d + 2 * i;
                float a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
        }
    }
}

float pvf_attn_temperature(int64_t p, int64_t floor_scale, float attn_scale) {
    float f = floorf(((float)p + 1.0f) / (float)floor_scale);
    return log1pf(f) * attn_scale + 1.0f;
}

void pvf_causal_attention(const float *q, const float *k, const float *v, int64_t T, int64_t nh,
                          int64_t nkv, int64_t d, int64_t chunk, float *out, float *scores) {
    pvf_causal_attention_from(q, k, v, T, 0, nh, nkv, d, chunk, out, scores);
}

/* Keys scored side by side: a plain dot-product loop is one chain of
 * dependent adds per key; ATTN_KEYS independent sums keep the FPU busy.
 * Each sum still runs over i in order from 0.0f, so every score is bit for
 * bit the plain loop's. */
#define ATTN_KEYS 8

/* scores[j] = (q . k_j) * scale for keys j in [lo, hi], k_j = k + j * stride. */
static void attn_scores(const float *qh, const float *k, int64_t stride, int64_t lo, int64_t hi,
                        int64_t d, float scale, float *scores) {
    int64_t j = lo;
    for (; j + ATTN_KEYS <= hi + 1; j += ATTN_KEYS) {
        const float *kj = k + j * stride;
        float acc[ATTN_KEYS] = {0.0f};
        for (int64_t i = 0; i < d; i++) {
            const float qi = qh[i];
            for (int b = 0; b < ATTN_KEYS; b++)
                acc[b] += qi * kj[b * stride + i];
        }
        for (int b = 0; b < ATTN_KEYS; b++)
            scores[j + b] = acc[b] * scale;
    }
    for (; j <= hi; j++) {
        const float *kj = k + j * stride;
        float dot = 0.0f;
        for (int64_t i = 0; i < d; i++)
            dot += qh[i] * kj[i];
        scores[j] = dot * scale;
    }
}

/* oh[i] = sum over j in [lo, hi] of a[j] v_j[i], v_j = v + j * stride,
 * each sum in j order from 0.0f as a plain loop; ATTN_OUT features at a
 * time in registers instead of a store and reload per key. */
#define ATTN_OUT 16
static void attn_weigh(const float *a, const float *v, int64_t stride, int64_t lo, int64_t hi,
                       int64_t d, float *oh) {
    int64_t i0 = 0;
    for (; i0 + ATTN_OUT <= d; i0 += ATTN_OUT) {
        float acc[ATTN_OUT] = {0.0f};
        for (int64_t j = lo; j <= hi; j++) {
            const float aj = a[j], *vj = v + j * stride + i0;
            for (int i = 0; i < ATTN_OUT; i++)
                acc[i] += aj * vj[i];
        }
        memcpy(oh + i0, acc, sizeof acc);
    }
    for (; i0 < d; i0++) {
        float acc = 0.0f;
        for (int64_t j = lo; j <= hi; j++)
            acc += a[j] * v[j * stride + i0];
        oh[i0] = acc;
    }
}

void pvf_causal_attention_from(const float *q, const float *k, const float *v, int64_t T,
                               int64_t first, int64_t nh, int64_t nkv, int64_t d, int64_t chunk,
                               float *out, float *scores) {
    const int64_t group = nh / nkv;
    const float scale = 1.0f / sqrtf((float)d);
    for (int64_t p = first; p < T; p++) {
        int64_t lo = chunk > 0 ? p / chunk * chunk : 0;
        for (int64_t h = 0; h < nh; h++) {
            const float *qh = q + ((p - first) * nh + h) * d;
            const int64_t kvh = h / group;
            attn_scores(qh, k + kvh * d, nkv * d, lo, p, d, scale, scores);
            float mx = -INFINITY;
            for (int64_t j = lo; j <= p; j++)
                if (scores[j] > mx) /* a NaN score still poisons the row below */
                    mx = scores[j];
            /* the exponentials first, then their sum: no call inside the chain */
            for (int64_t j = lo; j <= p; j++)
                scores[j] = expf(scores[j] - mx);
            float sum = 0.0f;
            for (int64_t j = lo; j <= p; j++)
                sum += scores[j];
            for (int64_t j = lo; j <= p; j++)
                scores[j] = scores[j] / sum;
            attn_weigh(scores, v + kvh * d, nkv * d, lo, p, d, out + ((p - first) * nh + h) * d);
        }
    }
}

void pvf_silu_mul(const float *gate, const float *up, int64_t n, float *h) {
    for (int64_t j = 0; j < n; j++)
        h[j] = gate[j] / (1.0f + expf(-gate[j])) * up[j];
}

void pvf_swiglu(const float *gu, int64_t rows, int64_t inter, float *h) {
    for (int64_t r = 0; r < rows; r++)
        pvf_silu_mul(gu + r * 2 * inter, gu + r * 2 * inter + inter, inter, h + r * inter);
}

/* a ranks above b: larger logit, NaN the largest, the lower index on ties */
static int ranks_above(float a, int32_t ia, float b, int32_t ib) {
    if (isnan(a) != isnan(b))
        return isnan(a);
    if (isnan(a) || a == b)
        return ia < ib;
    return a > b;
}

void pvf_router_topk(const float *logits, int64_t rows, int64_t E, int k, int32_t *idx,
                     float *score) {
    for (int64_t r = 0; r < rows; r++) {
        const float *g = logits + r * E;
        int32_t *ir = idx + r * k;
        /* insertion into a sorted list of k: E is small */
        int n = 0;
        for (int32_t e = 0; e < (int32_t)E; e++) {
            int pos = n;
            while (pos > 0 && ranks_above(g[e], e, g[ir[pos - 1]], ir[pos - 1]))
                pos--;
            if (pos >= k)
                continue;
            int last = n < k ? n : k - 1;
            for (int s = last; s > pos; s--)
                ir[s] = ir[s - 1];
            ir[pos] = e;
            if (n < k)
                n++;
        }
        for (int s = 0; s < k; s++)
            score[r * k + s] = 1.0f / (1.0f + expf(-g[ir[s]]));
    }
}

int64_t pvf_experts_scratch(const pvf_experts *x, int64_t rows) {
    /* token list, then gathered inputs, [gate|up], swiglu, outputs */
    return rows * (1 + x->in + 2 * x->inter + x->inter + x->out);
}

void pvf_experts_run(const pvf_experts *ex, const float *x, int64_t rows, const int32_t *idx,
                     const float *score, int k, float *y, float *scratch) {
    void *ints = scratch; /* malloc'd workspace: int32 token list, then floats */
    int32_t *tok = ints;
    float *xg = scratch + rows;
    float *gu = xg + rows * ex->in;
    float *h = gu + rows * 2 * ex->inter;
    float *yg = h + rows * ex->inter;
    for (int32_t e = 0; e < (int32_t)ex->E; e++) {
        int64_t n = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int s = 0; s < k; s++)
                if (idx[r * k + s] == e) {
                    const float sc = score[r * k + s];
                    for (int64_t j = 0; j < ex->in; j++)
                        xg[n * ex->in + j] = x[r * ex->in + j] * sc;
                    tok[n++] = (int32_t)r;
                }
        if (n == 0)
            continue;
        pvf_linear(xg, n, ex->in, ex->gate_up[e], NULL, 2 * ex->inter, gu);
        pvf_swiglu(gu, n, ex->inter, h);
        pvf_linear(h, n, ex->inter, ex->down[e], NULL, ex->out, yg);
        for (int64_t i = 0; i < n; i++) {
            float *yr = y + (int64_t)tok[i] * ex->out;
            for (int64_t j = 0; j < ex->out; j++)
                yr[j] += yg[i * ex->out + j];
        }
    }
}
