/* migrate.c - applies the embedded schema migrations, each once. */
#include "db_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Generated from sql/NNN_*.sql (embed_sql.cmake), ended by {0, 0, 0}. */
extern const pvf_migration pvf_migrations_table_[];

/* pg_advisory_xact_lock key of the migrator: ("pvfm" in ASCII, 0), in the
 * two-int key space, apart from single bigint keys such as campaign ids. */
#define PVF_MIGRATE_LOCK "1886807661, 0"

const pvf_migration *pvf_migrations(size_t *n) {
    size_t k = 0;
    while (pvf_migrations_table_[k].name)
        k++;
    *n = k;
    return pvf_migrations_table_;
}

static int applied_versions(pvf_db *db, int *max_known, unsigned char *have, size_t nhave,
                            pvf_err *err) {
    pvf_table t;
    if (pvf_db_query(db, "SELECT version FROM pvf_schema_version", 0, NULL, &t, err))
        return pvf_err_prefix(err, "migrate: reading pvf_schema_version");
    *max_known = 0;
    for (int r = 0; r < t.nrows; r++) {
        int v = atoi(pvf_table_get(&t, r, 0));
        if (v > *max_known)
            *max_known = v;
        if (v >= 0 && (size_t)v < nhave)
            have[v] = 1;
    }
    pvf_table_free(&t);
    return 0;
}

int pvf_db_migrate(pvf_db *db, int *applied, pvf_err *err) {
    *applied = 0;
    size_t n;
    const pvf_migration *m = pvf_migrations(&n);
    int latest = n ? m[n - 1].version : 0;
    unsigned char *have = calloc((size_t)latest + 1, 1);
    if (!have)
        return pvf_err_set(err, "migrate: out of memory");
    int count = 0, rc = -1, max_seen = 0;
    /* The lock is taken before anything is read: a second migrator waits
     * here until the first commits, then finds every version applied. */
    if (pvf_db_exec(db, "BEGIN", "migrate", err) ||
        pvf_db_exec(db, "SELECT pg_advisory_xact_lock(" PVF_MIGRATE_LOCK ")",
                    "migrate: taking the migration lock", err) ||
        pvf_db_exec(db,
                    "CREATE TABLE IF NOT EXISTS pvf_schema_version ("
                    " version int PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    "migrate: creating pvf_schema_version", err) ||
        applied_versions(db, &max_seen, have, (size_t)latest + 1, err))
        goto done;
    if (max_seen > latest) {
        pvf_err_set(err,
                    "migrate: the database (%s) has schema version %d, newer than this pvf "
                    "(%d): use a newer pvf",
                    db->name, max_seen, latest);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (have[m[i].version])
            continue;
        char what[128];
        snprintf(what, sizeof what, "migrate: %s", m[i].name);
        if (pvf_db_exec(db, m[i].sql, what, err))
            goto done;
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m[i].version);
        const char *params[] = {ver, m[i].name};
        pvf_table t;
        if (pvf_db_query(db, "INSERT INTO pvf_schema_version (version, name) VALUES ($1, $2)", 2,
                         params, &t, err))
            goto done;
        pvf_table_free(&t);
        count++;
    }
    if (pvf_db_exec(db, "COMMIT", "migrate: commit", err))
        goto done;
    *applied = count;
    rc = 0;
done:
    if (rc)
        pvf_db_rollback(db);
    free(have);
    return rc;
}
