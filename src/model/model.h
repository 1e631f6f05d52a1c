/* model.h — a loaded model as the forward pass sees it: hyperparameters,
 * per-layer weight pointers resolved from the reader's tensor map, and the
 * tokenizer. Immutable after q35_model_load. */
#ifndef Q35_MODEL_MODEL_H
#define Q35_MODEL_MODEL_H

#include "io/weights.h"
#include "q35.h"
#include "text/tokenizer.h"

typedef struct q35_layer {
    const float *attn_norm;   /* (dim) */
    const q35_tensor *wq;     /* (n_heads * head_dim rows, dim) */
    const q35_tensor *wk;     /* (n_kv_heads * head_dim rows, dim) */
    const q35_tensor *wv;     /* (n_kv_heads * head_dim rows, dim) */
    const q35_tensor *wo;     /* (dim rows, n_heads * head_dim) */
    const float *ffn_norm;    /* (dim) */
    const q35_tensor *w_gate; /* (hidden_dim rows, dim)  "w1" */
    const q35_tensor *w_down; /* (dim rows, hidden_dim)  "w2" */
    const q35_tensor *w_up;   /* (hidden_dim rows, dim)  "w3" */
} q35_layer;

struct q35_model {
    q35_config cfg;
    q35_weights weights;          /* owns the mapping and tensor map */
    const q35_tensor *token_embd; /* (vocab_size rows, dim) */
    const float *output_norm;     /* (dim) */
    const q35_tensor *output;     /* (vocab_size rows, dim); may be token_embd */
    q35_layer *layers;            /* n_layers */
    q35_tokenizer *tokenizer;
};

#endif
