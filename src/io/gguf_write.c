/* gguf_write.c — the GGUF writer (version 3) and q35_gguf_save_model.
 *
 * Keys keep their insertion order; general.alignment (32 unless set) is
 * appended when the caller did not set it. Tensor data follows the header
 * in insertion order, each tensor at a multiple of the alignment, gaps
 * filled with zero bytes. Everything the writer accepts is checked with
 * the reader's own rules (keys, names, array bodies, tensor shapes), so it
 * never writes a file q35 would refuse. The header is built first and the
 * file written front to back through q35_outfile (core/outfile.h): into a
 * temporary file renamed over the target (a reader sees the old file or
 * the whole new one, never a part), or straight into a device or FIFO. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/error.h"
#include "core/outfile.h"
#include "format/dtype.h"
#include "io/gguf.h"
#include "io/gguf_internal.h"

typedef struct writer_kv {
    char *key;
    q35_gguf_value value; /* strings and arrays point into owned */
    void *owned;
} writer_kv;

typedef struct writer_tensor {
    char *name;
    int dtype, n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    const void *data; /* the caller's, or NULL when fill produces it */
    q35_gguf_fill fill;
    void *user;
} writer_tensor;

struct q35_gguf_writer {
    writer_kv *kvs;
    int n_kv, cap_kv;
    writer_tensor *tensors;
    int n_tensors, cap_tensors;
};

/* ---- a growing byte buffer --------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    uint64_t len, cap;
    int oom; /* an append failed; the contents are incomplete */
} bytes;

static void put(bytes *b, const void *src, uint64_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->len) {
        uint64_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > UINT64_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = cap <= SIZE_MAX ? realloc(b->p, (size_t)cap) : NULL;
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_string(bytes *b, const void *s, uint64_t len) {
    put_u64(b, len);
    put(b, s, len);
}

/* A value as GGUF stores it (without its type). */
static void put_value(bytes *b, const q35_gguf_value *v) {
    switch (v->type) {
    case Q35_GGUF_STRING: put_string(b, v->v.str.data, v->v.str.len); break;
    case Q35_GGUF_ARRAY:
        put_u32(b, (uint32_t)v->v.arr.elem_type);
        put_u64(b, v->v.arr.n);
        put(b, v->v.arr.raw, v->v.arr.raw_len);
        break;
    case Q35_GGUF_FLOAT32: {
        float f = (float)v->v.f;
        put(b, &f, 4);
        break;
    }
    case Q35_GGUF_FLOAT64: put(b, &v->v.f, 8); break;
    case Q35_GGUF_INT8: case Q35_GGUF_INT16: case Q35_GGUF_INT32: case Q35_GGUF_INT64:
        put(b, &v->v.i, (uint64_t)q35_gguf_type_size(v->type)); /* low bytes: little-endian */
        break;
    default: put(b, &v->v.u, (uint64_t)q35_gguf_type_size(v->type)); break;
    }
}

/* ---- setting keys ------------------------------------------------------ */

int q35_gguf_writer_new(q35_gguf_writer **out, q35_error *err) {
    *out = calloc(1, sizeof **out);
    return *out ? Q35_OK : q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory");
}

void q35_gguf_writer_free(q35_gguf_writer *wr) {
    if (!wr) return;
    for (int i = 0; i < wr->n_kv; i++) {
        free(wr->kvs[i].key);
        free(wr->kvs[i].owned);
    }
    for (int i = 0; i < wr->n_tensors; i++) free(wr->tensors[i].name);
    free(wr->kvs);
    free(wr->tensors);
    free(wr);
}

/* Checks a key or tensor name as the reader will. */
static int check_name(const char *name, const char *kind, uint64_t max_len, q35_error *err) {
    if (!name || !*name) return q35_fail(err, Q35_ERR_ARG, "gguf writer: empty %s", kind);
    uint64_t len = strlen(name);
    if (len > max_len)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: %s '%.64s...' is longer than %llu bytes",
                        kind, name, (unsigned long long)max_len);
    if (!q35_gguf_utf8_valid((const uint8_t *)name, len))
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: %s is not valid UTF-8", kind);
    return Q35_OK;
}

