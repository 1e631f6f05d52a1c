/* fuzz_llama2c.c — libFuzzer target: the llama2.c checkpoint header and
 * layout checks over arbitrary bytes; on success every tensor is read end
 * to end (its first and last byte), which ASan checks lie inside. */
#include <stdint.h>
#include <string.h>

#include "io/llama2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    q35_weights w;
    memset(&w, 0, sizeof w);
    q35_error err;
    volatile uint8_t sink = 0;
    if (q35_llama2c_parse(&w, data, size, "fuzz", &err) == 0) {
        for (int i = 0; i < w.n_tensors; i++) {
            const uint8_t *p = w.tensors[i].data;
            if (w.tensors[i].nbytes) sink ^= p[0] ^ p[w.tensors[i].nbytes - 1];
        }
    }
    (void)sink;
    q35_weights_free(&w);
    return 0;
}
