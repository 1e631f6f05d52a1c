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
#include "quant/calibrate.h"
#include "quant/gptq.h"
#include "quant/imatrix.h"
#include "format/q35quant.h"

/* The tensor's weights as fp32: F32 as they are; any other type q35 reads
 * (the family, ggml's block types, F16, BF16) expanded into a buffer,
 * *owned, which the caller frees. NULL when out of memory. */
static const float *as_f32(const q35_tensor *t, float **owned) {
    *owned = NULL;
    if (t->dtype == Q35_DTYPE_F32) return t->data;
    const uint64_t n = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
    if (!(*owned = malloc(n * sizeof(float)))) return NULL;
    q35_layout L;
    if (!q35_is_family(t->dtype)) {
        q35_dtype_get(t->dtype)->to_f32(t->data, *owned, (int64_t)n); /* readable: checked before */
    } else if (q35_layout_init(&L, t->dtype, t->ne[0], t->ne[1]) == 0) {
        q35_dequantize_tensor(&L, t->data, *owned);
    } else { /* the reader sized it so: not reached */
        free(*owned);
        *owned = NULL;
    }
    return *owned;
}

/* Can as_f32 read t? */
static int readable(const q35_tensor *t) {
    const q35_dtype_info *di = q35_dtype_get(t->dtype);
    return q35_is_family(t->dtype) || (di && di->to_f32);
}

/* Gives back the pages of m's file mapping that t's data occupies: a
 * quantization reads each tensor once, so the file does not stay resident. */
static void release_input(const q35_model *m, const q35_tensor *t) {
    const q35_mapfile *f = &m->weights.file;
    const uint8_t *p = t->data;
    if (f->data && p >= f->data && p < f->data + f->size) q35_mapfile_release(p, t->nbytes);
}

/* The family type named name, or -1 after filling err naming the flag. */
static int family_type(const char *flag, const char *name, q35_error *err) {
    const int t = q35_dtype_by_name(name ? name : "");
    if (!q35_is_family(t))
        q35_fail(err, Q35_ERR_ARG, "%s %s: choose Q2_5, Q3_5, Q4_5 or Q8_S", flag, name ? name : "(none)");
    return q35_is_family(t) ? t : -1;
}

/* The type --tensor-type gives tensor name, or dflt: spec is
 * "PATTERN=TYPE,..." and the first PATTERN contained in name wins. -1 after
 * filling err when spec is malformed. */
static int tensor_type_for(const char *spec, const char *name, int dflt, q35_error *err) {
    for (const char *p = spec; p && *p;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char pat[128], tname[16];
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof pat || len - (size_t)(eq - p) - 1 >= sizeof tname) {
            q35_fail(err, Q35_ERR_ARG, "--tensor-type: '%.*s' is not PATTERN=TYPE", (int)len, p);
            return -1;
        }
        snprintf(pat, sizeof pat, "%.*s", (int)(eq - p), p);
        snprintf(tname, sizeof tname, "%.*s", (int)(len - (size_t)(eq - p) - 1), eq + 1);
        const int t = family_type("--tensor-type", tname, err);
        if (t < 0) return -1;
        if (strstr(name, pat)) return t;
        p = comma ? comma + 1 : p + len;
    }
    return dflt;
}

/* Mean squared activations of m's matrices from im, by q35_imatrix_index. */
static int calib_means(const q35_model *m, const q35_imatrix *im, float **imp, q35_error *err) {
    const int n = m->weights.n_tensors;
    float **all = calloc((size_t)im->n, sizeof *all);
    if (!all) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int rc = q35_imatrix_means(im, all, err);
    for (int i = 0; rc == Q35_OK && i < n; i++) {
        const int ci = q35_imatrix_index(im, m, i);
        imp[i] = ci >= 0 ? all[ci] : NULL;
        if (ci >= 0) all[ci] = NULL;
    }
    for (int k = 0; k < im->n; k++) free(all[k]);
    free(all);
    return rc;
}

int q35_quant_stages(const q35_model *m) { return 4 * m->cfg.n_layers + 1; }

