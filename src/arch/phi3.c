/* phi3.c — Phi-3 and Phi-3.5 mini (GGUF "phi3"; Hugging Face
 * Phi3ForCausalLM): LLaMA's blocks with q, k, v in one tensor (attn_qkv)
 * and gate, up in one (ffn_up: gate first), run as parts of them; RoPE on
 * halves over rope.dimension_count dims. LongRoPE (128k models): per-
 * frequency factors rope_factors_short (contexts up to the original) and
 * rope_factors_long (a session holding more), cos and sin times
 * rope.scaling.attn_factor. The sliding window (config.json / GGUF
 * attention.sliding_window) applies to every layer, as Hugging Face runs
 * it; llama.cpp 2026-09 switches it off. */
#include <math.h>

#include "arch/arch.h"
#include "core/error.h"

static int phi3_read(const q35_keysrc *s, q35_hparams *hp) {
    int64_t w, orig;
    double factor;
    int rc = q35_key_int(s, "attention.sliding_window", "sliding_window", 0, 0, 0, 1 << 24, &w);
    if (!rc) rc = q35_key_float(s, NULL, "partial_rotary_factor", 0, 1.0, &factor);
    if (!rc) rc = q35_key_int(s, "rope.scaling.original_context_length", "original_max_position_embeddings", 0,
                              hp->c.seq_len, 1, 1 << 24, &orig);
    if (rc) return rc;
    hp->sliding_window = (int)w;
    hp->rope_orig_ctx = (int)orig;
    if (!s->gguf) hp->n_rot = (int)(factor * hp->c.dim) / hp->c.n_heads;
    const int longrope = q35_key_str_is(s, NULL, "rope_scaling.rope_type", "longrope") ||
                         q35_key_str_is(s, NULL, "rope_scaling.type", "longrope") ||
                         q35_key_str_is(s, NULL, "rope_scaling.type", "su");
    if (longrope) {
        hp->rope_scaling = Q35_ROPE_SCALING_FACTORS;
        const double scale = (double)hp->c.seq_len / (double)orig;
        hp->rope_attn_factor = scale > 1.0 ? (float)sqrt(1.0 + log(scale) / log((double)orig)) : 1.0f;
    } else if (q35_key_present(s, NULL, "rope_scaling")) {
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: this RoPE scaling is not supported for phi3", s->path);
    }
    double attn;
    if ((rc = q35_key_float(s, "rope.scaling.attn_factor", NULL, 0, hp->rope_attn_factor, &attn))) return rc;
    hp->rope_attn_factor = (float)attn;
    return Q35_OK;
}

/* LongRoPE's two factor tables from config.json, as llama.cpp's converter
 * writes them. */
static int phi3_hf_derived(const q35_keysrc *s, const q35_hparams *hp,
                           int (*add)(void *user, const char *name, const float *x, int64_t n), void *user) {
    if (hp->rope_scaling != Q35_ROPE_SCALING_FACTORS) return Q35_OK;
    float f[1024];
    const size_t n = (size_t)hp->n_rot / 2;
    if (n > 1024) return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: RoPE dimensions %d are too many", s->path, hp->n_rot);
    int rc = q35_key_floats(s, NULL, "rope_scaling.short_factor", f, n);
    if (!rc) rc = add(user, "rope_factors_short.weight", f, (int64_t)n);
    if (!rc) rc = q35_key_floats(s, NULL, "rope_scaling.long_factor", f, n);
    if (!rc) rc = add(user, "rope_factors_long.weight", f, (int64_t)n);
    return rc;
}

static void phi3_layer(const q35_hparams *hp, int l, q35_prog *p) {
    q35_prog_attention(p, hp, l, &(q35_attn_opts){.fused_qkv = 1});
    q35_prog_ffn(p, hp, &(q35_ffn_opts){.fused_gate_up = 1});
}

static const char *const phi3_hf[] = {"Phi3ForCausalLM", NULL};

static const q35_hf_name phi3_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", Q35_HF_PLAIN},
    {"self_attn.qkv_proj.weight", "attn_qkv.weight", Q35_HF_PLAIN},
    {"self_attn.o_proj.weight", "attn_output.weight", Q35_HF_PLAIN},
    {"post_attention_layernorm.weight", "ffn_norm.weight", Q35_HF_PLAIN},
    {"mlp.gate_up_proj.weight", "ffn_up.weight", Q35_HF_PLAIN},
    {"mlp.down_proj.weight", "ffn_down.weight", Q35_HF_PLAIN},
    {NULL, NULL, 0},
};

const q35_arch q35_arch_phi3 = {"phi3", phi3_hf, phi3_names, phi3_read, phi3_layer, phi3_hf_derived};
