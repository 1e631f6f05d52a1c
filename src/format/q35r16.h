/* q35r16.h — "R16", the in-memory order a Q3_5 matrix is repacked into at
 * load for the AVX-512 kernels: 16 rows interleaved, so that one 512-bit
 * register holds 4 codes of each of 16 rows and the per-block float work
 * is done once for 16 rows. It is never written to a file: the GGUF bytes
 * stay as docs/FORMAT.md says, and every bit of R16 comes from them.
 *
 * Rows are taken in tiles of 16 (the last tile padded with zero rows), each
 * tile q35_r16_tile_bytes(L) long, tile t at t * tile_bytes:
 *
 *   scales  n_blocks * 16 bytes, padded with zeros to a multiple of 64:
 *           byte 16 b + i is row i's scale byte of block b;
 *   blocks  in order, each 64-byte aligned. Block b's codes have
 *           c = b_type + (b < n4 / 32) bits (b_type the type's base bits)
 *           and take 64 c bytes. Within the block, "quad s" of row i, byte
 *           k (s < 8, k < 4) is the code of stored column 32 b + 4 s + k
 *           (0 past np), and it sits at byte 4 i + k of each 64-byte
 *           vector below:
 *     c = 2: W0, W1: Wu bits 2t, 2t+1 hold quad 4u + t;
 *     c = 3: Z0, Z1, Z2:
 *           Z0: bits 0-2 quad 0, bits 3-5 quad 1, bits 6-7 quad 6's bits 0-1
 *           Z1: bits 0-2 quad 2, bits 3-5 quad 3, bits 6-7 quad 7's bits 0-1
 *           Z2: bits 0-2 quad 4, bits 3-5 quad 5, bit 6 quad 6's bit 2,
 *               bit 7 quad 7's bit 2;
 *     c = 4: Y0..Y3: Yh's low nibble quad 2h, high nibble quad 2h + 1;
 *     c = 5: Y0..Y3 as for c = 4 with bits 0-3, then H: bit s quad s's bit 4;
 *     c = 8: V0..V7: Vs quad s.
 *
 * A tile holds exactly the bits of its 16 rows (plus padding to 64 bytes
 * for the scales), so R16 takes the memory of the rows it replaces. Every
 * family type (Q2_5, Q3_5, Q4_5, Q8_S) can be repacked. */
#ifndef Q35_FORMAT_Q35R16_H
#define Q35_FORMAT_Q35R16_H

#include <stdint.h>

#include "format/q35fmt.h"

#define Q35_R16_ROWS 16

/* Bytes of one tile; of all ceil(m / 16) tiles. */
uint64_t q35_r16_tile_bytes(const q35_layout *L);
uint64_t q35_r16_bytes(const q35_layout *L);
/* Offset of block b within a tile. */
uint64_t q35_r16_block_off(const q35_layout *L, int64_t b);

/* Tiles t0 .. t1-1 of the m packed rows (rows row_bytes apart) into out
 * (tile t at out + t * tile_bytes). */
void q35_r16_pack(const q35_layout *L, const uint8_t *rows, int64_t t0, int64_t t1, uint8_t *out);

/* Code of stored column j of row i (< 16) of a tile; its scale byte of
 * block b. The reference decoding (tests compare it with the rows). */
int q35_r16_code(const q35_layout *L, const uint8_t *tile, int i, int64_t j);
static inline int q35_r16_scale(const uint8_t *tile, int i, int64_t b) { return tile[16 * b + i]; }

#endif
