/* gguf.h — GGUF (versions 2 and 3) reader and writer.
 *
 * The reader maps the file, parses and validates the whole header (every
 * key/value including nested arrays, every tensor info) against the file's
 * length before anything is used, and gives tensors as pointers into the
 * mapping. The writer builds the header first and writes front to back
 * through q35_outfile (a file atomically: temp file in the same folder,
 * fsync, rename; a device or FIFO directly); it is the container of q35's
 * own quantized files. Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md */
#ifndef Q35_IO_GGUF_H
#define Q35_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "io/weights.h"
#include "q35.h"

/* GGUF metadata value types, numbered as the spec numbers them. */
enum q35_gguf_type {
    Q35_GGUF_UINT8 = 0, Q35_GGUF_INT8 = 1, Q35_GGUF_UINT16 = 2, Q35_GGUF_INT16 = 3,
    Q35_GGUF_UINT32 = 4, Q35_GGUF_INT32 = 5, Q35_GGUF_FLOAT32 = 6, Q35_GGUF_BOOL = 7,
    Q35_GGUF_STRING = 8, Q35_GGUF_ARRAY = 9, Q35_GGUF_UINT64 = 10, Q35_GGUF_INT64 = 11,
    Q35_GGUF_FLOAT64 = 12
};

/* One metadata value. Strings are not NUL-terminated (they may hold any
 * bytes); they point into the mapping (reader) or into caller memory
 * (writer). An array holds n values of one element type; its elements are
 * decoded on demand with q35_gguf_array_get. */
typedef struct q35_gguf_value {
    int type;                 /* enum q35_gguf_type */
    union {
        uint64_t u;           /* UINT8..UINT64, BOOL */
        int64_t i;            /* INT8..INT64 */
        double f;             /* FLOAT32, FLOAT64 */
        struct { const char *data; uint64_t len; } str;
        struct { int elem_type; uint64_t n; const uint8_t *raw; uint64_t raw_len; } arr;
    } v;
} q35_gguf_value;

typedef struct q35_gguf_kv {
    const char *key;          /* NUL-terminated copy, owned by the file object */
    q35_gguf_value value;
} q35_gguf_kv;

typedef struct q35_gguf_tensor_info {
    const char *name;         /* NUL-terminated copy, owned */
    int n_dims;               /* 1..4 */
    int64_t ne[4];            /* ne[0] innermost; unused dims are 1 */
    int dtype;                /* GGUF / q35 type id (format/dtype.h) */
    uint64_t offset;          /* from the start of the data section */
    uint64_t nbytes;
    const void *data;         /* into the mapping */
} q35_gguf_tensor_info;

typedef struct q35_gguf q35_gguf;

/* Parses path. Any malformation: a one-line error naming the file and what
 * is wrong (with the key or tensor name where there is one). */
int q35_gguf_open(q35_gguf **out, const char *path, q35_error *err);
/* The same over bytes in memory (for the fuzzer); name is used in errors. */
int q35_gguf_open_memory(q35_gguf **out, const void *data, uint64_t size, const char *name,
                         q35_error *err);
void q35_gguf_close(q35_gguf *g);

uint32_t q35_gguf_version(const q35_gguf *g);
uint64_t q35_gguf_alignment(const q35_gguf *g);
int q35_gguf_n_kv(const q35_gguf *g);
const q35_gguf_kv *q35_gguf_kv_at(const q35_gguf *g, int i);
const q35_gguf_value *q35_gguf_find(const q35_gguf *g, const char *key); /* NULL if absent */
int q35_gguf_n_tensors(const q35_gguf *g);
const q35_gguf_tensor_info *q35_gguf_tensor_at(const q35_gguf *g, int i);

/* Element i of an array value (elements of nested arrays are arrays). */
int q35_gguf_array_get(const q35_gguf_value *arr, uint64_t i, q35_gguf_value *out);
/* The elements of an array of strings one after another (for long arrays:
 * q35_gguf_array_get walks from the start each time): *pos starts at 0;
 * each call gives the next string and returns 0, or -1 past the end. */
int q35_gguf_array_next_str(const q35_gguf_value *arr, uint64_t *pos, const char **s,
                            uint64_t *len);

