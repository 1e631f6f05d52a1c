/* hf.c — Hugging Face checkpoints (see hf.h): config.json, tensor renaming
 * with the q/k un-permutation and the folder layout (single file or
 * shards), ending in q35_hf_load_weights. The safetensors container is in
 * safetensors.c and the JSON helpers in hf_json.c (shared through
 * hf_internal.h); the tokenizer module reads tokenizer.json.
 *
 * Choices:
 *  - JSON text and integers: see hf_json.c.
 *  - F32 tensors are used in place in the mapping when 4-byte aligned,
 *    else copied to an owned buffer (the engine reads them as float *).
 *    F16 and BF16 stay as stored: their converters read bytes.
 *  - q_proj and k_proj are un-permuted into owned fp32 (add_unpermuted). */
#include "io/hf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "format/dtype.h"
#include "io/hf_internal.h"
#include "io/llama2c.h"

/* ---- config.json ------------------------------------------------------- */

/* An integer member; def when absent or null, unless required. */
static int member_int(const cJSON *obj, const char *key, int required, int def, int *out,
                      const char *file, q35_error *err) {
    const cJSON *v = q35_hf_member(obj, key);
    int64_t x;
    if (q35_hf_absent(v)) {
        if (required) return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is missing", file, key);
        *out = def;
        return Q35_OK;
    }
    if (q35_hf_json_int(v, INT_MIN, INT_MAX, &x))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is not an integer (of int range)", file,
                        key);
    *out = (int)x;
    return Q35_OK;
}

/* A number member; def when absent or null. */
static int member_float(const cJSON *obj, const char *key, double def, float *out,
                        const char *file, q35_error *err) {
    const cJSON *v = q35_hf_member(obj, key);
    if (q35_hf_absent(v)) {
        *out = (float)def;
        return Q35_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is not a finite number", file, key);
    *out = (float)v->valuedouble;
    return Q35_OK;
}

/* architectures holds "LlamaForCausalLM", or model_type is "llama". */
static int check_architecture(const cJSON *root, const char *file, q35_error *err) {
    const cJSON *arch = q35_hf_member(root, "architectures");
    const cJSON *type = q35_hf_member(root, "model_type");
    const char *named = NULL;
    if (!q35_hf_absent(arch)) {
        if (!cJSON_IsArray(arch))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: \"architectures\" is not an array", file);
        const cJSON *a;
        cJSON_ArrayForEach(a, arch) {
            if (!cJSON_IsString(a))
                return q35_fail(err, Q35_ERR_FORMAT, "%s: \"architectures\" holds a non-string",
                                file);
            if (strcmp(a->valuestring, "LlamaForCausalLM") == 0) return Q35_OK;
            if (!named) named = a->valuestring;
        }
    }
    if (!q35_hf_absent(type)) {
        if (!cJSON_IsString(type))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: \"model_type\" is not a string", file);
        if (strcmp(type->valuestring, "llama") == 0) return Q35_OK;
        if (!named) named = type->valuestring;
    }
    return q35_fail(err, Q35_ERR_UNSUPPORTED,
                    "%s: architecture %.64s is not supported (q35 runs LlamaForCausalLM)", file,
                    named ? named : "(none named)");
}

/* Llama options that change the computation and that q35 does not run. */
static int check_features(const cJSON *root, const char *file, q35_error *err) {
    if (!q35_hf_absent(q35_hf_member(root, "rope_scaling")))
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: \"rope_scaling\" is set; q35 runs unscaled RoPE only", file);
    const cJSON *act = q35_hf_member(root, "hidden_act");
    if (!q35_hf_absent(act) && !q35_hf_is_string(act, "silu"))
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: \"hidden_act\" is %.32s; q35 runs silu only", file,
                        cJSON_IsString(act) ? act->valuestring : "not a string");
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++)
        if (cJSON_IsTrue(q35_hf_member(root, biases[i])))
            return q35_fail(err, Q35_ERR_UNSUPPORTED,
                            "%s: \"%s\" is true; q35 runs bias-free Llama only", file, biases[i]);
    return Q35_OK;
}

