/* sampler.c — turning logits into the next token.
 *
 * The chain, in llama.cpp's default order: penalties (repeat, then
 * frequency and presence, over the last repeat_last_n tokens) -> top-k ->
 * top-p -> min-p (these three on the untempered distribution) ->
 * temperature -> draw. Temperature 0 is greedy: the first highest logit.
 * The random generator is the session-free xorshift64* seeded through
 * splitmix64, so a seed gives the same text on every machine. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "q35.h"

typedef struct candidate {
    float logit;
    int id;
} candidate;

struct q35_sampler {
    q35_sampler_params p;
    int vocab_size;
    uint64_t rng;         /* xorshift64* state, never 0 */
    float presence, frequency; /* q35_sampler_set_penalties; 0 = off */
    float *logits;        /* (vocab_size) working copy: after a draw, the penalised logits */
    candidate *cands;     /* (vocab_size) */
    int *count;           /* (vocab_size) occurrences in the window, zero between calls */
    int drawn;            /* a draw happened: logits hold its distribution */
};

q35_sampler_params q35_sampler_defaults(uint64_t seed) {
    q35_sampler_params p = {0.8f, 40, 0.95f, 0.05f, 1.0f, 64, seed};
    return p;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A float in [0, 1). */
static float rng_uniform(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (float)((*state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

int q35_sampler_new(q35_sampler **out, const q35_sampler_params *p, int vocab_size,
                    q35_error *err) {
    *out = NULL;
    if (vocab_size < 1) return q35_fail(err, Q35_ERR_ARG, "sampler: vocabulary is empty");
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return q35_fail(err, Q35_ERR_ARG, "temperature %g is not a number >= 0", (double)p->temperature);
    if (p->top_k < 0) return q35_fail(err, Q35_ERR_ARG, "top-k %d is negative", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return q35_fail(err, Q35_ERR_ARG, "top-p %g is not in (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return q35_fail(err, Q35_ERR_ARG, "min-p %g is not in [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return q35_fail(err, Q35_ERR_ARG, "repeat penalty %g is not a number > 0",
                        (double)p->repeat_penalty);
    if (p->repeat_last_n < 0)
        return q35_fail(err, Q35_ERR_ARG, "repeat-last-n %d is negative", p->repeat_last_n);
    q35_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->logits = malloc((size_t)vocab_size * sizeof *s->logits);
        s->cands = malloc((size_t)vocab_size * sizeof *s->cands);
        s->count = calloc((size_t)vocab_size, sizeof *s->count);
    }
    if (!s || !s->logits || !s->cands || !s->count) {
        q35_sampler_free(s);
        return q35_fail(err, Q35_ERR_NOMEM, "sampler: out of memory");
    }
    s->p = *p;
    s->vocab_size = vocab_size;
    s->rng = splitmix64(p->seed);
    if (s->rng == 0) s->rng = 1;
    *out = s;
    return Q35_OK;
}

void q35_sampler_free(q35_sampler *s) {
    if (!s) return;
    free(s->logits);
    free(s->cands);
    free(s->count);
    free(s);
}

int q35_sampler_set_penalties(q35_sampler *s, float presence, float frequency, q35_error *err) {
    if (!isfinite(presence) || !isfinite(frequency))
        return q35_fail(err, Q35_ERR_ARG, "presence penalty %g / frequency penalty %g: not a number",
                        (double)presence, (double)frequency);
    s->presence = presence;
    s->frequency = frequency;
    return Q35_OK;
}

static int by_logit_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id; /* ties: lower id first, so the order is total */
}

/* Restores the heap property below j in c[0..k): the worst candidate at the root. */
static void sift_down(candidate *c, int k, int j) {
    for (;;) {
        int l = 2 * j + 1, r = l + 1, m = j;
        if (l < k && by_logit_desc(&c[l], &c[m]) > 0) m = l;
        if (r < k && by_logit_desc(&c[r], &c[m]) > 0) m = r;
        if (m == j) return;
        candidate t = c[j];
        c[j] = c[m];
        c[m] = t;
        j = m;
    }
}

/* Keeps the k largest of c[0..n) in c[0..k), sorted; returns k. A min-heap
 * of size k makes this O(n log k). */
static int keep_top_k(candidate *c, int n, int k) {
    if (k <= 0 || k >= n) {
        qsort(c, (size_t)n, sizeof *c, by_logit_desc);
        return n;
    }
    /* heap over c[0..k) with the smallest (by by_logit_desc order) at the root */
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int i = k; i < n; i++) {
        if (by_logit_desc(&c[i], &c[0]) >= 0) continue; /* not better than the worst kept */
        c[0] = c[i];
        sift_down(c, k, 0);
    }
    qsort(c, (size_t)k, sizeof *c, by_logit_desc);
    return k;
}

int q35_sampler_sample(q35_sampler *s, const float *logits, const int *history, int n_history) {
    const int V = s->vocab_size;
    float *l = s->logits;
    memcpy(l, logits, (size_t)V * sizeof *l);

    /* penalties, llama.cpp's rule: each distinct token of the window once,
     * the repeat penalty (divide a positive logit, multiply a negative
     * one), then frequency per occurrence and presence once subtracted */
    const int pen = s->p.repeat_penalty != 1.0f || s->presence != 0.0f || s->frequency != 0.0f;
    if (pen && history) {
        int from = n_history - s->p.repeat_last_n;
        if (from < 0) from = 0;
        for (int i = from; i < n_history; i++)
            if (history[i] >= 0 && history[i] < V) s->count[history[i]]++;
        for (int i = from; i < n_history; i++) {
            const int t = history[i];
            if (t < 0 || t >= V || s->count[t] == 0) continue; /* out of range, or done */
            if (s->p.repeat_penalty != 1.0f)
                l[t] = l[t] > 0.0f ? l[t] / s->p.repeat_penalty : l[t] * s->p.repeat_penalty;
            l[t] -= (float)s->count[t] * s->frequency + s->presence;
            s->count[t] = 0;
        }
    }
    s->drawn = 1;

    if (s->p.temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        return best;
    }

    candidate *c = s->cands;
    for (int i = 0; i < V; i++) c[i] = (candidate){l[i], i};
    int n = keep_top_k(c, V, s->p.top_k);

    /* probabilities before temperature, for top-p and min-p */
    const float max = c[0].logit;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)(c[i].logit - max));
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += exp((double)(c[i].logit - max)) / sum;
            if (cum >= (double)s->p.top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0.0f) {
        /* p_i >= min_p * p_max  <=>  logit_i >= max + log(min_p) */
        const float floor_logit = max + logf(s->p.min_p);
        int keep = 1;
        while (keep < n && c[keep].logit >= floor_logit) keep++;
        n = keep;
    }

    /* temperature, then draw */
    sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)((c[i].logit - max) / s->p.temperature));
    const double r = (double)rng_uniform(&s->rng) * sum;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += exp((double)((c[i].logit - max) / s->p.temperature));
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}

int q35_sampler_logprobs(q35_sampler *s, int token, int k, float *lp, int *top_ids, float *top_lp) {
    const int V = s->vocab_size;
    if (!s->drawn || token < 0 || token >= V) return -1;
    const float *l = s->logits;
    float max = l[0];
    for (int i = 1; i < V; i++) max = l[i] > max ? l[i] : max;
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)(l[i] - max));
    const double norm = (double)max + log(sum);
    *lp = (float)((double)l[token] - norm);
    if (k <= 0) return 0;
    candidate *c = s->cands;
    for (int i = 0; i < V; i++) c[i] = (candidate){l[i], i};
    const int n = keep_top_k(c, V, k < V ? k : V);
    for (int i = 0; i < n; i++) {
        top_ids[i] = c[i].id;
        top_lp[i] = (float)((double)c[i].logit - norm);
    }
    return n;
}
