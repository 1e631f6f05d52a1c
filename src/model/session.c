/* session.c — sessions: their buffers and KV cache, the evaluation entry
 * points over the executor (exec.c), several sequences, settings. A GPU
 * session (q35_session_params.n_gpu_layers, `make cuda`) hands its first
 * layers, or the whole pass, to the CUDA backend (src/cuda/) token by
 * token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "model/session.h"
#ifdef Q35_CUDA
#include "cuda/cuda_backend.h"
#endif

/* Runs n tokens of sequences seq (NULL: 0) in steps of the batch size;
 * want/out as q35_exec, over the whole call. Positions were checked. */
static int eval_tokens(q35_session *s, const int *tokens, const int *seq, int n, const uint8_t *want, float *out,
                       const float *x_in, float *x_out, q35_error *err) {
    const size_t V = (size_t)s->model->cfg.vocab_size, D = (size_t)s->model->cfg.dim;
    const int step = s->gpu || s->n_batch < 2 ? 1 : s->n_batch; /* the GPU goes token by token */
    int pos[256];
    for (int t0 = 0; t0 < n;) {
        const int nb = n - t0 < step ? n - t0 : step, chunk = nb < 256 ? nb : 256;
        for (int t = 0; t < chunk; t++) pos[t] = s->seq_pos[seq ? seq[t0 + t] : 0]++;
        int rc = q35_exec(s, tokens + t0, seq ? seq + t0 : NULL, pos, chunk, want ? want + t0 : NULL, out,
                          x_in ? x_in + (size_t)t0 * D : NULL, x_out ? x_out + (size_t)t0 * D : NULL, err);
        if (rc) {
            for (int t = 0; t < chunk; t++) s->seq_pos[seq ? seq[t0 + t] : 0]--;
            return rc;
        }
        if (want && out)
            for (int t = 0; t < chunk; t++) out += want[t0 + t] ? V : 0;
        if (s->obs.tokens_done) s->obs.tokens_done(s->obs.user, chunk);
        t0 += chunk;
    }
    return Q35_OK;
}

static int check_tokens(const q35_session *s, const int *tokens, int n, q35_error *err) {
    const int V = s->model->cfg.vocab_size;
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return q35_fail(err, Q35_ERR_ARG, "token %d is out of range [0, %d)", tokens[t], V);
    return Q35_OK;
}

int q35_session_eval(q35_session *s, int token, const float **logits, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    int rc = check_tokens(s, &token, 1, err);
    if (rc) return rc;
    if (s->seq_pos[0] >= s->n_ctx) return q35_fail(err, Q35_ERR_ARG, "context is full (%d tokens)", s->n_ctx);
    const uint8_t want = 1;
    if ((rc = eval_tokens(s, &token, NULL, 1, &want, s->logits, NULL, NULL, err))) return rc;
    *logits = q35_depth(s) < s->model->cfg.n_layers ? NULL : s->logits;
    return Q35_OK;
}

int q35_session_eval_batch(q35_session *s, const int *tokens, int n, float *all_logits, const float **logits,
                           q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    if (n <= 0) return q35_fail(err, Q35_ERR_ARG, "a batch needs at least one token (got %d)", n);
    int rc = check_tokens(s, tokens, n, err);
    if (rc) return rc;
    if (n > s->n_ctx - s->seq_pos[0])
        return q35_fail(err, Q35_ERR_ARG, "%d tokens do not fit in the context (%d of %d used)", n, s->seq_pos[0],
                        s->n_ctx);
    uint8_t *want = calloc((size_t)n, 1);
    if (!want) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    for (int t = 0; t < n; t++) want[t] = all_logits != NULL || t == n - 1;
    const size_t V = (size_t)s->model->cfg.vocab_size;
    rc = eval_tokens(s, tokens, NULL, n, want, all_logits ? all_logits : s->logits, NULL, NULL, err);
    free(want);
    if (rc) return rc;
    const int full = q35_depth(s) == s->model->cfg.n_layers;
    if (all_logits && full) memcpy(s->logits, all_logits + (size_t)(n - 1) * V, V * sizeof *s->logits);
    if (logits) *logits = full ? s->logits : NULL;
    return Q35_OK;
}

