/* bench_coordinator - how many trial results per second the coordinator
 * stores: 16 simulated workers answer at once with FAKE trials (no
 * inference: a deterministic value per trial), so the figure measures the
 * coordinator, the protocol and PostgreSQL, not the models.
 *
 *   bench_coordinator DSN [--workers N] [--trials PER_STRATUM] [--repeats R]
 *
 * Each repeat creates a fresh campaign (tensor-bit strata of the bundled
 * CNN, a margin no stratum reaches, so every stratum runs to the cap), runs
 * it to the end and divides the stored rows by the wall time. Prints every
 * repeat and the median. */
#include "pvf_campaign.h"
#include "pvf_client.h"
#include "pvf_coordinator.h"
#include "pvf_sql.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef PVF_SOURCE_DIR
#define PVF_SOURCE_DIR "."
#endif

typedef struct fake_worker {
    pthread_t thread;
    pvf_client_config cfg;
    char name[32];
    pvf_err err;
    int rc;
} fake_worker;

static void *worker_main(void *arg) {
    fake_worker *w = arg;
    w->rc = pvf_client_run(&w->cfg, &w->err);
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_coordinator DSN [--workers N] [--trials PER_STRATUM] "
                        "[--repeats R]\n");
        return 2;
    }
    const char *dsn = argv[1];
    int workers = 16, repeats = 3;
    uint64_t trials = 1000;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--workers") == 0)
            workers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--trials") == 0)
            trials = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--repeats") == 0)
            repeats = atoi(argv[i + 1]);
    }
    if (workers < 1 || repeats < 1 || trials < 1) {
        fprintf(stderr, "bench_coordinator: bad arguments\n");
        return 2;
    }
    pvf_err err;
    pvf_db *db;
    int applied;
    if (pvf_db_open(&db, dsn, &err) || pvf_db_migrate(db, &applied, &err)) {
        fprintf(stderr, "bench_coordinator: %s\n", err.msg);
        return 1;
    }
    double *rates = calloc((size_t)repeats, sizeof *rates);
    printf("coordinator throughput: %d simulated workers (FAKE trials, no inference), "
           "tensor-bit strata of models/fmnist-lenet, %" PRIu64 " trials per stratum\n",
           workers, trials);
    for (int rep = 0; rep < repeats; rep++) {
        pvf_campaign_spec spec = {.model_dir = PVF_SOURCE_DIR "/models/fmnist-lenet",
                                  .format = "fp32",
                                  .fault = "bit",
                                  .strata = "tensor-bit",
                                  .seed = (uint64_t)time(NULL) * 1000 + (uint64_t)rep,
                                  .confidence = 0.95,
                                  .margin = 1e-9,
                                  .max_trials = trials};
        int64_t id;
        int existing;
        if (pvf_campaign_create(db, &spec, &id, &existing, &err)) {
            fprintf(stderr, "bench_coordinator: %s\n", err.msg);
            return 1;
        }
        char endpoint[128];
        snprintf(endpoint, sizeof endpoint, "ipc:///tmp/pvf-bench-%d-%d", (int)getpid(), rep);
        static volatile sig_atomic_t never;
        fake_worker *fw = calloc((size_t)workers, sizeof *fw);
        for (int i = 0; i < workers; i++) {
            snprintf(fw[i].name, sizeof fw[i].name, "fake-%d", i);
            fw[i].cfg = (pvf_client_config){.endpoint = endpoint,
                                            .name = fw[i].name,
                                            .executors = 1,
                                            .fake = 1,
                                            .stop = &never};
            pthread_create(&fw[i].thread, NULL, worker_main, &fw[i]);
        }
        pvf_coord_config cfg = {
            .dsn = dsn, .bind = endpoint, .only_campaign = id, .exit_when_done = 1, .quiet = 1};
        double t0 = pvf_now();
        if (pvf_coord_run(&cfg, &err)) {
            fprintf(stderr, "bench_coordinator: %s\n", err.msg);
            return 1;
        }
        double el = pvf_now() - t0;
        for (int i = 0; i < workers; i++)
            pthread_join(fw[i].thread, NULL);
        free(fw);
        unlink(endpoint + strlen("ipc://"));
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM trials WHERE campaign_id = %" PRId64, id);
        pvf_table t;
        if (pvf_db_query(db, sql, 0, NULL, &t, &err) < 0) {
            fprintf(stderr, "bench_coordinator: %s\n", err.msg);
            return 1;
        }
        double rows = strtod(pvf_table_get(&t, 0, 0), NULL);
        pvf_table_free(&t);
        rates[rep] = rows / el;
        printf("  repeat %d: %.0f rows in %.2f s = %.0f rows/s\n", rep + 1, rows, el, rates[rep]);
        fflush(stdout);
    }
    qsort(rates, (size_t)repeats, sizeof *rates, cmp_double);
    printf("median: %.0f trial rows stored per second\n", rates[repeats / 2]);
    free(rates);
    pvf_db_close(db);
    return 0;
}
