/* x86_q35.c — AVX-512 (with VNNI) and AVX2 versions of the Q3_5-family
 * kernels of q35dot.h. Integer block sums are bit-identical to
 * q35dot_ref.c; row dots differ from it by float rounding only (the
 * per-lane integer sums are converted exactly, then scaled and added in
 * another order). Full groups of 64 columns take the SIMD path; a shorter
 * last group goes through the reference. */
#include "kernels/q35dot.h"

#if defined(__x86_64__)
#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "kernels/x86_tile.h"

#define AVX2 __attribute__((target("avx2,fma")))

static uint64_t load_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Bits of the plus plane for the 64 columns of group g (0 past n4; n4 is a
 * multiple of 32, so a group is all, half or none plus). */
static uint64_t plus_bits(const q35_layout *L, const uint8_t *row, int64_t g) {
    const int64_t c0 = g * Q35_GROUP;
    if (c0 >= L->n4) return 0;
    if (c0 + Q35_GROUP <= L->n4) return load_u64(row + L->plus_off + (uint64_t)g * 8);
    return load_u32(row + L->plus_off + (uint64_t)g * 8);
}

/* ---------------------------------------------------------------- AVX-512 */

AVX512 void q35_quantize_act_avx512(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum) {
    for (int64_t j0 = 0, b = 0; j0 < np; j0 += Q35_BLOCK, b++) {
        const int64_t len = np - j0 < Q35_BLOCK ? np - j0 : Q35_BLOCK;
        const __mmask16 m0 = len >= 16 ? 0xFFFF : (__mmask16)((1u << len) - 1u);
        const __mmask16 m1 = len >= 32 ? 0xFFFF : len <= 16 ? 0 : (__mmask16)((1u << (len - 16)) - 1u);
        const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + j0), x1 = _mm512_maskz_loadu_ps(m1, x + j0 + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        const float id = amax > 0.0f && 127.0f / amax <= FLT_MAX ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        /* round to nearest even (the default MXCSR mode, as nearbyintf) */
        __m512i q0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(
            _mm512_roundscale_ps(_mm512_mul_ps(x0, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), lo), hi));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(
            _mm512_roundscale_ps(_mm512_mul_ps(x1, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), lo), hi));
        _mm_mask_storeu_epi8(q + j0, m0, _mm512_cvtsepi32_epi8(q0));
        _mm_mask_storeu_epi8(q + j0 + 16, m1, _mm512_cvtsepi32_epi8(q1));
        sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        d[b] = amax / 127.0f;
    }
}


/* 16 columns at a time: the plus columns' values compressed (vcompressps
 * into a register, then a masked store: the memory form is slow on Zen 4)
 * onto the front of xp, the others onto the back, from the number of plus
 * columns on. Values are only moved: the result is the reference's. */
AVX512 void q35_permute_act_avx512(const q35_layout *L, const uint8_t *mask, const float *x, float *xp) {
    const int64_t n = L->n, np = L->np;
    int64_t front = 0, back = L->n4;
    for (int64_t c0 = 0; c0 < np; c0 += 16) {
        const int64_t here = np - c0 < 16 ? np - c0 : 16, valid = n - c0 < 0 ? 0 : n - c0 < here ? n - c0 : here;
        const __mmask16 lanes = (__mmask16)((1u << here) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << valid) - 1u), x + c0);
        unsigned bits = mask[c0 / 8];
        if (here > 8) bits |= (unsigned)mask[c0 / 8 + 1] << 8;
        const __mmask16 plus = (__mmask16)(bits & lanes), rest = (__mmask16)(~bits & lanes);
        const int np_plus = __builtin_popcount(plus), np_rest = __builtin_popcount(rest);
        _mm512_mask_storeu_ps(xp + front, (__mmask16)((1u << np_plus) - 1u), _mm512_maskz_compress_ps(plus, v));
        _mm512_mask_storeu_ps(xp + back, (__mmask16)((1u << np_rest) - 1u), _mm512_maskz_compress_ps(rest, v));
        front += np_plus;
        back += np_rest;
    }
}

