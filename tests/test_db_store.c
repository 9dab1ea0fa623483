/* The PostgreSQL store against a real server (the ctest fixture "pg", DSN
 * in the file $PVF_TEST_DSN_FILE): migrations, idempotent trial inserts,
 * and every reporting view against the same figures computed here in C.
 * Each run works in a database of its own, dropped at the end. */
#include "db_internal.h"
#include "pvf_stats.h"
#include "test.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char server_dsn[1024]; /* the fixture's, database postgres */
static char dsn[1200];        /* this run's database */
static char dbname[64];

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static pvf_db *open_db(const char *d) {
    pvf_db *db = NULL;
    pvf_err err;
    if (pvf_db_open(&db, d, &err)) {
        fprintf(stderr, "open: %s\n", err.msg);
        return NULL;
    }
    return db;
}

/* Runs SQL with text parameters; returns the first cell as a double (NAN
 * for NULL or no row), or -1e300 on error. */
static double sql1(pvf_db *db, const char *sql, int n, const char *const *params) {
    pvf_table t;
    pvf_err err;
    if (pvf_db_query(db, sql, n, params, &t, &err)) {
        fprintf(stderr, "sql: %s\n  in %s\n", err.msg, sql);
        return -1e300;
    }
    const char *v = pvf_table_get(&t, 0, 0);
    double x = v ? strtod(v, NULL) : NAN;
    if (v && strcmp(v, "t") == 0)
        x = 1;
    if (v && strcmp(v, "f") == 0)
        x = 0;
    pvf_table_free(&t);
    return x;
}

