#include "fast.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GRAM_SQUARINGS 7 /* the bound is within dim^(2^-(k+1)) of the norm */

/* A one-row view of the golden pass, for the architecture's outcome rule. */
static void judge_one(const pvf_model *m, const pvf_golden *g, int64_t row, const float *out,
                      pvf_trial_result *one) {
    const int64_t positions = m->out_positions > 0 ? m->out_positions : 1;
    pvf_golden view = *g;
    view.n = 1;
    view.out = g->out + row * m->out_size;
    view.top1 = g->top1 + row * positions;
    memset(one, 0, sizeof *one);
    pvf_judge(m, &view, out, one);
}

int pvf_fast_golden_init(pvf_golden *g, const pvf_model *m, pvf_err *err) {
    pvf_trial_result one;
    judge_one(m, g, 0, g->out, &one);
    g->judged_per_row = one.judged > 0 ? one.judged : 1;
    g->fast = NULL;
    if (m->arch->fast_prepare && m->arch->fast_prepare(m, g, &g->fast, err))
        return -1;
    return 0;
}

void pvf_fast_begin(pvf_exec *ex, const pvf_golden *g, float *out, pvf_trial_result *r) {
    r->incorrect = 0;
    r->nonfinite = 0;
    r->stage_rows = 0;
    ex->trial_out = NULL;
    if (ex->want_outputs && out) {
        memcpy(out, g->out, (size_t)(g->n * ex->m->out_size) * sizeof *out);
        ex->trial_out = out;
    }
}

void pvf_fast_judge_row(pvf_exec *ex, const pvf_golden *g, int64_t row, const float *out,
                        pvf_trial_result *r) {
    const pvf_model *m = ex->m;
    if (ex->trial_out)
        memcpy(ex->trial_out + row * m->out_size, out, (size_t)m->out_size * sizeof *out);
    if (memcmp(out, g->out + row * m->out_size, (size_t)m->out_size * sizeof *out) == 0)
        return; /* golden's outputs, golden's outcome */
    pvf_trial_result one;
    judge_one(m, g, row, out, &one);
    r->incorrect += one.incorrect;
    r->nonfinite += one.nonfinite;
}

/* Values so large that a sum of two of them can overflow float: whether
 * it does depends on the order of the sum, which differs between BLAS calls
 * of different batch sizes. */
#define HUGE_VALUE 1e30f

int pvf_fast_overflow_prone(const float *v, int64_t n) {
    /* counted without a branch per value, a block at a time: the check
     * reads every carried row of a stage and seldom finds one */
    int64_t huge = 0;
    for (int64_t b = 0; b < n && huge < 2; b += 256) {
        const int64_t end = n - b < 256 ? n : b + 256;
        for (int64_t i = b; i < end; i++) {
            const float a = fabsf(v[i]); /* finite: a <= FLT_MAX, NaN compares false */
            huge += (a >= HUGE_VALUE) & (a <= FLT_MAX);
        }
    }
    return huge >= 2;
}

/* Runs stage s on rows[0..k) (inputs in, outputs out), one call per run of
 * consecutive eval inputs: stages index the eval set by their first row. */
static int run_rows(pvf_exec *ex, int s, const int64_t *rows, int64_t k, const float *in,
                    float *out) {
    const pvf_stage *st = &ex->m->stages[s];
    if (st->row_free) /* one call, the rows need not be consecutive */
        return st->run(ex->m, s, ex, rows[0], k, in, out);
    for (int64_t a = 0; a < k;) {
        int64_t b = a + 1;
        while (b < k && rows[b] == rows[b - 1] + 1)
            b++;
        if (st->run(ex->m, s, ex, rows[a], b - a, in ? in + a * st->in_size : NULL,
                    out + a * st->out_size))
            return -1;
        a = b;
    }
    return 0;
}

/* The same, bit for bit as a full forward pass computes these rows: each
 * row in a batch of its pass chunk's size, at its place in that chunk (the
 * other places hold golden inputs; rows are independent, only the batch
 * shape matters). A row_free stage takes rows of different chunks in one
 * batch, each at its own place: a few overflow-prone rows spread over the
 * eval set cost a few batches, not one per chunk they touch. */
