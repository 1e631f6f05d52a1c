/* q35r16.c — the R16 order of q35r16.h: sizes, repacking, decoding. */
#include "format/q35r16.h"

#include <stdlib.h>
#include <string.h>

int q35_r16_supported(const q35_layout *L) {
    return L->type == Q35_TYPE_Q3_5 && L->b == 3 && L->low_bits == 2 && L->n4 % Q35_BLOCK == 0;
}

static uint64_t scales_bytes(const q35_layout *L) { return ((uint64_t)L->n_blocks * 16 + 63) / 64 * 64; }

uint64_t q35_r16_block_off(const q35_layout *L, int64_t b) {
    const int64_t nb4 = L->n4 / Q35_BLOCK;
    return scales_bytes(L) + (uint64_t)(b < nb4 ? b : nb4) * 256 + (uint64_t)(b > nb4 ? b - nb4 : 0) * 192;
}

uint64_t q35_r16_tile_bytes(const q35_layout *L) { return q35_r16_block_off(L, L->n_blocks); }

uint64_t q35_r16_bytes(const q35_layout *L) {
    return (uint64_t)((L->m + Q35_R16_ROWS - 1) / Q35_R16_ROWS) * q35_r16_tile_bytes(L);
}

/* Where quad s of a block keeps its bits: vector, shift of bits 0-1 (or of
 * the 4-bit code in a plus block), and for quads 6 and 7 the bit of Z2 that
 * holds bit 2. */
static void place(int plus, int s, int *vec, int *shift, int *hi_bit) {
    *hi_bit = -1;
    if (plus) {
        *vec = s / 2;
        *shift = 4 * (s % 2);
    } else if (s < 6) {
        *vec = s / 2;
        *shift = 3 * (s % 2);
    } else {
        *vec = s - 6;
        *shift = 6;
        *hi_bit = s; /* 6 or 7 */
    }
}

/* Codes of one Q3_5 row (np of them, then zeros up to a whole block):
 * full groups of 64 straight from the low part, plane and plus plane
 * (docs/FORMAT.md), a short last group through q35_unpack_range. */
/* Byte k of the result: bit k of v (0 or 1). */
static uint64_t spread_bits(uint8_t v) {
    const uint64_t x = ((uint64_t)v * 0x0101010101010101ull) & 0x8040201008040201ull;
    return ((x + 0x7F7F7F7F7F7F7F7Full) & 0x8080808080808080ull) >> 7;
}

static uint64_t load8(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Codes of one Q3_5 row (np of them, then zeros up to a whole block),
 * eight at a time: full groups of 64 straight from the low part, plane and
 * plus plane (docs/FORMAT.md), a short last group through
 * q35_unpack_range. Little-endian hosts only (x86-64, where R16 runs). */
static void unpack_q35_row(const q35_layout *L, const uint8_t *row, uint8_t *codes) {
    const int64_t full = L->np / Q35_GROUP;
    const uint8_t *low = row + L->low_off, *plane = row + L->plane_off, *plus = row + L->plus_off;
    for (int64_t g = 0; g < full; g++) {
        uint64_t c[8]; /* c[e]: columns 8e .. 8e+7 */
        for (int h = 0; h < 2; h++) { /* low bytes 8h .. 8h+7: columns 16s + 8h + (0..7) in slot s */
            const uint64_t v = load8(low + 16 * g + 8 * h);
            for (int s = 0; s < 4; s++) c[2 * s + h] = (v >> (2 * s)) & 0x0303030303030303ull;
        }
        for (int e = 0; e < 8; e++) c[e] |= spread_bits(plane[8 * g + e]) << 2;
        for (int e = 0; e < 8 && g * Q35_GROUP + 8 * e < L->n4; e++) c[e] |= spread_bits(plus[8 * g + e]) << 3;
        memcpy(codes + g * Q35_GROUP, c, sizeof c);
    }
    if (full * Q35_GROUP < L->np) q35_unpack_range(L, row, full * Q35_GROUP, L->np - full * Q35_GROUP, codes + full * Q35_GROUP);
    memset(codes + L->np, 0, (size_t)(L->n_blocks * Q35_BLOCK - L->np));
}

void q35_r16_pack(const q35_layout *L, const uint8_t *rows, int64_t t0, int64_t t1, uint8_t *out) {
    const uint64_t tb = q35_r16_tile_bytes(L);
    const int64_t nb4 = L->n4 / Q35_BLOCK;
    uint8_t *codes = malloc((size_t)(L->n_blocks * Q35_BLOCK));
    if (!codes) { /* cannot happen for the sizes a loaded model has; leave a zero tile */
        memset(out + (uint64_t)t0 * tb, 0, (size_t)((uint64_t)(t1 - t0) * tb));
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        uint8_t *tile = out + (uint64_t)t * tb;
        memset(tile, 0, (size_t)tb);
        for (int i = 0; i < Q35_R16_ROWS; i++) {
            const int64_t r = t * Q35_R16_ROWS + i;
            if (r >= L->m) break;
            const uint8_t *row = rows + (uint64_t)r * L->row_bytes;
            unpack_q35_row(L, row, codes);
            for (int64_t b = 0; b < L->n_blocks; b++) {
                tile[16 * b + i] = row[b];
                uint8_t *blk = tile + q35_r16_block_off(L, b) + 4 * i;
                const uint8_t *c = codes + b * Q35_BLOCK; /* c[4 s + k]: quad s, byte k */
                for (int k = 0; k < 4; k++) {
                    if (b < nb4) {
                        for (int h = 0; h < 4; h++) blk[64 * h + k] = (uint8_t)(c[8 * h + k] | c[8 * h + 4 + k] << 4);
                    } else {
                        blk[k] = (uint8_t)(c[k] | c[4 + k] << 3 | (c[24 + k] & 3) << 6);
                        blk[64 + k] = (uint8_t)(c[8 + k] | c[12 + k] << 3 | (c[28 + k] & 3) << 6);
                        blk[128 + k] = (uint8_t)(c[16 + k] | c[20 + k] << 3 | (c[24 + k] >> 2) << 6 | (c[28 + k] >> 2) << 7);
                    }
                }
            }
        }
    }
    free(codes);
}

int q35_r16_code(const q35_layout *L, const uint8_t *tile, int i, int64_t j) {
    const int64_t b = j / Q35_BLOCK;
    const int s = (int)(j % Q35_BLOCK) / 4, k = (int)(j % 4);
    const uint8_t *blk = tile + q35_r16_block_off(L, b);
    int vec, shift, hi_bit;
    const int plus = b < L->n4 / Q35_BLOCK;
    place(plus, s, &vec, &shift, &hi_bit);
    const int byte = blk[64 * vec + 4 * i + k];
    if (plus) return (byte >> shift) & 15;
    if (hi_bit < 0) return (byte >> shift) & 7;
    return ((byte >> shift) & 3) | (((blk[128 + 4 * i + k] >> hi_bit) & 1) << 2);
}
