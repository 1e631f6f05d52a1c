/* neon.c — AArch64 Advanced SIMD (NEON) kernels: the fp32 kernels of
 * kernels.h and the Q3_5-family activation quantizer and row dot products
 * of q35dot.h. Compiled only for AArch64; elsewhere this file holds no code.
 *
 * The integer parts (quantized activations, their block sums and scales,
 * the block sums S_b of a row) are bit-identical to q35dot_ref.c; float
 * results differ from the references only by rounding (other summation
 * order, fused multiply-add). tests/test_q35_neon.c checks both, under
 * qemu-aarch64 (scripts/neon-test.sh). */
#include "kernels/neon.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

const char *q35_neon_variant(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return "neon+dotprod";
#else
    return "neon";
#endif
}

/* ------------------------------------------------------------------ */
/* activation quantizer                                                */

/* Per full block of 32: amax with maxNum (ignores NaN like fmaxf), the same
 * scalar id and d as the reference, q = the product rounded to nearest even
 * (FCVTNS: as nearbyintf in the default rounding mode; inf saturates and is
 * then clamped like the reference's float clamp). A short last block goes
 * to the reference. */
void q35_quantize_act_neon(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum) {
    int64_t j0 = 0, b = 0;
    for (; j0 + Q35_BLOCK <= np; j0 += Q35_BLOCK, b++) {
        float32x4_t v[8];
        for (int k = 0; k < 8; k++) v[k] = vld1q_f32(x + j0 + 4 * k);
        float32x4_t m0 = vmaxnmq_f32(vabsq_f32(v[0]), vabsq_f32(v[1]));
        float32x4_t m1 = vmaxnmq_f32(vabsq_f32(v[2]), vabsq_f32(v[3]));
        float32x4_t m2 = vmaxnmq_f32(vabsq_f32(v[4]), vabsq_f32(v[5]));
        float32x4_t m3 = vmaxnmq_f32(vabsq_f32(v[6]), vabsq_f32(v[7]));
        const float amax = vmaxnmvq_f32(vmaxnmq_f32(vmaxnmq_f32(m0, m1), vmaxnmq_f32(m2, m3)));
        /* a block too small for 127 / max to be finite quantizes to zeros */
        const float id = amax > 0.0f && 127.0f / amax <= FLT_MAX ? 127.0f / amax : 0.0f;
        const float32x4_t vid = vdupq_n_f32(id);
        const int32x4_t hi = vdupq_n_s32(127), lo = vdupq_n_s32(-127);
        int32x4_t acc = vdupq_n_s32(0);
        int16x8_t h[4];
        for (int k = 0; k < 4; k++) {
            int32x4_t a = vcvtnq_s32_f32(vmulq_f32(v[2 * k], vid));
            int32x4_t c = vcvtnq_s32_f32(vmulq_f32(v[2 * k + 1], vid));
            a = vmaxq_s32(vminq_s32(a, hi), lo);
            c = vmaxq_s32(vminq_s32(c, hi), lo);
            acc = vaddq_s32(acc, vaddq_s32(a, c));
            h[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(c));
        }
        vst1q_s8(q + j0, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
        vst1q_s8(q + j0 + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
        d[b] = amax / 127.0f;
        sum[b] = vaddvq_s32(acc);
    }
    if (j0 < np) q35_quantize_act_ref(x + j0, np - j0, q + j0, d + b, sum + b);
}

/* ------------------------------------------------------------------ */
/* Q3_5-family block sums                                              */

/* ORs val into the codes of 64 columns where their bit in the plane is set:
 * bits holds 8 plane bytes (bit j%8 of byte j/8 = column j); chunk k of 16
 * columns takes bytes 2k and 2k+1. */
ALWAYS_INLINE void or_plane(uint8x16_t c[4], uint8x8_t bits, uint8_t val) {
    static const uint8_t sel_[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    static const uint8_t idx_[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    const uint8x16_t sel = vld1q_u8(sel_), v = vdupq_n_u8(val), t = vcombine_u8(bits, bits);
    const uint8x16_t two = vdupq_n_u8(2);
    uint8x16_t idx = vld1q_u8(idx_);
    for (int k = 0; k < 4; k++) {
        c[k] = vorrq_u8(c[k], vandq_u8(vtstq_u8(vqtbl1q_u8(t, idx), sel), v));
        idx = vaddq_u8(idx, two);
    }
}

/* The codes of the full packing group of 64 columns at g0 (g0 + 64 <= np):
 * c[k] = columns g0 + 16k .. g0 + 16k + 15. LOW, B: the type's low_bits and
 * base bits (compile-time constants after inlining). */
ALWAYS_INLINE void unpack64(const q35_layout *L, const uint8_t *row, int64_t g0, const int LOW,
                            const int B, uint8x16_t c[4]) {
    const uint8_t *low = row + L->low_off + g0 * LOW / 8;
    if (LOW == 2) { /* byte i: columns i, i+16, i+32, i+48 in bits 0-1, 2-3, 4-5, 6-7 */
        const uint8x16_t v = vld1q_u8(low), m = vdupq_n_u8(3);
        c[0] = vandq_u8(v, m);
        c[1] = vandq_u8(vshrq_n_u8(v, 2), m);
        c[2] = vandq_u8(vshrq_n_u8(v, 4), m);
        c[3] = vshrq_n_u8(v, 6);
    } else if (LOW == 4) { /* byte i: columns i, i+32 in bits 0-3, 4-7 */
        const uint8x16_t v0 = vld1q_u8(low), v1 = vld1q_u8(low + 16), m = vdupq_n_u8(15);
        c[0] = vandq_u8(v0, m);
        c[1] = vandq_u8(v1, m);
        c[2] = vshrq_n_u8(v0, 4);
        c[3] = vshrq_n_u8(v1, 4);
    } else {
        for (int k = 0; k < 4; k++) c[k] = vld1q_u8(low + 16 * k);
    }
    for (int p = LOW; p < B; p++) /* one bit plane per bit above the low part */
        or_plane(c, vld1_u8(row + L->plane_off + (uint64_t)(p - LOW) * (uint64_t)(L->np / 8) +
                            (uint64_t)g0 / 8),
                 (uint8_t)(1u << p));
    if (B < 8 && g0 < L->n4) { /* plus bits; n4 is a multiple of 32 */
        const uint8_t *plus = row + L->plus_off + g0 / 8;
        uint8x8_t bits;
        if (g0 + 64 <= L->n4) {
            bits = vld1_u8(plus);
        } else { /* only the first block is plus: its 4 bytes end the plane */
            uint32_t t;
            memcpy(&t, plus, 4);
            bits = vcreate_u8((uint64_t)t);
        }
        or_plane(c, bits, (uint8_t)(1u << B));
    }
}

/* Partial sums (4 lanes adding up to S) of one block of 32: codes c0, c1
 * (unsigned, < 2^bits), activations q0, q1 (|q| <= 127). WIDE: codes may
 * exceed 127 (8-bit codes); they are offset by -128 (c ^ 0x80 read as
 * signed) and 128 * sum q is added back. */
ALWAYS_INLINE int32x4_t dot32(uint8x16_t c0, uint8x16_t c1, int8x16_t q0, int8x16_t q1,
                              const int WIDE) {
    if (WIDE) {
        c0 = veorq_u8(c0, vdupq_n_u8(0x80));
        c1 = veorq_u8(c1, vdupq_n_u8(0x80));
    }
    const int8x16_t s0 = vreinterpretq_s8_u8(c0), s1 = vreinterpretq_s8_u8(c1);
#if defined(__ARM_FEATURE_DOTPROD)
    int32x4_t acc = vdotq_s32(vdotq_s32(vdupq_n_s32(0), s0, q0), s1, q1);
    if (WIDE) {
        const int8x16_t one = vdupq_n_s8(1);
        const int32x4_t qs = vdotq_s32(vdotq_s32(vdupq_n_s32(0), one, q0), one, q1);
        acc = vaddq_s32(acc, vshlq_n_s32(qs, 7));
    }
#else
    /* |c q| <= 128 * 127, so a pair of products fits int16 */
    int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(s0), vget_low_s8(q0)), s0, q0);
    int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(s1), vget_low_s8(q1)), s1, q1);
    int32x4_t acc = vpadalq_s16(vpaddlq_s16(p0), p1);
    if (WIDE) { /* |sum of 32 q| <= 4064: fits int16 */
        const int16x8_t qs = vpadalq_s8(vpaddlq_s8(q0), q1);
        acc = vaddq_s32(acc, vshlq_n_s32(vpaddlq_s16(qs), 7));
    }
#endif
    return acc;
}