/* The fast row dot works on chunks of up to 8 full groups (16 blocks, 512
 * columns). Per chunk, per activation vector, vectorised over the blocks:
 *   F2_b  = 2 * table[s_b] * d_b              (the factor of S_b)
 *   off  += table[s_b] * d_b * top_b * sum_b  (the constant term)
 * and per group the 16 int32 lanes of dpbusd (lanes 0-7 block 2g, 8-15
 * block 2g+1) are converted and multiplied by F2 of their block, lane-wise:
 *   acc  += float(dot lanes) * F2[block of the lane]
 * The row's dot is reduce(acc) - reduce(off), plus the short last group
 * through the reference. The batch kernel runs exactly these operations
 * per activation vector (only interleaved), so its results are
 * bit-identical to q35_row_dot_avx512. */

#define Q35_CHUNK_GROUPS 8
#define Q35_TILE 4 /* activation vectors sharing one decode in the batch kernel */
#ifndef Q35_PREFETCH_ROWS
#define Q35_PREFETCH_ROWS 2
#endif

typedef struct chunk_ctx {
    __mmask16 kb;      /* blocks present in the chunk */
    __m512 w;          /* table[s_b] for the chunk's blocks (0 where absent) */
    __m512i top;       /* 2^c - 1 per block */
} chunk_ctx;

/* A chunk's scales (scales16) and code tops. */
AVX512 static inline __attribute__((always_inline)) chunk_ctx chunk_begin(const q35_layout *L, __m512 top,
                                                                          const uint8_t *row,
                                                                          int64_t b0, int nb) {
    chunk_ctx c;
    c.kb = (__mmask16)((1u << nb) - 1u);
    c.w = scales16(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(c.kb, row + b0)), c.kb, top);
    const __m512i blk = _mm512_add_epi32(_mm512_set1_epi32((int)b0),
                                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __mmask16 plus = _mm512_cmplt_epi32_mask(blk, _mm512_set1_epi32((int)(L->n4 / Q35_BLOCK)));
    c.top = _mm512_mask_blend_epi32(plus, _mm512_set1_epi32((1 << L->b) - 1), _mm512_set1_epi32((2 << L->b) - 1));
    return c;
}

/* One activation vector's factors for a chunk: F2 returned, off updated. */
AVX512 static inline __attribute__((always_inline)) __m512 chunk_act(const chunk_ctx *c, const q35_qact *a,
                                                                    int64_t b0, __m512 *off) {
    const __m512 wd = _mm512_mul_ps(c->w, _mm512_maskz_loadu_ps(c->kb, a->d + b0));
    const __m512i ts = _mm512_mullo_epi32(c->top, _mm512_maskz_loadu_epi32(c->kb, a->sum + b0));
    *off = _mm512_fmadd_ps(wd, _mm512_cvtepi32_ps(ts), *off);
    return _mm512_add_ps(wd, wd);
}

/* The 64 codes of full group g, one per byte; low_bits and b are constants
 * after inlining into the row kernels (the family has at most one plane:
 * Q3_5's bit 2). */
enum { PLUS_NONE, PLUS_ALL, PLUS_SOME }; /* a group's plus columns: none, all 64, or look */

