/* The DLRM architecture end to end: small fixtures ("dot" with the diagonal,
 * "cat", multi-hot and empty bags) and the bundled models/dlrm-synth against
 * PyTorch in every storage format, starting at any stage, its components and
 * its outcome rule. */
#include "runner.h"
#include "sampler.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SYNTH PVF_SOURCE_DIR "/models/dlrm-synth"

/* max |out - ref| / max |ref| over n outputs; *agree: decisions (p > 0.5) equal. */
/* Opens dir in format f; on failure prints why and fails the check. */
static int open_runner(pvf_runner *r, const char *dir, pvf_format f, pvf_err *err) {
    if (pvf_runner_open(r, dir, NULL, f, err) == 0)
        return 0;
    fprintf(stderr, "  %s\n", err->msg);
    CHECK(0);
    return -1;
}

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
    if (open_runner(&r, SYNTH, PVF_FMT_INT8, &err))
        return;
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
    if (open_runner(&r, SYNTH, PVF_FMT_FP32, &err))
        return;
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
    if (open_runner(&r, SYNTH, PVF_FMT_FP32, &err))
        return;
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

/* ---- the fast trial path (dlrm_fast.c) ---- */

/* Eval inputs whose bags in table k read row `row`. */
static int64_t readers_of(const pvf_runner *r, int k, int64_t row) {
    pvf_tensor off, idx;
    pvf_err err;
    if (pvf_evalset_get(&r->eval, "sparse_offsets", 1, &off, &err) != 1)
        return -1;
    long j = pvf_st_find(&r->eval.file, "sparse_indices");
    pvf_st_view(&r->eval.file, (size_t)j, &idx);
    const int64_t n = r->golden.n, tables = off.shape[1], all = off.shape[0] * tables;
    int64_t readers = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t at = i * tables + k, lo = pvf_tensor_get_i64(&off, at);
        int64_t hi = at + 1 < all ? pvf_tensor_get_i64(&off, at + 1) : idx.shape[0];
        int reads = 0;
        for (int64_t t = lo; t < hi; t++)
            reads |= pvf_tensor_get_i64(&idx, t) == row;
        readers += reads;
    }
    return readers;
}

/* Incorrect outputs of eval input i in out (the outcome rule, one row). */
static int64_t row_incorrect(const pvf_runner *r, int64_t i, const float *out) {
    pvf_golden view = r->golden;
    view.n = 1;
    view.out = r->golden.out + i;
    view.top1 = r->golden.top1 + i;
    pvf_trial_result one;
    memset(&one, 0, sizeof one);
    pvf_judge(&r->model, &view, out + i, &one);
    return one.incorrect;
}

/* Runs `site` the fast way (fast, outputs in r->out) and the naive way
 * (naive, outputs in naive_out); returns the eval inputs whose outcome
 * differs. */
static int64_t both_ways(pvf_runner *r, const pvf_fault_site *site, float *naive_out,
                         pvf_trial_result *fast, pvf_trial_result *naive) {
    pvf_err err;
    r->exec.want_outputs = 1;
    r->exec.naive = 0;
    int a = pvf_trial_run(&r->exec, &r->golden, PVF_FAULT_BITFLIP, site, r->out, fast, &err);
    r->exec.naive = 1;
    int b = pvf_trial_run(&r->exec, &r->golden, PVF_FAULT_BITFLIP, site, naive_out, naive, &err);
    r->exec.naive = 0;
    CHECK(a == 0 && b == 0);
    int64_t differ = 0;
    for (int64_t i = 0; i < r->golden.n; i++)
        differ += row_incorrect(r, i, r->out) != row_incorrect(r, i, naive_out);
    return differ + (fast->incorrect != naive->incorrect) + (fast->nonfinite != naive->nonfinite);
}

/* The first row of table k that no eval input reads, and the row input 0 reads. */
static void table_rows(const pvf_runner *r, int k, int64_t *unread, int64_t *read) {
    pvf_tensor off, idx;
    pvf_err err;
    CHECK(pvf_evalset_get(&r->eval, "sparse_offsets", 1, &off, &err) == 1);
    long j = pvf_st_find(&r->eval.file, "sparse_indices");
    pvf_st_view(&r->eval.file, (size_t)j, &idx);
    *read = pvf_tensor_get_i64(&idx, pvf_tensor_get_i64(&off, k));
    for (*unread = 0; readers_of(r, k, *unread) > 0; ++*unread)
        ;
}

