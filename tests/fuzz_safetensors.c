/* fuzz_safetensors.c - libFuzzer harness for the safetensors reader.
 *
 * Every input goes through two targets:
 *   1. pvf_st_header_parse: the first 8 bytes (little-endian) are data_len,
 *      the rest is the JSON header (not NUL-terminated).
 *   2. pvf_st_open: the whole input is written to a memfd (or an unlinked
 *      temp file) and opened as a file.
 * Accepted headers are checked against the invariants the rest of pvf relies
 * on, every tensor of an accepted file is read through a view, and accepted
 * files are written back with pvf_st_write and re-read for equality.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -Icommon -Iworker/engine \
 *       common/err.c worker/engine/tensor.c worker/engine/safetensors.c \
 *       tests/fuzz_safetensors.c -ljansson -o /tmp/fuzz_st
 *   mkdir -p tests/fuzz-corpus-work
 *   /tmp/fuzz_st -max_total_time=120 tests/fuzz-corpus-work tests/fuzz/safetensors
 * (libFuzzer adds new inputs to the first directory: keep the seeds read-only.) */
#define _GNU_SOURCE /* memfd_create */

#include "safetensors.h"
#include "tensor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_error(const pvf_err *err) {
    REQUIRE(err->msg[0] != '\0');
    REQUIRE(strchr(err->msg, '\n') == NULL);
}

/* What an accepted header promises: entries tile [0, data_len) in order and
 * each span is exactly numel x dtype size. */
static void check_header(const pvf_st_header *h, uint64_t data_len) {
    uint64_t pos = 0;
    for (size_t i = 0; i < h->n; i++) {
        const pvf_st_entry *e = &h->entries[i];
        REQUIRE(e->name != NULL);
        REQUIRE(strcmp(e->name, "__metadata__") != 0);
        REQUIRE((unsigned)e->dtype < PVF_DT_COUNT);
        REQUIRE(e->ndim >= 0 && e->ndim <= PVF_MAX_DIMS);
        REQUIRE(e->begin == pos && e->begin <= e->end && e->end <= data_len);
        pvf_tensor t = {.dtype = e->dtype, .ndim = e->ndim};
        memcpy(t.shape, e->shape, sizeof t.shape);
        int64_t numel = pvf_tensor_numel(&t);
        REQUIRE(numel >= 0);
        REQUIRE((uint64_t)numel * pvf_dtype_size(e->dtype) == e->end - e->begin);
        pos = e->end;
    }
    REQUIRE(pos == data_len);
    for (size_t i = 0; i < h->nmeta; i++)
        REQUIRE(h->meta[i].key && h->meta[i].value);
}

static void fuzz_header(const uint8_t *data, size_t size) {
    if (size < 8)
        return;
    uint64_t data_len = 0;
    for (int i = 7; i >= 0; i--)
        data_len = (data_len << 8) | data[i];
    pvf_st_header h;
    pvf_err err = {{0}};
    if (pvf_st_header_parse((const char *)data + 8, size - 8, data_len, &h, &err) == 0) {
        check_header(&h, data_len);
        pvf_st_header_free(&h);
    } else {
        check_error(&err);
        REQUIRE(h.entries == NULL && h.n == 0 && h.meta == NULL && h.nmeta == 0);
    }
}

static int input_fd = -1;
static char input_path[64];
static char out_dir[64];
static char out_path[128];

static void cleanup(void) {
    if (out_path[0]) {
        unlink(out_path);
        rmdir(out_dir);
    }
}

