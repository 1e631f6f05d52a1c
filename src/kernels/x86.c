/* x86.c — AVX2 and AVX-512 kernels. Each function carries its own target
 * attribute, so the library builds for any x86-64 and dispatch.c calls a
 * function only on a CPU that has its instructions. Results differ from
 * ref.c only by float rounding (different summation order, fused
 * multiply-add); tests/test_kernels.c bounds the difference. */
#include "format/dtype.h"
#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
void q35_matvec_f32_avx2(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                         int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = w + r * ld;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        int64_t c = 0;
        for (; c + 32 <= n; c += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 8), _mm256_loadu_ps(x + c + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 16), _mm256_loadu_ps(x + c + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 24), _mm256_loadu_ps(x + c + 24), a3);
        }
        for (; c + 8 <= n; c += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
        float sum = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; c < n; c++) sum += row[c] * x[c];
        out[r - r0] = sum;
    }
}

__attribute__((target("avx512f")))
void q35_matvec_f32_avx512(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                           int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = w + r * ld;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        int64_t c = 0;
        for (; c + 64 <= n; c += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + 16), _mm512_loadu_ps(x + c + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + 32), _mm512_loadu_ps(x + c + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + 48), _mm512_loadu_ps(x + c + 48), a3);
        }
        for (; c + 16 <= n; c += 16)
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
        if (c < n) { /* masked tail: lanes past n read nothing */
            __mmask16 m = (__mmask16)((1u << (n - c)) - 1u);
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row + c),
                                 _mm512_maskz_loadu_ps(m, x + c), a1);
        }
        out[r - r0] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

__attribute__((target("avx512f")))
void q35_wsum_f32_avx512(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                         int64_t T) {
    for (int64_t i = 0; i < n; i += 32) { /* up to 32 columns at a time, masked */
        const int64_t w0 = n - i < 16 ? n - i : 16, w1 = n - i - 16;
        const __mmask16 m0 = (__mmask16)((1u << w0) - 1u);
        const __mmask16 m1 = w1 <= 0 ? 0 : w1 >= 16 ? 0xFFFF : (__mmask16)((1u << w1) - 1u);
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        for (int64_t t = 0; t < T; t++) {
            const __m512 at = _mm512_set1_ps(a[t]);
            const float *row = v + t * ld + i;
            s0 = _mm512_fmadd_ps(at, _mm512_maskz_loadu_ps(m0, row), s0);
            if (m1) s1 = _mm512_fmadd_ps(at, _mm512_maskz_loadu_ps(m1, row + 16), s1);
        }
        _mm512_mask_storeu_ps(out + i, m0, s0);
        if (m1) _mm512_mask_storeu_ps(out + i + 16, m1, s1);
    }
}

/* e^x for x in float range: x = k ln2 + r, |r| <= ln2/2, e^r by its Taylor
 * polynomial to degree 6 (truncation error < 2e-7 relative), scaled by 2^k
 * with scalef (which also saturates to 0 and inf). */
__attribute__((target("avx512f"))) static __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(89.0f));
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145752f), x); /* ln2 high bits */
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.42860677e-6f), r);      /* ln2 low bits */
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

__attribute__((target("avx512f")))
void q35_softmax_f32_avx512(float *x, int64_t n) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, x + i));
    }
    const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max));
        _mm512_mask_storeu_ps(x + i, m, e);
        vsum = _mm512_mask_add_ps(vsum, m, vsum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

__attribute__((target("avx512f")))
void q35_swiglu_f32_avx512(float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(_mm512_mul_ps(x, sig), _mm512_maskz_loadu_ps(m, u + i)));
    }
}

/* ---- the fp16 KV cache: halves widened with F16C / AVX-512F ---------- */

#define F16C_AVX2 __attribute__((target("avx2,fma,f16c")))
#define F16_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

F16C_AVX2 void q35_f32_to_f16_avx2(uint16_t *dst, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    q35_f32_to_f16_ref(dst + i, x + i, n - i);
}

