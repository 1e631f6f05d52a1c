/* synth.h — synthetic LLaMA-shaped models with random weights, for speed
 * work on real models' shapes without carrying them (q35_synth_model in
 * q35.h, `q35 synth`), and the random tensors the CUDA tests build on.
 *
 * A weight matrix of type F32/F16 holds uniform random weights; one of a
 * Q3_5-family type holds random codes (every bit pattern is a valid code),
 * random scale bytes in [236, 252], a random set of n4 plus columns, and a
 * base chosen so that each weight's standard deviation is the tensor's
 * sigma. Each tensor has its own sigma, as real checkpoints have their own
 * per-tensor scales: 1/sqrt(row length) (unit activations stay near unit
 * size through the layers; the embedding's rows are unit size) times a
 * per-tensor factor in [0.7, 1.3). Norms are F32 near 1. Everything is a
 * function of (seed, tensor, row): the same seed gives the same bytes,
 * however the file is written. */
#ifndef Q35_MODEL_SYNTH_H
#define Q35_MODEL_SYNTH_H

#include <stdint.h>

#include "q35.h"

/* splitmix64: the generator behind every synthetic byte. */
static inline uint64_t q35_synth_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A malloc'ed tensor of m rows of n weights in type dtype (F32, F16 or a
 * Q3_5-family type) whose weights have standard deviation sigma; NULL when
 * out of memory or for another type. */
void *q35_synth_tensor(int dtype, int64_t n, int64_t m, float sigma, uint64_t seed);

/* Bytes [off, off + len) of that tensor (as the GGUF writer asks for them
 * while streaming); 0, or -1 for a bad type or range. */
int q35_synth_tensor_range(int dtype, int64_t n, int64_t m, float sigma, uint64_t seed, void *buf,
                           uint64_t off, uint64_t len);

#endif
