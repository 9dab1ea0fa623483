/* safetensors.c - validating reader and atomic writer of safetensors files.
 *
 * The header is parsed with jansson (duplicate keys rejected) into a
 * pvf_st_header whose entries are sorted by data offset, which makes the
 * layout checks (contiguous, no overlap, no hole, nothing trailing) a single
 * pass. Files are mapped read-only; their size is checked against the header
 * before anything past the length field is touched. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* fsync under -std=c11 */
#endif

#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NAME  "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define QNAME_MAX   96 /* names quoted in error messages are cut to this */

/* ---- helpers ------------------------------------------------------------ */

/* Copies s into buf for an error message: control bytes become \xNN so the
 * message stays one line, and long strings are cut (at a UTF-8 character
 * boundary) with "...". */
static const char *quote(const char *s, char *buf, size_t n) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int esc = *p < 0x20 || *p == 0x7f, lead = (*p & 0xc0) != 0x80;
        /* A character starts only if it fits whole (4 bytes) with "...". */
        if ((lead && o + 4 + 3 >= n) || o + (esc ? 4 : 1) + 3 >= n) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (esc) {
            snprintf(buf + o, n - o, "\\x%02x", *p);
            o += 4;
        } else {
            buf[o++] = (char)*p;
        }
    }
    buf[o] = '\0';
    return buf;
}

static uint64_t load_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void store_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* dir + "/" + name; NULL when out of memory. */
static char *path_join(const char *dir, const char *name) {
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + (size_t)slash + nl + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + (size_t)slash, name, nl + 1);
    return p;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* A JSON integer >= 0, else -1. */
static int json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* ---- header ------------------------------------------------------------- */

void pvf_st_header_free(pvf_st_header *h) {
    for (size_t i = 0; i < h->n; i++)
        free(h->entries[i].name);
    free(h->entries);
    for (size_t i = 0; i < h->nmeta; i++) {
        free(h->meta[i].key);
        free(h->meta[i].value);
    }
    free(h->meta);
    memset(h, 0, sizeof *h);
}

static int parse_meta(json_t *obj, pvf_st_header *h, pvf_err *err) {
    char q[QNAME_MAX];
    if (json_is_null(obj))
        return 0;
    if (!json_is_object(obj))
        return pvf_err_set(err, "__metadata__ is not a JSON object");
    size_t n = json_object_size(obj);
    if (n == 0)
        return 0;
    h->meta = calloc(n, sizeof *h->meta);
    if (!h->meta)
        return pvf_err_set(err, "out of memory");
    h->nmeta = n;
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!json_is_string(v))
            return pvf_err_set(err, "__metadata__ key '%s': value is not a string",
                               quote(key, q, sizeof q));
        h->meta[i].key = dup_str(key);
        h->meta[i].value = dup_str(json_string_value(v));
        if (!h->meta[i].key || !h->meta[i].value)
            return pvf_err_set(err, "out of memory");
        i++;
    }
    return 0;
}

