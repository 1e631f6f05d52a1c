/* gguf_internal.h — what the GGUF reader (gguf.c) shares with the writer
 * (gguf_write.c): the value-type table, the byte cursor and the checks both
 * apply, so that the writer can never emit what the reader would refuse. */
#ifndef Q35_IO_GGUF_INTERNAL_H
#define Q35_IO_GGUF_INTERNAL_H

#include <stdint.h>

#include "io/weights.h"
#include "q35.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "q35 reads and writes GGUF (a little-endian format) on little-endian hosts only"
/* q35_gguf_load_weights over size bytes at data that stay valid while w is
 * used (the fuzzer's entry); path names them in errors. w must be zeroed;
 * free it with q35_weights_free, also after an error. */
int q35_gguf_parse_weights(q35_weights *w, const uint8_t *data, uint64_t size, const char *path,
                           q35_error *err);

#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DEPTH 8          /* arrays nested deeper are refused */
#define GGUF_MAX_KEY_LEN 65535u   /* the spec's limit */
#define GGUF_MAX_NAME_LEN 63u     /* ggml's GGML_MAX_NAME (64) less the NUL */

/* A cursor over bytes that refuses to run past their end. Errors name
 * file and `where` (the key or tensor being read); err may be NULL, for
 * re-decoding bytes that were checked already. */
typedef struct gguf_cursor {
    const uint8_t *base;
    uint64_t off, size;
    const char *file;
    q35_error *err;
    char where[160];
} gguf_cursor;

/* Printable name of a value type ("u32", "string", ...), "?" if unknown. */
const char *q35_gguf_type_name(int type);
/* Bytes of a fixed-size value type; 0 for STRING and ARRAY; -1 if unknown. */
int q35_gguf_type_size(int type);
/* 1 if the n bytes at s are valid UTF-8 (no overlong forms, surrogates,
 * or code points past U+10FFFF). */
int q35_gguf_utf8_valid(const uint8_t *s, uint64_t n);

/* Reads the n elements of type elem_type of an array's body at the
 * cursor, checking every one (strings' lengths, booleans 0 or 1, nested
 * arrays down to GGUF_MAX_DEPTH; depth is the array's own). */
int q35_gguf_parse_array_body(gguf_cursor *c, int elem_type, uint64_t n, int depth);

/* q35_gguf_load_weights over size bytes at data that stay valid while w is
 * used (the fuzzer's entry); path names them in errors. w must be zeroed;
 * free it with q35_weights_free, also after an error. */
int q35_gguf_parse_weights(q35_weights *w, const uint8_t *data, uint64_t size, const char *path,
                           q35_error *err);

#endif
