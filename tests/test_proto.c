/* test_proto.c - the wire protocol: round trips of every type, hostile bytes
 * (rejected before msgpack-c can allocate for them), every field with a
 * wrong msgpack type, unknown / duplicate / missing keys, trailing bytes,
 * every truncation, the caps in both directions, and sha256. Prints the
 * RESULT decode rate (not asserted). */
#include "proto_samples.h"
#include "pvf_proto.h"
#include "test.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- counting the bytes the decoder allocates ----
 * Under ASan through its allocator hooks; otherwise by interposing glibc's
 * malloc family (the executable's definitions win for libmsgpackc too). */
static volatile int alloc_counting;
static volatile size_t alloc_bytes;
static volatile size_t alloc_calls;

static void alloc_note(size_t n) {
    if (alloc_counting) {
        alloc_bytes += n;
        alloc_calls++;
    }
}

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

#ifdef TEST_ASAN
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
static void asan_malloc_hook(const volatile void *p, size_t n) {
    (void)p;
    alloc_note(n);
}
static void asan_free_hook(const volatile void *p) {
    (void)p;
}
static void alloc_hooks_install(void) {
    __sanitizer_install_malloc_and_free_hooks(asan_malloc_hook, asan_free_hook);
}
#else
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
void *malloc(size_t n) {
    alloc_note(n);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
    alloc_note(n * size);
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
    alloc_note(n);
    return __libc_realloc(p, n);
}
void free(void *p) {
    __libc_free(p);
}
static void alloc_hooks_install(void) {}
#endif

static const pvf_msg_type all_types[] = {
    PVF_MSG_HELLO, PVF_MSG_READY, PVF_MSG_RESULT, PVF_MSG_FETCH,    PVF_MSG_HEARTBEAT,  PVF_MSG_BYE,
    PVF_MSG_JOB,   PVF_MSG_ACK,   PVF_MSG_CANCEL, PVF_MSG_ARTIFACT, PVF_MSG_DISCONNECT,
};
#define NTYPES (sizeof all_types / sizeof all_types[0])

static sample_store *store;

static int encode(const pvf_msg *m, uint8_t **buf, size_t *len) {
    pvf_err err = {{0}};
    int rc = pvf_msg_encode(m, buf, len, &err);
    if (rc < 0)
        fprintf(stderr, "  encode failed: %s\n", err.msg);
    return rc;
}

/* Decoding must fail, with one line that starts with prefix and contains
 * want (when given); returns whether it did. */
static int rejects(const uint8_t *buf, size_t len, const char *prefix, const char *want) {
    pvf_msg m;
    pvf_err err = {{0}};
    memset(&m, 0xa5, sizeof m);
    if (pvf_msg_decode(buf, len, &m, &err) == 0) {
        fprintf(stderr, "  accepted, expected an error with \"%s\"\n",
                want     ? want
                : prefix ? prefix
                         : "any error");
        pvf_msg_free(&m);
        return 0;
    }
    int ok = err.msg[0] && !strchr(err.msg, '\n') && m.owned_ == NULL &&
             (!prefix || strncmp(err.msg, prefix, strlen(prefix)) == 0) &&
             (!want || strstr(err.msg, want));
    if (!ok)
        fprintf(stderr, "  error \"%s\" lacks \"%s%s\"\n", err.msg, prefix ? prefix : "",
                want ? want : "");
    return ok;
}

/* ---- round trips ---- */

static void test_type_names(void) {
    CHECK(strcmp(pvf_msg_type_name(PVF_MSG_HELLO), "HELLO") == 0);
    CHECK(strcmp(pvf_msg_type_name(PVF_MSG_DISCONNECT), "DISCONNECT") == 0);
    CHECK(pvf_msg_type_name((pvf_msg_type)0) == NULL);
    CHECK(pvf_msg_type_name((pvf_msg_type)99) == NULL);
    for (size_t i = 0; i < NTYPES; i++)
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(pvf_msg_type_name(all_types[i]), pvf_msg_type_name(all_types[j])) != 0);
    CHECK(pvf_proto_header_ok("PVF/1", 5));
    CHECK(!pvf_proto_header_ok("PVF/1", 4));
    CHECK(!pvf_proto_header_ok("PVF/1\0", 6));
    CHECK(!pvf_proto_header_ok("PVF/2", 5));
    CHECK(!pvf_proto_header_ok(NULL, 0));
}

static void test_round_trip(void) {
    for (size_t i = 0; i < NTYPES; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            pvf_msg m = sample_msg(all_types[i], v, store), d;
            uint8_t *buf = NULL;
            size_t len = 0;
            pvf_err err = {{0}};
            CHECK(encode(&m, &buf, &len) == 0);
            CHECK(len > 0 && len <= PVF_PROTO_MAX_MSG);
            int rc = pvf_msg_decode(buf, len, &d, &err);
            CHECK(rc == 0);
            if (rc == 0) {
                const char *why = "";
                int eq = msg_eq(&m, &d, &why);
                CHECK(eq);
                if (!eq)
                    fprintf(stderr, "  %s %s: field %s differs\n", pvf_msg_type_name(m.type),
                            sample_variant_names[v], why);
                if (m.type == PVF_MSG_ARTIFACT && d.u.artifact.len) /* zero copy */
                    CHECK(d.u.artifact.data > buf &&
                          d.u.artifact.data + d.u.artifact.len <= buf + len);
                /* the copies are the message's own */
                if (m.type == PVF_MSG_HELLO)
                    CHECK(d.u.hello.name != m.u.hello.name);
                pvf_msg_free(&d);
                CHECK(d.owned_ == NULL);
            } else {
                fprintf(stderr, "  %s %s: %s\n", pvf_msg_type_name(m.type), sample_variant_names[v],
                        err.msg);
            }
            free(buf);
        }
    }
}

/* Optional fields: zero is left out, absent decodes as zero. */
static void test_optional_fields(void) {
    pvf_msg m = sample_msg(PVF_MSG_HEARTBEAT, SAMPLE_ZERO, store), d;
    uint8_t *buf;
    size_t len;
    CHECK(encode(&m, &buf, &len) == 0);
    /* {"t": "HEARTBEAT"}: fixmap(1), fixstr "t", fixstr "HEARTBEAT" */
    CHECK_EQ_U64(len, 1 + 2 + 10);
    free(buf);
    m = sample_msg(PVF_MSG_RESULT, SAMPLE_TYPICAL, store);
    CHECK(m.u.result.error == NULL);
    CHECK(encode(&m, &buf, &len) == 0);
    pvf_err err;
    CHECK(pvf_msg_decode(buf, len, &d, &err) == 0);
    CHECK(d.u.result.error == NULL);
    pvf_msg_free(&d);
    free(buf);
}

/* ---- building altered messages with msgpack-c ---- */

typedef struct alter {
    int depth;                  /* 0: the whole map; 1: a top-level value; 2, 3: nested */
    uint32_t idx[3];            /* map entry, then array indices */
    const msgpack_object *with; /* replacement (NULL: drop the map entry) */
    int dup;                    /* repeat entry idx[0] instead */
    const char *add;            /* add a key with value nil */
} alter;

