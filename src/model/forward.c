/* forward.c — one token through a LLaMA-architecture decoder, top to
 * bottom: embedding, then per layer RMSNorm -> attention (RoPE, grouped
 * KV heads, KV cache in fp32 or fp16) -> residual -> RMSNorm -> SwiGLU FFN
 * -> residual, then final RMSNorm and the classifier. Matrix-vector
 * products go through the session's kernel table, split over threads by
 * output rows. A GPU session (q35_session_new_gpu, `make cuda`) hands the
 * first gpu_layers layers, or the whole pass, to the CUDA backend
 * (src/cuda/). Prompts in batches: prefill.c, with the same pieces. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "format/dtype.h"
#include "model/session.h"
#ifdef Q35_CUDA
#include "cuda/cuda_backend.h"
#endif

/* Quantizes x for family matrix w into activation set k. */
static void prepare_input(q35_session *s, int k, const q35_matrix *w, const float *x) {
    const q35_layout *L = &w->L;
    for (int64_t j = 0; j < L->np; j++) s->xp[k][j] = w->perm[j] < L->n ? x[w->perm[j]] : 0.0f;
    s->k.q35_quantize_act(s->xp[k], L->np, s->aq[k], s->ad[k], s->asum[k]);
}

/* Rows r0..r1 of w times x (or its quantized set k) into out[r0..r1). */
static void product_rows(const q35_session *s, int k, const q35_matrix *w, const float *x,
                         float *out, int64_t r0, int64_t r1) {
    if (w->dtype == Q35_DTYPE_F32) {
        const int64_t n = w->t->ne[0];
        s->k.matvec_f32(out + r0, w->f32, n, x, n, r0, r1);
        return;
    }
    const q35_qact a = {w->L.np, s->aq[k], s->ad[k], s->asum[k]};
    if (q35_uses_r16(&s->k, w)) {
        s->k.q35_r16_rows(&w->L, w->table, w->r16, r0, r1, &a, out + r0);
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        out[r] = s->k.q35_row_dot(&w->L, w->table, w->rows + (uint64_t)r * w->L.row_bytes, &a);
}

/* outs[i] = ws[i] x for the n (<= 3) matrices ws (same row length), in one
 * parallel region: their rows, taken end to end, are split evenly over the
 * threads (one fork and join instead of n). */
static void matvecs(q35_session *s, int n, float *const *outs, const q35_matrix *const *ws,
                    const float *x) {
    const int64_t cols = ws[0]->t->ne[0];
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        total += ws[i]->t->ne[1];
        if (ws[i]->dtype != Q35_DTYPE_F32) prepare_input(s, i, ws[i], x);
        q35_observe(s, ws[i], x, 1, cols);
    }
    const int nt = s->n_threads > 1 && total * cols >= Q35_PARALLEL_MIN_WORK ? s->n_threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t lo = total * t / T, hi = total * (t + 1) / T;
        int64_t base = 0; /* first row of matrix i in the end-to-end numbering */
        for (int i = 0; i < n; base += ws[i]->t->ne[1], i++) {
            const int64_t r0 = q35_rows_edge(&s->k, ws[i], lo > base ? lo - base : 0);
            const int64_t r1 = q35_rows_edge(&s->k, ws[i], hi - base < ws[i]->t->ne[1] ? hi - base : ws[i]->t->ne[1]);
            if (r0 < r1) product_rows(s, i, ws[i], x, outs[i], r0, r1);
        }
    }
}

/* out = W x. */
static void matvec(q35_session *s, float *out, const q35_matrix *w, const float *x) {
    matvecs(s, 1, &out, &w, x);
}

/* Row `token` of the embedding, in the original column order. */
void q35_fwd_embed(q35_session *s, int token, float *x) {
    const q35_matrix *e = &s->model->token_embd;
    const int64_t dim = e->t->ne[0];
    if (e->dtype == Q35_DTYPE_F32) {
        memcpy(x, e->f32 + (size_t)token * (size_t)dim, (size_t)dim * sizeof *x);
        return;
    }
    q35_dequantize_row(&e->L, e->table, e->rows + (uint64_t)token * e->L.row_bytes, s->xp[0]);
    for (int64_t j = 0; j < e->L.np; j++)
        if (e->perm[j] < dim) x[e->perm[j]] = s->xp[0][j];
}

