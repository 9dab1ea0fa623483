/* The LeNet architecture end to end: random weights against PyTorch, the
 * bundled model against its reference logits in every storage format,
 * starting at any stage, F16/BF16 and sharded checkpoints. */
#include "fast.h"
#include "fixture.h"
#include "kernels.h"
#include "runner.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LENET PVF_SOURCE_DIR "/models/fmnist-lenet"

static const char *const names[] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                    "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias",
                                    "fc3.weight",   "fc3.bias"};
enum { NNAMES = sizeof names / sizeof *names };

static char tmp[256];

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int rc = a && b ? 0 : -1;
    char buf[65536];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, a)) > 0)
        rc = fwrite(buf, 1, n, b) == n ? 0 : -1;
    if (a)
        fclose(a);
    if (b)
        fclose(b);
    return rc;
}

/* Writes DIR/config.json (the bundled one) and the fixture's random weights
 * in dtype dt, optionally split over two shards with an index. */
static int write_random_model(const char *dir, const pvf_st_file *fx, pvf_dtype dt, int sharded) {
    char path[512];
    pvf_err err;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (copy_file(LENET "/config.json", path))
        return -1;
    pvf_st_out outs[NNAMES];
    void *bufs[NNAMES] = {0};
    int64_t shapes[NNAMES][4];
    for (int i = 0; i < NNAMES; i++) {
        pvf_tensor t;
        long k = pvf_st_find(fx, names[i]);
        if (k < 0)
            return -1;
        pvf_st_view(fx, (size_t)k, &t);
        int64_t n = pvf_tensor_numel(&t);
        bufs[i] = malloc((size_t)n * 4);
        for (int64_t j = 0; j < n; j++) {
            float v = (float)pvf_tensor_get_f64(&t, j);
            if (dt == PVF_DT_F32)
                ((float *)bufs[i])[j] = v;
            else if (dt == PVF_DT_F16)
                ((uint16_t *)bufs[i])[j] = pvf_f32_to_f16(v);
            else
                ((uint16_t *)bufs[i])[j] = pvf_f32_to_bf16(v);
        }
        memcpy(shapes[i], t.shape, sizeof shapes[i]);
        outs[i] = (pvf_st_out){names[i], dt, t.ndim, shapes[i], bufs[i]};
    }
    int rc;
    if (!sharded) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = pvf_st_write(path, outs, NNAMES, NULL, 0, &err);
    } else {
        snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
        rc = pvf_st_write(path, outs, 4, NULL, 0, &err);
        snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
        rc |= pvf_st_write(path, outs + 4, NNAMES - 4, NULL, 0, &err);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        FILE *f = fopen(path, "w");
        fprintf(f, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
        for (int i = 0; i < NNAMES; i++)
            fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", names[i],
                    i < 4 ? 1 : 2);
        fprintf(f, "}}\n");
        fclose(f);
    }
    for (int i = 0; i < NNAMES; i++)
        free(bufs[i]);
    return rc;
}

static int write_eval(const char *path, const pvf_st_file *fx) {
    int64_t n;
    float *x = fixture_f32(fx, "lenet_x", &n), *y = fixture_f32(fx, "lenet_y", NULL);
    int64_t xs[4] = {3, 1, 28, 28}, ys[2] = {3, 10};
    pvf_st_out outs[2] = {{"pixel_values", PVF_DT_F32, 4, xs, x}, {"logits", PVF_DT_F32, 2, ys, y}};
    pvf_err err;
    int rc = pvf_st_write(path, outs, 2, NULL, 0, &err);
    free(x);
    free(y);
    return rc;
}

static double max_rel_diff(const float *out, const pvf_tensor *ref, int64_t n) {
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = pvf_tensor_get_f64(ref, i);
        diff = fmax(diff, fabs((double)out[i] - r));
        scale = fmax(scale, fabs(r));
    }
    return diff / scale;
}

