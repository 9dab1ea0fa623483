/* coordinator.c - the loop: sockets, workers, leases, dispatch. */
#include "co.h"

#include "pvf_stats.h"
#include "trial.h"

#include <uv.h>
#include <zmq.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ZMQ_ZAP_ENFORCE_DOMAIN_ 93     /* draft in 4.3.4's header, handled by the library */
#define DRAIN_BUDGET            512    /* messages per wake-up before yielding to timers */
#define TIMER_MS                100    /* the coordinator's tick: heartbeats, estimates */
#define BACKLOG_LIMIT           400000 /* rows waiting for the database: stop leasing */
#define JOB_SECONDS             1.0    /* work per job a lease aims at */
#define MAX_FAILED_JOBS         10     /* job errors before a campaign is given up */
#define MAX_SILENT_DEATHS       8      /* deaths in one trial before a campaign is given up */

typedef struct worker {
    char name[256];
    uint8_t rid[256];
    size_t rid_len;
    uint32_t executors;
    uint64_t session; /* its HELLO's (0: not given) */
    int leases;
    uint64_t last_seen, last_sent; /* ms, uv_now */
    struct worker *next;
} worker;

typedef struct job {
    uint64_t id;
    co_campaign *c;
    co_stratum *s;
    uint64_t lo, hi;
    uint32_t attempt;
    int kills, stuck; /* the blame its range came with (co_range) */
    worker *w;        /* NULL once the lease ended */
    uint8_t *got;
    uint64_t ngot;
    int started; /* its worker said the trials started (a RESULT without records) */
    uint64_t leased_ms, progress_ms;
    struct job *next;
} job;

typedef struct coord {
    const pvf_coord_config *cfg;
    uv_loop_t loop;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_idle_t idle;
    uv_async_t async;
    int idle_on;
    void *zctx, *sock;
    int own_zctx;
    co_zap *zap;
    co_writer *writer;
    worker *workers;
    job *jobs;
    co_campaign *campaigns;
    uint64_t job_seq;
    int64_t epoch_tag; /* job ids carry it: ids from an earlier run are unknown */
    co_range *pending_loads;
    uint64_t last_flush, last_progress, last_dispatch_log;
    uint64_t last_tick; /* ms, uv_now: the timer's last run */
    int done_exit;      /* exit_when_done and the campaign is finished and written */
    int waiting_final;  /* final writes queued, waiting for them */
    pvf_err err;
    int failed;
} coord;

