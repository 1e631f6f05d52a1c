/* tune.c — end-to-end tuning of block scales and norm weights (see tune.h).
 *
 * The pass here is plain fp32 over one whole document at a time, with every
 * activation kept for the backward pass: per layer RMSNorm, q/k/v, RoPE,
 * causal attention (grouped KV heads), the output projection, RMSNorm,
 * SwiGLU, the down projection; then the final RMSNorm and the classifier.
 * It mirrors forward.c's arithmetic except that activations are not
 * quantized to int8. Each product's output is computed by one thread in a
 * fixed order, so the results do not depend on the thread count. */
#include "quant/tune.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "io/gguf.h"
#include "model/model.h"
#include "format/q35quant.h"

#define ADAM_B1 0.9
#define ADAM_B2 0.999
#define ADAM_EPS 1e-12

/* Relative parameters a (value = initial * exp(a) for scales, initial *
 * (1 + a) for norm weights), their gradient and Adam's two moments. */
typedef struct tparam {
    int64_t n;
    float *a, *g, *m1, *m2;
} tparam;

/* One matrix as the tuner sees it. */
typedef struct tmat {
    const q35_tensor *t;
    int64_t m, n;        /* rows, row length */
    float *w;            /* (m, n) current weights, original column order */
    float *gw;           /* (m, n) the loss's gradient with respect to w */
    int family;          /* 1: a family type, whose scales are tuned */
    int64_t nb;          /* scale blocks per row */
    int32_t *blk;        /* (n) original column -> its block */
    float *w0;           /* (m, n) the weights at a = 0 */
    uint8_t *sb;         /* (m, nb) the scale bytes the weights stand for */
    tparam s;            /* (m * nb) log-scale offsets */
} tmat;

/* One RMSNorm weight vector. */
typedef struct tnorm {
    const float *g0;     /* (dim) as loaded */
    float *g;            /* (dim) current */
    tparam p;
} tnorm;

typedef struct tlayer {
    tmat *wq, *wk, *wv, *wo, *wg, *wu, *wd;
    tnorm *an, *fn;
} tlayer;

typedef struct tuner {
    q35_config c;
    int nt, cap;           /* threads; longest document in tokens */
    tmat *mats;
    int n_mats;
    tnorm *norms;          /* 2 per layer, then the final one */
    tlayer *layers;
    tmat *embd, *out;      /* out may be embd */
    /* activations of one document (T <= cap tokens), per layer l */
    float *x;              /* (L+1, T, D) residual stream entering layer l; [L] the last */
    float *xm;             /* (L, T, D) after attention's residual */
    float *xn1, *xn2;      /* (L, T, D) normed inputs of attention and FFN */
    float *r1, *r2, *rf;   /* (L, T), (L, T), (T) inverse RMS */
    float *q, *k, *v;      /* (L, T, Dq / Dkv / Dkv), q and k after RoPE */
    float *P;              /* (L, H, T, T) attention probabilities */
    float *att;            /* (L, T, Dq) attention outputs */
    float *gt, *up, *hh;   /* (L, T, F) gate, up, silu(gate) * up */
    float *xf;             /* (T, D) final normed */
    float *lg;             /* (T, V) logits, then their gradient */
    float *cs;             /* (T, hd) RoPE cos, sin */
    /* backward scratch */
    float *dx, *dn, *dq, *dk, *dv, *da, *dg, *du, *dhh;
    float *rl;             /* (T, V) the reference's logits */
} tuner;

/* ---- products ---------------------------------------------------------- */

/* y[t][r] = sum_j x[t][j] W[r][j] */
static void mm(float *y, const float *x, const float *W, int T, int64_t n, int64_t m, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (int64_t)T * n * m > 65536)
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * n;
        for (int64_t r = 0; r < m; r++) {
            const float *wr = W + r * n;
            float a = 0.0f;
#pragma omp simd reduction(+ : a)
            for (int64_t j = 0; j < n; j++) a += xt[j] * wr[j];
            y[(int64_t)t * m + r] = a;
        }
    }
}

/* dx[t][j] += sum_r dy[t][r] W[r][j] */
static void mm_dx(float *dx, const float *dy, const float *W, int T, int64_t n, int64_t m, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (int64_t)T * n * m > 65536)
    for (int t = 0; t < T; t++) {
        float *d = dx + (int64_t)t * n;
        for (int64_t r = 0; r < m; r++) {
            const float g = dy[(int64_t)t * m + r], *wr = W + r * n;
            if (g != 0.0f)
#pragma omp simd
                for (int64_t j = 0; j < n; j++) d[j] += g * wr[j];
        }
    }
}

/* gw[r][j] += sum_t dy[t][r] x[t][j] */
static void mm_dw(float *gw, const float *dy, const float *x, int T, int64_t n, int64_t m, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (int64_t)T * n * m > 65536)
    for (int64_t r = 0; r < m; r++) {
        float *g = gw + r * n;
        for (int t = 0; t < T; t++) {
            const float d = dy[(int64_t)t * m + r], *xt = x + (int64_t)t * n;
            if (d != 0.0f)
#pragma omp simd
                for (int64_t j = 0; j < n; j++) g[j] += d * xt[j];
        }
    }
}

/* ---- pieces -------------------------------------------------------------- */

