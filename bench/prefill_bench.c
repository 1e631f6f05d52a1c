/* prefill_bench.c — prompt (pp) and generation (tg) speed of one model
 * through the public API, as llama-bench measures them: ppN evaluates N
 * tokens from position 0 as one q35_session_eval_batch call; tgN
 * evaluates N tokens one at a time after a context of D tokens (--depth).
 * Token ids are fixed pseudo-random ids (the speed does not depend on
 * them). Median of R repetitions (default 3), in wall-clock time and, for
 * a loaded machine, in process CPU time (meaningful at one thread). Kept
 * beside `q35 bench` (which has -b and --kv-type too) for what that lacks:
 * tg after a filled context (--depth) and CPU-time figures.
 *   prefill_bench MODEL [-t THREADS] [--pp N] [--tg N] [--depth D]
 *                 [-b BATCH] [--kv f16|f32] [-r R]                     */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchtime.h"
#include "q35.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: prefill_bench MODEL [-t T] [--pp N] [--tg N] [--depth D] [-b B] "
                        "[--kv f16|f32] [-r R]\n");
        return 1;
    }
    int threads = 0, pp = 64, tg = 16, depth = 0, batch = 0, reps = 3;
    const char *kv = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "-t")) threads = atoi(v);
        else if (!strcmp(a, "--pp")) pp = atoi(v);
        else if (!strcmp(a, "--tg")) tg = atoi(v);
        else if (!strcmp(a, "--depth")) depth = atoi(v);
        else if (!strcmp(a, "-b")) batch = atoi(v);
        else if (!strcmp(a, "--kv")) kv = v;
        else if (!strcmp(a, "-r")) reps = atoi(v);
        else {
            fprintf(stderr, "prefill_bench: unknown flag %s\n", a);
            return 1;
        }
    }
    if (reps < 1 || reps > 99) reps = 3;
    q35_error err = {0};
    q35_model *m = NULL;
    q35_session *s = NULL;
    if (q35_model_load(&m, argv[1], NULL, &err) || q35_session_new(&s, m, threads, &err)) {
        fprintf(stderr, "prefill_bench: %s\n", err.msg);
        return 1;
    }
#ifndef PB_BASE /* PB_BASE: builds against a library from before these settings */
    if (batch > 0 && q35_session_set_batch(s, batch, &err)) {
        fprintf(stderr, "prefill_bench: %s\n", err.msg);
        return 1;
    }
    if (kv && q35_session_set_kv_type(s, kv, &err)) {
        fprintf(stderr, "prefill_bench: %s\n", err.msg);
        return 1;
    }
    const char *kv_name = q35_session_kv_type(s);
#else
    const char *kv_name = "f32";
    (void)batch, (void)kv;
#endif
    const q35_config *c = q35_model_config(m);
    const int n = pp > depth + tg ? pp : depth + tg;
    if (n > c->seq_len) {
        fprintf(stderr, "prefill_bench: %d tokens do not fit the context (%d)\n", n, c->seq_len);
        return 1;
    }
    int *ids = malloc((size_t)n * sizeof *ids);
    unsigned long long r = 12345;
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = 1 + (int)((r >> 33) % (unsigned long long)(c->vocab_size - 1));
    }
    double tpp[99], ttg[99], cpp[99], ctg[99];
    const float *logits;
    for (int k = 0; k < reps; k++) {
        q35_session_reset(s);
        double t0 = bench_now(), c0 = bench_cpu();
        if (pp > 0 && q35_session_eval_batch(s, ids, pp, NULL, &logits, &err)) goto fail;
        tpp[k] = bench_now() - t0;
        cpp[k] = bench_cpu() - c0;
        q35_session_reset(s);
        if (depth > 0 && q35_session_eval_batch(s, ids, depth, NULL, &logits, &err)) goto fail;
        t0 = bench_now(), c0 = bench_cpu();
        for (int i = 0; i < tg; i++)
            if (q35_session_eval(s, ids[depth + i], &logits, &err)) goto fail;
        ttg[k] = bench_now() - t0;
        ctg[k] = bench_cpu() - c0;
    }
    qsort(tpp, (size_t)reps, sizeof tpp[0], bench_cmp_double);
    qsort(ttg, (size_t)reps, sizeof ttg[0], bench_cmp_double);
    qsort(cpp, (size_t)reps, sizeof cpp[0], bench_cmp_double);
    qsort(ctg, (size_t)reps, sizeof ctg[0], bench_cmp_double);
    printf("%s threads %d batch %d KV %s: pp%d %.2f tok/s (%.2f per CPU s) | tg%d at depth %d "
           "%.2f tok/s (%.2f per CPU s)\n",
           q35_session_device(s), threads, batch, kv_name, pp, pp / tpp[reps / 2], pp / cpp[reps / 2],
           tg, depth, tg / ttg[reps / 2], tg / ctg[reps / 2]);
    free(ids);
    q35_session_free(s);
    q35_model_free(m);
    return 0;
fail:
    fprintf(stderr, "prefill_bench: %s\n", err.msg);
    return 1;
}
