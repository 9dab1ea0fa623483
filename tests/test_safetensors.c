/* test_safetensors.c - tensor views, the safetensors reader/writer and model
 * directories, including every way a file can be malformed. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "safetensors.h"
#include "tensor.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

/* tmpdir/name in one of a few rotating buffers. */
static const char *P(const char *name) {
    static char buf[8][PATH_MAX];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
    return p;
}

static void rm_rf(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[PATH_MAX];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_rf(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void put_file(const char *path, const void *buf, size_t n) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp)
        return;
    CHECK(fwrite(buf, 1, n, fp) == n);
    CHECK(fclose(fp) == 0);
}

static void put_text(const char *path, const char *s) {
    put_file(path, s, strlen(s));
}

/* A safetensors file with an explicit header length field. */
static void put_st_len(const char *path, uint64_t hlen, const char *json, size_t dlen) {
    size_t jl = strlen(json);
    unsigned char *buf = calloc(1, 8 + jl + dlen + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, json, jl);
    for (size_t i = 0; i < dlen; i++)
        buf[8 + jl + i] = (unsigned char)(i * 7 + 1);
    put_file(path, buf, 8 + jl + dlen);
    free(buf);
}

/* A safetensors file with header json and dlen bytes of data. */
static void put_st(const char *path, const char *json, size_t dlen) {
    put_st_len(path, strlen(json), json, dlen);
}

static int contains(const char *msg, const char *word) {
    return strstr(msg, word) != NULL;
}

/* pvf_st_open(path) must fail with one line naming path and word, leaving
 * the struct empty. */
static int open_fails(const char *path, const char *word) {
    pvf_st_file f;
    pvf_err err = {{0}};
    int rc = pvf_st_open(&f, path, &err);
    int ok = rc == -1 && contains(err.msg, path) && contains(err.msg, word) &&
             !strchr(err.msg, '\n') && f.map == NULL && f.path == NULL && f.hdr.n == 0 &&
             f.hdr.entries == NULL && f.hdr.meta == NULL;
    if (!ok)
        fprintf(stderr, "  open(%s): rc=%d msg='%s' (wanted '%s')\n", path, rc, err.msg, word);
    if (rc == 0)
        pvf_st_close(&f);
    return ok;
}

/* A file with header json and dlen data bytes must fail to open with word. */
static int header_fails(const char *json, size_t dlen, const char *word) {
    const char *path = P("bad.safetensors");
    put_st(path, json, dlen);
    int ok = open_fails(path, word);
    unlink(path);
    return ok;
}

#define EXPECT_OPEN_FAIL(path, word)   CHECK(open_fails(path, word))
#define EXPECT_HDR_FAIL(json, n, word) CHECK(header_fails(json, n, word))

static int dir_fails(const char *dir, const char *name, const char *word) {
    pvf_st_set s;
    pvf_err err = {{0}};
    int rc = pvf_st_set_open_dir(&s, dir, &err);
    int ok = rc == -1 && contains(err.msg, name) && contains(err.msg, word) &&
             !strchr(err.msg, '\n') && s.files == NULL && s.nfiles == 0;
    if (!ok)
        fprintf(stderr, "  open_dir(%s): rc=%d msg='%s' (wanted '%s', '%s')\n", dir, rc, err.msg,
                name, word);
    if (rc == 0)
        pvf_st_set_close(&s);
    return ok;
}

#define EXPECT_DIR_FAIL(dir, name, word) CHECK(dir_fails(dir, name, word))

/* ---- tensor.h ----------------------------------------------------------- */

static void test_dtype_table(void) {
    static const char *names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16",
                                  "I8",  "U8",  "U16",  "U32", "U64", "BOOL"};
    static const size_t sizes[] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 2, 4, 8, 1};
    CHECK(sizeof names / sizeof names[0] == PVF_DT_COUNT);
    for (int i = 0; i < PVF_DT_COUNT; i++) {
        pvf_dtype dt = PVF_DT_COUNT;
        CHECK(strcmp(pvf_dtype_name((pvf_dtype)i), names[i]) == 0);
        CHECK(pvf_dtype_parse(names[i], &dt) == 0 && dt == (pvf_dtype)i);
        CHECK_EQ_U64(pvf_dtype_size((pvf_dtype)i), sizes[i]);
    }
    pvf_dtype dt = PVF_DT_F32;
    CHECK(pvf_dtype_parse("f32", &dt) == -1);
    CHECK(pvf_dtype_parse("F8_E4M3", &dt) == -1);
    CHECK(pvf_dtype_parse("", &dt) == -1);
    CHECK(pvf_dtype_parse("F32 ", &dt) == -1);
    CHECK(pvf_dtype_parse(NULL, &dt) == -1);
    CHECK(dt == PVF_DT_F32);
    CHECK(strcmp(pvf_dtype_name(PVF_DT_COUNT), "?") == 0);
    CHECK(pvf_dtype_size(PVF_DT_COUNT) == 0);
}