static void rmsnorm(float *y, float *r, const float *x, const float *g, int T, int D, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * D;
        float ss = 0.0f;
        for (int i = 0; i < D; i++) ss += xt[i] * xt[i];
        r[t] = 1.0f / sqrtf(ss / (float)D + eps);
        for (int i = 0; i < D; i++) y[(int64_t)t * D + i] = g[i] * (r[t] * xt[i]);
    }
}

/* dx += the gradient through y = g * r * x; gg += dL/dg. */
static void rmsnorm_back(float *dx, float *gg, const float *dy, const float *x, const float *r, const float *g,
                         int T, int D) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * D, *d = dy + (int64_t)t * D;
        const float rt = r[t];
        double s = 0.0;
        for (int i = 0; i < D; i++) {
            gg[i] += d[i] * rt * xt[i];
            s += (double)d[i] * g[i] * xt[i];
        }
        const float c = (float)(s * rt * rt * rt / D);
        for (int i = 0; i < D; i++) dx[(int64_t)t * D + i] += rt * g[i] * d[i] - c * xt[i];
    }
}

static void rope(float *v, int T, int width, int hd, const float *cs, int inverse) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < width; i += 2) {
            const float c = cs[t * hd + i % hd], s = inverse ? -cs[t * hd + i % hd + 1] : cs[t * hd + i % hd + 1];
            float *p = v + (int64_t)t * width + i;
            const float v0 = p[0], v1 = p[1];
            p[0] = v0 * c - v1 * s;
            p[1] = v0 * s + v1 * c;
        }
}

/* Causal attention of layer tensors q (T, H*hd), k, v (T, KV*hd) into out,
 * keeping the probabilities P (H, T, T). */
static void attend(const tuner *tu, const float *q, const float *k, const float *v, float *P, float *out, int T) {
    const q35_config *c = &tu->c;
    const int hd = c->head_dim, H = c->n_heads, G = c->n_heads / c->n_kv_heads;
    const int dq = H * hd, dkv = c->n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for num_threads(tu->nt) schedule(static) if (tu->nt > 1 && T > 16)
    for (int h = 0; h < H; h++) {
        const int kh = h / G;
        for (int t = 0; t < T; t++) {
            float *p = P + ((int64_t)h * T + t) * T, mx = -INFINITY, sum = 0.0f;
            const float *qt = q + (int64_t)t * dq + h * hd;
            for (int s = 0; s <= t; s++) {
                const float *ks = k + (int64_t)s * dkv + kh * hd;
                float a = 0.0f;
                for (int i = 0; i < hd; i++) a += qt[i] * ks[i];
                p[s] = a * scale;
                mx = fmaxf(mx, p[s]);
            }
            for (int s = 0; s <= t; s++) sum += (p[s] = expf(p[s] - mx));
            for (int s = 0; s <= t; s++) p[s] /= sum;
            for (int s = t + 1; s < T; s++) p[s] = 0.0f;
            float *o = out + (int64_t)t * dq + h * hd;
            for (int i = 0; i < hd; i++) o[i] = 0.0f;
            for (int s = 0; s <= t; s++) {
                const float *vs = v + (int64_t)s * dkv + kh * hd;
                for (int i = 0; i < hd; i++) o[i] += p[s] * vs[i];
            }
        }
    }
}

/* The gradients of q, k, v (zeroed here) from that of attend's output. */
static void attend_back(const tuner *tu, const float *q, const float *k, const float *v, const float *P,
                        const float *dout, float *dq, float *dk, float *dv, int T) {
    const q35_config *c = &tu->c;
    const int hd = c->head_dim, H = c->n_heads, G = c->n_heads / c->n_kv_heads;
    const int dqw = H * hd, dkv = c->n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    memset(dq, 0, (size_t)T * dqw * sizeof *dq);
    memset(dk, 0, (size_t)T * dkv * sizeof *dk);
    memset(dv, 0, (size_t)T * dkv * sizeof *dv);
    /* a KV head's dk, dv collect from its G query heads: one thread per KV head */
#pragma omp parallel num_threads(tu->nt) if (tu->nt > 1 && T > 16)
    {
        float *dS = malloc((size_t)T * sizeof *dS);
#pragma omp for schedule(static)
        for (int kh = 0; kh < c->n_kv_heads; kh++) {
            for (int h = kh * G; h < (kh + 1) * G && dS; h++)
                for (int t = 0; t < T; t++) {
                    const float *p = P + ((int64_t)h * T + t) * T, *dot = dout + (int64_t)t * dqw + h * hd;
                    const float *qt = q + (int64_t)t * dqw + h * hd;
                    float dsum = 0.0f;
                    for (int s = 0; s <= t; s++) {
                        const float *vs = v + (int64_t)s * dkv + kh * hd;
                        float *dvs = dv + (int64_t)s * dkv + kh * hd;
                        float a = 0.0f;
                        for (int i = 0; i < hd; i++) {
                            a += dot[i] * vs[i];
                            dvs[i] += p[s] * dot[i];
                        }
                        dS[s] = a;
                        dsum += p[s] * a;
                    }
                    float *dqt = dq + (int64_t)t * dqw + h * hd;
                    for (int s = 0; s <= t; s++) {
                        const float e = p[s] * (dS[s] - dsum) * scale;
                        const float *ks = k + (int64_t)s * dkv + kh * hd;
                        float *dks = dk + (int64_t)s * dkv + kh * hd;
                        for (int i = 0; i < hd; i++) {
                            dqt[i] += e * ks[i];
                            dks[i] += e * qt[i];
                        }
                    }
                }
        }
        free(dS);
    }
}

