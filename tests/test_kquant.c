/* test_kquant.c — the GGUF quant types people download (format/kquant.h):
 *  a. q35's type table equals ggml's (names and block sizes of every id);
 *  b. random blocks of every type q35 reads expand bit for bit as
 *     libggml's to_float expands them;
 *  c. files llama.cpp's own quantizer (llama_model_quantize) makes from an
 *     F16 model q35 synthesises — Q4_K_M, Q2_K, Q3_K_S/M/L, Q4_K_S, Q5_K_S,
 *     Q5_K_M, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS — every tensor bit
 *     for bit; q35 runs each (matrices converted to Q8_S at load) and its
 *     logits are compared with llama.cpp's (llama-logits) on the same file;
 *  d. quantize streams from such a file, and its matrices equal the ones
 *     the loader converts into the same type; --imatrix works from it;
 *  e. bad input: a type q35 cannot read, K-quant rows that are not whole
 *     super-blocks, a truncated K-quant tensor, a bad --convert-type: one
 *     line and a non-zero exit each.
 * a-d need the oracles ($Q35_ORACLES: ../shared/oracles/setup.sh); the
 * oracle programs in tests/oracle/ are compiled here against them. The
 * parts that need no oracle use K-quant files of random blocks. */
#include <stdint.h>
#include <strings.h>
#include <unistd.h>

#include "clirun.h"
#include "format/dtype.h"
#include "format/q35fmt.h"
#include "format/q35quant.h"
#include "io/gguf.h"
#include "model/model.h"
#include "q35.h"

static const char *oracles; /* NULL: absent */
static char ggml_types[600], llama_quantize[600], llama_logits[600];

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Where a type's blocks hold fp16 scales (byte offsets), so random blocks
 * can keep them finite; -1 ends the list. */
static const int *half_offsets(int type) {
    static const int at0[] = {0, -1}, at01[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1};
    switch (type) {
    case Q35_DTYPE_Q4_1: case Q35_DTYPE_Q5_1: case Q35_DTYPE_Q4_K: case Q35_DTYPE_Q5_K: return at01;
    case Q35_DTYPE_Q2_K: return q2k;
    case Q35_DTYPE_Q3_K: return q3k;
    case Q35_DTYPE_Q6_K: return q6k;
    default: return at0; /* Q4_0, Q5_0, Q8_0, IQ4_NL, IQ4_XS */
    }
}

/* n_blocks random blocks of type; every fp16 scale finite, and a few
 * chosen: 0, the smallest subnormal, the largest finite, negative. tame:
 * every scale instead between 2^-12 and 2^-9, for weights a model can run. */
static uint8_t *random_blocks(int type, int n_blocks, int tame) {
    const q35_dtype_info *di = q35_dtype_get(type);
    uint8_t *b = malloc((size_t)n_blocks * (size_t)di->block_bytes);
    for (size_t i = 0; i < (size_t)n_blocks * (size_t)di->block_bytes; i++) b[i] = (uint8_t)next_u32();
    static const uint16_t special[] = {0x0000, 0x0001, 0x7bff, 0xfbff, 0x8000, 0x3c00};
    for (int k = 0; k < n_blocks; k++)
        for (const int *o = half_offsets(type); *o >= 0; o++) {
            uint8_t *p = b + (size_t)k * (size_t)di->block_bytes + *o;
            uint16_t h;
            memcpy(&h, p, 2);
            if (tame) h = (uint16_t)(0x0c00 + h % 0x0c00);
            else if (k < 6) h = special[k];
            else if ((h & 0x7c00) == 0x7c00) h &= 0xbfff; /* inf/NaN: make it finite */
            memcpy(p, &h, 2);
        }
    return b;
}

/* Compiles an oracle program; 0 on success. */
static int build_oracle(const char *src, const char *out, const char *libs) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cc -O2 -std=c11 '%s' -I'%s/llama.cpp/include' -I'%s/llama.cpp/ggml/include' -L'%s/libllama' %s "
             "-Wl,-rpath,'%s/libllama' -o '%s' 2>'%s/cc.log'",
             src, oracles, oracles, oracles, libs, oracles, out, tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* libggml's expansion of each of n records (type, n elements, bytes) into
 * out (the elements of all records, in order). 0 on success. */
