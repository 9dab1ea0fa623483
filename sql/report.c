/* report.c - the queries behind pvf report and pvf campaign. */
#include "db_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pvf_report_by_parse(const char *s, pvf_report_by *out) {
    static const char *const names[] = {"stratum", "tensor", "component", "bit"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (pvf_report_by)i;
            return 0;
        }
    return -1;
}

/* 1 when campaign id exists, 0 not, -1 error. */
static int campaign_exists(pvf_db *db, const char *id, pvf_err *err) {
    pvf_table t;
    const char *params[] = {id};
    if (pvf_db_query(db, "SELECT 1 FROM campaigns WHERE id = $1", 1, params, &t, err))
        return -1;
    int found = t.nrows > 0;
    pvf_table_free(&t);
    return found;
}

static int query_campaign(pvf_db *db, int64_t campaign, const char *sql, pvf_table *t,
                          pvf_err *err) {
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, campaign);
    int found = campaign_exists(db, id, err);
    if (found <= 0)
        return found;
    const char *params[] = {id};
    return pvf_db_query(db, sql, 1, params, t, err) ? -1 : 1;
}

int pvf_report_rows(pvf_db *db, int64_t campaign, pvf_report_by by, pvf_table *t, pvf_err *err) {
    static const char *const sql[] = {
        [PVF_BY_STRATUM] =
            "SELECT stratum, name, tensor, component, bit, population, weight, max_trials,"
            " trials_done, trials_used, estimate, lo, hi, stopped, converged, stop_reason,"
            " wilson_lo, wilson_hi, leveugle_n, interval_kind"
            " FROM pvf_stratum_estimate WHERE campaign_id = $1 ORDER BY stratum",
        [PVF_BY_TENSOR] = "SELECT tensor, strata, trials_used, estimate, lo, hi, stopped,"
                          " converged, interval_kind FROM pvf_tensor_estimate"
                          " WHERE campaign_id = $1 ORDER BY tensor",
        [PVF_BY_COMPONENT] = "SELECT component, strata, trials_used, estimate, lo, hi, stopped,"
                             " converged, interval_kind FROM pvf_component_estimate"
                             " WHERE campaign_id = $1 ORDER BY component",
        [PVF_BY_BIT] = ("SELECT bit, strata, trials_used, estimate, lo, hi, stopped, converged,"
                        " interval_kind FROM pvf_bit_estimate WHERE campaign_id = $1 ORDER BY bit"),
    };
    if ((unsigned)by > PVF_BY_BIT)
        return pvf_err_set(err, "report: unknown grouping %d", (int)by);
    return query_campaign(db, campaign, sql[by], t, err);
}

#define PROGRESS_COLUMNS                                                                           \
    "p.campaign_id, p.state, p.strata, p.strata_stopped, p.trials_done, p.trials_used,"            \
    " p.estimate, p.lo, p.hi, p.stopped, p.converged, p.started, p.finished,"                      \
    " date_trunc('second', p.elapsed) AS elapsed"

int pvf_report_campaign(pvf_db *db, int64_t campaign, pvf_table *t, pvf_err *err) {
    return query_campaign(db, campaign,
                          "SELECT " PROGRESS_COLUMNS ", c.model_dir, c.arch, c.format, c.fault,"
                          " c.strata_kind, c.seed, c.confidence, c.margin, c.rel_margin,"
                          " c.max_trials, c.value_kind, c.naive, c.spec_hash, c.spec"
                          " FROM pvf_campaign_progress p JOIN campaigns c ON c.id = p.campaign_id"
                          " WHERE p.campaign_id = $1",
                          t, err);
}

int pvf_report_campaign_list(pvf_db *db, pvf_table *t, pvf_err *err) {
    return pvf_db_query(db,
                        "SELECT p.campaign_id AS id, date_trunc('second', c.created_at) AS created,"
                        " c.model_dir AS model, c.format, c.fault, p.strata, p.strata_stopped,"
                        " p.state, p.trials_used, p.estimate, p.lo, p.hi"
                        " FROM pvf_campaign_progress p JOIN campaigns c ON c.id = p.campaign_id"
                        " ORDER BY p.campaign_id DESC",
                        0, NULL, t, err);
}

/* The highest $N a statement uses: the server cannot type a parameter the
 * statement does not mention, so each gets only the ones it uses. */
static int params_used(const char *sql) {
    int n = 0;
    for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
        int k = atoi(p + 1);
        if (k > n)
            n = k;
    }
    return n;
}

