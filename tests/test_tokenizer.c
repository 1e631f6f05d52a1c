/* test_tokenizer.c — the tokenizer against sentencepiece's and llama2.c's own
 * outputs, on hostile files, and on small hand-made vocabularies.
 * Run from the repository root (reads ../shared or $Q35_SHARED). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/mapfile.h"
#include "harness.h"
#include "tokenizer/spmodel.h"
#include "tokenizer/tokenizer.h"

/* ---- helpers ----------------------------------------------------------- */

static void print_ids(const char *label, const int *ids, int n) {
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n && i < 24; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 24 ? " ...\n" : "\n");
}

static q35_tokenizer *load_shared(const char *rel, int vocab) {
    char path[1024];
    q35_error err = {0};
    q35_tokenizer *t = NULL;
    int rc = q35_tokenizer_load_llama2c(&t, shared_path(path, sizeof path, rel),
                                        vocab, &err);
    CHECKF(rc == 0, "loading %s: %s", path, err.msg);
    return t;
}

/* Encodes a NUL-terminated string; returns the ids (free them) or NULL. */
static int *enc(const q35_tokenizer *t, const char *s, int add_bos, int *n) {
    int *ids = NULL;
    q35_error err = {0};
    int rc = q35_tokenizer_encode(t, s, strlen(s), add_bos, &ids, n, &err);
    CHECKF(rc == 0, "encoding \"%s\": %s", s, err.msg);
    return ids;
}

/* Checks that s encodes (no BOS) to exactly the n ids in want. */
static void check_enc(const q35_tokenizer *t, const char *s, const int *want,
                      int n_want) {
    int n = 0, *ids = enc(t, s, 0, &n);
    int same = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    CHECKF(same, "encoding \"%s\"", s);
    if (!same) {
        print_ids("got ", ids, n);
        print_ids("want", want, n_want);
    }
    free(ids);
}

static int all_in_range(const int *ids, int n, int vocab) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) return 0;
    return 1;
}

/* ---- oracle 1: sentencepiece's own ids --------------------------------- */

static void test_jsonl(const char *jsonl_rel, const char *tok_rel, int vocab) {
    q35_tokenizer *t = load_shared(tok_rel, vocab);
    char path[1024];
    char *data;
    size_t size;
    q35_error err = {0};
    int rc = q35_read_file(shared_path(path, sizeof path, jsonl_rel), &data,
                           &size, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!t || rc) {
        q35_tokenizer_free(t);
        return;
    }
    int lines = 0, match = 0, shown = 0;
    for (char *line = data, *next; *line; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : line + strlen(line);
        if (nl) *nl = '\0';
        if (!*line) continue;
        lines++;
        cJSON *j = cJSON_Parse(line);
        cJSON *text = cJSON_GetObjectItem(j, "text");
        cJSON *want = cJSON_GetObjectItem(j, "ids");
        if (!cJSON_IsString(text) || !cJSON_IsArray(want)) {
            CHECKF(0, "%s line %d is not {text, ids}", jsonl_rel, lines);
            cJSON_Delete(j);
            continue;
        }
        int n_want = cJSON_GetArraySize(want);
        int *want_ids = malloc((n_want + 1) * sizeof *want_ids);
        for (int i = 0; i < n_want; i++)
            want_ids[i] = cJSON_GetArrayItem(want, i)->valueint;
        int n = 0, *ids = NULL;
        const char *s = text->valuestring;
        rc = q35_tokenizer_encode(t, s, strlen(s), 0, &ids, &n, &err);
        int same = rc == 0 && n == n_want &&
                   (n == 0 || memcmp(ids, want_ids, n * sizeof *ids) == 0);
        match += same;
        if (!same && shown++ < 5) {
            fprintf(stderr, "%s line %d: \"%.200s\"\n", jsonl_rel, lines, s);
            print_ids("q35         ", ids, n);
            print_ids("sentencepiece", want_ids, n_want);
        }
        free(ids);
        free(want_ids);
        cJSON_Delete(j);
    }
    printf("%s: %d/%d lines match sentencepiece\n", jsonl_rel, match, lines);
    CHECKF(lines > 100 && match == lines, "%s: %d of %d lines match",
           jsonl_rel, match, lines);
    free(data);
    q35_tokenizer_free(t);
}

/* ---- oracle 2: llama2.c's prompt ids and decoded text ------------------ */