void q35_fwd_rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = weight[i] * (ss * x[i]);
}

/* Adjacent pairs (v[2i], v[2i+1]) of each head turn by pos * theta^(-2i/head_dim). */
void q35_fwd_rope_table(float *cs, int head_dim, int pos, float theta) {
    for (int j = 0; j < head_dim; j += 2) {
        float freq = 1.0f / powf(theta, (float)j / (float)head_dim);
        float angle = (float)pos * freq;
        cs[j] = cosf(angle);
        cs[j + 1] = sinf(angle);
    }
}

void q35_fwd_rope(float *v, int n, int head_dim, const float *cs) {
    for (int i = 0; i < n; i += 2) {
        const float c = cs[i % head_dim], sn = cs[i % head_dim + 1];
        float v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * c - v1 * sn;
        v[i + 1] = v0 * sn + v1 * c;
    }
}

/* The cache holds, per layer and KV head, the rows of positions 0 ..
 * seq_len-1 one after another (head_dim values each): attention reads one
 * contiguous stream per KV head. */
static size_t kv_offset(const q35_config *c, int l, int kvh, int p) {
    return (((size_t)l * (size_t)c->n_kv_heads + (size_t)kvh) * (size_t)c->seq_len + (size_t)p) *
           (size_t)c->head_dim;
}

void q35_fwd_kv_store(q35_session *s, int l, int p, const float *k, const float *v) {
    const q35_config *c = &s->model->cfg;
    const int hd = c->head_dim;
    for (int h = 0; h < c->n_kv_heads; h++) {
        const size_t off = kv_offset(c, l, h, p);
        if (s->kv_f16) {
            s->k.f32_to_f16((uint16_t *)s->key_cache + off, k + (size_t)h * hd, hd);
            s->k.f32_to_f16((uint16_t *)s->value_cache + off, v + (size_t)h * hd, hd);
        } else {
            memcpy((float *)s->key_cache + off, k + (size_t)h * hd, (size_t)hd * sizeof *k);
            memcpy((float *)s->value_cache + off, v + (size_t)h * hd, (size_t)hd * sizeof *v);
        }
    }
}

/* The scores are products of the cached keys with the queries, the
 * outputs score-weighted sums of the cached values; an fp16 cache widens
 * each row once for all nh heads. */
void q35_fwd_attend(const q35_session *s, int l, int h0, int nh, int p, float *q, float *att,
                    int64_t ld_att, float *out) {
    const q35_config *c = &s->model->cfg;
    const int hd = c->head_dim;
    const size_t head_off = kv_offset(c, l, h0 / (c->n_heads / c->n_kv_heads), 0);
    const float scale = 1.0f / sqrtf((float)hd); /* scores are q.k / sqrt(head_dim) */
    for (int i = 0; i < nh * hd; i++) q[i] *= scale;
    if (s->kv_f16) {
        s->k.attn_scores_f16(att, ld_att, (const uint16_t *)s->key_cache + head_off, hd, q, nh,
                             hd, p + 1);
        for (int j = 0; j < nh; j++) s->k.softmax_f32(att + j * ld_att, p + 1);
        s->k.attn_wsum_f16(out, att, ld_att, (const uint16_t *)s->value_cache + head_off, hd, nh,
                           hd, p + 1);
        return;
    }
    for (int j = 0; j < nh; j++) {
        float *a = att + j * ld_att;
        s->k.matvec_f32(a, (const float *)s->key_cache + head_off, hd, q + j * hd, hd, 0, p + 1);
        s->k.softmax_f32(a, p + 1);
        s->k.wsum_f32(out + j * hd, a, (const float *)s->value_cache + head_off, hd, hd, p + 1);
    }
}

