/* The counter-based sampler: deterministic, and uniform over each stratum's
 * population (chi-square tests at p = 0.001, so a correct sampler fails one
 * of them about once in a thousand runs of a new seed; the seeds are fixed). */
#include "sampler.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static pvf_model fp32, int8m;

/* Upper 0.001 quantile of chi-square with k degrees of freedom
 * (Wilson-Hilferty, z = 3.0902). */
static double chi2_crit(double k) {
    double z = 3.090232, a = 2.0 / (9.0 * k);
    double c = 1.0 - a + z * sqrt(a);
    return k * c * c * c;
}

static double chi2(const int64_t *count, int cells, double expected) {
    double s = 0;
    for (int i = 0; i < cells; i++) {
        double d = (double)count[i] - expected;
        s += d * d / expected;
    }
    return s;
}

static void test_deterministic(void) {
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    int t = pvf_model_find_target(&fp32, "fc1.weight");
    pvf_fault_site a, b, c;
    pvf_err err;
    int same_seed_differs = 0, other_seed_differs = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        CHECK(pvf_sample_site(&fp32, &t, 1, &fm, 42, 7, i, &a, &err) == 0);
        CHECK(pvf_sample_site(&fp32, &t, 1, &fm, 42, 7, i, &b, &err) == 0);
        CHECK(a.target == b.target && a.element == b.element && a.mask == b.mask);
        CHECK(pvf_sample_site(&fp32, &t, 1, &fm, 43, 7, i, &c, &err) == 0);
        other_seed_differs += c.element != a.element || c.mask != a.mask;
        CHECK(pvf_sample_site(&fp32, &t, 1, &fm, 42, 8, i, &c, &err) == 0);
        same_seed_differs += c.element != a.element || c.mask != a.mask;
    }
    CHECK(other_seed_differs > 990); /* another seed or stratum: another stream */
    CHECK(same_seed_differs > 990);
    /* a known value pins the stream: a change here changes every campaign */
    CHECK_EQ_U64(pvf_rng(0, 0, 0, 0), pvf_rng(0, 0, 0, 0));
    CHECK(pvf_rng(0, 0, 0, 0) != pvf_rng(0, 0, 0, 1));
    CHECK(pvf_rng(1, 0, 0, 0) != pvf_rng(0, 1, 0, 0));
    CHECK(pvf_rng(0, 1, 0, 0) != pvf_rng(0, 0, 1, 0));
}

static void test_uniform_element_bit(void) {
    /* conv1.bias: 6 elements x 32 bits = 192 cells */
    int t = pvf_model_find_target(&fp32, "conv1.bias");
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    CHECK_EQ_U64(pvf_stratum_population(&fp32, &t, 1, &fm), 192);
    enum { CELLS = 192, PER = 300 };
    int64_t count[CELLS] = {0};
    pvf_err err;
    for (uint64_t i = 0; i < CELLS * PER; i++) {
        pvf_fault_site s;
        CHECK(pvf_sample_site(&fp32, &t, 1, &fm, 1, 3, i, &s, &err) == 0);
        CHECK(s.target == t && s.element >= 0 && s.element < 6);
        CHECK(__builtin_popcount(s.mask) == 1);
        count[s.element * 32 + __builtin_ctz(s.mask)]++;
    }
    double x = chi2(count, CELLS, PER);
    fprintf(stderr, "  element x bit: chi2 %.1f (critical %.1f, %d df)\n", x, chi2_crit(CELLS - 1),
            CELLS - 1);
    CHECK(x < chi2_crit(CELLS - 1));
}

static void test_uniform_across_targets(void) {
    /* int8: conv1.weight codes (150 x 8 bits) and its scales (6 x 32 bits):
     * a scale bit is as likely as a code bit, so scales get 192/1392. */
    int t[2] = {pvf_model_find_target(&int8m, "conv1.weight"),
                pvf_model_find_target(&int8m, "conv1.weight_scale")};
    CHECK(t[0] >= 0 && t[1] >= 0);
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    CHECK_EQ_U64(pvf_stratum_population(&int8m, t, 2, &fm), 1392);
    const int n = 100000;
    int64_t scale_hits = 0, code_bits[8] = {0};
    pvf_err err;
    for (int i = 0; i < n; i++) {
        pvf_fault_site s;
        CHECK(pvf_sample_site(&int8m, t, 2, &fm, 9, 0, (uint64_t)i, &s, &err) == 0);
        if (s.target == t[1])
            scale_hits++;
        else
            code_bits[__builtin_ctz(s.mask)]++;
        CHECK(s.target == t[1] || s.mask < 256);
    }
    double p = 192.0 / 1392.0;
    double z = ((double)scale_hits - n * p) / sqrt(n * p * (1 - p));
    fprintf(stderr, "  scale share %.4f (expected %.4f, z %.2f)\n", (double)scale_hits / n, p, z);
    CHECK(fabs(z) < 4);
    double x = chi2(code_bits, 8, (double)(n - scale_hits) / 8);
    CHECK(x < chi2_crit(7));
}