AVX512 static inline __attribute__((always_inline)) __m512i group_codes(const q35_layout *L, const uint8_t *row,
                                                                       int64_t g, int low_bits, int b,
                                                                       int plus_mode) {
    __m512i v;
    if (low_bits == 2) {
        /* byte i holds columns i, i+16, i+32, i+48: copy the 16 bytes into
         * each 128-bit lane and shift lane k right by 2k */
        const __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128((const void *)(row + L->low_off + (uint64_t)g * 16)));
        const __m512i shifts = _mm512_set_epi64(6 * 0x0001000100010001ll, 6 * 0x0001000100010001ll,
                                                4 * 0x0001000100010001ll, 4 * 0x0001000100010001ll,
                                                2 * 0x0001000100010001ll, 2 * 0x0001000100010001ll, 0, 0);
        v = _mm512_and_si512(_mm512_srlv_epi16(x, shifts), _mm512_set1_epi8(3));
    } else if (low_bits == 4) { /* byte i: column i (low nibble), i+32 (high) */
        const __m256i x = _mm256_loadu_si256((const void *)(row + L->low_off + (uint64_t)g * 32));
        const __m256i m = _mm256_set1_epi8(15);
        v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(x, m)),
                               _mm256_and_si256(_mm256_srli_epi16(x, 4), m), 1);
    } else {
        v = _mm512_loadu_si512((const void *)(row + L->low_off + (uint64_t)g * 64));
    }
    if (b > low_bits) /* Q3_5's one plane above the 2-bit low part */
        v = _mm512_mask_add_epi8(v, _cvtu64_mask64(load_u64(row + L->plane_off + (uint64_t)g * 8)), v,
                                 _mm512_set1_epi8((char)(1 << low_bits)));
    if (b < 8 && plus_mode == PLUS_ALL) {
        v = _mm512_mask_add_epi8(v, _cvtu64_mask64(load_u64(row + L->plus_off + (uint64_t)g * 8)), v,
                                 _mm512_set1_epi8((char)(1 << b)));
    } else if (b < 8 && plus_mode == PLUS_SOME) {
        const uint64_t plus = plus_bits(L, row, g);
        if (plus) v = _mm512_mask_add_epi8(v, _cvtu64_mask64(plus), v, _mm512_set1_epi8((char)(1 << b)));
    }
    return v;
}

AVX512 void q35_block_sums_avx512(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    const int64_t full = L->np / Q35_GROUP;
    for (int64_t g = 0; g < full; g++) {
        const __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), group_codes(L, row, g, L->low_bits, L->b, PLUS_SOME),
                                                _mm512_loadu_si512((const void *)(q + g * 64)));
        S[2 * g] = _mm512_mask_reduce_add_epi32(0x00FF, acc);
        S[2 * g + 1] = _mm512_mask_reduce_add_epi32(0xFF00, acc);
    }
    q35_block_sums_from_ref(L, row, q, S, full * 2); /* the short last group */
}

