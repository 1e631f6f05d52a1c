/* exec.c — the forward pass: a batch of tokens (one token when decoding,
 * a prompt, or the next tokens of several sequences at once) through the
 * model, top to bottom:
 *
 *   embedding (times the architecture's scale)
 *   per layer: its program's ops in order (src/arch: NORM, MATMUL, ...)
 *   final RMSNorm, the classifier (for the tokens whose logits are
 *   wanted), the logit soft-cap
 *
 * Each op runs over every token of the batch. Consecutive products of one
 * input (q, k, v; gate, up) are one parallel region: their inputs are
 * quantized once per matrix and token, then their rows, end to end, are
 * split over the threads, and each weight row is decoded once for all
 * tokens (the R16 GEMM from 2 tokens, q35_gemm on rows from
 * Q35_GEMM_MIN_BATCH). Attention
 * runs per (token, KV head) over the token's own sequence's cache, up to
 * its position. A token's arithmetic does not depend on the other tokens
 * of the batch, so batching never changes results where the kernels agree
 * (fp32; Q3_5-family in R16 order). */
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "model/ops.h"
#include "model/session.h"
#ifdef Q35_CUDA
#include "cuda/cuda_backend.h"
#endif

/* Pieces of each thread's share of a parallel product's rows: halves,
 * piece j (0-based) of the K holding 1/2^(j+1) of the share and the last
 * two 1/2^(K-1) each (share_edge). */
#ifndef Q35_PRODUCT_CHUNKS
#define Q35_PRODUCT_CHUNKS 8
#endif

/* fp32 rows a thread takes for every token in turn while they stay cached. */
#define F32_ROW_CHUNK 16

/* ---- products ---------------------------------------------------------------- */

/* Rows r0..r1 of w times the n inputs X (rows ldx apart) into out (rows
 * ldo apart); a family matrix's inputs are quantized in activation set k.
 * scratch: the thread's Q35_GEMM_SCRATCH(max_np) bytes. */
