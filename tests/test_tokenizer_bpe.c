/* test_tokenizer_bpe.c — BPE tokenizers (tokenizer.json, GGUF gpt2) on
 * hand-made files: merges, byte-level pieces, special tokens with and
 * without parsing, what ADD_SPECIAL adds, exact decoding of characters
 * split over tokens, the end-of-generation set; bad input (merges naming
 * unknown tokens, duplicate or missing ids, a pre-tokenizer q35 does not
 * know, a regex that does not compile) through the library and through
 * `q35 tokenize`, each one line and a non-zero exit; normalizers and
 * pre-tokenizers that grow text without bound, stopped with an error; `q35 tokenize` itself;
 * GGUF written from a tokenizer and read back; the special ids and
 * end-of-generation sets of real files (oracles). Run from the repository
 * root. With Q35_FUZZ_SEEDS=DIR set, also writes byte-level seed files
 * under DIR/fuzz_tokenizer_json. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

#include "clirun.h"

/* ---- a tiny byte-level tokenizer ------------------------------------------
 * The 256 single-byte pieces in GPT-2's alphabet (ids 0..255), then merged
 * pieces, then added tokens. */

static void cp_utf8(uint32_t cp, char *out) {
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xc0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3f)), out[2] = 0;
}

/* GPT-2's character for byte b (as tokenizers' bytes_char). */
static uint32_t byte_cp(int b) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
    if (printable) return (uint32_t)b;
    uint32_t k = 0;
    for (int x = 0; x < b; x++) {
        int p = (x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae);
        k += !p;
    }
    return 256 + k;
}

/* JSON-escaped spelling of byte b's character. */
static void byte_json(int b, char *out) {
    char u[4];
    cp_utf8(byte_cp(b), u);
    if (u[0] == '"' || u[0] == '\\') sprintf(out, "\\%c", u[0]);
    else strcpy(out, u);
}