/* Lane i of group g's dot takes F2 of block 2g + (i >= 8), relative to the chunk. */
AVX512 static inline __attribute__((always_inline)) __m512i lane_blocks(int64_t gi) {
    return _mm512_add_epi32(_mm512_set1_epi32((int)(2 * gi)),
                            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
}

/* Rows dots of one row with nt <= Q35_TILE activation vectors, full groups
 * only: acc/off per vector are left for the caller to reduce. */
AVX512 static inline __attribute__((always_inline)) void row_tile(const q35_layout *L, const float table[256],
                                                                 const uint8_t *row, const q35_qact *a, int nt,
                                                                 int low_bits, int b, float *out,
                                                                 int64_t out_stride) {
    const int64_t full = L->np / Q35_GROUP;
    __m512 acc[Q35_TILE][2], off[Q35_TILE], f2[Q35_TILE]; /* two chains per vector: even and odd groups */
#pragma GCC unroll 4
    for (int t = 0; t < Q35_TILE; t++) acc[t][0] = acc[t][1] = off[t] = f2[t] = _mm512_setzero_ps();
    const __m512 top = _mm512_loadu_ps(table + 240);
    /* Rows lie end to end: fetch the row Q35_PREFETCH_ROWS ahead. A row's
     * parts (scales, low part, planes) are read as separate streams, which
     * the hardware prefetchers follow badly (Q3_5 from DRAM ran at a third
     * of its cache-resident speed); prefetches past the tensor are harmless.
     * The future row is fetched in slices, one per chunk: issued all at the
     * row's start, the prefetches left in one burst, and llama2-7b's long
     * rows (4096 and 11008 columns) decoded 30% slower. */
    const char *ahead = (const char *)row + Q35_PREFETCH_ROWS * L->row_bytes;
    const int64_t n_chunks = (full + Q35_CHUNK_GROUPS - 1) / Q35_CHUNK_GROUPS;
    if (n_chunks == 0)
        for (uint64_t off = 0; off < L->row_bytes; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
    for (int64_t g0 = 0; g0 < full; g0 += Q35_CHUNK_GROUPS) {
        const int ng = (int)(full - g0 < Q35_CHUNK_GROUPS ? full - g0 : Q35_CHUNK_GROUPS);
        {
            const int64_t ci = g0 / Q35_CHUNK_GROUPS;
            const uint64_t lo = ((uint64_t)ci * L->row_bytes / (uint64_t)n_chunks) & ~(uint64_t)63;
            const uint64_t hi = ci + 1 == n_chunks ? L->row_bytes
                                                   : ((uint64_t)(ci + 1) * L->row_bytes / (uint64_t)n_chunks) & ~(uint64_t)63;
            for (uint64_t off = lo; off < hi; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
        }
        const chunk_ctx c = chunk_begin(L, top, row, 2 * g0, 2 * ng);
#pragma GCC unroll 4
        for (int t = 0; t < Q35_TILE; t++)
            if (t < nt) f2[t] = chunk_act(&c, &a[t], 2 * g0, &off[t]);
#define Q35_GROUP_STEP(gi, h, mode)                                                                   \
    do {                                                                                              \
        const int64_t g = g0 + (gi);                                                                  \
        const __m512i codes = group_codes(L, row, g, low_bits, b, mode);                              \
        const __m512i lanes = lane_blocks(gi);                                                        \
        _Pragma("GCC unroll 4") for (int t = 0; t < Q35_TILE; t++) if (t < nt) {                      \
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes,                    \
                                                    _mm512_loadu_si512((const void *)(a[t].q + g * 64))); \
            acc[t][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lanes, f2[t]), \
                                        acc[t][h]);                                                   \
        }                                                                                             \
    } while (0)
#define Q35_TREE_STEP(h, mode)                                                                        \
    do {                                                                                              \
        __m512i codes[4];                                                                             \
        _Pragma("GCC unroll 4") for (int gi = 0; gi < 4; gi++)                                        \
            codes[gi] = group_codes(L, row, g0 + 4 * (h) + gi, low_bits, b, mode);                    \
        const __m512i lanes = _mm512_add_epi32(_mm512_set1_epi32(8 * (h)),                           \
            _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 1, 3, 5, 7, 1, 3, 5, 7));                       \
        _Pragma("GCC unroll 4") for (int t = 0; t < Q35_TILE; t++) if (t < nt) {                      \
            const int8_t *q = a[t].q + (g0 + 4 * (h)) * 64;                                           \
            __m512i d[4];                                                                             \
            _Pragma("GCC unroll 4") for (int gi = 0; gi < 4; gi++)                                    \
                d[gi] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[gi],                        \
                                            _mm512_loadu_si512((const void *)(q + gi * 64)));         \
            const __m512i e0 = _mm512_madd_epi16(_mm512_packs_epi32(d[0], d[1]), ones);               \
            const __m512i e1 = _mm512_madd_epi16(_mm512_packs_epi32(d[2], d[3]), ones);               \
            const __m512i f = _mm512_madd_epi16(_mm512_packs_epi32(e0, e1), ones);                    \
            acc[t][h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_permutexvar_ps(lanes, f2[t]),   \
                                        acc[t][h]);                                                   \
        }                                                                                             \
    } while (0)
        const __m512i ones = _mm512_set1_epi16(1);
        if (b + 1 <= 5 && ng == Q35_CHUNK_GROUPS && (g0 + ng) * Q35_GROUP <= L->n4) {
            /* codes below 32: the int32 lanes of four groups' dots fit int16
             * (4 * 31 * 127 and 8 * 31 * 127 < 2^15), so packs + madd add the
             * lanes of one block in pairs twice, exactly, and one convert and
             * FMA serve 4 groups (lane i of f: chunk-local block 8h + 2(i%4) + (i>=8)) */
            Q35_TREE_STEP(0, PLUS_ALL);
            Q35_TREE_STEP(1, PLUS_ALL);
        } else if (b + 1 <= 5 && ng == Q35_CHUNK_GROUPS && g0 * Q35_GROUP >= L->n4) {
            Q35_TREE_STEP(0, PLUS_NONE);
            Q35_TREE_STEP(1, PLUS_NONE);
        } else if (ng == Q35_CHUNK_GROUPS && (g0 + ng) * Q35_GROUP <= L->n4) {
            /* whole chunks, unrolled so the lane indices are constants */
            _Pragma("GCC unroll 8") for (int gi = 0; gi < Q35_CHUNK_GROUPS; gi++)
                Q35_GROUP_STEP(gi, gi & 1, PLUS_ALL);
        } else if (ng == Q35_CHUNK_GROUPS && g0 * Q35_GROUP >= L->n4) {
            _Pragma("GCC unroll 8") for (int gi = 0; gi < Q35_CHUNK_GROUPS; gi++)
                Q35_GROUP_STEP(gi, gi & 1, PLUS_NONE);
        } else {
            int gi = 0;
            for (; gi + 2 <= ng; gi += 2) {
                Q35_GROUP_STEP(gi, 0, PLUS_SOME);
                Q35_GROUP_STEP(gi + 1, 1, PLUS_SOME);
            }
            if (gi < ng) Q35_GROUP_STEP(gi, 0, PLUS_SOME);
        }
#undef Q35_GROUP_STEP
#undef Q35_TREE_STEP
    }
