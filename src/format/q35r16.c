/* q35r16.c — the R16 order of q35r16.h: sizes, repacking, decoding. */
#include "format/q35r16.h"

#include <stdlib.h>
#include <string.h>

static uint64_t scales_bytes(const q35_layout *L) { return ((uint64_t)L->n_blocks * 16 + 63) / 64 * 64; }

/* Bits of block b's codes. */
static int block_bits(const q35_layout *L, int64_t b) { return L->b + (b * Q35_BLOCK < L->n4); }

uint64_t q35_r16_block_off(const q35_layout *L, int64_t b) {
    const int64_t nb4 = L->n4 / Q35_BLOCK;
    return scales_bytes(L) + 64 * ((uint64_t)b * (uint64_t)L->b + (uint64_t)(b < nb4 ? b : nb4));
}

uint64_t q35_r16_tile_bytes(const q35_layout *L) { return q35_r16_block_off(L, L->n_blocks); }

uint64_t q35_r16_bytes(const q35_layout *L) {
    return (uint64_t)((L->m + Q35_R16_ROWS - 1) / Q35_R16_ROWS) * q35_r16_tile_bytes(L);
}

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

/* Codes of one row (np of them, then zeros up to a whole block), eight at
 * a time: full groups of 64 straight from the low part, planes and plus
 * plane (docs/FORMAT.md), a short last group through q35_unpack_range.
 * Little-endian hosts (x86-64, where R16 runs, and AArch64). */
static void unpack_row(const q35_layout *L, const uint8_t *row, uint8_t *codes) {
    const int64_t full = L->np / Q35_GROUP;
    const uint8_t *low = row + L->low_off, *plus = row + L->plus_off;
    for (int64_t g = 0; g < full; g++) {
        uint64_t c[8]; /* c[e]: columns 8e .. 8e+7 */
        if (L->low_bits == 2) {
            for (int h = 0; h < 2; h++) { /* low bytes 8h .. 8h+7: columns 16s + 8h + (0..7) in slot s */
                const uint64_t v = load8(low + 16 * g + 8 * h);
                for (int s = 0; s < 4; s++) c[2 * s + h] = (v >> (2 * s)) & 0x0303030303030303ull;
            }
        } else if (L->low_bits == 4) { /* byte i: column i (low nibble), i + 32 (high) */
            for (int h = 0; h < 4; h++) {
                const uint64_t v = load8(low + 32 * g + 8 * h);
                c[h] = v & 0x0F0F0F0F0F0F0F0Full;
                c[4 + h] = (v >> 4) & 0x0F0F0F0F0F0F0F0Full;
            }
        } else {
            memcpy(c, low + 64 * g, sizeof c);
        }
        for (int p = L->low_bits; p < L->b; p++) {
            const uint8_t *plane = row + L->plane_off + (uint64_t)(p - L->low_bits) * (uint64_t)(L->np / 8);
            for (int e = 0; e < 8; e++) c[e] |= spread_bits(plane[8 * g + e]) << p;
        }
        for (int e = 0; e < 8 && g * Q35_GROUP + 8 * e < L->n4; e++) c[e] |= spread_bits(plus[8 * g + e]) << L->b;
        memcpy(codes + g * Q35_GROUP, c, sizeof c);
    }
    if (full * Q35_GROUP < L->np) q35_unpack_range(L, row, full * Q35_GROUP, L->np - full * Q35_GROUP, codes + full * Q35_GROUP);
    memset(codes + L->np, 0, (size_t)(L->n_blocks * Q35_BLOCK - L->np));
}

/* Row i's 32 codes c[4 s + k] of one block of `bits`-bit codes into the
 * block's vectors (blk: the block; the row's bytes are at 4 i + k). */
static void put_block(uint8_t *blk, int bits, int i, const uint8_t *c) {
    for (int k = 0; k < 4; k++) {
        uint8_t *o = blk + 4 * i + k;
        const uint8_t *q = c + k; /* q[4 s]: quad s */
        switch (bits) {
        case 2:
            for (int u = 0; u < 2; u++)
                o[64 * u] = (uint8_t)(q[16 * u] | q[16 * u + 4] << 2 | q[16 * u + 8] << 4 | q[16 * u + 12] << 6);
            break;
        case 3:
            o[0] = (uint8_t)(q[0] | q[4] << 3 | (q[24] & 3) << 6);
            o[64] = (uint8_t)(q[8] | q[12] << 3 | (q[28] & 3) << 6);
            o[128] = (uint8_t)(q[16] | q[20] << 3 | (q[24] >> 2) << 6 | (q[28] >> 2) << 7);
            break;
        case 4:
        case 5:
            for (int h = 0; h < 4; h++) o[64 * h] = (uint8_t)((q[8 * h] & 15) | (q[8 * h + 4] & 15) << 4);
            if (bits == 5) {
                uint8_t hi = 0;
                for (int s = 0; s < 8; s++) hi |= (uint8_t)(((q[4 * s] >> 4) & 1) << s);
                o[256] = hi;
            }
            break;
        default:
            for (int s = 0; s < 8; s++) o[64 * s] = q[4 * s];
        }
    }
}

void q35_r16_pack(const q35_layout *L, const uint8_t *rows, int64_t t0, int64_t t1, uint8_t *out) {
    const uint64_t tb = q35_r16_tile_bytes(L);
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
            unpack_row(L, row, codes);
            for (int64_t b = 0; b < L->n_blocks; b++) {
                tile[16 * b + i] = row[b];
                put_block(tile + q35_r16_block_off(L, b), block_bits(L, b), i, codes + b * Q35_BLOCK);
            }
        }
    }
    free(codes);
}

int q35_r16_code(const q35_layout *L, const uint8_t *tile, int i, int64_t j) {
    const int64_t b = j / Q35_BLOCK;
    const int s = (int)(j % Q35_BLOCK) / 4, k = (int)(j % 4), bits = block_bits(L, b);
    const uint8_t *o = tile + q35_r16_block_off(L, b) + 4 * i + k;
    switch (bits) {
    case 2: return (o[64 * (s / 4)] >> (2 * (s % 4))) & 3;
    case 3:
        if (s < 6) return (o[64 * (s / 2)] >> (3 * (s % 2))) & 7;
        return ((o[64 * (s - 6)] >> 6) & 3) | ((o[128] >> s) & 1) << 2;
    case 4: return (o[64 * (s / 2)] >> (4 * (s % 2))) & 15;
    case 5: return ((o[64 * (s / 2)] >> (4 * (s % 2))) & 15) | ((o[256] >> s) & 1) << 4;
    default: return o[64 * s];
    }
}
