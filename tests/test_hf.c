/* test_hf.c — the Hugging Face reader. stories260K (.bin + tok512.bin) is
 * written out here in Hugging Face's layout (config.json, tokenizer.json,
 * safetensors with HF names, PyTorch shapes and q/k permuted as
 * convert_llama_weights_to_hf.py does) in F32, F16 and BF16, aligned and
 * misaligned, tied and untied, single and sharded. Each must load to the
 * .bin's config and tensors (F32 bit for bit after the un-permutation;
 * F16/BF16 equal to the rounded values), the tokenizer must encode every
 * line of tinystories-dev.txt to the .bin tokenizer's ids, and logits must
 * match the .bin model's. Then hostile files: each must fail with a
 * one-line message naming the file.
 *
 * With Q35_FUZZ_SEEDS=DIR set, also writes the fuzzers' seed files under
 * DIR/fuzz_safetensors and DIR/fuzz_tokenizer_json. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/dtype.h"
#include "harness.h"
#include "io/hf.h"
#include "io/llama2c.h"
#include "tokenizer/tokenizer.h"

#ifndef Q35_TEST_HF_MODEL
#define Q35_TEST_HF_MODEL 1 /* end-to-end logits through q35_model_load */
#endif
#if Q35_TEST_HF_MODEL
#include "q35.h"
#endif

static char tmpdir[256];

/* the error codes the hostile cases expect */
enum { F = Q35_ERR_FORMAT, U = Q35_ERR_UNSUPPORTED, IO = Q35_ERR_IO };

/* ---- files ---------------------------------------------------------------- */

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

/* dir/name into buf (1024 bytes). */
static char *in_dir(char *buf, const char *dir, const char *name) {
    int k = snprintf(buf, 1024, "%s/%s", dir, name);
    if (k < 0 || k >= 1024) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(2);
    }
    return buf;
}

/* tmpdir/name, created. */
static char *make_dir(char *buf, const char *name) {
    mkdir(in_dir(buf, tmpdir, name), 0700);
    return buf;
}

static void write_text(const char *dir, const char *name, const char *text) {
    char p[1024];
    write_bytes(in_dir(p, dir, name), text, strlen(text));
}

static void write_json(const char *dir, const char *name, const cJSON *j) {
    char *s = cJSON_Print(j);
    write_text(dir, name, s);
    free(s);
}

/* ---- stories260K in Hugging Face's layout ------------------------------- */

typedef struct hf_tensor {
    char name[96];
    int n_dims;
    int64_t shape[2];   /* PyTorch order */
    const float *src;   /* q35 layout */
    int heads;          /* > 0: permute rows as HF does for q and k */
} hf_tensor;

typedef struct hf_model {
    hf_tensor t[64];
    int n;
    const q35_config *cfg;
} hf_model;

static void add_hf(hf_model *m, const q35_weights *w, const char *hf, const char *q35,
                   int heads) {
    const q35_tensor *t = q35_weights_find(w, q35);
    if (!t) {
        fprintf(stderr, "no tensor %s\n", q35);
        exit(2);
    }
    hf_tensor *h = &m->t[m->n++];
    snprintf(h->name, sizeof h->name, "%s", hf);
    h->n_dims = t->n_dims;
    h->shape[0] = t->n_dims == 2 ? t->ne[1] : t->ne[0];
    h->shape[1] = t->ne[0];
    h->src = t->data;
    h->heads = heads;
}

static void hf_tensors(hf_model *m, const q35_weights *w, int untied) {
    static const char *const names[][2] = {
        {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},
        {"self_attn.k_proj", "attn_k"},        {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"},   {"post_attention_layernorm", "ffn_norm"},
        {"mlp.gate_proj", "ffn_gate"},         {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},
    };
    memset(m, 0, sizeof *m);
    m->cfg = &w->cfg;
    add_hf(m, w, "model.embed_tokens.weight", "token_embd.weight", 0);
    add_hf(m, w, "model.norm.weight", "output_norm.weight", 0);
    if (untied) add_hf(m, w, "lm_head.weight", "token_embd.weight", 0);
    for (int l = 0; l < w->cfg.n_layers; l++)
        for (int i = 0; i < 9; i++) {
            char hf[96], q[64];
            snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", l, names[i][0]);
            snprintf(q, sizeof q, "blk.%d.%s.weight", l, names[i][1]);
            int heads = i == 1 ? w->cfg.n_heads : i == 2 ? w->cfg.n_kv_heads : 0;
            add_hf(m, w, hf, q, heads);
        }
    /* a buffer HF checkpoints carry and q35 skips: 4 floats */
    hf_tensor *h = &m->t[m->n++];
    snprintf(h->name, sizeof h->name, "model.layers.0.self_attn.rotary_emb.inv_freq");
    h->n_dims = 1;
    h->shape[0] = w->cfg.head_dim / 2;
    h->src = q35_weights_find(w, "output_norm.weight")->data;
}

static uint64_t hf_count(const hf_tensor *h) {
    return (uint64_t)h->shape[0] * (uint64_t)(h->n_dims == 2 ? h->shape[1] : 1);
}

/* Hugging Face's permute: row h*hd + j*hd/2 + i takes row h*hd + 2i + j. */
static int64_t hf_source_row(const hf_tensor *h, int64_t row) {
    if (!h->heads) return row;
    int64_t hd = h->shape[0] / h->heads, head = row / hd, r = row % hd;
    int64_t j = r / (hd / 2), i = r % (hd / 2);
    return head * hd + 2 * i + j;
}

static void put_value(uint8_t *out, int dtype, float x) {
    if (dtype == Q35_DTYPE_F32) {
        memcpy(out, &x, 4);
    } else {
        uint16_t v = dtype == Q35_DTYPE_F16 ? q35_f32_to_f16(x) : q35_f32_to_bf16(x);
        memcpy(out, &v, 2);
    }
}

/* Writes tensors {first, first + step, ...} of m as one safetensors file;
 * misalign puts the data section at an offset of 2 mod 4. */
static void write_safetensors(const char *path, const hf_model *m, int first, int step,
                              int dtype, int misalign) {
    static const char *const dnames[] = {[Q35_DTYPE_F32] = "F32", [Q35_DTYPE_F16] = "F16",
                                         [Q35_DTYPE_BF16] = "BF16"};
    const size_t es = dtype == Q35_DTYPE_F32 ? 4 : 2;
    cJSON *hdr = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(hdr, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = first; i < m->n; i += step) {
        const hf_tensor *h = &m->t[i];
        cJSON *e = cJSON_AddObjectToObject(hdr, h->name);
        cJSON_AddStringToObject(e, "dtype", dnames[dtype]);
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < h->n_dims; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)h->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += hf_count(h) * es;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    uint64_t n = strlen(text), padded = (n + 7) / 8 * 8 + (misalign ? 2 : 0);
    uint8_t *buf = calloc(8 + padded + off, 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(padded >> (8 * i));
    memcpy(buf + 8, text, n);
    memset(buf + 8 + n, ' ', padded - n);
    uint8_t *at = buf + 8 + padded;
    for (int i = first; i < m->n; i += step) {
        const hf_tensor *h = &m->t[i];
        int64_t rows = h->n_dims == 2 ? h->shape[0] : 1, cols = h->n_dims == 2 ? h->shape[1] : h->shape[0];
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++, at += es)
                put_value(at, dtype, h->src[hf_source_row(h, r) * cols + c]);
    }
    write_bytes(path, buf, 8 + padded + off);
    free(buf);
    free(text);
}

static cJSON *config_json(const q35_config *c, int tied) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "llama");
    cJSON_AddNumberToObject(j, "hidden_size", c->dim);
    cJSON_AddNumberToObject(j, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->seq_len);
    cJSON_AddNumberToObject(j, "rms_norm_eps", 1e-5);
    cJSON_AddNumberToObject(j, "rope_theta", 10000.0);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", tied);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNullToObject(j, "rope_scaling");
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    return j;
}

