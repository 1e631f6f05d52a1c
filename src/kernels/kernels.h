/* kernels.h — the compute kernels the forward pass calls, behind one table
 * of function pointers chosen once per session from CPUID.
 *
 * Every kernel has a scalar reference (ref.c) that defines its result; the
 * SIMD versions (x86.c) are tested against it (tests/test_kernels.c). A
 * kernel computes a range of output rows, so callers can split rows across
 * threads. */
#ifndef Q35_KERNELS_KERNELS_H
#define Q35_KERNELS_KERNELS_H

#include <stdint.h>

#include "kernels/q35dot.h"

/* out[r - r0] = sum over c < n of w[r*ld + c] * x[c], for rows r0 <= r < r1.
 * w: rows of n fp32 values, ld floats apart (ld >= n; the KV cache's keys
 * are rows of head_dim values one kv_dim apart). */
typedef void (*q35_matvec_f32_fn)(float *out, const float *w, int64_t ld, const float *x,
                                  int64_t n, int64_t r0, int64_t r1);
/* out[i] = sum over t < T of a[t] * v[t*ld + i], for i < n (attention's
 * weighted sum of cached values). */
typedef void (*q35_wsum_f32_fn)(float *out, const float *a, const float *v, int64_t ld,
                                int64_t n, int64_t T);
/* x = softmax(x) over n > 0 values, in place. */
typedef void (*q35_softmax_f32_fn)(float *x, int64_t n);
/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] (SwiGLU). */
typedef void (*q35_swiglu_f32_fn)(float *g, const float *u, int64_t n);
/* The fp16 KV cache (IEEE half, stored as uint16_t): */
/* dst[i] = x[i] rounded to half, to nearest even (F16C's VCVTPS2PH): every
 * set gives the reference's bits, except maybe a NaN's payload. */
typedef void (*q35_f32_to_f16_fn)(uint16_t *dst, const float *x, int64_t n);
/* Attention for nq query heads that share one KV head (grouped-query
 * attention), over T cached rows of halves ld apart: the scores
 *   s[j*lds + t] = sum over c < n of k[t*ld + c] * q[j*n + c]
 * and the weighted sums of the values
 *   out[j*n + i] = sum over t < T of a[j*lda + t] * v[t*ld + i]
 * for j < nq. Each head's results are the same whatever nq it is computed
 * with (a row of halves is widened once for all nq heads). */
typedef void (*q35_attn_scores_f16_fn)(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                       const float *q, int nq, int64_t n, int64_t T);
typedef void (*q35_attn_wsum_f16_fn)(float *out, const float *a, int64_t lda, const uint16_t *v,
                                     int64_t ld, int nq, int64_t n, int64_t T);
/* The int8 KV cache: a row of n values as codes q[i] and one fp32 scale
 * d, x[i] ~ d * q[i], with d = max |x[i]| / 127 and q[i] = x[i] * (1 / d)
 * rounded to nearest (ties to even), 0 where d is 0. A row holding an
 * infinity or a NaN gets codes 0 and the scale NaN (its attention turns
 * NaN, as an fp16 cache's would). Every set gives the reference's bits. */
typedef void (*q35_kv_quant_q8_fn)(int8_t *q, float *d, const float *x, int64_t n);
/* As the fp16 pair, over T rows of codes ld apart whose scales are
 * d[0 .. T-1]:
 *   s[j*lds + t] = d[t] * (sum over c < n of k[t*ld + c] * q[j*n + c])
 *   out[j*n + i] = sum over t < T of (a[j*lda + t] * d[t]) * v[t*ld + i]
 * Each head's results are the same whatever nq it is computed with. */
typedef void (*q35_attn_scores_q8_fn)(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                                      const float *q, int nq, int64_t n, int64_t T);
typedef void (*q35_attn_wsum_q8_fn)(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                                    int64_t ld, int nq, int64_t n, int64_t T);

/* The query heads per KV head from which a model takes the _wide scores. */
#define Q35_ATTN_WIDE_GROUP 6

