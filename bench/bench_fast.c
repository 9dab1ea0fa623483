/* bench_fast - the fast trial path against the plain one, on one core.
 *
 *   bench_fast [MODEL_DIR] [--formats a,b] [--time SECONDS] [--repeats R]
 *              [--per-tensor | --per-bit [--target NAME] [--bits LO-HI]] [--faults FILE]
 *              [--inputs N] [--seed S]
 *
 * Per storage format (default: every format the model supports, the
 * architecture's packagings included), single bit flips uniform over every
 * stored bit of the model (one stratum of all targets): trials per CPU-second
 * of one executor (CLOCK_PROCESS_CPUTIME_ID) naive (exec.naive: the full
 * forward pass from stage 0) and fast (the default path), each side running
 * until it has used SECONDS of CPU per repeat (the fast side does many more
 * trials than the naive one), median of R repeats. The two sides alternate
 * within every repeat, and fast/naive is the median of the per-repeat ratios,
 * so the ratio compares like with like on a noisy machine. Also: the share of
 * fast trials settled without inference, mean (eval input, stage)
 * evaluations ((token, stage) for a language model) per trial both ways, the masked share both ways
 * (one sequence of sites, the naive side's trials a prefix of the fast side's, so the two agree up
 * to sampling), the golden pass's time and memory, the fast path's memory (per-executor buffers,
 * and the architecture's shared fast_prepare state, measured on the heap), and the peak RSS.
 *
 * Each format runs in a child process of its own, so its peak RSS
 * (getrusage after the runs) is its own.
 *
 * --per-tensor: the same figures per fault target, bit flips uniform within
 * that target alone (default format fp32), one line per target.
 * --per-bit: the same figures per flipped bit position (default format fp32),
 * single bit flips of that bit, uniform over the model's targets (or over
 * --target NAME alone), one line per bit: where a format's cost lies;
 * --bits LO-HI (or one bit) runs only those positions.
 * --faults FILE: writes the fp32 faults the naive side ran (the bf16 ones to
 * FILE.bf16), one per line as "target element bit incorrect": C target names
 * (a Llama 4 expert's "<fused>[e]" element r*in + c is the checkpoint's
 * [e, c, r]) and the outputs pvf judged incorrect, for
 * tools/bench_torch_loop.py to replay and compare.
 * --inputs N: the first N eval inputs only. */
#include "config.h"
#include "runner.h"
#include "trial.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPEATS 99

typedef struct bench_opts {
    const char *dir;
    pvf_format formats[PVF_FMT_END];
    int nformats;
    double seconds; /* CPU seconds per side per repeat */
    int repeats;
    int per_tensor;
    int per_bit;
    int bit_lo, bit_hi; /* --bits: the bit positions --per-bit runs */
    const char *target; /* --per-bit on this target alone */
    const char *faults;
    int64_t inputs;
    uint64_t seed;
} bench_opts;

