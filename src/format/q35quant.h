/* q35quant.h — making Q3_5-family tensors from fp32 weights: the
 * quantizer core that `q35 quantize` (src/quant) and the loader's
 * conversion of other types (src/model) share.
 *
 * Per tensor: the n4 plus columns are those with the largest importance x
 * column energy (importance = mean squared activation of that input
 * channel from `q35 imatrix`, or 1); per block of 32 the scale is searched
 * on its log grid to minimise the importance-weighted squared error, each
 * code rounded to the nearest level for that scale. */
#ifndef Q35_FORMAT_Q35QUANT_H
#define Q35_FORMAT_Q35QUANT_H

#include <stdint.h>

#include "format/q35fmt.h"

typedef struct q35_quant_stats {
    double err2;     /* sum of squared weight errors */
    double ref2;     /* sum of squared weights */
    double herr, href; /* GPTQ only: output error sum e H e^T, and W H W^T */
} q35_quant_stats;

/* Quantizes W (L->m rows of L->n floats) into out (L->total_bytes).
 * importance: L->n values >= 0, or NULL for all ones. Rows are spread over
 * n_threads. Fills stats (may be NULL). Returns 0, or -1 if out of memory. */
int q35_quantize_tensor(const q35_layout *L, const float *W, const float *importance,
                        int n_threads, uint8_t *out, q35_quant_stats *stats);
/* The same without the scale search: each block of 32 takes the smallest
 * scale on the grid that holds its largest |w| (nothing is clipped), each
 * code the nearest level. For converting weights that are quantized
 * already into Q8_S as a model loads (format/kquant.h types): 8-bit codes
 * leave little for the search to win (relative RMSE 0.387% against
 * 0.371% on uniform random weights), and it costs about 12 times as much. */
int q35_quantize_tensor_fast(const q35_layout *L, const float *W, int n_threads, uint8_t *out);

/* Building blocks, shared with gptq.c: */
/* Chooses the plus columns (the n4 with the largest importance x column
 * energy; imp may be NULL) and writes the header's n4 and mask (base is
 * left 0). Returns 0, or -1 if out of memory. */
int q35_choose_plus(const q35_layout *L, const float *W, const float *imp, uint8_t *hdr);
/* The tensor's base: the largest |w| / top level over stored columns perm,
 * times 2^(headroom / 16) so every block's useful scales lie below it. */
float q35_tensor_base(const q35_layout *L, const float *W, const int32_t *perm, float headroom);
/* Best scale byte for one block of len values x of c bits, minimising the
 * w-weighted squared error with each code rounded to the nearest level. */
int q35_block_scale(const float *x, const float *w, int len, int c, const float table[256], float base);

/* Expands a quantized tensor back to W (L->m rows of L->n floats, original
 * column order). */
void q35_dequantize_tensor(const q35_layout *L, const uint8_t *data, float *W);

/* Sets stats->err2 and ref2 to the squared error of the quantized tensor
 * data against W, and W's sum of squares. Returns 0, or -1 if out of memory. */
int q35_weight_error(const q35_layout *L, const uint8_t *data, const float *W, q35_quant_stats *stats);

#endif