/* The hyperparameters, in the order the checks name them. */
static int read_hparams(const cJSON *root, q35_config *c, const char *file, q35_error *err) {
    int rc, tied = 0;
    if ((rc = member_int(root, "hidden_size", 1, 0, &c->dim, file, err)) ||
        (rc = member_int(root, "intermediate_size", 1, 0, &c->hidden_dim, file, err)) ||
        (rc = member_int(root, "num_hidden_layers", 1, 0, &c->n_layers, file, err)) ||
        (rc = member_int(root, "num_attention_heads", 1, 0, &c->n_heads, file, err)) ||
        (rc = member_int(root, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads, file,
                         err)) ||
        (rc = member_int(root, "vocab_size", 1, 0, &c->vocab_size, file, err)) ||
        (rc = member_int(root, "max_position_embeddings", 1, 0, &c->seq_len, file, err)) ||
        (rc = member_float(root, "rms_norm_eps", 1e-6, &c->rms_eps, file, err)) ||
        (rc = member_float(root, "rope_theta", 10000.0, &c->rope_theta, file, err)) ||
        (rc = q35_hf_member_bool(root, "tie_word_embeddings", 0, &tied, file, err)))
        return rc;
    c->shared_classifier = tied;
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    if ((rc = q35_config_check(c, file, err))) return rc;
    int head_dim;
    if ((rc = member_int(root, "head_dim", 0, c->head_dim, &head_dim, file, err))) return rc;
    if (head_dim != c->head_dim)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: \"head_dim\" is %d, not hidden_size / num_attention_heads = %d", file,
                        head_dim, c->head_dim);
    return Q35_OK;
}

static int read_config(const char *text, size_t len, const char *file, q35_config *c,
                       q35_error *err) {
    memset(c, 0, sizeof *c);
    cJSON *root = q35_hf_json_parse(text, len, file, err);
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    int rc;
    if (!cJSON_IsObject(root))
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: not a JSON object", file);
    else if (!(rc = check_architecture(root, file, err)) && !(rc = check_features(root, file, err)))
        rc = read_hparams(root, c, file, err);
    cJSON_Delete(root);
    return rc;
}

/* ---- tensors: Hugging Face names and layouts to q35's ------------------- */

enum tensor_kind { KIND_SKIP, KIND_PLAIN, KIND_Q, KIND_K };

static const struct {
    const char *hf, *gguf;
    int kind;
} layer_tensors[] = {
    {"input_layernorm.weight", "attn_norm", KIND_PLAIN},
    {"self_attn.q_proj.weight", "attn_q", KIND_Q},
    {"self_attn.k_proj.weight", "attn_k", KIND_K},
    {"self_attn.v_proj.weight", "attn_v", KIND_PLAIN},
    {"self_attn.o_proj.weight", "attn_output", KIND_PLAIN},
    {"post_attention_layernorm.weight", "ffn_norm", KIND_PLAIN},
    {"mlp.gate_proj.weight", "ffn_gate", KIND_PLAIN},
    {"mlp.up_proj.weight", "ffn_up", KIND_PLAIN},
    {"mlp.down_proj.weight", "ffn_down", KIND_PLAIN},
};

/* "model.layers.N.rest": 1 with *layer = N (decimal, no leading zero,
 * INT_MAX when huge) and *rest; 0 for any other name. */
static int split_layer_name(const char *name, int *layer, const char **rest) {
    static const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0) return 0;
    const char *p = name + sizeof prefix - 1;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return 0;
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) v = v < INT_MAX / 10 ? v * 10 + (*p - '0') : INT_MAX;
    if (*p != '.') return 0;
    *layer = (int)v;
    *rest = p + 1;
    return 1;
}

/* The q35 name of a Hugging Face tensor and how to convert it; KIND_SKIP
 * for tensors q35 does not use (rotary_emb.inv_freq, a tied lm_head, ...). */
