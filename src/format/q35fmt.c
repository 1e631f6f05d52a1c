/* q35fmt.c — reference layout, packing and unpacking of the Q3_5 family. */
#include "format/q35fmt.h"

#include <math.h>
#include <string.h>

#include "core/checked.h"
#include "format/q35bits.h"

typedef struct family_row {
    int type, b, low_bits;
    double target_bpw;
    int plus;             /* 1 if the type has plus columns */
    const char *name;
} family_row;

static const family_row family[] = {
    {Q35_TYPE_Q2_5, 2, 2, 2.5, 1, "Q2_5"},
    {Q35_TYPE_Q3_5, 3, 2, 3.5, 1, "Q3_5"},
    {Q35_TYPE_Q4_5, 4, 4, 4.5, 1, "Q4_5"},
    {Q35_TYPE_Q8_S, 8, 8, 8.25, 0, "Q8_S"},
};

static const family_row *find(int type) {
    for (size_t i = 0; i < sizeof family / sizeof family[0]; i++)
        if (family[i].type == type) return &family[i];
    return NULL;
}

int q35_is_family(int type) { return find(type) != NULL; }

const char *q35_family_name(int type) {
    const family_row *f = find(type);
    return f ? f->name : NULL;
}

/* Row and tensor sizes for a given n4. */
static int sizes(q35_layout *L, int64_t n4) {
    const uint64_t np = (uint64_t)L->np;
    L->n4 = n4;
    L->low_off = (uint64_t)L->n_blocks;
    L->plane_off = L->low_off + np * (uint64_t)L->low_bits / 8;
    L->plus_off = L->plane_off + np / 8 * (uint64_t)(L->b - L->low_bits);
    L->row_bytes = L->plus_off + (uint64_t)n4 / 8;
    uint64_t rows;
    return q35_mul_u64(L->row_bytes, (uint64_t)L->m, &rows) ||
           q35_add_u64(rows, L->header_bytes, &L->total_bytes);
}

int q35_layout_init(q35_layout *L, int type, int64_t n, int64_t m) {
    const family_row *f = find(type);
    memset(L, 0, sizeof *L);
    if (!f || n < 1 || m < 1 || n > ((int64_t)1 << 40) || m > ((int64_t)1 << 40)) return -1;
    L->type = type;
    L->b = f->b;
    L->low_bits = f->low_bits;
    L->target_bpw = f->target_bpw;
    L->n = n;
    L->m = m;
    L->np = (n + 7) / 8 * 8;
    L->n_blocks = (L->np + Q35_BLOCK - 1) / Q35_BLOCK;
    L->mask_bytes = ((uint64_t)L->np / 8 + 3) / 4 * 4;
    L->header_bytes = 8 + L->mask_bytes;
    /* budget in bits: target * n * m (the unpadded count: padding is paid
     * for out of the budget) */
    const double budget = f->target_bpw * (double)n * (double)m;
    /* the size grows with n4: binary search for the largest n4 = 32 k
     * that fits (k = 0 when none does) */
    int64_t lo = 0, hi = f->plus ? n / Q35_BLOCK : 0;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        if (sizes(L, mid * Q35_BLOCK)) return -1;
        if ((double)L->total_bytes * 8.0 <= budget) lo = mid;
        else hi = mid - 1;
    }
    return sizes(L, lo * Q35_BLOCK) ? -1 : 0;
}

void q35_scale_table(float base, float table[256]) {
    table[0] = 0.0f;
    /* The top 16 entries from exp2f; every other one is one of those times
     * an exact power of two, so SIMD kernels rebuild any entry from
     * table[240..255] with one scalef, bit for bit (x86_q35.c). */
    for (int s = 240; s < 256; s++) table[s] = base * exp2f((float)(s - 255) / 16.0f);
    for (int s = 1; s < 240; s++) table[s] = ldexpf(table[240 + (s & 15)], -((255 - s) >> 4));
}

