/* neon.h — AArch64 NEON kernels (neon.c). Same contracts as the references
 * in q35dot.h and kernels.h: integer block sums and the activation
 * quantizer bit-identical to q35dot_ref.c, float results equal up to
 * rounding (tests/test_q35_neon.c, run by scripts/neon-test.sh).
 *
 * Defined only when compiling for AArch64 (neon.c is empty elsewhere), so
 * callers guard uses with #if defined(__aarch64__). Advanced SIMD is part of
 * the AArch64 baseline: no run-time check is needed. The Q3_5-family dot
 * products use the dot-product instructions (SDOT) when built with them
 * (__ARM_FEATURE_DOTPROD, e.g. -march=armv8.2-a+dotprod) and widening
 * multiplies otherwise. */
#ifndef Q35_KERNELS_NEON_H
#define Q35_KERNELS_NEON_H

#include <stdint.h>

#include "format/q35fmt.h"
#include "kernels/q35dot.h"

void q35_quantize_act_neon(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum);
void q35_block_sums_neon(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S);
float q35_row_dot_neon(const q35_layout *L, const float table[256], const uint8_t *row,
                       const q35_qact *a);
void q35_row_dot_batch_neon(const q35_layout *L, const float table[256], const uint8_t *row,
                            const q35_qact *a, int n_act, float *out, int64_t out_stride);
void q35_gemm_neon(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                   const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);

void q35_matvec_f32_neon(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                         int64_t r0, int64_t r1);
void q35_wsum_f32_neon(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                       int64_t T);
void q35_softmax_f32_neon(float *x, int64_t n);
void q35_swiglu_f32_neon(float *g, const float *u, int64_t n);

/* "neon+dotprod" or "neon": which integer dot product this build uses. */
const char *q35_neon_variant(void);

#endif