static int decode(q35_session *s, const q35_batch *b, const float *x_in, float *x_out, float *out, q35_error *err);

int q35_session_decode(q35_session *s, const q35_batch *b, float *out, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    const q35_model *m = s->model;
    if (m->l0 != 0 || m->l1 != m->cfg.n_layers)
        return q35_fail(err, Q35_ERR_ARG, "the model holds layers %d .. %d only: use q35_session_decode_layers", m->l0,
                        m->l1 - 1);
    return decode(s, b, NULL, NULL, out, err);
}

int q35_session_decode_layers(q35_session *s, const q35_batch *b, const float *x_in, float *x_out, float *out,
                              q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    const q35_model *m = s->model;
    if (m->l0 > 0 && !x_in) return q35_fail(err, Q35_ERR_ARG, "layers from %d on need their input (x_in)", m->l0);
    if (m->l1 < m->cfg.n_layers && !x_out)
        return q35_fail(err, Q35_ERR_ARG, "layers up to %d give hidden states: x_out is needed", m->l1 - 1);
    return decode(s, b, m->l0 > 0 ? x_in : NULL, m->l1 < m->cfg.n_layers ? x_out : NULL, out, err);
}

static int decode(q35_session *s, const q35_batch *b, const float *x_in, float *x_out, float *out, q35_error *err) {
    if (!b || b->n_tokens <= 0 || !b->token)
        return q35_fail(err, Q35_ERR_ARG, "a batch needs at least one token");
    int rc = check_tokens(s, b->token, b->n_tokens, err);
    if (rc) return rc;
    int *count = calloc((size_t)s->n_seq, sizeof *count), wanted = 0;
    if (!count) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    for (int t = 0; t < b->n_tokens && !rc; t++) {
        const int q = b->seq ? b->seq[t] : 0;
        if (q < 0 || q >= s->n_seq) rc = q35_fail(err, Q35_ERR_ARG, "sequence %d is out of range [0, %d)", q, s->n_seq);
        else count[q]++;
        wanted += b->logits && b->logits[t];
    }
    for (int q = 0; q < s->n_seq && !rc; q++)
        if (count[q] > s->n_ctx - s->seq_pos[q])
            rc = q35_fail(err, Q35_ERR_ARG, "sequence %d: %d tokens do not fit in its context (%d of %d used)", q,
                          count[q], s->seq_pos[q], s->n_ctx);
    free(count);
    if (!rc && wanted && !out && !x_out) rc = q35_fail(err, Q35_ERR_ARG, "logits are wanted but out is NULL");
    if (rc) return rc;
    return eval_tokens(s, b->token, b->seq, b->n_tokens, x_out ? NULL : b->logits, out, x_in, x_out, err);
}

int q35_session_n_seq(const q35_session *s) { return s->n_seq; }
int q35_session_n_ctx(const q35_session *s) { return s->n_ctx; }
int q35_session_seq_pos(const q35_session *s, int seq) {
    return seq >= 0 && seq < s->n_seq ? s->seq_pos[seq] : -1;
}

int q35_session_seq_trim(q35_session *s, int seq, int p, q35_error *err) {
    if (seq < 0 || seq >= s->n_seq) return q35_fail(err, Q35_ERR_ARG, "sequence %d is out of range [0, %d)", seq, s->n_seq);
    if (p < 0 || p > s->seq_pos[seq])
        return q35_fail(err, Q35_ERR_ARG, "sequence %d holds %d positions; cannot keep %d", seq, s->seq_pos[seq], p);
    s->seq_pos[seq] = p;
    return Q35_OK;
}

