/* test_tokenizer_oracle.c — q35's tokenizers against the libraries people
 * use: Hugging Face's tokenizers (npm `tokenizers`, the Rust library, run
 * by tests/oracle/tok-oracle.js under node) on real tokenizer.json files,
 * and llama.cpp's own test vectors (models/ggml-vocab-*.gguf with .inp and
 * .out) on its vocabulary files.
 *
 * Per tokenizer: the corpus of tok_corpus.h (about 2500 strings) plus text
 * holding its own special tokens, encoded
 *  - plain (no flags) against the oracle without special tokens added or
 *    parsed, and
 *  - with Q35_TOKENIZE_ADD_SPECIAL | PARSE_SPECIAL (q35 tokenize --special)
 *    against the oracle with addSpecialTokens and special tokens parsed;
 * ids must be identical. Decoding: where the oracle gives the text back,
 * q35 must give it back byte for byte; where the oracle's decoded text is
 * valid (no U+FFFD), q35's must equal it; writing a sequence out piece by
 * piece (q35_tokenizer_decode) must give q35_tokenizer_decode_ids' bytes.
 * Strings with invalid UTF-8 reach the oracle as TextDecoder makes them
 * (U+FFFD per maximal subpart), which is how q35 reads them too.
 *
 * The oracle's answers are cached in $Q35_TOK_CACHE (default
 * ~/.cache/q35-tok-oracle), keyed by a hash of the corpus, the file and the
 * script; nothing is committed. Missing oracles are SKIPs, never silent. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/mapfile.h"
#include "harness.h"
#include "tok_corpus.h"
#include "tokenizer/tok_internal.h"

static const char *const TOKENIZERS[] = {"llama3_2", "qwen2_5",    "qwen3",      "mistral_nemo",
                                         "gemma",    "gemma2",     "gemma3",     "gpt2",
                                         "deepseek_v3", "mistral_v1", "mistral_v2", "mistral_v3"};

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int hash_file(const char *path, uint64_t *h) {
    char *d;
    size_t n;
    if (q35_read_file(path, &d, &n, NULL)) return -1;
    *h = fnv(*h, d, n);
    free(d);
    return 0;
}

static void cache_dir(char *out, size_t cap) {
    const char *c = getenv("Q35_TOK_CACHE"), *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (c && *c) snprintf(out, cap, "%s", c);
    else if (x && *x) snprintf(out, cap, "%s/q35-tok-oracle", x);
    else snprintf(out, cap, "%s/.cache/q35-tok-oracle", home ? home : "/tmp");
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "mkdir -p '%.1000s'", out);
    if (system(tmp) != 0) snprintf(out, cap, "/tmp");
}

/* The text the oracle sees: invalid UTF-8 replaced as TextDecoder does. */
static tok_buf sanitized(const corpus_str *s) {
    tok_buf b = {0};
    if (tok_utf8_sanitize(s->s, s->n, &b) || tok_buf_put(&b, "", 0)) abort();
    return b;
}

/* ---- the oracle's answers -------------------------------------------------- */

typedef struct answer {
    int *plain, n_plain, *special, n_special;
    char *decoded, *decoded_special;
} answer;

static int *json_ids(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) v[k++] = (int)e->valuedouble;
    return v;
}

static char *json_str(const cJSON *s) {
    return strdup(cJSON_IsString(s) ? s->valuestring : "\x01(not a string)");
}

/* Runs (or reads the cached) oracle for the strings; NULL after a SKIP or
 * failure. */
