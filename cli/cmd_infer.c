/* pvf infer: golden inference over an eval set, checked against its labels
 * and against the training framework's reference outputs. */
#include "cli.h"
#include "kernels.h"
#include "runner.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CMD "infer"
/* Parity: max |output - reference| within this fraction of max |reference|. */
#define PVF_PARITY_REL 1e-4

static int dump_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    (void)cmd;
    if (opt != 'o')
        return 0;
    *(const char **)ctx = arg;
    return 1;
}

int pvf_cmd_infer(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS, {"dump-outputs", required_argument, 0, 'o'}, {0, 0, 0, 0}};
    cli_common c;
    const char *dump = NULL;
    if (cli_parse(CMD, argc, argv, opts, &c, dump_flag, &dump))
        return 2;

    pvf_err err;
    pvf_runner r;
    double t0 = pvf_now();
    if (pvf_runner_open(&r, c.model, c.data, c.format, &err))
        return cli_fail(CMD, 1, "%s", err.msg);
    double elapsed = pvf_now() - t0;
    const pvf_model *m = &r.model;
    const int64_t n = r.golden.n, k = m->out_size;
    /* a language model has out_positions rows of classes per input: labels,
     * agreement and accuracy count positions */
    const int64_t P = m->out_positions > 0 ? m->out_positions : 1, classes = k / P;
    int rc = 0;
    int64_t *decision = NULL;
    float *ref_row = NULL;

    /* Accuracy against labels, when the eval set has them. */
    pvf_tensor labels, ref;
    int has_labels = pvf_evalset_get(&r.eval, "labels", 0, &labels, &err);
    int64_t correct = 0;
    if (has_labels > 0 && ((labels.dtype != PVF_DT_I64 && labels.dtype != PVF_DT_I32) ||
                           labels.ndim != (P > 1 ? 2 : 1) || pvf_tensor_numel(&labels) != n * P)) {
        char shape[128], want[64];
        pvf_shape_format(labels.shape, labels.ndim, shape, sizeof shape);
        if (P > 1)
            snprintf(want, sizeof want, "[%" PRId64 ", %" PRId64 "]", n, P);
        else
            snprintf(want, sizeof want, "[%" PRId64 "]", n);
        rc = cli_fail(CMD, 1, "%s: 'labels' must be I64 or I32 %s, not %s %s", r.eval.file.path,
                      want, pvf_dtype_name(labels.dtype), shape);
        goto done;
    }
    if (has_labels < 0) {
        rc = cli_fail(CMD, 1, "%s", err.msg);
        goto done;
    }
    /* The decision each output stands for: top-1 class, or the architecture's (a click). */
    decision = malloc((size_t)(n * P) * sizeof *decision);
    ref_row = malloc((size_t)classes * sizeof *ref_row);
    if (!decision || !ref_row) {
        rc = cli_fail(CMD, 1, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n * P; i++)
        decision[i] =
            m->arch->decide ? m->arch->decide(m, r.golden.out + i * classes) : r.golden.top1[i];
    if (has_labels > 0)
        for (int64_t i = 0; i < n * P; i++)
            correct += pvf_tensor_get_i64(&labels, i) == decision[i];
    pvf_metric metrics[8];
    int nmetrics = has_labels > 0 && m->arch->metrics
                       ? m->arch->metrics(m, r.golden.out, &labels, n, metrics, 8)
                       : 0;

    /* Agreement with the reference outputs of this storage format. */
    char ref_name[64];
    int has_ref = pvf_evalset_reference(&r.eval, pvf_format_name(c.format), &ref, ref_name,
                                        sizeof ref_name, &err);
    if (has_ref < 0) {
        rc = cli_fail(CMD, 1, "%s", err.msg);
        goto done;
    }
    if (has_ref > 0 && (ref.dtype != PVF_DT_F32 || pvf_tensor_numel(&ref) != n * k)) {
        if (P > 1)
            rc = cli_fail(CMD, 1,
                          "%s: '%s' must be F32 [%" PRId64 ", %" PRId64 ", %" PRId64
                          "] (inputs, positions, classes)",
                          r.eval.file.path, ref_name, n, P, classes);
        else
            rc = cli_fail(CMD, 1, "%s: '%s' must be F32 [%" PRId64 ", %" PRId64 "]",
                          r.eval.file.path, ref_name, n, k);
        goto done;
    }
    int64_t agree = 0;
    double max_diff = 0.0, max_ref = 0.0;
    if (has_ref > 0) {
        for (int64_t i = 0; i < n * P; i++) {
            const float *out = r.golden.out + i * classes;
            for (int64_t j = 0; j < classes; j++) {
                ref_row[j] = (float)pvf_tensor_get_f64(&ref, i * classes + j);
                max_diff = fmax(max_diff, fabs((double)out[j] - (double)ref_row[j]));
                max_ref = fmax(max_ref, fabs((double)ref_row[j]));
            }
            int64_t want =
                m->arch->decide ? m->arch->decide(m, ref_row) : pvf_argmax(ref_row, classes);
            agree += want == decision[i];
        }
    }
    int within = has_ref > 0 && max_diff <= PVF_PARITY_REL * max_ref;

    if (dump) {
        int64_t shape[2] = {n, k};
        pvf_st_out t = {"outputs", PVF_DT_F32, 2, shape, r.golden.out};
        if (pvf_st_write(dump, &t, 1, NULL, 0, &err)) {
            rc = cli_fail(CMD, 1, "%s", err.msg);
            goto done;
        }
    }

    if (c.json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:f}", "model", c.model, "architecture",
                              m->arch->name, "format", pvf_format_name(c.format), "parameters",
                              (json_int_t)pvf_model_param_count(m), "inputs", (json_int_t)n,
                              "seconds", elapsed);
        json_object_set_new(o, "data", json_string(r.eval.file.path));
        if (P > 1)
            json_object_set_new(o, "positions", json_integer(P));
        if (has_labels > 0)
            json_object_set_new(o, "accuracy", json_real((double)correct / (double)(n * P)));
        for (int i = 0; i < nmetrics; i++)
            json_object_set_new(o, metrics[i].name, json_real(metrics[i].value));
        if (has_ref > 0) {
            json_object_set_new(o, "reference", json_string(ref_name));
            json_object_set_new(o, "agreement", json_real((double)agree / (double)(n * P)));
            json_object_set_new(o, "max_abs_diff", json_real(max_diff));
            json_object_set_new(o, "max_abs_reference", json_real(max_ref));
            json_object_set_new(o, "within_tolerance", json_boolean(within));
        }
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("model       %s (%s, %" PRId64 " parameters, format %s)\n", c.model, m->arch->name,
               pvf_model_param_count(m), pvf_format_name(c.format));
        printf("eval set    %s (%" PRId64 " inputs)\n", r.eval.file.path, n);
        if (has_labels > 0)
            printf("accuracy    %.4f (%" PRId64 "/%" PRId64 " match labels)\n",
                   (double)correct / (double)(n * P), correct, n * P);
        for (int i = 0; i < nmetrics; i++)
            printf("%-11s %.4f\n", metrics[i].name, metrics[i].value);
        if (has_ref > 0)
            printf("reference   %s: %s agreement %.4f (%" PRId64 "/%" PRId64
                   "), max |diff| %.3g = %.3g x max |ref| (%s)\n",
                   ref_name, m->arch->decide ? "decision" : "top-1",
                   (double)agree / (double)(n * P), agree, n * P, max_diff,
                   max_ref > 0 ? max_diff / max_ref : 0.0, within ? "within 1e-4" : "OUTSIDE 1e-4");
        else
            printf("reference   none for format %s in the eval set\n", pvf_format_name(c.format));
        printf("time        %.1f ms (load, golden pass)\n", elapsed * 1e3);
    }
done:
    free(decision);
    free(ref_row);
    pvf_runner_close(&r);
    return rc;
}
