/* client.c - the worker process (see pvf_client.h). */
#include "pvf_client.h"

#include "guard.h"
#include "pvf_proto.h"
#include "runner.h"
#include "sampler.h"

#include <sodium.h>
#include <zmq.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BATCH_TRIALS        256  /* records per RESULT while a job runs */
#define BATCH_SECONDS       0.25 /* ... or this often, whichever comes first */
#define DRAIN_SECONDS       15.0 /* SIGTERM: longest wait for acknowledgements */
#define FETCH_RETRY_SECONDS 5.0

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("pvf worker: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void pvf_client_cache_default(char *buf, size_t n) {
    const char *env = getenv("PVF_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(buf, n, "%s", env);
    else if (geteuid() == 0)
        snprintf(buf, n, "/var/cache/pvf");
    else if (xdg && *xdg)
        snprintf(buf, n, "%s/pvf", xdg);
    else
        snprintf(buf, n, "%s/.cache/pvf", home && *home ? home : "/tmp");
}

/* One model in one format with one eval set: loaded once, golden pass once,
 * shared read-only by the executors. */
typedef struct model_ctx {
    char key[65];
    char dir[PATH_MAX], eval[PATH_MAX];
    pvf_format format;
    double threshold; /* the outcome rule's, from the JOB */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state; /* 0 not loaded, 1 loading, 2 ready, -1 failed */
    pvf_runner runner;
    char error[PVF_ERR_MAX];
    struct model_ctx *next;
} model_ctx;

typedef struct job {
    pvf_msg msg; /* the decoded JOB, owned */
    model_ctx *ctx;
    atomic_int cancel;
    atomic_llong started_ms; /* executor: when its trials began (0: loading the model) */
    atomic_int start_acked;  /* the coordinator acknowledged that start */
    double cancelled_at;     /* main thread: when CANCEL arrived while it ran */
    struct job *next;
} job;

/* A batch of records from an executor to the main thread. */
typedef struct batch {
    uint64_t job;
    uint32_t attempt;
    uint64_t epoch;
    uint32_t seq;
    int final;
    pvf_trial_rec *trials;
    uint32_t n;
    char error[PVF_ERR_MAX];
} batch;

/* A RESULT sent and not yet acknowledged. */
typedef struct pending {
    uint64_t job;
    uint32_t attempt, seq;
    uint8_t *body;
    size_t len;
    int sent;
    struct pending *next;
} pending;

typedef struct client client;

typedef struct executor {
    client *c;
    int index;
    pthread_t thread;
    void *push; /* to the main thread */
    job *current;
    model_ctx *ctx; /* what exec was made for */
    pvf_exec exec;
    float *out;
    pvf_guard guard;
    batch *batch; /* records of the running job not yet pushed */
    uint32_t seq; /* the next batch's sequence number */
} executor;

struct client {
    const pvf_client_config *cfg;
    char name[256];
    uint64_t session; /* HELLO's session: random, never 0 */
    char cache[PATH_MAX - 128];
    void *zctx, *sock, *pull;
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    job *queue, *queue_tail; /* for executors */
    int quit;                /* executors leave */
    executor *ex;
    int nex;
    job *waiting; /* jobs whose artifacts are being fetched */
    struct {
        int active;
        pvf_sha256 sha;
        uint64_t off, total;
        int fd;
        char path[PATH_MAX];
        double asked_at;
    } fetch;
    pending *unacked;
    model_ctx *ctxs;
    double last_heard, last_sent;
    int backoff_ms;
    int draining;
    int stuck; /* an executor ignored a CANCEL: leave without joining it */
    /* Test hooks (environment): this trial aborts the process, or hangs. */
    struct {
        int64_t stratum;
        uint64_t trial;
    } crash_at, hang_at;
    double drain_started;
    struct {
        int sig; /* a trial crashed an executor (guard.h): the worker leaves */
        uint64_t stratum, trial;
    } crash; /* under qlock */
};

/* ---- artifacts -------------------------------------------------------- */

static void artifact_path(const client *c, const pvf_sha256 *sha, char *buf, size_t n) {
    char hex[65];
    pvf_sha256_hex(sha, hex);
    snprintf(buf, n, "%s/sha256/%s", c->cache, hex);
}

static int artifact_present(const client *c, const pvf_sha256 *sha, uint64_t size) {
    char path[PATH_MAX];
    struct stat st;
    artifact_path(c, sha, path, sizeof path);
    return stat(path, &st) == 0 && (uint64_t)st.st_size == size;
}

static int mkdir_p(const char *path) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/* The first artifact of job j that is missing, or NULL. */
static const pvf_sha256 *job_missing(const client *c, const job *j, uint64_t *size) {
    for (uint32_t i = 0; i < j->msg.u.job.nfiles; i++)
        if (!artifact_present(c, &j->msg.u.job.files[i].sha, j->msg.u.job.files[i].size)) {
            *size = j->msg.u.job.files[i].size;
            return &j->msg.u.job.files[i].sha;
        }
    if (!artifact_present(c, &j->msg.u.job.eval_sha, j->msg.u.job.eval_size)) {
        *size = j->msg.u.job.eval_size;
        return &j->msg.u.job.eval_sha;
    }
    return NULL;
}

/* The model directory of a job: symlinks named as in the coordinator's
 * directory, pointing at the cached artifacts. */
static model_ctx *job_context(client *c, const job *j, pvf_err *err) {
    const __typeof__(j->msg.u.job) *jm = &j->msg.u.job;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (uint32_t i = 0; i < jm->nfiles; i++) {
        crypto_hash_sha256_update(&st, (const uint8_t *)jm->files[i].name,
                                  strlen(jm->files[i].name) + 1);
        crypto_hash_sha256_update(&st, jm->files[i].sha.b, 32);
    }
    crypto_hash_sha256_update(&st, jm->eval_sha.b, 32);
    crypto_hash_sha256_update(&st, (const uint8_t *)jm->format, strlen(jm->format) + 1);
    crypto_hash_sha256_update(&st, (const uint8_t *)&jm->threshold, sizeof jm->threshold);
    pvf_sha256 key;
    crypto_hash_sha256_final(&st, key.b);
    char hex[65];
    pvf_sha256_hex(&key, hex);
    for (model_ctx *m = c->ctxs; m; m = m->next)
        if (strcmp(m->key, hex) == 0)
            return m;

    pvf_format format;
    if (!c->cfg->fake && pvf_format_parse(jm->format, &format)) {
        pvf_err_set(err, "JOB: unknown format '%s'", jm->format);
        return NULL;
    }
    model_ctx *m = calloc(1, sizeof *m);
    if (!m) {
        pvf_err_set(err, "out of memory");
        return NULL;
    }
    memcpy(m->key, hex, sizeof m->key);
    m->format = format;
    m->threshold = jm->threshold;
    snprintf(m->dir, sizeof m->dir, "%s/models/%s", c->cache, hex);
    artifact_path(c, &jm->eval_sha, m->eval, sizeof m->eval);
    struct stat sb;
    if (stat(m->dir, &sb) != 0) {
        char tmp[PATH_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", m->dir, (int)getpid());
        if (mkdir_p(tmp)) {
            pvf_err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
            free(m);
            return NULL;
        }
        for (uint32_t i = 0; i < jm->nfiles; i++) {
            char target[PATH_MAX], link[PATH_MAX + 512];
            artifact_path(c, &jm->files[i].sha, target, sizeof target);
            snprintf(link, sizeof link, "%s/%s", tmp, jm->files[i].name);
            if (symlink(target, link) && errno != EEXIST) {
                pvf_err_set(err, "%s: cannot create: %s", link, strerror(errno));
                free(m);
                return NULL;
            }
        }
        if (rename(tmp, m->dir) && errno != EEXIST && errno != ENOTEMPTY) {
            pvf_err_set(err, "%s: cannot create: %s", m->dir, strerror(errno));
            free(m);
            return NULL;
        }
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->next = c->ctxs;
    c->ctxs = m;
    return m;
}

/* Loads the context on first use (on an executor thread: the main thread
 * keeps answering heartbeats meanwhile). 0 when ready. */
static int ctx_acquire(model_ctx *m, pvf_err *err) {
    pthread_mutex_lock(&m->lock);
    while (m->state == 1)
        pthread_cond_wait(&m->cond, &m->lock);
    if (m->state == 0) {
        m->state = 1;
        pthread_mutex_unlock(&m->lock);
        pvf_err lerr;
        int rc = pvf_runner_open(&m->runner, m->dir, m->eval, m->format, &lerr);
        if (rc == 0 && m->threshold > 0) {
            if (m->runner.model.arch->has_threshold)
                m->runner.model.outcome_threshold = m->threshold;
            else {
                rc = pvf_err_set(&lerr, "%s: architecture '%s' has no outcome threshold", m->dir,
                                 m->runner.model.arch->name);
                pvf_runner_close(&m->runner);
            }
        }
        pthread_mutex_lock(&m->lock);
        m->state = rc ? -1 : 2;
        if (rc)
            snprintf(m->error, sizeof m->error, "%s", lerr.msg);
        pthread_cond_broadcast(&m->cond);
    }
    int rc = m->state == 2 ? 0 : pvf_err_set(err, "%s", m->error);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* ---- executors -------------------------------------------------------- */

static void push_batch(executor *e, batch *b) {
    zmq_send(e->push, &b, sizeof b, 0);
}

static batch *new_batch(const job *j, uint32_t seq) {
    batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->job = j->msg.u.job.job;
    b->attempt = j->msg.u.job.attempt;
    b->epoch = j->msg.u.job.epoch;
    b->seq = seq;
    b->trials = malloc(BATCH_TRIALS * sizeof *b->trials);
    if (!b->trials) {
        free(b);
        return NULL;
    }
    return b;
}

/* A fake trial (benchmarks of the coordinator): a deterministic value, no
 * inference. */
static void fake_trial(const job *j, uint64_t t, pvf_trial_rec *r) {
    uint64_t x = pvf_rng(j->msg.u.job.seed, j->msg.u.job.stratum, t, 0);
    memset(r, 0, sizeof *r);
    r->trial = t;
    r->target = (uint32_t)(x % j->msg.u.job.ntargets);
    r->element = (x >> 8) % 1000;
    r->mask = 1u << ((x >> 20) % 32);
    r->value = (x >> 40) % 100 == 0 ? 1.0 : 0.0;
    r->incorrect = r->value > 0;
    r->flags = r->value > 0 ? 0 : PVF_TRIAL_MASKED;
}

static int prepare_exec(executor *e, model_ctx *m, pvf_err *err) {
    if (e->ctx == m)
        return 0;
    if (e->ctx) {
        pvf_exec_free(&e->exec);
        free(e->out);
        e->out = NULL;
        e->ctx = NULL;
    }
    const pvf_runner *r = &m->runner;
    if (pvf_exec_init(&e->exec, &r->model, &r->eval, err))
        return -1;
    e->out = malloc((size_t)(r->golden.n * r->model.out_size) * sizeof *e->out);
    if (!e->out) {
        pvf_exec_free(&e->exec);
        return pvf_err_set(err, "out of memory");
    }
    e->ctx = m;
    return 0;
}

/* The job's trials, recorded into e->batch (sent every BATCH_TRIALS records or
 * BATCH_SECONDS, and after the first trial, so that a worker that dies
 * later has said how far it got), in the order of their fault sites
 * (pvf_trial_order; order: the job's [lo, hi) sites, sampled here). Runs
 * armed (guard.h): the loop state lives in e, where crashed_trial finds it
 * after a jump out of a trial. */
static int run_trials(executor *e, job *j, const int *targets, const pvf_fault_model *fm,
                      pvf_trial_site *order, pvf_err *err) {
    const __typeof__(j->msg.u.job) *jm = &j->msg.u.job;
    client *c = e->c;
    const uint64_t n = jm->hi - jm->lo;
    if (order && pvf_trial_sites(&j->ctx->runner.model, targets, (int)jm->ntargets, fm, jm->seed,
                                 jm->stratum, jm->lo, n, order, err))
        return -1;
    double sent_at = pvf_now();
    for (uint64_t k = 0; k < n && !atomic_load(&j->cancel); k++) {
        const uint64_t t = order ? order[k].trial : jm->lo + k;
        batch *b = e->batch;
        pvf_trial_rec *r = &b->trials[b->n];
        *r = (pvf_trial_rec){.trial = t};
        while ((int64_t)jm->stratum == c->hang_at.stratum && t == c->hang_at.trial)
            sleep(1);
        if (c->cfg->fake) {
            fake_trial(j, t, r);
        } else {
            const pvf_runner *run = &j->ctx->runner;
            const pvf_fault_site site = order[k].site;
            pvf_trial_result res;
            int i = 0;
            while (i < (int)jm->ntargets && targets[i] != site.target)
                i++;
            r->target = (uint32_t)i;
            r->element = (uint64_t)site.element;
            r->mask = site.mask;
            /* The site must be in memory, not in registers, if the trial
             * crashes: crashed_trial reads it after the jump. */
            atomic_signal_fence(memory_order_seq_cst);
            if ((int64_t)jm->stratum == c->crash_at.stratum && t == c->crash_at.trial)
                abort();
            if (pvf_trial_run(&e->exec, &run->golden, fm->kind, &site, e->out, &res, err))
                return -1;
            r->old_word = res.effect.old_word;
            r->new_word = res.effect.new_word;
            r->old_value = res.effect.old_value;
            r->new_value = res.effect.new_value;
            r->value = res.value;
            r->incorrect = (uint32_t)res.incorrect;
            r->nonfinite = (uint32_t)res.nonfinite;
            r->flags = res.flags;
        }
        b->n++;
        if (b->n == BATCH_TRIALS || k == 0 || pvf_now() - sent_at >= BATCH_SECONDS) {
            push_batch(e, b);
            sent_at = pvf_now();
            if (!(e->batch = new_batch(j, e->seq++)))
                return 0;
        }
    }
    return 0;
}

/* A fatal signal in trial e->batch->trials[n]: that record becomes the
 * trial's crash outcome (value 1), the job ends with it and the worker
 * leaves (client_crashed). */
static void crashed_trial(executor *e, job *j, int sig) {
    client *c = e->c;
    batch *b = e->batch;
    pvf_trial_rec *r = &b->trials[b->n++];
    r->value = 1.0;
    r->incorrect = 0;
    r->nonfinite = 0;
    r->flags = PVF_TRIAL_CRASHED;
    pthread_mutex_lock(&c->qlock);
    if (!c->crash.sig) {
        c->crash.sig = sig;
        c->crash.stratum = j->msg.u.job.stratum;
        c->crash.trial = r->trial;
    }
    pthread_mutex_unlock(&c->qlock);
}

/* run_trials, armed; a fatal signal in a trial ends the job with that
 * trial's crash outcome. A frame of its own: nothing of the caller's is
 * live across the jump. */
static int run_guarded(executor *e, job *j, const int *targets, const pvf_fault_model *fm,
                       pvf_trial_site *order, pvf_err *err) {
    const int sig = sigsetjmp(e->guard.jump, 1);
    if (sig) {
        crashed_trial(e, j, sig);
        return 0;
    }
    pvf_guard_arm(&e->guard);
    const int rc = run_trials(e, j, targets, fm, order, err);
    pvf_guard_disarm();
    return rc;
}

static void run_job(executor *e, job *j) {
    const __typeof__(j->msg.u.job) *jm = &j->msg.u.job;
    client *c = e->c;
    uint32_t seq = 1; /* 0: the start of the trials */
    batch *b = new_batch(j, seq++);
    if (!b)
        return; /* out of memory: the lease runs out and the job moves on */
    pvf_err err = {{0}};
    int *targets = NULL;
    pvf_trial_site *order = NULL;
    pvf_fault_model fm;
    int failed = 0;
    if (!c->cfg->fake) {
        failed = ctx_acquire(j->ctx, &err) || prepare_exec(e, j->ctx, &err) ||
                 pvf_fault_model_parse(jm->fault, &fm, &err);
        targets = calloc(jm->ntargets ? jm->ntargets : 1, sizeof *targets);
        order = calloc(jm->hi > jm->lo ? jm->hi - jm->lo : 1, sizeof *order);
        if (!failed && (!targets || !order))
            failed = pvf_err_set(&err, "out of memory");
        for (uint32_t i = 0; !failed && i < jm->ntargets; i++) {
            targets[i] = pvf_model_find_target(&j->ctx->runner.model, jm->targets[i]);
            if (targets[i] < 0)
                failed = pvf_err_set(&err, "%s: no fault target '%s'", j->ctx->dir, jm->targets[i]);
        }
    }
    /* The campaign's choice, or the worker's --naive for every campaign. */
    e->exec.naive = jm->naive || c->cfg->naive;
    if (!failed) {
        /* A RESULT without records says the trials start now: the progress
         * deadline counts from here, not from the lease (loading the model
         * or waiting behind another job is no stuck trial), and so does the
         * blame for a death. The trials wait for its ACK, or a trial that
         * kills the process at once would take the word with it. */
        atomic_store(&j->started_ms, (long long)(pvf_now() * 1000));
        batch *go = new_batch(j, 0);
        if (go) {
            push_batch(e, go);
            pthread_mutex_lock(&c->qlock);
            while (!atomic_load(&j->start_acked) && !atomic_load(&j->cancel) && !c->quit)
                pthread_cond_wait(&c->qcond, &c->qlock);
            pthread_mutex_unlock(&c->qlock);
        }
    }
    e->batch = b;
    e->seq = seq;
    if (!failed)
        failed = run_guarded(e, j, targets, &fm, order, &err);
    free(targets);
    free(order);
    b = e->batch;
    e->batch = NULL;
    if (!b)
        return;
    b->final = 1;
    if (failed)
        snprintf(b->error, sizeof b->error, "%s", err.msg);
    push_batch(e, b);
}

static void *executor_main(void *arg) {
    executor *e = arg;
    client *c = e->c;
    pvf_err err;
    if (pvf_guard_thread_init(&e->guard, &err))
        log_line("executor %d: %s: a stack overflow in a trial is not caught", e->index, err.msg);
    /* after a crash the worker reports it and leaves within DRAIN_SECONDS
     * and a BYE; past this, whatever holds it up, it ends */
    e->guard.exit_after = (unsigned)DRAIN_SECONDS + 30;
    for (;;) {
        pthread_mutex_lock(&c->qlock);
        while (!c->queue && !c->quit && !c->crash.sig)
            pthread_cond_wait(&c->qcond, &c->qlock);
        /* After a crash the process may hold broken state: no more trials. */
        if ((c->quit && !c->queue) || c->crash.sig) {
            pthread_mutex_unlock(&c->qlock);
            break;
        }
        job *j = c->queue;
        c->queue = j->next;
        if (!c->queue)
            c->queue_tail = NULL;
        e->current = j;
        pthread_mutex_unlock(&c->qlock);
        run_job(e, j);
        pthread_mutex_lock(&c->qlock);
        e->current = NULL;
        pthread_mutex_unlock(&c->qlock);
        pvf_msg_free(&j->msg);
        free(j);
    }
    pvf_guard_thread_free(&e->guard);
    return NULL;
}

/* ---- socket ----------------------------------------------------------- */

static int send_msg(client *c, const pvf_msg *m) {
    uint8_t *body;
    size_t len;
    pvf_err err;
    if (pvf_msg_encode(m, &body, &len, &err)) {
        log_line("cannot encode %s: %s", pvf_msg_type_name(m->type), err.msg);
        return -1;
    }
    int rc = -1;
    if (zmq_send(c->sock, PVF_PROTO_HEADER, strlen(PVF_PROTO_HEADER), ZMQ_SNDMORE | ZMQ_DONTWAIT) >=
        0)
        rc = zmq_send(c->sock, body, len, ZMQ_DONTWAIT) >= 0 ? 0 : -1;
    free(body);
    if (rc == 0)
        c->last_sent = pvf_now();
    return rc;
}

static int send_raw(client *c, const uint8_t *body, size_t len) {
    if (zmq_send(c->sock, PVF_PROTO_HEADER, strlen(PVF_PROTO_HEADER), ZMQ_SNDMORE | ZMQ_DONTWAIT) <
            0 ||
        zmq_send(c->sock, body, len, ZMQ_DONTWAIT) < 0)
        return -1;
    c->last_sent = pvf_now();
    return 0;
}

static int open_socket(client *c, pvf_err *err) {
    c->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!c->sock)
        return pvf_err_set(err, "cannot create a socket: %s", zmq_strerror(errno));
    int64_t maxmsg = PVF_PROTO_MAX_TRANSPORT;
    int zero = 0, ivl = 1000, ivl_max = 32000, hwm = 10000;
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    zmq_setsockopt(c->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    const pvf_client_config *cfg = c->cfg;
    if (cfg->server_key) {
        if (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, cfg->server_key, 40) ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, cfg->public_key, 40) ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, cfg->secret_key, 40))
            return pvf_err_set(err, "CURVE keys rejected: %s", zmq_strerror(errno));
    }
    if (zmq_connect(c->sock, cfg->endpoint))
        return pvf_err_set(err, "%s: cannot connect: %s", cfg->endpoint, zmq_strerror(errno));
    return 0;
}

static void say_hello(client *c) {
    pvf_msg m = {.type = PVF_MSG_HELLO};
    m.u.hello.version = PVF_PROTO_VERSION;
    m.u.hello.name = c->name;
    m.u.hello.executors = (uint32_t)c->nex;
    m.u.hello.session = c->session;
    send_msg(c, &m);
    pvf_msg r = {.type = PVF_MSG_READY};
    r.u.ready.slots = c->draining ? 0 : (uint32_t)c->nex;
    send_msg(c, &r);
    for (pending *p = c->unacked; p; p = p->next)
        p->sent = send_raw(c, p->body, p->len) == 0;
}

/* Jobs queued but not started belong to a lease the coordinator will
 * reissue; running ones finish and report. */
static void drop_queued(client *c) {
    pthread_mutex_lock(&c->qlock);
    job *j = c->queue;
    c->queue = c->queue_tail = NULL;
    pthread_mutex_unlock(&c->qlock);
    while (j) {
        job *next = j->next;
        pvf_msg_free(&j->msg);
        free(j);
        j = next;
    }
    for (job *w = c->waiting; w;) {
        job *next = w->next;
        pvf_msg_free(&w->msg);
        free(w);
        w = next;
    }
    c->waiting = NULL;
    if (c->fetch.active) {
        close(c->fetch.fd);
        unlink(c->fetch.path);
        c->fetch.active = 0;
    }
}

static int reconnect(client *c, pvf_err *err) {
    zmq_close(c->sock);
    c->sock = NULL;
    drop_queued(c);
    if (open_socket(c, err))
        return -1;
    say_hello(c);
    c->last_heard = pvf_now();
    return 0;
}

static void enqueue(client *c, job *j) {
    j->next = NULL;
    pthread_mutex_lock(&c->qlock);
    if (c->queue_tail)
        c->queue_tail->next = j;
    else
        c->queue = j;
    c->queue_tail = j;
    pthread_cond_signal(&c->qcond);
    pthread_mutex_unlock(&c->qlock);
}

static void fetch_next(client *c) {
    if (c->fetch.active)
        return;
    for (job *w = c->waiting; w; w = w->next) {
        uint64_t size;
        const pvf_sha256 *sha = job_missing(c, w, &size);
        if (!sha)
            continue;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/sha256", c->cache);
        mkdir_p(dir);
        /* A private .part name: local workers share one cache. */
        char final[PATH_MAX - 32];
        artifact_path(c, sha, final, sizeof final);
        snprintf(c->fetch.path, sizeof c->fetch.path, "%s.part.%d", final, (int)getpid());
        c->fetch.fd = open(c->fetch.path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (c->fetch.fd < 0) {
            log_line("%s: cannot create: %s", c->fetch.path, strerror(errno));
            return;
        }
        c->fetch.active = 1;
        c->fetch.sha = *sha;
        c->fetch.off = 0;
        c->fetch.total = size;
        break;
    }
    if (!c->fetch.active)
        return;
    pvf_msg m = {.type = PVF_MSG_FETCH};
    m.u.fetch.sha = c->fetch.sha;
    m.u.fetch.off = c->fetch.off;
    m.u.fetch.len = PVF_PROTO_CHUNK;
    send_msg(c, &m);
    c->fetch.asked_at = pvf_now();
}

/* Moves waiting jobs whose artifacts are all present to the queue. */
static void release_waiting(client *c) {
    job **pp = &c->waiting;
    while (*pp) {
        job *j = *pp;
        uint64_t size;
        if (job_missing(c, j, &size)) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        enqueue(c, j);
    }
    fetch_next(c);
}

static void on_artifact(client *c, const pvf_msg *m) {
    if (!c->fetch.active || memcmp(m->u.artifact.sha.b, c->fetch.sha.b, 32) != 0 ||
        m->u.artifact.off != c->fetch.off || m->u.artifact.total != c->fetch.total)
        return; /* stale or unasked: ignore */
    if (m->u.artifact.len == 0 && c->fetch.off < c->fetch.total) {
        log_line("coordinator has no artifact of %" PRIu64 " bytes asked for", c->fetch.total);
        return;
    }
    if (pwrite(c->fetch.fd, m->u.artifact.data, m->u.artifact.len, (off_t)c->fetch.off) !=
        (ssize_t)m->u.artifact.len) {
        log_line("%s: cannot write: %s", c->fetch.path, strerror(errno));
        return;
    }
    c->fetch.off += m->u.artifact.len;
    if (c->fetch.off < c->fetch.total) {
        pvf_msg f = {.type = PVF_MSG_FETCH};
        f.u.fetch.sha = c->fetch.sha;
        f.u.fetch.off = c->fetch.off;
        f.u.fetch.len = PVF_PROTO_CHUNK;
        send_msg(c, &f);
        c->fetch.asked_at = pvf_now();
        return;
    }
    close(c->fetch.fd);
    c->fetch.active = 0;
    pvf_sha256 got;
    pvf_err err;
    char final[PATH_MAX];
    artifact_path(c, &c->fetch.sha, final, sizeof final);
    if (pvf_sha256_file(c->fetch.path, &got, &err) || memcmp(got.b, c->fetch.sha.b, 32) != 0) {
        log_line("%s: fetched bytes do not match their sha256; fetching again", c->fetch.path);
        unlink(c->fetch.path);
    } else if (rename(c->fetch.path, final)) {
        log_line("%s: cannot rename: %s", final, strerror(errno));
    }
    release_waiting(c);
}

static void on_job(client *c, pvf_msg *m) {
    job *j = calloc(1, sizeof *j);
    if (!j) {
        pvf_msg_free(m);
        return;
    }
    j->msg = *m; /* takes ownership */
    atomic_init(&j->cancel, 0);
    if (c->draining) {
        /* Returned: a final RESULT with no trials puts them back in the pool. */
        pvf_msg r = {.type = PVF_MSG_RESULT};
        r.u.result.job = m->u.job.job;
        r.u.result.attempt = m->u.job.attempt;
        r.u.result.epoch = m->u.job.epoch;
        r.u.result.final = 1;
        send_msg(c, &r);
        pvf_msg_free(&j->msg);
        free(j);
        return;
    }
    if (!c->cfg->fake) {
        pvf_err err;
        j->ctx = job_context(c, j, &err);
        if (!j->ctx) {
            pvf_msg r = {.type = PVF_MSG_RESULT};
            r.u.result.job = m->u.job.job;
            r.u.result.attempt = m->u.job.attempt;
            r.u.result.epoch = m->u.job.epoch;
            r.u.result.final = 1;
            r.u.result.error = err.msg;
            send_msg(c, &r);
            pvf_msg_free(&j->msg);
            free(j);
            return;
        }
        j->next = c->waiting;
        c->waiting = j;
        release_waiting(c);
        return;
    }
    enqueue(c, j);
}

static void on_cancel(client *c, uint64_t id) {
    pthread_mutex_lock(&c->qlock);
    for (int i = 0; i < c->nex; i++)
        if (c->ex[i].current && c->ex[i].current->msg.u.job.job == id) {
            atomic_store(&c->ex[i].current->cancel, 1);
            if (c->ex[i].current->cancelled_at == 0)
                c->ex[i].current->cancelled_at = pvf_now();
        }
    for (job *j = c->queue; j; j = j->next)
        if (j->msg.u.job.job == id)
            atomic_store(&j->cancel, 1);
    pthread_cond_broadcast(&c->qcond); /* an executor may wait for its start's ACK */
    pthread_mutex_unlock(&c->qlock);
}

static void on_ack(client *c, const pvf_msg *m) {
    if (m->u.ack.seq == 0) { /* a job's start: its trials may run */
        pthread_mutex_lock(&c->qlock);
        for (int i = 0; i < c->nex; i++) {
            job *j = c->ex[i].current;
            if (j && j->msg.u.job.job == m->u.ack.job && j->msg.u.job.attempt == m->u.ack.attempt)
                atomic_store(&j->start_acked, 1);
        }
        pthread_cond_broadcast(&c->qcond);
        pthread_mutex_unlock(&c->qlock);
    }
    for (pending **pp = &c->unacked; *pp; pp = &(*pp)->next) {
        pending *p = *pp;
        if (p->job == m->u.ack.job && p->attempt == m->u.ack.attempt && p->seq == m->u.ack.seq) {
            *pp = p->next;
            free(p->body);
            free(p);
            return;
        }
    }
}

/* Returns 1 when the coordinator told the worker to stop. */
static int on_message(client *c, zmq_msg_t *frames, int nframes) {
    pvf_msg m;
    pvf_err err;
    if (nframes != 2 || !pvf_proto_header_ok(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]))) {
        log_line("dropped a message that is not %s", PVF_PROTO_HEADER);
        return 0;
    }
    if (pvf_msg_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), &m, &err)) {
        log_line("dropped a bad message: %s", err.msg);
        return 0;
    }
    c->last_heard = pvf_now();
    int stop = 0;
    switch (m.type) {
    case PVF_MSG_JOB:
        on_job(c, &m);
        return 0; /* m now owned by the job */
    case PVF_MSG_ACK:
        on_ack(c, &m);
        break;
    case PVF_MSG_CANCEL:
        on_cancel(c, m.u.cancel.job);
        break;
    case PVF_MSG_ARTIFACT:
        on_artifact(c, &m);
        break;
    case PVF_MSG_DISCONNECT:
        log_line("coordinator says: %s", m.u.disconnect.reason);
        if (strncmp(m.u.disconnect.reason, "stop", 4) == 0)
            stop = 1;
        else {
            pvf_err rerr;
            if (reconnect(c, &rerr))
                log_line("%s", rerr.msg);
        }
        break;
    case PVF_MSG_HEARTBEAT:
        break;
    default:
        log_line("dropped an unexpected %s", pvf_msg_type_name(m.type));
        break;
    }
    pvf_msg_free(&m);
    return stop;
}