/* ---- the pass -------------------------------------------------------------- */

#define AT(buf, l, per) ((buf) + (int64_t)(l) * (per))

static void forward(tuner *tu, const int *ids, int T) {
    const q35_config *c = &tu->c;
    const int D = c->dim, F = c->hidden_dim, L = c->n_layers, hd = c->head_dim;
    const int dq = c->n_heads * hd, dkv = c->n_kv_heads * hd, nt = tu->nt;
    const int64_t TD = (int64_t)T * D, TF = (int64_t)T * F;
    for (int t = 0; t < T; t++) {
        memcpy(tu->x + (int64_t)t * D, tu->embd->w + (int64_t)ids[t] * D, (size_t)D * sizeof(float));
        for (int j = 0; j < hd; j += 2) {
            const float freq = 1.0f / powf(c->rope_theta, (float)j / (float)hd), angle = (float)t * freq;
            tu->cs[t * hd + j] = cosf(angle);
            tu->cs[t * hd + j + 1] = sinf(angle);
        }
    }
    for (int l = 0; l < L; l++) {
        const tlayer *ly = &tu->layers[l];
        float *x = AT(tu->x, l, TD), *xm = AT(tu->xm, l, TD), *xn1 = AT(tu->xn1, l, TD), *xn2 = AT(tu->xn2, l, TD);
        float *q = AT(tu->q, l, (int64_t)T * dq), *k = AT(tu->k, l, (int64_t)T * dkv), *v = AT(tu->v, l, (int64_t)T * dkv);
        float *att = AT(tu->att, l, (int64_t)T * dq), *P = AT(tu->P, l, (int64_t)c->n_heads * T * T);
        float *gt = AT(tu->gt, l, TF), *up = AT(tu->up, l, TF), *hh = AT(tu->hh, l, TF);
        rmsnorm(xn1, AT(tu->r1, l, T), x, ly->an->g, T, D, c->rms_eps);
        mm(q, xn1, ly->wq->w, T, D, dq, nt);
        mm(k, xn1, ly->wk->w, T, D, dkv, nt);
        mm(v, xn1, ly->wv->w, T, D, dkv, nt);
        rope(q, T, dq, hd, tu->cs, 0);
        rope(k, T, dkv, hd, tu->cs, 0);
        attend(tu, q, k, v, P, att, T);
        mm(xm, att, ly->wo->w, T, dq, D, nt);
        for (int64_t i = 0; i < TD; i++) xm[i] += x[i];
        rmsnorm(xn2, AT(tu->r2, l, T), xm, ly->fn->g, T, D, c->rms_eps);
        mm(gt, xn2, ly->wg->w, T, D, F, nt);
        mm(up, xn2, ly->wu->w, T, D, F, nt);
        for (int64_t i = 0; i < TF; i++) hh[i] = gt[i] / (1.0f + expf(-gt[i])) * up[i];
        float *xo = AT(tu->x, l + 1, TD);
        mm(xo, hh, ly->wd->w, T, F, D, nt);
        for (int64_t i = 0; i < TD; i++) xo[i] += xm[i];
    }
    rmsnorm(tu->xf, tu->rf, AT(tu->x, L, TD), tu->norms[2 * L].g, T, D, c->rms_eps);
    mm(tu->lg, tu->xf, tu->out->w, T, D, c->vocab_size, nt);
}

/* Turns tu->lg into the gradient of sum over positions 0..T-2 of
 * KL(softmax(rl) || softmax(lg)); returns that sum. */
static double kl_grad(tuner *tu, int T) {
    const int V = tu->c.vocab_size;
    double total = 0.0;
    for (int t = 0; t < T; t++) {
        float *z = tu->lg + (int64_t)t * V;
        if (t == T - 1) {
            memset(z, 0, (size_t)V * sizeof *z);
            break;
        }
        const float *y = tu->rl + (int64_t)t * V;
        double mz = -INFINITY, my = -INFINITY, sz = 0.0, sy = 0.0;
        for (int i = 0; i < V; i++) {
            mz = fmax(mz, z[i]);
            my = fmax(my, y[i]);
        }
        for (int i = 0; i < V; i++) {
            sz += exp(z[i] - mz);
            sy += exp(y[i] - my);
        }
        const double lz = mz + log(sz), ly = my + log(sy);
        double kl = 0.0;
        for (int i = 0; i < V; i++) {
            const double lpy = y[i] - ly, py = exp(lpy), lpz = z[i] - lz;
            kl += py * (lpy - lpz);
            z[i] = (float)(exp(lpz) - py);
        }
        total += kl;
    }
    return total;
}