/* Whether a scalar's value fits its type. */
static int scalar_fits(const q35_gguf_value *v) {
    switch (v->type) {
    case Q35_GGUF_UINT8: return v->v.u <= UINT8_MAX;
    case Q35_GGUF_UINT16: return v->v.u <= UINT16_MAX;
    case Q35_GGUF_UINT32: return v->v.u <= UINT32_MAX;
    case Q35_GGUF_BOOL: return v->v.u <= 1;
    case Q35_GGUF_INT8: return v->v.i >= INT8_MIN && v->v.i <= INT8_MAX;
    case Q35_GGUF_INT16: return v->v.i >= INT16_MIN && v->v.i <= INT16_MAX;
    case Q35_GGUF_INT32: return v->v.i >= INT32_MIN && v->v.i <= INT32_MAX;
    default: return 1;
    }
}

/* Checks v as a value the reader would accept; key names it in errors. */
static int check_value(const char *key, const q35_gguf_value *v, q35_error *err) {
    if (q35_gguf_type_size(v->type) < 0)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': unknown value type %d", key,
                        v->type);
    if (!scalar_fits(v))
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': value out of range for %s", key,
                        q35_gguf_type_name(v->type));
    if (v->type == Q35_GGUF_STRING && !v->v.str.data && v->v.str.len)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': NULL string", key);
    if (v->type == Q35_GGUF_ARRAY) {
        if (!v->v.arr.raw && v->v.arr.raw_len)
            return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': NULL array", key);
        gguf_cursor c = {.base = v->v.arr.raw, .size = v->v.arr.raw_len, .file = "gguf writer",
                         .err = err};
        snprintf(c.where, sizeof c.where, "key '%.100s'", key);
        int rc = q35_gguf_parse_array_body(&c, v->v.arr.elem_type, v->v.arr.n, 0);
        if (rc) { /* the reader's message, but the caller's mistake */
            if (err) err->code = Q35_ERR_ARG;
            return Q35_ERR_ARG;
        }
        if (c.off != c.size)
            return q35_fail(err, Q35_ERR_ARG,
                            "gguf writer: key '%s': %llu array bytes for %llu elements, "
                            "%llu left over",
                            key, (unsigned long long)c.size, (unsigned long long)v->v.arr.n,
                            (unsigned long long)(c.size - c.off));
    }
    if (strcmp(key, "general.alignment") == 0 &&
        (v->type != Q35_GGUF_UINT32 || v->v.u == 0 || (v->v.u & (v->v.u - 1))))
        return q35_fail(err, Q35_ERR_ARG,
                        "gguf writer: general.alignment must be a u32 power of two");
    return Q35_OK;
}

static int find_key(const q35_gguf_writer *wr, const char *key) {
    for (int i = 0; i < wr->n_kv; i++)
        if (strcmp(wr->kvs[i].key, key) == 0) return i;
    return -1;
}

int q35_gguf_writer_set(q35_gguf_writer *wr, const char *key, const q35_gguf_value *v,
                        q35_error *err) {
    int rc = check_name(key, "key", GGUF_MAX_KEY_LEN, err);
    if (rc) return rc;
    if (!v) return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': NULL value", key);
    if (find_key(wr, key) >= 0)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s' is set twice", key);
    if ((rc = check_value(key, v, err))) return rc;
    if (wr->n_kv == wr->cap_kv) {
        int cap = wr->cap_kv ? 2 * wr->cap_kv : 16;
        writer_kv *kvs = realloc(wr->kvs, (size_t)cap * sizeof *kvs);
        if (!kvs) return q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory");
        wr->kvs = kvs;
        wr->cap_kv = cap;
    }
    writer_kv kv = {.key = strdup(key), .value = *v};
    const void *src = v->type == Q35_GGUF_STRING ? (const void *)v->v.str.data
                    : v->type == Q35_GGUF_ARRAY  ? (const void *)v->v.arr.raw : NULL;
    uint64_t len = v->type == Q35_GGUF_STRING ? v->v.str.len
                 : v->type == Q35_GGUF_ARRAY  ? v->v.arr.raw_len : 0;
    if (src && len) { /* copy the bytes the value points to */
        kv.owned = len <= SIZE_MAX ? malloc((size_t)len) : NULL;
        if (kv.owned) memcpy(kv.owned, src, len);
        if (v->type == Q35_GGUF_STRING) kv.value.v.str.data = kv.owned;
        else kv.value.v.arr.raw = kv.owned;
    }
    if (!kv.key || (src && len && !kv.owned)) {
        free(kv.key);
        free(kv.owned);
        return q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory");
    }
    wr->kvs[wr->n_kv++] = kv;
    return Q35_OK;
}