/* Fills e from the JSON entry v of tensor `name` (name not yet copied). */
static int parse_entry(const char *name, json_t *v, uint64_t data_len, pvf_st_entry *e,
                       pvf_err *err) {
    char q[QNAME_MAX], q2[QNAME_MAX], shp[256];
    quote(name, q, sizeof q);
    if (!json_is_object(v))
        return pvf_err_set(err, "tensor '%s': entry is not a JSON object", q);

    json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return pvf_err_set(err, "tensor '%s': \"dtype\" is missing or not a string", q);
    if (pvf_dtype_parse(json_string_value(dt), &e->dtype) < 0)
        return pvf_err_set(err, "tensor '%s': unknown dtype '%s'", q,
                           quote(json_string_value(dt), q2, sizeof q2));

    json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape))
        return pvf_err_set(err, "tensor '%s': \"shape\" is missing or not an array", q);
    size_t nd = json_array_size(shape);
    if (nd > PVF_MAX_DIMS)
        return pvf_err_set(err, "tensor '%s': shape has %zu dims, more than the %d supported", q,
                           nd, PVF_MAX_DIMS);
    e->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d))
            return pvf_err_set(err, "tensor '%s': shape dim %zu is not an integer", q, i);
        if (json_integer_value(d) < 0)
            return pvf_err_set(err,
                               "tensor '%s': shape dim %zu is negative (%" JSON_INTEGER_FORMAT ")",
                               q, i, json_integer_value(d));
        e->shape[i] = (int64_t)json_integer_value(d);
    }

    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off))
        return pvf_err_set(err, "tensor '%s': \"data_offsets\" is missing or not an array", q);
    if (json_array_size(off) != 2)
        return pvf_err_set(err, "tensor '%s': data_offsets has %zu elements, not [begin, end]", q,
                           json_array_size(off));
    if (json_u64(json_array_get(off, 0), &e->begin) < 0 ||
        json_u64(json_array_get(off, 1), &e->end) < 0)
        return pvf_err_set(err, "tensor '%s': data_offsets are not non-negative integers", q);
    if (e->begin > e->end)
        return pvf_err_set(err,
                           "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before "
                           "they begin",
                           q, e->begin, e->end);

    /* A partial product that overflows is an error even if a later dim is 0
     * (as in the reference implementation). An accepted byte count equals a
     * span of JSON integers, so numel always fits in int64. */
    pvf_shape_format(e->shape, e->ndim, shp, sizeof shp);
    uint64_t need = pvf_dtype_size(e->dtype);
    for (int i = 0; i < e->ndim; i++) {
        uint64_t d = (uint64_t)e->shape[i];
        if (d != 0 && need > UINT64_MAX / d)
            return pvf_err_set(err, "tensor '%s': shape %s x %s overflows 64 bits", q, shp,
                               pvf_dtype_name(e->dtype));
        need *= d;
    }
    if (need != e->end - e->begin)
        return pvf_err_set(err,
                           "tensor '%s': shape %s x %s needs %" PRIu64 " bytes but "
                           "data_offsets span %" PRIu64,
                           q, shp, pvf_dtype_name(e->dtype), need, e->end - e->begin);
    if (e->end > data_len)
        return pvf_err_set(err,
                           "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] go past "
                           "the end of the %" PRIu64 "-byte data buffer (truncated?)",
                           q, e->begin, e->end, data_len);
    return 0;
}

static int entry_cmp(const void *a, const void *b) {
    const pvf_st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Entries sorted by offset must tile [0, data_len) exactly. */
static int check_layout(const pvf_st_header *h, uint64_t data_len, pvf_err *err) {
    char q[QNAME_MAX], q2[QNAME_MAX];
    uint64_t pos = 0;
    for (size_t i = 0; i < h->n; i++) {
        const pvf_st_entry *e = &h->entries[i];
        if (e->begin < pos) {
            const pvf_st_entry *p = &h->entries[i - 1]; /* pos > 0 so i > 0 */
            return pvf_err_set(err,
                               "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] "
                               "overlap tensor '%s' at [%" PRIu64 ", %" PRIu64 "]",
                               quote(e->name, q, sizeof q), e->begin, e->end,
                               quote(p->name, q2, sizeof q2), p->begin, p->end);
        }
        if (e->begin > pos)
            return pvf_err_set(err,
                               "tensor '%s': hole in the data buffer: bytes [%" PRIu64 ", %" PRIu64
                               ") before it belong to no tensor",
                               quote(e->name, q, sizeof q), pos, e->begin);
        pos = e->end;
    }
    if (pos != data_len)
        return pvf_err_set(err,
                           "trailing data: the data buffer is %" PRIu64 " bytes but the "
                           "tensors end at %" PRIu64,
                           data_len, pos);
    return 0;
}

static int header_build(json_t *root, uint64_t data_len, pvf_st_header *out, pvf_err *err) {
    if (!json_is_object(root))
        return pvf_err_set(err, "header is not a JSON object");
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta && parse_meta(meta, out, err) < 0)
        return -1;

    size_t n = json_object_size(root) - (meta ? 1 : 0);
    if (n > 0) {
        out->entries = calloc(n, sizeof *out->entries);
        if (!out->entries)
            return pvf_err_set(err, "out of memory");
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        pvf_st_entry *e = &out->entries[out->n];
        if (parse_entry(key, v, data_len, e, err) < 0)
            return -1;
        if (!(e->name = dup_str(key)))
            return pvf_err_set(err, "out of memory");
        out->n++;
    }
    if (out->n > 1)
        qsort(out->entries, out->n, sizeof *out->entries, entry_cmp);
    return check_layout(out, data_len, err);
}

