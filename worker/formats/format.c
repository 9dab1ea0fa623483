/* format.c - storage formats of weights: scalar conversions and qtensors.
 *
 * All conversions are done on bit patterns (no compiler _Float16), so the
 * results are the same on every target and match tools/ (numpy) exactly.
 *
 * Non-finite weights (a decision the header leaves open):
 *   - The max|.| of a row or group ignores NaNs, so one NaN does not poison
 *     the scale of its neighbours. A row or group that is all zeros and NaNs
 *     gets scale 1 like an all-zero one.
 *   - A NaN weight encodes as code 0 in int8/int4 and as the NaN code
 *     (S.1111.111, sign kept) in fp8-e4m3. fp16/bf16 keep NaNs quiet with
 *     their sign and top payload bits (fp16: S | 0x7E00 | mantissa >> 13,
 *     as x86 F16C does; bf16: upper half | 0x0040); fp32 keeps the bits.
 *   - Infinities are not ignored: a row or group holding +-inf gets scale
 *     inf, so its finite weights quantise to 0 (+-0 in fp8) and the inf ones
 *     to NaN quotients (code 0 for int, NaN code for fp8, whose sign is the
 *     hardware's default NaN sign); such a group decodes to NaN, as IEEE
 *     arithmetic says (0 * inf).
 *   - A quotient w / s that is +-inf (s underflowed to 0 for a tiny nonzero
 *     max) saturates to the largest code. */
#include "format.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const format_names[PVF_FMT_END] = {
    [PVF_FMT_FP32] = "fp32",
    [PVF_FMT_FP16] = "fp16",
    [PVF_FMT_BF16] = "bf16",
    [PVF_FMT_FP8_E4M3] = "fp8-e4m3",
    [PVF_FMT_INT8] = "int8",
    [PVF_FMT_INT4] = "int4",
    [PVF_FMT_LLAMA4_FP8] = "llama4-fp8",
    [PVF_FMT_LLAMA4_INT4] = "llama4-int4",
};

const char *pvf_format_name(pvf_format f) {
    if ((int)f < 0 || f >= PVF_FMT_END || !format_names[f])
        return "unknown";
    return format_names[f];
}

int pvf_format_is_packaging(pvf_format f) {
    return f > PVF_FMT_COUNT && f < PVF_FMT_END;
}

int pvf_format_parse(const char *s, pvf_format *out) {
    if (!s || !out)
        return -1;
    for (int f = 0; f < PVF_FMT_END; f++) {
        if (format_names[f] && strcmp(s, format_names[f]) == 0) {
            *out = (pvf_format)f;
            return 0;
        }
    }
    if (strcmp(s, "fp8") == 0) {
        *out = PVF_FMT_FP8_E4M3;
        return 0;
    }
    return -1;
}

int pvf_format_bits(pvf_format f) {
    switch (f) {
    case PVF_FMT_FP32:
        return 32;
    case PVF_FMT_FP16:
    case PVF_FMT_BF16:
        return 16;
    case PVF_FMT_FP8_E4M3:
    case PVF_FMT_INT8:
        return 8;
    case PVF_FMT_INT4:
        return 4;
    default:
        return 0;
    }
}

int pvf_format_has_scales(pvf_format f) {
    return f == PVF_FMT_FP8_E4M3 || f == PVF_FMT_INT8 || f == PVF_FMT_INT4;
}

/* ---- scalar conversions ------------------------------------------------- */

uint32_t pvf_f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

float pvf_bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Rounds v >> shift to nearest, ties to even (1 <= shift <= 31). */
static uint32_t shift_rne(uint32_t v, unsigned shift) {
    uint32_t q = v >> shift;
    uint32_t rem = v & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return q;
}