static void backward(tuner *tu, const int *ids, int T) {
    const q35_config *c = &tu->c;
    const int D = c->dim, F = c->hidden_dim, L = c->n_layers, hd = c->head_dim, V = c->vocab_size;
    const int dq = c->n_heads * hd, dkv = c->n_kv_heads * hd, nt = tu->nt;
    const int64_t TD = (int64_t)T * D, TF = (int64_t)T * F;
    float *dx = tu->dx, *dn = tu->dn;
    /* classifier and final norm */
    memset(dn, 0, (size_t)TD * sizeof *dn);
    mm_dx(dn, tu->lg, tu->out->w, T, D, V, nt);
    mm_dw(tu->out->gw, tu->lg, tu->xf, T, D, V, nt);
    memset(dx, 0, (size_t)TD * sizeof *dx);
    rmsnorm_back(dx, tu->norms[2 * L].p.g, dn, AT(tu->x, L, TD), tu->rf, tu->norms[2 * L].g, T, D);
    for (int l = L - 1; l >= 0; l--) {
        const tlayer *ly = &tu->layers[l];
        const float *x = AT(tu->x, l, TD), *xm = AT(tu->xm, l, TD), *xn1 = AT(tu->xn1, l, TD), *xn2 = AT(tu->xn2, l, TD);
        const float *q = AT(tu->q, l, (int64_t)T * dq), *k = AT(tu->k, l, (int64_t)T * dkv), *v = AT(tu->v, l, (int64_t)T * dkv);
        const float *att = AT(tu->att, l, (int64_t)T * dq), *P = AT(tu->P, l, (int64_t)c->n_heads * T * T);
        const float *gt = AT(tu->gt, l, TF), *up = AT(tu->up, l, TF), *hh = AT(tu->hh, l, TF);
        /* FFN: dx is the gradient of the layer's output, and of xm through the residual */
        memset(tu->dhh, 0, (size_t)TF * sizeof *tu->dhh);
        mm_dx(tu->dhh, dx, ly->wd->w, T, F, D, nt);
        mm_dw(ly->wd->gw, dx, hh, T, F, D, nt);
        for (int64_t i = 0; i < TF; i++) {
            const float s = 1.0f / (1.0f + expf(-gt[i])), d = tu->dhh[i];
            tu->dg[i] = d * up[i] * s * (1.0f + gt[i] * (1.0f - s));
            tu->du[i] = d * gt[i] * s;
        }
        memset(dn, 0, (size_t)TD * sizeof *dn);
        mm_dx(dn, tu->dg, ly->wg->w, T, D, F, nt);
        mm_dx(dn, tu->du, ly->wu->w, T, D, F, nt);
        mm_dw(ly->wg->gw, tu->dg, xn2, T, D, F, nt);
        mm_dw(ly->wu->gw, tu->du, xn2, T, D, F, nt);
        rmsnorm_back(dx, ly->fn->p.g, dn, xm, AT(tu->r2, l, T), ly->fn->g, T, D);
        /* attention: dx is now the gradient of xm */
        memset(tu->da, 0, (size_t)T * dq * sizeof *tu->da);
        mm_dx(tu->da, dx, ly->wo->w, T, dq, D, nt);
        mm_dw(ly->wo->gw, dx, att, T, dq, D, nt);
        attend_back(tu, q, k, v, P, tu->da, tu->dq, tu->dk, tu->dv, T);
        rope(tu->dq, T, dq, hd, tu->cs, 1);
        rope(tu->dk, T, dkv, hd, tu->cs, 1);
        memset(dn, 0, (size_t)TD * sizeof *dn);
        mm_dx(dn, tu->dq, ly->wq->w, T, D, dq, nt);
        mm_dx(dn, tu->dk, ly->wk->w, T, D, dkv, nt);
        mm_dx(dn, tu->dv, ly->wv->w, T, D, dkv, nt);
        mm_dw(ly->wq->gw, tu->dq, xn1, T, D, dq, nt);
        mm_dw(ly->wk->gw, tu->dk, xn1, T, D, dkv, nt);
        mm_dw(ly->wv->gw, tu->dv, xn1, T, D, dkv, nt);
        rmsnorm_back(dx, ly->an->p.g, dn, x, AT(tu->r1, l, T), ly->an->g, T, D);
    }
    for (int t = 0; t < T; t++) {
        float *g = tu->embd->gw + (int64_t)ids[t] * D;
        for (int i = 0; i < D; i++) g[i] += dx[(int64_t)t * D + i];
    }
}

/* ---- set-up ----------------------------------------------------------------- */

static int param_alloc(tparam *p, int64_t n) {
    p->n = n;
    p->a = calloc((size_t)n, sizeof *p->a);
    p->g = calloc((size_t)n, sizeof *p->g);
    p->m1 = calloc((size_t)n, sizeof *p->m1);
    p->m2 = calloc((size_t)n, sizeof *p->m2);
    return p->a && p->g && p->m1 && p->m2 ? 0 : -1;
}

static void param_free(tparam *p) {
    free(p->a);
    free(p->g);
    free(p->m1);
    free(p->m2);
}

/* w = w0 * exp(a of its block) */
static void mat_refresh(tmat *M) {
    if (!M->family) return;
    for (int64_t r = 0; r < M->m; r++) {
        const float *a = M->s.a + r * M->nb;
        for (int64_t j = 0; j < M->n; j++) M->w[r * M->n + j] = M->w0[r * M->n + j] * expf(a[M->blk[j]]);
    }
}

