/* cmd_perplexity.c — `q35 perplexity`: the text's documents (separated by
 * blank lines) are each scored as BOS + their tokens, truncated at the
 * context, every next-token prediction counted. Documents are shared out
 * over threads, one single-threaded session each (they all read one
 * model), and their results kept per position in document order, so
 * nothing depends on the thread count.
 *
 * --kl-divergence-base FILE saves the model's log-probabilities at every
 * scored position (kld.h); --kl-divergence FILE compares this model's
 * against them and prints llama-perplexity's KL-divergence statistics. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/engine.h"
#include "cli/kld.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 perplexity -m MODEL -f TEXT [--tokenizer FILE] [-t THREADS] [--chunks N]\n"
            "                      [--ctx N] [--kl-divergence-base FILE [--kl-top-k K] | --kl-divergence FILE]\n"
            "                      [--kv-type T] [--convert-type T]\n"
            "  --chunks N: score only the first N documents\n"
            "  --ctx N: truncate documents at N tokens (at most the model's context; default: it)\n"
            "  --kl-divergence-base FILE: save this model's log-probs at every scored position\n"
            "  --kl-top-k K: keep the top K of them and the rest's mass (default %d; 0: all)\n"
            "  --kl-divergence FILE: compare this model against a saved base (same text, --chunks, --ctx)\n"
            "  --kv-type T: KV cache f16, f32, q8 or auto (default auto, see q35 run)\n"
            "  prints tokens scored, mean negative log-likelihood (nats/token), perplexity\n"
            CLI_CONVERT_HELP,
            KLD_DEFAULT_K);
}

static void progress(int done, int total, double t0) {
    static const int width = 30;
    int filled = total ? done * width / total : width;
    fprintf(stderr, "\r[%.*s%*s] %3d%% %d/%d documents %.0fs", filled,
            "==============================", width - filled, "",
            total ? done * 100 / total : 100, done, total, cli_now() - t0);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* Prints the bits per weight of the 2-D tensors as the file stores them:
 * all of them, then per type (most weights first). */
static void print_bpw(const q35_model *m) {
    enum { MAX_TYPES = 16 };
    const char *type[MAX_TYPES];
    uint64_t bytes[MAX_TYPES] = {0}, elems[MAX_TYPES] = {0}, all_b = 0, all_e = 0;
    int nt = 0;
    for (int i = 0; i < q35_model_n_tensors(m); i++) {
        q35_tensor_desc d;
        if (q35_model_tensor(m, i, &d) || d.n_dims < 2) continue;
        uint64_t e = 1;
        for (int k = 0; k < d.n_dims; k++) e *= (uint64_t)d.ne[k];
        int t = 0;
        while (t < nt && strcmp(type[t], d.type)) t++;
        if (t == nt && nt < MAX_TYPES) type[nt++] = d.type;
        if (t < nt) bytes[t] += d.nbytes, elems[t] += e;
        all_b += d.nbytes, all_e += e;
    }
    if (!all_e) return;
    printf("2-D tensors: %.4f bits per weight (", 8.0 * (double)all_b / (double)all_e);
    for (int shown = 0; shown < nt; shown++) {
        int best = -1;
        for (int t = 0; t < nt; t++)
            if (elems[t] && (best < 0 || elems[t] > elems[best])) best = t;
        printf("%s%s %.4f bpw x %llu", shown ? ", " : "", type[best],
               8.0 * (double)bytes[best] / (double)elems[best], (unsigned long long)elems[best]);
        elems[best] = 0;
    }
    printf(")\n");
}

/* Everything the threads share. */
typedef struct ppl_job {
    const char *C, *base_path;
    const q35_model *m;
    int V, n_docs, mode; /* mode: 0 plain, 1 write a base, 2 compare */
    int *const *ids;
    const int *lens;
    const uint64_t *start; /* first position of each document */
    double *nll;           /* per document */
    kld_pos *pos;          /* per position (compare) */
    kld_header h;
    int fd;                /* the base file being compared against */
    q35_outfile *out;      /* the base file being written */
} ppl_job;

/* Scores the b positions from i0 of document d whose logits (rows of V)
 * came back: adds to its negative log-likelihood in position order, and
 * writes or compares their KL-divergence records. 0, or -1 with msg. */
