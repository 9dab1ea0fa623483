/* test_formats.c - storage formats: scalar conversions (known vectors, all
 * codes, every rounding midpoint), qtensor encode/decode/layout, and a
 * bit-exact cross-check against the numpy reference in
 * tests/fixtures/formats.safetensors (made by tools/make_fixtures.py). */
#include "test.h"

#include "format.h"
#include "safetensors.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE PVF_SOURCE_DIR "/tests/fixtures/formats.safetensors"

static float fb(uint32_t u) {
    return pvf_bits_f32(u);
}

static uint32_t bf(float x) {
    return pvf_f32_bits(x);
}

/* Reports the first few mismatches of a bulk comparison. */
static int bad_(int *nbad, const char *what, uint64_t in, uint64_t got, uint64_t want) {
    if (got == want)
        return 0;
    if ((*nbad)++ < 5)
        fprintf(stderr, "  %s(0x%" PRIx64 ") = 0x%" PRIx64 ", want 0x%" PRIx64 "\n", what, in, got,
                want);
    return 1;
}

/* ---- names -------------------------------------------------------------- */

static void test_format_names(void) {
    static const struct {
        const char *name;
        pvf_format f;
        int bits, scaled;
    } t[] = {
        {"fp32", PVF_FMT_FP32, 32, 0}, {"fp16", PVF_FMT_FP16, 16, 0},
        {"bf16", PVF_FMT_BF16, 16, 0}, {"fp8-e4m3", PVF_FMT_FP8_E4M3, 8, 1},
        {"int8", PVF_FMT_INT8, 8, 1},  {"int4", PVF_FMT_INT4, 4, 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        pvf_format f = PVF_FMT_COUNT;
        CHECK(pvf_format_parse(t[i].name, &f) == 0);
        CHECK(f == t[i].f);
        CHECK(strcmp(pvf_format_name(t[i].f), t[i].name) == 0);
        CHECK(pvf_format_bits(t[i].f) == t[i].bits);
        CHECK(pvf_format_has_scales(t[i].f) == t[i].scaled);
    }
    pvf_format f = PVF_FMT_COUNT;
    CHECK(pvf_format_parse("fp8", &f) == 0);
    CHECK(f == PVF_FMT_FP8_E4M3);
    f = PVF_FMT_INT4;
    CHECK(pvf_format_parse("FP32", &f) == -1);
    CHECK(pvf_format_parse("", &f) == -1);
    CHECK(pvf_format_parse("int2", &f) == -1);
    CHECK(pvf_format_parse("fp8-e5m2", &f) == -1);
    CHECK(pvf_format_parse("fp16 ", &f) == -1);
    CHECK(pvf_format_parse(NULL, &f) == -1);
    CHECK(f == PVF_FMT_INT4); /* untouched on failure */
}

/* ---- fp16 --------------------------------------------------------------- */

/* clang-format off */
static const struct {
    uint32_t f32;
    uint16_t f16;
} f16_enc[] = {
    {0x00000000, 0x0000}, /* +0 */
    {0x80000000, 0x8000}, /* -0 */
    {0x7F800000, 0x7C00}, /* +inf */
    {0xFF800000, 0xFC00}, /* -inf */
    {0x7FC00000, 0x7E00}, /* canonical NaN */
    {0xFFC00000, 0xFE00}, /* -NaN */
    {0x7F800001, 0x7E00}, /* signalling NaN, low payload: made quiet */
    {0x7FA00000, 0x7F00}, /* sNaN with top payload bits kept, quiet */
    {0x7FFFFFFF, 0x7FFF}, /* payload >> 13 */
    {0xFF802000, 0xFE01}, /* -sNaN, payload 1 */
    {0x3F800000, 0x3C00}, /* 1.0 */
    {0xBFC00000, 0xBE00}, /* -1.5 */
    {0x40000000, 0x4000}, /* 2.0 */
    {0x477FE000, 0x7BFF}, /* 65504, max normal */
    {0x477FEF00, 0x7BFF}, /* 65519 */
    {0x477FEFFF, 0x7BFF}, /* just below 65520 */
    {0x477FF000, 0x7C00}, /* 65520: tie, rounds to even = inf */
    {0xC77FF000, 0xFC00}, /* -65520 */
    {0x47800000, 0x7C00}, /* 65536 */
    {0x501502F9, 0x7C00}, /* 1e10 */
    {0x7F7FFFFF, 0x7C00}, /* FLT_MAX */
    {0x38800000, 0x0400}, /* 2^-14, min normal */
    {0x387FC000, 0x03FF}, /* max subnormal 1023 * 2^-24 */
    {0x387FE000, 0x0400}, /* 1023.5 units: tie to even rounds up to min normal */
    {0x387FA000, 0x03FE}, /* 1022.5 units: tie to even rounds down */
    {0x387FA001, 0x03FF}, /* just above 1022.5 */
    {0x33800000, 0x0001}, /* 2^-24, min subnormal */
    {0xB3800000, 0x8001}, /* -2^-24 */
    {0x33000000, 0x0000}, /* 2^-25: tie to even = 0 */
    {0xB3000000, 0x8000}, /* -2^-25 -> -0 */
    {0x33000001, 0x0001}, /* just above 2^-25 */
    {0x32FFFFFF, 0x0000}, /* just below 2^-25 */
    {0x33C00000, 0x0002}, /* 1.5 units: tie to even up */
    {0x34200000, 0x0002}, /* 2.5 units: tie to even down */
    {0x00000001, 0x0000}, /* fp32 subnormal */
    {0x80000001, 0x8000},
    {0x3F801000, 0x3C00}, /* 1 + 2^-11: tie to even down */
    {0x3F803000, 0x3C02}, /* 1 + 3 * 2^-11: tie to even up */
    {0x3F801001, 0x3C01}, /* just above the tie */
    {0x3F802FFF, 0x3C01}, /* just below the tie */
    {0x3FFFF000, 0x4000}, /* tie below 2.0: carry into the exponent */
    {0x3FFFEFFF, 0x3FFF},
    {0x3DCCCCCD, 0x2E66}, /* 0.1f */
};
/* clang-format on */

static void test_f16_encode_vectors(void) {
    for (size_t i = 0; i < sizeof f16_enc / sizeof f16_enc[0]; i++) {
        uint16_t got = pvf_f32_to_f16(fb(f16_enc[i].f32));
        if (got != f16_enc[i].f16)
            fprintf(stderr, "  f32_to_f16(0x%08" PRIX32 ")\n", f16_enc[i].f32);
        CHECK_EQ_U64(got, f16_enc[i].f16);
    }
}

static void test_f16_decode_vectors(void) {
    static const struct {
        uint16_t f16;
        uint32_t f32;
    } t[] = {
        {0x0000, 0x00000000}, {0x8000, 0x80000000}, {0x0001, 0x33800000}, {0x8001, 0xB3800000},
        {0x0002, 0x34000000}, {0x0003, 0x34400000}, {0x0200, 0x38000000}, {0x03FF, 0x387FC000},
        {0x0400, 0x38800000}, {0x3C00, 0x3F800000}, {0x3C01, 0x3F802000}, {0xC000, 0xC0000000},
        {0x7BFF, 0x477FE000}, {0xFBFF, 0xC77FE000}, {0x7C00, 0x7F800000}, {0xFC00, 0xFF800000},
        {0x7E00, 0x7FC00000}, {0xFE00, 0xFFC00000}, {0x7C01, 0x7F802000}, {0x7FFF, 0x7FFFE000},
        {0x2E66, 0x3DCCC000},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint32_t got = bf(pvf_f16_to_f32(t[i].f16));
        if (got != t[i].f32)
            fprintf(stderr, "  f16_to_f32(0x%04X)\n", (unsigned)t[i].f16);
        CHECK_EQ_U64(got, t[i].f32);
    }
}

/* Every fp16 code decodes exactly and encodes back (NaNs come back quiet). */
static void test_f16_all_codes(void) {
    int nbad = 0;
    for (uint32_t h = 0; h <= 0xFFFF; h++) {
        float x = pvf_f16_to_f32((uint16_t)h);
        int is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x03FF);
        uint16_t want = (uint16_t)(is_nan ? h | 0x0200 : h);
        bad_(&nbad, "f32_to_f16(f16_to_f32)", h, pvf_f32_to_f16(x), want);
        /* The decoded value is exact: compare with a double computation. */
        if ((h & 0x7C00) != 0x7C00) {
            int e = (h >> 10) & 0x1F;
            double m = (double)(h & 0x3FF);
            double v = e ? ldexp(1024.0 + m, e - 25) : ldexp(m, -24);
            if (h & 0x8000)
                v = -v;
            bad_(&nbad, "f16_to_f32 value", h, bf(x), bf((float)v));
        }
    }
    CHECK(nbad == 0);
}