static int mat_init(tmat *M, const q35_matrix *src) {
    memset(M, 0, sizeof *M);
    M->t = src->t;
    M->n = src->t->ne[0];
    M->m = src->t->ne[1];
    M->w = malloc((size_t)(M->m * M->n) * sizeof *M->w);
    M->gw = calloc((size_t)(M->m * M->n), sizeof *M->gw);
    if (!M->w || !M->gw) return -1;
    if (src->dtype == Q35_DTYPE_F32) {
        memcpy(M->w, src->f32, (size_t)(M->m * M->n) * sizeof *M->w);
        return 0;
    }
    const q35_layout *L = &src->L;
    M->family = 1;
    M->nb = L->n_blocks;
    M->blk = malloc((size_t)M->n * sizeof *M->blk);
    M->w0 = malloc((size_t)(M->m * M->n) * sizeof *M->w0);
    M->sb = malloc((size_t)(M->m * M->nb));
    int rc = !M->blk || !M->w0 || !M->sb || param_alloc(&M->s, M->m * M->nb) ? -1 : 0;
    for (int64_t p = 0; !rc && p < L->np; p++)
        if (src->perm[p] < M->n) M->blk[src->perm[p]] = (int32_t)(p / 32);
    if (!rc) q35_dequantize_tensor(L, src->t->data, M->w0);
    for (int64_t r = 0; !rc && r < M->m; r++) /* a row starts with its scale bytes (save() writes them back) */
        memcpy(M->sb + r * M->nb, src->rows + (uint64_t)r * L->row_bytes, (size_t)M->nb);
    if (!rc) memcpy(M->w, M->w0, (size_t)(M->m * M->n) * sizeof *M->w);
    return rc;
}

static void mat_free(tmat *M) {
    free(M->w);
    free(M->gw);
    free(M->blk);
    free(M->w0);
    free(M->sb);
    param_free(&M->s);
}

static int norm_init(tnorm *N, const float *g0, int D) {
    N->g0 = g0;
    N->g = malloc((size_t)D * sizeof *N->g);
    if (!N->g || param_alloc(&N->p, D)) return -1;
    memcpy(N->g, g0, (size_t)D * sizeof *N->g);
    return 0;
}

static void tuner_free(tuner *tu) {
    for (int i = 0; tu->mats && i < tu->n_mats; i++) mat_free(&tu->mats[i]);
    for (int i = 0; tu->norms && i <= 2 * tu->c.n_layers; i++) {
        free(tu->norms[i].g);
        param_free(&tu->norms[i].p);
    }
    free(tu->mats);
    free(tu->norms);
    free(tu->layers);
    float *bufs[] = {tu->x, tu->xm, tu->xn1, tu->xn2, tu->r1, tu->r2, tu->rf, tu->q, tu->k, tu->v, tu->P,
                     tu->att, tu->gt, tu->up, tu->hh, tu->xf, tu->lg, tu->cs, tu->dx, tu->dn, tu->dq,
                     tu->dk, tu->dv, tu->da, tu->dg, tu->du, tu->dhh, tu->rl};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(tu, 0, sizeof *tu);
}

static int tuner_init(tuner *tu, const q35_model *qm, int cap, int nt, q35_error *err) {
    memset(tu, 0, sizeof *tu);
    tu->c = qm->cfg;
    tu->nt = nt;
    tu->cap = cap;
    const q35_config *c = &tu->c;
    const int L = c->n_layers, D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    const int dq = c->n_heads * c->head_dim, dkv = c->n_kv_heads * c->head_dim;
    const int tied = qm->output.t == qm->token_embd.t;
    tu->n_mats = 7 * L + 1 + !tied;
    tu->mats = calloc((size_t)tu->n_mats, sizeof *tu->mats);
    tu->norms = calloc((size_t)(2 * L + 1), sizeof *tu->norms);
    tu->layers = calloc((size_t)L, sizeof *tu->layers);
    if (!tu->mats || !tu->norms || !tu->layers) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int rc = 0, k = 0;
    for (int l = 0; l < L && !rc; l++) {
        const q35_layer *ql = &qm->layers[l];
        tlayer *ly = &tu->layers[l];
        const q35_matrix *src[7] = {&ql->wq, &ql->wk, &ql->wv, &ql->wo, &ql->w_gate, &ql->w_up, &ql->w_down};
        tmat **dst[7] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->wg, &ly->wu, &ly->wd};
        for (int i = 0; i < 7 && !rc; i++) {
            *dst[i] = &tu->mats[k];
            rc = mat_init(&tu->mats[k++], src[i]);
        }
        ly->an = &tu->norms[2 * l];
        ly->fn = &tu->norms[2 * l + 1];
        if (!rc) rc = norm_init(ly->an, ql->attn_norm, D) || norm_init(ly->fn, ql->ffn_norm, D);
    }
    tu->embd = &tu->mats[k];
    if (!rc) rc = mat_init(&tu->mats[k++], &qm->token_embd);
    tu->out = tied ? tu->embd : &tu->mats[k];
    if (!rc && !tied) rc = mat_init(&tu->mats[k++], &qm->output);
    if (!rc) rc = norm_init(&tu->norms[2 * L], qm->output_norm, D);
    const int64_t T = cap, TD = T * D, TF = T * F;
    float **bufs[] = {&tu->x, &tu->xm, &tu->xn1, &tu->xn2, &tu->r1, &tu->r2, &tu->rf, &tu->q, &tu->k, &tu->v, &tu->P,
                      &tu->att, &tu->gt, &tu->up, &tu->hh, &tu->xf, &tu->lg, &tu->cs, &tu->dx, &tu->dn, &tu->dq,
                      &tu->dk, &tu->dv, &tu->da, &tu->dg, &tu->du, &tu->dhh, &tu->rl};
    const int64_t sizes[] = {(L + 1) * TD, L * TD, L * TD, L * TD, L * T, L * T, T, L * T * dq, L * T * dkv,
                             L * T * dkv, (int64_t)L * c->n_heads * T * T, L * T * dq, L * TF, L * TF, L * TF,
                             TD, T * V, T * c->head_dim, TD, TD, T * dq, T * dkv, T * dkv, T * dq, TF, TF, TF,
                             T * V};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !rc; i++)
        if (!(*bufs[i] = malloc((size_t)sizes[i] * sizeof(float)))) rc = -1;
    return rc ? q35_fail(err, Q35_ERR_NOMEM, "out of memory for tuning") : Q35_OK;
}