#pragma GCC unroll 4
    for (int t = 0; t < Q35_TILE; t++)
        if (t < nt)
            out[t * out_stride] = (_mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1])) -
                                   _mm512_reduce_add_ps(off[t])) +
                                  q35_row_dot_from_ref(L, table, row, &a[t], full * 2);
}

AVX512 static inline __attribute__((always_inline)) void row_tile_any(const q35_layout *L, const float table[256], const uint8_t *row,
                                const q35_qact *a, int nt, float *out, int64_t out_stride) {
    if (L->low_bits == 2 && L->b == 3) row_tile(L, table, row, a, nt, 2, 3, out, out_stride);
    else if (L->low_bits == 2 && L->b == 2) row_tile(L, table, row, a, nt, 2, 2, out, out_stride);
    else if (L->low_bits == 4 && L->b == 4) row_tile(L, table, row, a, nt, 4, 4, out, out_stride);
    else row_tile(L, table, row, a, nt, 8, 8, out, out_stride);
}

AVX512 float q35_row_dot_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                                const q35_qact *a) {
    float out;
    row_tile_any(L, table, row, a, 1, &out, 1);
    return out;
}

AVX512 void q35_row_dot_batch_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                                     const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    int t = 0;
    for (; t + Q35_TILE <= n_act; t += Q35_TILE) row_tile_any(L, table, row, a + t, Q35_TILE, out + t * out_stride, out_stride);
    if (t < n_act) row_tile_any(L, table, row, a + t, n_act - t, out + t * out_stride, out_stride);
}

/* ------------------------------------------------- AVX-512 prefill GEMM */

/* q35_gemm_avx512: 16 rows are decoded into the scratch tile once, laid out
 * so that one 512-bit load holds 4 codes of each of the 16 rows (dword c
 * of row i in lane i, c = column / 4), with the rows' block scales beside
 * them (scales[b * 16 + i] = table[s_b of row i]). Then, per activation
 * vector and block, 8 dpbusd with the vector's 4 activations broadcast give
 * the 16 rows' S_b, and per block the float work is one convert and three
 * operations for 16 rows, where the row dot spends it per row. The float
 * operations are the reference's, in its order (a multiply of scale by
 * activation scale, a multiply by the integer, an add per block in block
 * order; no FMA), so every result is bit-identical to q35_row_dot_ref. */