static int map_name(const char *hf, const q35_config *c, char out[64], int *kind,
                    const char *file, q35_error *err) {
    int layer;
    const char *rest;
    *kind = KIND_PLAIN;
    if (strcmp(hf, "model.embed_tokens.weight") == 0) {
        snprintf(out, 64, "token_embd.weight");
    } else if (strcmp(hf, "model.norm.weight") == 0) {
        snprintf(out, 64, "output_norm.weight");
    } else if (strcmp(hf, "lm_head.weight") == 0) {
        *kind = c->shared_classifier ? KIND_SKIP : KIND_PLAIN;
        snprintf(out, 64, "output.weight");
    } else if (split_layer_name(hf, &layer, &rest)) {
        size_t i = 0, n = sizeof layer_tensors / sizeof layer_tensors[0];
        while (i < n && strcmp(rest, layer_tensors[i].hf) != 0) i++;
        if (i == n) {
            *kind = KIND_SKIP;
        } else if (layer >= c->n_layers) {
            return q35_fail(err, Q35_ERR_FORMAT,
                            "%s: tensor %s: layer %d is beyond num_hidden_layers = %d", file, hf,
                            layer, c->n_layers);
        } else {
            *kind = layer_tensors[i].kind;
            snprintf(out, 64, "blk.%d.%s.weight", layer, layer_tensors[i].gguf);
        }
    } else {
        *kind = KIND_SKIP;
    }
    return Q35_OK;
}

static void shape_text(const q35_safetensors_tensor *t, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->n_dims && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Hugging Face's convert_llama_weights_to_hf.py stores wq and wk permuted
 * for rotate-half RoPE: permute(w) = w.view(heads, hd/2, 2, dim)
 * .transpose(1, 2).reshape(heads * hd, dim). Within each head, its row
 * j * hd/2 + i holds the original row 2i + j (i < hd/2, j < 2): first every
 * pair's first element, then every pair's second. q35 rotates adjacent
 * pairs (2i, 2i + 1) as llama2.c and GGUF do, so the original row 2i + j is
 * taken back from row j * hd/2 + i, expanded to fp32 on the way. */
static int add_unpermuted(q35_weights *w, const q35_safetensors_tensor *t, const char *name,
                          int heads, const char *file, q35_error *err) {
    const int64_t hd = w->cfg.head_dim, rows = heads * hd, cols = w->cfg.dim;
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        char shape[128];
        shape_text(t, shape, sizeof shape);
        return q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld]",
                        file, t->name, shape, (long long)rows, (long long)cols);
    }
    float *x = malloc((size_t)(rows * cols) * sizeof *x);
    if (!x || q35_weights_own(w, x)) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
    const q35_dtype_info *di = q35_dtype_get(t->dtype);
    const size_t row_bytes = (size_t)cols * (size_t)di->block_bytes;
    const uint8_t *src = t->data;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < hd / 2; i++) {
                int64_t from = h * hd + j * (hd / 2) + i, to = h * hd + 2 * i + j;
                di->to_f32(src + (size_t)from * row_bytes, x + to * cols, cols);
            }
    int64_t ne[2] = {cols, rows};
    if (!q35_weights_add(w, Q35_DTYPE_F32, 2, ne, x, "%s", name))
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
    return Q35_OK;
}

/* Adds one safetensors tensor under its q35 name, if q35 uses it. PyTorch
 * shape [rows, cols] becomes ne = {cols, rows} (ne[0] innermost). */
static int add_tensor(q35_weights *w, const q35_safetensors_tensor *t, const char *file,
                      q35_error *err) {
    char name[64];
    int kind;
    int rc = map_name(t->name, &w->cfg, name, &kind, file, err);
    if (rc || kind == KIND_SKIP) return rc;
    if (kind == KIND_Q) return add_unpermuted(w, t, name, w->cfg.n_heads, file, err);
    if (kind == KIND_K) return add_unpermuted(w, t, name, w->cfg.n_kv_heads, file, err);
    int64_t ne[Q35_MAX_DIMS];
    for (int i = 0; i < t->n_dims; i++) ne[i] = t->shape[t->n_dims - 1 - i];
    const void *data = t->data;
    const uint64_t nbytes = t->end - t->begin;
    if (t->dtype == Q35_DTYPE_F32 && (uintptr_t)data % sizeof(float) != 0) {
        void *copy = malloc(nbytes ? (size_t)nbytes : 1);
        if (!copy || q35_weights_own(w, copy))
            return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
        memcpy(copy, data, (size_t)nbytes);
        data = copy;
    }
    if (!q35_weights_add(w, t->dtype, t->n_dims, ne, data, "%s", name))
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
    return Q35_OK;
}