static void pack_altered(msgpack_packer *pk, const msgpack_object *o, const alter *a, int level) {
    if (level == a->depth && a->with) {
        msgpack_pack_object(pk, *a->with);
        return;
    }
    if (o->type == MSGPACK_OBJECT_MAP && level == 0) {
        uint32_t n = o->via.map.size;
        uint32_t out =
            n + (a->add ? 1 : 0) + (a->dup ? 1 : 0) - (a->depth == 1 && !a->with && !a->dup);
        msgpack_pack_map(pk, out);
        for (uint32_t i = 0; i < n; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (a->depth >= 1 && i == a->idx[0] && !a->with && !a->dup)
                continue;
            msgpack_pack_object(pk, kv->key);
            if (a->depth >= 1 && i == a->idx[0] && !a->dup)
                pack_altered(pk, &kv->val, a, 1);
            else
                msgpack_pack_object(pk, kv->val);
            if (a->dup && i == a->idx[0]) {
                msgpack_pack_object(pk, kv->key);
                msgpack_pack_object(pk, kv->val);
            }
        }
        if (a->add) {
            msgpack_pack_str(pk, strlen(a->add));
            msgpack_pack_str_body(pk, a->add, strlen(a->add));
            msgpack_pack_nil(pk);
        }
        return;
    }
    if (o->type == MSGPACK_OBJECT_ARRAY && level < a->depth) {
        msgpack_pack_array(pk, o->via.array.size);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i == a->idx[level])
                pack_altered(pk, &o->via.array.ptr[i], a, level + 1);
            else
                msgpack_pack_object(pk, o->via.array.ptr[i]);
        }
        return;
    }
    msgpack_pack_object(pk, *o);
}

/* The encoding of src with alteration a, in a malloc'd buffer. */
static uint8_t *altered(const msgpack_object *src, const alter *a, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_altered(&pk, src, a, 0);
    *len = sb.size;
    return (uint8_t *)msgpack_sbuffer_release(&sb);
}

/* One parsed sample message to alter. */
typedef struct parsed {
    uint8_t *buf;
    size_t len;
    msgpack_unpacked u;
} parsed;

static int parse_sample(pvf_msg_type t, int variant, parsed *p) {
    pvf_msg m = sample_msg(t, variant, store);
    if (encode(&m, &p->buf, &p->len) < 0)
        return -1;
    msgpack_unpacked_init(&p->u);
    size_t off = 0;
    if (msgpack_unpack_next(&p->u, (const char *)p->buf, p->len, &off) != MSGPACK_UNPACK_SUCCESS)
        return -1;
    return 0;
}

static void parsed_free(parsed *p) {
    msgpack_unpacked_destroy(&p->u);
    free(p->buf);
}

static const char *key_of(const msgpack_object_kv *kv, char out[64]) {
    snprintf(out, 64, "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
    return out;
}

static msgpack_object obj_str(const char *s, size_t n) {
    msgpack_object o = {.type = MSGPACK_OBJECT_STR};
    o.via.str.ptr = s;
    o.via.str.size = (uint32_t)n;
    return o;
}

static msgpack_object obj_uint(uint64_t v) {
    msgpack_object o = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
    o.via.u64 = v;
    return o;
}

static msgpack_object obj_float(double v, int f32) {
    msgpack_object o = {.type = f32 ? MSGPACK_OBJECT_FLOAT32 : MSGPACK_OBJECT_FLOAT64};
    o.via.f64 = v;
    return o;
}

static msgpack_object obj_bin(const void *p, size_t n) {
    msgpack_object o = {.type = MSGPACK_OBJECT_BIN};
    o.via.bin.ptr = p;
    o.via.bin.size = (uint32_t)n;
    return o;
}

static msgpack_object obj_array(msgpack_object *items, size_t n) {
    msgpack_object o = {.type = MSGPACK_OBJECT_ARRAY};
    o.via.array.ptr = items;
    o.via.array.size = (uint32_t)n;
    return o;
}

static int is_float(msgpack_object_type t) {
    return t == MSGPACK_OBJECT_FLOAT32 || t == MSGPACK_OBJECT_FLOAT64;
}

/* The name the decoder gives the value at a path. */
static void field_name(const char *key, const alter *a, char out[96]) {
    static const char *const trial[] = {"trial",    "target",    "element",   "mask",
                                        "old_word", "new_word",  "old_value", "new_value",
                                        "value",    "incorrect", "nonfinite", "flags"};
    static const char *const file[] = {"name", "sha", "size"};
    static const char *const eval[] = {"sha", "size"};
    if (a->depth == 1)
        snprintf(out, 96, "field '%s'", key);
    else if (strcmp(key, "eval") == 0)
        snprintf(out, 96, "field 'eval.%s'", eval[a->idx[1]]);
    else if (a->depth == 2)
        snprintf(out, 96, "field '%s[%u]'", key, (unsigned)a->idx[1]);
    else
        snprintf(out, 96, "field '%s[%u].%s'", key, (unsigned)a->idx[1],
                 strcmp(key, "trials") == 0 ? trial[a->idx[2]] : file[a->idx[2]]);
}

/* Replaces the value at a with every msgpack type it does not have. */
static int wrong_types_at(const parsed *p, const char *type, const char *key,
                          const msgpack_object *orig, alter a) {
    static const uint8_t bin32[32] = {1};
    msgpack_object empty_map = {.type = MSGPACK_OBJECT_MAP};
    msgpack_object cands[] = {
        {.type = MSGPACK_OBJECT_NIL},
        {.type = MSGPACK_OBJECT_BOOLEAN, .via.boolean = true},
        {.type = MSGPACK_OBJECT_NEGATIVE_INTEGER, .via.i64 = -1},
        obj_uint(7),
        obj_float(0.5, 0),
        obj_str("s", 1),
        obj_bin(bin32, 32),
        obj_array(NULL, 0),
        empty_map,
    };
    char prefix[32], want[96];
    snprintf(prefix, sizeof prefix, "%s: ", type);
    field_name(key, &a, want);
    int failures = 0;
    for (size_t c = 0; c < sizeof cands / sizeof cands[0]; c++) {
        msgpack_object_type ct = cands[c].type;
        if (ct == orig->type || (is_float(ct) && is_float(orig->type)))
            continue; /* the right type */
        a.with = &cands[c];
        size_t len;
        uint8_t *buf = altered(&p->u.data, &a, &len);
        if (!rejects(buf, len, prefix, want)) {
            fprintf(stderr, "  (%s %s given msgpack type %d)\n", type, want, (int)ct);
            failures++;
        }
        free(buf);
    }
    return failures;
}

static void test_wrong_types(void) {
    int fields = 0;
    for (size_t i = 0; i < NTYPES; i++) {
        const char *type = pvf_msg_type_name(all_types[i]);
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            if (v == SAMPLE_MAX)
                continue; /* same fields, bigger */
            parsed p;
            CHECK(parse_sample(all_types[i], v, &p) == 0);
            const msgpack_object_map *map = &p.u.data.via.map;
            for (uint32_t k = 0; k < map->size; k++) {
                char key[64];
                key_of(&map->ptr[k], key);
                const msgpack_object *val = &map->ptr[k].val;
                alter a = {.depth = 1, .idx = {k}};
                CHECK(wrong_types_at(&p, strcmp(key, "t") ? type : "message", key, val, a) == 0);
                fields++;
                if (val->type != MSGPACK_OBJECT_ARRAY)
                    continue;
                uint32_t n = val->via.array.size;
                for (uint32_t j = 0; j < n; j = (j + 1 < n - 1) ? n - 1 : j + 1) {
                    const msgpack_object *el = &val->via.array.ptr[j];
                    alter a2 = {.depth = 2, .idx = {k, j}};
                    CHECK(wrong_types_at(&p, type, key, el, a2) == 0);
                    fields++;
                    if (el->type != MSGPACK_OBJECT_ARRAY)
                        continue;
                    for (uint32_t e = 0; e < el->via.array.size; e++) {
                        alter a3 = {.depth = 3, .idx = {k, j, e}};
                        CHECK(wrong_types_at(&p, type, key, &el->via.array.ptr[e], a3) == 0);
                        fields++;
                    }
                }
            }
            parsed_free(&p);
        }
    }
    fprintf(stderr, "  %d fields given every wrong msgpack type\n", fields);
}

