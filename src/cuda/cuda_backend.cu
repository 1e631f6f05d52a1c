/* cuda_backend.cu — the CUDA backend: weights and KV cache on the device,
 * one token's forward pass as a chain of kernels (captured once as a CUDA
 * graph and replayed per token). See cuda_backend.h and q35cuda_core.cuh.
 *
 * Per layer: prep (RMSNorm + gather into each matrix's column order +
 * int8 quantization per block of 32, for Q, K and V at once) -> GEMV of
 * Q, K, V in one launch -> RoPE and the KV-cache store -> attention (one
 * block per head) -> prep -> GEMV of the output projection, added to the
 * residual -> prep (RMSNorm) -> GEMV of gate and up -> prep (SwiGLU) ->
 * GEMV of down, added to the residual. Token and position live in device
 * memory, so the graph is position-independent. */
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "core/error.h"
#include "format/dtype.h"
#include "kernels/q35dot.h"
#include "model/model.h"
}
#include "cuda/cuda_backend.h"
#include "cuda/q35cuda_core.cuh"

#define WARPS 8                 /* warps per block of the GEMV and prep kernels */
#ifndef Q35_CUDA_GEMV_DEFAULT
#define Q35_CUDA_GEMV_DEFAULT 0 /* family GEMV kernel variant (launch_fam_t): v0 measured fastest on an H100 */
#endif
#define THREADS (WARPS * 32)

/* ------------------------------------------------------------------ errors */

static int cuda_code(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation: return Q35_ERR_NOMEM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorCallRequiresNewerDriver:
        return Q35_ERR_UNSUPPORTED;
    default: return Q35_ERR_DEVICE;
    }
}

static int cuda_fail(q35_error *err, cudaError_t e, const char *what) {
    return q35_fail(err, cuda_code(e), "CUDA: %s: %s (%s)", what, cudaGetErrorString(e),
                    cudaGetErrorName(e));
}

#define CK(call, what)                                                       \
    do {                                                                     \
        cudaError_t e_ = (call);                                             \
        if (e_ != cudaSuccess) return cuda_fail(err, e_, what);              \
    } while (0)

/* ------------------------------------------------------- device structures */

/* One matrix on the device: F32 rows (ld floats apart, zero-padded to a
 * multiple of 4) or a family matrix (q35c_fam). */
struct dmat {
    const q35_matrix *src;
    int f32;
    float *w;
    int ld;
    int64_t m;
    int n;
    q35c_fam F;
    uint64_t bytes; /* device bytes of the weights one product reads */
};

struct dlayer {
    dmat wq, wk, wv, wo, gate, down, up;
    float *attn_norm, *ffn_norm;
};

/* One quantized activation vector (q35cuda_core.cuh's layouts). */
struct dact {
    int8_t *qn, *qp;
    float *ad;
    int32_t *asum;
};

struct q35_cuda {
    const q35_model *m;
    int n_layers, full, dev;
    char desc[256];
    cudaStream_t st;
    cudaGraphExec_t gexec;
    int use_graph, pdl;
    int variant;     /* family GEMV kernel (launch_fam_t) */
    uint64_t limit, used;
    void **allocs;
    int n_allocs, cap_allocs;
    dmat embd, out;
    float *out_norm;
    dlayer *L;
    /* activations (dim, q_dim, hidden rounded up to multiples of 4, zero-padded) */
    float *x, *xb, *q, *kcur, *vcur, *attn_out, *hb, *hb2, *hs, *logits, *att;
    float *kc, *vc;  /* (n_layers, seq_len, kv_dim) */
    dact act[3];
    int max_ngt;
    int *tp;         /* device: token, pos */
    int *h_tp;       /* pinned */
    float *h_io;     /* pinned: dim or vocab floats */
    uint8_t *stage;  /* host staging for the repacked family matrices */
    size_t stage_cap;
};

static int dalloc(q35_cuda *g, void **p, size_t bytes, const char *what, q35_error *err) {
    *p = NULL;
    if (bytes == 0) bytes = 16;
    if (g->limit && g->used + bytes > g->limit)
        return q35_fail(err, Q35_ERR_NOMEM,
                        "CUDA: out of device memory for %s (%.1f MiB more than the %.1f MiB "
                        "allowed by Q35_CUDA_MAX_BYTES)",
                        what, (double)bytes / 1048576.0, (double)g->limit / 1048576.0);
    if (g->n_allocs == g->cap_allocs) {
        int cap = g->cap_allocs ? 2 * g->cap_allocs : 256;
        void **grown = (void **)realloc(g->allocs, (size_t)cap * sizeof *grown);
        if (!grown) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        g->allocs = grown;
        g->cap_allocs = cap;
    }
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return q35_fail(err, e == cudaErrorMemoryAllocation ? Q35_ERR_NOMEM : cuda_code(e),
                        "CUDA: out of device memory for %s: %.1f MiB wanted, %.1f MiB free of "
                        "%.1f MiB (%s)",
                        what, (double)bytes / 1048576.0, (double)fr / 1048576.0,
                        (double)tot / 1048576.0, cudaGetErrorName(e));
    }
    g->allocs[g->n_allocs++] = *p;
    g->used += bytes;
    CK(cudaMemset(*p, 0, bytes), "clearing device memory");
    return Q35_OK;
}

#define DALLOC(ptr, bytes, what)                                              \
    do {                                                                      \
        int rc_ = dalloc(g, (void **)&(ptr), (bytes), (what), err);           \
        if (rc_) return rc_;                                                  \
    } while (0)

/* ------------------------------------------------------------ host repack */

static void fam_set_base(q35c_fam *F, uint8_t *base) {
    const uint64_t m = (uint64_t)F->m;
    F->sc = base;
    F->low = F->sc + m * (uint64_t)F->sc_stride;
    F->plane = F->low + m * (uint64_t)F->low_stride;
    F->plus = F->plane + m * (uint64_t)F->plane_stride;
}

static uint64_t fam_layout(q35c_fam *F, const q35_layout *L) {
    return q35c_fam_layout(F, L->type, L->b, L->low_bits, L->n, L->m, L->np, L->n4, L->n_blocks);
}

/* Rows as stored -> sections (F's strides), zero padding. */
static void repack(const q35_layout *L, const uint8_t *rows, const q35c_fam *F, uint8_t *dst) {
    q35c_fam D = *F;
    fam_set_base(&D, dst);
    const size_t nsc = (size_t)L->n_blocks, nlow = (size_t)(L->np * L->low_bits / 8),
                 nplane = (size_t)(L->plus_off - L->plane_off), nplus = (size_t)(L->n4 / 8);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < L->m; r++) {
        const uint8_t *s = rows + (uint64_t)r * L->row_bytes;
        uint8_t *sc = (uint8_t *)D.sc + (uint64_t)r * (uint64_t)D.sc_stride;
        uint8_t *low = (uint8_t *)D.low + (uint64_t)r * (uint64_t)D.low_stride;
        uint8_t *plane = (uint8_t *)D.plane + (uint64_t)r * (uint64_t)D.plane_stride;
        uint8_t *plus = (uint8_t *)D.plus + (uint64_t)r * (uint64_t)D.plus_stride;
        memcpy(sc, s, nsc);
        memset(sc + nsc, 0, (size_t)D.sc_stride - nsc);
        memcpy(low, s + L->low_off, nlow);
        memset(low + nlow, 0, (size_t)D.low_stride - nlow);
        if (D.plane_stride) {
            memcpy(plane, s + L->plane_off, nplane);
            memset(plane + nplane, 0, (size_t)D.plane_stride - nplane);
        }
        if (D.plus_stride) {
            memcpy(plus, s + L->plus_off, nplus);
            memset(plus + nplus, 0, (size_t)D.plus_stride - nplus);
        }
    }
}

/* ------------------------------------------------------------------ kernels */

/* Programmatic dependent launch (sm_90): with it on, a kernel may start
 * while the one before it in the stream finishes; every kernel waits here
 * for its predecessor's completion (and memory) before touching anything
 * it wrote or reads. Without the launch attribute these are no-ops. */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ int warp_isum(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum (or max) over the block; every thread gets the result. red: 32 floats. */
__device__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}
__device__ float block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

/* ---- prep: the input vector of up to three matrices, quantized ---- */

enum { PREP_COPY = 0, PREP_NORM = 1, PREP_SWIGLU = 2 };

struct prep_arg {
    const int32_t *perm;
    int n, np, nb, ngt;
    int8_t *qn, *qp;
    float *ad;
    int32_t *asum;
};

