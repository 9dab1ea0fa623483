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
    /* branch-free so it vectorizes; x < 0 is false for NaN: NaN passes, as in torch.relu */
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] < 0.0f ? 0.0f : x[i];
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

/* n floats from src to dst in fixed-size pieces, which the compiler
 * inlines: a memcpy call per im2col row (ten floats for the bundled CNN's
 * second conv) cost more than the copy. */
static inline void copy_floats(float *restrict dst, const float *restrict src, int64_t n) {
    int64_t x = 0;
    for (; x + 8 <= n; x += 8)
        memcpy(dst + x, src + x, 8 * sizeof *dst);
    if (n - x >= 4) {
        memcpy(dst + x, src + x, 4 * sizeof *dst);
        x += 4;
    }
    if (n - x >= 2) {
        memcpy(dst + x, src + x, 2 * sizeof *dst);
        x += 2;
    }
    if (n - x >= 1)
        dst[x] = src[x];
}

void pvf_im2col(const pvf_conv2d *c, const float *x, float *col, int64_t ld) {
    for (int64_t ci = 0; ci < c->cin; ci++) {
        const float *plane = x + ci * c->h * c->w;
        for (int64_t ky = 0; ky < c->k; ky++) {
            for (int64_t kx = 0; kx < c->k; kx++) {
                float *row = col + ((ci * c->k + ky) * c->k + kx) * ld;
                /* output columns whose input column kx - pad + ox*stride is inside */
                int64_t ox_lo = 0, ox_hi = c->ow;
                while (ox_lo < ox_hi && ox_lo * c->stride + kx - c->pad < 0)
                    ox_lo++;
                while (ox_hi > ox_lo && (ox_hi - 1) * c->stride + kx - c->pad >= c->w)
                    ox_hi--;
                for (int64_t oy = 0; oy < c->oh; oy++) {
                    int64_t iy = oy * c->stride + ky - c->pad;
                    float *dst = row + oy * c->ow;
                    if (iy < 0 || iy >= c->h) {
                        memset(dst, 0, (size_t)c->ow * sizeof *dst);
                        continue;
                    }
                    const float *src = plane + iy * c->w + kx - c->pad;
                    for (int64_t ox = 0; ox < ox_lo; ox++)
                        dst[ox] = 0.0f;
                    if (c->stride == 1)
                        copy_floats(dst + ox_lo, src + ox_lo, ox_hi - ox_lo);
                    else
                        for (int64_t ox = ox_lo; ox < ox_hi; ox++)
                            dst[ox] = src[ox * c->stride];
                    for (int64_t ox = ox_hi; ox < c->ow; ox++)
                        dst[ox] = 0.0f;
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
        pvf_im2col(c, xi, scratch, p);
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

/* max(a, b) where a NaN wins, as PyTorch's max-pool; branch-free. */
static inline float nanmax(float a, float b) {
    return ((b > a) | (b != b)) ? b : a; /* | not ||: no branch */
}

static void maxpool2x2(const float *x, int64_t planes, int64_t h, int64_t w, float *y) {
    const int64_t oh = h / 2, ow = w / 2;
    for (int64_t plane = 0; plane < planes; plane++) {
        const float *xp = x + plane * h * w;
        float *yp = y + plane * oh * ow;
        for (int64_t oy = 0; oy < oh; oy++) {
            const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
            float *out = yp + oy * ow;
            /* plain max (vectorizes), then NaN wherever an input was NaN */
            for (int64_t ox = 0; ox < ow; ox++) {
                float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
                float ab = a > b ? a : b, cd = c > d ? c : d;
                int nan = (a != a) | (b != b) | (c != c) | (d != d);
                out[ox] = nan ? NAN : (ab > cd ? ab : cd);
            }
        }
    }
}

void pvf_maxpool2d(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                   float *y) {
    const int64_t oh = h / k, ow = w / k;
    if (k == 2) {
        maxpool2x2(x, n * c, h, w, y);
        return;
    }
    for (int64_t plane = 0; plane < n * c; plane++) {
        const float *xp = x + plane * h * w;
        float *yp = y + plane * oh * ow;
        for (int64_t oy = 0; oy < oh; oy++) {
            for (int64_t ox = 0; ox < ow; ox++) {
                float m = xp[(oy * k) * w + ox * k];
                for (int64_t dy = 0; dy < k; dy++) {
                    for (int64_t dx = 0; dx < k; dx++) {
                        float v = xp[(oy * k + dy) * w + ox * k + dx];
                        m = nanmax(m, v);
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
