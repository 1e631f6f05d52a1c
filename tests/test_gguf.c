/* test_gguf.c — the GGUF reader, loader and writer.
 *  a. llama.cpp's files in ../shared: hyperparameters, tensor sizes, and a
 *     tokenizer that encodes the whole dev set as the llama2.c one does;
 *  b. stories260K-f32.gguf holds exactly llama2.c's floats (and stories3M's
 *     those of its Q8_0 checkpoint expanded);
 *  c. round trips through the writer: every key and tensor byte-identical;
 *     q35_gguf_save_model in F32, F16 and stored types; atomic writes;
 *  d. a hostile corpus built from a small valid file: every malformation
 *     fails with a one-line message naming the file and the fault.
 * `test_gguf --write-corpus DIR` writes the fuzzer's seed files instead. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "format/dtype.h"
#include "format/q35fmt.h"
#include "harness.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "tokenizer/tokenizer.h"

static char tmpdir[256];

/* ---- helpers ----------------------------------------------------------- */

static int msg_ok(const q35_error *err, const char *name) {
    return err->msg[0] && !strchr(err->msg, '\n') && strstr(err->msg, name) != NULL;
}

static uint64_t numel(const int64_t *ne) {
    return (uint64_t)ne[0] * (uint64_t)ne[1] * (uint64_t)ne[2] * (uint64_t)ne[3];
}

static int same_ids(const q35_tokenizer *a, const q35_tokenizer *b, const char *text,
                    size_t len) {
    int *x = NULL, *y = NULL, nx = -1, ny = -2;
    q35_error err;
    int ok = q35_tokenizer_encode(a, text, len, 1, &x, &nx, &err) == 0 &&
             q35_tokenizer_encode(b, text, len, 1, &y, &ny, &err) == 0 && nx == ny &&
             (nx == 0 || memcmp(x, y, (size_t)nx * sizeof *x) == 0);
    free(x);
    free(y);
    return ok;
}

/* Encodes every line of the dev set with both; the first differing line
 * number, or 0. */
static int first_differing_line(const q35_tokenizer *a, const q35_tokenizer *b, int max_lines) {
    char path[512], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0, bad = 0;
    FILE *f = fopen(shared_path(path, sizeof path, "data/tinystories-dev.txt"), "rb");
    if (!f) return -1;
    while (!bad && (max_lines <= 0 || n < max_lines) && (len = getline(&line, &cap, f)) >= 0) {
        n++;
        if (len > 0 && line[len - 1] == '\n') len--;
        if (!same_ids(a, b, line, (size_t)len)) bad = n;
    }
    free(line);
    fclose(f);
    return bad ? bad : (n > 0 ? 0 : -1);
}

static int tokenizers_equal(const q35_tokenizer *a, const q35_tokenizer *b) {
    if (q35_tokenizer_n_vocab(a) != q35_tokenizer_n_vocab(b) ||
        q35_tokenizer_bos(a) != q35_tokenizer_bos(b) || q35_tokenizer_eos(a) != q35_tokenizer_eos(b) ||
        memcmp(q35_tokenizer_options(a), q35_tokenizer_options(b), sizeof(q35_tokenizer_opts)))
        return 0;
    for (int i = 0; i < q35_tokenizer_n_vocab(a); i++) {
        uint32_t la, lb;
        const char *pa = q35_tokenizer_piece(a, i, &la), *pb = q35_tokenizer_piece(b, i, &lb);
        if (la != lb || memcmp(pa, pb, la) || q35_tokenizer_score(a, i) != q35_tokenizer_score(b, i) ||
            q35_tokenizer_piece_type(a, i) != q35_tokenizer_piece_type(b, i))
            return 0;
    }
    return 1;
}

/* ---- a. llama.cpp's files ---------------------------------------------- */

typedef struct expected {
    const char *file;
    int dim, hidden, layers, heads, kv_heads, vocab;
    const q35_tokenizer *ref; /* the llama2.c tokenizer of the model */
    int whole_dev;            /* encode every dev line with both */
} expected;

static void check_real_file(const expected *e) {
    char path[512];
    q35_error err = {0};
    q35_gguf *g;
    shared_path(path, sizeof path, e->file);
    int rc = q35_gguf_open(&g, path, &err);
    CHECKF(rc == 0, "%s: %s", e->file, err.msg);
    if (rc) return;
    printf("%s: GGUF v%u, %d keys, %d tensors\n", e->file, q35_gguf_version(g), q35_gguf_n_kv(g),
           q35_gguf_n_tensors(g));
    int sizes_ok = 1;
    for (int i = 0; i < q35_gguf_n_tensors(g); i++) {
        const q35_gguf_tensor_info *t = q35_gguf_tensor_at(g, i);
        uint64_t bytes;
        sizes_ok &= q35_dtype_bytes(t->dtype, numel(t->ne), &bytes) == 0 && bytes == t->nbytes &&
                    t->offset % q35_gguf_alignment(g) == 0;
    }
    CHECKF(sizes_ok, "%s: a tensor's size is not q35_dtype_bytes", e->file);

    q35_weights w;
    rc = q35_gguf_load_weights(&w, path, &err);
    CHECKF(rc == 0, "%s: %s", e->file, err.msg);
    if (rc) {
        q35_gguf_close(g);
        return;
    }
    const q35_config *c = &w.cfg;
    CHECKF(c->dim == e->dim && c->hidden_dim == e->hidden && c->n_layers == e->layers &&
               c->n_heads == e->heads && c->n_kv_heads == e->kv_heads &&
               c->vocab_size == e->vocab && c->seq_len == 128 &&
               c->head_dim == e->dim / e->heads && fabsf(c->rms_eps - 1e-5f) < 1e-9f &&
               c->rope_theta == 10000.0f && c->shared_classifier == 0,
           "%s: config %d %d %d %d %d %d %d", e->file, c->dim, c->hidden_dim, c->n_layers,
           c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len);
    CHECK(strcmp(w.format, "GGUF v3") == 0);
    int tensors_ok = w.n_tensors == q35_gguf_n_tensors(g);
    for (int i = 0; tensors_ok && i < w.n_tensors; i++) {
        const q35_gguf_tensor_info *t = q35_gguf_tensor_at(g, i);
        const q35_tensor *wt = &w.tensors[i];
        uint64_t bytes;
        tensors_ok = strcmp(wt->name, t->name) == 0 && wt->dtype == t->dtype &&
                     q35_dtype_bytes(wt->dtype, numel(wt->ne), &bytes) == 0 &&
                     bytes == wt->nbytes && wt->nbytes == t->nbytes &&
                     (const uint8_t *)wt->data >= w.file.data &&
                     (const uint8_t *)wt->data + wt->nbytes <= w.file.data + w.file.size;
    }
    CHECKF(tensors_ok, "%s: weights' tensors differ from the file's", e->file);
    q35_tokenizer *tok = NULL;
    rc = q35_tokenizer_from_gguf(&tok, g, path, &err);
    CHECKF(rc == 0 && tok, "%s: tokenizer: %s", e->file, err.msg);
    CHECKF(tok && same_ids(tok, e->ref, "Once upon a time", 16),
           "%s: 'Once upon a time' encodes differently", e->file);
    if (e->whole_dev && tok) {
        int line = first_differing_line(tok, e->ref, 0);
        CHECKF(line == 0, "%s: dev line %d encodes differently from the llama2.c tokenizer",
               e->file, line);
    }
    q35_tokenizer_free(tok);
    q35_weights_free(&w);
    q35_gguf_close(g);
}

