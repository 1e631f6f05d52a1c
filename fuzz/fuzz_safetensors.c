/* fuzz_safetensors.c — libFuzzer target: the safetensors header checks
 * over arbitrary bytes; on success every tensor is read at its first and
 * last byte, which ASan checks lie inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "io/hf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    q35_safetensors_tensor *t = NULL;
    int n = 0;
    q35_error err;
    volatile uint8_t sink = 0;
    if (q35_safetensors_parse(data, size, "fuzz", &t, &n, &err) == 0) {
        for (int i = 0; i < n; i++) {
            const uint8_t *p = t[i].data;
            if (t[i].end > t[i].begin) sink ^= p[0] ^ p[t[i].end - t[i].begin - 1];
        }
    }
    (void)sink;
    free(t);
    return 0;
}