static int score_chunk(const ppl_job *J, kld_scratch *ks, const float *logits, uint8_t *recs, int d, int i0, int b,
                       char *msg, size_t cap) {
    const int *ids = J->ids[d];
    const uint64_t p0 = J->start[d] + (uint64_t)i0;
    const size_t rb = J->h.rec_bytes, bytes = (size_t)b * rb;
    const off_t off = (off_t)(KLD_HEADER_BYTES + p0 * rb);
    if (J->mode == 2 && pread(J->fd, recs, bytes, off) != (ssize_t)bytes)
        return snprintf(msg, cap, "%s: cannot read: %s", J->base_path, strerror(errno)), -1;
    double sum = J->nll[d];
    for (int i = 0; i < b; i++) {
        const int next = ids[i0 + i + 1];
        kld_log_softmax(ks, logits + (size_t)i * (size_t)J->V);
        sum -= ks->lp[next];
        const char *why = NULL;
        if (J->mode == 1) {
            kld_make_record(ks, next, recs + (size_t)i * rb);
        } else if (J->mode == 2 &&
                   kld_compare_record(ks, recs + (size_t)i * rb, next, &J->pos[p0 + (uint64_t)i], &why)) {
            return snprintf(msg, cap, "%s: position %llu: %s", J->base_path, (unsigned long long)(p0 + (uint64_t)i),
                            why), -1;
        }
    }
    J->nll[d] = sum;
    q35_error err = {0};
    if (J->mode == 1 && q35_outfile_pwrite(J->out, recs, bytes, (uint64_t)off, &err))
        return snprintf(msg, cap, "%s", err.msg), -1;
    return 0;
}

/* What the drivers share: the next document to take, progress. */
typedef struct drive_state {
    int next_doc, done_docs, failed;
    double t0, last_shown;
} drive_state;

/* A document is scored to its end. */
static void doc_done(drive_state *st, int n_docs) {
#pragma omp critical(ppl_progress)
    {
        st->done_docs++;
        double now = cli_now();
        if (now - st->last_shown > 0.25 || st->done_docs == n_docs) {
            progress(st->done_docs, n_docs, st->t0);
            st->last_shown = now;
        }
    }
}

/* One driver: takes documents in turn (each scored as BOS + its tokens,
 * from position 0 of sequence 0), keeps up to the engine's depth of
 * chunks in flight (q35-mpi: while later ranks work on a chunk, rank 0
 * computes the next, of this document or the next ones) and scores each
 * as its logits come back. Returns 0, or -1 with msg. */
static int drive(const ppl_job *J, cli_engine *e, drive_state *st, kld_scratch *ks, float *logits, uint8_t *recs,
                 const uint8_t *want, int chunk, char *msg, size_t cap) {
    enum { MAX_DEPTH = 64 };
    struct { int d, i0, b; } q[MAX_DEPTH];
    int head = 0, n = 0, d = -1, i0 = 0, rc = 0;
    const int depth = cli_engine_depth(e) < MAX_DEPTH ? cli_engine_depth(e) : MAX_DEPTH;
    q35_error err = {0};
    for (;;) {
        while (n < depth && d < J->n_docs) { /* fill the pipeline */
            if (d < 0 || i0 >= J->lens[d] - 1) {
                int take;
#pragma omp atomic capture
                take = st->next_doc++;
                int stop;
#pragma omp atomic read
                stop = st->failed;
                d = take < J->n_docs && !stop ? take : J->n_docs;
                if (d == J->n_docs) break;
                i0 = 0;
                J->nll[d] = 0.0;
                if (cli_engine_trim(e, 0, 0, &err)) return snprintf(msg, cap, "%s", err.msg), -1;
                if (J->lens[d] < 2) { /* nothing to predict */
                    doc_done(st, J->n_docs);
                    continue;
                }
            }
            const int b = J->lens[d] - 1 - i0 < chunk ? J->lens[d] - 1 - i0 : chunk;
            const q35_batch bt = {b, J->ids[d] + i0, NULL, want};
            if (cli_engine_submit(e, &bt, &err)) return snprintf(msg, cap, "%s", err.msg), -1;
            q[(head + n) % MAX_DEPTH].d = d, q[(head + n) % MAX_DEPTH].i0 = i0, q[(head + n) % MAX_DEPTH].b = b;
            n++;
            i0 += b;
        }
        if (n == 0) return 0;
        if (cli_engine_collect(e, logits, &err)) return snprintf(msg, cap, "%s", err.msg), -1;
        const int cd = q[head].d, ci0 = q[head].i0, cb = q[head].b;
        head = (head + 1) % MAX_DEPTH;
        n--;
        if ((rc = score_chunk(J, ks, logits, recs, cd, ci0, cb, msg, cap))) return rc;
        if (ci0 + cb == J->lens[cd] - 1) doc_done(st, J->n_docs);
    }
}