static void check_random_model(pvf_dtype dt, int sharded, double tol) {
    pvf_st_file fx;
    if (fixture_open(&fx, "tests/fixtures/kernels.safetensors")) {
        CHECK(0);
        return;
    }
    char dir[300], eval[320];
    snprintf(dir, sizeof dir, "%s/m%d%d", tmp, (int)dt, sharded);
    mkdir(dir, 0700);
    snprintf(eval, sizeof eval, "%s/eval.safetensors", dir);
    CHECK(write_random_model(dir, &fx, dt, sharded) == 0);
    CHECK(write_eval(eval, &fx) == 0);
    pvf_runner r;
    pvf_err err;
    int rc = pvf_runner_open(&r, dir, NULL, PVF_FMT_FP32, &err);
    if (rc)
        fprintf(stderr, "  %s\n", err.msg);
    CHECK(rc == 0);
    if (rc == 0) {
        pvf_tensor ref;
        CHECK(pvf_evalset_get(&r.eval, "logits", 1, &ref, &err) == 1);
        double d = max_rel_diff(r.golden.out, &ref, 30);
        fprintf(stderr, "  dtype %s%s: max |diff| / max |ref| = %.3g\n", pvf_dtype_name(dt),
                sharded ? ", 2 shards" : "", d);
        CHECK(d <= tol);
        pvf_runner_close(&r);
    }
    pvf_st_close(&fx);
}

static void test_random_weights_match_pytorch(void) {
    check_random_model(PVF_DT_F32, 0, 1e-5);
}

static void test_sharded_checkpoint(void) {
    check_random_model(PVF_DT_F32, 1, 1e-5);
}

static void test_half_checkpoints(void) {
    /* weights rounded to F16/BF16 on disk: close to the fp32 reference */
    check_random_model(PVF_DT_F16, 0, 5e-3);
    check_random_model(PVF_DT_BF16, 0, 3e-2);
}

static void test_bundled_every_format(void) {
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        pvf_runner r;
        pvf_err err;
        CHECK(pvf_runner_open(&r, LENET, NULL, (pvf_format)f, &err) == 0);
        pvf_tensor ref, labels;
        char name[64];
        CHECK(pvf_evalset_reference(&r.eval, pvf_format_name((pvf_format)f), &ref, name,
                                    sizeof name, &err) == 1);
        CHECK(pvf_evalset_get(&r.eval, "labels", 1, &labels, &err) == 1);
        int64_t n = r.golden.n, k = r.model.out_size, agree = 0, correct = 0;
        CHECK(n == 1000 && k == 10);
        for (int64_t i = 0; i < n; i++) {
            float row[10];
            for (int j = 0; j < 10; j++)
                row[j] = (float)pvf_tensor_get_f64(&ref, i * 10 + j);
            agree += pvf_argmax(row, 10) == r.golden.top1[i];
            correct += pvf_tensor_get_i64(&labels, i) == r.golden.top1[i];
        }
        double d = max_rel_diff(r.golden.out, &ref, n * k);
        fprintf(stderr, "  %-8s accuracy %.3f, agreement %lld/1000, max |diff| / max |ref| %.3g\n",
                pvf_format_name((pvf_format)f), (double)correct / 1000.0, (long long)agree, d);
        CHECK(agree == n);
        CHECK(d <= 1e-4);
        CHECK(correct >= 880);
        pvf_runner_close(&r);
    }
}

static void test_forward_from_any_stage(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_INT8, &err) == 0);
    CHECK(r.model.nstages == 5);
    size_t bytes = (size_t)(r.golden.n * r.model.out_size) * sizeof(float);
    for (int s = 0; s < r.model.nstages; s++) {
        memset(r.out, 0xFF, bytes);
        CHECK(pvf_forward_from(&r.exec, &r.golden, s, r.out, &err) == 0);
        CHECK(memcmp(r.out, r.golden.out, bytes) == 0); /* bit-identical to golden */
    }
    CHECK(pvf_forward_from(&r.exec, &r.golden, 5, r.out, &err) == -1);
    pvf_runner_close(&r);
}

static void test_parameters_and_targets(void) {
    pvf_model m;
    pvf_err err;
    CHECK(pvf_model_load(&m, LENET, PVF_FMT_INT4, &err) == 0);
    CHECK(pvf_model_param_count(&m) == 61706);
    CHECK(m.nparams == 10 && m.ntargets == 15); /* 10 tensors + 5 weight scales */
    int t = pvf_model_find_target(&m, "conv2.weight");
    CHECK(m.targets[t].bits == 4 && m.targets[t].numel == 2400);
    t = pvf_model_find_target(&m, "conv2.weight_scale");
    CHECK(m.targets[t].bits == 32 && m.targets[t].numel == 16 * 2); /* rows of 150: 128 + 22 */
    t = pvf_model_find_target(&m, "conv2.bias");
    CHECK(m.targets[t].bits == 32); /* biases stay fp32 */
    CHECK(pvf_model_find_target(&m, "conv2.bias_scale") == -1);
    pvf_model_free(&m);
}

