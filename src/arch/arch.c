/* arch.c — the table of architectures, the hyperparameters every one of
 * them reads, and the program builders the architecture files share. */
#include "arch/arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

extern const q35_arch q35_arch_llama, q35_arch_qwen2, q35_arch_qwen3, q35_arch_gemma,
    q35_arch_gemma2, q35_arch_gemma3, q35_arch_phi3;

static const q35_arch *const archs[] = {&q35_arch_llama, &q35_arch_qwen2, &q35_arch_qwen3, &q35_arch_gemma,
                                        &q35_arch_gemma2, &q35_arch_gemma3, &q35_arch_phi3};
#define N_ARCHS (sizeof archs / sizeof archs[0])

const q35_arch *q35_arch_find(const char *name, size_t len, int hf) {
    for (size_t i = 0; i < N_ARCHS; i++) {
        if (!hf) {
            if (strlen(archs[i]->name) == len && memcmp(archs[i]->name, name, len) == 0) return archs[i];
            continue;
        }
        for (const char *const *h = archs[i]->hf_names; h && *h; h++)
            if (strlen(*h) == len && memcmp(*h, name, len) == 0) return archs[i];
    }
    return NULL;
}

const char *q35_arch_names(void) { return "llama, qwen2, qwen3, gemma, gemma2, gemma3, phi3"; }

/* ---- typed keys ----------------------------------------------------------- */

static const char *key_name(const q35_keysrc *s, const char *gguf_key, const char *hf_key, char *buf,
                            size_t cap) {
    if (s->gguf) snprintf(buf, cap, "%s.%s", s->arch, gguf_key);
    else snprintf(buf, cap, "%s", hf_key);
    return buf;
}

/* 1 found, 0 absent (or no key in this source), < 0 error. */
static int lookup(const q35_keysrc *s, const char *gguf_key, const char *hf_key, q35_keyval *v) {
    const char *k = s->gguf ? gguf_key : hf_key;
    if (!k) return 0;
    char full[160];
    int rc = s->get(s, s->gguf ? key_name(s, gguf_key, hf_key, full, sizeof full) : k, v);
    return rc == 1 ? 1 : rc == 0 ? 0 : -rc;
}

/* lookup for the typed getters: 1 found, 0 absent (the caller's default),
 * or the error, negated (a required key that is missing is one). */
static int find(const q35_keysrc *s, const char *gguf_key, const char *hf_key, int required, q35_keyval *v) {
    const int rc = lookup(s, gguf_key, hf_key, v);
    if (rc == 0 && required && (s->gguf ? gguf_key : hf_key)) {
        char name[160];
        return -q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' is missing", s->path,
                         key_name(s, gguf_key, hf_key, name, sizeof name));
    }
    return rc;
}

int q35_key_present(const q35_keysrc *s, const char *gguf_key, const char *hf_key) {
    q35_keyval v;
    return lookup(s, gguf_key, hf_key, &v) == 1;
}

int q35_key_int(const q35_keysrc *s, const char *gguf_key, const char *hf_key, int required, int64_t dflt,
                int64_t lo, int64_t hi, int64_t *out) {
    q35_keyval v;
    char name[160];
    const int rc = find(s, gguf_key, hf_key, required, &v);
    if (rc < 0) return -rc;
    if (rc == 0) {
        *out = dflt;
        return Q35_OK;
    }
    if (v.type != Q35_KEY_INT)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' is not an integer", s->path,
                        key_name(s, gguf_key, hf_key, name, sizeof name));
    if (v.i < lo || v.i > hi)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' = %lld is out of range [%lld, %lld]", s->path,
                        key_name(s, gguf_key, hf_key, name, sizeof name), (long long)v.i, (long long)lo,
                        (long long)hi);
    *out = v.i;
    return Q35_OK;
}

int q35_key_float(const q35_keysrc *s, const char *gguf_key, const char *hf_key, int required, double dflt,
                  double *out) {
    q35_keyval v;
    char name[160];
    const int rc = find(s, gguf_key, hf_key, required, &v);
    if (rc < 0) return -rc;
    if (rc == 0) {
        *out = dflt;
        return Q35_OK;
    }
    if ((v.type != Q35_KEY_FLOAT && v.type != Q35_KEY_INT) || !isfinite(v.f) || fabs(v.f) > 1e30)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' is not a finite number", s->path,
                        key_name(s, gguf_key, hf_key, name, sizeof name));
    *out = v.f;
    return Q35_OK;
}

