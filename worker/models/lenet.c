/* lenet.c - LeNet-style CNN: [conv -> ReLU -> max-pool] x C, flatten, then
 * [linear -> ReLU] x H and a final linear layer to num_labels logits.
 *
 * Tensor names as the PyTorch module in tools/train_fmnist_lenet.py writes
 * them: conv{i}.weight/.bias (i from 1), fc{j}.weight/.bias (j from 1). One
 * stage per layer, so a fault in fcN starts from fcN's cached input. */
#include "lenet.h"
#include "kernels.h"
#include "model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int conv_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                      const float *in, float *out) {
    (void)first;
    const lenet *l = m->arch_state;
    const pvf_conv2d *c = &l->conv[m->stages[stage].layer];
    /* scratch: one image's im2col matrix, then the chunk's pre-pool maps */
    float *col = ex->scratch, *maps = ex->scratch + pvf_conv2d_scratch(c);
    pvf_conv2d_run(c, in, n, pvf_exec_weights(ex, l->w[stage]), pvf_exec_weights(ex, l->b[stage]),
                   maps, col);
    /* ReLU commutes with max-pool (both monotone, NaN kept): pool first, 4x less work */
    pvf_maxpool2d(maps, n, c->cout, c->oh, c->ow, l->pool, out);
    pvf_relu(out, n * c->cout * (c->oh / l->pool) * (c->ow / l->pool));
    return 0;
}

static int fc_stage(const pvf_model *m, int stage, pvf_exec *ex, int64_t first, int64_t n,
                    const float *in, float *out) {
    (void)first;
    const lenet *l = m->arch_state;
    int j = m->stages[stage].layer;
    pvf_linear(in, n, l->fc_in[j], pvf_exec_weights(ex, l->w[stage]),
               pvf_exec_weights(ex, l->b[stage]), l->fc_out[j], out);
    if (stage != m->nstages - 1)
        pvf_relu(out, n * l->fc_out[j]);
    return 0;
}

