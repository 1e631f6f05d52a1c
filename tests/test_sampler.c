/* test_sampler.c — the sampling chain: greedy, each filter, the draw's
 * distribution, seeds, the penalties, log-probabilities, bad parameters. */
#include "harness.h"
#include "q35.h"

static q35_sampler *make(float temp, int top_k, float top_p, float min_p, float pen, uint64_t seed,
                         int V) {
    q35_sampler_params p = {temp, top_k, top_p, min_p, pen, 64, seed};
    q35_sampler *s = NULL;
    q35_error err;
    CHECKF(q35_sampler_new(&s, &p, V, &err) == 0, "sampler_new: %s", err.msg);
    return s;
}

int main(void) {
    const float l3[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    const float ties[4] = {1, 3, 3, 2};
    q35_sampler *s;

    /* greedy: the first highest */
    s = make(0, 40, 0.95f, 0.05f, 1, 1, 4);
    CHECK(q35_sampler_sample(s, ties, NULL, 0) == 1);
    q35_sampler_free(s);

    /* top-k 1 and min-p 1 both leave only the best, at any temperature */
    s = make(5, 1, 1, 0, 1, 7, 3);
    int only0 = 1;
    for (int i = 0; i < 200; i++) only0 &= q35_sampler_sample(s, l3, NULL, 0) == 0;
    CHECK(only0);
    q35_sampler_free(s);
    s = make(5, 0, 1, 1, 1, 7, 3);
    only0 = 1;
    for (int i = 0; i < 200; i++) only0 &= q35_sampler_sample(s, l3, NULL, 0) == 0;
    CHECK(only0);
    q35_sampler_free(s);

    /* top-p 0.7 keeps {0.5, 0.3}: token 2 never drawn */
    s = make(1, 0, 0.7f, 0, 1, 9, 3);
    int saw2 = 0, saw1 = 0;
    for (int i = 0; i < 2000; i++) {
        int t = q35_sampler_sample(s, l3, NULL, 0);
        saw2 |= t == 2;
        saw1 |= t == 1;
    }
    CHECK(!saw2 && saw1);
    q35_sampler_free(s);

    /* the draw follows the distribution (temperature 1, no filters) */
    s = make(1, 0, 1, 0, 1, 12345, 3);
    int count[3] = {0};
    const int N = 200000;
    for (int i = 0; i < N; i++) count[q35_sampler_sample(s, l3, NULL, 0)]++;
    CHECKF(fabs(count[0] / (double)N - 0.5) < 0.01 && fabs(count[1] / (double)N - 0.3) < 0.01 &&
               fabs(count[2] / (double)N - 0.2) < 0.01,
           "frequencies %d %d %d", count[0], count[1], count[2]);
    q35_sampler_free(s);

    /* the same seed, the same draws; another seed, other draws */
    q35_sampler *a = make(1, 0, 1, 0, 1, 42, 3), *b = make(1, 0, 1, 0, 1, 42, 3),
                *c = make(1, 0, 1, 0, 1, 43, 3);
    int same = 1, differ = 0;
    for (int i = 0; i < 500; i++) {
        int x = q35_sampler_sample(a, l3, NULL, 0), y = q35_sampler_sample(b, l3, NULL, 0),
            z = q35_sampler_sample(c, l3, NULL, 0);
        same &= x == y;
        differ |= x != z;
    }
    CHECK(same && differ);
    q35_sampler_free(a);
    q35_sampler_free(b);
    q35_sampler_free(c);

    /* repeat penalty: a seen token with a positive logit is divided down */
    const float pos[3] = {2.0f, 1.9f, -1.0f};
    const int hist[2] = {0, 0};
    s = make(0, 0, 1, 0, 1.2f, 1, 3);
    CHECK(q35_sampler_sample(s, pos, hist, 2) == 1); /* 2/1.2 < 1.9 */
    CHECK(q35_sampler_sample(s, pos, NULL, 0) == 0);
    q35_sampler_free(s);

    /* presence and frequency penalties (llama.cpp's): logit - count * freq - presence,
     * once per distinct token of the window, after the repeat penalty */
    {
        const float lg[4] = {3.0f, 2.9f, 2.0f, -1.0f};
        const int h3[4] = {0, 0, 0, 2}; /* token 0 three times, token 2 once */
        q35_error e2;
        s = make(0, 0, 1, 0, 1, 1, 4);
        CHECK(q35_sampler_set_penalties(s, 0.05f, 0.0f, &e2) == 0);
        CHECK(q35_sampler_sample(s, lg, h3, 4) == 0); /* 3 - 0.05 > 2.9 */
        CHECK(q35_sampler_set_penalties(s, 0.15f, 0.0f, &e2) == 0);
        CHECK(q35_sampler_sample(s, lg, h3, 4) == 1); /* 3 - 0.15 < 2.9 */
        CHECK(q35_sampler_set_penalties(s, 0.0f, 0.02f, &e2) == 0);
        CHECK(q35_sampler_sample(s, lg, h3, 4) == 0); /* 3 - 3 * 0.02 = 2.94 > 2.9 */
        CHECK(q35_sampler_set_penalties(s, 0.0f, 0.04f, &e2) == 0);
        CHECK(q35_sampler_sample(s, lg, h3, 4) == 1); /* 3 - 0.12 < 2.9 */
        /* a window of 2 sees token 0 once and token 2 once */
        q35_sampler_free(s);
        q35_sampler_params pw = {0, 0, 1, 0, 1, 2, 1};
        CHECK(q35_sampler_new(&s, &pw, 4, &e2) == 0);
        CHECK(q35_sampler_set_penalties(s, 0.0f, 0.04f, &e2) == 0);
        CHECK(q35_sampler_sample(s, lg, h3, 4) == 0); /* 3 - 0.04 > 2.9 */
        /* the exact values, through the log-probabilities: repeat 2, then
         * frequency 0.5 and presence 0.25 */
        q35_sampler_free(s);
        q35_sampler_params pr = {0, 0, 1, 0, 2.0f, 64, 1};
        CHECK(q35_sampler_new(&s, &pr, 4, &e2) == 0);
        CHECK(q35_sampler_set_penalties(s, 0.25f, 0.5f, &e2) == 0);
        float lp = 0;
        CHECK(q35_sampler_logprobs(s, 0, 0, &lp, NULL, NULL) == -1); /* no draw yet */
        (void)q35_sampler_sample(s, lg, h3, 4);
        const float want[4] = {3.0f / 2 - 1.5f - 0.25f, 2.9f, 2.0f / 2 - 0.5f - 0.25f, -1.0f};
        double mx = 2.9, z = 0;
        for (int i = 0; i < 4; i++) z += exp((double)want[i] - mx);
        int ok = 1;
        for (int i = 0; i < 4; i++) {
            CHECK(q35_sampler_logprobs(s, i, 0, &lp, NULL, NULL) == 0);
            ok &= fabs((double)lp - ((double)want[i] - mx - log(z))) < 1e-6;
        }
        CHECKF(ok, "penalised log-probabilities differ from the formula");
        CHECK(q35_sampler_set_penalties(s, NAN, 0, &e2) == Q35_ERR_ARG && e2.msg[0]);
        q35_sampler_free(s);
    }

    /* log-probabilities: log-softmax before truncation and temperature,
     * the top k in order, ties by id */
    {
        const float lg[5] = {1.0f, 3.0f, 3.0f, -2.0f, 0.5f};
        s = make(0.7f, 1, 0.5f, 0.3f, 1, 5, 5); /* filters leave only token 1 */
        CHECK(q35_sampler_sample(s, lg, NULL, 0) == 1);
        double z = 0;
        for (int i = 0; i < 5; i++) z += exp((double)lg[i]);
        float lp, top_lp[8];
        int top[8];
        CHECK(q35_sampler_logprobs(s, 3, 3, &lp, top, top_lp) == 3);
        CHECK(fabs((double)lp - (-2.0 - log(z))) < 1e-6);
        CHECK(top[0] == 1 && top[1] == 2 && top[2] == 0);
        CHECK(fabs((double)top_lp[0] - (3.0 - log(z))) < 1e-6 && top_lp[0] == top_lp[1]);
        CHECK(q35_sampler_logprobs(s, 0, 8, &lp, top, top_lp) == 5);
        double p = 0;
        for (int i = 0; i < 5; i++) p += exp((double)top_lp[i]);
        CHECKF(fabs(p - 1.0) < 1e-6, "probabilities sum to %.9f", p);
        CHECK(q35_sampler_logprobs(s, 5, 0, &lp, NULL, NULL) == -1);
        q35_sampler_free(s);
    }

    /* bad parameters are refused with a message */
    q35_sampler_params bad[] = {
        {-1, 40, 0.95f, 0.05f, 1, 64, 0}, {0.8f, -1, 0.95f, 0.05f, 1, 64, 0},
        {0.8f, 40, 0, 0.05f, 1, 64, 0},   {0.8f, 40, 1.5f, 0.05f, 1, 64, 0},
        {0.8f, 40, 0.95f, -0.1f, 1, 64, 0}, {0.8f, 40, 0.95f, 0.05f, 0, 64, 0},
        {NAN, 40, 0.95f, 0.05f, 1, 64, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        q35_error err = {0};
        s = NULL;
        CHECKF(q35_sampler_new(&s, &bad[i], 3, &err) == Q35_ERR_ARG && s == NULL && err.msg[0],
               "bad parameter set %zu accepted", i);
    }
    q35_error err;
    q35_sampler_params d = q35_sampler_defaults(1);
    CHECK(q35_sampler_new(&s, &d, 0, &err) == Q35_ERR_ARG);
    TEST_END();
}