static int run_rows_as_pass(pvf_exec *ex, const pvf_golden *g, int s, const int64_t *rows,
                            int64_t k, const float *in, float *out) {
    const pvf_stage *st = &ex->m->stages[s];
    const int64_t chunk = ex->chunk;
    const int pack = st->row_free && in && g->stage_in[s] && k <= PVF_CHUNK && chunk <= PVF_CHUNK;
    unsigned char placed[PVF_CHUNK] = {0};
    int64_t slot[PVF_CHUNK];
    for (int64_t a = 0, left = k; left > 0;) {
        while (pack && placed[a])
            a++;
        const int64_t first = rows[a] / chunk * chunk;
        const int64_t n = g->n - first < chunk ? g->n - first : chunk;
        float *cin = NULL;
        if (g->stage_in[s]) {
            cin = ex->act[0];
            memcpy(cin, g->stage_in[s] + first * st->in_size,
                   (size_t)(n * st->in_size) * sizeof *cin);
        }
        int64_t b = a;
        if (pack) { /* every row not yet run whose chunk is as large and place free */
            for (int64_t p = 0; p < n; p++)
                slot[p] = -1;
            for (int64_t j = a; j < k; j++) {
                const int64_t f = rows[j] / chunk * chunk, p = rows[j] - f;
                if (placed[j] || (g->n - f < chunk ? g->n - f : chunk) != n || slot[p] >= 0)
                    continue;
                slot[p] = j;
                placed[j] = 1;
                left--;
                memcpy(cin + p * st->in_size, in + j * st->in_size,
                       (size_t)st->in_size * sizeof *cin);
            }
        } else { /* the rows of this chunk, in order */
            for (; b < k && rows[b] < first + n; b++)
                if (cin && in)
                    memcpy(cin + (rows[b] - first) * st->in_size, in + b * st->in_size,
                           (size_t)st->in_size * sizeof *cin);
            left -= b - a;
        }
        if (st->run(ex->m, s, ex, first, n, cin, ex->act[1]))
            return -1;
        if (pack) {
            for (int64_t p = 0; p < n; p++)
                if (slot[p] >= 0)
                    memcpy(out + slot[p] * st->out_size, ex->act[1] + p * st->out_size,
                           (size_t)st->out_size * sizeof *out);
        } else {
            for (int64_t j = a; j < b; j++)
                memcpy(out + j * st->out_size, ex->act[1] + (rows[j] - first) * st->out_size,
                       (size_t)st->out_size * sizeof *out);
            a = b;
        }
    }
    return 0;
}

int64_t pvf_fast_drop_golden(const pvf_exec *ex, const pvf_golden *g, int s, int64_t *rows,
                             float *in, int64_t n) {
    const pvf_model *m = ex->m;
    const int64_t width = m->stages[s].in_size;
    int64_t kept = 0;
    for (int64_t j = 0; j < n; j++) {
        const float *row = in + j * width;
        const float *gold = g->stage_in[s] ? g->stage_in[s] + rows[j] * width : NULL;
        if (gold && memcmp(row, gold, (size_t)width * sizeof *row) == 0)
            continue;
        if (m->arch->fast_bound && m->arch->fast_bound(ex, g, s, rows[j], row))
            continue;
        if (kept != j) {
            rows[kept] = rows[j];
            memmove(in + kept * width, row, (size_t)width * sizeof *row);
        }
        kept++;
    }
    return kept;
}

int pvf_fast_rows(pvf_exec *ex, const pvf_golden *g, int stage, const int64_t *rows, int64_t k,
                  const float *in, pvf_trial_result *r, pvf_err *err) {
    const pvf_model *m = ex->m;
    const int faulty = ex->fault_param >= 0 ? m->params[ex->fault_param].stage : -1;
    const int64_t width0 = stage < m->nstages ? m->stages[stage].in_size : m->out_size;
    for (int64_t first = 0; first < k; first += ex->chunk) {
        int64_t n = k - first < ex->chunk ? k - first : ex->chunk;
        int64_t *ids = ex->fast_rows;
        memcpy(ids, rows + first, (size_t)n * sizeof *ids);
        float *cur = ex->fast_io[0], *next = ex->fast_io[1];
        /* in NULL: the rows' golden inputs (none when stage 0 reads the eval set) */
        int have = in != NULL || (stage < m->nstages && g->stage_in[stage]);
        if (in)
            memcpy(cur, in + first * width0, (size_t)(n * width0) * sizeof *cur);
        else if (have)
            for (int64_t j = 0; j < n; j++)
                memcpy(cur + j * width0, g->stage_in[stage] + ids[j] * width0,
                       (size_t)width0 * sizeof *cur);
        for (int s = stage; s < m->nstages && n > 0; s++) {
            const pvf_stage *st = &m->stages[s];
            if (s != faulty && have) {
                n = pvf_fast_drop_golden(ex, g, s, ids, cur, n);
            }
            if (n == 0)
                break;
            /* Overflow-prone sums run as the full pass runs them, so that
             * whether they overflow is decided the same way. */
            int as_pass =
                s == faulty ? pvf_fast_overflow_prone(ex->patch, ex->fault_hi - ex->fault_lo) : 0;
            for (int64_t j = 0; have && !as_pass && j < n; j++)
                as_pass = pvf_fast_overflow_prone(cur + j * st->in_size, st->in_size);
            if ((as_pass ? run_rows_as_pass(ex, g, s, ids, n, have ? cur : NULL, next)
                         : run_rows(ex, s, ids, n, have ? cur : NULL, next)))
                return pvf_err_set(err, "stage '%s' failed", st->name);
            r->stage_rows += n * (m->out_positions > 0 ? m->out_positions : 1);
            have = 1;
            float *t = cur;
            cur = next;
            next = t;
        }
        for (int64_t j = 0; j < n; j++)
            pvf_fast_judge_row(ex, g, ids[j], cur + j * m->out_size, r);
    }
    return 0;
}

