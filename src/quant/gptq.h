/* gptq.h — GPTQ-style error feedback for the Q3_5 family.
 *
 * With H = sum of x x^T over calibration inputs x of a matrix W, the
 * output error of a quantized Q is sum over rows r of e_r H e_r^T, e = W - Q.
 * The columns are quantized one at a time in the stored order (plus
 * columns first); each column's rounding error is spread over the columns
 * not yet quantized through U, the upper Cholesky factor of H^-1
 * (H^-1 = U^T U), so that later columns compensate it. A block's scale is
 * chosen when the block starts, from the error-updated weights. */
#ifndef Q35_QUANT_GPTQ_H
#define Q35_QUANT_GPTQ_H

#include <stdint.h>

#include "format/q35quant.h"

typedef struct q35_gptq_params {
    double damp;      /* added to H's diagonal, times its mean (0.03) */
    int passes;       /* refinement passes after GPTQ (8; 0 = none) */
} q35_gptq_params;

/* U (n x n, row-major, upper triangle; the lower is zeroed) with
 * U^T U = (A + damp * mean(diag A) * I)^-1, A given n x n symmetric.
 * Zero-diagonal (dead) inputs get a diagonal of 1 first. If A is not
 * positive definite the damping is raised tenfold up to 4 times.
 * Returns the damping used, or -1 (not positive definite even then, or out
 * of memory). */
double q35_gptq_factor(const double *A, int64_t n, double damp, int n_threads, double *U);

/* As q35_quantize_tensor, with error feedback through H (L->n x L->n,
 * original column order; count: the number of vectors summed into it,
 * used only to scale it). importance (may be NULL) chooses the plus
 * columns and weights the scale search; NULL uses diag(H). Falls back to
 * q35_quantize_tensor when H cannot be factored. Fills stats->herr/href
 * (relative output error) too. Deterministic for any n_threads. */
int q35_quantize_tensor_gptq(const q35_layout *L, const float *W, const float *importance,
                             const double *H, const q35_gptq_params *p, int n_threads,
                             uint8_t *out, q35_quant_stats *stats);

/* Asymmetric calibration: with H = sum of x x^T over the inputs x a
 * matrix gets in the partly quantized model and K = sum of x_ref x^T (x_ref:
 * the unquantized model's input at the same token), the weights V (m x n,
 * malloc'ed) that minimise sum |W x_ref - V x|^2, regularised:
 * V = W + W (K - H) (H + damp mean(diag H) I)^-1, so V = W when the inputs
 * agree. GPTQ of V with H then fits the unquantized outputs. NULL when out
 * of memory or H cannot be factored. */
float *q35_gptq_asym_target(const float *W, const double *H, const double *K, int64_t m, int64_t n, double damp,
                            int n_threads);

/* sum_r e_r H e_r^T with e = A - B (m x n, original order), and the same
 * for e = A: the output error and its reference. */
void q35_output_error(const float *A, const float *B, int64_t m, int64_t n, const double *H,
                      int n_threads, double *err, double *ref);

#endif