uint16_t pvf_f32_to_f16(float x) {
    uint32_t u = pvf_f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xFFu;
    uint32_t man = u & 0x7FFFFFu;

    if (exp == 0xFFu) {
        if (man) /* NaN: quiet, sign and top payload bits kept */
            return (uint16_t)(sign | 0x7C00u | 0x0200u | (man >> 13));
        return (uint16_t)(sign | 0x7C00u);
    }
    int32_t e = (int32_t)exp - 127 + 15; /* biased fp16 exponent */
    if (e >= 31)
        return (uint16_t)(sign | 0x7C00u);
    if (e <= 0) {
        /* fp16 subnormal (or zero): units of 2^-24. The value is
         * 1.man * 2^(e-15) = (man | 2^23) * 2^(e-38), i.e. (man | 2^23) >> (14 - e)
         * units. Below 2^-25 (e < -10) everything rounds to zero; this also
         * covers fp32 zeros and subnormals. */
        if (e < -10)
            return sign;
        return (uint16_t)(sign | shift_rne(man | 0x800000u, (unsigned)(14 - e)));
    }
    /* Normal: a carry out of the mantissa moves to the next exponent, up to
     * 0x7C00 (inf), which is the right result. */
    uint32_t q = shift_rne(((uint32_t)e << 23) | man, 13);
    return (uint16_t)(sign | q);
}

float pvf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;

    if (exp == 0x1Fu) /* inf or NaN, payload kept exactly */
        return pvf_bits_f32(sign | 0x7F800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return pvf_bits_f32(sign);
        /* Subnormal: normalise so the leading 1 is at bit 10. */
        uint32_t e = 127 - 15 + 1;
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        return pvf_bits_f32(sign | (e << 23) | ((man & 0x3FFu) << 13));
    }
    return pvf_bits_f32(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

uint16_t pvf_f32_to_bf16(float x) {
    uint32_t u = pvf_f32_bits(x);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu))
        return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

float pvf_bf16_to_f32(uint16_t h) {
    return pvf_bits_f32((uint32_t)h << 16);
}

#define E4M3_MAX     448.0f
#define E4M3_MAX_MAG 0x7Eu
#define E4M3_NAN     0x7Fu

uint8_t pvf_f32_to_e4m3(float x) {
    uint8_t sign = (uint8_t)((pvf_f32_bits(x) >> 24) & 0x80u);
    float a = fabsf(x);

    if (isnan(x))
        return (uint8_t)(sign | E4M3_NAN);
    if (a >= E4M3_MAX) /* saturate, infinities included */
        return (uint8_t)(sign | E4M3_MAX_MAG);
    if (a < 0x1p-6f) {
        /* Subnormal range: units of 2^-9 (the product is exact). m == 8 is
         * 2^-6, the smallest normal, whose code is also 8. */
        unsigned m = (unsigned)rintf(a * 0x1p9f);
        return (uint8_t)(sign | m);
    }
    int e;
    (void)frexpf(a, &e);
    e -= 1; /* a = 1.f * 2^e */
    /* ldexpf and the subtraction are exact; rintf rounds half to even. */
    unsigned q = (unsigned)rintf((ldexpf(a, -e) - 1.0f) * 8.0f);
    if (q == 8) {
        e++;
        q = 0;
    }
    unsigned mag = ((unsigned)(e + 7) << 3) | q;
    if (mag > E4M3_MAX_MAG)
        mag = E4M3_MAX_MAG;
    return (uint8_t)(sign | mag);
}

float pvf_e4m3_to_f32(uint8_t c) {
    unsigned exp = (c >> 3) & 0xFu;
    unsigned man = c & 0x7u;
    float v;

    if ((c & 0x7Fu) == E4M3_NAN)
        return pvf_bits_f32(((uint32_t)(c & 0x80u) << 24) | 0x7FC00000u);
    if (exp == 0)
        v = ldexpf((float)man, -9);
    else
        v = ldexpf((float)(8u + man), (int)exp - 7 - 3);
    return (c & 0x80u) ? -v : v;
}

/* ---- qtensor ------------------------------------------------------------ */

/* The code bytes of numel elements, or 0 for an unknown format. */
static size_t codes_bytes(pvf_format fmt, int64_t numel) {
    switch (fmt) {
    case PVF_FMT_FP32:
        return (size_t)numel * 4u;
    case PVF_FMT_FP16:
    case PVF_FMT_BF16:
        return (size_t)numel * 2u;
    case PVF_FMT_FP8_E4M3:
    case PVF_FMT_INT8:
        return (size_t)numel;
    case PVF_FMT_INT4:
        return (size_t)(numel / 2 + (numel & 1));
    default:
        return 0;
    }
}

