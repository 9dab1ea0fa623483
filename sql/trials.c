/* trials.c - idempotent bulk insert of trial rows with COPY.
 *
 * Two ways, picked by measurement (bench/bench_store.c, sql/README.md):
 * STAGE copies the batch into a session temp table and moves it with
 * INSERT ... ON CONFLICT DO NOTHING; DIRECT copies straight into trials in a
 * savepoint and takes the STAGE path only when the batch hits a stored key
 * (SQLSTATE 23505), which is rare: replays after a crash. */
#include "db_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLUMNS                                                                                    \
    "campaign_id, stratum, trial, tensor, element, mask, old_word, new_word, old_value, "          \
    "new_value, value, incorrect, nonfinite, flags, worker_id, attempt"
#define FLUSH_AT (192u << 10) /* bytes buffered before PQputCopyData */

typedef struct copybuf {
    char *p;
    size_t len, cap;
} copybuf;

static int reserve(copybuf *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* COPY text format: backslash, tab, newline and carriage return escaped.
 * The caller reserved 2 * n bytes. */
static void put_text(copybuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\':
        case '\t':
        case '\n':
        case '\r':
            b->p[b->len++] = '\\';
            b->p[b->len++] = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
            break;
        default:
            b->p[b->len++] = c;
        }
    }
}

/* A float in a form PostgreSQL reads back exactly: %.9g for real, %.17g for
 * float8, and its own spellings of NaN and the infinities. */
static int put_float(char *out, size_t len, double v, int digits) {
    if (isnan(v))
        return snprintf(out, len, "NaN");
    if (isinf(v))
        return snprintf(out, len, v > 0 ? "Infinity" : "-Infinity");
    return snprintf(out, len, "%.*g", digits, v);
}

static int check_row(const pvf_trial_row *r, size_t i, pvf_err *err) {
    const pvf_trial_rec *t = &r->rec;
    const char *bad = NULL;
    if (!r->tensor)
        bad = "no tensor name";
    else if (t->trial > INT64_MAX)
        bad = "trial index above 2^63-1";
    else if (t->element > INT64_MAX)
        bad = "element above 2^63-1";
    else if (t->incorrect > INT32_MAX || t->nonfinite > INT32_MAX)
        bad = "incorrect/nonfinite count above 2^31-1";
    else if (t->flags > INT32_MAX)
        bad = "flags above 2^31-1";
    else if (r->attempt > INT32_MAX)
        bad = "attempt above 2^31-1";
    if (bad)
        return pvf_err_set(err,
                           "insert trials: row %zu (campaign %" PRId64 ", stratum %" PRId32
                           ", trial %" PRIu64 "): %s",
                           i, r->campaign, r->stratum, t->trial, bad);
    return 0;
}

static int put_row(copybuf *b, const pvf_trial_row *r) {
    const pvf_trial_rec *t = &r->rec;
    char head[96], tail[320], ov[32], nv[32], v[32], worker[24];
    int hn = snprintf(head, sizeof head, "%" PRId64 "\t%" PRId32 "\t%" PRIu64 "\t", r->campaign,
                      r->stratum, t->trial);
    put_float(ov, sizeof ov, (float)t->old_value, 9);
    put_float(nv, sizeof nv, (float)t->new_value, 9);
    put_float(v, sizeof v, t->value, 17);
    if (r->worker > 0)
        snprintf(worker, sizeof worker, "%" PRId64, r->worker);
    else
        memcpy(worker, "\\N", 3);
    int tn = snprintf(tail, sizeof tail,
                      "\t%" PRIu64 "\t%" PRIu32 "\t%" PRIu32 "\t%" PRIu32 "\t%s\t%s\t%s\t%" PRIu32
                      "\t%" PRIu32 "\t%" PRIu32 "\t%s\t%" PRIu32 "\n",
                      t->element, t->mask, t->old_word, t->new_word, ov, nv, v, t->incorrect,
                      t->nonfinite, t->flags, worker, r->attempt);
    size_t name = strlen(r->tensor);
    if (reserve(b, (size_t)hn + 2 * name + (size_t)tn))
        return -1;
    memcpy(b->p + b->len, head, (size_t)hn);
    b->len += (size_t)hn;
    put_text(b, r->tensor, name);
    memcpy(b->p + b->len, tail, (size_t)tn);
    b->len += (size_t)tn;
    return 0;
}

/* COPY rows into table; *copied = rows COPY reports. On failure err is
 * set; *sqlstate (if non-NULL) gets the server's SQLSTATE, "" if none. */
