/* pvf run - one command for a whole campaign on this machine: a database
 * (a private PostgreSQL unless --db), the campaign, a coordinator and local
 * worker processes; prints the estimates. Running the same command again
 * resumes the unfinished campaign. Also pvf campaign create. */
#include "cli.h"
#include "pvf_campaign.h"
#include "pvf_client.h"
#include "pvf_coordinator.h"
#include "pvf_sql.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct run_flags {
    pvf_campaign_spec spec;
    const char *db;
    int workers, executors;
    int json, quiet;
    int heartbeat_ms;
    uint32_t trial_deadline_ms;
} run_flags;

static int run_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    run_flags *f = ctx;
    int64_t v;
    char *end;
    switch (opt) {
    case 'S':
        if (strcmp(arg, "tensor") && strcmp(arg, "tensor-bit") && strcmp(arg, "component") &&
            strcmp(arg, "component-bit")) {
            cli_fail(cmd, 2,
                     "--strata: '%s' is not tensor, tensor-bit, component or "
                     "component-bit",
                     arg);
            return -1;
        }
        f->spec.strata = arg;
        return 1;
    case 'E':
    case 'R':
    case 'C': {
        double d = strtod(arg, &end);
        int ok = *arg && !*end && isfinite(d) && (opt == 'C' ? d > 0 && d < 1 : d > 0 && d < 1);
        const char *flag = opt == 'E' ? "--margin" : opt == 'R' ? "--rel-margin" : "--confidence";
        if (!ok) {
            cli_fail(cmd, 2, "%s: '%s' is not a number in (0, 1)", flag, arg);
            return -1;
        }
        *(opt == 'E'   ? &f->spec.margin
          : opt == 'R' ? &f->spec.rel_margin
                       : &f->spec.confidence) = d;
        return 1;
    }
    case 'N':
        if (cli_int64(cmd, "--max-trials", arg, 1, (int64_t)1 << 40, &v))
            return -1;
        f->spec.max_trials = (uint64_t)v;
        return 1;
    case 's':
        if (cli_int64(cmd, "--seed", arg, 0, INT64_MAX, &v))
            return -1;
        f->spec.seed = (uint64_t)v;
        return 1;
    case 'D':
        f->db = arg;
        return 1;
    case 'w':
        if (cli_int64(cmd, "--workers", arg, 1, 256, &v))
            return -1;
        f->workers = (int)v;
        return 1;
    case 'e':
        if (cli_int64(cmd, "--executors", arg, 1, 256, &v))
            return -1;
        f->executors = (int)v;
        return 1;
    case 'V':
        if (strcmp(arg, "any") && strcmp(arg, "fraction")) {
            cli_fail(cmd, 2, "--value: '%s' is not fraction or any", arg);
            return -1;
        }
        f->spec.value_any = strcmp(arg, "any") == 0;
        return 1;
    case 'n':
        f->spec.naive = 1;
        return 1;
    case 'q':
        f->quiet = 1;
        return 1;
    case 'h':
        if (cli_int64(cmd, "--heartbeat-ms", arg, 10, 60000, &v))
            return -1;
        f->heartbeat_ms = (int)v;
        return 1;
    case 't':
        if (cli_int64(cmd, "--trial-deadline-ms", arg, 100, 86400000, &v))
            return -1;
        f->trial_deadline_ms = (uint32_t)v;
        return 1;
    default:
        return 0;
    }
}

#define RUN_OPTIONS                                                                                \
    CLI_COMMON_OPTIONS, CLI_FAULT_OPTION, CLI_THRESHOLD_OPTION,                                    \
        {"strata", required_argument, 0, 'S'}, {"margin", required_argument, 0, 'E'},              \
        {"rel-margin", required_argument, 0, 'R'}, {"confidence", required_argument, 0, 'C'},      \
        {"max-trials", required_argument, 0, 'N'}, {"seed", required_argument, 0, 's'},            \
        {"db", required_argument, 0, 'D'}, {"value", required_argument, 0, 'V'}, {                 \
        "naive", no_argument, 0, 'n'                                                               \
    }

static int parse_spec(const char *cmd, int argc, char **argv, const struct option *opts,
                      run_flags *f, char *fault, char *format) {
    cli_common c;
    *f = (run_flags){.spec = {.strata = "tensor", .confidence = 0.95, .max_trials = 100000}};
    int rc = cli_parse(cmd, argc, argv, opts, &c, run_flag, f);
    if (rc)
        return rc;
    if (f->spec.margin == 0 && f->spec.rel_margin == 0)
        f->spec.margin = 0.01;
    f->spec.model_dir = c.model;
    f->spec.eval_path = c.data;
    pvf_fault_model_format(&c.fault, fault, 32);
    snprintf(format, 32, "%s", pvf_format_name(c.format));
    f->spec.fault = fault;
    f->spec.format = format;
    f->json = c.json;
    f->spec.threshold = c.threshold;
    return 0;
}

