/* Kernels against values PyTorch computed (tests/fixtures/kernels.safetensors,
 * made by tools/make_fixtures.py). */
#include "fixture.h"
#include "kernels.h"
#include "test.h"

static pvf_st_file fx;

/* max |a - b| over n values, NaN-aware (NaN matches NaN only). */
static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            if (!(isnan(a[i]) && isnan(b[i])))
                return INFINITY;
            continue;
        }
        if (a[i] == b[i])
            continue;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m)
            m = d;
    }
    return m;
}

static void check_conv(const char *yname, int64_t stride, int64_t pad) {
    int64_t nx, ny;
    float *x = fixture_f32(&fx, "conv_x", &nx), *w = fixture_f32(&fx, "conv_w", NULL),
          *b = fixture_f32(&fx, "conv_b", NULL), *y = fixture_f32(&fx, yname, &ny);
    CHECK(x && w && b && y);
    if (!(x && w && b && y))
        goto out;
    pvf_conv2d c;
    CHECK(pvf_conv2d_init(&c, 3, 9, 9, 4, 3, stride, pad) == 0);
    CHECK_EQ_U64(2 * c.cout * c.oh * c.ow, ny);
    float *out = calloc((size_t)ny, sizeof *out);
    float *scratch = calloc((size_t)pvf_conv2d_scratch(&c), sizeof *scratch);
    pvf_conv2d_run(&c, x, 2, w, b, out, scratch);
    CHECK_NEAR(max_diff(out, y, ny), 0, 1e-5);
    /* without bias: y - b */
    pvf_conv2d_run(&c, x, 2, w, NULL, out, scratch);
    for (int64_t i = 0; i < ny; i++)
        out[i] += b[(i / (c.oh * c.ow)) % 4];
    CHECK_NEAR(max_diff(out, y, ny), 0, 1e-5);
    free(out);
    free(scratch);
out:
    free(x);
    free(w);
    free(b);
    free(y);
}

static void test_conv2d_pad1(void) {
    check_conv("conv_y_p1", 1, 1);
}
static void test_conv2d_pad0(void) {
    check_conv("conv_y_p0", 1, 0);
}
static void test_conv2d_stride2(void) {
    check_conv("conv_y_s2", 2, 1);
}

static void test_conv2d_geometry(void) {
    pvf_conv2d c;
    CHECK(pvf_conv2d_init(&c, 1, 4, 4, 1, 5, 1, 0) == -1); /* kernel larger than input */
    CHECK(pvf_conv2d_init(&c, 1, 4, 4, 1, 5, 1, 1) == 0);
    CHECK(c.oh == 2 && c.ow == 2);
    CHECK(pvf_conv2d_init(&c, 0, 4, 4, 1, 1, 1, 0) == -1);
}

static void check_pool(const char *xn, const char *yn, int64_t n, int64_t ch, int64_t hw) {
    int64_t ny;
    float *x = fixture_f32(&fx, xn, NULL), *y = fixture_f32(&fx, yn, &ny);
    CHECK(x && y);
    if (x && y) {
        float *out = calloc((size_t)ny, sizeof *out);
        pvf_maxpool2d(x, n, ch, hw, hw, 2, out);
        CHECK(max_diff(out, y, ny) == 0);
        free(out);
    }
    free(x);
    free(y);
}

static void test_maxpool(void) {
    check_pool("pool_x", "pool_y", 2, 4, 8);
    check_pool("pool_x7", "pool_y7", 1, 2, 7); /* floor mode drops the last row/col */
}

static void test_maxpool_nan(void) {
    float x[4] = {1, NAN, 3, 2}, y;
    pvf_maxpool2d(x, 1, 1, 2, 2, 2, &y);
    CHECK(isnan(y)); /* NaN propagates, as in PyTorch */
    float z[4] = {NAN, 5, 3, 2};
    pvf_maxpool2d(z, 1, 1, 2, 2, 2, &y);
    CHECK(isnan(y));
}

static void test_linear(void) {
    int64_t ny;
    float *x = fixture_f32(&fx, "lin_x", NULL), *w = fixture_f32(&fx, "lin_w", NULL),
          *b = fixture_f32(&fx, "lin_b", NULL), *y = fixture_f32(&fx, "lin_y", &ny);
    CHECK(x && w && b && y);
    if (x && w && b && y) {
        float out[15];
        CHECK(ny == 15);
        pvf_linear(x, 5, 7, w, b, 3, out);
        CHECK_NEAR(max_diff(out, y, 15), 0, 1e-5);
        pvf_linear(x, 5, 7, w, NULL, 3, out);
        for (int i = 0; i < 15; i++)
            out[i] += b[i % 3];
        CHECK_NEAR(max_diff(out, y, 15), 0, 1e-5);
    }
    free(x);
    free(w);
    free(b);
    free(y);
}

static void test_relu(void) {
    int64_t n;
    float *x = fixture_f32(&fx, "relu_x", &n), *y = fixture_f32(&fx, "relu_y", NULL);
    CHECK(x && y);
    if (x && y) {
        pvf_relu(x, n);
        CHECK(max_diff(x, y, n) == 0);
    }
    float z[3] = {NAN, -INFINITY, INFINITY};
    pvf_relu(z, 3);
    CHECK(isnan(z[0]) && z[1] == 0.0f && z[2] == INFINITY);
    free(x);
    free(y);
}

static void test_softmax(void) {
    int64_t n;
    float *x = fixture_f32(&fx, "softmax_x", &n), *y = fixture_f32(&fx, "softmax_y", NULL);
    CHECK(x && y && n == 40);
    if (x && y) {
        pvf_softmax(x, 4, 10);
        CHECK_NEAR(max_diff(x, y, n), 0, 1e-6);
    }
    free(x);
    free(y);
}

static void test_argmax_finite(void) {
    float a[5] = {1, 3, 3, 2, -1};
    CHECK(pvf_argmax(a, 5) == 1); /* first of equal maxima */
    float b[4] = {1, NAN, 9, 2};
    CHECK(pvf_argmax(b, 4) == 1); /* NaN is the maximum, as torch.argmax */
    CHECK(pvf_all_finite(a, 5));
    CHECK(!pvf_all_finite(b, 4));
    float c[2] = {1, INFINITY};
    CHECK(!pvf_all_finite(c, 2));
}

int main(void) {
    if (fixture_open(&fx, "tests/fixtures/kernels.safetensors"))
        return 1;
    RUN(test_conv2d_pad1);
    RUN(test_conv2d_pad0);
    RUN(test_conv2d_stride2);
    RUN(test_conv2d_geometry);
    RUN(test_maxpool);
    RUN(test_maxpool_nan);
    RUN(test_linear);
    RUN(test_relu);
    RUN(test_softmax);
    RUN(test_argmax_finite);
    pvf_st_close(&fx);
    return test_summary();
}
