/* gemma.c — Gemma 1, 2 and 3 (GGUF "gemma", "gemma2", "gemma3"; Hugging
 * Face Gemma*ForCausalLM, Gemma3ForConditionalGeneration's text model).
 *
 * All three: the embedding times sqrt(dim), GELU(tanh) gating, RoPE on
 * halves, a tied classifier, and RMSNorm weights stored for (1 + w) by
 * Hugging Face (w + 1 in llama.cpp's GGUF: added at load). The query is
 * scaled by query_pre_attn_scalar^-1/2 (config.json; llama.cpp's GGUF
 * omits it and llama.cpp derives it from the size: 144 for the 46-layer
 * Gemma 2 27B, 168 for the 62-layer Gemma 3 27B, else head_dim — so do we).
 * Gemma 2 adds attention and final-logit soft-caps, post-attention and
 * post-FFN norms, and a sliding window on every other layer (even layers
 * local). Gemma 3 adds per-head q/k norms, the window on 5 of every 6
 * layers (l % 6 == 5 global) with RoPE base 10000 there, and the RoPE base
 * and linear scaling of config.json on the global layers. */
#include <math.h>

#include "arch/arch.h"
#include "core/error.h"

/* What the three share. */
static int gemma_common(const q35_keysrc *s, q35_hparams *hp, int big_layers) {
    hp->act = Q35_ACT_GELU_TANH;
    hp->norm_plus_one_hf = 1;
    hp->embd_scale = sqrtf((float)hp->c.dim);
    if (big_layers != 62) hp->c.shared_classifier = 1; /* Gemma 1 and 2: always; 3: unless untied */
    if (q35_key_present(s, NULL, "hidden_activation") &&
        !q35_key_str_is(s, NULL, "hidden_activation", "gelu_pytorch_tanh"))
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: \"hidden_activation\" is not gelu_pytorch_tanh", s->path);
    double scalar;
    const double dflt = hp->c.n_layers == big_layers && hp->c.n_heads > 0 ? (double)(hp->c.dim / hp->c.n_heads)
                                                                          : (double)hp->c.head_dim;
    int rc = q35_key_float(s, NULL, "query_pre_attn_scalar", 0, dflt, &scalar);
    if (rc) return rc;
    if (!(scalar > 0)) return q35_fail(s->err, Q35_ERR_FORMAT, "%s: query_pre_attn_scalar must be positive", s->path);
    hp->attn_scale = 1.0f / sqrtf((float)scalar);
    return Q35_OK;
}

static int gemma_read(const q35_keysrc *s, q35_hparams *hp) { return gemma_common(s, hp, -1); }

static int window(const q35_keysrc *s, q35_hparams *hp, int64_t dflt) {
    int64_t w;
    int rc = q35_key_int(s, "attention.sliding_window", "sliding_window", 0, dflt, 0, 1 << 24, &w);
    if (!rc) hp->sliding_window = (int)w;
    return rc;
}

static int gemma2_read(const q35_keysrc *s, q35_hparams *hp) {
    int rc = gemma_common(s, hp, 46);
    double a, f;
    if (!rc) rc = window(s, hp, 4096);
    if (!rc) rc = q35_key_float(s, "attn_logit_softcapping", "attn_logit_softcapping", 0, 50.0, &a);
    if (!rc) rc = q35_key_float(s, "final_logit_softcapping", "final_logit_softcapping", 0, 30.0, &f);
    if (rc) return rc;
    hp->attn_softcap = (float)a;
    hp->final_softcap = (float)f;
    hp->swa_period = 2;
    hp->rope_theta_local = hp->c.rope_theta;
    return Q35_OK;
}

