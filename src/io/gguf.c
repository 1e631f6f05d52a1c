/* gguf.c — the GGUF reader (versions 2 and 3) and the llama model loader.
 *
 * The whole header is parsed and checked before anything is handed out:
 * every length and count is compared with the bytes that remain before it
 * is used or anything is allocated from it, so the memory a file costs is
 * proportional to its header. What is refused (each with a one-line error
 * naming the file and the key or tensor):
 *  - a magic other than "GGUF", versions other than 2 and 3;
 *  - kv or tensor counts more than the rest of the file could hold;
 *  - strings and arrays longer than the rest of the file; unknown value
 *    types; booleans other than 0 and 1; arrays nested deeper than
 *    GGUF_MAX_DEPTH;
 *  - keys and tensor names that are empty, too long (keys 65535 bytes,
 *    names 63), not valid UTF-8 or hold a NUL byte, or repeat an earlier
 *    one. String *values* may hold any bytes (tokens can be raw bytes);
 *  - general.alignment not a u32 power of two;
 *  - tensors with 0 or more than 4 dimensions, a dimension of 0 or past
 *    INT64_MAX, an element count past INT64_MAX or more than the rest of
 *    the file could hold at a bit per weight, a type neither ggml nor q35
 *    defines (ggml types q35 cannot compute with are read, and refused by
 *    the model loader), rows that are not whole blocks, an offset that is
 *    not a multiple of the alignment, data past the end of the file, or
 *    data overlapping another tensor's.
 * Tensor data is handed out as pointers into the caller's (or our) mapping. */
#include "io/gguf.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/error.h"
#include "format/dtype.h"
#include "io/gguf_internal.h"
#include "io/llama2c.h"

struct q35_gguf {
    q35_mapfile map;       /* the file, when opened by path */
    const uint8_t *base;   /* size bytes */
    uint64_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_start;   /* where the data section begins */
    q35_gguf_kv *kvs;
    int n_kv;
    q35_gguf_tensor_info *tensors;
    int n_tensors;
};

/* ---- value types ------------------------------------------------------- */

static const struct { const char *name; int size; } value_types[] = {
    [Q35_GGUF_UINT8] = {"u8", 1},     [Q35_GGUF_INT8] = {"i8", 1},
    [Q35_GGUF_UINT16] = {"u16", 2},   [Q35_GGUF_INT16] = {"i16", 2},
    [Q35_GGUF_UINT32] = {"u32", 4},   [Q35_GGUF_INT32] = {"i32", 4},
    [Q35_GGUF_FLOAT32] = {"f32", 4},  [Q35_GGUF_BOOL] = {"bool", 1},
    [Q35_GGUF_STRING] = {"string", 0}, [Q35_GGUF_ARRAY] = {"array", 0},
    [Q35_GGUF_UINT64] = {"u64", 8},   [Q35_GGUF_INT64] = {"i64", 8},
    [Q35_GGUF_FLOAT64] = {"f64", 8},
};
#define N_VALUE_TYPES ((int)(sizeof value_types / sizeof value_types[0]))

static int type_known(uint64_t type) { return type < (uint64_t)N_VALUE_TYPES; }

const char *q35_gguf_type_name(int type) {
    return type >= 0 && type_known((uint64_t)type) ? value_types[type].name : "?";
}

int q35_gguf_type_size(int type) {
    return type >= 0 && type_known((uint64_t)type) ? value_types[type].size : -1;
}

int q35_gguf_utf8_valid(const uint8_t *s, uint64_t n) {
    uint64_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t cp, min;
        int len;
        if (b < 0x80) { i++; continue; }
        if ((b & 0xe0) == 0xc0) len = 2, cp = b & 0x1f, min = 0x80;
        else if ((b & 0xf0) == 0xe0) len = 3, cp = b & 0x0f, min = 0x800;
        else if ((b & 0xf8) == 0xf0) len = 4, cp = b & 0x07, min = 0x10000;
        else return 0;
        if ((uint64_t)len > n - i) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += (uint64_t)len;
    }
    return 1;
}

/* ---- the cursor -------------------------------------------------------- */

static void set_where(gguf_cursor *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_where(gguf_cursor *c, const char *fmt, ...) {
    if (!c->err) return; /* nobody will read it */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->where, sizeof c->where, fmt, ap);
    va_end(ap);
}

