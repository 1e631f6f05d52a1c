/* imatrix.c — collecting, saving and loading importance matrices. The file
 * is GGUF: one F32 vector per matrix under the matrix's tensor name (the
 * mean squared activation of each input channel), and imatrix.tokens. */
#include "quant/imatrix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "io/gguf.h"

int q35_imatrix_new(q35_imatrix **out, const q35_model *m, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    *out = NULL;
    q35_imatrix *im = calloc(1, sizeof *im);
    if (!im) return q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
    im->model = m;
    im->n = m->weights.n_tensors;
    im->sum2 = calloc((size_t)im->n, sizeof *im->sum2);
    im->count = calloc((size_t)im->n, sizeof *im->count);
    int ok = im->sum2 && im->count;
    for (int i = 0; ok && i < im->n; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        if (t->n_dims != 2) continue;
        ok = (im->sum2[i] = calloc((size_t)t->ne[0], sizeof(double))) != NULL;
    }
    if (!ok) {
        q35_imatrix_free(im);
        return q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
    }
    *out = im;
    return Q35_OK;
}

/* The tensor that shares tensor i's input: attn_k and attn_v read attn_q's,
 * ffn_up reads ffn_gate's (same layer, same row length); else i. */
static int input_owner(const q35_model *m, int i) {
    const q35_tensor *t = &m->weights.tensors[i];
    static const char *const pairs[][2] = {
        {"attn_k.weight", "attn_q.weight"}, {"attn_v.weight", "attn_q.weight"}, {"ffn_up.weight", "ffn_gate.weight"}};
    const size_t len = strlen(t->name);
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        const size_t sl = strlen(pairs[p][0]);
        if (len < sl || strcmp(t->name + len - sl, pairs[p][0])) continue;
        char name[sizeof t->name + 8];
        snprintf(name, sizeof name, "%.*s%s", (int)(len - sl), t->name, pairs[p][1]);
        const q35_tensor *o = q35_weights_find(&m->weights, name);
        if (o && o->n_dims == 2 && o->ne[0] == t->ne[0]) return (int)(o - m->weights.tensors);
    }
    return i;
}

/* Marks the tensors of stage as the only ones collected, and the layers a
 * session needs to run to see all their inputs. */
static int set_stage(q35_imatrix *im, int stage, q35_error *err) {
    const q35_model *m = im->model;
    if (stage < 1 || stage > q35_quant_stages(m))
        return q35_fail(err, Q35_ERR_ARG, "calibration stage %d is not in [1, %d]", stage, q35_quant_stages(m));
    if (!(im->active = calloc((size_t)im->n, 1))) return q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
    im->depth = 0;
    int all = 0;
    for (int i = 0; i < im->n; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        if (t->n_dims != 2 || q35_quant_stage_of(m, t->name) != stage) continue;
        im->active[i] = 1;
        if (i == m->output.slot) all = 1; /* the classifier reads the last layer */
        else if (!strncmp(t->name, "blk.", 4) && atoi(t->name + 4) + 1 > im->depth) im->depth = atoi(t->name + 4) + 1;
    }
    if (all || im->depth >= m->cfg.n_layers) im->depth = 0;
    return Q35_OK;
}

/* Every matrix, or with staged only those of stage (set_stage checks it). */
static int new_hessian(q35_imatrix **out, const q35_model *m, int staged, int stage, int n_threads, q35_error *err) {
    int rc = q35_imatrix_new(out, m, err);
    if (!rc && staged) rc = set_stage(*out, stage, err);
    if (rc) {
        q35_imatrix_free(*out);
        *out = NULL;
        return rc;
    }
    q35_imatrix *im = *out;
    im->n_threads = n_threads > 0 ? n_threads : 1;
    im->owner = malloc((size_t)im->n * sizeof *im->owner);
    im->xx = calloc((size_t)im->n, sizeof *im->xx);
    im->pending = calloc((size_t)im->n, sizeof *im->pending);
    im->n_pending = calloc((size_t)im->n, sizeof *im->n_pending);
    int ok = im->owner && im->xx && im->pending && im->n_pending;
    for (int i = 0; ok && i < im->n; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        im->owner[i] = t->n_dims == 2 ? input_owner(m, i) : -1;
        if (im->owner[i] != i || (im->active && !im->active[i])) continue;
        const size_t n = (size_t)t->ne[0];
        if (n > ((size_t)1 << 16)) {
            q35_imatrix_free(im);
            *out = NULL;
            return q35_fail(err, Q35_ERR_UNSUPPORTED, "imatrix: %s has %zu inputs, too many for a Hessian",
                            t->name, n);
        }
        ok = (im->xx[i] = calloc(n * n, sizeof(double))) != NULL &&
             (im->pending[i] = malloc(n * Q35_XX_BATCH * sizeof(float))) != NULL;
    }
    if (!ok) {
        q35_imatrix_free(im);
        *out = NULL;
        return q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory for the Hessians");
    }
    return Q35_OK;
}