/* ---- tokenizer.json from a llama2.c tokenizer ----------------------------- */

/* The piece as tokenizer.json spells it: U+2581 for ' ', "<s>" for
 * llama2.c's "\n<s>\n". */
static void hf_spelling(const q35_tokenizer *t, int id, char *out, size_t cap) {
    uint32_t len;
    const char *p = q35_tokenizer_piece(t, id, &len);
    if (len == 5 && memcmp(p, "\n<s>\n", 5) == 0) p = "<s>", len = 3;
    if (len == 6 && memcmp(p, "\n</s>\n", 6) == 0) p = "</s>", len = 4;
    size_t k = 0;
    for (uint32_t i = 0; i < len && k + 4 < cap; i++) {
        if (p[i] == ' ') {
            memcpy(out + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            out[k++] = p[i];
        }
    }
    out[k] = '\0';
}

typedef struct spelled {
    int n;
    char (*s)[64];
    int *by_score; /* ids, highest score first */
    const q35_tokenizer *t;
} spelled;

static int normal_id(const spelled *sp, const char *s, size_t len) {
    for (int i = 0; i < sp->n; i++)
        if (q35_tokenizer_piece_type(sp->t, i) == Q35_PIECE_NORMAL && strlen(sp->s[i]) == len &&
            memcmp(sp->s[i], s, len) == 0)
            return i;
    return -1;
}

typedef struct ranked {
    float key;
    int id, id2;
} ranked;

/* key descending, then id, then id2 ascending */
static int by_rank(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    if (x->id != y->id) return x->id - y->id;
    return x->id2 - y->id2;
}

/* Merges as transformers' SentencePieceExtractor makes them: every split
 * of each piece into two pieces, pieces in score order, the splits of one
 * piece by (left id, right id). */
static cJSON *merges_json(const spelled *sp, int as_pairs) {
    cJSON *merges = cJSON_CreateArray();
    for (int k = 0; k < sp->n; k++) {
        int id = sp->by_score[k], n_splits = 0;
        const char *s = sp->s[id];
        size_t len = strlen(s);
        ranked split[64];
        if (q35_tokenizer_piece_type(sp->t, id) != Q35_PIECE_NORMAL) continue;
        for (size_t cut = 1; cut < len; cut++) {
            if ((s[cut] & 0xc0) == 0x80) continue; /* inside a character */
            int l = normal_id(sp, s, cut), r = normal_id(sp, s + cut, len - cut);
            if (l >= 0 && r >= 0) split[n_splits++] = (ranked){0, l, r};
        }
        qsort(split, (size_t)n_splits, sizeof *split, by_rank);
        for (int i = 0; i < n_splits; i++) {
            const char *a = sp->s[split[i].id], *b = sp->s[split[i].id2];
            if (as_pairs) {
                const char *pair[2] = {a, b};
                cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
            } else {
                char line[130];
                snprintf(line, sizeof line, "%s %s", a, b);
                cJSON_AddItemToArray(merges, cJSON_CreateString(line));
            }
        }
    }
    return merges;
}

/* style 0: LLaMA's original tokenizer.json (Prepend + Replace normalizer,
 * merges as "a b"); style 1: newer (Metaspace pre-tokenizer, [a, b]). */
static cJSON *tokenizer_json(const q35_tokenizer *t, int style) {
    spelled sp = {q35_tokenizer_n_vocab(t), NULL, NULL, t};
    sp.s = calloc((size_t)sp.n, sizeof *sp.s);
    sp.by_score = calloc((size_t)sp.n, sizeof *sp.by_score);
    ranked *order = calloc((size_t)sp.n, sizeof *order);
    for (int i = 0; i < sp.n; i++) {
        hf_spelling(t, i, sp.s[i], sizeof sp.s[i]);
        order[i] = (ranked){q35_tokenizer_score(t, i), i, 0};
    }
    qsort(order, (size_t)sp.n, sizeof *order, by_rank);
    for (int i = 0; i < sp.n; i++) sp.by_score[i] = order[i].id;
    free(order);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    for (int i = 0; i < sp.n; i++) {
        int type = q35_tokenizer_piece_type(t, i);
        if (type != Q35_PIECE_CONTROL && type != Q35_PIECE_UNKNOWN) continue;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", i);
        cJSON_AddStringToObject(a, "content", sp.s[i]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", 1);
        cJSON_AddItemToArray(added, a);
    }
    if (style == 0) {
        cJSON *norm = cJSON_AddObjectToObject(j, "normalizer");
        cJSON_AddStringToObject(norm, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(norm, "normalizers");
        cJSON *pre = cJSON_CreateObject(), *rep = cJSON_CreateObject();
        cJSON_AddStringToObject(pre, "type", "Prepend");
        cJSON_AddStringToObject(pre, "prepend", "\xe2\x96\x81");
        cJSON_AddStringToObject(rep, "type", "Replace");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(rep, "pattern"), "String", " ");
        cJSON_AddStringToObject(rep, "content", "\xe2\x96\x81");
        cJSON_AddItemToArray(list, pre);
        cJSON_AddItemToArray(list, rep);
        cJSON_AddNullToObject(j, "pre_tokenizer");
    } else {
        cJSON_AddNullToObject(j, "normalizer");
        cJSON *pre = cJSON_AddObjectToObject(j, "pre_tokenizer");
        cJSON_AddStringToObject(pre, "type", "Metaspace");
        cJSON_AddStringToObject(pre, "replacement", "\xe2\x96\x81");
        cJSON_AddStringToObject(pre, "prepend_scheme", "first");
        cJSON_AddBoolToObject(pre, "split", 0);
    }
    /* decoders as LLaMA's (style 0) and Mistral v0.3's (style 1) files */
    cJSON *dec = cJSON_AddObjectToObject(j, "decoder");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(dec, "decoders");
    cJSON *d0 = cJSON_CreateObject(), *d1 = cJSON_CreateObject(), *d2 = cJSON_CreateObject();
    if (style == 0) {
        cJSON_AddStringToObject(d0, "type", "Replace");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(d0, "pattern"), "String", "\xe2\x96\x81");
        cJSON_AddStringToObject(d0, "content", " ");
    } else {
        cJSON_AddStringToObject(d0, "type", "Metaspace");
        cJSON_AddStringToObject(d0, "replacement", "\xe2\x96\x81");
        cJSON_AddStringToObject(d0, "prepend_scheme", "first");
        cJSON_AddBoolToObject(d0, "split", 0);
    }
    cJSON_AddStringToObject(d1, "type", "ByteFallback");
    cJSON_AddStringToObject(d2, "type", "Fuse");
    cJSON_AddItemToArray(steps, d0);
    cJSON_AddItemToArray(steps, d1);
    cJSON_AddItemToArray(steps, d2);
    if (style == 0) {
        cJSON *d3 = cJSON_CreateObject();
        cJSON_AddStringToObject(d3, "type", "Strip");
        cJSON_AddStringToObject(d3, "content", " ");
        cJSON_AddNumberToObject(d3, "start", 1);
        cJSON_AddNumberToObject(d3, "stop", 0);
        cJSON_AddItemToArray(steps, d3);
    }
    /* BOS in front, as their TemplateProcessing puts it */
    cJSON *post = cJSON_AddObjectToObject(j, "post_processor");
    cJSON_AddStringToObject(post, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(post, "single");
    cJSON *e0 = cJSON_CreateObject(), *e1 = cJSON_CreateObject();
    cJSON *sp0 = cJSON_AddObjectToObject(e0, "SpecialToken");
    cJSON_AddStringToObject(sp0, "id", sp.s[1]);
    cJSON_AddNumberToObject(sp0, "type_id", 0);
    cJSON *seq = cJSON_AddObjectToObject(e1, "Sequence");
    cJSON_AddStringToObject(seq, "id", "A");
    cJSON_AddNumberToObject(seq, "type_id", 0);
    cJSON_AddItemToArray(single, e0);
    cJSON_AddItemToArray(single, e1);
    cJSON *named = cJSON_AddObjectToObject(cJSON_AddObjectToObject(post, "special_tokens"), sp.s[1]);
    cJSON_AddStringToObject(named, "id", sp.s[1]);
    cJSON_AddItemToObject(named, "ids", cJSON_CreateIntArray((const int[]){1}, 1));
    cJSON *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddBoolToObject(model, "fuse_unk", 1);
    cJSON_AddBoolToObject(model, "byte_fallback", 1);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < sp.n; i++) cJSON_AddNumberToObject(vocab, sp.s[i], i);
    cJSON_AddItemToObject(model, "merges", merges_json(&sp, style == 1));
    free(sp.s);
    free(sp.by_score);
    return j;
}

/* ---- checks ---------------------------------------------------------------- */

static uint64_t numel(const q35_tensor *t) {
    return (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
}

static float rounded(int dtype, float x) {
    if (dtype == Q35_DTYPE_F16) return q35_f16_to_f32(q35_f32_to_f16(x));
    if (dtype == Q35_DTYPE_BF16) return q35_bf16_to_f32(q35_f32_to_bf16(x));
    return x;
}

/* Every tensor of ref is in w with the same shape and values (stored as
 * dtype, or fp32 for q and k). */
static void check_tensors(const char *label, const q35_weights *ref, const q35_weights *w,
                          int dtype) {
    int bad = 0;
    for (int i = 0; i < ref->n_tensors && !bad; i++) {
        const q35_tensor *a = &ref->tensors[i], *b = q35_weights_find(w, a->name);
        if (!b || memcmp(a->ne, b->ne, sizeof a->ne) != 0 || a->n_dims != b->n_dims) {
            CHECKF(0, "%s: tensor %s missing or of another shape", label, a->name);
            bad = 1;
            break;
        }
        int is_qk = strstr(a->name, "attn_q.") || strstr(a->name, "attn_k.");
        int want = is_qk ? Q35_DTYPE_F32 : dtype;
        if (b->dtype != want) {
            CHECKF(0, "%s: %s has dtype %d, expected %d", label, a->name, b->dtype, want);
            bad = 1;
            break;
        }
        uint64_t n = numel(a);
        float *x = malloc(n * sizeof *x);
        q35_dtype_get(b->dtype)->to_f32(b->data, x, (int64_t)n);
        const float *r = a->data;
        for (uint64_t k = 0; k < n && !bad; k++) {
            float expect = rounded(dtype, r[k]);
            if (memcmp(&x[k], &expect, 4) != 0) {
                CHECKF(0, "%s: %s[%llu] = %.9g, expected %.9g", label, a->name,
                       (unsigned long long)k, (double)x[k], (double)expect);
                bad = 1;
            }
        }
        if (b->dtype == Q35_DTYPE_F32 && (uintptr_t)b->data % 4 != 0) {
            CHECKF(0, "%s: %s is F32 at a misaligned address", label, a->name);
            bad = 1;
        }
        free(x);
    }
    CHECKF(!bad, "%s: tensors equal the .bin's", label);
}

static void check_config(const char *label, const q35_config *a, const q35_config *b) {
    CHECKF(a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
               a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
               a->vocab_size == b->vocab_size && a->seq_len == b->seq_len &&
               a->head_dim == b->head_dim && a->rms_eps == b->rms_eps &&
               a->rope_theta == b->rope_theta && a->shared_classifier == b->shared_classifier,
           "%s: config differs from the .bin's", label);
}

/* Loads dir (or file) and compares with ref. */
static void check_variant(const char *label, const char *path, const q35_weights *ref, int dtype,
                          int n_tensors, q35_weights *keep) {
    q35_weights w;
    q35_error err = {0};
    int rc = q35_hf_load_weights(&w, path, &err);
    CHECKF(rc == 0, "%s: %s", label, err.msg);
    if (rc == 0) {
        check_config(label, &ref->cfg, &w.cfg);
        CHECKF(w.n_tensors == n_tensors, "%s: %d tensors, expected %d", label, w.n_tensors,
               n_tensors);
        check_tensors(label, ref, &w, dtype);
    }
    if (keep && rc == 0) *keep = w;
    else q35_weights_free(&w);
}

static int same_ids(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* The HF tokenizer encodes like the .bin one: every dev line and a few
 * awkward strings; same bos/eos, kinds and decoded text for every id. With
 * a Metaspace pre-tokenizer (metaspace = 1) texts that start with a space
 * or U+2581 are left out: tokenizers' Metaspace does not prepend "▁" to
 * them where sentencepiece's dummy prefix does (both q35 follows). */
static void check_tokenizer(const char *label, const q35_tokenizer *ref, const q35_tokenizer *t,
                            int metaspace) {
    CHECKF(t && q35_tokenizer_n_vocab(t) == q35_tokenizer_n_vocab(ref), "%s: vocab size", label);
    if (!t) return;
    CHECKF(q35_tokenizer_bos(t) == 1 && q35_tokenizer_eos(t) == 2, "%s: bos %d eos %d", label,
           q35_tokenizer_bos(t), q35_tokenizer_eos(t));
    CHECK(q35_tokenizer_options(t)->add_dummy_prefix == 1 &&
          q35_tokenizer_options(t)->remove_extra_whitespaces == 0);
    int same_kinds = 1, same_text = 1;
    for (int i = 0; i < q35_tokenizer_n_vocab(ref); i++) {
        char a[64], b[64];
        same_kinds &= q35_tokenizer_piece_type(ref, i) == q35_tokenizer_piece_type(t, i);
        /* sentencepiece shows <unk> as " \u2047 "; tokenizers skips it */
        if (q35_tokenizer_piece_type(ref, i) == Q35_PIECE_UNKNOWN) continue;
        size_t na = q35_tokenizer_decode(ref, 5, i, a, sizeof a);
        size_t nb = q35_tokenizer_decode(t, 5, i, b, sizeof b);
        same_text &= na == nb && memcmp(a, b, na) == 0;
    }
    CHECKF(same_kinds, "%s: piece kinds differ", label);
    CHECKF(same_text, "%s: decoded pieces differ", label);

    char path[1024], line[8192];
    FILE *f = fopen(shared_path(path, sizeof path, "data/tinystories-dev.txt"), "r");
    CHECK(f != NULL);
    const char *extra[] = {"", " ", "   two  spaces  ", "héllo wörld ✓ 日本語 ☃",
                           "\xff\xfe bad bytes \xc3", "tab\tnew\nline", "<s> </s> <unk>",
                           "\xe2\x96\x81 literal lower eighth"};
    int lines = 0, differ = 0, n_extra = (int)(sizeof extra / sizeof extra[0]);
    for (int k = 0;; k++) {
        const char *s;
        if (k < n_extra) s = extra[k];
        else if (f && fgets(line, sizeof line, f)) s = line;
        else break;
        int *ia = NULL, *ib = NULL, na = 0, nb = 0;
        q35_error err;
        if (metaspace && (s[0] == ' ' || strncmp(s, "\xe2\x96\x81", 3) == 0)) continue;
        int ra = q35_tokenizer_encode(ref, s, strlen(s), 1, &ia, &na, &err);
        int rb = q35_tokenizer_encode(t, s, strlen(s), 1, &ib, &nb, &err);
        if (ra || rb || !same_ids(ia, na, ib, nb)) {
            if (differ++ < 3) fprintf(stderr, "%s: encodings differ for: %s\n", label, s);
        }
        free(ia);
        free(ib);
        lines++;
    }
    if (f) fclose(f);
    CHECKF(differ == 0 && lines > 3000, "%s: %d of %d texts encode differently", label, differ,
           lines);
}

/* ---- hostile inputs ------------------------------------------------------- */

/* Loading path fails with a one-line message naming `names`; code 0 takes
 * any error code. */
static void expect_fail(const char *label, const char *path, const char *names, int code) {
    q35_weights w;
    q35_error err = {0};
    int rc = q35_hf_load_weights(&w, path, &err);
    CHECKF(rc != 0 && rc == err.code && (code == 0 || rc == code) && !strchr(err.msg, '\n') &&
               strstr(err.msg, names),
           "%s: rc %d (want %d), message: %s", label, rc, code, err.msg);
    q35_weights_free(&w);
}

/* The same for the tokenizer of a folder. */
static void expect_tok_fail(const char *label, const char *dir, const char *names, int code) {
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    int rc = q35_tokenizer_load_hf(&t, dir, &err);
    CHECKF(rc != 0 && !t && rc == err.code && (code == 0 || rc == code) &&
               !strchr(err.msg, '\n') && strstr(err.msg, names),
           "%s: rc %d (want %d), message: %s", label, rc, code, err.msg);
    q35_tokenizer_free(t);
}

/* A safetensors file: 8-byte length (header_len, or the header's own
 * length when ~0), the header bytes, data_len zero bytes. */
static void write_st_raw(const char *path, const char *header, size_t hlen, uint64_t header_len,
                         size_t data_len) {
    uint8_t *buf = calloc(8 + hlen + data_len, 1);
    uint64_t n = header_len == ~0ull ? hlen : header_len;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, header, hlen);
    write_bytes(path, buf, 8 + hlen + data_len);
    free(buf);
}

static void st_case(const char *dir, const char *label, const char *header, size_t data_len,
                    int code) {
    char p[1024];
    write_st_raw(in_dir(p, dir, "model.safetensors"), header, strlen(header), ~0ull, data_len);
    expect_fail(label, dir, p, code);
}

static void hostile_safetensors(const q35_config *cfg) {
    char dir[1024], p[1024];
    make_dir(dir, "bad-st");
    cJSON *c = config_json(cfg, 1);
    write_json(dir, "config.json", c);
    cJSON_Delete(c);
    in_dir(p, dir, "model.safetensors");

    /* the base case loads: each failure below is its own defect */
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    write_st_raw(p, ok, strlen(ok), ~0ull, 8);
    q35_weights w;
    q35_error err = {0};
    CHECKF(q35_hf_load_weights(&w, dir, &err) == 0, "base case: %s", err.msg);
    q35_weights_free(&w);

    write_st_raw(p, ok, strlen(ok), strlen(ok) + 100, 8);
    expect_fail("header length > file", dir, p, F);
    write_st_raw(p, ok, strlen(ok), 1ull << 63, 8);
    expect_fail("header length 2^63", dir, p, F);
    write_bytes(p, "\x10\0\0\0\0", 5);
    expect_fail("file shorter than 8 bytes", dir, p, F);
    write_st_raw(p, ok, 20, ~0ull, 0);
    expect_fail("truncated header", dir, p, F);
    write_bytes(p, "", 0);
    expect_fail("empty file", dir, p, F);
    {   /* over the 100 MB limit, in a sparse file long enough to hold it */
        uint64_t big = 100000001;
        write_st_raw(p, ok, strlen(ok), big, 0);
        CHECK(truncate(p, (off_t)(8 + big + 8)) == 0);
        expect_fail("header over 100 MB", dir, p, F);
    }
    st_case(dir, "invalid JSON", "{\"a\":{\"dtype\":\"F32\",}", 0, F);
    st_case(dir, "header not an object", "[1, 2]", 0, F);
    st_case(dir, "text after the JSON", "{} x", 0, F);
    st_case(dir, "entry not an object", "{\"a\": 3}", 0, F);
    st_case(dir, "no dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "no shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "no data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, F);
    st_case(dir, "unknown field",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, F);
    st_case(dir, "repeated field",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"shape\":[2],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "string shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}",
            8, F);
    st_case(dir, "float offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8]}}",
            8, F);
    st_case(dir, "string offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}",
            8, F);
    st_case(dir, "three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}",
            8, F);
    st_case(dir, "numeric dtype", "{\"a\":{\"dtype\":1,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "dtype I8", "{\"a\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, U);
    st_case(dir, "dtype F64", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, U);
    st_case(dir, "five dimensions",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "negative dimension",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "fractional dimension",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "dimension product overflows",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
            "\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "byte size overflows",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,4294967296],\"data_offsets\":[0,8]}}", 8,
            F);
    st_case(dir, "offsets beyond the data",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, F);
    st_case(dir, "huge offsets",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1e300,1e300]}}", 8, F);
    st_case(dir, "end < begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, F);
    st_case(dir, "size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
            12, F);
    st_case(dir, "overlapping tensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, F);
    st_case(dir, "duplicate names",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, F);
    st_case(dir, "invalid UTF-8",
            "{\"\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "overlong UTF-8",
            "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "metadata not strings", "{\"__metadata__\":{\"a\":1}}", 0, F);
    st_case(dir, "metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, F);
    {
        char h[512];
        snprintf(h, sizeof h, "{\"%0300d\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0);
        st_case(dir, "name too long", h, 8, F);
    }
    {
        const char nul[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}\0  ";
        write_st_raw(p, nul, sizeof nul - 1, ~0ull, 8);
        expect_fail("NUL in the header", dir, p, F);
    }
    /* tensors q35 uses, checked as they are renamed */
    st_case(dir, "q_proj of the wrong shape",
            "{\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[2],"
            "\"data_offsets\":[0,8]}}", 8, F);
    st_case(dir, "layer beyond num_hidden_layers",
            "{\"model.layers.5.mlp.up_proj.weight\":{\"dtype\":\"F32\",\"shape\":[2],"
            "\"data_offsets\":[0,8]}}", 8, F);
    expect_fail("no such path", "/nonexistent/q35-model", "/nonexistent/q35-model", Q35_ERR_IO);
    unlink(p);
    expect_fail("no safetensors in the folder", dir, dir, Q35_ERR_IO);
}

static void hostile_index(const q35_config *cfg) {
    char dir[1024], p[1024];
    make_dir(dir, "bad-index");
    cJSON *c = config_json(cfg, 1);
    write_json(dir, "config.json", c);
    cJSON_Delete(c);
    const char *shard = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    write_st_raw(in_dir(p, dir, "s1.safetensors"), shard, strlen(shard), ~0ull, 8);
    in_dir(p, dir, "model.safetensors.index.json");
    static const struct {
        const char *label, *json, *names;
        int code;
    } cases[] = {
        {"index: loads", "{\"weight_map\":{\"a\":\"s1.safetensors\"}}", NULL, 0},
        {"index: ../ shard", "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", "index.json", F},
        {"index: shard in a subfolder", "{\"weight_map\":{\"a\":\"x/s1.safetensors\"}}",
         "index.json", F},
        {"index: absolute shard", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "index.json", F},
        {"index: missing shard", "{\"weight_map\":{\"a\":\"s9.safetensors\"}}", "s9.safetensors", IO},
        {"index: tensor not in its shard", "{\"weight_map\":{\"b\":\"s1.safetensors\"}}",
         "s1.safetensors", F},
        {"index: tensor listed twice",
         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\"}}", "index.json", F},
        {"index: shard not a string", "{\"weight_map\":{\"a\":1}}", "index.json", F},
        {"index: weight_map not an object", "{\"weight_map\":[\"s1.safetensors\"]}", "index.json", F},
        {"index: empty weight_map", "{\"weight_map\":{}}", "index.json", F},
        {"index: invalid JSON", "{\"weight_map\":", "index.json", F},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(dir, "model.safetensors.index.json", cases[i].json);
        if (!cases[i].names) {
            q35_weights w;
            q35_error err = {0};
            CHECKF(q35_hf_load_weights(&w, dir, &err) == 0, "%s: %s", cases[i].label, err.msg);
            q35_weights_free(&w);
        } else {
            expect_fail(cases[i].label, dir, cases[i].names, cases[i].code);
        }
    }
}

/* config.json variants: each edit on a fresh copy of the good one. */
static void hostile_config(const q35_config *cfg) {
    char dir[1024], p[1024];
    make_dir(dir, "bad-config");
    in_dir(p, dir, "config.json");
    static const struct {
        const char *label, *key, *value; /* value NULL: delete the key */
        int code;
    } cases[] = {
        {"config: no hidden_size", "hidden_size", NULL, F},
        {"config: no vocab_size", "vocab_size", NULL, F},
        {"config: string layers", "num_hidden_layers", "\"5\"", F},
        {"config: fractional heads", "num_attention_heads", "8.5", F},
        {"config: huge dim", "hidden_size", "1e12", F},
        {"config: heads do not divide dim", "num_attention_heads", "7", F},
        {"config: zero kv heads", "num_key_value_heads", "0", F},
        {"config: string eps", "rms_norm_eps", "\"1e-5\"", F},
        {"config: rope_theta 0", "rope_theta", "0", F},
        {"config: tie not a bool", "tie_word_embeddings", "\"yes\"", F},
        {"config: rope_scaling yarn", "rope_scaling", "{\"rope_type\":\"yarn\",\"factor\":2.0}", U},
        {"config: gelu", "hidden_act", "\"gelu\"", U},
        {"config: attention bias", "attention_bias", "true", U},
        {"config: odd head_dim", "head_dim", "3", F},
        {"config: architectures not an array", "architectures", "\"LlamaForCausalLM\"", F},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *c = config_json(cfg, 1);
        cJSON_DeleteItemFromObject(c, cases[i].key);
        if (cases[i].value) cJSON_AddItemToObject(c, cases[i].key, cJSON_Parse(cases[i].value));
        write_json(dir, "config.json", c);
        cJSON_Delete(c);
        expect_fail(cases[i].label, dir, p, cases[i].code);
    }
    cJSON *c = config_json(cfg, 1);
    cJSON_DeleteItemFromObject(c, "architectures");
    cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("gpt2"));
    cJSON_AddItemToObject(c, "architectures", cJSON_Parse("[\"GPT2LMHeadModel\"]"));
    write_json(dir, "config.json", c);
    cJSON_Delete(c);
    expect_fail("config: GPT-2", dir, "GPT2LMHeadModel", Q35_ERR_UNSUPPORTED);
    write_text(dir, "config.json", "{\"hidden_size\": 64,");
    expect_fail("config: invalid JSON", dir, p, Q35_ERR_FORMAT);
    write_text(dir, "config.json", "[64]");
    expect_fail("config: not an object", dir, p, Q35_ERR_FORMAT);
    write_text(dir, "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"x\": \"\xc3\x28\"}");
    expect_fail("config: invalid UTF-8", dir, p, Q35_ERR_FORMAT);
    unlink(p);
    expect_fail("config: missing", dir, p, Q35_ERR_IO);
}

/* A small tokenizer.json for the hostile cases and the fuzzer's seeds:
 * "{N}" in the template below is replaced by each case's edit. */
static const char tiny_tokenizer[] =
    "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
    "\"\xe2\x96\x81\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":"
    "\"\xe2\x96\x81\"}]},\"pre_tokenizer\":null,"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"\xe2\x96\x81\":3,\"a\":4,\"b\":5,"
    "\"\xe2\x96\x81" "a\":6,\"ab\":7,\"<0x41>\":8},"
    "\"merges\":[\"\xe2\x96\x81 a\",\"a b\"]}}";

/* tiny_tokenizer with its first `from` replaced by `to`. */
static char *edited(const char *from, const char *to) {
    const char *at = strstr(tiny_tokenizer, from);
    if (!at) {
        fprintf(stderr, "edit %s not found\n", from);
        exit(2);
    }
    size_t n = strlen(tiny_tokenizer) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(at - tiny_tokenizer), tiny_tokenizer, to, at + strlen(from));
    return s;
}

static void check_tiny_tokenizer(void) {
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    int rc = q35_tokenizer_from_json(&t, tiny_tokenizer, strlen(tiny_tokenizer), "tiny.json", NULL,
                                     0, NULL, &err);
    CHECKF(rc == 0, "tiny tokenizer: %s", err.msg);
    if (rc) return;
    int *ids = NULL, n = 0;
    CHECK(q35_tokenizer_encode(t, "a ab", 4, 1, &ids, &n, &err) == 0);
    /* "▁a▁ab": ▁+a (rank 0) twice, then a+b would be rank 1 but the a is
     * taken; no post-processor: nothing is added around the text */
    int want[] = {6, 6, 5};
    CHECKF(n == 3 && memcmp(ids, want, sizeof want) == 0, "tiny tokenizer ids");
    CHECK(q35_tokenizer_piece_type(t, 8) == Q35_PIECE_BYTE); /* byte_fallback: true */
    free(ids);
    q35_tokenizer_free(t);
}

static void hostile_tokenizer(const q35_config *cfg) {
    char dir[1024], p[1024];
    make_dir(dir, "bad-tok");
    q35_config small = *cfg;
    small.vocab_size = 9;
    cJSON *c = config_json(&small, 1);
    write_json(dir, "config.json", c);
    cJSON_Delete(c);
    write_st_raw(in_dir(p, dir, "model.safetensors"), "{}", 2, ~0ull, 0);
    in_dir(p, dir, "tokenizer.json");
    write_text(dir, "tokenizer.json", tiny_tokenizer);
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    CHECKF(q35_tokenizer_load_hf(&t, dir, &err) == 0 && q35_tokenizer_n_vocab(t) == 9,
           "tiny tokenizer folder: %s", err.msg);
    q35_tokenizer_free(t);

    static const struct {
        const char *label, *from, *to;
        int code;
    } cases[] = {
        {"tokenizer: invalid JSON", "\"merges\":[", "\"merges\":", F},
        {"tokenizer: Unigram", "\"type\":\"BPE\"", "\"type\":\"Unigram\"", U},
        {"tokenizer: WordPiece", "\"type\":\"BPE\"", "\"type\":\"WordPiece\"", U},
        {"tokenizer: UnicodeScripts", "\"pre_tokenizer\":null",
         "\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"}", U},
        {"tokenizer: CTC decoder", "\"pre_tokenizer\":null",
         "\"pre_tokenizer\":null,\"decoder\":{\"type\":\"CTC\"}", U},
        {"tokenizer: Lowercase", "{\"type\":\"Prepend\"", "{\"type\":\"Lowercase\"},{\"type\":\"Prepend\"", U},
        {"tokenizer: regex does not compile", "\"pre_tokenizer\":null",
         "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a|b\"},"
         "\"behavior\":\"Isolated\",\"invert\":false}", F},
        {"tokenizer: duplicate ids", "\"b\":5", "\"b\":4", F},
        {"tokenizer: gap in ids", "\"<0x41>\":8", "\"<0x41>\":9", F},
        {"tokenizer: negative id", "\"b\":5", "\"b\":-5", F},
        {"tokenizer: string id", "\"b\":5", "\"b\":\"5\"", F},
        {"tokenizer: duplicate piece", "\"<0x41>\":8", "\"b\":8", F},
        {"tokenizer: added token clash", "\"content\":\"</s>\"", "\"content\":\"<eos>\"", F},
        {"tokenizer: added token not an object", "[{\"id\":0,", "[7,{\"id\":0,", F},
        {"tokenizer: merge of unknown pieces", "\"a b\"", "\"a c\"", F},
        {"tokenizer: merge of three", "\"a b\"", "\"a b c\"", F},
        {"tokenizer: merge not a string", "\"a b\"", "5", F},
        {"tokenizer: merges not an array", "\"merges\":[\"\xe2\x96\x81 a\",\"a b\"]",
         "\"merges\":{}", F},
        {"tokenizer: vocab not an object", "\"vocab\":{", "\"vocab\":3,\"x\":{", F},
        {"tokenizer: unk_token absent", "\"unk_token\":\"<unk>\"", "\"unk_token\":\"<u>\"", F},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = edited(cases[i].from, cases[i].to);
        write_text(dir, "tokenizer.json", s);
        free(s);
        expect_tok_fail(cases[i].label, dir, p, cases[i].code);
    }
    write_text(dir, "tokenizer.json", "{\"model\": 1}");
    expect_tok_fail("tokenizer: model not an object", dir, p, Q35_ERR_FORMAT);
    write_text(dir, "tokenizer.json", tiny_tokenizer);
    write_text(dir, "tokenizer_config.json", "{\"bos_token\": {\"content\": \"<nope>\"}}");
    expect_tok_fail("tokenizer_config: unknown bos", dir, "tokenizer_config.json", Q35_ERR_FORMAT);
    write_text(dir, "tokenizer_config.json", "{\"bos_token\": \"</s>\", \"eos_token\": \"<s>\"}");
    t = NULL;
    CHECKF(q35_tokenizer_load_hf(&t, dir, &err) == 0 && q35_tokenizer_bos(t) == 2 &&
               q35_tokenizer_eos(t) == 1,
           "tokenizer_config names bos/eos: %s", err.msg);
    q35_tokenizer_free(t);
    in_dir(p, dir, "tokenizer_config.json");
    unlink(p);
}

/* ---- fuzzer seeds ----------------------------------------------------------- */

static void write_seeds(const char *root, const q35_weights *ref) {
    char dir[1024], p[1024];
    snprintf(dir, sizeof dir, "%s/fuzz_safetensors", root);
    mkdir(dir, 0755);
    /* one layer's norm and k_proj-sized data, in each dtype */
    hf_model m;
    hf_tensors(&m, ref, 0);
    hf_model small = {.n = 0, .cfg = m.cfg};
    small.t[small.n++] = m.t[1]; /* model.norm.weight */
    small.t[small.n++] = m.t[m.n - 1]; /* inv_freq */
    small.t[small.n] = m.t[3]; /* a q_proj cut to 2 rows of 4 */
    small.t[small.n].shape[0] = 2;
    small.t[small.n].shape[1] = 4;
    small.t[small.n++].heads = 0;
    write_safetensors(in_dir(p, dir, "f32.safetensors"), &small, 0, 1, Q35_DTYPE_F32, 0);
    write_safetensors(in_dir(p, dir, "f16.safetensors"), &small, 0, 1, Q35_DTYPE_F16, 1);
    write_safetensors(in_dir(p, dir, "bf16.safetensors"), &small, 0, 1, Q35_DTYPE_BF16, 0);
    const char *two = "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[1,1,1,2],\"data_offsets\":[4,8]}}";
    write_st_raw(in_dir(p, dir, "scalar-4d.safetensors"), two, strlen(two), ~0ull, 8);

    snprintf(dir, sizeof dir, "%s/fuzz_tokenizer_json", root);
    mkdir(dir, 0755);
    write_text(dir, "tiny.json", tiny_tokenizer);
    char *s = edited("\"pre_tokenizer\":null",
                     "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\","
                     "\"prepend_scheme\":\"first\",\"split\":false}");
    write_text(dir, "metaspace.json", s);
    free(s);
    s = edited("\"merges\":[\"\xe2\x96\x81 a\",\"a b\"]",
               "\"merges\":[[\"\xe2\x96\x81\",\"a\"],[\"a\",\"b\"]]");
    write_text(dir, "pairs.json", s);
    free(s);
    s = edited("{\"id\":2,\"content\":\"</s>\",\"special\":true}",
               "{\"id\":2,\"content\":\"</s>\",\"special\":true},"
               "{\"id\":9,\"content\":\"<|user|>\",\"special\":false}");
    write_text(dir, "added.json", s);
    free(s);
}

/* ---- end to end --------------------------------------------------------- */

#if Q35_TEST_HF_MODEL
/* Logits at positions 0-3 through q35_model_load: the HF folder against
 * the .bin (bit for bit when F32), and the same token ids. */
static void check_logits(const char *label, const char *bin, const char *tok, const char *hf,
                         double tol) {
    q35_model *a = NULL, *b = NULL;
    q35_session *sa = NULL, *sb = NULL;
    q35_error err = {0};
    int rc = q35_model_load(&a, bin, tok, &err);
    CHECKF(rc == 0, "%s: .bin: %s", label, err.msg);
    if (!rc) rc = q35_model_load(&b, hf, NULL, &err);
    CHECKF(rc == 0, "%s: HF folder: %s", label, err.msg);
    if (!rc) rc = q35_session_new(&sa, a, 1, &err) || q35_session_new(&sb, b, 1, &err);
    if (!rc) {
        const char *text = "Once upon a time";
        int *ia = NULL, *ib = NULL, na = 0, nb = 0;
        CHECK(q35_tokenize(a, text, strlen(text), 1, &ia, &na, &err) == 0);
        CHECK(q35_tokenize(b, text, strlen(text), 1, &ib, &nb, &err) == 0);
        CHECKF(same_ids(ia, na, ib, nb) && na >= 4, "%s: prompt ids differ", label);
        double worst = 0;
        const int V = q35_model_config(a)->vocab_size;
        for (int pos = 0; pos < 4 && pos < na; pos++) {
            const float *la, *lb;
            CHECK(q35_session_eval(sa, ia[pos], &la, &err) == 0);
            CHECK(q35_session_eval(sb, ia[pos], &lb, &err) == 0);
            for (int i = 0; i < V; i++) worst = fmax(worst, fabs((double)la[i] - lb[i]));
        }
        CHECKF(worst <= tol, "%s: logits differ by %.3g (tolerance %.3g)", label, worst, tol);
        free(ia);
        free(ib);
    }
    q35_session_free(sa);
    q35_session_free(sb);
    q35_model_free(a);
    q35_model_free(b);
}
#endif

/* ---- main ------------------------------------------------------------------ */

int main(void) {
    char bin[1024], tokp[1024], dir[1024], p[1024];
    q35_error err = {0};
    snprintf(tmpdir, sizeof tmpdir, "/tmp/q35-test-hf-XXXXXX");
    if (!mkdtemp(tmpdir)) return 2;

    q35_weights ref;
    q35_tokenizer *tok = NULL;
    shared_path(bin, sizeof bin, "models/stories260K/stories260K.bin");
    shared_path(tokp, sizeof tokp, "models/stories260K/tok512.bin");
    CHECK(q35_llama2c_load(&ref, bin, &err) == 0);
    CHECK(q35_tokenizer_load_llama2c(&tok, tokp, 512, &err) == 0);
    if (!tok || !ref.n_tensors) TEST_END();
    const q35_config *cfg = &ref.cfg;
    const int n_ref = ref.n_tensors;

    /* the tokenizer, in both tokenizer.json styles */
    cJSON *tj[2] = {tokenizer_json(tok, 0), tokenizer_json(tok, 1)};
    for (int style = 0; style < 2; style++) {
        char *s = cJSON_PrintUnformatted(tj[style]);
        q35_tokenizer *t = NULL;
        int rc = q35_tokenizer_from_json(&t, s, strlen(s), "tokenizer.json", NULL, 0, NULL, &err);
        CHECKF(rc == 0, "tokenizer.json style %d: %s", style, err.msg);
        check_tokenizer(style ? "tokenizer.json (Metaspace, pairs)" : "tokenizer.json (LLaMA)",
                        tok, t, style);
        q35_tokenizer_free(t);
        free(s);
    }
    check_tiny_tokenizer();

    /* F32, F16, BF16 single files; the F32 one aligned and misaligned */
    hf_model m, mu;
    hf_tensors(&m, &ref, 0);
    hf_tensors(&mu, &ref, 1);
    static const struct {
        const char *name;
        int dtype, misalign, untied, shards;
    } variants[] = {
        {"hf-f32", Q35_DTYPE_F32, 0, 0, 0},      {"hf-f32-misaligned", Q35_DTYPE_F32, 1, 0, 0},
        {"hf-f16", Q35_DTYPE_F16, 0, 0, 0},      {"hf-bf16", Q35_DTYPE_BF16, 1, 0, 0},
        {"hf-f32-untied", Q35_DTYPE_F32, 0, 1, 0}, {"hf-f32-sharded", Q35_DTYPE_F32, 0, 0, 3},
        {"hf-bf16-sharded", Q35_DTYPE_BF16, 1, 1, F},
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const hf_model *hm = variants[v].untied ? &mu : &m;
        make_dir(dir, variants[v].name);
        cJSON *c = config_json(cfg, !variants[v].untied);
        write_json(dir, "config.json", c);
        cJSON_Delete(c);
        write_json(dir, "tokenizer.json", tj[v % 2]);
        int shards = variants[v].shards;
        if (!shards) {
            write_safetensors(in_dir(p, dir, "model.safetensors"), hm, 0, 1, variants[v].dtype,
                              variants[v].misalign);
        } else {
            cJSON *index = cJSON_CreateObject(), *map;
            cJSON_AddNumberToObject(cJSON_AddObjectToObject(index, "metadata"), "total_size", 0);
            map = cJSON_AddObjectToObject(index, "weight_map");
            for (int s = 0; s < shards; s++) {
                char name[64];
                snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
                write_safetensors(in_dir(p, dir, name), hm, s, shards, variants[v].dtype,
                                  variants[v].misalign);
                for (int i = s; i < hm->n; i += shards)
                    cJSON_AddStringToObject(map, hm->t[i].name, name);
            }
            write_json(dir, "model.safetensors.index.json", index);
            cJSON_Delete(index);
        }
        if (v == 5) /* bos/eos named by tokenizer_config.json */
            write_text(dir, "tokenizer_config.json",
                       "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}}");
        q35_weights w;
        memset(&w, 0, sizeof w);
        q35_config want = *cfg;
        want.shared_classifier = !variants[v].untied;
        q35_weights r2 = ref;
        r2.cfg = want;
        check_variant(variants[v].name, dir, &r2, variants[v].dtype,
                      n_ref + variants[v].untied, &w);
        if (!w.tensors) continue;
        q35_tokenizer *ht = NULL;
        q35_error terr = {0};
        CHECKF(q35_tokenizer_load_hf(&ht, dir, &terr) == 0, "%s: %s", variants[v].name, terr.msg);
        check_tokenizer(variants[v].name, tok, ht, (int)(v % 2));
        q35_tokenizer_free(ht);
        if (variants[v].untied) {
            const q35_tensor *o = q35_weights_find(&w, "output.weight");
            CHECKF(o && o->ne[0] == cfg->dim && o->ne[1] == cfg->vocab_size,
                   "%s: output.weight", variants[v].name);
        }
        if (shards) {
            char want_fmt[32];
            snprintf(want_fmt, sizeof want_fmt, "safetensors (%d shards)", shards);
            CHECKF(strcmp(w.format, want_fmt) == 0 && w.n_extra_files == shards,
                   "%s: format \"%s\"", variants[v].name, w.format);
        } else {
            CHECK(strcmp(w.format, "safetensors") == 0);
        }
        if (v == 0) { /* aligned F32 is used in place; only q and k are copied */
            const q35_tensor *e = q35_weights_find(&w, "token_embd.weight");
            CHECK(e && (const uint8_t *)e->data >= w.file.data &&
                  (const uint8_t *)e->data < w.file.data + w.file.size);
            CHECKF(w.n_owned == 2 * cfg->n_layers, "%d owned buffers", w.n_owned);
        }
        if (v == 1) /* misaligned F32: every other tensor copied too */
            CHECKF(w.n_owned == n_ref, "misaligned: %d owned buffers", w.n_owned);
        q35_weights_free(&w);
    }

    /* a .safetensors path instead of the folder */
    make_dir(dir, "hf-f32");
    check_variant("hf-f32 by file name", in_dir(p, dir, "model.safetensors"), &ref,
                  Q35_DTYPE_F32, n_ref, NULL);

#if Q35_TEST_HF_MODEL
    check_logits("F32 folder", bin, tokp, make_dir(dir, "hf-f32"), 0.0);
    check_logits("F32 sharded folder", bin, tokp, make_dir(dir, "hf-f32-sharded"), 0.0);
    /* weights rounded to F16 / BF16 (measured: 0.017 and 0.079) */
    check_logits("F16 folder", bin, tokp, make_dir(dir, "hf-f16"), 0.05);
    check_logits("BF16 folder", bin, tokp, make_dir(dir, "hf-bf16"), 0.25);
#endif

    hostile_safetensors(cfg);
    hostile_index(cfg);
    hostile_config(cfg);
    hostile_tokenizer(cfg);

    const char *seeds = getenv("Q35_FUZZ_SEEDS");
    if (seeds && *seeds) write_seeds(seeds, &ref);

    cJSON_Delete(tj[0]);
    cJSON_Delete(tj[1]);
    q35_tokenizer_free(tok);
    q35_weights_free(&ref);
    snprintf(p, sizeof p, "rm -rf '%s'", tmpdir);
    CHECK(system(p) == 0);
    TEST_END();
}
