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

/* ---- config.json: the architecture's keys ----------------------------------- */

/* arch/arch.h's q35_keysrc over config.json: key is a member name or a
 * dotted path ("rope_scaling.factor"). */
static int keysrc_get(const q35_keysrc *s, const char *key, q35_keyval *v) {
    const cJSON *node = s->ctx;
    char part[96];
    for (const char *p = key; node;) {
        const size_t n = strcspn(p, ".");
        if (n >= sizeof part) return 0;
        memcpy(part, p, n);
        part[n] = '\0';
        node = cJSON_IsObject(node) ? q35_hf_member(node, part) : NULL;
        if (!p[n]) break;
        p += n + 1;
    }
    if (q35_hf_absent(node)) return 0;
    memset(v, 0, sizeof *v);
    if (cJSON_IsBool(node)) {
        v->type = Q35_KEY_BOOL;
        v->i = cJSON_IsTrue(node);
    } else if (cJSON_IsNumber(node)) {
        int64_t x;
        v->f = node->valuedouble;
        if (q35_hf_json_int(node, -9.0e15, 9.0e15, &x) == 0) {
            v->type = Q35_KEY_INT;
            v->i = x;
        } else {
            v->type = Q35_KEY_FLOAT;
        }
    } else if (cJSON_IsString(node)) {
        v->type = Q35_KEY_STR;
        v->s = node->valuestring;
        v->len = strlen(node->valuestring);
    } else {
        v->type = Q35_KEY_ARRAY;
        v->len = (size_t)cJSON_GetArraySize(node);
    }
    return 1;
}

static int keysrc_floats(const q35_keysrc *s, const char *key, float *out, size_t n) {
    q35_keyval v;
    if (!keysrc_get(s, key, &v)) return 0;
    const cJSON *node = s->ctx;
    char part[96];
    for (const char *p = key; node;) { /* found: walk again to the node */
        const size_t k = strcspn(p, ".");
        memcpy(part, p, k);
        part[k] = '\0';
        node = q35_hf_member(node, part);
        if (!p[k]) break;
        p += k + 1;
    }
    if (!cJSON_IsArray(node) || (size_t)cJSON_GetArraySize(node) != n)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: \"%s\" is not an array of %zu numbers", s->path, key, n);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, node) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || fabs(e->valuedouble) > 1e30)
            return q35_fail(s->err, Q35_ERR_FORMAT, "%s: \"%s\" holds a non-number", s->path, key);
        out[i++] = (float)e->valuedouble;
    }
    return 1;
}

/* The architecture config.json's "architectures" names (or, failing
 * that, its model_type as GGUF names it). */
static int find_architecture(const cJSON *root, const char *file, const q35_arch **out, q35_error *err) {
    const cJSON *arch = q35_hf_member(root, "architectures");
    const cJSON *type = q35_hf_member(root, "model_type");
    const char *named = NULL;
    if (!q35_hf_absent(arch)) {
        if (!cJSON_IsArray(arch))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: \"architectures\" is not an array", file);
        const cJSON *a;
        cJSON_ArrayForEach(a, arch) {
            if (!cJSON_IsString(a))
                return q35_fail(err, Q35_ERR_FORMAT, "%s: \"architectures\" holds a non-string", file);
            if ((*out = q35_arch_find(a->valuestring, strlen(a->valuestring), 1))) return Q35_OK;
            if (!named) named = a->valuestring;
        }
    }
    if (!q35_hf_absent(type)) {
        if (!cJSON_IsString(type))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: \"model_type\" is not a string", file);
        if ((*out = q35_arch_find(type->valuestring, strlen(type->valuestring), 0))) return Q35_OK;
        if (!named) named = type->valuestring;
    }
    return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: architecture %.64s is not supported (q35 runs %s)", file,
                    named ? named : "(none named)", q35_arch_names());
}

int q35_hf_config_hparams(const char *text, size_t len, const char *file, q35_hparams *hp,
                          int (*add)(void *user, const char *name, const float *x, int64_t n), void *user,
                          q35_error *err) {
    cJSON *root = q35_hf_json_parse(text, len, file, err);
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    const q35_arch *a = NULL;
    int rc = cJSON_IsObject(root) ? find_architecture(root, file, &a, err)
                                  : q35_fail(err, Q35_ERR_FORMAT, "%s: not a JSON object", file);
    if (!rc) {
        const q35_keysrc src = {root, 0, a->name, file, err, keysrc_get, keysrc_floats};
        rc = q35_arch_read_hparams(a, &src, hp);
        if (!rc) rc = q35_arch_check(hp, file, err);
        if (!rc && add && a->hf_derived) rc = a->hf_derived(&src, hp, add, user);
    }
    cJSON_Delete(root);
    return rc;
}

static int read_config(const char *text, size_t len, const char *file, q35_weights *w, cJSON **root_out,
                       q35_error *err) {
    cJSON *root = q35_hf_json_parse(text, len, file, err);
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    const q35_arch *a = NULL;
    int rc;
    if (!cJSON_IsObject(root)) {
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: not a JSON object", file);
    } else if (!(rc = find_architecture(root, file, &a, err))) {
        const q35_keysrc src = {root, 0, a->name, file, err, keysrc_get, keysrc_floats};
        rc = q35_arch_read_hparams(a, &src, &w->hp);
        if (!rc) rc = q35_arch_check(&w->hp, file, err);
    }
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    w->cfg = w->hp.c;
    *root_out = root;
    return Q35_OK;
}

