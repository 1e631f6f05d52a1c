/* q35nearest.h — the quantizer's rounding of one weight to a code
 * (used by q35quant.c; in its own header so that Frama-C, which cannot
 * parse q35quant.c's OpenMP pragmas, can prove it: make prove,
 * docs/PROOFS.md). */
#ifndef Q35_FORMAT_Q35NEAREST_H
#define Q35_FORMAT_Q35NEAREST_H

#include <math.h>

/* The code nearest to x / d for c-bit levels 2q - (2^c - 1).
 * Proved with Frama-C WP in the real-number model (make prove,
 * docs/PROOFS.md): the code is in [0, 2^c - 1], and when x / d lies in
 * the level range its level is within 1 (half a step) of x / d. */
/*@ requires c_range: 2 <= c <= 9;
    assigns \nothing;
    ensures range: 0 <= \result <= (1 << c) - 1;
    behavior in_levels:
      assumes d > 0 && -((1 << c) - 1) <= x / d <= (1 << c) - 1;
      ensures half_step: -1 <= x / d - (2 * \result - ((1 << c) - 1)) <= 1;
*/
static inline int q35_nearest_code(float x, float d, int c) {
    const int top = (1 << c) - 1;
    const float q = (x / d + (float)top) * 0.5f;
    if (!(q > 0.0f)) return 0; /* also catches NaN */
    if (q >= (float)top) return top;
    return (int)lrintf(q);
}

#endif