/* Fails with "<file>: <where>: <message>". */
static int bad(gguf_cursor *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(gguf_cursor *c, int code, const char *fmt, ...) {
    if (!c->err) return code;
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return q35_fail(c->err, code, "%s: %s: %s", c->file, c->where, msg);
}

static uint64_t bytes_left(const gguf_cursor *c) { return c->size - c->off; }

/* Points *p at the next n bytes and moves past them. */
static int take(gguf_cursor *c, uint64_t n, const uint8_t **p) {
    if (n > bytes_left(c))
        return bad(c, Q35_ERR_FORMAT,
                   "truncated: needs %llu bytes at offset %llu, the data ends at %llu",
                   (unsigned long long)n, (unsigned long long)c->off,
                   (unsigned long long)c->size);
    *p = c->base + c->off;
    c->off += n;
    return Q35_OK;
}

static int get_u32(gguf_cursor *c, uint32_t *v) {
    const uint8_t *p = NULL;
    if (take(c, 4, &p)) return Q35_ERR_FORMAT;
    memcpy(v, p, 4);
    return Q35_OK;
}

static int get_u64(gguf_cursor *c, uint64_t *v) {
    const uint8_t *p = NULL;
    if (take(c, 8, &p)) return Q35_ERR_FORMAT;
    memcpy(v, p, 8);
    return Q35_OK;
}

/* A GGUF string: u64 length, then that many bytes. */
static int get_string(gguf_cursor *c, const uint8_t **s, uint64_t *len) {
    if (get_u64(c, len)) return Q35_ERR_FORMAT;
    if (*len > bytes_left(c))
        return bad(c, Q35_ERR_FORMAT, "string of %llu bytes at offset %llu runs past the end (%llu)",
                   (unsigned long long)*len, (unsigned long long)c->off,
                   (unsigned long long)c->size);
    return take(c, *len, s);
}

/* ---- values ------------------------------------------------------------ */

/* Decodes a fixed-size scalar of type at p (the bytes exist). */
static void decode_scalar(int type, const uint8_t *p, q35_gguf_value *out) {
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    float f32;
    switch (type) {
    case Q35_GGUF_UINT8: case Q35_GGUF_BOOL: memcpy(&u8, p, 1); out->v.u = u8; break;
    case Q35_GGUF_INT8: memcpy(&i8, p, 1); out->v.i = i8; break;
    case Q35_GGUF_UINT16: memcpy(&u16, p, 2); out->v.u = u16; break;
    case Q35_GGUF_INT16: memcpy(&i16, p, 2); out->v.i = i16; break;
    case Q35_GGUF_UINT32: memcpy(&u32, p, 4); out->v.u = u32; break;
    case Q35_GGUF_INT32: memcpy(&i32, p, 4); out->v.i = i32; break;
    case Q35_GGUF_FLOAT32: memcpy(&f32, p, 4); out->v.f = f32; break;
    case Q35_GGUF_UINT64: memcpy(&out->v.u, p, 8); break;
    case Q35_GGUF_INT64: memcpy(&out->v.i, p, 8); break;
    case Q35_GGUF_FLOAT64: memcpy(&out->v.f, p, 8); break;
    default: break;
    }
}

/* Reads one value of type at the cursor into out (strings and arrays
 * point into the bytes). depth counts the arrays around it. */
static int parse_value(gguf_cursor *c, uint64_t type, q35_gguf_value *out, int depth) {
    memset(out, 0, sizeof *out);
    if (!type_known(type))
        return bad(c, Q35_ERR_FORMAT, "unknown value type %llu", (unsigned long long)type);
    out->type = (int)type;
    if (type == Q35_GGUF_STRING) {
        const uint8_t *s = NULL;
        if (get_string(c, &s, &out->v.str.len)) return Q35_ERR_FORMAT;
        out->v.str.data = (const char *)s;
        return Q35_OK;
    }
    if (type == Q35_GGUF_ARRAY) {
        uint32_t elem_type;
        uint64_t n;
        if (depth >= GGUF_MAX_DEPTH)
            return bad(c, Q35_ERR_FORMAT, "arrays nested more than %d deep", GGUF_MAX_DEPTH);
        if (get_u32(c, &elem_type) || get_u64(c, &n)) return Q35_ERR_FORMAT;
        uint64_t start = c->off;
        int rc = q35_gguf_parse_array_body(c, (int)elem_type, n, depth);
        if (rc) return rc;
        out->v.arr.elem_type = (int)elem_type;
        out->v.arr.n = n;
        out->v.arr.raw = c->base + start;
        out->v.arr.raw_len = c->off - start;
        return Q35_OK;
    }
    const uint8_t *p = NULL;
    if (take(c, (uint64_t)value_types[type].size, &p)) return Q35_ERR_FORMAT;
    decode_scalar((int)type, p, out);
    if (type == Q35_GGUF_BOOL && out->v.u > 1)
        return bad(c, Q35_ERR_FORMAT, "bool value %llu at offset %llu is not 0 or 1",
                   (unsigned long long)out->v.u, (unsigned long long)(c->off - 1));
    return Q35_OK;
}

int q35_gguf_parse_array_body(gguf_cursor *c, int elem_type, uint64_t n, int depth) {
    if (elem_type < 0 || !type_known((uint64_t)elem_type))
        return bad(c, Q35_ERR_FORMAT, "unknown array element type %u", (unsigned)elem_type);
    /* the fewest bytes an element can take: refuse absurd counts up front */
    int size = value_types[elem_type].size;
    uint64_t least = elem_type == Q35_GGUF_STRING ? 8 : elem_type == Q35_GGUF_ARRAY ? 12
                                                                                   : (uint64_t)size;
    if (n > bytes_left(c) / least)
        return bad(c, Q35_ERR_FORMAT,
                   "array of %llu %s elements at offset %llu needs at least %llu bytes each, "
                   "only %llu bytes are left",
                   (unsigned long long)n, value_types[elem_type].name,
                   (unsigned long long)c->off, (unsigned long long)least,
                   (unsigned long long)bytes_left(c));
    if (size > 0 && elem_type != Q35_GGUF_BOOL) {
        c->off += n * (uint64_t)size; /* fits: checked just above */
        return Q35_OK;
    }
    q35_gguf_value elem;
    for (uint64_t i = 0; i < n; i++) {
        int rc = parse_value(c, (uint64_t)elem_type, &elem, depth + 1);
        if (rc) return rc;
    }
    return Q35_OK;
}

int q35_gguf_array_get(const q35_gguf_value *arr, uint64_t i, q35_gguf_value *out) {
    if (!arr || !out || arr->type != Q35_GGUF_ARRAY || i >= arr->v.arr.n) return Q35_ERR_ARG;
    int elem_type = arr->v.arr.elem_type;
    int size = q35_gguf_type_size(elem_type);
    if (size < 0) return Q35_ERR_FORMAT;
    gguf_cursor c = {.base = arr->v.arr.raw, .size = arr->v.arr.raw_len};
    if (size > 0) {
        if (i >= arr->v.arr.raw_len / (uint64_t)size) return Q35_ERR_FORMAT;
        c.off = i * (uint64_t)size;
    } else { /* strings and arrays: walk past the i before it */
        q35_gguf_value skipped;
        for (uint64_t k = 0; k < i; k++)
            if (parse_value(&c, (uint64_t)elem_type, &skipped, 1)) return Q35_ERR_FORMAT;
    }
    return parse_value(&c, (uint64_t)elem_type, out, 1) ? Q35_ERR_FORMAT : Q35_OK;
}

int q35_gguf_array_next_str(const q35_gguf_value *arr, uint64_t *pos, const char **s,
                            uint64_t *len) {
    if (!arr || arr->type != Q35_GGUF_ARRAY || arr->v.arr.elem_type != Q35_GGUF_STRING) return -1;
    uint64_t at = *pos, n;
    if (at > arr->v.arr.raw_len || arr->v.arr.raw_len - at < 8) return -1;
    memcpy(&n, arr->v.arr.raw + at, 8);
    if (n > arr->v.arr.raw_len - at - 8) return -1; /* the reader checked: never */
    *s = (const char *)arr->v.arr.raw + at + 8;
    *len = n;
    *pos = at + 8 + n;
    return 0;
}

/* ---- keys and names ---------------------------------------------------- */

static int by_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts the n names at v and sets *repeat to one that appears twice, or
 * NULL. Sorting keeps the worst case O(n log n), whatever the names. */
static void find_repeat(const char **v, int n, const char **repeat) {
    *repeat = NULL;
    qsort(v, (size_t)n, sizeof *v, by_name);
    for (int i = 1; i < n && !*repeat; i++)
        if (strcmp(v[i - 1], v[i]) == 0) *repeat = v[i];
}

/* Reads a key or tensor name (kind says which) into a malloc'ed C string. */
static int read_name(gguf_cursor *c, const char *kind, uint64_t max_len, char **out) {
    const uint8_t *s = NULL;
    uint64_t len;
    if (get_string(c, &s, &len)) return Q35_ERR_FORMAT;
    if (len == 0) return bad(c, Q35_ERR_FORMAT, "empty %s", kind);
    if (len > max_len)
        return bad(c, Q35_ERR_FORMAT, "%s of %llu bytes is longer than the limit of %llu",
                   kind, (unsigned long long)len, (unsigned long long)max_len);
    if (memchr(s, 0, len)) return bad(c, Q35_ERR_FORMAT, "%s holds a NUL byte", kind);
    if (!q35_gguf_utf8_valid(s, len))
        return bad(c, Q35_ERR_FORMAT, "%s at offset %llu is not valid UTF-8", kind,
                   (unsigned long long)(c->off - len));
    char *copy = malloc(len + 1);
    if (!copy) return bad(c, Q35_ERR_NOMEM, "out of memory");
    memcpy(copy, s, len);
    copy[len] = '\0';
    *out = copy;
    return Q35_OK;
}

/* ---- the header -------------------------------------------------------- */

static int parse_preamble(q35_gguf *g, gguf_cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
    const uint8_t *magic = NULL;
    set_where(c, "header");
    if (c->size < 4)
        return bad(c, Q35_ERR_FORMAT, "not a GGUF file: only %llu bytes",
                   (unsigned long long)c->size);
    if (take(c, 4, &magic)) return Q35_ERR_FORMAT;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0)
        return bad(c, Q35_ERR_FORMAT,
                   "not a GGUF file: it starts with %02x %02x %02x %02x, not \"GGUF\"",
                   magic[0], magic[1], magic[2], magic[3]);
    if (get_u32(c, &g->version)) return Q35_ERR_FORMAT;
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return bad(c, Q35_ERR_UNSUPPORTED, "big-endian GGUF (version %u) is not supported",
                   g->version >> 24);
    if (g->version == 1)
        return bad(c, Q35_ERR_UNSUPPORTED,
                   "GGUF version 1 (32-bit counts) is not supported; versions 2 and 3 are");
    if (g->version != 2 && g->version != 3)
        return bad(c, Q35_ERR_UNSUPPORTED,
                   "unknown GGUF version %u; versions 2 and 3 are supported", g->version);
    if (get_u64(c, n_tensors) || get_u64(c, n_kv)) return Q35_ERR_FORMAT;
    /* each kv takes at least 13 bytes (key length, type, a 1-byte value);
     * each tensor info at least 32 (name length, n_dims, ne, type, offset) */
    uint64_t left = bytes_left(c);
    if (*n_kv > left / 13 || *n_kv > INT_MAX)
        return bad(c, Q35_ERR_FORMAT, "kv_count %llu is more than the %llu bytes left could hold",
                   (unsigned long long)*n_kv, (unsigned long long)left);
    if (*n_tensors > left / 32 || *n_tensors > INT_MAX ||
        *n_tensors * 32 > left - *n_kv * 13)
        return bad(c, Q35_ERR_FORMAT,
                   "tensor_count %llu with kv_count %llu is more than the %llu bytes left could hold",
                   (unsigned long long)*n_tensors, (unsigned long long)*n_kv,
                   (unsigned long long)left);
    return Q35_OK;
}