/* Opens the database (migrated) and creates or finds the campaign. */
static int open_campaign(const char *cmd, run_flags *f, int create_db, pvf_db **db, int64_t *id,
                         int *existing, char *dsn, size_t dsn_len) {
    int rc = cli_db_dsn(cmd, f->db, create_db, dsn, dsn_len);
    if (rc)
        return rc;
    pvf_err err;
    int applied;
    if (pvf_db_open(db, dsn, &err))
        return cli_fail(cmd, 1, "%s", err.msg);
    if (pvf_db_migrate(*db, &applied, &err) ||
        pvf_campaign_create(*db, &f->spec, id, existing, &err)) {
        pvf_db_close(*db);
        return cli_fail(cmd, 1, "%s", err.msg);
    }
    return 0;
}

int pvf_cmd_campaign_create(int argc, char **argv) {
    static const struct option opts[] = {RUN_OPTIONS, {0, 0, 0, 0}};
    run_flags f;
    char fault[32], format[32], dsn[4096];
    int rc = parse_spec("campaign create", argc, argv, opts, &f, fault, format);
    if (rc)
        return rc;
    pvf_db *db;
    int64_t id;
    int existing;
    if ((rc = open_campaign("campaign create", &f, 1, &db, &id, &existing, dsn, sizeof dsn)))
        return rc;
    pvf_db_close(db);
    if (f.json)
        printf("{\"campaign\": %" PRId64 ", \"existing\": %s}\n", id,
               existing ? (existing == 1 ? "\"running\"" : "\"done\"") : "false");
    else
        printf("%" PRId64 "\n", id);
    return 0;
}

/* ---- local workers ---------------------------------------------------- */

typedef struct local {
    char endpoint[128];
    char cache[4096], logs[4096];
    char exe[4096];
    int n, executors;
    char heartbeat[16];
    pid_t *pids;
    int finishing;
    int tty, quiet;
    double started;
    uint64_t first_done;
} local;

static pid_t spawn_worker(local *l, int i) {
    char name[64], ex[16];
    snprintf(name, sizeof name, "local-%d", i);
    snprintf(ex, sizeof ex, "%d", l->executors);
    pid_t pid = fork();
    if (pid == 0) {
        /* A local worker does not outlive pvf run, however it ends. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() == 1)
            _exit(0);
        /* Local workers log to HOME/logs/worker-I.log, not over the progress bar. */
        char log[4200];
        snprintf(log, sizeof log, "%s/worker-%d.log", l->logs, i);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        char *args[] = {
            l->exe, "worker",  "--connect", l->endpoint,      "--executors", ex,  "--name",
            name,   "--cache", l->cache,    "--heartbeat-ms", l->heartbeat,  NULL};
        execv(l->exe, args);
        _exit(127);
    }
    return pid;
}

/* Restarts local workers that died (a crash in a trial kills its process;
 * the coordinator re-leases its job, this brings the capacity back). */
static void supervise(local *l) {
    for (int i = 0; i < l->n; i++) {
        int status;
        if (l->pids[i] > 0 && waitpid(l->pids[i], &status, WNOHANG) == l->pids[i]) {
            l->pids[i] = l->finishing ? 0 : spawn_worker(l, i);
        }
    }
}

static void progress(const pvf_coord_progress *p, void *ctx) {
    local *l = ctx;
    supervise(l);
    if (!l->tty || l->quiet)
        return;
    double el = pvf_now() - l->started;
    double frac = p->trials_planned ? (double)p->trials_done / (double)p->trials_planned : 0;
    if (frac > 1)
        frac = 1;
    double rate = el > 0 ? (double)(p->trials_done - l->first_done) / el : 0;
    double eta = rate > 0 ? (double)(p->trials_planned - p->trials_done) / rate : 0;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr,
            "\r[%s] strata %d/%d  trials %" PRIu64 "  %.0f/s  PVF %.4g [%.4g, %.4g]  ETA %d:%02d  ",
            bar, p->strata_stopped, p->strata, p->trials_done, rate, p->pvf, p->lo, p->hi,
            (int)eta / 60, (int)eta % 60);
    if (p->done)
        fputc('\n', stderr);
}

static volatile sig_atomic_t run_stop;
static void on_signal(int sig) {
    (void)sig;
    run_stop = 1;
}