typedef struct q35_kernels {
    const char *name;               /* "scalar", "avx2", "avx512", "neon" */
    q35_matvec_f32_fn matvec_f32;
    q35_wsum_f32_fn wsum_f32;
    q35_softmax_f32_fn softmax_f32;
    q35_swiglu_f32_fn swiglu_f32;
    q35_f32_to_f16_fn f32_to_f16;
    q35_attn_scores_f16_fn attn_scores_f16;
    q35_attn_wsum_f16_fn attn_wsum_f16;
    q35_kv_quant_q8_fn kv_quant_q8;
    q35_attn_scores_q8_fn attn_scores_q8;
    q35_attn_wsum_q8_fn attn_wsum_q8;
    /* The scores for a model whose KV heads serve Q35_ATTN_WIDE_GROUP
     * query heads or more, under the same contract: it calls these for all
     * its heads, so that a head's scores stay the same whatever group they
     * are computed in. AVX-512 transposes 16 keys at a time and keeps the
     * positions in the lanes (no reduction across lanes), which pays from
     * about 6 heads per transpose (bench/attn_bench); other sets point at
     * their plain kernels. */
    q35_attn_scores_f16_fn attn_scores_f16_wide;
    q35_attn_scores_q8_fn attn_scores_q8_wide;
    /* the Q3_5 family (q35dot.h) */
    void (*q35_quantize_act)(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum);
    void (*q35_permute_act)(const q35_layout *L, const uint8_t *mask, const float *x, float *xp);
    void (*q35_block_sums)(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S);
    float (*q35_row_dot)(const q35_layout *L, const float table[256], const uint8_t *row,
                         const q35_qact *a);
    void (*q35_row_dot_batch)(const q35_layout *L, const float table[256], const uint8_t *row,
                              const q35_qact *a, int n_act, float *out, int64_t out_stride);
    /* the prefill GEMM (q35dot.h) */
    void (*q35_gemm)(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                     const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);
    /* matrices repacked in R16 order (format/q35r16.h; q35dot.h): NULL in
     * sets without them (AVX2, NEON), which read the rows instead. r16_pack
     * says whether a model loaded for this set should repack its
     * Q3_5-family matrices (the scalar set runs R16 but does not ask for
     * it). */
    void (*q35_r16_rows)(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                         int64_t r1, const q35_qact *a, float *out);
    void (*q35_r16_gemm)(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                         int64_t r1, const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch);
    int r16_pack;
} q35_kernels;

/* Fills k with the fastest kernels this CPU runs; with want set to
 * "scalar", "avx2", "avx512" or "neon", that one if the CPU has it. Returns 0, or
 * -1 if the wanted set is not available (k then holds the scalar set). */
int q35_kernels_select(q35_kernels *k, const char *want);

/* The references. */
void q35_matvec_f32_ref(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                        int64_t r0, int64_t r1);
void q35_wsum_f32_ref(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                      int64_t T);
void q35_softmax_f32_ref(float *x, int64_t n);
void q35_swiglu_f32_ref(float *g, const float *u, int64_t n);
void q35_f32_to_f16_ref(uint16_t *dst, const float *x, int64_t n);
void q35_attn_scores_f16_ref(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                             const float *q, int nq, int64_t n, int64_t T);
void q35_attn_wsum_f16_ref(float *out, const float *a, int64_t lda, const uint16_t *v,
                           int64_t ld, int nq, int64_t n, int64_t T);
void q35_kv_quant_q8_ref(int8_t *q, float *d, const float *x, int64_t n);
void q35_attn_scores_q8_ref(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                            const float *q, int nq, int64_t n, int64_t T);
void q35_attn_wsum_q8_ref(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                          int64_t ld, int nq, int64_t n, int64_t T);
/* The SIMD versions (call only where the CPU has the instructions). */
void q35_matvec_f32_avx2(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                         int64_t r0, int64_t r1);
void q35_wsum_f32_avx2(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                       int64_t T);
void q35_matvec_f32_avx512(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                           int64_t r0, int64_t r1);
void q35_wsum_f32_avx512(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                         int64_t T);
void q35_softmax_f32_avx512(float *x, int64_t n);
void q35_swiglu_f32_avx512(float *g, const float *u, int64_t n);
/* fp16: AVX2 + F16C (every AVX2 CPU has it; dispatch.c checks) and AVX-512 */
void q35_f32_to_f16_avx2(uint16_t *dst, const float *x, int64_t n);
void q35_attn_scores_f16_avx2(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                              const float *q, int nq, int64_t n, int64_t T);
void q35_attn_wsum_f16_avx2(float *out, const float *a, int64_t lda, const uint16_t *v,
                            int64_t ld, int nq, int64_t n, int64_t T);
void q35_f32_to_f16_avx512(uint16_t *dst, const float *x, int64_t n);
void q35_attn_scores_f16_avx512(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                const float *q, int nq, int64_t n, int64_t T);
void q35_attn_wsum_f16_avx512(float *out, const float *a, int64_t lda, const uint16_t *v,
                              int64_t ld, int nq, int64_t n, int64_t T);
/* int8 KV cache: AVX2 and AVX-512 (BW, VL) */
void q35_kv_quant_q8_avx2(int8_t *q, float *d, const float *x, int64_t n);
void q35_attn_scores_q8_avx2(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                             const float *q, int nq, int64_t n, int64_t T);
void q35_attn_wsum_q8_avx2(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                           int64_t ld, int nq, int64_t n, int64_t T);
void q35_kv_quant_q8_avx512(int8_t *q, float *d, const float *x, int64_t n);
void q35_attn_scores_q8_avx512(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                               const float *q, int nq, int64_t n, int64_t T);
void q35_attn_scores_f16_wide_avx512(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                     const float *q, int nq, int64_t n, int64_t T);
void q35_attn_scores_q8_wide_avx512(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                                    const float *q, int nq, int64_t n, int64_t T);
void q35_attn_wsum_q8_avx512(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                             int64_t ld, int nq, int64_t n, int64_t T);

#endif
