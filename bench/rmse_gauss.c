/* rmse_gauss.c — bits per weight (all-in) and relative weight RMSE of
 * every Q3_5-family type on an N x M matrix of N(0,1) weights (default
 * 4096 x 4096, seeded), and the quantizer's time on 2 threads.
 *   build/bench/rmse_gauss [N [M]]   */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "format/q35quant.h"

static uint64_t state = 12345;
static double uniform(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return ((double)(state >> 11) + 0.5) / 9007199254740992.0;
}

int main(int argc, char **argv) {
    const int64_t n = argc > 1 ? atol(argv[1]) : 4096, m = argc > 2 ? atol(argv[2]) : 4096;
    float *W = malloc((size_t)(n * m) * sizeof *W);
    if (!W || n < 1 || m < 1) return 1;
    for (int64_t i = 0; i < n * m; i += 2) { /* Box-Muller */
        const double r = sqrt(-2.0 * log(uniform())), t = 6.283185307179586 * uniform();
        W[i] = (float)(r * cos(t));
        if (i + 1 < n * m) W[i + 1] = (float)(r * sin(t));
    }
    const int types[] = {Q35_TYPE_Q2_5, Q35_TYPE_Q3_5, Q35_TYPE_Q4_5, Q35_TYPE_Q8_S};
    printf("| type | bpw (all-in) | plus columns | relative RMSE | quantize time (2 threads) |\n|---|---:|---:|---:|---:|\n");
    for (int k = 0; k < 4; k++) {
        q35_layout L;
        q35_layout_init(&L, types[k], n, m);
        uint8_t *out = malloc(L.total_bytes);
        q35_quant_stats st;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (!out || q35_quantize_tensor(&L, W, NULL, 2, out, &st)) return 1;
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("| %s | %.4f | %lld | %.2f%% | %.2f s |\n", q35_family_name(types[k]),
               (double)L.total_bytes * 8.0 / ((double)n * (double)m), (long long)L.n4,
               100.0 * sqrt(st.err2 / st.ref2), (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec));
        free(out);
    }
    free(W);
    return 0;
}
