/* q35quant.c — the Q3_5-family quantizer (reference; see q35quant.h). */
#include "format/q35quant.h"
#include "format/q35nearest.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Scale index whose grid value is nearest to d (grid: base * 2^((s-255)/16)). */
static int nearest_scale(float d, float base) {
    if (d <= 0.0f || base <= 0.0f) return 0;
    const double s = 255.0 + 16.0 * log2((double)d / (double)base);
    if (s < 1.0) return 1;
    if (s > 255.0) return 255;
    return (int)lround(s);
}

/* The code nearest to x / d for c-bit levels 2q - (2^c - 1): see
 * q35nearest.h (kept there, apart from the OpenMP code, for Frama-C). */
static int nearest_code(float x, float d, int c) { return q35_nearest_code(x, d, c); }

int q35_block_scale(const float *x, const float *w, int len, int c, const float table[256],
                       float base) {
    float amax = 0.0f;
    for (int i = 0; i < len; i++) amax = fmaxf(amax, fabsf(x[i]));
    if (amax == 0.0f) return 0;
    const int top = (1 << c) - 1;
    const int s0 = nearest_scale(amax / (float)top, base);
    int best_s = 0;
    double best = 0.0;
    for (int i = 0; i < len; i++) best += (double)w[i] * x[i] * x[i]; /* all-zero block */
    /* from a little above max/top (extremes exact) down to about half of it
     * (extremes clipped): 2^(-24/16) = 0.35 */
    for (int s = s0 + 4; s >= s0 - 24; s--) {
        if (s < 1 || s > 255) continue;
        const float d = table[s];
        double e = 0.0;
        for (int i = 0; i < len; i++) {
            const float l = (float)(2 * nearest_code(x[i], d, c) - top);
            const float r = x[i] - d * l;
            e += (double)w[i] * r * r;
        }
        if (e < best) {
            best = e;
            best_s = s;
        }
    }
    return best_s;
}

int q35_choose_plus(const q35_layout *L, const float *W, const float *imp, uint8_t *hdr) {
    memset(hdr, 0, L->header_bytes);
    uint32_t n4 = (uint32_t)L->n4;
    memcpy(hdr + 4, &n4, 4);
    if (L->n4 == 0) return 0;
    double *score = calloc((size_t)L->n, sizeof *score);
    int32_t *order = malloc((size_t)L->n * sizeof *order);
    if (!score || !order) {
        free(score);
        free(order);
        return -1;
    }
    for (int64_t r = 0; r < L->m; r++)
        for (int64_t c = 0; c < L->n; c++) score[c] += (double)W[r * L->n + c] * W[r * L->n + c];
    for (int64_t c = 0; c < L->n; c++) {
        score[c] *= imp ? imp[c] : 1.0;
        order[c] = (int32_t)c;
    }
    /* partial selection sort is O(n * n4); n is at most a few ten thousand */
    for (int64_t k = 0; k < L->n4; k++) {
        int64_t best = k;
        for (int64_t i = k + 1; i < L->n; i++)
            if (score[order[i]] > score[order[best]] ||
                (score[order[i]] == score[order[best]] && order[i] < order[best]))
                best = i;
        const int32_t t = order[k];
        order[k] = order[best];
        order[best] = t;
        hdr[8 + order[k] / 8] |= (uint8_t)(1u << (order[k] % 8));
    }
    free(score);
    free(order);
    return 0;
}

float q35_tensor_base(const q35_layout *L, const float *W, const int32_t *perm, float headroom) {
    /* the largest |w| / top over the columns of each width, divided once:
     * division by a positive number keeps the order, so this is the float
     * the element-wise maximum of |w| / top gives */
    float amax[2] = {0.0f, 0.0f}; /* plain columns, plus columns */
    for (int64_t r = 0; r < L->m; r++)
        for (int64_t j = 0; j < L->np; j++) {
            const float v = perm[j] < L->n ? fabsf(W[r * L->n + perm[j]]) : 0.0f;
            float *a = &amax[j < L->n4];
            *a = v > *a ? v : *a; /* NaN: ignored, as fmaxf does */
        }
    const float base = fmaxf(amax[0] / (float)((1 << L->b) - 1), amax[1] / (float)((1 << (L->b + 1)) - 1));
    return base * exp2f(headroom / 16.0f);
}

/* The smallest scale byte whose level range holds amax (c-bit codes). */
static int fitting_scale(float amax, int c, const float table[256], float base) {
    if (!(amax > 0.0f)) return 0;
    const float top = (float)((1 << c) - 1);
    int s = nearest_scale(amax / top, base);
    while (s < 255 && table[s] * top < amax) s++;
    while (s > 1 && table[s - 1] * top >= amax) s--;
    return s;
}

/* search: 1 searches each block's scale (q35_block_scale), 0 takes the
 * fitting one. stats (may be NULL) gets the squared errors. */
