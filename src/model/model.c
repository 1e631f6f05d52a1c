/* model.c — loading: pick the reader from the file's first bytes, resolve
 * the tensor map into per-layer pointers (checking every shape against the
 * hyperparameters), load the tokenizer. */
#include "model/model.h"

#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/meminfo.h"
#include "format/dtype.h"
#include "format/q35quant.h"
#include "format/q35r16.h"
#include "io/gguf.h"
#include "io/hf.h"
#include "io/llama2c.h"
#include "kernels/kernels.h"
#include "model/session.h"

/* Finds name and checks its shape is (ne0, ne1); optional: NULL without
 * an error when absent. */
static const q35_tensor *find_shaped(const q35_model *m, const char *path, const char *name, int64_t ne0,
                                     int64_t ne1, int optional, q35_error *err) {
    const q35_tensor *t = q35_weights_find(&m->weights, name);
    if (!t) {
        if (!optional) q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s is missing", path, name);
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

static const q35_tensor *need(const q35_model *m, const char *path, const char *name, int64_t ne0, int64_t ne1,
                              q35_error *err) {
    return find_shaped(m, path, name, ne0, ne1, 0, err);
}

/* A vector tensor that must be F32 (norms, biases, RoPE factors). */
static int need_vec(const q35_model *m, const char *path, const char *name, int64_t n, const float **out,
                    int *slot, q35_error *err) {
    const q35_tensor *t = need(m, path, name, n, 1, err);
    if (!t) return err->code;
    if (t->dtype != Q35_DTYPE_F32)
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: tensor %s is not F32", path, name);
    *out = t->data;
    if (slot) *slot = (int)(t - m->weights.tensors);
    return Q35_OK;
}

/* Fills mat for rows row0 .. row0 + rows - 1 of tensor t: fp32 rows are
 * used as they are; Q3_5-family rows get their header checked and their
 * column order and scale table prepared. */
static int make_matrix_part(q35_model *m, const q35_tensor *t, int64_t row0, int64_t rows, q35_matrix *mat,
                            const char *path, q35_error *err) {
    memset(mat, 0, sizeof *mat);
    mat->t = t;
    mat->slot = (int)(t - m->weights.tensors);
    mat->dtype = t->dtype;
    mat->n = t->ne[0];
    mat->m = rows;
    mat->row0 = row0;
    if (t->dtype == Q35_DTYPE_F32) {
        mat->f32 = (const float *)t->data + row0 * t->ne[0];
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
    mat->mask = malloc(L->mask_bytes);
    if (!mat->perm || !mat->mask) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    q35_header_perm(L, data, mat->perm);
    memcpy(mat->mask, q35_header_mask(data), L->mask_bytes); /* the rows (and header) may be dropped once packed */
    mat->rows = data + L->header_bytes + (uint64_t)row0 * L->row_bytes;
    L->m = rows;
    if (L->np > m->max_np) m->max_np = L->np;
    return Q35_OK;
}

static int make_matrix(q35_model *m, const q35_tensor *t, q35_matrix *mat, const char *path, q35_error *err) {
    return make_matrix_part(m, t, 0, t->ne[1], mat, path, err);
}

static void free_matrix(q35_matrix *mat) {
    free(mat->perm);
    mat->perm = NULL;
    free(mat->mask);
    mat->mask = NULL;
    mat->r16 = NULL; /* in the model's r16_arena */
}

/* Binds op i of layer l's program to its tensors, checking their shapes. */
static int bind_op(q35_model *m, int l, int i, const char *path, q35_error *err) {
    const q35_hparams *hp = &m->hp;
    q35_layer *ly = &m->layers[l];
    const q35_op *op = &ly->prog.op[i];
    q35_bound *b = &ly->b[i];
    char name[96];
    b->vec_slot = -1;
    switch (op->kind) {
    case Q35_OP_NORM:
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, op->name);
        return need_vec(m, path, name, q35_buf_width(hp, op->src), &b->vec, &b->vec_slot, err);
    case Q35_OP_HEAD_NORM:
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, op->name);
        return need_vec(m, path, name, hp->c.head_dim, &b->vec, &b->vec_slot, err);
    case Q35_OP_MATMUL: {
        int64_t row0, all = 0;
        const int64_t rows = q35_op_rows(hp, op, &row0), cols = q35_buf_width(hp, op->src);
        /* under tensor parallel, this process's rows of the part (all of them otherwise) */
        const int64_t lo = m->tp.own_lo[op->dst], hi = m->tp.own_hi[op->dst];
        for (int p = 0; p < op->n_parts; p++) {
            q35_op part = *op;
            part.part = (uint8_t)p;
            part.dst = op->n_parts == 3 ? (p == 0 ? Q35_B_Q : p == 1 ? Q35_B_K : Q35_B_V)
                                        : (p == 0 ? Q35_B_G : Q35_B_U);
            all += op->n_parts > 1 ? q35_op_rows(hp, &part, NULL) : rows;
        }
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, op->name);
        const q35_tensor *t = need(m, path, name, cols, all, err);
        row0 += lo;
        if (!t || make_matrix_part(m, t, row0, hi - lo, &b->w, path, err)) return err->code;
        if (!op->bias) return Q35_OK;
        snprintf(name, sizeof name, "blk.%d.%s.bias", l, op->name);
        const q35_tensor *bt = find_shaped(m, path, name, all, 1, 0, err);
        if (!bt) return err->code;
        if (bt->dtype != Q35_DTYPE_F32)
            return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: tensor %s is not F32", path, name);
        b->vec = (const float *)bt->data + row0;
        b->vec_slot = (int)(bt - m->weights.tensors);
        return Q35_OK;
    }
    default:
        return Q35_OK;
    }
}