/* Halfway between every two adjacent finite fp16 values (and just off it),
 * both signs, including the subnormal range and 65504 -> 65536 (inf). */
static void test_f16_midpoints(void) {
    int nbad = 0;
    for (uint32_t h = 0; h < 0x7C00; h++) {
        double a = pvf_f16_to_f32((uint16_t)h);
        double b = h + 1 < 0x7C00 ? (double)pvf_f16_to_f32((uint16_t)(h + 1)) : 65536.0;
        double m = (a + b) / 2;
        float mf = (float)m;
        if ((double)mf != m) {
            bad_(&nbad, "midpoint not exact", h, 0, 1);
            continue;
        }
        uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
        float below = nextafterf(mf, 0.0f), above = nextafterf(mf, INFINITY);
        for (int neg = 0; neg <= 1; neg++) {
            uint16_t s = neg ? 0x8000 : 0;
            float sg = neg ? -1.0f : 1.0f;
            bad_(&nbad, "f32_to_f16(mid)", h | s, pvf_f32_to_f16(sg * mf), even | s);
            bad_(&nbad, "f32_to_f16(below)", h | s, pvf_f32_to_f16(sg * below), h | s);
            bad_(&nbad, "f32_to_f16(above)", h | s, pvf_f32_to_f16(sg * above), (h + 1) | s);
        }
    }
    CHECK(nbad == 0);
}

/* ---- bf16 --------------------------------------------------------------- */

static void test_bf16_vectors(void) {
    /* clang-format off */
    static const struct {
        uint32_t f32;
        uint16_t bf16;
    } t[] = {
        {0x00000000, 0x0000}, {0x80000000, 0x8000}, {0x3F800000, 0x3F80},
        {0x3F808000, 0x3F80}, /* tie, even stays */
        {0x3F818000, 0x3F82}, /* tie, odd rounds up */
        {0x3F808001, 0x3F81}, /* above the tie */
        {0x3F807FFF, 0x3F80}, /* below the tie */
        {0x3F80FFFF, 0x3F81}, {0xBF818000, 0xBF82}, {0x3FFF8000, 0x4000}, /* carry */
        {0x7F7F7FFF, 0x7F7F}, {0x7F7F8000, 0x7F80}, /* tie above the max: inf */
        {0x7F7FFFFF, 0x7F80}, /* FLT_MAX -> inf */
        {0xFF7FFFFF, 0xFF80}, {0x7F800000, 0x7F80}, {0xFF800000, 0xFF80},
        {0x7FC00000, 0x7FC0}, {0xFFC00000, 0xFFC0}, {0x7F800001, 0x7FC0}, /* sNaN quiet */
        {0xFF800001, 0xFFC0}, {0x7FFFFFFF, 0x7FFF}, {0x7F810000, 0x7FC1},
        {0x00008000, 0x0000}, /* subnormal tie */
        {0x00018000, 0x0002}, {0x00000001, 0x0000}, {0x00008001, 0x0001},
        {0x3DCCCCCD, 0x3DCD}, /* 0.1f */
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint16_t got = pvf_f32_to_bf16(fb(t[i].f32));
        if (got != t[i].bf16)
            fprintf(stderr, "  f32_to_bf16(0x%08" PRIX32 ")\n", t[i].f32);
        CHECK_EQ_U64(got, t[i].bf16);
    }
    CHECK_EQ_U64(bf(pvf_bf16_to_f32(0x3F80)), 0x3F800000);
    CHECK_EQ_U64(bf(pvf_bf16_to_f32(0xFF80)), 0xFF800000);
    CHECK_EQ_U64(bf(pvf_bf16_to_f32(0x7FC1)), 0x7FC10000);
    CHECK_EQ_U64(bf(pvf_bf16_to_f32(0x0001)), 0x00010000);
    CHECK_EQ_U64(bf(pvf_bf16_to_f32(0x8000)), 0x80000000);
}