static void test_greedy(const char *ref_rel, const char *tok_rel, int vocab) {
    q35_tokenizer *t = load_shared(tok_rel, vocab);
    char path[1024];
    char *data;
    size_t size;
    q35_error err = {0};
    int rc = q35_read_file(shared_path(path, sizeof path, ref_rel), &data, &size,
                           &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!t || rc) {
        q35_tokenizer_free(t);
        return;
    }
    /* "n_prompt=N ids: a b c ...\ntext: TEXT\n" (TEXT may hold newlines) */
    int n_prompt = 0, n_ref = 0, consumed = 0;
    int *ref = malloc(size * sizeof *ref);
    char *p = data;
    CHECKF(sscanf(p, "n_prompt=%d ids:%n", &n_prompt, &consumed) == 1, "%s header",
           ref_rel);
    p += consumed;
    while (*p != '\n' && sscanf(p, "%d%n", &ref[n_ref], &consumed) == 1) {
        n_ref++;
        p += consumed;
    }
    char *text = strstr(p, "\ntext: ");
    CHECKF(text && n_ref > n_prompt && n_prompt > 0, "%s: cannot parse", ref_rel);
    if (text && n_ref > n_prompt && n_prompt > 0) {
        text += strlen("\ntext: ");
        size_t len = strlen(text);
        if (len > 0 && text[len - 1] == '\n') text[--len] = '\0';

        int n = 0, *ids = enc(t, "Once upon a time", 1, &n);
        int same = n == n_prompt && memcmp(ids, ref, n * sizeof *ids) == 0;
        CHECKF(same, "%s: prompt ids differ from llama2.c's", ref_rel);
        if (!same) {
            print_ids("q35    ", ids, n);
            print_ids("llama2.c", ref, n_prompt);
        }
        free(ids);

        char *out = calloc(n_ref * 64 + 1, 1), piece[64];
        size_t at = 0;
        for (int i = 1; i < n_ref; i++) {
            size_t k = q35_tokenizer_decode(t, ref[i - 1], ref[i], piece, sizeof piece);
            memcpy(out + at, piece, k);
            at += k;
        }
        CHECKF(at == len && memcmp(out, text, len) == 0,
               "%s: decoded text differs:\n  q35:      %s\n  llama2.c: %s", ref_rel,
               out, text);
        free(out);
    }
    free(ref);
    free(data);
    q35_tokenizer_free(t);
}

/* ---- oracle 3 and timing: the whole dev text --------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_dev_text(void) {
    char path[1024];
    char *data;
    size_t size;
    q35_error err = {0};
    int rc = q35_read_file(shared_path(path, sizeof path, "data/tinystories-dev.txt"),
                           &data, &size, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (rc) return;

    q35_tokenizer *t = load_shared("models/babyllama105/tok105.bin", 105);
    if (t) {
        int n = 0, *ids = NULL;
        rc = q35_tokenizer_encode(t, data, size, 1, &ids, &n, &err);
        CHECKF(rc == 0, "%s", err.msg);
        CHECKF(n > 100000 && all_in_range(ids, n, 105),
               "tok105 on the dev text: %d ids, some out of [0,105)", n);
        free(ids);
        q35_tokenizer_free(t);
    }

    t = load_shared("models/llama2-tokenizer/tokenizer.bin", 32000);
    if (t) {
        int n = 0, *ids = NULL;
        double t0 = now_s();
        rc = q35_tokenizer_encode(t, data, size, 1, &ids, &n, &err);
        double dt = now_s() - t0;
        CHECKF(rc == 0, "%s", err.msg);
        CHECK(all_in_range(ids, n, 32000));
        printf("llama2 tokenizer: %zu bytes of tinystories-dev.txt -> %d ids in "
               "%.3f s\n", size, n, dt);
        free(ids);
        q35_tokenizer_free(t);
    }
    free(data);
}

/* ---- documents of the dev text ---------------------------------------- */

/* The next document at *p: documents are separated by "\n\n", as python's
 * text.split("\n\n") cuts them (the last keeps the file's final newline).
 * Returns its length and moves *p past it and its separator; -1 at the
 * end of the text. */
static long next_doc(char **p, char **doc) {
    if (!**p) return -1;
    *doc = *p;
    char *end = strstr(*p, "\n\n");
    if (end) {
        *p = end + 2;
        return end - *doc;
    }
    *p += strlen(*p);
    return *p - *doc;
}

/* The README's perplexity protocol: each document scored as BOS + its
 * tokens, truncated at seq_len, every next-token prediction counted. Its
 * "tokens scored" figures come from llama2.c's encoder. */
static void test_tokens_scored(const char *tok_rel, int vocab,
                               const char *data_rel, int seq_len, long want) {
    q35_tokenizer *t = load_shared(tok_rel, vocab);
    char path[1024];
    char *data, *p, *doc;
    size_t size;
    q35_error err = {0};
    int rc = q35_read_file(shared_path(path, sizeof path, data_rel), &data, &size,
                           &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!t || rc) {
        q35_tokenizer_free(t);
        return;
    }
    long scored = 0, len;
    int docs = 0;
    p = data;
    while ((len = next_doc(&p, &doc)) >= 0) {
        int n = 0, *ids = NULL;
        rc = q35_tokenizer_encode(t, doc, (size_t)len, 1, &ids, &n, &err);
        CHECKF(rc == 0, "%s", err.msg);
        scored += (n < seq_len ? n : seq_len) - 1;
        docs++;
        free(ids);
    }
    printf("%s on %s: %d documents, %ld tokens scored (README: %ld)\n", tok_rel,
           data_rel, docs, scored, want);
    CHECKF(scored == want, "%s on %s: %ld tokens scored, README says %ld",
           tok_rel, data_rel, scored, want);
    free(data);
    q35_tokenizer_free(t);
}

