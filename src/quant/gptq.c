/* gptq.c — GPTQ-style error feedback for the Q3_5 family (see gptq.h). */
#include "quant/gptq.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "format/q35nearest.h"

#define ROWS_PER_TASK 8

/* In place: the upper triangle of T becomes V with V V^T = T (a Cholesky
 * factorisation taken from the last index down). Returns 0, or -1 when T
 * is not positive definite. */
static int reverse_cholesky(double *T, int64_t n, int nt) {
    for (int64_t j = n - 1; j >= 0; j--) {
        const double *tj = T + j * n;
        double s = tj[j];
        for (int64_t k = j + 1; k < n; k++) s -= tj[k] * tj[k];
        if (!(s > 0.0) || !isfinite(s)) return -1;
        const double v = sqrt(s);
        T[j * n + j] = v;
#pragma omp parallel for num_threads(nt) if (nt > 1 && j * (n - j) > 65536) schedule(static)
        for (int64_t i = 0; i < j; i++) {
            double *ti = T + i * n;
            double a = ti[j];
            for (int64_t k = j + 1; k < n; k++) a -= ti[k] * tj[k];
            ti[j] = a / v;
        }
    }
    return 0;
}

double q35_gptq_factor(const double *A, int64_t n, double damp, int n_threads, double *U) {
    const int nt = n_threads > 0 ? n_threads : 1;
    double *T = malloc((size_t)(n * n) * sizeof *T);
    if (!T) return -1.0;
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) mean += A[i * n + i] > 0.0 ? A[i * n + i] : 0.0;
    mean = mean > 0.0 ? mean / (double)n : 1.0;
    double used = -1.0;
    for (int attempt = 0; attempt < 5 && used < 0.0; attempt++) {
        const double d = attempt == 0 ? damp : (damp > 0.0 ? damp : 1e-6) * pow(10.0, attempt);
        memcpy(T, A, (size_t)(n * n) * sizeof *T);
        for (int64_t i = 0; i < n; i++) {
            double *t = T + i * n + i;
            if (!(*t > 0.0)) { /* a dead input: no feedback through it */
                for (int64_t k = 0; k < n; k++) T[i * n + k] = T[k * n + i] = 0.0;
                *t = mean;
            }
            *t += d * mean;
        }
        if (reverse_cholesky(T, n, nt) == 0) used = d;
    }
    if (used >= 0.0) {
        /* U = V^-1 (upper): row i from U V = I, V's rows read in order */
#pragma omp parallel for num_threads(nt) if (nt > 1 && n > 64) schedule(dynamic, 8)
        for (int64_t i = 0; i < n; i++) {
            double *u = U + i * n;
            memset(u, 0, (size_t)n * sizeof *u);
            u[i] = 1.0; /* holds delta - sum so far, then U's value */
            for (int64_t k = i; k < n; k++) {
                const double *vk = T + k * n;
                u[k] /= vk[k];
                const double uk = u[k];
                for (int64_t j = k + 1; j < n; j++) u[j] -= uk * vk[j];
            }
        }
    }
    free(T);
    return used;
}

float *q35_gptq_asym_target(const float *W, const double *H, const double *K, int64_t m, int64_t n, double damp,
                            int n_threads) {
    const int nt = n_threads > 0 ? n_threads : 1;
    double *U = malloc((size_t)(n * n) * sizeof *U), *D = malloc((size_t)(n * n) * sizeof *D);
    double *work = malloc((size_t)(2 * n * nt) * sizeof *work);
    float *V = malloc((size_t)(m * n) * sizeof *V);
    if (!U || !D || !work || !V || q35_gptq_factor(H, n, damp, nt, U) < 0.0) {
        free(U);
        free(D);
        free(work);
        free(V);
        return NULL;
    }
    for (int64_t i = 0; i < n * n; i++) D[i] = K[i] - H[i];
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        double *y = work + 2 * n * omp_get_thread_num(), *z = y + n;
        const float *w = W + r * n;
        for (int64_t b = 0; b < n; b++) y[b] = 0.0; /* y = (w D)^T */
        for (int64_t a = 0; a < n; a++) {
            const double wa = w[a], *d = D + a * n;
            for (int64_t b = 0; b < n; b++) y[b] += wa * d[b];
        }
        for (int64_t i = 0; i < n; i++) { /* z = U y */
            double acc = 0.0;
            for (int64_t k = i; k < n; k++) acc += U[i * n + k] * y[k];
            z[i] = acc;
        }
        for (int64_t k = 0; k < n; k++) { /* V = W + (U^T z)^T: (H + damp)^-1 = U^T U */
            double acc = 0.0;
            for (int64_t i = 0; i <= k; i++) acc += U[i * n + k] * z[i];
            V[r * n + k] = (float)(w[k] + acc);
        }
    }
    free(U);
    free(D);
    free(work);
    return V;
}