static void test_bf16_all_codes(void) {
    int nbad = 0;
    for (uint32_t h = 0; h <= 0xFFFF; h++) {
        uint32_t u = h << 16;
        int is_nan = (u & 0x7F800000) == 0x7F800000 && (u & 0x007FFFFF);
        bad_(&nbad, "bf16_to_f32", h, bf(pvf_bf16_to_f32((uint16_t)h)), u);
        bad_(&nbad, "f32_to_bf16(bf16_to_f32)", h, pvf_f32_to_bf16(pvf_bf16_to_f32((uint16_t)h)),
             is_nan ? h | 0x40 : h);
        /* Midpoints to the next code (finite codes; FLT_MAX side -> inf). */
        if ((u & 0x7F800000) != 0x7F800000) {
            uint32_t even = (h & 1) ? h + 1 : h;
            bad_(&nbad, "f32_to_bf16(mid)", h, pvf_f32_to_bf16(fb(u | 0x8000)), even);
            bad_(&nbad, "f32_to_bf16(below)", h, pvf_f32_to_bf16(fb(u | 0x7FFF)), h);
            bad_(&nbad, "f32_to_bf16(above)", h, pvf_f32_to_bf16(fb(u | 0x8001)), h + 1);
        }
    }
    CHECK(nbad == 0);
}

/* ---- fp8 e4m3fn --------------------------------------------------------- */

static void test_e4m3_encode_vectors(void) {
    /* clang-format off */
    static const struct {
        uint32_t f32;
        uint8_t code;
    } t[] = {
        {0x43E00000, 0x7E}, /* 448, max finite */
        {0xC3E00000, 0xFE}, /* -448 */
        {0x43E80000, 0x7E}, /* 464 saturates */
        {0x4E6E6B28, 0x7E}, /* 1e9 */
        {0xCE6E6B28, 0xFE}, /* -1e9 */
        {0x7F7FFFFF, 0x7E}, /* FLT_MAX */
        {0x7F800000, 0x7E}, /* inf saturates */
        {0xFF800000, 0xFE}, /* -inf */
        {0x7FC00000, 0x7F}, /* NaN */
        {0xFFC00000, 0xFF}, /* -NaN */
        {0x7F800001, 0x7F}, /* sNaN */
        {0x00000000, 0x00}, /* +0 */
        {0x80000000, 0x80}, /* -0 */
        {0x00000001, 0x00}, /* fp32 subnormal */
        {0x80000001, 0x80},
        {0x3B000000, 0x01}, /* 2^-9, min subnormal */
        {0x3A800000, 0x00}, /* 2^-10: tie to even = 0 */
        {0x3A800001, 0x01}, /* just above 2^-10 */
        {0x3B400000, 0x02}, /* 3 * 2^-10: tie to even up */
        {0x3BA00000, 0x02}, /* 5 * 2^-10: tie to even down */
        {0x3C600000, 0x07}, /* 7 * 2^-9, max subnormal */
        {0x3C700000, 0x08}, /* 7.5 * 2^-9: tie rounds up into 2^-6 */
        {0x3C800000, 0x08}, /* 2^-6, min normal */
        {0x3F800000, 0x38}, /* 1.0 */
        {0x3F880000, 0x38}, /* 1.0625: tie to even down */
        {0x3F980000, 0x3A}, /* 1.1875: tie to even up */
        {0x3F900000, 0x39}, /* 1.125 */
        {0x3FE80000, 0x3E}, /* 1.8125: tie to even down */
        {0x3FF80000, 0x40}, /* 1.9375: tie rounds up, carry into the exponent */
        {0xC0000000, 0xC0}, /* -2.0 */
        {0x43700000, 0x77}, /* 240 */
        {0x43800000, 0x78}, /* 256 */
        {0x43D00000, 0x7D}, /* 416 */
        {0x43D40000, 0x7D}, /* 424 */
        {0x43D80000, 0x7E}, /* 432: tie to even up */
        {0x43DFF333, 0x7E}, /* 447.9 */
        {0x3DCCCCCD, 0x1D}, /* 0.1f -> 0.1015625 */
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint8_t got = pvf_f32_to_e4m3(fb(t[i].f32));
        if (got != t[i].code)
            fprintf(stderr, "  f32_to_e4m3(0x%08" PRIX32 ")\n", t[i].f32);
        CHECK_EQ_U64(got, t[i].code);
    }
}

static void test_e4m3_decode_vectors(void) {
    static const struct {
        uint8_t code;
        uint32_t f32;
    } t[] = {
        {0x00, 0x00000000}, {0x80, 0x80000000}, {0x01, 0x3B000000}, {0x81, 0xBB000000},
        {0x07, 0x3C600000}, {0x08, 0x3C800000}, {0x38, 0x3F800000}, {0x3A, 0x3FA00000},
        {0x40, 0x40000000}, {0xC0, 0xC0000000}, {0x77, 0x43700000}, {0x78, 0x43800000},
        {0x7E, 0x43E00000}, {0xFE, 0xC3E00000}, {0x7F, 0x7FC00000}, {0xFF, 0xFFC00000},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint32_t got = bf(pvf_e4m3_to_f32(t[i].code));
        if (got != t[i].f32)
            fprintf(stderr, "  e4m3_to_f32(0x%02X)\n", (unsigned)t[i].code);
        CHECK_EQ_U64(got, t[i].f32);
    }
}

/* All 256 codes: exact values, encode(decode(c)) == c (NaNs keep their
 * sign), monotone, symmetric; and every midpoint rounds to the even code. */
