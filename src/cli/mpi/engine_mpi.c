/* engine_mpi.c — q35-mpi's engine (cli/engine.h): the model spread over
 * the ranks of the MPI job (src/dist/mpi/job.h), driven from rank 0. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine.h"
#include "dist/mpi/job.h"

struct cli_engine {
    q35_job *job;
};

int cli_engine_load(cli_job *job, const char *cmd, const char *path, const char *tokenizer, const char *convert_type,
                    q35_model **m) {
    q35_model_params p;
    if (cli_model_params(cmd, &p)) return -1;
    p.tokenizer_path = tokenizer;
    p.convert_type = convert_type;
    q35_error err = {0};
    const double t0 = cli_now();
    if (q35_job_load(job, path, &p, m, &err) == 0) {
        const q35_conversion c = q35_model_conversion(*m); /* rank 0's part: the others' alike */
        if (c.n_matrices)
            fprintf(stderr, "q35 %s: converted %d matrices of rank 0's part from %s to %s at load (%.1f s)\n", cmd,
                    c.n_matrices, c.from, c.to, cli_now() - t0);
        return 0;
    }
    if (err.code == Q35_ERR_NOMEM && strstr(err.msg, "available"))
        return cli_error(cmd, "%s; Q35_MEM_AVAILABLE=off skips this check", err.msg), -1;
    return cli_error(cmd, "%s", err.msg), -1;
}

void cli_engine_unload(cli_job *job, q35_model *m) { /* the job holds every rank's part until the next load */
    (void)job;
    (void)m;
}

int cli_engine_shared(const cli_job *job) {
    (void)job;
    return 0;
}

int cli_engine_open(cli_job *job, const q35_model *m, const q35_session_params *p, cli_engine **e, q35_error *err) {
    (void)m;
    *e = NULL;
    int rc = q35_job_session(job, p, err);
    if (rc) return rc;
    if (!(*e = calloc(1, sizeof **e))) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return err->code = Q35_ERR_NOMEM;
    }
    (*e)->job = job;
    return Q35_OK;
}

void cli_engine_close(cli_engine *e) { free(e); }

int cli_engine_decode(cli_engine *e, const q35_batch *b, float *out, q35_error *err) {
    return q35_job_decode(e->job, b, out, err);
}

int cli_engine_submit(cli_engine *e, const q35_batch *b, q35_error *err) { return q35_job_submit(e->job, b, err); }
int cli_engine_collect(cli_engine *e, float *out, q35_error *err) { return q35_job_collect(e->job, out, err); }
int cli_engine_depth(const cli_engine *e) { return q35_job_stages(e->job) + 1; }
int cli_engine_stages(const cli_engine *e) { return q35_job_stages(e->job); }
int cli_engine_n_ctx(const cli_engine *e) { return q35_job_n_ctx(e->job); }
int cli_engine_trim(cli_engine *e, int seq, int p, q35_error *err) { return q35_job_trim(e->job, seq, p, err); }
int cli_engine_reset(cli_engine *e, q35_error *err) { return q35_job_reset(e->job, err); }
const char *cli_engine_kv_type(const cli_engine *e) { return q35_job_kv_type(e->job); }
const char *cli_engine_device(const cli_engine *e) { return q35_job_describe(e->job); }

uint64_t cli_engine_weight_bytes(cli_job *job, const q35_model *m) {
    (void)m;
    return q35_job_weight_bytes(job);
}

void cli_engine_report_rss(cli_job *job, FILE *f, double own_mib) {
    enum { MAX = 1024 };
    uint64_t rss[MAX], w[MAX], kv[MAX];
    int n = 0;
    q35_error err = {0};
    if (q35_job_peak_rss(job, rss, w, kv, &n, &err)) {
        fprintf(f, "peak RSS: rank 0 %.1f MiB (the others: %s)\n", own_mib, err.msg);
        return;
    }
    /* each rank's share: the weights its part reads per token and its KV cache */
    fprintf(f, "peak RSS:");
    for (int r = 0; r < n; r++)
        fprintf(f, "%s rank %d %.1f MiB (weights %.1f + KV %.1f MiB)", r ? "," : "", r, (double)rss[r] / 1048576.0,
                (double)w[r] / 1048576.0, (double)kv[r] / 1048576.0);
    fprintf(f, "\n");
}

void cli_engine_signalled(cli_job *job) { q35_job_exit_if_rank_gone(job); }