/* One token's attention: the query heads of each KV head together, split
 * into as many pieces as the threads need (a head's results do not depend
 * on the heads it is computed with). */
static void attention(q35_session *s, int l) {
    const q35_config *c = &s->model->cfg;
    const int hd = c->head_dim, G = c->n_heads / c->n_kv_heads, pos = s->pos;
    const int par = s->n_threads > 1 && (pos + 1) * hd * c->n_heads >= Q35_ATTN_MIN_WORK;
    const int split = par ? (s->n_threads + c->n_kv_heads - 1) / c->n_kv_heads : 1;
    const int sub = split >= G ? 1 : (G + split - 1) / split; /* heads per piece */
    const int per_kv = (G + sub - 1) / sub, items = c->n_kv_heads * per_kv;
#pragma omp parallel for num_threads(s->n_threads) if (par)
    for (int it = 0; it < items; it++) {
        const int h0 = it / per_kv * G + it % per_kv * sub;
        const int nh = sub < (it / per_kv + 1) * G - h0 ? sub : (it / per_kv + 1) * G - h0;
        q35_fwd_attend(s, l, h0, nh, pos, s->q + (size_t)h0 * hd, s->att + (size_t)h0 * c->seq_len,
                       c->seq_len, s->xb + (size_t)h0 * hd);
    }
}

int q35_fwd_token(q35_session *s, int token, q35_error *err) {
    const q35_model *m = s->model;
    const q35_config *c = &m->cfg;
    const int dim = c->dim, hidden = c->hidden_dim, hd = c->head_dim;
    const int kv_dim = c->n_kv_heads * hd, pos = s->pos;
    int l0 = 0; /* the first layer the CPU runs */

    if (s->gpu_layers < c->n_layers) q35_fwd_embed(s, token, s->x);
#ifdef Q35_CUDA
    if (s->gpu) { /* the first gpu_layers layers; with all of them, the logits too */
        int rc = q35_cuda_eval(s->gpu, token, pos, s->x, s->logits, err);
        if (rc || s->gpu_layers == c->n_layers) return rc;
        l0 = s->gpu_layers;
    }
#else
    (void)err;
#endif
    q35_fwd_rope_table(s->rope, hd, pos, c->rope_theta);
    float *k = s->kv_new, *v = s->kv_new + kv_dim;
    /* an observer may need only the first layers' inputs, and no logits */
    const int depth = q35_depth(s);

    for (int l = l0; l < depth; l++) {
        const q35_layer *ly = &m->layers[l];
        /* attention */
        q35_fwd_rmsnorm(s->xb, s->x, ly->attn_norm, dim, c->rms_eps);
        matvecs(s, 3, (float *const[]){s->q, k, v},
                (const q35_matrix *const[]){&ly->wq, &ly->wk, &ly->wv}, s->xb);
        q35_fwd_rope(s->q, c->n_heads * hd, hd, s->rope);
        q35_fwd_rope(k, kv_dim, hd, s->rope);
        q35_fwd_kv_store(s, l, pos, k, v);
        attention(s, l);
        matvec(s, s->xb2, &ly->wo, s->xb);
        for (int i = 0; i < dim; i++) s->x[i] += s->xb2[i];

        /* feed-forward: w_down(silu(w_gate x) * w_up x) */
        q35_fwd_rmsnorm(s->xb, s->x, ly->ffn_norm, dim, c->rms_eps);
        matvecs(s, 2, (float *const[]){s->hb, s->hb2},
                (const q35_matrix *const[]){&ly->w_gate, &ly->w_up}, s->xb);
        s->k.swiglu_f32(s->hb, s->hb2, hidden);
        matvec(s, s->xb2, &ly->w_down, s->hb);
        for (int i = 0; i < dim; i++) s->x[i] += s->xb2[i];
    }

    if (depth < c->n_layers) return Q35_OK;
    q35_fwd_rmsnorm(s->x, s->x, m->output_norm, dim, c->rms_eps);
    matvec(s, s->logits, &m->output, s->x);
    return Q35_OK;
}

