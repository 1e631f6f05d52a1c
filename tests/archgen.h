/* archgen.h — tiny random-weight models of each architecture, written as
 * Hugging Face folders (config.json, model.safetensors, tokenizer.json)
 * for the tests. The tensors are the ones the architecture's layer
 * programs (src/arch) bind, named and laid out as Hugging Face stores
 * them (the architecture's own name table, read backwards); their values
 * make every variant matter: norm weights and biases far from 1 and 0,
 * scores and logits large enough for the soft-caps. The GGUF of the same
 * model is q35's conversion of the folder (q35_model_save_gguf). Include
 * once per test program (after harness.h). */
#ifndef Q35_TEST_ARCHGEN_H
#define Q35_TEST_ARCHGEN_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch.h"
#include "io/hf.h"

/* One test model: its config.json keys beyond the shared ones. */
typedef struct arch_case {
    const char *label;
    const char *hf_arch, *model_type;
    int dim, hidden, layers, heads, kv_heads, head_dim, vocab, ctx;
    double rope_theta;
    int tied;
    const char *extra; /* more config.json members, as JSON text without braces (may be "") */
    float w_scale;     /* weights' scale: large enough for soft-caps to bite */
} arch_case;

/* One model of each architecture and variant (tests/test_arch.c compares
 * them with llama.cpp; tests/mpi/test_mpi.c runs them over MPI ranks).
 * Llama 3 scaling reaches positions 0..63 at head_dim 32 with an original
 * context of 16; the windows (16) are shorter than the sequence; the
 * soft-caps (2 and 5) are below the scores and logits these weights give. */
static const arch_case gen_cases[] = {
    {"llama (Llama 3: rope llama3, GQA, head_dim 32 != 64/4, untied)", "LlamaForCausalLM", "llama", 64, 128, 2, 4, 2,
     32, 320, 512, 500000, 0,
     "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":4.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
     "\"original_max_position_embeddings\":16}",
     2.0f},
    {"llama (Llama 3.2: tied, MQA)", "LlamaForCausalLM", "llama", 64, 160, 2, 4, 1, 16, 320, 512, 500000, 1, "", 2.0f},
    {"mistral (sliding_window 4096)", "MistralForCausalLM", "mistral", 64, 128, 2, 4, 2, 16, 320, 512, 10000, 0,
     "\"sliding_window\":4096", 2.0f},
    {"qwen2 (q/k/v biases, tied)", "Qwen2ForCausalLM", "qwen2", 64, 128, 2, 4, 2, 16, 320, 512, 1000000, 1, "", 2.0f},
    {"qwen3 (q/k norms, head_dim 32)", "Qwen3ForCausalLM", "qwen3", 64, 128, 2, 4, 2, 32, 320, 512, 1000000, 0, "",
     2.0f},
    {"gemma (GELU, sqrt(dim) embedding, head_dim 32, MQA)", "GemmaForCausalLM", "gemma", 64, 128, 2, 4, 1, 32, 320, 512,
     10000, 1, "\"hidden_activation\":\"gelu_pytorch_tanh\"", 2.0f},
    {"gemma2 (soft-caps, post-norms, window 16 on even layers)", "Gemma2ForCausalLM", "gemma2", 64, 128, 3, 4, 2, 32,
     320, 512, 10000, 1,
     "\"sliding_window\":16,\"attn_logit_softcapping\":2.0,\"final_logit_softcapping\":5.0,"
     "\"query_pre_attn_scalar\":32,\"hidden_activation\":\"gelu_pytorch_tanh\"",
     2.0f},
    {"gemma3 (q/k norms, window 16 on 5 of 6 layers, local base 10000, global 1e6 linear x8)", "Gemma3ForCausalLM",
     "gemma3", 64, 128, 7, 4, 2, 32, 320, 512, 1000000, 1,
     "\"sliding_window\":16,\"rope_local_base_freq\":10000.0,\"query_pre_attn_scalar\":32,"
     "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8.0},\"hidden_activation\":\"gelu_pytorch_tanh\"",
     2.0f},
    {"phi3 (fused qkv and gate/up, LongRoPE, half the dims rotated)", "Phi3ForCausalLM", "phi3", 64, 128, 2, 4, 2, 16,
     320, 512, 10000, 0,
     "\"sliding_window\":2048,\"partial_rotary_factor\":0.5,\"original_max_position_embeddings\":64,"
     "\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1.0,1.5,2.0,3.0],\"long_factor\":[1.5,3.0,6.0,12.0]}",
     2.0f},
};

/* config.json text into hp (for gen_folder). */
static int gen_read_hp(const char *json, q35_hparams *hp) {
    q35_error err = {0};
    int rc = q35_hf_config_hparams(json, strlen(json), "config.json", hp, NULL, NULL, &err);
    if (rc) fprintf(stderr, "config: %s\n", err.msg);
    return rc;
}

