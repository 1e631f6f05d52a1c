/* ops.c — the elementwise ops' definitions (ops.h). */
#include "model/ops.h"

#include <math.h>

#include "format/dtype.h"

float q35_op_rmsnorm(float *out, const float *x, const float *weight, int64_t n, float eps) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = weight[i] * (ss * x[i]);
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
