/* prefill.c — a batch of prompt tokens through the model together: per
 * layer, every token's input is normed and quantized, then each weight row
 * is decoded once for the whole batch (q35_row_dot_batch: a matrix-matrix
 * product instead of one matrix-vector product per token); attention runs
 * per token and head over the cache, causally (token t sees positions up to
 * its own). Each token's arithmetic is the one-token pass's (forward.c),
 * operation for operation, so the logits are bit-identical to evaluating
 * the tokens one by one. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "model/session.h"

/* fp32 rows a thread takes for every token in turn while they stay cached. */
#define F32_ROW_CHUNK 16

void q35_batch_free(q35_batch_buf *b) {
    free(b->x);
    free(b->xb);
    free(b->xb2);
    free(b->hb);
    free(b->hb2);
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->rope);
    for (int i = 0; i < 3; i++) {
        free(b->aq[i]);
        free(b->ad[i]);
        free(b->asum[i]);
        free(b->acts[i]);
    }
    free(b->xp);
    free(b->gemm);
    memset(b, 0, sizeof *b);
}

static int64_t n_blocks(int64_t np) { return (np + Q35_BLOCK - 1) / Q35_BLOCK; }

/* Sizes the batch scratch for cap tokens. */
static int batch_reserve(q35_session *s, int cap, q35_error *err) {
    q35_batch_buf *b = &s->b;
    if (b->cap >= cap) return Q35_OK;
    q35_batch_free(b);
    const q35_config *c = &s->model->cfg;
    const size_t n = (size_t)cap, dim = (size_t)c->dim, hidden = (size_t)c->hidden_dim;
    const size_t q_dim = (size_t)c->n_heads * (size_t)c->head_dim;
    const size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    const size_t np = (size_t)s->model->max_np, nb = (size_t)n_blocks(s->model->max_np);
    int ok = (b->x = malloc(n * dim * sizeof(float))) &&
             (b->xb = malloc(n * (q_dim > dim ? q_dim : dim) * sizeof(float))) &&
             (b->xb2 = malloc(n * dim * sizeof(float))) &&
             (b->hb = malloc(n * hidden * sizeof(float))) &&
             (b->hb2 = malloc(n * hidden * sizeof(float))) &&
             (b->q = malloc(n * q_dim * sizeof(float))) &&
             (b->k = malloc(n * kv_dim * sizeof(float))) &&
             (b->v = malloc(n * kv_dim * sizeof(float))) &&
             (b->rope = malloc(n * (size_t)c->head_dim * sizeof(float)));
    for (int i = 0; i < 3 && ok && np > 0; i++) {
        ok = (b->aq[i] = malloc(n * np)) && (b->ad[i] = malloc(n * nb * sizeof(float))) &&
             (b->asum[i] = malloc(n * nb * sizeof(int32_t))) &&
             (b->acts[i] = malloc(n * sizeof(q35_qact)));
        for (size_t t = 0; ok && t < n; t++)
            b->acts[i][t] = (q35_qact){0, b->aq[i] + t * np, b->ad[i] + t * nb, b->asum[i] + t * nb};
    }
    if (ok && np > 0) ok = (b->xp = malloc((size_t)s->n_threads * np * sizeof(float))) != NULL &&
                           (b->gemm = malloc((size_t)s->n_threads * Q35_GEMM_SCRATCH(np))) != NULL;
    if (!ok) {
        q35_batch_free(b);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a batch of %d tokens", cap);
    }
    b->cap = cap;
    return Q35_OK;
}

/* Rows r0..r1 of w times the n inputs X (rows ldx apart) into out (rows
 * ldo apart); a family matrix's inputs are quantized in activation set k.
 * scratch: the thread's Q35_GEMM_SCRATCH(max_np) bytes. */