static void test_numel_and_shape_format(void) {
    pvf_tensor t = {.dtype = PVF_DT_F32};
    CHECK(pvf_tensor_numel(&t) == 1); /* scalar */
    t.ndim = 3;
    t.shape[0] = 2, t.shape[1] = 3, t.shape[2] = 4;
    CHECK(pvf_tensor_numel(&t) == 24);
    t.shape[1] = 0;
    CHECK(pvf_tensor_numel(&t) == 0);
    t.shape[1] = -3;
    CHECK(pvf_tensor_numel(&t) == -1);
    t.ndim = 2;
    t.shape[0] = INT64_MAX, t.shape[1] = 2;
    CHECK(pvf_tensor_numel(&t) == -1);
    t.shape[1] = 1;
    CHECK(pvf_tensor_numel(&t) == INT64_MAX);

    char buf[64];
    int64_t sh[] = {2, 3, 4};
    pvf_shape_format(sh, 3, buf, sizeof buf);
    CHECK(strcmp(buf, "[2, 3, 4]") == 0);
    pvf_shape_format(sh, 1, buf, sizeof buf);
    CHECK(strcmp(buf, "[2]") == 0);
    pvf_shape_format(sh, 0, buf, sizeof buf);
    CHECK(strcmp(buf, "[]") == 0);
    int64_t big[] = {INT64_MAX, -1};
    pvf_shape_format(big, 2, buf, sizeof buf);
    CHECK(strcmp(buf, "[9223372036854775807, -1]") == 0);
    memset(buf, 'x', sizeof buf);
    pvf_shape_format(sh, 3, buf, 5); /* truncated, still terminated */
    CHECK(strcmp(buf, "[2, ") == 0);
    CHECK(buf[5] == 'x');
    pvf_shape_format(sh, 3, buf, 1);
    CHECK(buf[0] == '\0');
    buf[0] = 'x';
    pvf_shape_format(sh, 3, buf, 0); /* writes nothing */
    CHECK(buf[0] == 'x');
}

static pvf_tensor view1(pvf_dtype dt, const void *data, size_t nbytes) {
    pvf_tensor t = {.dtype = dt, .ndim = 1, .data = data, .nbytes = nbytes};
    t.shape[0] = (int64_t)(nbytes / pvf_dtype_size(dt));
    return t;
}

