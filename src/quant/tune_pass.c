/* tune_pass.c — the tuner's forward and backward pass (tune_pass.h). */
#include "quant/tune_pass.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "model/ops.h"
#include "format/q35quant.h"

/* ---- products ---------------------------------------------------------- */

#define PAR_WORK 65536

/* y[t][r] = sum_j x[t][j] W[r][j] (+ b[r]) */
static void mm(float *y, const float *x, const float *W, const float *b, int T, int64_t n, int64_t m, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (int64_t)T * n * m > PAR_WORK)
    for (int t = 0; t < T; t++) {
        const float *xt = x + (int64_t)t * n;
        for (int64_t r = 0; r < m; r++) {
            const float *wr = W + r * n;
            float a = 0.0f;
#pragma omp simd reduction(+ : a)
            for (int64_t j = 0; j < n; j++) a += xt[j] * wr[j];
            y[(int64_t)t * m + r] = b ? a + b[r] : a;
        }
    }
}

/* dx[t][j] += sum_r dy[t][r] W[r][j] */
static void mm_dx(float *dx, const float *dy, const float *W, int T, int64_t n, int64_t m, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (int64_t)T * n * m > PAR_WORK)
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
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && (int64_t)T * n * m > PAR_WORK)
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

/* ---- norms and attention ------------------------------------------------- */

/* rows of D values: y = g * r * x, r per row */
static void rmsnorm(float *y, float *r, const float *x, const float *g, int64_t rows, int64_t D, float eps) {
    for (int64_t t = 0; t < rows; t++) r[t] = q35_op_rmsnorm(y + t * D, x + t * D, g, D, eps);
}

/* dx += the gradient through y = g * r * x; gg += dL/dg. */
static void rmsnorm_back(float *dx, float *gg, const float *dy, const float *x, const float *r, const float *g,
                         int64_t rows, int64_t D) {
    for (int64_t t = 0; t < rows; t++) {
        const float *xt = x + t * D, *d = dy + t * D;
        const float rt = r[t];
        double s = 0.0;
        for (int64_t i = 0; i < D; i++) {
            gg[i] += d[i] * rt * xt[i];
            s += (double)d[i] * g[i] * xt[i];
        }
        const float c = (float)(s * rt * rt * rt / (double)D);
        for (int64_t i = 0; i < D; i++) dx[t * D + i] += rt * g[i] * d[i] - c * xt[i];
    }
}

static int first_seen(const q35_op *op, int t) {
    return op->window > 0 && t + 1 > op->window ? t + 1 - op->window : 0;
}

/* Causal attention of q (T, H*hd), k, v (T, KV*hd) into out, keeping the
 * probabilities P (H, T, T) and, when capped, the capped scores Y. */
static void attend(const tuner *tu, const q35_op *op, const float *q, const float *k, const float *v, float *P,
                   float *Y, float *out, int T) {
    const q35_config *c = &tu->hp->c;
    const int hd = c->head_dim, H = c->n_heads, G = c->n_heads / c->n_kv_heads;
    const int dq = H * hd, dkv = c->n_kv_heads * hd;
#pragma omp parallel for num_threads(tu->nt) schedule(static) if (tu->nt > 1 && T > 16)
    for (int h = 0; h < H; h++) {
        const int kh = h / G;
        for (int t = 0; t < T; t++) {
            float *p = P + ((int64_t)h * T + t) * T, mx = -INFINITY, sum = 0.0f;
            const float *qt = q + (int64_t)t * dq + h * hd;
            const int s0 = first_seen(op, t);
            for (int s = 0; s < T; s++) p[s] = 0.0f;
            for (int s = s0; s <= t; s++) {
                const float *ks = k + (int64_t)s * dkv + kh * hd;
                float a = 0.0f;
                for (int i = 0; i < hd; i++) a += (qt[i] * op->scale) * ks[i];
                if (op->softcap > 0) a = op->softcap * tanhf(a / op->softcap);
                p[s] = a;
                mx = fmaxf(mx, a);
            }
            if (Y) memcpy(Y + ((int64_t)h * T + t) * T, p, (size_t)T * sizeof *p);
            for (int s = s0; s <= t; s++) sum += (p[s] = expf(p[s] - mx));
            for (int s = s0; s <= t; s++) p[s] /= sum;
            float *o = out + (int64_t)t * dq + h * hd;
            for (int i = 0; i < hd; i++) o[i] = 0.0f;
            for (int s = s0; s <= t; s++) {
                const float *vs = v + (int64_t)s * dkv + kh * hd;
                for (int i = 0; i < hd; i++) o[i] += p[s] * vs[i];
            }
        }
    }
}

