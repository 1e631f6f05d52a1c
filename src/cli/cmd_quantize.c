/* cmd_quantize.c — `q35 quantize IN OUT --type Q3_5 [--imatrix FILE]
 * [--threads N]`: a progress bar while it works, then per tensor and in
 * total the bits per weight and the relative weight RMSE. The output is
 * written to a temp file beside OUT and renamed when complete. */
#include <stdio.h>
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

int cmd_quantize(int argc, char **argv) {
    const char *C = "quantize", *in = NULL, *out = NULL, *type = NULL, *imatrix = NULL, *tok = NULL;
    const char *embed_type = NULL, *output_type = NULL;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: q35 quantize IN OUT --type Q2_5|Q3_5|Q4_5|Q8_S [--imatrix FILE] [--threads N]\n"
                   "       [--token-embedding-type T] [--output-tensor-type T] [--tokenizer FILE]\n"
                   "  IN: llama2.c .bin, GGUF, or a Hugging Face folder. The embedding and\n"
                   "  classifier types default to --type (a tied classifier takes the output type).\n");
            return 0;
        } else if (!strcmp(a, "--type")) {
            if (!(type = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--token-embedding-type")) {
            if (!(embed_type = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--output-tensor-type")) {
            if (!(output_type = cli_value(C, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--imatrix")) {
            if (!(imatrix = cli_value(C, argc, argv, &i))) return 1;
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
    if (!type) return cli_error(C, "--type is required (Q2_5, Q3_5, Q4_5 or Q8_S)");
    if (strcmp(type, "Q2_5") && strcmp(type, "Q3_5") && strcmp(type, "Q4_5") && strcmp(type, "Q8_S"))
        return cli_error(C, "--type %s: choose Q2_5, Q3_5, Q4_5 or Q8_S", type);
    if (cli_check_output(C, out)) return 1;
    if (threads <= 0) threads = cli_cores();
    q35_model *m;
    q35_error err = {0};
    if (q35_model_load(&m, in, tok, &err)) return cli_error(C, "%s", err.msg);
    report r = {cli_now(), 1};
    double bpw = 0, rmse = 0;
    int rc = q35_quantize_model_types(m, out, type, embed_type, output_type, imatrix, (int)threads,
                                      on_tensor, &r, &bpw, &rmse, &err);
    q35_model_free(m);
    if (rc) return cli_error(C, "%s", err.msg);
    printf("%s: %s, 2-D tensors %.4f bits per weight, relative RMSE %.2f%%, %.1f s\n", out, type, bpw,
           100 * rmse, cli_now() - r.t0);
    return 0;
}