static int quantize(const q35_layout *L, const float *W, const float *importance, int search, int n_threads,
                    uint8_t *out, q35_quant_stats *stats) {
    if (q35_choose_plus(L, W, importance, out)) return -1;
    int32_t *perm = malloc((size_t)L->np * sizeof *perm);
    if (!perm) return -1;
    q35_header_perm(L, out, perm);
    const float base = q35_tensor_base(L, W, perm, 4.0f);
    memcpy(out, &base, 4);
    float table[256];
    q35_scale_table(base, table);

    double err2 = 0.0, ref2 = 0.0;
    int failed = 0;
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1) reduction(+ : err2, ref2)
    {
        float *x = malloc((size_t)L->np * sizeof *x), *w = malloc((size_t)L->np * sizeof *w);
        float *back = malloc((size_t)L->np * sizeof *back);
        uint8_t *codes = malloc((size_t)L->np), *scales = malloc((size_t)L->n_blocks);
        if (!x || !w || !back || !codes || !scales) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < L->m; r++) {
            if (failed) continue;
            for (int64_t j = 0; j < L->np; j++) {
                const int32_t c = perm[j];
                x[j] = c < L->n ? W[r * L->n + c] : 0.0f;
                if (search) w[j] = c < L->n ? (importance ? importance[c] : 1.0f) : 0.0f;
            }
            for (int64_t b = 0; b < L->n_blocks; b++) {
                const int64_t j0 = b * Q35_BLOCK;
                const int len = (int)(L->np - j0 < Q35_BLOCK ? L->np - j0 : Q35_BLOCK);
                const int c = q35_col_bits(L, j0);
                int s;
                if (search) {
                    s = q35_block_scale(x + j0, w + j0, len, c, table, base);
                } else {
                    float amax = 0.0f;
                    for (int i = 0; i < len; i++) {
                        const float a = fabsf(x[j0 + i]);
                        amax = a > amax ? a : amax; /* NaN: as if 0 */
                    }
                    s = fitting_scale(amax, c, table, base);
                }
                scales[b] = (uint8_t)s;
                for (int i = 0; i < len; i++)
                    codes[j0 + i] = (uint8_t)(s ? nearest_code(x[j0 + i], table[s], c) : ((1 << c) - 1) / 2);
            }
            uint8_t *row = out + L->header_bytes + (uint64_t)r * L->row_bytes;
            if (L->b == 8 && L->low_bits == 8 && L->n4 == 0) { /* Q8_S: scales, then a byte per code */
                memcpy(row, scales, (size_t)L->n_blocks);
                memcpy(row + L->low_off, codes, (size_t)L->np);
            } else {
                q35_pack_row(L, codes, scales, row);
            }
            if (!stats) continue;
            q35_dequantize_row(L, table, row, back);
            for (int64_t j = 0; j < L->np; j++) {
                if (perm[j] >= L->n) continue;
                err2 += (double)(x[j] - back[j]) * (x[j] - back[j]);
                ref2 += (double)x[j] * x[j];
            }
        }
        free(x);
        free(w);
        free(back);
        free(codes);
        free(scales);
    }
    free(perm);
    if (stats) {
        stats->err2 = err2;
        stats->ref2 = ref2;
    }
    return failed ? -1 : 0;
}

int q35_quantize_tensor(const q35_layout *L, const float *W, const float *importance,
                        int n_threads, uint8_t *out, q35_quant_stats *stats) {
    return quantize(L, W, importance, 1, n_threads, out, stats);
}

int q35_quantize_tensor_fast(const q35_layout *L, const float *W, int n_threads, uint8_t *out) {
    return quantize(L, W, NULL, 0, n_threads, out, NULL);
}

void q35_dequantize_tensor(const q35_layout *L, const uint8_t *data, float *W) {
    int32_t *perm = malloc((size_t)L->np * sizeof *perm);
    float *row = malloc((size_t)L->np * sizeof *row);
    float base, table[256];
    memcpy(&base, data, 4);
    q35_scale_table(base, table);
    q35_header_perm(L, data, perm);
    for (int64_t r = 0; r < L->m; r++) {
        q35_dequantize_row(L, table, data + L->header_bytes + (uint64_t)r * L->row_bytes, row);
        for (int64_t j = 0; j < L->np; j++)
            if (perm[j] < L->n) W[r * L->n + perm[j]] = row[j];
    }
    free(perm);
    free(row);
}

int q35_weight_error(const q35_layout *L, const uint8_t *data, const float *W, q35_quant_stats *stats) {
    const size_t count = (size_t)(L->n * L->m);
    float *Q = malloc(count * sizeof *Q);
    if (!Q) return -1;
    q35_dequantize_tensor(L, data, Q);
    double e = 0.0, r = 0.0;
    for (size_t i = 0; i < count; i++) {
        e += ((double)W[i] - Q[i]) * ((double)W[i] - Q[i]);
        r += (double)W[i] * W[i];
    }
    free(Q);
    stats->err2 = e;
    stats->ref2 = r;
    return 0;
}
