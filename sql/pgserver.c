/* pgserver.c - the private PostgreSQL server under a pvf home, for `pvf run`
 * without --db: initdb on first use, started when stopped, database pvf.
 *
 * PostgreSQL refuses to run as root, so as root its programs run as the
 * postgres system user (fork, drop the groups and ids, exec), and the data
 * directory belongs to that user. The commands' output goes to
 * HOME/pgserver.log; an error quotes its last line. */
#include "db_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG_PORT      "5432"
#define SOCKET_NAME  "/.s.PGSQL." PG_PORT
#define SUN_PATH_MAX 107 /* sizeof sockaddr_un.sun_path - 1 */

/* Who runs the server: ourselves, or (as root) the postgres user. */
typedef struct pg_user {
    int drop;
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    int ngroups;
} pg_user;

typedef struct pg_paths {
    char home[PATH_MAX];
    char data[PATH_MAX + 16];
    char bin[PATH_MAX];
    char cmdlog[PATH_MAX + 16];
} pg_paths;

int pvf_home_default(char *out, size_t len, pvf_err *err) {
    const char *env = getenv("PVF_HOME");
    int n;
    if (env && *env)
        n = snprintf(out, len, "%s", env);
    else if (geteuid() == 0)
        n = snprintf(out, len, "/var/lib/pvf");
    else if ((env = getenv("XDG_DATA_HOME")) && *env)
        n = snprintf(out, len, "%s/pvf", env);
    else if ((env = getenv("HOME")) && *env)
        n = snprintf(out, len, "%s/.local/share/pvf", env);
    else
        return pvf_err_set(err, "pvf home: set PVF_HOME (no HOME or XDG_DATA_HOME)");
    if (n < 0 || (size_t)n >= len)
        return pvf_err_set(err, "pvf home: path too long");
    return 0;
}

/* The newest server under /usr/lib/postgresql/VERSION/bin. */
static int find_bindir(char *out, size_t len, pvf_err *err) {
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) != 0)
        return pvf_err_set(err, "PostgreSQL server: no /usr/lib/postgresql/*/bin/pg_ctl "
                                "(apt-get install postgresql)");
    long best = -1;
    size_t pick = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (v > best) {
            best = v;
            pick = i;
        }
    }
    int n = snprintf(out, len, "%s", g.gl_pathv[pick]);
    globfree(&g);
    out[n - (int)strlen("/pg_ctl")] = '\0';
    return 0;
}

static int paths_for(const char *home, pg_paths *p, pvf_err *err) {
    if (!home || !*home)
        return pvf_err_set(err, "pvf home: empty path");
    char cwd[PATH_MAX] = "";
    if (home[0] != '/' && !getcwd(cwd, sizeof cwd))
        return pvf_err_set(err, "pvf home %s: cannot resolve the current directory: %s", home,
                           strerror(errno));
    int n = snprintf(p->home, sizeof p->home, "%s%s%s", cwd, *cwd ? "/" : "", home);
    if (n < 0 || (size_t)n >= sizeof p->home - 64)
        return pvf_err_set(err, "pvf home %s: path too long", home);
    while (n > 1 && p->home[n - 1] == '/')
        p->home[--n] = '\0';
    snprintf(p->data, sizeof p->data, "%s/postgres", p->home);
    snprintf(p->cmdlog, sizeof p->cmdlog, "%s/pgserver.log", p->home);
    size_t sock = strlen(p->data) + strlen(SOCKET_NAME);
    if (sock > SUN_PATH_MAX)
        return pvf_err_set(err,
                           "pvf home %s: the server's socket %s" SOCKET_NAME
                           " would be %zu bytes, more than the %d a unix socket path allows: "
                           "set PVF_HOME to a shorter directory",
                           p->home, p->data, sock, SUN_PATH_MAX);
    return 0;
}

