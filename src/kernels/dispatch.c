/* dispatch.c — picks a kernel set from what the CPU reports. */
#include <string.h>

#include "kernels/kernels.h"
#if defined(__aarch64__)
#include "kernels/neon.h"
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define F32_SET(mv, ws, sm, sg) \
    .matvec_f32 = mv, .wsum_f32 = ws, .softmax_f32 = sm, .swiglu_f32 = sg
#define F16_SET(cv, sc, scw, wsum) \
    .f32_to_f16 = cv, .attn_scores_f16 = sc, .attn_scores_f16_wide = scw, .attn_wsum_f16 = wsum
#define Q8_SET(qz, sc, scw, wsum) \
    .kv_quant_q8 = qz, .attn_scores_q8 = sc, .attn_scores_q8_wide = scw, .attn_wsum_q8 = wsum
#define Q35_SET(qa, bs, rd, rdb) \
    .q35_quantize_act = qa, .q35_block_sums = bs, .q35_row_dot = rd, .q35_row_dot_batch = rdb

static const q35_kernels set_scalar = {
    .name = "scalar",
    F32_SET(q35_matvec_f32_ref, q35_wsum_f32_ref, q35_softmax_f32_ref, q35_swiglu_f32_ref),
    F16_SET(q35_f32_to_f16_ref, q35_attn_scores_f16_ref, q35_attn_scores_f16_ref, q35_attn_wsum_f16_ref),
    Q8_SET(q35_kv_quant_q8_ref, q35_attn_scores_q8_ref, q35_attn_scores_q8_ref, q35_attn_wsum_q8_ref),
    Q35_SET(q35_quantize_act_ref, q35_block_sums_ref, q35_row_dot_ref, q35_row_dot_batch_ref),
    .q35_permute_act = q35_permute_act_ref, .q35_gemm = q35_gemm_ref, .q35_r16_rows = q35_r16_rows_ref,
    .q35_r16_gemm = q35_r16_gemm_ref};
static const q35_kernels set_avx2 = {
    .name = "avx2",
    F32_SET(q35_matvec_f32_avx2, q35_wsum_f32_avx2, q35_softmax_f32_ref, q35_swiglu_f32_ref),
    F16_SET(q35_f32_to_f16_avx2, q35_attn_scores_f16_avx2, q35_attn_scores_f16_avx2, q35_attn_wsum_f16_avx2),
    Q8_SET(q35_kv_quant_q8_avx2, q35_attn_scores_q8_avx2, q35_attn_scores_q8_avx2, q35_attn_wsum_q8_avx2),
    Q35_SET(q35_quantize_act_ref, q35_block_sums_avx2, q35_row_dot_avx2, q35_row_dot_batch_avx2),
    .q35_permute_act = q35_permute_act_ref, .q35_gemm = q35_gemm_avx2};
static const q35_kernels set_avx512 = {
    .name = "avx512",
    F32_SET(q35_matvec_f32_avx512, q35_wsum_f32_avx512, q35_softmax_f32_avx512, q35_swiglu_f32_avx512),
    F16_SET(q35_f32_to_f16_avx512, q35_attn_scores_f16_avx512, q35_attn_scores_f16_wide_avx512,
            q35_attn_wsum_f16_avx512),
    Q8_SET(q35_kv_quant_q8_avx512, q35_attn_scores_q8_avx512, q35_attn_scores_q8_wide_avx512,
           q35_attn_wsum_q8_avx512),
    Q35_SET(q35_quantize_act_avx512, q35_block_sums_avx512, q35_row_dot_avx512, q35_row_dot_batch_avx512),
    .q35_permute_act = q35_permute_act_avx512, .q35_gemm = q35_gemm_avx512, .q35_r16_rows = q35_r16_rows_avx512,
    .q35_r16_gemm = q35_r16_gemm_avx512,
    .r16_pack = 1};

#if defined(__aarch64__)
static const q35_kernels set_neon = {
    .name = "neon",
    F32_SET(q35_matvec_f32_neon, q35_wsum_f32_neon, q35_softmax_f32_neon, q35_swiglu_f32_neon),
    /* the references */
    F16_SET(q35_f32_to_f16_ref, q35_attn_scores_f16_ref, q35_attn_scores_f16_ref, q35_attn_wsum_f16_ref),
    Q8_SET(q35_kv_quant_q8_ref, q35_attn_scores_q8_ref, q35_attn_scores_q8_ref, q35_attn_wsum_q8_ref),
    Q35_SET(q35_quantize_act_neon, q35_block_sums_neon, q35_row_dot_neon, q35_row_dot_batch_neon),
    .q35_permute_act = q35_permute_act_ref, .q35_gemm = q35_gemm_neon};
#endif

static int cpu_has(const char *what) {
#if defined(__aarch64__)
    if (strcmp(what, "neon") == 0) return 1; /* Advanced SIMD is part of AArch64 */
#endif
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (strcmp(what, "avx2") == 0) { /* with F16C for the fp16 KV cache */
        unsigned a, b, c, d;
        const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }
    if (strcmp(what, "avx512") == 0) /* with VNNI for the Q3_5 family's dot products */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (strcmp(what, "gfni") == 0) /* for the R16 kernels */
        return __builtin_cpu_supports("gfni");
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
            if (k->r16_pack && !cpu_has("gfni")) { /* AVX-512 without GFNI: rows only */
                k->q35_r16_rows = NULL;
                k->q35_r16_gemm = NULL;
                k->r16_pack = 0;
            }
            return 0;
        }
    }
    *k = set_scalar;
    return -1;
}
