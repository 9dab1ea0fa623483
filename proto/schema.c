/* schema.c - the fields of every message type (one table drives the encoder
 * and the decoder) and the semantic checks both directions run. */
#include "proto_internal.h"

#include <stdio.h>
#include <string.h>

#define F(key, kind, member)                                                                       \
    { key, kind, offsetof(pvf_msg, member), 0, 0 }
#define F2(key, kind, member, member2)                                                             \
    { key, kind, offsetof(pvf_msg, member), offsetof(pvf_msg, member2), 0 }
#define FOPT(key, kind, member)                                                                    \
    { key, kind, offsetof(pvf_msg, member), 0, 1 }
#define COUNT(a) (sizeof(a) / sizeof(a)[0])

static const pvf_field hello_fields[] = {
    F("v", PVF_FK_U32, u.hello.version),
    F("name", PVF_FK_STR, u.hello.name),
    F("executors", PVF_FK_U32, u.hello.executors),
    FOPT("session", PVF_FK_U64, u.hello.session),
};
static const pvf_field ready_fields[] = {
    F("slots", PVF_FK_U32, u.ready.slots),
};
static const pvf_field result_fields[] = {
    F("job", PVF_FK_U64, u.result.job),
    F("attempt", PVF_FK_U32, u.result.attempt),
    F("epoch", PVF_FK_U64, u.result.epoch),
    F("seq", PVF_FK_U32, u.result.seq),
    F("final", PVF_FK_BOOL, u.result.final),
    F2("trials", PVF_FK_TRIALS, u.result.trials, u.result.ntrials),
    FOPT("error", PVF_FK_STR, u.result.error),
};
static const pvf_field fetch_fields[] = {
    F("sha", PVF_FK_SHA, u.fetch.sha),
    F("off", PVF_FK_U64, u.fetch.off),
    F("len", PVF_FK_U32, u.fetch.len),
};
/* The coordinator's HEARTBEAT carries no fields, a worker's carries both:
 * both are optional, and zero is the same as absent. */
static const pvf_field heartbeat_fields[] = {
    FOPT("slots", PVF_FK_U32, u.heartbeat.slots),
    FOPT("busy", PVF_FK_U32, u.heartbeat.busy),
};
static const pvf_field bye_fields[] = {
    F("reason", PVF_FK_STR, u.bye.reason),
};
static const pvf_field job_fields[] = {
    F("job", PVF_FK_U64, u.job.job),
    F("attempt", PVF_FK_U32, u.job.attempt),
    F("epoch", PVF_FK_U64, u.job.epoch),
    F("campaign", PVF_FK_U64, u.job.campaign),
    F("deadline_ms", PVF_FK_U32, u.job.deadline_ms),
    F2("files", PVF_FK_FILES, u.job.files, u.job.nfiles),
    F2("eval", PVF_FK_EVAL, u.job.eval_sha, u.job.eval_size),
    F("format", PVF_FK_STR, u.job.format),
    F("fault", PVF_FK_STR, u.job.fault),
    F("seed", PVF_FK_U64, u.job.seed),
    F("stratum", PVF_FK_U64, u.job.stratum),
    F2("targets", PVF_FK_TARGETS, u.job.targets, u.job.ntargets),
    F("lo", PVF_FK_U64, u.job.lo),
    F("hi", PVF_FK_U64, u.job.hi),
    F("naive", PVF_FK_BOOL, u.job.naive),
    FOPT("threshold", PVF_FK_F64, u.job.threshold),
};
static const pvf_field ack_fields[] = {
    F("job", PVF_FK_U64, u.ack.job),
    F("attempt", PVF_FK_U32, u.ack.attempt),
    F("seq", PVF_FK_U32, u.ack.seq),
};
static const pvf_field cancel_fields[] = {
    F("job", PVF_FK_U64, u.cancel.job),
};
static const pvf_field artifact_fields[] = {
    F("sha", PVF_FK_SHA, u.artifact.sha),
    F("off", PVF_FK_U64, u.artifact.off),
    F("total", PVF_FK_U64, u.artifact.total),
    F2("data", PVF_FK_DATA, u.artifact.data, u.artifact.len),
};
static const pvf_field disconnect_fields[] = {
    F("reason", PVF_FK_STR, u.disconnect.reason),
};