/* ---- the loop ---------------------------------------------------------------- */

typedef struct docs_ids {
    int **ids;
    int *n;
    int n_docs, cap;
} docs_ids;

static void docs_free(docs_ids *d) {
    for (int i = 0; d->ids && i < d->n_docs; i++) free(d->ids[i]);
    free(d->ids);
    free(d->n);
}

static int docs_tokenize(const q35_model *m, const char *const *docs, const size_t *lens, int n_docs,
                         int64_t max_tokens, docs_ids *d, q35_error *err) {
    memset(d, 0, sizeof *d);
    d->ids = calloc((size_t)n_docs, sizeof *d->ids);
    d->n = calloc((size_t)n_docs, sizeof *d->n);
    if (!d->ids || !d->n) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int64_t tokens = 0;
    for (int i = 0; i < n_docs && (!max_tokens || tokens < max_tokens); i++) {
        int rc = q35_tokenize(m, docs[i], lens[i], 1, &d->ids[i], &d->n[i], err);
        d->n_docs = i + 1;
        if (rc) return rc;
        if (d->n[i] > m->cfg.seq_len) d->n[i] = m->cfg.seq_len;
        if (max_tokens && d->n[i] > max_tokens - tokens) d->n[i] = (int)(max_tokens - tokens);
        if (d->n[i] > d->cap) d->cap = d->n[i];
        tokens += d->n[i];
    }
    return Q35_OK;
}

/* The reference's logits of one document into tu->rl. */
static int ref_logits(q35_session *s, tuner *tu, const int *ids, int T, q35_error *err) {
    q35_session_reset(s);
    return q35_session_eval_batch(s, ids, T, tu->rl, NULL, err);
}

static void adam(tparam *p, double scale, double lr, int step) {
    const double c1 = 1.0 - pow(ADAM_B1, step), c2 = 1.0 - pow(ADAM_B2, step);
    for (int64_t i = 0; i < p->n; i++) {
        const double g = p->g[i] * scale;
        p->m1[i] = (float)(ADAM_B1 * p->m1[i] + (1.0 - ADAM_B1) * g);
        p->m2[i] = (float)(ADAM_B2 * p->m2[i] + (1.0 - ADAM_B2) * g * g);
        p->a[i] -= (float)(lr * (p->m1[i] / c1) / (sqrt(p->m2[i] / c2) + ADAM_EPS));
        p->g[i] = 0.0f;
    }
}

/* One Adam step from the gradients gathered over `positions` positions. */
static void step(tuner *tu, int scales, double lr, int t, int64_t positions) {
    const double scale = 1.0 / (double)positions;
    for (int i = 0; i < tu->n_mats; i++) {
        tmat *M = &tu->mats[i];
        if (scales && M->family) {
            for (int64_t r = 0; r < M->m; r++)
                for (int64_t j = 0; j < M->n; j++)
                    M->s.g[r * M->nb + M->blk[j]] += M->gw[r * M->n + j] * M->w[r * M->n + j];
            adam(&M->s, scale, lr, t);
            mat_refresh(M);
        }
        memset(M->gw, 0, (size_t)(M->m * M->n) * sizeof *M->gw);
    }
    for (int i = 0; i <= 2 * tu->c.n_layers; i++) {
        tnorm *N = &tu->norms[i];
        for (int64_t j = 0; j < N->p.n; j++) N->p.g[j] *= N->g0[j];
        adam(&N->p, scale, lr, t);
        for (int64_t j = 0; j < N->p.n; j++) N->g[j] = N->g0[j] * (1.0f + N->p.a[j]);
    }
}

/* Rounds every scale to the format's grid (the byte nearest in log2) and
 * restarts Adam for the norms. */
