/* dist.c — the split of a model's layers over pipeline stages, and the
 * layout and checks of the messages q35-mpi's ranks exchange (dist.h). */
#include "dist/dist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int q35_dist_parse_split(const char *s, int *counts, int max, q35_error *err) {
    int n = 0;
    const char *p = s;
    if (!s || !*s) return q35_fail(err, Q35_ERR_ARG, "--split needs layer counts such as 10,22"), -1;
    for (;;) {
        char *end;
        errno = 0;
        const long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ','))
            return q35_fail(err, Q35_ERR_ARG, "--split %s: give layer counts separated by commas, such as 10,22", s), -1;
        if (v < 1 || v > 1000000)
            return q35_fail(err, Q35_ERR_ARG, "--split %s: %ld layers: every stage needs at least 1", s, v), -1;
        if (n == max) return q35_fail(err, Q35_ERR_ARG, "--split %s: more than %d stages", s, max), -1;
        counts[n++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    return n;
}

int q35_dist_plan(const q35_model *m, int n, int T, const int *counts, const uint64_t *cap, int *first, int *count,
                  q35_error *err) {
    const int L = q35_model_config(m)->n_layers;
    if (n < 1 || n > Q35_DIST_MAX_STAGES)
        return q35_fail(err, Q35_ERR_ARG, "%d pipeline stages: give 1 to %d", n, Q35_DIST_MAX_STAGES);
    if (n > L)
        return q35_fail(err, Q35_ERR_ARG, "%d pipeline stages for a model of %d layers: at most %d (fewer ranks, or --tp)",
                        n, L, L);
    if (counts) {
        int sum = 0;
        for (int s = 0; s < n; s++) sum += counts[s];
        if (sum != L)
            return q35_fail(err, Q35_ERR_ARG, "--split: the stages' layers add up to %d, the model has %d", sum, L);
        for (int s = 0, f = 0; s < n; f += counts[s], s++) first[s] = f, count[s] = counts[s];
        return Q35_OK;
    }
    int known = 1;
    for (int s = 0; s < n; s++) known &= cap && cap[s] > 0;
    /* need[f][c]: what a stage of layers f .. f+c-1 needs (the embedding
     * with layer 0, the classifier with the last); then the split whose
     * fullest stage, by need over its ranks' memory, is the least full */
    const size_t W = (size_t)L + 1;
    double *need = malloc(W * W * sizeof *need), *best = malloc((size_t)(n + 1) * W * sizeof *best);
    int *from = malloc((size_t)(n + 1) * W * sizeof *from);
    if (!need || !best || !from) {
        free(need);
        free(best);
        free(from);
        return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    }
    for (int f = 0; f < L; f++)
        for (int c = 1; f + c <= L; c++) need[(size_t)f * W + (size_t)c] = (double)q35_model_need_bytes(m, f, c, T);
    /* best[s][l]: the least fullest-stage ratio of s stages over layers 0 .. l-1 */
    for (int s = 0; s <= n; s++)
        for (int l = 0; l <= L; l++) best[(size_t)s * W + (size_t)l] = s == 0 && l == 0 ? 0 : -1;
    for (int s = 1; s <= n; s++)
        for (int l = s; l <= L - (n - s); l++)
            for (int f = s - 1; f < l; f++) {
                const double prev = best[(size_t)(s - 1) * W + (size_t)f];
                if (prev < 0) continue;
                const double r = need[(size_t)f * W + (size_t)(l - f)] / (known ? (double)cap[s - 1] : 1.0);
                const double v = r > prev ? r : prev;
                double *b = &best[(size_t)s * W + (size_t)l];
                if (*b < 0 || v < *b) *b = v, from[(size_t)s * W + (size_t)l] = f;
            }
    for (int s = n, l = L; s >= 1; s--) {
        const int f = from[(size_t)s * W + (size_t)l];
        first[s - 1] = f;
        count[s - 1] = l - f;
        l = f;
    }
    free(need);
    free(best);
    free(from);
    return Q35_OK;
}

/* ---- messages ------------------------------------------------------------- */

static size_t want_bytes(int n) { return ((size_t)n + 3) / 4 * 4; }

size_t q35_dist_batch_bytes(int n, int dim) {
    return (size_t)n * 8 + want_bytes(n) + (dim > 0 ? (size_t)n * (size_t)dim * sizeof(float) : 0);
}

void q35_dist_batch_pack(void *payload, const q35_batch *b, int dim, const float *x) {
    uint8_t *p = payload;
    const size_t n = (size_t)b->n_tokens;
    int32_t *tok = (int32_t *)p, *seq = tok + n;
    uint8_t *want = (uint8_t *)(seq + n);
    for (size_t t = 0; t < n; t++) {
        tok[t] = b->token[t];
        seq[t] = b->seq ? b->seq[t] : 0;
        want[t] = b->logits && b->logits[t];
    }
    memset(want + n, 0, want_bytes(b->n_tokens) - n);
    if (dim > 0 && x) memcpy(want + want_bytes(b->n_tokens), x, n * (size_t)dim * sizeof *x);
}

int q35_dist_batch_view_of(const void *payload, size_t len, int n, int dim, q35_dist_batch_view *v,
                           const char **why) {
    if (n < 1 || n > (1 << 24)) return *why = "a batch of no tokens, or too many", -1;
    if (len != q35_dist_batch_bytes(n, dim)) return *why = "a batch whose size does not match its tokens", -1;
    const uint8_t *p = payload;
    const int32_t *tok = (const int32_t *)p, *seq = tok + n;
    const uint8_t *want = (const uint8_t *)(seq + n);
    int wanted = 0;
    for (int t = 0; t < n; t++) {
        if (want[t] > 1) return *why = "a batch with a bad wanted flag", -1;
        wanted += want[t];
    }
    v->b = (q35_batch){n, tok, seq, want};
    v->x = dim > 0 ? (const float *)(want + want_bytes(n)) : NULL;
    v->n_wanted = wanted;
    return 0;
}

int q35_dist_hdr_check(const void *msg, size_t len, const char **why) {
    q35_dist_hdr h;
    if (len < sizeof h) return *why = "a message shorter than its header", -1;
    memcpy(&h, msg, sizeof h);
    if (h.magic != Q35_DIST_MAGIC) return *why = "a message that is not q35-mpi's", -1;
    if (h.version != Q35_DIST_VERSION) return *why = "a message of another q35-mpi version", -1;
    if (h.op < 1 || h.op >= Q35_DIST_N_OPS) return *why = "a message of an unknown kind", -1;
    if (h.bytes != len - sizeof h) return *why = "a message whose length does not match its header", -1;
    if (h.n_recs < 0 || (uint64_t)h.n_recs * sizeof(q35_dist_rec) > h.bytes)
        return *why = "a message with more records than bytes", -1;
    if (memchr(h.msg, 0, sizeof h.msg) == NULL) return *why = "a message with an unterminated error line", -1;
    return 0;
}