#define S(t, name, fields)                                                                         \
    { t, name, fields, COUNT(fields) }
static const pvf_msg_schema schemas[] = {
    S(PVF_MSG_HELLO, "HELLO", hello_fields),
    S(PVF_MSG_READY, "READY", ready_fields),
    S(PVF_MSG_RESULT, "RESULT", result_fields),
    S(PVF_MSG_FETCH, "FETCH", fetch_fields),
    S(PVF_MSG_HEARTBEAT, "HEARTBEAT", heartbeat_fields),
    S(PVF_MSG_BYE, "BYE", bye_fields),
    S(PVF_MSG_JOB, "JOB", job_fields),
    S(PVF_MSG_ACK, "ACK", ack_fields),
    S(PVF_MSG_CANCEL, "CANCEL", cancel_fields),
    S(PVF_MSG_ARTIFACT, "ARTIFACT", artifact_fields),
    S(PVF_MSG_DISCONNECT, "DISCONNECT", disconnect_fields),
};

const pvf_msg_schema *pvf_proto_schema(pvf_msg_type t) {
    for (size_t i = 0; i < COUNT(schemas); i++)
        if (schemas[i].type == t)
            return &schemas[i];
    return NULL;
}

const pvf_msg_schema *pvf_proto_schema_by_name(const char *name, size_t n) {
    for (size_t i = 0; i < COUNT(schemas); i++)
        if (strlen(schemas[i].name) == n && memcmp(schemas[i].name, name, n) == 0)
            return &schemas[i];
    return NULL;
}

/* ---- semantic checks ---- */

static int check_str(const char *type, const char *field, const char *s, int optional,
                     pvf_err *err) {
    if (!s)
        return optional ? 0 : pvf_err_set(err, "%s: field '%s': missing string", type, field);
    if (strnlen(s, PVF_PROTO_MAX_STR + 1) > PVF_PROTO_MAX_STR)
        return pvf_err_set(err, "%s: field '%s': string longer than %u bytes", type, field,
                           PVF_PROTO_MAX_STR);
    return 0;
}