static void test_e4m3_all_codes(void) {
    int nbad = 0;
    for (unsigned c = 0; c < 256; c++) {
        float x = pvf_e4m3_to_f32((uint8_t)c);
        bad_(&nbad, "f32_to_e4m3(e4m3_to_f32)", c, pvf_f32_to_e4m3(x), c);
        unsigned mag = c & 0x7F, e = mag >> 3, m = mag & 7;
        if (mag == 0x7F) {
            bad_(&nbad, "e4m3 NaN", c, isnan(x) && (signbit(x) != 0) == (c >= 0x80), 1);
            continue;
        }
        double v = e ? ldexp(8.0 + m, (int)e - 10) : ldexp((double)m, -9);
        bad_(&nbad, "e4m3_to_f32 value", c, bf(x), bf((float)(c & 0x80 ? -v : v)));
    }
    for (unsigned c = 0; c < 0x7E; c++) {
        float a = pvf_e4m3_to_f32((uint8_t)c), b = pvf_e4m3_to_f32((uint8_t)(c + 1));
        bad_(&nbad, "e4m3 monotone", c, a < b, 1);
        float mid = (a + b) / 2; /* exact: 5 significant bits at most */
        bad_(&nbad, "e4m3 midpoint exact", c, (double)mid == ((double)a + b) / 2, 1);
        unsigned even = (c & 1) ? c + 1 : c;
        float below = nextafterf(mid, 0.0f), above = nextafterf(mid, INFINITY);
        bad_(&nbad, "f32_to_e4m3(mid)", c, pvf_f32_to_e4m3(mid), even);
        bad_(&nbad, "f32_to_e4m3(-mid)", c, pvf_f32_to_e4m3(-mid), even | 0x80);
        bad_(&nbad, "f32_to_e4m3(below)", c, pvf_f32_to_e4m3(below), c);
        bad_(&nbad, "f32_to_e4m3(above)", c, pvf_f32_to_e4m3(above), c + 1);
        bad_(&nbad, "f32_to_e4m3(-above)", c, pvf_f32_to_e4m3(-above), (c + 1) | 0x80);
    }
    /* Between 448 and the next would-be value 480 everything saturates. */
    for (float x = 448.0f; x <= 480.0f; x += 0.25f) {
        bad_(&nbad, "f32_to_e4m3(sat)", bf(x), pvf_f32_to_e4m3(x), 0x7E);
        bad_(&nbad, "f32_to_e4m3(-sat)", bf(x), pvf_f32_to_e4m3(-x), 0xFE);
    }
    CHECK(nbad == 0);
}

/* ---- qtensor ------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static float rnd_unit(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 40) / (double)(1u << 23)) - 1.0f;
}

/* 3 x 5 int4 tensor with hand-computed codes, scales, nibbles and values. */
static void test_int4_packing(void) {
    const float w[15] = {
        7.0f,   -7.0f, 0.0f, 3.0f, -3.0f, /* max 7: s = 1 */
        0.0f,   -0.0f, 0.0f, 0.0f, 0.0f,  /* all zero: s = 1 */
        -14.0f, 1.0f,  3.0f, 5.0f, 14.0f, /* max 14: s = 2; 0.5, 1.5, 2.5 tie to even */
    };
    static const uint8_t codes[15] = {0x7, 0x9, 0x0, 0x3, 0xD, 0x0, 0x0, 0x0,
                                      0x0, 0x0, 0x9, 0x0, 0x2, 0x2, 0x7};
    static const uint8_t packed[8] = {0x97, 0x30, 0x0D, 0x00, 0x00, 0x09, 0x22, 0x07};
    static const float values[15] = {7, -7, 0, 3, -3, 0, 0, 0, 0, 0, -14, 0, 4, 4, 14};
    pvf_qtensor q;
    pvf_err err = {{0}};
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_INT4, w, 3, 5, &err) == 0);
    if (!q.codes)
        return;
    CHECK(q.rows == 3 && q.cols == 5 && q.numel == 15);
    CHECK(q.nscales == 3 && q.group == PVF_INT4_GROUP && q.groups_per_row == 1);
    CHECK_EQ_U64(bf(q.scales[0]), 0x3F800000);
    CHECK_EQ_U64(bf(q.scales[1]), 0x3F800000);
    CHECK_EQ_U64(bf(q.scales[2]), 0x40000000);
    const uint8_t *p = q.codes;
    for (int i = 0; i < 8; i++)
        CHECK_EQ_U64(p[i], packed[i]);
    for (int i = 0; i < 15; i++) {
        CHECK_EQ_U64(pvf_qtensor_code(&q, i), codes[i]);
        CHECK_EQ_U64(bf(pvf_qtensor_get(&q, i)), bf(values[i]));
        CHECK_EQ_U64(pvf_qtensor_scale_index(&q, i), i / 5);
    }
    /* Every nibble pattern decodes as two's complement, -8 included. */
    for (uint32_t c = 0; c < 16; c++)
        CHECK_EQ_U64(bf(pvf_qtensor_value(&q, c, 0.5f)),
                     bf((float)(c < 8 ? (int)c : (int)c - 16) * 0.5f));
    pvf_qtensor_free(&q);
    CHECK(q.codes == NULL && q.scales == NULL);
}

