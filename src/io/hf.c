/* hf.c — Hugging Face checkpoints (see hf.h): the safetensors container,
 * config.json, tensor renaming with the q/k un-permutation, tokenizer.json
 * and the folder layout (single file or shards). JSON is read with cJSON;
 * every value's type is checked before use.
 *
 * Choices:
 *  - JSON text must be valid UTF-8 without NUL bytes (cJSON checks
 *    neither; strings end at a NUL in C) and hold one value, optionally
 *    followed by whitespace.
 *  - Integers are JSON numbers with an integral value (cJSON keeps only a
 *    double, so 2.0 passes and 2.5 does not), at most 2^53 (exact).
 *  - F32 tensors are used in place in the mapping when 4-byte aligned,
 *    else copied to an owned buffer (the engine reads them as float *).
 *    F16 and BF16 stay as stored: their converters read bytes.
 *  - q_proj and k_proj are un-permuted into owned fp32 (add_unpermuted).
 *  - tokenizer.json: see the tokenizer section below. */
#include "io/hf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/checked.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "format/dtype.h"
#include "io/llama2c.h"
#include "text/tokenizer.h"

/* ---- JSON -------------------------------------------------------------- */

/* Offset of the first byte of s[0..n) that is NUL or not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF are not); n
 * when there is none. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c == 0) return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
        else return i;
        if (len > n - i) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return i;
        i += len;
    }
    return n;
}

/* Parses n bytes (not NUL-terminated) holding one JSON value and perhaps
 * whitespace after it. NULL with err filled on failure; else cJSON_Delete
 * the result. */
static cJSON *json_parse(const char *text, size_t n, const char *file, q35_error *err) {
    size_t bad = utf8_invalid_at((const uint8_t *)text, n);
    if (bad < n) {
        q35_fail(err, Q35_ERR_FORMAT, "%s: byte %zu of the JSON text is %s", file, bad,
                 text[bad] ? "not valid UTF-8" : "NUL");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        q35_fail(err, Q35_ERR_FORMAT, "%s: invalid JSON near byte %zu", file, at);
        return NULL;
    }
    for (size_t i = (size_t)(end - text); i < n; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            cJSON_Delete(root);
            q35_fail(err, Q35_ERR_FORMAT, "%s: text after the JSON value at byte %zu", file, i);
            return NULL;
        }
    }
    return root;
}

/* 0 and *out = v's value when v is a number with an integral value in
 * [lo, hi]; else -1. */
static int json_int(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

static const cJSON *member(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* A member that is absent or null. */
static int absent(const cJSON *v) { return !v || cJSON_IsNull(v); }

static int is_string(const cJSON *v, const char *s) {
    return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0;
}

/* ---- safetensors -------------------------------------------------------
 *
 * An 8-byte little-endian header length N, N bytes of JSON header, then the
 * data. Checked before any data is handed out: N <= 100 MB and within the
 * file; the header one JSON object; each entry an object with exactly
 * "dtype" (F32, F16, BF16; any other type is Q35_ERR_UNSUPPORTED), "shape"
 * (0..4 non-negative integers) and "data_offsets" ([begin, end]); end -
 * begin the shape's byte size; every tensor inside the data section; no two
 * overlapping; no name twice. An optional "__metadata__" object maps
 * strings to strings. Tensors come back sorted by name. */

#define MAX_HEADER_BYTES 100000000ull /* the format's own limit */
#define MAX_TENSORS (1 << 20)
#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: doubles are exact below */

static uint64_t read_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* dtype string -> q35 id; -1 for a type q35 does not read. */
static int dtype_id(const char *s) {
    if (strcmp(s, "F32") == 0) return Q35_DTYPE_F32;
    if (strcmp(s, "F16") == 0) return Q35_DTYPE_F16;
    if (strcmp(s, "BF16") == 0) return Q35_DTYPE_BF16;
    return -1;
}

/* Where the data section lies, for the entry checks. */
typedef struct section {
    const uint8_t *data;
    uint64_t size;
    const char *file;
    q35_error *err;
} section;

static int read_shape(const cJSON *shape, q35_safetensors_tensor *t, const section *s) {
    if (!cJSON_IsArray(shape))
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: tensor %s: shape is not an array",
                        s->file, t->name);
    int n = cJSON_GetArraySize(shape);
    if (n > 4)
        return q35_fail(s->err, Q35_ERR_FORMAT,
                        "%s: tensor %s has %d dimensions; at most 4 are supported", s->file,
                        t->name, n);
    t->n_dims = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        int64_t v;
        if (json_int(d, 0, MAX_EXACT_INT, &v))
            return q35_fail(s->err, Q35_ERR_FORMAT,
                            "%s: tensor %s: dimension %d is not a non-negative integer",
                            s->file, t->name, t->n_dims);
        t->shape[t->n_dims++] = v;
    }
    return Q35_OK;
}

