/* test_bench.c — the speed-work tools: q35 synth (named shapes, every type,
 * deterministic per seed, streamed in ranges that match the whole, size
 * checks before writing, clean failures), q35 bench (markdown and JSON
 * output, bad flags), and the memory check before a model is loaded. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "clirun.h"
#include "format/dtype.h"
#include "format/q35fmt.h"
#include "model/synth.h"
#include "q35.h"

/* Exact shapes of the named models. */
static void test_shapes(void) {
    static const struct {
        const char *name;
        int dim, layers, heads, kv, ffn, vocab;
        float theta;
    } want[] = {
        {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 10000.0f},
        {"llama2-7b", 4096, 32, 32, 32, 11008, 32000, 10000.0f},
        {"llama3-8b", 4096, 32, 32, 8, 14336, 128256, 500000.0f},
        {"mistral-7b", 4096, 32, 32, 8, 14336, 32000, 10000.0f},
        {"llama2-70b", 8192, 80, 64, 8, 28672, 32000, 10000.0f},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        q35_config c;
        CHECKF(q35_synth_shape(want[i].name, &c) == 0, "shape %s unknown", want[i].name);
        CHECKF(c.dim == want[i].dim && c.n_layers == want[i].layers && c.n_heads == want[i].heads &&
                   c.n_kv_heads == want[i].kv && c.hidden_dim == want[i].ffn && c.vocab_size == want[i].vocab &&
                   c.rope_theta == want[i].theta && c.head_dim == c.dim / c.n_heads,
               "shape %s: %d %d %d %d %d %d %g", want[i].name, c.dim, c.n_layers, c.n_heads, c.n_kv_heads,
               c.hidden_dim, c.vocab_size, (double)c.rope_theta);
        CHECKF(strstr(q35_synth_shape_names(), want[i].name) != NULL, "%s not listed", want[i].name);
    }
    q35_config c;
    CHECK(q35_synth_shape("tiny", &c) == 0 && c.dim > 0 && c.n_layers > 0);
    CHECK(q35_synth_shape("llama9-1t", &c) == -1);
}

/* Any range of a tensor equals the same bytes of the whole: the chunks the
 * streaming writer asks for cut rows and the header anywhere. */
static void test_ranges(void) {
    const int types[] = {Q35_DTYPE_F32, Q35_DTYPE_F16, Q35_TYPE_Q2_5, Q35_TYPE_Q3_5, Q35_TYPE_Q4_5, Q35_TYPE_Q8_S};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int64_t n = 200, m = 37;
        uint64_t total;
        CHECK(q35_dtype_tensor_bytes(types[ti], n, m, &total) == 0);
        uint8_t *whole = q35_synth_tensor(types[ti], n, m, 0.05f, 99), *parts = calloc(1, total);
        CHECKF(whole && parts, "type %d: no tensor", types[ti]);
        if (!whole || !parts) return;
        const uint64_t steps[] = {1, 7, 333, 1000};
        for (int k = 0; k < 4; k++) {
            memset(parts, 0, total);
            int ok = 1;
            for (uint64_t off = 0; off < total; off += steps[k]) {
                const uint64_t len = total - off < steps[k] ? total - off : steps[k];
                ok &= q35_synth_tensor_range(types[ti], n, m, 0.05f, 99, parts + off, off, len) == 0;
            }
            CHECKF(ok && memcmp(whole, parts, total) == 0, "type %d: chunks of %llu differ from the whole",
                   types[ti], (unsigned long long)steps[k]);
        }
        CHECK(q35_synth_tensor_range(types[ti], n, m, 0.05f, 99, parts, total - 1, 2) == -1);
        if (types[ti] == Q35_TYPE_Q3_5) { /* a valid header, as the loader checks it */
            q35_layout L;
            const char *why = "";
            CHECK(q35_layout_init(&L, types[ti], n, m) == 0);
            CHECKF(q35_header_check(&L, whole, &why) == 0, "synthetic header refused: %s", why);
        }
        free(whole);
        free(parts);
    }
}

