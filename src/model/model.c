/* model.c — loading: pick the reader from the file's first bytes, resolve
 * the tensor map into per-layer pointers (checking every shape against the
 * hyperparameters), load the tokenizer. */
#include "model/model.h"

#include <dirent.h>
#include <omp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/meminfo.h"
#include "format/dtype.h"
#include "format/q35quant.h"
#include "format/q35r16.h"
#include "io/gguf.h"
#include "io/hf.h"
#include "io/llama2c.h"
#include "kernels/kernels.h"

/* Finds name and checks its shape is (ne0, ne1). */
static const q35_tensor *need(const q35_model *m, const char *path, const char *name,
                              int64_t ne0, int64_t ne1, q35_error *err) {
    const q35_tensor *t = q35_weights_find(&m->weights, name);
    if (!t) {
        q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s is missing", path, name);
        return NULL;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        q35_fail(err, Q35_ERR_FORMAT,
                 "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                 path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                 (long long)t->ne[3], (long long)ne0, (long long)ne1);
        return NULL;
    }
    return t;
}

/* Fills mat for tensor t: fp32 rows are used as they are; Q3_5-family
 * rows get their header checked and their column order and scale table
 * prepared. */
static int make_matrix(q35_model *m, const q35_tensor *t, q35_matrix *mat, const char *path,
                       q35_error *err) {
    memset(mat, 0, sizeof *mat);
    mat->t = t;
    mat->slot = (int)(t - m->weights.tensors);
    mat->dtype = t->dtype;
    if (t->dtype == Q35_DTYPE_F32) {
        mat->f32 = t->data;
        return Q35_OK;
    }
    if (!q35_is_family(t->dtype)) {
        if (!m->runnable) return Q35_OK; /* inspected, never run: any stored type will do */
        const q35_dtype_info *di = q35_dtype_get(t->dtype);
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which q35 cannot run",
                        path, t->name, di ? di->name : "unknown");
    }
    q35_layout *L = &mat->L;
    const char *why = NULL;
    if (q35_layout_init(L, t->dtype, t->ne[0], t->ne[1]) != 0 || L->total_bytes != t->nbytes)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s: size does not match its %s layout", path,
                        t->name, q35_family_name(t->dtype));
    const uint8_t *data = t->data;
    if (q35_header_check(L, data, &why) != 0)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s: %s", path, t->name, why);
    float base;
    memcpy(&base, data, 4);
    q35_scale_table(base, mat->table);
    mat->perm = malloc((size_t)L->np * sizeof *mat->perm);
    if (!mat->perm) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    q35_header_perm(L, data, mat->perm);
    mat->rows = data + L->header_bytes;
    if (L->np > m->max_np) m->max_np = L->np;
    return Q35_OK;
}

/* The seven matrices of a layer. */
#define LAYER_MATRICES 7
static void layer_matrices(q35_layer *ly, q35_matrix *mats[LAYER_MATRICES]) {
    q35_matrix *const all[LAYER_MATRICES] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_down, &ly->w_up};
    memcpy(mats, all, sizeof all);
}

static void free_matrix(q35_matrix *mat) {
    free(mat->perm);
    mat->perm = NULL;
    free(mat->r16);
    mat->r16 = NULL;
}