static int read_offsets(const cJSON *off, q35_safetensors_tensor *t, const section *s) {
    int64_t v[2];
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        json_int(off->child, 0, MAX_EXACT_INT, &v[0]) ||
        json_int(off->child->next, 0, MAX_EXACT_INT, &v[1]))
        return q35_fail(s->err, Q35_ERR_FORMAT,
                        "%s: tensor %s: data_offsets is not a pair of non-negative integers",
                        s->file, t->name);
    t->begin = (uint64_t)v[0];
    t->end = (uint64_t)v[1];
    return Q35_OK;
}

/* Checks the byte range against the shape and the data section. */
static int check_extent(q35_safetensors_tensor *t, const section *s) {
    uint64_t count = 1, bytes;
    for (int i = 0; i < t->n_dims; i++)
        if (q35_mul_u64(count, (uint64_t)t->shape[i], &count))
            return q35_fail(s->err, Q35_ERR_FORMAT,
                            "%s: tensor %s: element count overflows 64 bits", s->file, t->name);
    if (q35_dtype_bytes(t->dtype, count, &bytes))
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: tensor %s: byte size overflows 64 bits",
                        s->file, t->name);
    if (t->end < t->begin)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: tensor %s: data_offsets end %llu < begin %llu",
                        s->file, t->name, (unsigned long long)t->end,
                        (unsigned long long)t->begin);
    if (t->end - t->begin != bytes)
        return q35_fail(s->err, Q35_ERR_FORMAT,
                        "%s: tensor %s: data_offsets span %llu bytes, its shape needs %llu",
                        s->file, t->name, (unsigned long long)(t->end - t->begin),
                        (unsigned long long)bytes);
    if (t->end > s->size)
        return q35_fail(s->err, Q35_ERR_FORMAT,
                        "%s: tensor %s: bytes [%llu, %llu) lie past the %llu-byte data section",
                        s->file, t->name, (unsigned long long)t->begin,
                        (unsigned long long)t->end, (unsigned long long)s->size);
    t->data = s->data + t->begin;
    return Q35_OK;
}

/* One header entry: an object with exactly dtype, shape and data_offsets. */
static int read_entry(const cJSON *e, q35_safetensors_tensor *t, const section *s) {
    if (strlen(e->string) >= sizeof t->name)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: a tensor name is %zu bytes long (max %zu)",
                        s->file, strlen(e->string), sizeof t->name - 1);
    strcpy(t->name, e->string);
    if (!cJSON_IsObject(e))
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: tensor %s: entry is not an object", s->file,
                        t->name);
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *field[3] = {NULL, NULL, NULL}, *f;
    cJSON_ArrayForEach(f, e) {
        int k = 0;
        while (k < 3 && strcmp(f->string, keys[k]) != 0) k++;
        if (k == 3 || field[k])
            return q35_fail(s->err, Q35_ERR_FORMAT, "%s: tensor %s: %s field \"%.64s\"", s->file,
                            t->name, k == 3 ? "unknown" : "repeated", f->string);
        field[k] = f;
    }
    for (int k = 0; k < 3; k++)
        if (!field[k])
            return q35_fail(s->err, Q35_ERR_FORMAT, "%s: tensor %s has no %s", s->file, t->name,
                            keys[k]);
    if (!cJSON_IsString(field[0]))
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: tensor %s: dtype is not a string", s->file,
                        t->name);
    t->dtype = dtype_id(field[0]->valuestring);
    if (t->dtype < 0)
        return q35_fail(s->err, Q35_ERR_UNSUPPORTED,
                        "%s: tensor %s has dtype %.32s; q35 reads F32, F16 and BF16", s->file,
                        t->name, field[0]->valuestring);
    int rc = read_shape(field[1], t, s);
    if (!rc) rc = read_offsets(field[2], t, s);
    if (!rc) rc = check_extent(t, s);
    return rc;
}

static int check_metadata(const cJSON *meta, const char *file, q35_error *err) {
    if (!cJSON_IsObject(meta))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: __metadata__ is not an object", file);
    const cJSON *m;
    cJSON_ArrayForEach(m, meta)
        if (!cJSON_IsString(m))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: __metadata__ value \"%.64s\" is not a string",
                            file, m->string);
    return Q35_OK;
}

static int by_begin(const void *a, const void *b) {
    const q35_safetensors_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const q35_safetensors_tensor *)a)->name,
                  ((const q35_safetensors_tensor *)b)->name);
}

