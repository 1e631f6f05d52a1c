/* arch.h — the one description of each model architecture.
 *
 * An architecture is a q35_arch: its names (GGUF general.architecture,
 * Hugging Face "architectures"), how it reads its hyperparameters from
 * either source (generic keys plus its own, through a q35_keysrc), how a
 * Hugging Face tensor is named in GGUF, and the program of one layer: a
 * short list of ops (q35_op) over a fixed set of per-token buffers. Every
 * path reads these programs and nothing else: the CPU forward pass
 * (src/model/exec.c: decode, prompt batches, several sequences), the
 * tuner's forward and backward pass (src/quant/tune.c), calibration (its
 * observer sees each matrix input) and the CUDA backend (which checks the
 * programs are the plain LLaMA one it implements, or refuses).
 *
 * Adding an architecture: a file in src/arch/ (see llama.c, qwen3.c), a
 * line in arch.c's table, and an op kernel in src/model/exec.c plus its
 * backward in src/quant/tune.c if it needs an op that does not exist
 * (docs/ARCHITECTURE.md has the recipe). Depends on core only: the
 * readers in src/io give the keys, src/model binds the tensors. */
#ifndef Q35_ARCH_ARCH_H
#define Q35_ARCH_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

/* ---- hyperparameters -------------------------------------------------- */

enum q35_act { Q35_ACT_SILU = 0, Q35_ACT_GELU_TANH = 1 };
enum q35_rope_mode {
    Q35_ROPE_NORM = 0, /* rotate adjacent pairs (2i, 2i+1): LLaMA in GGUF's layout */
    Q35_ROPE_NEOX = 1  /* rotate (i, i + n_rot/2): Qwen, Gemma, Phi-3 */
};
enum q35_rope_scaling {
    Q35_ROPE_SCALING_NONE = 0,
    Q35_ROPE_SCALING_LINEAR = 1,  /* positions times freq_scale */
    Q35_ROPE_SCALING_FACTORS = 2  /* per-frequency factors from a tensor (llama3, LongRoPE) */
};

#define Q35_MAX_LAYERS 4096

/* Everything a forward pass needs beyond q35_config. */
typedef struct q35_hparams {
    const struct q35_arch *arch;
    q35_config c;           /* dim, widths, heads, vocab, context, eps, theta, tied */
    int n_rot;              /* RoPE dimensions per head (<= head_dim) */
    int rope_mode;          /* enum q35_rope_mode */
    float rope_theta_local; /* base of sliding-window layers (gemma3); 0: rope_theta */
    float rope_freq_scale;  /* linear scaling of the global layers; 1: none */
    int rope_scaling;       /* enum q35_rope_scaling */
    int rope_orig_ctx;      /* LongRoPE: the context the short factors are for */
    float rope_attn_factor; /* LongRoPE: cos/sin multiplied by it; 1: none */
    int sliding_window;     /* tokens a sliding-window layer sees; 0: none */
    int swa_period;         /* with a window: every swa_period-th layer (l % p == p-1)
                               is global, the others slide; 0: every layer slides */
    float attn_softcap;     /* scores s -> c tanh(s / c); 0: none */
    float final_softcap;    /* logits likewise; 0: none */
    float attn_scale;       /* scores are q.k times this */
    float embd_scale;       /* the embedding row times this; 1: none */
    int act;                /* enum q35_act of the FFN's gate */
    int qkv_bias;           /* 1: q, k, v projections have biases */
    int norm_plus_one_hf;   /* 1: Hugging Face stores norm weights w for (1 + w) */
} q35_hparams;

/* ---- the layer program ------------------------------------------------ */

/* Per-token buffers the ops read and write (widths in q35_buf_width). */
enum q35_buf {
    Q35_B_X = 0, /* residual stream (dim) */
    Q35_B_H,     /* normed input (dim) */
    Q35_B_Q,     /* queries (n_heads * head_dim) */
    Q35_B_K,     /* keys (n_kv_heads * head_dim) */
    Q35_B_V,     /* values (n_kv_heads * head_dim) */
    Q35_B_A,     /* attention output (n_heads * head_dim) */
    Q35_B_G,     /* FFN gate (hidden_dim) */
    Q35_B_U,     /* FFN up (hidden_dim) */
    Q35_B_O,     /* a projection back to the stream (dim) */
    Q35_N_BUFS
};

