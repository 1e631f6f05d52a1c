/* server.h — `q35 serve` (and `q35-mpi serve`): an OpenAI-compatible HTTP
 * server over one model (libmicrohttpd, a thread per connection; the
 * scheduler of sched.h runs the model through the evaluator it is given).
 * Part of the programs, not of libq35: the library stays free of sockets,
 * threads of its own and signal handling.
 *
 * Endpoints: POST /v1/completions, /v1/chat/completions (streamed as
 * Server-Sent Events when asked), GET /v1/models, /health, /metrics
 * (Prometheus text), POST /tokenize, /detokenize. One line per request on
 * the log: method, path, status, prompt and generated tokens, seconds. */
#ifndef Q35_SERVER_SERVER_H
#define Q35_SERVER_SERVER_H

#include <stdio.h>

#include "q35.h"
#include "server/sched.h"

typedef struct srv_params {
    const char *host;     /* address to listen on (default 127.0.0.1) */
    int port;             /* 0: any free port (srv_port tells which) */
    const char *api_key;  /* NULL: none; else every endpoint but /health needs
                             "Authorization: Bearer KEY" */
    int timeout;          /* seconds a connection may stay idle (reading or writing) */
    size_t max_body;      /* request bodies above this get 413 */
    int max_connections;  /* connections at once (beyond: closed at once) */
    const char *model_name; /* the id /v1/models lists and responses carry */
    FILE *log;            /* one line per request (NULL: none) */
    const q35_chat_template *chat_template; /* formats /v1/chat/completions (required) */
    srv_sched_params sched;
} srv_params;

/* host 127.0.0.1, port 8080, timeout 600 s, body 1 MiB, 512 connections,
 * one slot, batch 128, queue 64; no evaluator (sched.eval: the caller's,
 * with n_parallel sequences). */
srv_params srv_default_params(void);

typedef struct srv srv;

/* Starts serving model m (loaded from model_path): the scheduler, then the
 * listening socket. One line in err on failure (the address in use, ...). */
int srv_start(srv **out, const q35_model *m, const char *model_path, const srv_params *p, q35_error *err);
/* The port it listens on. */
int srv_port(const srv *s);
/* Shutting down: level 1 stops accepting connections, fails queued
 * requests and lets running ones finish; level 2 cancels those too. */
void srv_stop(srv *s, int level);
/* Nothing queued or running, every response sent. */
int srv_idle(srv *s);
/* Closes every connection and frees everything. */
void srv_free(srv *s);

#endif
