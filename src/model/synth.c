/* synth.c — synthetic models (synth.h, q35_synth_model in q35.h): named
 * shapes, a placeholder vocabulary, and tensors generated row by row while
 * the GGUF writer streams them to disk. */
#include "model/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "format/q35fmt.h"
#include "io/gguf.h"
#include "io/hf.h"
#include "tokenizer/tokenizer.h"

/* ---- shapes ------------------------------------------------------------ */

/* A real model's shape: its config.json numbers, and the members that
 * give its architecture's variants (read by the architecture itself). */
typedef struct named_shape {
    const char *name, *hf_arch;
    int dim, hidden, layers, heads, kv_heads, head_dim, vocab, ctx;
    float rope_theta;
    int tied;
    const char *extra;
} named_shape;

static const named_shape shapes[] = {
    {"tiny", "LlamaForCausalLM", 128, 352, 2, 4, 2, 32, 512, 256, 10000.0f, 0, ""},
    {"tinyllama-1.1b", "LlamaForCausalLM", 2048, 5632, 22, 32, 4, 64, 32000, 2048, 10000.0f, 0, ""},
    {"llama2-7b", "LlamaForCausalLM", 4096, 11008, 32, 32, 32, 128, 32000, 4096, 10000.0f, 0, ""},
    {"llama3-8b", "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128, 128256, 8192, 500000.0f, 0, ""},
    {"mistral-7b", "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128, 32000, 32768, 10000.0f, 0, ""},
    {"llama2-70b", "LlamaForCausalLM", 8192, 28672, 80, 64, 8, 128, 32000, 4096, 10000.0f, 0, ""},
    {"llama3.2-1b", "LlamaForCausalLM", 2048, 8192, 16, 32, 8, 64, 128256, 131072, 500000.0f, 1,
     "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":32.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
     "\"original_max_position_embeddings\":8192}"},
    {"qwen2.5-7b", "Qwen2ForCausalLM", 3584, 18944, 28, 28, 4, 128, 152064, 32768, 1000000.0f, 0, ""},
    {"qwen3-8b", "Qwen3ForCausalLM", 4096, 12288, 36, 32, 8, 128, 151936, 40960, 1000000.0f, 0, ""},
    {"gemma2-9b", "Gemma2ForCausalLM", 3584, 14336, 42, 16, 8, 256, 256000, 8192, 10000.0f, 1,
     "\"sliding_window\":4096,\"attn_logit_softcapping\":50.0,\"final_logit_softcapping\":30.0,"
     "\"query_pre_attn_scalar\":256"},
    {"gemma3-4b", "Gemma3ForCausalLM", 2560, 10240, 34, 8, 4, 256, 262208, 131072, 1000000.0f, 1,
     "\"sliding_window\":1024,\"rope_local_base_freq\":10000.0,\"query_pre_attn_scalar\":256,"
     "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8.0}"},
    {"phi3-mini", "Phi3ForCausalLM", 3072, 8192, 32, 32, 32, 96, 32064, 4096, 10000.0f, 0, "\"sliding_window\":2047"},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static const named_shape *find_shape(const char *name) {
    for (size_t i = 0; name && i < N_SHAPES; i++)
        if (strcmp(name, shapes[i].name) == 0) return &shapes[i];
    return NULL;
}

int q35_synth_shape(const char *name, q35_config *cfg) {
    const named_shape *s = find_shape(name);
    if (!s) return -1;
    memset(cfg, 0, sizeof *cfg);
    cfg->dim = s->dim;
    cfg->hidden_dim = s->hidden;
    cfg->n_layers = s->layers;
    cfg->n_heads = s->heads;
    cfg->n_kv_heads = s->kv_heads;
    cfg->vocab_size = s->vocab;
    cfg->seq_len = s->ctx;
    cfg->head_dim = s->head_dim;
    cfg->rms_eps = 1e-5f;
    cfg->rope_theta = s->rope_theta;
    cfg->shared_classifier = s->tied;
    return 0;
}

const char *q35_synth_shape_arch(const char *name) {
    const named_shape *s = find_shape(name);
    const q35_arch *a = s ? q35_arch_find(s->hf_arch, strlen(s->hf_arch), 1) : NULL;
    return a ? a->name : NULL;
}

const char *q35_synth_shape_names(void) {
    return "tiny, tinyllama-1.1b, llama2-7b, llama3-8b, mistral-7b, llama2-70b, llama3.2-1b, qwen2.5-7b, qwen3-8b, "
           "gemma2-9b, gemma3-4b, phi3-mini";
}

/* ---- one tensor, row by row --------------------------------------------- */

typedef struct synth_tensor {
    char name[64];
    int dtype;              /* F32, F16 or a family type */
    int norm;               /* 1: a norm vector (F32, weights near 1) */
    int64_t n, m;           /* row length, rows */
    float sigma;
    uint64_t seed;
    q35_layout L;           /* family types */
    uint64_t header_bytes;  /* family: the header before the rows; else 0 */
    uint64_t row_bytes;
    uint64_t total_bytes;
} synth_tensor;

/* Uniform in [-1, 1). */
static float unit(uint64_t *s) {
    *s = q35_synth_mix(*s);
    return (float)((double)(*s >> 11) / 4503599627370496.0 - 1.0);
}

static int tensor_init(synth_tensor *t, int dtype, int64_t n, int64_t m, float sigma, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->n = n;
    t->m = m;
    t->sigma = sigma;
    t->seed = seed;
    if (dtype == Q35_DTYPE_F32 || dtype == Q35_DTYPE_F16) {
        t->row_bytes = (uint64_t)n * (dtype == Q35_DTYPE_F32 ? 4u : 2u);
        t->total_bytes = t->row_bytes * (uint64_t)m;
        return 0;
    }
    if (!q35_is_family(dtype) || q35_layout_init(&t->L, dtype, n, m) != 0) return -1;
    t->header_bytes = t->L.header_bytes;
    t->row_bytes = t->L.row_bytes;
    t->total_bytes = t->L.total_bytes;
    return 0;
}

/* The family header: base, n4, and a random set of n4 plus columns. */
static int gen_header(const synth_tensor *t, uint8_t *hdr) {
    const q35_layout *L = &t->L;
    int32_t *cols = malloc((size_t)t->n * sizeof *cols);
    if (!cols) return -1;
    memset(hdr, 0, (size_t)L->header_bytes);
    const double levels = (pow(4.0, L->b) - 1.0) / 3.0; /* mean square of the odd levels */
    /* 0.4: the mean of 2^((s - 255) / 8) over the scale bytes s in [236, 252] */
    const float base = (float)(t->sigma / sqrt(0.4 * levels));
    const uint32_t n4 = (uint32_t)L->n4;
    memcpy(hdr, &base, 4);
    memcpy(hdr + 4, &n4, 4);
    uint64_t s = q35_synth_mix(t->seed);
    for (int64_t c = 0; c < t->n; c++) cols[c] = (int32_t)c;
    for (int64_t i = 0; i < L->n4; i++) { /* a partial Fisher-Yates shuffle */
        s = q35_synth_mix(s);
        const int64_t k = i + (int64_t)(s % (uint64_t)(t->n - i));
        const int32_t tmp = cols[i];
        cols[i] = cols[k];
        cols[k] = tmp;
        hdr[8 + cols[i] / 8] |= (uint8_t)(1u << (cols[i] % 8));
    }
    free(cols);
    return 0;
}

/* Row r's row_bytes bytes. */
static void gen_row(const synth_tensor *t, int64_t r, uint8_t *row) {
    uint64_t x = q35_synth_mix(t->seed ^ (uint64_t)(r + 1) * 0x2545F4914F6CDD1Dull);
    if (t->norm) { /* norms near 1, biases (norm 2) near 0 */
        for (int64_t c = 0; c < t->n; c++) {
            const float v = (t->norm == 1 ? 1.0f : 0.0f) + 0.1f * unit(&x);
            memcpy(row + 4 * c, &v, 4);
        }
    } else if (t->dtype == Q35_DTYPE_F32 || t->dtype == Q35_DTYPE_F16) {
        const float a = t->sigma * sqrtf(3.0f); /* uniform(-a, a) has std sigma */
        for (int64_t c = 0; c < t->n; c++) {
            const float v = a * unit(&x);
            if (t->dtype == Q35_DTYPE_F32) {
                memcpy(row + 4 * c, &v, 4);
            } else {
                const uint16_t h = q35_f32_to_f16(v);
                memcpy(row + 2 * c, &h, 2);
            }
        }
    } else {
        uint64_t i = 0;
        for (; i + 8 <= t->row_bytes; i += 8) {
            x = q35_synth_mix(x);
            memcpy(row + i, &x, 8);
        }
        x = q35_synth_mix(x);
        for (; i < t->row_bytes; i++, x >>= 8) row[i] = (uint8_t)x;
        for (int64_t b = 0; b < t->L.n_blocks; b++) row[b] = (uint8_t)(236 + row[b] % 17);
    }
}

/* The writer's fill callback: bytes [off, off + len) of the tensor. Rows
 * wholly inside are generated in place, in parallel; rows cut by the
 * chunk's ends through a scratch row. */
static int fill(void *user, void *buf, uint64_t off, uint64_t len, q35_error *err) {
    const synth_tensor *t = user;
    uint8_t *out = buf;
    const uint64_t end = off + len, hb = t->header_bytes;
    if (off < hb) {
        uint8_t *hdr = malloc((size_t)hb);
        if (!hdr || gen_header(t, hdr)) {
            free(hdr);
            return q35_fail(err, Q35_ERR_NOMEM, "synth: out of memory for %s", t->name);
        }
        const uint64_t e = end < hb ? end : hb;
        memcpy(out, hdr + off, (size_t)(e - off));
        free(hdr);
    }
    if (end <= hb) return Q35_OK;
    const uint64_t lo = off > hb ? off : hb;
    const int64_t r0 = (int64_t)((lo - hb) / t->row_bytes), r1 = (int64_t)((end - 1 - hb) / t->row_bytes);
    int oom = 0;
#pragma omp parallel reduction(| : oom)
    {
        uint8_t *scratch = NULL;
#pragma omp for schedule(static)
        for (int64_t r = r0; r <= r1; r++) {
            const uint64_t rs = hb + (uint64_t)r * t->row_bytes, re = rs + t->row_bytes;
            if (rs >= off && re <= end) {
                gen_row(t, r, out + (rs - off));
                continue;
            }
            if (!scratch && !(scratch = malloc((size_t)t->row_bytes))) {
                oom = 1;
                continue;
            }
            gen_row(t, r, scratch);
            const uint64_t a = rs > off ? rs : off, b = re < end ? re : end;
            memcpy(out + (a - off), scratch + (a - rs), (size_t)(b - a));
        }
        free(scratch);
    }
    return oom ? q35_fail(err, Q35_ERR_NOMEM, "synth: out of memory for %s", t->name) : Q35_OK;
}

int q35_synth_tensor_range(int dtype, int64_t n, int64_t m, float sigma, uint64_t seed, void *buf,
                           uint64_t off, uint64_t len) {
    synth_tensor t;
    if (tensor_init(&t, dtype, n, m, sigma, seed) || off > t.total_bytes || len > t.total_bytes - off)
        return -1;
    return len ? fill(&t, buf, off, len, NULL) : 0;
}

void *q35_synth_tensor(int dtype, int64_t n, int64_t m, float sigma, uint64_t seed) {
    synth_tensor t;
    if (tensor_init(&t, dtype, n, m, sigma, seed) || t.total_bytes > SIZE_MAX) return NULL;
    void *data = malloc((size_t)t.total_bytes ? (size_t)t.total_bytes : 1);
    if (data && fill(&t, data, 0, t.total_bytes, NULL)) {
        free(data);
        data = NULL;
    }
    return data;
}

/* ---- the vocabulary ------------------------------------------------------ */

/* SentencePiece-like: <unk>, <s>, </s>, the 256 byte pieces <0x00>..<0xFF>
 * (when the vocabulary has room), then placeholder pieces t259, t260, ... */
static int make_vocab(int n, q35_tokenizer **tok, q35_error *err) {
    char **pieces = calloc((size_t)n, sizeof *pieces);
    uint32_t *lens = calloc((size_t)n, sizeof *lens);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char *text = malloc((size_t)n * 16);
    int rc = pieces && lens && scores && types && text
        ? Q35_OK : q35_fail(err, Q35_ERR_NOMEM, "synth: out of memory for the vocabulary");
    const int bytes = n >= 3 + 256;
    for (int i = 0; i < n && !rc; i++) {
        char *p = text + (size_t)i * 16;
        if (i < 3) {
            snprintf(p, 16, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
            types[i] = i == 0 ? Q35_PIECE_UNKNOWN : Q35_PIECE_CONTROL;
        } else if (bytes && i < 3 + 256) {
            snprintf(p, 16, "<0x%02X>", i - 3);
            types[i] = Q35_PIECE_BYTE;
        } else {
            snprintf(p, 16, "t%d", i);
            types[i] = Q35_PIECE_NORMAL;
            scores[i] = -(float)i;
        }
        pieces[i] = p;
        lens[i] = (uint32_t)strlen(p);
    }
    q35_tokenizer_opts opts = {1, 0};
    if (!rc)
        rc = q35_tokenizer_new(tok, n, (const char *const *)pieces, lens, scores, types, 1, 2, 0, &opts,
                               err);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    free(text);
    return rc;
}

/* ---- the model ------------------------------------------------------------ */

/* config.json of a shape with the numbers of c. */
static void shape_config(const named_shape *sh, const q35_config *c, char *buf, size_t cap) {
    snprintf(buf, cap,
             "{\"architectures\":[\"%s\"],\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
             "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,\"vocab_size\":%d,"
             "\"max_position_embeddings\":%d,\"rms_norm_eps\":%g,\"rope_theta\":%g,\"tie_word_embeddings\":%s%s%s}",
             sh->hf_arch, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
             c->seq_len, (double)c->rms_eps, (double)c->rope_theta, c->shared_classifier ? "true" : "false",
             *sh->extra ? "," : "", sh->extra);
}

/* Tensors the configuration implies (llama3's rope_freqs, LongRoPE's
 * tables): kept until the file is written. */
typedef struct derived {
    q35_gguf_writer *wr;
    float *data[4];
    int n;
    q35_error *err;
} derived;

static int add_derived(void *user, const char *name, const float *x, int64_t n) {
    derived *d = user;
    if (d->n == 4 || !(d->data[d->n] = malloc((size_t)n * sizeof *x)))
        return q35_fail(d->err, Q35_ERR_NOMEM, "synth: out of memory");
    memcpy(d->data[d->n], x, (size_t)n * sizeof *x);
    return q35_gguf_writer_add_tensor(d->wr, name, Q35_DTYPE_F32, 1, &n, d->data[d->n++], d->err);
}

static int check_shape(const q35_config *c, q35_error *err) {
    if (c->dim < 8 || c->n_heads < 1 || c->head_dim < 2 || c->head_dim % 2 || c->n_kv_heads < 1 ||
        c->n_heads % c->n_kv_heads || c->hidden_dim < 1 || c->n_layers < 1 || c->vocab_size < 4 || c->seq_len < 1)
        return q35_fail(err, Q35_ERR_ARG,
                        "inconsistent shape (dim %d, hidden %d, %d layers, %d heads of %d, %d KV heads, "
                        "vocab %d, context %d): even head sizes, KV heads divide heads, vocab >= 4",
                        c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->head_dim, c->n_kv_heads, c->vocab_size,
                        c->seq_len);
    return Q35_OK;
}

int q35_synth_model_shape(const char *path, const char *shape, const q35_config *cfg, const char *type,
                          uint64_t seed, unsigned flags, uint64_t *file_bytes, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    const named_shape *sh = find_shape(shape ? shape : "tiny");
    if (!sh) return q35_fail(err, Q35_ERR_ARG, "shape %s: unknown (known: %s)", shape, q35_synth_shape_names());
    const int dtype = q35_dtype_by_name(type ? type : "");
    if (dtype != Q35_DTYPE_F32 && dtype != Q35_DTYPE_F16 && !q35_is_family(dtype))
        return q35_fail(err, Q35_ERR_ARG, "type %s: a synthetic model is F32, F16, Q2_5, Q3_5, Q4_5 or Q8_S",
                        type ? type : "(none)");
    if (!(flags & Q35_SYNTH_DRY_RUN) && (!path || !*path)) return q35_fail(err, Q35_ERR_ARG, "no output file given");
    q35_config c;
    q35_synth_shape(sh->name, &c);
    if (cfg) {
        const int kept_head = c.head_dim == c.dim / c.n_heads;
        const int tied = c.shared_classifier;
        c = *cfg;
        if (c.head_dim <= 0 || kept_head) c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
        if (c.rms_eps <= 0.0f) c.rms_eps = 1e-5f;
        if (c.rope_theta <= 0.0f) c.rope_theta = 10000.0f;
        c.shared_classifier = tied;
    }
    int rc = check_shape(&c, err);
    if (rc) return rc;
    char json[2048];
    shape_config(sh, &c, json, sizeof json);
    q35_gguf_writer *wr = NULL;
    derived dv = {NULL, {0}, 0, err};
    q35_hparams hp;
    rc = q35_gguf_writer_new(&wr, err);
    dv.wr = wr;
    if (!rc) rc = q35_hf_config_hparams(json, strlen(json), sh->name, &hp, add_derived, &dv, err);
    if (rc) {
        q35_gguf_writer_free(wr);
        return rc;
    }
    const int n_max = 3 + Q35_MAX_OPS * c.n_layers;
    synth_tensor *ts = calloc((size_t)n_max, sizeof *ts);
    q35_tokenizer *tok = NULL;
    if (!ts) rc = q35_fail(err, Q35_ERR_NOMEM, "synth: out of memory");
    if (!rc) rc = make_vocab(c.vocab_size, &tok, err);
    if (!rc) rc = q35_gguf_writer_set_hparams(wr, &hp, err);
    if (!rc) rc = q35_tokenizer_gguf_keys(tok, wr, err);
    if (!rc) rc = q35_gguf_writer_set_str(wr, "general.name", "q35 synthetic (random weights)", err);
    if (!rc) {
        q35_gguf_value v = {.type = Q35_GGUF_UINT64, .v.u = seed};
        rc = q35_gguf_writer_set(wr, "q35.synth.seed", &v, err);
    }
    /* the tensors the layer programs bind, in the order llama.cpp's convert script writes them */
    int k = 0;
    const uint64_t s0 = q35_synth_mix(seed ^ 0x5157A3C1u);
#define ADD(rowlen, nrows, kind, sig, ...)                                                    \
    do {                                                                                      \
        synth_tensor *t_ = &ts[k];                                                            \
        const int norm_ = (kind);                                                             \
        const uint64_t ts_ = q35_synth_mix(s0 + 0x9E37u * (uint64_t)(k + 1));                 \
        /* a per-tensor factor in [0.7, 1.3) on the shape's sigma */                          \
        const float f_ = 1.0f + 0.3f * (float)((double)(ts_ >> 11) / 4503599627370496.0 * 2.0 - 1.0); \
        if (tensor_init(t_, norm_ ? Q35_DTYPE_F32 : dtype, (rowlen), norm_ ? 1 : (nrows),     \
                        (sig) * f_, ts_)) {                                                   \
            rc = q35_fail(err, Q35_ERR_ARG, "synth: a tensor of shape %lld x %lld does not fit %s", \
                          (long long)(rowlen), (long long)(nrows), type);                     \
            break;                                                                            \
        }                                                                                     \
        t_->norm = norm_;                                                                     \
        snprintf(t_->name, sizeof t_->name, __VA_ARGS__);                                     \
        const int64_t ne_[2] = {(rowlen), norm_ ? 1 : (nrows)};                               \
        rc = q35_gguf_writer_add_tensor_fill(wr, t_->name, t_->dtype, norm_ ? 1 : 2, ne_, fill, t_, err); \
        k++;                                                                                  \
    } while (0)
    const int64_t d = c.dim;
    if (!rc) ADD(d, c.vocab_size, 0, 1.0f, "token_embd.weight");
    for (int l = 0; l < c.n_layers && !rc; l++) {
        q35_prog p = {0};
        hp.arch->layer(&hp, l, &p);
        for (int i = 0; i < p.n && !rc; i++) {
            const q35_op *op = &p.op[i];
            const int64_t ws = q35_buf_width(&hp, op->src);
            if (op->kind == Q35_OP_NORM) ADD(ws, 0, 1, 0.0f, "blk.%d.%s.weight", l, op->name);
            else if (op->kind == Q35_OP_HEAD_NORM) ADD(c.head_dim, 0, 1, 0.0f, "blk.%d.%s.weight", l, op->name);
            if (op->kind != Q35_OP_MATMUL || op->part > 0) continue;
            int64_t rows = 0;
            for (int q = 0; q < op->n_parts; q++) rows += q35_op_rows(&hp, &p.op[i + q], NULL);
            ADD(ws, rows, 0, 1.0f / sqrtf((float)ws), "blk.%d.%s.weight", l, op->name);
            if (!rc && op->bias) ADD(rows, 0, 2, 0.0f, "blk.%d.%s.bias", l, op->name);
        }
    }
    if (!rc) ADD(d, 0, 1, 0.0f, "output_norm.weight");
    if (!rc && !hp.c.shared_classifier) ADD(d, c.vocab_size, 0, 1.0f / sqrtf((float)d), "output.weight");
#undef ADD
    uint64_t size = 0;
    if (!rc) rc = q35_gguf_writer_size(wr, &size, err);
    if (!rc && file_bytes) *file_bytes = size;
    if (!rc && !(flags & Q35_SYNTH_DRY_RUN)) rc = q35_gguf_writer_write(wr, path, err);
    q35_gguf_writer_free(wr);
    for (int i = 0; i < dv.n; i++) free(dv.data[i]);
    q35_tokenizer_free(tok);
    free(ts);
    return rc;
}

int q35_synth_model(const char *path, const q35_config *shape, const char *type, uint64_t seed,
                    unsigned flags, uint64_t *file_bytes, q35_error *err) {
    if (!shape) return q35_fail(err, Q35_ERR_ARG, "no shape given");
    q35_config c = *shape;
    c.shared_classifier = 0;
    c.head_dim = 0; /* dim / heads */
    return q35_synth_model_shape(path, "tiny", &c, type, seed, flags, file_bytes, err);
}