static void product_rows(const q35_session *s, int k, const q35_matrix *w, const float *X,
                         int64_t ldx, float *out, int64_t ldo, int n, int64_t r0, int64_t r1,
                         void *scratch) {
    if (w->dtype == Q35_DTYPE_F32) { /* the one-token kernel per token, on rows still cached */
        const int64_t cols = w->t->ne[0];
        for (int64_t a = r0; a < r1; a += F32_ROW_CHUNK) {
            const int64_t e = r1 - a < F32_ROW_CHUNK ? r1 : a + F32_ROW_CHUNK;
            for (int t = 0; t < n; t++)
                s->k.matvec_f32(out + t * ldo + a, w->f32, cols, X + t * ldx, cols, a, e);
        }
        return;
    }
    if (q35_uses_r16(&s->k, w)) {
        if (n >= Q35_GEMM_MIN_BATCH)
            s->k.q35_r16_gemm(&w->L, w->table, w->r16, r0, r1, s->b.acts[k], n, out + r0, ldo, scratch);
        else
            for (int t = 0; t < n; t++)
                s->k.q35_r16_rows(&w->L, w->table, w->r16, r0, r1, &s->b.acts[k][t], out + t * ldo + r0);
        return;
    }
    if (n >= Q35_GEMM_MIN_BATCH) {
        s->k.q35_gemm(&w->L, w->table, w->rows + (uint64_t)r0 * w->L.row_bytes, r1 - r0, s->b.acts[k], n,
                      out + r0, ldo, scratch);
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        s->k.q35_row_dot_batch(&w->L, w->table, w->rows + (uint64_t)r * w->L.row_bytes,
                               s->b.acts[k], n, out + r, ldo);
}

/* outs[i] = ws[i] X for the nm (<= 3) matrices ws (same row length) and
 * the n inputs X (rows ldx apart; outs[i]'s rows ldo[i] apart), in one
 * parallel region: the threads first share the inputs' quantization
 * (matrix by matrix, token by token), then the matrices' rows, taken end
 * to end, as the one-token matvecs does. */
static void products(q35_session *s, int nm, float *const *outs, const int64_t *ldo,
                     const q35_matrix *const *ws, const float *X, int64_t ldx, int n) {
    const int64_t cols = ws[0]->t->ne[0];
    int64_t total = 0;
    for (int i = 0; i < nm; i++) {
        total += ws[i]->t->ne[1];
        if (ws[i]->dtype != Q35_DTYPE_F32)
            for (int t = 0; t < n; t++) s->b.acts[i][t].np = ws[i]->L.np;
        q35_observe(s, ws[i], X, n, ldx); /* each matrix sees its tokens in order, as one by one */
    }
    const int nt = s->n_threads > 1 && total * cols * n >= Q35_PARALLEL_MIN_WORK ? s->n_threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int64_t t_id = omp_get_thread_num(), T = omp_get_num_threads();
        float *xp = s->b.xp ? s->b.xp + t_id * s->model->max_np : NULL;
        uint8_t *gemm = s->b.gemm ? s->b.gemm + t_id * Q35_GEMM_SCRATCH(s->model->max_np) : NULL;
        for (int64_t job = t_id; job < (int64_t)nm * n; job += T) {
            const q35_matrix *w = ws[job / n];
            if (w->dtype == Q35_DTYPE_F32) continue;
            const float *x = X + (job % n) * ldx;
            const q35_qact *a = &s->b.acts[job / n][job % n];
            for (int64_t j = 0; j < w->L.np; j++) xp[j] = w->perm[j] < w->L.n ? x[w->perm[j]] : 0.0f;
            s->k.q35_quantize_act(xp, w->L.np, a->q, a->d, a->sum);
        }
#pragma omp barrier
        const int64_t lo = total * t_id / T, hi = total * (t_id + 1) / T;
        int64_t base = 0; /* first row of matrix i in the end-to-end numbering */
        for (int i = 0; i < nm; base += ws[i]->t->ne[1], i++) {
            const int64_t r0 = q35_rows_edge(&s->k, ws[i], lo > base ? lo - base : 0);
            const int64_t r1 = q35_rows_edge(&s->k, ws[i], hi - base < ws[i]->t->ne[1] ? hi - base : ws[i]->t->ne[1]);
            if (r0 < r1) product_rows(s, i, ws[i], X, ldx, outs[i], ldo[i], n, r0, r1, gemm);
        }
    }
}

/* Attention for the n tokens of the batch: every (token, KV head) on its
 * own, its query heads together, over the cache up to the token's
 * position. */
static void attention(q35_session *s, int l, int n) {
    const q35_config *c = &s->model->cfg;
    const int hd = c->head_dim, KV = c->n_kv_heads, G = c->n_heads / KV, pos = s->pos;
    const size_t q_dim = (size_t)c->n_heads * hd, xbw = q_dim > (size_t)c->dim ? q_dim : (size_t)c->dim;
    const int64_t work = (int64_t)n * ((int64_t)pos + (n + 1) / 2) * hd * c->n_heads;
    const int par = s->n_threads > 1 && work >= Q35_ATTN_MIN_WORK;
#pragma omp parallel for num_threads(s->n_threads) schedule(static, 1) if (par)
    for (int job = 0; job < n * KV; job++) {
        const int t = job / KV, h0 = job % KV * G;
        float *att = s->att + (size_t)omp_get_thread_num() * G * (size_t)c->seq_len;
        q35_fwd_attend(s, l, h0, G, pos + t, s->b.q + t * q_dim + (size_t)h0 * hd, att, c->seq_len,
                       s->b.xb + t * xbw + (size_t)h0 * hd);
    }
}