static int resolve(q35_model *m, const char *path, q35_error *err) {
    const q35_config *c = &m->cfg;
    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim,
            kv = (int64_t)c->n_kv_heads * c->head_dim, h = c->hidden_dim;
    const q35_tensor *t;
    if (!(t = need(m, path, "token_embd.weight", d, c->vocab_size, err)) ||
        make_matrix(m, t, &m->token_embd, path, err))
        return err->code;
    if (!(t = need(m, path, "output_norm.weight", d, 1, err))) return err->code;
    m->output_norm = t->data;
    if (q35_weights_find(&m->weights, "output.weight")) {
        if (!(t = need(m, path, "output.weight", d, c->vocab_size, err)) ||
            make_matrix(m, t, &m->output, path, err))
            return err->code;
    } else if (make_matrix(m, m->token_embd.t, &m->output, path, err)) {
        return err->code;
    }
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    for (int l = 0; l < c->n_layers; l++) {
        q35_layer *ly = &m->layers[l];
        char name[64];
#define NEED(field, nm, ne0, ne1)                                              \
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, nm);                \
        if (!(t = need(m, path, name, ne0, ne1, err)) ||                        \
            make_matrix(m, t, &ly->field, path, err))                           \
            return err->code;
        NEED(wq, "attn_q", d, q)
        NEED(wk, "attn_k", d, kv)
        NEED(wv, "attn_v", d, kv)
        NEED(wo, "attn_output", q, d)
        NEED(w_gate, "ffn_gate", d, h)
        NEED(w_down, "ffn_down", h, d)
        NEED(w_up, "ffn_up", d, h)
#undef NEED
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if (!(t = need(m, path, name, d, 1, err))) return err->code;
        ly->attn_norm = t->data;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if (!(t = need(m, path, name, d, 1, err))) return err->code;
        ly->ffn_norm = t->data;
    }
    return Q35_OK;
}

/* llama2.c's convention: tok<vocab_size>.bin beside the model, else
 * tokenizer.bin beside it. */
static int find_tokenizer(const char *model_path, int vocab, char *out, size_t cap) {
    struct stat st;
    const char *slash = strrchr(model_path, '/');
    int dir_len = slash ? (int)(slash - model_path + 1) : 0;
    char dir[4096];
    if (stat(model_path, &st) == 0 && S_ISDIR(st.st_mode)) /* a model folder: inside it */
        snprintf(dir, sizeof dir, "%s/", model_path);
    else
        snprintf(dir, sizeof dir, "%.*s", dir_len, model_path);
    int len = snprintf(out, cap, "%stok%d.bin", dir, vocab);
    if (len < 0 || (size_t)len >= cap) return -1;
    FILE *f = fopen(out, "rb");
    if (!f) {
        len = snprintf(out, cap, "%stokenizer.bin", dir);
        if (len < 0 || (size_t)len >= cap) return -1;
        f = fopen(out, "rb");
    }
    if (f) fclose(f);
    return f ? 0 : -1;
}

/* Picks the reader: a folder or a .safetensors file is a Hugging Face
 * checkpoint, a file starting with "GGUF" is GGUF, anything else is tried
 * as a llama2.c checkpoint (whose legacy header has no magic). */
static int read_weights(q35_weights *w, const char *path, q35_error *err) {
    struct stat st;
    size_t len = strlen(path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return q35_hf_load_weights(w, path, err);
    if (len >= 12 && strcmp(path + len - 12, ".safetensors") == 0)
        return q35_hf_load_weights(w, path, err);
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t got = fread(magic, 1, 4, f);
        fclose(f);
        if (got == 4 && memcmp(magic, "GGUF", 4) == 0) return q35_gguf_load_weights(w, path, err);
    }
    return q35_llama2c_load(w, path, err);
}

/* ---- the types tensors run in ----------------------------------------------
 * The forward pass runs fp32 and the Q3_5 family. A matrix stored in
 * another type is converted once, here, into a buffer the model owns: into
 * params.convert_type where it names one (a family type, or F32), else into
 * Q8_S when it is block-quantized (Q8_0, Q4_0, the K-quants, IQ4, ...: a
 * 7B model at 8.25 bits instead of 32) and into F32 when it is a float type
 * (F16, BF16: the reference figures were computed so). Vectors (norms)
 * expand to F32. Conversion into Q8_S takes each block's fitting scale
 * (q35_quantize_tensor_fast); into the other family types it searches the
 * scales as `q35 quantize` does, so the matrices equal its file's. */

/* A matrix, as opposed to a vector: 2-D with more than one row. */
static int is_matrix(const q35_tensor *t) { return t->n_dims == 2 && t->ne[1] > 1; }

static int run_type(const q35_model *m, const q35_tensor *t) {
    if (t->dtype == Q35_DTYPE_F32 || q35_is_family(t->dtype)) return t->dtype;
    if (!is_matrix(t)) return Q35_DTYPE_F32;
    if (m->convert_dtype >= 0) return m->convert_dtype;
    const q35_dtype_info *di = q35_dtype_get(t->dtype);
    return di && di->block_elems > 1 ? Q35_TYPE_Q8_S : Q35_DTYPE_F32;
}

