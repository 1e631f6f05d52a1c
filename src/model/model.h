/* model.h — a loaded model as the forward pass sees it: hyperparameters,
 * each layer's program (src/arch: the architecture's one description)
 * with the tensors its ops use bound, and the tokenizer. Immutable after
 * q35_model_load. */
#ifndef Q35_MODEL_MODEL_H
#define Q35_MODEL_MODEL_H

#include "arch/arch.h"
#include "format/q35fmt.h"
#include "io/weights.h"
#include "q35.h"
#include "tokenizer/tokenizer.h"

/* A weight matrix as the forward pass uses it: fp32 rows, or rows of a
 * Q3_5-family type with what their kernels need. A matrix may be a run of
 * rows of its tensor (one part of a fused tensor: row0 > 0 or m < ne[1]). */
typedef struct q35_matrix {
    const q35_tensor *t;    /* the tensor; row length = t->ne[0] */
    int slot;               /* t's index in the model's tensor map */
    int64_t m, n;           /* rows (of t, or of the part), row length */
    int64_t row0;           /* the part's first row in t */
    int dtype;              /* Q35_DTYPE_F32 or a Q35_TYPE_* */
    const float *f32;       /* F32: the first row */
    q35_layout L;           /* family: layout (L.m = m), */
    float table[256];       /* scale byte -> scale, */
    int32_t *perm;          /* stored column -> original column (np; owned), */
    uint8_t *mask;          /* the header's column mask, which gives that order (q35_permute_act; owned), */
    const uint8_t *rows;    /* and the first row; */
    uint8_t *r16;           /* family: the rows in R16 order (format/q35r16.h; in the model's r16_arena), */
                            /* or NULL where the kernels read the rows */
} q35_matrix;

/* What an op of a layer's program uses, bound to the model's tensors. */
typedef struct q35_bound {
    q35_matrix w;           /* MATMUL */
    const float *vec;       /* NORM, HEAD_NORM: weight; MATMUL: bias (or NULL) */
    int vec_slot;           /* its tensor's index, -1 for none */
} q35_bound;

typedef struct q35_layer {
    q35_prog prog;          /* the architecture's ops */
    q35_bound b[Q35_MAX_OPS];
} q35_layer;

/* RoPE as a layer applies it (global, or the sliding-window layers'). */
typedef struct q35_rope {
    int mode;               /* enum q35_rope_mode */
    int n_rot;              /* dimensions rotated per head */
    float theta;            /* base */
    float freq_scale;       /* positions times this (linear scaling) */
    const float *factors;   /* (n_rot / 2) frequency divisors, or NULL */
    float attn_factor;      /* cos and sin times this */
} q35_rope;

/* Tensor parallel: which columns of each buffer (and of the logits,
 * index Q35_TP_LOGITS) each process of a group computes. Buffers Q, K,
 * V, A, G, U stay sliced: their ops (head norms, RoPE, attention, the
 * GLU) run on this process's part, and a product reading one gathers it
 * first; O, written by products, is gathered after them; X and H are
 * computed whole everywhere. With size 1 every range is the whole width. */
#define Q35_TP_MAX 64
#define Q35_TP_LOGITS Q35_N_BUFS
typedef struct q35_tp {
    int rank, size;
    int64_t own_lo[Q35_N_BUFS + 1], own_hi[Q35_N_BUFS + 1]; /* this process's columns of each */
    int64_t lo[Q35_N_BUFS + 1][Q35_TP_MAX + 1]; /* buffers that are gathered (Q and A, G and
                                                  U, O, the logits): rank r computes columns
                                                  lo[b][r] .. lo[b][r+1] - 1 */
    int h0, h1;                   /* this process's query heads */
    int kv0, kv1;                 /* and the KV heads they read (their K and V rows,
                                     cache), shared with other processes where size
                                     > the KV heads */
} q35_tp;

/* Is buffer b held in slices under tensor parallel? */
static inline int q35_tp_sliced(int b) {
    return b == Q35_B_Q || b == Q35_B_K || b == Q35_B_V || b == Q35_B_A || b == Q35_B_G || b == Q35_B_U;
}

struct q35_model {
    q35_config cfg;
    q35_hparams hp;               /* cfg == hp.c */
    q35_weights weights;          /* owns the mapping and tensor map */
    q35_matrix token_embd;        /* (vocab_size rows, dim) */
    const float *output_norm;     /* (dim) */
    int output_norm_slot;
    q35_matrix output;            /* (vocab_size rows, dim); may be token_embd's */
    q35_rope rope[2];             /* [0] global layers, [1] sliding-window layers */
    uint8_t rope_used;            /* bit r: some layer's program rotates with rope[r] */
    const float *rope_long;       /* LongRoPE: the factors of sessions holding more
                                     than hp.rope_orig_ctx positions (rope[0] has
                                     the short ones), or NULL */
    uint8_t *r16_arena;           /* every R16 copy, one after another (core/mapfile.h q35_huge_alloc) */
    uint64_t r16_arena_bytes;
    int64_t max_np;               /* longest padded row of the family matrices (0: none) */
    q35_layer *layers;            /* n_layers */
    q35_tokenizer *tokenizer;
    int runnable;                 /* 0 when opened with Q35_OPEN_INSPECT */
    int l0, l1;                   /* the layers held: l0 .. l1 - 1 (all by default) */
    q35_tp tp;                    /* the tensor-parallel slice held (tp.size 1: whole) */
    uint64_t fingerprint;         /* q35_model_fingerprint, taken before any expansion */
    q35_model_params params;      /* as loaded (tokenizer_path NULL; kernels
                                     and convert_type point into the names) */
    char kernels_name[16];
    char convert_name[8];
    int convert_dtype;            /* params.convert_type's id; -1: the default */
    /* what loading converted (q35_model_conversion) */
    int n_converted;              /* matrices */
    uint64_t converted_from;      /* bit id: a stored type among them */
    int converted_to;
    char converted_names[160];    /* "Q4_K/Q6_K" */
    uint8_t **converted;          /* per tensor: the family rows conversion made
                                     (owned), NULL once repacked into R16 */
    int rows_dropped;             /* 1 when some converted matrix is held in R16
                                     order only: sessions must run R16 */
};

/* Layer l's op that uses tensor `name` (an op name such as "attn_q"), or
 * NULL. */
const q35_bound *q35_layer_find(const q35_model *m, int l, const char *name);
/* 0 when the model is a plain LLaMA (every layer's program the one
 * q35_prog_attention + q35_prog_ffn build with no options, RoPE on pairs
 * unscaled, no soft-caps, head_dim = dim / heads): what a backend that
 * implements only that graph can run. Else -1 and why (the first op or
 * variant that differs) in buf. */
int q35_model_plain_llama(const q35_model *m, char *why, size_t cap);

/* Is tensor name one the model holds (its layer range, the embedding on
 * the first stage, the classifier on the last)? */
int q35_model_holds(const q35_model *m, const char *name);

/* Calls fn on every matrix the held layers' programs bind (a part of a
 * fused tensor is one matrix of its own), then the classifier (not the
 * embedding, which is read by rows): for repacking and freeing. */
void q35_model_each_matrix(q35_model *m, void (*fn)(q35_matrix *w, void *user), void *user);

#endif
