/* tok_bench.c — tokenization speed on one thread: encodes a text file
 * with q35_tokenizer_encode (special tokens parsed, as tokenizers always
 * does, none added), as one
 * call ("whole") or one call per line ("lines"), and prints bytes, tokens
 * and the CPU time (a process-CPU clock: meaningful on a loaded machine;
 * the tokenizer runs on one thread).
 *   build/bench/tok_bench TOKENIZER TEXT_FILE [whole|lines] [REPEATS]
 * TOKENIZER: anything q35_tokenizer_load reads. Prints the best of
 * REPEATS (default 3) runs. scripts/bench-tokenize.sh runs it beside
 * Hugging Face's tokenizers (bench/tok-bench-hf.js).
 *   build/bench/tok_bench --write-mixed FILE BYTES [DEV_TEXT]
 * writes the test corpus of tests/tok_corpus.h (code, scripts, emoji,
 * whitespace, ...), one string per line, regenerated with new seeds until
 * FILE holds BYTES (invalid UTF-8 left out: both tokenizers would read it
 * as U+FFFD). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/tok_corpus.h"
#include "benchtime.h"
#include "core/mapfile.h"
#include "q35.h"

static int write_mixed(const char *path, long bytes, const char *dev_path) {
    char *dev = NULL;
    size_t dev_len = 0;
    if (dev_path && q35_read_file(dev_path, &dev, &dev_len, NULL)) return 1;
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    long written = 0;
    for (uint64_t seed = 1; written < bytes; seed++) {
        corpus c = {0};
        corpus_build_seeded(&c, dev, dev_len, seed);
        for (int i = 0; i < c.n && written < bytes; i++) {
            if (strcmp(c.v[i].kind, "invalid-utf8") == 0) continue;
            fwrite(c.v[i].s, 1, c.v[i].n, f);
            fputc('\n', f);
            written += (long)c.v[i].n + 1;
        }
        corpus_free(&c);
        if (seed > 1 && dev) { /* the dev text once is enough */
            free(dev);
            dev = NULL;
            dev_len = 0;
        }
    }
    free(dev);
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "--write-mixed") == 0)
        return write_mixed(argv[2], atol(argv[3]), argc > 4 ? argv[4] : NULL);
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER TEXT_FILE [whole|lines] [REPEATS]\n", argv[0]);
        return 2;
    }
    int lines = argc > 3 && strcmp(argv[3], "lines") == 0;
    int repeats = argc > 4 ? atoi(argv[4]) : 3;
    q35_error err = {0};
    q35_tokenizer *t = NULL;
    char *text = NULL;
    size_t len = 0;
    double l0 = bench_cpu();
    if (q35_tokenizer_load(&t, argv[1], &err) || q35_read_file(argv[2], &text, &len, &err)) {
        fprintf(stderr, "tok_bench: %s\n", err.msg);
        return 1;
    }
    double load = bench_cpu() - l0, best = 1e30;
    int n = 0;
    for (int r = 0; r < (repeats > 0 ? repeats : 1); r++) {
        double c0 = bench_cpu();
        n = 0;
        for (size_t at = 0; at < len || (at == 0 && len == 0);) {
            const char *nl = lines ? memchr(text + at, '\n', len - at) : NULL;
            size_t end = nl ? (size_t)(nl - text) + 1 : len; /* the line with its newline */
            int *ids = NULL, k = 0;
            if (q35_tokenizer_encode(t, text + at, end - at, Q35_TOKENIZE_PARSE_SPECIAL, &ids, &k, &err)) {
                fprintf(stderr, "tok_bench: %s\n", err.msg);
                return 1;
            }
            n += k;
            free(ids);
            at = end;
            if (len == 0) break;
        }
        double c = bench_cpu() - c0;
        if (c < best) best = c;
    }
    printf("q35  %s: %zu bytes -> %d tokens in %.3f s CPU: %.2f MB/s (load %.2f s)\n",
           lines ? "lines" : "whole", len, n, best, (double)len / best / 1e6, load);
    free(text);
    q35_tokenizer_free(t);
    return 0;
}
