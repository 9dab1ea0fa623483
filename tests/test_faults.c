/* Fault models, applying and undoing faults through an executor's overlay,
 * isolation between executors, and trial outcomes against a reference that
 * corrupts a whole second copy of the model and reruns it from stage 0. */
#include "pool.h"
#include "runner.h"
#include "sampler.h"
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LENET PVF_SOURCE_DIR "/models/fmnist-lenet"

static void test_parse(void) {
    static const char *const good[] = {"bit",     "bit:0",   "bit:31", "kbit:2",   "kbit:32",
                                       "burst:2", "burst:8", "stuck0", "stuck0:5", "stuck1:31"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        pvf_fault_model fm;
        pvf_err err;
        char back[32];
        CHECK(pvf_fault_model_parse(good[i], &fm, &err) == 0);
        pvf_fault_model_format(&fm, back, sizeof back);
        CHECK(strcmp(back, good[i]) == 0);
    }
    static const char *const bad[] = {"",        "bits",   "bit:",   "bit:32",  "bit:-1",
                                      "bit:3x",  "kbit",   "kbit:1", "kbit:33", "burst",
                                      "burst:1", "stuck2", "bit:1:2"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        pvf_fault_model fm;
        pvf_err err;
        CHECK(pvf_fault_model_parse(bad[i], &fm, &err) == -1);
        CHECK(strstr(err.msg, "fault model") != NULL);
    }
}

static void test_word_ops(void) {
    CHECK_EQ_U64(pvf_fault_word(PVF_FAULT_BITFLIP, 0x3F800000u, 1u << 31), 0xBF800000u);
    CHECK_EQ_U64(pvf_fault_word(PVF_FAULT_KBIT, 0xF0u, 0x11u), 0xE1u);
    CHECK_EQ_U64(pvf_fault_word(PVF_FAULT_BURST, 0x0u, 0x78u), 0x78u);
    CHECK_EQ_U64(pvf_fault_word(PVF_FAULT_STUCK0, 0xFFu, 0x10u), 0xEFu);
    CHECK_EQ_U64(pvf_fault_word(PVF_FAULT_STUCK0, 0xEFu, 0x10u), 0xEFu);
    CHECK_EQ_U64(pvf_fault_word(PVF_FAULT_STUCK1, 0x00u, 0x10u), 0x10u);
}

static uint64_t checksum(const pvf_model *m) {
    uint64_t h = 1469598103934665603ull;
    for (int p = 0; p < m->nparams; p++)
        for (int64_t i = 0; i < m->params[p].numel; i++) {
            h ^= pvf_f32_bits(m->params[p].value[i]);
            h *= 1099511628211ull;
        }
    return h;
}

static void test_apply_undo_fp32(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_FP32, &err) == 0);
    uint64_t before = checksum(&r.model);
    int t = pvf_model_find_target(&r.model, "fc1.weight");
    int p = r.model.targets[t].param;
    pvf_fault_site s = {t, 7, 1u << 31};
    pvf_fault_effect e;
    CHECK(pvf_fault_apply(&r.exec, PVF_FAULT_BITFLIP, &s, &e, &err) == 0);
    CHECK_EQ_U64(e.new_word, e.old_word ^ (1u << 31));
    CHECK(e.new_value == -e.old_value && e.lo == 7 && e.hi == 8);
    CHECK(pvf_exec_weights(&r.exec, p)[7] == -r.model.params[p].value[7]);
    CHECK(pvf_exec_weights(&r.exec, p)[6] == r.model.params[p].value[6]);
    CHECK(checksum(&r.model) == before); /* shared weights untouched */
    pvf_exec_fault_undo(&r.exec);
    CHECK(pvf_exec_weights(&r.exec, p) == r.model.params[p].value);
    CHECK(memcmp(r.exec.copy, r.model.params[p].value,
                 (size_t)r.model.params[p].numel * sizeof(float)) == 0);
    /* bad sites are refused */
    pvf_fault_site bad = {t, r.model.targets[t].numel, 1};
    CHECK(pvf_fault_apply(&r.exec, PVF_FAULT_BITFLIP, &bad, &e, &err) == -1);
    bad.element = 0;
    bad.mask = 0;
    CHECK(pvf_fault_apply(&r.exec, PVF_FAULT_BITFLIP, &bad, &e, &err) == -1);
    pvf_runner_close(&r);
}

