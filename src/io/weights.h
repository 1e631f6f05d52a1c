/* weights.h — what every model-file reader hands to the model: the
 * hyperparameters and a map of named tensors (GGUF's llama names:
 * token_embd.weight, blk.N.attn_q.weight, ...). Tensor data points into
 * the memory-mapped file, or into buffers the reader owns (for example
 * weights it had to expand at load). */
#ifndef Q35_IO_WEIGHTS_H
#define Q35_IO_WEIGHTS_H

#include <stdint.h>

#include "arch/arch.h"
#include "core/mapfile.h"
#include "q35.h"

#define Q35_MAX_DIMS 4

typedef struct q35_tensor {
    char name[64];
    int dtype;                /* q35_dtype */
    int n_dims;
    int64_t ne[Q35_MAX_DIMS]; /* ne[0] is the row length (innermost) */
    uint64_t nbytes;
    const void *data;
    int stored_dtype;         /* the type the file stores (before any expansion) */
    uint64_t stored_nbytes;
} q35_tensor;

typedef struct q35_weights {
    q35_config cfg;       /* == hp.c */
    q35_hparams hp;       /* the architecture and all its hyperparameters */
    q35_tensor *tensors;  /* n_tensors of them */
    int n_tensors;
    q35_mapfile file;     /* kept mapped while tensors point into it */
    q35_mapfile *extra_files; /* more mappings (safetensors shards), */
    int n_extra_files;        /* closed with the set; malloc'ed array */
    void **owned;         /* buffers this set owns (freed with it) */
    int n_owned;
    char format[32];      /* "llama2.c legacy fp32", "GGUF v3", "safetensors", ... */
} q35_weights;

/* Appends a tensor (name printf-style); returns NULL when out of memory. */
q35_tensor *q35_weights_add(q35_weights *w, int dtype, int n_dims,
                            const int64_t *ne, const void *data,
                            const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Takes ownership of buf (freed by q35_weights_free); 0 on success. */
int q35_weights_own(q35_weights *w, void *buf);
const q35_tensor *q35_weights_find(const q35_weights *w, const char *name);
void q35_weights_free(q35_weights *w);

#endif