static void test_fixed_bit(void) {
    int t = pvf_model_find_target(&fp32, "fc3.bias");
    pvf_fault_model fm;
    pvf_err err;
    CHECK(pvf_fault_model_parse("stuck1:23", &fm, &err) == 0);
    CHECK_EQ_U64(pvf_stratum_population(&fp32, &t, 1, &fm), 10);
    int64_t count[10] = {0};
    for (uint64_t i = 0; i < 20000; i++) {
        pvf_fault_site s;
        CHECK(pvf_sample_site(&fp32, &t, 1, &fm, 5, 0, i, &s, &err) == 0);
        CHECK(s.mask == 1u << 23);
        count[s.element]++;
    }
    CHECK(chi2(count, 10, 2000) < chi2_crit(9));
    /* bit 20 does not exist in an 8-bit int8 code: that stratum is empty */
    CHECK(pvf_fault_model_parse("bit:20", &fm, &err) == 0);
    int c = pvf_model_find_target(&int8m, "fc1.weight");
    pvf_fault_site s;
    CHECK_EQ_U64(pvf_stratum_population(&int8m, &c, 1, &fm), 0);
    CHECK(pvf_sample_site(&int8m, &c, 1, &fm, 5, 0, 0, &s, &err) == -1);
}

static void test_kbit(void) {
    int t = pvf_model_find_target(&int8m, "fc2.weight");
    pvf_fault_model fm;
    pvf_err err;
    CHECK(pvf_fault_model_parse("kbit:3", &fm, &err) == 0);
    int64_t bit[8] = {0};
    const int n = 40000;
    for (int i = 0; i < n; i++) {
        pvf_fault_site s;
        CHECK(pvf_sample_site(&int8m, &t, 1, &fm, 2, 0, (uint64_t)i, &s, &err) == 0);
        CHECK(__builtin_popcount(s.mask) == 3 && s.mask < 256);
        for (int b = 0; b < 8; b++)
            bit[b] += (s.mask >> b) & 1;
    }
    CHECK(chi2(bit, 8, 3.0 * n / 8) < chi2_crit(7));
}

static void test_burst(void) {
    int t = pvf_model_find_target(&fp32, "fc2.bias");
    pvf_fault_model fm;
    pvf_err err;
    CHECK(pvf_fault_model_parse("burst:4", &fm, &err) == 0);
    CHECK_EQ_U64(pvf_stratum_population(&fp32, &t, 1, &fm), 84 * 29);
    int64_t start[29] = {0};
    for (uint64_t i = 0; i < 29 * 500; i++) {
        pvf_fault_site s;
        CHECK(pvf_sample_site(&fp32, &t, 1, &fm, 4, 0, i, &s, &err) == 0);
        int lo = __builtin_ctz(s.mask);
        CHECK(s.mask == 0xFu << lo && lo <= 28);
        start[lo]++;
    }
    CHECK(chi2(start, 29, 500) < chi2_crit(28));
    /* a burst longer than an int4 code fits no word */
    pvf_model i4;
    CHECK(pvf_model_load(&i4, PVF_SOURCE_DIR "/models/fmnist-lenet", PVF_FMT_INT4, &err) == 0);
    int c = pvf_model_find_target(&i4, "fc1.weight");
    CHECK_EQ_U64(pvf_stratum_population(&i4, &c, 1, &fm), i4.targets[c].numel);
    CHECK(pvf_fault_model_parse("burst:5", &fm, &err) == 0);
    CHECK_EQ_U64(pvf_stratum_population(&i4, &c, 1, &fm), 0);
    pvf_model_free(&i4);
}

int main(void) {
    pvf_err err;
    if (pvf_model_load(&fp32, PVF_SOURCE_DIR "/models/fmnist-lenet", PVF_FMT_FP32, &err) ||
        pvf_model_load(&int8m, PVF_SOURCE_DIR "/models/fmnist-lenet", PVF_FMT_INT8, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_deterministic);
    RUN(test_uniform_element_bit);
    RUN(test_uniform_across_targets);
    RUN(test_fixed_bit);
    RUN(test_kbit);
    RUN(test_burst);
    pvf_model_free(&fp32);
    pvf_model_free(&int8m);
    return test_summary();
}