static void drain_socket(client *c, int *stop) {
    while (c->sock) {
        zmq_msg_t frames[2];
        int n = 0, more = 1, extra = 0;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, c->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&part);
                break;
            }
            more = zmq_msg_more(&part);
            if (n < 2)
                frames[n++] = part;
            else {
                extra = 1;
                zmq_msg_close(&part);
            }
        }
        if (n == 0)
            return;
        if (on_message(c, frames, extra ? 3 : n) == 1)
            *stop = 1;
        for (int i = 0; i < n; i++)
            zmq_msg_close(&frames[i]);
    }
}

static void on_batch(client *c, batch *b) {
    pvf_msg m = {.type = PVF_MSG_RESULT};
    m.u.result.job = b->job;
    m.u.result.attempt = b->attempt;
    m.u.result.epoch = b->epoch;
    m.u.result.seq = b->seq;
    m.u.result.final = b->final;
    m.u.result.trials = b->trials;
    m.u.result.ntrials = b->n;
    m.u.result.error = b->error[0] ? b->error : NULL;
    pending *p = calloc(1, sizeof *p);
    pvf_err err;
    if (p && pvf_msg_encode(&m, &p->body, &p->len, &err) == 0) {
        p->job = b->job;
        p->attempt = b->attempt;
        p->seq = b->seq;
        p->sent = send_raw(c, p->body, p->len) == 0;
        pending **tail = &c->unacked;
        while (*tail)
            tail = &(*tail)->next;
        *tail = p;
    } else {
        free(p);
    }
    free(b->trials);
    free(b);
}