static void test_element_access(void) {
    /* Little-endian bytes, whatever the host. */
    static const unsigned char f32[] = {0x00, 0x00, 0xc0, 0x3f,  /* 1.5 */
                                        0x00, 0x00, 0x80, 0xff,  /* -inf */
                                        0x00, 0x00, 0xc0, 0x7f,  /* NaN */
                                        0x00, 0x00, 0x80, 0x5f}; /* 2^64 */
    pvf_tensor t = view1(PVF_DT_F32, f32, sizeof f32);
    CHECK(pvf_tensor_get_f64(&t, 0) == 1.5);
    CHECK(isinf(pvf_tensor_get_f64(&t, 1)) && pvf_tensor_get_f64(&t, 1) < 0);
    CHECK(isnan(pvf_tensor_get_f64(&t, 2)));
    CHECK(pvf_tensor_get_i64(&t, 0) == 1);
    CHECK(pvf_tensor_get_i64(&t, 1) == INT64_MIN); /* saturated */
    CHECK(pvf_tensor_get_i64(&t, 2) == 0);         /* NaN */
    CHECK(pvf_tensor_get_i64(&t, 3) == INT64_MAX);
    CHECK(pvf_tensor_get_f64(&t, 4) == 0.0); /* out of range: no read */
    CHECK(pvf_tensor_get_f64(&t, -1) == 0.0);

    static const unsigned char f16[] = {0x00, 0x3c,  /* 1 */
                                        0x00, 0xc0,  /* -2 */
                                        0x01, 0x00,  /* 2^-24, smallest subnormal */
                                        0xff, 0x7b,  /* 65504 */
                                        0x00, 0x7c,  /* inf */
                                        0x01, 0x7e,  /* NaN */
                                        0x00, 0x80,  /* -0 */
                                        0x55, 0x35}; /* 0.333251953125 */
    t = view1(PVF_DT_F16, f16, sizeof f16);
    CHECK(pvf_tensor_get_f64(&t, 0) == 1.0);
    CHECK(pvf_tensor_get_f64(&t, 1) == -2.0);
    CHECK(pvf_tensor_get_f64(&t, 2) == ldexp(1.0, -24));
    CHECK(pvf_tensor_get_f64(&t, 3) == 65504.0);
    CHECK(isinf(pvf_tensor_get_f64(&t, 4)));
    CHECK(isnan(pvf_tensor_get_f64(&t, 5)));
    CHECK(pvf_tensor_get_f64(&t, 6) == 0.0 && signbit(pvf_tensor_get_f64(&t, 6)));
    CHECK(pvf_tensor_get_f64(&t, 7) == 0.333251953125);
    CHECK(pvf_tensor_get_i64(&t, 1) == -2);

    static const unsigned char bf16[] = {0x80, 0x3f, 0x49,
                                         0x40, 0x80, 0xff}; /* 1, 3.140625, -inf */
    t = view1(PVF_DT_BF16, bf16, sizeof bf16);
    CHECK(pvf_tensor_get_f64(&t, 0) == 1.0);
    CHECK(pvf_tensor_get_f64(&t, 1) == 3.140625);
    CHECK(isinf(pvf_tensor_get_f64(&t, 2)));
    CHECK(pvf_tensor_get_i64(&t, 1) == 3);

    static const unsigned char f64[] = {0, 0, 0, 0, 0, 0, 0x04, 0xc0}; /* -2.5 */
    t = view1(PVF_DT_F64, f64, sizeof f64);
    CHECK(pvf_tensor_get_f64(&t, 0) == -2.5);
    CHECK(pvf_tensor_get_i64(&t, 0) == -2); /* toward zero */

    static const unsigned char i8[] = {0xff, 0x7f, 0x80};
    t = view1(PVF_DT_I8, i8, sizeof i8);
    CHECK(pvf_tensor_get_i64(&t, 0) == -1 && pvf_tensor_get_i64(&t, 2) == -128);
    CHECK(pvf_tensor_get_f64(&t, 1) == 127.0);
    t = view1(PVF_DT_U8, i8, sizeof i8);
    CHECK(pvf_tensor_get_i64(&t, 0) == 255 && pvf_tensor_get_f64(&t, 2) == 128.0);
    t = view1(PVF_DT_BOOL, i8, sizeof i8);
    CHECK(pvf_tensor_get_i64(&t, 0) == 1 && pvf_tensor_get_f64(&t, 1) == 1.0);

    static const unsigned char i16[] = {0xfe, 0xff, 0x34, 0x12};
    t = view1(PVF_DT_I16, i16, sizeof i16);
    CHECK(pvf_tensor_get_i64(&t, 0) == -2 && pvf_tensor_get_i64(&t, 1) == 0x1234);
    CHECK(pvf_tensor_get_f64(&t, 0) == -2.0);
    t = view1(PVF_DT_U16, i16, sizeof i16);
    CHECK(pvf_tensor_get_i64(&t, 0) == 0xfffe);

    static const unsigned char i32[] = {0xfd, 0xff, 0xff, 0xff, 0x78, 0x56, 0x34, 0x12};
    t = view1(PVF_DT_I32, i32, sizeof i32);
    CHECK(pvf_tensor_get_i64(&t, 0) == -3 && pvf_tensor_get_i64(&t, 1) == 0x12345678);
    CHECK(pvf_tensor_get_f64(&t, 0) == -3.0);
    t = view1(PVF_DT_U32, i32, sizeof i32);
    CHECK(pvf_tensor_get_i64(&t, 0) == 0xfffffffd);
    CHECK(pvf_tensor_get_f64(&t, 0) == 4294967293.0);

    static const unsigned char i64[] = {0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    t = view1(PVF_DT_I64, i64, sizeof i64);
    CHECK(pvf_tensor_get_i64(&t, 0) == -4 && pvf_tensor_get_i64(&t, 1) == INT64_MAX);
    CHECK(pvf_tensor_get_f64(&t, 0) == -4.0);
    t = view1(PVF_DT_U64, i64, sizeof i64);
    CHECK(pvf_tensor_get_i64(&t, 0) == INT64_MAX); /* 2^64 - 4 saturates */
    CHECK(pvf_tensor_get_f64(&t, 0) == 18446744073709551612.0);
    CHECK(pvf_tensor_get_i64(&t, 1) == INT64_MAX);

    t = view1(PVF_DT_I32, NULL, 0); /* empty view */
    CHECK(pvf_tensor_get_i64(&t, 0) == 0);
}

/* ---- writer and reader round trip ---------------------------------------- */

static void test_roundtrip_all_dtypes(void) {
    enum { N = PVF_DT_COUNT + 2 };
    unsigned char bytes[N][48];
    int64_t shapes[N][2];
    char names[N][32];
    pvf_st_out out[N];
    for (int i = 0; i < N; i++) {
        for (size_t j = 0; j < sizeof bytes[i]; j++)
            bytes[i][j] = (unsigned char)(i * 31 + j);
        pvf_dtype dt = i < PVF_DT_COUNT ? (pvf_dtype)i : PVF_DT_F32;
        snprintf(names[i], sizeof names[i], "layer.%d.%s", i, pvf_dtype_name(dt));
        shapes[i][0] = 2;
        shapes[i][1] = (int64_t)(sizeof bytes[i] / 2 / pvf_dtype_size(dt)) - i % 3;
        out[i] = (pvf_st_out){names[i], dt, 2, shapes[i], bytes[i]};
    }
    shapes[N - 2][0] = 0; /* a zero-size tensor in the middle of the buffer */
    out[N - 2].data = NULL;
    out[N - 1].ndim = 0; /* a scalar */
    out[N - 1].shape = NULL;
    pvf_st_meta meta[] = {{"format", "pt"}, {"note", "h\u00e9llo \"quoted\"\n"}};

    const char *path = P("rt.safetensors");
    pvf_err err = {{0}};
    CHECK(pvf_st_write(path, out, N, meta, 2, &err) == 0);
    CHECK(access(P("rt.safetensors.tmp"), F_OK) == -1);

    pvf_st_file f;
    CHECK(pvf_st_open(&f, path, &err) == 0);
    if (err.msg[0])
        fprintf(stderr, "  %s\n", err.msg);
    CHECK(strcmp(f.path, path) == 0);
    CHECK_EQ_U64(f.hdr.n, N);
    CHECK_EQ_U64(f.hdr.nmeta, 2);
    CHECK(pvf_st_meta_get(&f, "format") && strcmp(pvf_st_meta_get(&f, "format"), "pt") == 0);
    CHECK(pvf_st_meta_get(&f, "note") && strcmp(pvf_st_meta_get(&f, "note"), meta[1].value) == 0);
    CHECK(pvf_st_meta_get(&f, "absent") == NULL);

    /* Layout: 8-byte length, header padded with spaces to a multiple of 8,
     * tensors back to back in the given order. */
    const unsigned char *m = f.map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | m[i];
    CHECK(hlen % 8 == 0);
    CHECK(f.data == m + 8 + hlen);
    CHECK(m[8] == '{');
    size_t last = 8 + hlen - 1;
    while (m[last] == ' ')
        last--;
    CHECK(m[last] == '}' && 8 + hlen - 1 - last < 8);

    uint64_t pos = 0, total = 0;
    for (int i = 0; i < N; i++) {
        long k = pvf_st_find(&f, names[i]);
        CHECK(k == i); /* file order == given order */
        if (k < 0)
            continue;
        pvf_tensor t;
        pvf_st_view(&f, (size_t)k, &t);
        CHECK(t.dtype == out[i].dtype);
        CHECK(t.ndim == out[i].ndim);
        for (int d = 0; d < t.ndim; d++)
            CHECK(t.shape[d] == shapes[i][d]);
        int64_t numel = pvf_tensor_numel(&t);
        CHECK_EQ_U64(t.nbytes, (uint64_t)numel * pvf_dtype_size(t.dtype));
        CHECK(t.nbytes == 0 || memcmp(t.data, bytes[i], t.nbytes) == 0);
        CHECK_EQ_U64(f.hdr.entries[k].begin, pos);
        pos += t.nbytes;
        total += t.nbytes;
    }
    CHECK_EQ_U64(f.size, 8 + hlen + total);
    CHECK(pvf_st_find(&f, "nope") == -1);
    CHECK(pvf_st_find(&f, "layer.0") == -1);

    /* A value read back through the view. */
    pvf_tensor t;
    pvf_st_view(&f, (size_t)pvf_st_find(&f, names[PVF_DT_U8]), &t);
    CHECK(pvf_tensor_get_i64(&t, 1) == bytes[PVF_DT_U8][1]);
    pvf_st_close(&f);
    CHECK(f.map == NULL && f.path == NULL);
    pvf_st_close(&f); /* twice is harmless */
    unlink(path);
}

static void test_write_empty_and_overwrite(void) {
    const char *path = P("empty.safetensors");
    pvf_err err = {{0}};
    CHECK(pvf_st_write(path, NULL, 0, NULL, 0, &err) == 0);
    pvf_st_file f;
    CHECK(pvf_st_open(&f, path, &err) == 0);
    CHECK(f.hdr.n == 0 && f.hdr.nmeta == 0 && f.size == 16);
    pvf_st_close(&f);

    /* Overwriting replaces the file whole. */
    float v[3] = {1, 2, 3};
    int64_t sh[] = {3};
    pvf_st_out o = {"v", PVF_DT_F32, 1, sh, v};
    CHECK(pvf_st_write(path, &o, 1, NULL, 0, &err) == 0);
    CHECK(pvf_st_open(&f, path, &err) == 0);
    CHECK(f.hdr.n == 1);
    if (f.hdr.n == 1) {
        pvf_tensor t;
        pvf_st_view(&f, 0, &t);
        CHECK(pvf_tensor_get_f64(&t, 2) == 3.0);
    }
    pvf_st_close(&f);
    unlink(path);
}

static int write_fails(const pvf_st_out *o, size_t n, const pvf_st_meta *meta, size_t nmeta,
                       const char *word) {
    const char *path = P("w.safetensors");
    pvf_err err = {{0}};
    int rc = pvf_st_write(path, o, n, meta, nmeta, &err);
    int ok = rc == -1 && contains(err.msg, path) && contains(err.msg, word) &&
             access(path, F_OK) == -1 && access(P("w.safetensors.tmp"), F_OK) == -1;
    if (!ok)
        fprintf(stderr, "  write: rc=%d msg='%s' (wanted '%s')\n", rc, err.msg, word);
    unlink(path);
    return ok;
}

static void test_write_errors(void) {
    float v[4] = {0};
    int64_t sh[] = {2, 2}, neg[] = {2, -2}, huge[] = {INT64_MAX, 4};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    pvf_st_out two[] = {{"a", PVF_DT_F32, 2, sh, v}, {"a", PVF_DT_F32, 2, sh, v}};
    CHECK(write_fails(two, 2, NULL, 0, "twice"));
    pvf_st_out o = {"__metadata__", PVF_DT_F32, 2, sh, v};
    CHECK(write_fails(&o, 1, NULL, 0, "reserved"));
    o = (pvf_st_out){NULL, PVF_DT_F32, 2, sh, v};
    CHECK(write_fails(&o, 1, NULL, 0, "no name"));
    o = (pvf_st_out){"x", PVF_DT_COUNT, 2, sh, v};
    CHECK(write_fails(&o, 1, NULL, 0, "dtype"));
    o = (pvf_st_out){"x", PVF_DT_F32, 2, neg, v};
    CHECK(write_fails(&o, 1, NULL, 0, "shape [2, -2]"));
    o = (pvf_st_out){"x", PVF_DT_F32, 2, huge, v};
    CHECK(write_fails(&o, 1, NULL, 0, "shape"));
    o = (pvf_st_out){"x", PVF_DT_F32, 9, nine, v};
    CHECK(write_fails(&o, 1, NULL, 0, "ndim 9"));
    o = (pvf_st_out){"x", PVF_DT_F32, -1, sh, v};
    CHECK(write_fails(&o, 1, NULL, 0, "ndim"));
    o = (pvf_st_out){"x", PVF_DT_F32, 2, sh, NULL};
    CHECK(write_fails(&o, 1, NULL, 0, "missing"));
    o = (pvf_st_out){"bad\xff", PVF_DT_F32, 2, sh, v};
    CHECK(write_fails(&o, 1, NULL, 0, "UTF-8"));
    o = (pvf_st_out){"x", PVF_DT_F32, 2, sh, v};
    pvf_st_meta dup[] = {{"k", "1"}, {"k", "2"}};
    CHECK(write_fails(&o, 1, dup, 2, "twice"));
    pvf_st_meta nul[] = {{"k", NULL}};
    CHECK(write_fails(&o, 1, nul, 1, "NULL"));
    pvf_st_meta badv[] = {{"k", "\xc3"}};
    CHECK(write_fails(&o, 1, badv, 1, "UTF-8"));

    /* A directory that does not exist: the error names the file. */
    pvf_err err = {{0}};
    CHECK(pvf_st_write(P("nodir/x.safetensors"), &o, 1, NULL, 0, &err) == -1);
    CHECK(contains(err.msg, "nodir/x.safetensors") && contains(err.msg, "No such file"));

    /* The target is a directory: the rename fails and the temp file goes. */
    const char *dpath = P("adir.safetensors");
    mkdir(dpath, 0755);
    CHECK(pvf_st_write(dpath, &o, 1, NULL, 0, &err) == -1);
    CHECK(contains(err.msg, dpath) && contains(err.msg, "rename"));
    CHECK(access(P("adir.safetensors.tmp"), F_OK) == -1);
    rmdir(dpath);
}

/* ---- hand-crafted files that are valid ------------------------------------ */

static void test_valid_crafted(void) {
    pvf_err err = {{0}};
    pvf_st_file f;
    const char *path = P("ok.safetensors");

    /* Minimal "{}" header (length 2) and no data. */
    put_st(path, "{}", 0);
    CHECK(pvf_st_open(&f, path, &err) == 0);
    CHECK(f.hdr.n == 0 && f.size == 10);
    pvf_st_close(&f);

    /* JSON order differs from data order, whitespace around the object,
     * zero-size tensors at the start, middle (two at one offset) and end,
     * unknown entry fields ignored, null metadata accepted. */
    put_st(path,
           " \n{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6],\"extra\":[1]},"
           "\"z_end\":{\"dtype\":\"F64\",\"shape\":[0,3],\"data_offsets\":[6,6]},"
           "\"__metadata__\":null,"
           "\"a\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]},"
           "\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
           "\"zm1\":{\"dtype\":\"I8\",\"shape\":[4,0],\"data_offsets\":[4,4]},"
           "\"zm2\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[4,4]}}   ",
           6);
    CHECK(pvf_st_open(&f, path, &err) == 0);
    if (err.msg[0])
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ_U64(f.hdr.n, 6);
    CHECK(f.hdr.nmeta == 0);
    static const char *order[] = {"z0", "a", "zm1", "zm2", "b", "z_end"};
    for (size_t i = 0; i < f.hdr.n && i < 6; i++)
        CHECK(strcmp(f.hdr.entries[i].name, order[i]) == 0);
    long k = pvf_st_find(&f, "b");
    CHECK(k == 4);
    if (k >= 0) {
        pvf_tensor t;
        pvf_st_view(&f, (size_t)k, &t);
        CHECK(t.nbytes == 2 && t.data == f.data + 4);
        CHECK(pvf_tensor_get_i64(&t, 0) == 4 * 7 + 1);
    }
    k = pvf_st_find(&f, "z_end");
    if (k >= 0) {
        pvf_tensor t;
        pvf_st_view(&f, (size_t)k, &t);
        CHECK(t.nbytes == 0 && pvf_tensor_numel(&t) == 0);
    }
    pvf_st_close(&f);

    /* Only zero-size tensors, empty buffer; empty metadata object; a scalar;
     * a name that is empty, one that is Unicode. */
    put_st(path,
           "{\"__metadata__\":{},\"\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
           "\"\\u00e9\":{\"dtype\":\"I64\",\"shape\":[0,0,0,0,0,0,0,0],\"data_offsets\":[0,0]}}",
           0);
    CHECK(pvf_st_open(&f, path, &err) == 0);
    CHECK(f.hdr.n == 2 && pvf_st_find(&f, "") >= 0 && pvf_st_find(&f, "\xc3\xa9") >= 0);
    pvf_st_close(&f);

    put_st(path, "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8);
    CHECK(pvf_st_open(&f, path, &err) == 0);
    CHECK(f.hdr.n == 1 && f.hdr.entries[0].ndim == 0);
    pvf_st_close(&f);
    unlink(path);
}

/* ---- hand-crafted files that are not ------------------------------------- */

static void test_truncated_files(void) {
    const char *path = P("t.safetensors");
    put_file(path, "", 0);
    EXPECT_OPEN_FAIL(path, "truncated");
    put_file(path, "\x02\0\0\0\0\0", 6);
    EXPECT_OPEN_FAIL(path, "truncated");
    /* Header length beyond the file. */
    put_st_len(path, 100, "{}", 0);
    EXPECT_OPEN_FAIL(path, "truncated: header length 100");
    put_st_len(path, 3, "{}", 0);
    EXPECT_OPEN_FAIL(path, "truncated");
    /* Data shorter than the offsets (a file cut in its data buffer). */
    put_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 10);
    EXPECT_OPEN_FAIL(path, "past the end");
    EXPECT_OPEN_FAIL(path, "'w'");
    /* Header length 0 and 1, huge, and at the limit + 1. */
    put_st_len(path, 0, "{}", 0);
    EXPECT_OPEN_FAIL(path, "too small");
    put_st_len(path, 1, "{}", 0);
    EXPECT_OPEN_FAIL(path, "too small");
    put_st_len(path, UINT64_MAX, "{}", 0);
    EXPECT_OPEN_FAIL(path, "limit");
    put_st_len(path, (uint64_t)PVF_ST_MAX_HEADER + 1, "{}", 0);
    EXPECT_OPEN_FAIL(path, "limit");
    put_st_len(path, (uint64_t)1 << 40, "{}", 0);
    EXPECT_OPEN_FAIL(path, "limit");
    unlink(path);

    EXPECT_OPEN_FAIL(P("does-not-exist.safetensors"), "No such file");
    EXPECT_OPEN_FAIL(tmpdir, "not a regular file");
    /* A FIFO is refused without blocking. */
    CHECK(mkfifo(P("fifo"), 0600) == 0);
    EXPECT_OPEN_FAIL(P("fifo"), "not a regular file");
    unlink(P("fifo"));
}

static void test_bad_json(void) {
    EXPECT_HDR_FAIL("{\"a\":", 0, "invalid header JSON");
    EXPECT_HDR_FAIL("{} x", 0, "invalid header JSON");
    EXPECT_HDR_FAIL("[]", 0, "not a JSON object");
    EXPECT_HDR_FAIL("[{\"a\":1}]", 0, "not a JSON object");
    EXPECT_HDR_FAIL("\"str\"", 0, "invalid header JSON");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, "duplicate");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],"
                    "\"data_offsets\":[0,4]}}",
                    4, "duplicate");
    EXPECT_HDR_FAIL("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate");
    EXPECT_HDR_FAIL("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                    "invalid header JSON");
    EXPECT_HDR_FAIL("{\"\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                    "invalid header JSON"); /* not UTF-8 */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,"
                    "99999999999999999999]}}",
                    4, "invalid header JSON"); /* integer beyond int64 */

    /* A NUL byte inside the header (the length field counts it). */
    const char *path = P("nul.safetensors");
    put_st_len(path, 4, "{}", 0);
    FILE *fp = fopen(path, "ab");
    CHECK(fp && fwrite("\0\0", 1, 2, fp) == 2 && fclose(fp) == 0);
    EXPECT_OPEN_FAIL(path, "invalid header JSON");
    unlink(path);
}