/* Block sums of a row (DOT = 0: into S) or its dot product (DOT = 1: the
 * return value). Two packing groups (4 blocks) at a time, then one group,
 * then a short last group with the reference's unpacking. */
ALWAYS_INLINE float row_impl(const q35_layout *L, const uint8_t *row, const int8_t *q,
                             int32_t *S, const float *table, const q35_qact *a, const int LOW,
                             const int B, const int DOT) {
    const int WIDE = B >= 7;
    const int64_t np = L->np, nb4 = L->n4 / Q35_BLOCK; /* blocks below nb4 are plus */
    const int32_t top0 = (1 << B) - 1, top1 = (1 << (B + 1)) - 1;
    float32x4_t facc = vdupq_n_f32(0.0f);
    float sum = 0.0f;
    int64_t g0 = 0;
    for (; g0 + 2 * Q35_GROUP <= np; g0 += 2 * Q35_GROUP) {
        uint8x16_t c[8];
        unpack64(L, row, g0, LOW, B, c);
        unpack64(L, row, g0 + Q35_GROUP, LOW, B, c + 4);
        const int8_t *qg = q + g0;
        int32x4_t acc[4];
        for (int k = 0; k < 4; k++)
            acc[k] = dot32(c[2 * k], c[2 * k + 1], vld1q_s8(qg + 32 * k),
                           vld1q_s8(qg + 32 * k + 16), WIDE);
        const int32x4_t s =
            vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]));
        const int64_t b = g0 / Q35_BLOCK;
        if (!DOT) {
            vst1q_s32(S + b, s);
        } else {
            int32_t tops[4];
            float sc[4];
            for (int k = 0; k < 4; k++) {
                tops[k] = b + k < nb4 ? top1 : top0;
                sc[k] = table[row[b + k]];
            }
            /* I = 2 S - top sum: |I| < 2^22, exact in int32 and in float */
            const int32x4_t I = vmlsq_s32(vshlq_n_s32(s, 1), vld1q_s32(tops),
                                          vld1q_s32(a->sum + b));
            facc = vfmaq_f32(facc, vmulq_f32(vld1q_f32(sc), vld1q_f32(a->d + b)),
                             vcvtq_f32_s32(I));
        }
    }
    if (g0 + Q35_GROUP <= np) {
        uint8x16_t c[4];
        unpack64(L, row, g0, LOW, B, c);
        const int8_t *qg = q + g0;
        const int32_t s0 = vaddvq_s32(dot32(c[0], c[1], vld1q_s8(qg), vld1q_s8(qg + 16), WIDE));
        const int32_t s1 =
            vaddvq_s32(dot32(c[2], c[3], vld1q_s8(qg + 32), vld1q_s8(qg + 48), WIDE));
        const int64_t b = g0 / Q35_BLOCK;
        if (!DOT) {
            S[b] = s0;
            S[b + 1] = s1;
        } else {
            sum += table[row[b]] * a->d[b] * (float)(2 * s0 - (b < nb4 ? top1 : top0) * a->sum[b]);
            sum += table[row[b + 1]] * a->d[b + 1] *
                   (float)(2 * s1 - (b + 1 < nb4 ? top1 : top0) * a->sum[b + 1]);
        }
        g0 += Q35_GROUP;
    }
    if (g0 < np) { /* the last group is short (np - g0 < 64, a multiple of 8) */
        uint8_t codes[Q35_GROUP];
        q35_unpack_range(L, row, g0, np - g0, codes);
        for (int64_t j0 = g0; j0 < np; j0 += Q35_BLOCK) {
            const int K = (int)(np - j0 < Q35_BLOCK ? np - j0 : Q35_BLOCK);
            const int32_t s = q35_dot_codes_i8(codes + (j0 - g0), q + j0, K);
            const int64_t b = j0 / Q35_BLOCK;
            if (!DOT)
                S[b] = s;
            else
                sum += table[row[b]] * a->d[b] *
                       (float)(2 * s - (b < nb4 ? top1 : top0) * a->sum[b]);
        }
    }
    return DOT ? vaddvq_f32(facc) + sum : 0.0f;
}

