/* cmd_imatrix.c — `q35 imatrix -m MODEL -f TEXT -o FILE`: runs the engine
 * over the text's documents (as perplexity does) and saves each matrix
 * input channel's mean squared activation, for `q35 quantize --imatrix`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int cmd_imatrix(int argc, char **argv) {
    const char *C = "imatrix", *model_path = NULL, *text_path = NULL, *out = NULL, *tok = NULL, *convert = NULL;
    long threads = 0, max_tokens = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: q35 imatrix -m MODEL -f TEXT -o FILE [--tokenizer FILE] [--max-tokens N] [-t N]\n"
                   "                  [--convert-type T]\n" CLI_CONVERT_HELP);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); model_path = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); text_path = v; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { VAL(); out = v; }
        else if (!strcmp(a, "--tokenizer")) { VAL(); tok = v; }
        else if (!strcmp(a, "--convert-type")) { VAL(); convert = v; }
        else if (!strcmp(a, "--max-tokens")) { VAL(); if (cli_int(C, a, v, 1, 1L << 40, &max_tokens)) return 1; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (cli_int(C, a, v, 1, 1024, &threads)) return 1; }
        else return cli_error(C, "unknown flag '%s' (see q35 imatrix --help)", a);
#undef VAL
    }
    if (!model_path) return cli_error(C, "no model: give -m FILE");
    if (!text_path) return cli_error(C, "no text: give -f FILE");
    if (!out) return cli_error(C, "no output: give -o FILE");
    if (cli_check_output(C, out, 0)) return 1;
    q35_error err = {0};
    q35_model *m = NULL;
    q35_session *s = NULL;
    q35_imatrix *im = NULL;
    char *text = NULL;
    size_t len = 0;
    int status = 1, n_docs = 0;
    cli_doc *docs = NULL;
    q35_session_params sp;
    if (cli_session_params(C, &sp) || cli_load_model(C, model_path, tok, 0, convert, &m)) goto done;
    sp.n_threads = (int)threads;
    if (q35_session_new_params(&s, m, &sp, &err) || q35_imatrix_new(&im, m, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    if (cli_read_text(C, text_path, &text, &len) || (n_docs = cli_split_docs(C, text_path, text, len, &docs)) <= 0)
        goto done;
    q35_session_set_imatrix(s, im);
    const int seq = q35_model_config(m)->seq_len;
    double t0 = cli_now();
    for (int d = 0; d < n_docs && (!max_tokens || q35_imatrix_tokens(im) < max_tokens); d++) {
        int *ids = NULL, n = 0;
        if (q35_tokenize(m, docs[d].text, docs[d].len, 1, &ids, &n, &err)) {
            cli_error(C, "%s", err.msg);
            goto done;
        }
        q35_session_reset(s);
        const float *logits;
        for (int i = 0; i < n && i < seq; i++)
            if (q35_session_eval(s, ids[i], &logits, &err)) break;
        free(ids);
        fprintf(stderr, "\r%d/%d documents, %lld tokens, %.0fs", d + 1, n_docs,
                (long long)q35_imatrix_tokens(im), cli_now() - t0);
    }
    fputc('\n', stderr);
    if (q35_imatrix_save(im, out, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    fprintf(cli_report_stream(out), "%s: importance of every matrix input from %lld tokens\n", out,
            (long long)q35_imatrix_tokens(im));
    status = 0;
done:
    free(docs);
    free(text);
    q35_imatrix_free(im);
    q35_session_free(s);
    q35_model_free(m);
    return status;
}