/* Every type: the file loads and runs a token to finite logits. */
static void test_synth_runs(void) {
    const char *types[] = {"F32", "F16", "Q2_5", "Q3_5", "Q4_5", "Q8_S"};
    q35_config c;
    q35_synth_shape("tiny", &c);
    for (int i = 0; i < 6; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/api-%s.gguf", tmpdir, types[i]);
        q35_error err = {0};
        uint64_t bytes = 0, dry = 0;
        CHECKF(q35_synth_model(NULL, &c, types[i], 5, Q35_SYNTH_DRY_RUN, &dry, &err) == 0, "dry run %s: %s",
               types[i], err.msg);
        CHECKF(q35_synth_model(path, &c, types[i], 5, 0, &bytes, &err) == 0, "synth %s: %s", types[i], err.msg);
        CHECKF(bytes == dry && bytes > 0, "%s: dry run says %llu bytes, the file %llu", types[i],
               (unsigned long long)dry, (unsigned long long)bytes);
        size_t size = 0;
        free(read_all(path, &size));
        CHECKF((uint64_t)size == bytes, "%s: file has %zu bytes, reported %llu", types[i], size,
               (unsigned long long)bytes);
        q35_model *m = NULL;
        q35_session *s = NULL;
        const float *logits = NULL;
        int ok = q35_model_load(&m, path, NULL, &err) == 0 && q35_session_new(&s, m, 1, &err) == 0 &&
                 q35_session_eval(s, q35_token_bos(m), &logits, &err) == 0;
        CHECKF(ok, "%s: %s", types[i], err.msg);
        if (ok) {
            const q35_config *mc = q35_model_config(m);
            int finite = 1;
            for (int k = 0; k < mc->vocab_size; k++) finite &= isfinite(logits[k]);
            CHECKF(finite, "%s: logits not finite", types[i]);
            CHECKF(mc->dim == c.dim && mc->n_layers == c.n_layers && mc->vocab_size == c.vocab_size &&
                       mc->n_kv_heads == c.n_kv_heads && mc->hidden_dim == c.hidden_dim,
                   "%s: the file's shape differs", types[i]);
            /* a text prompt tokenizes (byte fallback) */
            int *ids = NULL, n_ids = 0;
            CHECKF(q35_tokenize(m, "Once upon a time", 16, 1, &ids, &n_ids, &err) == 0 && n_ids > 1,
                   "%s: tokenize: %s", types[i], err.msg);
            free(ids);
        }
        q35_session_free(s);
        q35_model_free(m);
    }
}

