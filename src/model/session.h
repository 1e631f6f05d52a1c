/* session.h — a session's state, and the executor (exec.c) that runs the
 * layer programs (src/arch) over a batch of tokens from one or more
 * sequences. Internal to src/model. */
#ifndef Q35_MODEL_SESSION_H
#define Q35_MODEL_SESSION_H

#include <stdint.h>

#include "format/q35r16.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* Tokens evaluated together unless q35_session_params says otherwise
 * (measured: docs/ARCHITECTURE.md). */
#ifndef Q35_DEFAULT_BATCH
#define Q35_DEFAULT_BATCH 128
#endif

/* The context a session holds per sequence unless its params say
 * otherwise: the model's, up to this many tokens (llama.cpp's -c 4096). */
#ifndef Q35_DEFAULT_CTX
#define Q35_DEFAULT_CTX 4096
#endif

/* The KV cache's element types (q35_session.kv_type). */
enum { Q35_KV_F32, Q35_KV_F16, Q35_KV_Q8 };

/* Below this many multiply-adds a product runs on one thread: waking the
 * other threads costs more than it saves (measured on stories260K/stories3M,
 * 2 threads: q35 bench -p 64 -n 32 -t 2, two rounds, stories3M Q3_5 tg
 * 6309/6414 tok/s at 16384, 12062/8991 at 131072, 17196/11237 at 524288;
 * pp64 and every matrix of tinyllama-1.1b and larger are above it).
 * Attention goes parallel from (positions seen) x head_dim x heads summed
 * over the batch's tokens: for one token of tinyllama-1.1b (2048 per
 * position) from depth 128. Decode at depth 64-96 spent 27k cycles
 * between its out-projection's and its query products with the parallel
 * heads, 20k without; at depth 256, 82k with and 111k without (2 threads,
 * rdtsc around each product, docs/bench-speed2.md). */
#ifndef Q35_PARALLEL_MIN_WORK
#define Q35_PARALLEL_MIN_WORK 524288
#endif
#ifndef Q35_ATTN_MIN_WORK
#define Q35_ATTN_MIN_WORK 262144
#endif
/* The values a batch's norm, RoPE, GLU or add must touch to be split by
 * tokens among the threads (exec.c token_ops): 8 tokens of a 2048-wide
 * model, some microseconds of work against about one to wake the other
 * thread. Also low enough that test_prefill's 64- and 70-token batches of
 * stories3M (288 wide, 2 threads) take the split for every op. */
#ifndef Q35_TOKEN_OPS_MIN_WORK
#define Q35_TOKEN_OPS_MIN_WORK 16384
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
    return q35_uses_r16(k, w) && r < w->m ? r - r % Q35_R16_ROWS : r;
}

/* Scratch for up to cap tokens at once: row t of each array belongs to
 * token t of the batch. */
typedef struct q35_batch_buf {
    int cap;
    float *buf[Q35_N_BUFS];      /* the program's buffers (q35_buf_width each) */
    float *rope[2];              /* (n_rot) per token: cos, sin per pair, for each RoPE */
    int *seq, *pos;              /* each token's sequence and position */
    int8_t *aq[3];               /* quantized inputs, max_np per token, per product of a */
    float *ad[3];                /* fused call */
    int32_t *asum[3];
    q35_qact *acts[3];           /* (cap) views of them for the kernels */
} q35_batch_buf;

struct q35_session {
    const q35_model *model;
    q35_kernels k;
    int n_threads;
    int n_batch;        /* tokens per step (q35_session_set_batch) */
    int n_seq;          /* sequences held */
    int n_ctx;          /* positions each sequence holds */
    int gelu_f16;       /* GELU through llama.cpp's fp16 table (q35_session_params) */
    int *seq_pos;       /* (n_seq) tokens in each sequence's cache */
    q35_rope rope[2];   /* the model's, LongRoPE factors chosen for n_ctx */
    q35_batch_buf b;    /* grown to the largest step */
    float *xp;          /* (n_threads, max_np) an input in a matrix's column order */
    uint8_t *gemm;      /* (n_threads) Q35_GEMM_SCRATCH(max_np): q35_gemm's tile */
    float *att;         /* (n_threads, heads per KV head, n_ctx) attention scores */
    float *logits;      /* (vocab_size) the last token's */
    /* KV cache: (n_seq, layers held, KV heads held, n_ctx, head_dim) each,
     * float, IEEE halves (uint16_t) or int8 codes (kv_type); for codes,
     * key_scale and value_scale hold one fp32 scale per row (n_seq,
     * layers held, KV heads held, n_ctx), else they are NULL */
    int kv_type; /* Q35_KV_F32, Q35_KV_F16 or Q35_KV_Q8 */
    void *key_cache;
    void *value_cache;
    float *key_scale;
    float *value_scale;
    q35_observer obs;     /* obs.matrix_input set: every matrix input goes to it */
    int (*tp_gather)(void *user, float *buf, int64_t width, int n, const int64_t *lo, q35_error *err);
    void *tp_user;        /* tensor parallel: q35_session_params.tp_gather */
    struct q35_cuda *gpu; /* when set, layers 0 .. gpu_layers-1 run on the GPU */
    int gpu_layers;
    char device[320];     /* q35_session_device */
};

/* Layers the session runs: all, or as many as an observer asks for. */
static inline int q35_depth(const q35_session *s) {
    const int L = s->model->cfg.n_layers;
    return s->obs.n_layers > 0 && s->obs.n_layers < L ? s->obs.n_layers : L;
}

/* exec.c: n tokens (1 <= n <= s->n_batch; checked by the caller), token t
 * of sequence seq[t] at position pos[t] (a sequence's tokens in order,
 * their positions consecutive). want[t] (want may be NULL: none) asks for
 * token t's logits: they go to the next row of out (rows vocab_size
 * apart) in token order. The KV cache receives every token's keys and
 * values; positions are not moved. A model holding only some layers
 * (pipeline parallel): x_in (n rows of dim) enters its first layer when
 * that is not layer 0, and x_out receives what leaves its last when that
 * is not the model's last (then no logits). */
int q35_exec(q35_session *s, const int *tokens, const int *seq, const int *pos, int n, const uint8_t *want,
             float *out, const float *x_in, float *x_out, q35_error *err);
void q35_batch_free(q35_batch_buf *b);
/* Sizes the session's scratch for steps of up to cap tokens. */
int q35_batch_reserve(q35_session *s, int cap, q35_error *err);

#endif
