/* pvf worker - runs trials for a coordinator. */
#include "cli.h"
#include "keys.h"
#include "pvf_client.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The first SIGTERM or SIGINT drains; a later one leaves at once. A repeat
 * within a second is the same request delivered twice, not a second one:
 * timeout(1) and some supervisors signal both the process and its group. */
static volatile sig_atomic_t stop_flag, abort_flag;
static struct timespec first_signal; /* written and read by the handler only */

static void on_signal(int sig) {
    (void)sig;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!stop_flag) {
        first_signal = now;
        stop_flag = 1;
    } else if ((now.tv_sec - first_signal.tv_sec) * 1000 +
                   (now.tv_nsec - first_signal.tv_nsec) / 1000000 >=
               1000)
        abort_flag = 1;
}

typedef struct worker_flags {
    pvf_client_config cfg;
    const char *key_file, *server_key;
} worker_flags;

static int worker_flag(const char *cmd, int opt, const char *arg, void *ctx) {
    worker_flags *f = ctx;
    int64_t v;
    switch (opt) {
    case 'c':
        f->cfg.endpoint = arg;
        return 1;
    case 'e':
        if (cli_int64(cmd, "--executors", arg, 1, 1024, &v))
            return -1;
        f->cfg.executors = (int)v;
        return 1;
    case 'n':
        f->cfg.name = arg;
        return 1;
    case 'C':
        f->cfg.cache_dir = arg;
        return 1;
    case 'k':
        f->key_file = arg;
        return 1;
    case 's':
        f->server_key = arg;
        return 1;
    case 'h':
        if (cli_int64(cmd, "--heartbeat-ms", arg, 10, 60000, &v))
            return -1;
        f->cfg.heartbeat_ms = (int)v;
        return 1;
    case 'f':
        f->cfg.fake = 1;
        return 1;
    case 'N':
        f->cfg.naive = 1;
        return 1;
    default:
        return 0;
    }
}

int pvf_cmd_worker(int argc, char **argv) {
    cli_common common;
    static const struct option opts[] = {{"connect", required_argument, 0, 'c'},
                                         {"executors", required_argument, 0, 'e'},
                                         {"name", required_argument, 0, 'n'},
                                         {"cache", required_argument, 0, 'C'},
                                         {"key", required_argument, 0, 'k'},
                                         {"server-key", required_argument, 0, 's'},
                                         {"heartbeat-ms", required_argument, 0, 'h'},
                                         {"fake-trials", no_argument, 0, 'f'},
                                         {"naive", no_argument, 0, 'N'},
                                         {0, 0, 0, 0}};
    worker_flags f = {0};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    f.cfg.executors = cores > 0 ? (int)cores : 1;
    int rc = cli_parse("worker", argc, argv, opts, &common, worker_flag, &f);
    if (rc)
        return rc;
    if (!f.cfg.endpoint)
        return cli_fail("worker", 2, "--connect ENDPOINT is required");
    int tcp = strncmp(f.cfg.endpoint, "tcp://", 6) == 0;
    if (tcp && (!f.key_file || !f.server_key))
        return cli_fail("worker", 2,
                        "%s: TCP needs CURVE: --key FILE (pvf keygen) and --server-key KEY",
                        f.cfg.endpoint);
    char pub[41], sec[41], server[41];
    pvf_err err;
    if (f.key_file || f.server_key) {
        if (!f.key_file || !f.server_key)
            return cli_fail("worker", 2, "--key and --server-key go together");
        if (cli_read_keypair(f.key_file, pub, sec, &err) ||
            cli_read_public(f.server_key, server, &err))
            return cli_fail("worker", 2, "%s", err.msg);
        f.cfg.public_key = pub;
        f.cfg.secret_key = sec;
        f.cfg.server_key = server;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask); /* one handler at a time: first_signal */
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    f.cfg.stop = &stop_flag;
    f.cfg.abort = &abort_flag;
    if (pvf_client_run(&f.cfg, &err))
        return cli_fail("worker", 1, "%s", err.msg);
    return 0;
}