void pvf_fast_finish(const pvf_golden *g, pvf_trial_result *r) {
    r->judged = g->judged_per_row * g->n;
    r->value = r->judged ? (double)r->incorrect / (double)r->judged : 0.0;
    r->flags &= ~(unsigned)(PVF_TRIAL_MASKED | PVF_TRIAL_NONFINITE | PVF_TRIAL_SETTLED);
    if (r->incorrect == 0)
        r->flags |= PVF_TRIAL_MASKED;
    if (r->nonfinite)
        r->flags |= PVF_TRIAL_NONFINITE;
    if (r->stage_rows == 0)
        r->flags |= PVF_TRIAL_SETTLED;
}

/* sqrt(lambda_max(G)) bound of a symmetric positive semidefinite G[dim,
 * dim] (overwritten; t: as much scratch): lambda_max(G) <=
 * ||G^(2^k)||_F^(2^-k), normalized squarings in double. */
static double gram_bound(double *g, double *t, int64_t dim, int squarings) {
    double log_lambda = 0, weight = 1; /* log lambda_max(G) <= sum weight_k log F_k */
    for (int k = 0; k <= squarings; k++) {
        double fro = 0;
        for (int64_t i = 0; i < dim * dim; i++)
            fro += g[i] * g[i];
        fro = sqrt(fro);
        if (!(fro > 0)) {
            if (k == 0)
                log_lambda = -INFINITY; /* a zero matrix */
            break;
        }
        log_lambda += weight * log(fro);
        for (int64_t i = 0; i < dim * dim; i++)
            g[i] /= fro;
        if (k == squarings)
            break; /* lambda_max of the normalized power <= its Frobenius norm, 1 */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)dim, (blasint)dim,
                    (blasint)dim, 1.0, g, (blasint)dim, g, (blasint)dim, 0.0, t, (blasint)dim);
        memcpy(g, t, (size_t)(dim * dim) * sizeof *g);
        weight *= 0.5;
    }
    return exp(0.5 * log_lambda) * 1.0001; /* double rounding */
}

double pvf_fast_spectral_bound_d(const double *a, int64_t rows, int64_t cols, int squarings) {
    const int64_t dim = rows < cols ? rows : cols;
    double *g = malloc((size_t)(2 * dim * dim) * sizeof *g);
    if (!g)
        return -1;
    /* G = A A^T (dim = rows) or A^T A */
    cblas_dgemm(CblasRowMajor, dim == rows ? CblasNoTrans : CblasTrans,
                dim == rows ? CblasTrans : CblasNoTrans, (blasint)dim, (blasint)dim,
                (blasint)(dim == rows ? cols : rows), 1.0, a, (blasint)cols, a, (blasint)cols, 0.0,
                g, (blasint)dim);
    const double result = gram_bound(g, g + dim * dim, dim, squarings);
    free(g);
    return result;
}

double pvf_fast_spectral_bound(const float *w, int64_t cols, int64_t r0, int64_t nr,
                               const float *colscale) {
    double *a = malloc((size_t)(nr * cols) * sizeof *a);
    if (!a)
        return -1;
    for (int64_t i = 0; i < nr; i++)
        for (int64_t j = 0; j < cols; j++)
            a[i * cols + j] = (double)w[(r0 + i) * cols + j] * (colscale ? colscale[j] : 1.0);
    const double result = pvf_fast_spectral_bound_d(a, nr, cols, GRAM_SQUARINGS);
    free(a);
    return result;
}
