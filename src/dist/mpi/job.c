/* job.c — a q35-mpi job's start (every rank's facts, the checks), its
 * transport (messages copied out with MPI_Isend; received by polling, so a
 * waiting rank sleeps instead of spinning and gives up after the timeout),
 * the serving loop of ranks > 0, the end, and the line printed when
 * mpirun stops the job because a rank died. */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <errno.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "core/meminfo.h"
#include "dist/mpi/job_internal.h"
#include "kernels/kernels.h"

#define JOB_MAX_RANKS 1024

/* ---- the line when mpirun ends the job --------------------------------------
 * A rank killed (SIGKILL, the out-of-memory killer) or crashed cannot say
 * so; mpirun then sends the others SIGTERM. The lowest-numbered rank still
 * running prints which rank on its machine is gone. A signal handler reads
 * this table, filled once at the start: the program's one piece of
 * process-wide state (MPI itself is another). */
static struct {
    int n, me, ending, serving;
    pid_t pid[JOB_MAX_RANKS];
    char here[JOB_MAX_RANKS]; /* on this machine */
    char host[64];
} sig_tab;

static size_t put_str(char *b, size_t k, const char *s) {
    while (*s && k < 250) b[k++] = *s++;
    return k;
}

static size_t put_int(char *b, size_t k, long v) {
    char d[24];
    int n = 0;
    do d[n++] = (char)('0' + v % 10), v /= 10;
    while (v > 0 && n < 24);
    while (n > 0 && k < 250) b[k++] = d[--n];
    return k;
}

/* The lowest rank on this machine that is gone (-1: none) and the lowest
 * still running. */
static int find_gone(int *printer) {
    int gone = -1;
    *printer = -1;
    for (int r = 0; r < sig_tab.n; r++) {
        const int dead = r != sig_tab.me && sig_tab.here[r] && kill(sig_tab.pid[r], 0) != 0 && errno == ESRCH;
        if (dead && gone < 0) gone = r;
        if (!dead && *printer < 0) *printer = r;
    }
    return gone;
}

static void on_term(int sig) {
    if (sig_tab.ending) _exit(0); /* the job was ending anyway */
    int printer;
    const int gone = find_gone(&printer);
    /* serving (q35-mpi serve): mpirun stopping the job (Ctrl-C) signals
     * every rank; rank 0, here and running, ends the job cleanly */
    if (sig_tab.serving && gone < 0 && sig_tab.me != 0 && sig_tab.here[0]) return;
    if (printer == sig_tab.me) {
        char b[256];
        size_t k = put_str(b, 0, "q35-mpi: ");
        if (gone >= 0) {
            k = put_str(b, k, "rank ");
            k = put_int(b, k, gone);
            k = put_str(b, k, " (pid ");
            k = put_int(b, k, sig_tab.pid[gone]);
            k = put_str(b, k, " on ");
            k = put_str(b, k, sig_tab.host);
            k = put_str(b, k, ") is gone: killed, or crashed; the job stops");
        } else {
            k = put_str(b, k, "rank ");
            k = put_int(b, k, sig_tab.me);
            k = put_str(b, k, ": stopped by mpirun (signal ");
            k = put_int(b, k, sig);
            k = put_str(b, k, "): a rank on another machine ended, or the job was interrupted");
        }
        b[k++] = '\n';
        ssize_t w = write(2, b, k);
        (void)w;
    }
    _exit(1);
}

/* ---- start ------------------------------------------------------------------ */

/* Lets the OS place this rank's threads on any of the machine's CPUs (its
 * cgroup's, which the kernel still enforces). mpirun binds each rank to one
 * core by default (up to 2 ranks): that holds a rank's threads (-t N) to
 * one core, and on a machine shared with other work it keeps a rank on a
 * busy core while another is idle (llama2-7b, 2 ranks on this 2-core
 * machine: 0.55x one process's decode speed bound, 0.94x unbound). */
static void unbind(void) {
    cpu_set_t all;
    CPU_ZERO(&all);
    const long n = sysconf(_SC_NPROCESSORS_CONF);
    for (long c = 0; c < n && c < CPU_SETSIZE; c++) CPU_SET((int)c, &all);
    (void)sched_setaffinity(0, sizeof all, &all); /* a cpuset that refuses it leaves the binding */
}

/* FNV-1a of the running executable. */
static uint64_t binary_hash(void) {
    q35_mapfile f;
    if (q35_mapfile_open(&f, "/proc/self/exe", NULL) != 0) return 0;
    const uint64_t h = q35_hash_more(0xcbf29ce484222325ull, f.data, (size_t)f.size);
    q35_mapfile_close(&f);
    return h;
}