static int setup(void) {
    if (input_fd >= 0)
        return 0;
    input_fd = memfd_create("pvf-fuzz-st", MFD_CLOEXEC);
    if (input_fd < 0) {
        char tmpl[] = "/tmp/pvf-fuzz-st-XXXXXX";
        input_fd = mkstemp(tmpl);
        if (input_fd < 0)
            return -1;
        unlink(tmpl);
    }
    snprintf(input_path, sizeof input_path, "/proc/self/fd/%d", input_fd);
    snprintf(out_dir, sizeof out_dir, "%s",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm/pvf-fuzz-XXXXXX" : "/tmp/pvf-fuzz-XXXXXX");
    if (mkdtemp(out_dir)) {
        snprintf(out_path, sizeof out_path, "%s/rt.safetensors", out_dir);
        atexit(cleanup);
    }
    return 0;
}

static int put_input(const uint8_t *data, size_t size) {
    if (ftruncate(input_fd, 0) < 0)
        return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(input_fd, data + done, size - done, (off_t)done);
        if (w <= 0)
            return -1;
        done += (size_t)w;
    }
    return 0;
}

/* Writes f back out and checks that the copy reads the same. */
static void roundtrip(const pvf_st_file *f) {
    if (!out_path[0] || f->hdr.n > 64)
        return;
    pvf_st_out out[64];
    for (size_t i = 0; i < f->hdr.n; i++) {
        const pvf_st_entry *e = &f->hdr.entries[i];
        out[i] = (pvf_st_out){e->name, e->dtype, e->ndim, e->shape, f->data + e->begin};
    }
    pvf_err err = {{0}};
    REQUIRE(pvf_st_write(out_path, out, f->hdr.n, f->hdr.meta, f->hdr.nmeta, &err) == 0);
    pvf_st_file g;
    REQUIRE(pvf_st_open(&g, out_path, &err) == 0);
    REQUIRE(g.hdr.n == f->hdr.n && g.hdr.nmeta == f->hdr.nmeta);
    for (size_t i = 0; i < g.hdr.n; i++) {
        const pvf_st_entry *a = &f->hdr.entries[i], *b = &g.hdr.entries[i];
        REQUIRE(strcmp(a->name, b->name) == 0);
        REQUIRE(a->dtype == b->dtype && a->ndim == b->ndim);
        REQUIRE(memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0);
        REQUIRE(a->begin == b->begin && a->end == b->end);
        REQUIRE(memcmp(f->data + a->begin, g.data + b->begin, (size_t)(a->end - a->begin)) == 0);
    }
    for (size_t i = 0; i < g.hdr.nmeta; i++) {
        const char *v = pvf_st_meta_get(&g, f->hdr.meta[i].key);
        REQUIRE(v && strcmp(v, f->hdr.meta[i].value) == 0);
    }
    pvf_st_close(&g);
}

static void fuzz_file(const uint8_t *data, size_t size) {
    if (setup() < 0 || put_input(data, size) < 0)
        return;
    pvf_st_file f;
    pvf_err err = {{0}};
    if (pvf_st_open(&f, input_path, &err) < 0) {
        check_error(&err);
        REQUIRE(strncmp(err.msg, input_path, strlen(input_path)) == 0);
        REQUIRE(f.map == NULL && f.path == NULL && f.hdr.n == 0);
        return;
    }
    REQUIRE(f.size == size);
    check_header(&f.hdr, (uint64_t)(f.size - (size_t)(f.data - (const uint8_t *)f.map)));
    volatile double sink = 0;
    for (size_t i = 0; i < f.hdr.n; i++) {
        REQUIRE(pvf_st_find(&f, f.hdr.entries[i].name) == (long)i);
        pvf_tensor t;
        pvf_st_view(&f, i, &t);
        int64_t numel = pvf_tensor_numel(&t);
        if (numel > 0) { /* first and last element: ASan checks the bounds */
            sink += pvf_tensor_get_f64(&t, 0) + pvf_tensor_get_f64(&t, numel - 1);
            sink += (double)pvf_tensor_get_i64(&t, numel - 1);
        }
        char shape[256];
        pvf_shape_format(t.shape, t.ndim, shape, sizeof shape);
    }
    (void)sink;
    for (size_t i = 0; i < f.hdr.nmeta; i++)
        REQUIRE(pvf_st_meta_get(&f, f.hdr.meta[i].key) != NULL);
    roundtrip(&f);
    pvf_st_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_header(data, size);
    fuzz_file(data, size);
    return 0;
}
