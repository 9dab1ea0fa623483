/* decode.c - untrusted bytes -> pvf_msg: the pre-pass (prevalidate.c), then
 * msgpack-c, then typed extraction against the schema (schema.c) into copies
 * the message owns, then the semantic checks the encoder also runs. */
#include "proto_internal.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define AT(m, off, T) ((T *)((char *)(m) + (off)))

typedef struct pvf_decoder {
    const char *type; /* wire name, for errors */
    pvf_arena arena;
    pvf_err *err;
} pvf_decoder;

static const char *const trial_names[PVF_PROTO_TRIAL_FIELDS] = {
    "trial",     "target",    "element", "mask",      "old_word",  "new_word",
    "old_value", "new_value", "value",   "incorrect", "nonfinite", "flags",
};

/* Untrusted bytes made safe for a one-line error: at most 40, printable. */
static const char *printable(const char *p, size_t n, char out[48]) {
    size_t k = 0;
    for (size_t i = 0; i < n && k < 40; i++)
        out[k++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    if (n > 40) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

/* Where a value sits: "key", "key[i]", "key[i].sub" or "key.sub". Rendered
 * only for an error, so the hot path (4096 records of 12) formats nothing. */
typedef struct pvf_path {
    const char *key;
    long long index; /* -1: none */
    const char *sub; /* NULL: none */
} pvf_path;

static pvf_path path_at(const char *key, long long index, const char *sub) {
    pvf_path p = {key, index, sub};
    return p;
}

static int failf(pvf_decoder *d, const pvf_path *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(pvf_decoder *d, const pvf_path *p, const char *fmt, ...) {
    char name[96], what[256];
    if (p->index >= 0)
        snprintf(name, sizeof name, "%s[%lld]%s%s", p->key, p->index, p->sub ? "." : "",
                 p->sub ? p->sub : "");
    else
        snprintf(name, sizeof name, "%s%s%s", p->key, p->sub ? "." : "", p->sub ? p->sub : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pvf_err_set(d->err, "%s: field '%s': %s", d->type, name, what);
}

static int get_uint(pvf_decoder *d, const msgpack_object *o, uint64_t max, const pvf_path *p,
                    uint64_t *out) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return failf(d, p, "expected an unsigned integer");
    if (o->via.u64 > max)
        return failf(d, p, "%llu is larger than %llu", (unsigned long long)o->via.u64,
                     (unsigned long long)max);
    *out = o->via.u64;
    return 0;
}

static int get_u32(pvf_decoder *d, const msgpack_object *o, const pvf_path *p, uint32_t *out) {
    uint64_t v = 0;
    if (get_uint(d, o, UINT32_MAX, p, &v) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int get_float(pvf_decoder *d, const msgpack_object *o, const pvf_path *p, double *out) {
    if (o->type != MSGPACK_OBJECT_FLOAT32 && o->type != MSGPACK_OBJECT_FLOAT64)
        return failf(d, p, "expected a float");
    *out = o->via.f64;
    return 0;
}

static int get_bool(pvf_decoder *d, const msgpack_object *o, const pvf_path *p, int *out) {
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return failf(d, p, "expected a boolean");
    *out = o->via.boolean ? 1 : 0;
    return 0;
}

/* A copy of a string in the arena: at most PVF_PROTO_MAX_STR, no NUL. */
static int get_str(pvf_decoder *d, const msgpack_object *o, const pvf_path *p, char **out) {
    if (o->type != MSGPACK_OBJECT_STR)
        return failf(d, p, "expected a string");
    uint32_t n = o->via.str.size;
    if (n > PVF_PROTO_MAX_STR)
        return failf(d, p, "string of %u bytes, at most %u", (unsigned)n, PVF_PROTO_MAX_STR);
    if (n && memchr(o->via.str.ptr, '\0', n))
        return failf(d, p, "string contains a NUL byte");
    char *s = pvf_arena_alloc(&d->arena, (size_t)n + 1);
    if (!s)
        return failf(d, p, "out of memory");
    if (n)
        memcpy(s, o->via.str.ptr, n);
    s[n] = '\0';
    *out = s;
    return 0;
}

static int get_sha(pvf_decoder *d, const msgpack_object *o, const pvf_path *p, pvf_sha256 *out) {
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != sizeof out->b)
        return failf(d, p, "expected a binary of 32 bytes");
    memcpy(out->b, o->via.bin.ptr, sizeof out->b);
    return 0;
}

/* An array of at most max elements (exactly max when exact). */
static int get_array(pvf_decoder *d, const msgpack_object *o, const pvf_path *p, uint32_t max,
                     int exact) {
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return exact ? failf(d, p, "expected an array of %u", (unsigned)max)
                     : failf(d, p, "expected an array");
    if (exact && o->via.array.size != max)
        return failf(d, p, "expected an array of %u", (unsigned)max);
    if (o->via.array.size > max)
        return failf(d, p, "%u elements, at most %u", (unsigned)o->via.array.size, (unsigned)max);
    return 0;
}

static void *alloc_array(pvf_decoder *d, uint32_t n, size_t size) {
    return n ? pvf_arena_alloc(&d->arena, (size_t)n * size) : NULL;
}

static int get_trial(pvf_decoder *d, const msgpack_object *o, uint32_t i, pvf_trial_rec *r) {
    pvf_path p = path_at("trials", i, NULL);
    if (get_array(d, o, &p, PVF_PROTO_TRIAL_FIELDS, 1) < 0)
        return -1;
    const msgpack_object *v = o->via.array.ptr;
    uint32_t *u32[PVF_PROTO_TRIAL_FIELDS] = {
        [1] = &r->target,    [3] = &r->mask,       [4] = &r->old_word, [5] = &r->new_word,
        [9] = &r->incorrect, [10] = &r->nonfinite, [11] = &r->flags,
    };
    double *f64[PVF_PROTO_TRIAL_FIELDS] = {
        [6] = &r->old_value, [7] = &r->new_value, [8] = &r->value};
    for (int k = 0; k < PVF_PROTO_TRIAL_FIELDS; k++) {
        p.sub = trial_names[k];
        int rc;
        if (k == 0)
            rc = get_uint(d, &v[k], UINT64_MAX, &p, &r->trial);
        else if (k == 2)
            rc = get_uint(d, &v[k], UINT64_MAX, &p, &r->element);
        else if (u32[k])
            rc = get_u32(d, &v[k], &p, u32[k]);
        else
            rc = get_float(d, &v[k], &p, f64[k]);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int get_file(pvf_decoder *d, const msgpack_object *o, uint32_t i, pvf_file_ref *f) {
    pvf_path p = path_at("files", i, NULL);
    if (get_array(d, o, &p, 3, 1) < 0)
        return -1;
    const msgpack_object *v = o->via.array.ptr;
    p.sub = "name";
    if (get_str(d, &v[0], &p, &f->name) < 0)
        return -1;
    p.sub = "sha";
    if (get_sha(d, &v[1], &p, &f->sha) < 0)
        return -1;
    p.sub = "size";
    return get_uint(d, &v[2], UINT64_MAX, &p, &f->size);
}

static int get_field(pvf_decoder *d, const pvf_field *f, const msgpack_object *o, pvf_msg *m) {
    pvf_path p = path_at(f->key, -1, NULL);
    switch (f->kind) {
    case PVF_FK_U32:
        return get_u32(d, o, &p, AT(m, f->off, uint32_t));
    case PVF_FK_U64:
        return get_uint(d, o, UINT64_MAX, &p, AT(m, f->off, uint64_t));
    case PVF_FK_BOOL:
        return get_bool(d, o, &p, AT(m, f->off, int));
    case PVF_FK_F64:
        return get_float(d, o, &p, AT(m, f->off, double));
    case PVF_FK_STR:
        return get_str(d, o, &p, AT(m, f->off, char *));
    case PVF_FK_SHA:
        return get_sha(d, o, &p, AT(m, f->off, pvf_sha256));
    case PVF_FK_DATA:
        if (o->type != MSGPACK_OBJECT_BIN)
            return failf(d, &p, "expected a binary");
        if (o->via.bin.size > PVF_PROTO_CHUNK)
            return failf(d, &p, "%u bytes, at most %u", (unsigned)o->via.bin.size, PVF_PROTO_CHUNK);
        /* msgpack-c points bin objects into the input: no copy. */
        *AT(m, f->off, const uint8_t *) = (const uint8_t *)o->via.bin.ptr;
        *AT(m, f->off2, uint32_t) = o->via.bin.size;
        return 0;
    case PVF_FK_TRIALS: {
        if (get_array(d, o, &p, PVF_PROTO_MAX_TRIALS, 0) < 0)
            return -1;
        uint32_t n = o->via.array.size;
        pvf_trial_rec *t = alloc_array(d, n, sizeof *t);
        if (n && !t)
            return failf(d, &p, "out of memory");
        for (uint32_t i = 0; i < n; i++)
            if (get_trial(d, &o->via.array.ptr[i], i, &t[i]) < 0)
                return -1;
        *AT(m, f->off, pvf_trial_rec *) = t;
        *AT(m, f->off2, uint32_t) = n;
        return 0;
    }
    case PVF_FK_FILES: {
        if (get_array(d, o, &p, PVF_PROTO_MAX_FILES, 0) < 0)
            return -1;
        uint32_t n = o->via.array.size;
        pvf_file_ref *fr = alloc_array(d, n, sizeof *fr);
        if (n && !fr)
            return failf(d, &p, "out of memory");
        for (uint32_t i = 0; i < n; i++)
            if (get_file(d, &o->via.array.ptr[i], i, &fr[i]) < 0)
                return -1;
        *AT(m, f->off, pvf_file_ref *) = fr;
        *AT(m, f->off2, uint32_t) = n;
        return 0;
    }
    case PVF_FK_EVAL: {
        if (get_array(d, o, &p, 2, 1) < 0)
            return -1;
        p.sub = "sha";
        if (get_sha(d, &o->via.array.ptr[0], &p, AT(m, f->off, pvf_sha256)) < 0)
            return -1;
        p.sub = "size";
        return get_uint(d, &o->via.array.ptr[1], UINT64_MAX, &p, AT(m, f->off2, uint64_t));
    }
    case PVF_FK_TARGETS: {
        if (get_array(d, o, &p, PVF_PROTO_MAX_TARGETS, 0) < 0)
            return -1;
        uint32_t n = o->via.array.size;
        char **t = alloc_array(d, n, sizeof *t);
        if (n && !t)
            return failf(d, &p, "out of memory");
        for (uint32_t i = 0; i < n; i++) {
            p.index = i;
            if (get_str(d, &o->via.array.ptr[i], &p, &t[i]) < 0)
                return -1;
        }
        *AT(m, f->off, char **) = t;
        *AT(m, f->off2, uint32_t) = n;
        return 0;
    }
    }
    return failf(d, &p, "unsupported field kind");
}

static int key_is(const msgpack_object *k, const char *s) {
    size_t n = strlen(s);
    return k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

/* The typed fields of the map root into m. */
static int extract(pvf_decoder *d, const msgpack_object *root, pvf_msg *m) {
    if (root->type != MSGPACK_OBJECT_MAP)
        return pvf_err_set(d->err, "message: expected a map");
    const msgpack_object_kv *kv = root->via.map.ptr;
    uint32_t n = root->via.map.size;
    char buf[48];
    const msgpack_object *t = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (kv[i].key.type != MSGPACK_OBJECT_STR)
            return pvf_err_set(d->err, "message: key %u is not a string", (unsigned)i);
        if (key_is(&kv[i].key, "t")) {
            if (t)
                return pvf_err_set(d->err, "message: field 't': given twice");
            t = &kv[i].val;
        }
    }
    if (!t)
        return pvf_err_set(d->err, "message: field 't': missing");
    if (t->type != MSGPACK_OBJECT_STR)
        return pvf_err_set(d->err, "message: field 't': expected a string");
    const pvf_msg_schema *s = pvf_proto_schema_by_name(t->via.str.ptr, t->via.str.size);
    if (!s)
        return pvf_err_set(d->err, "message: field 't': unknown type \"%s\"",
                           printable(t->via.str.ptr, t->via.str.size, buf));
    d->type = s->name;
    m->type = s->type;

    uint32_t seen = 0; /* bit i: field i given (no type has more than 32) */
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *k = &kv[i].key;
        if (key_is(k, "t"))
            continue;
        size_t j = 0;
        while (j < s->nfields && !key_is(k, s->fields[j].key))
            j++;
        if (j == s->nfields)
            return pvf_err_set(d->err, "%s: unknown field '%s'", d->type,
                               printable(k->via.str.ptr, k->via.str.size, buf));
        pvf_path p = path_at(s->fields[j].key, -1, NULL);
        if (seen & (1u << j))
            return failf(d, &p, "given twice");
        seen |= 1u << j;
        if (get_field(d, &s->fields[j], &kv[i].val, m) < 0)
            return -1;
    }
    for (size_t j = 0; j < s->nfields; j++) {
        pvf_path p = path_at(s->fields[j].key, -1, NULL);
        if (!s->fields[j].optional && !(seen & (1u << j)))
            return failf(d, &p, "missing");
    }
    return pvf_proto_check(m, d->err);
}

int pvf_msg_decode(const uint8_t *buf, size_t len, pvf_msg *m, pvf_err *err) {
    memset(m, 0, sizeof *m);
    if (!buf)
        return pvf_err_set(err, "message: no bytes");
    if (pvf_proto_prevalidate(buf, len, err) < 0)
        return -1;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&u, (const char *)buf, len, &off);
    pvf_decoder d = {.type = "message", .err = err};
    int ret;
    if (rc != MSGPACK_UNPACK_SUCCESS || off != len)
        ret = pvf_err_set(err, "message: msgpack rejected it (code %d at byte %zu of %zu)", (int)rc,
                          off, len);
    else
        ret = extract(&d, &u.data, m);
    msgpack_unpacked_destroy(&u);
    if (ret < 0) {
        pvf_arena_free(&d.arena);
        memset(m, 0, sizeof *m);
        return -1;
    }
    m->owned_ = d.arena.head;
    return 0;
}

void pvf_msg_free(pvf_msg *m) {
    if (!m)
        return;
    pvf_arena a = {m->owned_};
    pvf_arena_free(&a);
    memset(m, 0, sizeof *m);
}
