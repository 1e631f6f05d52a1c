/* tune.h — end-to-end tuning of a quantized model's continuous parameters.
 *
 * GPTQ fits each matrix to its own outputs; what a reader of the text sees
 * is the next-token distribution at the end. The tuner keeps every code of
 * a Q3_5-family file and moves what is continuous — each block's scale and
 * every RMSNorm weight — by gradient descent (Adam) on
 * KL(unquantized || quantized) over the calibration documents, with the
 * gradients from an fp32 forward and backward pass over whole documents
 * (the weights as their codes times their scales). The scales are then
 * rounded to the format's 2^(1/16) grid and the norm weights tuned again
 * with them fixed. */
#ifndef Q35_QUANT_TUNE_H
#define Q35_QUANT_TUNE_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

typedef struct q35_tune_params {
    int epochs;         /* passes over the documents with scales and norms (2) */
    int norm_epochs;    /* passes after the scales are rounded, norms only (1) */
    int batch_tokens;   /* scored positions per Adam step, about (512) */
    double lr;          /* Adam step for the relative parameters (0.005) */
    int64_t max_tokens; /* documents are used until this many tokens (0: all) */
} q35_tune_params;

/* Bytes the tuner holds for qm with documents of up to cap tokens. */
uint64_t q35_tune_bytes(const q35_model *qm, int cap);

/* The mean KL(ref || qm) per scored position of the documents (each from
 * BOS, truncated at the context; positions 0 .. n-2), from the tuner's fp32
 * pass. */
int q35_tune_loss(const q35_model *ref, const q35_model *qm, const char *const *docs, const size_t *lens,
                  int n_docs, int n_threads, double *kl, q35_error *err);

/* Tunes qm (whose matrices are family types or F32; its classifier may be
 * tied) towards ref (the same model unquantized: same shapes and names) on
 * the documents, and writes the tuned file to out_path (as
 * q35_gguf_save_model does). Deterministic for any n_threads. */
int q35_tune_model(const q35_model *ref, const q35_model *qm, const char *out_path, const char *const *docs,
                   const size_t *lens, int n_docs, const q35_tune_params *p, int n_threads,
                   q35_tune_progress progress, void *user, q35_error *err);

/* For tests: the gradient of the first document's summed KL with respect
 * to n relative parameters spread over the model (block log-scales of
 * family matrices and norm weights), from the backward pass (analytic) and
 * from central differences with step h (numeric). */
int q35_tune_check_gradient(const q35_model *ref, const q35_model *qm, const char *doc, size_t len, int n,
                            double h, double *analytic, double *numeric, q35_error *err);

#endif