/* One side's figures over all repeats. */
typedef struct side_stats {
    double rate[MAX_REPEATS]; /* trials per CPU-second, per repeat */
    int64_t trials, settled, masked, stage_rows;
    uint64_t next_index; /* the next trial index of the sampler's sequence */
} side_stats;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double s[MAX_REPEATS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* Bytes in use on the heap (arena and mmapped chunks). */
static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static int bit_of(uint32_t mask) {
    int b = 0;
    while (b < 31 && !(mask & (1u << b)))
        b++;
    return b;
}

/* Runs trials on one side until it has used `seconds` of CPU; appends the
 * sites to `faults` when given. Trials go as a worker runs a job's: a
 * block at a time, in the order of their fault sites (pvf_trial_order),
 * each block up to MAX_JOB trials and about a tenth of a second (the
 * clock read once a block). */
#define MAX_JOB 4096 /* the largest job the coordinator leases (job_size, coordinator.c) */

static int run_side(pvf_runner *r, const int *targets, int ntargets, uint64_t stratum, int bit,
                    int naive, const bench_opts *o, int rep, side_stats *st, FILE *faults,
                    pvf_trial_site *job, pvf_err *err) {
    const pvf_fault_model fm = {PVF_FAULT_BITFLIP, bit, 1};
    r->exec.naive = naive;
    int64_t done = 0, step = 1;
    const double c0 = cpu_now();
    double used = 0;
    do {
        if (pvf_trial_sites(&r->model, targets, ntargets, &fm, o->seed, stratum, st->next_index,
                            (size_t)step, job, err))
            return -1;
        st->next_index += step;
        for (int64_t i = 0; i < step; i++) {
            pvf_trial_result res;
            if (pvf_trial_run(&r->exec, &r->golden, fm.kind, &job[i].site, r->out, &res, err))
                return -1;
            st->settled += (res.flags & PVF_TRIAL_SETTLED) != 0;
            st->masked += (res.flags & PVF_TRIAL_MASKED) != 0;
            st->stage_rows += res.stage_rows;
            if (faults)
                fprintf(faults, "%s %" PRId64 " %d %" PRId64 "\n",
                        r->model.targets[job[i].site.target].name, job[i].site.element,
                        bit_of(job[i].site.mask), res.incorrect);
        }
        done += step;
        double now = cpu_now() - c0;
        if (now - used < 0.1 && step < MAX_JOB)
            step = 2 * step < MAX_JOB ? 2 * step : MAX_JOB;
        used = now;
    } while (used < o->seconds);
    st->rate[rep] = (double)done / used;
    st->trials += done;
    return 0;
}

/* Both sides, alternating, R repeats; fills naive/fast and the ratios. `bit`
 * is the flipped bit, or -1 for uniform. */
static int run_pair(pvf_runner *r, const int *targets, int ntargets, uint64_t stratum, int bit,
                    const bench_opts *o, side_stats *naive, side_stats *fast, double *ratio,
                    FILE *faults, pvf_err *err) {
    memset(naive, 0, sizeof *naive);
    memset(fast, 0, sizeof *fast);
    double ratios[MAX_REPEATS];
    pvf_trial_site *job = malloc(MAX_JOB * sizeof *job);
    if (!job)
        return pvf_err_set(err, "out of memory");
    int rc = 0;
    for (int rep = 0; rep < o->repeats && rc == 0; rep++) {
        rc = run_side(r, targets, ntargets, stratum, bit, 1, o, rep, naive, faults, job, err) ||
             run_side(r, targets, ntargets, stratum, bit, 0, o, rep, fast, NULL, job, err);
        ratios[rep] = rc ? 0 : fast->rate[rep] / naive->rate[rep];
    }
    free(job);
    *ratio = median(ratios, o->repeats);
    return rc ? -1 : 0;
}

static double pct(int64_t a, int64_t b) {
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

static double per(int64_t a, int64_t b) {
    return b ? (double)a / (double)b : 0.0;
}

/* The columns both modes share; `width` is the first column's. */
static void print_header(int width, const char *first, const char *tail) {
    printf("%-*s %10s %11s %9s %8s %9s %9s %8s %8s %8s %9s%s\n", width, first, "naive/s", "fast/s",
           "fast/nv", "settled", "rows/nv", "rows/fast", "mask/nv", "mask/fst", "naive_n", "fast_n",
           tail);
}

static void print_row(int width, const char *first, const side_stats *naive, const side_stats *fast,
                      double ratio, int repeats) {
    printf("%-*s %10.2f %11.1f %9.1f %7.1f%% %9.2f %9.2f %7.1f%% %7.1f%% %8" PRId64 " %9" PRId64,
           width, first, median(naive->rate, repeats), median(fast->rate, repeats), ratio,
           pct(fast->settled, fast->trials), per(naive->stage_rows, naive->trials),
           per(fast->stage_rows, fast->trials), pct(naive->masked, naive->trials),
           pct(fast->masked, fast->trials), naive->trials, fast->trials);
}

enum { FORMAT_WIDTH = 12 };
static const char *FORMAT_TAIL = " golden_ms golden_MB fastex_MB fastsh_MB   peak_MB  ref_dmax";

/* The golden pass's memory: every stage's cached input, the outputs, top-1. */
static double golden_mb(const pvf_runner *r) {
    const pvf_model *m = &r->model;
    double bytes = 0;
    for (int s = 0; s < m->nstages; s++)
        if (r->golden.stage_in[s])
            bytes += (double)r->golden.n * (double)m->stages[s].in_size * sizeof(float);
    const int64_t positions = m->out_positions > 0 ? m->out_positions : 1;
    bytes += (double)r->golden.n * (double)m->out_size * sizeof(float);
    bytes += (double)r->golden.n * (double)positions * sizeof(int64_t);
    return bytes / 1048576.0;
}

/* The fast path's memory per executor: its row buffers and fast_trial
 * workspace (pvf_exec_init). */
static double fast_exec_mb(const pvf_runner *r) {
    const pvf_model *m = &r->model;
    int64_t widest = m->out_size;
    for (int s = 0; s < m->nstages; s++) {
        if (m->stages[s].in_size > widest)
            widest = m->stages[s].in_size;
        if (m->stages[s].out_size > widest)
            widest = m->stages[s].out_size;
    }
    return ((double)r->exec.chunk * (double)widest * 2 * sizeof(float) +
            (double)r->exec.chunk * sizeof(int64_t) +
            (double)(m->fast_scratch_floats > 0 ? m->fast_scratch_floats : 1) * sizeof(float)) /
           1048576.0;
}

/* The architecture's fast_prepare state (shared by all executors): the heap
 * its fast_free gives back. Frees it, so only after the runs (and after
 * reading the peak RSS, which a second copy would have inflated). */
static double fast_shared_mb_free(pvf_runner *r) {
    const pvf_model *m = &r->model;
    if (!r->golden.fast || !m->arch->fast_free)
        return 0;
    size_t before = heap_in_use();
    m->arch->fast_free(r->golden.fast);
    r->golden.fast = NULL;
    size_t after = heap_in_use();
    return before > after ? (double)(before - after) / 1048576.0 : 0.0;
}

/* Max |golden - reference| over the eval set's reference outputs for the
 * format (logits_<fmt>); NAN when it has none. */
static double reference_delta(const pvf_runner *r, pvf_format fmt, pvf_err *err) {
    pvf_tensor ref;
    char name[64];
    int found = pvf_evalset_reference(&r->eval, pvf_format_name(fmt), &ref, name, sizeof name, err);
    const int64_t k = r->golden.n * r->model.out_size;
    if (found != 1 || pvf_tensor_numel(&ref) < k)
        return NAN;
    double worst = 0;
    for (int64_t i = 0; i < k; i++) {
        double d = fabs((double)r->golden.out[i] - pvf_tensor_get_f64(&ref, i));
        if (!(d <= worst))
            worst = d; /* NaN propagates */
    }
    return worst;
}

static double peak_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* --per-bit: one line per bit position, flips of that bit uniform over the
 * targets (all, or o->target) wide enough to have it. `idx` is scratch for
 * ntargets indices. */
static int per_bit(pvf_runner *r, const bench_opts *o, int *idx, FILE *faults, pvf_err *err) {
    const pvf_model *m = &r->model;
    int only = -1, widest = 0;
    if (o->target && (only = pvf_model_find_target(m, o->target)) < 0)
        return pvf_err_set(err, "--target %s: no such target in the model", o->target);
    for (int t = 0; t < m->ntargets; t++)
        if ((only < 0 || t == only) && m->targets[t].bits > widest)
            widest = m->targets[t].bits;
    printf("flips of one bit position over %s\n", only < 0 ? "all targets" : o->target);
    print_header(6, "bit", "  targets");
    for (int bit = o->bit_lo; bit < widest && bit <= o->bit_hi; bit++) {
        int n = 0;
        for (int t = 0; t < m->ntargets; t++)
            if ((only < 0 || t == only) && m->targets[t].bits > bit)
                idx[n++] = t;
        side_stats naive, fast;
        double ratio;
        char label[16];
        snprintf(label, sizeof label, "%d", bit);
        if (run_pair(r, idx, n, (uint64_t)bit + 1, bit, o, &naive, &fast, &ratio, faults, err))
            return -1;
        print_row(6, label, &naive, &fast, ratio, o->repeats);
        printf(" %8d\n", n);
        fflush(stdout);
    }
    return 0;
}

static int bench_format(const bench_opts *o, pvf_format fmt, pvf_err *err) {
    pvf_runner r;
    if (pvf_runner_open_limit(&r, o->dir, NULL, fmt, o->inputs, err))
        return -1;
    int rc = -1;
    FILE *faults = NULL;
    int *all = malloc((size_t)r.model.ntargets * sizeof *all);
    if (!all) {
        pvf_err_set(err, "out of memory");
        goto out;
    }
    for (int t = 0; t < r.model.ntargets; t++)
        all[t] = t;
    char fault_path[4096];
    snprintf(fault_path, sizeof fault_path, "%s%s", o->faults ? o->faults : "",
             fmt == PVF_FMT_BF16 ? ".bf16" : "");
    if (o->faults && (fmt == PVF_FMT_FP32 || fmt == PVF_FMT_BF16) &&
        !(faults = fopen(fault_path, "w"))) {
        pvf_err_set(err, "%s: %s", fault_path, strerror(errno));
        goto out;
    }
    double golden_ms;
    {
        double c0 = cpu_now();
        if (pvf_forward_from(&r.exec, &r.golden, 0, r.out, err))
            goto out;
        golden_ms = (cpu_now() - c0) * 1e3;
    }
    const double exec_mb = fast_exec_mb(&r);
    const double ref_delta = reference_delta(&r, fmt, err);
    side_stats naive, fast;
    double ratio;
    const char *fname = pvf_format_name(fmt);
    if (!o->per_tensor && !o->per_bit) {
        if (run_pair(&r, all, r.model.ntargets, 0, -1, o, &naive, &fast, &ratio, faults, err))
            goto out;
        const double peak = peak_mb();
        print_row(FORMAT_WIDTH, fname, &naive, &fast, ratio, o->repeats);
        printf(" %9.2f %9.2f %9.3f %9.3f %9.1f %9.2g\n", golden_ms, golden_mb(&r), exec_mb,
               fast_shared_mb_free(&r), peak, ref_delta);
        rc = 0;
        goto out;
    }
    printf("\nformat %s: %d targets; golden pass %.2f ms CPU, %.2f MB; golden vs the "
           "reference outputs max |d| %.2g\n",
           fname, r.model.ntargets, golden_ms, golden_mb(&r), ref_delta);
    if (o->per_tensor) {
        int width = 6;
        for (int t = 0; t < r.model.ntargets; t++) {
            int len = (int)strlen(r.model.targets[t].name);
            width = len > width ? len : width;
        }
        print_header(width, "target", "   stored_bits");
        for (int t = 0; t < r.model.ntargets; t++) {
            if (run_pair(&r, &t, 1, (uint64_t)t + 1, -1, o, &naive, &fast, &ratio, faults, err))
                goto out;
            print_row(width, r.model.targets[t].name, &naive, &fast, ratio, o->repeats);
            printf(" %14" PRId64 "\n", r.model.targets[t].numel * r.model.targets[t].bits);
            fflush(stdout);
        }
    } else if (per_bit(&r, o, all, faults, err)) {
        goto out;
    }
    printf("peak RSS %.1f MB; fast path %.3f MB per executor + %.3f MB shared\n", peak_mb(),
           exec_mb, fast_shared_mb_free(&r));
    rc = 0;
out:
    if (faults && fclose(faults) && rc == 0)
        rc = pvf_err_set(err, "%s: %s", fault_path, strerror(errno));
    free(all);
    pvf_runner_close(&r);
    return rc;
}

/* The storage formats, and the packagings when the architecture has them. */
static int default_formats(bench_opts *o, pvf_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", o->dir);
    pvf_config cfg;
    if (pvf_config_load(&cfg, path, err))
        return -1;
    const pvf_arch *arch = pvf_arch_find(pvf_config_arch(&cfg));
    pvf_config_free(&cfg);
    for (int f = 0; f < PVF_FMT_COUNT; f++)
        o->formats[o->nformats++] = (pvf_format)f;
    if (arch && arch->packaging)
        for (int f = PVF_FMT_COUNT + 1; f < PVF_FMT_END; f++)
            o->formats[o->nformats++] = (pvf_format)f;
    return 0;
}

static int parse_formats(bench_opts *o, const char *list) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->nformats >= PVF_FMT_END || pvf_format_parse(tok, &o->formats[o->nformats])) {
            fprintf(stderr, "bench_fast: unknown or too many formats in '%s'\n", list);
            return -1;
        }
        o->nformats++;
    }
    return o->nformats ? 0 : -1;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_fast [MODEL_DIR] [--formats a,b] [--time SECONDS] "
                    "[--repeats 1..99] [--per-tensor | --per-bit [--target NAME] [--bits LO-HI]] "
                    "[--faults FILE] [--inputs N] [--seed S]\n");
    return 2;
}