void q35_block_sums_neon(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    if (L->low_bits == 2 && L->b == 2)
        row_impl(L, row, q, S, NULL, NULL, 2, 2, 0);
    else if (L->low_bits == 2 && L->b == 3)
        row_impl(L, row, q, S, NULL, NULL, 2, 3, 0);
    else if (L->low_bits == 4 && L->b == 4)
        row_impl(L, row, q, S, NULL, NULL, 4, 4, 0);
    else if (L->low_bits == 8 && L->b == 8)
        row_impl(L, row, q, S, NULL, NULL, 8, 8, 0);
    else
        q35_block_sums_ref(L, row, q, S);
}

float q35_row_dot_neon(const q35_layout *L, const float table[256], const uint8_t *row,
                       const q35_qact *a) {
    if (L->low_bits == 2 && L->b == 2) return row_impl(L, row, a->q, NULL, table, a, 2, 2, 1);
    if (L->low_bits == 2 && L->b == 3) return row_impl(L, row, a->q, NULL, table, a, 2, 3, 1);
    if (L->low_bits == 4 && L->b == 4) return row_impl(L, row, a->q, NULL, table, a, 4, 4, 1);
    if (L->low_bits == 8 && L->b == 8) return row_impl(L, row, a->q, NULL, table, a, 8, 8, 1);
    return q35_row_dot_ref(L, table, row, a);
}