/* merges: "Ġ t", "h e", "Ġt he", "ð Ł" (the first two bytes of an emoji) */
static char *byte_level_json(const char *pre, const char *extra_merge, const char *added) {
    static char buf[65536];
    int k = 0;
    k += sprintf(buf + k, "{\"version\":\"1.0\",\"added_tokens\":[%s],", added);
    k += sprintf(buf + k, "\"normalizer\":null,\"pre_tokenizer\":%s,", pre);
    k += sprintf(buf + k,
                 "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                 "{\"id\":\"<|bos|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
                 "\"special_tokens\":{\"<|bos|>\":{\"id\":\"<|bos|>\",\"ids\":[262],\"tokens\":"
                 "[\"<|bos|>\"]}}},");
    k += sprintf(buf + k, "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        char s[8];
        byte_json(b, s);
        k += sprintf(buf + k, "\"%s\":%d,", s, b);
    }
    k += sprintf(buf + k, "\"\xc4\xa0t\":256,\"he\":257,\"\xc4\xa0the\":258,\"\xc3\xb0\xc5\x81\":259,"
                          "\"\xc4\xa0th\":260},\"merges\":[\"\xc4\xa0 t\",\"h e\",\"\xc4\xa0t he\","
                          "\"\xc3\xb0 \xc5\x81\"%s]}}", extra_merge);
    return buf;
}

static const char GPT2_PRE[] =
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";
static const char ADDED[] =
    "{\"id\":261,\"content\":\"<|end|>\",\"special\":true},"
    "{\"id\":262,\"content\":\"<|bos|>\",\"special\":true},"
    "{\"id\":263,\"content\":\"<tool>\",\"special\":false}";

static q35_tokenizer *from_json(const char *json, int want_rc, const char *what) {
    q35_tokenizer *t = NULL;
    q35_error err = {0};
    int rc = q35_tokenizer_from_json(&t, json, strlen(json), "tiny.json", NULL, 0, NULL, &err);
    CHECKF(rc == want_rc, "%s: rc %d, want %d: %s", what, rc, want_rc, err.msg);
    if (rc)
        CHECKF(err.msg[0] && !strchr(err.msg, '\n') && strstr(err.msg, "tiny.json"),
               "%s: message \"%s\" is not one line naming the file", what, err.msg);
    return t;
}

static int ids_are(const q35_tokenizer *t, const char *s, unsigned flags, const int *want, int n) {
    int *ids = NULL, k = 0;
    q35_error err = {0};
    int ok = q35_tokenizer_encode(t, s, strlen(s), flags, &ids, &k, &err) == 0 && k == n &&
             (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "  \"%s\" flags %u:", s, flags);
        for (int i = 0; i < k; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static void test_byte_level(void) {
    q35_tokenizer *t = from_json(byte_level_json(GPT2_PRE, "", ADDED), 0, "tiny byte-level");
    if (!t) return;
    CHECK(q35_tokenizer_n_vocab(t) == 264);
    CHECK(strcmp(q35_tokenizer_kind(t), "byte-level BPE") == 0);
    /* "the the": 't' 'h' 'e' -> (h e) -> no (t he) merge; " the": Ġt + he -> Ġthe */
    CHECK(ids_are(t, "the the", 0, (const int[]){'t', 257, 258}, 3));
    /* special tokens: text unless parsed; non-special added tokens always */
    CHECK(ids_are(t, "<|end|>", 0, (const int[]){'<', '|', 'e', 'n', 'd', '|', '>'}, 7));
    CHECK(ids_are(t, "<|end|>", Q35_TOKENIZE_PARSE_SPECIAL, (const int[]){261}, 1));
    CHECK(ids_are(t, "a<tool>b", 0, (const int[]){'a', 263, 'b'}, 3));
    /* ADD_SPECIAL: the template's BOS; also for empty text */
    CHECK(ids_are(t, "", Q35_TOKENIZE_ADD_SPECIAL, (const int[]){262}, 1));
    CHECK(ids_are(t, "", 0, NULL, 0));
    /* no tokenizer_config.json: BOS is the template's first special token */
    CHECK(q35_tokenizer_bos(t) == 262 && q35_tokenizer_add_bos(t) == 1);
    /* invalid UTF-8: one U+FFFD per maximal subpart (EF BF BD) */
    CHECK(ids_are(t, "\xe2\x82x", 0, (const int[]){0xef, 0xbf, 0xbd, 'x'}, 4));

    /* an emoji split over tokens: ð+Ł merged (259), then two single bytes */
    const char emoji[] = "\xf0\x9f\x98\x80";
    int *ids = NULL, n = 0;
    q35_error err = {0};
    CHECK(q35_tokenizer_encode(t, emoji, 4, 0, &ids, &n, &err) == 0 && n == 3 && ids[0] == 259);
    char *text = NULL;
    size_t len = 0;
    CHECK(q35_tokenizer_decode_ids(t, ids, n, 0, &text, &len, &err) == 0 && len == 4 &&
          memcmp(text, emoji, 4) == 0);
    free(text);
    /* piece by piece: the first piece is two bytes of the character */
    char piece[16];
    CHECK(q35_tokenizer_decode(t, -1, ids[0], piece, sizeof piece) == 2 &&
          memcmp(piece, "\xf0\x9f", 2) == 0);
    CHECK(q35_tokenizer_decode(t, ids[0], ids[1], piece, sizeof piece) == 1 &&
          (uint8_t)piece[0] == 0x98);
    free(ids);
    /* the NUL byte decodes as a byte */
    int nul = 0;
    CHECK(q35_tokenizer_decode_ids(t, &nul, 1, 0, &text, &len, NULL) == 0 && len == 1 &&
          text[0] == 0);
    free(text);
    /* special tokens: nothing, or their text when asked */
    int sp[] = {262, 'a', 261};
    CHECK(q35_tokenizer_decode_ids(t, sp, 3, 0, &text, &len, NULL) == 0 && len == 1);
    free(text);
    CHECK(q35_tokenizer_decode_ids(t, sp, 3, Q35_DECODE_SPECIAL, &text, &len, NULL) == 0 &&
          strcmp(text, "<|bos|>a<|end|>") == 0);
    free(text);
    /* out of range: one line naming the id; err may be NULL */
    int bad[] = {1, 264};
    CHECK(q35_tokenizer_decode_ids(t, bad, 2, 0, &text, &len, &err) == Q35_ERR_ARG && !text &&
          strstr(err.msg, "264") && !strchr(err.msg, '\n'));
    CHECK(q35_tokenizer_decode_ids(t, bad, 2, 0, &text, &len, NULL) == Q35_ERR_ARG);
    CHECK(q35_tokenizer_decode(t, -1, 264, piece, sizeof piece) == 0 && piece[0] == 0);
    CHECK(q35_tokenizer_encode(t, NULL, 3, 0, &ids, &n, NULL) == Q35_ERR_ARG);
    free(ids);
    /* end of generation: <|end|> by its spelling */
    CHECK(q35_tokenizer_is_eog(t, 261) && !q35_tokenizer_is_eog(t, 262) && q35_tokenizer_eot(t) == 261);
    q35_tokenizer_free(t);

    /* ignore_merges: a pre-token that is a piece is taken whole */
    char *j = byte_level_json(GPT2_PRE, "", ADDED);
    char *m = strstr(j, "\"model\":{\"type\":\"BPE\",");
    char with[70000];
    snprintf(with, sizeof with, "%.*s\"model\":{\"type\":\"BPE\",\"ignore_merges\":true,%s",
             (int)(m - j), j, m + strlen("\"model\":{\"type\":\"BPE\","));
    t = from_json(with, 0, "ignore_merges");
    /* " th": Ġ t h -> (Ġ t) -> Ġt h (no merge); whole: Ġth is piece 260 */
    CHECK(t && ids_are(t, " th", 0, (const int[]){260}, 1));
    q35_tokenizer_free(t);
}

/* ---- bad tokenizer.json --------------------------------------------------- */

static void test_bad_json(void) {
    struct {
        const char *what, *pre, *merge, *added, *mention;
        int rc;
    } cases[] = {
        {"merge naming an unknown token", GPT2_PRE, ",\"zz q\"", ADDED, "not in the vocabulary",
         Q35_ERR_FORMAT},
        {"two ids for one id", GPT2_PRE, "", "{\"id\":257,\"content\":\"<x>\",\"special\":true}",
         "id 257", Q35_ERR_FORMAT},
        {"a hole in the ids", GPT2_PRE, "", "{\"id\":262,\"content\":\"<x>\",\"special\":true}",
         "outside 0..261", Q35_ERR_FORMAT},
        {"one spelling twice", GPT2_PRE, "", "{\"id\":261,\"content\":\"he\",\"special\":true}",
         "has ids", Q35_ERR_FORMAT},
        {"unknown pre-tokenizer", "{\"type\":\"UnicodeScripts\"}", "", ADDED, "UnicodeScripts",
         Q35_ERR_UNSUPPORTED},
        {"unknown pre-tokenizer in a Sequence",
         "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Punctuation\"}]}", "", ADDED,
         "Punctuation", Q35_ERR_UNSUPPORTED},
        {"regex that does not compile",
         "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
         "\"(\\\\p{L}+\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
         "\"add_prefix_space\":false,\"use_regex\":false}]}",
         "", ADDED, "does not compile", Q35_ERR_FORMAT},
        {"unknown split behaviour",
         "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\",\"invert\":false}",
         "", ADDED, "behavior", Q35_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *j = byte_level_json(cases[i].pre, cases[i].merge, cases[i].added);
        q35_tokenizer *t = NULL;
        q35_error err = {0};
        int rc = q35_tokenizer_from_json(&t, j, strlen(j), "bad.json", NULL, 0, NULL, &err);
        CHECKF(rc == cases[i].rc && !t && strstr(err.msg, cases[i].mention) &&
                   strstr(err.msg, "bad.json") && !strchr(err.msg, '\n'),
               "%s: rc %d, \"%s\"", cases[i].what, rc, err.msg);
        /* and through q35 tokenize: one line, exit status 1 */
        char name[32];
        snprintf(name, sizeof name, "bad%zu.json", i);
        const char *path = fixture(name, j, strlen(j));
        expect_error(cases[i].what, cases[i].mention,
                     (const char *[]){"tokenize", "--tokenizer", path, "-p", "x", NULL});
        printf("  %-40s -> %s\n", cases[i].what, err.msg);
    }
}

/* ---- text that steps grow without bound ------------------------------------
 * A Sequence of steps each doubling the spaces would grow "a b" to 2^24
 * bytes; a normalized or pre-tokenized stretch stops at 64 times its text
 * plus 64 KiB (CI's fuzzer found the normalizer case as an out-of-memory
 * kill). */

/* byte_level_json with "normalizer":null replaced by norm. */
static char *with_normalizer(const char *json, const char *norm) {
    static char buf[70000];
    const char *at = strstr(json, "\"normalizer\":null");
    snprintf(buf, sizeof buf, "%.*s\"normalizer\":%s%s", (int)(at - json), json, norm,
             at + strlen("\"normalizer\":null"));
    return buf;
}

/* A Sequence of 24 copies of step (a JSON object) under key. */
static char *doubling(const char *type, const char *key, const char *step) {
    static char buf[4096];
    int k = sprintf(buf, "{\"type\":\"%s\",\"%s\":[", type, key);
    for (int i = 0; i < 24; i++) k += sprintf(buf + k, "%s%s", i ? "," : "", step);
    sprintf(buf + k, "]}");
    return buf;
}

static void expect_encode_fails(const q35_tokenizer *t, const char *what, const char *text) {
    int *ids = NULL, n = 0;
    q35_error err = {0};
    int rc = q35_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &err);
    CHECKF(rc == Q35_ERR_FORMAT && !ids && strstr(err.msg, "64 times") && !strchr(err.msg, '\n'),
           "%s: \"%s\" gives rc %d, \"%s\"", what, text, rc, err.msg);
    free(ids);
    printf("  %-40s -> %s\n", what, err.msg);
}

static void test_runaway_growth(void) {
    static const char twice[] =
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"  \"}";
    const char *norm = doubling("Sequence", "normalizers", twice);
    q35_tokenizer *t = from_json(with_normalizer(byte_level_json(GPT2_PRE, "", ADDED), norm), 0,
                                 "doubling normalizer");
    if (t) {
        CHECK(ids_are(t, "the", 0, (const int[]){116, 257}, 2)); /* no space: no growth */
        expect_encode_fails(t, "normalizer doubling spaces 24 times", "a b");
        q35_tokenizer_free(t);
    }
    /* an added token the normalizer sees (special false: normalized) */
    const char *added = "{\"id\":261,\"content\":\"<|end|>\",\"special\":true},"
                        "{\"id\":262,\"content\":\"<|bos|>\",\"special\":true},"
                        "{\"id\":263,\"content\":\"<to ol>\",\"special\":false}";
    q35_tokenizer *bad = NULL;
    q35_error err = {0};
    const char *j = with_normalizer(byte_level_json(GPT2_PRE, "", added), norm);
    int rc = q35_tokenizer_from_json(&bad, j, strlen(j), "grow.json", NULL, 0, NULL, &err);
    CHECKF(rc == Q35_ERR_FORMAT && !bad && strstr(err.msg, "grow.json") &&
               strstr(err.msg, "added token") && !strchr(err.msg, '\n'),
           "normalizer growing an added token: rc %d, \"%s\"", rc, err.msg);
    printf("  %-40s -> %s\n", "normalizer growing an added token", err.msg);

    static const char meta[] = "{\"type\":\"Metaspace\",\"replacement\":\"  \","
                               "\"prepend_scheme\":\"never\",\"split\":false}";
    t = from_json(byte_level_json(doubling("Sequence", "pretokenizers", meta), "", ADDED), 0,
                  "doubling Metaspace");
    if (t) {
        CHECK(ids_are(t, "the", 0, (const int[]){116, 257}, 2));
        expect_encode_fails(t, "Metaspace doubling spaces 24 times", "a b");
        q35_tokenizer_free(t);
    }
}

/* ---- GGUF vocabularies ------------------------------------------------------ */

/* A vocabulary-only GGUF: model gpt2, the given tokens (byte-level
 * spellings), merges, pre (NULL: none). */
static int write_vocab(const char *path, const char *const *tokens, int n, const char *const *merges,
                       int n_merges, const char *pre, q35_error *err) {
    q35_gguf_writer *wr;
    uint64_t lens[300], mlens[16];
    for (int i = 0; i < n; i++) lens[i] = strlen(tokens[i]);
    for (int i = 0; i < n_merges; i++) mlens[i] = strlen(merges[i]);
    int rc = q35_gguf_writer_new(&wr, err);
    if (!rc) rc = q35_gguf_writer_set_str(wr, "general.architecture", "whatever", err);
    if (!rc) rc = q35_gguf_writer_set_str(wr, "tokenizer.ggml.model", "gpt2", err);
    if (!rc && pre) rc = q35_gguf_writer_set_str(wr, "tokenizer.ggml.pre", pre, err);
    if (!rc) rc = q35_gguf_writer_set_array(wr, "tokenizer.ggml.tokens", Q35_GGUF_STRING, tokens, lens, (uint64_t)n, err);
    if (!rc) rc = q35_gguf_writer_set_array(wr, "tokenizer.ggml.merges", Q35_GGUF_STRING, merges, mlens, (uint64_t)n_merges, err);
    if (!rc) rc = q35_gguf_writer_write(wr, path, err);
    q35_gguf_writer_free(wr);
    return rc;
}

static void test_gguf_vocab(void) {
    static char spell[256][4];
    const char *tokens[300];
    for (int b = 0; b < 256; b++) {
        cp_utf8(byte_cp(b), spell[b]);
        tokens[b] = spell[b];
    }
    tokens[256] = "he";
    tokens[257] = "\xc4\xa0t";
    const char *merges[] = {"h e", "\xc4\xa0 t"};
    q35_error err = {0};
    char *good = fixture("good.gguf", "", 0);
    CHECKF(write_vocab(good, tokens, 258, merges, 2, "gpt-2", &err) == 0, "%s", err.msg);
    q35_tokenizer *t = NULL;
    CHECKF(q35_tokenizer_load(&t, good, &err) == 0 && t, "%s", err.msg);
    CHECK(t && ids_are(t, "he the", 0, (const int[]){256, 257, 256}, 3));
    q35_tokenizer_free(t);
    /* q35 tokenize reads it, whatever general.architecture says */
    result r = run((const char *[]){"tokenize", "--tokenizer", good, "-p", "he the", NULL});
    CHECKF(r.status == 0 && strcmp(r.out, "[256,257,256]\n") == 0, "tokenize: %s %s", r.out, r.err);
    free_result(&r);

    struct {
        const char *what, *mention, *pre;
        int n_tokens, dup;
        const char *merge;
    } cases[] = {
        {"GGUF merge naming an unknown token", "not in the vocabulary", "gpt-2", 258, 0, "h q"},
        {"GGUF token repeated", "repeats token", "gpt-2", 258, 1, NULL},
        {"GGUF pre-tokenizer q35 does not know", "no-such-pre", "no-such-pre", 258, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *tk[300], *mg[2] = {merges[0], cases[i].merge ? cases[i].merge : merges[1]};
        memcpy(tk, tokens, sizeof tk);
        if (cases[i].dup) tk[257] = "he";
        char name[32];
        snprintf(name, sizeof name, "bad%zu.gguf", i);
        char *path = fixture(name, "", 0);
        CHECK(write_vocab(path, tk, cases[i].n_tokens, mg, 2, cases[i].pre, &err) == 0);
        q35_tokenizer *x = NULL;
        int rc = q35_tokenizer_load(&x, path, &err);
        CHECKF(rc != 0 && !x && strstr(err.msg, cases[i].mention) && strstr(err.msg, path),
               "%s: rc %d, %s", cases[i].what, rc, err.msg);
        expect_error(cases[i].what, cases[i].mention,
                     (const char *[]){"tokenize", "--tokenizer", path, "-p", "x", NULL});
        printf("  %-40s -> %s\n", cases[i].what, err.msg);
    }
    /* a GGUF without a tokenizer, a missing file, a folder without one */
    expect_error("GGUF without a tokenizer", "no tokenizer",
                 (const char *[]){"tokenize", "--tokenizer", fixture("none.gguf", "GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24), "-p", "x", NULL});
    expect_error("missing tokenizer", "nope.json",
                 (const char *[]){"tokenize", "--tokenizer", "nope.json", "-p", "x", NULL});
    expect_error("folder without tokenizer.json", "tokenizer.json",
                 (const char *[]){"tokenize", "--tokenizer", tmpdir, "-p", "x", NULL});
}

/* ---- q35 tokenize ------------------------------------------------------------ */

static void test_cli(void) {
    char tok[1024];
    shared_path(tok, sizeof tok, "models/stories260K/tok512.bin");
    result r = run((const char *[]){"tokenize", "--tokenizer", tok, "-p", "Once upon a time", NULL});
    CHECKF(r.status == 0 && r.out[0] == '[' && strstr(r.out, "]\n"), "tokenize -p: %s %s", r.out, r.err);
    char plain[256];
    snprintf(plain, sizeof plain, "%s", r.out);
    free_result(&r);
    /* --special adds BOS (1) for a llama2.c tokenizer */
    r = run((const char *[]){"tokenize", "--tokenizer", tok, "--special", "-p", "Once upon a time", NULL});
    CHECKF(r.status == 0 && strncmp(r.out, "[1,", 3) == 0 && strcmp(r.out + 3, plain + 1) == 0,
           "tokenize --special: %s", r.out);
    free_result(&r);
    /* --decode turns the array back into the text */
    plain[strlen(plain) - 1] = '\0';
    r = run((const char *[]){"tokenize", "--tokenizer", tok, "--decode", "-p", plain, NULL});
    CHECKF(r.status == 0 && strcmp(r.out, "\"Once upon a time\"\n") == 0, "decode: %s %s", r.out, r.err);
    free_result(&r);
    /* --jsonl both ways; escapes, \u0000 and an empty string */
    const char lines[] = "\"Once upon a time\"\n\"tab\\there \\\"q\\\" \\u0041\"\n\"\"\n";
    char *in = fixture("in.jsonl", lines, sizeof lines - 1);
    r = run_input((const char *[]){"tokenize", "--tokenizer", tok, "--jsonl", NULL}, in);
    CHECKF(r.status == 0, "jsonl: %s", r.err);
    char *ids = fixture("ids.jsonl", r.out, strlen(r.out));
    int n_lines = 0;
    for (const char *p = r.out; *p; p++) n_lines += *p == '\n';
    CHECKF(n_lines == 3 && strstr(r.out, "\n[]\n"), "jsonl: %s", r.out);
    free_result(&r);
    r = run_input((const char *[]){"tokenize", "--tokenizer", tok, "--jsonl", "--decode", NULL}, ids);
    CHECKF(r.status == 0 && strcmp(r.out, "\"Once upon a time\"\n\"tab\\there \\\"q\\\" A\"\n\"\"\n") == 0,
           "jsonl decode: %s %s", r.out, r.err);
    free_result(&r);
    /* bad input: one line each */
    char *bad = fixture("bad.jsonl", "\"ok\"\nnot json\n", 14);
    r = run_input((const char *[]){"tokenize", "--tokenizer", tok, "--jsonl", NULL}, bad);
    CHECKF(r.status == 1 && strstr(r.err, "stdin line 2: not a JSON string"), "bad line: %s", r.err);
    free_result(&r);
    expect_error("an id out of range", "9999",
                 (const char *[]){"tokenize", "--tokenizer", tok, "--decode", "-p", "[1, 9999]", NULL});
    expect_error("an id past int", "JSON array",
                 (const char *[]){"tokenize", "--tokenizer", tok, "--decode", "-p", "[1e20]", NULL});
    expect_error("ids that are not an array", "JSON array",
                 (const char *[]){"tokenize", "--tokenizer", tok, "--decode", "-p", "{\"a\":1}", NULL});
    expect_error("no tokenizer", "--tokenizer", (const char *[]){"tokenize", "-p", "x", NULL});
    expect_error("unknown flag", "--nope", (const char *[]){"tokenize", "--tokenizer", tok, "--nope", NULL});
    expect_error("-p and -f", "-p and -f",
                 (const char *[]){"tokenize", "--tokenizer", tok, "-p", "x", "-f", in, NULL});
}

/* ---- GGUF written from a tokenizer and read back ----------------------------- */

static void round_trip(const char *name, const char *const *texts, int n) {
    const char *o = oracles_dir();
    char dir[1024];
    if (!o) {
        SKIP("no oracles: the GGUF round trip of %s", name);
        return;
    }
    snprintf(dir, sizeof dir, "%.900s/tok/%s", o, name);
    q35_tokenizer *t = NULL, *back = NULL;
    q35_error err = {0};
    if (q35_tokenizer_load_hf(&t, dir, &err)) {
        SKIP("%.60s", err.msg);
        return;
    }
    q35_gguf_writer *wr = NULL;
    char *path = fixture("round.gguf", "", 0);
    int rc = q35_gguf_writer_new(&wr, &err);
    if (!rc) rc = q35_tokenizer_gguf_keys(t, wr, &err);
    if (!rc) rc = q35_gguf_writer_write(wr, path, &err);
    q35_gguf_writer_free(wr);
    CHECKF(rc == 0, "%s: writing GGUF: %s", name, err.msg);
    if (!rc) rc = q35_tokenizer_load_gguf(&back, path, &err);
    CHECKF(rc == 0 && back, "%s: reading the GGUF back: %s", name, err.msg);
    int differ = 0;
    for (int i = 0; back && i < n; i++) {
        int *a = NULL, *b = NULL, na = 0, nb = 0;
        q35_tokenizer_encode(t, texts[i], strlen(texts[i]), 0, &a, &na, NULL);
        q35_tokenizer_encode(back, texts[i], strlen(texts[i]), 0, &b, &nb, NULL);
        differ += na != nb || (na && memcmp(a, b, (size_t)na * sizeof *a));
        free(a);
        free(b);
    }
    CHECKF(back && differ == 0, "%s: %d of %d texts encode differently after the round trip", name,
           differ, n);
    CHECKF(back && q35_tokenizer_bos(back) == q35_tokenizer_bos(t) &&
               q35_tokenizer_eos(back) == q35_tokenizer_eos(t) &&
               q35_tokenizer_add_bos(back) == q35_tokenizer_add_bos(t),
           "%s: special ids differ after the round trip", name);
    q35_tokenizer_free(t);
    q35_tokenizer_free(back);
}

/* ---- real files' special ids and end-of-generation sets ----------------------- */

static int eog_has(const q35_tokenizer *t, const char *spelling) {
    for (int i = 0; i < q35_tokenizer_n_eog(t); i++) {
        uint32_t n;
        const char *s = q35_tokenizer_piece(t, q35_tokenizer_eog(t)[i], &n);
        if (n == strlen(spelling) && memcmp(s, spelling, n) == 0) return 1;
    }
    return 0;
}

static void real_specials(void) {
    const char *o = oracles_dir();
    if (!o) {
        SKIP("no oracles: the special tokens of real files");
        return;
    }
    static const struct {
        const char *path;      /* under the oracles */
        int bos, add_bos;
        const char *eog[3];
    } files[] = {
        {"tok/llama3_2", 128000, 1, {"<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"}},
        {"tok/qwen2_5", -1, 0, {"<|im_end|>", "<|endoftext|>", NULL}},
        {"tok/gemma3", 2, 1, {"<end_of_turn>", "<eos>", NULL}},
        {"tok/mistral_v3", 1, 1, {"</s>", NULL, NULL}},
        {"llama.cpp/models/ggml-vocab-phi-3.gguf", 1, 1, {"<|end|>", "<|endoftext|>", NULL}},
        {"llama.cpp/models/ggml-vocab-llama-bpe.gguf", 128000, 1, {"<|eot_id|>", "<|end_of_text|>", NULL}},
        {"llama.cpp/models/ggml-vocab-qwen2.gguf", 151643, 0, {"<|im_end|>", "<|endoftext|>", NULL}},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%.900s/%s", o, files[i].path);
        q35_tokenizer *t = NULL;
        q35_error err = {0};
        if (q35_tokenizer_load(&t, path, &err)) {
            SKIP("%.100s", err.msg);
            continue;
        }
        CHECKF(q35_tokenizer_bos(t) == files[i].bos && q35_tokenizer_add_bos(t) == files[i].add_bos,
               "%s: bos %d (add %d)", files[i].path, q35_tokenizer_bos(t), q35_tokenizer_add_bos(t));
        for (int k = 0; k < 3 && files[i].eog[k]; k++)
            CHECKF(eog_has(t, files[i].eog[k]), "%s: %s is not an end of generation", files[i].path,
                   files[i].eog[k]);
        CHECKF(q35_tokenizer_eos(t) < 0 || q35_tokenizer_is_eog(t, q35_tokenizer_eos(t)),
               "%s: EOS is not an end of generation", files[i].path);
        printf("  %-44s bos %d, %d end-of-generation tokens\n", files[i].path, q35_tokenizer_bos(t),
               q35_tokenizer_n_eog(t));
        q35_tokenizer_free(t);
    }
}

/* Seeds for fuzz_tokenizer_json: byte-level files with a regex, NFC and
 * the template. */
static void write_seeds(const char *root) {
    char path[1024];
    static const char split_pre[] =
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"(?i:'s|'t)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
        "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
        "\"use_regex\":false}]}";
    const struct {
        const char *name, *pre;
    } seeds[] = {{"bytelevel.json", GPT2_PRE}, {"split.json", split_pre}};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        snprintf(path, sizeof path, "%.900s/fuzz_tokenizer_json/%s", root, seeds[i].name);
        FILE *f = fopen(path, "wb");
        const char *j = byte_level_json(seeds[i].pre, "", ADDED);
        CHECKF(f && fwrite(j, 1, strlen(j), f) == strlen(j), "writing %s", path);
        if (f) fclose(f);
    }
}

int main(void) {
    if (clirun_init("tokbpe")) return 2;
    const char *seeds = getenv("Q35_FUZZ_SEEDS");
    if (seeds && *seeds) write_seeds(seeds);
    test_byte_level();
    test_bad_json();
    test_runaway_growth();
    test_gguf_vocab();
    test_cli();
    static const char *const texts[] = {
        "Hello world! I'm here, 1234567 times.", "  leading spaces\n\n\ttabs", "\xe6\x97\xa5\xe6\x9c\xac",
        "\xf0\x9f\x98\x80 emoji", "x = f(y) + 42;  // code", "", " ", "don't STOP",
        "caf\xc3\xa9", "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7", "\r\n\r\n"};
    int n_texts = (int)(sizeof texts / sizeof texts[0]);
    round_trip("llama3_2", texts, n_texts);
    round_trip("qwen2_5", texts, n_texts);
    /* a SentencePiece-style file becomes GGUF "llama", encoded by scores as
     * llama.cpp encodes it: pieces no merge makes (Mistral's "\u2581\r")
     * then come out where tokenizers leaves them apart, so not "\r\n\r\n" */
    round_trip("mistral_v1", texts, n_texts - 1);
    round_trip("gemma3", texts, n_texts); /* byte fallback, no dummy prefix */
    real_specials();
    clirun_cleanup();
    TEST_END();
}
