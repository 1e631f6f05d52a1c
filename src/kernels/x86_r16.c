/* x86_r16.c — the AVX-512 + GFNI kernels of matrices repacked in R16
 * order (format/q35r16.h): q35_r16_rows_avx512 (decode) and
 * q35_r16_gemm_avx512 (prompt batches). Their results are bit-identical to
 * q35_row_dot_ref (q35dot.h). */
#include "kernels/q35dot.h"

#if defined(__x86_64__)
#include "format/q35r16.h"
#include "kernels/x86_tile.h"

/* -------------------------------------------- AVX-512 + GFNI, R16 order */

/* q35_r16_rows_avx512 / q35_r16_gemm_avx512: a tile of 16 rows (R16 order,
 * format/q35r16.h) has, per block, vectors from which one GF(2) affine
 * transform per quad (vgf2p8affineqb: any bits of a byte to any positions,
 * the rest zero) gives the 64 codes of that quad for 16 rows, one dword
 * per row (3-bit codes: two and an OR for quads 6 and 7; 5-bit: the
 * nibble and an OR of the fifth bit; 8-bit: a load). Eight dpbusd with the
 * block's activations broadcast 4 bytes at a time give the 16 rows' S_b,
 * and the float work of gemm_tile follows (the reference's operations, in
 * its order), once for 16 rows. Decoding Q3_5 costs 14 operations per 512
 * weights (8 in its 4-bit plus blocks), where the row kernel spends about
 * as many per 64. */

/* The matrix of vgf2p8affineqb that moves input bits p .. p+w-1 of each
 * byte to bits 0 .. w-1 (output bit i takes the input bits set in byte
 * 7-i of the matrix). */
#define R16_BITS2(p) ((0x01ull << (p) << 56) | (0x02ull << (p) << 48))
#define R16_BITS3(p) (R16_BITS2(p) | (0x04ull << (p) << 40))
#define R16_BITS4(p) (R16_BITS3(p) | (0x08ull << (p) << 32))
#define R16_BITS67 ((0x40ull << 56) | (0x80ull << 48))            /* bits 6, 7 -> 0, 1 */

AVX512GF static inline __attribute__((always_inline)) __m512i r16_aff(__m512i x, unsigned long long m) {
    return _mm512_gf2p8affine_epi64_epi8(x, _mm512_set1_epi64((long long)m), 0);
}

AVX512GF static inline __attribute__((always_inline)) __m512i r16_ld(const uint8_t *p) {
    return _mm512_loadu_si512((const void *)p);
}

/* The 8 quads' codes of one block of `bits`-bit codes (c[s]: dword i = row
 * i's codes of columns 4s .. 4s+3 of the block); dbl 1 gives twice the
 * codes (bits < 8 only) at the same cost: each affine matrix shifted by
 * one output bit (a byte of the matrix lower), an affine instead of an AND
 * for the low field. */
AVX512GF static inline __attribute__((always_inline)) void r16_codes(const uint8_t *blk, int bits, int dbl,
                                                                    __m512i c[8]) {
    const int sh = dbl ? 8 : 0;
    if (bits == 2) {
#pragma GCC unroll 2
        for (int u = 0; u < 2; u++) {
            const __m512i w = r16_ld(blk + 64 * u);
            c[4 * u] = dbl ? r16_aff(w, R16_BITS2(0) >> sh) : _mm512_and_si512(w, _mm512_set1_epi8(3));
            c[4 * u + 1] = r16_aff(w, R16_BITS2(2) >> sh);
            c[4 * u + 2] = r16_aff(w, R16_BITS2(4) >> sh);
            c[4 * u + 3] = r16_aff(w, R16_BITS2(6) >> sh);
        }
    } else if (bits == 3) {
        const __m512i z0 = r16_ld(blk), z1 = r16_ld(blk + 64), z2 = r16_ld(blk + 128);
        c[0] = r16_aff(z0, R16_BITS3(0) >> sh);
        c[1] = r16_aff(z0, R16_BITS3(3) >> sh);
        c[2] = r16_aff(z1, R16_BITS3(0) >> sh);
        c[3] = r16_aff(z1, R16_BITS3(3) >> sh);
        c[4] = r16_aff(z2, R16_BITS3(0) >> sh);
        c[5] = r16_aff(z2, R16_BITS3(3) >> sh);
        c[6] = _mm512_or_si512(r16_aff(z0, R16_BITS67 >> sh), r16_aff(z2, (0x40ull << 40) >> sh)); /* Z2 bit 6 -> bit 2 */
        c[7] = _mm512_or_si512(r16_aff(z1, R16_BITS67 >> sh), r16_aff(z2, (0x80ull << 40) >> sh)); /* Z2 bit 7 -> bit 2 */
    } else if (bits == 4 || bits == 5) {
#pragma GCC unroll 4
        for (int h = 0; h < 4; h++) {
            const __m512i y = r16_ld(blk + 64 * h);
            c[2 * h] = dbl ? r16_aff(y, R16_BITS4(0) >> sh) : _mm512_and_si512(y, _mm512_set1_epi8(15));
            c[2 * h + 1] = r16_aff(y, R16_BITS4(4) >> sh);
        }
        if (bits == 5) { /* H bit s -> bit 4 of quad s */
            const __m512i hi = r16_ld(blk + 256);
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) c[q] = _mm512_or_si512(c[q], r16_aff(hi, ((1ull << q) << 24) >> sh));
        }
    } else {
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) c[q] = r16_ld(blk + 64 * q);
    }
}