/* ---- b. the same floats as llama2.c's ---------------------------------- */

/* Every tensor of the llama2.c file is in the GGUF file with the same shape
 * and bytes; output.weight there is a copy of the embedding. */
static void compare_with_llama2c(const char *gguf_rel, const char *l2c_rel) {
    char path[512];
    q35_error err = {0};
    q35_weights a, b;
    int ra = q35_gguf_load_weights(&a, shared_path(path, sizeof path, gguf_rel), &err);
    CHECKF(ra == 0, "%s", err.msg);
    int rb = q35_llama2c_load(&b, shared_path(path, sizeof path, l2c_rel), &err);
    CHECKF(rb == 0, "%s", err.msg);
    if (ra || rb) return;
    int same = 1;
    for (int i = 0; i < b.n_tensors; i++) {
        const q35_tensor *y = &b.tensors[i], *x = q35_weights_find(&a, y->name);
        int ok = x && x->dtype == Q35_DTYPE_F32 && x->n_dims == y->n_dims &&
                 memcmp(x->ne, y->ne, sizeof x->ne) == 0 &&
                 memcmp(x->data, y->data, y->nbytes) == 0;
        if (!ok) fprintf(stderr, "  %s: %s differs from %s\n", gguf_rel, y->name, l2c_rel);
        same &= ok;
    }
    CHECKF(same, "%s: tensors differ from %s", gguf_rel, l2c_rel);
    const q35_tensor *out = q35_weights_find(&a, "output.weight");
    const q35_tensor *emb = q35_weights_find(&b, "token_embd.weight");
    CHECKF(a.n_tensors == b.n_tensors + 1 && out && emb && out->nbytes == emb->nbytes &&
               memcmp(out->data, emb->data, emb->nbytes) == 0,
           "%s: output.weight is not a copy of the embedding", gguf_rel);
    q35_weights_free(&a);
    q35_weights_free(&b);
}

/* ---- c. round trips ---------------------------------------------------- */

static int values_equal(const q35_gguf_value *a, const q35_gguf_value *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case Q35_GGUF_STRING:
        return a->v.str.len == b->v.str.len && memcmp(a->v.str.data, b->v.str.data, a->v.str.len) == 0;
    case Q35_GGUF_ARRAY:
        return a->v.arr.elem_type == b->v.arr.elem_type && a->v.arr.n == b->v.arr.n &&
               a->v.arr.raw_len == b->v.arr.raw_len &&
               memcmp(a->v.arr.raw, b->v.arr.raw, a->v.arr.raw_len) == 0;
    case Q35_GGUF_FLOAT32: case Q35_GGUF_FLOAT64:
        return memcmp(&a->v.f, &b->v.f, sizeof a->v.f) == 0;
    case Q35_GGUF_INT8: case Q35_GGUF_INT16: case Q35_GGUF_INT32: case Q35_GGUF_INT64:
        return a->v.i == b->v.i;
    default:
        return a->v.u == b->v.u;
    }
}

/* Copies every key and tensor of rel through the writer; reads it back. */
static void copy_through_writer(const char *rel) {
    char path[512], out[512];
    q35_error err = {0};
    q35_gguf *g, *h = NULL;
    q35_gguf_writer *wr;
    if (q35_gguf_open(&g, shared_path(path, sizeof path, rel), &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    int rc = q35_gguf_writer_new(&wr, &err);
    for (int i = 0; i < q35_gguf_n_kv(g) && !rc; i++)
        rc = q35_gguf_writer_set(wr, q35_gguf_kv_at(g, i)->key, &q35_gguf_kv_at(g, i)->value, &err);
    for (int i = 0; i < q35_gguf_n_tensors(g) && !rc; i++) {
        const q35_gguf_tensor_info *t = q35_gguf_tensor_at(g, i);
        rc = q35_gguf_writer_add_tensor(wr, t->name, t->dtype, t->n_dims, t->ne, t->data, &err);
    }
    snprintf(out, sizeof out, "%s/copy.gguf", tmpdir);
    if (!rc) rc = q35_gguf_writer_write(wr, out, &err);
    q35_gguf_writer_free(wr);
    if (!rc) rc = q35_gguf_open(&h, out, &err);
    CHECKF(rc == 0, "%s copy: %s", rel, err.msg);
    if (rc) {
        q35_gguf_close(g);
        return;
    }
    /* the same keys in the same order (general.alignment added if absent) */
    int added = q35_gguf_find(g, "general.alignment") == NULL;
    int kv_same = q35_gguf_n_kv(h) == q35_gguf_n_kv(g) + added && q35_gguf_version(h) == 3;
    for (int i = 0; kv_same && i < q35_gguf_n_kv(g); i++) {
        const q35_gguf_kv *a = q35_gguf_kv_at(g, i), *b = q35_gguf_kv_at(h, i);
        kv_same = strcmp(a->key, b->key) == 0 && values_equal(&a->value, &b->value);
    }
    if (kv_same && added) {
        const q35_gguf_value *al = q35_gguf_find(h, "general.alignment");
        kv_same = al && al->type == Q35_GGUF_UINT32 && al->v.u == 32;
    }
    CHECKF(kv_same, "%s: keys differ after a round trip", rel);
    int t_same = q35_gguf_n_tensors(h) == q35_gguf_n_tensors(g);
    for (int i = 0; t_same && i < q35_gguf_n_tensors(g); i++) {
        const q35_gguf_tensor_info *a = q35_gguf_tensor_at(g, i), *b = q35_gguf_tensor_at(h, i);
        t_same = strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->n_dims == b->n_dims &&
                 memcmp(a->ne, b->ne, sizeof a->ne) == 0 && a->nbytes == b->nbytes &&
                 memcmp(a->data, b->data, a->nbytes) == 0 && b->offset % 32 == 0;
    }
    CHECKF(t_same, "%s: tensors differ after a round trip", rel);
    q35_gguf_close(g);
    q35_gguf_close(h);
}

/* q35_gguf_save_model from src, reloaded: the config, tokenizer and
 * tensors come back (F16: exactly the rounded floats). */
static void save_and_reload(const q35_weights *src, const q35_tokenizer *tok, int out_dtype,
                            const char *label) {
    char out[512];
    q35_error err = {0};
    q35_weights w;
    snprintf(out, sizeof out, "%s/saved-%s.gguf", tmpdir, label);
    q35_tokenizer *back = NULL;
    int rc = q35_gguf_save_model(out, src, q35_tokenizer_gguf_keys, tok, out_dtype, &err);
    CHECKF(rc == 0, "save %s: %s", label, err.msg);
    if (!rc) rc = q35_gguf_load_weights(&w, out, &err);
    CHECKF(rc == 0, "reload %s: %s", label, err.msg);
    if (rc) return;
    rc = q35_tokenizer_load_gguf(&back, out, &err);
    CHECKF(rc == 0 && back, "reload %s's tokenizer: %s", label, err.msg);
    CHECKF(memcmp(&w.cfg, &src->cfg, sizeof w.cfg) == 0, "%s: config differs", label);
    CHECKF(back && tokenizers_equal(back, tok), "%s: tokenizer differs", label);
    CHECKF(back && first_differing_line(back, tok, 300) == 0,
           "%s: tokenizer encodes differently", label);
    q35_tokenizer_free(back);
    int same = w.n_tensors == src->n_tensors;
    for (int i = 0; same && i < w.n_tensors; i++) {
        const q35_tensor *a = &src->tensors[i], *b = &w.tensors[i];
        int want = out_dtype < 0 ? a->dtype : a->n_dims >= 2 ? out_dtype : Q35_DTYPE_F32;
        same = strcmp(a->name, b->name) == 0 && b->dtype == want && a->n_dims == b->n_dims &&
               memcmp(a->ne, b->ne, sizeof a->ne) == 0;
        if (!same) break;
        if (b->dtype == a->dtype) {
            same = a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
        } else if (a->dtype == Q35_DTYPE_F32 && b->dtype == Q35_DTYPE_F16) {
            const float *x = a->data;
            const uint16_t *h = b->data;
            for (uint64_t k = 0; same && k < numel(a->ne); k++) same = h[k] == q35_f32_to_f16(x[k]);
        } else {
            same = 0;
        }
    }
    CHECKF(same, "%s: tensors differ after save and reload", label);
    q35_weights_free(&w);
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b && fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* Files in tmpdir whose names start with prefix. */
static int count_files(const char *prefix) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d) closedir(d);
    return n;
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    char p[1024];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
}

/* A failed write leaves the old file whole and no temporary behind. */
static void check_atomic_write(const q35_weights *src, const q35_tokenizer *tok) {
    char out[512];
    q35_error err = {0};
    snprintf(out, sizeof out, "%s/atomic.gguf", tmpdir);
    CHECK(q35_gguf_save_model(out, src, q35_tokenizer_gguf_keys, tok, Q35_DTYPE_F16, &err) == 0);
    size_t len0, len1;
    uint8_t *before = read_all(out, &len0);

    struct rlimit old, small;
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = 100000; /* the F32 file is ~1 MB: write() fails with EFBIG */
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &small);
    int rc = q35_gguf_save_model(out, src, q35_tokenizer_gguf_keys, tok, Q35_DTYPE_F32, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECKF(rc == Q35_ERR_IO && msg_ok(&err, out), "a write past RLIMIT_FSIZE: rc %d, %s", rc, err.msg);
    uint8_t *after = read_all(out, &len1);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0);
    CHECKF(count_files("atomic.gguf.tmp-") == 0, "a temporary file was left behind");
    free(before);
    free(after);

    snprintf(out, sizeof out, "%s/no-such-folder/x.gguf", tmpdir);
    rc = q35_gguf_save_model(out, src, q35_tokenizer_gguf_keys, tok, Q35_DTYPE_F32, &err);
    CHECKF(rc == Q35_ERR_IO && msg_ok(&err, out), "writing into a missing folder: %s", err.msg);
    CHECK(q35_gguf_save_model(out, src, q35_tokenizer_gguf_keys, tok, Q35_DTYPE_BF16, &err) == Q35_ERR_ARG);
}