/* In place: r[c] lane i = old r[i] lane c (a 16 x 16 transpose of dwords). */
AVX512 static inline __attribute__((always_inline)) void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* within 128-bit lane L: u[4g + e] = rows 4g..4g+3 at column 4L + e */
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    /* column 4L + e: 128-bit lane m of it is lane L of u[4m + e] */
#pragma GCC unroll 4
    for (int e = 0; e < 4; e++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x44);
        const __m512i v1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xEE);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xEE);
        r[0 + e] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + e] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        r[8 + e] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + e] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/* Decodes rows 0 .. nr-1 (nr <= 16) of rows into the tile; lanes of
 * missing rows get zero codes and scales. */
AVX512 static inline __attribute__((always_inline)) void gemm_decode_codes(const q35_layout *L, const uint8_t *rows,
                                                                          int nr, uint32_t *codes, int low_bits,
                                                                          int b) {
    const int64_t full = L->np / Q35_GROUP;
    for (int64_t g = 0; g < full; g++) {
        __m512i r[16];
        const int64_t c0 = g * Q35_GROUP;
        const int mode = c0 + Q35_GROUP <= L->n4 ? PLUS_ALL : c0 >= L->n4 ? PLUS_NONE : PLUS_SOME;
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            const uint8_t *row = rows + (uint64_t)i * L->row_bytes;
            r[i] = i >= nr               ? _mm512_setzero_si512()
                   : mode == PLUS_ALL  ? group_codes(L, row, g, low_bits, b, PLUS_ALL)
                   : mode == PLUS_NONE ? group_codes(L, row, g, low_bits, b, PLUS_NONE)
                                       : group_codes(L, row, g, low_bits, b, PLUS_SOME);
        }
        transpose16(r);
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++) _mm512_store_si512((void *)(codes + (g * 16 + c) * 16), r[c]);
    }
}

AVX512 static __attribute__((noinline)) void gemm_decode(const q35_layout *L, const float table[256],
                                                         const uint8_t *rows, int nr, uint32_t *codes,
                                                         float *scales) {
    const int64_t full = L->np / Q35_GROUP, nd = L->np / 4;
    if (L->low_bits == 2 && L->b == 3) gemm_decode_codes(L, rows, nr, codes, 2, 3);
    else if (L->low_bits == 2 && L->b == 2) gemm_decode_codes(L, rows, nr, codes, 2, 2);
    else if (L->low_bits == 4 && L->b == 4) gemm_decode_codes(L, rows, nr, codes, 4, 4);
    else gemm_decode_codes(L, rows, nr, codes, 8, 8);
    if (full * 16 < nd) { /* the short last group, through the reference */
        uint8_t tail[Q35_GROUP];
        for (int i = 0; i < 16; i++) {
            memset(tail, 0, sizeof tail);
            if (i < nr) q35_unpack_range(L, rows + (uint64_t)i * L->row_bytes, full * Q35_GROUP, L->np - full * Q35_GROUP, tail);
            for (int64_t c = full * 16; c < nd; c++) codes[c * 16 + i] = load_u32(tail + 4 * (c - full * 16));
        }
    }
    /* the scales of 16 blocks of each row (chunk_begin's exact table[s]),
     * transposed to 16 rows per block */
    const __m512 top = _mm512_loadu_ps(table + 240);
    for (int64_t b0 = 0; b0 < L->n_blocks; b0 += 16) {
        const int nb = (int)(L->n_blocks - b0 < 16 ? L->n_blocks - b0 : 16);
        __m512i r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < nr ? _mm512_castps_si512(chunk_begin(L, top, rows + (uint64_t)i * L->row_bytes, b0, nb).w)
                          : _mm512_setzero_si512();
        transpose16(r);
        for (int k = 0; k < nb; k++) _mm512_store_si512((void *)(scales + (b0 + k) * 16), r[k]);
    }
}