static int mapped(const q35_weights *w, const void *p);

/* t's weights as fp32 into x, rows spread over the threads. */
static void expand_rows(const q35_dtype_info *di, const q35_tensor *t, float *x) {
    const int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const uint64_t row_bytes = (uint64_t)(ne0 / di->block_elems) * (uint64_t)di->block_bytes;
    const uint8_t *src = t->data;
#pragma omp parallel for schedule(static) if (rows * ne0 >= (1 << 16))
    for (int64_t r = 0; r < rows; r++) di->to_f32(src + (uint64_t)r * row_bytes, x + r * ne0, ne0);
}

/* Converts tensor t (stored in a type q35 reads) into type `to`. Into a
 * family type it is expanded into scratch when it fits (cap floats: the
 * layers' matrices; faulting in a fresh buffer per tensor cost a quarter
 * of the conversion), else into a buffer of its own. */
static int convert_tensor(q35_model *m, q35_tensor *t, int to, float *scratch, uint64_t cap, const char *path,
                          q35_error *err) {
    q35_weights *w = &m->weights;
    const q35_dtype_info *di = q35_dtype_get(t->dtype);
    if (!di || !di->to_f32)
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which q35 cannot read", path,
                        t->name, di ? di->name : "unknown");
    const uint64_t n = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    const int own = to == Q35_DTYPE_F32 || n > cap;
    float *x = own ? malloc(n * sizeof *x) : scratch;
    if (!x) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory expanding %s", path, t->name);
    expand_rows(di, t, x);
    if (mapped(w, t->data)) q35_mapfile_release(t->data, t->nbytes); /* read once: give the pages back */
    if (q35_is_family(to) || di->block_elems > 1) { /* what the caller is told about */
        m->n_converted++;
        if (t->dtype < 64) m->converted_from |= 1ull << t->dtype;
        m->converted_to = to;
    }
    if (to == Q35_DTYPE_F32) {
        if (q35_weights_own(w, x)) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory expanding %s", path, t->name);
        t->data = x;
        t->dtype = Q35_DTYPE_F32;
        t->nbytes = n * sizeof *x;
        return Q35_OK;
    }
    q35_layout L;
    uint8_t *q = NULL;
    int rc = q35_layout_init(&L, to, t->ne[0], t->ne[1]) ? -1 : !(q = malloc(L.total_bytes)) ? -1 : 0;
    const int threads = omp_get_max_threads();
    if (!rc) rc = to == Q35_TYPE_Q8_S ? q35_quantize_tensor_fast(&L, x, threads, q)
                                      : q35_quantize_tensor(&L, x, NULL, threads, q, NULL);
    if (own) free(x);
    if (rc) {
        free(q);
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory converting %s to %s", path, t->name,
                        q35_family_name(to));
    }
    m->converted[t - w->tensors] = q; /* the model's until repacked (pack_matrix) */
    t->data = q;
    t->dtype = to;
    t->nbytes = L.total_bytes;
    return Q35_OK;
}

static int convert_weights(q35_model *m, const char *path, q35_error *err) {
    if (!(m->converted = calloc((size_t)m->weights.n_tensors + 1, sizeof *m->converted)))
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    uint64_t cap = 0; /* the largest layer matrix converted into the family */
    for (int i = 0; i < m->weights.n_tensors; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        const uint64_t n = (uint64_t)t->ne[0] * (uint64_t)t->ne[1];
        if (q35_is_family(run_type(m, t)) && !q35_is_family(t->dtype) && !strncmp(t->name, "blk.", 4) && n > cap)
            cap = n;
    }
    float *scratch = cap ? malloc(cap * sizeof *scratch) : NULL;
    if (!scratch) cap = 0;
    int rc = Q35_OK;
    for (int i = 0; i < m->weights.n_tensors && !rc; i++) {
        q35_tensor *t = &m->weights.tensors[i];
        const int to = run_type(m, t);
        if (to != t->dtype) rc = convert_tensor(m, t, to, scratch, cap, path, err);
    }
    free(scratch);
    return rc;
}

