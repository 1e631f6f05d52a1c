/* stage.c — what any rank of a q35-mpi job does with a request: load its
 * part of the model, make its session, evaluate a batch through its layers
 * (with the others of its stage, gathering tensor-parallel slices over the
 * stage's communicator), trim, reset, report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/error.h"
#include "dist/mpi/job_internal.h"

/* Tensor parallel: the stage's ranks exchange their columns of buf
 * (q35_session_params.tp_gather) with one MPI_Allgatherv. */
static int job_gather(void *user, float *buf, int64_t width, int n, const int64_t *lo, q35_error *err) {
    q35_job *j = user;
    const int T = j->tp, me = j->member;
    const int64_t mine = lo[me + 1] - lo[me];
    if ((int64_t)n * width > 1 << 30) return q35_fail(err, Q35_ERR_ARG, "a gather of %lld floats", (long long)n * width);
    int counts[JOB_TP_MAX], displs[JOB_TP_MAX];
    size_t need_send = (size_t)n * (size_t)mine * sizeof(float), need_recv = (size_t)n * (size_t)width * sizeof(float);
    if (job_reserve(&j->gather.send, &j->gather.send_cap, need_send + 4, err) ||
        job_reserve(&j->gather.recv, &j->gather.recv_cap, need_recv + 4, err))
        return err->code;
    float *send = (float *)(void *)j->gather.send, *recv = (float *)(void *)j->gather.recv;
    for (int t = 0; t < n; t++)
        memcpy(send + (size_t)t * (size_t)mine, buf + (size_t)t * (size_t)width + lo[me], (size_t)mine * sizeof *buf);
    for (int k = 0; k < T; k++) {
        counts[k] = n * (int)(lo[k + 1] - lo[k]);
        displs[k] = n * (int)lo[k];
    }
    int rc = MPI_Allgatherv(send, n * (int)mine, MPI_FLOAT, recv, counts, displs, MPI_FLOAT, j->stage_comm);
    if (rc != MPI_SUCCESS) return q35_fail(err, Q35_ERR_IO, "rank %d: MPI_Allgatherv failed", j->rank);
    for (int k = 0; k < T; k++) {
        const int64_t w = lo[k + 1] - lo[k];
        for (int t = 0; t < n; t++)
            memcpy(buf + (size_t)t * (size_t)width + lo[k], recv + displs[k] + (size_t)t * (size_t)w,
                   (size_t)w * sizeof *buf);
    }
    return Q35_OK;
}

/* Starts the answer: the request's header (payload bytes copied after it
 * when keep is set), status as given. */
static int answer(q35_job *j, const q35_dist_hdr *h, const uint8_t *payload, int keep, size_t extra, size_t *len,
                  q35_error *err) {
    const size_t body = keep ? h->bytes : 0;
    int rc = job_reserve(&j->obuf, &j->ocap, sizeof *h + body + extra, err);
    if (rc) return rc;
    q35_dist_hdr o = *h;
    o.bytes = body + extra;
    if (!keep) o.n_recs = 0;
    memcpy(j->obuf, &o, sizeof o);
    if (body) memcpy(j->obuf + sizeof o, payload, body);
    *len = sizeof o + body + extra;
    return Q35_OK;
}

/* Appends this rank's record to the answer in obuf. */
static void add_record(q35_job *j, size_t len, const q35_dist_rec *r) {
    q35_dist_hdr o;
    memcpy(&o, j->obuf, sizeof o);
    memcpy(j->obuf + len - sizeof *r, r, sizeof *r);
    o.n_recs++;
    memcpy(j->obuf, &o, sizeof o);
}

/* Records failure err in the answer's header (when none failed before). */
static void mark_failed(q35_job *j, const q35_error *err) {
    q35_dist_hdr o;
    memcpy(&o, j->obuf, sizeof o);
    if (!o.status) {
        o.status = err->code ? err->code : Q35_ERR_IO;
        o.rank = j->rank;
        snprintf(o.msg, sizeof o.msg, "%.440s", err->msg);
    }
    memcpy(j->obuf, &o, sizeof o);
}

static void drop_model(q35_job *j) {
    q35_session_free(j->session);
    j->session = NULL;
    q35_model_free(j->model);
    j->model = NULL;
}