static int parse_kvs(q35_gguf *g, gguf_cursor *c, uint64_t n_kv) {
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    if (!g->kvs)
        return bad(c, Q35_ERR_NOMEM, "out of memory for %llu keys", (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        q35_gguf_kv *kv = &g->kvs[i];
        uint32_t type;
        char *key = NULL;
        int rc;
        set_where(c, "key #%llu", (unsigned long long)i);
        if ((rc = read_name(c, "key", GGUF_MAX_KEY_LEN, &key))) return rc;
        kv->key = key;
        g->n_kv++;
        set_where(c, "key '%.100s'", key);
        if ((rc = get_u32(c, &type)) || (rc = parse_value(c, type, &kv->value, 0))) return rc;
    }
    const char **keys = malloc((n_kv ? n_kv : 1) * sizeof *keys), *repeat;
    if (!keys) return bad(c, Q35_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_kv; i++) keys[i] = g->kvs[i].key;
    find_repeat(keys, g->n_kv, &repeat);
    if (repeat) set_where(c, "key '%.100s'", repeat);
    free(keys);
    return repeat ? bad(c, Q35_ERR_FORMAT, "key appears twice") : Q35_OK;
}

static int read_alignment(q35_gguf *g, gguf_cursor *c) {
    const q35_gguf_value *a = q35_gguf_find(g, "general.alignment");
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!a) return Q35_OK;
    set_where(c, "key 'general.alignment'");
    if (a->type != Q35_GGUF_UINT32)
        return bad(c, Q35_ERR_FORMAT, "has type %s, not u32", q35_gguf_type_name(a->type));
    if (a->v.u == 0 || (a->v.u & (a->v.u - 1)) != 0)
        return bad(c, Q35_ERR_FORMAT, "%llu is not a power of two", (unsigned long long)a->v.u);
    g->alignment = a->v.u;
    return Q35_OK;
}