static int gemma3_read(const q35_keysrc *s, q35_hparams *hp) {
    int rc = gemma_common(s, hp, 62);
    double f, local;
    if (!rc) rc = q35_key_bool(s, NULL, "tie_word_embeddings", 1, &hp->c.shared_classifier);
    if (!rc) rc = window(s, hp, 0);
    if (!rc) rc = q35_key_float(s, "final_logit_softcapping", "final_logit_softcapping", 0, 0.0, &f);
    if (!rc) rc = q35_key_float(s, "rope.freq_base_swa", "rope_local_base_freq", 0, 10000.0, &local);
    if (rc) return rc;
    hp->final_softcap = (float)f;
    hp->swa_period = 6;
    hp->rope_theta_local = (float)local;
    if (q35_key_present(s, NULL, "attn_logit_softcapping"))
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: gemma3 with attn_logit_softcapping is not supported",
                        s->path);
    if (q35_key_str_is(s, "rope.scaling.type", "rope_scaling.rope_type", "linear") ||
        q35_key_str_is(s, NULL, "rope_scaling.type", "linear")) {
        double factor;
        if ((rc = q35_key_float(s, "rope.scaling.factor", "rope_scaling.factor", 1, 1.0, &factor))) return rc;
        if (!(factor >= 1.0 && factor < 1e6))
            return q35_fail(s->err, Q35_ERR_FORMAT, "%s: RoPE scaling factor %g is out of range", s->path, factor);
        hp->rope_scaling = Q35_ROPE_SCALING_LINEAR;
        hp->rope_freq_scale = (float)(1.0 / factor);
    } else if (q35_key_present(s, "rope.scaling.type", "rope_scaling") &&
               !q35_key_str_is(s, "rope.scaling.type", NULL, "none")) {
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: this RoPE scaling is not supported for gemma3", s->path);
    }
    return Q35_OK;
}

static void gemma_layer(const q35_hparams *hp, int l, q35_prog *p) {
    q35_prog_attention(p, hp, l, &(q35_attn_opts){0});
    q35_prog_ffn(p, hp, &(q35_ffn_opts){0});
}

static void gemma2_layer(const q35_hparams *hp, int l, q35_prog *p) {
    q35_prog_attention(p, hp, l, &(q35_attn_opts){.post_norm = 1});
    q35_prog_ffn(p, hp, &(q35_ffn_opts){.post_norm = 1});
}

static void gemma3_layer(const q35_hparams *hp, int l, q35_prog *p) {
    q35_prog_attention(p, hp, l, &(q35_attn_opts){.qk_norm = 1, .post_norm = 1});
    q35_prog_ffn(p, hp, &(q35_ffn_opts){.post_norm = 1});
}

#define NORM1 Q35_HF_NORM_PLUS_ONE
#define PROJ(hf, gg) {"self_attn." hf "_proj.weight", gg ".weight", Q35_HF_PLAIN}
#define MLP(hf, gg) {"mlp." hf "_proj.weight", gg ".weight", Q35_HF_PLAIN}

static const q35_hf_name gemma_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", NORM1},  PROJ("q", "attn_q"), PROJ("k", "attn_k"),
    PROJ("v", "attn_v"), PROJ("o", "attn_output"), {"post_attention_layernorm.weight", "ffn_norm.weight", NORM1},
    MLP("gate", "ffn_gate"), MLP("up", "ffn_up"), MLP("down", "ffn_down"), {NULL, NULL, 0},
};

/* Gemma 2 and 3: post_attention_layernorm follows attention; the FFN's
 * input norm is pre_feedforward_layernorm. */
static const q35_hf_name gemma23_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", NORM1},
    PROJ("q", "attn_q"), PROJ("k", "attn_k"), PROJ("v", "attn_v"), PROJ("o", "attn_output"),
    {"self_attn.q_norm.weight", "attn_q_norm.weight", NORM1},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", NORM1},
    {"post_attention_layernorm.weight", "post_attention_norm.weight", NORM1},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight", NORM1},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", NORM1},
    MLP("gate", "ffn_gate"), MLP("up", "ffn_up"), MLP("down", "ffn_down"), {NULL, NULL, 0},
};

static const char *const gemma_hf[] = {"GemmaForCausalLM", NULL};
static const char *const gemma2_hf[] = {"Gemma2ForCausalLM", NULL};
static const char *const gemma3_hf[] = {"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", NULL};

const q35_arch q35_arch_gemma = {"gemma", gemma_hf, gemma_names, gemma_read, gemma_layer, NULL};
const q35_arch q35_arch_gemma2 = {"gemma2", gemma2_hf, gemma23_names, gemma2_read, gemma2_layer, NULL};
const q35_arch q35_arch_gemma3 = {"gemma3", gemma3_hf, gemma23_names, gemma3_read, gemma3_layer, NULL};