F16C_AVX2 static __m256 load8h(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

F16C_AVX2 static __m256 load8b(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* The scores of nq heads over T rows of halves or (q8 set) int8 codes
 * times their scales d: the one loop behind q35_attn_scores_f16_avx2 and
 * q35_attn_scores_q8_avx2. */
F16C_AVX2 static inline __attribute__((always_inline)) void scores_avx2(float *s, int64_t lds, const void *k,
                                                                       const float *d, int64_t ld, const float *q,
                                                                       int nq, int64_t n, int64_t T, int q8) {
#define LOAD8(c) (q8 ? load8b((const int8_t *)k + t * ld + (c)) : load8h((const uint16_t *)k + t * ld + (c)))
    const int64_t n8 = n & ~(int64_t)7;
    for (int j = 0; j < nq; j++) {
        const float *x = q + j * n;
        for (int64_t t = 0; t < T; t++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int64_t c = 0;
            for (; c + 16 <= n; c += 16) {
                a0 = _mm256_fmadd_ps(LOAD8(c), _mm256_loadu_ps(x + c), a0);
                a1 = _mm256_fmadd_ps(LOAD8(c + 8), _mm256_loadu_ps(x + c + 8), a1);
            }
            if (c < n8) a0 = _mm256_fmadd_ps(LOAD8(c), _mm256_loadu_ps(x + c), a0);
            float sum = hsum256(_mm256_add_ps(a0, a1)), tail = 0.0f;
            for (c = n8; c < n; c++)
                tail += (q8 ? (float)((const int8_t *)k)[t * ld + c] : q35_f16_to_f32(((const uint16_t *)k)[t * ld + c])) *
                        x[c];
            s[j * lds + t] = q8 ? d[t] * (sum + tail) : sum + tail;
        }
    }
#undef LOAD8
}

F16C_AVX2 void q35_attn_scores_f16_avx2(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                        const float *q, int nq, int64_t n, int64_t T) {
    scores_avx2(s, lds, k, NULL, ld, q, nq, n, T, 0);
}

/* out[i] = sum over t < T of w[t] * v[t*ld + i] for i < n, v fp32 (kind
 * 0), half fp16 (1) or int8 codes (2; w[t] = a[t] * d[t], the row's
 * scale): the one loop behind q35_wsum_f32_avx2, q35_attn_wsum_f16_avx2
 * and q35_attn_wsum_q8_avx2. Per element the products are added in order
 * of t, as the references do, so the last columns take the scalar loop. */
F16C_AVX2 static inline __attribute__((always_inline)) void wsum_avx2(float *out, const float *a, const float *d,
                                                                     const void *v, int64_t ld, int64_t n,
                                                                     int64_t T, int kind) {
#define LOAD8(t, i)                                                                                                  \
    (kind == 1   ? load8h((const uint16_t *)v + (t) * ld + (i))                                                   \
     : kind == 2 ? load8b((const int8_t *)v + (t) * ld + (i))                                                     \
                 : _mm256_loadu_ps((const float *)v + (t) * ld + (i)))
#define W(t) (kind == 2 ? a[t] * d[t] : a[t])
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* two accumulators per 16 columns */
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        for (int64_t t = 0; t < T; t++) {
            const __m256 at = _mm256_set1_ps(W(t));
            s0 = _mm256_fmadd_ps(at, LOAD8(t, i), s0);
            s1 = _mm256_fmadd_ps(at, LOAD8(t, i + 8), s1);
        }
        _mm256_storeu_ps(out + i, s0);
        _mm256_storeu_ps(out + i + 8, s1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 s0 = _mm256_setzero_ps();
        for (int64_t t = 0; t < T; t++) s0 = _mm256_fmadd_ps(_mm256_set1_ps(W(t)), LOAD8(t, i), s0);
        _mm256_storeu_ps(out + i, s0);
    }
#undef LOAD8
    for (; i < n; i++) {
        float sum = 0.0f;
        for (int64_t t = 0; t < T; t++)
            sum += W(t) * (kind == 1   ? q35_f16_to_f32(((const uint16_t *)v)[t * ld + i])
                           : kind == 2 ? (float)((const int8_t *)v)[t * ld + i]
                                       : ((const float *)v)[t * ld + i]);
        out[i] = sum;
    }
#undef W
}

F16C_AVX2 void q35_wsum_f32_avx2(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                                 int64_t T) {
    wsum_avx2(out, a, NULL, v, ld, n, T, 0);
}

F16C_AVX2 void q35_attn_wsum_f16_avx2(float *out, const float *a, int64_t lda, const uint16_t *v,
                                      int64_t ld, int nq, int64_t n, int64_t T) {
    for (int j = 0; j < nq; j++) wsum_avx2(out + j * n, a + j * lda, NULL, v, ld, n, T, 1);
}

/* ---- the int8 KV cache: AVX2 ------------------------------------------- */

F16C_AVX2 void q35_kv_quant_q8_avx2(int8_t *q, float *d, const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
    __m256 mx = _mm256_setzero_ps();
    int bad = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, big, _CMP_NLE_UQ)); /* an infinity or a NaN */
        mx = _mm256_max_ps(mx, a);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4))); /* the max of finite values: any order */
    for (int64_t j = i; j < n; j++) {
        const float a = fabsf(x[j]);
        bad |= !(a <= FLT_MAX);
        if (a > amax) amax = a;
    }
    if (bad) {
        q35_kv_quant_q8_ref(q, d, x, n);
        return;
    }
    const float scale = amax / 127.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    const __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) { /* |x * inv| <= 127 (rounded): packing saturates nothing */
        const __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(w, w));
    }
    for (; i < n; i++) {
        const float r = nearbyintf(x[i] * inv);
        q[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
    }
    *d = scale;
}