void q35_output_error(const float *A, const float *B, int64_t m, int64_t n, const double *H,
                      int n_threads, double *err, double *ref) {
    double *pe = malloc((size_t)m * 2 * sizeof *pe);
    if (!pe) {
        *err = *ref = 0.0;
        return;
    }
#pragma omp parallel for num_threads(n_threads > 0 ? n_threads : 1) schedule(static)
    for (int64_t r = 0; r < m; r++) {
        const float *a = A + r * n, *b = B + r * n;
        double e = 0.0, w = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double *h = H + i * n;
            double he = 0.0, hw = 0.0;
            for (int64_t k = 0; k < n; k++) {
                he += h[k] * ((double)a[k] - b[k]);
                hw += h[k] * a[k];
            }
            e += ((double)a[i] - b[i]) * he;
            w += (double)a[i] * hw;
        }
        pe[2 * r] = e;
        pe[2 * r + 1] = w;
    }
    double e = 0.0, w = 0.0; /* in row order: the same sums for any thread count */
    for (int64_t r = 0; r < m; r++) {
        e += pe[2 * r];
        w += pe[2 * r + 1];
    }
    free(pe);
    *err = e;
    *ref = w;
}

/* The scale byte for one block, at processing positions p0 .. p0+len-1 of
 * one row (x, updated so far), that minimises the GPTQ loss of quantizing
 * them in order with feedback inside the block: the sum of
 * ((x_p - q_p) / U_pp)^2 (the zero scale included). */
static int block_scale_gptq(const double *x, const double *U, int64_t n, int64_t p0, int len, int c,
                            const float table[256], float base) {
    const int top = (1 << c) - 1;
    double amax = 0.0;
    for (int i = 0; i < len; i++) amax = fmax(amax, fabs(x[p0 + i]));
    if (amax == 0.0) return 0;
    const int s0 = 255 + (int)lround(16.0 * log2(amax / top / base));
    double y[Q35_BLOCK];
    int best_s = 0;
    double best = 0.0;
    for (int i = 0; i < len; i++) y[i] = x[p0 + i];
    for (int i = 0; i < len; i++) {
        const double *ui = U + (p0 + i) * n;
        const double e = y[i] / ui[p0 + i];
        best += e * e;
        for (int k = i + 1; k < len; k++) y[k] -= e * ui[p0 + k];
    }
    /* from a little above max/top down to about a third of it */
    for (int s = s0 + 4; s >= s0 - 24; s--) {
        if (s < 1 || s > 255) continue;
        const float d = table[s];
        double loss = 0.0;
        for (int i = 0; i < len; i++) y[i] = x[p0 + i];
        for (int i = 0; i < len && loss < best; i++) {
            const double *ui = U + (p0 + i) * n;
            const int q = q35_nearest_code((float)y[i], d, c);
            const double e = (y[i] - (double)d * (2 * q - top)) / ui[p0 + i];
            loss += e * e;
            for (int k = i + 1; k < len; k++) y[k] -= e * ui[p0 + k];
        }
        if (loss < best) {
            best = loss;
            best_s = s;
        }
    }
    return best_s;
}

/* Coordinate descent on one quantized row (codes, scales; w its original
 * weights, Hs the damped H in stored order): moves single codes one level
 * up or down while that lowers e Hs e^T, e = w - q, for a few passes.
 * g: n doubles of scratch. */