/* Eval input i's outcome in outputs out: 0 golden's top-1, 1 another
 * top-1, 2 non-finite (pvf_judge's rule). */
static int outcome(const pvf_model *m, const pvf_golden *g, const float *out, int64_t i) {
    const float *z = out + i * m->out_size;
    if (!pvf_all_finite(z, m->out_size))
        return 2;
    return pvf_argmax(z, m->out_size) != g->top1[i];
}

/* 1 when eval input i's golden top-1 margin is below 1e-5 of its logits'
 * scale: rounding alone may move it (as tests/test_fast.c). */
static int near_tie(const pvf_model *m, const pvf_golden *g, int64_t i) {
    const float *z = g->out + i * m->out_size;
    double second = -INFINITY, scale = 1;
    for (int64_t c = 0; c < m->out_size; c++) {
        scale = fmax(scale, fabs((double)z[c]));
        if (c != g->top1[i])
            second = fmax(second, (double)z[c]);
    }
    return (double)z[g->top1[i]] - second < 1e-5 * scale;
}

/* One fault both ways on r: fast (outputs materialized) and naive; the
 * same outcome on every eval input (near ties aside), not only in total. */
static void both_ways(pvf_runner *r, pvf_fault_kind kind, const pvf_fault_site *s,
                      pvf_trial_result *fast, pvf_trial_result *naive) {
    pvf_err err;
    const pvf_model *m = &r->model;
    const int64_t n = r->golden.n;
    float *fast_out = malloc((size_t)(n * m->out_size) * sizeof *fast_out);
    CHECK(fast_out != NULL);
    if (!fast_out)
        return;
    r->exec.want_outputs = 1;
    r->exec.naive = 0;
    CHECK(pvf_trial_run(&r->exec, &r->golden, kind, s, fast_out, fast, &err) == 0);
    r->exec.naive = 1;
    CHECK(pvf_trial_run(&r->exec, &r->golden, kind, s, r->out, naive, &err) == 0);
    r->exec.naive = 0;
    CHECK(fast->incorrect == naive->incorrect && fast->nonfinite == naive->nonfinite);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++)
        differ += !near_tie(m, &r->golden, i) &&
                  outcome(m, &r->golden, fast_out, i) != outcome(m, &r->golden, r->out, i);
    CHECK(differ == 0);
    free(fast_out);
}

/* The fast path's three ways out: a weight no eval input reads settles with
 * no inference; a small change a bound clears settles too; a non-finite
 * weight is computed (never settled) and agrees with the full pass. */
static void test_fast_path_settles_and_computes(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_FP32, &err) == 0);
    const pvf_model *m = &r.model;
    const int t = pvf_model_find_target(m, "fc1.weight");
    const int s = m->params[m->targets[t].param].stage;
    const int64_t in = m->stages[s].in_size;
    pvf_trial_result fast, naive;
    { /* on the first 4 eval inputs, some fc1 input feature is 0 for all of them */
        pvf_runner few;
        CHECK(pvf_runner_open_limit(&few, LENET, NULL, PVF_FMT_FP32, 4, &err) == 0);
        int64_t dead = -1;
        for (int64_t k = 0; k < in && dead < 0; k++) {
            int64_t i = 0;
            while (i < 4 && few.golden.stage_in[s][i * in + k] == 0.0f)
                i++;
            if (i == 4)
                dead = k;
        }
        CHECK(dead >= 0);
        pvf_fault_site unread = {t, 7 * in + (dead < 0 ? 0 : dead), 1u << 30};
        both_ways(&few, PVF_FAULT_BITFLIP, &unread, &fast, &naive);
        CHECK((fast.flags & PVF_TRIAL_SETTLED) && fast.stage_rows == 0);
        CHECK(naive.stage_rows == 4 * m->nstages);
        pvf_runner_close(&few);
    }
    pvf_fault_site small = {t, 123, 1u << 3}; /* a low mantissa bit */
    both_ways(&r, PVF_FAULT_BITFLIP, &small, &fast, &naive);
    CHECK((fast.flags & PVF_TRIAL_SETTLED) && fast.incorrect == 0);
    /* exponent all ones: Inf or NaN, on a weight some input reads */
    int64_t read = 0;
    while (read < in && r.golden.stage_in[s][read] == 0.0f)
        read++;
    pvf_fault_site nonfinite = {t, 5 * in + read, 0x7F800000u};
    both_ways(&r, PVF_FAULT_STUCK1, &nonfinite, &fast, &naive);
    CHECK(!(fast.flags & PVF_TRIAL_SETTLED) && fast.stage_rows > 0 && fast.incorrect > 0);
    CHECK(fast.stage_rows < naive.stage_rows);
    /* a conv weight and a bias, large changes: computed, equal to naive */
    pvf_fault_site conv = {pvf_model_find_target(m, "conv2.weight"), 77, 1u << 29};
    both_ways(&r, PVF_FAULT_BITFLIP, &conv, &fast, &naive);
    pvf_fault_site bias = {pvf_model_find_target(m, "fc2.bias"), 3, 1u << 30};
    both_ways(&r, PVF_FAULT_BITFLIP, &bias, &fast, &naive);
    CHECK(fast.incorrect > 0);
    pvf_runner_close(&r);
}

