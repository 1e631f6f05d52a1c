/* test_cli.c — the q35 program end to end: greedy text and perplexity
 * against llama2.c's figures, seeds, and every kind of bad input getting
 * one line on stderr and a non-zero exit (never a crash). Fixtures are
 * written by this program into a fresh temporary folder. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "refs.h"

#include "clirun.h"

static void test_greedy_and_seed(void) {
    char model[1024], ref[1024];
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    int *ids = NULL, n_ids = 0, n_prompt = 0;
    char *text = NULL;
    CHECK(ref_greedy(shared_path(ref, sizeof ref, "reference/llama2.c/stories260K_greedy_once_upon_a_time.txt"),
                     &ids, &n_ids, &n_prompt, &text) == 0);
    char n[16];
    snprintf(n, sizeof n, "%d", n_ids - n_prompt);
    result r = run((const char *[]){"run", "-m", model, "-p", "Once upon a time", "-n", n, "--temp", "0", NULL});
    CHECKF(r.status == 0, "greedy run failed: %s", r.err);
    size_t tl = strlen(text);
    CHECKF(strncmp(r.out, text, tl) == 0 && strcmp(r.out + tl, "\n") == 0,
           "greedy text differs:\n got %s\nwant %s", r.out, text);
    CHECKF(strstr(r.err, "tokens/s") != NULL, "no speed line: %s", r.err);
    free_result(&r);
    free(ids);
    free(text);

    /* the same seed, the same text; the default model is found */
    result a = run((const char *[]){"run", "-p", "Once upon a time", "-n", "40", "-s", "42", "-t", "1", NULL});
    result b = run((const char *[]){"run", "-p", "Once upon a time", "-n", "40", "-s", "42", "-t", "2", NULL});
    result c = run((const char *[]){"run", "-p", "Once upon a time", "-n", "40", "-s", "43", "--top-k", "0",
                                    "--top-p", "1", "--min-p", "0", "--repeat-penalty", "1.1", NULL});
    CHECKF(a.status == 0 && b.status == 0 && c.status == 0, "seeded runs failed: %s", a.err);
    CHECKF(strcmp(a.out, b.out) == 0, "seed 42 gave two texts:\n%s\n%s", a.out, b.out);
    CHECKF(strcmp(a.out, c.out) != 0, "seeds 42 and 43 gave the same text");
    free_result(&a);
    free_result(&b);
    free_result(&c);
}

/* Parses "tokens scored: N" and "mean NLL: X" from perplexity output. */
static void check_perplexity(const char *model, const char *text, long want_tokens, double want_nll) {
    char m[1024], t[1024];
    result r = run((const char *[]){"perplexity", "-m", shared_path(m, sizeof m, model), "-f",
                                    shared_path(t, sizeof t, text), NULL});
    CHECKF(r.status == 0, "perplexity %s failed: %s", model, r.err);
    const char *a = strstr(r.out, "tokens scored: "), *b = strstr(r.out, "mean NLL: ");
    long tokens = a ? atol(a + 15) : -1;
    double nll = b ? atof(b + 10) : -1;
    CHECKF(tokens == want_tokens, "%s: %ld tokens scored, want %ld", model, tokens, want_tokens);
    CHECKF(fabs(nll - want_nll) <= 0.0005, "%s: mean NLL %.6f, want %.4f +- 0.0005", model, nll, want_nll);
    CHECKF(strstr(r.err, "documents") != NULL, "%s: no progress bar on stderr", model);
    printf("perplexity %s on %s: %ld tokens, mean NLL %.6f (llama2.c %.4f)\n", model, text, tokens, nll, want_nll);
    free_result(&r);
}

static void put_i32(unsigned char *p, int32_t v) { memcpy(p, &v, 4); }

