/* q35fmt.h — the Q3_5 family of weight formats (Q2_5, Q3_5, Q4_5, Q8_S):
 * layout arithmetic, packing and unpacking. docs/FORMAT.md is the
 * specification; this file and q35fmt.c are its reference.
 *
 * A tensor of m rows of n weights is stored as a header and m rows of
 * equal size. Columns are stored permuted: the n4 "plus" columns (chosen by
 * the quantizer, marked in the header's mask) first, then the others, each
 * part in ascending column order; n is padded with zero columns to np, a
 * multiple of 8. A stored column j has c_j = b + (j < n4) bits; its code q
 * (0 <= q < 2^c_j) stands for the odd integer level l = 2q - (2^c_j - 1),
 * and the weight is d * l with d the scale of its block of 32 columns. */
#ifndef Q35_FORMAT_Q35FMT_H
#define Q35_FORMAT_Q35FMT_H

#include <stddef.h>
#include <stdint.h>

/* GGUF tensor type ids of the family (far from ggml's own ids). */
enum {
    Q35_TYPE_Q2_5 = 3525,
    Q35_TYPE_Q3_5 = 3535,
    Q35_TYPE_Q4_5 = 3545,
    Q35_TYPE_Q8_S = 3580
};

#define Q35_BLOCK 32      /* columns per scale (the last block of a row may be shorter) */
#define Q35_GROUP 64      /* columns per packing group of the low part */

typedef struct q35_layout {
    int type;             /* Q35_TYPE_* */
    int b;                /* base bits per code: 2, 3, 4 or 8 */
    int low_bits;         /* bits in the packed low part: 2, 4 or 8 */
    double target_bpw;    /* the budget n4 is fitted to */
    int64_t n, m;         /* columns (row length) and rows */
    int64_t np;           /* n padded to a multiple of 8 */
    int64_t n4;           /* plus columns: a multiple of 32, <= n */
    int64_t n_blocks;     /* ceil(np / 32): scale bytes per row */
    uint64_t mask_bytes;  /* ceil(np / 8), padded to a multiple of 4 */
    uint64_t header_bytes;/* 8 + mask_bytes */
    uint64_t low_off, plane_off, plus_off; /* offsets within a row */
    uint64_t row_bytes;
    uint64_t total_bytes; /* header + m rows */
} q35_layout;

/* Fills L for a tensor of m rows of n columns of the given type, choosing
 * the largest n4 (a multiple of 32) that keeps total_bytes * 8 / (n * m)
 * <= the type's budget. Returns 0, or -1 for an unknown type or sizes that
 * overflow. Depends on (type, n, m) only, so readers can size a tensor
 * from its shape. */
int q35_layout_init(q35_layout *L, int type, int64_t n, int64_t m);

/* Is id one of the family? Its name ("Q3_5"), or NULL. */
int q35_is_family(int type);
const char *q35_family_name(int type);

/* The scale byte s stands for d = base * 2^((s - 255) / 16), s = 0 for 0.
 * table[256] is filled once per tensor. */
void q35_scale_table(float base, float table[256]);

/* Header: f32 base, u32 n4, then the column mask (bit c of byte c/8 set for
 * a plus column). Validates a stored header against L: base finite and > 0
 * (or 0 with no non-zero scale... see FORMAT.md), n4 as computed, exactly
 * n4 mask bits set, none at padding columns. Returns 0 or -1 with *why. */
int q35_header_check(const q35_layout *L, const uint8_t *hdr, const char **why);

/* The header's column mask (bit c % 8 of byte c / 8: original column c is
 * a plus column). */
static inline const uint8_t *q35_header_mask(const uint8_t *hdr) { return hdr + 8; }

/* The stored column order: perm[j] is the original column of stored column
 * j (perm[j] >= n for padding). perm has np entries. */
void q35_header_perm(const q35_layout *L, const uint8_t *hdr, int32_t *perm);

/* Packs one row: codes[j] (np values, c_j bits each) and scales[b] (n_blocks
 * bytes) into row (row_bytes). Unpacks the inverse. Reference versions:
 * the round trip is lossless for every code (tests, proofs/). */
void q35_pack_row(const q35_layout *L, const uint8_t *codes, const uint8_t *scales, uint8_t *row);
void q35_unpack_row(const q35_layout *L, const uint8_t *row, uint8_t *codes, uint8_t *scales);

/* Codes of stored columns j0 .. j0+len-1 of a packed row. */
void q35_unpack_range(const q35_layout *L, const uint8_t *row, int64_t j0, int64_t len,
                      uint8_t *codes);

/* Weights of one row in stored order (np floats). */
void q35_dequantize_row(const q35_layout *L, const float table[256], const uint8_t *row, float *out);

/* Bits of stored column j. */
static inline int q35_col_bits(const q35_layout *L, int64_t j) { return L->b + (j < L->n4); }

#endif
