#include "io/llama2c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/error.h"
#include "format/dtype.h"

static int32_t read_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

int q35_config_check(const q35_config *c, const char *path, q35_error *err) {
    struct { const char *name; int value, lo, hi; } f[] = {
        {"dim", c->dim, 1, 1 << 16},
        {"hidden_dim", c->hidden_dim, 1, 1 << 20},
        {"n_layers", c->n_layers, 1, 1 << 12},
        {"n_heads", c->n_heads, 1, 1 << 12},
        {"n_kv_heads", c->n_kv_heads, 1, 1 << 12},
        {"vocab_size", c->vocab_size, 1, 1 << 22},
        {"seq_len", c->seq_len, 1, 1 << 24},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].value < f[i].lo || f[i].value > f[i].hi)
            return q35_fail(err, Q35_ERR_FORMAT,
                            "%s: %s = %d is out of range [%d, %d]", path,
                            f[i].name, f[i].value, f[i].lo, f[i].hi);
    if (c->dim % c->n_heads != 0)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: n_heads = %d does not divide dim = %d",
                        path, c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return q35_fail(err, Q35_ERR_FORMAT,
                        "%s: n_kv_heads = %d does not divide n_heads = %d", path,
                        c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2 != 0)
        return q35_fail(err, Q35_ERR_FORMAT,
                        "%s: head size %d is odd; RoPE rotates pairs", path, c->head_dim);
    if (!(c->rms_eps > 0.0f && c->rms_eps < 1.0f))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: rms_eps = %g is out of range (0, 1)",
                        path, (double)c->rms_eps);
    if (!(c->rope_theta > 1.0f && c->rope_theta < 1e9f))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: rope_theta = %g is out of range (1, 1e9)",
                        path, (double)c->rope_theta);
    return Q35_OK;
}

/* The matrices in llama2.c's order, with their per-layer shape
 * (ne0 = row length, ne1 = rows). */
enum { W_Q, W_K, W_V, W_O, W_1, W_2, W_3, N_MAT };
static const char *const mat_names[N_MAT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                             "ffn_gate", "ffn_down", "ffn_up"};

static void mat_shape(const q35_config *c, int m, int64_t ne[2]) {
    int64_t d = c->dim, kv = (int64_t)c->n_kv_heads * c->head_dim, h = c->hidden_dim;
    switch (m) {
    case W_Q: ne[0] = d; ne[1] = d; break;
    case W_K: ne[0] = d; ne[1] = kv; break;
    case W_V: ne[0] = d; ne[1] = kv; break;
    case W_O: ne[0] = d; ne[1] = d; break;
    case W_1: ne[0] = d; ne[1] = h; break;
    case W_2: ne[0] = h; ne[1] = d; break;
    default:  ne[0] = d; ne[1] = h; break;
    }
}

/* A cursor over the file's bytes that refuses to run past the end. */
typedef struct cursor {
    const uint8_t *base;
    uint64_t off, size;
    const char *path;
    q35_error *err;
} cursor;

static const uint8_t *take(cursor *cur, uint64_t n, const char *what) {
    uint64_t end;
    if (q35_add_u64(cur->off, n, &end) || end > cur->size) {
        q35_fail(cur->err, Q35_ERR_FORMAT,
                 "%s: file ends at byte %llu, inside %s (needs %llu bytes from %llu)",
                 cur->path, (unsigned long long)cur->size, what,
                 (unsigned long long)n, (unsigned long long)cur->off);
        return NULL;
    }
    const uint8_t *p = cur->base + cur->off;
    cur->off = end;
    return p;
}

/* fp32 layout (legacy and version 1): norms and matrices point into the
 * mapping. */
static int add_f32(q35_weights *w, cursor *cur, const char *name, int layer,
                   int n_dims, const int64_t *ne) {
    uint64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= (uint64_t)ne[i];
    const uint8_t *p = take(cur, n * 4, name);
    if (!p) return Q35_ERR_FORMAT;
    q35_tensor *t = layer < 0
        ? q35_weights_add(w, Q35_DTYPE_F32, n_dims, ne, p, "%s.weight", name)
        : q35_weights_add(w, Q35_DTYPE_F32, n_dims, ne, p, "blk.%d.%s.weight", layer, name);
    return t ? Q35_OK : q35_fail(cur->err, Q35_ERR_NOMEM, "%s: out of memory", cur->path);
}

