/* x86_q35.c — AVX-512 (with VNNI) and AVX2 versions of the Q3_5-family
 * kernels of q35dot.h. Integer block sums are bit-identical to
 * q35dot_ref.c; row dots differ from it by float rounding only (the
 * per-lane integer sums are converted exactly, then scaled and added in
 * another order). Full groups of 64 columns take the SIMD path; a shorter
 * last group goes through the reference. */
#include "kernels/q35dot.h"

#if defined(__x86_64__)
#include <float.h>
#include <immintrin.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX2 __attribute__((target("avx2,fma")))

static uint64_t load_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Bits of the plus plane for the 64 columns of group g (0 past n4; n4 is a
 * multiple of 32, so a group is all, half or none plus). */
static uint64_t plus_bits(const q35_layout *L, const uint8_t *row, int64_t g) {
    const int64_t c0 = g * Q35_GROUP;
    if (c0 >= L->n4) return 0;
    if (c0 + Q35_GROUP <= L->n4) return load_u64(row + L->plus_off + (uint64_t)g * 8);
    return load_u32(row + L->plus_off + (uint64_t)g * 8);
}

/* ---------------------------------------------------------------- AVX-512 */

AVX512 void q35_quantize_act_avx512(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum) {
    for (int64_t j0 = 0, b = 0; j0 < np; j0 += Q35_BLOCK, b++) {
        const int64_t len = np - j0 < Q35_BLOCK ? np - j0 : Q35_BLOCK;
        const __mmask16 m0 = len >= 16 ? 0xFFFF : (__mmask16)((1u << len) - 1u);
        const __mmask16 m1 = len >= 32 ? 0xFFFF : len <= 16 ? 0 : (__mmask16)((1u << (len - 16)) - 1u);
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + j0), x1 = _mm512_maskz_loadu_ps(m1, x + j0 + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        const float id = amax > 0.0f && 127.0f / amax <= FLT_MAX ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        /* round to nearest even (the default MXCSR mode, as nearbyintf) */
        __m512i q0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(
            _mm512_roundscale_ps(_mm512_mul_ps(x0, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), lo), hi));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(
            _mm512_roundscale_ps(_mm512_mul_ps(x1, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), lo), hi));
        _mm_mask_storeu_epi8(q + j0, m0, _mm512_cvtsepi32_epi8(q0));
        _mm_mask_storeu_epi8(q + j0 + 16, m1, _mm512_cvtsepi32_epi8(q1));
        sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        d[b] = amax / 127.0f;
    }
}

/* The 64 codes of full group g, one per byte. */
AVX512 static __m512i decode64(const q35_layout *L, const uint8_t *row, int64_t g) {
    __m512i v;
    if (L->low_bits == 2) {
        /* byte i holds columns i, i+16, i+32, i+48: copy the 16 bytes into
         * each 128-bit lane and shift lane k right by 2k */
        const __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128((const void *)(row + L->low_off + (uint64_t)g * 16)));
        const __m512i shifts = _mm512_set_epi64(6 * 0x0001000100010001ll, 6 * 0x0001000100010001ll,
                                                4 * 0x0001000100010001ll, 4 * 0x0001000100010001ll,
                                                2 * 0x0001000100010001ll, 2 * 0x0001000100010001ll, 0, 0);
        v = _mm512_and_si512(_mm512_srlv_epi16(b, shifts), _mm512_set1_epi8(3));
    } else if (L->low_bits == 4) {
        /* byte i holds columns i (low nibble) and i+32 (high nibble) */
        const __m256i b = _mm256_loadu_si256((const void *)(row + L->low_off + (uint64_t)g * 32));
        const __m256i m = _mm256_set1_epi8(15);
        v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(b, m)),
                               _mm256_and_si256(_mm256_srli_epi16(b, 4), m), 1);
    } else {
        v = _mm512_loadu_si512((const void *)(row + L->low_off + (uint64_t)g * 64));
    }
    const uint64_t plane_bytes = (uint64_t)L->np / 8;
    for (int p = L->low_bits; p < L->b; p++) {
        const __mmask64 k = _cvtu64_mask64(load_u64(row + L->plane_off + (uint64_t)(p - L->low_bits) * plane_bytes + (uint64_t)g * 8));
        v = _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8((char)(1 << p)));
    }
    const uint64_t plus = plus_bits(L, row, g);
    if (plus) v = _mm512_mask_add_epi8(v, _cvtu64_mask64(plus), v, _mm512_set1_epi8((char)(1 << L->b)));
    return v;
}