/* No two tensors share a byte or a name. Leaves t sorted by name. */
static int check_disjoint(q35_safetensors_tensor *t, int n, const char *file, q35_error *err) {
    qsort(t, (size_t)n, sizeof *t, by_begin);
    for (int i = 1; i < n; i++)
        if (t[i].begin < t[i - 1].end)
            return q35_fail(err, Q35_ERR_FORMAT, "%s: tensors %s and %s overlap in the data", file,
                            t[i - 1].name, t[i].name);
    qsort(t, (size_t)n, sizeof *t, by_name);
    for (int i = 1; i < n; i++)
        if (strcmp(t[i].name, t[i - 1].name) == 0)
            return q35_fail(err, Q35_ERR_FORMAT, "%s: tensor %s appears twice", file, t[i].name);
    return Q35_OK;
}

/* Reads the entries of the header object into a new array. */
static int read_entries(const cJSON *root, const section *s, q35_safetensors_tensor **out,
                        int *n_out) {
    int n = 0, n_meta = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            int rc = n_meta++ ? q35_fail(s->err, Q35_ERR_FORMAT, "%s: __metadata__ appears twice",
                                         s->file)
                              : check_metadata(e, s->file, s->err);
            if (rc) return rc;
        } else if (++n > MAX_TENSORS) {
            return q35_fail(s->err, Q35_ERR_FORMAT, "%s: more than %d tensors", s->file,
                            MAX_TENSORS);
        }
    }
    q35_safetensors_tensor *t = calloc((size_t)(n ? n : 1), sizeof *t);
    if (!t) return q35_fail(s->err, Q35_ERR_NOMEM, "%s: out of memory", s->file);
    int i = 0, rc = Q35_OK;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        if ((rc = read_entry(e, &t[i++], s))) break;
    }
    if (!rc) rc = check_disjoint(t, n, s->file, s->err);
    if (rc) {
        free(t);
        return rc;
    }
    *out = t;
    *n_out = n;
    return Q35_OK;
}

int q35_safetensors_parse(const uint8_t *buf, uint64_t size, const char *name,
                          q35_safetensors_tensor **tensors, int *n, q35_error *err) {
    *tensors = NULL;
    *n = 0;
    if (size < 8)
        return q35_fail(err, Q35_ERR_FORMAT,
                        "%s: %llu bytes, too short for the 8-byte header length", name,
                        (unsigned long long)size);
    uint64_t header = read_u64le(buf);
    if (header > size - 8)
        return q35_fail(err, Q35_ERR_FORMAT,
                        "%s: header length %llu runs past the end of the file (%llu bytes)", name,
                        (unsigned long long)header, (unsigned long long)size);
    if (header > MAX_HEADER_BYTES)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: header length %llu is over the 100 MB limit",
                        name, (unsigned long long)header);
    cJSON *root = json_parse((const char *)buf + 8, (size_t)header, name, err);
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    int rc;
    if (!cJSON_IsObject(root)) {
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: header is not a JSON object", name);
    } else {
        section s = {buf + 8 + header, size - 8 - header, name, err};
        rc = read_entries(root, &s, tensors, n);
    }
    cJSON_Delete(root);
    return rc;
}

/* ---- config.json ------------------------------------------------------- */

/* An integer member; def when absent or null, unless required. */
static int member_int(const cJSON *obj, const char *key, int required, int def, int *out,
                      const char *file, q35_error *err) {
    const cJSON *v = member(obj, key);
    int64_t x;
    if (absent(v)) {
        if (required) return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is missing", file, key);
        *out = def;
        return Q35_OK;
    }
    if (json_int(v, INT_MIN, INT_MAX, &x))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is not an integer (of int range)", file,
                        key);
    *out = (int)x;
    return Q35_OK;
}

/* A number member; def when absent or null. */
static int member_float(const cJSON *obj, const char *key, double def, float *out,
                        const char *file, q35_error *err) {
    const cJSON *v = member(obj, key);
    if (absent(v)) {
        *out = (float)def;
        return Q35_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is not a finite number", file, key);
    *out = (float)v->valuedouble;
    return Q35_OK;
}

/* A boolean member; def when absent or null. */
static int member_bool(const cJSON *obj, const char *key, int def, int *out, const char *file,
                       q35_error *err) {
    const cJSON *v = member(obj, key);
    if (absent(v)) {
        *out = def;
        return Q35_OK;
    }
    if (!cJSON_IsBool(v))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: \"%s\" is not true or false", file, key);
    *out = cJSON_IsTrue(v);
    return Q35_OK;
}

