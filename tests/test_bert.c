/* The BERT architecture end to end: a BERT of another shape than the bundled
 * one (L=4, H=256, A=4, F16 checkpoint with Hugging Face names, padded
 * sequences shorter than max_position_embeddings, two token types) and the
 * bundled models/fortunes-tinybert against PyTorch in every storage format,
 * starting at any stage, components and layers. */
#include "bert_internal.h"
#include "kernels.h"
#include "runner.h"
#include "test.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TINY PVF_SOURCE_DIR "/models/fortunes-tinybert"
#define L4   PVF_SOURCE_DIR "/tests/fixtures/bert-l4"

/* max |out - ref| / max |ref|; *agree: top-1 classes equal. */
/* Opens dir in format f; on failure prints why and fails the check. */
/* limit: the first eval inputs only (0: all), for tests that run many full passes. */
static int open_runner_limit(pvf_runner *r, const char *dir, pvf_format f, int64_t limit,
                             pvf_err *err) {
    if (pvf_runner_open_limit(r, dir, NULL, f, limit, err) == 0)
        return 0;
    fprintf(stderr, "  %s\n", err->msg);
    CHECK(0);
    return -1;
}

static int open_runner(pvf_runner *r, const char *dir, pvf_format f, pvf_err *err) {
    return open_runner_limit(r, dir, f, 0, err);
}

static double parity(const pvf_runner *r, const pvf_tensor *ref, int64_t *agree) {
    const int64_t n = r->golden.n, k = r->model.out_size;
    double diff = 0, scale = 0;
    *agree = 0;
    float *row = malloc((size_t)k * sizeof *row);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < k; j++) {
            row[j] = (float)pvf_tensor_get_f64(ref, i * k + j);
            diff = fmax(diff, fabs((double)r->golden.out[i * k + j] - row[j]));
            scale = fmax(scale, fabs((double)row[j]));
        }
        *agree += pvf_argmax(row, k) == r->golden.top1[i];
    }
    free(row);
    return diff / scale;
}

static void test_other_shape_matches_pytorch(void) {
    pvf_runner r;
    pvf_err err;
    int rc = pvf_runner_open(&r, L4, NULL, PVF_FMT_FP32, &err);
    if (rc)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK(rc == 0);
    if (rc)
        return;
    pvf_tensor ref;
    CHECK(pvf_evalset_get(&r.eval, "logits", 1, &ref, &err) == 1);
    int64_t agree;
    double d = parity(&r, &ref, &agree);
    fprintf(stderr, "  L=4 H=256 A=4 (F16 checkpoint): max |diff| / max |ref| = %.3g\n", d);
    CHECK(d <= 1e-5);
    CHECK(agree == r.golden.n);
    CHECK(r.model.nstages == 7); /* embeddings, 4 layers, pooler, classifier */
    CHECK(pvf_model_param_count(&r.model) ==
          120 * 256 + 32 * 256 + 2 * 256 + 2 * 256 +
              4 * (4 * (256 * 256 + 256) + 2 * (256 * 256 + 256) + 4 * 256) + 256 * 256 + 256 +
              3 * 256 + 3);
    size_t bytes = (size_t)(r.golden.n * r.model.out_size) * sizeof(float);
    for (int s = 0; s < r.model.nstages; s++) {
        memset(r.out, 0xFF, bytes);
        CHECK(pvf_forward_from(&r.exec, &r.golden, s, r.out, &err) == 0);
        CHECK(memcmp(r.out, r.golden.out, bytes) == 0);
    }
    pvf_runner_close(&r);
}

static void test_bundled_every_format(void) {
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        pvf_runner r;
        pvf_err err;
        int rc = pvf_runner_open(&r, TINY, NULL, (pvf_format)f, &err);
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
        int64_t agree, correct = 0, n = r.golden.n;
        for (int64_t i = 0; i < n; i++)
            correct += pvf_tensor_get_i64(&labels, i) == r.golden.top1[i];
        double d = parity(&r, &ref, &agree);
        fprintf(stderr, "  %-8s accuracy %.3f, agreement %lld/%lld, max |diff| / max |ref| %.3g\n",
                pvf_format_name((pvf_format)f), (double)correct / (double)n, (long long)agree,
                (long long)n, d);
        CHECK(agree == n);
        CHECK(d <= 1e-4);
        CHECK((double)correct / (double)n > 0.5); /* six classes: chance is 1/6 */
        pvf_runner_close(&r);
    }
}

static void test_forward_from_any_stage(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, TINY, PVF_FMT_BF16, &err))
        return;
    CHECK(r.model.nstages == 5);
    size_t bytes = (size_t)(r.golden.n * r.model.out_size) * sizeof(float);
    for (int s = 0; s < r.model.nstages; s++) {
        memset(r.out, 0xFF, bytes);
        CHECK(pvf_forward_from(&r.exec, &r.golden, s, r.out, &err) == 0);
        CHECK(memcmp(r.out, r.golden.out, bytes) == 0); /* bit-identical to golden */
    }
    pvf_runner_close(&r);
}

static const char *component_of(const pvf_model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return m->params[i].component;
    return "";
}

static const char *stage_of(const pvf_model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return m->stages[m->params[i].stage].name;
    return "";
}

