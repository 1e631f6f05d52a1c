/* llama.c — LLaMA 1/2/3.x and Mistral (GGUF "llama"; Hugging Face
 * LlamaForCausalLM, MistralForCausalLM): pre-norm blocks, SwiGLU, RoPE on
 * adjacent pairs (GGUF's layout: Hugging Face's q and k rows are
 * un-permuted at load). Llama 3.1+ scales RoPE per frequency: GGUF carries
 * the factors as rope_freqs.weight, config.json as rope_scaling
 * {rope_type: llama3}, from which they are computed as llama.cpp's
 * converter does. Mistral 7B v0.1 slides a window of sliding_window tokens
 * over every layer (config.json; llama.cpp's GGUF keeps no window). */
#include <math.h>
#include <string.h>

#include "arch/arch.h"
#include "core/error.h"

static int llama_read(const q35_keysrc *s, q35_hparams *hp) {
    hp->rope_mode = Q35_ROPE_NORM;
    int64_t window;
    int rc = q35_key_int(s, "attention.sliding_window", "sliding_window", 0, 0, 0, 1 << 24, &window);
    if (rc) return rc;
    hp->sliding_window = (int)window;
    double factor;
    if (q35_key_str_is(s, "rope.scaling.type", "rope_scaling.rope_type", "linear") ||
        q35_key_str_is(s, NULL, "rope_scaling.type", "linear")) {
        if ((rc = q35_key_float(s, "rope.scaling.factor", "rope_scaling.factor", 1, 1.0, &factor))) return rc;
        if (!(factor >= 1.0 && factor < 1e6))
            return q35_fail(s->err, Q35_ERR_FORMAT, "%s: RoPE scaling factor %g is out of range", s->path, factor);
        hp->rope_scaling = Q35_ROPE_SCALING_LINEAR;
        hp->rope_freq_scale = (float)(1.0 / factor);
    } else if (q35_key_str_is(s, NULL, "rope_scaling.rope_type", "llama3")) {
        hp->rope_scaling = Q35_ROPE_SCALING_FACTORS;
    } else if (q35_key_present(s, "rope.scaling.type", "rope_scaling") &&
               !q35_key_str_is(s, "rope.scaling.type", NULL, "none")) {
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED,
                        "%s: this RoPE scaling is not supported (q35 runs none, linear and llama3)", s->path);
    }
    if (q35_key_present(s, NULL, "hidden_act") && !q35_key_str_is(s, NULL, "hidden_act", "silu"))
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: \"hidden_act\" is not silu; q35 runs Llama with SwiGLU",
                        s->path);
    const char *bias_keys[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        int on;
        if ((rc = q35_key_bool(s, NULL, bias_keys[i], 0, &on))) return rc;
        if (on)
            return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: \"%s\" is true; q35 runs bias-free Llama only",
                            s->path, bias_keys[i]);
    }
    return Q35_OK;
}

/* llama.cpp's converter: per frequency of the head, 1 above the high
 * frequency wavelength, factor below the low one, smoothly between. */
static int llama_hf_derived(const q35_keysrc *s, const q35_hparams *hp,
                            int (*add)(void *user, const char *name, const float *x, int64_t n), void *user) {
    if (hp->rope_scaling != Q35_ROPE_SCALING_FACTORS) return Q35_OK;
    double factor, low, high, old_ctx;
    int rc;
    if ((rc = q35_key_float(s, NULL, "rope_scaling.factor", 0, 8.0, &factor)) ||
        (rc = q35_key_float(s, NULL, "rope_scaling.low_freq_factor", 0, 1.0, &low)) ||
        (rc = q35_key_float(s, NULL, "rope_scaling.high_freq_factor", 0, 4.0, &high)) ||
        (rc = q35_key_float(s, NULL, "rope_scaling.original_max_position_embeddings", 0, 8192.0, &old_ctx)))
        return rc;
    if (!(factor > 0) || !(old_ctx > 0) || !(low > 0) || !(high > low))
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: rope_scaling's llama3 factors are out of range", s->path);
    const int dim = hp->c.head_dim;
    float f[2048];
    if (dim / 2 > 2048) return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: head_dim %d is too large", s->path, dim);
    const float lo_wavelen = (float)(old_ctx / low), hi_wavelen = (float)(old_ctx / high);
    for (int i = 0; i < dim / 2; i++) { /* in float32, as the converter's torch arithmetic */
        const float freq = 1.0f / powf(hp->c.rope_theta, (float)(2 * i) / (float)dim);
        const float wavelen = (float)(2 * 3.14159265358979323846) / freq;
        if (wavelen < hi_wavelen) f[i] = 1.0f;
        else if (wavelen > lo_wavelen) f[i] = (float)factor;
        else {
            const float smooth = ((float)old_ctx / wavelen - (float)low) / (float)(high - low);
            f[i] = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
        }
    }
    return add(user, "rope_freqs.weight", f, dim / 2);
}

static void llama_layer(const q35_hparams *hp, int l, q35_prog *p) {
    q35_prog_attention(p, hp, l, &(q35_attn_opts){0});
    q35_prog_ffn(p, hp, &(q35_ffn_opts){0});
}

static const char *const llama_hf[] = {"LlamaForCausalLM", "MistralForCausalLM", NULL};

const q35_hf_name q35_hf_llama_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", Q35_HF_PLAIN},
    {"self_attn.q_proj.weight", "attn_q.weight", Q35_HF_PERMUTE_Q},
    {"self_attn.k_proj.weight", "attn_k.weight", Q35_HF_PERMUTE_K},
    {"self_attn.v_proj.weight", "attn_v.weight", Q35_HF_PLAIN},
    {"self_attn.o_proj.weight", "attn_output.weight", Q35_HF_PLAIN},
    {"post_attention_layernorm.weight", "ffn_norm.weight", Q35_HF_PLAIN},
    {"mlp.gate_proj.weight", "ffn_gate.weight", Q35_HF_PLAIN},
    {"mlp.up_proj.weight", "ffn_up.weight", Q35_HF_PLAIN},
    {"mlp.down_proj.weight", "ffn_down.weight", Q35_HF_PLAIN},
    {NULL, NULL, 0},
};

const q35_arch q35_arch_llama = {"llama", llama_hf, q35_hf_llama_names, llama_read, llama_layer, llama_hf_derived};
