/* db.c - a connection to the store, and the error and query helpers the
 * other sources use. */
#include "db_internal.h"

#include <stdlib.h>
#include <string.h>

/* libpq prints NOTICEs (e.g. "relation already exists, skipping") to stderr
 * by default; nothing below main prints. */
static void quiet_notice(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* The first line of a libpq message, without the "ERROR:  " prefix. */
static void first_line(const char *msg, char *out, size_t len) {
    if (!msg || !*msg)
        msg = "unknown error";
    if (strncmp(msg, "ERROR:  ", 8) == 0 || strncmp(msg, "FATAL:  ", 8) == 0)
        msg += 8;
    size_t n = strcspn(msg, "\n");
    if (n >= len)
        n = len - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
}

/* "host H database D" from the DSN's options (never its password). */
static void describe_dsn(const char *dsn, char *out, size_t len) {
    const char *host = NULL, *dbname = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    if (opts) {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (strcmp(o->keyword, "host") == 0 && o->val && *o->val)
                host = o->val;
            else if (strcmp(o->keyword, "hostaddr") == 0 && o->val && *o->val && !host)
                host = o->val;
            else if (strcmp(o->keyword, "dbname") == 0 && o->val && *o->val)
                dbname = o->val;
        }
    }
    if (!host)
        host = getenv("PGHOST");
    snprintf(out, len, "host %s database %s", host ? host : "(default socket)",
             dbname ? dbname : "(default)");
    PQconninfoFree(opts);
}

int pvf_db_open(pvf_db **out, const char *dsn, pvf_err *err) {
    *out = NULL;
    char *parse_err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &parse_err);
    if (!opts) {
        char line[256];
        first_line(parse_err ? parse_err : "out of memory", line, sizeof line);
        PQfreemem(parse_err);
        return pvf_err_set(err, "database DSN: %s", line);
    }
    PQconninfoFree(opts);
    pvf_db *db = calloc(1, sizeof *db);
    if (!db)
        return pvf_err_set(err, "database: out of memory");
    describe_dsn(dsn, db->name, sizeof db->name);
    db->insert_method = PVF_INSERT_DIRECT; /* faster for fresh batches: sql/README.md */
    /* Tensor names are UTF-8; a client_encoding in the DSN (expanded from
     * dbname, later) still wins. */
    const char *const keys[] = {"client_encoding", "dbname", "fallback_application_name", NULL};
    const char *const vals[] = {"UTF8", dsn, "pvf", NULL};
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
        char line[256];
        first_line(db->conn ? PQerrorMessage(db->conn) : "out of memory", line, sizeof line);
        pvf_err_set(err, "cannot connect to the database (%s): %s", db->name, line);
        pvf_db_close(db);
        return -1;
    }
    PQsetNoticeProcessor(db->conn, quiet_notice, NULL);
    *out = db;
    return 0;
}

void pvf_db_close(pvf_db *db) {
    if (!db)
        return;
    PQfinish(db->conn);
    free(db);
}

PGconn *pvf_db_conn(pvf_db *db) {
    return db->conn;
}

const char *pvf_db_name(const pvf_db *db) {
    return db->name;
}

void pvf_db_set_insert_method(pvf_db *db, pvf_insert_method m) {
    db->insert_method = m;
}

int pvf_db_fail(pvf_db *db, const PGresult *res, pvf_err *err, const char *what) {
    char line[320];
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    first_line(msg ? msg : PQerrorMessage(db->conn), line, sizeof line);
    return pvf_err_set(err, "%s: %s (%s)", what, line, db->name);
}

int pvf_db_exec(pvf_db *db, const char *sql, const char *what, pvf_err *err) {
    PGresult *res = PQexec(db->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = pvf_db_fail(db, res, err, what);
    PQclear(res);
    return rc;
}

void pvf_db_rollback(pvf_db *db) {
    if (PQtransactionStatus(db->conn) != PQTRANS_IDLE)
        PQclear(PQexec(db->conn, "ROLLBACK"));
}

/* Built-in type OIDs (pg_type.h, stable across releases). */
static char column_kind(Oid type) {
    switch (type) {
    case 20: /* int8 */
    case 21: /* int2 */
    case 23: /* int4 */
    case 26: /* oid */
        return 'i';
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1700: /* numeric */
        return 'f';
    case 16: /* bool */
        return 'b';
    case 114:  /* json */
    case 3802: /* jsonb */
        return 'j';
    default:
        return 's';
    }
}

int pvf_db_query(pvf_db *db, const char *sql, int nparams, const char *const *params, pvf_table *t,
                 pvf_err *err) {
    memset(t, 0, sizeof *t);
    PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        pvf_db_fail(db, res, err, "query");
        PQclear(res);
        return -1;
    }
    int nr = PQntuples(res), nc = PQnfields(res);
    t->names = calloc((size_t)nc + 1, sizeof *t->names);
    t->kinds = calloc((size_t)nc + 1, 1);
    t->cells = calloc((size_t)nr * (size_t)nc + 1, sizeof *t->cells);
    if (!t->names || !t->kinds || !t->cells) {
        free(t->names);
        free(t->kinds);
        free(t->cells);
        PQclear(res);
        memset(t, 0, sizeof *t);
        return pvf_err_set(err, "query: out of memory");
    }
    for (int c = 0; c < nc; c++) {
        t->names[c] = PQfname(res, c);
        t->kinds[c] = column_kind(PQftype(res, c));
    }
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            t->cells[(size_t)r * nc + c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
    t->nrows = nr;
    t->ncols = nc;
    t->result_ = res;
    return 0;
}

int pvf_db_command(pvf_db *db, const char *sql, int nparams, const char *const *params,
                   pvf_err *err) {
    pvf_table t;
    if (pvf_db_query(db, sql, nparams, params, &t, err))
        return -1;
    pvf_table_free(&t);
    return 0;
}

void pvf_table_free(pvf_table *t) {
    if (!t)
        return;
    free(t->names);
    free(t->kinds);
    free(t->cells);
    PQclear(t->result_);
    memset(t, 0, sizeof *t);
}

const char *pvf_table_get(const pvf_table *t, int r, int c) {
    if (r < 0 || r >= t->nrows || c < 0 || c >= t->ncols)
        return NULL;
    return t->cells[(size_t)r * t->ncols + c];
}
