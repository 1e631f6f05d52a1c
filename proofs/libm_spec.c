/* libm_spec.c — the one library contract the quantizer proof assumes
 * (Frama-C only; not compiled into q35). Frama-C's libc declares lrintf
 * without a specification. This is the C standard's lrintf (7.12.9.5)
 * under the default rounding mode, which q35 never changes: the nearest
 * integer, for finite arguments well inside the range of long. It is an
 * ASSUMPTION of the proof, not proved (docs/PROOFS.md). */
#include <math.h>

/*@ requires finite: \is_finite(x);
    requires in_range: -2147483648.0 <= x <= 2147483647.0;
    assigns \result \from x;
    ensures nearest: -0.5 <= \result - x <= 0.5;
*/
extern long int lrintf(float x);
