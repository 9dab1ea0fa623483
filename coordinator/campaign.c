/* campaign.c - creating a campaign (planning its strata from the model) and
 * loading one to serve (its strata and the trials stored so far). */
#include "co.h"
#include "pvf_campaign.h"

#include "model.h"
#include "sampler.h"

#include <jansson.h>
#include <sodium.h>

#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- planning --------------------------------------------------------- */

typedef struct plan_stratum {
    char name[300];
    const char *tensor, *component;
    int bit; /* -1: all bits */
    int *targets;
    int ntargets;
    uint64_t population;
} plan_stratum;

typedef struct plan {
    plan_stratum *s;
    int n, cap;
} plan;

static int plan_add(plan *p, const pvf_model *m, const pvf_fault_model *fm, const char *name,
                    const char *tensor, const char *component, int bit, const int *targets,
                    int ntargets, pvf_err *err) {
    pvf_fault_model f = *fm;
    if (bit >= 0)
        f.bit = bit;
    uint64_t pop = pvf_stratum_population(m, targets, ntargets, &f);
    if (pop == 0)
        return 0; /* the fault model cannot hit these words: no stratum */
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        plan_stratum *s = realloc(p->s, (size_t)cap * sizeof *s);
        if (!s)
            return pvf_err_set(err, "out of memory");
        p->s = s;
        p->cap = cap;
    }
    plan_stratum *s = &p->s[p->n];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->tensor = tensor;
    s->component = component;
    s->bit = bit;
    s->population = pop;
    s->ntargets = ntargets;
    s->targets = malloc((size_t)ntargets * sizeof *s->targets);
    if (!s->targets)
        return pvf_err_set(err, "out of memory");
    memcpy(s->targets, targets, (size_t)ntargets * sizeof *targets);
    p->n++;
    return 0;
}

static void plan_free(plan *p) {
    for (int i = 0; i < p->n; i++)
        free(p->s[i].targets);
    free(p->s);
}

static const char *component_of(const pvf_model *m, int target) {
    return m->params[m->targets[target].param].component;
}

static int plan_strata(const pvf_model *m, const pvf_fault_model *fm, const char *kind, plan *p,
                       pvf_err *err) {
    int by_bit = strstr(kind, "-bit") != NULL;
    int by_component = strncmp(kind, "component", 9) == 0;
    if (by_bit && (fm->bit >= 0 || (fm->kind != PVF_FAULT_BITFLIP && fm->kind != PVF_FAULT_STUCK0 &&
                                    fm->kind != PVF_FAULT_STUCK1)))
        return pvf_err_set(err,
                           "--strata %s: needs a fault model with a uniform bit (bit, stuck0, "
                           "stuck1): each stratum fixes the bit",
                           kind);
    int maxbits = 0;
    for (int t = 0; t < m->ntargets; t++)
        if (m->targets[t].bits > maxbits)
            maxbits = m->targets[t].bits;
    if (!by_component) {
        for (int t = 0; t < m->ntargets; t++) {
            const char *name = m->targets[t].name, *comp = component_of(m, t);
            if (!by_bit) {
                if (plan_add(p, m, fm, name, name, comp, -1, &t, 1, err))
                    return -1;
                continue;
            }
            for (int b = 0; b < m->targets[t].bits; b++) {
                char sname[300];
                snprintf(sname, sizeof sname, "%s/bit %d", name, b);
                if (plan_add(p, m, fm, sname, name, comp, b, &t, 1, err))
                    return -1;
            }
        }
        return 0;
    }
    int *members = malloc((size_t)m->ntargets * sizeof *members);
    if (!members)
        return pvf_err_set(err, "out of memory");
    for (int t = 0; t < m->ntargets; t++) {
        const char *comp = component_of(m, t);
        int first = 1;
        for (int u = 0; u < t && first; u++)
            first = strcmp(component_of(m, u), comp) != 0;
        if (!first)
            continue;
        int n = 0;
        for (int u = t; u < m->ntargets; u++)
            if (strcmp(component_of(m, u), comp) == 0)
                members[n++] = u;
        for (int b = by_bit ? 0 : -1; b < (by_bit ? maxbits : 0); b++) {
            char sname[300];
            if (b < 0)
                snprintf(sname, sizeof sname, "%s", comp);
            else
                snprintf(sname, sizeof sname, "%s/bit %d", comp, b);
            if (plan_add(p, m, fm, sname, NULL, comp, b, members, n, err)) {
                free(members);
                return -1;
            }
        }
    }
    free(members);
    return 0;
}

