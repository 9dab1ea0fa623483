/* proto_samples.h - sample messages of every type and a field-by-field
 * equality, shared by test_proto.c, fuzz_proto.c and gen_proto_seeds.c.
 *
 * Written out per type on purpose (not from proto/'s schema tables), so a
 * wrong offset or a forgotten field in the library shows up as a difference. */
#ifndef PVF_PROTO_SAMPLES_H
#define PVF_PROTO_SAMPLES_H

#include "pvf_proto.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SAMPLE_TYPICAL, SAMPLE_MAX, SAMPLE_ZERO, SAMPLE_VARIANTS };
static const char *const sample_variant_names[SAMPLE_VARIANTS] = {"typical", "max", "zero"};

/* Backing storage for the arrays and strings a sample points to. */
typedef struct sample_store {
    pvf_trial_rec trials[PVF_PROTO_MAX_TRIALS];
    pvf_file_ref files[PVF_PROTO_MAX_FILES];
    char file_names[PVF_PROTO_MAX_FILES][PVF_PROTO_MAX_STR + 1];
    char *targets[PVF_PROTO_MAX_TARGETS];
    char target_names[PVF_PROTO_MAX_TARGETS][24];
    char long_str[PVF_PROTO_MAX_STR + 1]; /* every byte value but NUL */
    uint8_t data[PVF_PROTO_CHUNK];
} sample_store;

static inline pvf_sha256 sample_sha(uint8_t seed) {
    pvf_sha256 s;
    for (int i = 0; i < 32; i++)
        s.b[i] = (uint8_t)(seed * 31 + i * 7);
    return s;
}

/* A message of type t: typical values, the extremes the caps allow, or all
 * zero / empty. Points into st. */