int q35_imatrix_index(const q35_imatrix *im, const q35_model *m, int i) {
    const q35_tensor *t = &m->weights.tensors[i];
    if (im->model == m) return i;
    const q35_tensor *c = q35_weights_find(&im->model->weights, t->name);
    return c && c->n_dims == 2 && t->n_dims == 2 && c->ne[0] == t->ne[0] ? (int)(c - im->model->weights.tensors)
                                                                           : -1;
}

int q35_imatrix_new_hessian(q35_imatrix **out, const q35_model *m, int n_threads, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    return new_hessian(out, m, 0, 0, n_threads, err);
}

int q35_imatrix_new_stage(q35_imatrix **out, const q35_model *m, int stage, int n_threads, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    return new_hessian(out, m, 1, stage, n_threads, err);
}

/* sum of x[t] y[t] over a batch, as a float sum (vectorised) */
static float batch_dot(const float *x, const float *y, int k) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int t = 0; t < k; t++) acc += x[t] * y[t];
    return acc;
}

/* Adds the buffered vectors of tensor i to the upper triangle of its H:
 * each entry a float dot product over the batch (channel-major rows, so
 * it vectorises), added to the double sum. Rows of H split over threads;
 * the result does not depend on their number. */
static void flush(q35_imatrix *im, int i) {
    const int k = im->n_pending[i];
    if (k == 0) return;
    const int64_t n = im->model->weights.tensors[i].ne[0];
    const float *X = im->pending[i];
    const float *R = im->xk && im->xk[i] ? im->pending_ref[i] : NULL;
    double *H = im->xx[i], *K = R ? im->xk[i] : NULL;
    const int nt = n * n * k > (1 << 20) ? im->n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 4)
    for (int64_t a = 0; a < n; a++) {
        const float *xa = X + a * Q35_XX_BATCH;
        double *h = H + a * n;
        for (int64_t b = a; b < n; b++) h[b] += batch_dot(xa, X + b * Q35_XX_BATCH, k);
        if (!K) continue;
        const float *ra = R + a * Q35_XX_BATCH;
        for (int64_t b = 0; b < n; b++) K[a * n + b] += batch_dot(ra, X + b * Q35_XX_BATCH, k);
    }
    im->n_pending[i] = 0;
}

const double *q35_imatrix_hessian(q35_imatrix *im, int i, int64_t *count) {
    if (!im->xx || i < 0 || i >= im->n || im->owner[i] < 0) return NULL;
    const int o = im->owner[i];
    if (!im->xx[o]) return NULL; /* not of this stage */
    flush(im, o);
    const int64_t n = im->model->weights.tensors[o].ne[0];
    double *H = im->xx[o];
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < a; b++) H[a * n + b] = H[b * n + a];
    if (count) *count = im->count[o];
    return H;
}

int q35_imatrix_new_reference(q35_imatrix **out, const q35_model *ref, int stage, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    int rc = q35_imatrix_new(out, ref, err);
    q35_imatrix *im = *out;
    if (!rc) rc = set_stage(im, stage, err);
    if (!rc && !(im->last = calloc((size_t)im->n, sizeof *im->last)))
        rc = q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
    for (int i = 0; !rc && i < im->n; i++)
        if (im->sum2[i] && im->active[i] &&
            !(im->last[i] = calloc((size_t)ref->weights.tensors[i].ne[0], sizeof(float))))
            rc = q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
    if (rc) {
        q35_imatrix_free(im);
        *out = NULL;
    }
    return rc;
}

