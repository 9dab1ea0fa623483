/* format.h - storage formats of weights and their fp32 compute values.
 *
 * A weight tensor is viewed as [rows, cols]: rows = shape[0] (the output
 * feature / channel), cols = everything else flattened (a 1-D tensor is one
 * row). Each element has a stored code; its compute value is derived from the
 * code (and, for scaled formats, the code's scale) in fp32:
 *
 *   fp32      code = IEEE binary32 bits                     value = code
 *   fp16      code = binary16, round to nearest even        value = code
 *   bf16      code = bfloat16, round to nearest even        value = code
 *   fp8-e4m3  code = e4m3fn(w / s), one scale s per row,    value = e4m3(code) * s
 *             s = max|row| / 448, saturating, NaN = S.1111.111
 *   int8      code = rint(w / s) in [-127, 127], s per row = max|row| / 127
 *   int4      code = rint(w / s) in [-7, 7] (two's complement nibble, element
 *             2i in the low nibble of byte i), one scale per group of 128
 *             consecutive elements of a row (the last group of a row may be
 *             shorter), s = max|group| / 7
 *
 * An all-zero row or group gets scale 1. Scales are fp32 and are fault
 * targets of their own (32-bit words). Division and rounding are IEEE fp32
 * round-to-nearest-even, so tools/ (numpy) reproduces every code bit-exactly. */
#ifndef PVF_FORMAT_H
#define PVF_FORMAT_H

#include "pvf_common.h"

#include <stdint.h>

typedef enum pvf_format {
    PVF_FMT_FP32,
    PVF_FMT_FP16,
    PVF_FMT_BF16,
    PVF_FMT_FP8_E4M3,
    PVF_FMT_INT8,
    PVF_FMT_INT4,
    PVF_FMT_COUNT, /* the storage formats above */
    /* Packagings: campaign formats that choose a storage format per parameter
     * through the architecture's packaging hook (model.h), as a vendor's
     * quantized release does. Never the format of a qtensor. */
    PVF_FMT_LLAMA4_FP8 = PVF_FMT_COUNT + 1, /* Meta's Llama 4 FP8 (Maverick) */
    PVF_FMT_LLAMA4_INT4,                    /* Meta's Llama 4 int4 (Scout) */
    PVF_FMT_END
} pvf_format;

#define PVF_INT4_GROUP 128

const char *pvf_format_name(pvf_format f); /* "fp32", "fp8-e4m3", "llama4-fp8", ... */
/* Accepts the names above (and "fp8" for fp8-e4m3), packagings included. */
int pvf_format_parse(const char *s, pvf_format *out);
int pvf_format_is_packaging(pvf_format f);
int pvf_format_bits(pvf_format f); /* width of one stored code */
int pvf_format_has_scales(pvf_format f);

/* Scalar conversions, bit-exact. */
uint16_t pvf_f32_to_f16(float x);
float pvf_f16_to_f32(uint16_t h);
uint16_t pvf_f32_to_bf16(float x);
float pvf_bf16_to_f32(uint16_t h);
uint8_t pvf_f32_to_e4m3(float x); /* saturates finite values to +-448 */
float pvf_e4m3_to_f32(uint8_t c);
uint32_t pvf_f32_bits(float x);
float pvf_bits_f32(uint32_t u);

/* A tensor in a storage format: codes, scales, and how they map. */
typedef struct pvf_qtensor {
    pvf_format fmt;
    int64_t rows, cols, numel;
    void *codes;   /* owned; packed for int4 */
    float *scales; /* owned; NULL when the format has none */
    int64_t nscales;
    int64_t group; /* elements of a row per scale (cols, or 128 for int4) */
    int64_t groups_per_row;
} pvf_qtensor;

/* Encodes rows x cols fp32 weights. */
int pvf_qtensor_encode(pvf_qtensor *q, pvf_format fmt, const float *w, int64_t rows, int64_t cols,
                       pvf_err *err);
void pvf_qtensor_free(pvf_qtensor *q);

/* Stored code of element i (zero-extended to 32 bits; int4 and int8 codes
 * as their unsigned 4- or 8-bit pattern). */
uint32_t pvf_qtensor_code(const pvf_qtensor *q, int64_t i);
/* Index of the scale element i is multiplied by (undefined without scales). */
int64_t pvf_qtensor_scale_index(const pvf_qtensor *q, int64_t i);
/* Elements [*lo, *hi) scaled by scale s. */
void pvf_qtensor_scale_span(const pvf_qtensor *q, int64_t s, int64_t *lo, int64_t *hi);
/* Compute value of a code (bit pattern as from pvf_qtensor_code) under a
 * scale (ignored for unscaled formats). */
float pvf_qtensor_value(const pvf_qtensor *q, uint32_t code, float scale);
/* Compute value of element i as stored. */
float pvf_qtensor_get(const pvf_qtensor *q, int64_t i);
/* All compute values into out[numel]. */
void pvf_qtensor_decode(const pvf_qtensor *q, float *out);

#endif
