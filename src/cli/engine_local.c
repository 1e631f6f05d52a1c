/* engine_local.c — the q35 program's engine: a session of a model held
 * whole in this process (engine.h). q35-mpi links mpi/engine_mpi.c
 * instead. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine.h"

struct cli_engine {
    q35_session *s;
    /* a batch submitted, evaluated when collected */
    int *tok, *seq;
    uint8_t *want;
    int n, cap, pending;
};

int cli_engine_load(cli_job *job, const char *cmd, const char *path, const char *tokenizer, const char *convert_type,
                    q35_model **m) {
    (void)job;
    return cli_load_model(cmd, path, tokenizer, 0, convert_type, m);
}

void cli_engine_unload(cli_job *job, q35_model *m) {
    (void)job;
    q35_model_free(m);
}

int cli_engine_shared(const cli_job *job) {
    (void)job;
    return 1;
}

int cli_engine_open(cli_job *job, const q35_model *m, const q35_session_params *p, cli_engine **e, q35_error *err) {
    (void)job;
    *e = calloc(1, sizeof **e);
    if (!*e) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return err->code = Q35_ERR_NOMEM;
    }
    int rc = q35_session_new_params(&(*e)->s, m, p, err);
    if (rc) {
        free(*e);
        *e = NULL;
    }
    return rc;
}

void cli_engine_close(cli_engine *e) {
    if (!e) return;
    q35_session_free(e->s);
    free(e->tok);
    free(e->seq);
    free(e->want);
    free(e);
}

int cli_engine_decode(cli_engine *e, const q35_batch *b, float *out, q35_error *err) {
    return q35_session_decode(e->s, b, out, err);
}

int cli_engine_submit(cli_engine *e, const q35_batch *b, q35_error *err) {
    if (e->pending) {
        snprintf(err->msg, sizeof err->msg, "a batch is already waiting to be collected");
        return err->code = Q35_ERR_ARG;
    }
    if (b->n_tokens > e->cap) {
        const size_t n = (size_t)b->n_tokens;
        int *t = realloc(e->tok, n * sizeof *t), *s = t ? realloc(e->seq, n * sizeof *s) : NULL;
        uint8_t *w = s ? realloc(e->want, n) : NULL;
        if (t) e->tok = t;
        if (s) e->seq = s;
        if (w) e->want = w;
        if (!w) {
            snprintf(err->msg, sizeof err->msg, "out of memory");
            return err->code = Q35_ERR_NOMEM;
        }
        e->cap = b->n_tokens;
    }
    e->n = b->n_tokens;
    for (int t = 0; t < e->n; t++) {
        e->tok[t] = b->token[t];
        e->seq[t] = b->seq ? b->seq[t] : 0;
        e->want[t] = b->logits ? b->logits[t] : 0;
    }
    e->pending = 1;
    return Q35_OK;
}

int cli_engine_collect(cli_engine *e, float *out, q35_error *err) {
    if (!e->pending) {
        snprintf(err->msg, sizeof err->msg, "no batch was submitted");
        return err->code = Q35_ERR_ARG;
    }
    e->pending = 0;
    const q35_batch b = {e->n, e->tok, e->seq, e->want};
    return q35_session_decode(e->s, &b, out, err);
}

int cli_engine_depth(const cli_engine *e) {
    (void)e;
    return 1;
}

int cli_engine_stages(const cli_engine *e) {
    (void)e;
    return 1;
}

int cli_engine_n_ctx(const cli_engine *e) { return q35_session_n_ctx(e->s); }

int cli_engine_trim(cli_engine *e, int seq, int p, q35_error *err) {
    if (e->pending) { /* it would land before the batch waiting */
        snprintf(err->msg, sizeof err->msg, "trim with a batch waiting to be collected");
        return err->code = Q35_ERR_ARG;
    }
    return q35_session_seq_trim(e->s, seq, p, err);
}

int cli_engine_reset(cli_engine *e, q35_error *err) {
    if (e->pending) {
        snprintf(err->msg, sizeof err->msg, "reset with a batch waiting to be collected");
        return err->code = Q35_ERR_ARG;
    }
    q35_session_reset(e->s);
    return Q35_OK;
}

const char *cli_engine_kv_type(const cli_engine *e) { return q35_session_kv_type(e->s); }
const char *cli_engine_device(const cli_engine *e) { return q35_session_device(e->s); }

uint64_t cli_engine_weight_bytes(cli_job *job, const q35_model *m) {
    (void)job;
    return q35_model_weight_bytes(m);
}

void cli_engine_report_rss(cli_job *job, FILE *f, double own_mib) {
    (void)job;
    fprintf(f, "peak RSS: %.1f MiB\n", own_mib);
}

void cli_engine_signalled(cli_job *job) { (void)job; }
