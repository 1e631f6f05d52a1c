/* synth.h — a synthetic LLaMA-shaped model with random weights, written as
 * a self-contained GGUF (hyperparameters, a placeholder vocabulary, every
 * tensor), for tests and benchmarks that need a model of a given shape
 * without carrying one: bench/synth_model.c (the program) and
 * tests/cuda/test_cuda.c use it.
 *
 * Matrices are F32 or a Q3_5-family type, written directly in that type:
 * random codes (every bit pattern is a valid code), scale bytes in
 * [236, 252], a random set of n4 plus columns, and a base chosen so that
 * each weight has a standard deviation near 1 / sqrt(row length) (unit
 * activations stay near unit size through the layers). The embedding has
 * unit-size rows; norms are near 1. Deterministic for a given seed. */
#ifndef Q35_BENCH_SYNTH_H
#define Q35_BENCH_SYNTH_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "format/q35fmt.h"
#include "io/gguf.h"
#include "io/weights.h"
#include "text/tokenizer.h"

typedef struct q35_synth_shape {
    int dim, hidden, layers, heads, kv_heads, vocab, ctx;
} q35_synth_shape;

/* llama2-7b's shape. */
static const q35_synth_shape q35_synth_llama2_7b = {4096, 11008, 32, 32, 32, 32000, 4096};

static uint64_t q35_synth_mix(uint64_t x) { /* splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform in [-1, 1). */
static float q35_synth_unit(uint64_t *s) {
    *s = q35_synth_mix(*s);
    return (float)((double)(*s >> 11) / 4503599627370496.0 - 1.0);
}

/* Fills a tensor of m rows of n weights in type dtype with weights of
 * standard deviation sigma; returns the malloc'ed data or NULL. */
static void *q35_synth_tensor(int dtype, int64_t n, int64_t m, float sigma, uint64_t seed) {
    if (dtype == Q35_DTYPE_F32) {
        float *w = (float *)malloc((size_t)n * (size_t)m * sizeof *w);
        if (!w) return NULL;
        const float a = sigma * sqrtf(3.0f); /* uniform(-a, a) has std sigma */
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < m; r++) {
            uint64_t s = q35_synth_mix(seed ^ (uint64_t)r * 0x2545F4914F6CDD1Dull);
            for (int64_t c = 0; c < n; c++) w[r * n + c] = a * q35_synth_unit(&s);
        }
        return w;
    }
    q35_layout L;
    if (q35_layout_init(&L, dtype, n, m) != 0) return NULL;
    uint8_t *t = (uint8_t *)calloc(1, L.total_bytes);
    int32_t *cols = (int32_t *)malloc((size_t)n * sizeof *cols);
    if (!t || !cols) {
        free(t);
        free(cols);
        return NULL;
    }
    /* header: base, n4, a random set of n4 plus columns */
    const double levels = (pow(4.0, L.b) - 1.0) / 3.0; /* mean square of the odd levels */
    const float base = (float)(sigma / sqrt(0.4 * levels));
    const uint32_t n4 = (uint32_t)L.n4;
    memcpy(t, &base, 4);
    memcpy(t + 4, &n4, 4);
    uint64_t s = q35_synth_mix(seed);
    for (int64_t c = 0; c < n; c++) cols[c] = (int32_t)c;
    for (int64_t i = 0; i < L.n4; i++) { /* a partial Fisher-Yates shuffle */
        s = q35_synth_mix(s);
        const int64_t k = i + (int64_t)(s % (uint64_t)(n - i));
        const int32_t tmp = cols[i];
        cols[i] = cols[k];
        cols[k] = tmp;
        t[8 + cols[i] / 8] |= (uint8_t)(1u << (cols[i] % 8));
    }
    free(cols);
    uint8_t *rows = t + L.header_bytes;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < m; r++) {
        uint8_t *row = rows + (uint64_t)r * L.row_bytes;
        uint64_t x = q35_synth_mix(seed ^ (uint64_t)(r + 1) * 0x2545F4914F6CDD1Dull);
        uint64_t i = 0;
        for (; i + 8 <= L.row_bytes; i += 8) {
            x = q35_synth_mix(x);
            memcpy(row + i, &x, 8);
        }
        x = q35_synth_mix(x);
        for (; i < L.row_bytes; i++, x >>= 8) row[i] = (uint8_t)x;
        for (int64_t b = 0; b < L.n_blocks; b++) row[b] = (uint8_t)(236 + row[b] % 17);
    }
    return t;
}