static void test_scale_and_int4(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_INT4, &err) == 0);
    /* fc1.weight is [120, 400]: groups of 128, 128, 128, 16 per row */
    int t = pvf_model_find_target(&r.model, "fc1.weight_scale");
    CHECK(t >= 0 && r.model.targets[t].numel == 120 * 4 && r.model.targets[t].bits == 32);
    int p = r.model.targets[t].param;
    const pvf_qtensor *q = &r.model.params[p].store;
    pvf_fault_site s = {t, 4 * 2 + 3, 1u << 30}; /* row 2, last (short) group */
    pvf_fault_effect e;
    CHECK(pvf_fault_apply(&r.exec, PVF_FAULT_BITFLIP, &s, &e, &err) == 0);
    CHECK(e.lo == 2 * 400 + 384 && e.hi == 3 * 400);
    const float *w = pvf_exec_weights(&r.exec, p);
    for (int64_t i = e.lo; i < e.hi; i++) {
        int32_t code = (int32_t)(pvf_qtensor_code(q, i) << 28) >> 28;
        CHECK(w[i] == (float)code * e.new_value);
    }
    CHECK(w[e.lo - 1] == r.model.params[p].value[e.lo - 1]);
    CHECK(w[e.hi] == r.model.params[p].value[e.hi]);
    pvf_exec_fault_undo(&r.exec);
    /* a code fault: one nibble, sign-extended, times its group's scale */
    int c = pvf_model_find_target(&r.model, "fc1.weight");
    CHECK(r.model.targets[c].bits == 4);
    pvf_fault_site cs = {c, 401, 1u << 3};
    CHECK(pvf_fault_apply(&r.exec, PVF_FAULT_BITFLIP, &cs, &e, &err) == 0);
    CHECK(e.old_word < 16 && e.new_word == (e.old_word ^ 8u));
    int32_t code = (int32_t)(e.new_word << 28) >> 28;
    CHECK(e.new_value == (float)code * q->scales[pvf_qtensor_scale_index(q, 401)]);
    CHECK(e.lo == 401 && e.hi == 402);
    pvf_exec_fault_undo(&r.exec);
    pvf_runner_close(&r);
}

static void test_unchanged(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_FP32, &err) == 0);
    int t = pvf_model_find_target(&r.model, "fc2.weight");
    uint32_t word = pvf_f32_bits(r.model.params[r.model.targets[t].param].value[0]);
    int bit = 0;
    while (!(word & (1u << bit)))
        bit++;
    pvf_fault_site s = {t, 0, 1u << bit};
    pvf_trial_result res;
    CHECK(pvf_trial_run(&r.exec, &r.golden, PVF_FAULT_STUCK1, &s, r.out, &res, &err) == 0);
    CHECK(res.flags & PVF_TRIAL_UNCHANGED);
    CHECK(res.flags & PVF_TRIAL_MASKED);
    CHECK(res.value == 0 && res.incorrect == 0);
    pvf_runner_close(&r);
}

/* The reference trial: corrupt the compute values of a second model instance
 * in place, rerun everything from stage 0, judge against the first golden. */
static double reference_trial(pvf_runner *ref, const pvf_runner *r, pvf_fault_kind kind,
                              const pvf_fault_site *s) {
    pvf_err err;
    pvf_fault_effect e;
    pvf_exec probe;
    pvf_exec_init(&probe, &r->model, &r->eval, &err);
    pvf_fault_apply(&probe, kind, s, &e, &err);
    int p = r->model.targets[s->target].param;
    float *vals = ref->model.params[p].value;
    float *saved = malloc((size_t)(e.hi - e.lo) * sizeof *saved);
    memcpy(saved, vals + e.lo, (size_t)(e.hi - e.lo) * sizeof *saved);
    if (e.new_word != e.old_word)
        memcpy(vals + e.lo, pvf_exec_weights(&probe, p) + e.lo,
               (size_t)(e.hi - e.lo) * sizeof *saved);
    /* a plain forward pass of the corrupted copy from the cached eval inputs
     * (not a golden pass: that would also build the fast path's state) */
    float *out = malloc((size_t)(r->golden.n * r->model.out_size) * sizeof *out);
    double value = -1;
    if (out && pvf_forward_from(&ref->exec, &ref->golden, 0, out, &err) == 0) {
        pvf_trial_result res = {0};
        pvf_judge(&r->model, &r->golden, out, &res);
        value = res.value;
    }
    free(out);
    memcpy(vals + e.lo, saved, (size_t)(e.hi - e.lo) * sizeof *saved);
    free(saved);
    pvf_exec_free(&probe);
    return value;
}

static void check_against_reference(pvf_format fmt, const char *fault, int trials) {
    pvf_runner r, ref;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, fmt, &err) == 0);
    CHECK(pvf_runner_open(&ref, LENET, NULL, fmt, &err) == 0);
    pvf_fault_model fm;
    CHECK(pvf_fault_model_parse(fault, &fm, &err) == 0);
    int all[64], n = 0;
    for (int t = 0; t < r.model.ntargets; t++)
        all[n++] = t;
    int nonzero = 0;
    for (int i = 0; i < trials; i++) {
        pvf_fault_site s;
        pvf_trial_result res;
        CHECK(pvf_sample_site(&r.model, all, n, &fm, 77, 0, (uint64_t)i, &s, &err) == 0);
        CHECK(pvf_trial_run(&r.exec, &r.golden, fm.kind, &s, r.out, &res, &err) == 0);
        double want = reference_trial(&ref, &r, fm.kind, &s);
        if (res.value != want)
            fprintf(stderr, "  %s %s: %s[%lld] mask %x: %g vs reference %g\n", pvf_format_name(fmt),
                    fault, r.model.targets[s.target].name, (long long)s.element, s.mask, res.value,
                    want);
        CHECK(res.value == want);
        nonzero += res.value > 0;
    }
    fprintf(stderr, "  %s %s: %d trials, %d with incorrect outputs\n", pvf_format_name(fmt), fault,
            trials, nonzero);
    CHECK(nonzero > 0); /* the comparison saw real corruptions */
    pvf_runner_close(&ref);
    pvf_runner_close(&r);
}