void q35_row_dot_batch_neon(const q35_layout *L, const float table[256], const uint8_t *row,
                            const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    for (int t = 0; t < n_act; t++) out[(int64_t)t * out_stride] = q35_row_dot_neon(L, table, row, &a[t]);
}

/* No tile GEMM here yet: the batch row dot, row by row. */
void q35_gemm_neon(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                   const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    (void)scratch;
    for (int64_t r = 0; r < nrows; r++)
        q35_row_dot_batch_neon(L, table, rows + (uint64_t)r * L->row_bytes, a, n_act, out + r, ldo);
}

/* ------------------------------------------------------------------ */
/* fp32 kernels                                                        */

void q35_matvec_f32_neon(float *out, const float *w, int64_t ld, const float *x, int64_t n,
                         int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *row = w + r * ld;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        int64_t c = 0;
        for (; c + 16 <= n; c += 16) {
            a0 = vfmaq_f32(a0, vld1q_f32(row + c), vld1q_f32(x + c));
            a1 = vfmaq_f32(a1, vld1q_f32(row + c + 4), vld1q_f32(x + c + 4));
            a2 = vfmaq_f32(a2, vld1q_f32(row + c + 8), vld1q_f32(x + c + 8));
            a3 = vfmaq_f32(a3, vld1q_f32(row + c + 12), vld1q_f32(x + c + 12));
        }
        for (; c + 4 <= n; c += 4) a0 = vfmaq_f32(a0, vld1q_f32(row + c), vld1q_f32(x + c));
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
        for (; c < n; c++) sum += row[c] * x[c];
        out[r - r0] = sum;
    }
}