int pvf_st_header_parse(const char *json, size_t len, uint64_t data_len, pvf_st_header *out,
                        pvf_err *err) {
    memset(out, 0, sizeof *out);
    if (len > PVF_ST_MAX_HEADER)
        return pvf_err_set(err, "header is %zu bytes, more than the %u-byte limit", len,
                           PVF_ST_MAX_HEADER);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char q[QNAME_MAX * 2];
        return pvf_err_set(err, "invalid header JSON at byte %d: %s", jerr.position,
                           quote(jerr.text, q, sizeof q));
    }
    int rc = header_build(root, data_len, out, err);
    json_decref(root);
    if (rc < 0)
        pvf_st_header_free(out);
    return rc;
}

/* ---- one file ----------------------------------------------------------- */

void pvf_st_close(pvf_st_file *f) {
    if (f->map)
        munmap(f->map, f->size);
    free(f->path);
    pvf_st_header_free(&f->hdr);
    memset(f, 0, sizeof *f);
}

/* Maps path and validates it into f; errors do not name the path yet. */
static int st_map(pvf_st_file *f, const char *path, pvf_err *err) {
    /* O_NONBLOCK: opening a FIFO must not hang (it is then refused below). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return pvf_err_set(err, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return pvf_err_set(err, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pvf_err_set(err, "not a regular file");
    }
    if (st.st_size < 8) {
        close(fd);
        return pvf_err_set(err,
                           "truncated: the file is %jd bytes, less than the 8-byte header "
                           "length",
                           (intmax_t)st.st_size);
    }
    if ((uintmax_t)st.st_size > SIZE_MAX) {
        close(fd);
        return pvf_err_set(err, "file too large to map");
    }
    f->size = (size_t)st.st_size;
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return pvf_err_set(err, "cannot map: %s", strerror(e));
    f->map = map;

    uint64_t hlen = load_le64(map);
    uint64_t rest = (uint64_t)f->size - 8;
    if (hlen < 2)
        return pvf_err_set(err, "header length %" PRIu64 " is too small (\"{}\" needs 2)", hlen);
    if (hlen > PVF_ST_MAX_HEADER)
        return pvf_err_set(err, "header length %" PRIu64 " is more than the %u-byte limit", hlen,
                           PVF_ST_MAX_HEADER);
    if (hlen > rest)
        return pvf_err_set(
            err, "truncated: header length %" PRIu64 " but only %" PRIu64 " bytes follow it", hlen,
            rest);
    const char *json = (const char *)map + 8;
    f->data = (const uint8_t *)json + hlen;
    return pvf_st_header_parse(json, (size_t)hlen, rest - hlen, &f->hdr, err);
}

int pvf_st_open(pvf_st_file *f, const char *path, pvf_err *err) {
    memset(f, 0, sizeof *f);
    if (st_map(f, path, err) < 0) {
        pvf_st_close(f);
        return pvf_err_prefix(err, "%s", path);
    }
    if (!(f->path = dup_str(path))) {
        pvf_st_close(f);
        return pvf_err_set(err, "%s: out of memory", path);
    }
    return 0;
}

long pvf_st_find(const pvf_st_file *f, const char *name) {
    for (size_t i = 0; i < f->hdr.n; i++)
        if (strcmp(f->hdr.entries[i].name, name) == 0)
            return (long)i;
    return -1;
}

void pvf_st_view(const pvf_st_file *f, size_t i, pvf_tensor *out) {
    const pvf_st_entry *e = &f->hdr.entries[i];
    memset(out, 0, sizeof *out);
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof out->shape);
    out->data = f->data + e->begin;
    out->nbytes = (size_t)(e->end - e->begin);
}

const char *pvf_st_meta_get(const pvf_st_file *f, const char *key) {
    for (size_t i = 0; i < f->hdr.nmeta; i++)
        if (strcmp(f->hdr.meta[i].key, key) == 0)
            return f->hdr.meta[i].value;
    return NULL;
}

/* ---- model directory ---------------------------------------------------- */

void pvf_st_set_close(pvf_st_set *s) {
    for (size_t i = 0; i < s->nfiles; i++)
        pvf_st_close(&s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

static int open_single(pvf_st_set *s, const char *path, pvf_err *err) {
    s->files = calloc(1, sizeof *s->files);
    if (!s->files)
        return pvf_err_set(err, "out of memory");
    if (pvf_st_open(&s->files[0], path, err) < 0)
        return -1;
    s->nfiles = 1;
    return 0;
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int shard_name_ok(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Opens the shards named by the weight_map of root (index file ipath). */
static int open_shards(pvf_st_set *s, const char *dir, const char *ipath, json_t *root,
                       pvf_err *err) {
    char q[QNAME_MAX], q2[QNAME_MAX];
    if (!json_is_object(root))
        return pvf_err_set(err, "%s: not a JSON object", ipath);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm))
        return pvf_err_set(err, "%s: \"weight_map\" is missing or not an object", ipath);
    size_t n = json_object_size(wm);
    if (n == 0)
        return pvf_err_set(err, "%s: \"weight_map\" is empty", ipath);

    /* Distinct shard names, sorted (they point into root). */
    const char **names = malloc(n * sizeof *names);
    if (!names)
        return pvf_err_set(err, "out of memory");
    size_t nn = 0;
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v)) {
            rc = pvf_err_set(err, "%s: weight_map entry of tensor '%s' is not a string", ipath,
                             quote(key, q, sizeof q));
            goto out;
        }
        if (!shard_name_ok(json_string_value(v))) {
            rc = pvf_err_set(err,
                             "%s: tensor '%s': shard '%s' is not a plain file name in the "
                             "same directory",
                             ipath, quote(key, q, sizeof q),
                             quote(json_string_value(v), q2, sizeof q2));
            goto out;
        }
        names[nn++] = json_string_value(v);
    }
    qsort(names, nn, sizeof *names, str_cmp);
    size_t nd = 0;
    for (size_t i = 0; i < nn; i++)
        if (nd == 0 || strcmp(names[nd - 1], names[i]) != 0)
            names[nd++] = names[i];

    s->files = calloc(nd, sizeof *s->files);
    if (!s->files) {
        rc = pvf_err_set(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nd; i++) {
        char *path = path_join(dir, names[i]);
        if (!path) {
            rc = pvf_err_set(err, "out of memory");
            goto out;
        }
        rc = pvf_st_open(&s->files[i], path, err);
        free(path);
        if (rc < 0)
            goto out;
        s->nfiles = i + 1;
    }

    json_object_foreach(wm, key, v) {
        const char *shard = json_string_value(v);
        const char **hit = bsearch(&shard, names, nd, sizeof *names, str_cmp);
        if (pvf_st_find(&s->files[hit - names], key) < 0) {
            rc = pvf_err_set(err,
                             "%s: tensor '%s' is mapped to '%s' but that shard has no such "
                             "tensor",
                             ipath, quote(key, q, sizeof q), quote(shard, q2, sizeof q2));
            goto out;
        }
    }
out:
    free(names);
    return rc;
}

static int open_index(pvf_st_set *s, const char *dir, const char *ipath, const struct stat *st,
                      pvf_err *err) {
    if (!S_ISREG(st->st_mode)) /* a FIFO would block json_load_file */
        return pvf_err_set(err, "%s: not a regular file", ipath);
    json_error_t jerr;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char q[QNAME_MAX * 2];
        if (jerr.line < 0) /* I/O error */
            return pvf_err_set(err, "%s: cannot read: %s", ipath, quote(jerr.text, q, sizeof q));
        return pvf_err_set(err, "%s: invalid JSON at line %d column %d: %s", ipath, jerr.line,
                           jerr.column, quote(jerr.text, q, sizeof q));
    }
    int rc = open_shards(s, dir, ipath, root, err);
    json_decref(root);
    return rc;
}