static inline pvf_msg sample_msg(pvf_msg_type t, int variant, sample_store *st) {
    const int mx = variant == SAMPLE_MAX, zero = variant == SAMPLE_ZERO;
    const uint64_t U64 = zero ? 0 : mx ? UINT64_MAX : 0;
    const uint32_t U32 = zero ? 0 : mx ? UINT32_MAX : 0;
    for (int i = 0; i < PVF_PROTO_MAX_STR; i++)
        st->long_str[i] = (char)(1 + i % 255);
    st->long_str[PVF_PROTO_MAX_STR] = '\0';
    char *str = zero ? "" : mx ? st->long_str : "worker-7 on node12";
    pvf_msg m;
    memset(&m, 0, sizeof m);
    m.type = t;
    switch (t) {
    case PVF_MSG_HELLO:
        m.u.hello.version = variant == SAMPLE_TYPICAL ? PVF_PROTO_VERSION : U32;
        m.u.hello.name = str;
        m.u.hello.executors = variant == SAMPLE_TYPICAL ? 8 : U32;
        m.u.hello.session = U64; /* optional: in the extreme sample only */
        break;
    case PVF_MSG_READY:
        m.u.ready.slots = variant == SAMPLE_TYPICAL ? 3 : U32;
        break;
    case PVF_MSG_RESULT: {
        m.u.result.job = variant == SAMPLE_TYPICAL ? 1234567890123ull : U64;
        m.u.result.attempt = variant == SAMPLE_TYPICAL ? 2 : U32;
        m.u.result.epoch = variant == SAMPLE_TYPICAL ? 17 : U64;
        m.u.result.seq = variant == SAMPLE_TYPICAL ? 5 : U32;
        m.u.result.final = variant != SAMPLE_ZERO;
        uint32_t n = zero ? 0 : mx ? PVF_PROTO_MAX_TRIALS : 3;
        for (uint32_t i = 0; i < n; i++) {
            pvf_trial_rec *r = &st->trials[i];
            if (mx) {
                *r = (pvf_trial_rec){UINT64_MAX - i, UINT32_MAX, UINT64_MAX, UINT32_MAX, UINT32_MAX,
                                     UINT32_MAX,     0,          0,          1.0,        UINT32_MAX,
                                     UINT32_MAX,     UINT32_MAX};
                /* compute values the fault made non-finite or tiny, and ones
                 * float32 cannot hold */
                const double vals[] = {NAN, -INFINITY, INFINITY, -0.0, 1e300, 5e-324, 0.1};
                r->old_value = vals[i % 7];
                r->new_value = vals[(i + 3) % 7];
                r->value = (double)i / (PVF_PROTO_MAX_TRIALS - 1);
            } else {
                *r = (pvf_trial_rec){1000 + i,
                                     i,
                                     12345 + 7 * i,
                                     1u << (i + 3),
                                     0x3f800000,
                                     0x3f800000 ^ (1u << (i + 3)),
                                     1.0,
                                     1.0f + 0.5f * i,
                                     0.003 * i,
                                     3 * i,
                                     i,
                                     i & 1};
            }
        }
        m.u.result.trials = n ? st->trials : NULL;
        m.u.result.ntrials = n;
        m.u.result.error = variant == SAMPLE_TYPICAL ? NULL : str;
        break;
    }
    case PVF_MSG_FETCH:
        m.u.fetch.sha = sample_sha(1);
        m.u.fetch.off = mx ? UINT64_MAX - PVF_PROTO_CHUNK : zero ? 0 : 3u << 20;
        m.u.fetch.len = mx ? PVF_PROTO_CHUNK : zero ? 0 : 1u << 20;
        break;
    case PVF_MSG_HEARTBEAT:
        m.u.heartbeat.slots = variant == SAMPLE_TYPICAL ? 1 : U32;
        m.u.heartbeat.busy = variant == SAMPLE_TYPICAL ? 7 : U32;
        break;
    case PVF_MSG_BYE:
        m.u.bye.reason = variant == SAMPLE_TYPICAL ? "SIGTERM" : str;
        break;
    case PVF_MSG_DISCONNECT:
        m.u.disconnect.reason = variant == SAMPLE_TYPICAL ? "protocol version 2 expected" : str;
        break;
    case PVF_MSG_JOB: {
        m.u.job.job = variant == SAMPLE_TYPICAL ? 99 : U64;
        m.u.job.attempt = variant == SAMPLE_TYPICAL ? 1 : U32;
        m.u.job.epoch = variant == SAMPLE_TYPICAL ? 3 : U64;
        m.u.job.campaign = variant == SAMPLE_TYPICAL ? 42 : U64;
        m.u.job.deadline_ms = variant == SAMPLE_TYPICAL ? 30000 : U32;
        uint32_t nf = zero ? 0 : mx ? PVF_PROTO_MAX_FILES : 2;
        for (uint32_t i = 0; i < nf; i++) {
            if (mx && i == 0) {
                /* the longest name: every byte value but '/' and the control
                 * characters (NUL, newline, ... and DEL) */
                for (int k = 0; k < PVF_PROTO_MAX_STR; k++) {
                    unsigned char c = (unsigned char)st->long_str[k];
                    st->file_names[0][k] = c == '/' || c < 0x20 || c == 0x7f ? '_' : (char)c;
                }
                st->file_names[0][PVF_PROTO_MAX_STR] = '\0';
            } else if (i == 0) {
                strcpy(st->file_names[0], "config.json");
            } else {
                snprintf(st->file_names[i], sizeof st->file_names[i],
                         "model-%05u-of-%05u.safetensors", (unsigned)i, (unsigned)nf);
            }
            st->files[i].name = st->file_names[i];
            st->files[i].sha = sample_sha((uint8_t)(10 + i));
            st->files[i].size = mx ? UINT64_MAX - i : 1000u * (i + 1);
        }
        m.u.job.files = nf ? st->files : NULL;
        m.u.job.nfiles = nf;
        m.u.job.eval_sha = sample_sha(2);
        m.u.job.eval_size = variant == SAMPLE_TYPICAL ? 785000 : U64;
        m.u.job.format = variant == SAMPLE_TYPICAL ? "int8" : str;
        m.u.job.fault = variant == SAMPLE_TYPICAL ? "bit" : zero ? "" : "kbit:2";
        m.u.job.seed = variant == SAMPLE_TYPICAL ? 0x5eed : U64;
        m.u.job.stratum = variant == SAMPLE_TYPICAL ? 7 : U64;
        uint32_t nt = zero ? 0 : mx ? PVF_PROTO_MAX_TARGETS : 3;
        for (uint32_t i = 0; i < nt; i++) {
            snprintf(st->target_names[i], sizeof st->target_names[i], "layers.%u.weight",
                     (unsigned)i);
            st->targets[i] = st->target_names[i];
        }
        m.u.job.targets = nt ? st->targets : NULL;
        m.u.job.ntargets = nt;
        m.u.job.lo = mx ? UINT64_MAX - PVF_PROTO_MAX_JOB_TRIALS : zero ? 0 : 4096;
        m.u.job.hi = mx ? UINT64_MAX : zero ? 0 : 4096 + 512;
        m.u.job.naive = variant == SAMPLE_MAX;
        m.u.job.threshold = variant == SAMPLE_MAX ? 0.125 : 0;
        break;
    }
    case PVF_MSG_ACK:
        m.u.ack.job = variant == SAMPLE_TYPICAL ? 99 : U64;
        m.u.ack.attempt = variant == SAMPLE_TYPICAL ? 1 : U32;
        m.u.ack.seq = variant == SAMPLE_TYPICAL ? 5 : U32;
        break;
    case PVF_MSG_CANCEL:
        m.u.cancel.job = variant == SAMPLE_TYPICAL ? 99 : U64;
        break;
    case PVF_MSG_ARTIFACT: {
        uint32_t n = zero ? 0 : mx ? PVF_PROTO_CHUNK : 100;
        for (uint32_t i = 0; i < n; i++)
            st->data[i] = (uint8_t)(i * 131 + (i >> 8));
        m.u.artifact.sha = sample_sha(3);
        m.u.artifact.total = mx ? UINT64_MAX : zero ? 0 : 5000;
        m.u.artifact.off = mx ? UINT64_MAX - n : zero ? 0 : 4900;
        m.u.artifact.data = n ? st->data : NULL;
        m.u.artifact.len = n;
        break;
    }
    }
    return m;
}

