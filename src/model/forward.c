/* forward.c — one token through a LLaMA-architecture decoder, top to
 * bottom: embedding, then per layer RMSNorm -> attention (RoPE, grouped
 * KV heads, KV cache) -> residual -> RMSNorm -> SwiGLU FFN -> residual,
 * then final RMSNorm and the classifier. Matrix-vector products go through
 * the session's kernel table, split over threads by output rows. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/model.h"

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

/* outs[i] = ws[i] x for the n matrices ws (same row length), in one
 * parallel region: their rows, taken end to end, are split evenly over the
 * threads (one fork and join instead of n). */
static void matvecs(const q35_session *s, int n, float *const *outs, const q35_tensor *const *ws,
                    const float *x) {
    const int64_t cols = ws[0]->ne[0];
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += ws[i]->ne[1];
    const int nt = s->n_threads > 1 && total * cols >= Q35_PARALLEL_MIN_WORK ? s->n_threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t lo = total * t / T, hi = total * (t + 1) / T;
        int64_t base = 0; /* first row of matrix i in the end-to-end numbering */
        for (int i = 0; i < n; base += ws[i]->ne[1], i++) {
            const int64_t r0 = lo > base ? lo - base : 0;
            const int64_t r1 = hi - base < ws[i]->ne[1] ? hi - base : ws[i]->ne[1];
            if (r0 < r1) s->k.matvec_f32(outs[i] + r0, ws[i]->data, cols, x, cols, r0, r1);
        }
    }
}

/* out = W x, W with rows of n (its ne[0]) and ne[1] rows. */
static void matvec(const q35_session *s, float *out, const q35_tensor *w, const float *x) {
    matvecs(s, 1, &out, &w, x);
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

static void forward(q35_session *s, int token) {
    const q35_model *m = s->model;
    const q35_config *c = &m->cfg;
    const int dim = c->dim, hidden = c->hidden_dim, hd = c->head_dim;
    const int kv_dim = c->n_kv_heads * hd, pos = s->pos;

    memcpy(s->x, (const float *)m->token_embd->data + (size_t)token * (size_t)dim,
           (size_t)dim * sizeof *s->x);

    for (int l = 0; l < c->n_layers; l++) {
        const q35_layer *ly = &m->layers[l];
        /* attention */
        rmsnorm(s->xb, s->x, ly->attn_norm, dim, c->rms_eps);
        const size_t cache_off = ((size_t)l * (size_t)c->seq_len + (size_t)pos) * (size_t)kv_dim;
        float *k = s->key_cache + cache_off, *v = s->value_cache + cache_off;
        matvecs(s, 3, (float *const[]){s->q, k, v},
                (const q35_tensor *const[]){ly->wq, ly->wk, ly->wv}, s->xb);
        rope(s->q, c->n_heads * hd, hd, pos, c->rope_theta);
        rope(k, kv_dim, hd, pos, c->rope_theta);
        const int heads_parallel = s->n_threads > 1 && (pos + 1) * hd * c->n_heads >= Q35_ATTN_MIN_WORK;
#pragma omp parallel for num_threads(s->n_threads) if (heads_parallel)
        for (int h = 0; h < c->n_heads; h++) attend_head(s, l, h);
        matvec(s, s->xb2, ly->wo, s->xb);
        for (int i = 0; i < dim; i++) s->x[i] += s->xb2[i];

        /* feed-forward: w_down(silu(w_gate x) * w_up x) */
        rmsnorm(s->xb, s->x, ly->ffn_norm, dim, c->rms_eps);
        matvecs(s, 2, (float *const[]){s->hb, s->hb2},
                (const q35_tensor *const[]){ly->w_gate, ly->w_up}, s->xb);
        s->k.swiglu_f32(s->hb, s->hb2, hidden);
        matvec(s, s->xb2, ly->w_down, s->hb);
        for (int i = 0; i < dim; i++) s->x[i] += s->xb2[i];
    }

    rmsnorm(s->x, s->x, m->output_norm, dim, c->rms_eps);
    matvec(s, s->logits, m->output, s->x);
}

int q35_session_eval(q35_session *s, int token, const float **logits, q35_error *err) {
    const q35_config *c = &s->model->cfg;
    if (token < 0 || token >= c->vocab_size)
        return q35_fail(err, Q35_ERR_ARG, "token %d is out of range [0, %d)", token,
                        c->vocab_size);
    if (s->pos >= c->seq_len)
        return q35_fail(err, Q35_ERR_ARG, "context is full (%d tokens)", c->seq_len);
    forward(s, token);
    s->pos++;
    *logits = s->logits;
    return Q35_OK;
}

int q35_session_new(q35_session **out, const q35_model *m, int n_threads, q35_error *err) {
    *out = NULL;
    const q35_config *c = &m->cfg;
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
    if (!s->x || !s->xb || !s->xb2 || !s->hb || !s->hb2 || !s->q || !s->att || !s->logits ||
        !s->key_cache || !s->value_cache) {
        q35_session_free(s);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a session (KV cache %zu MiB)",
                        kv * 2 * sizeof(float) >> 20);
    }
    *out = s;
    return Q35_OK;
}

void q35_session_free(q35_session *s) {
    if (!s) return;
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
    free(s);
}

void q35_session_reset(q35_session *s) { s->pos = 0; }
int q35_session_pos(const q35_session *s) { return s->pos; }