int pvf_st_set_open_dir(pvf_st_set *s, const char *dir, pvf_err *err) {
    memset(s, 0, sizeof *s);
    struct stat st;
    if (stat(dir, &st) < 0)
        return pvf_err_set(err, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pvf_err_set(err, "%s: not a directory", dir);

    char *ipath = path_join(dir, INDEX_NAME), *spath = path_join(dir, SINGLE_NAME);
    int rc;
    if (!ipath || !spath) {
        rc = pvf_err_set(err, "out of memory");
    } else if (stat(ipath, &st) == 0) {
        rc = open_index(s, dir, ipath, &st, err);
    } else if (errno != ENOENT) {
        rc = pvf_err_set(err, "%s: %s", ipath, strerror(errno));
    } else if (stat(spath, &st) < 0 && errno == ENOENT) {
        rc = pvf_err_set(err, "%s: no " SINGLE_NAME " or " INDEX_NAME, dir);
    } else {
        rc = open_single(s, spath, err);
    }
    free(ipath);
    free(spath);
    if (rc < 0)
        pvf_st_set_close(s);
    return rc;
}

int pvf_st_set_get(const pvf_st_set *s, const char *name, pvf_tensor *out, pvf_err *err) {
    for (size_t i = 0; i < s->nfiles; i++) {
        long j = pvf_st_find(&s->files[i], name);
        if (j >= 0) {
            pvf_st_view(&s->files[i], (size_t)j, out);
            return 0;
        }
    }
    char q[QNAME_MAX], list[320];
    size_t o = 0;
    list[0] = '\0';
    for (size_t i = 0; i < s->nfiles; i++) {
        int w = snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", s->files[i].path);
        if (w < 0 || (size_t)w >= sizeof list - o) { /* too many to list */
            snprintf(list, sizeof list, "%s and %zu other files", s->files[0].path, s->nfiles - 1);
            break;
        }
        o += (size_t)w;
    }
    return pvf_err_set(err, "tensor '%s' not found in %s", quote(name, q, sizeof q),
                       s->nfiles ? list : "(no files)");
}

size_t pvf_st_set_count(const pvf_st_set *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        n += s->files[i].hdr.n;
    return n;
}

/* ---- writer ------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The header JSON of the tensors laid out back to back; NULL on error. */
static char *build_header(const pvf_st_out *t, size_t n, const pvf_st_meta *meta, size_t nmeta,
                          pvf_err *err) {
    char q[QNAME_MAX], shp[256];
    json_t *root = json_object();
    if (!root) {
        pvf_err_set(err, "out of memory");
        return NULL;
    }
    if (nmeta > 0) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m) < 0) {
            pvf_err_set(err, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < nmeta; i++) {
            if (!meta[i].key || !meta[i].value) {
                pvf_err_set(err, "metadata entry %zu has a NULL key or value", i);
                goto fail;
            }
            quote(meta[i].key, q, sizeof q);
            if (json_object_get(m, meta[i].key)) {
                pvf_err_set(err, "metadata key '%s' appears twice", q);
                goto fail;
            }
            json_t *s = json_string(meta[i].value);
            if (!s || json_object_set_new(m, meta[i].key, s) < 0) {
                pvf_err_set(err, "metadata key '%s': key or value is not valid UTF-8", q);
                goto fail;
            }
        }
    }

    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t[i].name) {
            pvf_err_set(err, "tensor %zu has no name", i);
            goto fail;
        }
        quote(t[i].name, q, sizeof q);
        if (strcmp(t[i].name, "__metadata__") == 0 || json_object_get(root, t[i].name)) {
            pvf_err_set(err, "tensor '%s': name is reserved or appears twice", q);
            goto fail;
        }
        size_t dsize = pvf_dtype_size(t[i].dtype);
        if (dsize == 0) {
            pvf_err_set(err, "tensor '%s': invalid dtype %d", q, (int)t[i].dtype);
            goto fail;
        }
        if (t[i].ndim < 0 || t[i].ndim > PVF_MAX_DIMS || (t[i].ndim > 0 && !t[i].shape)) {
            pvf_err_set(err, "tensor '%s': invalid ndim %d", q, t[i].ndim);
            goto fail;
        }
        /* The *_set_new and *_append_new calls take their value (freeing it
         * on failure, and accepting NULL as a failure), so everything is
         * owned by root from here on. */
        json_t *ent = json_object();
        if (!ent || json_object_set_new(root, t[i].name, ent) < 0) {
            pvf_err_set(err, "tensor '%s': name is not valid UTF-8 (or out of memory)", q);
            goto fail;
        }
        json_t *shape = json_array(), *off = json_array();
        int bad = json_object_set_new(ent, "dtype", json_string(pvf_dtype_name(t[i].dtype)));
        bad |= json_object_set_new(ent, "shape", shape);
        bad |= json_object_set_new(ent, "data_offsets", off);
        if (bad) {
            pvf_err_set(err, "out of memory");
            goto fail;
        }
        uint64_t nb = dsize;
        for (int d = 0; d < t[i].ndim; d++) {
            int64_t dim = t[i].shape[d];
            if (dim < 0 || (dim != 0 && nb > UINT64_MAX / (uint64_t)dim)) {
                pvf_shape_format(t[i].shape, t[i].ndim, shp, sizeof shp);
                pvf_err_set(err, "tensor '%s': invalid shape %s", q, shp);
                goto fail;
            }
            nb *= (uint64_t)dim;
            bad |= json_array_append_new(shape, json_integer((json_int_t)dim));
        }
        if (nb > (uint64_t)INT64_MAX - pos || nb > SIZE_MAX || (nb > 0 && !t[i].data)) {
            pvf_err_set(err, "tensor '%s': %" PRIu64 " bytes of data are missing or too many", q,
                        nb);
            goto fail;
        }
        bad |= json_array_append_new(off, json_integer((json_int_t)pos));
        bad |= json_array_append_new(off, json_integer((json_int_t)(pos + nb)));
        if (bad) {
            pvf_err_set(err, "out of memory");
            goto fail;
        }
        pos += nb;
    }
    char *s = json_dumps(root, JSON_COMPACT);
    if (!s)
        pvf_err_set(err, "out of memory");
    json_decref(root);
    return s;