int q35_fwd_batch(q35_session *s, const int *tokens, int n, float *all_logits, int want_last,
                  q35_error *err) {
    int rc = batch_reserve(s, n, err);
    if (rc) return rc;
    const q35_model *m = s->model;
    const q35_config *c = &m->cfg;
    q35_batch_buf *b = &s->b;
    const int dim = c->dim, hidden = c->hidden_dim, hd = c->head_dim;
    const int64_t q_dim = (int64_t)c->n_heads * hd, kv_dim = (int64_t)c->n_kv_heads * hd;
    const int64_t xbw = q_dim > dim ? q_dim : dim;

    for (int t = 0; t < n; t++) {
        q35_fwd_embed(s, tokens[t], b->x + (size_t)t * dim);
        q35_fwd_rope_table(b->rope + (size_t)t * hd, hd, s->pos + t, c->rope_theta);
    }
    const int depth = q35_depth(s);
    for (int l = 0; l < depth; l++) {
        const q35_layer *ly = &m->layers[l];
        /* attention */
        for (int t = 0; t < n; t++)
            q35_fwd_rmsnorm(b->xb + t * xbw, b->x + (size_t)t * dim, ly->attn_norm, dim, c->rms_eps);
        products(s, 3, (float *const[]){b->q, b->k, b->v}, (const int64_t[]){q_dim, kv_dim, kv_dim},
                 (const q35_matrix *const[]){&ly->wq, &ly->wk, &ly->wv}, b->xb, xbw, n);
        for (int t = 0; t < n; t++) {
            float *k = b->k + t * kv_dim, *v = b->v + t * kv_dim;
            q35_fwd_rope(b->q + t * q_dim, (int)q_dim, hd, b->rope + (size_t)t * hd);
            q35_fwd_rope(k, (int)kv_dim, hd, b->rope + (size_t)t * hd);
            q35_fwd_kv_store(s, l, s->pos + t, k, v);
        }
        attention(s, l, n);
        products(s, 1, (float *const[]){b->xb2}, (const int64_t[]){dim},
                 (const q35_matrix *const[]){&ly->wo}, b->xb, xbw, n);
        for (size_t i = 0; i < (size_t)n * dim; i++) b->x[i] += b->xb2[i];

        /* feed-forward: w_down(silu(w_gate x) * w_up x) */
        for (int t = 0; t < n; t++)
            q35_fwd_rmsnorm(b->xb + t * xbw, b->x + (size_t)t * dim, ly->ffn_norm, dim, c->rms_eps);
        products(s, 2, (float *const[]){b->hb, b->hb2}, (const int64_t[]){hidden, hidden},
                 (const q35_matrix *const[]){&ly->w_gate, &ly->w_up}, b->xb, xbw, n);
        for (int t = 0; t < n; t++)
            s->k.swiglu_f32(b->hb + (size_t)t * hidden, b->hb2 + (size_t)t * hidden, hidden);
        products(s, 1, (float *const[]){b->xb2}, (const int64_t[]){dim},
                 (const q35_matrix *const[]){&ly->w_down}, b->hb, hidden, n);
        for (size_t i = 0; i < (size_t)n * dim; i++) b->x[i] += b->xb2[i];
    }

    if (depth < c->n_layers) return Q35_OK; /* an observer wanted only the first layers */
    /* the classifier, for the rows asked for; an observer still sees every
     * token's input */
    const int64_t V = c->vocab_size;
    const int first = all_logits ? 0 : want_last ? n - 1 : n;
    for (int t = 0; t < n; t++) {
        float *x = b->x + (size_t)t * dim;
        if (t < first && !s->obs.matrix_input) continue;
        q35_fwd_rmsnorm(x, x, m->output_norm, dim, c->rms_eps);
        if (t < first) q35_observe(s, &m->output, x, 1, dim);
    }
    if (first < n)
        products(s, 1, (float *const[]){all_logits ? all_logits : s->logits}, (const int64_t[]){V},
                 (const q35_matrix *const[]){&m->output}, b->x + (size_t)first * dim, dim, n - first);
    return Q35_OK;
}