/* architectures holds "LlamaForCausalLM", or model_type is "llama". */
static int check_architecture(const cJSON *root, const char *file, q35_error *err) {
    const cJSON *arch = member(root, "architectures"), *type = member(root, "model_type");
    const char *named = NULL;
    if (!absent(arch)) {
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
    if (!absent(type)) {
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
    if (!absent(member(root, "rope_scaling")))
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: \"rope_scaling\" is set; q35 runs unscaled RoPE only", file);
    const cJSON *act = member(root, "hidden_act");
    if (!absent(act) && !is_string(act, "silu"))
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: \"hidden_act\" is %.32s; q35 runs silu only", file,
                        cJSON_IsString(act) ? act->valuestring : "not a string");
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++)
        if (cJSON_IsTrue(member(root, biases[i])))
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
        (rc = member_bool(root, "tie_word_embeddings", 0, &tied, file, err)))
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
    cJSON *root = json_parse(text, len, file, err);
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

/* ---- tokenizer.json ------------------------------------------------------
 *
 * Only SentencePiece-style BPE is read: model.type "BPE" over pieces that
 * spell spaces as U+2581 (stored as ' ', q35's convention), the space
 * mapping coming from a Replace " " -> "▁" normalizer or a Metaspace
 * pre-tokenizer. A Prepend "▁" normalizer or a Metaspace prepend_scheme
 * other than "never" sets add_dummy_prefix. Any other normalizer or
 * pre-tokenizer, and ByteLevel (GPT-2 style) anywhere, is
 * Q35_ERR_UNSUPPORTED: encoding without it would silently differ.
 *
 * Ids: model.vocab and added_tokens together must use each id 0..n-1
 * exactly once (an added token may repeat its vocab entry, same text).
 *
 * Scores: q35 (like sentencepiece) merges the adjacent pair whose
 * concatenation has the highest score; Hugging Face merges the pair with
 * the lowest merge rank. A piece's score is -(rank of the first merge
 * producing it); pieces no merge produces get -(number of merges), below
 * all of those (single characters, whose score never matters, and special
 * tokens). For SentencePiece-converted vocabularies, whose merges list
 * every split of each piece in score order, both rules pick the same
 * pairs; when two candidates make the same piece q35 takes the leftmost.
 *
 * Kinds: special added tokens are CONTROL (UNKNOWN for model.unk_token or
 * "<unk>"), other added tokens USER_DEFINED (matched whole in text), and
 * with model.byte_fallback pieces "<0xNN>" are BYTE; without it they stay
 * NORMAL so that q35 does not fall back to bytes either. Special tokens are
 * never produced from text (q35's rule). bos / eos: "<s>" / "</s>", or the
 * names tokenizer_config.json gives. */

#define MAX_PIECES (1 << 22)

typedef struct vocab {
    int cap;            /* room for ids 0 .. cap-1 */
    int n;              /* ids placed */
    const char **text;  /* JSON spelling of each id (NULL if none yet) */
    size_t *len;
    int32_t *type;      /* 0 until known */
    float *score;
    int32_t *slot;      /* hash of text -> id; -1 = empty */
    uint64_t mask;
    const char *file;
    q35_error *err;
} vocab;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The id spelled s[0..n), or -1. */
static int vocab_find(const vocab *v, const char *s, size_t n) {
    for (uint64_t i = hash_bytes(s, n) & v->mask;; i = (i + 1) & v->mask) {
        int id = v->slot[i];
        if (id < 0 || (v->len[id] == n && memcmp(v->text[id], s, n) == 0)) return id;
    }
}

static int vocab_init(vocab *v, int cap, const char *file, q35_error *err) {
    memset(v, 0, sizeof *v);
    v->cap = cap;
    v->file = file;
    v->err = err;
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)cap) slots *= 2;
    v->mask = slots - 1;
    v->text = calloc((size_t)cap, sizeof *v->text);
    v->len = calloc((size_t)cap, sizeof *v->len);
    v->type = calloc((size_t)cap, sizeof *v->type);
    v->score = calloc((size_t)cap, sizeof *v->score);
    v->slot = malloc((size_t)slots * sizeof *v->slot);
    if (!v->text || !v->len || !v->type || !v->score || !v->slot)
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory (%d pieces)", file, cap);
    memset(v->slot, 0xff, (size_t)slots * sizeof *v->slot); /* all -1 */
    return Q35_OK;
}

static void vocab_free(vocab *v) {
    free(v->text);
    free(v->len);
    free(v->type);
    free(v->score);
    free(v->slot);
}

/* Gives id the text s: each id and each text once. */
static int vocab_put(vocab *v, int64_t id, const char *s) {
    size_t n = strlen(s);
    if (id < 0 || id >= v->cap)
        return q35_fail(v->err, Q35_ERR_FORMAT,
                        "%s: piece \"%.64s\" has id %lld, outside 0..%d (the entry count - 1)",
                        v->file, s, (long long)id, v->cap - 1);
    if (v->text[id])
        return q35_fail(v->err, Q35_ERR_FORMAT, "%s: id %lld is given to \"%.64s\" and \"%.64s\"",
                        v->file, (long long)id, v->text[id], s);
    int other = vocab_find(v, s, n);
    if (other >= 0)
        return q35_fail(v->err, Q35_ERR_FORMAT, "%s: piece \"%.64s\" has ids %d and %lld",
                        v->file, s, other, (long long)id);
    uint64_t i = hash_bytes(s, n) & v->mask;
    while (v->slot[i] >= 0) i = (i + 1) & v->mask;
    v->slot[i] = (int32_t)id;
    v->text[id] = s;
    v->len[id] = n;
    v->n++;
    return Q35_OK;
}

