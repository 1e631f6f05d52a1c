/* job_internal.h — the state of a q35-mpi job shared by job.c (start,
 * transport, end), stage.c (what any rank does with a request) and pipe.c
 * (rank 0's side). */
#ifndef Q35_DIST_MPI_JOB_INTERNAL_H
#define Q35_DIST_MPI_JOB_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "dist/dist.h"
#include "dist/mpi/job.h"

/* Message tags. */
enum { TAG_DATA = 1, /* a stage's first rank to the next's */
       TAG_FAN,      /* a stage's first rank to the others of its stage */
       TAG_REPLY,    /* and their records back */
       TAG_RESULT }; /* the last stage to rank 0 */

/* What every rank tells the others at the start. */
typedef struct job_node {
    uint32_t magic, version;
    uint64_t binary;    /* hash of the executable */
    int32_t pid, tp;
    int64_t mem;        /* bytes this rank may fill: > 0; 0 unknown; < 0 no check */
    char host[64];
    char kernels[16];   /* the kernel set this CPU picks */
    char mem_source[32];
} job_node;

/* A message in flight from this rank: a copy, until MPI is done with it. */
#define JOB_SENDS 8
typedef struct job_send {
    MPI_Request req;
    uint8_t *buf;
    size_t cap;
    int busy;
} job_send;

/* Tensor parallel: a stage's ranks, at most (the library's limit). */
#define JOB_TP_MAX 64

/* A result rank 0 has received but not yet collected. */
typedef struct job_result {
    uint8_t *msg;
    size_t len;
    struct job_result *next;
} job_result;

struct q35_job {
    int rank, size, tp, stages, stage, member; /* member: index within the stage */
    MPI_Comm world, stage_comm;
    double timeout_s;
    const char *split;
    job_node *nodes;           /* (size) */
    int64_t mem;               /* this rank's figure for its memory check */
    char mem_error[160];       /* its setting was malformed: loads fail with this */
    job_send sends[JOB_SENDS];
    uint8_t *rbuf;             /* the last message received */
    size_t rcap, rlen;
    /* this rank's part */
    q35_model *model;
    q35_session *session;
    int n_batch;
    int first[Q35_DIST_MAX_STAGES], count[Q35_DIST_MAX_STAGES];
    int dim, vocab;
    struct {                   /* tensor-parallel gathers: this rank's columns, all */
        uint8_t *send, *recv;  /* floats */
        size_t send_cap, recv_cap;
    } gather;
    uint8_t *x;                /* a stage's output (hidden states or logits: floats) */
    size_t xcap;
    uint8_t *obuf;             /* the message it sends on */
    size_t ocap;
    /* rank 0 */
    job_result *results, *results_tail; /* received, not collected */
    int in_flight;
    uint64_t weight_bytes;
    char describe[256];
};

/* job.c: the transport. Messages are a q35_dist_hdr and its payload. */
/* Sends len bytes to rank dst (copied: returns before the receiver has them). */
int job_send_msg(q35_job *j, int dst, int tag, const void *msg, size_t len, q35_error *err);
/* Waits for a message from src with tag (timeout_s < 0: forever) into
 * j->rbuf (j->rlen), checked (q35_dist_hdr_check); while waiting, sends
 * progress and rank 0 keeps receiving results. */
int job_recv_msg(q35_job *j, int src, int tag, double timeout_s, q35_error *err);
/* Rank 0: takes any results that arrived into j->results. */
void job_poll_results(q35_job *j);
/* Waits until every message this rank sent is delivered. */
int job_flush(q35_job *j, q35_error *err);
/* Grows *buf to n bytes. */
int job_reserve(uint8_t **buf, size_t *cap, size_t n, q35_error *err);

/* A stage's first rank (rank 0 too) with the request in j->rbuf: hands it
 * to the others of its stage, runs it, adds their records, passes the
 * answer on (the last stage: to rank 0). 0, or the transport's error. */
int job_forward(q35_job *j, q35_error *err);

/* stage.c: a request on this rank. hdr/payload: the request as received;
 * fills j->obuf with the message this rank passes on (or answers with)
 * and returns its length; a failure is recorded in that message's header. */
size_t job_handle(q35_job *j, const q35_dist_hdr *h, const uint8_t *payload, q35_error *err);
/* The ranks of stage s: its first. */
static inline int job_leader(const q35_job *j, int s) { return s * j->tp; }

#endif