/* S + the dword dot products of the 16 rows' codes c (unsigned bytes)
 * with the 4 activation bytes at p (signed), broadcast: _mm512_dpbusd_epi32
 * with _mm512_set1_epi32 of a load, which GCC 12 compiles as a separate
 * vpbroadcastd before each vpdpbusd; here the broadcast is the
 * instruction's memory operand ({1to16}), one instruction instead of two. */
AVX512GF static inline __attribute__((always_inline)) __m512i dpbusd_bcst(__m512i S, __m512i c, const int8_t *p) {
    typedef struct { int8_t b[4]; } four; /* the 4 bytes read, as bytes (no aliasing question) */
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(S) : "v"(c), "m"(*(const four *)(const void *)p));
    return S;
}

/* acc[t] + block b's terms for 16 rows (`bits`-bit codes, nd quads
 * present) and the nv activation vectors a (nv a constant after
 * inlining): the codes decoded once, then per vector eight dpbusd and the
 * reference's float work (block_acc's: (w d) float(I), then the add).
 * Below 8 bits the dpbusd take twice the codes and start from -top sum,
 * so they give I = 2 S - top sum itself (exact: int32, q35int.h), two
 * integer operations per vector fewer than block_acc (measured on a
 * cache-resident matrix: 5% faster for one vector, 9% for eight). */
AVX512GF static inline __attribute__((always_inline)) void r16_block_multi(const uint8_t *tile, const uint8_t *blk,
                                                                          int bits, int nd, int64_t b,
                                                                          const q35_qact *a, int nv, __m512 top,
                                                                          int exp_ok, const int32_t *nts, int64_t ldn,
                                                                          __m512 *acc) {
    const int dbl = bits < 8;
    __m512i c[8];
    r16_codes(blk, bits, dbl, c);
    const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(tile + 16 * b)));
    const __m512 w = exp_ok ? scales16_exp(sc, top) : scales16(sc, 0xFFFF, top);
    __m512i S[GEMM_VECS];
#pragma GCC unroll 8
    for (int t = 0; t < nv; t++) /* -top sum: a broadcast of nts' (a load) or of top_sum (an ALU op) */
        S[t] = !dbl ? _mm512_setzero_si512()
               : nts ? _mm512_set1_epi32(nts[t * ldn + b])
                     : _mm512_set1_epi32(-((1 << bits) - 1) * a[t].sum[b]);
    /* quad by quad, the vectors' sums side by side: each vector's eight
     * dpbusd form a chain of dependent instructions, the vectors' chains
     * are independent */
#pragma GCC unroll 8
    for (int s = 0; s < 8; s++)
#pragma GCC unroll 8
        for (int t = 0; t < nv; t++)
            if (s < nd) S[t] = dpbusd_bcst(S[t], c[s], a[t].q + b * Q35_BLOCK + 4 * s);
#pragma GCC unroll 8
    for (int t = 0; t < nv; t++)
        acc[t] = dbl ? block_acc_i(acc[t], S[t], a[t].d[b], w)
                     : block_acc(acc[t], S[t], ((1 << bits) - 1) * a[t].sum[b], a[t].d[b], w);
}

/* Rows r0 .. r1-1 times nv <= GEMM_VECS activation vectors (out[t * ldo +
 * r - r0]; nv 1 is decode), streamed tile by tile: a block's codes stay in
 * registers and serve every vector, so a small batch (the next tokens of
 * several sequences) reads each weight once, with no decoded tile in
 * memory between. base and nv are constants after inlining. Software
 * prefetch runs R16_PF bytes ahead of the block being decoded (into the
 * next tiles, and past a thread's rows into the next matrix). 12 KB: in
 * interleaved runs of q35 bench tg (docs/bench-speed2.md) it beat the
 * earlier tile / 14 (1-2 KB) on tinyllama-1.1b Q3_5 by 43% at 1 thread
 * and 33% at 2 (medians of 4 rounds); on llama2-7b 8 and 16 KB gained
 * 11-15% and 8-10%, 12 KB about as much; 32 KB was worse (L1 is 32 KB). */