static int read_vocab(vocab *v, const cJSON *obj) {
    const cJSON *e;
    cJSON_ArrayForEach(e, obj) {
        int64_t id;
        if (json_int(e, INT_MIN, INT_MAX, &id))
            return q35_fail(v->err, Q35_ERR_FORMAT, "%s: vocab piece \"%.64s\": id is not an integer",
                            v->file, e->string);
        int rc = vocab_put(v, id, e->string);
        if (rc) return rc;
    }
    return Q35_OK;
}

static int is_unk_name(const char *s, const char *unk) {
    return strcmp(s, "<unk>") == 0 || (unk && strcmp(s, unk) == 0);
}

/* added_tokens: [{"id", "content", "special", ...}]. */
static int read_added(vocab *v, const cJSON *arr, const char *unk) {
    if (absent(arr)) return Q35_OK;
    const cJSON *a;
    int k = 0;
    cJSON_ArrayForEach(a, arr) {
        const cJSON *id = member(a, "id"), *content = member(a, "content");
        const cJSON *special = member(a, "special");
        int64_t i;
        if (!cJSON_IsObject(a) || json_int(id, INT_MIN, INT_MAX, &i) || !cJSON_IsString(content) ||
            !(absent(special) || cJSON_IsBool(special)))
            return q35_fail(v->err, Q35_ERR_FORMAT,
                            "%s: added token %d is not {\"id\": integer, \"content\": string, "
                            "\"special\": bool}",
                            v->file, k);
        k++;
        if (i < 0 || i >= v->cap || !v->text[i] || strcmp(v->text[i], content->valuestring) != 0) {
            int rc = vocab_put(v, i, content->valuestring);
            if (rc) return rc;
        }
        if (!cJSON_IsTrue(special)) v->type[i] = Q35_PIECE_USER_DEFINED;
        else if (is_unk_name(content->valuestring, unk)) v->type[i] = Q35_PIECE_UNKNOWN;
        else v->type[i] = Q35_PIECE_CONTROL;
    }
    return Q35_OK;
}

/* The byte NN if s is "<0xNN>" (uppercase hex), else -1. */
static int byte_piece(const char *s) {
    int v = 0;
    if (strlen(s) != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    for (int i = 3; i < 5; i++) {
        if (s[i] >= '0' && s[i] <= '9') v = v * 16 + (s[i] - '0');
        else if (s[i] >= 'A' && s[i] <= 'F') v = v * 16 + (s[i] - 'A' + 10);
        else return -1;
    }
    return v;
}

/* Every id 0..n-1 used; kinds of the pieces added_tokens did not name. */
static int finish_ids(vocab *v, int byte_fallback, const char *unk) {
    for (int i = 0; i < v->n; i++)
        if (!v->text[i])
            return q35_fail(v->err, Q35_ERR_FORMAT,
                            "%s: no piece has id %d (ids must run 0..%d without gaps)", v->file,
                            i, v->n - 1);
    for (int i = 0; i < v->n; i++)
        if (!v->type[i])
            v->type[i] = byte_fallback && byte_piece(v->text[i]) >= 0 ? Q35_PIECE_BYTE
                                                                      : Q35_PIECE_NORMAL;
    if (unk) {
        int id = vocab_find(v, unk, strlen(unk));
        if (id < 0)
            return q35_fail(v->err, Q35_ERR_FORMAT, "%s: unk_token \"%.64s\" is not a piece",
                            v->file, unk);
        v->type[id] = Q35_PIECE_UNKNOWN;
    }
    return Q35_OK;
}

/* One merge as its two halves: "a b" or ["a", "b"]. */
static int merge_halves(const cJSON *m, const char **a, size_t *la, const char **b, size_t *lb) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return -1;
        *a = s, *la = (size_t)(sp - s), *b = sp + 1, *lb = strlen(sp + 1);
        return 0;
    }
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != 2 || !cJSON_IsString(m->child) ||
        !cJSON_IsString(m->child->next))
        return -1;
    *a = m->child->valuestring, *la = strlen(*a);
    *b = m->child->next->valuestring, *lb = strlen(*b);
    return 0;
}

