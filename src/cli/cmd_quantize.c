/* cmd_quantize.c — `q35 quantize IN OUT --type Q3_5 [--imatrix FILE |
 * --calib TEXT] [--threads N] ...`: a progress bar while it works, then per
 * tensor and in total the bits per weight and the relative weight RMSE.
 * With --calib the model first runs over the calibration text, collecting
 * each matrix input's H = sum x x^T, and every matrix is quantized with
 * GPTQ error feedback, then the block scales and norm weights are tuned end
 * to end on the same text (--tune-epochs). The output is written as
 * q35_outfile writes (q35.h: a file atomically, a device or FIFO
 * directly); calibration's stage files go beside it, or in $TMPDIR when
 * OUT is a device or FIFO. */
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

static void on_calib(void *user, int stage, int stages, int docs_done, int n_docs, int64_t tokens) {
    report *r = user;
    fprintf(stderr, "\rcalibration, stage %d/%d: %d/%d documents, %lld tokens, %.0fs   ", stage, stages, docs_done,
            n_docs, (long long)tokens, cli_now() - r->t0);
    fflush(stderr);
}

static void on_tune(void *user, int epoch, int epochs, int docs_done, int n_docs, double kl) {
    report *r = user;
    fprintf(stderr, "\rtuning, pass %d/%d: %d/%d documents, KL %.4f, %.0fs   ", epoch, epochs, docs_done, n_docs,
            kl, cli_now() - r->t0);
    if (epoch == epochs && docs_done == n_docs) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_quantize(int argc, char **argv) {
    const char *C = "quantize", *in = NULL, *out = NULL, *tok = NULL, *calib = NULL;
    q35_quant_options o;
    memset(&o, 0, sizeof o);
    long threads = 0, calib_tokens = 0, tune = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: q35 quantize IN OUT --type Q2_5|Q3_5|Q4_5|Q8_S [--imatrix FILE] [--threads N]\n"
                   "       [--calib TEXT [--calib-tokens N] [--calib-fast] [--damp X]\n"
                   "        [--tune-epochs N] [--tune-lr X]]\n"
                   "       [--tensor-type PATTERN=TYPE,...]\n"
                   "       [--bpw-budget B]\n"
                   "       [--token-embedding-type T] [--output-tensor-type T] [--tokenizer FILE]\n"
                   "  IN: llama2.c .bin, GGUF, or a Hugging Face folder. The embedding and\n"
                   "  classifier types default to --type (a tied classifier takes the output type).\n"
                   "  --calib: quantize each matrix with GPTQ error feedback through its inputs'\n"
                   "  H = sum x x^T from running TEXT (documents split by blank lines) through the\n"
                   "  model, sequentially: layer by layer (q/k/v, attn_output, gate/up, down),\n"
                   "  each part calibrated on the model with the parts before it quantized and\n"
                   "  fitted to the unquantized model's outputs (importance from H's diagonal;\n"
                   "  replaces --imatrix). --calib-tokens N: at most N tokens. --calib-fast: one\n"
                   "  run through the unquantized model instead (faster, worse). --damp: H's diagonal\n"
                   "  damping relative to its mean (0.1; 0.3 for Q2_5; 0.03 with --calib-fast).\n"
                   "  Then, with the codes fixed, the block scales and norm weights are tuned end to\n"
                   "  end on TEXT towards the unquantized model's next-token distributions (KL):\n"
                   "  --tune-epochs N passes (2 where the tuner needs at most 4 GiB, else 0; 0: off),\n"
                   "  then one pass of the norms with the scales on the format's grid. --tune-lr:\n"
                   "  its Adam step (0.005).\n"
                   "  --tensor-type: tensors whose name contains PATTERN get TYPE (first match\n"
                   "  wins), e.g. ffn_down=Q4_5.\n"
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
        } else if (!strcmp(a, "--calib-fast")) {
            o.calib_fast = 1;
        } else if (!strcmp(a, "--tune-epochs")) {
            const char *v = cli_value(C, argc, argv, &i);
            if (!v || cli_int(C, a, v, 0, 100, &tune)) return 1;
        } else if (!strcmp(a, "--tune-lr")) {
            const char *v = cli_value(C, argc, argv, &i);
            if (!v || cli_float(C, a, v, 1e-6, 1.0, &o.tune_lr)) return 1;
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
    if (!calib && (calib_tokens || o.damp > 0 || o.calib_fast || tune >= 0 || o.tune_lr > 0))
        return cli_error(C, "%s needs --calib TEXT",
                         calib_tokens ? "--calib-tokens" : o.calib_fast ? "--calib-fast" : o.damp > 0 ? "--damp"
                                                          : tune >= 0 ? "--tune-epochs" : "--tune-lr");
    if (tune == 0 && o.tune_lr > 0) return cli_error(C, "--tune-lr with --tune-epochs 0: nothing is tuned");
    if (cli_check_output(C, out, 0)) return 1;
    if (calib && access(calib, R_OK)) return cli_error(C, "--calib %s: cannot read it", calib);
    if (threads <= 0) threads = cli_cores();
    char *text = NULL;
    size_t len = 0;
    cli_doc *docs = NULL;
    const char **texts = NULL;
    size_t *lens = NULL;
    int n_docs = 0;
    if (calib) {
        if (cli_read_text(C, calib, &text, &len) || (n_docs = cli_split_docs(C, calib, text, len, &docs)) <= 0) {
            free(text);
            return 1;
        }
        texts = malloc((size_t)n_docs * sizeof *texts);
        lens = malloc((size_t)n_docs * sizeof *lens);
        for (int d = 0; texts && lens && d < n_docs; d++) {
            texts[d] = docs[d].text;
            lens[d] = docs[d].len;
        }
    }
    q35_model *m = NULL;
    q35_error err = {0};
    if (calib && (!texts || !lens)) snprintf(err.msg, sizeof err.msg, "out of memory");
    int rc = calib && (!texts || !lens) ? 1 : 0;
    /* without calibration the input is read tensor by tensor from its file
     * as the output is written (inspected: nothing converted at load); with
     * it the model runs, its matrices expanded to fp32 exactly */
    if (!rc && cli_load_model(C, in, tok, calib ? 0 : Q35_OPEN_INSPECT, calib ? "F32" : NULL, &m)) {
        free(texts);
        free(lens);
        free(docs);
        free(text);
        return 1;
    }
    report r = {cli_now(), 1};
    o.n_threads = (int)threads;
    o.progress = on_tensor;
    o.calib_progress = on_calib;
    o.tune_progress = on_tune;
    o.tune_epochs = tune < 0 ? 0 : tune == 0 ? -1 : (int)tune;
    o.user = &r;
    o.calib_docs = texts;
    o.calib_lens = lens;
    o.calib_n_docs = n_docs;
    o.calib_tokens = calib_tokens;
    o.scratch_dir = getenv("TMPDIR"); /* for stage files when OUT is a device or FIFO */
    double bpw = 0, rmse = 0;
    if (!rc) rc = q35_quantize_model_opts(m, out, &o, &bpw, &rmse, &err);
    q35_model_free(m);
    free(texts);
    free(lens);
    free(docs);
    free(text);
    if (rc) return cli_error(C, "%s", err.msg);
    fprintf(cli_report_stream(out), "%s: %s, 2-D tensors %.4f bits per weight, relative RMSE %.2f%%, %.1f s\n", out,
            o.type, bpw, 100 * rmse, cli_now() - r.t0);
    return 0;
}