void q35_wsum_f32_neon(float *out, const float *a, const float *v, int64_t ld, int64_t n,
                       int64_t T) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t t = 0; t < T; t++) {
            const float32x4_t at = vdupq_n_f32(a[t]);
            const float *row = v + t * ld + i;
            s0 = vfmaq_f32(s0, at, vld1q_f32(row));
            s1 = vfmaq_f32(s1, at, vld1q_f32(row + 4));
            s2 = vfmaq_f32(s2, at, vld1q_f32(row + 8));
            s3 = vfmaq_f32(s3, at, vld1q_f32(row + 12));
        }
        vst1q_f32(out + i, s0);
        vst1q_f32(out + i + 4, s1);
        vst1q_f32(out + i + 8, s2);
        vst1q_f32(out + i + 12, s3);
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t s0 = vdupq_n_f32(0.0f);
        for (int64_t t = 0; t < T; t++)
            s0 = vfmaq_f32(s0, vdupq_n_f32(a[t]), vld1q_f32(v + t * ld + i));
        vst1q_f32(out + i, s0);
    }
    for (; i < n; i++) {
        float sum = 0.0f;
        for (int64_t t = 0; t < T; t++) sum += a[t] * v[t * ld + i];
        out[i] = sum;
    }
}

/* e^x as in x86.c's exp512: x clamped to [-104, 89], x = k ln2 + r with
 * |r| <= ln2/2, e^r by its Taylor polynomial to degree 6 (error < 2e-7
 * relative), times 2^k built from exponent bits in two halves (each
 * 2^(k/2) is a normal float, so results underflow gradually to subnormals
 * and overflow to inf as they should). */
ALWAYS_INLINE float32x4_t exp_neon(float32x4_t x) {
    x = vmaxq_f32(x, vdupq_n_f32(-104.0f));
    x = vminq_f32(x, vdupq_n_f32(89.0f));
    const float32x4_t k = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504f)));
    float32x4_t r = vfmsq_f32(x, k, vdupq_n_f32(0.693145752f)); /* ln2 high bits */
    r = vfmsq_f32(r, k, vdupq_n_f32(1.42860677e-6f));           /* ln2 low bits */
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t ki = vcvtq_s32_f32(k);           /* -150 .. 128 */
    const int32x4_t k1 = vshrq_n_s32(ki, 1);         /* floor(k/2): -75 .. 64 */
    const int32x4_t k2 = vsubq_s32(ki, k1);          /* -75 .. 64 */
    const int32x4_t bias = vdupq_n_s32(127);
    const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k1, bias), 23));
    const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k2, bias), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

void q35_softmax_f32_neon(float *x, int64_t n) {
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vmax = vmaxq_f32(vmax, vld1q_f32(x + i));
    float max = vmaxvq_f32(vmax);
    for (; i < n; i++)
        if (x[i] > max) max = x[i];
    const float32x4_t vm = vdupq_n_f32(max);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(x + i), vm));
        vst1q_f32(x + i, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    if (i < n) { /* the last 1..3 values through the same exp */
        float t[4] = {max, max, max, max};
        memcpy(t, x + i, (size_t)(n - i) * sizeof *t);
        vst1q_f32(t, exp_neon(vsubq_f32(vld1q_f32(t), vm)));
        for (int64_t k = 0; k < n - i; k++) {
            x[i + k] = t[k];
            sum += t[k];
        }
    }
    const float inv = 1.0f / sum;
    const float32x4_t vinv = vdupq_n_f32(inv);
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_f32(vld1q_f32(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
}

void q35_swiglu_f32_neon(float *g, const float *u, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t sig = vdivq_f32(one, vaddq_f32(one, exp_neon(vnegq_f32(x))));
        vst1q_f32(g + i, vmulq_f32(vmulq_f32(x, sig), vld1q_f32(u + i)));
    }
    if (i < n) {
        float t[4] = {0.0f, 0.0f, 0.0f, 0.0f}, w[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        memcpy(t, g + i, (size_t)(n - i) * sizeof *t);
        memcpy(w, u + i, (size_t)(n - i) * sizeof *w);
        const float32x4_t x = vld1q_f32(t);
        const float32x4_t sig = vdivq_f32(one, vaddq_f32(one, exp_neon(vnegq_f32(x))));
        vst1q_f32(t, vmulq_f32(vmulq_f32(x, sig), vld1q_f32(w)));
        memcpy(g + i, t, (size_t)(n - i) * sizeof *t);
    }
}

#else
/* not AArch64: nothing here (a typedef keeps the translation unit non-empty) */
typedef int q35_neon_unused;
#endif