static answer *oracle(const char *oracles, const char *name, const char *json,
                      const corpus_str *v, int n) {
    char dir[512], corpus_path[1024], out[1024], cmd[8192], script[1024], cwd[512];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    snprintf(script, sizeof script, "%.500s/tests/oracle/tok-oracle.js", cwd);
    if (!file_exists(script)) {
        CHECKF(0, "tests/oracle/tok-oracle.js not found (run from the repository root)");
        return NULL;
    }
    cache_dir(dir, sizeof dir);
    tok_buf hex = {0};
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < v[i].n; k++) {
            char two[2] = {digits[(uint8_t)v[i].s[k] >> 4], digits[(uint8_t)v[i].s[k] & 15]};
            tok_buf_put(&hex, two, 2);
        }
        tok_buf_put(&hex, "\n", 1);
    }
    uint64_t h = fnv(0xcbf29ce484222325ull, hex.p, hex.n);
    if (hash_file(json, &h) || hash_file(script, &h)) {
        CHECKF(0, "%s: cannot read %s", name, json);
        free(hex.p);
        return NULL;
    }
    snprintf(out, sizeof out, "%.500s/%.40s-%016llx.jsonl", dir, name, (unsigned long long)h);
    if (!file_exists(out)) {
        snprintf(corpus_path, sizeof corpus_path, "%.500s/%.40s-%016llx.hex", dir, name,
                 (unsigned long long)h);
        FILE *f = fopen(corpus_path, "wb");
        int ok = f && fwrite(hex.p, 1, hex.n, f) == hex.n;
        if (f) fclose(f);
        CHECKF(ok, "cannot write %s", corpus_path);
        snprintf(cmd, sizeof cmd,
                 "cd '%.1000s' && NODE_PATH='%.1000s/node_modules' node '%.1000s' '%.1000s' "
                 "'%.1000s' > '%.1000s.tmp' && mv '%.1000s.tmp' '%.1000s'",
                 oracles, oracles, script, json, corpus_path, out, out, out);
        int rc = ok ? system(cmd) : -1;
        unlink(corpus_path);
        CHECKF(rc == 0, "%s: the oracle failed: %s", name, cmd);
        if (rc != 0) {
            free(hex.p);
            return NULL;
        }
    }
    free(hex.p);
    char *text;
    size_t len;
    if (q35_read_file(out, &text, &len, NULL)) {
        CHECKF(0, "%s: cannot read %s", name, out);
        return NULL;
    }
    answer *a = calloc((size_t)n, sizeof *a);
    int k = 0;
    for (char *line = text, *next; k < n && line < text + len; line = next, k++) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : text + len;
        if (nl) *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        a[k].plain = json_ids(cJSON_GetObjectItem(j, "plain"), &a[k].n_plain);
        a[k].special = json_ids(cJSON_GetObjectItem(j, "special"), &a[k].n_special);
        a[k].decoded = json_str(cJSON_GetObjectItem(j, "decoded"));
        a[k].decoded_special = json_str(cJSON_GetObjectItem(j, "decoded_special"));
        cJSON_Delete(j);
    }
    free(text);
    CHECKF(k == n, "%s: the oracle gave %d answers for %d strings (%s)", name, k, n, out);
    if (k != n) {
        for (int i = 0; i < k; i++) free(a[i].plain), free(a[i].special), free(a[i].decoded),
                                    free(a[i].decoded_special);
        free(a);
        return NULL;
    }
    return a;
}

/* ---- comparing ------------------------------------------------------------- */

static void show(const char *label, const int *ids, int n) {
    fprintf(stderr, "    %-7s", label);
    for (int i = 0; i < n && i < 30; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 30 ? " ... (%d)\n" : "\n", n);
}