fail:
    json_decref(root);
    return NULL;
}

int pvf_st_write(const char *path, const pvf_st_out *tensors, size_t n, const pvf_st_meta *meta,
                 size_t nmeta, pvf_err *err) {
    char *json = build_header(tensors, n, meta, nmeta, err);
    if (!json)
        return pvf_err_prefix(err, "%s", path);
    size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
    char *tmp = malloc(strlen(path) + 5);
    if (!tmp) {
        free(json);
        return pvf_err_set(err, "%s: out of memory", path);
    }
    sprintf(tmp, "%s.tmp", path);

    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        rc = pvf_err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    static const char spaces[8] = "        ";
    store_le64(len8, hl);
    int bad = write_all(fd, len8, 8) < 0 || write_all(fd, json, jl) < 0 ||
              write_all(fd, spaces, hl - jl) < 0;
    for (size_t i = 0; i < n && !bad; i++) {
        pvf_tensor t = {.dtype = tensors[i].dtype, .ndim = tensors[i].ndim};
        if (t.ndim > 0)
            memcpy(t.shape, tensors[i].shape, (size_t)t.ndim * sizeof t.shape[0]);
        size_t nb = (size_t)pvf_tensor_numel(&t) * pvf_dtype_size(t.dtype);
        bad = nb > 0 && write_all(fd, tensors[i].data, nb) < 0;
    }
    if (bad || fsync(fd) < 0) {
        rc = pvf_err_set(err, "%s: cannot write: %s", tmp, strerror(errno));
        close(fd);
    } else if (close(fd) < 0) {
        rc = pvf_err_set(err, "%s: cannot write: %s", tmp, strerror(errno));
    } else if (rename(tmp, path) < 0) {
        rc = pvf_err_set(err, "%s: cannot rename %s: %s", path, tmp, strerror(errno));
    }
    if (rc < 0)
        unlink(tmp);
out:
    free(tmp);
    free(json);
    return rc;
}