int q35_session_eval(q35_session *s, int token, const float **logits, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    const q35_config *c = &s->model->cfg;
    if (token < 0 || token >= c->vocab_size)
        return q35_fail(err, Q35_ERR_ARG, "token %d is out of range [0, %d)", token,
                        c->vocab_size);
    if (s->pos >= c->seq_len)
        return q35_fail(err, Q35_ERR_ARG, "context is full (%d tokens)", c->seq_len);
    int rc = q35_fwd_token(s, token, err);
    if (rc) return rc;
    s->pos++;
    if (s->obs.tokens_done) s->obs.tokens_done(s->obs.user, 1);
    *logits = q35_depth(s) < c->n_layers ? NULL : s->logits;
    return Q35_OK;
}

int q35_session_eval_batch(q35_session *s, const int *tokens, int n, float *all_logits,
                           const float **logits, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    const q35_config *c = &s->model->cfg;
    if (n <= 0) return q35_fail(err, Q35_ERR_ARG, "a batch needs at least one token (got %d)", n);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return q35_fail(err, Q35_ERR_ARG, "token %d is out of range [0, %d)", tokens[t],
                            c->vocab_size);
    if (n > c->seq_len - s->pos)
        return q35_fail(err, Q35_ERR_ARG, "%d tokens do not fit in the context (%d of %d used)", n,
                        s->pos, c->seq_len);
    const size_t V = (size_t)c->vocab_size;
    /* the GPU and batches of one go token by token */
    const int step = s->gpu || s->n_batch < 2 ? 1 : s->n_batch;
    for (int t0 = 0; t0 < n; t0 += step) {
        const int nb = n - t0 < step ? n - t0 : step, last = t0 + nb == n;
        float *rows = all_logits ? all_logits + (size_t)t0 * V : NULL;
        int rc;
        if (nb == 1) {
            if (!(rc = q35_fwd_token(s, tokens[t0], err)) && rows)
                memcpy(rows, s->logits, V * sizeof *rows);
        } else {
            rc = q35_fwd_batch(s, tokens + t0, nb, rows, last && !rows, err);
        }
        if (rc) return rc;
        s->pos += nb;
        if (s->obs.tokens_done) s->obs.tokens_done(s->obs.user, nb);
    }
    const int full = q35_depth(s) == c->n_layers;
    if (all_logits && full) memcpy(s->logits, all_logits + (size_t)(n - 1) * V, V * sizeof *s->logits);
    if (logits) *logits = full ? s->logits : NULL;
    return Q35_OK;
}

/* Allocates the KV cache in fp32 or fp16; on success the old one is
 * freed, on failure the session keeps it. */
static int kv_alloc(q35_session *s, int f16, q35_error *err) {
    const q35_config *c = &s->model->cfg;
    const size_t kv = (size_t)c->n_layers * (size_t)c->seq_len * (size_t)c->n_kv_heads *
                      (size_t)c->head_dim, esize = f16 ? sizeof(uint16_t) : sizeof(float);
    void *k = calloc(kv, esize), *v = calloc(kv, esize);
    if (!k || !v) {
        free(k);
        free(v);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for the KV cache (%zu MiB)",
                        kv * 2 * esize >> 20);
    }
    free(s->key_cache);
    free(s->value_cache);
    s->key_cache = k;
    s->value_cache = v;
    s->kv_f16 = f16;
    return Q35_OK;
}

int q35_session_set_kv_type(q35_session *s, const char *type, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    int f16;
    if (!type || !strcmp(type, "auto")) f16 = s->model->max_np > 0;
    else if (!strcmp(type, "f16")) f16 = 1;
    else if (!strcmp(type, "f32")) f16 = 0;
    else return q35_fail(err, Q35_ERR_ARG, "KV cache type '%s': give f16, f32 or auto", type);
    if (s->pos > 0)
        return q35_fail(err, Q35_ERR_ARG, "the KV cache type is set before any token is evaluated "
                                          "(%d are; q35_session_reset first)", s->pos);
    if (f16 == s->kv_f16) return Q35_OK;
    return kv_alloc(s, f16, err);
}