typedef struct record {
    int type;
    int64_t n;
    const void *data;
} record;

static int ggml_expand(const record *r, int n, float *out) {
    char in_path[600], out_path[600], cmd[2048];
    snprintf(in_path, sizeof in_path, "%s/records.bin", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/records.f32", tmpdir);
    FILE *f = fopen(in_path, "wb");
    if (!f) return -1;
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const q35_dtype_info *di = q35_dtype_get(r[i].type);
        const int32_t type = r[i].type;
        fwrite(&type, 4, 1, f);
        fwrite(&r[i].n, 8, 1, f);
        fwrite(r[i].data, 1, (size_t)(r[i].n / di->block_elems * di->block_bytes), f);
        total += r[i].n;
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' to-float '%s' '%s'", ggml_types, in_path, out_path);
    if (system(cmd) != 0) return -1;
    f = fopen(out_path, "rb");
    if (!f) return -1;
    const size_t got = fread(out, sizeof *out, (size_t)total, f);
    fclose(f);
    return got == (size_t)total ? 0 : -1;
}

/* Elements whose bits differ. */
static int64_t bit_mismatches(const float *a, const float *b, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], 4) != 0;
    return bad;
}

/* ---- a. the type table ---------------------------------------------------- */

static void check_type_table(void) {
    char cmd[1400], path[600];
    snprintf(path, sizeof path, "%s/traits.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' traits > '%s'", ggml_types, path);
    CHECK(system(cmd) == 0);
    FILE *f = fopen(path, "r");
    if (!f) return;
    int id, blck, bytes, to_float, n = 0, q35_reads = 0, ggml_reads = 0;
    char name[64], others[512] = "";
    while (fscanf(f, "%d %63s %d %d %d", &id, name, &blck, &bytes, &to_float) == 5) {
        const q35_dtype_info *di = q35_dtype_get(id);
        n++;
        if (!strcmp(name, "-")) {
            CHECKF(!di, "type %d: ggml has none, q35 names it %s", id, di ? di->name : "");
            continue;
        }
        CHECKF(di && !strcasecmp(di->name, name) && di->block_elems == blck && di->block_bytes == bytes,
               "type %d: ggml %s %d/%d, q35 %s %d/%d", id, name, blck, bytes, di ? di->name : "-",
               di ? di->block_elems : 0, di ? di->block_bytes : 0);
        if (di && di->to_f32) CHECKF(to_float || id == Q35_DTYPE_F32, "q35 expands %s, ggml does not", di->name);
        q35_reads += di && di->to_f32;
        ggml_reads += to_float;
        if (to_float && di && !di->to_f32)
            snprintf(others + strlen(others), sizeof others - strlen(others), " %s", di->name);
    }
    fclose(f);
    CHECKF(n == Q35_DTYPE_COUNT_, "ggml has %d type ids, q35's table %d", n, Q35_DTYPE_COUNT_);
    printf("type table: %d ggml ids, names and block sizes equal; q35 reads %d types, ggml %d (not q35:%s)\n", n,
           q35_reads, ggml_reads, others);
}

/* ---- b. random blocks ------------------------------------------------------ */

static const int readable_types[] = {Q35_DTYPE_Q4_0, Q35_DTYPE_Q4_1, Q35_DTYPE_Q5_0, Q35_DTYPE_Q5_1,
                                     Q35_DTYPE_Q8_0, Q35_DTYPE_Q2_K, Q35_DTYPE_Q3_K, Q35_DTYPE_Q4_K,
                                     Q35_DTYPE_Q5_K, Q35_DTYPE_Q6_K, Q35_DTYPE_IQ4_NL, Q35_DTYPE_IQ4_XS};
#define N_READABLE ((int)(sizeof readable_types / sizeof readable_types[0]))

