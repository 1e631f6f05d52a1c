/* pipe.c — rank 0's side of a q35-mpi job: planning and loading the
 * split, sessions, batches into the pipeline and their logits back, the
 * end. Rank 0 is the first stage's first rank: it runs each request
 * itself before passing it on (job_forward), as every stage's first rank
 * does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dist/mpi/job_internal.h"

/* Runs request msg (len bytes) here and passes it on. */
static int issue(q35_job *j, const void *msg, size_t len, q35_error *err) {
    int rc = job_reserve(&j->rbuf, &j->rcap, len, err);
    if (rc) return rc;
    memcpy(j->rbuf, msg, len);
    j->rlen = len;
    return job_forward(j, err);
}

/* The oldest answer from the last stage (waiting up to the timeout):
 * its message, which the caller frees. */
static int next_result(q35_job *j, job_result **out, q35_error *err) {
    if (!j->results && j->stages > 1) {
        int rc = job_recv_msg(j, job_leader(j, j->stages - 1), TAG_RESULT, j->timeout_s, err);
        if (rc) return rc;
        job_result *r = calloc(1, sizeof *r);
        if (!r || !(r->msg = malloc(j->rlen))) {
            free(r);
            return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        }
        memcpy(r->msg, j->rbuf, j->rlen);
        r->len = j->rlen;
        j->results = j->results_tail = r;
    }
    if (!j->results) return q35_fail(err, Q35_ERR_ARG, "no answer is due");
    *out = j->results;
    j->results = j->results->next;
    if (!j->results) j->results_tail = NULL;
    return Q35_OK;
}

static void free_result(job_result *r) {
    if (r) free(r->msg);
    free(r);
}

/* A request every rank answers with a record: issues it and returns the
 * answer (its records checked: one per rank, the first failure as the
 * error, "rank K: ..."). */
static int ask_all(q35_job *j, const void *msg, size_t len, job_result **out, q35_error *err) {
    if (j->in_flight) return q35_fail(err, Q35_ERR_ARG, "%d batches are still in flight", j->in_flight);
    job_result *r = NULL;
    int rc = issue(j, msg, len, err);
    if (!rc) rc = next_result(j, &r, err);
    if (rc) return rc;
    q35_dist_hdr h;
    memcpy(&h, r->msg, sizeof h);
    const q35_dist_rec *recs = (const q35_dist_rec *)(r->msg + r->len - (size_t)h.n_recs * sizeof(q35_dist_rec));
    if (h.n_recs != j->size) rc = q35_fail(err, Q35_ERR_IO, "%d of the job's %d ranks answered", h.n_recs, j->size);
    for (int i = 0; i < h.n_recs && !rc; i++)
        if (recs[i].status)
            rc = q35_fail(err, recs[i].status, "rank %d: %.*s", recs[i].rank, (int)sizeof recs[i].msg, recs[i].msg);
    if (rc) {
        free_result(r);
        return rc;
    }
    *out = r;
    return Q35_OK;
}

static const q35_dist_rec *records(const job_result *r, int *n) {
    q35_dist_hdr h;
    memcpy(&h, r->msg, sizeof h);
    *n = h.n_recs;
    return (const q35_dist_rec *)(r->msg + r->len - (size_t)h.n_recs * sizeof(q35_dist_rec));
}

static q35_dist_hdr header(uint32_t op) {
    q35_dist_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = Q35_DIST_MAGIC;
    h.version = Q35_DIST_VERSION;
    h.op = op;
    return h;
}