const char *q35_session_kv_type(const q35_session *s) { return s->kv_f16 ? "f16" : "f32"; }

int q35_session_set_batch(q35_session *s, int n_batch, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    if (n_batch < 1)
        return q35_fail(err, Q35_ERR_ARG, "batch size %d: give at least 1", n_batch);
    if (n_batch != s->n_batch) q35_batch_free(&s->b); /* sized again at the next batch */
    s->n_batch = n_batch;
    return Q35_OK;
}

q35_session_params q35_session_default_params(void) {
    return (q35_session_params){.n_threads = 0, .n_batch = Q35_DEFAULT_BATCH, .kv_type = NULL,
                                .kernels = NULL, .r16 = 1, .n_gpu_layers = 0, .cuda_graph = 1,
                                .cuda_pdl = 0, .cuda_gemv = -1, .cuda_max_bytes = 0};
}

int q35_session_new(q35_session **out, const q35_model *m, int n_threads, q35_error *err) {
    q35_session_params p = q35_session_default_params();
    p.n_threads = n_threads;
    return q35_session_new_params(out, m, &p, err);
}

/* A CPU session (p->n_gpu_layers is the caller's business). */
static int session_new_cpu(q35_session **out, const q35_model *m, const q35_session_params *p,
                           q35_error *err) {
    *out = NULL;
    const q35_config *c = &m->cfg;
    if (!m->runnable)
        return q35_fail(err, Q35_ERR_ARG, "%s: opened for inspection only; load it to run it",
                        m->weights.format);
    if (p->n_batch < 1)
        return q35_fail(err, Q35_ERR_ARG, "batch size %d: give at least 1", p->n_batch);
    q35_session *s = calloc(1, sizeof *s);
    if (!s) return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a session");
    s->model = m;
    int n_threads = p->n_threads;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    s->n_threads = n_threads;
    const char *want = p->kernels ? p->kernels : m->params.kernels;
    if (q35_kernels_select(&s->k, want) != 0) {
        free(s);
        return q35_fail(err, Q35_ERR_ARG, "kernel set '%s': this CPU has no such kernel set",
                        want);
    }
    if (!p->r16) { /* read the rows even where the model was repacked */
        s->k.q35_r16_rows = NULL;
        s->k.q35_r16_gemm = NULL;
        s->k.r16_pack = 0;
    }
    if (m->rows_dropped && !s->k.q35_r16_rows) { /* model.c: converted matrices kept in R16 only */
        q35_fail(err, Q35_ERR_ARG, "this session reads rows (kernels %s, r16 %d), but the model's "
                 "converted matrices are held in R16 order only: load it with r16 = 0 (Q35_R16=0)",
                 s->k.name, p->r16);
        free(s);
        return Q35_ERR_ARG;
    }
    s->n_batch = p->n_batch;
    const size_t q_dim = (size_t)c->n_heads * (size_t)c->head_dim;
    const size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    /* attention scores: a row per head, or the heads of a KV head per thread (prefill.c) */
    const size_t group_rows = (size_t)n_threads * (size_t)(c->n_heads / c->n_kv_heads);
    const size_t att_rows = (size_t)c->n_heads > group_rows ? (size_t)c->n_heads : group_rows;
    s->x = calloc((size_t)c->dim, sizeof(float));
    s->xb = calloc(q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim, sizeof(float));
    s->xb2 = calloc((size_t)c->dim, sizeof(float));
    s->hb = calloc((size_t)c->hidden_dim, sizeof(float));
    s->hb2 = calloc((size_t)c->hidden_dim, sizeof(float));
    s->q = calloc(q_dim, sizeof(float));
    s->kv_new = calloc(2 * kv_dim, sizeof(float));
    s->rope = calloc((size_t)c->head_dim, sizeof(float));
    s->att = calloc(att_rows * (size_t)c->seq_len, sizeof(float));
    s->logits = calloc((size_t)c->vocab_size, sizeof(float));
    int scratch_ok = 1;
    for (int i = 0; i < 3 && m->max_np > 0; i++) {
        const size_t np = (size_t)m->max_np, nb = (np + Q35_BLOCK - 1) / Q35_BLOCK;
        s->xp[i] = malloc(np * sizeof(float));
        s->aq[i] = malloc(np);
        s->ad[i] = malloc(nb * sizeof(float));
        s->asum[i] = malloc(nb * sizeof(int32_t));
        scratch_ok &= s->xp[i] && s->aq[i] && s->ad[i] && s->asum[i];
    }
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->kv_new || !s->rope ||
        !s->att || !s->logits || !scratch_ok) {
        q35_session_free(s);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a session");
    }
    int rc = kv_alloc(s, m->max_np > 0, err); /* "auto": fp16 for a quantized model */
    if (!rc && p->kv_type) rc = q35_session_set_kv_type(s, p->kv_type, err);
    if (rc) {
        q35_session_free(s);
        return rc;
    }
    snprintf(s->device, sizeof s->device, "CPU (%s)", s->k.name);
    *out = s;
    return Q35_OK;
}