struct prep_set {
    prep_arg a[3];
    int n;
    int warp0[4];  /* first global warp of matrix k's blocks */
    int mode;
    const float *x, *w, *u; /* COPY: x; NORM: x, weight w; SWIGLU: gate x, up u */
    int dim;
    float eps;
    float *xout;   /* when set, the whole transformed vector (dim) */
};

__device__ __forceinline__ float prep_value(const prep_set &P, int c, float scale) {
    if (P.mode == PREP_NORM) return P.w[c] * (scale * P.x[c]);
    if (P.mode == PREP_SWIGLU) {
        const float gv = P.x[c];
        return gv * (1.0f / (1.0f + expf(-gv))) * P.u[c];
    }
    return P.x[c];
}

__global__ void __launch_bounds__(THREADS) k_prep(const __grid_constant__ prep_set P) {
    __shared__ float red[32];
    pdl_wait();
    float scale = 1.0f;
    if (P.mode == PREP_NORM) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < P.dim; i += blockDim.x) ss += P.x[i] * P.x[i];
        ss = block_sum(ss, red);
        scale = 1.0f / sqrtf(ss / (float)P.dim + P.eps);
    }
    if (P.xout)
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < P.dim; i += gridDim.x * blockDim.x)
            P.xout[i] = prep_value(P, i, scale);
    const int gw = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    int k = 0;
    while (k < P.n && gw >= P.warp0[k + 1]) k++;
    if (k >= P.n) return;
    const prep_arg &A = P.a[k];
    const int b = gw - P.warp0[k], j = 32 * b + lane;
    const int c = j < A.np ? A.perm[j] : A.n;
    const float v = c < A.n ? prep_value(P, c, scale) : 0.0f;
    /* exactly q35_quantize_act_ref: max is order-free, the sum is integer */
    const float amax = warp_max(fabsf(v));
    const float id = amax > 0.0f && 127.0f / amax <= FLT_MAX ? 127.0f / amax : 0.0f;
    float qf = rintf(v * id);
    qf = qf > 127.0f ? 127.0f : qf < -127.0f ? -127.0f : qf;
    const int qi = (int)qf;
    const int s = warp_isum(qi);
    A.qn[q35c_act_index(j, A.ngt)] = (int8_t)qi;
    A.qp[q35c_act_index(q35c_plane_pos(j), A.ngt)] = (int8_t)qi;
    if (lane == 0) {
        A.ad[b] = amax / 127.0f;
        A.asum[b] = s;
    }
}

/* ---- GEMV: family matrices ---- */

struct fam_arg {
    q35c_fam F;
    const int8_t *qn, *qp;
    const float *ad;
    const int32_t *asum;
    float *out;
    int add;       /* out += W x instead of out = W x */
};

struct fam_set {
    fam_arg a[3];
    int n;
    int cta0[4];   /* first block of matrix k */
};

/* The end of both GEMV versions: a short last group through the
 * per-column path (on the lane whose turn it would be), then each row's
 * warp sum stored (or added). */
template <int TYPE, int R>
__device__ __forceinline__ void gemv_finish(const fam_arg &A, const int64_t *rows, float *acc, const float *tab,
                                            int ngf, int ngt, int lane, int64_t row0) {
    typedef q35c_type<TYPE> T;
    const q35c_fam &F = A.F;
    if (ngt > ngf && lane == (ngf & 31)) {
        for (int bk = 2 * ngf; bk < F.nb; bk++) {
            const int top = (1 << (T::B + (bk * 32 < F.n4))) - 1;
            const float dd = A.ad[bk];
            const int32_t su = A.asum[bk];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const int32_t Sb = q35c_block_sum_slow(F, rows[r], bk, A.qn);
                acc[r] += tab[F.sc[(uint64_t)rows[r] * F.sc_stride + bk]] * dd * (float)(2 * Sb - top * su);
            }
        }
    }
    pdl_trigger();
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0 && row0 + r < F.m) A.out[row0 + r] = A.add ? A.out[row0 + r] + v : v;
    }
}

/* Rows row0 .. row0+R-1 of one matrix per warp; lane l takes groups l,
 * l + 32, ...; a short last group goes through the per-column path. */
template <int TYPE, int R>
__global__ void __launch_bounds__(THREADS) k_gemv_fam(const __grid_constant__ fam_set S) {
    typedef q35c_type<TYPE> T;
    __shared__ float tab[256];
    int k = 0;
    while (k + 1 < S.n && (int)blockIdx.x >= S.cta0[k + 1]) k++;
    const fam_arg &A = S.a[k];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) tab[i] = A.F.table[i];
    __syncthreads();
    pdl_wait();
    const int lane = threadIdx.x & 31;
    const int64_t row0 =
        ((int64_t)(blockIdx.x - S.cta0[k]) * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R;
    if (row0 >= A.F.m) return;
    const q35c_fam &F = A.F;
    const int ngf = F.np >> 6, ngt = (F.np + 63) >> 6;
    int64_t rows[R];
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        rows[r] = row0 + r < F.m ? row0 + r : F.m - 1;
        acc[r] = 0.0f;
    }
    for (int g = lane; g < ngf; g += 32) {
        const bool plus0 = g * 64 < F.n4, plus1 = g * 64 + 32 < F.n4;
        uint32_t lw[R][2 * T::LB], sc[R];
        uint2 pl[R], px[R];
#pragma unroll
        for (int r = 0; r < R; r++) q35c_load_group<TYPE>(F, rows[r], g, lw[r], pl[r], px[r], sc[r]);
        uint32_t an[16], ap[16];
        q35c_load_acts(A.qn, A.qp, ngt, g, T::PLANE || plus0, an, ap);
        const float2 d = __ldg((const float2 *)A.ad + g);
        const int2 su = __ldg((const int2 *)A.asum + g);
        const int top0 = (1 << (T::B + plus0)) - 1, top1 = (1 << (T::B + plus1)) - 1;
#pragma unroll
        for (int r = 0; r < R; r++) {
            int32_t S0, S1;
            q35c_group_sums<T::LB, T::B, T::PLANE>(lw[r], pl[r].x, pl[r].y, px[r].x, px[r].y, plus0,
                                                   plus1, an, ap, S0, S1);
            acc[r] += tab[sc[r] & 0xFF] * d.x * (float)(2 * S0 - top0 * su.x);
            acc[r] += tab[sc[r] >> 8] * d.y * (float)(2 * S1 - top1 * su.y);
        }
    }
    gemv_finish<TYPE, R>(A, rows, acc, tab, ngf, ngt, lane, row0);
}

/* The same product, second version: each row's section pointers are
 * set up once, and each lane loads U groups (U * 32 apart) before it
 * works on any of them, so more bytes are in flight per warp. */
template <int TYPE, int R, int U>
__global__ void __launch_bounds__(THREADS) k_gemv_fam2(const __grid_constant__ fam_set S) {
    typedef q35c_type<TYPE> T;
    const int LB = T::LB, LW = 2 * T::LB;
    __shared__ float tab[256];
    int k = 0;
    while (k + 1 < S.n && (int)blockIdx.x >= S.cta0[k + 1]) k++;
    const fam_arg &A = S.a[k];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) tab[i] = A.F.table[i];
    __syncthreads();
    pdl_wait();
    const int lane = threadIdx.x & 31;
    const int64_t row0 =
        ((int64_t)(blockIdx.x - S.cta0[k]) * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R;
    if (row0 >= A.F.m) return;
    const q35c_fam &F = A.F;
    const int ngf = F.np >> 6, ngt = (F.np + 63) >> 6, n4 = F.n4;
    const uint4 *lowp[R];
    const uint2 *plp[R], *pxp[R];
    const uint16_t *scp[R];
    int64_t rows[R];
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        rows[r] = row0 + r < F.m ? row0 + r : F.m - 1;
        lowp[r] = (const uint4 *)(F.low + (uint64_t)rows[r] * (uint64_t)F.low_stride);
        plp[r] = (const uint2 *)(F.plane + (uint64_t)rows[r] * (uint64_t)F.plane_stride);
        pxp[r] = (const uint2 *)(F.plus + (uint64_t)rows[r] * (uint64_t)F.plus_stride);
        scp[r] = (const uint16_t *)(F.sc + (uint64_t)rows[r] * (uint64_t)F.sc_stride);
        acc[r] = 0.0f;
    }
    const uint4 *qn4 = (const uint4 *)A.qn, *qp4 = (const uint4 *)A.qp;
    const float2 *ad2 = (const float2 *)A.ad;
    const int2 *as2 = (const int2 *)A.asum;
    for (int g0 = lane; g0 < ngf; g0 += 32 * U) {
        uint32_t lw[U][R][LW], sc[U][R], an[U][16], ap[U][16];
        uint2 pl[U][R], px[U][R];
        float2 d[U];
        int2 su[U];
#pragma unroll
        for (int u = 0; u < U; u++) { /* loads: every group first */
            const int g = g0 + 32 * u < ngf ? g0 + 32 * u : g0;
            const bool plus0 = g * 64 < n4;
#pragma unroll
            for (int r = 0; r < R; r++) {
#pragma unroll
                for (int c = 0; c < LB / 2; c++) {
                    const uint4 v = __ldcs(lowp[r] + g * (LB / 2) + c);
                    lw[u][r][4 * c] = v.x; lw[u][r][4 * c + 1] = v.y;
                    lw[u][r][4 * c + 2] = v.z; lw[u][r][4 * c + 3] = v.w;
                }
                pl[u][r] = T::PLANE ? __ldcs(plp[r] + g) : make_uint2(0, 0);
                px[u][r] = plus0 ? __ldcs(pxp[r] + g) : make_uint2(0, 0);
                sc[u][r] = __ldcs(scp[r] + g);
            }
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const uint4 v = __ldg(qn4 + c * ngt + g);
                an[u][4 * c] = v.x; an[u][4 * c + 1] = v.y; an[u][4 * c + 2] = v.z; an[u][4 * c + 3] = v.w;
            }
            if (T::PLANE || plus0) {
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const uint4 v = __ldg(qp4 + c * ngt + g);
                    ap[u][4 * c] = v.x; ap[u][4 * c + 1] = v.y; ap[u][4 * c + 2] = v.z; ap[u][4 * c + 3] = v.w;
                }
            }
            d[u] = __ldg(ad2 + g);
            su[u] = __ldg(as2 + g);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int g = g0 + 32 * u;
            if (g >= ngf) break;
            const bool plus0 = g * 64 < n4, plus1 = g * 64 + 32 < n4;
            const int top0 = (1 << (T::B + plus0)) - 1, top1 = (1 << (T::B + plus1)) - 1;