/* Opens the base and checks it against this run; prints and returns -1 if
 * it does not fit. */
static int open_base(ppl_job *J, int ctx, uint64_t n_pos, uint64_t hash) {
    const char *C = J->C, *p = J->base_path;
    J->fd = open(p, O_RDONLY);
    if (J->fd < 0) return cli_error(C, "%s: cannot open: %s", p, strerror(errno)), -1;
    struct stat st;
    uint8_t hb[KLD_HEADER_BYTES];
    const char *why = NULL;
    if (fstat(J->fd, &st) || !S_ISREG(st.st_mode)) return cli_error(C, "%s: not a regular file", p), -1;
    if (st.st_size < KLD_HEADER_BYTES || pread(J->fd, hb, sizeof hb, 0) != (ssize_t)sizeof hb)
        return cli_error(C, "%s: too short for a KL-divergence base file (%lld bytes)", p,
                         (long long)st.st_size), -1;
    kld_header *h = &J->h;
    if (kld_header_decode(hb, h, &why)) return cli_error(C, "%s: %s", p, why), -1;
    if (h->vocab != (uint32_t)J->V)
        return cli_error(C, "%s: made with a vocabulary of %u tokens, this model has %d", p, h->vocab, J->V), -1;
    if (h->n_docs != (uint32_t)J->n_docs)
        return cli_error(C, "%s: holds %u documents, this run scores %d (same text and --chunks?)", p,
                         h->n_docs, J->n_docs), -1;
    if (h->ctx != (uint32_t)ctx)
        return cli_error(C, "%s: scored with a context of %u tokens, this run %d (--ctx)", p, h->ctx, ctx), -1;
    if (h->n_pos != n_pos || h->hash != hash)
        return cli_error(C, "%s: made from other tokens (%llu positions, this run %llu; another text or "
                         "tokenizer)", p, (unsigned long long)h->n_pos, (unsigned long long)n_pos), -1;
    uint64_t want = KLD_HEADER_BYTES + h->n_pos * h->rec_bytes;
    if ((uint64_t)st.st_size != want)
        return cli_error(C, "%s: %s: %lld bytes, its header says %llu", p,
                         (uint64_t)st.st_size < want ? "truncated" : "trailing bytes",
                         (long long)st.st_size, (unsigned long long)want), -1;
    /* every record checked before the long work */
    const size_t per = (1u << 20) / h->rec_bytes + 1;
    uint8_t *buf = malloc(per * h->rec_bytes);
    if (!buf) return cli_error(C, "out of memory"), -1;
    for (uint64_t i = 0; i < h->n_pos; i += per) {
        size_t n = h->n_pos - i < per ? (size_t)(h->n_pos - i) : per, bytes = n * h->rec_bytes;
        if (pread(J->fd, buf, bytes, (off_t)(KLD_HEADER_BYTES + i * h->rec_bytes)) != (ssize_t)bytes) {
            free(buf);
            return cli_error(C, "%s: cannot read: %s", p, strerror(errno)), -1;
        }
        for (size_t r = 0; r < n; r++)
            if (kld_check_record(buf + r * h->rec_bytes, h->vocab, h->k, &why)) {
                free(buf);
                return cli_error(C, "%s: position %llu: %s", p, (unsigned long long)(i + r), why), -1;
            }
    }
    free(buf);
    return 0;
}

/* Writes the header and puts the base in place (q35_outfile_commit); -1
 * printed. */
static int finish_base(ppl_job *J) {
    uint8_t hb[KLD_HEADER_BYTES];
    kld_header_encode(&J->h, hb);
    q35_error err = {0};
    int rc = q35_outfile_pwrite(J->out, hb, sizeof hb, 0, &err);
    if (!rc) rc = q35_outfile_commit(J->out, &err);
    else q35_outfile_abort(J->out);
    J->out = NULL;
    return rc ? cli_error(J->C, "%s", err.msg), -1 : 0;
}