static void test_keys(void) {
    for (size_t i = 0; i < NTYPES; i++) {
        const char *type = pvf_msg_type_name(all_types[i]);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%s: ", type);
        parsed p;
        CHECK(parse_sample(all_types[i], SAMPLE_TYPICAL, &p) == 0);
        size_t len;
        uint8_t *buf;
        /* unknown key */
        alter add = {.depth = 0, .add = "zz"};
        buf = altered(&p.u.data, &add, &len);
        CHECK(rejects(buf, len, prefix, "unknown field 'zz'"));
        free(buf);
        const msgpack_object_map *map = &p.u.data.via.map;
        for (uint32_t k = 0; k < map->size; k++) {
            char key[64], want[96];
            key_of(&map->ptr[k], key);
            /* duplicate key */
            alter dup = {.depth = 1, .idx = {k}, .dup = 1};
            buf = altered(&p.u.data, &dup, &len);
            snprintf(want, sizeof want, "field '%s': given twice", key);
            CHECK(rejects(buf, len, strcmp(key, "t") ? prefix : "message: ", want));
            free(buf);
            /* missing key: every key of the typical samples is required,
             * but for HEARTBEAT's */
            alter drop = {.depth = 1, .idx = {k}};
            buf = altered(&p.u.data, &drop, &len);
            snprintf(want, sizeof want, "field '%s': missing", key);
            if (all_types[i] == PVF_MSG_HEARTBEAT && strcmp(key, "t") != 0) {
                pvf_msg d;
                pvf_err err;
                CHECK(pvf_msg_decode(buf, len, &d, &err) == 0);
                pvf_msg_free(&d);
            } else {
                CHECK(rejects(buf, len, strcmp(key, "t") ? prefix : "message: ", want));
            }
            free(buf);
        }
        /* a key that is not a string */
        {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, map->size + 1);
            for (uint32_t k = 0; k < map->size; k++) {
                msgpack_pack_object(&pk, map->ptr[k].key);
                msgpack_pack_object(&pk, map->ptr[k].val);
            }
            msgpack_pack_uint8(&pk, 1);
            msgpack_pack_nil(&pk);
            CHECK(rejects((const uint8_t *)sb.data, sb.size, "message: ", "is not a string"));
            msgpack_sbuffer_destroy(&sb);
        }
        /* a trailing byte, and every truncation */
        buf = malloc(p.len + 1);
        memcpy(buf, p.buf, p.len);
        buf[p.len] = 0xc0;
        CHECK(rejects(buf, p.len + 1, "message: ", "trailing"));
        for (size_t n = 0; n < p.len; n++) {
            uint8_t *cut = malloc(n + 1); /* exactly n bytes for ASan, +1 for n = 0 */
            memcpy(cut, p.buf, n);
            CHECK(rejects(cut, n, NULL, NULL));
            free(cut);
        }
        free(buf);
        parsed_free(&p);
    }
    /* "t" itself */
    const uint8_t not_map[] = {0x93, 0x01, 0x02, 0x03};
    CHECK(rejects(not_map, sizeof not_map, "message: ", "expected a map"));
    const uint8_t no_t[] = {0x80};
    CHECK(rejects(no_t, sizeof no_t, "message: ", "field 't': missing"));
    const uint8_t bad_t[] = {0x81, 0xa1, 't', 0xa3, 'B', 'Y', 'X'};
    CHECK(rejects(bad_t, sizeof bad_t, "message: ", "unknown type \"BYX\""));
    const uint8_t ctl_t[] = {0x81, 0xa1, 't', 0xa2, '\n', 'A'};
    CHECK(rejects(ctl_t, sizeof ctl_t, "message: ", "unknown type \"?A\""));
    CHECK(rejects(NULL, 0, "message: ", NULL));
}

/* ---- values the types allow but the protocol does not ---- */

static void expect_altered_rejected(pvf_msg_type t, alter a, const msgpack_object *with,
                                    const char *want) {
    parsed p;
    CHECK(parse_sample(t, SAMPLE_TYPICAL, &p) == 0);
    /* find the key named in want's first path component */
    a.with = with;
    size_t len;
    uint8_t *buf = altered(&p.u.data, &a, &len);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s: ", pvf_msg_type_name(t));
    CHECK(rejects(buf, len, prefix, want));
    free(buf);
    parsed_free(&p);
}

static int expect_altered_ok(pvf_msg_type t, alter a, const msgpack_object *with, pvf_msg *d) {
    parsed p;
    if (parse_sample(t, SAMPLE_TYPICAL, &p) < 0)
        return -1;
    a.with = with;
    size_t len;
    uint8_t *buf = altered(&p.u.data, &a, &len);
    pvf_err err;
    int rc = pvf_msg_decode(buf, len, d, &err);
    if (rc < 0)
        fprintf(stderr, "  %s\n", err.msg);
    free(buf);
    parsed_free(&p);
    return rc;
}

/* Index of a key in the typical sample's map (the encoder's order). */
static uint32_t key_index(pvf_msg_type t, const char *key) {
    parsed p;
    uint32_t idx = UINT32_MAX;
    if (parse_sample(t, SAMPLE_TYPICAL, &p) == 0) {
        for (uint32_t k = 0; k < p.u.data.via.map.size; k++) {
            char name[64];
            if (strcmp(key_of(&p.u.data.via.map.ptr[k], name), key) == 0)
                idx = k;
        }
        parsed_free(&p);
    }
    return idx;
}