int pvf_pgserver_dsn(const char *home, char *dsn, size_t dsn_len, pvf_err *err) {
    pg_paths p;
    if (paths_for(home, &p, err))
        return -1;
    /* conninfo values with spaces, quotes or backslashes are quoted. */
    char host[2 * PATH_MAX + 3];
    size_t k = 0;
    int quote = strpbrk(p.data, " '\\") != NULL;
    if (quote)
        host[k++] = '\'';
    for (const char *s = p.data; *s; s++) {
        if (*s == '\'' || *s == '\\')
            host[k++] = '\\';
        host[k++] = *s;
    }
    if (quote)
        host[k++] = '\'';
    host[k] = '\0';
    int n = snprintf(dsn, dsn_len, "host=%s port=" PG_PORT " dbname=pvf user=pvf", host);
    if (n < 0 || (size_t)n >= dsn_len)
        return pvf_err_set(err, "pvf home %s: DSN too long", p.home);
    return 0;
}

static int pg_user_get(pg_user *u, pvf_err *err) {
    memset(u, 0, sizeof *u);
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
        return pvf_err_set(err, "PostgreSQL refuses to run as root and there is no postgres "
                                "user to run it as (apt-get install postgresql)");
    u->drop = 1;
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    u->ngroups = 64;
    if (getgrouplist(pw->pw_name, pw->pw_gid, u->groups, &u->ngroups) < 0)
        u->ngroups = 1, u->groups[0] = pw->pw_gid;
    return 0;
}

/* Can the server's user search directory path (x permission)? */
static int user_can_search(const pg_user *u, const struct stat *st) {
    if (st->st_uid == u->uid)
        return (st->st_mode & S_IXUSR) != 0;
    for (int i = 0; i < u->ngroups; i++)
        if (st->st_gid == u->groups[i])
            return (st->st_mode & S_IXGRP) != 0;
    return (st->st_mode & S_IXOTH) != 0;
}

/* As root: every directory from / down to home must be searchable by the
 * postgres user, or it cannot reach its data directory. */
static int check_traversal(const pg_user *u, const char *home, pvf_err *err) {
    if (!u->drop)
        return 0;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", home);
    for (char *s = path + 1;; s++) {
        char c = *s;
        if (c != '/' && c != '\0')
            continue;
        *s = '\0';
        struct stat st;
        if (stat(path, &st) == 0 && !user_can_search(u, &st))
            return pvf_err_set(err,
                               "the postgres user cannot enter %s (mode %03o): the private "
                               "server under %s needs it (chmod o+x %s, or set PVF_HOME to a "
                               "directory it can reach)",
                               path, (unsigned)(st.st_mode & 0777), home, path);
        *s = c;
        if (c == '\0')
            break;
    }
    return 0;
}

static int mkdir_p(const char *path, mode_t mode, pvf_err *err) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1;; s++) {
        char c = *s;
        if (c != '/' && c != '\0')
            continue;
        *s = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return pvf_err_set(err, "pvf home: cannot create %s: %s", buf, strerror(errno));
        *s = c;
        if (c == '\0')
            break;
    }
    return 0;
}

/* "LAST LINE (log PATH)": the last non-empty line of a log file, for error
 * messages. */
static void last_line(const char *path, char *out, size_t len) {
    snprintf(out, len, "see %.*s", (int)len - 8, path);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char buf[4096];
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    char *start = strrchr(buf, '\n');
    start = start ? start + 1 : buf;
    if (*start)
        snprintf(out, len, "%.300s (log %.*s)", start, (int)len - 320, path);
}

/* Runs argv (argv[0] a full path) as the server's user, output appended to
 * the command log; returns its exit status, or -1 if it could not run. */
static int run_as(const pg_user *u, const pg_paths *p, char *const argv[], pvf_err *err) {
    int log = open(p->cmdlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0)
        return pvf_err_set(err, "cannot write %s: %s", p->cmdlog, strerror(errno));
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        close(log);
        if (devnull >= 0)
            close(devnull);
        return pvf_err_set(err, "cannot start %s: %s", argv[0], strerror(errno));
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(log, 1);
        dup2(log, 2);
        if (u->drop && (setgroups((size_t)u->ngroups, u->groups) != 0 || setgid(u->gid) != 0 ||
                        setuid(u->uid) != 0))
            _exit(126);
        if (chdir("/") != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    close(log);
    if (devnull >= 0)
        close(devnull);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return pvf_err_set(err, "waiting for %s: %s", argv[0], strerror(errno));
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 126)
            return pvf_err_set(err, "cannot switch to the postgres user to run %s", argv[0]);
        if (WEXITSTATUS(status) == 127)
            return pvf_err_set(err, "cannot run %s", argv[0]);
        return WEXITSTATUS(status);
    }
    return pvf_err_set(err, "%s died of signal %d", argv[0], WTERMSIG(status));
}