static void test_bad_entries(void) {
    EXPECT_HDR_FAIL("{\"a\":[1]}", 0, "'a': entry is not a JSON object");
    EXPECT_HDR_FAIL("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" is missing");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                    "unknown dtype 'F33'");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                    "unknown dtype");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                    "unknown dtype");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\"");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4,
                    "\"shape\"");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4,
                    "shape dim 1 is negative (-1)");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
                    "not an integer");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
                    "not an integer");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                    "\"data_offsets\":[0,4]}}",
                    4, "9 dims");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                    "\"data_offsets\":[0,0]}}",
                    0, "overflows");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
                    "\"data_offsets\":[0,0]}}",
                    0, "overflows"); /* 2^61 x 8 */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "\"data_offsets\"");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4,
                    "\"data_offsets\"");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
                    "3 elements");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                    "1 elements");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                    "non-negative");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
                    "non-negative integers");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4,
                    "non-negative integers");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                    "end before");
    /* Offsets out of range of the buffer (with a matching size). */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 8,
                    "past the end of the 8-byte data buffer");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                    "\"data_offsets\":[9223372036854775806,9223372036854775807]}}",
                    8, "past the end");
    EXPECT_HDR_FAIL("{\"__metadata__\":[],\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
                    "\"data_offsets\":[0,1]}}",
                    1, "__metadata__ is not a JSON object");
    EXPECT_HDR_FAIL("{\"__metadata__\":{\"k\":\"v\",\"n\":1}}", 0,
                    "__metadata__ key 'n': value is not a string");
    EXPECT_HDR_FAIL("{\"__metadata__\":{\"k\":null}}", 0, "not a string");
    EXPECT_HDR_FAIL("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "not a string");
}

