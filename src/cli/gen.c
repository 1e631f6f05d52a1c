/* gen.c — what the generating commands (run, chat) share: their flags,
 * opening the model, session and sampler they ask for, and the chat
 * template for a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

void cli_gen_defaults(cli_gen *g) {
    memset(g, 0, sizeof *g);
    g->n_predict = 256;
    g->top_k = 40;
    g->last_n = 64;
    g->temp = 0.8;
    g->top_p = 0.95;
    g->min_p = 0.05;
    g->penalty = 1.0;
}

int cli_gen_flag(const char *C, cli_gen *g, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
#define VAL() if (!(v = cli_value(C, argc, argv, i))) return -1
#define CHK(x) if (x) return -1
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); g->model_path = v; }
    else if (!strcmp(a, "--tokenizer")) { VAL(); g->tok_path = v; }
    else if (!strcmp(a, "--chat-template")) { VAL(); g->chat_template = v; }
    else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
        VAL(); CHK(cli_int(C, a, v, -1, 1L << 30, &g->n_predict));
        if (g->n_predict == 0) {
            cli_error(C, "%s 0: nothing to generate (give N >= 1, or -1 for until the context is full)", a);
            return -1;
        }
    }
    else if (!strcmp(a, "--temp")) { VAL(); CHK(cli_float(C, a, v, 0, 1e6, &g->temp)); }
    else if (!strcmp(a, "--top-k")) { VAL(); CHK(cli_int(C, a, v, 0, 1L << 30, &g->top_k)); }
    else if (!strcmp(a, "--top-p")) { VAL(); CHK(cli_float(C, a, v, 1e-9, 1, &g->top_p)); }
    else if (!strcmp(a, "--min-p")) { VAL(); CHK(cli_float(C, a, v, 0, 1, &g->min_p)); }
    else if (!strcmp(a, "--repeat-penalty")) { VAL(); CHK(cli_float(C, a, v, 1e-6, 1e6, &g->penalty)); }
    else if (!strcmp(a, "--repeat-last-n")) { VAL(); CHK(cli_int(C, a, v, 0, 1L << 30, &g->last_n)); }
    else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) { VAL(); CHK(cli_u64(C, a, v, &g->seed)); g->have_seed = 1; }
    else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); CHK(cli_int(C, a, v, 1, 1024, &g->threads)); }
    else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) { VAL(); CHK(cli_int(C, a, v, 1, 1L << 20, &g->batch)); }
    else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { VAL(); CHK(cli_int(C, a, v, 1, 1L << 24, &g->ctx_size)); }
    else if (!strcmp(a, "--kv-type")) {
        VAL();
        CHK(cli_kv_type(C, a, v));
        g->kv_type = v;
    }
    else if (!strcmp(a, "--convert-type")) { VAL(); g->convert_type = v; }
    else if (!strcmp(a, "--gpu")) g->ngl = -1;
    else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers") || !strcmp(a, "--gpu-layers")) {
        VAL(); CHK(cli_int(C, a, v, 0, 1L << 20, &g->ngl));
    }
    else return 0;
#undef VAL
#undef CHK
    return 1;
}

int cli_gen_prepare(const char *C, cli_gen *g, q35_session_params *ssp) {
    if (!g->model_path) {
        if (cli_default_model(g->found, sizeof g->found) != 0)
            return cli_error(C, "no model: give -m FILE, or put stories260K/stories260K.bin under "
                                "$Q35_MODELS, ./models or ../shared/models (scripts/story.sh downloads it)");
        g->model_path = g->found;
    }
    if (!g->have_seed) g->seed = (uint64_t)time(NULL);
    if (cli_session_params(C, ssp)) return 1;
    ssp->n_threads = (int)g->threads;
    ssp->n_gpu_layers = (int)g->ngl;
    if (g->batch) ssp->n_batch = (int)g->batch;
    ssp->n_ctx = (int)g->ctx_size;
    ssp->kv_type = g->kv_type;
    return 0;
}

int cli_gen_sampler(const char *C, const cli_gen *g, int vocab, q35_sampler **smp) {
    q35_error err = {0};
    q35_sampler_params sp = {(float)g->temp, (int)g->top_k, (float)g->top_p, (float)g->min_p,
                             (float)g->penalty, (int)g->last_n, g->seed};
    return q35_sampler_new(smp, &sp, vocab, &err) ? cli_error(C, "%s", err.msg) : 0;
}

int cli_gen_open(const char *C, cli_gen *g, q35_model **m, q35_session **s, q35_sampler **smp) {
    *m = NULL;
    *s = NULL;
    *smp = NULL;
    q35_error err = {0};
    q35_session_params ssp;
    if (cli_gen_prepare(C, g, &ssp) || cli_load_model(C, g->model_path, g->tok_path, 0, g->convert_type, m)) {
        cli_gen_close(m, s, smp);
        return 1;
    }
    if (q35_session_new_params(s, *m, &ssp, &err)) {
        cli_gen_close(m, s, smp);
        return cli_error(C, "%s", err.msg);
    }
    if (g->ngl) fprintf(stderr, "q35 %s: %s\n", C, q35_session_device(*s));
    if (cli_gen_sampler(C, g, q35_model_config(*m)->vocab_size, smp)) {
        cli_gen_close(m, s, smp);
        return 1;
    }
    return 0;
}

void cli_gen_close(q35_model **m, q35_session **s, q35_sampler **smp) {
    q35_sampler_free(*smp);
    q35_session_free(*s);
    q35_model_free(*m);
    *smp = NULL;
    *s = NULL;
    *m = NULL;
}

/* A control token's text without the newlines llama2.c's exporter puts
 * around <s> and </s> ("\n<s>\n"). */