enum q35_op_kind {
    Q35_OP_NORM,      /* dst = rmsnorm(src) * w (w: blk.L.<name>.weight, width of src) */
    Q35_OP_MATMUL,    /* dst = W src (+ b): W blk.L.<name>.weight (rows part of a fused
                         tensor when n_parts > 1), b blk.L.<name>.bias when bias */
    Q35_OP_HEAD_NORM, /* each head_dim-wide head of dst: rmsnorm * w (head_dim) */
    Q35_OP_ROPE,      /* rotate each head of dst at the token's position (rope: 0 the
                         global RoPE, 1 the sliding-window layers') */
    Q35_OP_ATTN,      /* store K, V at the token's position of its sequence, then dst =
                         softmax(scale q.k (softcapped), causal, window) . V */
    Q35_OP_GLU,       /* dst = act(src) * src2 */
    Q35_OP_ADD,       /* dst += src */
    Q35_N_OPS
};

typedef struct q35_op {
    uint8_t kind;          /* enum q35_op_kind */
    uint8_t dst, src, src2;/* enum q35_buf */
    uint8_t act;           /* GLU: enum q35_act */
    uint8_t rope;          /* ROPE: 0 global, 1 local */
    uint8_t bias;          /* MATMUL: with a bias vector */
    uint8_t part, n_parts; /* MATMUL: rows part `part` of a tensor fusing n_parts
                              products (phi3's attn_qkv, ffn_up); 0, 1 otherwise */
    char name[24];         /* tensor name within the layer: "attn_q", "ffn_norm" */
    int window;            /* ATTN: positions p - window + 1 .. p; 0: all */
    float softcap;         /* ATTN: score soft-cap; 0: none */
    float scale;           /* ATTN: score scale */
} q35_op;

#define Q35_MAX_OPS 24

typedef struct q35_prog {
    int n;
    q35_op op[Q35_MAX_OPS];
} q35_prog;

/* The width of buffer b for model hp. */
int64_t q35_buf_width(const q35_hparams *hp, int b);
/* Output rows of a MATMUL op (its part of a fused tensor) and its row offset. */
int64_t q35_op_rows(const q35_hparams *hp, const q35_op *op, int64_t *row0);

/* ---- hyperparameter sources ------------------------------------------- */

enum q35_key_type { Q35_KEY_INT, Q35_KEY_FLOAT, Q35_KEY_STR, Q35_KEY_BOOL, Q35_KEY_ARRAY };

typedef struct q35_keyval {
    int type;              /* enum q35_key_type */
    int64_t i;             /* INT, BOOL */
    double f;              /* FLOAT (and INT, converted) */
    const char *s;         /* STR (not NUL-terminated) */
    size_t len;            /* STR length, ARRAY elements */
} q35_keyval;

/* Where the keys come from: a GGUF file's metadata ("{arch}.<key>") or a
 * Hugging Face config.json ("<key>", a dotted path such as
 * "rope_scaling.factor"). get returns 1 with *v when the key is there, 0
 * when it is absent (or JSON null), or a q35_status with err filled. */
typedef struct q35_keysrc {
    const void *ctx;
    int gguf;              /* 1: GGUF metadata, 0: config.json */
    const char *arch;      /* GGUF key prefix */
    const char *path;      /* for messages */
    q35_error *err;
    int (*get)(const struct q35_keysrc *s, const char *key, q35_keyval *v);
    /* The n numbers of an array key into out (1), 0 when absent, or a
     * q35_status (not an array of n numbers). */
    int (*get_floats)(const struct q35_keysrc *s, const char *key, float *out, size_t n);
} q35_keysrc;

/* Typed reads: key is the GGUF key (without the arch prefix) when s->gguf,
 * the config.json key otherwise (pass NULL where that source has none:
 * then dflt). A missing required key, a wrong type or a value outside
 * [lo, hi] is a one-line error naming it. */
int q35_key_int(const q35_keysrc *s, const char *gguf_key, const char *hf_key, int required,
                int64_t dflt, int64_t lo, int64_t hi, int64_t *out);
int q35_key_float(const q35_keysrc *s, const char *gguf_key, const char *hf_key, int required,
                  double dflt, double *out);