static int same(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

/* Text around the tokenizer's own special / added tokens. */
static void own_specials(const q35_tokenizer *t, corpus *c) {
    const char *names[48];
    int k = 0, n = q35_tokenizer_n_vocab(t);
    for (int i = 0; i < n && k < 48; i++) {
        int type = q35_tokenizer_piece_type(t, i);
        if ((type == Q35_PIECE_CONTROL || type == Q35_PIECE_USER_DEFINED) &&
            (t->flags[i] & PF_ADDED))
            names[k++] = t->bytes + t->off[i];
    }
    if (k) gen_specials(c, names, k, 60);
}

typedef struct tally {
    int strings, plain_bad, special_bad, back_want, back_bad, dec_want, dec_bad, stream_bad;
} tally;

static void check_one(const q35_tokenizer *t, const char *name, const corpus_str *s,
                      const answer *a, tally *y) {
    q35_error err = {0};
    int *p = NULL, *sp = NULL, np = 0, nsp = 0, shown = y->plain_bad + y->special_bad;
    int rc = q35_tokenizer_encode(t, s->s, s->n, 0, &p, &np, &err);
    int rs = q35_tokenizer_encode(t, s->s, s->n,
                                  Q35_TOKENIZE_ADD_SPECIAL | Q35_TOKENIZE_PARSE_SPECIAL, &sp, &nsp,
                                  &err);
    y->strings++;
    int pbad = rc || !same(p, np, a->plain, a->n_plain);
    int sbad = rs || !same(sp, nsp, a->special, a->n_special);
    y->plain_bad += pbad;
    y->special_bad += sbad;
    if ((pbad || sbad) && shown < 4) {
        fprintf(stderr, "  %s [%s] %s \"%.120s\"\n", name, s->kind, pbad ? "plain" : "special",
                s->s);
        show("q35", pbad ? p : sp, pbad ? np : nsp);
        show("oracle", pbad ? a->plain : a->special, pbad ? a->n_plain : a->n_special);
    }
    tok_buf text = sanitized(s);
    for (int mode = 0; mode < 2; mode++) {
        const int *ids = mode ? sp : p;
        int n = mode ? nsp : np;
        const char *want = mode ? a->decoded_special : a->decoded;
        char *d = NULL;
        size_t dn = 0;
        if (q35_tokenizer_decode_ids(t, ids, n, Q35_DECODE_SPECIAL, &d, &dn, &err)) {
            y->dec_bad++;
            continue;
        }
        if (!mode && strcmp(want, text.p) == 0 && strlen(text.p) == text.n) {
            y->back_want++;
            y->back_bad += dn != text.n || memcmp(d, text.p, dn) != 0;
        }
        if (!strstr(want, "\xef\xbf\xbd")) {
            y->dec_want++;
            int bad = dn != strlen(want) || memcmp(d, want, dn) != 0;
            y->dec_bad += bad;
            if (bad && y->dec_bad <= 3)
                fprintf(stderr, "  %s [%s] decoded \"%.100s\", oracle \"%.100s\"\n", name, s->kind,
                        d, want);
        }
        free(d);
    }
    /* piece by piece */
    char *all = NULL;
    size_t an = 0;
    tok_buf streamed = {0};
    tok_buf_put(&streamed, "", 0);
    for (int i = 0; i < np; i++) {
        char piece[512];
        size_t k = q35_tokenizer_decode(t, i ? p[i - 1] : -1, p[i], piece, sizeof piece);
        tok_buf_put(&streamed, piece, k < sizeof piece ? k : sizeof piece - 1);
    }
    if (q35_tokenizer_decode_ids(t, p, np, 0, &all, &an, &err) || an != streamed.n ||
        memcmp(all, streamed.p, an) != 0)
        y->stream_bad++;
    free(all);
    free(streamed.p);
    free(text.p);
    free(p);
    free(sp);
}

static void check_tokenizer(const char *oracles, const char *name, const corpus *base) {
    char dir[1024], json[1100];
    snprintf(dir, sizeof dir, "%.900s/tok/%.40s", oracles, name);
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);
    if (!file_exists(json)) {
        SKIP("oracle tok/%.20s missing (scripts/fetch-mistral-tokenizers.sh, setup.sh)", name);
        return;
    }
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    int rc = q35_tokenizer_load_hf(&t, dir, &err);
    CHECKF(rc == 0, "%s: %s", name, err.msg);
    if (rc) return;
    corpus own = {0};
    own.rng = 0x6f776e ^ fnv(0xcbf29ce484222325ull, name, strlen(name));
    own_specials(t, &own);
    int n = base->n + own.n;
    corpus_str *all = malloc((size_t)n * sizeof *all);
    memcpy(all, base->v, (size_t)base->n * sizeof *all);
    memcpy(all + base->n, own.v, (size_t)own.n * sizeof *all);
    answer *a = oracle(oracles, name, json, all, n);
    if (a) {
        tally y = {0};
        for (int i = 0; i < n; i++) check_one(t, name, &all[i], &a[i], &y);
        printf("%-12s %4d strings: ids %d + %d mismatches (plain + special); text back %d/%d; "
               "decoded = oracle's %d/%d; streaming %d bad\n",
               name, y.strings, y.plain_bad, y.special_bad, y.back_want - y.back_bad, y.back_want,
               y.dec_want - y.dec_bad, y.dec_want, y.stream_bad);
        CHECKF(y.strings >= 2000 && y.plain_bad == 0 && y.special_bad == 0 && y.back_bad == 0 &&
                   y.dec_bad == 0 && y.stream_bad == 0,
               "%s: %d strings, %d + %d id mismatches, %d not given back, %d decodes differ, %d "
               "streams differ",
               name, y.strings, y.plain_bad, y.special_bad, y.back_bad, y.dec_bad, y.stream_bad);
        for (int i = 0; i < n; i++) free(a[i].plain), free(a[i].special), free(a[i].decoded),
                                    free(a[i].decoded_special);
        free(a);
    }
    free(all);
    corpus_free(&own);
    q35_tokenizer_free(t);
}