static void test_bad_models(void) {
    char good[1024], tok[1024], tok4096[1024];
    shared_path(good, sizeof good, "models/stories260K/stories260K.bin");
    shared_path(tok, sizeof tok, "models/stories260K/tok512.bin");
    shared_path(tok4096, sizeof tok4096, "models/stories3M/tok4096.bin");
    size_t len;
    unsigned char *bytes = read_all(good, &len);
    const char *p;

    expect_error("missing model", "no-such-model.bin",
                 (const char *[]){"run", "-m", "no-such-model.bin", NULL});
    p = fixture("empty.bin", "", 0);
    expect_error("empty model", p, (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    p = fixture("short.bin", bytes, 20);
    expect_error("header cut short", p, (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    p = fixture("truncated.bin", bytes, len / 2);
    expect_error("truncated weights", "header promises", (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    unsigned char *longer = malloc(len + 100);
    memcpy(longer, bytes, len);
    memset(longer + len, 0, 100);
    p = fixture("longer.bin", longer, len + 100);
    expect_error("file longer than header says", "header promises",
                 (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    free(longer);

    /* each header field zero, negative, absurd; and inconsistent pairs */
    const struct { int field; int32_t value; const char *mention; } bad[] = {
        {0, 0, "dim"}, {0, -64, "dim"}, {0, 1 << 30, "dim"}, {1, 0, "hidden_dim"},
        {2, 0, "n_layers"}, {2, 100000, "n_layers"}, {3, 0, "n_heads"}, {3, 7, "n_heads"},
        {4, 0, "n_kv_heads"}, {4, 3, "n_kv_heads"}, {5, 0, "vocab_size"},
        {5, 2000000000, "vocab_size"}, {6, 0, "seq_len"}, {6, -1, "seq_len"}, {3, 64, "odd"},
        {6, 1 << 23, "header promises"}, {5, 511, "header promises"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char *b = malloc(len);
        memcpy(b, bytes, len);
        put_i32(b + 4 * bad[i].field, bad[i].value);
        char name[64], what[128];
        snprintf(name, sizeof name, "bad-header-%zu.bin", i);
        snprintf(what, sizeof what, "header field %d = %d", bad[i].field, bad[i].value);
        p = fixture(name, b, len);
        expect_error(what, bad[i].mention, (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
        free(b);
    }

    /* "ak42" headers: unknown version, short header, bad flag, bad group */
    unsigned char h[512] = {0};
    put_i32(h, 0x616b3432);
    put_i32(h + 4, 3);
    for (int i = 0; i < 7; i++) put_i32(h + 8 + 4 * i, ((const int32_t *)bytes)[i]);
    p = fixture("ak42-v3.bin", h, 512);
    expect_error("ak42 version 3", "version 3", (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    put_i32(h + 4, 2);
    p = fixture("ak42-short.bin", h, 100);
    expect_error("ak42 short header", "truncated header", (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    h[36] = 7;
    p = fixture("ak42-flag.bin", h, 512);
    expect_error("ak42 shared flag 7", "shared_classifier", (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    h[36] = 1;
    put_i32(h + 37, 0);
    p = fixture("ak42-group0.bin", h, 512);
    expect_error("ak42 group size 0", "group size", (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});
    put_i32(h + 37, 64);
    p = fixture("ak42-v2-truncated.bin", h, 512);
    expect_error("ak42 v2 with too few weights", "header promises",
                 (const char *[]){"run", "-m", p, "--tokenizer", tok, NULL});

    /* tokenizers: wrong size for the model, missing, none beside */
    expect_error("tokenizer of another vocabulary", "tok4096.bin",
                 (const char *[]){"run", "-m", good, "--tokenizer", tok4096, NULL});
    expect_error("missing tokenizer", "nope.bin",
                 (const char *[]){"run", "-m", good, "--tokenizer", "nope.bin", NULL});
    p = fixture("lonely.bin", bytes, len);
    expect_error("no tokenizer beside", "--tokenizer", (const char *[]){"run", "-m", p, NULL});
    free(bytes);
}

static void test_bad_flags(void) {
    char model[1024], text[1024];
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    shared_path(text, sizeof text, "data/tinystories-dev.txt");
    expect_error("empty prompt", "-p", (const char *[]){"run", "-m", model, "-p", "", NULL});
    expect_error("-n 0", "-n 0", (const char *[]){"run", "-m", model, "-n", "0", NULL});
    expect_error("-n -5", "-n", (const char *[]){"run", "-m", model, "-n", "-5", NULL});
    expect_error("-n abc", "'abc'", (const char *[]){"run", "-m", model, "-n", "abc", NULL});
    expect_error("-n 12x", "'12x'", (const char *[]){"run", "-m", model, "-n", "12x", NULL});
    expect_error("--temp -1", "--temp", (const char *[]){"run", "-m", model, "--temp", "-1", NULL});
    expect_error("--temp nan", "--temp", (const char *[]){"run", "-m", model, "--temp", "nan", NULL});
    expect_error("--top-p 2", "--top-p", (const char *[]){"run", "-m", model, "--top-p", "2", NULL});
    expect_error("--threads 0", "--threads", (const char *[]){"run", "-m", model, "--threads", "0", NULL});
    expect_error("-s -1", "-s", (const char *[]){"run", "-m", model, "-s", "-1", NULL});
    expect_error("unknown flag", "--bogus", (const char *[]){"run", "-m", model, "--bogus", NULL});
    expect_error("flag without value", "-m needs a value", (const char *[]){"run", "-m", NULL});
    expect_error("unknown command", "frobnicate", (const char *[]){"frobnicate", NULL});
    expect_error("perplexity without -f", "-f", (const char *[]){"perplexity", "-m", model, NULL});
    expect_error("perplexity missing text", "missing.txt",
                 (const char *[]){"perplexity", "-m", model, "-f", "missing.txt", NULL});
    const char *p = fixture("empty.txt", "", 0);
    expect_error("perplexity empty text", p, (const char *[]){"perplexity", "-m", model, "-f", p, NULL});
    p = fixture("blank.txt", "\n\n  \n\n", 6);
    expect_error("perplexity blank text", p, (const char *[]){"perplexity", "-m", model, "-f", p, NULL});
    expect_error("perplexity unknown flag", "-x", (const char *[]){"perplexity", "-m", model, "-f", text, "-x", NULL});
    /* --kv-type: one line naming the bad value and the good ones, in every command that has it */
    expect_error("run --kv-type q4", "q4: give f16, f32, q8 or auto",
                 (const char *[]){"run", "-m", model, "--kv-type", "q4", NULL});
    expect_error("chat --kv-type Q8", "Q8: give", (const char *[]){"chat", "-m", model, "--kv-type", "Q8", NULL});
    expect_error("perplexity --kv-type int8", "int8: give",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--kv-type", "int8", NULL});
    expect_error("perplexity --kv-type without a value", "--kv-type needs a value",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--kv-type", NULL});
    /* q8 runs, and reaches the session (perplexity close to f16's; run's help names it) */
    result kr = run((const char *[]){"perplexity", "-m", model, "-f", text, "--chunks", "20", "--kv-type", "q8", NULL});
    double nll8 = -1, nll16 = -2;
    const char *at = kr.status == 0 ? strstr(kr.out, "mean NLL: ") : NULL;
    if (at) nll8 = atof(at + 10);
    free_result(&kr);
    kr = run((const char *[]){"perplexity", "-m", model, "-f", text, "--chunks", "20", "--kv-type", "f16", NULL});
    at = kr.status == 0 ? strstr(kr.out, "mean NLL: ") : NULL;
    if (at) nll16 = atof(at + 10);
    free_result(&kr);
    CHECKF(nll8 > 0 && nll16 > 0 && nll8 != nll16 && fabs(nll8 - nll16) < 0.01,
           "perplexity --kv-type q8: mean NLL %g against f16's %g", nll8, nll16);
    kr = run((const char *[]){"run", "--help", NULL});
    CHECKF(kr.status == 0 && strstr(kr.out, "f16, f32, q8"), "run --help does not name --kv-type q8");
    free_result(&kr);

    /* a prompt longer than the context is refused, not overrun */
    char *big = malloc(20001);
    for (int i = 0; i < 20000; i++) big[i] = "ab "[i % 3];
    big[20000] = '\0';
    expect_error("prompt beyond context", "context", (const char *[]){"run", "-m", model, "-p", big, NULL});
    free(big);
    /* -n beyond the context stops at the context, cleanly */
    result r = run((const char *[]){"run", "-m", model, "-n", "100000", "--temp", "0", NULL});
    CHECKF(r.status == 0, "-n beyond context: %s", r.err);
    free_result(&r);
    /* -c: the session's context bounds prompt and generation */
    r = run((const char *[]){"run", "-m", model, "-c", "16", "-p", "Once upon", "-n", "-1", "--temp", "0", NULL});
    CHECKF(r.status == 0 && strstr(r.err, "generation: 13 tokens"), "-c 16: %s", r.err);
    free_result(&r);
    expect_error("run -c 0", "-c", (const char *[]){"run", "-m", model, "-c", "0", NULL});
    expect_error("run -c past the model", "context",
                 (const char *[]){"run", "-m", model, "-c", "100000", "-p", "Once", NULL});
}

int main(void) {
    if (clirun_init("test-cli")) return 2;
    setenv("Q35_MODELS", "", 1); /* the default model comes from ../shared/models */
    test_greedy_and_seed();
    test_bad_models();
    test_bad_flags();
    check_perplexity("models/stories260K/stories260K.bin", "data/tinystories-dev.txt", 141932, 1.5975);
    check_perplexity("models/stories3M/stories3M-q80.bin", "data/tinystories-dev.txt", 73240, 2.0931);
    clirun_cleanup();
    TEST_END();
}