/* Scores from the merge ranks (see above). */
static int read_merges(vocab *v, const cJSON *merges) {
    if (!cJSON_IsArray(merges))
        return q35_fail(v->err, Q35_ERR_FORMAT, "%s: model.merges is not an array", v->file);
    const float floor_score = -(float)cJSON_GetArraySize(merges);
    for (int i = 0; i < v->n; i++) v->score[i] = floor_score;
    char *joined = NULL;
    size_t cap = 0;
    int rank = 0, rc = Q35_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t la, lb;
        if (merge_halves(m, &a, &la, &b, &lb)) {
            rc = q35_fail(v->err, Q35_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [a, b]",
                          v->file, rank);
            break;
        }
        if (la + lb + 1 > cap) {
            cap = 2 * (la + lb + 1);
            char *grown = realloc(joined, cap);
            if (!grown) {
                rc = q35_fail(v->err, Q35_ERR_NOMEM, "%s: out of memory", v->file);
                break;
            }
            joined = grown;
        }
        memcpy(joined, a, la);
        memcpy(joined + la, b, lb);
        int id = vocab_find(v, joined, la + lb);
        if (vocab_find(v, a, la) < 0 || vocab_find(v, b, lb) < 0 || id < 0) {
            rc = q35_fail(v->err, Q35_ERR_FORMAT,
                          "%s: merge %d (\"%.*s\" + \"%.*s\") uses or makes a piece not in the "
                          "vocabulary",
                          v->file, rank, (int)(la < 64 ? la : 64), a, (int)(lb < 64 ? lb : 64), b);
            break;
        }
        if (-(float)rank > v->score[id]) v->score[id] = -(float)rank;
        rank++;
    }
    free(joined);
    return rc;
}

/* model.type "BPE" without options that change how it encodes. */
static int check_model(const cJSON *model, const char *file, q35_error *err) {
    const cJSON *type = member(model, "type");
    if (!absent(type) && !cJSON_IsString(type))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: model.type is not a string", file);
    const char *t = cJSON_IsString(type) ? type->valuestring
                    : member(model, "merges")  ? "BPE"
                                               : "(none)";
    if (strcmp(t, "BPE") != 0)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: tokenizer model %.32s is not supported (q35 reads BPE)", file, t);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = member(model, affixes[i]);
        if (!absent(a) && !is_string(a, ""))
            return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: model.%s is not supported", file,
                            affixes[i]);
    }
    if (cJSON_IsTrue(member(model, "ignore_merges")))
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: model.ignore_merges is not supported", file);
    return Q35_OK;
}

/* What the normalizer and pre-tokenizer amount to. */
typedef struct text_rules {
    int prefix; /* a "▁" is put before the text */
    int spaces; /* ' ' becomes "▁" */
} text_rules;

static const char LOWER_EIGHTH[] = "\xe2\x96\x81"; /* U+2581 */

static const char *type_of(const cJSON *node) {
    const cJSON *t = member(node, "type");
    return cJSON_IsString(t) ? t->valuestring : "(untyped)";
}

static int unsupported_step(const char *what, const cJSON *node, const char *file,
                            q35_error *err) {
    const char *t = type_of(node);
    if (strcmp(t, "ByteLevel") == 0)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: byte-level BPE (GPT-2 style %s) is not supported", file, what);
    return q35_fail(err, Q35_ERR_UNSUPPORTED, "%s: %s %.32s is not supported", file, what, t);
}

static int read_normalizer(const cJSON *n, text_rules *r, const char *file, q35_error *err) {
    if (absent(n)) return Q35_OK;
    const char *t = type_of(n);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = member(n, "normalizers"), *e;
        if (!cJSON_IsArray(list))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: normalizer Sequence without a list", file);
        cJSON_ArrayForEach(e, list) {
            int rc = read_normalizer(e, r, file, err);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    if (strcmp(t, "Prepend") == 0 && is_string(member(n, "prepend"), LOWER_EIGHTH)) {
        r->prefix = 1;
        return Q35_OK;
    }
    if (strcmp(t, "Replace") == 0 && is_string(member(member(n, "pattern"), "String"), " ") &&
        is_string(member(n, "content"), LOWER_EIGHTH)) {
        r->spaces = 1;
        return Q35_OK;
    }
    return unsupported_step("normalizer", n, file, err);
}

static int read_pre_tokenizer(const cJSON *p, text_rules *r, const char *file, q35_error *err) {
    if (absent(p)) return Q35_OK;
    const char *t = type_of(p);
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *list = member(p, "pretokenizers"), *e;
        if (!cJSON_IsArray(list))
            return q35_fail(err, Q35_ERR_FORMAT, "%s: pre_tokenizer Sequence without a list", file);
        cJSON_ArrayForEach(e, list) {
            int rc = read_pre_tokenizer(e, r, file, err);
            if (rc) return rc;
        }
        return Q35_OK;
    }
    if (strcmp(t, "Metaspace") != 0 || !is_string(member(p, "replacement"), LOWER_EIGHTH))
        return unsupported_step("pre_tokenizer", p, file, err);
    /* splitting on "▁" changes nothing when no piece holds an inner "▁" */
    const cJSON *scheme = member(p, "prepend_scheme"), *add = member(p, "add_prefix_space");
    if (cJSON_IsString(scheme)) r->prefix |= strcmp(scheme->valuestring, "never") != 0;
    else r->prefix |= !cJSON_IsFalse(add); /* older files; the default is to prepend */
    r->spaces = 1;
    return Q35_OK;
}

