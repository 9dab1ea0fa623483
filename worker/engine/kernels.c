#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void pvf_linear(const float *x, int64_t n, int64_t in, const float *w, const float *b, int64_t out,
                float *y) {
    if (n == 0 || out == 0)
        return;
    float beta = 0.0f;
    if (b) {
        for (int64_t i = 0; i < n; i++)
            memcpy(y + i * out, b, (size_t)out * sizeof *y);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)out, (blasint)in,
                1.0f, x, (blasint)in, w, (blasint)in, beta, y, (blasint)out);
}

void pvf_relu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] < 0.0f) /* false for NaN: NaN passes, as in torch.relu */
            x[i] = 0.0f;
}

int pvf_conv2d_init(pvf_conv2d *c, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                    int64_t stride, int64_t pad) {
    c->cin = cin;
    c->h = h;
    c->w = w;
    c->cout = cout;
    c->k = k;
    c->stride = stride;
    c->pad = pad;
    if (cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad < 0 || h + 2 * pad < k ||
        w + 2 * pad < k)
        return -1;
    c->oh = (h + 2 * pad - k) / stride + 1;
    c->ow = (w + 2 * pad - k) / stride + 1;
    return 0;
}

int64_t pvf_conv2d_scratch(const pvf_conv2d *c) {
    return c->cin * c->k * c->k * c->oh * c->ow;
}

/* col[(ci*k + ky)*k + kx][oy*ow + ox] = x[ci][oy*s + ky - pad][ox*s + kx - pad] (0 outside). */
static void im2col(const pvf_conv2d *c, const float *x, float *col) {
    const int64_t p = c->oh * c->ow;
    for (int64_t ci = 0; ci < c->cin; ci++) {
        const float *plane = x + ci * c->h * c->w;
        for (int64_t ky = 0; ky < c->k; ky++) {
            for (int64_t kx = 0; kx < c->k; kx++) {
                float *row = col + ((ci * c->k + ky) * c->k + kx) * p;
                for (int64_t oy = 0; oy < c->oh; oy++) {
                    int64_t iy = oy * c->stride + ky - c->pad;
                    float *dst = row + oy * c->ow;
                    if (iy < 0 || iy >= c->h) {
                        memset(dst, 0, (size_t)c->ow * sizeof *dst);
                        continue;
                    }
                    for (int64_t ox = 0; ox < c->ow; ox++) {
                        int64_t ix = ox * c->stride + kx - c->pad;
                        dst[ox] = (ix < 0 || ix >= c->w) ? 0.0f : plane[iy * c->w + ix];
                    }
                }
            }
        }
    }
}

void pvf_conv2d_run(const pvf_conv2d *c, const float *x, int64_t n, const float *weight,
                    const float *bias, float *y, float *scratch) {
    const int64_t p = c->oh * c->ow, kk = c->cin * c->k * c->k;
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * c->cin * c->h * c->w;
        float *yi = y + i * c->cout * p;
        im2col(c, xi, scratch);
        float beta = 0.0f;
        if (bias) {
            for (int64_t o = 0; o < c->cout; o++)
                for (int64_t j = 0; j < p; j++)
                    yi[o * p + j] = bias[o];
            beta = 1.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)c->cout, (blasint)p,
                    (blasint)kk, 1.0f, weight, (blasint)kk, scratch, (blasint)p, beta, yi,
                    (blasint)p);
    }
}

void pvf_maxpool2d(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                   float *y) {
    const int64_t oh = h / k, ow = w / k;
    for (int64_t plane = 0; plane < n * c; plane++) {
        const float *xp = x + plane * h * w;
        float *yp = y + plane * oh * ow;
        for (int64_t oy = 0; oy < oh; oy++) {
            for (int64_t ox = 0; ox < ow; ox++) {
                float m = xp[(oy * k) * w + ox * k];
                for (int64_t dy = 0; dy < k; dy++) {
                    for (int64_t dx = 0; dx < k; dx++) {
                        float v = xp[(oy * k + dy) * w + ox * k + dx];
                        if (v > m || isnan(v)) /* NaN wins, as in PyTorch */
                            m = v;
                    }
                }
                yp[oy * ow + ox] = m;
            }
        }
    }
}

void pvf_softmax(float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        float m = row[0];
        for (int64_t j = 1; j < cols; j++)
            if (row[j] > m)
                m = row[j];
        float sum = 0.0f;
        for (int64_t j = 0; j < cols; j++) {
            row[j] = expf(row[j] - m);
            sum += row[j];
        }
        for (int64_t j = 0; j < cols; j++)
            row[j] /= sum;
    }
}

int64_t pvf_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i]))
            return i;
        if (x[i] > x[best])
            best = i;
    }
    return best;
}

int pvf_all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}
