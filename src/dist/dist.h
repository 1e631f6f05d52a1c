/* dist.h — what the ranks of a q35-mpi job agree on, without MPI itself
 * (src/dist/mpi/ runs it): how a model's layers are split over pipeline
 * stages, and the messages ranks send each other, whose every field is
 * checked when one arrives (a rank of another version, or a torn message,
 * is one line, never a crash).
 *
 * A job of R ranks with tensor parallel T has S = R / T stages; stage s
 * runs layers first[s] .. first[s] + count[s] - 1 on ranks s*T .. s*T+T-1
 * (each one slice, q35_model_params.tp_rank/tp_size), the first stage also
 * the embedding, the last the classifier. */
#ifndef Q35_DIST_DIST_H
#define Q35_DIST_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "q35.h"

#define Q35_DIST_MAX_STAGES 256

/* ---- the split ------------------------------------------------------------ */

/* "--split a,b,c": layer counts per stage into counts (at most max).
 * Returns the number of stages, or -1 with err filled (one line naming
 * the flag). */
int q35_dist_parse_split(const char *s, int *counts, int max, q35_error *err);

/* Splits model m's layers over n stages (T ranks each): by counts when
 * given (they must add up to the layers, each at least 1), else in
 * proportion to cap[s], the bytes each rank of stage s may fill (0 for
 * any: equal shares): of all contiguous splits, the one whose fullest
 * stage — what it needs (q35_model_need_bytes: its layers, KV cache and
 * scratch, the embedding on the first, the classifier on the last) over
 * its cap — is least full. m may be opened for inspection. Fills
 * first[s], count[s]; returns 0 or a one-line error. */
int q35_dist_plan(const q35_model *m, int n, int T, const int *counts, const uint64_t *cap, int *first, int *count,
                  q35_error *err);

/* ---- messages ------------------------------------------------------------- */

#define Q35_DIST_MAGIC 0x4d353351u /* "Q35M" */
#define Q35_DIST_VERSION 1u

enum q35_dist_op {
    Q35_DIST_LOAD = 1, /* every rank loads its stage's layers (its slice): q35_dist_load */
    Q35_DIST_SESSION,  /* every rank makes a session (replacing any): q35_dist_session */
    Q35_DIST_DECODE,   /* a batch through the stages: tokens, then hidden states */
    Q35_DIST_TRIM,     /* q35_session_seq_trim(n = seq, arg = position) */
    Q35_DIST_RESET,    /* q35_session_reset */
    Q35_DIST_STATS,    /* every rank's peak RSS */
    Q35_DIST_QUIT,     /* the job ends */
    Q35_DIST_N_OPS
};

/* Every message: this header, then bytes of payload. A rank that fails
 * sets status, rank and msg; the ranks after it pass the message on. */
typedef struct q35_dist_hdr {
    uint32_t magic, version;
    uint32_t op;
    int32_t status;       /* Q35_OK, or the failing rank's q35_status */
    int32_t rank;         /* the failing rank */
    int32_t n;            /* DECODE: tokens; TRIM: sequence */
    int32_t arg;          /* DECODE: wanted logits; TRIM: position */
    int32_t n_recs;       /* LOAD, SESSION, STATS: q35_dist_rec records in the payload */
    uint64_t bytes;       /* payload bytes */
    char msg[448];        /* the failing rank's error, one line */
} q35_dist_hdr;

/* What every rank loads (LOAD's payload, before the records). */
typedef struct q35_dist_load {
    char path[4096];
    char tokenizer[4096]; /* "" for none */
    char kernels[16];
    char convert_type[16]; /* "" for the default */
    int32_t r16;
    int32_t n_stages, tp;
    int32_t first[Q35_DIST_MAX_STAGES], count[Q35_DIST_MAX_STAGES];
    int32_t pad;          /* the records after it start 8-byte aligned */
} q35_dist_load;

/* How every rank makes its session (SESSION's payload, before the records). */
typedef struct q35_dist_session {
    int32_t n_threads, n_batch, n_ctx, n_seq, r16, gelu_f16;
    char kv_type[8];      /* "" default */
    char kernels[16];     /* "" the model's */
} q35_dist_session;

/* One rank's answer to LOAD, SESSION or STATS. */
typedef struct q35_dist_rec {
    int32_t rank, status;
    uint64_t fingerprint;   /* LOAD: q35_model_fingerprint */
    uint64_t weight_bytes;  /* LOAD, STATS: q35_model_weight_bytes of its part */
    uint64_t peak_rss;      /* STATS: bytes */
    uint64_t kv_bytes;      /* STATS: its session's KV cache */
    char msg[448];
} q35_dist_rec;

/* Records follow the header and a request's body in one malloc'ed
 * buffer: every size keeps them aligned. */
_Static_assert(sizeof(q35_dist_hdr) % 8 == 0 && sizeof(q35_dist_load) % 8 == 0 &&
                   sizeof(q35_dist_session) % 8 == 0 && sizeof(q35_dist_rec) % 8 == 0,
               "message parts keep 8-byte alignment");

/* A DECODE message's payload: n tokens (int32), their sequences (int32),
 * wanted flags (n bytes, padded to 4), then, from the second stage on, n
 * rows of dim floats; the last stage's answer is the header and the
 * wanted tokens' logits (arg rows of vocab floats). */
size_t q35_dist_batch_bytes(int n, int dim);
void q35_dist_batch_pack(void *payload, const q35_batch *b, int dim, const float *x);

typedef struct q35_dist_batch_view {
    q35_batch b;          /* pointing into the payload */
    const float *x;       /* NULL when the payload carries no hidden states */
    int n_wanted;
} q35_dist_batch_view;

/* Checks a DECODE payload of len bytes (hidden states of dim floats when
 * dim > 0) and points v into it; 0, or -1 with *why. */
int q35_dist_batch_view_of(const void *payload, size_t len, int n, int dim, q35_dist_batch_view *v, const char **why);

/* Checks a message's header against its length (magic, version, op,
 * sizes); 0, or -1 with *why. */
int q35_dist_hdr_check(const void *msg, size_t len, const char **why);

#endif
