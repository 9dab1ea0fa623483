/* tensor.h - plain tensor views and dtypes.
 *
 * A pvf_tensor is a view: it never owns its bytes (they belong to a mapped
 * safetensors file or to the struct that allocated them). */
#ifndef PVF_TENSOR_H
#define PVF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define PVF_MAX_DIMS 8

typedef enum pvf_dtype {
    PVF_DT_F32,
    PVF_DT_F16,
    PVF_DT_BF16,
    PVF_DT_F64,
    PVF_DT_I64,
    PVF_DT_I32,
    PVF_DT_I16,
    PVF_DT_I8,
    PVF_DT_U8,
    PVF_DT_U16,
    PVF_DT_U32,
    PVF_DT_U64,
    PVF_DT_BOOL,
    PVF_DT_COUNT
} pvf_dtype;

typedef struct pvf_tensor {
    pvf_dtype dtype;
    int ndim;
    int64_t shape[PVF_MAX_DIMS];
    const void *data; /* little-endian elements, row-major, not owned */
    size_t nbytes;
} pvf_tensor;

/* Safetensors spelling ("F32", "BF16", ...). */
const char *pvf_dtype_name(pvf_dtype dt);
/* Returns 0 and sets *out for a known safetensors dtype name, -1 otherwise. */
int pvf_dtype_parse(const char *name, pvf_dtype *out);
size_t pvf_dtype_size(pvf_dtype dt);

/* Product of the shape (1 for a scalar). */
int64_t pvf_tensor_numel(const pvf_tensor *t);

/* Writes "[2, 3, 4]" into buf. */
void pvf_shape_format(const int64_t *shape, int ndim, char *buf, size_t n);

/* Element i as a double / int64, whatever the dtype (float types are
 * converted, integer types widened). i must be < numel. */
double pvf_tensor_get_f64(const pvf_tensor *t, int64_t i);
int64_t pvf_tensor_get_i64(const pvf_tensor *t, int64_t i);
/* All n elements of an F32, F16 or BF16 tensor as fp32; -1 for other dtypes. */
int pvf_tensor_to_f32(const pvf_tensor *t, float *out, int64_t n);

#endif