static int lenet_build(pvf_model *m, const pvf_config *cfg, const pvf_st_set *weights,
                       pvf_err *err) {
    lenet *l = calloc(1, sizeof *l);
    if (!l)
        return pvf_err_set(err, "out of memory");
    m->arch_state = l;
    m->arch_free = free;
    int64_t channels[LENET_MAX_LAYERS], kernels[LENET_MAX_LAYERS], pads[LENET_MAX_LAYERS];
    int64_t hidden[LENET_MAX_LAYERS], labels;
    int nk, np;
    if (pvf_config_int(cfg, "num_channels", 1, 4096, &l->channels, err) ||
        pvf_config_int(cfg, "image_size", 1, 1 << 16, &l->image, err) ||
        pvf_config_int_array(cfg, "conv_channels", 1, 1 << 16, channels, LENET_MAX_LAYERS,
                             &l->nconv, err) ||
        pvf_config_int_array(cfg, "conv_kernel_sizes", 1, 1024, kernels, LENET_MAX_LAYERS, &nk,
                             err) ||
        pvf_config_int_array(cfg, "conv_paddings", 0, 1024, pads, LENET_MAX_LAYERS, &np, err) ||
        pvf_config_int_or(cfg, "pool_size", 2, 1, 1024, &l->pool, err) ||
        pvf_config_int_array(cfg, "hidden_sizes", 1, 1 << 20, hidden, LENET_MAX_LAYERS, &l->nfc,
                             err) ||
        pvf_config_int(cfg, "num_labels", 1, 1 << 20, &labels, err))
        return -1;
    if (nk != l->nconv || np != l->nconv)
        return pvf_err_set(err,
                           "%s: conv_channels, conv_kernel_sizes and conv_paddings must have "
                           "the same length",
                           cfg->path);
    int64_t c = l->channels, h = l->image, w = l->image;
    int64_t scratch = 0;
    for (int i = 0; i < l->nconv; i++) {
        pvf_conv2d *cv = &l->conv[i];
        if (pvf_conv2d_init(cv, c, h, w, channels[i], kernels[i], 1, pads[i]) ||
            cv->oh / l->pool < 1 || cv->ow / l->pool < 1)
            return pvf_err_set(err,
                               "%s: conv layer %d does not fit a %" PRId64 "x%" PRId64 " input",
                               cfg->path, i + 1, h, w);
        int64_t need = pvf_conv2d_scratch(cv) + PVF_CHUNK * cv->cout * cv->oh * cv->ow;
        if (need > scratch)
            scratch = need;
        int64_t oh = cv->oh / l->pool, ow = cv->ow / l->pool;
        char name[64], wn[64], bn[64];
        snprintf(name, sizeof name, "conv%d", i + 1);
        snprintf(wn, sizeof wn, "conv%d.weight", i + 1);
        snprintf(bn, sizeof bn, "conv%d.bias", i + 1);
        int s = pvf_model_add_stage(m, name, c * h * w, cv->cout * oh * ow, conv_stage, i, err);
        if (s >= 0)
            m->stages[s].row_free = 1;
        int64_t wshape[4] = {cv->cout, c, cv->k, cv->k}, bshape[1] = {cv->cout};
        if (s < 0 || (l->w[s] = pvf_model_add_param(m, weights, wn, 4, wshape, s, err)) < 0 ||
            (l->b[s] = pvf_model_add_param(m, weights, bn, 1, bshape, s, err)) < 0)
            return -1;
        c = cv->cout;
        h = oh;
        w = ow;
    }
    int64_t in = c * h * w;
    hidden[l->nfc] = labels;
    for (int j = 0; j <= l->nfc; j++) {
        char name[64], wn[64], bn[64];
        snprintf(name, sizeof name, "fc%d", j + 1);
        snprintf(wn, sizeof wn, "fc%d.weight", j + 1);
        snprintf(bn, sizeof bn, "fc%d.bias", j + 1);
        l->fc_in[j] = in;
        l->fc_out[j] = hidden[j];
        int s = pvf_model_add_stage(m, name, in, hidden[j], fc_stage, j, err);
        if (s >= 0)
            m->stages[s].row_free = 1;
        int64_t wshape[2] = {hidden[j], in}, bshape[1] = {hidden[j]};
        if (s < 0 || (l->w[s] = pvf_model_add_param(m, weights, wn, 2, wshape, s, err)) < 0 ||
            (l->b[s] = pvf_model_add_param(m, weights, bn, 1, bshape, s, err)) < 0)
            return -1;
        in = hidden[j];
    }
    m->scratch_floats = scratch;
    /* lenet_fast.c: a chunk of carried rows, a faulty filter or row and one
     * output channel before and after pooling, then three single rows and
     * a dominant direction's four */
    int64_t widest = 1, extra = 1;
    for (int s = 0; s < m->nstages; s++) {
        widest = m->stages[s].out_size > widest ? m->stages[s].out_size : widest;
        extra = m->stages[s].in_size > extra ? m->stages[s].in_size : extra;
    }
    for (int i = 0; i < l->nconv; i++) {
        const int64_t cols = l->conv[i].cin * l->conv[i].k * l->conv[i].k;
        const int64_t positions = l->conv[i].oh * l->conv[i].ow;
        int64_t need = cols + 2 * positions + cols * positions; /* + conv_channel's im2col */
        extra = need > extra ? need : extra;
    }
    l->widest = widest;
    l->fast_tail = PVF_CHUNK * widest + extra;
    m->fast_scratch_floats = l->fast_tail + 7 * widest;
    return 0;
}

static int lenet_bind_eval(const pvf_model *m, const pvf_evalset *e, const float **input,
                           pvf_err *err) {
    const lenet *l = m->arch_state;
    pvf_tensor px;
    if (pvf_evalset_get(e, "pixel_values", 1, &px, err) < 0)
        return -1;
    char got[128];
    pvf_shape_format(px.shape, px.ndim, got, sizeof got);
    if (px.dtype != PVF_DT_F32 || px.ndim != 4 || px.shape[1] != l->channels ||
        px.shape[2] != l->image || px.shape[3] != l->image)
        return pvf_err_set(err,
                           "%s: 'pixel_values' is %s %s, the model takes F32 [N, %" PRId64
                           ", %" PRId64 ", %" PRId64 "]",
                           e->file.path, pvf_dtype_name(px.dtype), got, l->channels, l->image,
                           l->image);
    *input = px.data;
    return 0;
}

const pvf_arch pvf_arch_lenet = {
    .name = "lenet",
    .hf_class = "LeNetForImageClassification",
    .build = lenet_build,
    .bind_eval = lenet_bind_eval,
    .fast_prepare = lenet_fast_prepare,
    .fast_free = lenet_fast_free,
    .fast_trial = lenet_fast_trial,
    .fast_bound = lenet_fast_bound,
};