#pragma unroll
            for (int r = 0; r < R; r++) {
                int32_t S0, S1;
                q35c_group_sums<T::LB, T::B, T::PLANE>(lw[u][r], pl[u][r].x, pl[u][r].y, px[u][r].x, px[u][r].y,
                                                       plus0, plus1, an[u], ap[u], S0, S1);
                acc[r] += tab[sc[u][r] & 0xFF] * d[u].x * (float)(2 * S0 - top0 * su[u].x);
                acc[r] += tab[sc[u][r] >> 8] * d[u].y * (float)(2 * S1 - top1 * su[u].y);
            }
        }
    }
    gemv_finish<TYPE, R>(A, rows, acc, tab, ngf, ngt, lane, row0);
}

/* Block sums of every row (tests): one thread per (row, group). */
template <int TYPE>
__global__ void k_block_sums(const q35c_fam F, const int8_t *qn, const int8_t *qp, int32_t *S) {
    const int ngf = F.np >> 6, ngt = (F.np + 63) >> 6;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= F.m * ngt) return;
    const int64_t r = idx / ngt;
    const int g = (int)(idx % ngt);
    int32_t *out = S + r * F.nb;
    if (g < ngf) {
        int32_t S0, S1;
        q35c_group_block_sums<TYPE>(F, r, g, qn, qp, S0, S1);
        out[2 * g] = S0;
        out[2 * g + 1] = S1;
    } else {
        for (int bk = 2 * g; bk < F.nb; bk++) out[bk] = q35c_block_sum_slow(F, r, bk, qn);
    }
}

/* ---- GEMV: F32 matrices ---- */

struct f32_arg {
    const float *w;
    int ld;        /* floats per row, a multiple of 4 */
    int64_t m;
    const float *x;/* ld floats, zero past the row length */
    float *out;
    int add;
};

struct f32_set {
    f32_arg a[3];
    int n;
    int cta0[4];
};

template <int R>
__global__ void __launch_bounds__(THREADS) k_gemv_f32(const __grid_constant__ f32_set S) {
    int k = 0;
    while (k + 1 < S.n && (int)blockIdx.x >= S.cta0[k + 1]) k++;
    const f32_arg &A = S.a[k];
    pdl_wait();
    const int lane = threadIdx.x & 31;
    const int64_t row0 =
        ((int64_t)(blockIdx.x - S.cta0[k]) * (blockDim.x >> 5) + (threadIdx.x >> 5)) * R;
    if (row0 >= A.m) return;
    const int n4 = A.ld >> 2;
    const float4 *x4 = (const float4 *)A.x;
    const float4 *w4[R];
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t row = row0 + r < A.m ? row0 + r : A.m - 1;
        w4[r] = (const float4 *)(A.w + (uint64_t)row * (uint64_t)A.ld);
        acc[r] = 0.0f;
    }
    for (int c = lane; c < n4; c += 32) {
        const float4 xv = __ldg(x4 + c);
#pragma unroll
        for (int r = 0; r < R; r++) {
            const float4 wv = __ldcs(w4[r] + c);
            acc[r] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0 && row0 + r < A.m) A.out[row0 + r] = A.add ? A.out[row0 + r] + v : v;
    }
}

/* ---- embedding, RoPE + KV store, attention ---- */

__global__ void k_embed_f32(const float *w, int ld, int n, const int *tp, float *x) {
    pdl_wait();
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < n) x[c] = w[(uint64_t)tp[0] * (uint64_t)ld + c];
}

__global__ void k_embed_fam(const q35c_fam F, const int *tp, float *x) {
    pdl_wait();
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= F.np) return;
    const int c = F.perm[j];
    if (c >= F.n) return;
    const int64_t r = tp[0];
    const int bits = F.b + (j < F.n4);
    const float s = F.table[F.sc[(uint64_t)r * F.sc_stride + j / 32]];
    x[c] = s * (float)(2 * q35c_code_at(F, r, j) - ((1 << bits) - 1));
}

/* Rotates adjacent pairs of q and k by pos * theta^(-j/head_dim) (j the
 * pair's first index within its head), stores k and v in the cache. */
__global__ void k_rope_store(float *q, const float *k, const float *v, float *kc, float *vc,
                             const int *tp, int q_dim, int kv_dim, int hd, float theta) {
    pdl_wait();
    const int i = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
    const int pos = tp[1];
    if (i >= q_dim && i >= kv_dim) return;
    const int j = i % hd;
    const float freq = 1.0f / powf(theta, (float)j / (float)hd);
    const float angle = (float)pos * freq;
    const float c = cosf(angle), sn = sinf(angle);
    if (i < q_dim) {
        const float v0 = q[i], v1 = q[i + 1];
        q[i] = v0 * c - v1 * sn;
        q[i + 1] = v0 * sn + v1 * c;
    }
    if (i < kv_dim) {
        const float v0 = k[i], v1 = k[i + 1];
        float *kd = kc + (uint64_t)pos * (uint64_t)kv_dim;
        float *vd = vc + (uint64_t)pos * (uint64_t)kv_dim;
        kd[i] = v0 * c - v1 * sn;
        kd[i + 1] = v0 * sn + v1 * c;
        vd[i] = v[i];
        vd[i + 1] = v[i + 1];
    }
}

/* One block per query head: scores over positions 0..pos of its KV head,
 * softmax, weighted sum of the values (as forward.c's attend_head). */
__global__ void __launch_bounds__(THREADS) k_attention(const float *q, const float *kc, const float *vc,
                                                      float *att, float *out, const int *tp,
                                                      int n_heads, int n_kv_heads, int hd,
                                                      int seq_len) {
    extern __shared__ float sm[]; /* hd (scaled query) + blockDim.x */
    __shared__ float red[32];
    float *sq = sm, *part = sm + hd;
    pdl_wait();
    const int h = blockIdx.x, kvh = h / (n_heads / n_kv_heads), kv_dim = n_kv_heads * hd;
    const int T = tp[1] + 1, lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) sq[d] = q[h * hd + d] * scale;
    __syncthreads();
    const float *K = kc + kvh * hd, *V = vc + kvh * hd;
    float *a = att + (uint64_t)h * (uint64_t)seq_len;
    for (int t = w; t < T; t += nw) {
        const float *kt = K + (uint64_t)t * (uint64_t)kv_dim;
        float s = 0.0f;
        for (int d = lane; d < hd; d += 32) s += sq[d] * kt[d];
        s = warp_sum(s);
        if (lane == 0) a[t] = s;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int t = threadIdx.x; t < T; t += blockDim.x) mx = fmaxf(mx, a[t]);
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int t = threadIdx.x; t < T; t += blockDim.x) {
        const float e = expf(a[t] - mx);
        a[t] = e;
        sum += e;
    }
    sum = block_sum(sum, red);
    for (int t = threadIdx.x; t < T; t += blockDim.x) a[t] /= sum;
    __syncthreads();
    /* out[d] = sum_t a[t] v_t[d]: parts of the threads take every parts-th t */
    const int hdc = hd < (int)blockDim.x ? hd : (int)blockDim.x;
    const int parts = blockDim.x / hdc, p = threadIdx.x / hdc, dl = threadIdx.x % hdc;
    for (int d0 = 0; d0 < hd; d0 += hdc) {
        const int d = d0 + dl;
        float acc = 0.0f;
        if (p < parts && d < hd)
            for (int t = p; t < T; t += parts) acc += a[t] * V[(uint64_t)t * (uint64_t)kv_dim + d];
        part[threadIdx.x] = acc;
        __syncthreads();
        if (p == 0 && d < hd) {
            float s = 0.0f;
            for (int i = 0; i < parts; i++) s += part[i * hdc + dl];
            out[h * hd + d] = s;
        }
        __syncthreads();
    }
}

