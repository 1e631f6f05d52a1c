/* cmd_info.c — `q35 info MODEL`: the file's format and hyperparameters,
 * then every tensor (name, shape, type, bytes), per type the tensors,
 * weights, bytes and bits per weight (and which types q35 cannot read),
 * and the bits per weight in all. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct type_sum {
    const char *type;
    int tensors, readable;
    uint64_t elems, bytes;
} type_sum;

int cmd_info(int argc, char **argv) {
    const char *C = "info", *path = NULL, *tok = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: q35 info MODEL [--tokenizer FILE]\n");
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer")) {
            if (!(tok = cli_value(C, argc, argv, &i))) return 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_error(C, "unknown flag '%s' (see q35 info --help)", argv[i]);
        } else if (path) {
            return cli_error(C, "one model at a time ('%s' and '%s')", path, argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_error(C, "no model: q35 info MODEL");
    q35_model *m;
    if (cli_load_model(C, path, tok, Q35_OPEN_INSPECT, NULL, &m)) return 1;
    const q35_config *c = q35_model_config(m);
    char arch[512];
    q35_model_describe(m, arch, sizeof arch);
    printf("file: %s\nformat: %s\narchitecture: %s\n", path, q35_model_format(m), arch);
    printf("dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, head_dim %d\n"
           "vocab_size %d, seq_len %d, rms_eps %g, rope_theta %g, classifier %s\n",
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim,
           c->vocab_size, c->seq_len, (double)c->rms_eps, (double)c->rope_theta,
           c->shared_classifier ? "tied to the embedding" : "separate");
    printf("%-28s %-20s %-8s %12s %8s\n", "tensor", "shape", "type", "bytes", "bpw");
    uint64_t bytes = 0, elems = 0, bytes2 = 0, elems2 = 0;
    /* per stored type: tensors, weights, bytes, whether q35 reads it */
    type_sum by[48];
    int n_types = 0;
    for (int i = 0; i < q35_model_n_tensors(m); i++) {
        q35_tensor_desc d;
        q35_model_tensor(m, i, &d);
        char shape[64];
        int n = 0;
        uint64_t e = 1;
        for (int k = 0; k < d.n_dims; k++) {
            n += snprintf(shape + n, sizeof shape - (size_t)n, k ? " x %lld" : "%lld", (long long)d.ne[k]);
            e *= (uint64_t)d.ne[k];
        }
        printf("%-28s %-20s %-8s %12llu %8.3f\n", d.name, shape, d.type, (unsigned long long)d.nbytes,
               e ? 8.0 * (double)d.nbytes / (double)e : 0.0);
        bytes += d.nbytes;
        elems += e;
        if (d.n_dims >= 2) {
            bytes2 += d.nbytes;
            elems2 += e;
        }
        int k = 0;
        while (k < n_types && strcmp(by[k].type, d.type)) k++;
        if (k == n_types && n_types < (int)(sizeof by / sizeof by[0]))
            by[n_types++] = (type_sum){d.type, 0, d.readable, 0, 0};
        if (k < n_types) by[k].tensors++, by[k].elems += e, by[k].bytes += d.nbytes;
    }
    printf("%-8s %8s %14s %14s %8s\n", "type", "tensors", "weights", "bytes", "bpw");
    for (int k = 0; k < n_types; k++)
        printf("%-8s %8d %14llu %14llu %8.4f%s\n", by[k].type, by[k].tensors, (unsigned long long)by[k].elems,
               (unsigned long long)by[k].bytes, by[k].elems ? 8.0 * (double)by[k].bytes / (double)by[k].elems : 0.0,
               by[k].readable ? "" : "  (q35 cannot read this type)");
    printf("%d tensors, %llu weights, %llu bytes: %.4f bits per weight (2-D tensors: %.4f)\n",
           q35_model_n_tensors(m), (unsigned long long)elems, (unsigned long long)bytes,
           elems ? 8.0 * (double)bytes / (double)elems : 0.0,
           elems2 ? 8.0 * (double)bytes2 / (double)elems2 : 0.0);
    q35_model_free(m);
    return 0;
}