/* LOAD: this rank's stage of the model, its slice. */
static void do_load(q35_job *j, const q35_dist_load *ld, q35_dist_rec *r, q35_error *err) {
    drop_model(j);
    if (j->mem_error[0]) {
        r->status = q35_fail(err, Q35_ERR_ARG, "%s", j->mem_error);
        return;
    }
    if (ld->n_stages != j->stages || ld->tp != j->tp) {
        r->status = q35_fail(err, Q35_ERR_ARG, "a plan for %d stages of %d, this job has %d of %d", ld->n_stages,
                             ld->tp, j->stages, j->tp);
        return;
    }
    for (int s = 0; s < j->stages; s++) {
        j->first[s] = ld->first[s];
        j->count[s] = ld->count[s];
    }
    q35_model_params p = q35_model_default_params();
    p.tokenizer_path = ld->tokenizer[0] ? ld->tokenizer : NULL;
    p.kernels = ld->kernels[0] ? ld->kernels : NULL;
    p.convert_type = ld->convert_type[0] ? ld->convert_type : NULL;
    p.r16 = ld->r16;
    p.mem_available = j->mem;
    p.layer_first = ld->first[j->stage];
    p.layer_count = ld->count[j->stage];
    p.tp_rank = j->member;
    p.tp_size = j->tp;
    if ((r->status = q35_model_load_params(&j->model, ld->path, &p, err))) return;
    const q35_config *c = q35_model_config(j->model);
    j->dim = c->dim;
    j->vocab = c->vocab_size;
    r->fingerprint = q35_model_fingerprint(j->model);
    r->weight_bytes = q35_model_weight_bytes(j->model);
}

/* SESSION: threads default to this machine's cores over its ranks. */
static void do_session(q35_job *j, const q35_dist_session *ds, q35_dist_rec *r, q35_error *err) {
    q35_session_free(j->session);
    j->session = NULL;
    if (!j->model) {
        r->status = q35_fail(err, Q35_ERR_ARG, "no model loaded");
        return;
    }
    q35_session_params p = q35_session_default_params();
    p.n_threads = ds->n_threads;
    if (p.n_threads <= 0) {
        int here = 0;
        for (int q = 0; q < j->size; q++) here += strcmp(j->nodes[q].host, j->nodes[j->rank].host) == 0;
        const long cores = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = cores > here ? (int)(cores / here) : 1;
    }
    p.n_batch = ds->n_batch;
    p.n_ctx = ds->n_ctx;
    p.n_seq = ds->n_seq;
    p.r16 = ds->r16;
    p.gelu_f16 = ds->gelu_f16;
    p.kv_type = ds->kv_type[0] ? ds->kv_type : NULL;
    p.kernels = ds->kernels[0] ? ds->kernels : NULL;
    p.tp_gather = job_gather;
    p.tp_user = j;
    r->status = q35_session_new_params(&j->session, j->model, &p, err);
    if (!r->status) j->n_batch = p.n_batch;
}

/* DECODE: the batch through this rank's layers; the answer carries the
 * batch and the hidden states on, or the wanted logits from the last
 * stage. */
static size_t do_decode(q35_job *j, const q35_dist_hdr *h, const uint8_t *payload, q35_error *err) {
    size_t len = 0;
    const int last = j->stage == j->stages - 1;
    q35_dist_batch_view v;
    const char *why = NULL;
    if (h->status) return answer(j, h, payload, 0, 0, &len, err) ? 0 : len; /* failed before: pass the word on */
    if (!j->session) q35_fail(err, Q35_ERR_ARG, "rank %d: no session", j->rank);
    else if (q35_dist_batch_view_of(payload, h->bytes, h->n, j->stage > 0 ? j->dim : 0, &v, &why))
        q35_fail(err, Q35_ERR_FORMAT, "rank %d: %s", j->rank, why);
    else {
        const size_t n = (size_t)h->n, out_floats = last ? (size_t)v.n_wanted * (size_t)j->vocab : n * (size_t)j->dim;
        if (job_reserve(&j->x, &j->xcap, out_floats * sizeof(float) + 4, err)) return 0;
        float *x = (float *)(void *)j->x;
        if (q35_session_decode_layers(j->session, &v.b, v.x, last ? NULL : x, last ? x : NULL, err) == Q35_OK) {
            q35_dist_hdr o = *h;
            o.n_recs = 0;
            if (last) {
                o.arg = v.n_wanted;
                if (answer(j, &o, NULL, 0, out_floats * sizeof(float), &len, err)) return 0;
                memcpy(j->obuf + sizeof o, j->x, out_floats * sizeof(float));
            } else {
                const size_t bytes = q35_dist_batch_bytes(h->n, j->dim);
                if (answer(j, &o, NULL, 0, bytes, &len, err)) return 0;
                q35_dist_batch_pack(j->obuf + sizeof o, &v.b, j->dim, x);
            }
            return len;
        }
    }
    if (answer(j, h, payload, 0, 0, &len, err)) return 0;
    mark_failed(j, err);
    return len;
}

