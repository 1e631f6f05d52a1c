/* q35cuda_core.cuh — the Q3_5-family decoding of the CUDA backend as
 * __host__ __device__ functions, so that the host can run (and the tests
 * check, without a GPU) exactly what the kernels compute.
 *
 * Device layout of a family matrix: the sections of every row stored
 * section by section, each row's part padded with zero bytes to a
 * multiple of 16 (sc: n_blocks scale bytes; low: the packed low part;
 * plane: the bit planes above it; plus: the plus plane), so that a lane
 * reads group g's bytes with 16-, 8- and 2-byte loads.
 *
 * Activations are kept twice per matrix: q in stored order ("natural"),
 * and the same values in "plane order", where within each block of 32
 * stored columns the byte at 4*bb + a holds column 8a + bb. A 32-bit word
 * of a bit plane (bit bb of byte a = column 8a + bb) then becomes four
 * 0/1 bytes with one shift and one mask: (P >> bb) & 0x01010101, for one
 * dp4a against plane-order word bb. The low part is read against
 * natural-order words: for 2-bit low parts, 32-bit word k of a group's 16
 * bytes holds in its slot s (bits 2s, 2s+1 of each byte) the columns
 * 16s + 4k .. 16s + 4k + 3, so masking slot s (without shifting) gives
 * 4^s times their codes; one accumulator per slot, divided exactly at the
 * end. All sums are exact int32 (|S| <= 32 * 255 * 127). */
#ifndef Q35_CUDA_CORE_CUH
#define Q35_CUDA_CORE_CUH

#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

#ifdef __CUDACC__
#define Q35_HD __host__ __device__ __forceinline__
#else
#define Q35_HD static inline
#endif
/* Unrolled on the device; the host compiler does without. */
#ifdef __CUDA_ARCH__
#define Q35_UNROLL _Pragma("unroll")
#else
#define Q35_UNROLL
#endif

/* One family matrix as the kernels read it. */
struct q35c_fam {
    int type, b, low_bits;
    int64_t m;                  /* rows */
    int n, np, n4, nb;          /* columns, padded columns, plus columns, blocks */
    int sc_stride, low_stride, plane_stride, plus_stride; /* bytes per row */
    const uint8_t *sc, *low, *plane, *plus;
    const float *table;         /* 256 */
    const int32_t *perm;        /* np: stored column -> original column */
};

static inline int q35c_round16(int64_t x) { return (int)((x + 15) / 16 * 16); }

/* Section strides and the total device bytes of a family matrix. */
static inline uint64_t q35c_fam_layout(q35c_fam *F, int type, int b, int low_bits, int64_t n,
                                       int64_t m, int64_t np, int64_t n4, int64_t nb) {
    F->type = type;
    F->b = b;
    F->low_bits = low_bits;
    F->m = m;
    F->n = (int)n;
    F->np = (int)np;
    F->n4 = (int)n4;
    F->nb = (int)nb;
    F->sc_stride = q35c_round16(nb);
    F->low_stride = q35c_round16(np * low_bits / 8);
    F->plane_stride = q35c_round16(np / 8 * (b - low_bits));
    F->plus_stride = q35c_round16(n4 / 8);
    return (uint64_t)m * (uint64_t)(F->sc_stride + F->low_stride + F->plane_stride + F->plus_stride);
}

/* u8 x s8 four-way dot product plus c. */
Q35_HD int32_t q35c_dp4a(uint32_t a, uint32_t b, int32_t c) {
#ifdef __CUDA_ARCH__
    int32_t d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#else
    for (int k = 0; k < 4; k++)
        c += (int32_t)((a >> (8 * k)) & 0xFFu) * (int32_t)(int8_t)(uint8_t)((b >> (8 * k)) & 0xFFu);
    return c;
#endif
}

/* Sum over the 32 columns of one block of bit * q: P holds the block's
 * bits (column 8a + bb at bit bb of byte a), ap its plane-order words. */
Q35_HD int32_t q35c_bits_dot(uint32_t P, const uint32_t *ap) {
    int32_t s = 0;
Q35_UNROLL
    for (int bb = 0; bb < 8; bb++) s = q35c_dp4a((P >> bb) & 0x01010101u, ap[bb], s);
    return s;
}

/* Block sums S0, S1 of one full group of 64 stored columns. lw: the
 * group's low part (LB * 2 words); p0, p1: its bit-plane words (Q3_5's
 * single plane); x0, x1: its plus-plane words, used where plus0 / plus1;
 * an, ap: the group's activations in natural and plane order (16 words
 * each). */