/* ---- will it fit? ----------------------------------------------------------
 * Before a model is loaded to run, q35 compares what the run must hold in
 * memory with what the machine has (q35_mem_available: MemAvailable, or
 * the room under a cgroup limit), so that a model too large fails with one
 * line instead of an out-of-memory kill. Counted: every weight as it will
 * be held (tensors run in place: their bytes in the file, mapped; tensors
 * expanded to fp32 at load: 4 bytes a weight; tensors converted into the
 * family at load: their size in it), one session's KV cache for
 * the whole context (fp16 for a model with Q3_5-family matrices, fp32
 * otherwise: the session's default) and its scratch (a 64-token prompt
 * batch). Mapped file pages are page
 * cache, which the kernel reclaims rather than kill for; they are counted
 * all the same, because decoding reads every weight for every token, and
 * weights that do not fit in memory are read from disk again for each.
 * Swap is not counted. Q35_MEM_AVAILABLE=SIZE replaces the measurement,
 * Q35_MEM_AVAILABLE=off skips the check. It runs twice: on the file's
 * size before anything is read, then exactly once the header is parsed
 * (mapping costs no memory) and before anything is expanded. */

/* "31.2 GiB", or "412.0 MiB" below a GiB, into buf. */
static const char *human(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.1f GiB", (double)b / 1073741824.0);
    else snprintf(buf, cap, "%.1f MiB", (double)b / 1048576.0);
    return buf;
}

/* The bytes of a model file, or of a folder's .safetensors files. */
static uint64_t file_bytes(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    if (!S_ISDIR(st.st_mode)) return (uint64_t)st.st_size;
    uint64_t total = 0;
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        const size_t n = strlen(e->d_name);
        char sub[4096];
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") != 0) continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub && stat(sub, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    if (d) closedir(d);
    return total;
}

static int mem_check(const q35_model *m, const char *path, uint64_t need, const char *what, uint64_t held,
                     q35_error *err) {
    uint64_t avail;
    const char *source = "";
    if (q35_mem_available(m->params.mem_available, &avail, &source) || need <= held || need - held <= avail)
        return Q35_OK;
    char a[32], b[32];
    return q35_fail(err, Q35_ERR_NOMEM, "%s: model needs %s of memory (%s), %s available (%s)", path,
                    human(need, a, sizeof a), what, human(avail + held, b, sizeof b), source);
}

/* Is p inside one of w's mappings? */
static int mapped(const q35_weights *w, const void *p) {
    const uint8_t *b = p;
    if (w->file.data && b >= w->file.data && b < w->file.data + w->file.size) return 1;
    for (int i = 0; i < w->n_extra_files; i++) {
        const q35_mapfile *f = &w->extra_files[i];
        if (f->data && b >= f->data && b < f->data + f->size) return 1;
    }
    return 0;
}

/* The exact check, on weights read but not yet converted: each tensor as
 * it will run (run_type), plus the fp32 buffers of the conversion
 * (convert_weights: the largest tensor's and the layers' scratch; more
 * than a matrix's R16 copy while it is packed). A tied
 * embedding's R16 copy as the classifier is not counted (nor is it for
 * files). */
