/* dtype.c — the type table and the reference conversions to fp32. */
#include "format/dtype.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "core/checked.h"
#include "format/kquant.h"
#include "format/q35fmt.h"

float q35_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t q35_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t abs = x & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return sign | 0x7E00; /* NaN */
    if (abs >= 0x477FF000u) return sign | 0x7C00; /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
        if (abs < 0x33000000u) return sign; /* < 2^-25 rounds to 0 */
        const uint32_t e = abs >> 23, man = (abs & 0x7FFFFF) | 0x800000;
        const uint32_t shift = 126 - e; /* 14..24 */
        uint32_t h = man >> shift;
        const uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return sign | (uint16_t)h;
    }
    uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
    const uint32_t rem = abs & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

float q35_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t q35_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

static void f32_to_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof *dst);
}

static void f16_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = q35_f16_to_f32(h);
    }
}

static void bf16_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = q35_bf16_to_f32(h);
    }
}

/* Every ggml type, with ggml's block sizes (tests/test_kquant.c checks
 * them against libggml's own table). */
static const q35_dtype_info dtype_table[Q35_DTYPE_COUNT_] = {
    [Q35_DTYPE_F32] = {"F32", 1, 4, f32_to_f32},
    [Q35_DTYPE_F16] = {"F16", 1, 2, f16_to_f32},
    [Q35_DTYPE_Q4_0] = {"Q4_0", 32, 18, q35_q4_0_to_f32},
    [Q35_DTYPE_Q4_1] = {"Q4_1", 32, 20, q35_q4_1_to_f32},
    [Q35_DTYPE_Q5_0] = {"Q5_0", 32, 22, q35_q5_0_to_f32},
    [Q35_DTYPE_Q5_1] = {"Q5_1", 32, 24, q35_q5_1_to_f32},
    [Q35_DTYPE_Q8_0] = {"Q8_0", 32, 34, q35_q8_0_to_f32},
    [Q35_DTYPE_Q8_1] = {"Q8_1", 32, 36, NULL},
    [Q35_DTYPE_Q2_K] = {"Q2_K", 256, 84, q35_q2_k_to_f32},
    [Q35_DTYPE_Q3_K] = {"Q3_K", 256, 110, q35_q3_k_to_f32},
    [Q35_DTYPE_Q4_K] = {"Q4_K", 256, 144, q35_q4_k_to_f32},
    [Q35_DTYPE_Q5_K] = {"Q5_K", 256, 176, q35_q5_k_to_f32},
    [Q35_DTYPE_Q6_K] = {"Q6_K", 256, 210, q35_q6_k_to_f32},
    [Q35_DTYPE_Q8_K] = {"Q8_K", 256, 292, NULL},
    [Q35_DTYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, NULL},
    [Q35_DTYPE_IQ2_XS] = {"IQ2_XS", 256, 74, NULL},
    [Q35_DTYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, NULL},
    [Q35_DTYPE_IQ1_S] = {"IQ1_S", 256, 50, NULL},
    [Q35_DTYPE_IQ4_NL] = {"IQ4_NL", 32, 18, q35_iq4_nl_to_f32},
    [Q35_DTYPE_IQ3_S] = {"IQ3_S", 256, 110, NULL},
    [Q35_DTYPE_IQ2_S] = {"IQ2_S", 256, 82, NULL},
    [Q35_DTYPE_IQ4_XS] = {"IQ4_XS", 256, 136, q35_iq4_xs_to_f32},
    [Q35_DTYPE_I8] = {"I8", 1, 1, NULL},
    [Q35_DTYPE_I16] = {"I16", 1, 2, NULL},
    [Q35_DTYPE_I32] = {"I32", 1, 4, NULL},
    [Q35_DTYPE_I64] = {"I64", 1, 8, NULL},
    [Q35_DTYPE_F64] = {"F64", 1, 8, NULL},
    [Q35_DTYPE_IQ1_M] = {"IQ1_M", 256, 56, NULL},
    [Q35_DTYPE_BF16] = {"BF16", 1, 2, bf16_to_f32},
    [Q35_DTYPE_TQ1_0] = {"TQ1_0", 256, 54, NULL},
    [Q35_DTYPE_TQ2_0] = {"TQ2_0", 256, 66, NULL},
    [Q35_DTYPE_MXFP4] = {"MXFP4", 32, 17, NULL},
    [Q35_DTYPE_NVFP4] = {"NVFP4", 64, 36, NULL},
    [Q35_DTYPE_Q1_0] = {"Q1_0", 128, 18, NULL},
    [Q35_DTYPE_Q2_0] = {"Q2_0", 64, 18, NULL},
};

static const q35_dtype_info family_table[] = {
    {"Q2_5", 0, 0, NULL}, {"Q3_5", 0, 0, NULL}, {"Q4_5", 0, 0, NULL}, {"Q8_S", 0, 0, NULL}};
static const int family_ids[] = {Q35_TYPE_Q2_5, Q35_TYPE_Q3_5, Q35_TYPE_Q4_5, Q35_TYPE_Q8_S};

const q35_dtype_info *q35_dtype_get(int id) {
    for (size_t i = 0; i < sizeof family_ids / sizeof family_ids[0]; i++)
        if (id == family_ids[i]) return &family_table[i];
    if (id < 0 || id >= Q35_DTYPE_COUNT_ || !dtype_table[id].name) return NULL;
    return &dtype_table[id];
}

int q35_dtype_tensor_bytes(int id, int64_t ne0, int64_t rows, uint64_t *bytes) {
    if (ne0 < 1 || rows < 1) return -1;
    if (q35_is_family(id)) {
        q35_layout L;
        if (q35_layout_init(&L, id, ne0, rows) != 0) return -1;
        *bytes = L.total_bytes;
        return 0;
    }
    const q35_dtype_info *t = q35_dtype_get(id);
    if (!t || ne0 % t->block_elems != 0) return -1;
    uint64_t row;
    if (q35_mul_u64((uint64_t)ne0 / (uint64_t)t->block_elems, (uint64_t)t->block_bytes, &row)) return -1;
    return q35_mul_u64(row, (uint64_t)rows, bytes) ? -1 : 0;
}

int q35_dtype_by_name(const char *name) {
    for (int i = 0; i < Q35_DTYPE_COUNT_; i++)
        if (dtype_table[i].name && strcasecmp(dtype_table[i].name, name) == 0) return i;
    for (size_t i = 0; i < sizeof family_ids / sizeof family_ids[0]; i++)
        if (strcasecmp(family_table[i].name, name) == 0) return family_ids[i];
    return -1;
}

int q35_dtype_bytes(int id, uint64_t n, uint64_t *bytes) {
    const q35_dtype_info *t = q35_dtype_get(id);
    if (!t || t->block_elems == 0 || n % (uint64_t)t->block_elems != 0) return -1;
    return q35_mul_u64(n / (uint64_t)t->block_elems, (uint64_t)t->block_bytes, bytes) ? -1 : 0;
}