static void refine_row(const q35_layout *L, const float *w, const int32_t *perm, const double *Hs,
                       const float table[256], int passes, uint8_t *codes, uint8_t *scales,
                       double *g) {
    const int64_t n = L->n;
    double *e = malloc((size_t)n * sizeof *e);
    if (!e) return;
    for (int64_t j = 0; j < n; j++) {
        const int s = scales[j / Q35_BLOCK], c = q35_col_bits(L, j), top = (1 << c) - 1;
        e[j] = w[perm[j]] - (s ? (double)table[s] * (2 * codes[j] - top) : 0.0);
    }
    for (int64_t i = 0; i < n; i++) {
        const double *h = Hs + i * n;
        double a = 0.0;
        for (int64_t k = 0; k < n; k++) a += h[k] * e[k];
        g[i] = a;
    }
    for (int pass = 0; pass < passes; pass++) {
        int moved = 0;
        for (int64_t j = 0; j < n; j++) {
            const int s = scales[j / Q35_BLOCK];
            if (!s) continue;
            const int c = q35_col_bits(L, j), top = (1 << c) - 1;
            const double step = 2.0 * table[s], hjj = Hs[j * n + j];
            int best = 0;
            double bestd = 0.0;
            for (int dir = -1; dir <= 1; dir += 2) {
                const int q = codes[j] + dir;
                if (q < 0 || q > top) continue;
                const double delta = dir * step; /* q moves up by delta: e_j moves down */
                const double dl = -2.0 * delta * g[j] + delta * delta * hjj;
                if (dl < bestd) {
                    bestd = dl;
                    best = dir;
                }
            }
            if (!best) continue;
            const double delta = best * step, *hj = Hs + j * n;
            codes[j] = (uint8_t)(codes[j] + best);
            e[j] -= delta;
            for (int64_t k = 0; k < n; k++) g[k] -= delta * hj[k];
            moved = 1;
        }
        for (int64_t b = 0; b < L->n_blocks; b++) { /* each block's scale, codes fixed */
            const int s = scales[b];
            const int64_t j0 = b * Q35_BLOCK, j1 = j0 + Q35_BLOCK < n ? j0 + Q35_BLOCK : n;
            if (!s || j0 >= n) continue;
            const int c = q35_col_bits(L, j0), top = (1 << c) - 1;
            double lg = 0.0, lhl = 0.0;
            for (int64_t j = j0; j < j1; j++) {
                const double lj = 2 * codes[j] - top;
                lg += lj * g[j];
                for (int64_t k = j0; k < j1; k++) lhl += lj * Hs[j * n + k] * (2 * codes[k] - top);
            }
            if (!(lhl > 0.0)) continue;
            /* d -> d + t: e_B -= t l, loss changes by -2 t l.g + t^2 l'Hl */
            int best = s;
            double bestd = 0.0;
            for (int cand = s - 2; cand <= s + 2; cand++) {
                if (cand < 1 || cand > 255 || cand == s) continue;
                const double t = (double)table[cand] - table[s];
                const double dl = -2.0 * t * lg + t * t * lhl;
                if (dl < bestd) {
                    bestd = dl;
                    best = cand;
                }
            }
            if (best == s) continue;
            const double t = (double)table[best] - table[s];
            scales[b] = (uint8_t)best;
            for (int64_t j = j0; j < j1; j++) {
                const double dj = t * (2 * codes[j] - top), *hj = Hs + j * n;
                e[j] -= dj;
                for (int64_t k = 0; k < n; k++) g[k] -= dj * hj[k];
            }
            moved = 1;
        }
        if (!moved) break;
    }
    free(e);
}

/* Rows r0 .. r0+R-1 of W, quantized with feedback through U (stored order,
 * n real columns: stored columns n .. np-1 are padding), refined with Hs,
 * into packed rows. x: R * n doubles of scratch. */
static void gptq_rows(const q35_layout *L, const float *W, const int32_t *perm, const double *U, const double *Hs, int passes, const float table[256], float base,
                      int64_t r0, int R, double *x, uint8_t *codes, uint8_t *scales, uint8_t *out) {
    const int64_t n = L->n, np = L->np;
    double E[ROWS_PER_TASK][Q35_BLOCK];
    float d[ROWS_PER_TASK];
    for (int r = 0; r < R; r++)
        for (int64_t p = 0; p < n; p++) x[r * n + p] = W[(r0 + r) * n + perm[p]];
    for (int64_t k = 0; k < L->n_blocks; k++) {
        const int64_t b = k, j0 = b * Q35_BLOCK;
        const int64_t j1 = np - j0 < Q35_BLOCK ? np : j0 + Q35_BLOCK, jn = j1 < n ? j1 : n;
        const int64_t p0 = j0, p1 = jn > j0 ? jn : j0;
        const int c = q35_col_bits(L, j0), top = (1 << c) - 1;
        for (int r = 0; r < R; r++) {
            const int s = p1 > p0 ? block_scale_gptq(x + r * n, U, n, p0, (int)(p1 - p0), c, table, base) : 0;
            scales[r * L->n_blocks + b] = (uint8_t)s;
            d[r] = s ? table[s] : 0.0f;
            for (int64_t j = jn; j < j1; j++) /* padding */
                codes[r * np + j] = (uint8_t)(s ? q35_nearest_code(0.0f, d[r], c) : top / 2);
        }
        for (int64_t p = p0; p < p1; p++) {
            const double *up = U + p * n;
            for (int r = 0; r < R; r++) {
                double *xr = x + r * n;
                const int q = d[r] > 0.0f ? q35_nearest_code((float)xr[p], d[r], c) : top / 2;
                codes[r * np + p] = (uint8_t)q;
                const double e = (xr[p] - (d[r] > 0.0f ? (double)d[r] * (2 * q - top) : 0.0)) / up[p];
                E[r][p - p0] = e;
                for (int64_t t = p + 1; t < p1; t++) xr[t] -= e * up[t];
            }
        }
        for (int r = 0; r < R; r++) {
            double *xr = x + r * n;
            for (int64_t p = p0; p < p1; p++) {
                const double e = E[r][p - p0], *up = U + p * n;
                for (int64_t t = p1; t < n; t++) xr[t] -= e * up[t];
            }
        }
    }
    for (int r = 0; r < R && Hs && passes > 0; r++)
        refine_row(L, W + (r0 + r) * n, perm, Hs, table, passes, codes + r * np, scales + r * L->n_blocks,
                   x + r * n);
    for (int r = 0; r < R; r++)
        q35_pack_row(L, codes + r * np, scales + r * L->n_blocks,
                     out + L->header_bytes + (uint64_t)(r0 + r) * L->row_bytes);
}