int q35_quant_stage_of(const q35_model *m, const char *name) {
    if (!strcmp(name, "token_embd.weight")) return 1;
    if (!strcmp(name, "output.weight")) return q35_quant_stages(m);
    if (strncmp(name, "blk.", 4)) return 0;
    const int l = atoi(name + 4);
    static const struct { const char *part; int sub; } parts[] = {
        {".attn_q.", 0}, {".attn_k.", 0}, {".attn_v.", 0}, {".attn_qkv.", 0}, {".attn_output.", 1},
        {".ffn_gate.", 2}, {".ffn_up.", 2}, {".ffn_down.", 3}};
    if (l < 0 || l >= m->cfg.n_layers) return 0;
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        if (strstr(name, parts[k].part)) return 4 * l + parts[k].sub + 1;
    return 0;
}

/* Upgrade priority of a tensor under --bpw-budget: lower first. The
 * classes in order of the loss they save per bit when raised from Q3_5 to
 * Q4_5, measured with GPTQ on tinystories-calib (stories260K and
 * stories3M, mean NLL): classifier and embedding, attn_v, attn_k, ffn_up,
 * ffn_down, attn_output, ffn_gate, attn_q; within a class by layer, first
 * layers first. */
static int64_t priority(const char *name) {
    static const char *const order[] = {"attn_v", "attn_k", "ffn_up", "ffn_down", "attn_output", "ffn_gate"};
    int cls = (int)(sizeof order / sizeof order[0]) + 1;
    for (int k = 0; k < (int)(sizeof order / sizeof order[0]); k++)
        if (strstr(name, order[k])) {
            cls = k + 1;
            break;
        }
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight")) cls = 0;
    const int layer = !strncmp(name, "blk.", 4) ? atoi(name + 4) : 0;
    return (int64_t)cls * 1000000 + layer;
}

/* The next type up the family (Q2_5 -> Q3_5 -> Q4_5 -> Q8_S), or -1. */
static int type_up(int t) {
    return t == Q35_TYPE_Q2_5 ? Q35_TYPE_Q3_5 : t == Q35_TYPE_Q3_5 ? Q35_TYPE_Q4_5
                              : t == Q35_TYPE_Q4_5 ? Q35_TYPE_Q8_S : -1;
}

static uint64_t tensor_bits(const q35_tensor *t, int type) {
    q35_layout L;
    return q35_layout_init(&L, type, t->ne[0], t->ne[1]) ? UINT64_MAX / 4 : L.total_bytes * 8;
}

/* Raises the types of the tensors not fixed by a flag, one step at a time
 * in priority order, while all 2-D tensors together stay within budget bits
 * per weight. Fails if the fixed choices alone exceed it. */
static int spend_budget(const q35_model *m, double budget, int *types, const int *fixed, q35_error *err) {
    const int n = m->weights.n_tensors;
    uint64_t bits = 0, elems = 0;
    for (int i = 0; i < n; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        if (t->n_dims != 2) continue;
        bits += tensor_bits(t, types[i]);
        elems += (uint64_t)(t->ne[0] * t->ne[1]);
    }
    const double cap = budget * (double)elems;
    if ((double)bits > cap)
        return q35_fail(err, Q35_ERR_ARG, "--bpw-budget %g: the types chosen take %.4f bits per weight already",
                        budget, (double)bits / (double)elems);
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
        if (m->weights.tensors[i].n_dims == 2 && !fixed[i]) idx[k++] = i;
    for (int a = 1; a < k; a++) /* insertion sort by priority, then index */
        for (int b = a; b > 0 && priority(m->weights.tensors[idx[b - 1]].name) >
                                    priority(m->weights.tensors[idx[b]].name); b--) {
            const int tmp = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = tmp;
        }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int a = 0; a < k; a++) {
            const q35_tensor *t = &m->weights.tensors[idx[a]];
            const int up = type_up(types[idx[a]]);
            if (up < 0) continue;
            const uint64_t nb = bits - tensor_bits(t, types[idx[a]]) + tensor_bits(t, up);
            if ((double)nb > cap) continue;
            bits = nb;
            types[idx[a]] = up;
            changed = 1;
        }
    }
    free(idx);
    return Q35_OK;
}

int q35_quantize_model(const q35_model *m, const char *out_path, const char *type,
                       const char *imatrix_path, int n_threads, q35_quant_progress progress,
                       void *user, double *bpw, double *rel_rmse, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    return q35_quantize_model_types(m, out_path, type, NULL, NULL, imatrix_path, n_threads, progress,
                                    user, bpw, rel_rmse, err);
}