static void check_random_blocks(void) {
    const int n_blocks = 4096;
    record r[N_READABLE];
    int64_t total = 0;
    for (int k = 0; k < N_READABLE; k++) {
        const q35_dtype_info *di = q35_dtype_get(readable_types[k]);
        r[k] = (record){readable_types[k], (int64_t)n_blocks * di->block_elems, random_blocks(readable_types[k], n_blocks, 0)};
        total += r[k].n;
    }
    float *ref = malloc((size_t)total * sizeof *ref), *got = malloc((size_t)total * sizeof *got);
    CHECK(ggml_expand(r, N_READABLE, ref) == 0);
    int64_t at = 0;
    for (int k = 0; k < N_READABLE; k++) {
        const q35_dtype_info *di = q35_dtype_get(r[k].type);
        di->to_f32(r[k].data, got + at, r[k].n);
        const int64_t bad = bit_mismatches(ref + at, got + at, r[k].n);
        CHECKF(bad == 0, "%s: %lld of %lld random weights differ from libggml's", di->name, (long long)bad,
               (long long)r[k].n);
        printf("%-7s %d random blocks (%lld weights): %s libggml's\n", di->name, n_blocks, (long long)r[k].n,
               bad ? "DIFFER from" : "bit-identical to");
        at += r[k].n;
        free((void *)r[k].data);
    }
    free(ref);
    free(got);
}

/* ---- c. llama.cpp's files ------------------------------------------------- */

static const char *const ftypes[] = {"Q4_K_M", "Q2_K",   "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
                                     "Q5_K_S", "Q5_K_M", "Q6_K",   "Q4_0",   "Q4_1",   "Q5_0",
                                     "Q5_1",   "IQ4_NL", "IQ4_XS"};
#define N_FTYPES ((int)(sizeof ftypes / sizeof ftypes[0]))
static char f16_path[600];

/* The test model: the tiny shape made K-quantizable (rows of 256 and 512). */
static int make_f16_model(void) {
    q35_config cfg;
    q35_error err = {0};
    q35_synth_shape("tiny", &cfg);
    cfg.dim = 256, cfg.hidden_dim = 512, cfg.n_heads = 4, cfg.n_kv_heads = 2;
    snprintf(f16_path, sizeof f16_path, "%s/tiny256-f16.gguf", tmpdir);
    int rc = q35_synth_model(f16_path, &cfg, "F16", 7, 0, NULL, &err);
    CHECKF(rc == 0, "synth: %s", err.msg);
    return rc;
}

static void quant_path(char *out, size_t cap, const char *ftype) {
    snprintf(out, cap, "%s/tiny256-%s.gguf", tmpdir, ftype);
}

/* Per stored type: tensors and blocks compared, and weights that differ. */
typedef struct type_tally {
    int tensors;
    int64_t blocks, bad;
} type_tally;

/* Every tensor of a type q35 reads (F32 aside) against libggml. */
static void check_file_tensors(const char *path, type_tally *tally) {
    q35_gguf *g = NULL;
    q35_error err = {0};
    CHECKF(q35_gguf_open(&g, path, &err) == 0, "%s", err.msg);
    if (!g) return;
    const int n = q35_gguf_n_tensors(g);
    record *r = calloc((size_t)n, sizeof *r);
    int k = 0;
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const q35_gguf_tensor_info *t = q35_gguf_tensor_at(g, i);
        const q35_dtype_info *di = q35_dtype_get(t->dtype);
        if (t->dtype == Q35_DTYPE_F32 || !di->to_f32) continue;
        r[k++] = (record){t->dtype, t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3], t->data};
        total += r[k - 1].n;
    }
    float *ref = malloc((size_t)total * sizeof *ref + 4), *got = malloc((size_t)total * sizeof *got + 4);
    CHECKF(ggml_expand(r, k, ref) == 0, "%s: the oracle failed", path);
    int64_t at = 0;
    for (int i = 0; i < k; i++) {
        const q35_dtype_info *di = q35_dtype_get(r[i].type);
        di->to_f32(r[i].data, got + at, r[i].n);
        const int64_t bad = bit_mismatches(ref + at, got + at, r[i].n);
        tally[r[i].type].tensors++;
        tally[r[i].type].blocks += r[i].n / di->block_elems;
        tally[r[i].type].bad += bad;
        CHECKF(bad == 0, "%s: a %s tensor: %lld weights differ from libggml's", path, di->name, (long long)bad);
        at += r[i].n;
    }
    free(ref);
    free(got);
    free(r);
    q35_gguf_close(g);
}

/* q35's logits on ids against llama.cpp's on the same file: the largest
 * difference, or -1 when something failed (a check says what). */