static void test_int8_fp8_known(void) {
    const float w8[5] = {127.0f, -63.5f, 0.5f, 1.5f, -127.0f}; /* s = 1 */
    static const uint8_t c8[5] = {0x7F, 0xC0, 0x00, 0x02, 0x81};
    pvf_qtensor q;
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_INT8, w8, 1, 5, NULL) == 0);
    if (q.codes) {
        CHECK(q.nscales == 1 && q.group == 5 && q.groups_per_row == 1);
        CHECK_EQ_U64(bf(q.scales[0]), 0x3F800000);
        for (int i = 0; i < 5; i++) {
            CHECK_EQ_U64(pvf_qtensor_code(&q, i), c8[i]);
            CHECK_EQ_U64(((const uint8_t *)q.codes)[i], c8[i]);
        }
        CHECK_EQ_U64(bf(pvf_qtensor_get(&q, 1)), bf(-64.0f));
        CHECK_EQ_U64(bf(pvf_qtensor_value(&q, 0x80, 2.0f)), bf(-256.0f));
        CHECK_EQ_U64(bf(pvf_qtensor_value(&q, 0xFF, 2.0f)), bf(-2.0f));
        CHECK_EQ_U64(bf(pvf_qtensor_value(&q, 0x7F, 0.5f)), bf(63.5f));
    }
    pvf_qtensor_free(&q);

    const float wf[8] = {448.0f, -224.0f, 1.0f, 0.0f, -0.0f, 1.0625f, 0x1p-9f, 3.0f};
    static const uint8_t cf[4] = {0x7E, 0xF6, 0x38, 0x00}; /* row 0 has scale 1 */
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_FP8_E4M3, wf, 2, 4, NULL) == 0);
    if (q.codes) {
        CHECK(q.nscales == 2 && q.group == 4);
        CHECK_EQ_U64(bf(q.scales[0]), 0x3F800000);        /* 448 / 448 */
        CHECK_EQ_U64(bf(q.scales[1]), bf(3.0f / 448.0f)); /* row max 3 */
        for (int i = 0; i < 4; i++)
            CHECK_EQ_U64(pvf_qtensor_code(&q, i), cf[i]);
        for (int i = 4; i < 8; i++)
            CHECK_EQ_U64(pvf_qtensor_code(&q, i), pvf_f32_to_e4m3(wf[i] / q.scales[1]));
        CHECK_EQ_U64(pvf_qtensor_code(&q, 7), 0x7E);
        CHECK_EQ_U64(bf(pvf_qtensor_get(&q, 1)), bf(-224.0f));
        CHECK_EQ_U64(bf(pvf_qtensor_value(&q, 0x7E, 0.5f)), bf(224.0f));
        CHECK(isnan(pvf_qtensor_value(&q, 0x7F, 0.5f)));
    }
    pvf_qtensor_free(&q);

    /* Unscaled formats ignore the scale argument. */
    q = (pvf_qtensor){.fmt = PVF_FMT_FP16};
    CHECK_EQ_U64(bf(pvf_qtensor_value(&q, 0x3C00, 5.0f)), 0x3F800000);
    q.fmt = PVF_FMT_BF16;
    CHECK_EQ_U64(bf(pvf_qtensor_value(&q, 0xC000, 5.0f)), 0xC0000000);
    q.fmt = PVF_FMT_FP32;
    CHECK_EQ_U64(bf(pvf_qtensor_value(&q, 0x7FC00001, 5.0f)), 0x7FC00001);
}

/* max|w| over [lo, hi) ignoring NaN, / qmax; 1 when 0. */
static float ref_scale(const float *w, int64_t lo, int64_t hi, float qmax) {
    float m = 0.0f;
    for (int64_t i = lo; i < hi; i++)
        if (!isnan(w[i]) && fabsf(w[i]) > m)
            m = fabsf(w[i]);
    return m == 0.0f ? 1.0f : m / qmax;
}

static uint32_t ref_int_code(float w, float s, float qmax) {
    float r = rintf(w / s);
    if (isnan(r))
        return 0;
    r = fminf(fmaxf(r, -qmax), qmax);
    return (uint32_t)(int)r & (qmax == 7.0f ? 0xFu : 0xFFu);
}

/* Encodes w [rows, cols] in every format and checks layout, codes, scales
 * and values against the scalar functions and a reference quantiser. */
static void check_roundtrip(const float *w, int64_t rows, int64_t cols) {
    int64_t n = rows * cols;
    float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    CHECK(out != NULL);
    if (!out)
        return;
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        pvf_qtensor q;
        pvf_err err = {{0}};
        int rc = pvf_qtensor_encode(&q, (pvf_format)f, w, rows, cols, &err);
        CHECK(rc == 0);
        if (rc != 0) {
            fprintf(stderr, "  %s: %s\n", pvf_format_name((pvf_format)f), err.msg);
            continue;
        }
        int nbad = 0;
        const char *name = pvf_format_name((pvf_format)f);
        CHECK(q.fmt == (pvf_format)f && q.rows == rows && q.cols == cols && q.numel == n);
        CHECK(q.codes != NULL);
        int scaled = pvf_format_has_scales(q.fmt);
        CHECK((q.scales != NULL) == scaled);
        if (scaled) {
            int64_t group = f == PVF_FMT_INT4 ? PVF_INT4_GROUP : cols;
            int64_t gpr = (cols + group - 1) / group;
            CHECK(q.group == group && q.groups_per_row == gpr && q.nscales == rows * gpr);
            float qmax = f == PVF_FMT_FP8_E4M3 ? 448.0f : f == PVF_FMT_INT8 ? 127.0f : 7.0f;
            /* Spans tile the tensor in order, each within one row, each of
             * group elements but for the last of a row; index maps back. */
            int64_t prev = 0;
            for (int64_t s = 0; s < q.nscales; s++) {
                int64_t lo = -1, hi = -1;
                pvf_qtensor_scale_span(&q, s, &lo, &hi);
                int64_t g = s % gpr;
                int64_t want = g + 1 < gpr ? group : cols - g * group;
                bad_(&nbad, "span lo", (uint64_t)s, (uint64_t)lo, (uint64_t)prev);
                bad_(&nbad, "span len", (uint64_t)s, (uint64_t)(hi - lo), (uint64_t)want);
                bad_(&nbad, "span row", (uint64_t)s, (uint64_t)(lo / cols), (uint64_t)(s / gpr));
                prev = hi;
                for (int64_t i = lo; i < hi; i++)
                    bad_(&nbad, "scale_index", (uint64_t)i,
                         (uint64_t)pvf_qtensor_scale_index(&q, i), (uint64_t)s);
                bad_(&nbad, "scale", (uint64_t)s, bf(q.scales[s]), bf(ref_scale(w, lo, hi, qmax)));
            }
            CHECK(prev == n);
        }
        pvf_qtensor_decode(&q, out);
        for (int64_t i = 0; i < n; i++) {
            float s = scaled ? q.scales[pvf_qtensor_scale_index(&q, i)] : 1.0f;
            uint32_t c = pvf_qtensor_code(&q, i);
            float get = pvf_qtensor_get(&q, i);
            bad_(&nbad, "decode == get", (uint64_t)i, bf(out[i]), bf(get));
            bad_(&nbad, "get == value(code)", (uint64_t)i, bf(get),
                 bf(pvf_qtensor_value(&q, c, s)));
            uint32_t want = 0;
            switch (f) {
            case PVF_FMT_FP32:
                want = bf(w[i]);
                break;
            case PVF_FMT_FP16:
                want = pvf_f32_to_f16(w[i]);
                bad_(&nbad, "fp16 value", (uint64_t)i, bf(get), bf(pvf_f16_to_f32((uint16_t)c)));
                break;
            case PVF_FMT_BF16:
                want = pvf_f32_to_bf16(w[i]);
                break;
            case PVF_FMT_FP8_E4M3:
                want = pvf_f32_to_e4m3(w[i] / s);
                bad_(&nbad, "fp8 value", (uint64_t)i, bf(get), bf(pvf_e4m3_to_f32((uint8_t)c) * s));
                break;
            case PVF_FMT_INT8:
                want = ref_int_code(w[i], s, 127.0f);
                break;
            case PVF_FMT_INT4:
                want = ref_int_code(w[i], s, 7.0f);
                break;
            }
            bad_(&nbad, name, (uint64_t)i, c, want);
            /* Quantisation error within half a step (finite weights). */
            if ((f == PVF_FMT_INT8 || f == PVF_FMT_INT4) && isfinite(w[i]) &&
                fabsf(get - w[i]) > 0.5001f * s)
                bad_(&nbad, "int error bound", (uint64_t)i, bf(get), bf(w[i]));
        }
        if (nbad)
            fprintf(stderr, "  format %s: %d mismatches\n", name, nbad);
        CHECK(nbad == 0);
        pvf_qtensor_free(&q);
    }
    free(out);
}

