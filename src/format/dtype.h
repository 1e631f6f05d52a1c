/* dtype.h — the numeric types tensors are stored in. Ids follow GGUF's
 * ggml_type numbering for the types GGUF shares with ggml; q35's own
 * types get ids of their own (docs/FORMAT.md). One row per type in
 * dtype.c: adding a type is a row here plus its kernels. */
#ifndef Q35_FORMAT_DTYPE_H
#define Q35_FORMAT_DTYPE_H

#include <stdint.h>

typedef enum q35_dtype {
    Q35_DTYPE_F32 = 0,
    Q35_DTYPE_COUNT_ /* not a type: one past the last id in the table */
} q35_dtype;

typedef struct q35_dtype_info {
    const char *name;      /* as q35 info prints it */
    int block_elems;       /* elements per block */
    int block_bytes;       /* bytes per block */
} q35_dtype_info;

/* NULL for an id that is not a known type. */
const q35_dtype_info *q35_dtype_get(int id);

#endif