/* ------------------------------------------------------------------ launches */

/* Rows per warp: what the variant supports, else its default for m rows. */
static int rows_per_warp_for(int V, int R, int64_t m) {
    if (V == 2) return 1;
    if (V == 1) return R == 2 ? 2 : 1;
    if (R == 1 || R == 2 || R == 4) return R;
    return m >= 8192 ? 2 : 1;
}

struct gemv_job {
    const dmat *w;
    const dact *a;    /* family */
    const float *x;   /* F32 */
    float *out;
    int add;
};

/* Launches kernel k on g's stream, as a programmatic dependent launch
 * when g->pdl is set. */
template <typename... KArgs, typename... Args>
static cudaError_t launch(const q35_cuda *g, void (*k)(KArgs...), int grid, int block, size_t smem,
                          Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)grid);
    cfg.blockDim = dim3((unsigned)block);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = g->st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = g->pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k, args...);
}

/* Family GEMV kernels: variant 0 = k_gemv_fam (R = 1, 2, 4 rows per
 * warp), 1 = k_gemv_fam2 with 2 groups per lane in flight (R = 1, 2),
 * 2 = k_gemv_fam2 with 4 (R = 1). */
template <int TYPE>
static cudaError_t launch_fam_t(const q35_cuda *g, const fam_set &S, int ctas, int V, int R) {
    if (V == 1) {
        if (R == 2) return launch(g, k_gemv_fam2<TYPE, 2, 2>, ctas, THREADS, 0, S);
        return launch(g, k_gemv_fam2<TYPE, 1, 2>, ctas, THREADS, 0, S);
    }
    if (V == 2) return launch(g, k_gemv_fam2<TYPE, 1, 4>, ctas, THREADS, 0, S);
    if (R == 4) return launch(g, k_gemv_fam<TYPE, 4>, ctas, THREADS, 0, S);
    if (R == 2) return launch(g, k_gemv_fam<TYPE, 2>, ctas, THREADS, 0, S);
    return launch(g, k_gemv_fam<TYPE, 1>, ctas, THREADS, 0, S);
}

/* The products of jobs (same input length), grouped into launches by kind. */
static int gemv(q35_cuda *g, const gemv_job *jobs, int n, int V_force, int R_force, q35_error *err) {
    const int V = V_force >= 0 ? V_force : g->variant;
    int done[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        const dmat *w0 = jobs[i].w;
        int64_t mmax = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && jobs[j].w->f32 == w0->f32 && (w0->f32 || jobs[j].w->F.type == w0->F.type) &&
                jobs[j].w->m > mmax)
                mmax = jobs[j].w->m;
        const int R = w0->f32 ? (R_force > 0 ? R_force : 1) : rows_per_warp_for(V, R_force, mmax);
        const int rows_per_cta = WARPS * R;
        if (w0->f32) {
            f32_set S;
            memset(&S, 0, sizeof S);
            int ctas = 0;
            for (int j = i; j < n; j++) {
                if (done[j] || !jobs[j].w->f32) continue;
                f32_arg &A = S.a[S.n];
                A.w = jobs[j].w->w;
                A.ld = jobs[j].w->ld;
                A.m = jobs[j].w->m;
                A.x = jobs[j].x;
                A.out = jobs[j].out;
                A.add = jobs[j].add;
                S.cta0[S.n++] = ctas;
                ctas += (int)((A.m + rows_per_cta - 1) / rows_per_cta);
                done[j] = 1;
            }
            for (int k = S.n; k < 4; k++) S.cta0[k] = ctas;
            CK(launch(g, R == 4 ? k_gemv_f32<4> : R == 2 ? k_gemv_f32<2> : k_gemv_f32<1>, ctas, THREADS, 0, S),
               "launching a matrix-vector product");
        } else {
            fam_set S;
            memset(&S, 0, sizeof S);
            int ctas = 0;
            for (int j = i; j < n; j++) {
                if (done[j] || jobs[j].w->f32 || jobs[j].w->F.type != w0->F.type) continue;
                fam_arg &A = S.a[S.n];
                A.F = jobs[j].w->F;
                A.qn = jobs[j].a->qn;
                A.qp = jobs[j].a->qp;
                A.ad = jobs[j].a->ad;
                A.asum = jobs[j].a->asum;
                A.out = jobs[j].out;
                A.add = jobs[j].add;
                S.cta0[S.n++] = ctas;
                ctas += (int)((A.F.m + rows_per_cta - 1) / rows_per_cta);
                done[j] = 1;
            }
            for (int k = S.n; k < 4; k++) S.cta0[k] = ctas;
            cudaError_t e;
            switch (w0->F.type) {
            case Q35_TYPE_Q2_5: e = launch_fam_t<Q35_TYPE_Q2_5>(g, S, ctas, V, R); break;
            case Q35_TYPE_Q3_5: e = launch_fam_t<Q35_TYPE_Q3_5>(g, S, ctas, V, R); break;
            case Q35_TYPE_Q4_5: e = launch_fam_t<Q35_TYPE_Q4_5>(g, S, ctas, V, R); break;
            default: e = launch_fam_t<Q35_TYPE_Q8_S>(g, S, ctas, V, R); break;
            }
            CK(e, "launching a matrix-vector product");
        }
        CK(cudaGetLastError(), "launching a matrix-vector product");
    }
    return Q35_OK;
}

/* Prepares the inputs of matrices ws[0..n) (family ones into acts[k]) from
 * x (mode NORM: with weight nw; SWIGLU: gate x, up u); xout, when set,
 * receives the transformed vector itself. */
static int prep(q35_cuda *g, int mode, const float *x, const float *nw, const float *u, int dim,
                float eps, const dmat *const *ws, int n, dact *acts, float *xout, q35_error *err) {
    prep_set P;
    memset(&P, 0, sizeof P);
    P.mode = mode;
    P.x = x;
    P.w = nw;
    P.u = u;
    P.dim = dim;
    P.eps = eps;
    P.xout = xout;
    int warps = 0;
    for (int i = 0; i < n; i++) {
        if (ws[i]->f32) continue;
        prep_arg &A = P.a[P.n];
        const q35c_fam &F = ws[i]->F;
        A.perm = F.perm;
        A.n = F.n;
        A.np = F.np;
        A.nb = F.nb;
        A.ngt = (F.np + 63) / 64;
        A.qn = acts[i].qn;
        A.qp = acts[i].qp;
        A.ad = acts[i].ad;
        A.asum = acts[i].asum;
        P.warp0[P.n++] = warps;
        warps += F.nb;
    }
    for (int k = P.n; k < 4; k++) P.warp0[k] = warps;
    int ctas = (warps + WARPS - 1) / WARPS;
    if (xout && ctas < (dim + THREADS - 1) / THREADS) ctas = (dim + THREADS - 1) / THREADS;
    if (ctas == 0) return Q35_OK;
    CK(launch(g, k_prep, ctas, THREADS, 0, P), "launching the activation quantizer");
    return Q35_OK;
}

static int any_f32(const dmat *const *ws, int n) {
    for (int i = 0; i < n; i++)
        if (ws[i]->f32) return 1;
    return 0;
}

/* One token through the device's layers (and, with the whole model, the
 * embedding and the classifier), enqueued on g->st. */
