/* q35int.h — the integer combination of one block's sums in the Q3_5
 * dot product, as a tiny helper with an ACSL contract that Frama-C WP
 * proves free of overflow (proofs/, docs/PROOFS.md).
 *
 * Block b of a row contributes table[s_b] * d_b * (2 S_b - top_b sum_b)
 * (q35dot.h). With at most 32 terms of codes <= 255 and activations in
 * [-127, 127], |S_b| <= 32*255*127 (the contract of q35_dot_codes_i8) and
 * |sum_b| <= 32*127 (the activation quantizer clamps to [-127, 127]);
 * top_b = 2^c - 1 <= 255 because plus columns (c = b + 1) exist only for
 * b <= 4 and Q8_S has c = 8. Then |2 S - top sum| <= 3 * 32*255*127 <
 * 2^31: the int32 arithmetic below cannot overflow. */
#ifndef Q35_KERNELS_Q35INT_H
#define Q35_KERNELS_Q35INT_H

#include <stdint.h>

/*@ requires S_range:   -32 * 255 * 127 <= S <= 32 * 255 * 127;
    requires top_range: 0 <= top <= 255;
    requires sum_range: -32 * 127 <= sum <= 32 * 127;
    assigns \nothing;
    ensures exact: \result == 2 * S - top * sum;
*/
static inline int32_t q35_block_combine(int32_t S, int32_t top, int32_t sum) {
    return 2 * S - top * sum;
}

#endif
