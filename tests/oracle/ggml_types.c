/* ggml_types.c — ggml's own type table and dequantizers, as an oracle for
 * q35's (tests/test_kquant.c compiles it at run time against the prebuilt
 * libggml-base of $Q35_ORACLES; it is not part of q35).
 *
 *   ggml_types traits
 *       one line per ggml type id: "ID NAME BLOCK_ELEMS BLOCK_BYTES TO_FLOAT"
 *       (NAME "-" for an id ggml no longer has; TO_FLOAT 1 when ggml can
 *       expand the type to float)
 *   ggml_types to-float IN OUT
 *       IN holds records: int32 type, int64 n (elements), then the bytes of
 *       n elements of that type; OUT gets each record's n floats, expanded
 *       by ggml_get_type_traits(type)->to_float.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ggml.h"

static int traits(void) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const struct ggml_type_traits *tr = ggml_get_type_traits((enum ggml_type)t);
        const char *name = ggml_type_name((enum ggml_type)t);
        const int64_t blck = ggml_blck_size((enum ggml_type)t);
        if (!name || blck <= 0) {
            printf("%d - 0 0 0\n", t);
            continue;
        }
        printf("%d %s %lld %zu %d\n", t, name, (long long)blck, ggml_type_size((enum ggml_type)t),
               tr->to_float != NULL);
    }
    return 0;
}

static int to_float(const char *in_path, const char *out_path) {
    FILE *in = fopen(in_path, "rb"), *out = fopen(out_path, "wb");
    if (!in || !out) {
        fprintf(stderr, "ggml_types: cannot open %s or %s\n", in_path, out_path);
        return 1;
    }
    int32_t type;
    int64_t n;
    while (fread(&type, 4, 1, in) == 1) {
        if (fread(&n, 8, 1, in) != 1 || type < 0 || type >= GGML_TYPE_COUNT || n <= 0) {
            fprintf(stderr, "ggml_types: malformed record\n");
            return 1;
        }
        const struct ggml_type_traits *tr = ggml_get_type_traits((enum ggml_type)type);
        if (!tr->to_float || n % ggml_blck_size((enum ggml_type)type)) {
            fprintf(stderr, "ggml_types: type %d cannot expand %lld elements\n", type, (long long)n);
            return 1;
        }
        const size_t bytes = ggml_row_size((enum ggml_type)type, n);
        void *src = malloc(bytes);
        float *dst = malloc((size_t)n * sizeof *dst);
        if (!src || !dst || fread(src, 1, bytes, in) != bytes) {
            fprintf(stderr, "ggml_types: short record\n");
            return 1;
        }
        tr->to_float(src, dst, n);
        if (fwrite(dst, sizeof *dst, (size_t)n, out) != (size_t)n) return 1;
        free(src);
        free(dst);
    }
    fclose(in);
    return fclose(out) != 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && argv[1][0] == 't' && argv[1][1] == 'r') return traits();
    if (argc == 4) return to_float(argv[2], argv[3]);
    fprintf(stderr, "usage: ggml_types traits | ggml_types to-float IN OUT\n");
    return 2;
}