static int enqueue_forward(q35_cuda *g, q35_error *err) {
    const q35_config *c = &g->m->cfg;
    const int dim = c->dim, hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    int rc;
    if (g->full) {
        if (g->embd.f32)
            CK(launch(g, k_embed_f32, (dim + 255) / 256, 256, 0, (const float *)g->embd.w, g->embd.ld, dim,
                      (const int *)g->tp, g->x),
               "launching the embedding lookup");
        else
            CK(launch(g, k_embed_fam, (g->embd.F.np + 255) / 256, 256, 0, g->embd.F, (const int *)g->tp, g->x),
               "launching the embedding lookup");
    }
    for (int l = 0; l < g->n_layers; l++) {
        const dlayer *L = &g->L[l];
        float *kc = g->kc + (uint64_t)l * (uint64_t)c->seq_len * (uint64_t)kv_dim;
        float *vc = g->vc + (uint64_t)l * (uint64_t)c->seq_len * (uint64_t)kv_dim;
        /* attention */
        const dmat *qkv[3] = {&L->wq, &L->wk, &L->wv};
        if ((rc = prep(g, PREP_NORM, g->x, L->attn_norm, NULL, dim, c->rms_eps, qkv, 3, g->act,
                       any_f32(qkv, 3) ? g->xb : NULL, err)))
            return rc;
        const gemv_job j_qkv[3] = {{&L->wq, &g->act[0], g->xb, g->q, 0},
                                   {&L->wk, &g->act[1], g->xb, g->kcur, 0},
                                   {&L->wv, &g->act[2], g->xb, g->vcur, 0}};
        if ((rc = gemv(g, j_qkv, 3, -1, 0, err))) return rc;
        const int pairs = (q_dim > kv_dim ? q_dim : kv_dim) / 2;
        CK(launch(g, k_rope_store, (pairs + 255) / 256, 256, 0, g->q, (const float *)g->kcur,
                  (const float *)g->vcur, kc, vc, (const int *)g->tp, q_dim, kv_dim, hd, c->rope_theta),
           "launching RoPE");
        CK(launch(g, k_attention, c->n_heads, THREADS, (size_t)(hd + THREADS) * sizeof(float),
                  (const float *)g->q, (const float *)kc, (const float *)vc, g->att, g->attn_out,
                  (const int *)g->tp, c->n_heads, c->n_kv_heads, hd, c->seq_len),
           "launching attention");
        const dmat *o[1] = {&L->wo};
        if ((rc = prep(g, PREP_COPY, g->attn_out, NULL, NULL, q_dim, 0, o, 1, g->act, NULL, err))) return rc;
        const gemv_job j_o = {&L->wo, &g->act[0], g->attn_out, g->x, 1};
        if ((rc = gemv(g, &j_o, 1, -1, 0, err))) return rc;
        /* feed-forward */
        const dmat *gu[2] = {&L->gate, &L->up};
        if ((rc = prep(g, PREP_NORM, g->x, L->ffn_norm, NULL, dim, c->rms_eps, gu, 2, g->act,
                       any_f32(gu, 2) ? g->xb : NULL, err)))
            return rc;
        const gemv_job j_gu[2] = {{&L->gate, &g->act[0], g->xb, g->hb, 0},
                                  {&L->up, &g->act[1], g->xb, g->hb2, 0}};
        if ((rc = gemv(g, j_gu, 2, -1, 0, err))) return rc;
        const dmat *dn[1] = {&L->down};
        if ((rc = prep(g, PREP_SWIGLU, g->hb, NULL, g->hb2, c->hidden_dim, 0, dn, 1, g->act,
                       L->down.f32 ? g->hs : NULL, err)))
            return rc;
        const gemv_job j_d = {&L->down, &g->act[0], g->hs, g->x, 1};
        if ((rc = gemv(g, &j_d, 1, -1, 0, err))) return rc;
    }
    if (g->full) {
        const dmat *o[1] = {&g->out};
        if ((rc = prep(g, PREP_NORM, g->x, g->out_norm, NULL, dim, c->rms_eps, o, 1, g->act,
                       g->out.f32 ? g->xb : NULL, err)))
            return rc;
        const gemv_job j = {&g->out, &g->act[0], g->xb, g->logits, 0};
        if ((rc = gemv(g, &j, 1, -1, 0, err))) return rc;
    }
    return Q35_OK;
}

/* ------------------------------------------------------------------ upload */

static int upload_matrix(q35_cuda *g, dmat *d, const q35_matrix *w, q35_error *err) {
    memset(d, 0, sizeof *d);
    d->src = w;
    d->m = w->m;
    d->n = (int)w->n;
    if (w->dtype == Q35_DTYPE_F32) {
        d->f32 = 1;
        d->ld = (d->n + 3) / 4 * 4;
        d->bytes = (uint64_t)d->m * (uint64_t)d->ld * 4;
        DALLOC(d->w, d->bytes, w->t->name);
        CK(cudaMemcpy2D(d->w, (size_t)d->ld * 4, w->f32, (size_t)d->n * 4, (size_t)d->n * 4,
                        (size_t)d->m, cudaMemcpyHostToDevice),
           "uploading an F32 matrix");
        return Q35_OK;
    }
    const q35_layout *L = &w->L;
    d->bytes = fam_layout(&d->F, L);
    if (d->bytes > g->stage_cap) {
        free(g->stage);
        g->stage = (uint8_t *)malloc(d->bytes);
        g->stage_cap = g->stage ? d->bytes : 0;
        if (!g->stage) return q35_fail(err, Q35_ERR_NOMEM, "out of memory staging %s", w->t->name);
    }
    repack(L, w->rows, &d->F, g->stage);
    uint8_t *base;
    float *table;
    int32_t *perm;
    DALLOC(base, d->bytes, w->t->name);
    DALLOC(table, 256 * sizeof(float), "a scale table");
    DALLOC(perm, (size_t)L->np * sizeof(int32_t), "a column order");
    CK(cudaMemcpy(base, g->stage, d->bytes, cudaMemcpyHostToDevice), "uploading a matrix");
    CK(cudaMemcpy(table, w->table, 256 * sizeof(float), cudaMemcpyHostToDevice), "uploading a scale table");
    CK(cudaMemcpy(perm, w->perm, (size_t)L->np * sizeof(int32_t), cudaMemcpyHostToDevice),
       "uploading a column order");
    fam_set_base(&d->F, base);
    d->F.table = table;
    d->F.perm = perm;
    const int ngt = (int)((L->np + 63) / 64);
    if (ngt > g->max_ngt) g->max_ngt = ngt;
    return Q35_OK;
}

static int upload_vec(q35_cuda *g, float **d, const float *h, int n, q35_error *err) {
    DALLOC(*d, (size_t)n * sizeof(float), "a norm");
    CK(cudaMemcpy(*d, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice), "uploading a norm");
    return Q35_OK;
}

static int alloc_act(q35_cuda *g, dact *a, int ngt, q35_error *err) {
    DALLOC(a->qn, (size_t)ngt * 64, "activations");
    DALLOC(a->qp, (size_t)ngt * 64, "activations");
    DALLOC(a->ad, (size_t)ngt * 2 * sizeof(float), "activation scales");
    DALLOC(a->asum, (size_t)ngt * 2 * sizeof(int32_t), "activation sums");
    return Q35_OK;
}

static int pick_device(int *dev, cudaDeviceProp *prop, q35_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "CUDA: no usable device: %s (%s)",
                        cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (n < 1) return q35_fail(err, Q35_ERR_UNSUPPORTED, "CUDA: no device found");
    *dev = 0;
    CK(cudaSetDevice(0), "selecting device 0");
    CK(cudaGetDeviceProperties(prop, 0), "reading the device's properties");
    return Q35_OK;
}

