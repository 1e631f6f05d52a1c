/* engine.h — what run, perplexity, bench and serve evaluate with: a session of a
 * model in this process (the q35 program: engine_local.c), or the model
 * spread over the ranks of an MPI job (q35-mpi: mpi/engine_mpi.c, linked
 * instead). A command gets the job (NULL in q35) from main and passes it
 * on; the rest of its code is the same for both. */
#ifndef Q35_CLI_ENGINE_H
#define Q35_CLI_ENGINE_H

#include <stdint.h>
#include <stdio.h>

#include "q35.h"

typedef struct q35_job cli_job;   /* q35-mpi's job (src/dist/mpi/job.h); NULL in q35 */
typedef struct cli_engine cli_engine;

/* Loads the model as cli_load_model does (q35-mpi: every rank its part;
 * *m is rank 0's, which still has the tokenizer and the whole config). */
int cli_engine_load(cli_job *job, const char *cmd, const char *path, const char *tokenizer, const char *convert_type,
                    q35_model **m);
void cli_engine_unload(cli_job *job, q35_model *m);
/* Can several engines of one model evaluate at once (one per thread)? */
int cli_engine_shared(const cli_job *job);
/* An engine as p says; err filled on failure. */
int cli_engine_open(cli_job *job, const q35_model *m, const q35_session_params *p, cli_engine **e, q35_error *err);
void cli_engine_close(cli_engine *e);
/* As q35_session_decode: the wanted tokens' logits into out. */
int cli_engine_decode(cli_engine *e, const q35_batch *b, float *out, q35_error *err);
/* Batches in flight: submit returns at once (q35-mpi) or keeps the batch
 * for collect to evaluate (q35); collect gives the oldest one's logits.
 * depth: how many to keep in flight for every rank to stay busy. */
int cli_engine_submit(cli_engine *e, const q35_batch *b, q35_error *err);
int cli_engine_collect(cli_engine *e, float *out, q35_error *err);
int cli_engine_depth(const cli_engine *e);
/* Pipeline stages a batch crosses in turn (1 in q35). */
int cli_engine_stages(const cli_engine *e);
/* The context every sequence has (q35_session_n_ctx). */
int cli_engine_n_ctx(const cli_engine *e);
int cli_engine_trim(cli_engine *e, int seq, int p, q35_error *err);
int cli_engine_reset(cli_engine *e, q35_error *err);
/* The KV cache's type: "f16", "f32", "q8". */
const char *cli_engine_kv_type(const cli_engine *e);
/* "CPU (avx512)", or the job's ranks and stages. */
const char *cli_engine_device(const cli_engine *e);
/* Weight bytes read per token by the whole model (all ranks). */
uint64_t cli_engine_weight_bytes(cli_job *job, const q35_model *m);
/* bench: peak RSS, of this process or of every rank, as "peak RSS: ..." lines on f. */
void cli_engine_report_rss(cli_job *job, FILE *f, double own_mib);

/* serve: a stop signal reached rank 0. q35-mpi: when it came from mpirun
 * because a rank on this machine died, prints the line naming it and
 * ends the process (status 1), as the job's SIGTERM handler does; else
 * (and in q35) returns. */
void cli_engine_signalled(cli_job *job);

/* Shared by both (cli.c): n tokens of sequence 0 at its next positions,
 * out receiving the last token's logits (all = 0) or every token's. */
int cli_eval(cli_engine *e, const int *tokens, int n, int all, float *out, q35_error *err);

#endif