/* The fast path's bound for a row whose input to a fc stage differs from
 * golden (pvf_arch.fast_bound): one feature k changed by d clears the row
 * while d times the feature's factor fits in the row's slack, the factor
 * being the sensitivity of the golden top-1 logit plus the largest over the
 * classes, through |W| of the stages after it. Found by bisection per
 * feature, d_k * factor_k is the same for every k of a row (the slack): the
 * factors as this test computes them, feature by feature and class by
 * class, are the bound's. */
static void test_fast_bound_per_feature(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open_limit(&r, LENET, NULL, PVF_FMT_FP32, 8, &err) == 0);
    const pvf_model *m = &r.model;
    const int last = m->nstages - 1;
    const int64_t classes = m->out_size;
    float *row_in = malloc(4096 * sizeof *row_in);
    double *sens = calloc(4096 * 16, sizeof *sens), *next = calloc(4096 * 16, sizeof *next);
    CHECK(row_in && sens && next && classes <= 16);
    for (int64_t k = 0; k < classes; k++) /* the logits' own: identity */
        next[k * classes + k] = 1;
    int checked = 0;
    for (int s = last; s >= last - 1 && row_in && sens && next; s--) {
        const int64_t in = m->stages[s].in_size, out = m->stages[s].out_size;
        const float *w = NULL; /* the stage's weight: its 2-d parameter */
        for (int p = 0; p < m->nparams; p++)
            if (m->params[p].stage == s && m->params[p].ndim == 2)
                w = m->params[p].value;
        CHECK(w && in <= 4096 && in * classes <= 4096 * 16);
        if (!w)
            break;
        memset(sens, 0, (size_t)(in * classes) * sizeof *sens);
        for (int64_t i = 0; i < out; i++)
            for (int64_t k = 0; k < in; k++)
                for (int64_t c = 0; c < classes; c++)
                    sens[k * classes + c] += fabs((double)w[i * in + k]) * next[i * classes + c];
        for (int64_t row = 0; row < r.golden.n; row++) {
            const int64_t t = r.golden.top1[row];
            const float *gold = r.golden.stage_in[s] + row * in;
            double first = 0, spread = 0;
            for (int64_t k = 0; k < in; k++) {
                double mx = 0;
                for (int64_t c = 0; c < classes; c++)
                    mx = fmax(mx, sens[k * classes + c]);
                const double factor = sens[k * classes + t] + mx;
                if (factor == 0)
                    continue;
                double lo = 0, hi = 1e-3;
                memcpy(row_in, gold, (size_t)in * sizeof *row_in);
                for (int up = 0; up < 60; up++, hi *= 2) {
                    row_in[k] = (float)((double)gold[k] + hi);
                    if (!m->arch->fast_bound(&r.exec, &r.golden, s, row, row_in))
                        break;
                }
                for (int it = 0; it < 40; it++) {
                    const double mid = (lo + hi) / 2;
                    row_in[k] = (float)((double)gold[k] + mid);
                    if (m->arch->fast_bound(&r.exec, &r.golden, s, row, row_in))
                        lo = mid;
                    else
                        hi = mid;
                }
                if (lo == 0) /* no slack: never cleared */
                    break;
                /* the change as the bound sees it: the float input's */
                const double slack = ((double)(float)((double)gold[k] + lo) - gold[k]) * factor;
                if (first == 0)
                    first = slack;
                spread = fmax(spread, fabs(slack / first - 1));
                checked++;
            }
            CHECK(spread < 1e-4);
            if (spread >= 1e-4)
                fprintf(stderr, "stage %d row %lld: d * factor spread %g\n", s, (long long)row,
                        spread);
        }
        /* this stage's sensitivity is the next one's "next" */
        memcpy(next, sens, (size_t)(in * classes) * sizeof *next);
    }
    CHECK(checked > 500);
    free(row_in);
    free(sens);
    free(next);
    pvf_runner_close(&r);
}