static void product_rows(const q35_session *s, int k, const q35_matrix *w, const float *X, int64_t ldx,
                         float *out, int64_t ldo, int n, int64_t r0, int64_t r1, void *scratch) {
    const q35_qact *acts = s->b.acts[k];
    if (w->dtype == Q35_DTYPE_F32) {
        const int64_t cols = w->n;
        if (n == 1) { /* one call over the whole range */
            s->k.matvec_f32(out + r0, w->f32, cols, X, cols, r0, r1);
            return;
        }
        for (int64_t a = r0; a < r1; a += F32_ROW_CHUNK) { /* the one-token kernel per token, on rows still cached */
            const int64_t e = r1 - a < F32_ROW_CHUNK ? r1 : a + F32_ROW_CHUNK;
            for (int t = 0; t < n; t++) s->k.matvec_f32(out + t * ldo + a, w->f32, cols, X + t * ldx, cols, a, e);
        }
        return;
    }
    if (q35_uses_r16(&s->k, w)) { /* any batch, one token too: the R16 GEMM streams small ones */
        s->k.q35_r16_gemm(&w->L, w->table, w->r16, r0, r1, acts, n, out + r0, ldo, scratch);
        return;
    }
    if (n >= Q35_GEMM_MIN_BATCH) {
        s->k.q35_gemm(&w->L, w->table, w->rows + (uint64_t)r0 * w->L.row_bytes, r1 - r0, acts, n, out + r0, ldo,
                      scratch);
        return;
    }
    if (n == 1) {
        for (int64_t r = r0; r < r1; r++) out[r] = s->k.q35_row_dot(&w->L, w->table, w->rows + (uint64_t)r * w->L.row_bytes, acts);
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        s->k.q35_row_dot_batch(&w->L, w->table, w->rows + (uint64_t)r * w->L.row_bytes, acts, n, out + r, ldo);
}

/* Thread t_id of T's share of quantizing the n inputs X for the nm
 * family matrices ws (matrix by matrix, token by token), into the
 * session's activation sets. */
static void quantize_inputs(q35_session *s, int nm, const q35_matrix *const *ws, const float *X, int64_t ldx, int n,
                            int64_t t_id, int64_t T) {
    float *xp = s->xp ? s->xp + t_id * s->model->max_np : NULL;
    for (int64_t job = t_id; job < (int64_t)nm * n; job += T) {
        const q35_matrix *w = ws[job / n];
        if (w->dtype == Q35_DTYPE_F32) continue;
        const float *x = X + (job % n) * ldx;
        const q35_qact *a = &s->b.acts[job / n][job % n];
        s->k.q35_permute_act(&w->L, w->mask, x, xp);
        s->k.q35_quantize_act(xp, w->L.np, a->q, a->d, a->sum);
    }
}

/* Rows lo .. hi - 1 of the products (the matrices' rows taken end to
 * end), by thread t_id (whose GEMM scratch it uses). Each matrix's part is
 * widened to its kernel's row edges (R16 tiles), so ranges that meet at
 * one row meet at one edge: together they cover every row once. */
static void product_range(q35_session *s, int nm, float *const *outs, const int64_t *ldo, const q35_matrix *const *ws,
                          const float *X, int64_t ldx, int n, int64_t lo, int64_t hi, int64_t t_id) {
    uint8_t *gemm = s->gemm ? s->gemm + t_id * Q35_GEMM_SCRATCH(s->model->max_np) : NULL;
    int64_t base = 0; /* first row of matrix i in the end-to-end numbering */
    for (int i = 0; i < nm; base += ws[i]->m, i++) {
        const int64_t r0 = q35_rows_edge(&s->k, ws[i], lo > base ? lo - base : 0);
        const int64_t r1 = q35_rows_edge(&s->k, ws[i], hi - base < ws[i]->m ? hi - base : ws[i]->m);
        if (r0 < r1) product_rows(s, i, ws[i], X, ldx, outs[i], ldo[i], n, r0, r1, gemm);
    }
}

/* Row of the products (total rows, end to end) where piece j of share g
 * of `shares` begins (j = K: where the share ends). The pieces halve
 * towards the share's end: its owner takes them front to back, so its
 * last ones are small, and a thread done early takes the smallest ones
 * first. A thread's wait for the other at the end of a product is then
 * about the smallest piece, not an eighth of a share. */
static int64_t share_edge(int64_t total, int shares, int g, int j, int K) {
    const int64_t lo = total * g / shares, hi = total * (g + 1) / shares;
    if (j >= K) return hi;
    return hi - (hi - lo) / ((int64_t)1 << (j < K - 1 ? j : K - 1));
}

/* The next piece of a share whose pieces not yet taken are first .. end -
 * 1 (*left = first | end << 32): the first for its owner, the last for
 * another thread; -1 when none is left. */
static int64_t take_piece(_Atomic uint64_t *left, int own) {
    uint64_t v = atomic_load_explicit(left, memory_order_relaxed), w;
    do {
        const uint64_t first = v & 0xFFFFFFFFu, end = v >> 32;
        if (first >= end) return -1;
        w = own ? v + 1 : v - ((uint64_t)1 << 32);
    } while (!atomic_compare_exchange_weak_explicit(left, &v, w, memory_order_relaxed, memory_order_relaxed));
    return own ? (int64_t)(v & 0xFFFFFFFFu) : (int64_t)(v >> 32) - 1;
}

/* outs[i] = ws[i] X for the nm (<= 3) matrices ws (same row length) and
 * the n inputs X (rows ldx apart; outs[i]'s rows ldo[i] apart), in one
 * parallel region: the threads first share the inputs' quantization
 * (matrix by matrix, token by token), then the matrices' rows, taken end
 * to end. The observer sees each distinct tensor's inputs once. */
static void products(q35_session *s, int nm, float *const *outs, const int64_t *ldo, const q35_matrix *const *ws,
                     const float *X, int64_t ldx, int n) {
    const int64_t cols = ws[0]->n;
    int64_t total = 0;
    for (int i = 0; i < nm; i++) {
        total += ws[i]->m;
        if (ws[i]->dtype != Q35_DTYPE_F32)
            for (int t = 0; t < n; t++) s->b.acts[i][t].np = ws[i]->L.np;
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= ws[j]->slot == ws[i]->slot;
        if (!seen && s->obs.matrix_input) s->obs.matrix_input(s->obs.user, ws[i]->slot, X, cols, n, ldx);
    }
    const int nt = s->n_threads > 1 && total * cols * n >= Q35_PARALLEL_MIN_WORK ? s->n_threads : 1;
    /* one thread opens no parallel region at all (even a one-thread one
     * wakes the pool); one token's (decode's) inputs are quantized before
     * the region (a barrier inside costs more than the threads save) */
    if (nt == 1 || n == 1) quantize_inputs(s, nm, ws, X, ldx, n, 0, 1);
    if (nt == 1) {
        product_range(s, nm, outs, ldo, ws, X, ldx, n, 0, total, 0);
        return;
    }
    /* each thread has an equal share of the rows, in Q35_PRODUCT_CHUNKS
     * pieces (share_edge) it takes front to back (so its prefetch runs on
     * into its next piece); one done with its own takes the pieces others
     * have not started, from their back: a thread slowed down (another
     * process on its core) no longer keeps the others waiting at the end. Past
     * MAX_SHARES threads, thread t shares share t % MAX_SHARES with its
     * owner, both taking from the front (the CAS keeps every piece one
     * thread's). */
    enum { MAX_SHARES = 64 };
    const int shares = nt < MAX_SHARES ? nt : MAX_SHARES, K = Q35_PRODUCT_CHUNKS;
    _Atomic uint64_t left[MAX_SHARES]; /* share g's pieces not taken: first | end << 32 */
    for (int g = 0; g < shares; g++) atomic_init(&left[g], (uint64_t)g * K | (uint64_t)(g + 1) * K << 32);
#pragma omp parallel num_threads(nt)
    {
        const int64_t t_id = omp_get_thread_num(), T = omp_get_num_threads();
        if (n > 1) {
            quantize_inputs(s, nm, ws, X, ldx, n, t_id, T);
#pragma omp barrier
        }
        for (int k = 0; k < shares; k++) /* its own share first, then the others' */
            for (int64_t c, g = (t_id + k) % shares; (c = take_piece(&left[g], k == 0)) >= 0;)
                product_range(s, nm, outs, ldo, ws, X, ldx, n, share_edge(total, shares, (int)g, (int)(c % K), K),
                              share_edge(total, shares, (int)g, (int)(c % K) + 1, K), t_id);
    }
}

/* ---- attention ------------------------------------------------------------------ */

/* The cache holds, per sequence, layer and KV head, the rows of positions
 * 0 .. n_ctx-1 one after another (head_dim values each): attention reads
 * one contiguous stream per KV head. */
static size_t kv_offset(const q35_session *s, int seq, int l, int kvh, int p) {
    const q35_model *m = s->model;
    const size_t held = (size_t)(m->l1 - m->l0), heads = (size_t)(m->tp.kv1 - m->tp.kv0);
    return ((((size_t)seq * held + (size_t)(l - m->l0)) * heads + (size_t)kvh) * (size_t)s->n_ctx + (size_t)p) *
           (size_t)m->cfg.head_dim;
}

/* The token's keys and values (rows of all KV heads; this process's
 * heads, tensor-parallel, filled) into the cache (its KV heads): as they
 * are, as halves, or as int8 codes with a scale per row (kv_offset / head_dim). */
static void kv_store(q35_session *s, int seq, int l, int p, const float *k, const float *v) {
    const q35_config *c = &s->model->cfg;
    const q35_tp *tp = &s->model->tp;
    const int hd = c->head_dim;
    for (int h = tp->kv0; h < tp->kv1; h++) {
        const size_t off = kv_offset(s, seq, l, h - tp->kv0, p);
        if (s->kv_type == Q35_KV_Q8) {
            s->k.kv_quant_q8((int8_t *)s->key_cache + off, s->key_scale + off / (size_t)hd, k + (size_t)h * hd, hd);
            s->k.kv_quant_q8((int8_t *)s->value_cache + off, s->value_scale + off / (size_t)hd, v + (size_t)h * hd,
                             hd);
        } else if (s->kv_type == Q35_KV_F16) {
            s->k.f32_to_f16((uint16_t *)s->key_cache + off, k + (size_t)h * hd, hd);
            s->k.f32_to_f16((uint16_t *)s->value_cache + off, v + (size_t)h * hd, hd);
        } else {
            memcpy((float *)s->key_cache + off, k + (size_t)h * hd, (size_t)hd * sizeof *k);
            memcpy((float *)s->value_cache + off, v + (size_t)h * hd, (size_t)hd * sizeof *v);
        }
    }
}

/* nh query heads of the cache's KV head kvh of the token at position p of
 * sequence seq, over the positions its window sees in layer l's cache: q
 * (nh * head_dim, scaled in place), att (nh rows ld_att apart: scratch),
 * out (nh * head_dim). Scores are q.k times the scale, soft-capped. */
static void attend(const q35_session *s, const q35_op *op, int seq, int l, int kvh, int nh, int p, float *q,
                   float *att, int64_t ld_att, float *out) {
    const q35_config *c = &s->model->cfg;
    const int hd = c->head_dim;
    const int first = op->window > 0 && p + 1 > op->window ? p + 1 - op->window : 0, T = p + 1 - first;
    const size_t head_off = kv_offset(s, seq, l, kvh, first), row = head_off / (size_t)hd;
    for (int i = 0; i < nh * hd; i++) q[i] *= op->scale;
    if (s->kv_type == Q35_KV_Q8)
        s->k.attn_scores_q8(att, ld_att, (const int8_t *)s->key_cache + head_off, s->key_scale + row, hd, q, nh, hd,
                            T);
    else if (s->kv_type == Q35_KV_F16)
        s->k.attn_scores_f16(att, ld_att, (const uint16_t *)s->key_cache + head_off, hd, q, nh, hd, T);
    else
        for (int j = 0; j < nh; j++)
            s->k.matvec_f32(att + j * ld_att, (const float *)s->key_cache + head_off, hd, q + j * hd, hd, 0, T);
    for (int j = 0; j < nh; j++) {
        float *a = att + j * ld_att;
        if (op->softcap > 0)
            for (int t = 0; t < T; t++) a[t] = op->softcap * tanhf(a[t] / op->softcap);
        s->k.softmax_f32(a, T);
    }
    if (s->kv_type == Q35_KV_Q8) {
        s->k.attn_wsum_q8(out, att, ld_att, (const int8_t *)s->value_cache + head_off, s->value_scale + row, hd, nh,
                          hd, T);
        return;
    }
    if (s->kv_type == Q35_KV_F16) {
        s->k.attn_wsum_f16(out, att, ld_att, (const uint16_t *)s->value_cache + head_off, hd, nh, hd, T);
        return;
    }
    for (int j = 0; j < nh; j++)
        s->k.wsum_f32(out + j * hd, att + j * ld_att, (const float *)s->value_cache + head_off, hd, hd, T);
}

/* Item `it` of attention(): query heads h0 .. h0+nh-1 of one token over one
 * KV head (sub heads per piece, per_kv pieces per KV head), on thread
 * thread's scores row. Under tensor parallel, KV heads tp.kv0 .. kv1 - 1
 * and, of their query heads, only this process's (tp.h0 .. h1 - 1). */
static void attend_item(const q35_session *s, const q35_op *op, int l, int it, int per_kv, int sub, float *Q,
                        float *A, int thread) {
    const q35_config *c = &s->model->cfg;
    const q35_tp *tp = &s->model->tp;
    const q35_batch_buf *b = &s->b;
    const int hd = c->head_dim, KV = tp->kv1 - tp->kv0, G = c->n_heads / c->n_kv_heads;
    const int64_t q_w = (int64_t)c->n_heads * hd;
    const int t = it / (KV * per_kv), r = it % (KV * per_kv), k = tp->kv0 + r / per_kv;
    const int first = k * G > tp->h0 ? k * G : tp->h0, end = (k + 1) * G < tp->h1 ? (k + 1) * G : tp->h1;
    const int piece = k * G + r % per_kv * sub, h0 = piece > first ? piece : first;
    const int nh = (piece + sub < end ? piece + sub : end) - h0;
    if (nh <= 0) return; /* a piece of a KV head's query heads another process computes */
    float *att = s->att + (size_t)thread * G * (size_t)s->n_ctx;
    attend(s, op, b->seq[t], l, k - tp->kv0, nh, b->pos[t], Q + t * q_w + (int64_t)h0 * hd, att, s->n_ctx,
           A + t * q_w + (int64_t)h0 * hd);
}

/* The attention op for the n tokens: their keys and values into the cache,
 * then every (token, KV head) — split into pieces of its query heads when
 * there are fewer of those than threads — over its sequence. Under tensor
 * parallel, only this process's query heads (tp.h0 .. h1 - 1) and the KV
 * heads they read. */
static void attention(q35_session *s, const q35_op *op, int l, int n) {
    const q35_config *c = &s->model->cfg;
    const q35_tp *tp = &s->model->tp;
    q35_batch_buf *b = &s->b;
    const int hd = c->head_dim, KV = tp->kv1 - tp->kv0, G = c->n_heads / c->n_kv_heads;
    const int64_t kv_w = (int64_t)c->n_kv_heads * hd;
    float *Q = b->buf[op->src], *K = b->buf[Q35_B_K], *V = b->buf[Q35_B_V], *A = b->buf[op->dst];
    int64_t work = 0;
    for (int t = 0; t < n; t++) {
        kv_store(s, b->seq[t], l, b->pos[t], K + t * kv_w, V + t * kv_w);
        work += ((int64_t)b->pos[t] + 1) * hd * (tp->h1 - tp->h0);
    }
    const int par = s->n_threads > 1 && work >= Q35_ATTN_MIN_WORK;
    const int split = par && n * KV < s->n_threads ? (s->n_threads + n * KV - 1) / (n * KV) : 1;
    const int sub = split >= G ? 1 : (G + split - 1) / split; /* heads per piece */
    const int per_kv = (G + sub - 1) / sub, items = n * KV * per_kv;
    if (!par) { /* no parallel region at all: even a one-thread one wakes the pool */
        for (int it = 0; it < items; it++) attend_item(s, op, l, it, per_kv, sub, Q, A, 0);
        return;
    }
#pragma omp parallel for num_threads(s->n_threads) schedule(static, 1)
    for (int it = 0; it < items; it++) attend_item(s, op, l, it, per_kv, sub, Q, A, omp_get_thread_num());
}

/* Tensor parallel: completes buffer buf (n rows of width), of which this
 * process computed its part of the columns (partition lo). */
static int tp_gather(q35_session *s, const int64_t *lo, float *buf, int64_t width, int n, q35_error *err) {
    if (s->model->tp.size <= 1) return Q35_OK;
    return s->tp_gather(s->tp_user, buf, width, n, lo, err);
}

/* ---- the program ------------------------------------------------------------------ */

/* Op i of layer l (a norm, RoPE, GLU or add) on token t of the batch:
 * each token's rows are its own, so tokens may run on different threads. */
static void token_op(const q35_session *s, int l, int i, int t) {
    const q35_model *m = s->model;
    const q35_hparams *hp = &m->hp;
    const q35_layer *ly = &m->layers[l];
    const q35_op *op = &ly->prog.op[i];
    const q35_batch_buf *b = &s->b;
    float *dst = b->buf[op->dst];
    const float *src = b->buf[op->src];
    const int64_t wd = q35_buf_width(hp, op->dst), ws = q35_buf_width(hp, op->src);
    const int64_t lo = m->tp.own_lo[op->dst], hi = m->tp.own_hi[op->dst];
    switch (op->kind) {
    case Q35_OP_NORM:
        q35_op_rmsnorm(dst + t * wd, src + t * ws, ly->b[i].vec, ws, hp->c.rms_eps);
        break;
    case Q35_OP_HEAD_NORM: {
        const int hd = hp->c.head_dim;
        for (int64_t h = t * wd + lo; h < t * wd + hi; h += hd)
            q35_op_rmsnorm(dst + h, dst + h, ly->b[i].vec, hd, hp->c.rms_eps);
        break;
    }
    case Q35_OP_ROPE: {
        const q35_rope *r = &s->rope[op->rope];
        q35_op_rope_apply(dst + t * wd + lo, hi - lo, hp->c.head_dim, r, b->rope[op->rope] + (int64_t)t * r->n_rot, 0);
        break;
    }
    case Q35_OP_GLU: {
        const float *up = b->buf[op->src2];
        float *g = dst + t * wd + lo;
        const float *x = src + t * wd + lo, *u = up + t * wd + lo;
        if (op->act == Q35_ACT_SILU && op->dst == op->src)
            s->k.swiglu_f32(g, u, hi - lo);
        else
            for (int64_t j = 0; j < hi - lo; j++)
                g[j] = (s->gelu_f16 ? q35_op_gelu_tanh_f16(x[j]) : q35_op_gelu_tanh(x[j])) * u[j];
        break;
    }
    case Q35_OP_ADD:
        for (int64_t j = t * wd; j < (t + 1) * wd; j++) dst[j] += src[j];
        break;
    default:
        break;
    }
}

/* token_op for the n tokens: split among the threads where the batch has
 * enough values (a prompt; one token's are too few to pay for the
 * wake-up). The results do not depend on the split. */
static void token_ops(q35_session *s, int l, int i, int n) {
    const int64_t work = (int64_t)n * q35_buf_width(&s->model->hp, s->model->layers[l].prog.op[i].dst);
    if (s->n_threads > 1 && n > 1 && work >= Q35_TOKEN_OPS_MIN_WORK) {
#pragma omp parallel for num_threads(s->n_threads) schedule(static)
        for (int t = 0; t < n; t++) token_op(s, l, i, t);
        return;
    }
    for (int t = 0; t < n; t++) token_op(s, l, i, t);
}

/* Runs ops i.. of layer l for n tokens; returns the index of the next op
 * (several when products of one input are fused), or -1 with err filled
 * (a tensor-parallel gather failed). The ops on sliced buffers run on
 * this process's columns lo .. hi - 1 of dst (all of them without tensor
 * parallel). */
static int run_op(q35_session *s, int l, int i, int n, q35_error *err) {
    const q35_model *m = s->model;
    const q35_hparams *hp = &m->hp;
    const q35_layer *ly = &m->layers[l];
    const q35_op *op = &ly->prog.op[i];
    q35_batch_buf *b = &s->b;
    const float *src = b->buf[op->src];
    const int64_t ws = q35_buf_width(hp, op->src);
    switch (op->kind) {
    case Q35_OP_NORM:
    case Q35_OP_HEAD_NORM:
    case Q35_OP_ROPE:
    case Q35_OP_GLU:
    case Q35_OP_ADD:
        token_ops(s, l, i, n);
        return i + 1;
    case Q35_OP_MATMUL: {
        int nm = 1;
        while (nm < 3 && i + nm < ly->prog.n && ly->prog.op[i + nm].kind == Q35_OP_MATMUL &&
               ly->prog.op[i + nm].src == op->src)
            nm++;
        /* a sliced input is gathered first (tensor parallel) */
        if (q35_tp_sliced(op->src) && tp_gather(s, m->tp.lo[op->src], b->buf[op->src], ws, n, err)) return -1;
        float *outs[3];
        int64_t ldo[3];
        const q35_matrix *mats[3];
        for (int j = 0; j < nm; j++) { /* each product's rows land at this process's columns of its output */
            const int d = ly->prog.op[i + j].dst;
            outs[j] = b->buf[d] + m->tp.own_lo[d];
            ldo[j] = q35_buf_width(hp, d);
            mats[j] = &ly->b[i + j].w;
        }
        products(s, nm, outs, ldo, mats, src, ws, n);
        for (int j = 0; j < nm; j++) {
            const int d = ly->prog.op[i + j].dst;
            if (ly->b[i + j].vec)
                for (int t = 0; t < n; t++)
                    for (int64_t r = 0; r < mats[j]->m; r++) outs[j][t * ldo[j] + r] += ly->b[i + j].vec[r];
            /* an output read whole afterwards is gathered (tensor parallel) */
            if (!q35_tp_sliced(d) && tp_gather(s, m->tp.lo[d], b->buf[d], ldo[j], n, err)) return -1;
        }
        return i + nm;
    }
    case Q35_OP_ATTN:
        attention(s, op, l, n);
        return i + 1;
    default:
        return i + 1;
    }
}

int q35_batch_reserve(q35_session *s, int cap, q35_error *err) {
    q35_batch_buf *b = &s->b;
    if (b->cap >= cap) return Q35_OK;
    q35_batch_free(b);
    const q35_model *m = s->model;
    const size_t n = (size_t)cap, np = (size_t)m->max_np, nb = (np + Q35_BLOCK - 1) / Q35_BLOCK;
    int ok = (b->seq = malloc(n * sizeof *b->seq)) && (b->pos = malloc(n * sizeof *b->pos)) &&
             (b->rope[0] = malloc(n * (size_t)m->hp.n_rot * sizeof(float))) &&
             (b->rope[1] = malloc(n * (size_t)m->hp.n_rot * sizeof(float)));
    for (int i = 0; i < Q35_N_BUFS && ok; i++)
        ok = (b->buf[i] = calloc(n * (size_t)q35_buf_width(&m->hp, i), sizeof(float))) != NULL;
    for (int i = 0; i < 3 && ok && np > 0; i++) {
        ok = (b->aq[i] = malloc(n * np)) && (b->ad[i] = malloc(n * nb * sizeof(float))) &&
             (b->asum[i] = malloc(n * nb * sizeof(int32_t))) && (b->acts[i] = malloc(n * sizeof(q35_qact)));
        for (size_t t = 0; ok && t < n; t++)
            b->acts[i][t] = (q35_qact){0, b->aq[i] + t * np, b->ad[i] + t * nb, b->asum[i] + t * nb};
    }
    if (!ok) {
        q35_batch_free(b);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a batch of %d tokens", cap);
    }
    b->cap = cap;
    return Q35_OK;
}

void q35_batch_free(q35_batch_buf *b) {
    for (int i = 0; i < Q35_N_BUFS; i++) free(b->buf[i]);
    free(b->rope[0]);
    free(b->rope[1]);
    free(b->seq);
    free(b->pos);
    for (int i = 0; i < 3; i++) {
        free(b->aq[i]);
        free(b->ad[i]);
        free(b->asum[i]);
        free(b->acts[i]);
    }
    memset(b, 0, sizeof *b);
}

/* Row `token` of the embedding, in the original column order, into x. */
static void embed(q35_session *s, int token, float *x, float *xp) {
    const q35_matrix *e = &s->model->token_embd;
    const int64_t dim = e->n;
    if (e->dtype == Q35_DTYPE_F32) {
        memcpy(x, e->f32 + (size_t)token * (size_t)dim, (size_t)dim * sizeof *x);
    } else {
        q35_dequantize_row(&e->L, e->table, e->rows + (uint64_t)token * e->L.row_bytes, xp);
        for (int64_t j = 0; j < e->L.np; j++)
            if (e->perm[j] < dim) x[e->perm[j]] = xp[j];
    }
    const float scale = s->model->hp.embd_scale;
    if (scale != 1.0f)
        for (int64_t j = 0; j < dim; j++) x[j] *= scale;
}

int q35_exec(q35_session *s, const int *tokens, const int *seq, const int *pos, int n, const uint8_t *want,
             float *out, const float *x_in, float *x_out, q35_error *err) {
    int rc = q35_batch_reserve(s, n, err);
    if (rc) return rc;
    const q35_model *m = s->model;
    const q35_config *c = &m->cfg;
    q35_batch_buf *b = &s->b;
    const int dim = c->dim;
    float *X = b->buf[Q35_B_X];
    int l0 = m->l0; /* the first layer the CPU runs */
    for (int t = 0; t < n; t++) {
        b->seq[t] = seq ? seq[t] : 0;
        b->pos[t] = pos[t];
        if (x_in) memcpy(X + (size_t)t * dim, x_in + (size_t)t * dim, (size_t)dim * sizeof *X);
        else if (s->gpu_layers < c->n_layers) embed(s, tokens[t], X + (size_t)t * dim, s->xp);
        for (int r = 0; r < 2; r++) /* the tables the programs read (one sincos set each) */
            if (m->rope_used >> r & 1) q35_op_rope_table(b->rope[r] + (size_t)t * m->hp.n_rot, &s->rope[r], pos[t]);
    }
#ifdef Q35_CUDA
    if (s->gpu) { /* token by token (the caller's step is 1): the first gpu_layers layers, or all */
        rc = q35_cuda_eval(s->gpu, tokens[0], pos[0], X, s->logits, err);
        if (rc || s->gpu_layers == c->n_layers) {
            if (!rc && want && want[0]) memcpy(out, s->logits, (size_t)c->vocab_size * sizeof *out);
            return rc;
        }
        l0 = s->gpu_layers;
    }
#endif
    const int depth = q35_depth(s) < m->l1 ? q35_depth(s) : m->l1;
    for (int l = l0; l < depth; l++)
        for (int i = 0; i < m->layers[l].prog.n;)
            if ((i = run_op(s, l, i, n, err)) < 0) return err->code;
    if (x_out) memcpy(x_out, X, (size_t)n * (size_t)dim * sizeof *X);
    if (depth < c->n_layers) return Q35_OK; /* an observer wanted only the first layers, or a later stage runs the rest */

    /* the classifier, for the rows asked for; an observer still sees every
     * token's input */
    int n_out = 0;
    for (int t = 0; t < n; t++) {
        float *x = X + (size_t)t * dim;
        const int wanted = want && want[t];
        if (!wanted && !s->obs.matrix_input) continue;
        q35_op_rmsnorm(x, x, m->output_norm, dim, c->rms_eps);
        if (wanted) {
            if (n_out != t) memcpy(X + (size_t)n_out * dim, x, (size_t)dim * sizeof *x);
            n_out++;
        } else {
            s->obs.matrix_input(s->obs.user, m->output.slot, x, dim, 1, dim);
        }
    }
    if (n_out > 0) { /* under tensor parallel, this process's rows of the classifier, then gathered */
        const int64_t V = c->vocab_size, v0 = m->tp.own_lo[Q35_TP_LOGITS], v1 = m->tp.own_hi[Q35_TP_LOGITS];
        products(s, 1, (float *const[]){out + v0}, (const int64_t[]){V}, (const q35_matrix *const[]){&m->output}, X,
                 dim, n_out);
        const float cap = m->hp.final_softcap;
        if (cap > 0)
            for (int t = 0; t < n_out; t++)
                for (int64_t j = t * V + v0; j < t * V + v1; j++) out[j] = cap * tanhf(out[j] / cap);
        return tp_gather(s, m->tp.lo[Q35_TP_LOGITS], out, V, n_out, err);
    }
    return Q35_OK;
}