AVX512 void q35_gemm_avx512(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                            const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    uint32_t *codes = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *scales = (float *)(codes + L->np / 4 * 16);
    for (int64_t r0 = 0; r0 < nrows; r0 += Q35_GEMM_ROWS) {
        const int nr = (int)(nrows - r0 < Q35_GEMM_ROWS ? nrows - r0 : Q35_GEMM_ROWS);
        gemm_decode(L, table, rows + (uint64_t)r0 * L->row_bytes, nr, codes, scales);
        /* the next tile's rows, into L2 while this one computes: the decode
         * reads 16 rows in many short streams, which the hardware
         * prefetchers do not follow */
        const int64_t next = nrows - r0 - nr < Q35_GEMM_ROWS ? nrows - r0 - nr : Q35_GEMM_ROWS;
        const uint8_t *np_rows = rows + (uint64_t)(r0 + nr) * L->row_bytes;
        for (uint64_t o = 0; next > 0 && o < (uint64_t)next * L->row_bytes; o += 64)
            _mm_prefetch((const char *)np_rows + o, _MM_HINT_T1);
        int t = 0;
        for (; t + GEMM_VECS <= n_act; t += GEMM_VECS)
            gemm_tile(L, codes, scales, a + t, GEMM_VECS, out + t * ldo + r0, ldo, nr);
        if (t < n_act) gemm_tile(L, codes, scales, a + t, n_act - t, out + t * ldo + r0, ldo, nr);
    }
}

/* ------------------------------------------------------------------ AVX2 */

/* The 32 codes of block h (0 or 1) of full group g, one per byte. */
AVX2 static __m256i decode32(const q35_layout *L, const uint8_t *row, int64_t g, int h) {
    __m256i v;
    if (L->low_bits == 2) {
        /* the group's 16 bytes in both lanes; block h's columns are slots
         * 2h (lane 0) and 2h + 1 (lane 1) */
        const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const void *)(row + L->low_off + (uint64_t)g * 16)));
        const __m256i shifts = _mm256_setr_epi32(4 * h, 4 * h, 4 * h, 4 * h, 4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 2);
        v = _mm256_and_si256(_mm256_srlv_epi32(b, shifts), _mm256_set1_epi8(3));
    } else if (L->low_bits == 4) {
        const __m256i b = _mm256_loadu_si256((const void *)(row + L->low_off + (uint64_t)g * 32));
        v = _mm256_and_si256(h ? _mm256_srli_epi16(b, 4) : b, _mm256_set1_epi8(15));
    } else {
        v = _mm256_loadu_si256((const void *)(row + L->low_off + (uint64_t)g * 64 + (uint64_t)h * 32));
    }
    /* 32 plane bits -> 32 bytes of 0/0xFF: byte k takes bit k of the word */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const uint64_t plane_bytes = (uint64_t)L->np / 8;
    for (int p = L->low_bits; p < L->b; p++) {
        const uint32_t w = load_u32(row + L->plane_off + (uint64_t)(p - L->low_bits) * plane_bytes + (uint64_t)g * 8 + (uint64_t)h * 4);
        const __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)w), spread), bit), bit);
        v = _mm256_or_si256(v, _mm256_and_si256(on, _mm256_set1_epi8((char)(1 << p))));
    }
    if (g * Q35_GROUP + h * Q35_BLOCK < L->n4) {
        const uint32_t w = load_u32(row + L->plus_off + (uint64_t)g * 8 + (uint64_t)h * 4);
        const __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)w), spread), bit), bit);
        v = _mm256_or_si256(v, _mm256_and_si256(on, _mm256_set1_epi8((char)(1 << L->b))));
    }
    return v;
}

