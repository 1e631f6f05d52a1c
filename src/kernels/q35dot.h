/* q35dot.h — dot products of Q3_5-family rows with int8-quantized
 * activations. The reference (q35dot_ref.c) defines the results; SIMD
 * versions compute bit-identical integer block sums and the same final
 * float up to rounding (tests/test_q35.c).
 *
 * Activations x (np values, already in the tensor's stored column order)
 * are quantized per block of 32 (the last block may be shorter):
 *   d = max|x| / 127,  q = round-to-nearest-even(x * (127 / max|x|)),
 *   sum = sum of q.
 * For a row with codes c_j and scale bytes s_b, block b's integer sum is
 *   S_b = sum over j in b of c_j * q_j                          (int32)
 * and the row's dot product is
 *   sum over b of table[s_b] * d_b * (2 S_b - (2^bits_b - 1) sum_b),
 * since the weight is table[s_b] * (2 c_j - (2^bits_b - 1)). */
#ifndef Q35_KERNELS_Q35DOT_H
#define Q35_KERNELS_Q35DOT_H

#include <stdint.h>

#include "format/q35fmt.h"

/* One quantized activation vector. */
typedef struct q35_qact {
    int64_t np;
    int8_t *q;     /* np */
    float *d;      /* n_blocks scales */
    int32_t *sum;  /* n_blocks sums of q */
} q35_qact;

/* The largest number of terms an int32 block sum may have for the proofs'
 * bound: 2^31 / (255 * 127) = 66311 (docs/PROOFS.md). Blocks have 32. */
#define Q35_DOT_MAX_TERMS 66311

void q35_quantize_act_ref(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum);

/* The activations x (L->n values) in a matrix's stored column order
 * (docs/FORMAT.md, "Column order"), into xp (L->np values): first x[c] for
 * each column c whose bit is set in the header's column mask (bit c % 8 of
 * mask[c / 8]; L->n4 of them, as q35_header_check makes sure), ascending,
 * then the other columns, ascending, with 0 for the padding columns n ..
 * np - 1. The same order as q35_header_perm's. */
void q35_permute_act_ref(const q35_layout *L, const uint8_t *mask, const float *x, float *xp);

/* The integer sum over K terms of codes[i] * a[i]; codes < 256, |a| <= 127,
 * K <= Q35_DOT_MAX_TERMS. The function the overflow proof is about. */
int32_t q35_dot_codes_i8(const uint8_t *codes, const int8_t *a, int K);

/* S_b for every block of one packed row. */
void q35_block_sums_ref(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S);

/* The row's dot product (blocks summed in order). */
float q35_row_dot_ref(const q35_layout *L, const float table[256], const uint8_t *row,
                      const q35_qact *a);

/* The same over blocks b0 .. n_blocks-1 only (the SIMD kernels' short
 * last group): S[b0..] filled; the returned sum covers those blocks. */
void q35_block_sums_from_ref(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S,
                             int64_t b0);
float q35_row_dot_from_ref(const q35_layout *L, const float table[256], const uint8_t *row,
                           const q35_qact *a, int64_t b0);

/* The prefill product: out[t * out_stride] = the row's dot product with
 * activation vector a[t], for t < n_act. Each result is bit-identical to
 * the same kernel set's q35_row_dot on a[t] (so a prompt processed as a
 * batch gives exactly the logits of token-by-token decoding); the point is
 * that the row's codes are decoded once for all n_act vectors. */
void q35_row_dot_batch_ref(const q35_layout *L, const float table[256], const uint8_t *row,
                           const q35_qact *a, int n_act, float *out, int64_t out_stride);

/* The prefill product of a block of rows: out[t * ldo + r] = row r's dot
 * product with a[t], for r < nrows (rows row_bytes apart from rows) and
 * t < n_act. The reference and the AVX-512 version give q35_row_dot_ref's
 * result bit for bit: the AVX-512 version decodes 16 rows at a time into
 * scratch, one row per 32-bit lane (4 codes of a row per lane), and runs
 * dpbusd over several activation vectors per decoded tile. The AVX2 and
 * NEON versions run their batch row dot row by row (their row dot's
 * results). scratch: Q35_GEMM_SCRATCH(np) bytes (the AVX-512 version
 * aligns it to 64 itself; the others use none). */
#define Q35_GEMM_ROWS 16
#define Q35_GEMM_SCRATCH(np) ((size_t)Q35_GEMM_ROWS * ((size_t)(np) + 4 * (((size_t)(np) + 31) / 32)) + 64)
void q35_gemm_ref(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                  const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);

/* The same products on a matrix repacked in R16 order (format/q35r16.h):
 * rows r0 .. r1-1 (r0 a multiple of 16; r1 one too, or m), tiles
 * tile_bytes apart from packed. q35_r16_rows: out[r - r0] = row r's dot
 * product with a; q35_r16_gemm: out[t * ldo + r - r0] with a[t], t < n_act
 * (scratch as q35_gemm's: Q35_GEMM_SCRATCH(np) bytes, which the AVX-512
 * version fills with the vectors' -top sums from two vectors on; the
 * reference uses none). Every result, the AVX-512 versions' included,
 * is bit-identical to q35_row_dot_ref on the row before repacking: the
 * float operations are the reference's, in its order. */
void q35_r16_rows_ref(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                      int64_t r1, const q35_qact *a, float *out);
void q35_r16_gemm_ref(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                      int64_t r1, const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);

/* SIMD versions: same contracts; call only where the CPU has them. */
void q35_quantize_act_avx512(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum);
void q35_permute_act_avx512(const q35_layout *L, const uint8_t *mask, const float *x, float *xp);
void q35_block_sums_avx512(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S);
float q35_row_dot_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                         const q35_qact *a);
void q35_row_dot_batch_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                              const q35_qact *a, int n_act, float *out, int64_t out_stride);
void q35_gemm_avx512(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                     const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);
void q35_r16_rows_avx512(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                         int64_t r1, const q35_qact *a, float *out);
void q35_r16_gemm_avx512(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                         int64_t r1, const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);
void q35_block_sums_avx2(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S);
float q35_row_dot_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                       const q35_qact *a);
void q35_row_dot_batch_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                            const q35_qact *a, int n_act, float *out, int64_t out_stride);
void q35_gemm_avx2(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                   const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);

#endif
