/* pvf db: schema migrations and the private PostgreSQL server; and the
 * database resolution every database command shares. */
#include "cli.h"
#include "pvf_sql.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "db"

int cli_db_dsn(const char *cmd, const char *flag, int create, char *dsn, size_t len) {
    const char *env = getenv("PVF_DB");
    const char *given = flag ? flag : env && *env ? env : NULL;
    if (given) {
        if (strlen(given) >= len)
            return cli_fail(cmd, 2, "--db: DSN too long");
        strcpy(dsn, given);
        return 0;
    }
    pvf_err err;
    char home[PATH_MAX];
    if (pvf_home_default(home, sizeof home, &err))
        return cli_fail(cmd, 1, "%s", err.msg);
    if (!create && !pvf_pgserver_exists(home))
        return cli_fail(cmd, 1, "no database: pass --db, set PVF_DB or run pvf run first");
    if (pvf_pgserver_ensure(home, dsn, len, &err))
        return cli_fail(cmd, 1, "%s", err.msg);
    return 0;
}

int cli_out_parse(const char *cmd, const char *s, cli_out *out) {
    static const char *const names[] = {"table", "csv", "json"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (cli_out)i;
            return 0;
        }
    cli_fail(cmd, 2, "--format: unknown output format '%s' (expected table, csv, json)", s);
    return -1;
}

static int db_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    (void)cmd;
    if (opt != 'D')
        return 0;
    *(const char **)ctx = arg;
    return 1;
}

static int db_migrate(int argc, char **argv) {
    static const struct option opts[] = {{"db", required_argument, 0, 'D'}, {0, 0, 0, 0}};
    cli_common c;
    const char *flag = NULL;
    if (cli_parse(CMD " migrate", argc, argv, opts, &c, db_flag, &flag))
        return 2;
    char dsn[2 * PATH_MAX + 128];
    int rc = cli_db_dsn(CMD " migrate", flag, 0, dsn, sizeof dsn);
    if (rc)
        return rc;
    pvf_err err;
    pvf_db *db;
    int applied;
    if (pvf_db_open(&db, dsn, &err))
        return cli_fail(CMD " migrate", 1, "%s", err.msg);
    rc = pvf_db_migrate(db, &applied, &err);
    pvf_db_close(db);
    if (rc)
        return cli_fail(CMD " migrate", 1, "%s", err.msg);
    size_t n;
    const pvf_migration *m = pvf_migrations(&n);
    printf("applied %d migration%s; schema version %d\n", applied, applied == 1 ? "" : "s",
           n ? m[n - 1].version : 0);
    return 0;
}

/* The private server's subcommands take no flags (the home is $PVF_HOME). */
static int db_server(const char *sub, int argc, char **argv) {
    char cmd[32];
    snprintf(cmd, sizeof cmd, CMD " %s", sub);
    if (argc > 1)
        return cli_fail(cmd, 2, "unexpected argument '%s' (the home is $PVF_HOME)", argv[1]);
    pvf_err err;
    char home[PATH_MAX], dsn[2 * PATH_MAX + 128];
    if (pvf_home_default(home, sizeof home, &err))
        return cli_fail(cmd, 1, "%s", err.msg);
    if (strcmp(sub, "start") == 0) {
        pvf_db *db;
        int applied;
        if (pvf_pgserver_ensure(home, dsn, sizeof dsn, &err) || pvf_db_open(&db, dsn, &err))
            return cli_fail(cmd, 1, "%s", err.msg);
        int rc = pvf_db_migrate(db, &applied, &err);
        pvf_db_close(db);
        if (rc)
            return cli_fail(cmd, 1, "%s", err.msg);
        printf("running: %s\n", dsn);
        return 0;
    }
    if (strcmp(sub, "stop") == 0) {
        if (pvf_pgserver_stop(home, &err))
            return cli_fail(cmd, 1, "%s", err.msg);
        printf("stopped: %s/postgres\n", home);
        return 0;
    }
    if (strcmp(sub, "status") == 0) {
        int st = pvf_pgserver_status(home, &err);
        if (st < 0)
            return cli_fail(cmd, 1, "%s", err.msg);
        if (pvf_pgserver_dsn(home, dsn, sizeof dsn, &err))
            return cli_fail(cmd, 1, "%s", err.msg);
        printf("%s: %s\n", st ? "running" : "stopped", dsn);
        return st ? 0 : 3; /* like pg_ctl status */
    }
    /* dsn */
    if (!pvf_pgserver_exists(home))
        return cli_fail(cmd, 1, "no private server under %s (pvf db start creates it)", home);
    if (pvf_pgserver_dsn(home, dsn, sizeof dsn, &err))
        return cli_fail(cmd, 1, "%s", err.msg);
    puts(dsn);
    return 0;
}

int pvf_cmd_db(int argc, char **argv) {
    if (argc < 2)
        return cli_fail(CMD, 2, "expected migrate, start, stop, status or dsn (see pvf help)");
    const char *sub = argv[1];
    if (strcmp(sub, "migrate") == 0)
        return db_migrate(argc - 1, argv + 1);
    if (strcmp(sub, "start") == 0 || strcmp(sub, "stop") == 0 || strcmp(sub, "status") == 0 ||
        strcmp(sub, "dsn") == 0)
        return db_server(sub, argc - 1, argv + 1);
    return cli_fail(CMD, 2, "unknown subcommand '%s' (expected migrate, start, stop, status, dsn)",
                    sub);
}
