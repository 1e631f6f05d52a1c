/* synth_model.c — writes a synthetic LLaMA-shaped model with random weights
 * (bench/synth.h) as GGUF, llama2-7b's shape unless told otherwise:
 *   synth_model OUT.gguf [--type Q3_5|Q2_5|Q4_5|Q8_S|F32] [--seed N]
 *               [--dim D --hidden H --layers L --heads N --kv-heads N
 *                --vocab V --ctx C]
 * (4096 x 11008 x 32 layers x 32 heads x 32000 tokens, Q3_5: about 2.9 GB.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: synth_model OUT.gguf [--type Q3_5] [--seed N] [--dim D] [--hidden H] "
                "[--layers L] [--heads N] [--kv-heads N] [--vocab V] [--ctx C]\n");
        return argc < 2;
    }
    q35_synth_shape sh = q35_synth_llama2_7b;
    const char *type = "Q3_5";
    unsigned long long seed = 1;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "synth_model: %s needs a value\n", argv[i]);
            return 1;
        }
        const char *a = argv[i], *v = argv[++i];
        int *field = !strcmp(a, "--dim") ? &sh.dim : !strcmp(a, "--hidden") ? &sh.hidden
                   : !strcmp(a, "--layers") ? &sh.layers : !strcmp(a, "--heads") ? &sh.heads
                   : !strcmp(a, "--kv-heads") ? &sh.kv_heads : !strcmp(a, "--vocab") ? &sh.vocab
                   : !strcmp(a, "--ctx") ? &sh.ctx : NULL;
        if (field) *field = atoi(v);
        else if (!strcmp(a, "--type")) type = v;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "synth_model: unknown flag '%s'\n", a);
            return 1;
        }
    }
    const int dtype = q35_dtype_by_name(type);
    if (dtype != Q35_DTYPE_F32 && !q35_is_family(dtype)) {
        fprintf(stderr, "synth_model: --type %s: give F32, Q2_5, Q3_5, Q4_5 or Q8_S\n", type);
        return 1;
    }
    if (sh.dim < 8 || sh.heads < 1 || sh.dim % sh.heads || (sh.dim / sh.heads) % 2 || sh.kv_heads < 1 ||
        sh.heads % sh.kv_heads || sh.hidden < 8 || sh.layers < 1 || sh.vocab < 4 || sh.ctx < 1) {
        fprintf(stderr, "synth_model: inconsistent shape\n");
        return 1;
    }
    q35_error err = {0};
    if (q35_synth_write(argv[1], &sh, dtype, seed, &err)) {
        fprintf(stderr, "synth_model: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "synth_model: wrote %s (%s, dim %d, hidden %d, %d layers, %d heads, vocab %d)\n",
            argv[1], type, sh.dim, sh.hidden, sh.layers, sh.heads, sh.vocab);
    return 0;
}