static void test_components_and_layers(void) {
    pvf_model m;
    pvf_err err;
    if (pvf_model_load(&m, L4, PVF_FMT_INT8, &err)) {
        CHECK(0);
        return;
    }
    static const char *const want[][3] = {
        {"bert.embeddings.word_embeddings.weight", "embeddings", "embeddings"},
        {"bert.embeddings.LayerNorm.bias", "layernorm", "embeddings"},
        {"bert.encoder.layer.2.attention.self.query.weight", "attention.q", "layer.2"},
        {"bert.encoder.layer.0.attention.self.key.bias", "attention.k", "layer.0"},
        {"bert.encoder.layer.3.attention.self.value.weight", "attention.v", "layer.3"},
        {"bert.encoder.layer.1.attention.output.dense.weight", "attention.o", "layer.1"},
        {"bert.encoder.layer.1.attention.output.LayerNorm.weight", "layernorm", "layer.1"},
        {"bert.encoder.layer.3.intermediate.dense.weight", "ffn", "layer.3"},
        {"bert.encoder.layer.3.output.dense.bias", "ffn", "layer.3"},
        {"bert.pooler.dense.weight", "pooler", "pooler"},
        {"classifier.bias", "classifier", "classifier"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        CHECK(strcmp(component_of(&m, want[i][0]), want[i][1]) == 0);
        CHECK(strcmp(stage_of(&m, want[i][0]), want[i][2]) == 0);
    }
    CHECK(m.nparams == 5 + 4 * 16 + 4);
    CHECK(pvf_model_find_target(&m, "bert.encoder.layer.0.output.LayerNorm.weight_scale") < 0);
    CHECK(pvf_model_find_target(&m, "bert.embeddings.position_embeddings.weight_scale") >= 0);
    pvf_model_free(&m);
}

/* Runs a flip of `bit` in word-embedding row `row` (element 7) of the L=4
 * fixture; *changed: bit mask of the eval inputs whose logits changed. */
static void flip_word_row(pvf_runner *r, int64_t row, int bit, unsigned *changed) {
    pvf_err err;
    pvf_fault_site site = {
        .target = pvf_model_find_target(&r->model, "bert.embeddings.word_embeddings.weight"),
        .element = row * 256 + 7,
        .mask = 1u << bit};
    pvf_trial_result res;
    CHECK(pvf_trial_run(&r->exec, &r->golden, PVF_FAULT_BITFLIP, &site, r->out, &res, &err) == 0);
    *changed = 0;
    const int64_t k = r->model.out_size;
    for (int64_t i = 0; i < r->golden.n; i++)
        if (memcmp(r->out + i * k, r->golden.out + i * k, (size_t)k * sizeof(float)) != 0)
            *changed |= 1u << i;
}

/* A fault in a word's embedding changes exactly the inputs that hold the word
 * at a real (unmasked) position: padding is masked, as in Hugging Face, until
 * the fault makes it NaN (a row of 1e37 overflows LayerNorm): then 0 x NaN
 * in the attention poisons every padded input, as it does in PyTorch. */
static void test_faults_follow_the_tokens(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, L4, PVF_FMT_FP32, &err))
        return;
    r.exec.want_outputs = 1; /* the fast path writes every output */
    pvf_tensor ids, mask;
    CHECK(pvf_evalset_get(&r.eval, "input_ids", 1, &ids, &err) == 1);
    CHECK(pvf_evalset_get(&r.eval, "attention_mask", 1, &mask, &err) == 1);
    const int64_t n = r.golden.n, s = ids.shape[1];
    int64_t word = pvf_tensor_get_i64(&ids, 2 * s + 1); /* a word of input 2 */
    unsigned readers = 0, padded = 0, seen = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < s; t++) {
            int64_t id = pvf_tensor_get_i64(&ids, i * s + t);
            int real = pvf_tensor_get_i64(&mask, i * s + t) == 1;
            seen |= id == 1;
            if (id == word && real)
                readers |= 1u << i;
            if (!real)
                padded |= 1u << i;
        }
    CHECK(!seen && padded != 0 && readers != 0);
    unsigned changed;
    flip_word_row(&r, 1, 30, &changed); /* [UNK]: in no input */
    CHECK(changed == 0);
    flip_word_row(&r, 0, 23, &changed); /* [PAD] x 2: only at masked positions */
    CHECK(changed == 0);
    flip_word_row(&r, 0, 30, &changed); /* [PAD] x 1e38: NaN keys and values */
    CHECK(changed == padded);
    CHECK(isnan(r.out[r.model.out_size * (int64_t)__builtin_ctz(padded)]));
    flip_word_row(&r, word, 30, &changed);
    fprintf(stderr, "  word %lld: inputs reading it 0x%x, changed 0x%x\n", (long long)word, readers,
            changed);
    CHECK(changed == readers);
    pvf_runner_close(&r);
}

/* ---- The fast trial path (bert_fast.c) on the bundled model ---- */

/* Runs the site both ways: the fast path (outputs materialized) into *fast
 * and r->out, the naive full forward pass into *plain and naive_out. */
static void both_ways(pvf_runner *r, pvf_fault_kind kind, const pvf_fault_site *site,
                      pvf_trial_result *fast, pvf_trial_result *plain, float *naive_out) {
    pvf_err err;
    r->exec.want_outputs = 1;
    r->exec.naive = 0;
    CHECK(pvf_trial_run(&r->exec, &r->golden, kind, site, r->out, fast, &err) == 0);
    r->exec.naive = 1;
    CHECK(pvf_trial_run(&r->exec, &r->golden, kind, site, naive_out, plain, &err) == 0);
    r->exec.naive = 0;
}

/* Eval inputs holding word w anywhere (padding included): count, and the
 * first such input into *first. */
