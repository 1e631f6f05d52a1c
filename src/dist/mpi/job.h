/* job.h — a q35-mpi job: the model spread over MPI ranks (`make mpi`).
 *
 * Rank 0 runs the program (tokenizing, sampling, I/O) and drives the
 * others, which serve it (q35_job_serve) until it ends the job. The layers
 * are split over pipeline stages (src/dist/dist.h); a stage's T ranks each
 * hold one tensor-parallel slice. Every request flows through the stages in
 * order — rank 0, stage 1's first rank, stage 2's, ... — each stage's first
 * rank handing it to the others of its stage, and the last stage answers
 * rank 0; so a sequence's batches, trims and resets reach every rank in the
 * order rank 0 made them, and several batches may be in flight at once
 * (micro-batches: rank 0 computes the next while later stages compute
 * earlier ones).
 *
 * Failures: a rank that cannot load or evaluate answers with its error,
 * which rank 0 prints as one line naming it; a rank that dies makes mpirun
 * end the job, and the lowest surviving rank prints one line naming the
 * one gone (SIGTERM from mpirun); rank 0 waits for no answer longer than
 * the timeout. Run with `mpirun -q` for the job's line alone (mpirun adds
 * its own banner otherwise). */
#ifndef Q35_DIST_MPI_JOB_H
#define Q35_DIST_MPI_JOB_H

#include <stdint.h>

#include "q35.h"

typedef struct q35_job q35_job;

typedef struct q35_job_opts {
    const char *split;     /* --split a,b,c: layers per stage; NULL: by memory */
    int tp;                /* --tp T: ranks per stage (tensor parallel); 1 */
    double timeout_s;      /* longest wait for another rank's answer */
    int64_t mem_available; /* this rank's memory setting (q35_model_params.mem_available:
                              0 measure, > 0 assume, < 0 no check) */
    const char *mem_error; /* a malformed setting: this rank's loads fail with it */
    int serving;           /* q35-mpi serve: rank 0 evaluates from a thread of its
                              own (MPI_THREAD_SERIALIZED) and handles SIGINT/SIGTERM
                              itself; ranks > 0 on rank 0's machine live through
                              mpirun's SIGTERM (rank 0 ends the job) unless a rank
                              there is gone */
} q35_job_opts;

/* Every rank, first: joins the job (MPI_Init) and checks that every rank
 * runs the same binary with the same --tp, that the ranks divide into
 * stages, and that a stage's ranks pick the same kernels. On failure
 * returns an error that rank 0 prints (the others stay quiet) and every
 * rank exits with status 1 after q35_job_abandon. */
int q35_job_start(q35_job **out, int *argc, char ***argv, const q35_job_opts *o, q35_error *err);
int q35_job_rank(const q35_job *j);
/* Rank 0 serving, after SIGINT/SIGTERM: when a rank on this machine is
 * gone (mpirun's SIGTERM after a death), prints the line naming it and
 * exits with status 1, as the SIGTERM handler does; else returns. */
void q35_job_exit_if_rank_gone(q35_job *j);
/* Leaves a job that could not start (MPI_Finalize) and frees j. */
void q35_job_abandon(q35_job *j);
/* Ranks > 0: serves rank 0 until it ends the job; returns the exit status. */
int q35_job_serve(q35_job *j);
/* Rank 0: ends the job (the others leave too), frees j; returns status. */
int q35_job_end(q35_job *j, int status);

/* ---- rank 0 ---------------------------------------------------------------- */

/* Splits path's layers over the stages and has every rank load its part
 * (p: rank 0's settings: tokenizer, kernels, R16; each rank checks its own
 * memory); checks every rank read the same file (q35_model_fingerprint).
 * *m is rank 0's part, owned by the job (until the next load or the end). */
int q35_job_load(q35_job *j, const char *path, const q35_model_params *p, q35_model **m, q35_error *err);
/* A session on every rank (replacing any), as p says. */
int q35_job_session(q35_job *j, const q35_session_params *p, q35_error *err);
/* Sends batch b into the pipeline (after checking it as q35_session_decode
 * would: all or nothing) and returns; its wanted logits come back, in
 * submission order, from q35_job_collect. */
int q35_job_submit(q35_job *j, const q35_batch *b, q35_error *err);
/* The oldest submitted batch's wanted logits into out (rows of vocab). */
int q35_job_collect(q35_job *j, float *out, q35_error *err);
/* Batches submitted, not yet collected. */
int q35_job_in_flight(const q35_job *j);
/* Submit and collect, in micro-batches of the session's batch size that
 * flow through the stages one behind the other (a prompt too). */
int q35_job_decode(q35_job *j, const q35_batch *b, float *out, q35_error *err);
int q35_job_trim(q35_job *j, int seq, int p, q35_error *err);
int q35_job_reset(q35_job *j, q35_error *err);
/* The context every sequence has (the session's; 0 before one). */
int q35_job_n_ctx(const q35_job *j);
/* The KV cache's type (the session's; "" before one). */
const char *q35_job_kv_type(const q35_job *j);
/* Stages (how many batches keep every stage busy). */
int q35_job_stages(const q35_job *j);
/* "2 ranks, 2 stages: layers 0-15, 16-31" (valid while j lives). */
const char *q35_job_describe(const q35_job *j);
/* Weight bytes every rank reads per token, added up (the whole model). */
uint64_t q35_job_weight_bytes(const q35_job *j);
/* Every rank's peak RSS, the weight bytes its part reads per token and its
 * KV cache's bytes into rss, weights, kv (job size entries each). */
int q35_job_peak_rss(q35_job *j, uint64_t *rss, uint64_t *weights, uint64_t *kv, int *n, q35_error *err);

#endif