/* One tensor info: name, n_dims, ne[], type, offset. *floor sums the
 * bytes the tensors so far need at the least. */
static int parse_tensor_info(q35_gguf *g, gguf_cursor *c, q35_gguf_tensor_info *t,
                             uint64_t *floor) {
    uint32_t n_dims, type;
    uint64_t n = 1;
    if (get_u32(c, &n_dims)) return Q35_ERR_FORMAT;
    if (n_dims < 1 || n_dims > 4)
        return bad(c, Q35_ERR_FORMAT, "has %u dimensions; 1 to 4 are allowed", n_dims);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if (get_u64(c, &ne)) return Q35_ERR_FORMAT;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return bad(c, Q35_ERR_FORMAT, "dimension %u is %llu (must be 1 to 2^63-1)", d,
                       (unsigned long long)ne);
        if (q35_mul_u64(n, ne, &n) || n > (uint64_t)INT64_MAX)
            return bad(c, Q35_ERR_FORMAT, "element count overflows 63 bits");
        t->ne[d] = (int64_t)ne;
    }
    if (get_u32(c, &type)) return Q35_ERR_FORMAT;
    /* every ggml type is read (and listed); the loader refuses to run those
     * q35 cannot expand */
    const q35_dtype_info *info = q35_dtype_get((int)type);
    if (!info) return bad(c, Q35_ERR_FORMAT, "unknown tensor type %u", type);
    t->dtype = (int)type;
    /* Every type q35 knows takes at least a bit per weight, and tensors do
     * not overlap: refuse shapes the file cannot hold before sizing them
     * (sizing q35's own types costs time in the row length). */
    *floor += n / 8; /* no overflow: both terms are below the file size */
    if (*floor > c->size - c->off)
        return bad(c, Q35_ERR_FORMAT,
                   "%llu elements do not fit in the %llu bytes left in the file (with the "
                   "tensors before it)",
                   (unsigned long long)n, (unsigned long long)(c->size - c->off));
    if (info->block_elems > 0 && t->ne[0] % info->block_elems != 0)
        return bad(c, Q35_ERR_FORMAT, "rows of %lld elements are not whole %s blocks of %d",
                   (long long)t->ne[0], info->name, info->block_elems);
    /* rows of ne[0]: q35's own types size a tensor by its row length */
    if (q35_dtype_tensor_bytes((int)type, t->ne[0], (int64_t)(n / (uint64_t)t->ne[0]), &t->nbytes))
        return bad(c, Q35_ERR_FORMAT, "the size of %llu %s elements overflows",
                   (unsigned long long)n, info->name);
    if (get_u64(c, &t->offset)) return Q35_ERR_FORMAT;
    if (t->offset % g->alignment != 0)
        return bad(c, Q35_ERR_FORMAT, "offset %llu is not a multiple of the alignment %llu",
                   (unsigned long long)t->offset, (unsigned long long)g->alignment);
    return Q35_OK;
}