AVX512 void q35_block_sums_avx512(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    const int64_t full = L->np / Q35_GROUP;
    for (int64_t g = 0; g < full; g++) {
        const __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), decode64(L, row, g),
                                                _mm512_loadu_si512((const void *)(q + g * 64)));
        S[2 * g] = _mm512_mask_reduce_add_epi32(0x00FF, acc);
        S[2 * g + 1] = _mm512_mask_reduce_add_epi32(0xFF00, acc);
    }
    q35_block_sums_from_ref(L, row, q, S, full * 2); /* the short last group */
}

AVX512 float q35_row_dot_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                                const q35_qact *a) {
    const int64_t full = L->np / Q35_GROUP;
    __m512 acc = _mm512_setzero_ps();
    float offset = 0.0f;
    for (int64_t g = 0; g < full; g++) {
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), decode64(L, row, g),
                                                _mm512_loadu_si512((const void *)(a->q + g * 64)));
        const int64_t b0 = 2 * g, b1 = b0 + 1;
        const float f0 = table[row[b0]] * a->d[b0], f1 = table[row[b1]] * a->d[b1];
        const __m512 f = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(2.0f * f0), _mm512_set1_ps(2.0f * f1));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), f, acc);
        offset += f0 * (float)(((1 << q35_col_bits(L, b0 * Q35_BLOCK)) - 1) * a->sum[b0]) +
                  f1 * (float)(((1 << q35_col_bits(L, b1 * Q35_BLOCK)) - 1) * a->sum[b1]);
    }
    float sum = _mm512_reduce_add_ps(acc) - offset;
    return sum + q35_row_dot_from_ref(L, table, row, a, full * 2);
}

AVX512 void q35_row_dot_batch_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                                     const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    for (int t = 0; t < n_act; t++) out[(int64_t)t * out_stride] = q35_row_dot_avx512(L, table, row, &a[t]);
}

/* ------------------------------------------------------------------ AVX2 */

/* The 32 codes of block h (0 or 1) of full group g, one per byte. */
AVX2 static __m256i decode32(const q35_layout *L, const uint8_t *row, int64_t g, int h) {
    __m256i v;
    if (L->low_bits == 2) {
        /* the group's 16 bytes in both lanes; block h's columns are slots
         * 2h (lane 0) and 2h + 1 (lane 1) */
        const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)(row + L->low_off + (uint64_t)g * 16)));
        const __m256i shifts = _mm256_setr_epi32(4 * h, 4 * h, 4 * h, 4 * h, 4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 2);
        v = _mm256_and_si256(_mm256_srlv_epi32(b, shifts), _mm256_set1_epi8(3));
    } else if (L->low_bits == 4) {
        const __m256i b = _mm256_loadu_si256((const void *)(row + L->low_off + (uint64_t)g * 32));
        v = _mm256_and_si256(h ? _mm256_srli_epi16(b, 4) : b, _mm256_set1_epi8(15));
    } else {
        v = _mm256_loadu_si256((const void *)(row + L->low_off + (uint64_t)g * 64 + (uint64_t)h * 32));
    }
    /* 32 plane bits -> 32 bytes of 0/0xFF: byte k takes bit k of the word */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const uint64_t plane_bytes = (uint64_t)L->np / 8;
    for (int p = L->low_bits; p < L->b; p++) {
        const uint32_t w = load_u32(row + L->plane_off + (uint64_t)(p - L->low_bits) * plane_bytes + (uint64_t)g * 8 + (uint64_t)h * 4);
        const __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)w), spread), bit), bit);
        v = _mm256_or_si256(v, _mm256_and_si256(on, _mm256_set1_epi8((char)(1 << p))));
    }
    if (g * Q35_GROUP + h * Q35_BLOCK < L->n4) {
        const uint32_t w = load_u32(row + L->plus_off + (uint64_t)g * 8 + (uint64_t)h * 4);
        const __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)w), spread), bit), bit);
        v = _mm256_or_si256(v, _mm256_and_si256(on, _mm256_set1_epi8((char)(1 << L->b))));
    }
    return v;
}