int main(int argc, char **argv) {
    bench_opts o = {
        .dir = "models/fmnist-lenet", .seconds = 1.0, .repeats = 3, .seed = 1, .bit_hi = 63};
    int bits = 0;
    const char *formats = NULL;
    for (int a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(argv[a], "--per-tensor") == 0) {
            o.per_tensor = 1;
        } else if (strcmp(argv[a], "--per-bit") == 0) {
            o.per_bit = 1;
        } else if (argv[a][0] != '-') {
            o.dir = argv[a];
        } else if (!v) {
            return usage();
        } else if (strcmp(argv[a], "--formats") == 0) {
            formats = v, a++;
        } else if (strcmp(argv[a], "--time") == 0) {
            o.seconds = atof(v), a++;
        } else if (strcmp(argv[a], "--repeats") == 0) {
            o.repeats = atoi(v), a++;
        } else if (strcmp(argv[a], "--faults") == 0) {
            o.faults = v, a++;
        } else if (strcmp(argv[a], "--inputs") == 0) {
            o.inputs = atoll(v), a++;
        } else if (strcmp(argv[a], "--target") == 0) {
            o.target = v, a++;
        } else if (strcmp(argv[a], "--bits") == 0) {
            char end;
            const int range = sscanf(v, "%d-%d%c", &o.bit_lo, &o.bit_hi, &end) == 2;
            const int one = !range && sscanf(v, "%d%c", &o.bit_lo, &end) == 1;
            if (one)
                o.bit_hi = o.bit_lo;
            if (!(range || one) || o.bit_lo < 0 || o.bit_hi < o.bit_lo || o.bit_hi > 63) {
                fprintf(stderr, "bench_fast: --bits %s: expected LO-HI or one bit, 0-63\n", v);
                return 2;
            }
            bits = 1, a++;
        } else if (strcmp(argv[a], "--seed") == 0) {
            o.seed = strtoull(v, NULL, 10), a++;
        } else {
            return usage();
        }
    }
    if (!(o.seconds > 0) || o.repeats < 1 || o.repeats > MAX_REPEATS || o.inputs < 0 ||
        (o.per_tensor && o.per_bit) || ((o.target || bits) && !o.per_bit))
        return usage();
    pvf_err err;
    if (formats                     ? parse_formats(&o, formats)
        : o.per_tensor || o.per_bit ? parse_formats(&o, "fp32")
                                    : default_formats(&o, &err)) {
        if (!formats)
            fprintf(stderr, "bench_fast: %s\n", err.msg);
        return 2;
    }
    printf("model %s, %s inputs; single bit flips uniform over %s; per side and repeat %.2f "
           "CPU-s on one core, median of %d repeats\n",
           o.dir, o.inputs ? "limited" : "all eval",
           o.per_tensor ? "each target"
           : o.per_bit  ? "each bit position"
                        : "all stored bits",
           o.seconds, o.repeats);
    if (o.inputs)
        printf("eval inputs: the first %" PRId64 "\n", o.inputs);
    if (!o.per_tensor && !o.per_bit)
        print_header(FORMAT_WIDTH, "format", FORMAT_TAIL);
    fflush(stdout);
    int failed = 0;
    for (int f = 0; f < o.nformats; f++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_fast: fork");
            return 1;
        }
        if (pid == 0) {
            int rc = bench_format(&o, o.formats[f], &err);
            if (rc)
                fprintf(stderr, "bench_fast: %s: %s\n", pvf_format_name(o.formats[f]), err.msg);
            fflush(stdout);
            _exit(rc ? 1 : 0);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    printf("naive/s, fast/s: trials per CPU-second; fast/nv: median of the per-repeat ratios; "
           "settled: fast trials judged without inference; rows: (eval input, stage) "
           "evaluations per trial ((token, stage) for a language model); mask: masked share; "
           "golden_ms: one full forward pass (CPU); "
           "fastex_MB: the fast path's buffers per executor; fastsh_MB: its fast_prepare state, "
           "shared by the executors (heap measured); peak_MB: "
           "ru_maxrss after the runs; ref_dmax: max |golden - the eval set's reference outputs for "
           "the "
           "format| (nan: none)\n");
    return failed;
}
