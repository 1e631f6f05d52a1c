/* test_arch.c — every architecture (src/arch) against llama.cpp, on tiny
 * random models whose weights make each variant matter (tests/archgen.h).
 *
 * Per architecture: a Hugging Face folder is generated, loaded and
 * converted to GGUF by q35 (q35_model_save_gguf); llama.cpp (the prebuilt
 * libllama of ../shared/oracles: bin/llama-logits, fp32 KV cache) computes
 * the logits of a 64-token sequence at every position and 32 greedy ids
 * from the GGUF. q35's logits from the GGUF must be within 1e-4 x the
 * largest |logit|, its greedy ids identical, and its logits from the
 * folder within 1e-5 x of the GGUF's. Gemma's GELU: llama.cpp's CPU
 * backend reads an fp16 table; q35 computes the function, so the
 * difference is bounded separately and shown to vanish with q35's own
 * table switched on (gelu_f16). Windows, soft-caps and RoPE scaling are
 * set so that they change the logits of this sequence (checked: a model
 * without them differs). Then each model is quantized to Q3_5, runs, and
 * its tuner gradients agree with central differences. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "archgen.h"
#include "io/gguf.h"
#include "io/hf.h"
#include "q35.h"
#include "quant/tune.h"

#define N_IDS 64
#define N_GREEDY 32

static char tmpdir[256];

/* The same models with one variant switched off (same seed, same
 * tensors): their logits must differ, or the variant did not bite. */
static const struct {
    int idx;
    const char *extra, *what;
} variants_off[] = {
    {0, "", "no llama3 RoPE scaling"},
    {2, "\"sliding_window\":16", "a window of 16, not 4096 (q35 alone: llama.cpp runs Mistral without one)"},
    {6,
     "\"sliding_window\":4096,\"attn_logit_softcapping\":2.0,\"final_logit_softcapping\":5.0,"
     "\"query_pre_attn_scalar\":32,\"hidden_activation\":\"gelu_pytorch_tanh\"",
     "no window"},
    {6,
     "\"sliding_window\":16,\"attn_logit_softcapping\":1000.0,\"final_logit_softcapping\":5.0,"
     "\"query_pre_attn_scalar\":32,\"hidden_activation\":\"gelu_pytorch_tanh\"",
     "no attention soft-cap"},
    {6,
     "\"sliding_window\":16,\"attn_logit_softcapping\":2.0,\"final_logit_softcapping\":1000.0,"
     "\"query_pre_attn_scalar\":32,\"hidden_activation\":\"gelu_pytorch_tanh\"",
     "no final soft-cap"},
    {7,
     "\"sliding_window\":4096,\"rope_local_base_freq\":10000.0,\"query_pre_attn_scalar\":32,"
     "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8.0},\"hidden_activation\":\"gelu_pytorch_tanh\"",
     "no window"},
    {7,
     "\"sliding_window\":16,\"rope_local_base_freq\":10000.0,\"query_pre_attn_scalar\":32,"
     "\"hidden_activation\":\"gelu_pytorch_tanh\"",
     "no RoPE scaling on the global layers"},
    {7,
     "\"sliding_window\":16,\"rope_local_base_freq\":1000000.0,\"query_pre_attn_scalar\":32,"
     "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8.0},\"hidden_activation\":\"gelu_pytorch_tanh\"",
     "the global RoPE base on the local layers"},
    {8, "\"sliding_window\":2048,\"partial_rotary_factor\":0.5,\"original_max_position_embeddings\":64",
     "no LongRoPE"},
    {8,
     "\"sliding_window\":2048,\"partial_rotary_factor\":0.5,\"original_max_position_embeddings\":512,"
     "\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1.0,1.5,2.0,3.0],\"long_factor\":[1.5,3.0,6.0,"
     "12.0]}",
     "the short factors (a context within the original)"},
};

static int is_gemma(const arch_case *c) { return strncmp(c->model_type, "gemma", 5) == 0; }