static void test_decode_ranges(void) {
    uint32_t result_trials = key_index(PVF_MSG_RESULT, "trials");
    alter value = {.depth = 3, .idx = {result_trials, 1, 8}};
    msgpack_object o;
    const char *want_value = "field 'trials[1].value'";
    o = obj_float(1.5, 0);
    expect_altered_rejected(PVF_MSG_RESULT, value, &o, want_value);
    o = obj_float(-0.25, 1);
    expect_altered_rejected(PVF_MSG_RESULT, value, &o, want_value);
    o = obj_float(NAN, 0);
    expect_altered_rejected(PVF_MSG_RESULT, value, &o, want_value);
    o = obj_float(INFINITY, 0);
    expect_altered_rejected(PVF_MSG_RESULT, value, &o, want_value);
    /* integers are not floats, not even 0 or 1 */
    o = obj_uint(1);
    expect_altered_rejected(PVF_MSG_RESULT, value, &o, "expected a float");
    o = obj_uint(0);
    expect_altered_rejected(PVF_MSG_RESULT, value, &o, "expected a float");
    /* float32 and float64 are both floats */
    pvf_msg d;
    o = obj_float(0.5, 1);
    CHECK(expect_altered_ok(PVF_MSG_RESULT, value, &o, &d) == 0);
    CHECK(d.u.result.trials[1].value == 0.5);
    pvf_msg_free(&d);
    alter oldv = {.depth = 3, .idx = {result_trials, 0, 6}};
    o = obj_float(NAN, 0); /* compute values may be anything */
    CHECK(expect_altered_ok(PVF_MSG_RESULT, oldv, &o, &d) == 0);
    CHECK(isnan(d.u.result.trials[0].old_value));
    pvf_msg_free(&d);

    /* a uint32 field given 2^32, a uint64 field given a negative */
    alter target = {.depth = 3, .idx = {result_trials, 0, 1}};
    o = obj_uint(1ull << 32);
    expect_altered_rejected(PVF_MSG_RESULT, target, &o, "field 'trials[0].target': 4294967296 is");
    o = obj_uint(UINT32_MAX);
    CHECK(expect_altered_ok(PVF_MSG_RESULT, target, &o, &d) == 0);
    CHECK_EQ_U64(d.u.result.trials[0].target, UINT32_MAX);
    pvf_msg_free(&d);
    alter attempt = {.depth = 1, .idx = {key_index(PVF_MSG_RESULT, "attempt")}};
    o = obj_uint(1ull << 32);
    expect_altered_rejected(PVF_MSG_RESULT, attempt, &o, "field 'attempt'");
    /* records of 11 and 13 values */
    msgpack_object rec[13];
    for (int i = 0; i < 13; i++)
        rec[i] = obj_uint(0);
    rec[6] = rec[7] = rec[8] = obj_float(0, 0);
    alter rec1 = {.depth = 2, .idx = {result_trials, 1}};
    o = obj_array(rec, 11);
    expect_altered_rejected(PVF_MSG_RESULT, rec1, &o, "field 'trials[1]': expected an array of 12");
    o = obj_array(rec, 13);
    expect_altered_rejected(PVF_MSG_RESULT, rec1, &o, "field 'trials[1]': expected an array of 12");
    o = obj_array(rec, 12);
    CHECK(expect_altered_ok(PVF_MSG_RESULT, rec1, &o, &d) == 0);
    pvf_msg_free(&d);

    /* strings: NUL inside, one byte too long, exactly the cap */
    uint32_t hello_name = key_index(PVF_MSG_HELLO, "name");
    alter name = {.depth = 1, .idx = {hello_name}};
    o = obj_str("ab\0c", 4);
    expect_altered_rejected(PVF_MSG_HELLO, name, &o, "field 'name': string contains a NUL");
    static char big[PVF_PROTO_MAX_STR + 1];
    memset(big, 'x', sizeof big);
    o = obj_str(big, PVF_PROTO_MAX_STR + 1);
    expect_altered_rejected(PVF_MSG_HELLO, name, &o, "field 'name': string of 1025 bytes");
    o = obj_str(big, PVF_PROTO_MAX_STR);
    CHECK(expect_altered_ok(PVF_MSG_HELLO, name, &o, &d) == 0);
    CHECK_EQ_U64(strlen(d.u.hello.name), PVF_PROTO_MAX_STR);
    pvf_msg_free(&d);

    /* sha of 31 and 33 bytes */
    static const uint8_t bytes[64];
    alter sha = {.depth = 1, .idx = {key_index(PVF_MSG_FETCH, "sha")}};
    o = obj_bin(bytes, 31);
    expect_altered_rejected(PVF_MSG_FETCH, sha, &o, "field 'sha': expected a binary of 32");
    o = obj_bin(bytes, 33);
    expect_altered_rejected(PVF_MSG_FETCH, sha, &o, "field 'sha': expected a binary of 32");
    alter fetch_len = {.depth = 1, .idx = {key_index(PVF_MSG_FETCH, "len")}};
    o = obj_uint(PVF_PROTO_CHUNK + 1);
    expect_altered_rejected(PVF_MSG_FETCH, fetch_len, &o, "field 'len'");

    /* JOB: file names, lo/hi, counts */
    uint32_t files = key_index(PVF_MSG_JOB, "files");
    alter fname = {.depth = 3, .idx = {files, 1, 0}};
    const char *bad_names[] = {"", ".", "..", "a/b", "/etc", "x/"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        o = obj_str(bad_names[i], strlen(bad_names[i]));
        expect_altered_rejected(PVF_MSG_JOB, fname, &o, "field 'files[1].name'");
    }
    o = obj_str("config.json", 11); /* files[0]'s name */
    expect_altered_rejected(PVF_MSG_JOB, fname, &o, "listed twice");
    o = obj_str("...", 3);
    CHECK(expect_altered_ok(PVF_MSG_JOB, fname, &o, &d) == 0);
    pvf_msg_free(&d);
    alter lo = {.depth = 1, .idx = {key_index(PVF_MSG_JOB, "lo")}};
    alter hi = {.depth = 1, .idx = {key_index(PVF_MSG_JOB, "hi")}};
    o = obj_uint(4096 + 513);
    expect_altered_rejected(PVF_MSG_JOB, lo, &o, "field 'hi'");
    o = obj_uint(4096 + PVF_PROTO_MAX_JOB_TRIALS + 1);
    expect_altered_rejected(PVF_MSG_JOB, hi, &o, "field 'hi'");
    o = obj_uint(4096 + PVF_PROTO_MAX_JOB_TRIALS);
    CHECK(expect_altered_ok(PVF_MSG_JOB, hi, &o, &d) == 0);
    pvf_msg_free(&d);
    o = obj_uint(4096);
    CHECK(expect_altered_ok(PVF_MSG_JOB, hi, &o, &d) == 0); /* empty range */
    pvf_msg_free(&d);
    alter eval = {.depth = 1, .idx = {key_index(PVF_MSG_JOB, "eval")}};
    msgpack_object ev[3] = {obj_bin(bytes, 32), obj_uint(1), obj_uint(2)};
    o = obj_array(ev, 3);
    expect_altered_rejected(PVF_MSG_JOB, eval, &o, "field 'eval': expected an array of 2");

    /* counts one past the caps */
    static msgpack_object many[PVF_PROTO_MAX_TARGETS + 1];
    for (size_t i = 0; i <= PVF_PROTO_MAX_TARGETS; i++)
        many[i] = obj_str("w", 1);
    alter targets = {.depth = 1, .idx = {key_index(PVF_MSG_JOB, "targets")}};
    o = obj_array(many, PVF_PROTO_MAX_TARGETS + 1);
    expect_altered_rejected(PVF_MSG_JOB, targets, &o, "field 'targets': 4097 elements");
    o = obj_array(many, PVF_PROTO_MAX_TARGETS);
    CHECK(expect_altered_ok(PVF_MSG_JOB, targets, &o, &d) == 0);
    pvf_msg_free(&d);
    msgpack_object frec[3] = {obj_str("f", 1), obj_bin(bytes, 32), obj_uint(1)};
    for (size_t i = 0; i <= PVF_PROTO_MAX_FILES; i++)
        many[i] = obj_array(frec, 3);
    alter fl = {.depth = 1, .idx = {files}};
    o = obj_array(many, PVF_PROTO_MAX_FILES + 1);
    expect_altered_rejected(PVF_MSG_JOB, fl, &o, "field 'files': 65 elements");
    for (size_t i = 0; i <= PVF_PROTO_MAX_TRIALS; i++)
        many[i] = obj_array(rec, 12);
    alter tr = {.depth = 1, .idx = {result_trials}};
    o = obj_array(many, PVF_PROTO_MAX_TRIALS + 1);
    expect_altered_rejected(PVF_MSG_RESULT, tr, &o, "field 'trials': 4097 elements");

    /* ARTIFACT: a chunk past the total, data over the chunk size */
    alter total = {.depth = 1, .idx = {key_index(PVF_MSG_ARTIFACT, "total")}};
    o = obj_uint(4999);
    expect_altered_rejected(PVF_MSG_ARTIFACT, total, &o, "field 'total'");
    alter data = {.depth = 1, .idx = {key_index(PVF_MSG_ARTIFACT, "data")}};
    static uint8_t chunk[PVF_PROTO_CHUNK + 1];
    o = obj_bin(chunk, sizeof chunk);
    expect_altered_rejected(PVF_MSG_ARTIFACT, data, &o, "field 'data'");
}

