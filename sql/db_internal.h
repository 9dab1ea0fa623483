/* db_internal.h - what the pvf_sql sources share about a connection. */
#ifndef PVF_DB_INTERNAL_H
#define PVF_DB_INTERNAL_H

#include "pvf_sql.h"

#include <libpq-fe.h>

typedef enum pvf_insert_method {
    PVF_INSERT_STAGE,  /* COPY into a temp table, INSERT ... ON CONFLICT DO NOTHING */
    PVF_INSERT_DIRECT, /* COPY into trials in a savepoint; stage path on 23505 */
} pvf_insert_method;

struct pvf_db {
    PGconn *conn;
    char name[256]; /* "host H database D" */
    pvf_insert_method insert_method;
    int stage_ready;  /* the session's temp stage table exists */
    int in_caller_tx; /* this insert runs in the caller's transaction */
};

/* Fills err with "WHAT: <libpq's first line> (host H database D)"; res may be
 * NULL (then the connection's message). Returns -1. */
int pvf_db_fail(pvf_db *db, const PGresult *res, pvf_err *err, const char *what);

/* Runs a command without parameters expecting PGRES_COMMAND_OK (or
 * TUPLES_OK); on failure fills err naming what. */
int pvf_db_exec(pvf_db *db, const char *sql, const char *what, pvf_err *err);

/* Best-effort ROLLBACK after a failure (the error already set is kept). */
void pvf_db_rollback(pvf_db *db);

/* Test and benchmark hook: how pvf_db_insert_trials writes. */
void pvf_db_set_insert_method(pvf_db *db, pvf_insert_method m);

#endif