int q35_quantize_tensor_gptq(const q35_layout *L, const float *W, const float *importance,
                             const double *H, const q35_gptq_params *p, int n_threads,
                             uint8_t *out, q35_quant_stats *stats) {
    const int nt = n_threads > 0 ? n_threads : 1;
    const int64_t n = L->n, np = L->np;
    float *imp = calloc((size_t)n, sizeof *imp);
    int32_t *perm = malloc((size_t)np * sizeof *perm);
    double *Hp = malloc((size_t)(n * n) * sizeof *Hp), *U = malloc((size_t)(n * n) * sizeof *U);
    float *back = malloc((size_t)(L->m * n) * sizeof *back);
    int rc = -1;
    if (!imp || !perm || !Hp || !U || !back) goto done;
    for (int64_t c = 0; c < n; c++) imp[c] = importance ? importance[c] : (float)fmax(H[c * n + c], 0.0);
    if (q35_choose_plus(L, W, imp, out)) goto done;
    q35_header_perm(L, out, perm);
    for (int64_t a = 0; a < n; a++) /* H in stored order */
        for (int64_t b = 0; b < n; b++) Hp[a * n + b] = H[(int64_t)perm[a] * n + perm[b]];
    const double damp = q35_gptq_factor(Hp, n, p->damp, nt, U);
    if (damp < 0.0) {
        if (q35_quantize_tensor(L, W, imp, nt, out, stats)) goto done;
    } else {
        /* the refinement's objective: H as factored (dead inputs kept at 0) */
        double mean = 0.0;
        for (int64_t a = 0; a < n; a++) mean += Hp[a * n + a] > 0.0 ? Hp[a * n + a] : 0.0;
        mean = mean > 0.0 ? mean / (double)n : 1.0;
        for (int64_t a = 0; a < n; a++) Hp[a * n + a] += damp * mean;
        const float base = q35_tensor_base(L, W, perm, 4.0f);
        memcpy(out, &base, 4);
        float table[256];
        q35_scale_table(base, table);
        const int64_t tasks = (L->m + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        int failed = 0;
#pragma omp parallel num_threads(nt)
        {
            double *x = malloc((size_t)(ROWS_PER_TASK * n) * sizeof *x);
            uint8_t *codes = malloc((size_t)(ROWS_PER_TASK * np));
            uint8_t *scales = malloc((size_t)(ROWS_PER_TASK * L->n_blocks));
            if (!x || !codes || !scales) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; t++) {
                if (failed) continue;
                const int64_t r0 = t * ROWS_PER_TASK;
                const int R = (int)(L->m - r0 < ROWS_PER_TASK ? L->m - r0 : ROWS_PER_TASK);
                gptq_rows(L, W, perm, U, Hp, p->passes, table, base, r0, R, x, codes, scales, out);
            }
            free(x);
            free(codes);
            free(scales);
        }
        if (failed) goto done;
    }
    if (stats) {
        q35_dequantize_tensor(L, out, back);
        double e2 = 0.0, r2 = 0.0;
        for (int64_t i = 0; i < L->m * n; i++) {
            e2 += ((double)W[i] - back[i]) * ((double)W[i] - back[i]);
            r2 += (double)W[i] * W[i];
        }
        stats->err2 = e2;
        stats->ref2 = r2;
        q35_output_error(W, back, L->m, n, H, nt, &stats->herr, &stats->href);
    }
    rc = 0;
done:
    free(imp);
    free(perm);
    free(Hp);
    free(U);
    free(back);
    return rc;
}