typedef struct gen_tensor {
    char name[96];
    int n_dims;
    int64_t shape[2]; /* PyTorch order: [rows, cols] or [n] */
    float *x;
} gen_tensor;

typedef struct gen_model {
    gen_tensor t[512];
    int n;
} gen_model;

static uint64_t gen_rng = 0x9e3779b97f4a7c15ull;
static float gen_uniform(void) { /* [-1, 1) */
    gen_rng ^= gen_rng << 13;
    gen_rng ^= gen_rng >> 7;
    gen_rng ^= gen_rng << 17;
    return (float)((double)(gen_rng >> 11) / 4503599627370496.0 - 1.0);
}

static gen_tensor *gen_add(gen_model *g, const char *name, int64_t rows, int64_t cols) {
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->t[i].name, name)) return NULL; /* a fused tensor, already there */
    gen_tensor *t = &g->t[g->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    const int64_t n = rows * (cols ? cols : 1);
    t->x = malloc((size_t)n * sizeof *t->x);
    return t;
}

/* The Hugging Face name of layer l's GGUF tensor gg ("attn_q.weight"). */
static int gen_hf_name(const q35_arch *a, int l, const char *gg, char *out, size_t cap, int *kind) {
    for (const q35_hf_name *n = a->hf_tensors; n->hf; n++)
        if (!strcmp(n->gguf, gg)) {
            snprintf(out, cap, "model.layers.%d.%s", l, n->hf);
            *kind = n->kind;
            return 0;
        }
    return -1;
}

/* Fills t: matrices uniform in +-scale / sqrt(cols); norms around 0 (HF
 * stores w for 1 + w) or around 1; biases around 0. */
static void gen_fill(gen_tensor *t, int kind, int is_norm, float scale) {
    const int64_t n = t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1);
    for (int64_t i = 0; i < n; i++) {
        const float u = gen_uniform();
        if (t->n_dims == 2) t->x[i] = u * scale / sqrtf((float)t->shape[1]);
        else if (is_norm) t->x[i] = kind == Q35_HF_NORM_PLUS_ONE ? 0.6f * u : 1.0f + 0.6f * u;
        else t->x[i] = 0.5f * u;
    }
}

static const char *gen_config(const arch_case *c, char *buf, size_t cap) {
    snprintf(buf, cap,
             "{\"architectures\":[\"%s\"],\"model_type\":\"%s\",\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,"
             "\"vocab_size\":%d,\"max_position_embeddings\":%d,\"rms_norm_eps\":1e-05,\"rope_theta\":%g,"
             "\"tie_word_embeddings\":%s,\"bos_token_id\":1,\"eos_token_id\":2%s%s}",
             c->hf_arch, c->model_type, c->dim, c->hidden, c->layers, c->heads, c->kv_heads, c->head_dim, c->vocab,
             c->ctx, c->rope_theta, c->tied ? "true" : "false", *c->extra ? "," : "", c->extra);
    return buf;
}

/* A SentencePiece-style tokenizer.json of exactly vocab pieces: <unk>,
 * <s>, </s>, the 256 byte pieces, then letters and pairs. */
static cJSON *gen_tokenizer(int vocab) {
    cJSON *j = cJSON_Parse("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\","
                          "\"prepend\":\"\xe2\x96\x81\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
                          "\"content\":\"\xe2\x96\x81\"}]},\"pre_tokenizer\":null}");
    cJSON *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddTrueToObject(model, "byte_fallback");
    cJSON *v = cJSON_AddObjectToObject(model, "vocab");
    cJSON_AddArrayToObject(model, "merges");
    char piece[16];
    int id = 0;
    const char *specials[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) cJSON_AddNumberToObject(v, specials[i], id++);
    for (int b = 0; b < 256 && id < vocab; b++) {
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        cJSON_AddNumberToObject(v, piece, id++);
    }
    for (int a = 0; id < vocab; a++) {
        if (a < 26) snprintf(piece, sizeof piece, "%c", 'a' + a);
        else snprintf(piece, sizeof piece, "%c%c", 'a' + (a - 26) / 26 % 26, 'a' + (a - 26) % 26);
        cJSON_AddNumberToObject(v, piece, id++);
    }
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    for (int i = 0; i < 3; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", i);
        cJSON_AddStringToObject(t, "content", specials[i]);
        cJSON_AddTrueToObject(t, "special");
        cJSON_AddItemToArray(added, t);
    }
    return j;
}