int q35_quantize_model_types(const q35_model *m, const char *out_path, const char *type,
                             const char *embed_type, const char *output_type,
                             const char *imatrix_path, int n_threads, q35_quant_progress progress,
                             void *user, double *bpw, double *rel_rmse, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    q35_quant_options o;
    memset(&o, 0, sizeof o);
    o.type = type;
    o.embed_type = embed_type;
    o.output_type = output_type;
    o.imatrix_path = imatrix_path;
    o.n_threads = n_threads;
    o.progress = progress;
    o.user = user;
    return q35_quantize_model_opts(m, out_path, &o, bpw, rel_rmse, err);
}

/* ---- one file, streamed -----------------------------------------------------
 * The GGUF writer asks for each tensor's bytes in order and in chunks
 * (q35_gguf_writer_add_tensor_fill); a tensor is made when its first chunk
 * is asked for and freed after its last, so a quantization holds one
 * tensor's input (as fp32) and output at a time, not the model. */

typedef struct stream {
    const q35_model *m;
    const q35_quant_options *o;
    int stage, last, n_threads;
    q35_quant_totals *tot;
    float **imp;
    const int *types;
    q35_gptq_params gp;
    int cur;           /* the tensor buf holds, -1: none */
    uint8_t *buf;
    uint64_t buf_bytes;
} stream;

typedef struct tensor_job {
    stream *s;
    int i;             /* the tensor's index in m */
    int type;          /* written as: its family type, or F32 */
    int st;            /* its stage (0: none) */
} tensor_job;

/* Makes tensor j->i's bytes in s->buf: quantized (with the calibration,
 * GPTQ or importance the options give), or as F32. Reports progress. */
static int make_tensor(const tensor_job *j, q35_error *err) {
    stream *s = j->s;
    const q35_model *m = s->m;
    const q35_quant_options *o = s->o;
    const q35_tensor *t = &m->weights.tensors[j->i];
    const int i = j->i, n = m->weights.n_tensors;
    float *owned;
    const float *w = as_f32(t, &owned);
    if (!w) return q35_fail(err, Q35_ERR_NOMEM, "tensor %s: out of memory", t->name);
    release_input(m, t);
    double tb = 32.0, tr = 0.0;
    int rc = Q35_OK;
    if (j->type != Q35_DTYPE_F32) {
        q35_layout L;
        q35_quant_stats qs;
        memset(&qs, 0, sizeof qs);
        int64_t count = 0;
        const int ci = o->calib ? q35_imatrix_index(o->calib, m, i) : -1;
        const double *H = ci >= 0 ? q35_imatrix_hessian(o->calib, ci, &count) : NULL;
        const double *K = ci >= 0 ? q35_imatrix_cross(o->calib, ci) : NULL;
        /* asymmetric calibration: fit the unquantized outputs; not for the
         * embedding, whose rows are also looked up as they are */
        float *target = H && K && count > 0 && i != m->token_embd.slot
                            ? q35_gptq_asym_target(w, H, K, t->ne[1], t->ne[0], s->gp.damp, s->n_threads)
                            : NULL;
        if (q35_layout_init(&L, j->type, t->ne[0], t->ne[1]) || !(s->buf = malloc(L.total_bytes)) ||
            (H && count > 0 ? q35_quantize_tensor_gptq(&L, target ? target : w, s->imp[i], H, &s->gp, s->n_threads,
                                                       s->buf, &qs)
                            : q35_quantize_tensor(&L, w, s->imp[i], s->n_threads, s->buf, &qs)) ||
            (target && q35_weight_error(&L, s->buf, w, &qs)))
            rc = q35_fail(err, Q35_ERR_NOMEM, "tensor %s: out of memory", t->name);
        free(target);
        s->buf_bytes = L.total_bytes;
        tb = (double)L.total_bytes * 8.0 / (double)(t->ne[0] * t->ne[1]);
        tr = qs.href > 0 ? sqrt(qs.herr / qs.href) : qs.ref2 > 0 ? sqrt(qs.err2 / qs.ref2) : 0.0;
        s->tot->err2 += qs.err2;
        s->tot->ref2 += qs.ref2;
    } else {
        s->buf_bytes = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3] * 4;
        if (owned) s->buf = (uint8_t *)owned, owned = NULL;
        else if (!(s->buf = malloc(s->buf_bytes))) rc = q35_fail(err, Q35_ERR_NOMEM, "tensor %s: out of memory", t->name);
        else memcpy(s->buf, w, s->buf_bytes);
    }
    free(owned);
    /* each tensor is reported once: a matrix at its stage, the rest at the end */
    if (o->progress && rc == Q35_OK && (t->n_dims == 2 ? j->st == s->stage : s->last))
        o->progress(o->user, ++s->tot->done, n, t->name, t->n_dims == 2 ? q35_family_name(j->type) : "F32", tb, tr);
    return rc;
}