int q35_job_load(q35_job *j, const char *path, const q35_model_params *p, q35_model **m, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    *m = NULL;
    /* the plan, from the file's header (nothing is read but it) */
    q35_model_params ip = *p;
    ip.flags |= Q35_OPEN_INSPECT;
    ip.layer_first = ip.layer_count = ip.tp_rank = ip.tp_size = 0;
    q35_model *im = NULL;
    int rc = q35_model_load_params(&im, path, &ip, err);
    if (rc) return rc;
    int counts[Q35_DIST_MAX_STAGES], *given = NULL;
    if (j->split) {
        const int n = q35_dist_parse_split(j->split, counts, Q35_DIST_MAX_STAGES, err);
        if (n < 0) rc = err->code;
        else if (n != j->stages)
            rc = q35_fail(err, Q35_ERR_ARG, "--split %s gives %d stages; the job has %d (%d ranks%s)", j->split, n,
                          j->stages, j->size, j->tp > 1 ? " over --tp" : "");
        given = counts;
    }
    uint64_t cap[Q35_DIST_MAX_STAGES];
    for (int s = 0; s < j->stages; s++) { /* a stage fits what its tightest rank may fill */
        cap[s] = 0;
        for (int k = 0; k < j->tp; k++) {
            const int64_t v = j->nodes[s * j->tp + k].mem;
            if (v > 0 && (cap[s] == 0 || (uint64_t)v < cap[s])) cap[s] = (uint64_t)v;
            if (v <= 0) {
                cap[s] = 0;
                break;
            }
        }
    }
    q35_dist_hdr h = header(Q35_DIST_LOAD);
    q35_dist_load *ld = calloc(1, sizeof *ld);
    if (!ld) rc = rc ? rc : q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    if (!rc) rc = q35_dist_plan(im, j->stages, j->tp, given, cap, ld->first, ld->count, err);
    q35_model_free(im);
    if (!rc && (strlen(path) >= sizeof ld->path || (p->tokenizer_path && strlen(p->tokenizer_path) >= sizeof ld->tokenizer)))
        rc = q35_fail(err, Q35_ERR_ARG, "%s: the path is too long", path);
    if (!rc && p->convert_type && strlen(p->convert_type) >= sizeof ld->convert_type)
        rc = q35_fail(err, Q35_ERR_ARG, "--convert-type %.32s: no such type", p->convert_type);
    if (rc) {
        free(ld);
        return rc;
    }
    snprintf(ld->path, sizeof ld->path, "%s", path);
    snprintf(ld->tokenizer, sizeof ld->tokenizer, "%s", p->tokenizer_path ? p->tokenizer_path : "");
    snprintf(ld->kernels, sizeof ld->kernels, "%s", p->kernels ? p->kernels : "");
    snprintf(ld->convert_type, sizeof ld->convert_type, "%s", p->convert_type ? p->convert_type : "");
    ld->r16 = p->r16;
    ld->n_stages = j->stages;
    ld->tp = j->tp;
    /* every rank loads its part */
    h.bytes = sizeof *ld;
    uint8_t *msg = malloc(sizeof h + sizeof *ld);
    if (!msg) {
        free(ld);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, ld, sizeof *ld);
    job_result *r = NULL;
    rc = ask_all(j, msg, sizeof h + sizeof *ld, &r, err);
    free(msg);
    if (!rc) { /* every rank read the same file */
        int n;
        const q35_dist_rec *rec = records(r, &n);
        j->weight_bytes = 0;
        for (int i = 0; i < n; i++) {
            j->weight_bytes += rec[i].weight_bytes;
            if (!rc && rec[i].fingerprint != q35_model_fingerprint(j->model))
                rc = q35_fail(err, Q35_ERR_ARG,
                              "rank %d: %s is another file than rank 0's (its header and tensor map differ): give every "
                              "rank the same model", rec[i].rank, path);
        }
    }
    free_result(r);
    if (!rc) {
        int k = snprintf(j->describe, sizeof j->describe, "%d rank%s, %d stage%s%s: layers", j->size,
                         j->size == 1 ? "" : "s", j->stages, j->stages == 1 ? "" : "s",
                         j->tp > 1 ? " of tensor parallel" : "");
        for (int s = 0; s < j->stages && k > 0 && (size_t)k < sizeof j->describe; s++)
            k += snprintf(j->describe + k, sizeof j->describe - (size_t)k, "%s%d-%d", s ? ", " : " ", ld->first[s],
                          ld->first[s] + ld->count[s] - 1);
        if (j->tp > 1 && k > 0 && (size_t)k < sizeof j->describe)
            snprintf(j->describe + k, sizeof j->describe - (size_t)k, " (%d ranks each)", j->tp);
        *m = j->model;
    }
    free(ld);
    return rc;
}