int q35_imatrix_pair(q35_imatrix *im, const q35_imatrix *ref, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    im->ref = ref;
    if (!ref) return Q35_OK;
    if (!im->xx || !ref->last || im->xk)
        return q35_fail(err, Q35_ERR_ARG, "imatrix: pairing needs a Hessian imatrix, not yet paired, and a reference");
    im->ref_slot = malloc((size_t)im->n * sizeof *im->ref_slot);
    im->xk = calloc((size_t)im->n, sizeof *im->xk);
    im->pending_ref = calloc((size_t)im->n, sizeof *im->pending_ref);
    if (!im->ref_slot || !im->xk || !im->pending_ref) return q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
    for (int i = 0; i < im->n; i++) {
        im->ref_slot[i] = q35_imatrix_index(ref, im->model, i);
        if (im->owner[i] != i || !im->xx[i] || im->ref_slot[i] < 0 || !ref->last[im->ref_slot[i]]) continue;
        const size_t n = (size_t)im->model->weights.tensors[i].ne[0];
        if (!(im->xk[i] = calloc(n * n, sizeof(double))) ||
            !(im->pending_ref[i] = malloc(n * Q35_XX_BATCH * sizeof(float))))
            return q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory for the cross sums");
    }
    return Q35_OK;
}

const double *q35_imatrix_cross(q35_imatrix *im, int i) {
    if (!im->xk || i < 0 || i >= im->n || im->owner[i] < 0 || !im->xk[im->owner[i]]) return NULL;
    flush(im, im->owner[i]);
    return im->xk[im->owner[i]];
}

void q35_imatrix_free(q35_imatrix *im) {
    if (!im) return;
    for (int i = 0; im->last && i < im->n; i++) free(im->last[i]);
    for (int i = 0; im->xk && i < im->n; i++) free(im->xk[i]);
    for (int i = 0; im->pending_ref && i < im->n; i++) free(im->pending_ref[i]);
    free(im->last);
    free(im->active);
    free(im->xk);
    free(im->pending_ref);
    free(im->ref_slot);
    for (int i = 0; im->sum2 && i < im->n; i++) free(im->sum2[i]);
    free(im->sum2);
    free(im->count);
    for (int i = 0; im->xx && i < im->n; i++) free(im->xx[i]);
    for (int i = 0; im->pending && i < im->n; i++) free(im->pending[i]);
    free(im->xx);
    free(im->pending);
    free(im->n_pending);
    free(im->owner);
    free(im);
}

void q35_imatrix_add(q35_imatrix *im, int i, const float *x) {
    if (i < 0 || i >= im->n || !im->sum2[i] || (im->active && !im->active[i])) return;
    const int64_t n = im->model->weights.tensors[i].ne[0];
    for (int64_t c = 0; c < n; c++) im->sum2[i][c] += (double)x[c] * x[c];
    im->count[i]++;
    if (im->last && im->last[i]) memcpy(im->last[i], x, (size_t)n * sizeof *x);
    if (im->xx && im->owner[i] == i) {
        float *p = im->pending[i] + im->n_pending[i];
        for (int64_t c = 0; c < n; c++) p[c * Q35_XX_BATCH] = x[c];
        if (im->xk && im->xk[i]) {
            const float *r = im->ref->last[im->ref_slot[i]];
            float *pr = im->pending_ref[i] + im->n_pending[i];
            for (int64_t c = 0; c < n; c++) pr[c * Q35_XX_BATCH] = r[c];
        }
        if (++im->n_pending[i] == Q35_XX_BATCH) flush(im, i);
    }
}

int q35_imatrix_means(const q35_imatrix *im, float **imp, q35_error *err) {
    for (int i = 0; i < im->n; i++) imp[i] = NULL;
    for (int i = 0; i < im->n; i++) {
        if (!im->sum2[i] || im->count[i] == 0) continue;
        const int64_t n = im->model->weights.tensors[i].ne[0];
        if (!(imp[i] = malloc((size_t)n * sizeof(float)))) {
            for (int k = 0; k < i; k++) {
                free(imp[k]);
                imp[k] = NULL;
            }
            return q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
        }
        for (int64_t c = 0; c < n; c++) imp[i][c] = (float)(im->sum2[i][c] / (double)im->count[i]);
    }
    return Q35_OK;
}

int64_t q35_imatrix_tokens(const q35_imatrix *im) { return im->tokens; }

/* The session's observer hands every matrix input over. */
static void observe_input(void *user, int tensor, const float *x, int64_t n, int n_tokens, int64_t ld) {
    (void)n;
    for (int t = 0; t < n_tokens; t++) q35_imatrix_add(user, tensor, x + (int64_t)t * ld);
}