/* A ByteLevel decoder means byte-level BPE too. */
static int check_decoder(const cJSON *d, const char *file, q35_error *err) {
    if (absent(d)) return Q35_OK;
    if (strcmp(type_of(d), "ByteLevel") == 0) return unsupported_step("decoder", d, file, err);
    const cJSON *e;
    cJSON_ArrayForEach(e, member(d, "decoders")) {
        int rc = check_decoder(e, file, err);
        if (rc) return rc;
    }
    return Q35_OK;
}

static int read_options(const cJSON *root, q35_tokenizer_opts *o, const char *file,
                        q35_error *err) {
    text_rules r = {0, 0};
    int rc;
    if ((rc = read_normalizer(member(root, "normalizer"), &r, file, err)) ||
        (rc = read_pre_tokenizer(member(root, "pre_tokenizer"), &r, file, err)) ||
        (rc = check_decoder(member(root, "decoder"), file, err)))
        return rc;
    if (!r.spaces)
        return q35_fail(err, Q35_ERR_UNSUPPORTED,
                        "%s: spaces are not mapped to U+2581 (no Replace normalizer or Metaspace "
                        "pre_tokenizer); q35 reads SentencePiece-style vocabularies only",
                        file);
    o->add_dummy_prefix = r.prefix;
    o->remove_extra_whitespaces = 0;
    return Q35_OK;
}

/* bos / eos names from tokenizer_config.json, where it exists. */
typedef struct special_names {
    const char *bos, *eos; /* NULL: "<s>" / "</s>" if present */
    const char *source;    /* the file that named them */
} special_names;

static int special_id(const vocab *v, const char *name, const char *fallback,
                      const special_names *sn) {
    if (!name) return vocab_find(v, fallback, strlen(fallback));
    int id = vocab_find(v, name, strlen(name));
    if (id < 0)
        q35_fail(v->err, Q35_ERR_FORMAT, "%s: special token \"%.64s\" is not a piece of %s",
                 sn->source, name, v->file);
    return id;
}

/* The pieces with ' ' for U+2581, handed to q35_tokenizer_new. */
static int make_tokenizer(const vocab *v, const special_names *sn, int unk,
                          const q35_tokenizer_opts *opts, q35_tokenizer **out) {
    int bos = special_id(v, sn->bos, "<s>", sn), eos = -1;
    if (sn->bos && bos < 0) return Q35_ERR_FORMAT;
    eos = special_id(v, sn->eos, "</s>", sn);
    if (sn->eos && eos < 0) return Q35_ERR_FORMAT;
    size_t total = 0;
    for (int i = 0; i < v->n; i++) total += v->len[i] + 1;
    char *bytes = malloc(total);
    const char **pieces = malloc((size_t)v->n * sizeof *pieces);
    uint32_t *lens = malloc((size_t)v->n * sizeof *lens);
    int rc = Q35_ERR_NOMEM;
    if (bytes && pieces && lens) {
        char *at = bytes;
        for (int i = 0; i < v->n; i++) {
            const char *s = v->text[i];
            pieces[i] = at;
            for (size_t k = 0; k < v->len[i]; k++) {
                int space = strncmp(s + k, LOWER_EIGHTH, 3) == 0;
                *at++ = space ? ' ' : s[k];
                k += space ? 2 : 0;
            }
            lens[i] = (uint32_t)(at - pieces[i]);
            *at++ = '\0';
        }
        rc = q35_tokenizer_new(out, v->n, pieces, lens, v->score, v->type, bos, eos, unk, opts,
                               v->err);
        if (rc && v->err) {
            char msg[sizeof v->err->msg];
            memcpy(msg, v->err->msg, sizeof msg);
            q35_fail(v->err, rc, "%s: %s", v->file, msg);
        }
    } else {
        q35_fail(v->err, rc, "%s: out of memory", v->file);
    }
    free(bytes);
    free(pieces);
    free(lens);
    return rc;
}