static char *token_string(const q35_model *m, int id) {
    size_t n = 0;
    const char *p = id >= 0 ? q35_token_text(m, id, &n) : NULL;
    if (!p) return NULL;
    while (n && (*p == '\n' || *p == ' ')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == '\n' || p[n - 1] == ' ')) n--;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int cli_gen_template(const char *C, cli_gen *g, const q35_model *m, q35_chat_template **t) {
    if (cli_chat_template(C, g->model_path, g->chat_template, t)) return 1;
    /* a template from elsewhere renders the model's own BOS/EOS */
    if (g->chat_template) {
        char *b = token_string(m, q35_token_bos(m)), *e = token_string(m, q35_token_eos(m));
        q35_error err = {0};
        int rc = q35_chat_template_set_tokens(*t, b, e, &err);
        free(b);
        free(e);
        if (rc) {
            q35_chat_template_free(*t);
            *t = NULL;
            return cli_error(C, "%s", err.msg);
        }
    }
    return 0;
}

char *cli_chat_json(const char *const *roles, const char *const *contents, int n, int add_generation_prompt) {
    size_t cap = 64;
    for (int i = 0; i < n; i++) cap += 6 * strlen(contents[i]) + strlen(roles[i]) + 40;
    char *out = malloc(cap), *w = out;
    if (!out) return NULL;
    w += sprintf(w, "{\"messages\":[");
    for (int i = 0; i < n; i++) {
        size_t len;
        char *c = cli_json_string(contents[i], strlen(contents[i]), &len);
        if (!c) {
            free(out);
            return NULL;
        }
        w += sprintf(w, "%s{\"role\":\"%s\",\"content\":%s}", i ? "," : "", roles[i], c);
        free(c);
    }
    sprintf(w, "],\"add_generation_prompt\":%s}", add_generation_prompt ? "true" : "false");
    return out;
}

int cli_chat_ids(const char *C, const q35_model *m, const q35_chat_template *t, const char *const *roles,
                 const char *const *contents, int n, int **ids, int *n_ids) {
    char *conv = cli_chat_json(roles, contents, n, 1), *text = NULL;
    size_t len = 0;
    q35_error err = {0};
    if (!conv) return cli_error(C, "out of memory");
    int rc = q35_chat_render(t, conv, strlen(conv), NULL, &text, &len, &err) ||
             q35_chat_tokenize(m, t, text, len, ids, n_ids, &err);
    free(conv);
    free(text);
    return rc ? cli_error(C, "%s", err.msg) : 0;
}
