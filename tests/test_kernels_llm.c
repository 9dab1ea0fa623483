/* The LLM kernels against values PyTorch computed from the Llama 4 spec's
 * formulas (tests/fixtures/llama4_kernels.safetensors, made by
 * tools/make_llama4_fixtures.py). */
#include "fixture.h"
#include "kernels_llm.h"
#include "test.h"

static pvf_st_file fx;

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = d; /* NaN too */
    }
    return m;
}

/* The fixture's I64 tensor as int32. */
static int32_t *fixture_i32(const char *name, int64_t *n) {
    long i = pvf_st_find(&fx, name);
    if (i < 0)
        return NULL;
    pvf_tensor t;
    pvf_st_view(&fx, (size_t)i, &t);
    *n = pvf_tensor_numel(&t);
    int32_t *out = malloc((size_t)*n * sizeof *out);
    for (int64_t j = 0; j < *n; j++)
        out[j] = (int32_t)pvf_tensor_get_i64(&t, j);
    return out;
}

static void check_inv_freq(const char *name, double theta, pvf_rope_llama3 s) {
    float *want = fixture_f32(&fx, name, NULL), got[8];
    CHECK(want != NULL);
    if (!want)
        return;
    pvf_rope_inv_freq(16, theta, s.factor > 0 ? &s : NULL, got);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(got[i] / want[i], 1.0, 2e-7); /* powf vs torch.pow: an ulp */
    free(want);
}

static void test_rope_inv_freq_llama3(void) {
    /* d 16, theta 1e4, factor 8, low 1, high 4, orig 64: i=0 kept, 1-2
     * smoothed, 3-7 divided by 8 */
    check_inv_freq("rope_inv_freq_llama3", 10000.0, (pvf_rope_llama3){8, 1, 4, 64});
    check_inv_freq("rope_inv_freq_empty_band", 500000.0, (pvf_rope_llama3){16, 1, 1, 64});
    check_inv_freq("rope_inv_freq_plain", 10000.0, (pvf_rope_llama3){0, 0, 0, 0});
    float f[8], plain[8];
    pvf_rope_inv_freq(16, 10000.0, &(pvf_rope_llama3){8, 1, 4, 64}, f);
    pvf_rope_inv_freq(16, 10000.0, NULL, plain);
    CHECK(f[0] == plain[0]);                       /* high band kept */
    CHECK(f[1] < plain[1] && f[1] > plain[1] / 8); /* smoothed */
    CHECK(f[2] < plain[2] && f[2] > plain[2] / 8); /* smoothed */
    CHECK_NEAR(f[5] / (plain[5] / 8), 1.0, 1e-7);  /* low band divided */
}

static void test_rope_apply(void) {
    int64_t n;
    float *x = fixture_f32(&fx, "rope_x", &n), *y = fixture_f32(&fx, "rope_y", NULL);
    float *inv = fixture_f32(&fx, "rope_inv_freq_llama3", NULL);
    CHECK(x && y && inv && n == 40 * 3 * 16);
    if (x && y && inv) {
        pvf_rope_apply(x, 40, 3, 16, inv); /* the fixture's inv_freq: tests the rotation */
        CHECK_NEAR(max_diff(x, y, n), 0, 2e-6);
    }
    free(x);
    free(y);
    free(inv);
}

static void test_temperature(void) {
    float *s = fixture_f32(&fx, "temperature_s", NULL);
    CHECK(s != NULL);
    for (int p = 0; s && p < 40; p++)
        CHECK_NEAR(pvf_attn_temperature(p, 4, 0.1f), s[p], 1e-7);
    CHECK(pvf_attn_temperature(2, 4, 0.1f) == 1.0f); /* p + 1 < floor_scale: exactly 1 */
    CHECK(pvf_attn_temperature(3, 4, 0.1f) > 1.0f);  /* the first step */
    CHECK_NEAR(pvf_attn_temperature(8190, 8192, 0.1f), 1.0, 0);
    CHECK_NEAR(pvf_attn_temperature(8191, 8192, 0.1f), 1.0693147, 1e-6); /* spec: 1.0693 */
    free(s);
}

static void check_attention(const char *name, int64_t chunk) {
    float *q = fixture_f32(&fx, "attn_q", NULL), *k = fixture_f32(&fx, "attn_k", NULL),
          *v = fixture_f32(&fx, "attn_v", NULL), *want = fixture_f32(&fx, name, NULL);
    CHECK(q && k && v && want);
    if (q && k && v && want) {
        float out[11 * 4 * 8], scores[11];
        pvf_causal_attention(q, k, v, 11, 4, 2, 8, chunk, out, scores);
        CHECK_NEAR(max_diff(out, want, 11 * 32), 0, 2e-6);
        if (chunk == 4) /* position 4 starts a chunk: it sees only itself, out = v[4] */
            for (int h = 0; h < 4; h++)
                CHECK_NEAR(max_diff(out + (4 * 4 + h) * 8, v + (4 * 2 + h / 2) * 8, 8), 0, 1e-7);
    }
    free(q);
    free(k);
    free(v);
    free(want);
}

static void test_attention_chunked(void) {
    check_attention("attn_chunk4", 4);
}

static void test_attention_causal(void) {
    check_attention("attn_causal", 0);
}