static int64_t word_readers(const pvf_tensor *ids, int64_t n, int64_t s, int64_t w,
                            int64_t *first) {
    int64_t k = 0;
    *first = -1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t t = 0; t < s; t++)
            if (pvf_tensor_get_i64(ids, i * s + t) == w) {
                if (!k++)
                    *first = i;
                break;
            }
    return k;
}

static void test_fast_word_rows(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, TINY, PVF_FMT_FP32, &err))
        return;
    pvf_tensor ids;
    CHECK(pvf_evalset_get(&r.eval, "input_ids", 1, &ids, &err) == 1);
    const int64_t n = r.golden.n, s = ids.shape[1], h = 128, k = r.model.out_size;
    const int target = pvf_model_find_target(&r.model, "bert.embeddings.word_embeddings.weight");
    float *naive = malloc((size_t)(n * k) * sizeof *naive);
    /* an unread row (the last word no eval input holds) and a rare read one */
    int64_t unread = -1, rare = -1, rare_k = 0, first;
    for (int64_t w = 7703; w > 100 && (unread < 0 || rare < 0); w--) {
        int64_t readers = word_readers(&ids, n, s, w, &first);
        if (readers == 0 && unread < 0)
            unread = w;
        if (readers >= 2 && readers <= 4 && rare < 0) {
            rare = w;
            rare_k = readers;
        }
    }
    CHECK(unread >= 0 && rare >= 0);
    /* unread: settled with no inference, even for a huge value */
    pvf_fault_site site = {.target = target, .element = unread * h + 5, .mask = 1u << 30};
    pvf_trial_result fast, plain;
    both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
    CHECK((fast.flags & PVF_TRIAL_SETTLED) && fast.stage_rows == 0);
    CHECK(fast.incorrect == 0 && plain.incorrect == 0);
    CHECK(memcmp(naive, r.golden.out, (size_t)(n * k) * sizeof *naive) == 0);
    /* read: only its readers are computed, and only their outputs change */
    for (int bit = 30; bit >= 22; bit -= 8) {
        site = (pvf_fault_site){.target = target, .element = rare * h + 9, .mask = 1u << bit};
        both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
        int64_t changed = 0, outside = 0;
        for (int64_t i = 0; i < n; i++) {
            int differs = memcmp(naive + i * k, r.golden.out + i * k, (size_t)k * sizeof(float));
            int64_t f0;
            int reads =
                word_readers(&ids, i + 1, s, rare, &f0) > word_readers(&ids, i, s, rare, &f0);
            changed += differs != 0;
            outside += differs && !reads;
        }
        fprintf(stderr,
                "  word %lld (in %lld inputs), bit %d: fast ran %lld (input, stage) pairs, naive "
                "%lld; outputs changed %lld\n",
                (long long)rare, (long long)rare_k, bit, (long long)fast.stage_rows,
                (long long)plain.stage_rows, (long long)changed);
        CHECK(outside == 0);
        CHECK(fast.stage_rows <= rare_k * r.model.nstages);
        CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
        for (int64_t i = 0; i < n; i++)
            CHECK(pvf_argmax(r.out + i * k, k) == pvf_argmax(naive + i * k, k));
    }
    free(naive);
    pvf_runner_close(&r);
}

/* Low-mantissa flips in encoder weights: both ways agree, and some are
 * settled by the bounds alone while the naive pass's logits do move (a key
 * weight touches every input: a few low-margin inputs may stay unsettled);
 * a NaN weight is never settled and both ways see the same non-finite
 * outputs. */
static void test_fast_encoder_bounds(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, TINY, PVF_FMT_FP32, &err))
        return;
    const int64_t n = r.golden.n, k = r.model.out_size;
    float *naive = malloc((size_t)(n * k) * sizeof *naive);
    static const char *const names[] = {"bert.encoder.layer.0.intermediate.dense.weight",
                                        "bert.encoder.layer.0.attention.self.key.weight",
                                        "bert.encoder.layer.1.output.dense.weight"};
    int settled_moved = 0;
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int target = pvf_model_find_target(&r.model, names[t]);
        CHECK(target >= 0);
        int settled_here = 0;
        for (int bit = 0; bit < 23 && !settled_here; bit++) {
            pvf_fault_site site = {.target = target, .element = 1000 + bit, .mask = 1u << bit};
            pvf_trial_result fast, plain;
            both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
            CHECK(fast.incorrect == plain.incorrect);
            if (!(fast.flags & PVF_TRIAL_SETTLED))
                continue;
            settled_here = 1;
            CHECK(fast.stage_rows == 0 && plain.incorrect == 0);
            int moved = memcmp(naive, r.golden.out, (size_t)(n * k) * sizeof *naive) != 0;
            settled_moved += moved;
            fprintf(stderr, "  %s bit %d: settled by the bounds; naive logits %s\n", names[t], bit,
                    moved ? "moved, top-1 kept" : "unchanged");
        }
        /* all exponent bits set: NaN (the mantissa is not zero) */
        pvf_fault_site site = {.target = target, .element = 77, .mask = 0x7F800000u};
        pvf_trial_result fast, plain;
        both_ways(&r, PVF_FAULT_STUCK1, &site, &fast, &plain, naive);
        CHECK(isnan(fast.effect.new_value));
        CHECK(!(fast.flags & PVF_TRIAL_SETTLED) && fast.stage_rows > 0);
        CHECK(fast.nonfinite > 0 && fast.nonfinite == plain.nonfinite);
        CHECK(fast.incorrect == plain.incorrect);
    }
    CHECK(settled_moved > 0); /* the bounds settled a fault that did move the logits */
    /* a NaN in a read word row */
    pvf_tensor ids;
    CHECK(pvf_evalset_get(&r.eval, "input_ids", 1, &ids, &err) == 1);
    int64_t w = pvf_tensor_get_i64(&ids, 1); /* the second token of input 0 */
    pvf_fault_site site = {
        .target = pvf_model_find_target(&r.model, "bert.embeddings.word_embeddings.weight"),
        .element = w * 128 + 3,
        .mask = 0x7F800000u};
    pvf_trial_result fast, plain;
    both_ways(&r, PVF_FAULT_STUCK1, &site, &fast, &plain, naive);
    CHECK(!(fast.flags & PVF_TRIAL_SETTLED) && fast.nonfinite > 0);
    CHECK(fast.nonfinite == plain.nonfinite && fast.incorrect == plain.incorrect);
    free(naive);
    pvf_runner_close(&r);
}

