/* test_quant.c — GPTQ for the Q3_5 family (src/quant/gptq.c) and
 * `q35 quantize --calib / --bpw-budget`: with a known H = X X^T the output
 * error ||(W - Q) X|| is well below plain (importance-weighted) rounding;
 * the factor U satisfies U^T U (H + damping) = I; a singular H is factored
 * after raising the damping, an indefinite one falls back to plain
 * rounding; the asymmetric target solves its normal equations and is W
 * when the inputs agree; calibration stages number the matrices, collect
 * only their own and pair exactly with a reference run; sequential
 * calibration does not depend on threads, leaves no stage file and beats
 * the one-run calibration on dev text; end-to-end tuning (src/quant/tune.c)
 * has the gradients of central differences, keeps every code, does not
 * depend on threads and lowers dev perplexity; bad flags get one line. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "clirun.h"
#include "format/q35fmt.h"
#include "model/model.h"
#include "quant/gptq.h"
#include "quant/imatrix.h"
#include "quant/tune.h"

static uint64_t rng = 0x243F6A8885A308D3ull;

static double uniform(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static double gauss(void) {
    const double u = uniform() + 1e-12, v = uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

enum { M = 48, N = 96, T = 400 };

/* H = X X^T of T correlated input vectors (x = A z, a few strong channels). */
static void make_hessian(double *H) {
    static double A[N][N], X[N][T];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < N; k++) A[i][k] = (i == k ? 1.0 : 0.0) + 0.3 * gauss() * (i % 7 == 0 ? 3.0 : 1.0);
    for (int t = 0; t < T; t++) {
        double z[N];
        for (int k = 0; k < N; k++) z[k] = gauss();
        for (int i = 0; i < N; i++) {
            double a = 0.0;
            for (int k = 0; k < N; k++) a += A[i][k] * z[k];
            X[i][t] = a;
        }
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < N; k++) {
            double a = 0.0;
            for (int t = 0; t < T; t++) a += X[i][t] * X[k][t];
            H[i * N + k] = a;
        }
}

static void test_gptq_beats_rounding(void) {
    static double H[N * N], U[N * N];
    static float W[M * N], back[M * N], imp[N];
    make_hessian(H);
    for (int i = 0; i < M * N; i++) W[i] = (float)gauss();
    for (int c = 0; c < N; c++) imp[c] = (float)(H[c * N + c] / T);
    q35_layout L;
    CHECK(q35_layout_init(&L, Q35_TYPE_Q3_5, N, M) == 0);
    uint8_t *plain = malloc(L.total_bytes), *g1 = malloc(L.total_bytes), *g3 = malloc(L.total_bytes);
    CHECK(q35_quantize_tensor(&L, W, imp, 2, plain, NULL) == 0);
    q35_dequantize_tensor(&L, plain, back);
    double e_plain, ref;
    q35_output_error(W, back, M, N, H, 2, &e_plain, &ref);
    const q35_gptq_params p = {0.01, 8}, p0 = {0.01, 0};
    q35_quant_stats st, st0;
    CHECK(q35_quantize_tensor_gptq(&L, W, NULL, H, &p0, 1, g1, &st0) == 0);
    CHECK(q35_quantize_tensor_gptq(&L, W, NULL, H, &p, 1, g1, &st) == 0);
    CHECK(q35_quantize_tensor_gptq(&L, W, NULL, H, &p, 3, g3, NULL) == 0);
    const char *why = NULL;
    CHECKF(q35_header_check(&L, g1, &why) == 0, "GPTQ header: %s", why ? why : "?");
    CHECKF(memcmp(g1, g3, L.total_bytes) == 0, "GPTQ output differs with 1 and 3 threads");
    CHECKF(fabs(st.href - ref) < 1e-9 * ref, "reference output energy %g vs %g", st.href, ref);
    /* output error relative to plain rounding: GPTQ well below, the
     * refinement below GPTQ alone */
    CHECKF(st0.herr < 0.8 * e_plain, "GPTQ output error %g, plain rounding %g", st0.herr, e_plain);
    CHECKF(st.herr < st0.herr, "refined %g, GPTQ alone %g", st.herr, st0.herr);
    printf("output error / plain rounding: GPTQ %.3f, refined %.3f\n", st0.herr / e_plain, st.herr / e_plain);

    /* the factor: U^T U (H + d mean(diag) I) = I */
    const double d = q35_gptq_factor(H, N, 0.01, 2, U);
    CHECK(d == 0.01);
    double mean = 0.0, worst = 0.0;
    for (int i = 0; i < N; i++) mean += H[i * N + i] / N;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < N; k++) {
            double a = 0.0; /* (U^T U H')_ik */
            for (int j = 0; j < N; j++) {
                double utu = 0.0;
                for (int r = 0; r <= (i < j ? i : j); r++) utu += U[r * N + i] * U[r * N + j];
                a += utu * (H[j * N + k] + (j == k ? d * mean : 0.0));
            }
            worst = fmax(worst, fabs(a - (i == k ? 1.0 : 0.0)));
        }
    CHECKF(worst < 1e-8, "U^T U H' differs from I by %g", worst);
    free(plain);
    free(g1);
    free(g3);
}

