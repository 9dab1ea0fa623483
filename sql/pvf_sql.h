/* pvf_sql.h - the PostgreSQL store: connection, schema migrations, idempotent
 * trial inserts, report queries, and the private server `pvf run` starts when
 * it is given no database.
 *
 * The schema is sql/NNN_*.sql, embedded in the binary at build time and
 * applied in order, each once (recorded in pvf_schema_version). */
#ifndef PVF_SQL_H
#define PVF_SQL_H

#include "pvf_common.h"
#include "pvf_proto.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pvf_db pvf_db;
typedef struct pg_conn PGconn;

/* Connects to a libpq DSN ("host=... dbname=... user=..." or a URI). Errors
 * carry libpq's first line and the DSN's host and database (never a
 * password). */
int pvf_db_open(pvf_db **db, const char *dsn, pvf_err *err);
void pvf_db_close(pvf_db *db);
PGconn *pvf_db_conn(pvf_db *db);
/* "host H database D" of the connection, for error messages. */
const char *pvf_db_name(const pvf_db *db);

/* Applies the embedded migrations the database lacks, in one transaction
 * under an advisory lock (a concurrent migrator waits, then applies none).
 * *applied = how many were applied (0: the schema was current). */
int pvf_db_migrate(pvf_db *db, int *applied, pvf_err *err);

/* The embedded migrations, in order (for tests and pvf db status). */
typedef struct pvf_migration {
    int version;
    const char *name; /* file name, "001_init.sql" */
    const char *sql;
} pvf_migration;
const pvf_migration *pvf_migrations(size_t *n);

/* One trial as the store keeps it: the worker's record plus where it
 * belongs. tensor = the target's name (rec.target resolved by the caller);
 * worker <= 0 is stored as NULL. */
typedef struct pvf_trial_row {
    int64_t campaign;
    int32_t stratum;
    const char *tensor;
    pvf_trial_rec rec;
    int64_t worker;
    uint32_t attempt;
} pvf_trial_row;

/* Inserts rows in one transaction, idempotent on (campaign, stratum, trial):
 * rows already stored are skipped (a replayed batch inserts 0 and is no
 * error). *inserted = rows actually added. A row that cannot be stored
 * (index or count out of range) fails the whole batch, naming it. When the
 * connection is already in a transaction (the caller's BEGIN), the rows are
 * written in it under a savepoint and the caller commits: so a job's last
 * batch and its state change can commit together; on failure the caller's
 * transaction is left as it was before the call. */
int pvf_db_insert_trials(pvf_db *db, const pvf_trial_row *rows, size_t n, size_t *inserted,
                         pvf_err *err);

/* Report queries: a result table of text cells (NULL cells are NULL). */
typedef struct pvf_table {
    int nrows, ncols;
    char **names;  /* ncols column names */
    char *kinds;   /* ncols column kinds: 'i' integer, 'f' float, 'b' bool ("t"/"f"),
                      'j' json, 's' anything else */
    char **cells;  /* nrows * ncols, row-major; NULL = SQL NULL */
    void *result_; /* the PGresult that owns the strings */
} pvf_table;
void pvf_table_free(pvf_table *t);
/* Cell (r, c), or NULL. */
const char *pvf_table_get(const pvf_table *t, int r, int c);

/* Runs a statement with text parameters whose rows, if any, are not needed. */
int pvf_db_command(pvf_db *db, const char *sql, int nparams, const char *const *params,
                   pvf_err *err);

/* Runs a query with text parameters into *t. */
int pvf_db_query(pvf_db *db, const char *sql, int nparams, const char *const *params, pvf_table *t,
                 pvf_err *err);

typedef enum pvf_report_by {
    PVF_BY_STRATUM,
    PVF_BY_TENSOR,
    PVF_BY_COMPONENT,
    PVF_BY_BIT,
} pvf_report_by;
/* "stratum", "tensor", ... -> 0, or -1 for an unknown name. */
int pvf_report_by_parse(const char *s, pvf_report_by *out);

/* Rows of the view for one grouping: key column(s), trials_used, estimate,
 * lo, hi, stopped, converged, interval_kind (and more for strata). Returns
 * 1 with the rows, 0 when the campaign does not exist, -1 on error. */
int pvf_report_rows(pvf_db *db, int64_t campaign, pvf_report_by by, pvf_table *t, pvf_err *err);
/* The campaign's pvf_campaign_progress row plus its model, format, fault and
 * strata kind: 1, 0 when it does not exist, -1 on error. */
int pvf_report_campaign(pvf_db *db, int64_t campaign, pvf_table *t, pvf_err *err);
/* Every campaign with its progress, newest first. */
int pvf_report_campaign_list(pvf_db *db, pvf_table *t, pvf_err *err);

/* Campaign control: 1 done, 0 no such campaign, -1 error. cancel: state
 * cancelled, unstopped strata stopped with reason 'cancelled'. extend: every
 * stratum's and the campaign's max_trials raised to max_trials (never
 * lowered), strata stopped by the cap resume, state back to running. */
int pvf_campaign_cancel(pvf_db *db, int64_t campaign, pvf_err *err);
int pvf_campaign_extend(pvf_db *db, int64_t campaign, int64_t max_trials, pvf_err *err);

/* The private server. Data directory HOME/postgres (initdb'd on first use:
 * user pvf, trust auth, UTF8, unix socket in the data directory, no TCP),
 * started if stopped (pg_ctl, log HOME/postgres/log), database pvf created
 * if missing. Writes "host=HOME/postgres dbname=pvf user=pvf" to dsn. As
 * root the server runs as the postgres system user (who must be able to
 * traverse HOME). Concurrent callers are serialized by a lock file. */
int pvf_pgserver_ensure(const char *home, char *dsn, size_t dsn_len, pvf_err *err);
/* Stops it (fast shutdown); stopping a stopped server is no error. */
int pvf_pgserver_stop(const char *home, pvf_err *err);
/* 1 running, 0 stopped, -1 no data directory or error (err set). */
int pvf_pgserver_status(const char *home, pvf_err *err);
/* HOME/postgres exists (initdb'd). */
int pvf_pgserver_exists(const char *home);
/* The DSN of the private server under home (whether or not it runs). */
int pvf_pgserver_dsn(const char *home, char *dsn, size_t dsn_len, pvf_err *err);

/* Default home: $PVF_HOME, else /var/lib/pvf for root, else
 * $XDG_DATA_HOME/pvf or ~/.local/share/pvf. */
int pvf_home_default(char *out, size_t len, pvf_err *err);

#endif