static void test_synth_cli(void) {
    char a[600], b[600], c[600];
    snprintf(a, sizeof a, "%s/a.gguf", tmpdir);
    snprintf(b, sizeof b, "%s/b.gguf", tmpdir);
    snprintf(c, sizeof c, "%s/c.gguf", tmpdir);
    result r = run((const char *[]){"synth", "--shape", "tiny", "--type", "Q3_5", "--seed", "7", a, NULL});
    CHECKF(r.status == 0 && strstr(r.out, "wrote"), "synth: %s", r.err);
    free_result(&r);
    r = run((const char *[]){"synth", "--shape", "tiny", "--type", "Q3_5", "--seed", "7", b, NULL});
    free_result(&r);
    r = run((const char *[]){"synth", "--shape", "tiny", "--type", "Q3_5", "--seed", "8", c, NULL});
    free_result(&r);
    size_t la = 0, lb = 0, lc = 0;
    char *da = read_all(a, &la), *db = read_all(b, &lb), *dc = read_all(c, &lc);
    CHECKF(la > 0 && la == lb && memcmp(da, db, la) == 0, "same seed, different files");
    CHECKF(la == lc && memcmp(da, dc, la) != 0, "different seeds, same file");
    free(da);
    free(db);
    free(dc);
    /* q35 run on it */
    r = run((const char *[]){"run", "-m", a, "-n", "3", "--temp", "0", "-t", "1", NULL});
    CHECKF(r.status == 0, "run on a synthetic model: %s", r.err);
    free_result(&r);
    /* shape overrides */
    r = run((const char *[]){"synth", "--shape", "tiny", "--layers", "3", "--vocab", "300", "--ctx", "64", b, NULL});
    CHECKF(r.status == 0, "synth with overrides: %s", r.err);
    free_result(&r);
    r = run((const char *[]){"info", b, NULL});
    CHECKF(r.status == 0 && strstr(r.out, "n_layers 3") && strstr(r.out, "vocab_size 300") &&
               strstr(r.out, "seq_len 64") && strstr(r.out, "blk.2.ffn_up.weight"),
           "info after overrides: %s", r.out);
    free_result(&r);
    /* the 70B: size only, its weights counted exactly, within Q3_5's budget */
    r = run((const char *[]){"synth", "--shape", "llama2-70b", "--type", "Q3_5", "--dry-run", NULL});
    unsigned long long weights = 0, bytes = 0;
    const char *w = strstr(r.out, "context 4096: ");
    CHECKF(r.status == 0 && w && sscanf(w, "context 4096: %llu weights, %llu bytes", &weights, &bytes) == 2,
           "70B dry run: %s%s", r.out, r.err);
    const unsigned long long d = 8192, kv = 1024, h = 28672, v = 32000, L = 80;
    const unsigned long long expect = 2 * v * d + d + L * (2 * d + 2 * d * d + 2 * d * kv + 3 * d * h);
    CHECKF(weights == expect && weights == 68976648192ull, "70B: %llu weights, want %llu", weights, expect);
    CHECKF(bytes > 29000000000ull && 8.0 * (double)bytes / (double)weights <= 3.5,
           "70B Q3_5: %llu bytes (%.4f bpw)", bytes, 8.0 * (double)bytes / (double)weights);
    free_result(&r);
}

/* Bad input: one line, exit 1, no file and no temporary left. */
static void test_synth_bad(void) {
    char out[600];
    snprintf(out, sizeof out, "%s/never.gguf", tmpdir);
    expect_error("synth unknown shape", "llama9", (const char *[]){"synth", "--shape", "llama9", out, NULL});
    expect_error("synth without --shape", "--shape", (const char *[]){"synth", out, NULL});
    expect_error("synth bad type", "Q4_0", (const char *[]){"synth", "--shape", "tiny", "--type", "Q4_0", out, NULL});
    expect_error("synth without output", "output", (const char *[]){"synth", "--shape", "tiny", NULL});
    expect_error("synth two outputs", "unexpected", (const char *[]){"synth", "--shape", "tiny", out, out, NULL});
    expect_error("synth bad seed", "--seed", (const char *[]){"synth", "--shape", "tiny", "--seed", "x1", out, NULL});
    expect_error("synth --layers 0", "--layers", (const char *[]){"synth", "--shape", "tiny", "--layers", "0", out, NULL});
    expect_error("synth inconsistent heads", "inconsistent",
                 (const char *[]){"synth", "--shape", "tiny", "--heads", "3", out, NULL});
    expect_error("synth unknown flag", "--bogus", (const char *[]){"synth", "--shape", "tiny", "--bogus", out, NULL});
    expect_error("synth into a missing folder", "/no/such/dir",
                 (const char *[]){"synth", "--shape", "tiny", "/no/such/dir/x.gguf", NULL});
    /* a file larger than the disk's free space is refused before writing
     * (only where it is: never write 257 GiB to find out) */
    struct statvfs sv;
    if (statvfs(tmpdir, &sv) == 0 && (double)sv.f_bavail * (double)sv.f_frsize < 200e9) {
        expect_error("synth larger than the disk", "of disk",
                     (const char *[]){"synth", "--shape", "llama2-70b", "--type", "F32", out, NULL});
    } else {
        printf("test_bench: more than 200 GB free, the disk-space refusal is not tried\n");
    }
    CHECKF(access(out, F_OK) != 0, "a failed synth left %s behind", out);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", tmpdir);
    CHECKF(system(cmd) != 0, "temp files left in %s", tmpdir);
}