#ifndef R16_PF
#define R16_PF 12288
#endif
AVX512GF static inline __attribute__((always_inline)) void r16_multi(const q35_layout *L, const float table[256],
                                                                    const uint8_t *packed, int64_t r0, int64_t r1,
                                                                    const q35_qact *a, int nv, float *out,
                                                                    int64_t ldo, int base, int exp_ok,
                                                                    const int32_t *nts, int64_t ldn) {
    const uint64_t tb = q35_r16_tile_bytes(L), blocks_off = q35_r16_block_off(L, 0);
    const int64_t nb4 = L->n4 / Q35_BLOCK, nbf = L->np / Q35_BLOCK;
    const __m512 top = _mm512_loadu_ps(table + 240);
    const uint64_t pf = R16_PF;
    const int plus_bytes = 64 * (base + 1), base_bytes = 64 * base;
    for (int64_t t = r0 / Q35_R16_ROWS; t * Q35_R16_ROWS < r1; t++) {
        const uint8_t *tile = packed + (uint64_t)t * tb, *blk = tile + blocks_off;
        __m512 acc[GEMM_VECS];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[v] = _mm512_setzero_ps();
        int64_t b = 0;
        if (base < 8)
            for (; b < nb4; b++, blk += plus_bytes) {
                for (int l = 0; l < plus_bytes; l += 64) _mm_prefetch((const char *)blk + pf + l, _MM_HINT_T0);
                r16_block_multi(tile, blk, base + 1, 8, b, a, nv, top, exp_ok, nts, ldn, acc);
            }
        for (; b < nbf; b++, blk += base_bytes) {
            for (int l = 0; l < base_bytes; l += 64) _mm_prefetch((const char *)blk + pf + l, _MM_HINT_T0);
            r16_block_multi(tile, blk, base, 8, b, a, nv, top, exp_ok, nts, ldn, acc);
        }
        if (b < L->n_blocks) /* a short last block, never a plus block */
            r16_block_multi(tile, blk, base, (int)((L->np - b * Q35_BLOCK) / 4), b, a, nv, top, exp_ok, nts, ldn,
                            acc);
        const int64_t row0 = t * Q35_R16_ROWS;
        const int nr = (int)(r1 - row0 < Q35_R16_ROWS ? r1 - row0 : Q35_R16_ROWS);
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            _mm512_mask_storeu_ps(out + v * ldo + (row0 - r0), (__mmask16)((1u << nr) - 1u), acc[v]);
    }
}

/* r16_multi for the layout's base bits, nv a constant; the scales' cheaper
 * decode (scales16_exp) where the table allows it, scalef's otherwise
 * (only a matrix whose scale base is below about 2^-110 takes that). */
#define R16_BASES(nv, exp_ok)                                                                  \
    switch (L->b) {                                                                            \
    case 2: r16_multi(L, table, packed, r0, r1, a, nv, out, ldo, 2, exp_ok, nts, ldn); break;  \
    case 3: r16_multi(L, table, packed, r0, r1, a, nv, out, ldo, 3, exp_ok, nts, ldn); break;  \
    case 4: r16_multi(L, table, packed, r0, r1, a, nv, out, ldo, 4, exp_ok, nts, ldn); break;  \
    default: r16_multi(L, table, packed, r0, r1, a, nv, out, ldo, 8, exp_ok, nts, ldn); break; \
    }
#define R16_MULTI(nv)                                                                         \
    AVX512GF static __attribute__((noinline)) void r16_multi_##nv(                            \
        const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,       \
        int64_t r1, const q35_qact *a, float *out, int64_t ldo, const int32_t *nts_in,        \
        int64_t ldn) {                                                                        \
        const int32_t *nts = nv > 1 ? nts_in : NULL; /* one vector: broadcast from top_sum */ \
        if (nv > 1 && !nts) __builtin_unreachable();                                          \
        if (scales16_exp_ok(table)) {                                                         \
            R16_BASES(nv, 1)                                                                  \
        } else {                                                                              \
            R16_BASES(nv, 0)                                                                  \
        }                                                                                     \
    }
R16_MULTI(1)
R16_MULTI(2)
R16_MULTI(3)
R16_MULTI(4)
R16_MULTI(5)
R16_MULTI(6)
R16_MULTI(7)
R16_MULTI(8)

