/* model.h — a loaded model as the forward pass sees it: hyperparameters,
 * per-layer weight pointers resolved from the reader's tensor map, and the
 * tokenizer. Immutable after q35_model_load. */
#ifndef Q35_MODEL_MODEL_H
#define Q35_MODEL_MODEL_H

#include "format/q35fmt.h"
#include "io/weights.h"
#include "q35.h"
#include "text/tokenizer.h"

/* A weight matrix as the forward pass uses it: fp32 rows, or rows of a
 * Q3_5-family type with what their kernels need. */
typedef struct q35_matrix {
    const q35_tensor *t;    /* rows = t->ne[1], row length = t->ne[0] */
    int slot;               /* t's index in the model's tensor map */
    int dtype;              /* Q35_DTYPE_F32 or a Q35_TYPE_* */
    const float *f32;       /* F32: the rows */
    q35_layout L;           /* family: layout, */
    float table[256];       /* scale byte -> scale, */
    int32_t *perm;          /* stored column -> original column (np; owned), */
    const uint8_t *rows;    /* and the first row; */
    uint8_t *r16;           /* family: the rows in R16 order (format/q35r16.h; owned), */
                            /* or NULL where the kernels read the rows */
} q35_matrix;

typedef struct q35_layer {
    const float *attn_norm;   /* (dim) */
    q35_matrix wq;            /* (n_heads * head_dim rows, dim) */
    q35_matrix wk;            /* (n_kv_heads * head_dim rows, dim) */
    q35_matrix wv;            /* (n_kv_heads * head_dim rows, dim) */
    q35_matrix wo;            /* (dim rows, n_heads * head_dim) */
    const float *ffn_norm;    /* (dim) */
    q35_matrix w_gate;        /* (hidden_dim rows, dim)  "w1" */
    q35_matrix w_down;        /* (dim rows, hidden_dim)  "w2" */
    q35_matrix w_up;          /* (hidden_dim rows, dim)  "w3" */
} q35_layer;

struct q35_model {
    q35_config cfg;
    q35_weights weights;          /* owns the mapping and tensor map */
    q35_matrix token_embd;        /* (vocab_size rows, dim) */
    const float *output_norm;     /* (dim) */
    q35_matrix output;            /* (vocab_size rows, dim); may be token_embd's */
    int64_t max_np;               /* longest padded row of the family matrices (0: none) */
    q35_layer *layers;            /* n_layers */
    q35_tokenizer *tokenizer;
    int runnable;                 /* 0 when opened with Q35_OPEN_INSPECT */
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

#endif
