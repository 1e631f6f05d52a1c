/* x86.c — AVX2 and AVX-512 kernels. Each function carries its own target
 * attribute, so the library builds for any x86-64 and dispatch.c calls a
 * function only on a CPU that has its instructions. Results differ from
 * ref.c only by float rounding (different summation order, fused
 * multiply-add); tests/test_kernels.c bounds the difference. */
#include "kernels/kernels.h"

#if defined(__x86_64__)
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

__attribute__((target("avx2,fma")))
void q35_wsum_f32_avx2(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                       int64_t T) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* two accumulators per 16 columns */
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        for (int64_t t = 0; t < T; t++) {
            const __m256 at = _mm256_broadcast_ss(a + t);
            s0 = _mm256_fmadd_ps(at, _mm256_loadu_ps(v + t * ld + i), s0);
            s1 = _mm256_fmadd_ps(at, _mm256_loadu_ps(v + t * ld + i + 8), s1);
        }
        _mm256_storeu_ps(out + i, s0);
        _mm256_storeu_ps(out + i + 8, s1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 s0 = _mm256_setzero_ps();
        for (int64_t t = 0; t < T; t++)
            s0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + t), _mm256_loadu_ps(v + t * ld + i), s0);
        _mm256_storeu_ps(out + i, s0);
    }
    for (; i < n; i++) {
        float sum = 0.0f;
        for (int64_t t = 0; t < T; t++) sum += a[t] * v[t * ld + i];
        out[i] = sum;
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
#endif