/* ---- messages written by hand, field by field, independent of the encoder:
 * each wire key lands in its own struct field ---- */

static void pk_s(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pk_kv_u(msgpack_packer *pk, const char *k, uint64_t v) {
    pk_s(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void pk_kv_s(msgpack_packer *pk, const char *k, const char *v) {
    pk_s(pk, k);
    pk_s(pk, v);
}

static void pk_sha(msgpack_packer *pk, uint8_t seed) {
    pvf_sha256 s = sample_sha(seed);
    msgpack_pack_bin(pk, 32);
    msgpack_pack_bin_body(pk, s.b, 32);
}

/* Decodes what pk built and compares with want. */
static void check_hand_built(msgpack_sbuffer *sb, const pvf_msg *want) {
    pvf_msg d;
    pvf_err err = {{0}};
    int rc = pvf_msg_decode((const uint8_t *)sb->data, sb->size, &d, &err);
    CHECK(rc == 0);
    if (rc < 0) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    const char *why = "";
    int eq = msg_eq(want, &d, &why);
    CHECK(eq);
    if (!eq)
        fprintf(stderr, "  %s: field %s differs\n", pvf_msg_type_name(want->type), why);
    pvf_msg_free(&d);
}

static void test_hand_built(void) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    pvf_msg w;
#define BEGIN(type, n)                                                                             \
    msgpack_sbuffer_init(&sb);                                                                     \
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);                                          \
    msgpack_pack_map(&pk, n);                                                                      \
    pk_kv_s(&pk, "t", type);                                                                       \
    memset(&w, 0, sizeof w)
#define END()                                                                                      \
    check_hand_built(&sb, &w);                                                                     \
    msgpack_sbuffer_destroy(&sb)

    /* keys in an order the encoder does not use */
    BEGIN("HELLO", 4);
    pk_kv_u(&pk, "executors", 3);
    pk_kv_s(&pk, "name", "w1");
    pk_kv_u(&pk, "v", 1);
    w.type = PVF_MSG_HELLO;
    w.u.hello.version = 1, w.u.hello.name = "w1", w.u.hello.executors = 3;
    END();

    BEGIN("READY", 2);
    pk_kv_u(&pk, "slots", 5);
    w.type = PVF_MSG_READY;
    w.u.ready.slots = 5;
    END();

    BEGIN("RESULT", 8);
    pk_kv_u(&pk, "seq", 4);
    pk_kv_u(&pk, "epoch", 3);
    pk_kv_u(&pk, "attempt", 2);
    pk_kv_u(&pk, "job", 1);
    pk_s(&pk, "final");
    msgpack_pack_true(&pk);
    pk_kv_s(&pk, "error", "oom");
    pk_s(&pk, "trials");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 12);
    for (uint64_t v = 11; v <= 16; v++) /* trial .. new_word */
        msgpack_pack_uint64(&pk, v);
    msgpack_pack_float(&pk, 0.25f);     /* old_value as float32 */
    msgpack_pack_double(&pk, -3.5);     /* new_value */
    msgpack_pack_double(&pk, 0.75);     /* value */
    for (uint64_t v = 20; v <= 22; v++) /* incorrect, nonfinite, flags */
        msgpack_pack_uint64(&pk, v);
    w.type = PVF_MSG_RESULT;
    pvf_trial_rec rec = {11, 12, 13, 14, 15, 16, 0.25, -3.5, 0.75, 20, 21, 22};
    w.u.result.job = 1, w.u.result.attempt = 2, w.u.result.epoch = 3, w.u.result.seq = 4;
    w.u.result.final = 1;
    w.u.result.trials = &rec;
    w.u.result.ntrials = 1;
    w.u.result.error = "oom";
    END();

    BEGIN("FETCH", 4);
    pk_kv_u(&pk, "len", 7);
    pk_kv_u(&pk, "off", 6);
    pk_s(&pk, "sha");
    pk_sha(&pk, 5);
    w.type = PVF_MSG_FETCH;
    w.u.fetch.sha = sample_sha(5), w.u.fetch.off = 6, w.u.fetch.len = 7;
    END();

    BEGIN("HEARTBEAT", 3);
    pk_kv_u(&pk, "busy", 9);
    pk_kv_u(&pk, "slots", 8);
    w.type = PVF_MSG_HEARTBEAT;
    w.u.heartbeat.slots = 8, w.u.heartbeat.busy = 9;
    END();
    BEGIN("HEARTBEAT", 2); /* one of the optional pair */
    pk_kv_u(&pk, "busy", 9);
    w.type = PVF_MSG_HEARTBEAT;
    w.u.heartbeat.busy = 9;
    END();

    BEGIN("BYE", 2);
    pk_kv_s(&pk, "reason", "bye now");
    w.type = PVF_MSG_BYE;
    w.u.bye.reason = "bye now";
    END();
    BEGIN("DISCONNECT", 2);
    pk_kv_s(&pk, "reason", "go");
    w.type = PVF_MSG_DISCONNECT;
    w.u.disconnect.reason = "go";
    END();

    BEGIN("JOB", 16);
    pk_kv_u(&pk, "hi", 120);
    pk_kv_u(&pk, "lo", 100);
    pk_s(&pk, "targets");
    msgpack_pack_array(&pk, 2);
    pk_s(&pk, "fc1.weight");
    pk_s(&pk, "fc1.weight_scale");
    pk_kv_u(&pk, "stratum", 10);
    pk_kv_u(&pk, "seed", 9);
    pk_kv_s(&pk, "fault", "burst:3");
    pk_kv_s(&pk, "format", "int4");
    pk_s(&pk, "eval");
    msgpack_pack_array(&pk, 2);
    pk_sha(&pk, 8);
    msgpack_pack_uint64(&pk, 7);
    pk_s(&pk, "files");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 3);
    pk_s(&pk, "model.safetensors");
    pk_sha(&pk, 6);
    msgpack_pack_uint64(&pk, 6000);
    pk_kv_u(&pk, "deadline_ms", 5);
    pk_kv_u(&pk, "campaign", 4);
    pk_kv_u(&pk, "epoch", 3);
    pk_kv_u(&pk, "attempt", 2);
    pk_kv_u(&pk, "job", 1);
    pk_s(&pk, "naive");
    msgpack_pack_true(&pk);
    w.type = PVF_MSG_JOB;
    pvf_file_ref file = {"model.safetensors", sample_sha(6), 6000};
    char *tg[] = {"fc1.weight", "fc1.weight_scale"};
    w.u.job.job = 1, w.u.job.attempt = 2, w.u.job.epoch = 3, w.u.job.campaign = 4;
    w.u.job.deadline_ms = 5;
    w.u.job.files = &file, w.u.job.nfiles = 1;
    w.u.job.eval_sha = sample_sha(8), w.u.job.eval_size = 7;
    w.u.job.format = "int4", w.u.job.fault = "burst:3";
    w.u.job.seed = 9, w.u.job.stratum = 10;
    w.u.job.targets = tg, w.u.job.ntargets = 2;
    w.u.job.lo = 100, w.u.job.hi = 120, w.u.job.naive = 1;
    END();

    BEGIN("ACK", 4);
    pk_kv_u(&pk, "seq", 3);
    pk_kv_u(&pk, "attempt", 2);
    pk_kv_u(&pk, "job", 1);
    w.type = PVF_MSG_ACK;
    w.u.ack.job = 1, w.u.ack.attempt = 2, w.u.ack.seq = 3;
    END();

    BEGIN("CANCEL", 2);
    pk_kv_u(&pk, "job", 77);
    w.type = PVF_MSG_CANCEL;
    w.u.cancel.job = 77;
    END();

    BEGIN("ARTIFACT", 5);
    pk_s(&pk, "data");
    msgpack_pack_bin(&pk, 3);
    msgpack_pack_bin_body(&pk, "xyz", 3);
    pk_kv_u(&pk, "total", 10);
    pk_kv_u(&pk, "off", 7);
    pk_s(&pk, "sha");
    pk_sha(&pk, 4);
    w.type = PVF_MSG_ARTIFACT;
    w.u.artifact.sha = sample_sha(4), w.u.artifact.off = 7, w.u.artifact.total = 10;
    w.u.artifact.data = (const uint8_t *)"xyz", w.u.artifact.len = 3;
    END();