int q35_key_bool(const q35_keysrc *s, const char *gguf_key, const char *hf_key, int dflt, int *out) {
    q35_keyval v;
    char name[160];
    const int rc = lookup(s, gguf_key, hf_key, &v);
    if (rc < 0) return -rc;
    if (rc == 0) {
        *out = dflt;
        return Q35_OK;
    }
    if (v.type != Q35_KEY_BOOL)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' is not a boolean", s->path,
                        key_name(s, gguf_key, hf_key, name, sizeof name));
    *out = v.i != 0;
    return Q35_OK;
}

int q35_key_floats(const q35_keysrc *s, const char *gguf_key, const char *hf_key, float *out, size_t n) {
    const char *k = s->gguf ? gguf_key : hf_key;
    char full[160];
    if (!k) return q35_fail(s->err, Q35_ERR_FORMAT, "%s: no such key in this kind of file", s->path);
    const int rc = s->get_floats(s, s->gguf ? key_name(s, gguf_key, hf_key, full, sizeof full) : k, out, n);
    if (rc == 1) return Q35_OK;
    if (rc == 0)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' is missing", s->path,
                        key_name(s, gguf_key, hf_key, full, sizeof full));
    return rc;
}

int q35_key_str_is(const q35_keysrc *s, const char *gguf_key, const char *hf_key, const char *want) {
    q35_keyval v;
    return lookup(s, gguf_key, hf_key, &v) == 1 && v.type == Q35_KEY_STR && v.len == strlen(want) &&
           memcmp(v.s, want, v.len) == 0;
}

/* ---- generic hyperparameters --------------------------------------------- */

static int field(const q35_keysrc *s, const char *g, const char *h, int required, int dflt, int lo, int hi,
                 int *out) {
    int64_t x;
    int rc = q35_key_int(s, g, h, required, dflt, lo, hi, &x);
    if (!rc) *out = (int)x;
    return rc;
}

static int ffield(const q35_keysrc *s, const char *g, const char *h, int required, double dflt, float *out) {
    double x;
    int rc = q35_key_float(s, g, h, required, dflt, &x);
    if (!rc) *out = (float)x;
    return rc;
}

void q35_arch_llama_defaults(const q35_config *c, q35_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->arch = &q35_arch_llama;
    hp->c = *c;
    hp->n_rot = c->head_dim;
    hp->rope_mode = Q35_ROPE_NORM;
    hp->rope_freq_scale = 1.0f;
    hp->rope_attn_factor = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    hp->embd_scale = 1.0f;
}