static void drain_executors(client *c) {
    batch *b;
    while (zmq_recv(c->pull, &b, sizeof b, ZMQ_DONTWAIT) == (int)sizeof b)
        on_batch(c, b);
}

static int executors_idle(client *c) {
    pthread_mutex_lock(&c->qlock);
    int busy = c->queue != NULL;
    for (int i = 0; i < c->nex; i++)
        busy |= c->ex[i].current != NULL;
    pthread_mutex_unlock(&c->qlock);
    return !busy;
}

static uint32_t busy_count(client *c) {
    uint32_t n = 0;
    pthread_mutex_lock(&c->qlock);
    for (int i = 0; i < c->nex; i++)
        n += c->ex[i].current != NULL;
    pthread_mutex_unlock(&c->qlock);
    return n;
}

/* Cancels every job an executor is running: each leaves after its trial. */
static void cancel_running(client *c) {
    pthread_mutex_lock(&c->qlock);
    for (int i = 0; i < c->nex; i++)
        if (c->ex[i].current)
            atomic_store(&c->ex[i].current->cancel, 1);
    pthread_cond_broadcast(&c->qcond);
    pthread_mutex_unlock(&c->qlock);
}

/* The last word. The socket lingers 0 (a dead coordinator must not hold
 * us), but this message should get out: it may take up to linger_ms. */