/* ---- a simple copy of llama2.c's encoder, as an oracle ----------------- */

/* llama2.c's encode() (run.c), minus its fixed buffers: dummy prefix, each
 * UTF-8 character looked up (or its bytes as ids byte+3), then repeatedly
 * the best-scoring adjacent pair merged, leftmost on ties. O(n^2). */
/* A piece as llama2.c sorts them: its string (q35 stores a NUL after each
 * piece) and id. */
typedef struct sorted_piece {
    const char *str;
    int id;
} sorted_piece;

static int cmp_sorted(const void *a, const void *b) {
    return strcmp(((const sorted_piece *)a)->str, ((const sorted_piece *)b)->str);
}

/* llama2.c's str_lookup: bsearch over the pieces sorted by strcmp. */
static int llama2c_lookup(const q35_tokenizer *t, const sorted_piece *sorted,
                          const char *s, size_t n) {
    char key[256];
    if (n >= sizeof key) return -1;
    memcpy(key, s, n);
    key[n] = '\0';
    int lo = 0, hi = q35_tokenizer_n_vocab(t) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(key, sorted[mid].str);
        if (c == 0) return sorted[mid].id;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

static int llama2c_encode(const q35_tokenizer *t, const sorted_piece *sorted,
                          const char *text, int *ids) {
    int n = 0;
    if (*text) ids[n++] = llama2c_lookup(t, sorted, " ", 1);
    for (const char *c = text; *c;) {
        size_t len = 1;
        while (len < 4 && (c[len] & 0xC0) == 0x80) len++;
        int id = llama2c_lookup(t, sorted, c, len);
        if (id >= 0) ids[n++] = id;
        else
            for (size_t i = 0; i < len; i++) ids[n++] = (unsigned char)c[i] + 3;
        c += len;
    }
    char buf[256];
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_i = -1;
        for (int i = 0; i + 1 < n; i++) {
            uint32_t la, lb;
            const char *a = q35_tokenizer_piece(t, ids[i], &la);
            const char *b = q35_tokenizer_piece(t, ids[i + 1], &lb);
            if (la + lb > sizeof buf) continue;
            memcpy(buf, a, la);
            memcpy(buf + la, b, lb);
            int id = llama2c_lookup(t, sorted, buf, la + lb);
            if (id >= 0 && q35_tokenizer_score(t, id) > best) {
                best = q35_tokenizer_score(t, id);
                best_id = id;
                best_i = i;
            }
        }
        if (best_i < 0) break;
        ids[best_i] = best_id;
        memmove(ids + best_i + 1, ids + best_i + 2, (n - best_i - 2) * sizeof *ids);
        n--;
    }
    return n;
}

/* The first documents (blank-line separated) of the dev text encode as
 * llama2.c's encoder would, for tokenizers without a .model beside them. */
static void test_llama2c_encoder(const char *tok_rel, int vocab, int n_docs) {
    q35_tokenizer *t = load_shared(tok_rel, vocab);
    char path[1024];
    char *data;
    size_t size;
    q35_error err = {0};
    int rc = q35_read_file(shared_path(path, sizeof path, "data/tinystories-dev.txt"),
                           &data, &size, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!t || rc) {
        q35_tokenizer_free(t);
        return;
    }
    int nv = q35_tokenizer_n_vocab(t);
    sorted_piece *sorted = malloc(nv * sizeof *sorted);
    for (int i = 0; i < nv; i++)
        sorted[i] = (sorted_piece){q35_tokenizer_piece(t, i, NULL), i};
    qsort(sorted, nv, sizeof *sorted, cmp_sorted);
    int docs = 0, same_docs = 0;
    char *p = data, *doc;
    long len;
    while (docs < n_docs && (len = next_doc(&p, &doc)) >= 0) {
        char *end = doc + len, saved = *end;
        *end = '\0';
        int *want = malloc((strlen(doc) * 4 + 2) * sizeof *want);
        int n_want = llama2c_encode(t, sorted, doc, want), n = 0;
        int *ids = enc(t, doc, 0, &n);
        int same = n == n_want && memcmp(ids, want, n * sizeof *ids) == 0;
        if (!same && docs - same_docs < 3) {
            fprintf(stderr, "%s doc %d: \"%.80s...\"\n", tok_rel, docs, doc);
            print_ids("q35     ", ids, n);
            print_ids("llama2.c", want, n_want);
        }
        same_docs += same;
        docs++;
        free(ids);
        free(want);
        *end = saved;
    }
    printf("%s: %d/%d dev documents encode as llama2.c's encoder does\n", tok_rel,
           same_docs, docs);
    CHECKF(docs == n_docs && same_docs == docs, "%s: %d of %d documents match",
           tok_rel, same_docs, docs);
    free(sorted);
    free(data);
    q35_tokenizer_free(t);
}

