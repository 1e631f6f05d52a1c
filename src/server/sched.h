/* sched.h — continuous batching: one scheduler thread runs the model for
 * every request at once.
 *
 * An evaluator (srv_eval: a session in this process for q35 serve, the
 * ranks of an MPI job for q35-mpi serve) holds n_parallel sequences
 * (slots) of n_ctx positions. Each step the scheduler evaluates, in one
 * decode call, the next token
 * of every slot that is generating and a chunk of the prompts of slots
 * still prefilling (n_batch tokens a step in all), then samples each
 * generating slot's next token with the request's own sampler: a
 * request's tokens do not depend on the others in the batch. Jobs wait in
 * a bounded queue for a free slot; a finished or cancelled job frees its
 * slot before the next step. HTTP threads submit jobs and take their
 * output as it grows (srv_job_take), woken through an eventfd. */
#ifndef Q35_SERVER_SCHED_H
#define Q35_SERVER_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"
#include "server/request.h"

/* What the scheduler evaluates with, as the hooks of whoever owns the
 * model's state (the server makes no session of its own). Called from the
 * scheduler thread alone, one call at a time, and from srv_sched_free. */
typedef struct srv_eval {
    void *user;
    /* As q35_session_decode: b's tokens (sequences 0 .. n_parallel - 1) at
     * each sequence's next positions, the wanted rows of logits into out
     * (rows of vocab floats); on failure nothing was evaluated and err
     * says why. Batches hold up to max(n_batch, n_parallel) tokens. */
    int (*decode)(void *user, const q35_batch *b, float *out, q35_error *err);
    /* As q35_session_seq_trim: sequence seq keeps its first p positions
     * (the scheduler trims to 0 when a slot changes hands). */
    int (*trim)(void *user, int seq, int p, q35_error *err);
    int n_ctx; /* positions each sequence holds */
    /* Optional (NULL, or depth <= 1: decode alone): submit sends a batch
     * in and returns at once; collect gives the oldest submitted batch's
     * wanted logits (as decode's out). depth: the pipeline's stages
     * (q35-mpi). The scheduler then splits the slots into
     * min(depth, n_parallel) groups (slot i in group i % groups), each
     * stepping on its own, so that every stage works on one group's batch
     * while rank 0 samples another's. */
    int (*submit)(void *user, const q35_batch *b, q35_error *err);
    int (*collect)(void *user, float *out, q35_error *err);
    int depth;
} srv_eval;

typedef struct srv_sched_params {
    int n_parallel; /* slots: the evaluator's sequences */
    int n_batch;    /* tokens evaluated per step, decode and prompt chunks together */
    int n_queue;    /* jobs that may wait while every slot is busy */
    srv_eval eval;
} srv_sched_params;

typedef struct srv_sched srv_sched;
typedef struct srv_job srv_job;

enum srv_finish { SRV_RUNNING = 0, SRV_FINISH_STOP, SRV_FINISH_LENGTH, SRV_FINISH_CANCELLED, SRV_FINISH_ERROR };
enum srv_submit { SRV_SUBMITTED = 0, SRV_BUSY, SRV_CLOSING };

/* Starts the thread over p->eval (one line in err on failure). */
int srv_sched_new(srv_sched **out, const q35_model *m, const srv_sched_params *p, q35_error *err);
/* Stops the thread (cancelling what runs) and frees everything. */
void srv_sched_free(srv_sched *s);
int srv_sched_n_ctx(const srv_sched *s);

/* Shutting down: level 1 refuses new jobs and fails the queued ones (the
 * running ones finish); level 2 also cancels the running ones. */
void srv_sched_stop(srv_sched *s, int level);
/* Nothing queued or running. */
int srv_sched_idle(srv_sched *s);

typedef struct srv_metrics {
    uint64_t prompt_tokens, gen_tokens, jobs_done, jobs_cancelled, jobs_rejected, steps;
    uint64_t steps_overlapped; /* steps sent in while another group's was in flight */
    double step_seconds, gen_seconds; /* time in steps; in steps that generated */
    int queued, busy, n_parallel;
    int64_t kv_used, kv_size;         /* positions held, positions in all */
} srv_metrics;
void srv_sched_metrics(srv_sched *s, srv_metrics *out);

/* A job for request r (its sampling, stop and output settings are copied)
 * with its prompt tokens ids (taken over). NULL when out of memory. The
 * caller holds one reference. */
srv_job *srv_job_new(const srv_request *r, int *ids, int n_ids);
/* Queues it; SRV_BUSY when the queue is full, SRV_CLOSING when shutting
 * down (the job is then not queued). */
int srv_sched_submit(srv_sched *s, srv_job *j);
/* Cancels it (the scheduler drops it before its next step). */
void srv_job_cancel(srv_sched *s, srv_job *j);
void srv_job_retain(srv_job *j);
void srv_job_release(srv_job *j);
/* The file descriptor that becomes readable when the job has new output
 * (read it with srv_job_take, which also clears it). */
int srv_job_fd(const srv_job *j);
int srv_job_n_prompt(const srv_job *j);

/* One generated token as reported with its log-probability. */
typedef struct srv_tok {
    int id, prev;     /* the token, and the one before (for its text) */
    size_t offset;    /* where its text starts in the generated text */
    size_t len;       /* its text's length */
    float logprob;
    int n_top;
    int top_id[SRV_MAX_TOP_LOGPROBS];
    float top_lp[SRV_MAX_TOP_LOGPROBS];
} srv_tok;

/* What a job released since text byte `from_text` and token `from_tok`:
 * text (malloc'ed, n_text bytes: whole characters); the tokens whose text
 * is out whole (or, at the finish, in part): where each one's text ends
 * (ends, absolute offsets into the generated text, at most from_text +
 * n_text) and, when the request asked for log-probabilities, each one's
 * (toks); the finish once the job is done. */
typedef struct srv_take {
    char *text;
    size_t n_text;
    size_t *ends;
    srv_tok *toks;       /* NULL without log-probabilities */
    int n_toks;
    int finish;          /* enum srv_finish */
    char error[256];     /* SRV_FINISH_ERROR: why */
    int n_prompt, n_gen; /* tokens so far */
    double t_first;      /* seconds from submission to the first token (0: none yet) */
} srv_take;
/* Fills t (free with srv_take_free); returns 0 or -1 when out of memory. */
int srv_job_take(srv_job *j, size_t from_text, int from_tok, srv_take *t);
void srv_take_free(srv_take *t);

#endif