/* Logits of ids at every position (rows of V), then n_greedy greedy ids. */
static int q35_logits(const q35_model *m, const int *ids, int n, int gelu_f16, float *out, int *greedy, int n_greedy) {
    q35_session_params sp = q35_session_default_params();
    sp.n_threads = 2;
    sp.kv_type = "f32";
    sp.gelu_f16 = gelu_f16;
    q35_session *s = NULL;
    q35_error err = {0};
    int rc = q35_session_new_params(&s, m, &sp, &err);
    if (!rc) rc = q35_session_eval_batch(s, ids, n, out, NULL, &err);
    const int V = q35_model_config(m)->vocab_size;
    const float *lg = out + (size_t)(n - 1) * V;
    for (int g = 0; !rc && g < n_greedy; g++) {
        int best = 0;
        for (int k = 1; k < V; k++)
            if (lg[k] > lg[best]) best = k;
        greedy[g] = best;
        rc = q35_session_eval(s, best, &lg, &err);
    }
    if (rc) fprintf(stderr, "q35: %s\n", err.msg);
    q35_session_free(s);
    return rc;
}

/* llama.cpp's logits and greedy ids for the GGUF at path. */
static int llama_logits(const char *oracles, const char *gguf, const int *ids, int n, float *out, int V, int *greedy) {
    char ids_path[600], out_path[600], cmd[8192], gpath[600];
    snprintf(ids_path, sizeof ids_path, "%s/ids.txt", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/llama.f32", tmpdir);
    snprintf(gpath, sizeof gpath, "%s/greedy.txt", tmpdir);
    FILE *f = fopen(ids_path, "w");
    if (!f) return -1;
    for (int i = 0; i < n; i++) fprintf(f, "%d ", ids[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s/bin/llama-logits' '%s/libllama' '%s' '%s' '%s' %d >'%s' 2>'%s/llama.err'", oracles,
             oracles, gguf, ids_path, out_path, N_GREEDY, gpath, tmpdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "llama-logits failed on %s (see %s/llama.err)\n", gguf, tmpdir);
        return -1;
    }
    f = fopen(out_path, "rb");
    const size_t want = (size_t)n * (size_t)V;
    const int ok = f && fread(out, sizeof(float), want, f) == want;
    if (f) fclose(f);
    f = fopen(gpath, "r");
    int got = 0;
    while (f && got < N_GREEDY && fscanf(f, "%d", &greedy[got]) == 1) got++;
    if (f) fclose(f);
    return ok && got == N_GREEDY ? 0 : -1;
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

static int first_diff(const int *a, const int *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return -1;
}

static void check_case(const arch_case *c, int idx, const char *oracles) {
    char dir[600], gguf[700], q3[700];
    snprintf(dir, sizeof dir, "%s/%s-%d", tmpdir, c->model_type, idx);
    mkdir(dir, 0755);
    CHECKF(gen_folder(c, dir, 1000 + (uint64_t)idx, gen_read_hp) == 0, "%s: generating the folder", c->label);
    q35_error err = {0};
    q35_model *hf = NULL, *gg = NULL;
    int rc = q35_model_load(&hf, dir, NULL, &err);
    CHECKF(rc == 0, "%s: loading the folder: %s", c->label, err.msg);
    if (rc) return;
    snprintf(gguf, sizeof gguf, "%s.gguf", dir);
    rc = q35_model_save_gguf(hf, gguf, "F32", &err);
    if (!rc) rc = q35_model_load(&gg, gguf, NULL, &err);
    CHECKF(rc == 0, "%s: the GGUF: %s", c->label, err.msg);
    const int V = q35_model_config(hf)->vocab_size;
    const size_t NV = (size_t)N_IDS * (size_t)V;
    float *l_hf = malloc(NV * sizeof(float)), *l_gg = malloc(NV * sizeof(float)), *l_lc = malloc(NV * sizeof(float));
    float *l_f16 = malloc(NV * sizeof(float));
    int ids[N_IDS], g_hf[N_GREEDY], g_gg[N_GREEDY], g_lc[N_GREEDY], g_f16[N_GREEDY];
    uint64_t r = 77 + (uint64_t)idx;
    for (int i = 0; i < N_IDS; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = i == 0 ? 1 : 3 + (int)((r >> 33) % (uint64_t)(V - 3));
    }
    if (rc || q35_logits(hf, ids, N_IDS, 0, l_hf, g_hf, N_GREEDY) || q35_logits(gg, ids, N_IDS, 0, l_gg, g_gg, N_GREEDY)) {
        CHECKF(0, "%s: q35 evaluation failed", c->label);
        goto done;
    }
    const double scale = max_abs(l_gg, NV), d_hf = max_diff(l_hf, l_gg, NV);
    CHECKF(d_hf <= 1e-5 * scale, "%s: folder vs GGUF logits differ by %.3g (max |logit| %.3g)", c->label, d_hf, scale);
    CHECKF(first_diff(g_hf, g_gg, N_GREEDY) < 0, "%s: folder vs GGUF greedy ids differ", c->label);
    if (!oracles) {
        printf("%s: folder = GGUF to %.2g (max |logit| %.3g); llama.cpp not compared\n", c->label, d_hf, scale);
        goto quantized;
    }
    if (llama_logits(oracles, gguf, ids, N_IDS, l_lc, V, g_lc)) {
        CHECKF(0, "%s: llama.cpp did not run", c->label);
        goto quantized;
    }
    const double d = max_diff(l_gg, l_lc, NV);
    const int gd = first_diff(g_gg, g_lc, N_GREEDY);
    if (is_gemma(c)) { /* GELU: llama.cpp's fp16 table against the exact function */
        q35_logits(gg, ids, N_IDS, 1, l_f16, g_f16, N_GREEDY);
        const double d16 = max_diff(l_f16, l_lc, NV);
        CHECKF(d16 <= 1e-4 * scale, "%s: with llama.cpp's fp16 GELU, logits differ by %.3g (max %.3g)", c->label, d16,
               scale);
        CHECKF(d <= 1e-3 * scale, "%s: exact GELU vs llama.cpp's table: %.3g (max %.3g)", c->label, d, scale);
        printf("%s: largest logit difference to llama.cpp %.3g (max |logit| %.3g; %.2g with llama.cpp's fp16 GELU "
               "table); greedy ids %s; folder = GGUF to %.2g\n",
               c->label, d, scale, d16, gd < 0 ? "identical" : "DIFFER", d_hf);
    } else {
        CHECKF(d <= 1e-4 * scale, "%s: logits differ from llama.cpp's by %.3g (max |logit| %.3g)", c->label, d, scale);
        printf("%s: largest logit difference to llama.cpp %.3g (max |logit| %.3g, %.2g of it); greedy ids %s; "
               "folder = GGUF to %.2g\n",
               c->label, d, scale, d / scale, gd < 0 ? "identical" : "DIFFER", d_hf);
    }
    CHECKF(gd < 0, "%s: greedy ids differ from llama.cpp's at %d (%d vs %d)", c->label, gd, gd < 0 ? 0 : g_gg[gd],
           gd < 0 ? 0 : g_lc[gd]);

quantized:
    for (size_t v = 0; v < sizeof variants_off / sizeof variants_off[0]; v++) {
        if (variants_off[v].idx != idx) continue;
        arch_case off = *c;
        off.extra = variants_off[v].extra;
        char odir[700];
        snprintf(odir, sizeof odir, "%s-off%zu", dir, v);
        mkdir(odir, 0755);
        q35_model *om = NULL;
        float *lo = malloc(NV * sizeof(float));
        int go[1];
        rc = gen_folder(&off, odir, 1000 + (uint64_t)idx, gen_read_hp) ? -1 : q35_model_load(&om, odir, NULL, &err);
        if (!rc) rc = q35_logits(om, ids, N_IDS, 0, lo, go, 1);
        const double dv = rc ? 0 : max_diff(lo, l_gg, NV);
        CHECKF(rc == 0 && dv > 1e-3 * scale, "%s: with %s the logits move by %.3g only", c->label,
               variants_off[v].what, dv);
        printf("  with %s: logits move by up to %.3g\n", variants_off[v].what, dv);
        free(lo);
        q35_model_free(om);
    }
    /* the Q3_5 family and the tuner on the architecture */
    snprintf(q3, sizeof q3, "%s-q35.gguf", dir);
    {
        double bpw, rmse;
        q35_model *qm = NULL;
        rc = q35_quantize_model(gg, q3, "Q3_5", NULL, 2, NULL, NULL, &bpw, &rmse, &err);
        if (!rc) rc = q35_model_load(&qm, q3, NULL, &err);
        CHECKF(rc == 0, "%s: Q3_5: %s", c->label, err.msg);
        if (!rc) {
            float *lq = malloc(NV * sizeof(float));
            int gq[4];
            CHECKF(q35_logits(qm, ids, N_IDS, 0, lq, gq, 4) == 0, "%s: Q3_5 evaluation", c->label);
            const double dq = max_diff(lq, l_gg, NV);
            CHECKF(isfinite(dq) && dq > 0 && dq < scale, "%s: Q3_5 logits differ from F32's by %.3g", c->label, dq);
            static const char doc[] = "ab cd ef gh ij kl mn op qr st uv wx";
            double an[10], nu[10];
            rc = q35_tune_check_gradient(gg, qm, doc, sizeof doc - 1, 10, 1e-2, an, nu, &err);
            CHECKF(rc == 0, "%s: tuner: %s", c->label, err.msg);
            double big = 0.0;
            for (int k = 0; !rc && k < 10; k++) big = fmax(big, fabs(nu[k]));
            for (int k = 0; !rc && k < 10; k++)
                CHECKF(fabs(an[k] - nu[k]) <= 0.03 * fabs(nu[k]) + 0.01 * big,
                       "%s: tuner parameter %d: backward %.6g, central difference %.6g", c->label, k, an[k], nu[k]);
            free(lq);
            q35_model_free(qm);
            qm = NULL;
        }
        unlink(q3);
        /* sequential GPTQ calibration and end-to-end tuning on the architecture */
        static const char *const texts[] = {"ab cd ef gh ij kl mn op qr st uv wx yz", "the cat sat on the mat today",
                                            "zz yy xx ww vv uu tt ss rr qq pp oo nn", "a b c d e f g h i j k l m n o"};
        const size_t lens[] = {strlen(texts[0]), strlen(texts[1]), strlen(texts[2]), strlen(texts[3])};
        q35_quant_options o = {.type = "Q3_5", .calib_docs = texts, .calib_lens = lens, .calib_n_docs = 4,
                               .tune_epochs = 1, .n_threads = 2};
        rc = q35_quantize_model_opts(gg, q3, &o, &bpw, &rmse, &err);
        if (!rc) rc = q35_model_load(&qm, q3, NULL, &err);
        CHECKF(rc == 0, "%s: calibrated and tuned Q3_5: %s", c->label, err.msg);
        if (!rc) {
            double kl_plain = 0, kl_cal = 0;
            q35_model *pm = NULL;
            char pq[760];
            snprintf(pq, sizeof pq, "%s-plain.gguf", dir);
            rc = q35_quantize_model(gg, pq, "Q3_5", NULL, 2, NULL, NULL, &bpw, &rmse, &err);
            if (!rc) rc = q35_model_load(&pm, pq, NULL, &err);
            if (!rc) rc = q35_tune_loss(gg, pm, texts, lens, 4, 2, &kl_plain, &err);
            if (!rc) rc = q35_tune_loss(gg, qm, texts, lens, 4, 2, &kl_cal, &err);
            CHECKF(rc == 0 && kl_cal < kl_plain, "%s: calibrated KL %.4g, plain %.4g (%s)", c->label, kl_cal, kl_plain,
                   rc ? err.msg : "on the calibration text");
            printf("  Q3_5: KL to F32 on the calibration text %.4g plain, %.4g calibrated and tuned\n", kl_plain, kl_cal);
            q35_model_free(pm);
            unlink(pq);
        }
        q35_model_free(qm);
        unlink(q3);
    }
done:
    free(l_hf);
    free(l_gg);
    free(l_lc);
    free(l_f16);
    q35_model_free(hf);
    q35_model_free(gg);
}

/* Loading dir must fail with code and one line naming `names`. */
static void expect_fail(const char *label, const char *dir, int code, const char *names) {
    q35_model *m = NULL;
    q35_error err = {0};
    const int rc = q35_model_load(&m, dir, NULL, &err);
    CHECKF(rc == code && !m && !strchr(err.msg, '\n') && strstr(err.msg, names), "%s: rc %d (want %d): %s", label, rc,
           code, err.msg);
    q35_model_free(m);
}

/* Bad input: a case's folder with one edit each. */
static void hostile(void) {
    char dir[600], path[700];
    struct {
        const char *label;
        int base;           /* index into gen_cases */
        const char *skip;   /* a tensor left out */
        const char *extra;  /* config.json members instead of the case's (NULL: the case's) */
        int dim;            /* > 0: hidden_size in config.json contradicting the tensors */
        int code;
        const char *names;
    } bad[] = {
        {"a missing bias", 3, "layers.1.self_attn.k_proj.bias", NULL, 0, Q35_ERR_FORMAT, "blk.1.attn_k.bias"},
        {"a missing q norm", 4, "layers.0.self_attn.q_norm", NULL, 0, Q35_ERR_FORMAT, "blk.0.attn_q_norm.weight"},
        {"a missing post-FFN norm", 6, "layers.2.post_feedforward_layernorm", NULL, 0, Q35_ERR_FORMAT,
         "blk.2.post_ffw_norm.weight"},
        {"a missing fused qkv", 8, "layers.0.self_attn.qkv_proj", NULL, 0, Q35_ERR_FORMAT, "blk.0.attn_qkv.weight"},
        {"config.json's width against the tensors", 4, NULL, NULL, 96, Q35_ERR_FORMAT, "has shape"},
        {"YaRN for qwen2", 3, NULL, "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}", 0,
         Q35_ERR_UNSUPPORTED, "YaRN"},
        {"gemma3 with an attention soft-cap", 7, NULL,
         "\"sliding_window\":16,\"attn_logit_softcapping\":50.0,\"hidden_activation\":\"gelu_pytorch_tanh\"", 0,
         Q35_ERR_UNSUPPORTED, "attn_logit_softcapping"},
        {"gemma with another activation", 5, NULL, "\"hidden_activation\":\"relu\"", 0, Q35_ERR_UNSUPPORTED,
         "hidden_activation"},
        {"LongRoPE factors of the wrong length", 8, NULL,
         "\"partial_rotary_factor\":0.5,\"original_max_position_embeddings\":64,\"rope_scaling\":{\"type\":"
         "\"longrope\",\"short_factor\":[1.0,1.5,2.0],\"long_factor\":[1.5,3.0,6.0,12.0]}",
         0, Q35_ERR_FORMAT, "short_factor"},
        {"a negative window", 6, NULL, "\"sliding_window\":-4,\"hidden_activation\":\"gelu_pytorch_tanh\"", 0,
         Q35_ERR_FORMAT, "sliding_window"},
        {"a window that is not a number", 2, NULL, "\"sliding_window\":\"4096\"", 0, Q35_ERR_FORMAT,
         "sliding_window"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        arch_case c = gen_cases[bad[i].base];
        if (bad[i].extra) c.extra = bad[i].extra;
        snprintf(dir, sizeof dir, "%s/bad-%zu", tmpdir, i);
        mkdir(dir, 0755);
        gen_skip = bad[i].skip;
        const int gen = gen_folder(&c, dir, 5, gen_read_hp);
        gen_skip = NULL;
        if (gen) { /* the generator itself reads config.json: write it by hand */
            char cfg[4096];
            snprintf(path, sizeof path, "%s/config.json", dir);
            gen_config(&c, cfg, sizeof cfg);
            gen_write_file(path, cfg, strlen(cfg));
        }
        if (bad[i].dim) { /* config.json with another width, same tensors */
            arch_case w = c;
            char cfg[4096];
            w.dim = bad[i].dim;
            snprintf(path, sizeof path, "%s/config.json", dir);
            gen_config(&w, cfg, sizeof cfg);
            gen_write_file(path, cfg, strlen(cfg));
        }
        expect_fail(bad[i].label, dir, bad[i].code, bad[i].names);
    }
    /* GGUF: an architecture's required key missing, named with its prefix */
    q35_gguf_writer *wr = NULL;
    q35_error err = {0};
    snprintf(path, sizeof path, "%s/no-keys.gguf", tmpdir);
    int rc = q35_gguf_writer_new(&wr, &err);
    if (!rc) rc = q35_gguf_writer_set_str(wr, "general.architecture", "qwen3", &err);
    if (!rc) rc = q35_gguf_writer_set_u32(wr, "qwen3.embedding_length", 64, &err);
    if (!rc) rc = q35_gguf_writer_write(wr, path, &err);
    q35_gguf_writer_free(wr);
    CHECKF(rc == 0, "writing no-keys.gguf: %s", err.msg);
    expect_fail("GGUF without qwen3.context_length", path, Q35_ERR_FORMAT, "qwen3.context_length");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/q35-test-arch-XXXXXX");
    if (!mkdtemp(tmpdir)) return 2;
    const char *oracles = oracles_dir();
    char probe[1200];
    if (oracles) {
        snprintf(probe, sizeof probe, "%s/bin/llama-logits", oracles);
        if (access(probe, X_OK) != 0) oracles = NULL;
    }
    if (!oracles) SKIP("llama.cpp comparison: no oracles (../shared/oracles/setup.sh, $Q35_ORACLES)");
    for (size_t i = 0; i < sizeof gen_cases / sizeof gen_cases[0]; i++) check_case(&gen_cases[i], (int)i, oracles);
    hostile();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_END();
}