static void test_qtensor_roundtrip(void) {
    enum { R = 6, C = 300 };
    float *w = malloc(sizeof(float) * R * C);
    CHECK(w != NULL);
    if (!w)
        return;
    static const float mag[R] = {1.0f, 0.0f, 1e-3f, 30.0f, 1e-30f, 500.0f};
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            w[r * C + c] = rnd_unit() * mag[r];
    w[3 * C + 200] = -100.0f;     /* one outlier group */
    for (int c = 256; c < C; c++) /* an all-zero short last group */
        w[5 * C + c] = 0.0f;
    check_roundtrip(w, R, C);
    check_roundtrip(w, 1, R * C); /* one long row: 15 groups, last of 8 */
    check_roundtrip(w, R * C, 1); /* column vector */
    check_roundtrip(w, 4, 128);   /* int4 groups exactly one per row */
    check_roundtrip(w, 3, 129);   /* a 1-element last group */

    /* Explicit spans and indexes for [6, 300]. */
    pvf_qtensor q;
    int64_t lo, hi;
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_INT4, w, R, C, NULL) == 0);
    if (q.codes) {
        CHECK(q.nscales == 18 && q.groups_per_row == 3 && q.group == 128);
        pvf_qtensor_scale_span(&q, 0, &lo, &hi);
        CHECK(lo == 0 && hi == 128);
        pvf_qtensor_scale_span(&q, 2, &lo, &hi);
        CHECK(lo == 256 && hi == 300);
        pvf_qtensor_scale_span(&q, 3, &lo, &hi);
        CHECK(lo == 300 && hi == 428);
        pvf_qtensor_scale_span(&q, 17, &lo, &hi);
        CHECK(lo == 1756 && hi == 1800);
        CHECK(pvf_qtensor_scale_index(&q, 127) == 0);
        CHECK(pvf_qtensor_scale_index(&q, 128) == 1);
        CHECK(pvf_qtensor_scale_index(&q, 299) == 2);
        CHECK(pvf_qtensor_scale_index(&q, 300) == 3);
        CHECK(pvf_qtensor_scale_index(&q, 555) == 4);
        CHECK(pvf_qtensor_scale_index(&q, 1799) == 17);
        CHECK_EQ_U64(bf(q.scales[3 * 3 + 1]), bf(100.0f / 7.0f)); /* the outlier group */
        CHECK_EQ_U64(bf(q.scales[5 * 3 + 2]), 0x3F800000);        /* all-zero group */
    }
    pvf_qtensor_free(&q);
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_INT8, w, R, C, NULL) == 0);
    if (q.codes) {
        CHECK(q.nscales == 6 && q.groups_per_row == 1 && q.group == 300);
        pvf_qtensor_scale_span(&q, 4, &lo, &hi);
        CHECK(lo == 1200 && hi == 1500);
        CHECK(pvf_qtensor_scale_index(&q, 299) == 0);
        CHECK(pvf_qtensor_scale_index(&q, 300) == 1);
        CHECK(pvf_qtensor_scale_index(&q, 1799) == 5);
        CHECK_EQ_U64(bf(q.scales[1]), 0x3F800000); /* all-zero row */
    }
    pvf_qtensor_free(&q);
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_FP16, w, R, C, NULL) == 0);
    CHECK(q.scales == NULL && q.nscales == 0);
    pvf_qtensor_free(&q);
    free(w);
}

/* NaN weights: ignored by max|.|, code 0 for int formats, NaN code for fp8,
 * quiet NaN for fp16/bf16, bits for fp32. A row of NaNs gets scale 1. */
static void test_qtensor_nan(void) {
    const float qnan = fb(0x7FC00000), nnan = fb(0xFFC00000);
    const float w[8] = {qnan, 2.0f, -1.0f, nnan, qnan, qnan, qnan, qnan};
    pvf_qtensor q;
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        CHECK(pvf_qtensor_encode(&q, (pvf_format)f, w, 2, 4, NULL) == 0);
        if (!q.codes)
            continue;
        if (pvf_format_has_scales(q.fmt)) {
            float qmax = f == PVF_FMT_FP8_E4M3 ? 448.0f : f == PVF_FMT_INT8 ? 127.0f : 7.0f;
            CHECK_EQ_U64(bf(q.scales[0]), bf(2.0f / qmax));
            CHECK_EQ_U64(bf(q.scales[1]), 0x3F800000);
        }
        switch (f) {
        case PVF_FMT_FP32:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0x7FC00000);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 3), 0xFFC00000);
            break;
        case PVF_FMT_FP16:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0x7E00);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 3), 0xFE00);
            break;
        case PVF_FMT_BF16:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0x7FC0);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 3), 0xFFC0);
            break;
        case PVF_FMT_FP8_E4M3:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0x7F);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 3), 0xFF);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 1), 0x7E);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 4), 0x7F);
            break;
        case PVF_FMT_INT8:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 3), 0);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 1), 0x7F);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 4), 0);
            break;
        case PVF_FMT_INT4:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 3), 0);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 1), 0x7);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 2), ref_int_code(-1.0f, q.scales[0], 7.0f));
            break;
        }
        int isint = f == PVF_FMT_INT8 || f == PVF_FMT_INT4;
        CHECK(isint ? pvf_qtensor_get(&q, 0) == 0.0f : isnan(pvf_qtensor_get(&q, 0)));
        CHECK(isnan(pvf_qtensor_get(&q, 3)) == !isint);
        pvf_qtensor_free(&q);
    }
}