/* max|w[i]| over n elements, NaNs ignored; the scale of the span. */
static float span_scale(const float *w, int64_t n, float qmax) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(w[i]);
        if (!isnan(a) && a > m)
            m = a;
    }
    return m == 0.0f ? 1.0f : m / qmax;
}

/* rint(w / s) clamped to [-qmax, qmax]; a NaN quotient gives 0. */
static int int_code(float w, float s, float qmax) {
    float r = rintf(w / s);
    if (isnan(r))
        return 0;
    if (r > qmax)
        r = qmax;
    if (r < -qmax)
        r = -qmax;
    return (int)r;
}

static void encode_span(pvf_qtensor *q, const float *w, int64_t lo, int64_t hi, float s) {
    switch (q->fmt) {
    case PVF_FMT_FP8_E4M3: {
        uint8_t *c = q->codes;
        for (int64_t i = lo; i < hi; i++)
            c[i] = pvf_f32_to_e4m3(w[i] / s);
        break;
    }
    case PVF_FMT_INT8: {
        int8_t *c = q->codes;
        for (int64_t i = lo; i < hi; i++)
            c[i] = (int8_t)int_code(w[i], s, 127.0f);
        break;
    }
    case PVF_FMT_INT4: {
        uint8_t *c = q->codes;
        for (int64_t i = lo; i < hi; i++) {
            unsigned nib = (unsigned)int_code(w[i], s, 7.0f) & 0xFu;
            if (i & 1)
                c[i >> 1] = (uint8_t)((c[i >> 1] & 0x0Fu) | (nib << 4));
            else
                c[i >> 1] = (uint8_t)((c[i >> 1] & 0xF0u) | nib);
        }
        break;
    }
    default:
        break;
    }
}

static float scale_qmax(pvf_format fmt) {
    switch (fmt) {
    case PVF_FMT_FP8_E4M3:
        return E4M3_MAX;
    case PVF_FMT_INT8:
        return 127.0f;
    default:
        return 7.0f;
    }
}

int pvf_qtensor_encode(pvf_qtensor *q, pvf_format fmt, const float *w, int64_t rows, int64_t cols,
                       pvf_err *err) {
    if (!q)
        return pvf_err_set(err, "qtensor encode: no output tensor");
    memset(q, 0, sizeof *q);
    if ((int)fmt < 0 || fmt >= PVF_FMT_COUNT)
        return pvf_err_set(err, "qtensor encode: unknown format %d", (int)fmt);
    if (rows < 0 || cols < 0)
        return pvf_err_set(err, "qtensor encode: negative shape [%lld, %lld]", (long long)rows,
                           (long long)cols);
    /* 4 bytes per element must fit in int64_t and in size_t. */
    if ((cols != 0 && rows > INT64_MAX / 4 / cols) ||
        (uint64_t)rows * (uint64_t)cols > SIZE_MAX / 4u)
        return pvf_err_set(err, "qtensor encode: shape [%lld, %lld] is too large", (long long)rows,
                           (long long)cols);
    int64_t numel = rows * cols;
    if (numel > 0 && !w)
        return pvf_err_set(err, "qtensor encode: no weights for [%lld, %lld]", (long long)rows,
                           (long long)cols);

    pvf_qtensor t = {.fmt = fmt, .rows = rows, .cols = cols, .numel = numel};
    if (pvf_format_has_scales(fmt)) {
        t.group = fmt == PVF_FMT_INT4 ? PVF_INT4_GROUP : cols;
        /* At least one scale per row even for cols == 0, as tools/ does. */
        t.groups_per_row = cols > 0 ? (cols + t.group - 1) / t.group : 1;
        t.nscales = rows * t.groups_per_row;
    }
    /* At least one byte / scale, so that pointers are non-NULL even for an
     * empty tensor (scales stays NULL only for formats without scales). */
    size_t nbytes = codes_bytes(fmt, numel);
    t.codes = calloc(nbytes ? nbytes : 1, 1);
    if (pvf_format_has_scales(fmt))
        t.scales = calloc(t.nscales ? (size_t)t.nscales : 1, sizeof *t.scales);
    if (!t.codes || (pvf_format_has_scales(fmt) && !t.scales)) {
        pvf_qtensor_free(&t);
        return pvf_err_set(err, "qtensor encode: out of memory for %s [%lld, %lld]",
                           pvf_format_name(fmt), (long long)rows, (long long)cols);
    }

    switch (fmt) {
    case PVF_FMT_FP32:
        if (nbytes)
            memcpy(t.codes, w, nbytes);
        break;
    case PVF_FMT_FP16: {
        uint16_t *c = t.codes;
        for (int64_t i = 0; i < numel; i++)
            c[i] = pvf_f32_to_f16(w[i]);
        break;
    }
    case PVF_FMT_BF16: {
        uint16_t *c = t.codes;
        for (int64_t i = 0; i < numel; i++)
            c[i] = pvf_f32_to_bf16(w[i]);
        break;
    }
    default: {
        float qmax = scale_qmax(fmt);
        for (int64_t s = 0; s < t.nscales; s++) {
            int64_t lo, hi;
            pvf_qtensor_scale_span(&t, s, &lo, &hi);
            t.scales[s] = span_scale(w + lo, hi - lo, qmax);
            encode_span(&t, w, lo, hi, t.scales[s]);
        }
        break;
    }
    }
    *q = t;
    return 0;
}