int q35_job_session(q35_job *j, const q35_session_params *p, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    if (p->n_gpu_layers) return q35_fail(err, Q35_ERR_UNSUPPORTED, "q35-mpi runs on CPUs: no GPU layers");
    q35_dist_session ds;
    memset(&ds, 0, sizeof ds);
    ds.n_threads = p->n_threads;
    ds.n_batch = p->n_batch;
    ds.n_ctx = p->n_ctx;
    ds.n_seq = p->n_seq;
    ds.r16 = p->r16;
    ds.gelu_f16 = p->gelu_f16;
    if ((p->kv_type && strlen(p->kv_type) >= sizeof ds.kv_type) || (p->kernels && strlen(p->kernels) >= sizeof ds.kernels))
        return q35_fail(err, Q35_ERR_ARG, "a KV type or kernel set name too long");
    snprintf(ds.kv_type, sizeof ds.kv_type, "%s", p->kv_type ? p->kv_type : "");
    snprintf(ds.kernels, sizeof ds.kernels, "%s", p->kernels ? p->kernels : "");
    q35_dist_hdr h = header(Q35_DIST_SESSION);
    h.bytes = sizeof ds;
    uint8_t msg[sizeof h + sizeof ds];
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, &ds, sizeof ds);
    job_result *r = NULL;
    int rc = ask_all(j, msg, sizeof msg, &r, err);
    free_result(r);
    return rc;
}

/* Batch b as q35_session_decode would check it: all or nothing. */
static int check_batch(const q35_job *j, const q35_batch *b, q35_error *err) {
    const q35_session *s = j->session;
    if (!s) return q35_fail(err, Q35_ERR_ARG, "no session");
    if (!b || b->n_tokens <= 0 || !b->token) return q35_fail(err, Q35_ERR_ARG, "a batch needs at least one token");
    const int n_seq = q35_session_n_seq(s), n_ctx = q35_session_n_ctx(s);
    int *count = calloc((size_t)n_seq, sizeof *count), rc = Q35_OK;
    if (!count) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    for (int t = 0; t < b->n_tokens && !rc; t++) {
        const int q = b->seq ? b->seq[t] : 0;
        if (b->token[t] < 0 || b->token[t] >= j->vocab)
            rc = q35_fail(err, Q35_ERR_ARG, "token %d is out of range [0, %d)", b->token[t], j->vocab);
        else if (q < 0 || q >= n_seq)
            rc = q35_fail(err, Q35_ERR_ARG, "sequence %d is out of range [0, %d)", q, n_seq);
        else
            count[q]++;
    }
    for (int q = 0; q < n_seq && !rc; q++)
        if (count[q] > n_ctx - q35_session_seq_pos(s, q))
            rc = q35_fail(err, Q35_ERR_ARG, "sequence %d: %d tokens do not fit in its context (%d of %d used)", q,
                          count[q], q35_session_seq_pos(s, q), n_ctx);
    free(count);
    return rc;
}

/* Submits b without checking it. */
static int submit(q35_job *j, const q35_batch *b, q35_error *err) {
    q35_dist_hdr h = header(Q35_DIST_DECODE);
    h.n = b->n_tokens;
    h.bytes = q35_dist_batch_bytes(b->n_tokens, 0);
    int rc = job_reserve(&j->rbuf, &j->rcap, sizeof h + h.bytes, err);
    if (rc) return rc;
    memcpy(j->rbuf, &h, sizeof h);
    q35_dist_batch_pack(j->rbuf + sizeof h, b, 0, NULL);
    j->rlen = sizeof h + h.bytes;
    if ((rc = job_forward(j, err))) return rc;
    j->in_flight++;
    return Q35_OK;
}

int q35_job_submit(q35_job *j, const q35_batch *b, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    int rc = check_batch(j, b, err);
    return rc ? rc : submit(j, b, err);
}

int q35_job_collect(q35_job *j, float *out, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    if (!j->in_flight) return q35_fail(err, Q35_ERR_ARG, "no batch is in flight");
    job_result *r = NULL;
    int rc = next_result(j, &r, err);
    if (rc) return rc;
    j->in_flight--;
    q35_dist_hdr h;
    memcpy(&h, r->msg, sizeof h);
    if (h.status) rc = q35_fail(err, h.status, "rank %d: %s", h.rank, h.msg);
    else if (h.op != Q35_DIST_DECODE || h.arg < 0 || h.bytes != (uint64_t)h.arg * (uint64_t)j->vocab * sizeof(float))
        rc = q35_fail(err, Q35_ERR_FORMAT, "an answer that is not a batch's logits");
    else if (h.arg && out)
        memcpy(out, r->msg + sizeof h, (size_t)h.bytes);
    free_result(r);
    return rc;
}

int q35_job_in_flight(const q35_job *j) { return j->in_flight; }
int q35_job_stages(const q35_job *j) { return j->stages; }
const char *q35_job_kv_type(const q35_job *j) { return j->session ? q35_session_kv_type(j->session) : ""; }
int q35_job_n_ctx(const q35_job *j) { return j->session ? q35_session_n_ctx(j->session) : 0; }

