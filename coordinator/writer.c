/* writer.c - the coordinator's database thread.
 *
 * The loop thread never waits on PostgreSQL: it queues writes here and gets
 * answers back through a notify callback (a uv_async_send). Trial rows go
 * first, in one idempotent insert per round; only once they are committed
 * does the loop acknowledge them to their workers. When the connection
 * drops (PostgreSQL restarted), the round is retried on a new connection
 * after a backoff: nothing queued is lost, replays insert nothing twice. */
#include "co.h"

#include <libpq-fe.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOCK_CLASS 0x70766631 /* advisory lock class for campaigns ("pvf1") */

struct co_writer {
    char *dsn;
    int quiet;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    co_write *in, *in_tail;   /* loop -> writer */
    co_write *out, *out_tail; /* writer -> loop */
    size_t backlog;
    int quit;
    void (*notify)(void *);
    void *ctx;
    pvf_db *db;
    int64_t *locked; /* campaigns whose lock this connection holds */
    size_t nlocked;
};

static void wlog(const co_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wlog(const co_writer *w, const char *fmt, ...) {
    if (w->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("pvf coordinator: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void co_write_free(co_write *it) {
    if (!it)
        return;
    free(it->rows);
    free(it->est);
    free(it->poll);
    if (it->loaded)
        co_campaign_free(it->loaded);
    free(it);
}

static void append(co_write **head, co_write **tail, co_write *it) {
    it->next = NULL;
    if (*tail)
        (*tail)->next = it;
    else
        *head = it;
    *tail = it;
}

void co_writer_push(co_writer *w, co_write *it) {
    pthread_mutex_lock(&w->lock);
    append(&w->in, &w->in_tail, it);
    w->backlog += it->nrows;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

co_write *co_writer_take(co_writer *w) {
    pthread_mutex_lock(&w->lock);
    co_write *it = w->out;
    if (it) {
        w->out = it->next;
        if (!w->out)
            w->out_tail = NULL;
        it->next = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    return it;
}

size_t co_writer_backlog(co_writer *w) {
    pthread_mutex_lock(&w->lock);
    size_t n = w->backlog;
    pthread_mutex_unlock(&w->lock);
    return n;
}

static void answer(co_writer *w, co_write *it) {
    pthread_mutex_lock(&w->lock);
    append(&w->out, &w->out_tail, it);
    pthread_mutex_unlock(&w->lock);
    w->notify(w->ctx);
}

static int connection_ok(co_writer *w) {
    return w->db && PQstatus(pvf_db_conn(w->db)) == CONNECTION_OK;
}

static int lock_campaign(co_writer *w, int64_t id, int *got, pvf_err *err) {
    char cls[32], obj[32];
    snprintf(cls, sizeof cls, "%d", LOCK_CLASS);
    snprintf(obj, sizeof obj, "%" PRId64, id);
    const char *p[2] = {cls, obj};
    pvf_table r;
    if (pvf_db_query(w->db, "SELECT pg_try_advisory_lock($1::int, $2::int)", 2, p, &r, err))
        return -1;
    const char *v = pvf_table_get(&r, 0, 0);
    *got = v && strcmp(v, "t") == 0;
    pvf_table_free(&r);
    return 0;
}

/* (Re)connects and takes back the campaign locks; after a PostgreSQL
 * restart a lock someone else took meanwhile is lost for good. */
static int ensure_connection(co_writer *w, pvf_err *err) {
    if (connection_ok(w))
        return 0;
    if (w->db) {
        /* Whichever statement met the broken connection (a write, or a
         * campaign poll that fails quietly), say so once here. */
        wlog(w, "database connection lost: reconnecting");
        pvf_db_close(w->db);
        w->db = NULL;
    }
    if (pvf_db_open(&w->db, w->dsn, err))
        return -1;
    for (size_t i = 0; i < w->nlocked;) {
        int got;
        if (lock_campaign(w, w->locked[i], &got, err))
            return -1;
        if (got) {
            i++;
            continue;
        }
        co_write *lost = calloc(1, sizeof *lost);
        if (lost) {
            lost->kind = CO_W_LOST;
            lost->campaign = w->locked[i];
            answer(w, lost);
        }
        w->locked[i] = w->locked[--w->nlocked];
    }
    return 0;
}

static int write_trials(co_writer *w, co_write *items, pvf_err *err) {
    size_t n = 0;
    for (co_write *it = items; it; it = it->next)
        if (it->kind == CO_W_TRIALS)
            n += it->nrows;
    if (n == 0)
        return 0;
    pvf_trial_row *rows = malloc(n * sizeof *rows);
    if (!rows)
        return pvf_err_set(err, "out of memory");
    size_t k = 0;
    for (co_write *it = items; it; it = it->next)
        if (it->kind == CO_W_TRIALS && it->nrows) {
            memcpy(rows + k, it->rows, it->nrows * sizeof *rows);
            k += it->nrows;
        }
    size_t inserted;
    int rc = pvf_db_insert_trials(w->db, rows, n, &inserted, err);
    free(rows);
    return rc;
}

/* Appends v to a PostgreSQL array literal being built in *buf. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static int sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sb_printf(strbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return 0;
        }
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s)
            return -1;
        b->s = s;
        b->cap = cap;
    }
}

static int write_estimates(co_writer *w, const co_write *it, pvf_err *err) {
    strbuf col[12] = {{0}};
    int rc = -1;
    for (size_t i = 0; i < it->nest; i++) {
        const co_estimate_row *e = &it->est[i];
        const char *sep = i ? "," : "{";
        if (sb_printf(&col[0], "%s%" PRId64, sep, e->campaign) ||
            sb_printf(&col[1], "%s%d", sep, e->stratum) ||
            sb_printf(&col[2], "%s%" PRIu64, sep, e->done) ||
            sb_printf(&col[3], "%s%" PRIu64, sep, e->used) ||
            sb_printf(&col[4], "%s%.17g", sep, e->mean) ||
            sb_printf(&col[5], "%s%.17g", sep, e->lo) ||
            sb_printf(&col[6], "%s%.17g", sep, e->hi) ||
            sb_printf(&col[7], "%s%.17g", sep, e->wlo) ||
            sb_printf(&col[8], "%s%.17g", sep, e->whi) ||
            sb_printf(&col[9], "%s%s", sep, e->stopped ? "t" : "f") ||
            sb_printf(&col[10], "%s%s", sep, e->converged ? "t" : "f") ||
            sb_printf(&col[11], "%s%s", sep, e->reason ? e->reason : "NULL")) {
            pvf_err_set(err, "out of memory");
            goto out;
        }
    }
    const char *params[12];
    for (int i = 0; i < 12; i++) {
        if (sb_printf(&col[i], "}")) {
            pvf_err_set(err, "out of memory");
            goto out;
        }
        params[i] = col[i].s;
    }
    rc = pvf_db_command(
        w->db,
        "INSERT INTO estimates (campaign_id, stratum, trials_done, trials_used, estimate, lo, hi, "
        "wilson_lo, wilson_hi, stopped, converged, stop_reason, updated_at) "
        "SELECT c, s, d, u, e, l, h, wl, wh, st, cv, r, now() FROM unnest($1::bigint[], "
        "$2::int[], $3::bigint[], $4::bigint[], $5::float8[], $6::float8[], $7::float8[], "
        "$8::float8[], $9::float8[], $10::bool[], $11::bool[], $12::text[]) "
        "AS x(c, s, d, u, e, l, h, wl, wh, st, cv, r) "
        "ON CONFLICT (campaign_id, stratum) DO UPDATE SET trials_done = excluded.trials_done, "
        "trials_used = excluded.trials_used, estimate = excluded.estimate, lo = excluded.lo, "
        "hi = excluded.hi, wilson_lo = excluded.wilson_lo, wilson_hi = excluded.wilson_hi, "
        "stopped = excluded.stopped, converged = excluded.converged, "
        "stop_reason = excluded.stop_reason, updated_at = now()",
        12, params, err);
out:
    for (int i = 0; i < 12; i++)
        free(col[i].s);
    return rc;
}

static int write_job(co_writer *w, const co_write *it, pvf_err *err) {
    char p[7][40];
    snprintf(p[0], 40, "%" PRId64, it->campaign);
    snprintf(p[1], 40, "%" PRIu64, it->job);
    snprintf(p[2], 40, "%d", it->stratum);
    snprintf(p[3], 40, "%" PRIu64, it->lo);
    snprintf(p[4], 40, "%" PRIu64, it->hi);
    snprintf(p[5], 40, "%u", it->attempt);
    snprintf(p[6], 40, "%" PRId64, it->epoch);
    const char *params[9] = {
        p[0], p[1], p[2], p[3], p[4], it->state, p[5], p[6], it->worker[0] ? it->worker : NULL};
    return pvf_db_command(
        w->db,
        "INSERT INTO jobs (campaign_id, job_id, stratum, trial_lo, trial_hi, state, attempt, "
        "epoch, worker_id, leased_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "(SELECT id FROM workers WHERE name = $9), now(), CASE WHEN $6 = 'leased' THEN NULL "
        "ELSE now() END) ON CONFLICT (campaign_id, job_id) DO UPDATE SET state = excluded.state, "
        "finished_at = excluded.finished_at",
        9, params, err);
}

static int write_campaign(co_writer *w, const co_write *it, pvf_err *err) {
    char id[32], epoch[32];
    snprintf(id, sizeof id, "%" PRId64, it->campaign);
    snprintf(epoch, sizeof epoch, "%" PRId64, it->epoch);
    const char *p[4] = {id, it->state, epoch, it->error[0] ? it->error : NULL};
    return pvf_db_command(
        w->db,
        "UPDATE campaigns SET state = $2, finished_at = now(), "
        "error = coalesce($4, error) WHERE id = $1 AND epoch = $3 AND state = 'running'",
        4, p, err);
}

static int write_worker(co_writer *w, const co_write *it, pvf_err *err) {
    char ex[32];
    snprintf(ex, sizeof ex, "%u", it->attempt); /* executors travel in attempt */
    const char *p[2] = {it->worker, ex};
    return pvf_db_command(
        w->db,
        "INSERT INTO workers (name, executors) VALUES ($1, $2) ON CONFLICT (name) "
        "DO UPDATE SET executors = excluded.executors, last_seen = now()",
        2, p, err);
}

static void load(co_writer *w, co_write *it) {
    pvf_err err = {{0}};
    int got = 0;
    if (lock_campaign(w, it->campaign, &got, &err) == 0 && !got)
        pvf_err_set(&err, "campaign %" PRId64 " is served by another coordinator", it->campaign);
    if (got) {
        char id[32];
        snprintf(id, sizeof id, "%" PRId64, it->campaign);
        const char *p[1] = {id};
        pvf_table r;
        int64_t epoch = 0;
        if (pvf_db_query(w->db,
                         "UPDATE campaigns SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch", 1,
                         p, &r, &err) == 0) {
            epoch = r.nrows ? strtoll(pvf_table_get(&r, 0, 0), NULL, 10) : 0;
            pvf_table_free(&r);
            if (co_campaign_load(w->db, it->campaign, epoch, &it->loaded, &err) == 0) {
                int64_t *l = realloc(w->locked, (w->nlocked + 1) * sizeof *l);
                if (l) {
                    w->locked = l;
                    w->locked[w->nlocked++] = it->campaign;
                }
            }
        }
    }
    if (!it->loaded)
        snprintf(it->error, sizeof it->error, "%s", err.msg);
    it->kind = CO_W_LOADED;
    answer(w, it);
}

static void poll_campaigns(co_writer *w) {
    pvf_err err;
    pvf_table r;
    if (pvf_db_query(w->db, "SELECT id, state, coalesce(max_trials, 0) FROM campaigns ORDER BY id",
                     0, NULL, &r, &err))
        return;
    co_write *it = calloc(1, sizeof *it);
    int n = r.nrows;
    if (it && n > 0)
        it->poll = calloc((size_t)n, sizeof *it->poll);
    if (!it || (n > 0 && !it->poll)) {
        free(it);
        pvf_table_free(&r);
        return;
    }
    it->kind = CO_W_POLL;
    for (int i = 0; i < n; i++) {
        co_poll_row *p = &it->poll[i];
        p->id = strtoll(pvf_table_get(&r, i, 0), NULL, 10);
        p->running = strcmp(pvf_table_get(&r, i, 1), "running") == 0;
        p->cancelled = strcmp(pvf_table_get(&r, i, 1), "cancelled") == 0;
        p->max_trials = strtoull(pvf_table_get(&r, i, 2), NULL, 10);
    }
    it->npoll = (size_t)n;
    pvf_table_free(&r);
    answer(w, it);
}

/* One round: all trial rows in one transaction, then everything else in a
 * second. Returns -1 (items untouched) when the connection failed. */
static int round_trip(co_writer *w, co_write *items, pvf_err *err) {
    if (write_trials(w, items, err))
        return -1;
    for (co_write *it = items; it; it = it->next)
        if (it->kind == CO_W_TRIALS)
            it->committed = 1;
    int others = 0;
    for (co_write *it = items; it; it = it->next)
        others += it->kind != CO_W_TRIALS && it->kind != CO_W_LOAD;
    if (others) {
        if (pvf_db_command(w->db, "BEGIN", 0, NULL, err))
            return -1;
        for (co_write *it = items; it; it = it->next) {
            int rc = 0;
            switch (it->kind) {
            case CO_W_ESTIMATES:
                rc = write_estimates(w, it, err);
                break;
            case CO_W_JOB:
                rc = write_job(w, it, err);
                break;
            case CO_W_CAMPAIGN:
                rc = write_campaign(w, it, err);
                break;
            case CO_W_WORKER:
                rc = write_worker(w, it, err);
                break;
            default:
                break;
            }
            if (rc) {
                pvf_db_command(w->db, "ROLLBACK", 0, NULL, NULL);
                return -1;
            }
        }
        if (pvf_db_command(w->db, "COMMIT", 0, NULL, err))
            return -1;
    }
    return 0;
}

static void *writer_main(void *arg) {
    co_writer *w = arg;
    double next_poll = 0;
    int backoff_ms = 200;
    co_write *retry = NULL; /* a round that failed: done again first */
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->in && !retry && !w->quit && pvf_now() < next_poll) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        }
        co_write *items = w->in;
        w->in = w->in_tail = NULL;
        int quit = w->quit;
        pthread_mutex_unlock(&w->lock);
        if (retry) { /* the failed round goes first, in its order */
            co_write *t = retry;
            while (t->next)
                t = t->next;
            t->next = items;
            items = retry;
            retry = NULL;
        }
        if (quit && !items)
            break;
        pvf_err err;
        if (ensure_connection(w, &err)) {
            wlog(w, "database unavailable (retrying in %d ms): %s", backoff_ms, err.msg);
            retry = items;
            if (quit)
                break;
            usleep((useconds_t)backoff_ms * 1000);
            backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
            continue;
        }
        backoff_ms = 200;
        for (co_write *it = items, *prev = NULL; it;) {
            co_write *next = it->next;
            if (it->kind == CO_W_LOAD) {
                if (prev)
                    prev->next = next;
                else
                    items = next;
                load(w, it);
            } else {
                prev = it;
            }
            it = next;
        }
        if (items && round_trip(w, items, &err)) {
            wlog(w, "write failed, retrying: %s", err.msg);
            if (!connection_ok(w)) {
                retry = items;
                continue;
            }
            /* The database refused the data itself: retrying cannot help.
             * Trials not committed stay unacknowledged (the worker keeps them). */
        }
        size_t rows = 0;
        while (items) {
            co_write *it = items;
            items = it->next;
            rows += it->nrows;
            if (it->kind == CO_W_TRIALS)
                answer(w, it);
            else
                co_write_free(it);
        }
        pthread_mutex_lock(&w->lock);
        w->backlog -= rows;
        pthread_mutex_unlock(&w->lock);
        if (pvf_now() >= next_poll && !quit) {
            poll_campaigns(w);
            next_poll = pvf_now() + 1.0;
        }
    }
    while (retry) {
        co_write *it = retry;
        retry = it->next;
        co_write_free(it);
    }
    return NULL;
}

int co_writer_start(co_writer **out, const char *dsn, int quiet, void (*notify)(void *), void *ctx,
                    pvf_err *err) {
    co_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dsn = strdup(dsn))) {
        free(w);
        return pvf_err_set(err, "out of memory");
    }
    w->quiet = quiet;
    w->notify = notify;
    w->ctx = ctx;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pvf_db_open(&w->db, dsn, err) || pthread_create(&w->thread, NULL, writer_main, w)) {
        if (w->db)
            pvf_db_close(w->db);
        else
            pvf_err_prefix(err, "coordinator");
        free(w->dsn);
        free(w);
        return -1;
    }
    *out = w;
    return 0;
}

void co_writer_stop(co_writer *w) {
    pthread_mutex_lock(&w->lock);
    w->quit = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    while (w->out) {
        co_write *it = w->out;
        w->out = it->next;
        co_write_free(it);
    }
    if (w->db)
        pvf_db_close(w->db);
    free(w->locked);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->dsn);
    free(w);
}