int q35_gguf_writer_set_u32(q35_gguf_writer *wr, const char *key, uint32_t v, q35_error *err) {
    q35_gguf_value val = {.type = Q35_GGUF_UINT32, .v.u = v};
    return q35_gguf_writer_set(wr, key, &val, err);
}

int q35_gguf_writer_set_f32(q35_gguf_writer *wr, const char *key, float v, q35_error *err) {
    q35_gguf_value val = {.type = Q35_GGUF_FLOAT32, .v.f = v};
    return q35_gguf_writer_set(wr, key, &val, err);
}

int q35_gguf_writer_set_str(q35_gguf_writer *wr, const char *key, const char *s, q35_error *err) {
    q35_gguf_value val = {.type = Q35_GGUF_STRING};
    val.v.str.data = s ? s : "";
    val.v.str.len = s ? strlen(s) : 0;
    return q35_gguf_writer_set(wr, key, &val, err);
}

int q35_gguf_writer_set_array(q35_gguf_writer *wr, const char *key, int elem_type,
                              const void *elems, const uint64_t *lens, uint64_t n,
                              q35_error *err) {
    int size = q35_gguf_type_size(elem_type);
    if (size < 0 || elem_type == Q35_GGUF_ARRAY)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': bad array element type %d",
                        key ? key : "", elem_type);
    if (n && !elems)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': NULL elements", key ? key : "");
    bytes raw = {0};
    if (elem_type == Q35_GGUF_STRING) {
        const char *const *s = elems;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len = lens ? lens[i] : (s[i] ? strlen(s[i]) : 0);
            if (!s[i] && len) {
                free(raw.p);
                return q35_fail(err, Q35_ERR_ARG, "gguf writer: key '%s': string %llu is NULL",
                                key ? key : "", (unsigned long long)i);
            }
            put_string(&raw, s[i], len);
        }
    } else {
        uint64_t total;
        if (q35_mul_u64(n, (uint64_t)size, &total)) raw.oom = 1;
        else put(&raw, elems, total);
    }
    int rc;
    if (raw.oom) {
        rc = q35_fail(err, Q35_ERR_NOMEM, "gguf writer: key '%s': out of memory", key ? key : "");
    } else {
        q35_gguf_value v = {.type = Q35_GGUF_ARRAY};
        v.v.arr.elem_type = elem_type;
        v.v.arr.n = n;
        v.v.arr.raw = raw.p;
        v.v.arr.raw_len = raw.len;
        rc = q35_gguf_writer_set(wr, key, &v, err); /* checks booleans are 0/1 */
    }
    free(raw.p);
    return rc;
}

/* ---- tensors ----------------------------------------------------------- */

static int add_tensor(q35_gguf_writer *wr, const char *name, int dtype, int n_dims,
                      const int64_t *ne, const void *data, q35_gguf_fill fill, void *user,
                      q35_error *err) {
    int rc = check_name(name, "tensor name", GGUF_MAX_NAME_LEN, err);
    if (rc) return rc;
    for (int i = 0; i < wr->n_tensors; i++)
        if (strcmp(wr->tensors[i].name, name) == 0)
            return q35_fail(err, Q35_ERR_ARG, "gguf writer: tensor '%s' is added twice", name);
    const q35_dtype_info *info = q35_dtype_get(dtype);
    if (!info) return q35_fail(err, Q35_ERR_ARG, "gguf writer: tensor '%s': unknown type %d", name, dtype);
    if (n_dims < 1 || n_dims > 4 || !ne)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: tensor '%s': %d dimensions", name, n_dims);
    writer_tensor t = {.dtype = dtype, .n_dims = n_dims, .data = data, .fill = fill, .user = user,
                       .ne = {1, 1, 1, 1}};
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || q35_mul_u64(n, (uint64_t)ne[d], &n) || n > (uint64_t)INT64_MAX)
            return q35_fail(err, Q35_ERR_ARG, "gguf writer: tensor '%s': bad dimension %d = %lld",
                            name, d, (long long)ne[d]);
        t.ne[d] = ne[d];
    }
    if ((info->block_elems > 0 && t.ne[0] % info->block_elems != 0) ||
        q35_dtype_tensor_bytes(dtype, t.ne[0], (int64_t)(n / (uint64_t)t.ne[0]), &t.nbytes))
        return q35_fail(err, Q35_ERR_ARG,
                        "gguf writer: tensor '%s': rows of %lld are not whole %s blocks (or the size overflows)", name,
                        (long long)t.ne[0], info->name);
    if (!data && !fill) return q35_fail(err, Q35_ERR_ARG, "gguf writer: tensor '%s': NULL data", name);
    if (wr->n_tensors == wr->cap_tensors) {
        int cap = wr->cap_tensors ? 2 * wr->cap_tensors : 64;
        writer_tensor *ts = realloc(wr->tensors, (size_t)cap * sizeof *ts);
        if (!ts) return q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory");
        wr->tensors = ts;
        wr->cap_tensors = cap;
    }
    if (!(t.name = strdup(name))) return q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory");
    wr->tensors[wr->n_tensors++] = t;
    return Q35_OK;
}