int cmd_perplexity(cli_job *job, int argc, char **argv) {
    const char *C = "perplexity";
    const char *model_path = NULL, *tok_path = NULL, *text_path = NULL, *base_out = NULL, *base_in = NULL;
    const char *convert = NULL, *kv_type = NULL;
    long threads = 0, chunks = 0, ctx_req = 0, top_k = KLD_DEFAULT_K;
    int top_k_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model_path = v; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); tok_path = v; }
        else if (!strcmp(a, "--convert-type")) { VAL(); convert = v; }
        else if (!strcmp(a, "--kv-type")) { VAL(); if (cli_kv_type(C, a, v)) return 1; kv_type = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); text_path = v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (cli_int(C, a, v, 1, 1024, &threads)) return 1; }
        else if (!strcmp(a, "--chunks")) { VAL(); if (cli_int(C, a, v, 1, 1L << 30, &chunks)) return 1; }
        else if (!strcmp(a, "--ctx")) { VAL(); if (cli_int(C, a, v, 2, 1L << 24, &ctx_req)) return 1; }
        else if (!strcmp(a, "--kl-top-k")) { VAL(); if (cli_int(C, a, v, 0, 1L << 24, &top_k)) return 1; top_k_given = 1; }
        else if (!strcmp(a, "--kl-divergence-base")) { VAL(); base_out = v; }
        else if (!strcmp(a, "--kl-divergence")) { VAL(); base_in = v; }
        else return cli_error(C, "unknown flag '%s' (see q35 perplexity --help)", a);
#undef VAL
    }
    char found[4096];
    if (!model_path) {
        if (cli_default_model(found, sizeof found) != 0)
            return cli_error(C, "no model: give -m FILE");
        model_path = found;
    }
    if (!text_path) return cli_error(C, "no text: give -f FILE");
    if (base_out && base_in) return cli_error(C, "give --kl-divergence-base or --kl-divergence, not both");
    if (top_k_given && !base_out) return cli_error(C, "--kl-top-k needs --kl-divergence-base");
    if (base_out && cli_check_output(C, base_out, 1)) return 1;
    if (threads <= 0) threads = cli_cores();

    q35_model *m = NULL;
    char *text = NULL;
    size_t text_len = 0;
    cli_doc *docs = NULL;
    int **ids = NULL, *lens = NULL;
    uint64_t *start = NULL;
    kld_pos *pos = NULL;
    ppl_job J = {.C = C, .fd = -1, .mode = base_out ? 1 : base_in ? 2 : 0};
    J.base_path = base_out ? base_out : base_in;
    int status = 1, n_docs = 0;
    q35_session_params sp;
    if (cli_session_params(C, &sp) || cli_engine_load(job, C, model_path, tok_path, convert, &m)) goto done;
    if (kv_type) sp.kv_type = kv_type;
    /* one single-threaded engine per thread (q35), or one engine whose
     * ranks each run the threads (q35-mpi) */
    const int drivers = cli_engine_shared(job) ? (int)threads : 1;
    sp.n_threads = cli_engine_shared(job) ? 1 : (int)threads;
    const q35_config *cfg = q35_model_config(m);
    const int V = cfg->vocab_size;
    int ctx = cfg->seq_len;
    if (ctx_req > ctx) {
        cli_error(C, "--ctx %ld: the model's context is %d tokens", ctx_req, ctx);
        goto done;
    }
    if (ctx_req) ctx = (int)ctx_req;
    sp.n_ctx = ctx; /* each document, truncated at ctx, fits its session */
    if (cli_read_text(C, text_path, &text, &text_len)) goto done;
    n_docs = cli_split_docs(C, text_path, text, text_len, &docs);
    if (n_docs <= 0) goto done;
    if (chunks > 0 && chunks < n_docs) n_docs = (int)chunks;
    ids = calloc((size_t)n_docs, sizeof *ids);
    lens = calloc((size_t)n_docs, sizeof *lens);
    start = calloc((size_t)n_docs + 1, sizeof *start);
    J.nll = calloc((size_t)n_docs, sizeof *J.nll);
    if (!ids || !lens || !start || !J.nll) {
        cli_error(C, "out of memory");
        goto done;
    }
    int failed = 0;
