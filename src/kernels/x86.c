/* x86.c — AVX2 and AVX-512 kernels. Each function carries its own target
 * attribute, so the library builds for any x86-64 and dispatch.c calls a
 * function only on a CPU that has its instructions. Results differ from
 * ref.c only by float rounding (different summation order, fused
 * multiply-add); tests/test_kernels.c bounds the difference. */
#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma")))
void q35_matvec_f32_avx2(float *out, const float *w, const float *x, int64_t n,
                         int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = w + r * n;
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
void q35_matvec_f32_avx512(float *out, const float *w, const float *x, int64_t n,
                           int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = w + r * n;
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

#else /* not x86-64: never selected by dispatch.c */
void q35_matvec_f32_avx2(float *out, const float *w, const float *x, int64_t n,
                         int64_t r0, int64_t r1) {
    q35_matvec_f32_ref(out, w, x, n, r0, r1);
}
void q35_matvec_f32_avx512(float *out, const float *w, const float *x, int64_t n,
                           int64_t r0, int64_t r1) {
    q35_matvec_f32_ref(out, w, x, n, r0, r1);
}
#endif
