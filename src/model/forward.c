/* forward.c — one token through a LLaMA-architecture decoder, top to
 * bottom: embedding, then per layer RMSNorm -> attention (RoPE, grouped
 * KV heads, KV cache) -> residual -> RMSNorm -> SwiGLU FFN -> residual,
 * then final RMSNorm and the classifier. Matrix-vector products go through
 * the session's kernel table, split over threads by output rows. A GPU
 * session (q35_session_new_gpu, `make cuda`) hands the first gpu_layers
 * layers, or the whole pass, to the CUDA backend (src/cuda/). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "format/dtype.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/imatrix.h"
#ifdef Q35_CUDA
#include "cuda/cuda_backend.h"
#endif

struct q35_session {
    const q35_model *model;
    q35_kernels k;
    int n_threads;
    int pos;            /* tokens in the KV cache */
    /* activations */
    float *x;           /* (dim) the residual stream */
    float *xb;          /* (dim) normed input / attention output */
    float *xb2;         /* (dim) projection output */
    float *hb;          /* (hidden_dim) gate */
    float *hb2;         /* (hidden_dim) up */
    float *q;           /* (n_heads * head_dim) */
    float *att;         /* (n_heads, seq_len) attention scores */
    float *logits;      /* (vocab_size) */
    /* KV cache: (n_layers, seq_len, n_kv_heads * head_dim) each */
    float *key_cache;
    float *value_cache;
    /* Q3_5-family inputs, one set per product of a fused call (up to 3):
     * x in the matrix's column order, then quantized (max_np long) */
    float *xp[3];
    int8_t *aq[3];
    float *ad[3];
    int32_t *asum[3];
    q35_imatrix *imatrix; /* when set, every matrix input is added to it */
    struct q35_cuda *gpu; /* when set, layers 0 .. gpu_layers-1 run on the GPU */
    int gpu_layers;
    char device[320];     /* q35_session_device */
};

/* Below this many multiply-adds a product runs on one thread: waking the
 * other threads costs more than it saves. Attention heads go parallel from
 * a smaller amount of work (measured on stories260K/stories3M, 2 threads). */
#ifndef Q35_PARALLEL_MIN_WORK
#define Q35_PARALLEL_MIN_WORK 16384
#endif
#ifndef Q35_ATTN_MIN_WORK
#define Q35_ATTN_MIN_WORK 4096
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
        if (s->imatrix) q35_imatrix_add(s->imatrix, ws[i]->slot, x);
    }
    const int nt = s->n_threads > 1 && total * cols >= Q35_PARALLEL_MIN_WORK ? s->n_threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t lo = total * t / T, hi = total * (t + 1) / T;
        int64_t base = 0; /* first row of matrix i in the end-to-end numbering */
        for (int i = 0; i < n; base += ws[i]->t->ne[1], i++) {
            const int64_t r0 = lo > base ? lo - base : 0;
            const int64_t r1 = hi - base < ws[i]->t->ne[1] ? hi - base : ws[i]->t->ne[1];
            if (r0 < r1) product_rows(s, i, ws[i], x, outs[i], r0, r1);
        }
    }
}

/* out = W x. */
static void matvec(q35_session *s, float *out, const q35_matrix *w, const float *x) {
    matvecs(s, 1, &out, &w, x);
}

/* Row `token` of the embedding, in the original column order. */
static void embedding_row(q35_session *s, const q35_matrix *e, int token, float *x) {
    const int64_t dim = e->t->ne[0];
    if (e->dtype == Q35_DTYPE_F32) {
        memcpy(x, e->f32 + (size_t)token * (size_t)dim, (size_t)dim * sizeof *x);
        return;
    }
    q35_dequantize_row(&e->L, e->table, e->rows + (uint64_t)token * e->L.row_bytes, s->xp[0]);
    for (int64_t j = 0; j < e->L.np; j++)
        if (e->perm[j] < dim) x[e->perm[j]] = s->xp[0][j];
}

static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = weight[i] * (ss * x[i]);
}

/* Rotates adjacent pairs (v[2i], v[2i+1]) of each head by pos * theta^(-2i/head_dim). */
static void rope(float *v, int n, int head_dim, int pos, float theta) {
    for (int i = 0; i < n; i += 2) {
        int j = i % head_dim;
        float freq = 1.0f / powf(theta, (float)j / (float)head_dim);
        float angle = (float)pos * freq;
        float c = cosf(angle), sn = sinf(angle);
        float v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * c - v1 * sn;
        v[i + 1] = v0 * sn + v1 * c;
    }
}

/* One query head h attending over positions 0..pos of its KV head: the
 * scores are a product of the cached keys (rows head_dim long, kv_dim
 * apart) with q, the output a score-weighted sum of the cached values. */