/* RoPE for the global layers (0) and the sliding-window ones (1). */
static int make_ropes(q35_model *m, const char *path, q35_error *err) {
    const q35_hparams *hp = &m->hp;
    const q35_tensor *f = q35_weights_find(&m->weights, "rope_freqs.weight");
    for (int i = 0; i < 2; i++) {
        q35_rope *r = &m->rope[i];
        r->mode = hp->rope_mode;
        r->n_rot = hp->n_rot;
        r->theta = i == 1 && hp->rope_theta_local > 0 ? hp->rope_theta_local : hp->c.rope_theta;
        r->freq_scale = i == 1 ? 1.0f : hp->rope_freq_scale;
        r->attn_factor = hp->rope_attn_factor;
        r->factors = NULL;
    }
    const int longrope = q35_weights_find(&m->weights, "rope_factors_short.weight") ||
                         q35_weights_find(&m->weights, "rope_factors_long.weight");
    int rc = Q35_OK;
    if (f) {
        rc = need_vec(m, path, "rope_freqs.weight", hp->n_rot / 2, &m->rope[0].factors, NULL, err);
    } else if (longrope) { /* both, or neither */
        rc = need_vec(m, path, "rope_factors_short.weight", hp->n_rot / 2, &m->rope[0].factors, NULL, err);
        if (!rc) rc = need_vec(m, path, "rope_factors_long.weight", hp->n_rot / 2, &m->rope_long, NULL, err);
        if (!rc && hp->rope_orig_ctx <= 0) m->hp.rope_orig_ctx = hp->c.seq_len;
    } else if (hp->rope_scaling == Q35_ROPE_SCALING_FACTORS) {
        return q35_fail(err, Q35_ERR_FORMAT, "%s: RoPE scaling by factors, but tensor rope_freqs.weight is missing",
                        path);
    }
    if (!rc && (f || longrope)) m->hp.rope_scaling = Q35_ROPE_SCALING_FACTORS;
    if (!rc) /* factors must be finite and positive: angles are divided by them */
        for (int k = 0; k < 2 && !rc; k++) {
            const float *x = k ? m->rope_long : m->rope[0].factors;
            for (int i = 0; x && i < hp->n_rot / 2; i++)
                if (!(x[i] > 0.0f && x[i] < 1e30f))
                    return q35_fail(err, Q35_ERR_FORMAT, "%s: RoPE factor %d is %g; factors must be positive", path, i,
                                    (double)x[i]);
        }
    return rc;
}

static int resolve(q35_model *m, const char *path, q35_error *err) {
    const q35_config *c = &m->cfg;
    const q35_tensor *t;
    int rc;
    if (q35_model_holds(m, "token_embd.weight") &&
        (!(t = need(m, path, "token_embd.weight", c->dim, c->vocab_size, err)) ||
         make_matrix(m, t, &m->token_embd, path, err)))
        return err->code;
    if (m->l1 == c->n_layers) { /* the last stage: final norm and classifier */
        if ((rc = need_vec(m, path, "output_norm.weight", c->dim, &m->output_norm, &m->output_norm_slot, err)))
            return rc;
        const int64_t v0 = m->tp.own_lo[Q35_TP_LOGITS], v1 = m->tp.own_hi[Q35_TP_LOGITS]; /* rows held */
        if (q35_weights_find(&m->weights, "output.weight")) {
            if (!(t = need(m, path, "output.weight", c->dim, c->vocab_size, err)) ||
                make_matrix_part(m, t, v0, v1 - v0, &m->output, path, err))
                return err->code;
        } else if (make_matrix_part(m, m->token_embd.t, v0, v1 - v0, &m->output, path, err)) {
            return err->code;
        }
    }
    if ((rc = make_ropes(m, path, err))) return rc;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    for (int l = 0; l < c->n_layers; l++) {
        q35_layer *ly = &m->layers[l];
        m->hp.arch->layer(&m->hp, l, &ly->prog);
        for (int i = 0; i < ly->prog.n; i++)
            if (ly->prog.op[i].kind == Q35_OP_ROPE) m->rope_used |= (uint8_t)(1u << ly->prog.op[i].rope);
        for (int i = 0; l >= m->l0 && l < m->l1 && i < ly->prog.n; i++)
            if ((rc = bind_op(m, l, i, path, err))) return rc;
    }
    return Q35_OK;
}