static int add_norms(q35_weights *w, cursor *cur, const q35_config *c) {
    int64_t ne[1] = {c->dim};
    for (int l = 0; l < c->n_layers; l++)
        if (add_f32(w, cur, "attn_norm", l, 1, ne)) return Q35_ERR_FORMAT;
    for (int l = 0; l < c->n_layers; l++)
        if (add_f32(w, cur, "ffn_norm", l, 1, ne)) return Q35_ERR_FORMAT;
    return add_f32(w, cur, "output_norm", -1, 1, ne);
}

/* version 2: int8 values then one fp32 scale per group, expanded here. */
static int add_q8(q35_weights *w, cursor *cur, const char *name, int layer,
                  const int64_t ne[2], int group) {
    uint64_t n = (uint64_t)ne[0] * (uint64_t)ne[1];
    if (n % (uint64_t)group != 0)
        return q35_fail(cur->err, Q35_ERR_FORMAT,
                        "%s: %s has %llu weights, not a multiple of the group size %d",
                        cur->path, name, (unsigned long long)n, group);
    const uint8_t *q = take(cur, n, name);
    const uint8_t *s = q ? take(cur, n / (uint64_t)group * 4, name) : NULL;
    if (!s) return Q35_ERR_FORMAT;
    float *x = malloc(n * sizeof *x);
    if (!x || q35_weights_own(w, x))
        return q35_fail(cur->err, Q35_ERR_NOMEM, "%s: out of memory", cur->path);
    for (uint64_t g = 0; g < n / (uint64_t)group; g++) {
        float scale;
        memcpy(&scale, s + 4 * g, 4);
        for (uint64_t i = g * (uint64_t)group; i < (g + 1) * (uint64_t)group; i++)
            x[i] = (float)(int8_t)q[i] * scale;
    }
    q35_tensor *t = layer < 0
        ? q35_weights_add(w, Q35_DTYPE_F32, 2, ne, x, "%s.weight", name)
        : q35_weights_add(w, Q35_DTYPE_F32, 2, ne, x, "blk.%d.%s.weight", layer, name);
    return t ? Q35_OK : q35_fail(cur->err, Q35_ERR_NOMEM, "%s: out of memory", cur->path);
}

/* Bytes the header's numbers promise after it, to compare with the file
 * before reading anything (one clear message for "sizes disagree"). */
static int expected_bytes(const q35_config *c, int version, int group, uint64_t *out) {
    uint64_t d = (uint64_t)c->dim, h = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
    uint64_t kv = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    uint64_t V = (uint64_t)c->vocab_size, S = (uint64_t)c->seq_len;
    uint64_t per_layer = d * d * 2 + d * kv * 2 + d * h * 3; /* fits: d,h,kv < 2^20 */
    uint64_t mats, norms = (2 * L + 1) * d, emb = V * d, t;
    if (q35_mul_u64(per_layer, L, &mats)) return 1;
    uint64_t weights = mats + emb * (c->shared_classifier ? 1 : 2);
    if (version == 2) {
        /* int8 + one float per group */
        uint64_t scales = weights / (uint64_t)group * 4;
        return q35_add_u64(weights, scales, &t) || q35_add_u64(t, norms * 4, out);
    }
    uint64_t floats = weights + norms;
    if (version == 0) floats += S * (uint64_t)c->head_dim; /* RoPE cos+sin tables */
    return q35_mul_u64(floats, 4, out);
}

int q35_llama2c_load(q35_weights *w, const char *path, q35_error *err) {
    memset(w, 0, sizeof *w);
    int rc = q35_mapfile_open(&w->file, path, err);
    if (rc) return rc;
    return q35_llama2c_parse(w, w->file.data, w->file.size, path, err);
}