/* ---- files ------------------------------------------------------------ */

static int add_file(json_t *files, const char *path, pvf_err *err) {
    pvf_sha256 sha;
    struct stat st;
    if (stat(path, &st) || pvf_sha256_file(path, &sha, err))
        return pvf_err_set(err, "%s: cannot read", path);
    char hex[65], copy[4096];
    pvf_sha256_hex(&sha, hex);
    snprintf(copy, sizeof copy, "%s", path);
    json_array_append_new(files, json_pack("{s:s, s:s, s:I}", "name", basename(copy), "sha256", hex,
                                           "size", (json_int_t)st.st_size));
    return 0;
}

/* The files a worker needs to load the model: config.json, the weights and
 * the shard index when there is one. */
static json_t *model_files(const char *dir, pvf_err *err) {
    json_t *files = json_array();
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (add_file(files, path, err))
        goto fail;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat st;
    if (stat(path, &st) == 0 && add_file(files, path, err))
        goto fail;
    pvf_st_set set;
    if (pvf_st_set_open_dir(&set, dir, err))
        goto fail;
    for (size_t i = 0; i < set.nfiles; i++)
        if (add_file(files, set.files[i].path, err)) {
            pvf_st_set_close(&set);
            goto fail;
        }
    pvf_st_set_close(&set);
    return files;
fail:
    json_decref(files);
    return NULL;
}

/* ---- create ----------------------------------------------------------- */

static char *pg_text_array(const pvf_model *m, const plan_stratum *s) {
    json_t *a = json_array();
    for (int i = 0; i < s->ntargets; i++)
        json_array_append_new(a, json_string(m->targets[s->targets[i]].name));
    char *out = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return out;
}