AVX512GF static inline void r16_multi_any(const q35_layout *L, const float table[256], const uint8_t *packed,
                                          int64_t r0, int64_t r1, const q35_qact *a, int nv, float *out,
                                          int64_t ldo, const int32_t *nts, int64_t ldn) {
    switch (nv) {
    case 1: r16_multi_1(L, table, packed, r0, r1, a, out, ldo, NULL, 0); break;
    case 2: r16_multi_2(L, table, packed, r0, r1, a, out, ldo, nts, ldn); break;
    case 3: r16_multi_3(L, table, packed, r0, r1, a, out, ldo, nts, ldn); break;
    case 4: r16_multi_4(L, table, packed, r0, r1, a, out, ldo, nts, ldn); break;
    case 5: r16_multi_5(L, table, packed, r0, r1, a, out, ldo, nts, ldn); break;
    case 6: r16_multi_6(L, table, packed, r0, r1, a, out, ldo, nts, ldn); break;
    case 7: r16_multi_7(L, table, packed, r0, r1, a, out, ldo, nts, ldn); break;
    default: r16_multi_8(L, table, packed, r0, r1, a, out, ldo, nts, ldn); break;
    }
}

AVX512GF void q35_r16_rows_avx512(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                                  int64_t r1, const q35_qact *a, float *out) {
    r16_multi_1(L, table, packed, r0, r1, a, out, 0, NULL, 0);
}

/* nts[t * n_blocks + b] = -top sum of vector t's block b: -(2^bits - 1)
 * times its sum, bits the block's code width (q35_col_bits). */
static void neg_top_sums(const q35_layout *L, const q35_qact *a, int nv, int32_t *nts) {
    const int64_t nb = L->n_blocks, nb4 = L->n4 / Q35_BLOCK; /* the plus blocks first (n4: a multiple of 32) */
    const int32_t top_plus = (1 << (L->b + 1)) - 1, top_base = (1 << L->b) - 1;
    /* two plain loops, which GCC vectorizes (picking the width per term kept
     * it scalar: 3% of an 8-sequence decode step) */
    for (int t = 0; t < nv; t++) {
        const int32_t *sum = a[t].sum;
        int32_t *o = nts + t * nb;
        for (int64_t b = 0; b < nb4; b++) o[b] = -(top_plus * sum[b]);
        for (int64_t b = nb4; b < nb; b++) o[b] = -(top_base * sum[b]);
    }
}

/* Any batch streams the tiles with the codes in registers: one token and
 * batches up to GEMM_VECS in one pass (r16_multi), larger ones tile by
 * tile, GEMM_VECS vectors at a time (the tile is cached after the first
 * pass). Decoding a tile once into scratch for gemm_tile instead, as
 * batches above 16 did before, measured slower at every size on a
 * cache-resident 2048x2048 Q3_5 matrix: r16_multi over it is 1.26-1.29x
 * at 24 vectors, 1.09-1.16x at 64, 1.03-1.10x at 512, at 1 and 2 threads
 * (bit-identical results; docs/bench-speed2.md). Two vectors or more:
 * every vector's -top sums first, into scratch (as many vectors at a time
 * as it holds, at least 128), which the dpbusd sums then start from with
 * a broadcast load instead of a multiply and a broadcast from a register
 * per vector and block. */
AVX512GF void q35_r16_gemm_avx512(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                                  int64_t r1, const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    if (n_act == 1) {
        r16_multi_1(L, table, packed, r0, r1, a, out, ldo, NULL, 0);
        return;
    }
    int32_t *nts = scratch;
    const int64_t nb = L->n_blocks;
    const int cap = (int)(Q35_GEMM_SCRATCH(L->np) / (4 * (size_t)nb)) / GEMM_VECS * GEMM_VECS;
    for (int v0 = 0; v0 < n_act; v0 += cap) {
        const int nv = n_act - v0 < cap ? n_act - v0 : cap;
        if (L->b < 8) neg_top_sums(L, a + v0, nv, nts); /* 8-bit codes are not doubled: they start at 0 */
        if (nv <= GEMM_VECS) {
            r16_multi_any(L, table, packed, r0, r1, a + v0, nv, out + v0 * ldo, ldo, nts, nb);
            continue;
        }
        for (int64_t t = r0 / Q35_R16_ROWS; t * Q35_R16_ROWS < r1; t++) {
            const int64_t row0 = t * Q35_R16_ROWS, row1 = row0 + Q35_R16_ROWS < r1 ? row0 + Q35_R16_ROWS : r1;
            for (int v = 0; v < nv; v += GEMM_VECS)
                r16_multi_any(L, table, packed, row0, row1, a + v0 + v, nv - v < GEMM_VECS ? nv - v : GEMM_VECS,
                              out + (v0 + v) * ldo + (row0 - r0), ldo, nts + v * nb, nb);
        }
    }
}

#endif