/* The bytes of this rank's KV cache: its layers, the KV heads its slice
 * reads, every sequence's context. */
static uint64_t kv_bytes(const q35_job *j) {
    if (!j->session || !j->model) return 0;
    const q35_config *c = q35_model_config(j->model);
    const int T = j->tp, kv = c->n_kv_heads;
    uint64_t heads = (uint64_t)kv; /* a slice's query heads read about kv / T of them (one where T > kv) */
    if (T > 1) heads = T >= kv ? 1 : (uint64_t)(kv + T - 1) / (uint64_t)T;
    const uint64_t row = q35_kv_row_bytes(q35_session_kv_type(j->session), c->head_dim);
    return 2 * row * (uint64_t)j->count[j->stage] * heads * (uint64_t)q35_session_n_ctx(j->session) *
           (uint64_t)q35_session_n_seq(j->session);
}

size_t job_handle(q35_job *j, const q35_dist_hdr *h, const uint8_t *payload, q35_error *err) {
    size_t len = 0;
    q35_dist_rec r = {.rank = j->rank};
    q35_error e = {0};
    switch (h->op) {
    case Q35_DIST_LOAD:
    case Q35_DIST_SESSION:
    case Q35_DIST_STATS: {
        const size_t base = h->op == Q35_DIST_LOAD ? sizeof(q35_dist_load)
                            : h->op == Q35_DIST_SESSION ? sizeof(q35_dist_session) : 0;
        if (h->bytes != base + (size_t)h->n_recs * sizeof(q35_dist_rec)) {
            q35_fail(err, Q35_ERR_FORMAT, "rank %d: a request of the wrong size", j->rank);
            return 0;
        }
        if (h->op == Q35_DIST_LOAD) {
            q35_dist_load ld;
            memcpy(&ld, payload, sizeof ld);
            ld.path[sizeof ld.path - 1] = ld.tokenizer[sizeof ld.tokenizer - 1] = ld.kernels[sizeof ld.kernels - 1] = 0;
            ld.convert_type[sizeof ld.convert_type - 1] = 0;
            do_load(j, &ld, &r, &e);
        } else if (h->op == Q35_DIST_SESSION) {
            q35_dist_session ds;
            memcpy(&ds, payload, sizeof ds);
            ds.kv_type[sizeof ds.kv_type - 1] = ds.kernels[sizeof ds.kernels - 1] = 0;
            do_session(j, &ds, &r, &e);
        } else {
            struct rusage ru;
            r.peak_rss = getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
            r.weight_bytes = j->model ? q35_model_weight_bytes(j->model) : 0;
            r.kv_bytes = kv_bytes(j);
        }
        if (r.status) snprintf(r.msg, sizeof r.msg, "%.440s", e.msg);
        if (answer(j, h, payload, 1, sizeof r, &len, err)) return 0;
        add_record(j, len, &r);
        return len;
    }
    case Q35_DIST_DECODE:
        return do_decode(j, h, payload, err);
    case Q35_DIST_TRIM:
    case Q35_DIST_RESET:
        if (answer(j, h, payload, 0, 0, &len, err)) return 0;
        if (!j->session) q35_fail(&e, Q35_ERR_ARG, "rank %d: no session", j->rank);
        else if (h->op == Q35_DIST_TRIM) q35_session_seq_trim(j->session, h->n, h->arg, &e);
        else q35_session_reset(j->session);
        if (e.code) mark_failed(j, &e);
        return len;
    case Q35_DIST_QUIT:
        drop_model(j);
        return answer(j, h, payload, 0, 0, &len, err) ? 0 : len;
    default:
        q35_fail(err, Q35_ERR_FORMAT, "rank %d: a request of an unknown kind", j->rank);
        return 0;
    }
}