int q35_gguf_writer_add_tensor(q35_gguf_writer *wr, const char *name, int dtype, int n_dims,
                               const int64_t *ne, const void *data, q35_error *err) {
    return add_tensor(wr, name, dtype, n_dims, ne, data, NULL, NULL, err);
}

int q35_gguf_writer_add_tensor_fill(q35_gguf_writer *wr, const char *name, int dtype, int n_dims,
                                    const int64_t *ne, q35_gguf_fill fill, void *user,
                                    q35_error *err) {
    if (!fill) return q35_fail(err, Q35_ERR_ARG, "gguf writer: tensor '%s': NULL fill", name ? name : "");
    return add_tensor(wr, name, dtype, n_dims, ne, NULL, fill, user, err);
}

/* ---- writing ----------------------------------------------------------- */

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* The header: preamble, keys, tensor infos (offsets laid out in order). */
static int build_header(const q35_gguf_writer *wr, uint64_t alignment, int add_alignment,
                        bytes *h) {
    put(h, GGUF_MAGIC, 4);
    put_u32(h, 3);
    put_u64(h, (uint64_t)wr->n_tensors);
    put_u64(h, (uint64_t)wr->n_kv + (add_alignment ? 1 : 0));
    for (int i = 0; i < wr->n_kv; i++) {
        put_string(h, wr->kvs[i].key, strlen(wr->kvs[i].key));
        put_u32(h, (uint32_t)wr->kvs[i].value.type);
        put_value(h, &wr->kvs[i].value);
    }
    if (add_alignment) {
        static const char key[] = "general.alignment";
        put_string(h, key, sizeof key - 1);
        put_u32(h, Q35_GGUF_UINT32);
        put_u32(h, (uint32_t)alignment);
    }
    uint64_t offset = 0;
    for (int i = 0; i < wr->n_tensors; i++) {
        const writer_tensor *t = &wr->tensors[i];
        put_string(h, t->name, strlen(t->name));
        put_u32(h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(h, (uint64_t)t->ne[d]);
        put_u32(h, (uint32_t)t->dtype);
        put_u64(h, offset);
        if (q35_add_u64(offset, t->nbytes, &offset) || offset > UINT64_MAX - alignment) return -1;
        offset = align_up(offset, alignment);
    }
    return h->oom ? -1 : 0;
}

/* Zero bytes up to the alignment. */
static int write_zeros(q35_outfile *f, uint64_t n, q35_error *err) {
    static const uint8_t zeros[256];
    int rc = Q35_OK;
    while (n > 0 && !rc) {
        const uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        rc = q35_outfile_write(f, zeros, k, err);
        n -= k;
    }
    return rc;
}

/* A tensor its fill callback produces, in chunks of at most this many
 * bytes through one buffer: the writer holds no more than that at once. */
#define FILL_CHUNK ((uint64_t)64 << 20)

/* Header, padding, then each tensor padded to the alignment: front to
 * back, so a device, FIFO or socket can take it. */
static int write_contents(q35_outfile *f, const q35_gguf_writer *wr, const bytes *h, uint64_t alignment,
                          q35_error *err) {
    int rc = q35_outfile_write(f, h->p, h->len, err);
    if (!rc) rc = write_zeros(f, align_up(h->len, alignment) - h->len, err);
    uint8_t *buf = NULL;
    uint64_t cap = 0;
    for (int i = 0; i < wr->n_tensors && !rc; i++) {
        const writer_tensor *t = &wr->tensors[i];
        if (t->fill) {
            const uint64_t want = t->nbytes < FILL_CHUNK ? t->nbytes : FILL_CHUNK;
            if (want > cap) {
                free(buf);
                cap = want;
                if (!(buf = malloc((size_t)cap))) {
                    rc = q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory for '%s'", t->name);
                    break;
                }
            }
            for (uint64_t off = 0; off < t->nbytes && !rc; off += cap) {
                const uint64_t len = t->nbytes - off < cap ? t->nbytes - off : cap;
                rc = t->fill(t->user, buf, off, len, err);
                if (!rc) rc = q35_outfile_write(f, buf, len, err);
            }
        } else {
            rc = q35_outfile_write(f, t->data, t->nbytes, err);
        }
        if (!rc) rc = write_zeros(f, align_up(t->nbytes, alignment) - t->nbytes, err);
    }
    free(buf);
    return rc;
}

int q35_gguf_writer_size(const q35_gguf_writer *wr, uint64_t *size, q35_error *err) {
    int ai = find_key(wr, "general.alignment");
    uint64_t alignment = ai >= 0 ? wr->kvs[ai].value.v.u : GGUF_DEFAULT_ALIGNMENT;
    bytes h = {0};
    int bad = build_header(wr, alignment, ai < 0, &h);
    uint64_t total = align_up(h.len, alignment);
    for (int i = 0; i < wr->n_tensors && !bad; i++)
        bad = q35_add_u64(total, align_up(wr->tensors[i].nbytes, alignment), &total);
    free(h.p);
    if (bad) return q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory (or sizes overflow) building the header");
    *size = total;
    return Q35_OK;
}

int q35_gguf_writer_write_opts(q35_gguf_writer *wr, const char *path, const q35_outfile_opts *opts,
                               q35_error *err) {
    int ai = find_key(wr, "general.alignment");
    uint64_t alignment = ai >= 0 ? wr->kvs[ai].value.v.u : GGUF_DEFAULT_ALIGNMENT;
    bytes h = {0};
    uint64_t total = 0;
    if (build_header(wr, alignment, ai < 0, &h) || q35_gguf_writer_size(wr, &total, NULL)) {
        free(h.p);
        return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory (or sizes overflow) building the header", path);
    }
    /* the header is complete before the first byte: the file is written
     * front to back and may be streamed */
    q35_outfile_opts o = opts ? *opts : (q35_outfile_opts){0};
    o.size = total;
    o.seeks = 0;
    q35_outfile *f = NULL;
    int rc = q35_outfile_open(&f, path, &o, err);
    if (!rc) rc = write_contents(f, wr, &h, alignment, err);
    if (!rc) rc = q35_outfile_commit(f, err);
    else q35_outfile_abort(f);
    free(h.p);
    return rc;
}

int q35_gguf_writer_write(q35_gguf_writer *wr, const char *path, q35_error *err) {
    return q35_gguf_writer_write_opts(wr, path, NULL, err);
}

/* ---- whole models ------------------------------------------------------ */

/* general.architecture and the {arch}.* keys llama.cpp's converter
 * writes for hp (the ones q35's architecture readers read back). */
static int set_hparams_keys(q35_gguf_writer *wr, const q35_hparams *hp, q35_error *err) {
    const q35_config *c = &hp->c;
    const char *arch = hp->arch ? hp->arch->name : "llama";
    char key[96];
#define KEY(k) (snprintf(key, sizeof key, "%s.%s", arch, k), key)
    const struct { const char *key; int value, when; } ints[] = {
        {"context_length", c->seq_len, 1},
        {"embedding_length", c->dim, 1},
        {"block_count", c->n_layers, 1},
        {"feed_forward_length", c->hidden_dim, 1},
        {"attention.head_count", c->n_heads, 1},
        {"attention.head_count_kv", c->n_kv_heads, 1},
        {"rope.dimension_count", hp->n_rot, 1},
        {"attention.key_length", c->head_dim, c->head_dim * c->n_heads != c->dim},
        {"attention.value_length", c->head_dim, c->head_dim * c->n_heads != c->dim},
        {"vocab_size", c->vocab_size, 1},
        {"attention.sliding_window", hp->sliding_window, hp->sliding_window > 0},
        {"rope.scaling.original_context_length", hp->rope_orig_ctx, hp->rope_orig_ctx > 0},
    };
    int rc = q35_gguf_writer_set_str(wr, "general.architecture", arch, err);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++)
        if (ints[i].when) rc = q35_gguf_writer_set_u32(wr, KEY(ints[i].key), (uint32_t)ints[i].value, err);
    if (!rc) rc = q35_gguf_writer_set_f32(wr, KEY("rope.freq_base"), c->rope_theta, err);
    if (!rc && hp->rope_theta_local > 0)
        rc = q35_gguf_writer_set_f32(wr, KEY("rope.freq_base_swa"), hp->rope_theta_local, err);
    if (!rc) rc = q35_gguf_writer_set_f32(wr, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps, err);
    if (!rc && hp->rope_scaling == Q35_ROPE_SCALING_LINEAR) {
        rc = q35_gguf_writer_set_str(wr, KEY("rope.scaling.type"), "linear", err);
        if (!rc) rc = q35_gguf_writer_set_f32(wr, KEY("rope.scaling.factor"), 1.0f / hp->rope_freq_scale, err);
    }
    if (!rc && hp->rope_attn_factor != 1.0f)
        rc = q35_gguf_writer_set_f32(wr, KEY("rope.scaling.attn_factor"), hp->rope_attn_factor, err);
    if (!rc && hp->attn_softcap > 0)
        rc = q35_gguf_writer_set_f32(wr, KEY("attn_logit_softcapping"), hp->attn_softcap, err);
    if (!rc && hp->final_softcap > 0)
        rc = q35_gguf_writer_set_f32(wr, KEY("final_logit_softcapping"), hp->final_softcap, err);
#undef KEY
    return rc;
}

