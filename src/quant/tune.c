/* tune.c — end-to-end tuning of block scales and norm weights (see tune.h):
 * the documents, Adam, rounding the scales to the format's grid, writing
 * the tuned file. The fp32 pass and its backward are in tune_pass.c. */
#include "quant/tune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "io/gguf.h"
#include "model/model.h"
#include "format/q35quant.h"
#include "quant/tune_pass.h"

#define ADAM_B1 0.9
#define ADAM_B2 0.999
#define ADAM_EPS 1e-12

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
            tmat_refresh(M);
        }
        memset(M->gw, 0, (size_t)(M->m * M->n) * sizeof *M->gw);
    }
    for (int i = 0; i < tu->n_norms; i++) {
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
        tmat_refresh(M);
        memcpy(M->w0, M->w, (size_t)(M->m * M->n) * sizeof *M->w0);
        memset(M->s.a, 0, (size_t)M->s.n * sizeof *M->s.a);
    }
    for (int i = 0; i < tu->n_norms; i++) {
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
    qw.hp = qm->hp;
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
            if (M->slot != i || !M->family) continue;
            q35_layout L;
            q35_layout_init(&L, t->dtype, M->n, M->m);
            for (int64_t r = 0; r < M->m; r++)
                memcpy(buf + L.header_bytes + (uint64_t)r * L.row_bytes, M->sb + r * M->nb, (size_t)M->nb);
        }
        for (int k = 0; k < tu->n_norms; k++)
            if (tu->norms[k].slot == i) memcpy(buf, tu->norms[k].g, (size_t)tu->norms[k].p.n * sizeof(float));
        if (!q35_weights_add(&qw, t->dtype, t->n_dims, t->ne, buf, "%s", t->name))
            rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    if (rc == Q35_OK)
        rc = q35_gguf_save_model(path, &qw, q35_tokenizer_gguf_keys, qm->tokenizer, -1, err);
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
        tuner_forward(&r.tu, r.d.ids[i], r.d.n[i]);
        total += tuner_kl_grad(&r.tu, r.d.n[i]);
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
                tuner_forward(tu, d->ids[i], d->n[i]);
                kl += tuner_kl_grad(tu, d->n[i]);
                tuner_backward(tu, d->ids[i], d->n[i]);
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

uint64_t q35_tune_bytes(const q35_model *qm, int cap) { return tuner_bytes(qm, cap); }

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
        tuner_forward(tu, d->ids[0], T);
        tuner_kl_grad(tu, T);
        tuner_backward(tu, d->ids[0], T);
    }
    for (int k = 0; !rc && k < n; k++) {
        /* even k: a block scale of matrix k/2 (mod the count); odd: a norm weight */
        float *a;
        double g;
        tmat *M = &tu->mats[(k / 2 * 5) % tu->n_mats];
        tnorm *N = &tu->norms[(k / 2 * 3) % tu->n_norms];
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
            if (M) tmat_refresh(M);
            for (int64_t j = 0; !M && j < N->p.n; j++) N->g[j] = N->g0[j] * (1.0f + N->p.a[j]);
            tuner_forward(tu, d->ids[0], T);
            L2[side] = tuner_kl_grad(tu, T);
        }
        *a = 0.0f;
        if (M) tmat_refresh(M);
        for (int64_t j = 0; !M && j < N->p.n; j++) N->g[j] = N->g0[j];
        analytic[k] = g;
        numeric[k] = (L2[0] - L2[1]) / (2.0 * h);
    }
    run_close(&r);
    return rc;
}