static void say_bye(client *c, char *reason, int linger_ms) {
    pvf_msg bye = {.type = PVF_MSG_BYE};
    bye.u.bye.reason = reason;
    if (send_msg(c, &bye))
        log_line("could not say BYE: %s", zmq_strerror(errno));
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
}

/* An executor that has not left a cancelled job `grace` seconds after both
 * the CANCEL and the start of its trials is stuck in a trial: a thread cannot
 * be stopped, the process can. Loading the model always ends. */
static int stuck_executor(client *c, double now, double grace) {
    int stuck = 0;
    pthread_mutex_lock(&c->qlock);
    for (int i = 0; i < c->nex; i++) {
        job *j = c->ex[i].current;
        if (!j || j->cancelled_at == 0)
            continue;
        double started = (double)atomic_load(&j->started_ms) / 1000;
        double since = started > j->cancelled_at ? started : j->cancelled_at;
        stuck |= started > 0 && now - since > grace;
    }
    pthread_mutex_unlock(&c->qlock);
    return stuck;
}

static void client_free(client *c) {
    pthread_mutex_lock(&c->qlock);
    c->quit = 1;
    pthread_cond_broadcast(&c->qcond);
    pthread_mutex_unlock(&c->qlock);
    if (c->stuck)
        return; /* a thread is stuck in a trial: the process exit ends it */
    for (int i = 0; i < c->nex; i++)
        if (c->ex[i].thread)
            pthread_join(c->ex[i].thread, NULL);
    if (c->pull)
        drain_executors(c); /* frees what they pushed last */
    if (c->sock)
        drop_queued(c);
    for (int i = 0; i < c->nex; i++) {
        if (c->ex[i].ctx) {
            pvf_exec_free(&c->ex[i].exec);
            free(c->ex[i].out);
        }
        if (c->ex[i].push)
            zmq_close(c->ex[i].push);
    }
    free(c->ex);
    while (c->unacked) {
        pending *p = c->unacked;
        c->unacked = p->next;
        free(p->body);
        free(p);
    }
    while (c->ctxs) {
        model_ctx *m = c->ctxs;
        c->ctxs = m->next;
        if (m->state == 2)
            pvf_runner_close(&m->runner);
        pthread_mutex_destroy(&m->lock);
        pthread_cond_destroy(&m->cond);
        free(m);
    }
    if (c->pull)
        zmq_close(c->pull);
    if (c->sock)
        zmq_close(c->sock);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    pthread_mutex_destroy(&c->qlock);
    pthread_cond_destroy(&c->qcond);
}

