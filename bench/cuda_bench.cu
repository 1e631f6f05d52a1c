/* cuda_bench.cu — the CUDA backend's speed on one model (a synthetic
 * llama2-7b Q3_5 from `q35 synth --shape llama2-7b`, say), beside the device's own
 * ceilings measured in the same run:
 *   1. device-to-device copy bandwidth (cudaMemcpy, bytes read + written);
 *   2. the decode GEMV kernels: weight bytes / kernel time per matrix kind
 *      and for all matrices, 1, 2 and 4 rows per warp and the default,
 *      as a fraction of the copy bandwidth;
 *   3. tg: tokens/s of whole forward passes (CUDA graph on and off, with
 *      and without programmatic dependent launch), the
 *      roofline (copy bandwidth / bytes read per token) and its fraction;
 *   4. pp512: 512 prompt tokens through the same path (no batched path yet);
 *   5. the vendor baseline: the same matrix shapes in F16 through cuBLAS
 *      (cublasGemmEx, fp32 accumulation): N=1 products per token (tg
 *      upper bound: matrices only) and N=512 (pp512, matrices only).
 *   cuda_bench MODEL [--tg N] [--pp N] [--no-cublas]
 * Markdown tables on stdout. */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
#include "cuda/cuda_backend.h"
}
#ifndef Q35_CUDA_GEMV_DEFAULT
#define Q35_CUDA_GEMV_DEFAULT 0 /* as in src/cuda/cuda_backend.cu */
#endif
#include "benchtime.h"
#include "q35.h"

#define CU(call)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "cuda_bench: %s: %s\n", #call, cudaGetErrorString(e_));     \
            return -1;                                                                  \
        }                                                                               \
    } while (0)

