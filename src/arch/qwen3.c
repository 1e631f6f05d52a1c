/* qwen3.c — Qwen3 dense (GGUF "qwen3"; Hugging Face Qwen3ForCausalLM):
 * LLaMA's blocks without biases, each query and key head RMS-normed
 * (attn_q_norm, attn_k_norm) before RoPE on halves; head_dim is its own
 * (attention.key_length / head_dim). */
#include "arch/arch.h"
#include "core/error.h"

static int qwen3_read(const q35_keysrc *s, q35_hparams *hp) {
    (void)hp;
    if (q35_key_present(s, "rope.scaling.type", "rope_scaling") &&
        !q35_key_str_is(s, "rope.scaling.type", NULL, "none"))
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED, "%s: RoPE scaling (YaRN) is not supported for qwen3", s->path);
    return Q35_OK;
}

static void qwen3_layer(const q35_hparams *hp, int l, q35_prog *p) {
    q35_prog_attention(p, hp, l, &(q35_attn_opts){.qk_norm = 1});
    q35_prog_ffn(p, hp, &(q35_ffn_opts){0});
}

static const char *const qwen3_hf[] = {"Qwen3ForCausalLM", NULL};

static const q35_hf_name qwen3_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", Q35_HF_PLAIN},
    {"self_attn.q_proj.weight", "attn_q.weight", Q35_HF_PLAIN},
    {"self_attn.k_proj.weight", "attn_k.weight", Q35_HF_PLAIN},
    {"self_attn.v_proj.weight", "attn_v.weight", Q35_HF_PLAIN},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", Q35_HF_PLAIN},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", Q35_HF_PLAIN},
    {"self_attn.o_proj.weight", "attn_output.weight", Q35_HF_PLAIN},
    {"post_attention_layernorm.weight", "ffn_norm.weight", Q35_HF_PLAIN},
    {"mlp.gate_proj.weight", "ffn_gate.weight", Q35_HF_PLAIN},
    {"mlp.up_proj.weight", "ffn_up.weight", Q35_HF_PLAIN},
    {"mlp.down_proj.weight", "ffn_down.weight", Q35_HF_PLAIN},
    {NULL, NULL, 0},
};

const q35_arch q35_arch_qwen3 = {"qwen3", qwen3_hf, qwen3_names, qwen3_read, qwen3_layer, NULL};
