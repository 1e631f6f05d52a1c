/* imatrix.h — the importance matrix inside the library: per 2-D tensor of
 * the model (by its index in the tensor map), the sum over tokens of each
 * input channel's squared activation. */
#ifndef Q35_QUANT_IMATRIX_H
#define Q35_QUANT_IMATRIX_H

#include <stdint.h>

#include "model/model.h"

struct q35_imatrix {
    const q35_model *model;
    int n;            /* tensors in the model's map */
    double **sum2;    /* [n] -> ne0 sums, NULL for tensors that are no matrix input */
    int64_t *count;   /* [n] vectors added */
    int64_t tokens;
};

/* Adds one input vector x (ne0 values) of the matrix of tensor index i. */
void q35_imatrix_add(q35_imatrix *im, int i, const float *x);

/* Reads an imatrix file: for each 2-D tensor of the model, its mean squared
 * activation (ne0 floats, malloc'ed) or NULL where the file has none.
 * Checks names and lengths against the model. imp has n_tensors entries. */
int q35_imatrix_load(const q35_model *m, const char *path, float **imp, q35_error *err);

#endif