static void attend_head(q35_session *s, int layer, int h) {
    const q35_config *c = &s->model->cfg;
    const int hd = c->head_dim, kv_dim = c->n_kv_heads * hd;
    const int kvh = h / (c->n_heads / c->n_kv_heads);
    const size_t head_off = (size_t)layer * (size_t)c->seq_len * (size_t)kv_dim + (size_t)kvh * (size_t)hd;
    float *q = s->q + (size_t)h * (size_t)hd;
    float *att = s->att + (size_t)h * (size_t)c->seq_len;
    const float scale = 1.0f / sqrtf((float)hd); /* scores are q.k / sqrt(head_dim) */
    for (int i = 0; i < hd; i++) q[i] *= scale;
    s->k.matvec_f32(att, s->key_cache + head_off, kv_dim, q, hd, 0, s->pos + 1);
    s->k.softmax_f32(att, s->pos + 1);
    s->k.wsum_f32(s->xb + (size_t)h * (size_t)hd, att, s->value_cache + head_off, kv_dim, hd,
                  s->pos + 1);
}

static int forward(q35_session *s, int token, q35_error *err) {
    const q35_model *m = s->model;
    const q35_config *c = &m->cfg;
    const int dim = c->dim, hidden = c->hidden_dim, hd = c->head_dim;
    const int kv_dim = c->n_kv_heads * hd, pos = s->pos;
    int l0 = 0; /* the first layer the CPU runs */

    if (s->gpu_layers < c->n_layers) embedding_row(s, &m->token_embd, token, s->x);
#ifdef Q35_CUDA
    if (s->gpu) { /* the first gpu_layers layers; with all of them, the logits too */
        int rc = q35_cuda_eval(s->gpu, token, pos, s->x, s->logits, err);
        if (rc || s->gpu_layers == c->n_layers) return rc;
        l0 = s->gpu_layers;
    }
#else
    (void)err;
#endif

    for (int l = l0; l < c->n_layers; l++) {
        const q35_layer *ly = &m->layers[l];
        /* attention */
        rmsnorm(s->xb, s->x, ly->attn_norm, dim, c->rms_eps);
        const size_t cache_off = ((size_t)l * (size_t)c->seq_len + (size_t)pos) * (size_t)kv_dim;
        float *k = s->key_cache + cache_off, *v = s->value_cache + cache_off;
        matvecs(s, 3, (float *const[]){s->q, k, v},
                (const q35_matrix *const[]){&ly->wq, &ly->wk, &ly->wv}, s->xb);
        rope(s->q, c->n_heads * hd, hd, pos, c->rope_theta);
        rope(k, kv_dim, hd, pos, c->rope_theta);
        const int heads_parallel = s->n_threads > 1 && (pos + 1) * hd * c->n_heads >= Q35_ATTN_MIN_WORK;
#pragma omp parallel for num_threads(s->n_threads) if (heads_parallel)
        for (int h = 0; h < c->n_heads; h++) attend_head(s, l, h);
        matvec(s, s->xb2, &ly->wo, s->xb);
        for (int i = 0; i < dim; i++) s->x[i] += s->xb2[i];

        /* feed-forward: w_down(silu(w_gate x) * w_up x) */
        rmsnorm(s->xb, s->x, ly->ffn_norm, dim, c->rms_eps);
        matvecs(s, 2, (float *const[]){s->hb, s->hb2},
                (const q35_matrix *const[]){&ly->w_gate, &ly->w_up}, s->xb);
        s->k.swiglu_f32(s->hb, s->hb2, hidden);
        matvec(s, s->xb2, &ly->w_down, s->hb);
        for (int i = 0; i < dim; i++) s->x[i] += s->xb2[i];
    }

    rmsnorm(s->x, s->x, m->output_norm, dim, c->rms_eps);
    matvec(s, s->logits, &m->output, s->x);
    return Q35_OK;
}

int q35_session_eval(q35_session *s, int token, const float **logits, q35_error *err) {
    const q35_config *c = &s->model->cfg;
    if (token < 0 || token >= c->vocab_size)
        return q35_fail(err, Q35_ERR_ARG, "token %d is out of range [0, %d)", token,
                        c->vocab_size);
    if (s->pos >= c->seq_len)
        return q35_fail(err, Q35_ERR_ARG, "context is full (%d tokens)", c->seq_len);
    int rc = forward(s, token, err);
    if (rc) return rc;
    s->pos++;
    if (s->imatrix) s->imatrix->tokens++;
    *logits = s->logits;
    return Q35_OK;
}

