/* tune_pass.h — the tuner's fp32 forward and backward pass over whole
 * documents (internal to src/quant; tune.c runs the loop).
 *
 * It runs the layer programs the model holds (src/arch), op by op, as the
 * engine's forward pass does (src/model/exec.c, with the same scalar op
 * definitions, model/ops.h) except that activations are not quantized to
 * int8 and the weights are codes times the current scales. Every op keeps
 * what its backward needs (its inputs; attention its probabilities), and
 * the backward pass walks the ops in reverse. Each product's outputs are
 * computed by one thread in a fixed order, so results do not depend on the
 * thread count. */
#ifndef Q35_QUANT_TUNE_PASS_H
#define Q35_QUANT_TUNE_PASS_H

#include <stdint.h>

#include "model/model.h"

/* Relative parameters a (value = initial * exp(a) for scales, initial *
 * (1 + a) for norm weights), their gradient and Adam's two moments. */
typedef struct tparam {
    int64_t n;
    float *a, *g, *m1, *m2;
} tparam;

/* One 2-D tensor as the tuner sees it (parts of fused tensors share it). */
typedef struct tmat {
    const q35_tensor *t;
    int slot;            /* the tensor's index in the model */
    int64_t m, n;        /* rows, row length */
    float *w;            /* (m, n) current weights, original column order */
    float *gw;           /* (m, n) the loss's gradient with respect to w */
    int family;          /* 1: a family type, whose scales are tuned */
    int64_t nb;          /* scale blocks per row */
    int32_t *blk;        /* (n) original column -> its block */
    float *w0;           /* (m, n) the weights at a = 0 */
    uint8_t *sb;         /* (m, nb) the scale bytes the weights stand for */
    tparam s;            /* (m * nb) log-scale offsets */
} tmat;

/* One norm weight vector (a layer's NORM or HEAD_NORM, the final norm). */
typedef struct tnorm {
    int slot;
    const float *g0;     /* (n) as loaded */
    float *g;            /* (n) current */
    tparam p;
} tnorm;

/* An op of a layer's program with what the tuner binds and keeps. */
typedef struct top {
    const q35_op *op;
    tmat *M;             /* MATMUL: its tensor, rows row0 .. row0 + rows - 1 */
    int64_t row0, rows;
    const float *bias;   /* MATMUL: fixed, or NULL */
    tnorm *N;            /* NORM, HEAD_NORM */
    float *in, *in2;     /* kept inputs: src (GLU: gate, up; ATTN: q, k, v in in, in2, in3) */
    float *in3;
    float *r;            /* NORM, HEAD_NORM: inverse RMS per row */
    float *P, *Y;        /* ATTN: probabilities (H, T, T), soft-capped scores when capped */
} top;

typedef struct tuner {
    const q35_model *qm;
    const q35_hparams *hp;
    int nt, cap;           /* threads; longest document in tokens */
    tmat *mats;
    int n_mats;
    tnorm *norms;
    int n_norms;
    top *ops;              /* (n_layers, Q35_MAX_OPS) */
    tmat *embd, *out;      /* out may be embd */
    tnorm *onorm;          /* the final norm */
    float *buf[Q35_N_BUFS];   /* (T, width) the program's buffers */
    float *dbuf[Q35_N_BUFS];  /* their gradients */
    float *cs[2];          /* (T, n_rot) RoPE tables */
    float *xl, *rf, *xf;   /* (T, D) the last residual, (T) its inverse RMS, (T, D) normed */
    float *lg;             /* (T, V) logits (soft-capped), then their gradient */
    float *rl;             /* (T, V) the reference's logits */
} tuner;

int tuner_init(tuner *tu, const q35_model *qm, int cap, int nt, q35_error *err);
void tuner_free(tuner *tu);
/* Bytes tuner_init would hold. */
uint64_t tuner_bytes(const q35_model *qm, int cap);
/* w = w0 * exp(a of its block) */
void tmat_refresh(tmat *M);
/* The pass over ids[0..T-1] (logits into tu->lg). */
void tuner_forward(tuner *tu, const int *ids, int T);
/* Turns tu->lg into the gradient of the sum over positions 0..T-2 of
 * KL(softmax(rl) || softmax(lg)); returns that sum. */
double tuner_kl_grad(tuner *tu, int T);
/* Accumulates every tmat's gw and tnorm's p.g from tu->lg's gradient. */
void tuner_backward(tuner *tu, const int *ids, int T);

#endif