static void test_shape_offset_mismatch_message(void) {
    const char *path = P("x.safetensors");
    put_st(path, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[10,20],\"data_offsets\":[0,100]}}",
           100);
    pvf_st_file f;
    pvf_err err = {{0}};
    CHECK(pvf_st_open(&f, path, &err) == -1);
    char want[PVF_ERR_MAX];
    snprintf(want, sizeof want,
             "%s: tensor 'fc1.weight': shape [10, 20] x F32 needs 800 bytes but data_offsets "
             "span 100",
             path);
    CHECK(strcmp(err.msg, want) == 0);
    if (strcmp(err.msg, want) != 0)
        fprintf(stderr, "  got  '%s'\n  want '%s'\n", err.msg, want);
    unlink(path);

    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4,
                    "shape [3] x BF16 needs 6 bytes but data_offsets span 4");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
                    "needs 4 bytes but data_offsets span 0");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]}}", 4,
                    "needs 0 bytes");
}

static void test_layout_errors(void) {
    /* Overlap: b starts inside a. */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                    8, "tensor 'b': data_offsets [4, 8] overlap tensor 'a' at [0, 8]");
    /* Two tensors on the same bytes. */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                    8, "overlap");
    /* A zero-size tensor placed inside another. */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                    "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[3,3]}}",
                    8, "overlap");
    /* Hole at the start and in the middle. */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8,
                    "hole in the data buffer: bytes [0, 4)");
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                    8, "tensor 'b': hole");
    /* Trailing bytes after the last tensor, and data with no tensors. */
    EXPECT_HDR_FAIL("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 5,
                    "trailing data: the data buffer is 5 bytes but the tensors end at 4");
    EXPECT_HDR_FAIL("{}", 1, "trailing");
    EXPECT_HDR_FAIL("{\"__metadata__\":{\"a\":\"b\"}}", 3, "trailing");
}