/* ---- the folder ---------------------------------------------------------- */

#define PATH_CAP 4096

/* dir/name into buf; fails when it does not fit. */
static int join_path(char *buf, const char *dir, const char *name, q35_error *err) {
    int k = snprintf(buf, PATH_CAP, "%s/%s", dir, name);
    if (k < 0 || k >= PATH_CAP)
        return q35_fail(err, Q35_ERR_ARG, "%.200s/%.64s: path too long", dir, name);
    return Q35_OK;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int load_config(q35_weights *w, const char *dir, q35_error *err) {
    char path[PATH_CAP], *text;
    size_t len;
    int rc = join_path(path, dir, "config.json", err);
    if (!rc) rc = q35_read_file(path, &text, &len, err);
    if (rc) return rc;
    rc = read_config(text, len, path, &w->cfg, err);
    free(text);
    return rc;
}

/* Adds the tensors of a parsed file (all of them). */
static int add_all(q35_weights *w, const q35_safetensors_tensor *t, int n, const char *file,
                   q35_error *err) {
    for (int i = 0; i < n; i++) {
        int rc = add_tensor(w, &t[i], file, err);
        if (rc) return rc;
    }
    return Q35_OK;
}

static int load_single(q35_weights *w, const char *path, q35_error *err) {
    q35_safetensors_tensor *t;
    int n, rc = q35_mapfile_open(&w->file, path, err);
    if (rc) return rc;
    if ((rc = q35_safetensors_parse(w->file.data, w->file.size, path, &t, &n, err))) return rc;
    rc = add_all(w, t, n, path, err);
    free(t);
    snprintf(w->format, sizeof w->format, "safetensors");
    return rc;
}

/* One line of weight_map: tensor name -> shard file. */
typedef struct shard_entry {
    const char *tensor, *shard;
} shard_entry;

static int by_tensor(const void *a, const void *b) {
    return strcmp(((const shard_entry *)a)->tensor, ((const shard_entry *)b)->tensor);
}

static int by_shard(const void *a, const void *b) {
    int c = strcmp(((const shard_entry *)a)->shard, ((const shard_entry *)b)->shard);
    return c ? c : by_tensor(a, b);
}

static int by_st_name(const void *key, const void *elem) {
    return strcmp(key, ((const q35_safetensors_tensor *)elem)->name);
}

/* A file name with no way out of the folder. */
static int plain_file_name(const char *s) {
    return *s && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

/* weight_map's entries, checked and sorted by shard. */
static int read_weight_map(const cJSON *root, const char *file, shard_entry **out, int *n_out,
                           q35_error *err) {
    const cJSON *map = q35_hf_member(root, "weight_map"), *e;
    if (!cJSON_IsObject(map) || !map->child)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: \"weight_map\" is not a non-empty object", file);
    int n = cJSON_GetArraySize(map), i = 0;
    shard_entry *s = malloc((size_t)n * sizeof *s);
    if (!s) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
            free(s);
            return q35_fail(err, Q35_ERR_FORMAT,
                            "%s: tensor %.128s: shard \"%.128s\" is not a plain file name", file,
                            e->string, cJSON_IsString(e) ? e->valuestring : "(not a string)");
        }
        s[i++] = (shard_entry){e->string, e->valuestring};
    }
    qsort(s, (size_t)n, sizeof *s, by_tensor);
    for (i = 1; i < n; i++)
        if (strcmp(s[i].tensor, s[i - 1].tensor) == 0) {
            q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %.128s is listed twice", file, s[i].tensor);
            free(s);
            return Q35_ERR_FORMAT;
        }
    qsort(s, (size_t)n, sizeof *s, by_shard);
    *out = s;
    *n_out = n;
    return Q35_OK;
}