/* Infinite weights: no crash; max|.| is inf, so the scale is inf and the
 * whole group decodes to NaN (0 * inf) in scaled formats. */
static void test_qtensor_inf(void) {
    const float w[4] = {INFINITY, 1.0f, -2.0f, -INFINITY};
    pvf_qtensor q;
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        CHECK(pvf_qtensor_encode(&q, (pvf_format)f, w, 1, 4, NULL) == 0);
        if (!q.codes)
            continue;
        switch (f) {
        case PVF_FMT_FP16:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0x7C00);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 3), 0xFC00);
            break;
        case PVF_FMT_BF16:
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0x7F80);
            break;
        case PVF_FMT_FP8_E4M3:
            CHECK(isinf(q.scales[0]));
            /* inf / inf is the machine's default NaN, whose sign is the
             * hardware's (negative on x86, positive on Arm). */
            CHECK_EQ_U64(pvf_qtensor_code(&q, 0) & 0x7F, 0x7F);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 1), 0x00);
            CHECK_EQ_U64(pvf_qtensor_code(&q, 2), 0x80);
            CHECK(isnan(pvf_qtensor_get(&q, 1)));
            break;
        case PVF_FMT_INT8:
        case PVF_FMT_INT4:
            CHECK(isinf(q.scales[0]));
            for (int i = 0; i < 4; i++)
                CHECK_EQ_U64(pvf_qtensor_code(&q, i), 0);
            CHECK(isnan(pvf_qtensor_get(&q, 1)));
            break;
        }
        pvf_qtensor_free(&q);
    }
    /* A tiny max whose scale underflows to 0: quotients are +-inf and
     * saturate (0 / 0 = NaN gives code 0). */
    const float t[3] = {fb(0x00000001), -fb(0x00000001), 0.0f};
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_INT8, t, 1, 3, NULL) == 0);
    if (q.codes) {
        CHECK_EQ_U64(bf(q.scales[0]), 0);
        CHECK_EQ_U64(pvf_qtensor_code(&q, 0), 0x7F);
        CHECK_EQ_U64(pvf_qtensor_code(&q, 1), 0x81);
        CHECK_EQ_U64(pvf_qtensor_code(&q, 2), 0);
    }
    pvf_qtensor_free(&q);
}

static void test_qtensor_shapes(void) {
    const float w[4] = {1, 2, 3, 4};
    pvf_qtensor q;
    pvf_err err;

    /* Empty tensors are fine, also without weights. */
    for (int f = 0; f < PVF_FMT_COUNT; f++) {
        CHECK(pvf_qtensor_encode(&q, (pvf_format)f, NULL, 0, 5, &err) == 0);
        CHECK(q.numel == 0 && q.codes != NULL && q.nscales == 0);
        pvf_qtensor_free(&q);
        CHECK(pvf_qtensor_encode(&q, (pvf_format)f, NULL, 3, 0, &err) == 0);
        CHECK(q.numel == 0 && q.codes != NULL);
        /* One (unit) scale per empty row, as tools/pvf_formats.py. */
        if (pvf_format_has_scales((pvf_format)f)) {
            CHECK(q.nscales == 3 && q.groups_per_row == 1);
            for (int64_t s = 0; s < q.nscales; s++) {
                int64_t lo = -1, hi = -1;
                pvf_qtensor_scale_span(&q, s, &lo, &hi);
                CHECK(lo == hi);
                CHECK_EQ_U64(bf(q.scales[s]), 0x3F800000);
            }
        }
        pvf_qtensor_free(&q);
    }

    static const struct {
        int fmt;
        int64_t rows, cols;
        int null_w;
    } bad[] = {
        {PVF_FMT_INT8, -1, 4, 0},
        {PVF_FMT_INT8, 4, -1, 0},
        {PVF_FMT_FP32, INT64_MIN, 1, 0},
        {PVF_FMT_FP16, INT64_MAX / 2, 3, 0},
        {PVF_FMT_INT4, INT64_MAX, INT64_MAX, 0},
        {PVF_FMT_FP32, (int64_t)1 << 31, (int64_t)1 << 31, 0},
        {PVF_FMT_INT4, 2, 2, 1},
        {PVF_FMT_COUNT, 2, 2, 0},
        {-1, 2, 2, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&q, 0xAB, sizeof q);
        err.msg[0] = '\0';
        int rc = pvf_qtensor_encode(&q, (pvf_format)bad[i].fmt, bad[i].null_w ? NULL : w,
                                    bad[i].rows, bad[i].cols, &err);
        CHECK(rc == -1);
        CHECK(err.msg[0] != '\0');
        CHECK(q.codes == NULL && q.scales == NULL); /* left empty: free is safe */
        pvf_qtensor_free(&q);
    }
    CHECK(pvf_qtensor_encode(NULL, PVF_FMT_FP32, w, 2, 2, &err) == -1);
    CHECK(pvf_qtensor_encode(&q, PVF_FMT_INT8, w, 2, 2, NULL) == 0); /* err may be NULL */
    pvf_qtensor_free(&q);
    pvf_qtensor_free(NULL);
}

/* ---- numpy fixture ------------------------------------------------------ */

static uint32_t fx_u32(const pvf_tensor *t, int64_t i) {
    uint32_t u;
    memcpy(&u, (const unsigned char *)t->data + 4 * i, sizeof u);
    return u;
}

/* Finds name and checks its dtype and element count. */
static int fx_get(const pvf_st_file *f, const char *name, pvf_dtype dt, int64_t numel,
                  pvf_tensor *t) {
    long i = pvf_st_find(f, name);
    if (i < 0) {
        fprintf(stderr, "  %s: no tensor %s\n", FIXTURE, name);
        CHECK(i >= 0);
        return -1;
    }
    pvf_st_view(f, (size_t)i, t);
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    size_t es = dt == PVF_DT_U8 ? 1 : 4;
    int ok = t->dtype == dt && n == numel && t->nbytes == (size_t)numel * es;
    if (!ok)
        fprintf(stderr, "  %s: tensor %s has the wrong dtype or size\n", FIXTURE, name);
    CHECK(ok);
    return ok ? 0 : -1;
}