static const cJSON *field(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static void test_bench_json(void) {
    char model[600];
    snprintf(model, sizeof model, "%s/a.gguf", tmpdir);
    result r = run((const char *[]){"bench", "-m", model, "-p", "8", "-n", "4", "-t", "1", "-r", "2", "-o", "json",
                                    "--roofline", NULL});
    CHECKF(r.status == 0, "bench json: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    CHECKF(j != NULL, "bench json does not parse: %s", r.out);
    const cJSON *res = j ? field(j, "results") : NULL, *bw = j ? field(j, "bandwidth") : NULL;
    CHECKF(cJSON_IsArray(res) && cJSON_GetArraySize(res) == 2, "results: %s", r.out);
    CHECKF(cJSON_IsArray(bw) && cJSON_GetArraySize(bw) == 1 &&
               cJSON_GetNumberValue(field(cJSON_GetArrayItem(bw, 0), "gbs")) > 0.1,
           "bandwidth: %s", r.out);
    CHECKF(cJSON_GetNumberValue(field(j, "peak_rss_mib")) > 0, "peak RSS");
    const char *tests[] = {"pp8", "tg4"};
    for (int i = 0; cJSON_IsArray(res) && i < cJSON_GetArraySize(res) && i < 2; i++) {
        const cJSON *x = cJSON_GetArrayItem(res, i);
        const char *t = cJSON_GetStringValue(field(x, "test"));
        CHECKF(t && !strcmp(t, tests[i]), "test %d: %s", i, t ? t : "(none)");
        CHECK(cJSON_GetNumberValue(field(x, "avg_ts")) > 0);
        CHECK(cJSON_GetNumberValue(field(x, "stddev_ts")) >= 0);
        CHECK(cJSON_GetArraySize(field(x, "samples_ts")) == 2);
        CHECK(cJSON_GetNumberValue(field(x, "n_threads")) == 1);
        CHECK(cJSON_GetNumberValue(field(x, "model_size")) > 100000);
        CHECK(cJSON_GetNumberValue(field(x, "model_n_params")) > 100000);
        const double bpw = cJSON_GetNumberValue(field(x, "bpw"));
        CHECKF(bpw > 3.0 && bpw < 4.0, "bpw %g", bpw);
        CHECK(cJSON_GetNumberValue(field(x, "weight_bytes_per_token")) > 0);
        if (i == 1) { /* the decode roofline: tg rows only */
            CHECK(cJSON_GetNumberValue(field(x, "roofline_ts")) > 0);
            CHECK(cJSON_GetNumberValue(field(x, "roofline_fraction")) > 0);
        } else {
            CHECK(cJSON_IsNull(field(x, "roofline_ts")) && cJSON_IsNull(field(x, "roofline_fraction")));
        }
        CHECK(cJSON_GetNumberValue(field(x, "peak_rss_mib")) > 0);
        CHECK(strcmp(cJSON_GetStringValue(field(x, "model_type")) ? cJSON_GetStringValue(field(x, "model_type")) : "", "Q3_5") == 0);
    }
    cJSON_Delete(j);
    free_result(&r);
    /* the bandwidth at a thread count that does not divide the array's
     * words by 8 (its last part once read past the array: no figure) */
    r = run((const char *[]){"bench", "-m", model, "-p", "0", "-n", "2", "-t", "3", "-r", "1", "-o", "json",
                             "--roofline", NULL});
    j = r.status == 0 ? cJSON_Parse(r.out) : NULL;
    bw = j ? field(j, "bandwidth") : NULL;
    const cJSON *b3 = cJSON_IsArray(bw) ? cJSON_GetArrayItem(bw, 0) : NULL;
    CHECKF(b3 && cJSON_GetNumberValue(field(b3, "threads")) == 3 && cJSON_GetNumberValue(field(b3, "gbs")) > 0.1 &&
               cJSON_GetNumberValue(field(b3, "min_gbs")) > 0.1,
           "bandwidth at 3 threads: %s%s", r.out, r.err);
    cJSON_Delete(j);
    free_result(&r);
    /* markdown: a llama-bench table */
    r = run((const char *[]){"bench", "-m", model, "-p", "4,8", "-n", "2", "-t", "1,2", "-r", "1", NULL});
    CHECKF(r.status == 0 && strstr(r.out, "| model |") && strstr(r.out, "| pp4 |") && strstr(r.out, "| pp8 |") &&
               strstr(r.out, "| tg2 |") && strstr(r.out, "peak RSS:") && strstr(r.out, " ± "),
           "bench md: %s%s", r.out, r.err);
    int rows = 0;
    for (const char *p = r.out; (p = strstr(p, "| a.gguf |")); p++) rows++;
    CHECKF(rows == 6, "bench md: %d rows, want 6 (2 thread counts x 3 tests)", rows);
    free_result(&r);
}

static void test_bench_bad(void) {
    char model[600];
    snprintf(model, sizeof model, "%s/a.gguf", tmpdir);
    expect_error("bench without -m", "-m", (const char *[]){"bench", NULL});
    expect_error("bench -r 0", "-r", (const char *[]){"bench", "-m", model, "-r", "0", NULL});
    expect_error("bench -t 0", "-t", (const char *[]){"bench", "-m", model, "-t", "1,0", NULL});
    expect_error("bench -p abc", "-p", (const char *[]){"bench", "-m", model, "-p", "abc", NULL});
    expect_error("bench -p 8,", "-p", (const char *[]){"bench", "-m", model, "-p", "8,", NULL});
    expect_error("bench -o xml", "xml", (const char *[]){"bench", "-m", model, "-o", "xml", NULL});
    expect_error("bench nothing", "nothing", (const char *[]){"bench", "-m", model, "-p", "0", "-n", "0", NULL});
    expect_error("bench unknown flag", "--bogus", (const char *[]){"bench", "-m", model, "--bogus", NULL});
    expect_error("bench -b 0", "-b", (const char *[]){"bench", "-m", model, "-b", "0", NULL});
    expect_error("bench --kv-type f8", "f8", (const char *[]){"bench", "-m", model, "--kv-type", "f8", NULL});
    expect_error("bench missing model", "nope.gguf", (const char *[]){"bench", "-m", "nope.gguf", "-r", "1", NULL});
    expect_error("bench past the context", "context",
                 (const char *[]){"bench", "-m", model, "-p", "1000", "-n", "0", "-r", "1", NULL});
    /* the prompt batch size and KV cache type reach the session */
    result ok = run((const char *[]){"bench", "-m", model, "-p", "8", "-n", "2", "-t", "1", "-r", "1", "-b", "3",
                                     "--kv-type", "f32", NULL});
    CHECKF(ok.status == 0 && strstr(ok.out, "pp8"), "bench -b 3 --kv-type f32: %s", ok.err);
    free_result(&ok);
    ok = run((const char *[]){"bench", "-m", model, "-p", "8", "-n", "2", "-t", "1", "-r", "1", "--kv-type", "q8",
                              "-d", "4", NULL});
    CHECKF(ok.status == 0 && strstr(ok.out, "tg2 @ d4"), "bench --kv-type q8: %s", ok.err);
    free_result(&ok);
    /* depth: tests after tokens already in the cache; the context bounds it */
    result dr = run((const char *[]){"bench", "-m", model, "-p", "8", "-n", "2", "-d", "0,16", "-t", "1", "-r", "1",
                                     "-o", "json", NULL});
    CHECKF(dr.status == 0 && strstr(dr.out, "\"pp8 @ d16\"") && strstr(dr.out, "\"tg2 @ d16\"") &&
               strstr(dr.out, "\"n_depth\": 16") && strstr(dr.out, "\"pp8\""),
           "bench -d 0,16: %s %s", dr.out, dr.err);
    free_result(&dr);
    expect_error("bench -d past the context", "-d",
                 (const char *[]){"bench", "-m", model, "-p", "8", "-n", "0", "-d", "100000", "-r", "1", NULL});
    expect_error("bench -d -1", "-d", (const char *[]){"bench", "-m", model, "-d", "-1", NULL});
    /* a failed JSON run prints no half document */
    result r = run((const char *[]){"bench", "-m", model, "-m", "nope.gguf", "-p", "4", "-n", "0", "-r", "1", "-o",
                                    "json", NULL});
    CHECKF(r.status == 1 && r.out[0] == '\0', "failed json run printed: %s", r.out);
    free_result(&r);
}

/* The memory check: a model that does not fit fails before loading. */
static void test_memory_check(void) {
    char model[600];
    snprintf(model, sizeof model, "%s/a.gguf", tmpdir);
    setenv("Q35_MEM_AVAILABLE", "100K", 1); /* less than the file */
    expect_error("run, file too large", "available", (const char *[]){"run", "-m", model, "-n", "2", NULL});
    setenv("Q35_MEM_AVAILABLE", "300K", 1); /* the file fits, with the KV cache it does not */
    expect_error("bench, model too large", "KV cache",
                 (const char *[]){"bench", "-m", model, "-p", "4", "-n", "0", "-r", "1", NULL});
    result r = run((const char *[]){"perplexity", "-m", model, "-f", model, NULL});
    CHECKF(r.status == 1 && strstr(r.err, "needs") && strstr(r.err, "available"), "perplexity: %s", r.err);
    free_result(&r);
    setenv("Q35_MEM_AVAILABLE", "lots", 1);
    expect_error("bad Q35_MEM_AVAILABLE", "Q35_MEM_AVAILABLE", (const char *[]){"run", "-m", model, "-n", "2", NULL});
    setenv("Q35_MEM_AVAILABLE", "off", 1);
    r = run((const char *[]){"run", "-m", model, "-n", "2", "-t", "1", NULL});
    CHECKF(r.status == 0, "Q35_MEM_AVAILABLE=off: %s", r.err);
    free_result(&r);
    setenv("Q35_MEM_AVAILABLE", "64G", 1);
    r = run((const char *[]){"run", "-m", model, "-n", "2", "-t", "1", NULL});
    CHECKF(r.status == 0, "Q35_MEM_AVAILABLE=64G: %s", r.err);
    free_result(&r);
    /* inspecting needs no memory check */
    setenv("Q35_MEM_AVAILABLE", "1K", 1);
    r = run((const char *[]){"info", model, NULL});
    CHECKF(r.status == 0, "info under the memory check: %s", r.err);
    free_result(&r);
    /* the library reads no environment: its setting is mem_available */
    q35_model *m = NULL;
    q35_error err = {0};
    CHECKF(q35_model_load(&m, model, NULL, &err) == 0, "load ignores Q35_MEM_AVAILABLE: %s", err.msg);
    q35_model_free(m);
    m = NULL;
    q35_model_params mp = q35_model_default_params();
    mp.mem_available = 1024;
    CHECKF(q35_model_load_params(&m, model, &mp, &err) == Q35_ERR_NOMEM && err.code == Q35_ERR_NOMEM && !m &&
               strstr(err.msg, "available"),
           "load under 1K: %d %s", err.code, err.msg);
    CHECK(q35_model_load_params(&m, model, &mp, NULL) == Q35_ERR_NOMEM && !m); /* err may be NULL */
    mp.mem_available = -1; /* no check */
    CHECKF(q35_model_load_params(&m, model, &mp, &err) == 0, "load, no check: %s", err.msg);
    q35_model_free(m);
    unsetenv("Q35_MEM_AVAILABLE");
}

int main(void) {
    if (clirun_init("test-bench")) return 2;
    unsetenv("Q35_MEM_AVAILABLE");
    test_shapes();
    test_ranges();
    test_synth_runs();
    test_synth_cli();
    test_synth_bad();
    test_bench_json();
    test_bench_bad();
    test_memory_check();
    clirun_cleanup();
    TEST_END();
}