static int cuda_new(q35_cuda *g, const q35_model *m, int n_layers, const q35_cuda_params *p, q35_error *err) {
    const q35_config *c = &m->cfg;
    cudaDeviceProp prop;
    int rc = pick_device(&g->dev, &prop, err);
    if (rc) return rc;
    g->m = m;
    g->n_layers = n_layers;
    g->full = n_layers == c->n_layers;
    const q35_cuda_params dflt = {1, 0, -1, 0};
    if (!p) p = &dflt;
    g->use_graph = p->graph != 0;
    g->variant = p->gemv >= 0 && p->gemv <= 2 ? p->gemv : Q35_CUDA_GEMV_DEFAULT;
    g->pdl = p->pdl == 1 && prop.major >= 9; /* programmatic dependent launch, sm_90 */
    g->limit = p->max_bytes;
    CK(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking), "creating a stream");
    const int dim = c->dim, hd = c->head_dim, q_dim = c->n_heads * hd, kv_dim = c->n_kv_heads * hd;
    const int hidden = c->hidden_dim;
    g->L = (dlayer *)calloc((size_t)n_layers, sizeof *g->L);
    if (!g->L) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    if (g->full) {
        if ((rc = upload_matrix(g, &g->embd, &m->token_embd, err))) return rc;
        if (m->output.t == m->token_embd.t) g->out = g->embd;
        else if ((rc = upload_matrix(g, &g->out, &m->output, err))) return rc;
        if ((rc = upload_vec(g, &g->out_norm, m->output_norm, dim, err))) return rc;
    }
    for (int l = 0; l < n_layers; l++) { /* the plain LLaMA program (checked in q35_cuda_new) */
        dlayer *L = &g->L[l];
        if ((rc = upload_matrix(g, &L->wq, &q35_layer_find(m, l, "attn_q")->w, err)) ||
            (rc = upload_matrix(g, &L->wk, &q35_layer_find(m, l, "attn_k")->w, err)) ||
            (rc = upload_matrix(g, &L->wv, &q35_layer_find(m, l, "attn_v")->w, err)) ||
            (rc = upload_matrix(g, &L->wo, &q35_layer_find(m, l, "attn_output")->w, err)) ||
            (rc = upload_matrix(g, &L->gate, &q35_layer_find(m, l, "ffn_gate")->w, err)) ||
            (rc = upload_matrix(g, &L->down, &q35_layer_find(m, l, "ffn_down")->w, err)) ||
            (rc = upload_matrix(g, &L->up, &q35_layer_find(m, l, "ffn_up")->w, err)) ||
            (rc = upload_vec(g, &L->attn_norm, q35_layer_find(m, l, "attn_norm")->vec, dim, err)) ||
            (rc = upload_vec(g, &L->ffn_norm, q35_layer_find(m, l, "ffn_norm")->vec, dim, err)))
            return rc;
    }
    free(g->stage);
    g->stage = NULL;
    g->stage_cap = 0;
    const auto r4 = [](int n) { return (size_t)((n + 3) / 4 * 4) * sizeof(float); };
    DALLOC(g->x, r4(dim), "activations");
    DALLOC(g->xb, r4(dim), "activations");
    DALLOC(g->q, r4(q_dim), "activations");
    DALLOC(g->kcur, r4(kv_dim), "activations");
    DALLOC(g->vcur, r4(kv_dim), "activations");
    DALLOC(g->attn_out, r4(q_dim), "activations");
    DALLOC(g->hb, r4(hidden), "activations");
    DALLOC(g->hb2, r4(hidden), "activations");
    DALLOC(g->hs, r4(hidden), "activations");
    DALLOC(g->logits, r4(c->vocab_size), "logits");
    DALLOC(g->att, (size_t)c->n_heads * (size_t)c->seq_len * sizeof(float), "attention scores");
    const size_t kv = (size_t)n_layers * (size_t)c->seq_len * (size_t)kv_dim * sizeof(float);
    DALLOC(g->kc, kv, "the KV cache");
    DALLOC(g->vc, kv, "the KV cache");
    DALLOC(g->tp, 2 * sizeof(int), "token and position");
    for (int i = 0; i < 3; i++)
        if ((rc = alloc_act(g, &g->act[i], g->max_ngt > 0 ? g->max_ngt : 1, err))) return rc;
    CK(cudaHostAlloc((void **)&g->h_tp, 2 * sizeof(int), cudaHostAllocDefault), "pinned memory");
    const int io = dim > c->vocab_size ? dim : c->vocab_size;
    CK(cudaHostAlloc((void **)&g->h_io, (size_t)io * sizeof(float), cudaHostAllocDefault), "pinned memory");
    CK(cudaDeviceSynchronize(), "uploading the model");
    snprintf(g->desc, sizeof g->desc, "%.160s, %d/%d layers on the GPU (%.2f GiB)", prop.name, n_layers,
             c->n_layers, (double)g->used / 1073741824.0);
    return Q35_OK;
}

/* ------------------------------------------------------------------ API */

extern "C" int q35_cuda_new(q35_cuda **out, const q35_model *m, int n_layers, const q35_cuda_params *p,
                            q35_error *err) {
    *out = NULL;
    if (n_layers < 1 || n_layers > m->cfg.n_layers)
        return q35_fail(err, Q35_ERR_ARG, "CUDA: %d layers asked for, the model has %d", n_layers,
                        m->cfg.n_layers);
    char why[160];
    if (q35_model_plain_llama(m, why, sizeof why))
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "CUDA: the backend runs the plain LLaMA graph; this %s model has %s",
                        m->hp.arch ? m->hp.arch->name : "?", why);
    q35_cuda *g = (q35_cuda *)calloc(1, sizeof *g);
    if (!g) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int rc = cuda_new(g, m, n_layers, p, err);
    if (rc) {
        q35_cuda_free(g);
        return rc;
    }
    *out = g;
    return Q35_OK;
}

extern "C" void q35_cuda_free(q35_cuda *g) {
    if (!g) return;
    cudaSetDevice(g->dev);
    if (g->gexec) cudaGraphExecDestroy(g->gexec);
    if (g->st) cudaStreamDestroy(g->st);
    for (int i = 0; i < g->n_allocs; i++) cudaFree(g->allocs[i]);
    if (g->h_tp) cudaFreeHost(g->h_tp);
    if (g->h_io) cudaFreeHost(g->h_io);
    cudaGetLastError();
    free(g->allocs);
    free(g->stage);
    free(g->L);
    free(g);
}

extern "C" const char *q35_cuda_describe(const q35_cuda *g) { return g->desc; }

extern "C" void q35_cuda_use_graph(q35_cuda *g, int on) { g->use_graph = on; }

extern "C" int q35_cuda_use_pdl(q35_cuda *g, int on) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, g->dev) != cudaSuccess || prop.major < 9) on = 0;
    if (g->gexec && g->pdl != on) { /* recapture with the new launches */
        cudaGraphExecDestroy(g->gexec);
        g->gexec = NULL;
    }
    g->pdl = on;
    return on;
}

static int run_forward(q35_cuda *g, q35_error *err) {
    if (!g->use_graph) return enqueue_forward(g, err);
    if (!g->gexec) {
        cudaGraph_t graph = NULL;
        CK(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal), "capturing the forward pass");
        int rc = enqueue_forward(g, err);
        cudaError_t e = cudaStreamEndCapture(g->st, &graph);
        if (rc) {
            if (graph) cudaGraphDestroy(graph);
            return rc;
        }
        if (e != cudaSuccess) return cuda_fail(err, e, "capturing the forward pass");
        e = cudaGraphInstantiateWithFlags(&g->gexec, graph, 0);
        cudaGraphDestroy(graph);
        if (e != cudaSuccess) {
            g->gexec = NULL;
            return cuda_fail(err, e, "instantiating the forward pass's graph");
        }
    }
    CK(cudaGraphLaunch(g->gexec, g->st), "launching the forward pass");
    return Q35_OK;
}

extern "C" int q35_cuda_eval(q35_cuda *g, int token, int pos, float *x, float *logits, q35_error *err) {
    const q35_config *c = &g->m->cfg;
    CK(cudaSetDevice(g->dev), "selecting the device");
    g->h_tp[0] = token;
    g->h_tp[1] = pos;
    CK(cudaMemcpyAsync(g->tp, g->h_tp, 2 * sizeof(int), cudaMemcpyHostToDevice, g->st), "copying the position");
    if (!g->full) {
        memcpy(g->h_io, x, (size_t)c->dim * sizeof(float));
        CK(cudaMemcpyAsync(g->x, g->h_io, (size_t)c->dim * sizeof(float), cudaMemcpyHostToDevice, g->st),
           "copying the input");
    }
    int rc = run_forward(g, err);
    if (rc) return rc;
    const size_t nout = (size_t)(g->full ? c->vocab_size : c->dim);
    CK(cudaMemcpyAsync(g->h_io, g->full ? g->logits : g->x, nout * sizeof(float), cudaMemcpyDeviceToHost, g->st),
       "copying the result");
    CK(cudaStreamSynchronize(g->st), "running the forward pass");
    memcpy(g->full ? logits : x, g->h_io, nout * sizeof(float));
    return Q35_OK;
}

extern "C" int q35_cuda_device_info(char *buf, size_t cap, q35_error *err) {
    int dev;
    cudaDeviceProp prop;
    int rc = pick_device(&dev, &prop, err);
    if (rc) return rc;
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    snprintf(buf, cap, "%s (sm_%d%d, %d SMs, %.1f GiB, %.0f MB L2, driver %d, runtime %d)", prop.name,
             prop.major, prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem / 1073741824.0,
             (double)prop.l2CacheSize / 1e6, drv, rt);
    return Q35_OK;
}

/* ---- tests and benchmarks ---- */

