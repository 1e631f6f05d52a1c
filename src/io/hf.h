/* hf.h — Hugging Face checkpoints: LlamaForCausalLM in safetensors
 * (single file or sharded with model.safetensors.index.json) and
 * config.json, read with cJSON (tokenizer.json: the tokenizer module).
 * Tensors are mapped (F32, F16, BF16) and renamed to GGUF's names; q and
 * k rows are un-permuted (Hugging Face's rotate-half layout back to
 * RoPE's adjacent pairs) into owned buffers. */
#ifndef Q35_IO_HF_H
#define Q35_IO_HF_H

#include <stddef.h>
#include <stdint.h>

#include "io/weights.h"
#include "q35.h"

/* path: a folder holding config.json and model.safetensors
 * or model.safetensors.index.json + shards; or a .safetensors file whose
 * folder holds the rest. */
int q35_hf_load_weights(q35_weights *w, const char *path, q35_error *err);

/* The hyperparameters config.json text describes (its architecture's
 * keys), checked; with add (may be NULL), the tensors it implies
 * (q35_arch.hf_derived). */
int q35_hf_config_hparams(const char *text, size_t len, const char *file, q35_hparams *hp,
                          int (*add)(void *user, const char *name, const float *x, int64_t n), void *user,
                          q35_error *err);

/* One parsed safetensors file: its header validated against the file. */
typedef struct q35_safetensors_tensor {
    char name[256];
    int dtype;          /* Q35_DTYPE_F32 / F16 / BF16 */
    int n_dims;         /* 0..4 */
    int64_t shape[4];   /* as stored: shape[0] outermost (PyTorch order) */
    uint64_t begin, end;/* byte offsets within the data section */
    const void *data;
} q35_safetensors_tensor;

/* Parses a safetensors header from memory: 8-byte little-endian header
 * length, JSON header, data. Fills *tensors (malloc'ed, n of them) with
 * data pointers into buf. For the fuzzer and the loader alike. */
int q35_safetensors_parse(const uint8_t *buf, uint64_t size, const char *name,
                          q35_safetensors_tensor **tensors, int *n, q35_error *err);

#endif
