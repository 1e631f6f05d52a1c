/* imatrix.h — the importance matrix inside the library: per 2-D tensor of
 * the model (by its index in the tensor map), the sum over tokens of each
 * input channel's squared activation; optionally (for GPTQ) the whole
 * second-moment matrix H = sum of x x^T of each distinct matrix input. */
#ifndef Q35_QUANT_IMATRIX_H
#define Q35_QUANT_IMATRIX_H

#include <stdint.h>

#include "model/model.h"

#define Q35_XX_BATCH 128  /* vectors buffered before a rank-k update of H */

struct q35_imatrix {
    const q35_model *model;
    int n;            /* tensors in the model's map */
    double **sum2;    /* [n] -> ne0 sums, NULL for tensors that are no matrix input */
    int64_t *count;   /* [n] vectors added */
    int64_t tokens;
    /* Hessian mode (q35_imatrix_new_hessian), else all NULL: */
    int *owner;       /* [n] the tensor whose H this one shares (attn_k/v share
                         attn_q's input, ffn_up ffn_gate's), itself, or -1 */
    double **xx;      /* [n] -> ne0 x ne0 sums (upper triangle kept up to
                         date; see q35_imatrix_hessian), only where owner[i] == i */
    float **pending;  /* [n] -> ne0 x Q35_XX_BATCH buffered vectors, channel-major */
    int *n_pending;
    int n_threads;    /* for the rank-k updates */
    /* A stage of sequential calibration (q35_imatrix_new_stage), else 0/NULL: */
    uint8_t *active;  /* [n] 1 for the tensors of the stage: the others are not collected */
    int depth;        /* layers a session with this imatrix attached runs (no
                         logits) so that the stage's inputs are complete; 0: all */
    /* Asymmetric calibration, else NULL: a reference run (the unquantized
     * model, q35_imatrix_new_reference) evaluates each token just before
     * this one, and each matrix input x is paired with the reference's input
     * x_ref of the same matrix and token (q35_imatrix_pair): */
    float **last;     /* [n] -> ne0: the last vector added (in the reference) */
    const struct q35_imatrix *ref;
    int *ref_slot;    /* [n] the reference's index of tensor i's input, or -1 */
    double **xk;      /* [n] -> ne0 x ne0 sums of x_ref x^T, where owner[i] == i */
    float **pending_ref; /* [n] -> the buffered x_ref, as pending */
};

/* The index in im's model of model m's tensor i (the same name and row
 * length: calibration may run on another file of the same model, e.g. a
 * partly quantized one), or -1. */
int q35_imatrix_index(const q35_imatrix *im, const q35_model *m, int i);

/* Tensor i's K (ne0 x ne0, row a column b: sum of x_ref[a] x[b]) after
 * flushing, or NULL where im is not paired. */
const double *q35_imatrix_cross(q35_imatrix *im, int i);

/* Adds one input vector x (ne0 values) of the matrix of tensor index i. */
void q35_imatrix_add(q35_imatrix *im, int i, const float *x);

/* Reads an imatrix file: for each 2-D tensor of the model, its mean squared
 * activation (ne0 floats, malloc'ed) or NULL where the file has none.
 * Checks names and lengths against the model. imp has n_tensors entries. */
int q35_imatrix_load(const q35_model *m, const char *path, float **imp, q35_error *err);

/* Mean squared activations from an in-memory imatrix (as q35_imatrix_load
 * would read them back from its file). */
int q35_imatrix_means(const q35_imatrix *im, float **imp, q35_error *err);

/* Tensor i's H (ne0 x ne0, full and symmetric, sum over its input
 * vectors) after flushing buffered vectors, and the number of vectors in
 * it; NULL when the imatrix has no H for it. */
const double *q35_imatrix_hessian(q35_imatrix *im, int i, int64_t *count);

#endif
