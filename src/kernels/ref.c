/* ref.c — scalar reference kernels: plain loops, in order. They define
 * what every faster kernel must compute. */
#include <float.h>
#include <math.h>

#include "format/dtype.h"
#include "kernels/kernels.h"

void q35_matvec_f32_ref(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                        int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = w + r * ld;
        float sum = 0.0f;
        for (int64_t c = 0; c < n; c++) sum += row[c] * x[c];
        out[r - r0] = sum;
    }
}

void q35_wsum_f32_ref(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                      int64_t T) {
    for (int64_t i = 0; i < n; i++) out[i] = 0.0f;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) out[i] += a[t] * v[t * ld + i];
}

void q35_softmax_f32_ref(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (int64_t i = 0; i < n; i++) x[i] /= sum;
}

void q35_swiglu_f32_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] * (1.0f / (1.0f + expf(-g[i]))) * u[i];
}

void q35_f32_to_f16_ref(uint16_t *dst, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = q35_f32_to_f16(x[i]);
}

void q35_attn_scores_f16_ref(float *s, int64_t lds, const uint16_t *k, int64_t ld,
                             const float *q, int nq, int64_t n, int64_t T) {
    for (int j = 0; j < nq; j++)
        for (int64_t t = 0; t < T; t++) {
            float sum = 0.0f;
            for (int64_t c = 0; c < n; c++) sum += q35_f16_to_f32(k[t * ld + c]) * q[j * n + c];
            s[j * lds + t] = sum;
        }
}

void q35_attn_wsum_f16_ref(float *out, const float *a, int64_t lda, const uint16_t *v,
                           int64_t ld, int nq, int64_t n, int64_t T) {
    for (int j = 0; j < nq; j++) {
        float *o = out + j * n;
        for (int64_t i = 0; i < n; i++) o[i] = 0.0f;
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < n; i++) o[i] += a[j * lda + t] * q35_f16_to_f32(v[t * ld + i]);
    }
}

void q35_kv_quant_q8_ref(int8_t *q, float *d, const float *x, int64_t n) {
    float amax = 0.0f;
    int finite = 1;
    for (int64_t i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        finite &= a <= FLT_MAX; /* false for an infinity or a NaN */
        if (a > amax) amax = a;
    }
    if (!finite) {
        for (int64_t i = 0; i < n; i++) q[i] = 0;
        *d = NAN;
        return;
    }
    const float scale = amax / 127.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float r = nearbyintf(x[i] * inv); /* to nearest, ties to even */
        q[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
    }
    *d = scale;
}

void q35_attn_scores_q8_ref(float *s, int64_t lds, const int8_t *k, const float *d, int64_t ld,
                            const float *q, int nq, int64_t n, int64_t T) {
    for (int j = 0; j < nq; j++)
        for (int64_t t = 0; t < T; t++) {
            float sum = 0.0f;
            for (int64_t c = 0; c < n; c++) sum += (float)k[t * ld + c] * q[j * n + c];
            s[j * lds + t] = d[t] * sum;
        }
}

void q35_attn_wsum_q8_ref(float *out, const float *a, int64_t lda, const int8_t *v, const float *d,
                          int64_t ld, int nq, int64_t n, int64_t T) {
    for (int j = 0; j < nq; j++) {
        float *o = out + j * n;
        for (int64_t i = 0; i < n; i++) o[i] = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            const float w = a[j * lda + t] * d[t];
            for (int64_t i = 0; i < n; i++) o[i] += w * (float)v[t * ld + i];
        }
    }
}