int q35_arch_read_hparams(const q35_arch *a, const q35_keysrc *s, q35_hparams *hp) {
    q35_config c = {0};
    int rc, tied = 0;
    if ((rc = field(s, "context_length", "max_position_embeddings", 1, 0, 1, 1 << 24, &c.seq_len)) ||
        (rc = field(s, "embedding_length", "hidden_size", 1, 0, 1, 1 << 16, &c.dim)) ||
        (rc = field(s, "block_count", "num_hidden_layers", 1, 0, 1, Q35_MAX_LAYERS, &c.n_layers)) ||
        (rc = field(s, "feed_forward_length", "intermediate_size", 1, 0, 1, 1 << 20, &c.hidden_dim)) ||
        (rc = field(s, "attention.head_count", "num_attention_heads", 1, 0, 1, 1 << 12, &c.n_heads)) ||
        (rc = field(s, "attention.head_count_kv", "num_key_value_heads", 0, c.n_heads, 1, 1 << 12,
                    &c.n_kv_heads)) ||
        (rc = ffield(s, "attention.layer_norm_rms_epsilon", "rms_norm_eps", s->gguf, 1e-6, &c.rms_eps)) ||
        (rc = ffield(s, "rope.freq_base", "rope_theta", 0, 10000.0, &c.rope_theta)) ||
        (rc = field(s, "vocab_size", "vocab_size", !s->gguf, 0, 1, 1 << 22, &c.vocab_size)) ||
        (rc = q35_key_bool(s, NULL, "tie_word_embeddings", 0, &tied)))
        return rc;
    c.shared_classifier = tied;
    if (c.n_heads < 1 || c.dim % c.n_heads) c.head_dim = 0;
    else c.head_dim = c.dim / c.n_heads;
    if ((rc = field(s, "attention.key_length", "head_dim", 0, c.head_dim, 1, 1 << 12, &c.head_dim))) return rc;
    int v_len;
    if ((rc = field(s, "attention.value_length", NULL, 0, c.head_dim, 1, 1 << 12, &v_len))) return rc;
    if (v_len != c.head_dim)
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED,
                        "%s: key '%s.attention.value_length' = %d differs from the key length %d; not supported",
                        s->path, s->arch, v_len, c.head_dim);
    memset(hp, 0, sizeof *hp);
    hp->arch = a;
    hp->c = c;
    if ((rc = field(s, "rope.dimension_count", NULL, 0, c.head_dim, 2, c.head_dim > 2 ? c.head_dim : 2,
                    &hp->n_rot)))
        return rc;
    hp->rope_mode = Q35_ROPE_NEOX;
    hp->rope_freq_scale = 1.0f;
    hp->rope_attn_factor = 1.0f;
    hp->attn_scale = c.head_dim > 0 ? 1.0f / sqrtf((float)c.head_dim) : 1.0f;
    hp->embd_scale = 1.0f;
    hp->act = Q35_ACT_SILU;
    if (a->read && (rc = a->read(s, hp))) return rc;
    return Q35_OK;
}

int q35_arch_check(const q35_hparams *hp, const char *path, q35_error *err) {
    const q35_config *c = &hp->c;
    struct { const char *name; int value, lo, hi; } f[] = {
        {"dim", c->dim, 1, 1 << 16},           {"hidden_dim", c->hidden_dim, 1, 1 << 20},
        {"n_layers", c->n_layers, 1, Q35_MAX_LAYERS}, {"n_heads", c->n_heads, 1, 1 << 12},
        {"n_kv_heads", c->n_kv_heads, 1, 1 << 12}, {"vocab_size", c->vocab_size, 1, 1 << 22},
        {"seq_len", c->seq_len, 1, 1 << 24},   {"head_dim", c->head_dim, 2, 1 << 12},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].value < f[i].lo || f[i].value > f[i].hi)
            return q35_fail(err, Q35_ERR_FORMAT, "%s: %s = %d is out of range [%d, %d]", path, f[i].name,
                            f[i].value, f[i].lo, f[i].hi);
    if (c->n_heads % c->n_kv_heads != 0)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: n_kv_heads = %d does not divide n_heads = %d", path,
                        c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2 != 0 || hp->n_rot % 2 != 0 || hp->n_rot > c->head_dim || hp->n_rot < 2)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: head size %d / RoPE dimensions %d: RoPE rotates pairs within a head",
                        path, c->head_dim, hp->n_rot);
    if (!(c->rms_eps > 0.0f && c->rms_eps < 1.0f))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: rms_eps = %g is out of range (0, 1)", path, (double)c->rms_eps);
    if (!(c->rope_theta > 1.0f && c->rope_theta < 1e9f) ||
        !(hp->rope_theta_local == 0.0f || (hp->rope_theta_local > 1.0f && hp->rope_theta_local < 1e9f)))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: rope_theta = %g is out of range (1, 1e9)", path,
                        (double)c->rope_theta);
    if (!(hp->rope_freq_scale > 0.0f && hp->rope_freq_scale <= 1.0f))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: RoPE frequency scale %g is out of range (0, 1]", path,
                        (double)hp->rope_freq_scale);
    if (hp->sliding_window < 0 || hp->swa_period < 0 || !(hp->attn_softcap >= 0) || !(hp->final_softcap >= 0) ||
        !(hp->attn_scale > 0) || !(hp->embd_scale > 0) || !(hp->rope_attn_factor > 0))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: a window, soft-cap or scale is out of range", path);
    return Q35_OK;
}

