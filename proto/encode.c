/* encode.c - pvf_msg -> one msgpack map, driven by the schema in schema.c. */
#include "proto_internal.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define AT(m, off, T) ((const T *)((const char *)(m) + (off)))

static int pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_sha(msgpack_packer *pk, const pvf_sha256 *s) {
    return msgpack_pack_bin(pk, sizeof s->b) || msgpack_pack_bin_body(pk, s->b, sizeof s->b);
}

/* A compute value: float32 when that holds it exactly (the engine computes
 * in fp32, so nearly always), float64 otherwise. NaN goes as float64 so its
 * bits survive unchanged. */
static int pack_value(msgpack_packer *pk, double v) {
    float f = (float)v;
    if ((double)f == v)
        return msgpack_pack_float(pk, f);
    return msgpack_pack_double(pk, v);
}

static int pack_trial(msgpack_packer *pk, const pvf_trial_rec *r) {
    return msgpack_pack_array(pk, PVF_PROTO_TRIAL_FIELDS) || msgpack_pack_uint64(pk, r->trial) ||
           msgpack_pack_uint32(pk, r->target) || msgpack_pack_uint64(pk, r->element) ||
           msgpack_pack_uint32(pk, r->mask) || msgpack_pack_uint32(pk, r->old_word) ||
           msgpack_pack_uint32(pk, r->new_word) || pack_value(pk, r->old_value) ||
           pack_value(pk, r->new_value) || msgpack_pack_double(pk, r->value) ||
           msgpack_pack_uint32(pk, r->incorrect) || msgpack_pack_uint32(pk, r->nonfinite) ||
           msgpack_pack_uint32(pk, r->flags);
}

/* Whether an optional field holds its zero (and is left out). */
static int is_zero(const pvf_msg *m, const pvf_field *f) {
    switch (f->kind) {
    case PVF_FK_U32:
        return *AT(m, f->off, uint32_t) == 0;
    case PVF_FK_U64:
        return *AT(m, f->off, uint64_t) == 0;
    case PVF_FK_BOOL:
        return *AT(m, f->off, int) == 0;
    case PVF_FK_F64:
        return *AT(m, f->off, double) == 0;
    case PVF_FK_STR:
        return *AT(m, f->off, char *) == NULL;
    default:
        return 0;
    }
}

static int pack_field(msgpack_packer *pk, const pvf_msg *m, const pvf_field *f) {
    switch (f->kind) {
    case PVF_FK_U32:
        return msgpack_pack_uint32(pk, *AT(m, f->off, uint32_t));
    case PVF_FK_U64:
        return msgpack_pack_uint64(pk, *AT(m, f->off, uint64_t));
    case PVF_FK_BOOL:
        return *AT(m, f->off, int) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case PVF_FK_F64:
        return msgpack_pack_double(pk, *AT(m, f->off, double));
    case PVF_FK_STR:
        return pack_str(pk, *AT(m, f->off, char *));
    case PVF_FK_SHA:
        return pack_sha(pk, AT(m, f->off, pvf_sha256));
    case PVF_FK_DATA: {
        uint32_t n = *AT(m, f->off2, uint32_t);
        return msgpack_pack_bin(pk, n) ||
               (n && msgpack_pack_bin_body(pk, *AT(m, f->off, uint8_t *), n));
    }
    case PVF_FK_TRIALS: {
        const pvf_trial_rec *t = *AT(m, f->off, pvf_trial_rec *);
        uint32_t n = *AT(m, f->off2, uint32_t);
        if (msgpack_pack_array(pk, n))
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (pack_trial(pk, &t[i]))
                return -1;
        return 0;
    }
    case PVF_FK_FILES: {
        const pvf_file_ref *fr = *AT(m, f->off, pvf_file_ref *);
        uint32_t n = *AT(m, f->off2, uint32_t);
        if (msgpack_pack_array(pk, n))
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (msgpack_pack_array(pk, 3) || pack_str(pk, fr[i].name) || pack_sha(pk, &fr[i].sha) ||
                msgpack_pack_uint64(pk, fr[i].size))
                return -1;
        return 0;
    }
    case PVF_FK_EVAL:
        return msgpack_pack_array(pk, 2) || pack_sha(pk, AT(m, f->off, pvf_sha256)) ||
               msgpack_pack_uint64(pk, *AT(m, f->off2, uint64_t));
    case PVF_FK_TARGETS: {
        char *const *t = *(char **const *)((const char *)m + f->off);
        uint32_t n = *AT(m, f->off2, uint32_t);
        if (msgpack_pack_array(pk, n))
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (pack_str(pk, t[i]))
                return -1;
        return 0;
    }
    }
    return -1;
}

int pvf_msg_encode(const pvf_msg *m, uint8_t **out, size_t *len, pvf_err *err) {
    *out = NULL;
    *len = 0;
    if (pvf_proto_check(m, err) < 0)
        return -1;
    const pvf_msg_schema *s = pvf_proto_schema(m->type);
    uint32_t nkeys = 1;
    for (size_t i = 0; i < s->nfields; i++)
        nkeys += !(s->fields[i].optional && is_zero(m, &s->fields[i]));

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int bad = msgpack_pack_map(&pk, nkeys) || pack_str(&pk, "t") || pack_str(&pk, s->name);
    for (size_t i = 0; i < s->nfields && !bad; i++) {
        const pvf_field *f = &s->fields[i];
        if (f->optional && is_zero(m, f))
            continue;
        bad = pack_str(&pk, f->key) || pack_field(&pk, m, f);
    }
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return pvf_err_set(err, "%s: out of memory while encoding", s->name);
    }
    if (sb.size > PVF_PROTO_MAX_MSG) {
        size_t n = sb.size;
        msgpack_sbuffer_destroy(&sb);
        return pvf_err_set(err, "%s: encoded message is %zu bytes, at most %u", s->name, n,
                           PVF_PROTO_MAX_MSG);
    }
    *len = sb.size;
    *out = (uint8_t *)msgpack_sbuffer_release(&sb);
    return 0;
}