int q35_session_eval_batch(q35_session *s, const int *tokens, int n, float *all_logits,
                           const float **logits, q35_error *err) {
    const q35_config *c = &s->model->cfg;
    if (n <= 0) return q35_fail(err, Q35_ERR_ARG, "a batch needs at least one token (got %d)", n);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return q35_fail(err, Q35_ERR_ARG, "token %d is out of range [0, %d)", tokens[t],
                            c->vocab_size);
    if (n > c->seq_len - s->pos)
        return q35_fail(err, Q35_ERR_ARG, "%d tokens do not fit in the context (%d of %d used)", n,
                        s->pos, c->seq_len);
    const float *last = NULL;
    for (int t = 0; t < n; t++) {
        int rc = q35_session_eval(s, tokens[t], &last, err);
        if (rc) return rc;
        if (all_logits)
            memcpy(all_logits + (size_t)t * (size_t)c->vocab_size, last,
                   (size_t)c->vocab_size * sizeof *last);
    }
    if (logits) *logits = last;
    return Q35_OK;
}

int q35_session_new(q35_session **out, const q35_model *m, int n_threads, q35_error *err) {
    *out = NULL;
    const q35_config *c = &m->cfg;
    if (!m->runnable)
        return q35_fail(err, Q35_ERR_ARG, "%s: opened for inspection only; load it to run it",
                        m->weights.format);
    q35_session *s = calloc(1, sizeof *s);
    if (!s) return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a session");
    s->model = m;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    s->n_threads = n_threads;
    const char *want = getenv("Q35_KERNELS"); /* "scalar" forces the reference */
    if (q35_kernels_select(&s->k, want) != 0) {
        free(s);
        return q35_fail(err, Q35_ERR_ARG, "Q35_KERNELS=%s: this CPU has no such kernel set",
                        want);
    }
    const size_t q_dim = (size_t)c->n_heads * (size_t)c->head_dim;
    const size_t kv = (size_t)c->n_layers * (size_t)c->seq_len * (size_t)c->n_kv_heads *
                      (size_t)c->head_dim;
    s->x = calloc((size_t)c->dim, sizeof(float));
    s->xb = calloc(q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim, sizeof(float));
    s->xb2 = calloc((size_t)c->dim, sizeof(float));
    s->hb = calloc((size_t)c->hidden_dim, sizeof(float));
    s->hb2 = calloc((size_t)c->hidden_dim, sizeof(float));
    s->q = calloc(q_dim, sizeof(float));
    s->att = calloc((size_t)c->n_heads * (size_t)c->seq_len, sizeof(float));
    s->logits = calloc((size_t)c->vocab_size, sizeof(float));
    s->key_cache = calloc(kv, sizeof(float));
    s->value_cache = calloc(kv, sizeof(float));
    int scratch_ok = 1;
    for (int i = 0; i < 3 && m->max_np > 0; i++) {
        const size_t np = (size_t)m->max_np, nb = (np + Q35_BLOCK - 1) / Q35_BLOCK;
        s->xp[i] = malloc(np * sizeof(float));
        s->aq[i] = malloc(np);
        s->ad[i] = malloc(nb * sizeof(float));
        s->asum[i] = malloc(nb * sizeof(int32_t));
        scratch_ok &= s->xp[i] && s->aq[i] && s->ad[i] && s->asum[i];
    }
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->att || !s->logits ||
        !s->key_cache || !s->value_cache || !scratch_ok) {
        q35_session_free(s);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a session (KV cache %zu MiB)",
                        kv * 2 * sizeof(float) >> 20);
    }
    snprintf(s->device, sizeof s->device, "CPU (%s)", s->k.name);
    *out = s;
    return Q35_OK;
}

int q35_session_new_gpu(q35_session **out, const q35_model *m, int n_gpu_layers, int n_threads,
                        q35_error *err) {
#ifndef Q35_CUDA
    (void)m, (void)n_gpu_layers, (void)n_threads;
    *out = NULL;
    return q35_fail(err, Q35_ERR_UNSUPPORTED, "q35 was built without CUDA (make cuda)");
#else
    int rc = q35_session_new(out, m, n_threads, err);
    if (rc || n_gpu_layers == 0) return rc;
    q35_session *s = *out;
    const int n = n_gpu_layers < 0 || n_gpu_layers > m->cfg.n_layers ? m->cfg.n_layers : n_gpu_layers;
    if ((rc = q35_cuda_new(&s->gpu, m, n, err))) {
        q35_session_free(s);
        *out = NULL;
        return rc;
    }
    s->gpu_layers = n;
    snprintf(s->device, sizeof s->device, "CUDA: %s", q35_cuda_describe(s->gpu));
    return Q35_OK;
#endif
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
    free(s);
}

void q35_session_reset(q35_session *s) { s->pos = 0; }
void q35_session_set_imatrix(q35_session *s, q35_imatrix *im) { s->imatrix = im; }
int q35_session_pos(const q35_session *s) { return s->pos; }
