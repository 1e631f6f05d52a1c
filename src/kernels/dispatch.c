/* dispatch.c — picks a kernel set from what the CPU reports. */
#include <string.h>

#include "kernels/kernels.h"
#if defined(__aarch64__)
#include "kernels/neon.h"
#endif

static const q35_kernels set_scalar = {
    "scalar", q35_matvec_f32_ref, q35_wsum_f32_ref, q35_softmax_f32_ref, q35_swiglu_f32_ref,
    q35_quantize_act_ref, q35_block_sums_ref, q35_row_dot_ref, q35_row_dot_batch_ref};
static const q35_kernels set_avx2 = {
    "avx2", q35_matvec_f32_avx2, q35_wsum_f32_avx2, q35_softmax_f32_ref, q35_swiglu_f32_ref,
    q35_quantize_act_ref, q35_block_sums_avx2, q35_row_dot_avx2, q35_row_dot_batch_avx2};
static const q35_kernels set_avx512 = {
    "avx512", q35_matvec_f32_avx512, q35_wsum_f32_avx512, q35_softmax_f32_avx512,
    q35_swiglu_f32_avx512, q35_quantize_act_avx512, q35_block_sums_avx512, q35_row_dot_avx512, q35_row_dot_batch_avx512};

#if defined(__aarch64__)
static const q35_kernels set_neon = {
    "neon", q35_matvec_f32_neon, q35_wsum_f32_neon, q35_softmax_f32_neon, q35_swiglu_f32_neon,
    q35_quantize_act_neon, q35_block_sums_neon, q35_row_dot_neon, q35_row_dot_batch_neon};
#endif

static int cpu_has(const char *what) {
#if defined(__aarch64__)
    if (strcmp(what, "neon") == 0) return 1; /* Advanced SIMD is part of AArch64 */
#endif
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(what, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(what, "avx512") == 0) /* with VNNI for the Q3_5 family's dot products */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    return strcmp(what, "scalar") == 0;
}

int q35_kernels_select(q35_kernels *k, const char *want) {
    const q35_kernels *sets[] = {
#if defined(__aarch64__)
        &set_neon,
#endif
        &set_avx512, &set_avx2, &set_scalar};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        if (want && *want && strcmp(want, sets[i]->name) != 0) continue;
        if (cpu_has(sets[i]->name)) {
            *k = *sets[i];
            return 0;
        }
    }
    *k = set_scalar;
    return -1;
}