static void test_singular_and_indefinite(void) {
    enum { n = 64, m = 8 };
    static double H[n * n], U[n * n];
    static float W[m * n];
    for (int i = 0; i < n * n; i++) H[i] = 1.0; /* rank 1: exactly singular */
    CHECK(q35_gptq_factor(H, n, 0.0, 1, U) > 0.0);
    for (int i = 0; i < n; i++) /* indefinite beyond any damping tried */
        for (int k = 0; k < n; k++) H[i * n + k] = i == k ? 1.0 : 1000.0;
    CHECK(q35_gptq_factor(H, n, 0.01, 1, U) < 0.0);
    for (int i = 0; i < m * n; i++) W[i] = (float)gauss();
    q35_layout L;
    CHECK(q35_layout_init(&L, Q35_TYPE_Q3_5, n, m) == 0);
    uint8_t *out = malloc(L.total_bytes), *plain = malloc(L.total_bytes);
    const q35_gptq_params p = {0.01, 8};
    CHECK(q35_quantize_tensor_gptq(&L, W, NULL, H, &p, 2, out, NULL) == 0);
    float imp[n];
    for (int c = 0; c < n; c++) imp[c] = 1.0f;
    CHECK(q35_quantize_tensor(&L, W, imp, 2, plain, NULL) == 0);
    CHECKF(memcmp(out, plain, L.total_bytes) == 0, "indefinite H: not the plain rounding");
    free(out);
    free(plain);
}

/* sum over tokens of |W x_ref - V x|^2, X and R: T columns of n */
static double asym_loss(const float *W, const float *V, const double *X, const double *R, int m, int n, int T) {
    double loss = 0.0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < m; r++) {
            double e = 0.0;
            for (int k = 0; k < n; k++) e += (double)W[r * n + k] * R[k * T + t] - (double)V[r * n + k] * X[k * T + t];
            loss += e * e;
        }
    return loss;
}

/* The asymmetric target fits W x_ref from x: with x = (I + 0.3 B) x_ref +
 * noise it solves the normal equations V H = W K, removes most of the
 * loss that W keeps, is W itself when K = H, and does not depend on threads. */
static void test_asym_target(void) {
    enum { m = 8, n = 32, T = 2000 };
    static double X[n * T], R[n * T], B[n * n], H[n * n], K[n * n];
    static float W[m * n];
    for (int i = 0; i < n * n; i++) B[i] = gauss() / sqrt((double)n);
    for (int i = 0; i < n * T; i++) R[i] = gauss() * (1.0 + (i / T) % 3);
    for (int k = 0; k < n; k++)
        for (int t = 0; t < T; t++) {
            double a = R[k * T + t] + 0.01 * gauss();
            for (int j = 0; j < n; j++) a += 0.3 * B[k * n + j] * R[j * T + t];
            X[k * T + t] = a;
        }
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double h = 0.0, c = 0.0;
            for (int t = 0; t < T; t++) {
                h += X[a * T + t] * X[b * T + t];
                c += R[a * T + t] * X[b * T + t];
            }
            H[a * n + b] = h;
            K[a * n + b] = c;
        }
    for (int i = 0; i < m * n; i++) W[i] = (float)gauss();
    float *V = q35_gptq_asym_target(W, H, K, m, n, 1e-9, 2), *V1 = q35_gptq_asym_target(W, H, K, m, n, 1e-9, 1);
    float *same = q35_gptq_asym_target(W, H, H, m, n, 0.03, 2);
    CHECK(V && V1 && same);
    if (!V || !V1 || !same) return;
    const double before = asym_loss(W, W, X, R, m, n, T), after = asym_loss(W, V, X, R, m, n, T);
    CHECKF(after < 0.01 * before, "asymmetric target: loss %g against %g for W", after, before);
    double worst = 0.0, scale = 0.0;
    for (int r = 0; r < m; r++)
        for (int b = 0; b < n; b++) {
            double vh = 0.0, wk = 0.0;
            for (int a = 0; a < n; a++) {
                vh += (double)V[r * n + a] * H[a * n + b];
                wk += (double)W[r * n + a] * K[a * n + b];
            }
            worst = fmax(worst, fabs(vh - wk));
            scale = fmax(scale, fabs(wk));
        }
    CHECKF(worst < 1e-5 * scale, "V H - W K: %g of %g", worst, scale);
    CHECKF(memcmp(same, W, sizeof W) == 0, "K = H must give W itself");
    CHECKF(memcmp(V, V1, m * n * sizeof *V) == 0, "the target differs with 1 and 2 threads");
    free(V);
    free(V1);
    free(same);
}