static int build_tokenizer(const cJSON *root, const char *file, const special_names *sn,
                           q35_tokenizer **out, q35_error *err) {
    const cJSON *model = member(root, "model");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: no \"model\" object", file);
    q35_tokenizer_opts opts = {0, 0};
    int rc, byte_fallback = 0;
    if ((rc = check_model(model, file, err)) || (rc = read_options(root, &opts, file, err)) ||
        (rc = member_bool(model, "byte_fallback", 0, &byte_fallback, file, err)))
        return rc;
    const cJSON *vocab_obj = member(model, "vocab"), *added = member(root, "added_tokens");
    const cJSON *unk_item = member(model, "unk_token");
    if (!cJSON_IsObject(vocab_obj))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: model.vocab is not an object", file);
    if (!absent(added) && !cJSON_IsArray(added))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: added_tokens is not an array", file);
    if (!absent(unk_item) && !cJSON_IsString(unk_item))
        return q35_fail(err, Q35_ERR_FORMAT, "%s: model.unk_token is not a string", file);
    const char *unk = cJSON_IsString(unk_item) ? unk_item->valuestring : NULL;
    int64_t cap = (int64_t)cJSON_GetArraySize(vocab_obj) + cJSON_GetArraySize(added);
    if (cap < 1 || cap > MAX_PIECES)
        return q35_fail(err, Q35_ERR_FORMAT, "%s: %lld pieces; 1 to %d are supported", file,
                        (long long)cap, MAX_PIECES);
    vocab v;
    if (!(rc = vocab_init(&v, (int)cap, file, err)) && !(rc = read_vocab(&v, vocab_obj)) &&
        !(rc = read_added(&v, added, unk)) && !(rc = finish_ids(&v, byte_fallback, unk)) &&
        !(rc = read_merges(&v, member(model, "merges"))))
        rc = make_tokenizer(&v, sn, unk ? vocab_find(&v, unk, strlen(unk)) : -1, &opts, out);
    vocab_free(&v);
    return rc;
}

static int tokenizer_from_json(const char *json, size_t len, const char *file,
                               const special_names *sn, q35_tokenizer **out, q35_error *err) {
    *out = NULL;
    cJSON *root = json_parse(json, len, file, err);
    if (!root) return err ? err->code : Q35_ERR_FORMAT;
    int rc = build_tokenizer(root, file, sn, out, err);
    cJSON_Delete(root);
    return rc;
}

int q35_hf_tokenizer_parse(const char *json, size_t len, const char *name,
                           struct q35_tokenizer **out, q35_error *err) {
    special_names sn = {NULL, NULL, name};
    return tokenizer_from_json(json, len, name, &sn, out, err);
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
    const cJSON *map = member(root, "weight_map"), *e;
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
    cJSON *root = json_parse(text, len, index, err);
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

/* bos_token / eos_token of tokenizer_config.json: a string or
 * {"content": string}; NULL when absent or null. */
static const char *config_token(const cJSON *root, const char *key) {
    const cJSON *v = member(root, key);
    if (cJSON_IsObject(v)) v = member(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* tokenizer.json (if present; else w->tokenizer stays NULL), with the
 * special tokens tokenizer_config.json names (if present). */
static int load_tokenizer(q35_weights *w, const char *dir, q35_error *err) {
    char path[PATH_CAP], conf_path[PATH_CAP], *text = NULL, *conf = NULL;
    size_t len, conf_len;
    cJSON *conf_root = NULL;
    int rc = join_path(path, dir, "tokenizer.json", err);
    if (!rc) rc = join_path(conf_path, dir, "tokenizer_config.json", err);
    if (rc || !file_exists(path)) return rc;
    special_names sn = {NULL, NULL, conf_path};
    if (file_exists(conf_path)) {
        if ((rc = q35_read_file(conf_path, &conf, &conf_len, err))) return rc;
        if (!(conf_root = json_parse(conf, conf_len, conf_path, err))) rc = err ? err->code : Q35_ERR_FORMAT;
        else if (!cJSON_IsObject(conf_root))
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: not a JSON object", conf_path);
        sn.bos = config_token(conf_root, "bos_token");
        sn.eos = config_token(conf_root, "eos_token");
    }
    if (!rc) rc = q35_read_file(path, &text, &len, err);
    if (!rc) rc = tokenizer_from_json(text, len, path, &sn, &w->tokenizer, err);
    if (!rc && q35_tokenizer_n_vocab(w->tokenizer) > w->cfg.vocab_size)
        rc = q35_fail(err, Q35_ERR_FORMAT, "%s: %d pieces, more than config.json's vocab_size %d",
                      path, q35_tokenizer_n_vocab(w->tokenizer), w->cfg.vocab_size);
    cJSON_Delete(conf_root);
    free(conf);
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
    if ((rc = load_config(w, dir, err)) || (rc = load_tensors(w, dir, file, err)) ||
        (rc = load_tokenizer(w, dir, err)))
        return rc;
    return Q35_OK;
}