/* Conv faults of every bit from the mantissa's middle up, on all eval
 * inputs, input by input: the fast path (its linearized bounds, conv2's
 * batched signed bounds, the exact recompute where they cannot clear an
 * input, rows with huge sums) agrees with the full pass; a middle mantissa
 * bit of either conv layer is cleared by the bounds for most inputs, and
 * bit 29 of conv2 (the batched signed bound) too; non-finite and huge conv
 * weights, huge conv2 and fc1 weights (bit 30) agree too. */
static void test_fast_conv_bounds(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open(&r, LENET, NULL, PVF_FMT_FP32, &err) == 0);
    const pvf_model *m = &r.model;
    const char *const convs[] = {"conv1.weight", "conv2.weight"};
    pvf_trial_result fast, naive;
    for (int c = 0; c < 2; c++) {
        const int t = pvf_model_find_target(m, convs[c]);
        CHECK(t >= 0);
        /* the exponent bits of a second element: test_fast_conv_exponent_flips */
        for (int64_t element = 3; element < 150; element += 71)
            for (int bit = 12; bit < (element == 3 ? 32 : 23); bit++) {
                pvf_fault_site site = {t, element, 1u << bit};
                both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &naive);
                /* bounded, not recomputed, for most inputs: conv1's faults
                 * by the linearized tail alone (from bit 15 on its inputs
                 * are computed more often than not), conv2's by it and the
                 * batched signed bound */
                if (bit == (c == 0 ? 14 : 16))
                    CHECK(fast.stage_rows * 4 < naive.stage_rows);
                /* a weight shrunk to almost nothing: conv2's signed tail,
                 * batched from fc2, clears most inputs */
                if (c == 1 && bit == 29)
                    CHECK(fast.stage_rows * 4 < naive.stage_rows);
            }
    }
    /* the exact channel recompute: a non-finite filter (computed as the full
     * pass does, w * 0 at conv1's zero padding is NaN: element 0 reads the
     * padding) and a huge finite one (the direct convolution), both layers */
    for (int c = 0; c < 2; c++) {
        const int t = pvf_model_find_target(m, convs[c]);
        pvf_fault_site nonfinite = {t, 0, 0x7F800000u};
        both_ways(&r, PVF_FAULT_STUCK1, &nonfinite, &fast, &naive);
        CHECK(fast.nonfinite > 0 && !(fast.flags & PVF_TRIAL_SETTLED));
        pvf_fault_site huge = {t, 1, 1u << 30};
        both_ways(&r, PVF_FAULT_BITFLIP, &huge, &fast, &naive);
        CHECK(fast.incorrect > 0);
    }
    pvf_fault_site huge_conv = {pvf_model_find_target(m, "conv2.weight"), 500, 1u << 30};
    both_ways(&r, PVF_FAULT_BITFLIP, &huge_conv, &fast, &naive);
    CHECK(fast.stage_rows > 0 && fast.incorrect > 0);
    const int fc1 = pvf_model_find_target(m, "fc1.weight");
    for (int64_t element = 11; element < 48000; element += 4001) {
        pvf_fault_site huge_fc = {fc1, element, 1u << 30};
        both_ways(&r, PVF_FAULT_BITFLIP, &huge_fc, &fast, &naive);
    }
    pvf_runner_close(&r);
}

/* Exponent flips of conv weights (the signed bounds' branch-free interval
 * loops, rows with huge sums waiting per chunk of the full pass), on 130
 * eval inputs (three pass chunks): the fast path agrees with the full pass
 * input by input; a flip that shrinks a conv2 weight to almost nothing
 * (bits 27-29 of a weight below 2) is cleared by the bounds for most inputs,
 * and a huge one (bit 30) is computed on every input that reads it. */