static double logits_diff(const char *path, const char *convert, const int *ids, int n) {
    char ids_path[600], out_path[600], cmd[2400];
    snprintf(ids_path, sizeof ids_path, "%s/ids.txt", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/logits.f32", tmpdir);
    FILE *f = fopen(ids_path, "w");
    for (int i = 0; i < n; i++) fprintf(f, "%d ", ids[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s/libllama' '%s' '%s' '%s' >'%s/ll.log' 2>&1", llama_logits, oracles, path,
             ids_path, out_path, tmpdir);
    if (system(cmd) != 0) {
        CHECKF(0, "llama-logits failed on %s", path);
        return -1;
    }
    q35_model_params p = q35_model_default_params();
    p.convert_type = convert;
    q35_model *m = NULL;
    q35_session *s = NULL;
    q35_error err = {0};
    if (q35_model_load_params(&m, path, &p, &err) || q35_session_new(&s, m, 1, &err)) {
        CHECKF(0, "%s: %s", path, err.msg);
        q35_model_free(m);
        return -1;
    }
    const int V = q35_model_config(m)->vocab_size;
    float *all = malloc((size_t)n * (size_t)V * sizeof *all), *ref = malloc((size_t)n * (size_t)V * sizeof *ref);
    f = fopen(out_path, "rb");
    const size_t got = f ? fread(ref, sizeof *ref, (size_t)n * (size_t)V, f) : 0;
    if (f) fclose(f);
    double worst = -1;
    if (got == (size_t)n * (size_t)V && q35_session_eval_batch(s, ids, n, all, NULL, &err) == 0) {
        worst = 0;
        for (size_t i = 0; i < (size_t)n * (size_t)V; i++) worst = fmax(worst, fabs((double)all[i] - ref[i]));
    }
    CHECKF(worst >= 0, "%s: logits: %s", path, err.msg);
    free(all);
    free(ref);
    q35_session_free(s);
    q35_model_free(m);
    return worst;
}

static void check_llama_files(void) {
    type_tally tally[Q35_DTYPE_COUNT_];
    memset(tally, 0, sizeof tally);
    int ids[24];
    for (int i = 0; i < 24; i++) ids[i] = i ? 3 + (int)(next_u32() % 500) : 1;
    for (int k = 0; k < N_FTYPES; k++) {
        char out[600], cmd[4096];
        quant_path(out, sizeof out, ftypes[k]);
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %s >'%s/quantize.log' 2>&1", llama_quantize, f16_path, out,
                 ftypes[k], tmpdir);
        if (system(cmd) != 0) {
            CHECKF(0, "llama_model_quantize %s failed", ftypes[k]);
            continue;
        }
        check_file_tensors(out, tally);
        /* the file lists, loads and runs; its logits beside llama.cpp's */
        q35_model *m = NULL;
        q35_error err = {0};
        CHECKF(q35_model_load(&m, out, NULL, &err) == 0, "%s: %s", out, err.msg);
        const q35_conversion c = q35_model_conversion(m);
        CHECKF(m && c.n_matrices == 2 + 7 * q35_model_config(m)->n_layers && !strcmp(c.to, "Q8_S"),
               "%s: %d matrices converted to %s", ftypes[k], c.n_matrices, c.to);
        printf("%-7s file: matrices %s -> %s at load", ftypes[k], c.from, c.to);
        q35_model_free(m);
        const double d = logits_diff(out, NULL, ids, 24), d32 = logits_diff(out, "F32", ids, 24);
        /* the model's logits span about +-6: a wrong dequantizer or layout
         * gives differences of that order */
        CHECKF(d >= 0 && d < 0.25 && d32 >= 0 && d32 < 0.25, "%s: logits differ from llama.cpp's by %.3g (%.3g in fp32)",
               ftypes[k], d, d32);
        printf("; largest logit difference to llama.cpp over 24 positions: %.3g (matrices expanded to fp32: %.3g)\n",
               d, d32);
    }
    /* and the trained models' files llama.cpp made (../shared) */
    static const char *const shared_files[] = {"models/gguf/stories260K-Q8_0.gguf", "models/gguf/stories260K-Q4_0.gguf",
                                               "models/gguf/stories3M-Q8_0.gguf", "models/gguf/stories3M-Q4_0.gguf"};
    for (size_t k = 0; k < sizeof shared_files / sizeof shared_files[0]; k++) {
        char path[1024];
        if (access(shared_path(path, sizeof path, shared_files[k]), R_OK) == 0) check_file_tensors(path, tally);
        else SKIP("%s is missing", shared_files[k]);
    }
    for (int t = 0; t < Q35_DTYPE_COUNT_; t++)
        if (tally[t].tensors)
            printf("%-7s %3d tensors, %7lld blocks of llama.cpp's files: %lld weights differ from libggml's; "
                   "%.4f bits per weight\n",
                   q35_dtype_get(t)->name, tally[t].tensors, (long long)tally[t].blocks, (long long)tally[t].bad,
                   8.0 * q35_dtype_get(t)->block_bytes / q35_dtype_get(t)->block_elems);
}

/* ---- d. quantize from a K-quant file ---------------------------------------- */

/* `q35 quantize IN OUT --type T` streams IN (read as stored) and its
 * matrices equal those the loader makes with convert_type T. */
static void check_quantize_from(const char *in, const char *type) {
    char out[600];
    snprintf(out, sizeof out, "%s/requant-%s.gguf", tmpdir, type);
    result r = run((const char *[]){"quantize", in, out, "--type", type, NULL});
    CHECKF(r.status == 0, "quantize %s --type %s: %s", in, type, r.err);
    free_result(&r);
    q35_model_params p = q35_model_default_params();
    p.convert_type = type;
    p.r16 = 0;
    q35_model *conv = NULL, *file = NULL;
    q35_error err = {0};
    CHECKF(q35_model_load_params(&conv, in, &p, &err) == 0, "%s: %s", in, err.msg);
    p.convert_type = NULL;
    CHECKF(q35_model_load_params(&file, out, &p, &err) == 0, "%s: %s", out, err.msg);
    int same = 0, matrices = 0;
    for (int i = 0; conv && file && i < q35_model_n_tensors(conv); i++) {
        const q35_tensor *a = &conv->weights.tensors[i], *b = q35_weights_find(&file->weights, a->name);
        if (!q35_is_family(a->dtype)) continue;
        matrices++;
        same += b && b->dtype == a->dtype && b->nbytes == a->nbytes && !memcmp(a->data, b->data, a->nbytes);
    }
    CHECKF(matrices > 0 && same == matrices, "%s: %d of %d matrices equal the loader's %s", in, same, matrices, type);
    q35_model_free(conv);
    q35_model_free(file);
}

/* ---- files of random blocks (no oracle needed) ------------------------------- */

/* The F16 model with every matrix in a block type: K-quants and IQ4_XS
 * in turn (rows of 256 and 512), or `only` (>= 0) for every matrix; and
 * with `odd` (>= 0) as the type of blk.0.attn_q.weight. 0 on success. */
static int write_variant(const char *out, int only, int odd) {
    static const int cycle[] = {Q35_DTYPE_Q4_K, Q35_DTYPE_Q6_K, Q35_DTYPE_Q2_K, Q35_DTYPE_Q3_K,
                                Q35_DTYPE_Q5_K, Q35_DTYPE_IQ4_XS, Q35_DTYPE_Q5_0, Q35_DTYPE_IQ4_NL};
    q35_weights w;
    q35_error err = {0};
    int rc = q35_gguf_load_weights(&w, f16_path, &err);
    for (int i = 0, k = 0; rc == 0 && i < w.n_tensors; i++) {
        q35_tensor *t = &w.tensors[i];
        if (t->n_dims != 2) continue;
        const int type = odd >= 0 && !strcmp(t->name, "blk.0.attn_q.weight") ? odd
                         : only >= 0                                         ? only
                                                                             : cycle[k++ % 8];
        const q35_dtype_info *di = q35_dtype_get(type);
        const int n_blocks = (int)(t->ne[0] * t->ne[1] / di->block_elems);
        uint8_t *data = random_blocks(type, n_blocks, 1);
        if (q35_weights_own(&w, data)) rc = -1;
        t->dtype = type;
        t->data = data;
        t->nbytes = (uint64_t)n_blocks * (uint64_t)di->block_bytes;
    }
    q35_tokenizer *tok = NULL;
    if (rc == 0) rc = q35_tokenizer_load_gguf(&tok, f16_path, &err);
    if (rc == 0) rc = q35_gguf_save_model(out, &w, q35_tokenizer_gguf_keys, tok, -1, &err);
    CHECKF(rc == 0, "%s: %s", out, err.msg);
    q35_tokenizer_free(tok);
    q35_weights_free(&w);
    return rc;
}

static void check_random_file(void) {
    char path[600], imat[600], out[600], dev[1024];
    snprintf(path, sizeof path, "%s/random-k.gguf", tmpdir);
    if (write_variant(path, -1, -1)) return;
    result r = run((const char *[]){"info", path, NULL});
    CHECKF(r.status == 0 && strstr(r.out, "Q2_K") && strstr(r.out, "Q6_K") && strstr(r.out, "IQ4_XS") &&
               strstr(r.out, "4.2500") && strstr(r.out, "2.6250"),
           "info on K-quants: %s%s", r.out, r.err);
    free_result(&r);
    r = run((const char *[]){"run", "-m", path, "-n", "4", "--temp", "0", NULL});
    CHECKF(r.status == 0 && strstr(r.err, "converted 16 matrices from ") && strstr(r.err, " to Q8_S at load"),
           "run on K-quants: %s", r.err);
    free_result(&r);
    r = run((const char *[]){"run", "-m", path, "-n", "4", "--temp", "0", "--convert-type", "F32", NULL});
    CHECKF(r.status == 0 && strstr(r.err, "to F32 at load"), "run --convert-type F32: %s", r.err);
    free_result(&r);
    shared_path(dev, sizeof dev, "data/tinystories-dev.txt");
    r = run((const char *[]){"perplexity", "-m", path, "-f", dev, "--chunks", "2", "--convert-type", "Q4_5", NULL});
    CHECKF(r.status == 0 && strstr(r.err, "to Q4_5 at load") && strstr(r.out, "mean NLL"), "perplexity --convert-type: %s",
           r.err);
    free_result(&r);
    r = run((const char *[]){"bench", "-m", path, "-p", "8", "-n", "4", "-r", "1", "--convert-type", "Q3_5", NULL});
    CHECKF(r.status == 0 && strstr(r.err, "to Q3_5 at load") && strstr(r.out, "tg4"), "bench --convert-type: %s%s",
           r.out, r.err);
    free_result(&r);
    check_quantize_from(path, "Q3_5");
    /* converted matrices repacked into R16 keep no rows: sessions that read
     * rows are refused, as is quantizing the loaded model */
    q35_model *m = NULL;
    q35_session *s = NULL;
    q35_error err = {0};
    CHECKF(q35_model_load(&m, path, NULL, &err) == 0, "%s", err.msg);
    if (m && m->rows_dropped) {
        q35_session_params sp = q35_session_default_params();
        sp.r16 = 0;
        CHECK(q35_session_new_params(&s, m, &sp, &err) == Q35_ERR_ARG && !s && strstr(err.msg, "R16 order only"));
        sp.r16 = 1;
        CHECKF(q35_session_new_params(&s, m, &sp, &err) == 0, "%s", err.msg);
        q35_session_free(s);
        snprintf(out, sizeof out, "%s/from-loaded.gguf", tmpdir);
        CHECK(q35_quantize_model(m, out, "Q3_5", NULL, 1, NULL, NULL, NULL, NULL, &err) == Q35_ERR_ARG &&
              strstr(err.msg, "R16 order only") && access(out, F_OK) != 0);
    } else {
        printf("this CPU's kernels do not run R16: converted matrices keep their rows\n");
    }
    q35_model_free(m);
    /* the memory check counts the weights as they will be held: converted
     * into Q8_S (8.25 bits) rather than expanded (32) */
    double need[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        q35_model_params p = q35_model_default_params();
        p.mem_available = 1 << 20; /* more than the file, less than either */
        p.convert_type = k ? "F32" : NULL;
        m = NULL;
        CHECK(q35_model_load_params(&m, path, &p, &err) == Q35_ERR_NOMEM && !m);
        const char *at = strstr(err.msg, "needs ");
        need[k] = at ? atof(at + 6) : 0;
    }
    CHECKF(need[0] > 1.0 && need[1] - need[0] > 3.0, "memory needed: %.1f MiB converted, %.1f expanded", need[0],
           need[1]);
    /* an importance matrix from the K-quant file, then quantize with it */
    snprintf(imat, sizeof imat, "%s/random-k.imatrix", tmpdir);
    snprintf(out, sizeof out, "%s/random-k-imat.gguf", tmpdir);
    shared_path(dev, sizeof dev, "data/tinystories-calib.txt");
    r = run((const char *[]){"imatrix", "-m", path, "-f", dev, "-o", imat, "--max-tokens", "300", NULL});
    CHECKF(r.status == 0, "imatrix on K-quants: %s", r.err);
    free_result(&r);
    r = run((const char *[]){"quantize", path, out, "--type", "Q4_5", "--imatrix", imat, NULL});
    CHECKF(r.status == 0 && strstr(r.out, "Q4_5"), "quantize --imatrix from K-quants: %s", r.err);
    free_result(&r);
}

/* The loader's fast conversion writes Q8_S rows directly: they must be
 * the rows q35_pack_row makes of the same codes and scales (odd lengths:
 * padding and a short last block), and decode within half a step. */
static void check_fast_q8s(void) {
    const int64_t shapes[][2] = {{256, 64}, {100, 7}, {37, 3}};
    for (int k = 0; k < 3; k++) {
        const int64_t n = shapes[k][0], rows = shapes[k][1];
        float *W = malloc((size_t)(n * rows) * sizeof *W), *back = malloc((size_t)(n * rows) * sizeof *back);
        for (int64_t i = 0; i < n * rows; i++) W[i] = (float)((int32_t)next_u32() % 20001 - 10000) * 1e-4f;
        q35_layout L;
        CHECK(q35_layout_init(&L, Q35_TYPE_Q8_S, n, rows) == 0);
        uint8_t *q = malloc(L.total_bytes), *row = malloc(L.row_bytes), *codes = malloc((size_t)L.np),
                *scales = malloc((size_t)L.n_blocks);
        CHECK(q35_quantize_tensor_fast(&L, W, 2, q) == 0);
        int same = 1;
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *stored = q + L.header_bytes + (uint64_t)r * L.row_bytes;
            q35_unpack_row(&L, stored, codes, scales);
            q35_pack_row(&L, codes, scales, row);
            same &= !memcmp(row, stored, L.row_bytes);
        }
        CHECKF(same, "Q8_S %lld x %lld: the fast rows are not q35_pack_row's", (long long)rows, (long long)n);
        q35_dequantize_tensor(&L, q, back);
        double worst = 0, amax = 0; /* half a step: the block's largest |w| / 255, on a 2^(1/16) grid */
        for (int64_t i = 0; i < n * rows; i++) {
            worst = fmax(worst, fabs((double)W[i] - back[i]));
            amax = fmax(amax, fabs((double)W[i]));
        }
        CHECKF(worst <= amax / 255 * 1.045, "Q8_S fast: error %.3g beyond half a step (%.3g)", worst, amax / 255);
        free(W), free(back), free(q), free(row), free(codes), free(scales);
    }
}