static uint32_t read_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

int q35_header_check(const q35_layout *L, const uint8_t *hdr, const char **why) {
    float base;
    memcpy(&base, hdr, 4);
    if (!isfinite(base) || base < 0.0f) {
        *why = "scale base is not a finite number >= 0";
        return -1;
    }
    if ((int64_t)read_u32(hdr + 4) != L->n4) {
        *why = "plus-column count differs from the one the shape implies";
        return -1;
    }
    const uint8_t *mask = q35_header_mask(hdr);
    int64_t set = 0;
    for (int64_t c = 0; c < L->np; c++) {
        if (!(mask[c / 8] >> (c % 8) & 1)) continue;
        if (c >= L->n) {
            *why = "a padding column is marked as a plus column";
            return -1;
        }
        set++;
    }
    for (uint64_t i = (uint64_t)L->np / 8; i < L->mask_bytes; i++)
        if (mask[i]) {
            *why = "mask padding bytes are not zero";
            return -1;
        }
    if (set != L->n4) {
        *why = "the mask marks a different number of plus columns than the header says";
        return -1;
    }
    return 0;
}

void q35_header_perm(const q35_layout *L, const uint8_t *hdr, int32_t *perm) {
    const uint8_t *mask = q35_header_mask(hdr);
    int64_t j = 0;
    for (int pass = 1; pass >= 0; pass--)
        for (int64_t c = 0; c < L->np; c++)
            if ((mask[c / 8] >> (c % 8) & 1) == pass) perm[j++] = (int32_t)c;
}

/* Where the low part of stored column j lives: byte and bit shift. Groups
 * of 64 columns (the last may be shorter); within a group of G columns,
 * byte i holds columns i, i + G*low/8, ... in successive low-bit slots. */
/*@ requires layout: q35_layout_ok(L);
    requires column: 0 <= j < L->np;
    requires out: \valid(byte) && \valid(shift) && \separated(byte, shift, L);
    assigns *byte, *shift;
    ensures model_byte: *byte == \old(q35_lo_byte(L, j));
    ensures model_shift: *shift == \old(q35_lo_shift(L, j));
    ensures in_low_part: L->low_off <= *byte < L->plane_off;
    ensures slot: Q35_GEOMETRY(*shift, L->low_bits);
*/
static void low_slot(const q35_layout *L, int64_t j, uint64_t *byte, int *shift) {
    const int64_t g0 = j / Q35_GROUP * Q35_GROUP;
    const int64_t G = L->np - g0 < Q35_GROUP ? L->np - g0 : Q35_GROUP;
    const int64_t stride = G * L->low_bits / 8; /* bytes in this group */
    const int64_t i = j - g0;
    /*@ assert group: g0 % 64 == 0 && 8 <= G <= 64 && G % 8 == 0 && g0 + G <= L->np && 0 <= i < G; */
    /*@ assert low_cases: L->low_bits == 2 || L->low_bits == 4 || L->low_bits == 8; */
    /*@ assert stride2: L->low_bits == 2 ==> stride == G / 4; */
    /*@ assert stride4: L->low_bits == 4 ==> stride == G / 2; */
    /*@ assert stride8: L->low_bits == 8 ==> stride == G; */
    /*@ assert stride: L->low_bits <= stride; */
    /*@ assert slot2: L->low_bits == 2 ==> 0 <= i / stride <= 3; */
    /*@ assert slot4: L->low_bits == 4 ==> 0 <= i / stride <= 1; */
    /*@ assert slot8: L->low_bits == 8 ==> i / stride == 0; */
    /*@ assert slot: 0 <= i / stride && (i / stride + 1) * L->low_bits <= 8; */
    /*@ assert in_group2: L->low_bits == 2 ==>
                          0 <= g0 * L->low_bits / 8 + i % stride < L->np * L->low_bits / 8; */
    /*@ assert in_group4: L->low_bits == 4 ==>
                          0 <= g0 * L->low_bits / 8 + i % stride < L->np * L->low_bits / 8; */
    /*@ assert in_group8: L->low_bits == 8 ==>
                          0 <= g0 * L->low_bits / 8 + i % stride < L->np * L->low_bits / 8; */
    /*@ assert in_group: 0 <= g0 * L->low_bits / 8 + i % stride < L->np * L->low_bits / 8; */
    /*@ assert logic_model: g0 == q35_g0(j) && G == q35_grp(L, j) && stride == q35_stride(L, j); */
    *byte = L->low_off + (uint64_t)(g0 * L->low_bits / 8 + i % stride);
    *shift = (int)(i / stride) * L->low_bits;
    /*@ assert shift2: L->low_bits == 2 ==> (*shift == 0 || *shift == 2 || *shift == 4 || *shift == 6); */
    /*@ assert shift4: L->low_bits == 4 ==> (*shift == 0 || *shift == 4); */
    /*@ assert shift8: L->low_bits == 8 ==> *shift == 0; */
}