/* Per-input outcomes of two output sets agree (non-finite rows alike). */
static int same_outcomes(const pvf_runner *r, const float *a, const float *b) {
    const int64_t n = r->golden.n, k = r->model.out_size;
    for (int64_t i = 0; i < n; i++) {
        int fa = pvf_all_finite(a + i * k, k), fb = pvf_all_finite(b + i * k, k);
        if (fa != fb || (fa && pvf_argmax(a + i * k, k) != pvf_argmax(b + i * k, k)))
            return 0;
    }
    return 1;
}

/* Exponent-bit flips (x 2^128) in layer 0's value, attention output and
 * feed-forward weights and biases make some token's LayerNorm input
 * overflow: those inputs are settled as non-finite from one token's cached
 * activations (a value: from its golden attention weights). Both ways agree input by input, and the
 * fast path runs far fewer (input, stage) pairs than the full pass. */
static void test_fast_poisoned(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner_limit(&r, TINY, PVF_FMT_FP32, 200, &err))
        return;
    const int64_t n = r.golden.n, k = r.model.out_size;
    float *naive = malloc((size_t)(n * k) * sizeof *naive);
    static const char *const names[] = {"bert.encoder.layer.0.attention.output.dense.weight",
                                        "bert.encoder.layer.0.attention.output.dense.bias",
                                        "bert.encoder.layer.0.intermediate.dense.weight",
                                        "bert.encoder.layer.0.intermediate.dense.bias",
                                        "bert.encoder.layer.0.output.dense.weight",
                                        "bert.encoder.layer.0.output.dense.bias",
                                        "bert.encoder.layer.0.attention.self.value.weight",
                                        "bert.encoder.layer.0.attention.self.value.bias"};
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int target = pvf_model_find_target(&r.model, names[t]);
        CHECK(target >= 0);
        for (int64_t e = 3; e < (t < 6 ? 40 : 20); e += 12) {
            pvf_fault_site site = {.target = target, .element = e, .mask = 1u << 30};
            pvf_trial_result fast, plain;
            both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
            CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
            CHECK(same_outcomes(&r, r.out, naive));
            if (fabsf(fast.effect.new_value) < 1e30f)
                continue; /* a weight of magnitude >= 2: bit 30 made it small */
            if (strstr(names[t], "intermediate.dense.bias") && fast.effect.new_value < 0)
                continue; /* GELU maps a huge negative input to 0: nothing overflows */
            CHECK(fast.nonfinite > n / 4);
            CHECK(fast.stage_rows * 4 < plain.stage_rows);
            fprintf(stderr,
                    "  %s[%" PRId64 "] = %.3g: %" PRId64 " of %" PRId64
                    " inputs non-finite; fast ran %" PRId64 " (input, stage) pairs, naive %" PRId64
                    "\n",
                    names[t], e, (double)fast.effect.new_value, fast.nonfinite, n, fast.stage_rows,
                    plain.stage_rows);
        }
    }
    free(naive);
    pvf_runner_close(&r);
}

/* A huge embedding row value (bit 30: x 2^128) makes the embedding
 * LayerNorm of every token that reads the row NaN, padded ones included,
 * hence every logit of those inputs: the fast path judges them non-finite
 * from the row's faulty sum alone. A value of about 1e10 (several exponent
 * bits) is huge too, but its LayerNorm stays finite: no input may be judged
 * non-finite then. Both ways agree input by input. */
static void test_fast_poisoned_embeddings(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner_limit(&r, TINY, PVF_FMT_FP32, 60, &err))
        return;
    const int64_t n = r.golden.n, k = r.model.out_size;
    float *naive = malloc((size_t)(n * k) * sizeof *naive);
    static const char *const names[] = {"bert.embeddings.position_embeddings.weight",
                                        "bert.embeddings.word_embeddings.weight",
                                        "bert.embeddings.token_type_embeddings.weight"};
    /* row 3 of each table: position 3, word 3 ([CLS] or another common
     * token in the eval set's vocabulary), token type 0 at element 5 */
    static const int64_t elements[] = {3 * 128 + 5, 101 * 128 + 7, 5};
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int target = pvf_model_find_target(&r.model, names[t]);
        CHECK(target >= 0);
        pvf_fault_site site = {.target = target, .element = elements[t], .mask = 1u << 30};
        pvf_trial_result fast, plain;
        both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
        CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
        CHECK(same_outcomes(&r, r.out, naive));
        if (!(fabsf(fast.effect.new_value) > 1e30f))
            continue; /* a weight of magnitude >= 2: bit 30 made it small */
        CHECK(fast.nonfinite == plain.nonfinite && plain.nonfinite > 0);
        if (t != 1) /* every input reads a position or type row: none computed */
            CHECK(fast.stage_rows * 4 < plain.stage_rows);
        fprintf(stderr,
                "  %s[%" PRId64 "] = %.3g: %" PRId64 " of %" PRId64
                " inputs non-finite; fast ran %" PRId64 " (input, stage) pairs, naive %" PRId64
                "\n",
                names[t], elements[t], (double)fast.effect.new_value, fast.nonfinite, n,
                fast.stage_rows, plain.stage_rows);
        /* the same element to about 2^33: its exponent bits set to 160 */
        const uint32_t exp_bits = 0x7F800000u, want = 160u << 23;
        site.mask = (fast.effect.old_word ^ want) & exp_bits;
        both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
        CHECK(fabsf(fast.effect.new_value) > 1e9f && fabsf(fast.effect.new_value) < 1e11f);
        CHECK(plain.nonfinite == 0 && fast.nonfinite == 0);
        CHECK(fast.incorrect == plain.incorrect);
        CHECK(same_outcomes(&r, r.out, naive));
    }
    free(naive);
    pvf_runner_close(&r);
}