const q35_bound *q35_layer_find(const q35_model *m, int l, const char *name) {
    const q35_layer *ly = &m->layers[l];
    for (int i = 0; i < ly->prog.n; i++)
        if (strcmp(ly->prog.op[i].name, name) == 0) return &ly->b[i];
    return NULL;
}

static const char *const op_names[Q35_N_OPS] = {"NORM", "MATMUL", "HEAD_NORM", "ROPE", "ATTN", "GLU", "ADD"};

int q35_model_plain_llama(const q35_model *m, char *why, size_t cap) {
    const q35_hparams *hp = &m->hp;
    const q35_config *c = &m->cfg;
    const char *v = hp->rope_mode != Q35_ROPE_NORM ? "RoPE on halves (neox)"
                    : m->rope[0].factors || hp->rope_freq_scale != 1.0f ? "scaled RoPE"
                    : hp->n_rot != c->head_dim ? "partial RoPE"
                    : hp->final_softcap > 0 ? "logit soft-capping"
                    : hp->embd_scale != 1.0f ? "a scaled embedding"
                    : c->head_dim * c->n_heads != c->dim ? "head_dim other than dim/heads"
                    : NULL;
    if (v) {
        snprintf(why, cap, "%s", v);
        return -1;
    }
    q35_hparams plain = *hp;
    plain.qkv_bias = 0;
    plain.sliding_window = 0;
    plain.attn_softcap = 0;
    plain.act = Q35_ACT_SILU;
    plain.attn_scale = 1.0f / sqrtf((float)c->head_dim);
    for (int l = 0; l < c->n_layers; l++) {
        q35_prog want = {0};
        q35_prog_attention(&want, &plain, l, &(q35_attn_opts){0});
        q35_prog_ffn(&want, &plain, &(q35_ffn_opts){0});
        const q35_prog *have = &m->layers[l].prog;
        for (int i = 0; i < have->n || i < want.n; i++) {
            const q35_op *a = i < have->n ? &have->op[i] : NULL, *b = i < want.n ? &want.op[i] : NULL;
            if (a && b && a->kind == b->kind && !strcmp(a->name, b->name) && a->bias == b->bias &&
                a->window == b->window && a->softcap == b->softcap && a->act == b->act && a->n_parts == b->n_parts &&
                a->dst == b->dst && a->src == b->src && a->scale == b->scale)
                continue;
            snprintf(why, cap, "layer %d op %d (%s %s%s%s%s)", l, i, a ? op_names[a->kind] : "none",
                     a ? a->name : "", a && a->bias ? ", bias" : "", a && a->window ? ", sliding window" : "",
                     a && a->softcap > 0 ? ", soft-cap" : a && a->kind == Q35_OP_GLU && a->act ? ", GELU" : "");
            return -1;
        }
    }
    return 0;
}

void q35_model_each_matrix(q35_model *m, void (*fn)(q35_matrix *w, void *user), void *user) {
    for (int l = m->l0; m->layers && l < m->l1; l++) {
        q35_layer *ly = &m->layers[l];
        for (int i = 0; i < ly->prog.n; i++)
            if (ly->prog.op[i].kind == Q35_OP_MATMUL && ly->b[i].w.t) fn(&ly->b[i].w, user);
    }
    if (m->output.t) fn(&m->output, user);
}

static int holds_range(const q35_model *m, const char *name, int l0, int l1) {
    const int L = m->cfg.n_layers, last = l1 == L;
    if (!strncmp(name, "blk.", 4)) {
        const int l = atoi(name + 4);
        return l >= l0 && l < l1;
    }
    if (!strcmp(name, "token_embd.weight")) return l0 == 0 || (last && !q35_weights_find(&m->weights, "output.weight"));
    if (!strcmp(name, "output.weight") || !strcmp(name, "output_norm.weight")) return last;
    return 1;
}

