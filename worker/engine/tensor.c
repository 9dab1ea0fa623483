/* tensor.c - dtype tables, shapes and element access for tensor views. */
#include "tensor.h"

#include "format.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[PVF_DT_COUNT] = {
    [PVF_DT_F32] = {"F32", 4},   [PVF_DT_F16] = {"F16", 2}, [PVF_DT_BF16] = {"BF16", 2},
    [PVF_DT_F64] = {"F64", 8},   [PVF_DT_I64] = {"I64", 8}, [PVF_DT_I32] = {"I32", 4},
    [PVF_DT_I16] = {"I16", 2},   [PVF_DT_I8] = {"I8", 1},   [PVF_DT_U8] = {"U8", 1},
    [PVF_DT_U16] = {"U16", 2},   [PVF_DT_U32] = {"U32", 4}, [PVF_DT_U64] = {"U64", 8},
    [PVF_DT_BOOL] = {"BOOL", 1},
};

static int dtype_valid(pvf_dtype dt) {
    return (unsigned)dt < PVF_DT_COUNT;
}

const char *pvf_dtype_name(pvf_dtype dt) {
    return dtype_valid(dt) ? dtype_info[dt].name : "?";
}

int pvf_dtype_parse(const char *name, pvf_dtype *out) {
    if (!name)
        return -1;
    for (int i = 0; i < PVF_DT_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (pvf_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* 0 for an invalid dtype, so size checks against it fail safely. */
size_t pvf_dtype_size(pvf_dtype dt) {
    return dtype_valid(dt) ? dtype_info[dt].size : 0;
}

/* -1 if a dimension is negative or the product does not fit in int64. */
int64_t pvf_tensor_numel(const pvf_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return -1;
        uint64_t d = (uint64_t)t->shape[i];
        if (d != 0 && n > (uint64_t)INT64_MAX / d)
            return -1;
        n *= d;
    }
    return (int64_t)n;
}

void pvf_shape_format(const int64_t *shape, int ndim, char *buf, size_t n) {
    if (n == 0)
        return;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = -1; i <= ndim && used < n; i++) {
        int w;
        if (i == -1)
            w = snprintf(buf + used, n - used, "[");
        else if (i == ndim)
            w = snprintf(buf + used, n - used, "]");
        else
            w = snprintf(buf + used, n - used, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

/* Little-endian loads, independent of the host byte order. */
static uint64_t load_le(const unsigned char *p, size_t size) {
    uint64_t v = 0;
    for (size_t i = size; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

static double f32_bits_to_f64(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return (double)f;
}

/* Element i, or NULL if it lies outside the view. */
static const unsigned char *element(const pvf_tensor *t, int64_t i, size_t *size) {
    *size = pvf_dtype_size(t->dtype);
    if (*size == 0 || i < 0 || !t->data || (uint64_t)i >= t->nbytes / *size)
        return NULL;
    return (const unsigned char *)t->data + (size_t)i * *size;
}

double pvf_tensor_get_f64(const pvf_tensor *t, int64_t i) {
    size_t size;
    const unsigned char *p = element(t, i, &size);
    if (!p)
        return 0.0;
    uint64_t v = load_le(p, size);
    switch (t->dtype) {
    case PVF_DT_F32:
        return f32_bits_to_f64((uint32_t)v);
    case PVF_DT_F16:
        return (double)pvf_f16_to_f32((uint16_t)v);
    case PVF_DT_BF16:
        return (double)pvf_bf16_to_f32((uint16_t)v);
    case PVF_DT_F64: {
        double d;
        memcpy(&d, &v, sizeof d);
        return d;
    }
    case PVF_DT_I64:
        return (double)(int64_t)v;
    case PVF_DT_I32:
        return (double)(int32_t)(uint32_t)v;
    case PVF_DT_I16:
        return (double)(int16_t)(uint16_t)v;
    case PVF_DT_I8:
        return (double)(int8_t)(uint8_t)v;
    case PVF_DT_BOOL:
        return v ? 1.0 : 0.0;
    case PVF_DT_U8:
    case PVF_DT_U16:
    case PVF_DT_U32:
    case PVF_DT_U64:
        return (double)v;
    case PVF_DT_COUNT:
        break;
    }
    return 0.0;
}

/* Float values are truncated toward zero and saturated (NaN gives 0); U64
 * values above INT64_MAX saturate. */
int64_t pvf_tensor_get_i64(const pvf_tensor *t, int64_t i) {
    size_t size;
    const unsigned char *p = element(t, i, &size);
    if (!p)
        return 0;
    uint64_t v = load_le(p, size);
    switch (t->dtype) {
    case PVF_DT_F32:
    case PVF_DT_F16:
    case PVF_DT_BF16:
    case PVF_DT_F64: {
        double d = pvf_tensor_get_f64(t, i);
        if (isnan(d))
            return 0;
        if (d >= 9223372036854775808.0) /* 2^63 */
            return INT64_MAX;
        if (d < -9223372036854775808.0)
            return INT64_MIN;
        return (int64_t)d;
    }
    case PVF_DT_I64:
        return (int64_t)v;
    case PVF_DT_I32:
        return (int32_t)(uint32_t)v;
    case PVF_DT_I16:
        return (int16_t)(uint16_t)v;
    case PVF_DT_I8:
        return (int8_t)(uint8_t)v;
    case PVF_DT_BOOL:
        return v != 0;
    case PVF_DT_U8:
    case PVF_DT_U16:
    case PVF_DT_U32:
        return (int64_t)v;
    case PVF_DT_U64:
        return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
    case PVF_DT_COUNT:
        break;
    }
    return 0;
}

int pvf_tensor_to_f32(const pvf_tensor *t, float *out, int64_t n) {
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case PVF_DT_F32: {
            memcpy(&out[i], p + 4 * i, 4);
            break;
        }
        case PVF_DT_F16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = pvf_f16_to_f32(h);
            break;
        }
        case PVF_DT_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = pvf_bf16_to_f32(h);
            break;
        }
        default:
            return -1;
        }
    }
    return 0;
}
