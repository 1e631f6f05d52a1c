/* test_session.c — sessions holding several sequences, and models holding
 * some of the layers (pipeline stages), against plain sessions.
 *
 * Several sequences: tokens of 3 sequences interleaved in batches of
 * mixed sizes (q35_session_decode) give each sequence the logits a session
 * of its own gives, bit for bit (fp32, and Q3_5 in R16 order where the
 * CPU runs it; within rounding where it reads rows, as batches do), and
 * trimming a sequence re-runs its tail identically. Stages: a model split
 * after layer k into two stages (q35_model_params.layer_first/count),
 * hidden states handed from one to the other, gives the whole model's
 * logits bit for bit, for every k; bad ranges and calls fail with one
 * line. Tensor parallel: the model sliced over 2 to 4 threads (slices
 * q35_model_params.tp_rank/tp_size, a barrier-based gather standing in
 * for MPI's allgather) gives the whole model's logits bit for bit, with
 * query heads in whole KV groups and, past the KV heads, KV heads shared. */
#include <pthread.h>
#include <unistd.h>

#include "harness.h"
#include "kernels/kernels.h"
#include "q35.h"

#define N 40

/* Do batches equal token by token bit for bit here? fp32 always; Q3_5
 * where the matrices run in R16 order. */
static int exact_here(int quantized) {
    q35_kernels k;
    return !quantized || (q35_kernels_select(&k, NULL) == 0 && k.r16_pack);
}

/* Logits of ids in a fresh session of m, one token at a time. */
static float *alone(const q35_model *m, const int *ids, int n) {
    const int V = q35_model_config(m)->vocab_size;
    float *out = malloc((size_t)n * (size_t)V * sizeof *out);
    q35_session *s = NULL;
    q35_error err = {0};
    CHECK(q35_session_new(&s, m, 2, &err) == 0);
    for (int t = 0; s && t < n; t++) {
        const float *lg;
        CHECK(q35_session_eval(s, ids[t], &lg, &err) == 0);
        memcpy(out + (size_t)t * V, lg, (size_t)V * sizeof *lg);
    }
    q35_session_free(s);
    return out;
}

static double diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