static int parse_tensor_infos(q35_gguf *g, gguf_cursor *c, uint64_t n_tensors) {
    uint64_t floor = 0;
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors)
        return bad(c, Q35_ERR_NOMEM, "out of memory for %llu tensors",
                   (unsigned long long)n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        q35_gguf_tensor_info *t = &g->tensors[i];
        char *name = NULL;
        int rc;
        set_where(c, "tensor #%llu", (unsigned long long)i);
        if ((rc = read_name(c, "tensor name", GGUF_MAX_NAME_LEN, &name))) return rc;
        t->name = name;
        g->n_tensors++;
        set_where(c, "tensor '%s'", name);
        if ((rc = parse_tensor_info(g, c, t, &floor))) return rc;
    }
    const char **names = malloc((n_tensors ? n_tensors : 1) * sizeof *names), *repeat;
    if (!names) return bad(c, Q35_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
    find_repeat(names, g->n_tensors, &repeat);
    if (repeat) set_where(c, "tensor '%s'", repeat);
    free(names);
    return repeat ? bad(c, Q35_ERR_FORMAT, "tensor name appears twice") : Q35_OK;
}

static int by_offset(const void *a, const void *b) {
    const q35_gguf_tensor_info *x = *(const q35_gguf_tensor_info *const *)a;
    const q35_gguf_tensor_info *y = *(const q35_gguf_tensor_info *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places the data section after the header and checks every tensor lies
 * inside the file and apart from the others. */
static int place_tensors(q35_gguf *g, gguf_cursor *c) {
    uint64_t a = g->alignment, end;
    set_where(c, "data section");
    if (q35_add_u64(c->off, a - 1, &end))
        return bad(c, Q35_ERR_FORMAT, "start overflows with alignment %llu", (unsigned long long)a);
    g->data_start = end / a * a;
    for (int i = 0; i < g->n_tensors; i++) {
        q35_gguf_tensor_info *t = &g->tensors[i];
        uint64_t start;
        if (q35_add_u64(g->data_start, t->offset, &start) || q35_add_u64(start, t->nbytes, &end) ||
            end > g->size) {
            set_where(c, "tensor '%s'", t->name);
            return bad(c, Q35_ERR_FORMAT,
                       "its %llu bytes at offset %llu of the data section (from byte %llu) "
                       "run past the end of the file (%llu bytes)",
                       (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                       (unsigned long long)g->data_start, (unsigned long long)g->size);
        }
        t->data = g->base + start;
    }
    if (g->n_tensors < 2) return Q35_OK;
    const q35_gguf_tensor_info **order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order) return bad(c, Q35_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, by_offset);
    int rc = Q35_OK;
    for (int i = 1; i < g->n_tensors && !rc; i++) {
        const q35_gguf_tensor_info *prev = order[i - 1], *t = order[i];
        if (prev->offset + prev->nbytes > t->offset) { /* no overflow: both end in the file */
            set_where(c, "tensor '%s'", t->name);
            rc = bad(c, Q35_ERR_FORMAT, "its data (offset %llu) overlaps tensor '%s' (offset %llu, %llu bytes)",
                     (unsigned long long)t->offset, prev->name,
                     (unsigned long long)prev->offset, (unsigned long long)prev->nbytes);
        }
    }
    free(order);
    return rc;
}

static int parse(q35_gguf *g, const char *name, q35_error *err) {
    gguf_cursor c = {.base = g->base, .size = g->size, .file = name, .err = err};
    uint64_t n_tensors = 0, n_kv = 0;
    int rc = parse_preamble(g, &c, &n_tensors, &n_kv);
    if (!rc) rc = parse_kvs(g, &c, n_kv);
    if (!rc) rc = read_alignment(g, &c);
    if (!rc) rc = parse_tensor_infos(g, &c, n_tensors);
    if (!rc) rc = place_tensors(g, &c);
    return rc;
}

/* ---- the file object --------------------------------------------------- */

int q35_gguf_open_memory(q35_gguf **out, const void *data, uint64_t size, const char *name,
                         q35_error *err) {
    *out = NULL;
    if (!name) name = "(memory)";
    if (!data && size > 0) return q35_fail(err, Q35_ERR_ARG, "%s: NULL data", name);
    q35_gguf *g = calloc(1, sizeof *g);
    if (!g) return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", name);
    g->base = data;
    g->size = size;
    int rc = parse(g, name, err);
    if (rc) {
        q35_gguf_close(g);
        return rc;
    }
    *out = g;
    return Q35_OK;
}

int q35_gguf_open(q35_gguf **out, const char *path, q35_error *err) {
    q35_mapfile map;
    *out = NULL;
    int rc = q35_mapfile_open(&map, path, err);
    if (rc) return rc;
    rc = q35_gguf_open_memory(out, map.data, map.size, path, err);
    if (rc) {
        q35_mapfile_close(&map);
        return rc;
    }
    (*out)->map = map; /* closed with it */
    return Q35_OK;
}

void q35_gguf_close(q35_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) free((char *)g->kvs[i].key);
    for (int i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    q35_mapfile_close(&g->map);
    free(g);
}

uint32_t q35_gguf_version(const q35_gguf *g) { return g->version; }
uint64_t q35_gguf_alignment(const q35_gguf *g) { return g->alignment; }
int q35_gguf_n_kv(const q35_gguf *g) { return g->n_kv; }
int q35_gguf_n_tensors(const q35_gguf *g) { return g->n_tensors; }

const q35_gguf_kv *q35_gguf_kv_at(const q35_gguf *g, int i) {
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const q35_gguf_tensor_info *q35_gguf_tensor_at(const q35_gguf *g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const q35_gguf_value *q35_gguf_find(const q35_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kvs[i].key, key) == 0) return &g->kvs[i].value;
    return NULL;
}

/* ---- llama models ------------------------------------------------------ */

/* The metadata of one file, with what failures must name. */
typedef struct meta {
    const q35_gguf *g;
    const char *path;
    q35_error *err;
} meta;

static int missing(const meta *m, const char *key) {
    return q35_fail(m->err, Q35_ERR_FORMAT, "%s: required key '%s' is missing", m->path, key);
}

static int wrong_type(const meta *m, const char *key, int type, const char *want) {
    return q35_fail(m->err, Q35_ERR_FORMAT, "%s: key '%s' has type %s, not %s", m->path, key,
                    q35_gguf_type_name(type), want);
}

/* A string key; *s NULL when absent and not required. */
static int meta_str(const meta *m, const char *key, int required, const char **s, uint64_t *len) {
    const q35_gguf_value *v = q35_gguf_find(m->g, key);
    *s = NULL;
    *len = 0;
    if (!v) return required ? missing(m, key) : Q35_OK;
    if (v->type != Q35_GGUF_STRING) return wrong_type(m, key, v->type, "string");
    *s = v->v.str.data ? v->v.str.data : "";
    *len = v->v.str.len;
    return Q35_OK;
}

/* ---- the architecture's keys (arch/arch.h's q35_keysrc over the metadata) ---- */

static int keysrc_get(const q35_keysrc *s, const char *key, q35_keyval *v) {
    const q35_gguf_value *x = q35_gguf_find(s->ctx, key);
    if (!x) return 0;
    memset(v, 0, sizeof *v);
    switch (x->type) {
    case Q35_GGUF_UINT8: case Q35_GGUF_UINT16: case Q35_GGUF_UINT32: case Q35_GGUF_UINT64:
        v->type = Q35_KEY_INT;
        v->i = x->v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)x->v.u;
        v->f = (double)v->i;
        return 1;
    case Q35_GGUF_INT8: case Q35_GGUF_INT16: case Q35_GGUF_INT32: case Q35_GGUF_INT64:
        v->type = Q35_KEY_INT;
        v->i = x->v.i;
        v->f = (double)v->i;
        return 1;
    case Q35_GGUF_FLOAT32: case Q35_GGUF_FLOAT64:
        v->type = Q35_KEY_FLOAT;
        v->f = x->v.f;
        return 1;
    case Q35_GGUF_BOOL:
        v->type = Q35_KEY_BOOL;
        v->i = x->v.u != 0;
        return 1;
    case Q35_GGUF_STRING:
        v->type = Q35_KEY_STR;
        v->s = x->v.str.data ? x->v.str.data : "";
        v->len = x->v.str.len;
        return 1;
    default:
        v->type = Q35_KEY_ARRAY;
        v->len = x->v.arr.n;
        return 1;
    }
}

static int keysrc_floats(const q35_keysrc *s, const char *key, float *out, size_t n) {
    const q35_gguf_value *x = q35_gguf_find(s->ctx, key);
    if (!x) return 0;
    if (x->type != Q35_GGUF_ARRAY || x->v.arr.n != n)
        return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' is not an array of %zu numbers", s->path, key, n);
    for (size_t i = 0; i < n; i++) {
        q35_gguf_value e;
        if (q35_gguf_array_get(x, i, &e) != 0)
            return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' is malformed", s->path, key);
        switch (e.type) {
        case Q35_GGUF_FLOAT32: case Q35_GGUF_FLOAT64: out[i] = (float)e.v.f; break;
        case Q35_GGUF_INT8: case Q35_GGUF_INT16: case Q35_GGUF_INT32: case Q35_GGUF_INT64: out[i] = (float)e.v.i; break;
        case Q35_GGUF_UINT8: case Q35_GGUF_UINT16: case Q35_GGUF_UINT32: case Q35_GGUF_UINT64: out[i] = (float)e.v.u; break;
        default: return q35_fail(s->err, Q35_ERR_FORMAT, "%s: key '%s' holds a non-number", s->path, key);
        }
    }
    return 1;
}

/* general.architecture and its hyperparameters. */
static int read_hparams(const meta *m, q35_hparams *hp, char *arch_name, size_t cap) {
    const char *arch;
    uint64_t len;
    int rc = meta_str(m, "general.architecture", 1, &arch, &len);
    if (rc) return rc;
    const q35_arch *a = q35_arch_find(arch, len, 0);
    if (!a)
        return q35_fail(m->err, Q35_ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported (q35 runs %s)",
                        m->path, (int)(len > 64 ? 64 : len), arch, q35_arch_names());
    snprintf(arch_name, cap, "%s", a->name);
    const q35_keysrc src = {m->g, 1, a->name, m->path, m->err, keysrc_get, keysrc_floats};
    return q35_arch_read_hparams(a, &src, hp);
}

static int add_tensors(const q35_gguf *g, q35_weights *w, const char *path, q35_error *err) {
    for (int i = 0; i < g->n_tensors; i++) {
        const q35_gguf_tensor_info *t = &g->tensors[i];
        if (!q35_weights_add(w, t->dtype, t->n_dims, t->ne, t->data, "%s", t->name))
            return q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
    }
    return Q35_OK;
}

/* vocab_size (from the tokenizer's token count, {arch}.vocab_size or the
 * embedding's rows, which must agree) and whether the classifier is the
 * embedding. The tokenizer itself is read by the tokenizer module. */
static int finish_config(const meta *m, const q35_weights *w, q35_config *c) {
    const q35_tensor *emb = q35_weights_find(w, "token_embd.weight");
    const q35_gguf_value *tokens = q35_gguf_find(m->g, "tokenizer.ggml.tokens");
    int64_t vocab = c->vocab_size;
    const int present = vocab > 0;
    if (tokens && tokens->type == Q35_GGUF_ARRAY && q35_gguf_find(m->g, "tokenizer.ggml.model")) {
        int n = tokens->v.arr.n > (1u << 22) ? 1 << 22 : (int)tokens->v.arr.n;
        if (present && vocab != n)
            return q35_fail(m->err, Q35_ERR_FORMAT,
                            "%s: %s.vocab_size = %lld but the tokenizer has %d tokens",
                            m->path, w->hp.arch->name, (long long)vocab, n);
        vocab = n;
    }
    if (!emb) return q35_fail(m->err, Q35_ERR_FORMAT, "%s: no tensor 'token_embd.weight'", m->path);
    if (!vocab) vocab = emb->ne[1];
    if (emb->n_dims != 2 || emb->ne[0] != c->dim || emb->ne[1] != vocab)
        return q35_fail(m->err, Q35_ERR_FORMAT,
                        "%s: token_embd.weight is %lld x %lld x %lld x %lld, not %d x %lld "
                        "(dim x vocabulary)",
                        m->path, (long long)emb->ne[0], (long long)emb->ne[1],
                        (long long)emb->ne[2], (long long)emb->ne[3], c->dim, (long long)vocab);
    c->vocab_size = vocab > INT_MAX ? INT_MAX : (int)vocab;
    c->shared_classifier = q35_weights_find(w, "output.weight") == NULL;
    return Q35_OK;
}

int q35_gguf_parse_weights(q35_weights *w, const uint8_t *data, uint64_t size, const char *path,
                           q35_error *err) {
    q35_gguf *g = NULL;
    int rc = q35_gguf_open_memory(&g, data, size, path, err);
    if (!rc) {
        meta m = {g, path, err};
        char arch[32];
        rc = read_hparams(&m, &w->hp, arch, sizeof arch);
        if (!rc) rc = add_tensors(g, w, path, err);
        if (!rc) rc = finish_config(&m, w, &w->hp.c);
        if (!rc) rc = q35_arch_check(&w->hp, path, err);
        if (!rc) w->cfg = w->hp.c;
        if (!rc) snprintf(w->format, sizeof w->format, "GGUF v%u", g->version);
    }
    q35_gguf_close(g);
    return rc;
}

int q35_gguf_load_weights(q35_weights *w, const char *path, q35_error *err) {
    memset(w, 0, sizeof *w);
    int rc = q35_mapfile_open(&w->file, path, err);
    if (!rc) rc = q35_gguf_parse_weights(w, w->file.data, w->file.size, path, err);
    if (rc) q35_weights_free(w); /* zeroed: freeing it again is harmless */
    return rc;
}