int q35_llama2c_parse(q35_weights *w, const uint8_t *d, uint64_t size, const char *path,
                      q35_error *err) {
    q35_config *c = &w->cfg;
    int32_t hp[7];
    int version = 0, group = 0, rc;
    uint64_t header;
    if (size >= 8 && (uint32_t)read_i32(d) == Q35_LLAMA2C_MAGIC) {
        version = read_i32(d + 4);
        if (version != 1 && version != 2)
            return q35_fail(err, Q35_ERR_UNSUPPORTED,
                            "%s: llama2.c export version %d is not supported (1 = fp32, 2 = int8)",
                            path, version);
        if (size < 256)
            return q35_fail(err, Q35_ERR_FORMAT,
                            "%s: truncated header: %llu bytes, version %d needs 256", path,
                            (unsigned long long)size, version);
        for (int i = 0; i < 7; i++) hp[i] = read_i32(d + 8 + 4 * i);
        if (d[36] > 1)
            return q35_fail(err, Q35_ERR_FORMAT, "%s: shared_classifier flag is %d, not 0 or 1",
                            path, d[36]);
        c->shared_classifier = d[36];
        if (version == 2) {
            group = read_i32(d + 37);
            if (group < 1 || group > (1 << 20))
                return q35_fail(err, Q35_ERR_FORMAT, "%s: group size %d is out of range",
                                path, group);
        }
        header = 256;
        snprintf(w->format, sizeof w->format, "llama2.c v%d%s", version,
                 version == 2 ? " int8" : " fp32");
    } else {
        if (size < 28)
            return q35_fail(err, Q35_ERR_FORMAT,
                            "%s: too short for a llama2.c header (%llu bytes, needs 28)",
                            path, (unsigned long long)size);
        for (int i = 0; i < 7; i++) hp[i] = read_i32(d + 4 * i);
        c->shared_classifier = hp[5] > 0;
        if (hp[5] < 0 && hp[5] != INT32_MIN) hp[5] = -hp[5];
        header = 28;
        snprintf(w->format, sizeof w->format, "llama2.c legacy fp32");
    }
    c->dim = hp[0];
    c->hidden_dim = hp[1];
    c->n_layers = hp[2];
    c->n_heads = hp[3];
    c->n_kv_heads = hp[4];
    c->vocab_size = hp[5];
    c->seq_len = hp[6];
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if ((rc = q35_config_check(c, path, err))) return rc;

    uint64_t want;
    if (expected_bytes(c, version, group, &want))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: header sizes overflow 64 bits", path);
    if (want != size - header)
        return q35_fail(err, Q35_ERR_FORMAT,
                        "%s: header promises %llu bytes of weights after its %llu-byte header, "
                        "the file has %llu (truncated or not this format)",
                        path, (unsigned long long)want, (unsigned long long)header,
                        (unsigned long long)(size - header));

    cursor cur = {d, header, size, path, err};
    int64_t emb_ne[2] = {c->dim, c->vocab_size}, ne[2];
    const int L = c->n_layers;
    if (version == 2) {
        if ((rc = add_norms(w, &cur, c))) return rc;
        if ((rc = add_q8(w, &cur, "token_embd", -1, emb_ne, group))) return rc;
        for (int m = 0; m < N_MAT; m++)
            for (int l = 0; l < L; l++) {
                mat_shape(c, m, ne);
                if ((rc = add_q8(w, &cur, mat_names[m], l, ne, group))) return rc;
            }
        if (!c->shared_classifier && (rc = add_q8(w, &cur, "output", -1, emb_ne, group)))
            return rc;
    } else if (version == 1) {
        if ((rc = add_norms(w, &cur, c))) return rc;
        if ((rc = add_f32(w, &cur, "token_embd", -1, 2, emb_ne))) return rc;
        for (int m = 0; m < N_MAT; m++)
            for (int l = 0; l < L; l++) {
                mat_shape(c, m, ne);
                if ((rc = add_f32(w, &cur, mat_names[m], l, 2, ne))) return rc;
            }
        if (!c->shared_classifier && (rc = add_f32(w, &cur, "output", -1, 2, emb_ne)))
            return rc;
    } else {
        /* legacy order: embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2,
         * w3, rms_final, RoPE tables, classifier */
        int64_t dn[1] = {c->dim};
        if ((rc = add_f32(w, &cur, "token_embd", -1, 2, emb_ne))) return rc;
        for (int l = 0; l < L; l++)
            if ((rc = add_f32(w, &cur, "attn_norm", l, 1, dn))) return rc;
        for (int m = W_Q; m <= W_O; m++)
            for (int l = 0; l < L; l++) {
                mat_shape(c, m, ne);
                if ((rc = add_f32(w, &cur, mat_names[m], l, 2, ne))) return rc;
            }
        for (int l = 0; l < L; l++)
            if ((rc = add_f32(w, &cur, "ffn_norm", l, 1, dn))) return rc;
        for (int m = W_1; m <= W_3; m++)
            for (int l = 0; l < L; l++) {
                mat_shape(c, m, ne);
                if ((rc = add_f32(w, &cur, mat_names[m], l, 2, ne))) return rc;
            }
        if ((rc = add_f32(w, &cur, "output_norm", -1, 1, dn))) return rc;
        if (!take(&cur, (uint64_t)c->seq_len * (uint64_t)c->head_dim * 4, "RoPE tables"))
            return Q35_ERR_FORMAT;
        if (!c->shared_classifier && (rc = add_f32(w, &cur, "output", -1, 2, emb_ne)))
            return rc;
    }
    q35_arch_llama_defaults(c, &w->hp);
    return Q35_OK;
}