/*@ requires layout: q35_layout_ok(L);
    requires mem: \valid(row + (0 .. L->row_bytes - 1)) &&
                  \valid_read(codes + (0 .. L->np - 1)) &&
                  \valid_read(scales + (0 .. L->n_blocks - 1));
    requires sep: \separated(row + (0 .. L->row_bytes - 1), L, codes + (0 .. L->np - 1),
                              scales + (0 .. L->n_blocks - 1));
    assigns row[0 .. L->row_bytes - 1];
*/
void q35_pack_row(const q35_layout *L, const uint8_t *codes, const uint8_t *scales, uint8_t *row) {
    /* (plain loops rather than memset/memcpy: Frama-C's libc contracts for
     * those take char *, which its typed memory model cannot mix with
     * uint8_t *; compilers turn these loops back into the calls) */
    /*@ loop invariant 0 <= k <= L->row_bytes;
        loop assigns k, row[0 .. L->row_bytes - 1];
        loop variant L->row_bytes - k;
    */
    for (uint64_t k = 0; k < L->row_bytes; k++) row[k] = 0;
    /*@ loop invariant 0 <= b <= L->n_blocks;
        loop assigns b, row[0 .. L->row_bytes - 1];
        loop variant L->n_blocks - b;
    */
    for (int64_t b = 0; b < L->n_blocks; b++) row[b] = scales[b];
    const uint64_t plane_bytes = (uint64_t)L->np / 8;
    /*@ loop invariant 0 <= j <= L->np;
        loop assigns j, row[0 .. L->row_bytes - 1];
        loop variant L->np - j;
    */
    for (int64_t j = 0; j < L->np; j++) {
        const int q = codes[j];
        uint64_t byte;
        int shift;
        low_slot(L, j, &byte, &shift);
        row[byte] = (uint8_t)q35_bits_put(row[byte], q35_bits_get(q, 0, L->low_bits), shift);
        /*@ loop invariant L->low_bits <= p <= L->b;
            loop assigns p, row[L->plane_off .. L->plus_off - 1];
            loop variant L->b - p;
        */
        for (int p = L->low_bits; p < L->b; p++) { /* one bit plane per higher bit */
            /*@ assert one_plane: p == L->low_bits; */ /* b - low_bits <= 1 in the family */
            const uint64_t k = L->plane_off + (uint64_t)(p - L->low_bits) * plane_bytes + (uint64_t)j / 8;
            /*@ assert planes: L->b == L->low_bits + 1; */
            /*@ assert k_model: k == q35_plane_byte(L, p, j); */
            /*@ assert k_range: L->plane_off <= k < L->plus_off; */
            row[k] = (uint8_t)q35_bits_put(row[k], q35_bits_get(q, p, 1), (int)(j % 8));
        }
        if (j < L->n4) {
            const uint64_t k = L->plus_off + (uint64_t)j / 8;
            row[k] = (uint8_t)q35_bits_put(row[k], q35_bits_get(q, L->b, 1), (int)(j % 8));
        }
    }
}