static const char *kv_name(int type) { return type == Q35_KV_Q8 ? "q8" : type == Q35_KV_F16 ? "f16" : "f32"; }

size_t q35_kv_row_bytes(const char *type, int head_dim) {
    const size_t hd = head_dim > 0 ? (size_t)head_dim : 0;
    if (!type) return 0;
    if (!strcmp(type, "f32")) return hd * sizeof(float);
    if (!strcmp(type, "f16")) return hd * sizeof(uint16_t);
    if (!strcmp(type, "q8")) return hd + sizeof(float);
    return 0;
}

/* Allocates the KV cache of type (Q35_KV_*); on success the old one is
 * freed, on failure the session keeps it. */
static int kv_alloc(q35_session *s, int type, q35_error *err) {
    const q35_config *c = &s->model->cfg;
    const size_t heads = (size_t)(s->model->tp.kv1 - s->model->tp.kv0); /* the KV heads held */
    const size_t rows = (size_t)s->n_seq * (size_t)(s->model->l1 - s->model->l0) * (size_t)s->n_ctx * heads,
                 kv = rows * (size_t)c->head_dim;
    const size_t esize = type == Q35_KV_F32 ? sizeof(float) : type == Q35_KV_F16 ? sizeof(uint16_t) : 1;
    const size_t nscale = type == Q35_KV_Q8 ? rows : 0; /* one fp32 scale per row of codes */
    void *k = calloc(kv, esize), *v = calloc(kv, esize);
    float *ks = nscale ? calloc(nscale, sizeof *ks) : NULL, *vs = nscale ? calloc(nscale, sizeof *vs) : NULL;
    if (!k || !v || (nscale && (!ks || !vs))) {
        free(k);
        free(v);
        free(ks);
        free(vs);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for the KV cache (%zu MiB)",
                        rows * q35_kv_row_bytes(kv_name(type), c->head_dim) * 2 >> 20);
    }
    free(s->key_cache);
    free(s->value_cache);
    free(s->key_scale);
    free(s->value_scale);
    s->key_cache = k;
    s->value_cache = v;
    s->key_scale = ks;
    s->value_scale = vs;
    s->kv_type = type;
    return Q35_OK;
}

/* The type "auto" gives: fp16 for a model with Q3_5-family matrices, fp32
 * for one that runs all in fp32. */
static int kv_auto(const q35_model *m) { return m->max_np > 0 ? Q35_KV_F16 : Q35_KV_F32; }

int q35_session_set_kv_type(q35_session *s, const char *type, q35_error *err) {
    int t;
    if (!type || !strcmp(type, "auto")) t = kv_auto(s->model);
    else if (!strcmp(type, "f16")) t = Q35_KV_F16;
    else if (!strcmp(type, "f32")) t = Q35_KV_F32;
    else if (!strcmp(type, "q8")) t = Q35_KV_Q8;
    else return q35_fail(err, Q35_ERR_ARG, "KV cache type '%s': give f16, f32, q8 or auto", type);
    for (int q = 0; q < s->n_seq; q++)
        if (s->seq_pos[q] > 0)
            return q35_fail(err, Q35_ERR_ARG,
                            "the KV cache type is set before any token is evaluated (%d are; q35_session_reset first)",
                            s->seq_pos[q]);
    if (t == s->kv_type) return Q35_OK;
    return kv_alloc(s, t, err);
}

const char *q35_session_kv_type(const q35_session *s) { return kv_name(s->kv_type); }

int q35_session_set_batch(q35_session *s, int n_batch, q35_error *err) {
    if (n_batch < 1) return q35_fail(err, Q35_ERR_ARG, "batch size %d: give at least 1", n_batch);
    if (s->model->tp.size > 1) { /* a tensor-parallel slice's scratch is there before any step */
        int rc = q35_batch_reserve(s, n_batch < 256 ? n_batch : 256, err);
        if (rc) return rc;
    }
    s->n_batch = n_batch; /* the scratch grows at the next step that needs it */
    return Q35_OK;
}