static int tensor_fill(void *user, void *buf, uint64_t offset, uint64_t len, q35_error *err) {
    const tensor_job *j = user;
    stream *s = j->s;
    if (s->cur != j->i) {
        free(s->buf);
        s->buf = NULL;
        s->cur = j->i;
        int rc = make_tensor(j, err);
        if (rc) return rc;
    }
    if (offset + len > s->buf_bytes) /* the writer sized the tensor as make_tensor did */
        return q35_fail(err, Q35_ERR_ARG, "tensor %s: %llu bytes asked for, %llu made",
                        s->m->weights.tensors[j->i].name, (unsigned long long)(offset + len),
                        (unsigned long long)s->buf_bytes);
    memcpy(buf, s->buf + offset, len);
    if (offset + len == s->buf_bytes) {
        free(s->buf);
        s->buf = NULL;
        s->cur = -1;
    }
    return Q35_OK;
}

int q35_quantize_stage(const q35_model *m, const char *out_path, const q35_quant_options *o, int stage,
                       const q35_model *prev, q35_quant_totals *tot, q35_error *err) {
    const char *embed_type = o->embed_type, *output_type = o->output_type;
    const int dtype = family_type("--type", o->type, err);
    if (dtype < 0) return err->code;
    const int tied = q35_weights_find(&m->weights, "output.weight") == NULL;
    const int embed_dtype = embed_type ? family_type("--token-embedding-type", embed_type, err)
                            : output_type && tied ? family_type("--output-tensor-type", output_type, err)
                                                  : dtype;
    const int output_dtype = output_type ? family_type("--output-tensor-type", output_type, err) : dtype;
    if (embed_dtype < 0 || output_dtype < 0) return err->code;
    if (tensor_type_for(o->tensor_types, "", dtype, err) < 0) return err->code;
    if (!m->tokenizer)
        return q35_fail(err, Q35_ERR_ARG, "the model has no tokenizer to write (give --tokenizer)");
    const int n = m->weights.n_tensors, last = !stage || stage == q35_quant_stages(m);
    const int n_threads = o->n_threads > 0 ? o->n_threads : 1;
    /* damping chosen on a validation split of the calibration text
     * (docs/pareto-stories260K.md): sequential calibration wants more */
    const double damp = o->calib_docs && !o->calib_fast ? (dtype == Q35_TYPE_Q2_5 ? 0.3 : 0.1) : 0.03;
    q35_gptq_params gp = {o->damp > 0 ? o->damp : damp, 8};
    float **imp = calloc((size_t)n, sizeof *imp);
    if (!imp) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    int rc = o->imatrix_path ? q35_imatrix_load(m, o->imatrix_path, imp, err)
             : o->calib      ? calib_means(m, o->calib, imp, err)
                             : Q35_OK;

    int *types = calloc((size_t)n, sizeof *types), *fixed = calloc((size_t)n, sizeof *fixed);
    if (!types || !fixed) rc = rc ? rc : q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    for (int i = 0; rc == Q35_OK && i < n; i++) {
        const char *name = m->weights.tensors[i].name;
        const int is_embd = !strcmp(name, "token_embd.weight"), is_out = !strcmp(name, "output.weight");
        const int dflt = is_embd ? embed_dtype : is_out ? output_dtype : dtype;
        types[i] = tensor_type_for(o->tensor_types, name, dflt, err);
        fixed[i] = tensor_type_for(o->tensor_types, name, -2, err) != -2 || (is_embd && (embed_type || (output_type && tied))) ||
                   (is_out && output_type);
    }
    if (rc == Q35_OK && o->bpw_budget > 0) rc = spend_budget(m, o->bpw_budget, types, fixed, err);

    /* the file: each tensor's bytes are made when the writer asks for them */
    stream S = {.m = m, .o = o, .stage = stage, .last = last, .n_threads = n_threads, .tot = tot, .imp = imp,
                .types = types, .gp = gp, .cur = -1};
    tensor_job *jobs = calloc((size_t)n, sizeof *jobs);
    q35_gguf_writer *wr = NULL;
    if (rc == Q35_OK && !jobs) rc = q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    if (rc == Q35_OK) rc = q35_gguf_writer_new(&wr, err);
    if (rc == Q35_OK) rc = q35_gguf_writer_set_hparams(wr, &m->hp, err);
    if (rc == Q35_OK) rc = q35_tokenizer_gguf_keys(m->tokenizer, wr, err);
    uint64_t bits2 = 0, elems2 = 0;
    for (int i = 0; rc == Q35_OK && i < n; i++) {
        const q35_tensor *t = &m->weights.tensors[i];
        /* with stages: earlier stages' matrices come from prev, later ones stay F32 */
        const int st = stage && t->n_dims == 2 ? q35_quant_stage_of(m, t->name) : 0;
        const int ttype = types[i];
        q35_layout L;
        if (st && st < stage) {
            const q35_tensor *pt = prev ? q35_weights_find(&prev->weights, t->name) : NULL;
            if (!pt || pt->dtype != ttype || q35_layout_init(&L, ttype, t->ne[0], t->ne[1]) ||
                pt->nbytes != L.total_bytes) {
                rc = q35_fail(err, Q35_ERR_ARG, "tensor %s: not in the previous stage's file as %s", t->name,
                              q35_family_name(ttype));
                break;
            }
            rc = q35_gguf_writer_add_tensor(wr, t->name, ttype, 2, t->ne, pt->data, err);
            bits2 += L.total_bytes * 8;
            elems2 += (uint64_t)(t->ne[0] * t->ne[1]);
            continue;
        }
        if (!t->data) { /* model.c: converted, then repacked */
            rc = q35_fail(err, Q35_ERR_ARG, "tensor %s is held in R16 order only: load the model with r16 = 0, "
                          "or open it for inspection, to quantize it", t->name);
            break;
        }
        if (!readable(t)) {
            const q35_dtype_info *di = q35_dtype_get(t->dtype);
            rc = q35_fail(err, Q35_ERR_UNSUPPORTED, "tensor %s has type %s, which q35 cannot read", t->name,
                          di ? di->name : "unknown");
            break;
        }
        jobs[i] = (tensor_job){&S, i, t->n_dims == 2 && st <= stage ? ttype : Q35_DTYPE_F32, st};
        if (jobs[i].type != Q35_DTYPE_F32) {
            if (q35_layout_init(&L, ttype, t->ne[0], t->ne[1])) {
                rc = q35_fail(err, Q35_ERR_ARG, "tensor %s: cannot be laid out as %s", t->name,
                              q35_family_name(ttype));
                break;
            }
            bits2 += L.total_bytes * 8;
            elems2 += (uint64_t)(t->ne[0] * t->ne[1]);
        }
        rc = q35_gguf_writer_add_tensor_fill(wr, t->name, jobs[i].type, t->n_dims, t->ne, tensor_fill, &jobs[i], err);
    }
    if (rc == Q35_OK) rc = q35_gguf_writer_write(wr, out_path, err);
    tot->bpw = elems2 ? (double)bits2 / (double)elems2 : 0.0;
    q35_gguf_writer_free(wr);
    free(S.buf);
    free(jobs);
    for (int i = 0; i < n; i++) free(imp[i]);
    free(imp);
    free(types);
    free(fixed);
    return rc;
}

int q35_quantize_model_opts(const q35_model *m, const char *out_path, const q35_quant_options *o,
                            double *bpw, double *rel_rmse, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    q35_quant_totals tot;
    memset(&tot, 0, sizeof tot);
    const int rc = o->calib_docs && !o->calib ? q35_quantize_calibrated(m, out_path, o, &tot, err)
                                               : q35_quantize_stage(m, out_path, o, 0, NULL, &tot, err);
    if (bpw) *bpw = tot.bpw;
    if (rel_rmse) *rel_rmse = tot.ref2 > 0 ? sqrt(tot.err2 / tot.ref2) : 0.0;
    return rc;
}