static int mpi_fail(q35_error *err, int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return q35_fail(err, Q35_ERR_IO, "MPI: %s: %.*s", what, len, s);
}

int q35_job_rank(const q35_job *j) { return j->rank; }

int q35_job_start(q35_job **out, int *argc, char ***argv, const q35_job_opts *o, q35_error *err) {
    /* serving: rank 0's scheduler thread evaluates, the main thread ends the job */
    const int want = o->serving ? MPI_THREAD_SERIALIZED : MPI_THREAD_FUNNELED;
    int provided, rc = MPI_Init_thread(argc, argv, want, &provided);
    *out = NULL;
    if (rc != MPI_SUCCESS) return q35_fail(err, Q35_ERR_IO, "MPI_Init failed (run under mpirun)");
    q35_job *j = calloc(1, sizeof *j);
    if (!j) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    *out = j;
    if (provided < want)
        return q35_fail(err, Q35_ERR_UNSUPPORTED, "this MPI library does not let a second thread call it (%s)",
                        "MPI_THREAD_SERIALIZED, which serve needs");
    unbind();
    MPI_Comm_dup(MPI_COMM_WORLD, &j->world);
    MPI_Comm_set_errhandler(j->world, MPI_ERRORS_RETURN);
    j->stage_comm = MPI_COMM_NULL;
    MPI_Comm_rank(j->world, &j->rank);
    MPI_Comm_size(j->world, &j->size);
    j->tp = o->tp > 0 ? o->tp : 1;
    if (j->tp > JOB_TP_MAX) return q35_fail(err, Q35_ERR_ARG, "--tp %d: at most %d", j->tp, JOB_TP_MAX);
    j->timeout_s = o->timeout_s > 0 ? o->timeout_s : 600;
    j->split = o->split;
    if (o->mem_error) snprintf(j->mem_error, sizeof j->mem_error, "%s", o->mem_error);
    if (j->size > JOB_MAX_RANKS) return q35_fail(err, Q35_ERR_ARG, "%d ranks: at most %d", j->size, JOB_MAX_RANKS);

    /* every rank's facts */
    job_node me = {.magic = Q35_DIST_MAGIC, .version = Q35_DIST_VERSION, .binary = binary_hash(),
                   .pid = (int32_t)getpid(), .tp = j->tp};
    uint64_t avail;
    const char *source = "";
    me.mem = q35_mem_available(o->mem_available, &avail, &source) ? (o->mem_available < 0 ? -1 : 0) : (int64_t)avail;
    snprintf(me.mem_source, sizeof me.mem_source, "%s", me.mem > 0 ? source : me.mem < 0 ? "no check" : "unknown");
    if (gethostname(me.host, sizeof me.host - 1)) snprintf(me.host, sizeof me.host, "?");
    q35_kernels k;
    snprintf(me.kernels, sizeof me.kernels, "%s", q35_kernels_select(&k, NULL) == 0 ? k.name : "?");
    j->nodes = calloc((size_t)j->size, sizeof *j->nodes);
    if (!j->nodes) return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
    if ((rc = MPI_Allgather(&me, sizeof me, MPI_BYTE, j->nodes, sizeof me, MPI_BYTE, j->world)) != MPI_SUCCESS)
        return mpi_fail(err, rc, "exchanging the ranks' facts");

    /* ranks on one machine share its memory: a measured figure is split
     * between them (a figure set with Q35_MEM_AVAILABLE is the rank's own) */
    for (int r = 0; r < j->size; r++) {
        job_node *n = &j->nodes[r];
        int share = 0;
        for (int q = 0; q < j->size; q++) share += strcmp(j->nodes[q].host, n->host) == 0;
        if (n->mem > 0 && strcmp(n->mem_source, "as set") != 0) n->mem /= share > 0 ? share : 1;
    }
    j->mem = j->nodes[j->rank].mem;

    /* the same binary, --tp, and a stage's ranks the same kernels */
    const job_node *r0 = &j->nodes[0];
    for (int r = 1; r < j->size; r++) {
        const job_node *n = &j->nodes[r];
        if (n->magic != Q35_DIST_MAGIC || n->version != Q35_DIST_VERSION || n->binary != r0->binary)
            return q35_fail(err, Q35_ERR_ARG,
                            "rank %d (on %.63s) runs another q35-mpi binary than rank 0 (on %.63s): give every rank the "
                            "same build", r, n->host, r0->host);
        if (n->tp != r0->tp)
            return q35_fail(err, Q35_ERR_ARG, "rank %d was given --tp %d, rank 0 --tp %d", r, n->tp, r0->tp);
    }
    if (j->size % j->tp)
        return q35_fail(err, Q35_ERR_ARG, "--tp %d does not divide the job's %d ranks into stages", j->tp, j->size);
    j->stages = j->size / j->tp;
    if (j->stages > Q35_DIST_MAX_STAGES)
        return q35_fail(err, Q35_ERR_ARG, "%d pipeline stages: at most %d", j->stages, Q35_DIST_MAX_STAGES);
    j->stage = j->rank / j->tp;
    j->member = j->rank % j->tp;
    for (int r = 0; r < j->size; r++) {
        const job_node *a = &j->nodes[r], *lead = &j->nodes[r / j->tp * j->tp];
        if (strcmp(a->kernels, lead->kernels) != 0)
            return q35_fail(err, Q35_ERR_ARG,
                            "ranks %d and %d share a tensor-parallel stage but pick kernels %s and %s: set "
                            "Q35_KERNELS=%s for all", r / j->tp * j->tp, r, lead->kernels, a->kernels, a->kernels);
    }
    if ((rc = MPI_Comm_split(j->world, j->stage, j->member, &j->stage_comm)) != MPI_SUCCESS)
        return mpi_fail(err, rc, "making the stages");
    MPI_Comm_set_errhandler(j->stage_comm, MPI_ERRORS_RETURN);

    sig_tab.n = j->size;
    sig_tab.me = j->rank;
    sig_tab.serving = o->serving;
    snprintf(sig_tab.host, sizeof sig_tab.host, "%s", me.host);
    for (int r = 0; r < j->size; r++) {
        sig_tab.pid[r] = j->nodes[r].pid;
        sig_tab.here[r] = strcmp(j->nodes[r].host, me.host) == 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    return Q35_OK;
}

/* ---- transport ---------------------------------------------------------------- */

int job_reserve(uint8_t **buf, size_t *cap, size_t n, q35_error *err) {
    if (n <= *cap) return Q35_OK;
    uint8_t *b = realloc(*buf, n);
    if (!b) return q35_fail(err, Q35_ERR_NOMEM, "out of memory for a message of %zu bytes", n);
    *buf = b;
    *cap = n;
    return Q35_OK;
}

/* Waiting: yield at first, then sleep, longer and longer, up to 200 us: a
 * waiting rank costs a few per cent of a core, and a pipeline hop waits
 * about half that for the wake-up (with sleeps up to 800 us, stories3M's
 * decode over 2 ranks lost about 0.8 ms per token). */
static void backoff(int *k) {
    if (*k < 64) {
        sched_yield();
    } else {
        const int shift = (*k - 64) / 16 < 2 ? (*k - 64) / 16 : 2;
        struct timespec ts = {0, 50000L << shift};
        nanosleep(&ts, NULL);
    }
    (*k)++;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Frees the slots whose messages MPI is done with; returns a free one or -1. */
static int sends_progress(q35_job *j) {
    int free_slot = -1;
    for (int i = 0; i < JOB_SENDS; i++) {
        job_send *s = &j->sends[i];
        if (s->busy) {
            int done = 0;
            MPI_Test(&s->req, &done, MPI_STATUS_IGNORE);
            if (done) s->busy = 0;
        }
        if (!s->busy && free_slot < 0) free_slot = i;
    }
    return free_slot;
}

void job_poll_results(q35_job *j) {
    if (j->rank != 0 || j->stages < 2) return;
    const int last = job_leader(j, j->stages - 1);
    for (;;) {
        int flag = 0, count = 0;
        MPI_Status st;
        MPI_Iprobe(last, TAG_RESULT, j->world, &flag, &st);
        if (!flag) return;
        MPI_Get_count(&st, MPI_BYTE, &count);
        job_result *r = calloc(1, sizeof *r);
        uint8_t *msg = r ? malloc(count > 0 ? (size_t)count : 1) : NULL;
        if (!msg) { /* cannot happen in practice; leave it queued in MPI */
            free(r);
            return;
        }
        MPI_Recv(msg, count, MPI_BYTE, last, TAG_RESULT, j->world, MPI_STATUS_IGNORE);
        r->msg = msg;
        r->len = (size_t)count;
        if (j->results_tail) j->results_tail->next = r;
        else j->results = r;
        j->results_tail = r;
    }
}

int job_send_msg(q35_job *j, int dst, int tag, const void *msg, size_t len, q35_error *err) {
    if (len > (size_t)1 << 30) return q35_fail(err, Q35_ERR_ARG, "a message of %zu bytes: at most 1 GiB", len);
    int slot, k = 0;
    const double t0 = now();
    while ((slot = sends_progress(j)) < 0) { /* every slot in flight: the receivers are behind */
        job_poll_results(j);
        if (now() - t0 > j->timeout_s)
            return q35_fail(err, Q35_ERR_IO, "rank %d: rank %d took no message for %.0f s", j->rank, dst, j->timeout_s);
        backoff(&k);
    }
    job_send *s = &j->sends[slot];
    int rc = job_reserve(&s->buf, &s->cap, len, err);
    if (rc) return rc;
    memcpy(s->buf, msg, len);
    if ((rc = MPI_Isend(s->buf, (int)len, MPI_BYTE, dst, tag, j->world, &s->req)) != MPI_SUCCESS)
        return mpi_fail(err, rc, "sending");
    s->busy = 1;
    return Q35_OK;
}

int job_recv_msg(q35_job *j, int src, int tag, double timeout_s, q35_error *err) {
    const double t0 = now();
    for (int k = 0;;) {
        int flag = 0, count = 0;
        MPI_Status st;
        int rc = MPI_Iprobe(src, tag, j->world, &flag, &st);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "waiting for a message");
        if (flag) {
            MPI_Get_count(&st, MPI_BYTE, &count);
            if ((rc = job_reserve(&j->rbuf, &j->rcap, count > 0 ? (size_t)count : 1, err))) return rc;
            if ((rc = MPI_Recv(j->rbuf, count, MPI_BYTE, src, tag, j->world, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
                return mpi_fail(err, rc, "receiving");
            j->rlen = (size_t)count;
            const char *why = NULL;
            if (q35_dist_hdr_check(j->rbuf, j->rlen, &why))
                return q35_fail(err, Q35_ERR_FORMAT, "rank %d: from rank %d: %s", j->rank, src, why);
            return Q35_OK;
        }
        sends_progress(j);
        if (tag != TAG_RESULT) job_poll_results(j);
        if (timeout_s >= 0 && now() - t0 > timeout_s)
            return q35_fail(err, Q35_ERR_IO, "rank %d: no answer from rank %d in %.0f s (--mpi-timeout)", j->rank, src,
                            timeout_s);
        backoff(&k);
    }
}

int job_flush(q35_job *j, q35_error *err) {
    const double t0 = now();
    for (int k = 0;;) {
        int busy = 0;
        sends_progress(j);
        for (int i = 0; i < JOB_SENDS; i++) busy |= j->sends[i].busy;
        if (!busy) return Q35_OK;
        job_poll_results(j);
        if (now() - t0 > j->timeout_s)
            return q35_fail(err, Q35_ERR_IO, "rank %d: messages not taken for %.0f s", j->rank, j->timeout_s);
        backoff(&k);
    }
}

/* ---- serving and ending ------------------------------------------------------ */

/* Leaves the job: every rank meets at a barrier (bounded: a rank gone
 * does not hold the others), then MPI_Finalize. */
static void leave(q35_job *j) {
    q35_error err = {0};
    job_flush(j, &err);
    sig_tab.ending = 1;
    MPI_Request req;
    if (MPI_Ibarrier(j->world, &req) == MPI_SUCCESS) {
        const double t0 = now();
        int done = 0;
        for (int k = 0; !done && now() - t0 < 30; backoff(&k)) MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    }
    q35_session_free(j->session);
    q35_model_free(j->model);
    for (int i = 0; i < JOB_SENDS; i++) free(j->sends[i].buf);
    for (job_result *r = j->results, *nx; r; r = nx) {
        nx = r->next;
        free(r->msg);
        free(r);
    }
    free(j->rbuf);
    free(j->gather.send);
    free(j->gather.recv);
    free(j->x);
    free(j->obuf);
    free(j->nodes);
    if (j->stage_comm != MPI_COMM_NULL) MPI_Comm_free(&j->stage_comm);
    MPI_Comm_free(&j->world);
    free(j);
    MPI_Finalize();
}

void q35_job_exit_if_rank_gone(q35_job *j) {
    (void)j; /* the table is the process's (the signal handler's) */
    int printer;
    if (sig_tab.ending || find_gone(&printer) < 0) return;
    sig_tab.serving = 0;
    on_term(SIGTERM);
}

void q35_job_abandon(q35_job *j) {
    if (!j) {
        MPI_Finalize();
        return;
    }
    leave(j);
}

/* A request's answer carries records from every rank of a stage. */
static int wants_records(uint32_t op) {
    return op == Q35_DIST_LOAD || op == Q35_DIST_SESSION || op == Q35_DIST_STATS;
}

/* Appends the records a member added to the request (its reply in rbuf
 * carries the request's had records, earlier stages', then its own) to
 * obuf's. */
static int add_records(q35_job *j, size_t *olen, int had, q35_error *err) {
    q35_dist_hdr h, o;
    memcpy(&h, j->rbuf, sizeof h);
    if (h.n_recs <= had) return Q35_OK;
    const size_t add = (size_t)(h.n_recs - had) * sizeof(q35_dist_rec);
    if (add > j->rlen - sizeof h)
        return q35_fail(err, Q35_ERR_FORMAT, "rank %d: a reply of %zu bytes with %d records", j->rank, j->rlen,
                        h.n_recs);
    int rc = job_reserve(&j->obuf, &j->ocap, *olen + add, err);
    if (rc) return rc;
    memcpy(j->obuf + *olen, j->rbuf + j->rlen - add, add);
    *olen += add;
    memcpy(&o, j->obuf, sizeof o);
    o.n_recs += h.n_recs - had;
    o.bytes += add;
    memcpy(j->obuf, &o, sizeof o);
    return Q35_OK;
}

/* What a stage's first rank does with a request: hands it to the others
 * of its stage, runs it, adds their records, passes the answer on. Rank 0
 * does the same for the requests it makes (pipe.c). Returns 0, or an
 * error of the transport (the job cannot go on). */
int job_forward(q35_job *j, q35_error *err) {
    q35_dist_hdr h;
    memcpy(&h, j->rbuf, sizeof h);
    int rc;
    for (int k = 1; k < j->tp; k++)
        if ((rc = job_send_msg(j, j->rank + k, TAG_FAN, j->rbuf, j->rlen, err))) return rc;
    q35_error herr = {0};
    size_t olen = job_handle(j, &h, j->rbuf + sizeof h, &herr);
    if (!olen) return q35_fail(err, herr.code ? herr.code : Q35_ERR_NOMEM, "rank %d: %s", j->rank, herr.msg);
    if (wants_records(h.op))
        for (int k = 1; k < j->tp; k++)
            if ((rc = job_recv_msg(j, j->rank + k, TAG_REPLY, j->timeout_s, err)) || (rc = add_records(j, &olen, h.n_recs, err)))
                return rc;
    const int last = j->stage == j->stages - 1;
    if (last && (h.op == Q35_DIST_TRIM || h.op == Q35_DIST_RESET)) return Q35_OK; /* nobody waits for these */
    if (last && j->rank == 0) { /* one stage: rank 0 answers itself */
        job_result *r = calloc(1, sizeof *r);
        if (!r || !(r->msg = malloc(olen))) {
            free(r);
            return q35_fail(err, Q35_ERR_NOMEM, "out of memory");
        }
        memcpy(r->msg, j->obuf, olen);
        r->len = olen;
        if (j->results_tail) j->results_tail->next = r;
        else j->results = r;
        j->results_tail = r;
        return Q35_OK;
    }
    return job_send_msg(j, last ? 0 : job_leader(j, j->stage + 1), last ? TAG_RESULT : TAG_DATA, j->obuf, olen, err);
}

int q35_job_serve(q35_job *j) {
    const int leader = j->member == 0;
    const int src = leader ? job_leader(j, j->stage - 1) : job_leader(j, j->stage);
    q35_error err = {0};
    int rc = Q35_OK;
    for (;;) {
        if ((rc = job_recv_msg(j, src, leader ? TAG_DATA : TAG_FAN, -1, &err))) break;
        q35_dist_hdr h;
        memcpy(&h, j->rbuf, sizeof h);
        if (leader) {
            rc = job_forward(j, &err);
        } else {
            q35_error herr = {0};
            const size_t olen = job_handle(j, &h, j->rbuf + sizeof h, &herr);
            if (!olen) rc = q35_fail(&err, herr.code ? herr.code : Q35_ERR_NOMEM, "rank %d: %s", j->rank, herr.msg);
            else if (wants_records(h.op)) rc = job_send_msg(j, src, TAG_REPLY, j->obuf, olen, &err);
            else if (h.op == Q35_DIST_DECODE) { /* a stage's ranks evaluate together: one failing alone cannot go on */
                q35_dist_hdr o;
                memcpy(&o, j->obuf, sizeof o);
                if (o.status && !h.status) rc = q35_fail(&err, o.status, "%s", o.msg);
            }
        }
        if (rc || h.op == Q35_DIST_QUIT) break;
    }
    if (rc) { /* nobody can be told in order: the job must end */
        fprintf(stderr, "q35-mpi: %s\n", err.msg);
        fflush(stderr);
        sig_tab.ending = 1;
        MPI_Abort(j->world, 1);
    }
    leave(j);
    return 0;
}