int pvf_client_run(const pvf_client_config *cfg, pvf_err *err) {
    client cl = {.cfg = cfg}, *c = &cl;
    pthread_mutex_init(&c->qlock, NULL);
    pthread_cond_init(&c->qcond, NULL);
    if (sodium_init() < 0)
        return pvf_err_set(err, "libsodium cannot start");
    if (cfg->name)
        snprintf(c->name, sizeof c->name, "%s", cfg->name);
    else {
        char host[200] = "worker";
        gethostname(host, sizeof host - 1);
        snprintf(c->name, sizeof c->name, "%s:%d", host, (int)getpid());
    }
    do
        randombytes_buf(&c->session, sizeof c->session);
    while (c->session == 0);
    c->crash_at.stratum = c->hang_at.stratum = -1;
    const char *hook = getenv("PVF_TEST_CRASH_TRIAL");
    if (hook && sscanf(hook, "%" SCNd64 ":%" SCNu64, &c->crash_at.stratum, &c->crash_at.trial) != 2)
        c->crash_at.stratum = -1;
    hook = getenv("PVF_TEST_HANG_TRIAL");
    if (hook && sscanf(hook, "%" SCNd64 ":%" SCNu64, &c->hang_at.stratum, &c->hang_at.trial) != 2)
        c->hang_at.stratum = -1;
    if (cfg->cache_dir)
        snprintf(c->cache, sizeof c->cache, "%s", cfg->cache_dir);
    else
        pvf_client_cache_default(c->cache, sizeof c->cache);
    if (!cfg->fake && mkdir_p(c->cache))
        return pvf_err_set(err, "%s: cannot create the artifact cache: %s", c->cache,
                           strerror(errno));
    /* Fake trials run no model: nothing to guard (and benchmarks run many
     * fake workers in one process). */
    if (!cfg->fake && pvf_guard_install(err))
        return -1;
    int rc = -1;
    c->zctx = zmq_ctx_new();
    c->pull = c->zctx ? zmq_socket(c->zctx, ZMQ_PULL) : NULL;
    char inproc[64];
    snprintf(inproc, sizeof inproc, "inproc://executors-%p", (void *)c);
    if (!c->pull || zmq_bind(c->pull, inproc)) {
        pvf_err_set(err, "cannot create the executor channel: %s", zmq_strerror(errno));
        goto out;
    }
    c->nex = cfg->executors > 0 ? cfg->executors : 1;
    c->ex = calloc((size_t)c->nex, sizeof *c->ex);
    if (!c->ex) {
        pvf_err_set(err, "out of memory");
        goto out;
    }
    for (int i = 0; i < c->nex; i++) {
        c->ex[i].c = c;
        c->ex[i].index = i;
        c->ex[i].push = zmq_socket(c->zctx, ZMQ_PUSH);
        if (!c->ex[i].push || zmq_connect(c->ex[i].push, inproc) ||
            pthread_create(&c->ex[i].thread, NULL, executor_main, &c->ex[i])) {
            pvf_err_set(err, "cannot start executor %d", i);
            goto out;
        }
    }
    if (open_socket(c, err))
        goto out;
    say_hello(c);
    c->last_heard = pvf_now();
    c->backoff_ms = 1000;
    const double hb = (cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 1000) / 1000.0;
    const int dead_after = cfg->dead_after > 0 ? cfg->dead_after : 5;
    double reconnect_at = 0;
    int stop = 0;
    for (;;) {
        zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->pull, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, (long)(hb * 250)) < 0 && errno != EINTR) {
            pvf_err_set(err, "poll: %s", zmq_strerror(errno));
            goto out;
        }
        drain_executors(c);
        drain_socket(c, &stop);
        if (!c->sock && open_socket(c, err))
            goto out;
        double now = pvf_now();
        if (cfg->abort && *cfg->abort) {
            /* Leave now, but say so: the coordinator returns our leases at
             * once instead of waiting for our silence. */
            log_line("leaving without finishing running jobs");
            cancel_running(c);
            say_bye(c, "aborted", 500);
            break;
        }
        if (stop)
            break;
        if (cfg->stop && *cfg->stop && !c->draining) {
            c->draining = 1;
            c->drain_started = now;
            drop_queued(c);
            pvf_msg r = {.type = PVF_MSG_READY}; /* no more credit */
            send_msg(c, &r);
            log_line("draining: finishing running jobs");
        }
        pthread_mutex_lock(&c->qlock);
        const int crash_sig = c->crash.sig;
        pthread_mutex_unlock(&c->qlock);
        if (crash_sig && !c->draining) {
            /* The crash record goes out like any other; the other executors
             * stop after their trial; then BYE and exit. */
            log_line("a trial crashed an executor (%s): reporting it, then leaving",
                     pvf_guard_signal_name(crash_sig));
            c->draining = 1;
            c->drain_started = now;
            drop_queued(c);
            cancel_running(c);
            pvf_msg r = {.type = PVF_MSG_READY};
            send_msg(c, &r);
        }
        if (c->draining &&
            ((executors_idle(c) && !c->unacked) || now - c->drain_started > DRAIN_SECONDS)) {
            drain_executors(c);
            say_bye(c, crash_sig ? "crashed" : "drained", 2000);
            break;
        }
        if (stuck_executor(c, now, hb * dead_after)) {
            c->stuck = 1;
            pvf_err_set(err, "an executor is stuck in a trial after its job was cancelled: "
                             "leaving so that a supervisor restarts the worker");
            goto out;
        }
        if (now - c->last_sent >= hb) {
            pvf_msg h = {.type = PVF_MSG_HEARTBEAT};
            uint32_t busy = busy_count(c);
            h.u.heartbeat.busy = busy;
            h.u.heartbeat.slots = c->draining ? 0 : (uint32_t)c->nex - busy;
            send_msg(c, &h);
        }
        for (pending *p = c->unacked; p; p = p->next)
            if (!p->sent)
                p->sent = send_raw(c, p->body, p->len) == 0;
        if (c->fetch.active && now - c->fetch.asked_at > FETCH_RETRY_SECONDS) {
            close(c->fetch.fd);
            unlink(c->fetch.path);
            c->fetch.active = 0;
            fetch_next(c);
        }
        if (now - c->last_heard > hb * dead_after) {
            if (reconnect_at == 0) {
                /* Silent coordinator: new socket after a backoff with jitter. */
                int jitter = (int)(randombytes_uniform((uint32_t)c->backoff_ms / 2 + 1));
                reconnect_at = now + (c->backoff_ms + jitter) / 1000.0;
                c->backoff_ms = c->backoff_ms * 2 > 32000 ? 32000 : c->backoff_ms * 2;
            } else if (now >= reconnect_at) {
                reconnect_at = 0;
                log_line("coordinator silent for %.1f s: connecting again", now - c->last_heard);
                if (reconnect(c, err))
                    goto out;
            }
        } else if (now - c->last_heard < hb) {
            c->backoff_ms = 1000;
            reconnect_at = 0;
        }
    }
    rc = 0;
    if (c->crash.sig) /* set once, and seen under qlock above */
        rc = pvf_err_set(err,
                         "trial %" PRIu64 " of stratum %" PRIu64 " crashed an executor (%s); "
                         "reported as a crash outcome, leaving so that a supervisor restarts "
                         "the worker",
                         c->crash.trial, c->crash.stratum, pvf_guard_signal_name(c->crash.sig));
out:
    client_free(c);
    if (!cfg->fake)
        pvf_guard_uninstall();
    return rc;
}