static void test_fast_conv_exponent_flips(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open_limit(&r, LENET, NULL, PVF_FMT_FP32, 130, &err) == 0);
    const pvf_model *m = &r.model;
    const char *const convs[] = {"conv1.weight", "conv2.weight"};
    pvf_trial_result fast, naive;
    for (int c = 0; c < 2; c++) {
        const int t = pvf_model_find_target(m, convs[c]);
        const int64_t count = m->targets[t].numel;
        for (int64_t element = 74; element < count; element += count / 2)
            for (int bit = 23; bit < 32; bit++) {
                pvf_fault_site site = {t, element, 1u << bit};
                both_ways(&r, PVF_FAULT_BITFLIP, &site, &fast, &naive);
                if (c == 1 && bit >= 27 && bit <= 29)
                    CHECK(fast.stage_rows * 4 < naive.stage_rows);
                if (bit == 30)
                    CHECK(fast.stage_rows > 0 && !(fast.flags & PVF_TRIAL_SETTLED));
            }
    }
    pvf_runner_close(&r);
}

/* Bit 30 (the exponent + 128) of every step-th element of target from
 * first, on 256 eval inputs (four pass chunks): both ways input by input
 * (both_ways, outputs materialized), and the fast path once more without
 * its outputs, where an input whose faulty values are so large that the
 * top-1 is their direction's is judged from that direction
 * (dominant_top): the same outcomes in total, with fewer stage rows in
 * all. Such a fault is never settled. Returns the trials run. */
static int64_t huge_flips(const char *target, int64_t first, int64_t step, int64_t *incorrect,
                          int64_t *nonfinite, int64_t *judged, int64_t *rows_saved) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open_limit(&r, LENET, NULL, PVF_FMT_FP32, 256, &err) == 0);
    const int t = pvf_model_find_target(&r.model, target);
    CHECK(t >= 0);
    pvf_trial_result fast, with_outputs, naive;
    int64_t trials = 0;
    *incorrect = *nonfinite = *judged = *rows_saved = 0;
    for (int64_t element = first; t >= 0 && element < r.model.targets[t].numel; element += step) {
        pvf_fault_site site = {t, element, 1u << 30};
        both_ways(&r, PVF_FAULT_BITFLIP, &site, &with_outputs, &naive);
        CHECK(with_outputs.stage_rows > 0 && !(with_outputs.flags & PVF_TRIAL_SETTLED));
        r.exec.want_outputs = 0;
        CHECK(pvf_trial_run(&r.exec, &r.golden, PVF_FAULT_BITFLIP, &site, NULL, &fast, &err) == 0);
        CHECK(fast.incorrect == naive.incorrect && fast.nonfinite == naive.nonfinite);
        CHECK(fast.stage_rows <= with_outputs.stage_rows);
        *rows_saved += with_outputs.stage_rows - fast.stage_rows;
        *incorrect += fast.incorrect;
        *nonfinite += fast.nonfinite;
        *judged += fast.judged;
        trials++;
    }
    pvf_runner_close(&r);
    return trials;
}

/* A huge conv2 weight: the faulty channel as fl(w x) where the huge term
 * dwarfs the rest and golden's own sums where its tap meets 0
 * (conv_channel_huge) agrees with the full pass, non-finite outcomes too. */
static void test_fast_huge_conv2_weight(void) {
    int64_t incorrect, nonfinite, judged, saved;
    CHECK(huge_flips("conv2.weight", 7, 97, &incorrect, &nonfinite, &judged, &saved) == 25);
    CHECK(incorrect > 0 && incorrect < judged && nonfinite > 0); /* all kinds compared */
    CHECK(saved > 1000); /* the later stages skipped for many inputs */
}

/* Huge fc1 weights: the faulty unit's product alone, and the later
 * stages skipped where its direction decides. */
static void test_fast_huge_fc1_weight(void) {
    int64_t incorrect, nonfinite, judged, saved;
    CHECK(huge_flips("fc1.weight", 11, 239, &incorrect, &nonfinite, &judged, &saved) == 201);
    CHECK(incorrect > 0 && incorrect < judged);
    CHECK(saved > 1000);
}

