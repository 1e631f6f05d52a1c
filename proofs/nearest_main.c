/* nearest_main.c — brings q35nearest.h into a Frama-C run (Frama-C only). */
#include "format/q35nearest.h"

int q35_proof_use_nearest(float x, float d, int c);
int q35_proof_use_nearest(float x, float d, int c) { return q35_nearest_code(x, d, c); }
