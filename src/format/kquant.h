/* kquant.h — ggml's block-quantized types as GGUF files store them, read
 * into fp32: the 32-element blocks Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and
 * IQ4_NL, and the 256-element super-blocks of the K-quants Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K and of IQ4_XS. Each expands exactly as ggml's reference
 * dequantizer does — the same fp16 scales, the same float operations in
 * the same order, no fused multiply-adds — so the results are bit for bit
 * libggml's (tests/test_kquant.c compares them). docs/FORMAT.md describes
 * the layouts. Each function expands n elements (a whole number of blocks)
 * from src, which needs no alignment, to dst. */
#ifndef Q35_FORMAT_KQUANT_H
#define Q35_FORMAT_KQUANT_H

#include <stdint.h>

void q35_q4_0_to_f32(const void *src, float *dst, int64_t n);
void q35_q4_1_to_f32(const void *src, float *dst, int64_t n);
void q35_q5_0_to_f32(const void *src, float *dst, int64_t n);
void q35_q5_1_to_f32(const void *src, float *dst, int64_t n);
void q35_q8_0_to_f32(const void *src, float *dst, int64_t n);
void q35_q2_k_to_f32(const void *src, float *dst, int64_t n);
void q35_q3_k_to_f32(const void *src, float *dst, int64_t n);
void q35_q4_k_to_f32(const void *src, float *dst, int64_t n);
void q35_q5_k_to_f32(const void *src, float *dst, int64_t n);
void q35_q6_k_to_f32(const void *src, float *dst, int64_t n);
void q35_iq4_nl_to_f32(const void *src, float *dst, int64_t n);
void q35_iq4_xs_to_f32(const void *src, float *dst, int64_t n);

#endif