static void observe_tokens(void *user, int n_tokens) { ((q35_imatrix *)user)->tokens += n_tokens; }

void q35_session_set_imatrix(q35_session *s, q35_imatrix *im) {
    if (!im) {
        q35_session_set_observer(s, NULL);
        return;
    }
    const q35_observer o = {observe_input, observe_tokens, im, im->depth};
    q35_session_set_observer(s, &o);
}

int q35_imatrix_save(const q35_imatrix *im, const char *path, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    q35_gguf_writer *wr;
    int rc = q35_gguf_writer_new(&wr, err);
    if (rc) return rc;
    float **means = calloc((size_t)im->n, sizeof *means);
    if (!means) rc = q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
    if (!rc) rc = q35_gguf_writer_set_str(wr, "general.type", "imatrix", err);
    if (!rc) rc = q35_gguf_writer_set_u32(wr, "imatrix.tokens", (uint32_t)im->tokens, err);
    for (int i = 0; !rc && i < im->n; i++) {
        if (!im->sum2[i] || im->count[i] == 0) continue;
        const q35_tensor *t = &im->model->weights.tensors[i];
        if (!(means[i] = malloc((size_t)t->ne[0] * sizeof(float)))) {
            rc = q35_fail(err, Q35_ERR_NOMEM, "imatrix: out of memory");
            break;
        }
        for (int64_t c = 0; c < t->ne[0]; c++) means[i][c] = (float)(im->sum2[i][c] / (double)im->count[i]);
        rc = q35_gguf_writer_add_tensor(wr, t->name, Q35_DTYPE_F32, 1, &t->ne[0], means[i], err);
    }
    if (!rc) rc = q35_gguf_writer_write(wr, path, err);
    q35_gguf_writer_free(wr);
    for (int i = 0; means && i < im->n; i++) free(means[i]);
    free(means);
    return rc;
}

int q35_imatrix_load(const q35_model *m, const char *path, float **imp, q35_error *err) {
    for (int i = 0; i < m->weights.n_tensors; i++) imp[i] = NULL;
    q35_gguf *g;
    int rc = q35_gguf_open(&g, path, err);
    if (rc) return rc;
    const q35_gguf_value *type = q35_gguf_find(g, "general.type");
    if (!type || type->type != Q35_GGUF_STRING || type->v.str.len != 7 ||
        memcmp(type->v.str.data, "imatrix", 7) != 0) {
        q35_gguf_close(g);
        return q35_fail(err, Q35_ERR_FORMAT, "%s: not an imatrix file (general.type is not \"imatrix\")", path);
    }
    int found = 0;
    for (int k = 0; !rc && k < q35_gguf_n_tensors(g); k++) {
        const q35_gguf_tensor_info *ti = q35_gguf_tensor_at(g, k);
        const q35_tensor *t = q35_weights_find(&m->weights, ti->name);
        if (!t) {
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: %s is not a tensor of the model", path, ti->name);
            break;
        }
        const int i = (int)(t - m->weights.tensors);
        if (ti->dtype != Q35_DTYPE_F32 || ti->n_dims != 1 || ti->ne[0] != t->ne[0] || t->n_dims != 2) {
            rc = q35_fail(err, Q35_ERR_FORMAT, "%s: %s: expected %lld F32 values for this model", path,
                          ti->name, (long long)t->ne[0]);
            break;
        }
        if (!(imp[i] = malloc((size_t)t->ne[0] * sizeof(float)))) {
            rc = q35_fail(err, Q35_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        memcpy(imp[i], ti->data, (size_t)t->ne[0] * sizeof(float));
        for (int64_t c = 0; c < t->ne[0]; c++)
            if (!(imp[i][c] >= 0.0f) || imp[i][c] > 3e38f) {
                rc = q35_fail(err, Q35_ERR_FORMAT, "%s: %s: importance %lld is not a finite number >= 0",
                              path, ti->name, (long long)c);
                break;
            }
        found++;
    }
    if (!rc && found == 0) rc = q35_fail(err, Q35_ERR_FORMAT, "%s: holds no importance vector", path);
    q35_gguf_close(g);
    if (rc)
        for (int i = 0; i < m->weights.n_tensors; i++) {
            free(imp[i]);
            imp[i] = NULL;
        }
    return rc;
}