static int copy_rows(pvf_db *db, const char *table, const pvf_trial_row *rows, size_t n,
                     size_t *copied, char sqlstate[6], pvf_err *err) {
    sqlstate[0] = '\0';
    char sql[400];
    snprintf(sql, sizeof sql, "COPY %s (" COLUMNS ") FROM STDIN", table);
    PGresult *res = PQexec(db->conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        pvf_db_fail(db, res, err, "insert trials: COPY");
        PQclear(res);
        return -1;
    }
    PQclear(res);
    copybuf b = {0};
    const char *fail = NULL;
    for (size_t i = 0; i < n && !fail; i++) {
        if (put_row(&b, &rows[i]))
            fail = "out of memory";
        else if ((b.len >= FLUSH_AT || i + 1 == n) && b.len) {
            if (PQputCopyData(db->conn, b.p, (int)b.len) != 1)
                fail = "sending rows failed";
            b.len = 0;
        }
    }
    free(b.p);
    /* Ending with an error message aborts the COPY on the server. */
    if (PQputCopyEnd(db->conn, fail) != 1 && !fail)
        fail = "ending COPY failed";
    int rc = 0;
    while ((res = PQgetResult(db->conn)) != NULL) {
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            *copied = strtoull(PQcmdTuples(res), NULL, 10);
        } else if (rc == 0) {
            const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(sqlstate, 6, "%s", st ? st : "");
            if (fail)
                pvf_err_set(err, "insert trials: %s (%s)", fail, db->name);
            else
                pvf_db_fail(db, res, err, "insert trials: COPY");
            rc = -1;
        }
        PQclear(res);
    }
    if (fail && rc == 0)
        rc = pvf_err_set(err, "insert trials: %s (%s)", fail, db->name);
    return rc;
}

/* COPY into the temp stage, then move the rows not yet stored. Inside the
 * caller's transaction; the stage empties at commit. */
static int insert_staged(pvf_db *db, const pvf_trial_row *rows, size_t n, size_t *inserted,
                         pvf_err *err) {
    /* In a caller's transaction the table may have been created in that
     * transaction and then rolled back: always make sure of it there. */
    if (!db->stage_ready || db->in_caller_tx) {
        if (pvf_db_exec(db,
                        "CREATE TEMP TABLE IF NOT EXISTS pvf_trials_stage "
                        "(LIKE trials INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                        "insert trials: creating the stage table", err))
            return -1;
        /* known to last only if this transaction is ours and commits */
        db->stage_ready = !db->in_caller_tx;
    }
    size_t copied = 0;
    char st[6];
    if (copy_rows(db, "pvf_trials_stage", rows, n, &copied, st, err))
        return -1;
    PGresult *res = PQexec(db->conn, "INSERT INTO trials (" COLUMNS ") SELECT " COLUMNS
                                     " FROM pvf_trials_stage ON CONFLICT DO NOTHING");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pvf_db_fail(db, res, err, "insert trials");
        PQclear(res);
        return -1;
    }
    *inserted = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    /* The stage empties at commit; a caller's transaction may hold more
     * batches before it. */
    if (db->in_caller_tx &&
        pvf_db_exec(db, "DELETE FROM pvf_trials_stage", "insert trials: emptying the stage", err))
        return -1;
    return 0;
}

int pvf_db_insert_trials(pvf_db *db, const pvf_trial_row *rows, size_t n, size_t *inserted,
                         pvf_err *err) {
    *inserted = 0;
    for (size_t i = 0; i < n; i++)
        if (check_row(&rows[i], i, err))
            return -1;
    if (n == 0)
        return 0;
    /* Inside a caller's transaction (to commit the rows with, say, the job
     * state) the batch runs under a savepoint and the caller commits; else
     * in a transaction of its own. */
    db->in_caller_tx = PQtransactionStatus(db->conn) == PQTRANS_INTRANS;
    if (pvf_db_exec(db, db->in_caller_tx ? "SAVEPOINT pvf_batch" : "BEGIN", "insert trials", err))
        return -1;
    size_t count = 0;
    int rc;
    if (db->insert_method == PVF_INSERT_DIRECT) {
        char st[6];
        pvf_err copy_err;
        rc = pvf_db_exec(db, "SAVEPOINT pvf_copy", "insert trials", err);
        if (rc == 0 && copy_rows(db, "trials", rows, n, &count, st, &copy_err)) {
            if (strcmp(st, "23505") == 0) {
                /* Some rows are stored already: take the idempotent path. */
                rc = pvf_db_exec(db, "ROLLBACK TO SAVEPOINT pvf_copy", "insert trials", err);
                if (rc == 0)
                    rc = insert_staged(db, rows, n, &count, err);
            } else {
                *err = copy_err;
                rc = -1;
            }
        }
    } else {
        rc = insert_staged(db, rows, n, &count, err);
    }
    if (rc == 0)
        rc = pvf_db_exec(db, db->in_caller_tx ? "RELEASE SAVEPOINT pvf_batch" : "COMMIT",
                         "insert trials: commit", err);
    if (rc) {
        if (db->in_caller_tx) {
            /* the caller's transaction stays usable */
            PQclear(PQexec(db->conn, "ROLLBACK TO SAVEPOINT pvf_batch"));
            PQclear(PQexec(db->conn, "RELEASE SAVEPOINT pvf_batch"));
        } else {
            pvf_db_rollback(db);
        }
        /* A temp table created in a rolled-back transaction is gone. */
        db->stage_ready = 0;
        return -1;
    }
    *inserted = count;
    return 0;
}