static void check_sequences(const char *label, const q35_model *m, int exact) {
    const int V = q35_model_config(m)->vocab_size;
    int ids[3][N];
    for (int q = 0; q < 3; q++)
        for (int t = 0; t < N; t++) ids[q][t] = t == 0 ? 1 : 3 + (t * 37 + q * 101) % (V - 3);
    float *ref[3];
    for (int q = 0; q < 3; q++) ref[q] = alone(m, ids[q], N);
    q35_session_params sp = q35_session_default_params();
    sp.n_seq = 3;
    sp.n_threads = 2;
    q35_session *s = NULL;
    q35_error err = {0};
    CHECKF(q35_session_new_params(&s, m, &sp, &err) == 0, "%s: %s", label, err.msg);
    if (!s) return;
    float *got[3];
    for (int q = 0; q < 3; q++) got[q] = malloc((size_t)N * (size_t)V * sizeof(float));
    /* steps mixing a long prompt chunk of one sequence with single tokens of the others */
    int next[3] = {0, 0, 0};
    const int sizes[] = {7, 1, 12, 3, 1, 9, 5, 20, 2, 11};
    float *out = malloc((size_t)64 * (size_t)V * sizeof *out);
    for (int step = 0; next[0] < N || next[1] < N || next[2] < N; step++) {
        int tok[64], seq[64], n = 0;
        uint8_t want[64];
        for (int q = 0; q < 3; q++) {
            const int take = q == step % 3 ? sizes[step % 10] : 1;
            for (int k = 0; k < take && next[q] < N; k++) {
                tok[n] = ids[q][next[q]++];
                seq[n] = q;
                want[n++] = 1;
            }
        }
        const q35_batch b = {n, tok, seq, want};
        int rc = q35_session_decode(s, &b, out, &err);
        CHECKF(rc == 0, "%s: decode: %s", label, err.msg);
        if (rc) break;
        int seen[3];
        for (int q = 0; q < 3; q++) seen[q] = q35_session_seq_pos(s, q);
        for (int t = n - 1; t >= 0; t--) { /* the rows, back to each token's position */
            const int q = seq[t], p = --seen[q];
            memcpy(got[q] + (size_t)p * V, out + (size_t)t * V, (size_t)V * sizeof(float));
        }
    }
    double worst = 0;
    for (int q = 0; q < 3; q++) worst = fmax(worst, diff(got[q], ref[q], (size_t)N * V));
    CHECKF(exact ? worst == 0 : worst < 1e-2, "%s: 3 sequences batched together differ from alone by %.3g", label,
           worst);
    /* trimming sequence 1 back to 30 and running its tail again */
    CHECK(q35_session_seq_trim(s, 1, 30, &err) == 0 && q35_session_seq_pos(s, 1) == 30);
    uint8_t all[N];
    memset(all, 1, sizeof all);
    int seq1[N];
    for (int t = 0; t < N; t++) seq1[t] = 1;
    const q35_batch tail = {N - 30, ids[1] + 30, seq1, all};
    CHECK(q35_session_decode(s, &tail, out, &err) == 0);
    CHECKF(diff(out, ref[1] + (size_t)30 * V, (size_t)(N - 30) * V) <= (exact ? 0 : 1e-2),
           "%s: a trimmed sequence's tail differs", label);
    /* bad batches: nothing evaluated */
    const int bad_tok[2] = {1, V}, bad_seq[2] = {0, 3};
    const q35_batch b1 = {2, bad_tok, NULL, NULL}, b2 = {2, ids[0], bad_seq, NULL};
    const int before = q35_session_seq_pos(s, 0);
    CHECK(q35_session_decode(s, &b1, out, &err) == Q35_ERR_ARG && strstr(err.msg, "out of range"));
    CHECK(q35_session_decode(s, &b2, out, &err) == Q35_ERR_ARG && strstr(err.msg, "sequence 3"));
    CHECK(q35_session_seq_pos(s, 0) == before);
    CHECK(q35_session_seq_trim(s, 0, before + 1, &err) == Q35_ERR_ARG);
    CHECK(q35_session_seq_trim(s, 5, 0, NULL) == Q35_ERR_ARG);
    int full[2] = {1, 1};
    q35_session_seq_trim(s, 2, 0, NULL);
    for (int k = 0; k < q35_session_n_ctx(s); k++) {
        const q35_batch one = {1, full, (const int[]){2}, NULL};
        if (q35_session_decode(s, &one, NULL, &err)) break;
    }
    const q35_batch over = {1, full, (const int[]){2}, NULL};
    CHECK(q35_session_decode(s, &over, NULL, &err) == Q35_ERR_ARG && strstr(err.msg, "sequence 2"));
    printf("%s: 3 sequences in mixed batches: largest difference to alone %.3g\n", label, worst);
    for (int q = 0; q < 3; q++) {
        free(ref[q]);
        free(got[q]);
    }
    free(out);
    q35_session_free(s);
}

static q35_model *load_range(const char *path, int first, int count, q35_error *err) {
    q35_model_params mp = q35_model_default_params();
    mp.layer_first = first;
    mp.layer_count = count;
    q35_model *m = NULL;
    q35_model_load_params(&m, path, &mp, err);
    return m;
}

static void check_stages(const char *label, const char *path, const q35_model *whole) {
    const q35_config *c = q35_model_config(whole);
    const int V = c->vocab_size, D = c->dim, L = c->n_layers;
    int ids[N];
    for (int t = 0; t < N; t++) ids[t] = t == 0 ? 1 : 3 + (t * 53) % (V - 3);
    float *ref = alone(whole, ids, N);
    float *x = malloc((size_t)N * (size_t)D * sizeof *x), *out = malloc((size_t)N * (size_t)V * sizeof *out);
    uint8_t want[N];
    memset(want, 1, sizeof want);
    double worst = 0;
    for (int k = 1; k < L; k++) {
        q35_error err = {0};
        q35_model *a = load_range(path, 0, k, &err), *b = a ? load_range(path, k, L - k, &err) : NULL;
        CHECKF(a && b, "%s: stages 0..%d, %d..%d: %s", label, k - 1, k, L - 1, err.msg);
        q35_session *sa = NULL, *sb = NULL;
        if (a && b && !q35_session_new(&sa, a, 2, &err) && !q35_session_new(&sb, b, 2, &err)) {
            for (int t0 = 0; t0 < N; t0 += 8) { /* 8 tokens a step */
                const q35_batch bt = {8, ids + t0, NULL, want};
                CHECK(q35_session_decode_layers(sa, &bt, NULL, x, NULL, &err) == 0);
                CHECK(q35_session_decode_layers(sb, &bt, x, NULL, out + (size_t)t0 * V, &err) == 0);
            }
            worst = fmax(worst, diff(out, ref, (size_t)N * V));
            /* the calls a stage refuses */
            const q35_batch bt = {1, ids, NULL, want};
            CHECK(q35_session_decode(sa, &bt, out, &err) == Q35_ERR_ARG && strstr(err.msg, "q35_session_decode_layers"));
            CHECK(q35_session_decode_layers(sb, &bt, NULL, NULL, out, &err) == Q35_ERR_ARG && strstr(err.msg, "x_in"));
            CHECK(q35_session_decode_layers(sa, &bt, NULL, NULL, out, &err) == Q35_ERR_ARG && strstr(err.msg, "x_out"));
        }
        q35_session_free(sa);
        q35_session_free(sb);
        q35_model_free(a);
        q35_model_free(b);
    }
    CHECKF(worst == 0, "%s: two stages differ from the whole model by %.3g", label, worst);
    printf("%s: split after each of layers 1..%d: logits equal the whole model's (largest difference %.3g)\n", label,
           L - 1, worst);
    q35_error err = {0};
    CHECK(!load_range(path, L - 1, 2, &err) && err.code == Q35_ERR_ARG && strstr(err.msg, "layers"));
    CHECK(!load_range(path, -1, 1, &err) && err.code == Q35_ERR_ARG);
    CHECK(!load_range(path, 0, -3, &err) && err.code == Q35_ERR_ARG);
    free(ref);
    free(x);
    free(out);
}

