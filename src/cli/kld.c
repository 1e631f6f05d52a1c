/* kld.c — the KL-divergence base file: header, records, the comparison
 * of one position, and llama-perplexity's summary statistics. */
#include "cli/kld.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

static const uint8_t MAGIC[8] = {'Q', '3', '5', 'K', 'L', 'D', '\r', '\n'};

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void putf(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put32(p, u);
}
static float getf(const uint8_t *p) {
    uint32_t u = get32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static size_t id_bytes(uint32_t vocab) { return vocab <= 65536 ? 2 : 4; }

size_t kld_record_bytes(uint32_t vocab, uint32_t k) {
    return k == 0 ? 4 * (size_t)vocab : 8 + (size_t)k * (4 + id_bytes(vocab));
}

uint32_t kld_choose_k(uint32_t vocab, uint32_t k) {
    if (k == 0 || k >= vocab || kld_record_bytes(vocab, 0) <= kld_record_bytes(vocab, k)) return 0;
    return k;
}

void kld_header_encode(const kld_header *h, uint8_t out[KLD_HEADER_BYTES]) {
    memset(out, 0, KLD_HEADER_BYTES);
    memcpy(out, MAGIC, 8);
    put32(out + 8, KLD_VERSION);
    put32(out + 12, h->vocab);
    put32(out + 16, h->k);
    put32(out + 20, h->rec_bytes);
    put32(out + 24, h->n_docs);
    put32(out + 28, h->ctx);
    put64(out + 32, h->n_pos);
    put64(out + 40, h->hash);
}

int kld_header_decode(const uint8_t in[KLD_HEADER_BYTES], kld_header *h, const char **why) {
    if (memcmp(in, MAGIC, 8) != 0) return *why = "not a q35 KL-divergence base file (bad magic)", -1;
    if (get32(in + 8) != KLD_VERSION)
        return *why = "KL-divergence base file of another version (this q35 reads version 1)", -1;
    h->vocab = get32(in + 12);
    h->k = get32(in + 16);
    h->rec_bytes = get32(in + 20);
    h->n_docs = get32(in + 24);
    h->ctx = get32(in + 28);
    h->n_pos = get64(in + 32);
    h->hash = get64(in + 40);
    for (int i = 48; i < KLD_HEADER_BYTES; i++)
        if (in[i]) return *why = "header: reserved bytes are not zero", -1;
    if (h->vocab < 2 || h->vocab > (1u << 24)) return *why = "header: vocabulary size out of range", -1;
    if (h->k >= h->vocab) return *why = "header: k is not below the vocabulary size", -1;
    if (h->rec_bytes != kld_record_bytes(h->vocab, h->k))
        return *why = "header: record size does not match vocabulary and k", -1;
    if (h->n_docs == 0 || h->n_pos == 0) return *why = "header: no documents or no positions", -1;
    if (h->n_pos > (UINT64_C(1) << 40) / h->rec_bytes) return *why = "header: position count out of range", -1;
    return 0;
}

uint64_t kld_token_hash(int n_docs, int *const *ids, const int *lens) {
    size_t total = 0;
    for (int d = 0; d < n_docs; d++) total += 1 + (size_t)lens[d];
    uint8_t *buf = malloc(total > 0 ? total * 4 : 1);
    if (!buf) return 0; /* callers treat 0 as "out of memory" */
    uint8_t *p = buf;
    for (int d = 0; d < n_docs; d++) {
        put32(p, (uint32_t)lens[d]);
        p += 4;
        for (int i = 0; i < lens[d]; i++, p += 4) put32(p, (uint32_t)ids[d][i]);
    }
    uint64_t h = q35_hash_bytes((const char *)buf, total * 4);
    free(buf);
    return h ? h : 1;
}

int kld_scratch_init(kld_scratch *s, uint32_t V, uint32_t k) {
    s->V = V;
    s->k = k;
    s->lp = malloc((size_t)V * sizeof *s->lp);
    s->top = malloc(((size_t)k + 1) * sizeof *s->top);
    s->in_top = calloc(V, 1);
    return s->lp && s->top && s->in_top ? 0 : -1;
}

void kld_scratch_free(kld_scratch *s) {
    free(s->lp);
    free(s->top);
    free(s->in_top);
    memset(s, 0, sizeof *s);
}

void kld_log_softmax(kld_scratch *s, const float *logits) {
    const uint32_t V = s->V;
    double max = logits[0], z = 0.0;
    for (uint32_t j = 1; j < V; j++) if (logits[j] > max) max = logits[j];
    for (uint32_t j = 0; j < V; j++) z += exp((double)logits[j] - max);
    const double lz = log(z) + max;
    for (uint32_t j = 0; j < V; j++) s->lp[j] = (double)logits[j] - lz;
}

/* The k largest of s->lp, best first; ties go to the lower id. */
static void top_k(kld_scratch *s) {
    const double *lp = s->lp;
    int *top = s->top, c = 0, k = (int)s->k;
    for (int j = 0; j < (int)s->V; j++) {
        double v = lp[j];
        if (c == k && !(v > lp[top[k - 1]])) continue;
        int at = c < k ? c++ : k - 1;
        while (at > 0 && lp[top[at - 1]] < v) {
            top[at] = top[at - 1];
            at--;
        }
        top[at] = j;
    }
}

/* Mass outside the flagged ids, summed in id order. */
static double tail_mass(const kld_scratch *s) {
    double t = 0.0;
    for (uint32_t j = 0; j < s->V; j++)
        if (!s->in_top[j]) t += exp(s->lp[j]);
    return t;
}

static int argmax(const double *lp, uint32_t V) {
    int best = 0;
    for (uint32_t j = 1; j < V; j++) if (lp[j] > lp[best]) best = (int)j;
    return best;
}

void kld_make_record(kld_scratch *s, int next, uint8_t *rec) {
    if (s->k == 0) {
        for (uint32_t j = 0; j < s->V; j++) putf(rec + 4 * j, (float)s->lp[j]);
        return;
    }
    top_k(s);
    const uint32_t k = s->k;
    const size_t ib = id_bytes(s->V);
    uint8_t *lps = rec + 8, *ids = rec + 8 + 4 * (size_t)k;
    for (uint32_t i = 0; i < k; i++) {
        int id = s->top[i];
        s->in_top[id] = 1;
        putf(lps + 4 * i, (float)s->lp[id]);
        if (ib == 2) ids[2 * i] = (uint8_t)id, ids[2 * i + 1] = (uint8_t)(id >> 8);
        else put32(ids + 4 * i, (uint32_t)id);
    }
    putf(rec, (float)s->lp[next]);
    putf(rec + 4, (float)tail_mass(s));
    for (uint32_t i = 0; i < k; i++) s->in_top[s->top[i]] = 0;
}

static int bad_lp(float f) { return !(f <= 0.0f && f >= -FLT_MAX); }

static uint32_t get_id(const uint8_t *ids, size_t ib, uint32_t i) {
    return ib == 2 ? (uint32_t)ids[2 * i] | (uint32_t)ids[2 * i + 1] << 8 : get32(ids + ib * i);
}

int kld_check_record(const uint8_t *rec, uint32_t V, uint32_t k, const char **why) {
    const uint32_t n = k ? k : V;
    const uint8_t *lps = k ? rec + 8 : rec, *ids = rec + 8 + 4 * (size_t)k;
    for (uint32_t i = 0; i < n; i++)
        if (bad_lp(getf(lps + 4 * i))) return *why = "a log-probability is not finite or is positive", -1;
    if (k == 0) return 0;
    if (bad_lp(getf(rec))) return *why = "a log-probability is not finite or is positive", -1;
    float tail = getf(rec + 4);
    if (!(tail >= 0.0f && tail <= 1.0f)) return *why = "the tail mass is not in [0, 1]", -1;
    for (uint32_t i = 0; i < k; i++)
        if (get_id(ids, id_bytes(V), i) >= V) return *why = "a token id is out of range", -1;
    return 0;
}

int kld_compare_record(kld_scratch *s, const uint8_t *rec, int next, kld_pos *out,
                       const char **why) {
    const uint32_t V = s->V, k = s->k;
    const double *lq = s->lp;
    if (kld_check_record(rec, V, k, why)) return -1;
    double kld = 0.0, lp_true;
    int base_top = 0;
    if (k == 0) {
        float best = getf(rec);
        for (uint32_t j = 0; j < V; j++) {
            float b = getf(rec + 4 * j);
            if (b > best) best = b, base_top = (int)j;
            kld += exp((double)b) * ((double)b - (double)(float)lq[j]);
        }
        lp_true = getf(rec + 4 * (size_t)next);
    } else {
        const size_t ib = id_bytes(V);
        const uint8_t *lps = rec + 8, *ids = rec + 8 + 4 * (size_t)k;
        float tail = getf(rec + 4);
        lp_true = getf(rec);
        base_top = (int)get_id(ids, ib, 0);
        for (uint32_t i = 0; i < k; i++) {
            uint32_t id = get_id(ids, ib, i);
            float b = getf(lps + 4 * i);
            s->in_top[id] = 1;
            kld += exp((double)b) * ((double)b - (double)(float)lq[id]);
        }
        if (tail > 0.0f) {
            double tq = (double)(float)tail_mass(s);
            kld += (double)tail * (log((double)tail) - log(tq > FLT_MIN ? tq : FLT_MIN));
        }
        for (uint32_t i = 0; i < k; i++) s->in_top[get_id(ids, ib, i)] = 0;
    }
    const double lq_true = (double)(float)lq[next];
    out->kld = kld;
    out->nll_base = -lp_true;
    out->nll_q = -lq_true;
    out->p_base = exp(lp_true);
    out->p_q = exp(lq_true);
    out->same_top = argmax(lq, V) == base_top;
    return 0;
}

/* ---- summary ------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between order statistics at p * (n - 1). */
static double pct(const double *sorted, size_t n, double p) {
    double x = p * (double)(n - 1);
    size_t lo = (size_t)x, hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - (double)lo);
}