int q35_session_new_params(q35_session **out, const q35_model *m, const q35_session_params *p,
                           q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    const q35_session_params dflt = q35_session_default_params();
    if (!p) p = &dflt;
    *out = NULL;
    if (p->n_gpu_layers != 0 && m->rows_dropped)
        return q35_fail(err, Q35_ERR_ARG, "the GPU reads rows, but the model's converted matrices are held in "
                        "R16 order only: load it with r16 = 0 (Q35_R16=0)");
#ifndef Q35_CUDA
    if (p->n_gpu_layers != 0)
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "q35 was built without CUDA (make cuda)");
    return session_new_cpu(out, m, p, err);
#else
    int rc = session_new_cpu(out, m, p, err);
    if (rc || p->n_gpu_layers == 0) return rc;
    q35_session *s = *out;
    const int n = p->n_gpu_layers < 0 || p->n_gpu_layers > m->cfg.n_layers ? m->cfg.n_layers : p->n_gpu_layers;
    const q35_cuda_params cp = {p->cuda_graph, p->cuda_pdl, p->cuda_gemv, p->cuda_max_bytes};
    if ((rc = q35_cuda_new(&s->gpu, m, n, &cp, err))) {
        q35_session_free(s);
        *out = NULL;
        return rc;
    }
    s->gpu_layers = n;
    snprintf(s->device, sizeof s->device, "CUDA: %s", q35_cuda_describe(s->gpu));
    return Q35_OK;
#endif
}

int q35_session_new_gpu(q35_session **out, const q35_model *m, int n_gpu_layers, int n_threads,
                        q35_error *err) {
    q35_session_params p = q35_session_default_params();
    p.n_threads = n_threads;
    p.n_gpu_layers = n_gpu_layers;
#ifndef Q35_CUDA
    if (n_gpu_layers == 0) p.n_gpu_layers = 1; /* a CPU-only build refuses either way */
#endif
    return q35_session_new_params(out, m, &p, err);
}

const char *q35_session_device(const q35_session *s) { return s->device; }

void q35_session_free(q35_session *s) {
    if (!s) return;
#ifdef Q35_CUDA
    q35_cuda_free(s->gpu);
#endif
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->hb);
    free(s->hb2);
    free(s->q);
    free(s->kv_new);
    free(s->rope);
    free(s->att);
    free(s->logits);
    free(s->key_cache);
    free(s->value_cache);
    for (int i = 0; i < 3; i++) {
        free(s->xp[i]);
        free(s->aq[i]);
        free(s->ad[i]);
        free(s->asum[i]);
    }
    q35_batch_free(&s->b);
    free(s);
}

void q35_session_reset(q35_session *s) { s->pos = 0; }
void q35_session_set_observer(q35_session *s, const q35_observer *o) {
    if (o) s->obs = *o;
    else memset(&s->obs, 0, sizeof s->obs);
}
int q35_session_pos(const q35_session *s) { return s->pos; }
