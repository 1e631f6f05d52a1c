/* cmd_quantize.c — `q35 quantize IN OUT --type Q3_5 [--imatrix FILE |
 * --calib TEXT] [--threads N] ...`: a progress bar while it works, then per
 * tensor and in total the bits per weight and the relative weight RMSE.
 * With --calib the model first runs over the calibration text, collecting
 * each matrix input's H = sum x x^T, and every matrix is quantized with
 * GPTQ error feedback. The output is written to a temp file beside OUT and
 * renamed when complete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

typedef struct report {
    double t0;
    int verbose;  /* per-tensor lines */
} report;

static void on_tensor(void *user, int done, int total, const char *name, const char *type,
                      double bpw, double rel_rmse) {
    report *r = user;
    if (r->verbose)
        fprintf(stderr, "\r%-32s %-5s %7.4f bpw  rel. RMSE %6.2f%%\n", name, type, bpw, 100 * rel_rmse);
    const int width = 30, filled = done * width / total;
    fprintf(stderr, "\r[%.*s%*s] %3d%% %d/%d tensors %.0fs", filled, "==============================",
            width - filled, "", done * 100 / total, done, total, cli_now() - r->t0);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* Runs m over the documents of path (up to max_tokens tokens, 0 = all)
 * collecting the Hessians into a new *im. Returns 0, or 1 after an error. */
static int calibrate(const char *C, q35_model *m, const char *path, long max_tokens, int threads,
                     q35_imatrix **im) {
    q35_error err = {0};
    q35_session *s = NULL;
    char *text = NULL;
    size_t len = 0;
    cli_doc *docs = NULL;
    int n_docs = 0, status = 1;
    *im = NULL;
    if (cli_read_text(C, path, &text, &len) || (n_docs = cli_split_docs(C, path, text, len, &docs)) <= 0)
        goto done;
    if (q35_session_new(&s, m, threads, &err) || q35_imatrix_new_hessian(im, m, threads, &err)) {
        cli_error(C, "%s", err.msg);
        goto done;
    }
    q35_session_set_imatrix(s, *im);
    const int seq = q35_model_config(m)->seq_len;
    const double t0 = cli_now();
    for (int d = 0; d < n_docs && (!max_tokens || q35_imatrix_tokens(*im) < max_tokens); d++) {
        int *ids = NULL, n = 0;
        if (q35_tokenize(m, docs[d].text, docs[d].len, 1, &ids, &n, &err)) {
            cli_error(C, "%s: %s", path, err.msg);
            goto done;
        }
        q35_session_reset(s);
        const float *logits;
        for (int i = 0; i < n && i < seq && (!max_tokens || q35_imatrix_tokens(*im) < max_tokens); i++)
            if (q35_session_eval(s, ids[i], &logits, &err)) break;
        free(ids);
        fprintf(stderr, "\rcalibration: %d/%d documents, %lld tokens, %.0fs", d + 1, n_docs,
                (long long)q35_imatrix_tokens(*im), cli_now() - t0);
    }
    fputc('\n', stderr);
    status = 0;
done:
    q35_session_free(s);
    free(docs);
    free(text);
    if (status) {
        q35_imatrix_free(*im);
        *im = NULL;
    }
    return status;
}

int cmd_quantize(int argc, char **argv) {
    const char *C = "quantize", *in = NULL, *out = NULL, *tok = NULL, *calib = NULL;
    q35_quant_options o;
    memset(&o, 0, sizeof o);
    long threads = 0, calib_tokens = 0, passes = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: q35 quantize IN OUT --type Q2_5|Q3_5|Q4_5|Q8_S [--imatrix FILE] [--threads N]\n"
                   "       [--calib TEXT [--calib-tokens N] [--calib-passes N] [--damp X]]\n"
                   "       [--tensor-type PATTERN=TYPE,...]\n"
                   "       [--bpw-budget B]\n"
                   "       [--token-embedding-type T] [--output-tensor-type T] [--tokenizer FILE]\n"
                   "  IN: llama2.c .bin, GGUF, or a Hugging Face folder. The embedding and\n"
                   "  classifier types default to --type (a tied classifier takes the output type).\n"
                   "  --calib: run IN over TEXT (documents split by blank lines), then quantize\n"
                   "  each matrix with GPTQ error feedback through its inputs' H = sum x x^T\n"
                   "  (importance from its diagonal; replaces --imatrix). --calib-passes N (1):\n"
                   "  pass k > 1 collects H on pass k-1's quantized model. --damp: H's diagonal\n"
                   "  damping relative to its mean (0.03). --tensor-type: tensors whose name\n"
                   "  contains PATTERN get TYPE (first match wins), e.g. ffn_down=Q4_5.\n"
                   "  --bpw-budget B: raise tensors not set by a flag one type up (embedding and\n"
                   "  classifier, attn_v, attn_k, ffn_up, ffn_down, attn_output, ffn_gate, attn_q;\n"
                   "  first layers first) while all 2-D tensors stay within B bits per weight.\n");
            return 0;
        } else if (!strcmp(a, "--type")) {
            if (!(o.type = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--token-embedding-type")) {
            if (!(o.embed_type = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--output-tensor-type")) {
            if (!(o.output_type = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--tensor-type")) {
            if (!(o.tensor_types = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--imatrix")) {
            if (!(o.imatrix_path = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--calib")) {
            if (!(calib = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--calib-tokens")) {
            const char *v = cli_value(C, argc, argv, &i);
            if (!v || cli_int(C, a, v, 1, 1L << 40, &calib_tokens)) return 1;
        } else if (!strcmp(a, "--calib-passes")) {
            const char *v = cli_value(C, argc, argv, &i);
            if (!v || cli_int(C, a, v, 1, 8, &passes)) return 1;
        } else if (!strcmp(a, "--damp")) {
            const char *v = cli_value(C, argc, argv, &i);
            if (!v || cli_float(C, a, v, 1e-9, 100.0, &o.damp)) return 1;
        } else if (!strcmp(a, "--bpw-budget")) {
            const char *v = cli_value(C, argc, argv, &i);
            if (!v || cli_float(C, a, v, 2.0, 9.0, &o.bpw_budget)) return 1;
        } else if (!strcmp(a, "--tokenizer")) {
            if (!(tok = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *v = cli_value(C, argc, argv, &i);
            if (!v || cli_int(C, a, v, 1, 1024, &threads)) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_error(C, "unknown flag '%s' (see q35 quantize --help)", a);
        } else if (cli_positional(C, a, &in, &out)) {
            return 1;
        }
    }
    if (!in || !out) return cli_error(C, "usage: q35 quantize IN OUT --type Q3_5");
    if (!o.type) return cli_error(C, "--type is required (Q2_5, Q3_5, Q4_5 or Q8_S)");
    if (strcmp(o.type, "Q2_5") && strcmp(o.type, "Q3_5") && strcmp(o.type, "Q4_5") && strcmp(o.type, "Q8_S"))
        return cli_error(C, "--type %s: choose Q2_5, Q3_5, Q4_5 or Q8_S", o.type);
    if (calib && o.imatrix_path)
        return cli_error(C, "--calib and --imatrix: give one (--calib collects its own importance)");
    if (!calib && (calib_tokens || o.damp > 0 || passes))
        return cli_error(C, "%s needs --calib TEXT", calib_tokens ? "--calib-tokens" : passes ? "--calib-passes" : "--damp");
    if (!passes) passes = 1;
    if (cli_check_output(C, out)) return 1;
    if (calib && access(calib, R_OK)) return cli_error(C, "--calib %s: cannot read it", calib);
    if (threads <= 0) threads = cli_cores();
    q35_model *m;
    q35_error err = {0};
    if (q35_model_load(&m, in, tok, &err)) return cli_error(C, "%s", err.msg);
    report r = {cli_now(), 1};
    o.n_threads = (int)threads;
    o.progress = on_tensor;
    o.user = &r;
    double bpw = 0, rmse = 0;
    int rc = 0;
    /* pass 1 calibrates on IN; each further pass on the previous pass's
     * output (a temp file beside OUT), so each matrix sees the inputs that
     * the quantized layers before it give */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.calib-pass.gguf", out);
    q35_model *src = m;
    for (long pass = 1; pass <= (calib ? passes : 1) && !rc; pass++) {
        if (calib && calibrate(C, src, calib, calib_tokens, (int)threads, &o.calib)) {
            rc = -1;
            break;
        }
        const int last = !calib || pass == passes;
        r.verbose = last;
        rc = q35_quantize_model_opts(m, last ? out : tmp, &o, &bpw, &rmse, &err);
        q35_imatrix_free(o.calib);
        o.calib = NULL;
        if (src != m) q35_model_free(src);
        src = m;
        if (!rc && !last && q35_model_load(&src, tmp, NULL, &err)) {
            src = m;
            rc = 1;
        }
    }
    if (src != m) q35_model_free(src);
    if (calib) remove(tmp);
    if (rc < 0) {
        q35_model_free(m);
        return 1;
    }
    q35_model_free(m);
    if (rc) return cli_error(C, "%s", err.msg);
    printf("%s: %s, 2-D tensors %.4f bits per weight, relative RMSE %.2f%%, %.1f s\n", out, o.type, bpw,
           100 * rmse, cli_now() - r.t0);
    return 0;
}