#undef BEGIN
#undef END

    /* and the encoder's bytes for one small message, exactly */
    pvf_msg ack = {.type = PVF_MSG_ACK};
    ack.u.ack.job = 1, ack.u.ack.attempt = 2, ack.u.ack.seq = 300;
    uint8_t *buf;
    size_t len;
    CHECK(encode(&ack, &buf, &len) == 0);
    static const uint8_t want[] = {0x84, 0xa1, 't',  0xa3, 'A', 'C',  'K',  0xa3, 'j', 'o',
                                   'b',  0x01, 0xa7, 'a',  't', 't',  'e',  'm',  'p', 't',
                                   0x02, 0xa3, 's',  'e',  'q', 0xcd, 0x01, 0x2c};
    CHECK(len == sizeof want && memcmp(buf, want, len) == 0);
    free(buf);

    /* the error format the coordinator logs */
    parsed p;
    CHECK(parse_sample(PVF_MSG_RESULT, SAMPLE_TYPICAL, &p) == 0);
    msgpack_object s = obj_str("2", 1);
    alter a = {.depth = 1, .idx = {key_index(PVF_MSG_RESULT, "attempt")}, .with = &s};
    uint8_t *bad = altered(&p.u.data, &a, &len);
    pvf_msg d;
    pvf_err err;
    CHECK(pvf_msg_decode(bad, len, &d, &err) == -1);
    CHECK(strcmp(err.msg, "RESULT: field 'attempt': expected an unsigned integer") == 0);
    free(bad);
    parsed_free(&p);
}

/* ---- the encoder refuses what the decoder would reject ---- */

static void expect_encode_fails(const pvf_msg *m, const char *want) {
    uint8_t *buf = (uint8_t *)"unchanged";
    size_t len = 1;
    pvf_err err = {{0}};
    CHECK(pvf_msg_encode(m, &buf, &len, &err) == -1);
    CHECK(buf == NULL && len == 0);
    CHECK(strstr(err.msg, want) != NULL);
    if (!strstr(err.msg, want))
        fprintf(stderr, "  encode error \"%s\" lacks \"%s\"\n", err.msg, want);
}

static void test_encode_caps(void) {
    pvf_msg m = sample_msg(PVF_MSG_RESULT, SAMPLE_MAX, store);
    m.u.result.ntrials = PVF_PROTO_MAX_TRIALS + 1;
    expect_encode_fails(&m, "RESULT: field 'trials'");
    m = sample_msg(PVF_MSG_RESULT, SAMPLE_TYPICAL, store);
    store->trials[2].value = 1.0000001;
    expect_encode_fails(&m, "RESULT: field 'trials[2].value'");
    store->trials[2].value = NAN;
    expect_encode_fails(&m, "RESULT: field 'trials[2].value'");
    m.u.result.trials = NULL;
    expect_encode_fails(&m, "RESULT: field 'trials'");

    m = sample_msg(PVF_MSG_HELLO, SAMPLE_TYPICAL, store);
    m.u.hello.name = NULL;
    expect_encode_fails(&m, "HELLO: field 'name': missing");
    static char big[PVF_PROTO_MAX_STR + 2];
    memset(big, 'y', PVF_PROTO_MAX_STR + 1);
    m.u.hello.name = big;
    expect_encode_fails(&m, "HELLO: field 'name': string longer than 1024");

    m = sample_msg(PVF_MSG_JOB, SAMPLE_TYPICAL, store);
    m.u.job.hi = m.u.job.lo - 1;
    expect_encode_fails(&m, "JOB: field 'hi'");
    m.u.job.hi = m.u.job.lo + PVF_PROTO_MAX_JOB_TRIALS + 1;
    expect_encode_fails(&m, "JOB: field 'hi'");
    m = sample_msg(PVF_MSG_JOB, SAMPLE_TYPICAL, store);
    store->files[1].name = "../config.json";
    expect_encode_fails(&m, "JOB: field 'files[1].name'");
    store->files[1].name = "config.json";
    expect_encode_fails(&m, "listed twice");
    m = sample_msg(PVF_MSG_JOB, SAMPLE_MAX, store);
    m.u.job.nfiles = PVF_PROTO_MAX_FILES + 1;
    expect_encode_fails(&m, "JOB: field 'files'");
    m.u.job.nfiles = 0;
    m.u.job.ntargets = PVF_PROTO_MAX_TARGETS + 1;
    expect_encode_fails(&m, "JOB: field 'targets'");
    /* within every cap but over the message size: 4096 targets of 1024 bytes */
    m.u.job.ntargets = PVF_PROTO_MAX_TARGETS;
    for (uint32_t i = 0; i < PVF_PROTO_MAX_TARGETS; i++)
        store->targets[i] = store->long_str;
    expect_encode_fails(&m, "JOB: encoded message is");
    store->targets[5] = NULL;
    expect_encode_fails(&m, "JOB: field 'targets[5]': missing");

    m = sample_msg(PVF_MSG_ARTIFACT, SAMPLE_TYPICAL, store);
    m.u.artifact.total = 4999;
    expect_encode_fails(&m, "ARTIFACT: field 'total'");
    m = sample_msg(PVF_MSG_ARTIFACT, SAMPLE_MAX, store);
    m.u.artifact.len = PVF_PROTO_CHUNK + 1;
    expect_encode_fails(&m, "ARTIFACT: field 'data'");
    m = sample_msg(PVF_MSG_FETCH, SAMPLE_MAX, store);
    m.u.fetch.off++;
    expect_encode_fails(&m, "FETCH: field 'off'");

    m.type = (pvf_msg_type)0;
    expect_encode_fails(&m, "unknown type 0");
    m.type = (pvf_msg_type)12;
    expect_encode_fails(&m, "unknown type 12");
}