/* ---- bad input --------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECKF(f != NULL, "cannot write fixture %s", path);
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* A byte buffer for building fixtures. */
typedef struct buf {
    uint8_t d[4096];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void put_i32(buf *b, int32_t v) { put(b, &v, 4); }
static void put_piece(buf *b, float score, const char *s) {
    put(b, &score, 4);
    put_i32(b, (int32_t)strlen(s));
    put(b, s, strlen(s));
}

/* A well-formed five-piece llama2.c tokenizer. */
static buf good_bin(void) {
    buf b = {.n = 0};
    put_i32(&b, 6);
    put_piece(&b, 0, "<unk>");
    put_piece(&b, 0, "\n<s>\n");
    put_piece(&b, 0, "\n</s>\n");
    put_piece(&b, -1, " ");
    put_piece(&b, -2, "a");
    return b;
}

/* Loading path must fail with code and a one-line message naming it. */
static void check_load_fails(const char *path, int vocab, int code,
                             const char *what) {
    q35_tokenizer *t = (q35_tokenizer *)&t; /* any non-NULL: must be reset */
    q35_error err = {0};
    int rc = q35_tokenizer_load_llama2c(&t, path, vocab, &err);
    CHECKF(rc == code, "%s: got code %d (want %d): %s", what, rc, code, err.msg);
    CHECKF(t == NULL, "%s: *out not NULL after an error", what);
    CHECKF(err.msg[0] && !strchr(err.msg, '\n') && strstr(err.msg, path),
           "%s: message \"%s\" does not name %s", what, err.msg, path);
    printf("  %-34s -> %s\n", what, err.msg);
}

static void test_bad_input(void) {
    char dir[] = "/tmp/q35_test_tokenizer_XXXXXX", path[512], side[512];
    CHECK(mkdtemp(dir) != NULL);
    buf b;

    snprintf(path, sizeof path, "%s/missing.bin", dir);
    check_load_fails(path, 0, Q35_ERR_IO, "missing file");

    snprintf(path, sizeof path, "%s/empty.bin", dir);
    write_file(path, "", 0);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "empty file");

    snprintf(path, sizeof path, "%s/short.bin", dir);
    write_file(path, "\x06\x00", 2);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "2-byte file");

    snprintf(path, sizeof path, "%s/nopieces.bin", dir);
    write_file(path, "\x06\x00\x00\x00", 4);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "header only");

    b = good_bin();
    put_i32(&b, 0); /* half an entry header */
    snprintf(path, sizeof path, "%s/cut.bin", dir);
    write_file(path, b.d, b.n);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "entry header cut off");

    b = good_bin();
    put_i32(&b, 0);
    put_i32(&b, 100); /* 100 bytes promised, 3 given */
    put(&b, "abc", 3);
    snprintf(path, sizeof path, "%s/trunc.bin", dir);
    write_file(path, b.d, b.n);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "piece past end of file");

    b = good_bin();
    put_i32(&b, 0);
    put_i32(&b, -5);
    put(&b, "abcdefgh", 8);
    snprintf(path, sizeof path, "%s/neg.bin", dir);
    write_file(path, b.d, b.n);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "negative length");

    b = good_bin();
    put_i32(&b, 0);
    put_i32(&b, INT32_MAX);
    snprintf(path, sizeof path, "%s/huge.bin", dir);
    write_file(path, b.d, b.n);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "length INT32_MAX");

    b = good_bin();
    put_piece(&b, NAN, "b");
    snprintf(path, sizeof path, "%s/nan.bin", dir);
    write_file(path, b.d, b.n);
    check_load_fails(path, 0, Q35_ERR_FORMAT, "NaN score");

    b = good_bin();
    snprintf(path, sizeof path, "%s/good.bin", dir);
    write_file(path, b.d, b.n);
    check_load_fails(path, 6, Q35_ERR_FORMAT, "vocab 5, expected 6");
    {
        q35_error err = {0};
        q35_tokenizer_load_llama2c(&(q35_tokenizer *){NULL}, path, 6, &err);
        CHECKF(strstr(err.msg, "5") && strstr(err.msg, "6"),
               "mismatch message should give both counts: %s", err.msg);
    }

    /* the good file loads, with llama2.c's defaults */
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    CHECKF(q35_tokenizer_load_llama2c(&t, path, 5, &err) == 0, "%s", err.msg);
    if (t) {
        CHECK(q35_tokenizer_bos(t) == 1 && q35_tokenizer_eos(t) == 2);
        CHECK(q35_tokenizer_options(t)->add_dummy_prefix == 1);
        CHECK(q35_tokenizer_options(t)->remove_extra_whitespaces == 0);
        int want[] = {3, 4, 3, 3, 4};
        check_enc(t, "a  a", want, 5);
        /* invalid UTF-8, NUL bytes, all 256 byte values: unknown ids only */
        char junk[512];
        for (int i = 0; i < 512; i++) junk[i] = (char)(i * 7 + (i >> 8));
        int n = 0, *ids = NULL;
        CHECK(q35_tokenizer_encode(t, junk, sizeof junk, 1, &ids, &n, &err) == 0);
        CHECK(n > 1 && all_in_range(ids, n, 5));
        free(ids);
        q35_tokenizer_free(t);
    }

    /* sidecars beside good.bin */
    snprintf(side, sizeof side, "%s/good.model", dir);
    struct {
        const char *what;
        const char *bytes;
        size_t n;
        int code;
    } bad_models[] = {
        {"sidecar: empty", "", 0, Q35_ERR_FORMAT},
        {"sidecar: length past end", "\x0a\xff\xff\xff\xff\x0f", 6, Q35_ERR_FORMAT},
        {"sidecar: varint cut off", "\x0a\x02\x0a\x00\x18\x80", 6, Q35_ERR_FORMAT},
        {"sidecar: 11-byte varint", "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
         12, Q35_ERR_FORMAT},
        {"sidecar: group wire type", "\x0b\x0c", 2, Q35_ERR_FORMAT},
        {"sidecar: field number 0", "\x02\x00", 2, Q35_ERR_FORMAT},
        {"sidecar: fixed64 cut off", "\x11\x01\x02", 3, Q35_ERR_FORMAT},
        {"sidecar: normalizer as varint", "\x0a\x00\x18\x01", 4, Q35_ERR_FORMAT},
        {"sidecar: bad inside normalizer", "\x0a\x00\x1a\x02\x18\x80", 6,
         Q35_ERR_FORMAT},
        {"sidecar: no pieces", "\x1a\x02\x18\x00", 4, Q35_ERR_FORMAT},
        {"sidecar: 2 pieces, .bin has 5", "\x0a\x00\x0a\x00", 4, Q35_ERR_FORMAT},
        {"sidecar: nfkc charsmap",
         "\x0a\x00\x0a\x00\x0a\x00\x0a\x00\x0a\x00\x1a\x0e\x0a\x08nmt_nfkc\x12\x02xy",
         26, Q35_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof bad_models / sizeof bad_models[0]; i++) {
        write_file(side, bad_models[i].bytes, bad_models[i].n);
        check_load_fails(path, 5, bad_models[i].code, bad_models[i].what);
        t = NULL;
        q35_tokenizer_load_llama2c(&t, path, 5, &err);
        q35_tokenizer_free(t);
        CHECKF(strstr(err.msg, side), "%s: message should name %s: %s",
               bad_models[i].what, side, err.msg);
    }

    /* a valid sidecar: five pieces, add_dummy_prefix off, extra whitespace
     * removal left at its default (on); unknown fields skipped */
    write_file(side,
               "\x0a\x00\x0a\x00\x0a\x00\x0a\x00\x0a\x00"
               "\x1a\x0e\x0a\x08identity\x18\x00\x30\x01"
               "\x12\x03\x08\x01\x10\x29\x01\x02\x03\x04\x05\x06\x07\x08"
               "\x3d\x01\x02\x03\x04",
               45);
    t = NULL;
    CHECKF(q35_tokenizer_load_llama2c(&t, path, 5, &err) == 0, "%s", err.msg);
    if (t) {
        CHECK(q35_tokenizer_options(t)->add_dummy_prefix == 0);
        CHECK(q35_tokenizer_options(t)->remove_extra_whitespaces == 1);
        int want[] = {4, 3, 4};
        check_enc(t, "  a   a  ", want, 3);
        check_enc(t, "   ", NULL, 0);
        q35_tokenizer_free(t);
    }
    unlink(side);

    /* a .bin with no extension looks for "name.model" */
    snprintf(path, sizeof path, "%s/noext", dir);
    snprintf(side, sizeof side, "%s/noext.model", dir);
    b = good_bin();
    write_file(path, b.d, b.n);
    write_file(side, "\x0a\x00", 2);
    check_load_fails(path, 5, Q35_ERR_FORMAT, "sidecar of a file without extension");
    unlink(side);
    unlink(path);

    const char *names[] = {"empty.bin", "short.bin", "nopieces.bin", "cut.bin",
                           "trunc.bin", "neg.bin",   "huge.bin",     "nan.bin",
                           "good.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    CHECK(rmdir(dir) == 0);
}

/* Every prefix of a real .model and of a real .bin, and randomly damaged
 * copies: errors or successes, never a crash (ASan watches). */
static void test_damaged_files(void) {
    char path[1024], tmp[] = "/tmp/q35_test_tokenizer_XXXXXX", bin[512];
    q35_mapfile mf;
    q35_error err = {0};
    q35_spmodel_info info;
    int rc = q35_mapfile_open(
        &mf, shared_path(path, sizeof path, "models/babyllama105/tok105.model"), &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (rc) return;
    int ok = 0;
    for (uint64_t n = 0; n <= mf.size; n++) {
        uint8_t *copy = malloc(n + 1); /* exactly n bytes for ASan to guard */
        memcpy(copy, mf.data, n);
        ok += q35_spmodel_parse(copy, n, "prefix", &info, &err) == 0;
        free(copy);
    }
    CHECK(q35_spmodel_parse(mf.data, mf.size, path, &info, &err) == 0 &&
          info.n_pieces == 105 && info.add_dummy_prefix &&
          info.remove_extra_whitespaces && strcmp(info.name, "identity") == 0 &&
          info.charsmap_bytes == 0);
    printf("tok105.model: %d of %llu prefixes parse\n", ok,
           (unsigned long long)mf.size + 1);

    /* random byte damage to the .bin (no sidecar beside the copy) */
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(bin, sizeof bin, "%s/tok.bin", tmp);
    q35_mapfile orig;
    rc = q35_mapfile_open(
        &orig, shared_path(path, sizeof path, "models/babyllama105/tok105.bin"), &err);
    CHECKF(rc == 0, "%s", err.msg);
    uint64_t x = 88172645463325252ull; /* xorshift64 */
    int loaded = 0, in_range = 1;
    for (int round = 0; rc == 0 && round < 300; round++) {
        uint8_t *copy = malloc(orig.size);
        memcpy(copy, orig.data, orig.size);
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            copy[x % orig.size] = (uint8_t)(x >> 32);
        }
        size_t n = round % 3 == 0 ? (size_t)((x >> 20) % orig.size) : orig.size;
        write_file(bin, copy, n);
        q35_tokenizer *t = NULL;
        if (q35_tokenizer_load_llama2c(&t, bin, 0, &err) == 0) {
            int m = 0, *ids = NULL;
            loaded++;
            const char *s = "Once upon a time, \xff\x80 there was a dog.";
            if (q35_tokenizer_encode(t, s, strlen(s), 1, &ids, &m, &err) == 0)
                in_range &= all_in_range(ids, m, q35_tokenizer_n_vocab(t));
            char out[64];
            for (int id = -1; id <= q35_tokenizer_n_vocab(t); id++)
                q35_tokenizer_decode(t, 1, id, out, sizeof out);
            free(ids);
            q35_tokenizer_free(t);
        } else {
            CHECKF(strstr(err.msg, bin) != NULL, "message: %s", err.msg);
        }
        free(copy);
    }
    CHECK(in_range);
    printf("damaged tok105.bin: %d of 300 copies load\n", loaded);
    unlink(bin);
    rmdir(tmp);
    if (rc == 0) q35_mapfile_close(&orig);
    q35_mapfile_close(&mf);
}

/* Hostile text through the real tokenizers. */
static void test_hostile_text(void) {
    q35_tokenizer *t = load_shared("models/llama2-tokenizer/tokenizer.bin", 32000);
    q35_tokenizer *c = load_shared("models/babyllama105/tok105.bin", 105);
    if (!t || !c) goto out;
    q35_error err = {0};
    const char text[] = "a\0b\xff\xfe\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82"
                        "\0\0  \x80x\xf0\x9f\x99";
    int n = 0, *ids = NULL;
    CHECK(q35_tokenizer_encode(t, text, sizeof text - 1, 1, &ids, &n, &err) == 0);
    CHECK(n > 10 && all_in_range(ids, n, 32000));
    free(ids);
    CHECK(q35_tokenizer_encode(c, text, sizeof text - 1, 1, &ids, &n, &err) == 0);
    CHECK(n > 3 && all_in_range(ids, n, 105));
    free(ids);
    /* an invalid byte reads as U+FFFD: the same ids as the real character */
    int n2 = 0, *ids2 = NULL;
    CHECK(q35_tokenizer_encode(t, "x\xff", 2, 0, &ids, &n, &err) == 0);
    ids2 = enc(t, "x\xef\xbf\xbd", 0, &n2);
    CHECK(n == n2 && n > 0 && memcmp(ids, ids2, n * sizeof *ids) == 0);
    free(ids);
    free(ids2);
    /* U+2581 reads as a space (sentencepiece cannot tell them apart) */
    ids = enc(t, "a\xe2\x96\x81" "b", 0, &n);
    ids2 = enc(t, "a b", 0, &n2);
    CHECK(n == n2 && memcmp(ids, ids2, n * sizeof *ids) == 0);
    free(ids);
    free(ids2);
    /* empty text; NULL text with length 0 */
    CHECK(q35_tokenizer_encode(t, "", 0, 0, &ids, &n, &err) == 0 && n == 0);
    free(ids);
    CHECK(q35_tokenizer_encode(t, NULL, 0, 1, &ids, &n, &err) == 0 && n == 1 &&
          ids[0] == 1);
    free(ids);
    CHECK(q35_tokenizer_encode(t, NULL, 5, 0, &ids, &n, &err) == Q35_ERR_ARG);
    /* a 100 KB run of one character and of spaces: still fast, in range */
    size_t big = 100000;
    char *s = malloc(big);
    memset(s, 'a', big);
    CHECK(q35_tokenizer_encode(t, s, big, 0, &ids, &n, &err) == 0 &&
          all_in_range(ids, n, 32000) && n > 0 && n < 60000);
    free(ids);
    memset(s, ' ', big);
    CHECK(q35_tokenizer_encode(t, s, big, 0, &ids, &n, &err) == 0 &&
          all_in_range(ids, n, 32000));
    free(ids);
    CHECK(q35_tokenizer_encode(c, s, big, 0, &ids, &n, &err) == 0 && n == 0);
    free(ids);
    free(s);
    /* decode: out of range, tiny buffers */
    char out[16] = "xx";
    CHECK(q35_tokenizer_decode(t, 1, -1, out, sizeof out) == 0 && out[0] == 0);
    CHECK(q35_tokenizer_decode(t, 1, 32000, out, sizeof out) == 0 && out[0] == 0);
    CHECK(q35_tokenizer_decode(t, 1, 1, out, 0) == 0);
    CHECK(q35_tokenizer_decode(t, 1, 1, out, 1) == 0 && out[0] == 0);
    CHECK(q35_tokenizer_piece(t, 32000, NULL) == NULL);
    CHECK(q35_tokenizer_piece_type(t, -3) == 0);
out:
    q35_tokenizer_free(t);
    q35_tokenizer_free(c);
}

/* ---- hand-made vocabularies -------------------------------------------- */

/* Builds a tokenizer from NUL-terminated pieces (types may be NULL). */
static q35_tokenizer *make(int n, const char *const *p, const float *scores,
                           const int32_t *types, int dummy, int fold) {
    uint32_t lens[300];
    for (int i = 0; i < n; i++) lens[i] = (uint32_t)strlen(p[i]);
    q35_tokenizer_opts o = {dummy, fold};
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    int rc = q35_tokenizer_new(&t, n, p, lens, scores, types, -1, -1, -1, &o, &err);
    CHECKF(rc == 0, "q35_tokenizer_new: %s", err.msg);
    return t;
}

static void test_units(void) {
    /* ids:                  0        1          2         3    4    5    6 */
    const char *p[] = {"<unk>", "\n<s>\n", "\n</s>\n", "a", "b", "c", "ab",
                       /* 7     8      9     10 */
                       "ba", "abc", "bc", " a"};
    float tie[] = {0, 0, 0, -1, -1, -1, 5, 5, -9, -9, 1};
    q35_tokenizer *t = make(11, p, tie, NULL, 0, 0);
    if (t) {
        /* "ab" and "ba" score the same: the leftmost pair merges first */
        int w1[] = {6, 3};
        check_enc(t, "aba", w1, 2);
        int w2[] = {7, 4};
        check_enc(t, "bab", w2, 2);
        /* unknown characters collapse into one <unk> */
        int w4[] = {3, 0, 4, 0};
        check_enc(t, "axyzbq", w4, 4);
        CHECK(q35_tokenizer_piece_type(t, 0) == Q35_PIECE_UNKNOWN);
        CHECK(q35_tokenizer_piece_type(t, 1) == Q35_PIECE_CONTROL);
        CHECK(q35_tokenizer_piece_type(t, 3) == Q35_PIECE_NORMAL);
        /* "<s>" in text is not the control piece */
        int n = 0, *ids = enc(t, "\n<s>\n", 0, &n);
        CHECK(n == 1 && ids[0] == 0);
        free(ids);
        q35_tokenizer_free(t);
    }

    /* a merge chain: ab (2) then abc (1), though bc (1.5) scores higher
     * than abc: a b c -> ab c -> abc */
    float chain[] = {0, 0, 0, -1, -1, -1, 2, -9, 1, 1.5f, -9};
    t = make(11, p, chain, NULL, 1, 0);
    if (t) {
        /* with the dummy prefix: ' ' 'a' 'b' 'c': ab (2) first, then abc
         * (1); ' ' alone is unknown */
        int w[] = {0, 8};
        check_enc(t, "abc", w, 2);
        /* decoding: after BOS the leading space goes */
        char out[16];
        CHECK(q35_tokenizer_decode(t, 1, 10, out, sizeof out) == 1 &&
              strcmp(out, "a") == 0);
        CHECK(q35_tokenizer_decode(t, 3, 10, out, sizeof out) == 2 &&
              strcmp(out, " a") == 0);
        CHECK(q35_tokenizer_decode(t, 3, 1, out, sizeof out) == 0);
        CHECK(q35_tokenizer_decode(t, 3, 0, out, sizeof out) == 5 &&
              strcmp(out, " \xe2\x81\x87 ") == 0);
        CHECK(q35_tokenizer_decode(t, 3, 8, out, 3) == 3 && strcmp(out, "ab") == 0); /* truncated */
        q35_tokenizer_free(t);
    }

    /* byte fallback: <unk>, <s>, </s>, 256 bytes, "x" */
    const char *bp[300];
    char names[256][8];
    float bs[300] = {0};
    bp[0] = "<unk>";
    bp[1] = "\n<s>\n";
    bp[2] = "\n</s>\n";
    for (int i = 0; i < 256; i++) {
        snprintf(names[i], sizeof names[i], "<0x%02X>", i);
        bp[3 + i] = names[i];
    }
    bp[259] = "x";
    t = make(260, bp, bs, NULL, 0, 0);
    if (t) {
        /* U+1F642 is F0 9F 99 82 */
        int w[] = {259, 3 + 0xF0, 3 + 0x9F, 3 + 0x99, 3 + 0x82, 259};
        check_enc(t, "x\xf0\x9f\x99\x82x", w, 6);
        char out[4];
        CHECK(q35_tokenizer_decode(t, 1, 3 + 0xF0, out, sizeof out) == 1 &&
              (uint8_t)out[0] == 0xF0);
        CHECK(q35_tokenizer_piece_type(t, 3 + 0x41) == Q35_PIECE_BYTE);
        q35_tokenizer_free(t);
    }
    /* 255 byte pieces (<0x41> replaced by "x"): no byte fallback, one
     * unknown id for the emoji */
    bp[3 + 0x41] = "x";
    t = make(259, bp, bs, NULL, 0, 0);
    if (t) {
        int w[] = {0, 3 + 0x41, 0};
        check_enc(t, "\xf0\x9f\x99\x82x\xf0\x9f\x9a\x80\xf0\x9f\x99\x82", w, 3);
        q35_tokenizer_free(t);
    }

    /* explicit types: UNUSED pieces are merged through then split back;
     * USER_DEFINED pieces are taken whole before merging */
    const char *q[] = {"<unk>", "a", "b", "c", "d", "ab", "abc", "<x>", "a<",
                       "<", "x", ">"};
    float qs[] = {0, -1, -1, -1, -1, 3, 2, 0, 9, -1, -1, -1};
    int32_t qt[] = {2, 1, 1, 1, 1, 5, 1, 4, 1, 1, 1, 1};
    t = make(12, q, qs, qt, 0, 0);
    if (t) {
        int w1[] = {6};
        check_enc(t, "abc", w1, 1);
        int w2[] = {1, 2, 4};
        check_enc(t, "abd", w2, 3);
        int w3[] = {1, 7, 2};
        check_enc(t, "a<x>b", w3, 3);
        int w4[] = {8, 10};
        check_enc(t, "a<x", w4, 2);
        CHECK(q35_tokenizer_bos(t) == -1);
        int n = 0, *ids = NULL;
        q35_error err = {0};
        CHECK(q35_tokenizer_encode(t, "a", 1, 1, &ids, &n, &err) == Q35_ERR_ARG &&
              err.msg[0]);
        q35_tokenizer_free(t);
    }

    /* no unknown piece and no byte fallback: unknown text becomes id 0 */
    const char *r[] = {"x", "a", "b"};
    float rs[] = {0, 0, 0};
    t = make(3, r, rs, NULL, 0, 0);
    if (t) {
        int w[] = {1, 0, 2, 0};
        check_enc(t, "a??b?", w, 4);
        q35_tokenizer_free(t);
    }

    /* bad arguments to q35_tokenizer_new */
    {
        uint32_t lens[2] = {1, 1};
        float nan_s[2] = {0, NAN};
        int32_t bad_t[2] = {1, 9};
        q35_tokenizer_opts o = {1, 0};
        q35_tokenizer *x = NULL;
        q35_error err = {0};
        CHECK(q35_tokenizer_new(&x, 2, r, lens, nan_s, NULL, -1, -1, -1, &o, &err) ==
                  Q35_ERR_ARG && !x && err.msg[0]);
        CHECK(q35_tokenizer_new(&x, 2, r, lens, rs, bad_t, -1, -1, -1, &o, &err) ==
                  Q35_ERR_ARG && !x);
        CHECK(q35_tokenizer_new(&x, 2, r, lens, rs, NULL, 2, -1, -1, &o, &err) ==
                  Q35_ERR_ARG && !x);
        CHECK(q35_tokenizer_new(&x, 0, r, lens, rs, NULL, -1, -1, -1, &o, &err) ==
                  Q35_ERR_ARG && !x);
    }
}

int main(void) {
    test_units();
    test_bad_input();
    test_hostile_text();
    test_damaged_files();
    test_jsonl("reference/sentencepiece/llama2-32000.jsonl",
               "models/llama2-tokenizer/tokenizer.bin", 32000);
    test_jsonl("reference/sentencepiece/tok105.jsonl",
               "models/babyllama105/tok105.bin", 105);
    test_greedy("reference/llama2.c/stories260K_greedy_once_upon_a_time.txt",
                "models/stories260K/tok512.bin", 512);
    test_greedy("reference/llama2.c/stories3M_greedy_once_upon_a_time.txt",
                "models/stories3M/tok4096.bin", 4096);
    test_greedy("reference/llama2.c/babyllama105_greedy_once_upon_a_time.txt",
                "models/babyllama105/tok105.bin", 105);
    test_dev_text();
    test_llama2c_encoder("models/stories260K/tok512.bin", 512, 400);
    test_llama2c_encoder("models/stories3M/tok4096.bin", 4096, 400);
    test_tokens_scored("models/stories260K/tok512.bin", 512,
                       "data/tinystories-dev.txt", 512, 141932);
    test_tokens_scored("models/stories260K/tok512.bin", 512,
                       "data/tinystories-calib.txt", 512, 48614);
    test_tokens_scored("models/stories3M/tok4096.bin", 4096,
                       "data/tinystories-dev.txt", 512, 73240);
    test_tokens_scored("models/babyllama105/tok105.bin", 105,
                       "data/tinystories-calib.txt", 256, 99497);
    TEST_END();
}