/* The writer refuses what the reader would. */
static void check_writer_refusals(void) {
    q35_gguf_writer *wr;
    q35_error err = {0};
    float data[32] = {0};
    int64_t ne[2] = {32, 1}, bad_ne[1] = {33};
    CHECK(q35_gguf_writer_new(&wr, &err) == 0);
    CHECK(q35_gguf_writer_set_u32(wr, "a.b", 1, &err) == 0);
    CHECK(q35_gguf_writer_set_u32(wr, "a.b", 2, &err) == Q35_ERR_ARG && strstr(err.msg, "twice"));
    CHECK(q35_gguf_writer_set_u32(wr, "", 2, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_set_u32(wr, "bad\xff", 2, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_set_u32(wr, "general.alignment", 24, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_set_str(wr, "general.alignment", "32", &err) == Q35_ERR_ARG);
    q35_gguf_value v = {.type = Q35_GGUF_UINT8, .v.u = 300};
    CHECK(q35_gguf_writer_set(wr, "u8", &v, &err) == Q35_ERR_ARG);
    v = (q35_gguf_value){.type = Q35_GGUF_BOOL, .v.u = 2};
    CHECK(q35_gguf_writer_set(wr, "b", &v, &err) == Q35_ERR_ARG);
    v = (q35_gguf_value){.type = 13};
    CHECK(q35_gguf_writer_set(wr, "t13", &v, &err) == Q35_ERR_ARG);
    /* an array whose bytes do not hold its n elements */
    uint8_t raw[12] = {1, 0, 0, 0, 0, 0, 0, 0, 'x'};
    v = (q35_gguf_value){.type = Q35_GGUF_ARRAY};
    v.v.arr.elem_type = Q35_GGUF_STRING;
    v.v.arr.n = 2;
    v.v.arr.raw = raw;
    v.v.arr.raw_len = 9;
    CHECK(q35_gguf_writer_set(wr, "arr", &v, &err) == Q35_ERR_ARG);
    v.v.arr.n = 1;
    v.v.arr.raw_len = 12; /* three bytes too many */
    CHECK(q35_gguf_writer_set(wr, "arr", &v, &err) == Q35_ERR_ARG);
    uint8_t bools[2] = {1, 7};
    CHECK(q35_gguf_writer_set_array(wr, "bools", Q35_GGUF_BOOL, bools, NULL, 2, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_add_tensor(wr, "t", Q35_DTYPE_F32, 2, ne, data, &err) == 0);
    CHECK(q35_gguf_writer_add_tensor(wr, "t", Q35_DTYPE_F32, 2, ne, data, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_add_tensor(wr, "q", Q35_DTYPE_Q8_0, 1, bad_ne, data, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_add_tensor(wr, "x", 99, 1, ne, data, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_add_tensor(wr, "x", Q35_DTYPE_F32, 0, ne, data, &err) == Q35_ERR_ARG);
    CHECK(q35_gguf_writer_add_tensor(wr, "0123456789012345678901234567890123456789012345678901234567890123",
                                     Q35_DTYPE_F32, 1, ne, data, &err) == Q35_ERR_ARG);
    q35_gguf_writer_free(wr);
}

/* The writer with every value type, nested arrays and alignment 64. */
static void check_writer_values(void) {
    char out[512];
    q35_gguf_writer *wr;
    q35_error err = {0};
    snprintf(out, sizeof out, "%s/values.gguf", tmpdir);
    CHECK(q35_gguf_writer_new(&wr, &err) == 0);
    int rc = 0;
    for (int t = 0; t <= Q35_GGUF_FLOAT64 && !rc; t++) {
        if (t == Q35_GGUF_ARRAY) continue;
        char key[32];
        snprintf(key, sizeof key, "v.%d", t);
        q35_gguf_value v = {.type = t};
        if (t == Q35_GGUF_STRING) v.v.str.data = "h\xe2\x96\x81i", v.v.str.len = 5;
        else if (t == Q35_GGUF_FLOAT32 || t == Q35_GGUF_FLOAT64) v.v.f = -1.5;
        else if (t == Q35_GGUF_INT8 || t == Q35_GGUF_INT16 || t == Q35_GGUF_INT32 || t == Q35_GGUF_INT64) v.v.i = -7;
        else v.v.u = 1;
        rc = q35_gguf_writer_set(wr, key, &v, &err);
    }
    const char *strs[] = {"a", "", "\xff raw bytes"};
    int16_t i16s[3] = {-1, 2, -3};
    if (!rc) rc = q35_gguf_writer_set_array(wr, "arr.str", Q35_GGUF_STRING, strs, NULL, 3, &err);
    if (!rc) rc = q35_gguf_writer_set_array(wr, "arr.i16", Q35_GGUF_INT16, i16s, NULL, 3, &err);
    if (!rc) rc = q35_gguf_writer_set_array(wr, "arr.empty", Q35_GGUF_FLOAT64, NULL, NULL, 0, &err);
    if (!rc) rc = q35_gguf_writer_set_u32(wr, "general.alignment", 64, &err);
    /* an array of two arrays: [[-1, 2, -3], ["a", "", ...]] built from the above */
    q35_gguf *g = NULL;
    if (!rc) rc = q35_gguf_writer_write(wr, out, &err);
    if (!rc) rc = q35_gguf_open(&g, out, &err);
    CHECKF(rc == 0, "values file: %s", err.msg);
    if (rc) {
        q35_gguf_writer_free(wr);
        return;
    }
    uint8_t nested[512];
    uint64_t len = 0;
    const char *keys[] = {"arr.i16", "arr.str"};
    for (int k = 0; k < 2; k++) {
        const q35_gguf_value *a = q35_gguf_find(g, keys[k]);
        uint32_t et = (uint32_t)a->v.arr.elem_type;
        memcpy(nested + len, &et, 4);
        memcpy(nested + len + 4, &a->v.arr.n, 8);
        memcpy(nested + len + 12, a->v.arr.raw, a->v.arr.raw_len);
        len += 12 + a->v.arr.raw_len;
    }
    q35_gguf_value nv = {.type = Q35_GGUF_ARRAY};
    nv.v.arr.elem_type = Q35_GGUF_ARRAY;
    nv.v.arr.n = 2;
    nv.v.arr.raw = nested;
    nv.v.arr.raw_len = len;
    int64_t ne[1] = {3};
    float data[3] = {1, 2, 3};
    rc = q35_gguf_writer_set(wr, "arr.nested", &nv, &err);
    if (!rc) rc = q35_gguf_writer_add_tensor(wr, "t0", Q35_DTYPE_F32, 1, ne, data, &err);
    if (!rc) rc = q35_gguf_writer_add_tensor(wr, "t1", Q35_DTYPE_F32, 1, ne, data, &err);
    q35_gguf_close(g);
    if (!rc) rc = q35_gguf_writer_write(wr, out, &err); /* over the first */
    q35_gguf_writer_free(wr);
    if (!rc) rc = q35_gguf_open(&g, out, &err);
    CHECKF(rc == 0, "values file: %s", err.msg);
    if (rc) return;
    CHECK(q35_gguf_alignment(g) == 64 && q35_gguf_n_tensors(g) == 2 &&
          q35_gguf_tensor_at(g, 1)->offset == 64 &&
          (uintptr_t)q35_gguf_tensor_at(g, 0)->data % 64 == 0);
    CHECK(q35_gguf_find(g, "v.5")->v.i == -7 && q35_gguf_find(g, "v.6")->v.f == -1.5 &&
          q35_gguf_find(g, "v.7")->v.u == 1 && q35_gguf_find(g, "v.8")->v.str.len == 5);
    const q35_gguf_value *n = q35_gguf_find(g, "arr.nested");
    q35_gguf_value inner, elem;
    CHECK(n && q35_gguf_array_get(n, 1, &inner) == 0 && inner.type == Q35_GGUF_ARRAY &&
          inner.v.arr.n == 3 && q35_gguf_array_get(&inner, 2, &elem) == 0 &&
          elem.type == Q35_GGUF_STRING && elem.v.str.len == 11 && elem.v.str.data[0] == '\xff');
    CHECK(n && q35_gguf_array_get(n, 0, &inner) == 0 && q35_gguf_array_get(&inner, 2, &elem) == 0 &&
          elem.type == Q35_GGUF_INT16 && elem.v.i == -3);
    CHECK(n && q35_gguf_array_get(n, 2, &inner) == Q35_ERR_ARG);
    q35_gguf_close(g);
}

/* ---- d. hostile files -------------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void patch_u32(buf *b, size_t at, uint32_t v) { memcpy(b->p + at, &v, 4); }
static void patch_u64(buf *b, size_t at, uint64_t v) { memcpy(b->p + at, &v, 8); }

/* The small valid file's knobs, and where its fields lie once built. */
typedef struct base_opts {
    const char *name0, *name1;
    uint32_t version, align_type;
    uint64_t align_value;
    const buf *extra; /* raw kvs appended after the file's own */
    int n_extra;
} base_opts;

typedef struct base_at {
    size_t version, n_tensors, n_kv, key0_len, arch_len, strings_n, flag;
    size_t t0_ndims, t0_ne0, t0_ne1, t0_type, t1_ne0, t1_type, t1_offset, header_end, data_start;
} base_at;

static base_opts base_defaults(void) {
    return (base_opts){.name0 = "a", .name1 = "b", .version = 3, .align_type = Q35_GGUF_UINT32,
                       .align_value = 32};
}

/* 6 keys (a string, general.alignment, nested arrays, a string array, a
 * bool, a float), tensor "a" F32 8x2 at 0 and "b" Q8_0 32 at 64. */
static void build_base(const base_opts *o, base_at *at, buf *b) {
    b->len = 0;
    put(b, "GGUF", 4);
    at->version = b->len, put_u32(b, o->version);
    at->n_tensors = b->len, put_u64(b, 2);
    at->n_kv = b->len, put_u64(b, 6 + (uint64_t)o->n_extra);
    at->key0_len = b->len, put_str(b, "general.architecture"), put_u32(b, Q35_GGUF_STRING);
    at->arch_len = b->len, put_str(b, "llama");
    put_str(b, "general.alignment"), put_u32(b, o->align_type);
    if (o->align_type == Q35_GGUF_STRING) put_str(b, "32");
    else if (o->align_type == Q35_GGUF_UINT64) put_u64(b, o->align_value);
    else put_u32(b, (uint32_t)o->align_value);
    put_str(b, "test.nested"), put_u32(b, Q35_GGUF_ARRAY), put_u32(b, Q35_GGUF_ARRAY), put_u64(b, 2);
    put_u32(b, Q35_GGUF_UINT32), put_u64(b, 2), put_u32(b, 1), put_u32(b, 2);
    put_u32(b, Q35_GGUF_STRING), put_u64(b, 1), put_str(b, "x");
    put_str(b, "test.strings"), put_u32(b, Q35_GGUF_ARRAY), put_u32(b, Q35_GGUF_STRING);
    at->strings_n = b->len, put_u64(b, 2), put_str(b, "a"), put_str(b, "bc");
    put_str(b, "test.flag"), put_u32(b, Q35_GGUF_BOOL);
    at->flag = b->len, put(b, "\1", 1);
    float pi = 3.14f;
    put_str(b, "test.pi"), put_u32(b, Q35_GGUF_FLOAT32), put(b, &pi, 4);
    if (o->extra) put(b, o->extra->p, o->extra->len);
    put_str(b, o->name0);
    at->t0_ndims = b->len, put_u32(b, 2);
    at->t0_ne0 = b->len, put_u64(b, 8);
    at->t0_ne1 = b->len, put_u64(b, 2);
    at->t0_type = b->len, put_u32(b, Q35_DTYPE_F32), put_u64(b, 0);
    put_str(b, o->name1), put_u32(b, 1);
    at->t1_ne0 = b->len, put_u64(b, 32);
    at->t1_type = b->len, put_u32(b, Q35_DTYPE_Q8_0);
    at->t1_offset = b->len, put_u64(b, 64);
    at->header_end = b->len;
    uint64_t a = o->align_type == Q35_GGUF_UINT32 && o->align_value >= 32 ? o->align_value : 32;
    while (b->len % a) put(b, "", 1);
    at->data_start = b->len;
    for (int i = 0; i < 16; i++) {
        float f = (float)i;
        put(b, &f, 4);
    }
    uint8_t block[34] = {0x00, 0x3c}; /* Q8_0: scale 1.0, 32 int8 */
    for (int i = 0; i < 32; i++) block[2 + i] = (uint8_t)(i - 16);
    put(b, block, sizeof block);
}

/* Opens bytes both from a file (mapped) and from an exact-size heap copy
 * (so ASan sees any overread); 0 if both fail as expected. */
static int refused(const uint8_t *p, size_t len, const char *label, const char *expect,
                   char *why, size_t why_cap) {
    char path[512];
    q35_error err = {0};
    q35_gguf *g = NULL;
    snprintf(path, sizeof path, "%s/hostile-%s.gguf", tmpdir, label);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, len, f) != len) {
        if (f) fclose(f);
        snprintf(why, why_cap, "cannot write %s", path);
        return -1;
    }
    fclose(f);
    int rc = q35_gguf_open(&g, path, &err);
    if (rc == 0 || g || !msg_ok(&err, path) || (expect && !strstr(err.msg, expect))) {
        snprintf(why, why_cap, "rc %d, message \"%s\" (wanted \"%s\")", rc, err.msg,
                 expect ? expect : "");
        q35_gguf_close(g);
        return -1;
    }
    if (getenv("Q35_TEST_VERBOSE")) printf("  %s\n", err.msg);
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, p, len);
    q35_error err2 = {0};
    rc = q35_gguf_open_memory(&g, copy, len, label, &err2);
    free(copy);
    if (rc == 0 || g || !msg_ok(&err2, label) || strcmp(err.msg + strlen(path), err2.msg + strlen(label))) {
        snprintf(why, why_cap, "from memory: rc %d, message \"%s\"", rc, err2.msg);
        q35_gguf_close(g);
        return -1;
    }
    unlink(path);
    return 0;
}

#define REFUSED(b, label, expect)                                                        \
    do {                                                                                 \
        char why_[1024];                                                                 \
        CHECKF(refused((b)->p, (b)->len, label, expect, why_, sizeof why_) == 0, "%s: %s", \
               label, why_);                                                             \
    } while (0)

/* The base file with one u32 / u64 field changed. */
static void refused_u32(size_t off, uint32_t v, const char *label, const char *expect) {
    base_opts o = base_defaults();
    base_at at;
    buf b = {0};
    build_base(&o, &at, &b);
    patch_u32(&b, off, v);
    REFUSED(&b, label, expect);
    free(b.p);
}

static void refused_u64(size_t off, uint64_t v, const char *label, const char *expect) {
    base_opts o = base_defaults();
    base_at at;
    buf b = {0};
    build_base(&o, &at, &b);
    patch_u64(&b, off, v);
    REFUSED(&b, label, expect);
    free(b.p);
}

static void refused_opts(const base_opts *o, const char *label, const char *expect) {
    base_at at;
    buf b = {0};
    build_base(o, &at, &b);
    REFUSED(&b, label, expect);
    free(b.p);
}

/* The base file with one raw kv appended. */
static void refused_extra(const buf *kv, const char *label, const char *expect) {
    base_opts o = base_defaults();
    o.extra = kv;
    o.n_extra = 1;
    refused_opts(&o, label, expect);
}

/* A kv holding `depth` arrays nested in one another around one u8. */
static void nested_kv(buf *kv, int depth) {
    kv->len = 0;
    put_str(kv, "deep"), put_u32(kv, Q35_GGUF_ARRAY);
    for (int d = 0; d < depth - 1; d++) put_u32(kv, Q35_GGUF_ARRAY), put_u64(kv, 1);
    put_u32(kv, Q35_GGUF_UINT8), put_u64(kv, 1), put(kv, "\7", 1);
}

static void check_hostile(void) {
    base_opts o = base_defaults();
    base_at at;
    buf b = {0}, kv = {0};
    q35_error err = {0};
    q35_gguf *g = NULL;

    /* the base file itself is fine, and reads as built */
    build_base(&o, &at, &b);
    int rc = q35_gguf_open_memory(&g, b.p, b.len, "base", &err);
    CHECKF(rc == 0, "base file: %s", err.msg);
    if (!rc) {
        const q35_gguf_value *nested = q35_gguf_find(g, "test.nested");
        q35_gguf_value inner, x;
        CHECK(q35_gguf_n_kv(g) == 6 && q35_gguf_n_tensors(g) == 2 && q35_gguf_alignment(g) == 32);
        CHECK(nested && q35_gguf_array_get(nested, 1, &inner) == 0 &&
              q35_gguf_array_get(&inner, 0, &x) == 0 && x.v.str.len == 1 && x.v.str.data[0] == 'x');
        CHECK(q35_gguf_tensor_at(g, 1)->data == b.p + at.data_start + 64 &&
              q35_gguf_tensor_at(g, 1)->nbytes == 34 && q35_gguf_tensor_at(g, 0)->ne[1] == 2);
        q35_gguf_close(g);
    }

    /* every prefix of the header, and some of the data, is refused */
    char why[1024] = "";
    int all = 1;
    size_t cut[] = {at.data_start + 1, at.data_start + 63, at.data_start + 64, b.len - 1};
    for (size_t n = 0; all && n <= at.data_start; n++) {
        char label[32];
        snprintf(label, sizeof label, "prefix-%zu", n);
        all = refused(b.p, n, label, NULL, why, sizeof why) == 0;
    }
    CHECKF(all, "a header prefix was not refused: %s", why);
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        char label[32];
        snprintf(label, sizeof label, "data-prefix-%zu", cut[i]);
        CHECKF(refused(b.p, cut[i], label, "run past the end", why, sizeof why) == 0, "%s: %s",
               label, why);
    }

    /* the preamble */
    memcpy(b.p, "GGUG", 4);
    REFUSED(&b, "magic", "not a GGUF file");
    refused_u32(at.version, 1, "version-1", "version 1");
    refused_u32(at.version, 4, "version-4", "version 4");
    refused_u32(at.version, 0xFFFFFFFFu, "version-max", "version 4294967295");
    refused_u32(at.version, 0x03000000u, "big-endian", "big-endian");
    refused_u64(at.n_tensors, 1ull << 62, "tensor-count-huge", "tensor_count");
    refused_u64(at.n_kv, 1ull << 62, "kv-count-huge", "kv_count");
    refused_u64(at.n_kv, 7, "kv-count-one-more", NULL);

    /* keys and values */
    refused_u64(at.key0_len, 1ull << 62, "key-length-huge", "runs past the end");
    refused_u64(at.arch_len, 1ull << 62, "string-length-huge", "runs past the end");
    refused_u64(at.arch_len, UINT64_MAX, "string-length-max", "runs past the end");
    refused_u64(at.strings_n, 1ull << 62, "array-length-huge", "array of");
    refused_u32(at.flag, 2, "bool-2", "bool value 2");
    kv.len = 0, put_str(&kv, "s"), put_u32(&kv, Q35_GGUF_STRING), put_u64(&kv, 1ull << 62);
    refused_extra(&kv, "string-value-huge", "runs past the end");
    kv.len = 0, put_str(&kv, "u"), put_u32(&kv, Q35_GGUF_ARRAY), put_u32(&kv, Q35_GGUF_UINT32),
        put_u64(&kv, 1ull << 62); /* 4 * 2^62 wraps to 0 */
    refused_extra(&kv, "array-bytes-wrap", "array of");
    kv.len = 0, put_str(&kv, "u"), put_u32(&kv, Q35_GGUF_ARRAY), put_u32(&kv, Q35_GGUF_UINT64),
        put_u64(&kv, 1ull << 61);
    refused_extra(&kv, "array-u64-wrap", "array of");
    kv.len = 0, put_str(&kv, "u"), put_u32(&kv, Q35_GGUF_ARRAY), put_u32(&kv, Q35_GGUF_ARRAY),
        put_u64(&kv, 1ull << 60);
    refused_extra(&kv, "array-of-arrays-huge", "array of");
    nested_kv(&kv, 100);
    refused_extra(&kv, "nested-100", "nested more than 8");
    nested_kv(&kv, 9);
    refused_extra(&kv, "nested-9", "nested more than 8");
    kv.len = 0, put_str(&kv, "t"), put_u32(&kv, 13);
    refused_extra(&kv, "value-type-13", "unknown value type 13");
    kv.len = 0, put_str(&kv, "t"), put_u32(&kv, 255);
    refused_extra(&kv, "value-type-255", "unknown value type 255");
    kv.len = 0, put_str(&kv, "t"), put_u32(&kv, Q35_GGUF_ARRAY), put_u32(&kv, 13), put_u64(&kv, 0);
    refused_extra(&kv, "array-type-13", "unknown array element type 13");
    kv.len = 0, put_str(&kv, "test.flag"), put_u32(&kv, Q35_GGUF_BOOL), put(&kv, "\0", 1);
    refused_extra(&kv, "duplicate-key", "appears twice");
    kv.len = 0, put_str(&kv, ""), put_u32(&kv, Q35_GGUF_BOOL), put(&kv, "\0", 1);
    refused_extra(&kv, "empty-key", "empty key");
    kv.len = 0, put_u64(&kv, 3), put(&kv, "a\0b", 3), put_u32(&kv, Q35_GGUF_BOOL), put(&kv, "\0", 1);
    refused_extra(&kv, "key-nul", "NUL");
    const char *bad_utf8[] = {"k\xff", "k\xc0\xaf", "k\xed\xa0\x80", "k\xe2\x96", "k\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        char label[32];
        snprintf(label, sizeof label, "key-utf8-%zu", i);
        kv.len = 0, put_str(&kv, bad_utf8[i]), put_u32(&kv, Q35_GGUF_BOOL), put(&kv, "\0", 1);
        refused_extra(&kv, label, "not valid UTF-8");
    }

    /* general.alignment */
    o = base_defaults(), o.align_value = 0;
    refused_opts(&o, "alignment-0", "not a power of two");
    o = base_defaults(), o.align_value = 3;
    refused_opts(&o, "alignment-3", "not a power of two");
    o = base_defaults(), o.align_type = Q35_GGUF_UINT64;
    refused_opts(&o, "alignment-u64", "not u32");
    o = base_defaults(), o.align_type = Q35_GGUF_STRING;
    refused_opts(&o, "alignment-string", "not u32");

    /* tensor infos */
    refused_u32(at.t0_ndims, 0, "n-dims-0", "0 dimensions");
    refused_u32(at.t0_ndims, 5, "n-dims-5", "5 dimensions");
    refused_u32(at.t0_ndims, 0xFFFFFFFFu, "n-dims-max", "4294967295 dimensions");
    refused_u64(at.t0_ne0, 0, "ne-0", "dimension 0 is 0");
    refused_u64(at.t0_ne0, (uint64_t)-8, "ne-negative", "dimension 0 is");
    {
        o = base_defaults();
        build_base(&o, &at, &b);
        patch_u64(&b, at.t0_ne0, 1ull << 40);
        patch_u64(&b, at.t0_ne1, 1ull << 40);
        REFUSED(&b, "ne-product-overflow", "overflows");
        patch_u64(&b, at.t0_ne0, 1ull << 62);
        patch_u64(&b, at.t0_ne1, 2);
        REFUSED(&b, "ne-product-2^63", "overflows");
    }
    refused_u64(at.t0_ne0, 1ull << 40, "ne-past-file", "do not fit");
    {
        /* found by the fuzzer: sizing a Q3_5 tensor with rows of 2^40 took
         * 2^35 steps (q35_layout_init); it must be refused at once */
        o = base_defaults();
        build_base(&o, &at, &b);
        patch_u32(&b, at.t0_type, Q35_TYPE_Q3_5);
        patch_u64(&b, at.t0_ne0, 1ull << 40);
        patch_u64(&b, at.t0_ne1, 1);
        REFUSED(&b, "q3_5-huge-rows", "do not fit");
    }
    refused_u32(at.t0_type, 99, "type-99", "unknown tensor type 99");
    refused_u32(at.t0_type, 4, "type-4", "unknown tensor type 4"); /* ggml's removed Q4_2 */
    /* every ggml type is read (q35 info lists them), but a K-quant's rows
     * must be whole super-blocks of 256 */
    refused_u32(at.t0_type, Q35_DTYPE_Q4_K, "q4_k-partial-rows", "rows of 8 elements are not whole Q4_K blocks of 256");
    refused_u64(at.t1_ne0, 33, "not-whole-blocks", "whole Q8_0 blocks");
    refused_u64(at.t1_ne0, 64, "size-past-end", "run past the end");
    refused_u64(at.t1_offset, 1ull << 40, "offset-beyond-file", "run past the end");
    refused_u64(at.t1_offset, UINT64_MAX - 31, "offset-wraps", "run past the end");
    refused_u64(at.t1_offset, 65, "offset-misaligned", "not a multiple of the alignment 32");
    refused_u64(at.t1_offset, 32, "overlap", "overlaps");
    refused_u64(at.t1_offset, 0, "overlap-same-offset", "overlaps");
    o = base_defaults(), o.name1 = "a";
    refused_opts(&o, "duplicate-tensor", "appears twice");
    o = base_defaults(), o.name0 = "0123456789012345678901234567890123456789012345678901234567890123";
    refused_opts(&o, "tensor-name-64", "longer than the limit of 63");
    o = base_defaults(), o.name0 = "\xc3\x28";
    refused_opts(&o, "tensor-name-utf8", "not valid UTF-8");

    /* what must still be accepted: version 2, 8 nested levels, 64-alignment */
    o = base_defaults(), o.version = 2;
    build_base(&o, &at, &b);
    CHECK(q35_gguf_open_memory(&g, b.p, b.len, "v2", &err) == 0 && q35_gguf_version(g) == 2);
    q35_gguf_close(g);
    nested_kv(&kv, 8);
    o = base_defaults(), o.extra = &kv, o.n_extra = 1;
    build_base(&o, &at, &b);
    rc = q35_gguf_open_memory(&g, b.p, b.len, "nested-8", &err);
    CHECKF(rc == 0, "8 nested arrays: %s", err.msg);
    if (!rc) { /* walk down to the u8 */
        q35_gguf_value v = *q35_gguf_find(g, "deep"), next;
        int d = 1;
        while (v.type == Q35_GGUF_ARRAY && q35_gguf_array_get(&v, 0, &next) == 0) v = next, d++;
        CHECK(d == 9 && v.type == Q35_GGUF_UINT8 && v.v.u == 7);
        q35_gguf_close(g);
    }
    o = base_defaults(), o.align_value = 64;
    build_base(&o, &at, &b);
    CHECK(q35_gguf_open_memory(&g, b.p, b.len, "align-64", &err) == 0 && q35_gguf_alignment(g) == 64);
    q35_gguf_close(g);

    /* the loader's own refusals: not llama; missing keys */
    o = base_defaults();
    build_base(&o, &at, &b);
    memcpy(b.p + at.arch_len + 8, "bloom", 5);
    char path[512];
    snprintf(path, sizeof path, "%s/bloom.gguf", tmpdir);
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.len, f);
    fclose(f);
    q35_weights w;
    rc = q35_gguf_load_weights(&w, path, &err);
    CHECKF(rc == Q35_ERR_UNSUPPORTED && msg_ok(&err, path) && strstr(err.msg, "bloom"), "%s", err.msg);
    memcpy(b.p + at.arch_len + 8, "llama", 5);
    f = fopen(path, "wb");
    fwrite(b.p, 1, b.len, f);
    fclose(f);
    rc = q35_gguf_load_weights(&w, path, &err);
    CHECKF(rc == Q35_ERR_FORMAT && msg_ok(&err, path) && strstr(err.msg, "llama.context_length"),
           "%s", err.msg);
    q35_weights_free(&w); /* harmless after a failure */
    free(b.p);
    free(kv.p);
}

/* ---- fuzzer seeds ------------------------------------------------------ */

/* A complete llama model small enough for a fuzzer seed: dim 8, 1 layer,
 * 2 heads, 8 tokens. */
static int write_tiny_model(const char *path, int out_dtype) {
    static const char *const pieces[] = {"<unk>", "<s>", "</s>", " ", "o", "n", " o", " on"};
    uint32_t lens[8];
    float scores[8] = {0, 0, 0, -1, -2, -3, -4, -5};
    int32_t types[8] = {2, 3, 3, 1, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++) lens[i] = (uint32_t)strlen(pieces[i]);
    q35_tokenizer_opts opts = {1, 0};
    q35_tokenizer *tok;
    q35_error err;
    if (q35_tokenizer_new(&tok, 8, pieces, lens, scores, types, 1, 2, 0, &opts, &err)) return 1;
    static float x[128];
    for (int i = 0; i < 128; i++) x[i] = (float)((i * 37) % 17 - 8) / 8;
    q35_weights w;
    memset(&w, 0, sizeof w);
    w.cfg = (q35_config){.dim = 8, .hidden_dim = 16, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                         .vocab_size = 8, .seq_len = 16, .head_dim = 4, .rms_eps = 1e-5f,
                         .rope_theta = 10000.0f, .shared_classifier = 1};
    const struct { const char *name; int64_t ne0, ne1; } ts[] = {
        {"token_embd.weight", 8, 8},     {"output_norm.weight", 8, 0},
        {"blk.0.attn_norm.weight", 8, 0}, {"blk.0.attn_q.weight", 8, 8},
        {"blk.0.attn_k.weight", 8, 8},   {"blk.0.attn_v.weight", 8, 8},
        {"blk.0.attn_output.weight", 8, 8}, {"blk.0.ffn_norm.weight", 8, 0},
        {"blk.0.ffn_gate.weight", 8, 16}, {"blk.0.ffn_down.weight", 16, 8},
        {"blk.0.ffn_up.weight", 8, 16}};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        q35_weights_add(&w, Q35_DTYPE_F32, ts[i].ne1 ? 2 : 1, ne, x, "%s", ts[i].name);
    }
    int rc = q35_gguf_save_model(path, &w, q35_tokenizer_gguf_keys, tok, out_dtype, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    q35_weights_free(&w);
    q35_tokenizer_free(tok);
    return rc;
}


/* One tensor of each of ggml's block types q35 reads, two rows of
 * pseudo-random blocks each (the fuzzer expands them: fuzz_gguf.c). */
static int write_block_types(const char *dir, q35_error *err) {
    static const int types[] = {Q35_DTYPE_Q4_0, Q35_DTYPE_Q4_1, Q35_DTYPE_Q5_0, Q35_DTYPE_Q5_1,
                                Q35_DTYPE_Q8_0, Q35_DTYPE_Q2_K, Q35_DTYPE_Q3_K, Q35_DTYPE_Q4_K,
                                Q35_DTYPE_Q5_K, Q35_DTYPE_Q6_K, Q35_DTYPE_IQ4_NL, Q35_DTYPE_IQ4_XS};
    const int n = (int)(sizeof types / sizeof types[0]);
    uint8_t *data[sizeof types / sizeof types[0]];
    q35_gguf_writer *wr;
    char path[512];
    uint32_t x = 12345;
    int rc = q35_gguf_writer_new(&wr, err);
    if (!rc) rc = q35_gguf_writer_set_str(wr, "general.architecture", "llama", err);
    for (int k = 0; k < n; k++) {
        const q35_dtype_info *di = q35_dtype_get(types[k]);
        const int64_t ne[2] = {di->block_elems, 2};
        data[k] = malloc((size_t)(2 * di->block_bytes));
        for (int i = 0; i < 2 * di->block_bytes; i++) data[k][i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
        char name[32];
        snprintf(name, sizeof name, "t.%s", di->name);
        if (!rc) rc = q35_gguf_writer_add_tensor(wr, name, types[k], 2, ne, data[k], err);
    }
    snprintf(path, sizeof path, "%s/block-types.gguf", dir);
    if (!rc) rc = q35_gguf_writer_write(wr, path, err);
    q35_gguf_writer_free(wr);
    for (int k = 0; k < n; k++) free(data[k]);
    return rc;
}

static int write_corpus(const char *dir) {
    base_opts o = base_defaults();
    base_at at;
    buf b = {0}, kv = {0};
    char path[512];
    struct { const char *name; int version, nested; } seeds[] = {
        {"base-v3.gguf", 3, 0}, {"base-v2.gguf", 2, 0}, {"nested-8.gguf", 3, 8}};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        o = base_defaults();
        o.version = (uint32_t)seeds[i].version;
        if (seeds[i].nested) {
            nested_kv(&kv, seeds[i].nested);
            o.extra = &kv;
            o.n_extra = 1;
        }
        build_base(&o, &at, &b);
        snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(b.p, 1, b.len, f) != b.len) return 1;
        fclose(f);
    }
    free(b.p);
    free(kv.p);
    snprintf(path, sizeof path, "%s/tiny-model-f16.gguf", dir);
    if (write_tiny_model(path, Q35_DTYPE_F16)) return 1;
    /* a tensor of q35's own type (sized by its row length) */
    q35_gguf_writer *wr;
    q35_error err;
    int64_t ne[2] = {32, 2};
    uint64_t bytes = 0;
    q35_dtype_tensor_bytes(Q35_TYPE_Q3_5, ne[0], ne[1], &bytes);
    uint8_t *zeros = calloc(1, bytes);
    snprintf(path, sizeof path, "%s/q3_5-tensor.gguf", dir);
    int rc = q35_gguf_writer_new(&wr, &err);
    if (!rc) rc = q35_gguf_writer_set_str(wr, "general.architecture", "llama", &err);
    if (!rc) rc = q35_gguf_writer_add_tensor(wr, "blk.0.attn_q.weight", Q35_TYPE_Q3_5, 2, ne, zeros, &err);
    if (!rc) rc = q35_gguf_writer_write(wr, path, &err);
    q35_gguf_writer_free(wr);
    free(zeros);
    if (!rc) rc = write_block_types(dir, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    return rc ? 1 : 0;
}

/* The tiny model (a fuzzer seed) loads with everything it was saved with. */
static void check_tiny_model(void) {
    char path[512];
    q35_error err = {0};
    q35_weights w;
    snprintf(path, sizeof path, "%s/tiny.gguf", tmpdir);
    int rc = write_tiny_model(path, Q35_DTYPE_F16);
    if (!rc) rc = q35_gguf_load_weights(&w, path, &err);
    CHECKF(rc == 0, "tiny model: %s", err.msg);
    if (rc) return;
    int *ids = NULL, n = 0;
    CHECK(w.cfg.dim == 8 && w.cfg.hidden_dim == 16 && w.cfg.vocab_size == 8 &&
          w.cfg.shared_classifier == 1 && w.n_tensors == 11 &&
          q35_weights_find(&w, "blk.0.attn_q.weight")->dtype == Q35_DTYPE_F16 &&
          q35_weights_find(&w, "blk.0.ffn_norm.weight")->dtype == Q35_DTYPE_F32);
    q35_tokenizer *tok = NULL;
    CHECK(q35_tokenizer_load_gguf(&tok, path, &err) == 0 && tok &&
          q35_tokenizer_encode(tok, "on", 2, 1, &ids, &n, &err) == 0 && n == 2 && ids[0] == 1 &&
          ids[1] == 7);
    free(ids);
    q35_tokenizer_free(tok);
    q35_weights_free(&w);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    char path[512];
    q35_error err = {0};
    snprintf(tmpdir, sizeof tmpdir, "/tmp/q35-test-gguf-XXXXXX");
    if (!mkdtemp(tmpdir)) return 2;

    q35_tokenizer *tok512 = NULL, *tok4096 = NULL;
    CHECKF(q35_tokenizer_load_llama2c(&tok512, shared_path(path, sizeof path, "models/stories260K/tok512.bin"), 512, &err) == 0, "%s", err.msg);
    CHECKF(q35_tokenizer_load_llama2c(&tok4096, shared_path(path, sizeof path, "models/stories3M/tok4096.bin"), 4096, &err) == 0, "%s", err.msg);
    if (!tok512 || !tok4096) TEST_END();

    /* a. */
    const expected files[] = {
        {"models/gguf/stories260K-f32.gguf", 64, 172, 5, 8, 4, 512, tok512, 1},
        {"models/gguf/stories260K-Q8_0.gguf", 64, 172, 5, 8, 4, 512, tok512, 0},
        {"models/gguf/stories260K-Q4_0.gguf", 64, 172, 5, 8, 4, 512, tok512, 0},
        {"models/gguf/stories3M-f32.gguf", 192, 512, 6, 6, 2, 4096, tok4096, 1},
        {"models/gguf/stories3M-Q8_0.gguf", 192, 512, 6, 6, 2, 4096, tok4096, 0},
        {"models/gguf/stories3M-Q4_0.gguf", 192, 512, 6, 6, 2, 4096, tok4096, 0},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) check_real_file(&files[i]);

    /* b. */
    compare_with_llama2c("models/gguf/stories260K-f32.gguf", "models/stories260K/stories260K.bin");
    compare_with_llama2c("models/gguf/stories3M-f32.gguf", "models/stories3M/stories3M-q80.bin");

    /* c. */
    copy_through_writer("models/gguf/stories260K-f32.gguf");
    copy_through_writer("models/gguf/stories260K-Q4_0.gguf");
    copy_through_writer("models/gguf/stories3M-Q8_0.gguf");
    q35_weights l2c;
    int rc = q35_llama2c_load(&l2c, shared_path(path, sizeof path, "models/stories260K/stories260K.bin"), &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!rc) {
        save_and_reload(&l2c, tok512, Q35_DTYPE_F32, "f32");
        save_and_reload(&l2c, tok512, Q35_DTYPE_F16, "f16");
        check_atomic_write(&l2c, tok512);
        q35_weights_free(&l2c);
    }
    q35_weights q4;
    rc = q35_gguf_load_weights(&q4, shared_path(path, sizeof path, "models/gguf/stories260K-Q4_0.gguf"), &err);
    CHECKF(rc == 0, "%s", err.msg);
    q35_tokenizer *q4_tok = NULL;
    if (!rc) rc = q35_tokenizer_load_gguf(&q4_tok, path, &err);
    CHECKF(rc == 0 && q4_tok, "%s: tokenizer: %s", path, err.msg);
    if (!rc) {
        save_and_reload(&q4, q4_tok, -1, "stored");
        q35_weights_free(&q4);
    }
    q35_tokenizer_free(q4_tok);
    check_writer_refusals();
    check_writer_values();
    check_tiny_model();

    /* d. */
    check_hostile();

    q35_tokenizer_free(tok512);
    q35_tokenizer_free(tok4096);
    remove_tmpdir();
    TEST_END();
}