/* The last layer's row-by-row bound (bert_fast.c, row_changes) against the
 * exact change: higher mantissa and exponent flips in layer 0's attention
 * and feed-forward weights move texts past every settle limit; each text
 * the fast path then runs exactly through the last layer is audited (the
 * [CLS] output's exact change must lie within the bound that did not settle
 * it, and each margin's change within its linearized bound, cls_moved, from
 * the bound on the [CLS] first LayerNorm input). Reports the tightest bound /
 * change ratios seen. */
static void test_fast_row_bound_audit(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner_limit(&r, TINY, PVF_FMT_FP32, 60, &err))
        return;
    static const char *const names[] = {"bert.encoder.layer.0.attention.self.query.weight",
                                        "bert.encoder.layer.0.attention.self.key.weight",
                                        "bert.encoder.layer.0.attention.self.value.weight",
                                        "bert.encoder.layer.0.attention.output.dense.weight",
                                        "bert.encoder.layer.0.intermediate.dense.weight",
                                        "bert.encoder.layer.0.output.dense.weight"};
    r.exec.audit_bounds = 1;
    r.exec.audit_min_ratio = INFINITY;
    r.exec.audit_margin_min_ratio = INFINITY;
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int target = pvf_model_find_target(&r.model, names[t]);
        CHECK(target >= 0);
        for (int bit = 19; bit <= 31; bit++)
            for (int64_t e = 0; e < 2; e++) {
                pvf_fault_site site = {.target = target,
                                       .element = 1009 * (int64_t)(t + 1) + 4099 * e + 61 * bit,
                                       .mask = 1u << bit};
                pvf_trial_result res;
                CHECK(pvf_trial_run(&r.exec, &r.golden, PVF_FAULT_BITFLIP, &site, r.out, &res,
                                    &err) == 0);
            }
    }
    CHECK(r.exec.audit_checked > 100);
    CHECK(r.exec.audit_violations == 0);
    CHECK(r.exec.audit_margin_checked > 100);
    CHECK(r.exec.audit_margin_violations == 0);
    fprintf(stderr,
            "  %" PRId64 " texts run exactly past the row-by-row bound, %" PRId64
            " outside it; tightest bound / exact change %.3g; %" PRId64 " margins, %" PRId64
            " outside their bound, tightest %.3g\n",
            r.exec.audit_checked, r.exec.audit_violations, r.exec.audit_min_ratio,
            r.exec.audit_margin_checked, r.exec.audit_margin_violations,
            r.exec.audit_margin_min_ratio);
    pvf_runner_close(&r);
}

/* A parameter's values by Hugging Face name. */
static const float *param_values(const pvf_model *m, const char *name) {
    const int t = pvf_model_find_target(m, name);
    CHECK(t >= 0);
    return t >= 0 ? m->params[m->targets[t].param].value : NULL;
}

/* LayerNorm of x[h] in double, in place. */
static void ln_double(double *x, int64_t h, const float *w, const float *bias) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < h; c++)
        mean += x[c];
    mean /= (double)h;
    for (int64_t c = 0; c < h; c++)
        var += (x[c] - mean) * (x[c] - mean);
    const double sc = sqrt(var / (double)h + 1e-12);
    for (int64_t c = 0; c < h; c++)
        x[c] = (x[c] - mean) / sc * w[c] + bias[c];
}

/* The tiny model's last layer [CLS] path from its first LayerNorm input:
 * LayerNorm, feed-forward (erf GELU), residual, LayerNorm, tanh pooler,
 * classifier. */
typedef struct cls_path {
    const float *g1, *b1, *w1, *c1, *w2, *c2, *g2, *b2, *wp, *bp, *wc, *bc;
} cls_path;

static void cls_path_init(cls_path *p, const pvf_model *m) {
#define P(name) param_values(m, "bert.encoder.layer.1." name)
    p->g1 = P("attention.output.LayerNorm.weight");
    p->b1 = P("attention.output.LayerNorm.bias");
    p->w1 = P("intermediate.dense.weight");
    p->c1 = P("intermediate.dense.bias");
    p->w2 = P("output.dense.weight");
    p->c2 = P("output.dense.bias");
    p->g2 = P("output.LayerNorm.weight");
    p->b2 = P("output.LayerNorm.bias");
#undef P
    p->wp = param_values(m, "bert.pooler.dense.weight");
    p->bp = param_values(m, "bert.pooler.dense.bias");
    p->wc = param_values(m, "classifier.weight");
    p->bc = param_values(m, "classifier.bias");
}

/* Margin top - k from first LayerNorm input z[128], in double (the tiny
 * model's sizes). */