int q35_model_holds(const q35_model *m, const char *name) { return holds_range(m, name, m->l0, m->l1); }

void q35_model_layers_held(const q35_model *m, int *first, int *count) {
    *first = m->l0;
    *count = m->l1 - m->l0;
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

/* The file's own tokenizer: a GGUF's tokenizer.ggml.* keys, the
 * tokenizer.json of a Hugging Face folder; NULL (no error) if it has none. */
static int own_tokenizer(q35_tokenizer **tok, const char *path, q35_error *err) {
    struct stat st;
    size_t len = strlen(path);
    *tok = NULL;
    int dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    if (dir || (len >= 12 && strcmp(path + len - 12, ".safetensors") == 0)) {
        char folder[4096], json[4200];
        const char *slash = strrchr(path, '/');
        if (dir) snprintf(folder, sizeof folder, "%s", path);
        else if (slash) snprintf(folder, sizeof folder, "%.*s", (int)(slash - path), path);
        else snprintf(folder, sizeof folder, ".");
        snprintf(json, sizeof json, "%s/tokenizer.json", folder);
        return stat(json, &st) == 0 ? q35_tokenizer_load_hf(tok, folder, err) : Q35_OK;
    }
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    return got == 4 && memcmp(magic, "GGUF", 4) == 0 ? q35_tokenizer_load_gguf(tok, path, err)
                                                     : Q35_OK;
}

/* The tokenizer given, the file's own, or a llama2.c one beside it; its
 * size must be the model's vocabulary. */
static int load_tokenizer(q35_model *m, const char *model_path, const char *tokenizer_path,
                          int inspect, q35_error *err) {
    char found[4096];
    const char *from = tokenizer_path ? tokenizer_path : model_path;
    int rc = tokenizer_path ? q35_tokenizer_load(&m->tokenizer, tokenizer_path, err)
                            : own_tokenizer(&m->tokenizer, model_path, err);
    if (!rc && !m->tokenizer) {
        if (find_tokenizer(model_path, m->cfg.vocab_size, found, sizeof found) != 0)
            return inspect ? Q35_OK
                           : q35_fail(err, Q35_ERR_IO,
                                      "%s: no tokenizer given and neither tok%d.bin nor "
                                      "tokenizer.bin lies beside it (use --tokenizer FILE)",
                                      model_path, m->cfg.vocab_size);
        from = found;
        rc = q35_tokenizer_load(&m->tokenizer, found, err);
    }
    if (!rc && q35_tokenizer_n_vocab(m->tokenizer) != m->cfg.vocab_size)
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: holds %d pieces, expected %d (the model's vocab_size)",
                      from, q35_tokenizer_n_vocab(m->tokenizer), m->cfg.vocab_size);
    return rc;
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
        if (q35_model_holds(m, t->name) && q35_is_family(run_type(m, t)) && !q35_is_family(t->dtype) &&
            !strncmp(t->name, "blk.", 4) && n > cap)
            cap = n;
    }
    float *scratch = cap ? malloc(cap * sizeof *scratch) : NULL;
    if (!scratch) cap = 0;
    int rc = Q35_OK;
    for (int i = 0; i < m->weights.n_tensors && !rc; i++) {
        q35_tensor *t = &m->weights.tensors[i];
        const int to = run_type(m, t);
        if (to != t->dtype && q35_model_holds(m, t->name)) /* another stage's: never read */
            rc = convert_tensor(m, t, to, scratch, cap, path, err);
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

/* What a model holding layers l0 .. l1 - 1 (one slice of tp for tensor
 * parallel) needs, on weights read but not yet converted: each tensor as
 * it will run (run_type; a slice holds its share of the rows of each
 * matrix it runs as stored, the embedding, read by rows, whole; a
 * converted matrix is held whole until it is packed), plus the fp32
 * buffers of the conversion (convert_weights: the largest tensor's and
 * the layers' scratch; more than a matrix's R16 copy while it is packed).
 * A tied embedding's R16 copy as the classifier is not counted (nor is it
 * for files). */
typedef struct need_parts {
    uint64_t weights, kv, scratch;
    uint64_t held; /* of the weights: allocated by the reader already */
} need_parts;

static int holds_range(const q35_model *m, const char *name, int l0, int l1);

static void need_range(const q35_model *m, int l0, int l1, int tp, need_parts *np) {
    const q35_weights *w = &m->weights;
    const q35_config *c = &w->cfg;
    uint64_t perm = 0, family = 0, converting = 0, scratch_layer = 0;
    memset(np, 0, sizeof *np);
    if (tp < 1) tp = 1;
    for (int i = 0; i < w->n_tensors; i++) {
        const q35_tensor *t = &w->tensors[i];
        const uint64_t n = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        if (!holds_range(m, t->name, l0, l1)) continue; /* another stage's: never read */
        const int to = run_type(m, t);
        const uint64_t share = tp > 1 && t->ne[1] > 1 && strcmp(t->name, "token_embd.weight") != 0 ? (uint64_t)tp : 1;
        q35_layout L;
        if (to == t->dtype) {
            np->weights += (t->nbytes + share - 1) / share;
            if (!mapped(w, t->data)) np->held += t->nbytes; /* allocated by the reader already */
        } else if (to == Q35_DTYPE_F32) {
            np->weights += 4 * n;
        } else if (q35_layout_init(&L, to, t->ne[0], t->ne[1]) == 0) {
            np->weights += L.total_bytes; /* repacked into R16, the rows are dropped */
            if (4 * n > converting) converting = 4 * n;
            if (!strncmp(t->name, "blk.", 4) && 4 * n > scratch_layer) scratch_layer = 4 * n;
        }
        if (q35_is_family(to) && q35_layout_init(&L, to, t->ne[0], t->ne[1]) == 0) /* its perm and mask */
            perm += (uint64_t)L.np * sizeof(int32_t) + L.mask_bytes, family = 1;
    }
    np->weights += converting + scratch_layer; /* convert_weights's buffers */
    /* the session's default KV cache: fp16 for a model with Q3_5-family
     * matrices, fp32 for one that runs all in fp32; a slice holds the KV
     * heads its query heads read */
    const uint64_t kvh = tp <= c->n_kv_heads ? ((uint64_t)c->n_kv_heads + (uint64_t)tp - 1) / (uint64_t)tp : 1;
    const uint64_t ctx = (uint64_t)(c->seq_len < Q35_DEFAULT_CTX ? c->seq_len : Q35_DEFAULT_CTX);
    np->kv = 2ull * (family ? 2 : 4) * (uint64_t)(l1 - l0) * ctx * kvh * (uint64_t)c->head_dim;
    const uint64_t q_dim = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    /* activations of a prompt batch (128 tokens, Q35_DEFAULT_BATCH), attention scores, logits,
     * quantized inputs, column orders */
    const uint64_t per_token = 4 * (4 * (uint64_t)c->dim + 3 * (uint64_t)c->hidden_dim + 3 * q_dim +
                                    (uint64_t)c->n_heads * ctx);
    np->scratch = perm + 128 * per_token + 4 * (uint64_t)c->vocab_size +
                  3 * 10 * ((uint64_t)c->hidden_dim + (uint64_t)c->dim + 8);
}

uint64_t q35_model_need_bytes(const q35_model *m, int first, int count, int tp_size) {
    const int L = m->cfg.n_layers;
    if (first < 0 || count < 1 || first > L - count) return 0;
    need_parts np;
    need_range(m, first, first + count, tp_size, &np);
    return np.weights + np.kv + np.scratch;
}

/* The exact check, on weights read but not yet converted. */
static int mem_check_weights(const q35_model *m, const char *path, q35_error *err) {
    need_parts np;
    need_range(m, m->l0, m->l1, m->tp.size, &np);
    char what[160], a[32], b[32];
    snprintf(what, sizeof what, "weights %s + KV cache %s + scratch", human(np.weights, a, sizeof a),
             human(np.kv, b, sizeof b));
    return mem_check(m, path, np.weights + np.kv + np.scratch, what, np.held, err);
}

/* mat's rows in R16 order, packed by all threads into the arena at *at
 * (advanced past them, 64-byte aligned); the rows' pages of a file
 * mapping are then given back, so the weights stay in memory once. */
static void pack_matrix(q35_model *m, q35_matrix *mat, uint64_t *at) {
    const q35_layout *L = &mat->L;
    mat->r16 = m->r16_arena + *at;
    *at += (q35_r16_bytes(L) + 63) / 64 * 64;
    const int64_t tiles = (L->m + Q35_R16_ROWS - 1) / Q35_R16_ROWS;
#pragma omp parallel
    {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        q35_r16_pack(L, mat->rows, tiles * t / T, tiles * (t + 1) / T, mat->r16);
    }
    if (mapped(&m->weights, mat->rows)) q35_mapfile_release(mat->rows, (uint64_t)L->m * L->row_bytes);
    /* rows converted at load are dropped, so the weights are held once; the
     * embedding (read by rows) keeps its own, and so does a fused tensor
     * (phi3's qkv: its other parts still read it) */
    uint8_t **conv = m->converted ? &m->converted[mat->slot] : NULL;
    const int whole = mat->row0 == 0 && mat->m == mat->t->ne[1];
    if (conv && *conv && whole && mat->t != m->token_embd.t) {
        free(*conv);
        *conv = NULL;
        mat->rows = NULL;
        m->weights.tensors[mat->slot].data = NULL;
        m->rows_dropped = 1;
    }
}

/* Repacks the Q3_5-family matrices (not the embedding, which is read by
 * rows; a tied classifier is repacked as the output) when the kernels a
 * session will pick run R16 (AVX-512 with GFNI); params.r16 0 keeps the
 * rows. All copies go into one arena in huge pages: decoding streams every
 * byte of it per token, and with 4 KiB pages the page walks cost
 * (docs/ARCHITECTURE.md, R16). */
typedef struct pack_ctx {
    q35_model *m;
    uint64_t at;  /* bytes of the arena used so far */
    int sizing;   /* 1: only add up the sizes */
} pack_ctx;

static void pack_one(q35_matrix *w, void *user) {
    pack_ctx *p = user;
    if (!q35_is_family(w->dtype)) return;
    if (p->sizing) p->at += (q35_r16_bytes(&w->L) + 63) / 64 * 64;
    else pack_matrix(p->m, w, &p->at);
}

static int pack_r16(q35_model *m, const char *path, q35_error *err) {
    q35_kernels k;
    if (!m->params.r16 || q35_kernels_select(&k, m->params.kernels) != 0 || !k.r16_pack) return Q35_OK;
    pack_ctx p = {m, 0, 1};
    q35_model_each_matrix(m, pack_one, &p);
    if (p.at == 0) return Q35_OK;
    if (!(m->r16_arena = q35_huge_alloc(p.at)))
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory repacking the matrices (%llu MiB)", path,
                        (unsigned long long)(p.at >> 20));
    m->r16_arena_bytes = p.at;
    p = (pack_ctx){m, 0, 0};
    q35_model_each_matrix(m, pack_one, &p);
    return Q35_OK;
}

/* The layers p asks the model to hold. */
static int layer_range(q35_model *m, const q35_model_params *p, const char *path, q35_error *err) {
    const int L = m->cfg.n_layers;
    m->l0 = 0;
    m->l1 = L;
    if (p->layer_count == 0 && p->layer_first == 0) return Q35_OK;
    if (p->layer_first < 0 || p->layer_count < 1 || p->layer_first > L - p->layer_count)
        return q35_fail(err, Q35_ERR_ARG, "%s: layers %d .. %d are not within the model's %d", path, p->layer_first,
                        p->layer_first + p->layer_count - 1, L);
    m->l0 = p->layer_first;
    m->l1 = p->layer_first + p->layer_count;
    return Q35_OK;
}

/* Tensor parallel: the columns of each buffer every process of the group
 * computes (model.h). Widths split in units of 16 rows (an R16 tile)
 * where each process still gets some; query heads in whole groups of a
 * KV head where the processes are no more than the KV heads. */
static void tp_split(int64_t width, int size, int64_t *lo) {
    const int64_t unit = width >= 16 * (int64_t)size ? 16 : 1, units = width / unit;
    for (int r = 0; r < size; r++) lo[r] = unit * (units * r / size);
    lo[size] = width;
}

static int tp_setup(q35_model *m, const q35_model_params *p, const char *path, q35_error *err) {
    q35_tp *tp = &m->tp;
    const q35_config *c = &m->cfg;
    const int size = p->tp_size > 1 ? p->tp_size : 1, r = size > 1 ? p->tp_rank : 0;
    memset(tp, 0, sizeof *tp);
    if (size > Q35_TP_MAX || size > c->n_heads)
        return q35_fail(err, Q35_ERR_ARG, "%s: tensor parallel over %d processes: at most %d (the model's query heads, "
                        "and %d)", path, size, c->n_heads, Q35_TP_MAX);
    if (r < 0 || r >= size)
        return q35_fail(err, Q35_ERR_ARG, "tensor-parallel rank %d is not within 0 .. %d", r, size - 1);
    tp->size = size;
    tp->rank = r;
    const int KV = c->n_kv_heads, G = c->n_heads / KV, hd = c->head_dim;
    for (int k = 0; k <= size; k++)
        tp->lo[Q35_B_Q][k] = (int64_t)(size <= KV ? KV * k / size * G : c->n_heads * k / size) * hd;
    memcpy(tp->lo[Q35_B_A], tp->lo[Q35_B_Q], sizeof tp->lo[0]);
    tp_split(c->hidden_dim, size, tp->lo[Q35_B_G]);
    memcpy(tp->lo[Q35_B_U], tp->lo[Q35_B_G], sizeof tp->lo[0]);
    tp_split(c->dim, size, tp->lo[Q35_B_O]);
    tp_split(c->vocab_size, size, tp->lo[Q35_TP_LOGITS]);
    tp->h0 = (int)(tp->lo[Q35_B_Q][r] / hd);
    tp->h1 = (int)(tp->lo[Q35_B_Q][r + 1] / hd);
    tp->kv0 = tp->h0 / G;
    tp->kv1 = (tp->h1 - 1) / G + 1;
    for (int b = 0; b <= Q35_N_BUFS; b++) {
        const int parted = b == Q35_B_Q || b == Q35_B_A || b == Q35_B_G || b == Q35_B_U || b == Q35_B_O ||
                           b == Q35_TP_LOGITS;
        tp->own_lo[b] = parted ? tp->lo[b][r] : 0;
        tp->own_hi[b] = parted ? tp->lo[b][r + 1] : b == Q35_TP_LOGITS ? c->vocab_size : q35_buf_width(&m->hp, b);
    }
    tp->own_lo[Q35_B_K] = tp->own_lo[Q35_B_V] = (int64_t)tp->kv0 * hd;
    tp->own_hi[Q35_B_K] = tp->own_hi[Q35_B_V] = (int64_t)tp->kv1 * hd;
    return Q35_OK;
}

/* Under tensor parallel the sliced buffers are read whole only by
 * products (which gather them first): an op that would read or write one
 * whole otherwise is refused. */
static int tp_check_programs(const q35_model *m, const char *path, q35_error *err) {
    for (int l = m->l0; m->tp.size > 1 && l < m->l1; l++)
        for (int i = 0; i < m->layers[l].prog.n; i++) {
            const q35_op *op = &m->layers[l].prog.op[i];
            if ((op->kind == Q35_OP_NORM || op->kind == Q35_OP_ADD) && (q35_tp_sliced(op->src) || q35_tp_sliced(op->dst)))
                return q35_fail(err, Q35_ERR_UNSUPPORTED,
                                "%s: tensor parallel: layer %d op %d (%s) reads a sliced buffer whole", path, l, i,
                                op->name[0] ? op->name : "add");
        }
    return Q35_OK;
}

/* The file's header (up to its first tensor's data, at most 64 MiB) and
 * its tensor map as stored, hashed before anything is expanded. */
static uint64_t fingerprint(const q35_weights *w) {
    uint64_t end = w->file.size, h = q35_hash_bytes(w->format, strlen(w->format));
    for (int i = 0; i < w->n_tensors; i++) {
        const uint8_t *d = w->tensors[i].data;
        if (w->file.data && d >= w->file.data && d < w->file.data + w->file.size && (uint64_t)(d - w->file.data) < end)
            end = (uint64_t)(d - w->file.data);
    }
    if (end > (64u << 20)) end = 64u << 20;
    if (w->file.data) h = q35_hash_more(h, w->file.data, end);
    for (int i = 0; i < w->n_tensors; i++) {
        const q35_tensor *t = &w->tensors[i];
        const int64_t f[] = {t->stored_dtype, t->n_dims, t->ne[0], t->ne[1], t->ne[2], t->ne[3], (int64_t)t->stored_nbytes};
        h = q35_hash_more(h, t->name, strlen(t->name) + 1);
        h = q35_hash_more(h, f, sizeof f);
    }
    return h;
}

uint64_t q35_model_fingerprint(const q35_model *m) { return m->fingerprint; }

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
    if (!inspect && p->layer_count == 0 && p->tp_size <= 1) { /* at least the file must fit (a stage or slice holds only its part) */
        int rc = mem_check(m, model_path, file_bytes(model_path), "its file alone", 0, err);
        if (rc) {
            free(m);
            return rc;
        }
    }
    int rc = read_weights(&m->weights, model_path, err);
    if (rc == Q35_OK) {
        m->hp = m->weights.hp;
        m->cfg = m->hp.c;
        m->runnable = !inspect;
        m->l0 = 0;
        m->l1 = m->cfg.n_layers;
        m->fingerprint = fingerprint(&m->weights);
        rc = tp_setup(m, p, model_path, err);
        if (!inspect && !rc) rc = layer_range(m, p, model_path, err);
        if (!inspect && !rc) rc = mem_check_weights(m, model_path, err);
        if (!inspect && !rc) rc = convert_weights(m, model_path, err);
        for (int id = 0, n = 0; id < 64; id++) /* the stored types converted, "Q4_K/Q6_K" */
            if (m->converted_from >> id & 1)
                n += snprintf(m->converted_names + n, sizeof m->converted_names - (size_t)n, "%s%s", n ? "/" : "",
                              q35_dtype_get(id)->name);
    }
    if (rc == Q35_OK) rc = resolve(m, model_path, err);
    if (rc == Q35_OK) rc = tp_check_programs(m, model_path, err);
    if (rc == Q35_OK && !inspect) rc = pack_r16(m, model_path, err);
    if (rc == Q35_OK) rc = load_tokenizer(m, model_path, tokenizer_path, inspect, err);
    if (rc != Q35_OK) {
        q35_model_free(m);
        return rc;
    }
    *out = m;
    return Q35_OK;
}

