/* ref.c — scalar reference kernels: plain loops, in order. They define
 * what every faster kernel must compute. */
#include <math.h>

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