static inline int str_eq(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static inline int dbl_same(double a, double b) {
    return memcmp(&a, &b, sizeof a) == 0; /* bit for bit: NaN, -0.0 */
}

static inline int sha_eq(const pvf_sha256 *a, const pvf_sha256 *b) {
    return memcmp(a->b, b->b, 32) == 0;
}

static inline int trial_eq(const pvf_trial_rec *a, const pvf_trial_rec *b) {
    return a->trial == b->trial && a->target == b->target && a->element == b->element &&
           a->mask == b->mask && a->old_word == b->old_word && a->new_word == b->new_word &&
           dbl_same(a->old_value, b->old_value) && dbl_same(a->new_value, b->new_value) &&
           dbl_same(a->value, b->value) && a->incorrect == b->incorrect &&
           a->nonfinite == b->nonfinite && a->flags == b->flags;
}

/* Field-by-field equality; on a difference, *why names the field. */
static inline int msg_eq(const pvf_msg *a, const pvf_msg *b, const char **why) {
#define SAME(cond, field)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            *why = field;                                                                          \
            return 0;                                                                              \
        }                                                                                          \
    } while (0)
    SAME(a->type == b->type, "type");
    switch (a->type) {
    case PVF_MSG_HELLO:
        SAME(a->u.hello.version == b->u.hello.version, "v");
        SAME(str_eq(a->u.hello.name, b->u.hello.name), "name");
        SAME(a->u.hello.executors == b->u.hello.executors, "executors");
        SAME(a->u.hello.session == b->u.hello.session, "session");
        break;
    case PVF_MSG_READY:
        SAME(a->u.ready.slots == b->u.ready.slots, "slots");
        break;
    case PVF_MSG_RESULT:
        SAME(a->u.result.job == b->u.result.job, "job");
        SAME(a->u.result.attempt == b->u.result.attempt, "attempt");
        SAME(a->u.result.epoch == b->u.result.epoch, "epoch");
        SAME(a->u.result.seq == b->u.result.seq, "seq");
        SAME(a->u.result.final == b->u.result.final, "final");
        SAME(a->u.result.ntrials == b->u.result.ntrials, "trials (count)");
        for (uint32_t i = 0; i < a->u.result.ntrials; i++)
            SAME(trial_eq(&a->u.result.trials[i], &b->u.result.trials[i]), "trials[i]");
        SAME(str_eq(a->u.result.error, b->u.result.error), "error");
        break;
    case PVF_MSG_FETCH:
        SAME(sha_eq(&a->u.fetch.sha, &b->u.fetch.sha), "sha");
        SAME(a->u.fetch.off == b->u.fetch.off, "off");
        SAME(a->u.fetch.len == b->u.fetch.len, "len");
        break;
    case PVF_MSG_HEARTBEAT:
        SAME(a->u.heartbeat.slots == b->u.heartbeat.slots, "slots");
        SAME(a->u.heartbeat.busy == b->u.heartbeat.busy, "busy");
        break;
    case PVF_MSG_BYE:
        SAME(str_eq(a->u.bye.reason, b->u.bye.reason), "reason");
        break;
    case PVF_MSG_DISCONNECT:
        SAME(str_eq(a->u.disconnect.reason, b->u.disconnect.reason), "reason");
        break;
    case PVF_MSG_JOB:
        SAME(a->u.job.job == b->u.job.job, "job");
        SAME(a->u.job.attempt == b->u.job.attempt, "attempt");
        SAME(a->u.job.epoch == b->u.job.epoch, "epoch");
        SAME(a->u.job.campaign == b->u.job.campaign, "campaign");
        SAME(a->u.job.deadline_ms == b->u.job.deadline_ms, "deadline_ms");
        SAME(a->u.job.nfiles == b->u.job.nfiles, "files (count)");
        for (uint32_t i = 0; i < a->u.job.nfiles; i++) {
            SAME(str_eq(a->u.job.files[i].name, b->u.job.files[i].name), "files[i].name");
            SAME(sha_eq(&a->u.job.files[i].sha, &b->u.job.files[i].sha), "files[i].sha");
            SAME(a->u.job.files[i].size == b->u.job.files[i].size, "files[i].size");
        }
        SAME(sha_eq(&a->u.job.eval_sha, &b->u.job.eval_sha), "eval.sha");
        SAME(a->u.job.eval_size == b->u.job.eval_size, "eval.size");
        SAME(str_eq(a->u.job.format, b->u.job.format), "format");
        SAME(str_eq(a->u.job.fault, b->u.job.fault), "fault");
        SAME(a->u.job.seed == b->u.job.seed, "seed");
        SAME(a->u.job.stratum == b->u.job.stratum, "stratum");
        SAME(a->u.job.ntargets == b->u.job.ntargets, "targets (count)");
        for (uint32_t i = 0; i < a->u.job.ntargets; i++)
            SAME(str_eq(a->u.job.targets[i], b->u.job.targets[i]), "targets[i]");
        SAME(a->u.job.lo == b->u.job.lo, "lo");
        SAME(a->u.job.hi == b->u.job.hi, "hi");
        SAME(a->u.job.naive == b->u.job.naive, "naive");
        SAME(a->u.job.threshold == b->u.job.threshold, "threshold");
        break;
    case PVF_MSG_ACK:
        SAME(a->u.ack.job == b->u.ack.job, "job");
        SAME(a->u.ack.attempt == b->u.ack.attempt, "attempt");
        SAME(a->u.ack.seq == b->u.ack.seq, "seq");
        break;
    case PVF_MSG_CANCEL:
        SAME(a->u.cancel.job == b->u.cancel.job, "job");
        break;
    case PVF_MSG_ARTIFACT:
        SAME(sha_eq(&a->u.artifact.sha, &b->u.artifact.sha), "sha");
        SAME(a->u.artifact.off == b->u.artifact.off, "off");
        SAME(a->u.artifact.total == b->u.artifact.total, "total");
        SAME(a->u.artifact.len == b->u.artifact.len, "data (length)");
        SAME(a->u.artifact.len == 0 ||
                 memcmp(a->u.artifact.data, b->u.artifact.data, a->u.artifact.len) == 0,
             "data");
        break;
    default:
        SAME(0, "type (unknown)");
    }
    return 1;
#undef SAME
}

#endif
