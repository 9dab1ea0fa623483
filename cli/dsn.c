/* dsn.c - which database a command talks to. */
#include "cli.h"
#include "pvf_sql.h"

#include <stdio.h>
#include <stdlib.h>

int cli_resolve_dsn(const char *cmd, const char *flag, int create, char *dsn, size_t n) {
    const char *env = getenv("PVF_DB");
    if (flag || (env && *env)) {
        snprintf(dsn, n, "%s", flag ? flag : env);
        return 0;
    }
    char home[4096];
    pvf_err err;
    if (pvf_home_default(home, sizeof home, &err)) {
        cli_fail(cmd, 1, "%s", err.msg);
        return -1;
    }
    if (!create && !pvf_pgserver_exists(home)) {
        cli_fail(cmd, 1, "no database: pass --db, set PVF_DB or run pvf run first");
        return -1;
    }
    if (pvf_pgserver_ensure(home, dsn, n, &err)) {
        cli_fail(cmd, 1, "%s", err.msg);
        return -1;
    }
    return 0;
}
