/* test_kld.c — `q35 perplexity --kl-divergence-base / --kl-divergence`:
 * a model against itself gives 0 and 100% same top token; quantized
 * copies give KLD > 0, ordered by precision; the top-k file's lumped KLD
 * is a lower bound close to the whole-distribution KLD; results do not
 * depend on threads; every bad base file gets one line and exit 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#include "clirun.h"

#define CHUNKS "24"

static char model[1024], text[1024];

/* The number after `key` in s, or -1. */
static double field(const char *s, const char *key) {
    const char *p = strstr(s, key);
    return p ? atof(p + strlen(key)) : -1.0;
}

static void make_base(const char *path, const char *k, const char *threads) {
    result r = run((const char *[]){"perplexity", "-m", model, "-f", text, "--chunks", CHUNKS, "-t", threads,
                                    "--kl-top-k", k, "--kl-divergence-base", path, NULL});
    CHECKF(r.status == 0, "base %s failed: %s", path, r.err);
    CHECKF(strstr(r.err, "saved") != NULL, "base %s: no 'saved' line: %s", path, r.err);
    free_result(&r);
}

/* Compares m against base; returns stdout (free it). */
static char *compare(const char *m, const char *base, const char *threads) {
    result r = run((const char *[]){"perplexity", "-m", m, "-f", text, "--chunks", CHUNKS, "-t", threads,
                                    "--kl-divergence", base, NULL});
    CHECKF(r.status == 0, "compare %s against %s failed: %s", m, base, r.err);
    free(r.err);
    return r.out;
}

static void test_self_and_quantized(void) {
    char base[600], full[600], base1[600], q8[600], q3[600];
    snprintf(base, sizeof base, "%s/base.kld", tmpdir);
    snprintf(base1, sizeof base1, "%s/base-t1.kld", tmpdir);
    snprintf(full, sizeof full, "%s/full.kld", tmpdir);
    make_base(base, "128", "2");
    make_base(base1, "128", "1");
    make_base(full, "0", "2");
    size_t la, lb, lf;
    char *a = read_all(base, &la), *b = read_all(base1, &lb), *f = read_all(full, &lf);
    CHECKF(la == lb && memcmp(a, b, la) == 0, "base files differ with 1 and 2 threads");
    CHECKF(la > 64 && lf > la, "top-k base %zu bytes, full %zu: the full one should be bigger", la, lf);
    free(a);
    free(b);
    free(f);

    for (int i = 0; i < 2; i++) {
        char *o = compare(model, i ? full : base, "2");
        double kld = field(o, "Mean    KLD:"), same = field(o, "Same top p:"), dppl = field(o, "PPL(Q)-PPL(base):");
        CHECKF(kld >= 0 && kld <= 1e-6, "model against itself (%s): mean KLD %g", i ? "full" : "top-k", kld);
        CHECKF(same == 100.0, "model against itself: same top token %g%%", same);
        CHECKF(dppl == 0.0, "model against itself: PPL(Q)-PPL(base) %g", dppl);
        free(o);
    }

    snprintf(q8, sizeof q8, "%s/q8.gguf", tmpdir);
    snprintf(q3, sizeof q3, "%s/q3.gguf", tmpdir);
    const char *qs[2] = {q8, q3}, *types[2] = {"Q8_S", "Q3_5"};
    double kld[2] = {0}, kfull[2] = {0}, same[2] = {0};
    for (int i = 0; i < 2; i++) {
        result r = run((const char *[]){"quantize", model, qs[i], "--type", types[i], NULL});
        CHECKF(r.status == 0, "quantize %s failed: %s", types[i], r.err);
        free_result(&r);
        char *o = compare(qs[i], base, "2"), *o1 = i ? strdup(o) : compare(qs[i], base, "1");
        char *of = compare(qs[i], full, "2");
        kld[i] = field(o, "Mean    KLD:");
        same[i] = field(o, "Same top p:");
        kfull[i] = field(of, "Mean    KLD:");
        CHECKF(strcmp(o, o1) == 0, "%s: the comparison differs with 1 and 2 threads", types[i]); /* Q8_S */
        CHECKF(field(o, "99.0%   KLD:") >= kld[i], "%s: 99th percentile below the mean", types[i]);
        CHECKF(strstr(of, "whole distribution") && strstr(o, "top 128"), "%s: the report does not say which base",
               types[i]);
        /* lumping the tail can only lose divergence (log-sum inequality) */
        CHECKF(kld[i] <= kfull[i] * (1 + 1e-5) + 1e-6 && kld[i] >= 0.9 * kfull[i],
               "%s: top-128 KLD %g vs whole-distribution %g", types[i], kld[i], kfull[i]);
        printf("%s: mean KLD %.6f (whole distribution %.6f), same top %.2f%%\n", types[i], kld[i], kfull[i],
               same[i]);
        free(o);
        free(o1);
        free(of);
    }
    CHECKF(kld[0] > 1e-6 && kld[1] > kld[0], "KLD Q8_S %g, Q3_5 %g: want 0 < Q8_S < Q3_5", kld[0], kld[1]);
    CHECKF(same[1] < same[0] && same[0] < 100.0, "same top: Q8_S %g%%, Q3_5 %g%%", same[0], same[1]);
}

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