static void test_fast_embedding_rows(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, SYNTH, PVF_FMT_FP32, &err))
        return;
    const int64_t n = r.golden.n;
    const pvf_model *m = &r.model;
    int emb_stage = 0;
    while (strcmp(m->stages[emb_stage].name, "embeddings") != 0)
        emb_stage++;
    float *naive = malloc((size_t)n * sizeof *naive);
    pvf_trial_result fast, plain;
    for (int k = 0; k < 26; k += 5) {
        char name[64];
        snprintf(name, sizeof name, "emb_l.%d.weight", k);
        int64_t unread, read;
        table_rows(&r, k, &unread, &read);
        const int64_t readers = readers_of(&r, k, read);
        for (int bit = 0; bit < 32; bit += 6) {
            pvf_fault_site site = {pvf_model_find_target(m, name), 0, 1u << bit};
            /* a row nobody reads: no inference at all, and the naive outcome */
            if (unread < m->params[m->targets[site.target].param].shape[0]) {
                site.element = unread * 16 + bit % 16;
                CHECK(both_ways(&r, &site, naive, &fast, &plain) == 0);
                CHECK(fast.stage_rows == 0 && (fast.flags & PVF_TRIAL_SETTLED));
                CHECK((fast.flags & PVF_TRIAL_MASKED) && plain.incorrect == 0);
            }
            /* a row input 0 reads: its readers' bags and the stages after them only */
            site.element = read * 16 + bit % 16;
            CHECK(both_ways(&r, &site, naive, &fast, &plain) == 0);
            CHECK(fast.stage_rows <= readers * (m->nstages - emb_stage));
            CHECK(fast.stage_rows >= readers || (fast.flags & PVF_TRIAL_UNCHANGED) ||
                  fast.effect.new_value == fast.effect.old_value);
            CHECK(!(fast.flags & PVF_TRIAL_SETTLED) || fast.incorrect == 0);
            if (k == 5 && bit == 30)
                fprintf(stderr, "  emb_l.5 row %lld (%lld readers), bit 30: %lld stage rows\n",
                        (long long)read, (long long)readers, (long long)fast.stage_rows);
        }
    }
    free(naive);
    pvf_runner_close(&r);
}

/* The per-row flip that turns element `element` of target t into a NaN. */
static uint32_t nan_mask(const pvf_model *m, int t, int64_t element) {
    const pvf_param *p = &m->params[m->targets[t].param];
    return pvf_qtensor_code(&p->store, element) ^ 0x7fc00000u;
}

static void test_fast_nonfinite_is_exact(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, SYNTH, PVF_FMT_FP32, &err))
        return;
    const int64_t n = r.golden.n;
    float *naive = malloc((size_t)n * sizeof *naive);
    pvf_trial_result fast, plain;
    const char *names[] = {"bot_l.0.weight", "bot_l.2.bias",   "top_l.0.weight",
                           "top_l.2.weight", "top_l.4.weight", "top_l.4.bias"};
    for (int k = 0; k < 6; k++) {
        int t = pvf_model_find_target(&r.model, names[k]);
        CHECK(t >= 0);
        const int64_t e = r.model.targets[t].numel > 3 ? 3 : 0;
        pvf_fault_site site = {t, e, nan_mask(&r.model, t, e)};
        CHECK(both_ways(&r, &site, naive, &fast, &plain) == 0);
        CHECK(isnan(fast.effect.new_value));
        CHECK(!(fast.flags & PVF_TRIAL_SETTLED) && fast.stage_rows > 0);
        CHECK(fast.nonfinite == plain.nonfinite && fast.nonfinite > 0);
        fprintf(stderr, "  NaN in %s[%lld]: %lld of %lld outputs non-finite both ways\n", names[k],
                (long long)e, (long long)fast.nonfinite, (long long)n);
    }
    /* a NaN in a row some bag reads: exactly its readers */
    int64_t unread, read;
    table_rows(&r, 2, &unread, &read);
    int t = pvf_model_find_target(&r.model, "emb_l.2.weight");
    pvf_fault_site site = {t, read * 16 + 5, nan_mask(&r.model, t, read * 16 + 5)};
    CHECK(both_ways(&r, &site, naive, &fast, &plain) == 0);
    CHECK(fast.nonfinite == readers_of(&r, 2, read) && !(fast.flags & PVF_TRIAL_SETTLED));
    free(naive);
    pvf_runner_close(&r);
}

