#include "model.h"

#include "fast.h"
#include "kernels.h"

#include <cblas.h>

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const pvf_arch pvf_arch_lenet;
extern const pvf_arch pvf_arch_dlrm;
extern const pvf_arch pvf_arch_bert;
extern const pvf_arch pvf_arch_llama4_text, pvf_arch_llama4;

static const pvf_arch *const arches[] = {&pvf_arch_lenet, &pvf_arch_dlrm, &pvf_arch_bert,
                                         &pvf_arch_llama4_text, &pvf_arch_llama4};

const pvf_arch *pvf_arch_find(const char *name) {
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof arches / sizeof *arches; i++)
        if (strcmp(arches[i]->name, name) == 0 || strcmp(arches[i]->hf_class, name) == 0)
            return arches[i];
    return NULL;
}

void pvf_arch_names(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof arches / sizeof *arches && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s (%s)", i ? ", " : "", arches[i]->name,
                                 arches[i]->hf_class);
}

static int add_targets(pvf_model *m, pvf_err *err) {
    int cap = 2 * m->nparams;
    m->targets = calloc((size_t)(cap ? cap : 1), sizeof *m->targets);
    if (!m->targets)
        return pvf_err_set(err, "%s: out of memory", m->dir);
    for (int i = 0; i < m->nparams; i++) {
        const pvf_qtensor *q = &m->params[i].store;
        int kinds = q->scales ? 2 : 1; /* codes, then scales when the format has them */
        for (int scale = 0; scale < kinds; scale++) {
            pvf_target *t = &m->targets[m->ntargets];
            size_t len = strlen(m->params[i].name) + 8;
            t->name = malloc(len);
            if (!t->name)
                return pvf_err_set(err, "%s: out of memory", m->dir);
            snprintf(t->name, len, "%s%s", m->params[i].name, scale ? "_scale" : "");
            t->param = i;
            t->is_scale = scale;
            t->numel = scale ? q->nscales : q->numel;
            t->bits = scale ? 32 : pvf_format_bits(q->fmt);
            m->ntargets++;
        }
    }
    return 0;
}

