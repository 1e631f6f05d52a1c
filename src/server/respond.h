/* respond.h — the JSON the server answers with, in OpenAI's shapes:
 * completions and chat completions, whole or as stream chunks, with
 * usage and log-probabilities, and error objects. Every string is valid
 * UTF-8 (invalid bytes become U+FFFD). Each function returns a malloc'ed
 * NUL-terminated string, or NULL when out of memory. */
#ifndef Q35_SERVER_RESPOND_H
#define Q35_SERVER_RESPOND_H

#include <stddef.h>

#include "q35.h"
#include "server/sched.h"

/* What every response of one request shares. */
typedef struct srv_resp {
    int kind;           /* enum srv_kind */
    char id[48];        /* "cmpl-..." or "chatcmpl-..." */
    long long created;  /* Unix seconds */
    const char *model;  /* the name /v1/models lists */
    const q35_model *m; /* for the tokens' text */
    int logprobs;       /* report log-probabilities ... */
    int n_top;          /* ... with this many alternatives */
} srv_resp;

/* {"error": {"message", "type", "param", "code"}}; param may be "" (null). */
char *srv_json_error(const char *type, const char *param, const char *msg);

/* The whole response: text (n bytes), the tokens' log-probabilities, the
 * finish (SRV_FINISH_STOP or _LENGTH) and usage. */
char *srv_json_final(const srv_resp *r, const char *text, size_t n, const srv_tok *toks, int n_toks, int finish,
                     int n_prompt, int n_gen);

/* A stream chunk: text (n bytes) and its tokens; finish 0 for none; role
 * nonzero for the first chat chunk (delta.role = "assistant"). */
char *srv_json_chunk(const srv_resp *r, const char *text, size_t n, const srv_tok *toks, int n_toks, int finish,
                     int role);
/* The last chunk of a stream with stream_options.include_usage: no
 * choices, the usage. */
char *srv_json_usage_chunk(const srv_resp *r, int n_prompt, int n_gen);

#endif