/* Random single bit flips in the MLPs (where the bounds act), decision rule
 * and threshold rule: the fast outcome is the naive one on every input, and
 * bound-settled trials are among them. */
static void test_fast_mlp_bounds(void) {
    const int sanitized = getenv("PVF_TEST_SANITIZED") != NULL;
    const pvf_format formats[] = {PVF_FMT_FP32, PVF_FMT_INT4};
    for (int fi = 0; fi < 2; fi++) {
        pvf_runner r;
        pvf_err err;
        if (pvf_runner_open_limit(&r, SYNTH, NULL, formats[fi], 400, &err)) {
            CHECK(0);
            return;
        }
        const pvf_model *m = &r.model;
        int targets[64], nt = 0;
        for (int t = 0; t < m->ntargets && nt < 64; t++)
            if (strncmp(m->targets[t].name, "emb_l.", 6) != 0)
                targets[nt++] = t;
        float *naive = malloc((size_t)r.golden.n * sizeof *naive);
        /* a low mantissa bit of a top-MLP weight: settled by the bound alone */
        pvf_trial_result lf, lp;
        pvf_fault_site low = {pvf_model_find_target(m, "top_l.0.weight"), 5, 1u << 1};
        CHECK(both_ways(&r, &low, naive, &lf, &lp) == 0);
        CHECK(lf.effect.new_value != lf.effect.old_value);
        CHECK((lf.flags & PVF_TRIAL_SETTLED) && lf.stage_rows == 0 && lp.incorrect == 0);
        const double taus[] = {0, 0.02};
        for (int ti = 0; ti < 2; ti++) {
            r.model.outcome_threshold = taus[ti];
            pvf_fault_model fm = {PVF_FAULT_BITFLIP, -1, 1};
            int64_t trials = sanitized ? 60 : 600, differ = 0, settled = 0, bounded = 0;
            int64_t work = 0, wrong = 0;
            for (int64_t i = 0; i < trials; i++) {
                pvf_fault_site site;
                pvf_trial_result fast, plain;
                CHECK(pvf_sample_site(m, targets, nt, &fm, 3, (uint64_t)ti, (uint64_t)i, &site,
                                      &err) == 0);
                int64_t d = both_ways(&r, &site, naive, &fast, &plain);
                differ += d != 0;
                if (d)
                    fprintf(stderr, "  differs: %s[%lld] mask 0x%x\n", m->targets[site.target].name,
                            (long long)site.element, site.mask);
                const int changed = fast.effect.new_word != fast.effect.old_word &&
                                    fast.effect.new_value != fast.effect.old_value;
                settled += changed && (fast.flags & PVF_TRIAL_SETTLED);
                bounded += changed && fast.stage_rows < r.golden.n;
                wrong += plain.incorrect > 0;
                work += fast.stage_rows;
            }
            fprintf(stderr,
                    "  %s tau %g: %lld MLP trials, %lld differ; %lld changed values settled "
                    "with no inference, %lld on fewer rows than inputs; %lld with wrong "
                    "outputs; work %.3g of naive\n",
                    pvf_format_name(formats[fi]), taus[ti], (long long)trials, (long long)differ,
                    (long long)settled, (long long)bounded, (long long)wrong,
                    (double)work / (double)(trials * r.golden.n * m->nstages));
            CHECK(differ == 0);
            CHECK(settled > trials / 10); /* the bounds do settle faults */
        }
        free(naive);
        pvf_runner_close(&r);
    }
}

int main(void) {
    RUN(test_fixtures_match_pytorch);
    RUN(test_bundled_every_format);
    RUN(test_forward_from_any_stage);
    RUN(test_components);
    RUN(test_outcome_rule);
    RUN(test_embedding_faults);
    RUN(test_fast_embedding_rows);
    RUN(test_fast_nonfinite_is_exact);
    RUN(test_fast_mlp_bounds);
    return test_summary();
}
