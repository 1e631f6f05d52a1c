/* fuzz_template.c — libFuzzer target: the chat-template renderer over
 * arbitrary bytes. The input is a template, optionally followed by a NUL
 * byte and a JSON object as its context (otherwise, or when that does not
 * parse, a fixed conversation with a system turn, tool calls and tools).
 * Limits are small so that endless templates end quickly. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONTEXT[] =
    "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"messages\": ["
    "{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi \\u00e9\\ud83d\\ude00\"},"
    "{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"call00001\", \"type\": \"function\","
    " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5, \"2\": [true, null]}}}]},"
    "{\"role\": \"tool\", \"content\": \"{\\\"t\\\": 21}\"}, {\"role\": \"user\", \"content\": \"  Bye\\n\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}],"
    " \"add_generation_prompt\": true, \"date_string\": \"26 Jul 2024\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    cJSON *ctx = NULL;
    if (nul) {
        ctx = cJSON_ParseWithLength((const char *)nul + 1, size - tlen - 1);
        if (ctx && !cJSON_IsObject(ctx)) {
            cJSON_Delete(ctx);
            ctx = NULL;
        }
    }
    if (!ctx) ctx = cJSON_Parse(CONTEXT);
    jinja_template *t = NULL;
    q35_error err;
    if (jinja_parse(&t, (const char *)data, tlen, "fuzz", &err) == 0) {
        jinja_limits lim = {100000, 50, 1u << 20, 16u << 20};
        char *out = NULL;
        size_t n = 0;
        if (jinja_render(t, ctx, &lim, &out, &n, &err) == 0) free(out);
        jinja_free(t);
    }
    cJSON_Delete(ctx);
    return 0;
}