/* ---- tensors: Hugging Face names and layouts to q35's ------------------- */

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

/* The q35 name of a Hugging Face tensor and how to convert it; kind -1
 * for tensors q35 does not use (rotary_emb.inv_freq, a tied lm_head, ...). */
static int map_name(const char *hf, const q35_hparams *hp, char out[64], int *kind, const char *file,
                    q35_error *err) {
    int layer;
    const char *rest;
    *kind = Q35_HF_PLAIN;
    if (strcmp(hf, "model.embed_tokens.weight") == 0) {
        snprintf(out, 64, "token_embd.weight");
    } else if (strcmp(hf, "model.norm.weight") == 0) {
        snprintf(out, 64, "output_norm.weight");
        if (hp->norm_plus_one_hf) *kind = Q35_HF_NORM_PLUS_ONE;
    } else if (strcmp(hf, "lm_head.weight") == 0) {
        *kind = hp->c.shared_classifier ? -1 : Q35_HF_PLAIN;
        snprintf(out, 64, "output.weight");
    } else if (split_layer_name(hf, &layer, &rest)) {
        const q35_hf_name *n = hp->arch->hf_tensors;
        while (n->hf && strcmp(rest, n->hf) != 0) n++;
        if (!n->hf) {
            *kind = -1;
        } else if (layer >= hp->c.n_layers) {
            return q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s: layer %d is beyond num_hidden_layers = %d", file,
                            hf, layer, hp->c.n_layers);
        } else {
            *kind = n->kind;
            snprintf(out, 64, "blk.%d.%s", layer, n->gguf);
        }
    } else {
        *kind = -1;
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
    const int64_t hd = w->hp.c.head_dim, rows = heads * hd, cols = w->hp.c.dim;
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

/* A norm Hugging Face stores as w for (1 + w) (Gemma): GGUF stores 1 + w,
 * as llama.cpp's converter writes it; expanded to an owned fp32 copy. */
static int add_plus_one(q35_weights *w, const q35_safetensors_tensor *t, const char *name, const char *file,
                        q35_error *err) {
    if (t->n_dims != 1)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s is not a vector", file, t->name);
    const int64_t n = t->shape[0];
    float *x = malloc((size_t)n * sizeof *x + 1);
    if (!x || q35_weights_own(w, x)) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
    q35_dtype_get(t->dtype)->to_f32(t->data, x, n);
    for (int64_t i = 0; i < n; i++) x[i] += 1.0f;
    if (!q35_weights_add(w, Q35_DTYPE_F32, 1, &n, x, "%s", name))
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", file);
    return Q35_OK;
}

/* Adds one safetensors tensor under its q35 name, if q35 uses it. PyTorch
 * shape [rows, cols] becomes ne = {cols, rows} (ne[0] innermost). */
static int add_tensor(q35_weights *w, const q35_safetensors_tensor *t, const char *file,
                      q35_error *err) {
    char name[64];
    int kind;
    int rc = map_name(t->name, &w->hp, name, &kind, file, err);
    if (rc || kind < 0) return rc;
    if (q35_weights_find(w, name))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s (%s) appears twice", file, t->name, name);
    if (kind == Q35_HF_PERMUTE_Q) return add_unpermuted(w, t, name, w->hp.c.n_heads, file, err);
    if (kind == Q35_HF_PERMUTE_K) return add_unpermuted(w, t, name, w->hp.c.n_kv_heads, file, err);
    if (kind == Q35_HF_NORM_PLUS_ONE) return add_plus_one(w, t, name, file, err);
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

/* Tensors the architecture derives from config.json (llama3's rope_freqs). */
typedef struct derived_ctx {
    q35_weights *w;
    const char *file;
    q35_error *err;
} derived_ctx;

static int add_derived(void *user, const char *name, const float *x, int64_t n) {
    derived_ctx *d = user;
    float *copy = malloc((size_t)n * sizeof *copy);
    if (!copy || q35_weights_own(d->w, copy)) return q35_fail(d->err, Q35_ERR_NOMEM, "%s: out of memory", d->file);
    memcpy(copy, x, (size_t)n * sizeof *copy);
    if (!q35_weights_add(d->w, Q35_DTYPE_F32, 1, &n, copy, "%s", name))
        return q35_fail(d->err, Q35_ERR_NOMEM, "%s: out of memory", d->file);
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
    cJSON *root = NULL;
    rc = read_config(text, len, path, w, &root, err);
    free(text);
    if (!rc && w->hp.arch->hf_derived) {
        const q35_keysrc src = {root, 0, w->hp.arch->name, path, err, keysrc_get, keysrc_floats};
        derived_ctx d = {w, path, err};
        rc = w->hp.arch->hf_derived(&src, &w->hp, add_derived, &d);
    }
    cJSON_Delete(root);
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
    if (!rc && !q35_weights_find(w, "output.weight")) w->hp.c.shared_classifier = w->cfg.shared_classifier = 1;
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
