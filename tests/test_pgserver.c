/* The private PostgreSQL server under a temporary pvf home: created on first
 * use, restarted after a stop, restarted after its postmaster was killed
 * (stale postmaster.pid), stopped. As root this runs the server as the
 * postgres user and checks that it does, and that a home the postgres user
 * cannot reach is refused by name. */
#include "pvf_sql.h"
#include "test.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char base[64];  /* mkdtemp: holds the homes */
static char home[256]; /* base/home */
static char dsn[1024];

static long postmaster_pid(void) {
    char path[320];
    snprintf(path, sizeof path, "%s/postgres/postmaster.pid", home);
    FILE *f = fopen(path, "r");
    long pid = -1;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = -1;
        fclose(f);
    }
    return pid;
}

/* Connects and runs one query; returns its first cell (static buffer) or NULL. */
static const char *query1(const char *sql) {
    static char out[256];
    pvf_db *db;
    pvf_err err;
    if (pvf_db_open(&db, dsn, &err))
        return NULL;
    pvf_table t;
    const char *r = NULL;
    if (pvf_db_query(db, sql, 0, NULL, &t, &err) == 0) {
        const char *v = pvf_table_get(&t, 0, 0);
        snprintf(out, sizeof out, "%s", v ? v : "(null)");
        r = out;
        pvf_table_free(&t);
    } else {
        fprintf(stderr, "  query: %s\n", err.msg);
    }
    pvf_db_close(db);
    return r;
}

static void test_create(void) {
    pvf_err err;
    CHECK(!pvf_pgserver_exists(home));
    int rc = pvf_pgserver_ensure(home, dsn, sizeof dsn, &err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "  ensure: %s\n", err.msg);
        return;
    }
    CHECK(pvf_pgserver_exists(home));
    char want[512];
    snprintf(want, sizeof want, "host=%s/postgres port=5432 dbname=pvf user=pvf", home);
    CHECK(strcmp(dsn, want) == 0);
    const char *db = query1("SELECT current_database()");
    CHECK(db && strcmp(db, "pvf") == 0);
    CHECK(query1("CREATE TABLE kept AS SELECT 42 AS x") != NULL);
    CHECK(pvf_pgserver_status(home, &err) == 1);
    /* no TCP: the server listens on its unix socket only */
    const char *listen = query1("SHOW listen_addresses");
    CHECK(listen && strcmp(listen, "") == 0);
    long pid = postmaster_pid();
    CHECK(pid > 0);
    if (geteuid() == 0 && pid > 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/%ld", pid);
        struct stat st;
        struct passwd *pw = getpwnam("postgres");
        CHECK(stat(proc, &st) == 0 && pw && st.st_uid == pw->pw_uid);
    }
    /* a second ensure of a running server changes nothing */
    char dsn2[1024];
    CHECK(pvf_pgserver_ensure(home, dsn2, sizeof dsn2, &err) == 0);
    CHECK(strcmp(dsn, dsn2) == 0);
    CHECK(postmaster_pid() == pid);
}

static void test_stop_and_restart(void) {
    pvf_err err;
    CHECK(pvf_pgserver_stop(home, &err) == 0);
    CHECK(pvf_pgserver_status(home, &err) == 0);
    CHECK(query1("SELECT 1") == NULL);
    /* stopping a stopped server is no error */
    CHECK(pvf_pgserver_stop(home, &err) == 0);
    CHECK(pvf_pgserver_ensure(home, dsn, sizeof dsn, &err) == 0);
    const char *x = query1("SELECT x FROM kept");
    CHECK(x && strcmp(x, "42") == 0);
}

static void test_restart_after_kill(void) {
    /* kill -9: postmaster.pid stays behind, naming a dead process */
    long pid = postmaster_pid();
    CHECK(pid > 0);
    if (pid <= 0)
        return;
    CHECK(kill((pid_t)pid, SIGKILL) == 0);
    for (int i = 0; i < 200 && kill((pid_t)pid, 0) == 0; i++)
        usleep(25000);
    CHECK(kill((pid_t)pid, 0) != 0);
    CHECK(postmaster_pid() == pid); /* the stale pid file */
    pvf_err err;
    int rc = pvf_pgserver_ensure(home, dsn, sizeof dsn, &err);
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "  ensure after kill -9: %s\n", err.msg);
    long now = postmaster_pid();
    CHECK(now > 0 && now != pid);
    const char *x = query1("SELECT x FROM kept");
    CHECK(x && strcmp(x, "42") == 0);
}

static void test_bad_homes(void) {
    pvf_err err;
    char d[1024], h[512];
    /* the socket path limit */
    snprintf(h, sizeof h, "%s/%0100d", base, 0);
    CHECK(pvf_pgserver_ensure(h, d, sizeof d, &err) == -1);
    CHECK(strstr(err.msg, "107") != NULL && strstr(err.msg, "PVF_HOME") != NULL);
    /* as root: a directory the postgres user cannot enter, named */
    if (geteuid() == 0) {
        snprintf(h, sizeof h, "%s/closed", base);
        CHECK(mkdir(h, 0700) == 0);
        snprintf(h, sizeof h, "%s/closed/home", base);
        CHECK(pvf_pgserver_ensure(h, d, sizeof d, &err) == -1);
        char closed[300];
        snprintf(closed, sizeof closed, "cannot enter %s/closed ", base);
        CHECK(strstr(err.msg, closed) != NULL);
        fprintf(stderr, "  (closed home: %s)\n", err.msg);
    }
    /* status and stop of a home without a server */
    snprintf(h, sizeof h, "%s/none", base);
    CHECK(pvf_pgserver_status(h, &err) == -1);
    CHECK(strstr(err.msg, "no private server") != NULL);
    CHECK(!pvf_pgserver_exists(h));
}

static void test_home_default(void) {
    char out[PATH_MAX];
    pvf_err err;
    const char *old = getenv("PVF_HOME");
    char saved[PATH_MAX] = "";
    if (old)
        snprintf(saved, sizeof saved, "%s", old);
    setenv("PVF_HOME", "/some/where", 1);
    CHECK(pvf_home_default(out, sizeof out, &err) == 0 && strcmp(out, "/some/where") == 0);
    unsetenv("PVF_HOME");
    CHECK(pvf_home_default(out, sizeof out, &err) == 0);
    if (geteuid() == 0) {
        CHECK(strcmp(out, "/var/lib/pvf") == 0);
    } else {
        CHECK(strstr(out, "/pvf") != NULL);
    }
    if (*saved)
        setenv("PVF_HOME", saved, 1);
}

int main(void) {
    snprintf(base, sizeof base, "/tmp/pvf-home.XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    chmod(base, 0711); /* as root, the postgres user must reach the home */
    snprintf(home, sizeof home, "%s/home", base);
    RUN(test_create);
    RUN(test_stop_and_restart);
    RUN(test_restart_after_kill);
    RUN(test_bad_homes);
    RUN(test_home_default);
    pvf_err err;
    if (pvf_pgserver_exists(home) && pvf_pgserver_stop(home, &err))
        fprintf(stderr, "stop: %s\n", err.msg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", base);
    return test_summary();
}
