/* bench_store DSN [batch_rows] [batches] [repeats] - trial insert rates of
 * pvf_db_insert_trials: rows/s (median of repeats) for fresh batches,
 * replayed batches (all rows stored already) and half-overlapping batches,
 * for both insert methods. Uses a campaign of its own in the DSN's database
 * (migrated first) and deletes it at the end. */
#include "db_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills a batch of stratum s with trials first..first+n-1. */
static void fill(pvf_trial_row *rows, size_t n, int64_t campaign, int32_t s, uint64_t first) {
    static const char *const tensors[] = {"conv1.weight", "fc1.weight", "fc2.bias",
                                          "layer\\0.tab\tname"};
    for (size_t i = 0; i < n; i++) {
        uint64_t t = first + i;
        rows[i] = (pvf_trial_row){
            .campaign = campaign,
            .stratum = s,
            .tensor = tensors[t % 4],
            .rec = {.trial = t,
                    .target = (uint32_t)(t % 4),
                    .element = t * 7919 % 61706,
                    .mask = 1u << (t % 32),
                    .old_word = (uint32_t)(t * 2654435761u),
                    .new_word = (uint32_t)(t * 2654435761u) ^ (1u << (t % 32)),
                    .old_value = 0.01 * (double)(t % 100),
                    .new_value = (double)(t % 1000) * 1e30,
                    .value = (double)(t % 13) / 1000.0,
                    .incorrect = (uint32_t)(t % 13),
                    .nonfinite = 0,
                    .flags = t % 13 ? 0 : 1},
            .worker = 1,
            .attempt = 1,
        };
    }
}

/* Inserts `batches` batches of n rows, batch b from trial b * stride;
 * returns rows/s, adds the rows inserted. */
static double run(pvf_db *db, pvf_trial_row *rows, size_t n, size_t stride, int batches,
                  int64_t campaign, int32_t s, size_t *total, pvf_err *err) {
    double t0 = now();
    for (int b = 0; b < batches; b++) {
        size_t ins;
        fill(rows, n, campaign, s, (uint64_t)b * stride);
        if (pvf_db_insert_trials(db, rows, n, &ins, err))
            return -1;
        *total += ins;
    }
    return (double)n * batches / (now() - t0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_store DSN [batch_rows=4096] [batches=25] [repeats=5]\n");
        return 2;
    }
    size_t batch = argc > 2 ? strtoul(argv[2], NULL, 10) : 4096;
    int batches = argc > 3 ? atoi(argv[3]) : 25, repeats = argc > 4 ? atoi(argv[4]) : 5;
    if (batch == 0 || batches <= 0 || repeats <= 0 || repeats > 100) {
        fprintf(stderr, "bench_store: bad sizes\n");
        return 2;
    }
    pvf_err err;
    pvf_db *db;
    int applied;
    if (pvf_db_open(&db, argv[1], &err) || pvf_db_migrate(db, &applied, &err)) {
        fprintf(stderr, "bench_store: %s\n", err.msg);
        return 1;
    }
    pvf_table t;
    if (pvf_db_query(db,
                     "INSERT INTO campaigns (spec_hash, spec) VALUES ('bench', '{}') RETURNING id",
                     0, NULL, &t, &err)) {
        fprintf(stderr, "bench_store: %s\n", err.msg);
        return 1;
    }
    int64_t campaign = strtoll(pvf_table_get(&t, 0, 0), NULL, 10);
    pvf_table_free(&t);
    pvf_trial_row *rows = calloc(batch, sizeof *rows);
    double *rate = calloc((size_t)repeats * 6, sizeof *rate);
    size_t inserted[6] = {0};
    int rc = 0;
    static const char *const methods[] = {"stage", "direct"};
    static const char *const kinds[] = {"fresh", "replayed", "half-overlapping"};
    /* Every repeat runs each (method, kind) once, interleaved, so a change
     * in the machine's load falls on all of them alike. */
    int32_t stratum = 0;
    for (int r = 0; r < repeats && rc == 0; r++)
        for (int m = 0; m < 2 && rc == 0; m++)
            for (int k = 0; k < 3 && rc == 0; k++) {
                pvf_db_set_insert_method(db, (pvf_insert_method)m);
                int32_t s = stratum++;
                size_t dummy = 0, ins = 0;
                /* replayed: every batch stored first, untimed; half: the
                 * first half of every batch */
                size_t pre = k == 1 ? batch : batch / 2;
                if (k > 0 && run(db, rows, pre, batch, batches, campaign, s, &dummy, &err) < 0)
                    rc = 1;
                double x = rc ? -1 : run(db, rows, batch, batch, batches, campaign, s, &ins, &err);
                if (x < 0)
                    rc = 1;
                rate[(m * 3 + k) * repeats + r] = x;
                inserted[m * 3 + k] = ins;
            }
    if (rc == 0) {
        printf("bench_store: %zu rows per batch, %d batches per run, median of %d runs\n", batch,
               batches, repeats);
        printf("%-8s %-20s %12s %14s\n", "method", "batches", "rows/s", "inserted/run");
        for (int i = 0; i < 6; i++) {
            qsort(rate + i * repeats, (size_t)repeats, sizeof *rate, cmp_double);
            printf("%-8s %-20s %12.0f %14zu\n", methods[i / 3], kinds[i % 3],
                   rate[i * repeats + repeats / 2], inserted[i]);
        }
    }
    if (rc)
        fprintf(stderr, "bench_store: %s\n", err.msg);
    char id[24];
    snprintf(id, sizeof id, "%" PRId64, campaign);
    const char *params[] = {id};
    if (pvf_db_query(db, "DELETE FROM trials WHERE campaign_id = $1", 1, params, &t, &err) == 0)
        pvf_table_free(&t);
    if (pvf_db_query(db, "DELETE FROM campaigns WHERE id = $1", 1, params, &t, &err) == 0)
        pvf_table_free(&t);
    free(rows);
    free(rate);
    pvf_db_close(db);
    return rc;
}