static int mem_check_weights(const q35_model *m, const char *path, q35_error *err) {
    const q35_weights *w = &m->weights;
    const q35_config *c = &w->cfg;
    uint64_t weights = 0, held = 0, perm = 0, family = 0, converting = 0, scratch_layer = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const q35_tensor *t = &w->tensors[i];
        const uint64_t n = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        const int to = run_type(m, t);
        q35_layout L;
        if (to == t->dtype) {
            weights += t->nbytes;
            if (!mapped(w, t->data)) held += t->nbytes; /* allocated by the reader already */
        } else if (to == Q35_DTYPE_F32) {
            weights += 4 * n;
        } else if (q35_layout_init(&L, to, t->ne[0], t->ne[1]) == 0) {
            weights += L.total_bytes; /* repacked into R16, the rows are dropped */
            if (4 * n > converting) converting = 4 * n;
            if (!strncmp(t->name, "blk.", 4) && 4 * n > scratch_layer) scratch_layer = 4 * n;
        }
        if (q35_is_family(to)) perm += ((uint64_t)t->ne[0] + 8) * 4, family = 1;
    }
    weights += converting + scratch_layer; /* convert_weights's buffers */
    /* the session's default KV cache: fp16 for a model with Q3_5-family
     * matrices, fp32 for one that runs all in fp32 */
    const uint64_t kv = 2ull * (family ? 2 : 4) * (uint64_t)c->n_layers * (uint64_t)c->seq_len * (uint64_t)c->n_kv_heads *
                        (uint64_t)c->head_dim;
    const uint64_t q_dim = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    /* activations of a prompt batch (128 tokens, Q35_DEFAULT_BATCH), attention scores, logits,
     * quantized inputs, column orders */
    const uint64_t per_token = 4 * (4 * (uint64_t)c->dim + 3 * (uint64_t)c->hidden_dim + 3 * q_dim +
                                    (uint64_t)c->n_heads * (uint64_t)c->seq_len);
    const uint64_t scratch = perm + 128 * per_token + 4 * (uint64_t)c->vocab_size +
                             3 * 10 * ((uint64_t)c->hidden_dim + (uint64_t)c->dim + 8);
    char what[160], a[32], b[32];
    snprintf(what, sizeof what, "weights %s + KV cache %s + scratch", human(weights, a, sizeof a),
             human(kv, b, sizeof b));
    return mem_check(m, path, weights + kv + scratch, what, held, err);
}

/* mat's rows in R16 order, packed by all threads; the rows' pages of a
 * file mapping are then given back, so the weights stay in memory once. */
static int pack_matrix(q35_model *m, q35_matrix *mat, const char *path, q35_error *err) {
    const q35_layout *L = &mat->L;
    const uint64_t bytes = q35_r16_bytes(L);
    mat->r16 = aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
    if (!mat->r16)
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory repacking %s", path, mat->t->name);
    const int64_t tiles = (L->m + Q35_R16_ROWS - 1) / Q35_R16_ROWS;
#pragma omp parallel
    {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        q35_r16_pack(L, mat->rows, tiles * t / T, tiles * (t + 1) / T, mat->r16);
    }
    if (mapped(&m->weights, mat->rows)) q35_mapfile_release(mat->rows, (uint64_t)L->m * L->row_bytes);
    /* rows converted at load are dropped, so the weights are held once; the
     * embedding (read by rows) keeps its own */
    uint8_t **conv = m->converted ? &m->converted[mat->slot] : NULL;
    if (conv && *conv && mat->t != m->token_embd.t) {
        free(*conv);
        *conv = NULL;
        mat->rows = NULL;
        m->weights.tensors[mat->slot].data = NULL;
        m->rows_dropped = 1;
    }
    return Q35_OK;
}

/* Repacks the Q3_5-family matrices (not the embedding, which is read by
 * rows; a tied classifier is repacked as the output) when the kernels a
 * session will pick run R16 (AVX-512 with GFNI); Q35_R16=0 keeps the rows. */
static int pack_r16(q35_model *m, const char *path, q35_error *err) {
    q35_kernels k;
    if (!m->params.r16 || q35_kernels_select(&k, m->params.kernels) != 0 || !k.r16_pack) return Q35_OK;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        q35_matrix *mats[LAYER_MATRICES];
        layer_matrices(&m->layers[l], mats);
        for (int i = 0; i < LAYER_MATRICES; i++)
            if (q35_is_family(mats[i]->dtype)) {
                int rc = pack_matrix(m, mats[i], path, err);
                if (rc) return rc;
            }
    }
    if (q35_is_family(m->output.dtype)) return pack_matrix(m, &m->output, path, err);
    return Q35_OK;
}

q35_model_params q35_model_default_params(void) {
    return (q35_model_params){.tokenizer_path = NULL, .flags = 0, .kernels = NULL, .r16 = 1,
                              .mem_available = 0, .convert_type = NULL};
}