/* The bounds that clear a conv fault's eval inputs, held against the full
 * pass (pvf_exec.audit_claim): every input a bound cleared moved its top-1
 * margins (the top logit less each other) by no more than the bound it
 * claimed, in the full pass's outputs. Weights and biases of both conv
 * layers, from the middle mantissa bits up, where the finer bounds work: cell
 * by cell, the linearized tail, the signed bound batched through the fc
 * stages and the linearized tail after each of its fc products. */
static void test_fast_conv_bound_audit(void) {
    pvf_runner r;
    pvf_err err;
    CHECK(pvf_runner_open_limit(&r, LENET, NULL, PVF_FMT_FP32, 256, &err) == 0);
    const pvf_model *m = &r.model;
    const int64_t n = r.golden.n, k = m->out_size;
    double *claim = malloc((size_t)n * sizeof *claim);
    float *fast_out = malloc((size_t)(n * k) * sizeof *fast_out);
    CHECK(claim && fast_out);
    const char *const audited[] = {"conv1.weight", "conv2.weight", "conv1.bias", "conv2.bias"};
    const int64_t elements[][3] = {{3, 77, 140}, {5, 800, 2000}, {1, 4, 4}, {2, 11, 11}};
    int64_t checked = 0, violations = 0, moved = 0;
    double min_ratio = INFINITY;
    for (int c = 0; c < 4 && claim && fast_out; c++) {
        const int t = pvf_model_find_target(m, audited[c]);
        CHECK(t >= 0);
        for (int e = 0; e < 3; e++) {
            if (e && elements[c][e] == elements[c][e - 1])
                continue;
            for (int bit = 8; bit < 32; bit++) {
                pvf_fault_site site = {t, elements[c][e], 1u << bit};
                pvf_trial_result fast, naive;
                for (int64_t i = 0; i < n; i++)
                    claim[i] = -1;
                r.exec.want_outputs = 1;
                r.exec.audit_claim = claim;
                CHECK(pvf_trial_run(&r.exec, &r.golden, PVF_FAULT_BITFLIP, &site, fast_out, &fast,
                                    &err) == 0);
                r.exec.audit_claim = NULL;
                r.exec.naive = 1;
                CHECK(pvf_trial_run(&r.exec, &r.golden, PVF_FAULT_BITFLIP, &site, r.out, &naive,
                                    &err) == 0);
                r.exec.naive = 0;
                for (int64_t i = 0; i < n; i++) {
                    if (claim[i] < 0)
                        continue;
                    const float *o = r.out + i * k, *g = r.golden.out + i * k;
                    const int64_t top = r.golden.top1[i];
                    double change = 0;
                    for (int64_t j = 0; j < k; j++) {
                        const double d = ((double)o[top] - o[j]) - ((double)g[top] - g[j]);
                        change = isfinite(d) ? fmax(change, fabs(d)) : INFINITY;
                    }
                    checked++;
                    moved += change > 0;
                    if (change > 0)
                        min_ratio = fmin(min_ratio, claim[i] / change);
                    if (!(change <= claim[i]) && !violations++)
                        fprintf(stderr, "%s[%lld] bit %d input %lld: margins moved %g, bound %g\n",
                                audited[c], (long long)elements[c][e], bit, (long long)i, change,
                                claim[i]);
                }
            }
        }
    }
    fprintf(stderr,
            "conv bound audit: %lld inputs cleared by a bound (%lld moved), %lld outside it, "
            "tightest bound / change %.9g\n",
            (long long)checked, (long long)moved, (long long)violations, min_ratio);
    CHECK(violations == 0);
    CHECK(moved > 10000);
    free(claim);
    free(fast_out);
    pvf_runner_close(&r);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/pvf-test-lenet-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    RUN(test_random_weights_match_pytorch);
    RUN(test_sharded_checkpoint);
    RUN(test_half_checkpoints);
    RUN(test_bundled_every_format);
    RUN(test_forward_from_any_stage);
    RUN(test_parameters_and_targets);
    RUN(test_fast_path_settles_and_computes);
    RUN(test_fast_bound_per_feature);
    RUN(test_fast_conv_bounds);
    RUN(test_fast_conv_exponent_flips);
    RUN(test_fast_huge_conv2_weight);
    RUN(test_fast_huge_fc1_weight);
    RUN(test_fast_conv_bound_audit);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return test_summary();
}
