/* q35dot_ref.c — reference activation quantizer and dot products for the
 * Q3_5 family: plain loops that define the results (see q35dot.h). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "format/q35r16.h"
#include "kernels/q35dot.h"
#include "kernels/q35int.h"

void q35_quantize_act_ref(const float *x, int64_t np, int8_t *q, float *d, int32_t *sum) {
    for (int64_t j0 = 0, b = 0; j0 < np; j0 += Q35_BLOCK, b++) {
        const int64_t len = np - j0 < Q35_BLOCK ? np - j0 : Q35_BLOCK;
        float amax = 0.0f;
        for (int64_t i = 0; i < len; i++) amax = fmaxf(amax, fabsf(x[j0 + i]));
        /* a block too small for 127 / max to be finite quantizes to zeros */
        const float id = amax > 0.0f && 127.0f / amax <= FLT_MAX ? 127.0f / amax : 0.0f;
        int32_t s = 0;
        for (int64_t i = 0; i < len; i++) {
            /* |x * id| <= 127 up to rounding of id; clamp for safety */
            float v = nearbyintf(x[j0 + i] * id);
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            q[j0 + i] = (int8_t)v;
            s += (int32_t)v;
        }
        d[b] = amax / 127.0f;
        sum[b] = s;
    }
}

void q35_permute_act_ref(const q35_layout *L, const uint8_t *mask, const float *x, float *xp) {
    int64_t j = 0;
    for (int pass = 1; pass >= 0; pass--)
        for (int64_t c = 0; c < L->np; c++)
            if ((mask[c / 8] >> (c % 8) & 1) == pass) xp[j++] = c < L->n ? x[c] : 0.0f;
}

/* The mathematical sum of codes[i] * a[i] over 0 <= i < n, in unbounded
 * integers (the specification of q35_dot_codes_i8; docs/PROOFS.md). */
/*@ logic integer q35_dot_sum{L}(uint8_t *c, int8_t *a, integer n) =
      n <= 0 ? 0 : q35_dot_sum(c, a, n - 1) + c[n - 1] * a[n - 1];
*/

/* Proved with Frama-C WP (make prove): for K <= Q35_DOT_MAX_TERMS = 66311
 * and activations in [-127, 127] (int8 allows -128; the quantizer clamps
 * to -127) no int32 overflow, and the result is the exact sum. */
/*@ requires K_range: 0 <= K <= Q35_DOT_MAX_TERMS;
    requires valid_codes: \valid_read(codes + (0 .. K - 1));
    requires valid_a: \valid_read(a + (0 .. K - 1));
    requires a_range: \forall integer i; 0 <= i < K ==> -127 <= a[i] <= 127;
    assigns \nothing;
    ensures exact: \result == q35_dot_sum(codes, a, K);
    ensures bound: -K * 255 * 127 <= \result <= K * 255 * 127;
*/
int32_t q35_dot_codes_i8(const uint8_t *codes, const int8_t *a, int K) {
    int32_t s = 0;
    /*@ loop invariant 0 <= i <= K;
        loop invariant partial: s == q35_dot_sum(codes, a, i);
        loop invariant partial_bound: -i * 255 * 127 <= s <= i * 255 * 127;
        loop assigns i, s;
        loop variant K - i;
    */
    for (int i = 0; i < K; i++) s += (int32_t)codes[i] * (int32_t)a[i];
    return s;
}

void q35_block_sums_from_ref(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S,
                             int64_t b0) {
    uint8_t codes[Q35_BLOCK];
    for (int64_t b = b0; b < L->n_blocks; b++) {
        const int64_t j0 = b * Q35_BLOCK;
        const int K = (int)(L->np - j0 < Q35_BLOCK ? L->np - j0 : Q35_BLOCK);
        q35_unpack_range(L, row, j0, K, codes);
        S[b] = q35_dot_codes_i8(codes, q + j0, K);
    }
}