int q35_model_load(q35_model **out, const char *model_path, const char *tokenizer_path,
                   q35_error *err) {
    return q35_model_open(out, model_path, tokenizer_path, 0, err);
}

int q35_model_open(q35_model **out, const char *model_path, const char *tokenizer_path,
                   unsigned flags, q35_error *err) {
    q35_model_params p = q35_model_default_params();
    p.tokenizer_path = tokenizer_path;
    p.flags = flags;
    return q35_model_load_params(out, model_path, &p, err);
}

q35_model_params q35_model_get_params(const q35_model *m) { return m->params; }

q35_conversion q35_model_conversion(const q35_model *m) {
    q35_conversion c = {m->n_converted, m->converted_names, ""};
    if (m->n_converted) c.to = q35_dtype_get(m->converted_to)->name;
    return c;
}

int q35_model_load_params(q35_model **out, const char *model_path, const q35_model_params *p,
                          q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    *out = NULL;
    const q35_model_params dflt = q35_model_default_params();
    if (!p) p = &dflt;
    const char *tokenizer_path = p->tokenizer_path;
    const int inspect = (p->flags & Q35_OPEN_INSPECT) != 0;
    if (!model_path || !*model_path)
        return q35_fail(err, Q35_ERR_ARG, "no model file given");
    q35_kernels probe;
    if (q35_kernels_select(&probe, p->kernels) != 0)
        return q35_fail(err, Q35_ERR_ARG, "kernel set '%s': this CPU has no such kernel set", p->kernels);
    const int convert = p->convert_type ? q35_dtype_by_name(p->convert_type) : -1;
    if (p->convert_type && convert != Q35_DTYPE_F32 && !q35_is_family(convert))
        return q35_fail(err, Q35_ERR_ARG, "convert type '%s': choose Q2_5, Q3_5, Q4_5, Q8_S or F32",
                        p->convert_type);
    q35_model *m = calloc(1, sizeof *m);
    if (!m) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", model_path);
    m->params = *p;
    m->params.tokenizer_path = NULL;
    snprintf(m->kernels_name, sizeof m->kernels_name, "%s", p->kernels ? p->kernels : "");
    m->params.kernels = m->kernels_name;
    m->convert_dtype = convert;
    if (convert >= 0) {
        snprintf(m->convert_name, sizeof m->convert_name, "%s", q35_dtype_get(convert)->name);
        m->params.convert_type = m->convert_name;
    }
    if (!inspect) { /* at least the file must fit */
        int rc = mem_check(m, model_path, file_bytes(model_path), "its file alone", 0, err);
        if (rc) {
            free(m);
            return rc;
        }
    }
    int rc = read_weights(&m->weights, model_path, err);
    if (rc == Q35_OK) {
        m->cfg = m->weights.cfg;
        m->runnable = !inspect;
        if (!inspect) rc = mem_check_weights(m, model_path, err);
        if (!inspect && !rc) rc = convert_weights(m, model_path, err);
        for (int id = 0, n = 0; id < 64; id++) /* the stored types converted, "Q4_K/Q6_K" */
            if (m->converted_from >> id & 1)
                n += snprintf(m->converted_names + n, sizeof m->converted_names - (size_t)n, "%s%s", n ? "/" : "",
                              q35_dtype_get(id)->name);
    }
    if (rc == Q35_OK) rc = resolve(m, model_path, err);
    if (rc == Q35_OK && !inspect) rc = pack_r16(m, model_path, err);
    if (rc == Q35_OK) {
        char found[4096];
        if (tokenizer_path) {
            rc = q35_tokenizer_load_llama2c(&m->tokenizer, tokenizer_path, m->cfg.vocab_size, err);
        } else if (m->weights.tokenizer) { /* the file's own */
            m->tokenizer = m->weights.tokenizer;
            m->weights.tokenizer = NULL;
            if (q35_tokenizer_n_vocab(m->tokenizer) != m->cfg.vocab_size)
                rc = q35_fail(err, Q35_ERR_FORMAT, "%s: the tokenizer has %d pieces, the model %d",
                              model_path, q35_tokenizer_n_vocab(m->tokenizer), m->cfg.vocab_size);
        } else if (find_tokenizer(model_path, m->cfg.vocab_size, found, sizeof found) != 0) {
            if (!inspect)
                rc = q35_fail(err, Q35_ERR_IO,
                          "%s: no tokenizer given and neither tok%d.bin nor tokenizer.bin "
                          "lies beside it (use --tokenizer FILE)",
                          model_path, m->cfg.vocab_size);
        } else {
            rc = q35_tokenizer_load_llama2c(&m->tokenizer, found, m->cfg.vocab_size, err);
        }
    }
    if (rc != Q35_OK) {
        q35_model_free(m);
        return rc;
    }
    *out = m;
    return Q35_OK;
}