/* A name inside the model directory: a single path component. */
static int check_file_name(const char *type, uint32_t i, const char *name, pvf_err *err) {
    char field[32];
    snprintf(field, sizeof field, "files[%u].name", (unsigned)i);
    if (check_str(type, field, name, 0, err) < 0)
        return -1;
    int control = 0;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        control |= *c < 0x20 || *c == 0x7f;
    /* The name is untrusted: it is not echoed into the one-line error. */
    if (name[0] == '\0' || control || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return pvf_err_set(err,
                           "%s: field '%s': not a file name (empty, \".\", \"..\", or with '/' "
                           "or a control character)",
                           type, field);
    return 0;
}

static int check_result(const char *type, const pvf_msg *m, pvf_err *err) {
    if (m->u.result.ntrials > PVF_PROTO_MAX_TRIALS)
        return pvf_err_set(err, "%s: field 'trials': %u records, at most %u", type,
                           (unsigned)m->u.result.ntrials, PVF_PROTO_MAX_TRIALS);
    if (m->u.result.ntrials && !m->u.result.trials)
        return pvf_err_set(err, "%s: field 'trials': NULL with %u records", type,
                           (unsigned)m->u.result.ntrials);
    for (uint32_t i = 0; i < m->u.result.ntrials; i++) {
        double v = m->u.result.trials[i].value;
        if (!(v >= 0.0 && v <= 1.0)) /* also false for NaN */
            return pvf_err_set(err, "%s: field 'trials[%u].value': %g is not in [0, 1]", type,
                               (unsigned)i, v);
    }
    return 0;
}

static int check_job(const char *type, const pvf_msg *m, pvf_err *err) {
    uint32_t nf = m->u.job.nfiles, nt = m->u.job.ntargets;
    if (!(m->u.job.threshold >= 0 && m->u.job.threshold <= 1e300))
        return pvf_err_set(err, "%s: field 'threshold': %g is not a finite number >= 0", type,
                           m->u.job.threshold);
    if (nf > PVF_PROTO_MAX_FILES)
        return pvf_err_set(err, "%s: field 'files': %u files, at most %u", type, (unsigned)nf,
                           PVF_PROTO_MAX_FILES);
    if (nf && !m->u.job.files)
        return pvf_err_set(err, "%s: field 'files': NULL with %u files", type, (unsigned)nf);
    for (uint32_t i = 0; i < nf; i++) {
        if (check_file_name(type, i, m->u.job.files[i].name, err) < 0)
            return -1;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(m->u.job.files[j].name, m->u.job.files[i].name) == 0)
                return pvf_err_set(err, "%s: field 'files[%u].name': \"%s\" is listed twice", type,
                                   (unsigned)i, m->u.job.files[i].name);
    }
    if (nt > PVF_PROTO_MAX_TARGETS)
        return pvf_err_set(err, "%s: field 'targets': %u targets, at most %u", type, (unsigned)nt,
                           PVF_PROTO_MAX_TARGETS);
    if (nt && !m->u.job.targets)
        return pvf_err_set(err, "%s: field 'targets': NULL with %u targets", type, (unsigned)nt);
    for (uint32_t i = 0; i < nt; i++) {
        char field[32];
        snprintf(field, sizeof field, "targets[%u]", (unsigned)i);
        if (check_str(type, field, m->u.job.targets[i], 0, err) < 0)
            return -1;
    }
    if (m->u.job.lo > m->u.job.hi)
        return pvf_err_set(err, "%s: field 'hi': %llu is below lo %llu", type,
                           (unsigned long long)m->u.job.hi, (unsigned long long)m->u.job.lo);
    if (m->u.job.hi - m->u.job.lo > PVF_PROTO_MAX_JOB_TRIALS)
        return pvf_err_set(err, "%s: field 'hi': hi - lo = %llu trials, at most %u", type,
                           (unsigned long long)(m->u.job.hi - m->u.job.lo),
                           PVF_PROTO_MAX_JOB_TRIALS);
    return 0;
}

static int check_chunk(const char *type, const char *len_field, uint64_t off, uint32_t len,
                       pvf_err *err) {
    if (len > PVF_PROTO_CHUNK)
        return pvf_err_set(err, "%s: field '%s': %u bytes, at most %u", type, len_field,
                           (unsigned)len, PVF_PROTO_CHUNK);
    if (off > UINT64_MAX - len)
        return pvf_err_set(err, "%s: field 'off': off + %u overflows", type, (unsigned)len);
    return 0;
}

int pvf_proto_check(const pvf_msg *m, pvf_err *err) {
    const pvf_msg_schema *s = pvf_proto_schema(m->type);
    if (!s)
        return pvf_err_set(err, "message: unknown type %d", (int)m->type);
    const char *type = s->name;
    for (size_t i = 0; i < s->nfields; i++) {
        const pvf_field *f = &s->fields[i];
        if (f->kind == PVF_FK_STR &&
            check_str(type, f->key, *(char *const *)((const char *)m + f->off), f->optional, err) <
                0)
            return -1;
    }
    switch (m->type) {
    case PVF_MSG_RESULT:
        return check_result(type, m, err);
    case PVF_MSG_JOB:
        return check_job(type, m, err);
    case PVF_MSG_FETCH:
        return check_chunk(type, "len", m->u.fetch.off, m->u.fetch.len, err);
    case PVF_MSG_ARTIFACT:
        if (check_chunk(type, "data", m->u.artifact.off, m->u.artifact.len, err) < 0)
            return -1;
        if (m->u.artifact.len && !m->u.artifact.data)
            return pvf_err_set(err, "%s: field 'data': NULL with %u bytes", type,
                               (unsigned)m->u.artifact.len);
        if (m->u.artifact.off + m->u.artifact.len > m->u.artifact.total)
            return pvf_err_set(err, "%s: field 'total': chunk [%llu, %llu) ends past total %llu",
                               type, (unsigned long long)m->u.artifact.off,
                               (unsigned long long)(m->u.artifact.off + m->u.artifact.len),
                               (unsigned long long)m->u.artifact.total);
        return 0;
    default:
        return 0;
    }
}