/* Runs the statements of a campaign change in one transaction; the first
 * must update the campaign row (0 rows: no such campaign). */
static int campaign_change(pvf_db *db, const char *what, const char *const *sql, int nsql,
                           int nparams, const char *const *params, pvf_err *err) {
    if (pvf_db_exec(db, "BEGIN", what, err))
        return -1;
    int rc = 1;
    for (int i = 0; i < nsql && rc == 1; i++) {
        int k = params_used(sql[i]);
        if (k > nparams)
            k = nparams;
        PGresult *res = PQexecParams(db->conn, sql[i], k, NULL, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            rc = pvf_db_fail(db, res, err, what);
        else if (i == 0 && strcmp(PQcmdTuples(res), "0") == 0)
            rc = 0;
        PQclear(res);
    }
    if (rc == 1 && pvf_db_exec(db, "COMMIT", what, err))
        rc = -1;
    if (rc != 1)
        pvf_db_rollback(db);
    return rc;
}

int pvf_campaign_cancel(pvf_db *db, int64_t campaign, pvf_err *err) {
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, campaign);
    const char *params[] = {id};
    pvf_table t;
    if (pvf_db_query(db, "SELECT state FROM campaigns WHERE id = $1", 1, params, &t, err))
        return -1;
    int found = t.nrows > 0, done = found && strcmp(pvf_table_get(&t, 0, 0), "done") == 0;
    pvf_table_free(&t);
    if (!found)
        return 0;
    if (done)
        return pvf_err_set(err, "campaign %s is done: nothing to cancel", id);
    /* Strata without an estimates row yet get one, so every stratum says why
     * it stopped; a coordinator learns of it by polling or LISTEN pvf_campaign. */
    static const char *const sql[] = {
        "UPDATE campaigns SET state = 'cancelled', finished_at = coalesce(finished_at, now())"
        " WHERE id = $1 AND state <> 'done'",
        "UPDATE estimates SET stopped = true, converged = false, stop_reason = 'cancelled',"
        " updated_at = now() WHERE campaign_id = $1 AND NOT stopped",
        "INSERT INTO estimates (campaign_id, stratum, stopped, stop_reason)"
        " SELECT campaign_id, stratum, true, 'cancelled' FROM strata WHERE campaign_id = $1"
        " ON CONFLICT DO NOTHING",
        "SELECT pg_notify('pvf_campaign', $1::text)",
    };
    return campaign_change(db, "cancel campaign", sql, 4, 1, params, err);
}

int pvf_campaign_extend(pvf_db *db, int64_t campaign, int64_t max_trials, pvf_err *err) {
    char id[24], cap[24];
    snprintf(id, sizeof id, "%" PRId64, campaign);
    snprintf(cap, sizeof cap, "%" PRId64, max_trials);
    const char *params[] = {id, cap};
    pvf_table t;
    if (pvf_db_query(db,
                     "SELECT greatest(c.max_trials, max(s.max_trials)) FROM campaigns c"
                     " LEFT JOIN strata s ON s.campaign_id = c.id WHERE c.id = $1"
                     " GROUP BY c.id",
                     1, params, &t, err))
        return -1;
    int found = t.nrows > 0;
    const char *old = found ? pvf_table_get(&t, 0, 0) : NULL;
    int64_t cur = old ? strtoll(old, NULL, 10) : 0;
    pvf_table_free(&t);
    if (!found)
        return 0;
    if (max_trials < cur)
        return pvf_err_set(err,
                           "campaign %s: --max-trials %" PRId64 " is below its current cap %" PRId64
                           " (extend only raises it)",
                           id, max_trials, cur);
    /* Strata stopped by the cap (or by a cancel) resume; the coordinator
     * picks the campaign up again because it is running. */
    static const char *const sql[] = {
        "UPDATE campaigns SET max_trials = greatest(coalesce(max_trials, 0), $2::bigint),"
        " state = 'running', finished_at = NULL WHERE id = $1",
        "UPDATE strata SET max_trials = greatest(coalesce(max_trials, 0), $2::bigint)"
        " WHERE campaign_id = $1",
        "UPDATE estimates SET stopped = false, converged = false, stop_reason = NULL,"
        " updated_at = now() WHERE campaign_id = $1 AND stop_reason IN ('cap', 'cancelled')",
        "SELECT pg_notify('pvf_campaign', $1::text || ' ' || $2::text)",
    };
    return campaign_change(db, "extend campaign", sql, 4, 2, params, err);
}