/* Device-to-device copy: (read + written bytes) / median time, GB/s. */
static int copy_bandwidth(double *gbs) {
    const size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CU(cudaMalloc(&a, bytes));
    CU(cudaMalloc(&b, bytes));
    CU(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    double t[11];
    for (int i = -2; i < 11; i++) {
        CU(cudaEventRecord(e0));
        CU(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
        CU(cudaEventRecord(e1));
        CU(cudaEventSynchronize(e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 0) t[i] = ms * 1e-3;
    }
    qsort(t, 11, sizeof t[0], bench_cmp_double);
    *gbs = 2.0 * (double)bytes / t[5] / 1e9;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return 0;
}

__global__ void fill_half(__half *p, size_t n, uint64_t seed, float scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        p[i] = __float2half(((float)(x >> 40) / 16777216.0f * 2.0f - 1.0f) * scale);
    }
}

/* cuBLAS F16 at the model's shapes: seconds for one pass over every matrix
 * with N columns of input (median of reps), and the weight bytes. */
static int cublas_pass(const q35_config *c, int N, int reps, double *seconds, double *bytes) {
    const int d = c->dim, h = c->hidden_dim, kv = c->n_kv_heads * c->head_dim, qd = c->n_heads * c->head_dim;
    struct shape { int m, k; } per_layer[7] = {{qd, d}, {kv, d}, {kv, d}, {d, qd}, {h, d}, {h, d}, {d, h}};
    const int nm = 7 * c->n_layers + 1;
    __half **W = (__half **)calloc((size_t)nm, sizeof *W);
    struct shape *sh = (struct shape *)calloc((size_t)nm, sizeof *sh);
    *bytes = 0;
    int maxk = h > d ? h : d, maxm = c->vocab_size > h ? c->vocab_size : h;
    for (int i = 0; i < nm; i++) {
        sh[i] = i < nm - 1 ? per_layer[i % 7] : (struct shape){c->vocab_size, d};
        const size_t n = (size_t)sh[i].m * (size_t)sh[i].k;
        CU(cudaMalloc((void **)&W[i], n * sizeof(__half)));
        fill_half<<<1024, 256>>>(W[i], n, (uint64_t)i, 1.0f / 64.0f);
        *bytes += (double)n * 2.0;
    }
    __half *X, *Y;
    CU(cudaMalloc((void **)&X, (size_t)maxk * N * sizeof(__half)));
    CU(cudaMalloc((void **)&Y, (size_t)maxm * N * sizeof(__half)));
    fill_half<<<256, 256>>>(X, (size_t)maxk * N, 99, 1.0f);
    CU(cudaDeviceSynchronize());
    cublasHandle_t hnd;
    if (cublasCreate(&hnd) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cuda_bench: cublasCreate failed\n");
        return -1;
    }
    const float one = 1.0f, zero = 0.0f;
    double *t = (double *)malloc((size_t)reps * sizeof *t);
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    for (int r = -1; r < reps; r++) {
        CU(cudaEventRecord(e0));
        for (int i = 0; i < nm; i++) {
            /* row-major W (m x k) is column-major k x m: Y = W^T' X */
            cublasStatus_t st = cublasGemmEx(hnd, CUBLAS_OP_T, CUBLAS_OP_N, sh[i].m, N, sh[i].k, &one, W[i],
                                             CUDA_R_16F, sh[i].k, X, CUDA_R_16F, sh[i].k, &zero, Y,
                                             CUDA_R_16F, sh[i].m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            if (st != CUBLAS_STATUS_SUCCESS) {
                fprintf(stderr, "cuda_bench: cublasGemmEx failed (%d)\n", (int)st);
                return -1;
            }
        }
        CU(cudaEventRecord(e1));
        CU(cudaEventSynchronize(e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 0) t[r] = ms * 1e-3;
    }
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    *seconds = t[reps / 2];
    free(t);
    cublasDestroy(hnd);
    for (int i = 0; i < nm; i++) cudaFree(W[i]);
    cudaFree(X);
    cudaFree(Y);
    free(W);
    free(sh);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 0;
}

/* tokens/s of n evals from position 0 (after one warm-up token). */
static int tokens_per_s(q35_session *s, int n, int vocab, double *tps) {
    q35_error err; memset(&err, 0, sizeof err);
    const float *lg;
    q35_session_reset(s);
    if (q35_session_eval(s, 1, &lg, &err)) {
        fprintf(stderr, "cuda_bench: %s\n", err.msg);
        return -1;
    }
    q35_session_reset(s);
    const double t0 = bench_now();
    for (int i = 0; i < n; i++)
        if (q35_session_eval(s, 3 + (int)((i * 7919u) % (unsigned)(vocab - 3)), &lg, &err)) {
            fprintf(stderr, "cuda_bench: %s\n", err.msg);
            return -1;
        }
    *tps = n / (bench_now() - t0);
    return 0;
}

static int tokens_per_s_backend(q35_cuda *g, int n, int vocab, float *logits, double *tps) {
    q35_error err; memset(&err, 0, sizeof err);
    if (q35_cuda_eval(g, 1, 0, NULL, logits, &err)) {
        fprintf(stderr, "cuda_bench: %s\n", err.msg);
        return -1;
    }
    const double t0 = bench_now();
    for (int i = 0; i < n; i++)
        if (q35_cuda_eval(g, 3 + (int)((i * 7919u) % (unsigned)(vocab - 3)), i, NULL, logits, &err)) {
            fprintf(stderr, "cuda_bench: %s\n", err.msg);
            return -1;
        }
    *tps = n / (bench_now() - t0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cuda_bench MODEL [--tg N] [--pp N] [--no-cublas]\n");
        return 1;
    }
    int n_tg = 128, n_pp = 512, use_cublas = 1;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--tg") && i + 1 < argc) n_tg = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pp") && i + 1 < argc) n_pp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-cublas")) use_cublas = 0;
    }
    q35_error err; memset(&err, 0, sizeof err);
    char info[512];
    if (q35_cuda_device_info(info, sizeof info, &err)) {
        printf("cuda_bench: skipped: no CUDA device (%s)\n", err.msg);
        return 0;
    }
    printf("device: %s\n", info);
    double copy_gbs = 0;
    if (copy_bandwidth(&copy_gbs)) return 1;
    printf("device-to-device copy: %.0f GB/s (bytes read + written, 1 GiB, median of 11)\n\n", copy_gbs);

    q35_model *m = NULL;
    double t0 = bench_now();
    if (q35_model_load(&m, argv[1], NULL, &err)) {
        fprintf(stderr, "cuda_bench: %s\n", err.msg);
        return 1;
    }
    const q35_config cfg = *q35_model_config(m), *c = &cfg; /* outlives the model */
    printf("model: %s: dim %d, hidden %d, %d layers, %d heads, vocab %d, %.2f GB of weights read per "
           "token (loaded in %.1f s)\n\n",
           argv[1], c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->vocab_size,
           (double)q35_model_weight_bytes(m) / 1e9, bench_now() - t0);

    /* 2. GEMV kernels */
    q35_cuda *g = NULL;
    t0 = bench_now();
    if (q35_cuda_new(&g, m, c->n_layers, NULL, &err)) {
        fprintf(stderr, "cuda_bench: %s\n", err.msg);
        return 1;
    }
    printf("uploaded in %.1f s: %s\n\n", bench_now() - t0, q35_cuda_describe(g));
    /* one large random matrix per kernel: the steady-state bandwidth */
    struct { int v, r; const char *name; } vs[] = {{0, 1, "v0 R=1"}, {0, 2, "v0 R=2"}, {0, 4, "v0 R=4"},
                                                   {1, 1, "v1 R=1"}, {1, 2, "v1 R=2"}, {2, 1, "v2 R=1"}};
    const int nvs = (int)(sizeof vs / sizeof vs[0]);
    printf("decode GEMV kernels (v0: one group of 64 columns per lane in flight; v1: two; v2: four;\n"
           "R: rows per warp), weight bytes / kernel time (event-timed, median), GB/s and fraction of the copy\n\n");
    printf("| matrix |");
    for (int i = 0; i < nvs; i++) printf(" %s |", vs[i].name);
    printf("\n|---|");
    for (int i = 0; i < nvs; i++) printf("---:|");
    printf("\n");
    struct { int64_t n, m; } big[] = {{4096, 262144}, {11008, 98304}};
    for (int b = 0; b < 2; b++) {
        printf("| Q3_5 %lld x %lld, one launch |", (long long)big[b].m, (long long)big[b].n);
        for (int i = 0; i < nvs; i++) {
            double bytes = 0, sec = 0;
            if (q35_cuda_bench_gemv_synth(3535, big[b].n, big[b].m, vs[i].v, vs[i].r, 9, &bytes, &sec, &err)) {
                fprintf(stderr, "cuda_bench: %s\n", err.msg);
                return 1;
            }
            printf(" %.0f (%.0f%%) |", bytes / sec / 1e9, 100.0 * bytes / sec / 1e9 / copy_gbs);
        }
        printf("\n");
        fflush(stdout);
    }
    const char *kinds[] = {"attn_q", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output.weight", NULL};
    const char *labels[] = {"attn_q (32 x 7.3 MB)", "attn_output", "ffn_gate (32 x 19.7 MB)", "ffn_up",
                            "ffn_down", "classifier (57 MB)", "all matrices of a token"};
    double best_all = 1e30, all_bytes = 0, all_default_s = 0;
    int best_v = 1;
    for (int k = 0; k < 7; k++) {
        printf("| %s |", labels[k]);
        for (int i = 0; i < nvs; i++) {
            double bytes = 0, sec = 0;
            if (q35_cuda_bench_gemv(g, vs[i].v, vs[i].r, kinds[k], 20, &bytes, &sec, &err)) {
                fprintf(stderr, "cuda_bench: %s\n", err.msg);
                return 1;
            }
            printf(" %.0f (%.0f%%) |", bytes / sec / 1e9, 100.0 * bytes / sec / 1e9 / copy_gbs);
            if (k == 6 && sec < best_all) {
                best_all = sec;
                all_bytes = bytes;
                best_v = vs[i].v;
            }
        }
        printf("\n");
        fflush(stdout);
    }
    all_default_s = best_all;
    printf("\nGEMV kernels of one token, back to back, fastest kernel: %.3f ms = %.0f tokens/s if nothing else "
           "ran\n\n", all_default_s * 1e3, 1.0 / all_default_s);

    /* 3. tg through the backend (each GEMV kernel; graph on / off; PDL) and the session */
    float *logits = (float *)malloc((size_t)c->vocab_size * sizeof *logits);
    double tg_v[3][2], tg_nograph = 0, tg_session = 0, pp_session = 0;
    int pdl = 0;
    for (int v = 0; v < 3; v++) {
        q35_cuda_use_gemv(g, v);
        for (int p = 0; p < 2; p++) {
            tg_v[v][p] = 0;
            if (q35_cuda_use_pdl(g, p) != p) continue;
            pdl |= p;
            if (tokens_per_s_backend(g, n_tg, c->vocab_size, logits, &tg_v[v][p])) return 1;
        }
        q35_cuda_use_pdl(g, 0);
    }
    q35_cuda_use_gemv(g, best_v);
    q35_cuda_use_graph(g, 0);
    if (tokens_per_s_backend(g, n_tg, c->vocab_size, logits, &tg_nograph)) return 1;
    q35_cuda_use_graph(g, 1);
    const double bpt = q35_cuda_bytes_per_token(g, n_tg / 2);
    q35_cuda_free(g);
    g = NULL;
    q35_session *s = NULL;
    if (q35_session_new_gpu(&s, m, -1, 0, &err)) {
        fprintf(stderr, "cuda_bench: %s\n", err.msg);
        return 1;
    }
    if (tokens_per_s(s, n_tg, c->vocab_size, &tg_session)) return 1;
    if (tokens_per_s(s, n_pp, c->vocab_size, &pp_session)) return 1;
    q35_session_free(s);
    const double roof = copy_gbs * 1e9 / bpt;
    printf("| test | tokens/s | roofline tokens/s | fraction |\n|---|---:|---:|---:|\n");
    printf("| tg%d, q35_session_eval (defaults: CUDA graph, GEMV v%d, no PDL) | %.1f | %.1f | %.1f%% |\n", n_tg,
           Q35_CUDA_GEMV_DEFAULT, tg_session, roof, 100 * tg_session / roof);
    for (int v = 0; v < 3; v++)
        for (int p = 0; p <= pdl; p++)
            printf("| tg%d, backend, CUDA graph, GEMV v%d%s | %.1f | %.1f | %.1f%% |\n", n_tg, v,
                   p ? " + programmatic dependent launch" : "", tg_v[v][p], roof, 100 * tg_v[v][p] / roof);
    printf("| tg%d, backend, no graph, GEMV v%d | %.1f | %.1f | %.1f%% |\n", n_tg, best_v, tg_nograph, roof,
           100 * tg_nograph / roof);
    printf("| pp%d (token by token: no batched path) | %.1f | | |\n", n_pp, pp_session);
    printf("\nroofline: copy bandwidth / %.3f GB read per token (weights + KV cache at position %d)\n\n",
           bpt / 1e9, n_tg / 2);
    free(logits);
    q35_model_free(m);

    /* 5. cuBLAS F16 */
    if (use_cublas) {
        double s1 = 0, b1 = 0, sp = 0, bp = 0;
        if (cublas_pass(c, 1, 20, &s1, &b1) || cublas_pass(c, 512, 5, &sp, &bp)) return 1;
        printf("cuBLAS F16 (cublasGemmEx, fp32 accumulate), the same matrices, matrix products only:\n\n");
        printf("| test | tokens/s | GB/s | of copy |\n|---|---:|---:|---:|\n");
        printf("| tg (N=1 per matrix, %.2f GB) | %.1f | %.0f | %.1f%% |\n", b1 / 1e9, 1.0 / s1, b1 / s1 / 1e9,
               100 * b1 / s1 / 1e9 / copy_gbs);
        printf("| pp512 (N=512 per matrix) | %.0f | | |\n", 512.0 / sp);
        printf("| Q3_5 GEMV kernels, same matrices (%.2f GB) | %.1f | %.0f | %.1f%% |\n", all_bytes / 1e9,
               1.0 / all_default_s, all_bytes / all_default_s / 1e9, 100 * all_bytes / all_default_s / 1e9 / copy_gbs);
    }
    return 0;
}