static double cls_margin(const cls_path *p, const double *z, int64_t top, int64_t k) {
    enum { H = 128, I = 512, LABELS = 6 };
    double a[H], u[H], inter[I], pooled[H], logit[LABELS];
    memcpy(a, z, sizeof a);
    ln_double(a, H, p->g1, p->b1);
    for (int j = 0; j < I; j++) {
        double pre = p->c1[j];
        for (int c = 0; c < H; c++)
            pre += (double)p->w1[j * H + c] * a[c];
        inter[j] = pre * 0.5 * erfc(-pre * M_SQRT1_2);
    }
    for (int c = 0; c < H; c++) {
        double acc = p->c2[c] + a[c];
        for (int j = 0; j < I; j++)
            acc += (double)p->w2[c * I + j] * inter[j];
        u[c] = acc;
    }
    ln_double(u, H, p->g2, p->b2);
    for (int j = 0; j < H; j++) {
        double acc = p->bp[j];
        for (int c = 0; c < H; c++)
            acc += (double)p->wp[j * H + c] * u[c];
        pooled[j] = tanh(acc);
    }
    for (int l = 0; l < LABELS; l++) {
        double acc = p->bc[l];
        for (int c = 0; c < H; c++)
            acc += (double)p->wc[l * H + c] * pooled[c];
        logit[l] = acc;
    }
    return logit[top] - logit[k];
}

/* The gradient of cls_margin at x by central differences; returns its norm. */
static double cls_margin_grad(const cls_path *p, const double *x, int64_t top, int64_t k,
                              double *grad) {
    enum { H = 128 };
    double e[H], norm = 0;
    const double step = 1e-5;
    memcpy(e, x, sizeof e);
    for (int c = 0; c < H; c++) {
        e[c] = x[c] + step;
        const double up = cls_margin(p, e, top, k);
        e[c] = x[c] - step;
        grad[c] = (up - cls_margin(p, e, top, k)) / (2 * step);
        e[c] = x[c];
        norm += grad[c] * grad[c];
    }
    return sqrt(norm);
}

/* The fast path's linearized bound of the last layer's [CLS] path
 * (cls_moved) against that path computed in double: the gradient norm it
 * keeps equals a central-difference gradient's (its 1.001 inflation
 * aside), its bound is tight along the gradient for small changes (the
 * linear term is the gradient's), and it holds along the gradient and
 * random directions for changes up to where it reaches the margin, and in
 * the worst direction a gradient ascent of the change on the sphere finds
 * at the largest of those (first two texts). */
static void test_fast_cls_linearization(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner_limit(&r, TINY, PVF_FMT_FP32, 8, &err))
        return;
    enum { H = 128 };
    const bert *b = r.model.arch_state;
    CHECK(b->hidden == H && b->inter == 512 && b->labels == 6 && b->layers == 2);
    cls_path path;
    cls_path_init(&path, &r.model);
    uint64_t rng = 12345;
    int64_t pairs = 0, checks = 0, violations = 0;
    double worst_grad = 0, worst_tight = 0, tightest = INFINITY;
    for (int64_t i = 0; i < r.golden.n; i++)
        for (int64_t k = 0; k < 6; k++) {
            const float *zf;
            double gnorm, moved;
            if (pvf_bert_fast_cls_probe(&r.model, &r.golden, i, k, 0, &zf, &gnorm, &moved))
                continue;
            const int64_t top = r.golden.top1[i];
            double z[H], e[H], grad[H];
            for (int c = 0; c < H; c++)
                z[c] = zf[c];
            const double m0 = cls_margin(&path, z, top, k);
            const double norm = cls_margin_grad(&path, z, top, k, grad);
            pairs++;
            worst_grad = fmax(worst_grad, fabs(gnorm / 1.001 / norm - 1));
            /* along the gradient, a tiny change: the bound is its linear term */
            const double tiny = 1e-4;
            for (int c = 0; c < H; c++)
                e[c] = z[c] + grad[c] / norm * tiny;
            pvf_bert_fast_cls_probe(&r.model, &r.golden, i, k, tiny, &zf, &gnorm, &moved);
            worst_tight = fmax(worst_tight, moved / fabs(cls_margin(&path, e, top, k) - m0));
            /* soundness up to where the bound reaches the margin */
            double rad = 1e-3, last = 0;
            for (; rad < 10; rad *= 2) {
                pvf_bert_fast_cls_probe(&r.model, &r.golden, i, k, rad, &zf, &gnorm, &moved);
                if (!(moved < fabs(m0)))
                    break;
                last = rad;
                for (int dir = 0; dir < 4; dir++) {
                    double len = 0;
                    for (int c = 0; c < H; c++) {
                        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                        e[c] = dir == 0 ? grad[c]
                                        : (double)(int64_t)(rng >> 11) / 4503599627370496.0 - 1;
                        len += e[c] * e[c];
                    }
                    for (int c = 0; c < H; c++)
                        e[c] = z[c] + e[c] / sqrt(len) * rad;
                    const double change = fabs(cls_margin(&path, e, top, k) - m0);
                    checks++;
                    violations += !(change <= moved);
                    if (change > 0)
                        tightest = fmin(tightest, moved / change);
                }
            }
            if (i >= 2 || last == 0)
                continue;
            /* the worst direction at that radius: gradient ascent of the
             * change on the sphere, from the gradient's direction */
            pvf_bert_fast_cls_probe(&r.model, &r.golden, i, k, last, &zf, &gnorm, &moved);
            double dir[H], g[H], worst = 0;
            for (int c = 0; c < H; c++)
                dir[c] = grad[c] / norm;
            for (int it = 0; it < 6; it++) {
                for (int c = 0; c < H; c++)
                    e[c] = z[c] + dir[c] * last;
                const double d = cls_margin(&path, e, top, k) - m0,
                             gn = cls_margin_grad(&path, e, top, k, g);
                worst = fmax(worst, fabs(d));
                double len = 0;
                for (int c = 0; c < H; c++) {
                    dir[c] += (d < 0 ? -1 : 1) * g[c] / gn;
                    len += dir[c] * dir[c];
                }
                for (int c = 0; c < H; c++)
                    dir[c] /= sqrt(len);
            }
            checks++;
            violations += !(worst <= moved);
            tightest = fmin(tightest, moved / worst);
        }
    CHECK(pairs >= 20);
    CHECK(worst_grad < 1e-4);
    CHECK(worst_tight < 1.05); /* its inflation for rounding, and the rounding term */
    CHECK(checks > 100);
    CHECK(violations == 0);
    fprintf(stderr,
            "  %" PRId64 " margins: gradient norm within %.2g of central differences, bound / "
            "change along it %.4f; %" PRId64 " changes, %" PRId64
            " outside the bound, tightest bound / change %.4f\n",
            pairs, worst_grad, worst_tight, checks, violations, tightest);
    pvf_runner_close(&r);
}