static void print_pcts(const double *sorted, size_t n, const char *what, double scale, const char *unit) {
    static const double ps[] = {1.0, 0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0.05, 0.01, 0.0};
    static const char *names[] = {"Maximum", "99.9%", "99.0%", "95.0%", "90.0%", "Median",
                                  "10.0%", " 5.0%", " 1.0%", "Minimum"};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        printf("%-7s %s: %10.6f%s\n", names[i], what, scale * pct(sorted, n, ps[i]), unit);
}

int kld_report(const kld_pos *pos, size_t n, uint32_t k, const char *base_path) {
    double *v = malloc(n * sizeof *v);
    if (!v) return -1;
    const double N = (double)n;
    double sq = 0, sb = 0, sqq = 0, sbb = 0, sqb = 0, sk = 0, skk = 0, sd = 0, sdd = 0, st = 0;
    double dp = 0, dpp = 0;
    for (size_t i = 0; i < n; i++) {
        const kld_pos *p = &pos[i];
        sq += p->nll_q, sb += p->nll_base;
        sqq += p->nll_q * p->nll_q, sbb += p->nll_base * p->nll_base, sqb += p->nll_q * p->nll_base;
        double d = p->nll_q - p->nll_base;
        sd += d, sdd += d * d;
        sk += p->kld, skk += p->kld * p->kld;
        st += p->same_top;
        double e = p->p_q - p->p_base;
        dp += e, dpp += e * e;
    }
    /* means, and the standard error of a mean (sample variance / n) */
#define MEAN_SE(sum, sum2, mean, se)                                       \
    double mean = (sum) / N;                                                \
    double se = n > 1 ? sqrt(fmax(((sum2) / N - mean * mean) * N / (N - 1), 0) / N) : 0
    MEAN_SE(sq, sqq, mq, se_q);
    MEAN_SE(sb, sbb, mb, se_b);
    MEAN_SE(sd, sdd, md, se_d);
    MEAN_SE(sk, skk, mk, se_k);
    MEAN_SE(dp, dpp, mdp, se_dp);
#undef MEAN_SE
    double cov = n > 1 ? (sqb / N - mq * mb) * N / (N - 1) / N : 0; /* covariance of the means */
    double var_q = se_q * se_q, var_b = se_b * se_b;
    double cor = var_q > 0 && var_b > 0 ? cov / sqrt(var_q * var_b) : 1.0;
    double ppl_q = exp(mq), ppl_b = exp(mb), ratio = exp(md);
    double se_diff = sqrt(fmax(ppl_q * ppl_q * var_q + ppl_b * ppl_b * var_b - 2 * ppl_q * ppl_b * cov, 0));
    double same = st / N, se_same = sqrt(same * (1 - same) / N);
    double ms = dpp / N, rms = sqrt(ms);
    double se_ms = 0, acc = 0;
    for (size_t i = 0; i < n; i++) {
        double e = pos[i].p_q - pos[i].p_base, x = e * e - ms;
        acc += x * x;
    }
    if (n > 1) se_ms = sqrt(acc / (N - 1) / N);
    double se_rms = rms > 0 ? se_ms / (2 * rms) : 0;

    if (k) printf("KL divergence against %s (base's top %u log-probs + the rest as one bucket):\n", base_path, k);
    else printf("KL divergence against %s (base's whole distribution):\n", base_path);
    printf("positions: %zu\n", n);
    printf("PPL(Q): %.4f ± %.4f\n", ppl_q, ppl_q * se_q);
    printf("PPL(base): %.4f ± %.4f\n", ppl_b, ppl_b * se_b);
    printf("Cor(ln PPL(Q), ln PPL(base)): %.2f%%\n", 100 * cor);
    printf("Mean ln(PPL(Q)/PPL(base)): %.6f ± %.6f\n", md, se_d);
    printf("Mean PPL(Q)/PPL(base): %.6f ± %.6f\n", ratio, ratio * se_d);
    printf("Mean PPL(Q)-PPL(base): %.6f ± %.6f\n", ppl_q - ppl_b, se_diff);
    printf("Mean    KLD: %10.6f ± %.6f\n", mk, se_k);
    for (size_t i = 0; i < n; i++) v[i] = pos[i].kld;
    qsort(v, n, sizeof *v, cmp_double);
    print_pcts(v, n, "KLD", 1.0, "");
    printf("Mean     Δp: %8.4f ± %.4f %%\n", 100 * mdp, 100 * se_dp);
    printf("RMS      Δp: %8.4f ± %.4f %%\n", 100 * rms, 100 * se_rms);
    for (size_t i = 0; i < n; i++) v[i] = pos[i].p_q - pos[i].p_base;
    qsort(v, n, sizeof *v, cmp_double);
    print_pcts(v, n, " Δp", 100.0, " %");
    printf("Same top p: %.4f ± %.4f %%\n", 100 * same, 100 * se_same);
    free(v);
    return 0;
}
