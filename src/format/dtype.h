/* dtype.h — the numeric types tensors are stored in. Ids follow GGUF's
 * ggml_type numbering for the types GGUF shares with ggml; q35's own
 * types get ids of their own (docs/FORMAT.md). One row per type in
 * dtype.c: adding a type is a row there plus its kernels. Every type ggml
 * defines has a row (name and block size), so that any GGUF file can be
 * read and listed; those q35 can expand to fp32 have a to_f32. */
#ifndef Q35_FORMAT_DTYPE_H
#define Q35_FORMAT_DTYPE_H

#include <stdint.h>

typedef enum q35_dtype {
    Q35_DTYPE_F32 = 0,
    Q35_DTYPE_F16 = 1,
    Q35_DTYPE_Q4_0 = 2,  /* ggml: blocks of 32, fp16 scale d, x = d * (q - 8), q 4-bit */
    Q35_DTYPE_Q4_1 = 3,  /* ggml's block types: format/kquant.h, docs/FORMAT.md */
    Q35_DTYPE_Q5_0 = 6,
    Q35_DTYPE_Q5_1 = 7,
    Q35_DTYPE_Q8_0 = 8,  /* ggml: blocks of 32, fp16 scale d, x = d * q, q int8 */
    Q35_DTYPE_Q8_1 = 9,
    Q35_DTYPE_Q2_K = 10,
    Q35_DTYPE_Q3_K = 11,
    Q35_DTYPE_Q4_K = 12,
    Q35_DTYPE_Q5_K = 13,
    Q35_DTYPE_Q6_K = 14,
    Q35_DTYPE_Q8_K = 15,
    Q35_DTYPE_IQ2_XXS = 16,
    Q35_DTYPE_IQ2_XS = 17,
    Q35_DTYPE_IQ3_XXS = 18,
    Q35_DTYPE_IQ1_S = 19,
    Q35_DTYPE_IQ4_NL = 20,
    Q35_DTYPE_IQ3_S = 21,
    Q35_DTYPE_IQ2_S = 22,
    Q35_DTYPE_IQ4_XS = 23,
    Q35_DTYPE_I8 = 24,
    Q35_DTYPE_I16 = 25,
    Q35_DTYPE_I32 = 26,
    Q35_DTYPE_I64 = 27,
    Q35_DTYPE_F64 = 28,
    Q35_DTYPE_IQ1_M = 29,
    Q35_DTYPE_BF16 = 30,
    Q35_DTYPE_TQ1_0 = 34,
    Q35_DTYPE_TQ2_0 = 35,
    Q35_DTYPE_MXFP4 = 39,
    Q35_DTYPE_NVFP4 = 40,
    Q35_DTYPE_Q1_0 = 41,
    Q35_DTYPE_Q2_0 = 42,
    Q35_DTYPE_COUNT_     /* not a type: one past the largest id in the table */
} q35_dtype;

typedef struct q35_dtype_info {
    const char *name;  /* as q35 info prints it */
    int block_elems;   /* elements per block */
    int block_bytes;   /* bytes per block */
    /* expands n elements (a multiple of block_elems) to fp32; NULL for a
     * type q35 cannot read (the IQ2/IQ3/IQ1 grids, ternary, FP4, ...) */
    void (*to_f32)(const void *src, float *dst, int64_t n);
} q35_dtype_info;

/* NULL for an id that is not a known type. The Q3_5 family (q35fmt.h)
 * has rows too, with block_elems 0 and no to_f32: its sizes depend on the
 * row length, see q35_dtype_tensor_bytes. */
const q35_dtype_info *q35_dtype_get(int id);

/* Bytes of a tensor of `rows` rows of ne0 elements, checked; works for
 * every type (the family's layouts included). 0 on success, -1 for an
 * unknown type, a row that is not a whole number of blocks, or overflow. */
int q35_dtype_tensor_bytes(int id, int64_t ne0, int64_t rows, uint64_t *bytes);
/* The type named name ("F32", "q8_0", ...; case-insensitive), or -1. */
int q35_dtype_by_name(const char *name);

/* Bytes of n elements of type id, checked: 0 on success, -1 if the type is
 * unknown, n is not a whole number of blocks, or the size overflows. */
int q35_dtype_bytes(int id, uint64_t n, uint64_t *bytes);

/* IEEE half and bfloat16 <-> float (round to nearest even). */
float q35_f16_to_f32(uint16_t h);
uint16_t q35_f32_to_f16(float f);
float q35_bf16_to_f32(uint16_t h);
uint16_t q35_f32_to_bf16(float f);

#endif