static void free_one(q35_matrix *w, void *user) {
    (void)user;
    free_matrix(w);
}

void q35_model_free(q35_model *m) {
    if (!m) return;
    q35_tokenizer_free(m->tokenizer);
    free_matrix(&m->token_embd);
    q35_model_each_matrix(m, free_one, NULL);
    q35_huge_free(m->r16_arena, m->r16_arena_bytes);
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
        if (!q35_model_holds(m, t->name)) continue;
        if (t == m->token_embd.t && m->output.t != m->token_embd.t)
            b += t->nbytes / (uint64_t)m->cfg.vocab_size;
        else if (t->ne[1] > 1) /* a tensor-parallel slice reads its share of each matrix */
            b += t->nbytes / (uint64_t)m->tp.size;
        else
            b += t->nbytes;
    }
    return b;
}

const char *q35_model_format(const q35_model *m) { return m->weights.format; }
const char *q35_model_arch(const q35_model *m) { return m->hp.arch ? m->hp.arch->name : "llama"; }
void q35_model_describe(const q35_model *m, char *buf, size_t cap) {
    q35_arch_describe(&m->hp, buf, cap);
    const size_t k = strlen(buf);
    if (m->rope_long && k < cap)
        snprintf(buf + k, cap - k, ", LongRoPE (short factors up to %d positions, long beyond)", m->hp.rope_orig_ctx);
}

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
    return q35_gguf_save_model(path, &m->weights, q35_tokenizer_gguf_keys, m->tokenizer, dtype,
                               err);
}

