/* The DLRM architecture end to end: small fixtures ("dot" with the diagonal,
 * "cat", multi-hot and empty bags) and the bundled models/dlrm-synth against
 * PyTorch in every storage format, starting at any stage, its components and
 * its outcome rule. */
#include "runner.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH PVF_SOURCE_DIR "/models/dlrm-synth"

/* max |out - ref| / max |ref| over n outputs; *agree: decisions (p > 0.5) equal. */
static double parity(const pvf_runner *r, const pvf_tensor *ref, int64_t *agree) {
    double diff = 0, scale = 0;
    int64_t n = r->golden.n * r->model.out_size;
    *agree = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = pvf_tensor_get_f64(ref, i), got = r->golden.out[i];
        diff = fmax(diff, fabs(got - want));
        scale = fmax(scale, fabs(want));
        *agree += (got > 0.5) == (want > 0.5);
    }
    return diff / scale;
}

static void check_fixture(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", PVF_SOURCE_DIR, name);
    pvf_runner r;
    pvf_err err;
    int rc = pvf_runner_open(&r, dir, NULL, PVF_FMT_FP32, &err);
    if (rc)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK(rc == 0);
    if (rc)
        return;
    pvf_tensor ref;
    CHECK(pvf_evalset_get(&r.eval, "logits", 1, &ref, &err) == 1);
    int64_t agree;
    double d = parity(&r, &ref, &agree);
    fprintf(stderr, "  %s: max |diff| / max |ref| = %.3g\n", name, d);
    CHECK(d <= 1e-5);
    CHECK(agree == r.golden.n);
    CHECK(r.model.out_size == 1);
    pvf_runner_close(&r);
}

static void test_fixtures_match_pytorch(void) {
    check_fixture("dlrm-dot-itself");
    check_fixture("dlrm-cat");
}

static void test_bundled_every_format(void) {
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        pvf_runner r;
        pvf_err err;
        int rc = pvf_runner_open(&r, SYNTH, NULL, (pvf_format)f, &err);
        if (rc)
            fprintf(stderr, "  %s\n", err.msg);
        CHECK(rc == 0);
        if (rc)
            continue;
        pvf_tensor ref, labels;
        char name[64];
        CHECK(pvf_evalset_reference(&r.eval, pvf_format_name((pvf_format)f), &ref, name,
                                    sizeof name, &err) == 1);
        CHECK(pvf_evalset_get(&r.eval, "labels", 1, &labels, &err) == 1);
        int64_t agree, n = r.golden.n;
        double d = parity(&r, &ref, &agree);
        pvf_metric mt[4];
        int k = r.model.arch->metrics(&r.model, r.golden.out, &labels, n, mt, 4);
        CHECK(k == 2 && strcmp(mt[0].name, "auc") == 0 && strcmp(mt[1].name, "log_loss") == 0);
        fprintf(stderr,
                "  %-8s AUC %.4f, log-loss %.4f, decisions agree %lld/%lld, max |diff| "
                "/ max |ref| %.3g\n",
                pvf_format_name((pvf_format)f), mt[0].value, mt[1].value, (long long)agree,
                (long long)n, d);
        CHECK(n == 1000);
        CHECK(agree == n);
        CHECK(d <= 1e-4);
        CHECK(mt[0].value > 0.8); /* a real signal was learnt */
        pvf_runner_close(&r);
    }
}

