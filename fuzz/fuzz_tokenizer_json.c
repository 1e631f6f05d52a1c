/* fuzz_tokenizer_json.c — libFuzzer target: tokenizer.json over arbitrary
 * bytes (not NUL-terminated). A tokenizer that loads (any normalizer,
 * pre-tokenizer, regex, added tokens, merges it accepts) encodes fixed
 * texts — spaces, a regex's favourite classes, multi-byte and invalid
 * UTF-8, special-token spellings — plain and with special tokens parsed
 * and added, decodes the ids whole and piece by piece, then is freed.
 * Seeds: fuzz/corpus/fuzz_tokenizer_json (written by test_hf and
 * test_tokenizer_bpe with Q35_FUZZ_SEEDS=DIR). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const texts[] = {
        "Hello  world, ab <s> h\xc3\xa9llo \xe2\x96\x81 \xff!",
        "I'm 12345 <|end|>\r\n\t  x\xe6\x97\xa5\xf0\x9f\x98\x80<tool>e\xcc\x81", ""};
    q35_tokenizer *t = NULL;
    q35_error err;
    if (q35_tokenizer_from_json(&t, (const char *)data, size, "fuzz", NULL, 0, NULL, &err) != 0)
        return 0;
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        for (unsigned flags = 0; flags < 4; flags += 3) {
            int *ids = NULL, n = 0;
            if (q35_tokenizer_encode(t, texts[k], strlen(texts[k]), flags, &ids, &n, &err) == 0) {
                char buf[64], *text = NULL;
                size_t len;
                for (int i = 0; i < n; i++)
                    q35_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf);
                if (q35_tokenizer_decode_ids(t, ids, n, flags ? Q35_DECODE_SPECIAL : 0, &text,
                                             &len, &err) == 0)
                    free(text);
            }
            free(ids);
        }
    }
    q35_tokenizer_free(t);
    return 0;
}