/* Loads a model of an architecture q35 runs (src/arch): hyperparameters
 * from {arch}.* (read by the architecture), tensors (mapped) under their
 * GGUF names (the tokenizer module reads tokenizer.ggml.*). Non-F32
 * tensors are left in their stored type. */
int q35_gguf_load_weights(q35_weights *w, const char *path, q35_error *err);

/* ---- writer ---- */
typedef struct q35_gguf_writer q35_gguf_writer;

int q35_gguf_writer_new(q35_gguf_writer **out, q35_error *err);
void q35_gguf_writer_free(q35_gguf_writer *wr);
/* Values are copied (strings and arrays included). Keys must be unique. */
int q35_gguf_writer_set(q35_gguf_writer *wr, const char *key, const q35_gguf_value *v,
                        q35_error *err);
/* Convenience setters. */
int q35_gguf_writer_set_u32(q35_gguf_writer *wr, const char *key, uint32_t v, q35_error *err);
int q35_gguf_writer_set_f32(q35_gguf_writer *wr, const char *key, float v, q35_error *err);
int q35_gguf_writer_set_str(q35_gguf_writer *wr, const char *key, const char *s, q35_error *err);
/* An array of n elements of elem_type (not ARRAY) from a C array: uint8_t,
 * int8_t, ..., float, double for numbers, uint8_t 0/1 for BOOL, and for
 * STRING an array of `const char *` with lens giving each length. */
int q35_gguf_writer_set_array(q35_gguf_writer *wr, const char *key, int elem_type,
                              const void *elems, const uint64_t *lens, uint64_t n,
                              q35_error *err);
/* Adds a tensor; data (nbytes for its type and shape) must stay valid until
 * the file is written. */
int q35_gguf_writer_add_tensor(q35_gguf_writer *wr, const char *name, int dtype, int n_dims,
                               const int64_t *ne, const void *data, q35_error *err);
/* Adds a tensor whose data the writer asks for while writing, in chunks:
 * fill(user, buf, offset, len, err) puts bytes [offset, offset + len) of
 * the tensor's data into buf and returns 0 (or a status, with err set,
 * which abandons the file). Chunks come in order and are at most 64 MiB,
 * so a file of any size is written holding no more than that. */
typedef int (*q35_gguf_fill)(void *user, void *buf, uint64_t offset, uint64_t len,
                             q35_error *err);
int q35_gguf_writer_add_tensor_fill(q35_gguf_writer *wr, const char *name, int dtype, int n_dims,
                                    const int64_t *ne, q35_gguf_fill fill, void *user,
                                    q35_error *err);
/* The size in bytes of the file q35_gguf_writer_write would write now. */
int q35_gguf_writer_size(const q35_gguf_writer *wr, uint64_t *size, q35_error *err);
/* Writes version 3 with general.alignment (default 32) to path through
 * q35_outfile (q35.h: a file or a link's target atomically, after checking
 * that its file system has room for the whole file; a device, FIFO or
 * socket front to back). */
int q35_gguf_writer_write(q35_gguf_writer *wr, const char *path, q35_error *err);
/* The same with the output's settings (tests: opts->fail_errno); its size
 * and seeks are the writer's. */
int q35_gguf_writer_write_opts(q35_gguf_writer *wr, const char *path, const q35_outfile_opts *opts,
                               q35_error *err);

/* Sets general.architecture and the {arch}.* hyperparameters of hp, as
 * llama.cpp's converter writes them. */
int q35_gguf_writer_set_hparams(q35_gguf_writer *wr, const q35_hparams *hp, q35_error *err);

/* More keys for a file being written: add(src, wr, err) sets them (the
 * tokenizer's: q35_tokenizer_gguf_keys). */
typedef int (*q35_gguf_add_keys)(const void *src, q35_gguf_writer *wr, q35_error *err);

/* Writes a whole model (hyperparameters as {arch}.*, the keys add sets
 * from src when add is non-NULL, tensors under their names). out_dtype
 * converts every 2-D tensor to Q35_DTYPE_F32 or Q35_DTYPE_F16; -1 keeps
 * each as stored. 1-D tensors (norms) stay F32. Written as
 * q35_gguf_writer_write does. */
int q35_gguf_save_model(const char *path, const q35_weights *w, q35_gguf_add_keys add,
                        const void *src, int out_dtype, q35_error *err);

#endif