int q35_gguf_writer_set_hparams(q35_gguf_writer *wr, const q35_hparams *hp, q35_error *err) {
    return set_hparams_keys(wr, hp, err);
}

/* t's data as target (F32 or F16) in a new buffer *out. */
static int convert_tensor(const q35_tensor *t, int target, void **out, q35_error *err) {
    const q35_dtype_info *info = q35_dtype_get(t->dtype);
    uint64_t n = 1, bytes;
    for (int d = 0; d < Q35_MAX_DIMS; d++) n *= (uint64_t)t->ne[d];
    if (!info || !info->to_f32 || q35_mul_u64(n, sizeof(float), &bytes) || bytes > SIZE_MAX)
        return q35_fail(err, Q35_ERR_ARG, "gguf writer: tensor '%s' cannot be converted", t->name);
    float *f = malloc((size_t)bytes);
    if (!f) return q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory for '%s'", t->name);
    info->to_f32(t->data, f, (int64_t)n);
    if (target == Q35_DTYPE_F32) {
        *out = f;
        return Q35_OK;
    }
    uint16_t *h = malloc((size_t)n * sizeof *h);
    if (h)
        for (uint64_t i = 0; i < n; i++) h[i] = q35_f32_to_f16(f[i]);
    free(f);
    *out = h;
    return h ? Q35_OK : q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory for '%s'", t->name);
}

