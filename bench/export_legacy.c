/* export_legacy.c — writes any model q35 loads as a legacy llama2.c fp32
 * checkpoint, so llama2.c's run.c can run the same weights (it reads only
 * that layout; stories3M ships as an int8 version-2 export). A benchmark
 * helper, not part of the library; written through q35_outfile (a file
 * atomically, a device or FIFO directly).
 *   build/bench/export_legacy IN OUT */
#include <stdio.h>
#include <string.h>

#include "io/llama2c.h"

static int put(q35_outfile *f, const q35_weights *w, const char *name, q35_error *err) {
    const q35_tensor *t = q35_weights_find(w, name);
    if (!t) {
        snprintf(err->msg, sizeof err->msg, "tensor %s is missing", name);
        return -1;
    }
    return q35_outfile_write(f, t->data, t->nbytes, err) ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: export_legacy IN OUT\n");
        return 1;
    }
    q35_weights w;
    q35_error err = {0};
    if (q35_llama2c_load(&w, argv[1], &err)) {
        fprintf(stderr, "export_legacy: %s\n", err.msg);
        q35_weights_free(&w);
        return 1;
    }
    const q35_config *c = &w.cfg;
    q35_outfile *f;
    if (q35_outfile_open(&f, argv[2], NULL, &err)) {
        fprintf(stderr, "export_legacy: %s\n", err.msg);
        q35_weights_free(&w);
        return 1;
    }
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->shared_classifier ? c->vocab_size : -c->vocab_size, c->seq_len};
    int rc = q35_outfile_write(f, h, sizeof h, &err) ? -1 : 0;
    char name[64];
    if (!rc) rc = put(f, &w, "token_embd.weight", &err);
    const char *groups[][4] = {{"attn_norm", 0}, {"attn_q", "attn_k", "attn_v", "attn_output"},
                               {"ffn_norm", 0}, {"ffn_gate", "ffn_down", "ffn_up", 0}};
    for (int g = 0; g < 4; g++)
        for (int m = 0; m < 4 && groups[g][m]; m++)
            for (int l = 0; l < c->n_layers && !rc; l++) {
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, groups[g][m]);
                rc = put(f, &w, name, &err);
            }
    if (!rc) rc = put(f, &w, "output_norm.weight", &err);
    static const float zero[64]; /* the unused legacy RoPE tables */
    for (long i = 0; i < (long)c->seq_len * c->head_dim && !rc; i += 64) {
        long k = (long)c->seq_len * c->head_dim - i;
        rc = q35_outfile_write(f, zero, 4 * (uint64_t)(k < 64 ? k : 64), &err) ? -1 : 0;
    }
    if (!rc && !c->shared_classifier) rc = put(f, &w, "output.weight", &err);
    if (!rc) rc = q35_outfile_commit(f, &err) ? -1 : 0;
    else q35_outfile_abort(f);
    q35_weights_free(&w);
    if (rc) fprintf(stderr, "export_legacy: %s\n", err.msg);
    return rc ? 1 : 0;
}
