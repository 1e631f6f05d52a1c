/* cuda_backend.h — the CUDA backend (built by `make cuda` only, with
 * -DQ35_CUDA): a model's weights resident in GPU memory, a KV cache on
 * the device, and the forward pass of one token there.
 *
 * A q35_cuda belongs to one session (src/model/forward.c): it uploads the
 * embedding, the first n_layers layers and the classifier (all three only
 * when n_layers is the whole model; otherwise the embedding lookup and
 * the layers after the first n_layers stay on the CPU) and keeps its own
 * stream, buffers and CUDA graph. Q3_5-family matrices keep their bits:
 * each row's sections (scales, low part, planes, plus plane) are stored
 * section by section with 16-byte aligned strides. Activations are
 * quantized on the device exactly as q35_quantize_act_ref does, and the
 * integer block sums are exact, so they are bit-identical to the CPU
 * reference; only the float accumulation order differs.
 *
 * Every function reports a device failure (no device, out of memory, a
 * kernel fault) as one line in err and returns its code, never aborts. */
#ifndef Q35_CUDA_CUDA_BACKEND_H
#define Q35_CUDA_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

#ifdef __cplusplus
extern "C" {
#endif

struct q35_matrix;
typedef struct q35_cuda q35_cuda;

/* The backend's settings (from q35_session_params). */
typedef struct q35_cuda_params {
    int graph;          /* 0 turns CUDA graphs off */
    int pdl;            /* 1 turns programmatic dependent launches on (sm_90+) */
    int gemv;           /* the family GEMV kernel variant (below); -1: the default */
    uint64_t max_bytes; /* tests: fail allocations beyond this many bytes as if
                           the device were full; 0: no limit */
} q35_cuda_params;

/* Uploads m (the first n_layers layers, 1 <= n_layers <= n_layers of m)
 * to device 0, as p says (NULL: graphs on, PDL off, the default GEMV). */
int q35_cuda_new(q35_cuda **out, const q35_model *m, int n_layers, const q35_cuda_params *p,
                 q35_error *err);
void q35_cuda_free(q35_cuda *g);

/* One token at position pos. With the whole model on the device, token
 * selects the embedding row and logits (vocab_size floats) receive the
 * classifier's output; x is unused. Otherwise x (dim floats) holds the
 * embedding row on entry and the residual stream after the device's last
 * layer on return; logits are unused. */
int q35_cuda_eval(q35_cuda *g, int token, int pos, float *x, float *logits, q35_error *err);

/* "NVIDIA H100 80GB HBM3, 32/32 layers" (valid while g lives). */
const char *q35_cuda_describe(const q35_cuda *g);

/* ---- for tests and benchmarks --------------------------------------- */

/* Fills buf with the first device's name, compute capability and memory;
 * fails (Q35_ERR_UNSUPPORTED) when there is no usable device. */
int q35_cuda_device_info(char *buf, size_t cap, q35_error *err);

/* Family GEMV kernels ("variant"): 0 = one group per lane in flight, 1, 2
 * or 4 rows per warp (the default: fastest on an H100, 85% of the
 * device-to-device copy bandwidth on one large matrix with 2 rows per
 * warp); 1 = two groups per lane in flight, 1 or 2 rows per warp; 2 = four
 * groups, 1 row (both slower: fewer warps fit). Q35_CUDA_GEMV picks one
 * for new sessions; rows_per_warp 0 = the variant's default. */
#define Q35_CUDA_GEMV_VARIANTS 3

/* For matrix w (a Q3_5-family matrix or F32) and input x (w's row length,
 * original column order), on the device: the activation quantization
 * (q: np values in stored order, d and sum: n_blocks each; family only,
 * NULL for F32), the integer block sums S (rows * n_blocks; family only,
 * may be NULL) and the row dot products `dots` through GEMV kernel
 * `variant` with `rows_per_warp` rows per warp. */
int q35_cuda_check_matrix(const struct q35_matrix *w, const float *x, int variant, int rows_per_warp,
                          int8_t *q, float *d, int32_t *sum, int32_t *S, float *dots,
                          q35_error *err);

/* The device's decoding of full groups and its tail path, run on the host
 * (the same source, compiled for the CPU): block sums of every row of w
 * for activations q (stored order, np values). */
void q35_cuda_host_block_sums(const struct q35_matrix *w, const int8_t *q, int32_t *S);

/* Times the matrix-vector products of every matrix on the device (all
 * layers' and the classifier, in forward order, inputs quantized once),
 * `reps` times after a warm-up, with family kernel `variant` and
 * rows_per_warp rows per warp (0: the
 * variant's default). *bytes: weight bytes one pass reads; *seconds: the
 * median time of one pass. kind (may be NULL): only matrices whose tensor
 * name contains it. */
int q35_cuda_bench_gemv(q35_cuda *g, int variant, int rows_per_warp, const char *kind, int reps,
                        double *bytes, double *seconds, q35_error *err);
/* The same for one random matrix of m rows of n columns in a family type
 * (one launch; large m shows the kernel's steady-state bandwidth). */
int q35_cuda_bench_gemv_synth(int type, int64_t n, int64_t m, int variant, int rows_per_warp, int reps,
                              double *bytes, double *seconds, q35_error *err);
/* The family GEMV kernel variant for later evals. */
void q35_cuda_use_gemv(q35_cuda *g, int variant);
/* Device bytes one token's forward pass reads at position pos (weights
 * on the device plus the KV cache it attends over). */
double q35_cuda_bytes_per_token(const q35_cuda *g, int pos);
/* CUDA graphs on (default) or off for later evals. */
void q35_cuda_use_graph(q35_cuda *g, int on);
/* Programmatic dependent launches (sm_90+; default off, Q35_CUDA_PDL=1
 * turns them on at q35_cuda_new) on or off; returns the setting taken. */
int q35_cuda_use_pdl(q35_cuda *g, int on);

#ifdef __cplusplus
}
#endif
#endif