#pragma omp parallel for num_threads((int)threads) schedule(dynamic, 8)
    for (int d = 0; d < n_docs; d++) {
        q35_error terr = {0};
        if (failed) continue;
        if (q35_tokenize(m, docs[d].text, docs[d].len, 1, &ids[d], &lens[d], &terr)) {
#pragma omp critical
            { if (!failed) cli_error(C, "%s", terr.msg); failed = 1; }
        } else if (lens[d] > ctx) {
            lens[d] = ctx;
        }
    }
    if (failed) goto done;
    for (int d = 0; d < n_docs; d++) start[d + 1] = start[d] + (uint64_t)(lens[d] > 1 ? lens[d] - 1 : 0);
    const uint64_t n_pos = start[n_docs];
    if (n_pos == 0) {
        cli_error(C, "%s: no token to predict (every document is a single token)", text_path);
        goto done;
    }
    J.m = m, J.V = V, J.n_docs = n_docs, J.ids = ids, J.lens = lens, J.start = start;
    if (J.mode) {
        uint64_t hash = kld_token_hash(n_docs, ids, lens);
        if (!hash) {
            cli_error(C, "out of memory");
            goto done;
        }
        if (J.mode == 2) {
            if (open_base(&J, ctx, n_pos, hash)) goto done;
            if (!(pos = J.pos = calloc(n_pos, sizeof *pos))) {
                cli_error(C, "out of memory");
                goto done;
            }
        } else {
            J.h = (kld_header){.vocab = (uint32_t)V, .k = kld_choose_k((uint32_t)V, (uint32_t)top_k),
                               .n_docs = (uint32_t)n_docs, .ctx = (uint32_t)ctx, .n_pos = n_pos, .hash = hash};
            J.h.rec_bytes = (uint32_t)kld_record_bytes((uint32_t)V, J.h.k);
            /* records are written where they belong as threads finish
             * documents: a regular file, whose size is known */
            const q35_outfile_opts oo = {.seeks = 1, .size = KLD_HEADER_BYTES + n_pos * J.h.rec_bytes};
            q35_error oerr = {0};
            if (q35_outfile_open(&J.out, base_out, &oo, &oerr)) {
                cli_error(C, "%s", oerr.msg);
                goto done;
            }
        }
    }

    /* logits for up to `chunk` positions at a time: at most 16 MB a thread */
    int chunk = (int)((4u << 20) / (unsigned)V);
    if (chunk > ctx) chunk = ctx;
    if (chunk < 16) chunk = 16;
    drive_state st = {.t0 = cli_now()};
    double t0 = st.t0;
#pragma omp parallel num_threads(drivers)
    {
        cli_engine *e = NULL;
        q35_error terr = {0};
        char msg[600];
        kld_scratch ks = {0};
        float *logits = malloc((size_t)chunk * (size_t)V * sizeof *logits);
        uint8_t *recs = J.mode ? malloc((size_t)chunk * J.h.rec_bytes) : NULL, *want = malloc((size_t)chunk);
        int bad = kld_scratch_init(&ks, (uint32_t)V, J.h.k) || !logits || !want || (J.mode && !recs);
        if (bad) snprintf(msg, sizeof msg, "out of memory");
        else if (cli_engine_open(job, m, &sp, &e, &terr)) bad = 1, snprintf(msg, sizeof msg, "%s", terr.msg);
        if (!bad) {
            memset(want, 1, (size_t)chunk);
            bad = drive(&J, e, &st, &ks, logits, recs, want, chunk, msg, sizeof msg);
        }
        if (bad) {
#pragma omp critical
            {
                int was;
#pragma omp atomic read
                was = st.failed;
                if (!was) cli_error(C, "%s", msg);
#pragma omp atomic write
                st.failed = 1;
            }
        }
        cli_engine_close(e);
        kld_scratch_free(&ks);
        free(logits);
        free(recs);
        free(want);
    }
    failed = st.failed;
    if (failed) goto done;
    double total = 0.0;
    for (int d = 0; d < n_docs; d++) total += J.nll[d];
    double mean = total / (double)n_pos, secs = cli_now() - t0;
    if (J.mode == 1 && finish_base(&J)) goto done;
    print_bpw(m);
    printf("context: %d\ndocuments: %d\ntokens scored: %llu\nmean NLL: %.6f nats/token\nperplexity: %.4f\n",
           ctx, n_docs, (unsigned long long)n_pos, mean, exp(mean));
    fprintf(stderr, "%.1f s, %.0f tokens/s with %ld threads\n", secs, (double)n_pos / secs, threads);
    if (J.mode == 1) {
        fprintf(stderr, "saved %s: %llu positions, %s, %.1f MB\n", base_out, (unsigned long long)n_pos,
                J.h.k ? "top-k log-probs + tail" : "whole distributions",
                (KLD_HEADER_BYTES + (double)n_pos * J.h.rec_bytes) / 1e6);
    }
    if (J.mode == 2 && kld_report(pos, n_pos, J.h.k, base_in)) {
        cli_error(C, "out of memory");
        goto done;
    }
    status = 0;
done:
    if (J.fd >= 0) close(J.fd);
    q35_outfile_abort(J.out);
    for (int d = 0; ids && d < n_docs; d++) free(ids[d]);
    free(ids);
    free(lens);
    free(start);
    free(J.nll);
    free(pos);
    free(docs);
    free(text);
    cli_engine_unload(job, m);
    return status;
}