void pvf_qtensor_free(pvf_qtensor *q) {
    if (!q)
        return;
    free(q->codes);
    free(q->scales);
    memset(q, 0, sizeof *q);
}

uint32_t pvf_qtensor_code(const pvf_qtensor *q, int64_t i) {
    switch (q->fmt) {
    case PVF_FMT_FP32:
        return ((const uint32_t *)q->codes)[i];
    case PVF_FMT_FP16:
    case PVF_FMT_BF16:
        return ((const uint16_t *)q->codes)[i];
    case PVF_FMT_FP8_E4M3:
    case PVF_FMT_INT8:
        return ((const uint8_t *)q->codes)[i];
    case PVF_FMT_INT4: {
        uint8_t b = ((const uint8_t *)q->codes)[i >> 1];
        return (i & 1) ? (uint32_t)(b >> 4) : (uint32_t)(b & 0x0Fu);
    }
    default:
        return 0;
    }
}

int64_t pvf_qtensor_scale_index(const pvf_qtensor *q, int64_t i) {
    int64_t r = i / q->cols, c = i % q->cols;
    return r * q->groups_per_row + c / q->group;
}

void pvf_qtensor_scale_span(const pvf_qtensor *q, int64_t s, int64_t *lo, int64_t *hi) {
    int64_t r = s / q->groups_per_row, g = s % q->groups_per_row;
    int64_t c0 = g * q->group;
    int64_t c1 = c0 + q->group < q->cols ? c0 + q->group : q->cols;
    *lo = r * q->cols + c0;
    *hi = r * q->cols + c1;
}

float pvf_qtensor_value(const pvf_qtensor *q, uint32_t code, float scale) {
    switch (q->fmt) {
    case PVF_FMT_FP32:
        return pvf_bits_f32(code);
    case PVF_FMT_FP16:
        return pvf_f16_to_f32((uint16_t)code);
    case PVF_FMT_BF16:
        return pvf_bf16_to_f32((uint16_t)code);
    case PVF_FMT_FP8_E4M3:
        return pvf_e4m3_to_f32((uint8_t)code) * scale;
    case PVF_FMT_INT8: {
        int v = (int)(code & 0xFFu);
        return (float)(v >= 128 ? v - 256 : v) * scale;
    }
    case PVF_FMT_INT4: {
        int v = (int)(code & 0xFu);
        return (float)(v >= 8 ? v - 16 : v) * scale;
    }
    default:
        return 0.0f;
    }
}

float pvf_qtensor_get(const pvf_qtensor *q, int64_t i) {
    float s = q->scales ? q->scales[pvf_qtensor_scale_index(q, i)] : 1.0f;
    return pvf_qtensor_value(q, pvf_qtensor_code(q, i), s);
}

void pvf_qtensor_decode(const pvf_qtensor *q, float *out) {
    if (q->fmt == PVF_FMT_FP32) {
        if (q->numel > 0)
            memcpy(out, q->codes, (size_t)q->numel * sizeof *out);
        return;
    }
    for (int64_t i = 0; i < q->numel; i++)
        out[i] = pvf_qtensor_get(q, i);
}
