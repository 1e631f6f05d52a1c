/* calibrate.c — sequential GPTQ calibration, then end-to-end tuning (see calibrate.h). */
#include "quant/calibrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/outfile.h"
#include "model/model.h"
#include "quant/imatrix.h"
#include "quant/tune.h"

/* Runs the calibration documents through a session of m collecting into im;
 * with ref, a session of ref collecting into rim evaluates each token first. */
static int run_docs(const q35_model *m, q35_imatrix *im, const q35_model *ref, q35_imatrix *rim,
                    const q35_quant_options *o, int stage, int stages, q35_error *err) {
    q35_session *s = NULL, *rs = NULL;
    int rc = q35_session_new(&s, m, o->n_threads, err);
    if (!rc && ref) rc = q35_session_new(&rs, ref, o->n_threads, err);
    if (!rc) {
        q35_session_set_imatrix(s, im);
        if (rs) q35_session_set_imatrix(rs, rim);
    }
    const int64_t cap = o->calib_tokens;
    for (int d = 0; !rc && d < o->calib_n_docs && (!cap || im->tokens < cap); d++) {
        int *ids = NULL, n = 0;
        if ((rc = q35_tokenize(m, o->calib_docs[d], o->calib_lens[d], 1, &ids, &n, err))) break;
        q35_session_reset(s);
        if (rs) q35_session_reset(rs);
        const float *logits;
        for (int i = 0; !rc && i < n && i < m->cfg.seq_len && (!cap || im->tokens < cap); i++) {
            if (rs) rc = q35_session_eval(rs, ids[i], &logits, err);
            if (!rc) rc = q35_session_eval(s, ids[i], &logits, err);
        }
        free(ids);
        if (o->calib_progress) o->calib_progress(o->user, stage, stages, d + 1, o->calib_n_docs, im->tokens);
    }
    q35_session_free(s);
    q35_session_free(rs);
    return rc;
}

static int fast(const q35_model *m, const char *out_path, const q35_quant_options *o, q35_quant_totals *tot,
                q35_error *err) {
    q35_quant_options so = *o;
    q35_imatrix *im = NULL;
    int rc = q35_imatrix_new_hessian(&im, m, o->n_threads, err);
    if (!rc) rc = run_docs(m, im, NULL, NULL, o, 1, 1, err);
    so.calib = im;
    if (!rc) rc = q35_quantize_stage(m, out_path, &so, 0, NULL, tot, err);
    q35_imatrix_free(im);
    return rc;
}

static int sequential(const q35_model *m, const char *out_path, const q35_quant_options *o,
                      q35_quant_totals *tot, q35_error *err) {
    char *tmp = NULL;
    int rc = q35_outfile_scratch(out_path, o->scratch_dir, "stage", &tmp, err);
    if (rc) return rc;
    q35_quant_options so = *o;
    q35_model *prev = NULL; /* the last stage file written, loaded; NULL: none yet */
    const int stages = q35_quant_stages(m);
    for (int stage = 1; rc == Q35_OK && stage <= stages; stage++) {
        int any = 0; /* matrices in this stage (a tied classifier has none in the last) */
        for (int i = 0; i < m->weights.n_tensors && !any; i++)
            any = m->weights.tensors[i].n_dims == 2 && q35_quant_stage_of(m, m->weights.tensors[i].name) == stage;
        const int last = stage == stages;
        if (!any && !last) continue;
        /* calibrate on the previous stage's file, paired with m */
        const q35_model *cm = prev ? prev : m;
        q35_imatrix *im = NULL, *rim = NULL;
        if (any) {
            rc = q35_imatrix_new_stage(&im, cm, stage, o->n_threads, err);
            if (!rc && prev) rc = q35_imatrix_new_reference(&rim, m, stage, err);
            if (!rc && rim) rc = q35_imatrix_pair(im, rim, err);
            if (!rc) rc = run_docs(cm, im, prev ? m : NULL, rim, o, stage, stages, err);
            if (im) q35_imatrix_pair(im, NULL, err);
            q35_imatrix_free(rim);
        }
        so.calib = im;
        if (!rc) rc = q35_quantize_stage(m, last ? out_path : tmp, &so, stage, prev, tot, err);
        q35_imatrix_free(im);
        q35_model_free(prev);
        prev = NULL;
        if (!rc && !last) rc = q35_model_load_params(&prev, tmp, &m->params, err);
    }
    q35_model_free(prev);
    remove(tmp);
    free(tmp);
    return rc;
}

/* Tuning passes: o's, or by default 2 where the tuner's memory (for
 * documents as long as the context) is at most 4 GiB, else none. */
static int tune_wanted(const q35_model *m, const q35_quant_options *o) {
    if (o->tune_epochs < 0) return 0;
    if (o->tune_epochs > 0) return o->tune_epochs;
    return q35_tune_bytes(m, m->cfg.seq_len) <= (4ull << 30) ? 2 : 0;
}

int q35_quantize_calibrated(const q35_model *m, const char *out_path, const q35_quant_options *o,
                            q35_quant_totals *tot, q35_error *err) {
    if (o->calib_n_docs < 1 || !o->calib_docs || !o->calib_lens)
        return q35_fail(err, Q35_ERR_ARG, "calibration needs at least one document");
    const int epochs = tune_wanted(m, o);
    if (!epochs) return o->calib_fast ? fast(m, out_path, o, tot, err) : sequential(m, out_path, o, tot, err);
    /* quantize into a file beside out_path, tune it into out_path */
    char *tmp = NULL;
    int rc = q35_outfile_scratch(out_path, o->scratch_dir, "untuned", &tmp, err);
    if (rc) return rc;
    rc = o->calib_fast ? fast(m, tmp, o, tot, err) : sequential(m, tmp, o, tot, err);
    q35_model *qm = NULL;
    if (!rc) rc = q35_model_load_params(&qm, tmp, &m->params, err);
    if (!rc) {
        const q35_tune_params tp = {epochs, 1, 512, o->tune_lr > 0 ? o->tune_lr : 0.005, o->calib_tokens};
        rc = q35_tune_model(m, qm, out_path, o->calib_docs, o->calib_lens, o->calib_n_docs, &tp, o->n_threads,
                            o->tune_progress, o->user, err);
    }
    q35_model_free(qm);
    remove(tmp);
    free(tmp);
    return rc;
}
