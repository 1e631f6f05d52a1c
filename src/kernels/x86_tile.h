/* x86_tile.h — what the AVX-512 kernel files share (x86_q35.c: the row
 * kernels and the prefill GEMM; x86_r16.c: the R16 kernels): the target
 * attributes, the exact scale of 16 scale bytes, and the GEMM's inner
 * product over a decoded tile of 16 rows. Internal to src/kernels; only
 * for x86-64 translation units. */
#ifndef Q35_KERNELS_X86_TILE_H
#define Q35_KERNELS_X86_TILE_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/q35dot.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX512GF __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,gfni")))

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* table[s] for the 16 scale bytes in s (one per 32-bit lane; lanes outside
 * kb give 0): table[240 + (s & 15)] * 2^-((255 - s) >> 4), which is how
 * q35_scale_table builds it (exactly), 0 for s = 0; top holds
 * table[240..255]. A gather costs more. */
AVX512 static inline __attribute__((always_inline)) __m512 scales16(__m512i s, __mmask16 kb, __m512 top) {
    const __m512i ne = _mm512_srli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(255), s), 4);
    const __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_setzero_si512(), ne));
    return _mm512_maskz_scalef_ps(_mm512_test_epi32_mask(s, s) & kb,
                                  _mm512_permutexvar_ps(_mm512_and_si512(s, _mm512_set1_epi32(15)), top), e);
}

/* scales16 for all 16 lanes in 6 operations instead of 9, where
 * scales16_exp_ok(table): the power of two is taken off the exponent field
 * of table[240 + (s & 15)] (vpermps reads only the index's low 4 bits),
 * (255 - s) >> 4 = (~s & 0xF0) >> 4 shifted into the exponent by 23. That
 * is scalef's (and ldexpf's) result bit for bit as long as every product
 * stays a normal float: table[240], the smallest of the 16, at least
 * 2^-111, so times 2^-15 at least 2^-126. A zero or tiny scale base (an
 * all-zero tensor has one) fails the test and keeps scalef. */
AVX512 static inline __attribute__((always_inline)) __m512 scales16_exp(__m512i s, __m512 top) {
    const __m512i mant = _mm512_castps_si512(_mm512_permutexvar_ps(s, top));
    const __m512i sh = _mm512_slli_epi32(_mm512_andnot_si512(s, _mm512_set1_epi32(0xF0)), 19);
    return _mm512_castsi512_ps(_mm512_maskz_sub_epi32(_mm512_test_epi32_mask(s, s), mant, sh));
}
static inline int scales16_exp_ok(const float table[256]) { return table[240] >= 0x1p-111f; }

/* acc + one block's terms for 16 rows: their integer sums S, top = 2^c - 1
 * times the activations' sum, the activations' scale d, the rows' scales
 * ws (block_acc_i: from I itself, for kernels whose dpbusd give it). The
 * reference's operations in its order (q35dot_ref.c block_term:
 * (w * d) * float(2 S - top sum), then the add; no FMA), so the kernels
 * built on it are bit-identical to q35_row_dot_ref. I = 2 S - top sum is
 * exact in int32 (q35int.h) and in float (< 2^24). */
AVX512 static inline __attribute__((always_inline)) __m512 block_acc_i(__m512 acc, __m512i I, float d, __m512 ws) {
    const __m512 wd = _mm512_mul_ps(ws, _mm512_set1_ps(d));
    return _mm512_add_ps(acc, _mm512_mul_ps(wd, _mm512_cvtepi32_ps(I)));
}
AVX512 static inline __attribute__((always_inline)) __m512 block_acc(__m512 acc, __m512i S, int32_t top_sum, float d,
                                                                    __m512 ws) {
    return block_acc_i(acc, _mm512_sub_epi32(_mm512_add_epi32(S, S), _mm512_set1_epi32(top_sum)), d, ws);
}

#ifndef GEMM_VECS
#define GEMM_VECS 8 /* activation vectors sharing one pass over the tile */
#endif

/* The tile times nv <= GEMM_VECS activation vectors: out[t * ldo + i] for
 * the nr rows present. */
AVX512 static inline __attribute__((always_inline)) void gemm_tile(const q35_layout *L, const uint32_t *codes,
                                                                  const float *scales, const q35_qact *a, int nv,
                                                                  float *out, int64_t ldo, int nr) {
    __m512 acc[GEMM_VECS];
#pragma GCC unroll 16
    for (int t = 0; t < GEMM_VECS; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < L->n_blocks; b++) {
        const int64_t j0 = b * Q35_BLOCK;
        const int nd = (int)((L->np - j0 < Q35_BLOCK ? L->np - j0 : Q35_BLOCK) / 4);
        const int32_t top = (1 << q35_col_bits(L, j0)) - 1;
        __m512i S[GEMM_VECS];
#pragma GCC unroll 16
        for (int t = 0; t < GEMM_VECS; t++) S[t] = _mm512_setzero_si512();
        /* unrolled with constant indices, so S stays in registers; the last
         * block of a row may have 2, 4 or 6 dwords */
#pragma GCC unroll 16
        for (int k = 0; k < 8; k++)
            if (k < nd) {
                const __m512i c = _mm512_load_si512((const void *)(codes + (j0 / 4 + k) * 16));
#pragma GCC unroll 16
                for (int t = 0; t < GEMM_VECS; t++)
                    if (t < nv)
                        S[t] = _mm512_dpbusd_epi32(S[t], c, _mm512_set1_epi32((int)load_u32((const uint8_t *)a[t].q + j0 + 4 * k)));
            }
        const __m512 ws = _mm512_load_ps(scales + b * 16);
#pragma GCC unroll 16
        for (int t = 0; t < GEMM_VECS; t++)
            if (t < nv) acc[t] = block_acc(acc[t], S[t], top * a[t].sum[b], a[t].d[b], ws);
    }
    const __mmask16 keep = (__mmask16)((1u << nr) - 1u);
#pragma GCC unroll 16
    for (int t = 0; t < GEMM_VECS; t++)
        if (t < nv) _mm512_mask_storeu_ps(out + t * ldo, keep, acc[t]);
}

#endif
