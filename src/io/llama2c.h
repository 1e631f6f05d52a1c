/* llama2c.h — reader for karpathy/llama2.c checkpoints.
 *
 * Three layouts:
 *  - legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 *    vocab_size, seq_len; vocab_size < 0 means an untied classifier), then
 *    fp32 weights and the legacy RoPE tables (skipped);
 *  - "ak42" version 1: 256-byte header, fp32 weights;
 *  - "ak42" version 2: 256-byte header with a group size, fp32 norms, then
 *    int8 weights each followed by an fp32 scale per group of the flattened
 *    tensor. These are expanded to fp32 at load (x = q * scale).
 * fp32 weights are memory-mapped, not copied. Tensors get GGUF's llama
 * names. The whole layout is checked against the file's length first. */
#ifndef Q35_IO_LLAMA2C_H
#define Q35_IO_LLAMA2C_H

#include <stddef.h>
#include <stdint.h>

#include "io/weights.h"

#define Q35_LLAMA2C_MAGIC 0x616b3432u /* "ak42" read as little-endian uint32 */

/* Parses path into w (zeroed first; free with q35_weights_free, also after
 * an error). */
int q35_llama2c_load(q35_weights *w, const char *path, q35_error *err);
/* The same over size bytes at d that stay valid while w is used (the
 * fuzzer's entry); path names them in errors. w must be zeroed. */
int q35_llama2c_parse(q35_weights *w, const uint8_t *d, uint64_t size, const char *path,
                      q35_error *err);

/* Checks hyperparameters read from a file; names path and the field at
 * fault. Shared by every reader. */
int q35_config_check(const q35_config *c, const char *path, q35_error *err);

#endif
