/* safetensors.c — the safetensors container (see hf.h): the header parser
 * q35_safetensors_parse, which checks every entry against the file before
 * handing out any data. For the Hugging Face loader (hf.c) and the fuzzer
 * alike. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/error.h"
#include "format/dtype.h"
#include "io/hf.h"
#include "io/hf_internal.h"

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
        if (q35_hf_json_int(d, 0, MAX_EXACT_INT, &v))
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
        q35_hf_json_int(off->child, 0, MAX_EXACT_INT, &v[0]) ||
        q35_hf_json_int(off->child->next, 0, MAX_EXACT_INT, &v[1]))
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
    cJSON *root = q35_hf_json_parse((const char *)buf + 8, (size_t)header, name, err);
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
