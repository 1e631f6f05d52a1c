/* ops.h — the scalar definitions of the layer programs' elementwise ops
 * (src/arch), shared by the forward pass (exec.c) and the tuner's fp32
 * pass and its backward (src/quant/tune.c), so both compute the same
 * function. */
#ifndef Q35_MODEL_OPS_H
#define Q35_MODEL_OPS_H

#include <stdint.h>

#include "model/model.h"

/* out = weight * x / sqrt(mean(x^2) + eps) over n values; returns the
 * inverse RMS (1 / sqrt(mean(x^2) + eps)). */
float q35_op_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps);
/* cs = cos, sin (times the attention factor) of each rotated pair of a
 * head at position pos. */
void q35_op_rope_table(float *cs, const q35_rope *r, int pos);
/* Rotates each head (hd wide) of v (width values) by cs; inverse rotates
 * back (the backward pass of a rotation, for attention factor 1). */
void q35_op_rope_apply(float *v, int64_t width, int hd, const q35_rope *r, const float *cs, int inverse);
/* x * Phi(x) with Phi's tanh approximation (GELU as Gemma runs it), and
 * its derivative. */
float q35_op_gelu_tanh(float x);
float q35_op_gelu_tanh_grad(float x);
/* GELU as llama.cpp's CPU backend computes it: the input rounded to fp16,
 * the function's value rounded to fp16 (its lookup table); 0 below -10,
 * x above 10. For comparisons only. */
float q35_op_gelu_tanh_f16(float x);

#endif