extern "C" void q35_cuda_host_block_sums(const q35_matrix *w, const int8_t *q, int32_t *S) {
    const q35_layout *L = &w->L;
    q35c_fam F;
    const uint64_t bytes = fam_layout(&F, L);
    uint8_t *buf = (uint8_t *)malloc(bytes);
    const int ngt = (int)((L->np + 63) / 64);
    int8_t *qn = (int8_t *)calloc((size_t)ngt * 64, 1), *qp = (int8_t *)calloc((size_t)ngt * 64, 1);
    if (!buf || !qn || !qp) {
        free(buf); free(qn); free(qp);
        memset(S, 0xFF, (size_t)L->m * (size_t)L->n_blocks * sizeof *S); /* cannot be right */
        return;
    }
    repack(L, w->rows, &F, buf);
    fam_set_base(&F, buf);
    F.table = w->table;
    F.perm = w->perm;
    for (int j = 0; j < L->np; j++) {
        qn[q35c_act_index(j, ngt)] = q[j];
        qp[q35c_act_index(q35c_plane_pos(j), ngt)] = q[j];
    }
    const int ngf = (int)(L->np / 64);
    for (int64_t r = 0; r < L->m; r++) {
        int32_t *out = S + r * L->n_blocks;
        for (int g = 0; g < ngf; g++) {
            int32_t S0 = 0, S1 = 0;
            switch (L->type) {
            case Q35_TYPE_Q2_5: q35c_group_block_sums<Q35_TYPE_Q2_5>(F, r, g, qn, qp, S0, S1); break;
            case Q35_TYPE_Q3_5: q35c_group_block_sums<Q35_TYPE_Q3_5>(F, r, g, qn, qp, S0, S1); break;
            case Q35_TYPE_Q4_5: q35c_group_block_sums<Q35_TYPE_Q4_5>(F, r, g, qn, qp, S0, S1); break;
            default: q35c_group_block_sums<Q35_TYPE_Q8_S>(F, r, g, qn, qp, S0, S1); break;
            }
            out[2 * g] = S0;
            out[2 * g + 1] = S1;
        }
        for (int bk = 2 * ngf; bk < L->n_blocks; bk++) out[bk] = q35c_block_sum_slow(F, r, bk, qn);
    }
    free(buf);
    free(qn);
    free(qp);
}

/* A bare context for check_matrix: allocation tracking and a stream. */
static int check_matrix(q35_cuda *g, const q35_matrix *w, const float *x, int V, int R, int8_t *q, float *d,
                        int32_t *sum, int32_t *S, float *dots, q35_error *err) {
    cudaDeviceProp prop;
    int rc = pick_device(&g->dev, &prop, err);
    if (rc) return rc;
    CK(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking), "creating a stream");
    dmat dm;
    if ((rc = upload_matrix(g, &dm, w, err))) return rc;
    const int n = dm.n;
    const int64_t m = dm.m;
    float *dx, *dout;
    DALLOC(dx, (size_t)(n + 3) / 4 * 4 * sizeof(float), "input");
    DALLOC(dout, (size_t)m * sizeof(float), "output");
    CK(cudaMemcpy(dx, x, (size_t)n * sizeof(float), cudaMemcpyHostToDevice), "copying the input");
    if (!dm.f32) {
        if ((rc = alloc_act(g, &g->act[0], g->max_ngt, err))) return rc;
    }
    /* uploads and clears ran on the legacy stream: finish them first */
    CK(cudaDeviceSynchronize(), "uploading");
    if (!dm.f32) {
        const dmat *ws[1] = {&dm};
        if ((rc = prep(g, PREP_COPY, dx, NULL, NULL, n, 0, ws, 1, g->act, NULL, err))) return rc;
        CK(cudaStreamSynchronize(g->st), "quantizing the input");
        const int ngt = g->max_ngt, nb = dm.F.nb;
        int8_t *qn = (int8_t *)malloc((size_t)ngt * 64);
        if (!qn) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        cudaError_t e = cudaMemcpy(qn, g->act[0].qn, (size_t)ngt * 64, cudaMemcpyDeviceToHost);
        if (e == cudaSuccess) e = cudaMemcpy(d, g->act[0].ad, (size_t)nb * sizeof(float), cudaMemcpyDeviceToHost);
        if (e == cudaSuccess) e = cudaMemcpy(sum, g->act[0].asum, (size_t)nb * sizeof(int32_t), cudaMemcpyDeviceToHost);
        for (int j = 0; j < dm.F.np; j++) q[j] = qn[q35c_act_index(j, ngt)];
        free(qn);
        if (e != cudaSuccess) return cuda_fail(err, e, "reading the quantized activations");
        if (S) {
            int32_t *dS;
            DALLOC(dS, (size_t)m * (size_t)nb * sizeof(int32_t), "block sums");
            const int64_t threads = m * ngt;
            const int blocks = (int)((threads + 255) / 256);
            switch (dm.F.type) {
            case Q35_TYPE_Q2_5: k_block_sums<Q35_TYPE_Q2_5><<<blocks, 256, 0, g->st>>>(dm.F, g->act[0].qn, g->act[0].qp, dS); break;
            case Q35_TYPE_Q3_5: k_block_sums<Q35_TYPE_Q3_5><<<blocks, 256, 0, g->st>>>(dm.F, g->act[0].qn, g->act[0].qp, dS); break;
            case Q35_TYPE_Q4_5: k_block_sums<Q35_TYPE_Q4_5><<<blocks, 256, 0, g->st>>>(dm.F, g->act[0].qn, g->act[0].qp, dS); break;
            default: k_block_sums<Q35_TYPE_Q8_S><<<blocks, 256, 0, g->st>>>(dm.F, g->act[0].qn, g->act[0].qp, dS); break;
            }
            CK(cudaGetLastError(), "launching the block sums");
            CK(cudaStreamSynchronize(g->st), "computing block sums");
            CK(cudaMemcpy(S, dS, (size_t)m * (size_t)nb * sizeof(int32_t), cudaMemcpyDeviceToHost),
               "reading block sums");
        }
    }
    const gemv_job j = {&dm, &g->act[0], dx, dout, 0};
    if ((rc = gemv(g, &j, 1, V, R, err))) return rc;
    CK(cudaStreamSynchronize(g->st), "running the matrix-vector product");
    CK(cudaMemcpy(dots, dout, (size_t)m * sizeof(float), cudaMemcpyDeviceToHost), "reading the products");
    return Q35_OK;
}