int q35_key_bool(const q35_keysrc *s, const char *gguf_key, const char *hf_key, int dflt, int *out);
/* An array of exactly n numbers (required: a missing key is an error). */
int q35_key_floats(const q35_keysrc *s, const char *gguf_key, const char *hf_key, float *out, size_t n);
/* 1 when the key is present at all (any type). */
int q35_key_present(const q35_keysrc *s, const char *gguf_key, const char *hf_key);
/* A string key compared with want (1 equal, 0 not or absent). */
int q35_key_str_is(const q35_keysrc *s, const char *gguf_key, const char *hf_key, const char *want);

/* ---- architectures ---------------------------------------------------- */

/* Hugging Face tensor naming: a layer tensor "model.layers.N.<hf>" is
 * "blk.N.<gguf>"; kind says how its data is converted. */
enum q35_hf_kind { Q35_HF_PLAIN, Q35_HF_PERMUTE_Q, Q35_HF_PERMUTE_K, Q35_HF_NORM_PLUS_ONE };
typedef struct q35_hf_name {
    const char *hf, *gguf;
    int kind;
} q35_hf_name;

typedef struct q35_arch {
    const char *name;                /* GGUF general.architecture */
    const char *const *hf_names;     /* config.json "architectures" (NULL-terminated) */
    const q35_hf_name *hf_tensors;   /* layer tensors, {NULL} ended */
    /* The architecture's own keys and defaults, after the generic ones
     * (q35_arch_read_hparams) have filled hp->c; may be NULL. */
    int (*read)(const q35_keysrc *s, q35_hparams *hp);
    /* The ops of layer l into p (p->n = 0 on entry). */
    void (*layer)(const q35_hparams *hp, int l, q35_prog *p);
    /* Tensors a Hugging Face checkpoint implies without storing them, as
     * llama.cpp's converter writes them (llama3's rope_freqs.weight from
     * config.json's rope_scaling): add(user, name, x, n) for each; may be
     * NULL. */
    int (*hf_derived)(const q35_keysrc *s, const q35_hparams *hp,
                      int (*add)(void *user, const char *name, const float *x, int64_t n), void *user);
} q35_arch;

/* The architecture named name (GGUF) or, with hf set, one of whose
 * Hugging Face names is name; NULL if q35 has none. */
const q35_arch *q35_arch_find(const char *name, size_t len, int hf);
/* "llama, qwen2, ..." */
const char *q35_arch_names(void);

/* Reads every hyperparameter for arch a into hp (generic keys, then a's),
 * checks them (q35_config_check and the extras), and sets the derived
 * fields. vocab_size may be left 0 for the reader to fill. */
int q35_arch_read_hparams(const q35_arch *a, const q35_keysrc *s, q35_hparams *hp);
/* The hyperparameters of a plain LLaMA with config c (llama2.c files). */
void q35_arch_llama_defaults(const q35_config *c, q35_hparams *hp);
/* Checks hp's numbers after the reader set vocab_size (a one-line error). */
int q35_arch_check(const q35_hparams *hp, const char *path, q35_error *err);
/* The names of the variants hp uses ("GQA 8:2, rope llama3 factors, qkv
 * bias, ...") into buf. */
void q35_arch_describe(const q35_hparams *hp, char *buf, size_t cap);
/* Is layer l a sliding-window layer? */
int q35_arch_layer_slides(const q35_hparams *hp, int l);

/* ---- building programs (for the architecture files) ------------------- */

/* Appends one op. */
q35_op *q35_prog_add(q35_prog *p, int kind, int dst, int src, const char *name);
/* The attention half of a pre-norm block: NORM(attn_norm) -> q, k, v
 * (biases, fused, q/k norms as set) -> RoPE -> ATTN -> attn_output
 * (post-norm as set) -> residual. */
typedef struct q35_attn_opts {
    int fused_qkv;        /* one tensor attn_qkv */
    int qk_norm;          /* attn_q_norm, attn_k_norm per head */
    int post_norm;        /* post_attention_norm on the output before the residual */
} q35_attn_opts;
void q35_prog_attention(q35_prog *p, const q35_hparams *hp, int l, const q35_attn_opts *o);
/* The feed-forward half: NORM(ffn_norm) -> gate, up (fused as set) ->
 * act(gate) * up -> ffn_down (post-norm post_ffw_norm as set) -> residual. */
typedef struct q35_ffn_opts {
    int fused_gate_up;    /* one tensor ffn_up holding gate then up */
    int post_norm;        /* post_ffw_norm */
} q35_ffn_opts;
void q35_prog_ffn(q35_prog *p, const q35_hparams *hp, const q35_ffn_opts *o);

#endif