static int exec_ok(pvf_db *db, const char *sql) {
    pvf_err err;
    if (pvf_db_exec(db, sql, "exec", &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 0;
    }
    return 1;
}

/* ---- migrations ---------------------------------------------------------- */

static void test_migrate_twice(void) {
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    size_t n;
    pvf_migrations(&n);
    CHECK(n >= 2);
    int applied = -1;
    pvf_err err;
    CHECK(pvf_db_migrate(db, &applied, &err) == 0);
    CHECK_EQ_U64(applied, n);
    CHECK(pvf_db_migrate(db, &applied, &err) == 0);
    CHECK_EQ_U64(applied, 0);
    CHECK_EQ_U64(sql1(db, "SELECT count(*) FROM pvf_schema_version", 0, NULL), n);
    pvf_db_close(db);
}

typedef struct migrator {
    const char *dsn;
    int rc, applied;
} migrator;

static void *migrate_thread(void *arg) {
    migrator *m = arg;
    pvf_db *db = open_db(m->dsn);
    pvf_err err;
    m->rc = db ? pvf_db_migrate(db, &m->applied, &err) : -1;
    if (m->rc)
        fprintf(stderr, "concurrent migrate: %s\n", db ? err.msg : "no connection");
    pvf_db_close(db);
    return NULL;
}

static void test_migrate_concurrent(void) {
    /* A fresh database, two migrators at once: one applies everything, the
     * other waits on the lock and applies nothing. */
    pvf_db *admin = open_db(server_dsn);
    CHECK(admin != NULL);
    if (!admin)
        return;
    char sql[160], d2[1300];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s_c", dbname);
    CHECK(exec_ok(admin, sql));
    snprintf(d2, sizeof d2, "%s dbname=%s_c", server_dsn, dbname);
    for (int round = 0; round < 3; round++) {
        migrator m[2] = {{d2, -1, -1}, {d2, -1, -1}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&th[i], NULL, migrate_thread, &m[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        size_t n;
        pvf_migrations(&n);
        CHECK(m[0].rc == 0 && m[1].rc == 0);
        CHECK_EQ_U64(m[0].applied + m[1].applied, round == 0 ? n : 0);
    }
    snprintf(sql, sizeof sql, "DROP DATABASE %s_c", dbname);
    CHECK(exec_ok(admin, sql));
    pvf_db_close(admin);
}

static void test_bad_dsn(void) {
    pvf_db *db = (pvf_db *)1;
    pvf_err err;
    CHECK(pvf_db_open(&db, "host=/nonexistent/pvf-sock dbname=nothere password=sekrit", &err) ==
          -1);
    CHECK(db == NULL);
    CHECK(strstr(err.msg, "/nonexistent/pvf-sock") != NULL);
    CHECK(strstr(err.msg, "nothere") != NULL);
    CHECK(strstr(err.msg, "sekrit") == NULL);
    CHECK(pvf_db_open(&db, "host=/x nosuchkeyword=1", &err) == -1);
    CHECK(strstr(err.msg, "nosuchkeyword") != NULL);
    /* a server that is there, a database that is not */
    char d[1300];
    snprintf(d, sizeof d, "%s dbname=pvf_no_such_db", server_dsn);
    CHECK(pvf_db_open(&db, d, &err) == -1);
    CHECK(strstr(err.msg, "pvf_no_such_db") != NULL);
    fprintf(stderr, "  (bad DSN error: %s)\n", err.msg);
}

/* ---- trials -------------------------------------------------------------- */

static const char *const names[] = {"conv1.weight", "tab\there", "new\nline", "back\\slash",
                                    "cr\rx",        "\\N",       "ünï©ødé",   ""};
#define NNAMES 8

static void make_rows(pvf_trial_row *rows, size_t n, int64_t campaign, int32_t stratum,
                      uint64_t first) {
    for (size_t i = 0; i < n; i++) {
        uint64_t t = first + i;
        double specials[] = {NAN, INFINITY, -INFINITY, -0.0, 3.4028234663852886e38, 1e-45};
        rows[i] = (pvf_trial_row){
            .campaign = campaign,
            .stratum = stratum,
            .tensor = names[t % NNAMES],
            .rec = {.trial = t,
                    .element = t * 31 + 7,
                    .mask = 1u << (t % 32),
                    .old_word = 0xffffffffu - (uint32_t)t,
                    .new_word = (uint32_t)t,
                    .old_value = (float)(t * 0.1),
                    .new_value = specials[t % 6],
                    .value = (double)(t % 7) / 7.0,
                    .incorrect = (uint32_t)(t % 7),
                    .nonfinite = (uint32_t)(t % 3),
                    .flags = (uint32_t)(t % 8)},
            .worker = t % 2 ? 5 : 0,
            .attempt = (uint32_t)(t % 4),
        };
    }
}

static int64_t new_campaign(pvf_db *db, const char *kind) {
    const char *params[] = {kind};
    return (int64_t)sql1(db,
                         "INSERT INTO campaigns (spec_hash, spec, strata_kind, confidence, margin,"
                         " max_trials, model_dir, format, fault) VALUES ('h', '{\"a\": 1}', $1,"
                         " 0.95, 0.01, 1000, 'models/x', 'fp32', 'bit') RETURNING id",
                         1, params);
}

static void check_inserts(pvf_insert_method method, int32_t stratum) {
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    pvf_db_set_insert_method(db, method);
    int64_t c = new_campaign(db, "tensor");
    enum { N = 1000 };
    pvf_trial_row *rows = calloc(2 * N, sizeof *rows);
    size_t ins = 99;
    pvf_err err;
    make_rows(rows, N, c, stratum, 0);
    CHECK(pvf_db_insert_trials(db, rows, N, &ins, &err) == 0);
    CHECK_EQ_U64(ins, N);
    /* replay: nothing added, no error */
    CHECK(pvf_db_insert_trials(db, rows, N, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 0);
    /* half-overlapping: the new half */
    make_rows(rows, N, c, stratum, N / 2);
    CHECK(pvf_db_insert_trials(db, rows, N, &ins, &err) == 0);
    CHECK_EQ_U64(ins, N / 2);
    /* a batch with a key twice, one of them new */
    make_rows(rows, 2, c, stratum, 5000);
    rows[1] = rows[0];
    CHECK(pvf_db_insert_trials(db, rows, 2, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 1);
    /* an empty batch */
    CHECK(pvf_db_insert_trials(db, rows, 0, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 0);
    char id[24], st[16];
    snprintf(id, sizeof id, "%" PRId64, c);
    snprintf(st, sizeof st, "%d", stratum);
    const char *p[] = {id, st};
    CHECK_EQ_U64(sql1(db, "SELECT count(*) FROM trials WHERE campaign_id = $1", 1, p),
                 N + N / 2 + 1);
    CHECK_EQ_U64(sql1(db, "SELECT count(DISTINCT trial) FROM trials WHERE campaign_id = $1", 1, p),
                 N + N / 2 + 1);

    /* every field read back as written */
    make_rows(rows, N + N / 2, c, stratum, 0);
    pvf_table t;
    CHECK(
        pvf_db_query(db,
                     "SELECT trial, tensor, element, mask, old_word, new_word, old_value,"
                     " new_value, value, incorrect, nonfinite, flags, worker_id, attempt,"
                     " stratum FROM trials WHERE campaign_id = $1 AND trial < 1500 ORDER BY trial",
                     1, p, &t, &err) == 0);
    CHECK_EQ_U64(t.nrows, N + N / 2);
    int bad = 0;
    for (int r = 0; r < t.nrows && r < N + N / 2; r++) {
        const pvf_trial_rec *e = &rows[r].rec;
        const char *nv = pvf_table_get(&t, r, 7);
        double new_value = strcmp(nv, "NaN") == 0         ? NAN
                           : strcmp(nv, "Infinity") == 0  ? INFINITY
                           : strcmp(nv, "-Infinity") == 0 ? -INFINITY
                                                          : strtod(nv, NULL);
        int ok = strtoull(pvf_table_get(&t, r, 0), NULL, 10) == e->trial &&
                 strcmp(pvf_table_get(&t, r, 1), rows[r].tensor) == 0 &&
                 strtoull(pvf_table_get(&t, r, 2), NULL, 10) == e->element &&
                 strtoull(pvf_table_get(&t, r, 3), NULL, 10) == e->mask &&
                 strtoull(pvf_table_get(&t, r, 4), NULL, 10) == e->old_word &&
                 strtoull(pvf_table_get(&t, r, 5), NULL, 10) == e->new_word &&
                 (float)strtod(pvf_table_get(&t, r, 6), NULL) == (float)e->old_value &&
                 (isnan(e->new_value) ? isnan(new_value)
                                      : (float)new_value == (float)e->new_value &&
                                            signbit(new_value) == signbit(e->new_value)) &&
                 strtod(pvf_table_get(&t, r, 8), NULL) == e->value &&
                 strtoul(pvf_table_get(&t, r, 9), NULL, 10) == e->incorrect &&
                 strtoul(pvf_table_get(&t, r, 10), NULL, 10) == e->nonfinite &&
                 strtoul(pvf_table_get(&t, r, 11), NULL, 10) == e->flags &&
                 (rows[r].worker > 0
                      ? pvf_table_get(&t, r, 12) && strtoll(pvf_table_get(&t, r, 12), NULL, 10) == 5
                      : pvf_table_get(&t, r, 12) == NULL) &&
                 strtoul(pvf_table_get(&t, r, 13), NULL, 10) == rows[r].attempt &&
                 atoi(pvf_table_get(&t, r, 14)) == stratum;
        if (!ok && bad++ < 3)
            fprintf(stderr, "  row %d differs (tensor '%s' vs '%s', new_value %s)\n", r,
                    pvf_table_get(&t, r, 1), rows[r].tensor, nv);
    }
    CHECK(bad == 0);
    pvf_table_free(&t);

    /* a row out of range fails the batch, naming it, and stores nothing */
    make_rows(rows, 3, c, stratum, 9000);
    rows[2].rec.trial = UINT64_MAX;
    CHECK(pvf_db_insert_trials(db, rows, 3, &ins, &err) == -1);
    CHECK(strstr(err.msg, "row 2") != NULL);
    CHECK_EQ_U64(
        sql1(db, "SELECT count(*) FROM trials WHERE campaign_id = $1 AND trial >= 9000", 1, p), 0);
    /* the connection is still usable after a failed batch */
    make_rows(rows, 3, c, stratum, 9000);
    CHECK(pvf_db_insert_trials(db, rows, 3, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 3);
    free(rows);
    pvf_db_close(db);
}

/* Batches inside the caller's transaction: committed or rolled back with
 * it; a failed batch leaves the transaction usable. */
static void check_caller_tx(pvf_insert_method method, int32_t stratum) {
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    pvf_db_set_insert_method(db, method);
    int64_t c = new_campaign(db, "tensor");
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, c);
    const char *p[] = {id};
    pvf_trial_row rows[20];
    size_t ins = 99;
    pvf_err err;
    make_rows(rows, 10, c, stratum, 0);
    CHECK(exec_ok(db, "BEGIN"));
    CHECK(pvf_db_insert_trials(db, rows, 10, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 10);
    CHECK(pvf_db_insert_trials(db, rows, 10, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 0);
    CHECK(exec_ok(db, "ROLLBACK"));
    CHECK_EQ_U64(sql1(db, "SELECT count(*) FROM trials WHERE campaign_id = $1", 1, p), 0);

    CHECK(exec_ok(db, "BEGIN"));
    CHECK(pvf_db_insert_trials(db, rows, 10, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 10);
    CHECK(sql1(db, "UPDATE campaigns SET state = 'done' WHERE id = $1", 1, p) != -1e300);
    /* a batch the server rejects (not UTF-8) fails alone */
    pvf_trial_row bad[2];
    make_rows(bad, 2, c, stratum, 100);
    bad[1].tensor = "bad\xff";
    CHECK(pvf_db_insert_trials(db, bad, 2, &ins, &err) == -1);
    CHECK(strstr(err.msg, "UTF8") != NULL);
    make_rows(rows, 20, c, stratum, 5);
    CHECK(pvf_db_insert_trials(db, rows, 20, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 15);
    CHECK(exec_ok(db, "COMMIT"));
    CHECK_EQ_U64(sql1(db, "SELECT count(*) FROM trials WHERE campaign_id = $1", 1, p), 25);
    pvf_table t;
    CHECK(pvf_db_query(db, "SELECT state FROM campaigns WHERE id = $1", 1, p, &t, &err) == 0);
    CHECK(t.nrows == 1 && strcmp(pvf_table_get(&t, 0, 0), "done") == 0);
    pvf_table_free(&t);
    /* and on its own again afterwards */
    make_rows(rows, 20, c, stratum, 20);
    CHECK(pvf_db_insert_trials(db, rows, 20, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 15);
    pvf_db_close(db);
}

static void test_insert_caller_tx(void) {
    check_caller_tx(PVF_INSERT_DIRECT, 0);
    check_caller_tx(PVF_INSERT_STAGE, 1);
}

static void test_insert_direct(void) {
    check_inserts(PVF_INSERT_DIRECT, 3);
}

static void test_insert_stage(void) {
    check_inserts(PVF_INSERT_STAGE, 4);
}

static void test_insert_denied(void) {
    /* a server-side failure inside the batch is returned, not hidden: a
     * role that may only read trials */
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    CHECK(exec_ok(db, "CREATE ROLE pvf_reader_test LOGIN"));
    CHECK(exec_ok(db, "GRANT SELECT ON trials TO pvf_reader_test"));
    char d[1400];
    snprintf(d, sizeof d, "%s user=pvf_reader_test", dsn);
    pvf_db *ro = open_db(d);
    CHECK(ro != NULL);
    if (ro) {
        pvf_trial_row rows[2];
        make_rows(rows, 2, 1, 0, 0);
        size_t ins = 7;
        pvf_err err;
        CHECK(pvf_db_insert_trials(ro, rows, 2, &ins, &err) == -1);
        CHECK(strstr(err.msg, "permission denied") != NULL);
        CHECK_EQ_U64(ins, 0);
        pvf_db_close(ro);
    }
    CHECK(exec_ok(db, "REVOKE ALL ON trials FROM pvf_reader_test"));
    CHECK(exec_ok(db, "DROP ROLE pvf_reader_test"));
    pvf_db_close(db);
}

/* ---- views --------------------------------------------------------------- */

typedef struct stratum {
    const char *tensor, *component;
    int bit;
    int64_t pop;
    double w, est, lo, hi;
    int stopped, converged, used;
} stratum;

static void put_strata(pvf_db *db, int64_t c, const stratum *s, int n, int with_estimates) {
    for (int i = 0; i < n; i++) {
        char id[24], h[16], bit[16], pop[24], w[40], est[40], lo[40], hi[40], used[24];
        snprintf(id, sizeof id, "%" PRId64, c);
        snprintf(h, sizeof h, "%d", i);
        snprintf(bit, sizeof bit, "%d", s[i].bit);
        snprintf(pop, sizeof pop, "%" PRId64, s[i].pop);
        snprintf(w, sizeof w, "%.17g", s[i].w);
        snprintf(est, sizeof est, "%.17g", s[i].est);
        snprintf(lo, sizeof lo, "%.17g", s[i].lo);
        snprintf(hi, sizeof hi, "%.17g", s[i].hi);
        snprintf(used, sizeof used, "%d", s[i].used);
        const char *p[] = {
            id,  h,  s[i].tensor, s[i].component,           s[i].bit >= 0 ? bit : NULL, pop, w,
            est, lo, hi,          s[i].stopped ? "t" : "f", s[i].converged ? "t" : "f", used};
        CHECK(sql1(db,
                   "INSERT INTO strata (campaign_id, stratum, name, tensor, component, bit,"
                   " targets, population, weight, max_trials) VALUES ($1, $2::int,"
                   " 's' || $2::text, $3::text, $4::text, $5::int,"
                   " ARRAY[coalesce($3::text, $4::text)], $6, $7, 1000)",
                   7, p) != -1e300);
        const char *q[] = {id, h, p[7], p[8], p[9], p[10], p[11], p[12]};
        if (with_estimates)
            CHECK(sql1(db,
                       "INSERT INTO estimates (campaign_id, stratum, trials_done, trials_used,"
                       " estimate, lo, hi, stopped, converged, stop_reason) VALUES ($1, $2,"
                       " $8::bigint, $8::bigint, $3, $4, $5, $6::bool, $7,"
                       " CASE WHEN $6::bool THEN 'margin' END)",
                       8, q) != -1e300);
    }
}

/* Normalizes weights to shares and draws estimates and intervals. */
static void draw(stratum *s, int n) {
    double total = 0;
    for (int i = 0; i < n; i++)
        total += (double)s[i].pop;
    for (int i = 0; i < n; i++) {
        s[i].w = (double)s[i].pop / total;
        s[i].est = urand() * 0.3;
        s[i].lo = s[i].est * urand();
        s[i].hi = s[i].est + (1 - s[i].est) * urand() * 0.2;
        s[i].stopped = urand() < 0.7;
        s[i].converged = s[i].stopped && urand() < 0.8;
        s[i].used = 100 + (int)(urand() * 900);
    }
}

/* A cell as a number: t/f as 1/0, NULL as NAN. */
static double num(const pvf_table *t, int r, int c) {
    const char *v = pvf_table_get(t, r, c);
    if (!v)
        return NAN;
    if (strcmp(v, "t") == 0 || strcmp(v, "f") == 0)
        return *v == 't';
    return strtod(v, NULL);
}

/* Checks one row of a view keyed by `key` against figures from C. */
static void check_view_row(pvf_db *db, const char *view, const char *keycol, int64_t c,
                           const char *key, int64_t used, double est, double lo, double hi,
                           int stopped, int converged, const char *kind) {
    char sql[400], id[24];
    snprintf(sql, sizeof sql,
             "SELECT trials_used, estimate, lo, hi, stopped, converged, %s FROM %s"
             " WHERE campaign_id = $1 AND %s::text = $2",
             kind ? "interval_kind" : "NULL", view, keycol);
    snprintf(id, sizeof id, "%" PRId64, c);
    const char *p[] = {id, key};
    pvf_table t;
    pvf_err err;
    CHECK(pvf_db_query(db, sql, 2, p, &t, &err) == 0);
    CHECK_EQ_U64(t.nrows, 1);
    if (t.nrows == 1) {
        CHECK_NEAR(num(&t, 0, 0), (double)used, 0);
        CHECK_NEAR(num(&t, 0, 1), est, 1e-12);
        CHECK_NEAR(num(&t, 0, 2), lo, 1e-12);
        CHECK_NEAR(num(&t, 0, 3), hi, 1e-12);
        CHECK(num(&t, 0, 4) == stopped);
        CHECK(num(&t, 0, 5) == converged);
        CHECK(!kind || strcmp(pvf_table_get(&t, 0, 6), kind) == 0);
    } else {
        fprintf(stderr, "  %s %s = %s: %d rows\n", view, keycol, key, t.nrows);
    }
    pvf_table_free(&t);
}

static int64_t view_rows(pvf_db *db, const char *view, int64_t c) {
    char sql[160], id[24];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE campaign_id = $1", view);
    snprintf(id, sizeof id, "%" PRId64, c);
    const char *p[] = {id};
    return (int64_t)sql1(db, sql, 1, p);
}

static void test_views_tensor_bit(void) {
    /* tensor-bit strata: 2 tensors x 3 bits; components group the tensors */
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    const char *tensors[] = {"fc1.weight", "fc2.weight"};
    stratum s[6];
    for (int i = 0; i < 6; i++)
        s[i] = (stratum){.tensor = tensors[i / 3],
                         .component = i < 3 ? "fc1" : "fc2",
                         .bit = 29 + i % 3,
                         .pop = i < 3 ? 48000 : 840};
    draw(s, 6);
    int64_t c = new_campaign(db, "tensor-bit");
    put_strata(db, c, s, 6, 1);

    /* per stratum: the estimates as written, Leveugle's n at margin 0.01 */
    for (int i = 0; i < 6; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", i);
        check_view_row(db, "pvf_stratum_estimate", "stratum", c, key, s[i].used, s[i].est, s[i].lo,
                       s[i].hi, s[i].stopped, s[i].converged, "cs");
        double N = (double)s[i].pop, e = 0.01, z = PVF_Z95;
        double n = ceil(N / (1 + e * e * (N - 1) / (z * z * 0.25)));
        char id[24];
        snprintf(id, sizeof id, "%" PRId64, c);
        const char *p[] = {id, key};
        CHECK_NEAR(sql1(db,
                        "SELECT leveugle_n FROM pvf_stratum_estimate WHERE campaign_id = $1"
                        " AND stratum = $2",
                        2, p),
                   n, 0.0);
    }
    /* per tensor, component (same grouping here) and bit: weighted combinations */
    for (int g = 0; g < 2; g++) {
        double sw = 0, se = 0, sl = 0, sh = 0;
        int64_t used = 0;
        int stopped = 1, conv = 1;
        for (int i = 3 * g; i < 3 * g + 3; i++) {
            sw += s[i].w, se += s[i].w * s[i].est, sl += s[i].w * s[i].lo, sh += s[i].w * s[i].hi;
            used += s[i].used, stopped &= s[i].stopped, conv &= s[i].converged;
        }
        check_view_row(db, "pvf_tensor_estimate", "tensor", c, tensors[g], used, se / sw, sl / sw,
                       sh / sw, stopped, conv, "cs");
        check_view_row(db, "pvf_component_estimate", "component", c, g ? "fc2" : "fc1", used,
                       se / sw, sl / sw, sh / sw, stopped, conv, "cs");
    }
    for (int b = 29; b < 32; b++) {
        double sw = 0, se = 0, sl = 0, sh = 0;
        int64_t used = 0;
        int stopped = 1, conv = 1;
        for (int i = 0; i < 6; i++)
            if (s[i].bit == b) {
                sw += s[i].w, se += s[i].w * s[i].est, sl += s[i].w * s[i].lo;
                sh += s[i].w * s[i].hi;
                used += s[i].used, stopped &= s[i].stopped, conv &= s[i].converged;
            }
        char key[8];
        snprintf(key, sizeof key, "%d", b);
        check_view_row(db, "pvf_bit_estimate", "bit", c, key, used, se / sw, sl / sw, sh / sw,
                       stopped, conv, "cs");
    }
    CHECK_EQ_U64(view_rows(db, "pvf_tensor_estimate", c), 2);
    CHECK_EQ_U64(view_rows(db, "pvf_bit_estimate", c), 3);
    CHECK_EQ_U64(view_rows(db, "pvf_component_estimate", c), 2);

    /* campaign progress: sum w x over all strata */
    double pe = 0, pl = 0, ph = 0;
    int64_t used = 0, nstopped = 0;
    int stopped = 1, conv = 1;
    for (int i = 0; i < 6; i++) {
        pe += s[i].w * s[i].est, pl += s[i].w * s[i].lo, ph += s[i].w * s[i].hi;
        used += s[i].used, nstopped += s[i].stopped;
        stopped &= s[i].stopped, conv &= s[i].converged;
    }
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, c);
    check_view_row(db, "pvf_campaign_progress", "campaign_id", c, id, used, pe, pl, ph, stopped,
                   conv, NULL);
    const char *p[] = {id};
    CHECK_EQ_U64(sql1(db, "SELECT strata FROM pvf_campaign_progress WHERE campaign_id = $1", 1, p),
                 6);
    CHECK_EQ_U64(
        sql1(db, "SELECT strata_stopped FROM pvf_campaign_progress WHERE campaign_id = $1", 1, p),
        nstopped);
    pvf_db_close(db);
}

/* The post-stratified trial estimate of one group across strata: weights
 * w_h * n_hk / n_h, Wilson per (stratum, group). */
typedef struct acc {
    double w, e, l, h;
    int64_t n;
} acc;

static void test_views_component_trials(void) {
    /* component strata (all bits) with trial rows: tensor and bit views come
     * from the trials, the component view from the strata */
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    stratum s[2] = {{.tensor = NULL, .component = "attn", .bit = -1, .pop = 3000},
                    {.tensor = NULL, .component = "mlp", .bit = -1, .pop = 9000}};
    draw(s, 2);
    int64_t c = new_campaign(db, "component");
    put_strata(db, c, s, 2, 1);
    /* trials: stratum 0 over tensors q, k; stratum 1 over up, down; masks on
     * 4 bits with values in [0, 1] */
    const char *tn[2][2] = {{"q.weight", "k.weight"}, {"up.weight", "down.weight"}};
    enum { NT = 700 };
    pvf_trial_row rows[2 * NT];
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < NT; i++) {
            int ti = urand() < (h ? 0.3 : 0.6), bit = (int)(urand() * 4) * 9;
            double v = urand() < 0.2 ? urand() : 0;
            rows[h * NT + i] =
                (pvf_trial_row){.campaign = c,
                                .stratum = h,
                                .tensor = tn[h][ti],
                                .rec = {.trial = (uint64_t)i,
                                        .mask = (1u << bit) | (urand() < 0.3 ? 1u << 31 : 0),
                                        .value = v},
                                .attempt = 1};
        }
    /* bit 31 alone on some rows: its lowest bit is 31, not negative */
    rows[0].rec.mask = 1u << 31;
    size_t ins;
    pvf_err err;
    CHECK(pvf_db_insert_trials(db, rows, 2 * NT, &ins, &err) == 0);
    CHECK_EQ_U64(ins, 2 * NT);

    /* per tensor (each tensor in one stratum: plain mean + Wilson) */
    for (int h = 0; h < 2; h++)
        for (int ti = 0; ti < 2; ti++) {
            double sum = 0;
            int64_t n = 0;
            for (int i = 0; i < NT; i++)
                if (strcmp(rows[h * NT + i].tensor, tn[h][ti]) == 0)
                    sum += rows[h * NT + i].rec.value, n++;
            double lo, hi, mean = sum / (double)n;
            pvf_wilson(mean, n, PVF_Z95, &lo, &hi);
            check_view_row(db, "pvf_tensor_estimate", "tensor", c, tn[h][ti], n, mean, lo, hi,
                           s[h].stopped, 0, "wilson-trials");
        }
    /* per bit: post-stratified over both strata */
    acc a[32] = {{0}};
    for (int h = 0; h < 2; h++) {
        double sum[32] = {0};
        int64_t n[32] = {0};
        for (int i = 0; i < NT; i++) {
            uint32_t m = rows[h * NT + i].rec.mask;
            int b = __builtin_ctz(m);
            sum[b] += rows[h * NT + i].rec.value, n[b]++;
        }
        for (int b = 0; b < 32; b++)
            if (n[b]) {
                double mean = sum[b] / (double)n[b], lo, hi;
                pvf_wilson(mean, n[b], PVF_Z95, &lo, &hi);
                double w = s[h].w * (double)n[b] / NT;
                a[b].w += w, a[b].e += w * mean, a[b].l += w * lo, a[b].h += w * hi;
                a[b].n += n[b];
            }
    }
    int nbits = 0;
    for (int b = 0; b < 32; b++)
        if (a[b].n) {
            char key[8];
            snprintf(key, sizeof key, "%d", b);
            check_view_row(db, "pvf_bit_estimate", "bit", c, key, a[b].n, a[b].e / a[b].w,
                           a[b].l / a[b].w, a[b].h / a[b].w, s[0].stopped && s[1].stopped, 0,
                           "wilson-trials");
            nbits++;
        }
    CHECK(nbits == 5); /* 0, 9, 18, 27 and 31 */
    CHECK_EQ_U64(view_rows(db, "pvf_bit_estimate", c), nbits);
    CHECK_EQ_U64(view_rows(db, "pvf_tensor_estimate", c), 4);
    for (int h = 0; h < 2; h++)
        check_view_row(db, "pvf_component_estimate", "component", c, s[h].component, s[h].used,
                       s[h].est, s[h].lo, s[h].hi, s[h].stopped, s[h].converged, "cs");
    pvf_db_close(db);
}

static void test_views_missing_estimates(void) {
    /* strata the estimator has not reached yet: 0 trials, interval [0, 1]
     * in the combinations, no model-level estimate */
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    stratum s[2] = {{.tensor = "a", .component = "x", .bit = -1, .pop = 10},
                    {.tensor = "b", .component = "x", .bit = -1, .pop = 30}};
    draw(s, 2);
    int64_t c = new_campaign(db, "tensor");
    put_strata(db, c, s, 2, 0);
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, c);
    const char *p[] = {id};
    CHECK(
        isnan(sql1(db, "SELECT estimate FROM pvf_campaign_progress WHERE campaign_id = $1", 1, p)));
    CHECK_NEAR(sql1(db, "SELECT lo FROM pvf_campaign_progress WHERE campaign_id = $1", 1, p), 0, 0);
    CHECK_NEAR(sql1(db, "SELECT hi FROM pvf_campaign_progress WHERE campaign_id = $1", 1, p), 1,
               1e-15);
    CHECK_EQ_U64(
        sql1(db, "SELECT trials_used FROM pvf_campaign_progress WHERE campaign_id = $1", 1, p), 0);
    CHECK(sql1(db, "SELECT stopped FROM pvf_campaign_progress WHERE campaign_id = $1", 1, p) == 0);
    CHECK(isnan(
        sql1(db, "SELECT estimate FROM pvf_component_estimate WHERE campaign_id = $1", 1, p)));
    pvf_db_close(db);
}

static void test_normal_quantile(void) {
    pvf_db *db = open_db(dsn);
    CHECK(db != NULL);
    if (!db)
        return;
    CHECK_NEAR(sql1(db, "SELECT pvf_normal_quantile(0.975)", 0, NULL), PVF_Z95, 1e-8);
    CHECK_NEAR(sql1(db, "SELECT pvf_normal_quantile(0.005)", 0, NULL), -2.5758293035489, 1e-8);
    CHECK_NEAR(sql1(db, "SELECT pvf_normal_quantile(0.9999)", 0, NULL), 3.7190164854557, 1e-7);
    /* Wilson in SQL = Wilson in C */
    for (int i = 0; i < 20; i++) {
        double p = i == 0 ? 0 : i == 1 ? 1 : urand();
        int64_t n = 1 + (int64_t)(urand() * 5000);
        char ps[40], ns[24];
        snprintf(ps, sizeof ps, "%.17g", p);
        snprintf(ns, sizeof ns, "%" PRId64, n);
        const char *pp[] = {ps, ns};
        double lo, hi;
        pvf_wilson(p, n, PVF_Z95, &lo, &hi);
        CHECK_NEAR(sql1(db, "SELECT pvf_wilson_lo($1, $2)", 2, pp), lo, 1e-14);
        CHECK_NEAR(sql1(db, "SELECT pvf_wilson_hi($1, $2)", 2, pp), hi, 1e-14);
    }
    pvf_db_close(db);
}

static int setup(void) {
    const char *file = getenv("PVF_TEST_DSN_FILE");
    FILE *f = file ? fopen(file, "r") : NULL;
    if (!f || !fgets(server_dsn, sizeof server_dsn, f)) {
        fprintf(stderr, "test_db_store: no DSN: set PVF_TEST_DSN_FILE (ctest fixture pg)\n");
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    server_dsn[strcspn(server_dsn, "\n")] = '\0';
    snprintf(dbname, sizeof dbname, "pvft_store_%d", (int)getpid());
    snprintf(dsn, sizeof dsn, "%s dbname=%s", server_dsn, dbname);
    pvf_db *admin = open_db(server_dsn);
    if (!admin)
        return -1;
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    int ok = exec_ok(admin, sql);
    pvf_db_close(admin);
    return ok ? 0 : -1;
}

static void teardown(void) {
    pvf_db *admin = open_db(server_dsn);
    if (!admin)
        return;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dbname);
    exec_ok(admin, sql);
    pvf_db_close(admin);
}

int main(void) {
    if (setup())
        return 1;
    RUN(test_migrate_twice);
    RUN(test_migrate_concurrent);
    RUN(test_bad_dsn);
    RUN(test_insert_direct);
    RUN(test_insert_stage);
    RUN(test_insert_denied);
    RUN(test_insert_caller_tx);
    RUN(test_views_tensor_bit);
    RUN(test_views_component_trials);
    RUN(test_views_missing_estimates);
    RUN(test_normal_quantile);
    teardown();
    return test_summary();
}