static void test_message_hygiene(void) {
    /* Control characters in a name never break the line; long names are cut. */
    const char *path = P("h.safetensors");
    put_st(path, "{\"a\\nb\\u001b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1);
    pvf_st_file f;
    pvf_err err = {{0}};
    CHECK(pvf_st_open(&f, path, &err) == -1);
    CHECK(contains(err.msg, "tensor 'a\\x0ab\\x1b'"));
    CHECK(!strchr(err.msg, '\n') && !strchr(err.msg, '\x1b'));

    char json[2048];
    char name[1001];
    memset(name, 'n', 1000);
    name[1000] = '\0';
    snprintf(json, sizeof json, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1]}}",
             name);
    put_st(path, json, 1);
    CHECK(pvf_st_open(&f, path, &err) == -1);
    CHECK(contains(err.msg, "nnn...'") && contains(err.msg, "needs 2 bytes"));
    CHECK(strlen(err.msg) < 300);

    /* A long multibyte name is cut at a character boundary. */
    char *p = json;
    p += sprintf(p, "{\"");
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "\xe2\x82\xac"); /* U+20AC */
    sprintf(p, "\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1]}}");
    put_st(path, json, 1);
    CHECK(pvf_st_open(&f, path, &err) == -1);
    const char *dots = strstr(err.msg, "...'");
    CHECK(dots && dots[-3] == '\xe2' && dots[-1] == '\xac');
    unlink(path);
}

