/* kernels.h - fp32 compute kernels; the heavy ones go through OpenBLAS.
 *
 * Layouts follow PyTorch: activations NCHW, linear weights [out, in], conv
 * weights [out, in, kh, kw]. NaN propagates as in PyTorch (ReLU and max-pool
 * keep NaN), so a fault that produces NaN is seen at the output. */
#ifndef PVF_KERNELS_H
#define PVF_KERNELS_H

#include <stdint.h>

/* y[n, out] = x[n, in] . w[out, in]^T + b[out] (b may be NULL). */
void pvf_linear(const float *x, int64_t n, int64_t in, const float *w, const float *b, int64_t out,
                float *y);

void pvf_relu(float *x, int64_t n);

typedef struct pvf_conv2d {
    int64_t cin, h, w; /* input */
    int64_t cout, k;   /* square kernel k x k */
    int64_t stride, pad;
    int64_t oh, ow; /* derived by pvf_conv2d_init */
} pvf_conv2d;

/* Derives oh, ow; returns -1 when the geometry is empty. */
int pvf_conv2d_init(pvf_conv2d *c, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                    int64_t stride, int64_t pad);
/* Floats of scratch pvf_conv2d_run needs (one image's im2col matrix). */
int64_t pvf_conv2d_scratch(const pvf_conv2d *c);
/* The im2col matrix of one image x[cin, h, w]: row (ci k + ky) k + kx, at
 * col + row * ld, holds x[ci][oy s + ky - pad][ox s + kx - pad] at oy ow + ox
 * (0 outside the image); ld >= oh ow. */
void pvf_im2col(const pvf_conv2d *c, const float *x, float *col, int64_t ld);
/* y[n, cout, oh, ow] = conv(x[n, cin, h, w], w) + b, as im2col + sgemm per image. */
void pvf_conv2d_run(const pvf_conv2d *c, const float *x, int64_t n, const float *weight,
                    const float *bias, float *y, float *scratch);

/* Max-pool with window = stride = k, floor mode: y[n, c, h/k, w/k]. */
void pvf_maxpool2d(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, float *y);

/* Row-wise softmax in place, max-subtracted. */
void pvf_softmax(float *x, int64_t rows, int64_t cols);

/* Index of the first maximum; a NaN counts as the maximum (as torch.argmax). */
int64_t pvf_argmax(const float *x, int64_t n);

/* 1 when every value is finite. */
int pvf_all_finite(const float *x, int64_t n);

#endif