/* ---- hostile bytes ---- */

typedef struct hostile {
    const char *what;
    uint8_t *bytes;
    size_t len;
    size_t alloc_limit; /* bytes the decoder may allocate for it */
    const char *want;   /* in the error */
    int wrap;           /* also try it as the value of "t" in a map */
} hostile;

static hostile make(const char *what, const void *p, size_t n, size_t limit, const char *want,
                    int wrap) {
    hostile h = {what, malloc(n ? n : 1), n, limit, want, wrap};
    memcpy(h.bytes, p, n);
    return h;
}

/* Decodes hostile bytes, counting what the decoder allocates. */
static void hostile_decode(const char *what, const uint8_t *bytes, size_t len, size_t limit,
                           const char *want) {
    alloc_bytes = 0;
    alloc_calls = 0;
    pvf_msg m;
    pvf_err err = {{0}};
    alloc_counting = 1;
    int rc = pvf_msg_decode(bytes, len, &m, &err);
    alloc_counting = 0;
    CHECK(rc == -1);
    CHECK(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
    CHECK(alloc_bytes <= limit);
    if (want)
        CHECK(strstr(err.msg, want) != NULL);
    fprintf(stderr, "  %-40s rejected, %zu bytes in %zu allocations: %s\n", what,
            (size_t)alloc_bytes, (size_t)alloc_calls, err.msg);
}

static void test_hostile(void) {
    alloc_hooks_install();
    hostile hs[16];
    int n = 0;
    const size_t few_kb = 4096;
    hs[n++] = make("array32 2^32-1, no elements", "\xdd\xff\xff\xff\xff", 5, few_kb,
                   "declares 4294967295 elements", 1);
    hs[n++] = make("array32 2^24, no elements", "\xdd\x01\x00\x00\x00", 5, few_kb,
                   "declares 16777216 elements", 1);
    hs[n++] = make("array32 2^26, no elements", "\xdd\x04\x00\x00\x00", 5, few_kb,
                   "declares 67108864 elements", 1);
    hs[n++] = make("map32 2^26, no elements", "\xdf\x04\x00\x00\x00", 5, few_kb,
                   "declares 134217728 elements", 1);
    hs[n++] = make("str32 2^32-1, one byte", "\xdb\xff\xff\xff\xff\x41", 6, few_kb,
                   "declares 4294967295 bytes", 1);
    hs[n++] = make("lone 0xc1", "\xc1", 1, few_kb, "0xc1", 1);
    hs[n++] = make("fixext1", "\xd4\x01\x00", 3, few_kb, "extension type", 1);
    hs[n++] = make("ext8", "\xc7\x01\x05\x00", 4, few_kb, "extension type", 1);
    {
        uint8_t b[40];
        memset(b, 0x91, sizeof b);
        hs[n++] = make("40 nested fixarray(1)", b, sizeof b, few_kb, "nested deeper than 4", 1);
        /* the map and 4 arrays: depth 5 */
        uint8_t c[8] = {0x91, 0x91, 0x91, 0x91, 0x00};
        hs[n++] = make("4 nested arrays, complete", c, 5, few_kb, "nested deeper than 4", 1);
    }
    {
        /* nested headers each within the bytes left, together far beyond:
         * array16(4) of array32(2^20) headers */
        uint8_t b[3 + 4 * 5] = {0xdc, 0x00, 0x04};
        for (int i = 0; i < 4; i++)
            memcpy(b + 3 + 5 * i, "\xdd\x00\x10\x00\x00", 5);
        hs[n++] =
            make("array of array32 headers", b, sizeof b, few_kb, "declares 1048576 elements", 1);
        /* fixarray(10) holding a fixarray(15) of 15 nils: each header fits
         * the bytes left, the 9 + 15 elements owed do not */
        uint8_t c[17] = {0x9a, 0x9f};
        memset(c + 2, 0xc0, 15);
        hs[n++] = make("fixarray(10) of fixarray(15)", c, sizeof c, few_kb, "more owed", 1);
    }
    {
        /* a complete, well-formed array of 70,000 nils: over the object cap */
        size_t len = 5 + 70000;
        uint8_t *b = calloc(len, 1);
        memcpy(b, "\xdd\x00\x01\x11\x70", 5);
        memset(b + 5, 0xc0, 70000);
        hs[n++] = make("70,000 nils", b, len, few_kb, "more than 65536 objects", 1);
        free(b);
        /* {"t": [60,000 nils]}: within the object cap, so msgpack-c parses
         * it (its zone bounded by the cap), and the schema rejects it */
        len = 8 + 60000;
        b = calloc(len, 1);
        memcpy(b, "\x81\xa1t\xdd\x00\x00\xea\x60", 8);
        memset(b + 8, 0xc0, 60000);
        hs[n++] = make("{t: 60,000 nils}", b, len, 3u << 20, "field 't': expected a string", 0);
        free(b);
    }
    {
        pvf_msg m = sample_msg(PVF_MSG_HELLO, SAMPLE_TYPICAL, store);
        uint8_t *buf;
        size_t len;
        CHECK(encode(&m, &buf, &len) == 0);
        uint8_t *two = malloc(2 * len);
        memcpy(two, buf, len);
        memcpy(two + len, buf, len);
        hs[n++] = make("two concatenated HELLOs", two, 2 * len, few_kb, "trailing bytes", 0);
        free(two);
        free(buf);
    }
    {
        size_t len = PVF_PROTO_MAX_MSG + 1;
        uint8_t *b = calloc(len, 1);
        b[0] = 0x81; /* {"t": bin32 of the rest} */
        b[1] = 0xa1;
        b[2] = 't';
        b[3] = 0xc6;
        uint32_t rest = (uint32_t)(len - 8);
        b[4] = (uint8_t)(rest >> 24), b[5] = (uint8_t)(rest >> 16);
        b[6] = (uint8_t)(rest >> 8), b[7] = (uint8_t)rest;
        hostile h = {"over PVF_PROTO_MAX_MSG", b, len, few_kb, "at most 4194304", 0};
        hs[n++] = h;
    }
    for (int i = 0; i < n; i++) {
        hostile_decode(hs[i].what, hs[i].bytes, hs[i].len, hs[i].alloc_limit,
                       hs[i].wrap ? NULL : hs[i].want);
        if (hs[i].wrap) {
            uint8_t *w = malloc(3 + hs[i].len);
            memcpy(w, "\x81\xa1t", 3);
            memcpy(w + 3, hs[i].bytes, hs[i].len);
            char what[64];
            snprintf(what, sizeof what, "{t: %s}", hs[i].what);
            hostile_decode(what, w, 3 + hs[i].len, hs[i].alloc_limit, hs[i].want);
            free(w);
        }
        free(hs[i].bytes);
    }
    /* the counter counts: a valid decode does allocate */
    pvf_msg m = sample_msg(PVF_MSG_JOB, SAMPLE_TYPICAL, store), d;
    uint8_t *buf;
    size_t len;
    CHECK(encode(&m, &buf, &len) == 0);
    alloc_bytes = 0;
    alloc_counting = 1;
    pvf_err err;
    CHECK(pvf_msg_decode(buf, len, &d, &err) == 0);
    alloc_counting = 0;
    CHECK(alloc_bytes > 0);
    fprintf(stderr, "  valid JOB of %zu bytes: %zu bytes allocated to decode\n", len,
            (size_t)alloc_bytes);
    pvf_msg_free(&d);
    free(buf);
}

/* ---- sha256 ---- */

static void test_sha256(void) {
    char hex[65];
    pvf_sha256 s, t;
    pvf_err err;
    char path[] = "/tmp/pvf_test_proto_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(pvf_sha256_file(path, &s, &err) == 0); /* empty */
    pvf_sha256_hex(&s, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    CHECK(write(fd, "abc", 3) == 3);
    CHECK(pvf_sha256_file(path, &s, &err) == 0);
    pvf_sha256_hex(&s, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    /* one million 'a' (FIPS 180-2): many read chunks */
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    CHECK(write(fd, a, 1000000) == 1000000);
    free(a);
    CHECK(pvf_sha256_file(path, &s, &err) == 0);
    pvf_sha256_hex(&s, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    close(fd);
    unlink(path);
    CHECK(pvf_sha256_file(path, &s, &err) == -1);
    CHECK(strstr(err.msg, path) != NULL);

    CHECK(pvf_sha256_parse(hex, &t) == 0);
    CHECK(memcmp(s.b, t.b, 32) == 0);
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(hex[i] >= 'a' && hex[i] <= 'f' ? hex[i] - 32 : hex[i]);
    CHECK(pvf_sha256_parse(upper, &t) == 0);
    CHECK(memcmp(s.b, t.b, 32) == 0);
    pvf_sha256 before = t;
    hex[63] = 'g';
    CHECK(pvf_sha256_parse(hex, &t) == -1);
    CHECK(memcmp(before.b, t.b, 32) == 0);
    hex[63] = '\0';
    CHECK(pvf_sha256_parse(hex, &t) == -1);
    CHECK(pvf_sha256_parse("", &t) == -1);
    CHECK(pvf_sha256_parse(NULL, &t) == -1);
    char longer[70];
    memset(longer, '0', 65);
    longer[65] = '\0';
    CHECK(pvf_sha256_parse(longer, &t) == -1);
}

/* The committed fuzz seeds are today's encodings (rewrite them with
 * `test_proto --write-seeds tests/fuzz/proto` after a protocol change). */
static void test_committed_seeds(void) {
    for (size_t i = 0; i < NTYPES; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            if (v == SAMPLE_MAX)
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/tests/fuzz/proto/%s-%s", PVF_SOURCE_DIR,
                     pvf_msg_type_name(all_types[i]), sample_variant_names[v]);
            FILE *f = fopen(path, "rb");
            CHECK(f != NULL);
            if (!f)
                continue;
            uint8_t seed[4096];
            size_t n = fread(seed, 1, sizeof seed, f);
            fclose(f);
            pvf_msg m = sample_msg(all_types[i], v, store);
            uint8_t *buf;
            size_t len;
            CHECK(encode(&m, &buf, &len) == 0);
            CHECK(n == len && memcmp(seed, buf, len) == 0);
            free(buf);
        }
    }
}

/* ---- speed (printed, not asserted) ---- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_decode_rate(void) {
    pvf_msg m = sample_msg(PVF_MSG_RESULT, SAMPLE_TYPICAL, store), d;
    m.u.result.ntrials = PVF_PROTO_MAX_TRIALS;
    for (uint32_t i = 0; i < PVF_PROTO_MAX_TRIALS; i++) {
        pvf_trial_rec *r = &store->trials[i];
        *r = (pvf_trial_rec){1000000 + i,    i % 40,     7919u * i,
                             1u << (i % 32), 0x3e8f5c29, 0x3e8f5c29 ^ (1u << (i % 32)),
                             0.28f,          -0.28f * i, (i % 5) / 1000.0,
                             i % 5,          0,          0};
    }
    m.u.result.trials = store->trials;
    uint8_t *buf;
    size_t len;
    CHECK(encode(&m, &buf, &len) == 0);
    pvf_err err;
    int reps = 0;
    double t0 = now(), t;
    do {
        CHECK(pvf_msg_decode(buf, len, &d, &err) == 0);
        pvf_msg_free(&d);
        reps++;
    } while ((t = now() - t0) < 0.5);
    double rate = (double)reps * PVF_PROTO_MAX_TRIALS / t;
    fprintf(stderr, "  RESULT of %d records, %zu bytes (%.1f per record): %.0f records/s decoded\n",
            PVF_PROTO_MAX_TRIALS, len, (double)len / PVF_PROTO_MAX_TRIALS, rate);
    reps = 0;
    t0 = now();
    do {
        uint8_t *b2;
        size_t l2;
        CHECK(pvf_msg_encode(&m, &b2, &l2, &err) == 0);
        free(b2);
        reps++;
    } while ((t = now() - t0) < 0.25);
    fprintf(stderr, "  %.0f records/s encoded\n", (double)reps * PVF_PROTO_MAX_TRIALS / t);
    free(buf);
}

/* `test_proto --write-seeds DIR`: the fuzzer's seeds, one valid message of
 * every type (typical and all-zero) plus a few hostile ones. */
static int write_seeds(const char *dir) {
    char path[4096];
    int failed = 0;
    for (size_t i = 0; i < NTYPES; i++) {
        for (int v = 0; v < SAMPLE_VARIANTS; v++) {
            if (v == SAMPLE_MAX)
                continue; /* megabytes: slows the fuzzer down */
            pvf_msg m = sample_msg(all_types[i], v, store);
            uint8_t *buf;
            size_t len;
            if (encode(&m, &buf, &len) < 0)
                return 1;
            snprintf(path, sizeof path, "%s/%s-%s", dir, pvf_msg_type_name(all_types[i]),
                     sample_variant_names[v]);
            FILE *f = fopen(path, "wb");
            failed |= !f || fwrite(buf, 1, len, f) != len || fclose(f) != 0;
            free(buf);
        }
    }
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
    } bad[] = {
        {"hostile-array32", "\x81\xa1t\xdd\x04\x00\x00\x00", 8},
        {"hostile-str32", "\x81\xa1t\xdb\xff\xff\xff\xff\x41", 9},
        {"hostile-nested", "\x81\xa1t\x91\x91\x91\x91\x91\x00", 9},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bad[i].name);
        FILE *f = fopen(path, "wb");
        failed |= !f || fwrite(bad[i].bytes, 1, bad[i].len, f) != bad[i].len || fclose(f) != 0;
    }
    if (failed)
        fprintf(stderr, "test_proto: cannot write seeds to %s\n", dir);
    return failed;
}

int main(int argc, char **argv) {
    store = calloc(1, sizeof *store);
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
        int rc = write_seeds(argv[2]);
        free(store);
        return rc;
    }
    RUN(test_type_names);
    RUN(test_round_trip);
    RUN(test_optional_fields);
    RUN(test_wrong_types);
    RUN(test_keys);
    RUN(test_decode_ranges);
    RUN(test_hand_built);
    RUN(test_encode_caps);
    RUN(test_hostile);
    RUN(test_sha256);
    RUN(test_committed_seeds);
    RUN(test_decode_rate);
    free(store);
    return test_summary();
}