template <int LB, int B, bool PLANE>
Q35_HD void q35c_group_sums(const uint32_t *lw, uint32_t p0, uint32_t p1, uint32_t x0, uint32_t x1,
                            bool plus0, bool plus1, const uint32_t *an, const uint32_t *ap,
                            int32_t &S0, int32_t &S1) {
    if (LB == 2) {
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
Q35_UNROLL
        for (int k = 0; k < 4; k++) {
            s0 = q35c_dp4a(lw[k] & 0x03030303u, an[k], s0);
            s1 = q35c_dp4a(lw[k] & 0x0C0C0C0Cu, an[4 + k], s1);
            s2 = q35c_dp4a(lw[k] & 0x30303030u, an[8 + k], s2);
            s3 = q35c_dp4a(lw[k] & 0xC0C0C0C0u, an[12 + k], s3);
        }
        S0 = s0 + (s1 >> 2);
        S1 = (s2 >> 4) + (s3 >> 6);
    } else if (LB == 4) {
        int32_t s0 = 0, s1 = 0;
Q35_UNROLL
        for (int k = 0; k < 8; k++) {
            s0 = q35c_dp4a(lw[k] & 0x0F0F0F0Fu, an[k], s0);
            s1 = q35c_dp4a(lw[k] & 0xF0F0F0F0u, an[8 + k], s1);
        }
        S0 = s0;
        S1 = s1 >> 4;
    } else {
        int32_t s0 = 0, s1 = 0;
Q35_UNROLL
        for (int k = 0; k < 8; k++) {
            s0 = q35c_dp4a(lw[k], an[k], s0);
            s1 = q35c_dp4a(lw[8 + k], an[8 + k], s1);
        }
        S0 = s0;
        S1 = s1;
    }
    if (PLANE) {
        S0 += q35c_bits_dot(p0, ap) << LB;
        S1 += q35c_bits_dot(p1, ap + 8) << LB;
    }
    if (plus0) S0 += q35c_bits_dot(x0, ap) << B;
    if (plus1) S1 += q35c_bits_dot(x1, ap + 8) << B;
}

/* The code of stored column j of row r (any column: the tail path and the
 * embedding lookup), as q35fmt.c's code_at reads it. */
Q35_HD int q35c_code_at(const q35c_fam &F, int64_t r, int j) {
    const uint8_t *low = F.low + (uint64_t)r * (uint64_t)F.low_stride;
    const int g0 = j / 64 * 64;
    const int G = F.np - g0 < 64 ? F.np - g0 : 64;
    const int stride = G * F.low_bits / 8, i = j - g0;
    int q = (low[g0 * F.low_bits / 8 + i % stride] >> ((i / stride) * F.low_bits)) &
            ((1 << F.low_bits) - 1);
    const uint8_t *plane = F.plane + (uint64_t)r * (uint64_t)F.plane_stride;
    for (int p = F.low_bits; p < F.b; p++)
        q |= ((plane[(p - F.low_bits) * (F.np / 8) + j / 8] >> (j % 8)) & 1) << p;
    if (j < F.n4) q |= ((F.plus[(uint64_t)r * (uint64_t)F.plus_stride + j / 8] >> (j % 8)) & 1) << F.b;
    return q;
}

/* Position of stored column j's activation in plane order. */
Q35_HD int q35c_plane_pos(int j) { return (j & ~31) + (j & 7) * 4 + ((j & 31) >> 3); }

/* Where activation byte j (natural or plane order) lives on the device:
 * "chunk-major", so that lane g of a warp reading 16-byte chunk c of
 * group g reads next to lane g + 1: byte j of group j / 64 is at
 * (c * ngt + j / 64) * 16 + j % 16 with c = (j % 64) / 16 and ngt the
 * number of groups (the last may be short). */
Q35_HD int q35c_act_index(int j, int ngt) { return (((j & 63) >> 4) * ngt + (j >> 6)) * 16 + (j & 15); }

/* Block bk's sum for row r through the per-column path (qn: natural
 * order, chunk-major). */
Q35_HD int32_t q35c_block_sum_slow(const q35c_fam &F, int64_t r, int bk, const int8_t *qn) {
    const int j0 = bk * 32, len = F.np - j0 < 32 ? F.np - j0 : 32, ngt = (F.np + 63) / 64;
    int32_t s = 0;
    for (int i = 0; i < len; i++)
        s += q35c_code_at(F, r, j0 + i) * (int32_t)qn[q35c_act_index(j0 + i, ngt)];
    return s;
}