static void clog_(const coord *co, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void clog_(const coord *co, const char *fmt, ...) {
    if (co->cfg->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("pvf coordinator: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t now_ms(coord *co) {
    uv_update_time(&co->loop);
    return uv_now(&co->loop);
}

/* ---- sending ---------------------------------------------------------- */

static void process_socket(coord *co);
static void on_idle(uv_idle_t *h);

static int send_to(coord *co, const uint8_t *rid, size_t rid_len, const pvf_msg *m) {
    uint8_t *body;
    size_t len;
    pvf_err err;
    if (pvf_msg_encode(m, &body, &len, &err)) {
        clog_(co, "cannot encode %s: %s", pvf_msg_type_name(m->type), err.msg);
        return -1;
    }
    int rc = 0;
    if (zmq_send(co->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(co->sock, PVF_PROTO_HEADER, strlen(PVF_PROTO_HEADER), ZMQ_SNDMORE | ZMQ_DONTWAIT) <
            0 ||
        zmq_send(co->sock, body, len, ZMQ_DONTWAIT) < 0)
        rc = -1; /* EHOSTUNREACH: the peer is gone; heartbeats will tell */
    free(body);
    return rc;
}

static int send_worker(coord *co, worker *w, const pvf_msg *m) {
    w->last_sent = now_ms(co);
    return send_to(co, w->rid, w->rid_len, m);
}

/* ---- jobs ------------------------------------------------------------- */

static job *find_job(coord *co, uint64_t id) {
    for (job *j = co->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static void queue_job_row(coord *co, const job *j, const char *state) {
    co_write *it = calloc(1, sizeof *it);
    if (!it)
        return;
    it->kind = CO_W_JOB;
    it->campaign = j->c->id;
    it->job = j->id;
    it->stratum = j->s->index;
    it->lo = j->lo;
    it->hi = j->hi;
    it->attempt = j->attempt;
    it->epoch = j->c->epoch;
    it->state = state;
    if (j->w)
        snprintf(it->worker, sizeof it->worker, "%s", j->w->name);
    co_writer_push(co->writer, it);
}

/* How a lease ended, for the blame its unreported trials carry. */
enum { END_CLEAN, END_DIED, END_STUCK };

/* Ends a lease: what the job did not report goes back to its stratum. */
static void end_job(coord *co, job *j, const char *state, int how) {
    if (j->w) {
        j->w->leases--;
        j->w = NULL;
    }
    j->s->inflight--;
    /* A lease that reported nothing (a worker reports its first trial at
     * once) died or hung in its first trial; one that made progress did so
     * somewhere later, maybe by chance (a worker killed for other reasons):
     * count it once. One whose trials never started (the worker died
     * loading the model) points at none. */
    co_range blame = {.kills = j->kills, .stuck = j->stuck};
    if (how != END_CLEAN && j->started) {
        blame.kills = j->ngot ? 1 : j->kills + 1;
        blame.stuck = j->ngot ? 0 : j->stuck;
        blame.stuck += how == END_STUCK;
    }
    uint64_t t = j->lo;
    while (t < j->hi) {
        while (t < j->hi && j->got[(t - j->lo) / 8] & (1u << ((t - j->lo) % 8)))
            t++;
        uint64_t lo = t;
        while (t < j->hi && !(j->got[(t - j->lo) / 8] & (1u << ((t - j->lo) % 8))))
            t++;
        if (lo < t)
            co_stratum_requeue(j->s, (co_range){lo, t, blame.kills, blame.stuck});
    }
    queue_job_row(co, j, state);
    for (job **pp = &co->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    free(j->got);
    free(j);
}

static void cancel_job(coord *co, job *j) {
    if (j->w) {
        pvf_msg m = {.type = PVF_MSG_CANCEL};
        m.u.cancel.job = j->id;
        send_worker(co, j->w, &m);
    }
    end_job(co, j, "cancelled", END_CLEAN);
}

/* ---- estimates -------------------------------------------------------- */

static void queue_estimates(coord *co, co_campaign *c, int all) {
    int n = 0;
    for (int i = 0; i < c->nstrata; i++)
        n += all || c->strata[i].dirty;
    if (n == 0)
        return;
    co_write *it = calloc(1, sizeof *it);
    if (!it || !(it->est = calloc((size_t)n, sizeof *it->est))) {
        free(it);
        return;
    }
    it->kind = CO_W_ESTIMATES;
    const double z = PVF_Z95;
    for (int i = 0; i < c->nstrata; i++) {
        co_stratum *s = &c->strata[i];
        if (!all && !s->dirty)
            continue;
        s->dirty = 0;
        co_estimate_row *e = &it->est[it->nest++];
        e->campaign = c->id;
        e->stratum = s->index;
        e->done = s->done;
        e->used = s->cs.t;
        co_stratum_interval(s, &e->mean, &e->lo, &e->hi);
        pvf_wilson(e->mean, (int64_t)s->cs.t, z, &e->wlo, &e->whi);
        e->stopped = s->stopped;
        e->converged = s->converged;
        e->reason = s->stop_reason;
    }
    co_writer_push(co->writer, it);
}

static void campaign_totals(const co_campaign *c, pvf_coord_progress *p) {
    memset(p, 0, sizeof *p);
    p->campaign = c->id;
    p->strata = c->nstrata;
    for (int i = 0; i < c->nstrata; i++) {
        const co_stratum *s = &c->strata[i];
        double mean, lo, hi;
        co_stratum_interval(s, &mean, &lo, &hi);
        p->strata_stopped += s->stopped;
        p->trials_done += s->done;
        p->trials_used += s->cs.t;
        p->pvf += s->weight * mean;
        p->lo += s->weight * lo;
        p->hi += s->weight * hi;
        /* Remaining: assume the stratum needs as many again as it has, at
         * least until its interval could meet the margin. */
        uint64_t more = s->stopped ? 0 : (s->cs.t < 100 ? 1000 : s->cs.t);
        if (!s->stopped && s->cs.t + more > s->max_trials)
            more = s->max_trials - s->cs.t;
        p->trials_planned += s->done + more;
    }
    p->done = c->finished;
}

static void finish_campaign(coord *co, co_campaign *c, const char *state, const char *error) {
    if (c->finished)
        return;
    c->finished = 1;
    for (job *j = co->jobs, *next; j; j = next) {
        next = j->next;
        if (j->c == c)
            cancel_job(co, j);
    }
    queue_estimates(co, c, 1);
    co_write *it = calloc(1, sizeof *it);
    if (it) {
        it->kind = CO_W_CAMPAIGN;
        it->campaign = c->id;
        it->epoch = c->epoch;
        it->state = state;
        if (error)
            snprintf(it->error, sizeof it->error, "%s", error);
        co_writer_push(co->writer, it);
    }
    pvf_coord_progress p;
    campaign_totals(c, &p);
    clog_(co, "campaign %" PRId64 " %s: %" PRIu64 " trials, PVF %.6g [%.6g, %.6g]%s%s", c->id,
          state, p.trials_done, p.pvf, p.lo, p.hi, error ? ": " : "", error ? error : "");
    if (co->cfg->exit_when_done && c->id == co->cfg->only_campaign)
        co->waiting_final = 1;
}

static void check_finished(coord *co, co_campaign *c) {
    if (c->finished)
        return;
    for (int i = 0; i < c->nstrata; i++)
        if (!c->strata[i].stopped)
            return;
    finish_campaign(co, c, "done", NULL);
}

/* ---- dispatch --------------------------------------------------------- */

static uint64_t job_size(const co_campaign *c, const co_stratum *s) {
    double per = c->job_seconds_per_trial;
    uint64_t n = per > 0 ? (uint64_t)(JOB_SECONDS / per) : 32;
    if (n < 8)
        n = 8;
    if (n > 4096)
        n = 4096;
    /* Early in a stratum, small jobs: the stopping point may be near. */
    uint64_t early = s->cs.t / 4 + 8;
    return n < early ? n : early;
}

static int lease(coord *co, worker *w, co_campaign *c, co_stratum *s) {
    co_range r;
    if (!co_stratum_take(s, job_size(c, s), &r))
        return 0;
    if (r.stuck >= 3 && r.hi - r.lo == 1) {
        /* This trial hung three workers: settle it as a crash outcome. (A
         * crash the worker sees comes as its own record, guard.h.) */
        co_write *it = calloc(1, sizeof *it);
        if (it && (it->rows = calloc(1, sizeof *it->rows))) {
            it->kind = CO_W_TRIALS;
            it->nrows = 1;
            it->rows[0] =
                (pvf_trial_row){.campaign = c->id,
                                .stratum = s->index,
                                .tensor = s->targets[0],
                                .rec = {.trial = r.lo, .value = 1.0, .flags = PVF_TRIAL_CRASHED},
                                .attempt = (uint32_t)r.kills};
            co_writer_push(co->writer, it);
        } else {
            free(it);
        }
        clog_(co,
              "campaign %" PRId64 " stratum %s trial %" PRIu64 " hung %d workers: "
              "recorded as a crash outcome",
              c->id, s->name, r.lo, r.stuck);
        co_stratum_complete(s, c, r.lo, 1.0);
        check_finished(co, c);
        return 1;
    }
    if (r.kills >= MAX_SILENT_DEATHS && r.hi - r.lo == 1) {
        /* Workers keep dying in this trial without a word: killed from
         * outside, or out of memory. No outcome can be told; stop rather
         * than loop forever. */
        char why[PVF_ERR_MAX];
        snprintf(why, sizeof why,
                 "stratum %s trial %" PRIu64 ": %d workers died running it without reporting a "
                 "crash (killed from outside? out of memory? see the worker logs)",
                 s->name, r.lo, r.kills);
        clog_(co, "campaign %" PRId64 " %s: cancelled", c->id, why);
        finish_campaign(co, c, "cancelled", why);
        return 1;
    }
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->got = calloc((size_t)((r.hi - r.lo + 7) / 8), 1))) {
        free(j);
        co_stratum_requeue(s, r);
        return 0;
    }
    j->id = ((uint64_t)co->epoch_tag << 40) | ++co->job_seq;
    j->c = c;
    j->s = s;
    j->lo = r.lo;
    j->hi = r.hi;
    j->kills = r.kills;
    j->stuck = r.stuck;
    j->attempt = (uint32_t)r.kills;
    j->w = w;
    j->leased_ms = j->progress_ms = now_ms(co);
    j->next = co->jobs;
    co->jobs = j;
    w->leases++;
    s->inflight++;
    pvf_msg m = {.type = PVF_MSG_JOB};
    m.u.job.job = j->id;
    m.u.job.attempt = j->attempt;
    m.u.job.epoch = (uint64_t)c->epoch;
    m.u.job.campaign = (uint64_t)c->id;
    m.u.job.deadline_ms = co->cfg->trial_deadline_ms;
    m.u.job.files = c->files;
    m.u.job.nfiles = c->nfiles;
    m.u.job.eval_sha = c->eval_sha;
    m.u.job.eval_size = c->eval_size;
    m.u.job.format = c->format;
    m.u.job.fault = s->fault;
    m.u.job.seed = c->seed;
    m.u.job.stratum = (uint64_t)s->index;
    m.u.job.targets = s->targets;
    m.u.job.ntargets = s->ntargets;
    m.u.job.lo = r.lo;
    m.u.job.hi = r.hi;
    m.u.job.naive = c->naive;
    m.u.job.threshold = c->threshold;
    send_worker(co, w, &m);
    queue_job_row(co, j, "leased");
    return 1;
}

static void rotate_to_back(coord *co, co_campaign *c) {
    co_campaign **pp = &co->campaigns;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    c->next = NULL;
    while (*pp)
        pp = &(*pp)->next;
    *pp = c;
}

static void dispatch(coord *co) {
    if (co_writer_backlog(co->writer) > BACKLOG_LIMIT)
        return; /* the database is behind (or away): no new work until it catches up */
    int progress = 1;
    while (progress) {
        progress = 0;
        for (worker *w = co->workers; w; w = w->next) {
            if (w->leases >= (int)w->executors)
                continue;
            for (co_campaign *c = co->campaigns; c; c = c->next) {
                if (c->finished || c->cancelled)
                    continue;
                int leased = 0;
                for (int k = 0; k < c->nstrata && !leased; k++) {
                    co_stratum *s = &c->strata[c->rr];
                    c->rr = (c->rr + 1) % c->nstrata;
                    if (co_stratum_wants(s))
                        leased = lease(co, w, c, s);
                }
                if (leased) {
                    rotate_to_back(co, c); /* campaigns take turns */
                    progress = 1;
                    break;
                }
            }
        }
    }
}

/* ---- workers ---------------------------------------------------------- */

static worker *find_worker_rid(coord *co, const uint8_t *rid, size_t len) {
    for (worker *w = co->workers; w; w = w->next)
        if (w->rid_len == len && memcmp(w->rid, rid, len) == 0)
            return w;
    return NULL;
}

static void drop_worker(coord *co, worker *w, int kill) {
    for (job *j = co->jobs, *next; j; j = next) {
        next = j->next;
        if (j->w == w)
            end_job(co, j, kill ? "lost" : "returned", kill ? END_DIED : END_CLEAN);
    }
    for (worker **pp = &co->workers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    free(w);
}

static void on_hello(coord *co, const uint8_t *rid, size_t rid_len, const pvf_msg *m,
                     const char *user) {
    if (m->u.hello.version != PVF_PROTO_VERSION) {
        pvf_msg d = {.type = PVF_MSG_DISCONNECT};
        d.u.disconnect.reason = "stop: protocol version mismatch";
        send_to(co, rid, rid_len, &d);
        return;
    }
    char name[256];
    /* With CURVE the name comes from the key (ZAP User-Id), never the payload alone. */
    if (user && *user)
        snprintf(name, sizeof name, "%s/%s", user, m->u.hello.name);
    else
        snprintf(name, sizeof name, "%s", m->u.hello.name);
    const uint64_t session = m->u.hello.session;
    int reconnected = 0;
    for (worker *w = co->workers; w; w = w->next)
        if (strcmp(w->name, name) == 0 ||
            (w->rid_len == rid_len && !memcmp(w->rid, rid, rid_len))) {
            /* The same worker again. From the same process (its session), a
             * reconnect: it dropped the jobs it had not started and its
             * running ones' records are not needed, so its leases are
             * returned, not counted as deaths (a coordinator stalled past
             * the workers' patience, again and again, would otherwise give
             * up a campaign over a healthy trial). Else restarted: its
             * leases died with it. */
            reconnected = session != 0 && w->session == session;
            drop_worker(co, w, !reconnected);
            break;
        }
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return;
    snprintf(w->name, sizeof w->name, "%s", name);
    memcpy(w->rid, rid, rid_len);
    w->rid_len = rid_len;
    w->executors = m->u.hello.executors ? m->u.hello.executors : 1;
    w->session = session;
    w->last_seen = now_ms(co);
    w->next = co->workers;
    co->workers = w;
    co_write *it = calloc(1, sizeof *it);
    if (it) {
        it->kind = CO_W_WORKER;
        snprintf(it->worker, sizeof it->worker, "%s", name);
        it->attempt = w->executors;
        co_writer_push(co->writer, it);
    }
    clog_(co, "worker %s %s with %u executors", name, reconnected ? "reconnected" : "joined",
          w->executors);
}

static co_campaign *find_campaign(coord *co, int64_t id) {
    for (co_campaign *c = co->campaigns; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static void on_result(coord *co, worker *w, const pvf_msg *m) {
    job *j = find_job(co, m->u.result.job);
    pvf_msg ack = {.type = PVF_MSG_ACK};
    ack.u.ack.job = m->u.result.job;
    ack.u.ack.attempt = m->u.result.attempt;
    ack.u.ack.seq = m->u.result.seq;
    if (!j) {
        /* A lease from before a restart, or already ended: those trials are
         * issued again, so these records are not needed. */
        if (!m->u.result.final) {
            pvf_msg c = {.type = PVF_MSG_CANCEL};
            c.u.cancel.job = m->u.result.job;
            send_worker(co, w, &c);
        }
        send_worker(co, w, &ack);
        return;
    }
    if (!m->u.result.ntrials && !m->u.result.final && !m->u.result.error) {
        /* The job's trials start now: its progress deadline counts from here
         * (the worker was loading the model, or busy with another job). */
        j->started = 1;
        j->progress_ms = now_ms(co);
        send_worker(co, w, &ack);
        return;
    }
    for (uint32_t i = 0; i < m->u.result.ntrials; i++) {
        const pvf_trial_rec *r = &m->u.result.trials[i];
        if (r->trial < j->lo || r->trial >= j->hi || r->target >= j->s->ntargets) {
            clog_(co,
                  "worker %s: RESULT for job %" PRIu64 " has a record outside its lease; "
                  "dropped",
                  w->name, j->id);
            return;
        }
    }
    co_write *it = calloc(1, sizeof *it);
    if (!it ||
        (m->u.result.ntrials && !(it->rows = calloc(m->u.result.ntrials, sizeof *it->rows)))) {
        free(it);
        return; /* not acknowledged: the worker sends it again */
    }
    it->kind = CO_W_TRIALS;
    snprintf(it->worker, sizeof it->worker, "%s", w->name);
    memcpy(it->rid, w->rid, w->rid_len);
    it->rid_len = w->rid_len;
    it->job = ack.u.ack.job;
    it->attempt = ack.u.ack.attempt;
    it->seq = ack.u.ack.seq;
    co_campaign *c = j->c;
    co_stratum *s = j->s;
    for (uint32_t i = 0; i < m->u.result.ntrials; i++) {
        const pvf_trial_rec *r = &m->u.result.trials[i];
        uint64_t off = r->trial - j->lo;
        if (!(j->got[off / 8] & (1u << (off % 8)))) {
            j->got[off / 8] |= (uint8_t)(1u << (off % 8));
            j->ngot++;
        }
        co_stratum_complete(s, c, r->trial, r->value);
        it->rows[it->nrows++] = (pvf_trial_row){.campaign = c->id,
                                                .stratum = s->index,
                                                .tensor = s->targets[r->target],
                                                .rec = *r,
                                                .worker = 0,
                                                .attempt = j->attempt};
    }
    co_writer_push(co->writer, it);
    uint64_t now = now_ms(co);
    if (m->u.result.ntrials) {
        j->started = 1;
        double per = (double)(now - j->progress_ms) / 1000.0 / m->u.result.ntrials;
        c->job_seconds_per_trial =
            c->job_seconds_per_trial > 0 ? 0.8 * c->job_seconds_per_trial + 0.2 * per : per;
        j->progress_ms = now;
    }
    if (m->u.result.error) {
        clog_(co, "worker %s: job %" PRIu64 " of campaign %" PRId64 " failed: %s", w->name, j->id,
              c->id, m->u.result.error);
        if (++c->failed_jobs >= MAX_FAILED_JOBS)
            finish_campaign(co, c, "cancelled", m->u.result.error);
    }
    if (m->u.result.final && find_job(co, ack.u.ack.job))
        end_job(co, j, "done", END_CLEAN);
    if (s->stopped)
        for (job *k = co->jobs, *next; k; k = next) {
            next = k->next;
            if (k->s == s)
                cancel_job(co, k); /* the stratum stopped: CANCEL its other leases */
        }
    check_finished(co, c);
}

static void on_fetch(coord *co, worker *w, const pvf_msg *m) {
    const char *path = NULL;
    uint64_t total = 0;
    char buf[4096];
    for (co_campaign *c = co->campaigns; c && !path; c = c->next) {
        for (uint32_t i = 0; i < c->nfiles && !path; i++)
            if (!memcmp(c->files[i].sha.b, m->u.fetch.sha.b, 32)) {
                snprintf(buf, sizeof buf, "%s/%s", c->model_dir, c->files[i].name);
                path = buf;
                total = c->files[i].size;
            }
        if (!path && !memcmp(c->eval_sha.b, m->u.fetch.sha.b, 32)) {
            path = c->eval_path;
            total = c->eval_size;
        }
    }
    pvf_msg a = {.type = PVF_MSG_ARTIFACT};
    a.u.artifact.sha = m->u.fetch.sha;
    a.u.artifact.off = m->u.fetch.off;
    a.u.artifact.total = total;
    uint8_t *data = NULL;
    if (path && m->u.fetch.off < total) {
        uint64_t len = total - m->u.fetch.off;
        if (len > m->u.fetch.len)
            len = m->u.fetch.len;
        if (len > PVF_PROTO_CHUNK)
            len = PVF_PROTO_CHUNK;
        data = malloc(len ? len : 1);
        int fd = open(path, O_RDONLY);
        if (data && fd >= 0 && pread(fd, data, len, (off_t)m->u.fetch.off) == (ssize_t)len) {
            a.u.artifact.data = data;
            a.u.artifact.len = (uint32_t)len;
        }
        if (fd >= 0)
            close(fd);
    }
    send_worker(co, w, &a);
    free(data);
}

static void on_message(coord *co, zmq_msg_t *f, int n) {
    const uint8_t *rid = zmq_msg_data(&f[0]);
    size_t rid_len = zmq_msg_size(&f[0]);
    if (rid_len > sizeof((worker *)0)->rid) {
        clog_(co, "dropped a message from a peer with a %zu-byte routing id (at most %zu)", rid_len,
              sizeof((worker *)0)->rid);
        return;
    }
    worker *w = find_worker_rid(co, rid, rid_len);
    /* the sender, for the lines about what was dropped */
    char from[80] = "an unknown peer";
    if (w)
        snprintf(from, sizeof from, "worker %.64s", w->name);
    if (n != 3) {
        clog_(co, "dropped a message of %d frames from %s", n, from);
        return;
    }
    if (!pvf_proto_header_ok(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]))) {
        clog_(co, "dropped a message without the %s frame from %s", PVF_PROTO_HEADER, from);
        return;
    }
    pvf_msg m;
    pvf_err err;
    if (pvf_msg_decode(zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), &m, &err)) {
        clog_(co, "dropped a bad message from %s: %s", from, err.msg);
        return;
    }
    if (w)
        w->last_seen = now_ms(co);
    switch (m.type) {
    case PVF_MSG_HELLO:
        on_hello(co, rid, rid_len, &m, zmq_msg_gets(&f[2], "User-Id"));
        break;
    case PVF_MSG_READY:
    case PVF_MSG_HEARTBEAT:
        break;
    case PVF_MSG_RESULT:
        if (w)
            on_result(co, w, &m);
        break;
    case PVF_MSG_FETCH:
        if (w)
            on_fetch(co, w, &m);
        break;
    case PVF_MSG_BYE:
        if (w) {
            clog_(co, "worker %s left: %s", w->name, m.u.bye.reason);
            drop_worker(co, w, 0);
            w = NULL;
        }
        break;
    default:
        clog_(co, "dropped an unexpected %s", pvf_msg_type_name(m.type));
        break;
    }
    if (!w && m.type != PVF_MSG_HELLO && m.type != PVF_MSG_BYE) {
        pvf_msg d = {.type = PVF_MSG_DISCONNECT};
        d.u.disconnect.reason = "unknown worker: say HELLO";
        send_to(co, rid, rid_len, &d);
    }
    pvf_msg_free(&m);
}

/* Drains the socket (edge-triggered ZMQ_FD: read until ZMQ_EVENTS has no
 * POLLIN); a full budget continues from the idle handle. */
static void process_socket(coord *co) {
    for (int budget = DRAIN_BUDGET; budget > 0; budget--) {
        int events = 0;
        size_t sz = sizeof events;
        if (zmq_getsockopt(co->sock, ZMQ_EVENTS, &events, &sz) || !(events & ZMQ_POLLIN)) {
            if (co->idle_on) {
                uv_idle_stop(&co->idle);
                co->idle_on = 0;
            }
            return;
        }
        zmq_msg_t f[4];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, co->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&part);
                break;
            }
            more = zmq_msg_more(&part);
            if (n < 4)
                f[n++] = part;
            else {
                zmq_msg_close(&part);
                n = 5; /* too many frames: dropped below */
            }
        }
        if (n > 0)
            on_message(co, f, n);
        for (int i = 0; i < n && i < 4; i++)
            zmq_msg_close(&f[i]);
    }
    if (!co->idle_on) {
        uv_idle_start(&co->idle, on_idle);
        co->idle_on = 1;
    }
}

/* ---- loop callbacks --------------------------------------------------- */

static void after_work(coord *co) {
    dispatch(co);
    process_socket(co);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    after_work(h->data);
}

static void on_idle(uv_idle_t *h) {
    after_work(h->data);
}

static void integrate_campaign(coord *co, co_campaign *c) {
    c->next = co->campaigns;
    co->campaigns = c;
    int stopped = 0;
    for (int i = 0; i < c->nstrata; i++)
        stopped += c->strata[i].stopped;
    clog_(co, "serving campaign %" PRId64 " (epoch %" PRId64 "): %d strata, %d already stopped",
          c->id, c->epoch, c->nstrata, stopped);
    check_finished(co, c);
}

static int load_requested(coord *co, int64_t id) {
    for (co_campaign *c = co->campaigns; c; c = c->next)
        if (c->id == id)
            return 1;
    return 0;
}

static void on_poll_rows(coord *co, const co_write *it) {
    for (size_t i = 0; i < it->npoll; i++) {
        const co_poll_row *p = &it->poll[i];
        if (co->cfg->only_campaign && p->id != co->cfg->only_campaign)
            continue;
        co_campaign *c = find_campaign(co, p->id);
        if (!c) {
            if (p->running && !load_requested(co, p->id)) {
                /* Ask once; a placeholder marks it requested. */
                co_campaign *ph = calloc(1, sizeof *ph);
                if (!ph)
                    continue;
                ph->id = p->id;
                ph->finished = 1; /* inert until loaded */
                ph->cancelled = 1;
                ph->next = co->campaigns;
                co->campaigns = ph;
                co_write *load = calloc(1, sizeof *load);
                if (load) {
                    load->kind = CO_W_LOAD;
                    load->campaign = p->id;
                    co_writer_push(co->writer, load);
                }
            }
            continue;
        }
        if (c->nstrata == 0)
            continue; /* placeholder */
        if (p->cancelled && !c->finished) {
            c->cancelled = 1;
            c->finished = 1;
            for (int k = 0; k < c->nstrata; k++)
                if (!c->strata[k].stopped) {
                    c->strata[k].stopped = 1;
                    c->strata[k].stop_reason = "cancelled";
                    c->strata[k].dirty = 1;
                }
            queue_estimates(co, c, 0);
            for (job *j = co->jobs, *next; j; j = next) {
                next = j->next;
                if (j->c == c)
                    cancel_job(co, j);
            }
            clog_(co, "campaign %" PRId64 " cancelled", c->id);
            if (co->cfg->exit_when_done && c->id == co->cfg->only_campaign)
                co->done_exit = 1;
        } else if (p->running && p->max_trials > c->max_trials) {
            c->max_trials = p->max_trials;
            c->finished = 0;
            for (int k = 0; k < c->nstrata; k++) {
                if (c->strata[k].max_trials < p->max_trials)
                    c->strata[k].max_trials = p->max_trials;
                co_stratum_recheck(&c->strata[k], c);
            }
            clog_(co, "campaign %" PRId64 " extended to %" PRIu64 " trials per stratum", c->id,
                  p->max_trials);
            check_finished(co, c);
        }
    }
}

static void replace_placeholder(coord *co, int64_t id, co_campaign *c) {
    for (co_campaign **pp = &co->campaigns; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id && (*pp)->nstrata == 0) {
            co_campaign *ph = *pp;
            *pp = ph->next;
            free(ph);
            break;
        }
    if (c)
        integrate_campaign(co, c);
}

static void on_async(uv_async_t *h) {
    coord *co = h->data;
    co_write *it;
    while ((it = co_writer_take(co->writer))) {
        switch (it->kind) {
        case CO_W_TRIALS: {
            if (it->committed) {
                pvf_msg ack = {.type = PVF_MSG_ACK};
                ack.u.ack.job = it->job;
                ack.u.ack.attempt = it->attempt;
                ack.u.ack.seq = it->seq;
                if (it->rid_len)
                    send_to(co, it->rid, it->rid_len, &ack);
            }
            break;
        }
        case CO_W_LOADED:
            if (!it->loaded) {
                clog_(co, "cannot serve campaign %" PRId64 ": %s", it->campaign, it->error);
                if (co->cfg->only_campaign == it->campaign) {
                    pvf_err_set(&co->err, "%s", it->error);
                    co->failed = 1;
                    uv_stop(&co->loop);
                }
                /* keep the placeholder: not asked again */
            } else {
                replace_placeholder(co, it->campaign, it->loaded);
                it->loaded = NULL;
            }
            break;
        case CO_W_POLL:
            on_poll_rows(co, it);
            break;
        case CO_W_LOST: {
            co_campaign *c = find_campaign(co, it->campaign);
            if (c) {
                clog_(co, "lost the lock of campaign %" PRId64 ": another coordinator serves it",
                      it->campaign);
                c->cancelled = c->finished = 1;
            }
            break;
        }
        default:
            break;
        }
        co_write_free(it);
    }
    after_work(co);
}

static void notify(void *ctx) {
    uv_async_send(ctx);
}

static void send_heartbeats(coord *co, uint64_t now) {
    const uint64_t hb = (uint64_t)co->cfg->heartbeat_ms;
    const uint64_t dead = hb * (uint64_t)co->cfg->dead_after;
    for (worker *w = co->workers, *next; w; w = next) {
        next = w->next;
        if (now - w->last_seen > dead) {
            clog_(co, "worker %s is silent: its %d leases go back", w->name, w->leases);
            drop_worker(co, w, 1);
            continue;
        }
        if (now - w->last_sent >= hb) {
            pvf_msg m = {.type = PVF_MSG_HEARTBEAT};
            send_worker(co, w, &m);
        }
    }
    for (job *j = co->jobs, *next; j; j = next) {
        next = j->next;
        uint64_t deadline = co->cfg->trial_deadline_ms;
        if (j->w && j->started && now - j->progress_ms > deadline) {
            clog_(co, "job %" PRIu64 " on %s made no progress for %" PRIu64 " ms: leased again",
                  j->id, j->w->name, now - j->progress_ms);
            pvf_msg m = {.type = PVF_MSG_CANCEL};
            m.u.cancel.job = j->id;
            send_worker(co, j->w, &m);
            end_job(co, j, "stuck", END_STUCK);
        }
    }
}

/* Silence is counted in time the coordinator was awake to hear: when the
 * loop itself stalled (a loaded machine, a stopped process, a slow call), every
 * worker's and job's clock moves on by the stall, and what arrived meanwhile is
 * read before anyone is judged. Otherwise a coordinator that wakes from a
 * stall longer than dead_after heartbeats drops every worker whose
 * heartbeats are still queued. */
static void forgive_stall(coord *co, uint64_t now) {
    const uint64_t stall =
        co->last_tick && now - co->last_tick > 2 * TIMER_MS ? now - co->last_tick - TIMER_MS : 0;
    co->last_tick = now;
    if (stall) {
        for (worker *w = co->workers; w; w = w->next)
            w->last_seen = w->last_seen + stall < now ? w->last_seen + stall : now;
        for (job *j = co->jobs; j; j = j->next)
            j->progress_ms = j->progress_ms + stall < now ? j->progress_ms + stall : now;
    }
    process_socket(co);
}

static void on_timer(uv_timer_t *h) {
    coord *co = h->data;
    uint64_t now = now_ms(co);
    if (co->cfg->stop && *co->cfg->stop) {
        uv_stop(&co->loop);
        return;
    }
    forgive_stall(co, now);
    now = now_ms(co); /* reading the socket took time, and set last_seen */
    send_heartbeats(co, now);
    if (now - co->last_flush >= 500) {
        co->last_flush = now;
        for (co_campaign *c = co->campaigns; c; c = c->next)
            if (c->nstrata && !c->finished)
                queue_estimates(co, c, 0);
    }
    if (co->cfg->progress && now - co->last_progress >= 250) {
        co->last_progress = now;
        co_campaign *c = co->cfg->only_campaign ? find_campaign(co, co->cfg->only_campaign) : NULL;
        if (c && c->nstrata) {
            pvf_coord_progress p;
            campaign_totals(c, &p);
            for (worker *w = co->workers; w; w = w->next)
                p.workers++;
            co->cfg->progress(&p, co->cfg->progress_ctx);
        }
    }
    if (co->waiting_final && co_writer_backlog(co->writer) == 0) {
        /* Final rows committed: tell local workers to leave, then stop. */
        co->waiting_final = 0;
        co->done_exit = 1;
    }
    if (co->done_exit) {
        pvf_msg d = {.type = PVF_MSG_DISCONNECT};
        d.u.disconnect.reason = "stop: campaign finished";
        for (worker *w = co->workers; w; w = w->next)
            send_worker(co, w, &d);
        uv_stop(&co->loop);
        return;
    }
    after_work(co);
}

/* ---- setup ------------------------------------------------------------ */

static int open_socket(coord *co, pvf_err *err) {
    const pvf_coord_config *cfg = co->cfg;
    if (strncmp(cfg->bind, "tcp://", 6) == 0 && !cfg->secret_key)
        return pvf_err_set(err, "%s: TCP endpoints need CURVE: pass --key and --allow", cfg->bind);
    if (cfg->secret_key && co_zap_start(&co->zap, co->zctx, cfg->allow_file, cfg->quiet, err))
        return -1;
    co->sock = zmq_socket(co->zctx, ZMQ_ROUTER);
    if (!co->sock)
        return pvf_err_set(err, "cannot create a socket: %s", zmq_strerror(errno));
    int one = 1, zero = 0, hwm = 100000;
    int64_t maxmsg = PVF_PROTO_MAX_TRANSPORT;
    zmq_setsockopt(co->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(co->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(co->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(co->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(co->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (cfg->secret_key) {
        const char *domain = "pvf";
        if (zmq_setsockopt(co->sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
            zmq_setsockopt(co->sock, ZMQ_CURVE_SECRETKEY, cfg->secret_key, 40) ||
            zmq_setsockopt(co->sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) ||
            zmq_setsockopt(co->sock, ZMQ_ZAP_ENFORCE_DOMAIN_, &one, sizeof one))
            return pvf_err_set(err, "CURVE setup failed: %s", zmq_strerror(errno));
    }
    if (zmq_bind(co->sock, cfg->bind))
        return pvf_err_set(err, "%s: cannot bind: %s", cfg->bind, zmq_strerror(errno));
    return 0;
}

int pvf_coord_run(const pvf_coord_config *cfg_in, pvf_err *err) {
    pvf_coord_config cfg = *cfg_in;
    if (cfg.heartbeat_ms <= 0)
        cfg.heartbeat_ms = 1000;
    if (cfg.dead_after <= 0)
        cfg.dead_after = 5;
    if (cfg.trial_deadline_ms == 0)
        cfg.trial_deadline_ms = 60000;
    coord cstate = {.cfg = &cfg}, *co = &cstate;
    int rc = -1;
    if (uv_loop_init(&co->loop))
        return pvf_err_set(err, "cannot start the event loop");
    co->zctx = cfg.zmq_context;
    if (!co->zctx) {
        co->zctx = zmq_ctx_new();
        co->own_zctx = 1;
    }
    /* Job ids from this run differ from any earlier run's (a restarted
     * coordinator must not mistake an old lease for a new one). */
    co->epoch_tag = (int64_t)(((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16)) &
                              0x3fffff); /* ids stay below 2^62: bigint */
    if (open_socket(co, err))
        goto out;
    /* The writer thread notifies through the async handle: it exists first
     * and outlives the thread. */
    uv_async_init(&co->loop, &co->async, on_async);
    co->async.data = co;
    if (co_writer_start(&co->writer, cfg.dsn, cfg.quiet, notify, &co->async, err)) {
        uv_close((uv_handle_t *)&co->async, NULL);
        uv_run(&co->loop, UV_RUN_DEFAULT);
        goto out;
    }
    int fd;
    size_t fdlen = sizeof fd;
    zmq_getsockopt(co->sock, ZMQ_FD, &fd, &fdlen);
    uv_poll_init_socket(&co->loop, &co->poll, fd);
    co->poll.data = co;
    uv_poll_start(&co->poll, UV_READABLE, on_poll);
    uv_timer_init(&co->loop, &co->timer);
    co->timer.data = co;
    uv_timer_start(&co->timer, on_timer, TIMER_MS, TIMER_MS);
    uv_idle_init(&co->loop, &co->idle);
    co->idle.data = co;
    uv_run(&co->loop, UV_RUN_DEFAULT);
    rc = co->failed ? pvf_err_set(err, "%s", co->err.msg) : 0;
    co_writer_stop(co->writer); /* flushes what is queued; no notify after this */
    co->writer = NULL;
    uv_close((uv_handle_t *)&co->poll, NULL);
    uv_close((uv_handle_t *)&co->timer, NULL);
    uv_close((uv_handle_t *)&co->idle, NULL);
    uv_close((uv_handle_t *)&co->async, NULL);
    uv_run(&co->loop, UV_RUN_DEFAULT);
out:
    if (co->writer)
        co_writer_stop(co->writer);
    while (co->jobs) {
        job *j = co->jobs;
        co->jobs = j->next;
        free(j->got);
        free(j);
    }
    while (co->workers) {
        worker *w = co->workers;
        co->workers = w->next;
        free(w);
    }
    while (co->campaigns) {
        co_campaign *c = co->campaigns;
        co->campaigns = c->next;
        co_campaign_free(c);
    }
    if (co->sock)
        zmq_close(co->sock);
    co_zap_stop(co->zap);
    if (co->own_zctx)
        zmq_ctx_term(co->zctx);
    uv_loop_close(&co->loop);
    return rc;
}
