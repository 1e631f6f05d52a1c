/* model_quant.c — `q35 quantize`: every 2-D tensor of a loaded model into a
 * Q3_5-family type (1-D tensors stay F32), written with the model's
 * hyperparameters and tokenizer as one self-contained GGUF file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "format/dtype.h"
#include "io/gguf.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/quantize.h"

/* The tensor's weights as fp32 (the loader expanded every other type
 * except the family's own, which is expanded here). *owned is set when the
 * returned buffer must be freed. */
static const float *as_f32(const q35_tensor *t, float **owned) {
    *owned = NULL;
    if (t->dtype == Q35_DTYPE_F32) return t->data;
    if (!q35_is_family(t->dtype)) return NULL;
    q35_layout L;
    if (q35_layout_init(&L, t->dtype, t->ne[0], t->ne[1])) return NULL;
    if (!(*owned = malloc((size_t)(t->ne[0] * t->ne[1]) * sizeof(float)))) return NULL;
    q35_dequantize_tensor(&L, t->data, *owned);
    return *owned;
}

/* The family type named name, or -1 after filling err naming the flag. */
static int family_type(const char *flag, const char *name, q35_error *err) {
    const int t = q35_dtype_by_name(name ? name : "");
    if (!q35_is_family(t))
        q35_fail(err, Q35_ERR_ARG, "%s %s: choose Q2_5, Q3_5, Q4_5 or Q8_S", flag, name ? name : "(none)");
    return q35_is_family(t) ? t : -1;
}

int q35_quantize_model(const q35_model *m, const char *out_path, const char *type,
                       const char *imatrix_path, int n_threads, q35_quant_progress progress,
                       void *user, double *bpw, double *rel_rmse, q35_error *err) {
    return q35_quantize_model_types(m, out_path, type, NULL, NULL, imatrix_path, n_threads, progress,
                                    user, bpw, rel_rmse, err);
}

int q35_quantize_model_types(const q35_model *m, const char *out_path, const char *type,
                             const char *embed_type, const char *output_type,
                             const char *imatrix_path, int n_threads, q35_quant_progress progress,
                             void *user, double *bpw, double *rel_rmse, q35_error *err) {
    const int dtype = family_type("--type", type, err);
    if (dtype < 0) return err->code;
    const int tied = q35_weights_find(&m->weights, "output.weight") == NULL;
    const int embed_dtype = embed_type ? family_type("--token-embedding-type", embed_type, err)
                            : output_type && tied ? family_type("--output-tensor-type", output_type, err)
                                                  : dtype;
    const int output_dtype = output_type ? family_type("--output-tensor-type", output_type, err) : dtype;
    if (embed_dtype < 0 || output_dtype < 0) return err->code;
    if (!m->tokenizer)
        return q35_fail(err, Q35_ERR_ARG, "the model has no tokenizer to write (give --tokenizer)");
    const int n = m->weights.n_tensors;
    float **imp = calloc((size_t)n, sizeof *imp);
    if (!imp) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int rc = imatrix_path ? q35_imatrix_load(m, imatrix_path, imp, err) : Q35_OK;

    q35_weights qw;
    memset(&qw, 0, sizeof qw);
    qw.cfg = m->cfg;
    snprintf(qw.format, sizeof qw.format, "GGUF v3");
    double err2 = 0, ref2 = 0;
    uint64_t bits2 = 0, elems2 = 0;
    for (int i = 0; rc == Q35_OK && i < n; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        float *owned;
        const float *w = as_f32(t, &owned);
        if (!w) {
            rc = q35_fail(err, Q35_ERR_UNSUPPORTED, "tensor %s: cannot read its weights", t->name);
            break;
        }
        double tb = 32.0, tr = 0.0;
        const int ttype = !strcmp(t->name, "token_embd.weight") ? embed_dtype
                          : !strcmp(t->name, "output.weight")   ? output_dtype
                                                                : dtype;
        if (t->n_dims == 2) {
            q35_layout L;
            uint8_t *out = NULL;
            q35_quant_stats st = {0, 0};
            if (q35_layout_init(&L, ttype, t->ne[0], t->ne[1]) ||
                !(out = malloc(L.total_bytes)) || q35_weights_own(&qw, out) ||
                q35_quantize_tensor(&L, w, imp[i], n_threads, out, &st)) {
                free(owned);
                rc = q35_fail(err, Q35_ERR_NOMEM, "tensor %s: out of memory", t->name);
                break;
            }
            if (!q35_weights_add(&qw, ttype, 2, t->ne, out, "%s", t->name))
                rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
            tb = (double)L.total_bytes * 8.0 / (double)(t->ne[0] * t->ne[1]);
            tr = st.ref2 > 0 ? sqrt(st.err2 / st.ref2) : 0.0;
            err2 += st.err2;
            ref2 += st.ref2;
            bits2 += L.total_bytes * 8;
            elems2 += (uint64_t)(t->ne[0] * t->ne[1]);
        } else {
            const uint64_t ne = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
            float *copy = malloc(ne * sizeof *copy);
            if (!copy || q35_weights_own(&qw, copy) ||
                !q35_weights_add(&qw, Q35_DTYPE_F32, t->n_dims, t->ne, memcpy(copy, w, ne * sizeof *copy),
                                 "%s", t->name))
                rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        }
        free(owned);
        if (progress && rc == Q35_OK)
            progress(user, i + 1, n, t->name, t->n_dims == 2 ? q35_family_name(ttype) : "F32", tb, tr);
    }
    if (rc == Q35_OK) rc = q35_gguf_save_model(out_path, &qw, m->tokenizer, -1, err);
    if (bpw) *bpw = elems2 ? (double)bits2 / (double)elems2 : 0.0;
    if (rel_rmse) *rel_rmse = ref2 > 0 ? sqrt(err2 / ref2) : 0.0;
    q35_weights_free(&qw);
    for (int i = 0; i < n; i++) free(imp[i]);
    free(imp);
    return rc;
}