static void test_forward_from_any_stage(void) {
    pvf_runner r;
    pvf_err err;
    if (pvf_runner_open(&r, SYNTH, NULL, PVF_FMT_INT8, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        CHECK(0);
        return;
    }
    /* bot_l.0 bot_l.2 embeddings top_l.0 top_l.2 top_l.4 */
    CHECK(r.model.nstages == 6);
    CHECK(strcmp(r.model.stages[2].name, "embeddings") == 0);
    size_t bytes = (size_t)(r.golden.n * r.model.out_size) * sizeof(float);
    for (int s = 0; s < r.model.nstages; s++) {
        memset(r.out, 0xFF, bytes);
        CHECK(pvf_forward_from(&r.exec, &r.golden, s, r.out, &err) == 0);
        CHECK(memcmp(r.out, r.golden.out, bytes) == 0); /* bit-identical to golden */
    }
    pvf_runner_close(&r);
}

static void test_components(void) {
    pvf_model m;
    pvf_err err;
    if (pvf_model_load(&m, SYNTH, PVF_FMT_INT4, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        CHECK(0);
        return;
    }
    int emb = 0, bot = 0, top = 0;
    for (int i = 0; i < m.nparams; i++) {
        const char *c = m.params[i].component, *n = m.params[i].name;
        if (strncmp(n, "emb_l.", 6) == 0)
            emb += strcmp(c, "embeddings") == 0;
        else if (strncmp(n, "bot_l.", 6) == 0)
            bot += strcmp(c, "bottom_mlp") == 0;
        else if (strncmp(n, "top_l.", 6) == 0)
            top += strcmp(c, "top_mlp") == 0;
    }
    CHECK(emb == 26 && bot == 4 && top == 6 && m.nparams == 36);
    /* a table is a 2-D weight: int4 codes with one scale per row (16 columns) */
    int t = pvf_model_find_target(&m, "emb_l.0.weight_scale");
    CHECK(t >= 0 && m.targets[t].numel == 100000);
    t = pvf_model_find_target(&m, "emb_l.25.weight");
    CHECK(t >= 0 && m.targets[t].bits == 4 && m.targets[t].numel == 2 * 16);
    pvf_model_free(&m);
}

static void test_outcome_rule(void) {
    pvf_runner r;
    pvf_err err;
    if (pvf_runner_open(&r, SYNTH, NULL, PVF_FMT_FP32, &err)) {
        CHECK(0);
        return;
    }
    int64_t n = r.golden.n, low = -1, high = -1;
    for (int64_t i = 0; i < n; i++) {
        if (low < 0 && r.golden.out[i] < 0.2f)
            low = i;
        if (high < 0 && r.golden.out[i] > 0.6f)
            high = i;
    }
    CHECK(low >= 0 && high >= 0);
    float *out = r.out;
    memcpy(out, r.golden.out, (size_t)n * sizeof *out);
    out[low] += 0.25f; /* moves, but stays a no-click */
    out[high] = 0.45f; /* flips to no-click */
    pvf_trial_result res = {0};
    pvf_judge(&r.model, &r.golden, out, &res);
    CHECK(res.incorrect == 1 && res.nonfinite == 0 && !(res.flags & PVF_TRIAL_MASKED));
    r.model.outcome_threshold = 0.1; /* |dp| > 0.1: both */
    pvf_judge(&r.model, &r.golden, out, &res);
    CHECK(res.incorrect == 2);
    r.model.outcome_threshold = 0.3; /* only the large move */
    pvf_judge(&r.model, &r.golden, out, &res);
    CHECK(res.incorrect == (fabs(0.45 - (double)r.golden.out[high]) > 0.3 ? 1 : 0));
    out[0] = NAN;
    r.model.outcome_threshold = 0;
    pvf_judge(&r.model, &r.golden, out, &res);
    CHECK(res.nonfinite == 1 && (res.flags & PVF_TRIAL_NONFINITE));
    memcpy(out, r.golden.out, (size_t)n * sizeof *out);
    pvf_judge(&r.model, &r.golden, out, &res);
    CHECK(res.incorrect == 0 && (res.flags & PVF_TRIAL_MASKED));
    pvf_runner_close(&r);
}

/* A fault in an embedding row changes exactly the eval rows whose bags read
 * it; a row no bag reads is masked, bit for bit. */
static void test_embedding_faults(void) {
    pvf_runner r;
    pvf_err err;
    if (pvf_runner_open(&r, SYNTH, NULL, PVF_FMT_FP32, &err)) {
        CHECK(0);
        return;
    }
    pvf_tensor off, idx;
    CHECK(pvf_evalset_get(&r.eval, "sparse_offsets", 1, &off, &err) == 1);
    long j = pvf_st_find(&r.eval.file, "sparse_indices");
    CHECK(j >= 0);
    pvf_st_view(&r.eval.file, (size_t)j, &idx);
    const int64_t n = r.golden.n, tables = off.shape[1], total = idx.shape[0];
    /* table 5 (5,000 rows): the row of input 0, and one no input reads */
    const int k = 5;
    char *used = calloc(5000, 1);
    int64_t row0 = pvf_tensor_get_i64(&idx, pvf_tensor_get_i64(&off, k));
    int64_t readers = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t at = i * tables + k, lo = pvf_tensor_get_i64(&off, at);
        int64_t hi = at + 1 < n * tables ? pvf_tensor_get_i64(&off, at + 1) : total;
        int reads = 0;
        for (int64_t t = lo; t < hi; t++) {
            int64_t id = pvf_tensor_get_i64(&idx, t);
            used[id] = 1;
            reads |= id == row0;
        }
        readers += reads;
    }
    int64_t unused = 0;
    while (used[unused])
        unused++;
    free(used);
    r.exec.want_outputs = 1; /* the fast path writes every output only when asked */
    pvf_fault_site site = {.target = pvf_model_find_target(&r.model, "emb_l.5.weight"),
                           .element = unused * 16 + 3,
                           .mask = 1u << 30};
    pvf_trial_result res;
    CHECK(pvf_trial_run(&r.exec, &r.golden, PVF_FAULT_BITFLIP, &site, r.out, &res, &err) == 0);
    CHECK(memcmp(r.out, r.golden.out, (size_t)n * sizeof *r.out) == 0);
    CHECK(res.incorrect == 0 && (res.flags & PVF_TRIAL_MASKED));
    /* the row input 0 reads: with |dp| > 0 every reader moves, no one else */
    r.model.outcome_threshold = 1e-12;
    site.element = row0 * 16 + 3;
    CHECK(pvf_trial_run(&r.exec, &r.golden, PVF_FAULT_BITFLIP, &site, r.out, &res, &err) == 0);
    fprintf(stderr, "  emb_l.5 row %lld (read by %lld inputs), bit 30: %lld moved\n",
            (long long)row0, (long long)readers, (long long)res.incorrect);
    CHECK(res.incorrect >= 1 && res.incorrect <= readers);
    /* the fault left nothing behind: a forward pass is golden again */
    CHECK(pvf_forward_from(&r.exec, &r.golden, 0, r.out, &err) == 0);
    CHECK(memcmp(r.out, r.golden.out, (size_t)n * sizeof *r.out) == 0);
    pvf_runner_close(&r);
}

int main(void) {
    RUN(test_fixtures_match_pytorch);
    RUN(test_bundled_every_format);
    RUN(test_forward_from_any_stage);
    RUN(test_components);
    RUN(test_outcome_rule);
    RUN(test_embedding_faults);
    return test_summary();
}