/* Runs a PostgreSQL program from the bin directory with up to 12 args. */
static int pg_tool(const pg_user *u, const pg_paths *p, const char *tool, const char *const *args,
                   pvf_err *err) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", p->bin, tool);
    char *argv[16] = {path};
    int k = 1;
    for (; args[k - 1] && k < 15; k++)
        argv[k] = (char *)args[k - 1];
    argv[k] = NULL;
    return run_as(u, p, argv, err);
}

static int initialized(const pg_paths *p) {
    char f[PATH_MAX + 32];
    snprintf(f, sizeof f, "%s/PG_VERSION", p->data);
    return access(f, F_OK) == 0;
}

static int do_initdb(const pg_user *u, const pg_paths *p, pvf_err *err) {
    if (mkdir(p->data, 0700) != 0 && errno != EEXIST)
        return pvf_err_set(err, "cannot create %s: %s", p->data, strerror(errno));
    if (u->drop && chown(p->data, u->uid, u->gid) != 0)
        return pvf_err_set(err, "cannot hand %s to the postgres user: %s", p->data,
                           strerror(errno));
    const char *args[] = {"-D", p->data, "-U",          "pvf", "--auth=trust",
                          "-E", "UTF8",  "--no-locale", NULL};
    int rc = pg_tool(u, p, "initdb", args, err);
    if (rc < 0)
        return -1;
    if (rc != 0) {
        char line[PATH_MAX + 400];
        last_line(p->cmdlog, line, sizeof line);
        return pvf_err_set(err, "initdb %s failed: %s", p->data, line);
    }
    /* Unix socket only, in the data directory; a fixed port names it. */
    char conf[PATH_MAX + 32];
    snprintf(conf, sizeof conf, "%s/postgresql.conf", p->data);
    FILE *f = fopen(conf, "a");
    if (!f)
        return pvf_err_set(err, "cannot append to %s: %s", conf, strerror(errno));
    /* Bulk trial inserts: fewer checkpoints (each makes the next writes of
     * a page log the whole page), and those page images compressed. */
    fprintf(f, "\n# pvf private server\nlisten_addresses = ''\nport = " PG_PORT
               "\nmax_wal_size = '4GB'\ncheckpoint_timeout = '15min'\nwal_compression = on"
               "\nunix_socket_directories = '");
    for (const char *s = p->data; *s; s++)
        fputs(*s == '\'' ? "''" : (char[]){*s, 0}, f);
    fputs("'\n", f);
    if (fclose(f) != 0)
        return pvf_err_set(err, "cannot write %s", conf);
    return 0;
}