static void stop_workers(local *l) {
    l->finishing = 1;
    double until = pvf_now() + 10;
    for (;;) {
        int alive = 0;
        for (int i = 0; i < l->n; i++) {
            if (l->pids[i] <= 0)
                continue;
            int status;
            if (waitpid(l->pids[i], &status, WNOHANG) == l->pids[i])
                l->pids[i] = 0;
            else
                alive++;
        }
        if (!alive)
            return;
        if (pvf_now() > until) {
            for (int i = 0; i < l->n; i++)
                if (l->pids[i] > 0)
                    kill(l->pids[i], SIGKILL);
            until = pvf_now() + 1e9;
        }
        usleep(20000);
    }
}

int pvf_cmd_run(int argc, char **argv) {
    static const struct option opts[] = {RUN_OPTIONS,
                                         {"workers", required_argument, 0, 'w'},
                                         {"executors", required_argument, 0, 'e'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"heartbeat-ms", required_argument, 0, 'h'},
                                         {"trial-deadline-ms", required_argument, 0, 't'},
                                         {0, 0, 0, 0}};
    run_flags f;
    char fault[32], format[32], dsn[4096];
    int rc = parse_spec("run", argc, argv, opts, &f, fault, format);
    if (rc)
        return rc;
    pvf_db *db;
    int64_t id;
    int existing;
    if ((rc = open_campaign("run", &f, 1, &db, &id, &existing, dsn, sizeof dsn)))
        return rc;
    pvf_db_close(db);
    if (!f.quiet && !f.json)
        fprintf(stderr, "pvf run: campaign %" PRId64 " %s\n", id,
                existing == 2 ? "already finished"
                : existing    ? "resumed"
                              : "created");

    local l = {.executors = f.executors ? f.executors : 1, .quiet = f.quiet, .tty = isatty(2)};
    snprintf(l.heartbeat, sizeof l.heartbeat, "%d", f.heartbeat_ms ? f.heartbeat_ms : 1000);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    l.n = f.workers ? f.workers : (int)(cores > 0 ? cores : 1);
    if (existing != 2) {
        char home[4000], dir[64];
        pvf_err err;
        if (pvf_home_default(home, sizeof home, &err))
            return cli_fail("run", 1, "%s", err.msg);
        snprintf(l.cache, sizeof l.cache, "%s/cache", home);
        snprintf(l.logs, sizeof l.logs, "%s/logs", home);
        mkdir(home, 0755);
        mkdir(l.logs, 0755);
        snprintf(dir, sizeof dir, "/tmp/pvf-run-XXXXXX");
        ssize_t n = readlink("/proc/self/exe", l.exe, sizeof l.exe - 1);
        if (n <= 0 || !mkdtemp(dir))
            return cli_fail("run", 1, "cannot prepare local workers: %s", strerror(errno));
        l.exe[n] = '\0';
        snprintf(l.endpoint, sizeof l.endpoint, "ipc://%s/coordinator", dir);
        l.pids = calloc((size_t)l.n, sizeof *l.pids);
        if (!l.pids)
            return cli_fail("run", 1, "out of memory");
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        pvf_coord_config cfg = {.dsn = dsn,
                                .bind = l.endpoint,
                                .only_campaign = id,
                                .exit_when_done = 1,
                                .stop = &run_stop,
                                .heartbeat_ms = f.heartbeat_ms,
                                .trial_deadline_ms = f.trial_deadline_ms,
                                .progress = progress,
                                .progress_ctx = &l,
                                .quiet = 1};
        l.started = pvf_now();
        fflush(NULL);
        for (int i = 0; i < l.n; i++)
            l.pids[i] = spawn_worker(&l, i);
        rc = pvf_coord_run(&cfg, &err);
        for (int i = 0; run_stop && i < l.n; i++)
            if (l.pids[i] > 0)
                kill(l.pids[i], SIGTERM);
        stop_workers(&l);
        free(l.pids);
        char sock[300];
        snprintf(sock, sizeof sock, "%s/coordinator", dir);
        unlink(sock);
        rmdir(dir);
        if (rc)
            return cli_fail("run", 1, "%s", err.msg);
        if (run_stop)
            return cli_fail("run", 1,
                            "interrupted: campaign %" PRId64
                            " is stored; run the same command again to resume it",
                            id);
        if (l.tty && !f.quiet)
            fputc('\n', stderr);
    }
    char sid[32];
    snprintf(sid, sizeof sid, "%" PRId64, id);
    /* The table per tensor or component (per stratum for bit strata and for
     * JSON, which carries every stratum's estimate and interval). */
    const char *by = f.json || strstr(f.spec.strata, "-bit") ? "stratum" : f.spec.strata;
    char *rargv[] = {
        "report", "--campaign", sid, "--db", dsn, "--format", f.json ? "json" : "table",
        "--by",   (char *)by,   NULL};
    return pvf_cmd_report(9, rargv);
}