int q35_job_decode(q35_job *j, const q35_batch *b, float *out, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    int rc = check_batch(j, b, err);
    if (rc) return rc;
    /* micro-batches of the session's batch size, up to a stage's worth plus
     * one in flight: while later stages work on one, rank 0 computes the next */
    const int step = j->n_batch > 0 ? j->n_batch : 128, window = j->stages + 1;
    int wanted[Q35_DIST_MAX_STAGES + 2], head = 0, tail = 0; /* wanted rows of the batches in flight */
    size_t row = 0;
    for (int t0 = 0; t0 < b->n_tokens || head != tail;) {
        if (t0 < b->n_tokens && j->in_flight < window) {
            const int nb = b->n_tokens - t0 < step ? b->n_tokens - t0 : step;
            const q35_batch part = {nb, b->token + t0, b->seq ? b->seq + t0 : NULL, b->logits ? b->logits + t0 : NULL};
            int w = 0;
            for (int t = 0; part.logits && t < nb; t++) w += part.logits[t] != 0;
            if ((rc = submit(j, &part, err))) return rc;
            wanted[tail] = w;
            tail = (tail + 1) % (Q35_DIST_MAX_STAGES + 2);
            t0 += nb;
            continue;
        }
        if ((rc = q35_job_collect(j, out ? out + row * (size_t)j->vocab : NULL, err))) return rc;
        row += (size_t)wanted[head];
        head = (head + 1) % (Q35_DIST_MAX_STAGES + 2);
    }
    return Q35_OK;
}

static int simple(q35_job *j, uint32_t op, int n, int arg, q35_error *err) {
    q35_dist_hdr h = header(op);
    h.n = n;
    h.arg = arg;
    int rc = issue(j, &h, sizeof h, err);
    if (rc) return rc;
    q35_dist_hdr o; /* rank 0's own answer tells whether the others will manage */
    memcpy(&o, j->obuf, sizeof o);
    return o.status ? q35_fail(err, o.status, "%s", o.msg) : Q35_OK;
}

int q35_job_trim(q35_job *j, int seq, int p, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    if (!j->session) return q35_fail(err, Q35_ERR_ARG, "no session");
    /* checked here first, so no rank fails it */
    if (seq < 0 || seq >= q35_session_n_seq(j->session) || p < 0 || p > q35_session_seq_pos(j->session, seq))
        return q35_session_seq_trim(j->session, seq, p, err);
    return simple(j, Q35_DIST_TRIM, seq, p, err);
}

int q35_job_reset(q35_job *j, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    if (!j->session) return q35_fail(err, Q35_ERR_ARG, "no session");
    return simple(j, Q35_DIST_RESET, 0, 0, err);
}

const char *q35_job_describe(const q35_job *j) { return j->describe; }
uint64_t q35_job_weight_bytes(const q35_job *j) { return j->weight_bytes; }

int q35_job_peak_rss(q35_job *j, uint64_t *rss, uint64_t *weights, uint64_t *kv, int *n, q35_error *err) {
    Q35_ERR_OR_LOCAL(err);
    q35_dist_hdr h = header(Q35_DIST_STATS);
    job_result *r = NULL;
    int rc = ask_all(j, &h, sizeof h, &r, err);
    if (rc) return rc;
    const q35_dist_rec *rec = records(r, n);
    for (int i = 0; i < *n; i++)
        if (rec[i].rank >= 0 && rec[i].rank < j->size) {
            rss[rec[i].rank] = rec[i].peak_rss;
            weights[rec[i].rank] = rec[i].weight_bytes;
            kv[rec[i].rank] = rec[i].kv_bytes;
        }
    *n = j->size;
    free_result(r);
    return Q35_OK;
}

int q35_job_end(q35_job *j, int status) {
    /* every rank leaves: QUIT flows through the stages; rank 0 waits for it
     * to come back (dropping any answers still due) */
    q35_error err = {0};
    q35_dist_hdr h = header(Q35_DIST_QUIT);
    int rc = issue(j, &h, sizeof h, &err);
    for (job_result *r = NULL; !rc;) {
        if ((rc = next_result(j, &r, &err))) break;
        q35_dist_hdr o;
        memcpy(&o, r->msg, sizeof o);
        free_result(r);
        if (o.op == Q35_DIST_QUIT) break;
    }
    if (rc && !status) {
        fprintf(stderr, "q35-mpi: %s\n", err.msg);
        status = 1;
    }
    j->in_flight = 0;
    q35_job_abandon(j);
    return status;
}