static void test_header_parse_direct(void) {
    pvf_st_header h;
    pvf_err err = {{0}};
    /* Not NUL-terminated: only len bytes are read. */
    const char buf[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}GARBAGE";
    CHECK(pvf_st_header_parse(buf, sizeof buf - 1 - 7, 3, &h, &err) == 0);
    CHECK(h.n == 1 && strcmp(h.entries[0].name, "a") == 0 && h.entries[0].end == 3);
    pvf_st_header_free(&h);
    CHECK(h.entries == NULL && h.n == 0);
    pvf_st_header_free(&h); /* twice is harmless */

    /* The same buffer with the garbage is invalid; the message names no file. */
    CHECK(pvf_st_header_parse(buf, sizeof buf - 1, 3, &h, &err) == -1);
    CHECK(h.entries == NULL && h.n == 0 && h.meta == NULL && h.nmeta == 0);
    CHECK(strncmp(err.msg, "invalid header JSON", 19) == 0);
    /* data_len disagrees with the offsets. */
    CHECK(pvf_st_header_parse(buf, sizeof buf - 1 - 7, 2, &h, &err) == -1);
    CHECK(contains(err.msg, "past the end"));
    CHECK(pvf_st_header_parse(buf, sizeof buf - 1 - 7, UINT64_MAX, &h, &err) == -1);
    CHECK(contains(err.msg, "trailing"));
    /* Errors after metadata and some entries were built free them (ASan). */
    const char *late = "{\"__metadata__\":{\"k\":\"v\"},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[3,7]}}";
    CHECK(pvf_st_header_parse(late, strlen(late), 7, &h, &err) == -1);
    CHECK(contains(err.msg, "'b'") && h.n == 0 && h.nmeta == 0);
    CHECK(pvf_st_header_parse("", 0, 0, &h, &err) == -1);
    CHECK(pvf_st_header_parse("{}", (size_t)PVF_ST_MAX_HEADER + 1, 0, &h, &err) == -1);
    CHECK(contains(err.msg, "limit"));
}

/* ---- model directories -------------------------------------------------- */

static void mkdir_p(const char *path) {
    CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static void write_shard(const char *path, const char *n1, const char *n2, float base) {
    float a[6], b[2];
    for (int i = 0; i < 6; i++)
        a[i] = base + (float)i;
    b[0] = b[1] = -base;
    int64_t sa[] = {2, 3}, sb[] = {2};
    pvf_st_out o[] = {{n1, PVF_DT_F32, 2, sa, a}, {n2, PVF_DT_F32, 1, sb, b}};
    pvf_err err = {{0}};
    CHECK(pvf_st_write(path, o, 2, NULL, 0, &err) == 0);
}

static void test_dir_single(void) {
    const char *dir = P("single");
    mkdir_p(dir);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_shard(path, "w", "b", 1.0f);

    pvf_st_set s;
    pvf_err err = {{0}};
    CHECK(pvf_st_set_open_dir(&s, dir, &err) == 0);
    CHECK(s.nfiles == 1 && pvf_st_set_count(&s) == 2);
    pvf_tensor t;
    CHECK(pvf_st_set_get(&s, "w", &t, &err) == 0);
    CHECK(t.ndim == 2 && t.shape[1] == 3 && pvf_tensor_get_f64(&t, 5) == 6.0);
    CHECK(pvf_st_set_get(&s, "missing", &t, &err) == -1);
    CHECK(contains(err.msg, "'missing'") && contains(err.msg, path));
    pvf_st_set_close(&s);
    CHECK(s.files == NULL && s.nfiles == 0);
    pvf_st_set_close(&s);

    /* A trailing slash on the directory is fine. */
    char slash[PATH_MAX];
    snprintf(slash, sizeof slash, "%s/", dir);
    CHECK(pvf_st_set_open_dir(&s, slash, &err) == 0);
    CHECK(s.nfiles == 1 && strcmp(s.files[0].path, path) == 0);
    pvf_st_set_close(&s);

    /* A corrupt model.safetensors: the error names it. */
    put_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    EXPECT_DIR_FAIL(dir, path, "needs 8 bytes");
    unlink(path);
    EXPECT_DIR_FAIL(dir, dir, "no model.safetensors or model.safetensors.index.json");
    EXPECT_DIR_FAIL(P("no-such-dir"), "no-such-dir", "No such file");
    put_text(P("plain-file"), "x");
    EXPECT_DIR_FAIL(P("plain-file"), "plain-file", "not a directory");
    unlink(P("plain-file"));
}

static const char *index_json = "{\"metadata\":{\"total_size\":64},\"weight_map\":{"
                                "\"l0.w\":\"model-00001-of-00002.safetensors\","
                                "\"l1.w\":\"model-00002-of-00002.safetensors\","
                                "\"l0.b\":\"model-00001-of-00002.safetensors\","
                                "\"l1.b\":\"model-00002-of-00002.safetensors\"}}";

/* A sharded directory; with single != 0 also a stray model.safetensors
 * (the index wins). */
static const char *make_sharded(const char *name, int single) {
    const char *dir = P(name);
    mkdir_p(dir);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_shard(p, "l0.w", "l0.b", 10.0f);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_shard(p, "l1.w", "l1.b", 20.0f);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    put_text(p, index_json);
    if (single) {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        put_text(p, "garbage");
    }
    return dir;
}

/* Many shards: a missing tensor's error counts them instead of listing all. */
static void test_dir_many_shards(void) {
    const char *dir = P("many");
    mkdir_p(dir);
    char json[4096], *j = json, p[PATH_MAX];
    j += sprintf(j, "{\"weight_map\":{");
    for (int i = 0; i < 12; i++) {
        char shard[96], n1[16], n2[16];
        snprintf(shard, sizeof shard, "model-with-a-rather-long-name-%05d-of-00012.safetensors", i);
        snprintf(n1, sizeof n1, "l%d.w", i);
        snprintf(n2, sizeof n2, "l%d.b", i);
        snprintf(p, sizeof p, "%s/%s", dir, shard);
        write_shard(p, n1, n2, (float)i);
        j += sprintf(j, "%s\"%s\":\"%s\",\"%s\":\"%s\"", i ? "," : "", n1, shard, n2, shard);
    }
    sprintf(j, "}}");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    put_text(p, json);

    pvf_st_set s;
    pvf_err err = {{0}};
    CHECK(pvf_st_set_open_dir(&s, dir, &err) == 0);
    CHECK(s.nfiles == 12 && pvf_st_set_count(&s) == 24);
    pvf_tensor t;
    CHECK(pvf_st_set_get(&s, "l11.w", &t, &err) == 0 && pvf_tensor_get_f64(&t, 0) == 11.0);
    CHECK(pvf_st_set_get(&s, "nope", &t, &err) == -1);
    CHECK(contains(err.msg, "'nope'") && contains(err.msg, "-00000-of-00012.safetensors") &&
          contains(err.msg, "and 11 other files"));
    pvf_st_set_close(&s);
}

static void test_dir_sharded(void) {
    const char *dir = make_sharded("sharded", 1);
    pvf_st_set s;
    pvf_err err = {{0}};
    CHECK(pvf_st_set_open_dir(&s, dir, &err) == 0);
    if (err.msg[0])
        fprintf(stderr, "  %s\n", err.msg);
    CHECK_EQ_U64(s.nfiles, 2); /* each shard once */
    CHECK_EQ_U64(pvf_st_set_count(&s), 4);
    if (s.nfiles == 2) {
        CHECK(contains(s.files[0].path, "model-00001-of-00002"));
        CHECK(contains(s.files[1].path, "model-00002-of-00002"));
    }
    pvf_tensor t;
    CHECK(pvf_st_set_get(&s, "l0.w", &t, &err) == 0 && pvf_tensor_get_f64(&t, 1) == 11.0);
    CHECK(pvf_st_set_get(&s, "l1.w", &t, &err) == 0 && pvf_tensor_get_f64(&t, 5) == 25.0);
    CHECK(pvf_st_set_get(&s, "l1.b", &t, &err) == 0 && pvf_tensor_get_f64(&t, 0) == -20.0);
    CHECK(pvf_st_set_get(&s, "l2.w", &t, &err) == -1);
    CHECK(contains(err.msg, "'l2.w'") && contains(err.msg, "model-00001-of-00002.safetensors") &&
          contains(err.msg, "model-00002-of-00002.safetensors"));
    pvf_st_set_close(&s);
}

/* Rewrites the index of a sharded directory and expects open_dir to fail. */
static int index_fails(const char *dir, const char *json, const char *name, const char *word) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    put_text(p, json);
    return dir_fails(dir, name, word);
}

