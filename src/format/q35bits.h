/* q35bits.h — the bit-field primitives of the Q3_5-family row layout
 * (q35fmt.c packs and unpacks every code with these two), and the ACSL
 * model of the layout that Frama-C WP proves q35fmt.c against
 * (proofs/, docs/PROOFS.md). Only comments besides the two helpers: the
 * C compiler sees two static inline functions.
 *
 * A code q of c bits is split into its low part (the low_bits lowest
 * bits, stored in a slot of a packed byte), one bit per bit plane for
 * bits low_bits .. b-1, and for plus columns bit b in the plus plane. */
#ifndef Q35_FORMAT_Q35BITS_H
#define Q35_FORMAT_Q35BITS_H

#include "format/q35fmt.h"

/* The field shapes the layout uses (annotations only): single bits at
 * 0..8 (planes, plus plane, code bits), 2-bit slots at 0, 2, 4, 6, 4-bit
 * slots at 0, 4, whole bytes. */
#define Q35_GEOMETRY(s, w) \
    (((s) == 0 && (w) == 1) || ((s) == 1 && (w) == 1) || ((s) == 2 && (w) == 1) || \
     ((s) == 3 && (w) == 1) || ((s) == 4 && (w) == 1) || ((s) == 5 && (w) == 1) || \
     ((s) == 6 && (w) == 1) || ((s) == 7 && (w) == 1) || ((s) == 8 && (w) == 1) || \
     ((s) == 0 && (w) == 2) || ((s) == 2 && (w) == 2) || ((s) == 4 && (w) == 2) || \
     ((s) == 6 && (w) == 2) || ((s) == 0 && (w) == 4) || ((s) == 4 && (w) == 4) || \
     ((s) == 0 && (w) == 8))

/* The ACSL terms of the two primitives (annotations only). */
#define Q35_FIELD(x, s, w) (((x) >> (s)) & ((1 << (w)) - 1))
#define Q35_PUT(x, v, s) ((x) | ((v) << (s)))

/* The width-bit field of x at bit shift: (x >> shift) & (2^width - 1). */
/*@ requires x_range: 0 <= x <= 255;
    requires geometry: Q35_GEOMETRY(shift, width);
    assigns \nothing;
    ensures def: \result == Q35_FIELD(x, shift, width);
    ensures range: 0 <= \result < (1 << width);
*/
static inline int q35_bits_get(int x, int shift, int width) {
    return (x >> shift) & ((1 << width) - 1);
}

/* x with the field v ORed in at bit shift: x | v << shift. */
/*@ requires x_range: 0 <= x <= 511;
    requires v_range: 0 <= v <= 255;
    requires shift_range: 0 <= shift <= 8;
    assigns \nothing;
    ensures def: \result == Q35_PUT(x, v, shift);
*/
static inline int q35_bits_put(int x, int v, int shift) {
    return x | v << shift;
}

/* ---- ACSL model of the layout (read by Frama-C only) ---------------- */

/*@ // The layouts q35_layout_init makes: (b, low_bits) one of the family's,
    // np a positive multiple of 8 (at most 2^40 + 8), n4 a multiple of 32
    // (plus columns only for b <= 4), offsets as computed by sizes().
    predicate q35_layout_ok(q35_layout *L) =
      \valid_read(L) &&
      ((L->b == 2 && L->low_bits == 2) || (L->b == 3 && L->low_bits == 2) ||
       (L->b == 4 && L->low_bits == 4) || (L->b == 8 && L->low_bits == 8)) &&
      8 <= L->np <= 1099511627784 && L->np % 8 == 0 &&
      0 <= L->n4 <= L->np && L->n4 % 32 == 0 && (L->b == 8 ==> L->n4 == 0) &&
      L->n_blocks == (L->np + 31) / 32 &&
      L->low_off == L->n_blocks &&
      L->plane_off == L->low_off + L->np * L->low_bits / 8 &&
      // (np / 8 * (b - low_bits), b - low_bits being 0 or 1 here)
      L->plus_off == L->plane_off + (L->b == L->low_bits ? 0 : L->np / 8) &&
      L->row_bytes == L->plus_off + L->n4 / 8;

    // Bits of stored column j.
    logic integer q35_cbits{L}(q35_layout *L, integer j) = L->b + (j < L->n4 ? 1 : 0);

    // low_slot: groups of 64 columns (the last may be shorter); in a group
    // of G columns byte i holds columns i, i + G*low/8, ... in slots.
    logic integer q35_g0(integer j) = j / 64 * 64;
    logic integer q35_grp{L}(q35_layout *L, integer j) =
      L->np - q35_g0(j) < 64 ? L->np - q35_g0(j) : 64;
    logic integer q35_stride{L}(q35_layout *L, integer j) =
      q35_grp(L, j) * L->low_bits / 8;
    logic integer q35_lo_byte{L}(q35_layout *L, integer j) =
      L->low_off + (q35_g0(j) * L->low_bits / 8 + (j - q35_g0(j)) % q35_stride(L, j));
    logic integer q35_lo_shift{L}(q35_layout *L, integer j) =
      (j - q35_g0(j)) / q35_stride(L, j) * L->low_bits;
    logic integer q35_plane_byte{L}(q35_layout *L, integer p, integer j) =
      L->plane_off + (p - L->low_bits) * (L->np / 8) + j / 8;
    logic integer q35_plus_byte{L}(q35_layout *L, integer j) = L->plus_off + j / 8;

    // What code_at reads: the low field, then plane bits low_bits .. p-1.
    logic integer q35_decode_upto{L}(q35_layout *L, uint8_t *row, integer j, integer p) =
      p <= L->low_bits ?
        Q35_FIELD(row[q35_lo_byte(L, j)], q35_lo_shift(L, j), L->low_bits) :
        (q35_decode_upto(L, row, j, p - 1) |
         (Q35_FIELD(row[q35_plane_byte(L, p - 1, j)], j % 8, 1) << (p - 1)));
    logic integer q35_decode{L}(q35_layout *L, uint8_t *row, integer j) =
      j < L->n4 ?
        (q35_decode_upto(L, row, j, L->b) |
         (Q35_FIELD(row[q35_plus_byte(L, j)], j % 8, 1) << L->b)) :
        q35_decode_upto(L, row, j, L->b);
*/

#endif
