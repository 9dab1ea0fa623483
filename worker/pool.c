#include "pool.h"

#include "sampler.h"
#include "trial.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pool {
    pvf_runner *r;
    const pvf_fault_model *fm;
    /* every trial's site, in the order they run (pvf_trial_order); .trial:
     * its slot in out */
    pvf_trial_site *order;
    size_t n;
    pvf_trial_result *out;
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t lock; /* guards err */
    pvf_err err;
} pool;

typedef struct executor {
    pool *p;
    pvf_exec exec; /* own workspace and overlay (unused for executor 0) */
    pvf_exec *use;
    float *outputs;
} executor;

static void *executor_main(void *arg) {
    executor *e = arg;
    pool *p = e->p;
    pvf_err err;
    size_t i;
    while (!atomic_load(&p->failed) && (i = atomic_fetch_add(&p->next, 1)) < p->n) {
        const pvf_trial_site *t = &p->order[i];
        if (pvf_trial_run(e->use, &p->r->golden, p->fm->kind, &t->site, e->outputs,
                          &p->out[t->trial], &err)) {
            pthread_mutex_lock(&p->lock);
            if (!atomic_exchange(&p->failed, 1))
                p->err = err;
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

int pvf_pool_run(pvf_runner *r, const pvf_fault_model *fm, uint64_t seed,
                 const pvf_trial_spec *specs, size_t n, int executors, pvf_trial_result *out,
                 pvf_err *err) {
    if (executors < 1)
        executors = 1;
    if ((size_t)executors > n)
        executors = n ? (int)n : 1;
    pool p = {.r = r, .fm = fm, .n = n, .out = out};
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, 0);
    pthread_mutex_init(&p.lock, NULL);
    executor *ex = calloc((size_t)executors, sizeof *ex);
    pthread_t *threads = calloc((size_t)executors, sizeof *threads);
    p.order = malloc((n ? n : 1) * sizeof *p.order);
    int started = 0, rc = 0;
    if (!ex || !threads || !p.order) {
        rc = pvf_err_set(err, "executors: out of memory");
        goto out;
    }
    /* every site first, then the trials in their order (pvf_trial_order) */
    for (size_t i = 0; i < n; i++) {
        p.order[i].trial = i;
        if (pvf_sample_site(&r->model, specs[i].targets, specs[i].ntargets, fm, seed,
                            specs[i].stratum, specs[i].trial, &p.order[i].site, err)) {
            rc = -1;
            goto out;
        }
    }
    pvf_trial_order(p.order, n);
    const size_t outputs = (size_t)(r->golden.n * r->model.out_size);
    for (int i = 0; i < executors; i++) {
        ex[i].p = &p;
        if (i == 0) {
            ex[i].use = &r->exec;
            ex[i].outputs = r->out;
            continue;
        }
        ex[i].outputs = malloc(outputs * sizeof(float));
        if (!ex[i].outputs || pvf_exec_init(&ex[i].exec, &r->model, &r->eval, err)) {
            rc = pvf_err_set(err, "executors: out of memory");
            goto out;
        }
        ex[i].exec.naive = r->exec.naive;
        ex[i].use = &ex[i].exec;
    }
    for (started = 1; started < executors; started++)
        if (pthread_create(&threads[started], NULL, executor_main, &ex[started])) {
            atomic_store(&p.failed, 1);
            snprintf(p.err.msg, sizeof p.err.msg, "executors: cannot start a thread");
            break;
        }
    executor_main(&ex[0]); /* the calling thread is executor 0 */
    for (int i = 1; i < started; i++)
        pthread_join(threads[i], NULL);
    if (atomic_load(&p.failed))
        rc = pvf_err_set(err, "%s", p.err.msg);
out:
    if (ex)
        for (int i = 1; i < executors; i++) {
            if (ex[i].use)
                pvf_exec_free(&ex[i].exec);
            free(ex[i].outputs);
        }
    free(ex);
    free(threads);
    free(p.order);
    pthread_mutex_destroy(&p.lock);
    return rc;
}
