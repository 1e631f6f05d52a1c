/* gguf_pre.h — llama.cpp's pre-tokenizer table (gguf_pre.c). */
#ifndef Q35_TOKENIZER_GGUF_PRE_H
#define Q35_TOKENIZER_GGUF_PRE_H

#include <stddef.h>

typedef struct q35_gguf_pre {
    const char *names[12];    /* tokenizer.ggml.pre values, NULL-terminated */
    int ignore_merges;        /* a pre-token that is a piece is taken whole */
    int add_bos;              /* llama.cpp's add_bos default for it */
    int no_bos;               /* no BOS id by default */
    const char *regex[8];     /* applied in order, NULL-terminated */
} q35_gguf_pre;

/* The entry for the name (len bytes), or NULL. "default" is llama.cpp's
 * fallback for a file with no tokenizer.ggml.pre. */
const q35_gguf_pre *q35_gguf_pre_find(const char *name, size_t len);

#endif
