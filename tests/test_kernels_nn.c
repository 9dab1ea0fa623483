/* The DLRM and BERT kernels against PyTorch (tests/fixtures/nn.safetensors,
 * written by tools/make_nn_fixtures.py). */
#include "fixture.h"
#include "kernels_nn.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

static pvf_st_file fx;

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

/* An integer tensor of the fixture as int64. */
static int64_t *fixture_i64(const char *name, int64_t *n) {
    long i = pvf_st_find(&fx, name);
    if (i < 0)
        return NULL;
    pvf_tensor t;
    pvf_st_view(&fx, (size_t)i, &t);
    *n = pvf_tensor_numel(&t);
    int64_t *out = malloc((size_t)*n * sizeof *out);
    for (int64_t j = 0; out && j < *n; j++)
        out[j] = pvf_tensor_get_i64(&t, j);
    return out;
}

static void test_embedding_bag(void) {
    int64_t ni, nb, ny;
    float *table = fixture_f32(&fx, "embbag_table", NULL),
          *want = fixture_f32(&fx, "embbag_y", &ny);
    int64_t *idx = fixture_i64("embbag_idx", &ni), *off = fixture_i64("embbag_offsets", &nb);
    CHECK(table && want && idx && off && ny == nb * 5);
    if (table && want && idx && off) {
        float y[64];
        for (int i = 0; i < 64; i++)
            y[i] = NAN;
        pvf_embedding_bag_sum(table, 5, idx, ni, off, nb, y, 5);
        CHECK(max_abs_diff(y, want, ny) <= 1e-6);
        CHECK(y[5] == 0.0f && y[9] == 0.0f); /* the empty bag */
        /* strided output, one bag at a time, as DLRM calls it */
        float z[5 * 2 * 8];
        for (int64_t b = 0; b < nb; b++) {
            int64_t end = b + 1 < nb ? off[b + 1] : ni, zero = 0;
            pvf_embedding_bag_sum(table, 5, idx + off[b], end - off[b], &zero, 1, z + b * 10, 10);
        }
        for (int64_t b = 0; b < nb; b++)
            CHECK(max_abs_diff(z + b * 10, want + b * 5, 5) <= 1e-6);
    }
    free(table);
    free(want);
    free(idx);
    free(off);
}

static void test_interaction(void) {
    int64_t n1, n2;
    float *t = fixture_f32(&fx, "interact_t", NULL), *y = fixture_f32(&fx, "interact_y", &n1),
          *ys = fixture_f32(&fx, "interact_y_self", &n2);
    CHECK(pvf_interaction_dot_size(4, 5, 0) == 11 && pvf_interaction_dot_size(4, 5, 1) == 15);
    CHECK(n1 == 3 * 11 && n2 == 3 * 15);
    float out[3 * 15];
    pvf_interaction_dot(t, 3, 4, 5, 0, out);
    CHECK(max_abs_diff(out, y, n1) <= 1e-5);
    pvf_interaction_dot(t, 3, 4, 5, 1, out);
    CHECK(max_abs_diff(out, ys, n2) <= 1e-5);
    free(t);
    free(y);
    free(ys);
}

static void test_layernorm(void) {
    int64_t n;
    float *x = fixture_f32(&fx, "ln_x", &n), *w = fixture_f32(&fx, "ln_w", NULL),
          *b = fixture_f32(&fx, "ln_b", NULL), *y = fixture_f32(&fx, "ln_y", NULL),
          *y5 = fixture_f32(&fx, "ln_y_eps5", NULL);
    float a[64], c[64];
    memcpy(a, x, sizeof a);
    memcpy(c, x, sizeof c);
    pvf_layernorm(a, 4, 16, w, b, 1e-12f);
    pvf_layernorm(c, 4, 16, w, b, 1e-5f);
    fprintf(stderr, "  layernorm max |diff| %.3g (eps 1e-12), %.3g (eps 1e-5)\n",
            max_abs_diff(a, y, n), max_abs_diff(c, y5, n));
    /* rows 0, 2, 3 tight; row 1 (values near 1000) within fp32's resolution there */
    for (int r = 0; r < 4; r++) {
        double tol = r == 1 ? 1e-4 : 2e-6;
        CHECK(max_abs_diff(a + r * 16, y + r * 16, 16) <= tol);
        CHECK(max_abs_diff(c + r * 16, y5 + r * 16, 16) <= tol);
    }
    /* row 2 is tiny (std ~1e-3): eps 1e-5 matters there */
    CHECK(max_abs_diff(a + 32, c + 32, 16) > 1e-3);
    free(x);
    free(w);
    free(b);
    free(y);
    free(y5);
}

