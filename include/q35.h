/* q35.h — the public API of libq35.
 *
 * A model (q35_model) is immutable once loaded and may be shared by many
 * sessions; a session (q35_session) holds one conversation's KV cache,
 * scratch buffers and position. Every call that can fail returns a status
 * (0 = success) and fills a q35_error with a one-line message naming the
 * file, field or argument at fault. The library never prints, never exits
 * and never aborts on bad input. There is no global mutable state.
 */
#ifndef Q35_H
#define Q35_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------- */
enum q35_status {
    Q35_OK = 0,
    Q35_ERR_IO = 1,       /* a file cannot be opened, read or mapped */
    Q35_ERR_FORMAT = 2,   /* a file's contents are malformed or inconsistent */
    Q35_ERR_ARG = 3,      /* a caller's argument is out of range */
    Q35_ERR_NOMEM = 4,    /* an allocation failed */
    Q35_ERR_UNSUPPORTED = 5 /* well-formed, but not something q35 runs */
};

typedef struct q35_error {
    int code;       /* one of enum q35_status */
    char msg[512];  /* one line, no trailing newline */
} q35_error;

/* ---- models ---------------------------------------------------------- */
typedef struct q35_config {
    int dim;         /* transformer width */
    int hidden_dim;  /* feed-forward width */
    int n_layers;
    int n_heads;     /* query heads */
    int n_kv_heads;  /* key/value heads (grouped-query attention) */
    int vocab_size;
    int seq_len;     /* longest context the model was trained for */
    int head_dim;    /* dim / n_heads */
    float rms_eps;   /* RMSNorm epsilon */
    float rope_theta;/* RoPE base frequency */
    int shared_classifier; /* 1 when the classifier is the token embedding */
} q35_config;

typedef struct q35_model q35_model;

/* Loads a model file. tokenizer_path may be NULL: then a tokenizer file
 * beside the model is looked for (see docs/ARCHITECTURE.md). */
int q35_model_load(q35_model **out, const char *model_path,
                   const char *tokenizer_path, q35_error *err);
void q35_model_free(q35_model *m);
const q35_config *q35_model_config(const q35_model *m);
/* Bytes of weights the forward pass reads per token. */
uint64_t q35_model_weight_bytes(const q35_model *m);
/* Number of weights (parameters) in the model. */
uint64_t q35_model_n_params(const q35_model *m);

/* ---- tokens ---------------------------------------------------------- */
int q35_token_bos(const q35_model *m);
int q35_token_eos(const q35_model *m);
/* Encodes text (len bytes). On success *ids is malloc'ed (free() it) and
 * holds *n_ids token ids; add_bos prepends the BOS token. */
int q35_tokenize(const q35_model *m, const char *text, size_t len, int add_bos,
                 int **ids, int *n_ids, q35_error *err);
/* Writes the text of token `token` following token `prev` into buf
 * (NUL-terminated, truncated to cap) and returns its length in bytes. */
size_t q35_detokenize(const q35_model *m, int prev, int token, char *buf,
                      size_t cap);

/* ---- sessions -------------------------------------------------------- */
typedef struct q35_session q35_session;

/* n_threads <= 0 means the number of cores. */
int q35_session_new(q35_session **out, const q35_model *m, int n_threads,
                    q35_error *err);
void q35_session_free(q35_session *s);
/* Forgets the context (position back to 0). */
void q35_session_reset(q35_session *s);
int q35_session_pos(const q35_session *s);
/* Runs one token at the current position and advances it. On success
 * *logits points to vocab_size floats owned by the session, valid until the
 * next call. Fails with Q35_ERR_ARG when the context is full or the token is
 * out of range. */
int q35_session_eval(q35_session *s, int token, const float **logits,
                     q35_error *err);

/* ---- sampling -------------------------------------------------------- */
typedef struct q35_sampler_params {
    float temperature;    /* 0 = greedy (argmax) */
    int top_k;            /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;
} q35_sampler_params;

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * repeat penalty 1.0 over the last 64 tokens; seed as given. */
q35_sampler_params q35_sampler_defaults(uint64_t seed);

typedef struct q35_sampler q35_sampler;
int q35_sampler_new(q35_sampler **out, const q35_sampler_params *p,
                    int vocab_size, q35_error *err);
void q35_sampler_free(q35_sampler *s);
/* Picks the next token. logits (vocab_size floats) are not modified.
 * history holds the n_history tokens seen so far (for the penalty). */
int q35_sampler_sample(q35_sampler *s, const float *logits,
                       const int *history, int n_history);

#ifdef __cplusplus
}
#endif
#endif