/* ---- tensor parallel in one process: a thread per slice ---------------- */

/* The group's gather: every slice writes its columns of each row into one
 * shared buffer, then (after a barrier) copies the whole rows back. */
typedef struct tp_group {
    pthread_barrier_t bar;
    float *shared;
} tp_group;

typedef struct tp_member {
    tp_group *g;
    int rank, V;
    q35_session *s;
    const int *ids;
    float *out; /* N rows of logits */
    int rc;
} tp_member;

static int tp_gather_threads(void *user, float *buf, int64_t width, int n, const int64_t *lo, q35_error *err) {
    (void)err;
    tp_member *me = user;
    const int64_t a = lo[me->rank], b = lo[me->rank + 1];
    for (int64_t t = 0; t < n; t++)
        memcpy(me->g->shared + t * width + a, buf + t * width + a, (size_t)(b - a) * sizeof *buf);
    pthread_barrier_wait(&me->g->bar);
    memcpy(buf, me->g->shared, (size_t)n * (size_t)width * sizeof *buf);
    pthread_barrier_wait(&me->g->bar);
    return 0;
}

/* Evaluates the N ids in steps of 1, 3, 8, 5, ... tokens, every logit wanted. */
static void *tp_member_run(void *arg) {
    tp_member *me = arg;
    static const int steps[] = {1, 3, 8, 5, 2, 13, 1, 7};
    uint8_t want[N];
    memset(want, 1, sizeof want);
    q35_error err = {0};
    for (int t0 = 0, k = 0; t0 < N && !me->rc; k++) {
        const int nb = N - t0 < steps[k % 8] ? N - t0 : steps[k % 8];
        const q35_batch b = {nb, me->ids + t0, NULL, want};
        me->rc = q35_session_decode(me->s, &b, me->out + (size_t)t0 * me->V, &err);
        t0 += nb;
    }
    return NULL;
}

/* The model sliced over T threads (tensor parallel) gives the whole
 * model's logits bit for bit: every output is computed whole by one slice
 * with the same arithmetic, and the slices' parts are gathered, not
 * summed. */