/* Writes the model to path (GGUF, atomically). dtype: the matrices' type. */
static int q35_synth_write(const char *path, const q35_synth_shape *sh, int dtype, uint64_t seed,
                           q35_error *err) {
    q35_weights w;
    memset(&w, 0, sizeof w);
    q35_config *c = &w.cfg;
    c->dim = sh->dim;
    c->hidden_dim = sh->hidden;
    c->n_layers = sh->layers;
    c->n_heads = sh->heads;
    c->n_kv_heads = sh->kv_heads;
    c->vocab_size = sh->vocab;
    c->seq_len = sh->ctx;
    c->head_dim = sh->dim / sh->heads;
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    const int64_t d = sh->dim, h = sh->hidden, kv = (int64_t)sh->kv_heads * c->head_dim;
    int rc = Q35_OK, ti = 0;
    /* name, row length, rows, std; rows 1 = a norm (F32) */
    char name[64];
#define SYNTH_ADD(rowlen, nrows, sigma, ...)                                             \
    do {                                                                                 \
        snprintf(name, sizeof name, __VA_ARGS__);                                        \
        const int is_norm = (nrows) == 1;                                                \
        const int dt = is_norm ? Q35_DTYPE_F32 : dtype;                                  \
        void *data;                                                                      \
        if (is_norm) {                                                                   \
            float *v = (float *)malloc((size_t)(rowlen) * sizeof *v);                    \
            uint64_t s_ = q35_synth_mix(seed + 977u * (uint64_t)ti);                     \
            for (int64_t i_ = 0; v && i_ < (rowlen); i_++) v[i_] = 1.0f + 0.1f * q35_synth_unit(&s_); \
            data = v;                                                                    \
        } else {                                                                         \
            data = q35_synth_tensor(dt, (rowlen), (nrows), (sigma), seed + 7919u * (uint64_t)ti); \
        }                                                                                \
        const int64_t ne_[2] = {(rowlen), (nrows)};                                      \
        if (!data || q35_weights_own(&w, data) ||                                        \
            !q35_weights_add(&w, dt, is_norm ? 1 : 2, ne_, data, "%s", name)) {          \
            /* q35_weights_own frees data when it fails */                               \
            rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory for %s", path, name);   \
        }                                                                                \
        ti++;                                                                            \
    } while (0)
    SYNTH_ADD(d, sh->vocab, 1.0f, "token_embd.weight");
    if (!rc) SYNTH_ADD(d, 1, 0.0f, "output_norm.weight");
    if (!rc) SYNTH_ADD(d, sh->vocab, 1.0f / sqrtf((float)d), "output.weight");
    for (int l = 0; l < sh->layers && !rc; l++) {
        SYNTH_ADD(d, 1, 0.0f, "blk.%d.attn_norm.weight", l);
        if (!rc) SYNTH_ADD(d, d, 1.0f / sqrtf((float)d), "blk.%d.attn_q.weight", l);
        if (!rc) SYNTH_ADD(d, kv, 1.0f / sqrtf((float)d), "blk.%d.attn_k.weight", l);
        if (!rc) SYNTH_ADD(d, kv, 1.0f / sqrtf((float)d), "blk.%d.attn_v.weight", l);
        if (!rc) SYNTH_ADD(d, d, 1.0f / sqrtf((float)d), "blk.%d.attn_output.weight", l);
        if (!rc) SYNTH_ADD(d, 1, 0.0f, "blk.%d.ffn_norm.weight", l);
        if (!rc) SYNTH_ADD(d, h, 1.0f / sqrtf((float)d), "blk.%d.ffn_gate.weight", l);
        if (!rc) SYNTH_ADD(h, d, 1.0f / sqrtf((float)h), "blk.%d.ffn_down.weight", l);
        if (!rc) SYNTH_ADD(d, h, 1.0f / sqrtf((float)d), "blk.%d.ffn_up.weight", l);
    }
#undef SYNTH_ADD
    /* a placeholder vocabulary: <unk>, <s>, </s>, then t3, t4, ... */
    q35_tokenizer *tok = NULL;
    char **pieces = NULL;
    uint32_t *lens = NULL;
    float *scores = NULL;
    if (!rc) {
        pieces = (char **)calloc((size_t)sh->vocab, sizeof *pieces);
        lens = (uint32_t *)calloc((size_t)sh->vocab, sizeof *lens);
        scores = (float *)calloc((size_t)sh->vocab, sizeof *scores);
        if (!pieces || !lens || !scores) rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        for (int i = 0; i < sh->vocab && !rc; i++) {
            char buf[32];
            if (i < 3) snprintf(buf, sizeof buf, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
            else snprintf(buf, sizeof buf, "t%d", i);
            pieces[i] = strdup(buf);
            if (!pieces[i]) rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
            else lens[i] = (uint32_t)strlen(buf);
            scores[i] = -(float)i;
        }
        q35_tokenizer_opts opts = {1, 0};
        if (!rc)
            rc = q35_tokenizer_new(&tok, sh->vocab, (const char *const *)pieces, lens, scores, NULL,
                                   1, 2, 0, &opts, err);
    }
    if (!rc) rc = q35_gguf_save_model(path, &w, tok, -1, err);
    q35_tokenizer_free(tok);
    for (int i = 0; pieces && i < sh->vocab; i++) free(pieces[i]);
    free(pieces);
    free(lens);
    free(scores);
    q35_weights_free(&w);
    return rc;
}

#endif
