/* safetensors.h - reader and writer for Hugging Face safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * (an object mapping tensor names to {"dtype", "shape", "data_offsets"},
 * plus an optional "__metadata__" object of string values), then the data
 * buffer. Offsets are relative to the start of the data buffer.
 *
 * Files are untrusted: the header is validated completely before any tensor
 * is handed out (JSON well-formed, no duplicate keys, known dtypes, shapes
 * non-negative and free of overflow, shape x dtype size == byte span,
 * offsets inside the buffer, no overlaps and no holes, header size capped). */
#ifndef PVF_SAFETENSORS_H
#define PVF_SAFETENSORS_H

#include "pvf_common.h"
#include "tensor.h"

#include <stdint.h>

#define PVF_ST_MAX_HEADER (100u * 1024u * 1024u) /* as the reference library */

typedef struct pvf_st_entry {
    char *name;
    pvf_dtype dtype;
    int ndim;
    int64_t shape[PVF_MAX_DIMS];
    uint64_t begin, end; /* byte offsets into the data buffer */
} pvf_st_entry;

typedef struct pvf_st_meta {
    char *key;
    char *value;
} pvf_st_meta;

typedef struct pvf_st_header {
    pvf_st_entry *entries; /* in file order of data_offsets */
    size_t n;
    pvf_st_meta *meta; /* "__metadata__", may be empty */
    size_t nmeta;
} pvf_st_header;

/* Parses and validates the JSON header `json` (len bytes, not necessarily
 * NUL-terminated) of a file whose data buffer is data_len bytes long.
 * On success the caller owns *out (free with pvf_st_header_free). On error
 * *out is left empty and err says what is wrong (without a file name). */
int pvf_st_header_parse(const char *json, size_t len, uint64_t data_len, pvf_st_header *out,
                        pvf_err *err);
void pvf_st_header_free(pvf_st_header *h);

/* A safetensors file mapped read-only. */
typedef struct pvf_st_file {
    char *path;
    void *map;
    size_t size;
    const uint8_t *data; /* start of the data buffer inside map */
    pvf_st_header hdr;
} pvf_st_file;

/* Opens, maps and validates a file; errors name the path. */
int pvf_st_open(pvf_st_file *f, const char *path, pvf_err *err);
void pvf_st_close(pvf_st_file *f);
/* Index of the tensor called name, or -1. */
long pvf_st_find(const pvf_st_file *f, const char *name);
/* A view of entry i. */
void pvf_st_view(const pvf_st_file *f, size_t i, pvf_tensor *out);
/* Value of a __metadata__ key, or NULL. */
const char *pvf_st_meta_get(const pvf_st_file *f, const char *key);

/* The weights of a model directory: model.safetensors, or the shards named
 * by model.safetensors.index.json ("weight_map": tensor name -> shard file in
 * the same directory; every mapped tensor must exist in its shard). */
typedef struct pvf_st_set {
    pvf_st_file *files;
    size_t nfiles;
} pvf_st_set;

int pvf_st_set_open_dir(pvf_st_set *s, const char *dir, pvf_err *err);
void pvf_st_set_close(pvf_st_set *s);
/* Finds name in any shard; returns 0 and a view, or -1 (err names the
 * tensor and the directory's files). */
int pvf_st_set_get(const pvf_st_set *s, const char *name, pvf_tensor *out, pvf_err *err);
/* Total number of tensors over all shards. */
size_t pvf_st_set_count(const pvf_st_set *s);

/* Writing (for --dump-outputs and test fixtures). */
typedef struct pvf_st_out {
    const char *name;
    pvf_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data; /* numel x dtype size bytes */
} pvf_st_out;

int pvf_st_write(const char *path, const pvf_st_out *tensors, size_t n, const pvf_st_meta *meta,
                 size_t nmeta, pvf_err *err);

#endif
