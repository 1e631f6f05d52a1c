/* fuzz_request.c — libFuzzer target: the server's request parser (a JSON
 * body into a generation request) over arbitrary bytes, as a completion
 * and as a chat; a parsed request's stop strings are then matched against
 * the body itself as generated text, the way the scheduler matches them,
 * and the text is cut at whole UTF-8 characters and cleaned. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/request.h"
#include "server/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    for (int kind = SRV_COMPLETION; kind <= SRV_CHAT; kind++) {
        srv_request r;
        srv_reject why;
        if (srv_request_parse(&r, kind, body, size, &why) != 0) continue;
        if (r.n_stop > 0) {
            const size_t at = srv_stop_find(body, size, 0, r.stop, r.n_stop);
            const size_t hold = srv_stop_partial(body, at == (size_t)-1 ? size : at, r.stop, r.n_stop);
            if (at != (size_t)-1 && at >= size) abort();
            if (hold > size) abort();
        }
        srv_request_free(&r);
    }
    const size_t whole = srv_utf8_whole(body, size);
    if (whole > size || size - whole > 3) abort();
    size_t n;
    char *clean = srv_utf8_clean(body, size, &n);
    if (clean && (n < size || (!memchr(body, 0, size) && strlen(clean) != n))) abort(); /* no NUL in, none out */
    free(clean);
    return 0;
}