static void test_trials_match_full_rerun(void) {
    /* high exponent bits make most trials count; every target is sampled */
    check_against_reference(PVF_FMT_FP32, "bit:30", 25);
    check_against_reference(PVF_FMT_FP32, "burst:8", 30);
    check_against_reference(PVF_FMT_INT8, "bit", 25);
    check_against_reference(PVF_FMT_INT4, "kbit:2", 25);
    check_against_reference(PVF_FMT_FP8_E4M3, "bit", 25);
    check_against_reference(PVF_FMT_BF16, "stuck1", 30);
}

/* Two executors share one model and run different faults at once. */
typedef struct worker_arg {
    pvf_runner *r;
    int target;
    double values[40];
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *a = p;
    pvf_exec ex;
    pvf_err err;
    float *out = malloc((size_t)(a->r->golden.n * a->r->model.out_size) * sizeof *out);
    pvf_exec_init(&ex, &a->r->model, &a->r->eval, &err);
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, 30, 1};
    for (int i = 0; i < 40; i++) {
        pvf_fault_site s;
        pvf_trial_result res;
        pvf_sample_site(&a->r->model, &a->target, 1, &fm, 3, 0, (uint64_t)i, &s, &err);
        a->values[i] =
            pvf_trial_run(&ex, &a->r->golden, fm.kind, &s, out, &res, &err) == 0 ? res.value : -1;
    }
    pvf_exec_free(&ex);
    free(out);
    return NULL;
}

static void test_executors_isolated(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_FP32, &err) == 0);
    uint64_t before = checksum(&r.model);
    /* both fault fc1.weight; one alone gives the expected values */
    worker_arg solo = {&r, pvf_model_find_target(&r.model, "fc1.weight"), {0}};
    worker_main(&solo);
    worker_arg a = solo, b = solo;
    b.target = pvf_model_find_target(&r.model, "conv2.weight");
    worker_arg bsolo = b;
    worker_main(&bsolo);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, worker_main, &a);
    pthread_create(&tb, NULL, worker_main, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(memcmp(a.values, solo.values, sizeof a.values) == 0);
    CHECK(memcmp(b.values, bsolo.values, sizeof b.values) == 0);
    CHECK(checksum(&r.model) == before);
    pvf_runner_close(&r);
}

/* The pool: the same results with 1 and 3 executors, slot by slot. */
static void test_pool_deterministic(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_INT8, &err) == 0);
    pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
    enum { N = 120 };
    pvf_trial_spec specs[N];
    int targets[64];
    for (int t = 0; t < r.model.ntargets; t++)
        targets[t] = t;
    for (int i = 0; i < N; i++)
        specs[i] = (pvf_trial_spec){&targets[i % r.model.ntargets], 1,
                                    (uint64_t)(i % r.model.ntargets), (uint64_t)(i / 3)};
    pvf_trial_result one[N], three[N];
    CHECK(pvf_pool_run(&r, &fm, 11, specs, N, 1, one, &err) == 0);
    CHECK(pvf_pool_run(&r, &fm, 11, specs, N, 3, three, &err) == 0);
    int same = 1, wrong = 0;
    for (int i = 0; i < N; i++) {
        same &= one[i].value == three[i].value && one[i].flags == three[i].flags &&
                one[i].effect.new_word == three[i].effect.new_word;
        wrong += one[i].incorrect > 0;
    }
    CHECK(same);
    CHECK(wrong > 0);
    /* an impossible site is reported, not crashed on */
    pvf_fault_model big = {PVF_FAULT_BITFLIP, 20, 1};
    int code = pvf_model_find_target(&r.model, "fc1.weight");
    pvf_trial_spec bad = {&code, 1, 0, 0};
    CHECK(pvf_pool_run(&r, &big, 11, &bad, 1, 2, one, &err) == -1);
    pvf_runner_close(&r);
}

int main(void) {
    RUN(test_parse);
    RUN(test_word_ops);
    RUN(test_apply_undo_fp32);
    RUN(test_scale_and_int4);
    RUN(test_unchanged);
    RUN(test_trials_match_full_rerun);
    RUN(test_executors_isolated);
    RUN(test_pool_deterministic);
    return test_summary();
}