void q35_block_sums_ref(const q35_layout *L, const uint8_t *row, const int8_t *q, int32_t *S) {
    q35_block_sums_from_ref(L, row, q, S, 0);
}

/* Columns of block b (32, or fewer in a short last block). */
static int block_len(const q35_layout *L, int64_t b) {
    const int64_t j0 = b * Q35_BLOCK;
    return (int)(L->np - j0 < Q35_BLOCK ? L->np - j0 : Q35_BLOCK);
}

/* Block b's term of a row dot: its scale w, its codes against a. */
static float block_term(const q35_layout *L, float w, const uint8_t *codes, const q35_qact *a, int64_t b) {
    const int64_t j0 = b * Q35_BLOCK;
    const int32_t S = q35_dot_codes_i8(codes, a->q + j0, block_len(L, b));
    const int32_t top = (1 << q35_col_bits(L, j0)) - 1;
    /* |S| <= 32*255*127, |sum| <= 32*127, top <= 255: no overflow (q35int.h) */
    const int32_t I = q35_block_combine(S, top, a->sum[b]);
    return w * a->d[b] * (float)I;
}

float q35_row_dot_from_ref(const q35_layout *L, const float table[256], const uint8_t *row,
                           const q35_qact *a, int64_t b0) {
    float sum = 0.0f;
    uint8_t codes[Q35_BLOCK];
    for (int64_t b = b0; b < L->n_blocks; b++) {
        q35_unpack_range(L, row, b * Q35_BLOCK, block_len(L, b), codes);
        sum += block_term(L, table[row[b]], codes, a, b);
    }
    return sum;
}

float q35_row_dot_ref(const q35_layout *L, const float table[256], const uint8_t *row,
                      const q35_qact *a) {
    return q35_row_dot_from_ref(L, table, row, a, 0);
}

void q35_row_dot_batch_ref(const q35_layout *L, const float table[256], const uint8_t *row,
                           const q35_qact *a, int n_act, float *out, int64_t out_stride) {
    for (int t = 0; t < n_act; t++) out[(int64_t)t * out_stride] = q35_row_dot_ref(L, table, row, &a[t]);
}

void q35_gemm_ref(const q35_layout *L, const float table[256], const uint8_t *rows, int64_t nrows,
                  const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    (void)scratch;
    for (int64_t r = 0; r < nrows; r++)
        for (int t = 0; t < n_act; t++)
            out[t * ldo + r] = q35_row_dot_ref(L, table, rows + (uint64_t)r * L->row_bytes, &a[t]);
}

/* Row i of an R16 tile times a: q35_row_dot_from_ref's operations, on the
 * codes as R16 holds them. */
static float r16_row_dot_ref(const q35_layout *L, const float table[256], const uint8_t *tile, int i,
                             const q35_qact *a) {
    float sum = 0.0f;
    uint8_t codes[Q35_BLOCK];
    for (int64_t b = 0; b < L->n_blocks; b++) {
        for (int k = 0; k < block_len(L, b); k++) codes[k] = (uint8_t)q35_r16_code(L, tile, i, b * Q35_BLOCK + k);
        sum += block_term(L, table[q35_r16_scale(tile, i, b)], codes, a, b);
    }
    return sum;
}

void q35_r16_rows_ref(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                      int64_t r1, const q35_qact *a, float *out) {
    const uint64_t tb = q35_r16_tile_bytes(L);
    for (int64_t r = r0; r < r1; r++)
        out[r - r0] = r16_row_dot_ref(L, table, packed + (uint64_t)(r / Q35_R16_ROWS) * tb,
                                      (int)(r % Q35_R16_ROWS), a);
}

void q35_r16_gemm_ref(const q35_layout *L, const float table[256], const uint8_t *packed, int64_t r0,
                      int64_t r1, const q35_qact *a, int n_act, float *out, int64_t ldo, void *scratch) {
    (void)scratch;
    for (int t = 0; t < n_act; t++) q35_r16_rows_ref(L, table, packed, r0, r1, &a[t], out + t * ldo);
}