/* Eight int32 partial sums of codes (u8) x activations (s8) over 32 columns.
 * maddubs adds pairs into int16: safe for codes < 2^7 (2 * 127 * 127 <
 * 2^15); 8-bit codes are widened to int16 first. */
AVX2 static __m256i dot32(__m256i codes, __m256i act, int wide) {
    if (!wide)
        return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, act), _mm256_set1_epi16(1));
    const __m256i c0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(codes));
    const __m256i c1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(codes, 1));
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(act));
    const __m256i a1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(act, 1));
    return _mm256_add_epi32(_mm256_madd_epi16(c0, a0), _mm256_madd_epi16(c1, a1));
}

AVX2 static int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

AVX2 void q35_block_sums_avx2(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    const int64_t full = L->np / Q35_GROUP;
    const int wide = L->b + (L->n4 > 0) > 7;
    for (int64_t g = 0; g < full; g++)
        for (int h = 0; h < 2; h++)
            S[2 * g + h] = hsum_epi32(dot32(decode32(L, row, g, h),
                                            _mm256_loadu_si256((const void *)(q + g * 64 + h * 32)), wide));
    q35_block_sums_from_ref(L, row, q, S, full * 2);
}

AVX2 float q35_row_dot_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                            const q35_qact *a) {
    const int64_t full = L->np / Q35_GROUP;
    const int wide = L->b + (L->n4 > 0) > 7;
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;
    for (int64_t g = 0; g < full; g++)
        for (int h = 0; h < 2; h++) {
            const int64_t b = 2 * g + h;
            const __m256i dot = dot32(decode32(L, row, g, h),
                                      _mm256_loadu_si256((const void *)(a->q + b * 32)), wide);
            const float f = table[row[b]] * a->d[b];
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(2.0f * f), acc);
            offset += f * (float)(((1 << q35_col_bits(L, b * Q35_BLOCK)) - 1) * a->sum[b]);
        }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float sum = _mm_cvtss_f32(s) - offset;
    return sum + q35_row_dot_from_ref(L, table, row, a, full * 2);
}

AVX2 void q35_row_dot_batch_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                                 const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    for (int t = 0; t < n_act; t++) out[(int64_t)t * out_stride] = q35_row_dot_avx2(L, table, row, &a[t]);
}

#else /* not x86-64: never selected by dispatch.c */
void q35_quantize_act_avx512(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum) {
    q35_quantize_act_ref(x, np, q, d, sum);
}
void q35_block_sums_avx512(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    q35_block_sums_ref(L, row, q, S);
}
float q35_row_dot_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                         const q35_qact *a) {
    return q35_row_dot_ref(L, table, row, a);
}
void q35_block_sums_avx2(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    q35_block_sums_ref(L, row, q, S);
}
void q35_row_dot_batch_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                              const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    q35_row_dot_batch_ref(L, table, row, a, n_act, out, out_stride);
}
void q35_row_dot_batch_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                            const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    q35_row_dot_batch_ref(L, table, row, a, n_act, out, out_stride);
}
float q35_row_dot_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                       const q35_qact *a) {
    return q35_row_dot_ref(L, table, row, a);
}
#endif
