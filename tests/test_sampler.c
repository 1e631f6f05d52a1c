/* test_sampler.c — the sampling chain: greedy, each filter, the draw's
 * distribution, seeds, bad parameters. */
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