/* 1 running, 0 stopped, -1 error. */
static int server_running(const pg_user *u, const pg_paths *p, pvf_err *err) {
    const char *args[] = {"status", "-D", p->data, NULL};
    int rc = pg_tool(u, p, "pg_ctl", args, err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return 1;
    if (rc == 3)
        return 0;
    char line[PATH_MAX + 400];
    last_line(p->cmdlog, line, sizeof line);
    return pvf_err_set(err, "pg_ctl status -D %s: exit %d: %s", p->data, rc, line);
}

static int server_start(const pg_user *u, const pg_paths *p, pvf_err *err) {
    char log[PATH_MAX + 24];
    snprintf(log, sizeof log, "%s/log", p->data);
    const char *args[] = {"-D", p->data, "-l", log, "-w", "-t", "60", "start", NULL};
    /* After a crash the old server's children may hold its shared memory for
     * a moment (the new postmaster refuses to start); a later try after they
     * exit succeeds. */
    for (int attempt = 0; attempt < 10; attempt++) {
        int rc = pg_tool(u, p, "pg_ctl", args, err);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return 0;
        sleep(1);
    }
    char line[PATH_MAX + 400];
    last_line(log, line, sizeof line);
    return pvf_err_set(err, "cannot start the PostgreSQL server in %s: %s", p->data, line);
}

static int create_database(const pg_paths *p, pvf_err *err) {
    char dsn[2 * PATH_MAX + 64], admin[2 * PATH_MAX + 96];
    if (pvf_pgserver_dsn(p->home, dsn, sizeof dsn, err))
        return -1;
    snprintf(admin, sizeof admin, "%s dbname=postgres", dsn);
    pvf_db *db;
    if (pvf_db_open(&db, admin, err))
        return -1;
    pvf_table t;
    int rc = pvf_db_query(db, "SELECT 1 FROM pg_database WHERE datname = 'pvf'", 0, NULL, &t, err);
    if (rc == 0) {
        int have = t.nrows > 0;
        pvf_table_free(&t);
        if (!have)
            rc = pvf_db_exec(db, "CREATE DATABASE pvf", "creating database pvf", err);
    }
    pvf_db_close(db);
    return rc;
}

/* Locks HOME/pgserver.lock (exclusive, released by close): concurrent pvf
 * processes must not initdb or start the same server at once. */
static int lock_home(const pg_paths *p, pvf_err *err) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/pgserver.lock", p->home);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return pvf_err_set(err, "cannot open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            close(fd);
            return pvf_err_set(err, "cannot lock %s: %s", path, strerror(errno));
        }
    return fd;
}

/* Paths, user and bin directory for a home. */
static int prepare(const char *home, pg_paths *p, pg_user *u, pvf_err *err) {
    if (paths_for(home, p, err) || pg_user_get(u, err) || find_bindir(p->bin, sizeof p->bin, err))
        return -1;
    return 0;
}

int pvf_pgserver_exists(const char *home) {
    pg_paths p;
    return paths_for(home, &p, NULL) == 0 && initialized(&p);
}

int pvf_pgserver_ensure(const char *home, char *dsn, size_t dsn_len, pvf_err *err) {
    pg_paths p;
    pg_user u;
    if (prepare(home, &p, &u, err) || mkdir_p(p.home, u.drop ? 0755 : 0700, err) ||
        check_traversal(&u, p.home, err))
        return -1;
    int lock = lock_home(&p, err);
    if (lock < 0)
        return -1;
    int rc = 0;
    if (!initialized(&p))
        rc = do_initdb(&u, &p, err);
    int running = rc ? -1 : server_running(&u, &p, err);
    if (running < 0)
        rc = -1;
    else if (running == 0)
        rc = server_start(&u, &p, err);
    if (rc == 0)
        rc = create_database(&p, err);
    close(lock);
    if (rc == 0)
        rc = pvf_pgserver_dsn(p.home, dsn, dsn_len, err);
    return rc;
}

int pvf_pgserver_status(const char *home, pvf_err *err) {
    pg_paths p;
    pg_user u;
    if (prepare(home, &p, &u, err))
        return -1;
    if (!initialized(&p))
        return pvf_err_set(err, "no private server under %s (pvf db start creates it)", p.home);
    return server_running(&u, &p, err);
}

int pvf_pgserver_stop(const char *home, pvf_err *err) {
    pg_paths p;
    pg_user u;
    if (prepare(home, &p, &u, err))
        return -1;
    if (!initialized(&p))
        return pvf_err_set(err, "no private server under %s", p.home);
    int lock = lock_home(&p, err);
    if (lock < 0)
        return -1;
    int running = server_running(&u, &p, err), rc = running < 0 ? -1 : 0;
    if (running == 1) {
        const char *args[] = {"-D", p.data, "-m", "fast", "-w", "-t", "60", "stop", NULL};
        int st = pg_tool(&u, &p, "pg_ctl", args, err);
        if (st != 0) {
            char line[PATH_MAX + 400];
            last_line(p.cmdlog, line, sizeof line);
            rc = st < 0 ? -1 : pvf_err_set(err, "cannot stop the server in %s: %s", p.data, line);
        }
    }
    close(lock);
    return rc;
}
