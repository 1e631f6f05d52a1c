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

typedef struct doc {
    const char *text;
    size_t len;
} doc;

/* Splits text at every "\n\n" (a blank line), keeping each document's
 * bytes as they are: inner newlines stay, and the last document keeps the
 * file's final newline (the same split as Python's text.split("\n\n"),
 * which the reference figures used). Pieces of only whitespace are
 * skipped. */
static int split_docs(const char *text, size_t len, doc **out) {
    int n = 0, cap = 64;
    doc *d = malloc((size_t)cap * sizeof *d);
    if (!d) return -1;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        int sep = i + 1 < len && text[i] == '\n' && text[i + 1] == '\n';
        if (i < len && !sep) continue;
        int blank = 1;
        for (size_t j = start; j < i && blank; j++)
            blank = text[j] == ' ' || text[j] == '\n' || text[j] == '\t' || text[j] == '\r';
        if (!blank) {
            if (n == cap) {
                doc *g = realloc(d, (size_t)(cap *= 2) * sizeof *g);
                if (!g) {
                    free(d);
                    return -1;
                }
                d = g;
            }
            d[n++] = (doc){text + start, i - start};
        }
        start = i + 2;
        i++; /* past the separator's second newline */
    }
    *out = d;
    return n;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 perplexity -m MODEL -f TEXT [--tokenizer FILE] [-t THREADS]\n"
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
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model_path = v; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); tok_path = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); text_path = v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (cli_int(C, a, v, 1, 1024, &threads)) return 1; }
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
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? n : 1;
    }

    q35_error err = {0};
    q35_model *m = NULL;
    char *text = NULL;
    size_t text_len = 0;
    doc *docs = NULL;
    double *nll = NULL;
    long *count = NULL;
    int status = 1;
    if (q35_model_load(&m, model_path, tok_path, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    FILE *f = fopen(text_path, "rb");
    if (!f) {
        cli_error(C, "%s: cannot open", text_path);
        goto done;
    }
    size_t cap = 1 << 16;
    text = malloc(cap);
    for (size_t got; text && (got = fread(text + text_len, 1, cap - text_len, f)) > 0;) {
        text_len += got;
        if (text_len == cap) {
            char *g = realloc(text, cap *= 2);
            if (!g) { free(text); text = NULL; }
            text = g;
        }
    }
    fclose(f);
    if (!text) {
        cli_error(C, "%s: out of memory", text_path);
        goto done;
    }
    int n_docs = split_docs(text, text_len, &docs);
    if (n_docs < 0) {
        cli_error(C, "out of memory");
        goto done;
    }
    if (n_docs == 0) {
        cli_error(C, "%s: no text to score (empty, or only blank lines)", text_path);
        goto done;
    }
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