static int gen_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int gen_write_safetensors(const char *path, const gen_model *g) {
    cJSON *hdr = cJSON_CreateObject();
    uint64_t off = 0;
    for (int i = 0; i < g->n; i++) {
        const gen_tensor *t = &g->t[i];
        cJSON *e = cJSON_AddObjectToObject(hdr, t->name), *shape = cJSON_AddArrayToObject(e, "shape");
        cJSON_AddStringToObject(e, "dtype", "F32");
        for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += 4 * (uint64_t)(t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    const uint64_t n = strlen(text), padded = (n + 7) / 8 * 8;
    uint8_t *buf = calloc(8 + padded + off, 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(padded >> (8 * i));
    memcpy(buf + 8, text, n);
    memset(buf + 8 + n, ' ', padded - n);
    uint8_t *at = buf + 8 + padded;
    for (int i = 0; i < g->n; i++) {
        const size_t bytes = 4 * (size_t)(g->t[i].shape[0] * (g->t[i].n_dims == 2 ? g->t[i].shape[1] : 1));
        memcpy(at, g->t[i].x, bytes);
        at += bytes;
    }
    const int rc = gen_write_file(path, buf, 8 + padded + off);
    free(buf);
    free(text);
    return rc;
}

static void gen_free(gen_model *g) {
    for (int i = 0; i < g->n; i++) free(g->t[i].x);
    g->n = 0;
}

/* Writes case c as a Hugging Face folder dir (which must exist); the
 * hyperparameters come from reading its config.json back (hp_read: the
 * library's reader, so the tensors are the ones its programs bind). */
/* Tensors whose Hugging Face name contains gen_skip (when set) are left
 * out of the folder (hostile cases). */
static const char *gen_skip;

static int gen_folder(const arch_case *c, const char *dir, uint64_t seed,
                      int (*hp_read)(const char *json, q35_hparams *hp)) {
    char cfg[4096], path[1024];
    gen_config(c, cfg, sizeof cfg);
    q35_hparams hp;
    if (hp_read(cfg, &hp)) return -1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (gen_write_file(path, cfg, strlen(cfg))) return -1;
    cJSON *tok = gen_tokenizer(c->vocab);
    char *tt = cJSON_PrintUnformatted(tok);
    cJSON_Delete(tok);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int rc = gen_write_file(path, tt, strlen(tt));
    free(tt);
    if (rc) return -1;
    gen_rng = seed * 0x9e3779b97f4a7c15ull + 1;
    static gen_model g;
    g.n = 0;
    const q35_config *k = &hp.c;
    gen_fill(gen_add(&g, "model.embed_tokens.weight", k->vocab_size, k->dim), 0, 0, sqrtf((float)k->dim));
    gen_fill(gen_add(&g, "model.norm.weight", k->dim, 0), hp.norm_plus_one_hf ? Q35_HF_NORM_PLUS_ONE : 0, 1, 0);
    if (!c->tied) gen_fill(gen_add(&g, "lm_head.weight", k->vocab_size, k->dim), 0, 0, c->w_scale);
    for (int l = 0; l < k->n_layers && !rc; l++) {
        q35_prog p = {0};
        hp.arch->layer(&hp, l, &p);
        for (int i = 0; i < p.n && !rc; i++) {
            const q35_op *op = &p.op[i];
            char gg[64], hf[128];
            int kind;
            if (op->kind == Q35_OP_NORM || op->kind == Q35_OP_HEAD_NORM) {
                snprintf(gg, sizeof gg, "%s.weight", op->name);
                const int64_t n = op->kind == Q35_OP_NORM ? q35_buf_width(&hp, op->src) : k->head_dim;
                if ((rc = gen_hf_name(hp.arch, l, gg, hf, sizeof hf, &kind))) break;
                gen_tensor *t = gen_add(&g, hf, n, 0);
                if (t) gen_fill(t, kind, 1, 0);
            } else if (op->kind == Q35_OP_MATMUL) {
                int64_t rows = 0;
                for (int q = 0; q < op->n_parts; q++) rows += q35_op_rows(&hp, &p.op[i + q - op->part], NULL);
                snprintf(gg, sizeof gg, "%s.weight", op->name);
                if ((rc = gen_hf_name(hp.arch, l, gg, hf, sizeof hf, &kind))) break;
                gen_tensor *t = gen_add(&g, hf, rows, q35_buf_width(&hp, op->src));
                if (t) gen_fill(t, kind, 0, c->w_scale);
                if (!op->bias) continue;
                snprintf(gg, sizeof gg, "%s.bias", op->name);
                if ((rc = gen_hf_name(hp.arch, l, gg, hf, sizeof hf, &kind))) break;
                if ((t = gen_add(&g, hf, rows, 0))) gen_fill(t, kind, 0, 0);
            }
        }
    }
    for (int i = 0; gen_skip && i < g.n; i++)
        if (strstr(g.t[i].name, gen_skip)) {
            free(g.t[i].x);
            g.t[i--] = g.t[--g.n];
        }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc) rc = gen_write_safetensors(path, &g);
    gen_free(&g);
    return rc;
}

#endif
