/* cmd_convert.c — `q35 convert IN OUT.gguf [--type F32|F16]`: any model q35
 * loads, written as GGUF with its hyperparameters and tokenizer, as
 * q35_outfile writes (q35.h: a file atomically, a device or FIFO such as
 * /dev/stdout directly). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cmd_convert(int argc, char **argv) {
    const char *C = "convert", *in = NULL, *out = NULL, *tok = NULL, *type = "F32";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: q35 convert IN OUT.gguf [--type F32|F16] [--tokenizer FILE]\n");
            return 0;
        } else if (!strcmp(a, "--type")) {
            if (!(type = cli_value(C, argc, argv, &i))) return 1;
            if (strcmp(type, "F32") && strcmp(type, "F16") && strcmp(type, "f32") && strcmp(type, "f16"))
                return cli_error(C, "--type %s: choose F32 or F16", type);
        } else if (!strcmp(a, "--tokenizer")) {
            if (!(tok = cli_value(C, argc, argv, &i))) return 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_error(C, "unknown flag '%s' (see q35 convert --help)", a);
        } else if (cli_positional(C, a, &in, &out)) {
            return 1;
        }
    }
    if (!in || !out) return cli_error(C, "usage: q35 convert IN OUT.gguf [--type F32|F16]");
    if (cli_check_output(C, out, 0)) return 1;
    q35_model *m;
    q35_error err = {0};
    if (cli_load_model(C, in, tok, 0, "F32", &m)) return 1;
    int rc = q35_model_save_gguf(m, out, type, &err);
    q35_model_free(m);
    if (rc) return cli_error(C, "%s", err.msg);
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}
