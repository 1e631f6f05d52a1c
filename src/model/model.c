/* model.c — loading: pick the reader from the file's first bytes, resolve
 * the tensor map into per-layer pointers (checking every shape against the
 * hyperparameters), load the tokenizer. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "io/llama2c.h"

/* Finds name and checks it is an F32 tensor of shape (ne0, ne1). */
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
    if (t->dtype != Q35_DTYPE_F32) {
        const q35_dtype_info *di = q35_dtype_get(t->dtype);
        q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which this engine cannot run",
                 path, name, di ? di->name : "unknown");
        return NULL;
    }
    return t;
}

static int resolve(q35_model *m, const char *path, q35_error *err) {
    const q35_config *c = &m->cfg;
    int64_t d = c->dim, q = (int64_t)c->n_heads * c->head_dim,
            kv = (int64_t)c->n_kv_heads * c->head_dim, h = c->hidden_dim;
    const q35_tensor *t;
    if (!(m->token_embd = need(m, path, "token_embd.weight", d, c->vocab_size, err)))
        return err->code;
    if (!(t = need(m, path, "output_norm.weight", d, 1, err))) return err->code;
    m->output_norm = t->data;
    if (q35_weights_find(&m->weights, "output.weight")) {
        if (!(m->output = need(m, path, "output.weight", d, c->vocab_size, err)))
            return err->code;
    } else {
        m->output = m->token_embd;
    }
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    for (int l = 0; l < c->n_layers; l++) {
        q35_layer *ly = &m->layers[l];
        char name[64];
#define NEED(field, nm, ne0, ne1)                                              \
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, nm);                \
        if (!(ly->field = need(m, path, name, ne0, ne1, err))) return err->code;
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
    const char *slash = strrchr(model_path, '/');
    int dir_len = slash ? (int)(slash - model_path + 1) : 0;
    snprintf(out, cap, "%.*stok%d.bin", dir_len, model_path, vocab);
    FILE *f = fopen(out, "rb");
    if (!f) {
        snprintf(out, cap, "%.*stokenizer.bin", dir_len, model_path);
        f = fopen(out, "rb");
    }
    if (f) fclose(f);
    return f ? 0 : -1;
}

int q35_model_load(q35_model **out, const char *model_path, const char *tokenizer_path,
                   q35_error *err) {
    *out = NULL;
    if (!model_path || !*model_path)
        return q35_fail(err, Q35_ERR_ARG, "no model file given");
    q35_model *m = calloc(1, sizeof *m);
    if (!m) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", model_path);
    int rc = q35_llama2c_load(&m->weights, model_path, err);
    if (rc == Q35_OK) {
        m->cfg = m->weights.cfg;
        rc = resolve(m, model_path, err);
    }
    if (rc == Q35_OK) {
        char found[4096];
        if (!tokenizer_path) {
            if (find_tokenizer(model_path, m->cfg.vocab_size, found, sizeof found) != 0)
                rc = q35_fail(err, Q35_ERR_IO,
                              "%s: no tokenizer given and neither tok%d.bin nor tokenizer.bin "
                              "lies beside it (use --tokenizer FILE)",
                              model_path, m->cfg.vocab_size);
            tokenizer_path = found;
        }
        if (rc == Q35_OK)
            rc = q35_tokenizer_load_llama2c(&m->tokenizer, tokenizer_path,
                                            m->cfg.vocab_size, err);
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
    free(m->layers);
    q35_weights_free(&m->weights);
    free(m);
}

const q35_config *q35_model_config(const q35_model *m) { return &m->cfg; }

uint64_t q35_model_weight_bytes(const q35_model *m) {
    /* every matrix once, plus one embedding row; the norms are noise */
    uint64_t b = 0;
    for (int i = 0; i < m->weights.n_tensors; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        if (t == m->token_embd && m->output != m->token_embd)
            b += t->nbytes / (uint64_t)m->cfg.vocab_size;
        else
            b += t->nbytes;
    }
    return b;
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
    return q35_tokenizer_encode(m->tokenizer, text, len, add_bos, ids, n_ids, err);
}

size_t q35_detokenize(const q35_model *m, int prev, int token, char *buf, size_t cap) {
    return q35_tokenizer_decode(m->tokenizer, prev, token, buf, cap);
}
