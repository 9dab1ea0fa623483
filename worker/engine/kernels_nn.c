#include "kernels_nn.h"

#include "kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

void pvf_embedding_bag_sum(const float *table, int64_t dim, const int64_t *idx, int64_t nidx,
                           const int64_t *offsets, int64_t nbags, float *y, int64_t ystride) {
    for (int64_t b = 0; b < nbags; b++) {
        float *out = y + b * ystride;
        int64_t end = b + 1 < nbags ? offsets[b + 1] : nidx;
        memset(out, 0, (size_t)dim * sizeof *out);
        /* row by row, in bag order: the summation order of PyTorch's CPU kernel */
        for (int64_t i = offsets[b]; i < end; i++) {
            const float *row = table + idx[i] * dim;
            for (int64_t j = 0; j < dim; j++)
                out[j] += row[j];
        }
    }
}

int64_t pvf_interaction_dot_size(int64_t f, int64_t d, int itself) {
    return d + (itself ? f * (f + 1) / 2 : f * (f - 1) / 2);
}

void pvf_interaction_dot(const float *t, int64_t n, int64_t f, int64_t d, int itself, float *y) {
    const int64_t out = pvf_interaction_dot_size(f, d, itself);
    for (int64_t s = 0; s < n; s++) {
        const float *ts = t + s * f * d;
        float *ys = y + s * out;
        memcpy(ys, ts, (size_t)d * sizeof *ys);
        int64_t p = d;
        for (int64_t i = 0; i < f; i++)
            for (int64_t j = 0; j < i + (itself ? 1 : 0); j++) {
                float acc = 0.0f;
                for (int64_t c = 0; c < d; c++)
                    acc += ts[i * d + c] * ts[j * d + c];
                ys[p++] = acc;
            }
    }
}

/* A row's mean and variance, in double sums: exact enough that golden
 * matches PyTorch's float kernel. */
static double row_variance(const float *row, int64_t cols, double *mean) {
    double sum = 0.0, sq = 0.0;
    for (int64_t j = 0; j < cols; j++)
        sum += row[j];
    *mean = sum / (double)cols;
    for (int64_t j = 0; j < cols; j++) {
        double c = row[j] - *mean;
        sq += c * c;
    }
    return sq / (double)cols;
}

int pvf_layernorm_overflows(const float *row, int64_t cols) {
    double mean;
    return !(row_variance(row, cols, &mean) <= FLT_MAX);
}

void pvf_layernorm(float *x, int64_t rows, int64_t cols, const float *w, const float *b,
                   float eps) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        double mean;
        double var = row_variance(row, cols, &mean);
        if (!(var <= FLT_MAX)) {
            /* PyTorch's float kernel overflows here (a faulty value above ~1e20,
             * or Inf/NaN) and returns NaN: so does pvf, so the fault is seen
             * as the detectable error it is there */
            for (int64_t j = 0; j < cols; j++)
                row[j] = NAN;
            continue;
        }
        float rstd = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mean;
        for (int64_t j = 0; j < cols; j++)
            row[j] = (row[j] - m) * rstd * w[j] + b[j];
    }
}

void pvf_gelu_erf(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] * 0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void pvf_tanh(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = tanhf(x[i]);
}

void pvf_sigmoid(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = 1.0f / (1.0f + expf(-x[i]));
}

float pvf_attention_mask_add(int64_t m) {
    return (1.0f - (float)m) * -FLT_MAX;
}

void pvf_attention_head(const float *q, int64_t sq, const float *k, const float *v, int64_t s,
                        int64_t heads, int64_t d, int64_t hd, const float *mask_add, float *ctx,
                        float *scratch) {
    const int64_t h = heads * d;
    const float scale = sqrtf((float)d);
    float *p = scratch; /* [sq, s] scores, then probabilities */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)sq, (blasint)s, (blasint)d, 1.0f,
                q + hd * d, (blasint)h, k + hd * d, (blasint)h, 0.0f, p, (blasint)s);
    for (int64_t i = 0; i < sq; i++)
        for (int64_t j = 0; j < s; j++)
            p[i * s + j] = p[i * s + j] / scale + mask_add[j];
    pvf_softmax(p, sq, s);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)sq, (blasint)d, (blasint)s,
                1.0f, p, (blasint)s, v + hd * d, (blasint)h, 0.0f, ctx + hd * d, (blasint)h);
}

void pvf_attention(const float *q, int64_t sq, const float *k, const float *v, int64_t s,
                   int64_t heads, int64_t d, const float *mask_add, float *ctx, float *scratch) {
    for (int64_t hd = 0; hd < heads; hd++)
        pvf_attention_head(q, sq, k, v, s, heads, d, hd, mask_add, ctx, scratch);
}