/* Counts the eval inputs whose logits the full pass (naive) moved from
 * golden, and of those the ones the fast pass (r->out) left golden: settled
 * by a bound. */
static void count_settled_moves(const pvf_runner *r, const float *naive, int64_t *moved,
                                int64_t *settled) {
    const int64_t k = r->model.out_size;
    const size_t row = (size_t)k * sizeof(float);
    for (int64_t i = 0; i < r->golden.n; i++) {
        const float *gold = r->golden.out + i * k;
        if (memcmp(naive + i * k, gold, row) == 0)
            continue;
        ++*moved;
        *settled += memcmp(r->out + i * k, gold, row) == 0;
    }
}

/* Mantissa flips in layer 0's query, key and value weights: both ways agree
 * input by input (the higher bits run inputs exactly from the cached
 * queries, keys and values), and on bits 6-12 the feature-by-feature bounds
 * settle most inputs whose logits do move in the full pass (their fast
 * outputs stay golden's). */
static void test_fast_attention_bounds(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, TINY, PVF_FMT_FP32, &err))
        return;
    const int64_t n = r.golden.n, k = r.model.out_size;
    const size_t row = (size_t)k * sizeof(float);
    float *naive = malloc((size_t)n * row);
    static const char *const names[] = {"bert.encoder.layer.0.attention.self.query.weight",
                                        "bert.encoder.layer.0.attention.self.key.weight",
                                        "bert.encoder.layer.0.attention.self.value.weight"};
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int target = pvf_model_find_target(&r.model, names[t]);
        CHECK(target >= 0);
        int64_t moved = 0, settled_moved = 0;
        for (int bit = 6; bit <= 18; bit += 2) {
            pvf_fault_site site = {.target = target, .element = 517 + 33 * bit, .mask = 1u << bit};
            pvf_trial_result fast, plain;
            both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
            CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
            CHECK(same_outcomes(&r, r.out, naive));
            if (bit <= 12)
                count_settled_moves(&r, naive, &moved, &settled_moved);
        }
        fprintf(stderr,
                "  %s, bits 6-12: %" PRId64 " inputs' logits moved, %" PRId64
                " of them settled by the bounds\n",
                names[t], moved, settled_moved);
        CHECK(moved > 0 && settled_moved * 2 > moved);
    }
    free(naive);
    pvf_runner_close(&r);
}

/* Sign and exponent flips in layer 0's value and attention output weights
 * (and its first LayerNorm's weight) change every token's first LayerNorm
 * input (output): the inputs that the bounds from there do not settle run
 * layer 0 exactly from the cached activations, and settle from the first
 * LayerNorm's measured output changes (settles_at_ln1_out) or from the
 * GELU's (settles_at_ffn) when those are small. Both ways agree input by input, and some inputs
 * whose logits do move in the full pass keep golden's outputs on the fast
 * side (settled by a bound, not run). */
static void test_fast_ffn_settle(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner_limit(&r, TINY, PVF_FMT_FP32, 100, &err))
        return;
    const int64_t n = r.golden.n, k = r.model.out_size;
    const size_t row = (size_t)k * sizeof(float);
    float *naive = malloc((size_t)n * row);
    static const char *const names[] = {"bert.encoder.layer.0.attention.self.value.weight",
                                        "bert.encoder.layer.0.attention.output.dense.weight",
                                        "bert.encoder.layer.0.attention.output.LayerNorm.weight"};
    static const int bits[] = {31, 26};
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int target = pvf_model_find_target(&r.model, names[t]);
        CHECK(target >= 0);
        int64_t moved = 0, settled_moved = 0;
        for (size_t j = 0; j < sizeof bits / sizeof *bits; j++) {
            pvf_fault_site site = {.target = target,
                                   .element =
                                       (901 + 4099 * (int64_t)j) % r.model.targets[target].numel,
                                   .mask = 1u << bits[j]};
            pvf_trial_result fast, plain;
            both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
            CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
            CHECK(same_outcomes(&r, r.out, naive));
            count_settled_moves(&r, naive, &moved, &settled_moved);
        }
        fprintf(stderr,
                "  %s, bits 31, 26: %" PRId64 " inputs' logits moved, %" PRId64
                " of them settled by the bounds\n",
                names[t], moved, settled_moved);
        CHECK(moved > 0 && settled_moved > 0);
    }
    free(naive);
    pvf_runner_close(&r);
}