/* The code of stored column j of a packed row. */
/*@ requires layout: q35_layout_ok(L);
    requires column: 0 <= j < L->np;
    requires mem: \valid_read(row + (0 .. L->row_bytes - 1));
    assigns \nothing;
    ensures model: \result == q35_decode(L, row, j);
    ensures range: 0 <= \result < (1 << q35_cbits(L, j)) <= 256;
*/
static int code_at(const q35_layout *L, const uint8_t *row, int64_t j) {
    const uint64_t plane_bytes = (uint64_t)L->np / 8;
    uint64_t byte;
    int shift;
    low_slot(L, j, &byte, &shift);
    int q = q35_bits_get(row[byte], shift, L->low_bits);
    /*@ loop invariant L->low_bits <= p <= L->b;
        loop invariant model: q == q35_decode_upto(L, row, j, p);
        loop invariant range: 0 <= q < (1 << p);
        loop assigns p, q;
        loop variant L->b - p;
    */
    for (int p = L->low_bits; p < L->b; p++) {
        /*@ assert one_plane: p == L->low_bits; */ /* b - low_bits <= 1 in the family */
        const uint64_t k = L->plane_off + (uint64_t)(p - L->low_bits) * plane_bytes + (uint64_t)j / 8;
        /*@ assert planes: L->b == L->low_bits + 1; */
        /*@ assert k_model: k == q35_plane_byte(L, p, j); */
        /*@ assert k_range: L->plane_off <= k < L->plus_off; */
        q = q35_bits_put(q, q35_bits_get(row[k], (int)(j % 8), 1), p);
    }
    if (j < L->n4) q = q35_bits_put(q, q35_bits_get(row[L->plus_off + (uint64_t)j / 8], (int)(j % 8), 1), L->b);
    return q;
}

void q35_unpack_range(const q35_layout *L, const uint8_t *row, int64_t j0, int64_t len,
                      uint8_t *codes) {
    for (int64_t i = 0; i < len; i++) codes[i] = (uint8_t)code_at(L, row, j0 + i);
}

/*@ requires layout: q35_layout_ok(L);
    requires mem: \valid_read(row + (0 .. L->row_bytes - 1)) &&
                  \valid(codes + (0 .. L->np - 1)) && \valid(scales + (0 .. L->n_blocks - 1));
    requires sep: \separated(codes + (0 .. L->np - 1), scales + (0 .. L->n_blocks - 1),
                              row + (0 .. L->row_bytes - 1), L);
    assigns codes[0 .. L->np - 1], scales[0 .. L->n_blocks - 1];
*/
void q35_unpack_row(const q35_layout *L, const uint8_t *row, uint8_t *codes, uint8_t *scales) {
    /*@ loop invariant 0 <= b <= L->n_blocks;
        loop assigns b, scales[0 .. L->n_blocks - 1];
        loop variant L->n_blocks - b;
    */
    for (int64_t b = 0; b < L->n_blocks; b++) scales[b] = row[b]; /* (as in q35_pack_row) */
    /*@ loop invariant 0 <= j <= L->np;
        loop assigns j, codes[0 .. L->np - 1];
        loop variant L->np - j;
    */
    for (int64_t j = 0; j < L->np; j++) codes[j] = (uint8_t)code_at(L, row, j);
}

void q35_dequantize_row(const q35_layout *L, const float table[256], const uint8_t *row, float *out) {
    for (int64_t j = 0; j < L->np; j++) {
        const int c = q35_col_bits(L, j);
        out[j] = table[row[j / Q35_BLOCK]] * (float)(2 * code_at(L, row, j) - ((1 << c) - 1));
    }
}