int q35_arch_layer_slides(const q35_hparams *hp, int l) {
    if (hp->sliding_window <= 0) return 0;
    return hp->swa_period <= 0 || l % hp->swa_period != hp->swa_period - 1;
}

void q35_arch_describe(const q35_hparams *hp, char *buf, size_t cap) {
    const q35_config *c = &hp->c;
    size_t k = (size_t)snprintf(buf, cap, "%s", hp->arch ? hp->arch->name : "?");
#define ADD(...) \
    if (k < cap) k += (size_t)snprintf(buf + k, cap - k, __VA_ARGS__)
    if (c->n_kv_heads != c->n_heads) ADD(", GQA %d:%d", c->n_heads, c->n_kv_heads);
    if (c->head_dim * c->n_heads != c->dim) ADD(", head_dim %d (not dim/heads)", c->head_dim);
    ADD(", rope %s", hp->rope_mode == Q35_ROPE_NORM ? "norm" : "neox");
    if (hp->n_rot != c->head_dim) ADD(" (%d of %d dims)", hp->n_rot, c->head_dim);
    if (hp->rope_scaling == Q35_ROPE_SCALING_FACTORS) ADD(", rope frequency factors");
    if (hp->rope_scaling == Q35_ROPE_SCALING_LINEAR || hp->rope_freq_scale != 1.0f)
        ADD(", rope linear scaling %g", 1.0 / hp->rope_freq_scale);
    if (hp->rope_theta_local > 0) ADD(", local rope base %g", (double)hp->rope_theta_local);
    if (hp->rope_attn_factor != 1.0f) ADD(", rope attention factor %g", (double)hp->rope_attn_factor);
    if (hp->qkv_bias) ADD(", q/k/v biases");
    if (hp->sliding_window > 0) {
        ADD(", sliding window %d", hp->sliding_window);
        if (hp->swa_period > 0) ADD(" (every %d-th layer global)", hp->swa_period);
    }
    if (hp->attn_softcap > 0) ADD(", attention soft-cap %g", (double)hp->attn_softcap);
    if (hp->final_softcap > 0) ADD(", logit soft-cap %g", (double)hp->final_softcap);
    if (fabsf(hp->attn_scale * sqrtf((float)c->head_dim) - 1.0f) > 1e-6f)
        ADD(", attention scale %g", (double)hp->attn_scale);
    if (hp->embd_scale != 1.0f) ADD(", embedding scale %g", (double)hp->embd_scale);
    ADD(", %s", hp->act == Q35_ACT_GELU_TANH ? "GELU(tanh) gate" : "SwiGLU");
    ADD(", %s classifier", c->shared_classifier ? "tied" : "untied");
#undef ADD
}

/* ---- programs ------------------------------------------------------------- */

int64_t q35_buf_width(const q35_hparams *hp, int b) {
    const q35_config *c = &hp->c;
    switch (b) {
    case Q35_B_Q: case Q35_B_A: return (int64_t)c->n_heads * c->head_dim;
    case Q35_B_K: case Q35_B_V: return (int64_t)c->n_kv_heads * c->head_dim;
    case Q35_B_G: case Q35_B_U: return c->hidden_dim;
    default: return c->dim;
    }
}

int64_t q35_op_rows(const q35_hparams *hp, const q35_op *op, int64_t *row0) {
    /* the parts of a fused tensor are the dst widths of the parts in order:
     * q, k, v for attn_qkv; gate, up for ffn_up */
    static const int qkv[] = {Q35_B_Q, Q35_B_K, Q35_B_V}, gu[] = {Q35_B_G, Q35_B_U};
    int64_t off = 0;
    if (op->n_parts > 1) {
        const int *order = op->n_parts == 3 ? qkv : gu;
        for (int i = 0; i < op->part; i++) off += q35_buf_width(hp, order[i]);
    }
    if (row0) *row0 = off;
    return q35_buf_width(hp, op->dst);
}

q35_op *q35_prog_add(q35_prog *p, int kind, int dst, int src, const char *name) {
    q35_op *op = &p->op[p->n < Q35_MAX_OPS ? p->n++ : Q35_MAX_OPS - 1];
    memset(op, 0, sizeof *op);
    op->kind = (uint8_t)kind;
    op->dst = (uint8_t)dst;
    op->src = (uint8_t)src;
    op->n_parts = 1;
    if (name) snprintf(op->name, sizeof op->name, "%s", name);
    return op;
}