/* A moderate fault in a position-embedding row changes only the padded
 * tokens of the inputs shorter than that position (their keys weigh 0), so
 * the fast path considers only the inputs with an unmasked token there: it
 * runs at most one (input, stage) pair per stage for each of those, and
 * both ways agree input by input. */
static void test_fast_position_rows(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner(&r, TINY, PVF_FMT_FP32, &err))
        return;
    const int64_t n = r.golden.n, k = r.model.out_size;
    float *naive = malloc((size_t)(n * k) * sizeof *naive);
    pvf_tensor mask;
    CHECK(pvf_evalset_get(&r.eval, "attention_mask", 1, &mask, &err) == 1);
    const int64_t s = mask.ndim == 2 ? mask.shape[1] : 0;
    int64_t pos = -1, readers = n; /* the position fewest inputs reach (some do) */
    for (int64_t p = 1; p < s; p++) {
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++)
            c += pvf_tensor_get_i64(&mask, i * s + p) != 0;
        if (c > 0 && c < readers) {
            pos = p;
            readers = c;
        }
    }
    CHECK(pos > 0 && readers < n);
    const int target =
        pvf_model_find_target(&r.model, "bert.embeddings.position_embeddings.weight");
    CHECK(target >= 0);
    for (int bit = 21; bit <= 24 && pos > 0; bit += 3) {
        pvf_fault_site site = {.target = target, .element = pos * 128 + 5, .mask = 1u << bit};
        pvf_trial_result fast, plain;
        both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
        CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
        CHECK(same_outcomes(&r, r.out, naive));
        CHECK(fast.stage_rows <= (int64_t)r.model.nstages * readers);
        fprintf(stderr,
                "  position %" PRId64 " (%" PRId64 " of %" PRId64 " inputs reach it), bit %d: fast "
                "ran %" PRId64 " (input, stage) pairs, naive %" PRId64 "\n",
                pos, readers, n, bit, fast.stage_rows, plain.stage_rows);
    }
    /* Higher mantissa and exponent flips in layer 0's value, attention
     * output and first feed-forward weights, whose inputs settle from their
     * exact first LayerNorm input or GELU changes: both ways agree. */
    static const char *const names[] = {"bert.encoder.layer.0.attention.self.value.weight",
                                        "bert.encoder.layer.0.attention.output.dense.weight",
                                        "bert.encoder.layer.0.intermediate.dense.weight"};
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int tg = pvf_model_find_target(&r.model, names[t]);
        CHECK(tg >= 0);
        pvf_fault_site site = {.target = tg, .element = 301 + 97 * (int64_t)t, .mask = 1u << 20};
        pvf_trial_result fast, plain;
        both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
        CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
        CHECK(same_outcomes(&r, r.out, naive));
    }
    free(naive);
    pvf_runner_close(&r);
}

/* Bit 30 (x 2^128) in layer 0's query and key weights and biases makes
 * one query or key feature huge at every token, padded ones included; where
 * every score provably stays finite the fast path runs the inputs over
 * their unmasked tokens alone (padded keys keep weight 0). Both ways agree
 * input by input, and the faults do change some outcomes. */
static void test_fast_huge_query_key(void) {
    pvf_runner r;
    pvf_err err;
    if (open_runner_limit(&r, TINY, PVF_FMT_FP32, 100, &err))
        return;
    const int64_t n = r.golden.n, k = r.model.out_size;
    float *naive = malloc((size_t)(n * k) * sizeof *naive);
    static const char *const names[] = {"bert.encoder.layer.0.attention.self.query.weight",
                                        "bert.encoder.layer.0.attention.self.query.bias",
                                        "bert.encoder.layer.0.attention.self.key.weight",
                                        "bert.encoder.layer.0.attention.self.key.bias"};
    int64_t changed = 0;
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        const int target = pvf_model_find_target(&r.model, names[t]);
        CHECK(target >= 0);
        for (int64_t e = 7; e < 128; e += 61) {
            pvf_fault_site site = {.target = target,
                                   .element = e * 131 % r.model.targets[target].numel,
                                   .mask = 1u << 30};
            pvf_trial_result fast, plain;
            both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &plain, naive);
            CHECK(fabsf(fast.effect.new_value) > 1e30f);
            CHECK(fast.incorrect == plain.incorrect && fast.nonfinite == plain.nonfinite);
            CHECK(same_outcomes(&r, r.out, naive));
            changed += plain.incorrect + plain.nonfinite;
        }
    }
    fprintf(stderr, "  bit 30 in layer 0's queries and keys: %" PRId64 " outcomes changed\n",
            changed);
    CHECK(changed > 0);
    free(naive);
    pvf_runner_close(&r);
}

int main(void) {
    RUN(test_other_shape_matches_pytorch);
    RUN(test_bundled_every_format);
    RUN(test_forward_from_any_stage);
    RUN(test_components_and_layers);
    RUN(test_faults_follow_the_tokens);
    RUN(test_fast_word_rows);
    RUN(test_fast_encoder_bounds);
    RUN(test_fast_poisoned);
    RUN(test_fast_poisoned_embeddings);
    RUN(test_fast_row_bound_audit);
    RUN(test_fast_cls_linearization);
    RUN(test_fast_attention_bounds);
    RUN(test_fast_position_rows);
    RUN(test_fast_ffn_settle);
    RUN(test_fast_huge_query_key);
    return test_summary();
}