extern "C" int q35_cuda_check_matrix(const q35_matrix *w, const float *x, int variant, int rows_per_warp, int8_t *q,
                                     float *d, int32_t *sum, int32_t *S, float *dots, q35_error *err) {
    q35_cuda *g = (q35_cuda *)calloc(1, sizeof *g);
    if (!g) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int rc = check_matrix(g, w, x, variant, rows_per_warp, q, d, sum, S, dots, err);
    q35_cuda_free(g);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_gemv(q35_cuda *g, int V, int R, const char *kind, int reps, double *bytes, double *seconds,
                      q35_error *err) {
    /* every matrix in forward order */
    const int maxj = 7 * g->n_layers + 1;
    const dmat **ws = (const dmat **)malloc((size_t)maxj * sizeof *ws);
    if (!ws) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int nj = 0;
    for (int l = 0; l < g->n_layers; l++) {
        const dlayer *L = &g->L[l];
        const dmat *lm[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int i = 0; i < 7; i++)
            if (!kind || strstr(lm[i]->src->t->name, kind)) ws[nj++] = lm[i];
    }
    if (g->full && (!kind || strstr(g->out.src->t->name, kind))) ws[nj++] = &g->out;
    *bytes = 0;
    for (int i = 0; i < nj; i++) *bytes += (double)ws[i]->bytes;
    /* inputs: a pseudo-random vector, quantized for each input length once
     * (act[0]: dim, act[1]: hidden, act[2]: q_dim) */
    const q35_config *c = &g->m->cfg;
    int rc = Q35_OK;
    float *hx = (float *)malloc(((size_t)c->hidden_dim + (size_t)c->dim + (size_t)c->n_heads * c->head_dim) * 4);
    double *t = (double *)malloc((size_t)(reps > 0 ? reps : 1) * sizeof(double));
    cudaEvent_t *ev = (cudaEvent_t *)calloc((size_t)2 * (size_t)(nj > 0 ? nj : 1), sizeof(cudaEvent_t));
    if (!hx || !t || !ev) {
        free(ws); free(hx); free(t); free(ev);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    int nmax = c->hidden_dim > c->dim ? c->hidden_dim : c->dim;
    if (c->n_heads * c->head_dim > nmax) nmax = c->n_heads * c->head_dim;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < nmax; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        hx[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    for (int i = 0; i < 2 * nj && !rc; i++)
        if (cudaEventCreate(&ev[i]) != cudaSuccess) rc = q35_fail(err, Q35_ERR_DEVICE, "CUDA: creating events");
    float *bin = NULL;
    if (!rc) rc = dalloc(g, (void **)&bin, (size_t)nmax * sizeof(float), "bench input", err);
    if (!rc && (cudaMemcpy(bin, hx, (size_t)nmax * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess ||
                cudaDeviceSynchronize() != cudaSuccess))
        rc = q35_fail(err, Q35_ERR_DEVICE, "CUDA: copying the bench input");
    int set_done[3] = {0, 0, 0};
    for (int i = 0; i < nj && !rc; i++) {
        const int k = ws[i]->n == c->dim ? 0 : ws[i]->n == c->hidden_dim ? 1 : 2;
        if (set_done[k] || ws[i]->f32) continue;
        rc = prep(g, PREP_COPY, bin, NULL, NULL, ws[i]->n, 0, &ws[i], 1, &g->act[k], NULL, err);
        set_done[k] = 1;
    }
    int64_t mmax = 1;
    for (int i = 0; i < nj; i++)
        if (ws[i]->m > mmax) mmax = ws[i]->m;
    float *bout = NULL;
    if (!rc) rc = dalloc(g, (void **)&bout, (size_t)mmax * sizeof(float), "bench output", err);
    if (!rc && cudaDeviceSynchronize() != cudaSuccess) rc = q35_fail(err, Q35_ERR_DEVICE, "CUDA: clearing");
    for (int rep = -1; rep < reps && !rc; rep++) {
        for (int i = 0; i < nj && !rc; i++) {
            const int k = ws[i]->n == c->dim ? 0 : ws[i]->n == c->hidden_dim ? 1 : 2;
            const gemv_job j = {ws[i], &g->act[k], bin, bout, 0};
            if (cudaEventRecord(ev[2 * i], g->st) != cudaSuccess) rc = q35_fail(err, Q35_ERR_DEVICE, "CUDA: events");
            if (!rc) rc = gemv(g, &j, 1, V, R, err);
            if (!rc && cudaEventRecord(ev[2 * i + 1], g->st) != cudaSuccess)
                rc = q35_fail(err, Q35_ERR_DEVICE, "CUDA: events");
        }
        cudaError_t e = cudaStreamSynchronize(g->st);
        if (!rc && e != cudaSuccess) rc = cuda_fail(err, e, "running the products");
        if (rc || rep < 0) continue;
        double total = 0;
        for (int i = 0; i < nj; i++) {
            float ms = 0;
            cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]);
            total += ms * 1e-3;
        }
        t[rep] = total;
    }
    if (!rc && reps > 0) {
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        *seconds = t[reps / 2];
    }
    for (int i = 0; i < 2 * nj; i++)
        if (ev[i]) cudaEventDestroy(ev[i]);
    free(ws); free(hx); free(t); free(ev);
    return rc;
}

extern "C" int q35_cuda_bench_gemv(q35_cuda *g, int variant, int rows_per_warp, const char *kind, int reps,
                                   double *bytes, double *seconds, q35_error *err) {
    *bytes = *seconds = 0;
    CK(cudaSetDevice(g->dev), "selecting the device");
    return bench_gemv(g, variant, rows_per_warp, kind, reps, bytes, seconds, err);
}

extern "C" void q35_cuda_use_gemv(q35_cuda *g, int variant) {
    if (variant < 0 || variant > 2 || variant == g->variant) return;
    if (g->gexec) { /* recapture with the other kernels */
        cudaGraphExecDestroy(g->gexec);
        g->gexec = NULL;
    }
    g->variant = variant;
}

__global__ void k_fill(uint8_t *p, uint64_t n, uint64_t seed) {
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        p[i] = (uint8_t)x;
    }
}

static int bench_synth(q35_cuda *g, int type, int64_t n, int64_t m, int V, int R, int reps, double *bytes,
                       double *seconds, q35_error *err) {
    cudaDeviceProp prop;
    int rc = pick_device(&g->dev, &prop, err);
    if (rc) return rc;
    CK(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking), "creating a stream");
    q35_layout L;
    if (q35_layout_init(&L, type, n, m) != 0) return q35_fail(err, Q35_ERR_ARG, "bad type or shape");
    dmat dm;
    memset(&dm, 0, sizeof dm);
    dm.m = m;
    dm.n = (int)n;
    dm.bytes = fam_layout(&dm.F, &L);
    uint8_t *base;
    float *table;
    int32_t *perm;
    DALLOC(base, dm.bytes, "a random matrix");
    DALLOC(table, 256 * sizeof(float), "a scale table");
    DALLOC(perm, (size_t)L.np * sizeof(int32_t), "a column order");
    fam_set_base(&dm.F, base);
    dm.F.table = table;
    dm.F.perm = perm;
    float htab[256];
    int32_t *hperm = (int32_t *)malloc((size_t)L.np * sizeof *hperm);
    float *hx = (float *)malloc((size_t)n * sizeof *hx);
    if (!hperm || !hx) {
        free(hperm); free(hx);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    q35_scale_table(0.01f, htab);
    for (int64_t j = 0; j < L.np; j++) hperm[j] = (int32_t)j;
    for (int64_t j = 0; j < n; j++) hx[j] = (float)((j * 7919) % 201 - 100) / 50.0f;
    float *dx, *dout;
    rc = dalloc(g, (void **)&dx, (size_t)n * sizeof(float), "input", err);
    if (!rc) rc = dalloc(g, (void **)&dout, (size_t)m * sizeof(float), "output", err);
    cudaError_t e = cudaSuccess;
    if (!rc) e = cudaMemcpy(table, htab, sizeof htab, cudaMemcpyHostToDevice);
    if (!rc && e == cudaSuccess) e = cudaMemcpy(perm, hperm, (size_t)L.np * sizeof *hperm, cudaMemcpyHostToDevice);
    if (!rc && e == cudaSuccess) e = cudaMemcpy(dx, hx, (size_t)n * sizeof *hx, cudaMemcpyHostToDevice);
    free(hperm);
    free(hx);
    if (rc) return rc;
    if (e != cudaSuccess) return cuda_fail(err, e, "uploading the bench matrix");
    g->max_ngt = (int)((L.np + 63) / 64);
    if ((rc = alloc_act(g, &g->act[0], g->max_ngt, err))) return rc;
    k_fill<<<4096, 256>>>(base, dm.bytes, 12345);
    CK(cudaGetLastError(), "filling the bench matrix");
    CK(cudaDeviceSynchronize(), "filling the bench matrix");
    const dmat *ws[1] = {&dm};
    if ((rc = prep(g, PREP_COPY, dx, NULL, NULL, (int)n, 0, ws, 1, g->act, NULL, err))) return rc;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0), "events");
    CK(cudaEventCreate(&e1), "events");
    double *t = (double *)malloc((size_t)reps * sizeof *t);
    if (!t) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    const gemv_job j = {&dm, &g->act[0], dx, dout, 0};
    for (int r = -2; r < reps && !rc; r++) {
        cudaEventRecord(e0, g->st);
        rc = gemv(g, &j, 1, V, R, err);
        cudaEventRecord(e1, g->st);
        e = cudaEventSynchronize(e1);
        if (!rc && e != cudaSuccess) rc = cuda_fail(err, e, "running the bench product");
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r >= 0) t[r] = ms * 1e-3;
    }
    if (!rc) {
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        *seconds = t[reps / 2];
        *bytes = (double)dm.bytes;
    }
    free(t);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return rc;
}

extern "C" int q35_cuda_bench_gemv_synth(int type, int64_t n, int64_t m, int variant, int rows_per_warp,
                                         int reps, double *bytes, double *seconds, q35_error *err) {
    *bytes = *seconds = 0;
    q35_cuda *g = (q35_cuda *)calloc(1, sizeof *g);
    if (!g) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int rc = bench_synth(g, type, n, m, variant, rows_per_warp, reps > 0 ? reps : 1, bytes, seconds, err);
    q35_cuda_free(g);
    return rc;
}

extern "C" double q35_cuda_bytes_per_token(const q35_cuda *g, int pos) {
    const q35_config *c = &g->m->cfg;
    double b = 0;
    for (int l = 0; l < g->n_layers; l++) {
        const dlayer *L = &g->L[l];
        b += (double)(L->wq.bytes + L->wk.bytes + L->wv.bytes + L->wo.bytes + L->gate.bytes +
                      L->up.bytes + L->down.bytes);
    }
    if (g->full) b += (double)g->out.bytes + (double)g->embd.bytes / (double)c->vocab_size;
    b += 2.0 * g->n_layers * (double)(pos + 1) * c->n_kv_heads * c->head_dim * sizeof(float);
    return b;
}