/* The gradients of q, k, v (added to dq, dk, dv) from that of attend's
 * output. */
static void attend_back(const tuner *tu, const q35_op *op, const float *q, const float *k, const float *v,
                        const float *P, const float *Y, const float *dout, float *dq, float *dk, float *dv, int T) {
    const q35_config *c = &tu->hp->c;
    const int hd = c->head_dim, G = c->n_heads / c->n_kv_heads;
    const int dqw = c->n_heads * hd, dkv = c->n_kv_heads * hd;
    /* a KV head's dk, dv collect from its G query heads: one thread per KV head */
#pragma omp parallel num_threads(tu->nt) if (tu->nt > 1 && T > 16)
    {
        float *dS = malloc((size_t)T * sizeof *dS);
#pragma omp for schedule(static)
        for (int kh = 0; kh < c->n_kv_heads; kh++) {
            for (int h = kh * G; h < (kh + 1) * G && dS; h++)
                for (int t = 0; t < T; t++) {
                    const float *p = P + ((int64_t)h * T + t) * T, *dot = dout + (int64_t)t * dqw + h * hd;
                    const float *y = Y ? Y + ((int64_t)h * T + t) * T : NULL;
                    const float *qt = q + (int64_t)t * dqw + h * hd;
                    const int s0 = first_seen(op, t);
                    float dsum = 0.0f;
                    for (int s = s0; s <= t; s++) {
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
                    for (int s = s0; s <= t; s++) {
                        float e = p[s] * (dS[s] - dsum);
                        if (y) e *= 1.0f - (y[s] / op->softcap) * (y[s] / op->softcap);
                        e *= op->scale;
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

static int64_t width(const tuner *tu, int b) { return q35_buf_width(tu->hp, b); }

void tuner_forward(tuner *tu, const int *ids, int T) {
    const q35_hparams *hp = tu->hp;
    const q35_config *c = &hp->c;
    const int64_t D = c->dim, V = c->vocab_size, hd = c->head_dim;
    const int nt = tu->nt;
    float *X = tu->buf[Q35_B_X];
    for (int t = 0; t < T; t++) {
        for (int64_t i = 0; i < D; i++) X[t * D + i] = tu->embd->w[(int64_t)ids[t] * D + i] * hp->embd_scale;
        for (int r = 0; r < 2; r++) q35_op_rope_table(tu->cs[r] + (int64_t)t * hp->n_rot, &tu->qm->rope[r], t);
    }
    for (int l = 0; l < c->n_layers; l++) {
        const q35_layer *ly = &tu->qm->layers[l];
        for (int i = 0; i < ly->prog.n; i++) {
            top *o = &tu->ops[(int64_t)l * Q35_MAX_OPS + i];
            const q35_op *op = o->op;
            float *dst = tu->buf[op->dst], *src = tu->buf[op->src];
            const int64_t wd = width(tu, op->dst), ws = width(tu, op->src), TD = (int64_t)T * wd;
            switch (op->kind) {
            case Q35_OP_NORM:
                memcpy(o->in, src, (size_t)(T * ws) * sizeof *src);
                rmsnorm(dst, o->r, o->in, o->N->g, T, ws, c->rms_eps);
                break;
            case Q35_OP_HEAD_NORM:
                memcpy(o->in, dst, (size_t)TD * sizeof *dst);
                rmsnorm(dst, o->r, o->in, o->N->g, TD / hd, hd, c->rms_eps);
                break;
            case Q35_OP_MATMUL:
                memcpy(o->in, src, (size_t)(T * ws) * sizeof *src);
                mm(dst, o->in, o->M->w + o->row0 * o->M->n, o->bias, T, ws, o->rows, nt);
                break;
            case Q35_OP_ROPE:
                for (int t = 0; t < T; t++)
                    q35_op_rope_apply(dst + t * wd, wd, (int)hd, &tu->qm->rope[op->rope],
                                      tu->cs[op->rope] + (int64_t)t * hp->n_rot, 0);
                break;
            case Q35_OP_ATTN: {
                const int64_t kw = width(tu, Q35_B_K);
                memcpy(o->in, src, (size_t)(T * ws) * sizeof *src);
                memcpy(o->in2, tu->buf[Q35_B_K], (size_t)(T * kw) * sizeof *src);
                memcpy(o->in3, tu->buf[Q35_B_V], (size_t)(T * kw) * sizeof *src);
                attend(tu, op, o->in, o->in2, o->in3, o->P, o->Y, dst, T);
                break;
            }
            case Q35_OP_GLU: {
                memcpy(o->in, src, (size_t)TD * sizeof *src);
                memcpy(o->in2, tu->buf[op->src2], (size_t)TD * sizeof *src);
                for (int64_t j = 0; j < TD; j++) {
                    const float g = o->in[j];
                    const float a = op->act == Q35_ACT_SILU ? g / (1.0f + expf(-g)) : q35_op_gelu_tanh(g);
                    dst[j] = a * o->in2[j];
                }
                break;
            }
            case Q35_OP_ADD:
                for (int64_t j = 0; j < TD; j++) dst[j] += src[j];
                break;
            default:
                break;
            }
        }
    }
    memcpy(tu->xl, X, (size_t)(T * D) * sizeof *X);
    rmsnorm(tu->xf, tu->rf, tu->xl, tu->onorm->g, T, D, c->rms_eps);
    mm(tu->lg, tu->xf, tu->out->w, NULL, T, D, V, nt);
    if (hp->final_softcap > 0)
        for (int64_t j = 0; j < (int64_t)T * V; j++) tu->lg[j] = hp->final_softcap * tanhf(tu->lg[j] / hp->final_softcap);
}

double tuner_kl_grad(tuner *tu, int T) {
    const int V = tu->hp->c.vocab_size;
    const float cap = tu->hp->final_softcap;
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
            /* through the soft-cap z = c tanh(u / c): dz/du = 1 - (z / c)^2 */
            const double through = cap > 0 ? 1.0 - ((double)z[i] / cap) * ((double)z[i] / cap) : 1.0;
            z[i] = (float)((exp(lpz) - py) * through);
        }
        total += kl;
    }
    return total;
}

static void zero(float *p, int64_t n) { memset(p, 0, (size_t)n * sizeof *p); }

void tuner_backward(tuner *tu, const int *ids, int T) {
    const q35_hparams *hp = tu->hp;
    const q35_config *c = &hp->c;
    const int64_t D = c->dim, V = c->vocab_size, hd = c->head_dim;
    const int nt = tu->nt;
    for (int b = 0; b < Q35_N_BUFS; b++) zero(tu->dbuf[b], T * width(tu, b));
    float *dX = tu->dbuf[Q35_B_X], *tmp = tu->dbuf[Q35_B_H] + 0; /* scratch below: the H gradient is rebuilt */
    (void)tmp;
    /* classifier and final norm */
    float *dn = tu->dbuf[Q35_B_O]; /* free here: O's gradient starts at 0 */
    mm_dx(dn, tu->lg, tu->out->w, T, D, V, nt);
    mm_dw(tu->out->gw, tu->lg, tu->xf, T, D, V, nt);
    rmsnorm_back(dX, tu->onorm->p.g, dn, tu->xl, tu->rf, tu->onorm->g, T, D);
    zero(dn, T * D);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const q35_layer *ly = &tu->qm->layers[l];
        for (int i = ly->prog.n - 1; i >= 0; i--) {
            top *o = &tu->ops[(int64_t)l * Q35_MAX_OPS + i];
            const q35_op *op = o->op;
            float *dd = tu->dbuf[op->dst], *ds = tu->dbuf[op->src];
            const int64_t wd = width(tu, op->dst), ws = width(tu, op->src), TD = (int64_t)T * wd;
            switch (op->kind) {
            case Q35_OP_ADD:
                for (int64_t j = 0; j < TD; j++) ds[j] += dd[j];
                break;
            case Q35_OP_GLU: {
                float *du = tu->dbuf[op->src2];
                for (int64_t j = 0; j < TD; j++) {
                    const float g = o->in[j], u = o->in2[j], d = dd[j];
                    float a, da;
                    if (op->act == Q35_ACT_SILU) {
                        const float s = 1.0f / (1.0f + expf(-g));
                        a = g * s;
                        da = s * (1.0f + g * (1.0f - s));
                    } else {
                        a = q35_op_gelu_tanh(g);
                        da = q35_op_gelu_tanh_grad(g);
                    }
                    du[j] += d * a;
                    if (op->dst != op->src) dd[j] = 0.0f;
                    if (op->dst == op->src) dd[j] = d * u * da;
                    else ds[j] += d * u * da;
                }
                break;
            }
            case Q35_OP_ATTN: {
                float *dq = tu->dbuf[op->src], *dk = tu->dbuf[Q35_B_K], *dv = tu->dbuf[Q35_B_V];
                zero(dq, T * ws);
                zero(dk, T * width(tu, Q35_B_K));
                zero(dv, T * width(tu, Q35_B_V));
                attend_back(tu, op, o->in, o->in2, o->in3, o->P, o->Y, dd, dq, dk, dv, T);
                zero(dd, TD);
                break;
            }
            case Q35_OP_ROPE:
                for (int t = 0; t < T; t++)
                    q35_op_rope_apply(dd + t * wd, wd, (int)hd, &tu->qm->rope[op->rope],
                                      tu->cs[op->rope] + (int64_t)t * hp->n_rot, 1);
                break;
            case Q35_OP_HEAD_NORM: {
                float *g = tu->dbuf[Q35_B_A]; /* A's gradient is 0 before attention's backward */
                zero(g, TD);
                rmsnorm_back(g, o->N->p.g, dd, o->in, o->r, o->N->g, TD / hd, hd);
                memcpy(dd, g, (size_t)TD * sizeof *g);
                zero(g, TD);
                break;
            }
            case Q35_OP_MATMUL:
                mm_dx(ds, dd, o->M->w + o->row0 * o->M->n, T, ws, o->rows, nt);
                mm_dw(o->M->gw + o->row0 * o->M->n, dd, o->in, T, ws, o->rows, nt);
                zero(dd, TD);
                break;
            case Q35_OP_NORM:
                if (op->dst == op->src) { /* a post-norm in place: through a scratch row set */
                    float *g = tu->dbuf[Q35_B_H]; /* free: H is rewritten before its next use */
                    zero(g, TD);
                    rmsnorm_back(g, o->N->p.g, dd, o->in, o->r, o->N->g, T, ws);
                    memcpy(dd, g, (size_t)TD * sizeof *g);
                    zero(g, TD);
                } else {
                    rmsnorm_back(ds, o->N->p.g, dd, o->in, o->r, o->N->g, T, ws);
                    zero(dd, TD);
                }
                break;
            default:
                break;
            }
        }
    }
    for (int t = 0; t < T; t++) {
        float *g = tu->embd->gw + (int64_t)ids[t] * D;
        for (int64_t i = 0; i < D; i++) g[i] += dX[t * D + i] * hp->embd_scale;
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

void tmat_refresh(tmat *M) {
    if (!M->family) return;
    for (int64_t r = 0; r < M->m; r++) {
        const float *a = M->s.a + r * M->nb;
        for (int64_t j = 0; j < M->n; j++) M->w[r * M->n + j] = M->w0[r * M->n + j] * expf(a[M->blk[j]]);
    }
}

/* The whole tensor of src (a part: its tensor's every row). */
static int mat_init(tmat *M, const q35_matrix *src) {
    memset(M, 0, sizeof *M);
    M->t = src->t;
    M->slot = src->slot;
    M->n = src->t->ne[0];
    M->m = src->t->ne[1];
    M->w = malloc((size_t)(M->m * M->n) * sizeof *M->w);
    M->gw = calloc((size_t)(M->m * M->n), sizeof *M->gw);
    if (!M->w || !M->gw) return -1;
    if (src->dtype == Q35_DTYPE_F32) {
        memcpy(M->w, (const float *)src->t->data, (size_t)(M->m * M->n) * sizeof *M->w);
        return 0;
    }
    q35_layout L;
    if (q35_layout_init(&L, src->t->dtype, M->n, M->m)) return -1;
    M->family = 1;
    M->nb = L.n_blocks;
    M->blk = malloc((size_t)M->n * sizeof *M->blk);
    M->w0 = malloc((size_t)(M->m * M->n) * sizeof *M->w0);
    M->sb = malloc((size_t)(M->m * M->nb));
    int rc = !M->blk || !M->w0 || !M->sb || param_alloc(&M->s, M->m * M->nb) ? -1 : 0;
    for (int64_t p = 0; !rc && p < L.np; p++)
        if (src->perm[p] < M->n) M->blk[src->perm[p]] = (int32_t)(p / 32);
    const uint8_t *rows = (const uint8_t *)src->t->data + L.header_bytes;
    if (!rc) q35_dequantize_tensor(&L, src->t->data, M->w0);
    for (int64_t r = 0; !rc && r < M->m; r++) /* a row starts with its scale bytes (tune.c's save writes them back) */
        memcpy(M->sb + r * M->nb, rows + (uint64_t)r * L.row_bytes, (size_t)M->nb);
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

static int norm_init(tnorm *N, int slot, const float *g0, int64_t n) {
    N->slot = slot;
    N->g0 = g0;
    N->g = malloc((size_t)n * sizeof *N->g);
    if (!N->g || param_alloc(&N->p, n)) return -1;
    memcpy(N->g, g0, (size_t)n * sizeof *N->g);
    return 0;
}

void tuner_free(tuner *tu) {
    for (int i = 0; tu->mats && i < tu->n_mats; i++) mat_free(&tu->mats[i]);
    for (int i = 0; tu->norms && i < tu->n_norms; i++) {
        free(tu->norms[i].g);
        param_free(&tu->norms[i].p);
    }
    const int64_t n_ops = tu->qm ? (int64_t)tu->qm->cfg.n_layers * Q35_MAX_OPS : 0;
    for (int64_t i = 0; tu->ops && i < n_ops; i++) {
        top *o = &tu->ops[i];
        free(o->in);
        free(o->in2);
        free(o->in3);
        free(o->r);
        free(o->P);
        free(o->Y);
    }
    free(tu->mats);
    free(tu->norms);
    free(tu->ops);
    for (int b = 0; b < Q35_N_BUFS; b++) {
        free(tu->buf[b]);
        free(tu->dbuf[b]);
    }
    float *bufs[] = {tu->cs[0], tu->cs[1], tu->xl, tu->rf, tu->xf, tu->lg, tu->rl};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(tu, 0, sizeof *tu);
}

/* What op o keeps for T tokens, in floats (*per_op) and which arrays. */
static int64_t op_floats(const q35_hparams *hp, const q35_op *op, int64_t T) {
    const int64_t ws = q35_buf_width(hp, op->src), wd = q35_buf_width(hp, op->dst);
    switch (op->kind) {
    case Q35_OP_NORM: return T * ws + T;
    case Q35_OP_HEAD_NORM: return T * wd + T * wd / hp->c.head_dim;
    case Q35_OP_MATMUL: return T * ws;
    case Q35_OP_ATTN:
        return T * (ws + 2 * q35_buf_width(hp, Q35_B_K)) + (hp->attn_softcap > 0 ? 2 : 1) * hp->c.n_heads * T * T;
    case Q35_OP_GLU: return 2 * T * wd;
    default: return 0;
    }
}

static tmat *mat_for(tuner *tu, int *slot_mat, const q35_matrix *src, int *rc) {
    if (slot_mat[src->slot] < 0) {
        slot_mat[src->slot] = tu->n_mats;
        if (mat_init(&tu->mats[tu->n_mats++], src)) *rc = -1;
    }
    return &tu->mats[slot_mat[src->slot]];
}

static tnorm *norm_for(tuner *tu, int *slot_norm, int slot, const float *g0, int64_t n, int *rc) {
    if (slot_norm[slot] < 0) {
        slot_norm[slot] = tu->n_norms;
        if (norm_init(&tu->norms[tu->n_norms++], slot, g0, n)) *rc = -1;
    }
    return &tu->norms[slot_norm[slot]];
}

int tuner_init(tuner *tu, const q35_model *qm, int cap, int nt, q35_error *err) {
    memset(tu, 0, sizeof *tu);
    tu->qm = qm;
    tu->hp = &qm->hp;
    tu->nt = nt;
    tu->cap = cap;
    const q35_config *c = &qm->cfg;
    const int L = c->n_layers, nts = qm->weights.n_tensors;
    const int64_t T = cap, D = c->dim, V = c->vocab_size;
    int *slot_mat = malloc((size_t)nts * sizeof *slot_mat), *slot_norm = malloc((size_t)nts * sizeof *slot_norm);
    tu->mats = calloc((size_t)nts, sizeof *tu->mats);
    tu->norms = calloc((size_t)nts, sizeof *tu->norms);
    tu->ops = calloc((size_t)L * Q35_MAX_OPS, sizeof *tu->ops);
    int rc = !slot_mat || !slot_norm || !tu->mats || !tu->norms || !tu->ops ? -1 : 0;
    for (int i = 0; !rc && i < nts; i++) slot_mat[i] = slot_norm[i] = -1;
    for (int l = 0; l < L && !rc; l++) {
        const q35_layer *ly = &qm->layers[l];
        for (int i = 0; i < ly->prog.n && !rc; i++) {
            top *o = &tu->ops[(int64_t)l * Q35_MAX_OPS + i];
            const q35_op *op = &ly->prog.op[i];
            const q35_bound *b = &ly->b[i];
            o->op = op;
            if (op->kind == Q35_OP_MATMUL) {
                o->M = mat_for(tu, slot_mat, &b->w, &rc);
                o->row0 = b->w.row0;
                o->rows = b->w.m;
                o->bias = b->vec;
            } else if (op->kind == Q35_OP_NORM || op->kind == Q35_OP_HEAD_NORM) {
                const int64_t n = op->kind == Q35_OP_NORM ? q35_buf_width(tu->hp, op->src) : c->head_dim;
                o->N = norm_for(tu, slot_norm, b->vec_slot, b->vec, n, &rc);
            }
            const int64_t ws = q35_buf_width(tu->hp, op->src), wd = q35_buf_width(tu->hp, op->dst);
            const int64_t kw = q35_buf_width(tu->hp, Q35_B_K), HTT = (int64_t)c->n_heads * T * T;
            switch (op->kind) {
            case Q35_OP_NORM:
                rc |= !(o->in = malloc((size_t)(T * ws) * sizeof(float))) || !(o->r = malloc((size_t)T * sizeof(float)));
                break;
            case Q35_OP_HEAD_NORM:
                rc |= !(o->in = malloc((size_t)(T * wd) * sizeof(float))) ||
                      !(o->r = malloc((size_t)(T * wd / c->head_dim) * sizeof(float)));
                break;
            case Q35_OP_MATMUL: rc |= !(o->in = malloc((size_t)(T * ws) * sizeof(float))); break;
            case Q35_OP_ATTN:
                rc |= !(o->in = malloc((size_t)(T * ws) * sizeof(float))) ||
                      !(o->in2 = malloc((size_t)(T * kw) * sizeof(float))) ||
                      !(o->in3 = malloc((size_t)(T * kw) * sizeof(float))) ||
                      !(o->P = malloc((size_t)HTT * sizeof(float))) ||
                      (op->softcap > 0 && !(o->Y = malloc((size_t)HTT * sizeof(float))));
                break;
            case Q35_OP_GLU:
                rc |= !(o->in = malloc((size_t)(T * wd) * sizeof(float))) ||
                      !(o->in2 = malloc((size_t)(T * wd) * sizeof(float)));
                break;
            default:
                break;
            }
        }
    }
    if (!rc) tu->embd = mat_for(tu, slot_mat, &qm->token_embd, &rc);
    if (!rc) tu->out = mat_for(tu, slot_mat, &qm->output, &rc);
    if (!rc) tu->onorm = norm_for(tu, slot_norm, qm->output_norm_slot, qm->output_norm, D, &rc);
    for (int b = 0; b < Q35_N_BUFS && !rc; b++)
        rc |= !(tu->buf[b] = calloc((size_t)(T * q35_buf_width(tu->hp, b)), sizeof(float))) ||
              !(tu->dbuf[b] = calloc((size_t)(T * q35_buf_width(tu->hp, b)), sizeof(float)));
    float **bufs[] = {&tu->cs[0], &tu->cs[1], &tu->xl, &tu->rf, &tu->xf, &tu->lg, &tu->rl};
    const int64_t sizes[] = {T * tu->hp->n_rot, T * tu->hp->n_rot, T * D, T, T * D, T * V, T * V};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !rc; i++)
        if (!(*bufs[i] = malloc((size_t)sizes[i] * sizeof(float)))) rc = -1;
    free(slot_mat);
    free(slot_norm);
    return rc ? q35_fail(err, Q35_ERR_NOMEM, "out of memory for tuning") : Q35_OK;
}

uint64_t tuner_bytes(const q35_model *qm, int cap) {
    const q35_config *c = &qm->cfg;
    const uint64_t T = (uint64_t)(cap > 0 ? cap : 1), D = (uint64_t)c->dim, V = (uint64_t)c->vocab_size;
    /* w, gw, w0 and the scales' four arrays (one per 32 weights) for every 2-D tensor */
    uint64_t weights = 0, acts = 0;
    for (int i = 0; i < qm->weights.n_tensors; i++) {
        const q35_tensor *t = &qm->weights.tensors[i];
        if (t->n_dims == 2) weights += (uint64_t)t->ne[0] * (uint64_t)t->ne[1];
    }
    const uint64_t per_weight = 3 * 4 + 16 / 32 + 1;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < qm->layers[l].prog.n; i++)
            acts += (uint64_t)op_floats(&qm->hp, &qm->layers[l].prog.op[i], (int64_t)T);
    for (int b = 0; b < Q35_N_BUFS; b++) acts += 2 * T * (uint64_t)q35_buf_width(&qm->hp, b);
    acts += T * (3 * D + 1 + 2 * V + 2 * (uint64_t)qm->hp.n_rot);
    return weights * per_weight + acts * 4;
}
