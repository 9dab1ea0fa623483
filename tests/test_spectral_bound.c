/* pvf_fast_spectral_bound, the operator-norm bound the BERT and Llama 4 fast
 * paths build their sound bounds on: never below the largest singular value,
 * and within the method's factor dim^(1/256) (plus rounding) above it. */
#include "fast.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* The largest singular value by power iteration on A^T A, in double: a lower
 * estimate (it converges from below). */
static double sigma_estimate(const float *w, int64_t rows, int64_t cols) {
    double *v = malloc((size_t)cols * sizeof *v), *u = malloc((size_t)rows * sizeof *u);
    for (int64_t j = 0; j < cols; j++)
        v[j] = 1.0 + 0.01 * (double)j;
    double sigma = 0;
    for (int it = 0; it < 500; it++) {
        double nu = 0, nv = 0;
        for (int64_t i = 0; i < rows; i++) {
            u[i] = 0;
            for (int64_t j = 0; j < cols; j++)
                u[i] += (double)w[i * cols + j] * v[j];
            nu += u[i] * u[i];
        }
        for (int64_t j = 0; j < cols; j++) {
            v[j] = 0;
            for (int64_t i = 0; i < rows; i++)
                v[j] += (double)w[i * cols + j] * u[i];
            nv += v[j] * v[j];
        }
        sigma = nu > 0 ? sqrt(nv) / sqrt(nu) : 0; /* |A^T A v| / |A v| with |v| = 1 */
        for (int64_t j = 0; j < cols; j++)
            v[j] /= sqrt(nv);
    }
    free(v);
    free(u);
    return sigma;
}

/* A deterministic pseudo-random matrix in [-1, 1). */
static void fill(float *w, int64_t n, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        w[i] = (float)((double)(seed >> 8) / 8388608.0 - 1.0);
    }
}

static void check_within(double bound, double sigma, int64_t dim) {
    const double factor = pow((double)dim, 1.0 / 256.0) * 1.0002;
    if (!(bound >= sigma && bound <= sigma * factor))
        fprintf(stderr, "  bound %.9g, sigma %.9g, allowed factor %.6g\n", bound, sigma, factor);
    CHECK(bound >= sigma);
    CHECK(bound <= sigma * factor);
}

static void test_diagonal(void) {
    const float w[9] = {3, 0, 0, 0, -2, 0, 0, 0, 1};
    check_within(pvf_fast_spectral_bound(w, 3, 0, 3, NULL), 3.0, 3);
}

static void test_rank_one(void) {
    /* u v^T: sigma = |u| |v| exactly, and the bound is tight */
    const float u[4] = {1, -2, 0.5f, 3}, v[6] = {0.25f, 1, -1, 2, 0, -0.5f};
    float w[24];
    double nu = 0, nv = 0;
    for (int i = 0; i < 4; i++) {
        nu += (double)u[i] * u[i];
        for (int j = 0; j < 6; j++)
            w[i * 6 + j] = u[i] * v[j];
    }
    for (int j = 0; j < 6; j++)
        nv += (double)v[j] * v[j];
    check_within(pvf_fast_spectral_bound(w, 6, 0, 4, NULL), sqrt(nu) * sqrt(nv), 1);
}

static void test_random_both_shapes(void) {
    float w[12 * 20], t[20 * 12];
    fill(w, 12 * 20, 7);
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 20; j++)
            t[j * 12 + i] = w[i * 20 + j];
    const double sigma = sigma_estimate(w, 12, 20);
    CHECK(sigma > 1);
    check_within(pvf_fast_spectral_bound(w, 20, 0, 12, NULL), sigma, 12); /* A A^T */
    check_within(pvf_fast_spectral_bound(t, 12, 0, 20, NULL), sigma, 12); /* A^T A */
}

static void test_rows_and_column_scale(void) {
    float w[10 * 8], sub[4 * 8], scale[8];
    fill(w, 10 * 8, 11);
    for (int j = 0; j < 8; j++)
        scale[j] = 0.5f + 0.25f * (float)j;
    /* rows 3..6, columns scaled: the bound of that explicit matrix */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            sub[i * 8 + j] = w[(3 + i) * 8 + j] * scale[j];
    check_within(pvf_fast_spectral_bound(w, 8, 3, 4, scale), sigma_estimate(sub, 4, 8), 4);
}

static void test_zero(void) {
    float w[6];
    memset(w, 0, sizeof w);
    CHECK(pvf_fast_spectral_bound(w, 3, 0, 2, NULL) == 0);
}

int main(void) {
    RUN(test_diagonal);
    RUN(test_rank_one);
    RUN(test_random_both_shapes);
    RUN(test_rows_and_column_scale);
    RUN(test_zero);
    return test_summary();
}