/* ---- e. bad input ------------------------------------------------------------ */

/* The offset of tensor name's n_dims field in the GGUF header at p. */
static size_t tensor_info_at(const uint8_t *p, size_t len, const char *name) {
    const size_t n = strlen(name);
    for (size_t i = 8; i + n + 4 < len; i++) {
        uint64_t l;
        memcpy(&l, p + i - 8, 8);
        if (l == n && !memcmp(p + i, name, n)) return i + n;
    }
    return 0;
}

static void check_bad_input(void) {
    char path[600], out[600];
    /* a type q35 only lists */
    snprintf(path, sizeof path, "%s/iq2.gguf", tmpdir);
    snprintf(out, sizeof out, "%s/iq2-out.gguf", tmpdir);
    if (write_variant(path, Q35_DTYPE_Q4_K, Q35_DTYPE_IQ2_XXS) == 0) {
        result r = run((const char *[]){"info", path, NULL});
        CHECKF(r.status == 0 && strstr(r.out, "IQ2_XXS") && strstr(r.out, "cannot read"), "info lists IQ2_XXS: %s%s",
               r.out, r.err);
        free_result(&r);
        expect_error("run IQ2_XXS", "tensor blk.0.attn_q.weight has type IQ2_XXS, which q35 cannot read",
                     (const char *[]){"run", "-m", path, "-n", "2", NULL});
        expect_error("quantize IQ2_XXS", "tensor blk.0.attn_q.weight has type IQ2_XXS, which q35 cannot read",
                     (const char *[]){"quantize", path, out, "--type", "Q3_5", NULL});
        CHECKF(access(out, F_OK) != 0, "quantize left %s behind", out);
        q35_model *m = NULL;
        q35_error err = {0};
        CHECK(q35_model_load(&m, path, NULL, &err) == Q35_ERR_UNSUPPORTED && !m && strstr(err.msg, "IQ2_XXS"));
    }
    /* K-quant rows that are not whole super-blocks; a K-quant tensor cut short */
    snprintf(path, sizeof path, "%s/q4k.gguf", tmpdir);
    if (write_variant(path, Q35_DTYPE_Q4_K, -1) == 0) {
        size_t len;
        uint8_t *p = read_all(path, &len);
        const size_t at = tensor_info_at(p, len, "blk.0.attn_q.weight");
        CHECK(at > 0);
        uint32_t n_dims;
        int64_t ne[2];
        memcpy(&n_dims, p + at, 4);
        memcpy(ne, p + at + 4, 16);
        CHECKF(n_dims == 2 && ne[0] == 256 && ne[1] == 256, "attn_q: %u dims, %lld x %lld", n_dims,
               (long long)ne[0], (long long)ne[1]);
        const int64_t half[2] = {128, 512};
        memcpy(p + at + 4, half, 16);
        const char *bad = fixture("q4k-rows-128.gguf", p, len);
        expect_error("K-quant rows of 128", "rows of 128 elements are not whole Q4_K blocks of 256",
                     (const char *[]){"run", "-m", bad, NULL});
        expect_error("K-quant rows of 128 (info)", "not whole Q4_K blocks", (const char *[]){"info", bad, NULL});
        memcpy(p + at + 4, ne, 16);
        bad = fixture("q4k-cut.gguf", p, len - 100);
        expect_error("K-quant tensor cut short", "run past the end of the file",
                     (const char *[]){"run", "-m", bad, NULL});
        free(p);
        expect_error("bad --convert-type", "convert type 'Q4_K': choose Q2_5, Q3_5, Q4_5, Q8_S or F32",
                     (const char *[]){"run", "-m", path, "--convert-type", "Q4_K", NULL});
    }
}