int q35_gguf_save_model(const char *path, const q35_weights *w, q35_gguf_add_keys add,
                        const void *src, int out_dtype, q35_error *err) {
    if (out_dtype != -1 && out_dtype != Q35_DTYPE_F32 && out_dtype != Q35_DTYPE_F16)
        return q35_fail(err, Q35_ERR_ARG, "%s: output type %d is neither F32 nor F16", path,
                        out_dtype);
    q35_gguf_writer *wr;
    int rc = q35_gguf_writer_new(&wr, err);
    if (rc) return rc;
    void **converted = calloc((size_t)w->n_tensors + 1, sizeof *converted);
    if (!converted) rc = q35_fail(err, Q35_ERR_NOMEM, "gguf writer: out of memory");
    q35_hparams hp = w->hp; /* a plain LLaMA where the caller filled only cfg */
    if (!hp.arch) q35_arch_llama_defaults(&w->cfg, &hp);
    if (!rc) rc = q35_gguf_writer_set_hparams(wr, &hp, err);
    if (!rc && add) rc = add(src, wr, err);
    for (int i = 0; i < w->n_tensors && !rc; i++) {
        const q35_tensor *t = &w->tensors[i];
        int target = out_dtype < 0 ? t->dtype : t->n_dims >= 2 ? out_dtype : Q35_DTYPE_F32;
        if (target != t->dtype) rc = convert_tensor(t, target, &converted[i], err);
        if (!rc)
            rc = q35_gguf_writer_add_tensor(wr, t->name, target, t->n_dims, t->ne,
                                            converted[i] ? converted[i] : t->data, err);
    }
    if (rc && err) { /* name the file the failure was for */
        char msg[sizeof err->msg];
        memcpy(msg, err->msg, sizeof msg);
        q35_fail(err, rc, "%s: %s", path, msg);
    }
    if (!rc) rc = q35_gguf_writer_write(wr, path, err);
    for (int i = 0; converted && i < w->n_tensors; i++) free(converted[i]);
    free(converted);
    q35_gguf_writer_free(wr);
    return rc;
}