static void test_norms(void) {
    float *x = fixture_f32(&fx, "norm_x", NULL), *w = fixture_f32(&fx, "norm_w", NULL),
          *y = fixture_f32(&fx, "norm_y", NULL), *qk = fixture_f32(&fx, "qknorm_y", NULL);
    CHECK(x && w && y && qk);
    if (x && w && y && qk) {
        float out[48];
        pvf_rms_norm(x, 6, 8, w, 1e-5f, out);
        CHECK_NEAR(max_diff(out, y, 48), 0, 1e-6);
        pvf_rms_norm(x, 6, 8, NULL, 1e-5f, out); /* weightless: the QK-norm */
        CHECK_NEAR(max_diff(out, qk, 48), 0, 1e-6);
        pvf_rms_norm(x, 6, 8, NULL, 1e-5f, x); /* in place */
        CHECK_NEAR(max_diff(x, qk, 48), 0, 1e-6);
    }
    free(x);
    free(w);
    free(y);
    free(qk);
}

static void check_routing(int k, const char *iname, const char *sname) {
    int64_t n;
    float *logits = fixture_f32(&fx, "router_logits", NULL), *score = fixture_f32(&fx, sname, NULL);
    int32_t *idx = fixture_i32(iname, &n);
    CHECK(logits && score && idx && n == 20 * k);
    if (logits && score && idx) {
        int32_t got[40];
        float sc[40];
        pvf_router_topk(logits, 20, 8, k, got, sc);
        int same = 1;
        for (int i = 0; i < 20 * k; i++)
            same &= got[i] == idx[i];
        CHECK(same);
        CHECK_NEAR(max_diff(sc, score, 20 * k), 0, 1e-7);
    }
    free(logits);
    free(score);
    free(idx);
}

static void test_routing(void) {
    check_routing(1, "router_idx1", "router_score1");
    check_routing(2, "router_idx2", "router_score2");
    /* ties go to the lower expert; a NaN logit ranks first */
    float g[4] = {1, 3, 3, 2}, s[2];
    int32_t i[2];
    pvf_router_topk(g, 1, 4, 2, i, s);
    CHECK(i[0] == 1 && i[1] == 2);
    CHECK_NEAR(s[0], 1 / (1 + exp(-3.0)), 1e-7);
    float h[4] = {1, 3, NAN, 2};
    pvf_router_topk(h, 1, 4, 1, i, s);
    CHECK(i[0] == 2 && isnan(s[0]));
}

static void test_experts_fused_layout(void) {
    int64_t n;
    float *x = fixture_f32(&fx, "experts_x", NULL), *gu = fixture_f32(&fx, "experts_gate_up", NULL),
          *dn = fixture_f32(&fx, "experts_down", NULL),
          *sc = fixture_f32(&fx, "experts_score", NULL),
          *want = fixture_f32(&fx, "experts_y", NULL);
    int32_t *idx = fixture_i32("experts_idx", &n);
    CHECK(x && gu && dn && sc && want && idx && n == 40);
    if (x && gu && dn && sc && want && idx) {
        /* HF's fused [E, in, 2I] (gate columns first) and [E, I, out] to the
         * per-expert Linear layout the engine loads them in */
        float lin_gu[4][12 * 8], lin_dn[4][8 * 6];
        const float *pgu[4], *pdn[4];
        for (int e = 0; e < 4; e++) {
            for (int i = 0; i < 8; i++)
                for (int o = 0; o < 12; o++)
                    lin_gu[e][o * 8 + i] = gu[(e * 8 + i) * 12 + o];
            for (int i = 0; i < 6; i++)
                for (int o = 0; o < 8; o++)
                    lin_dn[e][o * 6 + i] = dn[(e * 6 + i) * 8 + o];
            pgu[e] = lin_gu[e];
            pdn[e] = lin_dn[e];
        }
        pvf_experts xp = {4, 8, 6, 8, pgu, pdn};
        float *scratch = malloc((size_t)pvf_experts_scratch(&xp, 20) * sizeof *scratch);
        float y[160] = {0};
        pvf_experts_run(&xp, x, 20, idx, sc, 2, y, scratch);
        CHECK_NEAR(max_diff(y, want, 160), 0, 1e-5);
        /* the score scales the input, not the output: doubling it does not double y */
        for (int i = 0; i < 40; i++)
            sc[i] *= 2;
        float y2[160] = {0};
        pvf_experts_run(&xp, x, 20, idx, sc, 2, y2, scratch);
        CHECK(fabs(y2[0] - 2 * y[0]) > 1e-4);
        free(scratch);
    }
    free(x);
    free(gu);
    free(dn);
    free(sc);
    free(want);
    free(idx);
}

static void test_swiglu(void) {
    float *gu = fixture_f32(&fx, "swiglu_gu", NULL), *h = fixture_f32(&fx, "swiglu_h", NULL);
    CHECK(gu && h);
    if (gu && h) {
        float out[30];
        pvf_swiglu(gu, 5, 6, out);
        CHECK_NEAR(max_diff(out, h, 30), 0, 1e-6);
    }
    free(gu);
    free(h);
}

int main(void) {
    if (fixture_open(&fx, "tests/fixtures/llama4_kernels.safetensors"))
        return 1;
    RUN(test_rope_inv_freq_llama3);
    RUN(test_rope_apply);
    RUN(test_temperature);
    RUN(test_attention_chunked);
    RUN(test_attention_causal);
    RUN(test_norms);
    RUN(test_routing);
    RUN(test_experts_fused_layout);
    RUN(test_swiglu);
    pvf_st_close(&fx);
    return test_summary();
}