int main(void) {
    if (clirun_init("test-kquant")) return 2;
    if (make_f16_model()) TEST_END();
    check_fast_q8s();
    check_random_file();
    check_bad_input();
    oracles = oracles_dir();
    if (!oracles) {
        SKIP("no oracles ($Q35_ORACLES): K-quants against libggml and llama.cpp");
    } else {
        char src[700];
        snprintf(ggml_types, sizeof ggml_types, "%s/ggml_types", tmpdir);
        snprintf(llama_quantize, sizeof llama_quantize, "%s/llama_quantize", tmpdir);
        snprintf(llama_logits, sizeof llama_logits, "%s/bin/llama-logits", oracles);
        int ok = access(llama_logits, X_OK) == 0;
        snprintf(src, sizeof src, "tests/oracle/ggml_types.c");
        ok = ok && build_oracle(src, ggml_types, "-l:libggml-base.so") == 0;
        snprintf(src, sizeof src, "tests/oracle/llama_quantize.c");
        ok = ok && build_oracle(src, llama_quantize, "-l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so") == 0;
        CHECKF(ok, "the oracle programs did not build against %s (see %s/cc.log)", oracles, tmpdir);
        if (ok) {
            check_type_table();
            check_random_blocks();
            check_llama_files();
            char q4km[600];
            quant_path(q4km, sizeof q4km, "Q4_K_M");
            check_quantize_from(q4km, "Q3_5");
        }
    }
    clirun_cleanup();
    TEST_END();
}
