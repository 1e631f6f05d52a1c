/* fuzz_tokenizer_json.c — libFuzzer target: tokenizer.json over arbitrary
 * bytes (not NUL-terminated); a tokenizer that loads encodes a fixed
 * string with spaces, multi-byte and invalid UTF-8, then is freed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char text[] = "Hello  world, ab <s> h\xc3\xa9llo \xe2\x96\x81 \xff!";
    q35_tokenizer *t = NULL;
    q35_error err;
    if (q35_tokenizer_from_json(&t, (const char *)data, size, "fuzz", NULL, 0, NULL, &err) == 0) {
        int *ids = NULL, n = 0;
        if (q35_tokenizer_encode(t, text, sizeof text - 1, 1, &ids, &n, &err) == 0) {
            char buf[64];
            for (int i = 0; i < n; i++)
                q35_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf);
        }
        free(ids);
        q35_tokenizer_free(t);
    }
    return 0;
}
