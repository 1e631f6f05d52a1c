/* cmd_synth.c — `q35 synth --shape NAME --type TYPE OUT.gguf`: a model with
 * a real model's exact shape and random weights (q35_synth_model), for
 * speed work only; written as it is generated (a file atomically, a device
 * or FIFO directly). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: q35 synth --shape NAME [--type TYPE] [--seed N] [flags] OUT.gguf\n"
            "  a model with random weights in a real model's shape, for speed work only\n"
            "  --shape NAME      %s\n"
            "  --type TYPE       F32, F16, Q2_5, Q3_5, Q4_5 or Q8_S for the matrices (default Q3_5)\n"
            "  --seed N          the same seed gives the same file (default 1)\n"
            "  --dry-run         print the file's size and write nothing\n"
            "  --dim N, --hidden N, --layers N, --heads N, --kv-heads N, --vocab N, --ctx N,\n"
            "  --rope-theta F    change one hyperparameter of the shape\n",
            q35_synth_shape_names());
}

int cmd_synth(int argc, char **argv) {
    const char *C = "synth", *shape = NULL, *type = "Q3_5", *out = NULL;
    uint64_t seed = 1;
    int dry = 0;
    struct { const char *flag; long value; int set; } ov[] = {
        {"--dim", 0, 0}, {"--hidden", 0, 0}, {"--layers", 0, 0}, {"--heads", 0, 0},
        {"--kv-heads", 0, 0}, {"--vocab", 0, 0}, {"--ctx", 0, 0},
    };
    const int n_ov = (int)(sizeof ov / sizeof ov[0]);
    double theta = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, &i))) return 1
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--shape")) { VAL(); shape = v; }
        else if (!strcmp(a, "--type")) { VAL(); type = v; }
        else if (!strcmp(a, "--seed")) { VAL(); if (cli_u64(C, a, v, &seed)) return 1; }
        else if (!strcmp(a, "--dry-run")) dry = 1;
        else if (!strcmp(a, "--rope-theta")) { VAL(); if (cli_float(C, a, v, 1.0, 1e12, &theta)) return 1; }
        else if (a[0] == '-' && a[1]) {
            int k = 0;
            while (k < n_ov && strcmp(a, ov[k].flag)) k++;
            if (k == n_ov) return cli_error(C, "unknown flag '%s' (see q35 synth --help)", a);
            VAL();
            if (cli_int(C, a, v, 1, 1L << 24, &ov[k].value)) return 1;
            ov[k].set = 1;
        } else if (out) {
            return cli_error(C, "unexpected argument '%s' (one output file)", a);
        } else {
            out = a;
        }
#undef VAL
    }
    if (!shape) return cli_error(C, "--shape is required: one of %s", q35_synth_shape_names());
    q35_config cfg;
    if (q35_synth_shape(shape, &cfg))
        return cli_error(C, "--shape %s: unknown shape (known: %s)", shape, q35_synth_shape_names());
    const int plain_heads = cfg.head_dim * cfg.n_heads == cfg.dim; /* head size follows --dim/--heads */
    int *fields[] = {&cfg.dim, &cfg.hidden_dim, &cfg.n_layers, &cfg.n_heads, &cfg.n_kv_heads,
                     &cfg.vocab_size, &cfg.seq_len};
    for (int k = 0; k < n_ov; k++)
        if (ov[k].set) *fields[k] = (int)ov[k].value;
    if (theta > 0) cfg.rope_theta = (float)theta;
    if (plain_heads && cfg.n_heads > 0) cfg.head_dim = cfg.dim / cfg.n_heads;
    if (!out && !dry) return cli_error(C, "no output file (usage: q35 synth --shape NAME [--type TYPE] OUT.gguf)");
    if (out && !dry && cli_check_output(C, out, 0)) return 1;

    q35_error err = {0};
    uint64_t bytes = 0;
    const double t0 = cli_now();
    if (q35_synth_model_shape(out, shape, &cfg, type, seed, dry ? Q35_SYNTH_DRY_RUN : 0, &bytes, &err))
        return cli_error(C, "%s", err.msg);
    const double secs = cli_now() - t0;
    const uint64_t d = (uint64_t)cfg.dim, kvd = (uint64_t)cfg.n_kv_heads * (uint64_t)cfg.head_dim,
                   qd = (uint64_t)cfg.n_heads * (uint64_t)cfg.head_dim;
    const uint64_t params = (2 - (uint64_t)cfg.shared_classifier) * (uint64_t)cfg.vocab_size * d + d +
                            (uint64_t)cfg.n_layers * (2 * d + 2 * d * qd + 2 * d * kvd + 3 * d * (uint64_t)cfg.hidden_dim);
    FILE *rep = cli_report_stream(dry ? NULL : out);
    char size[32];
    q35_bytes_text(bytes, size, sizeof size);
    fprintf(rep, "%s%s: %s shape, %s, seed %llu: dim %d, hidden %d, %d layers, %d heads, %d KV heads, "
            "vocab %d, context %d: %llu weights, %llu bytes (%s)",
            dry ? "would write " : "wrote ", out ? out : "(dry run)", shape, type,
            (unsigned long long)seed, cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads,
            cfg.n_kv_heads, cfg.vocab_size, cfg.seq_len, (unsigned long long)params, (unsigned long long)bytes,
            size);
    if (!dry) fprintf(rep, " in %.1f s", secs);
    fputc('\n', rep);
    return 0;
}
