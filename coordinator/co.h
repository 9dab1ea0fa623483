/* co.h - the coordinator's internal state, shared by its files (not public). */
#ifndef PVF_CO_H
#define PVF_CO_H

#include "pvf_coordinator.h"
#include "pvf_estimator.h"
#include "pvf_proto.h"
#include "pvf_sql.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Trials to issue again: a range whose lease was lost, with the blame its
 * front trial carries: leases that ended there without a report (workers
 * that died or hung: the range is split to find the trial), and of those,
 * the ones that hung past the progress deadline (three make a hang outcome).
 * A death is never an outcome: it may have come from outside. */
typedef struct co_range {
    uint64_t lo, hi;
    int kills;
    int stuck;
} co_range;

typedef struct co_stratum {
    int index;
    char *name;
    char **targets;
    uint32_t ntargets;
    char fault[32]; /* the stratum's fault model ("bit:5" for a bit stratum) */
    uint64_t population;
    double weight;
    uint64_t max_trials;
    /* issuing */
    uint64_t next; /* first trial never issued */
    co_range *retry;
    int nretry, cap_retry;
    int inflight;
    /* completing: values beyond the prefix, in a ring indexed by trial */
    double *ahead;
    uint8_t *ahead_set;
    uint64_t ahead_cap; /* power of two > next - prefix */
    uint64_t done;      /* distinct trials completed */
    /* estimating over the contiguous prefix [0, cs.t) */
    pvf_cs cs;
    int stopped, converged;
    const char *stop_reason; /* "margin", "rel-margin", "cap", "cancelled" */
    int dirty;
} co_stratum;

typedef struct co_campaign {
    int64_t id;
    int64_t epoch;
    char *model_dir, *eval_path;
    pvf_file_ref *files;
    uint32_t nfiles;
    pvf_sha256 eval_sha;
    uint64_t eval_size;
    char format[32];
    uint64_t seed;
    int naive;
    double threshold; /* outcome rule parameter, 0: the rule's default */
    int value_any;    /* trial value 0/1 (any output incorrect): Beta-mixture CS */
    double confidence, margin, rel_margin;
    uint64_t max_trials;
    co_stratum *strata;
    int nstrata;
    int rr;                       /* next stratum to consider */
    double job_seconds_per_trial; /* measured per slot; sizes jobs */
    int failed_jobs;
    int finished; /* all strata stopped, final writes queued */
    int cancelled;
    struct co_campaign *next;
} co_campaign;

/* ---- stratum.c: prefix bookkeeping and the estimator ---- */
int co_stratum_init(co_stratum *s, const co_campaign *c, double alpha, pvf_err *err);
void co_stratum_free(co_stratum *s);
/* Records trial t's value; advances the prefix and the stopping rule.
 * Returns 1 when t was new, 0 for a duplicate. */
int co_stratum_complete(co_stratum *s, const co_campaign *c, uint64_t t, double value);
int co_stratum_is_done(const co_stratum *s, uint64_t t);
/* Puts r back for issuing (skipping trials already done). */
void co_stratum_requeue(co_stratum *s, co_range r);
/* Next range to lease, at most `size` trials: 0 when none. */
int co_stratum_take(co_stratum *s, uint64_t size, co_range *out);
/* Whether more trials may be issued now (not stopped, work left, not too
 * far ahead of the prefix). */
int co_stratum_wants(const co_stratum *s);
/* Stop rule re-check after the campaign's caps changed (extend). */
void co_stratum_recheck(co_stratum *s, const co_campaign *c);
void co_stratum_interval(const co_stratum *s, double *mean, double *lo, double *hi);

/* ---- writer.c: the database thread ---- */
typedef enum co_write_kind {
    CO_W_TRIALS,    /* rows, then ACK the worker */
    CO_W_ESTIMATES, /* upsert estimates */
    CO_W_JOB,       /* upsert a job row */
    CO_W_CAMPAIGN,  /* campaign state */
    CO_W_WORKER,    /* upsert a worker (name; executors in attempt) */
    CO_W_LOAD,      /* load (and lock) a campaign; answered with CO_W_LOADED */
    CO_W_LOADED,    /* writer -> loop: the campaign, or an error */
    CO_W_POLL,      /* writer -> loop: campaign table changed */
    CO_W_LOST,      /* writer -> loop: a campaign's lock is lost */
} co_write_kind;

typedef struct co_estimate_row {
    int64_t campaign;
    int stratum;
    uint64_t done, used;
    double mean, lo, hi, wlo, whi;
    int stopped, converged;
    const char *reason;
} co_estimate_row;

typedef struct co_poll_row {
    int64_t id;
    int running; /* state = running */
    int cancelled;
    uint64_t max_trials;
} co_poll_row;

typedef struct co_write {
    co_write_kind kind;
    struct co_write *next;
    /* TRIALS */
    pvf_trial_row *rows;
    size_t nrows;
    char worker[256];
    uint8_t rid[256];
    size_t rid_len;
    uint64_t job;
    uint32_t attempt, seq;
    int committed;
    /* ESTIMATES */
    co_estimate_row *est;
    size_t nest;
    /* JOB */
    int64_t campaign;
    int stratum;
    uint64_t lo, hi;
    int64_t epoch;
    const char *state; /* static string */
    /* CAMPAIGN */
    char error[PVF_ERR_MAX];
    /* LOADED */
    co_campaign *loaded;
    /* POLL */
    co_poll_row *poll;
    size_t npoll;
} co_write;

typedef struct co_writer co_writer;
/* Starts the thread; `notify(ctx)` is called (from the thread) when
 * answers are ready to be taken with co_writer_take. */
int co_writer_start(co_writer **w, const char *dsn, int quiet, void (*notify)(void *), void *ctx,
                    pvf_err *err);
void co_writer_stop(co_writer *w);
void co_writer_push(co_writer *w, co_write *item);
co_write *co_writer_take(co_writer *w); /* answers, in order; NULL when none */
size_t co_writer_backlog(co_writer *w); /* rows queued, not yet committed */
void co_write_free(co_write *item);

/* ---- campaign.c ---- */
/* Loads campaign `id` with its strata and the trials stored so far (the
 * writer thread calls it on its connection after taking the lock). */
int co_campaign_load(pvf_db *db, int64_t id, int64_t epoch, co_campaign **out, pvf_err *err);
void co_campaign_free(co_campaign *c);

/* ---- zap.c ---- */
typedef struct co_zap co_zap;
int co_zap_start(co_zap **z, void *zctx, const char *allow_file, int quiet, pvf_err *err);
void co_zap_stop(co_zap *z);

#endif
