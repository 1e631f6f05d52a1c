/* cmd_perplexity.c — `q35 perplexity`: the text's documents (separated by
 * blank lines) are each scored as BOS + their tokens, truncated at the
 * model's context, every next-token prediction counted. Documents are
 * shared out over threads, one single-threaded session each (they all
 * read one model), and their sums added in document order, so the result
 * does not depend on the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 perplexity -m MODEL -f TEXT [--tokenizer FILE] [-t THREADS] [--chunks N]\n"
            "  --chunks N: score only the first N documents\n"
            "  prints tokens scored, mean negative log-likelihood (nats/token), perplexity\n");
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

int cmd_perplexity(int argc, char **argv) {
    const char *C = "perplexity";
    const char *model_path = NULL, *tok_path = NULL, *text_path = NULL;
    long threads = 0, chunks = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model_path = v; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); tok_path = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); text_path = v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (cli_int(C, a, v, 1, 1024, &threads)) return 1; }
        else if (!strcmp(a, "--chunks")) { VAL(); if (cli_int(C, a, v, 1, 1L << 30, &chunks)) return 1; }
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
    if (threads <= 0) threads = cli_cores();

    q35_error err = {0};
    q35_model *m = NULL;
    char *text = NULL;
    size_t text_len = 0;
    cli_doc *docs = NULL;
    double *nll = NULL;
    long *count = NULL;
    int status = 1;
    if (q35_model_load(&m, model_path, tok_path, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    if (cli_read_text(C, text_path, &text, &text_len)) goto done;
    int n_docs = cli_split_docs(C, text_path, text, text_len, &docs);
    if (n_docs <= 0) goto done;
    if (chunks > 0 && chunks < n_docs) n_docs = (int)chunks;
    nll = calloc((size_t)n_docs, sizeof *nll);
    count = calloc((size_t)n_docs, sizeof *count);
    if (!nll || !count) {
        cli_error(C, "out of memory");
        goto done;
    }

    const q35_config *cfg = q35_model_config(m);
    const int V = cfg->vocab_size;
    int failed = 0, done_docs = 0;
    double t0 = cli_now(), last_shown = 0;
#pragma omp parallel num_threads((int)threads)
    {
        q35_session *s = NULL;
        q35_error terr = {0};
        if (q35_session_new(&s, m, 1, &terr)) {
#pragma omp critical
            { if (!failed) cli_error(C, "%s", terr.msg); failed = 1; }
        }
#pragma omp for schedule(dynamic, 1)
        for (int d = 0; d < n_docs; d++) {
            if (!s || failed) continue;
            int *ids = NULL, n = 0;
            if (q35_tokenize(m, docs[d].text, docs[d].len, 1, &ids, &n, &terr)) {
#pragma omp critical
                { if (!failed) cli_error(C, "%s", terr.msg); failed = 1; }
                continue;
            }
            if (n > cfg->seq_len) n = cfg->seq_len;
            q35_session_reset(s);
            double sum = 0.0;
            const float *logits;
            for (int i = 0; i + 1 < n; i++) {
                if (q35_session_eval(s, ids[i], &logits, &terr)) break;
                /* -log softmax(logits)[ids[i+1]], in double */
                float max = logits[0];
                for (int j = 1; j < V; j++) if (logits[j] > max) max = logits[j];
                double z = 0.0;
                for (int j = 0; j < V; j++) z += exp((double)logits[j] - (double)max);
                sum += log(z) - ((double)logits[ids[i + 1]] - (double)max);
            }
            nll[d] = sum;
            count[d] = n > 1 ? n - 1 : 0;
            free(ids);
#pragma omp critical
            {
                done_docs++;
                double now = cli_now();
                if (now - last_shown > 0.25 || done_docs == n_docs) {
                    progress(done_docs, n_docs, t0);
                    last_shown = now;
                }
            }
        }
        q35_session_free(s);
    }
    if (failed) goto done;
    double total = 0.0;
    long tokens = 0;
    for (int d = 0; d < n_docs; d++) {
        total += nll[d];
        tokens += count[d];
    }
    if (tokens == 0) {
        cli_error(C, "%s: no token to predict (every document is a single token)", text_path);
        goto done;
    }
    double mean = total / (double)tokens, secs = cli_now() - t0;
    printf("documents: %d\ntokens scored: %ld\nmean NLL: %.6f nats/token\nperplexity: %.4f\n",
           n_docs, tokens, mean, exp(mean));
    fprintf(stderr, "%.1f s, %.0f tokens/s with %ld threads\n", secs, tokens / secs, threads);
    status = 0;
done:
    free(nll);
    free(count);
    free(docs);
    free(text);
    q35_model_free(m);
    return status;
}