uint64_t q35_model_n_params(const q35_model *m) {
    uint64_t n = 0;
    for (int i = 0; i < m->weights.n_tensors; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        n += (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    }
    return n;
}

const q35_tokenizer *q35_model_tokenizer(const q35_model *m) { return m->tokenizer; }
int q35_token_bos(const q35_model *m) { return q35_tokenizer_bos(m->tokenizer); }
int q35_token_eos(const q35_model *m) { return q35_tokenizer_eos(m->tokenizer); }

int q35_tokenize(const q35_model *m, const char *text, size_t len, int add_special, int **ids,
                 int *n_ids, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    return q35_tokenizer_encode(m->tokenizer, text, len,
                                add_special ? Q35_TOKENIZE_ADD_SPECIAL : 0u, ids, n_ids, err);
}

size_t q35_detokenize(const q35_model *m, int prev, int token, char *buf, size_t cap) {
    return q35_tokenizer_decode(m->tokenizer, prev, token, buf, cap);
}

size_t q35_detokenize_all(const q35_model *m, int prev, int token, char **buf, size_t *cap) {
    if (!*buf || *cap == 0) { /* room for most pieces at once */
        char *p = realloc(*buf, 64);
        if (!p) return (size_t)-1;
        *buf = p;
        *cap = 64;
    }
    const size_t n = q35_tokenizer_decode(m->tokenizer, prev, token, *buf, *cap);
    if (n < *cap) return n;
    char *p = realloc(*buf, n + 1);
    if (!p) return (size_t)-1;
    *buf = p;
    *cap = n + 1;
    return q35_tokenizer_decode(m->tokenizer, prev, token, *buf, *cap);
}

const char *q35_token_text(const q35_model *m, int id, size_t *len) {
    uint32_t n = 0;
    if (!m->tokenizer || id < 0 || id >= q35_tokenizer_n_vocab(m->tokenizer)) return NULL;
    const char *p = q35_tokenizer_piece(m->tokenizer, id, &n);
    *len = n;
    return p;
}

int q35_token_is_eog(const q35_model *m, int token) {
    /* the tokenizer's end-of-generation set, and BOS: llama2.c's stories end there */
    return q35_tokenizer_is_eog(m->tokenizer, token) || token == q35_token_bos(m);
}
