/* fuzz_gguf.c — libFuzzer target: the GGUF reader over arbitrary bytes.
 * On success every key is decoded (array elements recursively, through
 * q35_gguf_array_get, which must then never fail) and every tensor's
 * first and last byte read, which ASan checks lie inside the input, and
 * the tokenizer module reads tokenizer.ggml.* and encodes a text with
 * special tokens parsed. Every tensor of a type q35 reads is expanded to
 * fp32 (its first rows, at most 64 KiB of output), so the block decoders
 * of format/kquant.c run on whatever bytes the fuzzer makes. The same
 * bytes then go through the model loader (config, tensors). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/dtype.h"
#include "io/gguf.h"
#include "io/gguf_internal.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const q35_gguf_value *v, int depth, volatile uint8_t *sink) {
    if (depth > GGUF_MAX_DEPTH) abort(); /* the reader let too deep a value through */
    switch (v->type) {
    case Q35_GGUF_STRING:
        if (v->v.str.len) *sink ^= (uint8_t)(v->v.str.data[0] ^ v->v.str.data[v->v.str.len - 1]);
        break;
    case Q35_GGUF_ARRAY:
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            q35_gguf_value elem;
            if (q35_gguf_array_get(v, i, &elem) != 0) abort(); /* checked, yet undecodable */
            walk(&elem, depth + 1, sink);
        }
        break;
    default: { /* a number: its bytes, whatever the type */
        uint64_t bits;
        memcpy(&bits, &v->v, sizeof bits);
        *sink ^= (uint8_t)bits;
        break;
    }
    }
}

/* Expands the first rows of t (whole rows, at most 16384 weights). */
static void expand(const q35_gguf_tensor_info *t, volatile uint8_t *sink) {
    static float out[16384];
    const q35_dtype_info *di = q35_dtype_get(t->dtype);
    if (!di || !di->to_f32 || t->ne[0] > 16384) return;
    int64_t rows = 16384 / t->ne[0], all = t->ne[1] * t->ne[2] * t->ne[3];
    if (rows > all) rows = all;
    di->to_f32(t->data, out, rows * t->ne[0]);
    uint32_t bits;
    memcpy(&bits, &out[rows * t->ne[0] - 1], 4);
    *sink ^= (uint8_t)bits;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    q35_gguf *g;
    q35_error err;
    volatile uint8_t sink = 0;
    if (q35_gguf_open_memory(&g, data, size, "fuzz", &err) == 0) {
        for (int i = 0; i < q35_gguf_n_kv(g); i++) walk(&q35_gguf_kv_at(g, i)->value, 0, &sink);
        for (int i = 0; i < q35_gguf_n_tensors(g); i++) {
            const q35_gguf_tensor_info *t = q35_gguf_tensor_at(g, i);
            const uint8_t *p = t->data;
            sink ^= p[0] ^ p[t->nbytes - 1]; /* nbytes >= 1: dimensions are >= 1 */
            expand(t, &sink);
        }
        q35_tokenizer *tok = NULL;
        int rc = q35_tokenizer_from_gguf(&tok, g, "fuzz", &err);
        if (rc == 0 && tok) {
            static const char text[] = "Once upon a <s> time\xe2\x96\x81  \xff<|im_end|>";
            int *ids = NULL, n = 0;
            if (q35_tokenizer_encode(tok, text, sizeof text - 1, 3, &ids, &n, &err) == 0) {
                char *back = NULL;
                size_t len;
                if (!q35_tokenizer_decode_ids(tok, ids, n, Q35_DECODE_SPECIAL, &back, &len, &err))
                    free(back);
            }
            free(ids);
        } else if (rc != 0 && (!err.msg[0] || strchr(err.msg, '\n'))) {
            abort(); /* a one-line message here too */
        }
        q35_tokenizer_free(tok);
        q35_gguf_close(g);
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        abort(); /* every failure has a one-line message */
    }
    q35_weights w;
    memset(&w, 0, sizeof w);
    q35_gguf_parse_weights(&w, data, size, "fuzz", &err);
    q35_weights_free(&w);
    (void)sink;
    return 0;
}