F16C_AVX2 void q35_attn_scores_q8_avx2(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                                       const float *q, int nq, int64_t n, int64_t T) {
    scores_avx2(s, lds, k, d, ld, q, nq, n, T, 1);
}

F16C_AVX2 void q35_attn_wsum_q8_avx2(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                                     int64_t ld, int nq, int64_t n, int64_t T) {
    for (int j = 0; j < nq; j++) wsum_avx2(out + j * n, a + j * lda, d, v, ld, n, T, 2);
}

F16_AVX512 void q35_f32_to_f16_avx512(uint16_t *dst, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? 0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(dst + i, m, h);
    }
}

/* 16 halves at p (lanes outside m read nothing and are 0), widened. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) __m512
load16h(__mmask16 m, const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline __mmask16 mask16(int64_t left) {
    return left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
}

/* Lane r = the sum of v[r]'s 16 lanes, for r < 16: a tree of unpacks and
 * shuffles that adds only lanes of the same vector (45 operations for 16
 * sums instead of 8 each). */
static inline __attribute__((always_inline, target("avx512f"))) __m512 hsum16x16(const __m512 v[16]) {
    __m512 w[8], x[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* per 128 bits: a0+a2, b0+b2, a1+a3, b1+b3 */
        w[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* per 128 bits: one partial sum of v[4i .. 4i+3] each */
        x[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 y0 = _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 y1 = _mm512_add_ps(_mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* 16 int8 codes at p (lanes outside m read nothing and are 0), widened. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) __m512
load16b(__mmask16 m, const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

/* How far ahead (rows of the cache) the attention kernels prefetch. */
#ifndef ATT_PF_ROWS
#define ATT_PF_ROWS 16
#endif

/* The longest head the scores kernels widen into their buffer; longer ones
 * go to the reference. */
#define F16_MAX_HEAD 256

/* Where row t's columns from 16c begin in the cache (ld values a row:
 * halves, or int8 codes when q8). */
static inline const void *kv_at(const void *k, int64_t ld, int64_t t, int c, int q8) {
    return q8 ? (const void *)((const int8_t *)k + t * ld + 16 * c) : (const void *)((const uint16_t *)k + t * ld + 16 * c);
}

/* Row t of the cache, columns 16c .. 16c+15, widened to floats. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) __m512
kv_row16(const void *k, int64_t ld, int64_t t, int c, int q8) {
    if (q8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(kv_at(k, ld, t, c, q8))));
    return _mm512_cvtph_ps(_mm256_loadu_si256(kv_at(k, ld, t, c, q8)));
}

/* Prefetches the 16 rows ATT_PF_ROWS past t0 (those before T): decode
 * meets the cache cold, after the weights streamed past it. */
static inline __attribute__((always_inline)) void kv_prefetch16(const void *k, int64_t ld, int64_t n, int64_t t0,
                                                               int64_t T, int q8) {
    for (int64_t t = t0 + ATT_PF_ROWS; t < t0 + ATT_PF_ROWS + 16 && t < T; t++) {
        const char *p = kv_at(k, ld, t, 0, q8);
        for (int64_t b = 0; b < n * (q8 ? 1 : 2); b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
    }
}

/* 16 rows of keys from t0 (rows past T are zeros), halves or (q8 set) int8
 * codes with their scales d, widened into buf, then for every query head
 * their 16 dot products (NV vectors of 16 lanes per row, columns in order
 * by 16) reduced together, times the rows' scales for codes. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
scores_block(float *s, int64_t lds, const void *k, const float *d, int64_t ld, const float *q, int nq, int64_t n,
             int64_t T, int64_t t0, int NV, int q8) {
    __m512 buf[16 * (F16_MAX_HEAD / 16)];
    const int64_t rows = T - t0 < 16 ? T - t0 : 16;
    kv_prefetch16(k, ld, n, t0, T, q8);
    if (rows == 16 && n == 16 * NV) {
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < NV; c++) buf[r * NV + c] = kv_row16(k, ld, t0 + r, c, q8);
    } else {
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < NV; c++)
                buf[r * NV + c] = r >= rows ? _mm512_setzero_ps()
                                  : q8      ? load16b(mask16(n - 16 * c), kv_at(k, ld, t0 + r, c, q8))
                                            : load16h(mask16(n - 16 * c), kv_at(k, ld, t0 + r, c, q8));
    }
    const __m512 dv = q8 ? _mm512_maskz_loadu_ps(mask16(rows), d + t0) : _mm512_setzero_ps();
    for (int j = 0; j < nq; j++) {
        __m512 xc[F16_MAX_HEAD / 16], acc[16];
        for (int c = 0; c < NV; c++) xc[c] = _mm512_maskz_loadu_ps(mask16(n - 16 * c), q + j * n + 16 * c);
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) acc[r] = _mm512_mul_ps(buf[r * NV], xc[0]);
        for (int c = 1; c < NV; c++)
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++) acc[r] = _mm512_fmadd_ps(buf[r * NV + c], xc[c], acc[r]);
        const __m512 sums = hsum16x16(acc);
        _mm512_mask_storeu_ps(s + j * lds + t0, mask16(rows), q8 ? _mm512_mul_ps(sums, dv) : sums);
    }
}

/* v[i] lane r = v[r] lane i (a 16 x 16 transpose: unpacks and shuffles
 * within 128-bit lanes, then two rounds across them; 64 operations). */
static inline __attribute__((always_inline, target("avx512f"))) void transpose16(__m512 v[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) { /* lane k: rows 2i, 2i+1 at columns 4k, 4k+1 | 4k+2, 4k+3 */
        t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) { /* u[4g + m] lane k: rows 4g .. 4g+3 at column 4k + m */
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) { /* column 4k + m: lane g of it is lane k of u[4g + m] */
        const __m512 x0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44),
                     x1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
        const __m512 x2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44),
                     x3 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
        v[m] = _mm512_shuffle_f32x4(x0, x2, 0x88);
        v[4 + m] = _mm512_shuffle_f32x4(x0, x2, 0xDD);
        v[8 + m] = _mm512_shuffle_f32x4(x1, x3, 0x88);
        v[12 + m] = _mm512_shuffle_f32x4(x1, x3, 0xDD);
    }
}

/* NJ (1..8) heads' scores (q: their rows, n apart) at the 16 positions of
 * kt (kt[c]: column c of 16 rows), into o (rows lds apart): a chain of
 * FMAs per head over the columns in order. */
static inline __attribute__((always_inline, target("avx512f"))) void
scores_heads_t(float *o, int64_t lds, const __m512 *kt, const float *q, int64_t n, int NJ, __m512 dv, int q8) {
    __m512 acc[8];
#pragma GCC unroll 8
    for (int j = 0; j < NJ; j++) acc[j] = _mm512_mul_ps(kt[0], _mm512_set1_ps(q[j * n]));
    for (int64_t c = 1; c < n; c++) {
        const __m512 kc = kt[c];
#pragma GCC unroll 8
        for (int j = 0; j < NJ; j++) acc[j] = _mm512_fmadd_ps(kc, _mm512_set1_ps(q[j * n + c]), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < NJ; j++) _mm512_storeu_ps(o + j * lds, q8 ? _mm512_mul_ps(acc[j], dv) : acc[j]);
}

/* scores_block for 16 whole rows of n = 16 NV columns and many heads: the
 * rows widened and transposed once (kt[c]: column c of the 16 rows), then
 * for up to 8 heads at a time a chain of FMAs per head, column by column
 * (the reference's order), the positions in the lanes: no reduction
 * across lanes, which costs scores_block 45 operations per head and 16
 * rows. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
scores_block_t(float *s, int64_t lds, const void *k, const float *d, int64_t ld, const float *q, int nq, int64_t n,
               int64_t T, int64_t t0, int NV, int q8) {
    __m512 kt[F16_MAX_HEAD];
    kv_prefetch16(k, ld, n, t0, T, q8);
    for (int c = 0; c < NV; c++) {
        __m512 v[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) v[r] = kv_row16(k, ld, t0 + r, c, q8);
        transpose16(v);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) kt[16 * c + i] = v[i];
    }
    const __m512 dv = q8 ? _mm512_loadu_ps(d + t0) : _mm512_setzero_ps();
    for (int j0 = 0; j0 < nq; j0 += 8) {
        float *o = s + j0 * lds + t0;
        const float *qj = q + j0 * n;
        switch (nq - j0) {
        case 1: scores_heads_t(o, lds, kt, qj, n, 1, dv, q8); break;
        case 2: scores_heads_t(o, lds, kt, qj, n, 2, dv, q8); break;
        case 3: scores_heads_t(o, lds, kt, qj, n, 3, dv, q8); break;
        case 4: scores_heads_t(o, lds, kt, qj, n, 4, dv, q8); break;
        case 5: scores_heads_t(o, lds, kt, qj, n, 5, dv, q8); break;
        case 6: scores_heads_t(o, lds, kt, qj, n, 6, dv, q8); break;
        case 7: scores_heads_t(o, lds, kt, qj, n, 7, dv, q8); break;
        default: scores_heads_t(o, lds, kt, qj, n, 8, dv, q8); break;
        }
    }
}

/* Keys by blocks of 16 rows, each widened once for all nq heads; wide:
 * whole blocks of a head length that is a multiple of 16 transposed
 * (scores_block_t), the rest as scores_block. Which blocks go which way
 * depends on n and T only: a head's scores never depend on nq. Heads
 * longer than F16_MAX_HEAD go to the reference. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
scores_rows(float *s, int64_t lds, const void *k, const float *d, int64_t ld, const float *q, int nq, int64_t n,
            int64_t T, int q8, int wide) {
    if (n > F16_MAX_HEAD) {
        if (q8) q35_attn_scores_q8_ref(s, lds, k, d, ld, q, nq, n, T);
        else q35_attn_scores_f16_ref(s, lds, k, ld, q, nq, n, T);
        return;
    }
    const int nv = (int)((n + 15) / 16);
    const int trans = wide && n == 16 * nv;
    for (int64_t t0 = 0; t0 < T; t0 += 16) {
        if (trans && T - t0 >= 16)
            scores_block_t(s, lds, k, d, ld, q, nq, n, T, t0, nv, q8);
        else
            scores_block(s, lds, k, d, ld, q, nq, n, T, t0, nv, q8);
    }
}

F16_AVX512 void q35_attn_scores_f16_avx512(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                           const float *q, int nq, int64_t n, int64_t T) {
    scores_rows(s, lds, k, NULL, ld, q, nq, n, T, 0, 0);
}

F16_AVX512 void q35_attn_scores_f16_wide_avx512(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                                const float *q, int nq, int64_t n, int64_t T) {
    scores_rows(s, lds, k, NULL, ld, q, nq, n, T, 0, 1);
}

F16_AVX512 void q35_attn_scores_q8_avx512(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                                          const float *q, int nq, int64_t n, int64_t T) {
    scores_rows(s, lds, k, d, ld, q, nq, n, T, 1, 0);
}

F16_AVX512 void q35_attn_scores_q8_wide_avx512(float *s, int64_t lds, const int8_t *k, const float *d,
                                               int64_t ld, const float *q, int nq, int64_t n, int64_t T) {
    scores_rows(s, lds, k, d, ld, q, nq, n, T, 1, 1);
}

/* NJ (1..4) heads' weighted sums over 64 columns from i0 (masked past n):
 * each value row (halves, or int8 codes with their scales d: (q8 set))
 * widened once for the NJ heads. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
wsum_block(float *out, const float *a, int64_t lda, const void *v, const float *d, int64_t ld, int64_t n,
           int64_t T, int64_t i0, int NJ, int q8) {
    const __mmask16 m0 = mask16(n - i0), m1 = mask16(n - i0 - 16), m2 = mask16(n - i0 - 32),
                    m3 = mask16(n - i0 - 48);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) acc[j][c] = _mm512_setzero_ps();
    for (int64_t t = 0; t < T; t++) {
        __m512 r0, r1, r2, r3;
        if (t + ATT_PF_ROWS < T) { /* this row's 64 columns ATT_PF_ROWS rows on */
            const char *p = q8 ? (const char *)((const int8_t *)v + (t + ATT_PF_ROWS) * ld + i0)
                               : (const char *)((const uint16_t *)v + (t + ATT_PF_ROWS) * ld + i0);
            _mm_prefetch(p, _MM_HINT_T0);
            if (!q8) _mm_prefetch(p + 64, _MM_HINT_T0);
        }
        if (q8) {
            const int8_t *row = (const int8_t *)v + t * ld + i0;
            r0 = load16b(m0, row), r1 = load16b(m1, row + 16), r2 = load16b(m2, row + 32), r3 = load16b(m3, row + 48);
        } else {
            const uint16_t *row = (const uint16_t *)v + t * ld + i0;
            r0 = load16h(m0, row), r1 = load16h(m1, row + 16), r2 = load16h(m2, row + 32), r3 = load16h(m3, row + 48);
        }
#pragma GCC unroll 4
        for (int j = 0; j < NJ; j++) {
            const __m512 at = _mm512_set1_ps(q8 ? a[j * lda + t] * d[t] : a[j * lda + t]);
            acc[j][0] = _mm512_fmadd_ps(at, r0, acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(at, r1, acc[j][1]);
            acc[j][2] = _mm512_fmadd_ps(at, r2, acc[j][2]);
            acc[j][3] = _mm512_fmadd_ps(at, r3, acc[j][3]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++) {
        float *o = out + j * n + i0;
        _mm512_mask_storeu_ps(o, m0, acc[j][0]);
        _mm512_mask_storeu_ps(o + 16, m1, acc[j][1]);
        _mm512_mask_storeu_ps(o + 32, m2, acc[j][2]);
        _mm512_mask_storeu_ps(o + 48, m3, acc[j][3]);
    }
}

/* Every 64 columns, the heads by fours. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
wsum_heads(float *out, const float *a, int64_t lda, const void *v, const float *d, int64_t ld, int nq, int64_t n,
           int64_t T, int q8) {
    for (int64_t i0 = 0; i0 < n; i0 += 64)
        for (int j = 0; j < nq; j += 4) {
            float *o = out + j * n;
            const float *w = a + j * lda;
            switch (nq - j) {
            case 1: wsum_block(o, w, lda, v, d, ld, n, T, i0, 1, q8); break;
            case 2: wsum_block(o, w, lda, v, d, ld, n, T, i0, 2, q8); break;
            case 3: wsum_block(o, w, lda, v, d, ld, n, T, i0, 3, q8); break;
            default: wsum_block(o, w, lda, v, d, ld, n, T, i0, 4, q8); break;
            }
        }
}

F16_AVX512 void q35_attn_wsum_f16_avx512(float *out, const float *a, int64_t lda, const uint16_t *v,
                                         int64_t ld, int nq, int64_t n, int64_t T) {
    wsum_heads(out, a, lda, v, NULL, ld, nq, n, T, 0);
}

F16_AVX512 void q35_attn_wsum_q8_avx512(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                                        int64_t ld, int nq, int64_t n, int64_t T) {
    wsum_heads(out, a, lda, v, d, ld, nq, n, T, 1);
}

/* ---- the int8 KV cache's rows: AVX-512 ---------------------------------- */

F16_AVX512 void q35_kv_quant_q8_avx512(int8_t *q, float *d, const float *x, int64_t n) {
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    __m512 mx = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(mask16(n - i), x + i));
        bad |= _mm512_cmp_ps_mask(a, big, _CMP_NLE_UQ); /* an infinity or a NaN */
        mx = _mm512_max_ps(mx, a);
    }
    if (bad) {
        q35_kv_quant_q8_ref(q, d, x, n);
        return;
    }
    const float amax = _mm512_reduce_max_ps(mx); /* the max of finite values: any order */
    const float scale = amax / 127.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    const __m512 vi = _mm512_set1_ps(inv);
    for (int64_t i = 0; i < n; i += 16) { /* |x * inv| <= 127 (rounded): the narrowing saturates nothing */
        const __mmask16 m = mask16(n - i);
        const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vi));
        _mm_mask_storeu_epi8(q + i, m, _mm512_cvtsepi32_epi8(r));
    }
    *d = scale;
}

#else /* not x86-64: never selected by dispatch.c */
void q35_matvec_f32_avx2(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                         int64_t r0, int64_t r1) {
    q35_matvec_f32_ref(out, w, ld, x, n, r0, r1);
}
void q35_matvec_f32_avx512(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                           int64_t r0, int64_t r1) {
    q35_matvec_f32_ref(out, w, ld, x, n, r0, r1);
}
void q35_wsum_f32_avx2(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                       int64_t T) {
    q35_wsum_f32_ref(out, a, v, ld, n, T);
}
void q35_wsum_f32_avx512(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                         int64_t T) {
    q35_wsum_f32_ref(out, a, v, ld, n, T);
}
void q35_softmax_f32_avx512(float *x, int64_t n) { q35_softmax_f32_ref(x, n); }
void q35_swiglu_f32_avx512(float *g, const float *u, int64_t n) { q35_swiglu_f32_ref(g, u, n); }
void q35_f32_to_f16_avx2(uint16_t *dst, const float *x, int64_t n) { q35_f32_to_f16_ref(dst, x, n); }
void q35_f32_to_f16_avx512(uint16_t *dst, const float *x, int64_t n) { q35_f32_to_f16_ref(dst, x, n); }
void q35_attn_scores_f16_avx2(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                              const float *q, int nq, int64_t n, int64_t T) {
    q35_attn_scores_f16_ref(s, lds, k, ld, q, nq, n, T);
}
void q35_attn_scores_f16_avx512(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                const float *q, int nq, int64_t n, int64_t T) {
    q35_attn_scores_f16_ref(s, lds, k, ld, q, nq, n, T);
}
void q35_attn_scores_f16_wide_avx512(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                                     const float *q, int nq, int64_t n, int64_t T) {
    q35_attn_scores_f16_ref(s, lds, k, ld, q, nq, n, T);
}
void q35_attn_wsum_f16_avx2(float *out, const float *a, int64_t lda, const uint16_t *v,
                            int64_t ld, int nq, int64_t n, int64_t T) {
    q35_attn_wsum_f16_ref(out, a, lda, v, ld, nq, n, T);
}
void q35_attn_wsum_f16_avx512(float *out, const float *a, int64_t lda, const uint16_t *v,
                              int64_t ld, int nq, int64_t n, int64_t T) {
    q35_attn_wsum_f16_ref(out, a, lda, v, ld, nq, n, T);
}
void q35_kv_quant_q8_avx2(int8_t *q, float *d, const float *x, int64_t n) { q35_kv_quant_q8_ref(q, d, x, n); }
void q35_kv_quant_q8_avx512(int8_t *q, float *d, const float *x, int64_t n) { q35_kv_quant_q8_ref(q, d, x, n); }
void q35_attn_scores_q8_avx2(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                             const float *q, int nq, int64_t n, int64_t T) {
    q35_attn_scores_q8_ref(s, lds, k, d, ld, q, nq, n, T);
}
void q35_attn_scores_q8_avx512(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                               const float *q, int nq, int64_t n, int64_t T) {
    q35_attn_scores_q8_ref(s, lds, k, d, ld, q, nq, n, T);
}
void q35_attn_scores_q8_wide_avx512(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                                    const float *q, int nq, int64_t n, int64_t T) {
    q35_attn_scores_q8_ref(s, lds, k, d, ld, q, nq, n, T);
}
void q35_attn_wsum_q8_avx2(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                           int64_t ld, int nq, int64_t n, int64_t T) {
    q35_attn_wsum_q8_ref(out, a, lda, v, d, ld, nq, n, T);
}
void q35_attn_wsum_q8_avx512(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                             int64_t ld, int nq, int64_t n, int64_t T) {
    q35_attn_wsum_q8_ref(out, a, lda, v, d, ld, nq, n, T);
}
#endif