#define EXPECT_INDEX_FAIL(json, name, word) CHECK(index_fails(dir, json, name, word))

static void test_dir_errors(void) {
    const char *dir = make_sharded("bad-index", 0);
    char ipath[PATH_MAX];
    snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", dir);
    const char *idx = "model.safetensors.index.json";

    EXPECT_INDEX_FAIL("{\"weight_map\":", idx, "invalid JSON");
    EXPECT_INDEX_FAIL("[]", idx, "not a JSON object");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                      "\"a\":\"model-00002-of-00002.safetensors\"}}",
                      idx, "duplicate");
    EXPECT_INDEX_FAIL("{\"metadata\":{}}", idx, "\"weight_map\" is missing");
    EXPECT_INDEX_FAIL("{\"weight_map\":[]}", idx, "not an object");
    EXPECT_INDEX_FAIL("{\"weight_map\":{}}", idx, "empty");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":1}}", idx, "'l0.w' is not a string");
    /* A shard that does not exist. */
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\"model-00001-of-00002.safetensors\","
                      "\"x\":\"model-00003-of-00003.safetensors\"}}",
                      "model-00003-of-00003.safetensors", "No such file");
    /* Shard names that leave the directory or are not file names. */
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\"../model-00001-of-00002.safetensors\"}}",
                      "../model-00001", "plain file name");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\"/etc/passwd\"}}", idx, "plain file name");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\"sub/x.safetensors\"}}", idx, "plain file name");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\"..\"}}", idx, "plain file name");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\".\"}}", idx, "plain file name");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\"\"}}", idx, "plain file name");
    /* A mapped tensor that is not in its shard (it is in the other one). */
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"l0.w\":\"model-00001-of-00002.safetensors\","
                      "\"l1.w\":\"model-00001-of-00002.safetensors\"}}",
                      "'l1.w'", "no such tensor");
    EXPECT_INDEX_FAIL("{\"weight_map\":{\"ghost\":\"model-00002-of-00002.safetensors\"}}",
                      "model-00002-of-00002.safetensors", "no such tensor");
    /* A corrupt shard: the error names that shard. */
    char shard[PATH_MAX];
    snprintf(shard, sizeof shard, "%s/model-00002-of-00002.safetensors", dir);
    put_st(shard, "{\"l1.w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5);
    EXPECT_INDEX_FAIL(index_json, shard, "trailing");
    /* The index error names the index file with its directory. */
    CHECK(index_fails(dir, "{", ipath, "invalid JSON"));
    /* An index that is a directory. */
    unlink(ipath);
    mkdir_p(ipath);
    CHECK(dir_fails(dir, ipath, "not a regular file"));
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/pvf-test-st-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_dtype_table);
    RUN(test_numel_and_shape_format);
    RUN(test_element_access);
    RUN(test_roundtrip_all_dtypes);
    RUN(test_write_empty_and_overwrite);
    RUN(test_write_errors);
    RUN(test_valid_crafted);
    RUN(test_truncated_files);
    RUN(test_bad_json);
    RUN(test_bad_entries);
    RUN(test_shape_offset_mismatch_message);
    RUN(test_layout_errors);
    RUN(test_message_hygiene);
    RUN(test_header_parse_direct);
    RUN(test_dir_single);
    RUN(test_dir_sharded);
    RUN(test_dir_many_shards);
    RUN(test_dir_errors);
    rm_rf(tmpdir);
    return test_summary();
}
