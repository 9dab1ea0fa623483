/* pvf coordinator - serves the running campaigns of a database to workers. */
#include "cli.h"
#include "keys.h"
#include "pvf_coordinator.h"
#include "pvf_sql.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

typedef struct coord_flags {
    pvf_coord_config cfg;
    const char *db, *key_file;
} coord_flags;

static int coord_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    coord_flags *f = ctx;
    int64_t v;
    switch (opt) {
    case 'd':
        f->db = arg;
        return 1;
    case 'b':
        f->cfg.bind = arg;
        return 1;
    case 'k':
        f->key_file = arg;
        return 1;
    case 'a':
        f->cfg.allow_file = arg;
        return 1;
    case 'c':
        if (cli_int64(cmd, "--campaign", arg, 1, INT64_MAX, &v))
            return -1;
        f->cfg.only_campaign = v;
        return 1;
    case 'x':
        f->cfg.exit_when_done = 1;
        return 1;
    case 'h':
        if (cli_int64(cmd, "--heartbeat-ms", arg, 10, 60000, &v))
            return -1;
        f->cfg.heartbeat_ms = (int)v;
        return 1;
    case 't':
        if (cli_int64(cmd, "--trial-deadline-ms", arg, 100, 86400000, &v))
            return -1;
        f->cfg.trial_deadline_ms = (uint32_t)v;
        return 1;
    case 'q':
        f->cfg.quiet = 1;
        return 1;
    default:
        return 0;
    }
}

int pvf_cmd_coordinator(int argc, char **argv) {
    cli_common common;
    static const struct option opts[] = {{"db", required_argument, 0, 'd'},
                                         {"bind", required_argument, 0, 'b'},
                                         {"key", required_argument, 0, 'k'},
                                         {"allow", required_argument, 0, 'a'},
                                         {"campaign", required_argument, 0, 'c'},
                                         {"exit-when-done", no_argument, 0, 'x'},
                                         {"heartbeat-ms", required_argument, 0, 'h'},
                                         {"trial-deadline-ms", required_argument, 0, 't'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {0, 0, 0, 0}};
    coord_flags f = {0};
    int rc = cli_parse("coordinator", argc, argv, opts, &common, coord_flag, &f);
    if (rc)
        return rc;
    if (!f.cfg.bind)
        return cli_fail("coordinator", 2, "--bind ENDPOINT is required");
    if (f.cfg.exit_when_done && !f.cfg.only_campaign)
        return cli_fail("coordinator", 2, "--exit-when-done needs --campaign ID");
    if ((f.key_file != NULL) != (f.cfg.allow_file != NULL))
        return cli_fail("coordinator", 2, "--key and --allow go together");
    char pub[41], sec[41];
    pvf_err err;
    if (f.key_file) {
        if (cli_read_keypair(f.key_file, pub, sec, &err))
            return cli_fail("coordinator", 2, "%s", err.msg);
        f.cfg.secret_key = sec;
    }
    char dsn[4096];
    if ((rc = cli_db_dsn("coordinator", f.db, 0, dsn, sizeof dsn)))
        return rc;
    pvf_db *db;
    int applied;
    if (pvf_db_open(&db, dsn, &err))
        return cli_fail("coordinator", 1, "%s", err.msg);
    rc = pvf_db_migrate(db, &applied, &err);
    pvf_db_close(db);
    if (rc)
        return cli_fail("coordinator", 1, "%s", err.msg);
    f.cfg.dsn = dsn;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    f.cfg.stop = &stop_flag;
    if (pvf_coord_run(&f.cfg, &err))
        return cli_fail("coordinator", 1, "%s", err.msg);
    return 0;
}