static void test_fixture_numpy(void) {
    pvf_st_file f;
    pvf_err err = {{0}};
    memset(&f, 0, sizeof f);
    int rc = pvf_st_open(&f, FIXTURE, &err);
    if (rc != 0)
        fprintf(stderr, "  cannot open the fixture (run tools/make_fixtures.py): %s\n", err.msg);
    CHECK(rc == 0); /* a missing fixture is a failure, never a skip */
    if (rc != 0)
        return;

    pvf_tensor tw;
    long iw = pvf_st_find(&f, "w");
    CHECK(iw >= 0);
    if (iw < 0) {
        pvf_st_close(&f);
        return;
    }
    pvf_st_view(&f, (size_t)iw, &tw);
    CHECK(tw.dtype == PVF_DT_F32 && tw.ndim == 2 && tw.shape[0] == 6 && tw.shape[1] == 300);
    if (!(tw.dtype == PVF_DT_F32 && tw.ndim == 2 && tw.nbytes == 4u * 6u * 300u)) {
        pvf_st_close(&f);
        return;
    }
    int64_t rows = tw.shape[0], cols = tw.shape[1], n = rows * cols;
    float *w = malloc((size_t)n * sizeof *w);
    CHECK(w != NULL);
    if (!w) {
        pvf_st_close(&f);
        return;
    }
    memcpy(w, tw.data, (size_t)n * sizeof *w);

    static const struct {
        pvf_format fmt;
        const char *codes, *values, *scales, *packed;
        int64_t nscales;
    } fx[] = {
        {PVF_FMT_FP16, "fp16_codes", "fp16_values", NULL, NULL, 0},
        {PVF_FMT_BF16, "bf16_codes", "bf16_values", NULL, NULL, 0},
        {PVF_FMT_FP8_E4M3, "fp8_codes", "fp8_values", "fp8_scales", NULL, 6},
        {PVF_FMT_INT8, "int8_codes", "int8_values", "int8_scales", NULL, 6},
        {PVF_FMT_INT4, "int4_codes", "int4_values", "int4_scales", "int4_packed", 18},
    };
    for (size_t k = 0; k < sizeof fx / sizeof fx[0]; k++) {
        pvf_qtensor q;
        CHECK(pvf_qtensor_encode(&q, fx[k].fmt, w, rows, cols, &err) == 0);
        if (!q.codes)
            continue;
        int nbad = 0;
        pvf_tensor t;
        if (fx_get(&f, fx[k].codes, PVF_DT_I32, n, &t) == 0)
            for (int64_t i = 0; i < n; i++)
                bad_(&nbad, fx[k].codes, (uint64_t)i, pvf_qtensor_code(&q, i), fx_u32(&t, i));
        if (fx_get(&f, fx[k].values, PVF_DT_F32, n, &t) == 0)
            for (int64_t i = 0; i < n; i++)
                bad_(&nbad, fx[k].values, (uint64_t)i, bf(pvf_qtensor_get(&q, i)), fx_u32(&t, i));
        if (fx[k].scales) {
            CHECK(q.nscales == fx[k].nscales);
            if (fx_get(&f, fx[k].scales, PVF_DT_F32, q.nscales, &t) == 0)
                for (int64_t i = 0; i < q.nscales; i++)
                    bad_(&nbad, fx[k].scales, (uint64_t)i, bf(q.scales[i]), fx_u32(&t, i));
        }
        if (fx[k].packed) {
            int64_t nb = (n + 1) / 2;
            if (fx_get(&f, fx[k].packed, PVF_DT_U8, nb, &t) == 0)
                for (int64_t i = 0; i < nb; i++)
                    bad_(&nbad, fx[k].packed, (uint64_t)i, ((const uint8_t *)q.codes)[i],
                         ((const uint8_t *)t.data)[i]);
        }
        if (nbad)
            fprintf(stderr, "  fixture %s: %d mismatches\n", pvf_format_name(fx[k].fmt), nbad);
        CHECK(nbad == 0);
        pvf_qtensor_free(&q);
    }
    free(w);

    /* Scalar conversions of the special values, NaN patterns included. */
    pvf_tensor ts;
    long is = pvf_st_find(&f, "specials");
    CHECK(is >= 0);
    if (is >= 0) {
        pvf_st_view(&f, (size_t)is, &ts);
        int64_t ns = ts.ndim == 1 ? ts.shape[0] : -1;
        CHECK(ts.dtype == PVF_DT_F32 && ns > 0 && ts.nbytes == (size_t)ns * 4u);
        pvf_tensor t16, tb16, t8;
        int nbad = 0;
        if (ts.dtype == PVF_DT_F32 && ns > 0 && ts.nbytes == (size_t)ns * 4u &&
            fx_get(&f, "specials_f16", PVF_DT_I32, ns, &t16) == 0 &&
            fx_get(&f, "specials_bf16", PVF_DT_I32, ns, &tb16) == 0 &&
            fx_get(&f, "specials_e4m3", PVF_DT_I32, ns, &t8) == 0) {
            for (int64_t i = 0; i < ns; i++) {
                uint32_t x = fx_u32(&ts, i);
                bad_(&nbad, "specials_f16", x, pvf_f32_to_f16(fb(x)), fx_u32(&t16, i));
                bad_(&nbad, "specials_bf16", x, pvf_f32_to_bf16(fb(x)), fx_u32(&tb16, i));
                bad_(&nbad, "specials_e4m3", x, pvf_f32_to_e4m3(fb(x)), fx_u32(&t8, i));
            }
        }
        CHECK(nbad == 0);
    }
    pvf_st_close(&f);
}

int main(void) {
    RUN(test_format_names);
    RUN(test_f16_encode_vectors);
    RUN(test_f16_decode_vectors);
    RUN(test_f16_all_codes);
    RUN(test_f16_midpoints);
    RUN(test_bf16_vectors);
    RUN(test_bf16_all_codes);
    RUN(test_e4m3_encode_vectors);
    RUN(test_e4m3_decode_vectors);
    RUN(test_e4m3_all_codes);
    RUN(test_int4_packing);
    RUN(test_int8_fp8_known);
    RUN(test_qtensor_roundtrip);
    RUN(test_qtensor_nan);
    RUN(test_qtensor_inf);
    RUN(test_qtensor_shapes);
    RUN(test_fixture_numpy);
    return test_summary();
}