/* Eight int32 partial sums of codes (u8) x activations (s8) over 32 columns.
 * maddubs adds pairs into int16: safe for codes < 2^7 (2 * 127 * 127 <
 * 2^15); 8-bit codes are widened to int16 first. */
AVX2 static __m256i dot32(__m256i codes, __m256i act, int wide) {
    if (!wide)
        return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, act), _mm256_set1_epi16(1));
    const __m256i c0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(codes));
    const __m256i c1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(codes, 1));
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(act));
    const __m256i a1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(act, 1));
    return _mm256_add_epi32(_mm256_madd_epi16(c0, a0), _mm256_madd_epi16(c1, a1));
}

AVX2 static int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

AVX2 void q35_block_sums_avx2(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    const int64_t full = L->np / Q35_GROUP;
    const int wide = L->b + (L->n4 > 0) > 7;
    for (int64_t g = 0; g < full; g++)
        for (int h = 0; h < 2; h++)
            S[2 * g + h] = hsum_epi32(dot32(decode32(L, row, g, h),
                                            _mm256_loadu_si256((const void *)(q + g * 64 + h * 32)), wide));
    q35_block_sums_from_ref(L, row, q, S, full * 2);
}

AVX2 float q35_row_dot_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                            const q35_qact *a) {
    const int64_t full = L->np / Q35_GROUP;
    const int wide = L->b + (L->n4 > 0) > 7;
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;
    for (int64_t g = 0; g < full; g++)
        for (int h = 0; h < 2; h++) {
            const int64_t b = 2 * g + h;
            const __m256i dot = dot32(decode32(L, row, g, h),
                                      _mm256_loadu_si256((const void *)(a->q + b * 32)), wide);
            const float f = table[row[b]] * a->d[b];
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(2.0f * f), acc);
            offset += f * (float)(((1 << q35_col_bits(L, b * Q35_BLOCK)) - 1) * a->sum[b]);
        }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float sum = _mm_cvtss_f32(s) - offset;
    return sum + q35_row_dot_from_ref(L, table, row, a, full * 2);
}

AVX2 void q35_row_dot_batch_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                                 const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    for (int t = 0; t < n_act; t++) out[(int64_t)t * out_stride] = q35_row_dot_avx2(L, table, row, &a[t]);
}

/* No tile GEMM for AVX2 yet: the batch row dot, row by row. */
AVX2 void q35_gemm_avx2(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                        const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    (void)scratch;
    for (int64_t r = 0; r < nrows; r++)
        q35_row_dot_batch_avx2(L, table, rows + (uint64_t)r * L->row_bytes, a, n_act, out + r, ldo);
}

#else /* not x86-64: never selected by dispatch.c */
void q35_quantize_act_avx512(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum) {
    q35_quantize_act_ref(x, np, q, d, sum);
}
void q35_block_sums_avx512(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    q35_block_sums_ref(L, row, q, S);
}
float q35_row_dot_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                         const q35_qact *a) {
    return q35_row_dot_ref(L, table, row, a);
}
void q35_block_sums_avx2(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    q35_block_sums_ref(L, row, q, S);
}
void q35_row_dot_batch_avx512(const q35_layout *L, const float table[256], const uint8_t *row,
                              const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    q35_row_dot_batch_ref(L, table, row, a, n_act, out, out_stride);
}
void q35_row_dot_batch_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                            const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    q35_row_dot_batch_ref(L, table, row, a, n_act, out, out_stride);
}
void q35_gemm_avx512(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                     const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    q35_gemm_ref(L, table, rows, nrows, a, n_act, out, ldo, scratch);
}
float q35_row_dot_avx2(const q35_layout *L, const float table[256], const uint8_t *row,
                       const q35_qact *a) {
    return q35_row_dot_ref(L, table, row, a);
}
void q35_gemm_avx2(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                   const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    q35_gemm_ref(L, table, rows, nrows, a, n_act, out, ldo, scratch);
}
#endif