/* ---- llama.cpp's vectors --------------------------------------------------- */

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_vectors(const char *models, const char *file) {
    char gguf[1200], inp[1300], out[1300];
    snprintf(gguf, sizeof gguf, "%.900s/%.200s", models, file);
    snprintf(inp, sizeof inp, "%s.inp", gguf);
    snprintf(out, sizeof out, "%s.out", gguf);
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    int rc = q35_tokenizer_load(&t, gguf, &err);
    if (!file_exists(inp)) { /* no vectors: it loads, or says why not */
        printf("%-34s no vectors; %s\n", file, rc ? err.msg : "loads");
        CHECKF(rc == 0 || rc == Q35_ERR_UNSUPPORTED, "%s: %s", file, err.msg);
        q35_tokenizer_free(t);
        return;
    }
    CHECKF(rc == 0, "%s: %s", file, err.msg);
    char *in_text = NULL, *out_text = NULL;
    size_t in_len, out_len;
    if (rc || q35_read_file(inp, &in_text, &in_len, NULL) ||
        q35_read_file(out, &out_text, &out_len, NULL)) {
        printf("%-34s does not load: %s\n", file, err.msg);
        q35_tokenizer_free(t);
        free(in_text);
        return;
    }
    /* as llama.cpp's test-tokenizer-0 reads them */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int tests = 0, bad = 0;
    size_t pos = 0;
    char *line = out_text;
    while (pos < in_len) {
        const char *next = NULL;
        for (size_t k = pos; k + sizeof sep - 1 <= in_len; k++)
            if (memcmp(in_text + k, sep, sizeof sep - 1) == 0) {
                next = in_text + k;
                break;
            }
        size_t n = next ? (size_t)(next - in_text) - pos : in_len - pos;
        char *nl = line ? strchr(line, '\n') : NULL;
        if (nl) *nl = '\0';
        int want[4096], n_want = 0;
        for (char *s = line ? line : "", *e; n_want < 4096; s = e) {
            long v = strtol(s, &e, 10);
            if (e == s) break;
            want[n_want++] = (int)v;
        }
        line = nl ? nl + 1 : NULL;
        int *ids = NULL, n_ids = 0;
        rc = q35_tokenizer_encode(t, in_text + pos, n, 0, &ids, &n_ids, &err);
        tests++;
        if (rc || !same(ids, n_ids, want, n_want)) {
            if (bad++ < 3) {
                fprintf(stderr, "  %s: \"%.*s\"\n", file, (int)(n < 80 ? n : 80), in_text + pos);
                show("q35", ids, n_ids);
                show("llama", want, n_want);
            }
        }
        free(ids);
        pos = next ? pos + n + sizeof sep - 1 : in_len;
    }
    printf("%-34s %d vectors, %d mismatches\n", file, tests, bad);
    CHECKF(tests > 10 && bad == 0, "%s: %d of %d vectors differ", file, bad, tests);
    free(in_text);
    free(out_text);
    q35_tokenizer_free(t);
}

static void llama_cpp_vectors(const char *oracles) {
    char models[1024];
    snprintf(models, sizeof models, "%.900s/llama.cpp/models", oracles);
    DIR *d = opendir(models);
    if (!d) {
        SKIP("llama.cpp's models/ missing from the oracles (../shared/oracles/setup.sh)");
        return;
    }
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "ggml-vocab-", 11) == 0 && l > 5 && strcmp(e->d_name + l - 5, ".gguf") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    CHECKF(n > 10, "%s: %d vocabulary files", models, n);
    for (int i = 0; i < n; i++) {
        check_vectors(models, names[i]);
        free(names[i]);
    }
}

int main(void) {
    const char *oracles = oracles_dir();
    if (!oracles) {
        SKIP("no oracles (set Q35_ORACLES; ../shared/oracles/setup.sh fetches them)");
        TEST_END();
    }
    llama_cpp_vectors(oracles);
    if (system("node --version > /dev/null 2>&1") != 0) {
        SKIP("node is not installed: the tokenizers oracle cannot run");
        TEST_END();
    }
    char path[1024];
    char *dev = NULL;
    size_t dev_len = 0;
    if (q35_read_file(shared_path(path, sizeof path, "data/tinystories-dev.txt"), &dev, &dev_len,
                      NULL))
        SKIP("../shared/data/tinystories-dev.txt missing: the corpus has no dev text");
    corpus base = {0};
    corpus_build(&base, dev, dev_len);
    printf("corpus: %d strings\n", base.n);
    for (size_t i = 0; i < sizeof TOKENIZERS / sizeof TOKENIZERS[0]; i++)
        check_tokenizer(oracles, TOKENIZERS[i], &base);
    corpus_free(&base);
    free(dev);
    TEST_END();
}