/* Stages: the numbering of q35_quant_stage_of on stories260K; a stage's
 * imatrix collects only its matrices and tells sessions how deep to run;
 * paired with a reference run of the same model, K equals H exactly. */
static void test_stages(void) {
    char path[1024];
    shared_path(path, sizeof path, "models/stories260K/stories260K.bin");
    q35_model *m = NULL;
    q35_error err = {0};
    CHECKF(q35_model_load(&m, path, NULL, &err) == 0, "load: %s", err.msg);
    if (!m) return;
    CHECK(q35_quant_stages(m) == 4 * 5 + 1);
    static const struct { const char *name; int stage; } names[] = {
        {"token_embd.weight", 1},      {"blk.0.attn_q.weight", 1},   {"blk.0.attn_v.weight", 1},
        {"blk.0.attn_output.weight", 2}, {"blk.0.ffn_gate.weight", 3}, {"blk.0.ffn_up.weight", 3},
        {"blk.0.ffn_down.weight", 4},  {"blk.1.attn_k.weight", 5},   {"blk.4.ffn_down.weight", 20},
        {"output.weight", 21},         {"blk.5.attn_q.weight", 0},   {"blk.0.attn_norm.weight", 0},
        {"rope_freqs", 0}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECKF(q35_quant_stage_of(m, names[i].name) == names[i].stage, "stage of %s: %d, expected %d",
               names[i].name, q35_quant_stage_of(m, names[i].name), names[i].stage);
    q35_imatrix *bad = NULL;
    CHECK(q35_imatrix_new_stage(&bad, m, 0, 1, &err) != 0 && bad == NULL);
    CHECK(q35_imatrix_new_stage(&bad, m, 22, 1, &err) != 0 && bad == NULL);

    q35_imatrix *im = NULL, *rim = NULL, *first = NULL;
    q35_session *s = NULL, *rs = NULL;
    CHECK(q35_imatrix_new_stage(&first, m, 1, 1, &err) == 0 && first->depth == 0); /* the tied classifier */
    CHECK(q35_imatrix_new_stage(&im, m, 6, 2, &err) == 0 && im->depth == 2);       /* blk.1.attn_output */
    CHECK(q35_imatrix_new_reference(&rim, m, 6, &err) == 0 && rim->depth == 2);
    CHECK(q35_imatrix_pair(im, rim, &err) == 0);
    CHECK(q35_session_new(&s, m, 2, &err) == 0 && q35_session_new(&rs, m, 1, &err) == 0);
    if (s && rs && im && rim) {
        q35_session_set_imatrix(s, im);
        q35_session_set_imatrix(rs, rim);
        static const int toks[] = {1, 403, 407, 261, 284, 360, 375, 260, 378, 428};
        const float *logits;
        for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++)
            CHECK(q35_session_eval(rs, toks[i], &logits, &err) == 0 && q35_session_eval(s, toks[i], &logits, &err) == 0);
        CHECK(q35_imatrix_pair(im, NULL, &err) == 0);
        const q35_tensor *o = q35_weights_find(&m->weights, "blk.1.attn_output.weight");
        const q35_tensor *q = q35_weights_find(&m->weights, "blk.1.attn_q.weight");
        int64_t count = 0;
        const double *H = o ? q35_imatrix_hessian(im, (int)(o - m->weights.tensors), &count) : NULL;
        const double *K = o ? q35_imatrix_cross(im, (int)(o - m->weights.tensors)) : NULL;
        CHECKF(H && K && count == 10, "stage 6: H %p K %p from %lld vectors", (const void *)H, (const void *)K,
               (long long)count);
        if (H && K) CHECKF(memcmp(H, K, (size_t)(o->ne[0] * o->ne[0]) * sizeof *H) == 0, "the same inputs: K must be H");
        CHECK(q && q35_imatrix_hessian(im, (int)(q - m->weights.tensors), &count) == NULL);
    }
    q35_session_free(s);
    q35_session_free(rs);
    q35_imatrix_free(im);
    q35_imatrix_free(rim);
    q35_imatrix_free(first);
    q35_model_free(m);
}