static void snap(tuner *tu) {
    for (int i = 0; i < tu->n_mats; i++) {
        tmat *M = &tu->mats[i];
        if (!M->family) continue;
        for (int64_t e = 0; e < M->m * M->nb; e++) {
            if (!M->sb[e]) continue;
            long s = M->sb[e] + lround(16.0 * M->s.a[e] / log(2.0));
            s = s < 1 ? 1 : s > 255 ? 255 : s;
            M->s.a[e] = (float)((double)(s - M->sb[e]) * log(2.0) / 16.0);
            M->sb[e] = (uint8_t)s;
        }
        /* the new bytes now stand for w0 scaled by 2^(a*16/ln2 / 16): keep them as w0 */
        mat_refresh(M);
        memcpy(M->w0, M->w, (size_t)(M->m * M->n) * sizeof *M->w0);
        memset(M->s.a, 0, (size_t)M->s.n * sizeof *M->s.a);
    }
    for (int i = 0; i <= 2 * tu->c.n_layers; i++) {
        tnorm *N = &tu->norms[i];
        memset(N->p.m1, 0, (size_t)N->p.n * sizeof *N->p.m1);
        memset(N->p.m2, 0, (size_t)N->p.n * sizeof *N->p.m2);
    }
}

/* Writes qm with tu's scale bytes and norm weights to path. */
static int save(const q35_model *qm, const tuner *tu, const char *path, q35_error *err) {
    q35_weights qw;
    memset(&qw, 0, sizeof qw);
    qw.cfg = qm->cfg;
    snprintf(qw.format, sizeof qw.format, "GGUF v3");
    int rc = Q35_OK;
    for (int i = 0; rc == Q35_OK && i < qm->weights.n_tensors; i++) {
        const q35_tensor *t = &qm->weights.tensors[i];
        uint8_t *buf = malloc(t->nbytes ? t->nbytes : 1);
        if (!buf || q35_weights_own(&qw, buf)) { /* q35_weights_own frees buf when it fails */
            rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(buf, t->data, t->nbytes);
        for (int k = 0; k < tu->n_mats; k++) {
            const tmat *M = &tu->mats[k];
            if (M->t != t || !M->family) continue;
            q35_layout L;
            q35_layout_init(&L, t->dtype, M->n, M->m);
            for (int64_t r = 0; r < M->m; r++)
                memcpy(buf + L.header_bytes + (uint64_t)r * L.row_bytes, M->sb + r * M->nb, (size_t)M->nb);
        }
        for (int k = 0; k <= 2 * tu->c.n_layers; k++)
            if (tu->norms[k].g0 == (const float *)t->data)
                memcpy(buf, tu->norms[k].g, (size_t)tu->c.dim * sizeof(float));
        if (!q35_weights_add(&qw, t->dtype, t->n_dims, t->ne, buf, "%s", t->name))
            rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    if (rc == Q35_OK) rc = q35_gguf_save_model(path, &qw, qm->tokenizer, -1, err);
    q35_weights_free(&qw);
    return rc;
}

static int check_pair(const q35_model *ref, const q35_model *qm, q35_error *err) {
    const q35_config *a = &ref->cfg, *b = &qm->cfg;
    if (a->dim != b->dim || a->hidden_dim != b->hidden_dim || a->n_layers != b->n_layers ||
        a->n_heads != b->n_heads || a->n_kv_heads != b->n_kv_heads || a->vocab_size != b->vocab_size ||
        a->seq_len != b->seq_len)
        return q35_fail(err, Q35_ERR_ARG, "tuning: the quantized model's shape differs from the reference's");
    return Q35_OK;
}

/* What every entry point sets up: the documents' tokens, the tuner and a
 * session of the reference. */
typedef struct tune_run {
    docs_ids d;
    tuner tu;
    q35_session *s;
} tune_run;

static int run_open(tune_run *r, const q35_model *ref, const q35_model *qm, const char *const *docs,
                    const size_t *lens, int n_docs, int64_t max_tokens, int nt, q35_error *err) {
    memset(r, 0, sizeof *r);
    int rc = check_pair(ref, qm, err);
    if (!rc) rc = docs_tokenize(qm, docs, lens, n_docs, max_tokens, &r->d, err);
    if (!rc) rc = tuner_init(&r->tu, qm, r->d.cap > 0 ? r->d.cap : 1, nt, err);
    if (!rc) rc = q35_session_new(&r->s, ref, nt, err);
    return rc;
}

static void run_close(tune_run *r) {
    q35_session_free(r->s);
    tuner_free(&r->tu);
    docs_free(&r->d);
}

int q35_tune_loss(const q35_model *ref, const q35_model *qm, const char *const *docs, const size_t *lens,
                  int n_docs, int n_threads, double *kl, q35_error *err) {
    tune_run r;
    int rc = run_open(&r, ref, qm, docs, lens, n_docs, 0, n_threads > 0 ? n_threads : 1, err);
    double total = 0.0;
    int64_t positions = 0;
    for (int i = 0; !rc && i < r.d.n_docs; i++) {
        if (r.d.n[i] < 2) continue;
        if ((rc = ref_logits(r.s, &r.tu, r.d.ids[i], r.d.n[i], err))) break;
        forward(&r.tu, r.d.ids[i], r.d.n[i]);
        total += kl_grad(&r.tu, r.d.n[i]);
        positions += r.d.n[i] - 1;
    }
    *kl = positions ? total / (double)positions : 0.0;
    run_close(&r);
    return rc;
}

int q35_tune_model(const q35_model *ref, const q35_model *qm, const char *out_path, const char *const *docs,
                   const size_t *lens, int n_docs, const q35_tune_params *p, int n_threads,
                   q35_tune_progress progress, void *user, q35_error *err) {
    tune_run r;
    int rc = run_open(&r, ref, qm, docs, lens, n_docs, p->max_tokens, n_threads > 0 ? n_threads : 1, err);
    docs_ids *d = &r.d;
    tuner *tu = &r.tu;
    const int epochs = p->epochs + p->norm_epochs;
    int t = 0;
    for (int e = 0; !rc && e < epochs; e++) {
        const int scales = e < p->epochs;
        if (e == p->epochs) {
            snap(tu);
            t = 0;
        }
        double kl = 0.0;
        int64_t positions = 0;
        for (int i = 0; !rc && i < d->n_docs; i++) {
            if (d->n[i] >= 2) {
                if ((rc = ref_logits(r.s, tu, d->ids[i], d->n[i], err))) break;
                forward(tu, d->ids[i], d->n[i]);
                kl += kl_grad(tu, d->n[i]);
                backward(tu, d->ids[i], d->n[i]);
                positions += d->n[i] - 1;
            }
            if (positions > 0 && (positions >= p->batch_tokens || i == d->n_docs - 1)) {
                step(tu, scales, p->lr, ++t, positions);
                if (progress) progress(user, e + 1, epochs, i + 1, d->n_docs, kl / (double)positions);
                kl = 0.0;
                positions = 0;
            }
        }
    }
    if (!rc && p->epochs > 0 && p->norm_epochs == 0) snap(tu);
    if (!rc) rc = save(qm, tu, out_path, err);
    run_close(&r);
    return rc;
}

uint64_t q35_tune_bytes(const q35_model *qm, int cap) {
    const q35_config *c = &qm->cfg;
    const uint64_t T = (uint64_t)(cap > 0 ? cap : 1), L = (uint64_t)c->n_layers, D = (uint64_t)c->dim;
    const uint64_t F = (uint64_t)c->hidden_dim, V = (uint64_t)c->vocab_size;
    const uint64_t dq = (uint64_t)c->n_heads * (uint64_t)c->head_dim, dkv = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    const uint64_t tied = qm->output.t == qm->token_embd.t;
    const uint64_t weights = L * (D * (dq + 2 * dkv) + dq * D + 3 * D * F) + V * D * (2 - tied);
    /* w, gw, w0 and the scales' four arrays (one per 32 weights) */
    const uint64_t per_weight = 3 * 4 + 16 / 32 + 1;
    const uint64_t acts = (L + 1) * T * D + L * T * (3 * D + 2 + 2 * dq + 2 * dkv + 3 * F) + L * c->n_heads * T * T +
                          T * (2 * D + 2 * V + 1 + c->head_dim + 2 * dq + 2 * dkv + 3 * F);
    return weights * per_weight + acts * 4;
}

int q35_tune_check_gradient(const q35_model *ref, const q35_model *qm, const char *doc, size_t len, int n,
                            double h, double *analytic, double *numeric, q35_error *err) {
    const char *docs[1] = {doc};
    tune_run r;
    int rc = run_open(&r, ref, qm, docs, &len, 1, 0, 1, err);
    docs_ids *d = &r.d;
    tuner *tu = &r.tu;
    if (!rc && d->n[0] < 2) rc = q35_fail(err, Q35_ERR_ARG, "the document needs at least 2 tokens");
    if (!rc) rc = ref_logits(r.s, tu, d->ids[0], d->n[0], err);
    const int T = rc ? 0 : d->n[0];
    if (!rc) {
        forward(tu, d->ids[0], T);
        kl_grad(tu, T);
        backward(tu, d->ids[0], T);
    }
    for (int k = 0; !rc && k < n; k++) {
        /* even k: a block scale of matrix k/2 (mod the count); odd: a norm weight */
        float *a;
        double g;
        tmat *M = &tu->mats[(k / 2 * 5) % tu->n_mats];
        tnorm *N = &tu->norms[(k / 2 * 3) % (2 * tu->c.n_layers + 1)];
        if (k % 2 == 0 && M->family) {
            const int64_t row = (k * 7919) % M->m, b = k % M->nb;
            g = 0.0;
            for (int64_t j = 0; j < M->n; j++)
                if (M->blk[j] == b) g += M->gw[row * M->n + j] * M->w[row * M->n + j];
            a = &M->s.a[row * M->nb + b];
        } else {
            const int64_t j = (k * 31) % N->p.n;
            g = N->p.g[j] * N->g0[j];
            a = &N->p.a[j];
            M = NULL;
        }
        double L2[2];
        for (int side = 0; side < 2; side++) {
            *a = (float)(side ? -h : h);
            if (M) mat_refresh(M);
            for (int64_t j = 0; !M && j < N->p.n; j++) N->g[j] = N->g0[j] * (1.0f + N->p.a[j]);
            forward(tu, d->ids[0], T);
            L2[side] = kl_grad(tu, T);
        }
        *a = 0.0f;
        if (M) mat_refresh(M);
        for (int64_t j = 0; !M && j < N->p.n; j++) N->g[j] = N->g0[j];
        analytic[k] = g;
        numeric[k] = (L2[0] - L2[1]) / (2.0 * h);
    }
    run_close(&r);
    return rc;
}