/* The family's shapes: low-part bits, base bits, one bit plane or none. */
template <int TYPE> struct q35c_type;
template <> struct q35c_type<3525> { enum { LB = 2, B = 2, PLANE = 0 }; }; /* Q2_5 */
template <> struct q35c_type<3535> { enum { LB = 2, B = 3, PLANE = 1 }; }; /* Q3_5 */
template <> struct q35c_type<3545> { enum { LB = 4, B = 4, PLANE = 0 }; }; /* Q4_5 */
template <> struct q35c_type<3580> { enum { LB = 8, B = 8, PLANE = 0 }; }; /* Q8_S */

/* Streaming (weights, read once) and cached (activations) 16/8-byte loads. */
Q35_HD uint4 q35c_ld_stream4(const void *p) {
#ifdef __CUDA_ARCH__
    return __ldcs((const uint4 *)p);
#else
    return *(const uint4 *)p;
#endif
}
Q35_HD uint2 q35c_ld_stream2(const void *p) {
#ifdef __CUDA_ARCH__
    return __ldcs((const uint2 *)p);
#else
    return *(const uint2 *)p;
#endif
}
Q35_HD uint4 q35c_ld_cached4(const void *p) {
#ifdef __CUDA_ARCH__
    return __ldg((const uint4 *)p);
#else
    return *(const uint4 *)p;
#endif
}

/* Group g's activations: natural order into an, plane order into ap (when
 * need_ap). */
Q35_HD void q35c_load_acts(const int8_t *qn, const int8_t *qp, int ngt, int g, bool need_ap,
                           uint32_t an[16], uint32_t ap[16]) {
Q35_UNROLL
    for (int c = 0; c < 4; c++) {
        const uint4 v = q35c_ld_cached4(qn + ((int64_t)c * ngt + g) * 16);
        an[4 * c] = v.x; an[4 * c + 1] = v.y; an[4 * c + 2] = v.z; an[4 * c + 3] = v.w;
    }
    if (need_ap) {
Q35_UNROLL
        for (int c = 0; c < 4; c++) {
            const uint4 v = q35c_ld_cached4(qp + ((int64_t)c * ngt + g) * 16);
            ap[4 * c] = v.x; ap[4 * c + 1] = v.y; ap[4 * c + 2] = v.z; ap[4 * c + 3] = v.w;
        }
    } else {
Q35_UNROLL
        for (int i = 0; i < 16; i++) ap[i] = 0;
    }
}

/* Group g of row r: low words, plane words, plus words (0 where there
 * are none) and the two scale bytes. */
template <int TYPE>
Q35_HD void q35c_load_group(const q35c_fam &F, int64_t r, int g, uint32_t *lw, uint2 &pl, uint2 &px,
                            uint32_t &sc) {
    const int LB = q35c_type<TYPE>::LB;
    const uint8_t *low = F.low + (uint64_t)r * (uint64_t)F.low_stride + (uint64_t)g * (8 * LB);
Q35_UNROLL
    for (int c = 0; c < LB / 2; c++) {
        const uint4 v = q35c_ld_stream4(low + 16 * c);
        lw[4 * c] = v.x; lw[4 * c + 1] = v.y; lw[4 * c + 2] = v.z; lw[4 * c + 3] = v.w;
    }
    pl = make_uint2(0, 0);
    px = make_uint2(0, 0);
    if (q35c_type<TYPE>::PLANE)
        pl = q35c_ld_stream2(F.plane + (uint64_t)r * (uint64_t)F.plane_stride + (uint64_t)g * 8);
    if (g * 64 < F.n4)
        px = q35c_ld_stream2(F.plus + (uint64_t)r * (uint64_t)F.plus_stride + (uint64_t)g * 8);
    const uint8_t *s = F.sc + (uint64_t)r * (uint64_t)F.sc_stride + (uint64_t)g * 2;
    sc = (uint32_t)s[0] | (uint32_t)s[1] << 8;
}

/* Block sums of full group g of row r (what the GEMV kernel computes). */
template <int TYPE>
Q35_HD void q35c_group_block_sums(const q35c_fam &F, int64_t r, int g, const int8_t *qn,
                                  const int8_t *qp, int32_t &S0, int32_t &S1) {
    typedef q35c_type<TYPE> T;
    const int ngt = (F.np + 63) / 64;
    const bool plus0 = g * 64 < F.n4, plus1 = g * 64 + 32 < F.n4;
    uint32_t an[16], ap[16], lw[2 * T::LB], sc;
    uint2 pl, px;
    q35c_load_acts(qn, qp, ngt, g, T::PLANE || plus0, an, ap);
    q35c_load_group<TYPE>(F, r, g, lw, pl, px, sc);
    q35c_group_sums<T::LB, T::B, T::PLANE>(lw, pl.x, pl.y, px.x, px.y, plus0, plus1, an, ap, S0, S1);
}

#endif