static void check_tensor_parallel(const char *label, const char *path, const q35_model *whole, int T) {
    const q35_config *c = q35_model_config(whole);
    const int V = c->vocab_size;
    int ids[N];
    for (int t = 0; t < N; t++) ids[t] = t == 0 ? 1 : 3 + (t * 71) % (V - 3);
    /* the reference: the whole model in the same steps (the same kernels
     * run, whether or not batches equal token by token here) */
    tp_member whole_run = {NULL, 0, V, NULL, ids, malloc((size_t)N * (size_t)V * sizeof(float)), 0};
    q35_error werr = {0};
    CHECK(q35_session_new(&whole_run.s, whole, 1, &werr) == 0);
    if (whole_run.s) tp_member_run(&whole_run);
    CHECK(whole_run.rc == 0);
    q35_session_free(whole_run.s);
    float *ref = whole_run.out;
    tp_group g;
    pthread_barrier_init(&g.bar, NULL, (unsigned)T);
    const int64_t widest = V > c->hidden_dim ? V : c->hidden_dim;
    g.shared = malloc((size_t)16 * (size_t)(widest > c->dim * 4 ? widest : c->dim * 4) * sizeof(float));
    tp_member mem[8];
    q35_model *ms[8] = {0};
    pthread_t th[8];
    int ok = 1;
    for (int r = 0; r < T; r++) {
        q35_error err = {0};
        q35_model_params mp = q35_model_default_params();
        mp.tp_rank = r;
        mp.tp_size = T;
        mem[r] = (tp_member){&g, r, V, NULL, ids, malloc((size_t)N * (size_t)V * sizeof(float)), 0};
        q35_session_params sp = q35_session_default_params();
        sp.n_threads = 1;
        sp.tp_gather = tp_gather_threads;
        sp.tp_user = &mem[r];
        int rc = q35_model_load_params(&ms[r], path, &mp, &err);
        if (!rc) rc = q35_session_new_params(&mem[r].s, ms[r], &sp, &err);
        CHECKF(rc == 0, "%s: slice %d of %d: %s", label, r, T, err.msg);
        ok &= rc == 0;
    }
    if (ok) {
        for (int r = 0; r < T; r++) pthread_create(&th[r], NULL, tp_member_run, &mem[r]);
        for (int r = 0; r < T; r++) pthread_join(th[r], NULL);
        double worst = 0;
        for (int r = 0; r < T; r++) {
            CHECKF(mem[r].rc == 0, "%s: slice %d of %d failed", label, r, T);
            worst = fmax(worst, diff(mem[r].out, ref, (size_t)N * V));
        }
        CHECKF(worst == 0, "%s: %d slices differ from the whole model by %.3g", label, T, worst);
        printf("%s: tensor parallel over %d: logits equal the whole model's (largest difference %.3g)\n", label, T,
               worst);
        /* a slice's session without a gather is refused */
        q35_session *bad = NULL;
        q35_error err = {0};
        CHECK(q35_session_new(&bad, ms[0], 1, &err) == Q35_ERR_ARG && strstr(err.msg, "tp_gather"));
    }
    for (int r = 0; r < T; r++) {
        q35_session_free(mem[r].s);
        q35_model_free(ms[r]);
        free(mem[r].out);
    }
    pthread_barrier_destroy(&g.bar);
    free(g.shared);
    free(ref);
}

int main(void) {
    char p[1024], q[512];
    q35_error err = {0};
    const char *bins[] = {"models/stories260K/stories260K.bin", "models/stories3M/stories3M-q80.bin"};
    char tmp[] = "/tmp/q35-test-session-XXXXXX";
    if (!mkdtemp(tmp)) return 2;
    for (int i = 0; i < 2; i++) {
        q35_model *m = NULL;
        CHECKF(q35_model_load(&m, shared_path(p, sizeof p, bins[i]), NULL, &err) == 0, "%s", err.msg);
        if (!m) continue;
        check_sequences(bins[i], m, 1);
        check_stages(bins[i], p, m);
        for (int T = 2; T <= 4; T++) check_tensor_parallel(bins[i], p, m, T);
        /* the same in Q3_5 */
        double bpw, rmse;
        snprintf(q, sizeof q, "%s/q35-%d.gguf", tmp, i);
        q35_model *qm = NULL;
        CHECK(q35_quantize_model(m, q, "Q3_5", NULL, 2, NULL, NULL, &bpw, &rmse, &err) == 0);
        CHECK(q35_model_load(&qm, q, NULL, &err) == 0);
        if (qm) {
            char label[600];
            snprintf(label, sizeof label, "%s Q3_5", bins[i]);
            check_sequences(label, qm, exact_here(1));
            check_stages(label, q, qm);
            for (int T = 2; T <= 3; T++) check_tensor_parallel(label, q, qm, T);
        }
        q35_model_free(qm);
        unlink(q);
        q35_model_free(m);
    }
    /* a model whose KV heads serve 8 query heads each: the fastest set's
     * wide scores kernels (Q35_ATTN_WIDE_GROUP), alone and in mixed batches */
    q35_config c;
    CHECK(q35_synth_shape("tiny", &c) == 0);
    c.n_heads = 8, c.n_kv_heads = 1, c.head_dim = c.dim / 8, c.n_layers = 2;
    snprintf(q, sizeof q, "%s/wide.gguf", tmp);
    q35_model *wm = NULL;
    CHECKF(q35_synth_model(q, &c, "F32", 7, 0, NULL, &err) == 0 && q35_model_load(&wm, q, NULL, &err) == 0, "%s",
           err.msg);
    CHECK(c.n_heads / c.n_kv_heads >= Q35_ATTN_WIDE_GROUP && c.head_dim % 16 == 0);
    if (wm) check_sequences("synthetic, 8 query heads per KV head", wm, 1);
    q35_model_free(wm);
    unlink(q);
    rmdir(tmp);
    TEST_END();
}
