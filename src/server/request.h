/* request.h — an OpenAI request body (JSON) turned into a generation
 * request: the prompt or the messages, the sampling settings, stop
 * strings, streaming and log-probability options. Unknown fields are
 * ignored, as OpenAI does; a known field of the wrong type or with a
 * value q35 does not support (n > 1, ...) is refused, naming the field.
 * No model is needed: the prompt is tokenized later (sched.h). */
#ifndef Q35_SERVER_REQUEST_H
#define Q35_SERVER_REQUEST_H

#include <stddef.h>

#include "q35.h"

enum srv_kind { SRV_COMPLETION, SRV_CHAT };

/* The most alternatives a request may ask per token (top_logprobs). */
#define SRV_MAX_TOP_LOGPROBS 20
/* The most stop strings, and the longest. */
#define SRV_MAX_STOP 16
#define SRV_MAX_STOP_LEN 256

typedef struct srv_msg {
    char *role;
    char *content; /* the text parts, concatenated */
} srv_msg;

typedef struct srv_request {
    int kind;
    /* completions: the prompt as text, or as token ids */
    char *prompt;
    size_t prompt_len;
    int *prompt_ids;     /* when the prompt was given as token ids */
    int n_prompt_ids;
    /* chat */
    srv_msg *msgs;
    int n_msgs;
    int max_tokens;      /* -1: until the context is full */
    q35_sampler_params sp;
    float presence_penalty, frequency_penalty;
    int have_seed;
    char *stop[SRV_MAX_STOP];
    int n_stop;
    int stream;
    int include_usage;   /* stream_options.include_usage */
    int logprobs;        /* report each token's log-probability */
    int top_logprobs;    /* and this many alternatives (0..SRV_MAX_TOP_LOGPROBS) */
    int ignore_eos;      /* llama-server's extension: generate past the end of text */
} srv_request;

/* Why a request was refused: the field at fault ("" when none) and one
 * line naming it. */
typedef struct srv_reject {
    char param[64];
    char msg[256];
} srv_reject;

/* Parses len bytes of body (need not be NUL-terminated) for an endpoint of
 * kind `kind`. Returns 0 and fills r (free with srv_request_free), or -1
 * and fills why (r is then empty). */
int srv_request_parse(srv_request *r, int kind, const char *body, size_t len, srv_reject *why);
void srv_request_free(srv_request *r);

#endif