static void test_cli(void) {
    char model[1024], calib[1024], a[600], b[600], imx[600];
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    shared_path(calib, sizeof calib, "data/tinystories-calib.txt");
    snprintf(a, sizeof a, "%s/a.gguf", tmpdir);
    snprintf(b, sizeof b, "%s/b.gguf", tmpdir);
    snprintf(imx, sizeof imx, "%s/x.imatrix", tmpdir);
    result r = run((const char *[]){"quantize", model, a, "--type", "Q3_5", "--calib", calib, "--calib-tokens",
                                    "400", "--bpw-budget", "3.75", "-t", "1", NULL});
    CHECKF(r.status == 0, "quantize --calib failed: %s", r.err);
    const char *p = strstr(r.out, "2-D tensors ");
    const double bpw = p ? atof(p + 12) : 0.0;
    CHECKF(bpw > 3.5 && bpw <= 3.75, "--bpw-budget 3.75 gave %.4f bits per weight", bpw);
    CHECKF(strstr(r.err, "Q4_5") != NULL, "no tensor was raised to Q4_5: %s", r.err);
    free_result(&r);
    r = run((const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib", calib, "--calib-tokens", "400",
                             "--bpw-budget", "3.75", "-t", "2", NULL});
    CHECKF(r.status == 0, "quantize -t 2 failed: %s", r.err);
    free_result(&r);
    size_t la, lb;
    char *da = read_all(a, &la), *db = read_all(b, &lb);
    CHECKF(la == lb && memcmp(da, db, la) == 0, "--calib output differs with 1 and 2 threads");
    char pass[700];
    snprintf(pass, sizeof pass, "%s.stage.gguf", a);
    FILE *leftover = fopen(pass, "rb");
    CHECKF(leftover == NULL, "the stages' file %s was left behind", pass);
    if (leftover) fclose(leftover);
    free(da);
    free(db);

    /* the sequential, asymmetric calibration must beat the one-run one on
     * text it did not see (measured: 5.84 against 6.01 on the first 300 dev
     * documents, 3000 calibration tokens; 5.87 in the sanitizer build, whose
     * float sums round differently) */
    char dev[1024], c[600], f[600];
    shared_path(dev, sizeof dev, "data/tinystories-dev.txt");
    snprintf(c, sizeof c, "%s/c.gguf", tmpdir);
    snprintf(f, sizeof f, "%s/f.gguf", tmpdir);
    double ppl[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        r = k ? run((const char *[]){"quantize", model, f, "--type", "Q3_5", "--calib", calib, "--calib-tokens", "3000",
                                     "--bpw-budget", "3.75", "--calib-fast", "--tune-epochs", "0", "-t", "2", NULL})
              : run((const char *[]){"quantize", model, c, "--type", "Q3_5", "--calib", calib, "--calib-tokens", "3000",
                                     "--bpw-budget", "3.75", "--tune-epochs", "0", "-t", "2", NULL});
        CHECKF(r.status == 0, "quantize %s failed: %s", k ? "--calib-fast" : "--calib", r.err);
        free_result(&r);
        r = run((const char *[]){"perplexity", "-m", k ? f : c, "-f", dev, "--chunks", "300", "-t", "2", NULL});
        const char *pp = strstr(r.out, "perplexity: ");
        ppl[k] = pp ? atof(pp + 12) : 0.0;
        free_result(&r);
    }
    CHECKF(ppl[0] > 0 && ppl[1] > 0 && ppl[0] < 0.99 * ppl[1],
           "sequential calibration %.4f, one run %.4f: not better by 1%%", ppl[0], ppl[1]);
    printf("dev perplexity, 3000 calibration tokens: sequential %.4f, one run %.4f\n", ppl[0], ppl[1]);

    fixture("x.imatrix", "x", 1);
    expect_error("--damp alone", "--calib", (const char *[]){"quantize", model, b, "--type", "Q3_5", "--damp", "0.1", NULL});
    expect_error("--calib-fast alone", "--calib",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib-fast", NULL});
    expect_error("--calib-tokens alone", "--calib", (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib-tokens", "9", NULL});
    expect_error("--tune-epochs alone", "--calib",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--tune-epochs", "2", NULL});
    expect_error("--tune-epochs -1", "--tune-epochs",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib", calib, "--tune-epochs", "-1", NULL});
    expect_error("--tune-lr 0", "--tune-lr",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib", calib, "--tune-lr", "0", NULL});
    expect_error("--tune-lr without tuning", "--tune-lr",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib", calib, "--tune-epochs", "0",
                                  "--tune-lr", "0.01", NULL});
    expect_error("--calib and --imatrix", "--imatrix",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib", calib, "--imatrix", imx, NULL});
    expect_error("missing calibration text", "nope.txt",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib", "nope.txt", NULL});
    expect_error("--damp 0", "--damp", (const char *[]){"quantize", model, b, "--type", "Q3_5", "--calib", calib, "--damp", "0", NULL});
    expect_error("--tensor-type without =", "ffn_down",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--tensor-type", "ffn_down", NULL});
    expect_error("--tensor-type bad type", "Q9_9",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--tensor-type", "ffn_down=Q9_9", NULL});
    expect_error("budget below the fixed types", "--bpw-budget",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--bpw-budget", "3.0", NULL});
    expect_error("budget not a number", "--bpw-budget",
                 (const char *[]){"quantize", model, b, "--type", "Q3_5", "--bpw-budget", "lots", NULL});
}

/* Every family tensor of a and b has the same codes (scales may differ). */
static int same_codes(const q35_model *a, const q35_model *b) {
    int same = 1;
    for (int i = 0; i < a->weights.n_tensors && same; i++) {
        const q35_tensor *ta = &a->weights.tensors[i], *tb = q35_weights_find(&b->weights, ta->name);
        if (!q35_is_family(ta->dtype)) continue;
        q35_layout L;
        if (!tb || tb->dtype != ta->dtype || q35_layout_init(&L, ta->dtype, ta->ne[0], ta->ne[1])) return 0;
        uint8_t *ca = malloc((size_t)L.np), *cb = malloc((size_t)L.np), *sa = malloc((size_t)L.n_blocks),
                *sb = malloc((size_t)L.n_blocks);
        same = memcmp(ta->data, tb->data, L.header_bytes) == 0;
        for (int64_t r = 0; r < L.m && same && ca && cb && sa && sb; r++) {
            q35_unpack_row(&L, (const uint8_t *)ta->data + L.header_bytes + r * L.row_bytes, ca, sa);
            q35_unpack_row(&L, (const uint8_t *)tb->data + L.header_bytes + r * L.row_bytes, cb, sb);
            same = memcmp(ca, cb, (size_t)L.np) == 0;
        }
        free(ca);
        free(cb);
        free(sa);
        free(sb);
    }
    return same;
}

static void test_tune(void) {
    char model[1024], calib[1024], dev[1024], u[600], t1[600], t2[600];
    shared_path(model, sizeof model, "models/stories260K/stories260K.bin");
    shared_path(calib, sizeof calib, "data/tinystories-calib.txt");
    shared_path(dev, sizeof dev, "data/tinystories-dev.txt");
    snprintf(u, sizeof u, "%s/u.gguf", tmpdir);
    snprintf(t1, sizeof t1, "%s/t1.gguf", tmpdir);
    snprintf(t2, sizeof t2, "%s/t2.gguf", tmpdir);
    const char *base[] = {"quantize", model, NULL, "--type", "Q2_5", "--calib", calib, "--calib-tokens", "3000",
                          "--bpw-budget", "2.75", "--tune-epochs", NULL, "-t", NULL, NULL};
    const char *outs[3] = {u, t1, t2}, *epochs[3] = {"0", "2", "2"}, *threads[3] = {"2", "1", "2"};
    for (int k = 0; k < 3; k++) {
        base[2] = outs[k];
        base[12] = epochs[k];
        base[14] = threads[k];
        result r = run(base);
        CHECKF(r.status == 0, "quantize --tune-epochs %s -t %s failed: %s", epochs[k], threads[k], r.err);
        free_result(&r);
    }
    size_t l1, l2;
    char *d1 = read_all(t1, &l1), *d2 = read_all(t2, &l2);
    CHECKF(d1 && d2 && l1 == l2 && memcmp(d1, d2, l1) == 0, "tuned output differs with 1 and 2 threads");
    free(d1);
    free(d2);
    char left[700];
    snprintf(left, sizeof left, "%s.untuned.gguf", t1);
    FILE *leftover = fopen(left, "rb");
    CHECKF(leftover == NULL, "the untuned file %s was left behind", left);
    if (leftover) fclose(leftover);

    q35_model *ref = NULL, *qu = NULL, *qt = NULL;
    q35_error err = {0};
    CHECKF(q35_model_load(&ref, model, NULL, &err) == 0 && q35_model_load(&qu, u, NULL, &err) == 0 &&
               q35_model_load(&qt, t1, NULL, &err) == 0,
           "load: %s", err.msg);
    if (ref && qu && qt) {
        CHECKF(same_codes(qu, qt), "tuning changed codes");
        int norms_moved = 0;
        for (int l = 0; l < qu->cfg.n_layers; l++)
            norms_moved += memcmp(qu->layers[l].b[0].vec, qt->layers[l].b[0].vec, qu->cfg.dim * sizeof(float)) != 0;
        CHECKF(norms_moved == qu->cfg.n_layers, "%d of %d attention norms tuned", norms_moved, qu->cfg.n_layers);
        static const char doc[] = "Once upon a time, there was a little girl named Lily. She loved to play outside "
                                  "in the park with her big red ball.";
        double an[12], nu[12], kl = 1.0;
        CHECKF(q35_tune_check_gradient(ref, qu, doc, sizeof doc - 1, 12, 1e-2, an, nu, &err) == 0, "%s", err.msg);
        double big = 0.0;
        for (int k = 0; k < 12; k++) big = fmax(big, fabs(nu[k]));
        for (int k = 0; k < 12; k++)
            CHECKF(fabs(an[k] - nu[k]) <= 0.03 * fabs(nu[k]) + 0.01 * big,
                   "parameter %d: backward pass %.6g, central difference %.6g", k, an[k], nu[k]);
        const char *docs[1] = {doc};
        const size_t lens[1] = {sizeof doc - 1};
        CHECK(q35_tune_loss(ref, ref, docs, lens, 1, 2, &kl, &err) == 0 && kl < 1e-9);
        CHECK(q35_tune_loss(ref, qu, docs, lens, 1, 2, &kl, &err) == 0 && kl > 0.01);
    }
    q35_model_free(ref);
    q35_model_free(qu);
    q35_model_free(qt);

    /* tuned beats untuned on text it did not see (measured: 10.60 against 11.90) */
    double ppl[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        result r = run((const char *[]){"perplexity", "-m", k ? t1 : u, "-f", dev, "--chunks", "300", "-t", "2", NULL});
        const char *pp = strstr(r.out, "perplexity: ");
        ppl[k] = pp ? atof(pp + 12) : 0.0;
        free_result(&r);
    }
    CHECKF(ppl[0] > 0 && ppl[1] > 0 && ppl[1] < 0.95 * ppl[0], "tuned %.4f, untuned %.4f: not better by 5%%", ppl[1],
           ppl[0]);
    printf("dev perplexity, Q2_5 budget 2.75, 3000 calibration tokens: untuned %.4f, tuned %.4f\n", ppl[0], ppl[1]);
}

int main(void) {
    if (clirun_init("test-quant")) return 2;
    test_gptq_beats_rounding();
    test_singular_and_indefinite();
    test_asym_target();
    test_stages();
    test_cli();
    test_tune();
    clirun_cleanup();
    TEST_END();
}
