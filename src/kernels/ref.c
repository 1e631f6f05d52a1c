/* ref.c — scalar reference kernels: plain loops, in order. They define
 * what every faster kernel must compute. */
#include "kernels/kernels.h"

void q35_matvec_f32_ref(float *out, const float *w, const float *x, int64_t n,
                        int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = w + r * n;
        float sum = 0.0f;
        for (int64_t c = 0; c < n; c++) sum += row[c] * x[c];
        out[r - r0] = sum;
    }
}