/* Faulty rows: 1e19 stays finite (as PyTorch), 1e21, 1e37 and Inf give NaN (as PyTorch). */
static void test_layernorm_overflow(void) {
    int64_t n;
    float *x = fixture_f32(&fx, "ln_big_x", &n), *w = fixture_f32(&fx, "ln_big_w", NULL),
          *b = fixture_f32(&fx, "ln_big_b", NULL), *want = fixture_f32(&fx, "ln_big_y", NULL);
    CHECK(n == 4 * 128);
    pvf_layernorm(x, 4, 128, w, b, 1e-12f);
    double d = 0;
    for (int j = 0; j < 128; j++)
        d = fmax(d, fabs((double)x[j] - want[j]) / fmax(1.0, fabs((double)want[j])));
    fprintf(stderr, "  layernorm row with 1e19: max rel diff %.3g\n", d);
    CHECK(d <= 1e-5);
    int nan = 0;
    for (int j = 128; j < 4 * 128; j++)
        nan += isnan(x[j]) && isnan(want[j]);
    CHECK(nan == 3 * 128);
    free(x);
    free(w);
    free(b);
    free(want);
}

static void test_activations(void) {
    int64_t n;
    float *x = fixture_f32(&fx, "act_x", &n);
    const char *names[] = {"gelu_y", "tanh_y", "sigmoid_y"};
    void (*fns[])(float *, int64_t) = {pvf_gelu_erf, pvf_tanh, pvf_sigmoid};
    for (int k = 0; k < 3; k++) {
        float *want = fixture_f32(&fx, names[k], NULL), y[128];
        memcpy(y, x, (size_t)n * sizeof *y);
        fns[k](y, n);
        double d = 0;
        for (int64_t i = 0; i < n; i++) /* relative to the value, ulp-level */
            d = fmax(d, fabs((double)y[i] - want[i]) / fmax(1.0, fabs((double)want[i])));
        fprintf(stderr, "  %s max rel diff %.3g\n", names[k], d);
        CHECK(d <= 1e-6);
        free(want);
    }
    float nan[3] = {NAN, INFINITY, -INFINITY};
    pvf_gelu_erf(nan, 3);
    CHECK(isnan(nan[0]) && nan[1] == INFINITY && isnan(nan[2])); /* -inf * 0: NaN, as torch */
    free(x);
}

static void test_attention(void) {
    int64_t n, nm;
    float *q = fixture_f32(&fx, "attn_q", &n), *k = fixture_f32(&fx, "attn_k", NULL),
          *v = fixture_f32(&fx, "attn_v", NULL), *want = fixture_f32(&fx, "attn_ctx", NULL);
    int64_t *mask = fixture_i64("attn_mask", &nm);
    CHECK(n == 7 * 8 && nm == 7);
    float add[7], ctx[56], scratch[49];
    for (int t = 0; t < 7; t++)
        add[t] = pvf_attention_mask_add(mask[t]);
    CHECK(add[0] == 0.0f && add[6] == -FLT_MAX);
    pvf_attention(q, 7, k, v, 7, 2, 4, add, ctx, scratch);
    fprintf(stderr, "  attention max |diff| %.3g\n", max_abs_diff(ctx, want, n));
    CHECK(max_abs_diff(ctx, want, n) <= 1e-5);
    /* the first query alone (BERT's last layer) gives the first row */
    float one[8];
    pvf_attention(q, 1, k, v, 7, 2, 4, add, one, scratch);
    CHECK(max_abs_diff(one, want, 8) <= 1e-5);
    /* a masked key does not matter: change its value, same context */
    float v2[56];
    memcpy(v2, v, sizeof v2);
    v2[6 * 8 + 1] = 1e6f;
    pvf_attention(q, 7, k, v2, 7, 2, 4, add, ctx, scratch);
    CHECK(max_abs_diff(ctx, want, n) <= 1e-5);
    free(q);
    free(k);
    free(v);
    free(want);
    free(mask);
}

int main(void) {
    if (fixture_open(&fx, "tests/fixtures/nn.safetensors"))
        return 1;
    RUN(test_embedding_bag);
    RUN(test_interaction);
    RUN(test_layernorm);
    RUN(test_layernorm_overflow);
    RUN(test_activations);
    RUN(test_attention);
    pvf_st_close(&fx);
    return test_summary();
}