void q35_model_free(q35_model *m) {
    if (!m) return;
    q35_tokenizer_free(m->tokenizer);
    free_matrix(&m->token_embd);
    free_matrix(&m->output);
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++) {
        q35_matrix *mats[LAYER_MATRICES];
        layer_matrices(&m->layers[l], mats);
        for (int i = 0; i < LAYER_MATRICES; i++) free_matrix(mats[i]);
    }
    free(m->layers);
    for (int i = 0; m->converted && i < m->weights.n_tensors; i++) free(m->converted[i]);
    free(m->converted);
    q35_weights_free(&m->weights);
    free(m);
}

const q35_config *q35_model_config(const q35_model *m) { return &m->cfg; }

uint64_t q35_model_weight_bytes(const q35_model *m) {
    /* every matrix once, plus one embedding row; the norms are noise */
    uint64_t b = 0;
    for (int i = 0; i < m->weights.n_tensors; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        if (t == m->token_embd.t && m->output.t != m->token_embd.t)
            b += t->nbytes / (uint64_t)m->cfg.vocab_size;
        else
            b += t->nbytes;
    }
    return b;
}

const char *q35_model_format(const q35_model *m) { return m->weights.format; }

int q35_model_n_tensors(const q35_model *m) { return m->weights.n_tensors; }

int q35_model_tensor(const q35_model *m, int i, q35_tensor_desc *d) {
    if (i < 0 || i >= m->weights.n_tensors) return -1;
    const q35_tensor *t = &m->weights.tensors[i];
    const q35_dtype_info *di = q35_dtype_get(t->stored_dtype);
    d->name = t->name;
    d->type = di ? di->name : "?";
    d->readable = di && (di->to_f32 || q35_is_family(t->stored_dtype));
    d->n_dims = t->n_dims;
    memcpy(d->ne, t->ne, sizeof d->ne);
    d->nbytes = t->stored_nbytes;
    return 0;
}

int q35_model_save_gguf(const q35_model *m, const char *path, const char *type, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    int dtype = q35_dtype_by_name(type ? type : "");
    if (dtype != Q35_DTYPE_F32 && dtype != Q35_DTYPE_F16)
        return q35_fail(err, Q35_ERR_ARG, "--type %s: q35 convert writes F32 or F16",
                        type ? type : "(none)");
    if (!m->tokenizer)
        return q35_fail(err, Q35_ERR_ARG, "%s: the model has no tokenizer to write",
                        m->weights.format);
    return q35_gguf_save_model(path, &m->weights, m->tokenizer, dtype, err);
}

uint64_t q35_model_n_params(const q35_model *m) {
    uint64_t n = 0;
    for (int i = 0; i < m->weights.n_tensors; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        n += (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    }
    return n;
}

int q35_token_bos(const q35_model *m) { return q35_tokenizer_bos(m->tokenizer); }
int q35_token_eos(const q35_model *m) { return q35_tokenizer_eos(m->tokenizer); }

int q35_tokenize(const q35_model *m, const char *text, size_t len, int add_bos, int **ids,
                 int *n_ids, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    return q35_tokenizer_encode(m->tokenizer, text, len, add_bos, ids, n_ids, err);
}

size_t q35_detokenize(const q35_model *m, int prev, int token, char *buf, size_t cap) {
    return q35_tokenizer_decode(m->tokenizer, prev, token, buf, cap);
}