static void test_bad_input(void) {
    char base[600], out[600], calib[1024], baby[1024];
    snprintf(base, sizeof base, "%s/base.kld", tmpdir);
    snprintf(out, sizeof out, "%s/new.kld", tmpdir);
    shared_path(calib, sizeof calib, "data/tinystories-calib.txt");
    shared_path(baby, sizeof baby, "models/babyllama105/model5000.bin");
    size_t len;
    unsigned char *good = read_all(base, &len), *b = malloc(len + 8);
    const char *p;
#define CMP(file) (const char *[]){"perplexity", "-m", model, "-f", text, "--chunks", CHUNKS, "--kl-divergence", file, NULL}
    expect_error("missing base", "nope.kld", CMP("nope.kld"));
    p = fixture("empty.kld", "", 0);
    expect_error("empty base", "too short", CMP(p));
    memcpy(b, good, len);
    b[0] = 'X';
    p = fixture("magic.kld", b, len);
    expect_error("wrong magic", "magic", CMP(p));
    memcpy(b, good, len);
    put32(b + 8, 7);
    p = fixture("version.kld", b, len);
    expect_error("wrong version", "version", CMP(p));
    memcpy(b, good, len);
    put32(b + 20, 12);
    p = fixture("recsize.kld", b, len);
    expect_error("wrong record size", "record size", CMP(p));
    p = fixture("truncated.kld", good, len - 1);
    expect_error("truncated base", "truncated", CMP(p));
    memcpy(b, good, len);
    memset(b + len, 0, 8);
    p = fixture("trailing.kld", b, len + 8);
    expect_error("trailing bytes", "trailing", CMP(p));
    memcpy(b, good, len);
    put32(b + 72 + 128 * 4, 0xffff); /* first record's first two ids: 65535 */
    p = fixture("badid.kld", b, len);
    expect_error("token id out of range", "token id", CMP(p));
    memcpy(b, good, len);
    put32(b + 72, 0x7fc00000); /* NaN log-prob */
    p = fixture("nan.kld", b, len);
    expect_error("NaN log-prob", "log-prob", CMP(p));
    memcpy(b, good, len);
    b[40] ^= 1; /* token hash */
    p = fixture("hash.kld", b, len);
    expect_error("token hash differs", "other tokens", CMP(p));

    expect_error("another vocabulary", "vocabulary",
                 (const char *[]){"perplexity", "-m", baby, "-f", text, "--chunks", CHUNKS, "--kl-divergence", base, NULL});
    expect_error("another text", "other tokens",
                 (const char *[]){"perplexity", "-m", model, "-f", calib, "--chunks", CHUNKS, "--kl-divergence", base, NULL});
    expect_error("other --chunks", "documents",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--chunks", "10", "--kl-divergence", base, NULL});
    expect_error("other --ctx", "context",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--chunks", CHUNKS, "--ctx", "64",
                                  "--kl-divergence", base, NULL});
    expect_error("--ctx above the model's", "--ctx",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--ctx", "4096",
                                  "--kl-divergence-base", out, NULL});
    expect_error("both flags", "not both",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--kl-divergence", base,
                                  "--kl-divergence-base", out, NULL});
    expect_error("base into a missing folder", "/no/such/dir",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--kl-divergence-base",
                                  "/no/such/dir/x.kld", NULL});
    expect_error("bad --kl-top-k", "--kl-top-k",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--kl-top-k", "-1",
                                  "--kl-divergence-base", out, NULL});
    expect_error("--kl-top-k without a base", "--kl-top-k",
                 (const char *[]){"perplexity", "-m", model, "-f", text, "--kl-top-k", "16", NULL});
    expect_error("base of a missing text", "nope.txt",
                 (const char *[]){"perplexity", "-m", model, "-f", "nope.txt", "--kl-divergence-base", out, NULL});
#undef CMP
    CHECKF(access(out, F_OK) != 0, "a failed command left %s behind", out);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", tmpdir);
    CHECKF(system(cmd) != 0, "temp files left in %s", tmpdir);
    free(good);
    free(b);
}

int main(void) {
    if (clirun_init("test-kld")) return 2;
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    shared_path(text, sizeof text, "data/tinystories-dev.txt");
    test_self_and_quantized();
    test_bad_input();
    clirun_cleanup();
    TEST_END();
}
