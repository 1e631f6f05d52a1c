/* ops.c — the elementwise ops' definitions (ops.h). */
#include "model/ops.h"

#include <math.h>

#include "format/dtype.h"

/* The sum of squares runs in 16 lanes, lane j taking elements j, j + 16,
 * ..., and the lanes are then added pairwise in a fixed order. One running
 * sum was a chain of n dependent adds (no compiler may reorder float adds),
 * a few microseconds per norm that decode's threads waited through; the
 * lanes are independent, so a compiler vectorizes them without changing
 * the sum. */
float q35_op_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps) {
    enum { LANES = 16 };
    float lane[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) lane[j] += x[i + j] * x[i + j];
    for (int j = 0; i < n; i++, j++) lane[j] += x[i] * x[i];
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) lane[j] += lane[j + w];
    const float ss = 1.0f / sqrtf(lane[0] / (float)n + eps);
    for (i = 0; i + LANES <= n; i += LANES) { /* 16 at a time through a local row: out may be x */
        float row[LANES];
        for (int j = 0; j < LANES; j++) row[j] = weight[i + j] * (ss * x[i + j]);
        for (int j = 0; j < LANES; j++) out[i + j] = row[j];
    }
    for (; i < n; i++) out[i] = weight[i] * (ss * x[i]);
    return ss;
}

void q35_op_rope_table(float *cs, const q35_rope *r, int pos) {
    const float p = (float)pos * r->freq_scale;
    for (int i = 0; i < r->n_rot / 2; i++) {
        const float freq = 1.0f / powf(r->theta, (float)(2 * i) / (float)r->n_rot);
        const float angle = r->factors ? p * freq / r->factors[i] : p * freq;
        cs[2 * i] = cosf(angle) * r->attn_factor;
        cs[2 * i + 1] = sinf(angle) * r->attn_factor;
    }
}

void q35_op_rope_apply(float *v, int64_t width, int hd, const q35_rope *r, const float *cs, int inverse) {
    const int half = r->n_rot / 2, norm = r->mode == Q35_ROPE_NORM;
    for (int64_t h = 0; h < width; h += hd) {
        float *x = v + h;
        for (int i = 0; i < half; i++) {
            const int a = norm ? 2 * i : i, b = norm ? 2 * i + 1 : i + half;
            const float c = cs[2 * i], sn = inverse ? -cs[2 * i + 1] : cs[2 * i + 1], x0 = x[a], x1 = x[b];
            x[a] = x0 * c - x1 * sn;
            x[b] = x0 * sn + x1 * c;
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

float q35_op_gelu_tanh(float x) { return 0.5f * x * (1.0f + tanhf(GELU_K * x * (1.0f + GELU_A * x * x))); }

float q35_op_gelu_tanh_grad(float x) {
    const float t = tanhf(GELU_K * x * (1.0f + GELU_A * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * GELU_A * x * x);
}

float q35_op_gelu_tanh_f16(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    const float h = q35_f16_to_f32(q35_f32_to_f16(x));
    return q35_f16_to_f32(q35_f32_to_f16(q35_op_gelu_tanh(h)));
}