/* Maps one shard (kept in w->extra_files) and adds the n tensors the index
 * places in it; each must be there. */
static int load_shard(q35_weights *w, const char *dir, const shard_entry *e, int n,
                      q35_error *err) {
    char path[PATH_CAP];
    int rc = join_path(path, dir, e[0].shard, err);
    if (rc) return rc;
    q35_mapfile *mf = &w->extra_files[w->n_extra_files++];
    if ((rc = q35_mapfile_open(mf, path, err))) return rc;
    q35_safetensors_tensor *t;
    int n_t;
    if ((rc = q35_safetensors_parse(mf->data, mf->size, path, &t, &n_t, err))) return rc;
    for (int i = 0; i < n && !rc; i++) {
        const q35_safetensors_tensor *found =
            bsearch(e[i].tensor, t, (size_t)n_t, sizeof *t, by_st_name);
        rc = found ? add_tensor(w, found, path, err)
                   : q35_fail(err, Q35_ERR_FORMAT,
                              "%s: tensor %.128s, which the index places here, is missing", path,
                              e[i].tensor);
    }
    free(t);
    return rc;
}

static int load_sharded(q35_weights *w, const char *dir, const char *index, q35_error *err) {
    char *text;
    size_t len;
    int rc = q35_read_file(index, &text, &len, err);
    if (rc) return rc;
    cJSON *root = q35_hf_json_parse(text, len, index, err);
    shard_entry *e = NULL;
    int n = 0, n_shards = 0;
    if (!root) rc = err ? err->code : Q35_ERR_FORMAT;
    else rc = read_weight_map(root, index, &e, &n, err);
    for (int i = 0; !rc && i < n; i++) n_shards += i == 0 || strcmp(e[i].shard, e[i - 1].shard);
    if (!rc && !(w->extra_files = calloc((size_t)n_shards, sizeof *w->extra_files)))
        rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", index);
    for (int i = 0, j; !rc && i < n; i = j) {
        for (j = i + 1; j < n && strcmp(e[j].shard, e[i].shard) == 0; j++) continue;
        rc = load_shard(w, dir, e + i, j - i, err);
    }
    snprintf(w->format, sizeof w->format, "safetensors (%d shards)", n_shards);
    free(e);
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* The tensors: the .safetensors file given, else the folder's index or
 * its model.safetensors. Then the classifier is shared when absent. */
static int load_tensors(q35_weights *w, const char *dir, const char *file, q35_error *err) {
    char index[PATH_CAP], single[PATH_CAP];
    int rc;
    if (file) rc = load_single(w, file, err);
    else if ((rc = join_path(index, dir, "model.safetensors.index.json", err)) ||
             (rc = join_path(single, dir, "model.safetensors", err)))
        return rc;
    else if (file_exists(index)) rc = load_sharded(w, dir, index, err);
    else if (file_exists(single)) rc = load_single(w, single, err);
    else
        rc = q35_fail(err, Q35_ERR_IO,
                      "%s: holds neither model.safetensors nor model.safetensors.index.json", dir);
    if (!rc && !q35_weights_find(w, "output.weight")) w->cfg.shared_classifier = 1;
    return rc;
}

int q35_hf_load_weights(q35_weights *w, const char *path, q35_error *err) {
    memset(w, 0, sizeof *w);
    struct stat st;
    if (strlen(path) >= PATH_CAP - 64)
        return q35_fail(err, Q35_ERR_ARG, "%.200s...: path too long", path);
    if (stat(path, &st) != 0)
        return q35_fail(err, Q35_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* a folder, or a .safetensors file whose folder holds the rest */
    char dir[PATH_CAP];
    const char *file = S_ISDIR(st.st_mode) ? NULL : path, *slash = strrchr(path, '/');
    if (!file) snprintf(dir, sizeof dir, "%s", path);
    else if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int rc;
    if ((rc = load_config(w, dir, err)) || (rc = load_tensors(w, dir, file, err)))
        return rc;
    return Q35_OK;
}