q35_session_params q35_session_default_params(void) {
    return (q35_session_params){.n_threads = 0, .n_batch = Q35_DEFAULT_BATCH, .kv_type = NULL, .kernels = NULL,
                                .r16 = 1, .n_ctx = 0, .n_seq = 1, .n_gpu_layers = 0, .cuda_graph = 1,
                                .cuda_pdl = 0, .cuda_gemv = -1, .cuda_max_bytes = 0};
}

int q35_session_new(q35_session **out, const q35_model *m, int n_threads, q35_error *err) {
    q35_session_params p = q35_session_default_params();
    p.n_threads = n_threads;
    return q35_session_new_params(out, m, &p, err);
}

/* A CPU session (p->n_gpu_layers is the caller's business). */
static int session_new_cpu(q35_session **out, const q35_model *m, const q35_session_params *p, q35_error *err) {
    *out = NULL;
    const q35_config *c = &m->cfg;
    if (!m->runnable)
        return q35_fail(err, Q35_ERR_ARG, "%s: opened for inspection only; load it to run it", m->weights.format);
    if (p->n_batch < 1) return q35_fail(err, Q35_ERR_ARG, "batch size %d: give at least 1", p->n_batch);
    if (p->n_seq < 1 || p->n_seq > 4096) return q35_fail(err, Q35_ERR_ARG, "%d sequences: give 1 to 4096", p->n_seq);
    if (p->n_ctx < 0 || p->n_ctx > c->seq_len)
        return q35_fail(err, Q35_ERR_ARG, "context of %d tokens: give 1 to the model's %d (0: default)", p->n_ctx,
                        c->seq_len);
    if (m->tp.size > 1 && !p->tp_gather)
        return q35_fail(err, Q35_ERR_ARG, "the model holds a tensor-parallel slice: its sessions need tp_gather");
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
        return q35_fail(err, Q35_ERR_ARG, "kernel set '%s': this CPU has no such kernel set", want);
    }
    if (m->cfg.n_heads / m->cfg.n_kv_heads >= Q35_ATTN_WIDE_GROUP) {
        /* for every head of the model, not per call: a head's scores do not
         * depend on how its group is split among threads */
        s->k.attn_scores_f16 = s->k.attn_scores_f16_wide;
        s->k.attn_scores_q8 = s->k.attn_scores_q8_wide;
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
    s->n_seq = p->n_seq;
    s->tp_gather = p->tp_gather;
    s->tp_user = p->tp_user;
    s->gelu_f16 = p->gelu_f16;
    s->n_ctx = p->n_ctx > 0 ? p->n_ctx : c->seq_len < Q35_DEFAULT_CTX ? c->seq_len : Q35_DEFAULT_CTX;
    s->rope[0] = m->rope[0];
    s->rope[1] = m->rope[1];
    if (m->rope_long && s->n_ctx > m->hp.rope_orig_ctx) s->rope[0].factors = m->rope_long; /* llama.cpp's choice */
    const size_t G = (size_t)(c->n_heads / c->n_kv_heads), np = (size_t)m->max_np;
    s->seq_pos = calloc((size_t)s->n_seq, sizeof *s->seq_pos);
    s->att = calloc((size_t)n_threads * G * (size_t)s->n_ctx, sizeof(float));
    s->logits = calloc((size_t)c->vocab_size, sizeof(float));
    int ok = s->seq_pos && s->att && s->logits;
    if (ok && np > 0)
        ok = (s->xp = malloc((size_t)n_threads * np * sizeof(float))) != NULL &&
             (s->gemm = malloc((size_t)n_threads * Q35_GEMM_SCRATCH(np))) != NULL;
    else if (ok) /* an embedding row in a family type needs xp */
        ok = (s->xp = malloc(((size_t)c->dim + 64) * sizeof(float))) != NULL;
    if (!ok) {
        q35_session_free(s);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a session");
    }
    int rc = kv_alloc(s, kv_auto(m), err);
    if (!rc && p->kv_type) rc = q35_session_set_kv_type(s, p->kv_type, err);
    /* a tensor-parallel slice's steps must not fail half way on one process
     * while the others wait in a gather: the scratch is there from the start */
    if (!rc && m->tp.size > 1) rc = q35_batch_reserve(s, s->n_batch < 256 ? s->n_batch : 256, err);
    if (rc) {
        q35_session_free(s);
        return rc;
    }
    snprintf(s->device, sizeof s->device, "CPU (%s)", s->k.name);
    *out = s;
    return Q35_OK;
}