int pvf_campaign_create(pvf_db *db, const pvf_campaign_spec *spec, int64_t *id, int *existing,
                        pvf_err *err) {
    *existing = 0;
    pvf_format format;
    pvf_fault_model fm;
    if (pvf_format_parse(spec->format, &format))
        return pvf_err_set(err, "unknown format '%s'", spec->format);
    if (pvf_fault_model_parse(spec->fault, &fm, err))
        return -1;
    char eval_path[4096];
    if (spec->eval_path)
        snprintf(eval_path, sizeof eval_path, "%s", spec->eval_path);
    else
        snprintf(eval_path, sizeof eval_path, "%s/eval.safetensors", spec->model_dir);

    pvf_model m;
    if (pvf_model_load(&m, spec->model_dir, format, err))
        return -1;
    plan p = {0};
    json_t *files = NULL, *spec_json = NULL;
    char *spec_text = NULL;
    int rc = -1;
    /* The eval set must fit the model: check it here, not on every worker. */
    pvf_evalset ev;
    if (pvf_evalset_open(&ev, eval_path, err))
        goto out;
    const float *input;
    int bad = pvf_model_fit_eval(&m, &ev, err) || m.arch->bind_eval(&m, &ev, &input, err);
    pvf_evalset_close(&ev);
    if (bad)
        goto out;
    if (spec->threshold > 0 && !m.arch->has_threshold) {
        pvf_err_set(err,
                    "--threshold: architecture '%s' judges the top-1 class; a probability "
                    "threshold applies to dlrm only",
                    m.arch->name);
        goto out;
    }
    if (plan_strata(&m, &fm, spec->strata, &p, err))
        goto out;
    if (p.n == 0) {
        pvf_err_set(err, "fault model '%s' hits no parameter of %s", spec->fault, spec->model_dir);
        goto out;
    }
    if (!(files = model_files(spec->model_dir, err)))
        goto out;
    pvf_sha256 eval_sha;
    struct stat st;
    if (stat(eval_path, &st) || pvf_sha256_file(eval_path, &eval_sha, err)) {
        pvf_err_set(err, "%s: cannot read", eval_path);
        goto out;
    }
    char eval_hex[65], fault_name[32];
    pvf_sha256_hex(&eval_sha, eval_hex);
    pvf_fault_model_format(&fm, fault_name, sizeof fault_name);
    /* The spec: everything that decides the trials and the stopping. Its
     * hash finds the campaign again when the same command runs twice. */
    spec_json = json_pack(
        "{s:o, s:{s:s, s:I}, s:s, s:s, s:s, s:s, s:I, s:f, s:f, s:f, s:I, "
        "s:s, s:b, s:f}",
        "files", json_incref(files), "eval", "sha256", eval_hex, "size", (json_int_t)st.st_size,
        "arch", m.arch->name, "format", pvf_format_name(format), "fault", fault_name, "strata",
        spec->strata, "seed", (json_int_t)spec->seed, "confidence", spec->confidence, "margin",
        spec->margin, "rel_margin", spec->rel_margin, "max_trials", (json_int_t)spec->max_trials,
        "value", spec->value_any ? "any" : "fraction", "naive", spec->naive, "threshold",
        spec->threshold);
    spec_text = spec_json ? json_dumps(spec_json, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!spec_text) {
        pvf_err_set(err, "out of memory");
        goto out;
    }
    pvf_sha256 h;
    crypto_hash_sha256(h.b, (const unsigned char *)spec_text, strlen(spec_text));
    char spec_hex[65];
    pvf_sha256_hex(&h, spec_hex);

    if (pvf_db_command(db, "BEGIN", 0, NULL, err))
        goto out;
    /* Serialize creators of the same spec. */
    const char *hp[1] = {spec_hex};
    pvf_table r;
    if (pvf_db_command(db, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", 1, hp, err) ||
        pvf_db_query(
            db,
            "SELECT id, state FROM campaigns WHERE spec_hash = $1 AND state <> 'cancelled' "
            "ORDER BY id DESC LIMIT 1",
            1, hp, &r, err))
        goto rollback;
    if (r.nrows == 1) {
        *id = strtoll(pvf_table_get(&r, 0, 0), NULL, 10);
        *existing = strcmp(pvf_table_get(&r, 0, 1), "running") == 0 ? 1 : 2;
        pvf_table_free(&r);
        rc = pvf_db_command(db, "COMMIT", 0, NULL, err);
        goto out;
    }
    pvf_table_free(&r);
    char sh[32], ssed[32], sconf[40], smar[40], srel[40], smax[32];
    char model_hex[65];
    {
        char *ft = json_dumps(files, JSON_COMPACT | JSON_SORT_KEYS);
        pvf_sha256 mh;
        crypto_hash_sha256(mh.b, (const unsigned char *)ft, strlen(ft));
        free(ft);
        pvf_sha256_hex(&mh, model_hex);
    }
    snprintf(ssed, sizeof ssed, "%" PRIu64, spec->seed);
    snprintf(sconf, sizeof sconf, "%.17g", spec->confidence);
    snprintf(smar, sizeof smar, "%.17g", spec->margin);
    snprintf(srel, sizeof srel, "%.17g", spec->rel_margin);
    snprintf(smax, sizeof smax, "%" PRIu64, spec->max_trials);
    const char *cp[15] = {spec_hex,
                          spec_text,
                          spec->model_dir,
                          model_hex,
                          eval_path,
                          eval_hex,
                          m.arch->name,
                          pvf_format_name(format),
                          fault_name,
                          spec->strata,
                          ssed,
                          sconf,
                          smar,
                          srel,
                          smax};
    char value_kind[16];
    snprintf(value_kind, sizeof value_kind, "%s", spec->value_any ? "any" : "fraction");
    const char *cp2[17];
    memcpy(cp2, cp, sizeof cp);
    cp2[15] = value_kind;
    cp2[16] = spec->naive ? "t" : "f";
    if (pvf_db_query(
            db,
            "INSERT INTO campaigns (spec_hash, spec, model_dir, model_sha256, eval_path, "
            "eval_sha256, arch, format, fault, strata_kind, seed, confidence, margin, "
            "rel_margin, max_trials, value_kind, naive) VALUES ($1, $2::jsonb, $3, $4, $5, $6, "
            "$7, $8, $9, $10, $11, $12, nullif($13::float8, 0), nullif($14::float8, 0), $15, "
            "$16, $17) RETURNING id",
            17, cp2, &r, err))
        goto rollback;
    *id = strtoll(pvf_table_get(&r, 0, 0), NULL, 10);
    pvf_table_free(&r);
    snprintf(sh, sizeof sh, "%" PRId64, *id);
    uint64_t total = 0;
    for (int i = 0; i < p.n; i++)
        total += p.s[i].population;
    for (int i = 0; i < p.n; i++) {
        char idx[16], bit[16], pop[32], w[40];
        snprintf(idx, sizeof idx, "%d", i);
        snprintf(bit, sizeof bit, "%d", p.s[i].bit);
        snprintf(pop, sizeof pop, "%" PRIu64, p.s[i].population);
        snprintf(w, sizeof w, "%.17g", (double)p.s[i].population / (double)total);
        char *targets = pg_text_array(&m, &p.s[i]);
        const char *sp[9] = {sh,
                             idx,
                             p.s[i].name,
                             p.s[i].tensor,
                             p.s[i].component,
                             p.s[i].bit >= 0 ? bit : NULL,
                             targets,
                             pop,
                             w};
        const char *params[10];
        memcpy(params, sp, sizeof sp);
        params[9] = smax;
        int qrc = pvf_db_command(
            db,
            "INSERT INTO strata (campaign_id, stratum, name, tensor, component, bit, "
            "targets, population, weight, max_trials) VALUES ($1, $2, $3, $4, $5, $6, "
            "ARRAY(SELECT json_array_elements_text($7::json)), $8, $9, $10)",
            10, params, err);
        free(targets);
        if (qrc)
            goto rollback;
    }
    if (pvf_db_command(db,
                       "INSERT INTO estimates (campaign_id, stratum) SELECT campaign_id, stratum "
                       "FROM strata WHERE campaign_id = $1",
                       1, (const char *const[]){sh}, err) ||
        pvf_db_command(db, "COMMIT", 0, NULL, err))
        goto rollback;
    rc = 0;
    goto out;
rollback:
    pvf_db_command(db, "ROLLBACK", 0, NULL, NULL);
out:
    free(spec_text);
    json_decref(spec_json);
    json_decref(files);
    plan_free(&p);
    pvf_model_free(&m);
    return rc;
}

/* ---- load ------------------------------------------------------------- */

void co_campaign_free(co_campaign *c) {
    if (!c)
        return;
    for (int i = 0; i < c->nstrata; i++)
        co_stratum_free(&c->strata[i]);
    free(c->strata);
    for (uint32_t i = 0; i < c->nfiles; i++)
        free(c->files[i].name);
    free(c->files);
    free(c->model_dir);
    free(c->eval_path);
    free(c);
}

static int check_file(const char *path, const pvf_sha256 *want, uint64_t size, pvf_err *err) {
    struct stat st;
    pvf_sha256 got;
    if (stat(path, &st))
        return pvf_err_set(err, "%s: missing", path);
    if ((uint64_t)st.st_size != size || pvf_sha256_file(path, &got, err) ||
        memcmp(got.b, want->b, 32) != 0)
        return pvf_err_set(err, "%s: changed since the campaign was created (sha256 differs)",
                           path);
    return 0;
}

static int load_files(co_campaign *c, json_t *spec, pvf_err *err) {
    json_t *files = json_object_get(spec, "files");
    json_t *eval = json_object_get(spec, "eval");
    if (!json_is_array(files) || !json_is_object(eval))
        return pvf_err_set(err, "campaign %" PRId64 ": spec has no files", c->id);
    c->nfiles = (uint32_t)json_array_size(files);
    c->files = calloc(c->nfiles ? c->nfiles : 1, sizeof *c->files);
    if (!c->files)
        return pvf_err_set(err, "out of memory");
    for (uint32_t i = 0; i < c->nfiles; i++) {
        json_t *f = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *hex = json_string_value(json_object_get(f, "sha256"));
        json_int_t size = json_integer_value(json_object_get(f, "size"));
        if (!name || !hex || pvf_sha256_parse(hex, &c->files[i].sha))
            return pvf_err_set(err, "campaign %" PRId64 ": bad file entry in spec", c->id);
        c->files[i].name = strdup(name);
        c->files[i].size = (uint64_t)size;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", c->model_dir, name);
        if (!c->files[i].name || check_file(path, &c->files[i].sha, c->files[i].size, err))
            return pvf_err_prefix(err, "campaign %" PRId64, c->id);
    }
    const char *hex = json_string_value(json_object_get(eval, "sha256"));
    if (!hex || pvf_sha256_parse(hex, &c->eval_sha))
        return pvf_err_set(err, "campaign %" PRId64 ": bad eval entry in spec", c->id);
    c->eval_size = (uint64_t)json_integer_value(json_object_get(eval, "size"));
    if (check_file(c->eval_path, &c->eval_sha, c->eval_size, err))
        return pvf_err_prefix(err, "campaign %" PRId64, c->id);
    return 0;
}

int co_campaign_load(pvf_db *db, int64_t id, int64_t epoch, co_campaign **out, pvf_err *err) {
    char sid[32];
    snprintf(sid, sizeof sid, "%" PRId64, id);
    const char *p[1] = {sid};
    pvf_table r = {0};
    co_campaign *c = calloc(1, sizeof *c);
    json_t *spec = NULL;
    if (!c)
        return pvf_err_set(err, "out of memory");
    c->id = id;
    c->epoch = epoch;
    if (pvf_db_query(
            db,
            /* Every column non-NULL: a hand-made row is refused, not a crash. */
            "SELECT coalesce(model_dir, ''), coalesce(eval_path, ''), coalesce(format, ''), "
            "coalesce(fault, ''), coalesce(seed, 0), coalesce(naive, false), "
            "coalesce(value_kind, 'fraction'), coalesce(confidence, 0.95), coalesce(margin, 0), "
            "coalesce(rel_margin, 0), coalesce(max_trials, 0), spec::text FROM campaigns "
            "WHERE id = $1",
            1, p, &r, err))
        goto fail;
    if (r.nrows != 1) {
        pvf_err_set(err, "campaign %" PRId64 " does not exist", id);
        goto fail;
    }
    c->model_dir = strdup(pvf_table_get(&r, 0, 0));
    c->eval_path = strdup(pvf_table_get(&r, 0, 1));
    snprintf(c->format, sizeof c->format, "%s", pvf_table_get(&r, 0, 2));
    char fault[32];
    snprintf(fault, sizeof fault, "%s", pvf_table_get(&r, 0, 3));
    c->seed = strtoull(pvf_table_get(&r, 0, 4), NULL, 10);
    c->naive = strcmp(pvf_table_get(&r, 0, 5), "t") == 0;
    c->value_any = strcmp(pvf_table_get(&r, 0, 6), "any") == 0;
    c->confidence = strtod(pvf_table_get(&r, 0, 7), NULL);
    c->margin = strtod(pvf_table_get(&r, 0, 8), NULL);
    c->rel_margin = strtod(pvf_table_get(&r, 0, 9), NULL);
    c->max_trials = strtoull(pvf_table_get(&r, 0, 10), NULL, 10);
    json_error_t jerr;
    spec = json_loads(pvf_table_get(&r, 0, 11), 0, &jerr);
    pvf_table_free(&r);
    if (!c->model_dir || !c->eval_path || !spec) {
        pvf_err_set(err, "campaign %" PRId64 ": unreadable spec", id);
        goto fail;
    }
    if (load_files(c, spec, err))
        goto fail;
    c->threshold = json_real_value(json_object_get(spec, "threshold"));
    pvf_fault_model fm;
    if (pvf_fault_model_parse(fault, &fm, err))
        goto fail;

    if (pvf_db_query(
            db,
            "SELECT stratum, name, array_to_json(targets)::text, population, weight, "
            "coalesce(max_trials, 0), coalesce(bit, -1) FROM strata WHERE campaign_id = $1 "
            "ORDER BY stratum",
            1, p, &r, err))
        goto fail;
    c->nstrata = r.nrows;
    c->strata = calloc((size_t)(c->nstrata ? c->nstrata : 1), sizeof *c->strata);
    if (!c->strata) {
        pvf_err_set(err, "out of memory");
        goto fail;
    }
    double alpha = (1.0 - c->confidence) / (c->nstrata ? c->nstrata : 1);
    for (int i = 0; i < c->nstrata; i++) {
        co_stratum *s = &c->strata[i];
        s->index = atoi(pvf_table_get(&r, i, 0));
        if (s->index != i) {
            pvf_err_set(err, "campaign %" PRId64 ": strata are not numbered 0..%d", id,
                        c->nstrata - 1);
            goto fail;
        }
        s->name = strdup(pvf_table_get(&r, i, 1));
        json_t *t = json_loads(pvf_table_get(&r, i, 2), 0, &jerr);
        s->ntargets = (uint32_t)json_array_size(t);
        s->targets = calloc(s->ntargets ? s->ntargets : 1, sizeof *s->targets);
        for (uint32_t k = 0; s->targets && k < s->ntargets; k++)
            s->targets[k] = strdup(json_string_value(json_array_get(t, k)));
        json_decref(t);
        s->population = strtoull(pvf_table_get(&r, i, 3), NULL, 10);
        s->weight = strtod(pvf_table_get(&r, i, 4), NULL);
        s->max_trials = strtoull(pvf_table_get(&r, i, 5), NULL, 10);
        if (s->max_trials == 0)
            s->max_trials = c->max_trials;
        pvf_fault_model f = fm;
        int bit = atoi(pvf_table_get(&r, i, 6));
        if (bit >= 0)
            f.bit = bit;
        pvf_fault_model_format(&f, s->fault, sizeof s->fault);
        if (!s->name || !s->targets || s->ntargets == 0) {
            pvf_err_set(err, "campaign %" PRId64 ": stratum %d has no targets", id, i);
            goto fail;
        }
        if (co_stratum_init(s, c, alpha, err))
            goto fail;
    }
    pvf_table_free(&r);
    /* The trials stored so far, in index order: the estimator replays the
     * prefix exactly as it first ran. */
    if (pvf_db_query(db,
                     "SELECT stratum, trial, value FROM trials WHERE campaign_id = $1 "
                     "ORDER BY stratum, trial",
                     1, p, &r, err))
        goto fail;
    int n = r.nrows;
    for (int k = 0; k < n; k++) {
        int si = atoi(pvf_table_get(&r, k, 0));
        uint64_t t = strtoull(pvf_table_get(&r, k, 1), NULL, 10);
        if (si < 0 || si >= c->nstrata)
            continue;
        co_stratum *s = &c->strata[si];
        co_stratum_complete(s, c, t, strtod(pvf_table_get(&r, k, 2), NULL));
        if (t + 1 > s->next)
            s->next = t + 1 < s->max_trials ? t + 1 : s->max_trials;
    }
    pvf_table_free(&r);
    for (int i = 0; i < c->nstrata; i++) {
        co_stratum *s = &c->strata[i];
        /* Gaps below the highest stored trial were leased and lost. */
        uint64_t t = s->cs.t;
        while (t < s->next) {
            while (t < s->next && co_stratum_is_done(s, t))
                t++;
            uint64_t lo = t;
            while (t < s->next && !co_stratum_is_done(s, t))
                t++;
            if (lo < t)
                co_stratum_requeue(s, (co_range){lo, t, 0, 0});
        }
        co_stratum_recheck(s, c);
    }
    json_decref(spec);
    *out = c;
    return 0;
fail:
    pvf_table_free(&r);
    json_decref(spec);
    co_campaign_free(c);
    return -1;
}