int pvf_model_load(pvf_model *m, const char *dir, pvf_format format, pvf_err *err) {
    memset(m, 0, sizeof *m);
    m->format = format;
    m->out_positions = 1;
    m->dir = strdup(dir);
    if (!m->dir)
        return pvf_err_set(err, "%s: out of memory", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (pvf_config_load(&m->config, path, err))
        goto fail;
    const char *arch = pvf_config_arch(&m->config);
    m->arch = pvf_arch_find(arch);
    if (!m->arch) {
        char known[512];
        pvf_arch_names(known, sizeof known);
        pvf_err_set(err, "%s: unknown architecture '%s' (known: %s)", path, arch ? arch : "(none)",
                    known);
        goto fail;
    }
    pvf_st_set weights;
    if (pvf_st_set_open_dir(&weights, dir, err))
        goto fail;
    int rc = m->arch->build(m, &m->config, &weights, err);
    pvf_st_set_close(&weights);
    if (rc)
        goto fail;
    if (m->nstages == 0 || m->nparams == 0) {
        pvf_err_set(err, "%s: architecture '%s' built no stages", dir, m->arch->name);
        goto fail;
    }
    if (add_targets(m, err))
        goto fail;
    return 0;
fail:
    pvf_model_free(m);
    return -1;
}

void pvf_model_free(pvf_model *m) {
    for (int i = 0; i < m->nparams; i++) {
        free(m->params[i].name);
        free(m->params[i].value);
        pvf_qtensor_free(&m->params[i].store);
    }
    for (int i = 0; i < m->ntargets; i++)
        free(m->targets[i].name);
    free(m->targets);
    free(m->params);
    free(m->stages);
    if (m->arch_free)
        m->arch_free(m->arch_state);
    if (m->config.root)
        pvf_config_free(&m->config);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

int pvf_model_storage_format(const pvf_model *m, const char *name, int ndim, pvf_format *out,
                             pvf_err *err) {
    pvf_format fmt = m->format;
    if (pvf_format_is_packaging(fmt) &&
        (!m->arch->packaging || m->arch->packaging(m, name, &fmt) < 0))
        return pvf_err_set(err, "%s: format '%s' is not a packaging of architecture '%s'", m->dir,
                           pvf_format_name(m->format), m->arch->name);
    /* Scaled formats quantize weights; 1-D tensors (biases, norms) stay fp32. */
    if (pvf_format_has_scales(fmt) && ndim < 2)
        fmt = PVF_FMT_FP32;
    *out = fmt;
    return 0;
}

int pvf_model_add_param_values(pvf_model *m, const char *name, int ndim, const int64_t *shape,
                               const float *w, int stage, pvf_err *err) {
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= shape[d];
    if (numel <= 0)
        return pvf_err_set(err, "%s: tensor '%s' is empty", m->dir, name);
    pvf_format fmt;
    if (pvf_model_storage_format(m, name, ndim, &fmt, err))
        return -1;
    if (m->nparams == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 16;
        pvf_param *p = realloc(m->params, (size_t)cap * sizeof *p);
        if (!p)
            return pvf_err_set(err, "%s: out of memory", m->dir);
        m->params = p;
        m->cap_params = cap;
    }
    pvf_param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    p->value = malloc((size_t)numel * sizeof *p->value);
    p->name = strdup(name);
    if (!p->value || !p->name) {
        pvf_err_set(err, "%s: tensor '%s': out of memory", m->dir, name);
        goto fail;
    }
    int64_t rows = ndim >= 1 ? shape[0] : 1;
    if (rows < 1)
        rows = 1;
    if (pvf_qtensor_encode(&p->store, fmt, w, rows, numel / rows, err)) {
        pvf_err_prefix(err, "%s: tensor '%s'", m->dir, name);
        goto fail;
    }
    pvf_qtensor_decode(&p->store, p->value);
    p->ndim = ndim;
    memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    p->numel = numel;
    p->stage = stage;
    snprintf(p->component, sizeof p->component, "%s",
             stage >= 0 && stage < m->nstages ? m->stages[stage].name : "");
    return m->nparams++;
fail:
    free(p->value);
    free(p->name);
    return -1;
}

int pvf_model_add_param(pvf_model *m, const pvf_st_set *weights, const char *name, int ndim,
                        const int64_t *shape, int stage, pvf_err *err) {
    pvf_tensor t;
    if (pvf_st_set_get(weights, name, &t, err))
        return -1;
    char want[128], got[128];
    pvf_shape_format(shape, ndim, want, sizeof want);
    pvf_shape_format(t.shape, t.ndim, got, sizeof got);
    if (t.ndim != ndim || memcmp(t.shape, shape, (size_t)ndim * sizeof *shape) != 0)
        return pvf_err_set(err, "%s: tensor '%s' has shape %s, config.json implies %s", m->dir,
                           name, got, want);
    if (t.dtype != PVF_DT_F32 && t.dtype != PVF_DT_F16 && t.dtype != PVF_DT_BF16)
        return pvf_err_set(err, "%s: tensor '%s' has dtype %s; weights must be F32, F16 or BF16",
                           m->dir, name, pvf_dtype_name(t.dtype));
    int64_t numel = pvf_tensor_numel(&t);
    if (numel <= 0)
        return pvf_err_set(err, "%s: tensor '%s' is empty", m->dir, name);
    float *w = malloc((size_t)numel * sizeof *w);
    if (!w)
        return pvf_err_set(err, "%s: tensor '%s': out of memory", m->dir, name);
    pvf_tensor_to_f32(&t, w, numel);
    int rc = pvf_model_add_param_values(m, name, ndim, shape, w, stage, err);
    free(w);
    return rc;
}

int pvf_model_fit_eval(pvf_model *m, const pvf_evalset *e, pvf_err *err) {
    return m->arch->fit_eval ? m->arch->fit_eval(m, e, err) : 0;
}

int pvf_model_add_stage(pvf_model *m, const char *name, int64_t in_size, int64_t out_size,
                        pvf_stage_fn run, int layer, pvf_err *err) {
    if (m->nstages == m->cap_stages) {
        int cap = m->cap_stages ? 2 * m->cap_stages : 8;
        pvf_stage *s = realloc(m->stages, (size_t)cap * sizeof *s);
        if (!s)
            return pvf_err_set(err, "%s: out of memory", m->dir);
        m->stages = s;
        m->cap_stages = cap;
    }
    pvf_stage *s = &m->stages[m->nstages];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->in_size = in_size;
    s->out_size = out_size;
    s->run = run;
    s->layer = layer;
    m->out_size = out_size;
    return m->nstages++;
}

int pvf_model_find_target(const pvf_model *m, const char *name) {
    for (int i = 0; i < m->ntargets; i++)
        if (strcmp(m->targets[i].name, name) == 0)
            return i;
    return -1;
}

void pvf_model_set_component(pvf_model *m, int param, const char *component) {
    snprintf(m->params[param].component, sizeof m->params[param].component, "%s", component);
}

int64_t pvf_model_param_count(const pvf_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->nparams; i++)
        n += m->params[i].numel;
    return n;
}

/* ---- executors ---- */

/* Models up to this many parameter floats (128 MB) keep one private copy of
 * every parameter per executor. */
#define PVF_COPY_ALL_FLOATS (INT64_C(32) << 20)

int pvf_exec_init(pvf_exec *ex, const pvf_model *m, const pvf_evalset *eval, pvf_err *err) {
    /* One executor per core: OpenBLAS threads of its own would only contend
     * with the other executors (and busy-wait on a loaded machine). */
    openblas_set_num_threads(1);
    memset(ex, 0, sizeof *ex);
    ex->m = m;
    ex->eval = eval;
    ex->n_inputs = eval->n;
    ex->chunk = PVF_CHUNK;
    ex->fault_param = -1;
    ex->copy_param = -1;
    int64_t widest = 1, biggest = 1, longest_row = 1;
    for (int s = 0; s < m->nstages; s++) {
        if (m->stages[s].in_size > widest)
            widest = m->stages[s].in_size;
        if (m->stages[s].out_size > widest)
            widest = m->stages[s].out_size;
    }
    int64_t total = 0;
    for (int i = 0; i < m->nparams; i++) {
        if (m->params[i].numel > biggest)
            biggest = m->params[i].numel;
        total += m->params[i].numel;
        if (m->params[i].store.cols > longest_row)
            longest_row = m->params[i].store.cols;
    }
    ex->patch_cap = longest_row;
    ex->patch = malloc((size_t)longest_row * sizeof(float));
    /* A model that fits gets a private copy of every parameter, each made on
     * its first fault: trials that switch parameters then copy nothing more
     * than the faulty span (one shared copy costs a whole table per switch). */
    if (total <= PVF_COPY_ALL_FLOATS) {
        ex->copy_at = malloc((size_t)(m->nparams > 0 ? m->nparams : 1) * sizeof *ex->copy_at);
        ex->copy_made = calloc((size_t)(m->nparams > 0 ? m->nparams : 1), 1);
        if (!ex->copy_at || !ex->copy_made) {
            pvf_exec_free(ex);
            return pvf_err_set(err, "executor: out of memory");
        }
        for (int i = 0; i < m->nparams; i++)
            ex->copy_at[i] = i == 0 ? 0 : ex->copy_at[i - 1] + m->params[i - 1].numel;
        biggest = total > 0 ? total : 1;
    }
    ex->act[0] = malloc((size_t)(ex->chunk * widest) * sizeof(float));
    ex->act[1] = malloc((size_t)(ex->chunk * widest) * sizeof(float));
    ex->scratch = malloc((size_t)(m->scratch_floats > 0 ? m->scratch_floats : 1) * sizeof(float));
    ex->copy_buf = malloc((size_t)biggest * sizeof(float));
    ex->copy = ex->copy_buf;
    ex->fast_io[0] = malloc((size_t)(ex->chunk * widest) * sizeof(float));
    ex->fast_io[1] = malloc((size_t)(ex->chunk * widest) * sizeof(float));
    ex->fast_rows = malloc((size_t)ex->chunk * sizeof *ex->fast_rows);
    ex->fast_scratch =
        malloc((size_t)(m->fast_scratch_floats > 0 ? m->fast_scratch_floats : 1) * sizeof(float));
    if (!ex->act[0] || !ex->act[1] || !ex->scratch || !ex->copy || !ex->patch || !ex->fast_io[0] ||
        !ex->fast_io[1] || !ex->fast_rows || !ex->fast_scratch) {
        pvf_exec_free(ex);
        return pvf_err_set(err, "executor: out of memory");
    }
    return 0;
}

void pvf_exec_free(pvf_exec *ex) {
    free(ex->act[0]);
    free(ex->act[1]);
    free(ex->scratch);
    free(ex->copy_buf);
    free(ex->copy_at);
    free(ex->copy_made);
    free(ex->patch);
    free(ex->fast_io[0]);
    free(ex->fast_io[1]);
    free(ex->fast_rows);
    free(ex->fast_scratch);
    memset(ex, 0, sizeof *ex);
}

const float *pvf_exec_weights(const pvf_exec *cex, int param) {
    if (param != cex->fault_param)
        return cex->m->params[param].value;
    pvf_exec *ex = (pvf_exec *)cex; /* the executor is never const itself: a cache fill */
    if (!ex->copy_patched) {
        const pvf_param *p = &ex->m->params[param];
        /* The copy stays equal to the shared values between trials, so a new
         * parameter costs one copy and every later fault on it only its span. */
        if (ex->copy_at) {
            ex->copy = ex->copy_buf + ex->copy_at[param];
            if (!ex->copy_made[param])
                memcpy(ex->copy, p->value, (size_t)p->numel * sizeof *ex->copy);
            ex->copy_made[param] = 1;
        } else if (ex->copy_param != param) {
            memcpy(ex->copy, p->value, (size_t)p->numel * sizeof *ex->copy);
        }
        ex->copy_param = param;
        memcpy(ex->copy + ex->fault_lo, ex->patch,
               (size_t)(ex->fault_hi - ex->fault_lo) * sizeof *ex->copy);
        ex->copy_patched = 1;
    }
    return ex->copy;
}

float *pvf_exec_fault_span(pvf_exec *ex, int param, int64_t lo, int64_t hi, pvf_err *err) {
    if (param < 0 || param >= ex->m->nparams) {
        pvf_err_set(err, "fault on unknown parameter %d", param);
        return NULL;
    }
    const pvf_param *p = &ex->m->params[param];
    if (lo < 0 || hi > p->numel || lo > hi || hi - lo > ex->patch_cap) {
        pvf_err_set(err, "fault outside parameter '%s'", p->name);
        return NULL;
    }
    if (ex->fault_param >= 0)
        pvf_exec_fault_undo(ex);
    ex->fault_param = param;
    ex->fault_lo = lo;
    ex->fault_hi = hi;
    memcpy(ex->patch, p->value + lo, (size_t)(hi - lo) * sizeof *ex->patch);
    return ex->patch;
}

void pvf_exec_fault_undo(pvf_exec *ex) {
    if (ex->fault_param < 0)
        return;
    if (ex->copy_patched) {
        const pvf_param *p = &ex->m->params[ex->fault_param];
        memcpy(ex->copy + ex->fault_lo, p->value + ex->fault_lo,
               (size_t)(ex->fault_hi - ex->fault_lo) * sizeof *ex->copy);
        ex->copy_patched = 0;
    }
    ex->fault_param = -1;
}

/* ---- forward passes ---- */

/* Runs stages start..last over inputs [first, first+n) from `in`; the output
 * of stage s goes to keep[s+1] when keep is given (golden), and the last
 * stage's output to out. */
static int run_chunk(pvf_exec *ex, int start, int64_t first, int64_t n, const float *in,
                     float *const *keep, float *out, pvf_err *err) {
    const pvf_model *m = ex->m;
    const float *src = in;
    int ping = 0;
    for (int s = start; s < m->nstages; s++) {
        const pvf_stage *st = &m->stages[s];
        float *dst;
        if (s == m->nstages - 1)
            dst = out;
        else if (keep)
            dst = keep[s + 1] + first * st->out_size;
        else
            dst = ex->act[ping ^= 1];
        if (st->run(m, s, ex, first, n, src, dst))
            return pvf_err_set(err, "stage '%s' failed", st->name);
        src = dst;
    }
    return 0;
}

int pvf_forward_from(pvf_exec *ex, const pvf_golden *g, int start, float *out, pvf_err *err) {
    const pvf_model *m = ex->m;
    if (start < 0 || start >= m->nstages)
        return pvf_err_set(err, "no stage %d", start);
    const int64_t in_size = m->stages[start].in_size;
    for (int64_t first = 0; first < g->n; first += ex->chunk) {
        int64_t n = g->n - first < ex->chunk ? g->n - first : ex->chunk;
        const float *in = g->stage_in[start] ? g->stage_in[start] + first * in_size : NULL;
        if (run_chunk(ex, start, first, n, in, NULL, out + first * m->out_size, err))
            return -1;
    }
    return 0;
}

int pvf_golden_compute(pvf_golden *g, pvf_exec *ex, pvf_err *err) {
    const pvf_model *m = ex->m;
    memset(g, 0, sizeof *g);
    g->eval = ex->eval;
    g->n = ex->n_inputs > 0 && ex->n_inputs < ex->eval->n ? ex->n_inputs : ex->eval->n;
    const float *input0 = NULL; /* in the eval set's mapping, maybe unaligned */
    if (m->arch->bind_eval(m, ex->eval, &input0, err))
        return -1;
    g->stage_in = calloc((size_t)m->nstages, sizeof *g->stage_in);
    g->out = malloc((size_t)(g->n * m->out_size) * sizeof *g->out);
    const int64_t positions = m->out_positions > 0 ? m->out_positions : 1;
    const int64_t classes = m->out_size / positions;
    g->top1 = malloc((size_t)(g->n * positions) * sizeof *g->top1);
    if (!g->stage_in || !g->out || !g->top1)
        goto oom;
    for (int s = 0; s < m->nstages; s++) {
        if (s == 0 && !input0)
            continue; /* stage 0 reads the eval tensors itself */
        g->stage_in[s] = malloc((size_t)(g->n * m->stages[s].in_size) * sizeof(float));
        if (!g->stage_in[s])
            goto oom;
    }
    if (input0) /* copied: tensors in a safetensors file need not be aligned */
        memcpy(g->stage_in[0], input0, (size_t)(g->n * m->stages[0].in_size) * sizeof(float));
    for (int64_t first = 0; first < g->n; first += ex->chunk) {
        int64_t n = g->n - first < ex->chunk ? g->n - first : ex->chunk;
        const float *in = g->stage_in[0] ? g->stage_in[0] + first * m->stages[0].in_size : NULL;
        if (run_chunk(ex, 0, first, n, in, g->stage_in, g->out + first * m->out_size, err))
            goto fail;
    }
    for (int64_t i = 0; i < g->n; i++) {
        const float *row = g->out + i * m->out_size;
        if (!pvf_all_finite(row, m->out_size)) {
            pvf_err_set(err, "%s: golden output for eval input %" PRId64 " is not finite", m->dir,
                        i);
            goto fail;
        }
        for (int64_t p = 0; p < positions; p++)
            g->top1[i * positions + p] = pvf_argmax(row + p * classes, classes);
    }
    if (pvf_fast_golden_init(g, m, err))
        goto fail;
    return 0;
oom:
    pvf_err_set(err, "golden pass: out of memory");
fail:
    pvf_golden_free(g, m);
    return -1;
}

void pvf_golden_free(pvf_golden *g, const pvf_model *m) {
    if (g->stage_in)
        for (int s = 0; s < m->nstages; s++)
            free(g->stage_in[s]);
    free(g->stage_in);
    free(g->out);
    free(g->top1);
    if (g->fast && m->arch->fast_free)
        m->arch->fast_free(g->fast);
    memset(g, 0, sizeof *g);
}
