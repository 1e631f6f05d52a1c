/* llama_quantize.c — llama.cpp's own quantizer (llama_model_quantize, the
 * function behind llama-quantize) as a maker of test files for q35
 * (tests/test_kquant.c compiles it at run time against the prebuilt
 * libllama of $Q35_ORACLES; it is not part of q35).
 *
 *   llama_quantize IN.gguf OUT.gguf TYPE
 *       TYPE: llama-quantize's name of a file type (Q4_K_M, Q2_K, Q3_K_S,
 *       Q3_K_M, Q3_K_L, Q4_K_S, Q5_K_S, Q5_K_M, Q6_K, Q4_0, Q4_1, Q5_0,
 *       Q5_1, Q8_0, IQ4_NL, IQ4_XS); llama.cpp picks each tensor's type as
 *       llama-quantize does (one thread: the file does not depend on it).
 */
#include <stdio.h>
#include <string.h>

#include "llama.h"

static const struct { const char *name; enum llama_ftype ftype; } types[] = {
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},     {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S}, {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L}, {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S},
    {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL}, {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
};

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: llama_quantize IN.gguf OUT.gguf TYPE\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(types[i].name, argv[3]) != 0) continue;
        llama_backend_init();
        llama_model_quantize_params p = llama_model_quantize_default_params();
        p.ftype = types[i].ftype;
        p.nthread = 1;
        const uint32_t rc = llama_model_quantize(argv[1], argv[2], &p);
        llama_backend_free();
        if (rc) fprintf(stderr, "llama_quantize: %s -> %s (%s) failed: %u\n", argv[1], argv[2], argv[3], rc);
        return rc ? 1 : 0;
    }
    fprintf(stderr, "llama_quantize: unknown type %s\n", argv[3]);
    return 2;
}