static void matmul(q35_prog *p, int dst, int src, const char *name, int bias, int part, int n_parts) {
    q35_op *op = q35_prog_add(p, Q35_OP_MATMUL, dst, src, name);
    op->bias = (uint8_t)bias;
    op->part = (uint8_t)part;
    op->n_parts = (uint8_t)n_parts;
}

void q35_prog_attention(q35_prog *p, const q35_hparams *hp, int l, const q35_attn_opts *o) {
    const int slides = q35_arch_layer_slides(hp, l);
    q35_prog_add(p, Q35_OP_NORM, Q35_B_H, Q35_B_X, "attn_norm");
    if (o->fused_qkv) {
        matmul(p, Q35_B_Q, Q35_B_H, "attn_qkv", hp->qkv_bias, 0, 3);
        matmul(p, Q35_B_K, Q35_B_H, "attn_qkv", hp->qkv_bias, 1, 3);
        matmul(p, Q35_B_V, Q35_B_H, "attn_qkv", hp->qkv_bias, 2, 3);
    } else {
        matmul(p, Q35_B_Q, Q35_B_H, "attn_q", hp->qkv_bias, 0, 1);
        matmul(p, Q35_B_K, Q35_B_H, "attn_k", hp->qkv_bias, 0, 1);
        matmul(p, Q35_B_V, Q35_B_H, "attn_v", hp->qkv_bias, 0, 1);
    }
    if (o->qk_norm) {
        q35_prog_add(p, Q35_OP_HEAD_NORM, Q35_B_Q, Q35_B_Q, "attn_q_norm");
        q35_prog_add(p, Q35_OP_HEAD_NORM, Q35_B_K, Q35_B_K, "attn_k_norm");
    }
    const int local = slides && hp->rope_theta_local > 0;
    q35_prog_add(p, Q35_OP_ROPE, Q35_B_Q, Q35_B_Q, NULL)->rope = (uint8_t)local;
    q35_prog_add(p, Q35_OP_ROPE, Q35_B_K, Q35_B_K, NULL)->rope = (uint8_t)local;
    q35_op *a = q35_prog_add(p, Q35_OP_ATTN, Q35_B_A, Q35_B_Q, NULL);
    a->window = slides ? hp->sliding_window : 0;
    a->softcap = hp->attn_softcap;
    a->scale = hp->attn_scale;
    matmul(p, Q35_B_O, Q35_B_A, "attn_output", 0, 0, 1);
    if (o->post_norm) q35_prog_add(p, Q35_OP_NORM, Q35_B_O, Q35_B_O, "post_attention_norm");
    q35_prog_add(p, Q35_OP_ADD, Q35_B_X, Q35_B_O, NULL);
}

void q35_prog_ffn(q35_prog *p, const q35_hparams *hp, const q35_ffn_opts *o) {
    q35_prog_add(p, Q35_OP_NORM, Q35_B_H, Q35_B_X, "ffn_norm");
    if (o->fused_gate_up) {
        matmul(p, Q35_B_G, Q35_B_H, "ffn_up", 0, 0, 2);
        matmul(p, Q35_B_U, Q35_B_H, "ffn_up", 0, 1, 2);
    } else {
        matmul(p, Q35_B_G, Q35_B_H, "ffn_gate", 0, 0, 1);
        matmul(p, Q35_B_U, Q35_B_H, "ffn_up", 0, 0, 1);
    }
    q35_op *g = q35_prog_add(p, Q35_OP_GLU, Q35_B_G, Q35_B_G, NULL);
    g->src2 = Q35_B_U;
    g->act = (uint8_t)hp->act;
    matmul(p, Q35_B_O, Q35_B_G, "ffn_down", 0, 0, 1);
    if (o->post_norm) q35_prog_add(p, Q35_OP_NORM, Q35_B_O, Q35_B_O, "post_ffw_norm");
    q35_prog_add(p, Q35_OP_ADD, Q35_B_X, Q35_B_O, NULL);
}
