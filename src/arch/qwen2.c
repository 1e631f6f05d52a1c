/* qwen2.c — Qwen2 and Qwen2.5 (GGUF "qwen2"; Hugging Face
 * Qwen2ForCausalLM): LLaMA's blocks with biases on the q, k and v
 * projections, RoPE on halves (neox). */
#include "arch/arch.h"
#include "core/error.h"

static int qwen2_read(const q35_keysrc *s, q35_hparams *hp) {
    hp->qkv_bias = 1;
    if (q35_key_present(s, "rope.scaling.type", "rope_scaling") &&
        !q35_key_str_is(s, "rope.scaling.type", NULL, "none"))
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: RoPE scaling (YaRN) is not supported for qwen2", s->path);
    return Q35_OK;
}

static void qwen2_layer(const q35_hparams *hp, int l, q35_prog *p) {
    q35_prog_attention(p, hp, l, &(q35_attn_opts){0});
    q35_prog_ffn(p, hp, &(q35_ffn_opts){0});
}

static const char *const qwen2_hf[] = {"Qwen2ForCausalLM", NULL};

static const q35_hf_name qwen2_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", Q35_HF_PLAIN},
    {"self_attn.q_proj.weight", "attn_q.weight", Q35_HF_PLAIN},
    {"self_attn.k_proj.weight", "attn_k.weight", Q35_HF_PLAIN},
    {"self_attn.v_proj.weight", "attn_v.weight", Q35_HF_PLAIN},
    {"self_attn.q_proj.bias", "attn_q.bias", Q35_HF_PLAIN},
    {"self_attn.k_proj.bias", "attn_k.bias", Q35_HF_PLAIN},
    {"self_attn.v_proj.bias", "attn_v.bias", Q35_HF_PLAIN},
    {"self_attn.o_proj.weight", "attn_output.weight", Q35_HF_PLAIN},
    {"post_attention_layernorm.weight", "ffn_norm.weight", Q35_HF_PLAIN},
    {"mlp.gate_proj.weight", "ffn_gate.weight", Q35_HF_PLAIN},
    {"mlp.up_proj.weight", "ffn_up.weight", Q35_HF_PLAIN},
    {"mlp.down_proj.weight", "ffn_down.weight", Q35_HF_PLAIN},
    {NULL, NULL, 0},
};

const q35_arch q35_arch_qwen2 = {"qwen2", qwen2_hf, qwen2_names, qwen2_read, qwen2_layer, NULL};
