/* session.h — a session's state and the pieces of the forward pass that
 * forward.c (one token) and prefill.c (a batch of prompt tokens) share.
 * Internal to src/model. */
#ifndef Q35_MODEL_SESSION_H
#define Q35_MODEL_SESSION_H

#include <stdint.h>

#include "format/q35r16.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* Prompt tokens a batch holds unless q35_session_set_batch says otherwise
 * (measured: docs/ARCHITECTURE.md). */
#ifndef Q35_DEFAULT_BATCH
#define Q35_DEFAULT_BATCH 128
#endif

/* Below this many multiply-adds a product runs on one thread: waking the
 * other threads costs more than it saves. Attention heads go parallel from
 * a smaller amount of work (measured on stories260K/stories3M, 2 threads). */
#ifndef Q35_PARALLEL_MIN_WORK
#define Q35_PARALLEL_MIN_WORK 16384
#endif
#ifndef Q35_ATTN_MIN_WORK
#define Q35_ATTN_MIN_WORK 4096
#endif

/* From this many tokens a batch's Q3_5-family products run as q35_gemm
 * (16 rows decoded once into a tile for all tokens), below it as
 * q35_row_dot_batch per row (measured: docs/ARCHITECTURE.md). */
#ifndef Q35_GEMM_MIN_BATCH
#define Q35_GEMM_MIN_BATCH 5
#endif

/* Does this session run w from its R16 copy (format/q35r16.h)? Then its
 * rows go to threads in whole tiles of 16: r is moved down to a tile's
 * start (m, the end, stays), the same for every thread, so the threads'
 * ranges still meet. */
static inline int q35_uses_r16(const q35_kernels *k, const q35_matrix *w) {
    return w->r16 != NULL && k->q35_r16_rows != NULL;
}
static inline int64_t q35_rows_edge(const q35_kernels *k, const q35_matrix *w, int64_t r) {
    return q35_uses_r16(k, w) && r < w->t->ne[1] ? r - r % Q35_R16_ROWS : r;
}

/* Scratch for batches of up to cap tokens (prefill.c), allocated at the
 * first batch: row t of each array belongs to token t. */
typedef struct q35_batch_buf {
    int cap;
    float *x, *xb, *xb2, *hb, *hb2, *q, *k, *v; /* the widths of the one-token buffers */
    float *rope;                 /* (head_dim) per token: RoPE's cos, sin per pair */
    int8_t *aq[3];               /* quantized inputs, max_np per token, per product of a */
    float *ad[3];                /* fused call (as the one-token xp/aq/ad/asum) */
    int32_t *asum[3];
    q35_qact *acts[3];           /* (cap) views of them for q35_row_dot_batch */
    float *xp;                   /* (max_np) per thread: an input in a matrix's column order */
    uint8_t *gemm;               /* Q35_GEMM_SCRATCH(max_np) per thread: q35_gemm's tile */
} q35_batch_buf;

struct q35_session {
    const q35_model *model;
    q35_kernels k;
    int n_threads;
    int pos;            /* tokens in the KV cache */
    int n_batch;        /* prompt tokens per batch (q35_session_set_batch) */
    /* activations */
    float *x;           /* (dim) the residual stream */
    float *xb;          /* (max(dim, n_heads * head_dim)) normed input / attention output */
    float *xb2;         /* (dim) projection output */
    float *hb;          /* (hidden_dim) gate */
    float *hb2;         /* (hidden_dim) up */
    float *q;           /* (n_heads * head_dim) */
    float *kv_new;      /* (2 * kv_dim) this token's key and value, before they are stored */
    float *rope;        /* (head_dim) RoPE's cos, sin per pair at this position */
    float *att;         /* (max(n_heads, n_threads * heads per KV head), seq_len) scores */
    float *logits;      /* (vocab_size) */
    /* KV cache: (n_layers, n_kv_heads, seq_len, head_dim) each, float or,
     * with kv_f16, IEEE halves (uint16_t) */
    int kv_f16;
    void *key_cache;
    void *value_cache;
    /* Q3_5-family inputs, one set per product of a fused call (up to 3):
     * x in the matrix's column order, then quantized (max_np long) */
    float *xp[3];
    int8_t *aq[3];
    float *ad[3];
    int32_t *asum[3];
    q35_batch_buf b;      /* prefill.c's scratch; cap 0 until the first batch */
    q35_observer obs;     /* obs.matrix_input set: every matrix input goes to it */
    struct q35_cuda *gpu; /* when set, layers 0 .. gpu_layers-1 run on the GPU */
    int gpu_layers;
    char device[320];     /* q35_session_device */
};

/* Hands the n inputs X (rows ld apart) of matrix w to the observer, if any. */
static inline void q35_observe(const q35_session *s, const q35_matrix *w, const float *X, int n,
                               int64_t ld) {
    if (s->obs.matrix_input) s->obs.matrix_input(s->obs.user, w->slot, X, w->t->ne[0], n, ld);
}
/* Layers the session runs: all, or as many as an observer asks for. */
static inline int q35_depth(const q35_session *s) {
    const int L = s->model->cfg.n_layers;
    return s->obs.n_layers > 0 && s->obs.n_layers < L ? s->obs.n_layers : L;
}

/* forward.c: the pieces a batch shares with one token. */
void q35_fwd_embed(q35_session *s, int token, float *x);
void q35_fwd_rmsnorm(float *out, const float *x, const float *weight, int n, float eps);
/* cs = RoPE's (cos, sin) of each pair of a head at position pos. */
void q35_fwd_rope_table(float *cs, int head_dim, int pos, float theta);
/* Rotates the pairs of the n values of v (heads of head_dim) by cs. */
void q35_fwd_rope(float *v, int n, int head_dim, const float *cs);
/* Stores a token's key and value rows at position p of layer l. */
void q35_fwd_kv_store(q35_session *s, int l, int p, const float *k, const float *v);
/* Query heads h0 .. h0+nh-1 (of one KV head) of the token at position p,
 * over positions 0..p of layer l's cache: q (nh * head_dim, scaled in
 * place), att (nh rows of p + 1 floats, ld_att apart: scratch), out
 * (nh * head_dim). */
void q35_fwd_attend(const q35_session *s, int l, int h0, int nh, int p, float *q, float *att,
                    int64_t ld_att, float *out);
/* One token through the model at s->pos (the logits into s->logits). */
int q35_fwd_token(q35_session *s, int token, q35_error *err);

/* prefill.c: n (2 <= n <= s->n_batch) tokens at positions s->pos ..
 * s->pos + n - 1 (the caller has checked they fit). Logits: every token's
 * into all_logits (rows vocab_size apart) when it is not NULL, and the last
 * token's into s->logits when want_last. Does not move s->pos. */
int q35_fwd_batch(q35_session *s, const int *tokens, int n, float *all_logits, int want_last,
                  q35_error *err);
void q35_batch_free(q35_batch_buf *b);

#endif