int q35_session_new_params(q35_session **out, const q35_model *m, const q35_session_params *p, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    const q35_session_params dflt = q35_session_default_params();
    if (!p) p = &dflt;
    *out = NULL;
    if (p->n_gpu_layers != 0 && m->rows_dropped)
        return q35_fail(err, Q35_ERR_ARG, "the GPU reads rows, but the model's converted matrices are held in "
                        "R16 order only: load it with r16 = 0 (Q35_R16=0)");
#ifndef Q35_CUDA
    if (p->n_gpu_layers != 0) return q35_fail(err, Q35_ERR_UNSUPPORTED, "q35 was built without CUDA (make cuda)");
    return session_new_cpu(out, m, p, err);
#else
    int rc = session_new_cpu(out, m, p, err);
    if (rc || p->n_gpu_layers == 0) return rc;
    q35_session *s = *out;
    const int n = p->n_gpu_layers < 0 || p->n_gpu_layers > m->cfg.n_layers ? m->cfg.n_layers : p->n_gpu_layers;
    const q35_cuda_params cp = {p->cuda_graph, p->cuda_pdl, p->cuda_gemv, p->cuda_max_bytes};
    if (s->n_seq != 1) rc = q35_fail(err, Q35_ERR_UNSUPPORTED, "CUDA: a GPU session holds one sequence");
    if (!rc && (m->l0 != 0 || m->l1 != m->cfg.n_layers || m->tp.size > 1))
        rc = q35_fail(err, Q35_ERR_UNSUPPORTED, "CUDA: a GPU session runs a model holding every layer, whole");
    if (rc || (rc = q35_cuda_new(&s->gpu, m, n, &cp, err))) {
        q35_session_free(s);
        *out = NULL;
        return rc;
    }
    s->gpu_layers = n;
    snprintf(s->device, sizeof s->device, "CUDA: %s", q35_cuda_describe(s->gpu));
    return Q35_OK;
#endif
}

int q35_session_new_gpu(q35_session **out, const q35_model *m, int n_gpu_layers, int n_threads, q35_error *err) {
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
    free(s->seq_pos);
    free(s->att);
    free(s->logits);
    free(s->xp);
    free(s->gemm);
    free(s->key_cache);
    free(s->value_cache);
    free(s->key_scale);
    free(s->value_scale);
    q35_batch_free(&s->b);
    free(s);
}

void q35_session_reset(q35_session *s) { memset(s->seq_pos, 0, (size_t)s->n_seq * sizeof *s->seq_pos); }
int q35_session_pos(const q35_session *s) { return s->seq_pos[0]; }

void q35_session_set_observer(q35_session *s, const q35_observer *o) {
    if (o) s->obs = *o;
    else memset(&s->obs, 0, sizeof s->obs);
}

int q35_session_rewind(q35_session *s, int pos, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    if (pos < 0 || pos > s->seq_pos[0])
        return q35_fail(err, Q35_ERR_ARG, "rewind to position %d: the session holds %d", pos, s->seq_pos[0]);
    s->seq_pos[0] = pos; /* later tokens overwrite the cache from here */
    return Q35_OK;
}
